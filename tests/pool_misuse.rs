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
//! alone, with [`CHILD`] set, and asserts that the child exited normally
//! (not by `SIGABRT`) and that the scenario's own checks, the pool's books
//! included, passed there.

use std::panic::{catch_unwind, panic_any, AssertUnwindSafe};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use multiopen::Pool;

/// Set in a child process: run the scenario instead of spawning.
const CHILD: &str = "MULTIOPEN_POOL_MISUSE_CHILD";

/// Runs `scenario` in a child process (this test binary, on the test
/// `name` alone) and asserts that the child ran it and exited normally.
/// In the child, runs `scenario` itself.
fn in_child(name: &str, scenario: impl FnOnce()) {
    if std::env::var_os(CHILD).is_some() {
        scenario();
        return;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new(exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .expect("the child runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        // 6 is SIGABRT on every unix.
        assert_ne!(
            out.status.signal(),
            Some(6),
            "the child aborted:\n{stdout}\n{stderr}"
        );
    }
    assert!(
        out.status.success(),
        "the child failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("1 passed"),
        "the child did not run `{name}`:\n{stdout}"
    );
}

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
    in_child(
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
    in_child(
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
    in_child(
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
    in_child(
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
    in_child("panic_while_panicking_never_aborts_in_clear", || {
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
    in_child(
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
    in_child(
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
    in_child(
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
