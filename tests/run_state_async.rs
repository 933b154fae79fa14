#![cfg(not(loom))]
//! `RunState`'s futures (`wait_cancelled_async`, `wait_stopped_async`,
//! `run_until_cancelled`) on tokio's multi-thread runtime and on
//! `futures::executor::block_on`, beside threads blocked on the same state:
//! one transition wakes them all, each exactly once, and nothing stays
//! registered afterwards.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Waker};
use std::thread;

use multiopen::{RunPhase, RunState};

mod common;
use common::{counting, poll, runtime};

/// Spins (yielding) until `rs` has `n` futures registered: a state query,
/// not a sleep.
fn until_registered(rs: &RunState, n: usize) {
    while rs.registered_wakers() < n {
        thread::yield_now();
    }
}

#[test]
fn blocking_and_async_waiters_on_one_state_are_each_woken_once() {
    let rs = Arc::new(RunState::new("server"));
    rs.start().unwrap();
    let rt = runtime();

    // Threads blocked in `wait_cancelled`.
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let rs = Arc::clone(&rs);
            thread::spawn(move || {
                rs.wait_cancelled();
                rs.reason()
            })
        })
        .collect();
    // Tokio tasks awaiting the same cancel.
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let rs = Arc::clone(&rs);
            rt.spawn(async move { rs.wait_cancelled_async().await.reason() })
        })
        .collect();
    // A thread in `futures::executor::block_on`.
    let blocked_on = {
        let rs = Arc::clone(&rs);
        thread::spawn(move || futures::executor::block_on(rs.wait_cancelled_async()).reason())
    };
    // Futures polled by hand with counting wakers: the exact wake count.
    let counted: Vec<_> = (0..8)
        .map(|_| (counting(), rs.wait_cancelled_async()))
        .collect();
    let mut counted: Vec<_> = counted
        .into_iter()
        .map(|((count, waker), mut wait)| {
            assert!(poll(&mut wait, &waker).is_pending());
            (count, waker, wait)
        })
        .collect();

    until_registered(&rs, 64 + 1 + 8);
    rs.cancel_with("shutdown");

    for thread in threads {
        assert_eq!(thread.join().unwrap().as_deref(), Some("shutdown"));
    }
    for task in tasks {
        assert_eq!(rt.block_on(task).unwrap().as_deref(), Some("shutdown"));
    }
    assert_eq!(blocked_on.join().unwrap().as_deref(), Some("shutdown"));
    for (count, waker, wait) in &mut counted {
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "woken exactly once");
        assert!(poll(wait, waker).is_ready());
    }
    drop(counted);
    assert_eq!(rs.registered_wakers(), 0);
}

#[test]
fn thousands_of_tasks_and_threads_await_one_cancel_repeatedly_memory_flat() {
    const TASKS: usize = 4000;
    const THREADS: usize = 4;
    let rs = Arc::new(RunState::new("stress"));
    let rt = runtime();
    for round in 0..10 {
        rs.start().unwrap();
        let resumed = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let (rs, resumed) = (Arc::clone(&rs), Arc::clone(&resumed));
                rt.spawn(async move {
                    rs.wait_cancelled_async().await;
                    resumed.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();
        let started = Arc::new(Barrier::new(THREADS + 1));
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let (rs, started) = (Arc::clone(&rs), Arc::clone(&started));
                thread::spawn(move || {
                    started.wait();
                    rs.wait_cancelled();
                    assert!(rs.cancelled());
                })
            })
            .collect();
        started.wait();
        // Some tasks may still be on their way to their first poll: the
        // cancel must reach those too (they find it at that poll).
        if round % 2 == 0 {
            until_registered(&rs, TASKS);
        }
        rs.cancel();
        for thread in threads {
            thread.join().unwrap();
        }
        rt.block_on(async {
            for task in tasks {
                task.await.unwrap();
            }
        });
        assert_eq!(resumed.load(Ordering::SeqCst), TASKS, "round {round}");
        assert_eq!(rs.registered_wakers(), 0, "round {round}");
        rs.stop().unwrap();
        assert_eq!(rs.state(), RunPhase::Cancelled);
    }
}

#[test]
fn dropped_pending_futures_leave_nothing_and_take_no_wake_from_others() {
    let rs = Arc::new(RunState::new("job"));
    let rt = runtime();
    // Tasks that give up waiting for the cancel when told to (their cancel
    // futures are dropped pending), beside tasks that keep waiting.
    let (tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let quitters: Vec<_> = (0..100)
        .map(|_| {
            let (rs, mut rx) = (Arc::clone(&rs), tx.subscribe());
            rt.spawn(async move {
                tokio::select! {
                    _ = rs.wait_cancelled_async() => false,
                    _ = rx.recv() => true,
                }
            })
        })
        .collect();
    let stayers: Vec<_> = (0..100)
        .map(|_| {
            let rs = Arc::clone(&rs);
            rt.spawn(async move { rs.wait_cancelled_async().await.runstate().cancelled() })
        })
        .collect();
    until_registered(&rs, 200);
    tx.send(()).unwrap();
    for quitter in quitters {
        assert!(rt.block_on(quitter).unwrap(), "gave up before any cancel");
    }
    assert_eq!(rs.registered_wakers(), 100);
    rs.cancel();
    for stayer in stayers {
        assert!(rt.block_on(stayer).unwrap());
    }
    assert_eq!(rs.registered_wakers(), 0);
}

#[test]
fn run_until_cancelled_on_tokio() {
    let rs = Arc::new(RunState::new("job"));
    let rt = runtime();
    let finished = {
        let rs = Arc::clone(&rs);
        rt.block_on(async move { rs.run_until_cancelled(async { 7 }).await })
    };
    assert_eq!(finished, Some(7));

    let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
    let cancelled = {
        let rs = Arc::clone(&rs);
        rt.spawn(async move { rs.run_until_cancelled(rx).await })
    };
    until_registered(&rs, 1);
    rs.cancel();
    assert_eq!(rt.block_on(cancelled).unwrap(), None);
    drop(tx);
    assert_eq!(rs.registered_wakers(), 0);
    // Cancelled already: the inner future is never polled.
    let polled = AtomicUsize::new(0);
    let never = futures::executor::block_on(rs.run_until_cancelled(async {
        polled.fetch_add(1, Ordering::SeqCst);
    }));
    assert_eq!((never, polled.load(Ordering::SeqCst)), (None, 0));
}

#[test]
fn wait_stopped_async_is_a_supervisors_join() {
    let job = Arc::new(RunState::new("job"));
    let rt = runtime();
    let run = job.run_owned();
    let worker = thread::spawn(move || {
        let rs = run.runstate();
        rs.wait_cancelled();
    });
    let joiner = {
        let job = Arc::clone(&job);
        rt.spawn(async move { job.wait_stopped_async().await })
    };
    until_registered(&job, 1);
    job.cancel();
    assert_eq!(rt.block_on(joiner).unwrap(), RunPhase::Cancelled);
    worker.join().unwrap();
    assert_eq!(job.registered_wakers(), 0);

    // Stopped already: ready at once; never started: waits for a whole run.
    assert_eq!(
        futures::executor::block_on(job.wait_stopped_async()),
        RunPhase::Cancelled
    );
    let fresh = RunState::new("fresh");
    let (count, waker) = counting();
    let mut wait = fresh.wait_stopped_async();
    assert!(poll(&mut wait, &waker).is_pending());
    fresh.start().unwrap();
    assert!(poll(&mut wait, &waker).is_pending());
    fresh.stop().unwrap();
    assert_eq!(poll(&mut wait, &waker), Poll::Ready(RunPhase::Stopped));
    assert_eq!(count.0.load(Ordering::SeqCst), 2); // the start, the stop
}

#[test]
fn a_child_task_is_woken_by_its_parents_cancel_with_the_reason() {
    let server = Arc::new(RunState::new("server"));
    let rt = runtime();
    let children: Vec<_> = (0..16)
        .map(|i| Arc::new(server.child(format!("conn {i}"))))
        .collect();
    let tasks: Vec<_> = children
        .iter()
        .map(|child| {
            let child = Arc::clone(child);
            rt.spawn(async move { child.wait_cancelled_async().await.to_error().to_string() })
        })
        .collect();
    for child in &children {
        until_registered(child, 1);
    }
    server.cancel_with("ctrl-c");
    for (i, task) in tasks.into_iter().enumerate() {
        assert_eq!(
            rt.block_on(task).unwrap(),
            format!("conn {i} was cancelled: ctrl-c")
        );
    }
}

#[test]
fn futures_are_send_and_the_combinator_keeps_the_inner_futures_unpin_ness() {
    fn send<T: Send>(_: &T) {}
    fn unpin<T: Unpin>(_: &T) {}
    let rs = RunState::new("job");
    let wait = rs.wait_cancelled_async();
    send(&wait);
    unpin(&wait);
    let stopped = rs.wait_stopped_async();
    send(&stopped);
    let run = rs.run_until_cancelled(std::future::ready(1));
    send(&run);
    unpin(&run);
}

// --- the run a `WaitStopped` waits for ------------------------------------------

/// A `WaitStopped` first polled while run N is in progress is ready once
/// run N has ended, however many runs came after and however long it went
/// unpolled: after exactly 2^21 publishes (2^20 runs) the word's 21-bit
/// EPOCH is back where it was, yet the future names its run by the 64-bit
/// count of publishes.
#[test]
fn wait_stopped_async_sees_its_stop_after_the_epoch_wraps() {
    let rs = RunState::new("wrap");
    rs.start().unwrap();
    let (_count, waker) = counting();
    let mut wait = Box::pin(rs.wait_stopped_async());
    assert!(poll(&mut wait, &waker).is_pending());
    // Run N ends: 1 publish; then 2^20 - 1 whole runs (2 each); then a new
    // start: 1 + 2 * (2^20 - 1) + 1 = 2^21 publishes.
    rs.stop().unwrap();
    for _ in 0..((1u32 << 20) - 1) {
        rs.start().unwrap();
        rs.stop().unwrap();
    }
    rs.start().unwrap();
    assert_eq!(
        poll(&mut wait, &waker),
        Poll::Ready(RunPhase::Running),
        "the run it waited for ended 2^20 runs ago"
    );
    // A pending state's future (a whole run to wait for) likewise.
    let pending = RunState::new("pending");
    let mut wait = Box::pin(pending.wait_stopped_async());
    assert!(poll(&mut wait, &waker).is_pending());
    for _ in 0..(1u32 << 20) {
        pending.start().unwrap();
        pending.stop().unwrap();
    }
    pending.start().unwrap();
    assert!(poll(&mut wait, &waker).is_ready());
}

#[test]
fn wait_stopped_async_sees_a_stop_then_restart() {
    let rs = RunState::new("restart");
    rs.start().unwrap();
    let (count, waker) = counting();
    let mut wait = Box::pin(rs.wait_stopped_async());
    assert!(poll(&mut wait, &waker).is_pending());
    rs.stop().unwrap();
    rs.start().unwrap();
    assert!(
        count.0.load(Ordering::SeqCst) >= 1,
        "the stop woke the future"
    );
    assert!(poll(&mut wait, &waker).is_ready());
    assert_eq!(rs.registered_wakers(), 0);
}

#[test]
fn wait_stopped_async_on_a_pending_state_needs_a_whole_run() {
    let rs = RunState::new("pending");
    let (_c, waker) = counting();
    let mut wait = Box::pin(rs.wait_stopped_async());
    assert!(poll(&mut wait, &waker).is_pending());
    rs.start().unwrap();
    assert!(poll(&mut wait, &waker).is_pending());
    rs.stop().unwrap();
    rs.start().unwrap();
    assert!(poll(&mut wait, &waker).is_ready());
}

// --- panics and drops around the wake ---------------------------------------------

#[test]
fn run_until_cancelled_with_a_panicking_future_leaves_no_registration() {
    let rs = RunState::new("p");
    let (_c, waker) = counting();
    let polled = AtomicUsize::new(0);
    let inner = std::future::poll_fn(|_| {
        if polled.fetch_add(1, Ordering::SeqCst) == 0 {
            Poll::<()>::Pending
        } else {
            panic!("inner future failed")
        }
    });
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut f = Box::pin(rs.run_until_cancelled(inner));
        assert!(f
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
        let _ = f.as_mut().poll(&mut Context::from_waker(&waker));
    }));
    std::panic::set_hook(prev);
    assert!(r.is_err());
    assert_eq!(rs.registered_wakers(), 0);
    // still usable
    let mut w = Box::pin(rs.wait_cancelled_async());
    assert!(poll(&mut w, &waker).is_pending());
    rs.cancel();
    assert!(poll(&mut w, &waker).is_ready());
}

#[test]
fn futures_dropped_while_the_cancel_wakes_lose_no_wake_for_the_others() {
    // Fewer rounds under Miri (about a thousand times slower).
    for _ in 0..if cfg!(miri) { 8 } else { 50 } {
        let rs = Arc::new(RunState::new("w"));
        let mut kept = Vec::new();
        let mut dropped = Vec::new();
        for i in 0..200 {
            let (c, waker) = counting();
            let mut f = Box::pin(rs.wait_cancelled_async());
            assert!(poll(&mut f, &waker).is_pending());
            if i % 2 == 0 {
                kept.push((c, f));
            } else {
                dropped.push(f);
            }
        }
        let r2 = Arc::clone(&rs);
        let t = thread::spawn(move || r2.cancel());
        drop(dropped);
        t.join().unwrap();
        for (c, mut f) in kept {
            assert_eq!(c.0.load(Ordering::SeqCst), 1, "each kept future woken once");
            let waker = Waker::from(c);
            assert!(poll(&mut f, &waker).is_ready());
        }
        assert_eq!(rs.registered_wakers(), 0);
    }
}

/// A waker that reads the reason of the state that woke it: user code,
/// which must run under no lock of the state (the kind: a wake runs user
/// code, so it comes after every crate lock is released; the stop of a
/// cancelled run held the reasons lock across its wake).
struct ReasonReadingWaker {
    rs: Arc<RunState>,
    seen: std::sync::Mutex<Vec<Option<String>>>,
}

impl std::task::Wake for ReasonReadingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        let reason = self.rs.reason().map(|r| r.to_string());
        self.seen.lock().unwrap().push(reason);
    }
}

#[test]
fn a_waker_may_lock_what_its_wake_held_stop() {
    let rs = Arc::new(RunState::new("job"));
    rs.start().unwrap();
    rs.cancel_with("shutdown");
    let waker_state = Arc::new(ReasonReadingWaker {
        rs: Arc::clone(&rs),
        seen: std::sync::Mutex::new(Vec::new()),
    });
    let waker = Waker::from(Arc::clone(&waker_state));
    let mut stopped = Box::pin(rs.wait_stopped_async());
    assert!(poll(&mut stopped, &waker).is_pending());
    let stopper = Arc::clone(&rs);
    common::no_deadlock(
        "the stop of a cancelled run, whose wake reads the reason",
        move || stopper.stop().unwrap(),
    );
    // Woken once, after the stop moved the reason to the ended run's record.
    assert_eq!(
        *waker_state.seen.lock().unwrap(),
        [Some("shutdown".to_string())]
    );
    assert!(poll(&mut stopped, &waker).is_ready());
    assert_eq!(rs.state(), RunPhase::Cancelled);
}
