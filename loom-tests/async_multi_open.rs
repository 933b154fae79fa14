//! loom models of `MultiOpen::join_async` (`src/multi_open/futures.rs`),
//! `MultiOpen::open_async` (`src/multi_open/open_async.rs`) and the
//! registries behind them: a join future registering while the final close
//! shuts the object down and finalises it; a blocked joiner and a join
//! future both released by one final close; an open future racing the end
//! of another thread's startup; a pending open future dropped beside a kept
//! one while that startup ends; a seal waking an open future pending behind
//! a startup that cannot end.
//!
//! No executor under loom: each model polls its future by hand with a tiny
//! waker that counts its wakes. A future found pending must have been woken
//! exactly once by the finalise and be ready at its next poll; a lost
//! wake-up shows as a count of 0. Once ready, `assert_quiescent` reads the
//! probe's cell that the shutdown wrote: loom reports a causality error if
//! the join did not synchronise with the shutdown.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release --test
//! loom_async_multi_open`; `loom-tests/mutants.sh join_` and
//! `loom-tests/mutants.sh open_` run it against deliberately broken builds.
#![cfg(loom)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc as StdArc;
use std::task::{Context, Poll, Wake, Waker};

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use multiopen::{MultiOpen, OpenError};

#[path = "probe.rs"]
mod probe;
use probe::*;

/// A waker that counts its wakes.
struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: StdArc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    fn wake_by_ref(self: &StdArc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counting() -> (StdArc<Count>, Waker) {
    let count = StdArc::new(Count(AtomicUsize::new(0)));
    (StdArc::clone(&count), Waker::from(count))
}

fn poll<F: Future + Unpin>(future: &mut F, waker: &Waker) -> Poll<F::Output> {
    Pin::new(future).poll(&mut Context::from_waker(waker))
}

/// The future's first poll races the final close (another thread closes a
/// detached open: shutdown, then finalise). If it was pending, the finalise
/// woke it exactly once and it is ready now; nothing stays registered.
/// Mutants: `multi_open::join_async_check_then_register` (looks before
/// publishing its registration), `multi_open::finalise_skips_join_wakers`
/// (the finalise wakes only the futex).
#[test]
fn join_future_registers_while_the_final_close_happens() {
    loom::model(|| {
        let mo = shared(false);
        mo.open().unwrap().detach();
        let closer = {
            let mo = mo.clone();
            thread::spawn(move || {
                mo.close().unwrap();
            })
        };
        let (count, waker) = counting();
        let mut join = mo.join_async();
        let first = poll(&mut join, &waker);
        closer.join().unwrap();
        match first {
            Poll::Ready(result) => result.unwrap(),
            Poll::Pending => {
                assert_eq!(
                    count.0.load(Ordering::SeqCst),
                    1,
                    "a pending join future must be woken once"
                );
                match poll(&mut join, &waker) {
                    Poll::Ready(result) => result.unwrap(),
                    Poll::Pending => panic!("woken but not ready"),
                }
            }
        }
        drop(join);
        assert_eq!(mo.registered_join_wakers(), 0);
        assert_quiescent(&mo);
    });
}

/// A thread blocked in `join` and a join future: one final close releases
/// both (the thread returns, the future is woken once). Mutants:
/// `multi_open::finalise_skips_join_wakers` (strands the future),
/// `multi_open::finalise_no_wake` (strands the thread: a loom deadlock).
#[test]
fn blocking_and_async_joiners_released_by_one_final_close() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(|| {
        let mo = shared(false);
        mo.open().unwrap().detach();
        let joiner = {
            let mo = mo.clone();
            thread::spawn(move || mo.join().unwrap())
        };
        let (count, waker) = counting();
        let mut join = mo.join_async();
        let first = poll(&mut join, &waker);
        let closer = {
            let mo = mo.clone();
            thread::spawn(move || {
                mo.close().unwrap();
            })
        };
        closer.join().unwrap();
        joiner.join().unwrap();
        if first.is_pending() {
            assert_eq!(
                count.0.load(Ordering::SeqCst),
                1,
                "the join future must be woken once"
            );
            assert!(matches!(poll(&mut join, &waker), Poll::Ready(Ok(()))));
        }
        drop(join);
        assert_eq!(mo.registered_join_wakers(), 0);
        assert_quiescent(&mo);
    });
}

fn wakes(count: &Count) -> usize {
    count.0.load(Ordering::SeqCst)
}

/// An open future's first poll races another thread's open, which may run
/// the startup (then the future may find it starting), or find the future's
/// startup running. A pending future was woken exactly once by the startup's
/// end and is ready at its next poll; the guard it gets reads the live
/// resource (loom checks that read against the startup); nothing stays
/// registered and the count is back to zero. Mutants:
/// `multi_open::open_async_check_then_register` (announces and looks before
/// publishing its registration), `multi_open::phase_end_skips_open_wakers`
/// (the phase's end wakes only the futex).
#[test]
fn open_future_races_the_end_of_a_startup() {
    both_orders(|main_yields_first| {
        let mo = shared(false);
        let mut other = Some({
            let mo = mo.clone();
            thread::spawn(move || open_use_close(&mo))
        });
        if main_yields_first {
            thread::yield_now();
        }
        let (count, waker) = counting();
        let mut open = mo.open_async();
        let guard = match poll(&mut open, &waker) {
            Poll::Ready(result) => result.unwrap(),
            Poll::Pending => {
                // Only the other thread can end the phase we wait for.
                other.take().unwrap().join().unwrap();
                assert_eq!(wakes(&count), 1, "a pending open future must be woken once");
                match poll(&mut open, &waker) {
                    Poll::Ready(result) => result.unwrap(),
                    Poll::Pending => panic!("woken but not ready"),
                }
            }
        };
        use_guard(&mo, *guard);
        drop(guard);
        drop(open);
        if let Some(other) = other {
            other.join().unwrap();
        }
        assert_eq!(mo.registered_open_wakers(), 0);
        assert_quiescent(&mo);
    });
}

/// Two open futures wait behind another thread's startup; one is dropped
/// (a timeout's cancel) while that startup ends. The kept one, if pending,
/// is woken exactly once and ready at its next poll; the dropped one took
/// its increment back (the count is exact at rest) and no wake-up meant for
/// the other. Mutants: `multi_open::open_future_drop_clears_async_bit` (the
/// drop clears the "a future waits" bit that the kept one shares: its wake
/// is lost), `multi_open::open_future_drop_keeps_count` (the drop leaves
/// its increment in the count), `multi_open::phase_end_skips_open_wakers`.
#[test]
fn pending_open_future_dropped_while_the_startup_ends() {
    bounded(|| {
        let mo = shared(false);
        let mut other = Some({
            let mo = mo.clone();
            thread::spawn(move || open_use_close(&mo))
        });
        let (count, waker) = counting();
        let (_, doomed_waker) = counting();
        let mut kept = mo.open_async();
        let first = poll(&mut kept, &waker);
        let mut doomed = mo.open_async();
        if let Poll::Ready(result) = poll(&mut doomed, &doomed_waker) {
            drop(result.unwrap());
        }
        drop(doomed);
        let guard = match first {
            Poll::Ready(result) => result.unwrap(),
            Poll::Pending => {
                other.take().unwrap().join().unwrap();
                assert_eq!(wakes(&count), 1, "the kept open future must be woken once");
                match poll(&mut kept, &waker) {
                    Poll::Ready(result) => result.unwrap(),
                    Poll::Pending => panic!("woken but not ready"),
                }
            }
        };
        use_guard(&mo, *guard);
        drop(guard);
        drop(kept);
        if let Some(other) = other {
            other.join().unwrap();
        }
        assert_eq!(mo.registered_open_wakers(), 0);
        assert_quiescent(&mo);
    });
}

/// An open future pending behind a startup that is released only after the
/// future has been refused: only the seal's wake can tell it. The seal
/// races the future's registration; a pending future is woken exactly once
/// by the seal, and its next poll is refused with `Sealed`, leaving only
/// the starter's open in the count. Mutant:
/// `multi_open::seal_skips_open_wakers` (the seal wakes only the futex).
#[test]
fn seal_wakes_an_open_future_pending_behind_a_startup() {
    bounded(|| {
        let mo = Arc::new(MultiOpen::new(HeldStartup::new()));
        let starter = {
            let mo = mo.clone();
            thread::spawn(move || drop(mo.open().expect("the starter's open")))
        };
        let mut sealer = Some({
            let mo = mo.clone();
            thread::spawn(move || {
                mo.resource().begun_for_sealer.wait();
                assert!(mo.seal());
            })
        });
        mo.resource().begun_for_opener.wait();
        let (count, waker) = counting();
        let mut open = mo.open_async();
        let refused = match poll(&mut open, &waker) {
            Poll::Ready(result) => result,
            Poll::Pending => {
                sealer.take().unwrap().join().unwrap();
                assert_eq!(wakes(&count), 1, "the seal must wake the open future");
                match poll(&mut open, &waker) {
                    Poll::Ready(result) => result,
                    Poll::Pending => panic!("woken by the seal but not refused"),
                }
            }
        };
        assert!(matches!(refused, Err(OpenError::Sealed { .. })));
        if let Some(sealer) = sealer {
            sealer.join().unwrap();
        }
        assert_eq!(mo.open_count(), 1, "only the starter's open is left");
        mo.resource().release.open();
        starter.join().unwrap();
        drop(open);
        assert_eq!(mo.registered_open_wakers(), 0);
        assert!(mo.closed() && mo.open_count() == 0);
    });
}
