//! loom models of `Pool::get_async` (`src/pool/futures.rs`,
//! `src/pool/limit/wait_async.rs`): a future's registration racing a
//! return, a woken future dropped while another waits (the wake passed
//! on), and a thread and a future waiting on one cap. Each has a mutant
//! in `loom-tests/mutants.txt` (`bash loom-tests/mutants.sh pool::async_`).
//!
//! No executor under loom: each model polls its futures by hand with a
//! waker that counts its wakes. A future found pending must be woken and
//! then served; a lost wake-up shows as a count that never moves (an
//! assertion) or a thread that never wakes (a loom deadlock). The objects
//! are probes (a loom `UnsafeCell` each holder writes, so two holders at
//! once, or a hand-over without a happens-before edge, is a data race
//! loom reports; `pool_probe.rs`, shared with `pool.rs` and
//! `pool_capped.rs`), and the books are checked at the end as in
//! `pool_capped.rs`.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release --test loom_async_pool`.
#![cfg(loom)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use loom::sync::atomic::AtomicUsize;
use loom::thread;
use multiopen::Pool;

#[path = "pool_probe.rs"]
mod pool_probe;
use pool_probe::{model, Counts, Probe};

/// A pool of probes capped at `cap`.
fn pool(cap: usize) -> (Arc<Pool<Probe>>, Arc<Counts>) {
    let (counts, factory) = pool_probe::factory();
    let pool = Pool::builder(factory).max_size(2).max_live(cap).build();
    (Arc::new(pool), counts)
}

/// The end-of-model books: nobody waiting or registered, nothing lost,
/// and the pool serves again.
fn check(pool: &Pool<Probe>, counts: &Counts) {
    let status = pool.status();
    let alive = counts.alive();
    assert_eq!(status.waiting, 0, "{status:?}");
    assert_eq!(pool.registered_get_wakers(), 0);
    assert_eq!(status.out, 0, "{status:?}");
    assert_eq!(status.live, alive, "the word's count is off: {status:?}");
    pool.try_get().expect("the pool serves again").touch();
}

/// A waker that counts its wakes.
struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
}

fn counting() -> (Arc<Count>, Waker) {
    let count = Arc::new(Count(AtomicUsize::new(0)));
    (Arc::clone(&count), Waker::from(count))
}

fn poll<F: Future + Unpin>(future: &mut F, waker: &Waker) -> Poll<F::Output> {
    Pin::new(future).poll(&mut Context::from_waker(waker))
}

/// A future's first poll races the return that frees the cap (cap 1): if
/// it is pending, the return woke it exactly once and it is served at its
/// next poll. Mutants: `pool::async_check_then_register` (looks before
/// publishing its waker: the return finds the bit and an empty queue),
/// `pool::async_wake_skips_futures` (a due wake goes to the futex only).
#[test]
fn registration_races_a_return() {
    model(None, || {
        let (pool, counts) = pool(1);
        let held = pool.get_owned().unwrap();
        let returner = thread::spawn(move || {
            held.touch();
            drop(held);
        });
        let (count, waker) = counting();
        let mut get = pool.get_async();
        let first = poll(&mut get, &waker);
        returner.join().unwrap();
        let guard = match first {
            Poll::Ready(result) => result.unwrap(),
            Poll::Pending => {
                assert_eq!(count.0.load(SeqCst), 1, "a pending get must be woken once");
                match poll(&mut get, &waker) {
                    Poll::Ready(result) => result.unwrap(),
                    Poll::Pending => panic!("woken but not served"),
                }
            }
        };
        guard.touch();
        drop(guard);
        drop(get);
        check(&pool, &counts);
    });
}

/// Two futures wait (cap 1); the return wakes the first, which is dropped
/// (never polled again) while the return runs: the second is woken exactly
/// once and served. Mutant: `pool::async_drop_no_pass_on` (the dropped
/// future leaves without looking: the wake in flight is never consumed and
/// the second future is never woken).
#[test]
fn a_woken_future_dropped_while_another_waits() {
    model(None, || {
        let (pool, counts) = pool(1);
        let held = pool.get_owned().unwrap();
        let (_, wa) = counting();
        let (cb, wb) = counting();
        let mut a = pool.get_async();
        let mut b = pool.get_async();
        assert!(poll(&mut a, &wa).is_pending());
        assert!(poll(&mut b, &wb).is_pending());
        let returner = thread::spawn(move || {
            held.touch();
            drop(held);
        });
        drop(a);
        returner.join().unwrap();
        assert_eq!(
            cb.0.load(SeqCst),
            1,
            "the waiting future must be woken once"
        );
        match poll(&mut b, &wb) {
            Poll::Ready(result) => result.unwrap().touch(),
            Poll::Pending => panic!("woken but not served"),
        }
        drop(b);
        check(&pool, &counts);
    });
}

/// A thread blocked in `get` and a future on one cap of 1, one return: both
/// are served, one after the other, whichever is woken first. Mutant:
/// `pool::async_look_keeps_woken` (a woken future's look does not consume
/// the wake in flight, so its own return wakes nobody and the thread
/// sleeps for ever: a loom deadlock). Preemption bound 3.
#[test]
fn a_thread_and_a_future_on_one_cap() {
    model(Some(3), || {
        let (pool, counts) = pool(1);
        let held = pool.get_owned().unwrap();
        let p = Arc::clone(&pool);
        let mut blocking = Some(thread::spawn(move || p.get().unwrap().touch()));
        let (count, waker) = counting();
        let mut get = pool.get_async();
        let mut seen = 0;
        let mut served = match poll(&mut get, &waker) {
            Poll::Ready(result) => Some(result.unwrap()),
            Poll::Pending => None,
        };
        let returner = thread::spawn(move || {
            held.touch();
            drop(held);
        });
        returner.join().unwrap();
        while served.is_none() {
            let now = count.0.load(SeqCst);
            if now > seen {
                seen = now;
                if let Poll::Ready(result) = poll(&mut get, &waker) {
                    served = Some(result.unwrap());
                }
            } else {
                // Not woken (yet): the object went to the thread, which
                // returns it and so wakes the future.
                blocking
                    .take()
                    .expect("the future was never woken")
                    .join()
                    .unwrap();
            }
        }
        let guard = served.unwrap();
        guard.touch();
        drop(guard);
        if let Some(t) = blocking {
            t.join().unwrap();
        }
        drop(get);
        check(&pool, &counts);
    });
}
