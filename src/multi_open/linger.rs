//! Linger: keeping the resource up for a while after its last close
//! ([`MultiOpen::with_linger`]), so that a burst of open/close cycles
//! (a server's requests) reuses one handle instead of restarting it.
//!
//! # The protocol (the LINGERING bit of the state word, see `state.rs`)
//! - **A close** that brings the count to zero (its `fetch_sub` is the
//!   ordinary hot-path one; the rest is its cold path) records the time
//!   (`last_idle`, a `fetch_max`), then sets LINGERING with a CAS that
//!   expects OPEN, count zero, not sealed (AcqRel: it publishes the time,
//!   and it reads any joiner's RMW before it, below). If the count moved
//!   or the object was sealed meanwhile, it does not linger (a re-opener's
//!   close lingers instead; a sealed object shuts down now). Then, if a
//!   joiner waits, it ends the linger itself; else it arms the timer, if
//!   none is armed (`armed`: one pending timer per object, not one per
//!   close).
//! - **An open** of a lingering object: its `fetch_add` (the hot-path one)
//!   registers it, and LINGERING being in `FAST_OPEN_MASK` sends it to the
//!   slow path, which clears the bit (one more RMW) and returns the live
//!   handle: no startup. Clearing it means a claim never sees LINGERING with
//!   count zero while a closer is between its decrement and its timestamp.
//! - **Ending the linger** (the timer when it is due, `join`, `seal`, a
//!   closer that sees a joiner) is one CAS from OPEN | LINGERING with count
//!   zero to SHUTTING_DOWN (Acquire, like a final close's claim): it either
//!   wins, and runs the shutdown in that thread, or finds an opener's
//!   increment first, and the opener keeps the handle. Exactly one of the
//!   two, which is the loom model `linger_expires_while_an_opener_arrives`.
//! - **The timer** (the crate's one timer thread, `crate::timer`) fires at
//!   the armed deadline: it clears `armed` (a swap, AcqRel: a closer whose
//!   arm it replaces has published its time to it), and if the object
//!   still lingers, either the linger is due (last close + linger has
//!   passed) and it claims the shutdown, or a later close moved the time on
//!   and it re-arms for the new deadline. A close while a timer is armed
//!   only moves `last_idle`: no timer entry per close in a burst.
//! - **join**: a joiner that finds the object lingering ends the linger.
//!   One that must sleep (opens are held) announces itself on the join
//!   word, then re-reads the state with an RMW (`fetch_or(0)`, AcqRel): so
//!   either that RMW comes after a closer's LINGERING CAS and the joiner
//!   sees the linger and ends it, or it comes before and the closer's CAS
//!   reads it, so the closer sees the joiner's announce and ends the linger
//!   itself. No joiner sleeps through a linger (the loom model
//!   `linger_ended_by_a_join_racing_an_opener`).
//!
//! # How the timer reaches the object
//! `with_linger` puts the object in an `Arc` (`Arc::new_cyclic`) and keeps
//! a `Weak` to it, in a closure that schedules the timer: the timer's task
//! holds only that `Weak`, so a pending timer never keeps the object alive,
//! and it can never touch an object that was moved (an `Arc`'s contents do
//! not move) or dropped (the upgrade fails). Cost: the object lives in an
//! `Arc` (most shared objects do anyway); one boxed record per lingering
//! object; a pending timer keeps the `Arc`'s allocation (not the object)
//! until it fires or the object's `Drop` cancels it. An object without a
//! linger carries one `None` and pays nothing else.
//!
//! A timestamp read of the clock (`Instant::now`) is the only cost a
//! lingering close adds to a close that brings the count to zero (which,
//! without linger, runs a shutdown). A close that races the expiry may have
//! its time missed by the timer (the timer claims after a concurrent close
//! set LINGERING): the linger then ends up to that closer's own scheduling
//! delay early; it never ends while an open is held.

use std::panic::Location;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::close::{Caller, CloseOutcome};
use super::resource::Resource;
use super::state::{
    ANY_JOIN_WAITERS, COUNT_MASK, LINGERING, OPEN, PHASE_MASK, SEALED, SHUTTING_DOWN,
};
use super::MultiOpen;
use crate::error::{CloseError, CloseHow, CloseSite};
use crate::sync::{mutant, AtomicU32, AtomicU64, Mutex, Ordering};
use crate::timer::{self, TimerKey};
use crate::unwind;

/// A lingering object's record: its linger, the time of its last idle
/// close, and its one timer.
pub(super) struct Linger {
    /// How long the resource stays up after its last close; not zero.
    duration: Duration,
    /// The origin of `last_idle`.
    base: Instant,
    /// When the count last reached zero, in nanoseconds since `base` (a
    /// `fetch_max`: never goes back). Written by closers, read by the timer.
    last_idle: AtomicU64,
    /// 1: a timer task is pending for this object (or fired and has not
    /// yet taken the flag back), and will look at the object again.
    armed: AtomicU32,
    /// The pending timer, for `Drop` to cancel. Locked only to arm (the
    /// schedule happens under it, so the key kept is the latest) and in
    /// `Drop`: never on a hot path.
    key: Mutex<Option<TimerKey>>,
    /// Schedules the object's expiry check at an instant: a task holding a
    /// `Weak` of the object. `None`: no timer thread could be started.
    arm: ArmFn,
}

/// See [`Linger::arm`].
type ArmFn = Box<dyn Fn(Instant) -> Option<TimerKey> + Send + Sync>;

impl Linger {
    /// Nanoseconds from `base` to `now`, saturating.
    fn since_base(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }

    /// When the linger that began at the last idle close ends; `None`:
    /// never (a linger too long for an `Instant`, such as `Duration::MAX`).
    fn due(&self) -> Option<Instant> {
        // Relaxed: ordered by the caller's Acquire on the state word or on
        // `armed` (see the module doc).
        let since = Duration::from_nanos(self.last_idle.load(Ordering::Relaxed));
        self.base.checked_add(since)?.checked_add(self.duration)
    }

    /// Does this linger ever end by itself?
    fn expires(&self) -> bool {
        self.base.checked_add(self.duration).is_some()
    }
}

impl<R: Resource + 'static> MultiOpen<R> {
    /// Keeps the resource up for `linger` after its last close: an open
    /// within the linger gets the live handle with no startup; when the
    /// linger ends with no open, shutdown runs on the crate's timer thread
    /// (so an idle resource really is released, with nobody calling). The
    /// linger is timed from the *last* close: a close within it starts it
    /// again. The last builder call: it returns the object in an `Arc`
    /// (the timer reaches it through a `Weak`, so a pending timer never
    /// keeps it alive and never touches it after it is dropped).
    ///
    /// While lingering the object is up: [`is_open`](Self::is_open) is
    /// true, [`closed`](Self::closed) false, [`state`](Self::state) says
    /// phase `Open` with `open_count` 0 and `lingering` true. Things that
    /// end a linger at once, running the shutdown in their caller's thread:
    /// [`join`](Self::join) and its timed and `try_` forms (which then
    /// return as the cycle is finalised), [`seal`](Self::seal), and dropping
    /// the `MultiOpen`. A close while a joiner waits, or while sealed, does
    /// not linger.
    ///
    /// - `Duration::ZERO`: no linger, today's behaviour (the last close runs
    ///   shutdown). Still returns an `Arc`.
    /// - `Duration::MAX` (or any linger past what an `Instant` holds):
    ///   lingers until a join, a seal or the drop; no timer is armed.
    ///
    /// The timer is one thread for the whole crate, named
    /// `multiopen-timer`, started by the first linger that needs it and
    /// never exiting (asleep, it costs nothing). It runs expiring
    /// shutdowns one after another, so a slow shutdown delays other
    /// objects' expiries; a shutdown that must not run there (it needs a
    /// thread-local, or takes seconds) is better ended by a `join` of your
    /// own. After `fork`, a linger inherited by the child ends by itself
    /// only once the child arms a timer of its own (the fork copies no
    /// timer thread; the child's first one serves the inherited lingers
    /// too); a join, seal or drop ends it as usual.
    ///
    /// A shutdown run by the timer (or by a join or seal ending the linger)
    /// has no caller: its error goes to the
    /// [shutdown-error hook](Self::with_on_shutdown_error), and a panic in
    /// it is caught on the timer thread (the object is consistent and
    /// usable either way: the cycle ended); a panic in a shutdown a join or
    /// seal runs propagates to that caller, as an explicit close's would. A
    /// close that begins a linger returns [`CloseOutcome::Lingering`].
    ///
    /// Cost: the open/close hot path is unchanged (one atomic RMW each on
    /// an object with opens held). A close that brings the count to zero
    /// reads the clock, does one CAS and one swap; the first such close
    /// after the timer fired schedules it again (a short lock). An open of
    /// a lingering object takes the slow path: one more atomic RMW, no
    /// startup. Expiry is as precise as the timer thread's wake-up.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use multiopen::{CloseOutcome, MultiOpen};
    ///
    /// let startups = Arc::new(AtomicUsize::new(0));
    /// let counted = Arc::clone(&startups);
    /// let log = MultiOpen::from_fns(
    ///     move || Ok::<_, std::io::Error>(counted.fetch_add(1, Ordering::SeqCst)),
    ///     |_| Ok(()),
    /// )
    /// .with_name("audit log")
    /// .with_linger(Duration::from_secs(60));
    /// for _request in 0..3 {
    ///     let handle = log.open()?;
    ///     assert_eq!(handle.close()?, CloseOutcome::Lingering);
    /// }
    /// assert_eq!(startups.load(Ordering::SeqCst), 1); // one startup for three requests
    /// assert!(log.is_open() && log.state().lingering);
    /// log.join()?; // ends the linger: shutdown runs here
    /// assert!(log.closed());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_linger(mut self, linger: Duration) -> Arc<Self> {
        if linger.is_zero() {
            return Arc::new(self);
        }
        Arc::new_cyclic(|this: &Weak<Self>| {
            let this = this.clone();
            let arm: ArmFn = Box::new(move |at| {
                let this = this.clone();
                let task: timer::Task = Box::new(move || {
                    if let Some(owner) = this.upgrade() {
                        owner.linger_timer_fired();
                    }
                });
                timer::schedule(at, task).ok()
            });
            self.linger = Some(Box::new(Linger {
                duration: linger,
                base: Instant::now(),
                last_idle: AtomicU64::new(0),
                armed: AtomicU32::new(0),
                key: Mutex::new(None),
                arm,
            }));
            self
        })
    }
}

impl<R: Resource> MultiOpen<R> {
    /// The linger set by [`with_linger`](Self::with_linger);
    /// `Duration::ZERO` if none.
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiopen::MultiOpen;
    ///
    /// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
    /// assert_eq!(mo.linger(), Duration::ZERO);
    /// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()))
    ///     .with_linger(Duration::from_millis(5));
    /// assert_eq!(mo.linger(), Duration::from_millis(5));
    /// ```
    pub fn linger(&self) -> Duration {
        self.linger.as_ref().map_or(Duration::ZERO, |l| l.duration)
    }

    /// A close brought the count to zero on a lingering object: record the
    /// time and linger (see the module doc), or shut down now if sealed or
    /// a joiner waits.
    #[cold]
    pub(super) fn start_linger(
        &self,
        linger: &Linger,
        site: CloseSite,
        caller: Caller,
    ) -> Result<CloseOutcome, CloseError<R::Error>> {
        // Relaxed: published by the AcqRel CAS below.
        linger
            .last_idle
            .fetch_max(linger.since_base(Instant::now()), Ordering::Relaxed);
        // Ours is the final close if the linger ends from here: recorded
        // now, so whoever ends it (after our CAS below) reports this site.
        // (If we do not linger after all, a later final close overwrites it.)
        self.store_final_close(site);
        // Relaxed: a first guess for the CAS.
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            if state & COUNT_MASK != 0 {
                // Re-opened since our decrement: that open's close lingers.
                return Ok(CloseOutcome::StillOpen);
            }
            if state & PHASE_MASK != OPEN {
                // A concurrent close lingered and the linger already ended.
                return Ok(CloseOutcome::ShutDownByOther);
            }
            if state & SEALED != 0 {
                // Sealed objects do not linger: the final close shuts down.
                return self.claim_shutdown(site, caller);
            }
            // AcqRel: Release publishes our time (and our uses of the
            // handle) to whoever claims from the LINGERING word; Acquire
            // reads a joiner's RMW made before it (see the module doc).
            // Even when the bit is already set (a concurrent close set it)
            // this writes, so that our time is published too.
            match self.state.compare_exchange_weak(
                state,
                state | LINGERING,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => state = now,
            }
        }
        // Relaxed: our CAS above read (Acquire) any joiner's RMW that came
        // before it, after that joiner's announce; a later joiner sees
        // LINGERING itself.
        if self.finalised.load(Ordering::Relaxed) & ANY_JOIN_WAITERS != 0
            && !mutant("multi_open::linger_close_ignores_joiners")
        {
            if let Some(result) = self.end_linger(caller) {
                return result;
            }
            return Ok(CloseOutcome::ShutDownByOther);
        }
        self.arm_linger(linger);
        Ok(CloseOutcome::Lingering)
    }

    /// Arms the object's timer for the end of the current linger, unless
    /// one is armed already (it will find the new time and re-arm) or the
    /// linger never ends. If no timer thread can be started, ends the
    /// linger now instead (as a linger of zero would).
    fn arm_linger(&self, linger: &Linger) {
        if !linger.expires() {
            return;
        }
        // AcqRel: Release hands our time to the timer that takes the flag
        // back (its swap reads ours); Acquire pairs with its swap in turn.
        if linger.armed.swap(1, Ordering::AcqRel) != 0 {
            return;
        }
        self.schedule_linger(linger);
    }

    /// Schedules the expiry check for the current deadline; `armed` is
    /// ours. Under the key lock, so the key kept is the latest scheduled.
    fn schedule_linger(&self, linger: &Linger) {
        let scheduled = linger.due().and_then(|due| {
            let mut key = linger.key.lock().unwrap_or_else(|e| e.into_inner());
            let new = (linger.arm)(due)?;
            *key = Some(new);
            Some(())
        });
        if scheduled.is_none() {
            // No timer thread (or the deadline overflowed after all): do
            // not leave the resource up with nobody to end it.
            // Relaxed: nobody waits on the flag; a later close re-arms.
            linger.armed.store(0, Ordering::Relaxed);
            if let Some(result) = self.end_linger(Caller::None) {
                unwind::in_cleanup(|| drop(result));
            }
        }
    }

    /// The timer fired (on the timer thread, or under loom on a model
    /// thread): end the linger if it is due, else re-arm for its new end.
    pub(super) fn linger_timer_fired(&self) {
        let Some(linger) = &self.linger else {
            return;
        };
        // AcqRel: Acquire sees the time of a close whose Release swap found
        // the flag set (so it left the re-check to us); Release for the
        // closer whose swap comes after ours and arms a new timer.
        linger.armed.swap(0, Ordering::AcqRel);
        // Acquire: pairs with the closer's AcqRel LINGERING CAS: its time.
        let state = self.state.load(Ordering::Acquire);
        if state & (PHASE_MASK | COUNT_MASK | LINGERING) != OPEN | LINGERING {
            // In use (its last close arms anew), or already ended.
            return;
        }
        let Some(due) = linger.due() else {
            // Never ends by itself (not armed for it; a safeguard).
            return;
        };
        if !timer::is_due(due) {
            // A later close moved the end on: check again then, unless a
            // closer armed a timer since our swap.
            let ours = linger
                .armed
                .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Relaxed);
            if ours.is_ok() {
                self.schedule_linger(linger);
            }
            return;
        }
        // Due: shut down here. The error went to the hook; a panic goes to
        // the timer thread's catch, the state consistent.
        if let Some(result) = self.end_linger_from(state, Caller::None) {
            drop(result);
        }
    }

    /// Ends the linger now if the object lingers (open, no opens,
    /// LINGERING): claims the shutdown and runs it in this thread. `None`
    /// if it was not lingering (in use, shut down, or never lingered).
    pub(super) fn end_linger(
        &self,
        caller: Caller,
    ) -> Option<Result<CloseOutcome, CloseError<R::Error>>> {
        self.linger.as_ref()?;
        // Acquire: as the claim's failure ordering, below.
        let state = self.state.load(Ordering::Acquire);
        self.end_linger_from(state, caller)
    }

    /// [`end_linger`](Self::end_linger), starting from `state`, a value of
    /// the word read by the caller (by an RMW where the protocol needs it).
    pub(super) fn end_linger_from(
        &self,
        mut state: u32,
        caller: Caller,
    ) -> Option<Result<CloseOutcome, CloseError<R::Error>>> {
        loop {
            if state & (PHASE_MASK | COUNT_MASK | LINGERING) != OPEN | LINGERING {
                return None;
            }
            if mutant("multi_open::linger_end_check_then_act") {
                // The bug: look, then leap (an opener's increment between
                // the look and the store keeps a handle being shut down).
                self.state.store(
                    (state & !(PHASE_MASK | LINGERING)) | SHUTTING_DOWN,
                    Ordering::Relaxed,
                );
                return Some(self.run_shutdown(self.lingering_close_site(), caller));
            }
            // Acquire: pairs with every closer's Release decrement and
            // LINGERING CAS (one release sequence of RMWs on this word), so
            // all uses of the handle and the closers' times happen before
            // we take it, as in a final close's claim.
            match self.state.compare_exchange_weak(
                state,
                (state & !(PHASE_MASK | LINGERING)) | SHUTTING_DOWN,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(self.run_shutdown(self.lingering_close_site(), caller)),
                Err(now) => state = now,
            }
        }
    }

    /// The site of the close that began the linger, recorded by
    /// `start_linger`: the final close of the cycle a linger ends.
    fn lingering_close_site(&self) -> CloseSite {
        self.final_close_site().unwrap_or(CloseSite {
            location: Location::caller(),
            how: CloseHow::Explicit,
        })
    }

    /// For `join`: a joiner that is about to sleep has announced itself;
    /// re-read the state with an RMW (see the module doc) and end a linger
    /// that began meanwhile. `true` if this ended one.
    pub(super) fn end_linger_for_joiner(&self) -> bool {
        if self.linger.is_none() {
            return false;
        }
        let state = if mutant("multi_open::linger_join_check_not_rmw") {
            // The bug: a plain load may miss a closer's LINGERING CAS
            // while that closer misses our announce.
            self.state.load(Ordering::Acquire)
        } else {
            // AcqRel: an RMW, so either it reads the closer's LINGERING CAS
            // (Acquire: and the claim below sees its time), or that CAS
            // reads it (Release: and the closer sees our announce).
            self.state.fetch_or(0, Ordering::AcqRel)
        };
        self.end_linger_from(state, Caller::None)
            .map(|result| unwind::in_cleanup(|| drop(result)))
            .is_some()
    }

    /// On drop: cancels the pending timer, if any (its task would find the
    /// object gone; this frees its entry now).
    pub(super) fn cancel_linger_timer(&mut self) {
        let Some(linger) = &self.linger else {
            return;
        };
        let key = linger.key.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(key) = key {
            timer::cancel(&key);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::atomic::{AtomicUsize as StdAtomicUsize, Ordering::SeqCst};
    use std::sync::{Arc, Mutex as StdMutex};
    use std::time::{Duration, Instant};

    use super::{ArmFn, Linger};
    use crate::sync::{AtomicU32, AtomicU64, Mutex};
    use crate::timer::{self, TimerKey};
    use crate::{FnMultiOpen, MultiOpen};

    /// A lingering object whose timer is not the timer thread's: `arm`
    /// counts its calls and schedules nothing that fires (a far-off no-op,
    /// cancelled at the end), so the test drives the expiry itself.
    struct Driven {
        mo: FnMultiOpen<()>,
        arms: Arc<StdAtomicUsize>,
        keys: Arc<StdMutex<Vec<TimerKey>>>,
        shutdowns: Arc<StdAtomicUsize>,
    }

    impl Drop for Driven {
        fn drop(&mut self) {
            for key in self.keys.lock().unwrap().drain(..) {
                timer::cancel(&key);
            }
        }
    }

    fn driven(duration: Duration) -> Driven {
        let shutdowns = Arc::new(StdAtomicUsize::new(0));
        let counted = Arc::clone(&shutdowns);
        let mut mo = MultiOpen::from_dyn_fns(
            || Ok(()),
            move |()| {
                counted.fetch_add(1, SeqCst);
                Ok(())
            },
        );
        let (arms, keys) = (
            Arc::new(StdAtomicUsize::new(0)),
            Arc::new(StdMutex::new(Vec::new())),
        );
        let (a, k) = (Arc::clone(&arms), Arc::clone(&keys));
        let arm: ArmFn = Box::new(move |_at| {
            a.fetch_add(1, SeqCst);
            let far = Instant::now() + Duration::from_secs(3600);
            let key = timer::schedule(far, Box::new(|| {})).ok()?;
            k.lock().unwrap().push(key);
            Some(key)
        });
        mo.linger = Some(Box::new(Linger {
            duration,
            base: Instant::now(),
            last_idle: AtomicU64::new(0),
            armed: AtomicU32::new(0),
            key: Mutex::new(None),
            arm,
        }));
        Driven {
            mo,
            arms,
            keys,
            shutdowns,
        }
    }

    /// A burst of closes arms one timer, not one per close.
    #[test]
    fn a_burst_of_closes_arms_one_timer() {
        let d = driven(Duration::from_secs(3600));
        for _ in 0..1000 {
            drop(d.mo.open().unwrap());
        }
        assert_eq!(d.arms.load(SeqCst), 1);
        assert!(d.mo.state().lingering);
        assert_eq!(d.shutdowns.load(SeqCst), 0);
    }

    /// The timer fires before the linger is due (a later close moved it
    /// on): it re-arms once, and the object keeps lingering; fired when
    /// due, it shuts down. Fired while an open is held, it does nothing
    /// and the next idle close arms again.
    #[test]
    fn an_early_timer_re_arms_and_a_due_one_shuts_down() {
        let d = driven(Duration::from_secs(3600));
        drop(d.mo.open().unwrap());
        d.mo.linger_timer_fired();
        assert_eq!(d.arms.load(SeqCst), 2, "re-armed for the real end");
        assert!(d.mo.state().lingering);
        // Held while it fires: nothing; the close arms anew.
        let g = d.mo.open().unwrap();
        d.mo.linger_timer_fired();
        assert_eq!((d.arms.load(SeqCst), d.shutdowns.load(SeqCst)), (2, 0));
        drop(g);
        assert_eq!(d.arms.load(SeqCst), 3);

        let d = driven(Duration::from_millis(1));
        drop(d.mo.open().unwrap());
        let due = Instant::now() + Duration::from_millis(1);
        while Instant::now() < due {
            std::thread::yield_now();
        }
        d.mo.linger_timer_fired();
        assert_eq!(d.shutdowns.load(SeqCst), 1, "due: shut down");
        assert!(d.mo.closed());
        assert_eq!(d.arms.load(SeqCst), 1);
    }
}
