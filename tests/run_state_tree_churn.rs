#![cfg(not(loom))]
//! Adversarial tests of a parent's children (the fast slot,
//! `src/run_state/tree/fast_slot.rs`, and the slab beside it) under churn:
//! many threads making and dropping children of one parent while the
//! parent is cancelled (with and without a reason), stopped and started;
//! callbacks that make and drop children of the same parent; deadlines.
//! Invariants checked: a child alive when its parent's cancel returns is
//! cancelled, with the parent's reason; callbacks run once; the count
//! returns to 0; the slab stays bounded; no hang (watchdog), no panic.
//! (Dropped middles, moved-out children and memory:
//! `run_state_tree_orphans.rs`.)

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::Duration;

use multiopen::RunState;

mod common;
use common::{at, no_deadlock, rounds, size, Rng};

// --- kind: many makers and droppers of one parent against its cancel --------

/// Makers keep a small ring of children (so that the fast slot and the slab
/// both churn: the oldest, a random one or the newest dropped), one thread
/// cancels the parent with a reason. A child made after the cancel returned
/// is cancelled at creation; every child kept across the cancel is
/// cancelled with the parent's reason once the cancel has returned.
#[test]
fn churning_children_of_one_parent_all_follow_a_cancel_with_reason() {
    no_deadlock("churn vs cancel_with", || {
        const THREADS: usize = 3;
        for round in 0..rounds(40) {
            let parent = Arc::new(RunState::new("parent"));
            let done = Arc::new(AtomicBool::new(false));
            let start = Arc::new(Barrier::new(THREADS + 1));
            let makers: Vec<_> = (0..THREADS)
                .map(|t| {
                    let (parent, done) = (Arc::clone(&parent), Arc::clone(&done));
                    at(&start, move || {
                        let mut rng = Rng(0x9E37_79B9 ^ ((round * 31 + t) as u64 + 1));
                        let mut ring: VecDeque<Arc<RunState>> = VecDeque::new();
                        let mut after = 0;
                        let mut made = 0;
                        while after < size(200, 5) && made < size(200_000, 60) {
                            made += 1;
                            // Acquire: the cancel returned before this.
                            let cancel_returned = done.load(Ordering::Acquire);
                            let child = parent.child("c");
                            if cancel_returned {
                                after += 1;
                                assert!(child.cancelled(), "made after the cancel, not cancelled");
                                assert_eq!(child.reason().as_deref(), Some("stop now"));
                                // Everything kept now was alive when the
                                // cancel returned.
                                for kept in &ring {
                                    assert!(kept.cancelled(), "a kept child missed the cancel");
                                    assert_eq!(kept.reason().as_deref(), Some("stop now"));
                                }
                            }
                            ring.push_back(child);
                            if ring.len() > 1 + rng.below(4) {
                                match rng.below(3) {
                                    0 => drop(ring.pop_front()),
                                    1 => drop(ring.pop_back()),
                                    _ => drop(ring.remove(rng.below(ring.len()))),
                                }
                            }
                        }
                        ring
                    })
                })
                .collect();
            start.wait();
            for _ in 0..rng_spin(round) {
                std::hint::spin_loop();
            }
            parent.cancel_with("stop now");
            done.store(true, Ordering::Release);
            let kept: Vec<_> = makers
                .into_iter()
                .flat_map(|maker| maker.join().unwrap())
                .collect();
            for child in &kept {
                assert!(child.cancelled());
                assert_eq!(child.reason().as_deref(), Some("stop now"));
            }
            // The children joined back are still alive here.
            assert_eq!(parent.child_count(), kept.len());
            drop(kept);
            assert_eq!(parent.child_count(), 0);
            assert!(
                parent.child_slots() <= THREADS * 16,
                "slab grew past the live children"
            );
        }
    });
}

fn rng_spin(round: usize) -> usize {
    if cfg!(miri) {
        round % 3
    } else {
        (round * 977) % 20_000
    }
}

/// The same churn, with the parent run through start, cancel, stop, start
/// again, many times, each cancel with its own reason. A child that existed
/// before a cancel began is cancelled for good (a parent's cancel sticks to
/// its children) once that cancel has returned, whatever the parent's later
/// stops and starts.
#[test]
fn churning_children_follow_every_cancel_of_a_parent_that_restarts() {
    no_deadlock("churn vs restart", || {
        const THREADS: usize = 2;
        let cycles = size(300, 4);
        let parent = Arc::new(RunState::new("parent"));
        // The number of cancels begun, and finished (both SeqCst: a total
        // order with the makers' reads).
        let begun = Arc::new(AtomicUsize::new(0));
        let finished = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let start = Arc::new(Barrier::new(THREADS + 1));
        let makers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (parent, begun, finished, stop) = (
                    Arc::clone(&parent),
                    Arc::clone(&begun),
                    Arc::clone(&finished),
                    Arc::clone(&stop),
                );
                at(&start, move || {
                    let mut rng = Rng(77 + t as u64);
                    // Each child with the number of cancels begun when it
                    // was already made.
                    let mut ring: VecDeque<(Arc<RunState>, usize)> = VecDeque::new();
                    let mut checked = 0usize;
                    while !stop.load(Ordering::SeqCst) {
                        let child = parent.child("c");
                        let seen = begun.load(Ordering::SeqCst);
                        ring.push_back((child, seen));
                        let fin = finished.load(Ordering::SeqCst);
                        for (kept, seen) in &ring {
                            if fin > *seen {
                                checked += 1;
                                assert!(
                                    kept.cancelled(),
                                    "a child alive before cancel {} missed it",
                                    seen + 1
                                );
                                let reason = kept.reason();
                                assert!(
                                    reason.as_deref().is_some_and(|r| r.starts_with("cycle ")),
                                    "reason {reason:?}"
                                );
                            }
                        }
                        if ring.len() > 1 + rng.below(5) {
                            drop(ring.remove(rng.below(ring.len())));
                        }
                        if cfg!(miri) {
                            thread::yield_now();
                        }
                    }
                    checked
                })
            })
            .collect();
        start.wait();
        for n in 0..cycles {
            parent.start().unwrap();
            begun.fetch_add(1, Ordering::SeqCst);
            parent.cancel_with(format!("cycle {n}"));
            finished.fetch_add(1, Ordering::SeqCst);
            if n % 3 == 0 {
                thread::yield_now();
            }
            parent.stop().unwrap();
        }
        stop.store(true, Ordering::SeqCst);
        let checked: usize = makers.into_iter().map(|m| m.join().unwrap()).sum();
        assert_eq!(parent.child_count(), 0);
        if !cfg!(miri) {
            assert!(checked > 0, "the test checked nothing");
        }
    });
}

/// Plain cancels of a parent with `on_cancel` children (they take the
/// walk's follow-up path, out of the lock) racing makers: after the cancel
/// returned every kept child is cancelled and its callback ran exactly once.
#[test]
fn churning_children_with_callbacks_each_called_back_once_by_the_parents_cancel() {
    no_deadlock("callbacks churn", || {
        const THREADS: usize = 2;
        for _ in 0..rounds(30) {
            let parent = Arc::new(RunState::new("parent"));
            let start = Arc::new(Barrier::new(THREADS + 1));
            let done = Arc::new(AtomicBool::new(false));
            let begun = Arc::new(AtomicBool::new(false));
            let makers: Vec<_> = (0..THREADS)
                .map(|t| {
                    let (parent, done, begun) =
                        (Arc::clone(&parent), Arc::clone(&done), Arc::clone(&begun));
                    at(&start, move || {
                        let mut rng = Rng(5 + t as u64);
                        // Each child, its call count, and whether its
                        // callback was registered before the cancel began.
                        let mut ring: VecDeque<(Arc<RunState>, Arc<AtomicUsize>, bool)> =
                            VecDeque::new();
                        let mut after = 0;
                        while after < size(50, 3) {
                            let returned = done.load(Ordering::Acquire);
                            let child = parent.child("c");
                            let calls = Arc::new(AtomicUsize::new(0));
                            let c = Arc::clone(&calls);
                            child.on_cancel(move |rs| {
                                assert!(rs.cancelled());
                                c.fetch_add(1, Ordering::SeqCst);
                            });
                            let early = !begun.load(Ordering::SeqCst);
                            if returned {
                                after += 1;
                                for (kept, calls, early) in &ring {
                                    assert!(kept.cancelled());
                                    // Registered before the cancel began:
                                    // called by it, once; registered on a
                                    // cancelled run: not called
                                    // (documented); racing: at most once.
                                    let n = calls.load(Ordering::SeqCst);
                                    if *early {
                                        assert_eq!(n, 1, "a callback missed the cancel");
                                    } else {
                                        assert!(n <= 1);
                                    }
                                }
                            }
                            ring.push_back((child, calls, early));
                            if ring.len() > 1 + rng.below(3) {
                                drop(ring.remove(rng.below(ring.len())));
                            }
                        }
                        ring
                    })
                })
                .collect();
            start.wait();
            begun.store(true, Ordering::SeqCst);
            parent.cancel();
            done.store(true, Ordering::Release);
            for m in makers {
                for (child, calls, early) in m.join().unwrap() {
                    assert!(child.cancelled());
                    let n = calls.load(Ordering::SeqCst);
                    assert!(n <= 1 && (!early || n == 1));
                }
            }
            assert_eq!(parent.child_count(), 0);
        }
    });
}

// --- kind: re-entrancy from callbacks ---------------------------------------

/// `on_cancel` callbacks of children (run by the parent's cancel, in its
/// thread, after the registry lock) that make children of the same parent,
/// drop their siblings (the one in the fast slot among them), and drop the
/// last user `Arc` of their own state: no deadlock, the new children are
/// cancelled at creation, the count comes back to what is kept.
#[test]
fn callbacks_that_make_and_drop_children_of_the_cancelling_parent() {
    no_deadlock("re-entrant callbacks", || {
        for _ in 0..rounds(50) {
            let parent = Arc::new(RunState::new("parent"));
            let siblings: Arc<Mutex<Vec<Arc<RunState>>>> = Arc::default();
            let made: Arc<Mutex<Vec<Arc<RunState>>>> = Arc::default();
            let n = size(8, 3);
            for i in 0..n {
                let child = parent.child("c"); // the first in the fast slot
                let (p, s, m) = (
                    Arc::downgrade(&parent),
                    Arc::clone(&siblings),
                    Arc::clone(&made),
                );
                child.on_cancel(move |me| {
                    assert!(me.cancelled());
                    let p = p.upgrade().expect("the parent is cancelling");
                    // A child of the cancelling parent: cancelled at birth.
                    let new = p.child("from a callback");
                    assert!(new.cancelled());
                    m.lock().unwrap().push(new);
                    // Drop a sibling (maybe the last Arc of one whose
                    // callback has not run yet, or of this very state).
                    let victim = {
                        let mut s = s.lock().unwrap();
                        if s.is_empty() {
                            None
                        } else {
                            let at = i % s.len();
                            Some(s.remove(at))
                        }
                    };
                    drop(victim);
                });
                siblings.lock().unwrap().push(child);
            }
            parent.cancel();
            assert_eq!(
                parent.child_count(),
                siblings.lock().unwrap().len() + made.lock().unwrap().len()
            );
            for c in siblings.lock().unwrap().iter() {
                assert!(c.cancelled());
            }
            siblings.lock().unwrap().clear();
            made.lock().unwrap().clear();
            assert_eq!(parent.child_count(), 0);
        }
    });
}

/// The parent's own `on_cancel` (run after its children are cancelled)
/// drops and makes children of itself and of its fast child, and cancels
/// the fast child's child again: all cancelled, counts back to 0.
#[test]
fn the_parents_callback_drops_and_makes_its_own_children() {
    let parent = Arc::new(RunState::new("parent"));
    let fast = parent.child("fast");
    let g = fast.child("g");
    let held: Arc<Mutex<Vec<Arc<RunState>>>> = Arc::new(Mutex::new(vec![fast, g]));
    let seen = Arc::new(AtomicUsize::new(0));
    {
        let (held, seen, weak_parent) = (
            Arc::clone(&held),
            Arc::clone(&seen),
            Arc::downgrade(&parent),
        );
        parent.on_cancel(move |_| {
            let parent = weak_parent.upgrade().unwrap();
            let mut h = held.lock().unwrap();
            // The children were cancelled before the callbacks ran.
            for c in h.iter() {
                assert!(c.cancelled());
                seen.fetch_add(1, Ordering::SeqCst);
            }
            let g = h.pop().unwrap();
            g.cancel();
            let fast = h.pop().unwrap();
            let g2 = fast.child("g2");
            assert!(g2.cancelled());
            drop(fast); // g2 orphaned
            drop(g);
            h.push(parent.child("new"));
            h.push(g2);
        });
    }
    parent.cancel();
    assert_eq!(seen.load(Ordering::SeqCst), 2);
    for c in held.lock().unwrap().iter() {
        assert!(c.cancelled());
    }
    assert_eq!(parent.child_count(), 1);
    held.lock().unwrap().clear();
    assert_eq!(parent.child_count(), 0);
    assert!(parent.child_slots() <= 4, "slab {}", parent.child_slots());
}

/// A child's callback that stops and restarts the parent and cancels it
/// again (a new run) while the first cancel is still walking: no deadlock,
/// all children cancelled.
#[test]
fn a_childs_callback_restarts_and_recancels_the_parent() {
    no_deadlock("restart from a callback", || {
        let parent = Arc::new(RunState::new("parent"));
        parent.start().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let mut kids = Vec::new();
        for _ in 0..4 {
            let c = parent.child("c");
            let (p, calls) = (Arc::downgrade(&parent), Arc::clone(&calls));
            c.on_cancel(move |_| {
                let p = p.upgrade().unwrap();
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    p.stop().unwrap();
                    p.start().unwrap();
                    let late = p.child("late");
                    assert!(!late.cancelled(), "the new run is not cancelled");
                    p.cancel_with("again");
                    assert!(late.cancelled());
                    assert_eq!(late.reason().as_deref(), Some("again"));
                }
            });
            kids.push(c);
        }
        parent.cancel_with("first");
        for c in &kids {
            assert!(c.cancelled());
        }
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        drop(kids);
        assert_eq!(parent.child_count(), 0);
    });
}

// --- kind: deadlines ---------------------------------------------------------

/// A deadline cancels the parent off the timer thread while makers churn its
/// children: the parent's `on_cancel` (which runs after the children were
/// cancelled) sets a flag, after which every kept child is cancelled with
/// the deadline's reason, and every new child at creation.
#[test]
fn a_deadline_cancel_reaches_every_churning_child() {
    no_deadlock("deadline churn", || {
        const THREADS: usize = 2;
        for round in 0..rounds(10) {
            let parent = Arc::new(RunState::new("parent"));
            let fired = Arc::new(AtomicBool::new(false));
            {
                let fired = Arc::clone(&fired);
                parent.on_cancel(move |_| fired.store(true, Ordering::Release));
            }
            parent
                .cancel_after(Duration::from_millis(if cfg!(miri) {
                    1
                } else {
                    1 + round as u64 % 4
                }))
                .unwrap();
            let makers: Vec<_> = (0..THREADS)
                .map(|t| {
                    let (parent, fired) = (Arc::clone(&parent), Arc::clone(&fired));
                    thread::spawn(move || {
                        let mut rng = Rng(3 + t as u64);
                        let mut ring: VecDeque<Arc<RunState>> = VecDeque::new();
                        let mut after = 0;
                        while after < size(100, 3) {
                            let f = fired.load(Ordering::Acquire);
                            let c = parent.child("c");
                            if f {
                                after += 1;
                                assert!(c.cancelled());
                                for k in &ring {
                                    assert!(k.cancelled(), "a child missed the deadline");
                                    assert_eq!(k.reason().as_deref(), Some("deadline exceeded"));
                                }
                            }
                            ring.push_back(c);
                            if ring.len() > 1 + rng.below(3) {
                                drop(ring.remove(rng.below(ring.len())));
                            }
                            if cfg!(miri) {
                                thread::yield_now();
                            }
                        }
                        ring
                    })
                })
                .collect();
            for m in makers {
                for c in m.join().unwrap() {
                    assert!(c.cancelled());
                }
            }
            assert_eq!(parent.child_count(), 0);
        }
    });
}
