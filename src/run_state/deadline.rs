//! Deadlines: `cancel_at` / `cancel_after` (.NET `CancelAfter`, Go
//! `WithDeadline`), served by the crate's one timer thread (`crate::timer`).
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

use super::error::RunStateError;
use super::RunState;
use crate::timer;

/// The reason a deadline cancels with: `"deadline exceeded"` (Go's
/// `context.DeadlineExceeded` message).
pub const DEADLINE_EXCEEDED: &str = "deadline exceeded";

impl RunState {
    /// Cancels this state at `deadline`, with the reason
    /// [`"deadline exceeded"`](DEADLINE_EXCEEDED), even if nobody polls it:
    /// the crate's timer thread (started at the first use in the process)
    /// cancels it within a few milliseconds of the deadline (more if the
    /// machine is overloaded), running the `on_cancel` callbacks and
    /// cancelling the children there. Replaces a deadline set before. A
    /// deadline already past cancels at once, in this thread.
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
            self.cancel_with(DEADLINE_EXCEEDED);
            return Ok(());
        }
        let weak = Arc::downgrade(self);
        let task: timer::Task = Box::new(move || fire(&weak, deadline));
        // The reasons lock is held across the timer's insert (and the
        // cancel of the deadline it replaces), so two `cancel_at` calls
        // cannot lose a key: lock order reasons -> timer registry; the
        // timer runs tasks (which take the reasons lock) outside its own.
        let mut reasons = self.lock_reasons();
        let key = timer::schedule(deadline, task).map_err(|_| RunStateError::TimerUnavailable {
            name: self.name.to_string(),
        })?;
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

    /// Removes the deadline, if one is pending; returns whether one was
    /// (`false` also if it has fired already). Takes a short lock.
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
        reasons.timer.take().is_some_and(|key| timer::cancel(&key))
    }
}

/// The timer task of a deadline at `at`: cancels the state, if it is still
/// alive, with the deadline's reason.
fn fire(state: &Weak<RunState>, at: Instant) {
    let Some(state) = state.upgrade() else {
        return; // dropped before its deadline
    };
    {
        let mut reasons = state.lock_reasons();
        // Ours (not one set since, which replaced ours and cancelled it).
        if reasons.timer.is_some_and(|key| key.at() == at) {
            reasons.timer = None;
        }
    }
    state.cancel_with(DEADLINE_EXCEEDED);
}
