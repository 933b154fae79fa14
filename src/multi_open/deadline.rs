//! How long a blocking call of a `MultiOpen` may wait: [`Wait`], what the
//! caller asked for, resolved to a [`Deadline`] only on the slow path (the
//! fast path of a timed call reads no clock).

use std::time::{Duration, Instant};

/// What the caller asked for. Cheap to build: no clock is read until the
/// call has to wait.
#[derive(Debug, Clone, Copy)]
pub(super) enum Wait {
    /// The untimed forms: wait until done.
    Forever,
    /// The `try_` forms: never wait.
    Never,
    /// The `_timeout` forms: at most this long from the call.
    For(Duration),
    /// The `_deadline` forms: until this instant (a past one: never wait).
    Until(Instant),
}

/// A [`Wait`] made concrete when the call first has to wait.
#[derive(Debug, Clone, Copy)]
pub(super) struct Deadline {
    /// When to give up; `None`: never (the untimed forms, and a timeout too
    /// long for an `Instant`, such as `Duration::MAX`).
    pub(super) until: Option<Instant>,
    /// When the call began to wait, for the error's `waited`; `None` for a
    /// try, which reports zero.
    began: Option<Instant>,
}

impl Deadline {
    /// Resolves `wait`; reads the clock only for the timed forms.
    pub(super) fn resolve(wait: Wait) -> Self {
        match wait {
            Wait::Forever => Self {
                until: None,
                began: None,
            },
            Wait::Never => Self {
                until: Some(Instant::now()),
                began: None,
            },
            Wait::For(timeout) => {
                let now = Instant::now();
                Self {
                    // Overflow (Duration::MAX): no deadline, never a panic.
                    until: now.checked_add(timeout),
                    began: Some(now),
                }
            }
            Wait::Until(deadline) => Self {
                until: Some(deadline),
                began: Some(Instant::now()),
            },
        }
    }

    /// Has the deadline come? Never for the untimed forms (no clock read).
    pub(super) fn passed(&self) -> bool {
        self.until.is_some_and(|until| Instant::now() >= until)
    }

    /// How long the call has waited: zero for a try.
    pub(super) fn waited(&self) -> Duration {
        self.began.map_or(Duration::ZERO, |began| began.elapsed())
    }
}
