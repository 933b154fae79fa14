//! `RunState` against its floors and tokio-util's `CancellationToken`, in
//! one criterion run.
//!
//! Groups (SPEC "Speed"; figures go to `BENCHMARKS.md` as ratios):
//!
//! - `cancelled/{1,2}t`: one poll per iteration per thread, on a state
//!   that is never cancelled (the hot-loop case). Beside it the floor, an
//!   `AtomicBool` load (Acquire, as `cancelled()` loads, on a flag alone
//!   on its cache line as the state word is), and what a user might pick
//!   instead, `tokio_util::sync::CancellationToken::is_cancelled`.
//! - `wake`: a thread asleep in `RunState::sleep` (a timed futex wait) or
//!   blocked in `check()` on a paused state, released by another thread's
//!   `cancel()`, against the bare futex hand-off (the floor).
//!
//! After criterion, the same comparisons run again in short alternating
//! rounds (`interleaved` in the harness), whose round-by-round ratios hold
//! up while other jobs load the machine; set `MULTIOPEN_INTERLEAVED=0` to
//! skip that.
//!
//! Per-iteration figures are wall time per iteration per thread; see the
//! `multiopen_benches` crate docs.
//!
//! - `current/{1,2}t`: polling the thread's current state
//!   (`RunState::with_current`, `RunState::current`) against polling the
//!   state directly.
//!
//! Run: `cargo bench -p multiopen-benches --bench runstate`.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, BatchSize, BenchmarkGroup, Criterion};
use crossbeam_utils::CachePadded;
use multiopen::RunState;
use multiopen_benches::{
    bench_main, futex_handoff, interleaved, parallel, parallel_with, spread_table, wake_latency,
};
use tokio_util::sync::CancellationToken;

/// Short runs, as in the other benches of this package: compare ratios
/// within one run, never figures across runs.
fn budget<M: criterion::measurement::Measurement>(group: &mut BenchmarkGroup<'_, M>) {
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
}

/// `cancelled()` against the `AtomicBool` floor and `is_cancelled`, at 1
/// and 2 threads.
fn cancelled(c: &mut Criterion) {
    for threads in [1, 2] {
        let mut group = c.benchmark_group(format!("cancelled/{threads}t"));
        budget(&mut group);

        let flag = CachePadded::new(AtomicBool::new(false));
        group.bench_function("atomic_bool_floor", |b| {
            b.iter_custom(|iters| {
                parallel(threads, iters, |_| {
                    black_box(flag.load(Ordering::Acquire));
                })
            })
        });

        // A running, never-cancelled state: the poll of a hot loop.
        let rs = RunState::new("bench");
        rs.start().expect("fresh state");
        group.bench_function("runstate_cancelled", |b| {
            b.iter_custom(|iters| {
                parallel(threads, iters, |_| {
                    black_box(rs.cancelled());
                })
            })
        });

        // The same poll on a grandchild: the tree costs the query nothing.
        // Polled through `&RunState`, as the root above (an `Arc`'s extra
        // pointer hop would be measured otherwise; a worker holds `&`).
        let root = RunState::new("root");
        let child = root.child("child");
        let grandchild_arc = child.child("grandchild");
        let grandchild: &RunState = &grandchild_arc;
        grandchild.start().expect("fresh state");
        group.bench_function("runstate_grandchild_cancelled", |b| {
            b.iter_custom(|iters| {
                parallel(threads, iters, |_| {
                    black_box(grandchild.cancelled());
                })
            })
        });

        let token = CancellationToken::new();
        group.bench_function("tokio_is_cancelled", |b| {
            b.iter_custom(|iters| {
                parallel(threads, iters, |_| {
                    black_box(token.is_cancelled());
                })
            })
        });
        group.finish();
    }
}

/// A new run for each wake round (untimed): running, not cancelled.
fn restart(rs: &RunState) {
    let _ = rs.stop();
    rs.start().expect("stopped just now");
}

/// Cancel → `sleep` returns: the waker's part of a wake round.
fn sleep_until_cancelled(rs: &RunState) {
    // A timed futex wait that only the cancel ends.
    let woke = rs.sleep(Duration::from_secs(3600));
    assert!(woke.is_err(), "ended by the cancel");
}

/// Cancel → sleeper running, against the futex hand-off floor.
fn wake(c: &mut Criterion) {
    let mut group = c.benchmark_group("wake");
    budget(&mut group);
    // Each hand-off costs tens of µs of wall time around it; fewer, longer
    // samples keep the group inside its budget.
    group.sample_size(30);

    group.bench_function("futex_handoff", |b| b.iter_custom(futex_handoff));

    let rs = RunState::new("bench");
    group.bench_function("runstate_sleep", |b| {
        b.iter_custom(|iters| {
            wake_latency(
                iters,
                || restart(&rs),
                || sleep_until_cancelled(&rs),
                // Timed from here.
                |()| rs.cancel(),
            )
        })
    });

    let rs = RunState::new("bench");
    group.bench_function("runstate_paused_check", |b| {
        b.iter_custom(|iters| {
            wake_latency(
                iters,
                || {
                    restart(&rs);
                    rs.pause().expect("running, not cancelled");
                },
                // Blocks in the futex wait while paused.
                || assert!(rs.check().is_err(), "ended by the cancel"),
                |()| rs.cancel(),
            )
        })
    });
    group.finish();
}

/// Polling the current thread's state (issue 13 item 7): each thread
/// enters one shared `Arc<RunState>` (untimed), then polls `cancelled()`
/// through `with_current` (a borrow) or `current()` (an `Arc` clone and
/// drop on the shared count), against polling the state directly; and
/// `with_current` on a thread under no state (it makes a default).
fn current(c: &mut Criterion) {
    for threads in [1, 2] {
        let mut group = c.benchmark_group(format!("current/{threads}t"));
        budget(&mut group);
        let rs = Arc::new(RunState::new("bench"));
        rs.start().expect("fresh state");
        group.bench_function("runstate_cancelled", |b| {
            b.iter_custom(|iters| {
                parallel(threads, iters, |_| {
                    black_box(rs.cancelled());
                })
            })
        });
        group.bench_function("with_current_cancelled", |b| {
            b.iter_custom(|iters| {
                parallel_with(
                    threads,
                    iters,
                    |_| rs.enter(),
                    |_| {
                        black_box(RunState::with_current(|rs| rs.cancelled()));
                    },
                )
            })
        });
        group.bench_function("current_cancelled", |b| {
            b.iter_custom(|iters| {
                parallel_with(
                    threads,
                    iters,
                    |_| rs.enter(),
                    |_| {
                        black_box(RunState::current().cancelled());
                    },
                )
            })
        });
        group.bench_function("with_current_default", |b| {
            b.iter_custom(|iters| {
                parallel(threads, iters, |_| {
                    black_box(RunState::with_current(|rs| rs.cancelled()));
                })
            })
        });
        group.finish();
    }
}

/// The tree: cancelling a parent of 10,000 children, and making and
/// dropping a child, against tokio-util's `child_token`; a childless
/// cancel (the unchanged fast path).
fn tree(c: &mut Criterion) {
    let mut group = c.benchmark_group("tree");
    budget(&mut group);
    group.sample_size(20);
    const CHILDREN: usize = 10_000;
    group.bench_function("runstate_cancel_10k_children", |b| {
        b.iter_batched(
            || {
                let parent = RunState::new("parent");
                let kids: Vec<_> = (0..CHILDREN).map(|_| parent.child("kid")).collect();
                (parent, kids)
            },
            |(parent, kids)| {
                parent.cancel();
                (parent, kids)
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("tokio_cancel_10k_child_tokens", |b| {
        b.iter_batched(
            || {
                let parent = CancellationToken::new();
                let kids: Vec<_> = (0..CHILDREN).map(|_| parent.child_token()).collect();
                (parent, kids)
            },
            |(parent, kids)| {
                parent.cancel();
                (parent, kids)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();

    let mut group = c.benchmark_group("child");
    budget(&mut group);
    let parent = RunState::new("parent");
    group.bench_function("runstate_child_create_drop", |b| {
        b.iter(|| drop(black_box(parent.child("kid"))))
    });
    let token = CancellationToken::new();
    group.bench_function("tokio_child_token_create_drop", |b| {
        b.iter(|| drop(black_box(token.child_token())))
    });
    group.bench_function("runstate_childless_cancel", |b| {
        b.iter_batched_ref(
            || RunState::new("fresh"),
            |rs| rs.cancel(),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// Cancel → a thread in `wait_cancelled` runs, against the futex hand-off.
fn wait_cancelled(c: &mut Criterion) {
    let mut group = c.benchmark_group("wake_wait_cancelled");
    budget(&mut group);
    group.sample_size(30);
    group.bench_function("futex_handoff", |b| b.iter_custom(futex_handoff));
    let rs = RunState::new("bench");
    group.bench_function("runstate_wait_cancelled", |b| {
        b.iter_custom(|iters| {
            wake_latency(
                iters,
                || restart(&rs),
                || rs.wait_cancelled(),
                // Timed from here.
                |()| rs.cancel(),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, cancelled, wake, current, tree, wait_cancelled);

/// Criterion, then the interleaved cross-check: see [`bench_main`].
fn main() {
    bench_main(benches, cross_check);
}

/// The same comparisons in short alternating rounds ([`interleaved`]): the
/// ratios BENCHMARKS.md can trust while other jobs load the machine. About
/// 10 s in all.
fn cross_check() {
    println!("\n## Interleaved cross-check (ns per iteration per thread)\n");
    for (threads, rounds) in [(1, 100), (2, 60)] {
        let iters = 1_000_000;
        let flag = CachePadded::new(AtomicBool::new(false));
        let rs = RunState::new("bench");
        rs.start().expect("fresh state");
        let root = RunState::new("root");
        let child = root.child("child");
        let grandchild_arc = child.child("grandchild");
        // Polled through a plain reference, as `rs` is (not through the
        // `Arc`, whose pointer the loop would load each time).
        let grandchild: &RunState = &grandchild_arc;
        grandchild.start().expect("fresh state");
        let token = CancellationToken::new();
        let floor = |iters| {
            parallel(threads, iters, |_| {
                black_box(flag.load(Ordering::Acquire));
            })
        };
        let runstate = |iters| {
            parallel(threads, iters, |_| {
                black_box(rs.cancelled());
            })
        };
        let tokio = |iters| {
            parallel(threads, iters, |_| {
                black_box(token.is_cancelled());
            })
        };
        let grandchild_poll = |iters| {
            parallel(threads, iters, |_| {
                black_box(grandchild.cancelled());
            })
        };
        let spreads = interleaved(
            rounds,
            iters,
            &[
                ("atomic_bool_floor", &floor),
                ("runstate_cancelled", &runstate),
                ("runstate_grandchild_cancelled", &grandchild_poll),
                ("tokio_is_cancelled", &tokio),
            ],
        );
        println!("### cancelled/{threads}t ({rounds} rounds of {iters})\n");
        println!("{}", spread_table(&spreads));
    }

    let sleeping = RunState::new("bench");
    let sleep = |iters| {
        wake_latency(
            iters,
            || restart(&sleeping),
            || sleep_until_cancelled(&sleeping),
            |()| sleeping.cancel(),
        )
    };
    let paused = RunState::new("bench");
    let paused_check = |iters| {
        wake_latency(
            iters,
            || {
                restart(&paused);
                paused.pause().expect("running, not cancelled");
            },
            || assert!(paused.check().is_err(), "ended by the cancel"),
            |()| paused.cancel(),
        )
    };
    let spreads = interleaved(
        100,
        20,
        &[
            ("futex_handoff", &futex_handoff),
            ("runstate_sleep", &sleep),
            ("runstate_paused_check", &paused_check),
        ],
    );
    println!("### wake (100 rounds of 20 hand-offs)\n");
    println!("{}", spread_table(&spreads));

    // The tree against tokio-util's (the target: at most 0.5× its time).
    let parent = RunState::new("parent");
    let token = CancellationToken::new();
    let tokio_child = |iters| {
        let start = Instant::now();
        for _ in 0..iters {
            drop(black_box(token.child_token()));
        }
        start.elapsed()
    };
    let runstate_child = |iters| {
        let start = Instant::now();
        for _ in 0..iters {
            drop(black_box(parent.child("kid")));
        }
        start.elapsed()
    };
    let spreads = interleaved(
        100,
        20_000,
        &[
            ("tokio_child_token_create_drop", &tokio_child),
            ("runstate_child_create_drop", &runstate_child),
        ],
    );
    println!("### child create+drop (100 rounds of 20,000)\n");
    println!("{}", spread_table(&spreads));

    const CHILDREN: usize = 10_000;
    // Only the cancel is timed; making and dropping the children is not.
    let tokio_cancel = |iters| {
        let mut timed = Duration::ZERO;
        for _ in 0..iters {
            let parent = CancellationToken::new();
            let kids: Vec<_> = (0..CHILDREN).map(|_| parent.child_token()).collect();
            let start = Instant::now();
            parent.cancel();
            timed += start.elapsed();
            drop(black_box(kids));
        }
        timed
    };
    // Only the cancel (`cancel(parent)`) is timed, as for tokio-util.
    let runstate_cancel_by = |iters, cancel: fn(&RunState)| {
        let mut timed = Duration::ZERO;
        for _ in 0..iters {
            let parent = RunState::new("parent");
            let kids: Vec<_> = (0..CHILDREN).map(|_| parent.child("kid")).collect();
            let start = Instant::now();
            cancel(&parent);
            timed += start.elapsed();
            drop(black_box(kids));
        }
        timed
    };
    let runstate_cancel = |iters| runstate_cancel_by(iters, |parent| parent.cancel());
    // With a reason (as a deadline or a signal cancels): each child gets
    // its reason, in a cold part made for it.
    let runstate_cancel_with =
        |iters| runstate_cancel_by(iters, |parent| parent.cancel_with("deadline exceeded"));
    let spreads = interleaved(
        60,
        2,
        &[
            ("tokio_cancel_10k_child_tokens", &tokio_cancel),
            ("runstate_cancel_10k_children", &runstate_cancel),
            ("runstate_cancel_with_10k_children", &runstate_cancel_with),
        ],
    );
    println!("### cancel a parent of 10,000 children (60 rounds of 2)\n");
    println!("{}", spread_table(&spreads));
}
