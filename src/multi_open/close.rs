//! The close path: [`CloseOutcome`], [`CloseOptions`], closing detached
//! opens, the release of a held open, and the final close's shutdown.

use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe, Location};

#[cfg(doc)]
use super::guard::OpenGuard;
use super::resource::Resource;
use super::state::{COUNT_MASK, IDLE, LINGERING, OPEN, PHASE_MASK, SHUTTING_DOWN};
use super::MultiOpen;
use crate::error::{CloseError, CloseHow, CloseSite};
use crate::sync::{busy_mark, mutant, ordering_unless, Ordering};
use crate::unwind;

/// What a successful close did.
///
/// [`StillOpen`](CloseOutcome::StillOpen) means other opens were counted
/// at this close: held ones, or, for an instant, an opener being refused
/// or timing out. In the second case that opener's take-back is the final
/// close (see [`MultiOpen::seal`]).
///
/// ```
/// use multiopen::{CloseOutcome, MultiOpen};
///
/// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
/// let (a, b) = (mo.open()?, mo.open()?);
/// assert_eq!(a.close()?, CloseOutcome::StillOpen);
/// assert_eq!(b.close()?, CloseOutcome::ShutDown);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseOutcome {
    /// Other opens remain; nothing else happened.
    StillOpen,
    /// This was the final close: shutdown ran and succeeded.
    ShutDown,
    /// Nothing was open to close, and the caller said that was fine
    /// ([`CloseOptions::unopened_ok`]).
    NothingOpen,
    /// This close brought the count to zero, but so did another close at
    /// nearly the same moment (a re-open and re-close slipped in between),
    /// and that close ran the shutdown (or is running it). This close was
    /// final all the same: [`close_final`](OpenGuard::close_final) does not
    /// reject it. At most one close per cycle reports
    /// [`ShutDown`](CloseOutcome::ShutDown) or a shutdown error; none does
    /// if the cycle ended from a linger, or if the final close was the
    /// take-back of an opener that was refused or timed out (its shutdown
    /// error then goes to the
    /// [shutdown-error hook](MultiOpen::with_on_shutdown_error): see
    /// [`MultiOpen::seal`] for when that happens).
    ShutDownByOther,
    /// This was the final close of a [lingering](MultiOpen::with_linger)
    /// object: the resource stays up for the linger, and shuts down when
    /// it ends with no open (on the timer thread), or at a join, a seal or
    /// the drop. That shutdown's error goes to the
    /// [shutdown-error hook](MultiOpen::with_on_shutdown_error).
    /// [`close_final`](OpenGuard::close_final) accepts it as final.
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiopen::{CloseOutcome, MultiOpen};
    ///
    /// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()))
    ///     .with_linger(Duration::MAX);
    /// assert_eq!(mo.open()?.close_final()?, CloseOutcome::Lingering);
    /// assert!(mo.is_open());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    Lingering,
}

/// Options for [`MultiOpen::close_with`], after the Python
/// `close(enforce_final_close, caller_frame, unopened_ok)`; the caller's
/// location is taken by `#[track_caller]`.
///
/// ```
/// use multiopen::{CloseOptions, CloseOutcome, MultiOpen};
///
/// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
/// let quiet = CloseOptions::new().unopened_ok(true);
/// assert_eq!(mo.close_with(quiet)?, CloseOutcome::NothingOpen);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CloseOptions {
    enforce_final_close: bool,
    unopened_ok: bool,
}

impl CloseOptions {
    /// No options: like [`MultiOpen::close`].
    ///
    /// ```
    /// assert_eq!(multiopen::CloseOptions::new(), Default::default());
    /// ```
    pub const fn new() -> Self {
        Self {
            enforce_final_close: false,
            unopened_ok: false,
        }
    }

    /// The close must be the final one, or it returns
    /// [`CloseError::NotFinal`] (after closing all the same).
    ///
    /// ```
    /// use multiopen::{CloseError, CloseOptions, MultiOpen};
    ///
    /// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
    /// let held = mo.open()?;
    /// mo.open()?.detach();
    /// let must_be_final = CloseOptions::new().enforce_final_close(true);
    /// assert!(matches!(mo.close_with(must_be_final), Err(CloseError::NotFinal { still_open: 1, .. })));
    /// # drop(held);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub const fn enforce_final_close(mut self, yes: bool) -> Self {
        self.enforce_final_close = yes;
        self
    }

    /// Closing with nothing to close is not an error: it returns
    /// [`CloseOutcome::NothingOpen`]. For cleanup paths that may run even
    /// when the matching open never happened.
    ///
    /// ```
    /// use multiopen::{CloseOptions, MultiOpen};
    ///
    /// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
    /// assert!(mo.close().is_err());
    /// assert!(mo.close_with(CloseOptions::new().unopened_ok(true)).is_ok());
    /// ```
    pub const fn unopened_ok(mut self, yes: bool) -> Self {
        self.unopened_ok = yes;
        self
    }
}

impl<R: Resource> MultiOpen<R> {
    /// Closes one open that was [detached](OpenGuard::detach) from its guard
    /// (Python-style code that opens in one place and closes in another).
    /// The final close runs shutdown here and returns its result.
    ///
    /// With no detached open outstanding this is an extra close: an error
    /// that names where the last final close happened, and nothing changes.
    ///
    /// ```
    /// use multiopen::{CloseError, CloseOutcome, MultiOpen};
    ///
    /// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
    /// mo.open()?.detach();
    /// assert_eq!(mo.close()?, CloseOutcome::ShutDown);
    /// assert!(matches!(mo.close(), Err(CloseError::Unmatched(_))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    pub fn close(&self) -> Result<CloseOutcome, CloseError<R::Error>> {
        self.close_with(CloseOptions::new())
    }

    /// [`close`](Self::close) with [`CloseOptions`]: require the close to be
    /// final, or accept that nothing is open.
    ///
    /// ```
    /// use multiopen::{CloseOptions, CloseOutcome, MultiOpen};
    ///
    /// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
    /// mo.open()?.detach();
    /// let last = CloseOptions::new().enforce_final_close(true);
    /// assert_eq!(mo.close_with(last)?, CloseOutcome::ShutDown);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    pub fn close_with(&self, options: CloseOptions) -> Result<CloseOutcome, CloseError<R::Error>> {
        let site = CloseSite {
            location: Location::caller(),
            how: CloseHow::Explicit,
        };
        // Relaxed: only a first guess for the CAS below.
        let mut detached = self.detached.load(Ordering::Relaxed);
        loop {
            if detached == 0 {
                if options.unopened_ok {
                    return Ok(CloseOutcome::NothingOpen);
                }
                if !self.ever_opened() {
                    return Err(CloseError::NeverOpened(self.never_opened_error()));
                }
                return Err(CloseError::Unmatched(self.closed_error()));
            }
            // Acquire: pairs with `detach`'s Release, so the detaching
            // thread's use of the handle happens before our close (and so
            // before any shutdown it triggers).
            match self.detached.compare_exchange_weak(
                detached,
                detached - 1,
                ordering_unless("multi_open::detach_relaxed", Ordering::Acquire),
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => detached = now,
            }
        }
        self.release_with_options(site, options.enforce_final_close)
    }

    // ----- the close path -----

    /// Closes one held open; the final close runs shutdown.
    #[inline]
    pub(super) fn release(&self, site: CloseSite) -> Result<CloseOutcome, CloseError<R::Error>> {
        // Release: our reads of the handle happen before the shutter's
        // Acquire takes it away.
        let prev = self.state.fetch_sub(
            1,
            ordering_unless("multi_open::close_relaxed", Ordering::Release),
        );
        if prev & COUNT_MASK != 1 {
            return Ok(CloseOutcome::StillOpen);
        }
        self.release_last(site)
    }

    /// [`release`](Self::release), then the `enforce_final_close` check.
    pub(super) fn release_with_options(
        &self,
        site: CloseSite,
        enforce_final_close: bool,
    ) -> Result<CloseOutcome, CloseError<R::Error>> {
        match self.release(site)? {
            CloseOutcome::StillOpen if enforce_final_close => Err(CloseError::NotFinal {
                name: self.name().to_owned(),
                still_open: self.open_count(),
            }),
            outcome => Ok(outcome),
        }
    }

    /// A guard's drop: the same fast path as [`release`](Self::release).
    #[inline]
    pub(super) fn release_on_drop(&self, opened_at: &'static Location<'static>) {
        // Release: as in `release`.
        let prev = self.state.fetch_sub(
            1,
            ordering_unless("multi_open::close_relaxed", Ordering::Release),
        );
        if prev & COUNT_MASK == 1 {
            self.release_last_on_drop(opened_at);
        }
    }

    /// A guard's drop was the last close. Shutdown's error has no caller:
    /// it goes to the shutdown-error hook, if any, then is dropped (use
    /// `close()` to get it back instead). If this thread is already
    /// unwinding, a panic from shutdown, the hook or that error's `Drop` is
    /// swallowed rather than aborting the process; the state is consistent
    /// either way.
    #[cold]
    fn release_last_on_drop(&self, opened_at: &'static Location<'static>) {
        let site = CloseSite {
            location: opened_at,
            how: CloseHow::GuardDropped,
        };
        // Unwinding already: a panicking shutdown or hook is caught (and its
        // payload disposed of) instead of aborting the process. The
        // shutdown's error is a user value too: dropped inside, so a panic
        // from its `Drop` is caught as well.
        unwind::in_cleanup(|| drop(self.release_last_for(site, Caller::None)));
    }

    /// [`release`](Self::release) for a close that has no caller to
    /// return a shutdown's error to (an opener taking its open back): the
    /// error goes to the hook. The caller drops the result inside
    /// `unwind::in_cleanup`.
    pub(super) fn release_uncalled(
        &self,
        site: CloseSite,
    ) -> Result<CloseOutcome, CloseError<R::Error>> {
        // Release: as in `release`.
        let prev = self.state.fetch_sub(
            1,
            ordering_unless("multi_open::close_relaxed", Ordering::Release),
        );
        if prev & COUNT_MASK != 1 {
            return Ok(CloseOutcome::StillOpen);
        }
        if mutant("multi_open::takeback_error_not_hooked") {
            // The bug: as if a caller received the error (none does: the
            // opener returns its refusal, and the error is dropped).
            return self.release_last_for(site, Caller::Waits);
        }
        self.release_last_for(site, Caller::None)
    }

    /// Calls the shutdown-error hook, if any, with `error`, catching its
    /// panic: `Err` with the payload, for the caller to resume once the
    /// object is consistent.
    fn call_hook(&self, error: &R::Error) -> Result<(), Box<dyn Any + Send>> {
        let Some(hook) = &self.on_shutdown_error else {
            return Ok(());
        };
        catch_unwind(AssertUnwindSafe(|| hook(self.name(), error)))
    }

    /// The `MultiOpen`'s own drop found the resource up (detached opens
    /// never closed, or a linger): runs shutdown, its error to the hook.
    /// A panic from the shutdown, the hook or the error's `Drop` is caught:
    /// returned for the drop to resume once it has dropped the resource and
    /// the hook (so a panicking hook or shutdown leaks nothing), or, if
    /// this thread is unwinding already, disposed of (`None`): a second
    /// panic out of a destructor would abort the process.
    pub(super) fn shut_down_in_drop(&self, handle: R::Handle) -> Option<Box<dyn Any + Send>> {
        let shut = catch_unwind(AssertUnwindSafe(|| {
            if let Err(error) = self.resource.shutdown(handle) {
                let called = self.call_hook(&error);
                if let Err(payload) = called {
                    // The hook's panic goes on, after the error is disposed
                    // of (a panic from its `Drop` must not replace it).
                    let _ = unwind::catch(move || drop(error));
                    resume_unwind(payload)
                }
            }
        }));
        match shut {
            Ok(()) => None,
            Err(payload) if std::thread::panicking() => {
                unwind::drop_payload(payload);
                None
            }
            Err(payload) => Some(payload),
        }
    }

    /// Our close brought the count to zero: try to become the shutter.
    #[cold]
    fn release_last(&self, site: CloseSite) -> Result<CloseOutcome, CloseError<R::Error>> {
        self.release_last_for(site, Caller::Waits)
    }

    /// [`release_last`](Self::release_last), telling the shutdown whether
    /// a caller receives its error. A lingering object lingers instead.
    #[cold]
    fn release_last_for(
        &self,
        site: CloseSite,
        caller: Caller,
    ) -> Result<CloseOutcome, CloseError<R::Error>> {
        if let Some(linger) = &self.linger {
            return self.start_linger(linger, site, caller);
        }
        self.claim_shutdown(site, caller)
    }

    /// The count reached zero: claim the shutdown (unless a re-open or
    /// another close came first) and run it.
    #[cold]
    pub(super) fn claim_shutdown(
        &self,
        site: CloseSite,
        caller: Caller,
    ) -> Result<CloseOutcome, CloseError<R::Error>> {
        if mutant("multi_open::close_check_then_act") {
            // The bug: look, then leap.
            let state = self.state.load(Ordering::Acquire);
            if state & (PHASE_MASK | COUNT_MASK) != OPEN {
                return Ok(CloseOutcome::StillOpen);
            }
            self.state.store(state | SHUTTING_DOWN, Ordering::Relaxed);
            return self.run_shutdown(site, caller);
        }
        // Relaxed: first guess for the CAS.
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            if state & COUNT_MASK != 0 {
                // Someone opened again since our decrement: not final.
                return Ok(CloseOutcome::StillOpen);
            }
            if state & PHASE_MASK != OPEN {
                // The count is zero but another close that also brought it
                // to zero (after a re-open and re-close slipped in between)
                // claimed the shutdown first.
                return Ok(CloseOutcome::ShutDownByOther);
            }
            // Acquire: pairs with every closer's Release decrement (they
            // form one release sequence on this word), so all uses of the
            // handle happen before we take it. LINGERING (a lingering
            // object sealed meanwhile) is cleared with the claim.
            match self.state.compare_exchange_weak(
                state,
                (state & !(PHASE_MASK | LINGERING)) | SHUTTING_DOWN,
                ordering_unless("multi_open::shutdown_claim_relaxed", Ordering::Acquire),
                Ordering::Relaxed,
            ) {
                Ok(_) => return self.run_shutdown(site, caller),
                Err(now) => state = now,
            }
        }
    }

    /// Records `site` as the final close, for error messages.
    pub(super) fn store_final_close(&self, site: CloseSite) {
        // Tags in the two low bits of the `&Location` (aligned to at least
        // 4: see `LOCATION_TAGS` in mod.rs).
        let tag = match site.how {
            CloseHow::Explicit => 0,
            CloseHow::GuardDropped => 1,
            CloseHow::TakenBack => 2,
        };
        let location = (site.location as *const Location<'static>).cast_mut();
        // Relaxed: a diagnostic for error messages; it guards no data.
        self.final_close
            .store(location.map_addr(|addr| addr | tag), Ordering::Relaxed);
    }

    /// Runs shutdown; we are the one thread in SHUTTING_DOWN and own the
    /// handle cell. `ShutdownFinish` ends the phase even if shutdown panics.
    /// With no caller to receive its error, the hook gets it before the
    /// phase ends (so a joiner released by this cycle's finalise sees what
    /// the hook did), still under this thread's busy mark (so the hook's
    /// own open or join of this object is refused, not stuck).
    pub(super) fn run_shutdown(
        &self,
        site: CloseSite,
        caller: Caller,
    ) -> Result<CloseOutcome, CloseError<R::Error>> {
        self.store_final_close(site);
        // SAFETY: in SHUTTING_DOWN only the shutter touches the cell, and
        // our Acquire CAS saw every holder's Release close.
        let handle = self.handle.with_mut(|cell| unsafe { (*cell).take() });
        let finish = ShutdownFinish { owner: self };
        // Marks this thread as the shutter while shutdown runs (cleared
        // even if it panics): a re-entrant open or join refuses at once.
        let busy = busy_mark(self.addr());
        let result = match handle {
            Some(handle) => self.resource.shutdown(handle),
            None => Ok(()),
        };
        let hook_panic = match (&result, caller) {
            (Err(error), Caller::None) => self.call_hook(error).err(),
            _ => None,
        };
        drop(busy);
        drop(finish);
        if let Some(payload) = hook_panic {
            // The object is consistent now; the hook's panic goes on, after
            // the error is disposed of (a panic from its `Drop` must not
            // replace the hook's).
            let _ = unwind::catch(move || drop(result));
            resume_unwind(payload)
        }
        result
            .map(|()| CloseOutcome::ShutDown)
            .map_err(|error| CloseError::Shutdown {
                name: self.name().to_owned(),
                error,
            })
    }
}

/// Who receives a final close's shutdown error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Caller {
    /// The caller of the close (`guard.close()`, `MultiOpen::close`).
    Waits,
    /// Nobody (a guard's drop, an opener's take-back): the hook.
    None,
}

/// Ends a shutdown, even a panicking one: counts it, returns to IDLE, wakes
/// waiting openers, and finalises unless finalise-later is set.
struct ShutdownFinish<'a, R: Resource> {
    owner: &'a MultiOpen<R>,
}

impl<R: Resource> Drop for ShutdownFinish<'_, R> {
    fn drop(&mut self) {
        let owner = self.owner;
        // Release: `finalise_pending`'s Acquire then sees the shutdown.
        owner.shutdowns.fetch_add(1, Ordering::Release);
        // Release: the next starter's Acquire sees the shutdown's effects.
        owner.end_phase(
            Ordering::Release,
            |state| (state & !PHASE_MASK) | IDLE,
            "multi_open::shutdown_no_wake",
        );
        if !owner.finalise_later() {
            owner.finalise_pending();
        }
    }
}
