//! Cancelling: `cancel` and `cancel_with` (with a reason), their `try_`
//! forms that report callback panics, the reason record, and the walk that
//! cancels a state's children.
//!
//! # Reasons
//!
//! A reason is an `Arc<str>` (cheap to hand to every child: one reference
//! count each, no copy; a `&'static str` or a `String` converts into it). It
//! belongs to the cancel that set `CANCELLED`: the first cancel wins, a
//! later one (with or without a reason) changes nothing. It sits in
//! [`Reasons`] under a small mutex that only the slow paths take:
//! `cancel_with` holds it across its `fetch_or` (so a thread that sees the
//! flag and then asks for the reason finds it), a stop that ends a
//! cancelled run holds it across its publish (moving the reason to the
//! run's record), and `reason()` holds it while it reads the word. The
//! plain `cancel` never takes it: its reason is "none", which is what the
//! record holds whenever `CANCELLED` is clear (only that stop clears the
//! flag, and it empties the record as it does).

use std::sync::{Arc, PoisonError};

use super::error::CallbackPanicked;
use super::state::{
    ANY_WAITERS, CANCELLED, ENDED_CANCELLED, FROM_PARENT, HAS_CALLBACKS, HAS_CHILDREN, TIMING,
};
use super::tree::Follow;
use super::{RunEvent, RunState};
use crate::sync::{mutant, ordering_unless, MutexGuard, Ordering};
use crate::unwind;

/// The reason a [`RunState`] was cancelled: see [`RunState::cancel_with`].
///
/// An `Arc<str>`: cloning it (for each child of a cancelled parent, for
/// each [`Cancelled`](crate::Cancelled) error) copies no text.
pub type CancelReason = Arc<str>;

/// The reasons of the current cancel and of the last run's, under
/// `RunState::reasons`.
#[derive(Debug, Default)]
pub(super) struct Reasons {
    /// The reason of the cancel that set `CANCELLED`; `None` when the flag
    /// is clear, or it was set by a plain `cancel`.
    pub(super) current: Option<CancelReason>,
    /// The reason of the cancel of the run that ended (`ENDED_CANCELLED`);
    /// stale once a start has cleared that bit (never read then).
    pub(super) ended: Option<CancelReason>,
    /// The pending deadline's timer entry (see `deadline.rs`), kept under
    /// the same slow-path lock.
    pub(super) timer: Option<crate::timer::TimerKey>,
    /// The number of the last deadline armed (`timer`'s, while it is
    /// set): a deadline's task fires only if it is still this one (see
    /// `deadline.rs`).
    pub(super) armed: u64,
}

impl super::Cold {
    pub(super) fn lock_reasons(&self) -> MutexGuard<'_, Reasons> {
        // No user code runs under the lock (a `String` is not user code):
        // a poisoned lock still guards consistent reasons.
        self.reasons.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl RunState {
    /// Asks the task to stop: sets cancelled, wakes every thread in
    /// [`sleep`](Self::sleep), [`wait_cancelled`](Self::wait_cancelled) or
    /// waiting while paused, cancels every [`child`](Self::child) (and
    /// theirs), then (if this call did the cancelling) runs the
    /// [`on_cancel`](Self::on_cancel) callbacks.
    ///
    /// Never refused, never blocks, never fails, never panics: one
    /// `fetch_or`, a futex wake only if some thread sleeps; the children,
    /// if any, on a slow path of their own. Cancelling a run that is
    /// already cancelled does nothing. A cancel while no run is in progress
    /// (before the first start, or after a stop) is kept for the next run,
    /// which begins cancelled (see [`start`](Self::start)); after a
    /// cancelled run has stopped (the state still reads
    /// [`cancelled`](Self::cancelled)), a cancel is such a new one, for the
    /// next run: it runs the `on_cancel` callbacks again, and its reason
    /// replaces the ended run's.
    ///
    /// A panicking `on_cancel` callback is caught: the others still run and
    /// the state is cancelled all the same. The panic is reported where
    /// Rust reports a panic, by the panic hook as it happens (by default a
    /// message on stderr), and not returned; use
    /// [`try_cancel`](Self::try_cancel) to get the panics as a value.
    ///
    /// ```
    /// use multiopen::RunState;
    ///
    /// let rs = RunState::new("job");
    /// rs.start()?;
    /// rs.cancel();
    /// assert!(rs.cancelled() && rs.stopping());
    /// assert_eq!(rs.reason(), None); // a plain cancel gives no reason
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn cancel(&self) {
        // Release: what this thread did before cancelling is visible to a
        // thread that sees the flag with an Acquire query.
        let order = ordering_unless("run_state::cancel_relaxed", Ordering::Release);
        let prev = self.state.fetch_or(CANCELLED, order);
        if prev & CANCELLED == 0 {
            let _ = self.after_cancel(prev, None);
        }
    }

    /// [`cancel`](Self::cancel), returning the panics of the `on_cancel`
    /// callbacks (of this state; the children's are reported by the panic
    /// hook only). `Ok` also when it was cancelled already.
    ///
    /// Errors: [`CallbackPanicked`] (the cancel happened).
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
    /// assert!(rs.cancelled());
    /// assert_eq!((err.event, err.panics), (RunEvent::Cancel, vec!["disk full".to_string()]));
    /// ```
    pub fn try_cancel(&self) -> Result<(), CallbackPanicked> {
        self.cancel_as(None, 0)
    }

    /// [`cancel`](Self::cancel) with a reason, which
    /// [`reason`](Self::reason) then returns, [`check`](Self::check)'s
    /// [`Cancelled`](crate::Cancelled) error carries, and the children
    /// inherit. The first cancel of a run wins: on a run cancelled already
    /// (with or without a reason) this does nothing. After a cancelled run
    /// has stopped, it is the next run's cancel (see
    /// [`cancel`](Self::cancel)).
    ///
    /// Costs what `cancel` costs plus a small mutex held across the
    /// `fetch_or` (uncontended but for another `cancel_with`, a stop
    /// ending a cancelled run, or a `reason()` call), on this state. With
    /// children it costs more than `cancel`: each child's reason is set
    /// under its own lock, which allocates the child's cold part (times,
    /// callbacks, reasons) if it has none, where `cancel` marks plain
    /// children in place: about 40 ns per child against 9 (10,000 plain
    /// children: 0.40–0.42 ms with a reason, 0.085 ms without, on a 2-core
    /// VM; see `BENCHMARKS.md`). A deadline and a
    /// signal cancel with a reason too. Never fails; callback panics as for
    /// `cancel` (see [`try_cancel_with`](Self::try_cancel_with)).
    ///
    /// ```
    /// use multiopen::RunState;
    ///
    /// let rs = RunState::new("server");
    /// let _run = rs.run();
    /// rs.cancel_with("shutting down for maintenance");
    /// rs.cancel_with("too late"); // the first reason wins
    /// assert_eq!(rs.reason().as_deref(), Some("shutting down for maintenance"));
    /// let err = rs.check().unwrap_err();
    /// assert_eq!(err.to_string(), "server was cancelled: shutting down for maintenance");
    /// ```
    pub fn cancel_with(&self, reason: impl Into<CancelReason>) {
        let _ = self.cancel_as(Some(reason.into()), 0);
    }

    /// [`cancel_with`](Self::cancel_with), returning the callbacks' panics
    /// as [`try_cancel`](Self::try_cancel) does.
    ///
    /// Errors: [`CallbackPanicked`] (the cancel happened).
    ///
    /// ```
    /// let rs = multiopen::RunState::new("job");
    /// rs.try_cancel_with("no longer needed")?;
    /// assert_eq!(rs.reason().as_deref(), Some("no longer needed"));
    /// # Ok::<(), multiopen::CallbackPanicked>(())
    /// ```
    pub fn try_cancel_with(&self, reason: impl Into<CancelReason>) -> Result<(), CallbackPanicked> {
        self.cancel_as(Some(reason.into()), 0)
    }

    /// Why the state is cancelled, if [`cancel_with`](Self::cancel_with)
    /// (or a parent's cancel with a reason, or a deadline) cancelled it;
    /// `None` if it is not cancelled or a plain [`cancel`](Self::cancel)
    /// came first. Once a cancelled run has stopped, the reason of its
    /// cancel, until the next start or the next cancel (which is the next
    /// run's, with its own reason, or none).
    ///
    /// Takes the reasons mutex (a slow path: not for a hot loop; poll
    /// [`cancelled`](Self::cancelled) there).
    ///
    /// ```
    /// use multiopen::RunState;
    ///
    /// let parent = RunState::new("supervisor");
    /// let child = parent.child("worker");
    /// assert_eq!(child.reason(), None);
    /// parent.cancel_with("deadline exceeded");
    /// assert_eq!(child.reason().as_deref(), Some("deadline exceeded")); // inherited
    /// ```
    pub fn reason(&self) -> Option<CancelReason> {
        // No cold part: no cancel with a reason ever (it makes the part
        // before its `fetch_or`), so none to give.
        self.cold_ref()?;
        // Under the lock, the word and the record agree: every change that
        // pairs them (cancel_with, a stop that ends a cancel) holds the
        // lock across both.
        self.cancel_and_reason().1
    }

    // --- internals ------------------------------------------------------------

    /// The state word and the reason of the cancel it shows (the current
    /// one, or the ended run's), read together under the reasons lock.
    pub(super) fn cancel_and_reason(&self) -> (u32, Option<CancelReason>) {
        let Some(cold) = self.cold_ref() else {
            // Acquire: as `cancelled`. No cold part: never a reason.
            return (self.state.load(Ordering::Acquire), None);
        };
        let reasons = cold.lock_reasons();
        // Acquire: as in `reason`.
        let s = self.state.load(Ordering::Acquire);
        let reason = if s & CANCELLED != 0 {
            reasons.current.clone()
        } else if s & ENDED_CANCELLED != 0 {
            reasons.ended.clone()
        } else {
            None
        };
        (s, reason)
    }

    /// The reasons, locked; makes the cold part if need be.
    pub(super) fn lock_reasons(&self) -> MutexGuard<'_, Reasons> {
        self.cold().lock_reasons()
    }

    /// Sets `CANCELLED | extra` (`extra`: `FROM_PARENT` for a parent's
    /// cancel) with `reason`; if that cancelled the state, the wake, the
    /// children and the callbacks follow.
    pub(super) fn cancel_as(
        &self,
        reason: Option<CancelReason>,
        extra: u32,
    ) -> Result<(), CallbackPanicked> {
        let (prev, reason) = self.set_cancelled(reason, extra);
        if prev & CANCELLED != 0 {
            return Ok(());
        }
        self.after_cancel(prev, reason)
    }

    /// The first step of `cancel_as`: sets `CANCELLED | extra` with
    /// `reason`; returns the word it replaced and the reason of the cancel,
    /// if it was ours (the one the children inherit: kept here, never read
    /// back later, when a restart may have moved it on).
    pub(super) fn set_cancelled(
        &self,
        reason: Option<CancelReason>,
        extra: u32,
    ) -> (u32, Option<CancelReason>) {
        // Release: as in `cancel`.
        let order = ordering_unless("run_state::cancel_relaxed", Ordering::Release);
        match reason {
            None => (self.state.fetch_or(CANCELLED | extra, order), None),
            Some(reason) => {
                // Held across the `fetch_or`, so that whoever sees the flag
                // and then locks finds the reason (see the module docs).
                let mut reasons = self.lock_reasons();
                let prev = self.state.fetch_or(CANCELLED | extra, order);
                if prev & CANCELLED == 0 || mutant("run_state::last_reason_wins") {
                    reasons.current = Some(Arc::clone(&reason));
                }
                (prev, Some(reason))
            }
        }
    }

    /// Cancels only run number `run` (see `RunState::runs`), if it is
    /// still the current run (the guards' cancel on panic), with the reason
    /// "panicked". Claims `TIMING` to check the run number (so no start can
    /// come between the check and the cancel), then sets `CANCELLED` in the
    /// same RMW that gives `TIMING` back. May sleep briefly, as a stop
    /// does, while another start or stop holds `TIMING`; no user code runs
    /// while this holds it.
    pub(super) fn cancel_run(&self, run: u64) -> Result<(), CallbackPanicked> {
        let Ok(claimed) = self.claim(false, Some((run, "run_state::cancel_ignores_run"))) else {
            // Not running, or another run: nothing of ours to cancel.
            return Ok(());
        };
        let prev = {
            let mut reasons = self.lock_reasons();
            let mut s = claimed;
            let prev = loop {
                // Release: as `cancel`. Clearing the waiter bits: we wake
                // below.
                match self.state.compare_exchange_weak(
                    s,
                    (s | CANCELLED) & !(TIMING | ANY_WAITERS),
                    Ordering::Release,
                    Ordering::Relaxed,
                ) {
                    Ok(prev) => break prev,
                    Err(now) => s = now,
                }
            };
            if prev & CANCELLED == 0 {
                reasons.current = Some("panicked".into());
            }
            prev
        };
        // Those who slept on the word while we held TIMING (and, as in
        // `after_cancel`, any sleeper a cancel must release).
        self.wake_waiters(prev, "run_state::cancel_no_wake");
        if prev & CANCELLED != 0 {
            return Ok(());
        }
        if prev & HAS_CHILDREN != 0 {
            self.cancel_children(Some("panicked".into()), None);
        }
        self.notify(RunEvent::Cancel)
    }

    /// What follows setting `CANCELLED` over word `prev` (which did not have
    /// it) with `reason`: the wake, the children, the callbacks.
    pub(super) fn after_cancel(
        &self,
        prev: u32,
        reason: Option<CancelReason>,
    ) -> Result<(), CallbackPanicked> {
        // Every sleeper set WAITERS (every waiting future ASYNC_WAITERS,
        // after registering) before sleeping and sleeps only while the word
        // is unchanged: our RMW changed it, so a sleeper that has not slept
        // yet will not, and those asleep are woken here.
        self.wake_waiters(prev, "run_state::cancel_no_wake");
        self.after_wake(prev, reason)
    }

    /// The rest of `after_cancel`, after the wake: the children, then the
    /// callbacks (user code: a deadline runs this off the timer thread).
    pub(super) fn after_wake(
        &self,
        prev: u32,
        reason: Option<CancelReason>,
    ) -> Result<(), CallbackPanicked> {
        if prev & HAS_CHILDREN != 0 {
            self.cancel_children(reason, None);
        }
        self.notify(RunEvent::Cancel)
    }

    /// Cancels the children, grandchildren and so on, with `reason` (the
    /// reason of this state's cancel, as that cancel set it: re-read here,
    /// a stop and restart in between would have lost it), each marked
    /// `FROM_PARENT`. An explicit work list, not
    /// recursion: a deep chain of children cannot overflow the stack.
    ///
    /// Without a reason (the common case), each registry's children are
    /// marked under its lock, one `fetch_or` each, through a strong
    /// reference let go in place (see `mark_children`); only a child that
    /// needs more (a wake, children of its own, callbacks) keeps its
    /// reference, on the work list, whose work runs after the lock is released: a
    /// child's callbacks or its `Drop` (which unlinks it) may take that
    /// lock. With a reason, every child goes to the work list, where its
    /// reason is set under its own lock as its word is.
    ///
    /// With `callbacks`, the children whose callbacks are to run are added
    /// to it instead of called back here (a deadline's cancel runs them off
    /// the timer thread).
    #[cold]
    pub(super) fn cancel_children(
        &self,
        reason: Option<CancelReason>,
        mut callbacks: Option<&mut Vec<Arc<RunState>>>,
    ) {
        let reason = if mutant("run_state::children_reason_read_late") {
            // The bug: the reason read back after the wake, when a restart
            // may have emptied the record.
            self.reason()
        } else {
            reason
        };
        let mut work = Vec::new();
        self.mark_children(reason.is_some(), &mut work);
        while let Some(next) = work.pop() {
            match next {
                Follow::State(child, marked) => {
                    let done = child_follow_up(
                        child,
                        marked,
                        &reason,
                        &mut work,
                        callbacks.as_deref_mut(),
                    );
                    if let Some(child) = done {
                        release(child);
                    }
                }
                Follow::Registry(registry) => registry.mark(reason.is_some(), &mut work),
                Follow::Last(state) => release(state),
            }
        }
    }
}

/// The walk's work on `child` (its word before our mark, if marked: see
/// `cancel_children`): its reason and mark if not marked yet, the wake,
/// its children, its callbacks (now, or added to `callbacks`). Returns the
/// reference to let go, unless it went to `callbacks`.
fn child_follow_up(
    child: Arc<RunState>,
    marked: Option<u32>,
    reason: &Option<CancelReason>,
    work: &mut Vec<Follow>,
    callbacks: Option<&mut Vec<Arc<RunState>>>,
) -> Option<Arc<RunState>> {
    let prev = match marked {
        Some(prev) => prev,
        None => {
            // Release: as in `cancel`.
            let mut reasons = child.lock_reasons();
            let prev = child
                .state
                .fetch_or(CANCELLED | FROM_PARENT, Ordering::Release);
            if prev & CANCELLED == 0 {
                reasons.current.clone_from(reason);
            }
            prev
        }
    };
    if prev & CANCELLED != 0 {
        // Cancelled already: by its own cancel, which has cancelled (or is
        // cancelling) its children.
        return Some(child);
    }
    child.wake_waiters(prev, "run_state::cancel_no_wake");
    if prev & HAS_CHILDREN != 0 {
        child.mark_children(reason.is_some(), work);
    }
    if prev & HAS_CALLBACKS != 0 {
        match callbacks {
            Some(later) => {
                later.push(child);
                return None;
            }
            // Reported by the panic hook only (see `try_cancel`).
            None => drop(child.notify(RunEvent::Cancel)),
        }
    }
    Some(child)
}

/// Lets go of a reference a cancel's walk took (or a deadline's job
/// holds), or of a child whose last reference the walk turned out to hold
/// (`Follow::Last`). A reference may be the last (its holder let go
/// meanwhile, or its own callback did): the state then drops here, and
/// with it its callbacks, whose captured values' `Drop`s are user code
/// that may panic. Such a panic (reported by the panic hook where it
/// happened) is disposed of, so that the walk goes on to the other
/// children and the cancel never panics.
pub(super) fn release<T>(state: T) {
    let _ = unwind::catch(move || drop(state));
}
