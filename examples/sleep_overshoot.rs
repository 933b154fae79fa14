//! How late a timed wait returns past its deadline: `RunState::sleep` (the
//! crate's one timed futex wait) beside `std::sync::Condvar::wait_timeout`,
//! interleaved in one run so both see the same machine load.
//!
//! `cargo run --release --example sleep_overshoot [waits] [micros]`
//! (defaults: 200 waits of 1000 µs). Prints p50/p99/max of the overshoot;
//! exits non-zero only if a wait returned early (before its deadline).

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use multiopen::RunState;

fn quantiles(mut late: Vec<Duration>) -> (Duration, Duration, Duration) {
    late.sort();
    let n = late.len();
    (late[n / 2], late[(n * 99 / 100).min(n - 1)], late[n - 1])
}

fn main() {
    let mut args = std::env::args().skip(1);
    let waits: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(200)
        .max(1);
    let micros: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let d = Duration::from_micros(micros);

    let state = RunState::new("sleeper");
    let lock = Mutex::new(());
    let condvar = Condvar::new();
    let (mut sleep_late, mut condvar_late) = (Vec::new(), Vec::new());
    let mut early = 0;
    for _ in 0..waits {
        let t0 = Instant::now();
        state.sleep(d).expect("never cancelled");
        let took = t0.elapsed();
        early += usize::from(took < d);
        sleep_late.push(took.saturating_sub(d));

        let t0 = Instant::now();
        let mut guard = lock.lock().unwrap();
        while let Some(left) = d.checked_sub(t0.elapsed()).filter(|l| !l.is_zero()) {
            guard = condvar.wait_timeout(guard, left).unwrap().0;
        }
        drop(guard);
        condvar_late.push(t0.elapsed().saturating_sub(d));
    }
    let (s50, s99, smax) = quantiles(sleep_late);
    let (c50, c99, cmax) = quantiles(condvar_late);
    println!("overshoot of {waits} timed waits of {d:?} (interleaved):");
    println!("  RunState::sleep         p50 {s50:>10.1?}  p99 {s99:>10.1?}  max {smax:>10.1?}");
    println!("  Condvar::wait_timeout   p50 {c50:>10.1?}  p99 {c99:>10.1?}  max {cmax:>10.1?}");
    if early > 0 {
        eprintln!("{early} sleeps returned before their deadline");
        std::process::exit(1);
    }
}
