//! The multiopen design: the sink as a `MultiOpen` resource, buffers from
//! a `Pool`, each worker under its own `RunState`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use multiopen::{CloseOutcome, MultiOpen, Pool, PoolError, PoolGuard, Resource, RunState};

use crate::cli::{pool_cap, Options, POOL_WAIT};
use crate::invariants::finish;
use crate::report::Outcome;
use crate::supervise::{supervise, StopReason};
use crate::workload::{do_job, Batch, Sink, Tally, WorkerCounters, WorkerReport, SINK_BATCH};

/// The service's configuration: startup brings a `Sink` up.
pub struct Service {
    tally: Arc<Tally>,
}

/// The shared service, lingering `linger` after its last close (zero: none):
/// a job that comes within the linger reuses the running sink instead of
/// starting a new one.
pub fn shared_service(tally: &Arc<Tally>, linger: Duration) -> Arc<MultiOpen<Service>> {
    MultiOpen::new(Service {
        tally: Arc::clone(tally),
    })
    .with_name("result sink")
    .with_linger(linger)
}

impl Resource for Service {
    type Handle = Sink;
    type Error = std::io::Error;

    fn startup(&self) -> std::io::Result<Sink> {
        Sink::start(&self.tally)
    }

    fn shutdown(&self, sink: Sink) -> std::io::Result<()> {
        sink.stop(&self.tally)
    }
}

struct MultiOpenWorld {
    service: Arc<MultiOpen<Service>>,
    buffers: Pool<Vec<u8>>,
    next_job: AtomicU64,
    jobs: u64,
    job_bytes: usize,
}

/// A buffer. The pool has fewer buffers than there are workers: wait for
/// one, at most `POOL_WAIT` at a time (a time-out is counted in the pool's
/// statistics; then ask again).
fn buffer(pool: &Pool<Vec<u8>>) -> Result<PoolGuard<'_, Vec<u8>>, PoolError> {
    loop {
        match pool.get_timeout(POOL_WAIT) {
            Err(PoolError::TimedOut { .. }) => continue,
            other => return other,
        }
    }
}

fn multiopen_worker(
    world: &MultiOpenWorld,
    rs: &RunState,
    counters: &WorkerCounters,
) -> WorkerReport {
    let mut report = WorkerReport::default();
    let mut batch = Batch::with_capacity(SINK_BATCH);
    // `check` is one atomic load (it would also block while paused).
    while rs.check().is_ok() {
        let job = world.next_job.fetch_add(1, Ordering::Relaxed);
        if job >= world.jobs {
            // Out of work: idle until the supervisor cancels us. `sleep`
            // wakes the moment `cancel` is called.
            report.last_job_at = Some(Instant::now());
            let _ = rs.sleep(Duration::MAX);
            break;
        }
        let sink = match world.service.open() {
            Ok(sink) => sink,
            Err(e) => {
                report.error = Some(format!("open: {e}"));
                break;
            }
        };
        let mut buf = match buffer(&world.buffers) {
            Ok(buf) => buf,
            Err(e) => {
                report.error = Some(format!("buffer: {e}"));
                break;
            }
        };
        if !buf.is_empty() {
            world
                .service
                .resource()
                .tally
                .violation("a pooled buffer came back uncleared");
        }
        let checksum = do_job(job, &mut buf, world.job_bytes);
        batch.push((job, checksum));
        if batch.len() == SINK_BATCH {
            sink.send(&mut batch);
        }
        report.checksum = report.checksum.wrapping_add(checksum);
        drop(buf); // back to the pool, cleared by the reset hook
        match sink.close() {
            Ok(CloseOutcome::ShutDown) => report.shutdowns += 1,
            Ok(_) => {}
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
                match sink.close() {
                    Ok(CloseOutcome::ShutDown) => report.shutdowns += 1,
                    Ok(_) => {}
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

pub fn run_multiopen(options: &Options, demo: &RunState) -> Outcome {
    let tally = Arc::new(Tally::new(options.jobs));
    let service = shared_service(&tally, options.linger);
    let job_bytes = options.job_bytes;
    let world = Arc::new(MultiOpenWorld {
        service: Arc::clone(&service),
        buffers: Pool::builder(move || Vec::with_capacity(job_bytes))
            .name("buffers")
            .max_size(pool_cap(options.threads))
            .max_live(pool_cap(options.threads))
            .reset(|buf| buf.clear())
            .build(),
        next_job: AtomicU64::new(0),
        jobs: options.jobs,
        job_bytes,
    });
    let counters: Arc<Vec<WorkerCounters>> = Arc::new(
        (0..options.threads)
            .map(|_| WorkerCounters::default())
            .collect(),
    );
    // The supervisor's state is a child of the whole program's (Ctrl-C
    // cancels it), and the parent of every worker's: one cancel of it
    // stops them all, at once, with its reason.
    let supervisor = demo.child("supervisor");
    let _supervising = supervisor.run();
    if let Some(limit) = options.limit {
        // `--seconds`: the crate's timer cancels the supervisor (and so
        // every worker) at the deadline, with the reason "deadline
        // exceeded", whether or not anyone is polling then.
        if let Err(e) = supervisor.cancel_after(limit) {
            eprintln!("no deadline ({e}): the supervisor checks the time itself");
        }
    }
    let states: Vec<Arc<RunState>> = (0..options.threads)
        .map(|i| supervisor.child(format!("worker-{i}")))
        .collect();

    let began = Instant::now();
    let workers: Vec<_> = states
        .iter()
        .enumerate()
        .map(|(i, rs)| {
            // Start the run here, before the thread exists, so that the
            // run's time counts from now (a cancel before the start would be
            // kept all the same: the run would begin cancelled).
            let run = rs.run_owned();
            let (world, counters) = (Arc::clone(&world), Arc::clone(&counters));
            thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || multiopen_worker(&world, run.runstate(), &counters[i]))
                // `run` was moved into the closure: it drops (the run stops)
                // as the thread ends.
                .expect("spawn a worker")
        })
        .collect();

    let mut supervised = supervise(
        "multiopen",
        &supervisor,
        &counters,
        &workers,
        options.jobs,
        // Also checked by the supervisor itself, in case the timer could
        // not be had (the deadline's cancel says "time up" first).
        options.limit,
        began,
        &tally,
    );
    // (For a deadline or a Ctrl-C, the workers were cancelled a moment
    // ago, with the supervisor; this is when the supervisor saw it.)
    let cancel_at = Instant::now();
    // One cancel stops every worker (the first reason wins: a deadline's
    // or a signal's stays).
    supervisor.cancel_with(match supervised.reason {
        StopReason::JobsDone => "jobs done",
        StopReason::TimeUp => "time up",
        StopReason::Interrupted => "interrupted",
        StopReason::WorkerFailed => "a worker failed",
    });
    supervised.cancel_reason = supervisor.reason().map(|r| r.to_string());
    let mut failures = Vec::new();
    let reports: Vec<WorkerReport> = workers
        .into_iter()
        .map(|w| {
            w.join().unwrap_or_else(|_| WorkerReport {
                error: Some("panicked".into()),
                ..WorkerReport::default()
            })
        })
        .collect();
    finish(
        "multiopen",
        began,
        cancel_at,
        supervised,
        &tally,
        &reports,
        world.next_job.load(Ordering::SeqCst).min(options.jobs),
        states.iter().map(|rs| rs.run_time()).collect(),
        options.linger.is_zero(),
        &mut failures,
        |failures| {
            // The service: shut down once per cycle, closed now (the join
            // ends a linger: the last shutdown runs here).
            if service.join().is_err() && tally.startups.load(Ordering::SeqCst) > 0 {
                failures.push("join: never opened, yet startups ran".into());
            }
            let state = service.state();
            if state.open_count != 0 || state.detached != 0 {
                failures.push(format!("opens left at the end: {state:?}"));
            }
            if state.cycle as usize != tally.startups.load(Ordering::SeqCst) {
                failures.push(format!(
                    "cycle {} but {} startups",
                    state.cycle,
                    tally.startups.load(Ordering::SeqCst)
                ));
            }
            // The pool's books.
            let s = world.buffers.stats();
            let instances = reports.iter().map(|r| r.jobs as usize).sum::<usize>();
            let status = world.buffers.status();
            if s.out != 0
                || s.created != s.retired() + s.idle + s.out
                || s.created + s.reused != instances
                || s.returned + s.dropped_full != instances
                || s.idle > options.threads
                || s.timed_out > s.waited
                || status.live > pool_cap(options.threads)
                || status.waiting != 0
            {
                failures.push(format!(
                    "pool books do not add up ({instances} instances): {s:?}"
                ));
            }
            // Every worker's RunState stopped (after the cancel: "cancelled").
            for rs in &states {
                if !rs.stopped() || rs.is_running() {
                    failures.push(format!("{} is {}, not stopped", rs.name(), rs.state()));
                }
            }
            let reuse = if instances == 0 {
                0.0
            } else {
                s.reused as f64 / instances as f64
            };
            (reuse, s.created as u64)
        },
    )
    .with_failures(failures)
    .with_pool_waits(
        pool_cap(options.threads),
        world.buffers.stats().waited as u64,
        world.buffers.stats().timed_out as u64,
        world.buffers.stats().wait_longest,
    )
}
