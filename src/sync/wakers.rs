//! The crate's one waiting core for futures: a registry of [`Waker`]s that a
//! primitive's transition wakes, beside the futex its blocked threads sleep
//! on.
//!
//! # The guarantee
//!
//! A future that finds its condition false registers its waker here and then
//! looks at the state word again; a transition that changes the word wakes
//! every registered waker if the word showed the primitive's "someone waits"
//! bit. Neither side can miss the other, so no wake-up is lost, and a
//! transition that nobody waits for never touches the registry: its fast path
//! is the state word's RMW alone, as before.
//!
//! # The protocol (every user of the registry follows it)
//!
//! A future's slow path, in this order:
//! 1. [`WakerList::register`] its waker (under the registry's short lock);
//! 2. an RMW on the state word that sets the "someone waits" bit (Release,
//!    and Acquire for what it reads), returning the word: the re-check looks
//!    at *that* value. If the condition now holds, it deregisters and is
//!    ready; otherwise it is pending.
//!
//! A transition: its RMW on the word; if the value it replaced showed the
//! bit (or, for a transition that clears the bit, always when it was set),
//! an Acquire fence and [`WakerList::wake_all`].
//!
//! Why no wake-up is lost: the two RMWs on the word are ordered. If the
//! future's comes first, the transition reads the bit (or a later clearer
//! read it and woke the registry instead, which also wakes this future), and
//! its `wake_all` takes the lock after the future's registration released it
//! (if it took it before, the transition's RMW would happen before the
//! future's, by the lock's ordering: a contradiction); the Acquire fence
//! after the RMW that read the future's Release RMW also makes the lazily
//! allocated registry's pointer visible. If the transition's comes first,
//! the future's RMW reads the changed word. Checking the state *before*
//! publishing the registration (even with an Acquire load) is not enough:
//! the transition can change the word and drain the registry between the
//! check and the registration (the lost wake-up tokio's reviewers pointed
//! out in tokio PR #7874); the mutant `run_state::async_check_then_register`
//! commits it and `loom-tests/async_run_state.rs` catches it.
//!
//! # Entries and their keys
//!
//! [`wake_all`](WakerList::wake_all) takes every waker out (the list is then
//! empty, its memory freed) and wakes them after releasing the lock, so a
//! waker that runs code (an executor's scheduler, or a user's waker that
//! re-registers) never runs under it. Each registration gets a key (a slot
//! and the generation of the list it went into); a `wake_all` starts a new
//! generation, so a key from before it names nothing. A future dropped while
//! pending [`deregister`](WakerList::deregister)s: its slot is freed if it
//! is still its own, and nothing else is touched if a `wake_all` has taken it
//! meanwhile (the slot may hold another future's registration by then:
//! removing it would lose that one's wake-up, the bug of sqlx#620's kind).
//! Every waiter is woken, so a dropped future never holds a wake-up meant
//! for another (there is no "one of them" to pass on).
//!
//! # Waking one at a time (the capped pool's queue)
//!
//! A primitive that hands out one thing per wake (the capped `Pool`) uses
//! the list as a queue instead: [`WakerList::queue_locked`] runs the
//! future's RMW on the state word *under the list's lock* and, as that RMW
//! decides, keeps its registration (waiting) or removes it; the RMW sets the
//! primitive's "a future waits" bit exactly when the list will hold an
//! entry, so the bit mirrors "the list is not empty" at every lock
//! boundary. [`WakerList::wake_one`] marks the oldest *waiting* entry
//! *notified* (it stays in the list until its future polls or is dropped)
//! and wakes it; an entry re-armed after a notification goes back to the
//! front of the queue (it keeps its place). A transition whose RMW read the
//! bit takes the lock after the future's RMW and finds its entry (that RMW
//! ran under the lock), so here too no wake-up is lost. Such a list never
//! sees [`wake_all`](WakerList::wake_all) (which would forget the entries):
//! [`notify_all`](WakerList::notify_all) marks them all notified instead.
//!
//! Under loom the lock is loom's `Mutex` (through the `sync` shim), so the
//! models check the protocol itself.

use std::collections::VecDeque;
use std::sync::PoisonError;
use std::task::Waker;

use super::{mutant, AtomicU64, LazyBox, Mutex, MutexGuard, Ordering};

/// A set of wakers under a short lock: see the [module docs](self).
#[derive(Debug)]
pub(crate) struct WakerList {
    inner: Mutex<Slots>,
    /// `Slots::generation`, mirrored (stored under the lock by `wake_all`
    /// before it wakes anyone): a future woken by that `wake_all` reads the
    /// new value, knows its key is stale, and deregisters without the lock.
    generation: AtomicU64,
}

/// The registrations of one generation.
#[derive(Debug, Default)]
struct Slots {
    /// Incremented by every `wake_all` that found a registration: keys of
    /// older generations name nothing.
    generation: u64,
    /// Registrations, by slot (`Free` slots listed in `free`).
    wakers: Vec<Entry>,
    free: Vec<usize>,
    /// Occupied slots.
    len: usize,
    /// The queue of [`queue_locked`](WakerList::queue_locked) users: a
    /// waiting entry's slot and ticket, oldest first. Items whose entry has
    /// gone (or was notified) are skipped by `wake_one` and dropped when
    /// the queue grows past twice the entries.
    order: VecDeque<(usize, u64)>,
    /// The next ticket: tells a slot's registrations apart in `order`.
    next_ticket: u64,
}

/// One slot of the list.
#[derive(Debug, Default)]
enum Entry {
    #[default]
    Free,
    /// Registered, not woken since: `ticket` names it in `order`.
    Waiting { waker: Waker, ticket: u64 },
    /// Woken by `wake_one` or `notify_all` and not polled since: still
    /// counted, so the primitive's bit stays set until its future polls
    /// (and looks at the state) or is dropped (and passes the wake on).
    Notified { ticket: u64 },
}

impl Entry {
    fn is_free(&self) -> bool {
        matches!(self, Entry::Free)
    }
}

/// Where a future's waker is registered: its slot in one generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WakerKey {
    slot: usize,
    generation: u64,
}

impl Slots {
    /// Is `key` a registration of this generation (not yet woken)?
    fn holds(&self, key: WakerKey) -> bool {
        key.generation == self.generation && self.wakers.get(key.slot).is_some_and(|e| !e.is_free())
    }

    /// A new entry in a free slot (or a new slot); its key.
    fn insert(&mut self, entry: Entry) -> WakerKey {
        let slot = match self.free.pop() {
            Some(slot) => {
                self.wakers[slot] = entry;
                slot
            }
            None => {
                self.wakers.push(entry);
                self.wakers.len() - 1
            }
        };
        self.len += 1;
        WakerKey {
            slot,
            generation: self.generation,
        }
    }

    /// Frees `slot` (occupied); the entry it held.
    fn remove(&mut self, slot: usize) -> Entry {
        let old = std::mem::take(&mut self.wakers[slot]);
        self.free.push(slot);
        self.len -= 1;
        old
    }

    /// Drops the queue's stale items once they outnumber the entries
    /// twice over (amortised: each item is dropped once).
    fn compact(&mut self) {
        if self.order.len() > 2 * self.len + 16 {
            let wakers = &self.wakers;
            self.order.retain(|&(slot, ticket)| {
                matches!(wakers.get(slot), Some(Entry::Waiting { ticket: t, .. }) if *t == ticket)
            });
        }
    }
}

impl WakerList {
    pub(crate) fn new() -> Self {
        Self {
            inner: Mutex::new(Slots::default()),
            generation: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Slots> {
        // No user code runs under the lock (wakers are cloned before it and
        // woken or dropped after it), so a poisoned lock still guards
        // consistent slots.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers `waker` under `key`: a new registration if `key` is `None`
    /// or names nothing any more (a `wake_all` took it), else an update of
    /// the waker in place (skipped if it [`will_wake`](Waker::will_wake) the
    /// same task). Returns `true` for a new registration: the caller must
    /// then re-check the state with the RMW of the protocol; for an update
    /// it need not (the entry was registered, with its RMW, all along).
    pub(crate) fn register(&self, key: &mut Option<WakerKey>, waker: &Waker) -> bool {
        let mut slots = self.lock();
        if let Some(current) = *key {
            if slots.holds(current) {
                let slot = &mut slots.wakers[current.slot];
                if let Entry::Waiting { waker: old, .. } = slot {
                    if old.will_wake(waker) {
                        return false;
                    }
                    // A new waker (the task moved, or another one polls):
                    // swap it in, drop the old one after unlocking. Cloning
                    // a waker is the executor's code, but a clone that
                    // panics leaves the slots as they were.
                    let old = std::mem::replace(old, waker.clone());
                    drop(slots);
                    drop(old);
                    return false;
                }
            }
        }
        let entry = Entry::Waiting {
            waker: waker.clone(),
            ticket: 0,
        };
        *key = Some(slots.insert(entry));
        true
    }

    /// Removes the registration under `key` (and clears `key`), if it is
    /// still there; does nothing if a `wake_all` has taken it (and, if this
    /// thread sees that `wake_all`'s generation, takes no lock).
    pub(crate) fn deregister(&self, key: &mut Option<WakerKey>) {
        let Some(current) = key.take() else {
            return;
        };
        // A `wake_all` since the registration (the usual case for a future
        // that finishes after its wake): nothing of ours is left, so no
        // lock. Relaxed: only a hint; a stale read (the old generation)
        // takes the lock below, which decides. Generations only move on, so
        // a different one is never ours.
        if current.generation != self.generation.load(Ordering::Relaxed)
            && !mutant("sync::wakers_drop_ignores_generation")
        {
            return;
        }
        let mut slots = self.lock();
        let still_ours = slots.holds(current);
        if mutant("sync::wakers_drop_ignores_generation") {
            // The bug: free the slot whatever generation it now belongs to.
            if slots.wakers.get(current.slot).is_some_and(|e| !e.is_free()) {
                slots.remove(current.slot);
            }
            return;
        }
        if !still_ours {
            return;
        }
        let old = slots.remove(current.slot);
        drop(slots);
        drop(old);
    }

    /// Wakes every registered waker and empties the list (a new
    /// generation). The wakers run after the lock is released, each under
    /// `unwind::catch`: a waker that panics (reported by the panic hook as
    /// it happens) does not keep the others asleep.
    pub(crate) fn wake_all(&self) {
        let wakers = {
            let mut slots = self.lock();
            if slots.len == 0 {
                return;
            }
            slots.generation = slots.generation.wrapping_add(1);
            // Relaxed: a hint for `deregister` (see `generation`).
            self.generation.store(slots.generation, Ordering::Relaxed);
            slots.free = Vec::new();
            slots.len = 0;
            slots.order = VecDeque::new();
            std::mem::take(&mut slots.wakers)
        };
        for entry in wakers {
            if let Entry::Waiting { waker, .. } = entry {
                let _ = crate::unwind::catch(|| waker.wake());
            }
        }
    }

    /// The queue's step (see "Waking one at a time" in the module docs):
    /// under the lock, runs `decide(others)`, where `others` is the number
    /// of registrations other than `key`'s, and keeps `key`'s registration
    /// waiting with `waker` if it returns `true` (a new one at the back of
    /// the queue, a notified one back at the front, a waiting one updated
    /// in place), else removes it. `decide` must not run user code (it is
    /// the state word's RMW); `waker` is cloned before it runs (so a clone
    /// that panics changes nothing) and old wakers are dropped after the
    /// lock is released. `waker` `None` (a dropped future): `decide` must
    /// return `false`.
    pub(crate) fn queue_locked<R>(
        &self,
        key: &mut Option<WakerKey>,
        waker: Option<&Waker>,
        decide: impl FnOnce(usize) -> (R, bool),
    ) -> R {
        let mut slots = self.lock();
        let held = key.filter(|&k| slots.holds(k));
        let fresh = match (waker, held.map(|k| &slots.wakers[k.slot])) {
            (Some(new), Some(Entry::Waiting { waker: old, .. })) if old.will_wake(new) => None,
            (Some(new), _) => Some(new.clone()),
            (None, _) => None,
        };
        let others = slots.len - usize::from(held.is_some());
        let (report, stay) = decide(others);
        let mut old = None;
        match (held, stay, fresh) {
            (Some(k), false, _) => {
                old = Some(slots.remove(k.slot));
                *key = None;
            }
            (None, false, _) => *key = None,
            (Some(k), true, fresh) => {
                let entry = &mut slots.wakers[k.slot];
                match (std::mem::take(entry), fresh) {
                    (Entry::Notified { ticket }, Some(waker)) => {
                        *entry = Entry::Waiting { waker, ticket };
                        slots.order.push_front((k.slot, ticket));
                    }
                    (Entry::Waiting { waker, ticket }, fresh) => {
                        let waker = match fresh {
                            Some(new) => {
                                old = Some(Entry::Waiting { waker, ticket });
                                new
                            }
                            None => waker,
                        };
                        *entry = Entry::Waiting { waker, ticket };
                    }
                    // Unreachable (`fresh` is `Some` unless the entry is a
                    // waiting one, `waker` is given when staying): keep the
                    // entry as it was.
                    (other, _) => *entry = other,
                }
            }
            (None, true, Some(waker)) => {
                let ticket = slots.next_ticket;
                slots.next_ticket = ticket.wrapping_add(1);
                let new = slots.insert(Entry::Waiting { waker, ticket });
                slots.order.push_back((new.slot, ticket));
                slots.compact();
                *key = Some(new);
            }
            // Unreachable (staying needs a waker): registers nothing.
            (None, true, None) => *key = None,
        }
        drop(slots);
        drop(old);
        report
    }

    /// Wakes the oldest waiting registration of the queue and marks it
    /// notified (it stays registered until its future polls or is dropped);
    /// `false` if no registration is waiting (none, or all notified). The
    /// waker runs after the lock is released, under `unwind::catch`.
    pub(crate) fn wake_one(&self) -> bool {
        let waker = {
            let mut slots = self.lock();
            loop {
                let Some((slot, ticket)) = slots.order.pop_front() else {
                    return false;
                };
                let Some(entry) = slots.wakers.get_mut(slot) else {
                    continue;
                };
                match std::mem::take(entry) {
                    Entry::Waiting { waker, ticket: t } if t == ticket => {
                        *entry = Entry::Notified { ticket };
                        break waker;
                    }
                    // Stale: removed, notified, or the slot reused since.
                    other => *entry = other,
                }
            }
        };
        let _ = crate::unwind::catch(|| waker.wake());
        true
    }

    /// Wakes every waiting registration of the queue and marks it notified
    /// (a queue's [`wake_all`](Self::wake_all): the entries stay until
    /// their futures poll or are dropped).
    pub(crate) fn notify_all(&self) {
        let wakers: Vec<Waker> = {
            let mut slots = self.lock();
            slots.order = VecDeque::new();
            slots
                .wakers
                .iter_mut()
                .filter_map(|entry| match std::mem::take(entry) {
                    Entry::Waiting { waker, ticket } => {
                        *entry = Entry::Notified { ticket };
                        Some(waker)
                    }
                    other => {
                        *entry = other;
                        None
                    }
                })
                .collect()
        };
        for waker in wakers {
            let _ = crate::unwind::catch(|| waker.wake());
        }
    }

    /// Registrations waiting now (tests and the stress check that memory
    /// stays flat).
    pub(crate) fn len(&self) -> usize {
        self.lock().len
    }
}

/// A [`WakerList`] allocated on the first registration (`get_or_init`): a
/// null pointer until then, so a primitive nobody awaits pays one word for
/// it. A transition reads it (`get`) after the RMW that showed "someone
/// waits" and an Acquire fence (see the module docs), so a list allocated
/// by that waiter is seen.
pub(crate) type LazyWakers = LazyBox<WakerList>;

impl Default for WakerList {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        (Arc::clone(&count), Waker::from(count))
    }

    #[test]
    fn wake_all_wakes_each_once_and_empties() {
        let list = WakerList::new();
        let (a, wa) = counting();
        let (b, wb) = counting();
        let (mut ka, mut kb) = (None, None);
        assert!(list.register(&mut ka, &wa));
        assert!(list.register(&mut kb, &wb));
        assert!(!list.register(&mut ka, &wa)); // same task: an update
        assert_eq!(list.len(), 2);
        list.wake_all();
        list.wake_all(); // nothing left: no second wake
        assert_eq!(a.0.load(Ordering::SeqCst), 1);
        assert_eq!(b.0.load(Ordering::SeqCst), 1);
        assert_eq!(list.len(), 0);
        assert_eq!(list.lock().wakers.capacity(), 0);
    }

    #[test]
    fn a_stale_key_never_frees_a_newer_registration() {
        let list = WakerList::new();
        let (a, wa) = counting();
        let (b, wb) = counting();
        let (mut ka, mut kb) = (None, None);
        list.register(&mut ka, &wa);
        list.wake_all();
        list.register(&mut kb, &wb); // reuses slot 0 in a new generation
        list.deregister(&mut ka); // stale: must leave b alone
        assert!(ka.is_none());
        assert_eq!(list.len(), 1);
        list.wake_all();
        assert_eq!(
            (a.0.load(Ordering::SeqCst), b.0.load(Ordering::SeqCst)),
            (1, 1)
        );
    }

    #[test]
    fn deregister_frees_and_reuses_slots() {
        let list = WakerList::new();
        let (count, waker) = counting();
        for _ in 0..1000 {
            let mut key = None;
            list.register(&mut key, &waker);
            list.deregister(&mut key);
        }
        assert_eq!(list.len(), 0);
        assert!(list.lock().wakers.len() <= 1);
        list.wake_all();
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_panicking_waker_does_not_keep_the_others_asleep() {
        struct Bad;
        impl Wake for Bad {
            fn wake(self: Arc<Self>) {
                panic!("bad waker");
            }
        }
        let list = WakerList::new();
        let (count, good) = counting();
        let bad = Waker::from(Arc::new(Bad));
        let (mut k1, mut k2) = (None, None);
        list.register(&mut k1, &bad);
        list.register(&mut k2, &good);
        list.wake_all(); // the panic hook prints "bad waker"
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(list.len(), 0);
    }

    /// The queue mode: `wake_one` in arrival order, a notified entry
    /// re-armed goes back to the front, `notify_all` marks the rest, stale
    /// queue items are skipped and compacted.
    #[test]
    fn queue_wakes_one_in_order_and_keeps_a_re_armed_place() {
        let list = WakerList::new();
        let counts: Vec<_> = (0..3).map(|_| counting()).collect();
        let mut keys = [None; 3];
        for (key, (_, waker)) in keys.iter_mut().zip(&counts) {
            let others = list.queue_locked(key, Some(waker), |others| (others, true));
            assert!(key.is_some() && others < 3);
        }
        let woken = |i: usize| counts[i].0 .0.load(Ordering::SeqCst);
        assert!(list.wake_one());
        assert_eq!((woken(0), woken(1), woken(2)), (1, 0, 0));
        // 0 re-arms (it found nothing): back to the front, woken next.
        list.queue_locked(&mut keys[0], Some(&counts[0].1), |_| ((), true));
        assert!(list.wake_one());
        assert_eq!((woken(0), woken(1)), (2, 0));
        // 1 leaves: 2 is next.
        list.queue_locked(&mut keys[1], None, |others| {
            assert_eq!(others, 2);
            ((), false)
        });
        assert!(keys[1].is_none());
        assert!(list.wake_one());
        assert_eq!(woken(2), 1);
        assert!(!list.wake_one(), "all notified: nobody waiting");
        list.queue_locked(&mut keys[2], Some(&counts[2].1), |_| ((), true));
        list.notify_all();
        assert_eq!((woken(0), woken(2)), (2, 2));
        assert_eq!(list.len(), 2, "notified entries stay until they leave");
        for i in [0, 2] {
            list.queue_locked(&mut keys[i], None, |_| ((), false));
        }
        assert_eq!(list.len(), 0);
        // Many register-and-leave rounds leave the queue bounded.
        let (_, waker) = counting();
        for _ in 0..1000 {
            let mut key = None;
            list.queue_locked(&mut key, Some(&waker), |_| ((), true));
            list.queue_locked(&mut key, None, |_| ((), false));
        }
        assert!(list.lock().order.len() <= 20);
    }

    #[test]
    fn lazy_list_is_allocated_once() {
        let lazy = LazyWakers::new();
        assert!(lazy.get().is_none());
        let a: *const WakerList = lazy.get_or_init();
        let b: *const WakerList = lazy.get_or_init();
        assert_eq!(a, b);
        assert!(lazy.get().is_some());
    }
}
