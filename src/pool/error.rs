//! [`PoolError`]: why a [`get`](super::Pool::get) (or a `close`/`resize`)
//! gave nothing.

use std::fmt;
use std::time::Duration;

use crate::error::{cause_source, write_cause};

/// Why [`Pool::get`](super::Pool::get) and its timed forms gave no object,
/// or why [`close`](super::Pool::close) or [`resize`](super::Pool::resize)
/// refused. Every message names the pool (its
/// [`name`](super::PoolBuilder::name), `pool` unless set); a factory's
/// error is written after it (the crate's [rule for causes](crate::error)).
///
/// ```
/// use std::time::Duration;
/// use multiopen::{Pool, PoolError};
///
/// let pool = Pool::builder(|| 0u8).max_live(1).name("parsers").build();
/// let _held = pool.get()?;
/// let err = pool.get_timeout(Duration::from_millis(1)).unwrap_err();
/// assert!(matches!(err, PoolError::TimedOut { live: 1, cap: 1, .. }));
/// assert!(err.to_string().starts_with("get from parsers timed out after "));
/// # Ok::<(), PoolError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PoolError<E = std::convert::Infallible> {
    /// The pool was at its cap for the whole wait: `live` of `cap`
    /// objects were alive (idle, handed out or being made) when the call
    /// gave up.
    TimedOut {
        /// The pool's name.
        name: String,
        /// How long the call waited.
        waited: Duration,
        /// Objects alive when it gave up.
        live: usize,
        /// The cap then.
        cap: usize,
    },
    /// A call that does not wait ([`try_get`](super::Pool::try_get), or a
    /// deadline already past) found no idle object and no room to make
    /// one.
    Exhausted {
        /// The pool's name.
        name: String,
        /// Objects alive.
        live: usize,
        /// The cap.
        cap: usize,
    },
    /// The pool is [closed](super::Pool::close) (also: `close` called a
    /// second time).
    Closed {
        /// The pool's name.
        name: String,
    },
    /// The factory returned this error; the room it held was given back
    /// (and a waiter woken).
    Factory {
        /// The pool's name.
        name: String,
        /// What the factory returned.
        error: E,
    },
    /// [`close`](super::Pool::close) or [`resize`](super::Pool::resize) on
    /// a plain pool, built without [`max_live`](super::PoolBuilder::max_live),
    /// a validation hook or a lifetime (any of those makes the pool count
    /// its objects):
    /// such a pool keeps no count of its objects (its take and return
    /// paths stay as fast as they are), so it cannot close or change a cap.
    Uncapped {
        /// The pool's name.
        name: String,
        /// The call refused: `close` or `resize`.
        what: &'static str,
    },
    /// [`resize`](super::Pool::resize) to 0 (every acquire would wait for
    /// ever: use [`close`](super::Pool::close) to stop handing out) or
    /// above [`Pool::MAX_LIVE`](super::Pool::MAX_LIVE). Nothing changed.
    InvalidCap {
        /// The pool's name.
        name: String,
        /// The cap asked for.
        cap: usize,
    },
}

impl<E> PoolError<E> {
    /// The factory's error, if that is what this is.
    ///
    /// ```
    /// use multiopen::Pool;
    /// let pool = Pool::try_builder(|| Err::<u8, _>("down")).max_live(1).build();
    /// assert_eq!(pool.get().unwrap_err().into_factory_error(), Some("down"));
    /// ```
    pub fn into_factory_error(self) -> Option<E> {
        match self {
            Self::Factory { error, .. } => Some(error),
            _ => None,
        }
    }

    /// Is this a time-out or an exhausted pool (a bound reached, worth a
    /// retry later), rather than a closed pool or a failure?
    ///
    /// ```
    /// use multiopen::Pool;
    /// let pool = Pool::builder(|| 0u8).max_live(1).build();
    /// let _held = pool.get()?;
    /// assert!(pool.try_get().unwrap_err().is_timeout());
    /// # Ok::<(), multiopen::PoolError>(())
    /// ```
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::TimedOut { .. } | Self::Exhausted { .. })
    }
}

impl<E: fmt::Display + 'static> fmt::Display for PoolError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TimedOut {
                name,
                waited,
                live,
                cap,
            } => write!(
                f,
                "get from {name} timed out after {waited:?}: {live} of {cap} objects alive, none idle"
            ),
            Self::Exhausted { name, live, cap } => write!(
                f,
                "get from {name} found it exhausted: {live} of {cap} objects alive, none idle"
            ),
            Self::Closed { name } => write!(f, "{name} is closed"),
            Self::Factory { name, error } => {
                write!(f, "factory of {name} failed: ")?;
                write_cause(f, error)
            }
            Self::Uncapped { name, what } => write!(
                f,
                "{what} of {name} refused: it was built without a cap (max_live)"
            ),
            Self::InvalidCap { name, cap } => write!(
                f,
                "resize of {name} to {cap} refused: a cap is 1 to {}",
                super::limit::MAX_LIVE
            ),
        }
    }
}

/// The factory's error is written in the message; `source()` goes on with
/// its own causes where they can be reached (see the [rule](crate::error)).
impl<E: fmt::Debug + fmt::Display + 'static> std::error::Error for PoolError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Factory { error, .. } => cause_source(error),
            _ => None,
        }
    }
}
