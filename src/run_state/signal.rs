//! Cancelling on a signal (feature `signal`, unix): `RunState::cancel_on_signals`
//! and [`SignalCanceller`].

use std::sync::{mpsc, Arc};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

use super::RunState;
use crate::unwind;

// ---------------------------------------------------------------------------
// Cancelling on a signal (feature `signal`)
// ---------------------------------------------------------------------------

impl RunState {
    /// Cancels this state when the process gets SIGINT or SIGTERM, for
    /// as long as the returned guard lives.
    ///
    /// Available with the `signal` feature, on unix.
    ///
    /// The handler (from `signal-hook`) only records the signal; a
    /// small thread named after the state then calls
    /// [`cancel`](RunState::cancel), so the `on_cancel` callbacks run
    /// in an ordinary thread (their panics are dropped there). While
    /// the guard lives the signals no longer end the process. When it
    /// is dropped the thread ends, but, as `signal-hook` documents, the
    /// process's handler stays installed, so the signals are then
    /// ignored rather than fatal: keep the guard for as long as the
    /// program should answer them.
    ///
    /// The thread is named after the state, `"<name>-signals"`; a NUL in
    /// the name (which a thread's name cannot hold) is replaced by U+FFFD.
    /// Errors (`std::io::Error`) only if the thread cannot be created
    /// (then nothing has been installed: it is created first) or
    /// `signal-hook` cannot install its handlers.
    ///
    /// A signal that arrives before the run starts cancels a state that
    /// is not running yet, and the [`start`](RunState::start) (or
    /// [`run`](RunState::run)) then clears it, as every start clears an
    /// earlier cancel: to never lose one, install this once the run has
    /// started, or check [`cancelled`](RunState::cancelled) before
    /// starting.
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use multiopen::RunState;
    ///
    /// let rs = Arc::new(RunState::new("server"));
    /// let _on_signal = rs.cancel_on_signals()?;
    /// // A Ctrl-C before this line is cleared by the start in `run()`.
    /// let _run = rs.run();
    /// while rs.sleep(Duration::from_secs(1)).is_ok() {
    ///     // ... serve until Ctrl-C ...
    /// }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[cfg_attr(docsrs, doc(cfg(all(feature = "signal", unix))))]
    pub fn cancel_on_signals(self: &Arc<Self>) -> std::io::Result<SignalCanceller> {
        // A NUL cannot be in a thread's name: it is replaced, never refused.
        let name = format!("{}-signals", self.name()).replace('\0', "\u{FFFD}");
        let runstate = Arc::clone(self);
        let (installed, outcome) = mpsc::sync_channel(1);
        // The thread first, the handlers second (in the thread): if the
        // thread cannot be created, nothing has been installed, so the
        // signals keep their usual effect.
        let thread = std::thread::Builder::new().name(name).spawn(move || {
            let mut signals = match Signals::new([SIGINT, SIGTERM]) {
                Ok(signals) => signals,
                Err(error) => {
                    let _ = installed.send(Err(error));
                    return;
                }
            };
            if installed.send(Ok(signals.handle())).is_err() {
                return; // cannot happen: the caller waits for this
            }
            for _signal in signals.forever() {
                runstate.cancel();
            }
        })?;
        // Err(RecvError): the thread ended without a word, which only a
        // panic in `Signals::new` could do.
        let handle = match outcome.recv() {
            Ok(Ok(handle)) => handle,
            Ok(Err(error)) => {
                join(thread);
                return Err(error);
            }
            Err(_) => {
                join(thread);
                return Err(std::io::Error::other(
                    "the signal thread ended before installing its handlers",
                ));
            }
        };
        Ok(SignalCanceller {
            handle,
            thread: Some(thread),
        })
    }
}

/// While alive, SIGINT and SIGTERM cancel a [`RunState`]: see
/// [`RunState::cancel_on_signals`]. Dropping it stops that and joins its
/// thread; dropped on that very thread (by an `on_cancel` callback, which
/// runs there), it detaches the thread instead, which ends once the
/// callback returns.
///
/// After a `fork()`, the child has no signal thread: `mem::forget` the
/// child's copy rather than drop it (a drop would join a thread that does
/// not exist there).
///
/// Available with the `signal` feature, on unix.
///
/// ```
/// use std::sync::Arc;
/// use multiopen::{RunState, SignalCanceller};
///
/// let rs = Arc::new(RunState::new("server"));
/// let guard: SignalCanceller = rs.cancel_on_signals()?;
/// drop(guard);
/// assert!(!rs.cancelled());
/// # Ok::<(), std::io::Error>(())
/// ```
#[cfg_attr(docsrs, doc(cfg(all(feature = "signal", unix))))]
#[derive(Debug)]
pub struct SignalCanceller {
    handle: Handle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for SignalCanceller {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(thread) = self.thread.take() {
            // Joining our own thread would wait forever (std refuses with
            // a panic): on it, detach instead; the loop it runs ends after
            // this callback, as the handle is closed.
            if thread.thread().id() != std::thread::current().id() {
                join(thread);
            }
        }
    }
}

/// Joins the signal thread. Its panic, if it had one (it runs no user code
/// outside `cancel`, which catches the callbacks' panics), is disposed of
/// by `unwind::drop_payload`: a payload whose own `Drop` panics must not
/// escape (or, in a `Drop` while unwinding, abort).
fn join(thread: std::thread::JoinHandle<()>) {
    if let Err(payload) = thread.join() {
        unwind::drop_payload(payload);
    }
}
