#![cfg(not(loom))]
//! The bounded waits of `MultiOpen` (`try_open`, `open_timeout`,
//! `open_deadline`, their `_owned` forms, `try_join`, `join_timeout`,
//! `join_deadline`) and the shutdown-error hook.
//!
//! No test here asserts how long anything took, beyond "a timed call that
//! timed out waited at least its timeout": startups are held up by a gate
//! that the test opens, never by a sleep, and orders are forced through
//! channels and the object's own state.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use multiopen::{CloseOutcome, FnMultiOpen, JoinError, MultiOpen, OpenError, Phase};

/// Startups and shutdowns seen by an object built with [`gated`].
#[derive(Default)]
struct Counts {
    startups: AtomicUsize,
    shutdowns: AtomicUsize,
}

/// An object named "slow" whose startup signals `began` and then blocks
/// until the returned sender is used (or dropped: from then on every
/// startup passes the gate at once).
fn gated() -> (
    Arc<FnMultiOpen<()>>,
    Arc<Counts>,
    mpsc::Receiver<()>,
    mpsc::Sender<()>,
) {
    let counts = Arc::new(Counts::default());
    let (up, down) = (Arc::clone(&counts), Arc::clone(&counts));
    let (began_tx, began) = mpsc::channel();
    let (release, gate) = mpsc::channel::<()>();
    let (began_tx, gate) = (Mutex::new(began_tx), Mutex::new(gate));
    let mo = MultiOpen::from_dyn_fns(
        move || {
            let _ = began_tx.lock().unwrap().send(());
            let _ = gate.lock().unwrap().recv();
            up.startups.fetch_add(1, SeqCst);
            Ok(())
        },
        move |()| {
            down.shutdowns.fetch_add(1, SeqCst);
            Ok(())
        },
    )
    .with_name("slow");
    (Arc::new(mo), counts, began, release)
}

/// Starts `mo` in another thread and returns once its startup has begun;
/// the thread returns whether its open succeeded (it closes it at once).
fn start_elsewhere(
    mo: &Arc<FnMultiOpen<()>>,
    began: &mpsc::Receiver<()>,
) -> thread::JoinHandle<bool> {
    let mo = Arc::clone(mo);
    let starter = thread::spawn(move || mo.open().map(drop).is_ok());
    began.recv().unwrap();
    starter
}

/// Spins (yielding) until `mo` counts at least `n` opens: openers that
/// have registered and sleep behind a startup.
fn until_counted(mo: &FnMultiOpen<()>, n: usize) {
    while mo.open_count() < n {
        thread::yield_now();
    }
}

fn assert_timed_out<E: std::fmt::Debug>(result: Result<impl Sized, OpenError<E>>) -> Duration {
    match result {
        Err(OpenError::TimedOut { name, waited }) => {
            assert_eq!(name, "slow");
            waited
        }
        Err(other) => panic!("expected TimedOut, got {other:?}"),
        Ok(_) => panic!("expected TimedOut, got an open"),
    }
}

fn join_waited(r: Result<(), JoinError>) -> Duration {
    match r {
        Err(JoinError::TimedOut { waited, .. }) => waited,
        other => panic!("expected TimedOut, got {other:?}"),
    }
}

#[test]
fn timed_open_times_out_behind_a_running_startup_and_leaves_no_count() {
    let (mo, counts, began, release) = gated();
    let starter = start_elsewhere(&mo, &began);
    let waited = assert_timed_out(mo.open_timeout(Duration::from_millis(50)));
    assert!(waited >= Duration::from_millis(50), "waited {waited:?}");
    let deadline = Instant::now() + Duration::from_millis(20);
    assert_timed_out(mo.open_deadline(deadline));
    // It returned no earlier than its deadline (whether it slept, or, on a
    // machine slow enough that the deadline passed before its first look,
    // returned as a try).
    assert!(Instant::now() >= deadline, "returned before its deadline");
    // Only the starter's open is counted: ours were taken back.
    assert_eq!(mo.open_count(), 1);
    drop(release);
    assert!(starter.join().unwrap(), "the startup's own open succeeds");
    assert_eq!(mo.open_count(), 0);
    assert_eq!(counts.startups.load(SeqCst), counts.shutdowns.load(SeqCst));
    // And the object works as ever.
    let g = mo.open_timeout(Duration::from_millis(50)).unwrap();
    assert_eq!(mo.open_count(), 1);
    drop(g);
    assert!(mo.closed());
}

/// `waited` is documented zero for a call that never slept: a try, a zero
/// timeout, a deadline already past (the review found the deadline forms
/// and a zero timeout reporting the time since the call instead).
#[test]
fn waited_is_zero_for_a_try_a_zero_timeout_and_a_past_deadline() {
    let (mo, _counts, began, release) = gated();
    let starter = start_elsewhere(&mo, &began);
    let past = Instant::now() - Duration::from_millis(1);
    for _ in 0..100 {
        for (form, waited) in [
            ("try_open", assert_timed_out(mo.try_open())),
            (
                "open_timeout(ZERO)",
                assert_timed_out(mo.open_timeout(Duration::ZERO)),
            ),
            (
                "open_deadline(past)",
                assert_timed_out(mo.open_deadline(past)),
            ),
            ("try_open_owned", assert_timed_out(mo.try_open_owned())),
            (
                "open_owned_timeout(ZERO)",
                assert_timed_out(mo.open_owned_timeout(Duration::ZERO)),
            ),
            (
                "open_owned_deadline(now)",
                assert_timed_out(mo.open_owned_deadline(Instant::now())),
            ),
        ] {
            assert_eq!(waited, Duration::ZERO, "{form}");
        }
    }
    assert_eq!(
        mo.try_open().unwrap_err().to_string().split(':').next(),
        Some("open of slow timed out after 0ns")
    );
    assert_eq!(mo.open_count(), 1, "every try took its increment back");
    drop(release);
    assert!(starter.join().unwrap());
    assert_eq!(mo.open_count(), 0);
    let g = mo.open().unwrap();
    for _ in 0..100 {
        for (form, waited) in [
            ("try_join", join_waited(mo.try_join())),
            (
                "join_timeout(ZERO)",
                join_waited(mo.join_timeout(Duration::ZERO)),
            ),
            ("join_deadline(past)", join_waited(mo.join_deadline(past))),
        ] {
            assert_eq!(waited, Duration::ZERO, "{form}");
        }
    }
    drop(g);
}

#[test]
fn thousands_of_timed_out_opens_leave_the_count_exact() {
    let (mo, _counts, began, release) = gated();
    let starter = start_elsewhere(&mo, &began);
    let past = Instant::now();
    for _ in 0..2000 {
        assert_timed_out(mo.try_open());
        assert_timed_out(mo.try_open_owned());
        assert_timed_out(mo.open_deadline(past));
    }
    for _ in 0..300 {
        assert_timed_out(mo.open_timeout(Duration::from_nanos(1)));
    }
    let s = mo.state();
    assert_eq!((s.phase, s.open_count, s.cycle), (Phase::Starting, 1, 0));
    drop(release);
    assert!(starter.join().unwrap());
    let s = mo.state();
    assert_eq!((s.phase, s.open_count, s.cycle), (Phase::Closed, 0, 1));
}

/// Every overflow-prone form waits until the startup ends: a far deadline,
/// `Duration::MAX`, the largest `Duration`. Each waiter is counted (asleep
/// behind the startup, or about to be) before the gate opens.
#[test]
fn far_deadline_and_max_timeouts_wait_until_the_startup_ends() {
    let (mo, _counts, began, release) = gated();
    let starter = start_elsewhere(&mo, &began);
    let far = Instant::now()
        .checked_add(Duration::from_secs(1 << 40))
        .unwrap();
    let waiters: Vec<_> = (0..3)
        .map(|i| {
            let mo = Arc::clone(&mo);
            thread::spawn(move || match i {
                0 => mo.open_deadline(far).map(drop).is_ok(),
                1 => mo.open_timeout(Duration::MAX).map(drop).is_ok(),
                _ => mo
                    .open_owned_timeout(Duration::new(u64::MAX, 999_999_999))
                    .is_ok(),
            })
        })
        .collect();
    until_counted(&mo, 4);
    drop(release);
    for w in waiters {
        assert!(w.join().unwrap());
    }
    assert!(starter.join().unwrap());
    assert_eq!(mo.open_count(), 0);
    mo.join_timeout(Duration::MAX).unwrap();
}

#[test]
fn try_open_of_an_idle_object_runs_startup() {
    let (mo, counts, _began, release) = gated();
    drop(release);
    let g = mo
        .try_open()
        .expect("no one else is busy: this call starts it");
    assert_eq!(counts.startups.load(SeqCst), 1);
    drop(g);
    assert_eq!(counts.shutdowns.load(SeqCst), 1);
}

#[test]
fn timed_open_during_a_running_shutdown_times_out_and_leaves_no_trace() {
    let (in_shutdown, shutdown_began) = mpsc::channel();
    let (release, gate) = mpsc::channel::<()>();
    let (in_shutdown, gate) = (Mutex::new(in_shutdown), Mutex::new(gate));
    let mo: Arc<FnMultiOpen<()>> = Arc::new(
        MultiOpen::from_dyn_fns(
            || Ok(()),
            move |()| {
                let _ = in_shutdown.lock().unwrap().send(());
                let _ = gate.lock().unwrap().recv();
                Ok(())
            },
        )
        .with_name("slow"),
    );
    let g = mo.open_owned().unwrap();
    let closer = thread::spawn(move || g.close().map_err(|e| e.to_string()));
    shutdown_began.recv().unwrap();
    assert_eq!(assert_timed_out(mo.try_open()), Duration::ZERO);
    let w = assert_timed_out(mo.open_timeout(Duration::from_millis(5)));
    assert!(w >= Duration::from_millis(5), "{w:?}");
    assert!(matches!(mo.try_join(), Err(JoinError::TimedOut { .. })));
    assert_eq!(mo.state().open_count, 0);
    assert_eq!(mo.state().phase, Phase::ShuttingDown);
    drop(release);
    assert_eq!(closer.join().unwrap(), Ok(CloseOutcome::ShutDown));
    mo.join_timeout(Duration::MAX).unwrap();
    let g = mo.open_timeout(Duration::from_nanos(1)).unwrap();
    assert_eq!(mo.state().cycle, 2);
    drop(g);
}

#[test]
fn timed_join_times_out_then_untimed_join_succeeds() {
    let mo = Arc::new(MultiOpen::from_dyn_fns(|| Ok(()), |()| Ok(())).with_name("db"));
    assert!(matches!(mo.try_join(), Err(JoinError::NeverOpened(_))));
    let g = mo.open_owned().unwrap();
    match mo.join_timeout(Duration::from_millis(50)) {
        Err(JoinError::TimedOut { name, waited }) => {
            assert_eq!(name, "db");
            assert!(waited >= Duration::from_millis(50), "waited {waited:?}");
        }
        other => panic!("expected TimedOut, got {other:?}"),
    }
    assert_eq!(join_waited(mo.try_join()), Duration::ZERO);
    assert_eq!(join_waited(mo.join_timeout(Duration::ZERO)), Duration::ZERO);
    assert_eq!(
        join_waited(mo.join_deadline(Instant::now())),
        Duration::ZERO
    );
    // The close may come before or after the join sleeps: either way the
    // join returns once the cycle is finalised.
    let closer = thread::spawn(move || drop(g));
    mo.join().unwrap();
    assert!(mo.closed());
    closer.join().unwrap();
    mo.try_join().unwrap();
    mo.join_deadline(Instant::now() - Duration::from_secs(1))
        .unwrap();
}

/// A join with an hour's timeout returns `Ok` (not `TimedOut`): the final
/// close released it, whether it came before or after the joiner slept.
#[test]
fn timed_join_is_released_by_the_final_close() {
    let mo = Arc::new(MultiOpen::from_dyn_fns(|| Ok(()), |()| Ok(())));
    let g = mo.open_owned().unwrap();
    let (joining, about_to_join) = mpsc::channel();
    let joiner = {
        let mo = Arc::clone(&mo);
        thread::spawn(move || {
            joining.send(()).unwrap();
            mo.join_timeout(Duration::from_secs(3600))
        })
    };
    about_to_join.recv().unwrap();
    drop(g);
    joiner.join().unwrap().unwrap();
}

#[test]
fn join_timeout_racing_the_last_close_is_released() {
    for _ in 0..2000 {
        let mo = Arc::new(MultiOpen::from_dyn_fns(|| Ok(()), |()| Ok(())));
        let g = mo.open_owned().unwrap();
        let closer = thread::spawn(move || drop(g));
        mo.join_timeout(Duration::from_secs(3600)).unwrap();
        closer.join().unwrap();
    }
}

/// A small xorshift, so the test needs no crate.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn timed_openers_racing_cycles_leave_exact_counts() {
    let live = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let (up, down, l1, l2) = (
        Arc::clone(&counts),
        Arc::clone(&counts),
        Arc::clone(&live),
        Arc::clone(&live),
    );
    let mo: Arc<FnMultiOpen<()>> = Arc::new(MultiOpen::from_dyn_fns(
        move || {
            assert!(!l1.swap(true, SeqCst), "two startups at once");
            up.startups.fetch_add(1, SeqCst);
            thread::sleep(Duration::from_micros(200));
            Ok(())
        },
        move |()| {
            thread::sleep(Duration::from_micros(200));
            assert!(l2.swap(false, SeqCst), "shutdown of a dead resource");
            down.shutdowns.fetch_add(1, SeqCst);
            Ok(())
        },
    ));
    let timeouts = Arc::new(AtomicUsize::new(0));
    let opened = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_millis(700);
    let mut threads = Vec::new();
    for t in 0..16u64 {
        let (mo, live, timeouts, opened) = (
            Arc::clone(&mo),
            Arc::clone(&live),
            Arc::clone(&timeouts),
            Arc::clone(&opened),
        );
        threads.push(thread::spawn(move || {
            let mut seed = 0x9E37_79B9_7F4A_7C15 ^ (t + 1);
            while Instant::now() < deadline {
                let wait = Duration::from_micros(next(&mut seed) % 400);
                match mo.open_timeout(wait) {
                    Ok(g) => {
                        assert!(live.load(SeqCst), "an open of a dead resource");
                        opened.fetch_add(1, SeqCst);
                        drop(g);
                    }
                    Err(OpenError::TimedOut { .. }) => {
                        timeouts.fetch_add(1, SeqCst);
                    }
                    Err(other) => panic!("unexpected {other:?}"),
                }
            }
        }));
    }
    for _ in 0..4 {
        let mo = Arc::clone(&mo);
        threads.push(thread::spawn(move || {
            while Instant::now() < deadline {
                let g = mo.open().unwrap();
                drop(g);
                let _ = mo.try_join();
            }
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(mo.open_count(), 0, "a count was left over");
    assert!(mo.closed());
    assert!(!live.load(SeqCst));
    let (s, d) = (counts.startups.load(SeqCst), counts.shutdowns.load(SeqCst));
    assert_eq!(s, d, "startups and shutdowns differ at rest");
    assert!(opened.load(SeqCst) > 0);
    mo.try_join().unwrap();
    // The object still works.
    drop(mo.try_open().unwrap());
    eprintln!(
        "opened {}, timed out {}, cycles {s}",
        opened.load(SeqCst),
        timeouts.load(SeqCst)
    );
}

// ---------------------------------------------------------------------------
// The shutdown-error hook
// ---------------------------------------------------------------------------

/// An object whose shutdown fails, and the log its hook writes.
fn failing_shutdown() -> (FnMultiOpen<()>, Arc<Mutex<Vec<String>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&log);
    let mo = MultiOpen::from_dyn_fns(|| Ok(()), |()| Err("flush failed".into()))
        .with_name("db")
        .with_on_shutdown_error(move |name, error| {
            sink.lock().unwrap().push(format!("{name}: {error}"));
        });
    (mo, log)
}

#[test]
fn shutdown_error_of_a_dropped_guard_reaches_the_hook() {
    let (mo, log) = failing_shutdown();
    drop(mo.open().unwrap());
    assert_eq!(*log.lock().unwrap(), ["db: flush failed"]);
    assert!(mo.closed());
}

#[test]
fn shutdown_error_of_an_explicit_close_goes_to_the_caller_not_the_hook() {
    let (mo, log) = failing_shutdown();
    let err = mo.open().unwrap().close().unwrap_err();
    assert_eq!(err.to_string(), "shutdown of db failed: flush failed");
    assert!(log.lock().unwrap().is_empty());
}

#[test]
fn shutdown_error_when_the_object_drops_with_detached_opens_reaches_the_hook() {
    let (mo, log) = failing_shutdown();
    mo.open().unwrap().detach();
    drop(mo);
    assert_eq!(*log.lock().unwrap(), ["db: flush failed"]);
}

#[test]
fn shutdown_errors_of_closes_racing_a_timed_opener_all_reach_the_hook() {
    // A timed opener arrives during startup while the starter opens and
    // closes: whichever close is final (the starter's drop, the timed
    // opener's drop, or its take-back after a time-out, which loom's
    // `timed_opener_backs_out_as_final_close` forces) hands the failing
    // shutdown's error to the hook.
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&log);
    let (in_startup, startup_began) = mpsc::channel();
    let (release_startup, wait_release) = mpsc::channel::<()>();
    let (in_startup, wait_release) = (Mutex::new(in_startup), Mutex::new(wait_release));
    let mo: Arc<FnMultiOpen<()>> = Arc::new(
        MultiOpen::from_dyn_fns(
            move || {
                in_startup.lock().unwrap().send(()).unwrap();
                wait_release.lock().unwrap().recv().unwrap();
                Ok(())
            },
            |()| Err("flush failed".into()),
        )
        .with_name("db")
        .with_on_shutdown_error(move |name, error| {
            sink.lock().unwrap().push(format!("{name}: {error}"));
        }),
    );
    let starter = {
        let mo = Arc::clone(&mo);
        thread::spawn(move || drop(mo.open().unwrap()))
    };
    startup_began.recv().unwrap();
    let timed = {
        let mo = Arc::clone(&mo);
        // Long enough for the starter to open and close meanwhile, so the
        // take-back happens in OPEN with count 1 (ours) more often than not;
        // either way the counts must be exact.
        thread::spawn(move || mo.open_timeout(Duration::from_millis(100)).map(drop))
    };
    // The timed opener is counted (asleep behind the startup, or about to
    // be) before the startup is released.
    while mo.open_count() < 2 {
        thread::yield_now();
    }
    release_startup.send(()).unwrap();
    starter.join().unwrap();
    let _ = timed.join().unwrap();
    assert_eq!(mo.open_count(), 0);
    assert!(mo.closed());
    // Every shutdown here fails, and none was closed explicitly: each one
    // reached the hook.
    assert!(!log.lock().unwrap().is_empty());
    assert!(log.lock().unwrap().iter().all(|l| l == "db: flush failed"));
}

#[test]
fn panicking_hook_propagates_from_a_normal_drop_and_never_aborts_while_unwinding() {
    let mo = MultiOpen::from_dyn_fns(|| Ok(()), |()| Err("flush failed".into()))
        .with_on_shutdown_error(|_, _| panic!("hook panicked"));
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    // A normal drop: the hook's panic reaches the dropping thread.
    let g = mo.open().unwrap();
    let normal = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(g)));
    // A drop while already unwinding: caught, no abort.
    let g = mo.open().unwrap();
    let unwinding = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _g = g;
        panic!("the scope panics");
    }));
    std::panic::set_hook(hook);
    assert!(normal.is_err());
    assert!(unwinding.is_err());
    assert!(mo.closed());
    assert_eq!(mo.open_count(), 0);
    drop(mo.open().unwrap().close().unwrap_err()); // still usable
}

/// A value that counts its drops.
struct DropCount(Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// The `MultiOpen`'s own drop shuts down a resource left up (a detached
/// open never closed). A panicking hook or shutdown there reaches the
/// dropper only after the resource (and what its closures capture) and
/// the hook are dropped: nothing leaks (the review found the resource
/// leaked). While the dropper already unwinds, it is caught: no abort, and
/// nothing leaks either.
#[test]
fn panicking_hook_or_shutdown_in_the_objects_drop_leaks_nothing() {
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for (shutdown_panics, while_unwinding) in
        [(false, false), (true, false), (false, true), (true, true)]
    {
        let drops = Arc::new(AtomicUsize::new(0));
        let in_startup = DropCount(Arc::clone(&drops));
        let in_hook = DropCount(Arc::clone(&drops));
        let mo = MultiOpen::from_dyn_fns(
            move || {
                let _ = &in_startup;
                Ok(())
            },
            move |()| {
                if shutdown_panics {
                    panic!("shutdown panicked");
                }
                Err("flush failed".into())
            },
        )
        .with_on_shutdown_error(move |_, _| {
            let _ = &in_hook;
            panic!("hook panicked")
        });
        mo.open().unwrap().detach();
        let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            if while_unwinding {
                let _mo = mo;
                panic!("the scope panics");
            }
            drop(mo);
        }));
        let case = (shutdown_panics, while_unwinding);
        assert!(dropped.is_err(), "{case:?}: the panic reaches the dropper");
        assert_eq!(drops.load(SeqCst), 2, "{case:?}: resource and hook dropped");
    }
    std::panic::set_hook(quiet);
}

#[test]
fn join_after_a_dropped_guard_sees_what_the_hook_stored() {
    for _ in 0..200 {
        let stash = Arc::new(Mutex::new(None::<String>));
        let sink = Arc::clone(&stash);
        let mo = Arc::new(
            MultiOpen::from_dyn_fns(|| Ok(()), |()| Err("flush failed".into()))
                .with_on_shutdown_error(move |_, error| {
                    *sink.lock().unwrap() = Some(error.to_string());
                }),
        );
        let g = mo.open_owned().unwrap();
        let dropper = thread::spawn(move || drop(g));
        mo.join().unwrap();
        assert_eq!(stash.lock().unwrap().as_deref(), Some("flush failed"));
        dropper.join().unwrap();
    }
}

#[test]
fn hook_opening_its_own_object_is_refused_not_stuck() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let mo: Arc<FnMultiOpen<()>> = Arc::new_cyclic(|me: &std::sync::Weak<FnMultiOpen<()>>| {
        let me = me.clone();
        MultiOpen::from_dyn_fns(|| Ok(()), |()| Err("flush failed".into())).with_on_shutdown_error(
            move |_, _| {
                let me = me.upgrade().expect("alive");
                let open = me.try_open().map(drop);
                let join = me.join_timeout(Duration::from_secs(5));
                log.lock().unwrap().push((
                    matches!(open, Err(OpenError::Reentrant { .. })),
                    matches!(join, Err(JoinError::Reentrant { .. })),
                ));
            },
        )
    });
    drop(mo.open().unwrap());
    assert_eq!(*seen.lock().unwrap(), [(true, true)]);
    assert_eq!(mo.open_count(), 0);
}
