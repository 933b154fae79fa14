//! A child's link to its parent's registry ([`ParentLink`]), the owner's
//! reference to its own ([`Children`]), and the unlink.

use std::sync::Arc;

use super::slab::{Entry, Upstream};
use super::{Registry, Slab};
use crate::sync::{mutant, AtomicPtr, LockGuard, Ordering};

/// `RunState::children`: the state's registry (`Arc::into_raw`), made by
/// its first `child()`, or null. Its `Drop` (the state's) lets go of it,
/// detaching the children (they hold the registry until they go).
pub(crate) struct Children(pub(super) AtomicPtr<Registry>);

impl Children {
    pub(crate) fn new() -> Self {
        Self(AtomicPtr::new(std::ptr::null_mut()))
    }
}

impl Drop for Children {
    /// Lets go of the registry, or, if children are still linked, leaves
    /// that reference in the registry (`Slab::keep`) for the unlink that
    /// empties it: a linked child's `ParentLink` holds no count (see
    /// there).
    #[inline]
    fn drop(&mut self) {
        // Relaxed, and a load, not a swap (an RMW): `&mut self`, nobody
        // else can touch it, and the field goes with us.
        let ptr = self.0.load(Ordering::Relaxed);
        if !ptr.is_null() {
            // SAFETY: the reference `children` holds, which goes with us.
            release_registry(unsafe { Arc::from_raw(ptr) });
        }
    }
}

/// The end of `Children`'s `Drop`: its reference to `registry`, kept in
/// the registry while children are linked.
#[cold]
#[inline(never)]
fn release_registry(registry: Arc<Registry>) {
    if mutant("run_state::owner_gone_check_then_keep") {
        // The bug: the check and the act under two locks. A last child's
        // unlink between them finds nothing to take back, and the
        // reference left in the registry then keeps it alive for ever.
        let live = registry.lock().live;
        if live > 0 {
            registry.lock().keep = Some(Arc::clone(&registry));
        }
        drop(registry);
        return;
    }
    let mut slab = registry.lock();
    if slab.live > 0 {
        slab.keep = Some(Arc::clone(&registry));
    }
    drop(slab);
    drop(registry);
}

/// Where a child is registered: its `Drop` (the first of the child's
/// fields to drop) unlinks it.
///
/// Holds no count on the registry (making and dropping a child is two
/// RMWs cheaper): a registry lives while any child is linked in it, since
/// its owner's reference, when the owner goes first, stays in the
/// registry (`Slab::keep`) until the unlink that empties it. Whoever finds
/// it empty under its lock may free it as soon as it takes that lock, even
/// while the user that emptied it is still in its release: the lock is a
/// `sync::Lock`, whose release is its last access (std's `Mutex` wakes
/// through itself after its release).
pub(crate) struct ParentLink {
    /// As `Children` holds it (`Arc::into_raw`): its provenance covers the
    /// `Arc`'s counts, for `registry_arc`.
    pub(super) registry: *const Registry,
    pub(super) index: usize,
}

// SAFETY: `registry` is only read as `&Registry` (a `Lock`, `Sync`), and
// it lives while the child that holds this link is linked (see above).
unsafe impl Send for ParentLink {}
// SAFETY: as for `Send`.
unsafe impl Sync for ParentLink {}

impl ParentLink {
    /// The registry this child is linked in.
    pub(super) fn registry(&self) -> &Registry {
        // SAFETY: alive while this child is linked (see the type's docs),
        // which it is until this link's `Drop` unlinks it; that unlink's
        // release is its last use (the reference is not used after it).
        unsafe { &*self.registry }
    }

    /// A new strong reference to the registry (for a slow path that keeps
    /// it past this link's life).
    fn registry_arc(&self) -> Arc<Registry> {
        let ptr = self.registry;
        // SAFETY: `ptr` came from the `Arc::into_raw` of the owner's
        // `Children`, and that reference (or, once the owner has gone,
        // `Slab::keep`) is alive while this child is linked.
        unsafe {
            Arc::increment_strong_count(ptr);
            Arc::from_raw(ptr)
        }
    }
}

impl Drop for ParentLink {
    /// Frees the child's slot, or, if the child has live children of its
    /// own, leaves its registry in the slot (an orphan: see the module
    /// docs), so that a cancel of this state's ancestors still reaches
    /// them. Reads only the slot (its copy of the child's registry), never
    /// the child's other fields: the child is dropping.
    #[inline]
    fn drop(&mut self) {
        if mutant("run_state::child_never_unlinks") {
            return;
        }
        let mut slab = self.registry().lock();
        if slab.vacate(self.index) {
            return;
        }
        if !mutant("run_state::dropped_middle_detaches_children") {
            if let Some(own) = slab.own_registry(self.index) {
                let mut own_slab = own.lock();
                if own_slab.live > 0 {
                    // Lock order: a parent's registry, then its child's.
                    own_slab.upstream = Some((self.registry_arc(), self.index));
                    drop(own_slab);
                    slab.orphans += 1;
                    // Dropping the entry replaced runs no user code.
                    slab.entries[self.index] = Entry::Orphan(own);
                    return;
                }
            }
        }
        unlink(slab, self.index).finish();
    }
}

/// Removes slot `index` of the locked `slab`; what is to be let go after
/// the lock comes back (see [`Unlinked::finish`]).
fn unlink(mut slab: LockGuard<'_, Slab>, index: usize) -> Unlinked {
    let freed = slab.remove(index);
    let (upstream, keep) = slab.emptied();
    Unlinked {
        freed,
        upstream,
        keep,
    }
}

/// What an unlink leaves to do outside the lock: the slot's old entry, and,
/// if that emptied the registry, its owner's reference (`Slab::keep`) and
/// its own slot upstream (if it is an orphan).
#[must_use]
struct Unlinked {
    freed: Option<Entry>,
    upstream: Option<Upstream>,
    keep: Option<Arc<Registry>>,
}

impl Unlinked {
    /// Lets go of it all, and, while freeing a slot upstream empties an
    /// orphan registry (see the module docs), frees the orphan's own slot
    /// upstream too: the unlink of a child whose parent has gone.
    /// Iterative: a long chain of dropped middles cannot overflow the
    /// stack. Called by the function that held the first lock, after the
    /// call that took it: this may free that registry, which no reference
    /// passed into a running call may then point at (Stacked Borrows
    /// protects those for the whole call).
    fn finish(mut self) {
        loop {
            drop(self.freed.take());
            drop(self.keep.take());
            let Some((registry, index)) = self.upstream.take() else {
                return;
            };
            let mut slab = registry.lock();
            self.freed = slab.remove(index);
            (self.upstream, self.keep) = slab.emptied();
            drop(slab);
        }
    }
}
