//! A capped `Pool` over-subscribed (issue 15 "Speed"): more threads than
//! objects, against r2d2, a `Mutex<Vec<T>> + Condvar` pool and the ceiling.
//!
//! Every cycle is: acquire an object, hold it for a busy-spin of `hold`
//! (the harness's `spin`: a calibrated loop of `black_box` adds, so the work is the same
//! whatever the clock does), release it. A cap of 2 objects on this
//! 2-core machine means the most that can run at once is what the
//! *ceiling* runs: 2 threads doing the same hold with no pool at all.
//!
//! - `ceiling`: 2 threads, the hold alone.
//! - `multiopen`: `Pool::builder(..).max_size(2).max_live(2)`, prefilled,
//!   `get()` (waits for ever) + guard drop.
//! - `r2d2`: r2d2 0.8 with a trivial `ManageConnection` (connect, is_valid
//!   and has_broken do nothing), `max_size(2)`, `min_idle(2)`, its defaults
//!   otherwise (`test_on_check_out` true: the trivial `is_valid` runs on
//!   every checkout, as a user of the defaults gets), `get()`.
//! - `mutex_condvar`: a `Mutex<Vec<T>>` of 2 objects; a taker waits on a
//!   `Condvar` while it is empty; a return pushes and `notify_one`s.
//!
//! Criterion group `pool_capped/8t` (hold 0.25, 1 and 20 µs): the time per
//! acquire of the whole system (each of the 8 threads does `iters / 8`
//! cycles). `wake`: a return to a capped pool → a waiter asleep in `get`
//! runs, against the bare futex hand-off.
//!
//! The cross-check after criterion (`-- zzz` skips criterion and runs it
//! alone) is what `BENCHMARKS.md` reports: for 4, 8 and 16 threads and
//! holds of 0, 0.25, 1 and 20 µs, the contenders run in alternating rounds
//! of a fixed wall time each, every thread counting its own cycles, and
//! the table gives per contender: throughput, its ratio to r2d2 and to the
//! ceiling (medians of per-round ratios), the same ratio to r2d2 per
//! CPU-microsecond the threads used (`CLOCK_THREAD_CPUTIME_ID`: on a
//! shared machine 8 runnable threads get a bigger share of it than 2, so
//! this takes the other tenants out), voluntary context switches per
//! 1,000 acquires (`getrusage(RUSAGE_THREAD)`, summed over the threads:
//! every futex sleep is one), the pool's own `stats().sleeps` per 1,000
//! (multiopen), the wait of an acquire at p50/p99 (from alternate rounds
//! that time every acquire; the throughput comes from the untimed ones),
//! and the least-served thread's share (its cycles over the mean per
//! thread, median over rounds). Then the wake latency, interleaved.
//!
//! Run: `cargo bench -p multiopen-benches --bench pool_capped -- zzz`
//! (`MULTIOPEN_CAPPED_MS` sets the round length, default 50 ms: a
//! shorter round measures the scheduler's time slices more than the pool;
//! `MULTIOPEN_CAPPED_ROUNDS` the rounds, default 8, half of them timing
//! every acquire; `MULTIOPEN_CAPPED_THREADS=8` and
//! `MULTIOPEN_CAPPED_HOLDS=0.25,1` pick configurations;
//! `MULTIOPEN_CAPPED_PIN=1` pins the threads round-robin, off by default;
//! `MULTIOPEN_CAPPED_WAKE=0` skips the wake latency). About 25 s.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Barrier, Condvar, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use multiopen::Pool;
use multiopen_benches::{
    bench_main, futex_handoff, hold_spins, interleaved, pin_to, spin, spins_per_us, spread_table,
    wake_latency, Contender,
};

/// The cap: objects in every pool.
const CAP: usize = 2;

/// The pooled object (its contents do not matter: nothing is reset).
type Object = u64;

// ----- the contenders -----

/// One way to share `CAP` objects between threads.
trait Shared: Sync {
    /// One cycle: acquire, spin `hold`, release; with `timed`, returns
    /// the acquire's wait in nanoseconds (else 0).
    fn cycle(&self, hold: u64, timed: bool) -> u64;
    /// Futex sleeps the contender counts itself (multiopen's `stats`).
    fn sleeps(&self) -> Option<usize> {
        None
    }
}

/// Times `acquire` if asked.
#[inline]
fn timed_acquire<G>(timed: bool, acquire: impl FnOnce() -> G) -> (G, u64) {
    if timed {
        let t = Instant::now();
        let g = acquire();
        (g, t.elapsed().as_nanos() as u64)
    } else {
        (acquire(), 0)
    }
}

struct Ceiling;

impl Shared for Ceiling {
    fn cycle(&self, hold: u64, _timed: bool) -> u64 {
        spin(hold);
        0
    }
}

struct Multiopen(Pool<Object>);

impl Multiopen {
    fn new() -> Self {
        let pool = Pool::builder(|| 0).max_size(CAP).max_live(CAP).build();
        pool.prefill(CAP);
        Self(pool)
    }
}

impl Shared for Multiopen {
    fn cycle(&self, hold: u64, timed: bool) -> u64 {
        let (g, wait) = timed_acquire(timed, || self.0.get().expect("never closed"));
        black_box(&*g);
        spin(hold);
        drop(g);
        wait
    }

    fn sleeps(&self) -> Option<usize> {
        Some(self.0.stats().sleeps)
    }
}

/// r2d2's trivial connection manager.
struct Trivial;

impl r2d2::ManageConnection for Trivial {
    type Connection = Object;
    type Error = std::io::Error;

    fn connect(&self) -> Result<Object, Self::Error> {
        Ok(0)
    }

    fn is_valid(&self, _conn: &mut Object) -> Result<(), Self::Error> {
        Ok(())
    }

    fn has_broken(&self, _conn: &mut Object) -> bool {
        false
    }
}

struct R2d2(r2d2::Pool<Trivial>);

impl R2d2 {
    fn new() -> Self {
        let pool = r2d2::Pool::builder()
            .max_size(CAP as u32)
            .min_idle(Some(CAP as u32))
            .build(Trivial)
            .expect("a trivial manager connects");
        Self(pool)
    }
}

impl Shared for R2d2 {
    fn cycle(&self, hold: u64, timed: bool) -> u64 {
        let (g, wait) = timed_acquire(timed, || self.0.get().expect("within 30 s"));
        black_box(&*g);
        spin(hold);
        drop(g);
        wait
    }
}

/// The pool a user would write: a `Mutex<Vec<T>>` and a `Condvar`.
struct MutexCondvar {
    idle: Mutex<Vec<Object>>,
    ready: Condvar,
}

impl MutexCondvar {
    fn new() -> Self {
        Self {
            idle: Mutex::new(vec![0; CAP]),
            ready: Condvar::new(),
        }
    }
}

impl Shared for MutexCondvar {
    fn cycle(&self, hold: u64, timed: bool) -> u64 {
        let (object, wait) = timed_acquire(timed, || {
            let mut idle = self.idle.lock().unwrap();
            loop {
                if let Some(object) = idle.pop() {
                    return object;
                }
                idle = self.ready.wait(idle).unwrap();
            }
        });
        black_box(&object);
        spin(hold);
        self.idle.lock().unwrap().push(object);
        self.ready.notify_one();
        wait
    }
}

// ----- a time-bounded run -----

/// What one run of one contender found.
struct Run {
    elapsed: Duration,
    /// Cycles per thread.
    cycles: Vec<u64>,
    /// Voluntary context switches, all threads together.
    switches: u64,
    /// CPU time the threads used, together.
    cpu: Duration,
    /// The contender's own count of sleeps during the run.
    sleeps: Option<usize>,
    /// Each acquire's wait, if timed.
    waits: Vec<u64>,
}

impl Run {
    fn acquires(&self) -> u64 {
        self.cycles.iter().sum()
    }

    /// Acquires per microsecond.
    fn throughput(&self) -> f64 {
        self.acquires() as f64 / (self.elapsed.as_nanos() as f64 / 1000.0)
    }

    /// Acquires per CPU-microsecond the threads used: throughput with the
    /// share of the machine other processes left us taken out.
    fn per_cpu(&self) -> f64 {
        self.acquires() as f64 / (self.cpu.as_nanos() as f64 / 1000.0)
    }

    /// The least-served thread's cycles over the mean per thread.
    fn least_share(&self) -> f64 {
        let mean = self.acquires() as f64 / self.cycles.len() as f64;
        *self.cycles.iter().min().expect("threads") as f64 / mean
    }
}

/// CPU time of the calling thread so far.
fn thread_cpu() -> Duration {
    // SAFETY: `clock_gettime` writes the zeroed struct it is given.
    unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts);
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }
}

/// Voluntary context switches of the calling thread so far.
fn voluntary_switches() -> u64 {
    // SAFETY: `getrusage` writes the struct it is given, which is zeroed
    // plain data.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut usage);
        usage.ru_nvcsw as u64
    }
}

/// Runs `shared.cycle` on `threads` pinned threads (round-robin over the
/// CPUs) for about `length`, released at one barrier.
fn run(shared: &dyn Shared, threads: usize, hold: u64, length: Duration, timed: bool) -> Run {
    let barrier = Barrier::new(threads + 1);
    let stop = AtomicBool::new(false);
    let sleeps_before = shared.sleeps();
    let results: Vec<(Instant, Instant, u64, u64, Vec<u64>, Duration)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|thread| {
                let (barrier, stop) = (&barrier, &stop);
                s.spawn(move || {
                    if pinned() {
                        pin_to(thread);
                    }
                    let mut waits = Vec::with_capacity(if timed { 1 << 16 } else { 0 });
                    barrier.wait();
                    let switches = voluntary_switches();
                    let cpu = thread_cpu();
                    let start = Instant::now();
                    let mut cycles = 0;
                    // Relaxed: a flag read many times, written once.
                    while !stop.load(Ordering::Relaxed) {
                        let wait = shared.cycle(hold, timed);
                        if timed {
                            waits.push(wait);
                        }
                        cycles += 1;
                    }
                    let end = Instant::now();
                    (
                        start,
                        end,
                        cycles,
                        voluntary_switches() - switches,
                        waits,
                        thread_cpu() - cpu,
                    )
                })
            })
            .collect();
        barrier.wait();
        std::thread::sleep(length);
        stop.store(true, Ordering::Relaxed);
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let first = results.iter().map(|r| r.0).min().unwrap();
    let last = results.iter().map(|r| r.1).max().unwrap();
    Run {
        elapsed: last - first,
        cycles: results.iter().map(|r| r.2).collect(),
        switches: results.iter().map(|r| r.3).sum(),
        cpu: results.iter().map(|r| r.5).sum(),
        sleeps: sleeps_before.zip(shared.sleeps()).map(|(a, b)| b - a),
        waits: results.into_iter().flat_map(|r| r.4).collect(),
    }
}

/// Pin the threads (`MULTIOPEN_CAPPED_PIN=1`)? Off by default: an
/// over-subscribed pool's users do not pin, and pinned 4 or 8 to a core a
/// woken waiter waits for its own core's time slice, which is the
/// scheduler's fairness, not the pool's.
fn pinned() -> bool {
    std::env::var("MULTIOPEN_CAPPED_PIN").as_deref() == Ok("1")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn human(ns: u64) -> String {
    if ns >= 10_000 {
        format!("{:.0} µs", ns as f64 / 1000.0)
    } else if ns >= 1000 {
        format!("{:.1} µs", ns as f64 / 1000.0)
    } else {
        format!("{ns} ns")
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The interleaved comparison at `threads` threads and a hold of `us`:
/// prints one Markdown table.
fn compare(threads: usize, us: f64, rounds: usize, length: Duration) {
    let hold = hold_spins(us);
    let contenders: [(&str, Box<dyn Shared>, usize); 4] = [
        ("ceiling (2 threads, no pool)", Box::new(Ceiling), 2),
        ("multiopen", Box::new(Multiopen::new()), threads),
        ("r2d2", Box::new(R2d2::new()), threads),
        ("mutex_condvar", Box::new(MutexCondvar::new()), threads),
    ];
    let n = contenders.len();
    let mut runs: Vec<Vec<Run>> = (0..n).map(|_| Vec::new()).collect();
    let mut timed_runs: Vec<Vec<Run>> = (0..n).map(|_| Vec::new()).collect();
    let load_before = load_average();
    for round in 0..rounds {
        let timed = round % 2 == 1;
        for k in 0..n {
            let c = (k + round) % n;
            let (_, shared, t) = &contenders[c];
            let r = run(&**shared, *t, hold, length, timed);
            if timed {
                timed_runs[c].push(r);
            } else {
                runs[c].push(r);
            }
        }
    }
    println!(
        "### {threads} threads on a cap of {CAP}, hold {us} µs ({rounds} rounds of {} ms; load average {} before, {} after)\n",
        length.as_millis(),
        load_before,
        load_average()
    );
    println!(
        "| contender | acquires/µs | vs r2d2 | vs ceiling | per CPU-µs vs r2d2 | vol. switches /1k | pool sleeps /1k | wait p50 | wait p99 | least-served share |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let ratio_to = |c: usize, base: usize| {
        median(
            runs[c]
                .iter()
                .zip(&runs[base])
                .map(|(a, b)| a.throughput() / b.throughput())
                .collect(),
        )
    };
    let cpu_ratio_to = |c: usize, base: usize| {
        median(
            runs[c]
                .iter()
                .zip(&runs[base])
                .map(|(a, b)| a.per_cpu() / b.per_cpu())
                .collect(),
        )
    };
    for (c, (name, _, _)) in contenders.iter().enumerate() {
        let acquires: u64 = runs[c].iter().map(Run::acquires).sum();
        let switches: u64 = runs[c].iter().map(|r| r.switches).sum();
        let sleeps: Option<usize> = runs[c].iter().map(|r| r.sleeps).sum();
        let mut waits: Vec<u64> = timed_runs[c]
            .iter()
            .flat_map(|r| r.waits.iter().copied())
            .collect();
        waits.sort_unstable();
        let per_k = |x: f64| x * 1000.0 / acquires.max(1) as f64;
        println!(
            "| {name} | {:.2} | {:.2}× | {:.2}× | {:.2}× | {:.1} | {} | {} | {} | {:.2} |",
            median(runs[c].iter().map(Run::throughput).collect()),
            ratio_to(c, 2),
            ratio_to(c, 0),
            cpu_ratio_to(c, 2),
            per_k(switches as f64),
            sleeps.map_or("—".into(), |s| format!("{:.1}", per_k(s as f64))),
            human(percentile(&waits, 0.5)),
            human(percentile(&waits, 0.99)),
            median(runs[c].iter().map(Run::least_share).collect()),
        );
    }
    println!();
}

/// A return → a waiter asleep in a capped pool's `get` runs, beside the
/// bare futex hand-off, `iters` hand-offs (for `wake_latency`).
fn capped_wake(iters: u64) -> Duration {
    let pool = Pool::builder(|| 0u64).max_size(1).max_live(1).build();
    wake_latency(
        iters,
        || pool.get().expect("the one object is back"),
        || drop(pool.get().expect("never closed")),
        drop,
    )
}

// ----- criterion -----

/// `per_thread` cycles on each of `threads` threads (pinned only with
/// `MULTIOPEN_CAPPED_PIN=1`), released at one barrier: (last end − first
/// start).
fn fixed(shared: &dyn Shared, threads: usize, per_thread: u64, hold: u64) -> Duration {
    let barrier = Barrier::new(threads);
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|thread| {
                let barrier = &barrier;
                s.spawn(move || {
                    if pinned() {
                        pin_to(thread);
                    }
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..per_thread {
                        shared.cycle(hold, false);
                    }
                    (start, Instant::now())
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let first = spans.iter().map(|s| s.0).min().unwrap();
    spans.iter().map(|s| s.1).max().unwrap() - first
}

fn over_subscribed(c: &mut Criterion) {
    let threads = 8;
    for us in [0.25, 1.0, 20.0] {
        let hold = hold_spins(us);
        let mut group = c.benchmark_group(format!("pool_capped/{threads}t/hold_{us}us"));
        group
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .sample_size(20);
        let contenders: [(&str, Box<dyn Shared>, usize); 4] = [
            ("ceiling", Box::new(Ceiling), 2),
            ("multiopen", Box::new(Multiopen::new()), threads),
            ("r2d2", Box::new(R2d2::new()), threads),
            ("mutex_condvar", Box::new(MutexCondvar::new()), threads),
        ];
        for (name, shared, t) in &contenders {
            // Time per acquire of the whole system: `iters` acquires
            // spread over the threads.
            group.bench_function(*name, |b| {
                b.iter_custom(|iters| {
                    let per_thread = iters.div_ceil(*t as u64).max(1);
                    let elapsed = fixed(&**shared, *t, per_thread, hold);
                    elapsed.mul_f64(iters as f64 / (per_thread * *t as u64) as f64)
                })
            });
        }
        group.finish();
    }
}

fn wake(c: &mut Criterion) {
    let mut group = c.benchmark_group("pool_capped/wake");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    group.bench_function("futex_handoff_floor", |b| b.iter_custom(futex_handoff));
    group.bench_function("return_to_sleeping_get", |b| b.iter_custom(capped_wake));
    group.finish();
}

criterion_group!(benches, over_subscribed, wake);

fn main() {
    bench_main(benches, cross_check);
}

fn cross_check() {
    let rounds = env_or("MULTIOPEN_CAPPED_ROUNDS", 8) as usize;
    let length = Duration::from_millis(env_or("MULTIOPEN_CAPPED_MS", 50));
    let threads: Vec<usize> = std::env::var("MULTIOPEN_CAPPED_THREADS")
        .ok()
        .map(|v| v.split(',').filter_map(|t| t.parse().ok()).collect())
        .unwrap_or_else(|| vec![8, 4, 16]);
    let holds: Vec<f64> = std::env::var("MULTIOPEN_CAPPED_HOLDS")
        .ok()
        .map(|v| v.split(',').filter_map(|t| t.parse().ok()).collect())
        .unwrap_or_else(|| vec![0.25, 1.0, 20.0, 0.0]);
    println!(
        "\n## Capped pool, over-subscribed (interleaved; {:.1} spins per µs)\n",
        spins_per_us()
    );
    for &t in &threads {
        for &us in &holds {
            compare(t, us, rounds, length);
        }
    }
    if std::env::var("MULTIOPEN_CAPPED_WAKE").as_deref() != Ok("0") {
        let list: [Contender<'_>; 2] = [
            ("futex_handoff_floor", &futex_handoff),
            ("return_to_sleeping_get", &capped_wake),
        ];
        println!(
            "### Return → a waiter asleep in `get` runs (30 rounds of 20; load average {})\n",
            load_average()
        );
        println!("{}", spread_table(&interleaved(30, 20, &list)));
    }
}
