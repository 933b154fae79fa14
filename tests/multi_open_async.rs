#![cfg(not(loom))]
//! `MultiOpen::join_async` and `open_async` by hand-polling, on
//! `futures::executor::block_on` and on tokio's multi-thread runtime, beside
//! threads blocked in `join` and `open` on the same object: one final close
//! (for joins) or one phase's end (for opens) releases them all, each
//! exactly once, and nothing stays registered afterwards.
//!
//! Miri runs this file; it skips the tests whose names contain `on_tokio`.
//! The hand-polled ones stay small for it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::task::Poll;
use std::thread;
use std::time::Duration;

use multiopen::{FnMultiOpen, JoinError, MultiOpen, OpenError, Phase, Resource};

mod common;
use common::{counting, poll, runtime, wakes};

/// An object counting its shutdowns.
fn object() -> (Arc<FnMultiOpen<()>>, Arc<AtomicUsize>) {
    let shutdowns = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&shutdowns);
    let mo = Arc::new(MultiOpen::from_dyn_fns(
        || Ok(()),
        move |()| {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok(())
        },
    ));
    (mo, shutdowns)
}

#[test]
fn a_blocking_join_and_an_awaited_join_are_released_by_one_final_close() {
    let (mo, shutdowns) = object();
    let guard = mo.open_owned().unwrap();
    let (count, waker) = counting();
    let mut join = mo.join_async();
    assert!(poll(&mut join, &waker).is_pending());
    assert!(poll(&mut join, &waker).is_pending()); // an update, not a second entry
    assert_eq!(mo.registered_join_wakers(), 1);
    let (joined, returned) = mpsc::channel();
    let blocking = {
        let mo = Arc::clone(&mo);
        thread::spawn(move || {
            let result = mo.join();
            joined.send(()).unwrap();
            result
        })
    };
    let closer = thread::spawn(move || drop(guard)); // the final close
    closer.join().unwrap();
    blocking.join().unwrap().unwrap();
    returned.recv().unwrap();
    assert!(
        returned.try_recv().is_err(),
        "the blocking join returned once"
    );
    assert_eq!(wakes(&count), 1, "the join future was woken once");
    assert!(matches!(poll(&mut join, &waker), Poll::Ready(Ok(()))));
    assert_eq!(shutdowns.load(Ordering::SeqCst), 1);
    assert_eq!(mo.registered_join_wakers(), 0);
}

#[test]
fn a_dropped_pending_join_future_leaves_nothing_and_takes_no_wake() {
    let (mo, _) = object();
    let guard = mo.open().unwrap();
    let (count, waker) = counting();
    // Fewer rounds under Miri (about a thousand times slower).
    for _ in 0..if cfg!(miri) { 8 } else { 100 } {
        let mut join = mo.join_async();
        assert!(poll(&mut join, &waker).is_pending());
    }
    assert_eq!(mo.registered_join_wakers(), 0);
    let (kept_count, kept_waker) = counting();
    let mut kept = mo.join_async();
    assert!(poll(&mut kept, &kept_waker).is_pending());
    drop(guard);
    assert_eq!(wakes(&count), 0);
    assert_eq!(wakes(&kept_count), 1);
    assert!(matches!(poll(&mut kept, &kept_waker), Poll::Ready(Ok(()))));
    assert_eq!(mo.registered_join_wakers(), 0);
}

#[test]
fn join_async_errors_and_ready_cases_match_join() {
    let (mo, _) = object();
    let never = futures::executor::block_on(mo.join_async());
    assert!(matches!(never, Err(JoinError::NeverOpened(_))));
    assert!(matches!(mo.join(), Err(JoinError::NeverOpened(_))));

    let (sealed, _) = object();
    sealed.seal();
    futures::executor::block_on(sealed.join_async()).unwrap(); // nothing can come

    drop(mo.open().unwrap());
    futures::executor::block_on(mo.join_async()).unwrap(); // finalised already
    assert_eq!(mo.registered_join_wakers(), 0);
}

#[test]
fn finalise_later_releases_the_join_future_only_at_finalise() {
    let (mo, _) = object();
    mo.set_finalise_later(true);
    let guard = mo.open().unwrap();
    let (count, waker) = counting();
    let mut join = mo.join_async();
    assert!(poll(&mut join, &waker).is_pending());
    drop(guard); // shut down, not finalised
    assert_eq!(wakes(&count), 0);
    assert!(poll(&mut join, &waker).is_pending());
    mo.finalise().unwrap();
    assert_eq!(wakes(&count), 1);
    assert!(matches!(poll(&mut join, &waker), Poll::Ready(Ok(()))));
}

/// A resource counting its shutdowns (a plain type: tokio's `spawn` needs
/// the task to be `Send`, which rustc cannot yet prove for a future that
/// borrows a `FnMultiOpen` across an await, rust-lang/rust#64552).
struct Counted(AtomicUsize);

impl multiopen::Resource for Counted {
    type Handle = ();
    type Error = std::io::Error;

    fn startup(&self) -> std::io::Result<()> {
        Ok(())
    }

    fn shutdown(&self, (): ()) -> std::io::Result<()> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Hundreds of tasks awaiting one object's join and threads blocked in
/// `join`, released by one final close, cycle after cycle; every joiner
/// returns, and nothing stays registered.
#[test]
fn tasks_and_threads_join_one_final_close_on_tokio() {
    const TASKS: usize = 300;
    const THREADS: usize = 4;
    let rt = runtime();
    let mo = Arc::new(MultiOpen::new(Counted(AtomicUsize::new(0))));
    for cycle in 1..=3 {
        let guard = mo.open_owned().unwrap();
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let mo = Arc::clone(&mo);
                rt.spawn(async move { mo.join_async().await })
            })
            .collect();
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let mo = Arc::clone(&mo);
                thread::spawn(move || mo.join())
            })
            .collect();
        // Every task has polled once and registered: a state query.
        while mo.registered_join_wakers() < TASKS {
            thread::yield_now();
        }
        drop(guard); // the final close
        for task in tasks {
            rt.block_on(task).unwrap().unwrap();
        }
        for thread in threads {
            thread.join().unwrap().unwrap();
        }
        assert_eq!(mo.resource().0.load(Ordering::SeqCst), cycle);
        assert_eq!(mo.registered_join_wakers(), 0);
    }
}

/// A lingering object (opens closed, shutdown deferred for an hour): the
/// join future ends the linger, the shutdown runs in its poll, and it is
/// ready; one pending beside a held open is released when the last close,
/// seeing a joiner, shuts down at once instead of lingering.
#[test]
fn join_async_ends_a_linger() {
    let mo = MultiOpen::new(Counted(AtomicUsize::new(0))).with_linger(Duration::from_secs(3600));
    drop(mo.open().unwrap());
    assert_eq!(mo.resource().0.load(Ordering::SeqCst), 0, "lingering");
    futures::executor::block_on(mo.join_async()).unwrap();
    assert_eq!(mo.resource().0.load(Ordering::SeqCst), 1);

    let guard = mo.open().unwrap();
    let (count, waker) = counting();
    let mut join = mo.join_async();
    assert!(poll(&mut join, &waker).is_pending());
    drop(guard); // the last close sees the join future: no linger
    assert_eq!(wakes(&count), 1);
    assert!(matches!(poll(&mut join, &waker), Poll::Ready(Ok(()))));
    assert_eq!(mo.resource().0.load(Ordering::SeqCst), 2);
}

#[test]
fn join_futures_are_send() {
    fn send<T: Send>(_: &T) {}
    let mo = MultiOpen::new(Counted(AtomicUsize::new(0)));
    send(&mo.join_async());
}

// ----- open_async -----

/// A gate a startup or shutdown can be held at: armed, the next callers of
/// `pass` stop there until `release`; `wait_entered(n)` returns once `n`
/// have arrived (a state query, no sleep-and-hope).
#[derive(Default)]
struct Gate {
    /// (armed, arrivals)
    state: Mutex<(bool, usize)>,
    changed: Condvar,
}

impl Gate {
    /// Arms the gate, counting arrivals from zero.
    fn arm(&self) {
        *self.state.lock().unwrap() = (true, 0);
    }

    fn pass(&self) {
        let mut state = self.state.lock().unwrap();
        if !state.0 {
            return;
        }
        state.1 += 1;
        self.changed.notify_all();
        while state.0 {
            state = self.changed.wait(state).unwrap();
        }
    }

    fn wait_entered(&self, n: usize) {
        let mut state = self.state.lock().unwrap();
        while state.1 < n {
            state = self.changed.wait(state).unwrap();
        }
    }

    fn release(&self) {
        self.state.lock().unwrap().0 = false;
        self.changed.notify_all();
    }
}

/// A resource whose startup and shutdown can be held at a gate, counting
/// both; its handle is the cycle's number.
#[derive(Default)]
struct Gated {
    startup_gate: Gate,
    shutdown_gate: Gate,
    startups: AtomicUsize,
    shutdowns: AtomicUsize,
}

impl Resource for Gated {
    type Handle = usize;
    type Error = std::io::Error;

    fn startup(&self) -> std::io::Result<usize> {
        let cycle = self.startups.fetch_add(1, Ordering::SeqCst) + 1;
        self.startup_gate.pass();
        Ok(cycle)
    }

    fn shutdown(&self, _: usize) -> std::io::Result<()> {
        self.shutdown_gate.pass();
        self.shutdowns.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn gated() -> Arc<MultiOpen<Gated>> {
    Arc::new(MultiOpen::new(Gated::default()).with_name("gated"))
}

/// Starts a thread whose open runs the startup, held at the gate; returns
/// once the startup is running. The thread returns its guard.
fn startup_held_in_a_thread(
    mo: &Arc<MultiOpen<Gated>>,
) -> thread::JoinHandle<multiopen::OwnedOpenGuard<Gated>> {
    mo.resource().startup_gate.arm();
    let starter = {
        let mo = Arc::clone(mo);
        thread::spawn(move || mo.open_owned().unwrap())
    };
    mo.resource().startup_gate.wait_entered(1);
    assert_eq!(mo.state().phase, Phase::Starting);
    starter
}

#[test]
fn open_async_on_an_open_object_is_ready_at_once_and_registers_nothing() {
    let mo = gated();
    let held = mo.open().unwrap();
    let (count, waker) = counting();
    let mut open = mo.open_async();
    let Poll::Ready(Ok(guard)) = poll(&mut open, &waker) else {
        panic!("an open object opens at the first poll");
    };
    assert_eq!(*guard, 1);
    assert_eq!(mo.open_count(), 2);
    assert_eq!((wakes(&count), mo.registered_open_wakers()), (0, 0));
    drop((guard, open, held));
    assert_eq!(mo.open_count(), 0);
    assert!(mo.closed());
    // Idle: the first poll runs the startup itself.
    let guard = futures::executor::block_on(mo.open_owned_async()).unwrap();
    assert_eq!((*guard, mo.state().cycle), (2, 2));
}

/// A startup in another thread; three open futures and two threads blocked
/// in `open` wait behind it. Its end wakes each future exactly once and
/// releases each thread; all get the live handle, and the startup ran once.
#[test]
fn a_startup_in_another_thread_releases_blocking_and_async_openers_once() {
    const FUTURES: usize = 3;
    const THREADS: usize = 2;
    let mo = gated();
    let starter = startup_held_in_a_thread(&mo);
    let mut waiting: Vec<_> = (0..FUTURES)
        .map(|_| {
            let (count, waker) = counting();
            let mut open = mo.open_async();
            assert!(poll(&mut open, &waker).is_pending());
            assert!(poll(&mut open, &waker).is_pending()); // an update, not a second entry
            (count, waker, open)
        })
        .collect();
    assert_eq!(mo.registered_open_wakers(), FUTURES);
    let blocked: Vec<_> = (0..THREADS)
        .map(|_| {
            let mo = Arc::clone(&mo);
            thread::spawn(move || *mo.open().unwrap())
        })
        .collect();
    // Every opener is counted: the starter, the futures, the threads.
    while mo.open_count() < 1 + FUTURES + THREADS {
        thread::yield_now();
    }
    assert!(waiting.iter().all(|(count, ..)| wakes(count) == 0));
    mo.resource().startup_gate.release();
    let first = starter.join().unwrap(); // the phase's end woke everyone
    for thread in blocked {
        assert_eq!(thread.join().unwrap(), 1);
    }
    let guards: Vec<_> = waiting
        .iter_mut()
        .map(|(count, waker, open)| {
            assert_eq!(wakes(count), 1, "each open future is woken once");
            match poll(open, waker) {
                Poll::Ready(Ok(guard)) => guard,
                other => panic!("woken but {other:?}"),
            }
        })
        .collect();
    assert!(guards.iter().all(|guard| **guard == 1));
    assert_eq!(mo.resource().startups.load(Ordering::SeqCst), 1);
    assert_eq!(mo.registered_open_wakers(), 0);
    assert_eq!(mo.open_count(), 1 + FUTURES);
    drop((guards, first));
    drop(waiting);
    assert_eq!(mo.open_count(), 0);
    assert_eq!(mo.resource().shutdowns.load(Ordering::SeqCst), 1);
}

/// An open future that arrives while the final close's shutdown runs waits
/// for it, is woken once by its end, and its next poll starts a new cycle
/// (the startup runs in that poll).
#[test]
fn an_open_future_behind_a_shutdown_starts_the_next_cycle() {
    let mo = gated();
    let guard = mo.open_owned().unwrap();
    mo.resource().shutdown_gate.arm();
    let closer = thread::spawn(move || drop(guard));
    mo.resource().shutdown_gate.wait_entered(1);
    assert_eq!(mo.state().phase, Phase::ShuttingDown);
    let (count, waker) = counting();
    let mut open = mo.open_async();
    assert!(poll(&mut open, &waker).is_pending());
    assert_eq!(mo.open_count(), 1, "a pending open future is counted");
    mo.resource().shutdown_gate.release();
    closer.join().unwrap();
    assert_eq!(wakes(&count), 1);
    assert_eq!(mo.state().phase, Phase::Closed);
    let Poll::Ready(Ok(reopened)) = poll(&mut open, &waker) else {
        panic!("woken after the shutdown: the poll runs the startup");
    };
    assert_eq!(*reopened, 2);
    assert_eq!(mo.resource().startups.load(Ordering::SeqCst), 2);
    assert_eq!(mo.registered_open_wakers(), 0);
}

/// `seal` wakes the pending open futures; their next poll is refused with
/// the seal's error and takes the increment back. The held startup still
/// finishes and its cycle runs.
#[test]
fn seal_wakes_pending_open_futures_with_the_refusal() {
    let mo = gated();
    let starter = startup_held_in_a_thread(&mo);
    let (a_count, a_waker) = counting();
    let (b_count, b_waker) = counting();
    let mut a = mo.open_async();
    let mut b = mo.open_owned_async();
    assert!(poll(&mut a, &a_waker).is_pending());
    assert!(poll(&mut b, &b_waker).is_pending());
    assert!(mo.seal());
    assert_eq!((wakes(&a_count), wakes(&b_count)), (1, 1));
    let Poll::Ready(Err(OpenError::Sealed { name })) = poll(&mut a, &a_waker) else {
        panic!("a sealed object refuses");
    };
    assert_eq!(name, "gated");
    assert!(matches!(
        poll(&mut b, &b_waker),
        Poll::Ready(Err(OpenError::Sealed { .. }))
    ));
    assert_eq!(mo.open_count(), 1, "only the starter's open is left");
    assert_eq!(mo.registered_open_wakers(), 0);
    mo.resource().startup_gate.release();
    let guard = starter.join().unwrap();
    assert_eq!(*guard, 1);
    drop(guard);
    assert!(mo.closed());
    drop((a, b));
    assert_eq!(mo.open_count(), 0);
}

/// Pending open futures dropped (the cancel of a timeout) take their waker
/// and their increment with them and no wake-up meant for another; one
/// woken but dropped before its poll takes its open back too, and when it
/// is the last open that take-back is the final close.
#[test]
fn dropped_pending_open_futures_leave_the_count_exact() {
    let mo = gated();
    let starter = startup_held_in_a_thread(&mo);
    let (dropped_count, dropped_waker) = counting();
    for _ in 0..20 {
        let mut open = mo.open_async();
        assert!(poll(&mut open, &dropped_waker).is_pending());
        assert_eq!(mo.open_count(), 2);
    }
    assert_eq!((mo.open_count(), mo.registered_open_wakers()), (1, 0));
    let (kept_count, kept_waker) = counting();
    let mut kept = mo.open_owned_async();
    assert!(poll(&mut kept, &kept_waker).is_pending());
    let (late_count, late_waker) = counting();
    let mut late = mo.open_owned_async();
    assert!(poll(&mut late, &late_waker).is_pending());
    mo.resource().startup_gate.release();
    let first = starter.join().unwrap();
    assert_eq!(wakes(&dropped_count), 0);
    assert_eq!((wakes(&kept_count), wakes(&late_count)), (1, 1));
    drop(late); // woken, never polled: its open is taken back
    assert_eq!(mo.open_count(), 2);
    let Poll::Ready(Ok(guard)) = poll(&mut kept, &kept_waker) else {
        panic!("woken: ready");
    };
    drop((first, guard));
    assert_eq!(mo.open_count(), 0);
    assert_eq!(mo.resource().shutdowns.load(Ordering::SeqCst), 1);

    // The take-back as the final close: the future is woken by the
    // startup's end, the starter's open closes, then the future is dropped.
    let starter = startup_held_in_a_thread(&mo);
    let (count, waker) = counting();
    let mut last = mo.open_async();
    assert!(poll(&mut last, &waker).is_pending());
    mo.resource().startup_gate.release();
    drop(starter.join().unwrap());
    assert_eq!((wakes(&count), mo.open_count()), (1, 1));
    assert!(mo.is_open(), "the woken future's open keeps it up");
    drop(last);
    assert_eq!(mo.open_count(), 0);
    assert!(mo.closed(), "the take-back ran the shutdown");
    assert_eq!(mo.resource().shutdowns.load(Ordering::SeqCst), 2);
    assert_eq!(mo.registered_open_wakers(), 0);
}

/// A startup that fails: the pending futures are woken, and the first
/// polled runs the next startup (in its poll); a startup that awaits an open
/// of its own object is refused as re-entrant.
#[test]
fn a_failed_startup_passes_the_startup_to_a_woken_future() {
    let attempts = Arc::new(AtomicUsize::new(0));
    let (entered, startup_entered) = mpsc::channel::<()>();
    let (release, released) = mpsc::channel::<()>();
    let released = Mutex::new(released);
    let counted = Arc::clone(&attempts);
    let mo = Arc::new(
        MultiOpen::from_fns(
            move || {
                if counted.fetch_add(1, Ordering::SeqCst) == 0 {
                    entered.send(()).unwrap();
                    released.lock().unwrap().recv().unwrap();
                    return Err("first startup fails".to_string());
                }
                Ok(5)
            },
            |_| Ok(()),
        )
        .with_name("flaky"),
    );
    let starter = {
        let mo = Arc::clone(&mo);
        thread::spawn(move || mo.open().map(|_| ()).unwrap_err().to_string())
    };
    startup_entered.recv().unwrap();
    let (count, waker) = counting();
    let mut open = mo.open_async();
    assert!(poll(&mut open, &waker).is_pending());
    release.send(()).unwrap();
    assert_eq!(
        starter.join().unwrap(),
        "startup of flaky failed: first startup fails"
    );
    assert_eq!(wakes(&count), 1);
    let Poll::Ready(Ok(guard)) = poll(&mut open, &waker) else {
        panic!("the woken future runs the next startup");
    };
    assert_eq!((*guard, attempts.load(Ordering::SeqCst)), (5, 2));
}

#[test]
fn an_open_future_polled_inside_its_own_startup_is_refused() {
    struct Reentrant(std::sync::OnceLock<std::sync::Weak<MultiOpen<Reentrant>>>);
    impl Resource for Reentrant {
        type Handle = String;
        type Error = std::io::Error;
        fn startup(&self) -> std::io::Result<String> {
            let mo = self.0.get().unwrap().upgrade().unwrap();
            let inner = futures::executor::block_on(mo.open_async());
            Ok(inner.map(|_| ()).unwrap_err().to_string())
        }
    }
    let mo = Arc::new(MultiOpen::new(Reentrant(std::sync::OnceLock::new())));
    mo.resource().0.set(Arc::downgrade(&mo)).unwrap();
    let guard = mo.open().unwrap();
    assert!(guard.contains("would wait for itself"), "{}", *guard);
    assert_eq!(mo.open_count(), 1);
}

#[test]
fn open_futures_are_send() {
    fn send<T: Send + 'static>(_: &T) {}
    let mo = Arc::new(MultiOpen::new(Gated::default()));
    send(&mo.open_owned_async());
    fn send_borrowed<T: Send>(_: &T) {}
    send_borrowed(&mo.open_async());
}

/// `tokio::time::timeout` around an open behind a held startup: it times
/// out, and dropping the future on time-out leaves the count and the
/// registry as they were.
#[test]
fn a_timed_out_open_future_leaves_no_trace_on_tokio() {
    let rt = runtime();
    let mo = gated();
    let starter = startup_held_in_a_thread(&mo);
    let timed = rt
        .block_on(async { tokio::time::timeout(Duration::from_millis(20), mo.open_async()).await });
    assert!(timed.is_err(), "timed out");
    assert_eq!((mo.open_count(), mo.registered_open_wakers()), (1, 0));
    mo.resource().startup_gate.release();
    drop(starter.join().unwrap());
    assert!(mo.closed());
    assert_eq!(Arc::strong_count(&mo), 1);
}

/// The stress of issue 14: thousands of tasks await one object's open
/// behind a startup held in a thread, and then its join, while threads
/// block in `open` and `join` beside them; repeated. Every waiter returns;
/// afterwards nothing stays registered and no `Arc` of the object is left
/// (memory flat: counted in registry entries and strong counts, not RSS).
#[test]
fn thousands_of_tasks_and_threads_open_and_join_one_object_on_tokio() {
    const TASKS: usize = 2000;
    const THREADS: usize = 4;
    const ROUNDS: usize = 4;
    let rt = runtime();
    let mo = gated();
    for round in 1..=ROUNDS {
        let starter = startup_held_in_a_thread(&mo);
        let openers: Vec<_> = (0..TASKS)
            .map(|_| {
                let mo = Arc::clone(&mo);
                rt.spawn(async move { *mo.open_owned_async().await.unwrap() })
            })
            .collect();
        let blocked: Vec<_> = (0..THREADS)
            .map(|_| {
                let mo = Arc::clone(&mo);
                thread::spawn(move || *mo.open().unwrap())
            })
            .collect();
        // Every task has polled and registered; every thread is counted.
        while mo.registered_open_wakers() < TASKS || mo.open_count() < 1 + TASKS + THREADS {
            thread::yield_now();
        }
        mo.resource().startup_gate.release();
        let guard = starter.join().unwrap();
        for task in openers {
            assert_eq!(rt.block_on(task).unwrap(), round);
        }
        for thread in blocked {
            assert_eq!(thread.join().unwrap(), round);
        }
        assert_eq!(mo.registered_open_wakers(), 0);
        assert_eq!(mo.open_count(), 1);

        let joiners: Vec<_> = (0..TASKS)
            .map(|_| {
                let mo = Arc::clone(&mo);
                rt.spawn(async move { mo.join_async().await })
            })
            .collect();
        let joining: Vec<_> = (0..THREADS)
            .map(|_| {
                let mo = Arc::clone(&mo);
                thread::spawn(move || mo.join())
            })
            .collect();
        while mo.registered_join_wakers() < TASKS {
            thread::yield_now();
        }
        drop(guard); // the final close
        for task in joiners {
            rt.block_on(task).unwrap().unwrap();
        }
        for thread in joining {
            thread.join().unwrap().unwrap();
        }
        let resource = mo.resource();
        assert_eq!(resource.startups.load(Ordering::SeqCst), round);
        assert_eq!(resource.shutdowns.load(Ordering::SeqCst), round);
        assert_eq!(mo.registered_join_wakers(), 0);
        assert_eq!(mo.open_count(), 0);
        assert_eq!(
            Arc::strong_count(&mo),
            1,
            "no task or thread kept the object"
        );
    }
}
