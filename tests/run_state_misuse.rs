#![cfg(not(loom))]
//! RunState under misuse and hostile user code (issue 11): each test is
//! named after the kind of bug it guards against. A scenario that would
//! abort the process runs in a child process (this test binary, re-run on
//! the one test with `MULTIOPEN_TEST_CHILD` set, `tests/common/child.rs`); the parent checks that the
//! child exited normally and printed what it saw.

use std::panic::{catch_unwind, panic_any, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock, Weak};
use std::thread;
use std::time::{Duration, Instant};

mod common;

use common::child::in_child_process;
use common::quietly;
use multiopen::{CallbackId, CallbackPanicked, RunEvent, RunPhase, RunState, RunStateError};

/// A value whose `Drop` panics.
struct PanicOnDrop;

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("PanicOnDrop dropped");
    }
}

/// Registers, for `event`, a callback that owns a [`PanicOnDrop`] and
/// removes itself when it runs, so that the transition running it holds
/// the last reference to it: when the transition lets go of its list, the
/// capture's `Drop` panics.
fn self_removing_callback_with_panicking_capture(
    rs: &RunState,
    event: RunEvent,
    ran: &Arc<AtomicUsize>,
) {
    let id: Arc<OnceLock<CallbackId>> = Arc::new(OnceLock::new());
    let (own_id, ran, capture) = (Arc::clone(&id), Arc::clone(ran), PanicOnDrop);
    let callback = move |rs: &RunState| {
        let _ = &capture;
        ran.fetch_add(1, Ordering::SeqCst);
        rs.remove_callback(*own_id.get().unwrap());
    };
    let registered = match event {
        RunEvent::Start => rs.on_start(callback),
        RunEvent::Cancel => rs.on_cancel(callback),
        RunEvent::End => rs.on_end(callback),
    };
    id.set(registered).unwrap();
}

// --- kind: a panic while panicking aborts the process -------------------------

#[test]
fn panic_while_panicking_never_aborts_when_a_guard_drops_the_last_callback() {
    in_child_process(
        "panic_while_panicking_never_aborts_when_a_guard_drops_the_last_callback",
        || {
            let rs = RunState::new("job");
            let ran = Arc::new(AtomicUsize::new(0));
            self_removing_callback_with_panicking_capture(&rs, RunEvent::Cancel, &ran);
            self_removing_callback_with_panicking_capture(&rs, RunEvent::End, &ran);
            let unwound = catch_unwind(AssertUnwindSafe(|| {
                let _run = rs.run();
                panic!("the task failed");
            }));
            assert!(unwound.is_err());
            assert_eq!(ran.load(Ordering::SeqCst), 2);
            assert_eq!(rs.state(), RunPhase::Cancelled);
            rs.start().unwrap(); // still usable
            rs.stop().unwrap();
        },
    );
}

#[test]
fn panic_while_panicking_never_aborts_when_a_run_state_is_dropped() {
    in_child_process(
        "panic_while_panicking_never_aborts_when_a_run_state_is_dropped",
        || {
            let unwound = catch_unwind(|| {
                let rs = RunState::new("job");
                let capture = PanicOnDrop;
                rs.on_start(move |_| {
                    let _ = &capture;
                });
                // A retired list too: replaced by a registration while a
                // (simulated) reader might still hold it.
                let capture = PanicOnDrop;
                rs.on_end(move |_| {
                    let _ = &capture;
                });
                panic!("the owner failed"); // drops `rs` while unwinding
            });
            assert!(unwound.is_err());
        },
    );
}

// --- kind: a fallible call panics (user Drop in a transition) ---------------

#[test]
fn fallible_call_never_panics_when_a_transition_drops_the_last_callback() {
    for event in [RunEvent::Start, RunEvent::Cancel, RunEvent::End] {
        let rs = RunState::new("job");
        let ran = Arc::new(AtomicUsize::new(0));
        self_removing_callback_with_panicking_capture(&rs, event, &ran);
        let result = quietly(|| {
            catch_unwind(AssertUnwindSafe(|| -> Result<(), RunStateError> {
                rs.start()?;
                rs.try_cancel()?;
                rs.stop()
            }))
        });
        let err = result.unwrap_or_else(|_| panic!("{event}: a panic escaped the transition"));
        let err = err.expect_err("the panic is reported");
        let panicked = match err {
            RunStateError::CallbackPanicked(p) => p,
            RunStateError::Cancelled(_) => unreachable!(),
            other => panic!("{event}: {other}"),
        };
        assert_eq!(panicked.event, event);
        assert_eq!(panicked.panics, ["PanicOnDrop dropped"]);
        assert_eq!(ran.load(Ordering::SeqCst), 1);
    }
}

/// Makes `n` children of `parent` whose only strong reference (outside a
/// cancel) is held by their own `on_cancel` callback, which lets go of it
/// when it runs: the cancel that runs it then holds the last reference,
/// and dropping it drops the callback, whose capture ([`PanicOnDrop`])
/// panics. Returns `Weak`s to them; `ran` counts the callbacks run.
fn self_releasing_children(
    parent: &RunState,
    n: usize,
    ran: &Arc<AtomicUsize>,
) -> Vec<Weak<RunState>> {
    (0..n)
        .map(|i| {
            let child = parent.child(format!("child {i}"));
            let holder: Arc<Mutex<Option<Arc<RunState>>>> = Arc::new(Mutex::new(None));
            let (own, ran, capture) = (Arc::clone(&holder), Arc::clone(ran), PanicOnDrop);
            child.on_cancel(move |_| {
                let _ = &capture;
                ran.fetch_add(1, Ordering::SeqCst);
                drop(own.lock().unwrap().take());
            });
            let weak = Arc::downgrade(&child);
            *holder.lock().unwrap() = Some(child);
            weak
        })
        .collect()
}

/// A parent's cancel walks its children; a child's callback lets go of the
/// child's last outside reference, so the walk drops the child, and a
/// value the callback captured panics in its `Drop`. That panic used to
/// escape the walk: `cancel()` ("never panics") panicked, the children not
/// yet walked were never called back (plain cancel) or never cancelled at
/// all (`cancel_with`).
#[test]
fn fallible_call_never_panics_when_a_cancel_walk_drops_the_last_child() {
    for with_reason in [false, true] {
        let parent = RunState::new("parent");
        let plain = parent.child("plain"); // walked first, followed up last
        let ran = Arc::new(AtomicUsize::new(0));
        let children = self_releasing_children(&parent, 3, &ran);
        let result = quietly(|| {
            catch_unwind(AssertUnwindSafe(|| {
                if with_reason {
                    parent.cancel_with("shutdown");
                } else {
                    parent.cancel();
                }
            }))
        });
        assert!(
            result.is_ok(),
            "with_reason {with_reason}: cancel() panicked"
        );
        assert_eq!(ran.load(Ordering::SeqCst), 3, "every child called back");
        assert!(plain.cancelled(), "every child cancelled");
        assert!(
            children.iter().all(|c| c.upgrade().is_none()),
            "all released"
        );
        if with_reason {
            assert_eq!(plain.reason().as_deref(), Some("shutdown"));
        }
    }
}

/// The same, for a deadline: its callbacks run as one job on a deadline
/// runner, which used to stop at the first such panic, skipping the
/// callbacks after it.
#[test]
fn fallible_call_never_panics_when_a_deadline_job_drops_the_last_child() {
    let parent = Arc::new(RunState::new("parent"));
    let ran = Arc::new(AtomicUsize::new(0));
    let _children = self_releasing_children(&parent, 3, &ran);
    let parent_ran = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&parent_ran);
    parent.on_cancel(move |_| flag.store(true, Ordering::SeqCst));
    quietly(|| {
        parent.cancel_after(Duration::from_millis(1)).unwrap();
        // A deadlock detector, not a timing bound.
        let patience = Instant::now() + Duration::from_secs(20);
        while !(ran.load(Ordering::SeqCst) == 3 && parent_ran.load(Ordering::SeqCst)) {
            assert!(Instant::now() < patience, "a callback was skipped");
            thread::sleep(Duration::from_millis(1));
        }
    });
}

// --- kind: a panic payload whose own Drop panics escapes ---------------------

/// A panic payload whose `Drop` panics.
struct PanickingPayload;

impl Drop for PanickingPayload {
    fn drop(&mut self) {
        panic!("the payload's Drop panicked");
    }
}

/// Registers, for `event`, a callback that panics with a
/// [`PanickingPayload`], then one that counts in `later`.
fn payload_bomb_then_counter(rs: &RunState, event: RunEvent, later: &Arc<AtomicUsize>) {
    let later = Arc::clone(later);
    let register = |rs: &RunState, f: Box<dyn Fn(&RunState) + Send + Sync>| match event {
        RunEvent::Start => rs.on_start(f),
        RunEvent::Cancel => rs.on_cancel(f),
        RunEvent::End => rs.on_end(f),
    };
    register(rs, Box::new(|_| panic_any(PanickingPayload)));
    register(
        rs,
        Box::new(move |_| {
            later.fetch_add(1, Ordering::SeqCst);
        }),
    );
}

#[test]
fn panic_payload_with_panicking_drop_never_escapes_a_transition() {
    for event in [RunEvent::Start, RunEvent::Cancel, RunEvent::End] {
        let rs = RunState::new("job");
        let later = Arc::new(AtomicUsize::new(0));
        payload_bomb_then_counter(&rs, event, &later);
        let result = quietly(|| {
            catch_unwind(AssertUnwindSafe(|| -> Vec<Option<CallbackPanicked>> {
                let start = match rs.start() {
                    Err(RunStateError::CallbackPanicked(p)) => Some(p),
                    other => other.map(|()| None).unwrap(),
                };
                let cancel = rs.try_cancel().err();
                let end = match rs.stop() {
                    Err(RunStateError::CallbackPanicked(p)) => Some(p),
                    other => other.map(|()| None).unwrap(),
                };
                vec![start, cancel, end]
            }))
        });
        let reports = result.unwrap_or_else(|_| panic!("{event}: the payload's panic escaped"));
        let panicked: Vec<_> = reports.into_iter().flatten().collect();
        assert_eq!(panicked.len(), 1, "{event}: {panicked:?}");
        assert_eq!(panicked[0].event, event);
        assert_eq!(panicked[0].panics, ["<non-string panic payload>"]);
        assert_eq!(
            later.load(Ordering::SeqCst),
            1,
            "{event}: a later callback did not run"
        );
        assert_eq!(rs.state(), RunPhase::Cancelled);
    }
}

#[test]
fn panic_payload_with_panicking_drop_never_aborts_a_guard_dropped_while_unwinding() {
    in_child_process(
        "panic_payload_with_panicking_drop_never_aborts_a_guard_dropped_while_unwinding",
        || {
            let rs = RunState::new("job");
            let later = Arc::new(AtomicUsize::new(0));
            payload_bomb_then_counter(&rs, RunEvent::Cancel, &later);
            payload_bomb_then_counter(&rs, RunEvent::End, &later);
            let unwound = catch_unwind(AssertUnwindSafe(|| {
                let _run = rs.run();
                panic!("the task failed");
            }));
            assert!(unwound.is_err());
            // Both later callbacks (on_cancel and on_end) ran.
            assert_eq!(later.load(Ordering::SeqCst), 2);
            assert_eq!(rs.state(), RunPhase::Cancelled);
        },
    );
}

// --- kind: a re-entrant call hangs forever ------------------------------------

/// Runs `f` in a thread and fails the test if it has not returned within
/// ten seconds (a hang), instead of hanging the test run.
fn completes<R: Send + 'static>(what: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("{what}: hung (or panicked)"))
}

#[test]
fn reentrant_call_from_a_callback_completes() {
    // Every call that can block, made from inside each transition's
    // callbacks, on the very state making the transition: none waits for
    // the calling thread (no user code runs while a transition holds
    // anything another call waits for).
    let done = completes("every blocking call from every callback", || {
        let rs = Arc::new(RunState::new("job"));
        let calls = Arc::new(AtomicUsize::new(0));
        for event in [RunEvent::Start, RunEvent::Cancel, RunEvent::End] {
            let calls = Arc::clone(&calls);
            let callback = move |rs: &RunState| {
                let _ = rs.sleep(Duration::from_millis(1));
                let _ = rs.check();
                rs.wait_while_paused();
                let _ = (
                    rs.start_time(),
                    rs.stop_time(),
                    rs.run_time(),
                    rs.total_time(),
                );
                let _ = format!("{rs:?}");
                // A pause and its own resume, then a wait that must not
                // wait for this thread.
                if rs.pause().is_ok() {
                    rs.resume().unwrap();
                }
                rs.wait_while_paused();
                // Registration takes a lock: not held while callbacks run.
                let id = rs.on_start(|_| {});
                assert!(rs.remove_callback(id));
                calls.fetch_add(1, Ordering::SeqCst);
            };
            match event {
                RunEvent::Start => rs.on_start(callback),
                RunEvent::Cancel => rs.on_cancel(callback),
                RunEvent::End => rs.on_end(callback),
            };
        }
        rs.start().unwrap();
        rs.cancel();
        rs.stop().unwrap();
        calls.load(Ordering::SeqCst)
    });
    assert_eq!(done, 3);
}

#[test]
fn reentrant_transition_from_a_callback_completes() {
    // Transitions that need the timestamps (start, stop, and a guard's
    // stop) called from the callbacks of a start and of a stop.
    let states = completes("start and stop from callbacks", || {
        let rs = RunState::new("job");
        let once = AtomicBool::new(false);
        rs.on_start(|rs| {
            let _ = rs.stop(); // stops the run that just started
        });
        rs.on_end(move |rs| {
            if !once.swap(true, Ordering::SeqCst) {
                let run = rs.run(); // a nested run, from inside a stop
                drop(run);
            }
        });
        let first = rs.start();
        (first.is_ok(), rs.state())
    });
    assert_eq!(states, (true, RunPhase::Stopped));
}

// --- kind: a counter that identifies a run can wrap ------------------------------

/// How many runs make the state word's 24-bit publish counter (two
/// publishes per run) come back to where it was.
const WRAP: u32 = 1 << 23;

/// The scenario of issue 11: a guard's run is stopped by another thread,
/// which then does 2^23 - 1 start/stop pairs and one more start.
fn foreign_run_after_wrap(rs: &RunState) {
    rs.stop().unwrap();
    for _ in 0..WRAP - 1 {
        rs.start().unwrap();
        rs.stop().unwrap();
    }
    rs.start().unwrap();
}

#[test]
fn stale_run_identity_never_ends_a_foreign_run() {
    let rs = RunState::new("job");
    let stale = rs.run();
    thread::scope(|s| s.spawn(|| foreign_run_after_wrap(&rs)).join().unwrap());
    assert!(rs.is_running());
    drop(stale);
    assert!(rs.is_running(), "a stale guard stopped a foreign run");
    assert!(!rs.cancelled());
    rs.stop().unwrap();
}

#[test]
fn stale_run_identity_never_cancels_a_foreign_run() {
    // The same, with the stale guard dropped while unwinding (it would
    // cancel, then stop). (A guard's explicit `stop` takes the same path
    // as its drop.)
    let rs = RunState::new("job");
    let unwound = quietly(|| {
        catch_unwind(AssertUnwindSafe(|| {
            let _stale = rs.run();
            thread::scope(|s| s.spawn(|| foreign_run_after_wrap(&rs)).join().unwrap());
            panic!("the task failed");
        }))
    });
    assert!(unwound.is_err());
    assert!(rs.is_running() && !rs.cancelled(), "{:?}", rs.state());
    rs.stop().unwrap();
}

// --- kind: an outer unwind mistaken for the guard's own panic ----------------

/// A run guard made and dropped by cleanup code in a `Drop` that runs while
/// the thread unwinds from an unrelated panic: its scope did not panic, so
/// its run ends stopped, not cancelled "panicked" (std's `MutexGuard`
/// likewise poisons only if the thread began panicking while it was held).
#[test]
fn outer_unwind_never_cancels_a_run_guarded_in_cleanup() {
    struct Cleanup(Arc<RunState>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _run = self.0.run(); // a clean scope of cleanup work
            let _owned = self.0.run_owned(); // joins it
        }
    }
    let rs = Arc::new(RunState::new("cleanup"));
    let in_scope = Arc::clone(&rs);
    let unwound = quietly(|| {
        catch_unwind(move || {
            let _cleanup = Cleanup(in_scope);
            panic!("unrelated");
        })
    });
    assert!(unwound.is_err());
    assert_eq!(rs.state(), RunPhase::Stopped, "reason {:?}", rs.reason());
    // A guard's own panic still cancels.
    let again = Arc::clone(&rs);
    let unwound = quietly(|| {
        catch_unwind(move || {
            let _run = again.run();
            panic!("the scope failed");
        })
    });
    assert!(unwound.is_err());
    assert_eq!(rs.state(), RunPhase::Cancelled);
    assert_eq!(rs.reason().as_deref(), Some("panicked"));
}

#[test]
fn lost_cancel_when_a_guard_made_during_an_unwind_moves_to_a_thread_that_panics() {
    // Cleanup code in a `Drop`, during an unrelated unwind, starts a run and
    // hands its guard to a worker; the worker's own work then panics. The
    // "made while unwinding" exemption belongs to the making thread's
    // unwind, not the worker's: the run is cancelled "panicked".
    struct Handover(Arc<RunState>, mpsc::Sender<thread::JoinHandle<()>>);
    impl Drop for Handover {
        fn drop(&mut self) {
            let run = self.0.run_owned();
            let worker = thread::spawn(move || {
                let _run = run;
                panic!("the worker failed");
            });
            self.1.send(worker).unwrap();
        }
    }
    let rs = Arc::new(RunState::new("handed-over"));
    let (tx, rx) = mpsc::channel();
    let in_scope = Arc::clone(&rs);
    let worker = quietly(|| {
        let unwound = catch_unwind(AssertUnwindSafe(move || {
            let _handover = Handover(in_scope, tx);
            panic!("unrelated");
        }));
        assert!(unwound.is_err());
        let worker = rx.recv().unwrap();
        worker.join()
    });
    assert!(worker.is_err(), "the worker panicked");
    assert_eq!(rs.state(), RunPhase::Cancelled);
    assert_eq!(rs.reason().as_deref(), Some("panicked"));
}

/// A guard's panic cancels the run it is in, whoever started it: a run
/// `start()` started is held by no guard (a guard does not stop it), but a
/// worker's panic under it still tells the others.
#[test]
fn a_guard_in_a_started_run_cancels_it_if_its_scope_panics() {
    let rs = RunState::new("supervised");
    rs.start().unwrap();
    let outcome = quietly(|| {
        catch_unwind(AssertUnwindSafe(|| {
            let _worker = rs.run();
            panic!("worker failed");
        }))
    });
    assert!(outcome.is_err());
    assert!(rs.cancelled(), "the worker's panic cancels the started run");
    assert_eq!(rs.reason().as_deref(), Some("panicked"));
    assert!(rs.is_running(), "a guard never stops a run start() started");
    // A clean guard on it changes nothing.
    drop(rs.run());
    assert!(rs.is_running());
    rs.stop().unwrap();
    assert_eq!(rs.state(), RunPhase::Cancelled);
}

/// A cancel after a cancelled run has stopped is not "already cancelled":
/// it is kept for the next run, as any cancel between runs, so it runs the
/// callbacks again and its reason replaces the ended run's.
#[test]
fn a_cancel_after_a_cancelled_stop_is_the_next_runs() {
    let rs = RunState::new("job");
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    rs.on_cancel(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    rs.start().unwrap();
    rs.cancel_with("first");
    rs.cancel_with("ignored: the run is cancelled already");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    rs.stop().unwrap();
    assert!(rs.cancelled());
    assert_eq!(rs.reason().as_deref(), Some("first"));
    rs.cancel_with("second");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "a new cancel, for the next run"
    );
    assert_eq!(rs.reason().as_deref(), Some("second"));
    rs.start().unwrap();
    assert!(rs.cancelled(), "the next run begins cancelled");
    assert_eq!(rs.reason().as_deref(), Some("second"));
}
