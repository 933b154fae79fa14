//! Waiting for the end of a cycle: `join`, and finalising shut-down cycles
//! (`finalise`, done by the final close itself unless finalise-later is set).

use super::resource::Resource;
use super::state::{cycle_reached, CYCLE_MASK, EVER_OPENED, IDLE, JOIN_WAITERS, PHASE_MASK};
use super::MultiOpen;
use crate::error::{FinaliseError, JoinError};
use crate::sync::{is_busy, mutant, ordering_unless, Ordering};

impl<R: Resource> MultiOpen<R> {
    /// Blocks until the current cycle is finalised: at once if it already
    /// is, else until its final close (or, with finalise-later, a
    /// [`finalise`](Self::finalise) call). Sleeps on a futex.
    ///
    /// Never hangs on misuse: an object that was never opened is an error,
    /// and so is a join from inside the object's own startup or shutdown
    /// (in the thread running it) that would have to wait
    /// ([`JoinError::Reentrant`]): the cycle cannot end before that startup
    /// or shutdown returns. Like joining one's own thread, joining while
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
        // Acquire: pairs with the Release that set EVER_OPENED, which the
        // starter made after counting its cycle, so `cycles` below is at
        // least that cycle.
        if self.state.load(Ordering::Acquire) & EVER_OPENED == 0 {
            return Err(JoinError::NeverOpened(self.never_opened_error()));
        }
        // Relaxed: ordered after the Acquire above; a later cycle seen here
        // is fine too (it is the current one).
        let target = self.cycles.load(Ordering::Relaxed) & CYCLE_MASK;
        // Acquire: pairs with `finalise`'s Release, so the joiner sees
        // everything the shutdown did.
        let mut word = self.finalised.load(Ordering::Acquire);
        loop {
            if cycle_reached(word >> 1, target) {
                return Ok(());
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
            if word & JOIN_WAITERS == 0 {
                // Relaxed: only announces a sleeper; the finaliser's swap
                // reads it in the same modification order.
                if let Err(now) = self.finalised.compare_exchange_weak(
                    word,
                    word | JOIN_WAITERS,
                    Ordering::Relaxed,
                    Ordering::Acquire,
                ) {
                    word = now;
                    continue;
                }
                word |= JOIN_WAITERS;
            }
            self.finalised.wait(word);
            // Acquire: as above.
            word = self.finalised.load(Ordering::Acquire);
        }
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
        // Relaxed: first guess for the CAS loop.
        let mut word = self.finalised.load(Ordering::Relaxed);
        loop {
            // Acquire: pairs with the shutter's Release increment, so the
            // joiners we release (via our Release below) see the shutdown.
            let shut = self.shutdowns.load(Ordering::Acquire) & CYCLE_MASK;
            // Never move FINALISED backwards: a finaliser that read an old
            // `shutdowns` may come after one that read a newer value (loom
            // found this: the newer cycle's joiners then slept forever).
            let done = if mutant("multi_open::finalise_backwards") {
                word >> 1 == shut // the bug loom found: may move backwards
            } else {
                cycle_reached(word >> 1, shut)
            };
            if done {
                return false;
            }
            if mutant("multi_open::finalise_check_then_act") {
                // The bug: a store that can overwrite a joiner's bit.
                self.finalised.store(shut << 1, Ordering::Release);
                break;
            }
            // Release: the joiners' Acquire load sees the shutdown.
            match self.finalised.compare_exchange_weak(
                word,
                shut << 1,
                ordering_unless("multi_open::finalise_relaxed", Ordering::Release),
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => word = now,
            }
        }
        if word & JOIN_WAITERS != 0 && !mutant("multi_open::finalise_no_wake") {
            self.finalised.wake_all();
        }
        true
    }
}
