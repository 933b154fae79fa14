//! The crate's one timer thread: runs a task at a point in time with nobody
//! calling (a lingering `MultiOpen`'s shutdown; later a `RunState`
//! deadline, a `Pool`'s idle reaping).
//!
//! Crate-internal. Two calls: [`schedule`] a task for an [`Instant`], and
//! [`cancel`] it by the [`TimerKey`] that `schedule` returned. Every
//! behaviour of the crate that must happen at a time goes through here, so
//! a program that uses several has one extra thread, not one per object.
//!
//! # The thread
//! - **Starts** lazily, at the first [`schedule`] in the process, as one
//!   thread named `multiopen-timer`. A program that never schedules (no
//!   linger, no deadline, no reaping) never has it.
//! - **Never exits** once started: it sleeps, costing nothing, while no
//!   task is due (an idle timer thread is one parked thread). It is not
//!   joined at process exit; tasks still pending then do not run.
//! - **Sleeps** on a futex word (a sequence number) with the `sync` shim's
//!   timed wait ([`Futex::wait_until`](crate::sync::Futex::wait_until)), until the earliest deadline; no
//!   polling. A `schedule` whose deadline becomes the earliest bumps the
//!   sequence and wakes it (only if it sleeps); the thread reads the
//!   sequence under the registry lock before it sleeps, and the futex
//!   compares it atomically with the sleep, so a wake-up is never lost.
//! - **Runs due tasks** in deadline order (equal deadlines in the order
//!   scheduled), one after another, outside the registry lock, each under
//!   `unwind::catch`: a panicking task is dropped (the panic hook has
//!   already reported it; its payload goes through `unwind::drop_payload`,
//!   so a payload whose `Drop` panics too is leaked, not re-raised) and the
//!   thread lives on. A task may `schedule` or `cancel` (even itself: too
//!   late, `false`).
//! - **Runs user code**: tasks call the crate's objects (a lingering
//!   `MultiOpen`'s shutdown), so a slow task delays every task due after
//!   it. A task whose user code is of unbounded length hands it to the
//!   deadline runners ([`runner`]: a `RunState` deadline's `on_cancel`
//!   callbacks), a small cached pool of threads, and returns. Tasks hold `Weak` references to
//!   the objects they act on: a pending timer never keeps an object alive,
//!   and a task whose object is gone does nothing.
//!
//! Costs: [`schedule`] and [`cancel`] take a short lock on the registry (a
//! `BTreeMap` insert or remove) and, when the new deadline is the earliest
//! and the thread sleeps, one futex wake; `schedule` also reads the process
//! id (one system call). They are slow-path operations: no primitive's hot
//! path schedules or cancels.
//!
//! # Fork
//! `fork()` copies the registry (the pending tasks) but not the thread. In
//! the child, pending tasks do not run until something schedules: the
//! first `schedule` in the child (it compares the process id) starts a new
//! timer thread there, which then serves every pending task, the inherited
//! ones included (they act on the child's copies of the objects, as they
//! would have in the parent). If another thread held the registry lock at
//! the fork, the child's first `schedule` or `cancel` waits forever, as for
//! any `std::sync::Mutex` held across a fork.
//!
//! # Under loom
//! There is no thread and no clock. Scheduled tasks wait in a loom-visible
//! registry until a model thread calls `fire_timers()` (re-exported as
//! `multiopen::loom_fire_timers`, hidden), which runs every pending task,
//! whatever its deadline, on the calling model thread: a model races "the
//! timer fires" against its other threads by calling it from one of them.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::unwind;

// The deadline runners: where timer tasks hand off user code of unbounded
// length (src/timer/runner.rs). Under loom, only for the models' own pools
// (`LoomRunners`): the firing model thread runs the callbacks itself.
pub(crate) mod runner;

/// A task for the timer thread. It runs at most once, on that thread (under
/// loom: on the thread that fires the timers).
pub(crate) type Task = Box<dyn FnOnce() + Send + 'static>;

/// Names one scheduled task, for [`cancel`]. Ordered by deadline, then by
/// the order of scheduling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct TimerKey {
    at: Instant,
    /// Unique per process (per model execution under loom).
    id: u64,
}

impl TimerKey {
    /// When the task is due.
    #[allow(dead_code)] // For the timer's users to come (RunState, Pool).
    pub(crate) fn at(&self) -> Instant {
        self.at
    }
}

/// The registry: every pending task by its key.
struct Entries {
    tasks: BTreeMap<TimerKey, Task>,
    next_id: u64,
    /// The process whose timer thread serves these entries (`None`: no
    /// thread yet). After a fork, the child's id differs: see the module
    /// doc.
    #[cfg(not(loom))]
    served_in: Option<u32>,
}

impl Entries {
    const fn new() -> Self {
        Self {
            tasks: BTreeMap::new(),
            next_id: 0,
            #[cfg(not(loom))]
            served_in: None,
        }
    }

    /// Adds `task` at `at`: its key, and whether it is now the earliest.
    fn insert(&mut self, at: Instant, task: Task) -> (TimerKey, bool) {
        let key = TimerKey {
            at,
            id: self.next_id,
        };
        self.next_id += 1;
        let earliest = self
            .tasks
            .first_key_value()
            .is_none_or(|(first, _)| key < *first);
        self.tasks.insert(key, task);
        (key, earliest)
    }

    /// Moves every task due at `now` (all of them if `None`), earliest
    /// first, into `due`.
    fn take_due(&mut self, now: Option<Instant>, due: &mut Vec<Task>) {
        while let Some(entry) = self.tasks.first_entry() {
            if now.is_some_and(|now| entry.key().at > now) {
                break;
            }
            due.push(entry.remove());
        }
    }
}

/// Has `at` come? A task that re-arms itself when it fires early (a
/// deadline moved on meanwhile) asks this. Under loom, always: there is no
/// clock, and a model fires timers to mean "the time has come".
pub(crate) fn is_due(at: Instant) -> bool {
    cfg!(loom) || Instant::now() >= at
}

/// Runs one due task: a panic is caught and its payload disposed of (see
/// the module doc), so the caller goes on with the next.
fn run_task(task: Task) {
    // The panic hook has reported the panic; the message is not needed.
    let _ = unwind::catch(task);
}

/// Drops a task that will never run, outside any lock: what it captures is
/// dropped here, and a panic from that `Drop` is caught and disposed of.
fn discard(task: Task) {
    let _ = unwind::catch(move || drop(task));
}

#[cfg(not(loom))]
pub(crate) use thread::{cancel, schedule};

/// The timer thread and the registry it serves (normal builds).
#[cfg(not(loom))]
mod thread {
    use std::sync::{Mutex, MutexGuard, PoisonError};
    use std::time::Instant;

    use super::{discard, run_task, Entries, Task, TimerKey};
    use crate::sync::{Futex, Ordering};

    /// The registry. Held only for a map operation (and, once, to start the
    /// thread): never while a task runs.
    static ENTRIES: Mutex<Entries> = Mutex::new(Entries::new());

    /// The timer thread's wake word:
    ///
    ///   bits 31 .. 1: SEQUENCE, bumped when a task becomes the earliest
    ///   bit 0:        SLEEPING, the thread sleeps (or is about to) on it
    ///
    /// Written only under the `ENTRIES` lock, by the thread (setting
    /// SLEEPING before it sleeps) and by `schedule` (bumping SEQUENCE and
    /// clearing SLEEPING); read by the futex wait outside the lock.
    static WAKE: Futex = Futex::new(0);
    /// The thread sleeps on [`WAKE`], or is about to.
    const SLEEPING: u32 = 1;
    /// One step of the sequence (bit 1 up; it wraps, harmlessly: the thread
    /// compares it only with the value it sleeps on).
    const STEP: u32 = 2;

    /// The thread's name, as `std::thread::current().name()` reports it.
    pub(super) const NAME: &str = "multiopen-timer";

    fn lock() -> MutexGuard<'static, Entries> {
        // Poisoned only by a panic inside a map operation (no user code
        // runs under the lock): the map is still consistent, go on.
        ENTRIES.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `task` on the timer thread once `at` has come (at once if it
    /// has passed), unless [`cancel`]led first; starts the thread if this
    /// process has none yet. Never blocks beyond the registry lock.
    ///
    /// `Err(task)`: no timer thread could be started (the OS refused a
    /// thread); the task is handed back, unscheduled, for the caller to
    /// run now or give up on.
    pub(crate) fn schedule(at: Instant, task: Task) -> Result<TimerKey, Task> {
        let pid = std::process::id();
        let mut entries = lock();
        if entries.served_in != Some(pid) {
            // First use in this process (or in this child of a fork).
            let started = std::thread::Builder::new()
                .name(NAME.to_owned())
                .spawn(serve);
            if started.is_err() {
                return Err(task);
            }
            entries.served_in = Some(pid);
        }
        let (key, earliest) = entries.insert(at, task);
        if !earliest {
            // The thread wakes for an earlier task first, then re-reads.
            return Ok(key);
        }
        // Relaxed (load and store): every write of WAKE is under the lock,
        // which orders them; the futex compares the value atomically with
        // the thread's sleep, which is all a wake needs.
        let word = WAKE.load(Ordering::Relaxed);
        WAKE.store((word & !SLEEPING).wrapping_add(STEP), Ordering::Relaxed);
        drop(entries);
        if word & SLEEPING != 0 {
            WAKE.wake_all();
        }
        Ok(key)
    }

    /// Removes the task named by `key` if it has not started: `true` if
    /// this call removed it (it will never run; it is dropped here, outside
    /// the lock), `false` if it has run, is running, or was cancelled
    /// before. Never waits for a running task.
    pub(crate) fn cancel(key: &TimerKey) -> bool {
        let task = lock().tasks.remove(key);
        task.map(discard).is_some()
    }

    /// The timer thread: sleeps until the earliest deadline (or a bump),
    /// runs what is due, outside the lock, and loops; never returns.
    fn serve() {
        let mut due = Vec::new();
        loop {
            let sleep = {
                let mut entries = lock();
                entries.take_due(Some(Instant::now()), &mut due);
                // Relaxed: under the lock, as in `schedule`.
                let word = WAKE.load(Ordering::Relaxed);
                if due.is_empty() {
                    WAKE.store(word | SLEEPING, Ordering::Relaxed);
                    let next = entries.tasks.first_key_value().map(|(key, _)| key.at);
                    Some((word | SLEEPING, next))
                } else {
                    // Awake: a `schedule` now need not wake us.
                    WAKE.store(word & !SLEEPING, Ordering::Relaxed);
                    None
                }
            };
            match sleep {
                // Until the earliest deadline (`None`: until a schedule);
                // a bump since the read above makes it return at once.
                Some((word, next)) => {
                    WAKE.wait_until(word, next);
                }
                None => due.drain(..).for_each(run_task),
            }
        }
    }
}

#[cfg(loom)]
pub use model::fire_timers;
#[cfg(loom)]
pub(crate) use model::{cancel, schedule};

/// Under loom: the registry, and timers fired by a model thread.
#[cfg(loom)]
mod model {
    use std::time::Instant;

    use super::{discard, run_task, Entries, Task, TimerKey};

    // Fresh for each execution, and loom-visible (a loom Mutex), so a model
    // sees a schedule race a firing.
    loom::lazy_static! {
        static ref ENTRIES: loom::sync::Mutex<Entries> = loom::sync::Mutex::new(Entries::new());
    }

    /// Adds `task`; it runs when a model thread calls [`fire_timers`].
    /// Never `Err` under loom.
    pub(crate) fn schedule(at: Instant, task: Task) -> Result<TimerKey, Task> {
        Ok(ENTRIES.lock().unwrap().insert(at, task).0)
    }

    /// As the normal [`cancel`](super::thread::cancel).
    pub(crate) fn cancel(key: &TimerKey) -> bool {
        let task = ENTRIES.lock().unwrap().tasks.remove(key);
        task.map(discard).is_some()
    }

    /// Runs every task pending now, whatever its deadline (loom has no
    /// clock), in deadline order, on this thread and outside the registry
    /// lock; tasks they schedule wait for the next call. Returns how many
    /// ran. For loom models only: "the timer fires" at this point.
    pub fn fire_timers() -> usize {
        let mut due = Vec::new();
        ENTRIES.lock().unwrap().take_due(None, &mut due);
        let ran = due.len();
        due.into_iter().for_each(run_task);
        ran
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::{mpsc, Arc};
    use std::time::{Duration, Instant};

    use super::{cancel, schedule, Task};

    /// Generous: a loaded machine may run the timer thread late; a task
    /// that has not run by then never will.
    const PATIENCE: Duration = Duration::from_secs(20);
    /// Far enough away that it never comes during a test.
    const FAR: Duration = Duration::from_secs(3600);

    fn task(f: impl FnOnce() + Send + 'static) -> Task {
        Box::new(f)
    }

    fn scheduled(at: Instant, f: impl FnOnce() + Send + 'static) -> super::TimerKey {
        schedule(at, task(f)).unwrap_or_else(|_| panic!("no timer thread"))
    }

    /// Holds the timer thread inside a task until the returned sender sends
    /// (or drops): everything scheduled meanwhile is then served in order.
    fn hold_the_thread() -> mpsc::Sender<()> {
        let (release, held) = mpsc::channel::<()>();
        let (entered, is_held) = mpsc::channel();
        scheduled(Instant::now(), move || {
            entered.send(()).unwrap();
            let _ = held.recv();
        });
        is_held.recv_timeout(PATIENCE).expect("the hold task ran");
        release
    }

    #[test]
    fn tasks_run_on_the_named_thread() {
        let (tx, rx) = mpsc::channel();
        scheduled(Instant::now(), move || {
            tx.send(std::thread::current().name().map(str::to_owned))
                .unwrap();
        });
        let name = rx.recv_timeout(PATIENCE).unwrap();
        assert_eq!(name.as_deref(), Some(super::thread::NAME));
    }

    /// Due tasks run in deadline order, and equal deadlines in the order
    /// they were scheduled, whatever the order of scheduling.
    #[test]
    fn tasks_run_in_deadline_order() {
        let release = hold_the_thread();
        let (tx, rx) = mpsc::channel();
        let base = Instant::now();
        let ms = Duration::from_millis;
        for (label, at) in [
            (3, base + ms(3)),
            (0, base),
            (2, base + ms(2)),
            (1, base + ms(2)),
            (4, base + ms(5)),
        ] {
            let tx = tx.clone();
            scheduled(at, move || tx.send(label).unwrap());
        }
        drop(tx);
        release.send(()).unwrap();
        let order: Vec<i32> = rx.iter().collect();
        assert_eq!(order, [0, 2, 1, 3, 4]);
    }

    /// A deadline earlier than the one the sleeping thread waits for wakes
    /// it: the early task runs while a far one is pending.
    #[test]
    fn an_earlier_deadline_wakes_the_sleeping_thread() {
        let far = scheduled(Instant::now() + FAR, || panic!("the far task ran"));
        let (tx, rx) = mpsc::channel();
        scheduled(Instant::now() + Duration::from_millis(5), move || {
            tx.send(()).unwrap();
        });
        rx.recv_timeout(PATIENCE).expect("the early task ran");
        assert!(cancel(&far));
    }

    /// Cancelled before its time: `true`, it never runs, and what it
    /// captured is dropped at once; cancelling again is `false`.
    #[test]
    fn cancel_before_it_runs() {
        let (tx, rx) = mpsc::channel::<()>();
        let key = scheduled(Instant::now() + FAR, move || tx.send(()).unwrap());
        assert!(cancel(&key));
        assert!(!cancel(&key), "cancelled twice");
        // The sender was dropped with the task: the channel is closed.
        assert_eq!(
            rx.recv_timeout(PATIENCE),
            Err(mpsc::RecvTimeoutError::Disconnected)
        );
    }

    /// Cancelled after it ran (or while it runs): `false`.
    #[test]
    fn cancel_after_it_ran() {
        let (tx, rx) = mpsc::channel();
        let key = scheduled(Instant::now(), move || tx.send(()).unwrap());
        rx.recv_timeout(PATIENCE).expect("the task ran");
        assert!(!cancel(&key));
        // And from inside the task itself: it is running, so `false`.
        let (tx, rx) = mpsc::channel();
        let slot = Arc::new(std::sync::Mutex::new(None));
        let seen = Arc::clone(&slot);
        let release = hold_the_thread();
        let key = scheduled(Instant::now(), move || {
            let key = seen.lock().unwrap().expect("key stored before release");
            tx.send(cancel(&key)).unwrap();
        });
        *slot.lock().unwrap() = Some(key);
        drop(release);
        assert_eq!(rx.recv_timeout(PATIENCE), Ok(false));
    }

    /// A payload whose own `Drop` panics: the timer must not re-raise it.
    struct PanicsOnDrop;
    impl Drop for PanicsOnDrop {
        fn drop(&mut self) {
            panic!("the payload's drop panicked");
        }
    }

    /// A panicking task (and one whose payload panics when dropped) is
    /// dropped; the thread lives on and runs the next task.
    #[test]
    fn a_panicking_task_does_not_stop_the_thread() {
        let release = hold_the_thread();
        scheduled(Instant::now(), || panic!("a task panicked"));
        scheduled(Instant::now(), || std::panic::panic_any(PanicsOnDrop));
        let (tx, rx) = mpsc::channel();
        scheduled(Instant::now(), move || tx.send(()).unwrap());
        drop(release);
        rx.recv_timeout(PATIENCE).expect("the thread survived both");
    }

    /// Many tasks from several threads: each runs exactly once.
    #[test]
    fn many_tasks_each_run_once() {
        const THREADS: usize = 4;
        const EACH: usize = 500;
        let ran = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel();
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let (ran, tx) = (Arc::clone(&ran), tx.clone());
                s.spawn(move || {
                    for i in 0..EACH {
                        let at = Instant::now()
                            + Duration::from_micros(((t * EACH + i) % 97) as u64 * 50);
                        let (ran, tx) = (Arc::clone(&ran), tx.clone());
                        scheduled(at, move || {
                            ran.fetch_add(1, SeqCst);
                            tx.send(()).unwrap();
                        });
                    }
                });
            }
        });
        for _ in 0..THREADS * EACH {
            rx.recv_timeout(PATIENCE).expect("every task runs");
        }
        assert_eq!(ran.load(SeqCst), THREADS * EACH);
    }

    /// A task schedules another (and cancels a third): both work from the
    /// timer thread itself.
    #[test]
    fn a_task_schedules_another() {
        let (tx, rx) = mpsc::channel();
        let doomed = scheduled(Instant::now() + FAR, || panic!("cancelled task ran"));
        scheduled(Instant::now(), move || {
            assert!(cancel(&doomed));
            let tx2 = tx.clone();
            scheduled(Instant::now() + Duration::from_millis(1), move || {
                tx2.send("second").unwrap();
            });
            tx.send("first").unwrap();
        });
        assert_eq!(rx.recv_timeout(PATIENCE), Ok("first"));
        assert_eq!(rx.recv_timeout(PATIENCE), Ok("second"));
    }
}
