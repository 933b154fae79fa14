#![cfg(not(loom))]
//! RunState as a cancellation tree (issue 13): children, reasons,
//! deadlines, the waits for cancel and stop, the drop guard, shared runs,
//! the sticky cancel; their misuse cases.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::task::{Context, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use multiopen::run_state::DEADLINE_EXCEEDED;
use multiopen::{RunEvent, RunPhase, RunState};

mod common;
use common::{at, counting, no_deadlock, quietly, rounds};

// --- children ------------------------------------------------------------------

#[test]
fn a_parent_cancel_reaches_children_and_grandchildren_never_up() {
    let parent = RunState::new("parent");
    let child = parent.child("child");
    let grandchild = child.child("grandchild");
    let sibling = parent.child("sibling");
    grandchild.cancel();
    assert!(!child.cancelled() && !parent.cancelled(), "never upwards");
    child.cancel();
    assert!(!parent.cancelled() && !sibling.cancelled());
    parent.cancel_with("stop");
    assert!(sibling.cancelled());
    assert_eq!(sibling.reason().as_deref(), Some("stop"));
    // The grandchild kept its own (first) cancel's reason: none.
    assert_eq!(grandchild.reason(), None);
}

#[test]
fn a_child_has_its_own_run_times_and_callbacks() {
    let parent = RunState::new("parent");
    let child = parent.child("child");
    let cancels = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&cancels);
    child.on_cancel(move |rs| {
        assert_eq!(rs.name(), "child");
        seen.fetch_add(1, Ordering::SeqCst);
    });
    child.start().unwrap();
    assert!(child.is_running() && !parent.is_running());
    assert!(child.start_time().is_some() && parent.start_time().is_none());
    parent.cancel();
    assert_eq!(cancels.load(Ordering::SeqCst), 1);
    assert_eq!(child.state(), RunPhase::Stopping);
    child.stop().unwrap();
    assert_eq!(child.state(), RunPhase::Cancelled);
    // A child cancelled by its parent stays cancelled, run after run.
    child.start().unwrap();
    assert!(child.stopping(), "the parent's cancel is never cleared");
}

#[test]
fn a_child_made_after_the_parent_was_cancelled_is_cancelled_at_once() {
    let parent = RunState::new("parent");
    parent.cancel_with("gone");
    let late = parent.child("late");
    assert!(late.cancelled());
    assert_eq!(late.reason().as_deref(), Some("gone"));
    let grand = late.child("grand");
    assert!(grand.cancelled());
    assert_eq!(grand.reason().as_deref(), Some("gone"));
    // And after the parent's cancelled run has stopped, too.
    let p2 = RunState::new("p2");
    p2.start().unwrap();
    p2.cancel();
    p2.stop().unwrap();
    assert!(p2.child("after").cancelled());
    p2.start().unwrap(); // a new, clean run of the parent
    assert!(!p2.child("fresh").cancelled());
}

#[test]
fn dropped_children_unlink_and_dropped_parents_detach() {
    let parent = RunState::new("parent");
    let kids: Vec<_> = (0..10).map(|i| parent.child(format!("kid{i}"))).collect();
    assert_eq!(parent.child_count(), 10);
    drop(kids);
    assert_eq!(parent.child_count(), 0);
    // Misuse: a child outliving its parent is detached, not broken.
    let orphan = {
        let parent = RunState::new("short-lived");
        parent.child("orphan")
    };
    assert!(!orphan.cancelled());
    orphan.start().unwrap();
    orphan.cancel();
    orphan.stop().unwrap();
    assert_eq!(orphan.state(), RunPhase::Cancelled);
    assert!(orphan.child("grandorphan").cancelled());
}

#[test]
fn a_deep_chain_is_cancelled_without_recursion() {
    let root = RunState::new("root");
    let mut chain = vec![root.child("0")];
    for i in 1..100_000 {
        let next = chain.last().unwrap().child(format!("{i}"));
        chain.push(next);
    }
    root.cancel();
    assert!(chain.iter().all(|rs| rs.cancelled()));
    // Dropping from the root end: each drop unlinks from a live parent.
    drop(chain);
}

#[test]
fn a_million_children_made_and_dropped_under_concurrent_cancels_keep_memory_flat() {
    const MAKERS: usize = 2;
    // A million in all. The main thread cancels the parent part-way
    // through while the makers make and drop children: every child alive
    // at the cancel, or made after it, must be cancelled. (The live heap,
    // in bytes, under many cancels: `tests/run_state_tree_memory.rs`.)
    const PER_MAKER: usize = 500_000;
    let parent = Arc::new(RunState::new("parent"));
    let start = Arc::new(Barrier::new(MAKERS + 1));
    // Set once the parent's `cancel()` has returned: every child made
    // before it is cancelled by then.
    let cancel_returned = Arc::new(AtomicBool::new(false));
    let makers: Vec<_> = (0..MAKERS)
        .map(|m| {
            let (parent, start) = (Arc::clone(&parent), Arc::clone(&start));
            let cancel_returned = Arc::clone(&cancel_returned);
            thread::spawn(move || {
                start.wait();
                let mut max_slots = 0;
                let mut after_cancel = 0usize;
                let mut held = Vec::with_capacity(8);
                for i in 0..PER_MAKER {
                    let was_cancelled = parent.cancelled();
                    let child = parent.child("c");
                    if was_cancelled {
                        assert!(
                            child.cancelled(),
                            "maker {m}: child {i} of a cancelled parent"
                        );
                        after_cancel += 1;
                    }
                    held.push(child);
                    if held.len() == 8 {
                        // Those made before a cancel are cancelled by it.
                        if cancel_returned.load(Ordering::SeqCst) {
                            assert!(held.iter().all(|c| c.cancelled()));
                        }
                        held.clear();
                    }
                    if i % 4096 == 0 {
                        max_slots = max_slots.max(parent.child_slots());
                    }
                }
                (max_slots, after_cancel)
            })
        })
        .collect();
    start.wait();
    // The canceller: cancels part-way through.
    while parent.child_count() == 0 {
        thread::yield_now();
    }
    // Part-way through, roughly. Ordering only: a cancel that comes after
    // the makers finished finds no children and the test still passes.
    thread::sleep(Duration::from_millis(20));
    parent.cancel();
    cancel_returned.store(true, Ordering::SeqCst);
    let mut max_slots = 0;
    for maker in makers {
        let (slots, _) = maker.join().unwrap();
        max_slots = max_slots.max(slots);
    }
    assert_eq!(parent.child_count(), 0);
    // At most 8 alive per maker at a time: the slab never holds more than
    // a small multiple of that, whatever the million.
    println!("children registry: at most {max_slots} slots for 1,000,000 children");
    assert!(max_slots <= 64, "the registry grew to {max_slots} slots");
}

// --- reasons ---------------------------------------------------------------------

#[test]
fn the_first_reason_wins_and_check_carries_it() {
    let rs = RunState::new("job");
    rs.cancel_with("first");
    rs.cancel_with("second"); // misuse: a reason set twice
    rs.cancel();
    assert_eq!(rs.reason().as_deref(), Some("first"));
    let err = rs.check().unwrap_err();
    assert_eq!(err.reason.as_deref(), Some("first"));
    assert_eq!(err.to_string(), "job was cancelled: first");
    // A plain cancel first: no reason, and a later one does not add one.
    let plain = RunState::new("plain");
    plain.cancel();
    plain.cancel_with("late");
    assert_eq!(plain.reason(), None);
}

#[test]
fn a_reason_belongs_to_its_run() {
    let rs = RunState::new("job");
    rs.start().unwrap();
    rs.cancel_with("run 1");
    rs.stop().unwrap();
    assert_eq!(rs.reason().as_deref(), Some("run 1"), "kept once stopped");
    rs.cancel(); // after the stop: for the next run, with no reason
    assert_eq!(rs.reason(), None);
    rs.start().unwrap();
    assert!(rs.stopping());
    rs.stop().unwrap();
    rs.start().unwrap();
    assert_eq!(rs.reason(), None);
    assert!(!rs.cancelled());
}

#[test]
fn try_cancel_reports_panics_and_cancel_does_not() {
    let rs = RunState::new("job");
    rs.on_cancel(|_| panic!("boom"));
    let err = quietly(|| rs.try_cancel_with("why")).unwrap_err();
    assert_eq!(err.event, RunEvent::Cancel);
    assert_eq!(err.panics, ["boom"]);
    assert_eq!(rs.reason().as_deref(), Some("why"));
    let rs2 = RunState::new("job2");
    rs2.on_cancel(|_| panic!("boom"));
    quietly(|| rs2.cancel()); // no Result, no panic out of it
    assert!(rs2.cancelled());
}

// --- sticky cancel ---------------------------------------------------------------

#[test]
fn a_cancel_before_the_start_is_kept() {
    let rs = RunState::new("early");
    rs.cancel_with("ctrl-c");
    let run = rs.run();
    assert!(run.started());
    assert!(rs.stopping() && rs.check().is_err());
    assert_eq!(rs.reason().as_deref(), Some("ctrl-c"));
}

// --- deadlines -------------------------------------------------------------------

#[test]
fn a_deadline_cancels_with_nobody_polling() {
    let rs = Arc::new(RunState::new("job"));
    let _run = rs.run();
    let began = Instant::now();
    rs.cancel_after(Duration::from_millis(20)).unwrap();
    // Pending, or (this thread descheduled for 20 ms) fired already: the
    // firing clears the deadline and cancels under one lock.
    let pending = rs.deadline();
    assert!(pending.is_some() || rs.cancelled());
    rs.wait_cancelled_timeout(Duration::from_secs(60))
        .expect("the timer cancels it");
    assert!(began.elapsed() >= Duration::from_millis(20));
    assert_eq!(rs.reason().as_deref(), Some(DEADLINE_EXCEEDED));
    assert_eq!(rs.deadline(), None, "fired");
}

#[test]
fn a_deadline_in_the_past_cancels_at_once() {
    let rs = Arc::new(RunState::new("job"));
    rs.cancel_at(Instant::now() - Duration::from_millis(1))
        .unwrap();
    assert!(rs.cancelled());
    assert_eq!(rs.reason().as_deref(), Some(DEADLINE_EXCEEDED));
    let rs = Arc::new(RunState::new("zero"));
    rs.cancel_after(Duration::ZERO).unwrap();
    assert!(rs.cancelled());
}

#[test]
fn a_deadline_reaches_children_and_can_be_replaced_or_cleared() {
    let rs = Arc::new(RunState::new("job"));
    let child = rs.child("child");
    rs.cancel_after(Duration::from_secs(3600)).unwrap();
    rs.cancel_after(Duration::from_millis(5)).unwrap(); // replaces
    child
        .wait_cancelled_timeout(Duration::from_secs(60))
        .unwrap();
    assert_eq!(child.reason().as_deref(), Some(DEADLINE_EXCEEDED));

    let cleared = Arc::new(RunState::new("cleared"));
    cleared.cancel_after(Duration::from_millis(1)).unwrap();
    if cleared.clear_deadline() {
        assert!(cleared
            .wait_cancelled_timeout(Duration::from_millis(30))
            .is_err());
    }
    cleared.cancel_after(Duration::MAX).unwrap(); // never
    assert_eq!(cleared.deadline(), None);
}

#[test]
fn a_state_dropped_before_its_deadline_is_left_alone() {
    let (tx, rx) = mpsc::channel();
    {
        let rs = Arc::new(RunState::new("short"));
        rs.on_cancel(move |_| tx.send(()).unwrap());
        rs.cancel_after(Duration::from_millis(5)).unwrap();
    }
    assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
}

// --- waits -----------------------------------------------------------------------

#[test]
fn wait_cancelled_wakes_on_cancel_and_times_out_otherwise() {
    let rs = Arc::new(RunState::new("job"));
    let err = rs
        .wait_cancelled_timeout(Duration::from_millis(10))
        .unwrap_err();
    assert!(err.waited >= Duration::from_millis(10));
    assert_eq!(err.event, RunEvent::Cancel);
    let waiter = {
        let rs = Arc::clone(&rs);
        thread::spawn(move || rs.wait_cancelled())
    };
    rs.cancel(); // asleep or about to be: woken either way

    waiter.join().unwrap();
    assert!(rs.wait_cancelled_deadline(Instant::now()).is_ok());
}

#[test]
fn wait_stopped_is_a_supervisors_join() {
    let supervisor = RunState::new("supervisor");
    let workers: Vec<_> = (0..3).map(|i| supervisor.child(format!("w{i}"))).collect();
    let (started_tx, started_rx) = mpsc::channel();
    for w in &workers {
        let run = w.run_owned();
        let started_tx = started_tx.clone();
        thread::spawn(move || {
            started_tx.send(()).unwrap();
            run.runstate().wait_cancelled();
        });
    }
    for _ in 0..3 {
        started_rx.recv().unwrap();
    }
    assert!(workers[0]
        .wait_stopped_timeout(Duration::from_millis(5))
        .is_err());
    supervisor.cancel();
    for w in &workers {
        w.wait_stopped();
        assert_eq!(w.state(), RunPhase::Cancelled);
    }
}

#[test]
fn wait_stopped_on_a_never_started_state_waits_for_a_run() {
    let rs = Arc::new(RunState::new("later"));
    let err = rs
        .wait_stopped_timeout(Duration::from_millis(5))
        .unwrap_err();
    assert!(err.waited >= Duration::from_millis(5));
    assert_eq!(
        rs.wait_stopped_deadline(Instant::now() - Duration::from_secs(1))
            .unwrap_err()
            .event,
        RunEvent::End
    );
    let waiter = {
        let rs = Arc::clone(&rs);
        thread::spawn(move || rs.wait_stopped())
    };
    rs.start().unwrap();
    rs.stop().unwrap(); // whenever the waiter began, this is its stop
    waiter.join().unwrap();
    // (A stop followed by a restart before the waiter wakes: the loom model
    // wait_stopped_racing_stop_and_restart.)
}

// --- guards and sharing ----------------------------------------------------------

#[test]
fn drop_guard_cancels_unless_disarmed_even_in_a_panic() {
    let rs = RunState::new("job");
    let r = quietly(|| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _g = rs.drop_guard();
            panic!("scope failed");
        }))
    });
    assert!(r.is_err() && rs.cancelled());
    let kept = Arc::new(RunState::new("kept"));
    let g = kept.drop_guard_owned();
    assert!(!g.disarm().cancelled());
}

#[test]
fn a_shared_run_stops_when_the_last_worker_ends_not_the_first() {
    // The "40 ms surprise": three workers share one state.
    let shared = Arc::new(RunState::new("shared"));
    let all_in = Arc::new(Barrier::new(3));
    let mut go = Vec::new();
    let workers: Vec<_> = (0..3)
        .map(|i| {
            let (shared, all_in) = (Arc::clone(&shared), Arc::clone(&all_in));
            let (tx, rx) = mpsc::channel::<()>();
            go.push(tx);
            thread::spawn(move || {
                let _run = shared.run();
                all_in.wait(); // every worker is in the run
                if i != 0 {
                    rx.recv().unwrap(); // still busy until told
                }
            })
        })
        .collect();
    let mut workers = workers.into_iter();
    workers.next().unwrap().join().unwrap(); // worker 0 is done first
    assert!(shared.is_running(), "the first to end does not stop it");
    go.iter().for_each(|tx| {
        let _ = tx.send(());
    });
    workers.for_each(|w| w.join().unwrap());
    assert!(shared.stopped());
}

#[test]
fn a_shared_run_started_by_start_is_stopped_only_by_stop() {
    let rs = RunState::new("explicit");
    rs.start().unwrap();
    let g = rs.run();
    assert!(!g.started());
    drop(g);
    assert!(rs.is_running());
    rs.stop().unwrap();
}

#[test]
fn a_panicking_worker_cancels_the_shared_run() {
    let rs = Arc::new(RunState::new("shared"));
    let outer = rs.run();
    let rs2 = Arc::clone(&rs);
    let r = quietly(|| {
        thread::spawn(move || {
            let _run = rs2.run();
            panic!("worker failed");
        })
        .join()
    });
    assert!(r.is_err());
    assert!(rs.stopping(), "cancelled, still held by the outer guard");
    assert_eq!(rs.reason().as_deref(), Some("panicked"));
    drop(outer);
    assert_eq!(rs.state(), RunPhase::Cancelled);
}

// --- links that must not break: dropped middles, restarts, re-entrancy -----------

/// `server.child("worker").child("job")` drops the middle state at once:
/// the job still follows the server (the middle's registry stays linked to
/// the server's while the job lives), with the server's reason.
#[test]
fn a_grandchild_of_a_dropped_middle_state_still_follows_the_root() {
    let server = RunState::new("server");
    let job = server.child("worker").child("job");
    server.cancel_with("shutdown");
    assert!(
        job.cancelled(),
        "cut off from the root by the dropped middle"
    );
    assert_eq!(job.reason().as_deref(), Some("shutdown"));
    // And a plain cancel (the marking walk, not the one with a reason).
    let server = RunState::new("server");
    let job = server.child("worker").child("job");
    server.cancel();
    assert!(job.cancelled());
}

/// The same kind down a chain: every dropped middle hands its children on,
/// and once the last descendant goes the orphaned registries go too (the
/// root's registry empties, memory stays flat over many rounds).
#[test]
fn a_chain_of_dropped_middles_still_follows_the_root_and_unlinks() {
    let root = RunState::new("root");
    for _ in 0..rounds(1000) {
        let leaf = root.child("a").child("b").child("c").child("leaf");
        assert_eq!(root.child_count(), 0, "the middles are gone");
        drop(leaf);
        assert!(root.child_slots() <= 4, "slots {}", root.child_slots());
    }
    let leaves: Vec<_> = (0..8)
        .map(|i| root.child("a").child("b").child(format!("leaf{i}")))
        .collect();
    root.cancel_with("all");
    assert!(leaves.iter().all(|l| l.cancelled()));
    assert!(leaves.iter().all(|l| l.reason().as_deref() == Some("all")));
    drop(leaves);
    assert_eq!(root.child_count(), 0);
    assert!(root.child_slots() <= 8, "slots {}", root.child_slots());
}

/// A middle dropped while the root's cancel walks (many rounds, on two
/// threads): the grandchild ends cancelled either way.
#[test]
fn a_middle_dropped_while_the_root_cancels_leaves_its_children_cancelled() {
    for _ in 0..rounds(2000) {
        let root = Arc::new(RunState::new("root"));
        let middle = root.child("middle");
        let job = middle.child("job");
        let barrier = Arc::new(Barrier::new(2));
        let r = Arc::clone(&root);
        let t = at(&barrier, move || r.cancel());
        barrier.wait();
        drop(middle);
        t.join().unwrap();
        assert!(job.cancelled());
    }
}

/// A child made between its parent's cancelled stop and the parent's
/// restart reads cancelled (as the parent does then) only until its own
/// next start: the parent's next run is not cancelled, nor is the child's.
#[test]
fn a_child_made_after_a_cancelled_run_ended_follows_the_parents_current_run() {
    let parent = RunState::new("supervisor");
    parent.start().unwrap();
    parent.cancel_with("old run");
    parent.stop().unwrap();
    let worker = parent.child("worker"); // made while the parent is stopped
    assert!(worker.cancelled(), "as its parent reads now");
    assert_eq!(worker.reason().as_deref(), Some("old run"));
    parent.start().unwrap();
    assert!(!parent.cancelled(), "the parent's new run is not cancelled");
    worker.start().unwrap();
    assert!(!worker.cancelled(), "not cancelled for ever by a past run");
    assert_eq!(worker.reason(), None);
    parent.cancel_with("new run");
    assert!(worker.cancelled());
    assert_eq!(worker.reason().as_deref(), Some("new run"));
}

/// A parent's cancel reaches its children with its reason even if the
/// parent's cancelled run is stopped and restarted during the cancel (here
/// inline, by a waker that the cancel wakes before it walks the children).
#[test]
fn children_inherit_the_reason_even_if_the_parent_restarts_meanwhile() {
    struct Restart(Arc<RunState>);
    impl Wake for Restart {
        fn wake(self: Arc<Self>) {
            let _ = self.0.stop();
            let _ = self.0.start();
        }
    }
    let parent = Arc::new(RunState::new("supervisor"));
    parent.start().unwrap();
    let child = parent.child("worker");
    let grandchild = child.child("job");
    let waker = Waker::from(Arc::new(Restart(Arc::clone(&parent))));
    let mut wait = pin!(parent.wait_cancelled_async());
    assert!(wait
        .as_mut()
        .poll(&mut Context::from_waker(&waker))
        .is_pending());
    parent.cancel_with("shutdown");
    assert!(child.cancelled() && grandchild.cancelled());
    assert_eq!(child.reason().as_deref(), Some("shutdown"));
    assert_eq!(grandchild.reason().as_deref(), Some("shutdown"));
}

/// The same kind at creation: a child made while the parent is cancelled
/// gets the reason of the parent's cancel as it is when the child is
/// linked, never a later run's "none".
#[test]
fn a_child_made_while_the_parent_restarts_gets_a_reason_that_matches_its_cancel() {
    for _ in 0..rounds(2000) {
        let parent = Arc::new(RunState::new("parent"));
        parent.start().unwrap();
        parent.cancel_with("why");
        let p = Arc::clone(&parent);
        let t = thread::spawn(move || {
            p.stop().unwrap();
            p.start().unwrap();
        });
        let child = parent.child("child");
        t.join().unwrap();
        // Cancelled at creation (the parent's running cancel, or its
        // ended one) means the reason "why"; otherwise no reason.
        if child.cancelled() {
            assert_eq!(child.reason().as_deref(), Some("why"));
        } else {
            assert_eq!(child.reason(), None);
        }
    }
}

#[test]
fn children_of_a_dropped_parent_live_on_and_work() {
    let parent = RunState::new("parent");
    let child = parent.child("child");
    let grandchild = child.child("grandchild");
    drop(parent);
    assert!(!child.cancelled());
    child.start().unwrap();
    child.cancel_with("own");
    assert!(grandchild.cancelled());
    assert_eq!(grandchild.reason().as_deref(), Some("own"));
    child.stop().unwrap();
    let late = child.child("late");
    assert!(late.cancelled(), "made while the child reads cancelled");
    drop(child);
    assert!(grandchild.cancelled());
}

#[test]
fn a_child_dropped_inside_the_parents_on_cancel() {
    no_deadlock("drop child in parent's on_cancel", || {
        let parent = Arc::new(RunState::new("parent"));
        let slot: Arc<Mutex<Vec<Arc<RunState>>>> = Arc::new(Mutex::new(Vec::new()));
        for i in 0..8 {
            let c = parent.child(format!("c{i}"));
            c.on_cancel(|_| {});
            slot.lock().unwrap().push(c);
        }
        let s2 = Arc::clone(&slot);
        parent.on_cancel(move |p| {
            s2.lock().unwrap().clear(); // last Arcs: each unlinks (registry lock)
            let again = p.child("made in callback");
            assert!(again.cancelled());
        });
        parent.cancel_with("bye");
        assert_eq!(parent.child_count(), 0);
    });
}

#[test]
fn a_child_dropping_itself_in_its_own_on_cancel() {
    no_deadlock("child drops its own last Arc in its callback", || {
        let parent = RunState::new("parent");
        let holder: Arc<Mutex<Option<Arc<RunState>>>> = Arc::new(Mutex::new(None));
        let child = parent.child("child");
        let h2 = Arc::clone(&holder);
        child.on_cancel(move |_| {
            drop(h2.lock().unwrap().take());
        });
        *holder.lock().unwrap() = Some(child);
        parent.cancel();
        parent.cancel_with("again");
        assert_eq!(parent.child_count(), 0);
    });
}

#[test]
fn a_childs_callback_cancels_its_parent_with_a_reason_reentrantly() {
    no_deadlock("cancel_with on parent from child's on_cancel", || {
        let parent = Arc::new(RunState::new("parent"));
        let child = parent.child("child");
        let sibling = parent.child("sibling");
        let p = Arc::clone(&parent);
        child.on_cancel(move |c| {
            p.cancel_with(format!("escalated from {}", c.name()));
            // the reasons lock and the timer lock of the parent, re-entrantly
            let _ = p.cancel_after(Duration::from_secs(3600));
            let _ = p.clear_deadline();
            let _ = p.reason();
        });
        // The child's own cancel escalates to the parent, which cancels the child again.
        child.cancel_with("child failed");
        assert_eq!(parent.reason().as_deref(), Some("escalated from child"));
        assert_eq!(child.reason().as_deref(), Some("child failed"));
        assert_eq!(sibling.reason().as_deref(), Some("escalated from child"));
        // And the parent's cancel reaching the child's callback: a no-op escalation.
        let parent2 = Arc::new(RunState::new("parent2"));
        let child2 = parent2.child("child2");
        let p2 = Arc::clone(&parent2);
        child2.on_cancel(move |_| p2.cancel_with("second"));
        parent2.cancel_with("first");
        assert_eq!(parent2.reason().as_deref(), Some("first"));
        assert_eq!(child2.reason().as_deref(), Some("first"));
    });
}

#[test]
fn a_panicking_waker_or_child_callback_does_not_stop_the_cancel() {
    struct Boom;
    impl Wake for Boom {
        fn wake(self: Arc<Self>) {
            panic!("waker panicked");
        }
    }
    quietly(|| {
        let parent = RunState::new("parent");
        let kids: Vec<_> = (0..4).map(|i| parent.child(format!("k{i}"))).collect();
        kids[1].on_cancel(|_| panic!("child callback panicked"));
        let boom = Waker::from(Arc::new(Boom));
        let (count, ok) = counting();
        let mut a = pin!(parent.wait_cancelled_async());
        let mut b = pin!(kids[3].wait_cancelled_async());
        assert!(a
            .as_mut()
            .poll(&mut Context::from_waker(&boom))
            .is_pending());
        assert!(b.as_mut().poll(&mut Context::from_waker(&ok)).is_pending());
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| parent.cancel_with("go")));
        assert!(r.is_ok(), "cancel never panics");
        assert!(kids.iter().all(|k| k.cancelled()));
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(a.as_mut().poll(&mut Context::from_waker(&ok)).is_ready());
        assert!(b.as_mut().poll(&mut Context::from_waker(&ok)).is_ready());
        assert_eq!(parent.registered_wakers(), 0);
    });
}

/// Kind: a registry kept alive for ever (a leak) or freed while linked
/// children still point at it. A child's link holds no count on its
/// parent's registry: the parent's reference stays in the registry while
/// children are linked, and the unlink that empties it takes it back.
/// Each order of drops frees each registry exactly when the last of its
/// owner and its children has gone (Miri, which runs this, reports a use
/// after free or a leak).
#[test]
fn registries_are_freed_when_their_owner_and_children_are_all_gone() {
    // Owner first, then the children.
    let root = RunState::new("root");
    let a = root.child("a");
    let b = root.child("b");
    let watch = root.watch_children_registry().expect("made by child()");
    drop(root);
    assert!(!watch.freed(), "children still linked");
    drop(a);
    assert!(!watch.freed(), "one child still linked");
    drop(b);
    assert!(
        watch.freed(),
        "the last child took the owner's reference back"
    );

    // Children first, then the owner.
    let root = RunState::new("root");
    drop(root.child("a"));
    let watch = root.watch_children_registry().expect("made by child()");
    assert!(!watch.freed(), "the owner holds it");
    drop(root);
    assert!(watch.freed(), "no child linked: the owner's drop frees it");

    // A dropped middle: its registry is an orphan in the root's, freed
    // with its last child (and the root's with the root).
    let root = RunState::new("root");
    let middle = root.child("middle");
    let job = middle.child("job");
    let root_watch = root.watch_children_registry().expect("made by child()");
    let middle_watch = middle.watch_children_registry().expect("made by child()");
    drop(middle);
    assert!(
        !middle_watch.freed(),
        "the job still follows the root through it"
    );
    root.cancel();
    assert!(job.cancelled(), "the orphan was walked");
    drop(job);
    assert!(middle_watch.freed(), "the orphan went with its last child");
    assert_eq!(root.child_count(), 0);
    drop(root);
    assert!(root_watch.freed());
}

/// A thread that drops `value` once `start` lets it go (every racer waits
/// at the same barrier, so the drop races the others' work).
fn drop_at<T: Send + 'static>(start: &Arc<Barrier>, value: T) -> thread::JoinHandle<()> {
    at(start, move || drop(value))
}

/// A thread that, at `start`, cancels `parent` (if `cancel_first`), ends
/// its run, starts the next, and cancels that: racing the caller's own
/// cancel of the first run.
fn restart_at(
    start: &Arc<Barrier>,
    parent: &Arc<RunState>,
    cancel_first: bool,
) -> thread::JoinHandle<()> {
    let parent = Arc::clone(parent);
    at(start, move || {
        if cancel_first {
            parent.cancel();
        }
        let _ = parent.stop();
        parent.start().unwrap();
        parent.cancel();
    })
}

// --- review of the address-only slab (3c4648a) ---------------------------------

/// Use-after-free: safe code can move a child's value out of its `Arc`
/// (`Arc::into_inner`, `try_unwrap`, `get_mut` + `mem::replace`); the
/// allocation is then freed while the value, still linked, lives on, so a
/// slot that kept only the address pointed at freed memory (reused here by
/// a bystander's `Arc<RunState>`, which the parent's cancel then hit).
#[test]
fn a_child_moved_out_of_its_arc_leaves_no_dangling_address() {
    for _ in 0..rounds(100) {
        let parent = RunState::new("parent");
        let child = parent.child("child");
        let grandchild = child.child("grandchild");
        let moved = Arc::into_inner(child).expect("the only reference");
        // Likely the freed allocation again (same size).
        let bystander = Arc::new(RunState::new("bystander"));
        parent.cancel();
        assert!(!bystander.cancelled(), "a parent's cancel hit a stranger");
        // Its own children still follow the parent (as a going child's do).
        assert!(grandchild.cancelled());
        assert_eq!(parent.child_count(), 1);
        drop(moved);
        assert_eq!(parent.child_count(), 0);
        drop(grandchild);
    }
}

/// Use-after-free: two children swapped between their `Arc`s
/// (`Arc::get_mut` + `mem::swap`, safe code) each live in the other's
/// allocation; when one goes, its allocation is freed while the other
/// parent's slot still holds its address.
#[test]
fn children_swapped_between_arcs_leave_no_dangling_address() {
    for _ in 0..rounds(100) {
        let a = RunState::new("a");
        let b = RunState::new("b");
        let mut x = a.child("x");
        let mut y = b.child("y");
        // (With a weak count in the parent's slot, `get_mut` refuses: then
        // there is nothing to swap, which is fine.)
        if let (Some(x), Some(y)) = (Arc::get_mut(&mut x), Arc::get_mut(&mut y)) {
            std::mem::swap(x, y);
        }
        // `x`'s allocation now holds b's child; drop it: b's slot goes,
        // a's slot (which held x's address) must not dangle.
        drop(x);
        let bystander = Arc::new(RunState::new("bystander"));
        a.cancel();
        b.cancel();
        assert!(!bystander.cancelled(), "a parent's cancel hit a stranger");
        drop(y);
        assert_eq!(a.child_count() + b.child_count(), 0);
    }
}

/// Use-after-free or a lost cancel with two walks of one registry at once:
/// a parent cancelled, stopped, restarted and cancelled again while the
/// first walk runs, as its children (some with callbacks or children of
/// their own, so that both kinds of follow-up are met) drop. Every child
/// alive when a cancel returned is cancelled; the registry empties.
#[test]
fn two_walks_of_one_registry_while_children_drop_lose_no_cancel() {
    let n = if cfg!(miri) { 6 } else { 64 };
    for _ in 0..rounds(200) {
        let parent = Arc::new(RunState::new("parent"));
        parent.start().unwrap();
        let children: Vec<_> = (0..n)
            .map(|i| {
                let c = parent.child("c");
                if i % 3 == 1 {
                    c.on_cancel(|_| {});
                }
                let grand = (i % 3 == 2).then(|| c.child("g"));
                (c, grand)
            })
            .collect();
        let (kept, dropped): (Vec<_>, Vec<_>) = children
            .into_iter()
            .enumerate()
            .partition(|(i, _)| i % 2 == 0);
        let start = Arc::new(Barrier::new(3));
        let dropper = drop_at(&start, dropped);
        let restarter = restart_at(&start, &parent, true);
        start.wait();
        parent.cancel();
        restarter.join().unwrap();
        dropper.join().unwrap();
        // Each of the restarter's cancels returned: the kept children (and
        // their children) are cancelled.
        for (_, (c, g)) in &kept {
            assert!(c.cancelled());
            assert!(g.as_ref().is_none_or(|g| g.cancelled()));
        }
        assert_eq!(parent.child_count(), kept.len());
        drop(kept);
        assert_eq!(parent.child_count(), 0);
    }
}

/// Use-after-free or a lost cancel through an orphan: a grandparent's walk
/// reaches a registry through the slot of a middle state that drops at
/// that moment, while the middle's children drop too (and one stays).
#[test]
fn a_walk_through_an_orphan_while_the_middle_and_its_children_drop() {
    let n = if cfg!(miri) { 4 } else { 32 };
    for _ in 0..rounds(300) {
        let root = RunState::new("root");
        let middle = root.child("middle");
        let stays = middle.child("stays");
        let going: Vec<_> = (0..n).map(|_| middle.child("going")).collect();
        let start = Arc::new(Barrier::new(3));
        let t_middle = drop_at(&start, middle);
        let t_children = drop_at(&start, going);
        start.wait();
        root.cancel();
        t_middle.join().unwrap();
        t_children.join().unwrap();
        assert!(stays.cancelled(), "a grandchild missed the root's cancel");
        // The middle is gone: its registry hangs off root as an orphan
        // until `stays` goes (not counted as a child).
        assert_eq!(root.child_count(), 0);
        let weak = Arc::downgrade(&stays);
        drop(stays);
        assert!(weak.upgrade().is_none());
        assert!(root.child_slots() <= 4);
    }
}

/// Use-after-free or a deadlock when a parent goes while its children drop
/// and the grandparent cancels: the registry, whose last owner's reference
/// sits in `Slab::keep`, must live exactly until the last unlink.
#[test]
fn a_parent_dropped_while_its_children_drop_and_the_grandparent_cancels() {
    let n = if cfg!(miri) { 4 } else { 32 };
    no_deadlock("parent, children and grandparent racing", move || {
        for _ in 0..rounds(300) {
            let root = Arc::new(RunState::new("root"));
            let parent = root.child("parent");
            let kids: Vec<_> = (0..n).map(|_| parent.child("kid")).collect();
            let watch: Vec<_> = kids.iter().map(Arc::downgrade).collect();
            let start = Arc::new(Barrier::new(3));
            let t_parent = drop_at(&start, parent);
            // A `Vec` drops its elements one by one, in order.
            let t_kids = drop_at(&start, kids);
            start.wait();
            root.cancel();
            t_parent.join().unwrap();
            t_kids.join().unwrap();
            assert!(watch.iter().all(|w| w.upgrade().is_none()));
            assert_eq!(root.child_count(), 0);
        }
    });
}

/// A leak or a dangling address when a walk holds a child's last reference
/// (its holder dropped it between the walk's upgrade and release) and
/// another walk (the parent's next run's cancel) meets its slot: many
/// plain children dropped by their holders while two cancels walk.
#[test]
fn a_child_whose_last_reference_a_walk_holds_meets_a_second_walk() {
    let n = if cfg!(miri) { 8 } else { 256 };
    for _ in 0..rounds(100) {
        let parent = Arc::new(RunState::new("parent"));
        parent.start().unwrap();
        let kids: Vec<_> = (0..n).map(|_| parent.child("kid")).collect();
        let watch: Vec<_> = kids.iter().map(Arc::downgrade).collect();
        let start = Arc::new(Barrier::new(3));
        // Back to front, against the walk's direction, so they cross (a
        // `Vec` drops its elements in order).
        let dropper = drop_at(&start, kids.into_iter().rev().collect::<Vec<_>>());
        let second = restart_at(&start, &parent, false);
        start.wait();
        parent.cancel();
        dropper.join().unwrap();
        second.join().unwrap();
        assert!(watch.iter().all(|w| w.upgrade().is_none()));
        assert_eq!(parent.child_count(), 0);
    }
}
