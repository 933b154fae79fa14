//! A cancel's walk of a registry: [`RunState::mark_children`] and
//! [`Registry::mark`].

use std::sync::Arc;

use super::slab::Entry;
use super::Registry;
use crate::run_state::state::{ANY_WAITERS, CANCELLED, FROM_PARENT, HAS_CALLBACKS, HAS_CHILDREN};
use crate::run_state::RunState;
use crate::sync::{fence, mutant, Ordering};

impl RunState {
    /// Marks the live children cancelled (`CANCELLED | FROM_PARENT`),
    /// under the registry lock, each through a strong reference, and adds
    /// to `follow` each such reference (with the word it had: the rest of
    /// the work, and the reference's release, come after the lock), the
    /// registry of each orphan, and that of a child going as we walk
    /// (whose children must still follow us). With `reason`, every live
    /// child goes to `follow` unmarked instead (its reason is set under its
    /// own lock, which needs its cold part). Called after an RMW of our
    /// word that showed `HAS_CHILDREN`.
    pub(crate) fn mark_children(&self, reason: bool, follow: &mut Vec<Follow>) {
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
pub(crate) enum Follow {
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
    pub(crate) fn mark(&self, reason: bool, follow: &mut Vec<Follow>) {
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
        // The fast slot first (its RMW is what a link racing this walk
        // meets: see `fast_slot.rs`).
        self.fast.walk(|weak| {
            match weak.upgrade() {
                // Going (as below): its children follow us through the
                // copy of its registry, if it has one (the slot is then
                // `SLOW`, and its drop waits for this lock).
                None => {
                    if !mutant("run_state::fast_walk_skips_going_child") {
                        follow.extend(slab.fast_own.clone().map(Follow::Registry));
                    }
                }
                // A last reference is dropped after the lock, its `Weak`
                // left in the slot for its own unlink (see `fast_slot.rs`).
                Some(child) => {
                    if let Some(last) = mark_child(child, reason, follow) {
                        follow.push(Follow::Last(last));
                    }
                }
            }
        });
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
            if let Some(last) = mark_child(child, reason, follow) {
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
        }
    }
}

/// A walk's work on one live `child`, under its registry's lock: with
/// `reason`, the child goes to `follow` unmarked; otherwise its word is
/// marked, and it goes to `follow` if it needs more, or our reference is
/// let go at once. Returns the child if ours was its last reference (for
/// the caller to drop after the lock).
#[inline(always)]
fn mark_child(child: Arc<RunState>, reason: bool, follow: &mut Vec<Follow>) -> Option<RunState> {
    if reason {
        follow.push(Follow::State(child, None));
        return None;
    }
    // Release: as in `cancel`.
    let prev = child
        .state
        .fetch_or(CANCELLED | FROM_PARENT, Ordering::Release);
    if mutant("run_state::walk_drops_last_under_lock") {
        // The bug: let our reference go here, under the lock. If its
        // holder dropped its own meanwhile, ours is the last, and the
        // child's drop (its unlink) takes this very lock.
        drop(child);
        return None;
    }
    if needs_follow_up(prev) {
        // The rest of the work comes after the lock is released
        // (callbacks are user code, and ours may be the last reference,
        // whose drop takes this lock).
        follow.push(Follow::State(child, Some(prev)));
        return None;
    }
    // Our reference goes with one RMW (`into_inner`), under the lock: if
    // not the last, no drop ran.
    Arc::into_inner(child)
}
