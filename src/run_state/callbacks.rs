//! Callbacks: [`RunEvent`], [`CallbackId`], the copy-on-write [`Callbacks`]
//! list, registration, and running them on a transition (`notify`).

use std::fmt;
use std::sync::{Arc, PoisonError};

use super::error::CallbackPanicked;
use super::state::HAS_CALLBACKS;
use super::RunState;
use crate::sync::{fence, mutant, Arc as ListArc, AtomicPtr, AtomicUsize, Mutex, Ordering};
use crate::unwind;

/// A transition that callbacks can be registered for.
///
/// `Display` gives `"start"`, `"cancel"` or `"end"`.
///
/// ```
/// use multiopen::{RunEvent, RunState};
///
/// let rs = RunState::new("job");
/// rs.on_end(|_| panic!("boom"));
/// rs.start()?;
/// # let hook = std::panic::take_hook();
/// # std::panic::set_hook(Box::new(|_| {}));
/// let err = rs.stop().unwrap_err();
/// # std::panic::set_hook(hook);
/// assert!(err.to_string().contains("on_end"));
/// assert_eq!(RunEvent::End.to_string(), "end");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunEvent {
    /// [`RunState::start`] (callbacks from [`RunState::on_start`]).
    Start,
    /// [`RunState::cancel`] (callbacks from [`RunState::on_cancel`]).
    Cancel,
    /// [`RunState::stop`] (callbacks from [`RunState::on_end`]).
    End,
}

impl fmt::Display for RunEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Start => "start",
            Self::Cancel => "cancel",
            Self::End => "end",
        })
    }
}

/// Names a registered callback, for [`RunState::remove_callback`].
///
/// ```
/// use multiopen::RunState;
///
/// let rs = RunState::new("job");
/// let id = rs.on_start(|_| {});
/// assert!(rs.remove_callback(id));
/// assert!(!rs.remove_callback(id)); // already gone
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallbackId(u64);

// ---------------------------------------------------------------------------
// Callbacks: a copy-on-write list, read without a lock
// ---------------------------------------------------------------------------

/// A registered callback.
type Callback = Arc<dyn Fn(&RunState) + Send + Sync>;

#[derive(Clone)]
struct Entry {
    id: u64,
    event: RunEvent,
    /// `Some` until [`dispose`](Entry::dispose) or the `Drop` takes it.
    callback: Option<Callback>,
}

impl Entry {
    /// Drops this entry's reference to its callback now: `Err` with the
    /// message if that was the last one and the `Drop` of what the
    /// callback captured (user code) panicked.
    fn dispose(mut self) -> Result<(), String> {
        let callback = self.callback.take();
        unwind::catch(|| drop(callback))
    }
}

impl Drop for Entry {
    /// The safety net for an entry dropped with its list (a list whose
    /// last reference went away somewhere [`release_list`] did not see):
    /// the user `Drop` this may run is caught, so that a panic there can
    /// neither skip the rest of the list nor abort the process; it is not
    /// reported (there is nobody to report it to).
    fn drop(&mut self) {
        if let Some(callback) = self.callback.take() {
            let _ = unwind::catch(|| drop(callback));
        }
    }
}

/// Lets go of one reference to a list. If it was the last, the entries are
/// disposed of one by one and the messages of the panics of their user
/// `Drop`s are pushed to `panics`.
fn release_list(list: ListArc<List>, panics: &mut Vec<String>) {
    // If another thread lets go of its reference at the same moment, both
    // may fail here and the last `drop` frees the list: then the entries'
    // own `Drop` catches (unreported). Only a list being freed concurrently
    // by two holders takes that path.
    if let Ok(entries) = ListArc::try_unwrap(list) {
        for entry in entries {
            if let Err(message) = entry.dispose() {
                panics.push(message);
            }
        }
    }
}

type List = Vec<Entry>;

/// The callback registry.
///
/// `current` holds one reference (`ListArc::into_raw`) to the published
/// list, or is null when no callback is registered. A transition takes its
/// own reference without a lock: it counts itself in `readers`, loads
/// `current`, increments the list's count, and counts itself out.
/// Registration (under `writer`, which only registrations take) swaps in a
/// new list and *retires* the old reference; retired references are dropped
/// only when a registration sees `readers == 0` after its swap (or when the
/// `RunState` is dropped), so no reader ever increments the count of a
/// freed list.
pub(super) struct Callbacks {
    current: AtomicPtr<List>,
    readers: AtomicUsize,
    writer: Mutex<Writer>,
}

struct Writer {
    /// The next callback id.
    next_id: u64,
    /// Replaced lists that a reader might still be taking a reference to.
    retired: Vec<ListArc<List>>,
}

impl Callbacks {
    pub(super) fn new() -> Self {
        Self {
            current: AtomicPtr::new(std::ptr::null_mut()),
            readers: AtomicUsize::new(0),
            writer: Mutex::new(Writer {
                next_id: 0,
                retired: Vec::new(),
            }),
        }
    }

    /// The current list, or `None` if it is empty. Lock-free.
    fn snapshot(&self) -> Option<ListArc<List>> {
        // Relaxed: only a fast "no callbacks" exit; the load that counts is
        // below.
        if self.current.load(Ordering::Relaxed).is_null() {
            return None;
        }
        // Relaxed + SeqCst fence: the increment is ordered before the load
        // of `current` against a registration's swap + SeqCst fence + load
        // of `readers` (store-buffering): either it sees our count, or we
        // see its new list.
        self.readers.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        // Acquire: pairs with the registration's Release swap, so the list
        // it built is visible.
        let list = self.current.load(Ordering::Acquire);
        let taken = (!list.is_null()).then(|| {
            // SAFETY: `list` came from `ListArc::into_raw` and its
            // reference is still held: by `current`, or by `retired`, which
            // is not dropped while we are counted in `readers`.
            unsafe {
                ListArc::increment_strong_count(list);
                ListArc::from_raw(list)
            }
        });
        // Release: our increment happens before a registration that reads
        // `readers == 0` (Acquire) and drops the retired reference.
        self.readers.fetch_sub(1, Ordering::Release);
        taken
    }

    /// Replaces the list with `edit` applied to a copy of it, and returns
    /// what `edit` returned. Registration only; takes the writer lock.
    ///
    /// No user code runs under the lock: freeing a retired list may drop
    /// the last reference to a callback (and so run the `Drop` of what it
    /// captured, which may register or remove callbacks on this very
    /// `RunState`), so the lists to free are taken out and dropped after
    /// the lock is released.
    fn update<R>(&self, edit: impl FnOnce(&mut List, &mut u64) -> R) -> R {
        // Nothing panics while the lock is held except allocation; a
        // poisoned lock still guards a consistent `Writer`.
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        // Relaxed: only registrations store `current`, and we hold their
        // lock, which orders us after the last one.
        let old = self.current.load(Ordering::Relaxed);
        let mut list = if old.is_null() {
            Vec::new()
        } else {
            // SAFETY: `old` is the published list; `current` holds a
            // reference to it, and only we (under the lock) can retire it.
            unsafe { (*old).clone() }
        };
        let Writer { next_id, retired } = &mut *writer;
        let out = edit(&mut list, next_id);
        let new = if list.is_empty() {
            std::ptr::null_mut()
        } else {
            ListArc::into_raw(ListArc::new(list)).cast_mut()
        };
        // Release: a transition that loads `new` (Acquire) sees the list.
        let replaced = self.current.swap(new, Ordering::Release);
        if !replaced.is_null() {
            // SAFETY: this is the reference `current` held, handed over.
            retired.push(unsafe { ListArc::from_raw(replaced) });
        }
        // SeqCst fence: see `snapshot`. Acquire load: pairs with each
        // reader's Release decrement.
        fence(Ordering::SeqCst);
        let free = if self.readers.load(Ordering::Acquire) == 0 {
            // No reader is between its load of `current` and its increment:
            // every reader that loaded a retired list has its own reference.
            std::mem::take(retired)
        } else {
            if mutant("run_state::callbacks_retired_leak") {
                // The bug: with a reader in flight, the retired references
                // are given up (left for the reader to free, which never
                // holds them): the replaced lists leak.
                std::mem::take(retired)
                    .into_iter()
                    .for_each(std::mem::forget);
            }
            Vec::new()
        };
        drop(writer);
        // Outside the lock: this may run user `Drop` code (see above).
        drop_lists(free);
        out
    }
}

impl Drop for Callbacks {
    fn drop(&mut self) {
        // Relaxed, and a load, not a swap (an RMW): `&mut self`, nobody
        // else can touch it, and the field goes with us.
        let list = self.current.load(Ordering::Relaxed);
        let mut lists = std::mem::take(
            &mut self
                .writer
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .retired,
        );
        if !list.is_null() {
            // SAFETY: the reference `current` holds, which goes with us
            // (never read again); nobody else can use it.
            lists.push(unsafe { ListArc::from_raw(list) });
        }
        drop_lists(lists);
    }
}

/// Drops callback lists. Dropping one may drop the last reference to a
/// callback, and so run the `Drop` of what it captured: user code that may
/// panic. Each entry is dropped on its own under [`unwind::catch`]
/// ([`release_list`]), so one panic neither skips the others nor, if this runs while the thread
/// unwinds (a `RunState` dropped during a panic, a registration from a
/// user's `Drop`), aborts the process; outside unwinding the first such
/// panic (its message) is then passed on to the caller, as user code's
/// panics are.
fn drop_lists(lists: Vec<ListArc<List>>) {
    let mut panics = Vec::new();
    for list in lists {
        release_list(list, &mut panics);
    }
    if let Some(message) = panics.into_iter().next() {
        if !std::thread::panicking() {
            std::panic::resume_unwind(Box::new(message));
        }
    }
}

impl RunState {
    // --- callbacks ------------------------------------------------------------

    /// Registers `callback` to run, with this `RunState`, after every
    /// [`start`](Self::start), in the starting thread. Returns its id for
    /// [`remove_callback`](Self::remove_callback).
    ///
    /// Registration copies the callback list under a registration-only
    /// lock; transitions read it without one.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use multiopen::RunState;
    ///
    /// let starts = Arc::new(AtomicUsize::new(0));
    /// let rs = RunState::new("job");
    /// let counter = Arc::clone(&starts);
    /// rs.on_start(move |rs| {
    ///     assert!(rs.is_running());
    ///     counter.fetch_add(1, Ordering::Relaxed);
    /// });
    /// rs.start()?;
    /// assert_eq!(starts.load(Ordering::Relaxed), 1);
    /// # Ok::<(), multiopen::RunStateError>(())
    /// ```
    pub fn on_start(&self, callback: impl Fn(&RunState) + Send + Sync + 'static) -> CallbackId {
        self.register(RunEvent::Start, Arc::new(callback))
    }

    /// Registers `callback` to run, with this `RunState`, after every
    /// [`cancel`](Self::cancel) that cancels (not one that finds it
    /// cancelled already), in the cancelling thread: the thread that called
    /// `cancel` (on this state or on an ancestor), except for a deadline
    /// ([`cancel_at`](Self::cancel_at)), whose callbacks run on a thread of
    /// their own, never on the crate's one timer thread (so a slow
    /// callback delays no other deadline).
    ///
    /// A callback registered on a run cancelled already does not run for
    /// that cancel (as in the Python `cs.resources`; unlike .NET's
    /// `Register`, which runs it at once). To act on a cancel whether it
    /// came before or after the registration, register, then check
    /// [`cancelled`](Self::cancelled), and make the action idempotent (a
    /// cancel racing the registration may run the callback too), or wait
    /// instead ([`wait_cancelled`](Self::wait_cancelled) or
    /// [`wait_cancelled_async`](Self::wait_cancelled_async), which see a
    /// cancel from before they began).
    ///
    /// ```
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    /// use multiopen::RunState;
    ///
    /// let told = Arc::new(AtomicBool::new(false));
    /// let rs = RunState::new("job");
    /// let flag = Arc::clone(&told);
    /// rs.on_cancel(move |rs| flag.store(rs.cancelled(), Ordering::Relaxed));
    /// rs.cancel();
    /// assert!(told.load(Ordering::Relaxed));
    /// # Ok::<(), multiopen::CallbackPanicked>(())
    /// ```
    pub fn on_cancel(&self, callback: impl Fn(&RunState) + Send + Sync + 'static) -> CallbackId {
        self.register(RunEvent::Cancel, Arc::new(callback))
    }

    /// Registers `callback` to run, with this `RunState`, after every
    /// [`stop`](Self::stop), in the stopping thread.
    ///
    /// ```
    /// use std::sync::Mutex;
    /// use std::sync::Arc;
    /// use multiopen::RunState;
    ///
    /// let log = Arc::new(Mutex::new(Vec::new()));
    /// let rs = RunState::new("job");
    /// let sink = Arc::clone(&log);
    /// rs.on_end(move |rs| sink.lock().unwrap().push(rs.state().to_string()));
    /// rs.start()?;
    /// rs.cancel();
    /// rs.stop()?;
    /// assert_eq!(*log.lock().unwrap(), ["cancelled"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_end(&self, callback: impl Fn(&RunState) + Send + Sync + 'static) -> CallbackId {
        self.register(RunEvent::End, Arc::new(callback))
    }

    /// Unregisters a callback; returns whether it was registered. A
    /// transition already running callbacks may still call it once.
    ///
    /// ```
    /// use multiopen::RunState;
    ///
    /// let rs = RunState::new("job");
    /// let id = rs.on_start(|_| panic!("never runs"));
    /// assert!(rs.remove_callback(id));
    /// rs.start()?; // no callback, no panic
    /// # Ok::<(), multiopen::RunStateError>(())
    /// ```
    pub fn remove_callback(&self, id: CallbackId) -> bool {
        let Some(cold) = self.cold_ref() else {
            return false; // nothing was ever registered
        };
        cold.callbacks.update(|list, _| {
            let before = list.len();
            list.retain(|entry| entry.id != id.0);
            list.len() != before
        })
    }

    fn register(&self, event: RunEvent, callback: Callback) -> CallbackId {
        let id = self.cold().callbacks.update(|list, next_id| {
            let id = *next_id;
            *next_id += 1;
            list.push(Entry {
                id,
                event,
                callback: Some(callback),
            });
            CallbackId(id)
        });
        // Relaxed: a first look; the bit is never cleared.
        if self.state.load(Ordering::Relaxed) & HAS_CALLBACKS == 0 {
            // Release: a parent's cancel that sees the bit (its RMW comes
            // after this one in the word's order) sees the list published
            // above, and runs it. A cancel before this RMW does not run
            // the callback: it was registered after that cancel.
            self.state.fetch_or(HAS_CALLBACKS, Ordering::Release);
        }
        id
    }

    /// Runs the callbacks for `event`, in registration order, catching
    /// panics; holds only its own reference to the list meanwhile.
    pub(super) fn notify(&self, event: RunEvent) -> Result<(), CallbackPanicked> {
        let Some(list) = self.cold_ref().and_then(|cold| cold.callbacks.snapshot()) else {
            return Ok(());
        };
        let mut panics = Vec::new();
        for entry in list.iter().filter(|entry| entry.event == event) {
            // `catch` disposes of the payload so that even a payload whose
            // own `Drop` panics cannot stop the callbacks after this one.
            let Some(callback) = &entry.callback else {
                continue; // only an entry being dropped has none
            };
            if let Err(message) = unwind::catch(|| callback(self)) {
                panics.push(message);
            }
        }
        // If a callback removed itself (or another) meanwhile, ours may be
        // the last reference to the list, and dropping it runs the `Drop`
        // of what those callbacks captured: user code, which may panic. It
        // is reported like a callback's panic, never let out of (or, while
        // unwinding, made to abort) the transition.
        release_list(list, &mut panics);
        if panics.is_empty() {
            Ok(())
        } else {
            Err(CallbackPanicked {
                name: self.name.to_string(),
                event,
                panics,
            })
        }
    }
}
