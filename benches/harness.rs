//! Measuring helpers shared by the criterion benches in this package
//! (`multiopen.rs`, `pool.rs`, `runstate.rs`).
//!
//! The machine these benches run on has 2 cores and is shared, so a figure
//! only means something beside its floor and its peers from the same run
//! (see SPEC "Speed"). These helpers make every bench measure the same way:
//!
//! - [`parallel`] / [`parallel_with`]: run a body on N threads, each pinned
//!   to a CPU, all released at one [`Barrier`], and return
//!   (last end − first start). Hand that to criterion's
//!   [`iter_custom`](criterion::Bencher::iter_custom): criterion divides by
//!   `iters`, so the figure it reports is **wall time per iteration per
//!   thread**, `(last end − first start) / iters`. At 1 thread that is the
//!   cost of one operation; at N threads it is how long it takes until every
//!   thread has done one more, i.e. contended latency, not throughput (the
//!   machine completed N operations in that time).
//! - [`wake_latency`]: the time from a waker's action to a sleeping thread
//!   running again, measured the same way for the bare futex hand-off
//!   ([`futex_handoff`], the floor) and for any primitive's blocking call.
//! - [`futex_ping_pong`]: a futex round trip between two threads, for
//!   reference.
//! - [`spin`] / [`hold_spins`]: a busy hold of a calibrated number of
//!   microseconds, the same work whatever the clock does.
//! - [`interleaved`]: the same contenders in short alternating rounds, for
//!   ratios that hold up while other work loads the machine; criterion
//!   measures one function at a time, for seconds, and cannot do that.
//!
//! ```no_run
//! use criterion::Criterion;
//! use multiopen_benches::parallel;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//!
//! fn bench(c: &mut Criterion) {
//!     let counter = AtomicUsize::new(0);
//!     c.bench_function("fetch_add/2", |b| {
//!         b.iter_custom(|iters| {
//!             parallel(2, iters, |_thread| {
//!                 counter.fetch_add(1, Ordering::Relaxed);
//!             })
//!         })
//!     });
//! }
//! ```

#![warn(missing_docs)]

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Barrier, Mutex, OnceLock};
use std::time::{Duration, Instant};

use core_affinity::CoreId;

/// The CPUs this process may run on, looked up once: the thread pinning
/// below goes round-robin over them. Empty where the platform cannot say
/// (threads then run unpinned).
pub fn cores() -> &'static [CoreId] {
    static CORES: OnceLock<Vec<CoreId>> = OnceLock::new();
    CORES.get_or_init(|| core_affinity::get_core_ids().unwrap_or_default())
}

/// Pins the calling thread to CPU number `slot` of [`cores`], wrapping
/// round-robin (slot 2 on a 2-core machine is core 0 again, so an
/// oversubscribed count like 16 puts 8 threads on each core). Returns false
/// if pinning is not possible here; the bench then still runs, unpinned.
pub fn pin_to(slot: usize) -> bool {
    let cores = cores();
    if cores.is_empty() {
        return false;
    }
    core_affinity::set_for_current(cores[slot % cores.len()])
}

/// Spin iterations per microsecond on this machine, measured once (the
/// fastest of a few tries, so a preemption during calibration does not
/// shorten every hold).
pub fn spins_per_us() -> f64 {
    static SPINS: OnceLock<f64> = OnceLock::new();
    *SPINS.get_or_init(|| {
        let n = 2_000_000u64;
        let best = (0..5)
            .map(|_| {
                let t = Instant::now();
                spin(n);
                t.elapsed()
            })
            .min()
            .expect("5 tries");
        n as f64 / (best.as_nanos() as f64 / 1000.0)
    })
}

/// `n` iterations of a loop the optimiser cannot remove: a busy hold.
#[inline]
pub fn spin(n: u64) {
    let mut x = 0u64;
    for i in 0..n {
        x = black_box(x.wrapping_add(i));
    }
    black_box(x);
}

/// The [`spin`] count of a hold of `us` microseconds.
pub fn hold_spins(us: f64) -> u64 {
    (us * spins_per_us()).round() as u64
}

/// Runs `body(thread)` `iters` times on each of `threads` threads and
/// returns (last end − first start): give it to criterion's `iter_custom`.
///
/// Thread `t` (0-based, passed to `body`) is pinned to CPU `t mod cores`;
/// all threads wait at one `Barrier` and each takes its start time as it
/// leaves it, so thread creation and pinning are never timed. The result
/// spans from the earliest start to the latest end, so a thread that ran
/// late or slowly counts in full.
///
/// What criterion then reports, `result / iters`, is the wall time per
/// iteration per thread (see the [crate docs](crate)).
///
/// ```
/// use multiopen_benches::parallel;
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// let n = AtomicU64::new(0);
/// let elapsed = parallel(2, 1000, |_| {
///     n.fetch_add(1, Ordering::Relaxed);
/// });
/// assert_eq!(n.load(Ordering::Relaxed), 2000);
/// assert!(elapsed > std::time::Duration::ZERO);
/// ```
#[inline]
pub fn parallel<F>(threads: usize, iters: u64, body: F) -> Duration
where
    F: Fn(usize) + Sync,
{
    parallel_with(threads, iters, |thread| thread, |thread| body(*thread))
}

/// Like [`parallel`], with per-thread state: `init(thread)` runs on each
/// thread after pinning and before the barrier (untimed), and `body` gets
/// that thread's state by `&mut` on every iteration. Use it for anything a
/// thread must own or prepare that is not the operation being measured
/// (a guard held open, a thread-local handle, a scratch buffer).
///
/// The state is dropped after the thread's end time is taken, so its
/// destructor is not timed either.
///
/// ```
/// use multiopen_benches::parallel_with;
///
/// let elapsed = parallel_with(
///     2,
///     100,
///     |thread| vec![thread; 16],
///     |buffer| buffer.rotate_left(1),
/// );
/// assert!(elapsed > std::time::Duration::ZERO);
/// ```
pub fn parallel_with<S, I, F>(threads: usize, iters: u64, init: I, body: F) -> Duration
where
    I: Fn(usize) -> S + Sync,
    F: Fn(&mut S) + Sync,
{
    assert!(threads > 0, "parallel_with needs at least one thread");
    let barrier = Barrier::new(threads);
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|thread| {
                let (barrier, init, body) = (&barrier, &init, &body);
                scope.spawn(move || {
                    pin_to(thread);
                    let mut state = init(thread);
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..iters {
                        body(black_box(&mut state));
                    }
                    let end = Instant::now();
                    drop(state);
                    (start, end)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a bench thread panicked"))
            .collect()
    });
    // Instant is CLOCK_MONOTONIC on Linux: one clock for all CPUs, so
    // starts and ends taken on different threads compare.
    let first_start = spans.iter().map(|s| s.0).min().expect("threads > 0");
    let last_end = spans.iter().map(|s| s.1).max().expect("threads > 0");
    last_end - first_start
}

/// Measures wake latency: the time from a waker's action to a sleeping
/// thread running again, summed over `iters` hand-offs (so criterion's
/// `iter_custom` reports the mean latency of one hand-off).
///
/// Two threads, pinned to different CPUs (slots 0 and 1). Each iteration:
///
/// 1. the waker calls `arm()` (untimed), e.g. opens the object or resets
///    the word, and keeps what it returns;
/// 2. the sleeper calls `sleep()`, which must block until step 4;
/// 3. the waker waits until the sleeper really sleeps in the kernel (its
///    `/proc` state is `S`; where `/proc` is missing, it waits 1 ms), so
///    the hand-off always includes a real futex wake, never a fast path;
/// 4. the waker takes t0 and calls `wake(armed)`; the sleeper takes t1 as
///    soon as `sleep()` returns. The latency is t1 − t0.
///
/// Everything else (handshakes, `/proc` polling) is outside t0..t1, so the
/// wall time is several times the result; criterion plans from wall time,
/// so the bench still keeps to its time budget.
///
/// On this VM the absolute latency depends on the shape of the run (calls
/// of 20 hand-offs: 12–16 µs each; calls of 2000: 36–38 µs; criterion's
/// sampling: 50–60 µs), so compare a primitive only with the floor
/// measured by the same kind of run.
///
/// ```
/// use multiopen_benches::wake_latency;
/// use std::sync::atomic::{AtomicU32, Ordering};
///
/// let word = AtomicU32::new(0);
/// let latency = wake_latency(
///     3,
///     || word.store(0, Ordering::Relaxed),
///     || {
///         while word.load(Ordering::Acquire) == 0 {
///             atomic_wait::wait(&word, 0);
///         }
///     },
///     |()| {
///         word.store(1, Ordering::Release);
///         atomic_wait::wake_one(&word);
///     },
/// );
/// assert!(latency > std::time::Duration::ZERO);
/// ```
pub fn wake_latency<T, A, S, W>(iters: u64, mut arm: A, sleep: S, mut wake: W) -> Duration
where
    A: FnMut() -> T + Send,
    S: Fn() + Sync,
    W: FnMut(T) + Send,
{
    // The hand-shake between the two threads. Both spin on these: each
    // owns a CPU, and only the sleeper's `sleep()` may block in the kernel,
    // so that the state check in step 3 sees that block and nothing else.
    let go = AtomicU64::new(0); // the iteration the sleeper may start
    let done = AtomicU64::new(0); // iterations the sleeper has finished
    let woke_at: Mutex<Option<Instant>> = Mutex::new(None);
    let sleeper_stat: OnceLock<Option<String>> = OnceLock::new();
    let stop = AtomicBool::new(false);

    std::thread::scope(|scope| {
        scope.spawn(|| {
            // If `sleep()` panics, tell the waker instead of leaving it
            // spinning on `done` for ever.
            let _stop_on_exit = SetOnDrop(&stop);
            pin_to(1);
            let _ = sleeper_stat.set(own_stat_path());
            let mut round = 0;
            loop {
                round += 1;
                while go.load(Ordering::Acquire) < round {
                    if stop.load(Ordering::Acquire) {
                        return;
                    }
                    std::hint::spin_loop();
                }
                sleep();
                let t1 = Instant::now();
                // Uncontended: the waker reads it only after `done` below.
                *woke_at.lock().unwrap() = Some(t1);
                done.store(round, Ordering::Release);
            }
        });
        // The waker gets a thread of its own too, so the caller (criterion's
        // main thread) is never left pinned.
        let waker = scope.spawn(|| {
            // Likewise if `arm` or `wake` panics: release the sleeper.
            let _stop_on_exit = SetOnDrop(&stop);
            pin_to(0);
            let stat = sleeper_stat.wait().clone();
            let mut total = Duration::ZERO;
            for round in 1..=iters {
                let armed = arm();
                go.store(round, Ordering::Release);
                wait_until_asleep(stat.as_deref());
                let t0 = Instant::now();
                wake(armed);
                while done.load(Ordering::Acquire) < round {
                    assert!(!stop.load(Ordering::Acquire), "the sleeper panicked");
                    std::hint::spin_loop();
                }
                let t1 = woke_at.lock().unwrap().take().expect("sleeper stamped");
                total += t1.saturating_duration_since(t0);
            }
            total
        });
        waker.join().expect("the waker thread panicked")
    })
}

/// The floor for wake latency: the bare futex hand-off, measured by
/// [`wake_latency`]. The sleeper waits on an `AtomicU32` with
/// `atomic_wait::wait` until it becomes 1; the waker stores 1 and calls
/// `atomic_wait::wake_one`. Returns the sum over `iters` hand-offs, for
/// `iter_custom`.
///
/// ```
/// assert!(multiopen_benches::futex_handoff(3) > std::time::Duration::ZERO);
/// ```
pub fn futex_handoff(iters: u64) -> Duration {
    let word = AtomicU32::new(0);
    wake_latency(
        iters,
        // Relaxed: the go hand-shake in `wake_latency` orders it before
        // the sleeper's first load.
        || word.store(0, Ordering::Relaxed),
        || {
            // Acquire: pairs with the waker's Release store, as a real
            // primitive's waiter would.
            while word.load(Ordering::Acquire) == 0 {
                atomic_wait::wait(&word, 0);
            }
        },
        |()| {
            word.store(1, Ordering::Release);
            atomic_wait::wake_one(&word);
        },
    )
}

/// A futex round trip between two pinned threads: A stores 1 and wakes B,
/// then sleeps until B has stored 0 and woken A. Returns the wall time of
/// `iters` round trips (two hand-offs each), for `iter_custom`.
///
/// Unlike [`wake_latency`], nobody checks that the other side is already
/// asleep: a side that has not gone to sleep yet skips the system call, as
/// it would in real use. It is a reference figure beside the one-way
/// [`futex_handoff`] floor.
///
/// ```
/// assert!(multiopen_benches::futex_ping_pong(3) > std::time::Duration::ZERO);
/// ```
pub fn futex_ping_pong(iters: u64) -> Duration {
    let word = AtomicU32::new(0);
    let barrier = Barrier::new(2);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            pin_to(1);
            barrier.wait();
            for _ in 0..iters {
                // Acquire/Release: each side sees what the other did
                // before handing the word over.
                while word.load(Ordering::Acquire) != 1 {
                    atomic_wait::wait(&word, 0);
                }
                word.store(0, Ordering::Release);
                atomic_wait::wake_one(&word);
            }
        });
        let ponger = scope.spawn(|| {
            pin_to(0);
            barrier.wait();
            let start = Instant::now();
            for _ in 0..iters {
                word.store(1, Ordering::Release);
                atomic_wait::wake_one(&word);
                while word.load(Ordering::Acquire) != 0 {
                    atomic_wait::wait(&word, 1);
                }
            }
            start.elapsed()
        });
        ponger.join().expect("ping-pong thread panicked")
    })
}

/// One measurement in an [`interleaved`] comparison: a name and a function
/// that does `iters` iterations and returns the time to divide by `iters`
/// (the same closure one would give `iter_custom`).
pub type Contender<'a> = (&'a str, &'a dyn Fn(u64) -> Duration);

/// What [`interleaved`] found for one contender: per-iteration times in
/// nanoseconds over all rounds, and its ratio to the first contender (the
/// floor) taken round by round.
#[derive(Debug, Clone, PartialEq)]
pub struct Spread {
    /// The contender's name.
    pub name: String,
    /// The fastest round.
    pub min: f64,
    /// The first quartile of the rounds.
    pub p25: f64,
    /// The median round.
    pub median: f64,
    /// The median, over rounds, of this contender's time divided by the
    /// first contender's time in the same round (1.0 for the first).
    pub ratio: f64,
}

/// Runs each contender `rounds` times for `iters` iterations, rotating
/// their order every round, and summarises the per-iteration times.
///
/// Why, beside criterion: criterion measures one function for seconds, then
/// the next, so when other work on this shared 2-core machine comes and
/// goes, one contender can be measured loaded and its floor idle, and the
/// ratio swings (seen here: 0.6× to 1.4× at 1 thread between runs).
/// Short alternating rounds put every contender under the same load, and
/// the round-by-round ratio ([`Spread::ratio`]) cancels what load remains.
/// Keep a round at a few milliseconds (`iters` × the expected time) so
/// that many rounds fit in a few seconds.
///
/// ```
/// use multiopen_benches::{interleaved, parallel};
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// let n = AtomicU64::new(0);
/// let relaxed = |iters| parallel(1, iters, |_| { n.fetch_add(1, Ordering::Relaxed); });
/// let seq_cst = |iters| parallel(1, iters, |_| { n.fetch_add(1, Ordering::SeqCst); });
/// let spreads = interleaved(5, 1000, &[("relaxed", &relaxed), ("seq_cst", &seq_cst)]);
/// assert_eq!(spreads[0].ratio, 1.0);
/// println!("{}", multiopen_benches::spread_table(&spreads));
/// ```
pub fn interleaved(rounds: usize, iters: u64, contenders: &[Contender<'_>]) -> Vec<Spread> {
    assert!(rounds > 0 && iters > 0 && !contenders.is_empty());
    let n = contenders.len();
    // times[c][r]: contender c's ns per iteration in round r.
    let mut times = vec![Vec::with_capacity(rounds); n];
    for round in 0..rounds {
        // Rotate who goes first, so no contender always runs just after
        // the same other one (caches, frequency, the scheduler's mood).
        for k in 0..n {
            let c = (k + round) % n;
            let elapsed = (contenders[c].1)(iters);
            times[c].push(elapsed.as_nanos() as f64 / iters as f64);
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    contenders
        .iter()
        .zip(&times)
        .map(|(&(name, _), own)| {
            let mut sorted = own.clone();
            sorted.sort_by(f64::total_cmp);
            let ratios = own.iter().zip(&times[0]).map(|(t, f)| t / f).collect();
            Spread {
                name: name.to_string(),
                min: sorted[0],
                p25: sorted[sorted.len() / 4],
                median: sorted[sorted.len() / 2],
                ratio: median(ratios),
            }
        })
        .collect()
}

/// A Markdown table of [`interleaved`] results, for the bench's output
/// and for pasting into `BENCHMARKS.md`.
///
/// ```
/// use multiopen_benches::{spread_table, Spread};
/// let s = Spread { name: "x".into(), min: 1.0, p25: 1.0, median: 1.0, ratio: 1.0 };
/// assert!(spread_table(&[s]).contains("| x |"));
/// ```
pub fn spread_table(spreads: &[Spread]) -> String {
    let floor = spreads.first().map_or("first", |s| s.name.as_str());
    let mut out = format!(
        "| contender | median | p25 | min | ratio to {floor} (median of per-round ratios) |\n\
         |---|---|---|---|---|\n"
    );
    for s in spreads {
        out += &format!(
            "| {} | {} | {} | {} | {:.2}× |\n",
            s.name,
            human(s.median),
            human(s.p25),
            human(s.min),
            s.ratio
        );
    }
    out
}

/// Nanoseconds as `12.3 ns` or `45.6 µs`.
fn human(ns: f64) -> String {
    if ns >= 1000.0 {
        format!("{:.1} µs", ns / 1000.0)
    } else {
        format!("{ns:.2} ns")
    }
}

/// The `/proc` stat file of the calling thread, if `/proc` is there (for
/// [`wait_until_asleep`] from another thread: e.g. a tokio worker's, taken
/// in the runtime's `on_thread_start`).
///
/// ```
/// let _ = multiopen_benches::own_stat_path();
/// ```
pub fn own_stat_path() -> Option<String> {
    // `/proc/thread-self` links to `<pid>/task/<tid>`: the thread id
    // without a libc call.
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    Some(format!("/proc/{}/stat", link.display()))
}

/// Spins until the thread whose stat file is `stat` is asleep in the kernel
/// (state `S`). Without `/proc`, sleeps 1 ms instead, which on an idle
/// core is ample time to reach the futex.
///
/// ```
/// multiopen_benches::wait_until_asleep(None); // no /proc: sleeps 1 ms
/// ```
pub fn wait_until_asleep(stat: Option<&str>) {
    let Some(path) = stat else {
        std::thread::sleep(Duration::from_millis(1));
        return;
    };
    loop {
        match std::fs::read_to_string(path) {
            // The state is the first field after the `(comm)` field, whose
            // name may itself hold spaces or parentheses.
            Ok(text) => match text.rsplit_once(')') {
                Some((_, rest)) if rest.trim_start().starts_with('S') => return,
                Some(_) => std::hint::spin_loop(),
                None => return,
            },
            Err(_) => {
                std::thread::sleep(Duration::from_millis(1));
                return;
            }
        }
    }
}

/// Sets its flag when dropped, on return or on panic.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        // Release: whatever the thread did happens before the other side
        // sees the flag.
        self.0.store(true, Ordering::Release);
    }
}

/// The `main` of every bench file: runs the criterion groups (`benches`,
/// from `criterion_group!`), prints criterion's summary, then the
/// interleaved cross-check, unless this is a `--test`/`--list` run (as
/// under `cargo test --benches`) or `MULTIOPEN_INTERLEAVED=0` is set.
///
/// ```no_run
/// fn benches() { /* criterion_group!(benches, ...) makes this */ }
/// fn cross_check() { println!("interleaved tables"); }
/// multiopen_benches::bench_main(benches, cross_check);
/// ```
pub fn bench_main(benches: fn(), cross_check: fn()) {
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
    let args: Vec<String> = std::env::args().collect();
    let bench_mode =
        args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test" || a == "--list");
    if bench_mode && std::env::var("MULTIOPEN_INTERLEAVED").as_deref() != Ok("0") {
        cross_check();
    }
}
