//! [`Lock`]: a mutex whose release is its last access to its own memory.
//!
//! `std::sync::Mutex` (futex-based on Linux) wakes a waiter through `&self`
//! *after* the swap that releases it. That is sound only while something
//! keeps the mutex alive across the whole `unlock` call, as a guard's
//! borrow of an owned mutex does. A children registry (`run_state/tree.rs`)
//! is freed by whichever of its users finds it empty under its lock, and a
//! child's unlink holds no count on it: with std's mutex, a thread could
//! take the lock the moment another's release swapped it free, find the
//! registry empty and free it, while that other thread was still to call
//! its wake through a reference to the freed memory.
//!
//! Here the release is the swap, and a wake after it goes through the
//! word's raw address, which `atomic-wait` allows to dangle (a wake of a
//! freed, perhaps reused, address is at most a spurious wake of whoever
//! sleeps there: every waiter re-checks). The guard keeps a raw pointer,
//! not a reference, so no reference to the lock is live, or passed into a
//! call, once the swap is done.
//!
//! The word, bit by bit (the three values of std's futex mutex):
//! - `UNLOCKED` (0): free.
//! - `LOCKED` (1): held, nobody asleep.
//! - `CONTENDED` (2): held, and a thread may be asleep waiting for it: the
//!   release wakes one.
//!
//! No poisoning: the users' sections run no user code, and a panic (only an
//! allocation failure can) leaves a consistent value. Under loom the lock
//! is loom's `Mutex` (whose release is atomic in the model).

#[cfg(not(loom))]
pub(crate) use imp::{Lock, LockGuard};
#[cfg(loom)]
pub(crate) use model::{Lock, LockGuard};

#[cfg(not(loom))]
mod imp {
    use std::cell::UnsafeCell;
    use std::marker::PhantomData;
    use std::ops::{Deref, DerefMut};
    use std::ptr::NonNull;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Free.
    const UNLOCKED: u32 = 0;
    /// Held; nobody asleep.
    const LOCKED: u32 = 1;
    /// Held; a thread may be asleep on the word.
    const CONTENDED: u32 = 2;

    /// A mutex over `T` whose release is its last access to its memory (see
    /// the module docs).
    pub(crate) struct Lock<T> {
        word: AtomicU32,
        value: UnsafeCell<T>,
    }

    // SAFETY: the value is reached only through a guard, which only the
    // thread holding the lock has: as for `std::sync::Mutex`.
    unsafe impl<T: Send> Send for Lock<T> {}
    // SAFETY: as for `Send`: one holder at a time, `T: Send` to move across.
    unsafe impl<T: Send> Sync for Lock<T> {}

    // As std's `Mutex` (which is both), without the poisoning: the
    // sections under a `Lock` run no user code, and leave the value
    // consistent if an allocation in them panics.
    impl<T> std::panic::UnwindSafe for Lock<T> {}
    impl<T> std::panic::RefUnwindSafe for Lock<T> {}

    /// The lock, held; released on drop. Holds a raw pointer (see the
    /// module docs); `'a` is the borrow the lock was taken through.
    pub(crate) struct LockGuard<'a, T> {
        lock: NonNull<Lock<T>>,
        /// Not `Send` (released by the thread that took it, as std's) and
        /// tied to the borrow.
        _marker: PhantomData<(&'a mut T, *const ())>,
    }

    // SAFETY: a shared guard gives `&T` only, as `std`'s `MutexGuard`.
    unsafe impl<T: Sync> Sync for LockGuard<'_, T> {}

    impl<T> Lock<T> {
        pub(crate) const fn new(value: T) -> Self {
            Self {
                word: AtomicU32::new(UNLOCKED),
                value: UnsafeCell::new(value),
            }
        }

        /// Takes the lock, sleeping on the word while another holds it.
        #[inline]
        pub(crate) fn lock(&self) -> LockGuard<'_, T> {
            // Acquire: what the last holder did under the lock is visible.
            if self
                .word
                .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                self.lock_contended();
            }
            LockGuard {
                lock: NonNull::from(self),
                _marker: PhantomData,
            }
        }

        /// The wait, as std's: a short spin while the holder is running,
        /// then mark the word `CONTENDED` (so the release wakes us) and
        /// sleep while it stays so.
        #[cold]
        #[inline(never)]
        fn lock_contended(&self) {
            for _ in 0..100 {
                // Relaxed: a hint; the swap below decides.
                if self.word.load(Ordering::Relaxed) == UNLOCKED {
                    break;
                }
                std::hint::spin_loop();
            }
            // Acquire: as in `lock`. Swapping in CONTENDED (not LOCKED)
            // when we take it: others may still sleep, so our release must
            // wake one.
            while self.word.swap(CONTENDED, Ordering::Acquire) != UNLOCKED {
                atomic_wait::wait(&self.word, CONTENDED);
            }
        }
    }

    impl<T> Deref for LockGuard<'_, T> {
        type Target = T;

        #[inline]
        fn deref(&self) -> &T {
            // SAFETY: we hold the lock (so no other reference to the value
            // is live), and the lock lives while its holder holds it.
            unsafe { &*(*self.lock.as_ptr()).value.get() }
        }
    }

    impl<T> DerefMut for LockGuard<'_, T> {
        #[inline]
        fn deref_mut(&mut self) -> &mut T {
            // SAFETY: as in `deref`; `&mut self`: one such borrow at a time.
            unsafe { &mut *(*self.lock.as_ptr()).value.get() }
        }
    }

    impl<T> Drop for LockGuard<'_, T> {
        #[inline]
        fn drop(&mut self) {
            // SAFETY: the lock lives until our release (its users keep it
            // alive while they hold it); the raw address survives it.
            let word: *const AtomicU32 = unsafe { std::ptr::addr_of!((*self.lock.as_ptr()).word) };
            // SAFETY: as above: alive until this swap. Release: what we did
            // under the lock is visible to the next holder (Acquire). After
            // the swap another thread may take the lock and free it.
            let was = unsafe { (*word).swap(UNLOCKED, Ordering::Release) };
            if was == CONTENDED {
                // Through the raw address only: `atomic-wait` allows it to
                // dangle (at most a spurious wake of whoever sleeps there).
                atomic_wait::wake_one(word);
            }
        }
    }
}

#[cfg(loom)]
mod model {
    /// Under loom: loom's `Mutex` (its release is atomic in the model, so
    /// the use after release that [`Lock`] avoids cannot arise).
    pub(crate) struct Lock<T>(loom::sync::Mutex<T>);

    pub(crate) type LockGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

    impl<T> Lock<T> {
        pub(crate) fn new(value: T) -> Self {
            Self(loom::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> LockGuard<'_, T> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::Lock;
    use std::sync::Arc;

    /// Threads add under the lock; no increment is lost, and the waiters
    /// (contended) are all woken.
    #[test]
    fn counts_under_contention() {
        let lock = Arc::new(Lock::new(0u64));
        let threads = if cfg!(miri) { 3 } else { 4 };
        let rounds = if cfg!(miri) { 50 } else { 20_000 };
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let lock = Arc::clone(&lock);
                std::thread::spawn(move || {
                    for _ in 0..rounds {
                        *lock.lock() += 1;
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        assert_eq!(*lock.lock(), threads * rounds);
    }

    /// The registry's pattern: whoever finds the count at zero under the
    /// lock frees the lock's allocation, while the thread that made it zero
    /// may still be in its release.
    #[test]
    fn freed_by_the_next_holder_right_after_a_release() {
        let rounds = if cfg!(miri) { 20 } else { 2_000 };
        for _ in 0..rounds {
            let raw = Box::into_raw(Box::new(Lock::new(2u32)));
            let addr = raw as usize;
            let holders: Vec<_> = (0..2)
                .map(|_| {
                    std::thread::spawn(move || {
                        let raw = addr as *mut Lock<u32>;
                        // SAFETY: alive until the holder that takes the
                        // count to zero frees it below, after its release.
                        let mut guard = unsafe { &*raw }.lock();
                        *guard -= 1;
                        let last = *guard == 0;
                        drop(guard);
                        if last {
                            // SAFETY: the count is zero: nobody else will
                            // lock it; the other holder is done (or only in
                            // its release, which no longer reads it).
                            drop(unsafe { Box::from_raw(raw) });
                        }
                    })
                })
                .collect();
            for holder in holders {
                holder.join().unwrap();
            }
        }
    }
}
