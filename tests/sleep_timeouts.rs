#![cfg(not(loom))]
//! `RunState::sleep` over the timed futex wait (src/sync/timed_wait.rs):
//! it ends near its deadline, huge durations sleep until cancelled (no
//! overflow into a wait that returns at once), zero returns at once, and a
//! cancel ends a timed sleep early. No test asserts an upper bound on a
//! duration (CI runs on a loaded 2-core machine): a sleep that never ends
//! shows as a test that never ends; a cancel is told from a timeout by the
//! result (`Err` vs `Ok`), not by the clock.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use multiopen::RunState;

mod common;
use common::blocked::{wait_until_all_blocked, BlockedSpot};

#[test]
fn a_sleep_ends_near_its_deadline() {
    let rs = RunState::new("nap");
    for d in [1, 10, 50].map(Duration::from_millis) {
        let t0 = Instant::now();
        assert_eq!(rs.sleep(d), Ok(()));
        let took = t0.elapsed();
        assert!(took >= d, "{d:?} ended early, after {took:?}");
    }
}

#[test]
fn a_zero_sleep_returns_at_once() {
    // A zero sleep never waits: were it to block, nothing here would wake
    // it and the test would hang.
    let rs = RunState::new("nap");
    for _ in 0..1000 {
        assert_eq!(rs.sleep(Duration::ZERO), Ok(()));
    }
}

/// Finite but beyond every OS timeout field (`time_t` seconds, `u32`
/// milliseconds or microseconds), and `Duration::MAX` (beyond any
/// `Instant`): each sleeper, once blocked in its wait, is still asleep
/// after 50 ms (the hold is what is tested), then the cancel ends it.
#[test]
fn huge_sleeps_last_until_cancelled() {
    let rs = Arc::new(RunState::new("nap"));
    rs.start().unwrap();
    let huge = [
        Duration::MAX,
        Duration::from_secs(1 << 40),
        Duration::from_secs(u64::from(u32::MAX) + 1),
        Duration::from_secs(i32::MAX as u64 + 1),
        Duration::from_millis(u64::from(u32::MAX) + 1),
        Duration::from_micros(u64::from(u32::MAX) + 1),
    ];
    let spots: Vec<_> = huge.iter().map(|_| Arc::new(BlockedSpot::new())).collect();
    let sleepers: Vec<_> = huge
        .into_iter()
        .zip(&spots)
        .map(|(d, spot)| {
            let (rs, spot) = (Arc::clone(&rs), Arc::clone(spot));
            let sleeper = thread::spawn(move || {
                spot.report();
                rs.sleep(d)
            });
            (d, sleeper)
        })
        .collect();
    // Every sleeper has begun (a late one used to make the hold below
    // prove less), then the hold.
    wait_until_all_blocked(spots.iter().map(|spot| &**spot));
    thread::sleep(Duration::from_millis(50));
    for (d, sleeper) in &sleepers {
        assert!(!sleeper.is_finished(), "a sleep of {d:?} ended at once");
    }
    rs.cancel();
    for (d, sleeper) in sleepers {
        assert!(sleeper.join().unwrap().is_err(), "{d:?}: cancelled");
    }
}

#[test]
fn a_cancel_ends_a_timed_sleep_early() {
    let rs = Arc::new(RunState::new("nap"));
    rs.start().unwrap();
    let d = Duration::from_secs(10);
    let spot = Arc::new(BlockedSpot::new());
    let sleeper = {
        let (rs, spot) = (Arc::clone(&rs), Arc::clone(&spot));
        thread::spawn(move || {
            spot.report();
            rs.sleep(d)
        })
    };
    // The cancel comes during the sleep, not before it (a sleep begun after
    // the cancel returns at once too: the test would pass, proving less).
    spot.wait_until_blocked();
    rs.cancel();
    // Err: the cancel ended it (the 10 s timeout would have returned Ok).
    assert!(sleeper.join().unwrap().is_err());
}
