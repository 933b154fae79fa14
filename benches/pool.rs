//! `Pool` against its floor and its peers, in one criterion run.
//!
//! Groups `pool/1t` and `pool/2t` (SPEC "Speed"; figures go to
//! `BENCHMARKS.md` as ratios): one take + return per iteration per thread,
//! of a `Vec<u8>` buffer, from a pool of 4 prefilled objects, so every
//! take finds an idle object and every return finds room (the steady
//! state of a pool in use). Each thread holds at most one object.
//!
//! - `arrayqueue_floor`: a raw `crossbeam_queue::ArrayQueue` pop + push, the
//!   floor `Pool` is held against (target ≤ 1.2×).
//! - `arrayqueue_shared_counters`: the floor plus a `fetch_add` on each of
//!   two padded shared counters: what counting reuses and returns the
//!   obvious way would cost (the design `Pool` avoids with per-thread
//!   stripes; see `src/pool.rs`).
//! - `multiopen`: `Pool::instance` + dropping the guard, statistics included.
//! - `mutex_vec`: the design a user might write, a `Mutex<Vec<T>>`.
//! - `lockfree_linear`, `lockfree_spinlock`: lockfree-object-pool's
//!   `LinearObjectPool` and `SpinLockObjectPool` (no-op reset).
//! - `object_pool`: object-pool's `Pool::pull`.
//! - `opool`: opool's concurrent `Pool::get`.
//!
//! After criterion, the same contenders run again in short alternating
//! rounds (`interleaved` in the harness), whose round-by-round ratios hold
//! up while other jobs load the machine; set `MULTIOPEN_INTERLEAVED=0` to
//! skip that.
//!
//! Per-iteration figures are wall time per iteration per thread; see the
//! `multiopen_benches` crate docs. Each thread takes and returns one object
//! before the timed loop (in `parallel_with`'s untimed init), so one-time
//! per-thread set-up (a thread index, a counter stripe) is not timed.
//!
//! Run: `cargo bench -p multiopen-benches --bench pool`.

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use criterion::{criterion_group, BenchmarkGroup, Criterion};
use crossbeam_queue::ArrayQueue;
use crossbeam_utils::CachePadded;
use multiopen::Pool;
use multiopen_benches::{bench_main, interleaved, parallel_with, spread_table, Contender};

/// Objects in every pool (multiopen's default `max_size`).
const SIZE: usize = 4;

/// The pooled object: a buffer, as pools mostly hold.
fn buffer() -> Vec<u8> {
    Vec::with_capacity(256)
}

/// Short runs, as the other bench files: ratios within one run are what
/// BENCHMARKS.md reports.
fn budget<M: criterion::measurement::Measurement>(group: &mut BenchmarkGroup<'_, M>) {
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
}

/// Runs `take_return` `iters` times on each of `threads` pinned threads,
/// after one untimed warm-up call per thread.
fn run(threads: usize, iters: u64, take_return: impl Fn() + Sync) -> Duration {
    parallel_with(threads, iters, |_| take_return(), |()| take_return())
}

/// opool's allocator: makes buffers, no reset.
struct Buffers;

impl opool::PoolAllocator<Vec<u8>> for Buffers {
    fn allocate(&self) -> Vec<u8> {
        buffer()
    }
}

/// A contender: its name and a function that does `iters` take+return
/// iterations on each of the threads and returns the time to divide by
/// `iters` (for criterion's `iter_custom` and for `interleaved`).
type Bench = (&'static str, Box<dyn Fn(u64) -> Duration + Sync>);

/// Every contender at `threads` threads, each with its own pool of `SIZE`
/// objects (prefilled where the crate allows; the others fill up in the
/// untimed warm-up).
fn contenders(threads: usize) -> Vec<Bench> {
    let queue = ArrayQueue::new(SIZE);
    for _ in 0..SIZE {
        queue.push(buffer()).expect("room");
    }
    let counted_queue = ArrayQueue::new(SIZE);
    for _ in 0..SIZE {
        counted_queue.push(buffer()).expect("room");
    }
    let reused = CachePadded::new(AtomicUsize::new(0));
    let returned = CachePadded::new(AtomicUsize::new(0));
    let pool = Pool::new(buffer);
    pool.prefill(SIZE);
    let mutex_vec = Mutex::new((0..SIZE).map(|_| buffer()).collect::<Vec<_>>());
    let linear = lockfree_object_pool::LinearObjectPool::new(buffer, |_| ());
    let spinlock = lockfree_object_pool::SpinLockObjectPool::new(buffer, |_| ());
    let object_pool = object_pool::Pool::new(SIZE, buffer);
    let opool = opool::Pool::new_prefilled(SIZE, Buffers);
    vec![
        (
            "arrayqueue_floor",
            Box::new(move |iters| {
                run(threads, iters, || {
                    let object = queue.pop().expect("an idle object");
                    black_box(&object);
                    let _ = queue.push(object);
                })
            }),
        ),
        (
            "arrayqueue_shared_counters",
            Box::new(move |iters| {
                run(threads, iters, || {
                    let object = counted_queue.pop().expect("an idle object");
                    reused.fetch_add(1, Ordering::Relaxed);
                    black_box(&object);
                    if counted_queue.push(object).is_ok() {
                        returned.fetch_add(1, Ordering::Relaxed);
                    }
                })
            }),
        ),
        (
            "multiopen",
            Box::new(move |iters| {
                let elapsed = run(threads, iters, || {
                    let object = pool.instance();
                    black_box(&*object);
                });
                assert_eq!(pool.stats().created, SIZE, "the bench never made more");
                elapsed
            }),
        ),
        (
            "mutex_vec",
            Box::new(move |iters| {
                run(threads, iters, || {
                    let object = mutex_vec.lock().unwrap().pop().unwrap_or_else(buffer);
                    black_box(&object);
                    let mut idle = mutex_vec.lock().unwrap();
                    if idle.len() < SIZE {
                        idle.push(object);
                    }
                })
            }),
        ),
        (
            "lockfree_linear",
            Box::new(move |iters| {
                run(threads, iters, || {
                    let object = linear.pull();
                    black_box(&*object);
                })
            }),
        ),
        (
            "lockfree_spinlock",
            Box::new(move |iters| {
                run(threads, iters, || {
                    let object = spinlock.pull();
                    black_box(&*object);
                })
            }),
        ),
        (
            "object_pool",
            Box::new(move |iters| {
                run(threads, iters, || {
                    let object = object_pool.pull(buffer);
                    black_box(&*object);
                })
            }),
        ),
        (
            "opool",
            Box::new(move |iters| {
                run(threads, iters, || {
                    let object = opool.get();
                    black_box(&*object);
                })
            }),
        ),
    ]
}

fn take_return(c: &mut Criterion) {
    for threads in [1, 2] {
        let mut group = c.benchmark_group(format!("pool/{threads}t"));
        budget(&mut group);
        for (name, bench) in contenders(threads) {
            group.bench_function(name, |b| b.iter_custom(&bench));
        }
        group.finish();
    }
}

criterion_group!(benches, take_return);

/// Criterion, then the interleaved cross-check: see [`bench_main`].
fn main() {
    bench_main(benches, cross_check);
}

/// The same contenders in short alternating rounds ([`interleaved`]): the
/// ratios BENCHMARKS.md can trust while other jobs load the machine. A
/// round is a few milliseconds; the whole check takes about 30 s.
fn cross_check() {
    println!("\n## Interleaved cross-check (ns per iteration per thread)\n");
    for (threads, iters, rounds) in [(1, 100_000, 150), (2, 50_000, 150)] {
        let benches = contenders(threads);
        let list: Vec<Contender<'_>> = benches
            .iter()
            .map(|(name, bench)| (*name, &**bench as &dyn Fn(u64) -> Duration))
            .collect();
        let spreads = interleaved(rounds, iters, &list);
        println!("### pool/{threads}t ({rounds} rounds of {iters})\n");
        println!("{}", spread_table(&spreads));
    }
}
