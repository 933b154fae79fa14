//! The run guards: [`RunGuard`], [`OwnedRunGuard`] and [`LocalRunGuard`],
//! which hold a run and end it when the last of them is dropped
//! (`end_run`), and `RunState::run`/`run_owned`/`run_here`; the
//! cancel-on-drop guards [`DropGuard`] and
//! [`OwnedDropGuard`] (`RunState::drop_guard`/`drop_guard_owned`).

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use super::error::{CallbackPanicked, RunStateError};
use super::RunState;
use crate::sync::{mutant, Ordering};
use crate::unwind;

// ---------------------------------------------------------------------------
// Guards
// ---------------------------------------------------------------------------

impl RunState {
    // --- guards ---------------------------------------------------------------

    /// Starts a run that ends when the returned guard is dropped (the Python
    /// `cs.resources`'s context manager). If the scope panics, the guard
    /// cancels before it stops, so the state reads `cancelled`.
    ///
    /// # Sharing one state between workers
    ///
    /// If the state is already running, the guard does not start it: it
    /// joins the run ([`RunGuard::started`] is `false`). A run started by a
    /// guard ends when the *last* guard holding it is dropped, so workers
    /// that each call `run()` on one shared state keep it running while any
    /// of them still works: the first to finish does not stop it under the
    /// others. (Nested in one thread, as the Python's nested `with`: the
    /// inner guard ends first and changes nothing.) A guard that panics
    /// cancels the shared run, so the others are told to stop. A run
    /// started by [`start`](Self::start) is held by no guard: a guard that
    /// finds one does not stop it when dropped ([`stop`](Self::stop) ends
    /// it), but cancels it if the guard's scope panics, as any guard does.
    ///
    /// To watch or cancel each worker on its own, give each its own
    /// [`child`](Self::child) of a supervisor's state instead: cancelling
    /// the supervisor cancels them all, and
    /// [`wait_stopped`](Self::wait_stopped) on each child is its join.
    ///
    /// Never fails; panics of `on_start` callbacks are kept in
    /// [`RunGuard::start_panics`].
    ///
    /// The guard ends only the run it holds: if another thread stopped
    /// that run (and perhaps started a new one) meanwhile, dropping the
    /// guard neither cancels nor stops anything, however many runs came
    /// and went while it lived (runs are numbered with 64 bits, checked
    /// atomically with the stop or cancel). Starting, joining and ending
    /// each claim the timestamps briefly (see [`start`](Self::start)).
    ///
    /// ```
    /// use multiopen::{RunPhase, RunState};
    ///
    /// let rs = RunState::new("job");
    /// let result = std::panic::catch_unwind(|| {
    ///     let _run = rs.run();
    ///     # std::panic::set_hook(Box::new(|_| {}));
    ///     panic!("task failed");
    /// });
    /// # let _ = std::panic::take_hook();
    /// assert!(result.is_err());
    /// assert_eq!(rs.state(), RunPhase::Cancelled); // cancelled, then stopped
    /// assert_eq!(rs.reason().as_deref(), Some("panicked"));
    ///
    /// // Three workers share one state: it runs until the last one is done.
    /// let shared = RunState::new("pool");
    /// let (a, b, c) = (shared.run(), shared.run(), shared.run());
    /// assert!(a.started() && !b.started() && !c.started());
    /// drop(a); // the first to finish...
    /// assert!(shared.is_running()); // ...does not stop it under the others
    /// drop(c);
    /// drop(b); // the last one does
    /// assert!(shared.stopped());
    /// ```
    pub fn run(&self) -> RunGuard<'_> {
        let (run, started, start_panics) = self.guard_start();
        RunGuard {
            runstate: self,
            run,
            started,
            start_panics,
            unwinding: made_unwinding(),
        }
    }

    /// As [`run`](Self::run), for an `Arc<RunState>`: the guard owns a
    /// clone of the `Arc`, so it can move into another thread or an async
    /// task. Costs what `run` costs plus an `Arc` clone.
    ///
    /// It does not make the state the current state of any thread (see
    /// [`RunState::current`]): a guard that can move would leave it current
    /// on the thread that made it, not where the run goes (on a tokio
    /// worker, every other task polled there would read it). For that, use
    /// [`run_here`](Self::run_here) (the guard stays on its thread),
    /// [`spawn`](Self::spawn) (a new thread under the state), or
    /// [`enter`](Self::enter) where the work runs.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use multiopen::RunState;
    ///
    /// let rs = Arc::new(RunState::new("job"));
    /// let run = rs.run_owned();
    /// std::thread::spawn(move || {
    ///     let rs = run.runstate();
    ///     while !rs.cancelled() {
    ///         # rs.cancel();
    ///     }
    ///     // `run` drops here: the run stops
    /// })
    /// .join()
    /// .unwrap();
    /// assert!(rs.stopped());
    /// ```
    pub fn run_owned(self: &Arc<Self>) -> OwnedRunGuard {
        self.owned_guard(None)
    }

    /// As [`run_owned`](Self::run_owned), and the state is the calling
    /// thread's current state (see [`RunState::current`]) from before the
    /// start (so `on_start` callbacks see it) until after the stop: the
    /// Python `with runstate:`. The guard cannot leave the thread (it is
    /// not `Send`). Costs what `run_owned` costs plus a push onto the
    /// thread's stack of current states and a pop (no atomic RMW but the
    /// `Arc` clone they hold).
    ///
    /// For synchronous code: not `Send` keeps it out of a multi-thread
    /// executor's tasks, but a task that stays on one thread (`block_on`,
    /// `join!`, a tokio `LocalSet`) could hold it across an `.await`, and
    /// every other future polled on that thread meanwhile would read the
    /// state (and its cancel) as its own, as under the `run_owned` that set
    /// it. In async code, use `run_owned` and pass the state (or `enter` it
    /// between awaits). A guard that is `mem::forget`-ed leaves the state
    /// running and current on this thread until the thread exits.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use multiopen::RunState;
    ///
    /// fn deep_library_code() -> Result<(), multiopen::Cancelled> {
    ///     RunState::with_current(|rs| rs.check()) // no parameter needed
    /// }
    ///
    /// let rs = Arc::new(RunState::new("job"));
    /// {
    ///     let _run = rs.run_here(); // started, and current on this thread
    ///     assert_eq!(RunState::current().name(), "job");
    ///     assert!(deep_library_code().is_ok());
    ///     rs.cancel();
    ///     assert!(deep_library_code().is_err());
    /// } // stopped, then no longer current
    /// assert!(rs.stopped());
    /// assert!(RunState::try_current().is_none());
    /// ```
    ///
    /// ```compile_fail
    /// // The guard stays on its thread:
    /// let rs = std::sync::Arc::new(multiopen::RunState::new("job"));
    /// let run = rs.run_here();
    /// std::thread::spawn(move || drop(run));
    /// ```
    pub fn run_here(self: &Arc<Self>) -> LocalRunGuard {
        // The thread's current state from before the start to after the stop.
        let current = self.enter();
        LocalRunGuard {
            guard: self.owned_guard(Some(current)),
            _not_send: PhantomData,
        }
    }

    /// `run_owned`'s guard, holding `current` (if any) until after its stop.
    fn owned_guard(self: &Arc<Self>, current: Option<super::CurrentGuard>) -> OwnedRunGuard {
        let (run, started, start_panics) = self.guard_start();
        OwnedRunGuard {
            runstate: Arc::clone(self),
            run,
            started,
            start_panics,
            unwinding: made_unwinding(),
            _current: current,
        }
    }

    /// Starts or joins a run for a guard: the number of the run it holds
    /// (if any), whether it started it, and the panics of its callbacks.
    ///
    /// A run that ends between our failed start and our join (its last
    /// guard left meanwhile) is not joined: we start a new one, so a guard
    /// never holds nothing while the state is stopped because it came a
    /// moment too late. Each retry follows another thread's start or stop.
    fn guard_start(&self) -> (Option<Hold>, bool, Option<CallbackPanicked>) {
        loop {
            match self.start_run(true) {
                Ok((run, callbacks)) => {
                    let hold = Hold { run, holder: true };
                    return (Some(hold), true, callbacks.err());
                }
                Err(RunStateError::AlreadyRunning { .. }) => match self.join_run() {
                    Ok(hold) => return (Some(hold), false, None),
                    Err(_) if mutant("run_state::guard_join_gives_up") => {
                        // The bug: the run ended under us; hold nothing.
                        return (None, false, None);
                    }
                    Err(_) => continue, // it ended under us: start one
                },
                Err(_) => return (None, false, None),
            }
        }
    }

    /// Joins the run in progress: as one more holder if a guard started it,
    /// else (`start()` started it: no guard holds it) only to cancel it if
    /// the guard's scope panics. `Err` if it is not running (any more).
    fn join_run(&self) -> Result<Hold, RunStateError> {
        self.claim(false, None)?;
        // Relaxed, all: `guards` and `runs` change only under TIMING, which
        // we hold (our Acquire claim follows their last change).
        let cold = self.cold();
        let guards = cold.guards.load(Ordering::Relaxed);
        let holder = guards > 0;
        if holder {
            cold.guards.store(guards + 1, Ordering::Relaxed);
        }
        let run = cold.runs.load(Ordering::Relaxed);
        self.unclaim();
        Ok(Hold { run, holder })
    }
}

/// The run a guard is in: its number (`RunState::runs`), and whether the
/// guard is one of its holders (the last of whom stops it). `holder` is
/// `false` for a run that `start()` started, which no guard holds: the
/// guard only cancels it if its scope panics
/// (`a_guard_in_a_started_run_cancels_it_if_its_scope_panics`).
#[derive(Debug, Clone, Copy)]
struct Hold {
    run: u64,
    holder: bool,
}

/// Identifies the calling thread while it lives: the address of a
/// thread-local of its own (`const`, without a destructor, so readable
/// even while the thread's locals are being destroyed; 0 if not).
fn thread_mark() -> usize {
    std::thread_local! {
        static MARK: u8 = const { 0 };
    }
    MARK.try_with(|mark| std::ptr::from_ref(mark) as usize)
        .unwrap_or(0)
}

/// For a guard being made: the thread it is made on if that thread is
/// unwinding now (cleanup code in a `Drop`), else `None`.
fn made_unwinding() -> Option<usize> {
    std::thread::panicking().then(thread_mark)
}

/// Ends a guard's hold on its run: cancel it first if the scope
/// is unwinding from a panic (the thread is panicking now, and is not the
/// thread that was already unwinding when the guard was made:
/// `made_unwinding`, as std's `MutexGuard` poisons only then; a guard made
/// and dropped by cleanup code that runs during an unrelated unwind, in a
/// `Drop`, ends its run cleanly, and one made so but moved to another
/// thread that then panics is cancelled); then, if the guard is a holder
/// and the last one, stop it. Neither if that run is no longer the current one
/// (someone else stopped it, and perhaps started another): then
/// `NotRunning`.
fn end_run(
    runstate: &RunState,
    Hold { run, holder }: Hold,
    made_unwinding: Option<usize>,
) -> Result<(), RunStateError> {
    if std::thread::panicking()
        && made_unwinding.is_none_or(|made_on| made_on != thread_mark())
        && !mutant("run_state::guard_no_cancel_on_panic")
    {
        // Callback panics are dropped here: there is nobody to report to
        // while unwinding.
        let _ = runstate.cancel_run(run);
    }
    if !holder {
        return Ok(()); // `start()`'s run: `stop()` ends it
    }
    let claimed = runstate.claim(false, Some((run, "run_state::guard_ignores_run")))?;
    // Relaxed: under TIMING, as in `join_run`.
    let cold = runstate.cold();
    let left = cold.guards.load(Ordering::Relaxed).saturating_sub(1);
    cold.guards.store(left, Ordering::Relaxed);
    if left > 0 {
        // Others still hold the run.
        runstate.unclaim();
        return Ok(());
    }
    runstate.stop_claimed(claimed)
}

/// A run that stops when this guard is dropped: see [`RunState::run`].
///
/// ```
/// use multiopen::RunState;
///
/// let rs = RunState::new("job");
/// let run = rs.run();
/// assert!(run.started());
/// run.stop()?; // the same as dropping it, with the result
/// assert!(rs.stopped());
/// # Ok::<(), multiopen::RunStateError>(())
/// ```
#[must_use = "dropping the guard stops the run at once"]
pub struct RunGuard<'a> {
    runstate: &'a RunState,
    /// The run this guard is in (see `Hold`); `None` once the guard has
    /// ended its hold (or found no run to join).
    run: Option<Hold>,
    /// Did this guard start the run?
    started: bool,
    start_panics: Option<CallbackPanicked>,
    /// The thread that made the guard, if it was unwinding then (cleanup
    /// code in a `Drop`): a drop there never cancels, since a panic of the
    /// guard's own scope cannot be told from the unwind it was made in
    /// (see `end_run`).
    unwinding: Option<usize>,
}

impl<'a> RunGuard<'a> {
    /// The `RunState`.
    ///
    /// ```
    /// let rs = multiopen::RunState::new("job");
    /// let run = rs.run();
    /// assert_eq!(run.runstate().name(), "job");
    /// ```
    pub fn runstate(&self) -> &'a RunState {
        self.runstate
    }

    /// Did this guard start the run? `false` if the state was already
    /// running (the guard joined the run, see [`RunState::run`]).
    ///
    /// ```
    /// let rs = multiopen::RunState::new("job");
    /// let outer = rs.run();
    /// let inner = rs.run(); // nested: already running
    /// assert!(outer.started() && !inner.started());
    /// drop(inner);
    /// assert!(rs.is_running()); // the outer guard still holds it
    /// ```
    pub fn started(&self) -> bool {
        self.started
    }

    /// The panics of `on_start` callbacks when this guard started the run.
    ///
    /// ```
    /// let rs = multiopen::RunState::new("job");
    /// rs.on_start(|_| panic!("oops"));
    /// # let hook = std::panic::take_hook();
    /// # std::panic::set_hook(Box::new(|_| {}));
    /// let run = rs.run();
    /// # std::panic::set_hook(hook);
    /// assert!(run.started()); // started all the same
    /// assert_eq!(run.start_panics().unwrap().panics, ["oops"]);
    /// ```
    pub fn start_panics(&self) -> Option<&CallbackPanicked> {
        self.start_panics.as_ref()
    }

    /// Ends this guard's hold on the run now: if it was the last guard
    /// holding it, stops it and returns what [`RunState::stop`] returned;
    /// otherwise (other guards hold it, or it was started by `start()`)
    /// `Ok`, and the run goes on. If its run was already stopped by
    /// someone else (even if another run has started since):
    /// [`RunStateError::NotRunning`], and nothing changes.
    ///
    /// ```
    /// let rs = multiopen::RunState::new("job");
    /// let run = rs.run();
    /// rs.stop()?; // someone else stopped it...
    /// rs.start()?; // ...and started a run of their own
    /// assert!(run.stop().is_err()); // NotRunning: not this guard's run
    /// assert!(rs.is_running()); // theirs goes on
    /// # Ok::<(), multiopen::RunStateError>(())
    /// ```
    pub fn stop(mut self) -> Result<(), RunStateError> {
        match self.run.take() {
            Some(run) => end_run(self.runstate, run, self.unwinding),
            None => Ok(()),
        }
    }
}

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        if let Some(run) = self.run {
            // `end_run` runs callbacks (caught) and drops callback lists
            // (user `Drop`s): `in_cleanup` makes sure nothing of it can
            // panic out of this `Drop` while the thread unwinds (an abort).
            let _ = unwind::in_cleanup(|| end_run(self.runstate, run, self.unwinding));
        }
    }
}

impl fmt::Debug for RunGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunGuard")
            .field("runstate", self.runstate)
            .field("started", &self.started)
            .finish()
    }
}

/// A run that stops when this guard is dropped, holding an
/// `Arc<RunState>`: see [`RunState::run_owned`].
///
/// ```
/// use std::sync::Arc;
/// use multiopen::RunState;
///
/// let rs = Arc::new(RunState::new("job"));
/// let run = rs.run_owned();
/// let worker = std::thread::spawn(move || {
///     assert!(run.runstate().is_running());
/// }); // the guard moved into the thread and dropped there
/// worker.join().unwrap();
/// assert!(rs.stopped());
/// ```
#[must_use = "dropping the guard stops the run at once"]
pub struct OwnedRunGuard {
    runstate: Arc<RunState>,
    /// As [`RunGuard`]'s.
    run: Option<Hold>,
    /// As [`RunGuard`]'s.
    started: bool,
    start_panics: Option<CallbackPanicked>,
    /// As [`RunGuard`]'s.
    unwinding: Option<usize>,
    /// For [`RunState::run_here`]: makes the state current on the thread
    /// that called it; dropped after `Drop::drop` ends the run (fields drop
    /// after it). `None` for `run_owned`.
    _current: Option<super::CurrentGuard>,
}

impl OwnedRunGuard {
    /// The `RunState`.
    ///
    /// ```
    /// let rs = std::sync::Arc::new(multiopen::RunState::new("job"));
    /// assert_eq!(rs.run_owned().runstate().name(), "job");
    /// ```
    pub fn runstate(&self) -> &Arc<RunState> {
        &self.runstate
    }

    /// Did this guard start the run? See [`RunGuard::started`].
    ///
    /// ```
    /// let rs = std::sync::Arc::new(multiopen::RunState::new("job"));
    /// let outer = rs.run_owned();
    /// assert!(outer.started() && !rs.run_owned().started());
    /// ```
    pub fn started(&self) -> bool {
        self.started
    }

    /// See [`RunGuard::start_panics`].
    ///
    /// ```
    /// let rs = std::sync::Arc::new(multiopen::RunState::new("job"));
    /// assert!(rs.run_owned().start_panics().is_none());
    /// ```
    pub fn start_panics(&self) -> Option<&CallbackPanicked> {
        self.start_panics.as_ref()
    }

    /// See [`RunGuard::stop`].
    ///
    /// ```
    /// let rs = std::sync::Arc::new(multiopen::RunState::new("job"));
    /// rs.run_owned().stop()?;
    /// assert!(rs.stopped());
    /// # Ok::<(), multiopen::RunStateError>(())
    /// ```
    pub fn stop(mut self) -> Result<(), RunStateError> {
        match self.run.take() {
            Some(run) => end_run(&self.runstate, run, self.unwinding),
            None => Ok(()),
        }
    }
}

impl Drop for OwnedRunGuard {
    fn drop(&mut self) {
        if let Some(run) = self.run {
            // As `RunGuard`'s.
            let _ = unwind::in_cleanup(|| end_run(&self.runstate, run, self.unwinding));
        }
    }
}

impl fmt::Debug for OwnedRunGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedRunGuard")
            .field("runstate", &*self.runstate)
            .field("started", &self.started)
            .finish()
    }
}

/// A run that stops when this guard is dropped, with the state current on
/// the thread that made it until then: see [`RunState::run_here`]. Not
/// `Send`. Derefs to [`OwnedRunGuard`] for `runstate()`, `started()` and
/// `start_panics()`.
///
/// ```
/// use std::sync::Arc;
/// use multiopen::RunState;
///
/// let rs = Arc::new(RunState::new("job"));
/// let run = rs.run_here();
/// assert!(run.started() && run.runstate().is_running());
/// run.stop()?; // stopped, then no longer current
/// assert!(rs.stopped() && RunState::try_current().is_none());
/// # Ok::<(), multiopen::RunStateError>(())
/// ```
#[must_use = "dropping the guard stops the run at once"]
pub struct LocalRunGuard {
    /// The run, holding the thread's current-state scope.
    guard: OwnedRunGuard,
    /// Not `Send`: the scope belongs to this thread's stack.
    _not_send: PhantomData<*const ()>,
}

impl LocalRunGuard {
    /// Stops the run now (then leaves the current-state scope): see
    /// [`RunGuard::stop`], whose errors it returns.
    ///
    /// ```
    /// let rs = std::sync::Arc::new(multiopen::RunState::new("job"));
    /// rs.run_here().stop()?;
    /// assert!(rs.stopped());
    /// # Ok::<(), multiopen::RunStateError>(())
    /// ```
    pub fn stop(self) -> Result<(), RunStateError> {
        self.guard.stop()
    }
}

impl std::ops::Deref for LocalRunGuard {
    type Target = OwnedRunGuard;

    fn deref(&self) -> &OwnedRunGuard {
        &self.guard
    }
}

impl fmt::Debug for LocalRunGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalRunGuard")
            .field("runstate", &*self.guard.runstate)
            .field("started", &self.guard.started)
            .finish()
    }
}

// ---------------------------------------------------------------------------
// Cancel on drop
// ---------------------------------------------------------------------------

impl RunState {
    /// A guard that cancels this state when dropped, unless
    /// [`disarm`](DropGuard::disarm)ed first (tokio-util's
    /// `CancellationToken::drop_guard`): ties a cancel to a scope, so that
    /// leaving it in any way (return, `?`, panic) tells the workers to stop.
    ///
    /// Costs nothing until dropped; the drop is a [`cancel`](Self::cancel)
    /// (which never panics, also while unwinding).
    ///
    /// ```
    /// use multiopen::RunState;
    ///
    /// let workers = RunState::new("workers");
    /// {
    ///     let _cancel_on_exit = workers.drop_guard();
    ///     // ... supervise; an early return or a panic here cancels ...
    /// }
    /// assert!(workers.cancelled());
    ///
    /// let kept = RunState::new("kept");
    /// let guard = kept.drop_guard();
    /// let rs = guard.disarm(); // the scope ended well: do not cancel
    /// assert!(!rs.cancelled());
    /// ```
    pub fn drop_guard(&self) -> DropGuard<'_> {
        DropGuard {
            runstate: Some(self),
        }
    }

    /// As [`drop_guard`](Self::drop_guard), holding a clone of the `Arc`
    /// (so the guard can move into another thread).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use multiopen::RunState;
    ///
    /// let rs = Arc::new(RunState::new("job"));
    /// let guard = rs.drop_guard_owned();
    /// std::thread::spawn(move || drop(guard)).join().unwrap();
    /// assert!(rs.cancelled());
    /// ```
    pub fn drop_guard_owned(self: &Arc<Self>) -> OwnedDropGuard {
        OwnedDropGuard {
            runstate: Some(Arc::clone(self)),
        }
    }
}

/// Cancels its [`RunState`] when dropped unless disarmed: see
/// [`RunState::drop_guard`].
///
/// ```
/// let rs = multiopen::RunState::new("job");
/// drop(rs.drop_guard());
/// assert!(rs.cancelled());
/// ```
#[must_use = "dropping the guard cancels at once"]
pub struct DropGuard<'a> {
    /// `None` once disarmed.
    runstate: Option<&'a RunState>,
}

impl<'a> DropGuard<'a> {
    /// Gives up the cancel: the guard is consumed without cancelling, and
    /// the `RunState` is returned.
    ///
    /// ```
    /// let rs = multiopen::RunState::new("job");
    /// assert_eq!(rs.drop_guard().disarm().name(), "job");
    /// assert!(!rs.cancelled());
    /// ```
    pub fn disarm(mut self) -> &'a RunState {
        let runstate = self.runstate.take();
        runstate.unwrap_or_else(|| unreachable!("armed until disarm, which consumes the guard"))
    }
}

impl Drop for DropGuard<'_> {
    fn drop(&mut self) {
        if let Some(runstate) = self.runstate.take() {
            // `cancel` catches its callbacks' panics; `in_cleanup` covers
            // the rest while unwinding.
            let _ = unwind::in_cleanup(|| runstate.cancel());
        }
    }
}

impl fmt::Debug for DropGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DropGuard")
            .field("runstate", &self.runstate)
            .finish()
    }
}

/// Cancels its [`RunState`] when dropped unless disarmed, holding an
/// `Arc<RunState>`: see [`RunState::drop_guard_owned`].
///
/// ```
/// let rs = std::sync::Arc::new(multiopen::RunState::new("job"));
/// drop(rs.drop_guard_owned());
/// assert!(rs.cancelled());
/// ```
#[must_use = "dropping the guard cancels at once"]
pub struct OwnedDropGuard {
    /// `None` once disarmed.
    runstate: Option<Arc<RunState>>,
}

impl OwnedDropGuard {
    /// See [`DropGuard::disarm`].
    ///
    /// ```
    /// let rs = std::sync::Arc::new(multiopen::RunState::new("job"));
    /// let back = rs.drop_guard_owned().disarm();
    /// assert!(!back.cancelled());
    /// ```
    pub fn disarm(mut self) -> Arc<RunState> {
        let runstate = self.runstate.take();
        runstate.unwrap_or_else(|| unreachable!("armed until disarm, which consumes the guard"))
    }
}

impl Drop for OwnedDropGuard {
    fn drop(&mut self) {
        if let Some(runstate) = self.runstate.take() {
            // As `DropGuard`'s.
            let _ = unwind::in_cleanup(|| runstate.cancel());
        }
    }
}

impl fmt::Debug for OwnedDropGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedDropGuard")
            .field("runstate", &self.runstate)
            .finish()
    }
}
