//! loom models of `MultiOpen::join_async` (`src/multi_open/futures.rs`) and
//! the join registry behind it: a join future registering while the final
//! close shuts the object down and finalises it, and a blocked joiner and a
//! join future both released by one final close.
//!
//! No executor under loom: each model polls its future by hand with a tiny
//! waker that counts its wakes. A future found pending must have been woken
//! exactly once by the finalise and be ready at its next poll; a lost
//! wake-up shows as a count of 0. Once ready, `assert_quiescent` reads the
//! probe's cell that the shutdown wrote: loom reports a causality error if
//! the join did not synchronise with the shutdown.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release --test
//! loom_async_multi_open`; `loom-tests/mutants.sh join_` runs it against
//! deliberately broken builds.
#![cfg(loom)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc as StdArc;
use std::task::{Context, Poll, Wake, Waker};

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;

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
