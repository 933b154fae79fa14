//! A child's link to its parent's registry ([`ParentLink`]), the owner's
//! reference to its own ([`Children`]), and the unlink.

use std::sync::Arc;

use super::slab::{Entry, Upstream};
use super::{Registry, Slab};
use crate::run_state::RunState;
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
        let live = {
            let mut slab = registry.lock();
            if registry.fast.close() {
                slab.live += 1;
            }
            slab.live
        };
        if live > 0 {
            registry.lock().keep = Some(Arc::clone(&registry));
        }
        drop(registry);
        return;
    }
    let mut slab = registry.lock();
    // A child in the fast slot now unlinks under the lock, counted.
    if registry.fast.close() {
        slab.live += 1;
    }
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
    /// Where in the registry the child is (see [`Place`]): the address of
    /// its allocation as the fast slot holds it (`Weak::into_raw`, a
    /// multiple of 8), or `(index << 1) | 1`, without provenance, for slot
    /// `index` of the slab. Atomic only because `child()` moves it to the
    /// slab after building the child, if the fast link fails: before the
    /// child is shared, so every access is `Relaxed`.
    place: AtomicPtr<RunState>,
}

/// Where a child is linked in its parent's registry.
#[derive(Clone, Copy)]
pub(super) enum Place {
    /// In the fast slot, at this address (see `fast_slot.rs`).
    Fast(*mut RunState),
    /// In this slot of the slab.
    Slab(usize),
}

// SAFETY: `registry` is only read as `&Registry` (a `Lock`, `Sync`), and
// it lives while the child that holds this link is linked (see above).
unsafe impl Send for ParentLink {}
// SAFETY: as for `Send`.
unsafe impl Sync for ParentLink {}

impl ParentLink {
    /// A link to the fast slot of `registry`, where the child is at `ptr`
    /// (`Weak::into_raw` of the slot's `Weak`).
    pub(super) fn fast(registry: *const Registry, ptr: *const RunState) -> Self {
        Self {
            registry,
            place: AtomicPtr::new(ptr.cast_mut()),
        }
    }

    /// A link to slot `index` of `registry`'s slab.
    pub(super) fn in_slab(registry: *const Registry, index: usize) -> Self {
        Self {
            registry,
            place: AtomicPtr::new(slab_place(index)),
        }
    }

    /// Moves the link to slot `index` of the slab (the fast link failed);
    /// before the child is shared.
    pub(super) fn set_slab(&self, index: usize) {
        // Relaxed: before the child is shared (see `place`).
        self.place.store(slab_place(index), Ordering::Relaxed);
    }

    /// Where the child is linked.
    #[inline]
    pub(super) fn place(&self) -> Place {
        // Relaxed: see `place`.
        let word = self.place.load(Ordering::Relaxed);
        if word.addr() & 1 == 0 {
            Place::Fast(word)
        } else {
            Place::Slab(word.addr() >> 1)
        }
    }

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
        match self.place() {
            Place::Slab(index) => self.unlink_from_slab(index),
            Place::Fast(ptr) => {
                if !self.registry().fast.unlink(ptr) {
                    self.unlink_from_closed_fast_slot(ptr);
                }
            }
        }
    }
}

impl ParentLink {
    /// The unlink of a child in slot `index` of the slab.
    #[inline]
    fn unlink_from_slab(&self, index: usize) {
        let mut slab = self.registry().lock();
        if slab.vacate(index) {
            return;
        }
        if !mutant("run_state::dropped_middle_detaches_children") {
            if let Some(own) = slab.own_registry(index) {
                let mut own_slab = own.lock();
                // Its fast child, if any, now unlinks under the lock,
                // counted, so that the unlink that empties it frees this
                // slot (lock order: a parent's registry, then its child's).
                if own.fast.close() {
                    own_slab.live += 1;
                }
                if own_slab.live > 0 {
                    own_slab.upstream = Some((self.registry_arc(), index));
                    drop(own_slab);
                    slab.orphans += 1;
                    // Dropping the entry replaced runs no user code.
                    slab.entries[index] = Entry::Orphan(own);
                    return;
                }
            }
        }
        unlink(slab, index).finish();
    }

    /// The unlink of the child at `ptr` in the fast slot once it is
    /// `SLOW` (see `fast_slot.rs`): under the lock, as for a slab child,
    /// its own registry moving to a slab slot of its own if it is to
    /// become an orphan.
    #[cold]
    #[inline(never)]
    fn unlink_from_closed_fast_slot(&self, ptr: *mut RunState) {
        let registry = self.registry();
        let mut slab = registry.lock();
        let weak = registry.fast.take(ptr);
        // Counted by `close` when it made the slot `SLOW`.
        slab.live -= 1;
        let own = slab.fast_own.take();
        if let Some(own) = own.as_ref() {
            if !mutant("run_state::dropped_middle_detaches_children") {
                let mut own_slab = own.lock();
                // As in `unlink_from_slab`.
                if own.fast.close() {
                    own_slab.live += 1;
                }
                if own_slab.live > 0 {
                    let index = slab.insert_orphan(Arc::clone(own));
                    own_slab.upstream = Some((self.registry_arc(), index));
                    drop(own_slab);
                    // Not emptied: the orphan is linked.
                    drop(slab);
                    drop(weak);
                    return;
                }
            }
        }
        let (upstream, keep) = slab.emptied();
        drop(slab);
        // No user code: a `Weak` (at most an allocation emptied by a move)
        // and a registry reference (the one our `Children` still holds).
        drop(weak);
        drop(own);
        Unlinked {
            freed: None,
            upstream,
            keep,
        }
        .finish();
    }
}

/// The `place` of slot `index` of the slab: odd, without provenance.
fn slab_place(index: usize) -> *mut RunState {
    std::ptr::without_provenance_mut((index << 1) | 1)
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
