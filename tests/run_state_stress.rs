#![cfg(not(loom))]
//! RunState stress tests: many more threads than cores polling, sleeping,
//! transitioning and registering callbacks concurrently. Nothing about
//! speed is asserted.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use multiopen::{RunEvent, RunPhase, RunState, RunStateError};

// --- stress ----------------------------------------------------------------

/// Many more threads than cores: pollers hammer the queries, sleepers wait
/// for cancels, controllers start/cancel/stop concurrently. Checks that
/// every query stays coherent, callbacks match successful transitions, no
/// sleeper is stranded, and the state ends consistent.
#[test]
fn stress_polling_while_others_cancel_and_restart() {
    const POLLERS: usize = 8;
    const SLEEPERS: usize = 4;
    const CONTROLLERS: usize = 3;
    const CYCLES: usize = 2_000;

    let rs = Arc::new(RunState::new("stress"));
    let starts_cb = Arc::new(AtomicUsize::new(0));
    let ends_cb = Arc::new(AtomicUsize::new(0));
    let cancels_cb = Arc::new(AtomicUsize::new(0));
    for (counter, event) in [
        (&starts_cb, RunEvent::Start),
        (&ends_cb, RunEvent::End),
        (&cancels_cb, RunEvent::Cancel),
    ] {
        let counter = Arc::clone(counter);
        let f = move |_: &RunState| {
            counter.fetch_add(1, Ordering::SeqCst);
        };
        match event {
            RunEvent::Start => rs.on_start(f),
            RunEvent::End => rs.on_end(f),
            RunEvent::Cancel => rs.on_cancel(f),
        };
    }
    let done = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(Barrier::new(POLLERS + SLEEPERS + CONTROLLERS));

    let pollers: Vec<_> = (0..POLLERS)
        .map(|_| {
            let (rs, done, barrier) = (Arc::clone(&rs), Arc::clone(&done), Arc::clone(&barrier));
            thread::spawn(move || {
                barrier.wait();
                let mut polls = 0u64;
                let mut last_start = None;
                let mut last_stop = None;
                while !done.load(Ordering::SeqCst) {
                    for _ in 0..64 {
                        polls += u64::from(rs.cancelled());
                        let _ = (rs.is_running(), rs.stopping(), rs.stopped(), rs.is_paused());
                    }
                    // One load: a coherent label.
                    let phase = rs.state();
                    assert_ne!(phase, RunPhase::Paused, "nobody pauses here");
                    // The recorded times never go backwards. (A run in
                    // progress reads the clock at each call, so its
                    // run_time/total_time are not checked against a stop
                    // that races them: see the module doc.)
                    // Stop first: a start is never undone, so a stop read
                    // first implies its start is visible to the next read
                    // (read the other way round, a whole start and stop
                    // can land between the two reads).
                    let stop = rs.stop_time();
                    let start = rs.start_time();
                    let _ = (rs.run_time(), rs.total_time());
                    assert!(start >= last_start, "start_time went back");
                    assert!(stop >= last_stop, "stop_time went back");
                    assert!(stop.is_none() || start.is_some(), "a stop without a start");
                    last_start = start;
                    last_stop = stop;
                }
                polls
            })
        })
        .collect();

    let sleepers: Vec<_> = (0..SLEEPERS)
        .map(|_| {
            let (rs, done, barrier) = (Arc::clone(&rs), Arc::clone(&done), Arc::clone(&barrier));
            thread::spawn(move || {
                barrier.wait();
                let mut woken = 0u64;
                // Each sleep ends by a cancel (or a timeout if the state
                // was restarted before the sleeper looked); the final
                // cancel below releases the last one.
                while !done.load(Ordering::SeqCst) {
                    if rs.sleep(Duration::from_secs(10)).is_err() {
                        woken += 1;
                        thread::yield_now();
                    }
                }
                woken
            })
        })
        .collect();

    let ok_starts = Arc::new(AtomicUsize::new(0));
    let ok_stops = Arc::new(AtomicUsize::new(0));
    let controllers: Vec<_> = (0..CONTROLLERS)
        .map(|c| {
            let (rs, barrier) = (Arc::clone(&rs), Arc::clone(&barrier));
            let (ok_starts, ok_stops) = (Arc::clone(&ok_starts), Arc::clone(&ok_stops));
            thread::spawn(move || {
                barrier.wait();
                for i in 0..CYCLES {
                    match rs.start() {
                        Ok(()) => {
                            ok_starts.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(e) => {
                            assert!(matches!(e, RunStateError::AlreadyRunning { .. }), "{e:?}")
                        }
                    }
                    if (i + c) % 2 == 0 {
                        rs.cancel();
                    }
                    match rs.stop() {
                        Ok(()) => {
                            ok_stops.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(e) => assert!(
                            matches!(
                                e,
                                RunStateError::NotRunning { .. }
                                    | RunStateError::NeverStarted { .. }
                            ),
                            "{e:?}"
                        ),
                    }
                }
            })
        })
        .collect();

    for c in controllers {
        c.join().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    rs.cancel(); // releases every sleeper still asleep
    let polls: u64 = pollers.into_iter().map(|p| p.join().unwrap()).sum();
    let woken: u64 = sleepers.into_iter().map(|s| s.join().unwrap()).sum();
    let _ = (polls, woken);

    let (starts, stops) = (
        ok_starts.load(Ordering::SeqCst),
        ok_stops.load(Ordering::SeqCst),
    );
    assert!(starts >= 1);
    assert!(rs.stopped(), "every successful start met a successful stop");
    assert_eq!(starts, stops);
    assert_eq!(starts_cb.load(Ordering::SeqCst), starts);
    assert_eq!(ends_cb.load(Ordering::SeqCst), stops);
    assert!(cancels_cb.load(Ordering::SeqCst) <= CONTROLLERS * CYCLES / 2 + CONTROLLERS + 1);
    assert!(rs.total_time() >= rs.run_time());
}

/// Registration racing transitions: lists are swapped under the
/// transitions' feet; every transition sees either list, nothing is freed
/// early, nothing leaks.
#[test]
fn stress_registration_while_transitions_run_callbacks() {
    let rs = Arc::new(RunState::new("reg"));
    let token = Arc::new(());
    let calls = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let transitions = {
        let (rs, stop) = (Arc::clone(&rs), Arc::clone(&stop));
        thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                rs.start().unwrap();
                rs.cancel();
                rs.stop().unwrap();
            }
        })
    };
    let registrars: Vec<_> = (0..3)
        .map(|_| {
            let (rs, token, calls) = (Arc::clone(&rs), Arc::clone(&token), Arc::clone(&calls));
            thread::spawn(move || {
                for _ in 0..2_000 {
                    let (t, c) = (Arc::clone(&token), Arc::clone(&calls));
                    let id = rs.on_cancel(move |_| {
                        let _keep = &t;
                        c.fetch_add(1, Ordering::Relaxed);
                    });
                    assert!(rs.remove_callback(id));
                }
            })
        })
        .collect();
    for r in registrars {
        r.join().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    transitions.join().unwrap();
    let rs = Arc::try_unwrap(rs).expect("threads are done");
    drop(rs);
    assert_eq!(
        Arc::strong_count(&token),
        1,
        "every callback list was freed"
    );
}

/// Callback lists are reclaimed only once no transition can still be
/// taking a reference to them. Every callback checks a canary that its
/// captured value clears when dropped: a transition that ran a callback
/// from a list freed under it would run it after its captures were dropped
/// (the canary is cleared first, so this fires even where the freed memory
/// still reads as it was), and the callback's assertion reaches the
/// transition as `CallbackPanicked`. In practice a premature free mostly
/// shows as the allocator aborting or a segfault; either fails the test.
/// (loom cannot reach this window: see `callbacks_registration_vs_cancel`
/// in `loom-tests/run_state.rs`.)
#[test]
fn stress_no_callback_list_is_freed_under_a_transition() {
    struct Canary(Arc<AtomicBool>);
    impl Drop for Canary {
        fn drop(&mut self) {
            self.0.store(false, Ordering::SeqCst);
        }
    }
    let rs = Arc::new(RunState::new("canary"));
    let stop = Arc::new(AtomicBool::new(false));
    let transitions: Vec<_> = (0..2)
        .map(|_| {
            let (rs, stop) = (Arc::clone(&rs), Arc::clone(&stop));
            thread::spawn(move || {
                let mut runs = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    if rs.start().is_ok() {
                        rs.try_cancel()
                            .expect("a callback ran after its list was freed");
                        let _ = rs.stop();
                        runs += 1;
                    }
                }
                runs
            })
        })
        .collect();
    let registrars: Vec<_> = (0..2)
        .map(|_| {
            let rs = Arc::clone(&rs);
            thread::spawn(move || {
                // Long enough to hit the reader's window many times over;
                // nothing about speed is asserted.
                let until = Instant::now() + Duration::from_millis(800);
                while Instant::now() < until {
                    let alive = Arc::new(AtomicBool::new(true));
                    let canary = Canary(Arc::clone(&alive));
                    let id = rs.on_cancel(move |_| {
                        assert!(canary.0.load(Ordering::SeqCst), "freed under a transition");
                    });
                    assert!(rs.remove_callback(id));
                }
            })
        })
        .collect();
    for r in registrars {
        r.join().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    let runs: u64 = transitions.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(runs > 0);
}

/// Children with callbacks and futures on child and parent, made and
/// dropped in a loop (a third of them cancelled): nothing accumulates.
#[test]
fn memory_stays_flat_for_children_callbacks_and_futures_in_a_loop() {
    use std::future::Future;
    use std::task::{Context, Wake, Waker};
    struct Nop;
    impl Wake for Nop {
        fn wake(self: Arc<Self>) {}
    }
    let parent = RunState::new("parent");
    parent.start().unwrap();
    let waker = Waker::from(Arc::new(Nop));
    let mut cx = Context::from_waker(&waker);
    // 300 rounds under Miri (about a thousand times slower).
    for i in 0..if cfg!(miri) { 300u32 } else { 100_000 } {
        let child = parent.child("c");
        child.on_cancel(|_| {});
        {
            let mut a = Box::pin(child.wait_cancelled_async());
            assert!(a.as_mut().poll(&mut cx).is_pending());
            let mut b = Box::pin(parent.wait_cancelled_async());
            assert!(b.as_mut().poll(&mut cx).is_pending());
            let mut s = Box::pin(parent.wait_stopped_async());
            assert!(s.as_mut().poll(&mut cx).is_pending());
        }
        if i % 3 == 0 {
            child.cancel();
        }
    }
    assert_eq!(parent.child_count(), 0);
    assert_eq!(parent.registered_wakers(), 0);
    assert!(parent.child_slots() <= 4, "slots {}", parent.child_slots());
}
