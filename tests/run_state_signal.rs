#![cfg(all(not(loom), feature = "signal", target_os = "linux"))]
//! The `signal` feature: SIGINT and SIGTERM, raised at this process,
//! cancel a `RunState` while its `SignalCanceller` lives. The tests take
//! [`SIGNALS`] for their whole length, so no test sees another's signals.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::Duration;

use multiopen::{Cancelled, RunState, SignalCanceller};

/// Held by each test while it installs cancellers and raises signals.
static SIGNALS: Mutex<()> = Mutex::new(());

fn signals() -> MutexGuard<'static, ()> {
    SIGNALS.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn sigint_and_sigterm_cancel_the_run_state() {
    let _signals = signals();
    let rs = Arc::new(RunState::new("served"));
    let cancels = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&cancels);
    rs.on_cancel(move |_| {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    });
    let canceller = rs.cancel_on_signals().expect("signal handlers install");

    for signal in [libc::SIGINT, libc::SIGTERM] {
        rs.start().unwrap();
        assert!(!rs.cancelled());
        // SAFETY: raise() has no preconditions; the handler installed above
        // turns the signal into a cancel instead of ending the process.
        assert_eq!(unsafe { libc::raise(signal) }, 0);
        // The canceller's thread cancels; the sleep returns the moment it
        // does (it would take an hour otherwise).
        assert_eq!(
            rs.sleep(Duration::from_secs(3600)),
            Err(Cancelled {
                name: "served".into(),
                reason: None
            }),
            "signal {signal} did not cancel"
        );
        assert!(rs.stopping());
        rs.stop().unwrap();
    }
    // Dropping the canceller ends (and joins) its thread, so both cancels'
    // callbacks have run by now (a woken sleeper may return before the
    // cancelling thread has run them); the state is left alone.
    drop(canceller);
    assert_eq!(cancels.load(std::sync::atomic::Ordering::SeqCst), 2);
    rs.start().unwrap();
    assert!(!rs.cancelled());
}

#[test]
fn a_drop_never_joins_its_own_thread_when_an_on_cancel_callback_drops_the_canceller() {
    let _signals = signals();
    let rs = Arc::new(RunState::new("self-dropping"));
    let slot: Arc<Mutex<Option<SignalCanceller>>> = Arc::default();
    let (tx, rx) = mpsc::channel();
    let held = Arc::clone(&slot);
    let tx = Mutex::new(tx);
    // Runs on the canceller's own thread: dropping the canceller there must
    // not join that thread (a deadlock, which std reports with a panic).
    rs.on_cancel(move |_| {
        let canceller = held.lock().unwrap().take();
        let panicked = catch_unwind(AssertUnwindSafe(|| drop(canceller))).is_err();
        let _ = tx.lock().unwrap().send(panicked);
    });
    *slot.lock().unwrap() = Some(rs.cancel_on_signals().expect("signal handlers install"));
    rs.start().unwrap();
    // SAFETY: raise() has no preconditions; the canceller's handler turns
    // the signal into a cancel.
    assert_eq!(unsafe { libc::raise(libc::SIGINT) }, 0);
    let panicked = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the on_cancel callback ran and returned");
    assert!(
        !panicked,
        "dropping the canceller on its own thread panicked"
    );
    assert!(rs.stopping());
}

#[test]
fn fallible_call_never_panics_on_bad_input_a_nul_in_the_name() {
    let _signals = signals();
    let rs = Arc::new(RunState::new("job\0x"));
    let canceller = catch_unwind(AssertUnwindSafe(|| rs.cancel_on_signals()))
        .expect("cancel_on_signals panicked on a name with a NUL")
        .expect("the NUL is replaced, not refused");
    // Fully installed: a signal cancels.
    rs.start().unwrap();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::raise(libc::SIGTERM) }, 0);
    assert!(rs.sleep(Duration::from_secs(3600)).is_err());
    drop(canceller);
}
