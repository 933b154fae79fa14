//! Children: [`RunState::child`], the registry in which a parent keeps its
//! children, and how a dropped child unlinks itself.
//!
//! # Who owns what
//!
//! - `child()` returns an `Arc<RunState>`: the caller owns the child (clone
//!   the `Arc` to share it, e.g. with the worker thread).
//! - The parent keeps only a `Weak` to each child (see "The cancel
//!   walk"), inside a registry that the parent allocates on its first
//!   `child()` (`RunState::children`, one pointer): one child in the
//!   registry's *fast slot* (an atomic pointer, linked and unlinked with
//!   one CAS each, without the lock: see `fast_slot.rs`), the others in a
//!   slab (a `Vec` with a free list) under the registry's lock. The first
//!   child made while the fast slot is empty takes it; most parents have
//!   one child at a time, and never lock. The weak count is needed: safe
//!   code can move a child's value out of its `Arc` (`Arc::into_inner`,
//!   `get_mut` + `mem::swap`), which frees the allocation while the
//!   value, still linked, lives on; a bare address would dangle (see
//!   `ChildPtr`). A child keeps the registry's address and its place in
//!   it (its `ParentLink`, the first of its fields, so the first to
//!   drop), without a count: the registry lives while any child is
//!   linked, because a parent dropped first leaves its reference in the
//!   registry (`Slab::keep`) for the unlink that empties it (closing the
//!   fast slot first, so that a child in it unlinks under the lock,
//!   counted). (For what making and dropping a child costs, see "What a
//!   child costs".)
//! - A dropped child unlinks itself: its `ParentLink`'s `Drop` empties the
//!   fast slot with one CAS, or takes the registry's lock and frees its
//!   slab slot (O(1)), so a parent that makes
//!   and drops a million children keeps one slot per child alive at a
//!   time (the slab never grows past the most children alive at once, and
//!   is emptied when its last child goes, unless that was its only slot).
//! - A parent dropped before its children no longer cancels them (nobody
//!   can call its `cancel`), but they still follow its ancestors: if it
//!   had live children, its `ParentLink`'s `Drop` leaves its registry in
//!   its own slot upstream (an *orphan* entry, under the upstream lock,
//!   with a strong reference; the orphan records where it sits, in
//!   `upstream`), and a cancel walks an orphan as it would have walked the
//!   dropped state's children (tokio-util moves a dropped token's children
//!   to its parent; this moves them all at once, in O(1)). The unlink that
//!   empties an orphan frees its slot upstream too (and so on up a chain
//!   of dropped states), so memory stays that of the live states. A root
//!   dropped before its children detaches them: nothing above can cancel
//!   them any more, and they live on as they were (cancelled or not).
//!
//! Lock order: a registry, then the registry of one of its children (a
//! dropping state holds its parent's lock while it looks at its own); no
//! path takes them the other way round (an unlink that empties an orphan
//! releases it before it takes the lock upstream).
//!
//! # Why a child never misses its parent's cancel
//!
//! `child()` sets `HAS_CHILDREN` in the parent's word with an RMW if it is
//! not set yet, then inserts the child in the slab under the registry's
//! lock, and under that lock reads the parent's word. A cancel sets
//! `CANCELLED` with an RMW and, if the word it changed had `HAS_CHILDREN`,
//! takes the lock to list the children. In the word's order, either the
//! child's RMW (or its read of a word that already had `HAS_CHILDREN`)
//! comes first, and then the cancel sees
//! `HAS_CHILDREN` and its lock comes after the insert, so it lists the
//! child; or the cancel comes first, and the child reads `CANCELLED` and is
//! made cancelled. A cancelled parent's children are cancelled before its
//! `cancel` returns (a child made after it, at creation). A child linked in
//! the fast slot meets the cancel in the slot's modification order instead
//! of the lock (the argument is in `fast_slot.rs`).
//!
//! `cancelled()` on a child is the same one load as on any state: the
//! parent's cancel writes each child's word; no query ever walks the tree.
//!
//! # The cancel walk
//!
//! Under the registry's lock, the cancel takes a strong reference to each
//! child from its `Weak` (an upgrade: a CAS of the `Arc`'s count, which
//! fails for a child whose last `Arc` is gone, or whose value was moved
//! out of it) and sets its word with one `fetch_or`. A child that needs
//! nothing more (no waiter to wake, no children, no callbacks: most) is
//! let go at once, in place,
//! by `Arc::into_inner` (one RMW); if that finds ours the last reference
//! (its holder dropped it as we walked), the value comes out, its slot
//! lets go of its `Weak`, and the value is dropped after the lock (its drop
//! unlinks it, taking that lock). A child that needs more is kept, with
//! the word it had, and the rest of the work (waking, callbacks,
//! grandchildren) and the reference's release come after the lock. So a
//! cancel of 10,000 plain children is 10,000 × (CAS, `fetch_or`, RMW)
//! under one lock, with no list of them built.
//!
//! A child whose upgrade fails is dropping (or was moved out of its `Arc`,
//! which the walk cannot tell apart, and then misses the cancel itself):
//! while a value drops, only its
//! own drop may reach it (the contract of `drop_in_place`, which Miri
//! checks), so nothing of it is read or written; its slot keeps a copy of
//! its own registry (set by its first `child()`), through which its
//! children still follow the cancel. (An earlier design wrote the word of
//! a dropping child through a raw pointer; Miri's Stacked Borrows check
//! rejected it.)
//!
//! # What a child costs
//!
//! Making and dropping a child in the fast slot is an allocation and its
//! free, and seven atomic RMWs: the slot's CAS to link and its CAS to
//! unlink (two), the slot's weak count taken and let go (two), and the
//! `Arc`'s own three (`new_cyclic` sets the strong count with an RMW; the
//! last `Arc` and the implicit weak reference each let go of one). In the
//! slab, the lock and its release to link and again to unlink make it
//! nine. Measured against what was tried instead (`BENCHMARKS.md`, issue
//! 13; the figures before the fast slot, whose own are in `BENCHMARKS.md`):
//!
//! - A slot with the bare address (no weak count) is about 3 ns faster
//!   (0.44× tokio-util's `child_token()` + drop against 0.49–0.51×), and
//!   unsound: safe code can move a child out of its `Arc` (see
//!   `ChildPtr`). Only a child handle that never hands out an
//!   `Arc<RunState>` (nor does `current()`, a guard or a spawn) could make
//!   the bare address sound: the crate shares states as `Arc<RunState>`
//!   everywhere, so that trade was not taken.
//! - `Arc::new` and then `Arc::downgrade` (one RMW for the two of
//!   `new_cyclic` and `Weak::clone`) ran 4–5 ns slower (it builds the
//!   value on the stack and copies it in); `Arc::new_uninit`, with the
//!   value written in place and the `Weak` taken before the lock, ran no
//!   faster.
//! - A child's drop that leaves its slot for the parent to reclaim later
//!   (no lock in the drop) is 4–5 ns faster, but a value moved out of its
//!   `Arc` could then not tell whether its registry still lives (nor the
//!   registry tell it from a dropped one), and a dropped child would keep
//!   its memory until the parent's next call.
//! - A lock-free link into the slab (one `SeqCst` CAS into a slot, then a
//!   `SeqCst` load of the parent's word, against the cancel's `SeqCst`
//!   `fetch_or` and scan) must solve the reclamation race with a walk (a
//!   slot emptied and reused while a walk upgrades its `Weak`; the free
//!   list's ABA). The fast slot is that design for one slot: the walk pins
//!   the `Weak` with a tag, the slot's `Weak` rules out ABA, and the
//!   `Acquire`/`Release` RMWs of the one word replace `SeqCst`.

mod fast_slot;
mod link;
mod slab;
mod walk;

use std::borrow::Cow;
use std::mem::ManuallyDrop;
use std::sync::{Arc, Weak};

use super::cancel::CancelReason;
use super::state::{ANY_CANCEL, CANCELLED, ENDED_CANCELLED, FROM_PARENT, HAS_CHILDREN};
use super::RunState;
use crate::sync::{mutant, Lock, LockGuard, Ordering};
use fast_slot::FastSlot;
use link::Place;
use slab::{ChildPtr, Slab, NONE};

pub(crate) use link::{Children, ParentLink};
pub(crate) use walk::Follow;

/// A parent's children: a slab of `Weak`s under a lock taken only to add,
/// remove or list children (never on a query, never by a childless cancel).
pub(crate) struct Registry {
    slab: Lock<Slab>,
    /// One child linked and unlinked without the lock (see `fast_slot.rs`).
    fast: FastSlot,
}

/// What [`RunState::watch_children_registry`] returns: a `Weak` to the
/// registry. For the loom models and memory tests; not part of the API.
#[doc(hidden)]
pub struct RegistryWatch(Weak<Registry>);

impl RegistryWatch {
    /// Has the registry been freed (its owner and every child it linked
    /// gone, and nothing else holding it)?
    #[doc(hidden)]
    pub fn freed(&self) -> bool {
        self.0.strong_count() == 0
    }
}

impl Registry {
    /// The slab, locked. A `sync::Lock`, not std's `Mutex`: a registry is
    /// freed by whichever user finds it empty under this lock, which may
    /// be the moment another user's release made it so; std's release
    /// still wakes through the mutex after it (see `sync/lock.rs`).
    #[inline]
    fn lock(&self) -> LockGuard<'_, Slab> {
        self.slab.lock()
    }
}

impl RunState {
    /// A new `RunState` named `name` that is cancelled whenever this one
    /// is: at once (before this state's [`cancel`](Self::cancel) returns),
    /// with this state's [`reason`](Self::reason); cancelled at creation if
    /// this state is cancelled already. Never the reverse: cancelling the
    /// child leaves the parent alone.
    ///
    /// The child is a full `RunState` with its own start, stop, pause,
    /// times and callbacks (its `on_cancel` callbacks run in the thread
    /// that cancelled the parent), and can have children of its own. A
    /// child cancelled by its parent stays cancelled: a later start of the
    /// child begins cancelled. [`cancelled`](Self::cancelled) on a child
    /// is one load, as on any state.
    ///
    /// Ownership: the caller owns the child through the returned `Arc`;
    /// this state keeps only a `Weak`, and a dropped child unlinks itself,
    /// so making and dropping children never accumulates. If this state is
    /// dropped first, its children live on and still follow this state's
    /// parent (and its ancestors): `server.child("worker").child("job")`
    /// drops the worker at once, yet the server's cancel reaches the job. A
    /// state with no parent dropped first detaches its children. A child
    /// taken out of its `Arc` (`Arc::into_inner`, `try_unwrap`) stays
    /// linked until it drops, but no longer follows this state's cancel
    /// (the children it has when the cancel comes still do; one it makes
    /// later follows it, not cancelled); `Arc::get_mut` on a child is `None`
    /// (this state's `Weak`).
    ///
    /// A child made while this state reads cancelled follows this state's
    /// current cancel: a cancel of the run in progress (or of the next run,
    /// made before the start) holds for the child for good; the cancel of a
    /// run that has ended (this state stopped cancelled) makes the child
    /// read cancelled, with that reason, only until the child's own next
    /// start.
    ///
    /// Costs: an allocation for the child, and one CAS to link it (and, in
    /// its drop, one to unlink it) if this state's one lock-free place for a
    /// child is free (as it is whenever this state has no other live child);
    /// otherwise this state's registry lock to insert it (and to remove
    /// it): O(1) either way, never blocking but on that lock. A state's
    /// first child also allocates the registry.
    ///
    /// ```
    /// use multiopen::RunState;
    ///
    /// let server = RunState::new("server");
    /// let worker = server.child("worker");
    /// let job = worker.child("job"); // a grandchild
    /// worker.cancel();
    /// assert!(job.cancelled() && !server.cancelled()); // down, never up
    /// server.cancel_with("shutdown");
    /// let late = server.child("late");
    /// assert!(late.cancelled()); // made after the cancel: cancelled at once
    /// assert_eq!(late.reason().as_deref(), Some("shutdown"));
    /// ```
    #[must_use = "a child dropped at once unlinks at once: keep it for the work it stands for"]
    pub fn child(&self, name: impl Into<Cow<'static, str>>) -> Arc<RunState> {
        let name = name.into();
        let raw = self.registry();
        // SAFETY: `children` holds this reference until this `RunState` is
        // dropped, so it is alive while we hold `&self`.
        let registry = unsafe { &*raw };
        // Acquire: as `cancelled`.
        let mut s = self.state.load(Ordering::Acquire);
        if s & HAS_CHILDREN == 0 {
            // AcqRel: orders this RMW in the word with a cancel's (a cancel
            // after it walks the registry; one before it shows here);
            // Release publishes the registry (stored before) to a
            // canceller that sees the bit.
            s = self.state.fetch_or(HAS_CHILDREN, Ordering::AcqRel);
        }
        if s & ANY_CANCEL != 0 || !registry.fast.is_open() {
            return self.child_in_slab(name, raw);
        }
        // The fast slot (see `fast_slot.rs`): build the child, then link it
        // with one CAS, then look at our word again.
        let mut weak = std::ptr::null();
        let child = Arc::new_cyclic(|me| {
            // A weak count of the slot's own (see `ChildPtr`).
            weak = Weak::into_raw(Weak::clone(me));
            RunState::build(name, 0, Some(ParentLink::fast(raw, weak)))
        });
        if registry.fast.link(weak) {
            // Acquire: a cancel whose walk's RMW of the slot came before
            // our link happened before this load (see `fast_slot.rs`).
            if self.state.load(Ordering::Acquire) & ANY_CANCEL != 0
                && !mutant("run_state::fast_child_misses_late_cancel")
            {
                self.inherit_late(&child);
            }
        } else {
            // Taken meanwhile: the slab, under the lock, with the `Weak`
            // the slot did not take. (The child's place says the fast slot
            // until `set_slab`: nothing between could panic but a `Vec`
            // capacity overflow in the insert, which the allocator's
            // abort comes before.)
            let mut slab = registry.lock();
            // SAFETY: from `into_raw` above, not taken by the slot.
            let index = slab.insert(ChildPtr(unsafe { Weak::from_raw(weak) }));
            if let Some(link) = &child._parent {
                link.set_slab(index);
            }
            // Acquire: as above; under the lock, as in `child_in_slab`.
            if self.state.load(Ordering::Acquire) & ANY_CANCEL != 0 {
                self.inherit_late(&child);
            }
            drop(slab);
        }
        child
    }

    /// `child()` in the slab, under the registry lock (the fast slot is
    /// taken, or this state reads cancelled).
    #[cold]
    #[inline(never)]
    fn child_in_slab(&self, name: Cow<'static, str>, raw: *const Registry) -> Arc<RunState> {
        // SAFETY: as in `child`.
        let registry = unsafe { &*raw };
        let mut slab = registry.lock();
        // Under the lock (see the module docs; where in the locked section
        // does not matter: a cancel's walk takes the lock after its RMW of
        // the word). Before the insert, so that nothing that could panic
        // comes between the insert and the value's `ParentLink`, which
        // alone frees the slot.
        // Acquire: as `cancelled`; a cancel seen here is one whose
        // children list comes after ours (or never looks).
        let s = self.state.load(Ordering::Acquire);
        let (word, inherited) =
            if s & ANY_CANCEL != 0 && !mutant("run_state::child_misses_parent_cancel") {
                self.inherited_cancel()
            } else {
                (0, None)
            };
        let child = Arc::new_cyclic(|weak| {
            // A weak count of our own (see `ChildPtr`); nothing is read
            // through it before the value is in place (it is read under
            // this lock, which we hold until then).
            let index = slab.insert(ChildPtr(Weak::clone(weak)));
            RunState::build(name, word, Some(ParentLink::in_slab(raw, index)))
        });
        if let Some(reason) = inherited {
            // Still under the registry lock, and nobody else has the child
            // yet: no cancel can race this.
            child.set_inherited_reason(reason);
        }
        drop(slab);
        child
    }

    /// A child linked (in the fast slot, or in the slab after the fast link
    /// failed) while this state was cancelled, though it read not
    /// cancelled before it built the child: the child inherits the cancel
    /// as it stands now (see `inherited_cancel`), as if made now. A walk of
    /// that cancel may mark it too: its word's RMW and the reason, set
    /// under the child's reasons lock, go to whichever comes first.
    #[cold]
    #[inline(never)]
    fn inherit_late(&self, child: &RunState) {
        let (word, reason) = self.inherited_cancel();
        if word == 0 {
            return;
        }
        match reason {
            // Release: as in `cancel`.
            None => drop(child.state.fetch_or(word, Ordering::Release)),
            Some(reason) => {
                let mut reasons = child.lock_reasons();
                // Release: as in `cancel`.
                let prev = child.state.fetch_or(word, Ordering::Release);
                if prev & ANY_CANCEL == 0 {
                    if word & CANCELLED != 0 {
                        reasons.current = Some(reason);
                    } else {
                        reasons.ended = Some(reason);
                    }
                }
            }
        }
    }

    /// The word a child made now begins with, as this state reads
    /// cancelled, with the reason to give it. Called once the child is
    /// linked (under the registry lock in the slab, after the link's CAS in
    /// the fast slot: a cancel from now on walks the child): this state's cancel as
    /// it is now, with its reason, read together under its reasons lock
    /// (lock order: registry, then reasons). Its current cancel holds for
    /// the child for good (`CANCELLED | FROM_PARENT`); a cancel whose run
    /// has ended only as the child's own ended cancel (`ENDED_CANCELLED`),
    /// which the child's next start clears: this state's next run is not
    /// cancelled, so neither is the child's.
    #[cold]
    #[inline(never)]
    fn inherited_cancel(&self) -> (u32, Option<CancelReason>) {
        let (now, reason) = self.cancel_and_reason();
        if now & CANCELLED != 0 || mutant("run_state::child_keeps_ended_cancel") {
            (CANCELLED | FROM_PARENT, reason)
        } else if now & ENDED_CANCELLED != 0 {
            (ENDED_CANCELLED, reason)
        } else {
            (0, None)
        }
    }

    /// Records the reason a new child inherited with its word (see
    /// `inherited_cancel`): its current cancel's, or its ended run's.
    #[cold]
    #[inline(never)]
    fn set_inherited_reason(&self, reason: CancelReason) {
        let mut reasons = self.lock_reasons();
        // Relaxed: our own word, set at creation by this thread.
        if self.state.load(Ordering::Relaxed) & CANCELLED != 0 {
            reasons.current = Some(reason);
        } else {
            reasons.ended = Some(reason);
        }
    }

    /// How many children made by [`child`](Self::child) are alive (not yet
    /// dropped). Takes the registry lock.
    ///
    /// ```
    /// let parent = multiopen::RunState::new("parent");
    /// let a = parent.child("a");
    /// let b = parent.child("b");
    /// assert_eq!(parent.child_count(), 2);
    /// drop(a);
    /// assert_eq!(parent.child_count(), 1);
    /// # drop(b);
    /// ```
    pub fn child_count(&self) -> usize {
        self.registry_ref().map_or(0, |registry| {
            let slab = registry.lock();
            slab.live - slab.orphans + usize::from(registry.fast.holds_uncounted_child())
        })
    }

    /// The slots of the children registry (occupied or free): what it
    /// holds memory for. For the memory tests; not part of the API.
    #[doc(hidden)]
    pub fn child_slots(&self) -> usize {
        self.registry_ref()
            .map_or(0, |registry| registry.lock().entries.capacity())
    }

    /// A watch on this state's children registry (`None` if it never made
    /// a child), which says whether the registry has been freed. For the
    /// loom models and memory tests; not part of the API.
    #[doc(hidden)]
    pub fn watch_children_registry(&self) -> Option<RegistryWatch> {
        // Acquire: as in `registry_ref`.
        let ptr = self.children.0.load(Ordering::Acquire);
        (!ptr.is_null()).then(|| {
            // SAFETY: as in `registry`: `children` holds this reference
            // while we hold `&self`; `ManuallyDrop`: borrowed, not dropped.
            let registry = ManuallyDrop::new(unsafe { Arc::from_raw(ptr.cast_const()) });
            RegistryWatch(Arc::downgrade(&registry))
        })
    }

    // --- internals ------------------------------------------------------------

    /// The registry, made on first use: as `Children` holds it
    /// (`Arc::into_raw`), alive as long as `self`.
    #[inline]
    fn registry(&self) -> *const Registry {
        // Acquire: as in `registry_ref`.
        let ptr = self.children.0.load(Ordering::Acquire);
        if ptr.is_null() {
            self.make_registry()
        } else {
            ptr
        }
    }

    /// `registry`'s first use: makes the registry and publishes it (or
    /// finds another thread's).
    #[cold]
    #[inline(never)]
    fn make_registry(&self) -> *const Registry {
        let new = Arc::into_raw(Arc::new(Registry {
            slab: Lock::new(Slab {
                entries: Vec::new(),
                free: NONE,
                live: 0,
                orphans: 0,
                upstream: None,
                keep: None,
                fast_own: None,
            }),
            fast: FastSlot::new(),
        }))
        .cast_mut();
        // Our parent's lock (we hold no other), held across the publish
        // and the record of the slot's copy of our registry (for our
        // unlink, and for a walk that finds us going: see `Entry::Child`),
        // so that no walk sees the one without the other: a child moved
        // out of its `Arc` and shared by reference could otherwise link a
        // grandchild in our registry, published, that a walk between the
        // two steps would miss (found by the adversarial tests).
        let lock_upstream = || {
            self._parent
                .as_ref()
                .map(|link| (link, link.registry().lock()))
        };
        let early = !mutant("run_state::registry_published_before_parent_lock");
        let upstream = if early { lock_upstream() } else { None };
        // AcqRel: Release publishes the registry; Acquire (also on
        // failure) sees another thread's.
        match self.children.0.compare_exchange(
            std::ptr::null_mut(),
            new,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => {
                // (Under the mutant: the lock taken only now, the bug.)
                let upstream = if early { upstream } else { lock_upstream() };
                if let Some((link, mut slab)) = upstream {
                    // SAFETY: `new` came from `into_raw` and `children`
                    // now holds it, alive while we hold `&self`;
                    // `ManuallyDrop`: borrowed, never dropped.
                    let mine = ManuallyDrop::new(unsafe { Arc::from_raw(new) });
                    match link.place() {
                        Place::Slab(index) => slab.set_own_registry(index, &mine),
                        Place::Fast(_) => {
                            // Our unlink may have to leave our registry
                            // upstream as an orphan: it takes the lock.
                            slab.fast_own = Some(Arc::clone(&mine));
                            if link.registry().fast.close() {
                                slab.live += 1;
                            }
                        }
                    }
                }
                new
            }
            Err(theirs) => {
                drop(upstream);
                // SAFETY: `new` came from `into_raw` just above and was
                // never shared.
                drop(unsafe { Arc::from_raw(new) });
                theirs
            }
        }
    }

    /// The registry, if any child was ever made.
    #[inline]
    fn registry_ref(&self) -> Option<&Registry> {
        // Acquire: as in `registry`.
        let ptr = self.children.0.load(Ordering::Acquire);
        // SAFETY: as in `registry`: alive as long as `self`.
        (!ptr.is_null()).then(|| unsafe { &*ptr })
    }
}
