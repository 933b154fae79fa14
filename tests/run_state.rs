#![cfg(not(loom))]
//! RunState: every transition and misuse error, the timestamps, callbacks,
//! pause/resume, the cancellable sleep, the iterator adapter, the guards,
//! and a stress test. No test asserts how fast anything is; the only time
//! checks are lower bounds that the semantics promise (a sleep that was
//! not cancelled lasted at least its duration).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use multiopen::{
    CallbackPanicked, Cancelled, HasRunState, RunEvent, RunPhase, RunState, RunStateError,
    UntilCancelledExt,
};

/// Runs `f` with the panic hook silenced (callbacks that panic on purpose).
fn quietly<R>(f: impl FnOnce() -> R) -> R {
    static HOOK: Mutex<()> = Mutex::new(());
    let _serial = HOOK.lock().unwrap_or_else(|e| e.into_inner());
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let out = f();
    std::panic::set_hook(hook);
    out
}

/// Gives another thread a chance to reach its blocking call. Correctness
/// never depends on it: every test passes whether or not it got there.
fn let_others_run() {
    thread::sleep(Duration::from_millis(20));
}

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
    rs.cancel().unwrap();
    assert_eq!(rs.state(), RunPhase::Stopping);
    assert_eq!(rs.state().to_string(), "stopping");
    assert!(rs.is_running() && rs.stopping() && rs.cancelled() && !rs.stopped());
    rs.cancel().unwrap(); // again: nothing changes
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

#[test]
fn cancel_when_not_running_sets_the_flag_which_start_clears() {
    let rs = RunState::new("early");
    rs.cancel().unwrap();
    assert!(rs.cancelled());
    assert_eq!(rs.state(), RunPhase::Pending, "never started stays pending");
    assert!(rs.check().is_err());
    rs.start().unwrap();
    assert!(!rs.cancelled(), "start clears cancelled");
    rs.stop().unwrap();
    assert_eq!(rs.state(), RunPhase::Stopped);
    rs.cancel().unwrap();
    assert_eq!(rs.state(), RunPhase::Cancelled, "a cancel after the stop");
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
    rs.cancel().unwrap();
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
    assert_eq!(err.to_string(), "s is not running (already stopped)");
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
    rs.cancel().unwrap();
    assert!(!rs.is_paused(), "a cancel ends the pause");
    assert_eq!(
        rs.resume().unwrap_err(),
        RunStateError::NotPaused { name: "p".into() }
    );
    let err = rs.pause().unwrap_err();
    assert_eq!(
        err,
        RunStateError::Cancelled(Cancelled { name: "p".into() })
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

// --- pause -------------------------------------------------------------------

#[test]
fn pause_resume_states() {
    let rs = RunState::new("p");
    rs.start().unwrap();
    rs.pause().unwrap();
    assert_eq!(rs.state(), RunPhase::Paused);
    assert!(rs.is_paused() && rs.is_running() && !rs.stopped());
    rs.resume().unwrap();
    assert_eq!(rs.state(), RunPhase::Running);
    assert!(!rs.is_paused());
    rs.pause().unwrap();
    rs.stop().unwrap();
    assert!(!rs.is_paused(), "stop ends the pause");
    assert_eq!(rs.state(), RunPhase::Stopped);
    rs.start().unwrap();
    assert!(!rs.is_paused(), "a new run is not paused");
}

#[test]
fn waiters_block_while_paused_until_resume() {
    let rs = Arc::new(RunState::new("p"));
    rs.start().unwrap();
    rs.pause().unwrap();
    let passed = Arc::new(AtomicUsize::new(0));
    let waiters: Vec<_> = (0..4)
        .map(|i| {
            let (rs, passed) = (Arc::clone(&rs), Arc::clone(&passed));
            thread::spawn(move || {
                if i % 2 == 0 {
                    rs.wait_while_paused();
                } else {
                    rs.check().unwrap();
                }
                passed.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    let_others_run();
    assert_eq!(passed.load(Ordering::SeqCst), 0, "nobody passes a pause");
    rs.resume().unwrap();
    for w in waiters {
        w.join().unwrap();
    }
    assert_eq!(passed.load(Ordering::SeqCst), 4);
}

#[test]
fn cancel_releases_paused_waiters() {
    let rs = Arc::new(RunState::new("p"));
    rs.start().unwrap();
    rs.pause().unwrap();
    let checkers: Vec<_> = (0..3)
        .map(|_| {
            let rs = Arc::clone(&rs);
            thread::spawn(move || rs.check())
        })
        .collect();
    let waiter = {
        let rs = Arc::clone(&rs);
        thread::spawn(move || rs.wait_while_paused())
    };
    let_others_run();
    rs.cancel().unwrap();
    for c in checkers {
        assert_eq!(c.join().unwrap(), Err(Cancelled { name: "p".into() }));
    }
    waiter.join().unwrap();
}

#[test]
fn stop_releases_paused_waiters() {
    let rs = Arc::new(RunState::new("p"));
    rs.start().unwrap();
    rs.pause().unwrap();
    let checker = {
        let rs = Arc::clone(&rs);
        thread::spawn(move || rs.check())
    };
    let_others_run();
    rs.stop().unwrap();
    assert_eq!(checker.join().unwrap(), Ok(()), "stopped, not cancelled");
}

// --- sleep -------------------------------------------------------------------

#[test]
fn sleep_times_out_when_not_cancelled() {
    let rs = RunState::new("nap");
    let d = Duration::from_millis(30);
    let t0 = Instant::now();
    assert_eq!(rs.sleep(d), Ok(()));
    assert!(
        t0.elapsed() >= d,
        "a sleep that is not cancelled never ends early"
    );
    assert_eq!(rs.sleep(Duration::ZERO), Ok(()));
}

#[test]
fn sleep_when_already_cancelled_returns_at_once() {
    let rs = RunState::new("nap");
    rs.cancel().unwrap();
    assert_eq!(
        rs.sleep(Duration::from_secs(3600)),
        Err(Cancelled { name: "nap".into() })
    );
    assert!(rs.sleep(Duration::ZERO).is_err());
    assert!(rs.sleep(Duration::MAX).is_err());
}

#[test]
fn cancel_from_another_thread_ends_every_sleep() {
    let rs = Arc::new(RunState::new("nap"));
    rs.start().unwrap();
    let sleepers: Vec<_> = [
        Duration::from_secs(3600),
        Duration::MAX, // beyond any Instant: sleeps until cancelled
        Duration::from_secs(600),
    ]
    .into_iter()
    .map(|d| {
        let rs = Arc::clone(&rs);
        thread::spawn(move || rs.sleep(d))
    })
    .collect();
    let_others_run();
    rs.cancel().unwrap();
    for s in sleepers {
        assert_eq!(s.join().unwrap(), Err(Cancelled { name: "nap".into() }));
    }
}

#[test]
fn sleep_absorbs_wakes_that_are_not_cancels() {
    // Other transitions wake the sleeper (they clear the waiters bit); it
    // must go back to sleep and still last its full duration.
    let rs = Arc::new(RunState::new("nap"));
    rs.start().unwrap();
    let d = Duration::from_millis(150);
    let sleeper = {
        let rs = Arc::clone(&rs);
        thread::spawn(move || {
            let t0 = Instant::now();
            let r = rs.sleep(d);
            (r, t0.elapsed())
        })
    };
    while !sleeper.is_finished() {
        rs.pause().unwrap();
        rs.resume().unwrap();
        rs.stop().unwrap();
        rs.start().unwrap();
        thread::sleep(Duration::from_millis(1));
    }
    let (r, slept) = sleeper.join().unwrap();
    assert_eq!(r, Ok(()));
    assert!(slept >= d, "woke early after {slept:?}");
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
    rs.cancel().unwrap();
    rs.cancel().unwrap(); // already cancelled: no callbacks
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
    rs.cancel().unwrap();
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
    rs.cancel().unwrap();
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
        rs.cancel().unwrap();
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
    rs.cancel().unwrap();
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

// --- iterator adapter --------------------------------------------------------

#[test]
fn iteration_stops_when_cancelled_and_stays_stopped() {
    let rs = RunState::new("it");
    rs.start().unwrap();
    let mut it = rs.iter(0..10);
    assert_eq!(it.next(), Some(0));
    assert_eq!(it.next(), Some(1));
    rs.cancel().unwrap();
    assert_eq!(it.next(), None);
    rs.stop().unwrap();
    rs.start().unwrap(); // no longer cancelled
    assert_eq!(it.next(), None, "fused: once done, always done");
    assert_eq!(it.size_hint(), (0, Some(0)));
    // Runs to the end when never cancelled.
    assert_eq!((0..5).until_cancelled(&rs).sum::<i32>(), 10);
    assert_eq!(rs.iter(vec![1, 2]).size_hint(), (0, Some(2)));
}

#[test]
fn iteration_waits_while_paused() {
    let rs = Arc::new(RunState::new("it"));
    rs.start().unwrap();
    rs.pause().unwrap();
    let taken = Arc::new(AtomicUsize::new(0));
    let consumer = {
        let (rs, taken) = (Arc::clone(&rs), Arc::clone(&taken));
        thread::spawn(move || {
            for _ in (0..100).until_cancelled(&rs) {
                taken.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let_others_run();
    assert_eq!(
        taken.load(Ordering::SeqCst),
        0,
        "paused before the first item"
    );
    rs.resume().unwrap();
    consumer.join().unwrap();
    assert_eq!(taken.load(Ordering::SeqCst), 100);
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
    w.cancel().unwrap();
    assert!(w.cancelled() && w.stopping());
    w.runstate().stop().unwrap();
    assert!(w.stopped() && !w.stopping());
    fn generic(x: &impl HasRunState) -> bool {
        x.cancelled()
    }
    assert!(generic(&w));
    assert!(!generic(&RunState::new("bare")));
}

// --- stress ----------------------------------------------------------------

/// Many more threads than cores: pollers hammer the queries, sleepers wait
/// for cancels, controllers start/cancel/stop concurrently. Checks that
/// every query stays coherent, callbacks match successful transitions, no
/// sleeper is stranded, and the state ends consistent.
#[test]
fn stress_polling_while_others_cancel_and_restart() {
    const POLLERS: usize = 8;
    const SLEEPERS: usize = 4;
    const CONTROLLERS: usize = 3;
    const CYCLES: usize = 2_000;

    let rs = Arc::new(RunState::new("stress"));
    let starts_cb = Arc::new(AtomicUsize::new(0));
    let ends_cb = Arc::new(AtomicUsize::new(0));
    let cancels_cb = Arc::new(AtomicUsize::new(0));
    for (counter, event) in [
        (&starts_cb, RunEvent::Start),
        (&ends_cb, RunEvent::End),
        (&cancels_cb, RunEvent::Cancel),
    ] {
        let counter = Arc::clone(counter);
        let f = move |_: &RunState| {
            counter.fetch_add(1, Ordering::SeqCst);
        };
        match event {
            RunEvent::Start => rs.on_start(f),
            RunEvent::End => rs.on_end(f),
            RunEvent::Cancel => rs.on_cancel(f),
        };
    }
    let done = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(Barrier::new(POLLERS + SLEEPERS + CONTROLLERS));

    let pollers: Vec<_> = (0..POLLERS)
        .map(|_| {
            let (rs, done, barrier) = (Arc::clone(&rs), Arc::clone(&done), Arc::clone(&barrier));
            thread::spawn(move || {
                barrier.wait();
                let mut polls = 0u64;
                let mut last_start = None;
                let mut last_stop = None;
                while !done.load(Ordering::SeqCst) {
                    for _ in 0..64 {
                        polls += u64::from(rs.cancelled());
                        let _ = (rs.is_running(), rs.stopping(), rs.stopped(), rs.is_paused());
                    }
                    // One load: a coherent label.
                    let phase = rs.state();
                    assert_ne!(phase, RunPhase::Paused, "nobody pauses here");
                    // The recorded times never go backwards. (A run in
                    // progress reads the clock at each call, so its
                    // run_time/total_time are not checked against a stop
                    // that races them: see the module doc.)
                    let start = rs.start_time();
                    let stop = rs.stop_time();
                    let _ = (rs.run_time(), rs.total_time());
                    assert!(start >= last_start, "start_time went back");
                    assert!(stop >= last_stop, "stop_time went back");
                    assert!(stop.is_none() || start.is_some(), "a stop without a start");
                    last_start = start;
                    last_stop = stop;
                }
                polls
            })
        })
        .collect();

    let sleepers: Vec<_> = (0..SLEEPERS)
        .map(|_| {
            let (rs, done, barrier) = (Arc::clone(&rs), Arc::clone(&done), Arc::clone(&barrier));
            thread::spawn(move || {
                barrier.wait();
                let mut woken = 0u64;
                // Each sleep ends by a cancel (or a timeout if the state
                // was restarted before the sleeper looked); the final
                // cancel below releases the last one.
                while !done.load(Ordering::SeqCst) {
                    if rs.sleep(Duration::from_secs(10)).is_err() {
                        woken += 1;
                        thread::yield_now();
                    }
                }
                woken
            })
        })
        .collect();

    let ok_starts = Arc::new(AtomicUsize::new(0));
    let ok_stops = Arc::new(AtomicUsize::new(0));
    let controllers: Vec<_> = (0..CONTROLLERS)
        .map(|c| {
            let (rs, barrier) = (Arc::clone(&rs), Arc::clone(&barrier));
            let (ok_starts, ok_stops) = (Arc::clone(&ok_starts), Arc::clone(&ok_stops));
            thread::spawn(move || {
                barrier.wait();
                for i in 0..CYCLES {
                    match rs.start() {
                        Ok(()) => {
                            ok_starts.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(e) => {
                            assert!(matches!(e, RunStateError::AlreadyRunning { .. }), "{e:?}")
                        }
                    }
                    if (i + c) % 2 == 0 {
                        rs.cancel().unwrap();
                    }
                    match rs.stop() {
                        Ok(()) => {
                            ok_stops.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(e) => assert!(
                            matches!(
                                e,
                                RunStateError::NotRunning { .. }
                                    | RunStateError::NeverStarted { .. }
                            ),
                            "{e:?}"
                        ),
                    }
                }
            })
        })
        .collect();

    for c in controllers {
        c.join().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    rs.cancel().unwrap(); // releases every sleeper still asleep
    let polls: u64 = pollers.into_iter().map(|p| p.join().unwrap()).sum();
    let woken: u64 = sleepers.into_iter().map(|s| s.join().unwrap()).sum();
    let _ = (polls, woken);

    let (starts, stops) = (
        ok_starts.load(Ordering::SeqCst),
        ok_stops.load(Ordering::SeqCst),
    );
    assert!(starts >= 1);
    assert!(rs.stopped(), "every successful start met a successful stop");
    assert_eq!(starts, stops);
    assert_eq!(starts_cb.load(Ordering::SeqCst), starts);
    assert_eq!(ends_cb.load(Ordering::SeqCst), stops);
    assert!(cancels_cb.load(Ordering::SeqCst) <= CONTROLLERS * CYCLES / 2 + CONTROLLERS + 1);
    assert!(rs.total_time() >= rs.run_time());
}

/// Registration racing transitions: lists are swapped under the
/// transitions' feet; every transition sees either list, nothing is freed
/// early, nothing leaks.
#[test]
fn stress_registration_while_transitions_run_callbacks() {
    let rs = Arc::new(RunState::new("reg"));
    let token = Arc::new(());
    let calls = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let transitions = {
        let (rs, stop) = (Arc::clone(&rs), Arc::clone(&stop));
        thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                rs.start().unwrap();
                rs.cancel().unwrap();
                rs.stop().unwrap();
            }
        })
    };
    let registrars: Vec<_> = (0..3)
        .map(|_| {
            let (rs, token, calls) = (Arc::clone(&rs), Arc::clone(&token), Arc::clone(&calls));
            thread::spawn(move || {
                for _ in 0..2_000 {
                    let (t, c) = (Arc::clone(&token), Arc::clone(&calls));
                    let id = rs.on_cancel(move |_| {
                        let _keep = &t;
                        c.fetch_add(1, Ordering::Relaxed);
                    });
                    assert!(rs.remove_callback(id));
                }
            })
        })
        .collect();
    for r in registrars {
        r.join().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    transitions.join().unwrap();
    let rs = Arc::try_unwrap(rs).expect("threads are done");
    drop(rs);
    assert_eq!(
        Arc::strong_count(&token),
        1,
        "every callback list was freed"
    );
}

// --- review fixes: lost cancels, guards, callback drops ------------------------

/// How long the waiters below are given to fall asleep before the race.
/// Only the *detection* depends on it: a waiter that came later would see
/// the new run, and the test would fail (never hang).
const SETTLE: Duration = Duration::from_millis(20);

/// A cancel that comes during a sleep is reported even if the controller
/// stops and restarts the run (clearing the flag) before the sleeper
/// wakes: a futex wake takes microseconds, the restart less. The sleep is
/// long and the test asserts what it returns, not how long it took.
#[test]
fn a_restart_does_not_hide_a_cancel_from_a_sleeper() {
    for round in 0..20 {
        let rs = Arc::new(RunState::new("nap"));
        rs.start().unwrap();
        // Several sleepers: one wake-up wakes them one after another, so
        // some wake only after the restart.
        let sleepers: Vec<_> = (0..4)
            .map(|_| {
                let rs = Arc::clone(&rs);
                thread::spawn(move || rs.sleep(Duration::from_secs(2)))
            })
            .collect();
        thread::sleep(SETTLE);
        let controller = {
            let rs = Arc::clone(&rs);
            thread::spawn(move || {
                rs.cancel().unwrap();
                rs.stop().unwrap();
                rs.start().unwrap();
            })
        };
        controller.join().unwrap();
        for sleeper in sleepers {
            assert_eq!(
                sleeper.join().unwrap(),
                Err(Cancelled { name: "nap".into() }),
                "round {round}: the cancel was lost to the restart"
            );
        }
        assert_eq!(
            rs.state(),
            RunPhase::Running,
            "the new run is not cancelled"
        );
        assert_eq!(rs.sleep(Duration::from_millis(1)), Ok(()));
    }
}

/// The same for threads blocked in `check()` or `wait_while_paused()` on a
/// paused run: the stop clears the pause, the start the cancel; `check`
/// still reports the cancel.
#[test]
fn a_restart_does_not_hide_a_cancel_from_paused_waiters() {
    for round in 0..20 {
        let rs = Arc::new(RunState::new("p"));
        rs.start().unwrap();
        rs.pause().unwrap();
        let checker = {
            let rs = Arc::clone(&rs);
            thread::spawn(move || rs.check())
        };
        let waiter = {
            let rs = Arc::clone(&rs);
            thread::spawn(move || rs.wait_while_paused())
        };
        thread::sleep(SETTLE);
        rs.cancel().unwrap();
        rs.stop().unwrap();
        rs.start().unwrap();
        assert_eq!(
            checker.join().unwrap(),
            Err(Cancelled { name: "p".into() }),
            "round {round}: the cancel was lost to the restart"
        );
        waiter.join().unwrap();
        assert_eq!(rs.check(), Ok(()), "the new run is not cancelled");
    }
}

/// A cancel that was cleared by a start *before* a wait began is not
/// reported by it.
#[test]
fn a_cancel_cleared_before_the_wait_is_not_reported() {
    let rs = RunState::new("p");
    rs.start().unwrap();
    rs.cancel().unwrap();
    rs.stop().unwrap();
    rs.start().unwrap();
    assert_eq!(rs.sleep(Duration::from_millis(5)), Ok(()));
    rs.pause().unwrap();
    thread::scope(|s| {
        let checker = s.spawn(|| rs.check());
        thread::sleep(Duration::from_millis(5));
        rs.resume().unwrap();
        assert_eq!(checker.join().unwrap(), Ok(()));
    });
}

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
        rs.cancel().unwrap();
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

/// Callback lists are reclaimed only once no transition can still be
/// taking a reference to them. Every callback checks a canary that its
/// captured value clears when dropped: a transition that ran a callback
/// from a list freed under it would run it after its captures were dropped
/// (the canary is cleared first, so this fires even where the freed memory
/// still reads as it was), and the callback's assertion reaches the
/// transition as `CallbackPanicked`. In practice a premature free mostly
/// shows as the allocator aborting or a segfault; either fails the test.
/// (loom cannot reach this window: see `callbacks_registration_vs_cancel`
/// in `loom-tests/run_state.rs`.)
#[test]
fn stress_no_callback_list_is_freed_under_a_transition() {
    struct Canary(Arc<AtomicBool>);
    impl Drop for Canary {
        fn drop(&mut self) {
            self.0.store(false, Ordering::SeqCst);
        }
    }
    let rs = Arc::new(RunState::new("canary"));
    let stop = Arc::new(AtomicBool::new(false));
    let transitions: Vec<_> = (0..2)
        .map(|_| {
            let (rs, stop) = (Arc::clone(&rs), Arc::clone(&stop));
            thread::spawn(move || {
                let mut runs = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    if rs.start().is_ok() {
                        rs.cancel()
                            .expect("a callback ran after its list was freed");
                        let _ = rs.stop();
                        runs += 1;
                    }
                }
                runs
            })
        })
        .collect();
    let registrars: Vec<_> = (0..2)
        .map(|_| {
            let rs = Arc::clone(&rs);
            thread::spawn(move || {
                // Long enough to hit the reader's window many times over;
                // nothing about speed is asserted.
                let until = Instant::now() + Duration::from_millis(800);
                while Instant::now() < until {
                    let alive = Arc::new(AtomicBool::new(true));
                    let canary = Canary(Arc::clone(&alive));
                    let id = rs.on_cancel(move |_| {
                        assert!(canary.0.load(Ordering::SeqCst), "freed under a transition");
                    });
                    assert!(rs.remove_callback(id));
                }
            })
        })
        .collect();
    for r in registrars {
        r.join().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    let runs: u64 = transitions.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(runs > 0);
}
