//! The connection-pool face of [`Pool`]: [`get`](Pool::get) and its
//! non-blocking and timed forms, [`close`](Pool::close),
//! [`resize`](Pool::resize), [`status`](Pool::status).
//!
//! # Names, beside the peers'
//!
//! | multiopen | r2d2 | deadpool | bb8 | meaning |
//! |---|---|---|---|---|
//! | [`PoolBuilder::max_live`] | `max_size` | `max_size` | `max_size` | objects alive at most (idle + handed out + being made) |
//! | [`PoolBuilder::max_size`] | `max_idle` | — | — | idle objects kept (the Python `cs.resources` meaning) |
//! | [`get`](Pool::get) | `get` (up to `connection_timeout`) | `get` (up to `timeouts.wait`) | `get` | wait for an object, for ever here |
//! | [`get_async`](Pool::get_async) | — | `get().await` | `get().await` | await an object (no timeout of its own: the runtime's) |
//! | [`get_owned_async`](Pool::get_owned_async) | — | — | `get_owned().await` | the same, with an owned guard |
//! | [`get_timeout`](Pool::get_timeout) | `get_timeout` | `timeout_get` | — | wait at most a `Duration` |
//! | [`get_deadline`](Pool::get_deadline) | — | — | — | wait until an `Instant` |
//! | [`try_get`](Pool::try_get) | `try_get` | `timeout_get` with a zero wait | — | never wait |
//! | [`instance`](Pool::instance) | — | — | — | the Python name: wait for ever, cannot fail |
//! | [`close`](Pool::close) / [`is_closed`](Pool::is_closed) | — | `close` / `is_closed` | — | refuse new gets, wake the waiters |
//! | [`resize`](Pool::resize) | — | `resize` | — | change the cap at run time |
//! | [`status`](Pool::status) | `state` | `status` | `state` | live, idle, handed out, waiting now |
//! | [`PoolGuard::take`] | — | `Object::take` | — | keep the object for good |
//!
//! # Fairness
//!
//! Running threads may take a returned object before a sleeping waiter
//! (barging, for throughput: see `BENCHMARKS.md`), and a return wakes at
//! most one sleeper at a time. Two bounds:
//!
//! - once a waiter has been woken, running threads take at most 1023
//!   objects before it has run and looked; then they queue behind it;
//! - a waiter that has waited more than 1 ms turns the pool to
//!   *hand-off*: new arrivals then take nothing while waiters are
//!   registered, they queue behind them, so each object that comes back
//!   goes to a registered waiter, until that waiter is served. It waits
//!   about 1 ms plus one hold time per waiter ahead of it, plus the time
//!   the scheduler takes to run it (the futex wakes sleepers in arrival
//!   order on Linux; other systems do not promise an order among
//!   sleepers).
//!
//! Futures ([`get_async`](Pool::get_async)) follow the same rules: a
//! poll that finds an object free takes it (a running task barges as a
//! running thread does), and the same two bounds hold. Waiting futures are
//! woken in the order they registered (FIFO among futures; a woken future
//! that finds its object taken keeps its place at the front); a due wake
//! goes alternately to a future and a thread when both wait. A waiting
//! future checks its wait against the 1 ms on every 4th time it is polled
//! only, so it turns the pool to hand-off at most 3 polls past 1 ms.
//!
//! Measured (`BENCHMARKS.md`, 8 threads on a cap of 2, 2 cores): the
//! least-served thread got 0.6–0.8 of the mean share in 50 ms rounds
//! (r2d2: 0.35–0.55). [`PoolStats::handoffs`](super::PoolStats::handoffs)
//! counts the waiters that starved.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::PoolError;
use super::limit::{Patience, MAX_LIVE};
use super::{OwnedPoolGuard, Pool, PoolGuard};
use std::mem::ManuallyDrop;

/// What a pool holds now: see [`Pool::status`].
///
/// ```
/// use multiopen::Pool;
/// let pool = Pool::builder(|| 0u8).max_live(3).build();
/// let _a = pool.get()?;
/// drop(pool.get()?);
/// let s = pool.status();
/// assert_eq!((s.live, s.idle, s.out, s.waiting, s.cap), (2, 1, 1, 0, Some(3)));
/// # Ok::<(), multiopen::PoolError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStatus {
    /// The cap ([`PoolBuilder::max_live`](super::PoolBuilder::max_live)),
    /// `None` for an uncapped pool.
    pub cap: Option<usize>,
    /// Objects alive (idle, handed out, being made); for an uncapped pool,
    /// `idle + out` from [`stats`](Pool::stats).
    pub live: usize,
    /// Objects idle, ready for reuse.
    pub idle: usize,
    /// Objects handed out (and being made).
    pub out: usize,
    /// Threads blocked in a `get` and futures of
    /// [`get_async`](Pool::get_async) registered, waiting for an object now
    /// (0 for an uncapped pool).
    pub waiting: usize,
    /// Is the pool closed?
    pub closed: bool,
}

impl<T, E> Pool<T, E> {
    /// The largest cap [`PoolBuilder::max_live`](super::PoolBuilder::max_live)
    /// and [`resize`](Self::resize) take: 131,071 (the cap's count has
    /// 17 bits of the pool's state word).
    ///
    /// ```
    /// use multiopen::Pool;
    /// assert_eq!(Pool::<u8>::MAX_LIVE, (1 << 17) - 1);
    /// ```
    pub const MAX_LIVE: usize = MAX_LIVE;

    /// The pool's name, for messages (`pool` unless
    /// [set](super::PoolBuilder::name)).
    ///
    /// ```
    /// use multiopen::Pool;
    /// assert_eq!(Pool::builder(|| 0u8).name("buffers").build().name(), "buffers");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cap on live objects, or `None` for an uncapped pool.
    ///
    /// ```
    /// use multiopen::Pool;
    /// assert_eq!(Pool::builder(|| 0u8).max_live(2).build().max_live(), Some(2));
    /// assert_eq!(Pool::new(|| 0u8).max_live(), None);
    /// ```
    pub fn max_live(&self) -> Option<usize> {
        self.limit.as_ref().map(|limit| limit.reading().cap)
    }

    /// An object: an idle one, or a new one if the pool is under its cap,
    /// else waits (for ever) until one comes back or room frees. An
    /// uncapped pool never waits (it is [`try_instance`](Self::try_instance)
    /// with a [`PoolError`]).
    ///
    /// Cost: one compare-and-swap on the pool's state word, then a take as
    /// in [`instance`](Self::instance); the return is a put and one more
    /// compare-and-swap (and a futex wake only when a thread sleeps and no
    /// wake is in flight). Errors: [`PoolError::Closed`] (also when the
    /// pool is closed while this call waits), [`PoolError::Factory`].
    ///
    /// ```
    /// use multiopen::Pool;
    /// let pool = Pool::builder(|| vec![0u8; 16]).max_live(2).build();
    /// let a = pool.get()?;
    /// let b = pool.get()?;
    /// std::thread::scope(|s| {
    ///     let waiter = s.spawn(|| pool.get().map(|v| v.len()));
    ///     drop(a); // wakes the waiter with this object
    ///     assert_eq!(waiter.join().unwrap(), Ok(16));
    /// });
    /// # drop(b);
    /// # Ok::<(), multiopen::PoolError>(())
    /// ```
    pub fn get(&self) -> Result<PoolGuard<'_, T, E>, PoolError<E>> {
        self.get_within(Patience::Forever)
    }

    /// An object without waiting: [`PoolError::Exhausted`] if none is idle
    /// and the pool is at its cap (or starving waiters are queued: a try
    /// does not take an object before them).
    ///
    /// ```
    /// use multiopen::{Pool, PoolError};
    /// let pool = Pool::builder(|| 0u8).max_live(1).build();
    /// let held = pool.try_get()?;
    /// assert!(matches!(pool.try_get(), Err(PoolError::Exhausted { live: 1, cap: 1, .. })));
    /// drop(held);
    /// assert!(pool.try_get().is_ok());
    /// # Ok::<(), PoolError>(())
    /// ```
    pub fn try_get(&self) -> Result<PoolGuard<'_, T, E>, PoolError<E>> {
        self.get_within(Patience::Never)
    }

    /// [`get`](Self::get), waiting at most `timeout`:
    /// [`PoolError::TimedOut`] (with how long it waited, and the live
    /// objects and cap then) if none came. `Duration::MAX` (or any timeout
    /// past what `Instant` can hold) waits for ever; a zero timeout is
    /// [`try_get`](Self::try_get). A positive timeout that runs out before
    /// the wait begins (the thread descheduled in between) is `TimedOut`,
    /// not `Exhausted`: the caller asked to wait.
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiopen::{Pool, PoolError};
    /// let pool = Pool::builder(|| 0u8).max_live(1).build();
    /// let _held = pool.get()?;
    /// match pool.get_timeout(Duration::from_millis(2)) {
    ///     Err(PoolError::TimedOut { waited, .. }) => assert!(waited >= Duration::from_millis(2)),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok::<(), PoolError>(())
    /// ```
    pub fn get_timeout(&self, timeout: Duration) -> Result<PoolGuard<'_, T, E>, PoolError<E>> {
        self.get_within(Patience::timeout(timeout))
    }

    /// [`get`](Self::get), waiting until `deadline` at most; a deadline
    /// already past is [`try_get`](Self::try_get).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use multiopen::Pool;
    /// let pool = Pool::builder(|| 0u8).max_live(1).build();
    /// let deadline = Instant::now() + Duration::from_millis(50);
    /// assert!(pool.get_deadline(deadline).is_ok());
    /// ```
    pub fn get_deadline(&self, deadline: Instant) -> Result<PoolGuard<'_, T, E>, PoolError<E>> {
        self.get_within(Patience::deadline(deadline))
    }

    /// [`get`](Self::get) with an owned guard (see
    /// [`instance_owned`](Pool::instance_owned)).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use multiopen::Pool;
    /// let pool = Arc::new(Pool::builder(|| 5u8).max_live(1).build());
    /// let guard = pool.get_owned()?;
    /// assert_eq!(std::thread::spawn(move || *guard).join().unwrap(), 5);
    /// # Ok::<(), multiopen::PoolError>(())
    /// ```
    pub fn get_owned(self: &Arc<Self>) -> Result<OwnedPoolGuard<T, E>, PoolError<E>> {
        self.get_owned_within(Patience::Forever)
    }

    /// [`get_timeout`](Self::get_timeout) with an owned guard.
    ///
    /// ```
    /// use std::{sync::Arc, time::Duration};
    /// use multiopen::Pool;
    /// let pool = Arc::new(Pool::builder(|| 5u8).max_live(1).build());
    /// let _held = pool.get_timeout_owned(Duration::ZERO)?;
    /// assert!(pool.get_timeout_owned(Duration::ZERO).is_err());
    /// # Ok::<(), multiopen::PoolError>(())
    /// ```
    pub fn get_timeout_owned(
        self: &Arc<Self>,
        timeout: Duration,
    ) -> Result<OwnedPoolGuard<T, E>, PoolError<E>> {
        self.get_owned_within(Patience::timeout(timeout))
    }

    fn get_within(&self, patience: Patience) -> Result<PoolGuard<'_, T, E>, PoolError<E>> {
        let (entry, home) = self.acquire_within(patience)?;
        Ok(PoolGuard {
            object: ManuallyDrop::new(entry.object),
            home,
            dies: entry.dies,
            pool: self,
        })
    }

    fn get_owned_within(
        self: &Arc<Self>,
        patience: Patience,
    ) -> Result<OwnedPoolGuard<T, E>, PoolError<E>> {
        let (entry, home) = self.acquire_within(patience)?;
        Ok(OwnedPoolGuard {
            object: ManuallyDrop::new(entry.object),
            home,
            dies: entry.dies,
            pool: Arc::clone(self),
        })
    }

    /// Closes a capped pool: every later `get` (and every one waiting now,
    /// woken at once) returns [`PoolError::Closed`], the idle objects are
    /// dropped, and objects handed out are dropped when they come back.
    /// [`instance`](Self::instance), the Python API, cannot return an
    /// error, and the cap still holds after a close: on a closed pool it
    /// waits for room (the objects handed out free theirs as they come
    /// back and are dropped), then makes a fresh object, counted, that is
    /// dropped on return. Use `get` to be told the pool is closed.
    ///
    /// Errors: [`PoolError::Closed`] if it was closed already (nothing
    /// more happens), [`PoolError::Uncapped`] on a plain pool (built
    /// without [`max_live`](super::PoolBuilder::max_live), a validation
    /// hook or a lifetime). Cost: one atomic
    /// operation and a futex wake of all waiters, then one drop per idle
    /// object.
    ///
    /// ```
    /// use multiopen::{Pool, PoolError};
    /// let pool = Pool::builder(|| 0u8).max_live(2).build();
    /// let out = pool.get()?;
    /// drop(pool.get()?); // one idle
    /// pool.close()?;
    /// assert!(pool.is_closed() && pool.is_empty());
    /// assert!(matches!(pool.get(), Err(PoolError::Closed { .. })));
    /// drop(out); // dropped, not kept
    /// assert_eq!(pool.status().live, 0);
    /// assert!(matches!(pool.close(), Err(PoolError::Closed { .. }))); // twice
    /// # Ok::<(), PoolError>(())
    /// ```
    pub fn close(&self) -> Result<(), PoolError<E>> {
        let Some(limit) = &self.limit else {
            return Err(self.uncapped("close"));
        };
        if !limit.close() {
            return Err(PoolError::Closed {
                name: self.name().to_owned(),
            });
        }
        self.drain(limit, false);
        Ok(())
    }

    /// Has [`close`](Self::close) been called? Always `false` for an
    /// uncapped pool. One atomic load.
    ///
    /// ```
    /// use multiopen::Pool;
    /// let pool = Pool::builder(|| 0u8).max_live(1).build();
    /// assert!(!pool.is_closed());
    /// pool.close()?;
    /// assert!(pool.is_closed());
    /// # Ok::<(), multiopen::PoolError>(())
    /// ```
    pub fn is_closed(&self) -> bool {
        self.limit.as_ref().is_some_and(|limit| limit.is_closed())
    }

    /// Sets the cap to `cap` and returns the old one. Growing wakes
    /// waiters for the new room; shrinking below the objects alive drops
    /// idle objects over the new cap now, and handed-out ones when they
    /// come back, until the pool is within it (meanwhile no `get` is
    /// served from them).
    ///
    /// Errors: [`PoolError::InvalidCap`] for 0 (every `get` would wait for
    /// ever: [`close`](Self::close) is the way to stop) or above
    /// [`MAX_LIVE`](Self::MAX_LIVE); [`PoolError::Closed`];
    /// [`PoolError::Uncapped`]. Cost: a lock taken by resizes only, one
    /// compare-and-swap, one drop per idle object over the cap.
    ///
    /// ```
    /// use multiopen::Pool;
    /// let pool = Pool::builder(|| 0u8).max_live(3).build();
    /// pool.prefill(3);
    /// assert_eq!(pool.resize(1)?, 3);
    /// assert_eq!((pool.status().live, pool.len()), (1, 1));
    /// assert!(pool.resize(0).is_err());
    /// # Ok::<(), multiopen::PoolError>(())
    /// ```
    pub fn resize(&self, cap: usize) -> Result<usize, PoolError<E>> {
        let Some(limit) = &self.limit else {
            return Err(self.uncapped("resize"));
        };
        if cap == 0 || cap > MAX_LIVE {
            return Err(PoolError::InvalidCap {
                name: self.name().to_owned(),
                cap,
            });
        }
        if limit.is_closed() {
            return Err(PoolError::Closed {
                name: self.name().to_owned(),
            });
        }
        let old = limit.resize(cap);
        self.drain(limit, true);
        Ok(old)
    }

    /// Under loom only, for the loom models: the waiting mode of a capped
    /// pool's state word (`None` uncapped), which must be clear at rest.
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn loom_mode(&self) -> Option<super::limit::LoomMode> {
        self.limit.as_ref().map(|limit| limit.mode())
    }

    /// Live, idle, handed-out and waiting counts now. Capped pool: one
    /// load of the state word, a consistent reading of one moment. Uncapped
    /// pool: from [`stats`](Self::stats) (and its error bound).
    ///
    /// ```
    /// use multiopen::Pool;
    /// let pool = Pool::builder(|| 0u8).max_live(4).build();
    /// let _g = pool.get()?;
    /// assert_eq!(pool.status().out, 1);
    /// # Ok::<(), multiopen::PoolError>(())
    /// ```
    pub fn status(&self) -> PoolStatus {
        match &self.limit {
            Some(limit) => {
                let now = limit.reading();
                PoolStatus {
                    cap: Some(now.cap),
                    live: now.live,
                    idle: now.idle,
                    out: now.live.saturating_sub(now.idle),
                    waiting: now.waiting,
                    closed: now.closed,
                }
            }
            None => {
                let stats = self.stats();
                PoolStatus {
                    cap: None,
                    live: stats.idle + stats.out,
                    idle: stats.idle,
                    out: stats.out,
                    waiting: 0,
                    closed: false,
                }
            }
        }
    }

    fn uncapped(&self, what: &'static str) -> PoolError<E> {
        PoolError::Uncapped {
            name: self.name().to_owned(),
            what,
        }
    }
}
