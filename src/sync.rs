//! The one door to atomics, cells and futexes.
//!
//! Every primitive in this crate takes its atomics, its `UnsafeCell` and its
//! futex wait/wake from here. In a normal build they are `std`'s atomics,
//! `std::cell::UnsafeCell` and the OS futex (`timed_wait`: native timed
//! waits, otherwise mostly `atomic-wait`); under
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
pub(crate) use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicUsize, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicUsize, Ordering};

/// `fetch_or` of `bits` into the address of `atomic`'s pointer: one RMW
/// that keeps the stored pointer's provenance (a CAS from a value read
/// earlier would store that value's, which an ABA through a freed and
/// reused address makes stale). Under loom, whose `AtomicPtr` has no
/// `fetch_or`, the same RMW as a `fetch_update`. `order` is the RMW's.
#[inline]
pub(crate) fn ptr_fetch_or<T>(atomic: &AtomicPtr<T>, bits: usize, order: Ordering) -> *mut T {
    #[cfg(not(loom))]
    {
        atomic.fetch_or(bits, order)
    }
    #[cfg(loom)]
    {
        // Never `Err`: the closure always returns `Some`.
        match atomic.fetch_update(order, Ordering::Relaxed, |p| Some(p.map_addr(|a| a | bits))) {
            Ok(p) | Err(p) => p,
        }
    }
}

/// `fetch_and` of `bits` into the address of `atomic`'s pointer: as
/// [`ptr_fetch_or`].
#[inline]
pub(crate) fn ptr_fetch_and<T>(atomic: &AtomicPtr<T>, bits: usize, order: Ordering) -> *mut T {
    #[cfg(not(loom))]
    {
        atomic.fetch_and(bits, order)
    }
    #[cfg(loom)]
    {
        // Never `Err`: the closure always returns `Some`.
        match atomic.fetch_update(order, Ordering::Relaxed, |p| Some(p.map_addr(|a| a & bits))) {
            Ok(p) | Err(p) => p,
        }
    }
}

// Thread-locals and threads: std's normally, loom's under loom (loom runs
// every model thread on one OS thread, so a std thread-local would be
// shared by them). `RunState`'s current-state stack and `RunState::spawn`.
#[cfg(loom)]
pub(crate) use loom::thread::{Builder as ThreadBuilder, JoinHandle};
#[cfg(loom)]
pub(crate) use loom::thread_local;
#[cfg(not(loom))]
pub(crate) use std::thread::{Builder as ThreadBuilder, JoinHandle};
#[cfg(not(loom))]
pub(crate) use std::thread_local;

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
        timed_wait::wait(&self.word, expected);
    }

    /// Wakes every thread sleeping in [`wait`](Futex::wait) or
    /// [`wait_timeout`](Futex::wait_timeout) on this word.
    #[inline]
    pub(crate) fn wake_all(&self) {
        timed_wait::wake_all(&self.word);
    }

    /// Wakes at least one thread sleeping on this word (exactly one where
    /// the OS can: all on macOS, see `timed_wait`).
    #[inline]
    pub(crate) fn wake_one(&self) {
        timed_wait::wake_one(&self.word);
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

    /// Wakes one thread sleeping in [`wait`](Futex::wait) on this word.
    pub(crate) fn wake_one(&self) {
        let _guard = self.lock.lock().unwrap();
        self.sleepers.notify_one();
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

// ---------------------------------------------------------------------------
// MultiOpen support: which objects this thread is starting or shutting down.
// ---------------------------------------------------------------------------

/// A mark that this thread is running the startup or shutdown of the object
/// at `addr`: set by [`busy_mark`], cleared when dropped (so a panicking
/// startup or shutdown clears it too). While it is set, [`is_busy`] of that
/// address is true on this thread and on no other.
///
/// Marks nest (a startup that opens another object) and are cleared in the
/// reverse order, as scoped values are. The list holds [`BUSY_SLOTS`]
/// addresses without allocating and has no destructor, so it works in any
/// thread-local destructor too; deeper nesting is counted but not recorded,
/// and a re-entrant call that deep is not detected (it waits, as before).
pub(crate) struct BusyMark(());

/// Nesting depth recorded by [`busy_mark`]; more is counted, not recorded.
const BUSY_SLOTS: usize = 8;

/// This thread's busy marks: `depth` marks set, the first
/// `min(depth, BUSY_SLOTS)` recorded in `addrs`.
struct BusyList {
    depth: std::cell::Cell<usize>,
    addrs: [std::cell::Cell<usize>; BUSY_SLOTS],
}

impl BusyList {
    const fn new() -> Self {
        Self {
            depth: std::cell::Cell::new(0),
            addrs: [const { std::cell::Cell::new(0) }; BUSY_SLOTS],
        }
    }
}

// A std thread-local normally. Under loom, loom's: loom runs every model
// thread on one OS thread, so a std thread-local would be shared by them.
#[cfg(not(loom))]
thread_local! {
    static BUSY: BusyList = const { BusyList::new() };
}
#[cfg(loom)]
loom::thread_local! {
    static BUSY: BusyList = BusyList::new();
}

/// Marks this thread as running the startup or shutdown of the object at
/// `addr` until the mark is dropped. Slow path only (startup, shutdown).
pub(crate) fn busy_mark(addr: usize) -> BusyMark {
    // `try_with`: fails only under loom after the thread's locals are gone;
    // then nothing is recorded (and `is_busy` is false there as well).
    let _ = BUSY.try_with(|list| {
        let depth = list.depth.get();
        if let Some(slot) = list.addrs.get(depth) {
            slot.set(addr);
        }
        list.depth.set(depth + 1);
    });
    BusyMark(())
}

impl Drop for BusyMark {
    fn drop(&mut self) {
        let _ = BUSY.try_with(|list| list.depth.set(list.depth.get().saturating_sub(1)));
    }
}

/// Is this thread running the startup or shutdown of the object at `addr`?
/// A scan of at most [`BUSY_SLOTS`] words: call it only before sleeping.
pub(crate) fn is_busy(addr: usize) -> bool {
    BUSY.try_with(|list| {
        let recorded = list.depth.get().min(BUSY_SLOTS);
        list.addrs[..recorded].iter().any(|slot| slot.get() == addr)
    })
    .unwrap_or(false)
}

// ---------------------------------------------------------------------------
// Pool support: the idle-object queue and a per-thread index.
// ---------------------------------------------------------------------------

/// The queue a [`Pool`](crate::Pool) keeps its idle objects in.
///
/// Normally one of crossbeam's lock-free queues: an `ArrayQueue`
/// (bounded, its places allocated up front: a push onto a full queue hands
/// the object back) for a pool of up to
/// [`PREALLOCATED_UP_TO`](crate::Pool::PREALLOCATED_UP_TO) places; a
/// `SegQueue` (allocated in blocks as it grows) for an unbounded pool; and
/// for a larger bound a `SegQueue` kept to its capacity by a count of
/// reserved places (`Large`), so no size allocates in proportion to itself
/// up front. Every operation is one queue operation (`Large`: and a CAS or
/// a `fetch_sub` on its count), no lock. Under loom, where crossbeam is
/// invisible, a loom `Mutex<VecDeque>` with the same push/pop/len contract,
/// so the models check the pool's own logic around the queue.
#[cfg(not(loom))]
#[derive(Debug)]
pub(crate) enum ObjectQueue<T> {
    Bounded(crossbeam_queue::ArrayQueue<T>),
    Unbounded(crossbeam_queue::SegQueue<T>),
    Large(LargeQueue<T>),
}

/// A bounded queue that allocates as it grows: a `SegQueue` and the number
/// of places reserved in it. A push reserves a place (a CAS that keeps
/// `reserved <= capacity`) before it pushes, and a pop gives its place back
/// after it pops, so the queue never holds more than `reserved`, which
/// never exceeds `capacity`: the bound is exact. (A push racing a pop may
/// find no place while the popped object is on its way out, as a push into
/// an `ArrayQueue` may.)
#[cfg(not(loom))]
#[derive(Debug)]
pub(crate) struct LargeQueue<T> {
    queue: crossbeam_queue::SegQueue<T>,
    /// Places taken: objects in `queue`, plus pushes about to add one,
    /// plus pops that took one and have not yet given its place back.
    reserved: crossbeam_utils::CachePadded<AtomicUsize>,
    capacity: usize,
}

#[cfg(not(loom))]
impl<T> ObjectQueue<T> {
    /// Holds any number of objects; allocates in blocks as it grows.
    pub(crate) fn unbounded() -> Self {
        Self::Unbounded(crossbeam_queue::SegQueue::new())
    }

    /// Holds at most `capacity` (at least 1) objects, its places allocated
    /// now: for capacities up to `Pool::PREALLOCATED_UP_TO`.
    pub(crate) fn preallocated(capacity: usize) -> Self {
        Self::Bounded(crossbeam_queue::ArrayQueue::new(capacity))
    }

    /// Holds at most `capacity` objects, allocating as it grows.
    pub(crate) fn growing(capacity: usize) -> Self {
        Self::Large(LargeQueue {
            queue: crossbeam_queue::SegQueue::new(),
            reserved: crossbeam_utils::CachePadded::new(AtomicUsize::new(0)),
            capacity,
        })
    }

    /// Adds `value`, or hands it back if the queue is full.
    #[inline(always)]
    pub(crate) fn push(&self, value: T) -> Result<(), T> {
        match self {
            Self::Bounded(queue) => queue.push(value),
            Self::Unbounded(queue) => {
                push_unbounded(queue, value);
                Ok(())
            }
            Self::Large(queue) => queue.push(value),
        }
    }

    /// Removes the oldest value, if any.
    #[inline(always)]
    pub(crate) fn pop(&self) -> Option<T> {
        match self {
            Self::Bounded(queue) => queue.pop(),
            Self::Unbounded(queue) => pop_unbounded(queue),
            Self::Large(queue) => queue.pop(),
        }
    }

    /// How many values it holds now.
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Bounded(queue) => queue.len(),
            Self::Unbounded(queue) => queue.len(),
            Self::Large(queue) => queue.queue.len(),
        }
    }
}

#[cfg(not(loom))]
impl<T> LargeQueue<T> {
    /// Out of line, as [`push_unbounded`]: only large pools come here.
    #[inline(never)]
    fn push(&self, value: T) -> Result<(), T> {
        // Relaxed: a guess for the CAS, which decides.
        let mut reserved = self.reserved.load(Ordering::Relaxed);
        loop {
            if reserved >= self.capacity {
                return Err(value);
            }
            // Relaxed: the count only bounds the queue's length; the object
            // itself is published by the queue's own synchronisation.
            match self.reserved.compare_exchange_weak(
                reserved,
                reserved + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => reserved = now,
            }
        }
        self.queue.push(value);
        Ok(())
    }

    /// Out of line, as [`pop_unbounded`].
    #[inline(never)]
    fn pop(&self) -> Option<T> {
        let value = self.queue.pop()?;
        // Relaxed: as in `push`; the place is given back after the pop, so
        // the count never falls below the queue's length.
        self.reserved.fetch_sub(1, Ordering::Relaxed);
        Some(value)
    }
}

/// Out of line, so the bounded case (the common one) keeps a compact path.
#[cfg(not(loom))]
#[inline(never)]
fn push_unbounded<T>(queue: &crossbeam_queue::SegQueue<T>, value: T) {
    queue.push(value);
}

/// Out of line, as [`push_unbounded`].
#[cfg(not(loom))]
#[inline(never)]
fn pop_unbounded<T>(queue: &crossbeam_queue::SegQueue<T>) -> Option<T> {
    queue.pop()
}

#[cfg(loom)]
#[derive(Debug)]
pub(crate) struct ObjectQueue<T> {
    items: loom::sync::Mutex<std::collections::VecDeque<T>>,
    capacity: Option<usize>,
}

#[cfg(loom)]
impl<T> ObjectQueue<T> {
    fn new(capacity: Option<usize>) -> Self {
        Self {
            items: loom::sync::Mutex::new(std::collections::VecDeque::new()),
            capacity,
        }
    }

    pub(crate) fn unbounded() -> Self {
        Self::new(None)
    }

    pub(crate) fn preallocated(capacity: usize) -> Self {
        Self::new(Some(capacity))
    }

    pub(crate) fn growing(capacity: usize) -> Self {
        Self::new(Some(capacity))
    }

    pub(crate) fn push(&self, value: T) -> Result<(), T> {
        let mut items = self.items.lock().unwrap();
        if self
            .capacity
            .is_some_and(|capacity| items.len() >= capacity)
        {
            return Err(value);
        }
        items.push_back(value);
        Ok(())
    }

    pub(crate) fn pop(&self) -> Option<T> {
        self.items.lock().unwrap().pop_front()
    }

    pub(crate) fn len(&self) -> usize {
        self.items.lock().unwrap().len()
    }
}

/// One step of a wait for another thread's few instructions (an object it
/// is moving in or out of a pool's queue): a `yield_now`, which under loom
/// lets the model run that thread.
#[inline]
pub(crate) fn yield_now() {
    #[cfg(not(loom))]
    std::thread::yield_now();
    #[cfg(loom)]
    loom::thread::yield_now();
}

/// A small index unique among the threads alive now, for per-thread
/// counters (the pool's statistics stripes); `None` while this thread's
/// thread-locals are being destroyed.
///
/// Claimed on a thread's first call from a lock-free bitmap of reusable
/// indices (lowest free first, so indices stay dense) and given back when
/// the thread exits; once the bitmap is full, fresh indices that are never
/// reused. The claim is an Acquire CAS and the give-back a Release
/// `fetch_and`, so a thread that inherits an index sees every write its
/// previous owner made under it: one writer per index at any time.
/// Normally the bitmap holds 4096 indices in std atomics and a std
/// thread-local gives the index back; under loom the same code runs over
/// loom atomics with a one-word bitmap and a loom thread-local (loom runs
/// its destructor when the loom thread ends), so the models check the
/// hand-over of an index from an exited thread to a new one.
#[inline]
pub(crate) fn thread_index() -> Option<usize> {
    thread_index_impl::SLOT
        .try_with(thread_index_impl::Slot::get)
        .ok()
}

mod thread_index_impl {
    use super::{ordering_unless, AtomicUsize, Ordering};
    use std::cell::Cell;

    const BITS: usize = usize::BITS as usize;
    /// Bitmap words: 4096 reusable indices.
    #[cfg(not(loom))]
    const WORDS: usize = 4096 / BITS;
    /// Bitmap words under loom: one word is more than a model's threads.
    #[cfg(loom)]
    const WORDS: usize = 1;
    /// Bit `i % BITS` of word `i / BITS`: index `i` belongs to a live thread.
    #[cfg(not(loom))]
    static IN_USE: [AtomicUsize; WORDS] = [const { AtomicUsize::new(0) }; WORDS];
    /// The next never-reused index, once the bitmap is full.
    #[cfg(not(loom))]
    static BEYOND: AtomicUsize = AtomicUsize::new(WORDS * BITS);

    /// Under loom: `IN_USE` and `BEYOND` of one execution.
    #[cfg(loom)]
    struct Tables {
        in_use: [AtomicUsize; WORDS],
        beyond: AtomicUsize,
    }

    // Under loom: fresh for each execution. Each `Slot` that claims keeps a
    // (std, so unmodelled) reference: loom's `join` returns before the
    // joined thread's thread-locals are destroyed, so a `Slot` may give its
    // index back after the model's main thread has dropped its lazy statics.
    #[cfg(loom)]
    loom::lazy_static! {
        static ref TABLES: std::sync::Arc<Tables> = std::sync::Arc::new(Tables {
            in_use: std::array::from_fn(|_| AtomicUsize::new(0)),
            beyond: AtomicUsize::new(WORDS * BITS),
        });
    }

    /// A `Slot` that has not claimed an index yet.
    const UNCLAIMED: usize = usize::MAX;
    /// The mutant that weakens the claim's Acquire and the give-back's
    /// Release to Relaxed: an inheriting thread may then miss its
    /// predecessor's last writes under the index.
    const RELAXED_HANDOVER: &str = "pool::thread_index_relaxed_handover";

    /// This thread's claim; gives the index back when the thread exits.
    /// Under loom it also holds the execution's [`Tables`] once it claims.
    pub(super) struct Slot(
        Cell<usize>,
        #[cfg(loom)] std::cell::OnceCell<std::sync::Arc<Tables>>,
    );

    #[cfg(not(loom))]
    thread_local! {
        pub(super) static SLOT: Slot = const { Slot(Cell::new(UNCLAIMED)) };
    }

    #[cfg(loom)]
    loom::thread_local! {
        pub(super) static SLOT: Slot = Slot(Cell::new(UNCLAIMED), std::cell::OnceCell::new());
    }

    impl Slot {
        #[inline]
        pub(super) fn get(&self) -> usize {
            let index = self.0.get();
            if index != UNCLAIMED {
                return index;
            }
            let index = claim(
                #[cfg(loom)]
                self.1.get_or_init(|| std::sync::Arc::clone(&TABLES)),
            );
            self.0.set(index);
            index
        }
    }

    #[cold]
    fn claim(#[cfg(loom)] tables: &Tables) -> usize {
        #[cfg(not(loom))]
        let (in_use, beyond) = (&IN_USE, &BEYOND);
        #[cfg(loom)]
        let (in_use, beyond) = (&tables.in_use, &tables.beyond);
        for (word_index, word) in in_use.iter().enumerate() {
            // Relaxed: a first guess for the CAS.
            let mut bits = word.load(Ordering::Relaxed);
            while bits != usize::MAX {
                let bit = (!bits).trailing_zeros() as usize;
                // Acquire: pairs with the previous owner's Release give-back,
                // so its writes under this index happen before ours.
                match word.compare_exchange_weak(
                    bits,
                    bits | 1 << bit,
                    ordering_unless(RELAXED_HANDOVER, Ordering::Acquire),
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return word_index * BITS + bit,
                    Err(now) => bits = now,
                }
            }
        }
        // Relaxed: only uniqueness matters; these indices are never reused.
        beyond.fetch_add(1, Ordering::Relaxed)
    }

    impl Drop for Slot {
        fn drop(&mut self) {
            #[cfg(not(loom))]
            let in_use = &IN_USE;
            // Under loom: no tables means this thread never claimed.
            #[cfg(loom)]
            let Some(in_use) = self.1.get().map(|tables| &tables.in_use) else {
                return;
            };
            let index = self.0.get();
            if index < WORDS * BITS {
                // Release: our writes under this index happen before the next
                // owner's Acquire claim.
                in_use[index / BITS].fetch_and(
                    !(1 << (index % BITS)),
                    ordering_unless(RELAXED_HANDOVER, Ordering::Release),
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// RunState support: 64-bit atomics and fences (the timestamps' seqlock), an
// `Arc` and `Mutex` (the copy-on-write callback list), and a futex wait with
// a timeout (`RunState::sleep`).
// ---------------------------------------------------------------------------

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU64};
#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Mutex, MutexGuard};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU64};
#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Mutex, MutexGuard};

// The registry of futures' wakers (the waiting core of the async waits):
// src/sync/wakers.rs.
mod wakers;
pub(crate) use wakers::{LazyWakers, WakerKey};

// A value boxed on first use, published with one CAS: src/sync/lazy_box.rs.
mod lazy_box;
pub(crate) use lazy_box::LazyBox;

// A mutex whose release is its last access to its memory (the children
// registry, freed by whichever user finds it empty): src/sync/lock.rs.
mod lock;
pub(crate) use lock::{Lock, LockGuard};

// The timed futex wait, native per platform (and, on macOS, the untimed
// wait and the wake beside it): src/sync/timed_wait.rs.
#[cfg(not(loom))]
mod timed_wait;

#[cfg(not(loom))]
impl Futex {
    /// Sleeps while the word equals `expected`, for at most `timeout`.
    ///
    /// `false`: the timeout elapsed (a zero timeout returns `false` at once).
    /// `true`: woken, the word changed, a signal, a spurious wake-up, or the
    /// platform's longest single wait was reached (a huge timeout such as
    /// `Duration::MAX` is cut to it, never overflowed). Callers loop on their
    /// own condition and re-check their deadline. Native and non-polling on
    /// Linux, Windows, FreeBSD and macOS (see `timed_wait`); `wake_all` wakes
    /// it like an untimed [`wait`](Futex::wait).
    #[inline]
    pub(crate) fn wait_timeout(&self, expected: u32, timeout: std::time::Duration) -> bool {
        timed_wait::wait_timeout(&self.word, expected, timeout)
    }

    /// As [`wait_timeout`](Futex::wait_timeout), until `deadline`: `None`
    /// waits with no timeout (as for an `Instant::checked_add` that
    /// overflowed), a deadline already past returns `false` at once.
    ///
    /// `false` only if the clock says the deadline has come: the OS's
    /// "timed out" is not trusted on its own (a timer that fires a little
    /// early, as `WaitOnAddress` may, or a timeout measured on another
    /// clock). Reported early, it reads as a spurious wake-up (`true`), and
    /// the caller's loop sleeps again for what is left. So every timed
    /// wait of the crate that goes through here never reports a time-out
    /// before its deadline.
    pub(crate) fn wait_until(&self, expected: u32, deadline: Option<std::time::Instant>) -> bool {
        let Some(deadline) = deadline else {
            self.wait(expected);
            return true;
        };
        until_by_clock(deadline, |left| self.wait_timeout(expected, left))
    }
}

/// The deadline half of [`Futex::wait_until`]: sleeps with `timed_wait`
/// (the OS's timed wait, given what is left) and reports a time-out
/// (`false`) only if the clock has reached `deadline`; an OS time-out
/// before it reads as a spurious wake-up (`true`).
#[cfg(not(loom))]
fn until_by_clock(
    deadline: std::time::Instant,
    timed_wait: impl FnOnce(std::time::Duration) -> bool,
) -> bool {
    let left = deadline.saturating_duration_since(std::time::Instant::now());
    if timed_wait(left) {
        return true;
    }
    // The OS says timed out (or `left` was zero): believe the clock.
    !left.is_zero() && std::time::Instant::now() < deadline
}

#[cfg(not(loom))]
impl Futex {
    /// [`wait_until`](Futex::wait_until), for `MultiOpen`'s bounded waits
    /// and the deadline runners' idle time-out: the same wait here; under loom it differs (see there).
    #[inline]
    pub(crate) fn wait_deadline(
        &self,
        expected: u32,
        deadline: Option<std::time::Instant>,
    ) -> bool {
        self.wait_until(expected, deadline)
    }
}

/// Under loom, `MultiOpen`'s bounded waits (and the deadline runners' idle
/// time-out): with no deadline, the untimed
/// [`wait`](Futex::wait) (`true`); with one, the timer fires at once
/// (`false`, no sleep), whatever the deadline: loom has no clock, so the
/// models explore a time-out at every point where a timed waiter would
/// sleep, against every interleaving of the threads it waits for. (The
/// wake half of a timed wait is the untimed wait's, modelled already.)
#[cfg(loom)]
impl Futex {
    pub(crate) fn wait_deadline(
        &self,
        expected: u32,
        deadline: Option<std::time::Instant>,
    ) -> bool {
        if deadline.is_none() {
            self.wait(expected);
            return true;
        }
        false
    }
}

/// Under loom: untimed (loom has no clock), as SPEC says: the wake-on-cancel
/// half of a timed wait is what the models check; timeouts are tested by the
/// ordinary tests.
#[cfg(loom)]
impl Futex {
    /// As [`wait`](Futex::wait): the timeout is ignored; `true` (woken).
    pub(crate) fn wait_timeout(&self, expected: u32, _timeout: std::time::Duration) -> bool {
        self.wait(expected);
        true
    }

    /// As [`wait`](Futex::wait): the deadline is ignored; `true` (woken).
    pub(crate) fn wait_until(&self, expected: u32, _deadline: Option<std::time::Instant>) -> bool {
        self.wait_timeout(expected, std::time::Duration::MAX)
    }
}
