#![cfg(not(loom))]
//! `RunState` deadlines (`cancel_at`, `cancel_after`): which deadline
//! fires (a replaced or cleared one never does), the limits of the
//! timeouts, and the callbacks they run off the crate's one timer thread.

use std::future::Future;
use std::pin::pin;
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Wake, Waker};
use std::time::{Duration, Instant};

use multiopen::run_state::DEADLINE_EXCEEDED;
use multiopen::RunState;

mod common;
use common::no_deadlock;

/// A waker that, on the timer thread, says so and then holds that thread
/// until released: what a slow waker would do. Everything due after it
/// waits, taken but not run.
struct Holding {
    entered: Mutex<mpsc::Sender<()>>,
    release: Mutex<mpsc::Receiver<()>>,
}

impl Wake for Holding {
    fn wake(self: Arc<Self>) {
        let _ = self.entered.lock().unwrap().send(());
        let _ = self.release.lock().unwrap().recv();
    }
}

/// A deadline replaced after its time came, while the timer thread (held
/// by the waker of an earlier deadline) had its task in hand, never
/// cancels: replaced means replaced, whatever the two instants.
#[test]
fn a_replaced_deadline_never_fires() {
    a_deadline_changed_while_due(|y| {
        let later = Instant::now() + Duration::from_secs(3600);
        y.cancel_at(later).unwrap(); // moved an hour on, before any cancel
        assert_eq!(y.deadline(), Some(later));
    });
}

/// The same kind for `clear_deadline`: cleared while its task was in hand,
/// it never cancels, and `clear_deadline` says it removed one.
#[test]
fn a_cleared_deadline_never_fires() {
    a_deadline_changed_while_due(|y| {
        assert!(y.clear_deadline(), "a pending deadline was cleared");
        assert_eq!(y.deadline(), None);
    });
}

/// x's and y's deadlines are due in one batch, x's first; x's future's
/// waker holds the timer thread while `change` acts on y; then a third
/// deadline, served after whatever the timer had in hand for y, shows
/// whether y was cancelled.
///
/// The deadline is set a margin ahead; a round in which this thread was
/// descheduled past it before y's deadline was set (y then cancels at
/// once, as a deadline in the past does) proves nothing, and is run again
/// with a margin four times longer (the kind: a test that assumes two
/// calls come within some wall-clock time).
fn a_deadline_changed_while_due(change: impl Fn(&Arc<RunState>) + Send + 'static) {
    no_deadlock("a deadline changed while due", move || {
        let mut margin = Duration::from_millis(if cfg!(miri) { 500 } else { 20 });
        loop {
            let x = Arc::new(RunState::new("x"));
            let y = Arc::new(RunState::new("y"));
            let z = Arc::new(RunState::new("z"));
            let (entered_tx, entered_rx) = mpsc::channel();
            let (release_tx, release_rx) = mpsc::channel();
            let waker = Waker::from(Arc::new(Holding {
                entered: Mutex::new(entered_tx),
                release: Mutex::new(release_rx),
            }));
            let mut wait = pin!(x.wait_cancelled_async());
            assert!(wait
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending());
            let at = Instant::now() + margin;
            x.cancel_at(at).unwrap();
            y.cancel_at(at).unwrap(); // due in the same batch, after x
            if Instant::now() >= at {
                // Void: let x's waker go whenever it runs, and try again.
                let _ = release_tx.send(());
                margin *= 4;
                continue;
            }
            entered_rx.recv().unwrap(); // the timer thread is in x's waker
            assert!(!y.cancelled());
            change(&y);
            release_tx.send(()).unwrap();
            z.cancel_at(Instant::now() + Duration::from_millis(1))
                .unwrap();
            z.wait_cancelled();
            assert!(
                !y.cancelled(),
                "y cancelled ({:?}) by a deadline it no longer had; deadline() = {:?}",
                y.reason(),
                y.deadline()
            );
            return;
        }
    });
}

/// The callbacks of a deadline's cancel run off the timer thread, so one
/// that waits for another state's deadline sees it fire.
#[test]
fn deadline_callbacks_run_off_the_timer_thread() {
    // A round in which this thread was descheduled past the deadline
    // before setting it (the cancel then runs at once, here) is run again
    // with a longer margin: see `a_deadline_changed_while_due`.
    let mut margin = Duration::from_millis(if cfg!(miri) { 500 } else { 20 });
    let (waited, name) = loop {
        let x = Arc::new(RunState::new("x"));
        let y = Arc::new(RunState::new("y"));
        let (tx, rx) = mpsc::channel();
        let y2 = Arc::clone(&y);
        x.on_cancel(move |_| {
            // e.g. "when the request times out, wait for the upstream's own deadline"
            let name = std::thread::current().name().map(str::to_owned);
            let _ = tx.send((y2.wait_cancelled_timeout(Duration::from_secs(20)), name));
        });
        let at = Instant::now() + margin;
        x.cancel_at(at).unwrap();
        y.cancel_at(at + Duration::from_millis(1)).unwrap();
        if Instant::now() < at {
            break rx.recv().unwrap();
        }
        margin *= 4;
    };
    assert!(
        waited.is_ok(),
        "y's deadline never fired while x's callback ran: {waited:?}"
    );
    assert_eq!(name.as_deref(), Some("multiopen-deadline"));
}

/// The same kind for a child's callbacks: a deadline on the parent cancels
/// the child on the timer thread and runs the child's callback elsewhere.
#[test]
fn a_childs_callbacks_of_a_deadline_run_off_the_timer_thread() {
    // Run again with a longer margin if descheduled past the deadline
    // before setting it: see `a_deadline_changed_while_due`.
    let mut margin = Duration::from_millis(if cfg!(miri) { 500 } else { 20 });
    let (child, reason, waited) = loop {
        let parent = Arc::new(RunState::new("parent"));
        let child = parent.child("child");
        let other = Arc::new(RunState::new("other"));
        let (tx, rx) = mpsc::channel();
        let o2 = Arc::clone(&other);
        child.on_cancel(move |c| {
            let _ = tx.send((
                c.reason(),
                o2.wait_cancelled_timeout(Duration::from_secs(20)),
            ));
        });
        let at = Instant::now() + margin;
        parent.cancel_at(at).unwrap();
        other.cancel_at(at + Duration::from_millis(1)).unwrap();
        if Instant::now() < at {
            let (reason, waited) = rx.recv().unwrap();
            break (child, reason, waited);
        }
        margin *= 4;
    };
    assert_eq!(reason.as_deref(), Some(DEADLINE_EXCEEDED));
    assert!(waited.is_ok(), "the other deadline was starved: {waited:?}");
    assert!(child.cancelled());
}

#[test]
fn cancel_after_max_means_never_and_cancel_at_past_cancels_now() {
    let rs = Arc::new(RunState::new("d"));
    rs.cancel_after(Duration::MAX).unwrap();
    assert!(!rs.cancelled());
    assert_eq!(rs.deadline(), None);
    rs.cancel_after(Duration::from_secs(3600)).unwrap();
    assert!(rs.deadline().is_some());
    rs.cancel_after(Duration::MAX).unwrap(); // "never": replaces the hour
    assert_eq!(rs.deadline(), None);
    rs.cancel_at(Instant::now()).unwrap();
    assert!(rs.cancelled());
    assert_eq!(rs.reason().as_deref(), Some(DEADLINE_EXCEEDED));
    assert_eq!(rs.deadline(), None);
}

#[test]
fn a_deadline_callback_may_replace_and_clear_the_deadline_while_firing() {
    no_deadlock("deadline re-set from the firing cancel's callback", || {
        let rs = Arc::new(RunState::new("d"));
        rs.start().unwrap();
        let (tx, rx) = mpsc::channel();
        let w = Arc::downgrade(&rs);
        rs.on_cancel(move |_| {
            let rs = w.upgrade().unwrap();
            rs.cancel_after(Duration::from_millis(1)).unwrap();
            let _ = rs.clear_deadline();
            rs.cancel_after(Duration::from_secs(3600)).unwrap();
            tx.send(()).unwrap();
        });
        rs.cancel_after(Duration::from_millis(1)).unwrap();
        rx.recv().unwrap();
        rs.wait_cancelled();
        assert_eq!(rs.reason().as_deref(), Some(DEADLINE_EXCEEDED));
        assert!(
            rs.deadline().is_some(),
            "the hour set in the callback is pending"
        );
        assert!(rs.clear_deadline());
    });
}

/// A deadline's cancel is told from a user's cancel with the same words,
/// through the tree (a grandchild's inherited reason), through `check`'s
/// error, and from a fired timer as from a past deadline.
#[test]
fn a_deadline_is_told_from_a_user_reason_with_the_same_text() {
    let job = Arc::new(RunState::new("job"));
    let step = job.child("step");
    let sub = step.child("sub");
    job.cancel_at(Instant::now() + Duration::from_millis(5))
        .unwrap();
    no_deadlock("the timer fires", {
        let sub = Arc::clone(&sub);
        move || sub.wait_cancelled()
    });
    assert!(job.deadline_exceeded() && step.deadline_exceeded() && sub.deadline_exceeded());
    assert!(sub.check().unwrap_err().is_deadline_exceeded());
    assert_eq!(sub.reason().as_deref(), Some(DEADLINE_EXCEEDED));

    let imitation = RunState::new("imitation");
    let child = imitation.child("child");
    imitation.cancel_with(DEADLINE_EXCEEDED);
    assert_eq!(child.reason().as_deref(), Some(DEADLINE_EXCEEDED));
    assert!(!imitation.deadline_exceeded() && !child.deadline_exceeded());
    assert!(!child.check().unwrap_err().is_deadline_exceeded());

    let past = Arc::new(RunState::new("past"));
    past.cancel_at(Instant::now()).unwrap();
    assert!(past.deadline_exceeded());
    let plain = RunState::new("plain");
    plain.cancel();
    assert!(!plain.deadline_exceeded() && !RunState::new("fresh").deadline_exceeded());
}
