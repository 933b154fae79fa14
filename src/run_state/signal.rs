//! Cancelling on a signal (feature `signal`, unix): `RunState::cancel_on_signals`
//! and [`SignalCanceller`].

use std::sync::Arc;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

use super::RunState;

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
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        let handle = signals.handle();
        let runstate = Arc::clone(self);
        let thread = std::thread::Builder::new()
            .name(format!("{}-signals", self.name()))
            .spawn(move || {
                for _signal in signals.forever() {
                    let _ = runstate.cancel();
                }
            })?;
        Ok(SignalCanceller {
            handle,
            thread: Some(thread),
        })
    }
}

/// While alive, SIGINT and SIGTERM cancel a [`RunState`]: see
/// [`RunState::cancel_on_signals`]. Dropping it stops that and joins its
/// thread.
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
            let _ = thread.join();
        }
    }
}
