//! loom models of `Pool`: concurrent instance/return/take/prefill/clear
//! from 2 threads (every interleaving) and 3 (under a preemption bound),
//! with max_size 1 (no front slot: the queue alone), 2 (one front slot that
//! every thread shares, and a queue of 1) and 3 (two front slots, so two
//! threads have a home slot each and take from and return into each
//! other's, and a queue of 1); and a factory and a reset hook that panic
//! while another thread uses the pool.
//!
//! Every object is a [`Probe`] (`pool_probe.rs`, shared with
//! `pool_capped.rs`) whose `uses` is a loom `UnsafeCell` that each
//! holder (and the reset hook) writes: if two threads ever held one object
//! at once, or a hand-over through the pool's queue lacked a
//! happens-before edge, loom reports a data race. After the threads are
//! joined, each model counts the objects: made − dropped (real drops) must
//! equal idle + out, the stats must agree with those real counts and with
//! the operations the threads did (`created + reused` takes, `returned +
//! dropped_full` returns), and the pool must hold at most `max_size`.
//!
//! Under loom the pool's queue is the loom `Mutex<VecDeque>` stand-in from
//! `src/sync.rs`, so what is checked is the pool's own logic: the front
//! slots' state words (their claim, hand-over and put counts; the slot's
//! object is a loom `UnsafeCell` too), the per-thread counter stripes, the
//! rare-path counters and the prefill room check.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release --test loom_pool`.
//! `loom-tests/mutants.sh pool::` runs these against deliberately broken
//! builds.
#![cfg(loom)]

use std::sync::atomic::AtomicUsize as StdAtomicUsize;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

use loom::thread;
use multiopen::{Pool, PoolStats};

#[path = "pool_probe.rs"]
mod pool_probe;
use pool_probe::{model, Counts, Probe};

fn pool(max_size: usize, reset: bool) -> (Arc<Pool<Probe>>, Arc<Counts>) {
    let (counts, factory) = pool_probe::factory();
    let mut builder = Pool::builder(factory).max_size(max_size);
    if reset {
        builder = builder.reset(|probe: &mut Probe| probe.touch());
    }
    (Arc::new(builder.build()), counts)
}

/// One use: take an object, write it, give it back.
fn use_once(pool: &Pool<Probe>) {
    let g = pool.instance();
    g.touch();
}

/// What the threads of a model did: `instance` calls, guard returns, and
/// objects their `prefill`s made and then dropped for want of room.
#[derive(Clone, Copy, Default)]
struct Did {
    takes: usize,
    returns: usize,
    prefill_made: usize,
    prefill_dropped: usize,
}

/// The end-of-model accounting (see the module doc).
fn check(pool: &Pool<Probe>, counts: &Counts, did: Did) -> PoolStats {
    let s = pool.stats();
    let made = counts.made.load(SeqCst);
    let dropped = counts.dropped.load(SeqCst);
    assert_eq!(s.created, made, "{s:?}");
    assert_eq!(
        made - dropped,
        s.idle + s.out,
        "objects lost or duplicated: {s:?}"
    );
    assert_eq!(s.retired(), dropped, "stats do not add up: {s:?}");
    assert_eq!(s.out, 0, "{s:?}");
    assert_eq!(s.created - did.prefill_made + s.reused, did.takes, "{s:?}");
    assert_eq!(
        s.returned + s.dropped_full - did.prefill_dropped,
        did.returns,
        "{s:?}"
    );
    if pool.max_size() > 0 {
        assert!(pool.len() <= pool.max_size(), "{s:?}");
    }
    s
}

/// `threads` threads each take, write and return an object `uses` times,
/// from a pool of `max_size`, checking every interleaving with at most
/// `preemption_bound` preemptions (all of them if `None`).
fn take_and_return(threads: usize, max_size: usize, uses: usize, preemption_bound: Option<usize>) {
    model(preemption_bound, move || {
        let (pool, counts) = pool(max_size, false);
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let pool = Arc::clone(&pool);
                thread::spawn(move || {
                    for _ in 0..uses {
                        use_once(&pool);
                    }
                })
            })
            .collect();
        for t in handles {
            t.join().unwrap();
        }
        check(
            &pool,
            &counts,
            Did {
                takes: threads * uses,
                returns: threads * uses,
                ..Did::default()
            },
        );
    });
}

/// One use per thread, every interleaving: max_size 1 (the queue alone),
/// 2 (one front slot both threads share) and 3 (a home slot each): an
/// object one thread returns is the one the other takes, through a slot or
/// the queue.
#[test]
fn two_threads_one_use_each() {
    for max_size in [1, 2, 3] {
        take_and_return(2, max_size, 1, None);
    }
}

/// Two uses per thread, so an object can go back and forth: max_size 1
/// over every interleaving; max_size 2 and 3 (front slots) under a
/// preemption bound of PREEMPTIONS (every interleaving of these has too
/// many schedules for CI).
#[test]
fn two_threads_two_uses_each() {
    take_and_return(2, 1, 2, None);
    for max_size in [2, 3] {
        take_and_return(2, max_size, 2, Some(PREEMPTIONS));
    }
}

/// The preemption bound of the bounded models.
const PREEMPTIONS: usize = 3;

/// The preemption bound of the three-thread model: 2 (3 took 49 s of CI's
/// CPU for schedules that two preemptions already reach: each thread's take
/// or return interrupted once).
const THREE_THREAD_PREEMPTIONS: usize = 2;

/// Two threads hold two objects at once against max_size 1 (so returns
/// find the pool full) and 3 (so a thread's second object goes to the
/// queue or the other thread's home slot, and may be dropped only when
/// every place was full), with a reset hook that writes the object: the
/// hook runs while the returner still owns it. max_size 3 first (the
/// mutant it catches shows there) under two preemptions, then max_size 1
/// under PREEMPTIONS (every interleaving of max_size 1 took 37 s of CI's
/// CPU).
#[test]
fn returns_to_a_full_pool_with_reset_hook() {
    for (max_size, preemption_bound) in [(3, Some(2)), (1, Some(PREEMPTIONS))] {
        model(preemption_bound, move || {
            let (pool, counts) = pool(max_size, true);
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let pool = Arc::clone(&pool);
                    thread::spawn(move || {
                        let a = pool.instance();
                        let b = pool.instance();
                        a.touch();
                        b.touch();
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            let s = check(
                &pool,
                &counts,
                Did {
                    takes: 4,
                    returns: 4,
                    ..Did::default()
                },
            );
            if max_size == 1 {
                // One object is idle and every other one was dropped because
                // the pool was full.
                assert_eq!(s.idle, 1, "{s:?}");
                assert_eq!(s.dropped_full, s.created - 1, "{s:?}");
            }
            // Each thread's two objects are out at once: at least 2 made.
            assert!(s.created >= 2, "{s:?}");
        });
    }
}

/// Owned guards: one moves to another thread to be returned there, while
/// a second thread takes one object for good and uses another.
#[test]
fn owned_guard_hand_over_and_take() {
    loom::model(|| {
        let (pool, counts) = pool(2, false);
        let g = pool.instance_owned();
        g.touch();
        let mover = thread::spawn(move || {
            g.touch();
            drop(g);
        });
        let p2 = Arc::clone(&pool);
        let taker = thread::spawn(move || {
            let kept = p2.instance().take();
            kept.touch();
            use_once(&p2);
            kept
        });
        mover.join().unwrap();
        let kept = taker.join().unwrap();
        let s = pool.stats();
        assert_eq!(s.taken, 1, "{s:?}");
        drop(kept);
        // 3 takes; 2 went back to the pool (or found it full), 1 was taken.
        check(
            &pool,
            &counts,
            Did {
                takes: 3,
                returns: 2,
                ..Did::default()
            },
        );
    });
}

/// `prefill` races a take and return on pools of size 1 and 2: its room
/// check can go stale before its push, and the object that then does not
/// fit must be counted; in the end the pool is full.
#[test]
fn prefill_races_returns() {
    for max_size in [1, 2] {
        loom::model(move || {
            let (pool, counts) = pool(max_size, false);
            let p2 = Arc::clone(&pool);
            let filler = thread::spawn(move || p2.prefill(max_size));
            use_once(&pool);
            let added = filler.join().unwrap();
            let s = pool.stats();
            // Objects prefill made: one if it saw room, and then it either fit
            // (`added`) or was dropped because full.
            let prefill_made = s.created - (1 - s.reused);
            assert!(prefill_made <= max_size && added <= prefill_made, "{s:?}");
            check(
                &pool,
                &counts,
                Did {
                    takes: 1,
                    returns: 1,
                    prefill_made,
                    prefill_dropped: prefill_made - added,
                },
            );
            assert_eq!(pool.len(), max_size, "{s:?}");
        });
    }
}

/// `clear` races a take and return on pools of size 1 and 2: whatever it
/// drops is counted as cleared and nothing else, and an object returned
/// after it looked stays idle.
#[test]
fn clear_races_a_return() {
    for max_size in [1, 2] {
        loom::model(move || {
            let (pool, counts) = pool(max_size, false);
            pool.prefill(1);
            let p2 = Arc::clone(&pool);
            let user = thread::spawn(move || use_once(&p2));
            let cleared = pool.clear();
            user.join().unwrap();
            let s = check(
                &pool,
                &counts,
                Did {
                    takes: 1,
                    returns: 1,
                    prefill_made: 1,
                    prefill_dropped: 0,
                },
            );
            assert_eq!(s.cleared, cleared, "{s:?}");
            assert!(cleared <= 2, "{s:?}");
            // Every object made was cleared, or is idle again.
            assert_eq!(s.created, s.cleared + s.idle, "{s:?}");
        });
    }
}

/// A thread that exits gives its thread index back, and a thread running
/// beside it may inherit the index (and so its counter stripe) through the
/// index bitmap alone: neither thread joins the other, and each counts one
/// return. The inheritor's Relaxed load of the stripe must see the exited
/// thread's count (the give-back's Release and the claim's Acquire order
/// them), or a count is lost and the stats come out short.
///
/// With max_size 1 (no front slot) every return goes through the queue
/// and is counted in a stripe: one use per thread, every interleaving.
#[test]
fn exited_thread_hands_its_index_on() {
    take_and_return(2, 1, 1, None);
}

/// Three threads, one use each, max_size 1, 2 and 3, under the
/// preemption bound THREE_THREAD_PREEMPTIONS (every interleaving with at
/// most two preemptions).
#[test]
fn three_threads_bounded() {
    for max_size in [1, 2, 3] {
        take_and_return(3, max_size, 1, Some(THREE_THREAD_PREEMPTIONS));
    }
}

/// The panic message of the deliberate panics below; the panic hook
/// installed by [`quiet_deliberate_panics`] keeps them off the output.
const DELIBERATE: &str = "deliberate panic in a pool callback";

/// Silences panics whose message is [`DELIBERATE`] (loom runs the model
/// thousands of times); every other panic still reaches the default hook.
fn quiet_deliberate_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() != Some(&DELIBERATE) {
                default(info);
            }
        }));
    });
}

/// The factory's first call and the reset hook's first call panic, while
/// two threads take and return through a pool with one front slot
/// (max_size 2): the panics are caught in the threads, and afterwards the
/// books balance (one failed make, one object dropped by the reset hook),
/// no object is lost or handed out twice, and the pool still works.
#[test]
fn panicking_factory_and_reset_hook() {
    quiet_deliberate_panics();
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(PREEMPTIONS);
    builder.check(|| {
        let (counts, make) = pool_probe::factory();
        // Per execution: which calls have happened (std atomics: the
        // panics' choice is not what is being modelled).
        let factory_calls = Arc::new(StdAtomicUsize::new(0));
        let reset_calls = Arc::new(StdAtomicUsize::new(0));
        let pool = Arc::new(
            Pool::builder(move || {
                if factory_calls.fetch_add(1, SeqCst) == 0 {
                    panic!("{}", DELIBERATE);
                }
                make()
            })
            .reset(move |probe: &mut Probe| {
                probe.touch();
                if reset_calls.fetch_add(1, SeqCst) == 0 {
                    panic!("{}", DELIBERATE);
                }
            })
            .max_size(2)
            .build(),
        );
        let got = Arc::new(StdAtomicUsize::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (pool, got) = (Arc::clone(&pool), Arc::clone(&got));
                thread::spawn(move || {
                    for _ in 0..2 {
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            let g = pool.instance();
                            got.fetch_add(1, SeqCst);
                            g.touch();
                        }));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let got = got.load(SeqCst);
        let s = check(
            &pool,
            &counts,
            Did {
                takes: got,
                // The guard whose reset hook panicked did not return.
                returns: got - 1,
                ..Did::default()
            },
        );
        assert_eq!((s.failed, s.reset_panicked), (1, 1), "{s:?}");
        assert_eq!(got, 3, "one of the four takes failed: {s:?}");
        use_once(&pool); // still works
    });
}

/// `stats` while `prefill` fills the front slots and the queue (max_size
/// 3): no guard ever returned, so every snapshot says `returned == 0`,
/// and no figure wraps around (prefill's puts are not counted as returns,
/// and the counters are read retirements first).
#[test]
fn stats_during_prefill() {
    loom::model(|| {
        let (pool, counts) = pool(3, false);
        let p2 = Arc::clone(&pool);
        let filler = thread::spawn(move || p2.prefill(3));
        let s = pool.stats();
        assert_eq!(s.returned, 0, "{s:?}");
        assert!(s.idle <= 3 && s.created <= 3 && s.reused == 0, "{s:?}");
        let added = filler.join().unwrap();
        let s = check(
            &pool,
            &counts,
            Did {
                prefill_made: added,
                ..Did::default()
            },
        );
        assert_eq!((added, s.idle, s.returned), (3, 3, 0), "{s:?}");
    });
}

/// `stats` from a reader that loom preempts at any one point (under loom
/// `stats` makes one attempt, so a preempted reader takes its fallback;
/// one that runs through takes the agreeing passes), while two threads
/// take and return on a pool of one: A three times takes two objects and
/// returns both (each round makes an object and drops one as full), B
/// takes and returns one. At most three objects are ever alive (out or
/// idle: A's two, B's one, or one of them idle), so every snapshot must say
/// `out + idle <= 3`, however long the reader was preempted between its
/// reads; its other figures must be sane too. A reader that trusts one
/// pass of the counters (the mutant `pool::stats_no_recheck`) reads the
/// drops before A's rounds and the makes after them, and reports 4.
#[test]
fn stats_reader_preempted_keeps_the_bound() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(1);
    builder.check(|| {
        let (pool, counts) = pool(1, false);
        let p = Arc::clone(&pool);
        let reader = thread::spawn(move || p.stats());
        let p = Arc::clone(&pool);
        let a = thread::spawn(move || {
            for _ in 0..3 {
                let first = p.instance();
                let second = p.instance();
                first.touch();
                second.touch();
            }
        });
        use_once(&pool);
        let s = reader.join().unwrap();
        assert!(s.out + s.idle <= 3, "more than ever were: {s:?}");
        assert!(s.idle <= 1, "{s:?}");
        assert!(s.retired() <= s.created, "{s:?}");
        assert!(s.reused <= s.returned, "{s:?}");
        assert!(s.created <= 7 && s.returned <= 7, "{s:?}");
        a.join().unwrap();
        check(
            &pool,
            &counts,
            Did {
                takes: 7,
                returns: 7,
                ..Did::default()
            },
        );
    });
}
