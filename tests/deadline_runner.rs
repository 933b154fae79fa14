#![cfg(not(loom))]
//! The deadline runners: the threads (`multiopen-deadline`) that run the
//! `on_cancel` callbacks of firing deadlines, off the crate's one timer
//! thread. A burst of firings shares a few runners (never a thread per
//! firing), a callback that blocks delays no other deadline's callbacks,
//! and a panicking callback leaves the runners serving.

use std::collections::{HashMap, HashSet};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use multiopen::run_state::DEADLINE_EXCEEDED;
use multiopen::RunState;

mod common;
use common::{no_deadlock, quietly};

/// The most runners alive at once (`timer::runner::CAP`).
const CAP: usize = 64;

/// What a callback saw: which state, on which thread, under which name,
/// with which reason.
struct Seen {
    index: usize,
    thread: ThreadId,
    name: Option<String>,
    reason: Option<String>,
}

fn seen(index: usize, rs: &RunState) -> Seen {
    let me = thread::current();
    Seen {
        index,
        thread: me.id(),
        name: me.name().map(str::to_owned),
        reason: rs.reason().map(|r| r.to_string()),
    }
}

/// `n` states, each with a callback that reports to `tx`, all with one
/// deadline `margin` from now. `None` if this thread was descheduled past
/// the deadline before the last was set (some then cancelled at once, on
/// this thread): the round proves nothing, run it again with a longer
/// margin (the kind: a test that assumes calls come within some
/// wall-clock time, see `tests/run_state_deadline.rs`).
fn due_together(n: usize, margin: Duration, tx: &mpsc::Sender<Seen>) -> Option<Vec<Arc<RunState>>> {
    let states: Vec<_> = (0..n)
        .map(|i| {
            let rs = Arc::new(RunState::new(format!("s{i}")));
            let tx = tx.clone();
            rs.on_cancel(move |rs| {
                let _ = tx.send(seen(i, rs));
            });
            rs
        })
        .collect();
    let at = Instant::now() + margin;
    for rs in &states {
        rs.cancel_at(at).unwrap();
    }
    (Instant::now() < at).then_some(states)
}

/// 200 states whose deadlines come at one instant, each with a callback:
/// every callback runs exactly once, with the deadline's reason, on a
/// runner (`multiopen-deadline`, never the timer thread), and the firings
/// share a few runners, at most the cap (the count is printed).
#[test]
fn deadline_runners_serve_a_burst_of_firings_on_few_threads() {
    let n = if cfg!(miri) { 16 } else { 200 };
    no_deadlock("a burst of deadline callbacks", move || {
        let mut margin = Duration::from_millis(if cfg!(miri) { 2000 } else { 50 });
        let (states, rx) = loop {
            let (tx, rx) = mpsc::channel();
            if let Some(states) = due_together(n, margin, &tx) {
                break (states, rx);
            }
            margin *= 4;
        };
        let mut runs = HashMap::new();
        let mut threads = HashSet::new();
        while runs.len() < n {
            let seen = rx.recv().unwrap();
            *runs.entry(seen.index).or_insert(0) += 1;
            assert_eq!(runs[&seen.index], 1, "s{}'s callback ran twice", seen.index);
            assert_eq!(seen.name.as_deref(), Some("multiopen-deadline"));
            assert_eq!(seen.reason.as_deref(), Some(DEADLINE_EXCEEDED));
            threads.insert(seen.thread);
        }
        assert!(states.iter().all(|rs| rs.cancelled()));
        eprintln!(
            "{n} deadline firings with callbacks ran on {} runner threads",
            threads.len()
        );
        assert!(threads.len() <= CAP, "{} runner threads", threads.len());
    });
}

/// The first margin for a deadline "soon": long enough that it is still
/// ahead once set, almost always.
fn first_margin() -> Duration {
    Duration::from_millis(if cfg!(miri) { 500 } else { 20 })
}

/// Is this a deadline runner? A deadline that had passed before
/// `cancel_after` looked (this thread was descheduled, or Miri is slow)
/// cancels at once, on the calling thread: such a round proves nothing
/// and is run again with a margin four times longer (the kind: a test
/// that assumes calls come within some wall-clock time, see
/// `tests/run_state_deadline.rs`).
fn on_a_runner() -> bool {
    thread::current().name() == Some("multiopen-deadline")
}

/// A state whose deadline fires on a runner, `margin` or more from now;
/// what its callback saw.
fn fired_on_a_runner(index: usize) -> (Arc<RunState>, Seen) {
    let mut margin = first_margin();
    loop {
        let rs = Arc::new(RunState::new(format!("s{index}")));
        let (tx, rx) = mpsc::channel();
        rs.on_cancel(move |rs| {
            let _ = tx.send(seen(index, rs));
        });
        rs.cancel_after(margin).unwrap();
        let seen = rx.recv().unwrap();
        if seen.name.as_deref() == Some("multiopen-deadline") {
            return (rs, seen);
        }
        margin *= 4;
    }
}

/// A callback that blocks until released delays no other deadline's
/// callbacks: another state's deadline fires, and its callback runs (on
/// another runner) while the first still blocks.
#[test]
fn deadline_runners_a_blocked_callback_delays_no_other() {
    no_deadlock("a blocked deadline callback", || {
        let mut margin = first_margin();
        let (_x, blocked_on, release) = loop {
            let x = Arc::new(RunState::new("x"));
            let (entered_tx, entered) = mpsc::channel();
            let (release, held) = mpsc::channel::<()>();
            let held = Mutex::new(held); // a callback is `Sync`
            x.on_cancel(move |_| {
                let runner = on_a_runner();
                entered_tx.send((thread::current().id(), runner)).unwrap();
                if runner {
                    let _ = held.lock().unwrap().recv(); // blocks until released
                }
            });
            x.cancel_after(margin).unwrap();
            let (blocked_on, runner) = entered.recv().unwrap();
            if runner {
                break (x, blocked_on, release);
            }
            margin *= 4;
        };
        let (_y, other) = fired_on_a_runner(1); // while x's callback still blocks
        assert_ne!(other.thread, blocked_on);
        assert_eq!(other.reason.as_deref(), Some(DEADLINE_EXCEEDED));
        release.send(()).unwrap();
    });
}

/// A callback that panics (the panic hook reports it) leaves the runners
/// serving: a later deadline's callback still runs, and the first state
/// is cancelled with the deadline's reason all the same.
#[test]
fn deadline_runners_survive_a_panicking_callback() {
    let (x, later) = quietly(|| {
        no_deadlock("a panicking deadline callback", || {
            let mut margin = first_margin();
            let x = loop {
                let x = Arc::new(RunState::new("x"));
                let (tx, rx) = mpsc::channel();
                x.on_cancel(move |_| {
                    let _ = tx.send(on_a_runner());
                    panic!("a deadline callback panicked (on purpose)");
                });
                x.cancel_after(margin).unwrap();
                if rx.recv().unwrap() {
                    break x;
                }
                margin *= 4;
            };
            (x, fired_on_a_runner(1).1)
        })
    });
    assert_eq!(later.index, 1);
    assert_eq!(later.name.as_deref(), Some("multiopen-deadline"));
    assert!(x.cancelled());
    assert_eq!(x.reason().as_deref(), Some(DEADLINE_EXCEEDED));
}

/// The callbacks of a parent's children, cancelled by the parent's
/// deadline, run on a runner too, never on the timer thread.
#[test]
fn deadline_runners_run_childrens_callbacks_not_the_timer_thread() {
    no_deadlock("children's deadline callbacks", || {
        let mut margin = first_margin();
        loop {
            let parent = Arc::new(RunState::new("parent"));
            let children: Vec<_> = (0..4).map(|i| parent.child(format!("c{i}"))).collect();
            let (tx, rx) = mpsc::channel();
            for (i, child) in children.iter().enumerate() {
                let tx = tx.clone();
                child.on_cancel(move |c| {
                    let _ = tx.send(seen(i, c));
                });
            }
            parent.cancel_after(margin).unwrap();
            let first = rx.recv().unwrap();
            if first.name.as_deref() != Some("multiopen-deadline") {
                // Cancelled here, at once (see `on_a_runner`): void, again.
                assert_ne!(first.name.as_deref(), Some("multiopen-timer"));
                margin *= 4;
                continue;
            }
            let rest = (1..children.len()).map(|_| rx.recv().unwrap());
            let mut ran = HashSet::new();
            for seen in std::iter::once(first).chain(rest) {
                assert!(ran.insert(seen.index), "c{} ran twice", seen.index);
                assert_eq!(seen.name.as_deref(), Some("multiopen-deadline"));
                assert_eq!(seen.reason.as_deref(), Some(DEADLINE_EXCEEDED));
            }
            return;
        }
    });
}
