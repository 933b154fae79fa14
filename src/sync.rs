//! The one door to atomics, cells and futexes.
//!
//! Every primitive in this crate takes its atomics, its `UnsafeCell` and its
//! futex wait/wake from here. In a normal build they are `std`'s atomics,
//! `std::cell::UnsafeCell` and the OS futex through `atomic-wait`; under
//! `RUSTFLAGS="--cfg loom"` they are loom's mocks, so the very code that ships
//! is the code the models in `loom-tests/` check.
//!
//! loom does not model OS futexes, so under loom a [`Futex`] carries a loom
//! `Mutex` + `Condvar` beside its word: `wait` re-checks the word under the
//! mutex and sleeps on the condvar, `wake_*` takes the mutex and notifies. That
//! is exactly a futex's contract (compare-and-sleep is atomic with respect to
//! wake), so a missing wake shows up in a model as a deadlock.
//!
//! Under loom this module also hosts the *mutant switches* used by
//! `loom-tests/mutants.sh`: each names a deliberate bug (a weakened ordering,
//! a dropped wake, a non-atomic check-then-act) that the product code can be
//! told to commit, so the script can show every model is able to fail. In a
//! normal build [`mutant`] is a `const fn` returning `false` and every switch
//! compiles away.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicUsize, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicPtr, AtomicU32, AtomicUsize, Ordering};

/// An `UnsafeCell` with loom's closure-based access API.
///
/// Access goes through [`with`](UnsafeCell::with) and
/// [`with_mut`](UnsafeCell::with_mut) so that loom can check every read and
/// write of the cell against concurrent accesses.
#[cfg(not(loom))]
#[derive(Debug)]
#[repr(transparent)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self(std::cell::UnsafeCell::new(value))
    }

    /// Calls `f` with a shared raw pointer to the contents.
    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Calls `f` with a unique raw pointer to the contents.
    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

/// A `u32` word that threads can sleep on until it changes.
///
/// Dereferences to its [`AtomicU32`]. [`wait`](Futex::wait) sleeps only while
/// the word still equals `expected` (and may return spuriously);
/// [`wake_all`](Futex::wake_all) wakes every sleeper. Callers loop on their
/// own condition and publish a "someone sleeps" bit in the word before they
/// wait, so wakers call the OS only when it is needed.
#[cfg(not(loom))]
#[derive(Debug)]
#[repr(transparent)]
pub(crate) struct Futex {
    word: AtomicU32,
}

#[cfg(not(loom))]
impl Futex {
    pub(crate) const fn new(value: u32) -> Self {
        Self {
            word: AtomicU32::new(value),
        }
    }

    /// Sleeps while the word equals `expected`; may return spuriously.
    #[inline]
    pub(crate) fn wait(&self, expected: u32) {
        atomic_wait::wait(&self.word, expected);
    }

    /// Wakes every thread sleeping in [`wait`](Futex::wait) on this word.
    #[inline]
    pub(crate) fn wake_all(&self) {
        atomic_wait::wake_all(&self.word);
    }
}

#[cfg(loom)]
#[derive(Debug)]
pub(crate) struct Futex {
    word: AtomicU32,
    lock: loom::sync::Mutex<()>,
    sleepers: loom::sync::Condvar,
}

#[cfg(loom)]
impl Futex {
    pub(crate) fn new(value: u32) -> Self {
        Self {
            word: AtomicU32::new(value),
            lock: loom::sync::Mutex::new(()),
            sleepers: loom::sync::Condvar::new(),
        }
    }

    /// Sleeps while the word equals `expected`: the check and the sleep are
    /// atomic with respect to `wake_all`, as with a real futex.
    pub(crate) fn wait(&self, expected: u32) {
        let guard = self.lock.lock().unwrap();
        // Relaxed: the mutex orders this load after any waker that already
        // took the lock, which is all a real futex promises.
        if self.word.load(Ordering::Relaxed) == expected {
            drop(self.sleepers.wait(guard).unwrap());
        }
    }

    /// Wakes every thread sleeping in [`wait`](Futex::wait) on this word.
    pub(crate) fn wake_all(&self) {
        let _guard = self.lock.lock().unwrap();
        self.sleepers.notify_all();
    }
}

impl std::ops::Deref for Futex {
    type Target = AtomicU32;

    #[inline(always)]
    fn deref(&self) -> &AtomicU32 {
        &self.word
    }
}

/// Is `name` the mutant this run was asked to commit?
///
/// Mutant names are `module::what_breaks`; `loom-tests/mutants.txt` lists
/// each with the loom test that must catch it. Normal builds: always
/// `false`, and the optimiser removes the branch.
#[cfg(not(loom))]
#[inline(always)]
pub(crate) const fn mutant(_name: &str) -> bool {
    false
}

/// Is `name` the mutant this run was asked to commit?
///
/// Under loom: true when the environment variable `MULTIOPEN_MUTANT` equals
/// `name`, as `loom-tests/mutants.sh` sets it.
#[cfg(loom)]
pub(crate) fn mutant(name: &str) -> bool {
    // A std OnceLock, outside loom's view: the switch is fixed for the run.
    static CHOSEN: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    CHOSEN
        .get_or_init(|| std::env::var("MULTIOPEN_MUTANT").ok())
        .as_deref()
        .is_some_and(|chosen| chosen == name)
}

/// `ordering`, or `Relaxed` if the mutant `name` is switched on.
#[inline(always)]
pub(crate) fn ordering_unless(name: &str, ordering: Ordering) -> Ordering {
    if mutant(name) {
        Ordering::Relaxed
    } else {
        ordering
    }
}
