//! A future's wait for a token (`Pool::get_async`): the async twin of
//! `Limit::acquire_slow`, on the same state word, woken by the same
//! returns. See "Futures" in the parent module's doc for the rules, and
//! "Waking one at a time" in `sync/wakers.rs` for the queue.
//!
//! A poll first tries the new arrival's compare-and-swap (`barge`), as a
//! blocking `get` does: no lock, no registration. Only if that finds no
//! token does it take the queue's lock and, under it, look at the word
//! again with a compare-and-swap that either takes a token or sets
//! `ASYNC_WAITERS`; the registration stays in the queue exactly when that
//! compare-and-swap left the bit set for it. A return racing it either
//! ran before (the look sees the token) or after (it reads the bit and
//! takes the lock after ours: it finds the entry). Checking the word before
//! publishing the registration loses that wake (tokio PR #7874's bug; the
//! mutant `pool::async_check_then_register`).
//!
//! A future that waits reads the clock when it registers, when it leaves
//! (for the wait statistics), and on every `CHECK_EVERY`th look between
//! (the starvation check); a look that found it starving keeps it so
//! (`AsyncWait::starving`), so the look that serves it ends the hand-off.
//!
//! Every look of a registered future consumes `WOKEN` (as a thread's does)
//! and `settle` issues the next wake in the same compare-and-swap if one is
//! due. So a future that was sent the one wake in flight and then leaves
//! (dropped before it took the object, or refused) passes it on to another
//! waiter (sqlx#620 leaked exactly that; the mutant
//! `pool::async_drop_no_pass_on` leaves `WOKEN` set).

use std::task::{Poll, Waker};
use std::time::Instant;

use super::{
    barged, bump, drained, looked, may_barge, mutant, starved, take, Limit, Look, Refused, Token,
    ASYNC_WAITERS, CLOSED, HANDOFF,
};
use crate::sync::WakerKey;

/// A future's side of the wait: its registration and how long it waited.
#[derive(Debug, Default)]
pub(in crate::pool) struct AsyncWait {
    /// Its entry in the queue of wakers, while registered.
    key: Option<WakerKey>,
    /// When it first had to wait.
    since: Option<Instant>,
    /// Looks at the word while registered (under loom, what `starved`
    /// counts instead of the clock).
    looks: u32,
    /// It has starved (found so at a look that checked the clock): every
    /// later look counts as starving, so the one that serves it ends the
    /// hand-off even if it does not check the clock.
    starving: bool,
}

impl AsyncWait {
    /// Is the future registered (pending, or notified and not yet polled)?
    pub(in crate::pool) fn is_registered(&self) -> bool {
        self.key.is_some()
    }
}

/// How often a registered future's look checks the clock for starvation:
/// every 4th look. A look that finds nothing (a running task barged the
/// token it was woken for) is a lock and a compare-and-swap, and a clock
/// read cost about 48 ns on the bench machine's VM clock, as much again
/// (BENCHMARKS.md, "Awaited from tokio tasks"). So a future turns the pool
/// to hand-off once it has waited past [`STARVING`](super::STARVING), at
/// its first look that checks, at most 3 looks later. Under loom, every
/// look (the models count looks, not time).
#[cfg(not(loom))]
const CHECK_EVERY: u32 = 4;

/// Is the look after `looks` registered looks one that checks the clock?
#[cfg(not(loom))]
fn check_due(looks: u32) -> bool {
    looks.is_multiple_of(CHECK_EVERY)
}

#[cfg(loom)]
fn check_due(_looks: u32) -> bool {
    true
}

/// `w` as a future leaving the queue writes it: the futures' bit stays
/// only if `others` (other registrations) remain, `HANDOFF` goes if nobody
/// waits any more.
fn leave(w: u64, others: usize) -> u64 {
    if others > 0 {
        w
    } else {
        drained(w & !ASYNC_WAITERS)
    }
}

impl Limit {
    /// One poll of a future's acquire: a token, a refusal (closed), or
    /// pending with `waker` registered.
    #[inline]
    pub(in crate::pool) fn poll_acquire(
        &self,
        wait: &mut AsyncWait,
        waker: &Waker,
    ) -> Poll<Result<Token, Refused>> {
        if wait.key.is_none() {
            match self.barge(false) {
                Ok(Some(token)) => return Poll::Ready(Ok(token)),
                Err(refused) => return Poll::Ready(Err(refused)),
                Ok(None) => {}
            }
        }
        self.poll_slow(wait, waker)
    }

    /// `poll_acquire` when no token was free to a new arrival, or the
    /// future is registered: look again under the queue's lock.
    #[cold]
    #[inline(never)]
    fn poll_slow(&self, wait: &mut AsyncWait, waker: &Waker) -> Poll<Result<Token, Refused>> {
        let list = self.wakers.get_or_init();
        let registered = wait.key.is_some();
        // The starvation check reads the clock on every `CHECK_EVERY`th
        // look only (see `check_due`); a look that finds nothing, while
        // running tasks barge, is otherwise a lock and a compare-and-swap.
        let starving = registered
            && (wait.starving
                || check_due(wait.looks)
                    && starved(wait.since.unwrap_or_else(Instant::now), wait.looks));
        wait.starving = starving;
        if mutant("pool::async_check_then_register") && !registered {
            // The bug: look and announce first, publish the waker after,
            // with no look after it. A return in between reads the bit,
            // finds the queue empty, and its wake is lost.
            let (look, wake) = self.update_deferred(|w| match take(w).filter(|_| may_barge(w)) {
                Some((token, after)) => Ok((barged(after), Some(token))),
                None => Ok((w | ASYNC_WAITERS, None)),
            });
            if let Some(w) = wake {
                self.wake(w);
            }
            if let Some(token) = look {
                return Poll::Ready(Ok(token));
            }
            list.queue_locked(&mut wait.key, Some(waker), |_| ((), true));
            wait.since = Some(Instant::now());
            return Poll::Pending;
        }
        let keeps_woken = mutant("pool::async_look_keeps_woken");
        let (look, wake) = list.queue_locked(&mut wait.key, Some(waker), |others| {
            let decided = self.update_deferred(|w| {
                // A registered future looks: any wake in flight is
                // consumed, and `settle` issues the next one if due.
                let mut new = if registered && !keeps_woken {
                    looked(w)
                } else {
                    w
                };
                if new & CLOSED != 0 {
                    return Ok((leave(new, others), Look::Refused(Refused::Closed)));
                }
                let may_take = registered || may_barge(new);
                if let Some((token, after)) = take(new).filter(|_| may_take) {
                    new = if registered { after } else { barged(after) };
                    if starving {
                        new &= !HANDOFF; // served: back to barging
                    }
                    return Ok((leave(new, others), Look::Got(token)));
                }
                new |= ASYNC_WAITERS;
                let turned = starving && new & HANDOFF == 0;
                if turned {
                    new |= HANDOFF;
                }
                Ok((new, Look::Sleep(turned)))
            });
            let stay = matches!(decided.0, Look::Sleep(_));
            (decided, stay)
        });
        if let Some(w) = wake {
            self.wake(w);
        }
        match look {
            Look::Got(token) => {
                self.finish(wait);
                Poll::Ready(Ok(token))
            }
            Look::Refused(refused) => {
                self.finish(wait);
                Poll::Ready(Err(refused))
            }
            Look::Sleep(turned) => {
                if turned {
                    bump(&self.counts.handoffs);
                }
                if wait.since.is_none() {
                    wait.since = Some(Instant::now());
                    bump(&self.counts.waited);
                }
                wait.looks = wait.looks.saturating_add(1);
                Poll::Pending
            }
            // Futures are not counted in the waiters' field.
            Look::Full => Poll::Pending,
        }
    }

    /// A future dropped while registered: leaves the queue and, with the
    /// same look a served waiter makes, passes on any wake it was sent.
    #[cold]
    #[inline(never)]
    pub(in crate::pool) fn cancel_wait(&self, wait: &mut AsyncWait) {
        let Some(list) = self.wakers.get() else {
            return;
        };
        let start = wait.since.unwrap_or_else(Instant::now);
        let starving = wait.starving || starved(start, wait.looks);
        let pass_on = !mutant("pool::async_drop_no_pass_on");
        let wake = list.queue_locked(&mut wait.key, None, |others| {
            let ((), wake) = self.update_deferred(|w| {
                let mut new = if pass_on { looked(w) } else { w };
                if starving {
                    new &= !HANDOFF; // as a starving waiter that timed out
                }
                Ok((leave(new, others), ()))
            });
            (wake, false)
        });
        if let Some(w) = wake {
            self.wake(w);
        }
        self.finish(wait);
    }

    /// A wait ended: its time recorded, the future ready to begin anew.
    fn finish(&self, wait: &mut AsyncWait) {
        if let Some(since) = wait.since.take() {
            self.record_wait(since);
        }
        wait.looks = 0;
        wait.starving = false;
    }

    /// Futures registered now (tests check that none is left).
    pub(in crate::pool) fn futures_waiting(&self) -> usize {
        self.wakers.get().map_or(0, |list| list.len())
    }
}
