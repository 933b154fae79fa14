#![cfg(not(loom))]
//! A capped `Pool` under stress and against a sequential model (issue 15).
//!
//! Stress: 64 threads on a cap of 2, short timeouts, a flaky factory;
//! objects count themselves, so the test checks live ≤ cap at every
//! moment (each holder checks after it got its object), that nothing is
//! lost, that every waiter finishes, and that the books balance at rest.
//! Barging: a waiter among threads that take every returned object first
//! is served (the barge limit and the hand-off, in the shipped build).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use multiopen::{Pool, PoolError};
use proptest::prelude::*;

struct Counted {
    live: Arc<AtomicUsize>,
    /// Marked by its holder: the `has_broken` hook then rejects it on
    /// return (the pool drops it, then frees its room and wakes a waiter).
    broken: bool,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.live.fetch_sub(1, SeqCst);
    }
}

#[test]
fn sixty_four_threads_on_a_cap_of_two() {
    const CAP: usize = 2;
    const THREADS: usize = 64;
    const ROUNDS: usize = 200;
    let live = Arc::new(AtomicUsize::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let (l, c) = (Arc::clone(&live), Arc::clone(&calls));
    let pool = Pool::try_builder(move || {
        if c.fetch_add(1, SeqCst) % 5 == 3 {
            return Err("flaky");
        }
        // Counted before it exists: the check below then over-counts,
        // never under-counts.
        let now = l.fetch_add(1, SeqCst) + 1;
        assert!(now <= CAP, "{now} objects alive, cap {CAP}");
        Ok(Counted {
            live: Arc::clone(&l),
            broken: false,
        })
    })
    .has_broken(|o| o.broken)
    .max_live(CAP)
    .max_size(1) // some returns dropped: room freed, waiters woken
    .build();
    let (got, timed_out, failed) = (
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    );
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (pool, live) = (&pool, &live);
            let (got, timed_out, failed) = (&got, &timed_out, &failed);
            s.spawn(move || {
                for i in 0..ROUNDS {
                    let r = if (t + i) % 3 == 0 {
                        pool.get()
                    } else {
                        pool.get_timeout(Duration::from_micros(50 + (i % 7) as u64 * 100))
                    };
                    match r {
                        Ok(mut g) => {
                            assert!(live.load(SeqCst) <= CAP);
                            got.fetch_add(1, SeqCst);
                            // Not `take()`: an object taken for good leaves
                            // the pool's books (its room is free) while it
                            // is still alive, which this count cannot tell
                            // apart from a broken cap. A rejected return
                            // frees room the same way, after the drop.
                            if i % 11 == 0 {
                                g.broken = true;
                            }
                        }
                        Err(PoolError::TimedOut { cap, .. }) => {
                            assert_eq!(cap, CAP);
                            timed_out.fetch_add(1, SeqCst);
                        }
                        Err(PoolError::Factory { .. }) => {
                            failed.fetch_add(1, SeqCst);
                        }
                        Err(other) => panic!("{other}"),
                    }
                }
            });
        }
    });
    let (got, timed_out, failed) = (
        got.into_inner(),
        timed_out.into_inner(),
        failed.into_inner(),
    );
    assert_eq!(
        got + timed_out + failed,
        THREADS * ROUNDS,
        "every call finished"
    );
    let st = pool.status();
    assert_eq!((st.waiting, st.out), (0, 0));
    assert_eq!(
        st.live,
        live.load(SeqCst),
        "the word's count is the real one"
    );
    assert!(st.live <= CAP);
    let s = pool.stats();
    assert!(s.rejected > 0, "the broken-object path ran: {s:?}");
    assert_eq!(s.created, s.retired() + s.idle + s.out, "{s:?}");
    assert_eq!(s.out, 0);
    assert_eq!(s.created + s.reused, got, "{s:?}");
    assert_eq!(s.failed, failed);
    assert_eq!(s.timed_out, timed_out);
    pool.close().unwrap();
    assert_eq!(live.load(SeqCst), 0, "close dropped every idle object");
}

/// The kind: a waiter starved by barging, running threads taking each
/// returned object before the woken waiter runs. Eight threads spin on
/// `try_get` on a pool of cap 1 (never registering, so the waiter is the
/// only one registered and each barger's return wakes it), returning each
/// object at once, while one thread waits in `get`. Only the barge limit
/// (1023 barges past a woken waiter, then bargers are refused until it
/// has looked) and the hand-off after 1 ms can serve it: 20 rounds, a
/// fresh waiter each, each must be served before a watchdog of 60 s (a
/// hang fails it, not a slow machine; no duration is asserted).
#[test]
fn a_waiter_is_served_while_threads_barge_at_the_cap() {
    const BARGERS: usize = 8;
    const ROUNDS: usize = 20;
    const WATCHDOG: Duration = Duration::from_secs(60);
    let live = Arc::new(AtomicUsize::new(0));
    let l = Arc::clone(&live);
    let pool = Arc::new(
        Pool::builder(move || {
            l.fetch_add(1, SeqCst);
            Counted {
                live: Arc::clone(&l),
                broken: false,
            }
        })
        .max_live(1)
        .max_size(1)
        .build(),
    );
    let (stop, barges) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let bargers: Vec<_> = (0..BARGERS)
        .map(|_| {
            let (pool, stop, barges) = (Arc::clone(&pool), Arc::clone(&stop), Arc::clone(&barges));
            std::thread::spawn(move || {
                while !stop.load(SeqCst) {
                    match pool.try_get() {
                        Ok(g) => {
                            assert!(g.live.load(SeqCst) <= 1);
                            barges.fetch_add(1, SeqCst);
                        }
                        Err(PoolError::Exhausted { .. }) => std::hint::spin_loop(),
                        Err(other) => panic!("{other}"),
                    }
                }
            })
        })
        .collect();
    for round in 0..ROUNDS {
        // The bargers are at it before the waiter comes.
        let before = barges.load(SeqCst);
        while barges.load(SeqCst) < before + 100 {
            std::thread::yield_now();
        }
        let (tx, rx) = mpsc::channel();
        let p = Arc::clone(&pool);
        let waiter = std::thread::spawn(move || {
            let g = p.get().unwrap();
            tx.send(g.live.load(SeqCst)).unwrap();
        });
        match rx.recv_timeout(WATCHDOG) {
            Ok(alive) => assert_eq!(alive, 1, "round {round}"),
            Err(_) => {
                stop.store(true, SeqCst);
                panic!(
                    "round {round}: a waiter among {BARGERS} barging threads was not served \
                     within {WATCHDOG:?}: {:?}, {:?}",
                    pool.status(),
                    pool.stats()
                );
            }
        }
        waiter.join().unwrap();
    }
    stop.store(true, SeqCst);
    for b in bargers {
        b.join().unwrap();
    }
    let st = pool.status();
    assert_eq!((st.waiting, st.out, st.live), (0, 0, live.load(SeqCst)));
    let s = pool.stats();
    assert_eq!(s.created, 1, "one object, never lost: {s:?}");
    assert_eq!(s.created, s.retired() + s.idle + s.out, "{s:?}");
    assert_eq!(s.created + s.reused, barges.load(SeqCst) + ROUNDS, "{s:?}");
}

/// One step of the property test.
#[derive(Debug, Clone)]
enum Op {
    TryGet,
    Return(usize),
    Take(usize),
    Close,
    Resize(usize),
    Clear,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::TryGet),
        4 => (0..8usize).prop_map(Op::Return),
        1 => (0..8usize).prop_map(Op::Take),
        1 => Just(Op::Close),
        1 => (0..5usize).prop_map(Op::Resize),
        1 => Just(Op::Clear),
    ]
}

/// The sequential model: what a capped pool must hold after each step.
#[derive(Debug, Default)]
struct Model {
    cap: usize,
    max_size: usize,
    idle: usize,
    out: usize,
    closed: bool,
}

impl Model {
    fn live(&self) -> usize {
        self.idle + self.out
    }
}

proptest! {
    #[test]
    fn capped_pool_matches_a_sequential_model(
        cap in 1..4usize,
        max_size in 1..4usize,
        ops in prop::collection::vec(op(), 1..60),
    ) {
        let live = Arc::new(AtomicUsize::new(0));
        let l = Arc::clone(&live);
        let pool = Pool::builder(move || {
            l.fetch_add(1, SeqCst);
            Counted {
                live: Arc::clone(&l),
                broken: false,
            }
        })
        .max_live(cap)
        .max_size(max_size)
        .build();
        let mut m = Model { cap, max_size, ..Model::default() };
        let mut held = Vec::new();
        for op in ops {
            match op {
                Op::TryGet => {
                    let r = pool.try_get();
                    if m.closed {
                        let closed = matches!(r, Err(PoolError::Closed { .. }));
                        prop_assert!(closed);
                    } else if m.idle > 0 && m.out < m.cap {
                        m.idle -= 1;
                        m.out += 1;
                        held.push(r.unwrap());
                    } else if m.live() < m.cap {
                        m.out += 1;
                        held.push(r.unwrap());
                    } else {
                        let exhausted = matches!(r, Err(PoolError::Exhausted { .. }));
                        prop_assert!(exhausted, "{:?}", r.err());
                    }
                }
                Op::Return(i) if !held.is_empty() => {
                    drop(held.swap_remove(i % held.len()));
                    m.out -= 1;
                    if !m.closed && m.live() < m.cap && m.idle < m.max_size {
                        m.idle += 1;
                    }
                }
                Op::Take(i) if !held.is_empty() => {
                    drop(held.swap_remove(i % held.len()).take());
                    m.out -= 1;
                }
                Op::Close => {
                    let r = pool.close();
                    prop_assert_eq!(r.is_ok(), !m.closed);
                    m.closed = true;
                    m.idle = 0;
                }
                Op::Resize(c) => {
                    let r = pool.resize(c);
                    if c == 0 || m.closed {
                        prop_assert!(r.is_err());
                    } else {
                        prop_assert_eq!(r.unwrap(), m.cap);
                        m.cap = c;
                        let over = m.live().saturating_sub(c).min(m.idle);
                        m.idle -= over;
                    }
                }
                Op::Clear => {
                    prop_assert_eq!(pool.clear(), m.idle);
                    m.idle = 0;
                }
                Op::Return(_) | Op::Take(_) => {}
            }
            let st = pool.status();
            prop_assert_eq!((st.idle, st.out, st.closed), (m.idle, m.out, m.closed), "{:?}", m);
            prop_assert_eq!(live.load(SeqCst), m.live());
            prop_assert_eq!(pool.len(), m.idle);
        }
        drop(held);
        let s = pool.stats();
        prop_assert_eq!(s.created, s.retired() + s.idle + s.out);
    }
}
