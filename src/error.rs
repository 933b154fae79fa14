//! The error values every misuse of the primitives turns into.
//!
//! Misuse never panics, hangs or corrupts a count: it returns one of these.
//! Each is `std::error::Error + Send + Sync + 'static` (given a user error
//! type that is), with a message that names the object involved.

use std::fmt;
use std::panic::Location;

pub use crate::run_state::error::{CallbackPanicked, Cancelled, RunStateError};

/// Where a [`MultiOpen`](crate::MultiOpen)'s final close happened.
///
/// Recorded by the close that ran shutdown, for the messages of later
/// [`ClosedError`]s (the Python `caller_frame`, done by `#[track_caller]`).
///
/// ```
/// use multiopen::{CloseHow, MultiOpen};
///
/// let db = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(7), |_| Ok(()));
/// db.open()?.close()?;
/// let site = db.state().final_close.expect("closed once");
/// assert_eq!(site.how, CloseHow::Explicit);
/// assert_eq!(site.location.file(), file!());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseSite {
    /// The source location: of the `close` call, or of the `open` whose
    /// guard was dropped.
    pub location: &'static Location<'static>,
    /// How that close was made.
    pub how: CloseHow,
}

/// How a final close was made: see [`CloseSite`].
///
/// ```
/// use multiopen::{CloseHow, MultiOpen};
///
/// let db = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
/// drop(db.open()?);
/// assert_eq!(db.state().final_close.unwrap().how, CloseHow::GuardDropped);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseHow {
    /// An explicit close call (`guard.close()`, `MultiOpen::close`, ...);
    /// the location is that call's.
    Explicit,
    /// A guard went out of scope; the location is where it was opened
    /// (a `Drop` cannot know its own call site).
    GuardDropped,
}

impl fmt::Display for CloseSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.how {
            CloseHow::Explicit => write!(f, "{}", self.location),
            CloseHow::GuardDropped => {
                write!(f, "drop of the guard opened at {}", self.location)
            }
        }
    }
}

/// An operation that needs an open object found it closed.
///
/// The message names the object and, where known, where its final close
/// happened. Returned by [`MultiOpen::not_closed`](crate::MultiOpen::not_closed)
/// and inside other errors.
///
/// ```
/// use multiopen::MultiOpen;
///
/// let db = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()))
///     .with_name("db");
/// db.open()?.close()?;
/// let err = db.not_closed().unwrap_err();
/// assert!(err.to_string().starts_with("db is closed (final close at "));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedError {
    /// The object's name.
    pub name: String,
    /// Where the final close happened, if one has.
    pub final_close: Option<CloseSite>,
}

impl fmt::Display for ClosedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is closed", self.name)?;
        if let Some(site) = self.final_close {
            write!(f, " (final close at {site})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ClosedError {}

/// The object has never been opened (no startup has ever succeeded).
///
/// ```
/// use multiopen::MultiOpen;
///
/// let db = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()))
///     .with_name("db");
/// assert_eq!(db.join().unwrap_err().to_string(), "db has never been opened");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeverOpenedError {
    /// The object's name.
    pub name: String,
}

impl fmt::Display for NeverOpenedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} has never been opened", self.name)
    }
}

impl std::error::Error for NeverOpenedError {}

/// Why [`MultiOpen::open`](crate::MultiOpen::open) failed.
///
/// Either way the open count is as it was before the call.
///
/// ```
/// use multiopen::{MultiOpen, OpenError};
///
/// let db = MultiOpen::from_fns(
///     || Err::<(), _>(std::io::Error::other("no disk")),
///     |_| Ok(()),
/// );
/// match db.open() {
///     Err(OpenError::Startup(e)) => assert_eq!(e.to_string(), "no disk"),
///     other => panic!("unexpected {other:?}"),
/// }
/// assert_eq!(db.open_count(), 0);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError<E> {
    /// This call ran startup and it failed; the next opener will try again.
    Startup(E),
    /// The open count is at its limit ([`MultiOpen::MAX_OPENS`](crate::MultiOpen::MAX_OPENS)).
    TooManyOpens {
        /// The object's name.
        name: String,
    },
}

impl<E: fmt::Display> fmt::Display for OpenError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Startup(e) => write!(f, "startup failed: {e}"),
            Self::TooManyOpens { name } => write!(f, "{name} has too many opens"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for OpenError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Startup(e) => Some(e),
            Self::TooManyOpens { .. } => None,
        }
    }
}

/// Why a close failed. Except for [`Shutdown`](CloseError::Shutdown) and
/// [`NotFinal`](CloseError::NotFinal), nothing was closed.
///
/// ```
/// use multiopen::{CloseError, MultiOpen};
///
/// let db = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
/// let a = db.open()?;
/// let b = db.open()?;
/// // `a` closes, but it was not the final close: `b` is still open.
/// assert!(matches!(a.close_final(), Err(CloseError::NotFinal { still_open: 1 })));
/// drop(b);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseError<E> {
    /// This was the final close; it ran shutdown, which failed. The object
    /// is closed all the same.
    Shutdown(E),
    /// A close that had to be final was not: the close happened, and this
    /// many opens remain.
    NotFinal {
        /// Opens still held after this close.
        still_open: usize,
    },
    /// Nothing to close: the object has never been opened.
    NeverOpened(NeverOpenedError),
    /// Nothing to close: no detached open is outstanding (an extra close,
    /// the Python "UNDERFLOW CLOSE"). Opens held by guards close only
    /// through their guards.
    Unmatched(ClosedError),
}

impl<E: fmt::Display> fmt::Display for CloseError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Shutdown(e) => write!(f, "shutdown failed: {e}"),
            Self::NotFinal { still_open } => {
                write!(f, "close was not final: {still_open} open(s) remain")
            }
            Self::NeverOpened(e) => write!(f, "close: {e}"),
            Self::Unmatched(ClosedError { name, final_close }) => {
                write!(f, "extra close of {name}: no detached open to close")?;
                if let Some(site) = final_close {
                    write!(f, " (last final close at {site})")?;
                }
                Ok(())
            }
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for CloseError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Shutdown(e) => Some(e),
            Self::NeverOpened(e) => Some(e),
            Self::Unmatched(e) => Some(e),
            Self::NotFinal { .. } => None,
        }
    }
}

/// Why [`MultiOpen::check_opened`](crate::MultiOpen::check_opened) refused.
///
/// ```
/// use multiopen::{MultiOpen, NotOpenedError};
///
/// let db = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
/// assert!(matches!(db.check_opened(), Err(NotOpenedError::NeverOpened(_))));
/// db.open()?.close()?;
/// assert!(matches!(db.check_opened(), Err(NotOpenedError::Closed(_))));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotOpenedError {
    /// Not yet opened.
    NeverOpened(NeverOpenedError),
    /// Opened before, closed now.
    Closed(ClosedError),
}

impl fmt::Display for NotOpenedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NeverOpened(e) => e.fmt(f),
            Self::Closed(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for NotOpenedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::NeverOpened(e) => Some(e),
            Self::Closed(e) => Some(e),
        }
    }
}

/// Why [`MultiOpen::finalise`](crate::MultiOpen::finalise) refused.
///
/// ```
/// use multiopen::{FinaliseError, MultiOpen};
///
/// let db = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
/// db.open()?.close()?; // the final close finalises by default
/// assert!(matches!(db.finalise(), Err(FinaliseError::AlreadyFinalised { .. })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinaliseError {
    /// No startup has ever succeeded, so there is nothing to finalise.
    NeverOpened(NeverOpenedError),
    /// The current cycle has not finished shutting down yet, and every
    /// earlier one is finalised already.
    StillOpen {
        /// The object's name.
        name: String,
    },
    /// Every cycle that has shut down is finalised already (finalising twice).
    AlreadyFinalised {
        /// The object's name.
        name: String,
    },
}

impl fmt::Display for FinaliseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NeverOpened(e) => write!(f, "finalise: {e}"),
            Self::StillOpen { name } => {
                write!(
                    f,
                    "finalise: {name} is still open or shutting down, nothing to finalise"
                )
            }
            Self::AlreadyFinalised { name } => write!(f, "{name} is already finalised"),
        }
    }
}

impl std::error::Error for FinaliseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::NeverOpened(e) => Some(e),
            _ => None,
        }
    }
}
