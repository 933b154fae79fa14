//! Awaiting an object from async code: [`Pool::get_async`] and
//! [`Pool::get_owned_async`], the futures of deadpool's and bb8's `get`,
//! served by the same returns as the blocking [`get`](Pool::get) (one cap,
//! one state word, threads and tasks waiting side by side), with no
//! runtime dependency: only `core::future` and `std::task`.
//!
//! A poll makes the blocking `get`'s one compare-and-swap first; only if
//! no object is free to it does it register its waker in the pool's queue
//! of wakers (allocated on the first such poll) under a short lock, and
//! look again (see `limit/wait_async.rs`). A return wakes one waiter, a
//! thread or a task, and a task that was woken but is dropped before it
//! took the object passes the wake on.

use std::fmt;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::capped::Taken;
use super::error::PoolError;
use super::limit::{AsyncWait, Patience};
use super::{OwnedPoolGuard, Pool, PoolGuard};

impl<T, E> Pool<T, E> {
    /// A future of an object: the async twin of [`get`](Self::get)
    /// (deadpool's and bb8's `get().await`). An idle object, or a new one
    /// if the pool is under its cap, else it waits until an object comes
    /// back or room frees (an object dropped, taken, rejected or expired,
    /// or the cap [grown](Self::resize)). An uncapped pool is ready at the
    /// first poll (never pending).
    ///
    /// Waiting tasks and threads blocked in `get` share one queue of
    /// turns: each return wakes one of them (alternately a task and a
    /// thread when both wait), under the [fairness](crate::pool#fairness)
    /// rules of `get`. The factory, [`is_valid`](super::PoolBuilder::is_valid)
    /// and the lifetime checks run inside the poll that gets the object, on
    /// the executor's thread: keep them short, or use `get` on a blocking
    /// thread.
    ///
    /// No timeout of its own: wrap it in the runtime's
    /// (`tokio::time::timeout(d, pool.get_async())`); dropping it on
    /// time-out, or at any other time, is safe: it leaves the queue, and a
    /// wake it was sent goes on to another waiter. A woken future should be
    /// polled (or dropped) promptly: until it looks, the pool wakes nobody
    /// else (as for a woken thread; see the barge limit under Fairness).
    ///
    /// Costs: making it, nothing; a poll that gets an object, the one
    /// compare-and-swap of `get`; a poll that must wait, a short lock on
    /// the queue and one more compare-and-swap (and the returns it waits
    /// for take that lock to wake it). Errors: [`PoolError::Closed`] (also
    /// when the pool is closed while it waits: [`close`](Self::close)
    /// wakes every waiting future), [`PoolError::Factory`]. Polled again
    /// after it completed, it starts a new get.
    ///
    /// ```
    /// use multiopen::Pool;
    /// let pool = Pool::builder(|| vec![0u8; 16]).max_live(1).build();
    /// let held = pool.get()?;
    /// std::thread::scope(|s| {
    ///     let waiter = s.spawn(|| futures::executor::block_on(pool.get_async()).map(|v| v.len()));
    ///     drop(held); // wakes the waiting task with this object
    ///     assert_eq!(waiter.join().unwrap(), Ok(16));
    /// });
    /// # Ok::<(), multiopen::PoolError>(())
    /// ```
    #[inline]
    pub fn get_async(&self) -> GetFuture<'_, T, E> {
        GetFuture {
            pool: self,
            wait: AsyncWait::default(),
        }
    }

    /// [`get_async`](Self::get_async) with an owned guard (bb8's
    /// `get_owned`): the future and its guard hold an `Arc` of the pool, so
    /// both are `'static` (a spawned task can hold them).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use multiopen::Pool;
    /// let pool = Arc::new(Pool::builder(|| 5u8).max_live(1).build());
    /// let guard = futures::executor::block_on(pool.get_owned_async())?;
    /// assert_eq!(std::thread::spawn(move || *guard).join().unwrap(), 5);
    /// # Ok::<(), multiopen::PoolError>(())
    /// ```
    #[inline]
    pub fn get_owned_async(self: &Arc<Self>) -> GetOwnedFuture<T, E> {
        GetOwnedFuture {
            pool: Arc::clone(self),
            wait: AsyncWait::default(),
        }
    }

    /// One poll of either future: an object and its home slot, an error,
    /// or pending with the waker registered.
    fn poll_get(&self, wait: &mut AsyncWait, cx: &mut Context<'_>) -> Poll<Taken<T, E>> {
        let Some(limit) = &self.limit else {
            // Uncapped: never waits.
            return Poll::Ready(self.acquire_within(Patience::Never));
        };
        let home = self.home();
        loop {
            let token = match limit.poll_acquire(wait, cx.waker()) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(token)) => token,
                Poll::Ready(Err(refused)) => {
                    return Poll::Ready(Err(self.refusal(limit, refused)));
                }
            };
            if let Some(taken) = self.redeem(limit, token, home) {
                return Poll::Ready(taken);
            }
            // An idle object expired or was rejected: another token.
        }
    }

    /// A dropped future's exit: leaves the queue, passing a wake on.
    fn cancel_get(&self, wait: &mut AsyncWait) {
        if wait.is_registered() {
            if let Some(limit) = &self.limit {
                limit.cancel_wait(wait);
            }
        }
    }

    /// Futures waiting for an object now (their wakers registered): for
    /// tests that check that finished and dropped futures leave nothing
    /// behind. Not part of the API.
    #[doc(hidden)]
    pub fn registered_get_wakers(&self) -> usize {
        self.limit
            .as_ref()
            .map_or(0, |limit| limit.futures_waiting())
    }
}

/// The future of [`Pool::get_async`]: a [`PoolGuard`], or why not.
///
/// ```
/// use multiopen::{GetFuture, Pool};
/// let pool = Pool::builder(|| 1u8).max_live(2).build();
/// let get: GetFuture<'_, u8> = pool.get_async();
/// assert_eq!(*futures::executor::block_on(get)?, 1);
/// # Ok::<(), multiopen::PoolError>(())
/// ```
#[must_use = "futures do nothing unless awaited"]
pub struct GetFuture<'a, T, E = std::convert::Infallible> {
    pool: &'a Pool<T, E>,
    wait: AsyncWait,
}

/// The future of [`Pool::get_owned_async`]: an [`OwnedPoolGuard`], or why
/// not.
///
/// ```
/// use std::sync::Arc;
/// use multiopen::{GetOwnedFuture, Pool};
/// let pool = Arc::new(Pool::builder(|| 1u8).max_live(2).build());
/// let get: GetOwnedFuture<u8> = pool.get_owned_async();
/// assert_eq!(*futures::executor::block_on(get)?, 1);
/// # Ok::<(), multiopen::PoolError>(())
/// ```
#[must_use = "futures do nothing unless awaited"]
pub struct GetOwnedFuture<T, E = std::convert::Infallible> {
    pool: Arc<Pool<T, E>>,
    wait: AsyncWait,
}

impl<'a, T, E> Future for GetFuture<'a, T, E> {
    type Output = Result<PoolGuard<'a, T, E>, PoolError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let pool = this.pool;
        pool.poll_get(&mut this.wait, cx).map(|taken| {
            taken.map(|(entry, home)| PoolGuard {
                object: ManuallyDrop::new(entry.object),
                home,
                dies: entry.dies,
                pool,
            })
        })
    }
}

impl<T, E> Future for GetOwnedFuture<T, E> {
    type Output = Result<OwnedPoolGuard<T, E>, PoolError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let pool = &this.pool;
        pool.poll_get(&mut this.wait, cx).map(|taken| {
            taken.map(|(entry, home)| OwnedPoolGuard {
                object: ManuallyDrop::new(entry.object),
                home,
                dies: entry.dies,
                pool: Arc::clone(pool),
            })
        })
    }
}

impl<T, E> Drop for GetFuture<'_, T, E> {
    #[inline]
    fn drop(&mut self) {
        self.pool.cancel_get(&mut self.wait);
    }
}

impl<T, E> Drop for GetOwnedFuture<T, E> {
    #[inline]
    fn drop(&mut self) {
        self.pool.cancel_get(&mut self.wait);
    }
}

impl<T, E> fmt::Debug for GetFuture<'_, T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetFuture")
            .field("pool", &self.pool.name())
            .field("registered", &self.wait.is_registered())
            .finish()
    }
}

impl<T, E> fmt::Debug for GetOwnedFuture<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetOwnedFuture")
            .field("pool", &self.pool.name())
            .field("registered", &self.wait.is_registered())
            .finish()
    }
}
