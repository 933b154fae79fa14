//! The server phase: requests that come a little apart, as to a threaded
//! server, each opening the shared service for its moment of work. Between
//! requests the service is idle, so without a linger nearly every request
//! starts it again (a new sink thread) and shuts it down; with a linger
//! longer than the gap, one startup serves them all. Run once with the
//! demo's linger and once with none, for the summary's startups per
//! request.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use multiopen::MultiOpen;

use crate::multiopen_design::{shared_service, Service};
use crate::workload::{do_job, Batch, Tally};

/// Client threads in the server phase.
pub const CLIENTS: u64 = 4;
/// Requests each client makes.
pub const REQUESTS_EACH: u64 = 40;
/// The pause between one client's requests (shorter than the default
/// linger, longer than a request).
pub const GAP: Duration = Duration::from_millis(1);

/// One run of the server phase.
pub struct ServerRun {
    pub linger: Duration,
    pub requests: u64,
    pub startups: usize,
    pub elapsed: Duration,
    pub failures: Vec<String>,
}

impl ServerRun {
    pub fn startups_per_request(&self) -> f64 {
        self.startups as f64 / self.requests.max(1) as f64
    }
}

/// [`CLIENTS`] threads each make [`REQUESTS_EACH`] requests, [`GAP`]
/// apart: open the service, do one job, send its result, close. Then the
/// books: every result reached the sink once, startups = shutdowns (after
/// the join that ends a linger), never two live.
pub fn serve(linger: Duration, job_bytes: usize) -> ServerRun {
    let requests = CLIENTS * REQUESTS_EACH;
    let tally = Arc::new(Tally::new(requests));
    let service: Arc<MultiOpen<Service>> = shared_service(&tally, linger);
    let began = Instant::now();
    let errors: Vec<String> = thread::scope(|s| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let service = &service;
                s.spawn(move || -> Result<(), String> {
                    let mut buf = Vec::with_capacity(job_bytes);
                    for i in 0..REQUESTS_EACH {
                        let job = client * REQUESTS_EACH + i;
                        let sink = service.open().map_err(|e| format!("open: {e}"))?;
                        buf.clear();
                        let checksum = do_job(job, &mut buf, job_bytes);
                        let mut batch: Batch = vec![(job, checksum)];
                        sink.send(&mut batch);
                        sink.close().map_err(|e| format!("close: {e}"))?;
                        thread::sleep(GAP);
                    }
                    Ok(())
                })
            })
            .collect();
        clients
            .into_iter()
            .filter_map(|c| match c.join() {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(_) => Some("a client panicked".into()),
            })
            .collect()
    });
    let elapsed = began.elapsed();
    let mut failures = errors;
    // Ends a linger (the last shutdown runs here), or returns at once.
    if let Err(e) = service.join() {
        failures.push(format!("join: {e}"));
    }
    let (startups, shutdowns) = (
        tally.startups.load(Ordering::SeqCst),
        tally.shutdowns.load(Ordering::SeqCst),
    );
    if startups != shutdowns {
        failures.push(format!(
            "server phase: {startups} startups but {shutdowns} shutdowns"
        ));
    }
    let received = tally.received.load(Ordering::SeqCst);
    let once = tally.seen.lock().unwrap().iter().all(|&seen| seen == 1);
    if received != requests || !once {
        failures.push(format!(
            "server phase: {received} of {requests} results received (each once: {once})"
        ));
    }
    if tally.violations.load(Ordering::SeqCst) > 0 {
        failures.push("server phase: violations".into());
    }
    ServerRun {
        linger,
        requests,
        startups,
        elapsed,
        failures,
    }
}

/// The summary lines: startups per request with the linger and without.
pub fn print_server(runs: &[ServerRun]) {
    println!(
        "\nserver phase: {CLIENTS} clients × {REQUESTS_EACH} requests, {} ms apart, \
         each opening the service for one job",
        GAP.as_millis()
    );
    for run in runs {
        let linger = if run.linger.is_zero() {
            "no linger".to_owned()
        } else {
            format!("linger {:.1} ms", run.linger.as_secs_f64() * 1e3)
        };
        println!(
            "  {linger:<16} {:>4} startups for {} requests: {:.3} startups per request ({:.0} ms)",
            run.startups,
            run.requests,
            run.startups_per_request(),
            run.elapsed.as_secs_f64() * 1e3
        );
    }
}
