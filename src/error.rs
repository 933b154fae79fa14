//! The error values every misuse of the primitives turns into.
//!
//! Misuse returns one of these rather than panicking or corrupting a count.
//! Each is `std::error::Error + Send + Sync + 'static`, whatever the user's
//! error type (any `Debug + Display + Send + Sync + 'static` type:
//! `std::io::Error`, an error enum, [`BoxError`], `anyhow::Error`, even a
//! `String`), so `?` turns it into `anyhow::Error` or a `Box<dyn Error>`.
//!
//! # One rule for causes
//!
//! Every message names the object (the `MultiOpen`'s or `RunState`'s name),
//! and **each wrapper writes its direct cause into its own message; its
//! `source()` goes on with that cause's own causes** (the rule of
//! `std::io::Error`), never repeating the cause itself. Report printers
//! that walk the chain (anyhow's `{:#}`, `eyre`, a `Report`) therefore show
//! each cause exactly once:
//! `startup of db failed: No such file or directory (os error 2)`.
//!
//! How far the chain goes depends on the user's error type `E`, because
//! generic code cannot ask an arbitrary `E` for its `source()`:
//!
//! | `E` | the wrapper's message | the wrapper's `source()` |
//! |---|---|---|
//! | [`BoxError`] (what [`MultiOpen::from_dyn_fns`](crate::MultiOpen::from_dyn_fns) uses) | its message | its `source()`, and on down the chain |
//! | `std::io::Error` | its message | its `source()` |
//! | `anyhow::Error` | its whole chain, `{:#}`-style (`ctx: cause: root`) | none (the chain is already in the message) |
//! | any other type (an error enum, a `String`) | its message | none: match the variant (`OpenError::Startup { error, .. }`) and walk `error.source()` yourself |
//!
//! A user error that keeps its causes in `source()` (thiserror's `#[from]`,
//! `#[source]`) is best boxed into a [`BoxError`] (`type Error = BoxError;`
//! and `Err(e.into())`, or `?`) when the whole chain should show in reports.
//!
//! ```
//! use multiopen::{MultiOpen, OpenError};
//!
//! let db = MultiOpen::from_fns(
//!     || std::fs::File::open("/no/such/file"), // startup fails
//!     |_file| Ok(()),
//! )
//! .with_name("db");
//! let err = db.open().unwrap_err();
//! assert!(err.to_string().starts_with("startup of db failed: "));
//! assert!(std::error::Error::source(&err).is_none()); // shown once, above
//! let OpenError::Startup { error, .. } = err else { unreachable!() };
//! assert_eq!(error.kind(), std::io::ErrorKind::NotFound);
//! ```

use std::fmt;
use std::panic::Location;
use std::time::Duration;

pub use crate::run_state::error::{CallbackPanicked, Cancelled, RunStateError, WaitTimedOut};

/// A boxed error of any kind: the error type of closure-built resources that
/// do not name their own ([`MultiOpen::from_dyn_fns`](crate::MultiOpen::from_dyn_fns),
/// [`FnMultiOpen`](crate::FnMultiOpen)). `?` converts any
/// `std::error::Error + Send + Sync + 'static`, a `String`, a `&str` and an
/// `anyhow::Error` into it.
///
/// ```
/// use multiopen::BoxError;
///
/// fn parse(s: &str) -> Result<u8, BoxError> {
///     if s.is_empty() {
///         return Err("empty input".into()); // from a &str
///     }
///     Ok(s.parse()?) // from a ParseIntError
/// }
/// assert_eq!(parse("7").unwrap(), 7);
/// assert_eq!(parse("").unwrap_err().to_string(), "empty input");
/// ```
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Writes a user error inside a wrapper's message. A cause whose chain
/// [`cause_source`] continues is written with `{}`, its message alone; any
/// other with `{:#}`, so that an `anyhow::Error` writes its whole context
/// chain (there is no `source()` to continue it with), while most types
/// read as with `{}`.
pub(crate) fn write_cause<E: fmt::Display + 'static>(
    f: &mut fmt::Formatter<'_>,
    cause: &E,
) -> fmt::Result {
    if chain_continues(cause) {
        write!(f, "{cause}")
    } else {
        write!(f, "{cause:#}")
    }
}

/// Whether [`cause_source`] can reach `cause`'s own causes.
fn chain_continues<E: 'static>(cause: &E) -> bool {
    let any: &dyn std::any::Any = cause;
    any.is::<BoxError>() || any.is::<std::io::Error>()
}

/// The `source()` of a wrapper whose message already holds `cause`: the
/// cause's own source, where the concrete type lets us reach it (generic
/// code cannot ask any `E` whether it is an `Error`; see the module docs).
pub(crate) fn cause_source<E: 'static>(cause: &E) -> Option<&(dyn std::error::Error + 'static)> {
    let any: &dyn std::any::Any = cause;
    if let Some(boxed) = any.downcast_ref::<BoxError>() {
        boxed.source()
    } else if let Some(io) = any.downcast_ref::<std::io::Error>() {
        std::error::Error::source(io)
    } else {
        None
    }
}

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
    /// An opener that did not get its open (refused as
    /// [sealed](crate::MultiOpen::seal), refused for too many opens, or
    /// timed out) took back the registration it had counted for an
    /// instant, and every other open had closed meanwhile: that take-back
    /// was the final close (see [`MultiOpen::seal`](crate::MultiOpen::seal)
    /// for when this happens). The location is that open call's.
    TakenBack,
}

impl fmt::Display for CloseSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.how {
            CloseHow::Explicit => write!(f, "{}", self.location),
            CloseHow::GuardDropped => {
                write!(f, "drop of the guard opened at {}", self.location)
            }
            CloseHow::TakenBack => write!(
                f,
                "take-back by the refused or timed-out open at {}",
                self.location
            ),
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

/// Why [`MultiOpen::join`](crate::MultiOpen::join) returned without
/// waiting. Either way nothing changed.
///
/// ```
/// use multiopen::{JoinError, MultiOpen};
///
/// let db = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()))
///     .with_name("db");
/// let err = db.join().unwrap_err();
/// assert!(matches!(err, JoinError::NeverOpened(_)));
/// assert_eq!(err.to_string(), "db has never been opened");
/// let reentrant = JoinError::Reentrant { name: "db".into() };
/// assert_eq!(
///     reentrant.to_string(),
///     "join of db from inside its own startup or shutdown would wait for itself"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinError {
    /// The object has never been opened: there is no cycle to wait for.
    NeverOpened(NeverOpenedError),
    /// Called from inside the object's own startup or shutdown (in the
    /// thread running it) when it would have to wait. In shutdown, the
    /// finalise it waits for comes only after that shutdown returns. In
    /// startup, the wait is for an earlier cycle's finalise (with
    /// finalise-later, a `finalise()` call): another thread may make it, but
    /// every opener would sleep behind the waiting startup meanwhile, and if
    /// the finalise is this thread's own job it never comes; so the crate
    /// refuses rather than wait there. Join after the open instead.
    Reentrant {
        /// The object's name.
        name: String,
    },
    /// A timed join ([`try_join`](crate::MultiOpen::try_join),
    /// [`join_timeout`](crate::MultiOpen::join_timeout),
    /// [`join_deadline`](crate::MultiOpen::join_deadline)) reached its
    /// deadline before the cycle was finalised. Nothing changed; join again
    /// to keep waiting.
    ///
    /// ```
    /// use multiopen::{JoinError, MultiOpen};
    ///
    /// let db = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()))
    ///     .with_name("db");
    /// let g = db.open()?;
    /// let err = db.try_join().unwrap_err();
    /// assert!(matches!(err, JoinError::TimedOut { .. }));
    /// assert!(err.to_string().starts_with("join of db timed out after "));
    /// drop(g);
    /// db.try_join()?; // finalised now: returns at once
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    TimedOut {
        /// The object's name.
        name: String,
        /// How long the call waited (zero for a try or a past deadline).
        waited: Duration,
    },
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NeverOpened(e) => write!(f, "{e}"),
            Self::Reentrant { name } => write!(
                f,
                "join of {name} from inside its own startup or shutdown would wait for itself"
            ),
            Self::TimedOut { name, waited } => write!(
                f,
                "join of {name} timed out after {waited:?}: its cycle is not finalised yet"
            ),
        }
    }
}

/// No `source()`: a cause is written in the message (the crate's rule, see
/// the [module docs](self)).
impl std::error::Error for JoinError {}

/// Why [`MultiOpen::open`](crate::MultiOpen::open) failed.
///
/// Either way the open count is as it was before the call. The message
/// names the object and writes the startup's error after it (see the
/// [module docs](self) for the rule): `startup of db failed: no disk`.
///
/// ```
/// use multiopen::{MultiOpen, OpenError};
///
/// let db = MultiOpen::from_fns(
///     || Err::<(), _>(std::io::Error::other("no disk")),
///     |_| Ok(()),
/// )
/// .with_name("db");
/// let err = db.open().unwrap_err();
/// assert_eq!(err.to_string(), "startup of db failed: no disk");
/// match err {
///     OpenError::Startup { error, .. } => assert_eq!(error.to_string(), "no disk"),
///     other => panic!("unexpected {other:?}"),
/// }
/// assert_eq!(db.open_count(), 0);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError<E> {
    /// This call ran startup and it failed; the next opener will try again.
    Startup {
        /// The object's name.
        name: String,
        /// What startup returned.
        error: E,
    },
    /// The open count is at its limit ([`MultiOpen::MAX_OPENS`](crate::MultiOpen::MAX_OPENS)).
    TooManyOpens {
        /// The object's name.
        name: String,
    },
    /// Called from inside the object's own startup or shutdown (in the
    /// thread running it), where it would wait for itself forever. Nothing
    /// changed: the startup or shutdown goes on as if the call had not been
    /// made.
    ///
    /// ```
    /// use std::sync::{Arc, Weak};
    /// use multiopen::{FnMultiOpen, MultiOpen, OpenError};
    ///
    /// let db: Arc<FnMultiOpen<()>> = Arc::new_cyclic(|me: &Weak<FnMultiOpen<()>>| {
    ///     let me = me.clone();
    ///     MultiOpen::from_dyn_fns(
    ///         move || {
    ///             let me = me.upgrade().expect("alive");
    ///             let err = me.open().map(drop).unwrap_err();
    ///             assert!(matches!(err, OpenError::Reentrant { .. }));
    ///             Ok(())
    ///         },
    ///         |()| Ok(()),
    ///     )
    ///     .with_name("db")
    /// });
    /// let g = db.open()?; // the startup's own open was refused, not stuck
    /// assert_eq!(db.open_count(), 1);
    /// # drop(g);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    Reentrant {
        /// The object's name.
        name: String,
    },
    /// A timed open ([`try_open`](crate::MultiOpen::try_open),
    /// [`open_timeout`](crate::MultiOpen::open_timeout),
    /// [`open_deadline`](crate::MultiOpen::open_deadline) and their
    /// `_owned` forms) reached its deadline while another thread was still
    /// running the object's startup or shutdown. The call's open was taken
    /// back: the open count is as it was (if that take-back was the final
    /// close, it ran shutdown like any close, see
    /// [`with_on_shutdown_error`](crate::MultiOpen::with_on_shutdown_error)).
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiopen::OpenError;
    ///
    /// let err = OpenError::<std::io::Error>::TimedOut {
    ///     name: "db".into(),
    ///     waited: Duration::from_millis(5),
    /// };
    /// assert_eq!(
    ///     err.to_string(),
    ///     "open of db timed out after 5ms: its startup or shutdown is still running"
    /// );
    /// ```
    TimedOut {
        /// The object's name.
        name: String,
        /// How long the call waited (zero for a try or a past deadline).
        waited: Duration,
    },
    /// The object is [sealed](crate::MultiOpen::seal): it takes no new
    /// opens until [`unseal`](crate::MultiOpen::unseal). Nothing changed:
    /// the call's open was taken back at once (if that take-back was the
    /// final close, it ran shutdown like any close). Every form of open
    /// returns it, whatever the phase, and so does an opener that was
    /// waiting for a startup or shutdown when the object was sealed.
    ///
    /// ```
    /// use multiopen::{MultiOpen, OpenError};
    ///
    /// let db = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()))
    ///     .with_name("db");
    /// db.seal();
    /// let err = db.open().unwrap_err();
    /// assert!(matches!(err, OpenError::Sealed { ref name } if name == "db"));
    /// assert_eq!(err.to_string(), "open of db refused: it is sealed");
    /// ```
    Sealed {
        /// The object's name.
        name: String,
    },
}

impl<E> OpenError<E> {
    /// The startup's error, if that is what this is.
    ///
    /// ```
    /// use multiopen::MultiOpen;
    ///
    /// let db = MultiOpen::from_fns(|| Err::<(), _>("no disk".to_string()), |_| Ok(()));
    /// assert_eq!(db.open().unwrap_err().into_startup_error().as_deref(), Some("no disk"));
    /// ```
    pub fn into_startup_error(self) -> Option<E> {
        match self {
            Self::Startup { error, .. } => Some(error),
            Self::TooManyOpens { .. }
            | Self::Reentrant { .. }
            | Self::TimedOut { .. }
            | Self::Sealed { .. } => None,
        }
    }
}

impl<E: fmt::Display + 'static> fmt::Display for OpenError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Startup { name, error } => {
                write!(f, "startup of {name} failed: ")?;
                write_cause(f, error)
            }
            Self::TooManyOpens { name } => write!(f, "{name} has too many opens"),
            Self::Reentrant { name } => write!(
                f,
                "open of {name} from inside its own startup or shutdown would wait for itself"
            ),
            Self::TimedOut { name, waited } => write!(
                f,
                "open of {name} timed out after {waited:?}: its startup or shutdown is still running"
            ),
            Self::Sealed { name } => write!(f, "open of {name} refused: it is sealed"),
        }
    }
}

/// The startup's error is written in the message; `source()` goes on with
/// its own causes where they can be reached (see the [module docs](self)).
impl<E: fmt::Debug + fmt::Display + 'static> std::error::Error for OpenError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Startup { error, .. } => cause_source(error),
            _ => None,
        }
    }
}

/// Why a close failed. Except for [`Shutdown`](CloseError::Shutdown) and
/// [`NotFinal`](CloseError::NotFinal), nothing was closed.
///
/// Every message names the object; a shutdown's error is written after it
/// (see the [module docs](self) for the rule).
///
/// ```
/// use multiopen::{CloseError, MultiOpen};
///
/// let db = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()))
///     .with_name("db");
/// let a = db.open()?;
/// let b = db.open()?;
/// // `a` closes, but it was not the final close: `b` is still open.
/// let err = a.close_final().unwrap_err();
/// assert!(matches!(err, CloseError::NotFinal { still_open: 1, .. }));
/// assert_eq!(err.to_string(), "close of db was not final: 1 open(s) remain");
/// drop(b);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseError<E> {
    /// This was the final close; it ran shutdown, which failed. The object
    /// is closed all the same.
    Shutdown {
        /// The object's name.
        name: String,
        /// What shutdown returned.
        error: E,
    },
    /// A close that had to be final was not: the close happened, and this
    /// many opens remain.
    NotFinal {
        /// The object's name.
        name: String,
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

impl<E> CloseError<E> {
    /// The shutdown's error, if that is what this is.
    ///
    /// ```
    /// use multiopen::MultiOpen;
    ///
    /// let db = MultiOpen::from_fns(|| Ok(()), |()| Err("flush failed".to_string()));
    /// let err = db.open().unwrap().close().unwrap_err();
    /// assert_eq!(err.into_shutdown_error().as_deref(), Some("flush failed"));
    /// ```
    pub fn into_shutdown_error(self) -> Option<E> {
        match self {
            Self::Shutdown { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl<E: fmt::Display + 'static> fmt::Display for CloseError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Shutdown { name, error } => {
                write!(f, "shutdown of {name} failed: ")?;
                write_cause(f, error)
            }
            Self::NotFinal { name, still_open } => {
                write!(
                    f,
                    "close of {name} was not final: {still_open} open(s) remain"
                )
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

/// A shutdown's error is written in the message; `source()` goes on with
/// its own causes where they can be reached (see the [module docs](self)).
impl<E: fmt::Debug + fmt::Display + 'static> std::error::Error for CloseError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Shutdown { error, .. } => cause_source(error),
            _ => None,
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

/// No `source()`: the message is the inner error's (the crate's rule, see
/// the [module docs](self)).
impl std::error::Error for NotOpenedError {}

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

/// No `source()`: a cause is written in the message (the crate's rule, see
/// the [module docs](self)).
impl std::error::Error for FinaliseError {}
