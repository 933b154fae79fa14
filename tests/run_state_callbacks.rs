#![cfg(not(loom))]
//! RunState callbacks (order, removal, panics, re-entrant registration,
//! drops) and the run guards.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::Duration;

mod common;

use common::quietly;
use multiopen::{CallbackPanicked, RunEvent, RunPhase, RunState, RunStateError};

// --- callbacks -------------------------------------------------------------

type Log = Arc<Mutex<Vec<String>>>;

fn logger(log: &Log, what: &'static str) -> impl Fn(&RunState) + Send + Sync + 'static {
    let log = Arc::clone(log);
    move |rs: &RunState| log.lock().unwrap().push(format!("{what}:{}", rs.state()))
}

#[test]
fn callbacks_run_in_registration_order_on_their_transition() {
    let log: Log = Arc::default();
    let rs = RunState::new("cb");
    rs.on_start(logger(&log, "start1"));
    rs.on_end(logger(&log, "end1"));
    rs.on_cancel(logger(&log, "cancel1"));
    rs.on_start(logger(&log, "start2"));
    rs.on_cancel(logger(&log, "cancel2"));
    rs.on_end(logger(&log, "end2"));
    rs.start().unwrap();
    rs.cancel();
    rs.cancel(); // already cancelled: no callbacks
    rs.stop().unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        [
            "start1:running",
            "start2:running",
            "cancel1:stopping",
            "cancel2:stopping",
            "end1:cancelled",
            "end2:cancelled",
        ]
    );
}

#[test]
fn refused_transitions_run_no_callbacks() {
    let log: Log = Arc::default();
    let rs = RunState::new("cb");
    rs.on_start(logger(&log, "start"));
    rs.on_end(logger(&log, "end"));
    assert!(rs.stop().is_err());
    rs.start().unwrap();
    assert!(rs.start().is_err());
    rs.stop().unwrap();
    assert!(rs.stop().is_err());
    assert_eq!(*log.lock().unwrap(), ["start:running", "end:stopped"]);
}

#[test]
fn callbacks_see_the_transition_done() {
    let rs = RunState::new("cb");
    let checks = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&checks);
    rs.on_start(move |rs| {
        assert!(rs.is_running() && rs.start_time().is_some());
        c.fetch_add(1, Ordering::SeqCst);
    });
    let c = Arc::clone(&checks);
    rs.on_cancel(move |rs| {
        assert!(rs.cancelled());
        c.fetch_add(1, Ordering::SeqCst);
    });
    let c = Arc::clone(&checks);
    rs.on_end(move |rs| {
        assert!(rs.stopped() && rs.stop_time() >= rs.start_time());
        c.fetch_add(1, Ordering::SeqCst);
    });
    rs.start().unwrap();
    rs.cancel();
    rs.stop().unwrap();
    assert_eq!(checks.load(Ordering::SeqCst), 3);
}

#[test]
fn removed_callbacks_do_not_run() {
    let log: Log = Arc::default();
    let rs = RunState::new("cb");
    let a = rs.on_start(logger(&log, "a"));
    let b = rs.on_start(logger(&log, "b"));
    let c = rs.on_start(logger(&log, "c"));
    assert_ne!(a, b);
    assert!(rs.remove_callback(b));
    assert!(!rs.remove_callback(b), "removing twice");
    rs.start().unwrap();
    rs.stop().unwrap();
    assert!(rs.remove_callback(a));
    assert!(rs.remove_callback(c));
    rs.start().unwrap();
    assert_eq!(*log.lock().unwrap(), ["a:running", "c:running"]);
    // Ids are never reused.
    let ids: HashSet<_> = (0..100).map(|_| rs.on_end(|_| {})).collect();
    assert_eq!(ids.len(), 100);
    assert!(!ids.contains(&a));
}

#[test]
fn panicking_callbacks_are_reported_and_poison_nothing() {
    let log: Log = Arc::default();
    let rs = RunState::new("cb");
    rs.on_start(|_| panic!("first"));
    rs.on_start(logger(&log, "second"));
    rs.on_start(|_| std::panic::panic_any(42_u8));
    rs.on_end(|rs| panic!("{} ended", rs.name()));
    let err = quietly(|| rs.start()).unwrap_err();
    let RunStateError::CallbackPanicked(p) = &err else {
        panic!("unexpected {err:?}")
    };
    assert_eq!(p.event, RunEvent::Start);
    assert_eq!(p.panics, ["first", "<non-string panic payload>"]);
    assert_eq!(
        err.to_string(),
        "cb: 2 on_start callback(s) panicked: first; <non-string panic payload>"
    );
    assert!(rs.is_running(), "the start happened");
    assert_eq!(*log.lock().unwrap(), ["second:running"], "the others ran");
    // The state still works.
    rs.cancel();
    let err = quietly(|| rs.stop()).unwrap_err();
    assert_eq!(
        err,
        RunStateError::CallbackPanicked(CallbackPanicked {
            name: "cb".into(),
            event: RunEvent::End,
            panics: vec!["cb ended".into()],
        })
    );
    assert_eq!(rs.state(), RunPhase::Cancelled);
    let err = quietly(|| rs.start()).unwrap_err();
    assert!(matches!(err, RunStateError::CallbackPanicked(_)));
    assert!(rs.is_running() && !rs.cancelled());
}

#[test]
fn callbacks_may_use_the_state_and_register_more() {
    let rs = Arc::new(RunState::new("cb"));
    let inner_ran = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&inner_ran);
    rs.on_start(move |rs| {
        // Registration from a callback: the list is not locked while
        // callbacks run.
        let flag = Arc::clone(&flag);
        rs.on_cancel(move |_| flag.store(true, Ordering::SeqCst));
        // A transition from a callback.
        rs.cancel();
    });
    rs.start().unwrap();
    assert!(rs.cancelled());
    // The on_cancel registered during the start was in place before the
    // nested cancel took its snapshot.
    assert!(inner_ran.load(Ordering::SeqCst));
}

#[test]
fn callbacks_are_dropped_with_the_state() {
    let token = Arc::new(());
    let rs = RunState::new("cb");
    for _ in 0..5 {
        let t = Arc::clone(&token);
        let id = rs.on_start(move |_| drop(Arc::clone(&t)));
        let t = Arc::clone(&token);
        rs.on_end(move |_| drop(Arc::clone(&t)));
        rs.remove_callback(id);
    }
    rs.start().unwrap();
    rs.stop().unwrap();
    drop(rs);
    assert_eq!(Arc::strong_count(&token), 1, "no callback leaked");
}

// --- guards ------------------------------------------------------------------

#[test]
fn the_guard_starts_and_stops() {
    let rs = RunState::new("g");
    {
        let run = rs.run();
        assert!(run.started());
        assert!(run.start_panics().is_none());
        assert_eq!(run.runstate().name(), "g");
        assert!(rs.is_running());
        let nested = rs.run();
        assert!(!nested.started());
        drop(nested);
        assert!(rs.is_running(), "the nested guard leaves it running");
    }
    assert_eq!(rs.state(), RunPhase::Stopped);
    assert!(!rs.cancelled());
    assert!(format!("{:?}", rs.run()).contains("started: true"));
}

#[test]
fn the_guard_cancels_on_panic() {
    let rs = RunState::new("g");
    let log: Log = Arc::default();
    rs.on_cancel(logger(&log, "cancel"));
    rs.on_end(logger(&log, "end"));
    let r = quietly(|| {
        std::panic::catch_unwind(|| {
            let _run = rs.run();
            panic!("scope failed");
        })
    });
    assert!(r.is_err());
    assert_eq!(rs.state(), RunPhase::Cancelled);
    assert_eq!(*log.lock().unwrap(), ["cancel:stopping", "end:cancelled"]);
}

#[test]
fn guard_stop_reports() {
    let rs = RunState::new("g");
    let run = rs.run();
    run.stop().unwrap();
    assert!(rs.stopped());
    let run = rs.run();
    rs.stop().unwrap();
    assert_eq!(
        run.stop().unwrap_err(),
        RunStateError::NotRunning { name: "g".into() }
    );
    rs.on_end(|_| panic!("end"));
    let run = rs.run();
    assert!(matches!(
        quietly(|| run.stop()),
        Err(RunStateError::CallbackPanicked(_))
    ));
    // A guard that did not start does nothing.
    rs.start().unwrap();
    assert_eq!(rs.run().stop(), Ok(()));
    assert!(rs.is_running());
}

#[test]
fn guard_keeps_start_callback_panics() {
    let rs = RunState::new("g");
    rs.on_start(|_| panic!("s"));
    let run = quietly(|| rs.run());
    assert!(run.started());
    assert_eq!(run.start_panics().unwrap().panics, ["s"]);
    drop(run);
    assert!(rs.stopped());
}

#[test]
fn the_owned_guard_moves_to_another_thread() {
    let rs = Arc::new(RunState::new("g"));
    let run = rs.run_owned();
    assert!(run.started());
    let worker = thread::spawn(move || {
        let rs = Arc::clone(run.runstate());
        while !rs.cancelled() {
            thread::yield_now();
        }
        drop(run);
        rs.stopped()
    });
    rs.cancel();
    assert!(worker.join().unwrap());
    assert_eq!(rs.state(), RunPhase::Cancelled);
    let nested = {
        let _outer = rs.run_owned();
        let inner = rs.run_owned();
        assert!(!inner.started() && inner.start_panics().is_none());
        assert!(format!("{inner:?}").contains("started: false"));
        inner.stop()
    };
    assert_eq!(nested, Ok(()));
    assert!(rs.stopped());
    // Panic in the owning thread.
    let run = rs.run_owned();
    let r = quietly(|| {
        thread::spawn(move || {
            let _run = run;
            panic!("worker failed");
        })
        .join()
    });
    assert!(r.is_err());
    assert_eq!(rs.state(), RunPhase::Cancelled);
}

// --- review fixes: guards, callback drops -----------------------------------

/// A guard ends only the run it started. A worker holds `run()`; a
/// supervisor stops that run and starts its own; the worker's guard then
/// leaves the supervisor's run alone, whether the worker's scope ends
/// normally or by a panic (no cancel either).
#[test]
fn a_guard_does_not_end_a_run_it_did_not_start() {
    for panics in [false, true] {
        let rs = Arc::new(RunState::new("g"));
        let step = Arc::new(Barrier::new(2));
        let worker = {
            let (rs, step) = (Arc::clone(&rs), Arc::clone(&step));
            thread::spawn(move || {
                quietly(|| {
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        let run = rs.run();
                        assert!(run.started());
                        step.wait(); // the run is ours
                        step.wait(); // the supervisor restarted it
                        if panics {
                            panic!("worker failed");
                        }
                        run.stop()
                    }))
                })
            })
        };
        step.wait();
        rs.stop().unwrap();
        rs.start().unwrap();
        step.wait();
        match worker.join().unwrap() {
            Ok(stopped) => {
                assert!(!panics);
                assert_eq!(stopped, Err(RunStateError::NotRunning { name: "g".into() }));
            }
            Err(_) => assert!(panics),
        }
        assert_eq!(rs.state(), RunPhase::Running, "panics: {panics}");
        assert!(!rs.cancelled(), "panics: {panics}");
        // A guard dropped (not stopped) on its own run still ends it.
        let rs2 = RunState::new("g2");
        drop(rs2.run());
        assert!(rs2.stopped());
    }
    // The owned guard too.
    let rs = Arc::new(RunState::new("g"));
    let run = rs.run_owned();
    rs.stop().unwrap();
    rs.start().unwrap();
    drop(run);
    assert_eq!(rs.state(), RunPhase::Running);
}

/// Calls `f` in a thread and fails (instead of hanging) if it has not
/// returned within a generous time: a deadlock check.
fn without_deadlock(what: &str, f: impl FnOnce() + Send + 'static) {
    let (done, finished) = std::sync::mpsc::channel();
    let worker = thread::spawn(move || {
        f();
        let _ = done.send(());
    });
    match finished.recv_timeout(Duration::from_secs(30)) {
        Ok(()) => worker.join().unwrap(),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            // `f` panicked: report its panic.
            worker.join().unwrap();
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("{what}: deadlocked"),
    }
}

/// Registers or removes callbacks on the same `RunState` when dropped.
struct Reentrant {
    rs: std::sync::Weak<RunState>,
    dropped: Arc<AtomicUsize>,
}

impl Drop for Reentrant {
    fn drop(&mut self) {
        if let Some(rs) = self.rs.upgrade() {
            let id = rs.on_start(|_| {});
            assert!(rs.remove_callback(id));
            rs.on_end(|_| {});
        }
        self.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

/// A callback whose captured value's `Drop` registers and removes
/// callbacks on the same `RunState`: freeing it (when it is removed, or
/// replaced lists are reclaimed) must not deadlock on the registration lock.
#[test]
fn a_captured_values_drop_may_register_callbacks() {
    without_deadlock("remove_callback", || {
        let rs = Arc::new(RunState::new("d"));
        let dropped = Arc::new(AtomicUsize::new(0));
        let captured = Reentrant {
            rs: Arc::downgrade(&rs),
            dropped: Arc::clone(&dropped),
        };
        let id = rs.on_cancel(move |_| {
            let _keep = &captured;
        });
        rs.start().unwrap();
        rs.cancel();
        assert!(rs.remove_callback(id)); // frees the last list holding it
        assert_eq!(dropped.load(Ordering::SeqCst), 1, "its Drop ran");
        rs.stop().unwrap(); // the `on_end` its Drop registered runs
    });
    without_deadlock("a later registration", || {
        // Removed while a transition holds the list: the list is freed by
        // whichever registration comes next, or by the transition.
        let rs = Arc::new(RunState::new("d"));
        let dropped = Arc::new(AtomicUsize::new(0));
        for _ in 0..100 {
            let captured = Reentrant {
                rs: Arc::downgrade(&rs),
                dropped: Arc::clone(&dropped),
            };
            let id = rs.on_start(move |_| {
                let _keep = &captured;
            });
            let remover = {
                let rs = Arc::clone(&rs);
                thread::spawn(move || assert!(rs.remove_callback(id)))
            };
            rs.start().unwrap();
            rs.stop().unwrap();
            remover.join().unwrap();
            rs.on_cancel(|_| {}); // reclaims what the removal retired
        }
        assert_eq!(dropped.load(Ordering::SeqCst), 100);
    });
}
