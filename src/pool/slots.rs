//! The front slots: the state word of a [`Slot`] (its bits documented at
//! the constants below), the slot itself, a pool's [`Front`], and the choice
//! of the calling thread's home slot.

use std::mem::MaybeUninit;

use crossbeam_utils::CachePadded;

use super::lifetime::{Entry, NEVER};
use super::Pool;
use crate::sync::{mutant, ordering_unless, thread_index, AtomicUsize, Ordering, UnsafeCell};

// ---------------------------------------------------------------------------
// Front slots (`Slot`, `Front`)
//
// A bounded pool of `max_size` keeps its idle objects in `F` front slots
// plus a queue of `max_size - F` (an `ArrayQueue` up to
// `Pool::PREALLOCATED_UP_TO`, a counted `SegQueue` above; F = min(max_size - 1, MAX_FRONT),
// so the queue always has room for one): at most `max_size` idle objects,
// exactly, with no shared count. An unbounded pool has MAX_FRONT slots in
// front of its `SegQueue`. A front slot holds one object, padded to cache
// lines of its own. The thread with index `i` (`sync::thread_index`) calls slot
// `i % F` its home (threads whose indices are equal modulo F share one):
// a take tries the home slot first, then the queue, then
// the other slots, and only then runs the factory; a return tries the home
// slot of the thread that took it (the guard remembers it), then the queue, then
// the other slots, and only then drops the object. While the pool's
// threads have distinct homes, a take+return touches no line another
// thread writes.
// ---------------------------------------------------------------------------

/// Slot state, bit 0: the slot holds an object.
pub(super) const FULL: usize = 1;
/// Slot state, bit 1: a thread is moving an object in or out; until it
/// clears the bit (a few instructions later, no user code in between),
/// every other thread skips the slot, never waits on it.
const BUSY: usize = 2;
/// Slot state, bits 2 and up: how many guards ever returned an object into
/// the slot (wrapping at 2^(usize::BITS - 2): on a 32-bit target, after
/// about 10^9 returns into one slot, `stats().returned` drops by 2^30). A
/// return adds `PUT` in the same store that publishes the object, so
/// counting returns costs nothing extra; `prefill` adds 0.
pub(super) const PUT: usize = 4;

/// The most front slots a pool has (each padded to 128 bytes on x86_64,
/// or more for a large object).
pub(super) const MAX_FRONT: usize = 16;
/// A guard's `home` when its object did not come through a home slot
/// lookup (pool without front slots, or a thread without an index).
pub(super) const NO_HOME: usize = usize::MAX;

/// One idle object's place, or none: see the layout comment above.
pub(super) struct Slot<T> {
    /// `FULL`, `BUSY` and the put count, as documented at the constants.
    state: AtomicUsize,
    /// Initialised exactly while `FULL` is set (and `BUSY` clear).
    object: UnsafeCell<MaybeUninit<T>>,
    /// The object's instants (`lifetime::Entry`): written and read only by
    /// a pool's counted paths (`put_entry`, `take_entry`), under `BUSY` as
    /// the object is; a plain pool never touches them (they stay `NEVER`),
    /// so its hot path moves the object alone.
    stamps: UnsafeCell<(u64, u64)>,
}

// SAFETY: a slot moves `T` values between threads (so `T: Send`), and only
// the one thread that set `BUSY` touches `object` until it clears it.
unsafe impl<T: Send> Send for Slot<T> {}
// SAFETY: as above; `&Slot` gives no access to a `&T`.
unsafe impl<T: Send> Sync for Slot<T> {}

impl<T> Slot<T> {
    pub(super) fn new() -> Self {
        Self {
            state: AtomicUsize::new(0),
            object: UnsafeCell::new(MaybeUninit::uninit()),
            stamps: UnsafeCell::new((NEVER, NEVER)),
        }
    }

    /// [`take`](Self::take) with the object's instants.
    pub(super) fn take_entry(&self) -> Option<Entry<T>> {
        let object = self.take_then(|stamps| {
            // SAFETY: called by `take_then` while this thread holds BUSY,
            // so no other thread touches the stamps.
            stamps.with(|stamps| unsafe { *stamps })
        })?;
        let (object, (dies, stale_at)) = object;
        Some(Entry {
            object,
            dies,
            stale_at,
        })
    }

    /// [`put`](Self::put) with the object's instants.
    pub(super) fn put_entry(&self, entry: Entry<T>, count: usize) -> Result<(), Entry<T>> {
        let Entry {
            object,
            dies,
            stale_at,
        } = entry;
        self.put_then(object, count, |stamps| {
            // SAFETY: called by `put_then` while this thread holds BUSY.
            stamps.with_mut(|stamps| unsafe { *stamps = (dies, stale_at) });
        })
        .map_err(|object| Entry {
            object,
            dies,
            stale_at,
        })
    }

    /// Takes the slot's object, if it holds one and no other thread is at
    /// it; never waits.
    #[inline(always)]
    pub(super) fn take(&self) -> Option<T> {
        self.take_then(|_| ()).map(|(object, ())| object)
    }

    /// `take`, also running `also` on the stamps while the slot is ours.
    #[inline(always)]
    fn take_then<R>(&self, also: impl FnOnce(&UnsafeCell<(u64, u64)>) -> R) -> Option<(T, R)> {
        // Relaxed: a guess for the CAS, which decides.
        let state = self.state.load(Ordering::Relaxed);
        if state & (FULL | BUSY) != FULL {
            return None;
        }
        // Acquire: pairs with the Release store that published the object,
        // so its bytes are visible before we read them.
        self.state
            .compare_exchange(
                state,
                state | BUSY,
                ordering_unless("pool::slot_take_relaxed", Ordering::Acquire),
                Ordering::Relaxed,
            )
            .ok()?;
        // SAFETY: FULL was set and we set BUSY, so the object is initialised
        // and ours alone; clearing FULL below makes this the only read.
        let object = self
            .object
            .with(|object| unsafe { std::ptr::read(object).assume_init() });
        let also = also(&self.stamps);
        // Release: our read happens before the next put's write (its CAS
        // Acquires this store).
        self.state.store(
            state & !FULL,
            ordering_unless("pool::slot_free_relaxed", Ordering::Release),
        );
        Some((object, also))
    }

    /// Puts `object` into the slot if it is empty and no other thread is at
    /// it; hands it back otherwise. Never waits. `count` is added to the
    /// put count: `PUT` for a guard's return, 0 for `prefill` (so the
    /// count is of returns alone, and only ever grows).
    #[inline(always)]
    pub(super) fn put(&self, object: T, count: usize) -> Result<(), T> {
        self.put_then(object, count, |_| ())
    }

    /// `put`, also running `also` on the stamps while the slot is ours.
    #[inline(always)]
    fn put_then(
        &self,
        object: T,
        count: usize,
        also: impl FnOnce(&UnsafeCell<(u64, u64)>),
    ) -> Result<(), T> {
        // Relaxed: a guess for the CAS, which decides.
        let state = self.state.load(Ordering::Relaxed);
        if state & (FULL | BUSY) != 0 {
            return Err(object);
        }
        if mutant("pool::slot_put_check_then_act") {
            // The mutant claims with a plain store after the check: two
            // putters can both write, and one object is lost.
            self.state.store(state | BUSY, Ordering::Relaxed);
        } else if self
            .state
            // Acquire: pairs with the Release store of the last take, whose
            // read of the old object must happen before our write.
            .compare_exchange(
                state,
                state | BUSY,
                ordering_unless("pool::slot_put_acquire_relaxed", Ordering::Acquire),
                Ordering::Relaxed,
            )
            .is_err()
        {
            return Err(object);
        }
        // SAFETY: FULL was clear and we set BUSY: the slot is ours and
        // holds no object to overwrite.
        self.object
            .with_mut(|slot| unsafe { slot.write(MaybeUninit::new(object)) });
        also(&self.stamps);
        // Release: publishes the object to the next take's Acquire CAS.
        self.state.store(
            state.wrapping_add(count) | FULL,
            ordering_unless("pool::slot_publish_relaxed", Ordering::Release),
        );
        Ok(())
    }

    /// The state word now, for `len` and `stats`.
    pub(super) fn state(&self) -> usize {
        // Acquire: pairs with the publishing Release stores, as in `take`,
        // so `stats` sees the events a count covers.
        self.state.load(Ordering::Acquire)
    }
}

impl<T> Drop for Slot<T> {
    fn drop(&mut self) {
        // Relaxed: `&mut self` is exclusive; BUSY is never left set.
        if self.state.load(Ordering::Relaxed) & FULL != 0 {
            // SAFETY: FULL means the object is initialised, and nothing
            // reads it after this.
            self.object
                .with_mut(|object| unsafe { (*object).assume_init_drop() });
        }
    }
}

/// A pool's front slots, each on its own cache line.
pub(super) type Front<T> = Box<[CachePadded<Slot<T>>]>;

impl<T, E> Pool<T, E> {
    /// The calling thread's home slot: its thread index modulo the number
    /// of front slots; `NO_HOME` if there are none or the thread has no
    /// index (its thread-locals are being destroyed).
    #[inline(always)]
    pub(super) fn home(&self) -> usize {
        let slots = self.front.len();
        if slots == 0 {
            return NO_HOME;
        }
        match thread_index() {
            // Indices are dense from 0, but small pools divide for most
            // threads: a 32-bit division (slots <= MAX_FRONT; truncating a
            // huge index still picks a valid slot).
            Some(index) if index < slots => index,
            Some(index) => (index as u32 % slots as u32) as usize,
            None => NO_HOME,
        }
    }
}
