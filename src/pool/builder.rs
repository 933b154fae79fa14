//! Building a pool: the factory and reset-hook types, [`PoolBuilder`], and
//! [`Pool::builder`] / [`Pool::try_builder`], which make one.

use std::convert::Infallible;
use std::fmt;
use std::mem::ManuallyDrop;

use crossbeam_utils::CachePadded;

use super::slots::{Slot, MAX_FRONT};
use super::stats::{RareCounts, Stripes};
use super::Pool;
use crate::sync::{mutant, ObjectQueue};

/// What makes an object; a fallible factory's error reaches the caller.
pub(super) type Factory<T, E> = Box<dyn Fn() -> Result<T, E> + Send + Sync>;
/// What cleans an object before it goes back.
pub(super) type Reset<T> = Box<dyn Fn(&mut T) + Send + Sync>;

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
}

impl<T, E> PoolBuilder<T, E> {
    /// At most `max_size` idle objects are kept; 0 means no upper limit.
    /// The default is [`Pool::DEFAULT_MAX_SIZE`] (4). A bounded pool
    /// allocates its `max_size` places up front (up to 16 front slots,
    /// each padded to a cache line or more, the rest in crossbeam's
    /// `ArrayQueue`), so give the number of objects you mean to keep, and
    /// 0 for "as many as come back" (an unbounded pool allocates its 16
    /// front slots up front and its queue as it grows).
    ///
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

    /// Runs `hook` on every object a guard gives back, before it goes into
    /// the pool (for example, clear a buffer); if the pool then turns out to
    /// be full, the object is dropped all the same. Not run on objects that
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
        let (front, queue) = match self.max_size {
            0 => (MAX_FRONT, 0),
            max_size => {
                let front = (max_size - 1).min(MAX_FRONT);
                if mutant("pool::front_outside_bound") {
                    (front, max_size)
                } else {
                    (front, max_size - front)
                }
            }
        };
        Pool {
            front: (0..front).map(|_| CachePadded::new(Slot::new())).collect(),
            idle: ObjectQueue::new(queue),
            max_size: self.max_size,
            stripes: Stripes::new(),
            rare: CachePadded::new(RareCounts::new()),
            factory: ManuallyDrop::new(self.factory),
            reset: self.reset,
        }
    }
}

impl<T, E> fmt::Debug for PoolBuilder<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("max_size", &self.max_size)
            .field("reset", &self.reset.is_some())
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
        }
    }
}
