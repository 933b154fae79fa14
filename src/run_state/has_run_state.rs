//! [`HasRunState`]: the trait for types that have a [`RunState`].

use super::error::CallbackPanicked;
use super::RunState;

// ---------------------------------------------------------------------------
// HasRunState
// ---------------------------------------------------------------------------

/// A type that has a [`RunState`] (the Python `RunStateMixin`): implement
/// [`runstate`](Self::runstate) and get `cancel`, `cancelled`,
/// `is_running`, `stopping` and `stopped`.
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
/// let _run = c.runstate().run();
/// assert!(c.is_running() && !c.cancelled());
/// c.cancel()?;
/// assert!(c.stopping());
/// # assert!(c.pages.is_empty());
/// # Ok::<(), multiopen::CallbackPanicked>(())
/// ```
pub trait HasRunState {
    /// The `RunState` that the provided methods act on.
    fn runstate(&self) -> &RunState;

    /// [`RunState::cancel`].
    ///
    /// ```
    /// use multiopen::{HasRunState, RunState};
    /// let rs = RunState::new("job");
    /// HasRunState::cancel(&rs)?;
    /// assert!(rs.cancelled());
    /// # Ok::<(), multiopen::CallbackPanicked>(())
    /// ```
    fn cancel(&self) -> Result<(), CallbackPanicked> {
        self.runstate().cancel()
    }

    /// [`RunState::cancelled`].
    ///
    /// ```
    /// use multiopen::{HasRunState, RunState};
    /// assert!(!HasRunState::cancelled(&RunState::new("job")));
    /// ```
    fn cancelled(&self) -> bool {
        self.runstate().cancelled()
    }

    /// [`RunState::is_running`].
    ///
    /// ```
    /// use multiopen::{HasRunState, RunState};
    /// assert!(!HasRunState::is_running(&RunState::new("job")));
    /// ```
    fn is_running(&self) -> bool {
        self.runstate().is_running()
    }

    /// [`RunState::stopping`].
    ///
    /// ```
    /// use multiopen::{HasRunState, RunState};
    /// assert!(!HasRunState::stopping(&RunState::new("job")));
    /// ```
    fn stopping(&self) -> bool {
        self.runstate().stopping()
    }

    /// [`RunState::stopped`].
    ///
    /// ```
    /// use multiopen::{HasRunState, RunState};
    /// assert!(!HasRunState::stopped(&RunState::new("job")));
    /// ```
    fn stopped(&self) -> bool {
        self.runstate().stopped()
    }
}

/// A `RunState` has itself, so generic code over [`HasRunState`] takes a
/// bare `RunState` too.
impl HasRunState for RunState {
    fn runstate(&self) -> &RunState {
        self
    }
}
