#![cfg(not(loom))]
//! The cancellation tree's memory, measured in bytes (issue 13: "a parent
//! that makes and drops a million children keeps constant memory"; tokio
//! had exactly this leak, tokio#4639). This test binary counts every heap
//! byte through a global allocator of its own, so the figure is the live
//! heap, not a proxy such as the registry's slot count. One test only: the
//! count is process-wide, and another test running beside it would move it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use multiopen::RunState;

/// The system allocator, counting the bytes it has handed out and not yet
/// taken back.
struct Counting;

/// Live heap bytes of this test process.
static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to `System` with the caller's own
// arguments; the counting only adds an atomic RMW.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc`, passed on unchanged.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            // Relaxed: a statistic; the test reads it after joins.
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // Relaxed: as in `alloc`.
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract for `dealloc`, passed on unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Two makers each make and drop 500,000 children of one parent (holding
/// at most 8 at a time) while a third thread cancels and restarts the
/// parent over and over: the live heap never grows by more than a few
/// kilobytes, and once every child is gone it is back where it began.
/// (Leaking one `RunState` per child would grow it by about 100 MB.)
#[test]
fn a_million_children_under_concurrent_cancels_keep_the_heap_flat() {
    const MAKERS: usize = 2;
    const PER_MAKER: usize = 500_000;
    const HELD: usize = 8;

    let parent = Arc::new(RunState::new("parent"));
    // Warm up: the parent's registry, reasons and cold part exist before
    // the baseline, as do a run and a cancel's first allocations.
    parent.start().unwrap();
    parent.cancel_with("round");
    parent.stop().unwrap();
    // The registry at a working size (it keeps its slots), so that
    // "after" can be compared with "before" byte for byte.
    drop((0..64).map(|_| parent.child("warm-up")).collect::<Vec<_>>());
    let start = Arc::new(Barrier::new(MAKERS + 2));
    let done = Arc::new(AtomicBool::new(false));
    // Cancel rounds the canceller has completed.
    let rounds = Arc::new(AtomicUsize::new(0));
    // Threads and their handles allocate: the baseline is read once all
    // exist and wait at the barrier; the makers sample the heap as they go.
    let makers: Vec<_> = (0..MAKERS)
        .map(|_| {
            let (parent, start) = (Arc::clone(&parent), Arc::clone(&start));
            let rounds = Arc::clone(&rounds);
            thread::spawn(move || {
                let mut held = Vec::with_capacity(HELD);
                start.wait(); // ready: the baseline is read
                start.wait(); // go
                let mut peak = 0;
                for i in 0..PER_MAKER {
                    held.push(parent.child("c"));
                    if held.len() == HELD {
                        held.clear();
                    }
                    if i % 1024 == 0 {
                        peak = peak.max(live());
                    }
                    if i == PER_MAKER / 2 {
                        // Halfway: wait for a cancel to have happened, so
                        // the second half races the canceller for sure.
                        while rounds.load(Ordering::Acquire) == 0 {
                            thread::yield_now();
                        }
                    }
                }
                peak
            })
        })
        .collect();
    let canceller = {
        let (parent, start) = (Arc::clone(&parent), Arc::clone(&start));
        let (done, rounds) = (Arc::clone(&done), Arc::clone(&rounds));
        thread::spawn(move || {
            start.wait(); // ready
            start.wait(); // go
            while !done.load(Ordering::Acquire) {
                parent.start().unwrap();
                parent.cancel_with("round");
                parent.stop().unwrap();
                rounds.fetch_add(1, Ordering::Release);
            }
        })
    };
    start.wait(); // every thread is ready, its own allocations made
    let baseline = live();
    start.wait(); // go
    let peak = makers
        .into_iter()
        .map(|maker| maker.join().unwrap())
        .max()
        .unwrap();
    done.store(true, Ordering::Release);
    canceller.join().unwrap();
    let rounds = rounds.load(Ordering::Acquire);
    assert_eq!(parent.child_count(), 0);
    let growth = peak.saturating_sub(baseline);
    let after = live();
    println!(
        "live heap: {baseline} bytes at the start, at most {growth} more while \
         1,000,000 children were made and dropped under {rounds} cancels, \
         {after} after (registry: {} slots)",
        parent.child_slots()
    );
    // 2 makers × 8 children held, each well under 1 KiB, plus the
    // registry's slots: a few kilobytes.
    assert!(growth <= 64 * 1024, "the heap grew by {growth} bytes");
    // Back to the start once the makers are gone (their `held` vectors and
    // thread handles freed with them, the registry no larger than after
    // the warm-up): no child left anything behind.
    assert!(
        after <= baseline,
        "{after} bytes live after, {baseline} before"
    );
}
