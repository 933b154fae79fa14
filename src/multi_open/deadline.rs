//! How long a blocking call of a `MultiOpen` may wait: [`Wait`], what the
//! caller asked for, and [`Deadline`], which makes it concrete only when
//! the call is about to sleep (no clock is read before that: not on the
//! fast path, not by a `try_` form, not by a call that never has to wait).

use std::time::{Duration, Instant};

/// What the caller asked for. Cheap to build: no clock is read.
#[derive(Debug, Clone, Copy)]
pub(super) enum Wait {
    /// The untimed forms: wait until done.
    Forever,
    /// The `try_` forms: never wait.
    Never,
    /// The `_timeout` forms: at most this long from the first point the
    /// call would sleep.
    For(Duration),
    /// The `_deadline` forms: until this instant (a past one: never wait).
    Until(Instant),
}

/// A [`Wait`], resolved against the clock by the first [`passed`] (called
/// just before the call would sleep).
///
/// [`passed`]: Deadline::passed
#[derive(Debug, Clone, Copy)]
pub(super) struct Deadline {
    /// What was asked; resolved lazily.
    wait: Wait,
    /// When to give up; `None`: never (the untimed forms, and a timeout too
    /// long for an `Instant`, such as `Duration::MAX`). Meaningful once
    /// `passed` has returned `false`.
    until: Option<Instant>,
    /// When the call began to wait, for the error's `waited`; `None` for a
    /// call that never slept (a try, a zero timeout, a deadline already
    /// past when it would first have slept): those report zero.
    began: Option<Instant>,
    /// `passed` has read the clock once (the timed forms).
    resolved: bool,
}

impl Deadline {
    /// Keeps `wait` for later; reads no clock.
    pub(super) fn new(wait: Wait) -> Self {
        Self {
            wait,
            until: None,
            began: None,
            resolved: false,
        }
    }

    /// Has the deadline come? Called just before each sleep. Never for the
    /// untimed forms and always for the tries and a zero timeout (no clock
    /// read for any of these); the timed forms read the clock (the first
    /// call fixes when the wait began, unless the deadline is already past:
    /// then `waited` stays zero).
    pub(super) fn passed(&mut self) -> bool {
        match self.wait {
            Wait::Forever => false,
            Wait::Never => true,
            Wait::For(timeout) if timeout.is_zero() => true,
            Wait::For(timeout) => {
                let now = Instant::now();
                if !self.resolved {
                    self.resolved = true;
                    self.began = Some(now);
                    // Overflow (Duration::MAX): no deadline, never a panic.
                    self.until = now.checked_add(timeout);
                }
                self.until.is_some_and(|until| now >= until)
            }
            Wait::Until(deadline) => {
                let now = Instant::now();
                if now >= deadline {
                    return true;
                }
                if !self.resolved {
                    self.resolved = true;
                    self.began = Some(now);
                    self.until = Some(deadline);
                }
                false
            }
        }
    }

    /// When to give up, for the sleep that follows a `passed` that returned
    /// `false`: `None`, no timeout.
    pub(super) fn until(&self) -> Option<Instant> {
        self.until
    }

    /// How long the call has waited: zero if it never slept.
    pub(super) fn waited(&self) -> Duration {
        self.began.map_or(Duration::ZERO, |began| began.elapsed())
    }
}
