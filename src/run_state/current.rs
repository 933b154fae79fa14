//! The current thread's state (the Python `HasThreadState` /
//! `uses_runstate`): [`RunState::current`], [`RunState::with_current`],
//! [`RunState::try_current`], [`RunState::enter`] and [`CurrentGuard`].
//!
//! Each thread keeps a stack of the states it runs under. A scope pushes
//! one ([`enter`](RunState::enter), [`run_here`](RunState::run_here),
//! [`spawn`](RunState::spawn)) and pops it when it ends, however it ends
//! (return or unwind), so nested scopes restore the outer state in order.
//! Deep library code then polls the state without being handed it:
//! `RunState::with_current(|rs| rs.check())`.
//!
//! # Why `run()` does not set it
//!
//! The stack holds `Arc<RunState>`s, never borrowed pointers: a
//! [`RunGuard`](super::RunGuard) borrows its state, and a guard may be
//! `mem::forget`-ed (safe code) after which the state could move or be
//! dropped while the stack still pointed at it. So the scopes that set the
//! current state are those that hold an `Arc`: [`RunState::run_here`],
//! [`RunState::enter`] and [`RunState::spawn`].
//!
//! # Why `run_owned()` does not set it
//!
//! Its guard is made to move (into a thread, an async task). Had it set
//! the current state, it would be the making thread's until the guard
//! dropped, wherever the run went: on a tokio worker, every other task
//! polled there would read that state (and its cancel) as its own.
//! [`run_here`](RunState::run_here)'s guard is `run_owned`'s with a scope,
//! and is not `Send`.
//!
//! # A scope's guard dropped on another thread
//!
//! A [`CurrentGuard`] may move to another thread and be dropped there. Its state
//! stays current on the thread that entered it until then: the guard and
//! its stack entry share a flag, which the drop clears wherever it runs;
//! the entering thread skips entries whose flag is clear and removes them
//! at its next push or pop.

use std::cell::Cell;
use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;

use super::RunState;
use crate::sync::{mutant, thread_local, Arc as SyncArc, AtomicBool, Ordering};

/// The name of the state [`RunState::current`] and
/// [`RunState::with_current`] give a thread that runs under none.
pub(super) const DEFAULT_NAME: &str = "default";

/// One scope that made a state current on this thread.
struct Entry {
    state: Arc<RunState>,
    /// True while the scope's [`CurrentGuard`] lives (wherever it is).
    scope: SyncArc<AtomicBool>,
}

impl Entry {
    /// Is the scope still open? Relaxed: the flag publishes no data; a
    /// thread that reads it a moment late sees the state as current for
    /// that moment, as if the drop on the other thread came later.
    #[inline]
    fn open(&self) -> bool {
        self.scope.load(Ordering::Relaxed)
    }
}

/// This thread's stack of current states.
///
/// `Cell`s, taken and put back (`take`/`set`), never borrowed across user
/// code: nothing here can panic with "already borrowed", and no user code
/// (a `RunState`'s `Drop`, which drops its callbacks) runs while an entry
/// list is out of its cell.
struct Stack {
    /// Innermost last.
    entries: Cell<Vec<Entry>>,
    /// [`Reading`]s in progress on this thread: while nonzero, states
    /// removed from `entries` wait in `deferred` (a reader may be borrowing
    /// one).
    readers: Cell<usize>,
    deferred: Cell<Vec<Arc<RunState>>>,
    /// Is `deferred` non-empty? (Spares a reading's end the take.)
    any_deferred: Cell<bool>,
    /// The innermost entry's state and scope flag (pointers into their
    /// `Arc`s, which `entries` holds), refreshed by every push and pop: the
    /// readers' fast path. `None` if `entries` is empty.
    top: Cell<Option<(NonNull<RunState>, NonNull<AtomicBool>)>>,
}

impl Stack {
    fn new() -> Self {
        Self {
            entries: Cell::new(Vec::new()),
            readers: Cell::new(0),
            deferred: Cell::new(Vec::new()),
            any_deferred: Cell::new(false),
            top: Cell::new(None),
        }
    }

    /// Calls `f` with the entry list (taken out of its cell and put back).
    /// `f` must run no user code.
    #[inline]
    fn with_entries<R>(&self, f: impl FnOnce(&mut Vec<Entry>) -> R) -> R {
        let mut entries = self.entries.take();
        let out = f(&mut entries);
        self.top.set(entries.last().map(|e| {
            (
                NonNull::from(&*e.state),
                NonNull::from(&*e.scope as &AtomicBool),
            )
        }));
        self.entries.set(entries);
        out
    }

    /// The innermost open scope's state.
    fn top(&self) -> Option<Arc<RunState>> {
        self.with_entries(|entries| {
            let entry = entries.iter().rev().find(|e| e.open())?;
            Some(Arc::clone(&entry.state))
        })
    }

    /// As [`top`](Self::top), without the `Arc` clone: a pointer valid
    /// while this thread has a [`Reading`] in progress.
    #[inline]
    fn top_ptr(&self) -> Option<NonNull<RunState>> {
        if let Some((state, scope)) = self.top.get() {
            // SAFETY: `top` points into the `Arc`s of `entries`' last
            // entry, refreshed whenever `entries` changes, so they are
            // alive. Relaxed: as `Entry::open`.
            if unsafe { scope.as_ref() }.load(Ordering::Relaxed) {
                return Some(state);
            }
        }
        // No entry, or the innermost scope was closed on another thread.
        self.with_entries(|entries| {
            let entry = entries.iter().rev().find(|e| e.open())?;
            Some(NonNull::from(&*entry.state))
        })
    }

    /// Pushes `state` for the scope `scope`; removes closed scopes.
    fn push(&self, state: Arc<RunState>, scope: SyncArc<AtomicBool>) {
        let closed = self.with_entries(|entries| {
            let closed = remove_where(entries, |e| !e.open());
            entries.push(Entry { state, scope });
            closed
        });
        self.dispose(closed);
    }

    /// Removes the entry of `scope`, and every closed scope's.
    fn pop(&self, scope: &SyncArc<AtomicBool>) {
        let removed = self.with_entries(|entries| {
            remove_where(entries, |e| SyncArc::ptr_eq(&e.scope, scope) || !e.open())
        });
        self.dispose(removed);
    }

    /// Drops removed states now, or, while a reader may borrow one, once
    /// the last reader is done. Outside every cell: dropping the last
    /// `Arc` of a state drops its callbacks, user code that may itself
    /// enter or leave a scope.
    fn dispose(&self, removed: Vec<Arc<RunState>>) {
        if removed.is_empty() {
            return;
        }
        if self.readers.get() > 0 {
            let mut deferred = self.deferred.take();
            deferred.extend(removed);
            self.deferred.set(deferred);
            self.any_deferred.set(true);
        } else {
            drop(removed);
        }
    }
}

/// Removes the entries that `dead` picks, in order; returns their states.
fn remove_where(entries: &mut Vec<Entry>, dead: impl Fn(&Entry) -> bool) -> Vec<Arc<RunState>> {
    let mut removed = Vec::new();
    let mut i = 0;
    while i < entries.len() {
        if dead(&entries[i]) {
            removed.push(entries.remove(i).state);
        } else {
            i += 1;
        }
    }
    removed
}

// Through the shim: loom's thread-local under loom, so that each model
// thread has its own stack.
thread_local! {
    static CURRENT: Stack = Stack::new();
}

/// A borrow of this thread's innermost current state, for
/// [`RunState::with_current`]: while it lives, no state leaves this
/// thread's stack for good (removed ones wait in `deferred`), so the
/// pointer stays valid.
struct Reading {
    state: NonNull<RunState>,
}

impl Reading {
    /// Begins a reading if this thread runs under a state.
    #[inline]
    fn begin() -> Option<Self> {
        CURRENT
            .try_with(|stack| {
                let state = stack.top_ptr()?;
                stack.readers.set(stack.readers.get() + 1);
                Some(Self { state })
            })
            .ok()
            .flatten()
    }

    #[inline]
    fn runstate(&self) -> &RunState {
        // SAFETY: the pointer is to the `RunState` inside an `Arc` that
        // this thread's stack held when the reading began; while a reading
        // is in progress (`readers > 0`) the stack drops no `Arc` it
        // removes but keeps it in `deferred`, and the stack itself lives
        // until the thread exits, which cannot happen while this borrow
        // (of a value on this thread's stack) is in use.
        unsafe { self.state.as_ref() }
    }
}

impl Drop for Reading {
    #[inline]
    fn drop(&mut self) {
        let deferred = CURRENT
            .try_with(|stack| {
                let readers = stack.readers.get().saturating_sub(1);
                stack.readers.set(readers);
                if readers == 0 && stack.any_deferred.replace(false) {
                    stack.deferred.take()
                } else {
                    Vec::new()
                }
            })
            .unwrap_or_default();
        // Outside the cells, as in `Stack::dispose`.
        drop(deferred);
    }
}

impl RunState {
    /// The state the calling thread runs under: the innermost scope of
    /// [`enter`](Self::enter), [`run_here`](Self::run_here) or
    /// [`spawn`](Self::spawn) still open on this thread (the Python
    /// `RunState.default()`); if there is none, a new pending state named
    /// `"default"`, made for this call and shared with nobody, so it is
    /// never cancelled by anyone else (cancelling it cancels nothing that
    /// other code watches).
    ///
    /// A [`run`](Self::run) guard does not make its state current (it
    /// borrows the state; see the module docs), nor does a
    /// [`run_owned`](Self::run_owned) guard (it may move): use `run_here`
    /// on an `Arc<RunState>`, or `enter`.
    ///
    /// Cost: a thread-local read and an `Arc` clone (an atomic increment on
    /// the state's count, shared with every thread that clones it); with
    /// no current state, an allocation. [`with_current`](Self::with_current)
    /// costs less; [`try_current`](Self::try_current) never allocates.
    /// Never blocks, never fails.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use multiopen::RunState;
    ///
    /// assert_eq!(RunState::current().name(), "default"); // no scope yet
    /// let rs = Arc::new(RunState::new("job"));
    /// {
    ///     let _run = rs.run_here(); // starts it and makes it current
    ///     assert!(Arc::ptr_eq(&RunState::current(), &rs));
    /// }
    /// assert_eq!(RunState::current().name(), "default");
    /// ```
    pub fn current() -> Arc<RunState> {
        Self::try_current().unwrap_or_else(|| Arc::new(RunState::new(DEFAULT_NAME)))
    }

    /// The state the calling thread runs under, if any: as
    /// [`current`](Self::current) without the default.
    ///
    /// Cost: a thread-local read and, if there is one, an `Arc` clone.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use multiopen::RunState;
    ///
    /// assert!(RunState::try_current().is_none());
    /// let rs = Arc::new(RunState::new("job"));
    /// let _scope = rs.enter();
    /// assert_eq!(RunState::try_current().unwrap().name(), "job");
    /// ```
    pub fn try_current() -> Option<Arc<RunState>> {
        CURRENT.try_with(Stack::top).ok().flatten()
    }

    /// Calls `f` with the state the calling thread runs under (as
    /// [`current`](Self::current)), borrowed: no `Arc` clone, so threads
    /// that poll a shared state this way never write its cache lines. With
    /// no current state, `f` gets a new pending state named `"default"`,
    /// made on the stack for this call (a few stores; no clock read, no
    /// allocation). Returns what `f` returns.
    ///
    /// Cost with a current state: a thread-local read, a scan from the top
    /// of this thread's scope stack (normally one entry), and a counter
    /// increment and decrement (see the bench `current` in
    /// `benches/runstate.rs`). Blocks only if `f` does.
    ///
    /// `f` may enter and leave scopes, and even drop the guard of the scope
    /// whose state it was given: the state stays alive until `f` returns.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use multiopen::{Cancelled, RunState};
    ///
    /// /// Deep library code: no `RunState` parameter.
    /// fn step() -> Result<(), Cancelled> {
    ///     RunState::with_current(|rs| rs.check())?;
    ///     // ... one step of work ...
    ///     Ok(())
    /// }
    ///
    /// assert!(step().is_ok()); // no current state: never cancelled
    /// let rs = Arc::new(RunState::new("job"));
    /// let _run = rs.run_here();
    /// assert!(step().is_ok());
    /// rs.cancel();
    /// assert_eq!(step().unwrap_err().to_string(), "job was cancelled");
    /// # Ok::<(), multiopen::CallbackPanicked>(())
    /// ```
    pub fn with_current<R>(f: impl FnOnce(&RunState) -> R) -> R {
        match Reading::begin() {
            Some(reading) => f(reading.runstate()),
            None => f(&RunState::new(DEFAULT_NAME)),
        }
    }

    /// Makes this state the calling thread's current state (see
    /// [`current`](Self::current)) until the returned guard is dropped,
    /// without starting it (the Python `HasThreadState` context).
    ///
    /// Scopes nest: dropping the guard restores the state current before
    /// it, and guards dropped out of order each remove their own scope. A
    /// guard dropped on another thread ends its scope too (see the module
    /// docs); a guard that is `mem::forget`-ed leaves the state current on
    /// this thread until the thread exits.
    ///
    /// Cost: an allocation (the scope's flag) and a push on this thread's
    /// stack. Never blocks, never fails.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use multiopen::RunState;
    ///
    /// let outer = Arc::new(RunState::new("outer"));
    /// let inner = Arc::new(RunState::new("inner"));
    /// let a = outer.enter();
    /// {
    ///     let _b = inner.enter();
    ///     assert_eq!(RunState::current().name(), "inner");
    /// }
    /// assert_eq!(RunState::current().name(), "outer");
    /// drop(a);
    /// assert!(RunState::try_current().is_none());
    /// ```
    pub fn enter(self: &Arc<Self>) -> CurrentGuard {
        let scope = SyncArc::new(AtomicBool::new(true));
        let entry = SyncArc::clone(&scope);
        let state = Arc::clone(self);
        // If this thread's locals are gone (a guard made in a thread-local
        // destructor), the scope is simply not recorded.
        let _ = CURRENT.try_with(move |stack| stack.push(state, entry));
        CurrentGuard {
            runstate: Arc::clone(self),
            scope,
        }
    }
}

/// While alive, its state is the current state of the thread that made it:
/// see [`RunState::enter`].
///
/// ```
/// use std::sync::Arc;
/// use multiopen::RunState;
///
/// let rs = Arc::new(RunState::new("job"));
/// let scope = rs.enter();
/// assert_eq!(scope.runstate().name(), "job");
/// drop(scope);
/// assert!(RunState::try_current().is_none());
/// ```
#[must_use = "dropping the guard ends the scope at once"]
pub struct CurrentGuard {
    runstate: Arc<RunState>,
    /// Shared with this scope's stack entry: cleared when the guard drops.
    scope: SyncArc<AtomicBool>,
}

impl CurrentGuard {
    /// The state this guard makes current.
    ///
    /// ```
    /// let rs = std::sync::Arc::new(multiopen::RunState::new("job"));
    /// assert_eq!(rs.enter().runstate().name(), "job");
    /// ```
    pub fn runstate(&self) -> &Arc<RunState> {
        &self.runstate
    }
}

impl Drop for CurrentGuard {
    fn drop(&mut self) {
        // Relaxed: see `Entry::open`. On the entering thread the pop below
        // removes the entry anyway; on another thread this store is what
        // ends the scope.
        if !mutant("run_state::current_moved_guard_stays_open") {
            self.scope.store(false, Ordering::Relaxed);
        }
        let scope = &self.scope;
        let _ = CURRENT.try_with(|stack| stack.pop(scope));
    }
}

impl fmt::Debug for CurrentGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CurrentGuard")
            .field("runstate", &self.runstate.name())
            .finish()
    }
}
