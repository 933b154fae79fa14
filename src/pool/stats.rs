//! Statistics: the per-thread [`Stripes`] that count returns into the
//! queue, the [`RareCounts`] of the rare paths, and the [`PoolStats`]
//! snapshot that [`Pool::stats`] derives from them.

use std::fmt;
use std::time::Duration;

use crossbeam_utils::CachePadded;

use super::slots::{FULL, MAX_FRONT, PUT};
use super::Pool;
use crate::sync::{mutant, thread_index, AtomicPtr, AtomicUsize, Ordering};

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
pub(super) struct Stripes {
    /// Bucket `b`: null, or `1 << (b + FIRST_BUCKET_BITS)` stripes, set once.
    buckets: [AtomicPtr<Stripe>; BUCKETS],
    /// For threads without a stripe of their own; counted with `fetch_add`.
    shared: Stripe,
}

impl Stripes {
    pub(super) fn new() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut())),
            shared: new_stripe(),
        }
    }

    /// Counts one event for the calling thread.
    #[inline(always)]
    pub(super) fn count(&self) {
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

pub(super) struct RareCounts {
    /// Factory successes for a guard (`instance` found nothing idle).
    pub(super) made_for_guard: AtomicUsize,
    /// Factory successes for `prefill`.
    pub(super) made_for_prefill: AtomicUsize,
    /// Factory calls that returned an error or panicked.
    pub(super) failed: AtomicUsize,
    /// Guard objects dropped because the pool was full.
    pub(super) full_on_return: AtomicUsize,
    /// Prefilled objects dropped because the pool filled up meanwhile.
    pub(super) full_on_prefill: AtomicUsize,
    /// Objects removed for good with `take`.
    pub(super) taken: AtomicUsize,
    /// Objects dropped because the reset hook panicked on them.
    pub(super) reset_panicked: AtomicUsize,
    /// Idle objects dropped by `clear` (and, in a capped pool, by
    /// `close` and `resize`).
    pub(super) cleared: AtomicUsize,
    /// Capped pool: returns dropped because the pool was closed or over a
    /// shrunk cap, and objects `instance` made on a closed pool.
    pub(super) dropped_closed: AtomicUsize,
    /// Capped pool: objects the validation hook rejected.
    pub(super) rejected: AtomicUsize,
    /// Objects dropped past their `max_lifetime` or `idle_timeout`.
    pub(super) expired: AtomicUsize,
    /// Of the rejected and expired, those dropped at checkout: idle
    /// objects that were not reused (`reused` subtracts them, as it does
    /// `cleared`).
    pub(super) dropped_idle: AtomicUsize,
}

impl RareCounts {
    pub(super) fn new() -> Self {
        Self {
            made_for_guard: AtomicUsize::new(0),
            made_for_prefill: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            full_on_return: AtomicUsize::new(0),
            full_on_prefill: AtomicUsize::new(0),
            taken: AtomicUsize::new(0),
            reset_panicked: AtomicUsize::new(0),
            cleared: AtomicUsize::new(0),
            dropped_closed: AtomicUsize::new(0),
            rejected: AtomicUsize::new(0),
            expired: AtomicUsize::new(0),
            dropped_idle: AtomicUsize::new(0),
        }
    }
}

/// Counts one event.
pub(super) fn bump(counter: &AtomicUsize) {
    // Release: pairs with `stats`' Acquire loads (see `Stripes::count`).
    counter.fetch_add(1, Ordering::Release);
}

/// A snapshot of a [`Pool`]'s statistics: see [`Pool::stats`].
///
/// Every object made is [retired](Self::retired), idle or out: `created ==
/// retired() + idle + out` (`out` is derived that way), and every object
/// that became idle was reused, cleared or is idle (`reused` is
/// derived that way); see the [module documentation](crate::pool#statistics-without-a-shared-hot-line).
/// Exact at rest; a snapshot taken while other threads work is the state
/// at one moment of the call, give or take the operations in flight then
/// (at most one per thread), or, if the pool's counters kept changing
/// through every attempt, a fallback whose derived figures err low: the
/// error bound (see [`Pool::stats`]) holds however long the
/// reader is descheduled.
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
    /// Objects removed from the pool for good with [`PoolGuard::take`](super::PoolGuard::take).
    pub taken: usize,
    /// Idle objects dropped by [`Pool::clear`] (and, in a capped pool, by
    /// [`Pool::close`] and [`Pool::resize`], or found over the cap as they
    /// were put back).
    pub cleared: usize,
    /// Capped pool: objects dropped on return because the pool was closed
    /// or over a shrunk cap (and objects [`Pool::instance`] made on a
    /// closed pool, dropped on return).
    pub dropped_closed: usize,
    /// Objects a validation hook ([`is_valid`](super::PoolBuilder::is_valid),
    /// [`has_broken`](super::PoolBuilder::has_broken)) rejected.
    pub rejected: usize,
    /// Objects dropped at checkout or return because they had lived past
    /// [`max_lifetime`](super::PoolBuilder::max_lifetime) or sat idle past
    /// [`idle_timeout`](super::PoolBuilder::idle_timeout).
    pub expired: usize,
    /// Idle objects in the pool ([`Pool::len`]).
    pub idle: usize,
    /// Objects handed out in guards and not yet back (derived:
    /// `created - retired() - idle`).
    pub out: usize,
    /// Capped pool: acquires that found the pool at its cap and waited
    /// (or would have: a `try_get` refused counts too).
    pub waited: usize,
    /// Capped pool: acquires that gave up at their timeout.
    pub timed_out: usize,
    /// Capped pool: the time all those acquires waited, together.
    pub wait_total: Duration,
    /// Capped pool: the longest single wait.
    pub wait_longest: Duration,
    /// Capped pool: futex sleeps of waiting acquires (a wait may sleep
    /// more than once; a thread woken finds a barging thread took the
    /// object first, and sleeps again).
    pub sleeps: usize,
    /// Capped pool: times a waiter that starved (waited past 1 ms) turned
    /// the pool to hand-off (see
    /// [fairness](crate::pool#fairness)).
    pub handoffs: usize,
}

/// One line for a log, the counts that matter first:
/// `2 created (1 reused), 0 idle, 1 out; 1 returned, 1 dropped full`, then
/// the rare counts (`failed`, `reset panicked`, `taken`, `cleared`) only
/// when non-zero. For humans: the format may change; read the fields in
/// code.
///
/// ```
/// use multiopen::Pool;
///
/// let pool = Pool::with_max_size(|| 0u32, 1);
/// let (a, b) = (pool.instance(), pool.instance());
/// drop((a, b)); // one back to the pool, one dropped: the pool holds 1
/// let _c = pool.instance().take(); // reused, then taken for good
/// assert_eq!(
///     pool.stats().to_string(),
///     "2 created (1 reused), 0 idle, 0 out; 1 returned, 1 dropped full, 1 taken"
/// );
/// ```
impl fmt::Display for PoolStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} created ({} reused), {} idle, {} out; {} returned, {} dropped full",
            self.created, self.reused, self.idle, self.out, self.returned, self.dropped_full
        )?;
        for (count, what) in [
            (self.failed, "failed"),
            (self.reset_panicked, "reset panicked"),
            (self.taken, "taken"),
            (self.cleared, "cleared"),
            (self.dropped_closed, "dropped closed"),
            (self.rejected, "rejected"),
            (self.expired, "expired"),
            (self.waited, "waited"),
            (self.timed_out, "timed out"),
        ] {
            if count > 0 {
                write!(f, ", {count} {what}")?;
            }
        }
        Ok(())
    }
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
        self.dropped_full
            + self.reset_panicked
            + self.taken
            + self.cleared
            + self.dropped_closed
            + self.rejected
            + self.expired
    }
}

/// How many times [`Pool::stats`] reads the counters twice around the
/// queue's length, looking for two passes that agree, before it settles
/// for its fallback.
#[cfg(not(loom))]
const STATS_ATTEMPTS: usize = 16;
/// Under loom, 1: one preemption of the reader reaches the fallback, so
/// the models check it as well as the agreeing passes.
#[cfg(loom)]
const STATS_ATTEMPTS: usize = 1;

/// The rare-path counters, in the order a forward pass reads them:
/// retirements before makes (see [`Pool::stats`]).
const RARE: usize = 12;
/// Index of the stripes' sum in a [`Pass`]; the slot words follow it.
const STRIPES: usize = RARE;
/// Values in a [`Pass`]: the rare counters, the stripes' sum, and up to
/// `MAX_FRONT` slot words.
const PASS: usize = RARE + 1 + MAX_FRONT;

/// One read of every counter `stats` derives its snapshot from: `[0,
/// RARE)` the rare counters (see `rare_counter`), `STRIPES` the stripes'
/// sum (returns into the queue), then one state word per front slot
/// (unused entries stay 0). Every value only ever grows, but for a slot
/// word's `FULL` bit, which changes with every take and put, and every put
/// but `prefill`'s also grows the word's put count.
type Pass = [usize; PASS];

impl<T, E> Pool<T, E> {
    /// Rare counter `k` of a [`Pass`].
    fn rare_counter(&self, k: usize) -> &AtomicUsize {
        let rare = &*self.rare;
        match k {
            0 => &rare.full_on_prefill,
            1 => &rare.full_on_return,
            2 => &rare.taken,
            3 => &rare.reset_panicked,
            4 => &rare.cleared,
            5 => &rare.dropped_closed,
            6 => &rare.rejected,
            7 => &rare.expired,
            8 => &rare.dropped_idle,
            9 => &rare.made_for_guard,
            10 => &rare.made_for_prefill,
            _ => &rare.failed,
        }
    }

    /// Value `k` of a [`Pass`], read now.
    fn read_one(&self, k: usize) -> usize {
        // Acquire throughout (here, in `Stripes::sum` and in `Slot::state`):
        // pairs with the counting Release operations, so a counted event's
        // effects (a push, a drop) are seen with it.
        match k {
            k if k < RARE => self.rare_counter(k).load(Ordering::Acquire),
            STRIPES => self.stripes.sum(),
            k => self.front[k - STRIPES - 1].state(),
        }
    }

    /// Reads every counter once, forwards (rare counters, stripes, slots)
    /// or backwards.
    fn read_pass(&self, forwards: bool) -> Pass {
        let mut pass = [0; PASS];
        let used = STRIPES + 1 + self.front.len();
        if forwards {
            for (k, value) in pass.iter_mut().enumerate().take(used) {
                *value = self.read_one(k);
            }
        } else {
            for (k, value) in pass.iter_mut().enumerate().take(used).rev() {
                *value = self.read_one(k);
            }
        }
        pass
    }

    /// A snapshot of the pool's statistics; see [`PoolStats`] and, for how
    /// they are kept off the hot path, the
    /// [module documentation](crate::pool#statistics-without-a-shared-hot-line).
    ///
    /// Cost: two loads per counter, per front slot and per thread stripe,
    /// and the queue's `len`, per attempt; usually one attempt, at most
    /// 16. No lock, no wait: the pool's operations never wait for it.
    ///
    /// # The error bound
    ///
    /// At rest (no call in flight) the snapshot is exact. While other
    /// threads work, `stats` reads every counter, then the queue's length,
    /// then every counter again in the reverse order, and accepts the
    /// reading only if the two passes agree: every counter then held the
    /// same value from before the queue was read to after, so the snapshot
    /// is the state at that one moment, give or take the operations in
    /// flight at that moment (an event is counted just after it happens,
    /// or just before, for a drop): at most one per thread using the pool.
    /// In particular `out` never exceeds the objects out at that moment.
    /// That holds however long the calling thread is descheduled: a
    /// reading that other threads' operations overlap is thrown away.
    ///
    /// A capped pool's waiting counts (`waited`, `timed_out`,
    /// `wait_total`, `wait_longest`, `sleeps`, `handoffs`) are reports
    /// outside these books: read once, after the passes, each is a value it
    /// had during the call, not necessarily at the moment the passes
    /// describe (a wait in flight may be counted in `waited` and not yet
    /// in the others); `timed_out <= waited` always holds.
    ///
    /// If the counters change in each of 16 attempts (the pool's slow
    /// paths busy throughout), the fallback reports the last attempt's
    /// first pass: each count (`created`, `returned`, `dropped_full`,
    /// `taken`, `cleared`, `failed`, `reset_panicked`) is a value it had
    /// during the call, and the derived `out` and `reused` are lower
    /// estimates: `out` never exceeds the objects alive (made and not
    /// dropped) at one moment of the call, nor `reused` the objects made
    /// idle by then; neither is ever below zero.
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
        let mut attempt = 0;
        loop {
            attempt += 1;
            let before = self.read_pass(true);
            let queue_len = self.idle.len();
            let after = self.read_pass(false);
            // The mutant trusts the first pass alone, as `stats` once did.
            if before == after || mutant("pool::stats_no_recheck") {
                return self.with_waits(snapshot(&before, &before, queue_len));
            }
            if attempt == STATS_ATTEMPTS {
                return self.with_waits(snapshot(&before, &after, queue_len));
            }
        }
    }
}

impl<T, E> Pool<T, E> {
    /// `stats` with a capped pool's waiting counts, read once after the
    /// passes (see "The error bound" at [`Pool::stats`]): reports outside
    /// the books the passes balance. `timed_out` is read before `waited`,
    /// and a wait counts in `waited` when it starts and in `timed_out`
    /// when it ends, so `timed_out <= waited` in every snapshot.
    fn with_waits(&self, mut stats: PoolStats) -> PoolStats {
        if let Some(limit) = &self.limit {
            let c = &limit.counts;
            // Acquire: pairs with the Release bump of `timed_out`, so the
            // `waited` bump its waiter made first is seen by the load of
            // `waited` below. Relaxed for the rest: each a value it had
            // during the call.
            stats.timed_out = c.timed_out.load(Ordering::Acquire);
            stats.wait_total = Duration::from_nanos(c.wait_nanos.load(Ordering::Relaxed));
            stats.wait_longest = Duration::from_nanos(c.longest_nanos.load(Ordering::Relaxed));
            stats.sleeps = c.sleeps.load(Ordering::Relaxed);
            stats.handoffs = c.handoffs.load(Ordering::Relaxed);
            stats.waited = c.waited.load(Ordering::Relaxed);
        }
        stats
    }
}

/// The statistics from a first pass `early`, a later pass `late` (the
/// same one when the two agreed) and the queue's length, read between
/// them. The counts come from `early`; `out` and `reused` subtract
/// retirements and clears read in `late`, which can only be larger, so
/// they err low, never high (see [`Pool::stats`]).
fn snapshot(early: &Pass, late: &Pass, queue_len: usize) -> PoolStats {
    let [full_on_prefill, full_on_return, taken, reset_panicked, cleared, dropped_closed, rejected, expired, _dropped_idle, made_for_guard, made_for_prefill, failed] =
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11].map(|k| early[k]);
    let late_retired = late[..8].iter().fold(0usize, |sum, &n| sum.wrapping_add(n));
    // Idle objects dropped without a reuse: cleared, or refused at checkout.
    let late_cleared = late[4].wrapping_add(late[8]);
    let (mut in_front, mut front_returns) = (0, 0usize);
    for &state in &early[STRIPES + 1..] {
        in_front += state & FULL;
        front_returns = front_returns.wrapping_add(state / PUT);
    }
    let idle = in_front + queue_len;
    // Guard returns: into the queue (stripes) and into front slots.
    let returned = early[STRIPES].wrapping_add(front_returns);
    let created = made_for_guard.wrapping_add(made_for_prefill);
    // Made idle: prefilled objects that fitted, and returns.
    let pushed = made_for_prefill
        .saturating_sub(full_on_prefill)
        .saturating_add(returned);
    PoolStats {
        created,
        failed,
        // Popped by `clear` or by `instance`, or still there.
        reused: pushed.saturating_sub(late_cleared.saturating_add(idle)),
        returned,
        dropped_full: full_on_return.wrapping_add(full_on_prefill),
        reset_panicked,
        taken,
        cleared,
        dropped_closed,
        rejected,
        expired,
        idle,
        // Made, and neither retired nor idle.
        out: created.saturating_sub(late_retired.saturating_add(idle)),
        ..PoolStats::default()
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
