//! How late a timed wait returns past its deadline: `RunState::sleep` (the
//! crate's one timed futex wait), `MultiOpen::open_timeout` (an opener
//! behind a startup that does not end) and `MultiOpen::join_timeout` (a
//! joiner of a cycle that does not end) that time out, beside
//! `std::sync::Condvar::wait_timeout`, interleaved in one run so all see
//! the same machine load.
//!
//! `cargo run --release --example sleep_overshoot [waits] [micros]`
//! (defaults: 200 waits of 1000 µs). Prints p50/p99/max of the overshoot;
//! exits non-zero only if a wait returned early (before its deadline).

use std::sync::{mpsc, Condvar, Mutex};
use std::time::{Duration, Instant};

use multiopen::{JoinError, MultiOpen, OpenError, RunState};

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
    let (mut open_late, mut join_late) = (Vec::new(), Vec::new());
    let mut early = 0;

    // An object whose startup, run by a helper thread, lasts until the end:
    // every `open_timeout` here sleeps behind it and times out.
    let (finish_startup, startup_may_end) = mpsc::channel::<()>();
    let startup_may_end = Mutex::new(startup_may_end);
    let (startup_began, began) = mpsc::channel();
    let stuck = MultiOpen::from_fns(
        move || {
            startup_began.send(()).unwrap();
            let _ = startup_may_end.lock().unwrap().recv();
            Ok::<_, std::io::Error>(())
        },
        |()| Ok(()),
    );
    // An object held open by this thread: every `join_timeout` times out.
    let held = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |()| Ok(()));
    let guard = held.open().expect("startup works");
    std::thread::scope(|s| {
        s.spawn(|| drop(stuck.open().expect("startup ends at last")));
        began.recv().expect("the startup began");
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

            let t0 = Instant::now();
            let timed_out = matches!(stuck.open_timeout(d), Err(OpenError::TimedOut { .. }));
            let took = t0.elapsed();
            assert!(timed_out, "the startup never ends: open_timeout times out");
            early += usize::from(took < d);
            open_late.push(took.saturating_sub(d));

            let t0 = Instant::now();
            let timed_out = matches!(held.join_timeout(d), Err(JoinError::TimedOut { .. }));
            let took = t0.elapsed();
            assert!(timed_out, "the cycle never ends: join_timeout times out");
            early += usize::from(took < d);
            join_late.push(took.saturating_sub(d));
        }
        finish_startup.send(()).expect("the startup waits");
    });
    drop(guard);
    let (s50, s99, smax) = quantiles(sleep_late);
    let (c50, c99, cmax) = quantiles(condvar_late);
    let (o50, o99, omax) = quantiles(open_late);
    let (j50, j99, jmax) = quantiles(join_late);
    println!("overshoot of {waits} timed waits of {d:?} (interleaved):");
    println!("  RunState::sleep         p50 {s50:>10.1?}  p99 {s99:>10.1?}  max {smax:>10.1?}");
    println!("  open_timeout            p50 {o50:>10.1?}  p99 {o99:>10.1?}  max {omax:>10.1?}");
    println!("  join_timeout            p50 {j50:>10.1?}  p99 {j99:>10.1?}  max {jmax:>10.1?}");
    println!("  Condvar::wait_timeout   p50 {c50:>10.1?}  p99 {c99:>10.1?}  max {cmax:>10.1?}");
    if early > 0 {
        eprintln!("{early} timed waits returned before their deadline");
        std::process::exit(1);
    }
}
