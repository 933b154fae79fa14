//! Many threads hammer one shared `MultiOpen` whose startup and shutdown do
//! real work: startup spawns a collector thread fed by a channel, shutdown
//! closes the channel and joins it. Threads open in bursts (one outer open,
//! many nested fast-path opens inside it), so the service cycles through
//! startup and shutdown again and again while joiners wait on it.
//!
//! It prints progress, then the totals, and checks its invariants: every
//! startup has its shutdown, never two live at once, no use of a shut-down
//! handle, and every counted use was seen by a collector. It exits non-zero
//! if one fails.
//!
//! ```text
//! cargo run --release --example demo -- [--threads N] [--bursts N] [--burst-size N]
//! ```

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use multiopen::{MultiOpen, Resource};

/// The live half of the service: exists only between startup and shutdown.
struct Collector {
    sender: mpsc::Sender<u64>,
    worker: thread::JoinHandle<u64>,
    alive: AtomicBool,
    /// Uses counted in this cycle, flushed to the collector in batches.
    uses: AtomicU64,
}

/// The service configuration and its lifetime totals.
#[derive(Default)]
struct Service {
    startups: AtomicUsize,
    shutdowns: AtomicUsize,
    /// startups − shutdowns; must stay in {0, 1}.
    live: AtomicIsize,
    /// Uses the collector threads received, over all cycles.
    collected: AtomicU64,
    violations: AtomicUsize,
}

impl Service {
    fn violation(&self, what: &str) {
        eprintln!("INVARIANT BROKEN: {what}");
        self.violations.fetch_add(1, Ordering::SeqCst);
    }
}

impl Resource for Service {
    type Handle = Collector;
    type Error = std::io::Error;

    fn startup(&self) -> std::io::Result<Collector> {
        if self.live.fetch_add(1, Ordering::SeqCst) != 0 {
            self.violation("two startups without a shutdown");
        }
        self.startups.fetch_add(1, Ordering::SeqCst);
        let (sender, receiver) = mpsc::channel::<u64>();
        let worker = thread::Builder::new()
            .name("collector".into())
            .spawn(move || receiver.iter().sum::<u64>())?;
        Ok(Collector {
            sender,
            worker,
            alive: AtomicBool::new(true),
            uses: AtomicU64::new(0),
        })
    }

    fn shutdown(&self, collector: Collector) -> std::io::Result<()> {
        collector.alive.store(false, Ordering::SeqCst);
        // Flush what was not sent yet, close the channel, join the worker.
        let rest = collector.uses.swap(0, Ordering::SeqCst);
        let _ = collector.sender.send(rest);
        drop(collector.sender);
        let total = collector
            .worker
            .join()
            .map_err(|_| std::io::Error::other("collector panicked"))?;
        self.collected.fetch_add(total, Ordering::SeqCst);
        self.shutdowns.fetch_add(1, Ordering::SeqCst);
        if self.live.fetch_sub(1, Ordering::SeqCst) != 1 {
            self.violation("shutdown without a live startup");
        }
        Ok(())
    }
}

struct Options {
    threads: usize,
    bursts: usize,
    burst_size: usize,
}

fn parse_options() -> Result<Options, String> {
    let cores = thread::available_parallelism().map_or(2, |n| n.get());
    let mut options = Options {
        threads: 4 * cores,
        bursts: 2_000,
        burst_size: 500,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || -> Result<usize, String> {
            args.next()
                .ok_or(format!("{flag} needs a value"))?
                .parse()
                .map_err(|e| format!("{flag}: {e}"))
        };
        match flag.as_str() {
            "--threads" => options.threads = value()?.max(1),
            "--bursts" => options.bursts = value()?,
            "--burst-size" => options.burst_size = value()?.max(1),
            "-h" | "--help" => {
                return Err("usage: demo [--threads N] [--bursts N] [--burst-size N]".into())
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    println!(
        "multiopen demo: {} threads × {} bursts × {} opens on one shared service",
        options.threads, options.bursts, options.burst_size
    );
    let service = Arc::new(MultiOpen::new(Service::default()).with_name("collector service"));
    let opens = Arc::new(AtomicU64::new(0));
    let joins = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(options.threads + 1));

    let workers: Vec<_> = (0..options.threads)
        .map(|index| {
            let (service, opens, joins, start) =
                (service.clone(), opens.clone(), joins.clone(), start.clone());
            let (bursts, burst_size) = (options.bursts, options.burst_size);
            thread::spawn(move || {
                start.wait();
                for burst in 0..bursts {
                    // One thread in eight sometimes waits for the cycle to
                    // end instead of working (never while holding an open).
                    if index % 8 == 7 && burst % 64 == 0 {
                        service.join().expect("opened by now or about to be");
                        joins.fetch_add(1, Ordering::Relaxed);
                    }
                    let outer = service.open().expect("startup cannot fail here");
                    for _ in 0..burst_size {
                        let inner = service.open().expect("already open");
                        if !inner.alive.load(Ordering::Relaxed) {
                            service.resource().violation("used a shut-down handle");
                        }
                        inner.uses.fetch_add(1, Ordering::Relaxed);
                    }
                    // Flush this burst's count to the collector.
                    let batch = outer.uses.swap(0, Ordering::Relaxed);
                    let _ = outer.sender.send(batch);
                    opens.fetch_add(burst_size as u64 + 1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    // The first burst of some thread opens the service; joiners that get
    // there first would see "never opened", so open once before starting.
    let first = service.open().expect("first startup");
    start.wait();
    let began = Instant::now();
    drop(first);

    let progress = {
        let (service, opens, done) = (service.clone(), opens.clone(), done.clone());
        thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(250));
                let s = service.state();
                println!(
                    "  {:>6.2}s  opens {:>12}  cycles {:>7}  phase {:?}",
                    began.elapsed().as_secs_f64(),
                    opens.load(Ordering::Relaxed),
                    s.cycle,
                    s.phase
                );
            }
        })
    };
    let mut panicked = 0;
    for worker in workers {
        panicked += usize::from(worker.join().is_err());
    }
    let elapsed = began.elapsed();
    done.store(true, Ordering::Relaxed);
    progress.join().expect("progress thread");
    service.join().expect("opened");

    let s = service.resource();
    let (startups, shutdowns) = (
        s.startups.load(Ordering::SeqCst),
        s.shutdowns.load(Ordering::SeqCst),
    );
    let total_opens = opens.load(Ordering::SeqCst) + 1;
    let expected_uses = (options.threads * options.bursts * options.burst_size) as u64;
    let collected = s.collected.load(Ordering::SeqCst);
    println!("--- summary ---");
    println!("threads        {}", options.threads);
    println!("opens          {total_opens}");
    println!("startups       {startups}");
    println!("shutdowns      {shutdowns}");
    println!("joins          {}", joins.load(Ordering::SeqCst));
    println!("uses collected {collected} of {expected_uses}");
    println!("elapsed        {:.3} s", elapsed.as_secs_f64());
    println!(
        "throughput     {:.1} M opens/s ({:.1} ns per open+close)",
        total_opens as f64 / elapsed.as_secs_f64() / 1e6,
        elapsed.as_nanos() as f64 / total_opens as f64
    );

    let mut failures = Vec::new();
    if panicked > 0 {
        failures.push(format!("{panicked} worker thread(s) panicked"));
    }
    if startups != shutdowns {
        failures.push(format!("{startups} startups but {shutdowns} shutdowns"));
    }
    if startups == 0 {
        failures.push("the service never started".into());
    }
    if collected != expected_uses {
        failures.push(format!(
            "collected {collected} uses, expected {expected_uses}"
        ));
    }
    if !service.closed() || service.open_count() != 0 {
        failures.push(format!("not closed at the end: {:?}", service.state()));
    }
    let violations = s.violations.load(Ordering::SeqCst);
    if violations > 0 {
        failures.push(format!(
            "{violations} invariant violation(s) during the run"
        ));
    }
    if failures.is_empty() {
        println!("invariants     OK");
        ExitCode::SUCCESS
    } else {
        for failure in failures {
            eprintln!("FAILED: {failure}");
        }
        ExitCode::FAILURE
    }
}
