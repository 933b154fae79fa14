#![cfg(not(loom))]
//! Integration tests for `Pool`: reuse, bounds, fallible factories, reset
//! hooks, panics, owned guards, a 64-thread stress test and a property test
//! against a sequential model.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier};

use multiopen::{OwnedPoolGuard, Pool, PoolStats};
use proptest::prelude::*;

/// Counts objects made and dropped, and flags each object while it is out
/// so a duplicate hand-out is caught.
#[derive(Default)]
struct Tracker {
    made: AtomicUsize,
    dropped: AtomicUsize,
}

impl Tracker {
    fn alive(&self) -> usize {
        self.made.load(SeqCst) - self.dropped.load(SeqCst)
    }
}

struct Obj {
    id: usize,
    in_use: AtomicBool,
    tracker: Arc<Tracker>,
}

impl Drop for Obj {
    fn drop(&mut self) {
        self.tracker.dropped.fetch_add(1, SeqCst);
    }
}

fn factory(tracker: &Arc<Tracker>) -> impl Fn() -> Obj + Send + Sync + 'static {
    let tracker = Arc::clone(tracker);
    move || Obj {
        id: tracker.made.fetch_add(1, SeqCst),
        in_use: AtomicBool::new(false),
        tracker: Arc::clone(&tracker),
    }
}

/// Marks an object as handed out; fails if it already was.
fn claim(obj: &Obj) {
    assert!(
        !obj.in_use.swap(true, SeqCst),
        "object {} handed out twice",
        obj.id
    );
}

fn unclaim(obj: &Obj) {
    assert!(obj.in_use.swap(false, SeqCst));
}

/// Stats at rest agree with the tracker's real counts: objects made, and
/// objects dropped (every retired object; the tests drop the ones they
/// take before calling this), so made − dropped == idle + out.
fn assert_consistent<E>(pool: &Pool<Obj, E>, tracker: &Tracker, out: usize) {
    let s = pool.stats();
    assert_eq!(s.created, tracker.made.load(SeqCst), "{s:?}");
    assert_eq!(s.retired(), tracker.dropped.load(SeqCst), "{s:?}");
    assert_eq!(s.idle, pool.len());
    assert_eq!(s.out, out, "{s:?}");
    assert_eq!(tracker.alive(), s.idle + s.out, "{s:?}");
}

#[test]
fn reuse_hands_back_the_same_object() {
    let tracker = Arc::new(Tracker::default());
    let pool = Pool::new(factory(&tracker));
    let first = pool.instance().id;
    for _ in 0..10 {
        assert_eq!(pool.instance().id, first);
    }
    let s = pool.stats();
    assert_eq!((s.created, s.reused, s.returned), (1, 10, 11));
    assert_consistent(&pool, &tracker, 0);
}

#[test]
fn full_pool_drops_the_extra_objects() {
    let tracker = Arc::new(Tracker::default());
    let pool = Pool::with_max_size(factory(&tracker), 2);
    let held: Vec<_> = (0..5).map(|_| pool.instance()).collect();
    assert_eq!(pool.stats().out, 5);
    drop(held);
    let s = pool.stats();
    assert_eq!((s.created, s.returned, s.dropped_full), (5, 2, 3));
    assert_eq!(tracker.dropped.load(SeqCst), 3);
    assert_eq!(pool.len(), 2);
    assert_consistent(&pool, &tracker, 0);
    // FIFO: the first two returned come out first.
    assert_eq!(pool.instance().id, 0);
}

/// Front slots and queue together hold exactly `max_size`, for sizes with
/// no front slot (1), a few (2..5), all 16 (17) and 16 plus a longer queue.
#[test]
fn one_thread_keeps_exactly_max_size() {
    for max_size in [1, 2, 3, 4, 5, 16, 17, 18, 40] {
        let tracker = Arc::new(Tracker::default());
        let pool = Pool::with_max_size(factory(&tracker), max_size);
        let held: Vec<_> = (0..max_size + 2).map(|_| pool.instance()).collect();
        drop(held);
        let s = pool.stats();
        assert_eq!(pool.len(), max_size, "max_size {max_size}: {s:?}");
        assert_eq!((s.returned, s.dropped_full), (max_size, 2), "{s:?}");
        // Every idle object is found again before the factory runs.
        let held: Vec<_> = (0..max_size).map(|_| pool.instance()).collect();
        let mut ids: Vec<_> = held.iter().map(|g| g.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), max_size, "an object handed out twice");
        let s = pool.stats();
        assert_eq!((s.created, s.reused, s.idle), (max_size + 2, max_size, 0));
        assert_eq!(
            pool.instance().id,
            max_size + 2,
            "a new one when none is idle"
        );
        drop(held);
        assert_consistent(&pool, &tracker, 0);
    }
}

/// Objects a thread returned sit in its home slot, the queue and the other
/// slots; another thread (with a different home) reuses every one of them
/// before it makes a new one.
#[test]
fn objects_left_by_another_thread_are_reused() {
    let tracker = Arc::new(Tracker::default());
    let pool = Pool::with_max_size(factory(&tracker), 6);
    let barrier = Barrier::new(2);
    std::thread::scope(|s| {
        // Both threads live at once, so their thread indices differ.
        s.spawn(|| {
            let held: Vec<_> = (0..6).map(|_| pool.instance()).collect();
            drop(held);
            barrier.wait();
            barrier.wait();
        });
        barrier.wait();
        let held: Vec<_> = (0..6).map(|_| pool.instance()).collect();
        let s = pool.stats();
        assert_eq!((s.created, s.reused, s.out), (6, 6, 6), "{s:?}");
        drop(held);
        barrier.wait();
    });
    assert_consistent(&pool, &tracker, 0);
    assert_eq!(pool.len(), 6);
}

#[test]
fn default_max_size_is_four() {
    let tracker = Arc::new(Tracker::default());
    let pool = Pool::new(factory(&tracker));
    assert_eq!(pool.max_size(), 4);
    drop((0..6).map(|_| pool.instance()).collect::<Vec<_>>());
    assert_eq!(pool.len(), 4);
    assert_eq!(pool.stats().dropped_full, 2);
}

#[test]
fn unbounded_pool_keeps_everything() {
    let tracker = Arc::new(Tracker::default());
    let pool = Pool::with_max_size(factory(&tracker), 0);
    assert_eq!(pool.max_size(), 0);
    drop((0..1000).map(|_| pool.instance()).collect::<Vec<_>>());
    assert_eq!(pool.len(), 1000);
    assert_eq!(pool.stats().dropped_full, 0);
    assert_eq!(pool.prefill(10), 10); // no upper limit on prefill either
    assert_eq!(pool.len(), 1010);
    assert_consistent(&pool, &tracker, 0);
}

#[test]
fn fallible_factory_error_reaches_the_caller() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let pool = Pool::try_builder(move || {
        let n = c.fetch_add(1, SeqCst);
        if n.is_multiple_of(2) {
            Err(format!("call {n} failed"))
        } else {
            Ok(n)
        }
    })
    .max_size(2)
    .build();
    assert_eq!(pool.try_instance().unwrap_err(), "call 0 failed");
    let g = pool.try_instance().expect("second call works");
    assert_eq!(*g, 1);
    drop(g);
    // An idle object is reused: the factory is not called.
    assert_eq!(*pool.try_instance().unwrap(), 1);
    assert_eq!(calls.load(SeqCst), 2);
    let s = pool.stats();
    assert_eq!(
        (s.created, s.failed, s.reused, s.out, s.idle),
        (1, 1, 1, 0, 1)
    );

    // try_prefill stops at the first error, keeping what it made.
    pool.clear();
    assert_eq!(pool.try_prefill(2).unwrap_err(), "call 2 failed");
    assert_eq!(pool.try_prefill(1), Ok(1));
    assert_eq!(pool.len(), 1);
    let s = pool.stats();
    assert_eq!((s.created, s.cleared, s.out, s.idle), (2, 1, 0, 1));
}

#[test]
fn owned_guard_of_a_fallible_pool() {
    let pool = Arc::new(Pool::try_builder(|| Ok::<_, std::io::Error>(vec![0u8; 4])).build());
    let mut g = pool.try_instance_owned().unwrap();
    g[0] = 1;
    std::thread::spawn(move || drop(g)).join().unwrap();
    assert_eq!(pool.try_instance().unwrap()[0], 1);
}

#[test]
fn reset_hook_runs_before_the_object_goes_back() {
    let resets = Arc::new(AtomicUsize::new(0));
    let r = Arc::clone(&resets);
    let pool = Pool::builder(Vec::<u32>::new)
        .max_size(1)
        .reset(move |v| {
            r.fetch_add(1, SeqCst);
            v.clear();
        })
        .build();
    {
        let mut a = pool.instance();
        let mut b = pool.instance();
        a.push(1);
        b.push(2);
    } // both reset; one kept, one dropped because full
    assert_eq!(resets.load(SeqCst), 2);
    assert!(pool.instance().is_empty());
    assert_eq!(resets.load(SeqCst), 3);
    // Taken objects are not reset.
    let mut t = pool.instance();
    t.push(9);
    assert_eq!(t.take(), [9]);
    assert_eq!(resets.load(SeqCst), 3);
}

#[test]
fn panicking_factory_leaves_the_pool_consistent() {
    let tracker = Arc::new(Tracker::default());
    let make = factory(&tracker);
    let fail_next = Arc::new(AtomicBool::new(true));
    let f = Arc::clone(&fail_next);
    let pool = Pool::with_max_size(
        move || {
            if f.swap(false, SeqCst) {
                panic!("factory exploded");
            }
            make()
        },
        2,
    );
    let result = catch_unwind(AssertUnwindSafe(|| pool.instance().id));
    assert!(result.is_err());
    let s = pool.stats();
    assert_eq!((s.created, s.failed, s.out, s.idle), (0, 1, 0, 0));
    // The pool still works, and its first object is made now.
    assert_eq!(pool.instance().id, 0);
    assert_eq!(pool.instance().id, 0);
    assert_consistent(&pool, &tracker, 0);
}

/// A reset hook that panics while the guard is dropped during another
/// panic's unwinding must not abort the process: the object is dropped and
/// counted, the first panic propagates, and the pool keeps working.
#[test]
fn panicking_reset_hook_during_unwinding_does_not_abort() {
    let tracker = Arc::new(Tracker::default());
    let pool = Pool::builder(factory(&tracker))
        .reset(|_: &mut Obj| panic!("reset failed"))
        .build();
    let result = catch_unwind(AssertUnwindSafe(|| {
        let _obj = pool.instance();
        panic!("user scope failed");
    }));
    let payload = result.unwrap_err();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"user scope failed"));
    let s = pool.stats();
    assert_eq!((s.reset_panicked, s.returned, s.idle, s.out), (1, 0, 0, 0));
    assert_eq!(tracker.dropped.load(SeqCst), 1);
    assert_consistent(&pool, &tracker, 0);
    let again = pool.instance();
    assert_eq!(again.id, 1, "a new object: the first was dropped");
    drop(again.take()); // `take` skips the (panicking) reset hook
}

#[test]
fn panicking_reset_hook_drops_the_object() {
    let tracker = Arc::new(Tracker::default());
    let pool = Arc::new(
        Pool::builder(factory(&tracker))
            .reset(|obj: &mut Obj| {
                if obj.id == 1 {
                    panic!("cannot reset object 1");
                }
            })
            .build(),
    );
    let a = pool.instance();
    let b = pool.instance();
    assert_eq!((a.id, b.id), (0, 1));
    drop(a);
    let result = catch_unwind(AssertUnwindSafe(|| drop(b)));
    assert!(result.is_err());
    let s = pool.stats();
    assert_eq!((s.returned, s.reset_panicked, s.idle, s.out), (1, 1, 1, 0));
    assert_eq!(tracker.dropped.load(SeqCst), 1, "object 1 was dropped");
    assert_consistent(&pool, &tracker, 0);
    // Later calls work; an owned guard's panicking return too.
    assert_eq!(pool.instance().id, 0);
    let c = pool.instance_owned();
    let d = pool.instance_owned();
    assert_eq!((c.id, d.id), (0, 2));
    drop(c);
    drop(d);
    let e = pool.instance(); // object 0 again
    let f = pool.instance_owned(); // object 2
    let g = pool.instance_owned(); // a new one, 3
    assert_eq!((e.id, f.id, g.id), (0, 2, 3));
    drop((e, f, g));
    assert_consistent(&pool, &tracker, 0);
    assert_eq!(pool.len(), 3);
}

#[test]
fn panic_in_the_guard_scope_still_returns_the_object() {
    let tracker = Arc::new(Tracker::default());
    let pool = Pool::new(factory(&tracker));
    let result = catch_unwind(AssertUnwindSafe(|| {
        let _g = pool.instance();
        panic!("body failed");
    }));
    assert!(result.is_err());
    assert_eq!(pool.len(), 1);
    assert_consistent(&pool, &tracker, 0);
}

#[test]
fn take_removes_for_good() {
    let tracker = Arc::new(Tracker::default());
    let pool = Arc::new(Pool::new(factory(&tracker)));
    let a = pool.instance().take();
    let b = pool.instance_owned().take();
    assert_eq!((a.id, b.id), (0, 1));
    assert_eq!(Arc::strong_count(&pool), 1, "owned take released its Arc");
    let s = pool.stats();
    assert_eq!((s.taken, s.out, s.idle, s.created), (2, 0, 0, 2));
    assert_eq!(tracker.alive(), 2); // we hold them
    drop((a, b));
    assert_consistent(&pool, &tracker, 0);
}

#[test]
fn clear_and_prefill() {
    let tracker = Arc::new(Tracker::default());
    let pool = Pool::with_max_size(factory(&tracker), 3);
    assert_eq!(pool.prefill(2), 2);
    assert_eq!(pool.prefill(5), 1); // room for one more only
    assert_eq!(pool.prefill(1), 0);
    let held = pool.instance();
    assert_eq!(pool.clear(), 2);
    assert!(pool.is_empty());
    assert_eq!(tracker.dropped.load(SeqCst), 2);
    drop(held); // comes back after the clear
    assert_eq!(pool.len(), 1);
    let s = pool.stats();
    assert_eq!((s.created, s.cleared, s.reused, s.returned), (3, 2, 1, 1));
    assert_consistent(&pool, &tracker, 0);
}

#[test]
fn owned_guards_cross_threads_and_keep_the_pool_alive() {
    let tracker = Arc::new(Tracker::default());
    let pool = Arc::new(Pool::with_max_size(factory(&tracker), 2));
    let guards: Vec<OwnedPoolGuard<Obj>> = (0..4).map(|_| pool.instance_owned()).collect();
    let weak = Arc::downgrade(&pool);
    drop(pool); // only the guards hold it now
    let start = Arc::new(Barrier::new(4));
    let threads: Vec<_> = guards
        .into_iter()
        .map(|g| {
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                claim(&g);
                unclaim(&g);
                g.id
            })
        })
        .collect();
    let mut ids: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    ids.sort_unstable();
    assert_eq!(ids, [0, 1, 2, 3]);
    // The last guard dropped the last Arc: the pool and its idle objects
    // are gone.
    assert!(weak.upgrade().is_none());
    assert_eq!(tracker.alive(), 0);
}

#[test]
fn many_short_lived_threads_reuse_counter_stripes() {
    let tracker = Arc::new(Tracker::default());
    let pool = Arc::new(Pool::with_max_size(factory(&tracker), 1));
    pool.prefill(1);
    for round in 0..50 {
        let pool = Arc::clone(&pool);
        std::thread::spawn(move || {
            for _ in 0..=round % 3 {
                drop(pool.instance());
            }
        })
        .join()
        .unwrap();
    }
    let s = pool.stats();
    // 50 threads did 1, 2 or 3 take+return each: (17 + 17*2 + 16*3) = 99.
    assert_eq!((s.created, s.reused, s.returned), (1, 99, 99));
    assert_consistent(&pool, &tracker, 0);
}

thread_local! {
    static HELD: RefCell<Option<OwnedPoolGuard<Obj>>> = const { RefCell::new(None) };
}

#[test]
fn guard_returned_during_thread_teardown_is_counted() {
    let tracker = Arc::new(Tracker::default());
    let pool = Arc::new(Pool::new(factory(&tracker)));
    for _ in 0..8 {
        let pool = Arc::clone(&pool);
        std::thread::spawn(move || {
            drop(pool.instance()); // claims this thread's stripe
            let g = pool.instance_owned();
            // Returned by the thread-local destructor, before or after the
            // thread's stripe index is given back.
            HELD.with(|held| *held.borrow_mut() = Some(g));
        })
        .join()
        .unwrap();
    }
    let s = pool.stats();
    assert_eq!((s.returned, s.out), (16, 0), "{s:?}");
    assert_consistent(&pool, &tracker, 0);
}

#[test]
fn debug_output() {
    let pool = Pool::builder(|| 5u8).reset(|_| ()).build();
    let g = pool.instance();
    assert_eq!(format!("{g:?}"), "PoolGuard(5)");
    assert!(format!("{pool:?}")
        .starts_with("Pool { max_size: 4, max_live: None, name: \"pool\", stats: PoolStats {"));
    drop(g);
    let pool = Arc::new(pool);
    assert_eq!(format!("{:?}", pool.instance_owned()), "OwnedPoolGuard(5)");
    let builder = Pool::builder(|| 0u8).max_size(3);
    assert!(format!("{builder:?}").contains("max_size: 3"));
}

/// 64 threads on 2 cores: random holds, returns and takes, with a duplicate
/// hand-out check on every object, while a 65th thread takes snapshots that
/// must stay within bounds; at the end, objects made − dropped == idle +
/// out, and the stats agree with the real counts.
#[test]
fn stress_64_threads() {
    for max_size in [1, 2, 4, 20, 0] {
        let tracker = Arc::new(Tracker::default());
        let pool = Arc::new(Pool::with_max_size(factory(&tracker), max_size));
        let start = Arc::new(Barrier::new(64));
        let taken = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let monitor = {
            let (pool, done) = (Arc::clone(&pool), Arc::clone(&done));
            std::thread::spawn(move || {
                let mut snapshots = 0u32;
                while !done.load(SeqCst) || snapshots == 0 {
                    let s = pool.stats();
                    if max_size > 0 {
                        assert!(s.idle <= max_size, "{s:?}");
                    }
                    // Each worker holds at most 4 guards and has at most one
                    // operation in flight; a snapshot may be off by those.
                    assert!(s.out <= 64 * 6, "{s:?}");
                    snapshots += 1;
                    std::thread::yield_now();
                }
            })
        };
        let threads: Vec<_> = (0..64u64)
            .map(|t| {
                let (pool, start, taken) =
                    (Arc::clone(&pool), Arc::clone(&start), Arc::clone(&taken));
                std::thread::spawn(move || {
                    let mut rng = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                    let mut next = move || {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        rng
                    };
                    start.wait();
                    let mut held: Vec<OwnedPoolGuard<Obj>> = Vec::new();
                    for _ in 0..5_000 {
                        match next() % 8 {
                            0..=3 => {
                                let g = pool.instance_owned();
                                claim(&g);
                                held.push(g);
                            }
                            4..=6 if !held.is_empty() => {
                                let i = (next() as usize) % held.len();
                                let g = held.swap_remove(i);
                                unclaim(&g);
                            }
                            7 if !held.is_empty() => {
                                let g = held.pop().unwrap();
                                unclaim(&g);
                                drop(g.take());
                                taken.fetch_add(1, SeqCst);
                            }
                            _ => drop(pool.instance()),
                        }
                        if held.len() > 3 {
                            unclaim(&held.remove(0));
                        }
                    }
                    for g in &held {
                        unclaim(g);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        done.store(true, SeqCst);
        monitor.join().unwrap();
        let s = pool.stats();
        assert_eq!(s.taken, taken.load(SeqCst));
        let dropped = tracker.dropped.load(SeqCst);
        assert_eq!(
            tracker.made.load(SeqCst) - dropped,
            s.idle + s.out,
            "max_size {max_size}: {s:?}"
        );
        assert_eq!(s.out, 0);
        assert_eq!(dropped, s.retired(), "{s:?}");
        assert_consistent(&pool, &tracker, 0);
        if max_size > 0 {
            assert!(pool.len() <= max_size);
        }
    }
}

// ---------------------------------------------------------------------------
// Property test: random take / return / take-for-good / clear / prefill
// sequences against a sequential model (the set of idle ids plus counters).
// Which idle object a take gets is the pool's choice (its front slots and
// queue), so the model checks that it is one of the idle ones.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Take,
    Return(usize),
    TakeForGood(usize),
    Clear,
    Prefill(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Take),
        4 => any::<usize>().prop_map(Op::Return),
        1 => any::<usize>().prop_map(Op::TakeForGood),
        1 => Just(Op::Clear),
        1 => (0usize..4).prop_map(Op::Prefill),
    ]
}

#[derive(Default)]
struct Model {
    idle: Vec<usize>,
    next_id: usize,
    stats: PoolStats,
}

proptest! {
    #[test]
    fn matches_sequential_model(max_size in 0usize..20, ops in proptest::collection::vec(op(), 0..60)) {
        let tracker = Arc::new(Tracker::default());
        let pool = Pool::with_max_size(factory(&tracker), max_size);
        let mut model = Model::default();
        let mut held = Vec::new();
        let room = |model: &Model| max_size == 0 || model.idle.len() < max_size;
        for op in ops {
            match op {
                Op::Take => {
                    let g = pool.instance();
                    if model.idle.is_empty() {
                        model.stats.created += 1;
                        model.next_id += 1;
                        prop_assert_eq!(g.id, model.next_id - 1, "a new object");
                    } else {
                        let at = model.idle.iter().position(|&id| id == g.id);
                        prop_assert!(at.is_some(), "{} is not idle: {:?}", g.id, model.idle);
                        model.idle.swap_remove(at.unwrap());
                        model.stats.reused += 1;
                    }
                    held.push(g);
                }
                Op::Return(i) if !held.is_empty() => {
                    let g = held.remove(i % held.len());
                    if room(&model) {
                        model.idle.push(g.id);
                        model.stats.returned += 1;
                    } else {
                        model.stats.dropped_full += 1;
                    }
                    drop(g);
                }
                Op::TakeForGood(i) if !held.is_empty() => {
                    let g = held.remove(i % held.len());
                    model.stats.taken += 1;
                    drop(g.take());
                }
                Op::Clear => {
                    model.stats.cleared += model.idle.len();
                    prop_assert_eq!(pool.clear(), model.idle.len());
                    model.idle.clear();
                }
                Op::Prefill(n) => {
                    let mut added = 0;
                    while added < n && room(&model) {
                        model.idle.push(model.next_id);
                        model.next_id += 1;
                        model.stats.created += 1;
                        added += 1;
                    }
                    prop_assert_eq!(pool.prefill(n), added);
                }
                Op::Return(_) | Op::TakeForGood(_) => {}
            }
            model.stats.idle = model.idle.len();
            model.stats.out = held.len();
            prop_assert_eq!(pool.stats(), model.stats);
            prop_assert_eq!(pool.len(), model.idle.len());
            prop_assert_eq!(tracker.alive(), model.idle.len() + held.len());
        }
    }
}

/// `stats` taken while another thread prefills and clears: no guard ever
/// returns, so `returned` stays 0 in every snapshot, and no figure wraps
/// around (a review found `returned` near `usize::MAX` here once).
#[test]
fn stats_stay_sane_while_prefill_races() {
    /// Stops the filler when dropped, so a failed assertion cannot leave
    /// it looping (and the scope waiting for it).
    struct StopOnDrop<'a>(&'a AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, SeqCst);
        }
    }
    let pool = Pool::with_max_size(|| [0u8; 16], 16);
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(SeqCst) {
                pool.prefill(16);
                pool.clear();
            }
        });
        let _stop = StopOnDrop(&done);
        for _ in 0..20_000 {
            let st = pool.stats();
            assert_eq!(st.returned, 0, "{st:?}");
            assert!(st.reused <= st.created && st.idle <= 16, "{st:?}");
        }
    });
}
