//! The supervisor: watches the workers, draws the progress line, samples
//! the sink backlog, and says why it stopped them.

use std::io::{IsTerminal, Write as _};
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use multiopen::run_state::DEADLINE_EXCEEDED;
use multiopen::RunState;

use crate::workload::{Tally, WorkerCounters};

/// Why the supervisor cancelled the workers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    JobsDone,
    TimeUp,
    Interrupted,
    /// A worker left its loop before the cancel: it failed (an open or
    /// close error, or a panic), and the jobs it took will never be done.
    WorkerFailed,
}

/// What the supervisor saw.
#[derive(Clone)]
pub struct Supervised {
    pub reason: StopReason,
    /// The largest sink backlog (`done − received`) over all samples, one
    /// per tick: a sample of the true maximum, checked against
    /// [`sink_backlog_bound`].
    pub max_backlog: u64,
    /// The reason of the cancel that stopped the workers, for the
    /// summary: the supervisor's `RunState::reason` (multiopen: a deadline,
    /// a signal, or the supervisor's own cancel); `None` for the baseline.
    pub cancel_reason: Option<String>,
}

/// Watches the workers' counters, redraws the progress line, and returns
/// once the jobs are done, the time is up (`limit`, or a deadline cancel of
/// `watched`), `watched` is cancelled (the whole program's `RunState` is
/// cancelled by Ctrl-C, and with it its children), or a worker has ended
/// on its own (`workers`: a healthy worker only ends after the cancel, so
/// an ended one failed, and waiting for its jobs would wait forever). The
/// caller then cancels the workers.
///
/// Every tick it also samples the sink backlog: jobs done minus results
/// the sink has published. `done` is loaded (Acquire) before `received`,
/// and a worker counts a job only after its send found a free slot, i.e.
/// after the sink received the batch `SINK_CAPACITY` places earlier and
/// published all but fewer than `SINK_PUBLISH_EVERY` results of what came
/// before; add the results waiting in each worker's batch, and each sample
/// is at most `sink_backlog_bound(workers)`.
#[allow(clippy::too_many_arguments)]
pub fn supervise<T>(
    label: &str,
    watched: &RunState,
    counters: &[WorkerCounters],
    workers: &[thread::JoinHandle<T>],
    jobs: u64,
    limit: Option<Duration>,
    began: Instant,
    tally: &Tally,
) -> Supervised {
    let tty = std::io::stdout().is_terminal();
    let (tick, print_every) = if tty {
        (Duration::from_millis(20), Duration::from_millis(100))
    } else {
        (Duration::from_millis(20), Duration::from_millis(500))
    };
    let mut last_print = began;
    let (mut last_done, mut last_at) = (0u64, began);
    let mut rate = 0.0;
    let mut max_backlog = 0u64;
    let reason = loop {
        let cancelled = watched.sleep(tick).err();
        let now = Instant::now();
        let done: u64 = counters
            .iter()
            .map(|c| c.done.load(Ordering::Acquire))
            .sum();
        // After `done`: see above.
        let backlog = done.saturating_sub(tally.received.load(Ordering::Relaxed));
        max_backlog = max_backlog.max(backlog);
        let elapsed = now - began;
        let reason = if let Some(cancelled) = cancelled {
            // A deadline (`cancel_after`) says so in its reason.
            Some(if cancelled.reason.as_deref() == Some(DEADLINE_EXCEEDED) {
                StopReason::TimeUp
            } else {
                StopReason::Interrupted
            })
        } else if done >= jobs {
            Some(StopReason::JobsDone)
        } else if limit.is_some_and(|limit| elapsed >= limit) {
            Some(StopReason::TimeUp)
        } else if workers.iter().any(|w| w.is_finished()) {
            Some(StopReason::WorkerFailed)
        } else {
            None
        };
        if now - last_print >= print_every || reason.is_some() {
            let window = (now - last_at).as_secs_f64();
            if window > 0.0 {
                rate = (done - last_done) as f64 / window;
            }
            (last_done, last_at, last_print) = (done, now, now);
            let line = format!(
                "{label:<10} {:>5.2}s  jobs {done:>9}/{jobs} ({:>3.0}%)  {:>6.2} M jobs/s  \
                 cycles {:>5}  sink backlog {:>7}",
                elapsed.as_secs_f64(),
                done as f64 * 100.0 / jobs as f64,
                rate / 1e6,
                tally.startups.load(Ordering::Relaxed),
                backlog,
            );
            let mut out = std::io::stdout().lock();
            if tty {
                let _ = write!(out, "\r{line}\x1b[K");
                if reason.is_some() {
                    let _ = writeln!(out);
                }
            } else {
                let _ = writeln!(out, "{line}");
            }
            let _ = out.flush();
        }
        if let Some(reason) = reason {
            break reason;
        }
    };
    Supervised {
        reason,
        max_backlog,
        cancel_reason: None,
    }
}
