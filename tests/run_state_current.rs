#![cfg(not(loom))]
//! The current thread's state (issue 13 item 7): `RunState::current`,
//! `try_current`, `with_current`, `enter`, and the scopes that set it
//! (`run_here`, `enter`; `run_owned` sets none; `spawn` in
//! `run_state_spawn.rs`).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::thread;

mod common;

use common::quietly;
use multiopen::{RunPhase, RunState};

fn current_name() -> Option<String> {
    RunState::try_current().map(|rs| rs.name().to_owned())
}

#[test]
fn no_current_state_gives_a_fresh_never_cancelled_default() {
    assert!(RunState::try_current().is_none());
    let a = RunState::current();
    let b = RunState::current();
    assert_eq!(a.name(), "default");
    assert_eq!(a.state(), RunPhase::Pending);
    assert!(!Arc::ptr_eq(&a, &b), "each call makes its own");
    // Cancelling one cancels nothing anyone else sees.
    a.cancel();
    assert!(!RunState::current().cancelled());
    assert!(!RunState::with_current(|rs| rs.cancelled()));
    assert_eq!(RunState::with_current(|rs| rs.name().to_owned()), "default");
    assert!(RunState::with_current(|rs| rs.check()).is_ok());
    assert!(RunState::try_current().is_none());
}

#[test]
fn run_here_makes_its_state_current_until_it_stops() {
    let rs = Arc::new(RunState::new("job"));
    {
        let _run = rs.run_here();
        assert!(Arc::ptr_eq(&RunState::current(), &rs));
        assert!(RunState::with_current(|cur| std::ptr::eq(cur, &*rs)));
        rs.cancel();
        assert!(RunState::with_current(|cur| cur.check()).is_err());
    }
    assert!(RunState::try_current().is_none());
    assert_eq!(rs.state(), RunPhase::Cancelled);
}

#[test]
fn a_borrowing_run_guard_does_not_set_the_current_state() {
    let rs = RunState::new("borrowed");
    let _run = rs.run();
    assert!(RunState::try_current().is_none());
}

#[test]
fn nested_current_states_are_restored_in_order() {
    let outer = Arc::new(RunState::new("outer"));
    let middle = Arc::new(RunState::new("middle"));
    let inner = Arc::new(RunState::new("inner"));
    let _a = outer.run_here();
    assert_eq!(current_name().as_deref(), Some("outer"));
    {
        let _b = middle.enter();
        assert_eq!(current_name().as_deref(), Some("middle"));
        {
            let _c = inner.run_here();
            assert_eq!(current_name().as_deref(), Some("inner"));
        }
        assert_eq!(current_name().as_deref(), Some("middle"));
    }
    assert_eq!(current_name().as_deref(), Some("outer"));
}

#[test]
fn nested_current_states_are_restored_in_order_on_panic() {
    let outer = Arc::new(RunState::new("outer"));
    let inner = Arc::new(RunState::new("inner"));
    let _a = outer.run_here();
    let unwound = quietly(|| {
        catch_unwind(AssertUnwindSafe(|| {
            let _b = inner.run_here();
            let _c = Arc::new(RunState::new("innermost")).enter();
            assert_eq!(current_name().as_deref(), Some("innermost"));
            panic!("the task failed");
        }))
    });
    assert!(unwound.is_err());
    assert_eq!(current_name().as_deref(), Some("outer"));
    assert_eq!(inner.state(), RunPhase::Cancelled); // cancelled, then stopped
    assert!(outer.is_running() && !outer.cancelled());
}

#[test]
fn scopes_dropped_out_of_order_each_remove_their_own() {
    let a = Arc::new(RunState::new("a"));
    let b = Arc::new(RunState::new("b"));
    let ga = a.enter();
    let gb = b.enter();
    drop(ga);
    assert_eq!(current_name().as_deref(), Some("b"));
    drop(gb);
    assert!(RunState::try_current().is_none());
}

#[test]
fn a_scope_guard_dropped_on_another_thread_ends_the_scope() {
    let rs = Arc::new(RunState::new("moved"));
    let scope = rs.enter();
    assert_eq!(current_name().as_deref(), Some("moved"));
    thread::spawn(move || {
        // The other thread never had it current.
        assert!(RunState::try_current().is_none());
        drop(scope);
    })
    .join()
    .unwrap();
    assert!(RunState::try_current().is_none());
    // The entering thread drops its stale entry at its next push.
    let _other = Arc::new(RunState::new("next")).enter();
    assert_eq!(current_name().as_deref(), Some("next"));
    assert_eq!(
        Arc::strong_count(&rs),
        1,
        "the stale entry let go of the state"
    );
}

#[test]
fn a_movable_run_guard_sets_no_current_state_where_it_is_made_or_moved() {
    // `run_owned`'s guard may move (a thread, an async task): had it set
    // the making thread's current state, that thread (a tokio worker, say)
    // would read another task's state; it sets none anywhere.
    let rs = Arc::new(RunState::new("handed-over"));
    let run = rs.run_owned();
    assert!(RunState::try_current().is_none());
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let worker = thread::spawn(move || {
        rx.recv().unwrap();
        let on_worker = current_name();
        drop(run);
        on_worker
    });
    tx.send(()).unwrap();
    assert_eq!(worker.join().unwrap(), None);
    assert!(rs.stopped());
    // Where the work runs, `enter` makes it current.
    let run = rs.run_owned();
    let worker = thread::spawn(move || {
        let _scope = run.runstate().enter();
        current_name()
    });
    assert_eq!(worker.join().unwrap().as_deref(), Some("handed-over"));
    assert!(RunState::try_current().is_none());
}

#[test]
fn with_current_keeps_the_state_alive_when_its_scope_ends_inside() {
    let scope = Arc::new(RunState::new("short-lived")).enter();
    let name = RunState::with_current(move |rs| {
        drop(scope); // the last `Arc` but the stack's deferred one
                     // Scopes may be entered and left in here too.
        let other = Arc::new(RunState::new("other"));
        let inner = other.enter();
        assert_eq!(current_name().as_deref(), Some("other"));
        drop(inner);
        rs.name().to_owned()
    });
    assert_eq!(name, "short-lived");
    assert!(RunState::try_current().is_none());
}

/// A callback's event and the current state's name it saw.
type Seen = (String, Option<String>);

#[test]
fn current_inside_callbacks_is_the_transitioning_threads_current_state() {
    let rs = Arc::new(RunState::new("job"));
    let seen = record_events(&rs);
    {
        let _run = rs.run_here();
        rs.cancel();
    }
    // Under `run_here`, every callback of its run sees the state current.
    let job = Some("job".to_owned());
    assert_eq!(
        *seen.lock().unwrap(),
        [
            ("start".to_owned(), job.clone()),
            ("cancel".to_owned(), job.clone()),
            ("end".to_owned(), job)
        ]
    );
    // A plain `start` from a thread under another state: that one.
    seen.lock().unwrap().clear();
    let _outer = Arc::new(RunState::new("outer")).enter();
    rs.start().unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        [("start".to_owned(), Some("outer".to_owned()))]
    );
    rs.stop().unwrap();
}

#[test]
fn a_forgotten_scope_guard_stays_current_until_its_thread_exits() {
    let rs = Arc::new(RunState::new("forgotten"));
    let held = Arc::clone(&rs);
    thread::spawn(move || {
        std::mem::forget(held.enter());
        assert_eq!(current_name().as_deref(), Some("forgotten"));
    })
    .join()
    .unwrap();
    assert!(RunState::try_current().is_none()); // never this thread's
}

#[test]
fn each_thread_has_its_own_current_state() {
    let a = Arc::new(RunState::new("a"));
    let _ga = a.enter();
    let other = thread::spawn(|| {
        let b = Arc::new(RunState::new("b"));
        let _gb = b.enter();
        current_name()
    });
    assert_eq!(other.join().unwrap().as_deref(), Some("b"));
    assert_eq!(current_name().as_deref(), Some("a"));
}

/// Records, for each of `rs`'s events, the name of the thread's current
/// state its callback saw.
fn record_events(rs: &RunState) -> Arc<Mutex<Vec<Seen>>> {
    common::record_events(rs, |event| (event.to_owned(), current_name()))
}

#[test]
fn run_here_stop_ends_the_run_before_the_scope() {
    let rs = Arc::new(RunState::new("job"));
    let seen = record_events(&rs);
    let run = rs.run_here();
    assert!(run.started());
    run.stop().unwrap();
    assert!(rs.stopped());
    assert!(RunState::try_current().is_none());
    let job = Some("job".to_owned());
    assert_eq!(
        *seen.lock().unwrap(),
        [("start".to_owned(), job.clone()), ("end".to_owned(), job)]
    );
}

#[test]
fn run_here_cancels_on_a_panic_of_its_scope_with_the_state_still_current() {
    let rs = Arc::new(RunState::new("job"));
    let seen = record_events(&rs);
    let outer = Arc::new(RunState::new("outer"));
    let _outer = outer.enter();
    let unwound = quietly(|| {
        catch_unwind(AssertUnwindSafe(|| {
            let _run = rs.run_here();
            panic!("the task failed");
        }))
    });
    assert!(unwound.is_err());
    assert_eq!(rs.state(), RunPhase::Cancelled);
    assert_eq!(rs.reason().as_deref(), Some("panicked"));
    assert_eq!(current_name().as_deref(), Some("outer"));
    let job = Some("job".to_owned());
    assert_eq!(
        *seen.lock().unwrap(),
        [
            ("start".to_owned(), job.clone()),
            ("cancel".to_owned(), job.clone()),
            ("end".to_owned(), job)
        ]
    );
}

#[test]
fn run_here_made_while_unwinding_ends_its_run_cleanly() {
    // Cleanup code in a `Drop` that runs during an unrelated unwind: its
    // run is not the one that panicked, so it stops without a cancel.
    struct Cleanup(Arc<RunState>, Arc<Mutex<Option<Option<String>>>>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _run = self.0.run_here();
            *self.1.lock().unwrap() = Some(current_name());
        }
    }
    let rs = Arc::new(RunState::new("cleanup"));
    let seen_inside: Arc<Mutex<Option<Option<String>>>> = Arc::default();
    let unwound = quietly(|| {
        catch_unwind(AssertUnwindSafe(|| {
            let _cleanup = Cleanup(Arc::clone(&rs), Arc::clone(&seen_inside));
            panic!("unrelated");
        }))
    });
    assert!(unwound.is_err());
    assert_eq!(
        *seen_inside.lock().unwrap(),
        Some(Some("cleanup".to_owned()))
    );
    assert_eq!(rs.state(), RunPhase::Stopped);
    assert!(!rs.cancelled());
    assert!(RunState::try_current().is_none());
}
