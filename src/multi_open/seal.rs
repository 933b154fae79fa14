//! Closing for good and opening again: `seal`, `unseal`, `is_sealed` (the
//! SEALED bit of the state word, see `state.rs`).
//!
//! Linearization: an open takes effect at its increment of the state word
//! (the fast path's `fetch_add`, or, from IDLE, the CAS that claims
//! startup); `seal` takes effect at its `fetch_or`. All are RMWs of one
//! word, so they are totally ordered: an open ordered before the seal
//! found no SEALED bit and is a current holder (it keeps its open); one
//! ordered after finds the bit, falls off the fast path (SEALED is in
//! `FAST_OPEN_MASK`) and is refused by the slow path. An opener still
//! waiting behind a startup or shutdown has not taken effect: it is woken
//! and refused.

use super::close::Caller;
use super::resource::Resource;
use super::state::{ASYNC_OPEN_WAITERS, SEALED, WAITERS};
use super::MultiOpen;
use crate::sync::{mutant, Ordering};
use crate::unwind;

impl<R: Resource> MultiOpen<R> {
    /// Closes the object for good, until [`unseal`](Self::unseal): every
    /// new open, in every form (`open`, `try_open`, `open_timeout`,
    /// `open_deadline` and the `_owned` forms), returns
    /// [`OpenError::Sealed`](crate::OpenError::Sealed). Opens held now keep
    /// working; shutdown runs once the last of them has closed, and
    /// [`join`](Self::join) returns once that cycle is finalised (at once if
    /// it already is, or if the object never opened and is not starting).
    ///
    /// **Which call runs that shutdown.** A refused open counts itself for
    /// an instant: the open fast path is one `fetch_add` whatever the
    /// object's state, and the refusal, read from the value it returned,
    /// takes the increment back at once (no user code, no sleep in
    /// between). If the last holder closes within that instant, its close
    /// sees the refused opener's increment: it returns
    /// [`StillOpen`](crate::CloseOutcome::StillOpen) (or
    /// [`ShutDownByOther`](crate::CloseOutcome::ShutDownByOther)), and
    /// [`close_final`](crate::OpenGuard::close_final) returns a `NotFinal`
    /// error, and the refused opener's take-back is the final close: the
    /// shutdown runs inside that refused `open` call (before it returns
    /// `Sealed`), its error goes to the
    /// [shutdown-error hook](Self::with_on_shutdown_error) (or is dropped if
    /// there is none), a panic in it propagates out of that `open` call, and
    /// the recorded final close says
    /// [`CloseHow::TakenBack`](crate::CloseHow::TakenBack). Exactly one of
    /// the two: the holder's close reports the shutdown (its result or its
    /// error), or a take-back ran it and the hook got its error. So while
    /// refused opens may still arrive, set a hook to see every shutdown
    /// error, and use `join` (not the last close's outcome) to know that
    /// shutdown has run. (The same holds, on any object, for an opener that
    /// times out or is refused as too many: see
    /// [`try_open`](Self::try_open).)
    ///
    /// Openers asleep behind a startup or
    /// shutdown when this is called are woken and refused too: they never
    /// got their open. A startup already running when this is called was
    /// claimed by an open ordered before the seal: it finishes, and its
    /// cycle is the last one; a `join` made before that startup finished
    /// returns for the cycle before (as `join` always does), so join again
    /// to wait for the last. A seal during the first startup (the object
    /// never opened yet): the startup finishes and its cycle runs as above,
    /// but a `join` made before that startup finished finds no finished
    /// cycle to wait for and returns
    /// [`JoinError::NeverOpened`](crate::JoinError::NeverOpened) (as any
    /// join before the first startup does): join again once it has
    /// finished. After `tokio_util`'s `TaskTracker::close`; named
    /// `seal` because `close` already closes one open, and
    /// [`closed`](Self::closed) means "between cycles".
    ///
    /// Returns `true` if this call sealed the object, `false` if it was
    /// already sealed (sealing twice is harmless, not an error).
    ///
    /// On a [lingering](Self::with_linger) object with no opens, ends the
    /// linger: the shutdown runs here, in this call (its error goes to the
    /// [shutdown-error hook](Self::with_on_shutdown_error), a panic in it
    /// propagates to this caller once the cycle has ended).
    ///
    /// Cost: one atomic RMW, plus one futex wake if an opener sleeps, and
    /// a wake of the pending [open futures](Self::open_async) if any wait.
    /// Never blocks, and never runs startup; runs shutdown only to end a
    /// linger.
    ///
    /// ```
    /// use multiopen::{MultiOpen, OpenError};
    ///
    /// let db = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()))
    ///     .with_name("db");
    /// let held = db.open()?;
    /// assert!(db.seal());
    /// assert!(!db.seal()); // already sealed
    /// assert!(matches!(db.open(), Err(OpenError::Sealed { .. })));
    /// assert!(db.is_open()); // `held` still works
    /// drop(held); // the final close: shutdown runs
    /// assert!(db.closed());
    /// db.join()?; // finalised: returns at once
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn seal(&self) -> bool {
        // Relaxed: the bit guards no data; opens are ordered against it by
        // the one modification order of this word (see the module doc).
        let prev = self.state.fetch_or(SEALED, Ordering::Relaxed);
        // Sleeping openers must see the bit now, not at the phase's end.
        // WAITERS stays set: the phase's end clears it (one spare wake).
        if prev & WAITERS != 0 && !mutant("multi_open::seal_no_wake") {
            self.state.wake_all();
        }
        // Pending open futures likewise: woken, their next poll sees the
        // bit and completes with `OpenError::Sealed`. ASYNC_OPEN_WAITERS
        // stays set too (the phase's end clears it). Our RMW read a word
        // with the bit, so (with the fence inside) we see the registry.
        if prev & ASYNC_OPEN_WAITERS != 0 && !mutant("multi_open::seal_skips_open_wakers") {
            self.wake_open_futures();
        }
        // A sealed object does not linger: end a linger now, here. (A close
        // that would begin one after our RMW sees SEALED and shuts down.)
        // Its shutdown error goes to the hook; a panic propagates to us.
        if let Some(result) = self.end_linger(Caller::None) {
            unwind::in_cleanup(|| drop(result));
        }
        prev & SEALED == 0
    }

    /// Allows opens again after [`seal`](Self::seal) (tokio's
    /// `TaskTracker::reopen`). If the sealed cycle has ended, the next open
    /// runs startup: a new cycle. If holders of the sealed cycle remain,
    /// new opens join that cycle (it never ended, so no startup runs).
    ///
    /// Returns `true` if this call unsealed the object, `false` if it was
    /// not sealed (harmless, not an error).
    ///
    /// Cost: one atomic RMW. Never blocks.
    ///
    /// ```
    /// use multiopen::MultiOpen;
    ///
    /// let db = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
    /// drop(db.open()?);
    /// db.seal();
    /// assert!(db.open().is_err());
    /// assert!(db.unseal());
    /// assert!(!db.unseal()); // not sealed any more
    /// let g = db.open()?; // a new cycle
    /// assert_eq!(db.state().cycle, 2);
    /// # drop(g);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn unseal(&self) -> bool {
        // Relaxed: as in `seal`; the bit guards no data.
        self.state.fetch_and(!SEALED, Ordering::Relaxed) & SEALED != 0
    }

    /// Is the object sealed (between [`seal`](Self::seal) and
    /// [`unseal`](Self::unseal))? One atomic load; never blocks.
    ///
    /// ```
    /// use multiopen::MultiOpen;
    ///
    /// let db = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
    /// assert!(!db.is_sealed());
    /// db.seal();
    /// assert!(db.is_sealed());
    /// ```
    #[inline]
    pub fn is_sealed(&self) -> bool {
        // Relaxed: a point-in-time query; it guards no data.
        self.state.load(Ordering::Relaxed) & SEALED != 0
    }
}
