//! `MultiOpen` against its floor and the naive design, in one criterion run.
//!
//! Groups (SPEC "Speed"; figures go to `BENCHMARKS.md` as ratios):
//!
//! - `open_close/{1,2,16}t`: one open + close per iteration per thread, on
//!   an object that stays open for the whole bench (a guard is held, so
//!   every open and close is the fast path). Beside it the floor, an
//!   `AtomicUsize` `fetch_add` + `fetch_sub` on a shared padded counter,
//!   and the design a user might write instead, a `Mutex<usize>` counter.
//!   16 threads on 2 cores is oversubscribed on purpose.
//! - `cycle/1t`: a full startup + shutdown (open an idle object, drop the
//!   guard), beside the same cycle built on a `Mutex`.
//! - `wake`: a thread asleep in `join()` released by another thread's final
//!   close, against the bare futex hand-off (the floor), plus a futex
//!   ping-pong round trip for reference.
//! - `timed_open/{1,2}t`: `open_timeout` and `try_open` on an open object
//!   beside `open` (the same fast path: no clock is read), and
//!   `open_async` (make the future, poll it once: ready, the same one RMW;
//!   drop the guard).
//! - `linger/{1,2}t`: open+close on an object held open, with a linger set
//!   and without (the hot path must not move); `linger_idle/1t`: open+close
//!   with no other open, on a lingering object (every open ends a linger,
//!   every close begins one) beside the startup+shutdown cycle of an object
//!   without linger, which it replaces.
//!
//! After criterion, the same comparisons run again in short alternating
//! rounds (`interleaved` in the harness), whose round-by-round ratios hold
//! up while other jobs load the machine; set `MULTIOPEN_INTERLEAVED=0` to
//! skip that part, or `MULTIOPEN_INTERLEAVED_ONLY=<section>` (`open_close`,
//! `cycle`, `wake`, `timed_open`, `linger`) to run only the sections whose
//! name contains it.
//!
//! Per-iteration figures are wall time per iteration per thread; see the
//! `multiopen_benches` crate docs.
//!
//! Run: `cargo bench -p multiopen-benches --bench multiopen`.

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{criterion_group, BenchmarkGroup, Criterion};
use crossbeam_utils::CachePadded;
use multiopen::MultiOpen;
use multiopen_benches::{
    bench_main, futex_handoff, futex_ping_pong, interleaved, parallel, spread_table, wake_latency,
};

/// The cheapest resource: startup and shutdown do nothing, so what is
/// measured is `MultiOpen`'s own bookkeeping.
fn trivial() -> MultiOpen<impl multiopen::Resource<Handle = (), Error = Infallible>> {
    MultiOpen::from_fns(|| Ok::<(), Infallible>(()), |()| Ok(()))
}

/// Short runs: the whole file must finish in a few minutes on 2 cores. The
/// 2-thread medians swing between runs far more than these budgets would
/// narrow them, which is why BENCHMARKS.md compares ratios within a run.
fn budget<M: criterion::measurement::Measurement>(group: &mut BenchmarkGroup<'_, M>) {
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
}

/// (a)–(c): open+close on an open `MultiOpen`, the atomic floor and the
/// `Mutex<usize>` counter, at 1, 2 and 16 threads.
fn open_close(c: &mut Criterion) {
    for threads in [1, 2, 16] {
        let mut group = c.benchmark_group(format!("open_close/{threads}t"));
        budget(&mut group);

        // The floor: exactly the two read-modify-writes the contract
        // allows, on a counter alone on its cache line as `MultiOpen`'s
        // state word is. Acquire/Release as `MultiOpen` uses them.
        let counter = CachePadded::new(AtomicUsize::new(1));
        group.bench_function("atomic_floor", |b| {
            b.iter_custom(|iters| {
                parallel(threads, iters, |_| {
                    black_box(counter.fetch_add(1, Ordering::Acquire));
                    black_box(counter.fetch_sub(1, Ordering::Release));
                })
            })
        });

        // The object under test. `_held` keeps it open throughout, so no
        // close in the bench is ever the final one.
        let mo = trivial();
        let _held = mo.open().expect("startup cannot fail");
        group.bench_function("multiopen", |b| {
            b.iter_custom(|iters| {
                parallel(threads, iters, |_| {
                    // No black_box on the guard: the two atomics cannot be
                    // optimised away, and the guard should cost what it
                    // costs a user.
                    drop(mo.open().expect("already open"));
                })
            })
        });

        // The naive design: an open count behind a lock, taken once in
        // open and once in close.
        let naive = CachePadded::new(Mutex::new(1usize));
        group.bench_function("mutex_counter", |b| {
            b.iter_custom(|iters| {
                parallel(threads, iters, |_| {
                    *naive.lock().unwrap() += 1;
                    black_box(&naive);
                    *naive.lock().unwrap() -= 1;
                })
            })
        });
        group.finish();
    }
}

/// A naive open counter with startup/shutdown under a lock: what (d) is
/// held against. Startup/shutdown are as trivial as [`trivial`]'s.
struct MutexCycle {
    count: Mutex<usize>,
}

impl MutexCycle {
    fn open(&self) {
        let mut count = self.count.lock().unwrap();
        if *count == 0 {
            black_box(()); // startup
        }
        *count += 1;
    }

    fn close(&self) {
        let mut count = self.count.lock().unwrap();
        *count -= 1;
        if *count == 0 {
            black_box(()); // shutdown
        }
    }
}

/// (d): a whole cycle, open on an idle object (startup) then the final
/// close (shutdown, finalise; no futex wake, since nobody waits).
fn cycle(c: &mut Criterion) {
    let mut group = c.benchmark_group("cycle/1t");
    budget(&mut group);
    let mo = trivial();
    group.bench_function("multiopen", |b| {
        b.iter_custom(|iters| {
            parallel(1, iters, |_| {
                drop(mo.open().expect("startup cannot fail"));
            })
        })
    });
    let naive = MutexCycle {
        count: Mutex::new(0),
    };
    group.bench_function("mutex_cycle", |b| {
        b.iter_custom(|iters| {
            parallel(1, iters, |_| {
                naive.open();
                naive.close();
            })
        })
    });
    group.finish();
}

/// (e): join wake latency against the futex hand-off floor.
fn wake(c: &mut Criterion) {
    let mut group = c.benchmark_group("wake");
    budget(&mut group);
    // Each hand-off costs tens of µs of wall time around it; fewer, longer
    // samples keep the group inside its budget.
    group.sample_size(30);

    group.bench_function("futex_handoff", |b| b.iter_custom(futex_handoff));

    let mo = trivial();
    group.bench_function("multiopen_join", |b| {
        b.iter_custom(|iters| {
            wake_latency(
                iters,
                // Untimed: a new cycle (startup), held by the waker.
                || mo.open().expect("startup cannot fail"),
                // Blocks until the waker's final close finalises the cycle.
                || mo.join().expect("opened before"),
                // Timed from here: the final close runs shutdown, finalises
                // and wakes the joiner.
                drop,
            )
        })
    });

    group.bench_function("futex_ping_pong_round_trip", |b| {
        b.iter_custom(futex_ping_pong)
    });
    group.finish();
}

/// An object that lingers an hour after its last close (for the benches,
/// for ever): what `linger` and `linger_idle` measure.
fn lingering(
) -> std::sync::Arc<MultiOpen<impl multiopen::Resource<Handle = (), Error = Infallible>>> {
    trivial().with_linger(Duration::from_secs(3600))
}

/// `open_async` on an open object: the future made, polled once (ready at
/// once: the same `fetch_add` as `open`), its guard dropped.
fn open_async_once<R: multiopen::Resource>(mo: &MultiOpen<R>) {
    let mut open = mo.open_async();
    match Pin::new(&mut open).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(guard) => drop(guard.expect("open")),
        Poll::Pending => unreachable!("an open object opens at the first poll"),
    }
}

/// (f): a timed open on an open object against `open`, and `open_async`.
fn timed_open(c: &mut Criterion) {
    for threads in [1, 2] {
        let mut group = c.benchmark_group(format!("timed_open/{threads}t"));
        budget(&mut group);
        let mo = trivial();
        let _held = mo.open().expect("startup cannot fail");
        group.bench_function("open", |b| {
            b.iter_custom(|iters| parallel(threads, iters, |_| drop(mo.open().expect("open"))))
        });
        group.bench_function("open_timeout", |b| {
            b.iter_custom(|iters| {
                parallel(threads, iters, |_| {
                    drop(mo.open_timeout(Duration::from_secs(1)).expect("open"));
                })
            })
        });
        group.bench_function("try_open", |b| {
            b.iter_custom(|iters| parallel(threads, iters, |_| drop(mo.try_open().expect("open"))))
        });
        group.bench_function("open_async", |b| {
            b.iter_custom(|iters| parallel(threads, iters, |_| open_async_once(&mo)))
        });
        group.finish();
    }
}

/// (g): open+close with a linger set and without: on an object held open
/// (the hot path), and on one with no other open (lingering: the slow path
/// a linger adds, against the cycle it saves).
fn linger(c: &mut Criterion) {
    for threads in [1, 2] {
        let mut group = c.benchmark_group(format!("linger/{threads}t"));
        budget(&mut group);
        let plain = trivial();
        let _held = plain.open().expect("startup cannot fail");
        group.bench_function("held_no_linger", |b| {
            b.iter_custom(|iters| parallel(threads, iters, |_| drop(plain.open().expect("open"))))
        });
        let lingers = lingering();
        let _held_too = lingers.open().expect("startup cannot fail");
        group.bench_function("held_with_linger", |b| {
            b.iter_custom(|iters| parallel(threads, iters, |_| drop(lingers.open().expect("open"))))
        });
        group.finish();
    }
    let mut group = c.benchmark_group("linger_idle/1t");
    budget(&mut group);
    let plain = trivial();
    group.bench_function("cycle_no_linger", |b| {
        b.iter_custom(|iters| parallel(1, iters, |_| drop(plain.open().expect("startup"))))
    });
    let lingers = lingering();
    group.bench_function("lingering", |b| {
        b.iter_custom(|iters| parallel(1, iters, |_| drop(lingers.open().expect("open"))))
    });
    group.finish();
}

criterion_group!(benches, open_close, cycle, wake, timed_open, linger);

/// Criterion, then the interleaved cross-check: see [`bench_main`].
fn main() {
    bench_main(benches, cross_check);
}

/// The same comparisons in short alternating rounds ([`interleaved`]): the
/// ratios BENCHMARKS.md can trust while other jobs load the machine. Each
/// round is a few milliseconds; the whole check takes about 15 s.
fn cross_check() {
    let only = std::env::var("MULTIOPEN_INTERLEAVED_ONLY").ok();
    let run = |section: &str| only.as_deref().is_none_or(|only| section.contains(only));
    println!("\n## Interleaved cross-check (ns per iteration per thread)\n");
    if run("open_close") {
        open_close_check();
    }
    if run("cycle") {
        cycle_check();
    }
    if run("wake") {
        wake_check();
    }
    if run("timed_open") {
        timed_open_check();
    }
    if run("linger") {
        linger_check();
    }
}

fn open_close_check() {
    for (threads, iters, rounds) in [(1, 200_000, 150), (2, 50_000, 150), (16, 50_000, 40)] {
        let counter = CachePadded::new(AtomicUsize::new(1));
        let mo = trivial();
        let _held = mo.open().expect("startup cannot fail");
        let naive = CachePadded::new(Mutex::new(1usize));
        let floor = |iters| {
            parallel(threads, iters, |_| {
                black_box(counter.fetch_add(1, Ordering::Acquire));
                black_box(counter.fetch_sub(1, Ordering::Release));
            })
        };
        let multiopen = |iters| parallel(threads, iters, |_| drop(mo.open().expect("open")));
        let mutex = |iters| {
            parallel(threads, iters, |_| {
                *naive.lock().unwrap() += 1;
                black_box(&naive);
                *naive.lock().unwrap() -= 1;
            })
        };
        let spreads = interleaved(
            rounds,
            iters,
            &[
                ("atomic_floor", &floor),
                ("multiopen", &multiopen),
                ("mutex_counter", &mutex),
            ],
        );
        println!("### open_close/{threads}t ({rounds} rounds of {iters})\n");
        println!("{}", spread_table(&spreads));
    }
}

fn cycle_check() {
    let mo = trivial();
    let naive = MutexCycle {
        count: Mutex::new(0),
    };
    let mutex_cycle = |iters| {
        parallel(1, iters, |_| {
            naive.open();
            naive.close();
        })
    };
    let mo_cycle = |iters| parallel(1, iters, |_| drop(mo.open().expect("startup")));
    let spreads = interleaved(
        100,
        50_000,
        &[("mutex_cycle", &mutex_cycle), ("multiopen", &mo_cycle)],
    );
    println!("### cycle/1t (100 rounds of 50000)\n");
    println!("{}", spread_table(&spreads));
}

fn wake_check() {
    let mo = trivial();
    let join = |iters| {
        wake_latency(
            iters,
            || mo.open().expect("startup cannot fail"),
            || mo.join().expect("opened before"),
            drop,
        )
    };
    let spreads = interleaved(
        100,
        20,
        &[("futex_handoff", &futex_handoff), ("multiopen_join", &join)],
    );
    println!("### wake (100 rounds of 20 hand-offs)\n");
    println!("{}", spread_table(&spreads));
}

fn timed_open_check() {
    for (threads, iters, rounds) in [(1, 200_000, 100), (2, 50_000, 100)] {
        let mo = trivial();
        let _held = mo.open().expect("startup cannot fail");
        let open = |iters| parallel(threads, iters, |_| drop(mo.open().expect("open")));
        let timed = |iters| {
            parallel(threads, iters, |_| {
                drop(mo.open_timeout(Duration::from_secs(1)).expect("open"));
            })
        };
        let try_open = |iters| parallel(threads, iters, |_| drop(mo.try_open().expect("open")));
        let open_async = |iters| parallel(threads, iters, |_| open_async_once(&mo));
        let spreads = interleaved(
            rounds,
            iters,
            &[
                ("open", &open),
                ("open_timeout", &timed),
                ("try_open", &try_open),
                ("open_async", &open_async),
            ],
        );
        println!("### timed_open/{threads}t ({rounds} rounds of {iters})\n");
        println!("{}", spread_table(&spreads));
    }
}

fn linger_check() {
    for (threads, iters, rounds) in [(1, 200_000, 100), (2, 50_000, 100)] {
        let plain = trivial();
        let _held = plain.open().expect("startup cannot fail");
        let lingers = lingering();
        let _held_too = lingers.open().expect("startup cannot fail");
        let without = |iters| parallel(threads, iters, |_| drop(plain.open().expect("open")));
        let with = |iters| parallel(threads, iters, |_| drop(lingers.open().expect("open")));
        let spreads = interleaved(
            rounds,
            iters,
            &[("held_no_linger", &without), ("held_with_linger", &with)],
        );
        println!("### linger/{threads}t, an object held open ({rounds} rounds of {iters})\n");
        println!("{}", spread_table(&spreads));
    }
    let plain = trivial();
    let lingers = lingering();
    let cycle = |iters| parallel(1, iters, |_| drop(plain.open().expect("startup")));
    let idle = |iters| parallel(1, iters, |_| drop(lingers.open().expect("open")));
    let spreads = interleaved(
        100,
        50_000,
        &[("cycle_no_linger", &cycle), ("lingering", &idle)],
    );
    println!("### linger_idle/1t, no other open (100 rounds of 50000)\n");
    println!("{}", spread_table(&spreads));
}
