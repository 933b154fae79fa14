//! loom models of a lingering `MultiOpen` (`with_linger`): the linger's
//! end (the timer firing, a join) racing an opener.
//!
//! loom has no timer thread and no clock: a model fires the pending timers
//! with `multiopen::loom_fire_timers()` from one of its threads, which is
//! "the linger is due and the timer fires" at that point of every
//! interleaving. The resource is the [`Probe`] of `probe.rs`, which makes
//! loom report two startups at once, a shutdown racing a use, or a use of
//! a shut-down handle.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release --test loom_multi_open_linger`.
#![cfg(loom)]

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use loom::thread;
use multiopen::{CloseOutcome, MultiOpen};

#[path = "probe.rs"]
mod probe;
use probe::*;

/// A lingering object (the linger's length does not matter under loom:
/// it ends when a model fires the timers), in a std `Arc` as
/// `with_linger` makes it.
fn lingering() -> std::sync::Arc<MultiOpen<Probe>> {
    MultiOpen::new(Probe::new(false)).with_linger(Duration::from_secs(3600))
}

/// Cycle 1 lingers (its close armed the timer); the timer fires while the
/// main thread opens. Exactly one of: the opener reuses cycle 1's handle
/// with no startup (its increment came before the timer's claim, which
/// then fails), or the timer shuts cycle 1 down and the opener starts
/// cycle 2. Counts exact; a join at the end ends any new linger and leaves
/// startups == shutdowns.
#[test]
fn linger_expires_while_an_opener_arrives() {
    both_orders(|main_yields_first| {
        let mo = lingering();
        let first = mo.open().expect("cycle 1 starts");
        assert_eq!(first.close().ok(), Some(CloseOutcome::Lingering));
        let timer = thread::spawn(multiopen::loom_fire_timers);
        if main_yields_first {
            thread::yield_now();
        }
        let guard = mo.open().expect("the opener's open");
        let cycle = *guard;
        use_guard(&mo, cycle);
        let probe = mo.resource();
        match cycle {
            // Reused: no startup, and cycle 1 is still up.
            1 => assert_eq!(probe.startups.load(SeqCst), 1),
            // Expired first: cycle 1 shut down, then the opener started 2.
            2 => {
                assert_eq!(probe.shutdowns.load(SeqCst), 1);
                assert_eq!(probe.startups.load(SeqCst), 2);
            }
            other => panic!("cycle {other}"),
        }
        drop(guard); // lingers again
        assert_eq!(timer.join().unwrap(), 1, "the one armed timer fired");
        // The last cycle lingers, or the timer fired after this close and
        // ended it.
        let up = probe.startups.load(SeqCst) - probe.shutdowns.load(SeqCst);
        assert!(up <= 1, "{up} cycles up");
        mo.join().expect("ends the linger");
        assert_quiescent(&mo);
        assert_eq!(probe.startups.load(SeqCst), cycle);
        // A timer the last close armed finds nothing to do.
        multiopen::loom_fire_timers();
        assert_eq!(probe.shutdowns.load(SeqCst), cycle);
    });
}

/// Cycle 1 lingers; a joiner races an opener that opens, uses and closes.
/// The join ends the linger itself (no opens held), or, if the opener
/// holds its open, the opener's close ends it (it sees the joiner), or
/// the joiner sees the linger that close began: either way the joiner
/// returns (a joiner asleep through a linger is a loom deadlock), and the
/// counts are exact.
#[test]
fn linger_ended_by_a_join_racing_an_opener() {
    both_orders(|main_yields_first| {
        let mo = lingering();
        drop(mo.open().expect("cycle 1 starts"));
        let joiner = {
            let mo = mo.clone();
            thread::spawn(move || {
                mo.join().expect("opened, so no error");
                // Released by a finalise, after at least cycle 1's shutdown.
                assert!(mo.resource().shutdowns.load(SeqCst) >= 1);
            })
        };
        if main_yields_first {
            thread::yield_now();
        }
        open_use_close(&mo);
        joiner.join().unwrap();
        mo.join().expect("ends a linger the opener's close began");
        assert_quiescent(&mo);
        let startups = mo.resource().startups.load(SeqCst);
        assert!(startups == 1 || startups == 2, "{startups} startups");
    });
}
