//! [`Pool`]: objects that are expensive to make and cheap to reuse (buffers,
//! sessions, parsers), handed out and taken back by many threads at once.
//!
//! [`instance`](Pool::instance) hands out an idle object, or makes a new one
//! with the pool's factory if none is idle; the [`PoolGuard`] derefs to it
//! and puts it back when dropped. At most [`max_size`](Pool::max_size) idle
//! objects are kept: an object coming back to a full pool is dropped
//! instead. Idle objects sit in a few *front slots*, each padded to its
//! own cache line(s), and behind them in crossbeam's `ArrayQueue`
//! (`SegQueue` for an unbounded pool); each thread has a home slot, so
//! taking and returning are one compare-and-swap and one store on a line
//! no other thread writes while the threads using the pool have different
//! home slots (see [the layout](#the-layout-front-slots-then-the-queue)).
//! No lock and no system call; no thread ever waits on a front slot (one
//! that finds a slot busy moves on), while the queue behind them may spin
//! briefly as crossbeam's queues do. The factory runs only when no idle
//! object was found.
//!
//! ```
//! use multiopen::Pool;
//!
//! // Buffers, at most 4 kept idle (the default), cleared before reuse.
//! let buffers = Pool::builder(|| Vec::<u8>::with_capacity(4096))
//!     .reset(|buf| buf.clear())
//!     .build();
//! std::thread::scope(|s| {
//!     for id in 0..8u8 {
//!         let buffers = &buffers;
//!         s.spawn(move || {
//!             let mut buf = buffers.instance();
//!             assert!(buf.is_empty()); // fresh, or cleared by the reset hook
//!             buf.extend_from_slice(&[id; 100]);
//!         }); // `buf` goes back to the pool here
//!     }
//! });
//! let stats = buffers.stats();
//! assert_eq!(stats.created + stats.reused, 8); // 8 instances
//! assert_eq!(stats.returned + stats.dropped_full, 8); // 8 guards gone
//! assert!(buffers.len() <= 4);
//! ```
//!
//! A factory that can fail is given with [`Pool::try_builder`]; its pool
//! hands out objects with [`try_instance`](Pool::try_instance), which
//! returns the factory's error to the caller (a plain pool's
//! [`instance`](Pool::instance) cannot fail, so it returns the guard
//! itself).
//!
//! # From the Python `cs.resources`
//!
//! `Pool(new_object, max_size=None, lock=None)` becomes
//! [`Pool::new`]`(factory)` (max size 4) or
//! [`Pool::with_max_size`]`(factory, max_size)`, with 0 meaning no upper
//! limit. The `lock` argument has no counterpart and no meaning here: the
//! pool takes no lock at all, so there is nothing to pass in. Python's
//! `with pool.instance() as obj:` is the guard's scope; as in the Python
//! `cs.resources`, an object goes back even if that scope panics (after the
//! reset hook, if one is set).
//!
//! # The layout: front slots, then the queue
//!
//! A bounded pool of `max_size` has `F = min(max_size - 1, 16)` front slots
//! and a queue of `max_size - F` (at least one), so it never holds more
//! than `max_size` idle objects, exactly, without a shared count. A slot is
//! a state word (holds an object, busy, and a count of puts) beside room
//! for one object, padded to a cache line. The thread with index `i` (a
//! small number unique among the process's live threads, lowest free
//! first, reused after a thread exits) calls slot `i % F` its home. So two
//! threads share a home slot when their indices are equal modulo `F`
//! (with the default `max_size` of 4, `F` is 3: indices 1 and 4 share);
//! sharing costs contention on that slot, never correctness.
//!
//! - A take tries the home slot (a compare-and-swap to *busy*, read the
//!   object, a store to *empty*), then the queue, then the other slots,
//!   and only then runs the factory.
//! - A return (after the reset hook) tries the slot of the thread that
//!   took the object (the guard remembers it), then the queue, then the
//!   other slots; only when every one of them was full when tried is the
//!   object dropped as *full*.
//! - A slot is *busy* for a few instructions with no user code in between;
//!   another thread that finds it busy treats it as unavailable and moves
//!   on, so no thread ever waits for another.
//!
//! Under concurrency a take can miss an object that lands in a slot it
//! already passed (and run the factory), and a return can miss a slot that
//! empties after it passed (and drop the object): the bound is never
//! exceeded, and the single-threaded behaviour is exact (`len() ==
//! max_size` after enough returns). An unbounded pool has 16 front slots
//! in front of its `SegQueue`. A slot holds its object inline, so the
//! slots take `F` × (the object's size rounded up to the padding, 128
//! bytes on x86_64) up front.
//!
//! The queue is an `ArrayQueue`, its places allocated up front, only for a
//! `max_size` of up to [`Pool::PREALLOCATED_UP_TO`] (1024, which covers the
//! benchmarks and typical pools). Above that, so that no bound costs memory
//! in proportion to itself before any object exists (`usize::MAX` is a
//! valid bound), the queue is a `SegQueue` that allocates as it fills,
//! kept to its `max_size - F` places exactly by a count of reserved places
//! (reserved before a push, given back after a pop).
//!
//! Why: with a queue alone, every take and return of every thread hits the
//! queue's head and tail lines, which ping-pong between cores (a raw
//! `ArrayQueue` pop+push costs about 3× as much per thread at two threads
//! as at one), and under oversubscription `ArrayQueue` spins on a slot a
//! preempted thread left half-written. With home slots, two threads touch
//! different lines: at two threads the pool runs about 4× faster than the
//! raw queue (`BENCHMARKS.md`).
//!
//! # Statistics without a shared hot line
//!
//! [`stats`](Pool::stats) reports created, reused, returned, dropped
//! because full, and currently out (and a few more). Counting every take
//! and every return in shared counters would cost more than the pool
//! operations themselves: in `benches/pool.rs` two `fetch_add`s on padded
//! shared counters make a raw `ArrayQueue` pop+push 1.5–1.8× slower at one
//! thread and 2–6× at two (`BENCHMARKS.md`). So the pool counts as little as
//! it can on the hot path and derives the rest:
//!
//! - A return that finds room (*returned*) is the one event counted on the
//!   hot path. Into a front slot it costs nothing: the slot's state word
//!   counts its puts, in the same store that publishes the object. Into the
//!   queue it is counted in a per-thread stripe (its own cache line)
//!   written only by the thread that owns it, as a plain load and store
//!   (no read-modify-write, no line shared between threads).
//! - Every other event (factory ran, factory failed, dropped because full,
//!   taken for good, reset hook panicked, cleared) is on a path that already
//!   runs the factory or drops an object; each is a `fetch_add` on a counter
//!   in one padded block, away from the queue's lines.
//! - *Reused* (takes served from an idle object) is derived: every object
//!   that became idle (prefilled or returned) has been reused, cleared, or
//!   is still idle, so `reused = prefilled + returned - cleared - idle`.
//! - *Out* (objects in guards now) is derived the same way: every object
//!   made is retired (dropped because full, dropped by a panicking reset
//!   hook, taken, cleared), idle, or out.
//!
//! At rest (no call in flight) the snapshot is exact. One taken while other
//! threads work reads every counter, the queue's length, and every counter
//! again (in reverse order), and keeps the reading only if the two passes
//! agree: then it is the state at one moment during the call, give or
//! take the operations in flight at that moment (at most one per thread),
//! however long the reader was descheduled between its reads. After 16
//! attempts that disagree it falls back to a reading whose counts are each
//! a value they had during the call and whose derived `out` and `reused`
//! err low, never above the objects that existed; see
//! "The error bound" at [`Pool::stats`].
//!
//! # Panics in the factory or the reset hook
//!
//! A panicking factory made no object: it is counted as failed and the panic
//! reaches the caller of `instance`. A panicking reset hook drops the object
//! it was resetting (counted as `reset_panicked`) and the panic propagates
//! from the guard's drop. Either way the pool stays consistent and later
//! calls work.
//!
//! User code that runs while the thread is already unwinding (a guard
//! dropped by a panicking scope: its reset hook, or the object's own `Drop`
//! when the pool is full; `clear` called from a destructor; the last owned
//! guard dropping the pool) cannot abort the process with a second panic:
//! the pool catches it, counts and drops the object as above, and disposes
//! of the caught payload without letting a panic from the payload's own
//! `Drop` out. Dropping the pool drops every idle object even if some
//! `Drop` panics, then resumes the first such panic (unless already
//! unwinding). The library never catches a factory's panic: it reaches
//! the caller of `instance` or `prefill`.
//!
//! # Compared with lockfree-object-pool
//!
//! lockfree-object-pool's `LinearObjectPool` also takes with one
//! compare-and-swap on a slot flag, but it has no maximum (it never drops
//! an object) and its slots are found by a shared linear search; at one
//! thread it is about as fast as this pool, at two threads it is several
//! times slower (`BENCHMARKS.md`).

use std::convert::Infallible;
use std::fmt;
use std::mem::ManuallyDrop;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crossbeam_utils::CachePadded;

use crate::sync::{mutant, ObjectQueue};
use crate::unwind;

mod builder;
mod capped;
mod error;
mod futures;
mod get;
mod guard;
mod lifetime;
mod limit;
mod retain;
mod slots;
mod stats;
mod take;

pub use builder::PoolBuilder;
pub use error::PoolError;
pub use futures::{GetFuture, GetOwnedFuture};
pub use get::PoolStatus;
pub use guard::{OwnedPoolGuard, PoolGuard};
pub use stats::PoolStats;

use builder::{Check, Factory, Reset};
use lifetime::Entry;
use slots::{Front, FULL, NO_HOME};
use stats::{bump, RareCounts, Stripes};

/// A pool of reusable objects made by a factory closure.
///
/// Create it with [`new`](Pool::new), [`with_max_size`](Pool::with_max_size)
/// or a [`builder`](Pool::builder) (reset hook, fallible factory through
/// [`try_builder`](Pool::try_builder)). `E` is the factory's error type,
/// [`Infallible`] for a plain factory.
///
/// # Costs
/// [`instance`](Pool::instance) with an object idle in the thread's home
/// slot, and dropping the guard into it: a compare-and-swap and a store
/// each, on the slot's own cache line, statistics included. When the home
/// slot is empty or full, a queue operation (a return into the queue also
/// bumps a per-thread counter: a load and a store on the thread's own
/// line), then the other slots. No lock, no system call, and (after a
/// thread's first use of a pool, which claims a thread index and may
/// allocate its counter stripe) no allocation. Otherwise `instance` runs
/// the factory, and a return to a full pool drops the object.
///
/// ```
/// use std::sync::Arc;
/// use multiopen::Pool;
///
/// let pool = Arc::new(Pool::new(|| String::with_capacity(64)));
/// let strings: Vec<_> = (0..4).map(|_| pool.instance_owned()).collect();
/// let workers: Vec<_> = strings
///     .into_iter()
///     .enumerate()
///     .map(|(i, mut s)| {
///         std::thread::spawn(move || {
///             s.clear();
///             s.push_str(&i.to_string());
///             s.len()
///         })
///     })
///     .collect();
/// for w in workers {
///     assert_eq!(w.join().unwrap(), 1);
/// }
/// assert_eq!(pool.len(), 4); // all four came back
/// ```
pub struct Pool<T, E = Infallible> {
    /// Idle objects in front of the queue: see the layout comment at `Slot`.
    front: Front<T>,
    /// The other idle objects.
    idle: ObjectQueue<Entry<T>>,
    /// At most this many idle objects, front and queue together; 0 for no
    /// limit.
    max_size: usize,
    /// The hot-path counter: returns that found room.
    stripes: Stripes,
    /// Rare-path counters, away from the queue's and stripes' lines.
    rare: CachePadded<RareCounts>,
    /// Dropped by hand in `Drop`, where a panic from the closure's captured
    /// values must not abort the process.
    factory: ManuallyDrop<Factory<T, E>>,
    reset: Option<Reset<T>>,
    /// Validation hooks: read on the counted (capped) paths only.
    is_valid: Option<Check<T>>,
    has_broken: Option<Check<T>>,
    /// `max_lifetime` and `idle_timeout`, if set: read on the counted
    /// paths only.
    lifetimes: Option<lifetime::Lifetimes>,
    /// The cap on live objects, if built with one: chosen at build time,
    /// so an uncapped pool's paths test this one plain field and go on.
    limit: Option<Box<limit::Limit>>,
    /// For messages; `pool` unless set.
    name: Box<str>,
}

impl<T> Pool<T> {
    /// A pool of objects made by `factory`, keeping at most
    /// [`DEFAULT_MAX_SIZE`](Pool::DEFAULT_MAX_SIZE) (4) idle, as the Python
    /// `cs.resources`'s `Pool(new_object)`. Its `lock` argument has no
    /// counterpart: this pool takes no lock.
    ///
    /// ```
    /// use multiopen::Pool;
    /// let pool = Pool::new(|| vec![0u8; 1024]);
    /// assert_eq!(pool.instance().len(), 1024);
    /// assert_eq!(pool.max_size(), 4);
    /// ```
    pub fn new(factory: impl Fn() -> T + Send + Sync + 'static) -> Self {
        Self::builder(factory).build()
    }

    /// A pool keeping at most `max_size` idle objects; 0 means no upper
    /// limit (the Python `cs.resources`'s `max_size=0`).
    ///
    /// Any value is accepted and made at once: a pool of up to
    /// [`PREALLOCATED_UP_TO`](Pool::PREALLOCATED_UP_TO) places allocates
    /// them up front (front slots and crossbeam's `ArrayQueue`: see the
    /// [layout](crate::pool#the-layout-front-slots-then-the-queue)); a
    /// larger one allocates its queue as it fills (see
    /// [`PoolBuilder::max_size`]).
    ///
    /// ```
    /// use multiopen::Pool;
    /// let pool = Pool::with_max_size(|| 0u64, 1);
    /// let (a, b) = (pool.instance(), pool.instance());
    /// drop((a, b));
    /// assert_eq!(pool.len(), 1); // the second one found the pool full
    /// ```
    pub fn with_max_size(factory: impl Fn() -> T + Send + Sync + 'static, max_size: usize) -> Self {
        Self::builder(factory).max_size(max_size).build()
    }

    /// An idle object, or a new one from the factory if none is idle (the
    /// Python `cs.resources`'s `instance()`). Dropping the guard puts the
    /// object back, or drops it if the pool is full.
    ///
    /// On a [capped](PoolBuilder::max_live) pool it is
    /// [`get`](Self::get) that cannot fail: it waits for ever at the cap,
    /// and on a [closed](Self::close) pool it still obeys the cap (waits
    /// for room, makes a fresh object that is dropped on return) rather
    /// than report the close; use `get` and its timed forms for errors.
    ///
    /// Cost: one slot take (a compare-and-swap and a store) when an object
    /// is idle in the thread's home slot, else one queue pop, else a look
    /// at the other front slots. A panicking factory's
    /// panic propagates (no object was made; the pool is unchanged but for
    /// the `failed` count).
    ///
    /// ```
    /// use multiopen::Pool;
    /// let pool = Pool::new(|| vec![1, 2, 3]);
    /// {
    ///     let mut v = pool.instance();
    ///     v.push(4);
    /// } // back into the pool
    /// assert_eq!(*pool.instance(), [1, 2, 3, 4]); // the same object
    /// ```
    #[inline]
    pub fn instance(&self) -> PoolGuard<'_, T> {
        match self.try_instance() {
            Ok(guard) => guard,
            Err(never) => match never {},
        }
    }

    /// Like [`instance`](Self::instance), but the guard holds an `Arc` of
    /// the pool, so it is `'static` and can move into a spawned thread; the
    /// pool lives at least as long as its owned guards.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use multiopen::Pool;
    /// let pool = Arc::new(Pool::new(|| 7u32));
    /// let guard = pool.instance_owned();
    /// drop(pool); // the guard keeps the pool alive
    /// let t = std::thread::spawn(move || *guard);
    /// assert_eq!(t.join().unwrap(), 7);
    /// ```
    #[inline]
    pub fn instance_owned(self: &Arc<Self>) -> OwnedPoolGuard<T> {
        match self.try_instance_owned() {
            Ok(guard) => guard,
            Err(never) => match never {},
        }
    }

    /// Makes up to `n` objects and puts them in the pool, stopping when it
    /// holds `max_size` idle objects; returns how many were added. Any `n`
    /// is accepted: `prefill(usize::MAX)` fills a bounded pool and stops
    /// (on an unbounded pool, or a bound in the billions, it makes that
    /// many objects, one factory call each, as asked).
    ///
    /// ```
    /// use multiopen::Pool;
    /// let pool = Pool::with_max_size(|| [0u8; 64], 3);
    /// assert_eq!(pool.prefill(5), 3); // room for 3 only
    /// assert_eq!(pool.len(), 3);
    /// let _a = pool.instance();
    /// assert_eq!(pool.stats().reused, 1);
    /// ```
    pub fn prefill(&self, n: usize) -> usize {
        match self.try_prefill(n) {
            Ok(added) => added,
            Err(never) => match never {},
        }
    }
}

impl<T, E> Pool<T, E> {
    /// How many idle objects a pool keeps unless told otherwise: 4, as in
    /// the Python `cs.resources`.
    ///
    /// ```
    /// use multiopen::Pool;
    /// assert_eq!(Pool::<u8>::DEFAULT_MAX_SIZE, 4);
    /// ```
    pub const DEFAULT_MAX_SIZE: usize = 4;

    /// The largest `max_size` whose places a pool allocates up front (its
    /// front slots and an `ArrayQueue`, the fastest path): 1024. A larger
    /// bound gets a queue that allocates as it fills, kept to `max_size`
    /// exactly all the same (see [`PoolBuilder::max_size`]), so no bound
    /// costs memory in proportion to itself before objects exist.
    ///
    /// ```
    /// use multiopen::Pool;
    /// assert_eq!(Pool::<u8>::PREALLOCATED_UP_TO, 1024);
    /// // Made at once, and nothing in proportion to the bound allocated:
    /// let huge = Pool::with_max_size(|| [0u8; 64], usize::MAX);
    /// drop(huge.instance());
    /// assert_eq!(huge.len(), 1);
    /// ```
    pub const PREALLOCATED_UP_TO: usize = 1024;

    /// An idle object, or a new one from the factory; a factory error is
    /// returned as is (and counted as failed). The `instance` of a pool with
    /// a fallible factory.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use multiopen::Pool;
    ///
    /// let tries = AtomicU32::new(0);
    /// let pool = Pool::try_builder(move || match tries.fetch_add(1, Ordering::Relaxed) {
    ///     0 => Err("busy"),
    ///     n => Ok(n),
    /// })
    /// .build();
    /// assert_eq!(pool.try_instance().unwrap_err(), "busy");
    /// assert_eq!(*pool.try_instance()?, 1); // the next call tries again
    /// # Ok::<(), &str>(())
    /// ```
    #[inline]
    pub fn try_instance(&self) -> Result<PoolGuard<'_, T, E>, E> {
        let (entry, home) = match &self.limit {
            None => self
                .acquire()
                .map(|(object, home)| (Entry::timeless(object), home))?,
            Some(limit) => self.instance_capped(limit)?,
        };
        Ok(PoolGuard {
            object: ManuallyDrop::new(entry.object),
            home,
            dies: entry.dies,
            pool: self,
        })
    }

    /// [`try_instance`](Self::try_instance) with an owned guard, as
    /// [`instance_owned`](Pool::instance_owned).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use multiopen::Pool;
    /// let pool = Arc::new(Pool::try_builder(|| "x".parse::<u8>()).build());
    /// assert!(pool.try_instance_owned().is_err());
    /// ```
    #[inline]
    pub fn try_instance_owned(self: &Arc<Self>) -> Result<OwnedPoolGuard<T, E>, E> {
        let (entry, home) = match &self.limit {
            None => self
                .acquire()
                .map(|(object, home)| (Entry::timeless(object), home))?,
            Some(limit) => self.instance_capped(limit)?,
        };
        Ok(OwnedPoolGuard {
            object: ManuallyDrop::new(entry.object),
            home,
            dies: entry.dies,
            pool: Arc::clone(self),
        })
    }

    /// [`prefill`](Pool::prefill) for a fallible factory: stops at the
    /// first error and returns it (objects made before it stay in the pool).
    ///
    /// ```
    /// use multiopen::Pool;
    /// let pool = Pool::try_builder(|| Ok::<_, std::io::Error>(0u8)).build();
    /// assert_eq!(pool.try_prefill(2)?, 2);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn try_prefill(&self, n: usize) -> Result<usize, E> {
        if let Some(limit) = &self.limit {
            return self.prefill_capped(limit, n);
        }
        let mut added = 0;
        while added < n && self.has_room() {
            // Counted as made only once placed (or dropped): until then
            // `stats` sees it neither made nor idle, rather than made and
            // not idle, which would pass for a reuse.
            let object = self.make(None)?;
            // The mutant counts the object made before it is placed: a
            // `stats` in between sees it made and not idle, a reuse that
            // never happened.
            let counted_early = mutant("pool::prefill_counts_made_early");
            if counted_early {
                bump(&self.rare.made_for_prefill);
            }
            let placed = match self.put_in_front(object, NO_HOME, 0) {
                Ok(()) => Ok(()),
                Err(object) => self.idle.push(Entry::timeless(object)),
            };
            match placed {
                Ok(()) => {
                    if !counted_early {
                        bump(&self.rare.made_for_prefill);
                    }
                    added += 1;
                }
                Err(entry) => {
                    // Returns filled the pool since the room check. The
                    // mutant trusts the check and loses track of the object.
                    // Dropped before made, as `stats` reads them.
                    if !mutant("pool::prefill_assumes_room") {
                        bump(&self.rare.full_on_prefill);
                    }
                    if !counted_early {
                        bump(&self.rare.made_for_prefill);
                    }
                    take::drop_object(entry.object);
                    break;
                }
            }
        }
        Ok(added)
    }

    /// Idle objects in the pool now (at most [`max_size`](Self::max_size)
    /// unless unbounded).
    ///
    /// ```
    /// use multiopen::Pool;
    /// let pool = Pool::new(|| 0u8);
    /// drop(pool.instance());
    /// assert_eq!(pool.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        let in_front = self
            .front
            .iter()
            .filter(|slot| slot.state() & FULL != 0)
            .count();
        in_front + self.idle.len()
    }

    /// Is no object idle?
    ///
    /// ```
    /// use multiopen::Pool;
    /// let pool = Pool::new(|| 0u8);
    /// assert!(pool.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most idle objects kept; 0 means no upper limit.
    ///
    /// ```
    /// use multiopen::Pool;
    /// assert_eq!(Pool::with_max_size(|| 0u8, 16).max_size(), 16);
    /// assert_eq!(Pool::with_max_size(|| 0u8, 0).max_size(), 0);
    /// ```
    pub fn max_size(&self) -> usize {
        self.max_size
    }

    /// Drops the objects idle now and returns how many. Objects out in
    /// guards are untouched and come back as usual; objects returned while
    /// `clear` runs may stay.
    ///
    /// If an object's `Drop` panics, the panic propagates and the objects
    /// not yet dropped stay idle (the counts stay right); called while the
    /// thread unwinds (from a destructor), such panics are caught and every
    /// idle object is dropped.
    ///
    /// ```
    /// use multiopen::Pool;
    /// let pool = Pool::new(|| 0u8);
    /// pool.prefill(3);
    /// assert_eq!(pool.clear(), 3);
    /// assert!(pool.is_empty());
    /// assert_eq!(pool.stats().cleared, 3);
    /// ```
    pub fn clear(&self) -> usize {
        if let Some(limit) = &self.limit {
            return self.drain(limit, false);
        }
        let mut dropped = 0;
        for slot in self.front.iter() {
            if let Some(object) = slot.take() {
                bump(&self.rare.cleared);
                take::drop_object(object);
                dropped += 1;
            }
        }
        // At most the number idle now, so returns cannot keep us looping.
        for _ in 0..self.idle.len() {
            let Some(entry) = self.idle.pop() else { break };
            bump(&self.rare.cleared);
            take::drop_object(entry.object);
            dropped += 1;
        }
        dropped
    }

    fn has_room(&self) -> bool {
        self.max_size == 0 || self.len() < self.max_size
    }
}

/// A pool of `T::default()` objects, keeping at most
/// [`DEFAULT_MAX_SIZE`](Pool::DEFAULT_MAX_SIZE) idle: the same as
/// `Pool::new(T::default)`.
///
/// ```
/// use multiopen::Pool;
///
/// let pool: Pool<Vec<u8>> = Pool::default();
/// pool.instance().extend_from_slice(b"abc"); // no reset hook: kept as is
/// assert_eq!(pool.instance().len(), 3);
/// assert_eq!(pool.max_size(), Pool::<Vec<u8>>::DEFAULT_MAX_SIZE);
/// ```
impl<T: Default + 'static> Default for Pool<T> {
    fn default() -> Self {
        Self::new(T::default)
    }
}

/// Drops the idle objects, the factory and the reset hook one by one, so a
/// panic from one `Drop` (user code) cannot abort the process: each is
/// caught, and the rest are still dropped (left to the drop glue, they
/// would be dropped while that panic unwinds, and a second panic there
/// aborts). Afterwards the first panic is resumed, unless the thread is
/// already unwinding; every other payload is disposed of with
/// `unwind::drop_payload`.
impl<T, E> Drop for Pool<T, E> {
    fn drop(&mut self) {
        let mut first = None;
        let mut run = |f: &mut dyn FnMut()| {
            if let Err(payload) = catch_unwind(AssertUnwindSafe(f)) {
                match first {
                    None => first = Some(payload),
                    Some(_) => unwind::drop_payload(payload),
                }
            }
        };
        for slot in self.front.iter() {
            run(&mut || drop(slot.take()));
        }
        // `&mut self`: no other thread pushes, so this ends.
        while let Some(object) = self.idle.pop() {
            let mut object = Some(object);
            run(&mut || drop(object.take()));
        }
        let reset = &mut self.reset;
        run(&mut || drop(reset.take()));
        let is_valid = &mut self.is_valid;
        run(&mut || drop(is_valid.take()));
        let has_broken = &mut self.has_broken;
        run(&mut || drop(has_broken.take()));
        let factory = &mut self.factory;
        // SAFETY: the factory is dropped here once and never used again:
        // this is the pool's `Drop`, and the drop glue skips `ManuallyDrop`.
        run(&mut || unsafe { ManuallyDrop::drop(factory) });
        if let Some(payload) = first {
            if std::thread::panicking() {
                unwind::drop_payload(payload);
            } else {
                std::panic::resume_unwind(payload);
            }
        }
    }
}

impl<T, E> fmt::Debug for Pool<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("max_size", &self.max_size())
            .field("max_live", &self.max_live())
            .field("name", &self.name())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}
