//! One design's measurements (`Outcome`) and the summary table.

use std::fmt::Write as _;
use std::time::Duration;

use crate::supervise::StopReason;

/// The measurements of one design, for the table.
pub struct Outcome {
    pub name: &'static str,
    pub jobs_done: u64,
    pub elapsed: Duration,
    /// From the workers' cancel to the last worker leaving its loop.
    pub stop_latency: Duration,
    pub reason: StopReason,
    /// The reason of the workers' cancel (`RunState::reason` of the
    /// multiopen supervisor), if any.
    pub cancel_reason: Option<String>,
    /// The largest sink backlog the supervisor saw.
    pub max_backlog: u64,
    /// What `max_backlog` must not exceed: [`sink_backlog_bound`].
    pub backlog_bound: u64,
    pub startups: usize,
    pub shutdowns: usize,
    pub reuse_rate: f64,
    pub buffers_created: u64,
    /// The buffer pool's cap on live buffers (below the worker count).
    pub pool_cap: usize,
    /// Takes that found every buffer out and waited, and waits that gave
    /// up at their timeout (the worker then asked again).
    pub pool_waits: u64,
    pub pool_timeouts: u64,
    /// The longest single wait for a buffer.
    pub pool_longest_wait: Duration,
    /// Each worker's run time (from its `RunState` for multiopen, from
    /// `Instant`s for the baseline), sorted.
    pub run_times: Vec<Duration>,
    pub per_worker_jobs: Vec<u64>,
    pub failures: Vec<String>,
}

impl Outcome {
    pub fn jobs_per_sec(&self) -> f64 {
        self.jobs_done as f64 / self.elapsed.as_secs_f64()
    }
}

/// Min, median and max of a sorted list.
pub fn spread<T: Copy>(sorted: &[T]) -> Option<(T, T, T)> {
    Some((*sorted.first()?, sorted[sorted.len() / 2], *sorted.last()?))
}

impl Outcome {
    pub fn with_failures(mut self, failures: Vec<String>) -> Self {
        self.failures = failures;
        self
    }

    /// The buffer pool's waiting figures.
    pub fn with_pool_waits(
        mut self,
        cap: usize,
        waits: u64,
        timeouts: u64,
        longest: Duration,
    ) -> Self {
        self.pool_cap = cap;
        self.pool_waits = waits;
        self.pool_timeouts = timeouts;
        self.pool_longest_wait = longest;
        self
    }
}

pub fn print_table(threads: usize, job_bytes: usize, outcomes: &[Outcome]) {
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let mut row = |label: &str, f: &dyn Fn(&Outcome) -> String| {
        rows.push((label.to_owned(), outcomes.iter().map(f).collect()));
    };
    let millions = |x: f64| format!("{:.2} M", x / 1e6);
    let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1e3);
    row("", &|o| o.name.to_owned());
    row("jobs done", &|o| o.jobs_done.to_string());
    row("stopped because", &|o| {
        match o.reason {
            StopReason::JobsDone => "jobs done",
            StopReason::TimeUp => "time up",
            StopReason::Interrupted => "Ctrl-C",
            StopReason::WorkerFailed => "a worker failed",
        }
        .to_owned()
    });
    row("cancel reason (RunState)", &|o| {
        o.cancel_reason.clone().unwrap_or_else(|| "-".to_owned())
    });
    row("elapsed (to last job)", &|o| {
        format!("{:.3} s", o.elapsed.as_secs_f64())
    });
    row("jobs/s", &|o| millions(o.jobs_per_sec()));
    row("opens/s (1 open+close per job)", &|o| {
        millions(o.jobs_per_sec())
    });
    row("max sink backlog seen (bound)", &|o| {
        format!("{} (≤ {})", o.max_backlog, o.backlog_bound)
    });
    row("startups / shutdowns", &|o| {
        format!("{} / {}", o.startups, o.shutdowns)
    });
    row("pool reuse rate", &|o| {
        format!("{:.4} %", o.reuse_rate * 100.0)
    });
    row("buffers created", &|o| o.buffers_created.to_string());
    row("buffer cap (live at most)", &|o| o.pool_cap.to_string());
    row("buffer waits / timeouts", &|o| {
        format!("{} / {}", o.pool_waits, o.pool_timeouts)
    });
    row("longest buffer wait", &|o| {
        format!("{:.3} ms", o.pool_longest_wait.as_secs_f64() * 1e3)
    });
    row(
        "worker run time min/med/max ms",
        &|o| match spread(&o.run_times) {
            Some((a, b, c)) => format!("{}/{}/{}", ms(a), ms(b), ms(c)),
            None => "-".into(),
        },
    );
    row(
        "jobs per worker min/med/max",
        &|o| match spread(&o.per_worker_jobs) {
            Some((a, b, c)) => format!("{a}/{b}/{c}"),
            None => "-".into(),
        },
    );
    row("cancel → all stopped", &|o| {
        format!("{} ms", ms(o.stop_latency))
    });
    row("invariants", &|o| {
        if o.failures.is_empty() {
            "OK".into()
        } else {
            format!("{} FAILED", o.failures.len())
        }
    });

    let label_width = rows
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0);
    let col_width = rows
        .iter()
        .flat_map(|(_, cells)| cells.iter().map(|c| c.chars().count()))
        .max()
        .unwrap_or(0)
        + 2;
    let mut text = format!("\n{threads} workers, {job_bytes}-byte jobs\n");
    for (label, cells) in &rows {
        let _ = write!(text, "{label:<label_width$}");
        for cell in cells {
            let _ = write!(text, "{cell:>col_width$}");
        }
        text.push('\n');
    }
    if let [fast, slow] = outcomes {
        if fast.jobs_done > 0 && slow.jobs_done > 0 {
            let _ = writeln!(
                text,
                "speedup: multiopen runs {:.2}× the jobs/s of the Mutex/Condvar design",
                fast.jobs_per_sec() / slow.jobs_per_sec()
            );
        }
    }
    print!("{text}");
}
