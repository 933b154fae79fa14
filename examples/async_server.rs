//! A tokio TCP echo server whose connection tasks share a `MultiOpen`, a
//! capped `Pool` and a tree of `RunState`s, all awaited.
//!
//! What it shows:
//! - **`RunState` as the server's cancellation tree.** The server state
//!   has a deadline (`cancel_after`); each connection task runs under a
//!   `child` of it (`run_until_cancelled`), so one cancel (Ctrl-C, the
//!   deadline, or "clients done") ends the accept loop and every
//!   connection at once, and the server awaits each child's end
//!   (`wait_stopped_async`) before it reports. The cancel's reason says
//!   how it ended.
//! - **`MultiOpen` shared by tasks.** Every connection opens an "audit
//!   log" (`open_owned_async`) for its life and writes a line per request.
//!   The first open of a cycle runs the startup (in that task's poll: it is
//!   cheap here; see the README for a slow one), later ones share it; it
//!   lingers 5 ms after the last close, so connections that follow each
//!   other closely reuse one startup. At the end the server joins it
//!   (`join_async`), which ends the linger and runs the shutdown.
//! - **A capped `Pool` awaited.** Each request borrows a buffer from a
//!   pool capped below the number of connections (`get_async`, bounded by
//!   `tokio::time::timeout`), so tasks wait for one another's buffers;
//!   `stats()` counts the waits.
//!
//! By default it starts its own clients in the same process (`--clients N`
//! connections of `--requests M` echoes each), checks every echo, prints a
//! summary and exits non-zero on any mismatch, on a connection error, or if
//! the deadline (`--seconds S`, default 5) ends it before the clients are
//! done; a watchdog thread ends the process if even the shutdown hangs.
//! `--fault corrupt` (a wrong echo) and `--fault stall` (a server that
//! stops answering) show those checks failing.
//!
//! Run: `cargo run --example async_server` (about 0.1 s), or
//! `cargo run --example async_server -- --serve` to serve until Ctrl-C
//! (try `nc 127.0.0.1 <port>`; `--port P` picks the port).

// tokio is not built under `--cfg loom` (see Cargo.toml): there, this
// example is empty.
#[cfg(loom)]
fn main() {}

#[cfg(not(loom))]
fn main() -> std::process::ExitCode {
    app::main()
}

#[cfg(not(loom))]
mod app {
    use std::error::Error;
    use std::net::SocketAddr;
    use std::process::ExitCode;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use multiopen::{MultiOpen, Pool, Resource, RunState};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::{TcpListener, TcpStream};

    type BoxError = Box<dyn Error + Send + Sync>;

    const USAGE: &str = "usage: async_server [--clients N] [--requests M] [--cap K] [--seconds S] \
                     [--serve] [--port P] [--fault corrupt|stall]
  --clients N    client connections started in this process (default 8)
  --requests M   echoes each client sends and checks (default 50)
  --cap K        buffers the pool lends at once (default clients / 4, at least 1)
  --seconds S    deadline: the server state is cancelled after S seconds
                 (default 5; with --serve, none unless given)
  --serve        start no clients: serve until Ctrl-C
  --port P       listen on port P (default 0: any free port, printed)
  --fault F      make the server misbehave, to see the checks fail:
                 corrupt (one wrong echo) or stall (stops answering)";

    /// How long a request may wait for a buffer before its connection gives
    /// up (the pool's waits here last microseconds; this only bounds a bug).
    const BUFFER_WAIT: Duration = Duration::from_secs(1);
    /// How long the server waits for its connection tasks to stop once
    /// cancelled: they stop at their next poll, so this only bounds a bug.
    const STOP_GRACE: Duration = Duration::from_secs(2);
    /// The audit log stays up this long after its last close.
    const LINGER: Duration = Duration::from_millis(5);

    #[derive(Clone, Copy, PartialEq)]
    enum Fault {
        None,
        /// Flip a byte of one echo: the client's check must catch it.
        Corrupt,
        /// Stop answering at one request: the deadline must end the run.
        Stall,
    }

    /// The request (counted across all connections) that a fault hits.
    const FAULTY_REQUEST: u64 = 7;

    struct Options {
        clients: usize,
        requests: usize,
        cap: Option<usize>,
        deadline: Option<Duration>,
        serve: bool,
        port: u16,
        fault: Fault,
    }

    fn parse_options() -> Result<Options, String> {
        fn parse<T: std::str::FromStr>(flag: &str, text: &str) -> Result<T, String>
        where
            T::Err: std::fmt::Display,
        {
            text.parse().map_err(|e| format!("{flag} {text}: {e}"))
        }
        let mut options = Options {
            clients: 8,
            requests: 50,
            cap: None,
            deadline: None,
            serve: false,
            port: 0,
            fault: Fault::None,
        };
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or(format!("{flag} needs a value"));
            match flag.as_str() {
                "--clients" => options.clients = parse(&flag, &value()?)?,
                "--requests" => options.requests = parse(&flag, &value()?)?,
                "--cap" => options.cap = Some(parse::<usize>(&flag, &value()?)?.max(1)),
                "--seconds" => {
                    let s: f64 = parse(&flag, &value()?)?;
                    let d = Duration::try_from_secs_f64(s).map_err(|e| format!("{flag}: {e}"))?;
                    options.deadline = Some(d);
                }
                "--serve" => options.serve = true,
                "--port" => options.port = parse(&flag, &value()?)?,
                "--fault" => {
                    options.fault = match value()?.as_str() {
                        "corrupt" => Fault::Corrupt,
                        "stall" => Fault::Stall,
                        other => return Err(format!("--fault {other}: corrupt or stall\n{USAGE}")),
                    }
                }
                "-h" | "--help" => return Err(USAGE.into()),
                other => return Err(format!("unknown argument {other}\n{USAGE}")),
            }
        }
        if !options.serve && options.deadline.is_none() {
            options.deadline = Some(Duration::from_secs(5));
        }
        Ok(options)
    }

    // ---------------------------------------------------------------------------
    // The shared resource: an audit log, opened by every connection
    // ---------------------------------------------------------------------------

    /// The audit log's configuration and its counts across cycles. (A real one
    /// would open a file or a connection in `startup`.)
    #[derive(Default)]
    struct AuditLog {
        verbose: bool,
        startups: AtomicUsize,
        shutdowns: AtomicUsize,
        /// Lines written by cycles that have shut down.
        lines: AtomicU64,
    }

    /// One cycle's open log: what every connection's guard shares.
    struct AuditHandle {
        cycle: usize,
        lines: AtomicU64,
    }

    impl AuditHandle {
        fn record(&self, _line: &[u8]) {
            // Relaxed: a count, read by the shutdown after the last close.
            self.lines.fetch_add(1, Ordering::Relaxed);
        }
    }

    impl Resource for AuditLog {
        type Handle = AuditHandle;
        type Error = std::io::Error;

        fn startup(&self) -> std::io::Result<AuditHandle> {
            // Runs in the poll of the first `open_owned_async` of a cycle, on a
            // runtime worker thread, while the cycle's other openers wait.
            let cycle = self.startups.fetch_add(1, Ordering::Relaxed) + 1;
            if self.verbose {
                println!("audit log: cycle {cycle} started");
            }
            Ok(AuditHandle {
                cycle,
                lines: AtomicU64::new(0),
            })
        }

        fn shutdown(&self, handle: AuditHandle) -> std::io::Result<()> {
            // Runs in the final close (the task that drops the last guard), on
            // the linger's timer thread, or in the `join_async` at the end.
            let lines = handle.lines.into_inner();
            self.lines.fetch_add(lines, Ordering::Relaxed);
            self.shutdowns.fetch_add(1, Ordering::Relaxed);
            if self.verbose {
                println!("audit log: cycle {} shut down, {lines} lines", handle.cycle);
            }
            Ok(())
        }
    }

    // ---------------------------------------------------------------------------
    // The server
    // ---------------------------------------------------------------------------

    /// What every connection task shares.
    struct Shared {
        audit: Arc<MultiOpen<AuditLog>>,
        buffers: Pool<Vec<u8>>,
        verbose: bool,
        fault: Fault,
        /// Requests read, across connections (the fault counts on it).
        received: AtomicU64,
        /// Requests echoed back in full.
        echoed: AtomicU64,
        /// Connection tasks that ended with an error.
        errors: AtomicUsize,
        /// Buffer waits that hit `BUFFER_WAIT` (a runtime timeout drops the
        /// future: the pool's own `timed_out` counts only blocking gets).
        buffer_timeouts: AtomicUsize,
    }

    /// The server's side of the run, for the summary.
    struct Served {
        connections: usize,
        /// Connection tasks still running `STOP_GRACE` after the cancel.
        not_stopped: usize,
    }

    /// Accepts until `server` is cancelled, each connection in a task under a
    /// child state; then waits for every child to stop.
    async fn serve(listener: TcpListener, server: Arc<RunState>, shared: Arc<Shared>) -> Served {
        // The tracker: the children of connections still running (the stopped
        // are pruned as new ones come, so a long `--serve` does not accumulate).
        let mut children: Vec<Arc<RunState>> = Vec::new();
        let mut connections = 0;
        while let Some(accepted) = server.run_until_cancelled(listener.accept()).await {
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    eprintln!("server: accept failed: {e}");
                    continue;
                }
            };
            connections += 1;
            children.retain(|child| !child.stopped());
            // Cancelled with the server (and with its reason); started here, so
            // `wait_stopped_async` below never waits for a run not yet begun.
            let child = server.child(format!("conn-{connections}"));
            let run = child.run_owned(); // stops when the task drops it
            children.push(child);
            let shared = Arc::clone(&shared);
            tokio::spawn(async move {
                let state = run.runstate();
                let ended = state.run_until_cancelled(connection(stream, &shared)).await;
                let how = match ended {
                    Some(Ok(requests)) => format!("{requests} requests, closed by the client"),
                    Some(Err(e)) => {
                        shared.errors.fetch_add(1, Ordering::Relaxed);
                        eprintln!("{}: {peer}: {e}", state.name());
                        format!("error: {e}")
                    }
                    None => format!("cancelled ({})", state.reason().as_deref().unwrap_or("-")),
                };
                if shared.verbose {
                    println!("{} from {peer}: {how}", state.name());
                }
                // `run` drops here: the child's run stops, waking its waiter.
            });
        }
        // Cancelled: every child is cancelled too. Await each one's stop.
        let all_stopped = async {
            for child in &children {
                child.wait_stopped_async().await;
            }
        };
        let not_stopped = match tokio::time::timeout(STOP_GRACE, all_stopped).await {
            Ok(()) => 0,
            Err(_) => children.iter().filter(|child| !child.stopped()).count(),
        };
        Served {
            connections,
            not_stopped,
        }
    }

    /// One connection: echo each line until the client closes. Returns the
    /// number of requests echoed.
    async fn connection(stream: TcpStream, shared: &Shared) -> Result<u64, BoxError> {
        // Held for the connection's life: the first open of a cycle runs the
        // startup, the others share it (or wait for a startup in progress).
        let log = shared.audit.open_owned_async().await?;
        let (read, mut write) = stream.into_split();
        let mut read = BufReader::new(read);
        let mut requests = 0;
        loop {
            // Wait for a request before taking a buffer: an idle connection
            // holds none.
            if read.fill_buf().await?.is_empty() {
                return Ok(requests); // the client closed
            }
            let mut buf = match tokio::time::timeout(BUFFER_WAIT, shared.buffers.get_async()).await
            {
                Ok(buf) => buf?,
                Err(_) => {
                    shared.buffer_timeouts.fetch_add(1, Ordering::Relaxed);
                    return Err(format!("no buffer within {BUFFER_WAIT:?}").into());
                }
            };
            if read.read_until(b'\n', &mut buf).await? == 0 {
                return Ok(requests);
            }
            let n = shared.received.fetch_add(1, Ordering::Relaxed) + 1;
            if shared.fault == Fault::Stall && n >= FAULTY_REQUEST {
                std::future::pending::<()>().await; // until cancelled
            }
            log.record(&buf);
            if shared.fault == Fault::Corrupt && n == FAULTY_REQUEST {
                buf[0] ^= 0x20; // flips the case of a letter
            }
            write.write_all(&buf).await?;
            shared.echoed.fetch_add(1, Ordering::Relaxed);
            // The handler's other awaits (a database call, a log flush) would
            // come here, the buffer still held: other connections wait for it.
            tokio::task::yield_now().await;
            requests += 1;
            // `buf` drops: the buffer goes back (cleared), waking one waiter.
        }
    }

    // ---------------------------------------------------------------------------
    // The clients
    // ---------------------------------------------------------------------------

    /// What the clients saw.
    #[derive(Default)]
    struct Checked {
        echoes: u64,
        mismatches: u64,
        errors: usize,
    }

    /// One client: `requests` lines of varying length, each echo checked.
    async fn client(addr: SocketAddr, id: usize, requests: usize) -> Result<Checked, BoxError> {
        let stream = TcpStream::connect(addr).await?;
        let (read, mut write) = stream.into_split();
        let mut read = BufReader::new(read);
        let mut checked = Checked::default();
        let mut echo = Vec::new();
        for request in 0..requests {
            let pad = "x".repeat((id * 31 + request * 7) % 200);
            let line = format!("client {id} request {request} {pad}\n");
            write.write_all(line.as_bytes()).await?;
            echo.clear();
            if read.read_until(b'\n', &mut echo).await? == 0 {
                return Err(
                    format!("the server closed the connection at request {request}").into(),
                );
            }
            checked.echoes += 1;
            if echo != line.as_bytes() {
                checked.mismatches += 1;
                if checked.mismatches > 3 {
                    continue; // reported enough
                }
                eprintln!(
                    "client {id}: request {request}: sent {:?}, got back {:?}",
                    line.trim_end(),
                    String::from_utf8_lossy(&echo).trim_end()
                );
            }
        }
        write.shutdown().await?; // the server sees the end and closes
        Ok(checked)
    }

    /// All clients at once; their results summed.
    async fn run_clients(addr: SocketAddr, clients: usize, requests: usize) -> Checked {
        let tasks: Vec<_> = (0..clients)
            .map(|id| tokio::spawn(client(addr, id, requests)))
            .collect();
        let mut total = Checked::default();
        for (id, task) in tasks.into_iter().enumerate() {
            match task.await {
                Ok(Ok(checked)) => {
                    total.echoes += checked.echoes;
                    total.mismatches += checked.mismatches;
                }
                Ok(Err(e)) => {
                    eprintln!("client {id}: {e}");
                    total.errors += 1;
                }
                Err(e) => {
                    eprintln!("client {id}: task failed: {e}");
                    total.errors += 1;
                }
            }
        }
        total
    }

    // ---------------------------------------------------------------------------
    // main
    // ---------------------------------------------------------------------------

    pub fn main() -> ExitCode {
        let options = match parse_options() {
            Ok(options) => options,
            Err(message) => {
                eprintln!("{message}");
                return ExitCode::from(2);
            }
        };
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                eprintln!("async_server: no runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        match runtime.block_on(run(options)) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("async_server: {e}");
                ExitCode::FAILURE
            }
        }
    }

    /// The whole run; `Ok(false)` if a check failed.
    async fn run(options: Options) -> Result<bool, BoxError> {
        let t0 = Instant::now();
        let clients = if options.serve { 0 } else { options.clients };
        let cap = options.cap.unwrap_or((options.clients / 4).max(1));
        let shared = Arc::new(Shared {
            audit: MultiOpen::new(AuditLog {
                verbose: options.serve,
                ..AuditLog::default()
            })
            .with_name("audit log")
            .with_linger(LINGER),
            buffers: Pool::builder(|| Vec::with_capacity(4096))
                .name("buffers")
                .max_live(cap) // at most `cap` lent at once: the others wait
                .reset(|buf| buf.clear())
                .build(),
            verbose: options.serve,
            fault: options.fault,
            received: AtomicU64::new(0),
            echoed: AtomicU64::new(0),
            errors: AtomicUsize::new(0),
            buffer_timeouts: AtomicUsize::new(0),
        });

        let server = Arc::new(RunState::new("server"));
        let _run = server.run(); // started before anything can cancel it
        if let Some(deadline) = options.deadline {
            server.cancel_after(deadline)?; // reason: "deadline exceeded"
                                            // The last resort: if even the shutdown below hangs (a task stuck
                                            // in code that never yields), end the process.
            let limit = deadline + STOP_GRACE + Duration::from_secs(1);
            std::thread::spawn(move || {
                std::thread::sleep(limit);
                eprintln!("async_server: watchdog: still running after {limit:?}");
                std::process::exit(3);
            });
        }
        // Ctrl-C cancels the server (and with it every connection); a second
        // one ends the process at once.
        {
            let server = Arc::clone(&server);
            tokio::spawn(async move {
                match server.run_until_cancelled(tokio::signal::ctrl_c()).await {
                    Some(Ok(())) => {
                        server.cancel_with("signal SIGINT");
                        if tokio::signal::ctrl_c().await.is_ok() {
                            eprintln!("async_server: second Ctrl-C: exiting");
                            std::process::exit(130);
                        }
                    }
                    Some(Err(e)) => eprintln!("async_server: cannot catch Ctrl-C: {e}"),
                    None => {} // cancelled otherwise
                }
            });
        }

        let listener = TcpListener::bind(("127.0.0.1", options.port)).await?;
        let addr = listener.local_addr()?;
        println!("async_server: listening on {addr}");
        let serving = tokio::spawn(serve(listener, Arc::clone(&server), Arc::clone(&shared)));

        let checked = if options.serve {
            println!("async_server: serving until Ctrl-C");
            None
        } else {
            let checked = server
                .run_until_cancelled(run_clients(addr, clients, options.requests))
                .await;
            if checked.is_some() {
                server.cancel_with("clients done");
            }
            checked
        };
        let served = serving.await?;
        // Every connection has closed its log (a connection's guard drops
        // before its run stops): end the linger and shut the log down. Bounded,
        // in case a connection task did not stop.
        match tokio::time::timeout(STOP_GRACE, shared.audit.join_async()).await {
            Ok(joined) => joined?,
            Err(_) => eprintln!("async_server: the audit log is still open"),
        }
        let ended = server.reason();
        let ended = ended.as_deref().unwrap_or("cancelled");

        // The summary, then the checks.
        let elapsed = t0.elapsed();
        let (received, echoed) = (
            shared.received.load(Ordering::Relaxed),
            shared.echoed.load(Ordering::Relaxed),
        );
        let errors = shared.errors.load(Ordering::Relaxed);
        let log = shared.audit.resource();
        let (startups, shutdowns) = (
            log.startups.load(Ordering::Relaxed),
            log.shutdowns.load(Ordering::Relaxed),
        );
        let lines = log.lines.load(Ordering::Relaxed);
        let stats = shared.buffers.stats();
        let buffer_timeouts = shared.buffer_timeouts.load(Ordering::Relaxed);
        let mut failures = Vec::new();
        if let Some(checked) = &checked {
            println!(
                "clients: {clients} × {} requests: {} echoes checked, {} mismatches, {} errors",
                options.requests, checked.echoes, checked.mismatches, checked.errors
            );
        }
        println!(
            "server: ended by \"{ended}\" after {elapsed:.0?}; {} connections served, \
         {echoed} requests echoed, {errors} connection errors",
            served.connections
        );
        println!(
            "audit log: {startups} startups, {shutdowns} shutdowns, {lines} lines \
         (linger {LINGER:?})"
        );
        println!(
            "buffers (cap {cap}): {} created, {} waits (longest {:.1?}); {} timed out in the \
         pool, {buffer_timeouts} by the runtime's timeout",
            stats.created, stats.waited, stats.wait_longest, stats.timed_out
        );

        if served.not_stopped > 0 {
            failures.push(format!(
                "{} connection tasks did not stop within {STOP_GRACE:?} of the cancel",
                served.not_stopped
            ));
        }
        if errors > 0 {
            failures.push(format!("{errors} connection errors"));
        }
        // Every cycle of the log shut down, and wrote a line per request.
        if startups != shutdowns || lines != received {
            failures.push(format!(
                "audit log: {startups} startups, {shutdowns} shutdowns, {lines} lines for \
             {received} requests"
            ));
        }
        if !options.serve {
            let expected = (clients * options.requests) as u64;
            match &checked {
                Some(c) if c.mismatches == 0 && c.errors == 0 && c.echoes == expected => {}
                Some(c) => failures.push(format!(
                    "clients: {} of {expected} echoes checked, {} mismatches, {} errors",
                    c.echoes, c.mismatches, c.errors
                )),
                None => failures.push(format!("clients did not finish: {ended}")),
            }
            if served.connections != clients || echoed != expected {
                failures.push(format!(
                    "{} connections served for {clients} clients, {echoed} echoes for {expected}",
                    served.connections
                ));
            }
        }
        for failure in &failures {
            eprintln!("async_server: FAILED: {failure}");
        }
        Ok(failures.is_empty())
    }
}
