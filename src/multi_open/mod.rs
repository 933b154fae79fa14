//! [`MultiOpen`]: one shared resource, opened and closed by many threads.
//!
//! The first `open` runs the resource's startup, the last close runs its
//! shutdown, [`join`](MultiOpen::join) waits for that shutdown to be
//! finalised, and the whole cycle can repeat. Opening or closing an object
//! that is already open is one atomic read-modify-write, with no lock and no
//! system call; a thread blocks (on a futex) only when it must wait for
//! another thread's startup or shutdown, or in `join`.
//! Every such wait has an untimed form and bounded ones (`try_open`,
//! `open_timeout`, `open_deadline`; `try_join`, `join_timeout`,
//! `join_deadline`), which say why they returned
//! ([`OpenError::TimedOut`], [`JoinError::TimedOut`](crate::JoinError::TimedOut)).
//! From async code, [`open_async`](MultiOpen::open_async),
//! [`open_owned_async`](MultiOpen::open_owned_async) and
//! [`join_async`](MultiOpen::join_async) are futures of the same waits,
//! woken by the same transitions as the blocked threads (the startup and
//! shutdown themselves stay synchronous: see `open_async` for where they
//! run).
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
//! # Ok::<(), multiopen::JoinError>(())
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
//! With a [linger](MultiOpen::with_linger), the final close does not shut
//! down at once: the object stays `Open` with no opens for the linger, an
//! open within it joins the same cycle (no startup), and the shutdown runs
//! when the linger ends with no open (on the crate's timer thread), or at a
//! `join`, `seal` or drop of the object, whichever comes first.
//!
//! A re-open that comes after the final close but before a pending
//! finalise (finalise-later) starts a new cycle at once; the old cycle's
//! joiners stay waiting for the old cycle's finalise, and `finalise()`
//! releases them without touching the new cycle. (The Python original
//! replaced the condition and stranded them.)

mod close;
mod deadline;
mod futures;
mod guard;
mod join;
mod linger;
mod open;
mod open_async;
mod resource;
mod seal;
mod state;

pub use close::{CloseOptions, CloseOutcome};
pub use futures::JoinFuture;
pub use guard::{OpenGuard, OwnedOpenGuard};
pub use open_async::{OpenFuture, OwnedOpenFuture};
pub use resource::{DynFnResource, FnResource, Openable, Resource, Wrapped};
pub use state::{MultiOpenState, Phase};

use std::borrow::Cow;
use std::fmt;
use std::mem::ManuallyDrop;
use std::panic::Location;

use crossbeam_utils::CachePadded;

use self::state::{COUNT_LIMIT, EVER_OPENED, IDLE, OPEN, PHASE_MASK};
#[cfg(doc)]
use crate::error::OpenError;
use crate::error::{BoxError, CloseHow, CloseSite, ClosedError, NeverOpenedError};
use crate::sync::{
    ordering_unless, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Futex, LazyWakers, Ordering,
    UnsafeCell,
};
use crate::unwind;

/// A shared resource that many threads open and close in overlapping
/// fashion: the first open runs startup, the last close runs shutdown.
///
/// See the [module documentation](crate::multi_open) for the cycle.
///
/// # Panics in startup and shutdown
/// A panic in startup or shutdown leaves the object consistent: a failed
/// startup's open is taken back, a panicking shutdown still ends the cycle
/// and finalises it. Where the panic happens in a call of yours (`open`,
/// `close`, a guard dropped normally), it propagates to you with its payload
/// untouched: the payload is yours to dispose of. Where the library runs
/// the shutdown while the thread is already unwinding (a guard, or the
/// `MultiOpen` itself, dropped during a panic), a panic from the shutdown,
/// or from the `Drop` of the error it returned, is caught and its payload
/// disposed of (leaked if its own `Drop` panics), so the process never
/// aborts. Dropping the `MultiOpen` itself with the resource still up (a
/// detached open never closed, or a linger) runs the shutdown there: a
/// panic from it or from the hook propagates after the resource and the
/// hook have been dropped (nothing is leaked).
///
/// # Fork
/// `fork()` copies only the calling thread, and this object's state as it
/// was at that instant. If another thread was inside this object's startup
/// or shutdown then, the child's copy stays starting or shutting down for
/// ever (no thread in the child will end it), so an `open()` or `join()`
/// in the child waits forever, as locking a `std::sync::Mutex` that another
/// thread held at the fork would. What does work in the child:
/// - an object idle at fork time (never opened, or closed and finalised):
///   the child's first open runs startup in the child, as usual;
/// - an object open at fork time: the child's opens and closes work, on the
///   child's copy of the handle. But opens held by the parent's other
///   threads stay counted in the child and are never closed there, so the
///   child's closes are not final while they exist, and its `join` would
///   wait for them.
///
/// The child must not rely on a startup or shutdown in progress in another
/// thread, nor on opens held by other threads. The same holds for the
/// crate's other objects: a [`RunState`](crate::RunState) whose timestamps
/// or callback list another thread was changing at the fork waits forever
/// in the child's `start`/`stop`/`on_*`, and a `SignalCanceller` (feature
/// `signal`) has no thread in the child: `mem::forget` it there rather than
/// drop it. (The usual rule for a
/// multi-threaded parent still applies: until it calls `exec`, the child
/// should call only async-signal-safe functions, and a startup is user
/// code.)
///
/// # Costs
/// `open` and closing a guard on an object that is already open: one atomic
/// read-modify-write each, no lock, no system call (with or without a
/// [linger](Self::with_linger)). The final close runs
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
    /// The state word: see the layout at the top of `state.rs`. Padded so
    /// the count's cache line is not shared with the read-mostly fields.
    state: CachePadded<Futex>,
    /// The handle: written only in STARTING by the starter, taken only in
    /// SHUTTING_DOWN by the shutter, and read shared only in OPEN by
    /// holders of an open.
    handle: UnsafeCell<Option<R::Handle>>,
    /// The join wake word: see its layout at the top of `state.rs`.
    finalised: Futex,
    /// The wakers of join futures (`futures.rs`), allocated on the first
    /// one that waits: woken by the finalise, behind `ASYNC_JOIN_WAITERS`.
    join_wakers: LazyWakers,
    /// The wakers of open futures (`open_async.rs`) waiting for a startup
    /// or shutdown to end, allocated on the first one that waits: woken by
    /// the phase's end (and `seal`), behind `ASYNC_OPEN_WAITERS` of the
    /// state word.
    open_wakers: LazyWakers,
    /// Cycles finalised: never decreases. 64 bits, compared exactly: see
    /// "Counters that never wrap" in `state.rs`.
    finalised_cycles: AtomicU64,
    /// Successful startups (the current cycle number); written only by the
    /// starter.
    cycles: AtomicU64,
    /// Shutdowns run; written only by the shutter.
    shutdowns: AtomicU64,
    /// Opens detached from their guards, to be closed by `MultiOpen::close`.
    detached: AtomicUsize,
    /// Nonzero: the final close does not finalise; `finalise()` must.
    finalise_later: AtomicU32,
    /// The last final close's location, tagged in its two low bits with
    /// its [`CloseHow`] (see `LOCATION_TAGS`); null if none yet.
    final_close: AtomicPtr<Location<'static>>,
    name: Cow<'static, str>,
    /// Called with a shutdown's error that no caller receives: see
    /// [`with_on_shutdown_error`](Self::with_on_shutdown_error). Set only at
    /// construction, so plain reads suffice. Dropped in `Drop` under
    /// `unwind::in_cleanup` (what it captures is user code).
    on_shutdown_error: Option<ShutdownErrorHook<R::Error>>,
    /// The linger record, if [`with_linger`](Self::with_linger) set one:
    /// see `linger.rs`. Set only at construction.
    linger: Option<Box<linger::Linger>>,
    /// Dropped by hand in `Drop`, under `unwind::in_cleanup`: its `Drop`,
    /// and the values its closures capture, are user code.
    resource: ManuallyDrop<R>,
}

/// The shutdown-error hook: the object's name and the error.
type ShutdownErrorHook<E> = Box<dyn Fn(&str, &E) + Send + Sync>;

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
    E: fmt::Debug + fmt::Display + Send + Sync + 'static,
{
    /// A `MultiOpen` whose startup and shutdown are closures (the Python
    /// `MultiOpen` for a pair of callables). No boxing: the closures are
    /// called directly.
    ///
    /// The error type `E` comes from the closures, so at least one of them
    /// must name it (`Ok::<_, E>(..)`, a `?` on a known error type, or a
    /// `-> Result<_, E>` signature); for closures that name none, and for a
    /// type you can write in a struct field, use
    /// [`from_dyn_fns`](MultiOpen::from_dyn_fns).
    ///
    /// ```
    /// use multiopen::MultiOpen;
    ///
    /// let mo = MultiOpen::from_fns(
    ///     || Ok::<_, std::io::Error>(vec![1, 2, 3]),
    ///     |v| { assert_eq!(v.len(), 3); Ok(()) },
    /// );
    /// assert_eq!(mo.open()?.len(), 3);
    /// // The startup's own type names the error:
    /// let file = MultiOpen::from_fns(|| std::fs::File::open("/"), |_f| Ok(()));
    /// assert!(file.open().is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_fns(startup: S, shutdown: D) -> Self {
        // A closure's type name says nothing; name the object with `with_name`.
        Self::new(FnResource::new(startup, shutdown)).with_name("MultiOpen")
    }
}

/// A `MultiOpen` built from boxed closures ([`DynFnResource`]): a type you
/// can name in a struct field or a return type. Made by
/// [`MultiOpen::from_dyn_fns`] (error type [`BoxError`]) or, with an error
/// type of your own, `MultiOpen::new(DynFnResource::boxed(..))`.
///
/// ```
/// use multiopen::{FnMultiOpen, MultiOpen};
///
/// struct App {
///     db: FnMultiOpen<String>, // error type: BoxError
/// }
/// let app = App { db: MultiOpen::from_dyn_fns(|| Ok("conn".into()), |_| Ok(())) };
/// assert_eq!(*app.db.open()?, "conn");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub type FnMultiOpen<H, E = BoxError> = MultiOpen<DynFnResource<H, E>>;

impl<H: Send + Sync> MultiOpen<DynFnResource<H>> {
    /// A `MultiOpen` whose startup and shutdown are closures that name no
    /// error type: their error is [`BoxError`], into which `?` converts any
    /// `std::error::Error`, a `String` or an `anyhow::Error`. The result is
    /// a [`FnMultiOpen<H>`], a type you can write down. Costs one boxed
    /// call per startup and shutdown; open and close are as fast as ever.
    ///
    /// ```
    /// use multiopen::MultiOpen;
    ///
    /// let conn = MultiOpen::from_dyn_fns(|| Ok(String::from("conn")), |_c| Ok(()));
    /// assert_eq!(*conn.open()?, "conn");
    ///
    /// let port = MultiOpen::from_dyn_fns(|| Ok("80x".parse::<u16>()?), |_| Ok(()))
    ///     .with_name("port");
    /// assert_eq!(
    ///     port.open().unwrap_err().to_string(),
    ///     "startup of port failed: invalid digit found in string"
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_dyn_fns(
        startup: impl Fn() -> Result<H, BoxError> + Send + Sync + 'static,
        shutdown: impl Fn(H) -> Result<(), BoxError> + Send + Sync + 'static,
    ) -> Self {
        Self::new(DynFnResource::boxed(startup, shutdown)).with_name("MultiOpen")
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
        Self::new(Wrapped(openable)).with_name(short_type_name::<O>())
    }
}

impl<R: Resource> MultiOpen<R> {
    /// The most opens that can be held at once (2^24: three bits of the
    /// state word went to [`seal`](Self::seal),
    /// [`with_linger`](Self::with_linger) and [`open_async`](Self::open_async));
    /// one more is refused with [`OpenError::TooManyOpens`].
    ///
    /// ```
    /// use multiopen::MultiOpen;
    /// let mo = MultiOpen::from_fns(|| Ok::<_, std::io::Error>(()), |_| Ok(()));
    /// fn max_opens<R: multiopen::Resource>(_: &MultiOpen<R>) -> usize { MultiOpen::<R>::MAX_OPENS }
    /// assert_eq!(max_opens(&mo), 1 << 24);
    /// ```
    pub const MAX_OPENS: usize = COUNT_LIMIT as usize;

    /// Wraps `resource`; nothing runs until the first open. The name (for
    /// error messages) defaults to the resource's short type name (`Config`
    /// for `my_app::Config<T>`); give a better one with
    /// [`with_name`](Self::with_name).
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
    /// assert_eq!(cfg.name(), "Config");
    /// ```
    pub fn new(resource: R) -> Self {
        Self {
            state: CachePadded::new(Futex::new(IDLE)),
            handle: UnsafeCell::new(None),
            finalised: Futex::new(0),
            join_wakers: LazyWakers::new(),
            open_wakers: LazyWakers::new(),
            finalised_cycles: AtomicU64::new(0),
            cycles: AtomicU64::new(0),
            shutdowns: AtomicU64::new(0),
            detached: AtomicUsize::new(0),
            finalise_later: AtomicU32::new(0),
            final_close: AtomicPtr::new(std::ptr::null_mut()),
            name: Cow::Borrowed(short_type_name::<R>()),
            on_shutdown_error: None,
            linger: None,
            resource: ManuallyDrop::new(resource),
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

    /// Sets the hook that receives a shutdown's error when no caller can:
    /// the final close was a guard's drop, an opener taking its open back
    /// (refused as sealed or for too many opens, or a timed open that timed
    /// out), a linger ended by the timer, a join or a seal, or the drop of
    /// the `MultiOpen` itself with the resource up. Called in the thread
    /// that ran the shutdown, right after it and before the cycle
    /// ends, with the object's name and the error; the error is dropped
    /// when the hook returns. So a [`join`](Self::join) that returns after
    /// that cycle sees whatever the hook did. An explicit close
    /// (`guard.close()`, `MultiOpen::close`) that runs the shutdown returns
    /// the error to its caller instead and does not call the hook. But an
    /// explicit last close does not always run it: an opener refused or
    /// timing out at that instant may take the final close from it (see
    /// [`seal`](Self::seal)), and then the error comes here. A program that
    /// must see every shutdown error sets a hook even if it closes
    /// explicitly.
    ///
    /// Cost: nothing on any path but these final closes. The hook runs while
    /// the object is still shutting down: openers and joiners wait for it,
    /// so it must not block for long, and its own open or join of this
    /// object is refused as [re-entrant](OpenError::Reentrant). A panic from
    /// the hook reaches the closing thread (after the cycle has ended) as a
    /// shutdown's panic would; while that thread is already unwinding it is
    /// caught instead, so it never aborts.
    ///
    /// The error is not kept by the object for a later `join` (several
    /// joiners, or none, may see a cycle end; which one should get it?): a
    /// hook that wants it later stores it itself, as below, and a joiner
    /// reads it after `join` returns.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use multiopen::MultiOpen;
    ///
    /// let lost = Arc::new(Mutex::new(Vec::new()));
    /// let log = Arc::clone(&lost);
    /// let db = MultiOpen::from_fns(|| Ok(()), |()| Err("flush failed".to_string()))
    ///     .with_name("db")
    ///     .with_on_shutdown_error(move |name, error| {
    ///         log.lock().unwrap().push(format!("{name}: {error}"));
    ///     });
    /// drop(db.open()?); // the final close is a drop: the error goes to the hook
    /// assert_eq!(*lost.lock().unwrap(), ["db: flush failed"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_on_shutdown_error(
        mut self,
        hook: impl Fn(&str, &R::Error) + Send + Sync + 'static,
    ) -> Self {
        self.on_shutdown_error = Some(Box::new(hook));
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

    // ----- helpers -----

    fn ever_opened(&self) -> bool {
        // Relaxed: a query for error reporting.
        self.state.load(Ordering::Relaxed) & EVER_OPENED != 0
    }

    fn final_close_site(&self) -> Option<CloseSite> {
        // Relaxed: a diagnostic; see `run_shutdown`.
        let tagged = self.final_close.load(Ordering::Relaxed);
        let how = match tagged.addr() & LOCATION_TAGS {
            1 => CloseHow::GuardDropped,
            2 => CloseHow::TakenBack,
            _ => CloseHow::Explicit,
        };
        let location = tagged.map_addr(|addr| addr & !LOCATION_TAGS).cast_const();
        // SAFETY: non-null values are `&'static Location` stored by
        // `store_final_close`, tagged in the bits of LOCATION_TAGS (free:
        // see there).
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

    /// This object's address: its identity in this thread's busy marks
    /// (see `crate::sync::busy_mark`). Unique while the object is borrowed.
    fn addr(&self) -> usize {
        // The address of a field of our own, not of `self`: a MultiOpen
        // nested at offset 0 of another's resource shares `self`'s address
        // with it, but two live objects never share a non-empty field's.
        (&self.finalised as *const Futex).addr()
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

/// The low bits of a `&'static Location` that `final_close` uses as the
/// [`CloseHow`] tag: free, as a `Location` holds a `&str` and is aligned to
/// at least 4 on every target (checked below).
const LOCATION_TAGS: usize = 0b11;
const _: () = assert!(std::mem::align_of::<Location<'static>>() > LOCATION_TAGS);

/// `Config` for `my_app::db::Config<T>`: the last path segment of `T`'s
/// name, without generic arguments.
fn short_type_name<T: ?Sized>() -> &'static str {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
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
        // A pending linger timer would find the object gone: free it now.
        self.cancel_linger_timer();
        // Detached opens never closed, or a linger, leave the resource up:
        // shut it down now, as the handle's owner would. (Guards borrow or
        // own the object, so none is alive here.) A panic from the shutdown
        // or the hook is caught and held until the resource and the hook
        // are dropped below (a panic out of here first would leak them),
        // then resumed; while unwinding already it is disposed of instead
        // (a second panic out of a destructor would abort the process).
        let mut pending = None;
        // Relaxed: `&mut self` is exclusive.
        if self.state.load(Ordering::Relaxed) & PHASE_MASK == OPEN {
            // SAFETY: `&mut self` is exclusive: no opener, guard or shutter
            // can touch the cell.
            if let Some(handle) = self.handle.with_mut(|cell| unsafe { (*cell).take() }) {
                pending = self.shut_down_in_drop(handle);
            }
        }
        // The resource last, as a field would go: its `Drop` (and what its
        // closures capture) is user code. With a panic pending, a second
        // one from here is disposed of (the first one goes on).
        // SAFETY: dropped once, here; `self` is never used again.
        let resource = || unsafe { ManuallyDrop::drop(&mut self.resource) };
        // The hook likewise: what it captures is user code.
        let hook = self.on_shutdown_error.take();
        if pending.is_some() {
            let _ = unwind::catch(resource);
            let _ = unwind::catch(move || drop(hook));
        } else {
            unwind::in_cleanup(resource);
            unwind::in_cleanup(move || drop(hook));
        }
        if let Some(payload) = pending {
            std::panic::resume_unwind(payload);
        }
    }
}
