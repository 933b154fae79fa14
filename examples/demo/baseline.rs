//! The baseline: the same service, pool and cancel flags with locks
//! (`Mutex`/`Condvar`), for the speedup.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use multiopen::RunState;

use crate::cli::{pool_cap, Options, POOL_WAIT};
use crate::invariants::finish;
use crate::report::Outcome;
use crate::supervise::supervise;
use crate::workload::{do_job, Batch, Sink, Tally, WorkerCounters, WorkerReport, SINK_BATCH};

struct LockedState {
    opens: usize,
    sink: Option<Arc<Sink>>,
    started: u64,
    finalised: u64,
}

/// Open count in a `Mutex`, a `Condvar` to wait for the shutdown.
struct LockedService {
    state: Mutex<LockedState>,
    shut_down: Condvar,
    tally: Arc<Tally>,
}

impl LockedService {
    fn open(&self) -> std::io::Result<Arc<Sink>> {
        let mut state = self.state.lock().unwrap();
        if state.opens == 0 {
            state.sink = Some(Arc::new(Sink::start(&self.tally)?));
            state.started += 1;
        }
        state.opens += 1;
        Ok(Arc::clone(state.sink.as_ref().expect("open")))
    }

    /// Returns true if this was the final close (it ran the shutdown).
    fn close(&self, sink: Arc<Sink>) -> std::io::Result<bool> {
        drop(sink);
        let mut state = self.state.lock().unwrap();
        state.opens -= 1;
        if state.opens > 0 {
            return Ok(false);
        }
        let sink = state.sink.take().expect("open");
        let sink = Arc::into_inner(sink).expect("every open closed");
        let result = sink.stop(&self.tally);
        state.finalised += 1;
        self.shut_down.notify_all();
        result.map(|()| true)
    }

    /// Waits until the current cycle has shut down.
    fn join(&self) {
        let state = self.state.lock().unwrap();
        let target = state.started;
        drop(
            self.shut_down
                .wait_while(state, |s| s.finalised < target)
                .unwrap(),
        );
    }
}

/// A `Mutex<Vec<_>>` pool with a cap on live buffers and a `Condvar` to
/// wait on at the cap (`wait_timeout`, as the multiopen design's
/// `get_timeout`), clearing buffers on return.
struct LockedPool {
    /// The idle buffers, and how many are alive.
    idle: Mutex<(Vec<Vec<u8>>, usize)>,
    returned: Condvar,
    cap: usize,
    created: AtomicU64,
    reused: AtomicU64,
    waits: AtomicU64,
    timeouts: AtomicU64,
    longest_wait_ns: AtomicU64,
}

impl LockedPool {
    fn take(&self, job_bytes: usize) -> Vec<u8> {
        let mut idle = self.idle.lock().unwrap();
        let mut waited_since = None;
        let buf = loop {
            if let Some(buf) = idle.0.pop() {
                break buf;
            }
            if idle.1 < self.cap {
                idle.1 += 1;
                self.created.fetch_add(1, Ordering::Relaxed);
                break Vec::with_capacity(job_bytes);
            }
            if waited_since.is_none() {
                waited_since = Some(Instant::now());
                self.waits.fetch_add(1, Ordering::Relaxed);
            }
            let (guard, waited) = self.returned.wait_timeout(idle, POOL_WAIT).unwrap();
            idle = guard;
            if waited.timed_out() {
                self.timeouts.fetch_add(1, Ordering::Relaxed);
            }
        };
        drop(idle);
        if let Some(since) = waited_since {
            let ns = since.elapsed().as_nanos() as u64;
            self.longest_wait_ns.fetch_max(ns, Ordering::Relaxed);
        }
        buf
    }

    fn give_back(&self, mut buf: Vec<u8>) {
        buf.clear();
        self.idle.lock().unwrap().0.push(buf);
        self.returned.notify_one();
    }
}

/// A cancel flag in a `Mutex`, with a `Condvar` to idle on.
#[derive(Default)]
struct LockedCancel {
    cancelled: Mutex<bool>,
    wake: Condvar,
}

impl LockedCancel {
    fn cancel(&self) {
        *self.cancelled.lock().unwrap() = true;
        self.wake.notify_all();
    }
    fn cancelled(&self) -> bool {
        *self.cancelled.lock().unwrap()
    }
    fn wait(&self) {
        let flag = self.cancelled.lock().unwrap();
        drop(self.wake.wait_while(flag, |c| !*c).unwrap());
    }
}

struct LockedWorld {
    service: LockedService,
    buffers: LockedPool,
    next_job: AtomicU64,
    jobs: u64,
    job_bytes: usize,
}

fn locked_worker(
    world: &LockedWorld,
    cancel: &LockedCancel,
    counters: &WorkerCounters,
) -> WorkerReport {
    let mut report = WorkerReport::default();
    let mut batch = Batch::with_capacity(SINK_BATCH);
    while !cancel.cancelled() {
        let job = world.next_job.fetch_add(1, Ordering::Relaxed);
        if job >= world.jobs {
            report.last_job_at = Some(Instant::now());
            cancel.wait();
            break;
        }
        let sink = match world.service.open() {
            Ok(sink) => sink,
            Err(e) => {
                report.error = Some(format!("open: {e}"));
                break;
            }
        };
        let mut buf = world.buffers.take(world.job_bytes);
        let checksum = do_job(job, &mut buf, world.job_bytes);
        batch.push((job, checksum));
        if batch.len() == SINK_BATCH {
            sink.send(&mut batch);
        }
        report.checksum = report.checksum.wrapping_add(checksum);
        world.buffers.give_back(buf);
        match world.service.close(sink) {
            Ok(true) => report.shutdowns += 1,
            Ok(false) => {}
            Err(e) => {
                report.error = Some(format!("close: {e}"));
                break;
            }
        }
        report.jobs += 1;
        // Release: the supervisor's Acquire load then sees the sink's
        // progress that let this job's send through (see `supervise`).
        counters.done.store(report.jobs, Ordering::Release);
    }
    // What is left of the batch goes to the sink under one more open.
    if !batch.is_empty() && report.error.is_none() {
        match world.service.open() {
            Ok(sink) => {
                sink.send(&mut batch);
                match world.service.close(sink) {
                    Ok(true) => report.shutdowns += 1,
                    Ok(false) => {}
                    Err(e) => report.error = Some(format!("close: {e}")),
                }
            }
            Err(e) => report.error = Some(format!("open: {e}")),
        }
    }
    report.stopped_at = Some(Instant::now());
    report.last_job_at.get_or_insert(report.stopped_at.unwrap());
    report
}

pub fn run_baseline(options: &Options, demo: &RunState) -> Outcome {
    let tally = Arc::new(Tally::new(options.jobs));
    let world = Arc::new(LockedWorld {
        service: LockedService {
            state: Mutex::new(LockedState {
                opens: 0,
                sink: None,
                started: 0,
                finalised: 0,
            }),
            shut_down: Condvar::new(),
            tally: Arc::clone(&tally),
        },
        buffers: LockedPool {
            idle: Mutex::new((Vec::new(), 0)),
            returned: Condvar::new(),
            cap: pool_cap(options.threads),
            created: AtomicU64::new(0),
            reused: AtomicU64::new(0),
            waits: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            longest_wait_ns: AtomicU64::new(0),
        },
        next_job: AtomicU64::new(0),
        jobs: options.jobs,
        job_bytes: options.job_bytes,
    });
    let counters: Arc<Vec<WorkerCounters>> = Arc::new(
        (0..options.threads)
            .map(|_| WorkerCounters::default())
            .collect(),
    );
    let cancels: Vec<Arc<LockedCancel>> = (0..options.threads)
        .map(|_| Arc::new(LockedCancel::default()))
        .collect();

    let began = Instant::now();
    let workers: Vec<_> = cancels
        .iter()
        .enumerate()
        .map(|(i, cancel)| {
            let (world, counters, cancel) = (
                Arc::clone(&world),
                Arc::clone(&counters),
                Arc::clone(cancel),
            );
            thread::Builder::new()
                .name(format!("locked-{i}"))
                .spawn(move || {
                    let started = Instant::now();
                    let report = locked_worker(&world, &cancel, &counters[i]);
                    (report, started.elapsed())
                })
                .expect("spawn a worker")
        })
        .collect();

    let supervised = supervise(
        "Mutex",
        demo,
        &counters,
        &workers,
        options.jobs,
        options.limit,
        began,
        &tally,
    );
    let cancel_at = Instant::now();
    for cancel in &cancels {
        cancel.cancel();
    }
    let mut failures = Vec::new();
    let (reports, run_times): (Vec<WorkerReport>, Vec<Duration>) = workers
        .into_iter()
        .map(|w| {
            w.join().unwrap_or_else(|_| {
                let report = WorkerReport {
                    error: Some("panicked".into()),
                    ..WorkerReport::default()
                };
                (report, Duration::ZERO)
            })
        })
        .unzip();
    finish(
        "Mutex/Condvar",
        began,
        cancel_at,
        supervised,
        &tally,
        &reports,
        world.next_job.load(Ordering::SeqCst).min(options.jobs),
        run_times,
        true,
        &mut failures,
        |failures| {
            if tally.startups.load(Ordering::SeqCst) > 0 {
                world.service.join();
            }
            let state = world.service.state.lock().unwrap();
            if state.opens != 0 || state.sink.is_some() {
                failures.push("opens left at the end".into());
            }
            drop(state);
            let pool = &world.buffers;
            let created = pool.created.load(Ordering::SeqCst);
            let instances: u64 = reports.iter().map(|r| r.jobs).sum();
            // Reuses are what was not created.
            pool.reused
                .store(instances.saturating_sub(created), Ordering::SeqCst);
            let reuse = if instances == 0 {
                0.0
            } else {
                pool.reused.load(Ordering::SeqCst) as f64 / instances as f64
            };
            (reuse, created)
        },
    )
    .with_failures(failures)
    .with_pool_waits(
        world.buffers.cap,
        world.buffers.waits.load(Ordering::SeqCst),
        world.buffers.timeouts.load(Ordering::SeqCst),
        Duration::from_nanos(world.buffers.longest_wait_ns.load(Ordering::SeqCst)),
    )
}
