#![cfg(not(loom))]
//! Misuse and bad input never hang, panic or abort a `Pool` (issue 11),
//! one section per kind of fault:
//! - a panic while panicking (user code run from a `Drop` during
//!   unwinding) must not abort the process;
//! - a panic payload whose own `Drop` panics must not escape the library;
//! - a huge size must not panic, abort or allocate in proportion up front;
//! - a statistic's documented bound must hold however long the reader is
//!   descheduled.
//!
//! An abort kills the whole test binary, so the abort tests run their
//! scenario in a child process: the test re-runs this binary on itself
//! alone, with `MULTIOPEN_TEST_CHILD` set (`tests/common/child.rs`), and asserts that the child exited normally
//! (not by `SIGABRT`) and that the scenario's own checks, the pool's books
//! included, passed there.

use std::panic::{catch_unwind, panic_any, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use multiopen::Pool;

mod common;

use common::child::in_child_process;

/// Objects made and dropped, and whether an object's `Drop` panics.
#[derive(Default)]
struct Books {
    made: AtomicUsize,
    dropped: AtomicUsize,
    drop_panics: AtomicBool,
    /// Make the drop panic with a [`Nasty`] payload instead of a message.
    nasty: AtomicBool,
}

/// A pooled object whose `Drop` counts itself and may panic.
struct Obj(Arc<Books>);

impl Drop for Obj {
    fn drop(&mut self) {
        self.0.dropped.fetch_add(1, SeqCst);
        if self.0.drop_panics.load(SeqCst) {
            if self.0.nasty.load(SeqCst) {
                panic_any(Nasty);
            }
            panic!("object drop failed");
        }
    }
}

/// A panic payload whose own `Drop` panics.
struct Nasty;

impl Drop for Nasty {
    fn drop(&mut self) {
        panic!("the payload's drop panicked");
    }
}

fn books_pool(max_size: usize) -> (Arc<Books>, Pool<Obj>) {
    let books = Arc::new(Books::default());
    let b = Arc::clone(&books);
    let pool = Pool::with_max_size(
        move || {
            b.made.fetch_add(1, SeqCst);
            Obj(Arc::clone(&b))
        },
        max_size,
    );
    (books, pool)
}

/// The stats agree with the real counts at rest, and the pool still works.
fn assert_books_balance(pool: &Pool<Obj>, books: &Books) {
    let s = pool.stats();
    assert_eq!(s.created, books.made.load(SeqCst), "{s:?}");
    assert_eq!(s.retired(), books.dropped.load(SeqCst), "{s:?}");
    assert_eq!(s.out, 0, "{s:?}");
    assert_eq!(
        books.made.load(SeqCst) - books.dropped.load(SeqCst),
        s.idle,
        "{s:?}"
    );
    books.drop_panics.store(false, SeqCst);
    drop(pool.instance());
    assert_eq!(pool.stats().out, 0);
}

/// Catches a panic, disposing of its payload without dropping it (the
/// test's own payloads may be [`Nasty`]).
fn catch_quietly(f: impl FnOnce()) -> bool {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(()) => false,
        Err(payload) => {
            std::mem::forget(payload);
            true
        }
    }
}

// ---------------------------------------------------------------------------
// Kind: a panic while panicking aborts the process.
// ---------------------------------------------------------------------------

/// A guard dropped while its scope unwinds finds the pool full, and the
/// object it then drops panics in its own `Drop`.
#[test]
fn panic_while_panicking_never_aborts_dropping_an_object_the_full_pool_refuses() {
    in_child_process(
        "panic_while_panicking_never_aborts_dropping_an_object_the_full_pool_refuses",
        || {
            let (books, pool) = books_pool(1);
            pool.prefill(1);
            let _keep = pool.instance(); // the idle one
            drop(pool.instance()); // fills the pool again
            books.drop_panics.store(true, SeqCst);
            assert!(catch_quietly(|| {
                let _g = pool.instance(); // the idle one
                let _extra = pool.instance(); // a new one: no room for it
                drop(_g); // back into the pool
                panic!("user scope failed"); // `_extra` is dropped unwinding
            }));
            books.drop_panics.store(false, SeqCst);
            drop(_keep); // the pool is full: dropped
            assert_books_balance(&pool, &books);
            assert_eq!(pool.stats().dropped_full, 2);
        },
    );
}

/// The reset hook panics, and the object the pool then discards panics in
/// its own `Drop`, while the first panic unwinds.
#[test]
fn panic_while_panicking_never_aborts_discarding_after_a_reset_hook_panic() {
    in_child_process(
        "panic_while_panicking_never_aborts_discarding_after_a_reset_hook_panic",
        || {
            let books = Arc::new(Books::default());
            let b = Arc::clone(&books);
            let fail = Arc::new(AtomicBool::new(true));
            let f = Arc::clone(&fail);
            let pool = Pool::builder(move || {
                b.made.fetch_add(1, SeqCst);
                Obj(Arc::clone(&b))
            })
            .reset(move |_| {
                if f.load(SeqCst) {
                    panic!("reset failed");
                }
            })
            .build();
            books.drop_panics.store(true, SeqCst);
            assert!(catch_quietly(|| drop(pool.instance())));
            fail.store(false, SeqCst);
            assert_eq!(pool.stats().reset_panicked, 1);
            assert_books_balance(&pool, &books);
        },
    );
}

/// The last owned guard drops the pool while its scope unwinds; the
/// pool's idle objects panic in their `Drop`. Every one is still dropped.
#[test]
fn panic_while_panicking_never_aborts_dropping_the_pool() {
    in_child_process(
        "panic_while_panicking_never_aborts_dropping_the_pool",
        || {
            let (books, pool) = books_pool(8);
            let pool = Arc::new(pool);
            pool.prefill(8); // idle objects in the front slots and the queue
            books.drop_panics.store(true, SeqCst);
            let guard = pool.instance_owned();
            drop(pool);
            assert!(catch_quietly(move || {
                let _g = guard; // the last owner of the pool
                panic!("user scope failed");
            }));
            assert_eq!(books.made.load(SeqCst), 8);
            assert_eq!(books.dropped.load(SeqCst), 8, "every object dropped");
        },
    );
}

/// A pool dropped outside any unwinding whose idle objects panic in their
/// `Drop`: the first panic reaches the caller, and every object is still
/// dropped (the rest are not dropped during its unwinding, which would
/// abort).
#[test]
fn panic_while_panicking_never_aborts_dropping_the_pool_normally() {
    in_child_process(
        "panic_while_panicking_never_aborts_dropping_the_pool_normally",
        || {
            let (books, pool) = books_pool(8);
            pool.prefill(8);
            books.drop_panics.store(true, SeqCst);
            assert!(catch_quietly(move || drop(pool)));
            assert_eq!(books.dropped.load(SeqCst), 8, "every object dropped");
        },
    );
}

/// `clear` called from a destructor while unwinding; the idle objects
/// panic in their `Drop`.
#[test]
fn panic_while_panicking_never_aborts_in_clear() {
    in_child_process("panic_while_panicking_never_aborts_in_clear", || {
        struct ClearOnDrop<'a>(&'a Pool<Obj>);
        impl Drop for ClearOnDrop<'_> {
            fn drop(&mut self) {
                self.0.clear();
            }
        }
        let (books, pool) = books_pool(4);
        pool.prefill(4);
        books.drop_panics.store(true, SeqCst);
        assert!(catch_quietly(|| {
            let _clear = ClearOnDrop(&pool);
            panic!("user scope failed");
        }));
        let s = pool.stats();
        assert_eq!((s.cleared, s.idle), (4, 0), "{s:?}");
        assert_books_balance(&pool, &books);
    });
}

// ---------------------------------------------------------------------------
// Kind: a panic payload whose own Drop panics escapes.
// ---------------------------------------------------------------------------

/// A reset hook panics with a payload whose `Drop` panics, while the guard
/// is dropped during unwinding: the pool catches that panic and must
/// dispose of the payload without dropping it carelessly.
#[test]
fn panic_payload_whose_drop_panics_never_escapes_the_reset_hook() {
    in_child_process(
        "panic_payload_whose_drop_panics_never_escapes_the_reset_hook",
        || {
            let books = Arc::new(Books::default());
            let b = Arc::clone(&books);
            let fail = Arc::new(AtomicBool::new(true));
            let f = Arc::clone(&fail);
            let pool = Pool::builder(move || {
                b.made.fetch_add(1, SeqCst);
                Obj(Arc::clone(&b))
            })
            .reset(move |_| {
                if f.load(SeqCst) {
                    panic_any(Nasty);
                }
            })
            .build();
            assert!(catch_quietly(|| {
                let _g = pool.instance();
                panic!("user scope failed");
            }));
            fail.store(false, SeqCst);
            assert_eq!(pool.stats().reset_panicked, 1);
            assert_books_balance(&pool, &books);
        },
    );
}

/// A guard dropped while unwinding drops its object (the pool is full),
/// and the object's `Drop` panics with a payload whose `Drop` panics.
#[test]
fn panic_payload_whose_drop_panics_never_escapes_a_guard_drop_while_unwinding() {
    in_child_process(
        "panic_payload_whose_drop_panics_never_escapes_a_guard_drop_while_unwinding",
        || {
            let (books, pool) = books_pool(1);
            books.nasty.store(true, SeqCst);
            assert!(catch_quietly(|| {
                let _a = pool.instance();
                let _b = pool.instance();
                books.drop_panics.store(true, SeqCst);
                panic!("user scope failed"); // `_b` back, `_a` dropped: full
            }));
            books.drop_panics.store(false, SeqCst);
            assert_eq!(pool.stats().dropped_full, 1);
            assert_books_balance(&pool, &books);
        },
    );
}

/// The pool is dropped while unwinding and its idle objects panic with
/// payloads whose `Drop` panics.
#[test]
fn panic_payload_whose_drop_panics_never_escapes_dropping_the_pool() {
    in_child_process(
        "panic_payload_whose_drop_panics_never_escapes_dropping_the_pool",
        || {
            let (books, pool) = books_pool(4);
            pool.prefill(4);
            books.nasty.store(true, SeqCst);
            books.drop_panics.store(true, SeqCst);
            assert!(catch_quietly(move || {
                let _pool = pool;
                panic!("user scope failed");
            }));
            assert_eq!(books.dropped.load(SeqCst), 4, "every object dropped");
        },
    );
}

// ---------------------------------------------------------------------------
// Kind: a huge size panics, aborts or allocates in proportion up front.
// ---------------------------------------------------------------------------

/// Holds `n` objects out at once, then returns them all: the pool keeps
/// `min(n, max_size)` and drops the rest as full, exactly.
fn hold_and_return(pool: &Pool<Obj>, books: &Books, n: usize) {
    let before = pool.stats();
    let held: Vec<_> = (0..n).map(|_| pool.instance()).collect();
    drop(held);
    let s = pool.stats();
    let kept = n.min(pool.max_size());
    assert_eq!(pool.len(), kept, "{s:?}");
    assert_eq!(s.returned - before.returned, kept, "{s:?}");
    assert_eq!(s.dropped_full - before.dropped_full, n - kept, "{s:?}");
    assert_books_balance(pool, books);
}

/// `usize::MAX` used to panic with "capacity overflow", `1 << 36` to abort
/// allocating a terabyte: each is made at once and works (take, return,
/// prefill, clear), with nothing dropped as full at this scale. Then the
/// bound of a pool above [`Pool::PREALLOCATED_UP_TO`] (the queue that grows
/// as used) is exact, alone and under threads.
#[test]
fn huge_size_pools_are_made_at_once_work_and_keep_the_bound_exact() {
    for max_size in [usize::MAX, 1 << 36, usize::MAX / 2 + 1, 10_000_000] {
        let (books, pool) = books_pool(max_size);
        assert_eq!(pool.max_size(), max_size);
        hold_and_return(&pool, &books, 100);
        assert_eq!(pool.prefill(50), 50);
        assert_eq!(pool.len(), 150);
        assert_eq!(pool.clear(), 150);
        assert_books_balance(&pool, &books);
    }
    bound_is_exact_near_the_limit();
    bound_holds_under_threads_on_the_large_path();
}

/// 1000 pools of 10,000,000 at once: the old up-front queue took 152 MB
/// each (152 GB in all); now each takes its front slots only, until used.
#[test]
fn huge_size_allocates_nothing_in_proportion_up_front() {
    let pools: Vec<_> = (0..1000)
        .map(|_| Pool::with_max_size(|| [0u8; 8], 10_000_000))
        .collect();
    for pool in &pools {
        drop(pool.instance());
        assert_eq!(pool.len(), 1);
    }
}

/// Just above the preallocated sizes the bound is still exact, with front
/// slots and the queue both full; at the limit too.
fn bound_is_exact_near_the_limit() {
    let limit = Pool::<Obj>::PREALLOCATED_UP_TO;
    for max_size in [limit, limit + 1, limit + 17, 3 * limit] {
        let (books, pool) = books_pool(max_size);
        hold_and_return(&pool, &books, max_size + 5);
        // Every idle object is found again before the factory runs.
        let made = books.made.load(SeqCst);
        let held: Vec<_> = (0..max_size).map(|_| pool.instance()).collect();
        assert_eq!(books.made.load(SeqCst), made, "max_size {max_size}");
        drop(held);
        assert_eq!(pool.len(), max_size);
        // A prefill of `usize::MAX` stops at `max_size`.
        assert_eq!(pool.clear(), max_size);
        assert_eq!(pool.prefill(usize::MAX), max_size);
        assert_eq!(pool.prefill(usize::MAX), 0);
        assert_books_balance(&pool, &books);
    }
}

/// Threads hammer a pool on the large-size path: never more idle than
/// `max_size`, and the books balance.
fn bound_holds_under_threads_on_the_large_path() {
    let max_size = Pool::<Obj>::PREALLOCATED_UP_TO + 20;
    let (books, pool) = books_pool(max_size);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for round in 0..200 {
                    let held: Vec<_> = (0..(round % 7) * 100).map(|_| pool.instance()).collect();
                    drop(held);
                    assert!(pool.len() <= max_size);
                }
            });
        }
    });
    assert!(pool.len() <= max_size);
    assert_books_balance(&pool, &books);
}

// ---------------------------------------------------------------------------
// Kind: a statistic's documented error bound fails when the reader is
// descheduled.
// ---------------------------------------------------------------------------

/// Eight threads loop `instance()` (take + return) on a pool of one while
/// another thread reads `stats()` in a loop: at most eight objects are out
/// at any moment, yet a reader descheduled between its reads once saw
/// `out` at 293,191. With 12 busy threads on the machine's cores the
/// readers (four, for more chances) are descheduled often, anywhere in
/// their calls; every snapshot must keep the bound. (The loom model
/// `stats_reader_preempted_keeps_the_bound` checks every preemption point.)
#[test]
fn stats_bound_holds_while_reader_is_descheduled() {
    const THREADS: usize = 8;
    let pool = Pool::with_max_size(|| [0u8; 8], 1);
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                while !done.load(SeqCst) {
                    for _ in 0..64 {
                        let g = pool.instance();
                        // Held a moment, so that takes overlap and the
                        // pool makes and drops objects often.
                        for _ in 0..20 {
                            std::hint::black_box(&g);
                        }
                    }
                }
            });
        }
        /// Stops the workers when dropped, so a failed assertion cannot
        /// leave them looping (and the scope waiting for them).
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, SeqCst);
            }
        }
        let _stop = StopOnDrop(&done);
        // Four readers, each descheduled at random points of its calls.
        let readers: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let started = std::time::Instant::now();
                    while started.elapsed() < std::time::Duration::from_secs(3) {
                        let st = pool.stats();
                        assert!(st.out <= THREADS, "{st:?}");
                        assert!(st.idle <= 1, "{st:?}");
                        assert!(st.retired() <= st.created, "{st:?}");
                        assert!(st.reused <= st.returned, "{st:?}");
                        assert_eq!((st.taken, st.cleared, st.failed), (0, 0, 0), "{st:?}");
                    }
                })
            })
            .collect();
        for reader in readers {
            if let Err(panic) = reader.join() {
                std::panic::resume_unwind(panic);
            }
        }
    });
    let st = pool.stats();
    assert_eq!(st.out, 0, "{st:?}");
    assert_eq!(st.created, st.retired() + st.idle, "{st:?}");
}

/// `OwnedPoolGuard::take` drops the last `Arc` of the pool, whose `Drop`
/// passes on an idle object's panic; the taken object, whose `Drop` panics
/// too, must not then be dropped while that panic unwinds. Found by review.
#[test]
fn panic_while_panicking_never_aborts_owned_take_of_the_last_arc() {
    in_child_process(
        "panic_while_panicking_never_aborts_owned_take_of_the_last_arc",
        || {
            struct PanicsOnDrop;
            impl Drop for PanicsOnDrop {
                fn drop(&mut self) {
                    panic!("an object's drop panics");
                }
            }
            let pool = Arc::new(Pool::new(|| PanicsOnDrop));
            let taken = pool.instance_owned();
            drop(pool.instance_owned()); // goes back: one idle object
            assert_eq!(pool.len(), 1);
            drop(pool); // the last Arc is in `taken` now
            let result = catch_unwind(AssertUnwindSafe(move || {
                let _object = taken.take();
            }));
            assert!(result.is_err(), "the idle object's panic is passed on");
        },
    );
}
