//! Awaiting a [`MultiOpen`]'s join from async code: [`join_async`], woken
//! by the same finalise that wakes the blocking [`join`], with no runtime
//! dependency (only `core::future` and `std::task`).
//!
//! A poll looks at the finalised count first (one Acquire load: a cycle
//! already finalised costs that and a return). Only if it must wait does it
//! register its waker in the object's join registry (`sync/wakers.rs`,
//! allocated on the first registration), set `ASYNC_JOIN_WAITERS` in the
//! join wake word with an RMW, and read the count again: the protocol of
//! that file, laid out for this word at the top of `state.rs`. The finalise
//! wakes the registry if its RMW saw that bit (and the futex if it saw
//! `JOIN_WAITERS`): a thread blocked in `join` and a task awaiting
//! `join_async` are released by the same final close.
//!
//! [`join_async`]: MultiOpen::join_async
//! [`join`]: MultiOpen::join

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::close::Caller;
use super::resource::Resource;
use super::state::ASYNC_JOIN_WAITERS;
use super::MultiOpen;
use crate::error::JoinError;
use crate::sync::{fence, is_busy, mutant, Ordering, WakerKey};
use crate::unwind;

impl<R: Resource> MultiOpen<R> {
    /// A future that completes once the current cycle is finalised: the
    /// async twin of [`join`](Self::join) (tokio-util's
    /// `TaskTracker::wait`), with the same result. The cycle it waits for is
    /// the current one at its first poll.
    ///
    /// Ready at its first poll if that cycle is finalised; otherwise woken by
    /// the final close (or, with finalise-later, the
    /// [`finalise`](Self::finalise) call), in the thread that makes it.
    /// As `join`, a poll that finds the object [lingering](Self::with_linger)
    /// ends the linger: with no opens held, the shutdown runs in that poll,
    /// on the executor's thread (a synchronous call: keep such shutdowns
    /// short, or join lingering objects from a blocking thread).
    ///
    /// Costs: making it, nothing; a poll of a finalised cycle, two atomic
    /// loads; a poll that must wait, a short lock on the object's join
    /// registry (allocated on the first such poll) and one RMW of the join
    /// word. Dropping it while pending removes its waker. No timeout of its
    /// own: wrap it in the runtime's (`tokio::time::timeout`); dropping it
    /// on time-out is safe.
    ///
    /// Errors, at the first poll: [`JoinError::NeverOpened`] (an object
    /// never opened; `Ok` if it is also sealed and idle, as `join`);
    /// [`JoinError::Reentrant`] if polled, while it must wait, from inside
    /// the object's own startup or shutdown in the thread running it. Never
    /// [`JoinError::TimedOut`]. Like joining one's own thread, awaiting it
    /// while the same task holds an open of the object waits forever.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use multiopen::MultiOpen;
    ///
    /// let mo = Arc::new(MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(())));
    /// let g = mo.open_owned()?;
    /// let closer = std::thread::spawn(move || drop(g)); // the final close
    /// futures::executor::block_on(mo.join_async())?;
    /// assert!(mo.closed());
    /// closer.join().unwrap();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn join_async(&self) -> JoinFuture<'_, R> {
        JoinFuture {
            mo: self,
            target: None,
            key: None,
        }
    }

    /// The finalise's wake of the join futures, after its RMW replaced a
    /// word with `ASYNC_JOIN_WAITERS`.
    #[cold]
    #[inline(never)]
    pub(super) fn wake_join_futures(&self) {
        // Acquire fence: our RMW read a word whose bit came from (or
        // follows, in the release sequence of) a future's Release RMW made
        // after it allocated the list; this makes the pointer visible (see
        // `sync/wakers.rs`).
        fence(Ordering::Acquire);
        if let Some(list) = self.join_wakers.get() {
            list.wake_all();
        }
    }

    /// Is cycle `target` finalised? Acquire: pairs with the finaliser's
    /// Release raise of the count, so the task sees what the shutdown did.
    fn finalised_through(&self, target: u64) -> bool {
        self.finalised_cycles.load(Ordering::Acquire) >= target
    }

    /// Join futures awaiting this object now (their wakers registered): for
    /// tests that check that finished and dropped futures leave nothing
    /// behind. Not part of the API.
    #[doc(hidden)]
    pub fn registered_join_wakers(&self) -> usize {
        self.join_wakers.get().map_or(0, |list| list.len())
    }
}

/// The future of [`MultiOpen::join_async`]: completes with `Ok(())` once
/// the cycle current at its first poll is finalised (or with the error of
/// [`join`](MultiOpen::join)).
///
/// ```
/// use multiopen::MultiOpen;
///
/// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
/// drop(mo.open()?);
/// let join: multiopen::JoinFuture<'_, _> = mo.join_async();
/// futures::executor::block_on(join)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "futures do nothing unless awaited"]
pub struct JoinFuture<'a, R: Resource> {
    mo: &'a MultiOpen<R>,
    /// The cycle to wait for, read at the first poll.
    target: Option<u64>,
    /// Its registration, while pending.
    key: Option<WakerKey>,
}

impl<R: Resource> Future for JoinFuture<'_, R> {
    type Output = Result<(), JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mo = this.mo;
        let target = match this.target {
            Some(target) => target,
            None => match mo.join_target() {
                Ok(Some(target)) => *this.target.insert(target),
                Ok(None) => return Poll::Ready(Ok(())),
                Err(e) => return Poll::Ready(Err(e)),
            },
        };
        loop {
            if mo.finalised_through(target) {
                this.deregister();
                return Poll::Ready(Ok(()));
            }
            // Lingering: end the linger here (the shutdown runs in this
            // poll and, unless finalise-later, finalises the cycle).
            if let Some(result) = mo.end_linger(Caller::None) {
                unwind::in_cleanup(|| drop(result));
                continue;
            }
            if is_busy(mo.addr()) {
                this.deregister();
                return Poll::Ready(Err(JoinError::Reentrant {
                    name: mo.name.to_string(),
                }));
            }
            let list = mo.join_wakers.get_or_init();
            if mutant("multi_open::join_async_check_then_register") {
                // The bug: announce and look first, publish the
                // registration after, with no look after it.
                // AcqRel: as below.
                mo.finalised.fetch_or(ASYNC_JOIN_WAITERS, Ordering::AcqRel);
                if mo.finalised_through(target) {
                    return Poll::Ready(Ok(()));
                }
                list.register(&mut this.key, cx.waker());
                return Poll::Pending;
            }
            if list.register(&mut this.key, cx.waker()) {
                // AcqRel: Release, so a finaliser whose bump reads this
                // word (or a later one) and fences sees the list; Acquire,
                // so if this reads the bump, the count read below sees the
                // raise made before it. An RMW, not a load: it reads the
                // latest word, after our registration was published.
                mo.finalised.fetch_or(ASYNC_JOIN_WAITERS, Ordering::AcqRel);
                // A close may have begun a linger without seeing our bit:
                // find it with an RMW and end it (see `linger.rs`).
                mo.end_linger_for_joiner();
            }
            // Registered (all along, for an update: no wake since its RMW,
            // so the finalise that ends the wait will wake the new waker).
            if mo.finalised_through(target) {
                this.deregister();
                return Poll::Ready(Ok(()));
            }
            return Poll::Pending;
        }
    }
}

impl<R: Resource> JoinFuture<'_, R> {
    /// Removes its registration, if any (no call for a future that never
    /// had to wait).
    #[inline]
    fn deregister(&mut self) {
        if self.key.is_some() {
            if let Some(list) = self.mo.join_wakers.get() {
                list.deregister(&mut self.key);
            }
        }
    }
}

impl<R: Resource> Drop for JoinFuture<'_, R> {
    #[inline]
    fn drop(&mut self) {
        self.deregister();
    }
}

impl<R: Resource> fmt::Debug for JoinFuture<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinFuture")
            .field("name", &self.mo.name)
            .field("target", &self.target)
            .field("registered", &self.key.is_some())
            .finish()
    }
}
