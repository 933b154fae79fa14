//! Lifetimes: [`PoolBuilder::max_lifetime`](super::PoolBuilder::max_lifetime)
//! and [`idle_timeout`](super::PoolBuilder::idle_timeout), enforced at
//! checkout and return with no thread of their own.
//!
//! Every stored object is an [`Entry`]: the object and two instants, in
//! nanoseconds since the pool was built: when it *dies* (made + the
//! maximum lifetime) and when it goes *stale* (the earlier of that and
//! its return + the idle timeout). A guard carries `dies` (a return past
//! it drops the object); a checkout drops an entry past `stale_at`. A pool
//! without lifetimes stores [`NEVER`] in both and reads no clock: its paths
//! move the two words with the object and do nothing else with them.

use std::time::{Duration, Instant};

/// An instant that never comes: no lifetime set.
pub(super) const NEVER: u64 = u64::MAX;

/// A stored object and its instants (see the module doc).
pub(super) struct Entry<T> {
    pub(super) object: T,
    /// When it dies: made + `max_lifetime`, or [`NEVER`].
    pub(super) dies: u64,
    /// When it goes stale while idle: `dies`, or earlier by
    /// `idle_timeout` after its return.
    pub(super) stale_at: u64,
}

impl<T> Entry<T> {
    /// An entry that never expires (a pool without lifetimes).
    #[inline(always)]
    pub(super) fn timeless(object: T) -> Self {
        Self {
            object,
            dies: NEVER,
            stale_at: NEVER,
        }
    }
}

/// A pool's lifetimes, if any is set.
pub(super) struct Lifetimes {
    epoch: Instant,
    max_lifetime: Option<Duration>,
    idle_timeout: Option<Duration>,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(NEVER)
}

impl Lifetimes {
    pub(super) fn new(max_lifetime: Option<Duration>, idle_timeout: Option<Duration>) -> Self {
        Self {
            epoch: Instant::now(),
            max_lifetime,
            idle_timeout,
        }
    }

    /// Now, in nanoseconds since the pool was built (below [`NEVER`]).
    pub(super) fn now(&self) -> u64 {
        nanos(self.epoch.elapsed()).min(NEVER - 1)
    }

    /// When an object made now dies.
    pub(super) fn dies_if_made_now(&self) -> u64 {
        match self.max_lifetime {
            Some(max) => self.now().saturating_add(nanos(max)),
            None => NEVER,
        }
    }

    /// When an object that dies at `dies` and goes idle now goes stale.
    pub(super) fn stale_if_idle_now(&self, dies: u64) -> u64 {
        match self.idle_timeout {
            Some(idle) => dies.min(self.now().saturating_add(nanos(idle))),
            None => dies,
        }
    }

    /// Has the instant `at` come?
    pub(super) fn passed(&self, at: u64) -> bool {
        at != NEVER && self.now() >= at
    }
}
