//! The capped pool's state word (see the parent module's doc): its bits,
//! documented at each constant, and the pure functions that read and
//! change it. No atomics here: `Limit` loads, computes with these, and
//! stores with one compare-and-swap.

use std::time::Duration;

use crate::sync::mutant;

/// Bits 0..17: idle tokens, objects counted idle in the storage.
pub(super) const IDLE_BITS: u32 = 17;
/// One idle token.
pub(super) const IDLE_ONE: u64 = 1;
pub(super) const IDLE_MASK: u64 = (1 << IDLE_BITS) - 1;
/// Bits 17..35: free tokens (`cap - live`), biased by `FREE_BIAS` so that
/// a shrunk cap can make it negative.
pub(super) const FREE_SHIFT: u32 = IDLE_BITS;
pub(super) const FREE_BITS: u32 = 18;
/// One free token.
pub(super) const FREE_ONE: u64 = 1 << FREE_SHIFT;
pub(super) const FREE_MASK: u64 = ((1 << FREE_BITS) - 1) << FREE_SHIFT;
/// The stored free field is `free + FREE_BIAS`, in `[0, 2^18)`.
pub(super) const FREE_BIAS: i64 = 1 << (FREE_BITS - 1);
/// Bits 35..50: registered waiting threads.
pub(super) const WAITER_SHIFT: u32 = FREE_SHIFT + FREE_BITS;
pub(super) const WAITER_ONE: u64 = 1 << WAITER_SHIFT;
/// The most waiting threads the word counts; a thread finding it full
/// yields and looks again instead of registering (2^15 - 1 = 32,767
/// threads; futures are not counted here).
pub(super) const MAX_WAITERS: u64 = (1 << 15) - 1;
/// Bit 50: a future's waker is registered in `Limit::wakers` (set and
/// cleared only by a future's compare-and-swap under that queue's lock,
/// so it is set exactly while the queue holds an entry).
pub(super) const ASYNC_WAITERS: u64 = 1 << (WAITER_SHIFT + 15);
/// Bits 51..61: barges, tokens taken by threads that were not registered
/// waiters while a wake was in flight (`WOKEN`); back to 0 when a woken
/// waiter looks. At [`BARGE_LIMIT`] nobody barges until it has looked.
pub(super) const BARGE_SHIFT: u32 = WAITER_SHIFT + 16;
const _: () = assert!(ASYNC_WAITERS >> WAITER_SHIFT == MAX_WAITERS + 1);
pub(super) const BARGE_ONE: u64 = 1 << BARGE_SHIFT;
pub(super) const BARGE_MASK: u64 = 0x3ff << BARGE_SHIFT;
/// Bit 61: a wake has been issued and no registered waiter has looked at
/// the word since: returns do not wake another.
pub(super) const WOKEN: u64 = 1 << 61;
/// Bit 62: a waiter starved (waited past [`STARVING`]): new arrivals queue
/// behind the registered waiters instead of barging.
pub(super) const HANDOFF: u64 = 1 << 62;
/// Bit 63: the pool is closed: every acquire is refused, returns drop.
pub(super) const CLOSED: u64 = 1 << 63;

/// The largest cap: the idle field's 17 bits (131,071 objects).
pub(in crate::pool) const MAX_LIVE: usize = (1 << IDLE_BITS) - 1;

/// How many tokens running threads may take past a woken waiter that has
/// not yet run (see the module doc): 1023, the barge field's largest
/// value. Lower limits (128, 255) were measured first and made waiters
/// sleep 2 to 7 times as often (BENCHMARKS.md, "The cap over-subscribed",
/// its design notes); at long holds the 1 ms [`STARVING`] switch bounds a
/// waiter's wait before this count does.
/// Under loom, 1, so that the models reach the limit.
#[cfg(not(loom))]
pub(super) const BARGE_LIMIT: u64 = 1023;
#[cfg(loom)]
pub(super) const BARGE_LIMIT: u64 = 1;

/// How long a waiter waits before it turns the pool to hand-off (see the
/// module doc; under loom a count of sleeps stands in: see `starved`).
#[cfg_attr(loom, allow(dead_code))]
pub(super) const STARVING: Duration = Duration::from_millis(1);

pub(super) fn idle(w: u64) -> u64 {
    w & IDLE_MASK
}

pub(super) fn free(w: u64) -> i64 {
    ((w & FREE_MASK) >> FREE_SHIFT) as i64 - FREE_BIAS
}

pub(super) fn waiters(w: u64) -> u64 {
    w >> WAITER_SHIFT & MAX_WAITERS
}

/// Does anyone wait: a thread counted, or a future registered?
pub(super) fn has_waiters(w: u64) -> bool {
    waiters(w) > 0 || w & ASYNC_WAITERS != 0
}

pub(super) fn barges(w: u64) -> u64 {
    (w & BARGE_MASK) >> BARGE_SHIFT
}

/// May a thread that is not a registered waiter take a token from `w`?
/// Not while a starving waiter waits (`HANDOFF`), nor once running
/// threads have taken [`BARGE_LIMIT`] tokens past a woken waiter that has
/// not run yet (the scheduler has not given it a CPU: the barging threads
/// then register, and leave their CPUs to it).
pub(super) fn may_barge(w: u64) -> bool {
    if !has_waiters(w) {
        return true;
    }
    // The mutants: a barger takes during hand-off, or past the limit.
    let starving = w & HANDOFF != 0 && !mutant("pool::cap_barge_in_handoff");
    let passed =
        w & WOKEN != 0 && barges(w) >= BARGE_LIMIT && !mutant("pool::cap_barge_past_limit");
    !(starving || passed)
}

/// `w` after a barge: counted while a wake is in flight.
pub(super) fn barged(w: u64) -> u64 {
    if w & WOKEN != 0 && barges(w) < BARGE_LIMIT {
        w + BARGE_ONE
    } else {
        w
    }
}

/// `w` after a registered waiter's look: any wake in flight is consumed,
/// and the barges past it forgotten.
pub(super) fn looked(w: u64) -> u64 {
    w & !(WOKEN | BARGE_MASK)
}

/// The word with `free` set to `value` (in `[-MAX_LIVE, MAX_LIVE]`).
pub(super) fn with_free(w: u64, value: i64) -> u64 {
    (w & !FREE_MASK) | (((value + FREE_BIAS) as u64) << FREE_SHIFT)
}

/// The word with one waiting thread fewer (and `HANDOFF` off once nobody
/// waits).
pub(super) fn unregister(w: u64) -> u64 {
    drained(w - WAITER_ONE)
}

/// `w` with `HANDOFF` off if nobody waits any more (the mutant leaves it
/// on, with nobody waiting).
pub(super) fn drained(w: u64) -> u64 {
    if has_waiters(w) || mutant("pool::cap_handoff_outlives_waiters") {
        w
    } else {
        w & !HANDOFF
    }
}
