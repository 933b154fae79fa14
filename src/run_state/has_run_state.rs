//! [`HasRunState`]: the trait for types that have a [`RunState`].

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::callbacks::CallbackId;
use super::error::{CallbackPanicked, Cancelled, RunStateError, WaitTimedOut};
use super::guard::DropGuard;
use super::guard::RunGuard;
use super::iter::UntilCancelled;
use super::state::RunPhase;
use super::CancelReason;
use super::RunState;

// ---------------------------------------------------------------------------
// HasRunState
// ---------------------------------------------------------------------------

/// A type that has a [`RunState`] (the Python `RunStateMixin`): implement
/// [`runstate`](Self::runstate) and get every query and control of
/// `RunState`, with the same names and signatures, forwarded to it.
///
/// ```
/// use multiopen::{HasRunState, RunState};
///
/// struct Crawler {
///     runstate: RunState,
///     pages: Vec<String>,
/// }
///
/// impl HasRunState for Crawler {
///     fn runstate(&self) -> &RunState {
///         &self.runstate
///     }
/// }
///
/// let c = Crawler { runstate: RunState::new("crawler"), pages: Vec::new() };
/// let _run = c.run();
/// assert!(c.is_running() && !c.cancelled());
/// c.cancel();
/// assert!(c.stopping());
/// # assert!(c.pages.is_empty());
/// # Ok::<(), multiopen::CallbackPanicked>(())
/// ```
///
/// # What is forwarded
///
/// The queries [`name`](Self::name), [`is_running`](Self::is_running),
/// [`cancelled`](Self::cancelled), [`stopping`](Self::stopping),
/// [`stopped`](Self::stopped), [`is_paused`](Self::is_paused),
/// [`state`](Self::state), [`start_time`](Self::start_time),
/// [`stop_time`](Self::stop_time), [`run_time`](Self::run_time) and
/// [`total_time`](Self::total_time); the controls [`start`](Self::start),
/// [`cancel`](Self::cancel), [`stop`](Self::stop), [`end`](Self::end),
/// [`pause`](Self::pause), [`resume`](Self::resume),
/// [`check`](Self::check), [`wait_while_paused`](Self::wait_while_paused),
/// [`sleep`](Self::sleep), [`run`](Self::run) and [`iter`](Self::iter); the
/// callbacks [`on_start`](Self::on_start), [`on_cancel`](Self::on_cancel),
/// [`on_end`](Self::on_end) and [`remove_callback`](Self::remove_callback);
/// the cancellation tree: [`try_cancel`](Self::try_cancel),
/// [`cancel_with`](Self::cancel_with),
/// [`try_cancel_with`](Self::try_cancel_with), [`reason`](Self::reason),
/// [`child`](Self::child), [`child_count`](Self::child_count),
/// [`drop_guard`](Self::drop_guard), and the waits
/// [`wait_cancelled`](Self::wait_cancelled) and
/// [`wait_stopped`](Self::wait_stopped) with their `_timeout` and
/// `_deadline` forms.
///
/// Not forwarded: the constructors ([`RunState::new`], `Default`, and
/// `From` a name: `RunState` is built from `&'static str`, `String` or
/// `Cow<'static, str>`, see below), which make a `RunState` rather than act
/// on one; and
/// [`RunState::run_owned`], [`RunState::run_here`], [`RunState::drop_guard_owned`],
/// [`RunState::cancel_at`], [`RunState::cancel_after`], [`RunState::spawn`],
/// [`RunState::enter`], `RunState::cancel_on_signals` and
/// `RunState::catch_signals` (feature
/// `signal`), which take `self: &Arc<RunState>` to keep a clone of the
/// `Arc`, which a `&self` of another type cannot provide: hold the state in
/// an `Arc<RunState>` and call them on it.
///
/// `iter`, `on_start`, `on_cancel` and `on_end` are generic, so they have a
/// `where Self: Sized` bound: the trait stays usable as
/// `dyn HasRunState`, where they are reached through
/// [`runstate`](Self::runstate).
///
/// # Name clashes
///
/// An inherent method of the implementing type wins over the trait's. If
/// the type also implements another trait with a method of the same name
/// (`start`, `name`, `iter`, ...), or derefs to a type with one (a
/// `Vec`'s `iter`), a call may be ambiguous or pick the trait's: write
/// `HasRunState::start(&x)` or `x.runstate().start()`.
pub trait HasRunState {
    /// The `RunState` that the provided methods act on.
    fn runstate(&self) -> &RunState;

    // --- queries --------------------------------------------------------------

    /// [`RunState::name`].
    ///
    /// ```
    /// use multiopen::{HasRunState, RunState};
    /// assert_eq!(HasRunState::name(&RunState::new("job")), "job");
    /// ```
    #[inline]
    fn name(&self) -> &str {
        self.runstate().name()
    }

    /// [`RunState::is_running`].
    ///
    /// ```
    /// use multiopen::{HasRunState, RunState};
    /// assert!(!HasRunState::is_running(&RunState::new("job")));
    /// ```
    #[inline]
    fn is_running(&self) -> bool {
        self.runstate().is_running()
    }

    /// [`RunState::cancelled`].
    ///
    /// ```
    /// use multiopen::{HasRunState, RunState};
    /// assert!(!HasRunState::cancelled(&RunState::new("job")));
    /// ```
    #[inline]
    fn cancelled(&self) -> bool {
        self.runstate().cancelled()
    }

    /// [`RunState::stopping`].
    ///
    /// ```
    /// use multiopen::{HasRunState, RunState};
    /// assert!(!HasRunState::stopping(&RunState::new("job")));
    /// ```
    #[inline]
    fn stopping(&self) -> bool {
        self.runstate().stopping()
    }

    /// [`RunState::stopped`].
    ///
    /// ```
    /// use multiopen::{HasRunState, RunState};
    /// assert!(!HasRunState::stopped(&RunState::new("job")));
    /// ```
    #[inline]
    fn stopped(&self) -> bool {
        self.runstate().stopped()
    }

    /// [`RunState::is_paused`].
    ///
    /// ```
    /// use multiopen::{HasRunState, RunState};
    /// let rs = RunState::new("job");
    /// rs.start()?;
    /// rs.pause()?;
    /// assert!(HasRunState::is_paused(&rs));
    /// # Ok::<(), multiopen::RunStateError>(())
    /// ```
    #[inline]
    fn is_paused(&self) -> bool {
        self.runstate().is_paused()
    }

    /// [`RunState::state`].
    ///
    /// ```
    /// use multiopen::{HasRunState, RunPhase, RunState};
    /// assert_eq!(HasRunState::state(&RunState::new("job")), RunPhase::Pending);
    /// ```
    #[inline]
    fn state(&self) -> RunPhase {
        self.runstate().state()
    }

    /// [`RunState::start_time`].
    ///
    /// ```
    /// use multiopen::{HasRunState, RunState};
    /// let rs = RunState::new("job");
    /// assert_eq!(HasRunState::start_time(&rs), None);
    /// rs.start()?;
    /// assert!(HasRunState::start_time(&rs).is_some());
    /// # Ok::<(), multiopen::RunStateError>(())
    /// ```
    #[inline]
    fn start_time(&self) -> Option<SystemTime> {
        self.runstate().start_time()
    }

    /// [`RunState::stop_time`].
    ///
    /// ```
    /// use multiopen::{HasRunState, RunState};
    /// let rs = RunState::new("job");
    /// rs.start()?;
    /// assert_eq!(HasRunState::stop_time(&rs), None);
    /// rs.stop()?;
    /// assert!(HasRunState::stop_time(&rs) >= HasRunState::start_time(&rs));
    /// # Ok::<(), multiopen::RunStateError>(())
    /// ```
    #[inline]
    fn stop_time(&self) -> Option<SystemTime> {
        self.runstate().stop_time()
    }

    /// [`RunState::run_time`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiopen::{HasRunState, RunState};
    /// assert_eq!(HasRunState::run_time(&RunState::new("job")), Duration::ZERO);
    /// ```
    #[inline]
    fn run_time(&self) -> Duration {
        self.runstate().run_time()
    }

    /// [`RunState::total_time`].
    ///
    /// ```
    /// use multiopen::{HasRunState, RunState};
    /// let rs = RunState::new("job");
    /// rs.start()?;
    /// rs.stop()?;
    /// assert_eq!(HasRunState::total_time(&rs), rs.run_time());
    /// # Ok::<(), multiopen::RunStateError>(())
    /// ```
    #[inline]
    fn total_time(&self) -> Duration {
        self.runstate().total_time()
    }

    // --- controls -------------------------------------------------------------

    /// [`RunState::start`].
    ///
    /// ```
    /// use multiopen::{HasRunState, RunState};
    /// let rs = RunState::new("job");
    /// HasRunState::start(&rs)?;
    /// assert!(rs.is_running());
    /// # Ok::<(), multiopen::RunStateError>(())
    /// ```
    #[inline]
    fn start(&self) -> Result<(), RunStateError> {
        self.runstate().start()
    }

    /// [`RunState::cancel`].
    ///
    /// ```
    /// use multiopen::{HasRunState, RunState};
    /// let rs = RunState::new("job");
    /// HasRunState::cancel(&rs);
    /// assert!(rs.cancelled());
    /// ```
    #[inline]
    fn cancel(&self) {
        self.runstate().cancel()
    }

    /// [`RunState::stop`].
    ///
    /// ```
    /// use multiopen::{HasRunState, RunState};
    /// let rs = RunState::new("job");
    /// rs.start()?;
    /// HasRunState::stop(&rs)?;
    /// assert!(rs.stopped());
    /// # Ok::<(), multiopen::RunStateError>(())
    /// ```
    #[inline]
    fn stop(&self) -> Result<(), RunStateError> {
        self.runstate().stop()
    }

    /// [`RunState::end`].
    ///
    /// ```
    /// use multiopen::{HasRunState, RunState};
    /// let rs = RunState::new("job");
    /// rs.start()?;
    /// HasRunState::end(&rs)?;
    /// assert!(rs.stopped());
    /// # Ok::<(), multiopen::RunStateError>(())
    /// ```
    #[inline]
    fn end(&self) -> Result<(), RunStateError> {
        self.runstate().end()
    }

    /// [`RunState::pause`].
    ///
    /// ```
    /// use multiopen::{HasRunState, RunState};
    /// let rs = RunState::new("job");
    /// assert!(HasRunState::pause(&rs).is_err()); // not running
    /// rs.start()?;
    /// HasRunState::pause(&rs)?;
    /// assert!(rs.is_paused());
    /// # Ok::<(), multiopen::RunStateError>(())
    /// ```
    #[inline]
    fn pause(&self) -> Result<(), RunStateError> {
        self.runstate().pause()
    }

    /// [`RunState::resume`].
    ///
    /// ```
    /// use multiopen::{HasRunState, RunState};
    /// let rs = RunState::new("job");
    /// rs.start()?;
    /// rs.pause()?;
    /// HasRunState::resume(&rs)?;
    /// assert!(!rs.is_paused());
    /// # Ok::<(), multiopen::RunStateError>(())
    /// ```
    #[inline]
    fn resume(&self) -> Result<(), RunStateError> {
        self.runstate().resume()
    }

    /// [`RunState::check`].
    ///
    /// ```
    /// use multiopen::{HasRunState, RunState};
    /// let rs = RunState::new("job");
    /// assert!(HasRunState::check(&rs).is_ok());
    /// rs.cancel();
    /// assert!(HasRunState::check(&rs).is_err());
    /// # Ok::<(), multiopen::CallbackPanicked>(())
    /// ```
    #[inline]
    fn check(&self) -> Result<(), Cancelled> {
        self.runstate().check()
    }

    /// [`RunState::wait_while_paused`].
    ///
    /// ```
    /// use multiopen::{HasRunState, RunState};
    /// let rs = RunState::new("job");
    /// rs.start()?;
    /// HasRunState::wait_while_paused(&rs); // not paused: returns at once
    /// # Ok::<(), multiopen::RunStateError>(())
    /// ```
    #[inline]
    fn wait_while_paused(&self) {
        self.runstate().wait_while_paused()
    }

    /// [`RunState::sleep`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiopen::{HasRunState, RunState};
    /// let rs = RunState::new("job");
    /// assert!(HasRunState::sleep(&rs, Duration::from_millis(1)).is_ok());
    /// rs.cancel();
    /// assert!(HasRunState::sleep(&rs, Duration::from_secs(3600)).is_err()); // at once
    /// # Ok::<(), multiopen::CallbackPanicked>(())
    /// ```
    #[inline]
    fn sleep(&self, duration: Duration) -> Result<(), Cancelled> {
        self.runstate().sleep(duration)
    }

    /// [`RunState::run`].
    ///
    /// ```
    /// use multiopen::{HasRunState, RunState};
    /// let rs = RunState::new("job");
    /// {
    ///     let _run = HasRunState::run(&rs);
    ///     assert!(rs.is_running());
    /// }
    /// assert!(rs.stopped());
    /// ```
    #[inline]
    fn run(&self) -> RunGuard<'_> {
        self.runstate().run()
    }

    /// [`RunState::iter`].
    ///
    /// ```
    /// use multiopen::{HasRunState, RunState};
    /// let rs = RunState::new("job");
    /// let items: Vec<_> = HasRunState::iter(&rs, 0..3).collect();
    /// assert_eq!(items, [0, 1, 2]);
    /// rs.cancel();
    /// assert_eq!(HasRunState::iter(&rs, 0..3).next(), None);
    /// # Ok::<(), multiopen::CallbackPanicked>(())
    /// ```
    #[inline]
    fn iter<I: IntoIterator>(&self, items: I) -> UntilCancelled<'_, I::IntoIter>
    where
        Self: Sized,
    {
        self.runstate().iter(items)
    }

    // --- callbacks ------------------------------------------------------------

    /// [`RunState::on_start`].
    ///
    /// ```
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    /// use multiopen::{HasRunState, RunState};
    /// let rs = RunState::new("job");
    /// let told = Arc::new(AtomicBool::new(false));
    /// let flag = Arc::clone(&told);
    /// HasRunState::on_start(&rs, move |_| flag.store(true, Ordering::Relaxed));
    /// rs.start()?;
    /// assert!(told.load(Ordering::Relaxed));
    /// # Ok::<(), multiopen::RunStateError>(())
    /// ```
    #[inline]
    fn on_start(&self, callback: impl Fn(&RunState) + Send + Sync + 'static) -> CallbackId
    where
        Self: Sized,
    {
        self.runstate().on_start(callback)
    }

    /// [`RunState::on_cancel`].
    ///
    /// ```
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    /// use multiopen::{HasRunState, RunState};
    /// let rs = RunState::new("job");
    /// let told = Arc::new(AtomicBool::new(false));
    /// let flag = Arc::clone(&told);
    /// HasRunState::on_cancel(&rs, move |_| flag.store(true, Ordering::Relaxed));
    /// rs.cancel();
    /// assert!(told.load(Ordering::Relaxed));
    /// # Ok::<(), multiopen::CallbackPanicked>(())
    /// ```
    #[inline]
    fn on_cancel(&self, callback: impl Fn(&RunState) + Send + Sync + 'static) -> CallbackId
    where
        Self: Sized,
    {
        self.runstate().on_cancel(callback)
    }

    /// [`RunState::on_end`].
    ///
    /// ```
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    /// use multiopen::{HasRunState, RunState};
    /// let rs = RunState::new("job");
    /// let told = Arc::new(AtomicBool::new(false));
    /// let flag = Arc::clone(&told);
    /// HasRunState::on_end(&rs, move |rs| flag.store(rs.stopped(), Ordering::Relaxed));
    /// rs.start()?;
    /// rs.stop()?;
    /// assert!(told.load(Ordering::Relaxed));
    /// # Ok::<(), multiopen::RunStateError>(())
    /// ```
    #[inline]
    fn on_end(&self, callback: impl Fn(&RunState) + Send + Sync + 'static) -> CallbackId
    where
        Self: Sized,
    {
        self.runstate().on_end(callback)
    }

    /// [`RunState::remove_callback`].
    ///
    /// ```
    /// use multiopen::{HasRunState, RunState};
    /// let rs = RunState::new("job");
    /// let id = rs.on_start(|_| panic!("never runs"));
    /// assert!(HasRunState::remove_callback(&rs, id));
    /// assert!(!HasRunState::remove_callback(&rs, id)); // already removed
    /// rs.start()?;
    /// # Ok::<(), multiopen::RunStateError>(())
    /// ```
    #[inline]
    fn remove_callback(&self, id: CallbackId) -> bool {
        self.runstate().remove_callback(id)
    }
    // --- the cancellation tree and its waits ---------------------------------

    /// [`RunState::try_cancel`].
    ///
    /// ```
    /// use multiopen::{HasRunState, RunState};
    /// HasRunState::try_cancel(&RunState::new("job"))?;
    /// # Ok::<(), multiopen::CallbackPanicked>(())
    /// ```
    #[inline]
    fn try_cancel(&self) -> Result<(), CallbackPanicked> {
        self.runstate().try_cancel()
    }

    /// [`RunState::cancel_with`].
    ///
    /// ```
    /// use multiopen::{HasRunState, RunState};
    /// let rs = RunState::new("job");
    /// HasRunState::cancel_with(&rs, "done");
    /// assert_eq!(HasRunState::reason(&rs).as_deref(), Some("done"));
    /// ```
    #[inline]
    fn cancel_with(&self, reason: impl Into<CancelReason>)
    where
        Self: Sized,
    {
        self.runstate().cancel_with(reason)
    }

    /// [`RunState::try_cancel_with`].
    ///
    /// ```
    /// use multiopen::{HasRunState, RunState};
    /// HasRunState::try_cancel_with(&RunState::new("job"), "done")?;
    /// # Ok::<(), multiopen::CallbackPanicked>(())
    /// ```
    #[inline]
    fn try_cancel_with(&self, reason: impl Into<CancelReason>) -> Result<(), CallbackPanicked>
    where
        Self: Sized,
    {
        self.runstate().try_cancel_with(reason)
    }

    /// [`RunState::reason`].
    ///
    /// ```
    /// use multiopen::{HasRunState, RunState};
    /// assert_eq!(HasRunState::reason(&RunState::new("job")), None);
    /// ```
    #[inline]
    fn reason(&self) -> Option<CancelReason> {
        self.runstate().reason()
    }

    /// [`RunState::child`].
    ///
    /// ```
    /// use multiopen::{HasRunState, RunState};
    /// let rs = RunState::new("server");
    /// let worker = HasRunState::child(&rs, "worker");
    /// rs.cancel();
    /// assert!(worker.cancelled());
    /// ```
    #[inline]
    #[must_use = "a child dropped at once unlinks at once: keep it for the work it stands for"]
    fn child(&self, name: impl Into<Cow<'static, str>>) -> Arc<RunState>
    where
        Self: Sized,
    {
        self.runstate().child(name)
    }

    /// [`RunState::child_count`].
    ///
    /// ```
    /// use multiopen::{HasRunState, RunState};
    /// assert_eq!(HasRunState::child_count(&RunState::new("job")), 0);
    /// ```
    #[inline]
    fn child_count(&self) -> usize {
        self.runstate().child_count()
    }

    /// [`RunState::drop_guard`].
    ///
    /// ```
    /// use multiopen::{HasRunState, RunState};
    /// let rs = RunState::new("job");
    /// drop(HasRunState::drop_guard(&rs));
    /// assert!(rs.cancelled());
    /// ```
    #[inline]
    fn drop_guard(&self) -> DropGuard<'_> {
        self.runstate().drop_guard()
    }

    /// [`RunState::wait_cancelled`].
    ///
    /// ```
    /// use multiopen::{HasRunState, RunState};
    /// let rs = RunState::new("job");
    /// rs.cancel();
    /// HasRunState::wait_cancelled(&rs); // returns at once
    /// ```
    #[inline]
    fn wait_cancelled(&self) {
        self.runstate().wait_cancelled()
    }

    /// [`RunState::wait_cancelled_timeout`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiopen::{HasRunState, RunState};
    /// assert!(HasRunState::wait_cancelled_timeout(&RunState::new("job"), Duration::ZERO).is_err());
    /// ```
    #[inline]
    fn wait_cancelled_timeout(&self, timeout: Duration) -> Result<(), WaitTimedOut> {
        self.runstate().wait_cancelled_timeout(timeout)
    }

    /// [`RunState::wait_cancelled_deadline`].
    ///
    /// ```
    /// use std::time::Instant;
    /// use multiopen::{HasRunState, RunState};
    /// assert!(HasRunState::wait_cancelled_deadline(&RunState::new("job"), Instant::now()).is_err());
    /// ```
    #[inline]
    fn wait_cancelled_deadline(&self, deadline: Instant) -> Result<(), WaitTimedOut> {
        self.runstate().wait_cancelled_deadline(deadline)
    }

    /// [`RunState::wait_stopped`].
    ///
    /// ```
    /// use multiopen::{HasRunState, RunState};
    /// let rs = RunState::new("job");
    /// drop(rs.run());
    /// HasRunState::wait_stopped(&rs); // returns at once
    /// ```
    #[inline]
    fn wait_stopped(&self) {
        self.runstate().wait_stopped()
    }

    /// [`RunState::wait_stopped_timeout`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiopen::{HasRunState, RunState};
    /// assert!(HasRunState::wait_stopped_timeout(&RunState::new("job"), Duration::ZERO).is_err());
    /// ```
    #[inline]
    fn wait_stopped_timeout(&self, timeout: Duration) -> Result<(), WaitTimedOut> {
        self.runstate().wait_stopped_timeout(timeout)
    }

    /// [`RunState::wait_stopped_deadline`].
    ///
    /// ```
    /// use std::time::Instant;
    /// use multiopen::{HasRunState, RunState};
    /// assert!(HasRunState::wait_stopped_deadline(&RunState::new("job"), Instant::now()).is_err());
    /// ```
    #[inline]
    fn wait_stopped_deadline(&self, deadline: Instant) -> Result<(), WaitTimedOut> {
        self.runstate().wait_stopped_deadline(deadline)
    }
}

/// A `RunState` has itself, so generic code over [`HasRunState`] takes a
/// bare `RunState` too.
impl HasRunState for RunState {
    #[inline]
    fn runstate(&self) -> &RunState {
        self
    }
}

// ---------------------------------------------------------------------------
// Making a `RunState` from a name (the Python `RunStateMixin(runstate=str)`)
// ---------------------------------------------------------------------------

/// A pending `RunState` with this name, as [`RunState::new`]: so a type
/// with a `RunState` field is built from a name (the Python
/// `RunStateMixin(runstate="name")`), and with `#[derive(Default)]` from
/// nothing (the field's [`Default`](RunState::default) is named
/// `"RunState"`). No allocation: the name is borrowed for `'static`.
///
/// ```
/// use multiopen::{HasRunState, RunState};
///
/// #[derive(Default)]
/// struct Crawler {
///     runstate: RunState,
/// }
///
/// impl HasRunState for Crawler {
///     fn runstate(&self) -> &RunState {
///         &self.runstate
///     }
/// }
///
/// let named = Crawler { runstate: "crawler".into() };
/// assert_eq!(named.name(), "crawler");
/// assert_eq!(Crawler::default().name(), "RunState");
/// ```
///
/// To share the calling thread's current state instead (the Python
/// mixin's default when no state is given), hold an `Arc<RunState>` from
/// [`RunState::current`].
impl From<&'static str> for RunState {
    fn from(name: &'static str) -> Self {
        Self::new(name)
    }
}

/// A pending `RunState` with this name, as [`RunState::new`] (the
/// `String` becomes the name, no copy).
///
/// ```
/// use multiopen::RunState;
///
/// let worker = 3;
/// let rs: RunState = format!("worker-{worker}").into();
/// assert_eq!(rs.name(), "worker-3");
/// ```
impl From<String> for RunState {
    fn from(name: String) -> Self {
        Self::new(name)
    }
}

/// A pending `RunState` with this name, as [`RunState::new`].
///
/// ```
/// use std::borrow::Cow;
/// use multiopen::RunState;
///
/// let rs = RunState::from(Cow::Borrowed("job"));
/// assert_eq!(rs.name(), "job");
/// ```
impl From<std::borrow::Cow<'static, str>> for RunState {
    fn from(name: std::borrow::Cow<'static, str>) -> Self {
        Self::new(name)
    }
}
