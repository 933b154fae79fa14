//! The open path: `open`, `open_owned`, the fast `acquire` and its slow
//! path, startup, and the rollback of a failed startup.

use std::panic::Location;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::deadline::{Deadline, Wait};
use super::guard::{OpenGuard, OwnedOpenGuard};
use super::resource::Resource;
use super::state::{
    COUNT_LIMIT, COUNT_MASK, EVER_OPENED, FAST_OPEN_MASK, IDLE, LINGERING, OPEN, PHASE_MASK,
    SEALED, STARTING, WAITERS,
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
    /// another thread runs startup or shutdown, for as long as that takes:
    /// [`try_open`](Self::try_open), [`open_timeout`](Self::open_timeout)
    /// and [`open_deadline`](Self::open_deadline) bound that wait. If this call runs startup
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

    /// [`open`](Self::open) that never waits: if another thread is running
    /// this object's startup or shutdown right now, returns
    /// [`OpenError::TimedOut`] (`waited` zero) at once instead of sleeping.
    /// If the object is idle, this call runs startup itself (that is work,
    /// not a wait) and returns its result.
    ///
    /// Cost: on an open object, the same one `fetch_add` as `open`; never a
    /// futex sleep, and no clock read. A refused try takes its increment
    /// back with one more atomic (which, if every other open closed
    /// meanwhile, is the final close and runs shutdown here: the last
    /// holder's close then reports `StillOpen`, and the shutdown's error
    /// goes to the [shutdown-error hook](Self::with_on_shutdown_error); see
    /// [`seal`](Self::seal)). Errors: as `open`, plus `TimedOut`.
    ///
    /// ```
    /// use multiopen::{MultiOpen, OpenError};
    ///
    /// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(1), |_| Ok(()));
    /// let g = mo.try_open()?; // idle: this call runs startup
    /// assert_eq!(*g, 1);
    /// assert_eq!(mo.open_count(), 1);
    /// # drop(g);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    pub fn try_open(&self) -> Result<OpenGuard<'_, R>, OpenError<R::Error>> {
        self.acquire_within(Wait::Never)?;
        Ok(OpenGuard {
            owner: self,
            opened_at: Location::caller(),
        })
    }

    /// [`open`](Self::open) that waits at most `timeout` for another
    /// thread's startup or shutdown to end, then returns
    /// [`OpenError::TimedOut`] with the time it waited; the count is left
    /// as it was. `Duration::ZERO` is [`try_open`](Self::try_open);
    /// `Duration::MAX` (or any timeout past what an `Instant` holds) waits
    /// until done, like `open`. A startup this call runs itself is not cut
    /// short.
    ///
    /// Cost: as `open` on an open object (the clock is read only if it has
    /// to wait); sleeps on the same futex as `open`, with the OS's timed
    /// wait, never polling. Errors: as `open`, plus `TimedOut`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiopen::MultiOpen;
    ///
    /// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>("up"), |_| Ok(()));
    /// let g = mo.open_timeout(Duration::from_millis(100))?;
    /// assert_eq!(*g, "up");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    pub fn open_timeout(&self, timeout: Duration) -> Result<OpenGuard<'_, R>, OpenError<R::Error>> {
        self.acquire_within(Wait::For(timeout))?;
        Ok(OpenGuard {
            owner: self,
            opened_at: Location::caller(),
        })
    }

    /// [`open_timeout`](Self::open_timeout) until a point in time: a
    /// deadline already past is [`try_open`](Self::try_open). Same cost,
    /// blocking and errors.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use multiopen::MultiOpen;
    ///
    /// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
    /// let g = mo.open_deadline(Instant::now() + Duration::from_secs(1))?;
    /// assert!(mo.is_open());
    /// # drop(g);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    pub fn open_deadline(
        &self,
        deadline: Instant,
    ) -> Result<OpenGuard<'_, R>, OpenError<R::Error>> {
        self.acquire_within(Wait::Until(deadline))?;
        Ok(OpenGuard {
            owner: self,
            opened_at: Location::caller(),
        })
    }

    /// [`try_open`](Self::try_open) for an `Arc<MultiOpen>`: the guard
    /// owns a reference (see [`open_owned`](Self::open_owned)). Same cost
    /// and errors; never waits.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use multiopen::MultiOpen;
    ///
    /// let mo = Arc::new(MultiOpen::from_fns(|| Ok::<_, std::io::Error>(5), |_| Ok(())));
    /// let g = mo.try_open_owned()?;
    /// std::thread::spawn(move || assert_eq!(*g, 5)).join().unwrap();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    pub fn try_open_owned(self: &Arc<Self>) -> Result<OwnedOpenGuard<R>, OpenError<R::Error>> {
        self.acquire_within(Wait::Never)?;
        Ok(OwnedOpenGuard {
            owner: Arc::clone(self),
            opened_at: Location::caller(),
        })
    }

    /// [`open_timeout`](Self::open_timeout) for an `Arc<MultiOpen>`. Same
    /// units, cost, blocking and errors.
    ///
    /// ```
    /// use std::{sync::Arc, time::Duration};
    /// use multiopen::MultiOpen;
    ///
    /// let mo = Arc::new(MultiOpen::from_fns(|| Ok::<_, std::io::Error>(5), |_| Ok(())));
    /// let g = mo.open_owned_timeout(Duration::from_millis(100))?;
    /// assert_eq!(*g, 5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    pub fn open_owned_timeout(
        self: &Arc<Self>,
        timeout: Duration,
    ) -> Result<OwnedOpenGuard<R>, OpenError<R::Error>> {
        self.acquire_within(Wait::For(timeout))?;
        Ok(OwnedOpenGuard {
            owner: Arc::clone(self),
            opened_at: Location::caller(),
        })
    }

    /// [`open_deadline`](Self::open_deadline) for an `Arc<MultiOpen>`.
    /// Same cost, blocking and errors.
    ///
    /// ```
    /// use std::{sync::Arc, time::{Duration, Instant}};
    /// use multiopen::MultiOpen;
    ///
    /// let mo = Arc::new(MultiOpen::from_fns(|| Ok::<_, std::io::Error>(5), |_| Ok(())));
    /// let g = mo.open_owned_deadline(Instant::now() + Duration::from_millis(100))?;
    /// assert_eq!(*g, 5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    pub fn open_owned_deadline(
        self: &Arc<Self>,
        deadline: Instant,
    ) -> Result<OwnedOpenGuard<R>, OpenError<R::Error>> {
        self.acquire_within(Wait::Until(deadline))?;
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
        // One mask and compare: phase OPEN, not sealed, and the count below
        // COUNT_LIMIT. This RMW is the open's linearization point: one
        // ordered after `seal`'s on this word sees SEALED and fails here.
        if prev & FAST_OPEN_MASK == OPEN {
            return Ok(());
        }
        self.acquire_slow(prev)
    }

    /// The open path when the object is not simply open: our increment is
    /// in the count; wait out startup/shutdown, or run startup ourselves.
    #[cold]
    #[track_caller]
    fn acquire_slow(&self, prev: u32) -> Result<(), OpenError<R::Error>> {
        self.acquire_slow_within(prev, Wait::Forever)
    }

    /// Registers one open and returns once the handle is up, or, if another
    /// thread's startup or shutdown outlasts `wait`, takes it back and
    /// returns [`OpenError::TimedOut`]. The fast path is `acquire`'s.
    #[inline]
    #[track_caller]
    fn acquire_within(&self, wait: Wait) -> Result<(), OpenError<R::Error>> {
        // Acquire: as in `acquire`.
        let prev = self.state.fetch_add(
            1,
            ordering_unless("multi_open::open_relaxed", Ordering::Acquire),
        );
        if prev & FAST_OPEN_MASK == OPEN {
            return Ok(());
        }
        self.acquire_slow_within(prev, wait)
    }

    /// The slow open path of every form: `wait` bounds only the sleep
    /// behind another thread's startup or shutdown (a startup this call
    /// runs itself is not cut short). Untimed: `Wait::Forever`, which reads
    /// no clock and sleeps with no timeout, as before timed forms existed.
    #[cold]
    #[track_caller]
    fn acquire_slow_within(&self, prev: u32, wait: Wait) -> Result<(), OpenError<R::Error>> {
        if prev & COUNT_MASK >= COUNT_LIMIT {
            self.back_out();
            return Err(OpenError::TooManyOpens {
                name: self.name.to_string(),
            });
        }
        let mut deadline = Deadline::new(wait);
        // A timed sleep ran out (the OS says so; under loom, at once).
        let mut timed_out = false;
        let mut state = prev + 1;
        loop {
            // Sealed: refused, whether the increment found it sealed or a
            // wake (from `seal`, or a phase's end) did. Before every other
            // branch, so a sealed object is never started nor joined.
            if state & SEALED != 0 && !mutant("multi_open::sealed_open_not_refused") {
                if mutant("multi_open::sealed_backout_not_a_close") {
                    // The bug: a bare decrement, which never runs the
                    // final close when the take-back is the last one.
                    // Release: as in `release`.
                    self.state.fetch_sub(1, Ordering::Release);
                    return Err(OpenError::Sealed {
                        name: self.name().to_owned(),
                    });
                }
                self.back_out();
                return Err(OpenError::Sealed {
                    name: self.name().to_owned(),
                });
            }
            match state & PHASE_MASK {
                // `state` came from an Acquire operation: the handle is
                // visible, and our increment keeps it up.
                OPEN => {
                    if state & LINGERING != 0 {
                        // A lingering object: ours is the open that ends
                        // the linger (no startup). Clear the mark, so that
                        // it is set again only by a close that has recorded
                        // its time (see `linger.rs`). Relaxed: the bit
                        // guards no data; our later close's decrement comes
                        // after this in the word's order.
                        self.state.fetch_and(!LINGERING, Ordering::Relaxed);
                    }
                    return Ok(());
                }
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
                    // Out of time (a try at once): before announcing, so a
                    // try never sets WAITERS and costs the phase's end no
                    // wake. Untimed: never (no clock read).
                    if timed_out || deadline.passed() {
                        return Err(self.time_out_open(&deadline));
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
                    // Untimed (`until` None): the plain futex wait. A timed
                    // sleep that runs out re-checks the phase, then leaves
                    // through `passed` above.
                    timed_out = !self.state.wait_deadline(state, deadline.until());
                    // Acquire: the phase may now be OPEN (see above).
                    state = self.state.load(Ordering::Acquire);
                }
            }
        }
    }

    /// Takes back the increment of an opener that will not get its open
    /// (sealed, too many opens, or timed out) with an ordinary close: if
    /// every other open closed meanwhile, ours is the final close and runs
    /// shutdown like any other (recorded as `CloseHow::TakenBack`). That
    /// shutdown's error has no caller to go to: it goes to the
    /// shutdown-error hook. Why the last holder's close cannot keep the
    /// final close instead: see `MultiOpen::seal` ("Which call runs that
    /// shutdown"); between our increment and this call there is no user
    /// code and no sleep (a timed opener sleeps only in STARTING or
    /// SHUTTING_DOWN, where nobody holds an open, and reads the phase again
    /// after each sleep: OPEN grants it the open).
    #[cold]
    #[track_caller]
    fn back_out(&self) {
        self.back_out_at(Location::caller());
    }

    /// [`back_out`](Self::back_out), recording `location` as the open call
    /// taken back (an open future's: where it was made).
    #[cold]
    pub(super) fn back_out_at(&self, location: &'static Location<'static>) {
        let site = CloseSite {
            location,
            how: CloseHow::TakenBack,
        };
        // A panicking shutdown or hook while this thread unwinds must not
        // abort the process: caught there (see `crate::unwind`); the
        // shutdown's error, a user value, is dropped inside too.
        unwind::in_cleanup(|| drop(self.release_uncalled(site)));
    }

    /// A timed opener out of time, in STARTING or SHUTTING_DOWN as last
    /// seen: takes its increment back (see [`back_out`](Self::back_out);
    /// the phase may have moved on since, so this may be the final close)
    /// and reports how long it waited. Wakes nobody. A WAITERS bit it set
    /// stays for the phase's end, which then makes one wake call even if
    /// nobody else sleeps: clearing it here could strand another sleeper
    /// that shares the bit.
    #[cold]
    #[track_caller]
    fn time_out_open(&self, deadline: &Deadline) -> OpenError<R::Error> {
        if mutant("multi_open::timed_open_clears_waiters") {
            // The bug: "nobody needs waking for me", but others may sleep.
            // Relaxed: the bug needs no ordering to strand a sleeper.
            self.state.fetch_and(!WAITERS, Ordering::Relaxed);
        }
        if mutant("multi_open::timed_open_keeps_count") {
            // The bug: leave without taking the increment back.
        } else if mutant("multi_open::timed_open_backout_not_a_close") {
            // The bug: a bare decrement that never runs the final close.
            // Release: as in `release`; only the final-close check is lost.
            self.state.fetch_sub(1, Ordering::Release);
        } else {
            self.back_out();
        }
        OpenError::TimedOut {
            name: self.name().to_owned(),
            waited: deadline.waited(),
        }
    }

    /// An open from inside this object's own startup or shutdown, in the
    /// thread running it: takes our increment back and refuses.
    #[cold]
    pub(super) fn refuse_reentrant_open(&self) -> OpenError<R::Error> {
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
    pub(super) fn run_startup(&self) -> Result<(), OpenError<R::Error>> {
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
