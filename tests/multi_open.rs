//! Behaviour of `MultiOpen`, one feature of the Python `cs.resources` at a
//! time, and every misuse from SPEC "Bad input": each returns its error
//! value and leaves the object working.
#![cfg(not(loom))]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use multiopen::{
    CloseError, CloseHow, CloseOptions, CloseOutcome, FinaliseError, MultiOpen, NotOpenedError,
    OpenError, Openable, Phase, Resource,
};

/// A resource that counts its startups and shutdowns and can be told to
/// fail or panic in either.
#[derive(Default)]
struct Counted {
    startups: AtomicUsize,
    shutdowns: AtomicUsize,
    fail_startup: AtomicBool,
    panic_startup: AtomicBool,
    fail_shutdown: AtomicBool,
    panic_shutdown: AtomicBool,
    /// Set while started up; startup and shutdown assert they alternate.
    live: AtomicBool,
}

#[derive(Debug, PartialEq, Eq)]
struct Failure(&'static str);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Failure {}

impl Resource for Counted {
    /// The cycle number.
    type Handle = usize;
    type Error = Failure;

    fn startup(&self) -> Result<usize, Failure> {
        if self.fail_startup.swap(false, SeqCst) {
            return Err(Failure("startup failed"));
        }
        if self.panic_startup.swap(false, SeqCst) {
            panic!("startup panicked");
        }
        assert!(
            !self.live.swap(true, SeqCst),
            "two startups without a shutdown"
        );
        Ok(self.startups.fetch_add(1, SeqCst) + 1)
    }

    fn shutdown(&self, cycle: usize) -> Result<(), Failure> {
        assert!(self.live.swap(false, SeqCst), "shutdown without a startup");
        self.shutdowns.fetch_add(1, SeqCst);
        assert_eq!(cycle, self.startups.load(SeqCst));
        if self.fail_shutdown.swap(false, SeqCst) {
            return Err(Failure("shutdown failed"));
        }
        if self.panic_shutdown.swap(false, SeqCst) {
            panic!("shutdown panicked");
        }
        Ok(())
    }
}

fn counted() -> MultiOpen<Counted> {
    MultiOpen::new(Counted::default()).with_name("probe")
}

fn counts(mo: &MultiOpen<Counted>) -> (usize, usize) {
    let r = mo.resource();
    (r.startups.load(SeqCst), r.shutdowns.load(SeqCst))
}

/// The object works normally: a full open/close cycle runs one startup and
/// one shutdown.
fn assert_still_works(mo: &MultiOpen<Counted>) {
    let (startups, shutdowns) = counts(mo);
    let g = mo.open().expect("open after misuse");
    assert!(mo.is_open());
    assert_eq!(
        g.close().expect("close after misuse"),
        CloseOutcome::ShutDown
    );
    assert_eq!(counts(mo), (startups + 1, shutdowns + 1));
    assert!(mo.closed());
    assert_eq!(mo.open_count(), 0);
}

#[test]
fn first_open_starts_last_close_shuts_down() {
    let mo = counted();
    assert!(!mo.closed() && !mo.is_open());
    let a = mo.open().unwrap();
    let b = mo.open().unwrap();
    assert_eq!(counts(&mo), (1, 0));
    assert_eq!((*a, *b), (1, 1));
    assert_eq!(mo.open_count(), 2);
    assert_eq!(a.close().unwrap(), CloseOutcome::StillOpen);
    assert!(mo.is_open() && !mo.closed());
    assert_eq!(b.close().unwrap(), CloseOutcome::ShutDown);
    assert_eq!(counts(&mo), (1, 1));
    assert!(mo.closed() && !mo.is_open());
}

#[test]
fn reopen_starts_a_new_cycle() {
    let mo = counted();
    for cycle in 1..=5 {
        let g = mo.open().unwrap();
        assert_eq!(*g, cycle);
        assert_eq!(mo.state().cycle, cycle as u32);
        drop(g);
        assert_eq!(counts(&mo), (cycle, cycle));
        mo.join().unwrap();
    }
}

#[test]
fn owned_guards_move_into_threads() {
    let mo = Arc::new(counted());
    // Open all first, so the object stays open until the last thread ends.
    let guards: Vec<_> = (0..8).map(|_| mo.open_owned().unwrap()).collect();
    let handles: Vec<_> = guards
        .into_iter()
        .map(|g| {
            thread::spawn(move || {
                assert_eq!(*g, 1);
                assert!(g.multi_open().is_open());
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(counts(&mo), (1, 1));
    assert!(mo.closed());
}

/// Closing an owned guard explicitly (not just dropping it) releases its
/// reference to the `Arc` too.
#[test]
fn explicit_close_of_owned_guards_releases_the_arc() {
    let mo = Arc::new(counted());
    let (a, b, c) = (
        mo.open_owned().unwrap(),
        mo.open_owned().unwrap(),
        mo.open_owned().unwrap(),
    );
    assert_eq!(Arc::strong_count(&mo), 4);
    assert_eq!(a.close().unwrap(), CloseOutcome::StillOpen);
    assert_eq!(Arc::strong_count(&mo), 3);
    assert!(b.close_final().is_err());
    assert_eq!(Arc::strong_count(&mo), 2);
    let detached = c.detach();
    assert_eq!(Arc::strong_count(&mo), 2, "detach hands its Arc back");
    drop(detached);
    assert_eq!(mo.close().unwrap(), CloseOutcome::ShutDown);
    assert_eq!(Arc::strong_count(&mo), 1);
}

#[test]
fn failed_startup_leaves_count_and_next_opener_retries() {
    let mo = counted();
    mo.resource().fail_startup.store(true, SeqCst);
    let err = mo.open().unwrap_err();
    assert_eq!(
        err,
        OpenError::Startup {
            name: "probe".into(),
            error: Failure("startup failed")
        }
    );
    assert_eq!(mo.open_count(), 0);
    assert_eq!(mo.state().phase, Phase::NeverOpened);
    assert!(!mo.closed());
    assert_still_works(&mo);
}

#[test]
fn panicking_startup_leaves_count_and_next_opener_retries() {
    let mo = counted();
    mo.resource().panic_startup.store(true, SeqCst);
    let panic = catch_unwind(AssertUnwindSafe(|| mo.open().map(drop))).unwrap_err();
    assert_eq!(panic.downcast_ref::<&str>(), Some(&"startup panicked"));
    assert_eq!(mo.open_count(), 0);
    assert_eq!(mo.state().phase, Phase::NeverOpened);
    assert_still_works(&mo);
}

/// While one thread's startup is running (slowly) and then fails, other
/// openers wait, and one of them then runs startup itself.
///
/// Kind A race fixed (a sleep used for ordering): the failing startup used
/// to sleep 50 ms hoping the other three openers were waiting by then; one
/// that came later (a loaded machine) could find the second cycle already
/// over and start a third (`cycle == 2`, three attempts). Now the failing
/// startup is held until `state().open_count` shows all four registered.
#[test]
fn waiting_openers_retry_after_a_failed_startup() {
    struct SlowFirstFails {
        attempts: AtomicUsize,
        /// The first startup fails only once the test passes this.
        fail: Barrier,
    }
    impl Resource for SlowFirstFails {
        type Handle = usize;
        type Error = Failure;
        fn startup(&self) -> Result<usize, Failure> {
            let attempt = self.attempts.fetch_add(1, SeqCst);
            if attempt == 0 {
                self.fail.wait();
                return Err(Failure("first startup fails"));
            }
            Ok(attempt)
        }
    }
    let mo = MultiOpen::new(SlowFirstFails {
        attempts: AtomicUsize::new(0),
        fail: Barrier::new(2),
    });
    let start = Barrier::new(4);
    let results: Vec<_> = thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    mo.open().map(|g| *g)
                })
            })
            .collect();
        // The starter and the three openers waiting behind it.
        while mo.state().open_count < 4 {
            thread::yield_now();
        }
        mo.resource().fail.wait();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let failures = results.iter().filter(|r| r.is_err()).count();
    assert_eq!(
        failures, 1,
        "only the thread that ran the failing startup fails"
    );
    assert!(results.iter().flatten().all(|&cycle| cycle == 1));
    assert_eq!(mo.resource().attempts.load(SeqCst), 2);
    assert!(mo.closed());
}

#[test]
fn shutdown_error_reaches_the_final_closer_and_closes_anyway() {
    let mo = counted();
    mo.resource().fail_shutdown.store(true, SeqCst);
    let err = mo.open().unwrap().close().unwrap_err();
    assert_eq!(
        err,
        CloseError::Shutdown {
            name: "probe".into(),
            error: Failure("shutdown failed")
        }
    );
    assert!(mo.closed());
    mo.join().expect("a failed shutdown still finalises");
    assert_still_works(&mo);
}

#[test]
fn panicking_shutdown_leaves_a_consistent_closed_object() {
    let mo = counted();
    mo.resource().panic_shutdown.store(true, SeqCst);
    let g = mo.open().unwrap();
    let panic = catch_unwind(AssertUnwindSafe(|| g.close())).unwrap_err();
    assert_eq!(panic.downcast_ref::<&str>(), Some(&"shutdown panicked"));
    assert!(mo.closed());
    assert_eq!(mo.open_count(), 0);
    mo.join().expect("a panicking shutdown still finalises");
    assert_still_works(&mo);
}

/// A guard dropped while its thread unwinds, whose shutdown panics too, must
/// not abort the process: the second panic is swallowed.
#[test]
fn shutdown_panic_during_unwinding_does_not_abort() {
    let mo = counted();
    mo.resource().panic_shutdown.store(true, SeqCst);
    let panic = catch_unwind(AssertUnwindSafe(|| {
        let _g = mo.open().unwrap();
        panic!("user code panicked");
    }))
    .unwrap_err();
    assert_eq!(panic.downcast_ref::<&str>(), Some(&"user code panicked"));
    assert!(mo.closed());
    assert_still_works(&mo);
}

#[test]
fn close_final_closes_then_reports_not_final() {
    let mo = counted();
    let a = mo.open().unwrap();
    let b = mo.open().unwrap();
    assert_eq!(
        a.close_final().unwrap_err(),
        CloseError::NotFinal {
            name: "probe".into(),
            still_open: 1
        }
    );
    assert_eq!(mo.open_count(), 1, "the close happened");
    assert_eq!(b.close_final().unwrap(), CloseOutcome::ShutDown);
    assert_still_works(&mo);
}

#[test]
fn detached_opens_close_through_the_object() {
    let mo = counted();
    mo.open().unwrap().detach();
    mo.open().unwrap().detach();
    assert_eq!(mo.state().detached, 2);
    let must_be_final = CloseOptions::new().enforce_final_close(true);
    assert_eq!(
        mo.close_with(must_be_final).unwrap_err(),
        CloseError::NotFinal {
            name: "probe".into(),
            still_open: 1
        }
    );
    let line = line!() + 1;
    assert_eq!(mo.close().unwrap(), CloseOutcome::ShutDown);
    let site = mo.state().final_close.unwrap();
    assert_eq!(
        (site.location.file(), site.location.line()),
        (file!(), line)
    );
    assert_eq!(site.how, CloseHow::Explicit);
    // An extra close: an error naming the final close, and nothing changes.
    match mo.close().unwrap_err() {
        CloseError::Unmatched(closed) => {
            assert_eq!(closed.final_close, Some(site));
            let message = CloseError::<Failure>::Unmatched(closed).to_string();
            assert!(
                message.contains(&format!("{}:{line}", file!())),
                "{message}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(counts(&mo), (1, 1));
    assert_still_works(&mo);
}

#[test]
fn close_never_opened_is_an_error_unless_unopened_ok() {
    let mo = counted();
    assert!(matches!(mo.close(), Err(CloseError::NeverOpened(_))));
    assert_eq!(
        mo.close_with(CloseOptions::new().unopened_ok(true))
            .unwrap(),
        CloseOutcome::NothingOpen
    );
    assert_eq!(mo.open_count(), 0);
    assert_still_works(&mo);
}

/// Opens held by guards cannot be closed through the object: a double close
/// is impossible by construction.
#[test]
fn object_close_cannot_steal_a_guards_open() {
    let mo = counted();
    let g = mo.open().unwrap();
    assert!(matches!(mo.close(), Err(CloseError::Unmatched(_))));
    assert_eq!(mo.open_count(), 1);
    assert_eq!(g.close().unwrap(), CloseOutcome::ShutDown);
}

#[test]
fn join_never_opened_is_an_error_not_a_hang() {
    let mo = counted();
    assert_eq!(
        mo.join().unwrap_err().to_string(),
        "probe has never been opened"
    );
    mo.resource().fail_startup.store(true, SeqCst);
    mo.open().unwrap_err();
    assert!(mo.join().is_err(), "a failed startup is not an open");
}

#[test]
fn join_waits_for_the_final_close_in_another_thread() {
    let mo = Arc::new(counted());
    let g = mo.open_owned().unwrap();
    let closed_by_other = Arc::new(AtomicBool::new(false));
    let closer = {
        let closed_by_other = closed_by_other.clone();
        thread::spawn(move || {
            // Lets the join below block first. Ordering only: if the join
            // comes later it returns after the close all the same (the
            // flag is set before it) and the test passes, less exercised.
            thread::sleep(Duration::from_millis(20));
            closed_by_other.store(true, SeqCst);
            drop(g);
        })
    };
    mo.join().unwrap();
    assert!(
        closed_by_other.load(SeqCst),
        "join returned before the close"
    );
    assert_eq!(counts(&mo), (1, 1));
    closer.join().unwrap();
    mo.join().expect("already finalised: returns at once");
}

#[test]
fn finalise_later_holds_joiners_until_finalise() {
    let mo = Arc::new(counted().with_finalise_later(true));
    mo.open().unwrap().close().unwrap();
    let released = Arc::new(AtomicBool::new(false));
    let joiner = {
        let (mo, released) = (mo.clone(), released.clone());
        thread::spawn(move || {
            mo.join().unwrap();
            released.store(true, SeqCst);
        })
    };
    // Lets the joiner block first. Ordering only: a joiner that comes later
    // is not released before `finalise` either; the test passes, less
    // exercised.
    thread::sleep(Duration::from_millis(20));
    assert!(!released.load(SeqCst), "joiner released before finalise");
    mo.finalise().unwrap();
    joiner.join().unwrap();
    assert!(released.load(SeqCst));
}

#[test]
fn finalise_misuse_errors() {
    let mo = counted();
    assert!(matches!(mo.finalise(), Err(FinaliseError::NeverOpened(_))));
    let g = mo.open().unwrap();
    assert!(matches!(
        mo.finalise(),
        Err(FinaliseError::StillOpen { .. })
    ));
    drop(g);
    assert!(matches!(
        mo.finalise(),
        Err(FinaliseError::AlreadyFinalised { .. })
    ));
    mo.set_finalise_later(true);
    mo.open().unwrap().close().unwrap();
    mo.finalise().unwrap();
    assert!(matches!(
        mo.finalise(),
        Err(FinaliseError::AlreadyFinalised { .. })
    ));
    mo.set_finalise_later(false);
    assert_still_works(&mo);
}

/// A re-open before a pending finalise starts a new cycle at once; the old
/// cycle's joiners are released by `finalise()`, the new cycle's are not.
#[test]
fn not_closed_and_check_opened() {
    let mo = counted();
    assert!(mo.not_closed().is_ok(), "never opened is not closed");
    assert!(matches!(
        mo.check_opened(),
        Err(NotOpenedError::NeverOpened(_))
    ));
    let g = mo.open().unwrap();
    assert!(mo.not_closed().is_ok());
    assert!(mo.check_opened().is_ok());
    drop(g);
    let closed = mo.not_closed().unwrap_err();
    assert_eq!(closed.name, "probe");
    let site = closed.final_close.unwrap();
    assert_eq!(site.how, CloseHow::GuardDropped);
    assert_eq!(site.location.file(), file!());
    assert!(closed
        .to_string()
        .starts_with("probe is closed (final close at drop of the guard opened at"));
    assert!(matches!(mo.check_opened(), Err(NotOpenedError::Closed(_))));
}

#[test]
fn state_snapshot_and_debug() {
    let mo = counted();
    let s = mo.state();
    assert_eq!(
        (s.phase, s.open_count, s.cycle, s.detached, s.final_close),
        (Phase::NeverOpened, 0, 0, 0, None)
    );
    let g = mo.open().unwrap();
    let s = mo.state();
    assert_eq!((s.phase, s.open_count, s.cycle), (Phase::Open, 1, 1));
    let debug = format!("{mo:?}");
    assert!(debug.contains("probe") && debug.contains("Open"), "{debug}");
    assert!(format!("{g:?}").contains("handle: 1"));
    drop(g);
    assert_eq!(mo.state().phase, Phase::Closed);
}

/// Open-count overflow is refused, not wrapped; the count is unchanged and
/// the object still works once opens are released.
#[test]
fn too_many_opens_is_an_error() {
    let mo = MultiOpen::from_fns(|| Ok::<_, Failure>(()), |()| Ok(()));
    fn max_opens<R: Resource>(_: &MultiOpen<R>) -> usize {
        MultiOpen::<R>::MAX_OPENS
    }
    let max = max_opens(&mo);
    let first = mo.open().unwrap();
    for _ in 1..max {
        // Leak the open on purpose: the fastest way to reach the limit.
        std::mem::forget(mo.open().unwrap());
    }
    assert_eq!(mo.open_count(), max);
    assert!(matches!(mo.open(), Err(OpenError::TooManyOpens { .. })));
    assert!(matches!(mo.open(), Err(OpenError::TooManyOpens { .. })));
    assert_eq!(
        mo.open_count(),
        max,
        "a refused open leaves the count alone"
    );
    assert!(mo.is_open());
    assert_eq!(first.close().unwrap(), CloseOutcome::StillOpen);
    assert!(mo.open().is_ok(), "below the limit again");
}

#[test]
fn wrapped_openable_is_opened_once_per_cycle() {
    #[derive(Default)]
    struct Port {
        opens: AtomicUsize,
        closes: AtomicUsize,
    }
    impl Openable for Port {
        type Error = Failure;
        fn open(&self) -> Result<(), Failure> {
            self.opens.fetch_add(1, SeqCst);
            Ok(())
        }
        fn close(&self) -> Result<(), Failure> {
            self.closes.fetch_add(1, SeqCst);
            Ok(())
        }
    }
    let port = MultiOpen::wrap(Port::default());
    let guards: Vec<_> = (0..3).map(|_| port.open().unwrap()).collect();
    assert_eq!(port.resource().get().opens.load(SeqCst), 1);
    drop(guards);
    assert_eq!(port.resource().get().closes.load(SeqCst), 1);
    drop(port.open().unwrap());
    assert_eq!(port.resource().get().opens.load(SeqCst), 2);
}

/// Detached opens that are never closed are shut down when the object is
/// dropped, so the handle's teardown still runs.
#[test]
fn dropping_the_object_shuts_down_leftover_detached_opens() {
    let shutdowns = Arc::new(AtomicUsize::new(0));
    let mo = {
        let shutdowns = shutdowns.clone();
        MultiOpen::from_fns(
            || Ok::<_, Failure>(()),
            move |()| {
                shutdowns.fetch_add(1, SeqCst);
                Ok(())
            },
        )
    };
    mo.open().unwrap().detach();
    drop(mo);
    assert_eq!(shutdowns.load(SeqCst), 1);
}

/// `Resource::shutdown`'s default drops the handle (the `startup_shutdown`
/// form: the handle's `Drop` is the teardown).
#[test]
fn default_shutdown_drops_the_handle() {
    struct Handle(Arc<AtomicUsize>);
    impl Drop for Handle {
        fn drop(&mut self) {
            self.0.fetch_add(1, SeqCst);
        }
    }
    struct Setup(Arc<AtomicUsize>);
    impl Resource for Setup {
        type Handle = Handle;
        type Error = Failure;
        fn startup(&self) -> Result<Handle, Failure> {
            Ok(Handle(self.0.clone()))
        }
    }
    let drops = Arc::new(AtomicUsize::new(0));
    let mo = MultiOpen::new(Setup(drops.clone()));
    let g = mo.open().unwrap();
    assert_eq!(drops.load(SeqCst), 0);
    drop(g);
    assert_eq!(drops.load(SeqCst), 1);
}
