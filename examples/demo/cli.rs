//! The command line: flags, defaults and usage.

use std::thread;
use std::time::Duration;

pub struct Options {
    pub threads: usize,
    pub jobs: u64,
    pub limit: Option<Duration>,
    pub job_bytes: usize,
    pub baseline: bool,
    /// How long the shared service lingers after its last close.
    pub linger: Duration,
}

pub const USAGE: &str = "usage: demo [--threads N] [--jobs N] [--seconds S] [--job-bytes N] \
                     [--linger-ms MS] [--baseline | --no-baseline]
  --threads N    worker threads (default 4 × cores)
  --jobs N       jobs to run (default 5000000, 500000 in a debug build)
  --seconds S    stop after S seconds even if jobs remain
  --job-bytes N  bytes each job generates and checksums (default 256)
  --linger-ms MS the shared service stays up MS ms after its last close
                 (default 5; 0: no linger); the server phase compares it
                 with no linger
  --baseline     also run the Mutex/Condvar design (the default)
  --no-baseline  run only the multiopen design";

pub fn parse_options() -> Result<Options, String> {
    let cores = thread::available_parallelism().map_or(2, |n| n.get());
    let mut options = Options {
        threads: 4 * cores,
        // A debug build (`cargo run --example demo`, as CI runs it) is ~10×
        // slower: keep it to a few seconds there too.
        jobs: if cfg!(debug_assertions) {
            DEFAULT_JOBS / 10
        } else {
            DEFAULT_JOBS
        },
        limit: None,
        job_bytes: 256,
        baseline: true,
        linger: DEFAULT_LINGER,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--threads" => options.threads = parse::<usize>(&flag, &value()?)?.max(1),
            "--jobs" => options.jobs = parse(&flag, &value()?)?,
            "--job-bytes" => options.job_bytes = parse::<usize>(&flag, &value()?)? / 8 * 8,
            "--seconds" => {
                let s: f64 = parse(&flag, &value()?)?;
                options.limit =
                    Some(Duration::try_from_secs_f64(s).map_err(|e| format!("{flag}: {e}"))?);
            }
            "--linger-ms" => {
                let ms: f64 = parse(&flag, &value()?)?;
                options.linger =
                    Duration::try_from_secs_f64(ms / 1e3).map_err(|e| format!("{flag}: {e}"))?;
            }
            "--baseline" => options.baseline = true,
            "--no-baseline" => options.baseline = false,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(options)
}

pub fn parse<T: std::str::FromStr>(flag: &str, text: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    text.parse().map_err(|e| format!("{flag} {text}: {e}"))
}

/// The buffer pool's cap: half the workers (at least 1), so that some
/// workers wait for a buffer.
pub fn pool_cap(threads: usize) -> usize {
    (threads / 2).max(1)
}

/// How long a worker waits for a buffer before it gives up, counts a
/// time-out, and asks again.
pub const POOL_WAIT: Duration = Duration::from_micros(200);

/// About 1–1.5 s per design on 2 cores (4–5 M jobs/s).
pub const DEFAULT_JOBS: u64 = 5_000_000;

/// Longer than the server phase's gap between requests, so an idle
/// service outlives it; short enough that an idle service goes soon.
pub const DEFAULT_LINGER: Duration = Duration::from_millis(5);
