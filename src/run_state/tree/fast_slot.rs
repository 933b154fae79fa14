//! The fast slot: one child per registry linked and unlinked with one CAS
//! each, without the registry's lock.
//!
//! # Why
//!
//! Most parents have one child at a time (a request's, a job's): linking
//! it in the slab costs the lock and its release, and unlinking it the
//! same again, four RMWs of the nine a child's making and dropping costs.
//! The first child linked while the slot is empty goes here instead; the
//! others (and every child while this one lives) go to the slab.
//!
//! # The word
//!
//! An `AtomicPtr<RunState>`: null (empty), or the address of the linked
//! child's allocation (`Weak::into_raw` of the slot's own `Weak`, so that
//! the address can never be reused by another child while the slot holds
//! it: no ABA), with tags in its low bits (`RunState` is aligned to 8):
//!
//! - `BUSY` (bit 0): a cancel's walk holds the `Weak` (it upgrades it, under
//!   the registry's lock); the child's unlink must not take it meanwhile.
//! - `DEAD` (bit 1): set by the child's unlink over `BUSY`: the child has
//!   gone, and the walk, when it clears `BUSY`, empties the slot and lets
//!   go of the `Weak` for it.
//! - `SLOW` (bit 2): set under the registry's lock (`close`) when the
//!   child's unlink must take the lock after all: the owner has gone (the
//!   child is then counted in `Slab::live`, which keeps the registry alive
//!   for it), or the child made children of its own (its registry may have
//!   to become an orphan, which needs a slab slot), or it is to become an
//!   orphan itself. On an empty slot it keeps later links out.
//!
//! `BUSY` and `DEAD` are only ever seen by the child's unlink and the walk
//! that set `BUSY`: the walk holds the lock from `BUSY` to its clearing,
//! and everything else that reads the tags (`close`, `take`, the count)
//! holds it too.
//!
//! # Why a child linked here never misses its parent's cancel
//!
//! Every write of the slot is an RMW, and every walk (after its cancel's
//! RMW of the parent's word) does an RMW of the slot with `Release`
//! (setting `BUSY`, even on an empty slot). The link is a CAS with
//! `Acquire` followed by a load of the parent's word. In the slot's
//! modification order, either the walk's RMW comes after the link's CAS,
//! and then reads the child's address (or a later value: the child gone)
//! and marks it; or it comes before, and then the link's CAS reads from a
//! release sequence headed by the walk's RMW, so the cancel happens before
//! the link's load of the word, which sees it and cancels the child itself
//! (`RunState::inherit_late`). No `SeqCst` is needed: the two meet in one
//! location's modification order, as under a lock. (That a walk runs at
//! all is argued as for the slab: the link sets `HAS_CHILDREN` with an RMW
//! before its CAS.)
//!
//! The walk's first CAS retries while lock-free links and unlinks change
//! the slot under it: lock-free, not wait-free (each retry means another
//! thread's link or unlink succeeded).
//!
//! # Reclaiming
//!
//! The `Weak` is let go only by whoever empties the slot: the unlink
//! (its CAS from the bare address to null), the walk (over `DEAD`), or a
//! locked unlink (`take`, over `SLOW`). A walk that finds the child's last
//! strong reference in its hands (`Follow::Last`) leaves the slot as it
//! is: the child's drop, after the walk's lock, unlinks it as usual.

use std::mem::ManuallyDrop;
use std::sync::Weak;

use crate::run_state::RunState;
use crate::sync::{mutant, ptr_fetch_and, ptr_fetch_or, AtomicPtr, Ordering};

/// A walk holds the slot's `Weak` (see the module docs).
const BUSY: usize = 1 << 0;
/// The child has gone while a walk held its `Weak`.
const DEAD: usize = 1 << 1;
/// The child's unlink takes the registry's lock.
const SLOW: usize = 1 << 2;
/// All the tags.
const TAGS: usize = BUSY | DEAD | SLOW;

// The tags live in the low bits of a `RunState`'s address.
const _: () = assert!(std::mem::align_of::<RunState>() > TAGS);

/// One registry's fast slot (see the module docs).
pub(super) struct FastSlot(AtomicPtr<RunState>);

/// The untagged address in `word`.
fn address(word: *mut RunState) -> *mut RunState {
    word.map_addr(|a| a & !TAGS)
}

/// Does `word` carry `tag`?
fn has(word: *mut RunState, tag: usize) -> bool {
    word.addr() & tag != 0
}

impl FastSlot {
    pub(super) fn new() -> Self {
        Self(AtomicPtr::new(std::ptr::null_mut()))
    }

    /// Is the slot empty (and open)? A hint, for `child()` to choose the
    /// path before it builds the child.
    #[inline]
    pub(super) fn is_open(&self) -> bool {
        // Relaxed: a hint; the link's CAS decides.
        self.0.load(Ordering::Relaxed).is_null()
    }

    /// Links the child at `ptr` (`Weak::into_raw` of a `Weak` the slot
    /// takes over if this succeeds): one CAS from empty. `false` if the
    /// slot is taken, closed or being walked (the caller links the child in
    /// the slab, and keeps its `Weak`).
    #[inline]
    pub(super) fn link(&self, ptr: *const RunState) -> bool {
        // AcqRel: Release publishes the child (its `Arc`, built before) to
        // a walk's Acquire RMW; Acquire meets a walk that came first (see
        // the module docs). Relaxed on failure: the slab path locks.
        let order = if mutant("run_state::fast_link_relaxed") {
            Ordering::Release
        } else {
            Ordering::AcqRel
        };
        self.0
            .compare_exchange(
                std::ptr::null_mut(),
                ptr.cast_mut(),
                order,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// The unlink of the child at `ptr` without the lock: empties the slot
    /// and lets go of its `Weak`, or, if a walk holds it, marks it `DEAD`
    /// for the walk to do so. `false` if the slot is `SLOW`: the caller
    /// must take the lock and call [`take`](Self::take).
    #[inline]
    pub(super) fn unlink(&self, ptr: *mut RunState) -> bool {
        let mut current = ptr;
        loop {
            let next = if current == ptr {
                std::ptr::null_mut()
            } else if current == ptr.map_addr(|a| a | BUSY) {
                ptr.map_addr(|a| a | BUSY | DEAD)
            } else if !has(current, BUSY) && mutant("run_state::fast_slow_ignored") {
                // The bug: unlink a `SLOW` child without the lock, as if
                // it were not counted in `Slab::live`: the registry of a
                // gone owner is then never freed.
                std::ptr::null_mut()
            } else {
                // `SLOW` (with or without `BUSY`): the lock's path.
                debug_assert!(has(current, SLOW));
                return false;
            };
            // AcqRel. Release: our last access of the registry, which
            // whoever frees it (after an Acquire RMW of this word, under its
            // lock) must see before the free; and, over `BUSY`, the walk
            // that lets go of the `Weak` for us. Acquire: a walk's reads of
            // the allocation (its upgrade's load of the strong count), which
            // its Release clearing of `BUSY` ends, happen before our `Weak`'s
            // release, so before the free of whoever lets go of the last
            // `Weak` after us (std's `Weak::drop` fences only for its own
            // last). Relaxed on failure: we retry.
            match self
                .0
                .compare_exchange(current, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    if next.is_null() {
                        // SAFETY: we emptied the slot: its `Weak` is ours.
                        drop(unsafe { take_weak(ptr) });
                    }
                    return true;
                }
                Err(now) => current = now,
            }
        }
    }

    /// Under the registry's lock: the unlink of the child at `ptr` from a
    /// `SLOW` slot. Empties the slot and returns its `Weak` (to be let go
    /// after the lock).
    pub(super) fn take(&self, ptr: *mut RunState) -> Weak<RunState> {
        // AcqRel: an RMW like every write of the slot (see the module
        // docs); under the lock, nothing else changes it.
        let old = self.0.swap(std::ptr::null_mut(), Ordering::AcqRel);
        debug_assert_eq!(address(old), ptr);
        // SAFETY: the slot held it, and we emptied the slot.
        unsafe { take_weak(ptr) }
    }

    /// Under the registry's lock: closes the slot (`SLOW`: its child, if
    /// any, unlinks under the lock, and no child links here any more until
    /// that unlink). Returns whether this newly closed it over a child: the
    /// caller then counts that child in `Slab::live`.
    pub(super) fn close(&self) -> bool {
        // Acquire: a child that unlinked before this (so is not counted)
        // made its last access of the registry (see `unlink`), which a
        // free after this must follow. An RMW that keeps the stored
        // pointer (see `ptr_fetch_or`).
        let before = ptr_fetch_or(&self.0, SLOW, Ordering::Acquire);
        !address(before).is_null() && !has(before, SLOW)
    }

    /// Under the registry's lock: does the slot hold a child not counted in
    /// `Slab::live` (linked, not `SLOW`)?
    pub(super) fn holds_uncounted_child(&self) -> bool {
        // Relaxed: a snapshot, as the count it adds to.
        let word = self.0.load(Ordering::Relaxed);
        !address(word).is_null() && !has(word, SLOW)
    }

    /// Under the registry's lock: a cancel's walk of the slot. Sets `BUSY`
    /// (always an RMW, even on an empty slot: see the module docs), calls
    /// `walk` with the child's `Weak` if one is linked, then clears `BUSY`,
    /// or, if the child unlinked meanwhile (`DEAD`), empties the slot and
    /// lets go of the `Weak`.
    pub(super) fn walk(&self, walk: impl FnOnce(&Weak<RunState>)) {
        // AcqRel: Acquire sees the child a link published; Release heads
        // the release sequence a later link's CAS reads from (see the
        // module docs). A `fetch_or`, not a CAS from a value read before:
        // the pointer we then use is the one stored (see `ptr_fetch_or`).
        let before = ptr_fetch_or(&self.0, BUSY, Ordering::AcqRel);
        let ptr = address(before);
        if !ptr.is_null() {
            // SAFETY: the slot's `Weak`, pinned by `BUSY` (the unlink
            // leaves it to us); borrowed, not let go.
            let weak = ManuallyDrop::new(unsafe { Weak::from_raw(ptr) });
            walk(&weak);
        }
        // AcqRel. Release: as the RMW above. Acquire: the unlink's Release
        // (its last access of the registry and of the `Weak`), if it left
        // the child `DEAD` to us meanwhile.
        let after = ptr_fetch_and(&self.0, !BUSY, Ordering::AcqRel);
        if has(after, DEAD) {
            debug_assert_eq!(address(after), ptr);
            if mutant("run_state::fast_walk_ignores_dead") {
                // The bug: leave the slot as it was, as if the child were
                // still linked: it then counts for ever (and its `Weak`
                // stays until the registry goes).
                ptr_fetch_and(&self.0, !DEAD, Ordering::AcqRel);
                return;
            }
            // AcqRel: an RMW like every write of the slot; nothing else
            // writes a `DEAD` slot.
            self.0.swap(std::ptr::null_mut(), Ordering::AcqRel);
            // SAFETY: the child unlinked and left its `Weak` to us.
            drop(unsafe { take_weak(ptr) });
        }
    }
}

impl Drop for FastSlot {
    /// A registry is freed only once no child is linked (a linked child,
    /// even one taken out of its `Arc` and forgotten, is counted once the
    /// owner goes, and keeps the registry): the slot is then empty. Should
    /// it not be, its `Weak` is let go here rather than leaked.
    fn drop(&mut self) {
        // Relaxed: `&mut self`.
        let ptr = address(self.0.load(Ordering::Relaxed));
        if !ptr.is_null() {
            // SAFETY: the slot's `Weak`, which nothing else can take now.
            drop(unsafe { take_weak(ptr) });
        }
    }
}

/// The slot's `Weak` back from its address.
///
/// # Safety
/// `ptr` came from `Weak::into_raw` and the caller owns that `Weak` (it
/// emptied the slot that held it).
unsafe fn take_weak(ptr: *mut RunState) -> Weak<RunState> {
    // SAFETY: as the caller promises.
    unsafe { Weak::from_raw(ptr.cast_const()) }
}
