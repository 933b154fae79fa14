//! The cap on live objects ([`PoolBuilder::max_live`](super::PoolBuilder::max_live)):
//! the state word that counts them, its waiters, and the wake-sequence
//! futex the waiters sleep on. Only a capped pool has a [`Limit`]; an
//! uncapped pool never touches one (its take and return paths test one
//! plain field, fixed at build time, and go on as before).
//!
//! # Tokens
//!
//! Every object a capped pool may have alive is a *token* in one word:
//! *idle* tokens (an object is in the pool's storage, counted after it was
//! put there) and *free* tokens (room to make one: `cap - live`). An
//! acquire first takes a token with one compare-and-swap, preferring an
//! idle one, and only then pops its object (which it will find: it was put
//! there before it was counted) or runs the factory; a return puts its
//! object into the storage first and then counts it (`give_idle`); an
//! object dropped for good (full, taken, rejected, expired, closed) gives
//! its room back (`give_room`) *after* it was dropped, so the objects
//! alive never exceed the cap at any moment. Shrinking the cap below the
//! objects alive makes `free` negative: idle objects then do not count as
//! available, returns drop theirs, and `resize` drops idle ones, until
//! `free` is back to zero.
//!
//! # Waiting: barging, one wake in flight, hand-off when starving
//!
//! A thread that finds no token registers as a waiter in the same word
//! (so a return's compare-and-swap sees it: no lost wake-up) and sleeps on
//! the separate `seq` futex word. A running thread may take a returned
//! object before a sleeper does (*barging*: measured on the prototypes,
//! strict hand-off to sleepers convoys at 0.2× r2d2's throughput). A return
//! wakes a sleeper only when waiters are registered and no earlier wake is
//! still in flight (`WOKEN`): at most one woken thread at a time, and every
//! thread that takes a token while tokens and waiters remain passes the
//! wake on. Two bounds keep barging from starving a waiter:
//!
//! - *The barge limit*: while a wake is in flight, running threads may
//!   take at most [`BARGE_LIMIT`] (1023) tokens before the woken waiter
//!   has looked; then they register behind it instead, and leave their
//!   CPUs to it. Without it, a woken waiter that the scheduler does not
//!   run for milliseconds (8 busy threads on 2 cores) keeps `WOKEN` set,
//!   so no other waiter is woken either, and waiters were measured
//!   served 0 times in a 50 ms round. Counted in the word, so it costs
//!   the barging compare-and-swap nothing.
//! - *Hand-off when starving*: a waiter that finds, on waking, that it has
//!   waited more than [`STARVING`] sets `HANDOFF`: from then on, new
//!   arrivals do not barge but register behind the waiters, so tokens go
//!   to registered waiters only, one wake at a time, in the futex's
//!   order, until that starving waiter is served (or leaves), or the
//!   waiters drain. A waiter served ahead of it does not end the mode (Go's
//!   `sync.Mutex` ends it when a waiter is served promptly, but Go queues
//!   its starving waiter first; the futex queued ours behind the others
//!   when it went back to sleep, so under Go's rule it starved on).
//!
//! # Futures (`get_async`: `limit/wait_async.rs`)
//!
//! A future that finds no token registers its waker in the limit's queue
//! of wakers (`sync/wakers.rs`, allocated on the first one) and sets
//! `ASYNC_WAITERS`, instead of counting itself in the waiters' field; both
//! its look at the word and its registration happen under the queue's
//! lock, so the bit is set exactly while a future is registered. Threads
//! and futures share the rules above: `has_waiters` is "a thread counted
//! or the bit set", and a woken future's look consumes `WOKEN` as a
//! thread's does. A due wake goes to one of them: a waiting future when
//! only futures wait, a thread when only threads do, and alternately when
//! both do. A future that leaves (served, refused, or dropped while
//! registered) looks too, so a wake it was sent is passed on by `settle`
//! in that same compare-and-swap. Among futures a due wake goes to the
//! one registered longest (FIFO; a woken future that finds its token
//! barged keeps its place at the front), but a running task may barge as
//! a running thread may, under the same two bounds. A future checks for
//! starvation on every 4th look only (a clock read per look cost as much
//! as the look); queueing new futures behind registered ones (no barging
//! among tasks) was measured and was slower (BENCHMARKS.md). The fast
//! paths are unchanged: a take or return with nobody waiting reads no bit
//! it did not read before and takes no lock; only a due wake with the bit
//! set takes the queue's lock.
//!
//! # Why a separate wake-sequence word
//!
//! A sleeper reads `seq` *before* its last look at the state and sleeps
//! only while `seq` still holds that value; every waking call bumps `seq`
//! before the futex wake. A wake that lands between a sleeper's last look
//! and its futex call therefore changes the word it sleeps on, and since
//! `seq` only counts up, no later sequence of takes and registrations can
//! restore the value it expects (the trap of sleeping on the state word
//! itself: a take plus a registration can bring it back to the exact value
//! the late sleeper checks, which then sleeps through its wake).

use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::sync::{mutant, AtomicU64, AtomicUsize, Futex, LazyWakers, Mutex, Ordering};

mod wait_async;
pub(super) use wait_async::AsyncWait;

// The state word: its bits and the pure functions on it (`limit/word.rs`).
mod word;
pub(super) use word::MAX_LIVE;
use word::*;

/// Under loom only: the waiting mode's bits of the state word
/// ([`Pool::loom_mode`](super::Pool::loom_mode)).
#[cfg(loom)]
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoomMode {
    /// `WOKEN`: a wake is in flight.
    pub woken: bool,
    /// `HANDOFF`: a starving waiter turned the pool to hand-off.
    pub handoff: bool,
    /// Tokens barged past the wake in flight.
    pub barges: u64,
    /// [`BARGE_LIMIT`] as built (1 under loom).
    pub barge_limit: u64,
}

/// What a token entitles its holder to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Token {
    /// An idle object is in the storage: pop it.
    Idle,
    /// Room for one more object: make it.
    Room,
}

/// A token taken from `w`, and the word after it; `None` if there is none
/// (idle objects over a shrunk cap are not available).
fn take(w: u64) -> Option<(Token, u64)> {
    let (idle, free) = (idle(w), free(w));
    if idle > 0 && idle as i64 + free > 0 {
        Some((Token::Idle, w - IDLE_ONE))
    } else if free > 0 {
        Some((Token::Room, w - FREE_ONE))
    } else {
        None
    }
}

/// `new`, with `WOKEN` set if a wake is due: waiters registered, a token
/// for them, no wake in flight. The second value: wake one. (On a closed
/// pool the only waiters left are `instance` calls, which still wait for
/// room: see `Limit::acquire`.)
fn settle(new: u64) -> (u64, bool) {
    if new & WOKEN == 0 && has_waiters(new) && take(new).is_some() {
        ((new & !BARGE_MASK) | WOKEN, true)
    } else {
        (new, false)
    }
}

/// What [`Limit::verdict`] expects of a return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Kept, as far as the word tells.
    Keep,
    /// Dropped: closed or over a shrunk cap.
    Closed,
    /// Dropped: `max_size` idle already.
    Full,
}

/// Why [`Limit::acquire`] gave no token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    /// The pool is closed.
    Closed,
    /// No token now, and the call would not wait.
    Exhausted,
    /// No token before the deadline; waited this long.
    TimedOut(Duration),
}

/// What one look at the state word decided, in `acquire_slow`.
enum Look {
    Got(Token),
    Refused(Refused),
    /// Registered (or still registered): sleep; `true` if this look
    /// turned the pool to hand-off.
    Sleep(bool),
    /// The waiter count is full: yield and look again.
    Full,
}

/// How long an acquire may wait for a token.
#[derive(Debug, Clone, Copy)]
pub(super) enum Patience {
    /// Not at all (`try_get`, a zero timeout, a deadline already past when
    /// the call began).
    Never,
    /// For ever.
    Forever,
    /// Until `deadline`; the call began at `since` (a deadline that passes
    /// before the wait starts, the thread preempted, is a time-out, not a
    /// try: the caller asked to wait).
    Until { deadline: Instant, since: Instant },
}

impl Patience {
    /// At most `timeout` from now: zero is a try, one past what `Instant`
    /// holds is for ever.
    pub(super) fn timeout(timeout: Duration) -> Self {
        if timeout.is_zero() {
            return Self::Never;
        }
        let since = Instant::now();
        match since.checked_add(timeout) {
            Some(deadline) => Self::Until { deadline, since },
            None => Self::Forever,
        }
    }

    /// Until `deadline`: one already past is a try.
    pub(super) fn deadline(deadline: Instant) -> Self {
        let since = Instant::now();
        if deadline <= since {
            Self::Never
        } else {
            Self::Until { deadline, since }
        }
    }
}

/// The waiting statistics, counted on the slow path only.
#[derive(Default)]
pub(super) struct WaitCounts {
    /// Acquires that found no token and waited (or were refused by a
    /// timeout).
    pub(super) waited: AtomicUsize,
    /// Acquires that timed out.
    pub(super) timed_out: AtomicUsize,
    /// Total time waited by acquires that waited, in nanoseconds.
    pub(super) wait_nanos: AtomicU64,
    /// The longest single wait, in nanoseconds.
    pub(super) longest_nanos: AtomicU64,
    /// Futex sleeps (a waiter may sleep more than once).
    pub(super) sleeps: AtomicUsize,
    /// Times a starving waiter turned the pool to hand-off (set `HANDOFF`).
    pub(super) handoffs: AtomicUsize,
}

/// The cap's state: see the module doc.
pub(super) struct Limit {
    /// Idle and free tokens, waiters, `ASYNC_WAITERS`, `WOKEN`, `HANDOFF`,
    /// `CLOSED`.
    state: CachePadded<AtomicU64>,
    /// The wake sequence: bumped by every waking call, slept on by waiters.
    seq: CachePadded<Futex>,
    /// The futures' queue of wakers (`get_async`), allocated by the first
    /// future that waits; behind `ASYNC_WAITERS`.
    wakers: LazyWakers,
    /// Whose turn a due wake is when threads and futures both wait (even:
    /// a future's); counts those wakes.
    turn: AtomicUsize,
    /// The cap, for reports (`live = cap - free`); written by `resize`
    /// under `resizing`, so two resizes never interleave.
    cap: AtomicUsize,
    resizing: Mutex<()>,
    pub(super) counts: WaitCounts,
}

/// A reading of the state word for `status` and error messages.
#[derive(Debug, Clone, Copy)]
pub(super) struct Reading {
    pub(super) cap: usize,
    pub(super) live: usize,
    pub(super) idle: usize,
    /// Threads and futures.
    pub(super) waiting: usize,
    pub(super) closed: bool,
}

impl Limit {
    /// A limit of `cap` (at most [`MAX_LIVE`]) live objects, none yet.
    pub(super) fn new(cap: usize) -> Self {
        let cap = cap.min(MAX_LIVE);
        Self {
            state: CachePadded::new(AtomicU64::new(with_free(0, cap as i64))),
            seq: CachePadded::new(Futex::new(0)),
            wakers: LazyWakers::new(),
            turn: AtomicUsize::new(0),
            cap: AtomicUsize::new(cap),
            resizing: Mutex::new(()),
            counts: WaitCounts::default(),
        }
    }

    /// The wake `settle` made due, for the word `w` this thread just
    /// stored: one waiting future (if futures wait, and it is their turn
    /// or no thread waits) or else one thread.
    #[cold]
    #[inline(never)]
    fn wake(&self, w: u64) {
        let threads = waiters(w) > 0;
        if w & ASYNC_WAITERS != 0 && !mutant("pool::async_wake_skips_futures") {
            // Relaxed: only a turn-taker; any order is fair enough.
            let futures_turn =
                !threads || self.turn.fetch_add(1, Ordering::Relaxed).is_multiple_of(2);
            // No fence: our compare-and-swap (Acquire) read a word in the
            // release sequence of the future's, made after it allocated the
            // queue. `false`: no entry is waiting (each is notified and will
            // look, or has left, and its leaving look came after our
            // compare-and-swap): the wake is theirs already.
            if futures_turn && self.wakers.get().is_some_and(|list| list.wake_one()) {
                return;
            }
        }
        if threads {
            // Release: a waiter whose Acquire load of `seq` sees this bump
            // also sees the state change that made the wake due (see the
            // module doc).
            self.seq.fetch_add(1, Ordering::Release);
            self.seq.wake_one();
        }
    }

    /// Applies `f` to the state word until the compare-and-swap succeeds;
    /// `f` returns the new word and what to report, or `Err` to leave the
    /// word as it is. Wakes one waiter if `settle` says a wake is due.
    #[inline]
    fn update<R>(&self, f: impl FnMut(u64) -> Result<(u64, R), R>) -> R {
        let (report, wake) = self.update_deferred(f);
        if let Some(w) = wake {
            self.wake(w);
        }
        report
    }

    /// [`update`](Self::update), returning the word to `wake` for (if a
    /// wake is due) instead of waking: for a caller holding a lock that
    /// `wake` may take (the futures' queue lock), or that the user code a
    /// wake runs (a waker) may take (`resizing`).
    #[inline]
    fn update_deferred<R>(
        &self,
        mut f: impl FnMut(u64) -> Result<(u64, R), R>,
    ) -> (R, Option<u64>) {
        // Relaxed: a guess for the CAS, which decides.
        let mut w = self.state.load(Ordering::Relaxed);
        loop {
            let (new, report) = match f(w) {
                Ok(next) => next,
                Err(report) => return (report, None),
            };
            let (new, wake) = settle(new);
            // AcqRel: Acquire, so a taker sees the object a return put into
            // the storage before counting it (and a return sees a waiter's
            // registration, so its `seq` read happens before our bump);
            // Release, for the same pairs the other way round.
            match self
                .state
                .compare_exchange_weak(w, new, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return (report, wake.then_some(new)),
                Err(now) => w = now,
            }
        }
    }

    /// A token, waiting for one as `patience` allows. With `closed_ok`
    /// (`instance`, which cannot fail) a closed pool is no refusal: the
    /// call still waits for room, so the cap holds after `close` too.
    #[inline]
    pub(super) fn acquire(&self, patience: Patience, closed_ok: bool) -> Result<Token, Refused> {
        match self.barge(closed_ok) {
            Ok(Some(token)) => Ok(token),
            Ok(None) => self.acquire_slow(patience, closed_ok),
            Err(refused) => Err(refused),
        }
    }

    /// A new arrival's one compare-and-swap: a token if one is free to it,
    /// `Ok(None)` if it must wait, or refused (closed).
    #[inline]
    fn barge(&self, closed_ok: bool) -> Result<Option<Token>, Refused> {
        self.update(|w| {
            if w & CLOSED != 0 && !closed_ok {
                return Err(Err(Refused::Closed));
            }
            if !may_barge(w) {
                return Err(Ok(None)); // register behind the waiters
            }
            match take(w) {
                Some((token, new)) => Ok((barged(new), Ok(Some(token)))),
                None => Err(Ok(None)),
            }
        })
    }

    /// `acquire` when no token was free for a new arrival: register, sleep,
    /// look again.
    #[cold]
    #[inline(never)]
    fn acquire_slow(&self, patience: Patience, closed_ok: bool) -> Result<Token, Refused> {
        let (deadline, start) = match patience {
            Patience::Never => return Err(Refused::Exhausted),
            Patience::Forever => (None, Instant::now()),
            Patience::Until { deadline, since } => (Some(deadline), since),
        };
        bump(&self.counts.waited);
        let mut registered = false;
        let mut timed_out = false;
        let mut slept = 0u32;
        loop {
            // Acquire: pairs with `wake`'s Release bump. Read before the
            // look at the state below (the mutant reads it after, and sleeps
            // through a wake that came in between).
            let late = mutant("pool::cap_seq_read_late");
            let mut seen = if late {
                0
            } else {
                self.seq.load(Ordering::Acquire)
            };
            let starving = registered && starved(start, slept);
            let outcome = self.update(|w| {
                let mut new = w;
                if registered {
                    new = looked(new); // awake and looking
                }
                if new & CLOSED != 0 && !closed_ok {
                    if registered {
                        new = unregister(new);
                    }
                    return Ok((new, Look::Refused(Refused::Closed)));
                }
                let may_take = registered || may_barge(new);
                if let Some((token, after)) = take(new).filter(|_| may_take) {
                    new = if registered {
                        unregister(after)
                    } else {
                        barged(after)
                    };
                    // The starving waiter is served: back to barging
                    // (another starving waiter sets it again when it next
                    // looks). Not cleared by a waiter served ahead of it,
                    // as Go's rule would: the futex queued the starving
                    // one behind those when it went back to sleep, so it
                    // would starve on (measured: a thread served 0 times
                    // in 20 ms at 8 threads on a cap of 2).
                    if starving {
                        new &= !HANDOFF;
                    }
                    return Ok((new, Look::Got(token)));
                }
                if timed_out {
                    // Leaving: a token that came with the timeout was taken
                    // above; otherwise give up the registration.
                    let waited = start.elapsed();
                    let mut left = unregister(new);
                    if starving {
                        left &= !HANDOFF; // as when served, above
                    }
                    return Ok((left, Look::Refused(Refused::TimedOut(waited))));
                }
                if !registered {
                    if waiters(new) == MAX_WAITERS {
                        return Err(Look::Full);
                    }
                    new += WAITER_ONE;
                }
                let turned = starving && new & HANDOFF == 0;
                if turned {
                    new |= HANDOFF;
                }
                Ok((new, Look::Sleep(turned)))
            });
            match outcome {
                // The mutant takes the token that came with the time-out
                // and reports the time-out all the same: the object is
                // handed to a waiter that already left, and lost.
                Look::Got(_) if timed_out && mutant("pool::cap_timeout_loses_token") => {
                    return Err(Refused::TimedOut(start.elapsed()));
                }
                Look::Got(token) => {
                    self.record_wait(start);
                    return Ok(token);
                }
                Look::Refused(refused) => {
                    if matches!(refused, Refused::TimedOut(_)) {
                        bump(&self.counts.timed_out);
                    }
                    self.record_wait(start);
                    return Err(refused);
                }
                Look::Full => {
                    crate::sync::yield_now();
                    continue;
                }
                Look::Sleep(turned) => {
                    if turned {
                        bump(&self.counts.handoffs);
                    }
                    registered = true;
                }
            }
            if late {
                seen = self.seq.load(Ordering::Acquire);
            }
            bump(&self.counts.sleeps);
            slept += 1;
            // `false`: the deadline passed (under loom: at the first sleep).
            if !self.seq.wait_deadline(seen, deadline) {
                timed_out = true;
            }
        }
    }

    fn record_wait(&self, start: Instant) {
        let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        // Relaxed: statistics, read with the others by `stats`.
        self.counts.wait_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.counts
            .longest_nanos
            .fetch_max(nanos, Ordering::Relaxed);
    }

    /// A room token only, never waiting, for `prefill`.
    pub(super) fn claim_room(&self) -> bool {
        self.update(|w| {
            if w & CLOSED != 0 || free(w) <= 0 || !may_barge(w) {
                Err(false)
            } else {
                Ok((barged(w - FREE_ONE), true))
            }
        })
    }

    /// An idle token, to drop its object (`clear`, `close`, `retain`; with
    /// `over_cap`, only while the objects alive exceed the cap, for
    /// `resize`). The caller pops the object, drops it, then gives its
    /// room back.
    pub(super) fn claim_idle(&self, over_cap: bool) -> bool {
        self.update(|w| {
            if idle(w) == 0 || (over_cap && free(w) >= 0) {
                Err(false)
            } else {
                Ok((w - IDLE_ONE, true))
            }
        })
    }

    /// Counts an object just put into the storage as idle, waking a waiter
    /// if one is due; `false` (and no change) if the pool is closed or over
    /// its cap: the caller then takes an object back out and drops it.
    pub(super) fn give_idle(&self) -> bool {
        let no_wake = mutant("pool::cap_return_no_wake");
        // The mutant trusts the return's earlier `verdict` and skips the
        // close check here: a return racing `close` keeps its object idle
        // after `close` drained the pool.
        let ignores_close = mutant("pool::cap_return_ignores_close");
        // Relaxed: a guess for the CAS, which decides.
        let mut w = self.state.load(Ordering::Relaxed);
        loop {
            if (w & CLOSED != 0 && !ignores_close) || free(w) < 0 {
                return false;
            }
            let (new, wake) = if no_wake {
                (w + IDLE_ONE, false)
            } else {
                settle(w + IDLE_ONE)
            };
            // AcqRel: as in `update`.
            match self
                .state
                .compare_exchange_weak(w, new, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    if wake {
                        self.wake(new);
                    }
                    return true;
                }
                Err(now) => w = now,
            }
        }
    }

    /// Gives back the room of an object dropped for good (or of a factory
    /// call that made none), waking a waiter if one is due. Call it after
    /// the object was dropped.
    pub(super) fn give_room(&self) {
        self.update(|w| Ok((w + FREE_ONE, ())));
    }

    /// Closes: refuses every acquire from now on and wakes every waiter.
    /// `false` if it was closed already.
    pub(super) fn close(&self) -> bool {
        // AcqRel: orders the close with every token operation.
        let was = self.state.fetch_or(CLOSED, Ordering::AcqRel);
        if was & CLOSED != 0 {
            return false;
        }
        if !mutant("pool::cap_close_no_wake") {
            // Release: as in `wake`.
            self.seq.fetch_add(1, Ordering::Release);
            self.seq.wake_all();
            if was & ASYNC_WAITERS != 0 {
                // No fence: the fetch_or (Acquire) read the futures' bit,
                // set after the queue was allocated (see `wake`).
                if let Some(list) = self.wakers.get() {
                    list.notify_all();
                }
            }
        }
        true
    }

    /// Will a return be kept? A hint for the return path, which skips the
    /// validation and reset hooks on an object it will drop: not if the
    /// pool is closed or over a shrunk cap (`give_idle` decides those), nor
    /// if `max_size` (0: no limit) objects are counted idle already (the
    /// storage decides that one).
    pub(super) fn verdict(&self, max_size: usize) -> Verdict {
        // Relaxed: a hint only (see above).
        let w = self.state.load(Ordering::Relaxed);
        if w & CLOSED != 0 || free(w) < 0 {
            Verdict::Closed
        } else if max_size != 0 && idle(w) >= max_size as u64 {
            Verdict::Full
        } else {
            Verdict::Keep
        }
    }

    /// Is the pool closed?
    pub(super) fn is_closed(&self) -> bool {
        // Acquire: a caller that sees the close sees what happened before it.
        self.state.load(Ordering::Acquire) & CLOSED != 0
    }

    /// Sets the cap to `cap` (1..=MAX_LIVE, checked by the caller): the
    /// free tokens move by the difference, and a waiter is woken if the
    /// new room is for it. Returns the old cap.
    pub(super) fn resize(&self, cap: usize) -> usize {
        let serial = self.resizing.lock().unwrap_or_else(|e| e.into_inner());
        // Relaxed: written only under `resizing`, which we hold.
        let old = self.cap.load(Ordering::Relaxed);
        let delta = cap as i64 - old as i64;
        let wake = if mutant("pool::cap_resize_no_wake") {
            self.state
                .fetch_add((delta as u64) << FREE_SHIFT, Ordering::AcqRel);
            None
        } else {
            self.update_deferred(|w| Ok((with_free(w, free(w) + delta), ())))
                .1
        };
        // Relaxed: reports only.
        self.cap.store(cap, Ordering::Relaxed);
        drop(serial);
        // The wake after the lock: it may run a future's waker, user code
        // that may resize too (`a_waker_may_lock_what_its_wake_held_resize`).
        if let Some(w) = wake {
            self.wake(w);
        }
        old
    }

    /// Under loom only, for the models' books at rest: the wake in flight,
    /// hand-off mode, the barges counted, and the barge limit.
    #[cfg(loom)]
    pub(super) fn mode(&self) -> LoomMode {
        // Acquire: as in `reading`.
        let w = self.state.load(Ordering::Acquire);
        LoomMode {
            woken: w & WOKEN != 0,
            handoff: w & HANDOFF != 0,
            barges: barges(w),
            barge_limit: BARGE_LIMIT,
        }
    }

    /// The state now, for `status` and error messages.
    pub(super) fn reading(&self) -> Reading {
        // Acquire: see the events the counts cover.
        let w = self.state.load(Ordering::Acquire);
        let cap = self.cap.load(Ordering::Relaxed);
        // The futures, from their queue (a short lock) only if one waits.
        let futures = match w & ASYNC_WAITERS {
            0 => 0,
            _ => self.wakers.get().map_or(0, |list| list.len()),
        };
        Reading {
            cap,
            live: (cap as i64 - free(w)).max(0) as usize,
            idle: idle(w) as usize,
            waiting: waiters(w) as usize + futures,
            closed: w & CLOSED != 0,
        }
    }
}

/// Has a waiter that started at `start` and slept `slept` times starved?
/// Past [`STARVING`]; under loom, which must not read the clock (a model
/// has to replay the same way every time), from its second sleep on, so
/// the models explore the hand-off too.
#[cfg(not(loom))]
fn starved(start: Instant, _slept: u32) -> bool {
    start.elapsed() > STARVING
}

#[cfg(loom)]
fn starved(_start: Instant, slept: u32) -> bool {
    slept >= 2
}

fn bump(counter: &AtomicUsize) {
    // Release: a `stats` that sees this count (Acquire) also sees the
    // counts this thread bumped before it (`timed_out` after `waited`).
    counter.fetch_add(1, Ordering::Release);
}

/// Gives the room of a token back if dropped, that is, if the factory
/// it guards panics; the normal path forgets it.
pub(super) struct RoomOnUnwind<'a>(pub(super) &'a Limit);

impl Drop for RoomOnUnwind<'_> {
    fn drop(&mut self) {
        self.0.give_room();
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
