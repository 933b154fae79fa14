//! The slab in which a registry keeps its children: `Weak`s in a `Vec`
//! with a free list threaded through the vacant slots.

use std::sync::{Arc, Weak};

use super::Registry;
use crate::run_state::RunState;

/// Where an orphan registry sits: the registry upstream and the slot.
pub(super) type Upstream = (Arc<Registry>, usize);

/// No free slot.
pub(super) const NONE: usize = usize::MAX;

/// The children, with a free list threaded through the vacant slots.
pub(super) struct Slab {
    pub(super) entries: Vec<Entry>,
    /// The first vacant slot, or `NONE`.
    pub(super) free: usize,
    /// Occupied slots (children and orphans).
    pub(super) live: usize,
    /// Occupied slots that hold an orphan registry.
    pub(super) orphans: usize,
    /// Set once the state that owned this registry has gone while children
    /// were alive (the registry is an orphan): the registry and slot
    /// upstream that hold it. Taken by the unlink that empties this one.
    pub(super) upstream: Option<Upstream>,
    /// The owner's reference to this registry, left here by an owner gone
    /// while children were linked (`Children`'s `Drop`): it keeps the
    /// registry alive for their `ParentLink`s, which hold no count. Taken
    /// (and let go outside the lock) by the unlink that empties it.
    pub(super) keep: Option<Arc<Registry>>,
    /// The own registry of the child in the fast slot, once it has one
    /// (what `Entry::Child`'s second field is for a slab child); the slot
    /// is then `SLOW`, and the child counted in `live`.
    pub(super) fast_own: Option<Arc<Registry>>,
}

pub(super) enum Entry {
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
pub(super) struct ChildPtr(pub(super) Weak<RunState>);

impl ChildPtr {
    /// A strong reference to the child, or `None` if it is going (its last
    /// `Arc` has been dropped, or its value was moved out of it). A CAS of
    /// the `Arc`'s count; never touches the value (which may be dropping).
    #[inline]
    pub(super) fn upgrade(&self) -> Option<Arc<RunState>> {
        self.0.upgrade()
    }
}

impl Slab {
    #[inline]
    pub(super) fn insert(&mut self, child: ChildPtr) -> usize {
        self.insert_entry(Entry::Child(Some(child), None))
    }

    /// Puts `entry` (occupied) in a vacant slot; returns its index.
    #[inline]
    fn insert_entry(&mut self, entry: Entry) -> usize {
        self.live += 1;
        if self.free == NONE {
            self.entries.push(entry);
            return self.entries.len() - 1;
        }
        let index = self.free;
        let Entry::Free(next) = std::mem::replace(&mut self.entries[index], entry) else {
            unreachable!("the free list holds vacant slots only");
        };
        self.free = next;
        index
    }

    /// Leaves the registry of a gone fast child (see `Slab::fast_own`) in
    /// a slot of its own, as an orphan; returns its index.
    pub(super) fn insert_orphan(&mut self, registry: Arc<Registry>) -> usize {
        self.orphans += 1;
        self.insert_entry(Entry::Orphan(registry))
    }

    /// The common unlink, done in place: frees slot `index` if it holds a
    /// child that never made children (nothing to orphan, nothing to let
    /// go outside the lock) and freeing it leaves nothing upstream to
    /// free. Returns whether it did (if not, the caller takes the general
    /// path). Not `remove` and a drop, though it does a part of the same
    /// bookkeeping: that measured 32–34 ns a child create+drop against
    /// 23.7 ns for this (0.62–0.66× against 0.49× tokio-util's).
    #[inline]
    pub(super) fn vacate(&mut self, index: usize) -> bool {
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
    pub(super) fn remove(&mut self, index: usize) -> Option<Entry> {
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
    pub(super) fn emptied(&mut self) -> (Option<Upstream>, Option<Arc<Registry>>) {
        if self.live == 0 {
            (self.upstream.take(), self.keep.take())
        } else {
            (None, None)
        }
    }

    /// The registry of the child in slot `index`, if it has one: a new
    /// strong reference, from the slot's copy (never from the child, which
    /// may be dropping: see `ParentLink`).
    pub(super) fn own_registry(&self, index: usize) -> Option<Arc<Registry>> {
        match self.entries.get(index) {
            Some(Entry::Child(_, Some(registry))) => Some(Arc::clone(registry)),
            _ => None,
        }
    }

    /// Records `registry` as the own registry of the child in slot `index`
    /// (see `Entry::Child`).
    pub(super) fn set_own_registry(&mut self, index: usize, registry: &Arc<Registry>) {
        if let Some(Entry::Child(_, own)) = self.entries.get_mut(index) {
            *own = Some(Arc::clone(registry));
        }
    }
}
