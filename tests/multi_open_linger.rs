#![cfg(not(loom))]
//! A `MultiOpen` that lingers after its last close (`with_linger`): reuse
//! within the linger, release at its end with nobody calling, what ends it
//! at once (join, seal, drop), misuse, errors and panics on the timer
//! thread, and a stress test around expiry.
//!
//! Every test name here contains "linger": `.ci/run` skips them under Miri
//! by that word (they start the crate's timer thread, which never exits,
//! and Miri reports a thread still running when the test binary ends).

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use multiopen::{CloseOutcome, FnMultiOpen, JoinError, MultiOpen, OpenError, Phase};

/// Generous: a loaded machine may run the timer thread late; what has not
/// happened by then never will.
const PATIENCE: Duration = Duration::from_secs(30);
/// A linger that never ends during a test.
const LONG: Duration = Duration::from_secs(3600);

/// Startups and shutdowns of an object built with [`counted`], and the
/// threads the shutdowns ran on.
#[derive(Default)]
struct Counts {
    startups: AtomicUsize,
    shutdowns: AtomicUsize,
    shut_down_on: Mutex<Vec<Option<String>>>,
}

impl Counts {
    fn startups(&self) -> usize {
        self.startups.load(SeqCst)
    }
    fn shutdowns(&self) -> usize {
        self.shutdowns.load(SeqCst)
    }
    fn last_shutdown_thread(&self) -> Option<String> {
        self.shut_down_on.lock().unwrap().last().cloned().flatten()
    }
}

/// An object named "db" lingering `linger`, counting startups and
/// shutdowns; its handle is the cycle number. Each shutdown also sends on
/// the returned channel.
fn counted(linger: Duration) -> (Arc<FnMultiOpen<usize>>, Arc<Counts>, mpsc::Receiver<usize>) {
    let counts = Arc::new(Counts::default());
    let (up, down) = (Arc::clone(&counts), Arc::clone(&counts));
    let (shut, shut_rx) = mpsc::channel();
    let shut = Mutex::new(shut);
    let mo = MultiOpen::from_dyn_fns(
        move || Ok(up.startups.fetch_add(1, SeqCst) + 1),
        move |cycle| {
            down.shutdowns.fetch_add(1, SeqCst);
            let name = thread::current().name().map(str::to_owned);
            down.shut_down_on.lock().unwrap().push(name);
            let _ = shut.lock().unwrap().send(cycle);
            Ok(())
        },
    )
    .with_name("db")
    .with_linger(linger);
    (mo, counts, shut_rx)
}

#[test]
fn opens_within_the_linger_reuse_the_handle_with_no_startup() {
    let (mo, counts, _shut) = counted(LONG);
    assert_eq!(mo.linger(), LONG);
    for _ in 0..5 {
        let g = mo.open().unwrap();
        assert_eq!(*g, 1, "the same cycle");
        assert_eq!(g.close().unwrap(), CloseOutcome::Lingering);
    }
    // Every form of open gets the lingering handle.
    assert_eq!(*mo.try_open().unwrap(), 1);
    assert_eq!(*mo.open_timeout(Duration::from_millis(1)).unwrap(), 1);
    assert_eq!(*mo.open_owned().unwrap(), 1);
    assert_eq!(*mo.open_deadline(Instant::now()).unwrap(), 1);
    assert_eq!((counts.startups(), counts.shutdowns()), (1, 0));
    // What the queries say while lingering.
    assert!(mo.is_open() && !mo.closed());
    assert!(mo.check_opened().is_ok() && mo.not_closed().is_ok());
    let s = mo.state();
    assert_eq!(
        (s.phase, s.open_count, s.lingering, s.sealed),
        (Phase::Open, 0, true, false)
    );
    assert_eq!(s.to_string(), "open (0 opens), cycle 1, lingering");
    // Held: not lingering.
    let g = mo.open().unwrap();
    assert!(!mo.state().lingering);
    assert_eq!(mo.state().to_string(), "open (1 open), cycle 1");
    drop(g);
    assert!(mo.state().lingering);
    mo.join().unwrap();
    assert_eq!((counts.startups(), counts.shutdowns()), (1, 1));
}

/// The linger ends with nobody calling: the shutdown runs on the timer
/// thread, no sooner than the linger after the last close.
#[test]
fn the_linger_ends_by_itself_and_releases_the_resource() {
    let linger = Duration::from_millis(30);
    let (mo, counts, shut) = counted(linger);
    let g = mo.open().unwrap();
    // Read before the close: the close's own time is later, so the
    // shutdown comes at least `linger` after this.
    let before_close = Instant::now();
    drop(g);
    // PATIENCE: a hang guard ("never ended"), not a speed claim.
    assert_eq!(shut.recv_timeout(PATIENCE), Ok(1), "the linger never ended");
    assert!(before_close.elapsed() >= linger, "ended before the linger");
    assert_eq!(
        counts.last_shutdown_thread().as_deref(),
        Some("multiopen-timer")
    );
    mo.join().unwrap(); // finalised by the timer's shutdown
    assert!(mo.closed() && !mo.is_open() && !mo.state().lingering);
    // The next open starts a new cycle, which lingers in turn.
    assert_eq!(*mo.open().unwrap(), 2);
    assert_eq!(shut.recv_timeout(PATIENCE), Ok(2));
    assert_eq!((counts.startups(), counts.shutdowns()), (2, 2));
}

/// A close within the linger starts it again: the shutdown comes no sooner
/// than the linger after the *last* close. The second open must come
/// within the first linger (it reuses cycle 1); on a machine so loaded that
/// the half-linger pause overran the whole linger, the round proves
/// nothing and is run again with a fresh object (not a failure).
#[test]
fn a_close_within_the_linger_starts_it_again() {
    let linger = Duration::from_millis(200);
    for _ in 0..20 {
        let (mo, counts, shut) = counted(linger);
        drop(mo.open().unwrap());
        thread::sleep(linger / 2);
        let g = mo.open().unwrap();
        if *g != 1 {
            continue; // the first linger ended before this open: retry
        }
        let before_last_close = Instant::now();
        drop(g);
        assert_eq!(shut.recv_timeout(PATIENCE), Ok(1));
        assert!(
            before_last_close.elapsed() >= linger,
            "timed from the first close"
        );
        assert_eq!((counts.startups(), counts.shutdowns()), (1, 1));
        return;
    }
    panic!("no round reopened within the linger");
}

#[test]
fn join_ends_a_linger_at_once_in_every_form() {
    type JoinFn = fn(&FnMultiOpen<usize>) -> Result<(), JoinError>;
    let forms: [(&str, JoinFn); 4] = [
        ("join", |mo| mo.join()),
        ("try_join", |mo| mo.try_join()),
        ("join_timeout", |mo| {
            mo.join_timeout(Duration::from_millis(1))
        }),
        ("join_deadline", |mo| mo.join_deadline(Instant::now())),
    ];
    for (form, join) in forms {
        let (mo, counts, _shut) = counted(LONG);
        drop(mo.open().unwrap());
        let here = thread::current().name().map(str::to_owned);
        join(&mo).unwrap_or_else(|e| panic!("{form}: {e}"));
        assert_eq!(counts.shutdowns(), 1, "{form}");
        assert_eq!(
            counts.last_shutdown_thread(),
            here,
            "{form}: ran in the joiner"
        );
        assert!(mo.closed(), "{form}");
    }
}

/// A joiner arrives while an open is held: the last close shuts down at
/// once instead of lingering (or the joiner ends the linger, if the close
/// came first), and the join returns.
#[test]
fn join_while_open_makes_the_last_close_final_not_a_linger() {
    for _ in 0..50 {
        let (mo, counts, _shut) = counted(LONG);
        let g = mo.open_owned().unwrap();
        let (done, joined) = mpsc::channel();
        let joiner = {
            let mo = Arc::clone(&mo);
            thread::spawn(move || done.send(mo.join()).unwrap())
        };
        drop(g);
        let result = joined
            .recv_timeout(PATIENCE)
            .expect("the join never returned");
        result.unwrap();
        joiner.join().unwrap();
        assert_eq!((counts.startups(), counts.shutdowns()), (1, 1));
        assert!(mo.closed());
    }
}

#[test]
fn seal_ends_a_linger_at_once_and_unseal_lingers_again() {
    let (mo, counts, _shut) = counted(LONG);
    drop(mo.open().unwrap());
    assert!(mo.seal());
    assert_eq!(counts.shutdowns(), 1, "the seal ran the shutdown");
    assert_eq!(
        counts.last_shutdown_thread(),
        thread::current().name().map(str::to_owned)
    );
    assert!(mo.closed() && mo.state().sealed);
    assert!(mo.state().to_string().contains("sealed"));
    assert!(matches!(mo.open(), Err(OpenError::Sealed { .. })));
    mo.join().unwrap();
    // A holder across the seal: its close is final and does not linger.
    assert!(mo.unseal());
    let g = mo.open().unwrap();
    assert_eq!(*g, 2);
    mo.seal();
    assert_eq!(g.close().unwrap(), CloseOutcome::ShutDown);
    assert_eq!(counts.shutdowns(), 2);
    // Unsealed, it lingers again.
    mo.unseal();
    assert_eq!(mo.open().unwrap().close().unwrap(), CloseOutcome::Lingering);
    assert_eq!((counts.startups(), counts.shutdowns()), (3, 2));
    mo.join().unwrap();
    assert_eq!(counts.shutdowns(), 3);
}

#[test]
fn dropping_the_multi_open_ends_a_linger_at_once() {
    let (mo, counts, _shut) = counted(LONG);
    drop(mo.open().unwrap());
    let weak = Arc::downgrade(&mo);
    drop(mo);
    assert!(
        weak.upgrade().is_none(),
        "a pending timer keeps no reference"
    );
    assert_eq!((counts.startups(), counts.shutdowns()), (1, 1));
    assert_eq!(
        counts.last_shutdown_thread(),
        thread::current().name().map(str::to_owned)
    );
}

/// A dropped object's timer fires later and finds nothing: no shutdown
/// twice, nothing touched (the timer holds only a `Weak`).
#[test]
fn a_linger_timer_outliving_its_object_does_nothing() {
    let (mo, counts, shut) = counted(Duration::from_millis(1));
    drop(mo.open().unwrap());
    drop(mo); // the drop ran the shutdown, or the timer did first
    assert_eq!(shut.recv_timeout(PATIENCE), Ok(1));
    // Another object's timer, scheduled later, runs: the first one's is gone.
    let (other, _, other_shut) = counted(Duration::from_millis(1));
    drop(other.open().unwrap());
    assert_eq!(other_shut.recv_timeout(PATIENCE), Ok(1));
    assert_eq!(counts.shutdowns(), 1);
    assert!(shut.try_recv().is_err());
}

#[test]
fn linger_zero_is_no_linger() {
    let (mo, counts, _shut) = counted(Duration::ZERO);
    assert_eq!(mo.linger(), Duration::ZERO);
    assert_eq!(mo.open().unwrap().close().unwrap(), CloseOutcome::ShutDown);
    assert!(mo.closed() && !mo.state().lingering);
    assert_eq!((counts.startups(), counts.shutdowns()), (1, 1));
}

#[test]
fn linger_max_lasts_until_join() {
    let (mo, counts, shut) = counted(Duration::MAX);
    assert_eq!(mo.open().unwrap().close().unwrap(), CloseOutcome::Lingering);
    // No timer ends it (none is armed): still lingering a while later.
    assert!(shut.recv_timeout(Duration::from_millis(50)).is_err());
    assert!(mo.state().lingering);
    assert_eq!(*mo.open().unwrap(), 1);
    mo.join().unwrap();
    assert_eq!((counts.startups(), counts.shutdowns()), (1, 1));
}

#[test]
fn a_linger_on_a_never_opened_object_changes_nothing() {
    let (mo, counts, _shut) = counted(Duration::from_millis(1));
    assert!(matches!(mo.join(), Err(JoinError::NeverOpened(_))));
    assert_eq!(mo.state().phase, Phase::NeverOpened);
    assert!(!mo.state().lingering && !mo.is_open() && !mo.closed());
    assert!(mo.seal());
    mo.join().unwrap(); // sealed and never opened: nothing to wait for
    assert!(mo.unseal());
    drop(mo);
    assert_eq!((counts.startups(), counts.shutdowns()), (0, 0));
}

/// The timer's shutdown fails: the error goes to the hook; the object is
/// closed and usable.
#[test]
fn a_shutdown_error_on_the_linger_timer_goes_to_the_hook() {
    let (hooked, errors) = mpsc::channel();
    let hooked = Mutex::new(hooked);
    let mo = MultiOpen::from_dyn_fns(|| Ok(()), |()| Err("flush failed".into()))
        .with_name("log")
        .with_on_shutdown_error(move |name, error| {
            hooked
                .lock()
                .unwrap()
                .send(format!("{name}: {error}"))
                .unwrap();
        })
        .with_linger(Duration::from_millis(5));
    drop(mo.open().unwrap());
    assert_eq!(errors.recv_timeout(PATIENCE).unwrap(), "log: flush failed");
    mo.join().unwrap();
    assert!(mo.closed());
    drop(mo.open().unwrap()); // usable: a new cycle
    assert_eq!(errors.recv_timeout(PATIENCE).unwrap(), "log: flush failed");
}

/// The timer's shutdown panics: caught on the timer thread; the cycle has
/// ended, the object is usable, and the timer thread serves on.
#[test]
fn a_shutdown_panic_on_the_linger_timer_leaves_the_object_usable() {
    common::quietly(|| {
        let panicky = Arc::new(AtomicBool::new(true));
        let p = Arc::clone(&panicky);
        let (entered, shutting) = mpsc::channel();
        let entered = Mutex::new(entered);
        let mo = MultiOpen::from_dyn_fns(
            || Ok(()),
            move |()| {
                entered.lock().unwrap().send(()).unwrap();
                if p.swap(false, SeqCst) {
                    panic!("shutdown panicked on the timer");
                }
                Ok(())
            },
        )
        .with_linger(Duration::from_millis(5));
        drop(mo.open().unwrap());
        shutting
            .recv_timeout(PATIENCE)
            .expect("the timer ran the shutdown");
        mo.join().unwrap(); // the cycle ended despite the panic
        assert!(mo.closed());
        // Usable, and the timer thread lives on: the next linger ends too.
        drop(mo.open().unwrap());
        shutting
            .recv_timeout(PATIENCE)
            .expect("the timer ran again");
        mo.join().unwrap();
    });
}

/// A join, a seal or a drop whose shutdown panics: the panic reaches that
/// caller, after the cycle has ended.
#[test]
fn a_shutdown_panic_in_a_join_ending_a_linger_reaches_the_joiner() {
    common::quietly(|| {
        let mo =
            MultiOpen::from_dyn_fns(|| Ok(()), |()| panic!("shutdown panicked")).with_linger(LONG);
        drop(mo.open().unwrap());
        let joined = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| mo.join()));
        assert!(joined.is_err(), "the panic reaches the joiner");
        assert!(mo.closed());
        mo.join().unwrap();
    });
}

/// Threads open and close around short lingers that keep expiring: no two
/// startups at once, no use of a shut-down handle, and at rest as many
/// shutdowns as startups.
#[test]
fn stress_linger_opens_and_closes_around_expiry() {
    const THREADS: usize = 6;
    const ROUNDS: usize = 400;
    // The live cycle's number, 0 when none.
    let live = Arc::new(AtomicUsize::new(0));
    let counts = Arc::new(Counts::default());
    let (up, down, up_live, down_live) = (
        Arc::clone(&counts),
        Arc::clone(&counts),
        Arc::clone(&live),
        Arc::clone(&live),
    );
    let mo: Arc<FnMultiOpen<usize>> = MultiOpen::from_dyn_fns(
        move || {
            let cycle = up.startups.fetch_add(1, SeqCst) + 1;
            assert_eq!(up_live.swap(cycle, SeqCst), 0, "two startups live");
            Ok(cycle)
        },
        move |cycle| {
            assert_eq!(down_live.swap(0, SeqCst), cycle, "shut down a stranger");
            down.shutdowns.fetch_add(1, SeqCst);
            Ok(())
        },
    )
    .with_linger(Duration::from_micros(200));
    thread::scope(|s| {
        for t in 0..THREADS {
            let (mo, live) = (Arc::clone(&mo), Arc::clone(&live));
            s.spawn(move || {
                for round in 0..ROUNDS {
                    let g = match round % 4 {
                        0 => mo.open().unwrap(),
                        1 => match mo.try_open() {
                            Ok(g) => g,
                            Err(OpenError::TimedOut { .. }) => continue,
                            Err(e) => panic!("{e}"),
                        },
                        _ => mo.open_timeout(Duration::from_secs(60)).unwrap(),
                    };
                    assert_eq!(live.load(SeqCst), *g, "used a shut-down handle");
                    // Spread the closes around the linger's end.
                    if (round + t) % 7 == 0 {
                        thread::sleep(Duration::from_micros(150));
                    } else {
                        thread::yield_now();
                    }
                    drop(g);
                    if (round + t) % 5 == 0 {
                        thread::sleep(Duration::from_micros(300));
                    }
                }
            });
        }
    });
    let startups = counts.startups();
    assert!(startups >= 1);
    assert!(
        startups - counts.shutdowns() <= 1,
        "at most the lingering cycle is up"
    );
    mo.join().unwrap();
    assert_eq!(
        counts.startups(),
        counts.shutdowns(),
        "startups == shutdowns at rest"
    );
    assert_eq!(live.load(SeqCst), 0);
    assert_eq!(mo.open_count(), 0);
}
