//! loom models of `RunState::spawn`'s result hand-over and of the current
//! state's scope flag: a join racing the spawned thread's finish (the
//! result published by `DONE`, the joiner woken: a lost wake-up is a loom
//! deadlock, an unpublished result a causality error), the cancel-then-stop
//! of a panicking function, and a `CurrentGuard` dropped on another thread.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release --test loom_run_state_spawn`.
//! `loom-tests/mutants.sh run_state::spawn` and
//! `loom-tests/mutants.sh run_state::current` run them against
//! deliberately broken builds.
#![cfg(loom)]

use std::sync::{Arc as StdArc, Once};

use loom::thread;
use multiopen::{RunPhase, RunState};

/// Silences the panic hook for the message the panic model panics with.
fn quiet_planned_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() != Some(&"planned") {
                default(info);
            }
        }));
    });
}

/// The joiner races the spawned thread: whichever order, `join` returns
/// the function's result (written before `DONE`, read after it) and finds
/// the state stopped.
#[test]
fn join_races_the_spawned_threads_finish() {
    loom::model(|| {
        let rs = StdArc::new(RunState::new("job"));
        let handle = rs.spawn(|rs| rs.name().len() as u64 * 7).unwrap();
        assert_eq!(handle.join().unwrap(), 21);
        assert_eq!(rs.state(), RunPhase::Stopped);
    });
}

/// A cancel from the spawner races the function's poll: the function sees
/// it or not, and the join always finds the run ended, cancelled.
#[test]
fn cancel_races_the_spawned_function() {
    loom::model(|| {
        let rs = StdArc::new(RunState::new("job"));
        let handle = rs.spawn(|rs| rs.cancelled()).unwrap();
        handle.cancel();
        let _saw_it = handle.join().unwrap();
        assert_eq!(rs.state(), RunPhase::Cancelled);
    });
}

/// A panicking function: its state is cancelled, then stopped, before the
/// join returns the panic.
#[test]
fn spawned_panic_cancels_then_stops() {
    quiet_planned_panics();
    loom::model(|| {
        let rs = StdArc::new(RunState::new("job"));
        let handle = rs.spawn(|_| -> u8 { panic!("planned") }).unwrap();
        let payload = handle.join().unwrap_err();
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"planned"));
        assert_eq!(rs.state(), RunPhase::Cancelled);
    });
}

/// A scope guard dropped on another thread ends the scope on the thread
/// that entered it.
#[test]
fn current_guard_dropped_on_another_thread() {
    loom::model(|| {
        let rs = StdArc::new(RunState::new("moved"));
        let scope = rs.enter();
        assert!(RunState::try_current().is_some());
        thread::spawn(move || drop(scope)).join().unwrap();
        assert!(RunState::try_current().is_none());
    });
}
