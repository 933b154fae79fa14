//! [`RunState`](super::RunState)'s own errors: [`Cancelled`], [`CallbackPanicked`]
//! and [`RunStateError`]; the crate's `error` module re-exports them.

use std::fmt;

/// A [`RunState`](crate::RunState) has been cancelled: the task should stop.
///
/// Returned by [`RunState::check`](crate::RunState::check) (the Python
/// `cs.resources`'s `raiseif`), [`RunState::sleep`](crate::RunState::sleep)
/// and [`RunState::pause`](crate::RunState::pause) (as
/// [`RunStateError::Cancelled`]); the message names the `RunState` and,
/// if the cancel gave one ([`RunState::cancel_with`](crate::RunState::cancel_with),
/// a parent's, a deadline), its reason.
///
/// ```
/// use multiopen::{Cancelled, RunState};
///
/// let rs = RunState::new("worker");
/// rs.cancel();
/// let err: Cancelled = rs.check().unwrap_err();
/// assert_eq!(err.to_string(), "worker was cancelled");
/// assert_eq!(err.reason, None);
///
/// let rs = RunState::new("fetcher");
/// rs.cancel_with("deadline exceeded");
/// let err = rs.check().unwrap_err();
/// assert_eq!(err.reason.as_deref(), Some("deadline exceeded"));
/// assert_eq!(err.to_string(), "fetcher was cancelled: deadline exceeded");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancelled {
    /// The `RunState`'s name.
    pub name: String,
    /// The cancel's reason, if it gave one (see
    /// [`RunState::reason`](crate::RunState::reason)).
    pub reason: Option<crate::run_state::CancelReason>,
}

impl Cancelled {
    /// Was it a deadline's cancel (see
    /// [`RunState::deadline_exceeded`](crate::RunState::deadline_exceeded))?
    /// Told by the reason's identity, not its text. Go's
    /// `errors.Is(err, context.DeadlineExceeded)`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use multiopen::RunState;
    ///
    /// let job = Arc::new(RunState::new("job"));
    /// job.cancel_after(Duration::ZERO)?;
    /// let err = job.check().unwrap_err();
    /// assert!(err.is_deadline_exceeded());
    /// # Ok::<(), multiopen::RunStateError>(())
    /// ```
    pub fn is_deadline_exceeded(&self) -> bool {
        self.reason
            .as_ref()
            .is_some_and(crate::run_state::deadline::is_deadline_reason)
    }
}

impl fmt::Display for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} was cancelled", self.name)?;
        match &self.reason {
            Some(reason) => write!(f, ": {reason}"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for Cancelled {}

/// A timed wait of a [`RunState`](crate::RunState) ran out of time:
/// [`wait_cancelled_timeout`](crate::RunState::wait_cancelled_timeout) and
/// `_deadline` (`event` [`RunEvent::Cancel`](crate::RunEvent::Cancel)),
/// [`wait_stopped_timeout`](crate::RunState::wait_stopped_timeout) and
/// `_deadline` (`event` [`RunEvent::End`](crate::RunEvent::End)). Nothing
/// changed; wait again to keep waiting.
///
/// ```
/// use std::time::Duration;
/// use multiopen::{RunEvent, RunState};
///
/// let rs = RunState::new("job");
/// let err = rs.wait_cancelled_timeout(Duration::ZERO).unwrap_err();
/// assert_eq!(err.event, RunEvent::Cancel);
/// assert!(err.to_string().starts_with("waiting for job to be cancelled timed out after "));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitTimedOut {
    /// The `RunState`'s name.
    pub name: String,
    /// What the call waited for: `Cancel` or `End`.
    pub event: crate::run_state::RunEvent,
    /// How long it waited.
    pub waited: std::time::Duration,
}

impl fmt::Display for WaitTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.event {
            crate::run_state::RunEvent::Cancel => "be cancelled",
            crate::run_state::RunEvent::End => "end",
            crate::run_state::RunEvent::Start => "start",
        };
        write!(
            f,
            "waiting for {} to {what} timed out after {:?}",
            self.name, self.waited
        )
    }
}

impl std::error::Error for WaitTimedOut {}

/// Callbacks panicked during a [`RunState`](crate::RunState) transition.
///
/// The transition itself happened, every other callback still ran, and the
/// state is as the transition left it: a panicking callback poisons
/// nothing. This reports the panics to the thread that made the transition.
///
/// ```
/// use multiopen::{RunEvent, RunState};
///
/// let rs = RunState::new("job");
/// rs.on_cancel(|_| panic!("disk full"));
/// # let hook = std::panic::take_hook();
/// # std::panic::set_hook(Box::new(|_| {}));
/// let err = rs.try_cancel().unwrap_err();
/// # std::panic::set_hook(hook);
/// assert!(rs.cancelled()); // cancelled all the same
/// assert_eq!(err.event, RunEvent::Cancel);
/// assert_eq!(err.panics, ["disk full"]);
/// assert_eq!(err.to_string(), "job: 1 on_cancel callback(s) panicked: disk full");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackPanicked {
    /// The `RunState`'s name.
    pub name: String,
    /// The transition whose callbacks panicked.
    pub event: crate::run_state::RunEvent,
    /// Each panic's message, in the order the callbacks ran (a payload that
    /// is not a string reads `"<non-string panic payload>"`).
    pub panics: Vec<String>,
}

impl fmt::Display for CallbackPanicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} on_{} callback(s) panicked: {}",
            self.name,
            self.panics.len(),
            self.event,
            self.panics.join("; ")
        )
    }
}

impl std::error::Error for CallbackPanicked {}

/// Why a [`RunState`](crate::RunState) transition was refused, or (for
/// [`CallbackPanicked`](RunStateError::CallbackPanicked)) what went wrong in
/// one that happened.
///
/// Only `CallbackPanicked` means the transition took place; for every other
/// variant nothing changed.
///
/// ```
/// use multiopen::{RunState, RunStateError};
///
/// let rs = RunState::new("job");
/// assert!(matches!(rs.stop(), Err(RunStateError::NeverStarted { .. })));
/// rs.start()?;
/// assert!(matches!(rs.start(), Err(RunStateError::AlreadyRunning { .. })));
/// rs.stop()?;
/// assert_eq!(rs.stop().unwrap_err().to_string(), "the run of job has already stopped");
/// # Ok::<(), RunStateError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunStateError {
    /// `start` on a state that is running (the run in progress must stop
    /// first).
    AlreadyRunning {
        /// The `RunState`'s name.
        name: String,
    },
    /// `stop` or `pause` on a state that has never been started.
    NeverStarted {
        /// The `RunState`'s name.
        name: String,
    },
    /// `stop` or `pause` on a state that has stopped since its last start;
    /// or a guard's stop of its run, which has stopped (another run may be
    /// in progress: the message says only that this one has stopped).
    NotRunning {
        /// The `RunState`'s name.
        name: String,
    },
    /// `pause` on a run that has been cancelled (it is stopping).
    Cancelled(Cancelled),
    /// `resume` on a state that is not paused.
    NotPaused {
        /// The `RunState`'s name.
        name: String,
    },
    /// The transition happened, but some of its callbacks panicked.
    CallbackPanicked(CallbackPanicked),
    /// [`cancel_at`](crate::RunState::cancel_at) or
    /// [`cancel_after`](crate::RunState::cancel_after) could not start the
    /// crate's timer thread (the OS refused a thread): no deadline is set.
    TimerUnavailable {
        /// The `RunState`'s name.
        name: String,
    },
}

impl fmt::Display for RunStateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AlreadyRunning { name } => write!(f, "{name} is already running"),
            Self::NeverStarted { name } => write!(f, "{name} has never been started"),
            Self::NotRunning { name } => write!(f, "the run of {name} has already stopped"),
            Self::Cancelled(e) => e.fmt(f),
            Self::NotPaused { name } => write!(f, "{name} is not paused"),
            Self::CallbackPanicked(e) => e.fmt(f),
            Self::TimerUnavailable { name } => write!(
                f,
                "no deadline set on {name}: the timer thread could not be started"
            ),
        }
    }
}

/// No `source()`: the message is the inner error's (the crate's rule, see
/// the [`error`](crate::error) module).
impl std::error::Error for RunStateError {}

impl From<CallbackPanicked> for RunStateError {
    fn from(e: CallbackPanicked) -> Self {
        Self::CallbackPanicked(e)
    }
}

impl From<Cancelled> for RunStateError {
    fn from(e: Cancelled) -> Self {
        Self::Cancelled(e)
    }
}
