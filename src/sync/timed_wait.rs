//! The one timed futex wait, native on every supported platform, and the
//! untimed wait and wake beside it (so that one wake reaches both kinds of
//! sleeper).
//!
//! [`wait_timeout`] sleeps while a `u32` word holds an expected value, for
//! at most a timeout, and says whether the timeout elapsed. It never polls
//! on a supported platform: a sleeper costs nothing until it is woken or
//! its time is up.
//!
//! | platform | timed wait | longest single wait |
//! |---|---|---|
//! | Linux, Android | `futex(FUTEX_WAIT \| FUTEX_PRIVATE_FLAG)`, relative `timespec` (`CLOCK_MONOTONIC`) | `i32::MAX` s, so the seconds fit every `time_t` |
//! | Windows | `WaitOnAddress`, milliseconds rounded up | `INFINITE - 1` ms (~49.7 days) |
//! | FreeBSD | `_umtx_op(UMTX_OP_WAIT_UINT_PRIVATE)`, relative `_umtx_time` (flags 0, `CLOCK_MONOTONIC`) | 2³⁰ s, so the kernel's absolute end stays below its 2³¹ s limit |
//! | macOS 14.4+ | `os_sync_wait_on_address_with_timeout`, found at run time | `u32::MAX` µs (~71.6 min) |
//! | macOS before 14.4 | `__ulock_wait`, microseconds rounded up | `u32::MAX` µs (~71.6 min) |
//! | anything else | polls: sleeps of at most 1 ms | none |
//!
//! A timeout longer than the platform's longest single wait is cut to it
//! and the wait then reports "not timed out" (like a spurious wake-up):
//! callers loop on their own deadline, so `Duration::MAX` sleeps until woken
//! and never overflows into a negative or invalid timeout (which would make
//! a caller's loop spin).
//!
//! The untimed [`wait`] and [`wake_all`] are `atomic-wait`'s on Linux,
//! Windows and FreeBSD, which use the very same kernel objects as the timed
//! wait here (the private futex, `WaitOnAddress`/`WakeByAddressAll`, the
//! private umtx word). On macOS `atomic-wait` goes through libc++'s
//! `__libcpp_atomic_wait`, which sleeps on a *table entry* rather than on
//! the word: its wake would never reach a timed sleeper on the word itself.
//! So on macOS the untimed wait and the wake are native too, from the same
//! family as the timed wait (`os_sync_*` when present, else `__ulock_*`).
//!
//! # macOS: why `__ulock_wait` as the fallback
//!
//! `os_sync_wait_on_address_with_timeout` is public but only exists from
//! macOS 14.4, so it is looked up with `dlsym(RTLD_DEFAULT, ..)` once and
//! cached in an atomic; linking it would make the crate fail to load on
//! older systems. Before 14.4 the only non-polling timed wait on an address
//! is `__ulock_wait`: private, but stable since macOS 10.12, and what
//! libc++'s `std::atomic::wait`, `os_sync_*` itself and other futex crates
//! are built on. (std's thread parker avoids it for App Store reasons, which
//! matter on iOS, where this module keeps the polling fallback.) A condvar
//! table would also avoid polling, but would add a lock and a second wake
//! path beside the kernel's.
//!
//! # Why not the `wait_on_address` crate
//!
//! `wait_on_address` 0.1.6 offers `wait_timeout` on the same platforms. Read
//! against this module's needs, it has these defects:
//!
//! - FreeBSD: it passes the *relative* timeout in a `_umtx_time` flagged
//!   `UMTX_ABSTIME` on `CLOCK_MONOTONIC`, i.e. as a point in time a few
//!   seconds after boot, long past: every timed wait returns at once.
//! - Linux: `as_secs() as time_t` turns a huge duration (`Duration::MAX`)
//!   into a negative `tv_sec`; the futex fails with `EINVAL` at once and a
//!   caller's loop spins.
//! - macOS: it passes `CLOCK_MONOTONIC` (6) as the `os_clockid_t`, whose
//!   only defined value is `OS_CLOCK_MACH_ABSOLUTE_TIME` (32); libSystem
//!   answers any other clock with `EINVAL`, so every timed wait returns at
//!   once. (It does resolve the 14.4 symbols at run
//!   time, so the "linked unconditionally" defect reported against earlier
//!   versions is gone in 0.1.6; its fallback is a condvar table.)
//! - Windows: `as_millis()` rounds *down*, so a sub-millisecond remainder
//!   becomes a zero timeout and a loop that re-checks a deadline spins.
//! - No result: `wait_timeout` returns `()`, so a caller cannot tell a
//!   timeout from a wake.
//! - It is edition 2024 (Rust 1.85), above this crate's `rust-version`.
//!
//! So this module is our own, on `libc`, and on Windows on the `windows-sys`
//! 0.42 that `atomic-wait` already depends on there (no new crate).

use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// Sleeps while `word` holds `expected`, for at most `timeout`.
///
/// Returns `false` if the timeout elapsed (as the OS measures it; a zero
/// timeout returns `false` at once, without a system call), `true` if it
/// returned for any other reason: woken, the word did not hold `expected`,
/// a signal, a spurious wake-up, or the platform's longest single wait (see
/// the module doc) was reached first. Callers loop on their own condition
/// and re-check their deadline.
#[inline]
pub(super) fn wait_timeout(word: &AtomicU32, expected: u32, timeout: Duration) -> bool {
    if timeout.is_zero() {
        return false;
    }
    platform::wait_timeout(word, expected, timeout)
}

/// Sleeps while `word` holds `expected`, with no timeout; may return
/// spuriously.
#[inline]
pub(super) fn wait(word: &AtomicU32, expected: u32) {
    platform::wait(word, expected);
}

/// Wakes every thread sleeping in [`wait`] or [`wait_timeout`] on `word`.
#[inline]
pub(super) fn wake_all(word: &AtomicU32) {
    platform::wake_all(word);
}

/// Wakes at least one thread sleeping in [`wait`] or [`wait_timeout`] on
/// `word` (one on every platform but macOS, where it wakes them all: see
/// there).
#[inline]
pub(super) fn wake_one(word: &AtomicU32) {
    platform::wake_one(word);
}

/// `timeout` cut to at most `longest`, and whether it was cut.
#[allow(dead_code)] // Not every platform cuts.
fn cut_to(timeout: Duration, longest: Duration) -> (Duration, bool) {
    if timeout > longest {
        (longest, true)
    } else {
        (timeout, false)
    }
}

/// After an error that says the wait is unusable here (say, a seccomp
/// filter refusing the call): a short sleep instead, so that a caller's
/// loop does not spin. Reports "not timed out".
#[allow(dead_code)] // Only the native platforms have such errors.
#[cold]
fn unusable(timeout: Duration) -> bool {
    std::thread::sleep(timeout.min(Duration::from_millis(1)));
    true
}

/// Linux and Android: the private futex of the word.
#[cfg(any(target_os = "linux", target_os = "android"))]
mod platform {
    use super::{cut_to, unusable};
    use std::sync::atomic::AtomicU32;
    use std::time::Duration;

    /// `atomic-wait`'s: `FUTEX_WAIT | FUTEX_PRIVATE_FLAG`, no timeout.
    #[inline]
    pub(super) fn wait(word: &AtomicU32, expected: u32) {
        atomic_wait::wait(word, expected);
    }

    /// `atomic-wait`'s: `FUTEX_WAKE | FUTEX_PRIVATE_FLAG` of every waiter.
    #[inline]
    pub(super) fn wake_all(word: &AtomicU32) {
        atomic_wait::wake_all(word);
    }

    /// `atomic-wait`'s wake of one waiter.
    #[inline]
    pub(super) fn wake_one(word: &AtomicU32) {
        atomic_wait::wake_one(word);
    }

    /// `FUTEX_WAIT | FUTEX_PRIVATE_FLAG` with a relative timeout, which the
    /// kernel measures on `CLOCK_MONOTONIC`; `timeout` is not zero.
    pub(super) fn wait_timeout(word: &AtomicU32, expected: u32, timeout: Duration) -> bool {
        // At most i32::MAX seconds (~68 years), so that they fit a 32-bit
        // `time_t` too.
        let (timeout, cut) = cut_to(timeout, Duration::from_secs(i32::MAX as u64));
        let ts = libc::timespec {
            tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
            // Below 10^9, so it fits a `c_long` of any width.
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: FUTEX_WAIT reads the aligned `u32` behind `as_ptr` (alive
        // for the call, as `word` is borrowed) and the relative timeout at
        // `&ts` (a valid timespec on this stack frame); it writes neither.
        let r = unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                expected,
                &ts as *const libc::timespec,
                std::ptr::null::<u32>(),
                0u32,
            )
        };
        if r == 0 {
            return true;
        }
        match std::io::Error::last_os_error().raw_os_error() {
            // Timed out: really, unless the timeout was cut.
            Some(libc::ETIMEDOUT) => cut,
            // Interrupted, or the word did not hold `expected`.
            Some(libc::EINTR | libc::EAGAIN) => true,
            _ => unusable(timeout),
        }
    }
}

/// Windows: `WaitOnAddress` on the word.
#[cfg(windows)]
mod platform {
    use super::{cut_to, unusable};
    use std::sync::atomic::AtomicU32;
    use std::time::Duration;
    use windows_sys::Win32::Foundation::{GetLastError, ERROR_TIMEOUT};
    use windows_sys::Win32::System::Threading::WaitOnAddress;

    /// `atomic-wait`'s: `WaitOnAddress` with `INFINITE`.
    #[inline]
    pub(super) fn wait(word: &AtomicU32, expected: u32) {
        atomic_wait::wait(word, expected);
    }

    /// `atomic-wait`'s: `WakeByAddressAll`.
    #[inline]
    pub(super) fn wake_all(word: &AtomicU32) {
        atomic_wait::wake_all(word);
    }

    /// `atomic-wait`'s wake of one waiter.
    #[inline]
    pub(super) fn wake_one(word: &AtomicU32) {
        atomic_wait::wake_one(word);
    }

    /// `WaitOnAddress` with a timeout in whole milliseconds, rounded up so
    /// that it never fires before `timeout`; `timeout` is not zero.
    pub(super) fn wait_timeout(word: &AtomicU32, expected: u32, timeout: Duration) -> bool {
        // Below INFINITE (u32::MAX), which would mean no timeout.
        const LONGEST_MS: u32 = u32::MAX - 1;
        let (timeout, cut) = cut_to(timeout, Duration::from_millis(u64::from(LONGEST_MS)));
        let ms = u32::try_from(timeout.as_nanos().div_ceil(1_000_000)).unwrap_or(LONGEST_MS);
        // SAFETY: WaitOnAddress reads the 4 aligned bytes at `as_ptr` (alive
        // for the call, as `word` is borrowed) and the 4 bytes of `expected`
        // on this stack frame; it writes neither.
        let woken = unsafe {
            WaitOnAddress(
                word.as_ptr().cast(),
                (&expected as *const u32).cast(),
                std::mem::size_of::<u32>(),
                ms,
            )
        };
        if woken != 0 {
            return true;
        }
        // SAFETY: GetLastError only reads this thread's last-error value.
        match unsafe { GetLastError() } {
            // Timed out: really, unless the timeout was cut.
            ERROR_TIMEOUT => cut,
            _ => unusable(timeout),
        }
    }
}

/// FreeBSD: the private umtx wait on the word.
#[cfg(target_os = "freebsd")]
mod platform {
    use super::{cut_to, unusable};
    use std::sync::atomic::AtomicU32;
    use std::time::Duration;

    /// `atomic-wait`'s: `_umtx_op(UMTX_OP_WAIT_UINT_PRIVATE)`, no timeout.
    #[inline]
    pub(super) fn wait(word: &AtomicU32, expected: u32) {
        atomic_wait::wait(word, expected);
    }

    /// `atomic-wait`'s: `_umtx_op(UMTX_OP_WAKE_PRIVATE)` of every waiter.
    #[inline]
    pub(super) fn wake_all(word: &AtomicU32) {
        atomic_wait::wake_all(word);
    }

    /// `atomic-wait`'s wake of one waiter.
    #[inline]
    pub(super) fn wake_one(word: &AtomicU32) {
        atomic_wait::wake_one(word);
    }

    /// `_umtx_op(UMTX_OP_WAIT_UINT_PRIVATE)` with a *relative* `_umtx_time`
    /// (flags 0, not `UMTX_ABSTIME`) on `CLOCK_MONOTONIC`; `timeout` is not
    /// zero.
    pub(super) fn wait_timeout(word: &AtomicU32, expected: u32, timeout: Duration) -> bool {
        // At most 2^30 s (~34 years), a conservative cap: the kernel adds
        // the uptime to a relative timeout and keeps the end as a 32.32
        // fixed-point `sbintime_t`, which cannot hold 2^31 s.
        let (timeout, cut) = cut_to(timeout, Duration::from_secs(1 << 30));
        let mut umtx_time = libc::_umtx_time {
            _timeout: libc::timespec {
                tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
                // Below 10^9, so it fits a `c_long` of any width.
                tv_nsec: timeout.subsec_nanos() as libc::c_long,
            },
            // Relative: no UMTX_ABSTIME.
            _flags: 0,
            _clockid: libc::CLOCK_MONOTONIC as u32,
        };
        // SAFETY: as _umtx_op(2) specifies for a timed UMTX_OP_WAIT_UINT_PRIVATE:
        // it reads the aligned `u32` behind `as_ptr` (alive for the call, as
        // `word` is borrowed), takes the size of the `_umtx_time` as `uaddr`
        // (an integer, never dereferenced) and reads the `_umtx_time` at
        // `uaddr2`, a valid value on this stack frame.
        let r = unsafe {
            libc::_umtx_op(
                word.as_ptr().cast(),
                libc::UMTX_OP_WAIT_UINT_PRIVATE,
                libc::c_ulong::from(expected),
                std::ptr::without_provenance_mut(std::mem::size_of::<libc::_umtx_time>()),
                (&mut umtx_time as *mut libc::_umtx_time).cast(),
            )
        };
        if r == 0 {
            return true;
        }
        match std::io::Error::last_os_error().raw_os_error() {
            // Timed out: really, unless the timeout was cut.
            Some(libc::ETIMEDOUT) => cut,
            Some(libc::EINTR) => true,
            _ => unusable(timeout),
        }
    }
}

/// macOS: `os_sync_*` (14.4+, found at run time), else `__ulock_*`.
#[cfg(target_os = "macos")]
mod platform {
    use super::{cut_to, unusable};
    use std::ffi::{c_int, c_void, CStr};
    use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU8, Ordering};
    use std::time::Duration;

    /// `<sys/ulock.h>`: compare a `u32` and wait, process-private.
    const UL_COMPARE_AND_WAIT: u32 = 1;
    /// `<sys/ulock.h>`: wake every waiter, not one.
    const ULF_WAKE_ALL: u32 = 0x100;
    /// `<os/os_sync_wait_on_address.h>`: process-private (no flag).
    const OS_SYNC_NONE: u32 = 0;
    /// `<os/clock.h>`: the only defined `os_clockid_t`.
    const OS_CLOCK_MACH_ABSOLUTE_TIME: u32 = 32;
    /// The longest single timed wait: `__ulock_wait`'s `u32` microseconds,
    /// kept for `os_sync_*` too so that the two behave alike.
    const LONGEST: Duration = Duration::from_micros(u32::MAX as u64);

    extern "C" {
        /// libSystem's private futex wait (xnu `bsd/sys/ulock.h`, stable
        /// since macOS 10.12): sleeps while the `u32` at `addr` equals
        /// `value`, for at most `timeout_us` µs (0: no timeout). -1 and
        /// `errno` on error (`ETIMEDOUT` when the time is up).
        fn __ulock_wait(operation: u32, addr: *mut c_void, value: u64, timeout_us: u32) -> c_int;
        /// Wakes threads in `__ulock_wait` on `addr` (all with `ULF_WAKE_ALL`).
        fn __ulock_wake(operation: u32, addr: *mut c_void, wake_value: u64) -> c_int;
    }

    /// `os_sync_wait_on_address(addr, value, size, flags)`.
    type WaitFn = unsafe extern "C" fn(*mut c_void, u64, usize, u32) -> c_int;
    /// `os_sync_wait_on_address_with_timeout(addr, value, size, flags,
    /// clockid, timeout_ns)`: a relative timeout in nanoseconds, not zero.
    type WaitTimeoutFn = unsafe extern "C" fn(*mut c_void, u64, usize, u32, u32, u64) -> c_int;
    /// `os_sync_wake_by_address_all(addr, size, flags)`.
    type WakeFn = unsafe extern "C" fn(*mut c_void, usize, u32) -> c_int;

    /// The macOS 14.4 functions, when the running system has them.
    struct OsSync {
        wait: WaitFn,
        wait_timeout: WaitTimeoutFn,
        wake_all: WakeFn,
    }

    /// Not looked up yet.
    const UNKNOWN: u8 = 0;
    /// Looked up and missing: use `__ulock_*`.
    const ABSENT: u8 = 1;
    /// Looked up and present, in the three pointers below.
    const PRESENT: u8 = 2;
    /// Which family this process uses: fixed by the first lookup, so that a
    /// wake always comes from the family its sleepers wait in.
    static FAMILY: AtomicU8 = AtomicU8::new(UNKNOWN);
    static WAIT: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
    static WAIT_TIMEOUT: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
    static WAKE_ALL: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());

    /// The `os_sync_*` functions, or `None` before macOS 14.4.
    #[inline]
    fn os_sync() -> Option<OsSync> {
        // Acquire: pairs with the Release in `look_up`, so the pointers it
        // stored before are seen.
        let family = match FAMILY.load(Ordering::Acquire) {
            UNKNOWN => look_up(),
            family => family,
        };
        if family != PRESENT {
            return None;
        }
        // Relaxed: ordered by the Acquire load of FAMILY above.
        let (wait, wait_timeout, wake_all) = (
            WAIT.load(Ordering::Relaxed),
            WAIT_TIMEOUT.load(Ordering::Relaxed),
            WAKE_ALL.load(Ordering::Relaxed),
        );
        // SAFETY: PRESENT is published only after these three were stored,
        // each a non-null `dlsym` result for the function of that name, whose
        // C signature is the function-pointer type it becomes here.
        unsafe {
            Some(OsSync {
                wait: std::mem::transmute::<*mut c_void, WaitFn>(wait),
                wait_timeout: std::mem::transmute::<*mut c_void, WaitTimeoutFn>(wait_timeout),
                wake_all: std::mem::transmute::<*mut c_void, WakeFn>(wake_all),
            })
        }
    }

    /// Looks the `os_sync_*` functions up (once per process, or a few times
    /// if threads race: each finds the same) and records the family.
    #[cold]
    fn look_up() -> u8 {
        // SAFETY: dlsym with RTLD_DEFAULT only reads the NUL-terminated name
        // and searches the images loaded in this process.
        let find = |name: &CStr| unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
        let wait = find(c"os_sync_wait_on_address");
        let wait_timeout = find(c"os_sync_wait_on_address_with_timeout");
        let wake_all = find(c"os_sync_wake_by_address_all");
        let family = if wait.is_null() || wait_timeout.is_null() || wake_all.is_null() {
            ABSENT
        } else {
            // Relaxed: published by the Release store of FAMILY below.
            WAIT.store(wait, Ordering::Relaxed);
            WAIT_TIMEOUT.store(wait_timeout, Ordering::Relaxed);
            WAKE_ALL.store(wake_all, Ordering::Relaxed);
            PRESENT
        };
        // Release: see `os_sync`.
        FAMILY.store(family, Ordering::Release);
        family
    }

    /// `os_sync_wait_on_address`, else `__ulock_wait` with no timeout.
    pub(super) fn wait(word: &AtomicU32, expected: u32) {
        let addr = word.as_ptr().cast::<c_void>();
        match os_sync() {
            // SAFETY: reads the 4 aligned bytes at `addr`, alive for the
            // call as `word` is borrowed; writes nothing.
            Some(f) => unsafe { (f.wait)(addr, u64::from(expected), 4, OS_SYNC_NONE) },
            // SAFETY: as above; UL_COMPARE_AND_WAIT compares a `u32`.
            None => unsafe { __ulock_wait(UL_COMPARE_AND_WAIT, addr, u64::from(expected), 0) },
        };
    }

    /// `os_sync_wake_by_address_all`, else `__ulock_wake(ULF_WAKE_ALL)`.
    pub(super) fn wake_all(word: &AtomicU32) {
        let addr = word.as_ptr().cast::<c_void>();
        match os_sync() {
            // SAFETY: uses `addr` only as the key of its sleepers.
            Some(f) => unsafe { (f.wake_all)(addr, 4, OS_SYNC_NONE) },
            // SAFETY: as above.
            None => unsafe { __ulock_wake(UL_COMPARE_AND_WAIT | ULF_WAKE_ALL, addr, 0) },
        };
    }

    /// Wakes every waiter, as `wake_all`: `os_sync_wake_by_address_any` is
    /// not among the functions looked up, and a `__ulock_wake` of one
    /// might not reach an `os_sync` sleeper. Extra wakes are harmless
    /// (every caller loops on its own condition); only the cost differs.
    pub(super) fn wake_one(word: &AtomicU32) {
        wake_all(word);
    }

    /// `os_sync_wait_on_address_with_timeout` (relative nanoseconds on
    /// `OS_CLOCK_MACH_ABSOLUTE_TIME`), else `__ulock_wait` (microseconds
    /// rounded up, so at least 1: 0 would mean no timeout); `timeout` is
    /// not zero.
    pub(super) fn wait_timeout(word: &AtomicU32, expected: u32, timeout: Duration) -> bool {
        let (timeout, cut) = cut_to(timeout, LONGEST);
        let addr = word.as_ptr().cast::<c_void>();
        let r = match os_sync() {
            Some(f) => {
                // Not zero (which is EINVAL), and at most LONGEST: fits.
                let ns = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
                // SAFETY: reads the 4 aligned bytes at `addr`, alive for the
                // call as `word` is borrowed; writes nothing.
                unsafe {
                    (f.wait_timeout)(
                        addr,
                        u64::from(expected),
                        4,
                        OS_SYNC_NONE,
                        OS_CLOCK_MACH_ABSOLUTE_TIME,
                        ns,
                    )
                }
            }
            None => {
                // At least 1 (timeout is not zero), at most u32::MAX.
                let us = u32::try_from(timeout.as_nanos().div_ceil(1_000)).unwrap_or(u32::MAX);
                // SAFETY: as above; UL_COMPARE_AND_WAIT compares a `u32`.
                unsafe { __ulock_wait(UL_COMPARE_AND_WAIT, addr, u64::from(expected), us) }
            }
        };
        if r >= 0 {
            return true;
        }
        match std::io::Error::last_os_error().raw_os_error() {
            // Timed out: really, unless the timeout was cut.
            Some(libc::ETIMEDOUT) => cut,
            Some(libc::EINTR | libc::EFAULT) => true,
            _ => unusable(timeout),
        }
    }
}

/// Anything else (iOS, watchOS, ...): not a supported target. `atomic-wait`
/// for the untimed wait, and a timed wait that polls in sleeps of at most
/// 1 ms (a wake is noticed within a step), correct but not free.
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    windows,
    target_os = "freebsd",
    target_os = "macos"
)))]
mod platform {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    /// `atomic-wait`'s untimed wait.
    #[inline]
    pub(super) fn wait(word: &AtomicU32, expected: u32) {
        atomic_wait::wait(word, expected);
    }

    /// `atomic-wait`'s wake of every waiter.
    #[inline]
    pub(super) fn wake_all(word: &AtomicU32) {
        atomic_wait::wake_all(word);
    }

    /// `atomic-wait`'s wake of one waiter.
    #[inline]
    pub(super) fn wake_one(word: &AtomicU32) {
        atomic_wait::wake_one(word);
    }

    /// One polling step: sleeps at most 1 ms if the word holds `expected`;
    /// "timed out" only if the step covered all of `timeout`.
    pub(super) fn wait_timeout(word: &AtomicU32, expected: u32, timeout: Duration) -> bool {
        // Relaxed: a hint; the caller re-loads the word as it needs.
        if word.load(Ordering::Relaxed) != expected {
            return true;
        }
        let step = timeout.min(Duration::from_millis(1));
        std::thread::sleep(step);
        step < timeout
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::{wait_timeout, wake_all};
    use crate::sync::Futex;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::mpsc;
    use std::thread;
    use std::time::{Duration, Instant};

    /// Runs `f` in a thread and returns its result; panics with "hung" if
    /// it has not returned after a minute. A hang detector, not a speed
    /// claim: every call it guards returns at once or after a few ms.
    fn watchdog<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || tx.send(f()));
        rx.recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("{what} hung"))
    }

    #[test]
    fn a_timed_wait_times_out_no_earlier_than_its_timeout() {
        let word = AtomicU32::new(0);
        for d in [1, 20, 100].map(Duration::from_millis) {
            let t0 = Instant::now();
            let woken = wait_timeout(&word, 0, d);
            let took = t0.elapsed();
            assert!(!woken, "nobody woke it: it timed out");
            assert!(took >= d, "{d:?} timed out early, after {took:?}");
        }
    }

    #[test]
    fn the_deadline_form_times_out_no_earlier_than_its_deadline() {
        let futex = Futex::new(0);
        let d = Duration::from_millis(30);
        let t0 = Instant::now();
        let deadline = Some(t0 + d);
        while futex.wait_until(0, deadline) {}
        let took = t0.elapsed();
        assert!(took >= d, "timed out early, after {took:?}");
    }

    /// The OS's "timed out" is not trusted: an early one (here a fake wait
    /// that reports a time-out at once) reads as a spurious wake-up until
    /// the clock reaches the deadline.
    #[test]
    fn an_early_os_time_out_is_not_reported_before_the_deadline() {
        let deadline = Instant::now() + Duration::from_secs(3600);
        assert!(super::super::until_by_clock(deadline, |_left| false));
        let past = Instant::now();
        assert!(!super::super::until_by_clock(past, |_left| false));
        // A caller's loop on a fake that always times out early ends only
        // once the clock has reached the deadline.
        let d = Duration::from_millis(5);
        let t0 = Instant::now();
        while super::super::until_by_clock(t0 + d, |_left| false) {}
        assert!(t0.elapsed() >= d);
    }

    #[test]
    fn a_zero_timeout_or_a_past_deadline_times_out_without_sleeping() {
        let futex = Futex::new(0);
        assert!(!wait_timeout(&futex, 0, Duration::ZERO));
        assert!(!futex.wait_timeout(0, Duration::ZERO));
        assert!(!futex.wait_until(0, Some(Instant::now())));
        assert!(!futex.wait_until(0, Some(Instant::now() - Duration::from_millis(1))));
        // A word that does not hold `expected`: no sleep either (an hour's
        // timeout: a sleep would be a hang, which the watchdog reports).
        let woken = watchdog("a wait on a word that changed", || {
            wait_timeout(&AtomicU32::new(0), 1, Duration::from_secs(3600))
        });
        assert!(woken);
    }

    /// Every overflow-prone timeout sleeps until woken: each waiter is still
    /// asleep after 50 ms, then a wake releases it and it reports "woken".
    #[test]
    fn huge_timeouts_wait_until_woken() {
        let huge = [
            Duration::MAX,
            Duration::from_secs(u64::MAX),
            Duration::from_secs(i64::MAX as u64 + 1),
            Duration::from_secs(u64::from(u32::MAX) + 1),
            Duration::from_secs(i32::MAX as u64 + 1),
            Duration::from_millis(u64::from(u32::MAX)),
        ];
        for timeout in huge {
            let word = AtomicU32::new(0);
            thread::scope(|s| {
                let waiter = s.spawn(|| wait_timeout(&word, 0, timeout));
                thread::sleep(Duration::from_millis(50));
                assert!(!waiter.is_finished(), "{timeout:?} returned at once");
                word.store(1, Ordering::Relaxed);
                wake_all(&word);
                assert!(waiter.join().unwrap(), "{timeout:?}: woken, not timed out");
            });
        }
        // And the deadline form: no deadline, and one far away.
        let far = Instant::now().checked_add(Duration::from_secs(1 << 40));
        assert!(far.is_some(), "this Instant can be that far");
        for deadline in [None, far] {
            let futex = Futex::new(0);
            thread::scope(|s| {
                let waiter = s.spawn(|| futex.wait_until(0, deadline));
                thread::sleep(Duration::from_millis(50));
                assert!(!waiter.is_finished(), "{deadline:?} returned at once");
                futex.store(1, Ordering::Relaxed);
                futex.wake_all();
                assert!(waiter.join().unwrap(), "{deadline:?}: woken");
            });
        }
    }

    /// A wake ends a timed wait before its (hour-long) timeout: the wait
    /// reports "woken", never "timed out". The waiter may or may not be
    /// asleep when the wake comes (if not, it finds the word changed and
    /// does not sleep); either order must end the same way.
    #[test]
    fn a_wake_releases_a_timed_waiter_early() {
        let futex = Futex::new(0);
        let timeout = Duration::from_secs(3600);
        thread::scope(|s| {
            let (about_to_wait, waiting) = mpsc::channel();
            let futex = &futex;
            let waiter = s.spawn(move || {
                about_to_wait.send(()).unwrap();
                // Re-check as callers do: sleep until the word changes.
                while futex.load(Ordering::Acquire) == 0 {
                    assert!(futex.wait_timeout(0, timeout), "timed out, never woken");
                }
            });
            waiting.recv().unwrap();
            futex.store(1, Ordering::Release);
            futex.wake_all();
            waiter.join().unwrap();
        });
    }
}
