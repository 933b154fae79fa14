//! The open path: `open`, `open_owned`, the fast `acquire` and its slow
//! path, startup, and the rollback of a failed startup.

use std::panic::Location;
use std::sync::Arc;

use super::guard::{OpenGuard, OwnedOpenGuard};
use super::resource::Resource;
use super::state::{
    COUNT_LIMIT, COUNT_MASK, EVER_OPENED, IDLE, OPEN, PHASE_MASK, STARTING, WAITERS,
};
use super::MultiOpen;
use crate::error::{CloseHow, CloseSite, OpenError};
use crate::sync::{busy_mark, is_busy, mutant, ordering_unless, Ordering};
use crate::unwind;

impl<R: Resource> MultiOpen<R> {
    /// Opens: the first open of a cycle runs startup in this thread; every
    /// other opener returns once the handle is up. Dropping the guard closes.
    ///
    /// Cost: on an open object, one `fetch_add`. Blocks (on a futex) while
    /// another thread runs startup or shutdown. If this call runs startup
    /// and it fails, the count is left as it was and the error is returned;
    /// if it panics, the panic propagates after the same clean-up, its
    /// payload untouched (yours to dispose of, even one whose own `Drop`
    /// panics). Either way a waiting opener then tries startup itself.
    ///
    /// Called from inside this object's own startup or shutdown, in the
    /// thread running it, it would wait for itself: it returns
    /// [`OpenError::Reentrant`] at once instead, and nothing changes.
    ///
    /// ```
    /// use multiopen::MultiOpen;
    ///
    /// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>("up"), |_| Ok(()));
    /// let g = mo.open()?;
    /// assert_eq!(*g, "up");
    /// assert_eq!(mo.open_count(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    #[inline]
    pub fn open(&self) -> Result<OpenGuard<'_, R>, OpenError<R::Error>> {
        self.acquire()?;
        Ok(OpenGuard {
            owner: self,
            opened_at: Location::caller(),
        })
    }

    /// Like [`open`](Self::open), for an `Arc<MultiOpen>`: the guard owns a
    /// reference, so it can move into a spawned thread.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use multiopen::MultiOpen;
    ///
    /// let mo = Arc::new(MultiOpen::from_fns(|| Ok::<_, std::io::Error>(5), |_| Ok(())));
    /// let g = mo.open_owned()?;
    /// std::thread::spawn(move || assert_eq!(*g, 5)).join().unwrap();
    /// assert!(mo.closed());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    #[inline]
    pub fn open_owned(self: &Arc<Self>) -> Result<OwnedOpenGuard<R>, OpenError<R::Error>> {
        self.acquire()?;
        Ok(OwnedOpenGuard {
            owner: Arc::clone(self),
            opened_at: Location::caller(),
        })
    }

    // ----- the open path -----

    /// Registers one open and returns once the handle is up.
    #[inline]
    #[track_caller]
    fn acquire(&self) -> Result<(), OpenError<R::Error>> {
        // Acquire: pairs with the Release that published OPEN, so the
        // handle the starter wrote is visible to this opener.
        let prev = self.state.fetch_add(
            1,
            ordering_unless("multi_open::open_relaxed", Ordering::Acquire),
        );
        // One mask and compare: phase OPEN and the count below COUNT_LIMIT.
        if prev & (PHASE_MASK | COUNT_LIMIT) == OPEN {
            return Ok(());
        }
        self.acquire_slow(prev)
    }

    /// The open path when the object is not simply open: our increment is
    /// in the count; wait out startup/shutdown, or run startup ourselves.
    #[cold]
    #[track_caller]
    fn acquire_slow(&self, prev: u32) -> Result<(), OpenError<R::Error>> {
        if prev & COUNT_MASK >= COUNT_LIMIT {
            // Take our increment back with an ordinary close: if every
            // other open closed meanwhile, ours is the final close and must
            // run shutdown like any other.
            let site = CloseSite {
                location: Location::caller(),
                how: CloseHow::Explicit,
            };
            // If that ran shutdown, its error has no caller to go to; it is
            // dropped inside `in_cleanup` (an error whose own Drop panics
            // while this thread unwinds must not abort the process).
            let outcome = self.release(site);
            unwind::in_cleanup(move || drop(outcome));
            return Err(OpenError::TooManyOpens {
                name: self.name.to_string(),
            });
        }
        let mut state = prev + 1;
        loop {
            match state & PHASE_MASK {
                // `state` came from an Acquire operation: the handle is
                // visible, and our increment keeps it up.
                OPEN => return Ok(()),
                IDLE => {
                    // Acquire: pairs with the shutter's (or failed
                    // starter's) Release into IDLE: we see what it did.
                    match self.state.compare_exchange_weak(
                        state,
                        (state & !PHASE_MASK) | STARTING,
                        Ordering::Acquire,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => return self.run_startup(),
                        Err(now) => state = now,
                    }
                }
                _ => {
                    // STARTING or SHUTTING_DOWN: sleep until it ends, unless
                    // this thread is the one running it (a startup or
                    // shutdown that opens its own object): that sleep would
                    // never end. Checked here only, before a sleep.
                    if is_busy(self.addr()) {
                        return Err(self.refuse_reentrant_open());
                    }
                    if state & WAITERS == 0 && !mutant("multi_open::opener_no_announce") {
                        // Relaxed on success: only announces a sleeper.
                        // Acquire on failure: the new value may be OPEN.
                        if let Err(now) = self.state.compare_exchange_weak(
                            state,
                            state | WAITERS,
                            Ordering::Relaxed,
                            Ordering::Acquire,
                        ) {
                            state = now;
                            continue;
                        }
                        state |= WAITERS;
                    }
                    self.state.wait(state);
                    // Acquire: the phase may now be OPEN (see above).
                    state = self.state.load(Ordering::Acquire);
                }
            }
        }
    }

    /// An open from inside this object's own startup or shutdown, in the
    /// thread running it: takes our increment back and refuses.
    #[cold]
    fn refuse_reentrant_open(&self) -> OpenError<R::Error> {
        // Relaxed: only takes back our own registration; we never touched
        // the handle, and the phase (STARTING or SHUTTING_DOWN) is this
        // thread's, so it cannot end under us and no close action is due.
        self.state.fetch_sub(1, Ordering::Relaxed);
        OpenError::Reentrant {
            name: self.name().to_owned(),
        }
    }

    /// Runs startup; we are the one thread in STARTING and own the handle
    /// cell. On success publishes the handle and moves to OPEN; on error or
    /// panic, `StartupRollback` takes our open back and returns to IDLE.
    fn run_startup(&self) -> Result<(), OpenError<R::Error>> {
        let rollback = StartupRollback { owner: self };
        // Marks this thread as the starter while startup runs (cleared even
        // if it panics), so that a re-entrant open or join refuses at once.
        let busy = busy_mark(self.addr());
        let result = self.resource.startup();
        drop(busy);
        let handle = match result {
            Ok(handle) => handle,
            Err(error) => {
                drop(rollback);
                return Err(OpenError::Startup {
                    name: self.name().to_owned(),
                    error,
                });
            }
        };
        std::mem::forget(rollback);
        // SAFETY: in STARTING only the starter touches the cell; openers
        // read it only after the Release below moves the phase to OPEN.
        self.handle.with_mut(|cell| unsafe { *cell = Some(handle) });
        // Relaxed: published by the Release below; only the starter writes.
        self.cycles.fetch_add(1, Ordering::Relaxed);
        // Release: publishes the handle (and the cycle number) to every
        // opener that Acquires OPEN.
        let publish = ordering_unless("multi_open::startup_publish_relaxed", Ordering::Release);
        self.end_phase(
            publish,
            |state| (state & !PHASE_MASK) | OPEN | EVER_OPENED,
            "multi_open::startup_no_wake",
        );
        Ok(())
    }
}

/// Undoes a startup that returned an error or panicked: takes the starter's
/// open back out of the count, returns to IDLE, wakes waiting openers (one
/// of them will run startup next).
struct StartupRollback<'a, R: Resource> {
    owner: &'a MultiOpen<R>,
}

impl<R: Resource> Drop for StartupRollback<'_, R> {
    fn drop(&mut self) {
        let keep = mutant("multi_open::startup_fail_keeps_count")
            || (mutant("multi_open::startup_panic_keeps_count") && std::thread::panicking());
        // Release: whatever the failed startup did to the resource happens
        // before the next starter's Acquire.
        self.owner.end_phase(
            Ordering::Release,
            |state| ((state - u32::from(!keep)) & !PHASE_MASK) | IDLE,
            "multi_open::startup_fail_no_wake",
        );
    }
}
