//! The state word and the finalise word: their bit layouts and constants,
//! the [`Phase`] and [`MultiOpenState`] snapshot, the queries that read the
//! word, and the end of a startup or shutdown phase.

use std::fmt;

use super::resource::Resource;
use super::MultiOpen;
use crate::error::{CloseSite, ClosedError, NotOpenedError};
use crate::sync::{mutant, Ordering};

// ---------------------------------------------------------------------------
// The state word (`MultiOpen::state`, a futex word)
//
//   bit 31   30          29 28  27      26         25                  24 .. 0
//   WAITERS  EVER_OPENED PHASE  SEALED  LINGERING  ASYNC_OPEN_WAITERS  COUNT
//
// COUNT (bits 0..=24): opens registered: every open currently held (by a
//   guard or detached) plus every opener between its increment and its
//   return (a pending open future counts: it is such an opener). In the
//   Open phase it changes only by the fast-path fetch_add / fetch_sub. An
//   opener whose fetch_add finds the count at or past COUNT_LIMIT (bit 24)
//   takes its increment back and fails, so the count never carries into
//   ASYNC_OPEN_WAITERS: a carry would need 2^24 openers in flight between
//   their increment and its undo at once.
// ASYNC_OPEN_WAITERS (bit 25): some open future's waker is (or is about to
//   be) registered in `MultiOpen::open_wakers`, waiting for STARTING or
//   SHUTTING_DOWN to end: the async twin of WAITERS, apart from it so that
//   a phase end that only futures await makes no futex call and one that
//   only threads await takes no registry lock. Set by the future's
//   `fetch_or` after its registration (`futures.rs`, the protocol of
//   `sync/wakers.rs`): that RMW is its re-check, and may land after the
//   phase ended, so the bit can be seen in any phase (the fast paths mask
//   it out: it is in neither FAST_OPEN_MASK nor COUNT_MASK; at worst one
//   spare registry visit). Cleared only by `end_phase`, which wakes the
//   registry if it was set; `seal` wakes it too and leaves it set. It was
//   the count's top bit: MAX_OPENS went from 2^25 to 2^24.
// LINGERING (bit 26): the object lingers (see `linger.rs`): OPEN, count
//   zero, and the close that brought it to zero has recorded its time. Set
//   only by such a close (a CAS from OPEN with count zero, after it stored
//   its timestamp); cleared by an opener that finds it (its slow path: the
//   bit is in FAST_OPEN_MASK) and by whoever claims the shutdown (the
//   timer, a join, a seal, a closer). So a claim from a word with this bit
//   and count zero never races a close that has not yet recorded its time.
//   It was the count's top bit: MAX_OPENS went from 2^26 to 2^25.
// SEALED (bit 27): set by `seal`, cleared by `unseal`; no other write
//   touches it (every phase change keeps the bits outside PHASE, WAITERS,
//   ASYNC_OPEN_WAITERS and LINGERING). The fast open path tests it in the same mask and
//   compare as the phase and COUNT_LIMIT, so an open of a sealed object
//   always falls to the slow path, which refuses it; the close paths mask
//   it out with COUNT_MASK.
// PHASE (bits 28..=29): IDLE, STARTING, OPEN or SHUTTING_DOWN, below.
// EVER_OPENED (bit 30): set by the first successful startup, never cleared.
// WAITERS (bit 31): some thread sleeps (or is about to) on this word waiting
//   for STARTING or SHUTTING_DOWN to end; whoever ends that phase clears the
//   bit and, only if it was set, wakes all sleepers.
// ---------------------------------------------------------------------------

/// Mask of the open count.
pub(super) const COUNT_MASK: u32 = (1 << 25) - 1;
/// The open count may not reach this value: an open that would is refused.
pub(super) const COUNT_LIMIT: u32 = 1 << 24;
/// Some open future waits for STARTING or SHUTTING_DOWN to end, its waker
/// registered (or being registered) in `MultiOpen::open_wakers`.
pub(super) const ASYNC_OPEN_WAITERS: u32 = 1 << 25;
/// Lingering: open with no opens, shutdown deferred (see
/// [`MultiOpen::with_linger`]); an open must clear it (slow path).
pub(super) const LINGERING: u32 = 1 << 26;
/// Sealed: new opens are refused (see [`MultiOpen::seal`]).
pub(super) const SEALED: u32 = 1 << 27;
/// The fast open path succeeds only if the word before its increment,
/// masked with this, is exactly OPEN: open, not sealed, not lingering,
/// count below limit.
pub(super) const FAST_OPEN_MASK: u32 = PHASE_MASK | SEALED | LINGERING | COUNT_LIMIT;
/// Mask of the phase.
pub(super) const PHASE_MASK: u32 = 0b11 << 28;
/// No resource: never started, or shut down. The next opener runs startup.
pub(super) const IDLE: u32 = 0;
/// One thread runs startup and owns the handle cell; openers sleep.
pub(super) const STARTING: u32 = 1 << 28;
/// The handle is up and shared read-only by every open; opens and closes
/// are plain count changes.
pub(super) const OPEN: u32 = 2 << 28;
/// One thread (the final close) runs shutdown and owns the handle cell;
/// openers sleep.
pub(super) const SHUTTING_DOWN: u32 = 3 << 28;
/// A startup has succeeded at least once.
pub(super) const EVER_OPENED: u32 = 1 << 30;
/// Someone sleeps on the state word.
pub(super) const WAITERS: u32 = 1 << 31;

// ---------------------------------------------------------------------------
// The join wake word (`MultiOpen::finalised`, a futex word)
//
//   bits 31 .. 2: SEQUENCE, bumped by every finalise (wraps: a signal only)
//   bit 1:        ASYNC_JOIN_WAITERS, some join future's waker is (or is
//                 about to be) registered in `MultiOpen::join_wakers`
//   bit 0:        JOIN_WAITERS, some joiner sleeps on this word
//
// Which cycles are finalised is `finalised_cycles`, a 64-bit count; this
// word only wakes joiners. A joiner reads the word (Acquire), then the
// count, then announces itself (JOIN_WAITERS, a CAS from the value it read)
// and sleeps on the word; a finaliser raises the count (Release), then
// bumps SEQUENCE and clears both waiter bits in one Release RMW and wakes
// the futex if JOIN_WAITERS was set, the join futures' registry if
// ASYNC_JOIN_WAITERS was (so a finalise that only futures await makes no
// futex syscall, and one that only threads await takes no lock).
//
// A join future (`futures.rs`) follows the registry's protocol
// (`sync/wakers.rs`): it registers its waker, then sets ASYNC_JOIN_WAITERS
// with an AcqRel RMW, then reads the count (Acquire). If its RMW comes
// before the finaliser's bump, the bump reads the bit and wakes the
// registry (after the registration); if after, the RMW reads the bump
// (Release, made after the count's raise), so the count read sees the
// raise. The bit is cleared only by a finalise; a future dropped while
// pending leaves it set until then (at worst one needless wake, and a
// lingering object's last close ends the linger as for a joiner). Every write to the word is an RMW, so if that bump came
// before the joiner's read, the read sees the count; if between the read
// and the announce, the announce fails and the joiner reads again; if
// after, the bump sees the bit and wakes.
//
// Counters that never wrap:
// - `cycles`, `shutdowns`, `finalised_cycles`: 64 bits, compared exactly
//   (`>=`). 2^64 cycles at one per nanosecond take 584 years, so a joiner
//   or finaliser descheduled across any number of cycles still compares
//   right (the 31-bit cycle numbers before could not: at 2^30 cycles apart
//   a joiner slept forever and a finaliser moved the count backwards).
// - SEQUENCE wraps after 2^30 finalises, harmlessly: joiners never compare
//   it to anything but the value they sleep on. The one effect would be the
//   futex's own ABA: a joiner whose re-read of the count and futex sleep
//   are separated by exactly k * 2^30 finalises with JOIN_WAITERS set again
//   at the end would sleep until the next finalise. (Every 32-bit futex has
//   this window, a few instructions wide.)
// - COUNT (the state word): an opener past COUNT_LIMIT takes its increment
//   back before returning, so the count can carry into LINGERING only with
//   2^24 such openers in flight at once, each inside its own call of `open`. A
//   thread has at most one such call in flight per object (the only user
//   code an opener runs with its increment counted is startup, which cannot
//   nest an open of its own object: it is refused as re-entrant), so that
//   takes 2^24 threads; Linux allows at most 2^22 (PID_MAX_LIMIT). An open
//   future past the limit takes its increment back within the same poll,
//   so futures add no more in flight than the threads polling them.
// - `detached`: each detached open is also a held open in COUNT, so it is
//   at most COUNT_LIMIT.
// ---------------------------------------------------------------------------

/// Some joiner sleeps on the join wake word.
pub(super) const JOIN_WAITERS: u32 = 1;
/// Some join future's waker is registered (or being registered).
pub(super) const ASYNC_JOIN_WAITERS: u32 = 1 << 1;
/// Either kind of joiner: a finalise clears both; a lingering close that
/// sees either ends the linger.
pub(super) const ANY_JOIN_WAITERS: u32 = JOIN_WAITERS | ASYNC_JOIN_WAITERS;
/// One finalise's bump of SEQUENCE (bits 2..=31).
pub(super) const SEQUENCE_ONE: u32 = 1 << 2;
/// The snapshot's cycle number is kept mod 2^31 ([`MultiOpenState::cycle`]).
pub(super) const CYCLE_MASK: u64 = (u32::MAX >> 1) as u64;

/// Where a [`MultiOpen`] is in its cycle: see [`MultiOpenState`].
///
/// ```
/// use multiopen::{MultiOpen, Phase};
///
/// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
/// assert_eq!(mo.state().phase, Phase::NeverOpened);
/// let g = mo.open()?;
/// assert_eq!(mo.state().phase, Phase::Open);
/// drop(g);
/// assert_eq!(mo.state().phase, Phase::Closed);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No startup has succeeded yet.
    NeverOpened,
    /// A thread is running startup.
    Starting,
    /// Up: opens and closes are plain count changes.
    Open,
    /// The final close is running shutdown.
    ShuttingDown,
    /// Shut down; the next open starts a new cycle.
    Closed,
}

/// A snapshot of a [`MultiOpen`] (the Python `tcm_get_state`).
///
/// `phase` and `open_count` come from one load of the state word, so they
/// agree; the other fields are read just after it.
///
/// ```
/// use multiopen::MultiOpen;
///
/// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
/// let _a = mo.open()?;
/// let _b = mo.open()?;
/// let s = mo.state();
/// assert_eq!((s.open_count, s.cycle), (2, 1));
/// println!("{s:?}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MultiOpenState {
    /// Where the object is in its cycle.
    pub phase: Phase,
    /// Opens registered: held opens, plus openers in flight or waiting for
    /// a startup or shutdown to end.
    pub open_count: usize,
    /// Successful startups so far (mod 2^31): the number of the current or
    /// last cycle; 0 if never opened.
    pub cycle: u32,
    /// Opens detached from their guards and not yet closed.
    pub detached: usize,
    /// Where the last final close happened, if any. While the object
    /// [lingers](MultiOpen::with_linger), the close that began the linger.
    pub final_close: Option<CloseSite>,
    /// [Sealed](MultiOpen::seal): new opens are refused.
    pub sealed: bool,
    /// [Lingering](MultiOpen::with_linger): phase `Open` with no opens,
    /// the resource kept up until the linger ends (an open within it gets
    /// the handle with no startup).
    pub lingering: bool,
}

impl fmt::Display for MultiOpenState {
    /// One line for a human reading a log: the phase, the opens registered
    /// (when there are any, or when open), the cycle (once opened), the
    /// detached opens (if any), whether it lingers or is sealed, and, once
    /// closed or shutting down, where the final close happened:
    ///
    /// - `never opened`
    /// - `open (2 opens), cycle 1`
    /// - `open (1 open), cycle 3, 1 detached`
    /// - `open (0 opens), cycle 2, lingering`
    /// - `open (1 open), cycle 1, sealed`
    /// - `closed, cycle 1, final close at src/main.rs:10:5`
    /// - `closed, cycle 1, sealed, final close at drop of the guard opened at src/main.rs:8:17`
    ///
    /// The format is for people, not programs, and may change in any
    /// release: read the fields (or `Debug`) to act on them.
    ///
    /// ```
    /// use multiopen::{MultiOpen, MultiOpenState, Phase};
    ///
    /// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
    /// assert_eq!(mo.state().to_string(), "never opened");
    /// let (_a, _b) = (mo.open()?, mo.open()?);
    /// assert_eq!(mo.state().to_string(), "open (2 opens), cycle 1");
    ///
    /// let s = MultiOpenState {
    ///     phase: Phase::Closed,
    ///     open_count: 0,
    ///     cycle: 2,
    ///     detached: 0,
    ///     final_close: None,
    ///     sealed: true,
    ///     lingering: false,
    /// };
    /// assert_eq!(s.to_string(), "closed, cycle 2, sealed");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.phase {
            Phase::NeverOpened => "never opened",
            Phase::Starting => "starting",
            Phase::Open => "open",
            Phase::ShuttingDown => "shutting down",
            Phase::Closed => "closed",
        })?;
        if self.open_count > 0 || self.phase == Phase::Open {
            let plural = if self.open_count == 1 { "" } else { "s" };
            write!(f, " ({} open{plural})", self.open_count)?;
        }
        if self.cycle > 0 {
            write!(f, ", cycle {}", self.cycle)?;
        }
        if self.detached > 0 {
            write!(f, ", {} detached", self.detached)?;
        }
        if self.lingering {
            f.write_str(", lingering")?;
        }
        if self.sealed {
            f.write_str(", sealed")?;
        }
        // Only once the cycle has ended (or is ending): in a later cycle
        // the previous cycle's close would read as this one's.
        if matches!(self.phase, Phase::ShuttingDown | Phase::Closed) {
            if let Some(site) = self.final_close {
                write!(f, ", final close at {site}")?;
            }
        }
        Ok(())
    }
}

impl<R: Resource> MultiOpen<R> {
    /// True once opened and closed again: from the start of the final
    /// close's shutdown until a re-open's startup begins. False if never
    /// opened. False while [lingering](Self::with_linger): the resource is
    /// still up; it turns true when the linger ends and shutdown begins.
    /// One atomic load.
    ///
    /// ```
    /// use multiopen::MultiOpen;
    /// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
    /// assert!(!mo.closed());
    /// drop(mo.open()?);
    /// assert!(mo.closed());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn closed(&self) -> bool {
        // Relaxed: a point-in-time query; it guards no data.
        let state = self.state.load(Ordering::Relaxed);
        state & EVER_OPENED != 0 && matches!(state & PHASE_MASK, IDLE | SHUTTING_DOWN)
    }

    /// Is the resource up (startup done, final close not begun)? True
    /// while [lingering](Self::with_linger) too (no opens, but the handle is
    /// up and the next open gets it with no startup). One load.
    ///
    /// ```
    /// use multiopen::MultiOpen;
    /// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
    /// let g = mo.open()?;
    /// assert!(mo.is_open());
    /// drop(g);
    /// assert!(!mo.is_open());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn is_open(&self) -> bool {
        // Relaxed: a point-in-time query; it guards no data.
        self.state.load(Ordering::Relaxed) & PHASE_MASK == OPEN
    }

    /// Opens registered now: held opens, plus openers in flight or waiting
    /// for a startup or shutdown. One load.
    ///
    /// ```
    /// use multiopen::MultiOpen;
    /// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
    /// let (_a, _b) = (mo.open()?, mo.open()?);
    /// assert_eq!(mo.open_count(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn open_count(&self) -> usize {
        // Relaxed: a point-in-time query; it guards no data.
        (self.state.load(Ordering::Relaxed) & COUNT_MASK) as usize
    }

    /// A snapshot for debugging and monitoring (the Python `tcm_get_state`).
    ///
    /// ```
    /// use multiopen::{MultiOpen, Phase};
    /// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
    /// assert_eq!(mo.state().phase, Phase::NeverOpened);
    /// assert_eq!(mo.state().final_close, None);
    /// ```
    pub fn state(&self) -> MultiOpenState {
        // Relaxed (all): a diagnostic snapshot; it guards no data.
        let state = self.state.load(Ordering::Relaxed);
        let phase = match state & PHASE_MASK {
            STARTING => Phase::Starting,
            OPEN => Phase::Open,
            SHUTTING_DOWN => Phase::ShuttingDown,
            _ if state & EVER_OPENED != 0 => Phase::Closed,
            _ => Phase::NeverOpened,
        };
        MultiOpenState {
            phase,
            open_count: (state & COUNT_MASK) as usize,
            // Mod 2^31: fits the field, as documented.
            cycle: (self.cycles.load(Ordering::Relaxed) & CYCLE_MASK) as u32,
            detached: self.detached.load(Ordering::Relaxed),
            final_close: self.final_close_site(),
            sealed: state & SEALED != 0,
            // The bit with opens counted is an opener about to clear it.
            lingering: state & (PHASE_MASK | LINGERING | COUNT_MASK) == OPEN | LINGERING,
        }
    }

    /// `Err(ClosedError)` if the object is [closed](Self::closed), for
    /// methods that must not run on a closed object (the Python
    /// `@not_closed` decorator). A never-opened object is not closed.
    ///
    /// ```
    /// use multiopen::{ClosedError, MultiOpen};
    ///
    /// struct Store { inner: MultiOpen<multiopen::FnResource<
    ///     fn() -> std::io::Result<()>, fn(()) -> std::io::Result<()>, (), std::io::Error>> }
    /// impl Store {
    ///     fn put(&self) -> Result<(), ClosedError> {
    ///         self.inner.not_closed()?;
    ///         Ok(())
    ///     }
    /// }
    /// let s = Store { inner: MultiOpen::from_fns(|| Ok(()), |_| Ok(())) };
    /// assert!(s.put().is_ok());
    /// drop(s.inner.open().unwrap());
    /// assert!(s.put().is_err());
    /// ```
    #[inline]
    pub fn not_closed(&self) -> Result<(), ClosedError> {
        if self.closed() {
            return Err(self.closed_error());
        }
        Ok(())
    }

    /// `Ok` only while the object is open (the Python `@is_opened`
    /// decorator): errors "never opened" or "closed (final close at …)".
    ///
    /// ```
    /// use multiopen::MultiOpen;
    /// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
    /// assert!(mo.check_opened().is_err());
    /// let g = mo.open()?;
    /// assert!(mo.check_opened().is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn check_opened(&self) -> Result<(), NotOpenedError> {
        if self.is_open() {
            Ok(())
        } else if self.ever_opened() {
            Err(NotOpenedError::Closed(self.closed_error()))
        } else {
            Err(NotOpenedError::NeverOpened(self.never_opened_error()))
        }
    }

    /// Leaves STARTING or SHUTTING_DOWN: applies `next` to the state word
    /// (clearing WAITERS and ASYNC_OPEN_WAITERS), and wakes the sleepers if
    /// there were any: the futex for WAITERS, the open futures' registry
    /// for ASYNC_OPEN_WAITERS.
    pub(super) fn end_phase(&self, ordering: Ordering, next: impl Fn(u32) -> u32, no_wake: &str) {
        // Relaxed: first guess for the CAS loop.
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            match self.state.compare_exchange_weak(
                state,
                next(state) & !(WAITERS | ASYNC_OPEN_WAITERS),
                ordering,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => state = now,
            }
        }
        if state & WAITERS != 0 && !mutant(no_wake) {
            self.state.wake_all();
        }
        if state & ASYNC_OPEN_WAITERS != 0 && !mutant("multi_open::phase_end_skips_open_wakers") {
            self.wake_open_futures();
        }
    }
}
