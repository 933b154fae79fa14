//! Gating a test on another thread being really blocked, not on a sleep.
//!
//! A test that races a transition against a waiter must know that the
//! waiter has begun waiting (has read the state it waits on) before the
//! transition; a `thread::sleep` only hopes so, and on a loaded machine the
//! waiter may start late, see the new state and fail the test. Here the
//! waiter reports its kernel thread id ([`BlockedSpot::report`], an atomic
//! store: no futex of its own) just before its blocking call, and the test
//! polls `/proc/self/task/<tid>/syscall` until that thread sits in a futex
//! *wait* ([`BlockedSpot::wait_until_blocked`]): every wait of the crate
//! reads its state word before that system call, so from then on it has
//! seen the state of before the race.
//!
//! Under Miri (no `/proc`; its scheduler runs the other threads while this
//! one sleeps) and off Linux, it falls back to a sleep.

use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

/// How long [`BlockedSpot::wait_until_blocked`] waits for the thread to
/// report and block before it fails the test: a hang guard on a loaded
/// machine, not a speed claim.
const PATIENCE: Duration = Duration::from_secs(30);

/// Where one thread reports its id before it blocks, for another thread to
/// wait until it has. Share it by reference (scoped threads) or in an
/// `Arc`.
#[derive(Debug, Default)]
pub struct BlockedSpot {
    /// The reporter's kernel thread id; 0 until it reports.
    tid: AtomicI32,
}

impl BlockedSpot {
    pub fn new() -> Self {
        Self::default()
    }

    /// Called by the thread about to block, as the last thing before its
    /// blocking call.
    pub fn report(&self) {
        // Release: pairs with the Acquire in `wait_until_blocked` (only a
        // hand-over of the id; the /proc poll is the real gate).
        self.tid.store(current_tid(), Ordering::Release);
    }

    /// Returns once the reporting thread has reported and then sits in a
    /// futex wait (or has exited: its test then reports what it returned).
    /// Panics after [`PATIENCE`].
    pub fn wait_until_blocked(&self) {
        wait_until_blocked(&self.tid);
    }
}

/// Every spot's thread blocked, one after another.
pub fn wait_until_all_blocked<'a>(spots: impl IntoIterator<Item = &'a BlockedSpot>) {
    for spot in spots {
        spot.wait_until_blocked();
    }
}

#[cfg(all(target_os = "linux", not(miri)))]
fn current_tid() -> i32 {
    // SAFETY: gettid takes no arguments, cannot fail and touches no memory.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    i32::try_from(tid).expect("a thread id fits an i32")
}

#[cfg(not(all(target_os = "linux", not(miri))))]
fn current_tid() -> i32 {
    1 // unused: the fallback sleeps
}

#[cfg(all(target_os = "linux", not(miri)))]
fn wait_until_blocked(slot: &AtomicI32) {
    use std::time::Instant;

    let deadline = Instant::now() + PATIENCE;
    let tid = loop {
        // Acquire: see the `Release` in `report`.
        let tid = slot.load(Ordering::Acquire);
        if tid != 0 {
            break tid;
        }
        assert!(
            Instant::now() < deadline,
            "the thread never reported its id within {PATIENCE:?}"
        );
        std::thread::yield_now();
    };
    let path = format!("/proc/self/task/{tid}/syscall");
    loop {
        let line = match std::fs::read_to_string(&path) {
            Ok(line) => line,
            // The thread has exited: it will never block, and its result
            // tells the test what happened.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => panic!("cannot read {path} to see whether thread {tid} blocks: {e}"),
        };
        if in_futex_wait(&line) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "thread {tid} did not block in a futex wait within {PATIENCE:?}; \
             last {path}: {line:?}"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// `/proc/<pid>/task/<tid>/syscall` of a thread blocked in a system call:
/// its number, then its arguments in hex ("running" while it runs). A
/// futex wait: `SYS_futex` with a `FUTEX_WAIT`/`FUTEX_WAIT_BITSET` command
/// (not a wake, which also passes through the kernel).
#[cfg(all(target_os = "linux", not(miri)))]
fn in_futex_wait(line: &str) -> bool {
    let mut fields = line.split_whitespace();
    let number = fields.next().and_then(|n| n.parse::<libc::c_long>().ok());
    if number != Some(libc::SYS_futex) {
        return false;
    }
    let op = fields
        .nth(1) // skip the address, take the operation
        .and_then(|op| i64::from_str_radix(op.trim_start_matches("0x"), 16).ok());
    let Some(op) = op else { return false };
    let command = op & !i64::from(libc::FUTEX_PRIVATE_FLAG | libc::FUTEX_CLOCK_REALTIME);
    command == i64::from(libc::FUTEX_WAIT) || command == i64::from(libc::FUTEX_WAIT_BITSET)
}

#[cfg(not(all(target_os = "linux", not(miri))))]
fn wait_until_blocked(_slot: &AtomicI32) {
    // Miri's scheduler runs the other threads while this one sleeps; off
    // Linux this only hopes (a late thread makes the test fail, never
    // hang).
    let _ = PATIENCE;
    std::thread::sleep(Duration::from_millis(20));
}
