//! [`RunState`]: a task that starts, may be asked to stop, and stops.
//!
//! A `RunState` is shared between the thread that runs a task and any
//! number of threads that watch or control it. The worker polls
//! [`cancelled`](RunState::cancelled) (or [`check`](RunState::check)) in its
//! loop; any thread may [`cancel`](RunState::cancel) it. Every query is one
//! atomic load of a word that changes only on transitions (and once when a
//! thread announces that it is about to sleep on it), so polling from a hot
//! loop costs what loading an `AtomicBool` costs; `cancel` is one atomic
//! `fetch_or` and wakes every thread sleeping in [`sleep`](RunState::sleep)
//! or [`wait_while_paused`](RunState::wait_while_paused), with a futex wake
//! issued only if some thread sleeps.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use multiopen::RunState;
//!
//! let rs = Arc::new(RunState::new("monitor"));
//! let worker = {
//!     let rs = Arc::clone(&rs);
//!     std::thread::spawn(move || {
//!         let _run = rs.run(); // starts now, stops when dropped
//!         let mut polls = 0u64;
//!         // Poll every 10 ms until cancelled; `sleep` returns at once on cancel.
//!         while rs.sleep(Duration::from_millis(10)).is_ok() {
//!             polls += 1;
//!         }
//!         polls
//!     })
//! };
//! while !rs.is_running() && !rs.stopped() {
//!     std::thread::yield_now(); // wait for the worker to start
//! }
//! rs.cancel()?;
//! worker.join().unwrap();
//! assert!(rs.stopped() && rs.cancelled());
//! assert_eq!(rs.state().to_string(), "cancelled");
//! # Ok::<(), multiopen::CallbackPanicked>(())
//! ```
//!
//! # The cycle
//!
//! `pending → running (⇄ paused) → stopping → cancelled` when cancelled, or
//! `pending → running → stopped` when not; [`start`](RunState::start) after a
//! stop begins a new run, and [`total_time`](RunState::total_time) sums them
//! all. Misuse is an error value, never a panic: starting a running state,
//! stopping one that is not running, pausing one that is not running or is
//! cancelled, resuming one that is not paused. `cancel` is never refused:
//! on a state that is not running it just sets the flag (which the next
//! `start` clears, as in the Python original).
//!
//! # Clocks and timestamps
//!
//! Durations are measured on the monotonic clock ([`Instant`]): each
//! `RunState` keeps the `Instant` of its creation and stores nanoseconds
//! since then in `AtomicU64`s. Wall-clock times ([`SystemTime`], as
//! nanoseconds since the Unix epoch, also in `AtomicU64`s) are read at each
//! start; the stop time is the start time plus the run's monotonic
//! duration, so `stop_time - start_time == run_time` even if the system
//! clock is stepped during a run. A new start reads the system clock again
//! but never goes before the previous stop: the start and stop times of a
//! `RunState` never decrease. (A system clock set before 1970 reads as the
//! epoch.)
//!
//! The timestamps of a start or stop are published together with its flags:
//! they sit in two slots, the transition writes the spare one and then, in
//! the same atomic step that changes the state, makes it the live one. A
//! reader checks that no transition was published while it read (a
//! seqlock over the state word), so `start_time`, `stop_time`, `run_time`
//! and `total_time` are each computed from one consistent record; they never
//! wait for a writer, and retry only if a transition was published during
//! their read. Two calls (say `start_time()` then `stop_time()`) may see
//! different runs if a transition comes between them. For a run in
//! progress, `run_time` and `total_time` read the clock at the call; a stop
//! that races such a call reads the clock a moment before it publishes, so
//! the run's recorded length can be shorter than a value just returned by
//! that moment (nanoseconds, unless the stopping thread is preempted
//! there). Recorded times (`start_time`, `stop_time`, and both durations
//! once stopped) are exact and never decrease.
//!
//! Starts and stops are serialised with each other: one that finds another
//! start or stop publishing its timestamps (a handful of stores; no user
//! code runs there) sleeps on the futex until it is done. Queries, `cancel`,
//! `pause` and `resume` never wait.
//!
//! # A cancel is never lost to a restart
//!
//! A thread in [`sleep`](RunState::sleep), or blocked in
//! [`check`](RunState::check) / [`wait_while_paused`](RunState::wait_while_paused)
//! on a paused run, returns `Err(Cancelled)` (or reports the cancel) if a
//! cancel came after it began waiting, even if the run was then stopped and
//! started again (which clears the flag) before the waiter woke: every
//! start that clears a cancel counts it, and a waiter compares that count
//! with the one it saw when it began.
//!
//! # Callbacks
//!
//! [`on_start`](RunState::on_start), [`on_cancel`](RunState::on_cancel) and
//! [`on_end`](RunState::on_end) register closures that run, with the
//! `RunState`, in the thread that made the transition, after it happened,
//! in registration order. The list is copy-on-write: registering or
//! removing copies it under a registration-only mutex; a transition takes a
//! reference to the current list without any lock and runs the callbacks
//! holding nothing another thread needs. A panicking callback is caught;
//! the others still run and the panics are returned to the caller of the
//! transition ([`CallbackPanicked`]).

use std::borrow::Cow;
use std::fmt;
use std::iter::FusedIterator;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_utils::CachePadded;

use crate::error::{CallbackPanicked, Cancelled, RunStateError};
use crate::sync::{
    fence, mutant, ordering_unless, Arc as ListArc, AtomicPtr, AtomicU64, AtomicUsize, Futex,
    Mutex, Ordering,
};

// ---------------------------------------------------------------------------
// The state word (`RunState::state`, a futex word)
//
//   bits 31 .. 8   7 6      5        4       3        2       1        0
//   EPOCH          (unused) WAITERS  TIMING  STARTED  PAUSED  RUNNING  CANCELLED
//
// CANCELLED: cancel() was called since the last start's publish. Set by a
//   single `fetch_or` (so cancel never waits), cleared only by a start,
//   which first counts the cancel it clears in `RunState::cancels_cleared`
//   (so that a waiter that slept through cancel, stop, start still sees it).
//   Bit 0, so that `cancelled()` compiles to a load and an `and $1`.
// RUNNING: between a start's publish and a stop's publish.
// PAUSED: pause() while running and not cancelled; cleared by resume, stop
//   and start. A cancel leaves it, so "paused" reads as PAUSED and RUNNING
//   and not CANCELLED.
// STARTED: some start has been published; never cleared (pending vs stopped).
// TIMING: a start or stop has claimed the timestamps and is writing the
//   spare slot; set by the claim CAS, cleared by the publish. Another start
//   or stop that needs to claim waits for it (nothing else does).
// WAITERS: some thread sleeps (or is about to) on this word: in sleep(),
//   while paused, or waiting for TIMING. Whoever clears it wakes all
//   sleepers; cancel() wakes them without clearing it (a `fetch_or` cannot
//   clear), so after a cancel the bit may be stale until the next start,
//   stop or resume: at worst one needless wake.
// EPOCH (bits 8..=31): start and stop publishes so far, mod 2^24. Its low
//   bit selects the live timestamp slot; a reader whose two loads of the
//   word see the same EPOCH read a slot nobody wrote meanwhile (unless 2^24
//   publishes came between the two loads). It also names a run: a guard
//   keeps the EPOCH its start published and ends the run only while the
//   word still shows it (unless 2^23 runs came between).
//
// Who writes the word: start, stop (claim and publish), cancel, pause,
// resume, and a thread about to sleep on it (setting WAITERS). Queries
// never write it. Every change is a read-modify-write, so each publish's
// Release heads a release sequence that every later Acquire load joins.
// ---------------------------------------------------------------------------

/// Cancelled since the last start.
const CANCELLED: u32 = 1 << 0;
/// Between a start and a stop.
const RUNNING: u32 = 1 << 1;
/// Paused (meaningful only with `RUNNING` and without `CANCELLED`).
const PAUSED: u32 = 1 << 2;
/// Started at least once.
const STARTED: u32 = 1 << 3;
/// A start or stop is writing the spare timestamp slot.
const TIMING: u32 = 1 << 4;
/// Someone sleeps on the state word.
const WAITERS: u32 = 1 << 5;
/// Where the publish counter starts.
const EPOCH_SHIFT: u32 = 8;
/// One publish.
const EPOCH_ONE: u32 = 1 << EPOCH_SHIFT;
/// Mask of the publish counter.
const EPOCH_MASK: u32 = !(EPOCH_ONE - 1);

/// The live timestamp slot of state word `s`.
fn live_slot(s: u32) -> usize {
    ((s >> EPOCH_SHIFT) & 1) as usize
}

/// Where a [`RunState`] is: the seed's labels, plus `paused` from 20250915.
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
/// rs.cancel()?;
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
    /// Stopped after a cancel (`"cancelled"`).
    Cancelled,
    /// Stopped, not cancelled (`"stopped"`).
    Stopped,
}

impl RunPhase {
    /// The phase that state word `s` shows.
    fn of(s: u32) -> Self {
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
        } else if s & CANCELLED != 0 {
            Self::Cancelled
        } else {
            Self::Stopped
        }
    }

    /// The seed's label: `"pending"`, `"running"`, `"paused"`,
    /// `"stopping"`, `"cancelled"` or `"stopped"`.
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

/// A transition that callbacks can be registered for.
///
/// `Display` gives `"start"`, `"cancel"` or `"end"`.
///
/// ```
/// use multiopen::{RunEvent, RunState};
///
/// let rs = RunState::new("job");
/// rs.on_end(|_| panic!("boom"));
/// rs.start()?;
/// # let hook = std::panic::take_hook();
/// # std::panic::set_hook(Box::new(|_| {}));
/// let err = rs.stop().unwrap_err();
/// # std::panic::set_hook(hook);
/// assert!(err.to_string().contains("on_end"));
/// assert_eq!(RunEvent::End.to_string(), "end");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunEvent {
    /// [`RunState::start`] (callbacks from [`RunState::on_start`]).
    Start,
    /// [`RunState::cancel`] (callbacks from [`RunState::on_cancel`]).
    Cancel,
    /// [`RunState::stop`] (callbacks from [`RunState::on_end`]).
    End,
}

impl fmt::Display for RunEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Start => "start",
            Self::Cancel => "cancel",
            Self::End => "end",
        })
    }
}

/// Names a registered callback, for [`RunState::remove_callback`].
///
/// ```
/// use multiopen::RunState;
///
/// let rs = RunState::new("job");
/// let id = rs.on_start(|_| {});
/// assert!(rs.remove_callback(id));
/// assert!(!rs.remove_callback(id)); // already gone
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallbackId(u64);

// ---------------------------------------------------------------------------
// Timestamps
// ---------------------------------------------------------------------------

/// One timestamp slot. Written only by the start or stop that holds
/// `TIMING`, and only while it is the spare slot; read by anyone.
struct Times {
    /// Last start, nanoseconds since the Unix epoch.
    start_wall: AtomicU64,
    /// Last start, ticks (nanoseconds since `RunState::base`, plus one).
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
struct TimesRead {
    start_wall: u64,
    start_mono: u64,
    stop_wall: u64,
    stop_mono: u64,
    total: u64,
}

impl Times {
    fn new() -> Self {
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
    fn read(&self) -> TimesRead {
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
fn wall_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The `SystemTime` `ns` nanoseconds after the Unix epoch.
fn wall_time(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

// ---------------------------------------------------------------------------
// Callbacks: a copy-on-write list, read without a lock
// ---------------------------------------------------------------------------

/// A registered callback.
type Callback = Arc<dyn Fn(&RunState) + Send + Sync>;

#[derive(Clone)]
struct Entry {
    id: u64,
    event: RunEvent,
    callback: Callback,
}

type List = Vec<Entry>;

/// The callback registry.
///
/// `current` holds one reference (`ListArc::into_raw`) to the published
/// list, or is null when no callback is registered. A transition takes its
/// own reference without a lock: it counts itself in `readers`, loads
/// `current`, increments the list's count, and counts itself out.
/// Registration (under `writer`, which only registrations take) swaps in a
/// new list and *retires* the old reference; retired references are dropped
/// only when a registration sees `readers == 0` after its swap (or when the
/// `RunState` is dropped), so no reader ever increments the count of a
/// freed list.
struct Callbacks {
    current: AtomicPtr<List>,
    readers: AtomicUsize,
    writer: Mutex<Writer>,
}

struct Writer {
    /// The next callback id.
    next_id: u64,
    /// Replaced lists that a reader might still be taking a reference to.
    retired: Vec<ListArc<List>>,
}

impl Callbacks {
    fn new() -> Self {
        Self {
            current: AtomicPtr::new(std::ptr::null_mut()),
            readers: AtomicUsize::new(0),
            writer: Mutex::new(Writer {
                next_id: 0,
                retired: Vec::new(),
            }),
        }
    }

    /// The current list, or `None` if it is empty. Lock-free.
    fn snapshot(&self) -> Option<ListArc<List>> {
        // Relaxed: only a fast "no callbacks" exit; the load that counts is
        // below.
        if self.current.load(Ordering::Relaxed).is_null() {
            return None;
        }
        // Relaxed + SeqCst fence: the increment is ordered before the load
        // of `current` against a registration's swap + SeqCst fence + load
        // of `readers` (store-buffering): either it sees our count, or we
        // see its new list.
        self.readers.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        // Acquire: pairs with the registration's Release swap, so the list
        // it built is visible.
        let list = self.current.load(Ordering::Acquire);
        let taken = (!list.is_null()).then(|| {
            // SAFETY: `list` came from `ListArc::into_raw` and its
            // reference is still held: by `current`, or by `retired`, which
            // is not dropped while we are counted in `readers`.
            unsafe {
                ListArc::increment_strong_count(list);
                ListArc::from_raw(list)
            }
        });
        // Release: our increment happens before a registration that reads
        // `readers == 0` (Acquire) and drops the retired reference.
        self.readers.fetch_sub(1, Ordering::Release);
        taken
    }

    /// Replaces the list with `edit` applied to a copy of it, and returns
    /// what `edit` returned. Registration only; takes the writer lock.
    ///
    /// No user code runs under the lock: freeing a retired list may drop
    /// the last reference to a callback (and so run the `Drop` of what it
    /// captured, which may register or remove callbacks on this very
    /// `RunState`), so the lists to free are taken out and dropped after
    /// the lock is released.
    fn update<R>(&self, edit: impl FnOnce(&mut List, &mut u64) -> R) -> R {
        // Nothing panics while the lock is held except allocation; a
        // poisoned lock still guards a consistent `Writer`.
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        // Relaxed: only registrations store `current`, and we hold their
        // lock, which orders us after the last one.
        let old = self.current.load(Ordering::Relaxed);
        let mut list = if old.is_null() {
            Vec::new()
        } else {
            // SAFETY: `old` is the published list; `current` holds a
            // reference to it, and only we (under the lock) can retire it.
            unsafe { (*old).clone() }
        };
        let Writer { next_id, retired } = &mut *writer;
        let out = edit(&mut list, next_id);
        let new = if list.is_empty() {
            std::ptr::null_mut()
        } else {
            ListArc::into_raw(ListArc::new(list)).cast_mut()
        };
        // Release: a transition that loads `new` (Acquire) sees the list.
        let replaced = self.current.swap(new, Ordering::Release);
        if !replaced.is_null() {
            // SAFETY: this is the reference `current` held, handed over.
            retired.push(unsafe { ListArc::from_raw(replaced) });
        }
        // SeqCst fence: see `snapshot`. Acquire load: pairs with each
        // reader's Release decrement.
        fence(Ordering::SeqCst);
        let free = if self.readers.load(Ordering::Acquire) == 0 {
            // No reader is between its load of `current` and its increment:
            // every reader that loaded a retired list has its own reference.
            std::mem::take(retired)
        } else {
            Vec::new()
        };
        drop(writer);
        // Outside the lock: this may run user `Drop` code (see above).
        drop(free);
        out
    }
}

impl Drop for Callbacks {
    fn drop(&mut self) {
        // Relaxed: `&mut self`, no other thread can touch it.
        let list = self.current.load(Ordering::Relaxed);
        if !list.is_null() {
            // SAFETY: the reference `current` held; nobody else can use it.
            drop(unsafe { ListArc::from_raw(list) });
        }
    }
}

/// The message of a caught panic.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_owned()
    }
}

// ---------------------------------------------------------------------------
// RunState
// ---------------------------------------------------------------------------

/// A task's run state: started, cancelled (asked to stop), paused, stopped,
/// with timestamps and callbacks (the Python `RunState`).
///
/// See the [module documentation](crate::run_state) for the cycle, the
/// clocks and the callbacks.
///
/// # Costs
/// [`cancelled`](Self::cancelled), [`is_running`](Self::is_running),
/// [`stopping`](Self::stopping), [`stopped`](Self::stopped),
/// [`is_paused`](Self::is_paused), [`state`](Self::state) and the fast path
/// of [`check`](Self::check): one atomic load of a word that queries never
/// write (it changes on transitions, and when a thread announces that it is
/// about to sleep on it), plus a mask test. [`cancel`](Self::cancel): one
/// `fetch_or`, plus a futex wake only if some thread sleeps, plus the
/// callbacks. The timestamp queries: a few loads, retried only if a start or
/// stop was published meanwhile.
///
/// ```
/// use multiopen::RunState;
///
/// let rs = RunState::new("indexer");
/// assert!(!rs.is_running() && !rs.stopped()); // pending
/// {
///     let _run = rs.run();
///     assert!(rs.is_running());
///     for item in rs.iter(0..3) {
///         let _ = item; // ... work ...
///     }
/// }
/// assert!(rs.stopped() && !rs.cancelled());
/// assert!(rs.stop_time() >= rs.start_time());
/// ```
pub struct RunState {
    /// The state word: see the layout at the top of this file. Padded so
    /// that pollers of `cancelled()` share its line with nothing else.
    state: CachePadded<Futex>,
    /// The two timestamp slots; `EPOCH`'s low bit says which is live.
    times: [Times; 2],
    /// How many cancels a start has cleared so far. A start that finds
    /// `CANCELLED` set increments it (Release) before the publish that
    /// clears the flag; a waiter reads it when it begins (see
    /// [`watch`](Self::watch)) and, after each Acquire load of the word, reports
    /// a cancel if the flag is set or this has moved.
    cancels_cleared: AtomicU64,
    /// Where ticks count from.
    base: Instant,
    callbacks: Callbacks,
    name: Cow<'static, str>,
}

impl RunState {
    /// A pending `RunState` named `name` (for `Debug` and error messages).
    ///
    /// ```
    /// use multiopen::{RunPhase, RunState};
    ///
    /// let rs = RunState::new("crawler");
    /// assert_eq!(rs.state(), RunPhase::Pending);
    /// assert_eq!(rs.start_time(), None);
    /// ```
    pub fn new(name: impl Into<Cow<'static, str>>) -> Self {
        Self {
            state: CachePadded::new(Futex::new(0)),
            times: [Times::new(), Times::new()],
            cancels_cleared: AtomicU64::new(0),
            base: Instant::now(),
            callbacks: Callbacks::new(),
            name: name.into(),
        }
    }

    /// The name given to [`new`](Self::new).
    ///
    /// ```
    /// assert_eq!(multiopen::RunState::new("crawler").name(), "crawler");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    // --- transitions ------------------------------------------------------

    /// Starts a run: sets running, clears cancelled and paused, records the
    /// start time, then runs the [`on_start`](Self::on_start) callbacks.
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
    /// # Ok::<(), RunStateError>(())
    /// ```
    pub fn start(&self) -> Result<(), RunStateError> {
        let (_, callbacks) = self.start_run()?;
        callbacks?;
        Ok(())
    }

    /// [`start`](Self::start), returning the EPOCH its publish made current
    /// (the run's name for the guards), and separately the callbacks'
    /// result.
    fn start_run(&self) -> Result<(u32, Result<(), CallbackPanicked>), RunStateError> {
        let claimed = self.claim(true, None)?;
        let live = self.times[live_slot(claimed)].read();
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
        let published = self.publish(
            |s| {
                ((s | RUNNING | STARTED) & !(CANCELLED | PAUSED | TIMING | WAITERS))
                    .wrapping_add(EPOCH_ONE)
            },
            true,
            "run_state::start_no_wake",
        );
        Ok((published & EPOCH_MASK, self.notify(RunEvent::Start)))
    }

    /// Asks the task to stop: sets cancelled, wakes every thread in
    /// [`sleep`](Self::sleep) or waiting while paused, then (if this call
    /// did the cancelling) runs the [`on_cancel`](Self::on_cancel)
    /// callbacks.
    ///
    /// Never refused and never blocks: one `fetch_or`, a futex wake only if
    /// some thread sleeps. Cancelling a state that is already cancelled does
    /// nothing; one that is not running just sets the flag, which the next
    /// [`start`](Self::start) clears. Errors only if callbacks panicked (the
    /// cancel happened).
    ///
    /// ```
    /// use multiopen::RunState;
    ///
    /// let rs = RunState::new("job");
    /// rs.start()?;
    /// rs.cancel()?;
    /// assert!(rs.cancelled() && rs.stopping());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cancel(&self) -> Result<(), CallbackPanicked> {
        // Release: what this thread did before cancelling is visible to a
        // thread that sees the flag with an Acquire query.
        let order = ordering_unless("run_state::cancel_relaxed", Ordering::Release);
        let prev = self.state.fetch_or(CANCELLED, order);
        self.after_cancel(prev)
    }

    /// Cancels only the run whose start published EPOCH `run`, if it is
    /// still the current run (the guards' cancel on panic). Lock-free: a CAS
    /// loop that gives up once the word shows another run.
    fn cancel_run(&self, run: u32) -> Result<(), CallbackPanicked> {
        // Relaxed: a first guess for the CAS.
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            let other_run = s & RUNNING == 0 || s & EPOCH_MASK != run;
            if s & CANCELLED != 0 || (other_run && !mutant("run_state::guard_ignores_run")) {
                return Ok(());
            }
            // Release: as `cancel`.
            match self.state.compare_exchange_weak(
                s,
                s | CANCELLED,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(prev) => return self.after_cancel(prev),
                Err(now) => s = now,
            }
        }
    }

    /// What follows setting `CANCELLED` over word `prev`: the wake and the
    /// callbacks, if this call did the cancelling.
    fn after_cancel(&self, prev: u32) -> Result<(), CallbackPanicked> {
        if prev & CANCELLED != 0 {
            return Ok(());
        }
        // Every sleeper set WAITERS before sleeping and sleeps only while
        // the word is unchanged: our RMW changed it, so a sleeper that has
        // not slept yet will not, and those asleep are woken here.
        if prev & WAITERS != 0 && !mutant("run_state::cancel_no_wake") {
            self.state.wake_all();
        }
        self.notify(RunEvent::Cancel)
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

    /// [`stop`](Self::stop); with `Some(run)`, only if the current run is the
    /// one whose start published EPOCH `run` (else `NotRunning`).
    fn stop_run(&self, run: Option<u32>) -> Result<(), RunStateError> {
        let claimed = self.claim(false, run)?;
        let live = self.times[live_slot(claimed)].read();
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
        self.publish(
            |s| (s & !(RUNNING | PAUSED | TIMING | WAITERS)).wrapping_add(EPOCH_ONE),
            false,
            "run_state::stop_no_wake",
        );
        self.notify(RunEvent::End)?;
        Ok(())
    }

    /// The seed's alias for [`stop`](Self::stop).
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

    /// Pauses a running task: threads in [`check`](Self::check),
    /// [`wait_while_paused`](Self::wait_while_paused) or the
    /// [`iter`](Self::iter) adapter block until [`resume`](Self::resume),
    /// [`cancel`](Self::cancel) or [`stop`](Self::stop). Pausing a paused
    /// state is fine.
    ///
    /// Errors: [`RunStateError::NeverStarted`] or
    /// [`RunStateError::NotRunning`]; [`RunStateError::Cancelled`] if the
    /// run is cancelled (it is stopping).
    ///
    /// ```
    /// use multiopen::{RunPhase, RunState};
    ///
    /// let rs = RunState::new("job");
    /// assert!(rs.pause().is_err()); // not running
    /// rs.start()?;
    /// rs.pause()?;
    /// assert!(rs.is_paused() && rs.is_running());
    /// assert_eq!(rs.state(), RunPhase::Paused);
    /// rs.resume()?;
    /// # Ok::<(), multiopen::RunStateError>(())
    /// ```
    pub fn pause(&self) -> Result<(), RunStateError> {
        // Relaxed: a first guess for the CAS.
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if s & RUNNING == 0 {
                return Err(self.not_running_error(s));
            }
            if s & CANCELLED != 0 {
                return Err(RunStateError::Cancelled(self.cancelled_error()));
            }
            if s & PAUSED != 0 {
                return Ok(());
            }
            // Release: what the pauser did before is visible to a thread
            // that sees it paused. Nobody sleeps waiting for a pause, so
            // there is no one to wake.
            match self.state.compare_exchange_weak(
                s,
                s | PAUSED,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(now) => s = now,
            }
        }
    }

    /// Leaves the paused state and wakes the threads waiting while paused.
    ///
    /// Errors: [`RunStateError::NotPaused`] if it is not paused (including
    /// a paused run that was then cancelled or stopped: those already
    /// released the waiters).
    ///
    /// ```
    /// let rs = multiopen::RunState::new("job");
    /// rs.start()?;
    /// assert!(rs.resume().is_err()); // not paused
    /// rs.pause()?;
    /// rs.resume()?;
    /// assert!(!rs.is_paused());
    /// # Ok::<(), multiopen::RunStateError>(())
    /// ```
    pub fn resume(&self) -> Result<(), RunStateError> {
        // Relaxed: a first guess for the CAS.
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if s & (RUNNING | PAUSED | CANCELLED) != RUNNING | PAUSED {
                return Err(RunStateError::NotPaused {
                    name: self.name.to_string(),
                });
            }
            // Release: what the resumer did before is visible to the
            // threads it releases (they load Acquire).
            match self.state.compare_exchange_weak(
                s,
                s & !(PAUSED | WAITERS),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    if s & WAITERS != 0 && !mutant("run_state::resume_no_wake") {
                        self.state.wake_all();
                    }
                    return Ok(());
                }
                Err(now) => s = now,
            }
        }
    }

    // --- queries: one load each ---------------------------------------------

    /// Is a run in progress (started and not yet stopped, paused or
    /// cancelled or not)? The seed's truthiness.
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

    /// Has [`cancel`](Self::cancel) been called since the last
    /// [`start`](Self::start)?
    ///
    /// One atomic load of a word that no query writes, and a mask test: as
    /// cheap to poll as an `AtomicBool`. Acquire: pairs with
    /// `cancel`'s Release, so what the cancelling thread did before
    /// cancelling is visible once this returns true.
    ///
    /// ```
    /// let rs = multiopen::RunState::new("job");
    /// let _run = rs.run();
    /// while !rs.cancelled() {
    ///     // ... one step of work ...
    ///     # rs.cancel().unwrap();
    /// }
    /// ```
    #[inline]
    pub fn cancelled(&self) -> bool {
        self.state.load(Ordering::Acquire) & CANCELLED != 0
    }

    /// Running and cancelled: asked to stop, not stopped yet.
    ///
    /// One atomic load (Acquire, as [`cancelled`](Self::cancelled)).
    ///
    /// ```
    /// let rs = multiopen::RunState::new("job");
    /// rs.start()?;
    /// assert!(!rs.stopping());
    /// rs.cancel()?;
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
    /// rs.cancel()?; // a cancel ends the pause
    /// assert!(!rs.is_paused());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn is_paused(&self) -> bool {
        self.state.load(Ordering::Acquire) & (RUNNING | PAUSED | CANCELLED) == RUNNING | PAUSED
    }

    /// Where the state is, as the seed's label.
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

    // --- guards ---------------------------------------------------------------

    /// Starts a run that ends when the returned guard is dropped (the seed's
    /// context manager). If the scope panics, the guard cancels before it
    /// stops, so the state reads `cancelled`.
    ///
    /// If the state is already running, the guard neither starts nor stops
    /// it (as the Python does for a nested `with`): see
    /// [`RunGuard::started`]. Never fails; panics of `on_start` callbacks
    /// are kept in [`RunGuard::start_panics`].
    ///
    /// The guard ends only the run it started: if another thread stopped
    /// that run (and perhaps started a new one) meanwhile, dropping the
    /// guard neither cancels nor stops anything. The run is told apart by
    /// the state word's 24-bit publish counter, so this holds unless
    /// exactly a multiple of 2^23 further runs came and went while the
    /// guard lived.
    ///
    /// ```
    /// use multiopen::{RunPhase, RunState};
    ///
    /// let rs = RunState::new("job");
    /// let result = std::panic::catch_unwind(|| {
    ///     let _run = rs.run();
    ///     # std::panic::set_hook(Box::new(|_| {}));
    ///     panic!("task failed");
    /// });
    /// # let _ = std::panic::take_hook();
    /// assert!(result.is_err());
    /// assert_eq!(rs.state(), RunPhase::Cancelled); // cancelled, then stopped
    /// ```
    pub fn run(&self) -> RunGuard<'_> {
        let (run, start_panics) = self.guard_start();
        RunGuard {
            runstate: self,
            run,
            start_panics,
        }
    }

    /// As [`run`](Self::run), for an `Arc<RunState>`: the guard owns a
    /// clone of the `Arc`, so it can move into another thread.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use multiopen::RunState;
    ///
    /// let rs = Arc::new(RunState::new("job"));
    /// let run = rs.run_owned();
    /// std::thread::spawn(move || {
    ///     let rs = run.runstate();
    ///     while !rs.cancelled() {
    ///         # rs.cancel().unwrap();
    ///     }
    ///     // `run` drops here: the run stops
    /// })
    /// .join()
    /// .unwrap();
    /// assert!(rs.stopped());
    /// ```
    pub fn run_owned(self: &Arc<Self>) -> OwnedRunGuard {
        let (run, start_panics) = self.guard_start();
        OwnedRunGuard {
            runstate: Arc::clone(self),
            run,
            start_panics,
        }
    }

    /// Starts for a guard: the run's EPOCH if it started, and the panics of
    /// its callbacks.
    fn guard_start(&self) -> (Option<u32>, Option<CallbackPanicked>) {
        match self.start_run() {
            Ok((run, callbacks)) => (Some(run), callbacks.err()),
            Err(_) => (None, None),
        }
    }

    // --- callbacks ------------------------------------------------------------

    /// Registers `callback` to run, with this `RunState`, after every
    /// [`start`](Self::start), in the starting thread. Returns its id for
    /// [`remove_callback`](Self::remove_callback).
    ///
    /// Registration copies the callback list under a registration-only
    /// lock; transitions read it without one.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use multiopen::RunState;
    ///
    /// let starts = Arc::new(AtomicUsize::new(0));
    /// let rs = RunState::new("job");
    /// let counter = Arc::clone(&starts);
    /// rs.on_start(move |rs| {
    ///     assert!(rs.is_running());
    ///     counter.fetch_add(1, Ordering::Relaxed);
    /// });
    /// rs.start()?;
    /// assert_eq!(starts.load(Ordering::Relaxed), 1);
    /// # Ok::<(), multiopen::RunStateError>(())
    /// ```
    pub fn on_start(&self, callback: impl Fn(&RunState) + Send + Sync + 'static) -> CallbackId {
        self.register(RunEvent::Start, Arc::new(callback))
    }

    /// Registers `callback` to run, with this `RunState`, after every
    /// [`cancel`](Self::cancel) that cancels (not one that finds it
    /// cancelled already), in the cancelling thread.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    /// use multiopen::RunState;
    ///
    /// let told = Arc::new(AtomicBool::new(false));
    /// let rs = RunState::new("job");
    /// let flag = Arc::clone(&told);
    /// rs.on_cancel(move |rs| flag.store(rs.cancelled(), Ordering::Relaxed));
    /// rs.cancel()?;
    /// assert!(told.load(Ordering::Relaxed));
    /// # Ok::<(), multiopen::CallbackPanicked>(())
    /// ```
    pub fn on_cancel(&self, callback: impl Fn(&RunState) + Send + Sync + 'static) -> CallbackId {
        self.register(RunEvent::Cancel, Arc::new(callback))
    }

    /// Registers `callback` to run, with this `RunState`, after every
    /// [`stop`](Self::stop), in the stopping thread.
    ///
    /// ```
    /// use std::sync::Mutex;
    /// use std::sync::Arc;
    /// use multiopen::RunState;
    ///
    /// let log = Arc::new(Mutex::new(Vec::new()));
    /// let rs = RunState::new("job");
    /// let sink = Arc::clone(&log);
    /// rs.on_end(move |rs| sink.lock().unwrap().push(rs.state().to_string()));
    /// rs.start()?;
    /// rs.cancel()?;
    /// rs.stop()?;
    /// assert_eq!(*log.lock().unwrap(), ["cancelled"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_end(&self, callback: impl Fn(&RunState) + Send + Sync + 'static) -> CallbackId {
        self.register(RunEvent::End, Arc::new(callback))
    }

    /// Unregisters a callback; returns whether it was registered. A
    /// transition already running callbacks may still call it once.
    ///
    /// ```
    /// use multiopen::RunState;
    ///
    /// let rs = RunState::new("job");
    /// let id = rs.on_start(|_| panic!("never runs"));
    /// assert!(rs.remove_callback(id));
    /// rs.start()?; // no callback, no panic
    /// # Ok::<(), multiopen::RunStateError>(())
    /// ```
    pub fn remove_callback(&self, id: CallbackId) -> bool {
        self.callbacks.update(|list, _| {
            let before = list.len();
            list.retain(|entry| entry.id != id.0);
            list.len() != before
        })
    }

    fn register(&self, event: RunEvent, callback: Callback) -> CallbackId {
        self.callbacks.update(|list, next_id| {
            let id = *next_id;
            *next_id += 1;
            list.push(Entry {
                id,
                event,
                callback,
            });
            CallbackId(id)
        })
    }

    /// Runs the callbacks for `event`, in registration order, catching
    /// panics; holds only its own reference to the list meanwhile.
    fn notify(&self, event: RunEvent) -> Result<(), CallbackPanicked> {
        let Some(list) = self.callbacks.snapshot() else {
            return Ok(());
        };
        let mut panics = Vec::new();
        for entry in list.iter().filter(|entry| entry.event == event) {
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| (entry.callback)(self))) {
                panics.push(panic_message(&*payload));
            }
        }
        drop(list);
        if panics.is_empty() {
            Ok(())
        } else {
            Err(CallbackPanicked {
                name: self.name.to_string(),
                event,
                panics,
            })
        }
    }

    // --- cooperative waiting ------------------------------------------------

    /// `Err(Cancelled)` if cancelled; otherwise, if paused, blocks until
    /// resumed (then `Ok`) or cancelled (then `Err`). The seed's `raiseif`.
    ///
    /// Not paused and not cancelled (the usual case): one atomic load and a
    /// mask test. Paused: sleeps on the futex, no spinning.
    ///
    /// ```
    /// use multiopen::{Cancelled, RunState};
    ///
    /// fn work(rs: &RunState, items: &[u32]) -> Result<u32, Cancelled> {
    ///     let mut sum = 0;
    ///     for item in items {
    ///         rs.check()?;
    ///         sum += item;
    ///     }
    ///     Ok(sum)
    /// }
    ///
    /// let rs = RunState::new("summer");
    /// let _run = rs.run();
    /// assert_eq!(work(&rs, &[1, 2, 3]), Ok(6));
    /// rs.cancel()?;
    /// assert!(work(&rs, &[1, 2, 3]).is_err());
    /// # Ok::<(), multiopen::CallbackPanicked>(())
    /// ```
    #[inline]
    pub fn check(&self) -> Result<(), Cancelled> {
        // Acquire: as `cancelled`.
        let s = self.state.load(Ordering::Acquire);
        if s & (CANCELLED | PAUSED) == 0 {
            return Ok(());
        }
        if s & CANCELLED != 0 || self.wait_unpaused() {
            Err(self.cancelled_error())
        } else {
            Ok(())
        }
    }

    /// Blocks while paused; returns at once if not paused, and as soon as
    /// the state is resumed, cancelled or stopped. Sleeps on the futex (no
    /// spinning); never misses the wake, including a cancel followed by a
    /// stop and a new start before this thread woke.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use multiopen::RunState;
    ///
    /// let rs = Arc::new(RunState::new("job"));
    /// rs.start()?;
    /// rs.pause()?;
    /// let waiter = {
    ///     let rs = Arc::clone(&rs);
    ///     std::thread::spawn(move || rs.wait_while_paused())
    /// };
    /// rs.resume()?;
    /// waiter.join().unwrap();
    /// # Ok::<(), multiopen::RunStateError>(())
    /// ```
    pub fn wait_while_paused(&self) {
        // Acquire: as `is_paused`.
        if self.state.load(Ordering::Acquire) & (PAUSED | CANCELLED) == PAUSED {
            self.wait_unpaused();
        }
    }

    /// Sleeps for `duration`, unless cancelled: returns `Err(Cancelled)` at
    /// once if cancelled already, and the moment a [`cancel`](Self::cancel)
    /// comes during the sleep; `Ok(())` when the time is up. Pausing does
    /// not affect it (follow with [`check`](Self::check) to honour a pause).
    ///
    /// A timed futex wait on the state word (on Linux the futex syscall; on
    /// other systems it polls in sleeps of at most 1 ms, so a cancel is seen
    /// within about a millisecond), woken by `cancel`. Spurious wake-ups
    /// and signals are absorbed: it never returns `Ok` early. A cancel that
    /// comes during the sleep is reported even if the run is stopped and
    /// started again (clearing the flag) before this thread wakes.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use multiopen::RunState;
    ///
    /// let rs = Arc::new(RunState::new("poller"));
    /// assert!(rs.sleep(Duration::from_millis(1)).is_ok()); // time up
    /// let sleeper = {
    ///     let rs = Arc::clone(&rs);
    ///     std::thread::spawn(move || rs.sleep(Duration::from_secs(3600)))
    /// };
    /// rs.cancel()?;
    /// assert!(sleeper.join().unwrap().is_err()); // woken by the cancel
    /// # Ok::<(), multiopen::CallbackPanicked>(())
    /// ```
    pub fn sleep(&self, duration: Duration) -> Result<(), Cancelled> {
        if self.cancelled() {
            return Err(self.cancelled_error());
        }
        if duration.is_zero() {
            return Ok(());
        }
        self.sleep_slow(duration)
    }

    #[cold]
    fn sleep_slow(&self, duration: Duration) -> Result<(), Cancelled> {
        // `None`: too far to represent, i.e. until cancelled.
        let deadline = Instant::now().checked_add(duration);
        let (cleared, mut s) = self.watch();
        loop {
            if self.cancelled_since(cleared, s) {
                return Err(self.cancelled_error());
            }
            let remaining = match deadline {
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(());
                    }
                    Some(left)
                }
                None => None,
            };
            if let Some(expected) = self.announce_waiter(s) {
                match remaining {
                    Some(left) => self.state.wait_timeout(expected, left),
                    None => self.state.wait(expected),
                }
            }
            // Acquire: as `cancelled`, and so that `cancelled_since` sees
            // the count of a start this load sees.
            s = self.state.load(Ordering::Acquire);
        }
    }

    /// An iterator over `items` that stops once this state is cancelled
    /// and blocks while it is paused: before each item it calls
    /// [`check`](Self::check). The seed's `RunState.iter`. Also as
    /// [`UntilCancelledExt::until_cancelled`].
    ///
    /// ```
    /// use multiopen::RunState;
    ///
    /// let rs = RunState::new("job");
    /// let _run = rs.run();
    /// let mut seen = Vec::new();
    /// for i in rs.iter(0..100) {
    ///     seen.push(i);
    ///     if i == 2 {
    ///         rs.cancel()?;
    ///     }
    /// }
    /// assert_eq!(seen, [0, 1, 2]);
    /// # Ok::<(), multiopen::CallbackPanicked>(())
    /// ```
    pub fn iter<I: IntoIterator>(&self, items: I) -> UntilCancelled<'_, I::IntoIter> {
        UntilCancelled {
            runstate: self,
            items: items.into_iter(),
            done: false,
        }
    }

    // --- internals ------------------------------------------------------------

    /// Ticks now: nanoseconds since `base`, plus one (0 means "never").
    fn ticks(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos())
            .unwrap_or(u64::MAX)
            .saturating_add(1)
    }

    /// One consistent (state word, live slot) pair: a seqlock read.
    fn times(&self) -> (u32, TimesRead) {
        loop {
            // Acquire: pairs with the publish (Release) that made this slot
            // live, so its stores are visible.
            let before = self.state.load(Ordering::Acquire);
            let times = self.times[live_slot(before)].read();
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

    /// Claims the timestamps for a start (`starting`) or a stop: sets
    /// `TIMING`, waiting while another start or stop holds it. A stop with
    /// `Some(run)` claims only while the word shows that run's EPOCH. Returns
    /// the word as claimed, or the misuse error (nothing changed).
    fn claim(&self, starting: bool, run: Option<u32>) -> Result<u32, RunStateError> {
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
            if run.is_some_and(|run| s & EPOCH_MASK != run)
                && !mutant("run_state::guard_ignores_run")
            {
                // Stopped (and started again) by someone else since.
                return Err(RunStateError::NotRunning {
                    name: self.name.to_string(),
                });
            }
            if s & TIMING != 0 {
                self.wait_for_timing(s);
                // Relaxed: only a guess for the CAS again.
                s = self.state.load(Ordering::Relaxed);
                continue;
            }
            if mutant("run_state::claim_check_then_act") {
                // The bug: test, then set, as two steps.
                self.state.fetch_or(TIMING, Ordering::Acquire);
                return Ok(s | TIMING);
            }
            // Acquire: pairs with the last publish (Release) — every change
            // since is an RMW in its release sequence — so we see the live
            // slot it wrote, and our writes to the spare slot come after
            // every earlier read of it by a writer.
            match self.state.compare_exchange_weak(
                s,
                s | TIMING,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(s | TIMING),
                Err(now) => s = now,
            }
        }
    }

    /// Writes `times` into the spare slot of claimed word `claimed`.
    fn write_spare(&self, claimed: u32, times: TimesRead) {
        // Release fence, after the claim and before the stores: a reader
        // that reads any of these stores sees the claim, and so an EPOCH
        // past the one that made this slot spare (see `times`).
        if !mutant("run_state::times_no_fence") && !mutant("run_state::times_no_release") {
            fence(Ordering::Release);
        }
        self.times[1 - live_slot(claimed)].write(times);
    }

    /// Publishes a claimed start (`starting`) or stop: `next` sets the
    /// flags, clears `TIMING` and `WAITERS` and bumps `EPOCH` (making the
    /// spare slot live), in one RMW; then wakes every sleeper if `WAITERS`
    /// was set. Returns the word published.
    ///
    /// A start that will clear `CANCELLED` first counts it in
    /// `cancels_cleared`. While we hold `TIMING` nobody else clears the
    /// flag, so once seen it is still set when our CAS succeeds: each
    /// cleared cancel is counted exactly once, before its clearing.
    fn publish(&self, next: impl Fn(u32) -> u32, starting: bool, no_wake: &str) -> u32 {
        // Release: the spare slot's stores (and all before this
        // transition) are visible to whoever loads the new word with
        // Acquire. (The fence in `write_spare` already orders them before
        // this RMW; the Release here says so where the publish is, and
        // covers what the transition did before its claim.)
        let order = ordering_unless("run_state::times_no_release", Ordering::Release);
        // Relaxed: a first guess for the CAS.
        let mut s = self.state.load(Ordering::Relaxed);
        let mut counted = false;
        let prev = loop {
            if starting
                && s & CANCELLED != 0
                && !counted
                && !mutant("run_state::restart_forgets_cancel")
            {
                // Release: a waiter whose Acquire load of the count sees
                // this increment also sees (in its next load of the word)
                // the word we just read, with CANCELLED; see `watch`.
                self.cancels_cleared.fetch_add(1, Ordering::Release);
                counted = true;
            }
            match self
                .state
                .compare_exchange_weak(s, next(s), order, Ordering::Relaxed)
            {
                Ok(prev) => break prev,
                Err(now) => s = now,
            }
        };
        if prev & WAITERS != 0 && !mutant(no_wake) {
            self.state.wake_all();
        }
        next(prev)
    }

    /// Makes sure word `s` shows `WAITERS` before sleeping on it: returns
    /// the word to sleep on, or `None` if it changed meanwhile (re-check).
    fn announce_waiter(&self, s: u32) -> Option<u32> {
        if s & WAITERS != 0 || mutant("run_state::waiter_no_announce") {
            return Some(s);
        }
        // Relaxed: the caller re-loads with Acquire after waking; what
        // makes the sleep safe is the futex's compare of the whole word.
        self.state
            .compare_exchange(s, s | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
            .ok()
            .map(|_| s | WAITERS)
    }

    /// Sleeps until the word shows not paused, or a cancel came; returns
    /// whether a cancel came (see [`watch`](Self::watch)).
    #[cold]
    fn wait_unpaused(&self) -> bool {
        let (cleared, mut s) = self.watch();
        loop {
            if self.cancelled_since(cleared, s) {
                return true;
            }
            if s & PAUSED == 0 {
                return false;
            }
            if let Some(expected) = self.announce_waiter(s) {
                self.state.wait(expected);
            }
            // Acquire: as `is_paused`, and as in `sleep_slow`.
            s = self.state.load(Ordering::Acquire);
        }
    }

    /// Where a wait begins: the count of cleared cancels and the state word
    /// `s`, read so that, afterwards, a cancel after `s` (in the word's
    /// modification order) shows as `CANCELLED` in a later load of the word
    /// or as a moved count, and a cancel before `s` shows only if `s` has
    /// the flag ([`cancelled_since`](Self::cancelled_since)).
    ///
    /// Why: a start that clears a cancel increments the count before its
    /// publish. (a) A start published before `s`: our Acquire load of `s`
    /// synchronises with it, so the count read after `s` includes it; the
    /// loop returns only when that equals the count read before `s`. (b) A
    /// start published after `s` whose increment the count read before `s`
    /// already includes: that increment followed the start's load of a word
    /// with `CANCELLED` (a word nobody but that start can clear), and our
    /// Acquire read of it orders that load before ours of `s`, so `s` shows
    /// `CANCELLED` and the waiter returns at once. So the baseline never
    /// hides a cancel that came after `s`, and never reports one that a
    /// start cleared before it.
    fn watch(&self) -> (u64, u32) {
        // Acquire: pairs with a start's Release increment; see (b).
        let mut cleared = self.cancels_cleared.load(Ordering::Acquire);
        loop {
            // Acquire: as `cancelled`; see (a).
            let s = self.state.load(Ordering::Acquire);
            // Acquire: this becomes the next round's first read, see (b).
            let again = self.cancels_cleared.load(Ordering::Acquire);
            if again == cleared {
                return (cleared, s);
            }
            cleared = again;
        }
    }

    /// Has a cancel come since [`watch`](Self::watch) returned `cleared`?
    /// `s` is a word loaded (Acquire) since: it shows `CANCELLED`, or a start
    /// it synchronises with counted a cancel it then cleared.
    fn cancelled_since(&self, cleared: u64, s: u32) -> bool {
        // Relaxed: the Acquire load of `s` orders every increment made
        // before the publishes it sees; a later one is seen next round.
        s & CANCELLED != 0 || self.cancels_cleared.load(Ordering::Relaxed) != cleared
    }

    /// Sleeps until the word (seen as `s`, with `TIMING`) changes.
    #[cold]
    fn wait_for_timing(&self, s: u32) {
        if let Some(expected) = self.announce_waiter(s) {
            self.state.wait(expected);
        }
    }

    /// Has some thread announced that it sleeps (or is about to) on the
    /// state word? For the loom models only, which wait for a waiter to
    /// have begun before they race it: not part of the API.
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn loom_has_waiters(&self) -> bool {
        // Acquire: only a hint for the model's spin loop.
        self.state.load(Ordering::Acquire) & WAITERS != 0
    }

    fn not_running_error(&self, s: u32) -> RunStateError {
        let name = self.name.to_string();
        if s & STARTED == 0 {
            RunStateError::NeverStarted { name }
        } else {
            RunStateError::NotRunning { name }
        }
    }

    #[cold]
    fn cancelled_error(&self) -> Cancelled {
        Cancelled {
            name: self.name.to_string(),
        }
    }
}

impl fmt::Debug for RunState {
    /// Name, state and times, from one consistent read.
    ///
    /// ```
    /// let rs = multiopen::RunState::new("job");
    /// rs.start()?;
    /// let shown = format!("{rs:?}");
    /// assert!(shown.starts_with(r#"RunState { name: "job", state: Running, start_time: Some("#));
    /// # Ok::<(), multiopen::RunStateError>(())
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (s, t) = self.times();
        let now = self.ticks();
        let (run_time, current) = match (s & STARTED != 0, s & RUNNING != 0) {
            (false, _) => (0, 0),
            (true, true) => {
                let so_far = now.saturating_sub(t.start_mono);
                (so_far, so_far)
            }
            (true, false) => (t.stop_mono.saturating_sub(t.start_mono), 0),
        };
        f.debug_struct("RunState")
            .field("name", &self.name)
            .field("state", &RunPhase::of(s))
            .field(
                "start_time",
                &(s & STARTED != 0).then(|| wall_time(t.start_wall)),
            )
            .field(
                "stop_time",
                &(t.stop_mono != 0).then(|| wall_time(t.stop_wall)),
            )
            .field("run_time", &Duration::from_nanos(run_time))
            .field(
                "total_time",
                &Duration::from_nanos(t.total.saturating_add(current)),
            )
            .finish()
    }
}

// ---------------------------------------------------------------------------
// Guards
// ---------------------------------------------------------------------------

/// Ends the guard's run, the one whose start published EPOCH `run`: cancel
/// first if unwinding, then stop; neither if that run is no longer the
/// current one (someone else stopped it, and perhaps started another).
fn end_run(runstate: &RunState, run: u32) -> Result<(), RunStateError> {
    if std::thread::panicking() && !mutant("run_state::guard_no_cancel_on_panic") {
        // Callback panics are dropped here: there is nobody to report to
        // while unwinding.
        let _ = runstate.cancel_run(run);
    }
    runstate.stop_run(Some(run))
}

/// A run that stops when this guard is dropped: see [`RunState::run`].
///
/// ```
/// use multiopen::RunState;
///
/// let rs = RunState::new("job");
/// let run = rs.run();
/// assert!(run.started());
/// run.stop()?; // the same as dropping it, with the result
/// assert!(rs.stopped());
/// # Ok::<(), multiopen::RunStateError>(())
/// ```
#[must_use = "dropping the guard stops the run at once"]
pub struct RunGuard<'a> {
    runstate: &'a RunState,
    /// The EPOCH that this guard's start published; `None` if it did not
    /// start the run (or has ended it).
    run: Option<u32>,
    start_panics: Option<CallbackPanicked>,
}

impl<'a> RunGuard<'a> {
    /// The `RunState`.
    ///
    /// ```
    /// let rs = multiopen::RunState::new("job");
    /// let run = rs.run();
    /// assert_eq!(run.runstate().name(), "job");
    /// ```
    pub fn runstate(&self) -> &'a RunState {
        self.runstate
    }

    /// Did this guard start the run (and so will it stop it)? `false` if the
    /// state was already running.
    ///
    /// ```
    /// let rs = multiopen::RunState::new("job");
    /// let outer = rs.run();
    /// let inner = rs.run(); // nested: already running
    /// assert!(outer.started() && !inner.started());
    /// drop(inner);
    /// assert!(rs.is_running()); // the inner guard does not stop it
    /// ```
    pub fn started(&self) -> bool {
        self.run.is_some()
    }

    /// The panics of `on_start` callbacks when this guard started the run.
    ///
    /// ```
    /// let rs = multiopen::RunState::new("job");
    /// rs.on_start(|_| panic!("oops"));
    /// # let hook = std::panic::take_hook();
    /// # std::panic::set_hook(Box::new(|_| {}));
    /// let run = rs.run();
    /// # std::panic::set_hook(hook);
    /// assert!(run.started()); // started all the same
    /// assert_eq!(run.start_panics().unwrap().panics, ["oops"]);
    /// ```
    pub fn start_panics(&self) -> Option<&CallbackPanicked> {
        self.start_panics.as_ref()
    }

    /// Ends the run now and returns what [`RunState::stop`] returned; does
    /// nothing and returns `Ok` if this guard did not start the run. If its
    /// run was already stopped by someone else (even if another run has
    /// started since): [`RunStateError::NotRunning`], and nothing changes.
    ///
    /// ```
    /// let rs = multiopen::RunState::new("job");
    /// let run = rs.run();
    /// rs.stop()?; // someone else stopped it...
    /// rs.start()?; // ...and started a run of their own
    /// assert!(run.stop().is_err()); // NotRunning: not this guard's run
    /// assert!(rs.is_running()); // theirs goes on
    /// # Ok::<(), multiopen::RunStateError>(())
    /// ```
    pub fn stop(mut self) -> Result<(), RunStateError> {
        match self.run.take() {
            Some(run) => self.runstate.stop_run(Some(run)),
            None => Ok(()),
        }
    }
}

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        if let Some(run) = self.run {
            let _ = end_run(self.runstate, run);
        }
    }
}

impl fmt::Debug for RunGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunGuard")
            .field("runstate", self.runstate)
            .field("started", &self.run.is_some())
            .finish()
    }
}

/// A run that stops when this guard is dropped, holding an
/// `Arc<RunState>`: see [`RunState::run_owned`].
///
/// ```
/// use std::sync::Arc;
/// use multiopen::RunState;
///
/// let rs = Arc::new(RunState::new("job"));
/// let run = rs.run_owned();
/// let worker = std::thread::spawn(move || {
///     assert!(run.runstate().is_running());
/// }); // the guard moved into the thread and dropped there
/// worker.join().unwrap();
/// assert!(rs.stopped());
/// ```
#[must_use = "dropping the guard stops the run at once"]
pub struct OwnedRunGuard {
    runstate: Arc<RunState>,
    /// As [`RunGuard`]'s.
    run: Option<u32>,
    start_panics: Option<CallbackPanicked>,
}

impl OwnedRunGuard {
    /// The `RunState`.
    ///
    /// ```
    /// let rs = std::sync::Arc::new(multiopen::RunState::new("job"));
    /// assert_eq!(rs.run_owned().runstate().name(), "job");
    /// ```
    pub fn runstate(&self) -> &Arc<RunState> {
        &self.runstate
    }

    /// Did this guard start the run? See [`RunGuard::started`].
    ///
    /// ```
    /// let rs = std::sync::Arc::new(multiopen::RunState::new("job"));
    /// let outer = rs.run_owned();
    /// assert!(outer.started() && !rs.run_owned().started());
    /// ```
    pub fn started(&self) -> bool {
        self.run.is_some()
    }

    /// See [`RunGuard::start_panics`].
    ///
    /// ```
    /// let rs = std::sync::Arc::new(multiopen::RunState::new("job"));
    /// assert!(rs.run_owned().start_panics().is_none());
    /// ```
    pub fn start_panics(&self) -> Option<&CallbackPanicked> {
        self.start_panics.as_ref()
    }

    /// See [`RunGuard::stop`].
    ///
    /// ```
    /// let rs = std::sync::Arc::new(multiopen::RunState::new("job"));
    /// rs.run_owned().stop()?;
    /// assert!(rs.stopped());
    /// # Ok::<(), multiopen::RunStateError>(())
    /// ```
    pub fn stop(mut self) -> Result<(), RunStateError> {
        match self.run.take() {
            Some(run) => self.runstate.stop_run(Some(run)),
            None => Ok(()),
        }
    }
}

impl Drop for OwnedRunGuard {
    fn drop(&mut self) {
        if let Some(run) = self.run {
            let _ = end_run(&self.runstate, run);
        }
    }
}

impl fmt::Debug for OwnedRunGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedRunGuard")
            .field("runstate", &*self.runstate)
            .field("started", &self.run.is_some())
            .finish()
    }
}

// ---------------------------------------------------------------------------
// The iterator adapter
// ---------------------------------------------------------------------------

/// Yields the items of an iterator until a [`RunState`] is cancelled,
/// blocking while it is paused: see [`RunState::iter`] and
/// [`UntilCancelledExt::until_cancelled`]. Once it has returned `None` it
/// always does.
///
/// ```
/// use multiopen::{RunState, UntilCancelled};
///
/// let rs = RunState::new("job");
/// rs.cancel()?;
/// let mut it: UntilCancelled<'_, _> = rs.iter([1, 2, 3]);
/// assert_eq!(it.next(), None);
/// # Ok::<(), multiopen::CallbackPanicked>(())
/// ```
#[derive(Debug)]
#[must_use = "iterators are lazy and do nothing unless consumed"]
pub struct UntilCancelled<'a, I> {
    runstate: &'a RunState,
    items: I,
    done: bool,
}

impl<I: Iterator> Iterator for UntilCancelled<'_, I> {
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        if self.done {
            return None;
        }
        let item = match self.runstate.check() {
            Ok(()) => self.items.next(),
            Err(Cancelled { .. }) => None,
        };
        self.done = item.is_none();
        item
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.done {
            (0, Some(0))
        } else {
            (0, self.items.size_hint().1)
        }
    }
}

impl<I: Iterator> FusedIterator for UntilCancelled<'_, I> {}

/// `iterator.until_cancelled(&runstate)`: the [`RunState::iter`] adapter as
/// an iterator method.
///
/// ```
/// use multiopen::{RunState, UntilCancelledExt};
///
/// let rs = RunState::new("job");
/// let _run = rs.run();
/// let firsts: Vec<_> = (1..)
///     .until_cancelled(&rs)
///     .inspect(|&i| if i == 3 { rs.cancel().unwrap() })
///     .collect();
/// assert_eq!(firsts, [1, 2, 3]);
/// ```
pub trait UntilCancelledExt: Iterator + Sized {
    /// Yields this iterator's items until `runstate` is cancelled, blocking
    /// while it is paused.
    ///
    /// ```
    /// use multiopen::{RunState, UntilCancelledExt};
    ///
    /// let rs = RunState::new("job");
    /// assert_eq!((0..3).until_cancelled(&rs).count(), 3);
    /// ```
    fn until_cancelled(self, runstate: &RunState) -> UntilCancelled<'_, Self> {
        runstate.iter(self)
    }
}

impl<I: Iterator> UntilCancelledExt for I {}

// ---------------------------------------------------------------------------
// HasRunState
// ---------------------------------------------------------------------------

/// A type that has a [`RunState`] (the Python `RunStateMixin`): implement
/// [`runstate`](Self::runstate) and get `cancel`, `cancelled`,
/// `is_running`, `stopping` and `stopped`.
///
/// ```
/// use multiopen::{HasRunState, RunState};
///
/// struct Crawler {
///     runstate: RunState,
///     pages: Vec<String>,
/// }
///
/// impl HasRunState for Crawler {
///     fn runstate(&self) -> &RunState {
///         &self.runstate
///     }
/// }
///
/// let c = Crawler { runstate: RunState::new("crawler"), pages: Vec::new() };
/// let _run = c.runstate().run();
/// assert!(c.is_running() && !c.cancelled());
/// c.cancel()?;
/// assert!(c.stopping());
/// # assert!(c.pages.is_empty());
/// # Ok::<(), multiopen::CallbackPanicked>(())
/// ```
pub trait HasRunState {
    /// The `RunState` that the provided methods act on.
    fn runstate(&self) -> &RunState;

    /// [`RunState::cancel`].
    ///
    /// ```
    /// use multiopen::{HasRunState, RunState};
    /// let rs = RunState::new("job");
    /// HasRunState::cancel(&rs)?;
    /// assert!(rs.cancelled());
    /// # Ok::<(), multiopen::CallbackPanicked>(())
    /// ```
    fn cancel(&self) -> Result<(), CallbackPanicked> {
        self.runstate().cancel()
    }

    /// [`RunState::cancelled`].
    ///
    /// ```
    /// use multiopen::{HasRunState, RunState};
    /// assert!(!HasRunState::cancelled(&RunState::new("job")));
    /// ```
    fn cancelled(&self) -> bool {
        self.runstate().cancelled()
    }

    /// [`RunState::is_running`].
    ///
    /// ```
    /// use multiopen::{HasRunState, RunState};
    /// assert!(!HasRunState::is_running(&RunState::new("job")));
    /// ```
    fn is_running(&self) -> bool {
        self.runstate().is_running()
    }

    /// [`RunState::stopping`].
    ///
    /// ```
    /// use multiopen::{HasRunState, RunState};
    /// assert!(!HasRunState::stopping(&RunState::new("job")));
    /// ```
    fn stopping(&self) -> bool {
        self.runstate().stopping()
    }

    /// [`RunState::stopped`].
    ///
    /// ```
    /// use multiopen::{HasRunState, RunState};
    /// assert!(!HasRunState::stopped(&RunState::new("job")));
    /// ```
    fn stopped(&self) -> bool {
        self.runstate().stopped()
    }
}

/// A `RunState` has itself, so generic code over [`HasRunState`] takes a
/// bare `RunState` too.
impl HasRunState for RunState {
    fn runstate(&self) -> &RunState {
        self
    }
}

// ---------------------------------------------------------------------------
// Cancelling on a signal (feature `signal`)
// ---------------------------------------------------------------------------

#[cfg(all(feature = "signal", unix))]
pub use signal::SignalCanceller;

#[cfg(all(feature = "signal", unix))]
mod signal {
    use std::sync::Arc;

    use signal_hook::consts::{SIGINT, SIGTERM};
    use signal_hook::iterator::{Handle, Signals};

    use super::RunState;

    impl RunState {
        /// Cancels this state when the process gets SIGINT or SIGTERM, for
        /// as long as the returned guard lives (feature `signal`, unix).
        ///
        /// The handler (from `signal-hook`) only records the signal; a
        /// small thread named after the state then calls
        /// [`cancel`](RunState::cancel), so the `on_cancel` callbacks run
        /// in an ordinary thread (their panics are dropped there). While
        /// the guard lives the signals no longer end the process. When it
        /// is dropped the thread ends, but, as `signal-hook` documents, the
        /// process's handler stays installed, so the signals are then
        /// ignored rather than fatal: keep the guard for as long as the
        /// program should answer them.
        ///
        /// A signal that arrives before the run starts cancels a state that
        /// is not running yet, and the [`start`](RunState::start) (or
        /// [`run`](RunState::run)) then clears it, as every start clears an
        /// earlier cancel: to never lose one, install this once the run has
        /// started, or check [`cancelled`](RunState::cancelled) before
        /// starting.
        ///
        /// ```no_run
        /// use std::sync::Arc;
        /// use std::time::Duration;
        /// use multiopen::RunState;
        ///
        /// let rs = Arc::new(RunState::new("server"));
        /// let _on_signal = rs.cancel_on_signals()?;
        /// // A Ctrl-C before this line is cleared by the start in `run()`.
        /// let _run = rs.run();
        /// while rs.sleep(Duration::from_secs(1)).is_ok() {
        ///     // ... serve until Ctrl-C ...
        /// }
        /// # Ok::<(), std::io::Error>(())
        /// ```
        pub fn cancel_on_signals(self: &Arc<Self>) -> std::io::Result<SignalCanceller> {
            let mut signals = Signals::new([SIGINT, SIGTERM])?;
            let handle = signals.handle();
            let runstate = Arc::clone(self);
            let thread = std::thread::Builder::new()
                .name(format!("{}-signals", self.name()))
                .spawn(move || {
                    for _signal in signals.forever() {
                        let _ = runstate.cancel();
                    }
                })?;
            Ok(SignalCanceller {
                handle,
                thread: Some(thread),
            })
        }
    }

    /// While alive, SIGINT and SIGTERM cancel a [`RunState`]: see
    /// [`RunState::cancel_on_signals`]. Dropping it stops that and joins its
    /// thread.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use multiopen::{RunState, SignalCanceller};
    ///
    /// let rs = Arc::new(RunState::new("server"));
    /// let guard: SignalCanceller = rs.cancel_on_signals()?;
    /// drop(guard);
    /// assert!(!rs.cancelled());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[derive(Debug)]
    pub struct SignalCanceller {
        handle: Handle,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Drop for SignalCanceller {
        fn drop(&mut self) {
            self.handle.close();
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }
}
