//! Runs a scenario that could abort the process in a child process.

use std::process::Command;

/// The env var that makes a re-run of a test binary play one scenario; its
/// value is the scenario's test name.
const CHILD: &str = "MULTIOPEN_TEST_CHILD";

/// In the parent: re-runs this test binary on the test `name` alone
/// (`--exact`), with [`CHILD`] set to `name`, and asserts that the child
/// exited normally (not killed by a signal: a panic while panicking aborts
/// with `SIGABRT`), passed, and ran `scenario` to its end (it prints a
/// marker the parent looks for, so a filter that matched nothing cannot
/// pass). In the child: runs `scenario`, then prints the marker.
///
/// `name` must be the calling test's own name: the child re-enters the same
/// test, sees [`CHILD`] and plays the scenario instead of spawning.
pub fn in_child_process(name: &str, scenario: impl FnOnce()) {
    let done = format!("child scenario {name} finished");
    if std::env::var(CHILD).as_deref() == Ok(name) {
        scenario();
        println!("{done}");
        return;
    }
    let out = Command::new(std::env::current_exe().expect("the test binary's path"))
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, name)
        .output()
        .expect("the child process runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            out.status.signal(),
            None,
            "the child was killed by a signal (6 = SIGABRT):\n{stdout}\n{stderr}"
        );
    }
    assert!(
        out.status.success(),
        "the child failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains(&done),
        "the child did not run the scenario to its end:\n{stdout}\n{stderr}"
    );
}
