#![cfg(not(loom))]
//! The fast slot (`src/run_state/tree/fast_slot.rs`): a parent's one child
//! linked and unlinked without the registry's lock. What it must keep of
//! the slab's contract: the count, the cancel reaching the child at once
//! (made before, during or after it), children of a dropped fast child
//! still following the root, the registry freed when its owner and every
//! child are gone, and a child moved out of its `Arc`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use multiopen::RunState;

#[test]
fn a_lone_child_takes_the_fast_slot_and_never_touches_the_slab() {
    let parent = RunState::new("parent");
    for _ in 0..if cfg!(miri) { 200 } else { 10_000 } {
        let child = parent.child("one at a time");
        assert_eq!(parent.child_count(), 1);
        drop(child);
    }
    assert_eq!(parent.child_count(), 0);
    assert_eq!(parent.child_slots(), 0, "the slab was used");
    parent.cancel();
    assert!(parent.child("late").cancelled());
}

#[test]
fn children_beside_the_fast_one_go_to_the_slab_and_all_follow_the_cancel() {
    let parent = RunState::new("parent");
    let first = parent.child("fast");
    let others: Vec<_> = (0..5).map(|_| parent.child("slab")).collect();
    assert_eq!(parent.child_count(), 6);
    assert!(parent.child_slots() >= 5);
    drop(first);
    assert_eq!(parent.child_count(), 5);
    // The slot is free again: the next child takes it.
    let again = parent.child("fast again");
    assert_eq!(parent.child_count(), 6);
    parent.cancel_with("all of them");
    for child in others.iter().chain([&again]) {
        assert!(child.cancelled());
        assert_eq!(child.reason().as_deref(), Some("all of them"));
    }
}

#[test]
fn a_dropped_fast_child_leaves_its_own_children_following_the_root() {
    let root = RunState::new("root");
    let middle = root.child("middle"); // in root's fast slot
    let job = middle.child("job"); // in middle's fast slot
    let other = middle.child("other"); // in middle's slab
    drop(middle);
    assert_eq!(root.child_count(), 0, "an orphan is not a child");
    root.cancel_with("shutdown");
    assert!(job.cancelled() && other.cancelled());
    assert_eq!(job.reason().as_deref(), Some("shutdown"));
    drop(job);
    drop(other);
    // The orphan's slot upstream was freed with its last child: the root
    // makes and drops children as before.
    assert_eq!(root.child_count(), 0);
    let next = root.child("next");
    assert!(next.cancelled(), "made after the root's cancel");
}

#[test]
fn a_fast_child_outliving_its_parent_frees_the_registry_when_it_drops() {
    let parent = RunState::new("parent");
    let child = parent.child("child");
    let watch = parent.watch_children_registry().expect("made by child()");
    drop(parent);
    assert!(!watch.freed(), "freed under a linked child");
    drop(child);
    assert!(
        watch.freed(),
        "the registry outlived its owner and its children"
    );
}

#[test]
fn a_fast_child_under_a_dropped_middle_frees_the_chain_when_it_drops() {
    let root = RunState::new("root");
    let middle = root.child("middle");
    let watch = middle.watch_children_registry();
    assert!(watch.is_none());
    let job = middle.child("job");
    let watch = middle.watch_children_registry().expect("made by child()");
    drop(middle);
    assert!(!watch.freed());
    drop(job);
    assert!(watch.freed(), "the orphan registry outlived its last child");
    assert_eq!(root.child_count(), 0);
}

#[test]
fn a_fast_child_moved_out_of_its_arc_stays_linked_until_it_drops() {
    let parent = RunState::new("parent");
    let child = Arc::into_inner(parent.child("moved")).expect("the only Arc");
    assert_eq!(parent.child_count(), 1);
    // Its `Arc` is gone: the cancel cannot reach it (documented).
    parent.cancel();
    assert!(!child.cancelled());
    drop(child);
    assert_eq!(parent.child_count(), 0);
    assert_eq!(parent.child_slots(), 0);
}

#[test]
fn children_made_and_dropped_by_many_threads_while_the_parent_cancels_all_end_cancelled() {
    const THREADS: usize = 4;
    // Small under Miri, which checks these races for UB and data races.
    let (each, rounds) = if cfg!(miri) { (100, 2) } else { (20_000, 20) };
    for _ in 0..rounds {
        let parent = Arc::new(RunState::new("parent"));
        let go = Arc::new(Barrier::new(THREADS + 1));
        let makers: Vec<_> = (0..THREADS)
            .map(|t| {
                let parent = Arc::clone(&parent);
                let go = Arc::clone(&go);
                thread::spawn(move || {
                    go.wait();
                    let mut kept = Vec::new();
                    for i in 0..each {
                        let child = parent.child("child");
                        // Keep some, drop the rest at once: the fast slot
                        // and the slab are both in play.
                        if (i + t) % 7 == 0 {
                            kept.push(child);
                        }
                    }
                    kept
                })
            })
            .collect();
        go.wait();
        thread::yield_now();
        parent.cancel();
        for maker in makers {
            for child in maker.join().unwrap() {
                assert!(child.cancelled(), "a child missed its parent's cancel");
            }
        }
        assert_eq!(parent.child_count(), 0);
    }
}

// --- kind: a lock-free unlink's free ordered after a walk's reads ----------
//
// From the review: the unlink's CAS must acquire the walk's release of
// `BUSY`, or a walk's read of the child's allocation (its failed upgrade)
// is not ordered before the free by whoever lets go of the last `Weak`
// after the unlink (here a user's, on a third thread). Miri (several seeds,
// see `.ci/run`) reports the data race on the old code.

#[test]
fn a_walks_read_of_a_moved_out_fast_child_happens_before_its_free() {
    let parent = Arc::new(RunState::new("parent"));
    let arc = parent.child("moved");
    let user_weak = Arc::downgrade(&arc);
    let child = Arc::into_inner(arc).expect("the only Arc");
    let done = Arc::new(AtomicBool::new(false));
    let walker = {
        let parent = Arc::clone(&parent);
        let done = Arc::clone(&done);
        thread::spawn(move || {
            // The walk: the upgrade fails (a read of the strong count),
            // then `BUSY` is cleared.
            parent.cancel();
            done.store(true, Ordering::Relaxed);
        })
    };
    // Relaxed: an order in time only, no happens-before with the walker.
    while !done.load(Ordering::Relaxed) {
        thread::yield_now();
    }
    drop(child); // the lock-free unlink: CAS to empty, the slot's `Weak` let go
                 // The last `Weak`, on a thread ordered after this one only.
    thread::spawn(move || drop(user_weak)).join().unwrap();
    walker.join().unwrap();
    assert_eq!(parent.child_count(), 0);
}

#[test]
fn a_walks_read_of_a_dropping_fast_child_happens_before_its_free() {
    let parent = Arc::new(RunState::new("parent"));
    let arc = parent.child("dropping");
    let user_weak = Arc::downgrade(&arc);
    let done = Arc::new(AtomicBool::new(false));
    let go = Arc::new(AtomicBool::new(false));
    let walker = {
        let (parent, done, go) = (Arc::clone(&parent), Arc::clone(&done), Arc::clone(&go));
        thread::spawn(move || {
            while !go.load(Ordering::Relaxed) {
                thread::yield_now();
            }
            parent.cancel();
            done.store(true, Ordering::Relaxed);
        })
    };
    // The child's last `Arc` dropped as the walk runs.
    let holder = thread::spawn(move || {
        go.store(true, Ordering::Relaxed);
        drop(arc);
    });
    holder.join().unwrap();
    while !done.load(Ordering::Relaxed) {
        thread::yield_now();
    }
    thread::spawn(move || drop(user_weak)).join().unwrap();
    walker.join().unwrap();
    assert_eq!(parent.child_count(), 0);
}
