#![cfg(not(loom))]
//! The trait impls users expect: `Default` for `RunState`, every `RunState`
//! method through `HasRunState`, and `Display` for `MultiOpenState`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, SystemTime};

use multiopen::{
    CloseHow, CloseSite, HasRunState, MultiOpen, MultiOpenState, Phase, RunPhase, RunState,
    RunStateError,
};

/// Gives another thread a chance to reach its blocking call. Correctness
/// never depends on it: a waiter that has not blocked yet must still see
/// the state it is waiting on.
fn settle() {
    thread::sleep(Duration::from_millis(50));
}

// --- Default for RunState ---------------------------------------------------

#[test]
fn default_run_state_is_named_after_its_type_and_works() {
    let rs = RunState::default();
    assert_eq!(rs.name(), "RunState");
    assert_eq!(rs.name(), RunState::new("RunState").name());
    assert_eq!(rs.state(), RunPhase::Pending);
    assert!(format!("{rs:?}").starts_with(r#"RunState { name: "RunState", state: Pending"#));

    rs.start().unwrap();
    assert!(rs.is_running());
    rs.cancel();
    assert!(rs.cancelled() && rs.stopping());
    rs.stop().unwrap();
    assert!(rs.stopped() && rs.cancelled());
    assert_eq!(rs.state(), RunPhase::Cancelled);
    // The name shows in errors too.
    match rs.resume() {
        Err(RunStateError::NotPaused { name }) => assert_eq!(name, "RunState"),
        other => panic!("expected NotPaused, got {other:?}"),
    }
}

#[test]
fn default_run_state_in_a_derived_default() {
    #[derive(Default)]
    struct Job {
        runstate: RunState,
        done: usize,
    }
    let job = Job::default();
    assert_eq!(job.runstate.name(), "RunState");
    assert_eq!(job.done, 0);
    let run = job.runstate.run();
    assert!(run.started());
    drop(run);
    assert!(job.runstate.stopped());
}

// --- HasRunState ------------------------------------------------------------

/// A type with a `RunState`: no inherent methods, so every call below on a
/// `Crawler` goes through the trait.
struct Crawler {
    runstate: RunState,
}

impl Crawler {
    fn new(name: &'static str) -> Self {
        Crawler {
            runstate: RunState::new(name),
        }
    }
}

impl HasRunState for Crawler {
    fn runstate(&self) -> &RunState {
        &self.runstate
    }
}

#[test]
fn has_run_state_queries_and_transitions() {
    let c = Crawler::new("crawler");
    assert_eq!(c.name(), "crawler");
    assert_eq!(c.state(), RunPhase::Pending);
    assert!(!c.is_running() && !c.cancelled() && !c.stopping() && !c.stopped());
    assert!(!c.is_paused());
    assert_eq!((c.start_time(), c.stop_time()), (None, None));
    assert_eq!(
        (c.run_time(), c.total_time()),
        (Duration::ZERO, Duration::ZERO)
    );
    assert!(matches!(c.stop(), Err(RunStateError::NeverStarted { .. })));

    let before = SystemTime::now();
    c.start().unwrap();
    assert!(matches!(
        c.start(),
        Err(RunStateError::AlreadyRunning { .. })
    ));
    assert!(c.is_running());
    assert_eq!(c.state(), RunPhase::Running);
    assert!(c.start_time().unwrap() >= before);
    assert_eq!(c.stop_time(), None);
    thread::sleep(Duration::from_millis(2));
    assert!(c.run_time() >= Duration::from_millis(2));
    c.stop().unwrap();
    assert!(c.stopped() && !c.is_running());
    assert_eq!(c.state(), RunPhase::Stopped);
    let (start, stop) = (c.start_time().unwrap(), c.stop_time().unwrap());
    assert_eq!(stop.duration_since(start).unwrap(), c.run_time());
    let first = c.run_time();

    // A second run, ended with `end`, cancelled on the way.
    c.start().unwrap();
    c.cancel();
    assert!(c.cancelled() && c.stopping());
    assert_eq!(c.state(), RunPhase::Stopping);
    c.end().unwrap();
    assert!(c.stopped() && !c.stopping());
    assert_eq!(c.state(), RunPhase::Cancelled);
    assert_eq!(c.total_time(), first + c.run_time());
    assert!(c.stop_time().unwrap() >= stop);
}

#[test]
fn has_run_state_pause_resume_check_and_wait() {
    let c = Crawler::new("paused");
    assert!(matches!(c.pause(), Err(RunStateError::NeverStarted { .. })));
    c.start().unwrap();
    assert!(matches!(c.resume(), Err(RunStateError::NotPaused { .. })));
    c.pause().unwrap();
    assert!(c.is_paused() && c.is_running());
    assert_eq!(c.state(), RunPhase::Paused);

    let waited = AtomicBool::new(false);
    let checked = AtomicBool::new(false);
    thread::scope(|s| {
        let waiter = s.spawn(|| {
            c.wait_while_paused();
            waited.store(true, SeqCst);
        });
        let checker = s.spawn(|| {
            let r = c.check();
            checked.store(true, SeqCst);
            r
        });
        settle();
        // Paused: both must still be blocked.
        assert!(!waited.load(SeqCst) && !checked.load(SeqCst));
        c.resume().unwrap();
        waiter.join().unwrap();
        assert_eq!(checker.join().unwrap(), Ok(()));
    });
    assert!(waited.load(SeqCst) && checked.load(SeqCst));
    assert!(!c.is_paused());

    // A cancel releases a paused `check` with an error.
    c.pause().unwrap();
    thread::scope(|s| {
        let checker = s.spawn(|| c.check());
        settle();
        c.cancel();
        assert!(checker.join().unwrap().is_err());
    });
    assert!(matches!(c.pause(), Err(RunStateError::Cancelled(_))));
    c.wait_while_paused(); // cancelled, not paused: returns at once
    c.stop().unwrap();
}

#[test]
fn has_run_state_sleep_and_check_after_cancel() {
    let c = Crawler::new("sleeper");
    c.start().unwrap();
    assert_eq!(c.check(), Ok(()));
    assert_eq!(c.sleep(Duration::from_millis(1)), Ok(()));
    thread::scope(|s| {
        let sleeper = s.spawn(|| c.sleep(Duration::from_secs(3600)));
        settle();
        c.cancel();
        assert!(sleeper.join().unwrap().is_err());
    });
    let err = c.sleep(Duration::from_secs(3600)).unwrap_err();
    assert!(err.to_string().contains("sleeper"), "{err}");
    assert!(c.check().is_err());
}

#[test]
fn has_run_state_run_guard_and_iter() {
    let c = Crawler::new("guarded");
    {
        let run = c.run();
        assert!(run.started());
        assert!(c.is_running());
        let nested = c.run(); // already running: neither starts nor stops
        assert!(!nested.started());
        drop(nested);
        assert!(c.is_running());
        let mut seen = Vec::new();
        for i in c.iter(0..100) {
            seen.push(i);
            if i == 4 {
                c.cancel();
            }
        }
        assert_eq!(seen, [0, 1, 2, 3, 4]);
    }
    assert!(c.stopped());
    assert_eq!(c.state(), RunPhase::Cancelled);
    // A new run clears the cancel: iter yields everything.
    let run = c.run();
    assert_eq!(c.iter(["a", "b"]).collect::<Vec<_>>(), ["a", "b"]);
    run.stop().unwrap();
    assert!(c.stopped());
}

#[test]
fn has_run_state_callbacks() {
    let c = Crawler::new("called");
    let (starts, cancels, ends) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let counter = Arc::clone(&starts);
    let on_start = c.on_start(move |rs| {
        assert!(rs.is_running());
        counter.fetch_add(1, SeqCst);
    });
    let counter = Arc::clone(&cancels);
    c.on_cancel(move |rs| {
        assert!(rs.cancelled());
        counter.fetch_add(1, SeqCst);
    });
    let counter = Arc::clone(&ends);
    let on_end = c.on_end(move |rs| {
        assert!(rs.stopped());
        counter.fetch_add(1, SeqCst);
    });
    c.start().unwrap();
    c.cancel();
    c.cancel(); // already cancelled: no callback
    c.stop().unwrap();
    assert_eq!(
        (starts.load(SeqCst), cancels.load(SeqCst), ends.load(SeqCst)),
        (1, 1, 1)
    );

    assert!(c.remove_callback(on_start));
    assert!(!c.remove_callback(on_start));
    assert!(c.remove_callback(on_end));
    c.start().unwrap();
    c.stop().unwrap();
    assert_eq!((starts.load(SeqCst), ends.load(SeqCst)), (1, 1));
}

#[test]
fn has_run_state_as_a_trait_object() {
    // The generic methods are `where Self: Sized`, so `dyn HasRunState`
    // still exists and has every other method.
    let c = Crawler::new("dyn");
    let d: &dyn HasRunState = &c;
    assert_eq!(d.name(), "dyn");
    d.start().unwrap();
    assert!(d.is_running());
    d.runstate().on_end(|_| {});
    d.cancel();
    d.stop().unwrap();
    assert_eq!(d.state(), RunPhase::Cancelled);
    let boxed: Vec<Box<dyn HasRunState>> =
        vec![Box::new(Crawler::new("a")), Box::new(RunState::new("b"))];
    let names: Vec<_> = boxed.iter().map(|h| h.name().to_owned()).collect();
    assert_eq!(names, ["a", "b"]);
}

#[test]
fn has_run_state_on_a_bare_run_state_and_generic_code() {
    fn run_to_cancel(h: &impl HasRunState) -> RunPhase {
        let _run = h.run();
        h.cancel();
        assert!(h.sleep(Duration::from_secs(3600)).is_err());
        drop(_run);
        h.state()
    }
    assert_eq!(run_to_cancel(&RunState::new("bare")), RunPhase::Cancelled);
    assert_eq!(run_to_cancel(&Crawler::new("wrapped")), RunPhase::Cancelled);
}

// --- Display for MultiOpenState ----------------------------------------------

fn unit() -> MultiOpen<impl multiopen::Resource<Handle = ()>> {
    MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()))
}

#[test]
fn multi_open_state_display_through_a_cycle() {
    let mo = unit();
    assert_eq!(mo.state().to_string(), "never opened");

    let a = mo.open().unwrap();
    assert_eq!(mo.state().to_string(), "open (1 open), cycle 1");
    let b = mo.open().unwrap();
    assert_eq!(mo.state().to_string(), "open (2 opens), cycle 1");
    mo.open().unwrap().detach();
    assert_eq!(
        mo.state().to_string(),
        "open (3 opens), cycle 1, 1 detached"
    );
    mo.close().unwrap();
    drop(b);
    assert_eq!(mo.state().to_string(), "open (1 open), cycle 1");

    a.close().unwrap();
    let state = mo.state();
    let site = state.final_close.unwrap();
    assert_eq!(site.how, CloseHow::Explicit);
    assert_eq!(site.location.file(), file!());
    assert_eq!(
        state.to_string(),
        format!("closed, cycle 1, final close at {}", site.location)
    );
    assert!(state
        .to_string()
        .starts_with("closed, cycle 1, final close at tests/traits.rs:"));

    // The next cycle: the previous cycle's close is not shown while open.
    let c = mo.open().unwrap();
    assert_eq!(mo.state().to_string(), "open (1 open), cycle 2");
    drop(c);
    let state = mo.state();
    assert_eq!(state.final_close.unwrap().how, CloseHow::GuardDropped);
    assert!(
        state.to_string().starts_with(
            "closed, cycle 2, final close at drop of the guard opened at tests/traits.rs:"
        ),
        "{state}"
    );
}

#[test]
fn multi_open_state_display_of_every_phase() {
    let site = CloseSite {
        location: std::panic::Location::caller(),
        how: CloseHow::Explicit,
    };
    let state = |phase, open_count, cycle, detached, final_close| MultiOpenState {
        phase,
        open_count,
        cycle,
        detached,
        final_close,
        sealed: false,
        lingering: false,
    };
    let lingering = MultiOpenState {
        lingering: true,
        ..state(Phase::Open, 0, 2, 0, Some(site))
    };
    let sealed = |s: MultiOpenState| MultiOpenState { sealed: true, ..s };
    let cases = [
        (lingering, "open (0 opens), cycle 2, lingering".to_owned()),
        (
            sealed(state(Phase::Open, 1, 1, 0, None)),
            "open (1 open), cycle 1, sealed".to_owned(),
        ),
        (
            sealed(state(Phase::Closed, 0, 1, 0, Some(site))),
            format!("closed, cycle 1, sealed, final close at {}", site.location),
        ),
        (
            state(Phase::NeverOpened, 0, 0, 0, None),
            "never opened".to_owned(),
        ),
        (
            state(Phase::NeverOpened, 2, 0, 0, None),
            "never opened (2 opens)".to_owned(),
        ),
        (
            state(Phase::Starting, 1, 0, 0, None),
            "starting (1 open)".to_owned(),
        ),
        (
            state(Phase::Starting, 3, 4, 0, Some(site)),
            "starting (3 opens), cycle 4".to_owned(),
        ),
        (
            state(Phase::Open, 0, 1, 0, None),
            "open (0 opens), cycle 1".to_owned(),
        ),
        (
            state(Phase::Open, 5, 2, 5, Some(site)),
            "open (5 opens), cycle 2, 5 detached".to_owned(),
        ),
        (
            state(Phase::ShuttingDown, 0, 1, 0, Some(site)),
            format!("shutting down, cycle 1, final close at {}", site.location),
        ),
        (
            state(Phase::Closed, 0, 7, 0, None),
            "closed, cycle 7".to_owned(),
        ),
        (
            state(Phase::Closed, 2, 1, 0, Some(site)),
            format!(
                "closed (2 opens), cycle 1, final close at {}",
                site.location
            ),
        ),
    ];
    for (s, expected) in cases {
        assert_eq!(s.to_string(), expected, "{s:?}");
    }
}

#[test]
fn default_pool_makes_default_objects_and_reuses_them_across_threads() {
    let pool: Arc<multiopen::Pool<Vec<u8>>> = Arc::default();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let pool = Arc::clone(&pool);
            thread::spawn(move || {
                for _ in 0..100 {
                    let mut buf = pool.instance();
                    buf.clear(); // no reset hook on a default pool
                    buf.push(1);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let s = pool.stats();
    assert_eq!(s.out, 0);
    assert!(s.created <= 4 + multiopen::Pool::<Vec<u8>>::DEFAULT_MAX_SIZE);
    assert_eq!(s.created, s.retired() + s.idle);
    assert_eq!(
        pool.max_size(),
        multiopen::Pool::<Vec<u8>>::DEFAULT_MAX_SIZE
    );
}

#[test]
fn pool_stats_display_shows_the_rare_counts_only_when_they_happened() {
    let pool = multiopen::Pool::try_builder(|| Err::<u8, _>("no memory")).build();
    assert!(pool.try_instance().is_err());
    assert_eq!(
        pool.stats().to_string(),
        "0 created (0 reused), 0 idle, 0 out; 0 returned, 0 dropped full, 1 failed"
    );
    let pool = multiopen::Pool::new(|| 7u8);
    drop(pool.instance());
    assert_eq!(pool.clear(), 1);
    assert_eq!(
        pool.stats().to_string(),
        "1 created (0 reused), 0 idle, 0 out; 1 returned, 0 dropped full, 1 cleared"
    );
}
