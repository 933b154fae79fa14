//! The workload both designs run: the job, the result sink (a thread fed
//! by a bounded channel), the tally of what it saw, the per-worker counters
//! and reports.

use std::sync::atomic::{AtomicIsize, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

/// Fills `buf` with `bytes` pseudo-random bytes seeded by `job` and returns
/// their checksum (FNV-1a over 64-bit words).
pub fn do_job(job: u64, buf: &mut Vec<u8>, bytes: usize) -> u64 {
    let mut x = job.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for _ in 0..bytes / 8 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf.extend_from_slice(&x.to_le_bytes());
    }
    let mut hash = 0xCBF2_9CE4_8422_2325_u64;
    for word in buf.chunks_exact(8) {
        let word = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        hash = (hash ^ word).wrapping_mul(0x0100_0000_01B3);
    }
    hash
}

/// Results a worker gathers before it sends them to the sink in one
/// message: one channel operation per 64 jobs instead of per job.
pub const SINK_BATCH: usize = 64;

/// Capacity of the sink's channel, in batches (1024 × 64 = 65 536 results,
/// 1 MiB). Workers can produce results faster than the sink drains them,
/// so an unbounded channel's backlog grows without limit (~1 M results,
/// tens of MB, in long runs); bounded, a full channel makes the sending
/// worker wait (back-pressure) and memory stays bounded. The sink is one
/// thread among many on few cores, so it runs in bursts: 1024 batches
/// carry the workers through the gaps between them (64 batches made the
/// workers block often, and the speedup swing between 1.7× and 4×).
pub const SINK_CAPACITY: usize = 1024;

/// The sink adds to `Tally::received` once per this many results (so the
/// supervisor can watch it without a shared counter update per result).
pub const SINK_PUBLISH_EVERY: u64 = 1024;

/// The most `done − received` (the progress line's "sink backlog") can
/// reach with `workers` workers: results in the workers' unsent batches,
/// batches queued in the channel (and the one the sink is working
/// through), and results the sink has received but not yet published.
/// The supervisor checks every sample against it.
pub fn sink_backlog_bound(workers: usize) -> u64 {
    ((workers + SINK_CAPACITY + 1) * SINK_BATCH) as u64 + SINK_PUBLISH_EVERY
}

/// A worker's unsent results: `(job, checksum)` pairs.
pub type Batch = Vec<(u64, u64)>;

/// What the sinks saw and what the service did, over all cycles.
pub struct Tally {
    /// How many times the sink received each job's result: must end 1 for
    /// every job taken, 0 for the rest. A cycle's sink takes the ledger
    /// out when it starts and puts it back when it ends (cycles never
    /// overlap: `live` checks that), so it counts with plain writes.
    pub seen: Mutex<Vec<u8>>,
    pub received: AtomicU64,
    pub checksum: AtomicU64,
    pub startups: AtomicUsize,
    pub shutdowns: AtomicUsize,
    /// startups − shutdowns: must stay 0 or 1.
    pub live: AtomicIsize,
    pub violations: AtomicUsize,
}

impl Tally {
    pub fn new(jobs: u64) -> Self {
        Self {
            seen: Mutex::new(vec![0; jobs as usize]),
            received: AtomicU64::new(0),
            checksum: AtomicU64::new(0),
            startups: AtomicUsize::new(0),
            shutdowns: AtomicUsize::new(0),
            live: AtomicIsize::new(0),
            violations: AtomicUsize::new(0),
        }
    }

    pub fn violation(&self, what: &str) {
        eprintln!("INVARIANT BROKEN: {what}");
        self.violations.fetch_add(1, Ordering::SeqCst);
    }
}

/// The live service: a result-sink thread and the bounded channel that
/// feeds it. It exists only between a startup and its shutdown.
pub struct Sink {
    pub sender: mpsc::SyncSender<Batch>,
    pub thread: thread::JoinHandle<()>,
}

impl Sink {
    pub fn start(tally: &Arc<Tally>) -> std::io::Result<Sink> {
        let (sender, receiver) = mpsc::sync_channel::<Batch>(SINK_CAPACITY);
        let thread = {
            let tally = Arc::clone(tally);
            thread::Builder::new()
                .name("result-sink".into())
                .spawn(move || {
                    // Receives until every sender is gone (the shutdown drops
                    // the only one), so it drains whatever is queued and never
                    // leaves a sender waiting on a full channel.
                    let (mut received, mut checksum) = (0u64, 0u64);
                    let mut seen = std::mem::take(&mut *tally.seen.lock().unwrap());
                    let mut unledgered = 0u64;
                    for (job, sum) in receiver.into_iter().flatten() {
                        match seen.get_mut(job as usize) {
                            Some(count) => *count = count.saturating_add(1),
                            None => unledgered += 1,
                        }
                        checksum = checksum.wrapping_add(sum);
                        received += 1;
                        if received % SINK_PUBLISH_EVERY == 0 {
                            tally
                                .received
                                .fetch_add(SINK_PUBLISH_EVERY, Ordering::Relaxed);
                        }
                    }
                    tally
                        .received
                        .fetch_add(received % SINK_PUBLISH_EVERY, Ordering::Relaxed);
                    tally.checksum.fetch_add(checksum, Ordering::Relaxed);
                    *tally.seen.lock().unwrap() = seen;
                    if unledgered > 0 {
                        tally.violation("a sink ran without the ledger (two live cycles?)");
                    }
                })?
        };
        // Counted once the startup has succeeded (a failed spawn is an
        // error for the opener, not a cycle).
        if tally.live.fetch_add(1, Ordering::SeqCst) != 0 {
            tally.violation("a startup while another cycle was live");
        }
        tally.startups.fetch_add(1, Ordering::SeqCst);
        Ok(Sink { sender, thread })
    }

    /// Queues one result; waits while the channel is full (back-pressure).
    ///
    /// Callers hold an open, so the service cannot shut down (and `stop`
    /// cannot drop the sender) during the wait; the sink thread meanwhile
    /// keeps receiving, so a slot always frees up. If the sink died the
    /// receiver is gone and `send` panics at once instead of waiting (the
    /// worker then ends, and the supervisor stops the run as failed).
    pub fn send(&self, batch: &mut Batch) {
        let full = std::mem::replace(batch, Batch::with_capacity(SINK_BATCH));
        // The receiver lives until `stop`, which needs every open closed.
        self.sender.send(full).expect("sink alive while open");
    }

    /// Closes the channel, lets the sink drain what is queued, joins it.
    ///
    /// Runs only on the final close: no open is held, so no worker is in
    /// (or can enter) `send`, and dropping the sender ends the sink's loop
    /// once it has drained the at most [`SINK_CAPACITY`] queued batches.
    pub fn stop(self, tally: &Tally) -> std::io::Result<()> {
        drop(self.sender);
        self.thread
            .join()
            .map_err(|_| std::io::Error::other("result sink panicked"))?;
        tally.shutdowns.fetch_add(1, Ordering::SeqCst);
        if tally.live.fetch_sub(1, Ordering::SeqCst) != 1 {
            tally.violation("a shutdown with no live cycle");
        }
        Ok(())
    }
}

/// Per-worker counters on their own cache lines (written by one worker,
/// read by the supervisor).
#[repr(align(128))]
#[derive(Default)]
pub struct WorkerCounters {
    pub done: AtomicU64,
}

/// What a worker reports when it ends.
#[derive(Default)]
pub struct WorkerReport {
    pub jobs: u64,
    /// Closes that were the final one and ran the shutdown.
    pub shutdowns: usize,
    /// Wrapping sum of the checksums of the jobs done (all sent to the
    /// sink unless the worker failed).
    pub checksum: u64,
    /// When the worker finished its last job.
    pub last_job_at: Option<Instant>,
    /// When the worker left its loop.
    pub stopped_at: Option<Instant>,
    pub error: Option<String>,
}
