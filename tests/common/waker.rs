//! Hand-polling: a waker that counts its wakes, and one poll of a future
//! with it (exact wake counts, no executor).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

/// A waker that counts its wakes.
pub struct CountWaker(pub AtomicUsize);

impl Wake for CountWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A counting waker: the counter, and the waker.
pub fn counting() -> (Arc<CountWaker>, Waker) {
    let c = Arc::new(CountWaker(AtomicUsize::new(0)));
    (Arc::clone(&c), Waker::from(c))
}

/// How many times `count`'s waker has been woken.
pub fn wakes(count: &CountWaker) -> usize {
    count.0.load(Ordering::SeqCst)
}

/// Polls `future` once with `waker`.
pub fn poll<F: Future + Unpin>(future: &mut F, waker: &Waker) -> Poll<F::Output> {
    Pin::new(future).poll(&mut Context::from_waker(waker))
}
