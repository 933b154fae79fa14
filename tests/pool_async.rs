#![cfg(not(loom))]
//! `Pool::get_async` / `get_owned_async` (issue 14, "Pool: acquire at the
//! cap"): hand-polled with counting wakers (exact wake counts), on
//! `futures::executor::block_on`, and on tokio's multi-thread runtime
//! (tests named `on_tokio`, which Miri skips), beside threads blocked in
//! `get` on the same capped pool: each waiter served exactly once, a woken
//! future dropped before it took the object passes the wake on, close
//! wakes every future, and nothing stays registered.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll};
use std::thread;
use std::time::Duration;

use multiopen::{Pool, PoolError};

mod common;
use common::{counting, poll, runtime, wakes};

/// Spins (yielding) until `pool` has `n` waiters (threads and futures): a
/// state query, not a sleep.
fn until_waiting<T, E>(pool: &Pool<T, E>, n: usize) {
    while pool.status().waiting < n {
        thread::yield_now();
    }
}

/// Objects that count how many are alive at once, for the cap check.
struct Live {
    now: Arc<AtomicUsize>,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

fn counted_pool(cap: usize) -> (Arc<Pool<Live>>, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let now = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (n, p) = (Arc::clone(&now), Arc::clone(&peak));
    let pool = Pool::builder(move || {
        let live = n.fetch_add(1, Ordering::SeqCst) + 1;
        p.fetch_max(live, Ordering::SeqCst);
        Live {
            now: Arc::clone(&n),
        }
    })
    .max_live(cap)
    .build();
    (Arc::new(pool), now, peak)
}

/// Nothing registered, nobody waiting, the books balanced.
fn at_rest<T, E>(pool: &Pool<T, E>) {
    let status = pool.status();
    assert_eq!(status.waiting, 0, "{status:?}");
    assert_eq!(status.out, 0, "{status:?}");
    assert_eq!(pool.registered_get_wakers(), 0);
}

#[test]
fn uncapped_get_async_is_ready_at_the_first_poll() {
    let pool = Pool::new(|| 7u8);
    let (count, waker) = counting();
    let held: Vec<_> = (0..10).map(|_| pool.instance()).collect();
    let mut get = pool.get_async();
    match poll(&mut get, &waker) {
        Poll::Ready(Ok(guard)) => assert_eq!(*guard, 7),
        other => panic!("{other:?}"),
    }
    drop(held);
    assert_eq!(wakes(&count), 0);
}

#[test]
fn a_return_wakes_exactly_one_future_in_arrival_order() {
    let pool = Pool::builder(|| 0u8).max_live(1).build();
    let held = pool.get().unwrap();
    let (ca, wa) = counting();
    let (cb, wb) = counting();
    let mut a = pool.get_async();
    let mut b = pool.get_async();
    assert!(poll(&mut a, &wa).is_pending());
    assert!(poll(&mut b, &wb).is_pending());
    assert_eq!(pool.status().waiting, 2);
    drop(held);
    assert_eq!((wakes(&ca), wakes(&cb)), (1, 0), "one wake, to the first");
    let got = match poll(&mut a, &wa) {
        Poll::Ready(Ok(guard)) => guard,
        other => panic!("{other:?}"),
    };
    assert_eq!(wakes(&cb), 0, "nothing left for b yet");
    drop(got);
    assert_eq!((wakes(&ca), wakes(&cb)), (1, 1));
    assert!(matches!(poll(&mut b, &wb), Poll::Ready(Ok(_))));
    drop((a, b));
    at_rest(&pool);
}

#[test]
fn a_woken_future_dropped_before_it_looks_passes_the_wake_on() {
    let pool = Pool::builder(|| 0u8).max_live(1).build();
    let held = pool.get().unwrap();
    let (ca, wa) = counting();
    let (cb, wb) = counting();
    let mut a = pool.get_async();
    let mut b = pool.get_async();
    assert!(poll(&mut a, &wa).is_pending());
    assert!(poll(&mut b, &wb).is_pending());
    drop(held);
    assert_eq!((wakes(&ca), wakes(&cb)), (1, 0));
    drop(a); // woken, never polled again: its wake goes to b
    assert_eq!(wakes(&cb), 1, "the wake was passed on");
    assert!(matches!(poll(&mut b, &wb), Poll::Ready(Ok(_))));
    drop(b);
    at_rest(&pool);
}

#[test]
fn a_pending_future_dropped_deregisters_and_takes_no_wake() {
    let pool = Pool::builder(|| 0u8).max_live(1).build();
    let held = pool.get().unwrap();
    let (cb, wb) = counting();
    // Fewer rounds under Miri (about a thousand times slower).
    for _ in 0..if cfg!(miri) { 8 } else { 100 } {
        let (_, w) = counting();
        let mut a = pool.get_async();
        assert!(poll(&mut a, &w).is_pending());
    }
    assert_eq!(pool.registered_get_wakers(), 0);
    let mut b = pool.get_async();
    assert!(poll(&mut b, &wb).is_pending());
    assert_eq!(pool.registered_get_wakers(), 1);
    drop(held);
    assert_eq!(wakes(&cb), 1);
    assert!(matches!(poll(&mut b, &wb), Poll::Ready(Ok(_))));
    drop(b);
    at_rest(&pool);
}

#[test]
fn a_repoll_with_a_new_waker_is_woken_through_it() {
    let pool = Pool::builder(|| 0u8).max_live(1).build();
    let held = pool.get().unwrap();
    let (c1, w1) = counting();
    let (c2, w2) = counting();
    let mut a = pool.get_async();
    assert!(poll(&mut a, &w1).is_pending());
    assert!(poll(&mut a, &w2).is_pending()); // the task moved
    assert_eq!(pool.registered_get_wakers(), 1);
    drop(held);
    assert_eq!((wakes(&c1), wakes(&c2)), (0, 1));
    assert!(matches!(poll(&mut a, &w2), Poll::Ready(Ok(_))));
}

#[test]
fn close_wakes_every_future_with_the_closed_error() {
    let pool = Pool::builder(|| 0u8).max_live(1).build();
    let held = pool.get().unwrap();
    let mut gets: Vec<_> = (0..3).map(|_| (pool.get_async(), counting())).collect();
    for (get, (_, waker)) in &mut gets {
        assert!(poll(get, waker).is_pending());
    }
    pool.close().unwrap();
    for (get, (count, waker)) in &mut gets {
        assert_eq!(wakes(count), 1);
        assert!(matches!(
            poll(get, waker),
            Poll::Ready(Err(PoolError::Closed { .. }))
        ));
    }
    drop(gets);
    drop(held);
    assert_eq!(pool.registered_get_wakers(), 0);
    assert_eq!(pool.status().live, 0);
    let (_, waker) = counting();
    assert!(matches!(
        poll(&mut pool.get_async(), &waker),
        Poll::Ready(Err(PoolError::Closed { .. }))
    ));
}

#[test]
fn resize_growing_wakes_the_futures_it_has_room_for() {
    let pool = Pool::builder(|| 0u8).max_live(1).build();
    let held = pool.get().unwrap();
    let mut gets: Vec<_> = (0..3).map(|_| (pool.get_async(), counting())).collect();
    for (get, (_, waker)) in &mut gets {
        assert!(poll(get, waker).is_pending());
    }
    assert_eq!(pool.resize(3).unwrap(), 1);
    // Room for two: the first is woken; served, it passes the next wake on.
    let mut served = Vec::new();
    for (get, (count, waker)) in gets.iter_mut().take(2) {
        assert_eq!(wakes(count), 1);
        match poll(get, waker) {
            Poll::Ready(Ok(guard)) => served.push(guard),
            other => panic!("{other:?}"),
        }
    }
    let (last, (count, waker)) = &mut gets[2];
    assert_eq!(wakes(count), 0, "no room for the third");
    drop(served);
    assert_eq!(wakes(count), 1);
    assert!(matches!(poll(last, waker), Poll::Ready(Ok(_))));
    drop(gets);
    drop(held);
    at_rest(&pool);
}

#[test]
fn a_rejected_return_frees_room_and_wakes_a_future() {
    let pool = Pool::builder(|| 0u8)
        .max_live(1)
        .has_broken(|_| true)
        .build();
    let held = pool.get().unwrap();
    let (count, waker) = counting();
    let mut get = pool.get_async();
    assert!(poll(&mut get, &waker).is_pending());
    drop(held); // rejected, dropped: its room wakes the future
    assert_eq!(wakes(&count), 1);
    let Poll::Ready(Ok(got)) = poll(&mut get, &waker) else {
        panic!("woken but not served");
    };
    assert_eq!(pool.stats().rejected, 1);
    drop(got);
}

#[test]
fn a_thread_and_a_future_on_one_cap_are_each_served_once() {
    let pool = Pool::builder(|| 0u8).max_live(1).build();
    let held = pool.get().unwrap();
    let served = AtomicUsize::new(0);
    thread::scope(|s| {
        let blocking = s.spawn(|| {
            let g = pool.get().unwrap();
            served.fetch_add(1, Ordering::SeqCst);
            drop(g);
        });
        let task = s.spawn(|| {
            let g = futures::executor::block_on(pool.get_async()).unwrap();
            served.fetch_add(1, Ordering::SeqCst);
            drop(g);
        });
        until_waiting(&pool, 2);
        drop(held);
        blocking.join().unwrap();
        task.join().unwrap();
    });
    assert_eq!(served.load(Ordering::SeqCst), 2);
    at_rest(&pool);
}

#[test]
fn get_owned_async_outlives_the_borrow() {
    let pool = Arc::new(Pool::builder(|| 3u8).max_live(1).build());
    let guard = futures::executor::block_on(pool.get_owned_async()).unwrap();
    let waiter = {
        let pool = Arc::clone(&pool);
        thread::spawn(move || *futures::executor::block_on(pool.get_owned_async()).unwrap())
    };
    until_waiting(&pool, 1);
    drop(guard);
    assert_eq!(waiter.join().unwrap(), 3);
    at_rest(&pool);
}

/// Polls `inner` once; if that is pending, the next poll (the wake)
/// drops `inner` without polling it again: a task abandoning its get as a
/// `select!` or a time-out would, right after being woken.
struct DropWhenWoken<F> {
    inner: Option<F>,
    polled: bool,
}

impl<F: Future + Unpin> Future for DropWhenWoken<F> {
    type Output = bool; // got an object

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        if self.polled {
            self.inner = None;
            return Poll::Ready(false);
        }
        self.polled = true;
        let inner = self.inner.as_mut().expect("polled once");
        match Pin::new(inner).poll(cx) {
            Poll::Ready(_) => Poll::Ready(true),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[test]
fn woken_futures_dropped_on_block_on_pass_every_wake_on() {
    let pool = Pool::builder(|| 0u8).max_live(1).build();
    let rounds = 20;
    thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..rounds {
                    let g = futures::executor::block_on(pool.get_async()).unwrap();
                    drop(g);
                }
            });
        }
        s.spawn(|| {
            for _ in 0..rounds {
                futures::executor::block_on(DropWhenWoken {
                    inner: Some(pool.get_async()),
                    polled: false,
                });
            }
        });
    });
    at_rest(&pool);
}

/// Runs `body` on a fresh runtime in its own thread; fails (instead of
/// hanging the test run) if it has not finished within a generous time.
fn with_watchdog(name: &str, body: impl FnOnce(tokio::runtime::Runtime) + Send + 'static) {
    let (done, finished) = mpsc::channel();
    let worker = thread::spawn(move || {
        body(runtime());
        let _ = done.send(());
    });
    match finished.recv_timeout(Duration::from_secs(120)) {
        Ok(()) => worker.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => worker.join().unwrap(), // panicked
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{name}: hung (a lost wake-up)"),
    }
}

#[test]
fn on_tokio_mixed_blocking_and_async_waiters_each_served_once() {
    let (pool, now, peak) = counted_pool(2);
    let served = Arc::new(AtomicUsize::new(0));
    let (threads, tasks, rounds) = (4, 64, 50);
    let p = Arc::clone(&pool);
    let s = Arc::clone(&served);
    with_watchdog("mixed", move |rt| {
        let blocking: Vec<_> = (0..threads)
            .map(|_| {
                let (pool, served) = (Arc::clone(&p), Arc::clone(&s));
                thread::spawn(move || {
                    for _ in 0..rounds {
                        let g = pool.get().unwrap();
                        served.fetch_add(1, Ordering::SeqCst);
                        drop(g);
                    }
                })
            })
            .collect();
        rt.block_on(async {
            let handles: Vec<_> = (0..tasks)
                .map(|_| {
                    let (pool, served) = (Arc::clone(&p), Arc::clone(&s));
                    tokio::spawn(async move {
                        for _ in 0..rounds {
                            let g = pool.get_owned_async().await.unwrap();
                            served.fetch_add(1, Ordering::SeqCst);
                            tokio::task::yield_now().await; // hold across a yield
                            drop(g);
                        }
                    })
                })
                .collect();
            for h in handles {
                h.await.unwrap();
            }
        });
        for t in blocking {
            t.join().unwrap();
        }
    });
    assert_eq!(served.load(Ordering::SeqCst), (threads + tasks) * rounds);
    assert!(peak.load(Ordering::SeqCst) <= 2, "the cap held");
    assert!(now.load(Ordering::SeqCst) <= 2);
    at_rest(&pool);
}

#[test]
fn on_tokio_thousands_of_tasks_on_a_cap_of_two_all_finish() {
    let (pool, _, peak) = counted_pool(2);
    let served = Arc::new(AtomicUsize::new(0));
    let tasks = 4000;
    let (p, s) = (Arc::clone(&pool), Arc::clone(&served));
    with_watchdog("thousands", move |rt| {
        rt.block_on(async {
            let handles: Vec<_> = (0..tasks)
                .map(|_| {
                    let (pool, served) = (Arc::clone(&p), Arc::clone(&s));
                    tokio::spawn(async move {
                        let g = pool.get_owned_async().await.unwrap();
                        tokio::task::yield_now().await;
                        served.fetch_add(1, Ordering::SeqCst);
                        drop(g);
                    })
                })
                .collect();
            for h in handles {
                h.await.unwrap();
            }
        });
    });
    assert_eq!(served.load(Ordering::SeqCst), tasks);
    assert!(peak.load(Ordering::SeqCst) <= 2);
    at_rest(&pool);
}

#[test]
fn on_tokio_woken_futures_dropped_pass_their_wakes_on() {
    // Half the tasks abandon their get right after being woken; without
    // the pass-on, a wake sent to one of them is lost and the others hang
    // (the watchdog fails the test).
    let (pool, _, _) = counted_pool(1);
    let served = Arc::new(AtomicUsize::new(0));
    let (p, s) = (Arc::clone(&pool), Arc::clone(&served));
    with_watchdog("pass-on", move |rt| {
        rt.block_on(async {
            let handles: Vec<_> = (0..200)
                .map(|i| {
                    let (pool, served) = (Arc::clone(&p), Arc::clone(&s));
                    tokio::spawn(async move {
                        for _ in 0..20 {
                            if i % 2 == 0 {
                                let g = pool.get_owned_async().await.unwrap();
                                served.fetch_add(1, Ordering::SeqCst);
                                tokio::task::yield_now().await;
                                drop(g);
                            } else {
                                let get = pool.get_owned_async();
                                DropWhenWoken {
                                    inner: Some(get),
                                    polled: false,
                                }
                                .await;
                            }
                        }
                    })
                })
                .collect();
            for h in handles {
                h.await.unwrap();
            }
        });
    });
    assert_eq!(served.load(Ordering::SeqCst), 100 * 20);
    at_rest(&pool);
}

#[test]
fn on_tokio_close_wakes_all_waiting_tasks() {
    let (pool, _, _) = counted_pool(1);
    let held = pool.get().unwrap();
    let rt = runtime();
    let handles: Vec<_> = (0..100)
        .map(|_| {
            let pool = Arc::clone(&pool);
            rt.spawn(async move { pool.get_owned_async().await.map(|_| ()) })
        })
        .collect();
    until_waiting(&pool, 100);
    pool.close().unwrap();
    let (done, finished) = mpsc::channel();
    thread::spawn(move || {
        let results = rt.block_on(async {
            let mut results = Vec::new();
            for h in handles {
                results.push(h.await.unwrap());
            }
            results
        });
        let _ = done.send(results);
    });
    let results = finished
        .recv_timeout(Duration::from_secs(120))
        .expect("close woke every task");
    assert!(results
        .iter()
        .all(|r| matches!(r, Err(PoolError::Closed { .. }))));
    drop(held);
    assert_eq!(pool.registered_get_wakers(), 0);
    assert_eq!(pool.status().live, 0);
}

#[test]
fn on_tokio_a_timeout_is_the_runtimes_and_leaves_nothing_behind() {
    let (pool, _, _) = counted_pool(1);
    let held = pool.get().unwrap();
    let rt = runtime();
    let timed_out = rt
        .block_on(async { tokio::time::timeout(Duration::from_millis(5), pool.get_async()).await });
    assert!(timed_out.is_err(), "no object came");
    assert_eq!(pool.registered_get_wakers(), 0);
    drop(held);
    let got = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(60), pool.get_async()).await });
    assert!(matches!(got, Ok(Ok(_))));
    drop(got);
    at_rest(&pool);
}

/// A waker that resizes the pool that woke it: user code, which must run
/// under no lock of the pool (the kind: a wake runs user code, so it comes
/// after every crate lock is released).
struct ResizingWaker {
    pool: Arc<Pool<Live>>,
    to: usize,
    woken: AtomicUsize,
}

impl std::task::Wake for ResizingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.fetch_add(1, Ordering::SeqCst);
        self.pool.resize(self.to).expect("a cap in range");
    }
}

#[test]
fn a_waker_may_lock_what_its_wake_held_resize() {
    let (pool, _, _) = counted_pool(1);
    let held = pool.get().unwrap();
    let waker_state = Arc::new(ResizingWaker {
        pool: Arc::clone(&pool),
        to: 3,
        woken: AtomicUsize::new(0),
    });
    let waker = std::task::Waker::from(Arc::clone(&waker_state));
    let mut get = pool.get_async();
    assert!(poll(&mut get, &waker).is_pending());
    // Room for the waiting future: its waker runs, and resizes again.
    let resizer = Arc::clone(&pool);
    let old = common::no_deadlock("a resize whose wake resizes", move || {
        resizer.resize(2).unwrap()
    });
    assert_eq!(old, 1);
    assert_eq!(waker_state.woken.load(Ordering::SeqCst), 1);
    assert!(matches!(poll(&mut get, &waker), Poll::Ready(Ok(_))));
    // The waker's resize came after ours: the cap is its.
    assert_eq!(pool.resize(3).unwrap(), 3);
    drop((get, held));
    at_rest(&pool);
}
