#![cfg(not(loom))]
//! Closing a `MultiOpen` for good and opening it again: `seal`, `unseal`,
//! `is_sealed`, and what every form of open and join does meanwhile.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use multiopen::{FnMultiOpen, MultiOpen, OpenError, Phase};

/// Startups and shutdowns seen by an object built with [`counted`].
#[derive(Default)]
struct Counts {
    startups: AtomicUsize,
    shutdowns: AtomicUsize,
}

/// An object named "db" that counts its startups and shutdowns; its
/// handle is the cycle number.
fn counted() -> (Arc<FnMultiOpen<usize>>, Arc<Counts>) {
    let counts = Arc::new(Counts::default());
    let (up, down) = (Arc::clone(&counts), Arc::clone(&counts));
    let mo = MultiOpen::from_dyn_fns(
        move || Ok(up.startups.fetch_add(1, SeqCst) + 1),
        move |_| {
            down.shutdowns.fetch_add(1, SeqCst);
            Ok(())
        },
    )
    .with_name("db");
    (Arc::new(mo), counts)
}

fn is_sealed_error<T>(r: Result<T, OpenError<multiopen::BoxError>>) -> bool {
    matches!(r, Err(OpenError::Sealed { ref name }) if name == "db")
}

#[test]
fn sealing_twice_is_harmless_and_reports_false() {
    let (mo, _) = counted();
    assert!(!mo.is_sealed());
    assert!(mo.seal());
    assert!(!mo.seal());
    assert!(mo.is_sealed());
}

#[test]
fn unseal_when_not_sealed_reports_false_and_changes_nothing() {
    let (mo, counts) = counted();
    assert!(!mo.unseal());
    let g = mo.open().unwrap();
    assert!(!mo.unseal());
    assert_eq!((*g, mo.open_count()), (1, 1));
    drop(g);
    assert_eq!(counts.shutdowns.load(SeqCst), 1);
}

#[test]
fn unseal_while_holders_remain_lets_opens_join_the_same_cycle() {
    let (mo, counts) = counted();
    let held = mo.open().unwrap();
    mo.seal();
    assert!(is_sealed_error(mo.open()));
    assert!(mo.unseal());
    let again = mo.open().unwrap();
    assert_eq!(*again, 1, "no new startup: the cycle never ended");
    assert_eq!(counts.startups.load(SeqCst), 1);
    drop((held, again));
    assert_eq!(counts.shutdowns.load(SeqCst), 1);
}

#[test]
fn holders_keep_working_and_the_last_close_runs_shutdown() {
    let (mo, counts) = counted();
    let a = mo.open().unwrap();
    let b = mo.open_owned().unwrap();
    mo.seal();
    assert_eq!((*a, *b), (1, 1));
    assert!(mo.is_open());
    drop(a);
    assert_eq!(counts.shutdowns.load(SeqCst), 0, "b still holds an open");
    assert_eq!(mo.open_count(), 1);
    drop(b);
    assert_eq!(counts.shutdowns.load(SeqCst), 1);
    assert_eq!(mo.state().phase, Phase::Closed);
    assert!(mo.is_sealed(), "the seal outlives the cycle");
}

#[test]
fn every_open_form_is_refused_at_once_and_names_the_object() {
    let (mo, counts) = counted();
    mo.seal();
    let start = Instant::now();
    assert!(is_sealed_error(mo.open()));
    assert!(is_sealed_error(mo.open_owned()));
    assert!(is_sealed_error(mo.try_open()));
    assert!(is_sealed_error(mo.try_open_owned()));
    assert!(is_sealed_error(mo.open_timeout(Duration::from_secs(60))));
    assert!(is_sealed_error(
        mo.open_owned_timeout(Duration::from_secs(60))
    ));
    let later = Instant::now() + Duration::from_secs(60);
    assert!(is_sealed_error(mo.open_deadline(later)));
    assert!(is_sealed_error(mo.open_owned_deadline(later)));
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "a refusal waited"
    );
    assert_eq!(counts.startups.load(SeqCst), 0);
    assert_eq!(mo.open_count(), 0);
    let err = mo.open().map(drop).unwrap_err();
    assert_eq!(err.to_string(), "open of db refused: it is sealed");
}

#[test]
fn every_open_form_is_refused_while_holders_remain() {
    let (mo, _) = counted();
    let held = mo.open().unwrap();
    mo.seal();
    assert!(is_sealed_error(mo.open()));
    assert!(is_sealed_error(mo.try_open()));
    assert!(is_sealed_error(mo.open_timeout(Duration::from_secs(60))));
    assert!(is_sealed_error(mo.open_owned()));
    assert_eq!(mo.open_count(), 1, "refusals took their opens back");
    drop(held);
}

#[test]
fn join_is_released_by_the_last_holders_close() {
    let (mo, counts) = counted();
    let held = mo.open_owned().unwrap();
    mo.seal();
    let (tx, rx) = mpsc::channel();
    let joiner = {
        let mo = Arc::clone(&mo);
        thread::spawn(move || {
            mo.join().unwrap();
            tx.send(()).unwrap();
        })
    };
    assert!(
        rx.recv_timeout(Duration::from_millis(50)).is_err(),
        "joined while held"
    );
    drop(held);
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the joiner returns");
    joiner.join().unwrap();
    assert_eq!(counts.shutdowns.load(SeqCst), 1);
}

#[test]
fn join_on_a_sealed_object_with_no_opens_returns_at_once() {
    let (never, _) = counted();
    assert!(
        never.join().is_err(),
        "never opened and not sealed: an error"
    );
    never.seal();
    never
        .try_join()
        .expect("sealed and never opened: nothing to wait for");

    let (cycled, _) = counted();
    drop(cycled.open().unwrap());
    cycled.seal();
    cycled.try_join().expect("the last cycle is finalised");
}

#[test]
fn unseal_after_the_cycle_ended_starts_a_new_cycle() {
    let (mo, counts) = counted();
    drop(mo.open().unwrap());
    mo.seal();
    assert!(is_sealed_error(mo.open()));
    assert!(mo.unseal());
    let g = mo.open().unwrap();
    assert_eq!(*g, 2);
    assert_eq!(mo.state().cycle, 2);
    drop(g);
    assert_eq!(counts.startups.load(SeqCst), 2);
    assert_eq!(counts.shutdowns.load(SeqCst), 2);
}

#[test]
fn an_opener_waiting_behind_startup_is_woken_and_refused_by_seal() {
    // The startup does not end until the waiting opener has been refused:
    // only the seal's wake can release it.
    let refused = Arc::new(AtomicBool::new(false));
    let (entered_tx, entered_rx) = mpsc::channel();
    let mo: Arc<FnMultiOpen<()>> = {
        let refused = Arc::clone(&refused);
        let entered = std::sync::Mutex::new(entered_tx);
        Arc::new(
            MultiOpen::from_dyn_fns(
                move || {
                    entered.lock().unwrap().send(()).unwrap();
                    let give_up = Instant::now() + Duration::from_secs(30);
                    while !refused.load(SeqCst) && Instant::now() < give_up {
                        thread::sleep(Duration::from_millis(1));
                    }
                    Ok(())
                },
                |()| Ok(()),
            )
            .with_name("db"),
        )
    };
    let starter = {
        let mo = Arc::clone(&mo);
        thread::spawn(move || mo.open_owned().map(drop))
    };
    entered_rx.recv().unwrap();
    let waiter = {
        let (mo, refused) = (Arc::clone(&mo), Arc::clone(&refused));
        thread::spawn(move || {
            let r = mo.open().map(drop);
            refused.store(true, SeqCst);
            r
        })
    };
    // Let the waiter register and sleep behind the startup.
    while mo.open_count() < 2 {
        thread::yield_now();
    }
    let sealed_at = Instant::now();
    mo.seal();
    let r = waiter.join().unwrap();
    assert!(matches!(r, Err(OpenError::Sealed { ref name }) if name == "db"));
    assert!(
        sealed_at.elapsed() < Duration::from_secs(20),
        "woken only by the timeout"
    );
    // The starter's open linearized before the seal: it succeeded.
    starter
        .join()
        .unwrap()
        .expect("the starter's open was before the seal");
    assert_eq!(mo.open_count(), 0);
    assert!(mo.closed());
}

#[test]
fn stress_openers_against_seal_and_unseal_keep_the_invariants() {
    let (mo, counts) = counted();
    let stop = Arc::new(AtomicBool::new(false));
    let openers: Vec<_> = (0..3)
        .map(|_| {
            let (mo, stop) = (Arc::clone(&mo), Arc::clone(&stop));
            thread::spawn(move || {
                let (mut opened, mut refused) = (0usize, 0usize);
                while !stop.load(SeqCst) {
                    match mo.open() {
                        Ok(g) => {
                            assert!(*g >= 1);
                            opened += 1;
                        }
                        Err(OpenError::Sealed { .. }) => refused += 1,
                        Err(other) => panic!("unexpected {other}"),
                    }
                }
                (opened, refused)
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_millis(300);
    let mut rounds = 0;
    while Instant::now() < deadline {
        assert!(mo.seal());
        // Sealed: once the current cycle ends (a startup that was running
        // when we sealed may first finish and open a last cycle: join
        // returns for the cycle before it, so join again), nothing
        // reopens it.
        loop {
            mo.join().unwrap_or(());
            let s = mo.state();
            if matches!(s.phase, Phase::Closed | Phase::NeverOpened) && s.open_count == 0 {
                break;
            }
            thread::yield_now();
        }
        let shut = counts.shutdowns.load(SeqCst);
        assert_eq!(counts.startups.load(SeqCst), shut, "a startup while sealed");
        assert!(is_sealed_error(mo.try_open()));
        thread::sleep(Duration::from_millis(1));
        assert!(!mo.is_open(), "an open succeeded while sealed and idle");
        assert_eq!(counts.startups.load(SeqCst), shut, "a startup while sealed");
        assert!(mo.unseal());
        rounds += 1;
        thread::sleep(Duration::from_millis(1));
    }
    stop.store(true, SeqCst);
    let mut total = (0, 0);
    for t in openers {
        let (o, r) = t.join().unwrap();
        total = (total.0 + o, total.1 + r);
    }
    assert!(rounds > 0 && total.0 > 0, "the stress did not run");
    assert_eq!(mo.open_count(), 0);
    assert_eq!(
        counts.startups.load(SeqCst),
        counts.shutdowns.load(SeqCst),
        "startups and shutdowns differ at rest"
    );
}
