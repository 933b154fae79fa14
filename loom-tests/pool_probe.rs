//! The pooled object of the `Pool` loom models ([`Probe`]), its real
//! counts ([`Counts`]) and the model runner ([`model`]); included by
//! `pool.rs`, `pool_capped.rs` and `async_pool.rs` (`#[path]`), not a test
//! target itself.
#![allow(dead_code)] // Each model file uses its own subset.

use std::sync::atomic::AtomicUsize as StdAtomicUsize;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

use loom::cell::UnsafeCell;

/// Real counts, outside loom's view (std atomics): read only after every
/// thread has been joined.
#[derive(Default)]
pub struct Counts {
    pub made: StdAtomicUsize,
    pub dropped: StdAtomicUsize,
}

impl Counts {
    /// Objects made and not yet dropped.
    pub fn alive(&self) -> usize {
        self.made.load(SeqCst) - self.dropped.load(SeqCst)
    }
}

/// A pooled object: `uses` is written by every holder, under loom's eye,
/// so two holders at once, or a hand-over through the pool without a
/// happens-before edge, is a data race loom reports.
pub struct Probe {
    uses: UnsafeCell<usize>,
    counts: Arc<Counts>,
}

// SAFETY: `uses` is the one non-Sync field; every access goes through loom,
// which reports any access not ordered by the pool's hand-over.
unsafe impl Sync for Probe {}

impl Probe {
    /// A new object, counted made in `counts`.
    pub fn new(counts: &Arc<Counts>) -> Self {
        counts.made.fetch_add(1, SeqCst);
        Self {
            uses: UnsafeCell::new(0),
            counts: Arc::clone(counts),
        }
    }

    /// Writes the object as its one holder.
    pub fn touch(&self) {
        // SAFETY: loom checks this access against every other one.
        self.uses.with_mut(|uses| unsafe { *uses += 1 });
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.counts.dropped.fetch_add(1, SeqCst);
    }
}

/// Fresh counts and a factory that makes [`Probe`]s counted in them.
pub fn factory() -> (Arc<Counts>, impl Fn() -> Probe + Send + Sync + 'static) {
    let counts = Arc::new(Counts::default());
    let c = Arc::clone(&counts);
    (counts, move || Probe::new(&c))
}

/// Checks `f` under loom: every interleaving with at most
/// `preemption_bound` preemptions (all of them if `None`).
pub fn model(preemption_bound: Option<usize>, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = preemption_bound;
    builder.check(f);
}
