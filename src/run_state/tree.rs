//! Children: [`RunState::child`], the registry in which a parent keeps its
//! children, and how a dropped child unlinks itself.
//!
//! # Who owns what
//!
//! - `child()` returns an `Arc<RunState>`: the caller owns the child (clone
//!   the `Arc` to share it, e.g. with the worker thread).
//! - The parent keeps only a `Weak` to each child (see "The cancel
//!   walk"), in a slab (a `Vec` with a free list) inside a registry
//!   that the parent allocates on its first `child()`
//!   (`RunState::children`, one pointer). The weak count is needed: safe
//!   code can move a child's value out of its `Arc` (`Arc::into_inner`,
//!   `get_mut` + `mem::swap`), which frees the allocation while the
//!   value, still linked, lives on; a bare address would dangle (see
//!   `ChildPtr`). A child keeps the registry's address and its index in
//!   the slab (its `ParentLink`, the first of its fields, so the first to
//!   drop), without a count: the registry lives while any child is
//!   linked, because a parent dropped first leaves its reference in the
//!   registry (`Slab::keep`) for the unlink that empties it. (For what
//!   making and dropping a child costs, see "What a child costs".)
//! - A dropped child unlinks itself: its `ParentLink`'s `Drop` takes the
//!   registry's lock and frees its slot (O(1)), so a parent that makes
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
//! `child()` inserts the child under the registry's lock, and under that
//! lock reads the parent's word, setting `HAS_CHILDREN` with an RMW if it
//! is not set yet. A cancel sets `CANCELLED` with an RMW and, if the word it
//! changed had `HAS_CHILDREN`, takes the lock to list the children. In the
//! word's order, either the child's RMW (or its read of a word that already
//! had `HAS_CHILDREN`) comes first, and then the cancel sees
//! `HAS_CHILDREN` and its lock comes after the insert, so it lists the
//! child; or the cancel comes first, and the child reads `CANCELLED` and is
//! made cancelled. A cancelled parent's children are cancelled before its
//! `cancel` returns (a child made after it, at creation).
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
//! Making and dropping a child is an allocation and its free, and nine
//! atomic RMWs: the registry lock and unlock to link and again to unlink
//! (four), the slot's weak count taken and let go (two), and the `Arc`'s
//! own three (`new_cyclic` sets the strong count with an RMW; the last
//! `Arc` and the implicit weak reference each let go of one). Measured
//! against what was tried instead (`BENCHMARKS.md`, issue 13):
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
//! - A lock-free link (one `SeqCst` CAS into a slot, then a `SeqCst` load
//!   of the parent's word, against the cancel's `SeqCst` `fetch_or` and
//!   scan) and unlink would save two of the four lock RMWs. What such a
//!   design must then solve is the reclamation race with a walk (a slot
//!   emptied and reused while a walk upgrades its `Weak`; the free list's
//!   ABA), which the lock settles today: not built yet.

use std::borrow::Cow;
use std::mem::ManuallyDrop;
use std::sync::{Arc, Weak};

use super::cancel::CancelReason;
use super::state::{
    ANY_CANCEL, ANY_WAITERS, CANCELLED, ENDED_CANCELLED, FROM_PARENT, HAS_CALLBACKS, HAS_CHILDREN,
};
use super::RunState;
use crate::sync::{fence, mutant, AtomicPtr, Lock, LockGuard, Ordering};

/// A parent's children: a slab of `Weak`s under a lock taken only to add,
/// remove or list children (never on a query, never by a childless cancel).
pub(super) struct Registry {
    slab: Lock<Slab>,
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

/// `RunState::children`: the state's registry (`Arc::into_raw`), made by
/// its first `child()`, or null. Its `Drop` (the state's) lets go of it,
/// detaching the children (they hold the registry until they go).
pub(super) struct Children(AtomicPtr<Registry>);

impl Children {
    pub(super) fn new() -> Self {
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
pub(super) struct ParentLink {
    /// As `Children` holds it (`Arc::into_raw`): its provenance covers the
    /// `Arc`'s counts, for `registry_arc`.
    registry: *const Registry,
    index: usize,
}

// SAFETY: `registry` is only read as `&Registry` (a `Lock`, `Sync`), and
// it lives while the child that holds this link is linked (see above).
unsafe impl Send for ParentLink {}
// SAFETY: as for `Send`.
unsafe impl Sync for ParentLink {}

impl ParentLink {
    /// The registry this child is linked in.
    fn registry(&self) -> &Registry {
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

/// Where an orphan registry sits: the registry upstream and the slot.
type Upstream = (Arc<Registry>, usize);

/// No free slot.
const NONE: usize = usize::MAX;

/// The children, with a free list threaded through the vacant slots.
struct Slab {
    entries: Vec<Entry>,
    /// The first vacant slot, or `NONE`.
    free: usize,
    /// Occupied slots (children and orphans).
    live: usize,
    /// Occupied slots that hold an orphan registry.
    orphans: usize,
    /// Set once the state that owned this registry has gone while children
    /// were alive (the registry is an orphan): the registry and slot
    /// upstream that hold it. Taken by the unlink that empties this one.
    upstream: Option<Upstream>,
    /// The owner's reference to this registry, left here by an owner gone
    /// while children were linked (`Children`'s `Drop`): it keeps the
    /// registry alive for their `ParentLink`s, which hold no count. Taken
    /// (and let go outside the lock) by the unlink that empties it.
    keep: Option<Arc<Registry>>,
}

enum Entry {
    /// A child (`None` once a cancel's walk holds its last reference: see
    /// `Registry::mark`), and its own registry once it has one (set by the
    /// child's first `child()`): so that neither the child's unlink nor a
    /// cancel's walk ever reads a field of a child that may be dropping
    /// (see `ParentLink`).
    Child(Option<ChildPtr>, Option<Arc<Registry>>),
    /// The registry of a child that has gone while children of its own
    /// were alive: a cancel walks it as it would have walked the child's.
    Orphan(Arc<Registry>),
    /// Vacant; the next vacant slot (or `NONE`).
    Free(usize),
}

/// A linked child: a `Weak` to it (one weak count). The count is what
/// keeps the address valid: safe code can move a child's value out of its
/// `Arc` (`Arc::into_inner`, `try_unwrap`, `get_mut` + `mem::replace` or
/// `swap`), which frees the allocation (or hands it another value) while
/// the value, still linked, lives on; a bare address would then dangle.
/// With the count, such a child only fails to upgrade (it is then treated
/// as going: its own children still follow the cancel).
struct ChildPtr(Weak<RunState>);

impl ChildPtr {
    /// A strong reference to the child, or `None` if it is going (its last
    /// `Arc` has been dropped, or its value was moved out of it). A CAS of
    /// the `Arc`'s count; never touches the value (which may be dropping).
    #[inline]
    fn upgrade(&self) -> Option<Arc<RunState>> {
        self.0.upgrade()
    }
}

impl Slab {
    #[inline]
    fn insert(&mut self, child: ChildPtr) -> usize {
        self.live += 1;
        if self.free == NONE {
            self.entries.push(Entry::Child(Some(child), None));
            return self.entries.len() - 1;
        }
        let index = self.free;
        let Entry::Free(next) =
            std::mem::replace(&mut self.entries[index], Entry::Child(Some(child), None))
        else {
            unreachable!("the free list holds vacant slots only");
        };
        self.free = next;
        index
    }

    /// The common unlink, done in place: frees slot `index` if it holds a
    /// child that never made children (nothing to orphan, nothing to let
    /// go outside the lock) and freeing it leaves nothing upstream to
    /// free. Returns whether it did (if not, the caller takes the general
    /// path). Not `remove` and a drop, though it does a part of the same
    /// bookkeeping: that measured 32–34 ns a child create+drop against
    /// 23.7 ns for this (0.62–0.66× against 0.49× tokio-util's).
    #[inline]
    fn vacate(&mut self, index: usize) -> bool {
        if !matches!(self.entries.get(index), Some(Entry::Child(_, None)))
            || (self.live == 1 && (self.upstream.is_some() || self.keep.is_some()))
        {
            return false;
        }
        self.live -= 1;
        if self.live == 0 && self.entries.len() > 1 {
            // Every other slot is vacant: start afresh (see `remove`).
            self.entries.clear();
            self.free = NONE;
        } else {
            // The entry replaced holds a `Weak`: its drop runs no user
            // code (at most it frees an allocation emptied by a move).
            self.entries[index] = Entry::Free(self.free);
            self.free = index;
        }
        true
    }

    /// Frees slot `index`, which its child (or, for an orphan, the unlink
    /// that emptied it) alone removes (once); returns what it held, for
    /// the caller to drop outside the lock.
    fn remove(&mut self, index: usize) -> Option<Entry> {
        let entry = self.entries.get_mut(index)?;
        if matches!(entry, Entry::Free(_)) {
            return None;
        }
        let old = std::mem::replace(entry, Entry::Free(self.free));
        self.free = index;
        self.live -= 1;
        if matches!(old, Entry::Orphan(_)) {
            self.orphans -= 1;
        }
        if self.live == 0 {
            // Keep the memory of the busiest moment, not its length.
            self.entries.clear();
            self.free = NONE;
        }
        Some(old)
    }

    /// If the last occupied slot has gone: what is to be let go outside the
    /// lock (the slot upstream, if this registry is an orphan, and the
    /// owner's reference, if the owner has gone).
    fn emptied(&mut self) -> (Option<Upstream>, Option<Arc<Registry>>) {
        if self.live == 0 {
            (self.upstream.take(), self.keep.take())
        } else {
            (None, None)
        }
    }

    /// The registry of the child in slot `index`, if it has one: a new
    /// strong reference, from the slot's copy (never from the child, which
    /// may be dropping: see `ParentLink`).
    fn own_registry(&self, index: usize) -> Option<Arc<Registry>> {
        match self.entries.get(index) {
            Some(Entry::Child(_, Some(registry))) => Some(Arc::clone(registry)),
            _ => None,
        }
    }

    /// Records `registry` as the own registry of the child in slot `index`
    /// (see `Entry::Child`).
    fn set_own_registry(&mut self, index: usize, registry: &Arc<Registry>) {
        if let Some(Entry::Child(_, own)) = self.entries.get_mut(index) {
            *own = Some(Arc::clone(registry));
        }
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
    /// (its own children still do); `Arc::get_mut` on a child is `None`
    /// (this state's `Weak`).
    ///
    /// A child made while this state reads cancelled follows this state's
    /// current cancel: a cancel of the run in progress (or of the next run,
    /// made before the start) holds for the child for good; the cancel of a
    /// run that has ended (this state stopped cancelled) makes the child
    /// read cancelled, with that reason, only until the child's own next
    /// start.
    ///
    /// Costs: an allocation for the child, and this state's registry lock
    /// to insert it (and, in the child's drop, to remove it): O(1). A
    /// state's first child also allocates the registry.
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
        let mut slab = registry.lock();
        // Under the lock (see the module docs; where in the locked section
        // does not matter: a cancel's walk takes the lock after its RMW of
        // the word). Before the insert, so that nothing that could panic
        // comes between the insert and the value's `ParentLink`, which
        // alone frees the slot.
        // Acquire: as `cancelled`; a cancel seen here is one whose
        // children list comes after ours (or never looks).
        let mut s = self.state.load(Ordering::Acquire);
        if s & HAS_CHILDREN == 0 {
            // AcqRel: orders this RMW in the word with the cancel's;
            // Release publishes the registry (stored before) to a
            // canceller that sees the bit.
            s = self.state.fetch_or(HAS_CHILDREN, Ordering::AcqRel);
        }
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
            RunState::build(
                name,
                word,
                Some(ParentLink {
                    registry: raw,
                    index,
                }),
            )
        });
        if let Some(reason) = inherited {
            // Still under the registry lock, and nobody else has the child
            // yet: no cancel can race this.
            child.set_inherited_reason(reason);
        }
        drop(slab);
        child
    }

    /// The word a child made now begins with, as this state reads
    /// cancelled, with the reason to give it. Called under the registry
    /// lock (a cancel from now on walks the child): this state's cancel as
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
            slab.live - slab.orphans
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
            }),
        }))
        .cast_mut();
        // AcqRel: Release publishes the registry; Acquire (also on
        // failure) sees another thread's.
        let ptr = match self.children.0.compare_exchange(
            std::ptr::null_mut(),
            new,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => {
                if let Some(link) = &self._parent {
                    // SAFETY: `new` came from `into_raw` and `children`
                    // now holds it, alive while we hold `&self`;
                    // `ManuallyDrop`: borrowed, never dropped.
                    let mine = ManuallyDrop::new(unsafe { Arc::from_raw(new) });
                    // Our parent's lock alone (we hold no other): the
                    // slot's copy, for our unlink and for a walk that
                    // finds us going (see `Entry::Child`).
                    link.registry().lock().set_own_registry(link.index, &mine);
                }
                new
            }
            Err(theirs) => {
                // SAFETY: `new` came from `into_raw` just above and was
                // never shared.
                drop(unsafe { Arc::from_raw(new) });
                theirs
            }
        };
        ptr
    }

    /// The registry, if any child was ever made.
    #[inline]
    fn registry_ref(&self) -> Option<&Registry> {
        // Acquire: as in `registry`.
        let ptr = self.children.0.load(Ordering::Acquire);
        // SAFETY: as in `registry`: alive as long as `self`.
        (!ptr.is_null()).then(|| unsafe { &*ptr })
    }

    /// Marks the live children cancelled (`CANCELLED | FROM_PARENT`),
    /// under the registry lock, each through a strong reference, and adds
    /// to `follow` each such reference (with the word it had: the rest of
    /// the work, and the reference's release, come after the lock), the
    /// registry of each orphan, and that of a child going as we walk
    /// (whose children must still follow us). With `reason`, every live
    /// child goes to `follow` unmarked instead (its reason is set under its
    /// own lock, which needs its cold part). Called after an RMW of our
    /// word that showed `HAS_CHILDREN`.
    pub(super) fn mark_children(&self, reason: bool, follow: &mut Vec<Follow>) {
        // Acquire fence: our caller's RMW read a word whose HAS_CHILDREN
        // came from the Release RMW of a `child()` that stored the
        // registry pointer before it; this makes that store visible.
        fence(Ordering::Acquire);
        if let Some(registry) = self.registry_ref() {
            registry.mark(reason, follow);
        }
    }
}

/// What a cancel's walk does next (see `cancel_children`).
pub(super) enum Follow {
    /// A child to wake, walk or call back: its word before our mark
    /// (`None`: not marked yet, its reason to be set with its word).
    State(Arc<RunState>, Option<u32>),
    /// A registry whose state has gone: walk it.
    Registry(Arc<Registry>),
    /// A child whose last reference the walk turned out to hold: to be
    /// dropped after the lock (its drop unlinks it, taking that lock).
    Last(RunState),
}

/// Whether a child whose word was `prev` before a parent's cancel marked
/// it needs more than the mark: a wake, its own children, its callbacks
/// (none if it was cancelled already: its own cancel does them).
fn needs_follow_up(prev: u32) -> bool {
    prev & CANCELLED == 0 && prev & (ANY_WAITERS | HAS_CHILDREN | HAS_CALLBACKS) != 0
}

impl Registry {
    /// The walk of one registry: see [`RunState::mark_children`].
    pub(super) fn mark(&self, reason: bool, follow: &mut Vec<Follow>) {
        let mut slab = self.lock();
        if mutant("run_state::cancel_children_under_lock") {
            // The bug: cancel each child while holding the lock. If ours is
            // the last reference, the child's drop (its unlink) takes this
            // very lock.
            for entry in &slab.entries {
                if let Entry::Child(Some(child), _) = entry {
                    if let Some(child) = child.upgrade() {
                        child.cancel();
                    }
                }
            }
            return;
        }
        for index in 0..slab.entries.len() {
            let child = match &slab.entries[index] {
                Entry::Child(Some(child), _) => child.upgrade(),
                // A child whose last reference a walk holds (to drop it
                // after its lock): marked by that walk, so it needs
                // nothing but, as a going one, its children followed.
                Entry::Child(None, _) => None,
                Entry::Orphan(registry) => {
                    follow.push(Follow::Registry(Arc::clone(registry)));
                    continue;
                }
                Entry::Free(_) => continue,
            };
            let Some(child) = child else {
                // Going: its last `Arc` is gone and its drop waits for this
                // lock to unlink it. Nothing of it is touched (while a value
                // drops, only its own drop may reach it); it has no sleeper
                // (a sleeper holds a reference) and nobody to call back; but
                // its children follow us, through the slot's copy of its
                // registry.
                if !mutant("run_state::walk_skips_going_child") {
                    follow.extend(slab.own_registry(index).map(Follow::Registry));
                }
                continue;
            };
            if reason {
                follow.push(Follow::State(child, None));
                continue;
            }
            // Release: as in `cancel`.
            let prev = child
                .state
                .fetch_or(CANCELLED | FROM_PARENT, Ordering::Release);
            if mutant("run_state::walk_drops_last_under_lock") {
                // The bug: let our reference go here, under the lock. If
                // its holder dropped its own meanwhile, ours is the last,
                // and the child's drop (its unlink) takes this very lock.
                drop(child);
                continue;
            }
            if needs_follow_up(prev) {
                // The rest of the work comes after the lock is released
                // (callbacks are user code, and ours may be the last
                // reference, whose drop takes this lock).
                follow.push(Follow::State(child, Some(prev)));
            } else if let Some(last) = Arc::into_inner(child) {
                // Ours was the last reference (its holder dropped it as
                // we walked): its drop, which takes this lock, comes after
                // it; meanwhile its slot lets go of its `Weak` (freeing
                // the emptied allocation: no user code) and keeps its
                // registry's copy.
                if let Entry::Child(ptr, _) = &mut slab.entries[index] {
                    *ptr = None;
                }
                follow.push(Follow::Last(last));
            }
            // Otherwise our reference went with one RMW (`into_inner`),
            // under the lock: not the last, so no drop ran.
        }
    }
}
