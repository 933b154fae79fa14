#![cfg(all(not(loom), feature = "signal", target_os = "linux"))]
//! The `signal` feature: SIGINT and SIGTERM, raised at this process,
//! cancel a `RunState` while its `SignalCanceller` lives. One test function,
//! so no other test in this binary sees the signals.

use std::sync::Arc;
use std::time::Duration;

use multiopen::{Cancelled, RunState};

#[test]
fn sigint_and_sigterm_cancel_the_run_state() {
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
                name: "served".into()
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
