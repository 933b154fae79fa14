//! The deadline runners: a small cached pool of threads named
//! `multiopen-deadline` that run the user code a timer task hands off (the
//! `on_cancel` callbacks of a firing `RunState` deadline), so that the
//! crate's one timer thread never runs code of unbounded length.
//!
//! Crate-internal. One call: [`submit`] a job. Under loom there is no
//! crate-wide pool (the firing model thread runs the callbacks itself), but
//! [`Runners`] itself is built, so the models of `loom-tests/` make pools of
//! their own through [`LoomRunners`] and check the very code that ships.
//!
//! # The promise
//! A job may block, or wait for another deadline, without delaying any
//! other job: every job queued is matched, at once, with a runner that is
//! not running anything, or a new runner is started for it. A burst of quick
//! jobs is served by the runners that are idle (and those that come back
//! idle meanwhile), not by a thread per job.
//!
//! # The pool
//! - **Jobs** wait in one FIFO queue under a short lock (held for a queue
//!   operation and a few counts, never while a job runs).
//! - **Runners** start lazily: [`submit`] starts one when no runner is idle
//!   (none exists at first), up to [`CAP`] (64). At the cap, a job waits in
//!   the queue until a runner finishes its job: 64 callbacks that block for
//!   ever starve the rest, as a thread pool's do.
//! - **Idle runners** sleep on a futex word (a sequence number). Each job
//!   that finds one idle takes it off the idle count and leaves a *signal*
//!   under the lock (idle + signals = the runners that sleep or are about
//!   to); a runner that wakes takes a signal if there is one (all idle
//!   runners are alike, so whichever wakes serves), else sleeps again. A
//!   runner reads the sequence under the lock before it sleeps and
//!   `submit` bumps it under the lock before it wakes one; the futex
//!   compares the word atomically with the sleep, so no wake-up is lost
//!   between "a runner decides to sleep" and "a job is queued".
//! - **Bursts**: a job that finds no runner idle while some run a job
//!   first yields the processor once (`sched_yield`), then looks again:
//!   a runner finishing a quick job meanwhile comes back idle and takes
//!   it, so a burst of quick jobs does not start a thread per job. It
//!   costs the submitting thread (the timer thread) one yield, and only
//!   then. 200 deadlines with quick callbacks due at once ran on a
//!   median of 4 runners (1 to 7, once 35, in 45 runs; without the yield
//!   a median of 9, up to 58; 2 loaded cores). A count, not a bound: a
//!   submitter that outpaces the runners still starts up to [`CAP`].
//! - **Idle time**: a runner idle for [`IDLE_TIMEOUT`] (5 s) exits if
//!   another runner is idle too; the last idle runner stays, asleep with
//!   no timeout (one parked thread, costing nothing), so a process that
//!   once had a burst keeps one runner, not 64, and the next firing does
//!   not pay a thread spawn. 5 s: long enough that a program whose
//!   deadlines fire every second or so keeps its runners, short enough that
//!   a burst's threads are gone soon after.
//! - **Panics**: a job runs under `unwind::catch` (the panic hook has
//!   reported the panic; the payload is disposed of by
//!   `unwind::drop_payload`); the runner lives on.
//! - **A refused thread**: if the OS refuses a runner and none exists, the
//!   jobs queued run on the calling thread (the timer thread: late, never
//!   lost); if runners exist, the job waits for one of them, as at the cap.
//!
//! # Fork
//! `fork()` copies the queue and the counts but not the runners. The first
//! [`submit`] in the child (it compares the process id, as the timer does)
//! forgets the parent's runners and starts one of its own, which serves
//! the queue, the inherited jobs included; a job a runner was running at
//! the fork is not run in the child. If another thread held the pool's lock
//! at the fork, the child's first `submit` waits forever, as for any
//! `std::sync::Mutex` held across a fork.

use std::collections::VecDeque;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

#[cfg(loom)]
use crate::sync::JoinHandle;
use crate::sync::{mutant, yield_now, Futex, Mutex, MutexGuard, Ordering, ThreadBuilder};
use crate::unwind;

/// A job for a runner: runs once, on a runner thread (or, if none can be
/// had, on the thread that submits it).
pub(crate) type Job = Box<dyn FnOnce() + Send + 'static>;

/// The runners' name, as `std::thread::current().name()` reports it.
pub(crate) const NAME: &str = "multiopen-deadline";

/// The most runners alive at once; beyond, jobs queue.
#[cfg(not(loom))]
pub(crate) const CAP: usize = 64;

/// How long a runner stays idle before it exits (unless it is the last
/// idle one).
#[cfg(not(loom))]
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// The crate's one pool: the deadline runners. (Normal builds only: loom's
/// `Mutex::new` is not `const`.)
#[cfg(not(loom))]
static DEADLINE_RUNNERS: Runners = Runners::new(NAME, CAP, IDLE_TIMEOUT);

/// Runs `job` on a deadline runner (see the module doc): hands it to an
/// idle runner, or starts one, or (at the cap) queues it. Never waits
/// beyond the pool's lock and, when a runner must be started, a thread
/// spawn (some tens of microseconds). Runs it here only if the OS refuses a
/// thread and no runner exists.
#[cfg(not(loom))]
pub(crate) fn submit(job: Job) {
    DEADLINE_RUNNERS.submit(job);
}

/// A pool of runner threads (one static in the product; tests make their
/// own, with a small cap and a short idle time, and so do the loom models,
/// through [`LoomRunners`]).
pub(crate) struct Runners {
    state: Mutex<State>,
    /// The idle runners' wake word: a sequence number, bumped under the
    /// lock by each `submit` that signals an idle runner; runners sleep on
    /// the value they read under the lock (it wraps, harmlessly: a runner
    /// compares it only with the value it sleeps on).
    wake: Futex,
    name: &'static str,
    cap: usize,
    idle_timeout: Duration,
    /// Tests only: act as if the OS refused every thread.
    #[cfg(test)]
    refuse_threads: bool,
}

/// What the lock guards.
struct State {
    /// Jobs not taken yet, oldest first.
    jobs: VecDeque<Job>,
    /// Runner threads alive (or being started) in this process.
    runners: usize,
    /// Runners asleep (or about to sleep) on `wake` that no job has
    /// signalled.
    idle: usize,
    /// Signals left by `submit` for idle runners and not taken yet: each
    /// means "one sleeping runner, any, is to wake and look at the queue".
    signals: usize,
    /// The process whose runners these counts describe (`None`: none yet);
    /// after a fork the child's id differs: see the module doc.
    pid: Option<u32>,
    /// Loom only: [`LoomRunners::shutdown`] asked the idle runners to exit
    /// (a model ends only once every thread has).
    #[cfg(loom)]
    shutdown: bool,
    /// Loom only: the runners started, for `shutdown` to join.
    #[cfg(loom)]
    threads: Vec<JoinHandle<()>>,
}

impl State {
    const fn new() -> Self {
        Self {
            jobs: VecDeque::new(),
            runners: 0,
            idle: 0,
            signals: 0,
            pid: None,
            #[cfg(loom)]
            shutdown: false,
            #[cfg(loom)]
            threads: Vec::new(),
        }
    }
}

impl Runners {
    #[cfg(not(loom))]
    const fn new(name: &'static str, cap: usize, idle_timeout: Duration) -> Self {
        Self::assemble(
            Mutex::new(State::new()),
            Futex::new(0),
            name,
            cap,
            idle_timeout,
        )
    }

    /// Under loom: not `const` (loom's `Mutex::new` and `Futex::new` are not).
    #[cfg(loom)]
    fn new(name: &'static str, cap: usize, idle_timeout: Duration) -> Self {
        Self::assemble(
            Mutex::new(State::new()),
            Futex::new(0),
            name,
            cap,
            idle_timeout,
        )
    }

    const fn assemble(
        state: Mutex<State>,
        wake: Futex,
        name: &'static str,
        cap: usize,
        idle_timeout: Duration,
    ) -> Self {
        Self {
            state,
            wake,
            name,
            cap,
            idle_timeout,
            #[cfg(test)]
            refuse_threads: false,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Poisoned only by a panic inside a queue operation or a count (no
        // job runs under the lock): the state is consistent, go on.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// See [`submit`].
    fn submit(&'static self, job: Job) {
        let pid = std::process::id();
        {
            let mut state = self.lock();
            if state.pid != Some(pid) {
                // First use in this process, or in this child of a fork:
                // the parent's runners do not exist here.
                state.pid = Some(pid);
                state.runners = 0;
                state.idle = 0;
                state.signals = 0;
            }
            if state.idle == 0 && state.runners > 0 {
                // None idle, but some run a job, most likely a quick one
                // about to end: let them have the processor once, so one
                // can come back idle and take this job, before starting a
                // thread (see "Bursts" in the module doc).
                drop(state);
                yield_now();
                state = self.lock();
            }
            state.jobs.push_back(job);
            if state.idle > 0 {
                state.idle -= 1;
                state.signals += 1;
                // Relaxed: every write of the word is under the lock, which
                // orders them; the futex compares it atomically with a
                // runner's sleep, which is all a wake needs. The job itself
                // is published by the lock. (One RMW, not a load and a
                // store: as cheap under the lock, and loom's search then
                // sees it race a runner's read of the word; it wraps.)
                if !mutant("runner::submit_no_bump") {
                    self.wake.fetch_add(1, Ordering::Relaxed);
                }
                drop(state);
                self.wake.wake_one();
                return;
            }
            if state.runners >= self.cap {
                return; // at the cap: the first runner to finish takes it
            }
            state.runners += 1; // the new runner's place, taken now
        }
        if self.start_runner() {
            return;
        }
        let orphans = {
            let mut state = self.lock();
            state.runners -= 1;
            if state.runners > 0 {
                return; // a runner takes it when it finishes its job
            }
            std::mem::take(&mut state.jobs)
        };
        // No runner at all: run them here, late but not lost.
        orphans.into_iter().for_each(run);
    }

    /// Starts a runner thread: `false` if the OS refused it.
    fn start_runner(&'static self) -> bool {
        #[cfg(test)]
        if self.refuse_threads {
            return false;
        }
        let spawned = ThreadBuilder::new()
            .name(self.name.to_owned())
            .spawn(move || self.serve());
        // Under loom: kept for `LoomRunners::shutdown` to join.
        #[cfg(loom)]
        let spawned = spawned.map(|thread| self.lock().threads.push(thread));
        spawned.is_ok()
    }

    /// A runner: takes jobs while there are any, then sleeps as idle until
    /// signalled (or exits after the idle time if another runner is idle).
    fn serve(&'static self) {
        let mut state = self.lock();
        loop {
            if let Some(job) = state.jobs.pop_front() {
                drop(state);
                run(job);
                state = self.lock();
                continue;
            }
            state.idle += 1;
            let mut until = Instant::now().checked_add(self.idle_timeout);
            loop {
                // Loom only: `LoomRunners::shutdown` ends the idle runners
                // (this one is counted idle here, and the queue is empty).
                #[cfg(loom)]
                if state.shutdown && state.jobs.is_empty() {
                    state.idle -= 1;
                    state.runners -= 1;
                    return;
                }
                // Relaxed: read under the lock, as `submit` writes it.
                let read_late = mutant("runner::word_read_unlocked");
                let word = (!read_late).then(|| self.wake.load(Ordering::Relaxed));
                drop(state);
                let word = word.unwrap_or_else(|| self.wake.load(Ordering::Relaxed));
                // Returns at once if a `submit` bumped the word since the
                // read; `false` only once `until` has come. (Under loom it
                // times out at once when `until` is set, so the models
                // explore the time-out at every point of every
                // interleaving.)
                let woken = self.wake.wait_deadline(word, until);
                state = self.lock();
                if !woken && mutant("runner::timeout_before_signal") {
                    // The bug: the time-out handled first, a signal left
                    // for this runner unseen.
                    if state.idle > 1 {
                        state.idle -= 1;
                        state.runners -= 1;
                        return;
                    }
                    until = None;
                    continue;
                }
                if mutant("runner::job_before_signal") && !state.jobs.is_empty() {
                    // The bug: a signalled runner leaves the idle count.
                    state.idle -= 1;
                    break;
                }
                if state.signals > 0 {
                    state.signals -= 1; // `submit` took us off `idle`
                    break;
                }
                if !state.jobs.is_empty() {
                    // Not expected (a job queued while a runner is idle
                    // leaves a signal), but a job waiting is served, never
                    // slept on: leave the idle count and take it.
                    state.idle -= 1;
                    break;
                }
                if !woken {
                    if state.idle > 1 || mutant("runner::last_idle_exits") {
                        // Another runner is idle: this one goes.
                        if !mutant("runner::exit_keeps_idle") {
                            state.idle -= 1;
                        }
                        state.runners -= 1;
                        return;
                    }
                    until = None; // the last idle runner stays
                }
                // Otherwise a spurious wake-up: still idle, sleep again.
            }
        }
    }
}

/// Runs one job: a panic is caught (the panic hook has reported it) and
/// its payload disposed of, so the caller goes on.
fn run(job: Job) {
    let _ = unwind::catch(job);
}

/// Under loom only, for the models of `loom-tests/deadline_runners.rs`: a
/// pool of runners of its own (leaked: spawning needs `&'static`), with
/// its counts and a `shutdown` that ends its runners, so a model ends.
#[cfg(loom)]
#[doc(hidden)]
#[derive(Clone, Copy)]
pub struct LoomRunners(&'static Runners);

/// A [`LoomRunners`] pool's counts, read under its lock.
#[cfg(loom)]
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoomRunnerCounts {
    /// Runner threads alive (or being started).
    pub runners: usize,
    /// Runners asleep (or about to sleep) that no job has signalled.
    pub idle: usize,
    /// Signals left for idle runners and not taken yet.
    pub signals: usize,
    /// Jobs queued, not taken yet.
    pub jobs: usize,
}

#[cfg(loom)]
impl LoomRunners {
    /// A pool of at most `cap` runners that time out after `idle_timeout`
    /// (under loom: at their first sleep, unless `idle_timeout` is too long
    /// for an `Instant`, such as `Duration::MAX`: then never).
    pub fn new(cap: usize, idle_timeout: Duration) -> Self {
        Self(Box::leak(Box::new(Runners::new(NAME, cap, idle_timeout))))
    }

    /// Runs `job` on a runner: the product's `submit`.
    pub fn submit(&self, job: Box<dyn FnOnce() + Send + 'static>) {
        self.0.submit(job);
    }

    /// The counts now.
    pub fn counts(&self) -> LoomRunnerCounts {
        let state = self.0.lock();
        LoomRunnerCounts {
            runners: state.runners,
            idle: state.idle,
            signals: state.signals,
            jobs: state.jobs.len(),
        }
    }

    /// Ends every runner once the queue is empty (runners finish their jobs
    /// first) and joins them: returns how many runners were ever started.
    /// Call it after every `submit` has returned.
    pub fn shutdown(&self) -> usize {
        let threads = {
            let mut state = self.0.lock();
            state.shutdown = true;
            // Relaxed: as `submit`'s bump, under the lock.
            self.0.wake.fetch_add(1, Ordering::Relaxed);
            std::mem::take(&mut state.threads)
        };
        self.0.wake.wake_all();
        let started = threads.len();
        for thread in threads {
            thread.join().expect("a runner panicked");
        }
        started
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::{mpsc, Arc, Barrier};
    use std::thread::{self, ThreadId};
    use std::time::{Duration, Instant};

    use super::{Job, Runners};

    /// Generous: a loaded machine may run a runner late; a job that has not
    /// run by then never will. A deadlock detector, not a timing bound.
    const PATIENCE: Duration = Duration::from_secs(20);

    /// A pool of its own, for one test.
    fn pool(cap: usize, idle_timeout: Duration, refuse_threads: bool) -> &'static Runners {
        let mut runners = Runners::new("test-runner", cap, idle_timeout);
        runners.refuse_threads = refuse_threads;
        Box::leak(Box::new(runners))
    }

    fn job(f: impl FnOnce() + Send + 'static) -> Job {
        Box::new(f)
    }

    /// A job that says it started, then blocks until released.
    fn blocking(entered: &mpsc::Sender<ThreadId>) -> (Job, mpsc::Sender<()>) {
        let (release, held) = mpsc::channel::<()>();
        let entered = entered.clone();
        let job = job(move || {
            entered.send(thread::current().id()).unwrap();
            let _ = held.recv();
        });
        (job, release)
    }

    fn runners(pool: &Runners) -> usize {
        pool.lock().runners
    }

    /// Quick jobs in a burst: each runs once, on far fewer threads than
    /// jobs (runners come back idle between submits).
    #[test]
    fn a_burst_of_quick_jobs_shares_few_runners() {
        let jobs = if cfg!(miri) { 20 } else { 1000 };
        let pool = pool(64, Duration::from_secs(5), false);
        let (tx, rx) = mpsc::channel();
        for i in 0..jobs {
            let tx = tx.clone();
            pool.submit(job(move || {
                let me = thread::current();
                tx.send((i, me.id(), me.name().map(str::to_owned))).unwrap();
            }));
        }
        let mut seen = vec![false; jobs];
        let mut threads = HashSet::new();
        for _ in 0..jobs {
            let (i, id, name) = rx.recv_timeout(PATIENCE).expect("every job runs");
            assert!(!std::mem::replace(&mut seen[i], true), "job {i} ran twice");
            assert_eq!(name.as_deref(), Some("test-runner"));
            threads.insert(id);
        }
        assert!(threads.len() <= 64, "{} runners", threads.len());
        assert!(runners(pool) <= 64);
    }

    /// A job that blocks does not delay the next: that one gets a runner
    /// of its own and runs while the first still blocks.
    #[test]
    fn a_blocked_job_does_not_delay_the_next() {
        let pool = pool(64, Duration::from_secs(5), false);
        let (entered, is_entered) = mpsc::channel();
        let (first, release) = blocking(&entered);
        pool.submit(first);
        let blocked_on = is_entered.recv_timeout(PATIENCE).unwrap();
        let (tx, rx) = mpsc::channel();
        pool.submit(job(move || tx.send(thread::current().id()).unwrap()));
        let ran_on = rx.recv_timeout(PATIENCE).expect("the second job ran");
        assert_ne!(ran_on, blocked_on);
        release.send(()).unwrap();
    }

    /// At the cap, a job waits in the queue until a runner is free, then
    /// runs.
    #[test]
    fn at_the_cap_a_job_waits_for_a_free_runner() {
        let pool = pool(2, Duration::from_secs(5), false);
        let (entered, is_entered) = mpsc::channel();
        let (a, release_a) = blocking(&entered);
        let (b, release_b) = blocking(&entered);
        pool.submit(a);
        pool.submit(b);
        let first = is_entered.recv_timeout(PATIENCE).unwrap();
        let second = is_entered.recv_timeout(PATIENCE).unwrap();
        assert_ne!(first, second);
        let (tx, rx) = mpsc::channel();
        pool.submit(job(move || tx.send(thread::current().id()).unwrap()));
        {
            let state = pool.lock();
            assert_eq!(
                (state.runners, state.jobs.len()),
                (2, 1),
                "queued at the cap"
            );
        }
        release_a.send(()).unwrap();
        let ran_on = rx.recv_timeout(PATIENCE).expect("the queued job ran");
        assert!(ran_on == first || ran_on == second);
        assert_eq!(runners(pool), 2);
        release_b.send(()).unwrap();
    }

    /// Idle runners beyond one exit after the idle time; the last stays and
    /// serves the next job.
    #[test]
    fn idle_runners_beyond_one_exit() {
        let pool = pool(8, Duration::from_millis(10), false);
        let (entered, is_entered) = mpsc::channel();
        let releases: Vec<_> = (0..3)
            .map(|_| {
                let (job, release) = blocking(&entered);
                pool.submit(job);
                release
            })
            .collect();
        for _ in 0..3 {
            is_entered.recv_timeout(PATIENCE).unwrap();
        }
        assert_eq!(runners(pool), 3);
        drop(releases);
        let start = Instant::now();
        // Until one runner is left, and idle (not still returning from
        // its job: a submit would then start another).
        let counts = |pool: &Runners| {
            let state = pool.lock();
            (state.runners, state.idle)
        };
        while counts(pool) != (1, 1) {
            assert!(start.elapsed() < PATIENCE, "idle runners never exited");
            thread::sleep(Duration::from_millis(5));
        }
        // The last one stays (idle, untimed) and serves the next job.
        let (tx, rx) = mpsc::channel();
        pool.submit(job(move || tx.send(()).unwrap()));
        rx.recv_timeout(PATIENCE).expect("the last runner served");
        assert_eq!(runners(pool), 1);
    }

    /// A panicking job is caught; its runner lives on and runs the next.
    #[test]
    fn a_panicking_job_leaves_its_runner_serving() {
        let pool = pool(1, Duration::from_secs(5), false);
        let (tx, rx) = mpsc::channel();
        let tx2 = tx.clone();
        pool.submit(job(move || {
            tx2.send(thread::current().id()).unwrap();
            panic!("a job panicked (on purpose)");
        }));
        pool.submit(job(move || tx.send(thread::current().id()).unwrap()));
        let panicked_on = rx.recv_timeout(PATIENCE).unwrap();
        let next_on = rx.recv_timeout(PATIENCE).expect("the runner lived on");
        assert_eq!(panicked_on, next_on);
        assert_eq!(runners(pool), 1);
    }

    /// No thread to be had and no runner: the job runs on the caller.
    #[test]
    fn a_refused_thread_runs_the_job_on_the_caller() {
        let pool = pool(64, Duration::from_secs(5), true);
        let (tx, rx) = mpsc::channel();
        pool.submit(job(move || tx.send(thread::current().id()).unwrap()));
        assert_eq!(rx.try_recv(), Ok(thread::current().id()));
        assert_eq!(runners(pool), 0);
    }

    /// Several threads submit while runners time out and exit (an idle
    /// time of a millisecond) and come back: every job runs once (a lost
    /// wake-up would leave one queued for ever).
    #[test]
    fn no_job_is_lost_while_runners_come_and_go() {
        let (threads, each) = if cfg!(miri) { (2, 10) } else { (4, 500) };
        let pool = pool(64, Duration::from_millis(1), false);
        let ran = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel();
        let start = Arc::new(Barrier::new(threads));
        thread::scope(|s| {
            for t in 0..threads {
                let (ran, tx, start) = (Arc::clone(&ran), tx.clone(), Arc::clone(&start));
                s.spawn(move || {
                    start.wait();
                    for i in 0..each {
                        let (ran, tx) = (Arc::clone(&ran), tx.clone());
                        pool.submit(job(move || {
                            ran.fetch_add(1, SeqCst);
                            tx.send(()).unwrap();
                        }));
                        if (t + i) % 50 == 0 {
                            // Let runners go idle, time out, exit.
                            thread::sleep(Duration::from_millis(2));
                        }
                    }
                });
            }
        });
        for _ in 0..threads * each {
            rx.recv_timeout(PATIENCE).expect("every job runs");
        }
        assert_eq!(ran.load(SeqCst), threads * each);
        assert!(runners(pool) >= 1);
    }
}
