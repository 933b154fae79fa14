//! Building a pool: the factory and reset-hook types, [`PoolBuilder`], and
//! [`Pool::builder`] / [`Pool::try_builder`], which make one.

use std::convert::Infallible;
use std::fmt;
use std::mem::ManuallyDrop;
use std::time::Duration;

use crossbeam_utils::CachePadded;

use super::lifetime::Lifetimes;
use super::limit::{Limit, MAX_LIVE};
use super::slots::{Slot, MAX_FRONT};
use super::stats::{RareCounts, Stripes};
use super::Pool;
use crate::sync::{mutant, ObjectQueue};

/// What makes an object; a fallible factory's error reaches the caller.
pub(super) type Factory<T, E> = Box<dyn Fn() -> Result<T, E> + Send + Sync>;
/// What cleans an object before it goes back.
pub(super) type Reset<T> = Box<dyn Fn(&mut T) + Send + Sync>;
/// A validation hook: `is_valid` (true: hand it out) or `has_broken`
/// (true: drop it).
pub(super) type Check<T> = Box<dyn Fn(&mut T) -> bool + Send + Sync>;

/// Builds a [`Pool`]: maximum size, reset hook. Made by [`Pool::builder`]
/// (plain factory) or [`Pool::try_builder`] (fallible factory).
///
/// ```
/// use multiopen::Pool;
///
/// let pool = Pool::builder(|| vec![0u8; 16])
///     .max_size(2)
///     .reset(|v| v.fill(0))
///     .build();
/// pool.instance()[0] = 9;
/// assert_eq!(pool.instance()[0], 0); // reset before it went back
/// assert_eq!(pool.max_size(), 2);
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct PoolBuilder<T, E = Infallible> {
    factory: Factory<T, E>,
    reset: Option<Reset<T>>,
    max_size: usize,
    max_live: usize,
    name: Option<String>,
    is_valid: Option<Check<T>>,
    has_broken: Option<Check<T>>,
    max_lifetime: Option<Duration>,
    idle_timeout: Option<Duration>,
}

impl<T, E> PoolBuilder<T, E> {
    /// At most `max_size` idle objects are kept; 0 means no upper limit.
    /// The default is [`Pool::DEFAULT_MAX_SIZE`] (4). Any value is
    /// accepted, and none allocates in proportion to itself up front:
    /// - up to [`Pool::PREALLOCATED_UP_TO`] (1024), the pool allocates its
    ///   `max_size` places at once (up to 16 front slots, each padded to a
    ///   cache line or more, the rest in crossbeam's `ArrayQueue`): the
    ///   fastest queue, as in the benchmarks;
    /// - above it, 16 front slots and a queue that allocates as it fills
    ///   (crossbeam's `SegQueue`, in blocks of 31 objects), kept to
    ///   `max_size` by a count of reserved places (a compare-and-swap per
    ///   push into the queue and a `fetch_sub` per pop: a little slower
    ///   than the `ArrayQueue`, and only when the front slots are busy);
    /// - 0, no limit: 16 front slots and a `SegQueue` that grows as
    ///   objects come back.
    ///
    /// The bound is exact either way.
    /// ```
    /// use multiopen::Pool;
    /// let unbounded = Pool::builder(|| 0u8).max_size(0).build();
    /// let held: Vec<_> = (0..10).map(|_| unbounded.instance()).collect();
    /// drop(held);
    /// assert_eq!(unbounded.len(), 10); // nothing dropped
    /// ```
    pub fn max_size(mut self, max_size: usize) -> Self {
        self.max_size = max_size;
        self
    }

    /// At most `max_live` objects alive at once: idle, handed out and
    /// being made all count (r2d2's and deadpool's `max_size`). At the cap
    /// [`get`](Pool::get) and [`instance`](Pool::instance) wait until an
    /// object comes back or room frees (an object dropped, taken, rejected
    /// or over [`max_size`](Self::max_size)); [`try_get`](Pool::try_get)
    /// and [`get_timeout`](Pool::get_timeout) bound the wait. See
    /// [the names beside the peers'](crate::pool#names-beside-the-peers)
    /// and the fairness bound there.
    ///
    /// `max_size` keeps its meaning beside it: the idle objects kept. With
    /// a cap below `max_size`, the cap bounds the idle objects too (they
    /// are alive); with `max_size` below the cap, objects coming back to a
    /// pool with `max_size` idle are dropped, which frees room.
    ///
    /// 0 means no cap (the default, as `max_size(0)` means no limit), and
    /// the pool's paths are exactly the uncapped ones; a value above
    /// [`Pool::MAX_LIVE`] (131,071) is taken as `MAX_LIVE`. Only a capped
    /// pool can be [closed](Pool::close) or [resized](Pool::resize).
    ///
    /// A guard forgotten with `mem::forget` keeps its object's room for
    /// ever (as a leaked `MutexGuard` keeps its lock): the pool then has
    /// one object fewer to hand out.
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiopen::{Pool, PoolError};
    ///
    /// let pool = Pool::builder(|| vec![0u8; 1024])
    ///     .max_size(8) // idle kept
    ///     .max_live(2) // alive at once
    ///     .build();
    /// let (a, b) = (pool.get()?, pool.get()?);
    /// let err = pool.get_timeout(Duration::from_millis(1)).unwrap_err();
    /// assert!(matches!(err, PoolError::TimedOut { live: 2, cap: 2, .. }));
    /// drop(a);
    /// assert!(pool.try_get().is_ok());
    /// # drop(b);
    /// # Ok::<(), PoolError>(())
    /// ```
    pub fn max_live(mut self, max_live: usize) -> Self {
        self.max_live = max_live;
        self
    }

    /// Runs `hook` on an idle object before it is handed out (r2d2's
    /// `is_valid` with `test_on_check_out`, deadpool's `recycle`): `false`
    /// rejects it. A rejected object is dropped, counted
    /// ([`PoolStats::rejected`](super::PoolStats::rejected)), and its room
    /// freed (waking a waiter if one is due); the call then takes another
    /// idle object or makes a new one, within the same wait. Objects the
    /// factory has just made are not checked.
    ///
    /// A pool with a validation hook counts its objects as a capped pool
    /// does: without [`max_live`](Self::max_live) its cap is
    /// [`Pool::MAX_LIVE`]. Cost: the hook, on the path of every reuse.
    /// If the hook panics, the object is dropped and counted as rejected,
    /// its room is given back (a waiter woken), and the panic reaches the
    /// caller of `get`/`instance`.
    ///
    /// ```
    /// use multiopen::Pool;
    /// // Connections that may have gone stale while idle.
    /// let pool = Pool::builder(|| String::from("open"))
    ///     .max_live(2)
    ///     .is_valid(|conn| conn == "open")
    ///     .build();
    /// pool.get()?.replace_range(.., "stale"); // goes back stale
    /// assert_eq!(*pool.get()?, "open"); // the stale one was dropped
    /// assert_eq!(pool.stats().rejected, 1);
    /// # Ok::<(), multiopen::PoolError>(())
    /// ```
    pub fn is_valid(mut self, hook: impl Fn(&mut T) -> bool + Send + Sync + 'static) -> Self {
        self.is_valid = Some(Box::new(hook));
        self
    }

    /// Runs `hook` on an object a guard gives back, before the reset
    /// hook (r2d2's `has_broken`): `true` drops it (counted as
    /// [`rejected`](super::PoolStats::rejected)) and frees its room,
    /// waking a waiter if one is due; the reset hook does not run on it.
    /// Not run on objects the pool drops anyway (closed, over a shrunk
    /// cap, full).
    ///
    /// As with [`is_valid`](Self::is_valid), the pool then counts its
    /// objects (cap [`Pool::MAX_LIVE`] unless set). If the hook panics,
    /// the object is dropped and counted as rejected, its room given back,
    /// and the panic propagates from the guard's drop (caught instead if
    /// the guard is dropped while the thread unwinds).
    ///
    /// ```
    /// use multiopen::Pool;
    /// let pool = Pool::builder(Vec::<u8>::new)
    ///     .max_live(1)
    ///     .has_broken(|buf| buf.len() > 1024) // grew too big: drop it
    ///     .build();
    /// pool.get()?.resize(4096, 0);
    /// assert_eq!((pool.len(), pool.stats().rejected), (0, 1));
    /// assert!(pool.try_get().is_ok()); // its room is free again
    /// # Ok::<(), multiopen::PoolError>(())
    /// ```
    pub fn has_broken(mut self, hook: impl Fn(&mut T) -> bool + Send + Sync + 'static) -> Self {
        self.has_broken = Some(Box::new(hook));
        self
    }

    /// Objects older than `lifetime` (since the factory made them) are
    /// dropped instead of being handed out or kept (r2d2's, bb8's and
    /// HikariCP's `max_lifetime`): checked at checkout and at return, with
    /// no thread of the pool's own, so an object past it that nobody asks
    /// for stays idle until a checkout, [`retain`](Pool::retain) or
    /// [`clear`](Pool::clear) finds it. Counted in
    /// [`PoolStats::expired`](super::PoolStats::expired); its room is
    /// freed (waking a waiter). `Duration::ZERO`: every object is used
    /// once.
    ///
    /// As with the validation hooks, the pool then counts its objects
    /// (cap [`Pool::MAX_LIVE`] unless [`max_live`](Self::max_live) is
    /// set). Cost: a clock read when an object is made, returned or
    /// reused (about 20 ns); nothing for a pool without it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiopen::Pool;
    /// let pool = Pool::builder(|| 0u8)
    ///     .max_live(2)
    ///     .max_lifetime(Duration::ZERO) // every object used once
    ///     .build();
    /// drop(pool.get()?);
    /// drop(pool.get()?);
    /// let s = pool.stats();
    /// assert_eq!((s.created, s.expired, s.reused), (2, 2, 0));
    /// # Ok::<(), multiopen::PoolError>(())
    /// ```
    pub fn max_lifetime(mut self, lifetime: Duration) -> Self {
        self.max_lifetime = Some(lifetime);
        self
    }

    /// Idle objects that sat in the pool longer than `timeout` are dropped
    /// at checkout instead of being handed out (r2d2's and HikariCP's
    /// `idle_timeout`), counted in
    /// [`PoolStats::expired`](super::PoolStats::expired), their room freed.
    /// Checked at checkout only (no thread of its own): use
    /// [`retain`](Pool::retain) to drop such objects on demand. Counting
    /// and cost as for [`max_lifetime`](Self::max_lifetime).
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiopen::Pool;
    /// let pool = Pool::builder(|| 0u8)
    ///     .idle_timeout(Duration::from_millis(1))
    ///     .build();
    /// drop(pool.instance());
    /// std::thread::sleep(Duration::from_millis(2)); // idle past the timeout
    /// drop(pool.instance()); // the idle one was dropped, a new one made
    /// assert_eq!((pool.stats().created, pool.stats().expired), (2, 1));
    /// ```
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// The pool's name, for error messages and `Debug` (`pool` unless
    /// set).
    ///
    /// ```
    /// use multiopen::Pool;
    /// let pool = Pool::builder(|| 0u8).max_live(1).name("parsers").build();
    /// pool.close()?;
    /// assert_eq!(pool.get().unwrap_err().to_string(), "parsers is closed");
    /// # Ok::<(), multiopen::PoolError>(())
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Runs `hook` on every object a guard gives back, before it goes into
    /// the pool (for example, clear a buffer). A pool that counts its
    /// objects (built with [`max_live`](Self::max_live) or a validation
    /// hook) runs it only on objects it will keep: not on a return it drops
    /// because it is closed, over a shrunk cap, already holds `max_size`
    /// idle objects, or [`has_broken`](Self::has_broken) says so (the count
    /// of idle objects is in the word the return reads anyway; a rare
    /// race can still drop a reset object, or keep one without a reset
    /// skipped). A plain pool keeps no such count and tries the return
    /// after the hook: if the pool then turns out to be full, the object
    /// is dropped all the same (checking first would cost every return a
    /// look at all the places). Not run on objects that
    /// are [taken](super::PoolGuard::take). If the hook panics, the object is
    /// dropped and the panic propagates from the guard's drop (caught
    /// instead if the guard is dropped while the thread unwinds, where a
    /// second panic would abort).
    ///
    /// ```
    /// use multiopen::Pool;
    /// let pool = Pool::builder(String::new).reset(|s| s.clear()).build();
    /// pool.instance().push_str("used");
    /// assert_eq!(*pool.instance(), "");
    /// ```
    pub fn reset(mut self, hook: impl Fn(&mut T) + Send + Sync + 'static) -> Self {
        self.reset = Some(Box::new(hook));
        self
    }

    /// The pool. No object is made until the first
    /// [`instance`](Pool::instance) or [`prefill`](Pool::prefill).
    ///
    /// ```
    /// use multiopen::Pool;
    /// let pool = Pool::builder(|| 1u8).build();
    /// assert_eq!((pool.len(), pool.stats().created), (0, 0));
    /// ```
    pub fn build(self) -> Pool<T, E> {
        // Front slots: all but one of the places, up to MAX_FRONT; the queue
        // has the rest (at least one). The mutant forgets that the slots
        // count against `max_size`.
        let (front, idle) = match self.max_size {
            0 => (MAX_FRONT, ObjectQueue::unbounded()),
            max_size => {
                let front = (max_size - 1).min(MAX_FRONT);
                let queue = if mutant("pool::front_outside_bound") {
                    max_size
                } else {
                    max_size - front
                };
                // Places allocated up front only up to a small bound: above
                // it, a queue that allocates as it grows (see `max_size`).
                if max_size <= Pool::<T, E>::PREALLOCATED_UP_TO {
                    (front, ObjectQueue::preallocated(queue))
                } else {
                    (front, ObjectQueue::growing(queue))
                }
            }
        };
        Pool {
            front: (0..front).map(|_| CachePadded::new(Slot::new())).collect(),
            idle,
            max_size: self.max_size,
            stripes: Stripes::new(),
            rare: CachePadded::new(RareCounts::new()),
            factory: ManuallyDrop::new(self.factory),
            reset: self.reset,
            // A validation hook needs the counted path (its rejections
            // free room); without a cap, the cap is MAX_LIVE.
            limit: match (
                self.max_live,
                self.is_valid.is_some()
                    || self.has_broken.is_some()
                    || self.max_lifetime.is_some()
                    || self.idle_timeout.is_some(),
            ) {
                (0, false) => None,
                (0, true) => Some(Box::new(Limit::new(MAX_LIVE))),
                (cap, _) => Some(Box::new(Limit::new(cap))),
            },
            is_valid: self.is_valid,
            has_broken: self.has_broken,
            lifetimes: (self.max_lifetime.is_some() || self.idle_timeout.is_some())
                .then(|| Lifetimes::new(self.max_lifetime, self.idle_timeout)),
            name: self.name.unwrap_or_else(|| "pool".to_owned()).into(),
        }
    }
}

impl<T, E> fmt::Debug for PoolBuilder<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("max_size", &self.max_size)
            .field("max_live", &self.max_live)
            .field("name", &self.name)
            .field("reset", &self.reset.is_some())
            .field("is_valid", &self.is_valid.is_some())
            .field("has_broken", &self.has_broken.is_some())
            .field("max_lifetime", &self.max_lifetime)
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl<T> Pool<T> {
    /// A [`PoolBuilder`] for a pool of objects made by `factory`.
    ///
    /// ```
    /// use multiopen::Pool;
    /// let pool = Pool::builder(|| 5u8).max_size(8).build();
    /// assert_eq!(*pool.instance(), 5);
    /// ```
    pub fn builder(factory: impl Fn() -> T + Send + Sync + 'static) -> PoolBuilder<T> {
        PoolBuilder {
            factory: Box::new(move || Ok(factory())),
            reset: None,
            max_size: Self::DEFAULT_MAX_SIZE,
            max_live: 0,
            name: None,
            is_valid: None,
            has_broken: None,
            max_lifetime: None,
            idle_timeout: None,
        }
    }
}

impl<T, E> Pool<T, E> {
    /// A [`PoolBuilder`] for a pool whose factory can fail: its error
    /// reaches the caller of [`try_instance`](Self::try_instance) (and of
    /// [`try_prefill`](Self::try_prefill)).
    ///
    /// ```
    /// use multiopen::Pool;
    ///
    /// let pool = Pool::try_builder(|| std::fs::File::open("/definitely/not/here"))
    ///     .max_size(2)
    ///     .build();
    /// assert!(pool.try_instance().is_err());
    /// assert_eq!(pool.stats().failed, 1);
    /// ```
    pub fn try_builder(
        factory: impl Fn() -> Result<T, E> + Send + Sync + 'static,
    ) -> PoolBuilder<T, E> {
        PoolBuilder {
            factory: Box::new(factory),
            reset: None,
            max_size: Self::DEFAULT_MAX_SIZE,
            max_live: 0,
            name: None,
            is_valid: None,
            has_broken: None,
            max_lifetime: None,
            idle_timeout: None,
        }
    }
}
