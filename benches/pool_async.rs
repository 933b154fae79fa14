//! A capped `Pool` awaited from tokio tasks (issue 14, "Pool: acquire at
//! the cap"): `get_owned_async().await` against deadpool's unmanaged pool
//! (`deadpool::unmanaged::Pool`, a tokio semaphore in front of a locked
//! queue), in one criterion run and one tokio runtime (multi-thread, 2
//! workers, the machine's 2 cores).
//!
//! Every task runs `n` cycles of: await an object, hold it, drop it. A cap
//! of 2 objects, prefilled in both pools. Holds:
//!
//! - `spin`: a busy spin of about 0.25 µs (the tasks contend across the
//!   two workers only; a task is not descheduled while it holds);
//! - `yield`: the object held across `tokio::task::yield_now().await`, so
//!   the worker runs other tasks while one holds it and they wait at the
//!   cap: every acquire past the first two waits and is woken by a return.
//!
//! Criterion group `pool_async/{tasks}t/{hold}` for 8 and 64 tasks: the
//! time per acquire of the whole system (`iters` cycles spread over the
//! tasks). After criterion, the same comparisons in short alternating
//! rounds (`interleaved`), whose ratios hold up while other jobs load the
//! machine: that is what `BENCHMARKS.md` reports (`MULTIOPEN_INTERLEAVED=0`
//! skips it; `-- zzz` skips criterion and runs it alone).
//!
//! Run: `cargo bench -p multiopen-benches --bench pool_async`.

use std::hint::black_box;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use multiopen::Pool;
use multiopen_benches::{bench_main, interleaved, spread_table};
use tokio::runtime::Runtime;

/// The cap: objects in every pool.
const CAP: usize = 2;

type Object = u64;

fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .expect("a runtime")
    })
}

/// Spin iterations for about 0.25 µs, measured once.
fn quarter_us() -> u64 {
    static SPINS: OnceLock<u64> = OnceLock::new();
    *SPINS.get_or_init(|| {
        let n = 1_000_000u64;
        let best = (0..5)
            .map(|_| {
                let t = Instant::now();
                spin(n);
                t.elapsed()
            })
            .min()
            .unwrap();
        ((n as f64 / best.as_nanos() as f64) * 250.0).round() as u64
    })
}

fn spin(n: u64) {
    let mut x = 0u64;
    for i in 0..n {
        x = black_box(x.wrapping_add(i));
    }
    black_box(x);
}

#[derive(Clone, Copy, Debug)]
enum Hold {
    Spin,
    Yield,
}

impl Hold {
    async fn hold(self) {
        match self {
            Hold::Spin => spin(quarter_us()),
            Hold::Yield => tokio::task::yield_now().await,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Hold::Spin => "spin_0.25us",
            Hold::Yield => "yield",
        }
    }
}

fn multiopen_pool() -> Arc<Pool<Object>> {
    let pool = Pool::builder(|| 0).max_size(CAP).max_live(CAP).build();
    pool.prefill(CAP);
    Arc::new(pool)
}

fn deadpool_pool() -> Arc<deadpool::unmanaged::Pool<Object>> {
    let pool = deadpool::unmanaged::Pool::new(CAP);
    for _ in 0..CAP {
        pool.try_add(0).expect("room for the cap");
    }
    Arc::new(pool)
}

/// `iters` cycles over `tasks` tasks on the runtime: the wall time.
fn run_multiopen(pool: &Arc<Pool<Object>>, tasks: usize, iters: u64, hold: Hold) -> Duration {
    let per_task = iters.div_ceil(tasks as u64).max(1);
    let rt = runtime();
    let start = Instant::now();
    rt.block_on(async {
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let pool = Arc::clone(pool);
                tokio::spawn(async move {
                    for _ in 0..per_task {
                        let g = pool.get_owned_async().await.expect("never closed");
                        black_box(&*g);
                        hold.hold().await;
                        drop(g);
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.expect("the task ran");
        }
    });
    start
        .elapsed()
        .mul_f64(iters as f64 / (per_task * tasks as u64) as f64)
}

fn run_deadpool(
    pool: &Arc<deadpool::unmanaged::Pool<Object>>,
    tasks: usize,
    iters: u64,
    hold: Hold,
) -> Duration {
    let per_task = iters.div_ceil(tasks as u64).max(1);
    let rt = runtime();
    let start = Instant::now();
    rt.block_on(async {
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let pool = Arc::clone(pool);
                tokio::spawn(async move {
                    for _ in 0..per_task {
                        let g = pool.get().await.expect("never closed");
                        black_box(&*g);
                        hold.hold().await;
                        drop(g);
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.expect("the task ran");
        }
    });
    start
        .elapsed()
        .mul_f64(iters as f64 / (per_task * tasks as u64) as f64)
}

const CONFIGS: [(usize, Hold); 4] = [
    (8, Hold::Spin),
    (8, Hold::Yield),
    (64, Hold::Spin),
    (64, Hold::Yield),
];

fn async_capped(c: &mut Criterion) {
    let mo = multiopen_pool();
    let dp = deadpool_pool();
    for (tasks, hold) in CONFIGS {
        let mut group = c.benchmark_group(format!("pool_async/{tasks}t/{}", hold.name()));
        group
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .sample_size(20);
        group.bench_function("multiopen", |b| {
            b.iter_custom(|iters| run_multiopen(&mo, tasks, iters, hold))
        });
        group.bench_function("deadpool", |b| {
            b.iter_custom(|iters| run_deadpool(&dp, tasks, iters, hold))
        });
        group.finish();
    }
}

criterion_group!(benches, async_capped);

fn main() {
    bench_main(benches, cross_check);
}

/// The interleaved rounds `BENCHMARKS.md` reports: deadpool first, so the
/// ratio is multiopen's time over deadpool's (below 1: faster).
fn cross_check() {
    let mo = multiopen_pool();
    let dp = deadpool_pool();
    for (tasks, hold) in CONFIGS {
        let deadpool = |iters| run_deadpool(&dp, tasks, iters, hold);
        let multiopen = |iters| run_multiopen(&mo, tasks, iters, hold);
        let spreads = interleaved(
            30,
            20_000,
            &[("deadpool", &deadpool), ("multiopen", &multiopen)],
        );
        println!(
            "\npool_async {tasks} tasks, cap {CAP}, hold {}: time per acquire\n{}",
            hold.name(),
            spread_table(&spreads)
        );
        let status = mo.status();
        assert_eq!((status.waiting, status.out), (0, 0), "{status:?}");
    }
}
