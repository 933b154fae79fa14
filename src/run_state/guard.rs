//! The run guards: [`RunGuard`] and [`OwnedRunGuard`], which end the run
//! they started when dropped (`end_run`), and `RunState::run`/`run_owned`.

use std::fmt;
use std::sync::Arc;

use super::error::{CallbackPanicked, RunStateError};
use super::RunState;
use crate::sync::mutant;
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
    /// If the state is already running, the guard neither starts nor stops
    /// it (as the Python does for a nested `with`): see
    /// [`RunGuard::started`]. Never fails; panics of `on_start` callbacks
    /// are kept in [`RunGuard::start_panics`].
    ///
    /// The guard ends only the run it started: if another thread stopped
    /// that run (and perhaps started a new one) meanwhile, dropping the
    /// guard neither cancels nor stops anything, however many runs came
    /// and went while it lived (runs are numbered with 64 bits, checked
    /// atomically with the stop or cancel).
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
    /// ```
    pub fn run(&self) -> RunGuard<'_> {
        let (run, start_panics) = self.guard_start();
        RunGuard {
            runstate: self,
            run,
            start_panics,
        }
    }

    /// As [`run`](Self::run), for an `Arc<RunState>`: the guard owns a
    /// clone of the `Arc`, so it can move into another thread. It also
    /// makes the state the current state of the calling thread (see
    /// [`RunState::current`]) from before the start until after the stop.
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
    ///         # rs.cancel().unwrap();
    ///     }
    ///     // `run` drops here: the run stops
    /// })
    /// .join()
    /// .unwrap();
    /// assert!(rs.stopped());
    /// ```
    pub fn run_owned(self: &Arc<Self>) -> OwnedRunGuard {
        // The thread's current state from before the start to after the stop.
        let current = self.enter();
        let (run, start_panics) = self.guard_start();
        OwnedRunGuard {
            runstate: Arc::clone(self),
            run,
            start_panics,
            _current: current,
        }
    }

    /// Starts for a guard: the run's number if it started, and the panics of
    /// its callbacks.
    fn guard_start(&self) -> (Option<u64>, Option<CallbackPanicked>) {
        match self.start_run() {
            Ok((run, callbacks)) => (Some(run), callbacks.err()),
            Err(_) => (None, None),
        }
    }
}

/// Ends the guard's run, run number `run`: cancel first if unwinding, then
/// stop; neither if that run is no longer the current one (someone else
/// stopped it, and perhaps started another).
fn end_run(runstate: &RunState, run: u64) -> Result<(), RunStateError> {
    if std::thread::panicking() && !mutant("run_state::guard_no_cancel_on_panic") {
        // Callback panics are dropped here: there is nobody to report to
        // while unwinding.
        let _ = runstate.cancel_run(run);
    }
    runstate.stop_run(Some(run))
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
    /// The number of the run this guard started (`RunState::runs`); `None`
    /// if it did not start the run (or has ended it).
    run: Option<u64>,
    start_panics: Option<CallbackPanicked>,
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

    /// Did this guard start the run (and so will it stop it)? `false` if the
    /// state was already running.
    ///
    /// ```
    /// let rs = multiopen::RunState::new("job");
    /// let outer = rs.run();
    /// let inner = rs.run(); // nested: already running
    /// assert!(outer.started() && !inner.started());
    /// drop(inner);
    /// assert!(rs.is_running()); // the inner guard does not stop it
    /// ```
    pub fn started(&self) -> bool {
        self.run.is_some()
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

    /// Ends the run now and returns what [`RunState::stop`] returned; does
    /// nothing and returns `Ok` if this guard did not start the run. If its
    /// run was already stopped by someone else (even if another run has
    /// started since): [`RunStateError::NotRunning`], and nothing changes.
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
            Some(run) => self.runstate.stop_run(Some(run)),
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
            let _ = unwind::in_cleanup(|| end_run(self.runstate, run));
        }
    }
}

impl fmt::Debug for RunGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunGuard")
            .field("runstate", self.runstate)
            .field("started", &self.run.is_some())
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
    run: Option<u64>,
    start_panics: Option<CallbackPanicked>,
    /// Makes the state current on the thread that called `run_owned`;
    /// dropped after `Drop::drop` ends the run (fields drop after it).
    _current: super::CurrentGuard,
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
        self.run.is_some()
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
            Some(run) => self.runstate.stop_run(Some(run)),
            None => Ok(()),
        }
    }
}

impl Drop for OwnedRunGuard {
    fn drop(&mut self) {
        if let Some(run) = self.run {
            // As `RunGuard`'s.
            let _ = unwind::in_cleanup(|| end_run(&self.runstate, run));
        }
    }
}

impl fmt::Debug for OwnedRunGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedRunGuard")
            .field("runstate", &*self.runstate)
            .field("started", &self.run.is_some())
            .finish()
    }
}
