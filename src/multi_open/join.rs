//! Waiting for the end of a cycle: `join`, and finalising shut-down cycles
//! (`finalise`, done by the final close itself unless finalise-later is set).

use std::time::{Duration, Instant};

use super::close::Caller;
use super::deadline::{Deadline, Wait};
use super::resource::Resource;
use super::state::{
    ANY_JOIN_WAITERS, ASYNC_JOIN_WAITERS, EVER_OPENED, IDLE, JOIN_WAITERS, PHASE_MASK, SEALED,
    SEQUENCE_ONE,
};
use super::MultiOpen;
use crate::error::{FinaliseError, JoinError};
use crate::sync::{is_busy, mutant, ordering_unless, Ordering};
use crate::unwind;

impl<R: Resource> MultiOpen<R> {
    /// Blocks until the current cycle is finalised: at once if it already
    /// is, else until its final close (or, with finalise-later, a
    /// [`finalise`](Self::finalise) call). Sleeps on a futex, with no
    /// timeout: [`try_join`](Self::try_join),
    /// [`join_timeout`](Self::join_timeout) and
    /// [`join_deadline`](Self::join_deadline) bound the wait;
    /// [`join_async`](Self::join_async) awaits it from async code.
    ///
    /// On a [sealed](Self::seal) object that never opened and is not
    /// starting, returns `Ok` at once: no cycle can come to wait for.
    ///
    /// On a [lingering](Self::with_linger) object, ends the linger: with no
    /// opens held, the shutdown runs here, in this call, and the join
    /// returns once the cycle is finalised; with opens held, the last
    /// close shuts down at once instead of lingering. This holds for every
    /// form (`try_join` and the timed ones too). The shutdown's error goes
    /// to the [shutdown-error hook](Self::with_on_shutdown_error); a panic
    /// in it propagates to this caller once the cycle has ended. A timed
    /// join that timed out still counts as waiting for its cycle: that
    /// cycle's last close does not linger.
    ///
    /// Never hangs on misuse: an object that was never opened is an error,
    /// and so is a join from inside the object's own startup or shutdown
    /// (in the thread running it) that would have to wait
    /// ([`JoinError::Reentrant`]; in shutdown the finalise comes only after
    /// it, and in startup every opener would sleep behind the wait: see
    /// there). Like joining one's own thread, joining while
    /// this thread holds an open of the same object waits forever: close
    /// first.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use multiopen::MultiOpen;
    ///
    /// let mo = Arc::new(MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(())));
    /// assert!(mo.join().is_err()); // never opened: an error, not a hang
    /// let g = mo.open_owned()?;
    /// let closer = std::thread::spawn(move || drop(g));
    /// mo.join()?; // returns once the other thread's close shut it down
    /// assert!(mo.closed());
    /// closer.join().unwrap();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn join(&self) -> Result<(), JoinError> {
        self.join_within(Wait::Forever)
    }

    /// [`join`](Self::join) that never waits: `Ok` if the current cycle is
    /// finalised now, else [`JoinError::TimedOut`] (`waited` zero) at once.
    ///
    /// Cost: a few atomic loads, no clock read; never a futex sleep, and it
    /// announces no sleeper (the finalise wakes nobody for it). On a
    /// lingering object it ends the linger, as `join` does (the shutdown
    /// then runs in this call). Errors: as `join`, plus `TimedOut`.
    ///
    /// ```
    /// use multiopen::{JoinError, MultiOpen};
    ///
    /// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
    /// let g = mo.open()?;
    /// assert!(matches!(mo.try_join(), Err(JoinError::TimedOut { .. })));
    /// drop(g);
    /// mo.try_join()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_join(&self) -> Result<(), JoinError> {
        self.join_within(Wait::Never)
    }

    /// [`join`](Self::join) that waits at most `timeout`, then returns
    /// [`JoinError::TimedOut`] with the time it waited; nothing changes, and
    /// a later join may wait again. `Duration::ZERO` is
    /// [`try_join`](Self::try_join); `Duration::MAX` (or any timeout past
    /// what an `Instant` holds) waits until finalised, like `join`.
    ///
    /// Cost: as `join`; sleeps on the same futex with the OS's timed wait,
    /// never polling (the clock is read only if it has to wait). Errors: as
    /// `join`, plus `TimedOut`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiopen::{JoinError, MultiOpen};
    ///
    /// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
    /// let g = mo.open()?;
    /// let err = mo.join_timeout(Duration::from_millis(10)).unwrap_err();
    /// assert!(matches!(err, JoinError::TimedOut { waited, .. } if waited >= Duration::from_millis(10)));
    /// drop(g);
    /// mo.join_timeout(Duration::MAX)?; // forever: returns once finalised
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), JoinError> {
        self.join_within(Wait::For(timeout))
    }

    /// [`join_timeout`](Self::join_timeout) until a point in time: a
    /// deadline already past is [`try_join`](Self::try_join). Same cost,
    /// blocking and errors.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use multiopen::MultiOpen;
    ///
    /// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
    /// drop(mo.open()?);
    /// mo.join_deadline(Instant::now() + Duration::from_secs(1))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn join_deadline(&self, deadline: Instant) -> Result<(), JoinError> {
        self.join_within(Wait::Until(deadline))
    }

    /// Every form of join: `Wait::Forever` reads no clock and sleeps with
    /// no timeout (the untimed `join`).
    fn join_within(&self, wait: Wait) -> Result<(), JoinError> {
        // No clock read yet: only a timed form about to sleep reads it.
        let mut deadline = Deadline::new(wait);
        // A timed sleep ran out (the OS says so; under loom, at once).
        let mut timed_out = false;
        let Some(target) = self.join_target()? else {
            return Ok(());
        };
        // Acquire: pairs with the finaliser's Release bump of the word (see
        // the protocol in `state.rs`).
        let mut word = self.finalised.load(Ordering::Acquire);
        loop {
            // Acquire: pairs with the finaliser's Release raise of the
            // count, so the joiner sees everything the shutdown did. Exact
            // 64-bit compare: never wraps (see `state.rs`).
            if self.finalised_cycles.load(Ordering::Acquire) >= target {
                return Ok(());
            }
            // Lingering: end the linger here (the shutdown runs in this
            // thread and, unless finalise-later, finalises the cycle).
            if let Some(result) = self.end_linger(Caller::None) {
                unwind::in_cleanup(|| drop(result));
                continue;
            }
            // About to sleep: not if this thread runs this object's startup
            // or shutdown. In shutdown, the finalise waited for comes only
            // after it returns; in startup, the wait would hold every opener
            // asleep behind it. Checked here only, before a sleep.
            if is_busy(self.addr()) {
                return Err(JoinError::Reentrant {
                    name: self.name.to_string(),
                });
            }
            // Out of time (a try at once): before announcing, so a try sets
            // no JOIN_WAITERS. A timed joiner that announced leaves the bit
            // for the finalise, which wakes whoever else sleeps.
            if timed_out || deadline.passed() {
                if mutant("multi_open::timed_join_says_done") {
                    return Ok(()); // The bug: a time-out reported as done.
                }
                return Err(JoinError::TimedOut {
                    name: self.name.to_string(),
                    waited: deadline.waited(),
                });
            }
            if word & JOIN_WAITERS == 0 {
                // Relaxed on success: only announces a sleeper; `word` was
                // read by an Acquire, and every write to the word is an RMW,
                // so we already see the count of any bump before it (the
                // finaliser's bump after it reads the bit and wakes us).
                // Acquire on failure: a newer word may come with a newer
                // count, re-read at the loop's top before any sleep.
                match self.finalised.compare_exchange_weak(
                    word,
                    word | JOIN_WAITERS,
                    Ordering::Relaxed,
                    Ordering::Acquire,
                ) {
                    Ok(_) => {
                        word |= JOIN_WAITERS;
                        // A close may have begun a linger without seeing our
                        // announce: find it with an RMW and end it (see
                        // `linger.rs`).
                        self.end_linger_for_joiner();
                    }
                    Err(now) => word = now,
                }
                continue;
            }
            // Untimed (`until` None): the plain futex wait.
            timed_out = !self.finalised.wait_deadline(word, deadline.until());
            // Acquire: as above.
            word = self.finalised.load(Ordering::Acquire);
        }
    }

    /// Where every form of join (the future too) begins: the cycle to wait
    /// for (`Some`), `None` if there is nothing to wait for (sealed and idle,
    /// never opened), or `NeverOpened`.
    pub(super) fn join_target(&self) -> Result<Option<u64>, JoinError> {
        // Acquire: pairs with the Release that set EVER_OPENED, which the
        // starter made after counting its cycle, so `cycles` below is at
        // least that cycle.
        let state = self.state.load(Ordering::Acquire);
        if state & EVER_OPENED == 0 {
            // Sealed and idle, never opened: no cycle ran and none can
            // start (an open would be refused), so nothing to wait for.
            if state & (SEALED | PHASE_MASK) == SEALED | IDLE {
                return Ok(None);
            }
            return Err(JoinError::NeverOpened(self.never_opened_error()));
        }
        // Relaxed: ordered after the Acquire above; a later cycle seen here
        // is fine too (it is the current one).
        Ok(Some(self.cycles.load(Ordering::Relaxed)))
    }

    /// Finalises every cycle that has shut down and is not yet finalised,
    /// releasing their joiners. The final close does this itself unless
    /// finalise-later is set. Finalising when there is nothing to finalise
    /// (twice, before any close, or never opened) is an error.
    ///
    /// ```
    /// use multiopen::{FinaliseError, MultiOpen};
    ///
    /// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()))
    ///     .with_finalise_later(true);
    /// let g = mo.open()?;
    /// assert!(matches!(mo.finalise(), Err(FinaliseError::StillOpen { .. })));
    /// drop(g);
    /// mo.finalise()?;
    /// assert!(matches!(mo.finalise(), Err(FinaliseError::AlreadyFinalised { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn finalise(&self) -> Result<(), FinaliseError> {
        if self.finalise_pending() {
            return Ok(());
        }
        // Relaxed: only chooses the error message.
        let state = self.state.load(Ordering::Relaxed);
        Err(if state & EVER_OPENED == 0 {
            FinaliseError::NeverOpened(self.never_opened_error())
        } else if state & PHASE_MASK != IDLE {
            FinaliseError::StillOpen {
                name: self.name.to_string(),
            }
        } else {
            FinaliseError::AlreadyFinalised {
                name: self.name.to_string(),
            }
        })
    }

    // ----- finalise -----

    /// Finalises every shut-down cycle not yet finalised; false if there
    /// was none.
    pub(super) fn finalise_pending(&self) -> bool {
        let publish = ordering_unless("multi_open::finalise_relaxed", Ordering::Release);
        // Relaxed: first guess for the CAS loop.
        let mut done = self.finalised_cycles.load(Ordering::Relaxed);
        loop {
            // Acquire: pairs with the shutter's Release increment, so the
            // joiners we release (via our Release below) see the shutdown.
            let shut = self.shutdowns.load(Ordering::Acquire);
            // Never move the count backwards: a finaliser that read an old
            // `shutdowns` may come after one that read a newer value (loom
            // found this: the newer cycle's joiners then slept forever).
            // Exact 64-bit compare: never wraps (see `state.rs`).
            let nothing_new = if mutant("multi_open::finalise_backwards") {
                done == shut // the bug loom found: may move backwards
            } else {
                done >= shut
            };
            if nothing_new {
                return false;
            }
            // Release: a joiner's Acquire load of the count sees the
            // shutdown.
            match self.finalised_cycles.compare_exchange_weak(
                done,
                shut,
                publish,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => done = now,
            }
        }
        // The wake signal: bump SEQUENCE and clear both waiter bits in one
        // RMW.
        let bump = |word: u32| (word & !ANY_JOIN_WAITERS).wrapping_add(SEQUENCE_ONE);
        let prev = if mutant("multi_open::finalise_check_then_act") {
            // The bug: a load and a store, which can overwrite a joiner's
            // announce made in between (and then not wake it).
            let word = self.finalised.load(Ordering::Relaxed);
            self.finalised.store(bump(word), publish);
            word
        } else {
            // Relaxed: first guess for the CAS loop.
            let mut word = self.finalised.load(Ordering::Relaxed);
            loop {
                // Release: a joiner whose Acquire announce or load reads this
                // bump (or a later RMW) sees our count above.
                match self.finalised.compare_exchange_weak(
                    word,
                    bump(word),
                    publish,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => break word,
                    Err(now) => word = now,
                }
            }
        };
        if prev & JOIN_WAITERS != 0 && !mutant("multi_open::finalise_no_wake") {
            self.finalised.wake_all();
        }
        if prev & ASYNC_JOIN_WAITERS != 0 && !mutant("multi_open::finalise_skips_join_wakers") {
            self.wake_join_futures();
        }
        true
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::{mpsc, Arc};
    use std::time::Duration;

    use super::super::state::{ANY_JOIN_WAITERS, JOIN_WAITERS};
    use crate::sync::Ordering::SeqCst;
    use crate::MultiOpen;

    type Mo = crate::FnMultiOpen<()>;

    /// An object through one cycle (opened, closed, finalised).
    fn one_cycle() -> Arc<Mo> {
        let mo = Arc::new(MultiOpen::from_dyn_fns(|| Ok(()), |()| Ok(())));
        drop(mo.open().unwrap());
        mo
    }

    /// `join` returns within 10 s.
    fn joins_without_hanging(mo: &Arc<Mo>) -> bool {
        let (tx, rx) = mpsc::channel();
        let mo = Arc::clone(mo);
        std::thread::spawn(move || tx.send(mo.join().is_ok()));
        rx.recv_timeout(Duration::from_secs(10)).unwrap_or(false)
    }

    /// Sets the counters: `cycles` started, `shut` shut down, `finalised`
    /// finalised (what a descheduled joiner or finaliser would see).
    fn set_counters(mo: &Mo, cycles: u64, shut: u64, finalised: u64) {
        mo.cycles.store(cycles, SeqCst);
        mo.shutdowns.store(shut, SeqCst);
        mo.finalised_cycles.store(finalised, SeqCst);
        // As the code before this test had it (the count mod 2^31 in the
        // word); now only a wake signal.
        mo.finalised
            .store(((finalised as u32) << 2) & !ANY_JOIN_WAITERS, SeqCst);
    }

    /// A joiner reads its target cycle `t`, is descheduled, and 2^30 cycles
    /// are finalised meanwhile: it must see its cycle finalised.
    #[test]
    fn cycle_counter_never_wraps_for_a_descheduled_joiner() {
        let mo = one_cycle();
        let t = 1;
        set_counters(&mo, t, t + (1 << 30), t + (1 << 30));
        assert!(joins_without_hanging(&mo));
    }

    /// A finaliser reads `shutdowns` = `s`, is descheduled, and 2^30 more
    /// cycles are finalised meanwhile: it must not move the finalised count
    /// back to `s` (stranding the joiners of the newer cycles).
    #[test]
    fn cycle_counter_never_wraps_for_a_descheduled_finaliser() {
        let mo = one_cycle();
        let s = 1;
        let now = s + (1 << 30);
        set_counters(&mo, now, s, now);
        assert!(!mo.finalise_pending(), "nothing newer to finalise");
        assert!(joins_without_hanging(&mo));
    }

    /// Waits until some joiner has announced itself on `mo` (it has read its
    /// target cycle by then: the target is read before the announce).
    fn wait_for_a_sleeping_joiner<R: crate::Resource>(mo: &MultiOpen<R>) {
        while mo.finalised.load(SeqCst) & JOIN_WAITERS == 0 {
            std::thread::yield_now();
        }
    }

    /// A joiner of cycle 1, a re-open before cycle 1 is finalised (finalise
    /// later), then a joiner of cycle 2: finalising releases only cycle 1's
    /// joiner; cycle 2's waits for its own finalise. Moved here from
    /// tests/multi_open.rs, where it slept 10 ms and hoped the first joiner
    /// had read its target by then (under Miri it had not, and it waited for
    /// cycle 2, which the test finalises only after joining it).
    #[test]
    fn reopen_before_pending_finalise_strands_no_joiner() {
        let cycles = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counter = Arc::clone(&cycles);
        let mo: Arc<crate::FnMultiOpen<u32>> = Arc::new(
            MultiOpen::from_dyn_fns(
                move || Ok(counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1),
                |_| Ok(()),
            )
            .with_finalise_later(true),
        );
        let old_cycle = mo.open_owned().unwrap();
        let old_joiner = {
            let mo = Arc::clone(&mo);
            std::thread::spawn(move || mo.join().unwrap())
        };
        wait_for_a_sleeping_joiner(&mo);
        drop(old_cycle);
        let new_cycle = mo.open().unwrap(); // before finalise: cycle 2 starts
        assert_eq!(*new_cycle, 2);
        let (released, new_released) = mpsc::channel();
        let new_joiner = {
            let mo = Arc::clone(&mo);
            std::thread::spawn(move || {
                mo.join().unwrap();
                released.send(()).unwrap();
            })
        };
        mo.finalise().unwrap(); // finalises cycle 1 only
        old_joiner.join().unwrap();
        assert!(
            new_released
                .recv_timeout(Duration::from_millis(20))
                .is_err(),
            "cycle 2 joiner released early"
        );
        drop(new_cycle);
        mo.finalise().unwrap();
        new_joiner.join().unwrap();
        assert_eq!(cycles.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
