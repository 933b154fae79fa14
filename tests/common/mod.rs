//! Helpers shared by several test files (`mod common;` in each; each file
//! uses a part, hence the `dead_code` allowance).
#![allow(dead_code)]

pub mod blocked;
pub mod child;
pub mod waker;

// Each test binary uses a part (see `dead_code` above).
#[allow(unused_imports)]
pub use waker::{counting, poll, wakes, CountWaker};

use std::sync::Mutex;

/// Runs `f` with the panic hook silenced (panics on purpose, such as
/// callbacks that panic). Serialised, so that one caller's restore cannot
/// put back another's silent hook.
pub fn quietly<R>(f: impl FnOnce() -> R) -> R {
    static HOOK: Mutex<()> = Mutex::new(());
    let _serial = HOOK.lock().unwrap_or_else(|e| e.into_inner());
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let out = f();
    std::panic::set_hook(hook);
    out
}

/// Runs `f` on a thread; fails (instead of hanging) if it does not finish
/// within 20 s (10 minutes under Miri): a deadlock detector, not a timing
/// assertion.
pub fn no_deadlock<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    // Under Miri (about a thousand times slower) the bound is ten minutes.
    let bound = if cfg!(miri) { 600 } else { 20 };
    rx.recv_timeout(std::time::Duration::from_secs(bound))
        .unwrap_or_else(|_| panic!("{what}: deadlocked or panicked"))
}

/// tokio's multi-thread runtime with 2 workers (the machine's 2 cores)
/// and its timer, for the tests named `on_tokio` (which Miri skips).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap()
}

/// How many rounds a test of racing rounds runs: `n`, or at most 8 under
/// Miri (about a thousand times slower), where a few rounds still check
/// each interleaving it meets for undefined behaviour and data races.
pub fn rounds(n: usize) -> usize {
    if cfg!(miri) {
        n.min(8)
    } else {
        n
    }
}

/// Registers one callback on each of `rs`'s events (start, cancel, end)
/// that pushes `seen(event name)`, and returns what they push, in order.
pub fn record_events<T: Send + 'static>(
    rs: &multiopen::RunState,
    seen: impl Fn(&'static str) -> T + Clone + Send + Sync + 'static,
) -> std::sync::Arc<Mutex<Vec<T>>> {
    let events: std::sync::Arc<Mutex<Vec<T>>> = std::sync::Arc::default();
    for event in ["start", "cancel", "end"] {
        let (events, seen) = (std::sync::Arc::clone(&events), seen.clone());
        let record = move |_: &multiopen::RunState| events.lock().unwrap().push(seen(event));
        match event {
            "start" => rs.on_start(record),
            "cancel" => rs.on_cancel(record),
            _ => rs.on_end(record),
        };
    }
    events
}

/// A thread that runs `f` once `start` lets it go (every racer waits at the
/// same barrier, so `f` races the others' work).
pub fn at<T: Send + 'static>(
    start: &std::sync::Arc<std::sync::Barrier>,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let start = std::sync::Arc::clone(start);
    std::thread::spawn(move || {
        start.wait();
        f()
    })
}

/// `n` natively, `small` under Miri.
pub fn size(n: usize, small: usize) -> usize {
    if cfg!(miri) {
        small
    } else {
        n
    }
}

/// A tiny xorshift, so each thread mixes its drops differently.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
