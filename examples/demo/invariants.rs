//! The end-of-run checks: what every design must satisfy, and gathering
//! one design's measurements with them.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::report::Outcome;
use crate::supervise::Supervised;
use crate::workload::{sink_backlog_bound, Tally, WorkerReport};

/// Checks what every design must satisfy: every job taken reached the sink
/// exactly once with its checksum, one shutdown per startup. Every shutdown
/// was run by a worker's final close unless the service lingers
/// (`!closers_shut_down`): then the timer or the final join ran some.
pub fn check_common(
    tally: &Tally,
    reports: &[WorkerReport],
    taken: u64,
    closers_shut_down: bool,
    failures: &mut Vec<String>,
) {
    let done: u64 = reports.iter().map(|r| r.jobs).sum();
    if done != taken {
        failures.push(format!("{taken} jobs taken but {done} completed"));
    }
    let received = tally.received.load(Ordering::SeqCst);
    if received != done {
        failures.push(format!("{done} results sent, {received} received"));
    }
    let mut wrong = 0usize;
    for (job, &seen) in tally.seen.lock().unwrap().iter().enumerate() {
        let expected = u8::from((job as u64) < taken);
        if seen != expected {
            wrong += 1;
        }
    }
    if wrong > 0 {
        failures.push(format!(
            "{wrong} job(s) did not reach the sink exactly once"
        ));
    }
    let sent = reports
        .iter()
        .fold(0u64, |acc, r| acc.wrapping_add(r.checksum));
    if tally.checksum.load(Ordering::SeqCst) != sent {
        failures.push("the sink's checksum total differs from the workers'".into());
    }
    let (startups, shutdowns) = (
        tally.startups.load(Ordering::SeqCst),
        tally.shutdowns.load(Ordering::SeqCst),
    );
    if startups != shutdowns {
        failures.push(format!("{startups} startups but {shutdowns} shutdowns"));
    }
    if done > 0 && startups == 0 {
        failures.push("the service never started".into());
    }
    let by_closers: usize = reports.iter().map(|r| r.shutdowns).sum();
    if by_closers > shutdowns || (closers_shut_down && by_closers != shutdowns) {
        failures.push(format!(
            "{by_closers} final closes reported a shutdown, {shutdowns} ran"
        ));
    }
    let violations = tally.violations.load(Ordering::SeqCst);
    if violations > 0 {
        failures.push(format!("{violations} violation(s) during the run"));
    }
    for (i, r) in reports.iter().enumerate() {
        if let Some(e) = &r.error {
            failures.push(format!("worker {i}: {e}"));
        }
    }
}

/// Gathers one design's measurements and runs the common checks, plus the
/// design-specific ones in `extra` (which returns the pool's reuse rate and
/// the buffers created).
#[allow(clippy::too_many_arguments)]
pub fn finish(
    name: &'static str,
    began: Instant,
    cancel_at: Instant,
    supervised: Supervised,
    tally: &Tally,
    reports: &[WorkerReport],
    taken: u64,
    mut run_times: Vec<Duration>,
    closers_shut_down: bool,
    failures: &mut Vec<String>,
    extra: impl FnOnce(&mut Vec<String>) -> (f64, u64),
) -> Outcome {
    let last_job = reports
        .iter()
        .filter_map(|r| r.last_job_at)
        .max()
        .unwrap_or(began);
    let stop_latency = reports
        .iter()
        .filter_map(|r| r.stopped_at)
        .max()
        .map_or(Duration::ZERO, |t| t.saturating_duration_since(cancel_at));
    let (reuse_rate, buffers_created) = extra(failures);
    check_common(tally, reports, taken, closers_shut_down, failures);
    let backlog_bound = sink_backlog_bound(reports.len());
    if supervised.max_backlog > backlog_bound {
        failures.push(format!(
            "sink backlog reached {}, above its bound {backlog_bound}",
            supervised.max_backlog
        ));
    }
    run_times.sort();
    let mut per_worker_jobs: Vec<u64> = reports.iter().map(|r| r.jobs).collect();
    per_worker_jobs.sort();
    Outcome {
        name,
        jobs_done: reports.iter().map(|r| r.jobs).sum(),
        elapsed: (last_job - began).max(Duration::from_micros(1)),
        stop_latency,
        reason: supervised.reason,
        cancel_reason: supervised.cancel_reason,
        max_backlog: supervised.max_backlog,
        backlog_bound,
        startups: tally.startups.load(Ordering::SeqCst),
        shutdowns: tally.shutdowns.load(Ordering::SeqCst),
        reuse_rate,
        buffers_created,
        pool_cap: 0,
        pool_waits: 0,
        pool_timeouts: 0,
        pool_longest_wait: Duration::ZERO,
        run_times,
        per_worker_jobs,
        failures: Vec::new(),
    }
}
