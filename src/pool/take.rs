//! The take and return paths: `acquire` (behind [`Pool::try_instance`])
//! and `release` (a guard's drop), with their slow sides (the other front
//! slots, the factory, dropping an object the full pool has no room for),
//! and the unwind guards that count a panicking factory or reset hook.

use std::mem::ManuallyDrop;

use super::lifetime::Entry;
use super::slots::PUT;
use super::stats::bump;
use super::Pool;
use crate::sync::{mutant, AtomicUsize};
use crate::unwind;

/// Bumps a counter if dropped, that is, if the code it guards panics; the
/// normal path forgets it.
pub(super) struct CountOnUnwind<'a>(pub(super) &'a AtomicUsize);

impl Drop for CountOnUnwind<'_> {
    fn drop(&mut self) {
        bump(self.0);
    }
}

/// Drops a guard's object and bumps a counter if dropped, that is, if the
/// reset hook it guards panics; the normal path forgets it. It runs while
/// that panic unwinds, so a panic from the object's own `Drop` is caught
/// (`unwind::in_cleanup`): escaping, it would abort the process.
struct DiscardOnUnwind<'a, T> {
    object: &'a mut ManuallyDrop<T>,
    count: &'a AtomicUsize,
}

impl<T> Drop for DiscardOnUnwind<'_, T> {
    fn drop(&mut self) {
        bump(self.count);
        let object = &mut *self.object;
        // SAFETY: `release`'s caller gave up the object, and the normal path
        // (which moves it into the queue) forgets this guard instead.
        unwind::in_cleanup(|| unsafe { ManuallyDrop::drop(object) });
    }
}

impl<T, E> Pool<T, E> {
    // ----- the two hot paths and their slow sides -----

    /// Takes an idle object or makes one (home slot, queue, other front
    /// slots, factory). Returns it with the calling thread's home slot, for the guard.
    #[inline]
    pub(super) fn acquire(&self) -> Result<(T, usize), E> {
        let home = self.home();
        if let Some(object) = self.front.get(home).and_then(|slot| slot.take()) {
            return Ok((object, home));
        }
        if let Some(entry) = self.idle.pop() {
            return Ok((entry.object, home));
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

    /// Puts `object` into the first front slot that takes it, other than
    /// `skip`; hands it back if none does.
    pub(super) fn put_in_front(&self, mut object: T, skip: usize, count: usize) -> Result<(), T> {
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

    /// [`put_in_front`](Self::put_in_front) with the object's instants
    /// (a pool's counted paths).
    pub(super) fn put_entry_in_front(
        &self,
        mut entry: Entry<T>,
        skip: usize,
        count: usize,
    ) -> Result<(), Entry<T>> {
        for (index, slot) in self.front.iter().enumerate() {
            if index != skip {
                match slot.put_entry(entry, count) {
                    Ok(()) => return Ok(()),
                    Err(back) => entry = back,
                }
            }
        }
        Err(entry)
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
    /// `dies`: when the object dies (see `lifetime.rs`), carried by the
    /// guard.
    ///
    /// SAFETY (caller): `object` holds a value and is not used again.
    #[inline]
    pub(super) unsafe fn release(&self, object: &mut ManuallyDrop<T>, home: usize, dies: u64) {
        // `dies` matters to a counted pool only; a plain one has none.
        if let Some(limit) = &self.limit {
            // SAFETY: passed on from our caller.
            return unsafe { self.release_capped(limit, object, home, dies) };
        }
        if let Some(reset) = &self.reset {
            // If the hook panics, this drops the object and counts it.
            let discard = DiscardOnUnwind {
                object: &mut *object,
                count: &self.rare.reset_panicked,
            };
            // If the guard is dropped during unwinding, a second panic would
            // abort the process: `in_cleanup` catches it (and disposes of its
            // payload), and `discard` has then dropped and counted the object.
            // Otherwise the hook's panic propagates, as documented.
            match unwind::in_cleanup(|| {
                reset(&mut *discard.object);
                discard
            }) {
                Some(discard) => std::mem::forget(discard),
                None => return,
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
        match self.idle.push(Entry::timeless(object)) {
            Ok(()) => self.stripes.count(),
            Err(entry) => self.put_elsewhere_or_drop(entry.object, home),
        }
    }

    /// Runs the factory, counting the outcome in `made` (if given: `prefill`
    /// counts its objects itself, once placed) or `failed`.
    #[cold]
    #[inline(never)]
    pub(super) fn make(&self, made: Option<&AtomicUsize>) -> Result<T, E> {
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
        drop_object(object);
    }
}

/// Drops an object (user code: its `Drop` may panic). While the thread
/// unwinds, a panic from it is caught and its payload disposed of
/// (`unwind::in_cleanup`), since escaping it would abort the process;
/// otherwise it propagates to the caller as usual.
pub(super) fn drop_object<T>(object: T) {
    unwind::in_cleanup(|| drop(object));
}
