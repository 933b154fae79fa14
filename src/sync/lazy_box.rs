//! [`LazyBox`]: a value boxed on first use and published with one CAS; a
//! null pointer until then, so an object that never needs it pays one word.
//! Lock-free: two threads that race to make it each build one, the loser
//! drops its own (std's `OnceLock` would block the loser instead; the
//! values made here are cheap and side-effect free).
//!
//! Serves the parts of the primitives that only slow paths touch: a
//! `RunState`'s cold part, the wakers' registries of the async waits.

use std::marker::PhantomData;

use super::{AtomicPtr, Ordering};

/// A `Box<T>` made by the first [`get_or_init`](Self::get_or_init), then
/// shared for the owner's life and freed with it.
pub(crate) struct LazyBox<T> {
    /// `Box::into_raw` of the value, or null; set once, freed in `Drop`.
    ptr: AtomicPtr<T>,
    /// Owns a `T` (`Send` if `T` is); shares it between threads, which may
    /// make it on one and drop it on another (`Sync` if `T` is `Send +
    /// Sync`, as std's `OnceLock`).
    _owns: PhantomData<(Box<T>, std::sync::Mutex<T>)>,
}

impl<T> LazyBox<T> {
    /// An empty box: nothing allocated.
    pub(crate) fn new() -> Self {
        Self {
            ptr: AtomicPtr::new(std::ptr::null_mut()),
            _owns: PhantomData,
        }
    }

    /// The value, if it has been made. One Acquire load.
    #[inline]
    pub(crate) fn get(&self) -> Option<&T> {
        // Acquire: pairs with the Release of the CAS that stored it, so the
        // value's initialisation is visible.
        let ptr = self.ptr.load(Ordering::Acquire);
        // SAFETY: a non-null pointer came from `Box::into_raw` in `init` and
        // is freed only in `Drop` (`&mut self`), so it is alive while we
        // hold `&self`.
        (!ptr.is_null()).then(|| unsafe { &*ptr })
    }

    /// The value, made by `make` now if this is the first use.
    #[inline]
    pub(crate) fn get_or_init_with(&self, make: impl FnOnce() -> T) -> &T {
        match self.get() {
            Some(value) => value,
            None => self.init(make),
        }
    }

    /// The first use: makes a value and publishes it, or drops it for
    /// another thread's, published first.
    #[cold]
    #[inline(never)]
    fn init(&self, make: impl FnOnce() -> T) -> &T {
        let new = Box::into_raw(Box::new(make()));
        // AcqRel: Release publishes the value; Acquire (also on failure)
        // sees another thread's.
        let ptr = match self.ptr.compare_exchange(
            std::ptr::null_mut(),
            new,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => new,
            Err(theirs) => {
                // SAFETY: `new` came from `Box::into_raw` just above and was
                // never shared.
                drop(unsafe { Box::from_raw(new) });
                theirs
            }
        };
        // SAFETY: as in `get`: alive until `Drop`.
        unsafe { &*ptr }
    }
}

impl<T: Default> LazyBox<T> {
    /// The value, made by `T::default()` now if this is the first use.
    #[inline]
    pub(crate) fn get_or_init(&self) -> &T {
        self.get_or_init_with(T::default)
    }
}

impl<T> Drop for LazyBox<T> {
    #[inline]
    fn drop(&mut self) {
        // Relaxed, and a load, not a swap (an RMW): `&mut self`, nobody
        // else can touch it, and the field goes with us.
        let ptr = self.ptr.load(Ordering::Relaxed);
        if !ptr.is_null() {
            // SAFETY: the value `ptr` holds (from `Box::into_raw` in
            // `init`), which goes with us (never read again).
            free(unsafe { Box::from_raw(ptr) });
        }
    }
}

/// Drops a made value: out of line, so that an owner whose box was never
/// made (most) drops with a load and a test, its drop glue unbloated.
#[cold]
#[inline(never)]
fn free<T>(value: Box<T>) {
    drop(value);
}

impl<T: std::fmt::Debug> std::fmt::Debug for LazyBox<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.get() {
            Some(value) => f.debug_tuple("LazyBox").field(value).finish(),
            None => f.write_str("LazyBox(<not made>)"),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    /// Counts its drops.
    struct Dropped(Arc<AtomicUsize>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    #[test]
    fn made_once_shared_and_freed_with_its_owner() {
        let drops = Arc::new(AtomicUsize::new(0));
        let lazy = LazyBox::new();
        assert!(lazy.get().is_none(), "nothing made before the first use");
        let a: *const Dropped = lazy.get_or_init_with(|| Dropped(Arc::clone(&drops)));
        let b: *const Dropped = lazy.get_or_init_with(|| unreachable!("made already"));
        assert_eq!(a, b, "one value");
        assert_eq!(drops.load(std::sync::atomic::Ordering::Relaxed), 0);
        drop(lazy);
        assert_eq!(
            drops.load(std::sync::atomic::Ordering::Relaxed),
            1,
            "freed once"
        );
    }

    #[test]
    fn racing_first_uses_agree_and_the_loser_drops_its_own() {
        for _ in 0..if cfg!(miri) { 4 } else { 50 } {
            let drops = Arc::new(AtomicUsize::new(0));
            let lazy = LazyBox::new();
            let seen: Vec<usize> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..4)
                    .map(|_| {
                        s.spawn(|| {
                            let v = lazy.get_or_init_with(|| Dropped(Arc::clone(&drops)));
                            std::ptr::from_ref(v) as usize
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            assert!(
                seen.windows(2).all(|w| w[0] == w[1]),
                "every thread sees one value"
            );
            let made_and_dropped = drops.load(std::sync::atomic::Ordering::Relaxed);
            drop(lazy);
            let total = drops.load(std::sync::atomic::Ordering::Relaxed);
            assert_eq!(
                total,
                made_and_dropped + 1,
                "the winner's dropped with the box"
            );
        }
    }
}
