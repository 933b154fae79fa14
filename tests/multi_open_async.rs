#![cfg(not(loom))]
//! `MultiOpen::join_async` by hand-polling, on `futures::executor::block_on`
//! and on tokio's multi-thread runtime, beside threads blocked in `join` on
//! the same object: one final close releases them all, each exactly once,
//! and nothing stays registered afterwards.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::Duration;

use multiopen::{FnMultiOpen, JoinError, MultiOpen};

/// A waker that counts its wakes.
struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counting() -> (Arc<Count>, Waker) {
    let count = Arc::new(Count(AtomicUsize::new(0)));
    (Arc::clone(&count), Waker::from(count))
}

fn wakes(count: &Count) -> usize {
    count.0.load(Ordering::SeqCst)
}

fn poll<F: Future + Unpin>(future: &mut F, waker: &Waker) -> Poll<F::Output> {
    Pin::new(future).poll(&mut Context::from_waker(waker))
}

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
    for _ in 0..100 {
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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
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
