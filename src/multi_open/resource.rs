//! What a [`MultiOpen`] runs: the [`Resource`] trait, and the two ready-made
//! resources, [`FnResource`] (a pair of closures) and [`Wrapped`] (an
//! [`Openable`] object with its own `open` and `close`).

use std::fmt;

#[cfg(doc)]
use super::MultiOpen;
use crate::error::BoxError;

/// A resource with a startup and a shutdown, to be wrapped in a [`MultiOpen`].
///
/// This one trait covers both forms of the Python `MultiOpenMixin`: separate
/// `startup` and `shutdown`, or a single `startup_shutdown` whose setup is
/// `startup` (it yields the [`Handle`](Resource::Handle)) and whose teardown
/// is `shutdown`, or just the handle's `Drop` (the default `shutdown` drops
/// it). The handle exists only while the object is open, so nothing can use
/// a shut-down resource.
///
/// `startup` and `shutdown` must not open, close or join the `MultiOpen`
/// that runs them: it is starting or shutting down at that moment, so such
/// a call would wait for itself. In the thread running them, an open
/// returns [`OpenError::Reentrant`](crate::OpenError::Reentrant) and a join
/// that would wait returns
/// [`JoinError::Reentrant`](crate::JoinError::Reentrant) at once instead,
/// and nothing changes. (Another thread that they wait for, and that opens
/// the object, still waits for them: a deadlock this crate cannot see.)
///
/// ```
/// use multiopen::{MultiOpen, Resource};
///
/// struct Database { path: &'static str }
///
/// impl Resource for Database {
///     type Handle = Vec<String>; // stands in for a real connection
///     type Error = std::io::Error;
///
///     fn startup(&self) -> Result<Self::Handle, Self::Error> {
///         Ok(vec![format!("connected to {}", self.path)])
///     }
///     // `shutdown` defaults to dropping the handle.
/// }
///
/// let db = MultiOpen::new(Database { path: "/tmp/db" });
/// let conn = db.open()?;
/// assert_eq!(conn[0], "connected to /tmp/db");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Resource: Send + Sync {
    /// What startup yields and every open shares: a connection, a worker
    /// set, a socket.
    type Handle: Send + Sync;
    /// What startup and shutdown can fail with: any `Debug + Display`
    /// type that can cross threads: an error enum, `std::io::Error`,
    /// [`BoxError`], `anyhow::Error`, a `String`. The crate's errors wrap it
    /// and write its message after their own (see [`crate::error`]).
    type Error: fmt::Debug + fmt::Display + Send + Sync + 'static;

    /// Brings the resource up. Runs on the first open of each cycle, in that
    /// opener's thread, while other openers wait.
    fn startup(&self) -> Result<Self::Handle, Self::Error>;

    /// Takes the resource down. Runs on the final close of each cycle, in
    /// that closer's thread. The default drops the handle. Its error reaches
    /// an explicit close (`guard.close()`, `MultiOpen::close`); when the
    /// final close is a guard's drop (or another close with no caller),
    /// it goes to the hook set by
    /// [`MultiOpen::with_on_shutdown_error`], if any, and is then dropped.
    ///
    /// ```
    /// use multiopen::{MultiOpen, Resource};
    ///
    /// struct Noisy;
    /// impl Resource for Noisy {
    ///     type Handle = ();
    ///     type Error = std::fmt::Error;
    ///     fn startup(&self) -> Result<(), std::fmt::Error> { Ok(()) }
    ///     fn shutdown(&self, (): ()) -> Result<(), std::fmt::Error> { Err(std::fmt::Error) }
    /// }
    ///
    /// let mo = MultiOpen::new(Noisy);
    /// assert!(mo.open().unwrap().close().is_err()); // the shutdown's error
    /// assert!(mo.closed()); // ...but closed all the same
    /// ```
    fn shutdown(&self, handle: Self::Handle) -> Result<(), Self::Error> {
        drop(handle);
        Ok(())
    }
}

/// A [`Resource`] made of a startup closure and a shutdown closure: see
/// [`MultiOpen::from_fns`] (closures of their own types, so the type cannot
/// be written down) and [`DynFnResource`] / [`FnMultiOpen`](super::FnMultiOpen) (boxed closures:
/// a type you can name in a struct field).
///
/// ```
/// use multiopen::{FnResource, MultiOpen};
///
/// let mo: MultiOpen<FnResource<_, _, u8, std::io::Error>> =
///     MultiOpen::from_fns(|| Ok(1), |_| Ok(()));
/// assert_eq!(*mo.open()?, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct FnResource<S, D, H, E> {
    pub(super) startup: S,
    pub(super) shutdown: D,
    pub(super) _types: std::marker::PhantomData<fn() -> (H, E)>,
}

impl<S, D, H, E> FnResource<S, D, H, E>
where
    S: Fn() -> Result<H, E> + Send + Sync,
    D: Fn(H) -> Result<(), E> + Send + Sync,
{
    /// A resource whose startup and shutdown are these closures; the same
    /// as what [`MultiOpen::from_fns`] wraps.
    ///
    /// ```
    /// use multiopen::{FnResource, MultiOpen};
    ///
    /// let mo = MultiOpen::new(FnResource::new(|| Ok::<_, String>(5), |_| Ok(())));
    /// assert_eq!(*mo.open()?, 5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(startup: S, shutdown: D) -> Self {
        Self {
            startup,
            shutdown,
            _types: std::marker::PhantomData,
        }
    }
}

/// A [`FnResource`] of boxed closures: a type that can be written down (in
/// a struct field, a return type), at the price of one indirect call per
/// startup and shutdown (never on open or close of an open object). The
/// error type defaults to [`BoxError`].
///
/// ```
/// use multiopen::{DynFnResource, FnMultiOpen, MultiOpen};
///
/// let typed: FnMultiOpen<u8, std::io::Error> =
///     MultiOpen::new(DynFnResource::boxed(|| Ok(1), |_| Ok(())));
/// assert_eq!(*typed.open()?, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub type DynFnResource<H, E = BoxError> = FnResource<
    Box<dyn Fn() -> Result<H, E> + Send + Sync>,
    Box<dyn Fn(H) -> Result<(), E> + Send + Sync>,
    H,
    E,
>;

impl<H, E> DynFnResource<H, E> {
    /// Boxes the two closures into a [`DynFnResource`]. The error type comes
    /// from the closures or from the type the result is given; for closures
    /// that name no error type at all, use [`MultiOpen::from_dyn_fns`].
    ///
    /// ```
    /// use multiopen::{DynFnResource, FnMultiOpen, MultiOpen};
    ///
    /// struct Service {
    ///     db: FnMultiOpen<String, std::io::Error>,
    /// }
    /// let service = Service {
    ///     db: MultiOpen::new(DynFnResource::boxed(|| Ok("conn".into()), |_| Ok(()))),
    /// };
    /// assert_eq!(*service.db.open()?, "conn");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn boxed(
        startup: impl Fn() -> Result<H, E> + Send + Sync + 'static,
        shutdown: impl Fn(H) -> Result<(), E> + Send + Sync + 'static,
    ) -> Self {
        FnResource::new(Box::new(startup), Box::new(shutdown))
    }
}

impl<S, D, H, E> Resource for FnResource<S, D, H, E>
where
    S: Fn() -> Result<H, E> + Send + Sync,
    D: Fn(H) -> Result<(), E> + Send + Sync,
    H: Send + Sync,
    E: fmt::Debug + fmt::Display + Send + Sync + 'static,
{
    type Handle = H;
    type Error = E;

    fn startup(&self) -> Result<H, E> {
        (self.startup)()
    }

    fn shutdown(&self, handle: H) -> Result<(), E> {
        (self.shutdown)(handle)
    }
}

/// An object with its own `open` and `close`, to be shared through
/// [`MultiOpen::wrap`] (the Python `MultiOpen(openable)`).
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use multiopen::{MultiOpen, Openable};
///
/// #[derive(Default)]
/// struct Port { up: AtomicBool }
///
/// impl Openable for Port {
///     type Error = std::io::Error;
///     fn open(&self) -> Result<(), Self::Error> { self.up.store(true, Ordering::SeqCst); Ok(()) }
///     fn close(&self) -> Result<(), Self::Error> { self.up.store(false, Ordering::SeqCst); Ok(()) }
/// }
///
/// let port = MultiOpen::wrap(Port::default());
/// let a = port.open()?;
/// let b = port.open()?; // already open: `Port::open` is not called again
/// assert!(port.resource().get().up.load(Ordering::SeqCst));
/// drop((a, b));
/// assert!(!port.resource().get().up.load(Ordering::SeqCst));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Openable: Send + Sync {
    /// What `open` and `close` can fail with: as for
    /// [`Resource::Error`], any `Debug + Display` type that can cross
    /// threads.
    type Error: fmt::Debug + fmt::Display + Send + Sync + 'static;
    /// Brings the object up; called by the first open of each cycle.
    fn open(&self) -> Result<(), Self::Error>;
    /// Takes the object down; called by the final close of each cycle.
    fn close(&self) -> Result<(), Self::Error>;
}

/// The [`Resource`] that [`MultiOpen::wrap`] makes of an [`Openable`].
///
/// ```
/// use multiopen::{MultiOpen, Openable};
///
/// struct Nop;
/// impl Openable for Nop {
///     type Error = std::io::Error;
///     fn open(&self) -> std::io::Result<()> { Ok(()) }
///     fn close(&self) -> std::io::Result<()> { Ok(()) }
/// }
/// let mo = MultiOpen::wrap(Nop);
/// let _nop: &Nop = mo.resource().get();
/// ```
#[derive(Debug)]
pub struct Wrapped<O>(pub(super) O);

impl<O> Wrapped<O> {
    /// The wrapped object.
    ///
    /// ```
    /// # use multiopen::{MultiOpen, Openable};
    /// # struct Nop(u8);
    /// # impl Openable for Nop {
    /// #     type Error = std::io::Error;
    /// #     fn open(&self) -> std::io::Result<()> { Ok(()) }
    /// #     fn close(&self) -> std::io::Result<()> { Ok(()) }
    /// # }
    /// assert_eq!(MultiOpen::wrap(Nop(3)).resource().get().0, 3);
    /// ```
    pub fn get(&self) -> &O {
        &self.0
    }
}

impl<O: Openable> Resource for Wrapped<O> {
    type Handle = ();
    type Error = O::Error;

    fn startup(&self) -> Result<(), O::Error> {
        self.0.open()
    }

    fn shutdown(&self, (): ()) -> Result<(), O::Error> {
        self.0.close()
    }
}
