//! Running a function on a new thread under a `RunState` (the Python
//! `bg`): [`RunState::spawn`], [`spawn`], [`RunHandle`] and
//! [`SpawnError`].
//!
//! The state is started in the calling thread, before the thread is
//! created (so it reads running as soon as `spawn` returns, and a state
//! that is already running is refused at once); the function then runs on
//! the new thread with the state as that thread's
//! [current state](RunState::current); when it returns the state is
//! stopped, and if it panicked the state is cancelled first. Only then is
//! the result handed to the [`RunHandle`], so a `join` that returns always
//! finds the run stopped.
//!
//! # The result's hand-over
//!
//! The function's result (or its panic) goes into a slot beside a futex
//! word, `DONE | WAITING` (see the constants): the thread writes the slot,
//! then sets `DONE` with Release and wakes the handle only if `WAITING`
//! says it sleeps; the handle reads the slot only after an Acquire load that
//! sees `DONE`. Timed joins wait on the same word with the shim's timed
//! futex wait, so a join that times out leaves the result where it is for
//! a later join.

use std::borrow::Cow;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::{CallbackPanicked, RunStateError};
use super::RunState;
use crate::sync::{
    mutant, ordering_unless, Arc as SyncArc, Futex, JoinHandle, Ordering, ThreadBuilder, UnsafeCell,
};
use crate::unwind;

// ---------------------------------------------------------------------------
// The hand-over word (`Packet::state`, a futex word)
// ---------------------------------------------------------------------------

/// The result is in the slot: set once, by the spawned thread, with
/// Release, after it wrote the slot; never cleared.
const DONE: u32 = 1 << 0;
/// The handle sleeps (or is about to) on the word: set by the handle before
/// it sleeps; the thread, when it sets `DONE`, wakes it if this is set.
const WAITING: u32 = 1 << 1;

/// Where the spawned thread leaves its result for the handle.
struct Packet<T> {
    state: Futex,
    /// Written once by the spawned thread before `DONE`; read (taken) only
    /// by the handle's owner after it has seen `DONE`.
    result: UnsafeCell<Option<std::thread::Result<T>>>,
}

// SAFETY: the slot is written by one thread (the spawned one) before it
// publishes `DONE` with Release, and read only by the owner of the
// `RunHandle` (not `Clone`; its reading methods take `self`) after an
// Acquire load sees `DONE`: never accessed by two threads at once. `T` and
// the panic payload (`Send`) move between threads, hence `T: Send`.
unsafe impl<T: Send> Sync for Packet<T> {}

impl<T> Packet<T> {
    fn new() -> Self {
        Self {
            state: Futex::new(0),
            result: UnsafeCell::new(None),
        }
    }

    /// The spawned thread's one write: the result, then `DONE`.
    fn set(&self, result: std::thread::Result<T>) {
        // SAFETY: see `impl Sync`: before `DONE` only this thread touches
        // the slot, and it writes it once.
        self.result.with_mut(|slot| unsafe { *slot = Some(result) });
        // Release: the slot's write is visible to whoever sees `DONE` with
        // Acquire. A swap: `WAITING` is cleared too, as nobody sleeps once
        // `DONE` is set.
        let prev = self.state.swap(
            DONE,
            ordering_unless("run_state::spawn_done_relaxed", Ordering::Release),
        );
        if prev & WAITING != 0 && !mutant("run_state::spawn_done_no_wake") {
            self.state.wake_all();
        }
    }

    /// Is the result in? Acquire: pairs with `set`'s Release, so a `true`
    /// lets the caller read the slot.
    fn done(&self) -> bool {
        self.state.load(Ordering::Acquire) & DONE != 0
    }

    /// Waits until the result is in, or until `deadline` (`None`: no
    /// deadline); returns whether it is in.
    fn wait(&self, deadline: Option<Instant>) -> bool {
        loop {
            // Acquire: as `done`.
            let s = self.state.load(Ordering::Acquire);
            if s & DONE != 0 {
                return true;
            }
            if s & WAITING == 0 {
                // Relaxed: only announces the sleep; `set`'s swap reads it.
                if self
                    .state
                    .compare_exchange(s, s | WAITING, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
                {
                    continue;
                }
            }
            // Sleeps only while the word is still `WAITING` (no `DONE`):
            // `set`'s swap changes it, so its wake cannot be missed.
            if !self.state.wait_until(WAITING, deadline) {
                return self.done();
            }
        }
    }

    /// Takes the result. Only after `done` or `wait` returned true, by the
    /// handle's owner.
    fn take(&self) -> Option<std::thread::Result<T>> {
        // SAFETY: see `impl Sync`: `DONE` was seen with Acquire, so the
        // spawned thread's write happened before and it never touches the
        // slot again; the handle's owner is the only reader.
        self.result.with_mut(|slot| unsafe { (*slot).take() })
    }
}

impl<T> Drop for Packet<T> {
    fn drop(&mut self) {
        // A result nobody joined: a panic's payload is disposed of without
        // letting its own `Drop` panic out of here.
        if let Some(Err(payload)) = self.result.with_mut(|slot| unsafe {
            // SAFETY: `&mut self`: no other reference exists.
            (*slot).take()
        }) {
            unwind::drop_payload(payload);
        }
    }
}

// ---------------------------------------------------------------------------
// Spawning
// ---------------------------------------------------------------------------

impl RunState {
    /// Runs `f` on a new thread under this state (the Python `bg`):
    /// starts the state here, before creating the thread; on the thread,
    /// makes it the [current state](RunState::current) and calls `f` with
    /// it; when `f` returns, stops the state, cancelling it first if `f`
    /// panicked. The thread is named after the state (a NUL in the name,
    /// which a thread's name cannot hold, becomes U+FFFD).
    ///
    /// `f` gets `&Arc<RunState>`: it derefs to `&RunState` for polling, and
    /// clones into an `Arc` for whatever must outlive the call (an
    /// [`enter`](Self::enter), a nested `spawn`).
    ///
    /// The `on_start` callbacks run here, in the calling thread (their
    /// panics are in [`RunHandle::start_panics`]); `on_end` runs on the new
    /// thread, and so does `on_cancel` for the cancel made because `f`
    /// panicked (their panics there are dropped, as a
    /// [`RunGuard`](super::RunGuard)'s drop drops them). Any other cancel's
    /// `on_cancel` runs where every cancel runs it: in the cancelling
    /// thread (the caller of [`RunHandle::cancel`], of a parent's cancel,
    /// or a deadline's thread: see [`on_cancel`](Self::on_cancel)).
    ///
    /// Errors: [`SpawnError::Start`] if the state cannot start (it is
    /// running: nothing is spawned and nothing changes);
    /// [`SpawnError::Thread`] if the OS cannot create the thread (`f` never
    /// runs; the run it started is cancelled and stopped, as if `f` had
    /// panicked at once). Never panics; never blocks but for the start
    /// (see [`start`](Self::start)).
    ///
    /// Cost: a thread creation, an allocation for the result's hand-over,
    /// the start.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use multiopen::RunState;
    ///
    /// let rs = Arc::new(RunState::new("poller"));
    /// let handle = rs.spawn(|rs| {
    ///     let mut polls = 0u64;
    ///     while rs.sleep(Duration::from_millis(1)).is_ok() {
    ///         polls += 1;
    ///     }
    ///     polls
    /// })?;
    /// assert!(rs.is_running()); // started before `spawn` returned
    /// handle.cancel();
    /// let polls: u64 = handle.join().unwrap(); // Err would be its panic
    /// assert!(rs.stopped() && rs.cancelled());
    /// # let _ = polls;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn spawn<F, T>(self: &Arc<Self>, f: F) -> Result<RunHandle<T>, SpawnError>
    where
        F: FnOnce(&Arc<RunState>) -> T + Send + 'static,
        T: Send + 'static,
    {
        let (run, start_panics) = match self.start_run(false) {
            Ok((run, callbacks)) => (run, callbacks.err().map(Box::new)),
            Err(error) => return Err(SpawnError::Start(error)),
        };
        let packet = SyncArc::new(Packet::new());
        let thread = {
            let runstate = Arc::clone(self);
            let packet = SyncArc::clone(&packet);
            ThreadBuilder::new()
                .name(self.name().replace('\0', "\u{FFFD}"))
                .spawn(move || run_spawned(&runstate, run, f, &packet))
        };
        match thread {
            Ok(thread) => Ok(RunHandle {
                runstate: Arc::clone(self),
                packet,
                thread,
                start_panics,
            }),
            Err(error) => {
                // `f` never ran: end the run as a panic at its first line
                // would. Callback panics: nobody to report them to but the
                // error, which is about the thread.
                let _ = self.cancel_run(run);
                let _ = self.stop_run(Some(run));
                Err(SpawnError::Thread {
                    name: self.name().to_owned(),
                    error,
                })
            }
        }
    }
}

/// Runs `f` on a new thread under a new `RunState` named `name`: the same
/// as `Arc::new(RunState::new(name)).spawn(f)` (see [`RunState::spawn`]),
/// the Python `bg(func)`.
///
/// Errors: only [`SpawnError::Thread`] (a new state always starts).
///
/// ```
/// use multiopen::run_state;
///
/// let handle = run_state::spawn("adder", |rs| {
///     assert_eq!(rs.name(), "adder");
///     assert_eq!(std::thread::current().name(), Some("adder"));
///     2 + 2
/// })?;
/// let rs = std::sync::Arc::clone(handle.runstate());
/// assert_eq!(handle.join().unwrap(), 4);
/// assert!(rs.stopped() && !rs.cancelled());
/// # Ok::<(), multiopen::run_state::SpawnError>(())
/// ```
pub fn spawn<F, T>(name: impl Into<Cow<'static, str>>, f: F) -> Result<RunHandle<T>, SpawnError>
where
    F: FnOnce(&Arc<RunState>) -> T + Send + 'static,
    T: Send + 'static,
{
    Arc::new(RunState::new(name)).spawn(f)
}

/// The spawned thread's body: `f` under `runstate`'s run number `run`,
/// then the stop (cancel first on a panic), then the hand-over.
fn run_spawned<F, T>(runstate: &Arc<RunState>, run: u64, f: F, packet: &Packet<T>)
where
    F: FnOnce(&Arc<RunState>) -> T,
{
    let current = runstate.enter();
    let result = catch_unwind(AssertUnwindSafe(|| f(runstate)));
    // Callback panics are dropped: see `RunState::spawn`. Run-numbered, so
    // a run that someone else stopped (and perhaps restarted) meanwhile is
    // left alone, as a guard leaves it.
    if result.is_err() && !mutant("run_state::spawn_no_cancel_on_panic") {
        let _ = runstate.cancel_run(run);
    }
    let _ = runstate.stop_run(Some(run));
    // The scope ends after the stop, so `on_end` callbacks see the state as
    // current, as they do under `run_here`.
    drop(current);
    packet.set(result);
}

// ---------------------------------------------------------------------------
// RunHandle
// ---------------------------------------------------------------------------

/// A function running on its own thread under a [`RunState`]: see
/// [`RunState::spawn`]. Dropping it detaches the thread (the function runs
/// on, and its state still stops when it returns; its result is dropped).
///
/// Joining consumes the handle, so a result is taken once: a second `join`
/// does not compile.
///
/// ```compile_fail
/// let handle = multiopen::run_state::spawn("job", |_| ()).unwrap();
/// let _ = handle.join();
/// let _ = handle.join(); // error: use of moved value
/// ```
///
/// ```
/// use std::time::Duration;
/// use multiopen::run_state;
///
/// let handle = run_state::spawn("job", |rs| rs.sleep(Duration::from_secs(3600)).is_err())?;
/// // Not done within 1 ms: the handle comes back, the result is kept.
/// let handle = handle.join_timeout(Duration::from_millis(1)).unwrap_err();
/// handle.cancel();
/// assert_eq!(handle.join().unwrap(), true); // the sleep saw the cancel
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "dropping the handle detaches the thread; join it to get the result"]
pub struct RunHandle<T> {
    runstate: Arc<RunState>,
    packet: SyncArc<Packet<T>>,
    thread: JoinHandle<()>,
    /// Boxed: rarely there, and it keeps the handle (which a timed-out
    /// join returns in its `Err`) small.
    start_panics: Option<Box<CallbackPanicked>>,
}

impl<T> RunHandle<T> {
    /// The state the function runs under.
    ///
    /// ```
    /// let handle = multiopen::run_state::spawn("job", |_| ())?;
    /// assert_eq!(handle.runstate().name(), "job");
    /// # handle.join().unwrap();
    /// # Ok::<(), multiopen::run_state::SpawnError>(())
    /// ```
    pub fn runstate(&self) -> &Arc<RunState> {
        &self.runstate
    }

    /// Cancels the state: [`RunState::cancel`] on it. The function sees it
    /// when it next polls. A panic in an `on_cancel` callback goes to the
    /// panic hook, as with [`RunState::cancel`] (use
    /// [`RunState::try_cancel`] through [`runstate`](Self::runstate) to get
    /// it as a value). Never blocks.
    ///
    /// ```
    /// use std::time::Duration;
    /// let handle = multiopen::run_state::spawn("job", |rs| {
    ///     while rs.sleep(Duration::from_secs(3600)).is_ok() {}
    /// })?;
    /// handle.cancel();
    /// handle.join().unwrap();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cancel(&self) {
        self.runstate.cancel();
    }

    /// Has the function returned (or panicked) and its state stopped? Then
    /// a join returns at once. One atomic load; never blocks.
    ///
    /// ```
    /// let (tx, rx) = std::sync::mpsc::channel::<()>();
    /// let handle = multiopen::run_state::spawn("job", move |_| rx.recv())?;
    /// assert!(!handle.is_finished()); // waits for our message
    /// drop(tx);
    /// let handle = handle.join_timeout(std::time::Duration::MAX).ok().unwrap();
    /// # let _ = handle;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_finished(&self) -> bool {
        self.packet.done()
    }

    /// The panics of `on_start` callbacks when `spawn` started the state
    /// (they ran in the thread that called `spawn`).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use multiopen::RunState;
    ///
    /// let rs = Arc::new(RunState::new("job"));
    /// rs.on_start(|_| panic!("oops"));
    /// # let hook = std::panic::take_hook();
    /// # std::panic::set_hook(Box::new(|_| {}));
    /// let handle = rs.spawn(|_| ())?;
    /// # std::panic::set_hook(hook);
    /// assert_eq!(handle.start_panics().unwrap().panics, ["oops"]);
    /// handle.join().unwrap(); // the function ran all the same
    /// # Ok::<(), multiopen::run_state::SpawnError>(())
    /// ```
    pub fn start_panics(&self) -> Option<&CallbackPanicked> {
        self.start_panics.as_deref()
    }

    /// Waits for the function to return and its thread to exit; returns
    /// what it returned, or `Err` with its panic's payload (as
    /// [`std::thread::JoinHandle::join`]). When it returns, the state has
    /// stopped (cancelled first, if the function panicked).
    ///
    /// Blocks until then, untimed; see [`join_timeout`](Self::join_timeout).
    ///
    /// ```
    /// # let hook = std::panic::take_hook();
    /// # std::panic::set_hook(Box::new(|_| {}));
    /// let handle = multiopen::run_state::spawn("job", |_| -> u32 { panic!("bad input") })?;
    /// let rs = std::sync::Arc::clone(handle.runstate());
    /// let payload = handle.join().unwrap_err();
    /// # std::panic::set_hook(hook);
    /// assert_eq!(payload.downcast_ref::<&str>(), Some(&"bad input"));
    /// assert!(rs.stopped() && rs.cancelled());
    /// # Ok::<(), multiopen::run_state::SpawnError>(())
    /// ```
    pub fn join(self) -> std::thread::Result<T> {
        self.packet.wait(None);
        let result = self.take();
        // The thread has handed over its result; it only exits now. It
        // runs no user code that can panic out of it (`f` is caught).
        if let Err(payload) = self.thread.join() {
            unwind::drop_payload(payload);
        }
        result
    }

    /// As [`join`](Self::join), waiting at most `timeout`: `Ok` with the
    /// result once the function has returned and its state stopped (the
    /// thread then exits on its own, running only its thread-local
    /// destructors), or `Err` with the handle if `timeout` passed first:
    /// the result is kept, a later join gets it. A zero timeout only
    /// checks; `Duration::MAX` waits forever.
    ///
    /// Blocks at most `timeout` (plus the OS's wake-up latency), on the
    /// crate's timed futex wait.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let (tx, rx) = std::sync::mpsc::channel::<u32>();
    /// let handle = multiopen::run_state::spawn("job", move |_| rx.recv().unwrap())?;
    /// let handle = handle.join_timeout(Duration::ZERO).unwrap_err(); // not yet
    /// tx.send(7)?;
    /// assert_eq!(handle.join_timeout(Duration::MAX).ok().unwrap().unwrap(), 7);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn join_timeout(self, timeout: Duration) -> Result<std::thread::Result<T>, Self> {
        self.join_until(Instant::now().checked_add(timeout))
    }

    /// As [`join_timeout`](Self::join_timeout), until `deadline`: a
    /// deadline already past only checks.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    ///
    /// let handle = multiopen::run_state::spawn("job", |rs| {
    ///     while rs.sleep(Duration::from_secs(3600)).is_ok() {}
    /// })?;
    /// let start = Instant::now();
    /// let deadline = start + Duration::from_millis(5);
    /// let handle = handle.join_deadline(deadline).unwrap_err(); // timed out
    /// assert!(Instant::now() >= deadline);
    /// handle.cancel();
    /// handle.join().unwrap();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn join_deadline(self, deadline: Instant) -> Result<std::thread::Result<T>, Self> {
        self.join_until(Some(deadline))
    }

    fn join_until(self, deadline: Option<Instant>) -> Result<std::thread::Result<T>, Self> {
        if !self.packet.wait(deadline) {
            return Err(self);
        }
        // The thread is detached here (its `JoinHandle` dropped): it has
        // handed over its result and only exits now.
        Ok(self.take())
    }

    /// The result, once `DONE` has been seen.
    fn take(&self) -> std::thread::Result<T> {
        // `None` cannot happen (`DONE` is set only after the slot is
        // written); answered as a panic of the function rather than a
        // panic here.
        self.packet
            .take()
            .unwrap_or_else(|| Err(Box::new("the spawned thread left no result")))
    }
}

impl<T> fmt::Debug for RunHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunHandle")
            .field("runstate", &*self.runstate)
            .field("finished", &self.is_finished())
            .finish()
    }
}

// ---------------------------------------------------------------------------
// SpawnError
// ---------------------------------------------------------------------------

/// Why [`RunState::spawn`] (or [`spawn`]) did not spawn.
///
/// ```
/// use std::sync::Arc;
/// use multiopen::run_state::SpawnError;
/// use multiopen::{RunState, RunStateError};
///
/// let rs = Arc::new(RunState::new("job"));
/// let _run = rs.run_owned(); // running
/// let err = rs.spawn(|_| ()).unwrap_err();
/// assert!(matches!(err, SpawnError::Start(RunStateError::AlreadyRunning { .. })));
/// assert_eq!(err.to_string(), "cannot spawn: job is already running");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum SpawnError {
    /// The state could not start (it is running): nothing was spawned and
    /// nothing changed.
    Start(RunStateError),
    /// The OS could not create the thread. The function never ran; the
    /// state was started, then cancelled and stopped.
    Thread {
        /// The `RunState`'s name.
        name: String,
        /// What `std::thread::Builder::spawn` returned.
        error: std::io::Error,
    },
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Start(e) => write!(f, "cannot spawn: {e}"),
            Self::Thread { name, error } => write!(f, "{name}: cannot spawn a thread: {error}"),
        }
    }
}

/// The direct cause is in the message; `source()` goes on with its own
/// causes (the crate's rule: see the [`error`](crate::error) module).
impl std::error::Error for SpawnError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Start(_) => None,
            Self::Thread { error, .. } => error.source(),
        }
    }
}
