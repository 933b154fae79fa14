#![cfg(not(loom))]
//! The bounded waits of `MultiOpen` (`try_open`, `open_timeout`,
//! `open_deadline`, their `_owned` forms, `try_join`, `join_timeout`,
//! `join_deadline`) and the shutdown-error hook.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use multiopen::{FnMultiOpen, JoinError, MultiOpen, OpenError};

/// Generous: a loaded 2-core machine may run a woken thread late.
const SLACK: Duration = Duration::from_millis(500);

/// Startups and shutdowns seen by an object built with [`slow_start`].
#[derive(Default)]
struct Counts {
    startups: AtomicUsize,
    shutdowns: AtomicUsize,
}

/// An object whose startup takes `startup` (and signals `started` as it
/// begins) and whose shutdown fails with "flush failed".
fn slow_start(startup: Duration, started: mpsc::Sender<()>) -> (Arc<FnMultiOpen<()>>, Arc<Counts>) {
    let counts = Arc::new(Counts::default());
    let (up, down) = (Arc::clone(&counts), Arc::clone(&counts));
    let started = Mutex::new(started);
    let mo = MultiOpen::from_dyn_fns(
        move || {
            let _ = started.lock().unwrap().send(());
            thread::sleep(startup);
            up.startups.fetch_add(1, SeqCst);
            Ok(())
        },
        move |()| {
            down.shutdowns.fetch_add(1, SeqCst);
            Ok(())
        },
    )
    .with_name("slow");
    (Arc::new(mo), counts)
}

/// Starts `mo` in another thread (its startup takes a while) and returns
/// once that startup has begun; the thread returns the open's result.
fn start_elsewhere(
    mo: &Arc<FnMultiOpen<()>>,
    started: &mpsc::Receiver<()>,
) -> thread::JoinHandle<bool> {
    let mo = Arc::clone(mo);
    let starter = thread::spawn(move || mo.open().map(drop).is_ok());
    started.recv().unwrap();
    starter
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

#[test]
fn timed_open_times_out_behind_a_slow_startup_and_leaves_no_count() {
    let (tx, rx) = mpsc::channel();
    let (mo, counts) = slow_start(Duration::from_millis(300), tx);
    let starter = start_elsewhere(&mo, &rx);
    let t0 = Instant::now();
    let waited = assert_timed_out(mo.open_timeout(Duration::from_millis(50)));
    let took = t0.elapsed();
    assert!(waited >= Duration::from_millis(50), "waited {waited:?}");
    assert!(took < Duration::from_millis(300), "gave up late: {took:?}");
    // Only the starter's open is counted: ours was taken back.
    assert_eq!(mo.open_count(), 1);
    assert!(starter.join().unwrap(), "the startup's own open succeeds");
    assert_eq!(mo.open_count(), 0);
    assert_eq!(counts.startups.load(SeqCst), counts.shutdowns.load(SeqCst));
    // And the object works as ever.
    let g = mo.open_timeout(Duration::from_millis(50)).unwrap();
    assert_eq!(mo.open_count(), 1);
    drop(g);
    assert!(mo.closed());
}

#[test]
fn zero_timeout_and_past_deadline_never_wait() {
    let (tx, rx) = mpsc::channel();
    let (mo, _counts) = slow_start(Duration::from_millis(300), tx);
    let starter = start_elsewhere(&mo, &rx);
    let t0 = Instant::now();
    let past = Instant::now() - Duration::from_millis(1);
    for waited in [
        assert_timed_out(mo.try_open()),
        assert_timed_out(mo.open_timeout(Duration::ZERO)),
        assert_timed_out(mo.open_deadline(past)),
        assert_timed_out(mo.try_open_owned()),
        assert_timed_out(mo.open_owned_timeout(Duration::ZERO)),
        assert_timed_out(mo.open_owned_deadline(Instant::now())),
    ] {
        assert!(waited < Duration::from_millis(100), "waited {waited:?}");
    }
    assert_eq!(
        mo.try_open().unwrap_err().to_string().split(':').next(),
        Some("open of slow timed out after 0ns")
    );
    assert!(t0.elapsed() < Duration::from_millis(250), "a try slept");
    assert_eq!(mo.open_count(), 1, "every try took its increment back");
    assert!(starter.join().unwrap());
    assert_eq!(mo.open_count(), 0);
}

#[test]
fn max_timeout_waits_until_the_startup_ends() {
    let (tx, rx) = mpsc::channel();
    let (mo, _counts) = slow_start(Duration::from_millis(100), tx);
    let starter = start_elsewhere(&mo, &rx);
    let g = mo
        .open_timeout(Duration::MAX)
        .expect("waits, never overflows");
    let h = mo.open_owned_timeout(Duration::MAX).unwrap();
    assert!(mo.is_open());
    drop((g, h));
    assert!(starter.join().unwrap());
    assert_eq!(mo.open_count(), 0);
    mo.join_timeout(Duration::MAX).unwrap();
}

#[test]
fn try_open_of_an_idle_object_runs_startup() {
    let (tx, _rx) = mpsc::channel();
    let (mo, counts) = slow_start(Duration::ZERO, tx);
    let g = mo
        .try_open()
        .expect("no one else is busy: this call starts it");
    assert_eq!(counts.startups.load(SeqCst), 1);
    drop(g);
    assert_eq!(counts.shutdowns.load(SeqCst), 1);
}

#[test]
fn timed_join_times_out_then_untimed_join_succeeds() {
    let mo = Arc::new(MultiOpen::from_dyn_fns(|| Ok(()), |()| Ok(())).with_name("db"));
    assert!(matches!(mo.try_join(), Err(JoinError::NeverOpened(_))));
    let g = mo.open_owned().unwrap();
    let t0 = Instant::now();
    match mo.join_timeout(Duration::from_millis(50)) {
        Err(JoinError::TimedOut { name, waited }) => {
            assert_eq!(name, "db");
            assert!(waited >= Duration::from_millis(50), "waited {waited:?}");
        }
        other => panic!("expected TimedOut, got {other:?}"),
    }
    assert!(t0.elapsed() < Duration::from_millis(50) + SLACK);
    assert!(
        matches!(mo.try_join(), Err(JoinError::TimedOut { waited, .. }) if waited == Duration::ZERO)
    );
    assert!(matches!(
        mo.join_timeout(Duration::ZERO),
        Err(JoinError::TimedOut { .. })
    ));
    assert!(matches!(
        mo.join_deadline(Instant::now()),
        Err(JoinError::TimedOut { .. })
    ));
    let closer = thread::spawn(move || {
        thread::sleep(Duration::from_millis(50));
        drop(g);
    });
    mo.join().unwrap();
    assert!(mo.closed());
    closer.join().unwrap();
    mo.try_join().unwrap();
    mo.join_deadline(Instant::now() - Duration::from_secs(1))
        .unwrap();
}

#[test]
fn timed_join_is_woken_by_the_final_close() {
    let mo = Arc::new(MultiOpen::from_dyn_fns(|| Ok(()), |()| Ok(())));
    let g = mo.open_owned().unwrap();
    let joiner = {
        let mo = Arc::clone(&mo);
        thread::spawn(move || {
            let t0 = Instant::now();
            mo.join_timeout(Duration::from_secs(30)).unwrap();
            t0.elapsed()
        })
    };
    thread::sleep(Duration::from_millis(50));
    drop(g);
    assert!(joiner.join().unwrap() < Duration::from_secs(10));
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
    thread::sleep(Duration::from_millis(20));
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
