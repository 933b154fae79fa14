//! [`Pool`]: objects that are expensive to make and cheap to reuse (buffers,
//! sessions, parsers), handed out and taken back by many threads at once.
//!
//! [`instance`](Pool::instance) hands out an idle object, or makes a new one
//! with the pool's factory if none is idle; the [`PoolGuard`] derefs to it
//! and puts it back when dropped. At most [`max_size`](Pool::max_size) idle
//! objects are kept: an object coming back to a full pool is dropped
//! instead. Idle objects sit in a few *front slots*, each padded to its
//! own cache line(s), and behind them in crossbeam's `ArrayQueue`
//! (`SegQueue` for an unbounded pool); each thread has a home slot, so
//! taking and returning are one compare-and-swap and one store on a line
//! no other thread writes while the threads using the pool have different
//! home slots (see [the layout](#the-layout-front-slots-then-the-queue)).
//! No lock and no system call; no thread ever waits on a front slot (one
//! that finds a slot busy moves on), while the queue behind them may spin
//! briefly as crossbeam's queues do. The factory runs only when no idle
//! object was found.
//!
//! ```
//! use multiopen::Pool;
//!
//! // Buffers, at most 4 kept idle (the default), cleared before reuse.
//! let buffers = Pool::builder(|| Vec::<u8>::with_capacity(4096))
//!     .reset(|buf| buf.clear())
//!     .build();
//! std::thread::scope(|s| {
//!     for id in 0..8u8 {
//!         let buffers = &buffers;
//!         s.spawn(move || {
//!             let mut buf = buffers.instance();
//!             assert!(buf.is_empty()); // fresh, or cleared by the reset hook
//!             buf.extend_from_slice(&[id; 100]);
//!         }); // `buf` goes back to the pool here
//!     }
//! });
//! let stats = buffers.stats();
//! assert_eq!(stats.created + stats.reused, 8); // 8 instances
//! assert_eq!(stats.returned + stats.dropped_full, 8); // 8 guards gone
//! assert!(buffers.len() <= 4);
//! ```
//!
//! A factory that can fail is given with [`Pool::try_builder`]; its pool
//! hands out objects with [`try_instance`](Pool::try_instance), which
//! returns the factory's error to the caller (a plain pool's
//! [`instance`](Pool::instance) cannot fail, so it returns the guard
//! itself).
//!
//! # From the Python seed
//!
//! `Pool(new_object, max_size=None, lock=None)` becomes
//! [`Pool::new`]`(factory)` (max size 4) or
//! [`Pool::with_max_size`]`(factory, max_size)`, with 0 meaning no upper
//! limit. The seed's `lock` argument has no counterpart and no meaning here:
//! the pool takes no lock at all, so there is nothing to pass in. Python's
//! `with pool.instance() as obj:` is the guard's scope; as in the seed, an
//! object goes back even if that scope panics (after the reset hook, if one
//! is set).
//!
//! # The layout: front slots, then the queue
//!
//! A bounded pool of `max_size` has `F = min(max_size - 1, 16)` front slots
//! and a queue of `max_size - F` (at least one), so it never holds more
//! than `max_size` idle objects, exactly, without a shared count. A slot is
//! a state word (holds an object, busy, and a count of puts) beside room
//! for one object, padded to a cache line. The thread with index `i` (a
//! small number unique among the process's live threads, lowest free
//! first, reused after a thread exits) calls slot `i % F` its home. So two
//! threads share a home slot when their indices are equal modulo `F`
//! (with the default `max_size` of 4, `F` is 3: indices 1 and 4 share);
//! sharing costs contention on that slot, never correctness.
//!
//! - A take tries the home slot (a compare-and-swap to *busy*, read the
//!   object, a store to *empty*), then the queue, then the other slots,
//!   and only then runs the factory.
//! - A return (after the reset hook) tries the slot of the thread that
//!   took the object (the guard remembers it), then the queue, then the
//!   other slots; only when every one of them was full when tried is the
//!   object dropped as *full*.
//! - A slot is *busy* for a few instructions with no user code in between;
//!   another thread that finds it busy treats it as unavailable and moves
//!   on, so no thread ever waits for another.
//!
//! Under concurrency a take can miss an object that lands in a slot it
//! already passed (and run the factory), and a return can miss a slot that
//! empties after it passed (and drop the object): the bound is never
//! exceeded, and the single-threaded behaviour is exact (`len() ==
//! max_size` after enough returns). An unbounded pool has 16 front slots
//! in front of its `SegQueue`. A slot holds its object inline, so the
//! slots take `F` × (the object's size rounded up to the padding, 128
//! bytes on x86_64) up front.
//!
//! Why: with a queue alone, every take and return of every thread hits the
//! queue's head and tail lines, which ping-pong between cores (a raw
//! `ArrayQueue` pop+push costs about 3× as much per thread at two threads
//! as at one), and under oversubscription `ArrayQueue` spins on a slot a
//! preempted thread left half-written. With home slots, two threads touch
//! different lines: at two threads the pool runs about 4× faster than the
//! raw queue (`BENCHMARKS.md`).
//!
//! # Statistics without a shared hot line
//!
//! [`stats`](Pool::stats) reports created, reused, returned, dropped
//! because full, and currently out (and a few more). Counting every take
//! and every return in shared counters would cost more than the pool
//! operations themselves: in `benches/pool.rs` two `fetch_add`s on padded
//! shared counters make a raw `ArrayQueue` pop+push 1.5–1.8× slower at one
//! thread and 2–6× at two (`BENCHMARKS.md`). So the pool counts as little as
//! it can on the hot path and derives the rest:
//!
//! - A return that finds room (*returned*) is the one event counted on the
//!   hot path. Into a front slot it costs nothing: the slot's state word
//!   counts its puts, in the same store that publishes the object. Into the
//!   queue it is counted in a per-thread stripe (its own cache line)
//!   written only by the thread that owns it, as a plain load and store
//!   (no read-modify-write, no line shared between threads).
//! - Every other event (factory ran, factory failed, dropped because full,
//!   taken for good, reset hook panicked, cleared) is on a path that already
//!   runs the factory or drops an object; each is a `fetch_add` on a counter
//!   in one padded block, away from the queue's lines.
//! - *Reused* (takes served from an idle object) is derived: every object
//!   that became idle (prefilled or returned) has been reused, cleared, or
//!   is still idle, so `reused = prefilled + returned - cleared - idle`.
//! - *Out* (objects in guards now) is derived the same way: every object
//!   made is retired (dropped because full, dropped by a panicking reset
//!   hook, taken, cleared), idle, or out.
//!
//! At rest (no call in flight) the snapshot is exact. One taken while other
//! threads work combines counters, slot words and the queue's length read
//! one after another, so *returned* can be off by the returns in flight,
//! and *reused* and *out* by the operations in flight (never below zero;
//! they may even step back between two snapshots).
//!
//! # Panics in the factory or the reset hook
//!
//! A panicking factory made no object: it is counted as failed and the panic
//! reaches the caller of `instance`. A panicking reset hook drops the object
//! it was resetting (counted as `reset_panicked`) and the panic propagates
//! from the guard's drop. Either way the pool stays consistent and later
//! calls work.
//!
//! # Compared with lockfree-object-pool
//!
//! lockfree-object-pool's `LinearObjectPool` also takes with one
//! compare-and-swap on a slot flag, but it has no maximum (it never drops
//! an object) and its slots are found by a shared linear search; at one
//! thread it is about as fast as this pool, at two threads it is several
//! times slower (`BENCHMARKS.md`).

use std::convert::Infallible;
use std::fmt;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use crossbeam_utils::CachePadded;

use crate::sync::{
    mutant, ordering_unless, thread_index, AtomicPtr, AtomicUsize, ObjectQueue, Ordering,
    UnsafeCell,
};

/// What makes an object; a fallible factory's error reaches the caller.
type Factory<T, E> = Box<dyn Fn() -> Result<T, E> + Send + Sync>;
/// What cleans an object before it goes back.
type Reset<T> = Box<dyn Fn(&mut T) + Send + Sync>;

// ---------------------------------------------------------------------------
// Front slots (`Slot`, `Front`)
//
// A bounded pool of `max_size` keeps its idle objects in `F` front slots
// plus an `ArrayQueue` of `max_size - F` (F = min(max_size - 1, MAX_FRONT),
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
const FULL: usize = 1;
/// Slot state, bit 1: a thread is moving an object in or out; until it
/// clears the bit (a few instructions later, no user code in between),
/// every other thread skips the slot, never waits on it.
const BUSY: usize = 2;
/// Slot state, bits 2 and up: how many guards ever returned an object into
/// the slot (wrapping at 2^(usize::BITS - 2): on a 32-bit target, after
/// about 10^9 returns into one slot, `stats().returned` drops by 2^30). A
/// return adds `PUT` in the same store that publishes the object, so
/// counting returns costs nothing extra; `prefill` adds 0.
const PUT: usize = 4;

/// The most front slots a pool has (each padded to 128 bytes on x86_64,
/// or more for a large object).
const MAX_FRONT: usize = 16;
/// A guard's `home` when its object did not come through a home slot
/// lookup (pool without front slots, or a thread without an index).
const NO_HOME: usize = usize::MAX;

/// One idle object's place, or none: see the layout comment above.
struct Slot<T> {
    /// `FULL`, `BUSY` and the put count, as documented at the constants.
    state: AtomicUsize,
    /// Initialised exactly while `FULL` is set (and `BUSY` clear).
    object: UnsafeCell<MaybeUninit<T>>,
}

// SAFETY: a slot moves `T` values between threads (so `T: Send`), and only
// the one thread that set `BUSY` touches `object` until it clears it.
unsafe impl<T: Send> Send for Slot<T> {}
// SAFETY: as above; `&Slot` gives no access to a `&T`.
unsafe impl<T: Send> Sync for Slot<T> {}

impl<T> Slot<T> {
    fn new() -> Self {
        Self {
            state: AtomicUsize::new(0),
            object: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    /// Takes the slot's object, if it holds one and no other thread is at
    /// it; never waits.
    #[inline(always)]
    fn take(&self) -> Option<T> {
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
        // Release: our read happens before the next put's write (its CAS
        // Acquires this store).
        self.state.store(
            state & !FULL,
            ordering_unless("pool::slot_free_relaxed", Ordering::Release),
        );
        Some(object)
    }

    /// Puts `object` into the slot if it is empty and no other thread is at
    /// it; hands it back otherwise. Never waits. `count` is added to the
    /// put count: `PUT` for a guard's return, 0 for `prefill` (so the
    /// count is of returns alone, and only ever grows).
    #[inline(always)]
    fn put(&self, object: T, count: usize) -> Result<(), T> {
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
        // Release: publishes the object to the next take's Acquire CAS.
        self.state.store(
            state.wrapping_add(count) | FULL,
            ordering_unless("pool::slot_publish_relaxed", Ordering::Release),
        );
        Ok(())
    }

    /// The state word now, for `len` and `stats`.
    fn state(&self) -> usize {
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
type Front<T> = Box<[CachePadded<Slot<T>>]>;

// ---------------------------------------------------------------------------
// Hot-path counters: per-thread stripes (`Stripes`)
//
// A stripe is one cache line holding a thread's count of returns that
// found room in the queue (returns into front slots are counted in the
// slots' state words). The stripe of thread index `i` (see
// `sync::thread_index`: unique among live threads, handed over between
// threads with Release/Acquire) is written only by the thread that holds
// `i`, with a load and a store. Stripes live in buckets
// allocated on first use: bucket `b` holds 2^(b + 3) stripes, so the first
// 8 thread indices share one small allocation and the table grows by
// doubling up to `BUCKETS`. A thread with no index (its thread-locals are
// being destroyed) or an index past the table counts in the `shared` stripe
// with `fetch_add`.
// ---------------------------------------------------------------------------

/// Bucket 0 holds `1 << FIRST_BUCKET_BITS` stripes.
const FIRST_BUCKET_BITS: u32 = 3;
/// Buckets in the table: 8 * (2^10 - 1) = 8184 stripes, for thread indices
/// below 8184. `sync::thread_index` reuses indices below 4096, so only a
/// program with thousands of live threads goes past the table (to the
/// shared stripe); the largest bucket is 4096 stripes, 512 KiB.
const BUCKETS: usize = 10;

/// One thread's hot-path counter, on a cache line of its own.
type Stripe = CachePadded<AtomicUsize>;

fn new_stripe() -> Stripe {
    CachePadded::new(AtomicUsize::new(0))
}

/// The hot-path counters of one pool: see the layout comment above.
struct Stripes {
    /// Bucket `b`: null, or `1 << (b + FIRST_BUCKET_BITS)` stripes, set once.
    buckets: [AtomicPtr<Stripe>; BUCKETS],
    /// For threads without a stripe of their own; counted with `fetch_add`.
    shared: Stripe,
}

impl Stripes {
    fn new() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut())),
            shared: new_stripe(),
        }
    }

    /// Counts one event for the calling thread.
    #[inline(always)]
    fn count(&self) {
        // The mutant gives every thread the same stripe, so two threads'
        // load+store pairs can interleave and lose a count.
        let index = if mutant("pool::stripes_shared_by_threads") {
            Some(0)
        } else {
            thread_index()
        };
        match index.and_then(|index| self.stripe(index)) {
            Some(counter) => {
                // Relaxed load: we are this stripe's only writer, so it reads
                // our own last store (or, after an index hand-over, the old
                // owner's, which the Acquire claim made visible). Release
                // store: a `stats` that sees this count also sees what
                // happened before it (the push it counts).
                counter.store(
                    counter.load(Ordering::Relaxed).wrapping_add(1),
                    Ordering::Release,
                );
            }
            None => {
                // Release: as for the store above; several writers here.
                self.shared.fetch_add(1, Ordering::Release);
            }
        }
    }

    /// The stripe of thread index `index`, allocating its bucket if needed;
    /// `None` past the table.
    #[inline(always)]
    fn stripe(&self, index: usize) -> Option<&Stripe> {
        let slot = index.checked_add(1 << FIRST_BUCKET_BITS)?;
        let top = usize::BITS - 1 - slot.leading_zeros();
        let bucket = (top - FIRST_BUCKET_BITS) as usize;
        let offset = slot - (1 << top);
        // Acquire: pairs with the Release CAS that published the bucket, so
        // its initialised stripes are visible.
        let mut stripes = self.buckets.get(bucket)?.load(Ordering::Acquire);
        if stripes.is_null() {
            stripes = self.grow(bucket);
        }
        // SAFETY: a non-null bucket pointer is a live allocation of
        // `1 << top` stripes (freed only in `drop`), and `offset < 1 << top`.
        Some(unsafe { &*stripes.add(offset) })
    }

    /// Allocates bucket `bucket`, or returns the one another thread
    /// published first.
    #[cold]
    #[inline(never)]
    fn grow(&self, bucket: usize) -> *mut Stripe {
        let len = Self::bucket_len(bucket);
        let fresh: Box<[Stripe]> = (0..len).map(|_| new_stripe()).collect();
        let fresh = Box::into_raw(fresh).cast::<Stripe>();
        // Release: publishes the initialised stripes to `stripe`'s Acquire.
        // Acquire on failure: we use the winner's stripes instead.
        match self.buckets[bucket].compare_exchange(
            std::ptr::null_mut(),
            fresh,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => fresh,
            Err(winner) => {
                // SAFETY: `fresh` came from `Box::into_raw` above with this
                // length and was never shared.
                drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(fresh, len)) });
                winner
            }
        }
    }

    fn bucket_len(bucket: usize) -> usize {
        1 << (bucket as u32 + FIRST_BUCKET_BITS)
    }

    /// The sum over all stripes.
    fn sum(&self) -> usize {
        // Acquire: pairs with the counting Release stores (see `count`).
        let mut total = self.shared.load(Ordering::Acquire);
        for (bucket, stripes) in self.buckets.iter().enumerate() {
            // Acquire: as in `stripe`.
            let stripes = stripes.load(Ordering::Acquire);
            if stripes.is_null() {
                continue;
            }
            for offset in 0..Self::bucket_len(bucket) {
                // SAFETY: as in `stripe`.
                let stripe = unsafe { &*stripes.add(offset) };
                // Acquire: pairs with the counting Release stores.
                total = total.wrapping_add(stripe.load(Ordering::Acquire));
            }
        }
        total
    }
}

impl Drop for Stripes {
    fn drop(&mut self) {
        for (bucket, stripes) in self.buckets.iter().enumerate() {
            // Relaxed: `&mut self` is exclusive.
            let stripes = stripes.load(Ordering::Relaxed);
            if !stripes.is_null() {
                let len = Self::bucket_len(bucket);
                // SAFETY: published by `grow` from a boxed slice of `len`
                // stripes; no reference into it outlives `&mut self`.
                drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(stripes, len)) });
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Rare-path counters (`RareCounts`): each bumped with a Release `fetch_add`
// on a path that already runs the factory or drops an object, and read with
// Acquire by `stats`.
// ---------------------------------------------------------------------------

struct RareCounts {
    /// Factory successes for a guard (`instance` found nothing idle).
    made_for_guard: AtomicUsize,
    /// Factory successes for `prefill`.
    made_for_prefill: AtomicUsize,
    /// Factory calls that returned an error or panicked.
    failed: AtomicUsize,
    /// Guard objects dropped because the pool was full.
    full_on_return: AtomicUsize,
    /// Prefilled objects dropped because the pool filled up meanwhile.
    full_on_prefill: AtomicUsize,
    /// Objects removed for good with `take`.
    taken: AtomicUsize,
    /// Objects dropped because the reset hook panicked on them.
    reset_panicked: AtomicUsize,
    /// Idle objects dropped by `clear`.
    cleared: AtomicUsize,
}

impl RareCounts {
    fn new() -> Self {
        Self {
            made_for_guard: AtomicUsize::new(0),
            made_for_prefill: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            full_on_return: AtomicUsize::new(0),
            full_on_prefill: AtomicUsize::new(0),
            taken: AtomicUsize::new(0),
            reset_panicked: AtomicUsize::new(0),
            cleared: AtomicUsize::new(0),
        }
    }
}

/// Counts one event.
fn bump(counter: &AtomicUsize) {
    // Release: pairs with `stats`' Acquire loads (see `Stripes::count`).
    counter.fetch_add(1, Ordering::Release);
}

/// Bumps a counter if dropped, that is, if the code it guards panics; the
/// normal path forgets it.
struct CountOnUnwind<'a>(&'a AtomicUsize);

impl Drop for CountOnUnwind<'_> {
    fn drop(&mut self) {
        bump(self.0);
    }
}

/// Drops a guard's object and bumps a counter if dropped, that is, if the
/// reset hook it guards panics; the normal path forgets it.
struct DiscardOnUnwind<'a, T> {
    object: &'a mut ManuallyDrop<T>,
    count: &'a AtomicUsize,
}

impl<T> Drop for DiscardOnUnwind<'_, T> {
    fn drop(&mut self) {
        bump(self.count);
        // SAFETY: `release`'s caller gave up the object, and the normal path
        // (which moves it into the queue) forgets this guard instead.
        unsafe { ManuallyDrop::drop(self.object) };
    }
}

/// A snapshot of a [`Pool`]'s statistics: see [`Pool::stats`].
///
/// Every object made is [retired](Self::retired), idle or out: `created ==
/// retired() + idle + out` (`out` is derived that way), and every object
/// that became idle was reused, cleared or is idle (`reused` is
/// derived that way); see the [module documentation](crate::pool#statistics-without-a-shared-hot-line).
/// Exact at rest; a snapshot taken while other threads work may be off by
/// the operations in flight.
///
/// ```
/// use multiopen::Pool;
///
/// let pool = Pool::with_max_size(|| 0u32, 1);
/// let a = pool.instance();
/// let b = pool.instance();
/// assert_eq!(pool.stats().out, 2);
/// drop(a); // back to the pool
/// drop(b); // the pool is full: dropped
/// let _c = pool.instance(); // reused
/// let s = pool.stats();
/// assert_eq!((s.created, s.returned, s.dropped_full, s.reused), (2, 1, 1, 1));
/// assert_eq!((s.idle, s.out), (0, 1));
/// assert_eq!(s.created, s.retired() + s.idle + s.out);
/// println!("{s:?}");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Objects the factory made (for guards and by `prefill`).
    pub created: usize,
    /// Factory calls that returned an error or panicked (no object made).
    pub failed: usize,
    /// Instances served from an idle object (derived from the others and
    /// the number idle).
    pub reused: usize,
    /// Objects that guards put back into the pool.
    pub returned: usize,
    /// Objects dropped because the pool was full (on return, or made by a
    /// `prefill` that found the pool filled meanwhile).
    pub dropped_full: usize,
    /// Objects dropped because the reset hook panicked on them.
    pub reset_panicked: usize,
    /// Objects removed from the pool for good with [`PoolGuard::take`].
    pub taken: usize,
    /// Idle objects dropped by [`Pool::clear`].
    pub cleared: usize,
    /// Idle objects in the pool ([`Pool::len`]).
    pub idle: usize,
    /// Objects handed out in guards and not yet back (derived:
    /// `created - retired() - idle`).
    pub out: usize,
}

impl PoolStats {
    /// Objects that have left the pool's hands for good: dropped because
    /// full, dropped by a panicking reset hook, taken, or cleared.
    ///
    /// ```
    /// use multiopen::Pool;
    /// let pool = Pool::new(|| 0u8);
    /// let _ = pool.instance().take();
    /// assert_eq!(pool.stats().retired(), 1);
    /// ```
    pub fn retired(&self) -> usize {
        self.dropped_full + self.reset_panicked + self.taken + self.cleared
    }
}

/// A pool of reusable objects made by a factory closure.
///
/// Create it with [`new`](Pool::new), [`with_max_size`](Pool::with_max_size)
/// or a [`builder`](Pool::builder) (reset hook, fallible factory through
/// [`try_builder`](Pool::try_builder)). `E` is the factory's error type,
/// [`Infallible`] for a plain factory.
///
/// # Costs
/// [`instance`](Pool::instance) with an object idle in the thread's home
/// slot, and dropping the guard into it: a compare-and-swap and a store
/// each, on the slot's own cache line, statistics included. When the home
/// slot is empty or full, a queue operation (a return into the queue also
/// bumps a per-thread counter: a load and a store on the thread's own
/// line), then the other slots. No lock, no system call, and (after a
/// thread's first use of a pool, which claims a thread index and may
/// allocate its counter stripe) no allocation. Otherwise `instance` runs
/// the factory, and a return to a full pool drops the object.
///
/// ```
/// use std::sync::Arc;
/// use multiopen::Pool;
///
/// let pool = Arc::new(Pool::new(|| String::with_capacity(64)));
/// let strings: Vec<_> = (0..4).map(|_| pool.instance_owned()).collect();
/// let workers: Vec<_> = strings
///     .into_iter()
///     .enumerate()
///     .map(|(i, mut s)| {
///         std::thread::spawn(move || {
///             s.clear();
///             s.push_str(&i.to_string());
///             s.len()
///         })
///     })
///     .collect();
/// for w in workers {
///     assert_eq!(w.join().unwrap(), 1);
/// }
/// assert_eq!(pool.len(), 4); // all four came back
/// ```
pub struct Pool<T, E = Infallible> {
    /// Idle objects in front of the queue: see the layout comment at `Slot`.
    front: Front<T>,
    /// The other idle objects.
    idle: ObjectQueue<T>,
    /// At most this many idle objects, front and queue together; 0 for no
    /// limit.
    max_size: usize,
    /// The hot-path counter: returns that found room.
    stripes: Stripes,
    /// Rare-path counters, away from the queue's and stripes' lines.
    rare: CachePadded<RareCounts>,
    factory: Factory<T, E>,
    reset: Option<Reset<T>>,
}

/// Builds a [`Pool`]: maximum size, reset hook. Made by [`Pool::builder`]
/// (plain factory) or [`Pool::try_builder`] (fallible factory).
///
/// ```
/// use multiopen::Pool;
///
/// let pool = Pool::builder(|| vec![0u8; 16])
///     .max_size(2)
///     .reset(|v| v.fill(0))
///     .build();
/// pool.instance()[0] = 9;
/// assert_eq!(pool.instance()[0], 0); // reset before it went back
/// assert_eq!(pool.max_size(), 2);
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct PoolBuilder<T, E = Infallible> {
    factory: Factory<T, E>,
    reset: Option<Reset<T>>,
    max_size: usize,
}

impl<T, E> PoolBuilder<T, E> {
    /// At most `max_size` idle objects are kept; 0 means no upper limit.
    /// The default is [`Pool::DEFAULT_MAX_SIZE`] (4). A bounded pool
    /// allocates its `max_size` places up front (up to 16 front slots,
    /// each padded to a cache line or more, the rest in crossbeam's
    /// `ArrayQueue`), so give the number of objects you mean to keep, and
    /// 0 for "as many as come back" (an unbounded pool allocates its 16
    /// front slots up front and its queue as it grows).
    ///
    /// ```
    /// use multiopen::Pool;
    /// let unbounded = Pool::builder(|| 0u8).max_size(0).build();
    /// let held: Vec<_> = (0..10).map(|_| unbounded.instance()).collect();
    /// drop(held);
    /// assert_eq!(unbounded.len(), 10); // nothing dropped
    /// ```
    pub fn max_size(mut self, max_size: usize) -> Self {
        self.max_size = max_size;
        self
    }

    /// Runs `hook` on every object a guard gives back, before it goes into
    /// the pool (for example, clear a buffer); if the pool then turns out to
    /// be full, the object is dropped all the same. Not run on objects that
    /// are [taken](PoolGuard::take). If the hook panics, the object is
    /// dropped and the panic propagates from the guard's drop.
    ///
    /// ```
    /// use multiopen::Pool;
    /// let pool = Pool::builder(String::new).reset(|s| s.clear()).build();
    /// pool.instance().push_str("used");
    /// assert_eq!(*pool.instance(), "");
    /// ```
    pub fn reset(mut self, hook: impl Fn(&mut T) + Send + Sync + 'static) -> Self {
        self.reset = Some(Box::new(hook));
        self
    }

    /// The pool. No object is made until the first
    /// [`instance`](Pool::instance) or [`prefill`](Pool::prefill).
    ///
    /// ```
    /// use multiopen::Pool;
    /// let pool = Pool::builder(|| 1u8).build();
    /// assert_eq!((pool.len(), pool.stats().created), (0, 0));
    /// ```
    pub fn build(self) -> Pool<T, E> {
        // Front slots: all but one of the places, up to MAX_FRONT; the queue
        // has the rest (at least one). The mutant forgets that the slots
        // count against `max_size`.
        let (front, queue) = match self.max_size {
            0 => (MAX_FRONT, 0),
            max_size => {
                let front = (max_size - 1).min(MAX_FRONT);
                if mutant("pool::front_outside_bound") {
                    (front, max_size)
                } else {
                    (front, max_size - front)
                }
            }
        };
        Pool {
            front: (0..front).map(|_| CachePadded::new(Slot::new())).collect(),
            idle: ObjectQueue::new(queue),
            max_size: self.max_size,
            stripes: Stripes::new(),
            rare: CachePadded::new(RareCounts::new()),
            factory: self.factory,
            reset: self.reset,
        }
    }
}

impl<T, E> fmt::Debug for PoolBuilder<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("max_size", &self.max_size)
            .field("reset", &self.reset.is_some())
            .finish_non_exhaustive()
    }
}

impl<T> Pool<T> {
    /// A pool of objects made by `factory`, keeping at most
    /// [`DEFAULT_MAX_SIZE`](Pool::DEFAULT_MAX_SIZE) (4) idle, as the seed's
    /// `Pool(new_object)`. The seed's `lock` argument has no counterpart:
    /// this pool takes no lock.
    ///
    /// ```
    /// use multiopen::Pool;
    /// let pool = Pool::new(|| vec![0u8; 1024]);
    /// assert_eq!(pool.instance().len(), 1024);
    /// assert_eq!(pool.max_size(), 4);
    /// ```
    pub fn new(factory: impl Fn() -> T + Send + Sync + 'static) -> Self {
        Self::builder(factory).build()
    }

    /// A pool keeping at most `max_size` idle objects; 0 means no upper
    /// limit (the seed's `max_size=0`).
    ///
    /// A bounded pool allocates its `max_size` places up front (front
    /// slots and crossbeam's `ArrayQueue`: see the
    /// [layout](crate::pool#the-layout-front-slots-then-the-queue)), so a
    /// huge bound costs that memory at once; for "no practical limit" pass
    /// 0.
    ///
    /// ```
    /// use multiopen::Pool;
    /// let pool = Pool::with_max_size(|| 0u64, 1);
    /// let (a, b) = (pool.instance(), pool.instance());
    /// drop((a, b));
    /// assert_eq!(pool.len(), 1); // the second one found the pool full
    /// ```
    pub fn with_max_size(factory: impl Fn() -> T + Send + Sync + 'static, max_size: usize) -> Self {
        Self::builder(factory).max_size(max_size).build()
    }

    /// A [`PoolBuilder`] for a pool of objects made by `factory`.
    ///
    /// ```
    /// use multiopen::Pool;
    /// let pool = Pool::builder(|| 5u8).max_size(8).build();
    /// assert_eq!(*pool.instance(), 5);
    /// ```
    pub fn builder(factory: impl Fn() -> T + Send + Sync + 'static) -> PoolBuilder<T> {
        PoolBuilder {
            factory: Box::new(move || Ok(factory())),
            reset: None,
            max_size: Self::DEFAULT_MAX_SIZE,
        }
    }

    /// An idle object, or a new one from the factory if none is idle (the
    /// seed's `instance()`). Dropping the guard puts the object back, or
    /// drops it if the pool is full.
    ///
    /// Cost: one slot take (a compare-and-swap and a store) when an object
    /// is idle in the thread's home slot, else one queue pop, else a look
    /// at the other front slots. A panicking factory's
    /// panic propagates (no object was made; the pool is unchanged but for
    /// the `failed` count).
    ///
    /// ```
    /// use multiopen::Pool;
    /// let pool = Pool::new(|| vec![1, 2, 3]);
    /// {
    ///     let mut v = pool.instance();
    ///     v.push(4);
    /// } // back into the pool
    /// assert_eq!(*pool.instance(), [1, 2, 3, 4]); // the same object
    /// ```
    #[inline]
    pub fn instance(&self) -> PoolGuard<'_, T> {
        match self.try_instance() {
            Ok(guard) => guard,
            Err(never) => match never {},
        }
    }

    /// Like [`instance`](Self::instance), but the guard holds an `Arc` of
    /// the pool, so it is `'static` and can move into a spawned thread; the
    /// pool lives at least as long as its owned guards.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use multiopen::Pool;
    /// let pool = Arc::new(Pool::new(|| 7u32));
    /// let guard = pool.instance_owned();
    /// drop(pool); // the guard keeps the pool alive
    /// let t = std::thread::spawn(move || *guard);
    /// assert_eq!(t.join().unwrap(), 7);
    /// ```
    #[inline]
    pub fn instance_owned(self: &Arc<Self>) -> OwnedPoolGuard<T> {
        match self.try_instance_owned() {
            Ok(guard) => guard,
            Err(never) => match never {},
        }
    }

    /// Makes up to `n` objects and puts them in the pool, stopping when it
    /// holds `max_size` idle objects; returns how many were added.
    ///
    /// ```
    /// use multiopen::Pool;
    /// let pool = Pool::with_max_size(|| [0u8; 64], 3);
    /// assert_eq!(pool.prefill(5), 3); // room for 3 only
    /// assert_eq!(pool.len(), 3);
    /// let _a = pool.instance();
    /// assert_eq!(pool.stats().reused, 1);
    /// ```
    pub fn prefill(&self, n: usize) -> usize {
        match self.try_prefill(n) {
            Ok(added) => added,
            Err(never) => match never {},
        }
    }
}

impl<T, E> Pool<T, E> {
    /// How many idle objects a pool keeps unless told otherwise: 4, as in
    /// the seed.
    ///
    /// ```
    /// use multiopen::Pool;
    /// assert_eq!(Pool::<u8>::DEFAULT_MAX_SIZE, 4);
    /// ```
    pub const DEFAULT_MAX_SIZE: usize = 4;

    /// A [`PoolBuilder`] for a pool whose factory can fail: its error
    /// reaches the caller of [`try_instance`](Self::try_instance) (and of
    /// [`try_prefill`](Self::try_prefill)).
    ///
    /// ```
    /// use multiopen::Pool;
    ///
    /// let pool = Pool::try_builder(|| std::fs::File::open("/definitely/not/here"))
    ///     .max_size(2)
    ///     .build();
    /// assert!(pool.try_instance().is_err());
    /// assert_eq!(pool.stats().failed, 1);
    /// ```
    pub fn try_builder(
        factory: impl Fn() -> Result<T, E> + Send + Sync + 'static,
    ) -> PoolBuilder<T, E> {
        PoolBuilder {
            factory: Box::new(factory),
            reset: None,
            max_size: Self::DEFAULT_MAX_SIZE,
        }
    }

    /// An idle object, or a new one from the factory; a factory error is
    /// returned as is (and counted as failed). The `instance` of a pool with
    /// a fallible factory.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use multiopen::Pool;
    ///
    /// let tries = AtomicU32::new(0);
    /// let pool = Pool::try_builder(move || match tries.fetch_add(1, Ordering::Relaxed) {
    ///     0 => Err("busy"),
    ///     n => Ok(n),
    /// })
    /// .build();
    /// assert_eq!(pool.try_instance().unwrap_err(), "busy");
    /// assert_eq!(*pool.try_instance()?, 1); // the next call tries again
    /// # Ok::<(), &str>(())
    /// ```
    #[inline]
    pub fn try_instance(&self) -> Result<PoolGuard<'_, T, E>, E> {
        let (object, home) = self.acquire()?;
        Ok(PoolGuard {
            object: ManuallyDrop::new(object),
            home,
            pool: self,
        })
    }

    /// [`try_instance`](Self::try_instance) with an owned guard, as
    /// [`instance_owned`](Pool::instance_owned).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use multiopen::Pool;
    /// let pool = Arc::new(Pool::try_builder(|| "x".parse::<u8>()).build());
    /// assert!(pool.try_instance_owned().is_err());
    /// ```
    #[inline]
    pub fn try_instance_owned(self: &Arc<Self>) -> Result<OwnedPoolGuard<T, E>, E> {
        let (object, home) = self.acquire()?;
        Ok(OwnedPoolGuard {
            object: ManuallyDrop::new(object),
            home,
            pool: Arc::clone(self),
        })
    }

    /// [`prefill`](Pool::prefill) for a fallible factory: stops at the
    /// first error and returns it (objects made before it stay in the pool).
    ///
    /// ```
    /// use multiopen::Pool;
    /// let pool = Pool::try_builder(|| Ok::<_, std::io::Error>(0u8)).build();
    /// assert_eq!(pool.try_prefill(2)?, 2);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn try_prefill(&self, n: usize) -> Result<usize, E> {
        let mut added = 0;
        while added < n && self.has_room() {
            // Counted as made only once placed (or dropped): until then
            // `stats` sees it neither made nor idle, rather than made and
            // not idle, which would pass for a reuse.
            let object = self.make(None)?;
            let placed = match self.put_in_front(object, NO_HOME, 0) {
                Ok(()) => Ok(()),
                Err(object) => self.idle.push(object),
            };
            match placed {
                Ok(()) => {
                    bump(&self.rare.made_for_prefill);
                    added += 1;
                }
                Err(object) => {
                    // Returns filled the pool since the room check. The
                    // mutant trusts the check and loses track of the object.
                    // Dropped before made, as `stats` reads them.
                    if !mutant("pool::prefill_assumes_room") {
                        bump(&self.rare.full_on_prefill);
                    }
                    bump(&self.rare.made_for_prefill);
                    drop(object);
                    break;
                }
            }
        }
        Ok(added)
    }

    /// Idle objects in the pool now (at most [`max_size`](Self::max_size)
    /// unless unbounded).
    ///
    /// ```
    /// use multiopen::Pool;
    /// let pool = Pool::new(|| 0u8);
    /// drop(pool.instance());
    /// assert_eq!(pool.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        let in_front = self
            .front
            .iter()
            .filter(|slot| slot.state() & FULL != 0)
            .count();
        in_front + self.idle.len()
    }

    /// Is no object idle?
    ///
    /// ```
    /// use multiopen::Pool;
    /// let pool = Pool::new(|| 0u8);
    /// assert!(pool.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most idle objects kept; 0 means no upper limit.
    ///
    /// ```
    /// use multiopen::Pool;
    /// assert_eq!(Pool::with_max_size(|| 0u8, 16).max_size(), 16);
    /// assert_eq!(Pool::with_max_size(|| 0u8, 0).max_size(), 0);
    /// ```
    pub fn max_size(&self) -> usize {
        self.max_size
    }

    /// Drops the objects idle now and returns how many. Objects out in
    /// guards are untouched and come back as usual; objects returned while
    /// `clear` runs may stay.
    ///
    /// ```
    /// use multiopen::Pool;
    /// let pool = Pool::new(|| 0u8);
    /// pool.prefill(3);
    /// assert_eq!(pool.clear(), 3);
    /// assert!(pool.is_empty());
    /// assert_eq!(pool.stats().cleared, 3);
    /// ```
    pub fn clear(&self) -> usize {
        let mut dropped = 0;
        for slot in self.front.iter() {
            if let Some(object) = slot.take() {
                bump(&self.rare.cleared);
                drop(object);
                dropped += 1;
            }
        }
        // At most the number idle now, so returns cannot keep us looping.
        for _ in 0..self.idle.len() {
            let Some(object) = self.idle.pop() else { break };
            bump(&self.rare.cleared);
            drop(object);
            dropped += 1;
        }
        dropped
    }

    /// A snapshot of the pool's statistics; see [`PoolStats`] and, for how
    /// they are kept off the hot path, the
    /// [module documentation](crate::pool#statistics-without-a-shared-hot-line).
    ///
    /// Cost: a load per counter, per front slot and per thread stripe, and
    /// the queue's `len`. Exact at rest; while other threads work, a sum of
    /// counters read one after another.
    ///
    /// ```
    /// use multiopen::Pool;
    /// let pool = Pool::new(|| 0u8);
    /// let g = pool.instance();
    /// let s = pool.stats();
    /// assert_eq!((s.created, s.out, s.idle), (1, 1, 0));
    /// drop(g);
    /// assert_eq!(pool.stats().returned, 1);
    /// ```
    pub fn stats(&self) -> PoolStats {
        let rare = &*self.rare;
        // Acquire throughout (here and in `Slot::state`): pairs with the
        // counting Release operations, so a counted event's effects (a
        // push, a drop) are seen with it.
        //
        // The order makes the snapshot err on the side of fewer reuses:
        // retirements before makes (a prefill that makes an object and then
        // drops it for want of room between the two reads is seen made,
        // never dropped but not made, which would underflow), makes before
        // the idle objects (a prefilled object made after its read but put
        // before the slots' is idle and not made, so it cannot pass for a
        // reuse), the queue returns before the queue (likewise). A slot's
        // idle object and its return count come from one word.
        let full_on_prefill = rare.full_on_prefill.load(Ordering::Acquire);
        let full_on_return = rare.full_on_return.load(Ordering::Acquire);
        let taken = rare.taken.load(Ordering::Acquire);
        let reset_panicked = rare.reset_panicked.load(Ordering::Acquire);
        let cleared = rare.cleared.load(Ordering::Acquire);
        let made_for_guard = rare.made_for_guard.load(Ordering::Acquire);
        let made_for_prefill = rare.made_for_prefill.load(Ordering::Acquire);
        let queue_returns = self.stripes.sum();
        let (mut in_front, mut front_returns) = (0, 0usize);
        for slot in self.front.iter() {
            let state = slot.state();
            in_front += state & FULL;
            front_returns = front_returns.wrapping_add(state / PUT);
        }
        let idle = in_front + self.idle.len();
        // Guard returns: into the queue (stripes) and into front slots.
        let returned = queue_returns.wrapping_add(front_returns);
        let created = made_for_guard + made_for_prefill;
        let retired = full_on_return + full_on_prefill + taken + reset_panicked + cleared;
        // Made idle: prefilled objects that fitted, and returns.
        let pushed = made_for_prefill
            .saturating_sub(full_on_prefill)
            .saturating_add(returned);
        PoolStats {
            created,
            failed: rare.failed.load(Ordering::Acquire),
            // Popped by `clear` or by `instance`, or still there.
            reused: pushed.saturating_sub(cleared + idle),
            returned,
            dropped_full: full_on_return + full_on_prefill,
            reset_panicked,
            taken,
            cleared,
            idle,
            // Made, and neither retired nor idle.
            out: created.saturating_sub(retired + idle),
        }
    }

    // ----- the two hot paths and their slow sides -----

    /// Takes an idle object or makes one (home slot, queue, other front
    /// slots, factory). Returns it with the calling thread's home slot, for the guard.
    #[inline]
    fn acquire(&self) -> Result<(T, usize), E> {
        let home = self.home();
        if let Some(object) = self.front.get(home).and_then(|slot| slot.take()) {
            return Ok((object, home));
        }
        if let Some(object) = self.idle.pop() {
            return Ok((object, home));
        }
        self.take_elsewhere_or_make(home)
            .map(|object| (object, home))
    }

    /// `acquire` when the home slot and the queue had nothing: the other
    /// front slots, then the factory.
    #[inline(never)]
    fn take_elsewhere_or_make(&self, home: usize) -> Result<T, E> {
        for (index, slot) in self.front.iter().enumerate() {
            if index != home {
                if let Some(object) = slot.take() {
                    return Ok(object);
                }
            }
        }
        self.make(Some(&self.rare.made_for_guard))
    }

    /// The calling thread's home slot: its thread index modulo the number
    /// of front slots; `NO_HOME` if there are none or the thread has no
    /// index (its thread-locals are being destroyed).
    #[inline(always)]
    fn home(&self) -> usize {
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

    /// Puts `object` into the first front slot that takes it, other than
    /// `skip`; hands it back if none does.
    fn put_in_front(&self, mut object: T, skip: usize, count: usize) -> Result<(), T> {
        for (index, slot) in self.front.iter().enumerate() {
            if index != skip {
                match slot.put(object, count) {
                    Ok(()) => return Ok(()),
                    Err(back) => object = back,
                }
            }
        }
        Err(object)
    }

    /// `release` when the home slot and the queue were full: the other
    /// front slots, or drop it.
    #[inline(never)]
    fn put_elsewhere_or_drop(&self, object: T, home: usize) {
        if let Err(object) = self.put_in_front(object, home, PUT) {
            self.drop_full(object);
        }
    }

    /// Puts a guard's object back (into front slot `home` if it can, else
    /// the queue, else another front slot), or drops it if the pool is
    /// full. The reset hook runs on the object where it lies, and the
    /// object moves once, into its place.
    ///
    /// SAFETY (caller): `object` holds a value and is not used again.
    #[inline]
    unsafe fn release(&self, object: &mut ManuallyDrop<T>, home: usize) {
        if let Some(reset) = &self.reset {
            // If the hook panics, this drops the object and counts it.
            let discard = DiscardOnUnwind {
                object: &mut *object,
                count: &self.rare.reset_panicked,
            };
            if std::thread::panicking() {
                // The guard is dropped during unwinding: a second panic
                // would abort the process, so catch it; `discard` has then
                // already dropped and counted the object.
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    reset(&mut *discard.object);
                    discard
                }));
                match ran {
                    Ok(discard) => std::mem::forget(discard),
                    Err(_) => return,
                }
            } else {
                reset(&mut *discard.object);
                std::mem::forget(discard);
            }
        }
        // SAFETY: the caller gives up `object`; it is moved out once.
        let object = unsafe { ManuallyDrop::take(object) };
        let object = match self.front.get(home) {
            Some(slot) => match slot.put(object, PUT) {
                Ok(()) => return, // counted in the slot's state word
                Err(object) => object,
            },
            None => object,
        };
        match self.idle.push(object) {
            Ok(()) => self.stripes.count(),
            Err(object) => self.put_elsewhere_or_drop(object, home),
        }
    }

    /// Runs the factory, counting the outcome in `made` (if given: `prefill`
    /// counts its objects itself, once placed) or `failed`.
    #[cold]
    #[inline(never)]
    fn make(&self, made: Option<&AtomicUsize>) -> Result<T, E> {
        // The mutant forgets to count a factory that panics.
        let panicked =
            (!mutant("pool::factory_panic_uncounted")).then(|| CountOnUnwind(&self.rare.failed));
        let result = (self.factory)();
        std::mem::forget(panicked);
        match (&result, made) {
            (Ok(_), Some(made)) => bump(made),
            (Ok(_), None) => {}
            (Err(_), _) => bump(&self.rare.failed),
        }
        result
    }

    #[cold]
    #[inline(never)]
    fn drop_full(&self, object: T) {
        bump(&self.rare.full_on_return);
        drop(object);
    }

    fn has_room(&self) -> bool {
        self.max_size == 0 || self.len() < self.max_size
    }
}

impl<T, E> fmt::Debug for Pool<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("max_size", &self.max_size())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// An object from a [`Pool`]; puts it back when dropped (or drops it if the
/// pool is full). Dereferences to the object.
///
/// ```
/// use multiopen::Pool;
/// let pool = Pool::new(|| String::from("hello"));
/// let mut s = pool.instance();
/// s.push('!'); // DerefMut
/// assert_eq!(s.len(), 6); // Deref
/// drop(s);
/// assert_eq!(*pool.instance(), "hello!");
/// ```
#[must_use = "dropping the guard returns the object at once"]
pub struct PoolGuard<'a, T, E = Infallible> {
    object: ManuallyDrop<T>,
    /// The front slot to try first on return (`NO_HOME`: none).
    home: usize,
    pool: &'a Pool<T, E>,
}

/// An object from an `Arc<Pool>`: like [`PoolGuard`], but it owns a
/// reference to the pool, so it is `'static`, can move into a spawned
/// thread, and keeps the pool alive.
///
/// ```
/// use std::sync::Arc;
/// use multiopen::Pool;
/// let pool = Arc::new(Pool::new(|| vec![0u8; 8]));
/// let mut buf = pool.instance_owned();
/// std::thread::spawn(move || buf[0] = 1).join().unwrap();
/// assert_eq!(pool.instance()[0], 1);
/// ```
#[must_use = "dropping the guard returns the object at once"]
pub struct OwnedPoolGuard<T, E = Infallible> {
    object: ManuallyDrop<T>,
    /// As in [`PoolGuard`].
    home: usize,
    pool: Arc<Pool<T, E>>,
}

impl<'a, T, E> PoolGuard<'a, T, E> {
    /// Removes the object from the pool for good: it will not come back.
    ///
    /// ```
    /// use multiopen::Pool;
    /// let pool = Pool::new(|| vec![1u8]);
    /// let mine: Vec<u8> = pool.instance().take();
    /// assert_eq!(mine, [1]);
    /// assert_eq!((pool.len(), pool.stats().taken), (0, 1));
    /// ```
    pub fn take(self) -> T {
        let mut this = ManuallyDrop::new(self);
        bump(&this.pool.rare.taken);
        // SAFETY: `this` is never dropped or used again, so the object is
        // moved out exactly once.
        unsafe { ManuallyDrop::take(&mut this.object) }
    }

    /// The pool the object came from.
    ///
    /// ```
    /// use multiopen::Pool;
    /// let pool = Pool::new(|| 0u8);
    /// let g = pool.instance();
    /// assert!(std::ptr::eq(g.pool(), &pool));
    /// ```
    pub fn pool(&self) -> &'a Pool<T, E> {
        self.pool
    }
}

impl<T, E> OwnedPoolGuard<T, E> {
    /// Removes the object from the pool for good, as [`PoolGuard::take`].
    ///
    /// ```
    /// use std::sync::Arc;
    /// use multiopen::Pool;
    /// let pool = Arc::new(Pool::new(|| 3u8));
    /// assert_eq!(pool.instance_owned().take(), 3);
    /// assert_eq!(pool.stats().taken, 1);
    /// ```
    pub fn take(self) -> T {
        let mut this = ManuallyDrop::new(self);
        bump(&this.pool.rare.taken);
        // SAFETY: `this` is never dropped or used again, so the object and
        // the Arc are each moved out exactly once.
        // The object first: dropping the last `Arc` may run other objects'
        // `Drop`, and a panic there must not leak this one.
        let (object, pool) = unsafe {
            (
                ManuallyDrop::take(&mut this.object),
                std::ptr::read(&this.pool),
            )
        };
        drop(pool);
        object
    }

    /// The pool the object came from.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use multiopen::Pool;
    /// let pool = Arc::new(Pool::new(|| 0u8));
    /// let g = pool.instance_owned();
    /// assert!(Arc::ptr_eq(g.pool(), &pool));
    /// ```
    pub fn pool(&self) -> &Arc<Pool<T, E>> {
        &self.pool
    }
}

impl<T, E> Deref for PoolGuard<'_, T, E> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.object
    }
}

impl<T, E> DerefMut for PoolGuard<'_, T, E> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        &mut self.object
    }
}

impl<T, E> Deref for OwnedPoolGuard<T, E> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.object
    }
}

impl<T, E> DerefMut for OwnedPoolGuard<T, E> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        &mut self.object
    }
}

impl<T, E> Drop for PoolGuard<'_, T, E> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: the object is given up only here and in `take`, which
        // never lets the guard drop.
        unsafe { self.pool.release(&mut self.object, self.home) };
    }
}

impl<T, E> Drop for OwnedPoolGuard<T, E> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: as for `PoolGuard`.
        unsafe { self.pool.release(&mut self.object, self.home) };
    }
}

impl<T: fmt::Debug, E> fmt::Debug for PoolGuard<'_, T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PoolGuard").field(&*self.object).finish()
    }
}

impl<T: fmt::Debug, E> fmt::Debug for OwnedPoolGuard<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("OwnedPoolGuard")
            .field(&*self.object)
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Thread indices the stripe table covers.
    const TABLE: usize = (1 << FIRST_BUCKET_BITS) * ((1 << BUCKETS) - 1);

    #[test]
    fn stripe_indices_map_to_distinct_stripes() {
        let stripes = Stripes::new();
        let mut seen = std::collections::HashSet::new();
        // Across the first four buckets (8 + 16 + 32 + 64 stripes) and the
        // last stripe of the last one.
        for index in (0..200).chain([TABLE - 1]) {
            let stripe = stripes.stripe(index).expect("inside the table");
            assert!(
                seen.insert(stripe as *const Stripe),
                "index {index} shares a stripe"
            );
            stripe.store(index, Ordering::Relaxed);
        }
        assert!(stripes.stripe(TABLE).is_none(), "past the table");
        assert!(stripes.stripe(usize::MAX).is_none());
        let expected: usize = (0..200).chain([TABLE - 1]).sum();
        assert_eq!(stripes.sum(), expected);
    }

    #[test]
    fn sum_includes_the_shared_stripe() {
        let stripes = Stripes::new();
        stripes.count();
        stripes.shared.fetch_add(2, Ordering::Relaxed);
        assert_eq!(stripes.sum(), 3);
    }

    #[test]
    fn live_threads_have_distinct_indices() {
        let barrier = std::sync::Barrier::new(16);
        let mut indices: Vec<usize> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..16)
                .map(|_| {
                    s.spawn(|| {
                        let index = thread_index().expect("not tearing down");
                        barrier.wait(); // all 16 alive at once
                        assert_eq!(thread_index(), Some(index), "stable within a thread");
                        index
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        indices.sort_unstable();
        indices.dedup();
        assert_eq!(indices.len(), 16);
    }
}
