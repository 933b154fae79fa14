//! [`RunState`]: a task that starts, may be asked to stop, and stops.
//!
//! A `RunState` is shared between the thread that runs a task and any
//! number of threads that watch or control it. The worker polls
//! [`cancelled`](RunState::cancelled) (or [`check`](RunState::check)) in its
//! loop; any thread may [`cancel`](RunState::cancel) it. Every query is one
//! atomic load of a word that changes only on transitions (and once when a
//! thread announces that it is about to sleep on it), so polling from a hot
//! loop costs what loading an `AtomicBool` costs; `cancel` is one atomic
//! `fetch_or` and wakes every thread sleeping in [`sleep`](RunState::sleep)
//! or [`wait_while_paused`](RunState::wait_while_paused), with a futex wake
//! issued only if some thread sleeps.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use multiopen::RunState;
//!
//! let rs = Arc::new(RunState::new("monitor"));
//! let worker = {
//!     let rs = Arc::clone(&rs);
//!     std::thread::spawn(move || {
//!         let _run = rs.run(); // starts now, stops when dropped
//!         let mut polls = 0u64;
//!         // Poll every 10 ms until cancelled; `sleep` returns at once on cancel.
//!         while rs.sleep(Duration::from_millis(10)).is_ok() {
//!             polls += 1;
//!         }
//!         polls
//!     })
//! };
//! while !rs.is_running() && !rs.stopped() {
//!     std::thread::yield_now(); // wait for the worker to start
//! }
//! rs.cancel();
//! worker.join().unwrap();
//! assert!(rs.stopped() && rs.cancelled());
//! assert_eq!(rs.state().to_string(), "cancelled");
//! # Ok::<(), multiopen::CallbackPanicked>(())
//! ```
//!
//! # The cycle
//!
//! `pending → running (⇄ paused) → stopping → cancelled` when cancelled, or
//! `pending → running → stopped` when not; [`start`](RunState::start) after a
//! stop begins a new run, and [`total_time`](RunState::total_time) sums them
//! all. Misuse is an error value, never a panic: starting a running state,
//! stopping one that is not running, pausing one that is not running or is
//! cancelled, resuming one that is not paused. `cancel` is never refused:
//! on a state that is not running it is kept for the next run, which
//! begins cancelled (unlike the Python, whose `start` clears it: an early
//! Ctrl-C would be lost); the start after a cancelled run's stop begins
//! clean.
//!
//! # The cancellation tree
//!
//! [`child`](RunState::child) makes a state that is cancelled with its
//! parent (at once, with the parent's [`reason`](RunState::reason)), never
//! the reverse; [`cancel_with`](RunState::cancel_with) gives a reason;
//! [`cancel_after`](RunState::cancel_after) a deadline;
//! [`wait_cancelled`](RunState::wait_cancelled) and
//! [`wait_stopped`](RunState::wait_stopped) block until the cancel or the
//! end of the run; [`drop_guard`](RunState::drop_guard) cancels when a
//! scope is left. To run several workers under one supervisor, give each
//! a child: cancel the supervisor to stop them all, `wait_stopped` each to
//! join it. (Workers that share one state through [`run`](RunState::run)
//! guards hold the run together: it stops when the last one ends.)
//!
//! # Clocks and timestamps
//!
//! Durations are measured on the monotonic clock ([`Instant`](std::time::Instant)): each
//! `RunState` keeps the `Instant` of its creation and stores nanoseconds
//! since then in `AtomicU64`s. Wall-clock times ([`SystemTime`], as
//! nanoseconds since the Unix epoch, also in `AtomicU64`s) are read at each
//! start; the stop time is the start time plus the run's monotonic
//! duration, so `stop_time - start_time == run_time` even if the system
//! clock is stepped during a run. A new start reads the system clock again
//! but never goes before the previous stop: the start and stop times of a
//! `RunState` never decrease. (A system clock set before 1970 reads as the
//! epoch.)
//!
//! The timestamps of a start or stop are published together with its flags:
//! they sit in two slots, the transition writes the spare one and then, in
//! the same atomic step that changes the state, makes it the live one. A
//! reader checks that no transition was published while it read (a
//! seqlock over the state word), so `start_time`, `stop_time`, `run_time`
//! and `total_time` are each computed from one consistent record; they never
//! wait for a writer, and retry only if a transition was published during
//! their read. Two calls (say `start_time()` then `stop_time()`) may see
//! different runs if a transition comes between them. For a run in
//! progress, `run_time` and `total_time` read the clock at the call; a stop
//! that races such a call reads the clock a moment before it publishes, so
//! the run's recorded length can be shorter than a value just returned by
//! that moment (nanoseconds, unless the stopping thread is preempted
//! there). Recorded times (`start_time`, `stop_time`, and both durations
//! once stopped) are exact and never decrease.
//!
//! Starts and stops are serialised with each other: one that finds another
//! start or stop publishing its timestamps (a handful of stores; no user
//! code runs there) sleeps on the futex until it is done. Queries, `cancel`,
//! `pause` and `resume` never wait.
//!
//! # A cancel is never lost to a restart
//!
//! A thread in [`sleep`](RunState::sleep), or blocked in
//! [`check`](RunState::check) / [`wait_while_paused`](RunState::wait_while_paused)
//! on a paused run, returns `Err(Cancelled)` (or reports the cancel) if a
//! cancel came after it began waiting, even if the run was then stopped and
//! started again (which clears the flag) before the waiter woke: every
//! start that clears a cancel counts it, and a waiter compares that count
//! with the one it saw when it began.
//!
//! # Callbacks
//!
//! [`on_start`](RunState::on_start), [`on_cancel`](RunState::on_cancel) and
//! [`on_end`](RunState::on_end) register closures that run, with the
//! `RunState`, in the thread that made the transition, after it happened,
//! in registration order. The list is copy-on-write: registering or
//! removing copies it under a registration-only mutex; a transition takes a
//! reference to the current list without any lock and runs the callbacks
//! holding nothing another thread needs. A panicking callback is caught;
//! the others still run and the panics are returned to the caller of the
//! transition ([`CallbackPanicked`]), except from [`cancel`](RunState::cancel),
//! which returns nothing: there the panic hook reports them (use
//! [`try_cancel`](RunState::try_cancel) for the value).

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;
#[cfg(doc)]
use std::time::SystemTime;

use crate::sync::{AtomicU64, Futex, LazyBox, LazyWakers, Mutex};

mod callbacks;
mod cancel;
mod current;
mod deadline;
pub(crate) mod error;
mod futures;
mod guard;
mod has_run_state;
mod iter;
#[cfg(all(feature = "signal", unix))]
mod signal;
mod spawn;
mod state;
mod times;
mod tree;
mod wait;

use callbacks::Callbacks;
use cancel::Reasons;
#[cfg(doc)]
use error::CallbackPanicked;
use state::{RUNNING, STARTED};
use times::{wall_time, Times};
use tree::{Children, ParentLink};

pub use callbacks::{CallbackId, RunEvent};
pub use cancel::CancelReason;
pub use current::CurrentGuard;
pub use deadline::DEADLINE_EXCEEDED;
pub use futures::{Cancellation, RunUntilCancelled, WaitCancelled, WaitStopped};
pub use guard::{DropGuard, LocalRunGuard, OwnedDropGuard, OwnedRunGuard, RunGuard};
pub use has_run_state::HasRunState;
pub use iter::{UntilCancelled, UntilCancelledExt};
#[cfg(all(feature = "signal", unix))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "signal", unix))))]
pub use signal::SignalCanceller;
pub use spawn::{spawn, RunHandle, SpawnError};
pub use state::RunPhase;

// ---------------------------------------------------------------------------
// RunState
// ---------------------------------------------------------------------------

/// A task's run state: started, cancelled (asked to stop), paused, stopped,
/// with timestamps and callbacks (the Python `RunState`).
///
/// See the [module documentation](crate::run_state) for the cycle, the
/// clocks and the callbacks.
///
/// # Costs
/// [`cancelled`](Self::cancelled), [`is_running`](Self::is_running),
/// [`stopping`](Self::stopping), [`stopped`](Self::stopped),
/// [`is_paused`](Self::is_paused), [`state`](Self::state) and the fast path
/// of [`check`](Self::check): one atomic load of a word that queries never
/// write (it changes on transitions, and when a thread announces that it is
/// about to sleep on it), plus a mask test. [`cancel`](Self::cancel): one
/// `fetch_or`, plus a futex wake only if some thread sleeps, plus the
/// callbacks. The timestamp queries: a few loads, retried only if a start or
/// stop was published meanwhile.
///
/// ```
/// use multiopen::RunState;
///
/// let rs = RunState::new("indexer");
/// assert!(!rs.is_running() && !rs.stopped()); // pending
/// {
///     let _run = rs.run();
///     assert!(rs.is_running());
///     for item in rs.iter(0..3) {
///         let _ = item; // ... work ...
///     }
/// }
/// assert!(rs.stopped() && !rs.cancelled());
/// assert!(rs.stop_time() >= rs.start_time());
/// ```
pub struct RunState {
    /// Where this state is registered as a child (`None` if it is not
    /// one). First, so that it drops first: a dropped child leaves its
    /// parent's registry before any other field goes (see `tree.rs`).
    _parent: Option<ParentLink>,
    /// The state word: see the layout at the top of `state.rs`. Not
    /// padded: the rest of this struct (and the `Arc` counters beside it)
    /// is written only by slow paths (the cold part, the registry pointer
    /// are set once), so pollers of `cancelled()` share the line with
    /// nothing hot, and a child stays one or two cache lines.
    state: Futex,
    /// How many cancels a start has cleared so far. A start that finds
    /// `CANCELLED` set increments it (Release) before the publish that
    /// clears the flag; a waiter reads it when it begins (see
    /// [`watch`](Self::watch)) and, after each Acquire load of the word, reports
    /// a cancel if the flag is set or this has moved.
    cancels_cleared: AtomicU64,
    /// This state's children registry (see `tree.rs`), null until the
    /// first `child()`; orphaned (detaching the children) with this state.
    children: Children,
    /// The cold part (times, run count, guards, callbacks, reasons,
    /// deadline), allocated by the first slow path that needs it (see
    /// [`Cold`]): a state that is only made, cancelled and dropped (most
    /// children) never allocates it.
    cold: LazyBox<Cold>,
    /// The wakers of futures awaiting this state (`futures.rs`), allocated
    /// on the first one that waits: woken by the transitions that wake the
    /// futex, behind its own bit, `ASYNC_WAITERS`.
    wakers: LazyWakers,
    name: Cow<'static, str>,
}

/// What only slow paths touch, kept out of line (`RunState::cold`) so that
/// a `RunState` is small and its creation cheap.
pub(super) struct Cold {
    /// The two timestamp slots; `EPOCH`'s low bit says which is live.
    times: [Times; 2],
    /// How many runs have started: the number of the current (or last)
    /// run, which names it for the guards (64 bits: never wraps within a
    /// program's life, unlike the word's EPOCH). Written only by a
    /// start, while it holds `TIMING`, before its publish; read only by a
    /// start or stop that holds `TIMING` (so it cannot change meanwhile).
    runs: AtomicU64,
    /// How many start and stop publishes so far: the 64-bit count whose
    /// low 21 bits are the word's EPOCH. Written (Release) only by the
    /// `TIMING` holder, just before its publish; read (Acquire) by the
    /// waits for a stop, which name the run they wait for by it (see
    /// `RunState::stop_watch`): it never wraps within a program's life.
    publishes: AtomicU64,
    /// How many run guards hold the current run, if a guard started it
    /// (0 if `start()` did): the last of them to end stops it (see
    /// [`run`](RunState::run)). Read and written only under `TIMING`, as
    /// `runs`.
    guards: AtomicU64,
    callbacks: Callbacks,
    /// The reason of the cancel (see `cancel.rs`); only slow paths lock it.
    reasons: Mutex<Reasons>,
}

impl Drop for Cold {
    /// Takes a pending deadline off the timer.
    fn drop(&mut self) {
        let timer = self
            .reasons
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .timer
            .take();
        if let Some(key) = timer {
            crate::timer::cancel(&key);
        }
    }
}

impl RunState {
    /// A pending `RunState` named `name` (for `Debug` and error messages).
    ///
    /// ```
    /// use multiopen::{RunPhase, RunState};
    ///
    /// let rs = RunState::new("crawler");
    /// assert_eq!(rs.state(), RunPhase::Pending);
    /// assert_eq!(rs.start_time(), None);
    /// ```
    pub fn new(name: impl Into<Cow<'static, str>>) -> Self {
        Self::build(name.into(), 0, None)
    }

    /// A pending state with state word `word` (`CANCELLED | FROM_PARENT`
    /// for a child of a cancelled parent), registered at `parent`. No
    /// clock read, no allocation: the cold part comes later, if ever.
    fn build(name: Cow<'static, str>, word: u32, parent: Option<ParentLink>) -> Self {
        Self {
            _parent: parent,
            state: Futex::new(word),
            cancels_cleared: AtomicU64::new(0),
            children: Children::new(),
            cold: LazyBox::new(),
            wakers: LazyWakers::new(),
            name,
        }
    }

    /// The cold part, made now if it was not yet.
    pub(super) fn cold(&self) -> &Cold {
        self.cold.get_or_init_with(|| Cold {
            times: [Times::new(), Times::new()],
            runs: AtomicU64::new(0),
            publishes: AtomicU64::new(0),
            guards: AtomicU64::new(0),
            callbacks: Callbacks::new(),
            reasons: Mutex::new(Reasons::default()),
        })
    }

    /// The cold part, if some slow path has made it.
    #[inline]
    pub(super) fn cold_ref(&self) -> Option<&Cold> {
        self.cold.get()
    }

    /// The name given to [`new`](Self::new).
    ///
    /// ```
    /// assert_eq!(multiopen::RunState::new("crawler").name(), "crawler");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Default for RunState {
    /// A pending `RunState` named after its type, `"RunState"`: the same as
    /// [`RunState::new("RunState")`](RunState::new). Lets a struct that
    /// holds one `#[derive(Default)]`.
    ///
    /// ```
    /// use multiopen::{RunPhase, RunState};
    ///
    /// let rs = RunState::default();
    /// assert_eq!(rs.name(), "RunState");
    /// assert_eq!(rs.state(), RunPhase::Pending);
    ///
    /// #[derive(Default)]
    /// struct Worker {
    ///     runstate: RunState,
    /// }
    /// let w = Worker::default();
    /// w.runstate.start()?;
    /// assert!(w.runstate.is_running());
    /// # Ok::<(), multiopen::RunStateError>(())
    /// ```
    fn default() -> Self {
        Self::new("RunState")
    }
}

impl fmt::Debug for RunState {
    /// Name, state and times, from one consistent read.
    ///
    /// ```
    /// let rs = multiopen::RunState::new("job");
    /// rs.start()?;
    /// let shown = format!("{rs:?}");
    /// assert!(shown.starts_with(r#"RunState { name: "job", state: Running, start_time: Some("#));
    /// # Ok::<(), multiopen::RunStateError>(())
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (s, t) = self.times();
        let now = if s & STARTED != 0 { self.ticks() } else { 0 };
        let (run_time, current) = match (s & STARTED != 0, s & RUNNING != 0) {
            (false, _) => (0, 0),
            (true, true) => {
                let so_far = now.saturating_sub(t.start_mono);
                (so_far, so_far)
            }
            (true, false) => (t.stop_mono.saturating_sub(t.start_mono), 0),
        };
        f.debug_struct("RunState")
            .field("name", &self.name)
            .field("state", &RunPhase::of(s))
            .field(
                "start_time",
                &(s & STARTED != 0).then(|| wall_time(t.start_wall)),
            )
            .field(
                "stop_time",
                &(t.stop_mono != 0).then(|| wall_time(t.stop_wall)),
            )
            .field("run_time", &Duration::from_nanos(run_time))
            .field(
                "total_time",
                &Duration::from_nanos(t.total.saturating_add(current)),
            )
            .finish()
    }
}
