//! Deadlines: `cancel_at` / `cancel_after` (.NET `CancelAfter`, Go
//! `WithDeadline`), served by the crate's one timer thread (`crate::timer`).
//!
//! # Which deadline fires
//!
//! Each deadline armed gets a number (`Reasons::armed`, under the reasons
//! lock, with its timer key); its task fires only if the record still
//! holds that number when it runs. A deadline replaced or cleared after
//! its time came but before its task ran (the timer was busy) never
//! cancels: "replaced" means replaced, whatever the two instants.
//!
//! # User code off the timer thread
//!
//! The timer thread is the process's one: a slow task delays every
//! deadline after it. So the task does only what is bounded: it sets the
//! flag with the reason (cancelled() reads true from then on), wakes the
//! waiting threads and futures, and marks the children (and theirs). The
//! `on_cancel` callbacks (of the state and of its children) are user code
//! of unbounded length: if there are any, the task hands them, as one job,
//! to the deadline runners (`crate::timer::runner`), as .NET runs
//! `CancelAfter` callbacks on its thread pool: a small cached pool of
//! threads named `multiopen-deadline`. The job goes to an idle runner, or
//! to a new one if none is idle (up to 64 runners; beyond, jobs queue until
//! a runner is free), so a callback may block, or wait for another
//! deadline (which the timer thread fires meanwhile), without delaying
//! another deadline's callbacks; a burst of firings with quick callbacks
//! is served by the few runners that are idle, not a thread per firing.
//! Runners idle for 5 s exit, but the last. If the OS refuses a thread and
//! no runner exists, the callbacks run on the timer thread (late, never
//! lost). Wakers run on the timer thread (a waker is expected to be short:
//! it schedules a task).
//!
//! A `RunState` has at most one deadline at a time; setting one replaces
//! the last (as .NET's `CancelAfter` resets its timer). The timer task holds
//! only a `Weak` to the state, so a pending deadline never keeps it alive,
//! and a dropped state takes its deadline off the timer. When the deadline
//! comes, the timer thread cancels the state with the reason
//! [`DEADLINE_EXCEEDED`] (the first cancel wins, as always), so
//! `cancelled()` stays one load: nobody polls a clock.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::cancel::CancelReason;
use super::error::RunStateError;
use super::state::{CANCELLED, HAS_CALLBACKS, HAS_CHILDREN};
use super::{RunEvent, RunState};
use crate::sync::{mutant, Ordering};
use crate::timer;

/// The reason a deadline cancels with: `"deadline exceeded"` (Go's
/// `context.DeadlineExceeded` message). A deadline's reason is told from a
/// user's reason with the same text by
/// [`Cancelled::is_deadline_exceeded`](crate::Cancelled::is_deadline_exceeded)
/// and [`RunState::deadline_exceeded`].
pub const DEADLINE_EXCEEDED: &str = "deadline exceeded";

/// The one `Arc` every deadline cancels with (children inherit it by
/// clone), so that it is told from a user's equal text by address.
pub(crate) fn deadline_reason() -> CancelReason {
    static REASON: std::sync::OnceLock<CancelReason> = std::sync::OnceLock::new();
    Arc::clone(REASON.get_or_init(|| DEADLINE_EXCEEDED.into()))
}

/// Is `reason` a deadline's (see [`deadline_reason`])?
pub(crate) fn is_deadline_reason(reason: &CancelReason) -> bool {
    Arc::ptr_eq(reason, &deadline_reason())
}

impl RunState {
    /// Cancels this state at `deadline`, with the reason
    /// [`"deadline exceeded"`](DEADLINE_EXCEEDED), even if nobody polls it:
    /// the crate's timer thread (started at the first use in the process)
    /// cancels it within a few milliseconds of the deadline (more if the
    /// machine is overloaded): it sets the flag and the reason, wakes the
    /// waiting threads and futures (wakers run on the timer thread) and
    /// cancels the children. Replaces a deadline set before: a replaced or
    /// [cleared](Self::clear_deadline) deadline never fires, even one whose
    /// time had come. A deadline already past cancels at once, in this
    /// thread.
    ///
    /// **Callbacks run off the timer thread.** The `on_cancel` callbacks
    /// (this state's and its children's) are user code of any length, and
    /// the timer thread serves every deadline of the process; so a firing
    /// deadline with callbacks to run hands them to a deadline runner: a
    /// small cached pool of threads named `multiopen-deadline`, as .NET's
    /// `CancelAfter` runs them on its thread pool. An idle runner takes
    /// them (a futex wake), or, if none is idle, a new runner is started
    /// for them (a thread spawn, some tens of microseconds), up to 64
    /// runners; so a callback may block, or wait for another deadline,
    /// without delaying any other deadline or its callbacks. With 64
    /// runners busy, callbacks wait in a queue (FIFO) until one is free.
    /// Runners idle for 5 s exit, all but one. The callbacks run after the
    /// flag is set, so a thread that sees the cancel may run before them.
    /// Only if the OS refuses a thread and no runner exists do they run on
    /// the timer thread.
    ///
    /// The deadline belongs to the state, not to a run: it cancels the run
    /// in progress at that instant, or (a cancel is kept) the next one.
    /// `cancelled()` stays one load; the cost is here, on the slow path: a
    /// short lock, and an insert into the timer's registry.
    ///
    /// Takes `self: &Arc<Self>` so that the timer holds only a `Weak`: a
    /// state dropped before its deadline is never cancelled by it (and its
    /// timer entry is removed). A [`child`](Self::child) is an `Arc` already.
    ///
    /// After a `fork()`, the child process has no timer thread (threads do
    /// not survive a fork): a deadline set before the fork fires there
    /// only once something in the child schedules on the timer (another
    /// `cancel_at` or `cancel_after`, a `MultiOpen` linger), which starts
    /// the thread anew; it then fires every inherited deadline that is due.
    ///
    /// Errors: [`RunStateError::TimerUnavailable`] if the timer thread could
    /// not be started (the OS refused a thread); nothing is scheduled.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::{Duration, Instant};
    /// use multiopen::RunState;
    ///
    /// let job = Arc::new(RunState::new("job"));
    /// let _run = job.run();
    /// job.cancel_at(Instant::now() + Duration::from_millis(20))?;
    /// job.wait_cancelled(); // nobody polls: the timer cancels it
    /// assert_eq!(job.reason().as_deref(), Some("deadline exceeded"));
    /// # Ok::<(), multiopen::RunStateError>(())
    /// ```
    pub fn cancel_at(self: &Arc<Self>, deadline: Instant) -> Result<(), RunStateError> {
        if deadline <= Instant::now() {
            self.clear_deadline();
            self.cancel_with(deadline_reason());
            return Ok(());
        }
        let weak = Arc::downgrade(self);
        // The reasons lock is held across the timer's insert (and the
        // cancel of the deadline it replaces), so two `cancel_at` calls
        // cannot lose a key: lock order reasons -> timer registry; the
        // timer runs tasks (which take the reasons lock) outside its own.
        let mut reasons = self.lock_reasons();
        let armed = reasons.armed.wrapping_add(1);
        let task: timer::Task = Box::new(move || fire(&weak, armed));
        let key = timer::schedule(deadline, task).map_err(|_| RunStateError::TimerUnavailable {
            name: self.name.to_string(),
        })?;
        reasons.armed = armed;
        if let Some(old) = reasons.timer.replace(key) {
            timer::cancel(&old);
        }
        Ok(())
    }

    /// [`cancel_at`](Self::cancel_at) `timeout` from now (.NET
    /// `CancelAfter`). `Duration::MAX` (or any timeout too far for an
    /// `Instant`) means never: it clears the deadline. Zero cancels at once.
    ///
    /// Errors: as [`cancel_at`](Self::cancel_at).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use multiopen::RunState;
    ///
    /// let job = Arc::new(RunState::new("job"));
    /// job.cancel_after(Duration::from_millis(10))?;
    /// let err = job.sleep(Duration::from_secs(3600)).unwrap_err(); // woken by the deadline
    /// assert_eq!(err.to_string(), "job was cancelled: deadline exceeded");
    /// # Ok::<(), multiopen::RunStateError>(())
    /// ```
    pub fn cancel_after(self: &Arc<Self>, timeout: Duration) -> Result<(), RunStateError> {
        match Instant::now().checked_add(timeout) {
            Some(deadline) => self.cancel_at(deadline),
            None => {
                self.clear_deadline();
                Ok(())
            }
        }
    }

    /// The deadline set by [`cancel_at`](Self::cancel_at) or
    /// [`cancel_after`](Self::cancel_after) that has not fired yet (or is
    /// firing now), if any. Takes a short lock.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::{Duration, Instant};
    ///
    /// let rs = Arc::new(multiopen::RunState::new("job"));
    /// assert_eq!(rs.deadline(), None);
    /// let at = Instant::now() + Duration::from_secs(3600);
    /// rs.cancel_at(at)?;
    /// assert_eq!(rs.deadline(), Some(at));
    /// # Ok::<(), multiopen::RunStateError>(())
    /// ```
    pub fn deadline(&self) -> Option<Instant> {
        self.cold_ref()?.lock_reasons().timer.map(|key| key.at())
    }

    /// Is the state cancelled by a deadline (its own, or an ancestor's,
    /// inherited): Go's `errors.Is(ctx.Err(), context.DeadlineExceeded)`.
    /// Told by the reason's identity, not its text: a
    /// [`cancel_with`](Self::cancel_with) that gives the same words is not
    /// a deadline. `false` if not cancelled, or if another cancel came
    /// first. Takes the reasons lock, as [`reason`](Self::reason).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use multiopen::{run_state::DEADLINE_EXCEEDED, RunState};
    ///
    /// let job = Arc::new(RunState::new("job"));
    /// let step = job.child("step");
    /// job.cancel_after(Duration::ZERO)?; // due at once
    /// assert!(job.deadline_exceeded() && step.deadline_exceeded());
    /// let other = RunState::new("other");
    /// other.cancel_with(DEADLINE_EXCEEDED); // the same words, no deadline
    /// assert!(!other.deadline_exceeded());
    /// # Ok::<(), multiopen::RunStateError>(())
    /// ```
    pub fn deadline_exceeded(&self) -> bool {
        self.reason()
            .is_some_and(|reason| is_deadline_reason(&reason))
    }

    /// Removes the deadline, if one is pending; returns whether one was
    /// (`false` if it has fired already). Once this returns, the deadline
    /// never cancels, even if its time has come and the timer is about to
    /// run it. Takes a short lock.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    ///
    /// let rs = Arc::new(multiopen::RunState::new("job"));
    /// rs.cancel_after(Duration::from_secs(3600))?;
    /// assert!(rs.clear_deadline());
    /// assert!(!rs.clear_deadline());
    /// # Ok::<(), multiopen::RunStateError>(())
    /// ```
    pub fn clear_deadline(&self) -> bool {
        let Some(cold) = self.cold_ref() else {
            return false; // never had one
        };
        let mut reasons = cold.lock_reasons();
        // A task taken but not run yet finds the record empty: it does not
        // fire (see `fire`), so the deadline is removed all the same.
        reasons
            .timer
            .take()
            .map(|key| timer::cancel(&key))
            .is_some()
    }
}

/// The timer task of deadline number `armed`: cancels the state, if it is
/// still alive and that deadline is still its deadline, with the
/// deadline's reason; user code (the callbacks) runs off the timer thread
/// (see the module docs).
fn fire(state: &Weak<RunState>, armed: u64) {
    let Some(state) = state.upgrade() else {
        return; // dropped before its deadline
    };
    let prev = {
        let mut reasons = state.lock_reasons();
        // Ours, not one set since (which replaced ours and cancelled its
        // task, perhaps too late: it was due and taken already), nor
        // cleared.
        let ours = reasons.timer.is_some() && reasons.armed == armed;
        if !ours && !mutant("run_state::replaced_deadline_fires") {
            return;
        }
        reasons.timer = None;
        // Release: as in `cancel`. Under the reasons lock with the reason,
        // as `cancel_with`.
        let prev = state.state.fetch_or(CANCELLED, Ordering::Release);
        if prev & CANCELLED == 0 {
            reasons.current = Some(deadline_reason());
        }
        prev
    };
    if prev & CANCELLED != 0 {
        return;
    }
    state.wake_waiters(prev, "run_state::cancel_no_wake");
    let reason: Option<CancelReason> = Some(deadline_reason());
    let mut callbacks = Vec::new();
    if prev & HAS_CHILDREN != 0 {
        state.cancel_children(reason, Some(&mut callbacks));
    }
    if prev & HAS_CALLBACKS != 0 {
        callbacks.push(Arc::clone(&state));
    }
    if !callbacks.is_empty() {
        run_callbacks_elsewhere(callbacks);
    }
}

/// Runs the cancel callbacks of `states` (children first, the state whose
/// deadline fired last) on a deadline runner (`crate::timer::runner`), or
/// here if none can be had. Panics are reported by the panic hook only, as
/// for a parent's cancel.
fn run_callbacks_elsewhere(states: Vec<Arc<RunState>>) {
    let run = move || {
        for state in states {
            let _ = state.notify(RunEvent::Cancel);
            // Perhaps the last reference (a callback let go of the state):
            // a panicking `Drop` of a capture must not skip the others.
            super::cancel::release(state);
        }
    };
    #[cfg(not(loom))]
    timer::runner::submit(Box::new(run));
    // Under loom: no runners; the model's firing thread runs them.
    #[cfg(loom)]
    run();
}
