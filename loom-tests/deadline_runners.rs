//! loom models of the deadline runners (`src/timer/runner.rs`): the small
//! cached pool that runs firing deadlines' callbacks. Each model makes a
//! pool of its own (`multiopen::LoomRunners`, hidden, loom only), submits
//! jobs, waits for them to run (a job never run is a loom deadlock: the
//! model thread waits for it while the runners sleep), then shuts the pool
//! down (its runners exit once the queue is empty, and are joined: a model
//! ends only when every thread has) and checks the counts.
//!
//! loom has no clock: a runner with an idle time-out times out at its first
//! sleep (then, as the last idle runner, sleeps with none), so a model with
//! a time-out explores it at every point; `Duration::MAX` means none.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release --test loom_deadline_runners`.
#![cfg(loom)]

use std::time::Duration;

use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;
use multiopen::{LoomRunnerCounts, LoomRunners};

/// How many times each job ran, and a condvar to wait for them.
struct Ran {
    counts: Mutex<Vec<usize>>,
    changed: Condvar,
}

impl Ran {
    fn new(jobs: usize) -> Arc<Self> {
        Arc::new(Self {
            counts: Mutex::new(vec![0; jobs]),
            changed: Condvar::new(),
        })
    }

    /// A job that records that job `i` ran.
    fn job(this: &Arc<Self>, i: usize) -> Box<dyn FnOnce() + Send + 'static> {
        let ran = Arc::clone(this);
        Box::new(move || {
            ran.counts.lock().unwrap()[i] += 1;
            ran.changed.notify_all();
        })
    }

    /// Waits until job `i` has run (for ever if it never does: a deadlock
    /// loom reports).
    fn wait_for(&self, i: usize) {
        let mut counts = self.counts.lock().unwrap();
        while counts[i] == 0 {
            counts = self.changed.wait(counts).unwrap();
        }
    }

    /// Each job ran exactly once.
    fn assert_each_once(&self) {
        let counts = self.counts.lock().unwrap();
        assert!(counts.iter().all(|&n| n == 1), "runs per job: {counts:?}");
    }
}

/// A model bounded to `preemptions` preemptions.
fn model(preemptions: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(preemptions);
    builder.check(f);
}

/// After `shutdown`: no runner, no idle count, no signal, no job left
/// (each runner that exits takes itself off `idle`, so a count that drifted
/// shows here).
fn assert_all_gone(pool: &LoomRunners) {
    let none = LoomRunnerCounts {
        runners: 0,
        idle: 0,
        signals: 0,
        jobs: 0,
    };
    assert_eq!(pool.counts(), none);
}

/// A job submitted while the only runner goes idle after its first job
/// (anywhere between "no job in the queue" and its futex sleep) is run:
/// the runner reads the wake word under the lock and `submit` bumps it
/// under the lock, so the futex sees the change. No idle time-out, cap 1.
#[test]
fn a_job_submitted_as_the_runner_goes_idle_runs() {
    model(3, || {
        let pool = LoomRunners::new(1, Duration::MAX);
        let ran = Ran::new(2);
        pool.submit(Ran::job(&ran, 0));
        ran.wait_for(0);
        // The runner is between its first job and its sleep, or asleep.
        pool.submit(Ran::job(&ran, 1));
        ran.wait_for(1);
        let at_rest = pool.counts();
        assert_eq!(at_rest.runners, 1, "{at_rest:?}");
        assert_eq!(pool.shutdown(), 1, "one runner started");
        ran.assert_each_once();
        assert_all_gone(&pool);
    });
}

/// Two jobs from two threads, one runner idle (or going idle) and a cap
/// of 2: each job runs exactly once, at most two runners are started, and
/// once both jobs have run and the runners are shut down every count is
/// back to zero (no signal left over, no idle count drifted).
#[test]
fn two_submitters_share_an_idle_runner_and_the_cap() {
    model(2, || {
        let pool = LoomRunners::new(2, Duration::MAX);
        let ran = Ran::new(3);
        pool.submit(Ran::job(&ran, 0));
        ran.wait_for(0);
        let submitters: Vec<_> = (1..3)
            .map(|i| {
                let job = Ran::job(&ran, i);
                thread::spawn(move || pool.submit(job))
            })
            .collect();
        for submitter in submitters {
            submitter.join().unwrap();
        }
        ran.wait_for(1);
        ran.wait_for(2);
        let counts = pool.counts();
        assert!((1..=2).contains(&counts.runners), "{counts:?}");
        assert!(counts.idle + counts.signals <= counts.runners, "{counts:?}");
        let started = pool.shutdown();
        assert!((1..=2).contains(&started), "{started} runners started");
        ran.assert_each_once();
        assert_all_gone(&pool);
    });
}

/// The only runner's idle time-out races a submit (under loom the runner
/// times out at its first sleep, at every point of the submit): the job
/// still runs, and the runner, the last idle one, stays (the pool never
/// drops to no runner once it has one).
#[test]
fn an_idle_time_out_racing_a_submit_loses_no_job() {
    model(3, || {
        let pool = LoomRunners::new(1, Duration::from_secs(5));
        let ran = Ran::new(2);
        pool.submit(Ran::job(&ran, 0));
        ran.wait_for(0);
        assert_eq!(pool.counts().runners, 1, "the last idle runner stays");
        pool.submit(Ran::job(&ran, 1));
        ran.wait_for(1);
        assert_eq!(pool.counts().runners, 1, "the last idle runner stays");
        assert_eq!(pool.shutdown(), 1, "one runner started");
        ran.assert_each_once();
        assert_all_gone(&pool);
    });
}

/// Two runners go idle at once (cap 2: the first blocks in its job while
/// the second is started for the next) and time out (at their first
/// sleep), racing each other and a third job: the job runs, at most one
/// of them exits (only while the other is idle too), the pool never has no
/// runner, and no third runner is started.
#[test]
fn two_idle_runners_time_out_while_a_job_arrives() {
    model(3, || {
        let pool = LoomRunners::new(2, Duration::from_secs(5));
        let ran = Ran::new(3);
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let first = {
            let (gate, ran) = (Arc::clone(&gate), Arc::clone(&ran));
            Box::new(move || {
                let (open, opened) = &*gate;
                let mut open = open.lock().unwrap();
                while !*open {
                    open = opened.wait(open).unwrap();
                }
                drop(open);
                Ran::job(&ran, 0)();
            })
        };
        pool.submit(first);
        pool.submit(Ran::job(&ran, 1)); // the first runner is busy: a second
        ran.wait_for(1);
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        ran.wait_for(0);
        // Both runners go idle and time out, racing this submit.
        pool.submit(Ran::job(&ran, 2));
        ran.wait_for(2);
        let counts = pool.counts();
        assert!((1..=2).contains(&counts.runners), "{counts:?}");
        assert_eq!(pool.shutdown(), 2, "two runners started");
        ran.assert_each_once();
        assert_all_gone(&pool);
    });
}
