//! A cancellable background job with `RunState`.
//!
//! A thread polls for "work" every 50 ms under a `RunState`: `sleep` returns
//! early (with `Err(Cancelled)`) the moment the main thread cancels, and
//! `check` between steps does the same for the work itself. Callbacks log
//! the transitions; the main thread prints the state label and timestamps
//! as the job goes pending → running → stopping → cancelled.
//!
//! Run: `cargo run --example background_job`

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use multiopen::{Cancelled, RunState};

/// Seconds since the epoch, to millisecond precision, for the log.
fn stamp(t: Option<SystemTime>) -> String {
    match t {
        Some(t) => {
            let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
            format!("{}.{:03}", d.as_secs(), d.subsec_millis())
        }
        None => "-".into(),
    }
}

/// One polling pass: a few small steps, each behind a cancel check.
fn poll_once(rs: &RunState, pass: u32) -> Result<u64, Cancelled> {
    let mut sum = 0u64;
    for step in 0..1_000u64 {
        if step % 100 == 0 {
            rs.check()?; // one atomic load; Err once cancelled
        }
        sum = sum.wrapping_add(step * u64::from(pass));
    }
    Ok(sum)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let t0 = Instant::now();
    let rs = Arc::new(RunState::new("poller"));

    // Callbacks run in the thread that makes the transition.
    rs.on_start(move |rs| {
        println!(
            "[{:>4} ms] callback: {} started",
            t0.elapsed().as_millis(),
            rs.name()
        )
    });
    rs.on_cancel(move |rs| {
        println!(
            "[{:>4} ms] callback: {} cancelled",
            t0.elapsed().as_millis(),
            rs.name()
        )
    });
    rs.on_end(move |rs| {
        println!(
            "[{:>4} ms] callback: {} ended after {:?}",
            t0.elapsed().as_millis(),
            rs.name(),
            rs.run_time()
        )
    });
    println!("before start: state {}", rs.state()); // pending

    let passes = Arc::new(AtomicU32::new(0));
    let job = {
        // Start the run here, so it reads running as soon as we go on (a
        // cancel that came before would be kept: the run would begin
        // cancelled); the guard moves into the thread and stops the run
        // when the thread is done.
        let run = rs.run_owned();
        let passes = Arc::clone(&passes);
        thread::spawn(move || {
            let rs = run.runstate();
            // `sleep` waits 50 ms, or returns Err at once on cancel.
            while rs.sleep(Duration::from_millis(50)).is_ok() {
                let pass = passes.fetch_add(1, Ordering::Relaxed) + 1;
                match poll_once(rs, pass) {
                    Ok(sum) => println!(
                        "[{:>4} ms] pass {pass}: sum {sum}",
                        t0.elapsed().as_millis()
                    ),
                    Err(e) => println!(
                        "[{:>4} ms] pass {pass} interrupted: {e}",
                        t0.elapsed().as_millis()
                    ),
                }
            }
            // `run` drops here: the run stops (on_end runs in this thread).
        })
    };

    thread::sleep(Duration::from_millis(180));
    println!(
        "main: state {}, started at {}, running for {:?}",
        rs.state(),
        stamp(rs.start_time()),
        rs.run_time()
    );
    let asked = Instant::now();
    rs.cancel(); // wakes the sleeper at once
    println!("main: after cancel, state {}", rs.state()); // stopping (or cancelled)
    job.join().expect("job thread panicked");
    println!(
        "main: job stopped {:?} after the cancel; state {}, started {}, stopped {}, ran {:?}",
        asked.elapsed(),
        rs.state(),
        stamp(rs.start_time()),
        stamp(rs.stop_time()),
        rs.run_time()
    );

    assert!(rs.stopped() && rs.cancelled());
    assert_eq!(rs.state().label(), "cancelled");
    assert!(passes.load(Ordering::Relaxed) >= 1);
    // Stopping promptly: far less than one 50 ms sleep after the cancel.
    assert!(asked.elapsed() < Duration::from_secs(1));
    Ok(())
}
