//! Pausing and waiting: `pause`/`resume`, `check`, `wait_while_paused`,
//! `sleep`, and the futex waits behind them (announcing a waiter, the
//! cancel watch that survives a restart, waiting for `TIMING`).

use std::time::{Duration, Instant};

use super::error::{Cancelled, RunStateError, WaitTimedOut};
use super::state::{
    ANY_CANCEL, ANY_WAITERS, CANCELLED, EPOCH_SHIFT, PAUSED, RUNNING, STARTED, WAITERS,
};
use super::{RunEvent, RunState};
use crate::sync::{mutant, Ordering};

// Re-entrancy (issue 11, "a re-entrant call hangs forever"): every wait of
// a RunState, and why none can wait for the calling thread itself, so none
// needs a per-thread "inside a transition" check:
// - `wait_for_timing` (start, stop, a guard's stop or cancel-on-panic):
//   waits for a TIMING claim to end. A claim is held only from the claim
//   CAS to the publish (or `unclaim`), which runs no user code (no
//   callback, no user `Drop`, nothing that can panic or take a lock), so
//   a thread holding it never calls anything that waits: callbacks run
//   after the publish. A signal handler could interrupt it, but the
//   `signal` feature's handler only records the signal (signal-hook);
//   `cancel` from another thread never waits.
// - `wait_unpaused` (`check`, `wait_while_paused`, the iterator): waits for
//   resume, cancel or stop, any of which another thread can do; a
//   transition holds nothing while its callbacks run, and a start or stop
//   clears PAUSED before its callbacks, so from an `on_start`/`on_end`
//   callback it returns at once unless someone else paused since. (A
//   thread that pauses and then waits, with nobody else to resume, waits
//   as it asked; that is the API, not re-entrancy.)
// - `sleep_slow`: bounded by its duration, and cut short by a cancel from
//   any thread; from an `on_cancel` callback it returns at once.
// - `wait_cancelled` (and its timed forms): returns once cancelled; from
//   an `on_cancel` callback at once (the cancel is published before the
//   callbacks run), from any other place a cancel by any thread ends it.
// - `wait_stopped` (and its timed forms): waits for the run to end, which
//   ends by `stop`, the last run guard's drop, or a spawned function's
//   return. Called on a thread that alone can end the run (from a
//   callback or code running while this thread holds the run's only
//   guard), it waits for something only it can do, as a thread that joins
//   itself would: not re-entrancy inside the crate (no lock or claim of
//   ours is held), but a wait the caller asked for. Documented on
//   `wait_stopped`; the timed forms bound it.
// - The callbacks' registration mutex: no user code runs under it (lists
//   are freed after it is released), so a callback or a captured value's
//   `Drop` may register or remove callbacks.
// tests/run_state_misuse.rs `reentrant_*` calls each from each callback.

impl RunState {
    /// Pauses a running task: threads in [`check`](Self::check),
    /// [`wait_while_paused`](Self::wait_while_paused) or the
    /// [`iter`](Self::iter) adapter block until [`resume`](Self::resume),
    /// [`cancel`](Self::cancel) or [`stop`](Self::stop). Pausing a paused
    /// state is fine.
    ///
    /// Errors: [`RunStateError::NeverStarted`] or
    /// [`RunStateError::NotRunning`]; [`RunStateError::Cancelled`] if the
    /// run is cancelled (it is stopping).
    ///
    /// ```
    /// use multiopen::{RunPhase, RunState};
    ///
    /// let rs = RunState::new("job");
    /// assert!(rs.pause().is_err()); // not running
    /// rs.start()?;
    /// rs.pause()?;
    /// assert!(rs.is_paused() && rs.is_running());
    /// assert_eq!(rs.state(), RunPhase::Paused);
    /// rs.resume()?;
    /// # Ok::<(), multiopen::RunStateError>(())
    /// ```
    pub fn pause(&self) -> Result<(), RunStateError> {
        // Relaxed: a first guess for the CAS.
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if s & RUNNING == 0 {
                return Err(self.not_running_error(s));
            }
            if s & CANCELLED != 0 {
                return Err(RunStateError::Cancelled(self.cancelled_error()));
            }
            if s & PAUSED != 0 {
                return Ok(());
            }
            // Release: what the pauser did before is visible to a thread
            // that sees it paused. Nobody sleeps waiting for a pause, so
            // there is no one to wake.
            match self.state.compare_exchange_weak(
                s,
                s | PAUSED,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(now) => s = now,
            }
        }
    }

    /// Leaves the paused state and wakes the threads waiting while paused.
    ///
    /// Errors: [`RunStateError::NotPaused`] if it is not paused (including
    /// a paused run that was then cancelled or stopped: those already
    /// released the waiters).
    ///
    /// ```
    /// let rs = multiopen::RunState::new("job");
    /// rs.start()?;
    /// assert!(rs.resume().is_err()); // not paused
    /// rs.pause()?;
    /// rs.resume()?;
    /// assert!(!rs.is_paused());
    /// # Ok::<(), multiopen::RunStateError>(())
    /// ```
    pub fn resume(&self) -> Result<(), RunStateError> {
        // Relaxed: a first guess for the CAS.
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if s & (RUNNING | PAUSED | CANCELLED) != RUNNING | PAUSED {
                return Err(RunStateError::NotPaused {
                    name: self.name.to_string(),
                });
            }
            // Release: what the resumer did before is visible to the
            // threads it releases (they load Acquire).
            match self.state.compare_exchange_weak(
                s,
                s & !(PAUSED | ANY_WAITERS),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.wake_waiters(s, "run_state::resume_no_wake");
                    return Ok(());
                }
                Err(now) => s = now,
            }
        }
    }

    // --- cooperative waiting ------------------------------------------------

    /// `Err(Cancelled)` if cancelled; otherwise, if paused, blocks until
    /// resumed (then `Ok`) or cancelled (then `Err`). The Python
    /// `cs.resources`'s `raiseif`.
    ///
    /// Not paused and not cancelled (the usual case): one atomic load and a
    /// mask test. Paused: sleeps on the futex, no spinning.
    ///
    /// ```
    /// use multiopen::{Cancelled, RunState};
    ///
    /// fn work(rs: &RunState, items: &[u32]) -> Result<u32, Cancelled> {
    ///     let mut sum = 0;
    ///     for item in items {
    ///         rs.check()?;
    ///         sum += item;
    ///     }
    ///     Ok(sum)
    /// }
    ///
    /// let rs = RunState::new("summer");
    /// let _run = rs.run();
    /// assert_eq!(work(&rs, &[1, 2, 3]), Ok(6));
    /// rs.cancel();
    /// assert!(work(&rs, &[1, 2, 3]).is_err());
    /// # Ok::<(), multiopen::CallbackPanicked>(())
    /// ```
    #[inline]
    pub fn check(&self) -> Result<(), Cancelled> {
        // Acquire: as `cancelled`.
        let s = self.state.load(Ordering::Acquire);
        if s & (ANY_CANCEL | PAUSED) == 0 {
            return Ok(());
        }
        if s & ANY_CANCEL != 0 || self.wait_unpaused() {
            Err(self.cancelled_error())
        } else {
            Ok(())
        }
    }

    /// Blocks while paused; returns at once if not paused, and as soon as
    /// the state is resumed, cancelled or stopped. Sleeps on the futex (no
    /// spinning); never misses the wake, including a cancel followed by a
    /// stop and a new start before this thread woke.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use multiopen::RunState;
    ///
    /// let rs = Arc::new(RunState::new("job"));
    /// rs.start()?;
    /// rs.pause()?;
    /// let waiter = {
    ///     let rs = Arc::clone(&rs);
    ///     std::thread::spawn(move || rs.wait_while_paused())
    /// };
    /// rs.resume()?;
    /// waiter.join().unwrap();
    /// # Ok::<(), multiopen::RunStateError>(())
    /// ```
    pub fn wait_while_paused(&self) {
        // Acquire: as `is_paused`.
        if self.state.load(Ordering::Acquire) & (PAUSED | CANCELLED) == PAUSED {
            self.wait_unpaused();
        }
    }

    /// Sleeps for `duration`, unless cancelled: returns `Err(Cancelled)` at
    /// once if cancelled already, and the moment a [`cancel`](Self::cancel)
    /// comes during the sleep; `Ok(())` when the time is up. Pausing does
    /// not affect it (follow with [`check`](Self::check) to honour a pause).
    ///
    /// A timed futex wait on the state word (native on Linux, Windows,
    /// FreeBSD and macOS, no polling; `Duration::MAX` sleeps until
    /// cancelled), woken by `cancel`. Spurious wake-ups
    /// and signals are absorbed: it never returns `Ok` early. A cancel that
    /// comes during the sleep is reported even if the run is stopped and
    /// started again (clearing the flag) before this thread wakes.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use multiopen::RunState;
    ///
    /// let rs = Arc::new(RunState::new("poller"));
    /// assert!(rs.sleep(Duration::from_millis(1)).is_ok()); // time up
    /// let sleeper = {
    ///     let rs = Arc::clone(&rs);
    ///     std::thread::spawn(move || rs.sleep(Duration::from_secs(3600)))
    /// };
    /// rs.cancel();
    /// assert!(sleeper.join().unwrap().is_err()); // woken by the cancel
    /// # Ok::<(), multiopen::CallbackPanicked>(())
    /// ```
    pub fn sleep(&self, duration: Duration) -> Result<(), Cancelled> {
        if self.cancelled() {
            return Err(self.cancelled_error());
        }
        if duration.is_zero() {
            return Ok(());
        }
        self.sleep_slow(duration)
    }

    #[cold]
    fn sleep_slow(&self, duration: Duration) -> Result<(), Cancelled> {
        // `None`: too far to represent, i.e. until cancelled.
        let deadline = Instant::now().checked_add(duration);
        let (cleared, mut s) = self.watch();
        loop {
            if self.cancelled_since(cleared, s) {
                return Err(self.cancelled_error());
            }
            if deadline.is_some_and(|deadline| deadline <= Instant::now()) {
                return Ok(());
            }
            if let Some(expected) = self.announce_waiter(s) {
                // Timed out or woken: the loop re-checks the cancel and the
                // deadline either way.
                self.state.wait_until(expected, deadline);
            }
            // Acquire: as `cancelled`, and so that `cancelled_since` sees
            // the count of a start this load sees.
            s = self.state.load(Ordering::Acquire);
        }
    }

    // --- waiting for a cancel or a stop -------------------------------------

    /// Blocks until the state is cancelled (tokio-util's `cancelled()`, a
    /// blocking .NET `WaitHandle`): returns at once if it is, and the
    /// moment a [`cancel`](Self::cancel) (its own, a parent's, a deadline)
    /// comes. A cancel that comes while this waits is seen even if the run
    /// is stopped and started again before this thread wakes.
    ///
    /// Sleeps on the state word's futex (no polling); a cancel wakes it,
    /// with a wake system call only because this thread announced itself.
    /// A state that is never cancelled keeps it waiting: use
    /// [`wait_cancelled_timeout`](Self::wait_cancelled_timeout) or
    /// [`wait_cancelled_deadline`](Self::wait_cancelled_deadline) to bound it.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use multiopen::RunState;
    ///
    /// let server = Arc::new(RunState::new("server"));
    /// let main_loop = {
    ///     let server = Arc::clone(&server);
    ///     std::thread::spawn(move || {
    ///         server.wait_cancelled(); // instead of sleeping in a loop
    ///         server.reason()
    ///     })
    /// };
    /// server.cancel_with("ctrl-c");
    /// assert_eq!(main_loop.join().unwrap().as_deref(), Some("ctrl-c"));
    /// ```
    pub fn wait_cancelled(&self) {
        // Untimed: never times out.
        let _ = self.wait_cancelled_until(None, None);
    }

    /// [`wait_cancelled`](Self::wait_cancelled) for at most `timeout`:
    /// `Ok` once cancelled, [`WaitTimedOut`] (with the time waited) if the
    /// time ran out first. A zero timeout is a non-blocking check;
    /// `Duration::MAX` waits for ever (never overflows).
    ///
    /// Errors: [`WaitTimedOut`] (`event` is [`RunEvent::Cancel`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiopen::RunState;
    ///
    /// let rs = RunState::new("job");
    /// let err = rs.wait_cancelled_timeout(Duration::from_millis(5)).unwrap_err();
    /// assert!(err.waited >= Duration::from_millis(5));
    /// rs.cancel();
    /// assert!(rs.wait_cancelled_timeout(Duration::ZERO).is_ok());
    /// ```
    pub fn wait_cancelled_timeout(&self, timeout: Duration) -> Result<(), WaitTimedOut> {
        let now = Instant::now();
        self.wait_cancelled_until(Some(now), now.checked_add(timeout))
    }

    /// [`wait_cancelled`](Self::wait_cancelled) until `deadline`: `Ok` once
    /// cancelled, [`WaitTimedOut`] if the deadline came first (a deadline
    /// already past: a non-blocking check).
    ///
    /// Errors: [`WaitTimedOut`] (`event` is [`RunEvent::Cancel`]).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    ///
    /// let rs = multiopen::RunState::new("job");
    /// let deadline = Instant::now() + Duration::from_millis(5);
    /// assert!(rs.wait_cancelled_deadline(deadline).is_err());
    /// assert!(Instant::now() >= deadline);
    /// ```
    pub fn wait_cancelled_deadline(&self, deadline: Instant) -> Result<(), WaitTimedOut> {
        self.wait_cancelled_until(Some(Instant::now()), Some(deadline))
    }

    /// Blocks until the run has ended (a supervisor's join): returns at
    /// once if the state is stopped, else when the run in progress stops
    /// (cancelled or not); on a state never started, when a run has
    /// started and stopped. A stop is seen even if a new run has started
    /// before this thread wakes.
    ///
    /// Sleeps on the state word's futex, woken by the stop (no polling, no
    /// lost wake-up). A state never started waits for its first run to
    /// end, which may never come: bound it with
    /// [`wait_stopped_timeout`](Self::wait_stopped_timeout) or
    /// [`wait_stopped_deadline`](Self::wait_stopped_deadline). Likewise,
    /// called where only the calling thread can end the run (in an
    /// `on_cancel` callback of a cancel made by the thread that holds the
    /// run's only guard, say), it waits for ever, as a thread joining itself
    /// would: stop first, or wait elsewhere.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use multiopen::RunState;
    ///
    /// let job = Arc::new(RunState::new("job"));
    /// let run = job.run_owned(); // started here, stopped in the thread
    /// std::thread::spawn(move || {
    ///     let rs = run.runstate();
    ///     while !rs.cancelled() {
    ///         # rs.cancel();
    ///     }
    /// });
    /// job.cancel();
    /// job.wait_stopped(); // no thread handle needed
    /// assert!(job.stopped());
    /// ```
    pub fn wait_stopped(&self) {
        // Untimed: never times out.
        let _ = self.wait_stopped_until(None, None);
    }

    /// [`wait_stopped`](Self::wait_stopped) for at most `timeout`: `Ok`
    /// once the run has ended, [`WaitTimedOut`] (with the time waited) if
    /// the time ran out first. Zero: a non-blocking check; `Duration::MAX`:
    /// for ever.
    ///
    /// Errors: [`WaitTimedOut`] (`event` is [`RunEvent::End`]).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let rs = multiopen::RunState::new("job");
    /// assert!(rs.wait_stopped_timeout(Duration::ZERO).is_err()); // never started
    /// rs.start()?;
    /// rs.stop()?;
    /// assert!(rs.wait_stopped_timeout(Duration::ZERO).is_ok());
    /// # Ok::<(), multiopen::RunStateError>(())
    /// ```
    pub fn wait_stopped_timeout(&self, timeout: Duration) -> Result<(), WaitTimedOut> {
        let now = Instant::now();
        self.wait_stopped_until(Some(now), now.checked_add(timeout))
    }

    /// [`wait_stopped`](Self::wait_stopped) until `deadline` (a deadline
    /// already past: a non-blocking check).
    ///
    /// Errors: [`WaitTimedOut`] (`event` is [`RunEvent::End`]).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    ///
    /// let rs = multiopen::RunState::new("job");
    /// let _run = rs.run();
    /// let err = rs.wait_stopped_deadline(Instant::now() + Duration::from_millis(2)).unwrap_err();
    /// assert!(err.to_string().starts_with("waiting for job to end timed out after "));
    /// ```
    pub fn wait_stopped_deadline(&self, deadline: Instant) -> Result<(), WaitTimedOut> {
        self.wait_stopped_until(Some(Instant::now()), Some(deadline))
    }

    /// Every form of `wait_cancelled`: `began` is `Some` for the timed
    /// forms, `deadline` `None` for the untimed one (and a timeout too long
    /// for an `Instant`).
    fn wait_cancelled_until(
        &self,
        began: Option<Instant>,
        deadline: Option<Instant>,
    ) -> Result<(), WaitTimedOut> {
        let (cleared, mut s) = self.watch();
        // A timed sleep ran out (the OS says so; under loom, at once).
        let mut timed_out = false;
        loop {
            if self.cancelled_since(cleared, s) {
                return Ok(());
            }
            if timed_out || deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                return Err(self.timed_out(RunEvent::Cancel, began));
            }
            if let Some(expected) = self.announce_waiter(s) {
                timed_out = !self.state.wait_deadline(expected, deadline);
            }
            // Acquire: as `cancelled`, and as in `sleep_slow`.
            s = self.state.load(Ordering::Acquire);
        }
    }

    /// Every form of `wait_stopped` (arguments as `wait_cancelled_until`):
    /// done when [`stop_ended`](Self::stop_ended) says so.
    fn wait_stopped_until(
        &self,
        began: Option<Instant>,
        deadline: Option<Instant>,
    ) -> Result<(), WaitTimedOut> {
        let (since, mut s) = self.stop_watch();
        let mut timed_out = false;
        loop {
            if self.stop_ended(s, since, "run_state::wait_stopped_misses_restart") {
                return Ok(());
            }
            if timed_out || deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                return Err(self.timed_out(RunEvent::End, began));
            }
            if let Some(expected) = self.announce_waiter(s) {
                timed_out = !self.state.wait_deadline(expected, deadline);
            }
            // Acquire: as above.
            s = self.state.load(Ordering::Acquire);
        }
    }

    #[cold]
    fn timed_out(&self, event: RunEvent, began: Option<Instant>) -> WaitTimedOut {
        WaitTimedOut {
            name: self.name.to_string(),
            event,
            waited: began.map_or(Duration::ZERO, |began| began.elapsed()),
        }
    }

    // --- internals ------------------------------------------------------------

    /// Makes sure word `s` shows `WAITERS` before sleeping on it: returns
    /// the word to sleep on, or `None` if it changed meanwhile (re-check).
    fn announce_waiter(&self, s: u32) -> Option<u32> {
        if s & WAITERS != 0 || mutant("run_state::waiter_no_announce") {
            return Some(s);
        }
        // Relaxed: the caller re-loads with Acquire after waking; what
        // makes the sleep safe is the futex's compare of the whole word.
        self.state
            .compare_exchange(s, s | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
            .ok()
            .map(|_| s | WAITERS)
    }

    /// Sleeps until the word shows not paused, or a cancel came; returns
    /// whether a cancel came (see [`watch`](Self::watch)).
    #[cold]
    fn wait_unpaused(&self) -> bool {
        let (cleared, mut s) = self.watch();
        loop {
            if self.cancelled_since(cleared, s) {
                return true;
            }
            if s & PAUSED == 0 {
                return false;
            }
            if let Some(expected) = self.announce_waiter(s) {
                self.state.wait(expected);
            }
            // Acquire: as `is_paused`, and as in `sleep_slow`.
            s = self.state.load(Ordering::Acquire);
        }
    }

    /// Where a wait begins: the count of cleared cancels and the state word
    /// `s`, read so that, afterwards, a cancel after `s` (in the word's
    /// modification order) shows as `CANCELLED` or `ENDED_CANCELLED` (a
    /// stop turns the one into the other: `ANY_CANCEL` below) in a later load of the word
    /// or as a moved count, and a cancel before `s` shows only if `s` has
    /// the flag ([`cancelled_since`](Self::cancelled_since)).
    ///
    /// Why: a start that clears a cancel (`ENDED_CANCELLED`; it keeps
    /// `CANCELLED`) increments the count before its publish. (a) A start published before `s`: our Acquire load of `s`
    /// synchronises with it, so the count read after `s` includes it; the
    /// loop returns only when that equals the count read before `s`. (b) A
    /// start published after `s` whose increment the count read before `s`
    /// already includes: that increment followed the start's load of a word
    /// with `ENDED_CANCELLED` (a word nobody but that start can clear), and our
    /// Acquire read of it orders that load before ours of `s`, so `s` shows
    /// `ENDED_CANCELLED` and the waiter returns at once. So the baseline never
    /// hides a cancel that came after `s`, and never reports one that a
    /// start cleared before it.
    pub(super) fn watch(&self) -> (u64, u32) {
        // Acquire: pairs with a start's Release increment; see (b).
        let mut cleared = self.cancels_cleared.load(Ordering::Acquire);
        loop {
            // Acquire: as `cancelled`; see (a).
            let s = self.state.load(Ordering::Acquire);
            // Acquire: this becomes the next round's first read, see (b).
            let again = self.cancels_cleared.load(Ordering::Acquire);
            if again == cleared {
                return (cleared, s);
            }
            cleared = again;
        }
    }

    /// Has a cancel come since [`watch`](Self::watch) returned `cleared`?
    /// `s` is a word loaded (Acquire) since: it shows `ANY_CANCEL`, or a start
    /// it synchronises with counted a cancel it then cleared.
    pub(super) fn cancelled_since(&self, cleared: u64, s: u32) -> bool {
        // Relaxed: the Acquire load of `s` orders every increment made
        // before the publishes it sees; a later one is seen next round.
        s & ANY_CANCEL != 0 || self.cancels_cleared.load(Ordering::Relaxed) != cleared
    }

    /// Where a wait for a stop begins: the 64-bit count of publishes (starts
    /// and stops, `Cold::publishes`) that word `s` shows, with `s` (Acquire:
    /// pairs with the stop's Release publish, so the waiter sees what the
    /// run did), and how far the count must move for the run in progress
    /// at `s` to have ended: one publish from a running word (its stop),
    /// two from a pending one (a start and a stop).
    ///
    /// Exact, whatever the number of runs: the count is stored (Release)
    /// by the `TIMING` holder just before its publish, so a first read `p1`
    /// (Acquire) of it shows publish `p1 - 1` in every later load of the
    /// word, and a read `p2` after the load of `s` is at least the count `s`
    /// shows. That count lies in `[p1 - 1, p2]` and its low 21 bits are
    /// `s`'s EPOCH: one value, if the range is shorter than 2^21 (else
    /// retried: 2^21 publishes between two loads).
    pub(super) fn stop_watch(&self) -> ((u64, u64), u32) {
        loop {
            let p1 = self.publishes();
            // Acquire: see above.
            let s = self.state.load(Ordering::Acquire);
            let p2 = self.publishes();
            if p2 - p1 + 1 < EPOCH_PERIOD {
                let count = p2 - (p2.wrapping_sub(epoch_of(s)) & (EPOCH_PERIOD - 1));
                let moves = if s & RUNNING != 0 { 1 } else { 2 };
                return ((count, moves), s);
            }
        }
    }

    /// Does word `s` (loaded with Acquire after `stop_watch` returned
    /// `since`) show the end of the run that `since` names: the word shows
    /// stopped, or the publishes counted since have moved far enough?
    ///
    /// The count `s` shows lies between `since`'s and the count read here
    /// (after `s`); if those are fewer than 2^21 apart, `s`'s EPOCH gives it
    /// exactly; if not, at least 2^21 - 1 publishes were made since, and
    /// the run has ended.
    pub(super) fn stop_ended(&self, s: u32, (count, moves): (u64, u64), restart: &str) -> bool {
        if s & (STARTED | RUNNING) == STARTED {
            return true;
        }
        if mutant(restart) {
            return false;
        }
        let now = self.publishes();
        if now - count >= EPOCH_PERIOD {
            return true;
        }
        let moved = epoch_of(s).wrapping_sub(count) & (EPOCH_PERIOD - 1);
        moved >= moves
    }

    /// The count of start and stop publishes so far (Acquire: see
    /// `stop_watch`); 0 before the cold part exists (no start yet).
    fn publishes(&self) -> u64 {
        self.cold_ref()
            .map_or(0, |cold| cold.publishes.load(Ordering::Acquire))
    }

    /// Sleeps until the word (seen as `s`, with `TIMING`) changes.
    #[cold]
    pub(super) fn wait_for_timing(&self, s: u32) {
        if let Some(expected) = self.announce_waiter(s) {
            self.state.wait(expected);
        }
    }

    /// Has some thread announced that it sleeps (or is about to) on the
    /// state word? For the loom models only, which wait for a waiter to
    /// have begun before they race it: not part of the API.
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn loom_has_waiters(&self) -> bool {
        // Acquire: only a hint for the model's spin loop.
        self.state.load(Ordering::Acquire) & WAITERS != 0
    }
}

/// How many values the word's EPOCH takes (2^21).
const EPOCH_PERIOD: u64 = 1 << (32 - EPOCH_SHIFT);

/// The EPOCH of word `s`: the low 21 bits of the count of publishes.
fn epoch_of(s: u32) -> u64 {
    u64::from(s >> EPOCH_SHIFT)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// The blocking `wait_stopped` shares `stop_ended` with the future: a
    /// waiter that began in run N and looks again only after exactly 2^21
    /// publishes (the word's EPOCH back where it was, the state running
    /// again) still sees run N's stop.
    #[test]
    fn a_stop_wait_sees_its_stop_after_the_epoch_wraps() {
        let rs = RunState::new("wrap");
        rs.start().unwrap();
        let (since, began) = rs.stop_watch();
        assert!(!rs.stop_ended(began, since, "none"));
        rs.stop().unwrap();
        for _ in 0..((1u32 << 20) - 1) {
            rs.start().unwrap();
            rs.stop().unwrap();
        }
        rs.start().unwrap();
        let s = rs.state.load(Ordering::Acquire);
        assert_eq!(epoch_of(s), epoch_of(began), "the EPOCH has wrapped");
        assert!(rs.stop_ended(s, since, "none"));
        // And a run that is still the one it began in is not ended.
        let (since, s) = rs.stop_watch();
        assert!(!rs.stop_ended(s, since, "none"));
        assert!(rs.wait_stopped_timeout(Duration::ZERO).is_err());
    }
}
