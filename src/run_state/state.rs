//! The state word: its bits (documented at the top), [`RunPhase`], and the
//! transitions that change the word (start, cancel, stop) with the queries
//! that read it.

use std::fmt;

use super::error::{CallbackPanicked, Cancelled, RunStateError};
use super::times::{wall_now, TimesRead};
use super::{RunEvent, RunState};
use crate::sync::{mutant, ordering_unless, Ordering};

// ---------------------------------------------------------------------------
// The state word (`RunState::state`, a futex word)
//
//   bits 31 .. 11  10      9          8         7       6      5       4      3       2      1       0
//   EPOCH          FUTURES CALLBACKS  CHILDREN  PARENT  ENDED  WAITERS TIMING STARTED PAUSED RUNNING CANCELLED
//
// CANCELLED: a cancel that holds for the run in progress or, if none is
//   running, for the next run ("sticky": a cancel before the start is not
//   lost, the start keeps it and the run begins cancelled). Set by a single
//   `fetch_or` (so cancel never waits). Cleared only by a stop, which turns
//   it into ENDED (the run it cancelled is over), unless PARENT is set.
//   Bit 0, so that `cancelled()` compiles to a load and a mask test.
// ENDED (ENDED_CANCELLED): the last run ended cancelled. Set by the stop
//   that clears CANCELLED, cleared by the next start, which first counts it
//   in `RunState::cancels_cleared` (so that a waiter that slept through
//   cancel, stop, start still sees it). `cancelled()` tests CANCELLED and
//   ENDED together (one load, one mask).
// PARENT (FROM_PARENT): the cancel came from a parent (`child`); set with
//   CANCELLED by the parent's cancel or at the child's creation, never
//   cleared: a child of a cancelled parent stays cancelled, run after run.
// CHILDREN (HAS_CHILDREN): some child has been made; set by `child` with an
//   RMW before it links the child (see `tree/mod.rs`), never cleared. A cancel that sees it in the
//   word it changed cancels the children (the slow path); a childless
//   cancel never looks at the registry.
// CALLBACKS (HAS_CALLBACKS): some callback has been registered; set by
//   the registration after it publishes its list, never cleared. A
//   parent's cancel that does not see it in the child's word it changed
//   skips the child's callbacks (and never needs a strong reference to
//   the child): most children have none.
// RUNNING: between a start's publish and a stop's publish.
// PAUSED: pause() while running and not cancelled; cleared by resume, stop
//   and start. A cancel leaves it, so "paused" reads as PAUSED and RUNNING
//   and not CANCELLED.
// STARTED: some start has been published; never cleared (pending vs stopped).
// TIMING: a start or stop has claimed the timestamps and is writing the
//   spare slot; set by the claim CAS, cleared by the publish. Another start
//   or stop that needs to claim waits for it (nothing else does).
// WAITERS: some thread sleeps (or is about to) on this word: in sleep(),
//   while paused, in `wait_cancelled`/`wait_stopped`, or waiting for TIMING.
//   Whoever clears it wakes all sleepers (the futex); cancel() wakes them
//   without clearing it (a `fetch_or` cannot clear), so after a cancel the
//   bit may be stale until the next start, stop or resume: at worst one
//   needless wake.
// FUTURES (ASYNC_WAITERS): some future's waker is (or is about to be)
//   registered in `RunState::wakers` (`futures.rs`): set by the RMW of the
//   registration protocol (`sync/wakers.rs`), after the registration. The
//   same rules as WAITERS, for the registry instead of the futex: whoever
//   clears it wakes the registry, cancel() wakes it without clearing. Apart
//   from WAITERS so that a transition makes the futex's wake syscall only if
//   a thread sleeps, and takes the registry's lock only if a future waits
//   (`RunState::wake_waiters`).
// EPOCH (bits 11..=31, 21 bits): start and stop publishes so far, mod 2^21
//   (the low bits of the 64-bit `Cold::publishes`).
//   Its low bit selects the live timestamp slot (and, as starts and stops
//   alternate, says whether a run is in progress); a reader whose two loads
//   of the word see the same EPOCH read a slot nobody wrote meanwhile
//   (unless exactly a multiple of 2^21 publishes, 2^20 runs, came between
//   its two loads, a few instructions apart: a torn read of the times, not
//   UB, since the slots are atomics). It does NOT name a run: the 64-bit
//   `RunState::runs` does, checked under `TIMING` by the guards and
//   `cancel_run`. `wait_stopped` and `wait_stopped_async` name the run they
//   wait for by the 64-bit count of publishes (`stop_watch`), so no number
//   of runs between their looks can alias it.
/// A cancel holds for the run in progress, or for the next run.
pub(super) const CANCELLED: u32 = 1 << 0;
/// Between a start and a stop.
pub(super) const RUNNING: u32 = 1 << 1;
/// Paused (meaningful only with `RUNNING` and without `CANCELLED`).
pub(super) const PAUSED: u32 = 1 << 2;
/// Started at least once.
pub(super) const STARTED: u32 = 1 << 3;
/// A start or stop is writing the spare timestamp slot.
pub(super) const TIMING: u32 = 1 << 4;
/// Someone sleeps on the state word.
pub(super) const WAITERS: u32 = 1 << 5;
/// The last run ended cancelled (its cancel is over; the next start clears it).
pub(super) const ENDED_CANCELLED: u32 = 1 << 6;
/// The cancel came from a parent: it is never cleared.
pub(super) const FROM_PARENT: u32 = 1 << 7;
/// Some child has been made (never cleared): a cancel cancels children.
pub(super) const HAS_CHILDREN: u32 = 1 << 8;
/// Some callback has been registered (never cleared): a parent's cancel
/// runs the child's callbacks only if it sees this.
pub(super) const HAS_CALLBACKS: u32 = 1 << 9;
/// Some future's waker is registered (or being registered): a transition
/// that replaced a word with it wakes the registry.
pub(super) const ASYNC_WAITERS: u32 = 1 << 10;
/// Either kind of waiter: a transition that sees one wakes
/// ([`RunState::wake_waiters`]); a clearing transition clears both.
pub(super) const ANY_WAITERS: u32 = WAITERS | ASYNC_WAITERS;
/// Either kind of cancel: what `cancelled()` tests.
pub(super) const ANY_CANCEL: u32 = CANCELLED | ENDED_CANCELLED;
/// Where the publish counter starts.
pub(super) const EPOCH_SHIFT: u32 = 11;
/// One publish.
const EPOCH_ONE: u32 = 1 << EPOCH_SHIFT;
/// Mask of the publish counter.
pub(super) const EPOCH_MASK: u32 = !(EPOCH_ONE - 1);

/// The live timestamp slot of state word `s`.
pub(super) fn live_slot(s: u32) -> usize {
    ((s >> EPOCH_SHIFT) & 1) as usize
}

/// Where a [`RunState`] is: the Python `cs.resources`'s labels, plus
/// `paused` from `cs.resources` 20250915.
///
/// `Display` gives the label.
///
/// ```
/// use multiopen::{RunPhase, RunState};
///
/// let rs = RunState::new("job");
/// assert_eq!(rs.state(), RunPhase::Pending);
/// rs.start()?;
/// assert_eq!(rs.state().to_string(), "running");
/// rs.cancel();
/// assert_eq!(rs.state(), RunPhase::Stopping);
/// rs.stop()?;
/// assert_eq!(rs.state(), RunPhase::Cancelled);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunPhase {
    /// Never started (`"pending"`).
    Pending,
    /// Running, not paused, not cancelled (`"running"`).
    Running,
    /// Running but paused (`"paused"`).
    Paused,
    /// Running and cancelled: asked to stop, not stopped yet (`"stopping"`).
    Stopping,
    /// Stopped, and cancelled (`"cancelled"`): the run was cancelled before
    /// it ended, or a cancel (or a deadline) came after its stop; such a
    /// cancel is kept for the next run, which begins cancelled (see
    /// [`RunState::start`]). [`RunState::reason`] tells which cancel.
    Cancelled,
    /// Stopped, not cancelled (`"stopped"`).
    Stopped,
}

impl RunPhase {
    /// The phase that state word `s` shows.
    pub(super) fn of(s: u32) -> Self {
        if s & STARTED == 0 {
            Self::Pending
        } else if s & RUNNING != 0 {
            if s & CANCELLED != 0 {
                Self::Stopping
            } else if s & PAUSED != 0 {
                Self::Paused
            } else {
                Self::Running
            }
        } else if s & ANY_CANCEL != 0 {
            Self::Cancelled
        } else {
            Self::Stopped
        }
    }

    /// The Python `cs.resources`'s label: `"pending"`, `"running"`,
    /// `"paused"`, `"stopping"`, `"cancelled"` or `"stopped"`.
    ///
    /// ```
    /// assert_eq!(multiopen::RunPhase::Stopping.label(), "stopping");
    /// ```
    pub const fn label(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Stopping => "stopping",
            Self::Cancelled => "cancelled",
            Self::Stopped => "stopped",
        }
    }
}

impl fmt::Display for RunPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

impl RunState {
    // --- transitions ------------------------------------------------------

    /// Starts a run: sets running, clears paused and the previous run's
    /// cancel, records the start time, then runs the
    /// [`on_start`](Self::on_start) callbacks.
    ///
    /// A cancel made while no run was in progress (before the first start,
    /// or after a stop) is kept: the run begins cancelled
    /// ([`stopping`](Self::stopping)), so an early Ctrl-C or a parent's
    /// cancel is not lost. A child of a cancelled parent starts cancelled
    /// every time.
    ///
    /// Errors: [`RunStateError::AlreadyRunning`] if it is running (nothing
    /// changes); [`RunStateError::CallbackPanicked`] if it started but
    /// callbacks panicked. A state that has stopped may start again.
    ///
    /// Never waits for a query, `cancel`, `pause` or `resume`; if another
    /// thread's start or stop is writing its timestamps at that moment (a
    /// handful of stores, no user code), this one sleeps on the futex until
    /// that is done.
    ///
    /// ```
    /// use multiopen::{RunState, RunStateError};
    ///
    /// let rs = RunState::new("job");
    /// rs.start()?;
    /// assert!(rs.is_running());
    /// assert!(matches!(rs.start(), Err(RunStateError::AlreadyRunning { .. })));
    /// rs.stop()?;
    /// rs.start()?; // a second run
    /// rs.stop()?;
    ///
    /// let early = RunState::new("early");
    /// early.cancel(); // before the start: kept
    /// early.start()?;
    /// assert!(early.stopping()); // the run begins cancelled
    /// # Ok::<(), RunStateError>(())
    /// ```
    pub fn start(&self) -> Result<(), RunStateError> {
        let (_, callbacks) = self.start_run(false)?;
        callbacks?;
        Ok(())
    }

    /// [`start`](Self::start), returning the run number it started (see
    /// `RunState::runs`: the run's name for the guards), and separately the callbacks'
    /// result.
    /// `by_guard`: a run guard starts it, and is its first holder (see
    /// `RunState::guards`).
    pub(super) fn start_run(
        &self,
        by_guard: bool,
    ) -> Result<(u64, Result<(), CallbackPanicked>), RunStateError> {
        let claimed = self.claim(true, None)?;
        // Relaxed, all: only a `TIMING` holder touches `runs` and `guards`,
        // and our claim (Acquire) follows the last holder's publish
        // (Release).
        let cold = self.cold();
        let run = cold.runs.load(Ordering::Relaxed).wrapping_add(1);
        cold.runs.store(run, Ordering::Relaxed);
        cold.guards.store(u64::from(by_guard), Ordering::Relaxed);
        let live = cold.times[live_slot(claimed)].read();
        let start_mono = self.ticks().max(live.stop_mono).max(live.start_mono);
        let start_wall = wall_now().max(live.stop_wall).max(live.start_wall);
        self.write_spare(
            claimed,
            TimesRead {
                start_wall,
                start_mono,
                ..live
            },
        );
        let prev = self.publish(
            |s| {
                ((s | RUNNING | STARTED) & !(ENDED_CANCELLED | PAUSED | TIMING | ANY_WAITERS))
                    .wrapping_add(EPOCH_ONE)
            },
            true,
        );
        self.wake_waiters(prev, "run_state::start_no_wake");
        Ok((run, self.notify(RunEvent::Start)))
    }

    /// Ends the run: clears running (and paused), records the stop time,
    /// wakes any thread waiting while paused, then runs the
    /// [`on_end`](Self::on_end) callbacks. Cancelled stays as it was.
    ///
    /// Errors: [`RunStateError::NeverStarted`] or
    /// [`RunStateError::NotRunning`] (nothing changes);
    /// [`RunStateError::CallbackPanicked`] if it stopped but callbacks
    /// panicked.
    ///
    /// Like [`start`](Self::start), it may sleep briefly on the futex while
    /// another thread's start or stop writes its timestamps.
    ///
    /// ```
    /// use multiopen::{RunState, RunStateError};
    ///
    /// let rs = RunState::new("job");
    /// assert!(matches!(rs.stop(), Err(RunStateError::NeverStarted { .. })));
    /// rs.start()?;
    /// rs.stop()?;
    /// assert!(rs.stopped() && !rs.is_running());
    /// # Ok::<(), RunStateError>(())
    /// ```
    pub fn stop(&self) -> Result<(), RunStateError> {
        self.stop_run(None)
    }

    /// [`stop`](Self::stop); with `Some(run)`, only if the current run is
    /// run number `run` (see `RunState::runs`), else `NotRunning`.
    pub(super) fn stop_run(&self, run: Option<u64>) -> Result<(), RunStateError> {
        let claimed = self.claim(false, run.map(|run| (run, "run_state::guard_ignores_run")))?;
        self.stop_claimed(claimed)
    }

    /// The stop, once claimed (`claimed` is the word with our `TIMING`).
    pub(super) fn stop_claimed(&self, claimed: u32) -> Result<(), RunStateError> {
        // A cancel of this run (seen now, with TIMING held: only this stop
        // can clear it) ends with it: its reason moves to the run's record
        // under the reasons lock, so `reason()` never pairs a word with the
        // other slot. A cancel that lands after this point is taken as
        // coming after the stop: it stays for the next run.
        let reasons =
            (claimed & (CANCELLED | FROM_PARENT) == CANCELLED).then(|| self.lock_reasons());
        let live = self.cold().times[live_slot(claimed)].read();
        let stop_mono = self.ticks().max(live.start_mono);
        let run = stop_mono - live.start_mono;
        self.write_spare(
            claimed,
            TimesRead {
                stop_wall: live.start_wall.saturating_add(run),
                stop_mono,
                total: live.total.saturating_add(run),
                ..live
            },
        );
        let ends_cancel = reasons.is_some();
        let prev = self.publish(
            |s| {
                let s = if ends_cancel {
                    (s & !CANCELLED) | ENDED_CANCELLED
                } else if mutant("run_state::stop_clears_late_cancel") {
                    // The bug: CANCELLED cleared whatever the claimed word
                    // said, so a cancel that landed after the claim is
                    // wiped: neither the ended run's nor the next run's.
                    s & !CANCELLED
                } else {
                    s
                };
                (s & !(RUNNING | PAUSED | TIMING | ANY_WAITERS)).wrapping_add(EPOCH_ONE)
            },
            false,
        );
        if let Some(mut reasons) = reasons {
            reasons.ended = reasons.current.take();
        }
        // After the reasons lock is released: a waker is user code, and
        // may read the reason (`a_waker_may_lock_what_its_wake_held`).
        self.wake_waiters(prev, "run_state::stop_no_wake");
        self.notify(RunEvent::End)?;
        Ok(())
    }

    /// The Python `cs.resources`'s alias for [`stop`](Self::stop).
    ///
    /// ```
    /// let rs = multiopen::RunState::new("job");
    /// rs.start()?;
    /// rs.end()?;
    /// assert!(rs.stopped());
    /// # Ok::<(), multiopen::RunStateError>(())
    /// ```
    pub fn end(&self) -> Result<(), RunStateError> {
        self.stop()
    }

    // --- queries: one load each ---------------------------------------------

    /// Is a run in progress (started and not yet stopped, paused or
    /// cancelled or not)? The Python `cs.resources`'s truthiness.
    ///
    /// One atomic load (Acquire: pairs with the transition's Release, so
    /// what the starting thread did before `start` is visible).
    ///
    /// ```
    /// let rs = multiopen::RunState::new("job");
    /// assert!(!rs.is_running());
    /// let _run = rs.run();
    /// assert!(rs.is_running());
    /// ```
    #[inline]
    pub fn is_running(&self) -> bool {
        self.state.load(Ordering::Acquire) & RUNNING != 0
    }

    /// Is the run cancelled: has [`cancel`](Self::cancel) (or a parent's
    /// cancel, or a deadline) come during this run, or before it started
    /// (a cancel is kept for the next run), or, once stopped, during the
    /// run that ended? A [`start`](Self::start) after a cancelled run's
    /// stop clears it (a child of a cancelled parent stays cancelled).
    ///
    /// One atomic load of a word that no query writes, and a mask test: as
    /// cheap to poll as an `AtomicBool`, on a child or grandchild too (a
    /// parent's cancel writes the children's words; this never walks). Acquire: pairs with
    /// `cancel`'s Release, so what the cancelling thread did before
    /// cancelling is visible once this returns true.
    ///
    /// ```
    /// let rs = multiopen::RunState::new("job");
    /// let _run = rs.run();
    /// while !rs.cancelled() {
    ///     // ... one step of work ...
    ///     # rs.cancel();
    /// }
    /// ```
    #[inline]
    pub fn cancelled(&self) -> bool {
        self.state.load(Ordering::Acquire) & ANY_CANCEL != 0
    }

    /// Running and cancelled: asked to stop, not stopped yet.
    ///
    /// One atomic load (Acquire, as [`cancelled`](Self::cancelled)).
    ///
    /// ```
    /// let rs = multiopen::RunState::new("job");
    /// rs.start()?;
    /// assert!(!rs.stopping());
    /// rs.cancel();
    /// assert!(rs.stopping());
    /// rs.stop()?;
    /// assert!(!rs.stopping());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn stopping(&self) -> bool {
        self.state.load(Ordering::Acquire) & (RUNNING | CANCELLED) == RUNNING | CANCELLED
    }

    /// Has [`stop`](Self::stop) run since the last [`start`](Self::start),
    /// cancelled or not? A state never started is not stopped (SPEC
    /// "Decisions").
    ///
    /// One atomic load (Acquire: pairs with the stop's Release).
    ///
    /// ```
    /// let rs = multiopen::RunState::new("job");
    /// assert!(!rs.stopped()); // pending
    /// rs.start()?;
    /// assert!(!rs.stopped());
    /// rs.stop()?;
    /// assert!(rs.stopped());
    /// # Ok::<(), multiopen::RunStateError>(())
    /// ```
    #[inline]
    pub fn stopped(&self) -> bool {
        self.state.load(Ordering::Acquire) & (STARTED | RUNNING) == STARTED
    }

    /// Running, paused, and not cancelled.
    ///
    /// One atomic load (Acquire, as [`is_running`](Self::is_running)).
    ///
    /// ```
    /// let rs = multiopen::RunState::new("job");
    /// rs.start()?;
    /// rs.pause()?;
    /// assert!(rs.is_paused());
    /// rs.cancel(); // a cancel ends the pause
    /// assert!(!rs.is_paused());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn is_paused(&self) -> bool {
        self.state.load(Ordering::Acquire) & (RUNNING | PAUSED | CANCELLED) == RUNNING | PAUSED
    }

    /// Where the state is, as the Python `cs.resources`'s label.
    ///
    /// One atomic load (Acquire), so the label is one consistent state.
    ///
    /// ```
    /// use multiopen::{RunPhase, RunState};
    ///
    /// let rs = RunState::new("job");
    /// rs.start()?;
    /// rs.stop()?;
    /// assert_eq!(rs.state(), RunPhase::Stopped);
    /// assert_eq!(format!("{}", rs.state()), "stopped");
    /// # Ok::<(), multiopen::RunStateError>(())
    /// ```
    #[inline]
    pub fn state(&self) -> RunPhase {
        RunPhase::of(self.state.load(Ordering::Acquire))
    }

    // --- internals ------------------------------------------------------------

    /// Claims the timestamps for a start (`starting`) or a stop: sets
    /// `TIMING`, waiting while another start or stop holds it. With
    /// `Some((run, mutant))` (a guard), the claim is kept only if the
    /// current run is run number `run`: checked once `TIMING` is held, when
    /// no start can change it, so no wrap-around and no window between
    /// check and act can fool it; otherwise `TIMING` is given back and the
    /// result is `NotRunning`. Returns the word as claimed, or the misuse
    /// error (nothing changed).
    pub(super) fn claim(
        &self,
        starting: bool,
        run: Option<(u64, &str)>,
    ) -> Result<u32, RunStateError> {
        // Relaxed: a first guess for the CAS.
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if starting && s & RUNNING != 0 {
                return Err(RunStateError::AlreadyRunning {
                    name: self.name.to_string(),
                });
            }
            if !starting && s & RUNNING == 0 {
                return Err(self.not_running_error(s));
            }
            if s & TIMING != 0 {
                self.wait_for_timing(s);
                // Relaxed: only a guess for the CAS again.
                s = self.state.load(Ordering::Relaxed);
                continue;
            }
            let claimed = if mutant("run_state::claim_check_then_act") {
                // The bug: test, then set, as two steps.
                self.state.fetch_or(TIMING, Ordering::Acquire);
                s | TIMING
            } else {
                // Acquire: pairs with the last publish (Release) — every
                // change since is an RMW in its release sequence — so we see
                // the live slot it wrote (and `runs`), and our writes to the
                // spare slot come after every earlier read of it by a
                // writer.
                match self.state.compare_exchange_weak(
                    s,
                    s | TIMING,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => s | TIMING,
                    Err(now) => {
                        s = now;
                        continue;
                    }
                }
            };
            if let Some((run, ignores_run)) = run {
                // Relaxed: `runs` changes only under TIMING, which we hold,
                // and our Acquire claim follows its last store.
                if self.cold().runs.load(Ordering::Relaxed) != run && !mutant(ignores_run) {
                    // Stopped (and started again) by someone else since.
                    self.unclaim();
                    return Err(RunStateError::NotRunning {
                        name: self.name.to_string(),
                    });
                }
            }
            return Ok(claimed);
        }
    }

    /// Gives back a claim that published no transition (a guard that found
    /// another run, or that joined or left a run others still hold):
    /// clears `TIMING` and both waiter bits, and wakes the waiters it saw
    /// (threads may be waiting for `TIMING`).
    #[cold]
    pub(super) fn unclaim(&self) {
        // Release: a guard's join or leave wrote the guard count under the
        // claim; the next claimant (Acquire) must see it, or the last guard
        // out could read a stale count and leave the run running (loom
        // `guard_joins_while_the_last_other_guard_ends`).
        let order = ordering_unless("run_state::unclaim_relaxed", Ordering::Release);
        let prev = self.state.fetch_and(!(TIMING | ANY_WAITERS), order);
        self.wake_waiters(prev, "run_state::unclaim_no_wake");
    }

    /// Publishes a claimed start (`starting`) or stop: `next` sets the
    /// flags, clears `TIMING` and both waiter bits and bumps `EPOCH` (making
    /// the spare slot live), in one RMW. Returns the word it replaced, whose
    /// waiters the caller wakes (`wake_waiters`) once it holds no lock: a
    /// wake runs user code (a future's waker).
    ///
    /// A start that will clear `ENDED_CANCELLED` first counts it in
    /// `cancels_cleared`. While we hold `TIMING` nobody else clears (or
    /// sets) the flag, so once seen it is still set when our CAS succeeds: each
    /// cleared cancel is counted exactly once, before its clearing.
    #[must_use = "the waiters of the word replaced are to be woken"]
    fn publish(&self, next: impl Fn(u32) -> u32, starting: bool) -> u32 {
        // Release: the spare slot's stores (and all before this
        // transition) are visible to whoever loads the new word with
        // Acquire. (The fence in `write_spare` already orders them before
        // this RMW; the Release here says so where the publish is, and
        // covers what the transition did before its claim.)
        let order = ordering_unless("run_state::times_no_release", Ordering::Release);
        let cold = self.cold();
        // Relaxed load: only a `TIMING` holder writes it, and our claim
        // (Acquire) follows the last. Release store: a waiter that reads
        // it (Acquire) sees the publish before ours (see `stop_watch`).
        let count = cold.publishes.load(Ordering::Relaxed) + 1;
        cold.publishes.store(count, Ordering::Release);
        // Relaxed: a first guess for the CAS.
        let mut s = self.state.load(Ordering::Relaxed);
        let mut counted = false;
        loop {
            if starting
                && s & ENDED_CANCELLED != 0
                && !counted
                && !mutant("run_state::restart_forgets_cancel")
            {
                // Release: a waiter whose Acquire load of the count sees
                // this increment also sees (in its next load of the word)
                // the word we just read, with CANCELLED; see `watch`.
                self.cancels_cleared.fetch_add(1, Ordering::Release);
                counted = true;
            }
            if mutant("run_state::publish_blind_write") {
                // The bug: the new word is computed from a plain load and
                // written blindly (a swap, not a CAS), so a cancel (a
                // `fetch_or`) landing between the two is lost. (A swap,
                // not a store: loom 0.7 lets a plain store slip inside
                // another thread's RMW, tokio-rs/loom#254, which would be
                // caught for the wrong reason.)
                self.state.swap(next(s), order);
                break s;
            }
            match self
                .state
                .compare_exchange_weak(s, next(s), order, Ordering::Relaxed)
            {
                Ok(prev) => break prev,
                Err(now) => s = now,
            }
        }
    }

    pub(super) fn not_running_error(&self, s: u32) -> RunStateError {
        let name = self.name.to_string();
        if s & STARTED == 0 {
            RunStateError::NeverStarted { name }
        } else {
            RunStateError::NotRunning { name }
        }
    }

    #[cold]
    pub(super) fn cancelled_error(&self) -> Cancelled {
        Cancelled {
            name: self.name.to_string(),
            reason: self.reason(),
        }
    }
}
