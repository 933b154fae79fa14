//! Opening a [`MultiOpen`] from async code: [`open_async`] and
//! [`open_owned_async`], futures of the same results as [`open`] and
//! [`open_owned`], with no runtime dependency (only `core::future` and
//! `std::task`).
//!
//! A poll makes the open's one `fetch_add`, as `open` does: on an open
//! object that is the whole cost, and the future is ready at its first
//! poll. Only where `open` would sleep (another thread runs startup or
//! shutdown) does the future wait: it keeps its increment in the count (a
//! pending open future is an opener in flight, as a sleeping thread is),
//! registers its waker in the object's open registry (`sync/wakers.rs`,
//! allocated on the first registration), sets `ASYNC_OPEN_WAITERS` in the
//! state word with an RMW and looks at the word that RMW returns: the
//! protocol of that file, laid out for this word at the top of `state.rs`.
//! The phase's end wakes the registry if its RMW saw that bit (and the
//! futex if it saw `WAITERS`): threads blocked in `open` and tasks awaiting
//! `open_async` are released by the same transition.
//!
//! The startup and shutdown stay synchronous: they run where `open` and
//! `close` would run them, which for a future is inside a poll (see
//! [`open_async`] for where, and for the remedy when a startup is slow).
//!
//! [`open_async`]: MultiOpen::open_async
//! [`open_owned_async`]: MultiOpen::open_owned_async
//! [`open`]: MultiOpen::open
//! [`open_owned`]: MultiOpen::open_owned

use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::guard::{OpenGuard, OwnedOpenGuard};
use super::resource::Resource;
use super::state::{
    ASYNC_OPEN_WAITERS, COUNT_LIMIT, COUNT_MASK, FAST_OPEN_MASK, IDLE, LINGERING, OPEN, PHASE_MASK,
    SEALED, SHUTTING_DOWN, STARTING,
};
use super::MultiOpen;
use crate::error::OpenError;
use crate::sync::{fence, is_busy, mutant, ordering_unless, Ordering, WakerKey};

/// Where an open future is in its open: the increment it holds and its
/// waker's registration. Both are empty before the first poll and after
/// completion (so dropping such a future touches nothing).
#[derive(Debug, Default)]
struct Opening {
    /// Our increment is in the count: the open is registered but not yet
    /// granted (we wait for another thread's startup or shutdown).
    counted: bool,
    /// Our waker's registration in `open_wakers`, while we wait.
    key: Option<WakerKey>,
}

/// Is `state` (read by the future's RMW) one to wait in: another's
/// startup or shutdown, not sealed?
#[inline]
fn another_phase(state: u32) -> bool {
    state & SEALED == 0 && matches!(state & PHASE_MASK, STARTING | SHUTTING_DOWN)
}

impl<R: Resource> MultiOpen<R> {
    /// A future of [`open`](Self::open): completes with the same result,
    /// an [`OpenGuard`] once the handle is up. Nothing happens until its
    /// first poll, which makes the open's one `fetch_add`.
    ///
    /// Where it waits: only where `open` would sleep, behind another
    /// thread's (or task's) startup or shutdown; it is then woken by the
    /// end of that phase, in the thread that ends it, together with the
    /// threads blocked in `open`. While pending it counts as an opener in
    /// flight ([`open_count`](Self::open_count) includes it, and its
    /// increment keeps a reopened object up for it, as a sleeping thread's
    /// does).
    ///
    /// Where the startup runs: the startup and shutdown stay synchronous.
    /// The poll that finds the object idle (the first open of a cycle, or
    /// after a shutdown it waited for) runs the startup *in that poll*, on
    /// the executor's thread that polls the task: a slow startup blocks
    /// that worker thread for its whole length (and, on a current-thread
    /// runtime, every task). Likewise the guard's drop that is the final
    /// close runs the shutdown in the task that drops it. Where the
    /// startup is slow (a connection, a file to load), make the first open
    /// on a blocking thread, e.g. tokio's `spawn_blocking` around
    /// [`open_owned`](Self::open_owned) (below); the opens awaited while
    /// it runs are woken when it ends and cost no thread.
    ///
    /// Costs: on an open object, the same one `fetch_add` as `open` (no
    /// lock, no wake call, no registry); a poll that must wait, a short
    /// lock on the object's open registry (allocated on the first such
    /// poll) and one RMW of the state word; a later poll while still
    /// waiting, one load and, if the waker changed, the lock again.
    ///
    /// No timeout of its own: wrap it in the runtime's
    /// (`tokio::time::timeout(d, mo.open_async())`). Dropping the future is
    /// the cancel: a pending one removes its waker and takes its increment
    /// back with an ordinary close, so it leaves no trace in the count. If
    /// every other open closed meanwhile that take-back is the final close
    /// and runs the shutdown in the dropping thread, its error going to
    /// the [shutdown-error hook](Self::with_on_shutdown_error), as for a
    /// timed-out [`open_timeout`](Self::open_timeout).
    ///
    /// Errors: those of `open`. [`OpenError::Sealed`] also for a future
    /// pending when [`seal`](Self::seal) is called: the seal wakes it and
    /// its next poll refuses. [`OpenError::Reentrant`] if polled, while it
    /// must wait, inside the object's own startup or shutdown in the thread
    /// running it. Never [`OpenError::TimedOut`].
    ///
    /// Polled again after it completed, it opens again (a new open: a new
    /// guard, or error); a future is normally not polled after that.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use multiopen::MultiOpen;
    ///
    /// let db = Arc::new(MultiOpen::from_fns(|| Ok::<_, std::io::Error>("conn"), |_| Ok(())));
    /// futures::executor::block_on(async {
    ///     let conn = db.open_async().await?; // idle: the startup runs in this poll
    ///     assert_eq!(*conn, "conn");
    ///     let again = db.open_async().await?; // open: one fetch_add
    ///     assert_eq!(db.open_count(), 2);
    ///     drop((conn, again)); // the final close: shutdown runs here
    ///     Ok::<(), Box<dyn std::error::Error>>(())
    /// })?;
    /// assert!(db.closed());
    ///
    /// // A slow startup kept off the runtime's worker threads: the first open
    /// // on a blocking thread, the others awaited.
    /// let rt = tokio::runtime::Runtime::new()?;
    /// rt.block_on(async {
    ///     let first = {
    ///         let db = Arc::clone(&db);
    ///         tokio::task::spawn_blocking(move || db.open_owned())
    ///     };
    ///     let other = db.open_async().await?; // waits for that startup if it began
    ///     let first = first.await??;
    ///     assert_eq!((*first, *other), ("conn", "conn"));
    ///     Ok::<(), Box<dyn std::error::Error>>(())
    /// })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    #[inline]
    pub fn open_async(&self) -> OpenFuture<'_, R> {
        OpenFuture {
            mo: self,
            opened_at: Location::caller(),
            opening: Opening::default(),
        }
    }

    /// [`open_async`](Self::open_async) for an `Arc<MultiOpen>`: a
    /// `'static` future of [`open_owned`](Self::open_owned)'s result, an
    /// [`OwnedOpenGuard`] that can move into another task or thread. Same
    /// cost, waits, cancelling and errors; making it clones the `Arc`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use multiopen::MultiOpen;
    ///
    /// let db = Arc::new(MultiOpen::from_fns(|| Ok::<_, std::io::Error>(7), |_| Ok(())));
    /// let rt = tokio::runtime::Runtime::new()?;
    /// let value = rt.block_on(async {
    ///     let open = db.open_owned_async(); // 'static: it can be spawned
    ///     tokio::spawn(async move { open.await.map(|g| *g) }).await
    /// })??;
    /// assert_eq!(value, 7);
    /// assert!(db.closed());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    #[inline]
    pub fn open_owned_async(self: &Arc<Self>) -> OwnedOpenFuture<R> {
        OwnedOpenFuture {
            mo: Arc::clone(self),
            opened_at: Location::caller(),
            opening: Opening::default(),
        }
    }

    /// One poll of an open future: `Ready(Ok)` once the open is granted
    /// (our increment is then the guard's).
    #[inline]
    fn poll_open(
        &self,
        opening: &mut Opening,
        opened_at: &'static Location<'static>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), OpenError<R::Error>>> {
        if opening.counted {
            // A later poll (woken, or spurious). Acquire: the phase may now
            // be OPEN, published by the starter's Release.
            let state = self.state.load(Ordering::Acquire);
            return self.poll_open_slow(state, opening, opened_at, cx);
        }
        // The first poll: `acquire`'s fast path, the same one RMW.
        // Acquire: pairs with the Release that published OPEN.
        let prev = self.state.fetch_add(
            1,
            ordering_unless("multi_open::open_relaxed", Ordering::Acquire),
        );
        if prev & FAST_OPEN_MASK == OPEN {
            return Poll::Ready(Ok(()));
        }
        self.poll_open_first_slow(prev, opening, opened_at, cx)
    }

    /// The first poll found the object not simply open: as
    /// `acquire_slow_within`'s entry, then the waiting poll.
    #[cold]
    fn poll_open_first_slow(
        &self,
        prev: u32,
        opening: &mut Opening,
        opened_at: &'static Location<'static>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), OpenError<R::Error>>> {
        if prev & COUNT_MASK >= COUNT_LIMIT {
            self.back_out_at(opened_at);
            return Poll::Ready(Err(OpenError::TooManyOpens {
                name: self.name.to_string(),
            }));
        }
        opening.counted = true;
        self.poll_open_slow(prev + 1, opening, opened_at, cx)
    }

    /// The slow path of a poll, from the word `state` (our increment in
    /// it): the branches of `acquire_slow_within`, with "register and
    /// return `Pending`" where that sleeps. Every return but `Pending`
    /// leaves `opening` empty.
    #[cold]
    fn poll_open_slow(
        &self,
        mut state: u32,
        opening: &mut Opening,
        opened_at: &'static Location<'static>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), OpenError<R::Error>>> {
        loop {
            // Sealed: refused (found by our increment, or after a wake from
            // `seal` or a phase's end); before every other branch, as in
            // `acquire_slow_within`.
            if state & SEALED != 0 {
                self.end_opening(opening);
                self.back_out_at(opened_at);
                return Poll::Ready(Err(OpenError::Sealed {
                    name: self.name().to_owned(),
                }));
            }
            match state & PHASE_MASK {
                // From an Acquire operation: the handle is visible, and our
                // increment keeps it up.
                OPEN => {
                    if state & LINGERING != 0 {
                        // Relaxed: as in `acquire_slow_within`.
                        self.state.fetch_and(!LINGERING, Ordering::Relaxed);
                    }
                    self.end_opening(opening);
                    return Poll::Ready(Ok(()));
                }
                IDLE => {
                    // Acquire: as in `acquire_slow_within`.
                    match self.state.compare_exchange_weak(
                        state,
                        (state & !PHASE_MASK) | STARTING,
                        Ordering::Acquire,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => {
                            // Our increment is now the starter's: the
                            // startup's rollback takes it back on failure.
                            self.end_opening(opening);
                            return Poll::Ready(self.run_startup());
                        }
                        Err(now) => state = now,
                    }
                }
                _ => {
                    // STARTING or SHUTTING_DOWN, another's unless it is
                    // this thread's own (a startup or shutdown that polls an
                    // open of its own object would wait for itself).
                    if is_busy(self.addr()) {
                        self.end_opening(opening);
                        return Poll::Ready(Err(self.refuse_reentrant_open()));
                    }
                    let list = self.open_wakers.get_or_init();
                    if mutant("multi_open::open_async_check_then_register") {
                        // The bug: announce and look first, publish the
                        // registration after, with no look after it.
                        // AcqRel: as below.
                        let now = self.state.fetch_or(ASYNC_OPEN_WAITERS, Ordering::AcqRel);
                        if another_phase(now) {
                            list.register(&mut opening.key, cx.waker());
                            return Poll::Pending;
                        }
                        state = now;
                        continue;
                    }
                    if !list.register(&mut opening.key, cx.waker()) {
                        // Registered all along, with its RMW, and no wake
                        // since (the key is still current): the phase's end
                        // (or a seal) will wake the waker now registered.
                        return Poll::Pending;
                    }
                    // AcqRel: Release, so a phase end (or seal) whose RMW
                    // reads this word (or a later one) and fences sees the
                    // registry and our registration; Acquire, so if this
                    // reads the phase's end, we see the handle it published.
                    // An RMW, not a load: it reads the latest word, after
                    // our registration was published.
                    state = self.state.fetch_or(ASYNC_OPEN_WAITERS, Ordering::AcqRel)
                        | ASYNC_OPEN_WAITERS;
                    if another_phase(state) {
                        // Still another's startup or shutdown, and it will
                        // see our bit when it ends.
                        return Poll::Pending;
                    }
                    // It ended (or a seal came) meanwhile: decide now.
                }
            }
        }
    }

    /// Removes the registration, if any, and forgets the increment (now
    /// granted, the starter's, or taken back by the caller).
    #[inline]
    fn end_opening(&self, opening: &mut Opening) {
        opening.counted = false;
        if opening.key.is_some() {
            if let Some(list) = self.open_wakers.get() {
                list.deregister(&mut opening.key);
            }
        }
    }

    /// An open future dropped while pending: deregisters its waker (never
    /// touching another's, see `sync/wakers.rs`), and takes its increment
    /// back with an ordinary close (see `back_out`): no trace in the count.
    /// ASYNC_OPEN_WAITERS stays (other futures may share it).
    #[cold]
    fn cancel_opening(&self, opening: &mut Opening, opened_at: &'static Location<'static>) {
        let counted = opening.counted;
        self.end_opening(opening);
        if mutant("multi_open::open_future_drop_clears_async_bit") {
            // The bug: "no future of mine waits any more", but others may.
            // Relaxed: the bug needs no ordering to strand a waiter.
            self.state.fetch_and(!ASYNC_OPEN_WAITERS, Ordering::Relaxed);
        }
        if counted && !mutant("multi_open::open_future_drop_keeps_count") {
            self.back_out_at(opened_at);
        }
    }

    /// The phase's end's (or seal's) wake of the open futures, after its
    /// RMW read a word with `ASYNC_OPEN_WAITERS`.
    #[cold]
    #[inline(never)]
    pub(super) fn wake_open_futures(&self) {
        // Acquire fence: our RMW read a word whose bit came from (or
        // follows, in the release sequence of) a future's Release RMW made
        // after it allocated the registry and registered; this makes both
        // visible (see `sync/wakers.rs`).
        fence(Ordering::Acquire);
        if let Some(list) = self.open_wakers.get() {
            list.wake_all();
        }
    }

    /// Open futures waiting now (their wakers registered): for tests that
    /// check that finished and dropped futures leave nothing behind. Not
    /// part of the API.
    #[doc(hidden)]
    pub fn registered_open_wakers(&self) -> usize {
        self.open_wakers.get().map_or(0, |list| list.len())
    }
}

/// The future of [`MultiOpen::open_async`]: completes with
/// [`open`](MultiOpen::open)'s result. Dropping it while pending cancels
/// the open, leaving the count as it was.
///
/// ```
/// use multiopen::{MultiOpen, OpenFuture};
///
/// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(1), |_| Ok(()));
/// let open: OpenFuture<'_, _> = mo.open_async();
/// assert_eq!(*futures::executor::block_on(open)?, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "futures do nothing unless awaited"]
pub struct OpenFuture<'a, R: Resource> {
    mo: &'a MultiOpen<R>,
    opened_at: &'static Location<'static>,
    opening: Opening,
}

impl<'a, R: Resource> Future for OpenFuture<'a, R> {
    type Output = Result<OpenGuard<'a, R>, OpenError<R::Error>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mo = this.mo;
        mo.poll_open(&mut this.opening, this.opened_at, cx)
            .map_ok(|()| OpenGuard {
                owner: mo,
                opened_at: this.opened_at,
            })
    }
}

impl<R: Resource> Drop for OpenFuture<'_, R> {
    #[inline]
    fn drop(&mut self) {
        if self.opening.counted || self.opening.key.is_some() {
            self.mo.cancel_opening(&mut self.opening, self.opened_at);
        }
    }
}

impl<R: Resource> fmt::Debug for OpenFuture<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenFuture")
            .field("name", &self.mo.name)
            .field("opened_at", &self.opened_at)
            .field("waiting", &self.opening.counted)
            .finish()
    }
}

/// The future of [`MultiOpen::open_owned_async`]: completes with
/// [`open_owned`](MultiOpen::open_owned)'s result. `'static` (it owns an
/// `Arc` of the object), so it can be spawned. Dropping it while pending
/// cancels the open, leaving the count as it was.
///
/// ```
/// use std::sync::Arc;
/// use multiopen::{MultiOpen, OwnedOpenFuture};
///
/// let mo = Arc::new(MultiOpen::from_fns(|| Ok::<_, std::io::Error>(1), |_| Ok(())));
/// let open: OwnedOpenFuture<_> = mo.open_owned_async();
/// assert_eq!(*futures::executor::block_on(open)?, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "futures do nothing unless awaited"]
pub struct OwnedOpenFuture<R: Resource> {
    mo: Arc<MultiOpen<R>>,
    opened_at: &'static Location<'static>,
    opening: Opening,
}

impl<R: Resource> Future for OwnedOpenFuture<R> {
    type Output = Result<OwnedOpenGuard<R>, OpenError<R::Error>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.mo
            .poll_open(&mut this.opening, this.opened_at, cx)
            .map_ok(|()| OwnedOpenGuard {
                owner: Arc::clone(&this.mo),
                opened_at: this.opened_at,
            })
    }
}

impl<R: Resource> Drop for OwnedOpenFuture<R> {
    #[inline]
    fn drop(&mut self) {
        if self.opening.counted || self.opening.key.is_some() {
            self.mo.cancel_opening(&mut self.opening, self.opened_at);
        }
    }
}

impl<R: Resource> fmt::Debug for OwnedOpenFuture<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedOpenFuture")
            .field("name", &self.mo.name)
            .field("opened_at", &self.opened_at)
            .field("waiting", &self.opening.counted)
            .finish()
    }
}
