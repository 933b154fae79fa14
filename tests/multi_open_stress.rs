//! Stress: many more threads than cores hammer one `MultiOpen` through open,
//! close, detach, join and re-open cycles for a bounded number of
//! iterations, checking the invariants as they go: never two startups at
//! once, startups − shutdowns ∈ {0, 1}, and nobody uses a shut-down handle.
//! No wall-clock assertions: only counts.
#![cfg(not(loom))]

use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier};
use std::thread;

use multiopen::{CloseOutcome, MultiOpen, Resource};

const THREADS: usize = 48;
const ITERATIONS: usize = 20_000;

/// A handle that knows whether it has been shut down.
struct Handle {
    alive: AtomicBool,
    cycle: usize,
}

#[derive(Default)]
struct Service {
    startups: AtomicUsize,
    shutdowns: AtomicUsize,
    /// startups − shutdowns, checked at every transition.
    live: AtomicIsize,
    /// Startups running right now.
    in_startup: AtomicUsize,
}

impl Resource for Service {
    type Handle = Arc<Handle>;
    type Error = std::io::Error;

    fn startup(&self) -> std::io::Result<Arc<Handle>> {
        assert_eq!(
            self.in_startup.fetch_add(1, SeqCst),
            0,
            "two startups at once"
        );
        let live = self.live.fetch_add(1, SeqCst) + 1;
        assert_eq!(live, 1, "startups − shutdowns left {{0, 1}}");
        thread::yield_now(); // widen the window for racing openers
        let cycle = self.startups.fetch_add(1, SeqCst) + 1;
        self.in_startup.fetch_sub(1, SeqCst);
        Ok(Arc::new(Handle {
            alive: AtomicBool::new(true),
            cycle,
        }))
    }

    fn shutdown(&self, handle: Arc<Handle>) -> std::io::Result<()> {
        assert!(handle.alive.swap(false, SeqCst), "shut down twice");
        thread::yield_now(); // widen the window for racing openers
        let live = self.live.fetch_sub(1, SeqCst) - 1;
        assert_eq!(live, 0, "startups − shutdowns left {{0, 1}}");
        self.shutdowns.fetch_add(1, SeqCst);
        Ok(())
    }
}

fn use_handle(handle: &Handle) {
    assert!(handle.alive.load(SeqCst), "used a shut-down handle");
    assert!(handle.cycle >= 1);
}

#[test]
fn many_threads_open_close_join_reopen() {
    let mo = Arc::new(MultiOpen::new(Service::default()));
    let start = Arc::new(Barrier::new(THREADS));
    let final_closes = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (mo, start, final_closes) = (mo.clone(), start.clone(), final_closes.clone());
            thread::spawn(move || {
                start.wait();
                for i in 0..ITERATIONS {
                    match (t + i) % 5 {
                        // Plain scoped open.
                        0 | 1 => {
                            let g = mo.open().unwrap();
                            use_handle(&g);
                        }
                        // Nested opens, closed explicitly.
                        2 => {
                            let outer = mo.open().unwrap();
                            let inner = mo.open().unwrap();
                            use_handle(&inner);
                            assert_eq!(inner.close().unwrap(), CloseOutcome::StillOpen);
                            use_handle(&outer);
                            if outer.close().unwrap() == CloseOutcome::ShutDown {
                                final_closes.fetch_add(1, SeqCst);
                            }
                        }
                        // Detach here, close through the object.
                        3 => {
                            let g = mo.open().unwrap();
                            use_handle(&g);
                            g.detach();
                            if mo.close().unwrap() == CloseOutcome::ShutDown {
                                final_closes.fetch_add(1, SeqCst);
                            }
                        }
                        // Join while not holding an open: returns once the
                        // cycle seen is finalised (others keep it cycling).
                        _ => {
                            if i % 50 == 4 {
                                mo.join().unwrap();
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let service = mo.resource();
    let (startups, shutdowns) = (
        service.startups.load(SeqCst),
        service.shutdowns.load(SeqCst),
    );
    assert_eq!(startups, shutdowns, "every cycle shut down");
    // Any stretch where one thread runs alone cycles on every open, so a
    // run that never re-opened would mean the test exercised nothing.
    assert!(startups > 1, "no re-open cycles happened");
    eprintln!(
        "{startups} cycles, {} final closes seen",
        final_closes.load(SeqCst)
    );
    assert!(final_closes.load(SeqCst) <= shutdowns);
    assert_eq!(mo.open_count(), 0);
    assert_eq!(mo.state().detached, 0);
    assert!(mo.closed());
    assert_eq!(mo.state().cycle as usize, startups);
    mo.join().unwrap();
}

/// A holder keeps the object open while everyone else hammers the fast
/// path: exactly one startup and, after the holder lets go, one shutdown.
#[test]
fn held_open_fast_path_never_restarts() {
    let mo = Arc::new(MultiOpen::new(Service::default()));
    let holder = mo.open_owned().unwrap();
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let mo = mo.clone();
            thread::spawn(move || {
                for _ in 0..ITERATIONS {
                    let g = mo.open().unwrap();
                    use_handle(&g);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(mo.resource().startups.load(SeqCst), 1);
    assert_eq!(mo.resource().shutdowns.load(SeqCst), 0);
    assert_eq!(mo.open_count(), 1);
    drop(holder);
    assert_eq!(mo.resource().shutdowns.load(SeqCst), 1);
}
