//! loom models of a capped `Pool` (issue 15): the token word, the
//! waiters' registration, the wake sequence they sleep on, time-outs,
//! close and resize. Each model has a mutant in `loom-tests/mutants.txt`
//! (`bash loom-tests/mutants.sh pool::cap_`).
//!
//! Every object is a [`Probe`] (`pool_probe.rs`, shared with `pool.rs`: a
//! loom `UnsafeCell` written by each holder, so two holders at once, or a
//! hand-over without a happens-before edge, is a data race loom reports)
//! that counts itself made and dropped outside loom's view. After the
//! threads are joined, each model checks that no object was lost (made −
//! dropped = idle + out, and the pool's own count of live objects agrees),
//! that nobody is left registered as waiting and no waiting mode outlived
//! the waiters (no wake in flight, no barges counted, not in hand-off), and
//! that the pool can serve again. A missing wake shows up as a loom
//! deadlock.
//!
//! Under loom a timed wait times out at its first sleep (see
//! `sync::Futex::wait_deadline`), so a time-out is explored at every point
//! a timed waiter could sleep. The barge limit is 1 under loom (1023
//! shipped), and a waiter starves (turns the pool to hand-off) at its
//! third look, after two sleeps (1 ms shipped), so the models reach both.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release --test loom_pool_capped`.
#![cfg(loom)]

use std::sync::atomic::AtomicUsize as StdAtomicUsize;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::Duration;

use loom::thread;
use multiopen::{Pool, PoolError};

#[path = "pool_probe.rs"]
mod pool_probe;
use pool_probe::{model, Counts, Probe};

type Probes = Arc<Pool<Probe>>;

fn pool(cap: usize) -> (Probes, Arc<Counts>) {
    pool_with(cap, false)
}

/// A pool of `cap`; with `broken`, `has_broken` rejects every object a
/// guard gives back.
fn pool_with(cap: usize, broken: bool) -> (Probes, Arc<Counts>) {
    let (counts, factory) = pool_probe::factory();
    let builder = Pool::builder(factory).max_size(2).max_live(cap);
    let builder = if broken {
        builder.has_broken(|_| true)
    } else {
        builder
    };
    (Arc::new(builder.build()), counts)
}

/// The end-of-model books (see the module doc); every guard is gone.
fn check(pool: &Pool<Probe>, counts: &Counts) {
    let status = pool.status();
    let alive = counts.alive();
    assert_eq!(status.waiting, 0, "{status:?}");
    // Nobody waits: no wake in flight, no barges counted, not in hand-off.
    let mode = pool.loom_mode().expect("a capped pool");
    assert!(
        !mode.woken && !mode.handoff && mode.barges == 0,
        "a waiting mode outlived the waiters: {mode:?}, {status:?}"
    );
    assert_eq!(status.out, 0, "{status:?}");
    assert_eq!(status.live, alive, "the word's count is off: {status:?}");
    assert_eq!(pool.len(), status.idle, "{status:?}");
    let s = pool.stats();
    assert_eq!(s.created, s.retired() + s.idle + s.out, "{s:?}");
    if !status.closed {
        // Served again: the room and every object came back.
        let g = pool.try_get().expect("the pool serves again");
        g.touch();
    }
}

/// A return racing a waiter on its way to sleep (cap 1): the waiter must
/// be served, whether it registers before the return's look at the word
/// or after (every interleaving).
#[test]
fn return_races_a_waiter_going_to_sleep() {
    model(None, || {
        let (pool, counts) = pool(1);
        let held = pool.get().unwrap();
        let p = Arc::clone(&pool);
        let waiter = thread::spawn(move || p.get().unwrap().touch());
        held.touch();
        drop(held);
        waiter.join().unwrap();
        check(&pool, &counts);
    });
}

/// Three threads on a cap of 1, two of them taking twice, so a waiter
/// registers twice and a take plus a registration can bring the state
/// word back to a value a late sleeper saw: it must not sleep through its
/// wake (the separate wake sequence). Preemption bound 2.
#[test]
fn waiter_registers_twice_three_threads() {
    model(Some(2), || {
        let (pool, counts) = pool(1);
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let p = Arc::clone(&pool);
                thread::spawn(move || {
                    for _ in 0..2 {
                        p.get().unwrap().touch();
                    }
                })
            })
            .collect();
        pool.get().unwrap().touch();
        for t in threads {
            t.join().unwrap();
        }
        check(&pool, &counts);
    });
}

/// A timed waiter's time-out racing the return that would serve it, with
/// an untimed waiter beside it (cap 1): the object is neither lost nor
/// counted to the waiter that left, and the untimed waiter is served.
/// Preemption bound 2.
#[test]
fn timeout_races_a_hand_off() {
    model(Some(2), || {
        let (pool, counts) = pool(1);
        let held = pool.get().unwrap();
        let p = Arc::clone(&pool);
        let timed = thread::spawn(move || match p.get_timeout(Duration::from_secs(1)) {
            Ok(g) => g.touch(),
            Err(e) => assert!(matches!(e, PoolError::TimedOut { .. }), "{e}"),
        });
        let p = Arc::clone(&pool);
        let untimed = thread::spawn(move || p.get().unwrap().touch());
        drop(held);
        timed.join().unwrap();
        untimed.join().unwrap();
        check(&pool, &counts);
    });
}

/// `close` racing a waiter and a return (cap 1): the waiter is woken
/// (served before the close, or refused with Closed), the return after
/// the close drops its object, and nothing is left alive. Preemption
/// bound 2.
#[test]
fn close_races_waiters_and_returns() {
    model(Some(2), || {
        let (pool, counts) = pool(1);
        let held = pool.get().unwrap();
        let p = Arc::clone(&pool);
        let waiter = thread::spawn(move || match p.get() {
            Ok(g) => g.touch(),
            Err(e) => assert!(matches!(e, PoolError::Closed { .. }), "{e}"),
        });
        let p = Arc::clone(&pool);
        let closer = thread::spawn(move || p.close().unwrap());
        drop(held);
        waiter.join().unwrap();
        closer.join().unwrap();
        assert_eq!(
            counts.made.load(SeqCst),
            counts.dropped.load(SeqCst),
            "closed: every object dropped"
        );
        check(&pool, &counts);
    });
}

/// `close` racing a waiter with no return to follow (cap 1, the object
/// held until both are done): only the close can wake the waiter (a return
/// to a closed pool frees room and wakes waiters too, since `instance`
/// still waits for room there), which must leave with Closed or have been
/// served before. Preemption bound 2.
#[test]
fn close_wakes_a_sleeping_waiter() {
    model(Some(2), || {
        let (pool, counts) = pool(1);
        let held = pool.get().unwrap();
        let p = Arc::clone(&pool);
        let waiter = thread::spawn(move || match p.get() {
            Ok(g) => g.touch(),
            Err(e) => assert!(matches!(e, PoolError::Closed { .. }), "{e}"),
        });
        pool.close().unwrap();
        waiter.join().unwrap();
        drop(held);
        check(&pool, &counts);
    });
}

/// `resize` growing the cap while a waiter sleeps at it (cap 1, the one
/// object held throughout): the new room must wake it, whether the waiter
/// registers before or after the resize. Then the cap shrinks back below
/// the objects alive, and the return over it is dropped. Preemption bound 2.
#[test]
fn resize_races_acquires() {
    model(Some(2), || {
        let (pool, counts) = pool(1);
        let held = pool.get().unwrap();
        let p = Arc::clone(&pool);
        let waiter = thread::spawn(move || p.get().unwrap().touch());
        let p = Arc::clone(&pool);
        let resizer = thread::spawn(move || {
            p.resize(2).unwrap();
        });
        resizer.join().unwrap();
        waiter.join().unwrap();
        pool.resize(1).unwrap();
        drop(held);
        check(&pool, &counts);
    });
}

/// A return that `has_broken` rejects, racing a waiter on its way to
/// sleep (cap 1): the rejected object is dropped and its room must wake
/// the waiter, which makes a new one (every interleaving).
#[test]
fn rejected_object_wakes_a_waiter() {
    model(None, || {
        let (pool, counts) = pool_with(1, true);
        let held = pool.get().unwrap();
        let p = Arc::clone(&pool);
        let waiter = thread::spawn(move || p.get().unwrap().touch());
        held.touch();
        drop(held);
        waiter.join().unwrap();
        assert_eq!(pool.stats().rejected, 2, "both returns rejected");
        assert_eq!(counts.made.load(SeqCst), 2);
        check(&pool, &counts);
    });
}

/// Waits (a loom yield loop) until `n` threads are registered as waiting.
fn until_waiting(pool: &Pool<Probe>, n: usize) {
    while pool.status().waiting < n {
        thread::yield_now();
    }
}

/// With the pool's object held by the caller (the barger): a waiter that
/// waits in `get`, registered before this returns, and reports how many
/// takes the barger had counted in the first value when it was served.
fn waiter_behind_a_barger(pool: &Probes) -> (Arc<StdAtomicUsize>, thread::JoinHandle<usize>) {
    let barged = Arc::new(StdAtomicUsize::new(0));
    let (p, b) = (Arc::clone(pool), Arc::clone(&barged));
    let waiter = thread::spawn(move || {
        let g = p.get().unwrap();
        g.touch();
        b.load(SeqCst) // taken by the barger before this waiter
    });
    until_waiting(pool, 1);
    (barged, waiter)
}

/// Sleeps after which a waiter turns the pool to hand-off, under loom (see
/// `starved` in `src/pool/limit.rs`: at its look after the second sleep).
const STARVING_SLEEPS: usize = 2;

/// The barge limit (cap 1, 1 under loom): a waiter registers; then the main
/// thread returns the object (waking it) and tries three times to take it
/// with `try_get`, which never registers nor sleeps, so every futex sleep
/// is the waiter's. Each of the waiter's looks ends one wake and starts
/// the count again, so before it is served the barger may have taken the
/// object at most `barge_limit` times per sleep of the waiter; with no
/// limit (the mutant `pool::cap_barge_past_limit`) it takes it all three
/// times while the woken waiter does not run. Preemption bound 2.
#[test]
fn barge_limit_hands_the_object_to_the_woken_waiter() {
    model(Some(2), || {
        let (pool, counts) = pool(1);
        let held = pool.get().unwrap();
        let (barged, waiter) = waiter_behind_a_barger(&pool);
        drop(held);
        for _ in 0..3 {
            if let Ok(g) = pool.try_get() {
                barged.fetch_add(1, SeqCst);
                g.touch();
            }
        }
        let passed = waiter.join().unwrap();
        let limit = pool.loom_mode().unwrap().barge_limit as usize;
        let sleeps = pool.stats().sleeps;
        assert!(
            passed <= limit * sleeps,
            "barged {passed} times past a waiter that slept {sleeps} times"
        );
        check(&pool, &counts);
    });
}

/// The switch to hand-off (cap 1): a waiter registers, and the main thread
/// returns the object and takes it again with `get` three times, barging
/// past the woken waiter. A waiter that finds the object taken at its look
/// after its second sleep starves and turns the pool to hand-off: the
/// barger then queues behind it and the object goes to the waiter. So the
/// barger takes it at most `barge_limit` × 2 times before the waiter is
/// served, and the mode ends with the waiters (the books at rest). A
/// barger that takes during hand-off (the mutant `pool::cap_barge_in_handoff`)
/// takes it a third time. Preemption bound 2.
#[test]
fn starving_waiter_turns_the_pool_to_hand_off() {
    model(Some(2), || {
        let (pool, counts) = pool(1);
        let mut held = pool.get().unwrap();
        let (barged, waiter) = waiter_behind_a_barger(&pool);
        for _ in 0..3 {
            drop(held);
            held = pool.get().unwrap();
            barged.fetch_add(1, SeqCst);
            held.touch();
        }
        drop(held);
        let passed = waiter.join().unwrap();
        let limit = pool.loom_mode().unwrap().barge_limit as usize;
        assert!(
            passed <= limit * STARVING_SLEEPS,
            "barged {passed} times past a starving waiter: {:?}",
            pool.stats()
        );
        check(&pool, &counts);
    });
}

/// Hand-off mode ends when the waiters drain, however they leave (cap 1):
/// as in the model above the barger may starve the waiter into hand-off,
/// and then closes the pool while it holds the object, so the starving
/// waiter leaves refused (Closed) instead of served. The last waiter gone,
/// the mode must be off (the mutant `pool::cap_handoff_outlives_waiters`
/// leaves it on with nobody waiting), and every object is dropped.
/// Preemption bound 2.
#[test]
fn hand_off_mode_ends_when_the_waiters_drain() {
    model(Some(2), || {
        let (pool, counts) = pool(1);
        let mut held = pool.get().unwrap();
        let p = Arc::clone(&pool);
        let waiter = thread::spawn(move || match p.get() {
            Ok(g) => g.touch(),
            Err(e) => assert!(matches!(e, PoolError::Closed { .. }), "{e}"),
        });
        until_waiting(&pool, 1);
        for _ in 0..2 {
            drop(held);
            held = pool.get().unwrap();
            held.touch();
        }
        pool.close().unwrap();
        drop(held);
        waiter.join().unwrap();
        assert_eq!(counts.alive(), 0, "closed: every object dropped");
        check(&pool, &counts);
    });
}
