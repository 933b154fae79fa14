#![cfg(not(loom))]
//! `RunState`'s futures (`wait_cancelled_async`, `wait_stopped_async`,
//! `run_until_cancelled`) on tokio's multi-thread runtime and on
//! `futures::executor::block_on`, beside threads blocked on the same state:
//! one transition wakes them all, each exactly once, and nothing stays
//! registered afterwards.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;

use multiopen::{RunPhase, RunState};

/// A waker that counts its wakes.
struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counting() -> (Arc<Count>, Waker) {
    let count = Arc::new(Count(AtomicUsize::new(0)));
    (Arc::clone(&count), Waker::from(count))
}

fn poll<F: Future + Unpin>(future: &mut F, waker: &Waker) -> Poll<F::Output> {
    Pin::new(future).poll(&mut Context::from_waker(waker))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap()
}

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
