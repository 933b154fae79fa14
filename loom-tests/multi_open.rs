//! loom models of `MultiOpen`: every interleaving of open, close, finalise
//! and join (2 threads exhaustively, 3 under a preemption bound), startup
//! failure, re-open during shutdown, finalise-later and detached close.
//!
//! The resource in every model is a [`Probe`]: its startup and shutdown
//! write a loom `UnsafeCell` that marks the resource live, and every use of
//! an open guard reads it. So loom itself reports two startups at once, a
//! startup racing a shutdown, or a guard touching a shut-down resource (as
//! a data race or causality violation), and the probe's assertions check
//! the counts. A lost wake-up shows up as a loom deadlock.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release --test loom_multi_open`.
//! `loom-tests/mutants.sh` runs these against deliberately broken builds.
#![cfg(loom)]

use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool as StdAtomicBool, AtomicUsize as StdAtomicUsize};

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;
use multiopen::{CloseError, CloseHow, CloseOutcome, MultiOpen, OpenError};

#[path = "probe.rs"]
mod probe;
use probe::*;

/// Two threads open, use and close: one startup per cycle, never two live,
/// and exactly one close per cycle reports running the shutdown.
#[test]
fn two_threads_open_close() {
    both_orders(|main_yields_first| {
        let mo = shared(false);
        let other = {
            let mo = mo.clone();
            thread::spawn(move || open_use_close(&mo))
        };
        if main_yields_first {
            thread::yield_now();
        }
        open_use_close(&mo);
        other.join().unwrap();
        assert_quiescent(&mo);
        let startups = mo.resource().startups.load(SeqCst);
        assert!((1..=2).contains(&startups), "{startups} startups");
        assert_eq!(mo.resource().reported.load(SeqCst), startups);
    });
}

/// One thread opens, uses the handle and detaches while the main thread
/// closes that detached open: the close is ordered after the use.
#[test]
fn detach_then_close_elsewhere() {
    loom::model(|| {
        let mo = shared(false);
        let user = {
            let mo = mo.clone();
            thread::spawn(move || {
                let guard = mo.open().unwrap();
                use_guard(&mo, *guard);
                guard.detach();
            })
        };
        match mo.close() {
            Ok(outcome) => assert_eq!(outcome, CloseOutcome::ShutDown),
            // Not detached yet (or never opened yet): nothing changed.
            Err(CloseError::Unmatched(_) | CloseError::NeverOpened(_)) => {
                user.join().unwrap();
                assert_eq!(mo.close().unwrap(), CloseOutcome::ShutDown);
                assert_quiescent(&mo);
                return;
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
        user.join().unwrap();
        assert_quiescent(&mo);
    });
}

/// A shutdown that panics while another thread opens: the panic reaches
/// the closer, the phase still ends (the opener is woken and starts a new
/// cycle), and the counts stay true.
#[test]
fn shutdown_panic_with_waiting_opener() {
    loom::model(|| {
        let mo = shared(false);
        mo.resource().panic_shutdown_next.store(true, SeqCst);
        let guard = mo.open().unwrap();
        let opener = {
            let mo = mo.clone();
            thread::spawn(move || {
                let closed =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| open_use_close(&mo)));
                u8::from(closed.is_err())
            })
        };
        let mine = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| guard.close()));
        let panics = u8::from(mine.is_err()) + opener.join().unwrap();
        assert_eq!(panics, 1, "the one panicking shutdown reached its closer");
        assert_quiescent(&mo);
        assert!(mo.join().is_ok(), "a panicking shutdown still finalises");
    });
}

/// A user's `finalise()` races the final close's own finalise while a
/// joiner waits: the cycle is finalised once, and the joiner is woken.
#[test]
fn finalise_races_auto_finalise() {
    bounded(|| {
        let mo = shared(false);
        let guard = mo.open().unwrap();
        let finaliser = {
            let mo = mo.clone();
            // Succeeds only between the shutdown and the final close's own
            // finalise; otherwise an error (still open / already done).
            thread::spawn(move || drop(mo.finalise()))
        };
        let joiner = {
            let mo = mo.clone();
            thread::spawn(move || mo.join().unwrap())
        };
        drop(guard);
        finaliser.join().unwrap();
        joiner.join().unwrap();
        assert!(mo.finalise().is_err(), "finalised twice");
        assert_quiescent(&mo);
    });
}

/// With finalise-later, a re-open before the pending finalise starts a new
/// cycle at once, and the old cycle's joiner is still released by
/// `finalise()` (the Python stranded it).
#[test]
fn reopen_before_pending_finalise() {
    bounded(|| {
        let mo = shared(false);
        mo.set_finalise_later(true);
        let guard = mo.open().unwrap();
        let joiner = {
            let mo = mo.clone();
            thread::spawn(move || mo.join().unwrap())
        };
        drop(guard); // cycle 1 shuts down; its finalise is pending
        let reopener = {
            let mo = mo.clone();
            thread::spawn(move || open_use_close(&mo))
        };
        mo.finalise().unwrap(); // cycle 1 (and cycle 2 if it already shut down)
        reopener.join().unwrap();
        // Cycle 2, if it shut down after our finalise. (The joiner may have
        // started waiting only once cycle 2 began, so it may need this.)
        let _ = mo.finalise();
        joiner.join().unwrap();
        mo.join().unwrap();
        assert_quiescent(&mo);
    });
}

/// A thread holds the object open; another opens and closes inside that
/// window, then the holder's close is the final one; a joiner waits for it.
/// Three threads: under the preemption bound.
#[test]
fn holder_opener_and_joiner() {
    bounded(|| {
        let mo = shared(false);
        let guard = mo.open().unwrap();
        let opener = {
            let mo = mo.clone();
            thread::spawn(move || open_use_close(&mo))
        };
        let joiner = {
            let mo = mo.clone();
            thread::spawn(move || {
                mo.join().expect("opened, so join is no error");
                // Released only by a finalise, which follows the shutdown.
                // (The opener may have started a new cycle since, so the
                // resource may be live again: that is not this cycle.)
                assert!(mo.resource().shutdowns.load(SeqCst) >= 1);
            })
        };
        use_guard(&mo, *guard);
        drop(guard);
        opener.join().unwrap();
        joiner.join().unwrap();
        assert_quiescent(&mo);
    });
}

/// One thread's final close races another thread's re-open: the re-open
/// either joins the live cycle or waits out the shutdown and starts anew.
#[test]
fn reopen_during_shutdown() {
    both_orders(|main_yields_first| {
        let mo = shared(false);
        let guard = mo.open().unwrap();
        let reopener = {
            let mo = mo.clone();
            thread::spawn(move || open_use_close(&mo))
        };
        if main_yields_first {
            thread::yield_now();
        }
        drop(guard);
        reopener.join().unwrap();
        assert_quiescent(&mo);
    });
}

/// The first startup fails while another thread also opens: exactly the
/// thread that ran the failing startup sees the error, the count is
/// restored, and the other opener runs startup itself.
#[test]
fn startup_failure_with_concurrent_opener() {
    loom::model(|| {
        let mo = shared(true);
        let other = {
            let mo = mo.clone();
            thread::spawn(move || attempt(&mo))
        };
        let mine = attempt(&mo);
        let theirs = other.join().unwrap();
        assert_eq!(
            u8::from(mine) + u8::from(theirs),
            1,
            "exactly one opener must see the failure"
        );
        assert_quiescent(&mo);
        let probe = mo.resource();
        assert!(probe.attempts.load(SeqCst) >= 2, "the failure was retried");
    });

    /// Opens once: true if this call saw the startup failure.
    fn attempt(mo: &MultiOpen<Probe>) -> bool {
        match mo.open() {
            Ok(guard) => {
                use_guard(mo, *guard);
                false
            }
            Err(OpenError::Startup { error: Refused, .. }) => true,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
}

/// The first startup panics while another thread also opens: the panic
/// reaches only the thread that ran it, the state is rolled back, and the
/// other opener runs startup itself.
#[test]
fn startup_panic_with_concurrent_opener() {
    loom::model(|| {
        let mo = shared(false);
        mo.resource().panic_next.store(true, SeqCst);
        let other = {
            let mo = mo.clone();
            thread::spawn(move || attempt(&mo))
        };
        let mine = attempt(&mo);
        let theirs = other.join().unwrap();
        assert_eq!(
            u8::from(mine) + u8::from(theirs),
            1,
            "exactly one opener must see the panic"
        );
        assert_quiescent(&mo);
    });

    /// Opens once: true if this call's startup panicked.
    fn attempt(mo: &MultiOpen<Probe>) -> bool {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| mo.open().map(|g| *g))) {
            Ok(Ok(cycle)) => {
                assert_eq!(cycle, 1);
                false
            }
            Ok(Err(other)) => panic!("unexpected {other:?}"),
            Err(_panic) => true,
        }
    }
}

/// With finalise-later, a joiner is released by `finalise()`, not by the
/// final close, and sees everything done before the finalise.
#[test]
fn finalise_later_releases_joiner() {
    loom::model(|| {
        let mo = shared(false);
        mo.set_finalise_later(true);
        let guard = mo.open().unwrap();
        let after_close = Arc::new(AtomicBool::new(false));
        let joiner = {
            let mo = mo.clone();
            let after_close = after_close.clone();
            thread::spawn(move || {
                mo.join().unwrap();
                // Relaxed: join's Acquire pairs with finalise's Release.
                assert!(
                    after_close.load(Ordering::Relaxed),
                    "joiner released before finalise"
                );
            })
        };
        assert_eq!(guard.close().unwrap(), CloseOutcome::ShutDown);
        // Relaxed: published by finalise's Release.
        after_close.store(true, Ordering::Relaxed);
        mo.finalise().unwrap();
        joiner.join().unwrap();
        assert!(mo.finalise().is_err(), "finalising twice is an error");
        assert_quiescent(&mo);
    });
}

/// A detached open closed by another thread while a third opens: the
/// detached close may or may not be final, never closes twice, and an
/// extra close afterwards is an error that changes nothing.
#[test]
fn detached_close_from_another_thread() {
    loom::model(|| {
        let mo = shared(false);
        mo.open().unwrap().detach();
        let closer = {
            let mo = mo.clone();
            thread::spawn(move || mo.close().expect("one detached open to close"))
        };
        open_use_close(&mo);
        closer.join().unwrap();
        assert!(matches!(mo.close(), Err(CloseError::Unmatched(_))));
        assert_quiescent(&mo);
    });
}

/// Two threads race to close the last two (detached) opens while the main
/// thread joins: exactly one close is final and runs shutdown, and the
/// joiner is released after it.
#[test]
fn two_closers_and_a_joiner() {
    bounded(|| {
        let mo = shared(false);
        mo.open().unwrap().detach();
        mo.open().unwrap().detach();
        let closers: Vec<_> = (0..2)
            .map(|_| {
                let mo = mo.clone();
                thread::spawn(move || mo.close().unwrap())
            })
            .collect();
        mo.join().unwrap();
        assert_eq!(mo.resource().shutdowns.load(SeqCst), 1);
        let outcomes: Vec<_> = closers.into_iter().map(|t| t.join().unwrap()).collect();
        let finals = outcomes
            .iter()
            .filter(|&&o| o == CloseOutcome::ShutDown)
            .count();
        assert_eq!(finals, 1, "exactly one final close: {outcomes:?}");
        assert_quiescent(&mo);
    });
}

/// Three threads race from idle (no holder): startup, openers waiting on
/// it, shutdown and re-open all interleave.
#[test]
fn three_threads_from_idle() {
    bounded(|| {
        let mo = shared(false);
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let mo = mo.clone();
                thread::spawn(move || open_use_close(&mo))
            })
            .collect();
        open_use_close(&mo);
        for t in threads {
            t.join().unwrap();
        }
        assert_quiescent(&mo);
    });
}

/// A timed opener times out while startup finishes: the main thread runs
/// startup and keeps its open; another thread `try_open`s (a past deadline:
/// under loom the timed sleep is untimed, so the try is how a time-out is
/// modelled) during or after that startup. Either it times out, having
/// taken its increment back, or it gets the open: the count is exact, the
/// starter's open works, and later opens work.
#[test]
fn timed_opener_times_out_while_startup_finishes() {
    both_orders(|main_yields_first| {
        let mo = shared(false);
        let timed = {
            let mo = mo.clone();
            thread::spawn(move || match mo.try_open() {
                Ok(guard) => {
                    use_guard(&mo, *guard);
                    true
                }
                Err(OpenError::TimedOut { .. }) => false,
                Err(other) => panic!("unexpected {other:?}"),
            })
        };
        if main_yields_first {
            thread::yield_now();
        }
        let guard = mo.open().expect("the starter's open");
        use_guard(&mo, *guard);
        let _got_it = timed.join().unwrap();
        assert_eq!(mo.open_count(), 1, "only the starter's open is counted");
        drop(guard);
        open_use_close(&mo);
        assert_quiescent(&mo);
    });
}

/// A timed opener whose take-back is the final close: it arrives while the
/// other thread starts up, and that thread opens and closes before the
/// try takes its increment back. The take-back must run shutdown like any
/// final close (startups == shutdowns at rest).
#[test]
fn timed_opener_backs_out_as_final_close() {
    both_orders(|main_yields_first| {
        let mo = shared(false);
        let other = {
            let mo = mo.clone();
            thread::spawn(move || open_use_close(&mo))
        };
        if main_yields_first {
            thread::yield_now();
        }
        match mo.try_open() {
            Ok(guard) => use_guard(&mo, *guard),
            Err(OpenError::TimedOut { .. }) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
        other.join().unwrap();
        assert_quiescent(&mo);
    });
}

/// A timed opener that sleeps and times out (under loom a timed sleep times
/// out at once, wherever it happens) while startup finishes and an untimed
/// opener sleeps beside it on the same WAITERS bit: the untimed opener is
/// still woken, the timed one leaves no count, and everyone's opens work.
/// Three threads: under the preemption bound.
#[test]
fn timed_opener_sleeps_and_times_out_beside_an_untimed_one() {
    bounded(|| {
        let mo = shared(false);
        let timed = {
            let mo = mo.clone();
            thread::spawn(
                move || match mo.open_timeout(std::time::Duration::from_secs(3600)) {
                    Ok(guard) => use_guard(&mo, *guard),
                    Err(OpenError::TimedOut { .. }) => {}
                    Err(other) => panic!("unexpected {other:?}"),
                },
            )
        };
        let untimed = {
            let mo = mo.clone();
            thread::spawn(move || open_use_close(&mo))
        };
        open_use_close(&mo);
        timed.join().unwrap();
        untimed.join().unwrap();
        assert_quiescent(&mo);
    });
}

/// A timed joiner that times out (at once, under loom) or is released,
/// while the holder closes: then an untimed join returns.
#[test]
fn timed_join_times_out_or_returns_then_join_returns() {
    both_orders(|main_yields_first| {
        let mo = shared(false);
        let guard = mo.open().unwrap();
        let joiner = {
            let mo = mo.clone();
            thread::spawn(move || {
                match mo.join_timeout(std::time::Duration::from_secs(3600)) {
                    // Released: by a finalise, which follows the shutdown.
                    Ok(()) => assert_eq!(mo.resource().shutdowns.load(SeqCst), 1),
                    Err(multiopen::JoinError::TimedOut { .. }) => {}
                    Err(other) => panic!("unexpected {other:?}"),
                }
                mo.join().unwrap();
            })
        };
        if main_yields_first {
            thread::yield_now();
        }
        drop(guard);
        joiner.join().unwrap();
        assert_quiescent(&mo);
    });
}

/// `seal` races an opener and a joiner while a holder keeps cycle 1 up:
/// an open that starts after `seal` returned is refused, one that
/// succeeds belongs to cycle 1 (no second startup), the holder's close or
/// the opener's is the final close and shutdown runs exactly once, and the
/// joiner returns (a lost wake is a loom deadlock). Afterwards the sealed
/// object still refuses, and `unseal` starts cycle 2.
#[test]
fn seal_racing_an_opener_and_a_joiner() {
    bounded(|| {
        let mo = shared(false);
        // The holder: detached here, closed by the sealer's thread.
        mo.open().unwrap().detach();
        // Outside loom's view: set once `seal` has returned.
        let sealed = std::sync::Arc::new(StdAtomicBool::new(false));
        let sealer = {
            let (mo, sealed) = (mo.clone(), sealed.clone());
            thread::spawn(move || {
                assert!(mo.seal(), "the first seal seals");
                sealed.store(true, SeqCst);
                use_guard(&mo, 1); // a holder keeps working
                mo.close().expect("the held open closes");
            })
        };
        let opener = {
            let (mo, sealed) = (mo.clone(), sealed.clone());
            thread::spawn(move || {
                let after_seal = sealed.load(SeqCst);
                match mo.open() {
                    Ok(g) => {
                        assert!(!after_seal, "an open after the seal succeeded");
                        assert_eq!(*g, 1, "an open started a new cycle");
                        use_guard(&mo, *g);
                    }
                    Err(OpenError::Sealed { .. }) => {}
                    Err(other) => panic!("unexpected {other}"),
                }
            })
        };
        mo.join().expect("opened, so join is no error");
        // Released by cycle 1's finalise, after its one shutdown.
        assert_eq!(mo.resource().shutdowns.load(SeqCst), 1);
        sealer.join().unwrap();
        opener.join().unwrap();
        assert_quiescent(&mo);
        assert_eq!(mo.resource().startups.load(SeqCst), 1);
        assert!(matches!(mo.open(), Err(OpenError::Sealed { .. })));
        assert!(mo.unseal());
        assert_eq!(*mo.open().unwrap(), 2, "unseal starts a new cycle");
    });
}

/// The last holder's close racing a refused open after `seal` (the
/// review's "stolen final close"). The refused open counts itself for an
/// instant, so either close may be the final one; the exact guarantee
/// (documented on `seal`): the shutdown runs exactly once, and its error
/// reaches exactly one place: the holder's close returns it (and the hook
/// is not called), or the holder's close reports `StillOpen` or
/// `ShutDownByOther`, the refused opener's take-back ran the shutdown, the
/// hook got the error, and the recorded final close says `TakenBack`.
/// Mutants: the take-back as a bare decrement (no shutdown), and the
/// take-back's error dropped instead of hooked.
#[test]
fn last_close_after_seal_racing_a_refused_open() {
    both_orders(|main_yields_first| {
        let hooked = std::sync::Arc::new(StdAtomicUsize::new(0));
        let hook_calls = hooked.clone();
        let mo = Arc::new(
            MultiOpen::new(Probe::new(false)).with_on_shutdown_error(move |_, _| {
                hook_calls.fetch_add(1, SeqCst);
            }),
        );
        mo.resource().fail_shutdown_next.store(true, SeqCst);
        let held = mo.open().unwrap();
        assert!(mo.seal());
        let refused = {
            let mo = mo.clone();
            thread::spawn(move || match mo.open() {
                Err(OpenError::Sealed { .. }) => {}
                other => panic!("a sealed object gave {:?}", other.map(drop)),
            })
        };
        if main_yields_first {
            thread::yield_now();
        }
        use_guard(&mo, *held);
        let outcome = held.close();
        refused.join().unwrap();
        assert_eq!(mo.resource().shutdowns.load(SeqCst), 1, "shut down once");
        let hook_calls = hooked.load(SeqCst);
        match outcome {
            Err(CloseError::Shutdown { .. }) => {
                assert_eq!(hook_calls, 0, "the error went to both");
            }
            Ok(CloseOutcome::StillOpen | CloseOutcome::ShutDownByOther) => {
                assert_eq!(hook_calls, 1, "the take-back's error was lost");
                let site = mo.state().final_close.expect("closed");
                assert_eq!(site.how, CloseHow::TakenBack);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_quiescent(&mo);
        mo.join().unwrap();
    });
}

/// An opener asleep behind a startup that cannot end until that opener
/// returns: only the seal's wake can release it (the phase's end never
/// comes first). The opener is refused, the startup ends, its open works
/// and its close shuts down. A seal that forgot to wake leaves the opener
/// asleep and every thread blocked: a loom deadlock.
#[test]
fn seal_wakes_an_opener_asleep_behind_a_startup() {
    bounded(|| {
        let mo = Arc::new(MultiOpen::new(HeldStartup::new()));
        let starter = {
            let mo = mo.clone();
            thread::spawn(move || {
                let guard = mo.open().expect("the starter's open");
                assert_eq!(guard.close().ok(), Some(CloseOutcome::ShutDown));
            })
        };
        let sealer = {
            let mo = mo.clone();
            thread::spawn(move || {
                mo.resource().begun_for_sealer.wait();
                assert!(mo.seal());
            })
        };
        mo.resource().begun_for_opener.wait();
        // Startup is running: this open sleeps or is refused at once, and
        // cannot succeed (startup waits for it to return).
        assert!(matches!(mo.open(), Err(OpenError::Sealed { .. })));
        mo.resource().release.open();
        starter.join().unwrap();
        sealer.join().unwrap();
        assert!(mo.closed() && mo.open_count() == 0);
    });
}
