//! loom models of `RunState`'s futures (`wait_cancelled_async`,
//! `wait_stopped_async`) and the waker registry behind them
//! (`src/sync/wakers.rs`): a registration racing the waking transition (the
//! lost wake-up of tokio PR #7874), a pending future dropped while a
//! transition wakes the registry, and a blocked thread and a future on one
//! state both woken by one cancel.
//!
//! No executor under loom: each model polls its futures by hand with a tiny
//! waker that counts its wakes (in a loom atomic, read after the joins). A
//! future found pending must have been woken exactly once by the transition
//! and be ready at its next poll; a lost wake-up shows as a count of 0.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release --test
//! loom_async_run_state`. `loom-tests/mutants.sh async` and `mutants.sh
//! wake_skips` run them against deliberately broken builds.
#![cfg(loom)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc as StdArc;
use std::task::{Context, Poll, Wake, Waker};

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use multiopen::RunState;

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

impl Count {
    fn wakes(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

fn counting() -> (StdArc<Count>, Waker) {
    let count = StdArc::new(Count(AtomicUsize::new(0)));
    (StdArc::clone(&count), Waker::from(count))
}

fn poll<F: Future + Unpin>(future: &mut F, waker: &Waker) -> Poll<F::Output> {
    Pin::new(future).poll(&mut Context::from_waker(waker))
}

/// 3-thread models: every interleaving with at most this many preemptions.
fn bounded() -> loom::model::Builder {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder
}

/// A future's first poll races a cancel: if it was pending, the cancel woke
/// it exactly once and it is ready now; nothing stays registered.
/// Only a future waits, so the cancel sees `ASYNC_WAITERS` alone: it must
/// wake the registry by that bit, not by the threads' `WAITERS`.
/// Mutants: `run_state::async_check_then_register` (looks before publishing
/// its registration), `run_state::wake_skips_wakers`,
/// `run_state::wake_by_thread_bit` (the registry woken only when a thread
/// sleeps too), `run_state::wake_no_fence`.
#[test]
fn registration_races_cancel() {
    loom::model(|| {
        let rs = Arc::new(RunState::new("job"));
        let canceller = {
            let rs = Arc::clone(&rs);
            thread::spawn(move || rs.cancel_with("stop"))
        };
        let (count, waker) = counting();
        let mut wait = rs.wait_cancelled_async();
        let first = poll(&mut wait, &waker);
        canceller.join().unwrap();
        if first.is_pending() {
            assert_eq!(count.wakes(), 1, "a pending future must be woken once");
            match poll(&mut wait, &waker) {
                Poll::Ready(c) => assert_eq!(c.reason().as_deref(), Some("stop")),
                Poll::Pending => panic!("woken but not ready"),
            }
        }
        assert_eq!(rs.registered_wakers(), 0);
    });
}

/// The same race for a stop and `wait_stopped_async` on a running state.
#[test]
fn registration_races_stop() {
    loom::model(|| {
        let rs = Arc::new(RunState::new("job"));
        rs.start().unwrap();
        let stopper = {
            let rs = Arc::clone(&rs);
            thread::spawn(move || rs.stop().unwrap())
        };
        let (count, waker) = counting();
        let mut wait = rs.wait_stopped_async();
        let first = poll(&mut wait, &waker);
        stopper.join().unwrap();
        if first.is_pending() {
            assert_eq!(count.wakes(), 1, "a pending future must be woken once");
            assert!(poll(&mut wait, &waker).is_ready());
        }
        assert_eq!(rs.registered_wakers(), 0);
    });
}

/// Future A is polled (pending) and dropped while a stop wakes the
/// registry; future B is polled meanwhile and may reuse A's slot in the
/// registry's next generation. A's drop must not remove B's registration:
/// after the cancel, B has been woken and is ready, and nothing is left
/// registered. Mutant: `sync::wakers_drop_ignores_generation`.
#[test]
fn pending_future_dropped_while_stop_wakes() {
    bounded().check(|| {
        let rs = Arc::new(RunState::new("job"));
        rs.start().unwrap();
        let dropper = {
            let rs = Arc::clone(&rs);
            thread::spawn(move || {
                let (_count, waker) = counting();
                let mut a = rs.wait_cancelled_async();
                let _ = poll(&mut a, &waker);
                drop(a);
            })
        };
        let stopper = {
            let rs = Arc::clone(&rs);
            thread::spawn(move || rs.stop().unwrap())
        };
        let (count, waker) = counting();
        let mut b = rs.wait_cancelled_async();
        let first = poll(&mut b, &waker);
        dropper.join().unwrap();
        stopper.join().unwrap();
        rs.cancel();
        assert!(first.is_pending(), "nothing cancelled it before its poll");
        assert!(count.wakes() >= 1, "B's wake-up was lost");
        assert!(poll(&mut b, &waker).is_ready());
        assert_eq!(rs.registered_wakers(), 0);
    });
}

/// A thread blocked in `wait_cancelled` and a future on the same state:
/// one cancel wakes both (the thread returns, the future is woken once).
/// The cancel sees both bits, `WAITERS` and `ASYNC_WAITERS`: it wakes the
/// futex and the registry. Mutant: `run_state::wake_skips_wakers` (and
/// `run_state::cancel_no_wake` strands both).
#[test]
fn sync_and_async_waiters_both_woken() {
    bounded().check(|| {
        let rs = Arc::new(RunState::new("job"));
        let sleeper = {
            let rs = Arc::clone(&rs);
            thread::spawn(move || {
                rs.wait_cancelled();
                rs.cancelled()
            })
        };
        let canceller = {
            let rs = Arc::clone(&rs);
            thread::spawn(move || rs.cancel())
        };
        let (count, waker) = counting();
        let mut wait = rs.wait_cancelled_async();
        let first = poll(&mut wait, &waker);
        canceller.join().unwrap();
        assert!(
            sleeper.join().unwrap(),
            "the blocked thread returns cancelled"
        );
        if first.is_pending() {
            assert_eq!(count.wakes(), 1, "the future must be woken once");
            assert!(poll(&mut wait, &waker).is_ready());
        }
        assert_eq!(rs.registered_wakers(), 0);
    });
}
