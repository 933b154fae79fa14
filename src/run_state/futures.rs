//! Awaiting a [`RunState`] from async code: [`wait_cancelled_async`],
//! [`wait_stopped_async`] and [`run_until_cancelled`], woken by the same
//! transitions that wake the blocking waits, with no runtime dependency
//! (only `core::future` and `std::task`).
//!
//! A future looks at the state word first (one Acquire load: a state
//! already cancelled costs that and a return). Only if it must wait does it
//! register its waker in the state's waker list (`sync/wakers.rs`, allocated
//! on the first registration) and set `ASYNC_WAITERS` in the word with an
//! RMW whose result it checks again: the protocol of that file, so a cancel,
//! a stop or a start racing the registration is never missed. A transition
//! wakes the futex sleepers if its RMW saw `WAITERS` and the registered
//! wakers if it saw `ASYNC_WAITERS` ([`wake_waiters`](RunState::wake_waiters)):
//! a cancel that only futures await makes no futex syscall, one that only
//! threads await takes no lock, and a transition nobody waits for is
//! unchanged. A future dropped while pending removes its waker.
//!
//! [`wait_cancelled_async`]: RunState::wait_cancelled_async
//! [`wait_stopped_async`]: RunState::wait_stopped_async
//! [`run_until_cancelled`]: RunState::run_until_cancelled

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use super::cancel::CancelReason;
use super::error::Cancelled;
use super::state::{ANY_CANCEL, ANY_WAITERS, ASYNC_WAITERS, WAITERS};
use super::{RunPhase, RunState};
use crate::sync::{fence, mutant, Ordering, WakerKey};

impl RunState {
    /// A future that completes once the state is cancelled (tokio-util's
    /// `CancellationToken::cancelled()`; the async twin of
    /// [`wait_cancelled`](Self::wait_cancelled)), with a [`Cancellation`]
    /// that gives the cancel's [`reason`](Cancellation::reason).
    ///
    /// Ready at its first poll if the state is cancelled; otherwise woken
    /// by the cancel (its own, a parent's, a deadline) in the cancelling
    /// thread. A cancel that comes while it waits is seen even if the run
    /// is stopped and started again before the task is polled.
    ///
    /// Costs: making it, nothing; a poll of a cancelled state, one atomic
    /// load; a poll that must wait, a short lock on the state's waker list
    /// (allocated on the first such poll) and one RMW of the state word.
    /// Dropping it while pending removes its waker. Never fails; a state
    /// that is never cancelled keeps it pending.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use multiopen::RunState;
    ///
    /// let server = Arc::new(RunState::new("server"));
    /// let canceller = {
    ///     let server = Arc::clone(&server);
    ///     std::thread::spawn(move || server.cancel_with("ctrl-c"))
    /// };
    /// let cancellation = futures::executor::block_on(server.wait_cancelled_async());
    /// assert_eq!(cancellation.reason().as_deref(), Some("ctrl-c"));
    /// canceller.join().unwrap();
    /// ```
    #[inline]
    pub fn wait_cancelled_async(&self) -> WaitCancelled<'_> {
        WaitCancelled {
            runstate: self,
            cleared: None,
            key: None,
        }
    }

    /// A future that completes once the run has ended (the async twin of
    /// [`wait_stopped`](Self::wait_stopped), a supervisor's join): at once
    /// if the state is stopped, else when the run in progress stops
    /// (cancelled or not); on a state never started, when a run has started
    /// and stopped. Its output is the [`RunPhase`] seen as it finished:
    /// [`Stopped`](RunPhase::Stopped) or [`Cancelled`](RunPhase::Cancelled)
    /// (how the run ended), or, if a new run began before the task was
    /// polled, that run's phase.
    ///
    /// Costs as [`wait_cancelled_async`](Self::wait_cancelled_async);
    /// woken by the stop in the stopping thread. A state never started waits
    /// for its first run to end, which may never come.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use multiopen::{RunPhase, RunState};
    ///
    /// let job = Arc::new(RunState::new("job"));
    /// let run = job.run_owned(); // started here, stopped in the thread
    /// let worker = std::thread::spawn(move || {
    ///     let rs = run.runstate();
    ///     rs.wait_cancelled(); // ... work until cancelled ...
    /// });
    /// job.cancel();
    /// let ended = futures::executor::block_on(job.wait_stopped_async());
    /// assert_eq!(ended, RunPhase::Cancelled);
    /// worker.join().unwrap();
    /// ```
    #[inline]
    pub fn wait_stopped_async(&self) -> WaitStopped<'_> {
        WaitStopped {
            runstate: self,
            since: None,
            key: None,
        }
    }

    /// Runs `future` until it completes (`Some(output)`) or the state is
    /// cancelled (`None`, and `future` is dropped with the combinator):
    /// tokio-util's `CancellationToken::run_until_cancelled`. Each poll
    /// looks at the cancel first, so a state cancelled already never polls
    /// `future`.
    ///
    /// Costs per poll: one atomic load, and while pending the waker update
    /// of [`wait_cancelled_async`](Self::wait_cancelled_async) (a short
    /// lock), then a poll of `future`. Never fails.
    ///
    /// ```
    /// use multiopen::RunState;
    ///
    /// let rs = RunState::new("job");
    /// let done = futures::executor::block_on(rs.run_until_cancelled(async { 6 * 7 }));
    /// assert_eq!(done, Some(42));
    ///
    /// rs.cancel();
    /// let never = futures::executor::block_on(rs.run_until_cancelled(std::future::pending::<()>()));
    /// assert_eq!(never, None);
    /// ```
    #[inline]
    pub fn run_until_cancelled<F: Future>(&self, future: F) -> RunUntilCancelled<'_, F> {
        RunUntilCancelled {
            cancelled: self.wait_cancelled_async(),
            future,
        }
    }

    /// The wake of a transition whose RMW replaced word `prev`: the
    /// threads asleep on the futex if `prev` shows `WAITERS`, the futures'
    /// wakers if it shows `ASYNC_WAITERS`, nothing (and no call) if neither.
    /// Every place that wakes the state word's waiters calls this, with the
    /// mutant that skips its wake (`no_wake`).
    #[inline]
    pub(super) fn wake_waiters(&self, prev: u32, no_wake: &str) {
        if prev & ANY_WAITERS != 0 && !mutant(no_wake) {
            self.wake_waiters_slow(prev);
        }
    }

    #[cold]
    #[inline(never)]
    fn wake_waiters_slow(&self, prev: u32) {
        // The bug of `futex_wake_by_async_bit`: the futex woken by the
        // futures' bit.
        let threads = if mutant("run_state::futex_wake_by_async_bit") {
            prev & ASYNC_WAITERS != 0
        } else {
            prev & WAITERS != 0
        };
        if threads {
            self.state.wake_all();
        }
        // The bug of `wake_by_thread_bit`: the registry woken only when a
        // thread sleeps too (the bits shared, as before they were split).
        let futures = if mutant("run_state::wake_by_thread_bit") {
            prev & WAITERS != 0
        } else {
            prev & ASYNC_WAITERS != 0
        };
        if !futures || mutant("run_state::wake_skips_wakers") {
            return;
        }
        // Acquire fence: our caller's RMW read a word whose `ASYNC_WAITERS`
        // came from (or follows, in the release sequence of) a future's
        // Release RMW made after it allocated the list; this makes the
        // pointer visible (see `sync/wakers.rs`).
        if !mutant("run_state::wake_no_fence") {
            fence(Ordering::Acquire);
        }
        if let Some(list) = self.wakers.get() {
            list.wake_all();
        }
    }

    /// The slow path of a poll: registers `waker` under `key`, then (for a
    /// new registration) sets `ASYNC_WAITERS` with an RMW and checks `done` on the
    /// word it read. `Ready(word)` if `done` holds (the registration
    /// removed), else `Pending` with the waker registered.
    fn poll_registered(
        &self,
        key: &mut Option<WakerKey>,
        waker: &Waker,
        done: impl Fn(u32) -> bool,
    ) -> Poll<u32> {
        let list = self.wakers.get_or_init();
        if mutant("run_state::async_check_then_register") {
            // The bug: look (and announce) first, publish the registration
            // after, with no look after it: a transition in between finds
            // the bit and an empty list.
            // AcqRel: as below.
            let s = self.state.fetch_or(ASYNC_WAITERS, Ordering::AcqRel);
            if done(s) {
                list.deregister(key);
                return Poll::Ready(s);
            }
            list.register(key, waker);
            return Poll::Pending;
        }
        let s = if list.register(key, waker) {
            // AcqRel: Release, so a transition that reads this word (or a
            // later one) and fences sees the list; Acquire, as the queries
            // load, so the caller sees what the transition published. An
            // RMW, not a load: it reads the latest word, after our
            // registration was published.
            self.state.fetch_or(ASYNC_WAITERS, Ordering::AcqRel)
        } else {
            // Registered all along (no wake since its RMW): the transition
            // that ends the wait will wake the updated waker. Acquire: as
            // the queries.
            self.state.load(Ordering::Acquire)
        };
        if done(s) {
            list.deregister(key);
            return Poll::Ready(s);
        }
        Poll::Pending
    }

    /// Removes a pending future's registration (its `Drop`): nothing to do
    /// (no call) for a future that never had to wait.
    #[inline]
    fn deregister(&self, key: &mut Option<WakerKey>) {
        if key.is_some() {
            self.deregister_slow(key);
        }
    }

    #[cold]
    fn deregister_slow(&self, key: &mut Option<WakerKey>) {
        if let Some(list) = self.wakers.get() {
            list.deregister(key);
        }
    }

    /// Futures awaiting this state now (their wakers registered): for tests
    /// that check that finished and dropped futures leave nothing behind.
    /// Not part of the API.
    #[doc(hidden)]
    pub fn registered_wakers(&self) -> usize {
        self.wakers.get().map_or(0, |list| list.len())
    }
}

/// How a [`WaitCancelled`] ended: the state was cancelled. A view of the
/// [`RunState`] (no copy): [`reason`](Self::reason) reads the cancel's
/// reason when asked.
///
/// ```
/// use multiopen::RunState;
///
/// let rs = RunState::new("fetcher");
/// rs.cancel_with("deadline exceeded");
/// let cancellation = futures::executor::block_on(rs.wait_cancelled_async());
/// assert_eq!(cancellation.reason().as_deref(), Some("deadline exceeded"));
/// assert_eq!(
///     cancellation.to_error().to_string(),
///     "fetcher was cancelled: deadline exceeded"
/// );
/// ```
#[derive(Clone, Copy)]
pub struct Cancellation<'a> {
    runstate: &'a RunState,
}

impl<'a> Cancellation<'a> {
    /// The cancel's reason ([`RunState::reason`], read now: a lock of the
    /// reasons); `None` for a plain [`cancel`](RunState::cancel), or if a
    /// new run has started since and cleared the cancel.
    pub fn reason(&self) -> Option<CancelReason> {
        self.runstate.reason()
    }

    /// The state that was cancelled.
    pub fn runstate(&self) -> &'a RunState {
        self.runstate
    }

    /// The [`Cancelled`] error that [`check`](RunState::check) returns now
    /// (its name and reason: one allocation and a lock), for `?`.
    pub fn to_error(&self) -> Cancelled {
        self.runstate.cancelled_error()
    }
}

impl fmt::Debug for Cancellation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cancellation")
            .field("name", &self.runstate.name())
            .field("reason", &self.reason())
            .finish()
    }
}

impl From<Cancellation<'_>> for Cancelled {
    fn from(cancellation: Cancellation<'_>) -> Self {
        cancellation.to_error()
    }
}

/// The future of [`RunState::wait_cancelled_async`]: completes with a
/// [`Cancellation`] once the state is cancelled.
///
/// ```
/// use multiopen::RunState;
///
/// let rs = RunState::new("job");
/// let wait: multiopen::WaitCancelled<'_> = rs.wait_cancelled_async();
/// rs.cancel();
/// futures::executor::block_on(wait);
/// ```
#[must_use = "futures do nothing unless awaited"]
pub struct WaitCancelled<'a> {
    runstate: &'a RunState,
    /// `RunState::cancels_cleared` when it first had to wait (`watch`):
    /// a cancel since then is reported even if a restart cleared it.
    cleared: Option<u64>,
    /// Its registration, while pending.
    key: Option<WakerKey>,
}

impl<'a> Future for WaitCancelled<'a> {
    type Output = Cancellation<'a>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let runstate = this.runstate;
        // Acquire: as `cancelled()`.
        if this.key.is_none() && runstate.state.load(Ordering::Acquire) & ANY_CANCEL != 0 {
            return Poll::Ready(Cancellation { runstate });
        }
        this.poll_slow(cx)
    }
}

impl<'a> WaitCancelled<'a> {
    #[cold]
    fn poll_slow(&mut self, cx: &mut Context<'_>) -> Poll<Cancellation<'a>> {
        let runstate = self.runstate;
        let cleared = match self.cleared {
            Some(cleared) if self.key.is_some() => {
                // Polled again after a wake: done already? Then no
                // re-registration (the wake took the entry: its removal is
                // one load, see `WakerList::deregister`). Acquire: as
                // `cancelled()`.
                let s = runstate.state.load(Ordering::Acquire);
                if runstate.cancelled_since(cleared, s) {
                    runstate.deregister(&mut self.key);
                    return Poll::Ready(Cancellation { runstate });
                }
                cleared
            }
            Some(cleared) => cleared,
            None => {
                let (cleared, s) = runstate.watch();
                if runstate.cancelled_since(cleared, s) {
                    return Poll::Ready(Cancellation { runstate });
                }
                *self.cleared.insert(cleared)
            }
        };
        runstate
            .poll_registered(&mut self.key, cx.waker(), |s| {
                runstate.cancelled_since(cleared, s)
            })
            .map(|_| Cancellation { runstate })
    }
}

impl Drop for WaitCancelled<'_> {
    #[inline]
    fn drop(&mut self) {
        self.runstate.deregister(&mut self.key);
    }
}

impl fmt::Debug for WaitCancelled<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitCancelled")
            .field("name", &self.runstate.name())
            .field("registered", &self.key.is_some())
            .finish()
    }
}

/// The future of [`RunState::wait_stopped_async`]: completes with the
/// [`RunPhase`] it saw once the run has ended.
///
/// ```
/// use multiopen::{RunPhase, RunState};
///
/// let rs = RunState::new("job");
/// rs.start()?;
/// let wait: multiopen::WaitStopped<'_> = rs.wait_stopped_async();
/// rs.stop()?;
/// assert_eq!(futures::executor::block_on(wait), RunPhase::Stopped);
/// # Ok::<(), multiopen::RunStateError>(())
/// ```
#[must_use = "futures do nothing unless awaited"]
pub struct WaitStopped<'a> {
    runstate: &'a RunState,
    /// The run it waits for (see `RunState::stop_watch`), once polled.
    since: Option<(u64, u64)>,
    /// Its registration, while pending.
    key: Option<WakerKey>,
}

impl Future for WaitStopped<'_> {
    type Output = RunPhase;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<RunPhase> {
        let this = self.get_mut();
        let runstate = this.runstate;
        const RESTART: &str = "run_state::wait_stopped_async_misses_restart";
        let (since, s) = match this.since {
            // Acquire: pairs with the stop's Release publish, so the task
            // sees what the run did.
            Some(since) => (since, runstate.state.load(Ordering::Acquire)),
            None => {
                let (since, s) = runstate.stop_watch();
                (*this.since.insert(since), s)
            }
        };
        if runstate.stop_ended(s, since, RESTART) {
            runstate.deregister(&mut this.key);
            return Poll::Ready(RunPhase::of(s));
        }
        runstate
            .poll_registered(&mut this.key, cx.waker(), |s| {
                runstate.stop_ended(s, since, RESTART)
            })
            .map(RunPhase::of)
    }
}

impl Drop for WaitStopped<'_> {
    #[inline]
    fn drop(&mut self) {
        self.runstate.deregister(&mut self.key);
    }
}

impl fmt::Debug for WaitStopped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitStopped")
            .field("name", &self.runstate.name())
            .field("registered", &self.key.is_some())
            .finish()
    }
}

/// The future of [`RunState::run_until_cancelled`]: `Some(output)` if the
/// inner future finished first, `None` if the state was cancelled first.
///
/// ```
/// use multiopen::RunState;
///
/// let rs = RunState::new("job");
/// let work = rs.run_until_cancelled(async { "done" });
/// assert_eq!(futures::executor::block_on(work), Some("done"));
/// ```
#[must_use = "futures do nothing unless awaited"]
pub struct RunUntilCancelled<'a, F> {
    cancelled: WaitCancelled<'a>,
    /// Pinned whenever `self` is (structural pinning; never moved out).
    future: F,
}

impl<F: Future> Future for RunUntilCancelled<'_, F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `future` is pinned structurally: it is never moved out of
        // `self` (no method hands it out by value, and there is no `Drop`
        // impl here that could move it), and `RunUntilCancelled` is `Unpin`
        // only if `F` is (auto trait). `cancelled` is `Unpin` and not pinned.
        let this = unsafe { self.get_unchecked_mut() };
        if Pin::new(&mut this.cancelled).poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        // SAFETY: see above.
        let future = unsafe { Pin::new_unchecked(&mut this.future) };
        future.poll(cx).map(Some)
    }
}

impl<F> fmt::Debug for RunUntilCancelled<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunUntilCancelled")
            .field("cancelled", &self.cancelled)
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn counting() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        (Arc::clone(&count), Waker::from(count))
    }

    fn poll<F: Future + Unpin>(future: &mut F, waker: &Waker) -> Poll<F::Output> {
        Pin::new(future).poll(&mut Context::from_waker(waker))
    }

    fn wakes(count: &Count) -> usize {
        count.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[test]
    fn cancel_wakes_a_pending_future_once_and_it_leaves_nothing() {
        let rs = RunState::new("job");
        let (count, waker) = counting();
        let mut wait = rs.wait_cancelled_async();
        assert!(poll(&mut wait, &waker).is_pending());
        assert!(poll(&mut wait, &waker).is_pending()); // an update, not a second entry
        assert_eq!(rs.registered_wakers(), 1);
        rs.cancel();
        assert_eq!(wakes(&count), 1);
        assert!(poll(&mut wait, &waker).is_ready());
        assert_eq!(rs.registered_wakers(), 0);
    }

    #[test]
    fn a_dropped_pending_future_deregisters() {
        let rs = RunState::new("job");
        let (count, waker) = counting();
        for _ in 0..100 {
            let mut wait = rs.wait_cancelled_async();
            assert!(poll(&mut wait, &waker).is_pending());
        }
        assert_eq!(rs.registered_wakers(), 0);
        rs.cancel();
        assert_eq!(wakes(&count), 0);
    }

    #[test]
    fn a_stop_wakes_cancel_waiters_which_register_again() {
        let rs = RunState::new("job");
        rs.start().unwrap();
        let (count, waker) = counting();
        let mut wait = rs.wait_cancelled_async();
        assert!(poll(&mut wait, &waker).is_pending());
        rs.stop().unwrap(); // clears WAITERS: must wake the list too
        assert_eq!(wakes(&count), 1);
        assert!(poll(&mut wait, &waker).is_pending());
        rs.cancel();
        assert_eq!(wakes(&count), 2);
        assert!(poll(&mut wait, &waker).is_ready());
    }

    #[test]
    fn a_cancel_cleared_by_a_restart_is_still_reported() {
        let rs = RunState::new("job");
        rs.start().unwrap();
        let (_count, waker) = counting();
        let mut wait = rs.wait_cancelled_async();
        assert!(poll(&mut wait, &waker).is_pending());
        rs.cancel();
        rs.stop().unwrap();
        rs.start().unwrap(); // clears the cancel
        assert!(!rs.cancelled());
        assert!(poll(&mut wait, &waker).is_ready());
    }

    #[test]
    fn resume_and_child_cancel_wake_the_futures() {
        let parent = RunState::new("parent");
        let child = parent.child("child");
        child.start().unwrap();
        child.pause().unwrap();
        let (count, waker) = counting();
        let mut wait = child.wait_cancelled_async();
        assert!(poll(&mut wait, &waker).is_pending());
        child.resume().unwrap(); // clears WAITERS
        assert_eq!(wakes(&count), 1);
        assert!(poll(&mut wait, &waker).is_pending());
        parent.cancel_with("parent says so");
        assert_eq!(wakes(&count), 2);
        match poll(&mut wait, &waker) {
            Poll::Ready(c) => assert_eq!(c.reason().as_deref(), Some("parent says so")),
            Poll::Pending => panic!("still pending after the parent's cancel"),
        }
    }

    #[test]
    fn wait_stopped_pending_then_stopped() {
        let rs = RunState::new("job");
        let (count, waker) = counting();
        let mut wait = rs.wait_stopped_async();
        assert!(poll(&mut wait, &waker).is_pending()); // never started
        rs.start().unwrap();
        assert_eq!(wakes(&count), 1); // the start cleared WAITERS
        assert!(poll(&mut wait, &waker).is_pending());
        rs.stop().unwrap();
        assert_eq!(poll(&mut wait, &waker), Poll::Ready(RunPhase::Stopped));
        assert_eq!(rs.registered_wakers(), 0);
    }
}
