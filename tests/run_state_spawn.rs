#![cfg(not(loom))]
//! `RunState::spawn` and `run_state::spawn` (issue 13 item 6): a function
//! on its own thread under a state started before it runs and stopped when
//! it returns (cancelled first on a panic), and its `RunHandle`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

mod common;

use common::quietly;
use multiopen::run_state::{self, SpawnError};
use multiopen::{RunPhase, RunState, RunStateError};

/// Records the callbacks' events on `rs`, in order.
fn record_events(rs: &RunState) -> Arc<Mutex<Vec<&'static str>>> {
    common::record_events(rs, |event| event)
}

#[test]
fn spawn_runs_the_function_under_its_started_state_and_stops_it() {
    let rs = Arc::new(RunState::new("worker"));
    let events = record_events(&rs);
    let handle = rs
        .spawn(|rs| {
            (
                rs.state(),
                RunState::current().name().to_owned(),
                RunState::with_current(|cur| std::ptr::eq(cur, &**rs)),
                thread::current().name().map(str::to_owned),
            )
        })
        .unwrap();
    assert!(
        rs.is_running() || rs.stopped(),
        "started before spawn returned"
    );
    let (phase, current, same, thread_name) = handle.join().unwrap();
    assert_eq!(phase, RunPhase::Running);
    assert_eq!(current, "worker");
    assert!(same);
    assert_eq!(thread_name.as_deref(), Some("worker"));
    assert_eq!(rs.state(), RunPhase::Stopped);
    assert_eq!(*events.lock().unwrap(), ["start", "end"]);
    // The spawning thread's current state is untouched.
    assert!(RunState::try_current().is_none());
}

#[test]
fn spawn_of_a_panicking_function_cancels_then_stops_and_join_returns_the_panic() {
    let rs = Arc::new(RunState::new("doomed"));
    let events = record_events(&rs);
    let payload = quietly(|| {
        rs.spawn(|_| -> u32 { panic!("bad input") })
            .unwrap()
            .join()
            .unwrap_err()
    });
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"bad input"));
    assert_eq!(rs.state(), RunPhase::Cancelled);
    assert_eq!(*events.lock().unwrap(), ["start", "cancel", "end"]);
    // Usable again.
    assert_eq!(rs.spawn(|_| 5).unwrap().join().unwrap(), 5);
    assert_eq!(rs.state(), RunPhase::Stopped);
}

#[test]
fn the_handle_cancels_and_join_returns_once_stopped() {
    let handle = run_state::spawn("looper", |rs| {
        let mut sleeps = 0u32;
        while rs.sleep(Duration::from_secs(3600)).is_ok() {
            sleeps += 1;
        }
        sleeps
    })
    .unwrap();
    let rs = Arc::clone(handle.runstate());
    handle.cancel();
    assert_eq!(handle.join().unwrap(), 0);
    assert_eq!(rs.state(), RunPhase::Cancelled);
}

#[test]
fn join_timeout_times_out_then_join_gets_the_result() {
    let (tx, rx) = mpsc::channel::<u32>();
    let handle = run_state::spawn("waiter", move |_| rx.recv().unwrap() * 2).unwrap();
    let timeout = Duration::from_millis(20);
    let began = Instant::now();
    let handle = handle.join_timeout(timeout).unwrap_err();
    assert!(began.elapsed() >= timeout, "returned before the timeout");
    assert!(!handle.is_finished());
    assert!(handle.runstate().is_running());
    tx.send(21).unwrap();
    assert_eq!(handle.join().unwrap(), 42);
}

#[test]
fn join_deadline_in_the_past_only_checks() {
    let (tx, rx) = mpsc::channel::<()>();
    let handle = run_state::spawn("waiter", move |_| rx.recv().is_ok()).unwrap();
    let handle = handle
        .join_deadline(Instant::now() - Duration::from_secs(1))
        .unwrap_err();
    let handle = handle.join_timeout(Duration::ZERO).unwrap_err();
    tx.send(()).unwrap();
    // Duration::MAX: forever, no overflow.
    assert!(handle.join_timeout(Duration::MAX).ok().unwrap().unwrap());
}

#[test]
fn is_finished_once_the_function_returned_and_the_state_stopped() {
    let (tx, rx) = mpsc::channel::<()>();
    let handle = run_state::spawn("job", move |_| rx.recv().is_ok()).unwrap();
    assert!(!handle.is_finished());
    tx.send(()).unwrap();
    while !handle.is_finished() {
        thread::yield_now();
    }
    assert!(handle.runstate().stopped());
    // Finished: a zero-timeout join has the result.
    assert!(handle.join_timeout(Duration::ZERO).ok().unwrap().unwrap());
}

#[test]
fn spawn_with_a_state_already_running_is_an_error_and_changes_nothing() {
    let rs = Arc::new(RunState::new("busy"));
    rs.start().unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&ran);
    let err = rs
        .spawn(move |_| flag.store(true, Ordering::SeqCst))
        .unwrap_err();
    assert!(matches!(
        err,
        SpawnError::Start(RunStateError::AlreadyRunning { ref name }) if name == "busy"
    ));
    assert_eq!(err.to_string(), "cannot spawn: busy is already running");
    assert!(std::error::Error::source(&err).is_none());
    assert!(!ran.load(Ordering::SeqCst));
    assert!(rs.is_running() && !rs.cancelled());
    rs.stop().unwrap();
    // Stopped: a new run may be spawned.
    rs.spawn(|_| ()).unwrap().join().unwrap();
}

#[test]
fn a_run_restarted_by_the_function_itself_is_left_running() {
    // The spawned run is ended by someone else (here the function): the
    // spawn's own stop must not end the run that came after.
    let handle = run_state::spawn("restarted", |rs| {
        rs.stop().unwrap();
        rs.start().unwrap();
    })
    .unwrap();
    let rs = Arc::clone(handle.runstate());
    handle.join().unwrap();
    assert!(rs.is_running());
    rs.stop().unwrap();
}

#[test]
fn a_dropped_handle_detaches_and_the_state_still_stops() {
    let (tx, rx) = mpsc::channel::<()>();
    let (stopped_tx, stopped_rx) = mpsc::channel::<RunPhase>();
    let rs = Arc::new(RunState::new("detached"));
    let stopped_tx = Mutex::new(stopped_tx);
    rs.on_end(move |rs| {
        let _ = stopped_tx.lock().unwrap().send(rs.state());
    });
    drop(rs.spawn(move |_| rx.recv().is_ok()).unwrap());
    tx.send(()).unwrap();
    assert_eq!(
        stopped_rx.recv_timeout(Duration::from_secs(10)).unwrap(),
        RunPhase::Stopped
    );
}

#[test]
fn nested_spawns_each_run_under_their_own_current_state() {
    let outer = run_state::spawn("outer", |rs| {
        let inner = run_state::spawn("inner", |_| RunState::current().name().to_owned()).unwrap();
        let inner_saw = inner.join().unwrap();
        // The inner thread's scope never touched ours.
        (
            inner_saw,
            RunState::current().name().to_owned(),
            rs.name().to_owned(),
        )
    })
    .unwrap();
    assert_eq!(
        outer.join().unwrap(),
        ("inner".to_owned(), "outer".to_owned(), "outer".to_owned())
    );
}

#[test]
fn fallible_call_never_panics_on_bad_input_a_nul_in_the_thread_name() {
    let handle = run_state::spawn("job\0x", |_| thread::current().name().map(str::to_owned))
        .expect("the NUL is replaced, not refused");
    assert_eq!(handle.join().unwrap().as_deref(), Some("job\u{FFFD}x"));
}

#[test]
fn on_start_panics_are_kept_and_the_function_runs_all_the_same() {
    let rs = Arc::new(RunState::new("job"));
    rs.on_start(|_| panic!("oops"));
    let handle = quietly(|| rs.spawn(|_| 9)).unwrap();
    assert_eq!(handle.start_panics().unwrap().panics, ["oops"]);
    assert_eq!(handle.join().unwrap(), 9);
}

#[test]
fn on_end_panics_on_the_spawned_thread_are_dropped_and_join_still_returns() {
    let rs = Arc::new(RunState::new("job"));
    rs.on_end(|_| panic!("end callback"));
    let out = quietly(|| rs.spawn(|_| 3).unwrap().join());
    assert_eq!(out.unwrap(), 3);
    assert!(rs.stopped());
}

#[test]
fn panic_payload_whose_drop_panics_never_escapes_a_dropped_run_handle() {
    struct PanicOnDrop;
    impl Drop for PanicOnDrop {
        fn drop(&mut self) {
            panic!("PanicOnDrop dropped");
        }
    }
    quietly(|| {
        let handle =
            run_state::spawn("job", |_| -> () { std::panic::panic_any(PanicOnDrop) }).unwrap();
        while !handle.is_finished() {
            thread::yield_now();
        }
        drop(handle); // drops the payload here: its Drop's panic is caught
    });
}

#[test]
fn spawn_of_a_child_sets_its_current_state_inside_another_entered_one() {
    let parent = Arc::new(RunState::new("parent"));
    let other = Arc::new(RunState::new("other"));
    let _entered = other.enter();
    assert_eq!(RunState::current().name(), "other");
    let child = parent.child("worker");
    let (tx, rx) = mpsc::channel::<()>();
    let handle = child
        .spawn(move |rs| {
            let cur = RunState::current();
            assert!(Arc::ptr_eq(&cur, rs));
            rx.recv().unwrap();
            RunState::with_current(|c| c.wait_cancelled());
            RunState::current().reason()
        })
        .unwrap();
    assert_eq!(RunState::current().name(), "other");
    parent.cancel_with("stop all");
    tx.send(()).unwrap();
    assert_eq!(handle.join().unwrap().as_deref(), Some("stop all"));
    assert_eq!(child.state(), RunPhase::Cancelled);
    // spawning the child again: it stays cancelled from its parent
    let h2 = child.spawn(|rs| rs.cancelled()).unwrap();
    assert!(h2.join().unwrap());
}

/// A spawned state's `on_cancel` runs where every cancel runs it: in the
/// cancelling thread (here the caller of `RunHandle::cancel`), not on the
/// spawned thread (from a review: `spawn`'s docs said otherwise).
#[test]
fn a_spawned_states_on_cancel_runs_in_the_cancelling_thread() {
    let rs = Arc::new(RunState::new("spawned-job"));
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    rs.on_cancel(move |_| {
        let name = thread::current().name().map(str::to_owned);
        let _ = tx.lock().unwrap().send(name);
    });
    let handle = rs
        .spawn(|rs| while rs.sleep(Duration::from_secs(3600)).is_ok() {})
        .unwrap();
    common::no_deadlock("cancel and join", move || {
        thread::Builder::new()
            .name("canceller".into())
            .spawn(move || {
                handle.cancel();
                handle.join().unwrap();
            })
            .unwrap()
            .join()
            .unwrap();
    });
    assert_eq!(rx.recv().unwrap().as_deref(), Some("canceller"));
}
