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

use std::future::Future;
use std::hint::black_box;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use multiopen::Pool;
use multiopen_benches::{bench_main, hold_spins, interleaved, spin, spread_table};
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
    *SPINS.get_or_init(|| hold_spins(0.25))
}

#[derive(Clone, Copy, Debug)]
enum Hold {
    Spin,
    Yield,
}

impl Hold {
    /// One hold of an acquired object `g`, dropped at its end.
    async fn hold<G: Deref>(self, g: G) {
        black_box(&*g);
        match self {
            Hold::Spin => spin(quarter_us()),
            Hold::Yield => tokio::task::yield_now().await,
        }
        drop(g);
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

/// `iters` cycles spread over `tasks` tasks on the runtime: the wall time.
/// `task(pool, n)` is one task: `n` cycles on `pool`.
fn run_tasks<P, T, F>(pool: &Arc<P>, tasks: usize, iters: u64, task: T) -> Duration
where
    T: Fn(Arc<P>, u64) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let per_task = iters.div_ceil(tasks as u64).max(1);
    let rt = runtime();
    let start = Instant::now();
    rt.block_on(async {
        let handles: Vec<_> = (0..tasks)
            .map(|_| tokio::spawn(task(Arc::clone(pool), per_task)))
            .collect();
        for h in handles {
            h.await.expect("the task ran");
        }
    });
    start
        .elapsed()
        .mul_f64(iters as f64 / (per_task * tasks as u64) as f64)
}

fn run_multiopen(pool: &Arc<Pool<Object>>, tasks: usize, iters: u64, hold: Hold) -> Duration {
    run_tasks(pool, tasks, iters, move |pool, n| async move {
        for _ in 0..n {
            hold.hold(pool.get_owned_async().await.expect("never closed"))
                .await;
        }
    })
}

fn run_deadpool(
    pool: &Arc<deadpool::unmanaged::Pool<Object>>,
    tasks: usize,
    iters: u64,
    hold: Hold,
) -> Duration {
    run_tasks(pool, tasks, iters, move |pool, n| async move {
        for _ in 0..n {
            hold.hold(pool.get().await.expect("never closed")).await;
        }
    })
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
