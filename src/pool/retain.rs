//! [`Pool::retain`]: drop idle objects on demand (deadpool's `retain`).

use std::mem;

use super::lifetime::Entry;
use super::slots::NO_HOME;
use super::stats::bump;
use super::take::drop_object;
use super::Pool;
use crate::unwind;

/// The idle objects `retain` took out: those not yet looked at
/// (`pending`), the one being looked at (`current`) and those kept. When
/// dropped (at the end, or if the predicate panics) it puts every object
/// it still holds back into the pool, so none is lost or miscounted.
struct Examining<'a, T, E> {
    pool: &'a Pool<T, E>,
    pending: std::vec::IntoIter<Entry<T>>,
    current: Option<Entry<T>>,
    kept: Vec<Entry<T>>,
}

impl<T, E> Drop for Examining<'_, T, E> {
    fn drop(&mut self) {
        let back = mem::take(&mut self.kept)
            .into_iter()
            .chain(self.current.take())
            .chain(mem::take(&mut self.pending));
        for entry in back {
            // Runs while a panicking predicate unwinds too: a panic from an
            // object's `Drop` is then caught (an abort otherwise).
            unwind::in_cleanup(|| self.pool.put_back(entry));
        }
    }
}

impl<T, E> Pool<T, E> {
    /// Drops every idle object for which `keep` returns `false`, and
    /// returns how many it dropped (counted in
    /// [`PoolStats::cleared`](super::PoolStats::cleared); in a capped pool
    /// each frees its room and wakes a waiter if one is due). deadpool's
    /// `retain`, r2d2's reaping on demand: for example, drop connections a
    /// server announced it will close, or, with a timestamp in the object,
    /// those idle too long.
    ///
    /// The idle objects are taken out of the pool while `keep` looks at
    /// them (a `get` meanwhile makes a new one if it has room, or waits),
    /// then the kept ones go back; objects handed out are not seen. Cost:
    /// a take and a put back per idle object, and `keep`; no lock. If
    /// `keep` panics, every object not yet dropped goes back to the pool
    /// and the panic goes on. A [`stats`](Self::stats) snapshot taken
    /// meanwhile sees the objects under examination as out (and reused):
    /// one more in flight each, beyond its usual error bound.
    ///
    /// ```
    /// use multiopen::Pool;
    /// let pool = Pool::builder(|| 0u32).max_live(4).build();
    /// let (mut a, mut b) = (pool.get()?, pool.get()?);
    /// (*a, *b) = (1, 2);
    /// drop((a, b)); // both idle now
    /// assert_eq!(pool.retain(|n| *n % 2 == 0), 1); // 1 dropped
    /// assert_eq!((pool.len(), pool.status().live), (1, 1));
    /// assert_eq!(*pool.get()?, 2);
    /// # Ok::<(), multiopen::PoolError>(())
    /// ```
    pub fn retain(&self, mut keep: impl FnMut(&T) -> bool) -> usize {
        let idle = self.take_all_idle();
        let mut examining = Examining {
            pool: self,
            pending: idle.into_iter(),
            current: None,
            kept: Vec::new(),
        };
        let mut dropped = 0;
        for entry in examining.pending.by_ref() {
            let current = examining.current.insert(entry);
            let kept = keep(&current.object);
            let Some(entry) = examining.current.take() else {
                continue;
            };
            if kept {
                examining.kept.push(entry);
            } else {
                dropped += 1;
                self.drop_idle(entry.object);
            }
        }
        dropped
    }

    /// Takes every object idle now out of the storage (claiming its idle
    /// token in a capped pool).
    fn take_all_idle(&self) -> Vec<Entry<T>> {
        let mut idle = Vec::new();
        match &self.limit {
            Some(limit) => {
                while limit.claim_idle(false) {
                    idle.push(self.pop_counted(NO_HOME));
                }
            }
            None => {
                idle.extend(self.front.iter().filter_map(|slot| slot.take_entry()));
                // At most the number idle now, so returns cannot keep us
                // looping.
                for _ in 0..self.idle.len() {
                    match self.idle.pop() {
                        Some(object) => idle.push(object),
                        None => break,
                    }
                }
            }
        }
        idle
    }

    /// Drops an object taken from the idle ones, counted as cleared (and
    /// its room given back in a capped pool).
    fn drop_idle(&self, object: T) {
        match &self.limit {
            Some(limit) => self.discard(limit, object, &self.rare.cleared),
            None => {
                bump(&self.rare.cleared);
                drop_object(object);
            }
        }
    }

    /// Puts an object taken from the idle ones back, not counted as a
    /// return (as `prefill` places objects); drops it as cleared if the
    /// pool has filled (or closed, or shrunk) meanwhile.
    fn put_back(&self, entry: Entry<T>) {
        let placed = match self.put_entry_in_front(entry, NO_HOME, 0) {
            Ok(()) => Ok(()),
            Err(entry) => self.idle.push(entry),
        };
        match (placed, &self.limit) {
            (Ok(()), None) => {}
            (Ok(()), Some(limit)) => {
                if !limit.give_idle() {
                    let entry = self.pop_counted(NO_HOME);
                    self.discard(limit, entry.object, &self.rare.cleared);
                }
            }
            (Err(entry), _) => self.drop_idle(entry.object),
        }
    }
}
