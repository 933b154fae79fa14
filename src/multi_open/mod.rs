//! [`MultiOpen`]: one shared resource, opened and closed by many threads.
//!
//! The first `open` runs the resource's startup, the last close runs its
//! shutdown, [`join`](MultiOpen::join) waits for that shutdown to be
//! finalised, and the whole cycle can repeat. Opening or closing an object
//! that is already open is one atomic read-modify-write, with no lock and no
//! system call; a thread blocks (on a futex) only when it must wait for
//! another thread's startup or shutdown, or in `join`.
//!
//! ```
//! use std::sync::Arc;
//! use multiopen::MultiOpen;
//!
//! // A "connection" that is set up by the first user and torn down by the last.
//! let db = Arc::new(MultiOpen::from_fns(
//!     || Ok::<_, std::io::Error>(String::from("connection")),
//!     |conn| { drop(conn); Ok(()) },
//! ));
//! let workers: Vec<_> = (0..4)
//!     .map(|_| {
//!         let conn = db.open_owned().expect("startup works");
//!         std::thread::spawn(move || assert_eq!(*conn, "connection"))
//!     })
//!     .collect();
//! for w in workers {
//!     w.join().unwrap();
//! }
//! db.join()?; // every guard is gone: the last close shut it down
//! assert!(db.closed());
//! # Ok::<(), multiopen::NeverOpenedError>(())
//! ```
//!
//! # The cycle
//!
//! `Idle → Starting → Open → ShuttingDown → Idle → …`. Exactly one thread runs
//! startup (the opener that found the object idle) and exactly one runs
//! shutdown (the close that brought the count to zero). An opener that
//! arrives during startup or shutdown sleeps until it ends, then takes part
//! in the new state: it is granted the open, or (after a shutdown or a failed
//! startup) runs startup itself. Each successful startup begins a new
//! *cycle*; each shutdown ends one and, unless finalise-later is set,
//! *finalises* it, releasing the cycle's joiners.
//!
//! A re-open that comes after the final close but before a pending
//! finalise (finalise-later) starts a new cycle at once; the old cycle's
//! joiners stay waiting for the old cycle's finalise, and `finalise()`
//! releases them without touching the new cycle. (The Python original
//! replaced the condition and stranded them.)

use std::borrow::Cow;
use std::fmt;
use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::panic::Location;
use std::sync::Arc;

use crossbeam_utils::CachePadded;

use crate::error::{
    CloseError, CloseHow, CloseSite, ClosedError, FinaliseError, NeverOpenedError, NotOpenedError,
    OpenError,
};
use crate::sync::{
    mutant, ordering_unless, AtomicPtr, AtomicU32, AtomicUsize, Futex, Ordering, UnsafeCell,
};

// ---------------------------------------------------------------------------
// The state word (`MultiOpen::state`, a futex word)
//
//   bit 31      30          29 28    27 .. 0
//   WAITERS     EVER_OPENED PHASE    COUNT
//
// COUNT (bits 0..=27): opens registered: every open currently held (by a
//   guard or detached) plus every opener between its increment and its
//   return. In the Open phase it changes only by the fast-path fetch_add /
//   fetch_sub. An opener whose fetch_add finds the count at or past
//   COUNT_LIMIT (bit 27) takes its increment back and fails, so the count
//   never carries into PHASE: a carry would need 2^27 openers in flight
//   between their increment and its undo at once.
// PHASE (bits 28..=29): IDLE, STARTING, OPEN or SHUTTING_DOWN, below.
// EVER_OPENED (bit 30): set by the first successful startup, never cleared.
// WAITERS (bit 31): some thread sleeps (or is about to) on this word waiting
//   for STARTING or SHUTTING_DOWN to end; whoever ends that phase clears the
//   bit and, only if it was set, wakes all sleepers.
// ---------------------------------------------------------------------------

/// Mask of the open count.
const COUNT_MASK: u32 = (1 << 28) - 1;
/// The open count may not reach this value: an open that would is refused.
const COUNT_LIMIT: u32 = 1 << 27;
/// Mask of the phase.
const PHASE_MASK: u32 = 0b11 << 28;
/// No resource: never started, or shut down. The next opener runs startup.
const IDLE: u32 = 0;
/// One thread runs startup and owns the handle cell; openers sleep.
const STARTING: u32 = 1 << 28;
/// The handle is up and shared read-only by every open; opens and closes
/// are plain count changes.
const OPEN: u32 = 2 << 28;
/// One thread (the final close) runs shutdown and owns the handle cell;
/// openers sleep.
const SHUTTING_DOWN: u32 = 3 << 28;
/// A startup has succeeded at least once.
const EVER_OPENED: u32 = 1 << 30;
/// Someone sleeps on the state word.
const WAITERS: u32 = 1 << 31;

// ---------------------------------------------------------------------------
// The finalise word (`MultiOpen::finalised`, a futex word)
//
//   bits 31 .. 1: FINALISED, the number of cycles finalised (mod 2^31)
//   bit 0:        JOIN_WAITERS, some joiner sleeps on this word
// ---------------------------------------------------------------------------

/// Some joiner sleeps on the finalise word.
const JOIN_WAITERS: u32 = 1;
/// Cycle numbers are kept mod 2^31 (they live in bits 1..=31).
const CYCLE_MASK: u32 = u32::MAX >> 1;

/// Has cycle counter `done` (mod 2^31) reached `target`?
fn cycle_reached(done: u32, target: u32) -> bool {
    done.wrapping_sub(target) & CYCLE_MASK < (1 << 30)
}

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
/// a call would wait for itself.
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
    /// What startup and shutdown can fail with.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Brings the resource up. Runs on the first open of each cycle, in that
    /// opener's thread, while other openers wait.
    fn startup(&self) -> Result<Self::Handle, Self::Error>;

    /// Takes the resource down. Runs on the final close of each cycle, in
    /// that closer's thread. The default drops the handle.
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
/// [`MultiOpen::from_fns`].
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
    startup: S,
    shutdown: D,
    _types: std::marker::PhantomData<fn() -> (H, E)>,
}

impl<S, D, H, E> Resource for FnResource<S, D, H, E>
where
    S: Fn() -> Result<H, E> + Send + Sync,
    D: Fn(H) -> Result<(), E> + Send + Sync,
    H: Send + Sync,
    E: std::error::Error + Send + Sync + 'static,
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
    /// What `open` and `close` can fail with.
    type Error: std::error::Error + Send + Sync + 'static;
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
pub struct Wrapped<O>(O);

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

/// What a successful close did.
///
/// ```
/// use multiopen::{CloseOutcome, MultiOpen};
///
/// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
/// let (a, b) = (mo.open()?, mo.open()?);
/// assert_eq!(a.close()?, CloseOutcome::StillOpen);
/// assert_eq!(b.close()?, CloseOutcome::ShutDown);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseOutcome {
    /// Other opens remain; nothing else happened.
    StillOpen,
    /// This was the final close: shutdown ran and succeeded.
    ShutDown,
    /// Nothing was open to close, and the caller said that was fine
    /// ([`CloseOptions::unopened_ok`]).
    NothingOpen,
    /// This close brought the count to zero, but so did another close at
    /// nearly the same moment (a re-open and re-close slipped in between),
    /// and that close ran the shutdown (or is running it). This close was
    /// final all the same: [`close_final`](OpenGuard::close_final) does not
    /// reject it. Exactly one close per cycle reports
    /// [`ShutDown`](CloseOutcome::ShutDown) or a shutdown error.
    ShutDownByOther,
}

/// Options for [`MultiOpen::close_with`], after the Python
/// `close(enforce_final_close, caller_frame, unopened_ok)`; the caller's
/// location is taken by `#[track_caller]`.
///
/// ```
/// use multiopen::{CloseOptions, CloseOutcome, MultiOpen};
///
/// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
/// let quiet = CloseOptions::new().unopened_ok(true);
/// assert_eq!(mo.close_with(quiet)?, CloseOutcome::NothingOpen);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CloseOptions {
    enforce_final_close: bool,
    unopened_ok: bool,
}

impl CloseOptions {
    /// No options: like [`MultiOpen::close`].
    ///
    /// ```
    /// assert_eq!(multiopen::CloseOptions::new(), Default::default());
    /// ```
    pub const fn new() -> Self {
        Self {
            enforce_final_close: false,
            unopened_ok: false,
        }
    }

    /// The close must be the final one, or it returns
    /// [`CloseError::NotFinal`] (after closing all the same).
    ///
    /// ```
    /// use multiopen::{CloseError, CloseOptions, MultiOpen};
    ///
    /// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
    /// let held = mo.open()?;
    /// mo.open()?.detach();
    /// let must_be_final = CloseOptions::new().enforce_final_close(true);
    /// assert!(matches!(mo.close_with(must_be_final), Err(CloseError::NotFinal { still_open: 1 })));
    /// # drop(held);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub const fn enforce_final_close(mut self, yes: bool) -> Self {
        self.enforce_final_close = yes;
        self
    }

    /// Closing with nothing to close is not an error: it returns
    /// [`CloseOutcome::NothingOpen`]. For cleanup paths that may run even
    /// when the matching open never happened.
    ///
    /// ```
    /// use multiopen::{CloseOptions, MultiOpen};
    ///
    /// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
    /// assert!(mo.close().is_err());
    /// assert!(mo.close_with(CloseOptions::new().unopened_ok(true)).is_ok());
    /// ```
    pub const fn unopened_ok(mut self, yes: bool) -> Self {
        self.unopened_ok = yes;
        self
    }
}

/// Where a [`MultiOpen`] is in its cycle: see [`MultiOpenState`].
///
/// ```
/// use multiopen::{MultiOpen, Phase};
///
/// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
/// assert_eq!(mo.state().phase, Phase::NeverOpened);
/// let g = mo.open()?;
/// assert_eq!(mo.state().phase, Phase::Open);
/// drop(g);
/// assert_eq!(mo.state().phase, Phase::Closed);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No startup has succeeded yet.
    NeverOpened,
    /// A thread is running startup.
    Starting,
    /// Up: opens and closes are plain count changes.
    Open,
    /// The final close is running shutdown.
    ShuttingDown,
    /// Shut down; the next open starts a new cycle.
    Closed,
}

/// A snapshot of a [`MultiOpen`] (the Python `tcm_get_state`).
///
/// `phase` and `open_count` come from one load of the state word, so they
/// agree; the other fields are read just after it.
///
/// ```
/// use multiopen::MultiOpen;
///
/// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
/// let _a = mo.open()?;
/// let _b = mo.open()?;
/// let s = mo.state();
/// assert_eq!((s.open_count, s.cycle), (2, 1));
/// println!("{s:?}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MultiOpenState {
    /// Where the object is in its cycle.
    pub phase: Phase,
    /// Opens registered: held opens, plus openers in flight or waiting for
    /// a startup or shutdown to end.
    pub open_count: usize,
    /// Successful startups so far (mod 2^31): the number of the current or
    /// last cycle; 0 if never opened.
    pub cycle: u32,
    /// Opens detached from their guards and not yet closed.
    pub detached: usize,
    /// Where the last final close happened, if any.
    pub final_close: Option<CloseSite>,
}

/// A shared resource that many threads open and close in overlapping
/// fashion: the first open runs startup, the last close runs shutdown.
///
/// See the [module documentation](crate::multi_open) for the cycle.
///
/// # Costs
/// `open` and closing a guard on an object that is already open: one atomic
/// read-modify-write each, no lock, no system call. The final close runs
/// shutdown in the closing thread; a futex wake is issued only if some
/// thread sleeps.
///
/// ```
/// use multiopen::MultiOpen;
///
/// let counter = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(0u64), |_| Ok(()));
/// {
///     let g = counter.open()?;
///     assert_eq!(*g, 0);
///     assert!(counter.is_open());
/// }
/// assert!(counter.closed());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct MultiOpen<R: Resource> {
    /// The state word: see the layout at the top of this file. Padded so
    /// the count's cache line is not shared with the read-mostly fields.
    state: CachePadded<Futex>,
    /// The handle: written only in STARTING by the starter, taken only in
    /// SHUTTING_DOWN by the shutter, and read shared only in OPEN by
    /// holders of an open.
    handle: UnsafeCell<Option<R::Handle>>,
    /// The finalise word: see its layout at the top of this file.
    finalised: Futex,
    /// Successful startups (the current cycle number); written only by the
    /// starter.
    cycles: AtomicU32,
    /// Shutdowns run; written only by the shutter.
    shutdowns: AtomicU32,
    /// Opens detached from their guards, to be closed by `MultiOpen::close`.
    detached: AtomicUsize,
    /// Nonzero: the final close does not finalise; `finalise()` must.
    finalise_later: AtomicU32,
    /// The last final close's location, tagged in bit 0 with
    /// [`CloseHow::GuardDropped`]; null if none yet.
    final_close: AtomicPtr<Location<'static>>,
    name: Cow<'static, str>,
    resource: R,
}

// SAFETY: the handle cell is shared between threads only as the phase
// protocol above allows: mutated by the one starter or shutter (whose
// transitions carry Acquire/Release), and read through `&` only while the
// reader holds an open in OPEN. `Resource` requires `R` and its handle to be
// `Send + Sync`, so moving the handle to the shutter and sharing `&Handle`
// are sound.
unsafe impl<R: Resource> Sync for MultiOpen<R> {}

impl<S, D, H, E> MultiOpen<FnResource<S, D, H, E>>
where
    S: Fn() -> Result<H, E> + Send + Sync,
    D: Fn(H) -> Result<(), E> + Send + Sync,
    H: Send + Sync,
    E: std::error::Error + Send + Sync + 'static,
{
    /// A `MultiOpen` whose startup and shutdown are closures (the Python
    /// `MultiOpen` for a pair of callables).
    ///
    /// ```
    /// use multiopen::MultiOpen;
    ///
    /// let mo = MultiOpen::from_fns(
    ///     || Ok::<_, std::io::Error>(vec![1, 2, 3]),
    ///     |v| { assert_eq!(v.len(), 3); Ok(()) },
    /// );
    /// assert_eq!(mo.open()?.len(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_fns(startup: S, shutdown: D) -> Self {
        Self::new(FnResource {
            startup,
            shutdown,
            _types: std::marker::PhantomData,
        })
    }
}

impl<O: Openable> MultiOpen<Wrapped<O>> {
    /// A `MultiOpen` around an object with its own `open`/`close`: the
    /// first open calls `O::open`, the final close calls `O::close`.
    /// Reach the object with `resource().get()`.
    ///
    /// ```
    /// use multiopen::{MultiOpen, Openable};
    ///
    /// struct File;
    /// impl Openable for File {
    ///     type Error = std::io::Error;
    ///     fn open(&self) -> std::io::Result<()> { Ok(()) }
    ///     fn close(&self) -> std::io::Result<()> { Ok(()) }
    /// }
    /// let f = MultiOpen::wrap(File);
    /// f.open()?.close()?;
    /// assert!(f.closed());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wrap(openable: O) -> Self {
        Self::new(Wrapped(openable))
    }
}

impl<R: Resource> MultiOpen<R> {
    /// The most opens that can be held at once (2^27); one more is
    /// refused with [`OpenError::TooManyOpens`].
    ///
    /// ```
    /// use multiopen::MultiOpen;
    /// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
    /// fn max_opens<R: multiopen::Resource>(_: &MultiOpen<R>) -> usize { MultiOpen::<R>::MAX_OPENS }
    /// assert_eq!(max_opens(&mo), 1 << 27);
    /// ```
    pub const MAX_OPENS: usize = COUNT_LIMIT as usize;

    /// Wraps `resource`; nothing runs until the first open. The name (for
    /// error messages) defaults to the resource's type name.
    ///
    /// ```
    /// use multiopen::{MultiOpen, Resource};
    ///
    /// struct Config;
    /// impl Resource for Config {
    ///     type Handle = &'static str;
    ///     type Error = std::io::Error;
    ///     fn startup(&self) -> std::io::Result<&'static str> { Ok("loaded") }
    /// }
    /// let cfg = MultiOpen::new(Config);
    /// assert!(!cfg.closed() && !cfg.is_open());
    /// assert!(cfg.name().ends_with("Config"));
    /// ```
    pub fn new(resource: R) -> Self {
        Self {
            state: CachePadded::new(Futex::new(IDLE)),
            handle: UnsafeCell::new(None),
            finalised: Futex::new(0),
            cycles: AtomicU32::new(0),
            shutdowns: AtomicU32::new(0),
            detached: AtomicUsize::new(0),
            finalise_later: AtomicU32::new(0),
            final_close: AtomicPtr::new(std::ptr::null_mut()),
            name: Cow::Borrowed(std::any::type_name::<R>()),
            resource,
        }
    }

    /// Names the object, for error messages and `Debug`.
    ///
    /// ```
    /// use multiopen::MultiOpen;
    /// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(())).with_name("cache");
    /// assert_eq!(mo.name(), "cache");
    /// ```
    pub fn with_name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Chooses finalise-later at construction: see
    /// [`set_finalise_later`](Self::set_finalise_later).
    ///
    /// ```
    /// use multiopen::MultiOpen;
    /// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()))
    ///     .with_finalise_later(true);
    /// assert!(mo.finalise_later());
    /// ```
    pub fn with_finalise_later(self, later: bool) -> Self {
        self.set_finalise_later(later);
        self
    }

    /// If `later`, a final close no longer finalises: joiners stay blocked
    /// until someone calls [`finalise`](Self::finalise). Takes effect from
    /// the next final close.
    ///
    /// ```
    /// use multiopen::MultiOpen;
    /// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
    /// mo.set_finalise_later(true);
    /// mo.open()?.close()?;
    /// mo.finalise()?; // now joiners are released
    /// mo.join()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_finalise_later(&self, later: bool) {
        // Relaxed: a configuration flag; the final close reads whatever was
        // last set before it, and no other data hangs on it.
        self.finalise_later
            .store(u32::from(later), Ordering::Relaxed);
    }

    /// Is finalise-later set?
    ///
    /// ```
    /// use multiopen::MultiOpen;
    /// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
    /// assert!(!mo.finalise_later());
    /// ```
    pub fn finalise_later(&self) -> bool {
        // Relaxed: see `set_finalise_later`.
        self.finalise_later.load(Ordering::Relaxed) != 0
    }

    /// The object's name.
    ///
    /// ```
    /// use multiopen::MultiOpen;
    /// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(())).with_name("db");
    /// assert_eq!(mo.name(), "db");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The wrapped resource (its configuration; the live handle is reached
    /// through an open guard).
    ///
    /// ```
    /// use multiopen::{MultiOpen, Resource};
    /// struct Db { url: &'static str }
    /// impl Resource for Db {
    ///     type Handle = ();
    ///     type Error = std::io::Error;
    ///     fn startup(&self) -> std::io::Result<()> { Ok(()) }
    /// }
    /// assert_eq!(MultiOpen::new(Db { url: "x" }).resource().url, "x");
    /// ```
    pub fn resource(&self) -> &R {
        &self.resource
    }

    /// Opens: the first open of a cycle runs startup in this thread; every
    /// other opener returns once the handle is up. Dropping the guard closes.
    ///
    /// Cost: on an open object, one `fetch_add`. Blocks (on a futex) while
    /// another thread runs startup or shutdown. If this call runs startup
    /// and it fails, the count is left as it was and the error is returned;
    /// if it panics, the panic propagates after the same clean-up. Either
    /// way a waiting opener then tries startup itself.
    ///
    /// ```
    /// use multiopen::MultiOpen;
    ///
    /// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>("up"), |_| Ok(()));
    /// let g = mo.open()?;
    /// assert_eq!(*g, "up");
    /// assert_eq!(mo.open_count(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    #[inline]
    pub fn open(&self) -> Result<OpenGuard<'_, R>, OpenError<R::Error>> {
        self.acquire()?;
        Ok(OpenGuard {
            owner: self,
            opened_at: Location::caller(),
        })
    }

    /// Like [`open`](Self::open), for an `Arc<MultiOpen>`: the guard owns a
    /// reference, so it can move into a spawned thread.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use multiopen::MultiOpen;
    ///
    /// let mo = Arc::new(MultiOpen::from_fns(|| Ok::<_, std::io::Error>(5), |_| Ok(())));
    /// let g = mo.open_owned()?;
    /// std::thread::spawn(move || assert_eq!(*g, 5)).join().unwrap();
    /// assert!(mo.closed());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    #[inline]
    pub fn open_owned(self: &Arc<Self>) -> Result<OwnedOpenGuard<R>, OpenError<R::Error>> {
        self.acquire()?;
        Ok(OwnedOpenGuard {
            owner: Arc::clone(self),
            opened_at: Location::caller(),
        })
    }

    /// Closes one open that was [detached](OpenGuard::detach) from its guard
    /// (Python-style code that opens in one place and closes in another).
    /// The final close runs shutdown here and returns its result.
    ///
    /// With no detached open outstanding this is an extra close: an error
    /// that names where the last final close happened, and nothing changes.
    ///
    /// ```
    /// use multiopen::{CloseError, CloseOutcome, MultiOpen};
    ///
    /// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
    /// mo.open()?.detach();
    /// assert_eq!(mo.close()?, CloseOutcome::ShutDown);
    /// assert!(matches!(mo.close(), Err(CloseError::Unmatched(_))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    pub fn close(&self) -> Result<CloseOutcome, CloseError<R::Error>> {
        self.close_with(CloseOptions::new())
    }

    /// [`close`](Self::close) with [`CloseOptions`]: require the close to be
    /// final, or accept that nothing is open.
    ///
    /// ```
    /// use multiopen::{CloseOptions, CloseOutcome, MultiOpen};
    ///
    /// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
    /// mo.open()?.detach();
    /// let last = CloseOptions::new().enforce_final_close(true);
    /// assert_eq!(mo.close_with(last)?, CloseOutcome::ShutDown);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    pub fn close_with(&self, options: CloseOptions) -> Result<CloseOutcome, CloseError<R::Error>> {
        let site = CloseSite {
            location: Location::caller(),
            how: CloseHow::Explicit,
        };
        // Relaxed: only a first guess for the CAS below.
        let mut detached = self.detached.load(Ordering::Relaxed);
        loop {
            if detached == 0 {
                if options.unopened_ok {
                    return Ok(CloseOutcome::NothingOpen);
                }
                if !self.ever_opened() {
                    return Err(CloseError::NeverOpened(self.never_opened_error()));
                }
                return Err(CloseError::Unmatched(self.closed_error()));
            }
            // Acquire: pairs with `detach`'s Release, so the detaching
            // thread's use of the handle happens before our close (and so
            // before any shutdown it triggers).
            match self.detached.compare_exchange_weak(
                detached,
                detached - 1,
                ordering_unless("multi_open::detach_relaxed", Ordering::Acquire),
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => detached = now,
            }
        }
        self.release_with_options(site, options.enforce_final_close)
    }

    /// Blocks until the current cycle is finalised: at once if it already
    /// is, else until its final close (or, with finalise-later, a
    /// [`finalise`](Self::finalise) call). Sleeps on a futex.
    ///
    /// Never hangs on misuse: an object that was never opened is an error.
    /// Like joining one's own thread, joining while this thread holds an
    /// open of the same object waits forever: close first.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use multiopen::MultiOpen;
    ///
    /// let mo = Arc::new(MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(())));
    /// assert!(mo.join().is_err()); // never opened: an error, not a hang
    /// let g = mo.open_owned()?;
    /// let closer = std::thread::spawn(move || drop(g));
    /// mo.join()?; // returns once the other thread's close shut it down
    /// assert!(mo.closed());
    /// closer.join().unwrap();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn join(&self) -> Result<(), NeverOpenedError> {
        // Acquire: pairs with the Release that set EVER_OPENED, which the
        // starter made after counting its cycle, so `cycles` below is at
        // least that cycle.
        if self.state.load(Ordering::Acquire) & EVER_OPENED == 0 {
            return Err(self.never_opened_error());
        }
        // Relaxed: ordered after the Acquire above; a later cycle seen here
        // is fine too (it is the current one).
        let target = self.cycles.load(Ordering::Relaxed) & CYCLE_MASK;
        // Acquire: pairs with `finalise`'s Release, so the joiner sees
        // everything the shutdown did.
        let mut word = self.finalised.load(Ordering::Acquire);
        loop {
            if cycle_reached(word >> 1, target) {
                return Ok(());
            }
            if word & JOIN_WAITERS == 0 {
                // Relaxed: only announces a sleeper; the finaliser's swap
                // reads it in the same modification order.
                if let Err(now) = self.finalised.compare_exchange_weak(
                    word,
                    word | JOIN_WAITERS,
                    Ordering::Relaxed,
                    Ordering::Acquire,
                ) {
                    word = now;
                    continue;
                }
                word |= JOIN_WAITERS;
            }
            self.finalised.wait(word);
            // Acquire: as above.
            word = self.finalised.load(Ordering::Acquire);
        }
    }

    /// Finalises every cycle that has shut down and is not yet finalised,
    /// releasing their joiners. The final close does this itself unless
    /// finalise-later is set. Finalising when there is nothing to finalise
    /// (twice, before any close, or never opened) is an error.
    ///
    /// ```
    /// use multiopen::{FinaliseError, MultiOpen};
    ///
    /// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()))
    ///     .with_finalise_later(true);
    /// let g = mo.open()?;
    /// assert!(matches!(mo.finalise(), Err(FinaliseError::StillOpen { .. })));
    /// drop(g);
    /// mo.finalise()?;
    /// assert!(matches!(mo.finalise(), Err(FinaliseError::AlreadyFinalised { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn finalise(&self) -> Result<(), FinaliseError> {
        if self.finalise_pending() {
            return Ok(());
        }
        // Relaxed: only chooses the error message.
        let state = self.state.load(Ordering::Relaxed);
        Err(if state & EVER_OPENED == 0 {
            FinaliseError::NeverOpened(self.never_opened_error())
        } else if state & PHASE_MASK != IDLE {
            FinaliseError::StillOpen {
                name: self.name.to_string(),
            }
        } else {
            FinaliseError::AlreadyFinalised {
                name: self.name.to_string(),
            }
        })
    }

    /// True once opened and closed again: from the start of the final
    /// close's shutdown until a re-open's startup begins. False if never
    /// opened. One atomic load.
    ///
    /// ```
    /// use multiopen::MultiOpen;
    /// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
    /// assert!(!mo.closed());
    /// drop(mo.open()?);
    /// assert!(mo.closed());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn closed(&self) -> bool {
        // Relaxed: a point-in-time query; it guards no data.
        let state = self.state.load(Ordering::Relaxed);
        state & EVER_OPENED != 0 && matches!(state & PHASE_MASK, IDLE | SHUTTING_DOWN)
    }

    /// Is the resource up (startup done, final close not begun)? One load.
    ///
    /// ```
    /// use multiopen::MultiOpen;
    /// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
    /// let g = mo.open()?;
    /// assert!(mo.is_open());
    /// drop(g);
    /// assert!(!mo.is_open());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn is_open(&self) -> bool {
        // Relaxed: a point-in-time query; it guards no data.
        self.state.load(Ordering::Relaxed) & PHASE_MASK == OPEN
    }

    /// Opens registered now: held opens, plus openers in flight or waiting
    /// for a startup or shutdown. One load.
    ///
    /// ```
    /// use multiopen::MultiOpen;
    /// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
    /// let (_a, _b) = (mo.open()?, mo.open()?);
    /// assert_eq!(mo.open_count(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn open_count(&self) -> usize {
        // Relaxed: a point-in-time query; it guards no data.
        (self.state.load(Ordering::Relaxed) & COUNT_MASK) as usize
    }

    /// A snapshot for debugging and monitoring (the Python `tcm_get_state`).
    ///
    /// ```
    /// use multiopen::{MultiOpen, Phase};
    /// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
    /// assert_eq!(mo.state().phase, Phase::NeverOpened);
    /// assert_eq!(mo.state().final_close, None);
    /// ```
    pub fn state(&self) -> MultiOpenState {
        // Relaxed (all): a diagnostic snapshot; it guards no data.
        let state = self.state.load(Ordering::Relaxed);
        let phase = match state & PHASE_MASK {
            STARTING => Phase::Starting,
            OPEN => Phase::Open,
            SHUTTING_DOWN => Phase::ShuttingDown,
            _ if state & EVER_OPENED != 0 => Phase::Closed,
            _ => Phase::NeverOpened,
        };
        MultiOpenState {
            phase,
            open_count: (state & COUNT_MASK) as usize,
            cycle: self.cycles.load(Ordering::Relaxed) & CYCLE_MASK,
            detached: self.detached.load(Ordering::Relaxed),
            final_close: self.final_close_site(),
        }
    }

    /// `Err(ClosedError)` if the object is [closed](Self::closed), for
    /// methods that must not run on a closed object (the Python
    /// `@not_closed` decorator). A never-opened object is not closed.
    ///
    /// ```
    /// use multiopen::{ClosedError, MultiOpen};
    ///
    /// struct Store { inner: MultiOpen<multiopen::FnResource<
    ///     fn() -> std::io::Result<()>, fn(()) -> std::io::Result<()>, (), std::io::Error>> }
    /// impl Store {
    ///     fn put(&self) -> Result<(), ClosedError> {
    ///         self.inner.not_closed()?;
    ///         Ok(())
    ///     }
    /// }
    /// let s = Store { inner: MultiOpen::from_fns(|| Ok(()), |_| Ok(())) };
    /// assert!(s.put().is_ok());
    /// drop(s.inner.open().unwrap());
    /// assert!(s.put().is_err());
    /// ```
    #[inline]
    pub fn not_closed(&self) -> Result<(), ClosedError> {
        if self.closed() {
            return Err(self.closed_error());
        }
        Ok(())
    }

    /// `Ok` only while the object is open (the Python `@is_opened`
    /// decorator): errors "never opened" or "closed (final close at …)".
    ///
    /// ```
    /// use multiopen::MultiOpen;
    /// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
    /// assert!(mo.check_opened().is_err());
    /// let g = mo.open()?;
    /// assert!(mo.check_opened().is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn check_opened(&self) -> Result<(), NotOpenedError> {
        if self.is_open() {
            Ok(())
        } else if self.ever_opened() {
            Err(NotOpenedError::Closed(self.closed_error()))
        } else {
            Err(NotOpenedError::NeverOpened(self.never_opened_error()))
        }
    }

    // ----- the open path -----

    /// Registers one open and returns once the handle is up.
    #[inline]
    #[track_caller]
    fn acquire(&self) -> Result<(), OpenError<R::Error>> {
        // Acquire: pairs with the Release that published OPEN, so the
        // handle the starter wrote is visible to this opener.
        let prev = self.state.fetch_add(
            1,
            ordering_unless("multi_open::open_relaxed", Ordering::Acquire),
        );
        // One mask and compare: phase OPEN and the count below COUNT_LIMIT.
        if prev & (PHASE_MASK | COUNT_LIMIT) == OPEN {
            return Ok(());
        }
        self.acquire_slow(prev)
    }

    /// The open path when the object is not simply open: our increment is
    /// in the count; wait out startup/shutdown, or run startup ourselves.
    #[cold]
    #[track_caller]
    fn acquire_slow(&self, prev: u32) -> Result<(), OpenError<R::Error>> {
        if prev & COUNT_MASK >= COUNT_LIMIT {
            // Take our increment back with an ordinary close: if every
            // other open closed meanwhile, ours is the final close and must
            // run shutdown like any other.
            let site = CloseSite {
                location: Location::caller(),
                how: CloseHow::Explicit,
            };
            let _ = self.release(site);
            return Err(OpenError::TooManyOpens {
                name: self.name.to_string(),
            });
        }
        let mut state = prev + 1;
        loop {
            match state & PHASE_MASK {
                // `state` came from an Acquire operation: the handle is
                // visible, and our increment keeps it up.
                OPEN => return Ok(()),
                IDLE => {
                    // Acquire: pairs with the shutter's (or failed
                    // starter's) Release into IDLE: we see what it did.
                    match self.state.compare_exchange_weak(
                        state,
                        (state & !PHASE_MASK) | STARTING,
                        Ordering::Acquire,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => return self.run_startup(),
                        Err(now) => state = now,
                    }
                }
                _ => {
                    // STARTING or SHUTTING_DOWN: sleep until it ends.
                    if state & WAITERS == 0 && !mutant("multi_open::opener_no_announce") {
                        // Relaxed on success: only announces a sleeper.
                        // Acquire on failure: the new value may be OPEN.
                        if let Err(now) = self.state.compare_exchange_weak(
                            state,
                            state | WAITERS,
                            Ordering::Relaxed,
                            Ordering::Acquire,
                        ) {
                            state = now;
                            continue;
                        }
                        state |= WAITERS;
                    }
                    self.state.wait(state);
                    // Acquire: the phase may now be OPEN (see above).
                    state = self.state.load(Ordering::Acquire);
                }
            }
        }
    }

    /// Runs startup; we are the one thread in STARTING and own the handle
    /// cell. On success publishes the handle and moves to OPEN; on error or
    /// panic, `StartupRollback` takes our open back and returns to IDLE.
    fn run_startup(&self) -> Result<(), OpenError<R::Error>> {
        let rollback = StartupRollback { owner: self };
        let handle = match self.resource.startup() {
            Ok(handle) => handle,
            Err(error) => {
                drop(rollback);
                return Err(OpenError::Startup(error));
            }
        };
        std::mem::forget(rollback);
        // SAFETY: in STARTING only the starter touches the cell; openers
        // read it only after the Release below moves the phase to OPEN.
        self.handle.with_mut(|cell| unsafe { *cell = Some(handle) });
        // Relaxed: published by the Release below; only the starter writes.
        self.cycles.fetch_add(1, Ordering::Relaxed);
        // Release: publishes the handle (and the cycle number) to every
        // opener that Acquires OPEN.
        let publish = ordering_unless("multi_open::startup_publish_relaxed", Ordering::Release);
        self.end_phase(
            publish,
            |state| (state & !PHASE_MASK) | OPEN | EVER_OPENED,
            "multi_open::startup_no_wake",
        );
        Ok(())
    }

    /// Leaves STARTING or SHUTTING_DOWN: applies `next` to the state word
    /// (clearing WAITERS), and wakes the sleepers if there were any.
    fn end_phase(&self, ordering: Ordering, next: impl Fn(u32) -> u32, no_wake: &str) {
        // Relaxed: first guess for the CAS loop.
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            match self.state.compare_exchange_weak(
                state,
                next(state) & !WAITERS,
                ordering,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => state = now,
            }
        }
        if state & WAITERS != 0 && !mutant(no_wake) {
            self.state.wake_all();
        }
    }

    // ----- the close path -----

    /// Closes one held open; the final close runs shutdown.
    #[inline]
    fn release(&self, site: CloseSite) -> Result<CloseOutcome, CloseError<R::Error>> {
        // Release: our reads of the handle happen before the shutter's
        // Acquire takes it away.
        let prev = self.state.fetch_sub(
            1,
            ordering_unless("multi_open::close_relaxed", Ordering::Release),
        );
        if prev & COUNT_MASK != 1 {
            return Ok(CloseOutcome::StillOpen);
        }
        self.release_last(site)
    }

    /// [`release`](Self::release), then the `enforce_final_close` check.
    fn release_with_options(
        &self,
        site: CloseSite,
        enforce_final_close: bool,
    ) -> Result<CloseOutcome, CloseError<R::Error>> {
        match self.release(site)? {
            CloseOutcome::StillOpen if enforce_final_close => Err(CloseError::NotFinal {
                still_open: self.open_count(),
            }),
            outcome => Ok(outcome),
        }
    }

    /// A guard's drop: the same fast path as [`release`](Self::release).
    #[inline]
    fn release_on_drop(&self, opened_at: &'static Location<'static>) {
        // Release: as in `release`.
        let prev = self.state.fetch_sub(
            1,
            ordering_unless("multi_open::close_relaxed", Ordering::Release),
        );
        if prev & COUNT_MASK == 1 {
            self.release_last_on_drop(opened_at);
        }
    }

    /// A guard's drop was the last close. Shutdown's error has nowhere to
    /// go and is dropped (use `close()` to see it). If this thread is
    /// already unwinding, a panic from shutdown is swallowed rather than
    /// aborting the process; the state is consistent either way.
    #[cold]
    fn release_last_on_drop(&self, opened_at: &'static Location<'static>) {
        let site = CloseSite {
            location: opened_at,
            how: CloseHow::GuardDropped,
        };
        if std::thread::panicking() {
            let _ =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.release_last(site)));
        } else {
            let _ = self.release_last(site);
        }
    }

    /// Our close brought the count to zero: try to become the shutter.
    #[cold]
    fn release_last(&self, site: CloseSite) -> Result<CloseOutcome, CloseError<R::Error>> {
        if mutant("multi_open::close_check_then_act") {
            // The bug: look, then leap.
            let state = self.state.load(Ordering::Acquire);
            if state & (PHASE_MASK | COUNT_MASK) != OPEN {
                return Ok(CloseOutcome::StillOpen);
            }
            self.state.store(state | SHUTTING_DOWN, Ordering::Relaxed);
            return self.run_shutdown(site);
        }
        // Relaxed: first guess for the CAS.
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            if state & COUNT_MASK != 0 {
                // Someone opened again since our decrement: not final.
                return Ok(CloseOutcome::StillOpen);
            }
            if state & PHASE_MASK != OPEN {
                // The count is zero but another close that also brought it
                // to zero (after a re-open and re-close slipped in between)
                // claimed the shutdown first.
                return Ok(CloseOutcome::ShutDownByOther);
            }
            // Acquire: pairs with every closer's Release decrement (they
            // form one release sequence on this word), so all uses of the
            // handle happen before we take it.
            match self.state.compare_exchange_weak(
                state,
                state | SHUTTING_DOWN,
                ordering_unless("multi_open::shutdown_claim_relaxed", Ordering::Acquire),
                Ordering::Relaxed,
            ) {
                Ok(_) => return self.run_shutdown(site),
                Err(now) => state = now,
            }
        }
    }

    /// Runs shutdown; we are the one thread in SHUTTING_DOWN and own the
    /// handle cell. `ShutdownFinish` ends the phase even if shutdown panics.
    fn run_shutdown(&self, site: CloseSite) -> Result<CloseOutcome, CloseError<R::Error>> {
        let tag = usize::from(site.how == CloseHow::GuardDropped);
        let location = (site.location as *const Location<'static>).cast_mut();
        // Relaxed: a diagnostic for error messages; it guards no data.
        self.final_close
            .store(location.map_addr(|addr| addr | tag), Ordering::Relaxed);
        // SAFETY: in SHUTTING_DOWN only the shutter touches the cell, and
        // our Acquire CAS saw every holder's Release close.
        let handle = self.handle.with_mut(|cell| unsafe { (*cell).take() });
        let finish = ShutdownFinish { owner: self };
        let result = match handle {
            Some(handle) => self.resource.shutdown(handle),
            None => Ok(()),
        };
        drop(finish);
        result
            .map(|()| CloseOutcome::ShutDown)
            .map_err(CloseError::Shutdown)
    }

    // ----- finalise -----

    /// Finalises every shut-down cycle not yet finalised; false if there
    /// was none.
    fn finalise_pending(&self) -> bool {
        // Relaxed: first guess for the CAS loop.
        let mut word = self.finalised.load(Ordering::Relaxed);
        loop {
            // Acquire: pairs with the shutter's Release increment, so the
            // joiners we release (via our Release below) see the shutdown.
            let shut = self.shutdowns.load(Ordering::Acquire) & CYCLE_MASK;
            // Never move FINALISED backwards: a finaliser that read an old
            // `shutdowns` may come after one that read a newer value (loom
            // found this: the newer cycle's joiners then slept forever).
            let done = if mutant("multi_open::finalise_backwards") {
                word >> 1 == shut // the bug loom found: may move backwards
            } else {
                cycle_reached(word >> 1, shut)
            };
            if done {
                return false;
            }
            if mutant("multi_open::finalise_check_then_act") {
                // The bug: a store that can overwrite a joiner's bit.
                self.finalised.store(shut << 1, Ordering::Release);
                break;
            }
            // Release: the joiners' Acquire load sees the shutdown.
            match self.finalised.compare_exchange_weak(
                word,
                shut << 1,
                ordering_unless("multi_open::finalise_relaxed", Ordering::Release),
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => word = now,
            }
        }
        if word & JOIN_WAITERS != 0 && !mutant("multi_open::finalise_no_wake") {
            self.finalised.wake_all();
        }
        true
    }

    // ----- helpers -----

    fn ever_opened(&self) -> bool {
        // Relaxed: a query for error reporting.
        self.state.load(Ordering::Relaxed) & EVER_OPENED != 0
    }

    fn final_close_site(&self) -> Option<CloseSite> {
        // Relaxed: a diagnostic; see `run_shutdown`.
        let tagged = self.final_close.load(Ordering::Relaxed);
        let how = if tagged.addr() & 1 != 0 {
            CloseHow::GuardDropped
        } else {
            CloseHow::Explicit
        };
        let location = tagged.map_addr(|addr| addr & !1).cast_const();
        // SAFETY: non-null values are `&'static Location` stored by
        // `run_shutdown` (bit 0 is free: `Location` is 8-aligned).
        unsafe { location.as_ref() }.map(|location| CloseSite { location, how })
    }

    fn closed_error(&self) -> ClosedError {
        ClosedError {
            name: self.name.to_string(),
            final_close: self.final_close_site(),
        }
    }

    fn never_opened_error(&self) -> NeverOpenedError {
        NeverOpenedError {
            name: self.name.to_string(),
        }
    }

    /// The handle, for a holder of an open.
    ///
    /// SAFETY (caller): holds an open in this cycle.
    #[inline]
    unsafe fn handle_ref(&self) -> &R::Handle {
        // SAFETY: a held open keeps the phase OPEN, where the cell is
        // `Some` and only shared; the holder's Acquire open saw it written.
        self.handle
            .with(|cell| unsafe { (*cell).as_ref().unwrap_unchecked() })
    }

    /// Moves a held open from a guard to the detached count.
    fn detach_one(&self) {
        // Release: pairs with `close_with`'s Acquire (see there).
        self.detached.fetch_add(
            1,
            ordering_unless("multi_open::detach_relaxed", Ordering::Release),
        );
    }
}

impl<R: Resource> fmt::Debug for MultiOpen<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultiOpen")
            .field("name", &self.name)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl<R: Resource> Drop for MultiOpen<R> {
    fn drop(&mut self) {
        // Detached opens never closed leave the resource up: shut it down
        // now, as the handle's owner would. (Guards borrow or own the
        // object, so none is alive here.) Relaxed: `&mut self` is exclusive.
        if self.state.load(Ordering::Relaxed) & PHASE_MASK == OPEN {
            if let Some(handle) = self.handle.with_mut(|cell| unsafe { (*cell).take() }) {
                let _ = self.resource.shutdown(handle);
            }
        }
    }
}

/// Undoes a startup that returned an error or panicked: takes the starter's
/// open back out of the count, returns to IDLE, wakes waiting openers (one
/// of them will run startup next).
struct StartupRollback<'a, R: Resource> {
    owner: &'a MultiOpen<R>,
}

impl<R: Resource> Drop for StartupRollback<'_, R> {
    fn drop(&mut self) {
        let keep = mutant("multi_open::startup_fail_keeps_count")
            || (mutant("multi_open::startup_panic_keeps_count") && std::thread::panicking());
        // Release: whatever the failed startup did to the resource happens
        // before the next starter's Acquire.
        self.owner.end_phase(
            Ordering::Release,
            |state| ((state - u32::from(!keep)) & !PHASE_MASK) | IDLE,
            "multi_open::startup_fail_no_wake",
        );
    }
}

/// Ends a shutdown, even a panicking one: counts it, returns to IDLE, wakes
/// waiting openers, and finalises unless finalise-later is set.
struct ShutdownFinish<'a, R: Resource> {
    owner: &'a MultiOpen<R>,
}

impl<R: Resource> Drop for ShutdownFinish<'_, R> {
    fn drop(&mut self) {
        let owner = self.owner;
        // Release: `finalise_pending`'s Acquire then sees the shutdown.
        owner.shutdowns.fetch_add(1, Ordering::Release);
        // Release: the next starter's Acquire sees the shutdown's effects.
        owner.end_phase(
            Ordering::Release,
            |state| (state & !PHASE_MASK) | IDLE,
            "multi_open::shutdown_no_wake",
        );
        if !owner.finalise_later() {
            owner.finalise_pending();
        }
    }
}

/// One open of a [`MultiOpen`], closed when dropped. Dereferences to the
/// resource's handle.
///
/// Each guard is an independent sub-open: it closes exactly once, whether
/// by drop, [`close`](Self::close), [`close_final`](Self::close_final) or
/// handing its open over with [`detach`](Self::detach); a double close
/// cannot be written.
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
    owner: &'a MultiOpen<R>,
    opened_at: &'static Location<'static>,
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
    owner: Arc<MultiOpen<R>>,
    opened_at: &'static Location<'static>,
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
        /// assert!(matches!(a.close_final(), Err(CloseError::NotFinal { still_open: 1 })));
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
