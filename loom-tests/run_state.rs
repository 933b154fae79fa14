//! loom models of `RunState`: start/cancel/stop races from 2 threads
//! (exhaustively) and 3 (under a preemption bound), cancel against a
//! sleeper and against paused waiters (a lost wake-up is a loom deadlock),
//! resume and stop against paused waiters, the timestamps' seqlock against
//! a reader, callbacks seeing the state their transition made, callback
//! registration racing a transition, the guard on panic, a cancel that a
//! restart must not hide from a waiter, and a guard that must not end a
//! later run (nor, while unwinding, cancel it).
//!
//! `sleep` is modelled untimed (the shim's `wait_timeout` is an untimed
//! wait under loom), so a sleeper here returns only when cancelled: the
//! models give it an hour and expect `Err(Cancelled)`.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release --test loom_run_state`.
//! `loom-tests/mutants.sh run_state::` runs them against deliberately broken
//! builds.
#![cfg(loom)]

use std::sync::atomic::AtomicUsize as StdAtomicUsize;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc as StdArc, Once};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use multiopen::{Cancelled, RunPhase, RunState, RunStateError};

/// Long enough that no model ever reaches it: sleeps end by cancel only.
const HOUR: Duration = Duration::from_secs(3600);

/// 3-thread models: every interleaving with at most this many preemptions.
fn bounded() -> loom::model::Builder {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(2);
    builder
}

/// A recorded time is a real one, not the zero of an unwritten slot.
fn plausible(t: Option<SystemTime>) -> bool {
    t.is_none_or(|t| t > UNIX_EPOCH + Duration::from_secs(365 * 24 * 3600))
}

/// Silences the panic hook for the message the guard model panics with.
fn quiet_planned_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() != Some(&"planned") {
                default(info);
            }
        }));
    });
}

/// Lets the spawned threads run first, before the main thread's own
/// operations.
///
/// loom 0.7.3's DPOR keeps only the last access to each atomic, so when a
/// thread does a load and then a read-modify-write of the same word (every
/// CAS loop here), a race between that RMW and another thread's *earlier*
/// load is hidden behind the thread's own load and never explored
/// (tokio-rs/loom#392, #166). Races are still found from the load's side
/// when the load runs after the RMW in the first schedule, which is what
/// yielding here arranges: the first execution runs the spawned threads
/// through, and backtracking then moves the main thread's loads earlier.
fn others_first() {
    thread::yield_now();
}

/// Counts a transition's callbacks (outside loom's view; read after join).
fn counter(rs: &RunState) -> [StdArc<StdAtomicUsize>; 3] {
    let counts = [(); 3].map(|()| StdArc::new(StdAtomicUsize::new(0)));
    let [starts, cancels, ends] = counts.clone();
    rs.on_start(move |_| {
        starts.fetch_add(1, SeqCst);
    });
    rs.on_cancel(move |_| {
        cancels.fetch_add(1, SeqCst);
    });
    rs.on_end(move |_| {
        ends.fetch_add(1, SeqCst);
    });
    counts
}

fn ok_count(results: &[bool]) -> usize {
    results.iter().filter(|&&ok| ok).count()
}

// --- transitions ---------------------------------------------------------------

/// Two starts race: exactly one wins, the other is told it is running; the
/// loser may have to wait for the winner's timestamps (a lost wake there
/// is a deadlock).
#[test]
fn two_starts_race() {
    loom::model(|| {
        let rs = Arc::new(RunState::new("rs"));
        let [starts, _, _] = counter(&rs);
        let spawn_start = || {
            let rs = Arc::clone(&rs);
            thread::spawn(move || match rs.start() {
                Ok(()) => true,
                Err(RunStateError::AlreadyRunning { .. }) => false,
                Err(e) => panic!("unexpected {e:?}"),
            })
        };
        let (a, b) = (spawn_start(), spawn_start());
        let results = [a.join().unwrap(), b.join().unwrap()];
        assert_eq!(ok_count(&results), 1, "exactly one start wins");
        assert_eq!(starts.load(SeqCst), 1);
        assert_eq!(rs.state(), RunPhase::Running);
        assert!(plausible(rs.start_time()) && rs.start_time().is_some());
    });
}

/// One thread runs start then stop, another cancels: the cancel lands
/// before the start (kept: the run begins cancelled), during the run, or
/// after the stop (kept for the next run), and is never lost: each way the
/// state ends cancelled. (A start or stop that computed its new word from
/// a plain load and wrote it blindly, the mutant
/// `run_state::publish_blind_write`, loses a cancel landing in between.)
#[test]
fn start_stop_vs_cancel() {
    loom::model(|| {
        let rs = Arc::new(RunState::new("rs"));
        let [starts, cancels, ends] = counter(&rs);
        let runner = {
            let rs = Arc::clone(&rs);
            thread::spawn(move || {
                rs.start().unwrap();
                rs.stop().unwrap();
            })
        };
        let canceller = {
            let rs = Arc::clone(&rs);
            thread::spawn(move || rs.cancel())
        };
        runner.join().unwrap();
        canceller.join().unwrap();
        assert!(rs.stopped());
        let phase = rs.state();
        assert_eq!(phase, RunPhase::Cancelled, "a cancel was lost");
        assert!(rs.cancelled(), "{phase}");
        assert_eq!(
            (starts.load(SeqCst), cancels.load(SeqCst), ends.load(SeqCst)),
            (1, 1, 1)
        );
        let (start, stop) = (rs.start_time().unwrap(), rs.stop_time().unwrap());
        assert!(plausible(Some(start)) && stop >= start);
        assert_eq!(stop.duration_since(start).unwrap(), rs.run_time());
        assert_eq!(rs.total_time(), rs.run_time());
    });
}

/// Three threads: two start, one stops, under a preemption bound. The
/// successful starts and stops alternate, the callbacks match them, and
/// the final state agrees with the count.
#[test]
fn three_threads_start_start_stop() {
    bounded().check(|| {
        let rs = Arc::new(RunState::new("rs"));
        let [starts, _, ends] = counter(&rs);
        let starter = || {
            let rs = Arc::clone(&rs);
            thread::spawn(move || rs.start().is_ok())
        };
        let (a, b) = (starter(), starter());
        let stopper = {
            let rs = Arc::clone(&rs);
            thread::spawn(move || match rs.stop() {
                Ok(()) => true,
                Err(RunStateError::NeverStarted { .. } | RunStateError::NotRunning { .. }) => false,
                Err(e) => panic!("unexpected {e:?}"),
            })
        };
        let ok_starts = ok_count(&[a.join().unwrap(), b.join().unwrap()]);
        let ok_stops = ok_count(&[stopper.join().unwrap()]);
        assert!(ok_starts >= 1);
        assert!(ok_stops <= ok_starts);
        // start, stop, start ... alternate: one more start than stops iff
        // it is running.
        assert_eq!(ok_starts - ok_stops, usize::from(rs.is_running()));
        assert_eq!(ok_starts, starts.load(SeqCst));
        assert_eq!(ok_stops, ends.load(SeqCst));
        assert!(plausible(rs.start_time()) && plausible(rs.stop_time()));
        if ok_stops == 1 {
            assert!(rs.stop_time().is_some());
            if rs.stopped() {
                assert!(rs.stop_time() >= rs.start_time());
            } else {
                assert!(rs.start_time() >= rs.stop_time(), "a later run");
            }
        }
    });
}

/// Three threads: start, cancel and stop at once (preemption bound).
#[test]
fn three_threads_start_cancel_stop() {
    bounded().check(|| {
        let rs = Arc::new(RunState::new("rs"));
        rs.start().unwrap();
        rs.stop().unwrap();
        let [starts, cancels, ends] = counter(&rs);
        let starter = {
            let rs = Arc::clone(&rs);
            thread::spawn(move || rs.start().is_ok())
        };
        let canceller = {
            let rs = Arc::clone(&rs);
            thread::spawn(move || rs.cancel())
        };
        let stopper = {
            let rs = Arc::clone(&rs);
            thread::spawn(move || rs.stop().is_ok())
        };
        assert!(starter.join().unwrap(), "it was stopped: the start wins");
        canceller.join().unwrap();
        let stopped = stopper.join().unwrap();
        assert_eq!(rs.is_running(), !stopped);
        assert_eq!(rs.stopped(), stopped);
        // Before the start (kept for the run), during the run or after the
        // stop (kept for the next run): the cancel is never lost.
        assert!(rs.cancelled(), "a cancel was lost: {}", rs.state());
        assert_eq!(starts.load(SeqCst), 1);
        assert_eq!(cancels.load(SeqCst), 1);
        assert_eq!(ends.load(SeqCst), usize::from(stopped));
    });
}

// --- wake-ups -----------------------------------------------------------------

/// A sleeper (untimed under loom) is woken by a cancel from another thread.
#[test]
fn cancel_wakes_sleeper() {
    loom::model(|| {
        let rs = Arc::new(RunState::new("rs"));
        rs.start().unwrap();
        let sleeper = {
            let rs = Arc::clone(&rs);
            thread::spawn(move || rs.sleep(HOUR))
        };
        others_first();
        rs.cancel();
        assert_eq!(
            sleeper.join().unwrap(),
            Err(Cancelled {
                name: "rs".into(),
                reason: None
            })
        );
    });
}

/// A thread blocked in `check()` on a paused state is released by a cancel
/// with `Err(Cancelled)`.
#[test]
fn cancel_wakes_paused_waiter() {
    loom::model(|| {
        let rs = Arc::new(RunState::new("rs"));
        rs.start().unwrap();
        rs.pause().unwrap();
        let waiter = {
            let rs = Arc::clone(&rs);
            thread::spawn(move || rs.check())
        };
        others_first();
        rs.cancel();
        assert!(waiter.join().unwrap().is_err());
        assert_eq!(rs.state(), RunPhase::Stopping);
    });
}

/// One cancel wakes every kind of sleeper at once (3 threads, bounded).
#[test]
fn cancel_wakes_sleeper_and_paused_waiter() {
    bounded().check(|| {
        let rs = Arc::new(RunState::new("rs"));
        rs.start().unwrap();
        rs.pause().unwrap();
        let sleeper = {
            let rs = Arc::clone(&rs);
            thread::spawn(move || rs.sleep(HOUR))
        };
        let paused = {
            let rs = Arc::clone(&rs);
            thread::spawn(move || {
                rs.wait_while_paused();
                rs.cancelled()
            })
        };
        let canceller = {
            let rs = Arc::clone(&rs);
            thread::spawn(move || rs.cancel())
        };
        canceller.join().unwrap();
        assert!(sleeper.join().unwrap().is_err());
        assert!(paused.join().unwrap(), "released by the cancel");
    });
}

/// `resume` releases a paused waiter.
#[test]
fn resume_wakes_paused_waiter() {
    loom::model(|| {
        let rs = Arc::new(RunState::new("rs"));
        rs.start().unwrap();
        rs.pause().unwrap();
        let waiter = {
            let rs = Arc::clone(&rs);
            thread::spawn(move || rs.check())
        };
        others_first();
        rs.resume().unwrap();
        assert_eq!(waiter.join().unwrap(), Ok(()));
        assert_eq!(rs.state(), RunPhase::Running);
    });
}

/// `stop` releases a paused waiter (not cancelled: `Ok`).
#[test]
fn stop_wakes_paused_waiter() {
    loom::model(|| {
        let rs = Arc::new(RunState::new("rs"));
        rs.start().unwrap();
        rs.pause().unwrap();
        let waiter = {
            let rs = Arc::clone(&rs);
            thread::spawn(move || rs.check())
        };
        others_first();
        rs.stop().unwrap();
        assert_eq!(waiter.join().unwrap(), Ok(()));
        assert_eq!(rs.state(), RunPhase::Stopped);
    });
}

/// Waits (spinning with loom yields) until a thread has announced that it
/// sleeps on the state word, i.e. it began its wait before what follows.
fn until_someone_waits(rs: &RunState) {
    while !rs.loom_has_waiters() {
        thread::yield_now();
    }
}

/// A cancel is not lost when the run restarts before the sleeper wakes:
/// the controller cancels, stops and starts again (clearing the flag)
/// while the sleeper is asleep; the sleeper must still return
/// `Err(Cancelled)`. Without the count of cleared cancels it would find a
/// fresh run, sleep again, and never wake (a loom deadlock).
#[test]
fn restart_does_not_hide_cancel_from_sleeper() {
    loom::model(|| {
        let rs = Arc::new(RunState::new("rs"));
        rs.start().unwrap();
        let sleeper = {
            let rs = Arc::clone(&rs);
            thread::spawn(move || rs.sleep(HOUR))
        };
        until_someone_waits(&rs);
        rs.cancel();
        rs.stop().unwrap();
        rs.start().unwrap();
        assert_eq!(
            sleeper.join().unwrap(),
            Err(Cancelled {
                name: "rs".into(),
                reason: None
            })
        );
        assert_eq!(rs.state(), RunPhase::Running, "the new run goes on");
    });
}

/// The same for a thread blocked in `check()` on a paused run: the stop
/// clears the pause and the start the cancel, yet `check` reports the
/// cancel (the mutant returns `Ok`).
#[test]
fn restart_does_not_hide_cancel_from_paused_waiter() {
    loom::model(|| {
        let rs = Arc::new(RunState::new("rs"));
        rs.start().unwrap();
        rs.pause().unwrap();
        let waiter = {
            let rs = Arc::clone(&rs);
            thread::spawn(move || rs.check())
        };
        until_someone_waits(&rs);
        rs.cancel();
        rs.stop().unwrap();
        rs.start().unwrap();
        assert!(waiter.join().unwrap().is_err(), "the cancel was lost");
    });
}

/// What a thread wrote before `cancel` is visible to a thread that sees
/// `cancelled()` (Release/Acquire).
#[test]
fn cancel_publishes_prior_writes() {
    loom::model(|| {
        let rs = Arc::new(RunState::new("rs"));
        let data = Arc::new(AtomicUsize::new(0));
        let canceller = {
            let (rs, data) = (Arc::clone(&rs), Arc::clone(&data));
            thread::spawn(move || {
                data.store(42, Ordering::Relaxed);
                rs.cancel();
            })
        };
        // No `others_first()`: the canceller makes no load-then-RMW here,
        // and this model needs the main thread's load to run first.
        if rs.cancelled() {
            assert_eq!(data.load(Ordering::Relaxed), 42);
        }
        canceller.join().unwrap();
    });
}

// --- timestamps -------------------------------------------------------------

/// The seqlock: a reader's answer comes from one record that a publish
/// made live. One run is done before the threads start, so the live slot
/// holds its record; the writer's second run then rewrites that very slot
/// (at its stop) while a slow reader may still be reading it.
#[test]
fn times_reader_vs_second_run() {
    loom::model(|| {
        let rs = Arc::new(RunState::new("rs"));
        rs.start().unwrap();
        rs.stop().unwrap();
        let writer = {
            let rs = Arc::clone(&rs);
            thread::spawn(move || {
                rs.start().unwrap();
                rs.stop().unwrap();
            })
        };
        others_first();
        // Every run lasts a positive time: 0 would mean the second run's
        // start read with the first run's stop, from one half-rewritten
        // slot.
        let run = rs.run_time();
        assert!(run > Duration::ZERO, "torn read: run_time {run:?}");
        assert!(plausible(rs.stop_time()));
        writer.join().unwrap();
        assert!(rs.total_time() > rs.run_time(), "two runs");
    });
}

/// The first publish against a reader: a reader that sees the run started
/// sees its start time.
#[test]
fn times_reader_vs_first_start() {
    loom::model(|| {
        let rs = Arc::new(RunState::new("rs"));
        let writer = {
            let rs = Arc::clone(&rs);
            thread::spawn(move || rs.start().unwrap())
        };
        others_first();
        let start = rs.start_time();
        let run = rs.run_time();
        assert!(plausible(start), "unwritten start time {start:?}");
        if start.is_some() {
            assert!(run > Duration::ZERO);
        }
        writer.join().unwrap();
    });
}

// --- callbacks ----------------------------------------------------------------

/// Each callback sees the state its own transition made, while the other
/// transition races it.
#[test]
fn callbacks_see_their_transition() {
    loom::model(|| {
        let rs = Arc::new(RunState::new("rs"));
        rs.start().unwrap();
        rs.on_cancel(|rs| assert!(rs.cancelled(), "on_cancel without cancelled"));
        rs.on_end(|rs| {
            assert!(rs.stopped(), "on_end while running");
            let (start, stop) = (rs.start_time(), rs.stop_time());
            assert!(
                stop.is_some() && stop >= start,
                "on_end without its stop time"
            );
        });
        let canceller = {
            let rs = Arc::clone(&rs);
            thread::spawn(move || rs.cancel())
        };
        let stopper = {
            let rs = Arc::clone(&rs);
            thread::spawn(move || rs.stop())
        };
        canceller.join().unwrap();
        assert_eq!(stopper.join().unwrap(), Ok(()));
        assert_eq!(rs.state(), RunPhase::Cancelled, "a cancel was lost");
    });
}

/// Registration races a transition that runs the callbacks: the
/// transition sees the list before or after, runs the new callback at most
/// once, and nothing leaks (loom checks its `Arc`s at the end).
///
/// A deliberately early free of a replaced list is *not* caught here:
/// reaching it needs the transition preempted between its load of the
/// list and its increment, a race that loom 0.7.3's DPOR hides behind the
/// same thread's neighbouring accesses (see `others_first`). The ordinary
/// stress tests `stress_registration_while_transitions_run_callbacks` and
/// `stress_no_callback_list_is_freed_under_a_transition` exercise that
/// window instead (freeing retired lists unconditionally makes the latter
/// crash, 6 runs out of 6 in a release build, about half in a debug one).
#[test]
fn callbacks_registration_vs_cancel() {
    loom::model(|| {
        let rs = Arc::new(RunState::new("rs"));
        rs.on_end(|_| {}); // a list exists from the start
        let calls = StdArc::new(StdAtomicUsize::new(0));
        let registrar = {
            let (rs, calls) = (Arc::clone(&rs), StdArc::clone(&calls));
            thread::spawn(move || {
                rs.on_cancel(move |_| {
                    calls.fetch_add(1, SeqCst);
                });
            })
        };
        others_first();
        rs.cancel();
        registrar.join().unwrap();
        assert!(calls.load(SeqCst) <= 1);
    });
}

/// Removal races a transition that runs the callbacks: the removed
/// callback runs at most once, and the list is not freed under the
/// transition.
#[test]
fn callbacks_removal_vs_cancel() {
    loom::model(|| {
        let rs = Arc::new(RunState::new("rs"));
        let calls = StdArc::new(StdAtomicUsize::new(0));
        let counter = StdArc::clone(&calls);
        let id = rs.on_cancel(move |_| {
            counter.fetch_add(1, SeqCst);
        });
        let remover = {
            let rs = Arc::clone(&rs);
            thread::spawn(move || assert!(rs.remove_callback(id)))
        };
        others_first();
        rs.cancel();
        remover.join().unwrap();
        assert!(calls.load(SeqCst) <= 1);
        rs.stop().unwrap_err(); // never started: the state still answers
    });
}

// --- the guard ------------------------------------------------------------------

/// A guard ends only its own run: its holder drops it while a supervisor
/// stops the run and starts another. Whatever the interleaving, the
/// supervisor's run is still going at the end (the mutant's guard stops
/// it).
#[test]
fn guard_leaves_a_later_run_alone() {
    loom::model(|| {
        // A std `Arc` (`run_owned` takes one); loom sees the state's atomics.
        let rs = StdArc::new(RunState::new("rs"));
        let guard = rs.run_owned();
        assert!(guard.started());
        let holder = thread::spawn(move || drop(guard));
        // Fails (NotRunning) if the guard already ended the first run.
        let _ = rs.stop();
        rs.start().unwrap();
        holder.join().unwrap();
        assert_eq!(
            rs.state(),
            RunPhase::Running,
            "the guard stopped a run it did not start"
        );
    });
}

/// A scope that panics under `run()`: the guard cancels, then stops, so
/// the state reads `cancelled`, and a sleeper on the state is released.
#[test]
fn guard_cancels_on_panic() {
    quiet_planned_panics();
    // Every interleaving took 70 s of CPU (each of loom's thousands of
    // executions unwinds a panic); three preemptions cover the sleep
    // landing before, during and after the guard's cancel and stop.
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(|| {
        let rs = Arc::new(RunState::new("rs"));
        let worker = {
            let rs = Arc::clone(&rs);
            thread::spawn(move || {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let _run = rs.run();
                    std::panic::panic_any("planned");
                }))
                .is_err()
            })
        };
        // Before the run it sleeps until the cancel; after, it finds the
        // state cancelled. Either way: Err, and never a hang.
        others_first();
        assert!(rs.sleep(HOUR).is_err());
        assert!(worker.join().unwrap());
        assert_eq!(rs.state(), RunPhase::Cancelled);
    });
}

/// A stale guard dropped while its thread unwinds (it would cancel, then
/// stop), racing another thread's stop and restart: it cancels and stops
/// only its own run. Whatever the interleaving, the restarted run goes on,
/// not cancelled. (The guard's run number is checked while it holds the
/// timestamps' claim, so no restart can come between check and cancel.)
#[test]
fn stale_guard_unwinding_vs_restart() {
    quiet_planned_panics();
    loom::model(|| {
        // A std `Arc` (`run_owned` takes one); loom sees the state's atomics.
        let rs = StdArc::new(RunState::new("rs"));
        let guard = rs.run_owned();
        let holder = thread::spawn(move || {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                let _guard = guard;
                std::panic::panic_any("planned");
            }))
            .is_err()
        });
        others_first();
        // Fails (NotRunning) if the guard already ended the first run.
        let _ = rs.stop();
        rs.start().unwrap();
        assert!(holder.join().unwrap());
        assert_eq!(
            rs.state(),
            RunPhase::Running,
            "the stale guard cancelled or stopped a run it did not start"
        );
    });
}

/// A stale guard checks its run while holding the timestamps' claim and,
/// finding another run, gives the claim back: a stop that waited for the
/// claim meanwhile is woken (a lost wake is a loom deadlock) and stops the
/// current run, which the guard leaves alone.
#[test]
fn stale_guard_claim_wakes_a_waiting_stop() {
    loom::model(|| {
        let rs = StdArc::new(RunState::new("rs"));
        let guard = rs.run_owned();
        rs.stop().unwrap();
        rs.start().unwrap(); // the guard is stale now
        let holder = thread::spawn(move || drop(guard));
        others_first();
        rs.stop().unwrap();
        holder.join().unwrap();
        assert_eq!(rs.state(), RunPhase::Stopped);
    });
}

// --- the cancellation tree (issue 13) ------------------------------------------

/// Two tests of one tree model: `$fast` with the child under test in its
/// parent's fast slot (the first child a parent makes goes there), `$slab`
/// with it in the slab (`$model(true)` makes a holder child first, to take
/// the fast slot). The model's docs are on `$model`.
macro_rules! fast_and_slab {
    ($fast:ident, $slab:ident, $model:ident) => {
        #[test]
        fn $fast() {
            $model(false);
        }

        #[test]
        fn $slab() {
            $model(true);
        }
    };
}

fast_and_slab!(
    child_made_while_parent_cancels,
    child_made_while_parent_cancels_slab,
    child_made_while_parent_cancels_in
);

/// A child is made while its parent cancels: whichever comes first, the
/// child ends cancelled, with the parent's reason (the registration and
/// the cancel meet in the parent's word, then in the fast slot's
/// modification order or, in the slab, in the registry lock).
fn child_made_while_parent_cancels_in(slab: bool) {
    loom::model(move || {
        let parent = Arc::new(RunState::new("parent"));
        let _holder = slab.then(|| parent.child("holder"));
        let maker = {
            let parent = Arc::clone(&parent);
            thread::spawn(move || parent.child("child"))
        };
        parent.cancel_with("stop");
        let child = maker.join().unwrap();
        assert!(child.cancelled(), "a child of a cancelled parent");
        assert_eq!(child.reason().as_deref(), Some("stop"));
        assert_eq!(parent.child("late").reason().as_deref(), Some("stop"));
    });
}

/// A child is made while its parent cancels without a reason: linked in
/// the fast slot with one CAS, it meets the cancel in that slot's
/// modification order (the walk's `Release` RMW of the slot, the link's
/// `Acquire` CAS, then its load of the parent's word), without `SeqCst`
/// and without the lock (see `fast_slot.rs`).
#[test]
fn fast_child_made_while_parent_cancels_plainly() {
    loom::model(|| {
        let parent = Arc::new(RunState::new("parent"));
        let maker = {
            let parent = Arc::clone(&parent);
            thread::spawn(move || parent.child("child"))
        };
        parent.cancel();
        let child = maker.join().unwrap();
        assert!(child.cancelled(), "a child of a cancelled parent");
        drop(child);
        assert_eq!(parent.child_count(), 0);
    });
}

fast_and_slab!(
    child_dropped_while_parent_cancels,
    child_dropped_while_parent_cancels_slab,
    child_dropped_while_parent_cancels_in
);

/// A child's last owner drops it while the parent cancels: the cancel
/// may hold the last reference, so the child's drop (its unlink, which
/// takes the registry lock) can run in the cancelling thread; that lock
/// must not be held then (and the walk, which let go of its reference in
/// place, must then take the child's drop out of its lock). The registry
/// ends empty.
fn child_dropped_while_parent_cancels_in(slab: bool) {
    loom::model(move || {
        let parent = Arc::new(RunState::new("parent"));
        let _holder = slab.then(|| parent.child("holder"));
        let child = parent.child("child");
        let dropper = thread::spawn(move || {
            // A load of the word the walk marks: the `Arc`'s counts are
            // std's, invisible to loom, so without an access that depends
            // on the walk's, loom's partial-order reduction never puts
            // the drop between the walk's mark and its release of the
            // reference (where ours becomes the last).
            let _ = child.cancelled();
            drop(child)
        });
        parent.cancel();
        dropper.join().unwrap();
        assert_eq!(parent.child_count(), usize::from(slab));
        assert!(parent.child("late").cancelled());
    });
}

fast_and_slab!(
    parent_dropped_while_its_last_child_drops,
    parent_dropped_while_its_last_child_drops_slab,
    parent_dropped_while_its_last_child_drops_in
);

/// A parent dropped while its last child drops: the registry is freed,
/// once, by whichever goes last (the parent's drop leaves its reference
/// in the registry only while a child is linked, deciding under the
/// registry's lock; the unlink that empties it takes that reference back).
/// A leak or a double free otherwise; the child's link holds no count.
fn parent_dropped_while_its_last_child_drops_in(slab: bool) {
    loom::model(move || {
        let parent = RunState::new("parent");
        let holder = slab.then(|| parent.child("holder"));
        let child = parent.child("child");
        drop(holder);
        let watch = parent.watch_children_registry().expect("made by child()");
        let dropper = thread::spawn(move || drop(child));
        drop(parent);
        dropper.join().unwrap();
        assert!(
            watch.freed(),
            "the registry outlived its owner and its children"
        );
    });
}

/// `wait_stopped` races the stop and a restart: the waiter (asleep, or
/// about to be) must return for the stop even if it wakes to find the
/// state running again (a loom deadlock otherwise).
#[test]
fn wait_stopped_racing_stop_and_restart() {
    loom::model(|| {
        let rs = Arc::new(RunState::new("rs"));
        rs.start().unwrap();
        let waiter = {
            let rs = Arc::clone(&rs);
            thread::spawn(move || rs.wait_stopped())
        };
        until_someone_waits(&rs);
        rs.stop().unwrap();
        rs.start().unwrap();
        waiter.join().unwrap();
        assert!(rs.is_running());
    });
}

/// A deadline fires (the timer, modelled as a thread calling
/// `loom_fire_timers`) while another thread cancels with its own reason:
/// one reason wins, the callbacks run once, and the reason they saw is
/// the one that stays.
#[test]
fn deadline_fire_races_cancel() {
    loom::model(|| {
        let rs = StdArc::new(RunState::new("rs"));
        let seen = StdArc::new(std::sync::Mutex::new(Vec::new()));
        let log = StdArc::clone(&seen);
        rs.on_cancel(move |rs| log.lock().unwrap().push(rs.reason()));
        rs.cancel_at(std::time::Instant::now() + HOUR).unwrap();
        let timer = thread::spawn(multiopen::loom_fire_timers);
        rs.cancel_with("explicit");
        timer.join().unwrap();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1, "callbacks run once");
        assert!(seen[0].is_some());
        assert_eq!(rs.reason(), seen[0], "the first reason stays");
    });
}

/// Run guards on one state hold the run together; the last one out stops
/// it. A guard joins while the only other guard ends: the joiner must end
/// up holding a run (the one it joined, which the other's end then leaves
/// running, or a new one it starts because that run ended first), never
/// nothing with the state stopped under it; once both are gone, the state
/// is stopped.
#[test]
fn guard_joins_while_the_last_other_guard_ends() {
    loom::model(|| {
        // A std `Arc` (`run_owned` takes one); loom sees the state's atomics.
        let rs = StdArc::new(RunState::new("rs"));
        let first = rs.run_owned();
        assert!(first.started());
        let joiner = {
            let rs = StdArc::clone(&rs);
            thread::spawn(move || {
                let run = rs.run();
                assert!(rs.is_running(), "a guard that holds no run");
                drop(run);
            })
        };
        drop(first);
        joiner.join().unwrap();
        assert!(
            rs.stopped(),
            "the last guard out stops it: {:?}",
            rs.state()
        );
    });
}

fast_and_slab!(
    middle_dropped_while_root_cancels,
    middle_dropped_while_root_cancels_slab,
    middle_dropped_while_root_cancels_in
);

/// A middle state is dropped while the root cancels: the grandchild ends
/// cancelled, whether the drop leaves the middle's registry in the root's
/// (an orphan, walked by the cancel) or the cancel's walk finds the middle
/// going (its word marked, no strong reference to be had) and walks its
/// registry itself. Either way the registries end empty.
fn middle_dropped_while_root_cancels_in(slab: bool) {
    loom::model(move || {
        let root = Arc::new(RunState::new("root"));
        let holder = slab.then(|| root.child("holder"));
        let middle = root.child("middle");
        drop(holder);
        let holder = slab.then(|| middle.child("holder"));
        let job = middle.child("job");
        drop(holder);
        let dropper = {
            let root = Arc::clone(&root);
            thread::spawn(move || {
                // A load of the word the cancel sets first: the `Arc`'s
                // counts are std's, invisible to loom, so without an access
                // that depends on the cancel's first, loom's partial-order
                // reduction never runs the whole drop before the cancel.
                let _ = root.cancelled();
                drop(middle)
            })
        };
        root.cancel();
        dropper.join().unwrap();
        assert!(job.cancelled(), "cut off by the dropped middle");
        drop(job);
        assert_eq!(root.child_count(), 0);
    });
}

fast_and_slab!(
    child_made_while_parent_restarts,
    child_made_while_parent_restarts_slab,
    child_made_while_parent_restarts_in
);

/// A child moved out of its `Arc` (so a cancel's walk can no longer
/// upgrade it, and reaches its children through the parent's copy of its
/// registry) makes its first child in one thread while another thread,
/// once the registry is published, links a second; then the parent
/// cancels. The publish and the copy upstream are made under the parent's
/// lock together, so the walk finds the registry and the second child.
#[test]
fn moved_out_childs_registry_published_while_another_thread_links() {
    loom::model(|| {
        let parent = Arc::new(RunState::new("parent"));
        let moved =
            Arc::new(std::sync::Arc::into_inner(parent.child("moved")).expect("the only Arc"));
        let first = {
            let moved = Arc::clone(&moved);
            thread::spawn(move || moved.child("first"))
        };
        let second = {
            let moved = Arc::clone(&moved);
            thread::spawn(move || {
                while moved.watch_children_registry().is_none() {
                    thread::yield_now();
                }
                moved.child("second")
            })
        };
        let second = second.join().unwrap();
        parent.cancel();
        assert!(
            second.cancelled(),
            "a child of a moved-out child missed the cancel"
        );
        drop(first.join().unwrap());
    });
}

/// A child made while its parent, whose cancelled run has stopped, starts
/// again: made before the start, it reads cancelled (as the parent did)
/// only until its own start; made after, it is not cancelled at all. It
/// never inherits the past run's cancel for good.
fn child_made_while_parent_restarts_in(slab: bool) {
    loom::model(move || {
        let parent = Arc::new(RunState::new("parent"));
        parent.start().unwrap();
        parent.cancel_with("why");
        parent.stop().unwrap();
        let starter = {
            let parent = Arc::clone(&parent);
            thread::spawn(move || parent.start().unwrap())
        };
        let _holder = slab.then(|| parent.child("holder"));
        let child = parent.child("child");
        if child.cancelled() {
            assert_eq!(child.reason().as_deref(), Some("why"));
        }
        starter.join().unwrap();
        child.start().unwrap();
        assert!(!child.cancelled(), "a past run's cancel held for ever");
    });
}

fast_and_slab!(
    children_reason_survives_a_restart_mid_cancel,
    children_reason_survives_a_restart_mid_cancel_slab,
    children_reason_survives_a_restart_mid_cancel_in
);

/// A parent's cancel with a reason races a stop and restart of the
/// parent: its child ends cancelled with the cancel's reason, even if the
/// restart emptied the parent's record before the cancel walked its
/// children.
fn children_reason_survives_a_restart_mid_cancel_in(slab: bool) {
    loom::model(move || {
        let parent = Arc::new(RunState::new("parent"));
        parent.start().unwrap();
        let _holder = slab.then(|| parent.child("holder"));
        let child = parent.child("child");
        let restarter = {
            let parent = Arc::clone(&parent);
            thread::spawn(move || {
                parent.stop().unwrap();
                parent.start().unwrap();
            })
        };
        parent.cancel_with("why");
        restarter.join().unwrap();
        assert!(child.cancelled());
        assert_eq!(
            child.reason().as_deref(),
            Some("why"),
            "the reason was lost"
        );
    });
}
