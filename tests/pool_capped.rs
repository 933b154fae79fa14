#![cfg(not(loom))]
//! A capped `Pool` (issue 15): the cap on live objects, `get` and its
//! non-blocking and timed forms, close, resize, and bad input of each kind.
//! The stress test and the property test are in `pool_capped_stress.rs`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Barrier};
use std::time::{Duration, Instant};

use multiopen::{Pool, PoolError};

/// Objects that count themselves alive in `live`.
#[derive(Debug)]
struct Counted {
    live: Arc<AtomicUsize>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.live.fetch_sub(1, SeqCst);
    }
}

fn counted_pool(cap: usize, max_size: usize) -> (Arc<Pool<Counted>>, Arc<AtomicUsize>) {
    let live = Arc::new(AtomicUsize::new(0));
    let l = Arc::clone(&live);
    let pool = Pool::builder(move || {
        l.fetch_add(1, SeqCst);
        Counted {
            live: Arc::clone(&l),
        }
    })
    .max_size(max_size)
    .max_live(cap)
    .build();
    (Arc::new(pool), live)
}

/// Waits (yielding) until `cond` holds: for state the test observes, never
/// for wall-clock time.
fn until(mut cond: impl FnMut() -> bool) {
    while !cond() {
        std::thread::yield_now();
    }
}

#[test]
fn the_cap_bounds_live_objects_and_get_waits_for_a_return() {
    let (pool, live) = counted_pool(2, 4);
    let a = pool.get().unwrap();
    let b = pool.get().unwrap();
    assert_eq!(live.load(SeqCst), 2);
    std::thread::scope(|s| {
        let waiter = s.spawn(|| pool.get().map(drop).is_ok());
        until(|| pool.status().waiting == 1);
        drop(a);
        assert!(waiter.join().unwrap());
    });
    assert_eq!(
        live.load(SeqCst),
        2,
        "the waiter reused the returned object"
    );
    drop(b);
    let s = pool.stats();
    assert_eq!((s.created, s.waited), (2, 1));
    assert_eq!(s.created, s.retired() + s.idle + s.out);
}

#[test]
fn instance_waits_at_the_cap_too() {
    let (pool, _live) = counted_pool(1, 4);
    let held = pool.instance();
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            let g = pool.instance();
            tx.send(()).unwrap();
            drop(g);
        });
        until(|| pool.status().waiting == 1);
        assert!(rx.try_recv().is_err(), "served above the cap");
        drop(held);
        rx.recv().unwrap();
    });
    assert_eq!(pool.stats().created, 1);
}

#[test]
fn try_get_never_waits_and_says_exhausted() {
    let (pool, _live) = counted_pool(1, 4);
    let held = pool.try_get().unwrap();
    let err = pool.try_get().unwrap_err();
    assert!(
        matches!(
            err,
            PoolError::Exhausted {
                live: 1,
                cap: 1,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "get from pool found it exhausted: 1 of 1 objects alive, none idle"
    );
    drop(held);
    assert!(pool.try_get().is_ok());
}

#[test]
fn get_timeout_times_out_after_at_least_the_timeout() {
    let (pool, _live) = counted_pool(1, 4);
    let _held = pool.get().unwrap();
    let timeout = Duration::from_millis(20);
    let start = Instant::now();
    let err = pool.get_timeout(timeout).unwrap_err();
    assert!(start.elapsed() >= timeout);
    match &err {
        PoolError::TimedOut {
            waited, live, cap, ..
        } => {
            assert!(*waited >= timeout);
            assert_eq!((*live, *cap), (1, 1));
        }
        other => panic!("{other:?}"),
    }
    assert!(err.is_timeout());
    let s = pool.stats();
    assert_eq!((s.waited, s.timed_out), (1, 1));
    assert!(s.wait_longest >= timeout && s.wait_total >= timeout);
    assert_eq!(pool.status().waiting, 0, "the timed-out waiter left");
}

#[test]
fn zero_timeout_and_past_deadline_are_tries() {
    let (pool, _live) = counted_pool(1, 4);
    assert!(pool.get_timeout(Duration::ZERO).is_ok()); // room: served
    let _held = pool.get().unwrap();
    assert!(matches!(
        pool.get_timeout(Duration::ZERO),
        Err(PoolError::Exhausted { .. })
    ));
    let past = Instant::now() - Duration::from_secs(1);
    assert!(matches!(
        pool.get_deadline(past),
        Err(PoolError::Exhausted { .. })
    ));
}

#[test]
fn duration_max_timeout_waits_for_ever_without_overflow() {
    let (pool, _live) = counted_pool(1, 4);
    let held = pool.get().unwrap();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| pool.get_timeout(Duration::MAX).map(drop));
        until(|| pool.status().waiting == 1);
        drop(held);
        assert!(waiter.join().unwrap().is_ok());
    });
}

#[test]
fn factory_error_gives_the_room_back_and_wakes_a_waiter() {
    // deadpool#18: a failing factory must not keep the room it held.
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let f = Arc::clone(&fail);
    let pool = Pool::try_builder(move || if f.load(SeqCst) { Err("down") } else { Ok(0u8) })
        .max_live(1)
        .build();
    let held = pool.get().unwrap();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| pool.get().map(|g| *g));
        until(|| pool.status().waiting == 1);
        held.take(); // room frees: the waiter runs the factory
        assert_eq!(waiter.join().unwrap(), Ok(0));
    });
    fail.store(true, SeqCst);
    pool.clear();
    for _ in 0..3 {
        let err = pool.get().unwrap_err();
        assert_eq!(err.to_string(), "factory of pool failed: down");
        assert_eq!(err.into_factory_error(), Some("down"));
    }
    assert_eq!(pool.status().live, 0, "every failure gave its room back");
    fail.store(false, SeqCst);
    assert!(pool.try_get().is_ok());
}

#[test]
fn factory_panic_gives_the_room_back() {
    let pool = Pool::builder(|| -> u8 { panic!("factory") })
        .max_live(1)
        .build();
    for _ in 0..2 {
        let r = common::quietly(|| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pool.get().map(drop)))
        });
        assert!(r.is_err());
    }
    assert_eq!(pool.status().live, 0);
    assert_eq!(pool.stats().failed, 2);
}

#[test]
fn reset_hook_panic_gives_the_room_back() {
    let pool = Pool::builder(|| 0u8)
        .reset(|_| panic!("reset"))
        .max_live(1)
        .build();
    let g = pool.get().unwrap();
    let r = common::quietly(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(g))));
    assert!(r.is_err());
    assert_eq!(pool.status().live, 0);
    assert!(pool.try_get().map(|g| g.take()).is_ok());
}

#[test]
fn close_wakes_every_waiter_with_closed_and_drops_returns() {
    let (pool, live) = counted_pool(1, 4);
    let held = pool.get().unwrap();
    std::thread::scope(|s| {
        let waiters: Vec<_> = (0..3).map(|_| s.spawn(|| pool.get().map(drop))).collect();
        until(|| pool.status().waiting == 3);
        pool.close().unwrap();
        for w in waiters {
            assert!(matches!(w.join().unwrap(), Err(PoolError::Closed { .. })));
        }
    });
    assert!(pool.is_closed());
    drop(held);
    assert_eq!(live.load(SeqCst), 0, "returned after close: dropped");
    assert_eq!(pool.len(), 0);
    assert_eq!(pool.stats().dropped_closed, 1);
}

#[test]
fn close_twice_is_an_error_and_changes_nothing() {
    let (pool, _live) = counted_pool(2, 4);
    pool.close().unwrap();
    let err = pool.close().unwrap_err();
    assert!(matches!(err, PoolError::Closed { .. }));
    assert_eq!(err.to_string(), "pool is closed");
}

#[test]
fn close_drops_the_idle_objects() {
    let (pool, live) = counted_pool(3, 4);
    assert_eq!(pool.prefill(3), 3);
    pool.close().unwrap();
    assert_eq!(
        (live.load(SeqCst), pool.len(), pool.status().live),
        (0, 0, 0)
    );
    assert_eq!(pool.prefill(1), 0, "a closed pool takes no prefill");
}

/// `instance` cannot return `Closed`, and must not break the cap: on a
/// closed pool it waits for room like any acquire, makes a fresh object
/// (counted), and the object is dropped on return.
#[test]
fn instance_on_a_closed_pool_obeys_the_cap() {
    let (pool, live) = counted_pool(1, 4);
    let held = pool.get().unwrap();
    pool.close().unwrap();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let _g = pool.instance();
            live.load(SeqCst)
        });
        until(|| pool.status().waiting == 1);
        assert_eq!(live.load(SeqCst), 1, "still only the held one");
        drop(held); // dropped (closed): its room goes to the waiter
        assert_eq!(waiter.join().unwrap(), 1, "never two alive");
    });
    assert_eq!(live.load(SeqCst), 0, "dropped on return");
    let taken = pool.instance().take();
    drop(taken);
    let s = pool.stats();
    assert_eq!((s.created, s.taken), (3, 1));
    assert_eq!(s.created, s.retired() + s.idle + s.out, "{s:?}");
    assert_eq!(pool.status().live, 0);
}

#[test]
fn close_and_resize_on_an_uncapped_pool_are_errors() {
    let pool = Pool::new(|| 0u8);
    assert!(matches!(
        pool.close(),
        Err(PoolError::Uncapped { what: "close", .. })
    ));
    assert!(matches!(
        pool.resize(3),
        Err(PoolError::Uncapped { what: "resize", .. })
    ));
    assert!(!pool.is_closed());
    assert_eq!(pool.max_live(), None);
    assert!(pool.get().is_ok() && pool.try_get().is_ok());
}

#[test]
fn resize_to_zero_or_above_max_live_is_refused() {
    let (pool, _live) = counted_pool(2, 4);
    for cap in [0, Pool::<u8>::MAX_LIVE + 1, usize::MAX] {
        let err = pool.resize(cap).unwrap_err();
        assert!(matches!(err, PoolError::InvalidCap { .. }), "{err}");
    }
    assert_eq!(pool.max_live(), Some(2));
    pool.close().unwrap();
    assert!(matches!(pool.resize(3), Err(PoolError::Closed { .. })));
}

#[test]
fn cap_zero_means_no_cap_and_huge_caps_clamp() {
    let pool = Pool::builder(|| 0u8).max_live(0).build();
    assert_eq!(pool.max_live(), None);
    let pool = Pool::builder(|| 0u8).max_live(usize::MAX).build();
    assert_eq!(pool.max_live(), Some(Pool::<u8>::MAX_LIVE));
}

#[test]
fn cap_below_max_size_bounds_the_idle_objects_too() {
    let (pool, live) = counted_pool(2, 8);
    let held: Vec<_> = (0..2).map(|_| pool.get().unwrap()).collect();
    drop(held);
    assert_eq!((pool.len(), live.load(SeqCst)), (2, 2));
    assert_eq!(pool.prefill(8), 0, "at the cap");
}

#[test]
fn max_size_below_the_cap_drops_returns_and_frees_room() {
    let (pool, live) = counted_pool(4, 1);
    let held: Vec<_> = (0..4).map(|_| pool.get().unwrap()).collect();
    drop(held);
    assert_eq!((pool.len(), live.load(SeqCst)), (1, 1));
    assert_eq!(pool.stats().dropped_full, 3);
    assert_eq!(pool.status().live, 1);
}

#[test]
fn growing_wakes_waiters() {
    let (pool, _live) = counted_pool(1, 4);
    let _held = pool.get().unwrap();
    std::thread::scope(|s| {
        let waiters: Vec<_> = (0..2)
            .map(|_| s.spawn(|| pool.get().map(|g| g.take())))
            .collect();
        until(|| pool.status().waiting == 2);
        assert_eq!(pool.resize(3).unwrap(), 1);
        for w in waiters {
            assert!(w.join().unwrap().is_ok());
        }
    });
}

#[test]
fn shrinking_drops_idle_now_and_handed_out_on_return() {
    let (pool, live) = counted_pool(4, 4);
    let mut held: Vec<_> = (0..4).map(|_| pool.get().unwrap()).collect();
    held.truncate(2); // two back: 2 idle, 2 out
    assert_eq!((pool.len(), live.load(SeqCst)), (2, 4));
    assert_eq!(pool.resize(1).unwrap(), 4);
    assert_eq!(
        (pool.len(), live.load(SeqCst)),
        (0, 2),
        "idle over the cap dropped"
    );
    assert!(matches!(pool.try_get(), Err(PoolError::Exhausted { .. })));
    held.pop();
    assert_eq!(live.load(SeqCst), 1, "a return over the cap is dropped");
    held.pop();
    assert_eq!(
        (pool.len(), live.load(SeqCst)),
        (1, 1),
        "within the cap: kept"
    );
    assert!(pool.try_get().is_ok());
}

#[test]
fn forgotten_guard_keeps_its_room() {
    let (pool, _live) = counted_pool(2, 4);
    std::mem::forget(pool.get().unwrap());
    assert_eq!(pool.status().live, 1);
    let _one = pool.get().unwrap();
    assert!(matches!(pool.try_get(), Err(PoolError::Exhausted { .. })));
}

#[test]
fn taken_object_frees_its_room() {
    let (pool, live) = counted_pool(1, 4);
    let kept = pool.get().unwrap().take();
    assert_eq!(pool.status().live, 0);
    let _g = pool.get().unwrap();
    assert_eq!(live.load(SeqCst), 2); // `kept` lives on outside the pool
    drop(kept);
}

#[test]
fn reset_hook_runs_only_on_objects_kept() {
    let resets = Arc::new(AtomicUsize::new(0));
    let r = Arc::clone(&resets);
    let pool = Pool::builder(|| 0u8)
        .reset(move |_| {
            r.fetch_add(1, SeqCst);
        })
        .max_live(2)
        .build();
    let (a, b) = (pool.get().unwrap(), pool.get().unwrap());
    pool.close().unwrap();
    drop((a, b));
    assert_eq!(
        resets.load(SeqCst),
        0,
        "no reset on objects about to be dropped"
    );
}

#[test]
fn status_counts_waiters() {
    let (pool, _live) = counted_pool(1, 4);
    let held = pool.get().unwrap();
    let barrier = Barrier::new(3);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                barrier.wait();
                drop(pool.get().unwrap());
            });
        }
        barrier.wait();
        until(|| pool.status().waiting == 2);
        let st = pool.status();
        assert_eq!((st.live, st.idle, st.out, st.cap), (1, 0, 1, Some(1)));
        drop(held);
    });
    assert_eq!(pool.status().waiting, 0);
}

/// The fairness bound the docs state (`multiopen::pool`, "Fairness"):
/// three threads share a cap-1 pool, each holding the object for a 50 µs
/// busy spin; every return is followed at once by the returner's next
/// `get`, so it barges past the woken waiter every time, and only the
/// 1 ms hand-off serves the waiters. Over 1,500 acquires (75 ms of holds)
/// the least-served thread must get at least a tenth of the mean share
/// (with hand-off working it gets about a third or more: a waiter is
/// served within about 1 ms + two holds, a 1.1 ms cycle against the
/// others' 0.1 ms), and the hand-off must have engaged. With the hand-off
/// switched off, barging runs up to the barge limit (1023 objects, 51 ms
/// here), and the least-served thread gets next to nothing: this test then
/// fails (checked by hand when it was written, see the commit message).
///
/// A flaky-test fix (a share measured on a loaded machine, neither a sleep
/// for ordering nor two incoherent reads): the bound is about threads that
/// compete, and one the scheduler does not run for the whole round (seen:
/// `[648, 1, 853]` at load 9 on 2 cores, its one wait 532 ms) is not
/// competing. Such a round proves nothing and is run again, up to
/// `ROUNDS`; a pool without the hand-off fails every round. The books
/// are checked in every round.
#[test]
fn a_starving_waiter_turns_the_pool_to_hand_off() {
    const THREADS: usize = 3;
    const TOTAL: usize = 1500;
    const ROUNDS: usize = 5;
    let mut unfair = Vec::new();
    for _ in 0..ROUNDS {
        let (pool, _live) = counted_pool(1, 4);
        let done = AtomicUsize::new(0);
        let barrier = Barrier::new(THREADS);
        let counts: Vec<usize> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..THREADS)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        let mut mine = 0;
                        while done.load(SeqCst) < TOTAL {
                            let g = pool.get().unwrap();
                            let hold = Instant::now();
                            while hold.elapsed() < Duration::from_micros(50) {
                                std::hint::spin_loop();
                            }
                            drop(g);
                            mine += 1;
                            done.fetch_add(1, SeqCst);
                        }
                        mine
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        let s = pool.stats();
        assert_eq!(s.created, 1);
        assert_eq!(s.created, s.retired() + s.idle + s.out);
        assert_eq!(pool.status().waiting, 0);
        let mean = counts.iter().sum::<usize>() as f64 / THREADS as f64;
        let least = *counts.iter().min().unwrap() as f64 / mean;
        if s.handoffs > 0 && least >= 0.1 {
            return;
        }
        unfair.push(format!(
            "handoffs {}, least-served share {least:.2} of the mean: {counts:?}, {s:?}",
            s.handoffs
        ));
    }
    panic!(
        "the hand-off never engaged, or the least-served thread got under a tenth \
         of the mean share, in all {ROUNDS} rounds:\n{}",
        unfair.join("\n")
    );
}

#[test]
fn is_valid_rejects_an_idle_object_and_the_get_makes_another() {
    let (made, checked) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (m, c) = (Arc::clone(&made), Arc::clone(&checked));
    let pool = Pool::builder(move || m.fetch_add(1, SeqCst))
        .max_live(1)
        .is_valid(move |id| {
            c.fetch_add(1, SeqCst);
            *id % 2 == 1 // object 0 goes stale, 1 stays good
        })
        .build();
    assert_eq!(*pool.get().unwrap(), 0, "fresh: not checked");
    assert_eq!(checked.load(SeqCst), 0);
    assert_eq!(*pool.get().unwrap(), 1, "0 rejected, its room made 1");
    assert_eq!(*pool.get().unwrap(), 1, "1 passes");
    let s = pool.stats();
    assert_eq!((s.created, s.rejected, checked.load(SeqCst)), (2, 1, 2));
    assert_eq!(s.created, s.retired() + s.idle + s.out, "{s:?}");
    assert_eq!(pool.status().live, 1);
}

#[test]
fn a_rejected_return_frees_room_and_wakes_a_waiter() {
    let (pool, live) = {
        let live = Arc::new(AtomicUsize::new(0));
        let l = Arc::clone(&live);
        let resets = Arc::new(AtomicUsize::new(0));
        let pool = Pool::builder(move || {
            l.fetch_add(1, SeqCst);
            Counted {
                live: Arc::clone(&l),
            }
        })
        .max_live(1)
        .has_broken(|_| true)
        .reset(move |_| {
            resets.fetch_add(1, SeqCst);
            panic!("the reset hook must not run on a broken object");
        })
        .build();
        (Arc::new(pool), live)
    };
    let held = pool.get().unwrap();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| pool.get().map(|_| live.load(SeqCst)));
        until(|| pool.status().waiting == 1);
        drop(held); // broken: dropped, its room wakes the waiter
        assert_eq!(waiter.join().unwrap(), Ok(1));
    });
    let s = pool.stats();
    assert_eq!((s.created, s.rejected, s.returned), (2, 2, 0));
    assert_eq!(s.created, s.retired() + s.idle + s.out, "{s:?}");
    assert_eq!(live.load(SeqCst), 0);
}

#[test]
fn a_panicking_validation_hook_gives_the_room_back() {
    let pool = Pool::builder(|| 0u8)
        .max_live(1)
        .is_valid(|_| panic!("is_valid"))
        .build();
    drop(pool.get().unwrap());
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pool.get()));
    assert!(caught.is_err(), "the hook's panic reaches the caller");
    let s = pool.stats();
    assert_eq!((s.rejected, s.idle, s.out), (1, 0, 0));
    assert_eq!(pool.status().live, 0, "the room is free again");
    assert!(pool.try_get().is_ok());

    let broken = Pool::builder(|| 0u8)
        .max_live(1)
        .has_broken(|v| if *v == 1 { panic!("has_broken") } else { false })
        .build();
    let mut g = broken.get().unwrap();
    *g = 1;
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(g)));
    assert!(caught.is_err());
    assert_eq!((broken.stats().rejected, broken.status().live), (1, 0));
    assert!(broken.try_get().is_ok());
}

#[test]
fn validation_without_a_cap_counts_up_to_max_live() {
    let pool = Pool::builder(|| 0u8).has_broken(|v| *v > 0).build();
    assert_eq!(pool.max_live(), Some(Pool::<u8>::MAX_LIVE));
    *pool.instance() = 1;
    drop(pool.instance());
    let s = pool.stats();
    assert_eq!((s.created, s.rejected, s.returned), (2, 1, 1));
}

#[test]
fn reset_hook_skips_returns_to_a_full_pool() {
    let resets = Arc::new(AtomicUsize::new(0));
    let r = Arc::clone(&resets);
    let pool = Pool::builder(|| 0u8)
        .reset(move |_| {
            r.fetch_add(1, SeqCst);
        })
        .max_size(1)
        .max_live(3)
        .build();
    let (a, b, c) = (
        pool.get().unwrap(),
        pool.get().unwrap(),
        pool.get().unwrap(),
    );
    drop((a, b, c)); // one kept, two dropped as full
    let s = pool.stats();
    assert_eq!((s.returned, s.dropped_full), (1, 2));
    assert_eq!(resets.load(SeqCst), 1, "reset only the one kept");
    assert_eq!(pool.status().live, 1);
}

#[test]
fn retain_drops_idle_objects_on_demand_capped_and_not() {
    for cap in [0, 4] {
        let pool = Pool::builder(|| 0u32).max_live(cap).max_size(4).build();
        let mut held: Vec<_> = (0..4).map(|_| pool.instance()).collect();
        for (n, g) in held.iter_mut().enumerate() {
            **g = n as u32;
        }
        let last = held.pop().unwrap(); // stays out: retain does not see it
        drop(held);
        assert_eq!(pool.retain(|n| *n != 1), 1, "cap {cap}");
        assert_eq!(pool.len(), 2);
        drop(last);
        let s = pool.stats();
        assert_eq!(
            (s.cleared, s.idle, s.out, s.returned),
            (1, 3, 0, 4),
            "{s:?}"
        );
        assert_eq!(s.created, s.retired() + s.idle + s.out);
        if cap > 0 {
            assert_eq!(pool.status().live, 3);
        }
    }
}

#[test]
fn a_panicking_retain_predicate_puts_every_object_back() {
    let (pool, live) = counted_pool(3, 4);
    let held: Vec<_> = (0..3).map(|_| pool.get().unwrap()).collect();
    drop(held);
    let mut seen = 0;
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pool.retain(|_| {
            seen += 1;
            if seen == 2 {
                panic!("keep");
            }
            true
        })
    }));
    assert!(caught.is_err());
    assert_eq!(
        (pool.len(), pool.status().live, live.load(SeqCst)),
        (3, 3, 3)
    );
    let s = pool.stats();
    assert_eq!((s.cleared, s.idle, s.out), (0, 3, 0));
    assert_eq!(pool.retain(|_| false), 3);
    assert_eq!((pool.status().live, live.load(SeqCst)), (0, 0));
}

/// The lifetime and idle timeout of the two tests below: long enough that
/// an object is still young between two steps of a test on a loaded
/// machine or under Miri (20 ms was not); and a sleep past it.
const LIFETIME: Duration = Duration::from_millis(300);
const PAST_LIFETIME: Duration = Duration::from_millis(320);

#[test]
fn max_lifetime_drops_old_objects_at_checkout_and_return() {
    let (pool, live) = {
        let live = Arc::new(AtomicUsize::new(0));
        let l = Arc::clone(&live);
        let pool = Pool::builder(move || {
            l.fetch_add(1, SeqCst);
            Counted {
                live: Arc::clone(&l),
            }
        })
        .max_live(2)
        .max_lifetime(LIFETIME)
        .build();
        (Arc::new(pool), live)
    };
    drop(pool.get().unwrap()); // young: kept
    assert_eq!((pool.len(), pool.stats().expired), (1, 0));
    let old = pool.get().unwrap(); // reused, still young
    std::thread::sleep(PAST_LIFETIME); // now past its lifetime
    drop(old); // dropped on return
    assert_eq!((pool.len(), pool.stats().expired), (0, 1));
    drop(pool.get().unwrap()); // a new one, kept
    std::thread::sleep(PAST_LIFETIME);
    let fresh = pool.get().unwrap(); // the idle one is too old: a new one
    let s = pool.stats();
    assert_eq!((s.created, s.expired, s.reused), (3, 2, 1), "{s:?}");
    assert_eq!(s.created, s.retired() + s.idle + s.out);
    assert_eq!(live.load(SeqCst), 1);
    drop(fresh);
}

#[test]
fn idle_timeout_drops_objects_idle_too_long() {
    let pool = Pool::builder(|| 0u8)
        .max_live(1)
        .idle_timeout(LIFETIME)
        .build();
    drop(pool.get().unwrap());
    assert!(pool.get().is_ok(), "idle briefly: reused");
    assert_eq!(pool.stats().reused, 1);
    std::thread::sleep(PAST_LIFETIME);
    let g = pool.try_get().unwrap(); // the stale one is dropped, its room reused
    drop(g);
    let s = pool.stats();
    assert_eq!((s.created, s.expired, s.reused), (2, 1, 1), "{s:?}");
    assert_eq!(s.created, s.retired() + s.idle + s.out);
    assert_eq!(pool.status().live, 1);
}

#[test]
fn rejected_and_expired_idle_objects_are_not_counted_as_reused() {
    let pool = Pool::builder(|| 0u8)
        .max_live(2)
        .is_valid(|v| *v == 0)
        .build();
    *pool.get().unwrap() = 1; // goes back, will be rejected
    let _g = pool.get().unwrap();
    let s = pool.stats();
    assert_eq!(
        (s.created, s.rejected, s.reused, s.out),
        (2, 1, 0, 1),
        "{s:?}"
    );
}
