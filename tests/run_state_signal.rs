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

    for (signal, label) in [(libc::SIGINT, "SIGINT"), (libc::SIGTERM, "SIGTERM")] {
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
                // The reason names the signal.
                reason: Some(format!("signal {label}").into())
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

// --- catch_signals, the second signal, the restore (issue 13 item 9) ------------
//
// A scenario that must end the process runs in a child process (this test
// binary, re-run on the one test with `MULTIOPEN_CHILD` set); the parent
// checks how the child ended. Names start with `signal_in_child_process_`
// (one substring for a skip list).

/// The env var that makes a re-run of this binary play a scenario.
const CHILD: &str = "MULTIOPEN_CHILD";

/// In the parent: re-runs this test binary on test `name` with [`CHILD`]
/// set and asserts that the child printed each of `printed` and then was
/// killed by `killed_by` (`None`: exited normally, having printed
/// "scenario done"). In the child: runs `scenario`, then prints "scenario
/// done".
fn in_child(name: &str, killed_by: Option<i32>, printed: &[&str], scenario: impl FnOnce()) {
    if std::env::var_os(CHILD).is_some() {
        scenario();
        println!("scenario done");
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .expect("re-run the test binary");
    use std::os::unix::process::ExitStatusExt;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        killed_by,
        "the child ended otherwise: {:?}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    for line in printed {
        assert!(
            stdout.contains(line),
            "the child did not print {line:?}: {stdout}"
        );
    }
    if killed_by.is_none() {
        assert!(
            out.status.success() && stdout.contains("scenario done"),
            "{stdout}{stderr}"
        );
    } else {
        assert!(
            !stdout.contains("scenario done"),
            "the child outlived the signal"
        );
    }
}

/// Raises `signal` at this process.
fn raise(signal: i32) {
    // SAFETY: raise() has no preconditions.
    assert_eq!(unsafe { libc::raise(signal) }, 0);
}

/// Prints (and flushes) a line the parent looks for.
fn say(line: &str) {
    use std::io::Write;
    println!("{line}");
    std::io::stdout().flush().unwrap();
}

#[test]
fn signal_in_child_process_a_second_sigint_gets_the_default_action() {
    in_child(
        "signal_in_child_process_a_second_sigint_gets_the_default_action",
        Some(libc::SIGINT),
        &["first SIGINT cancelled"],
        || {
            let rs = Arc::new(RunState::new("cli"));
            let _canceller = rs.cancel_on_signals().unwrap();
            rs.start().unwrap();
            raise(libc::SIGINT);
            assert!(rs.sleep(Duration::from_secs(3600)).is_err());
            say("first SIGINT cancelled");
            raise(libc::SIGINT); // ends the process: the default action
        },
    );
}

#[test]
fn signal_in_child_process_each_kind_counts_on_its_own() {
    // A SIGINT then a SIGTERM: each is a first of its kind, so both cancel
    // (the state restarted between them) and the process lives on.
    in_child(
        "signal_in_child_process_each_kind_counts_on_its_own",
        None,
        &[],
        || {
            let rs = Arc::new(RunState::new("cli"));
            let _canceller = rs.cancel_on_signals().unwrap();
            for signal in [libc::SIGINT, libc::SIGTERM] {
                rs.start().unwrap();
                raise(signal);
                assert!(rs.sleep(Duration::from_secs(3600)).is_err());
                rs.stop().unwrap();
            }
        },
    );
}

#[test]
fn signal_in_child_process_dropping_the_canceller_restores_the_default_action() {
    in_child(
        "signal_in_child_process_dropping_the_canceller_restores_the_default_action",
        Some(libc::SIGTERM),
        &["dropped"],
        || {
            let rs = Arc::new(RunState::new("cli"));
            drop(rs.cancel_on_signals().unwrap());
            say("dropped");
            raise(libc::SIGTERM); // ends the process, as before the canceller
        },
    );
}

#[test]
fn signal_in_child_process_a_new_canceller_after_a_drop_cancels_on_the_first_signal_again() {
    in_child(
        "signal_in_child_process_a_new_canceller_after_a_drop_cancels_on_the_first_signal_again",
        Some(libc::SIGINT),
        &["second canceller cancelled"],
        || {
            let rs = Arc::new(RunState::new("cli"));
            let first = rs.cancel_on_signals().unwrap();
            rs.start().unwrap();
            raise(libc::SIGINT);
            assert!(rs.sleep(Duration::from_secs(3600)).is_err());
            rs.stop().unwrap();
            drop(first);
            let _second = rs.cancel_on_signals().unwrap();
            rs.start().unwrap();
            raise(libc::SIGINT); // a first again: cancels, does not kill
            assert!(rs.sleep(Duration::from_secs(3600)).is_err());
            say("second canceller cancelled");
            raise(libc::SIGINT); // the second under it: the default action
        },
    );
}

#[test]
fn signal_in_child_process_an_ignored_signal_stays_ignored() {
    in_child(
        "signal_in_child_process_an_ignored_signal_stays_ignored",
        None,
        &[],
        || {
            // SAFETY: setting SIGUSR1's disposition to "ignore" before any
            // handler is installed; no other thread relies on it.
            unsafe { libc::signal(libc::SIGUSR1, libc::SIG_IGN) };
            let rs = Arc::new(RunState::new("cli"));
            let canceller = rs.catch_signals(&[libc::SIGUSR1]).unwrap();
            rs.start().unwrap();
            raise(libc::SIGUSR1);
            assert!(rs.sleep(Duration::from_secs(3600)).is_err());
            raise(libc::SIGUSR1); // a second: ignored, as before
            drop(canceller);
            raise(libc::SIGUSR1); // after the drop: ignored, as before
        },
    );
}

#[test]
fn catch_signals_cancels_on_the_chosen_signal_only() {
    let _signals = signals();
    let rs = Arc::new(RunState::new("reloader"));
    let canceller = rs.catch_signals(&[libc::SIGUSR2]).unwrap();
    rs.start().unwrap();
    raise(libc::SIGUSR2);
    assert!(rs.sleep(Duration::from_secs(3600)).is_err());
    rs.stop().unwrap();
    drop(canceller);
}

#[test]
fn fallible_call_never_panics_on_bad_input_a_forbidden_or_no_signal() {
    let _signals = signals();
    let rs = Arc::new(RunState::new("job"));
    for bad in [
        &[libc::SIGKILL][..],
        &[libc::SIGSEGV],
        &[libc::SIGINT, libc::SIGSTOP],
        &[],
    ] {
        let err = catch_unwind(AssertUnwindSafe(|| rs.catch_signals(bad)))
            .expect("catch_signals panicked")
            .expect_err("refused");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
        assert!(err.to_string().starts_with("job: "), "{err}");
    }
    // Nothing was armed by the refusals: SIGINT still only cancels once a
    // canceller is installed, and the state was never touched.
    assert!(!rs.cancelled());
}
