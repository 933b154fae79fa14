//! The open guards: [`OpenGuard`] and [`OwnedOpenGuard`], the methods they
//! share, and their `Deref`, `Drop` and `Debug`.

use std::fmt;
use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::panic::Location;
use std::sync::Arc;

use super::close::CloseOutcome;
use super::resource::Resource;
use super::MultiOpen;
use crate::error::{CloseError, CloseHow, CloseSite};

/// One open of a [`MultiOpen`], closed when dropped. Dereferences to the
/// resource's handle.
///
/// Each guard is an independent sub-open: it closes exactly once, whether
/// by drop, [`close`](Self::close), [`close_final`](Self::close_final) or
/// handing its open over with [`detach`](Self::detach); a double close
/// cannot be written.
///
/// **A drop cannot return a shutdown error**: when the final close is a
/// guard's drop and shutdown returns `Err`, the error goes to the object's
/// [shutdown-error hook](MultiOpen::with_on_shutdown_error) if it has one,
/// and is then dropped (the object is closed all the same). Where the
/// caller needs the error, end the last open with [`close`](Self::close),
/// which returns it.
///
/// ```
/// use multiopen::MultiOpen;
///
/// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(String::from("h")), |_| Ok(()));
/// let g = mo.open()?;
/// assert_eq!(g.len(), 1); // Deref to the handle
/// drop(g); // the final close: shutdown runs here
/// assert!(mo.closed());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "dropping the guard closes the open at once"]
pub struct OpenGuard<'a, R: Resource> {
    pub(super) owner: &'a MultiOpen<R>,
    pub(super) opened_at: &'static Location<'static>,
}

/// An open of an `Arc<MultiOpen>`: like [`OpenGuard`], but it owns a
/// reference, so it is `'static` and can move into a spawned thread.
///
/// ```
/// use std::sync::Arc;
/// use multiopen::MultiOpen;
///
/// let mo = Arc::new(MultiOpen::from_fns(|| Ok::<_, std::io::Error>(1), |_| Ok(())));
/// let guards: Vec<_> = (0..3).map(|_| mo.open_owned()).collect::<Result<_, _>>()?;
/// let t = std::thread::spawn(move || guards.iter().map(|g| **g).sum::<i32>());
/// assert_eq!(t.join().unwrap(), 3);
/// assert!(mo.closed());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "dropping the guard closes the open at once"]
pub struct OwnedOpenGuard<R: Resource> {
    pub(super) owner: Arc<MultiOpen<R>>,
    pub(super) opened_at: &'static Location<'static>,
}

/// The methods both guard types share; `self.owner` is `&MultiOpen` in one
/// and `Arc<MultiOpen>` in the other, and auto-deref covers both.
macro_rules! guard_methods {
    () => {
        /// The `MultiOpen` this guard holds open.
        ///
        /// ```
        /// use multiopen::MultiOpen;
        /// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
        /// let g = mo.open()?;
        /// assert!(std::ptr::eq(g.multi_open(), &mo));
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        pub fn multi_open(&self) -> &MultiOpen<R> {
            &self.owner
        }

        /// Where this guard's open was made.
        ///
        /// ```
        /// use multiopen::MultiOpen;
        /// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
        /// let g = mo.open()?;
        /// assert_eq!(g.opened_at().file(), file!());
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        pub fn opened_at(&self) -> &'static Location<'static> {
            self.opened_at
        }

        /// Closes now and reports what happened: the final close runs
        /// shutdown and returns its result.
        ///
        /// ```
        /// use multiopen::{CloseOutcome, MultiOpen};
        /// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
        /// assert_eq!(mo.open()?.close()?, CloseOutcome::ShutDown);
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        #[track_caller]
        pub fn close(self) -> Result<CloseOutcome, CloseError<R::Error>> {
            self.close_with_options(false)
        }

        /// Closes now, and errors with [`CloseError::NotFinal`] if this was
        /// not the final close (the Python `enforce_final_close`). The close
        /// happens either way; nothing is closed twice.
        ///
        /// ```
        /// use multiopen::{CloseError, MultiOpen};
        /// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
        /// let a = mo.open()?;
        /// let b = mo.open()?;
        /// assert!(matches!(a.close_final(), Err(CloseError::NotFinal { still_open: 1, .. })));
        /// assert!(b.close_final().is_ok());
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        #[track_caller]
        pub fn close_final(self) -> Result<CloseOutcome, CloseError<R::Error>> {
            self.close_with_options(true)
        }

        #[track_caller]
        fn close_with_options(
            self,
            enforce_final_close: bool,
        ) -> Result<CloseOutcome, CloseError<R::Error>> {
            let site = CloseSite {
                location: Location::caller(),
                how: CloseHow::Explicit,
            };
            let this = ManuallyDrop::new(self);
            // SAFETY: `this` is never used or dropped again, so the owner
            // (a `&` or an `Arc`) moves out exactly once and is dropped
            // after the close, releasing an `Arc`'s reference.
            let owner = unsafe { std::ptr::read(&this.owner) };
            owner.release_with_options(site, enforce_final_close)
        }
    };
}

impl<'a, R: Resource> OpenGuard<'a, R> {
    guard_methods!();

    /// Gives up the guard but keeps the open: the object stays open until
    /// some thread calls [`MultiOpen::close`] (Python-style open here, close
    /// there).
    ///
    /// ```
    /// use multiopen::MultiOpen;
    /// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
    /// mo.open()?.detach();
    /// assert!(mo.is_open());
    /// mo.close()?;
    /// assert!(mo.closed());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn detach(self) -> &'a MultiOpen<R> {
        let this = ManuallyDrop::new(self);
        this.owner.detach_one();
        this.owner
    }
}

impl<R: Resource> OwnedOpenGuard<R> {
    guard_methods!();

    /// Gives up the guard but keeps the open, returning the `Arc`: see
    /// [`OpenGuard::detach`].
    ///
    /// ```
    /// use std::sync::Arc;
    /// use multiopen::MultiOpen;
    /// let mo = Arc::new(MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(())));
    /// let same = mo.open_owned()?.detach();
    /// same.close()?;
    /// assert!(mo.closed());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn detach(self) -> Arc<MultiOpen<R>> {
        let this = ManuallyDrop::new(self);
        this.owner.detach_one();
        // SAFETY: `this` is never used or dropped again, so moving the Arc
        // out of it transfers the reference exactly once.
        unsafe { std::ptr::read(&this.owner) }
    }
}

impl<R: Resource> Deref for OpenGuard<'_, R> {
    type Target = R::Handle;

    #[inline]
    fn deref(&self) -> &R::Handle {
        // SAFETY: this guard holds an open.
        unsafe { self.owner.handle_ref() }
    }
}

impl<R: Resource> Deref for OwnedOpenGuard<R> {
    type Target = R::Handle;

    #[inline]
    fn deref(&self) -> &R::Handle {
        // SAFETY: this guard holds an open.
        unsafe { self.owner.handle_ref() }
    }
}

impl<R: Resource> Drop for OpenGuard<'_, R> {
    #[inline]
    fn drop(&mut self) {
        self.owner.release_on_drop(self.opened_at);
    }
}

impl<R: Resource> Drop for OwnedOpenGuard<R> {
    #[inline]
    fn drop(&mut self) {
        self.owner.release_on_drop(self.opened_at);
    }
}

impl<R: Resource> fmt::Debug for OpenGuard<'_, R>
where
    R::Handle: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenGuard")
            .field("name", &self.owner.name)
            .field("handle", &**self)
            .field("opened_at", &self.opened_at)
            .finish()
    }
}

impl<R: Resource> fmt::Debug for OwnedOpenGuard<R>
where
    R::Handle: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedOpenGuard")
            .field("name", &self.owner.name)
            .field("handle", &**self)
            .field("opened_at", &self.opened_at)
            .finish()
    }
}
