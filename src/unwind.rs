//! Running user code (startup, shutdown, factories, hooks, callbacks) where a
//! panic must not escape the library, or must not abort the process.
//!
//! Two hazards, one place that handles them:
//! - A panic while the thread is already unwinding, escaping a destructor,
//!   aborts the process ("panic in a destructor during cleanup"). Every
//!   `Drop` that runs user code goes through [`in_cleanup`].
//! - A caught panic's payload is a user value whose own `Drop` can panic.
//!   Dropping it carelessly lets that second panic escape the library (or
//!   abort, if unwinding). Every caught payload goes through
//!   [`drop_payload`].

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The message of a caught panic: the `&str` or `String` it was raised
/// with, or a placeholder for any other payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_owned()
    }
}

/// Disposes of a caught panic payload without letting a panic from its own
/// `Drop` out: the drop runs under `catch_unwind`, and if it panics, that
/// second payload is leaked (`mem::forget`) rather than dropped, since its
/// `Drop` could panic again. A leak of one boxed value per such panic is
/// the price; only a payload whose `Drop` panics ever pays it.
pub(crate) fn drop_payload(payload: Box<dyn Any + Send>) {
    if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        std::mem::forget(again);
    }
}

/// Runs `f`, catching a panic: `Err` with its message, the payload disposed
/// of by [`drop_payload`].
pub(crate) fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let message = panic_message(&*payload);
        drop_payload(payload);
        message
    })
}

/// Runs user code `f` from a `Drop` or another cleanup path. If this thread
/// is already unwinding, a panic from `f` is caught and disposed of (a
/// second panic escaping a destructor would abort the process), and the
/// result is `None`. Otherwise `f` runs as is and its panic, if any, goes to
/// the caller as usual.
pub(crate) fn in_cleanup<T>(f: impl FnOnce() -> T) -> Option<T> {
    if std::thread::panicking() {
        catch(f).ok()
    } else {
        Some(f())
    }
}
