#![cfg(not(loom))]
//! RunState waits: pause/resume and `wait_while_paused`/`check`, the
//! cancellable sleep, the iterator adapter (`until_cancelled`), and cancels
//! that a restart must not hide from a waiter. No test asserts how fast
//! anything is; the only time checks are lower bounds that the semantics
//! promise (a sleep that was not cancelled lasted at least its duration).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use multiopen::{Cancelled, RunPhase, RunState, UntilCancelledExt};

mod common;
use common::blocked::{wait_until_all_blocked, BlockedSpot};

/// Gives another thread a chance to reach its blocking call. Correctness
/// never depends on it: every test that calls it passes whether or not the
/// other thread got there (a late one sees the same state and returns the
/// same result); only what is exercised is weaker.
fn let_others_run() {
    thread::sleep(Duration::from_millis(20));
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
    rs.cancel();
    for c in checkers {
        assert_eq!(
            c.join().unwrap(),
            Err(Cancelled {
                name: "p".into(),
                reason: None
            })
        );
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
    rs.cancel();
    assert_eq!(
        rs.sleep(Duration::from_secs(3600)),
        Err(Cancelled {
            name: "nap".into(),
            reason: None
        })
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
    rs.cancel();
    for s in sleepers {
        assert_eq!(
            s.join().unwrap(),
            Err(Cancelled {
                name: "nap".into(),
                reason: None
            })
        );
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
        // Pacing of the wakes (what is tested), not ordering.
        thread::sleep(Duration::from_millis(1));
    }
    let (r, slept) = sleeper.join().unwrap();
    assert_eq!(r, Ok(()));
    assert!(slept >= d, "woke early after {slept:?}");
}

// --- iterator adapter --------------------------------------------------------

#[test]
fn iteration_stops_when_cancelled_and_stays_stopped() {
    let rs = RunState::new("it");
    rs.start().unwrap();
    let mut it = rs.iter(0..10);
    assert_eq!(it.next(), Some(0));
    assert_eq!(it.next(), Some(1));
    rs.cancel();
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

// --- review fixes: lost cancels ---------------------------------------------

/// A cancel that comes during a sleep is reported even if the controller
/// stops and restarts the run (clearing the flag) before the sleeper
/// wakes: a futex wake takes microseconds, the restart less. The sleep is
/// long and the test asserts what it returns, not how long it took.
///
/// Kind A race fixed (a sleep used for ordering): the sleepers were given
/// 20 ms to fall asleep; under load one started after the restart, saw the
/// new run and the test failed. Now the race waits until every sleeper
/// sits in its futex wait (`common::blocked`).
#[test]
fn a_restart_does_not_hide_a_cancel_from_a_sleeper() {
    for round in 0..20 {
        let rs = Arc::new(RunState::new("nap"));
        rs.start().unwrap();
        // Several sleepers: one wake-up wakes them one after another, so
        // some wake only after the restart.
        let spots: Vec<_> = (0..4).map(|_| Arc::new(BlockedSpot::new())).collect();
        let sleepers: Vec<_> = spots
            .iter()
            .map(|spot| {
                let (rs, spot) = (Arc::clone(&rs), Arc::clone(spot));
                thread::spawn(move || {
                    spot.report();
                    rs.sleep(Duration::from_secs(2))
                })
            })
            .collect();
        wait_until_all_blocked(spots.iter().map(|spot| &**spot));
        let controller = {
            let rs = Arc::clone(&rs);
            thread::spawn(move || {
                rs.cancel();
                rs.stop().unwrap();
                rs.start().unwrap();
            })
        };
        controller.join().unwrap();
        for sleeper in sleepers {
            assert_eq!(
                sleeper.join().unwrap(),
                Err(Cancelled {
                    name: "nap".into(),
                    reason: None
                }),
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
///
/// Kind A race fixed (a sleep used for ordering), as above: the race now
/// waits until both threads sit in their futex waits.
#[test]
fn a_restart_does_not_hide_a_cancel_from_paused_waiters() {
    for round in 0..20 {
        let rs = Arc::new(RunState::new("p"));
        rs.start().unwrap();
        rs.pause().unwrap();
        let spots = [Arc::new(BlockedSpot::new()), Arc::new(BlockedSpot::new())];
        let checker = {
            let (rs, spot) = (Arc::clone(&rs), Arc::clone(&spots[0]));
            thread::spawn(move || {
                spot.report();
                rs.check()
            })
        };
        let waiter = {
            let (rs, spot) = (Arc::clone(&rs), Arc::clone(&spots[1]));
            thread::spawn(move || {
                spot.report();
                rs.wait_while_paused()
            })
        };
        wait_until_all_blocked(spots.iter().map(|spot| &**spot));
        rs.cancel();
        rs.stop().unwrap();
        rs.start().unwrap();
        assert_eq!(
            checker.join().unwrap(),
            Err(Cancelled {
                name: "p".into(),
                reason: None
            }),
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
    rs.cancel();
    rs.stop().unwrap();
    rs.start().unwrap();
    assert_eq!(rs.sleep(Duration::from_millis(5)), Ok(()));
    rs.pause().unwrap();
    thread::scope(|s| {
        let checker = s.spawn(|| rs.check());
        // Ordering only: a checker that comes after the resume sees a
        // running, uncancelled run and returns `Ok` all the same.
        thread::sleep(Duration::from_millis(5));
        rs.resume().unwrap();
        assert_eq!(checker.join().unwrap(), Ok(()));
    });
}
