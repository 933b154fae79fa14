#![cfg(not(loom))]
//! The cancellation tree's unsafe code against what safe code can do to a
//! child: move it out of its `Arc`, swap it, forget it, drop its owner or
//! its middle states while walks run (`src/run_state/tree.rs`,
//! `cancel.rs`; from a review of issue 13). Each test is small enough for
//! Miri; natively they are stress tests under a watchdog.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

use multiopen::RunState;

mod common;
use common::{at, no_deadlock, rounds};

// --- the registry freed while a child's unlink is still in its unlock -------

/// The registry freed by the owner the moment the last child's unlink
/// releases its lock: with std's `Mutex` (whose release wakes through
/// `&self` after its swap) the unlink could wake through freed memory; the
/// registry's `sync::Lock` makes the swap its last access. A harness for
/// the interleaving (neither Miri's scheduler nor loom reaches the window
/// reliably; `sync::lock`'s unit test
/// `freed_by_the_next_holder_right_after_a_release` is the same pattern
/// on the lock alone).
#[test]
fn owner_dropped_while_its_last_child_unlinks() {
    no_deadlock("owner vs last child", || {
        for _ in 0..rounds(64) {
            let parent = RunState::new("parent");
            let child = parent.child("child");
            let start = Arc::new(Barrier::new(2));
            let t = at(&start, move || drop(child));
            start.wait();
            drop(parent);
            t.join().unwrap();
        }
    });
}

/// The same window with the owner gone first (its reference in
/// `Slab::keep`): one child's vacate, the other child (last) unlinks and
/// lets `keep` go while the first is still in its unlock.
#[test]
fn two_children_of_a_gone_owner_unlink_at_once() {
    no_deadlock("two children of a gone owner", || {
        for _ in 0..rounds(64) {
            let parent = RunState::new("parent");
            let a = parent.child("a");
            let b = parent.child("b");
            let watch = parent.watch_children_registry().unwrap();
            drop(parent);
            let start = Arc::new(Barrier::new(2));
            let t = at(&start, move || drop(a));
            start.wait();
            drop(b);
            t.join().unwrap();
            assert!(watch.freed());
        }
    });
}

// --- children moved out of their Arc -------------------------------------------

/// A child moved out of its `Arc` before it made children: its children,
/// made after the move, still follow the parent's cancel (the slot's copy
/// of its registry), as `child()`'s docs say; the moved child itself does
/// not (documented), and nothing dangles when it is put back into another
/// `Arc`, swapped with another moved child, and dropped.
#[test]
fn a_child_moved_out_then_made_children_and_swapped() {
    for _ in 0..rounds(50) {
        let parent = RunState::new("parent");
        let other = RunState::new("other");
        let x = Arc::into_inner(parent.child("x")).unwrap();
        let y = Arc::into_inner(other.child("y")).unwrap();
        let mut x = Arc::new(x);
        let mut y = Arc::new(y);
        // No `Weak` to the new allocations: `get_mut` works, and swapping
        // the values must be harmless.
        std::mem::swap(Arc::get_mut(&mut x).unwrap(), Arc::get_mut(&mut y).unwrap());
        // `x` now holds other's child, `y` parent's.
        let gy = y.child("gy");
        let gx = x.child("gx");
        let bystander = Arc::new(RunState::new("bystander"));
        parent.cancel();
        assert!(
            gy.cancelled(),
            "a grandchild of a moved child missed the cancel"
        );
        assert!(
            !gx.cancelled(),
            "other's grandchild was cancelled by parent"
        );
        assert!(!bystander.cancelled());
        other.cancel_with("why");
        assert_eq!(gx.reason().as_deref(), Some("why"));
        let (wp, wo) = (
            parent.watch_children_registry().unwrap(),
            other.watch_children_registry().unwrap(),
        );
        drop(parent);
        drop(other);
        drop((x, y));
        assert!(
            !wp.freed() && !wo.freed(),
            "orphans still hold the registries"
        );
        drop((gx, gy));
        assert!(wp.freed() && wo.freed());
    }
}

/// `Arc::get_mut` on a linked child is refused (the slot's `Weak`), and
/// `try_unwrap` while a clone lives gives the `Arc` back: neither can move
/// the value out from under the walk.
#[test]
fn get_mut_is_refused_and_try_unwrap_with_a_clone_fails() {
    let parent = RunState::new("parent");
    let mut c = parent.child("c");
    assert!(Arc::get_mut(&mut c).is_none());
    let c2 = Arc::clone(&c);
    let c = Arc::try_unwrap(c).unwrap_err();
    drop(c2);
    let v = Arc::try_unwrap(c).unwrap();
    parent.cancel();
    assert!(
        !v.cancelled(),
        "documented: a moved-out child misses the cancel"
    );
    assert_eq!(parent.child_count(), 1);
    drop(v);
    assert_eq!(parent.child_count(), 0);
}

/// A moved-out child whose parent (a middle state) and grandparent go:
/// the chain of orphans is freed by the moved child's unlink.
#[test]
fn a_moved_out_child_under_an_orphan_chain() {
    for _ in 0..rounds(50) {
        let root = RunState::new("root");
        let mid = root.child("mid");
        let leaf = Arc::into_inner(mid.child("leaf")).unwrap();
        let g = leaf.child("g");
        let (wr, wm) = (
            root.watch_children_registry().unwrap(),
            mid.watch_children_registry().unwrap(),
        );
        drop(mid); // an orphan in root
        root.cancel();
        assert!(
            g.cancelled(),
            "through root -> orphan(mid) -> going leaf -> g"
        );
        assert!(!leaf.cancelled());
        drop(root);
        drop(leaf);
        assert!(!wm.freed(), "g still linked in leaf's registry only");
        drop(g);
        assert!(wr.freed() && wm.freed());
    }
}

// --- concurrent: a walk holding the last reference; cancel_with vs cancel ----------

/// Many children, some with callbacks, some with children, some moved out
/// of their `Arc` by their holders, dropped as a `cancel` and a
/// `cancel_with` (after a restart) walk: every child still linked and in an
/// `Arc` when a cancel returned is cancelled, everything is freed.
#[test]
fn moves_drops_and_two_kinds_of_walk() {
    let n = if cfg!(miri) { 6 } else { 48 };
    no_deadlock("moves, drops and walks", move || {
        for round in 0..rounds(200) {
            let parent = Arc::new(RunState::new("parent"));
            parent.start().unwrap();
            let calls = Arc::new(AtomicUsize::new(0));
            let mut kept = Vec::new();
            let mut moved = Vec::new();
            let mut dropped = Vec::new();
            for i in 0..n {
                let c = parent.child("c");
                if i % 4 == 1 {
                    let calls = Arc::clone(&calls);
                    c.on_cancel(move |_| {
                        calls.fetch_add(1, Ordering::Relaxed);
                    });
                }
                let g = (i % 4 == 2).then(|| c.child("g"));
                match (i + round) % 3 {
                    0 => kept.push((c, g)),
                    1 => moved.push((c, g)),
                    _ => dropped.push((c, g)),
                }
            }
            let watch = parent.watch_children_registry().unwrap();
            let start = Arc::new(Barrier::new(4));
            let mover = at(&start, move || {
                moved
                    .into_iter()
                    .map(|(c, g)| (Arc::into_inner(c), g))
                    .collect::<Vec<_>>()
            });
            let dropper = at(&start, move || drop(dropped));
            let p2 = Arc::clone(&parent);
            let restarter = at(&start, move || {
                let _ = p2.stop();
                let _ = p2.start();
                p2.cancel_with("second");
            });
            start.wait();
            parent.cancel();
            let moved = mover.join().unwrap();
            dropper.join().unwrap();
            restarter.join().unwrap();
            for (c, g) in &kept {
                assert!(c.cancelled());
                assert!(g.as_ref().is_none_or(|g| g.cancelled()));
            }
            // A moved child's own children follow the parent whatever the
            // timing (through the walk's upgrade, or the slot's copy).
            for (_, g) in &moved {
                assert!(g.as_ref().is_none_or(|g| g.cancelled()));
            }
            drop(kept);
            drop(moved);
            drop(parent);
            assert!(
                watch.freed(),
                "the registry outlived its owner and children"
            );
        }
    });
}

/// A forgotten child (`mem::forget` of its `Arc`) is still walked (its
/// count never reaches zero) and its parent's registry is leaked, never
/// freed under it. Native only: Miri would report the leak this is about.
#[test]
fn a_forgotten_child_is_still_walked() {
    if cfg!(miri) {
        return;
    }
    let parent = RunState::new("parent");
    let c = parent.child("c");
    let w = Arc::downgrade(&c);
    std::mem::forget(c);
    let watch = parent.watch_children_registry().unwrap();
    parent.cancel();
    assert!(w.upgrade().unwrap().cancelled());
    drop(parent);
    assert!(!watch.freed());
}
