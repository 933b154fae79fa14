//! `RunState`'s futures against tokio-util's `CancellationToken`, in one
//! criterion run and one tokio runtime.
//!
//! Groups (issue 14 "Speed"; figures go to `BENCHMARKS.md` as ratios):
//!
//! - `async_wake`: cancel → a task awaiting the cancel runs. The task polls
//!   its future once (registering its waker), says so, and awaits it on the
//!   runtime's one worker thread (pinned to core 1); the bench thread
//!   (pinned to core 0) waits until that worker is asleep in the kernel,
//!   then times from just before `cancel()` to the task's first
//!   instruction after the await. `RunState::wait_cancelled_async` against
//!   `CancellationToken::cancelled()`, a new token per round (a token
//!   cannot be reset) and a restarted state (a stop and a start) per
//!   round, both untimed.
//! - `async_poll_cancelled`: make a future on a state that is cancelled
//!   already and poll it once (ready), against the floor (an Acquire load
//!   of an `AtomicBool`) and tokio-util's `cancelled()` on a cancelled
//!   token.
//!
//! After criterion, the same comparisons run in short alternating rounds
//! (`interleaved`), whose ratios hold up while other jobs load the machine;
//! `MULTIOPEN_INTERLEAVED=0` skips that.
//!
//! Run: `cargo bench -p multiopen-benches --bench runstate_async`.

use std::future::{poll_fn, Future};
use std::hint::black_box;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{criterion_group, BenchmarkGroup, Criterion};
use crossbeam_utils::CachePadded;
use multiopen::RunState;
use multiopen_benches::{
    bench_main, interleaved, parallel, pin_to, spread_table, wait_until_asleep,
};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

/// Short runs, as in the other benches of this package.
fn budget<M: criterion::measurement::Measurement>(group: &mut BenchmarkGroup<'_, M>) {
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
}

/// The runtime every group uses: one worker thread, pinned to core 1,
/// whose `/proc` stat file the wake bench watches.
fn runtime() -> &'static (Runtime, Option<String>) {
    static RT: OnceLock<(Runtime, Option<String>)> = OnceLock::new();
    RT.get_or_init(|| {
        let stat = Arc::new(Mutex::new(None));
        let rt = {
            let stat = Arc::clone(&stat);
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .on_thread_start(move || {
                    pin_to(1);
                    *stat.lock().unwrap() = multiopen_benches::own_stat_path();
                })
                .build()
                .expect("a tokio runtime")
        };
        // The worker starts at once; wait for its stat path.
        rt.block_on(async {});
        let stat = loop {
            if let Some(stat) = stat.lock().unwrap().clone() {
                break Some(stat);
            }
            if multiopen_benches::own_stat_path().is_none() {
                break None;
            }
            std::thread::yield_now();
        };
        (rt, stat)
    })
}

/// What the awaiting task and the bench thread share in one round.
#[derive(Default)]
struct Shake {
    /// The task has polled its future once (its waker is registered).
    ready: AtomicBool,
    /// The task ran after the await; `woke_at` is set.
    done: AtomicBool,
    woke_at: Mutex<Option<Instant>>,
}

/// The task's side: poll `future` once, say so, await it, stamp the time.
async fn await_registered<F: Future>(future: F, shake: &Shake) {
    let mut future = pin!(future);
    let first = poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx).is_ready())).await;
    shake.ready.store(true, Ordering::Release);
    if !first {
        future.await;
    }
    let now = Instant::now();
    *shake.woke_at.lock().unwrap() = Some(now);
    shake.done.store(true, Ordering::Release);
}

/// `iters` rounds of: `arm` (spawns the awaiting task, untimed), wait until
/// the task has registered and the worker sleeps, then `cancel` → the
/// task's stamp. The sum over the rounds, for `iter_custom`; the bench
/// side runs on a thread of its own pinned to core 0.
fn async_wake_latency<T: Send>(
    iters: u64,
    arm: impl FnMut(Arc<Shake>) -> T + Send,
    cancel: impl FnMut(&T) + Send,
) -> Duration {
    let (rt, stat) = runtime();
    let (mut arm, mut cancel) = (arm, cancel);
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let _enter = rt.enter();
                pin_to(0);
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let shake = Arc::new(Shake::default());
                    let armed = arm(Arc::clone(&shake));
                    while !shake.ready.load(Ordering::Acquire) {
                        std::hint::spin_loop();
                    }
                    wait_until_asleep(stat.as_deref());
                    let t0 = Instant::now();
                    cancel(&armed);
                    while !shake.done.load(Ordering::Acquire) {
                        std::hint::spin_loop();
                    }
                    let t1 = shake.woke_at.lock().unwrap().take().expect("stamped");
                    total += t1.saturating_duration_since(t0);
                }
                total
            })
            .join()
            .expect("the bench thread panicked")
    })
}

/// Cancel → an awaiting task runs, `RunState` (restarted each round).
fn runstate_wake(rs: &Arc<RunState>, iters: u64) -> Duration {
    async_wake_latency(
        iters,
        |shake| {
            let _ = rs.stop();
            rs.start().expect("stopped just now");
            let rs = Arc::clone(rs);
            tokio::spawn(async move { await_registered(rs.wait_cancelled_async(), &shake).await })
        },
        |_| rs.cancel(),
    )
}

/// Cancel → an awaiting task runs, tokio-util (a new token each round).
fn tokio_wake(iters: u64) -> Duration {
    async_wake_latency(
        iters,
        |shake| {
            let token = CancellationToken::new();
            let theirs = token.clone();
            tokio::spawn(async move { await_registered(theirs.cancelled(), &shake).await });
            token
        },
        CancellationToken::cancel,
    )
}

fn async_wake(c: &mut Criterion) {
    let mut group = c.benchmark_group("async_wake");
    budget(&mut group);
    group.sample_size(30);
    group.bench_function("tokio_cancelled", |b| b.iter_custom(tokio_wake));
    let rs = Arc::new(RunState::new("bench"));
    group.bench_function("runstate_wait_cancelled_async", |b| {
        b.iter_custom(|iters| runstate_wake(&rs, iters))
    });
    group.finish();
}

/// One poll of a fresh future on a cancelled state: ready.
fn poll_once<F: Future>(future: F) -> bool {
    let future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    future.poll(&mut cx).is_ready()
}

fn async_poll_cancelled(c: &mut Criterion) {
    let mut group = c.benchmark_group("async_poll_cancelled");
    budget(&mut group);
    let flag = CachePadded::new(AtomicBool::new(true));
    group.bench_function("atomic_bool_floor", |b| {
        b.iter_custom(|iters| {
            parallel(1, iters, |_| {
                black_box(flag.load(Ordering::Acquire));
            })
        })
    });
    let rs = RunState::new("bench");
    rs.cancel();
    group.bench_function("runstate_wait_cancelled_async", |b| {
        b.iter_custom(|iters| {
            parallel(1, iters, |_| {
                black_box(poll_once(black_box(&rs).wait_cancelled_async()));
            })
        })
    });
    let token = CancellationToken::new();
    token.cancel();
    group.bench_function("tokio_cancelled", |b| {
        b.iter_custom(|iters| {
            parallel(1, iters, |_| {
                black_box(poll_once(black_box(&token).cancelled()));
            })
        })
    });
    group.finish();
}

criterion_group!(benches, async_wake, async_poll_cancelled);

fn main() {
    bench_main(benches, cross_check);
}

/// The same comparisons in short alternating rounds.
fn cross_check() {
    println!("\n## Interleaved cross-check (ns per iteration)\n");
    let rs = Arc::new(RunState::new("bench"));
    let ours = |iters| runstate_wake(&rs, iters);
    let spreads = interleaved(
        60,
        20,
        &[
            ("tokio_cancelled", &tokio_wake),
            ("runstate_wait_cancelled_async", &ours),
        ],
    );
    println!("### async_wake (60 rounds of 20 wakes)\n");
    println!("{}", spread_table(&spreads));

    let flag = CachePadded::new(AtomicBool::new(true));
    let cancelled = RunState::new("bench");
    cancelled.cancel();
    let token = CancellationToken::new();
    token.cancel();
    let floor = |iters| {
        parallel(1, iters, |_| {
            black_box(flag.load(Ordering::Acquire));
        })
    };
    let runstate = |iters| {
        parallel(1, iters, |_| {
            black_box(poll_once(black_box(&cancelled).wait_cancelled_async()));
        })
    };
    let tokio = |iters| {
        parallel(1, iters, |_| {
            black_box(poll_once(black_box(&token).cancelled()));
        })
    };
    let spreads = interleaved(
        100,
        1_000_000,
        &[
            ("atomic_bool_floor", &floor),
            ("runstate_wait_cancelled_async", &runstate),
            ("tokio_cancelled", &tokio),
        ],
    );
    println!("### async_poll_cancelled (100 rounds of 1,000,000)\n");
    println!("{}", spread_table(&spreads));
}
