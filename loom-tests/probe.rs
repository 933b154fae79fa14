//! The resource of the `MultiOpen` loom models ([`Probe`]) and the helpers
//! they share; included by `multi_open.rs` and `multi_open_linger.rs`
//! (`#[path]`), and the held startup of the seal models (also by
//! `async_multi_open.rs`); not a test target itself.
#![allow(dead_code)] // Each model file uses its own subset.

use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool as StdAtomicBool, AtomicUsize as StdAtomicUsize};

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use multiopen::{CloseOutcome, MultiOpen, Resource};

/// The startup error of a [`Probe`] told to fail.
#[derive(Debug)]
pub struct Refused;

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("refused")
    }
}

impl std::error::Error for Refused {}

/// A resource that checks its own lifecycle (see the module doc).
pub struct Probe {
    /// 1 while started up, 0 otherwise; written only by startup/shutdown.
    pub live: UnsafeCell<u32>,
    /// Startup attempts, successful or not (bookkeeping outside loom's view:
    /// read only after every thread has been joined).
    pub attempts: StdAtomicUsize,
    pub startups: StdAtomicUsize,
    pub shutdowns: StdAtomicUsize,
    /// The next startup fails (then this clears).
    pub fail_next: StdAtomicBool,
    /// The next startup panics (then this clears).
    pub panic_next: StdAtomicBool,
    /// The next shutdown panics, after its work (then this clears).
    pub panic_shutdown_next: StdAtomicBool,
    /// The next shutdown returns an error, after its work (then this
    /// clears).
    pub fail_shutdown_next: StdAtomicBool,
    /// Closes that reported `ShutDown` (counted by `open_use_close`).
    pub reported: StdAtomicUsize,
}

// SAFETY: `live` is the one non-Sync field; every access to it goes through
// loom, which reports any access not ordered by the protocol under test.
unsafe impl Sync for Probe {}

impl Probe {
    pub fn new(fail_first: bool) -> Self {
        Self {
            live: UnsafeCell::new(0),
            attempts: StdAtomicUsize::new(0),
            startups: StdAtomicUsize::new(0),
            shutdowns: StdAtomicUsize::new(0),
            fail_next: StdAtomicBool::new(fail_first),
            panic_next: StdAtomicBool::new(false),
            panic_shutdown_next: StdAtomicBool::new(false),
            fail_shutdown_next: StdAtomicBool::new(false),
            reported: StdAtomicUsize::new(0),
        }
    }
}

impl Resource for Probe {
    /// The cycle number this handle belongs to.
    type Handle = usize;
    type Error = Refused;

    fn startup(&self) -> Result<usize, Refused> {
        self.attempts.fetch_add(1, SeqCst);
        if self.fail_next.swap(false, SeqCst) {
            return Err(Refused);
        }
        if self.panic_next.swap(false, SeqCst) {
            panic!("startup panicked");
        }
        self.live.with_mut(|live| {
            // SAFETY: loom checks this access against every other one.
            let live = unsafe { &mut *live };
            assert_eq!(*live, 0, "startup while the resource is already live");
            *live = 1;
        });
        Ok(self.startups.fetch_add(1, SeqCst) + 1)
    }

    fn shutdown(&self, cycle: usize) -> Result<(), Refused> {
        self.live.with_mut(|live| {
            // SAFETY: loom checks this access against every other one.
            let live = unsafe { &mut *live };
            assert_eq!(*live, 1, "shutdown of a resource that is not live");
            *live = 0;
        });
        let shutdowns = self.shutdowns.fetch_add(1, SeqCst) + 1;
        assert_eq!(shutdowns, cycle, "shutdown of cycle {cycle} out of order");
        if self.panic_shutdown_next.swap(false, SeqCst) {
            panic!("shutdown panicked");
        }
        if self.fail_shutdown_next.swap(false, SeqCst) {
            return Err(Refused);
        }
        Ok(())
    }
}

pub type Shared = Arc<MultiOpen<Probe>>;

/// Runs a two-thread model twice: as written, and with the main thread
/// yielding before its own operations. loom 0.7's exploration can miss
/// orders where a spawned thread's operations all come before the main
/// thread's load-then-CAS (tokio-rs/loom#392); the yield makes loom start
/// from the spawned thread, so both starts are explored.
pub fn both_orders(model: impl Fn(bool) + Sync + Send + 'static) {
    let model = std::sync::Arc::new(model);
    for main_yields_first in [false, true] {
        let model = model.clone();
        loom::model(move || model(main_yields_first));
    }
}

/// Models with three or more threads: every interleaving with at most
/// `PREEMPTIONS` preemptions (loom's default, `LOOM_MAX_PREEMPTIONS`,
/// overrides), which keeps them to minutes on two cores.
pub fn bounded(model: impl Fn() + Sync + Send + 'static) {
    const PREEMPTIONS: usize = 2;
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = builder.preemption_bound.or(Some(PREEMPTIONS));
    builder.check(model);
}

pub fn shared(fail_first: bool) -> Shared {
    Arc::new(MultiOpen::new(Probe::new(fail_first)))
}

/// Opens, uses the resource (loom checks the read against shutdown), and
/// closes explicitly; counts in `reported` a close that reports having run
/// the shutdown.
pub fn open_use_close(mo: &MultiOpen<Probe>) {
    let guard = mo.open().expect("probe startup succeeds");
    use_guard(mo, *guard);
    match guard.close().expect("probe shutdown succeeds") {
        CloseOutcome::ShutDown => {
            mo.resource().reported.fetch_add(1, SeqCst);
        }
        CloseOutcome::StillOpen | CloseOutcome::ShutDownByOther | CloseOutcome::Lingering => {}
        CloseOutcome::NothingOpen => panic!("a guard always has an open to close"),
    }
}

/// Reads the live flag as a holder of an open: it must be 1, and loom
/// flags the read if it is not ordered after startup and before shutdown.
pub fn use_guard(mo: &MultiOpen<Probe>, cycle: usize) {
    assert!(cycle >= 1);
    mo.resource().live.with(|live| {
        // SAFETY: loom checks this access against every other one.
        assert_eq!(unsafe { *live }, 1, "a guard saw a shut-down resource");
    });
}

/// After every thread is joined: as many shutdowns as startups, nothing
/// open, nothing live.
pub fn assert_quiescent(mo: &MultiOpen<Probe>) {
    let probe = mo.resource();
    assert_eq!(mo.open_count(), 0, "open count not back to zero");
    assert_eq!(
        probe.startups.load(SeqCst),
        probe.shutdowns.load(SeqCst),
        "startups and shutdowns differ at rest"
    );
    // SAFETY: every other thread is joined.
    probe.live.with(|live| assert_eq!(unsafe { *live }, 0));
    if probe.startups.load(SeqCst) > 0 {
        assert!(mo.closed());
    }
}

/// A one-shot signal between two model threads: loom's `Notify` (whose
/// `wait` may return spuriously) behind a flag.
pub struct Gate {
    opened: loom::sync::atomic::AtomicBool,
    notify: loom::sync::Notify,
}

impl Gate {
    pub fn new() -> Self {
        Self {
            opened: loom::sync::atomic::AtomicBool::new(false),
            notify: loom::sync::Notify::new(),
        }
    }

    pub fn open(&self) {
        self.opened
            .store(true, loom::sync::atomic::Ordering::Release);
        self.notify.notify();
    }

    pub fn wait(&self) {
        while !self.opened.load(loom::sync::atomic::Ordering::Acquire) {
            self.notify.wait();
        }
    }
}

/// A resource whose startup holds until the model says so: it tells two
/// threads (an opener and a sealer) that it has begun, then waits to be
/// released.
pub struct HeldStartup {
    pub begun_for_opener: Gate,
    pub begun_for_sealer: Gate,
    pub release: Gate,
}

impl HeldStartup {
    pub fn new() -> Self {
        Self {
            begun_for_opener: Gate::new(),
            begun_for_sealer: Gate::new(),
            release: Gate::new(),
        }
    }
}

impl Resource for HeldStartup {
    type Handle = ();
    type Error = Refused;

    fn startup(&self) -> Result<(), Refused> {
        self.begun_for_opener.open();
        self.begun_for_sealer.open();
        self.release.wait();
        Ok(())
    }
}
