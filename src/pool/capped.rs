//! A capped pool's take and return paths (chosen once, at build time: an
//! uncapped pool never comes here), and the calls that only a capped pool
//! answers: `close`, `resize`, and the waits of `get`.
//!
//! The storage is the uncapped pool's (front slots, then the queue); the
//! [`Limit`] beside it counts every object alive. See `limit.rs` for the
//! state word, and the order every path keeps: an object is put into the
//! storage *before* it is counted idle, and dropped *before* its room is
//! given back, so the objects alive never exceed the cap.

use std::mem::ManuallyDrop;

use super::error::PoolError;
use super::lifetime::Entry;
use super::limit::{Limit, Patience, Refused, RoomOnUnwind, Token, Verdict};
use super::slots::{NO_HOME, PUT};
use super::stats::bump;
use super::take::{drop_object, CountOnUnwind};
use super::Pool;
use crate::sync::{mutant, yield_now, AtomicUsize};
use crate::unwind;

/// Drops a guard's object, counts it and gives its room back if dropped,
/// that is, if the reset hook it guards panics; the normal path forgets
/// it. As `take::DiscardOnUnwind`, for a capped pool.
struct DiscardCappedOnUnwind<'a, T> {
    object: &'a mut ManuallyDrop<T>,
    count: &'a AtomicUsize,
    limit: &'a Limit,
}

impl<T> Drop for DiscardCappedOnUnwind<'_, T> {
    fn drop(&mut self) {
        bump(self.count);
        let _room = RoomOnUnwind(self.limit);
        let object = &mut *self.object;
        // SAFETY: `release_capped`'s caller gave up the object, and the
        // normal path (which moves it on) forgets this guard instead.
        unwind::in_cleanup(|| unsafe { ManuallyDrop::drop(object) });
    }
}

/// An object taken (with the home slot for its guard), or why not.
pub(super) type Taken<T, E> = Result<(Entry<T>, usize), PoolError<E>>;

impl<T, E> Pool<T, E> {
    /// An object (and the home slot for its guard) within `patience`, or
    /// why not. Any pool: an uncapped one never waits.
    pub(super) fn acquire_within(
        &self,
        patience: Patience,
    ) -> Result<(Entry<T>, usize), PoolError<E>> {
        match &self.limit {
            None => self
                .acquire()
                .map(|(object, home)| (Entry::timeless(object), home))
                .map_err(|error| PoolError::Factory {
                    name: self.name().to_owned(),
                    error,
                }),
            Some(limit) => self.acquire_capped(limit, patience, false),
        }
    }

    /// `acquire` of a capped pool: a token, then its object (an idle one
    /// that has not gone stale and passes `is_valid`, or a new one).
    /// `closed_ok`: see `Limit::acquire`.
    #[inline(never)]
    pub(super) fn acquire_capped(
        &self,
        limit: &Limit,
        patience: Patience,
        closed_ok: bool,
    ) -> Result<(Entry<T>, usize), PoolError<E>> {
        let home = self.home();
        loop {
            let token = limit
                .acquire(patience, closed_ok)
                .map_err(|refused| self.refusal(limit, refused))?;
            if let Some(taken) = self.redeem(limit, token, home) {
                return taken;
            }
        }
    }

    /// The object `token` entitles to: an idle one that has not gone
    /// stale and passes `is_valid`, or a new one. `None` if the idle one
    /// was expired or rejected (dropped, its room given back): take
    /// another token (that room, at least, is free).
    pub(super) fn redeem(&self, limit: &Limit, token: Token, home: usize) -> Option<Taken<T, E>> {
        match token {
            Token::Idle => {
                let entry = self.pop_counted(home);
                self.checked_out(limit, entry)
                    .map(|entry| Ok((entry, home)))
            }
            Token::Room => Some(self.make_counted(limit, home)),
        }
    }

    /// `entry`, if it has not gone stale (`max_lifetime`, `idle_timeout`)
    /// and `is_valid` (when set) accepts it; else drops it, counts it
    /// expired or rejected and gives its room back (also if the hook
    /// panics, whose panic then goes on to the caller).
    fn checked_out(&self, limit: &Limit, entry: Entry<T>) -> Option<Entry<T>> {
        if let Some(lifetimes) = &self.lifetimes {
            if lifetimes.passed(entry.stale_at) {
                bump(&self.rare.dropped_idle);
                self.discard(limit, entry.object, &self.rare.expired);
                return None;
            }
        }
        let Some(is_valid) = &self.is_valid else {
            return Some(entry);
        };
        let Entry {
            object,
            dies,
            stale_at,
        } = entry;
        let mut object = ManuallyDrop::new(object);
        // If the hook panics, this drops the object, counts it and gives
        // its room back as the panic goes on to the caller.
        let idle_dropped = CountOnUnwind(&self.rare.dropped_idle);
        let discard = DiscardCappedOnUnwind {
            object: &mut object,
            count: &self.rare.rejected,
            limit,
        };
        let valid = is_valid(&mut *discard.object);
        std::mem::forget(discard);
        std::mem::forget(idle_dropped);
        // SAFETY: `object` is moved out once, here, and never used again
        // (the unwind guard, which would drop it, is forgotten).
        let object = unsafe { ManuallyDrop::take(&mut object) };
        if valid {
            return Some(Entry {
                object,
                dies,
                stale_at,
            });
        }
        bump(&self.rare.dropped_idle);
        self.reject(limit, object);
        None
    }

    /// Drops an object a validation hook rejected, counts it, and gives
    /// its room back (waking a waiter if one is due).
    fn reject(&self, limit: &Limit, object: T) {
        // The mutant drops it without giving its room back: a waiter for
        // that room sleeps for ever.
        if mutant("pool::cap_reject_keeps_room") {
            bump(&self.rare.rejected);
            drop_object(object);
        } else {
            self.discard(limit, object, &self.rare.rejected);
        }
    }

    /// Runs the factory on a room token: a panic or an error gives the
    /// room back (and wakes a waiter if one is due).
    fn make_counted(&self, limit: &Limit, home: usize) -> Result<(Entry<T>, usize), PoolError<E>> {
        // A panicking factory gives the room back as it unwinds.
        let room = RoomOnUnwind(limit);
        match self.make(Some(&self.rare.made_for_guard)) {
            Ok(object) => {
                std::mem::forget(room);
                Ok((self.new_entry(object), home))
            }
            Err(error) => {
                drop(room); // given back, a waiter woken if due
                Err(PoolError::Factory {
                    name: self.name().to_owned(),
                    error,
                })
            }
        }
    }

    /// `instance` of a capped pool: waits for ever, and obeys the cap on a
    /// closed pool too (it cannot return `Closed`): there it waits for
    /// room, makes a fresh object, and the object is dropped on return.
    #[inline(never)]
    pub(super) fn instance_capped(&self, limit: &Limit) -> Result<(Entry<T>, usize), E> {
        loop {
            match self.acquire_capped(limit, Patience::Forever, true) {
                Ok(taken) => return Ok(taken),
                Err(PoolError::Factory { error, .. }) => return Err(error),
                // Never refused (`closed_ok`, no deadline); were it, ask
                // again rather than break the cap.
                Err(_) => continue,
            }
        }
    }

    pub(super) fn refusal(&self, limit: &Limit, refused: Refused) -> PoolError<E> {
        let name = self.name().to_owned();
        let now = limit.reading();
        match refused {
            Refused::Closed => PoolError::Closed { name },
            Refused::Exhausted => PoolError::Exhausted {
                name,
                live: now.live,
                cap: now.cap,
            },
            Refused::TimedOut(waited) => PoolError::TimedOut {
                name,
                waited,
                live: now.live,
                cap: now.cap,
            },
        }
    }

    /// Pops an object the caller holds an idle token for (or one it put
    /// in uncounted and must take back out): it is in the storage, though
    /// perhaps not where this thread looked first, so look until found.
    pub(super) fn pop_counted(&self, home: usize) -> Entry<T> {
        loop {
            if let Some(entry) = self.front.get(home).and_then(|slot| slot.take_entry()) {
                return entry;
            }
            if let Some(entry) = self.idle.pop() {
                return entry;
            }
            for slot in self.front.iter() {
                if let Some(entry) = slot.take_entry() {
                    return entry;
                }
            }
            // Another token holder took the one we would have found, and
            // ours is being published behind us: let it finish.
            yield_now();
        }
    }

    /// Puts `object` into the storage (home slot, queue, other slots),
    /// counting it as returned; hands it back if every place was full.
    fn store(&self, entry: Entry<T>, home: usize) -> Result<(), Entry<T>> {
        let entry = match self.front.get(home) {
            Some(slot) => match slot.put_entry(entry, PUT) {
                Ok(()) => return Ok(()),
                Err(entry) => entry,
            },
            None => entry,
        };
        match self.idle.push(entry) {
            Ok(()) => {
                self.stripes.count();
                Ok(())
            }
            Err(entry) => self.put_entry_in_front(entry, home, PUT),
        }
    }

    /// An entry for an object made now: it dies `max_lifetime` from now.
    fn new_entry(&self, object: T) -> Entry<T> {
        match &self.lifetimes {
            None => Entry::timeless(object),
            Some(lifetimes) => {
                let dies = lifetimes.dies_if_made_now();
                Entry {
                    object,
                    dies,
                    stale_at: dies,
                }
            }
        }
    }

    /// Drops an object for good, counted in `count`, then gives its room
    /// back (even if its `Drop` panics).
    pub(super) fn discard(&self, limit: &Limit, object: T, count: &AtomicUsize) {
        bump(count);
        let _room = RoomOnUnwind(limit);
        drop_object(object);
    }

    /// A guard's return to a capped pool: dropped at once if the pool will
    /// not keep it (closed, over a shrunk cap, `max_size` idle already, past
    /// its `max_lifetime`: no hook wasted on it) or `has_broken` says so,
    /// else reset, stored (with the instant it goes stale) and counted idle
    /// (waking a waiter if due).
    ///
    /// SAFETY (caller): `object` holds a value and is not used again.
    #[inline(never)]
    pub(super) unsafe fn release_capped(
        &self,
        limit: &Limit,
        object: &mut ManuallyDrop<T>,
        home: usize,
        dies: u64,
    ) {
        let dropped = match limit.verdict(self.max_size) {
            Verdict::Keep => match &self.lifetimes {
                Some(lifetimes) if lifetimes.passed(dies) => Some(&self.rare.expired),
                _ => None,
            },
            Verdict::Closed => Some(&self.rare.dropped_closed),
            Verdict::Full => Some(&self.rare.full_on_return),
        };
        if let Some(count) = dropped {
            // SAFETY: the caller gives up `object`; it is moved out once.
            let object = unsafe { ManuallyDrop::take(object) };
            return self.discard(limit, object, count);
        }
        if let Some(has_broken) = &self.has_broken {
            let discard = DiscardCappedOnUnwind {
                object: &mut *object,
                count: &self.rare.rejected,
                limit,
            };
            // As for the reset hook below: a panic while unwinding is
            // caught, and `discard` has then dropped, counted and given back
            // the object.
            let broken = match unwind::in_cleanup(|| {
                let broken = has_broken(&mut *discard.object);
                (broken, discard)
            }) {
                Some((broken, discard)) => {
                    std::mem::forget(discard);
                    broken
                }
                None => return,
            };
            if broken {
                // SAFETY: as above.
                let object = unsafe { ManuallyDrop::take(object) };
                return self.reject(limit, object);
            }
        }
        if let Some(reset) = &self.reset {
            let discard = DiscardCappedOnUnwind {
                object: &mut *object,
                count: &self.rare.reset_panicked,
                limit,
            };
            // As in `release`: a panic while unwinding is caught, and
            // `discard` has then dropped, counted and given back the object.
            match unwind::in_cleanup(|| {
                reset(&mut *discard.object);
                discard
            }) {
                Some(discard) => std::mem::forget(discard),
                None => return,
            }
        }
        let stale_at = match &self.lifetimes {
            Some(lifetimes) => lifetimes.stale_if_idle_now(dies),
            None => dies,
        };
        let entry = Entry {
            // SAFETY: the caller gives up `object`; it is moved out once.
            object: unsafe { ManuallyDrop::take(object) },
            dies,
            stale_at,
        };
        match self.store(entry, home) {
            Ok(()) => {
                if !limit.give_idle() {
                    // Closed or shrunk since `verdict`: take one back out
                    // (ours or another uncounted one) and drop it.
                    let entry = self.pop_counted(home);
                    self.discard(limit, entry.object, &self.rare.cleared);
                }
            }
            Err(entry) => self.discard(limit, entry.object, &self.rare.full_on_return),
        }
    }

    /// Drops idle objects while `limit` lets it claim them (all of them, or
    /// with `over_cap` those over a shrunk cap); how many.
    pub(super) fn drain(&self, limit: &Limit, over_cap: bool) -> usize {
        let mut dropped = 0;
        while limit.claim_idle(over_cap) {
            let entry = self.pop_counted(NO_HOME);
            self.discard(limit, entry.object, &self.rare.cleared);
            dropped += 1;
        }
        dropped
    }

    /// `try_prefill` of a capped pool: a room token per object, never
    /// waiting.
    pub(super) fn prefill_capped(&self, limit: &Limit, n: usize) -> Result<usize, E> {
        let mut added = 0;
        while added < n && limit.claim_room() {
            let room = RoomOnUnwind(limit);
            let object = self.make(None)?; // an error drops `room`: given back
            std::mem::forget(room);
            let mut entry = self.new_entry(object);
            if let Some(lifetimes) = &self.lifetimes {
                entry.stale_at = lifetimes.stale_if_idle_now(entry.dies);
            }
            let placed = match self.put_entry_in_front(entry, NO_HOME, 0) {
                Ok(()) => Ok(()),
                Err(entry) => self.idle.push(entry),
            };
            match placed {
                Ok(()) => {
                    // Counted as made once placed, as in `try_prefill`.
                    bump(&self.rare.made_for_prefill);
                    if !limit.give_idle() {
                        let entry = self.pop_counted(NO_HOME);
                        self.discard(limit, entry.object, &self.rare.cleared);
                        break;
                    }
                    added += 1;
                }
                Err(entry) => {
                    // Dropped before made, as `stats` reads them.
                    self.discard(limit, entry.object, &self.rare.full_on_prefill);
                    bump(&self.rare.made_for_prefill);
                    break;
                }
            }
        }
        Ok(added)
    }
}

impl<T, E> Pool<T, E> {
    /// Counts an object a guard removed for good; in a capped pool its
    /// room is free again (the object lives on, outside the pool).
    pub(super) fn note_taken(&self) {
        bump(&self.rare.taken);
        if let Some(limit) = &self.limit {
            limit.give_room();
        }
    }
}
