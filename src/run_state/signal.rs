//! Cancelling on a signal (feature `signal`, unix):
//! `RunState::cancel_on_signals`, `RunState::catch_signals` and
//! [`SignalCanceller`]; a second signal of a kind gets the signal's old
//! disposition (for most, the default action), and so does every signal
//! once no canceller of it is alive.
//!
//! These atomics are std's, not the `sync` shim's: `signal-hook` takes
//! `Arc<std::sync::atomic::AtomicBool>`, and signal handlers are outside
//! what the loom models check.

use std::os::raw::c_int;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use signal_hook::consts::{FORBIDDEN, SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

use super::RunState;
use crate::unwind;

// ---------------------------------------------------------------------------
// Cancelling on a signal (feature `signal`)
// ---------------------------------------------------------------------------

impl RunState {
    /// Cancels this state when the process gets SIGINT or SIGTERM, for
    /// as long as the returned guard lives: the same as
    /// [`catch_signals(&[SIGINT, SIGTERM])`](RunState::catch_signals), which
    /// describes what happens.
    ///
    /// Available with the `signal` feature, on unix.
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use multiopen::RunState;
    ///
    /// let rs = Arc::new(RunState::new("server"));
    /// let _on_signal = rs.cancel_on_signals()?;
    /// // A Ctrl-C before this line is kept: the run below begins cancelled.
    /// let _run = rs.run();
    /// while rs.sleep(Duration::from_secs(1)).is_ok() {
    ///     // ... serve until Ctrl-C; a second Ctrl-C ends the process ...
    /// }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[cfg_attr(docsrs, doc(cfg(all(feature = "signal", unix))))]
    pub fn cancel_on_signals(self: &Arc<Self>) -> std::io::Result<SignalCanceller> {
        self.catch_signals(&[SIGINT, SIGTERM])
    }

    /// Cancels this state when the process gets one of `signals` (the
    /// Python `catch_signal`), for as long as the returned guard lives.
    ///
    /// Available with the `signal` feature, on unix.
    ///
    /// - **The first** of these signals cancels the state. The handler
    ///   (from `signal-hook`) only records the signal; a small thread named
    ///   `"<name>-signals"` then calls [`cancel`](RunState::cancel), so the
    ///   `on_cancel` callbacks run in an ordinary thread (their panics are
    ///   dropped there).
    /// - **A second one of the same kind** gets what the signal did before
    ///   the first canceller was installed: for a signal whose disposition
    ///   was the default (SIGINT and SIGTERM in most programs), the default
    ///   action, so a second Ctrl-C ends the program at once. A signal that
    ///   was ignored stays ignored; one with a handler of its own (installed
    ///   before, outside `signal-hook`) has that handler called on every
    ///   arrival, the first included, as `signal-hook` chains it. The count
    ///   is per signal and per process: it starts again when a canceller is
    ///   installed while none is alive.
    /// - **Dropping** the guard ends its cancelling; once no canceller of a
    ///   signal is alive, the signal again does what it did before: the
    ///   default action, ignored, or its own handler. (The emulation of the
    ///   default action, `signal_hook::flag::register_conditional_default`,
    ///   stays installed for the process's life, switched off while a
    ///   canceller lives: `signal-hook` never uninstalls its handler.)
    ///
    /// The disposition "before" is read (`sigaction`) when a signal is
    /// first caught by this crate; a handler installed later by other code
    /// is not known here.
    ///
    /// Errors (`std::io::Error`): `InvalidInput` for an empty list or a
    /// signal `signal-hook` refuses to handle (SIGKILL, SIGSTOP, SIGILL,
    /// SIGFPE, SIGSEGV: its `FORBIDDEN` list), before anything is
    /// installed; the OS's error if the thread cannot be created or a
    /// handler cannot be installed. A NUL in the state's name (which a
    /// thread's name cannot hold) is replaced by U+FFFD.
    ///
    /// A signal that arrives before the run starts is not lost: a cancel
    /// of a state that is not running is kept, and the next
    /// [`start`](RunState::start) (or [`run`](RunState::run)) begins
    /// cancelled (see [`RunState::cancel`]). The cancel's reason names the
    /// signal (`"signal SIGINT"`), see [`RunState::reason`].
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use multiopen::RunState;
    ///
    /// const SIGUSR1: i32 = 10; // Linux; see `libc::SIGUSR1`
    /// # #[cfg(target_os = "linux")] {
    /// let rs = Arc::new(RunState::new("reloader"));
    /// let canceller = rs.catch_signals(&[SIGUSR1])?;
    /// rs.start()?;
    /// # extern "C" { fn raise(sig: i32) -> i32; }
    /// # unsafe { raise(SIGUSR1) };
    /// // ... SIGUSR1 arrives ...
    /// assert!(rs.sleep(Duration::from_secs(3600)).is_err()); // cancelled
    /// drop(canceller); // SIGUSR1 ends the process again, as before
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg_attr(docsrs, doc(cfg(all(feature = "signal", unix))))]
    pub fn catch_signals(self: &Arc<Self>, signals: &[c_int]) -> std::io::Result<SignalCanceller> {
        if signals.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{}: no signals to catch", self.name()),
            ));
        }
        if let Some(signal) = signals.iter().find(|s| FORBIDDEN.contains(s)) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "{}: signal {} cannot be caught (signal-hook refuses it)",
                    self.name(),
                    signal_label(*signal)
                ),
            ));
        }
        let signals: Vec<c_int> = signals.to_vec();
        // The order closes a window (review): the "second signal gets the
        // default action" switch is turned on only once the signal thread
        // has registered its handlers, so a signal that comes in between
        // is never taken as the first without a cancel (the next would then
        // have ended the process). Until then one gets what it got before
        // the call (the default action, or the other cancellers').
        prepare(&signals)?;
        let (handle, thread) = self.start_signal_thread(&signals)?;
        activate(&signals);
        Ok(SignalCanceller {
            handle,
            thread: Some(thread),
            signals,
        })
    }

    /// The thread that turns the recorded signals into cancels, and the
    /// handle that closes its iterator.
    fn start_signal_thread(
        self: &Arc<Self>,
        signals: &[c_int],
    ) -> std::io::Result<(Handle, std::thread::JoinHandle<()>)> {
        // A NUL cannot be in a thread's name: it is replaced, never refused.
        let name = format!("{}-signals", self.name()).replace('\0', "\u{FFFD}");
        let runstate = Arc::clone(self);
        let signals = signals.to_vec();
        let (installed, outcome) = mpsc::sync_channel(1);
        // The thread first, the handlers second (in the thread): if the
        // thread cannot be created, no cancel action has been installed.
        let thread = std::thread::Builder::new().name(name).spawn(move || {
            let mut signals = match Signals::new(signals) {
                Ok(signals) => signals,
                Err(error) => {
                    let _ = installed.send(Err(error));
                    return;
                }
            };
            if installed.send(Ok(signals.handle())).is_err() {
                return; // cannot happen: the caller waits for this
            }
            for signal in signals.forever() {
                runstate.cancel_with(format!("signal {}", signal_label(signal)));
            }
        })?;
        // Err(RecvError): the thread ended without a word, which only a
        // panic in `Signals::new` could do.
        match outcome.recv() {
            Ok(Ok(handle)) => Ok((handle, thread)),
            Ok(Err(error)) => {
                join(thread);
                Err(error)
            }
            Err(_) => {
                join(thread);
                Err(std::io::Error::other(
                    "the signal thread ended before installing its handlers",
                ))
            }
        }
    }
}

/// `"SIGINT"` for SIGINT, the number for a signal without a known name.
fn signal_label(signal: c_int) -> String {
    match signal_hook::low_level::signal_name(signal) {
        Some(name) => name.to_owned(),
        None => signal.to_string(),
    }
}

// ---------------------------------------------------------------------------
// The second signal and the restore: process-wide, per signal
// ---------------------------------------------------------------------------

/// What this crate keeps for one signal it has caught.
struct Disposition {
    signal: c_int,
    /// `Some` if the signal's disposition was the default when this crate
    /// first caught it: then two persistent `signal-hook` actions, in this
    /// order, emulate the default action if the flag is set, and set it.
    /// While cancellers live the flag starts false, so the first signal
    /// only sets it (and cancels) and the second gets the default action;
    /// with none alive it stays true: the default action, as before.
    default_next: Option<Arc<AtomicBool>>,
    /// Cancellers of this signal alive now.
    live: usize,
}

/// Every signal this crate has caught. Locked only to install or drop a
/// canceller, never in a signal handler (which only touches the flags).
static DISPOSITIONS: Mutex<Vec<Disposition>> = Mutex::new(Vec::new());

fn dispositions() -> std::sync::MutexGuard<'static, Vec<Disposition>> {
    // Poison: nothing here panics while holding it; if something did, the
    // list is still a valid list.
    DISPOSITIONS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A canceller of each of `signals` is about to be installed: each has
/// its entry (and, if its disposition is the default, the two actions of
/// `default_next`), not yet counted live, so its flag is unchanged: a
/// signal now gets what it got before. On error, the entries made stay, as
/// if a canceller of them had come and gone.
fn prepare(signals: &[c_int]) -> std::io::Result<()> {
    let mut table = dispositions();
    for &signal in signals {
        prepare_one(&mut table, signal)?;
    }
    Ok(())
}

fn prepare_one(table: &mut Vec<Disposition>, signal: c_int) -> std::io::Result<()> {
    if !table.iter().any(|d| d.signal == signal) {
        let default_next = if disposition_is_default(signal)? {
            let flag = Arc::new(AtomicBool::new(true));
            // Order matters (actions run in registration order): test
            // the flag, then set it.
            signal_hook::flag::register_conditional_default(signal, Arc::clone(&flag))?;
            signal_hook::flag::register(signal, Arc::clone(&flag))?;
            Some(flag)
        } else {
            None
        };
        table.push(Disposition {
            signal,
            default_next,
            live: 0,
        });
    }
    Ok(())
}

/// A canceller of each of `signals` (prepared) now has its handlers
/// registered: the next of each only cancels.
fn activate(signals: &[c_int]) {
    count_live(signals, |live| live + 1);
}

/// A canceller of each of `signals` is being dropped: once none of a
/// signal is left, it gets its old disposition.
fn disarm(signals: &[c_int]) {
    count_live(signals, |live| live.saturating_sub(1));
}

/// Moves the live count of each of `signals` by `step`; the flag follows
/// it: set ("the default action next") exactly while none is live. (At
/// zero it is already set: only `count_live` clears it, and the signal
/// actions only set it.)
fn count_live(signals: &[c_int], step: impl Fn(usize) -> usize) {
    let mut table = dispositions();
    for &signal in signals {
        if let Some(entry) = table.iter_mut().find(|d| d.signal == signal) {
            let was = entry.live;
            entry.live = step(was);
            if (was == 0) != (entry.live == 0) {
                if let Some(flag) = &entry.default_next {
                    // SeqCst, as signal-hook's own flag actions use: the
                    // handler reads it on whichever thread the signal
                    // arrives.
                    flag.store(entry.live == 0, Ordering::SeqCst);
                }
            }
        }
    }
}

/// Is `signal`'s disposition now the default (`SIG_DFL`)?
fn disposition_is_default(signal: c_int) -> std::io::Result<bool> {
    // SAFETY: `sigaction` with a null new action only reads the current
    // one into `old`, a zeroed `sigaction` (a valid value of that C
    // struct) that we own.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `signal` was checked against FORBIDDEN, and an
    // invalid number makes the call fail with EINVAL, nothing else.
    if unsafe { libc::sigaction(signal, std::ptr::null(), &mut old) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(old.sa_sigaction == libc::SIG_DFL)
}

/// While alive, its signals (SIGINT and SIGTERM, or those given to
/// [`RunState::catch_signals`]) cancel a [`RunState`]: see
/// [`RunState::catch_signals`]. Dropping it stops that, joins its thread,
/// and once no canceller of a signal is left gives the signal back its old
/// disposition (for most, the default action); dropped on its own thread
/// (by an `on_cancel` callback, which runs there), it detaches the thread
/// instead, which ends once the callback returns.
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
    /// The signals it cancels on, for `disarm`.
    signals: Vec<c_int>,
}

impl Drop for SignalCanceller {
    fn drop(&mut self) {
        // Disarmed first, mirroring the install: a signal from now on gets
        // its old disposition back (and may still cancel, harmlessly).
        disarm(&self.signals);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The flag of `signal`'s entry (default disposition), and its live count.
    fn entry(signal: c_int) -> (bool, usize) {
        let table = dispositions();
        let d = table.iter().find(|d| d.signal == signal).unwrap();
        let flag = d.default_next.as_ref().unwrap();
        (flag.load(Ordering::SeqCst), d.live)
    }

    /// A signal that comes while a canceller is being installed (after the
    /// default-next actions exist, before the signal thread's handlers do)
    /// must not be taken as "the first": that one only cancels, and none
    /// was registered yet, so the next would have got the default action
    /// (ending the process, for SIGINT) with no cancel ever made. The
    /// switch is turned on only by `activate`, after the thread is ready.
    #[test]
    fn a_signal_while_a_canceller_installs_is_not_taken_as_the_first() {
        // SIGURG: default disposition, default action "ignore" (harmless
        // here); no other test of this binary uses it.
        let signal = libc::SIGURG;
        prepare(&[signal]).unwrap();
        assert_eq!(entry(signal), (true, 0), "prepared: the old disposition");
        // SAFETY: `raise` with a valid signal number; its action here is
        // the emulated default (ignore) and the flag's store.
        unsafe { libc::raise(signal) };
        assert_eq!(entry(signal), (true, 0), "nothing armed, nothing taken");
        activate(&[signal]);
        assert_eq!(entry(signal), (false, 1), "armed: the next only cancels");
        disarm(&[signal]);
        assert_eq!(entry(signal), (true, 0), "disarmed: the old disposition");
    }
}
