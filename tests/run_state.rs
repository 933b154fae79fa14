#![cfg(not(loom))]
//! RunState: every transition and misuse error, the timestamps and the
//! `HasRunState` queries. The waits (pause/resume, the cancellable sleep,
//! the iterator adapter) are in `run_state_waits.rs`, the callbacks and
//! guards in `run_state_callbacks.rs`, the stress tests in
//! `run_state_stress.rs`. No test asserts how fast anything is.

use std::thread;
use std::time::{Duration, SystemTime};

use multiopen::{CallbackPanicked, Cancelled, HasRunState, RunPhase, RunState, RunStateError};

// --- transitions -------------------------------------------------------------

#[test]
fn a_new_state_is_pending() {
    let rs = RunState::new("fresh");
    assert_eq!(rs.name(), "fresh");
    assert_eq!(rs.state(), RunPhase::Pending);
    assert_eq!(rs.state().to_string(), "pending");
    assert!(!rs.is_running());
    assert!(!rs.cancelled());
    assert!(!rs.stopping());
    assert!(!rs.stopped(), "never started is not stopped");
    assert!(!rs.is_paused());
    assert_eq!(rs.start_time(), None);
    assert_eq!(rs.stop_time(), None);
    assert_eq!(rs.run_time(), Duration::ZERO);
    assert_eq!(rs.total_time(), Duration::ZERO);
    assert!(rs.check().is_ok());
}

#[test]
fn start_stop_cycle() {
    let rs = RunState::new("cycle");
    rs.start().unwrap();
    assert_eq!(rs.state(), RunPhase::Running);
    assert!(rs.is_running() && !rs.stopped() && !rs.stopping() && !rs.cancelled());
    rs.stop().unwrap();
    assert_eq!(rs.state(), RunPhase::Stopped);
    assert!(!rs.is_running() && rs.stopped() && !rs.cancelled());
    // A second run.
    rs.start().unwrap();
    assert_eq!(rs.state(), RunPhase::Running);
    assert!(
        !rs.stopped(),
        "stopped() is about the run since the last start"
    );
    rs.end().unwrap();
    assert_eq!(rs.state(), RunPhase::Stopped);
}

#[test]
fn cancel_then_stop_reads_cancelled() {
    let rs = RunState::new("c");
    rs.start().unwrap();
    rs.cancel();
    assert_eq!(rs.state(), RunPhase::Stopping);
    assert_eq!(rs.state().to_string(), "stopping");
    assert!(rs.is_running() && rs.stopping() && rs.cancelled() && !rs.stopped());
    rs.cancel(); // again: nothing changes
    assert_eq!(rs.state(), RunPhase::Stopping);
    rs.stop().unwrap();
    assert_eq!(rs.state(), RunPhase::Cancelled);
    assert_eq!(rs.state().to_string(), "cancelled");
    assert!(rs.stopped() && rs.cancelled() && !rs.stopping());
    // A new start clears the cancel.
    rs.start().unwrap();
    assert!(!rs.cancelled());
    assert_eq!(rs.state(), RunPhase::Running);
}

/// Changed deliberately (issue 13 item 8): a cancel while no run is in
/// progress is kept for the next run ("sticky"), where it used to be
/// cleared by the start as in the Python; the run after that starts clean.
#[test]
fn cancel_when_not_running_is_kept_for_the_next_run() {
    let rs = RunState::new("early");
    rs.cancel();
    assert!(rs.cancelled());
    assert_eq!(rs.state(), RunPhase::Pending, "never started stays pending");
    assert!(rs.check().is_err());
    rs.start().unwrap();
    assert!(rs.cancelled(), "the early cancel is kept");
    assert_eq!(rs.state(), RunPhase::Stopping);
    rs.stop().unwrap();
    assert_eq!(rs.state(), RunPhase::Cancelled);
    rs.start().unwrap();
    assert!(!rs.cancelled(), "the cancel belonged to the run that ended");
    rs.stop().unwrap();
    assert_eq!(rs.state(), RunPhase::Stopped);
    rs.cancel();
    assert_eq!(rs.state(), RunPhase::Cancelled, "a cancel after the stop");
    rs.start().unwrap();
    assert!(rs.stopping(), "kept for the next run");
}

#[test]
fn every_label() {
    let labels: Vec<_> = [
        RunPhase::Pending,
        RunPhase::Running,
        RunPhase::Paused,
        RunPhase::Stopping,
        RunPhase::Cancelled,
        RunPhase::Stopped,
    ]
    .iter()
    .map(|p| (p.to_string(), p.label()))
    .collect();
    for (shown, label) in &labels {
        assert_eq!(shown, label);
    }
    let shown: Vec<_> = labels.into_iter().map(|(s, _)| s).collect();
    assert_eq!(
        shown,
        [
            "pending",
            "running",
            "paused",
            "stopping",
            "cancelled",
            "stopped"
        ]
    );
}

// --- misuse ------------------------------------------------------------------

#[test]
fn start_while_running_is_an_error_and_changes_nothing() {
    let rs = RunState::new("twice");
    rs.start().unwrap();
    rs.cancel();
    let started = rs.start_time();
    let err = rs.start().unwrap_err();
    assert_eq!(
        err,
        RunStateError::AlreadyRunning {
            name: "twice".into()
        }
    );
    assert_eq!(err.to_string(), "twice is already running");
    assert_eq!(rs.start_time(), started);
    assert!(rs.cancelled(), "the refused start did not clear the cancel");
    assert_eq!(rs.state(), RunPhase::Stopping);
}

#[test]
fn stop_errors() {
    let rs = RunState::new("s");
    let err = rs.stop().unwrap_err();
    assert_eq!(err, RunStateError::NeverStarted { name: "s".into() });
    assert_eq!(err.to_string(), "s has never been started");
    assert_eq!(rs.state(), RunPhase::Pending);
    assert_eq!(rs.stop_time(), None);
    rs.start().unwrap();
    rs.stop().unwrap();
    let stopped_at = rs.stop_time();
    let err = rs.end().unwrap_err();
    assert_eq!(err, RunStateError::NotRunning { name: "s".into() });
    assert_eq!(err.to_string(), "the run of s has already stopped");
    assert_eq!(rs.stop_time(), stopped_at);
}

#[test]
fn pause_and_resume_errors() {
    let rs = RunState::new("p");
    assert_eq!(
        rs.pause().unwrap_err(),
        RunStateError::NeverStarted { name: "p".into() }
    );
    assert_eq!(
        rs.resume().unwrap_err(),
        RunStateError::NotPaused { name: "p".into() }
    );
    rs.start().unwrap();
    assert_eq!(
        rs.resume().unwrap_err().to_string(),
        "p is not paused",
        "resume while running"
    );
    rs.pause().unwrap();
    rs.pause().unwrap(); // pausing a paused state is fine
    rs.cancel();
    assert!(!rs.is_paused(), "a cancel ends the pause");
    assert_eq!(
        rs.resume().unwrap_err(),
        RunStateError::NotPaused { name: "p".into() }
    );
    let err = rs.pause().unwrap_err();
    assert_eq!(
        err,
        RunStateError::Cancelled(Cancelled {
            name: "p".into(),
            reason: None
        })
    );
    assert_eq!(err.to_string(), "p was cancelled");
    // The message is the inner error's; it is not returned again as a
    // source (the crate's rule: each cause shown once).
    assert!(std::error::Error::source(&err).is_none());
    rs.stop().unwrap();
    assert_eq!(
        rs.pause().unwrap_err(),
        RunStateError::NotRunning { name: "p".into() }
    );
}

#[test]
fn errors_are_send_sync_errors() {
    fn is_error<E: std::error::Error + Send + Sync + 'static>() {}
    is_error::<RunStateError>();
    is_error::<Cancelled>();
    is_error::<CallbackPanicked>();
    fn is_shared<T: Send + Sync + std::panic::RefUnwindSafe>() {}
    is_shared::<RunState>();
}

// --- timestamps --------------------------------------------------------------

#[test]
fn timestamps_are_monotone_and_consistent() {
    let rs = RunState::new("t");
    let before = SystemTime::now();
    let mut last_stop: Option<SystemTime> = None;
    let mut total = Duration::ZERO;
    for _ in 0..50 {
        rs.start().unwrap();
        let start = rs.start_time().unwrap();
        assert!(start >= before);
        if let Some(stop) = last_stop {
            assert!(start >= stop, "a start never precedes the previous stop");
            assert_eq!(rs.stop_time(), Some(stop), "while running: the last stop");
        }
        let a = rs.run_time();
        let b = rs.run_time();
        assert!(b >= a, "a running run_time only grows");
        assert!(rs.total_time() >= total + b);
        rs.stop().unwrap();
        let stop = rs.stop_time().unwrap();
        assert!(stop >= start);
        let run = rs.run_time();
        assert_eq!(stop.duration_since(start).unwrap(), run);
        assert!(run >= b);
        assert_eq!(rs.run_time(), run, "a stopped run_time is fixed");
        total += run;
        assert_eq!(rs.total_time(), total, "total_time sums the runs");
        assert_eq!(rs.start_time(), Some(start));
        last_stop = Some(stop);
    }
}

#[test]
fn refused_transitions_leave_times_alone() {
    let rs = RunState::new("t");
    rs.start().unwrap();
    let start = rs.start_time();
    assert!(rs.start().is_err());
    assert_eq!(rs.start_time(), start);
    rs.stop().unwrap();
    let (stop, total) = (rs.stop_time(), rs.total_time());
    assert!(rs.stop().is_err());
    assert_eq!((rs.stop_time(), rs.total_time()), (stop, total));
}

#[test]
fn total_time_counts_a_run_in_progress() {
    let rs = RunState::new("t");
    rs.start().unwrap();
    rs.stop().unwrap();
    let first = rs.total_time();
    rs.start().unwrap();
    thread::sleep(Duration::from_millis(5));
    let running = rs.total_time();
    assert!(running >= first + Duration::from_millis(5));
}

#[test]
fn debug_shows_name_state_and_times() {
    let rs = RunState::new("dbg");
    let shown = format!("{rs:?}");
    assert!(shown.contains(r#"name: "dbg""#), "{shown}");
    assert!(shown.contains("state: Pending"), "{shown}");
    assert!(shown.contains("start_time: None"), "{shown}");
    rs.start().unwrap();
    rs.stop().unwrap();
    let shown = format!("{rs:?}");
    assert!(shown.contains("state: Stopped"), "{shown}");
    assert!(shown.contains("stop_time: Some("), "{shown}");
    assert!(shown.contains("run_time: ") && shown.contains("total_time: "));
}

// --- HasRunState ----------------------------------------------------------

struct Worker {
    rs: RunState,
}

impl HasRunState for Worker {
    fn runstate(&self) -> &RunState {
        &self.rs
    }
}

#[test]
fn has_run_state_provides_the_queries() {
    let w = Worker {
        rs: RunState::new("w"),
    };
    assert!(!w.is_running() && !w.cancelled() && !w.stopping() && !w.stopped());
    w.runstate().start().unwrap();
    assert!(w.is_running());
    w.cancel();
    assert!(w.cancelled() && w.stopping());
    w.runstate().stop().unwrap();
    assert!(w.stopped() && !w.stopping());
    fn generic(x: &impl HasRunState) -> bool {
        x.cancelled()
    }
    assert!(generic(&w));
    assert!(!generic(&RunState::new("bare")));
}

#[test]
fn shared_run_guards_with_a_panic_in_one_cancel_and_stop_with_the_last() {
    use std::sync::{mpsc, Arc};
    let rs = Arc::new(RunState::new("shared"));
    let hold = rs.run_owned();
    let (tx, rx) = mpsc::channel();
    let mut threads = Vec::new();
    for i in 0..3 {
        let rs = Arc::clone(&rs);
        let tx = tx.clone();
        threads.push(thread::spawn(move || {
            let _g = rs.run();
            tx.send(()).unwrap();
            if i == 1 {
                panic!("worker 1 failed");
            }
            rs.wait_cancelled();
        }));
    }
    for _ in 0..3 {
        rx.recv().unwrap();
    }
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let results: Vec<_> = threads.into_iter().map(|t| t.join()).collect();
    std::panic::set_hook(prev);
    assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1);
    assert_eq!(
        rs.state(),
        RunPhase::Stopping,
        "the first guard still holds it"
    );
    assert_eq!(rs.reason().as_deref(), Some("panicked"));
    drop(hold);
    assert_eq!(rs.state(), RunPhase::Cancelled);
    // usable again
    let g = rs.run();
    assert!(g.started() && !rs.cancelled());
    drop(g);
    assert_eq!(rs.state(), RunPhase::Stopped);
}
