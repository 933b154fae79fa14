//! The timestamps: the two [`Times`] slots that a start or stop writes and
//! publishes with the state word (a seqlock), the wall clock helpers, and
//! the time queries.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::state::{live_slot, EPOCH_MASK, RUNNING, STARTED};
use super::RunState;
use crate::sync::{fence, mutant, AtomicU64, Ordering};

// ---------------------------------------------------------------------------
// Timestamps
// ---------------------------------------------------------------------------

/// One timestamp slot. Written only by the start or stop that holds
/// `TIMING`, and only while it is the spare slot; read by anyone.
pub(super) struct Times {
    /// Last start, nanoseconds since the Unix epoch.
    start_wall: AtomicU64,
    /// Last start, ticks (nanoseconds since `tick_base`, plus one).
    start_mono: AtomicU64,
    /// Last stop, nanoseconds since the Unix epoch.
    stop_wall: AtomicU64,
    /// Last stop in ticks; 0 if there has been no stop.
    stop_mono: AtomicU64,
    /// The summed duration of the finished runs, nanoseconds.
    total: AtomicU64,
}

/// What a [`Times`] slot held, read at once.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct TimesRead {
    pub(super) start_wall: u64,
    pub(super) start_mono: u64,
    pub(super) stop_wall: u64,
    pub(super) stop_mono: u64,
    pub(super) total: u64,
}

impl Times {
    pub(super) fn new() -> Self {
        Self {
            start_wall: AtomicU64::new(0),
            start_mono: AtomicU64::new(0),
            stop_wall: AtomicU64::new(0),
            stop_mono: AtomicU64::new(0),
            total: AtomicU64::new(0),
        }
    }

    /// Relaxed: the state word orders these (the seqlock in
    /// `RunState::times`, or the `TIMING` claim for a writer).
    pub(super) fn read(&self) -> TimesRead {
        TimesRead {
            start_wall: self.start_wall.load(Ordering::Relaxed),
            start_mono: self.start_mono.load(Ordering::Relaxed),
            stop_wall: self.stop_wall.load(Ordering::Relaxed),
            stop_mono: self.stop_mono.load(Ordering::Relaxed),
            total: self.total.load(Ordering::Relaxed),
        }
    }

    /// Relaxed: the writer's `fence(Release)` before these stores and its
    /// Release publish after them order them for readers.
    fn write(&self, t: TimesRead) {
        self.start_wall.store(t.start_wall, Ordering::Relaxed);
        self.start_mono.store(t.start_mono, Ordering::Relaxed);
        self.stop_wall.store(t.stop_wall, Ordering::Relaxed);
        self.stop_mono.store(t.stop_mono, Ordering::Relaxed);
        self.total.store(t.total, Ordering::Relaxed);
    }
}

/// Nanoseconds since the Unix epoch now (0 before 1970).
pub(super) fn wall_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The `SystemTime` `ns` nanoseconds after the Unix epoch.
pub(super) fn wall_time(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

impl RunState {
    // --- timestamps -----------------------------------------------------------

    /// When the last run started; `None` if never started.
    ///
    /// Never decreases over the life of the `RunState` (see the module
    /// documentation on clocks).
    ///
    /// ```
    /// use std::time::SystemTime;
    ///
    /// let rs = multiopen::RunState::new("job");
    /// assert_eq!(rs.start_time(), None);
    /// let before = SystemTime::now();
    /// rs.start()?;
    /// assert!(rs.start_time().unwrap() >= before);
    /// # Ok::<(), multiopen::RunStateError>(())
    /// ```
    pub fn start_time(&self) -> Option<SystemTime> {
        let (s, t) = self.times();
        (s & STARTED != 0).then(|| wall_time(t.start_wall))
    }

    /// When the last run stopped; `None` if no run has stopped yet. While a
    /// second or later run is in progress, this is the previous run's stop.
    ///
    /// ```
    /// let rs = multiopen::RunState::new("job");
    /// rs.start()?;
    /// assert_eq!(rs.stop_time(), None);
    /// rs.stop()?;
    /// let (start, stop) = (rs.start_time().unwrap(), rs.stop_time().unwrap());
    /// assert_eq!(stop.duration_since(start).unwrap(), rs.run_time());
    /// # Ok::<(), multiopen::RunStateError>(())
    /// ```
    pub fn stop_time(&self) -> Option<SystemTime> {
        let (_, t) = self.times();
        (t.stop_mono != 0).then(|| wall_time(t.stop_wall))
    }

    /// How long the current run has lasted so far, or the last run lasted;
    /// zero if never started. Monotonic clock.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let rs = multiopen::RunState::new("job");
    /// assert_eq!(rs.run_time(), Duration::ZERO);
    /// rs.start()?;
    /// let so_far = rs.run_time();
    /// assert!(rs.run_time() >= so_far); // still running: it grows
    /// rs.stop()?;
    /// assert_eq!(rs.run_time(), rs.run_time()); // stopped: fixed
    /// # Ok::<(), multiopen::RunStateError>(())
    /// ```
    pub fn run_time(&self) -> Duration {
        let (s, t) = self.times();
        if s & STARTED == 0 {
            Duration::ZERO
        } else if s & RUNNING != 0 {
            Duration::from_nanos(self.ticks().saturating_sub(t.start_mono))
        } else {
            Duration::from_nanos(t.stop_mono.saturating_sub(t.start_mono))
        }
    }

    /// The summed duration of every run, the current one included (so far).
    /// Monotonic clock.
    ///
    /// ```
    /// let rs = multiopen::RunState::new("job");
    /// rs.start()?;
    /// rs.stop()?;
    /// let first = rs.run_time();
    /// rs.start()?;
    /// rs.stop()?;
    /// assert_eq!(rs.total_time(), first + rs.run_time());
    /// # Ok::<(), multiopen::RunStateError>(())
    /// ```
    pub fn total_time(&self) -> Duration {
        let (s, t) = self.times();
        let current = if s & RUNNING != 0 {
            self.ticks().saturating_sub(t.start_mono)
        } else {
            0
        };
        Duration::from_nanos(t.total.saturating_add(current))
    }

    // --- internals ------------------------------------------------------------

    /// Ticks now: nanoseconds since the process-wide [`tick_base`], plus
    /// one (0 means "never"). Makes the cold part if need be (a start
    /// does).
    pub(super) fn ticks(&self) -> u64 {
        let _ = self.cold();
        u64::try_from(tick_base().elapsed().as_nanos())
            .unwrap_or(u64::MAX)
            .saturating_add(1)
    }

    /// One consistent (state word, live slot) pair: a seqlock read.
    pub(super) fn times(&self) -> (u32, TimesRead) {
        loop {
            // Acquire: pairs with the publish (Release) that made this slot
            // live, so its stores are visible.
            let before = self.state.load(Ordering::Acquire);
            let Some(cold) = self.cold_ref() else {
                // Never started (a start makes the cold part before its
                // publish, which our Acquire load would have seen).
                return (before, TimesRead::default());
            };
            let times = cold.times[live_slot(before)].read();
            if mutant("run_state::times_no_recheck") {
                return (before, times);
            }
            // Acquire fence: if any value read above was stored by a later
            // writer of this slot, that writer's Release fence (after its
            // claim, which followed the publish that retired this slot)
            // synchronises with us, so the load below sees EPOCH moved on.
            fence(Ordering::Acquire);
            // Relaxed: ordered by the fence.
            let after = self.state.load(Ordering::Relaxed);
            if (before ^ after) & EPOCH_MASK == 0 {
                return (before, times);
            }
        }
    }

    /// Writes `times` into the spare slot of claimed word `claimed`.
    pub(super) fn write_spare(&self, claimed: u32, times: TimesRead) {
        // Release fence, after the claim and before the stores: a reader
        // that reads any of these stores sees the claim, and so an EPOCH
        // past the one that made this slot spare (see `times`).
        if !mutant("run_state::times_no_fence") && !mutant("run_state::times_no_release") {
            fence(Ordering::Release);
        }
        self.cold().times[1 - live_slot(claimed)].write(times);
    }
}

/// Where every state's ticks count from: the first tick read in the
/// process. One base for all (it was one per cold part: a clock read for
/// each, 48 ns on the 2-core VM, in a `cancel_with` that gives 10,000
/// children a cold part each: 0.69 ms then, 0.41 ms now). A std `OnceLock`,
/// outside loom's view: a clock origin fixed once, part of no protocol
/// the models check.
fn tick_base() -> std::time::Instant {
    static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *BASE.get_or_init(std::time::Instant::now)
}
