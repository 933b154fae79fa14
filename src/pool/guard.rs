//! The guards: [`PoolGuard`] and [`OwnedPoolGuard`] hold an object taken
//! from a pool, deref to it, and put it back when dropped.

use std::convert::Infallible;
use std::fmt;
use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use super::Pool;
use crate::unwind;

/// An object from a [`Pool`]; puts it back when dropped (or drops it if the
/// pool is full). Dereferences to the object.
///
/// ```
/// use multiopen::Pool;
/// let pool = Pool::new(|| String::from("hello"));
/// let mut s = pool.instance();
/// s.push('!'); // DerefMut
/// assert_eq!(s.len(), 6); // Deref
/// drop(s);
/// assert_eq!(*pool.instance(), "hello!");
/// ```
#[must_use = "dropping the guard returns the object at once"]
pub struct PoolGuard<'a, T, E = Infallible> {
    pub(super) object: ManuallyDrop<T>,
    /// The front slot to try first on return (`NO_HOME`: none).
    pub(super) home: usize,
    /// When the object dies (`lifetime::NEVER` unless `max_lifetime`).
    pub(super) dies: u64,
    pub(super) pool: &'a Pool<T, E>,
}

/// An object from an `Arc<Pool>`: like [`PoolGuard`], but it owns a
/// reference to the pool, so it is `'static`, can move into a spawned
/// thread, and keeps the pool alive.
///
/// ```
/// use std::sync::Arc;
/// use multiopen::Pool;
/// let pool = Arc::new(Pool::new(|| vec![0u8; 8]));
/// let mut buf = pool.instance_owned();
/// std::thread::spawn(move || buf[0] = 1).join().unwrap();
/// assert_eq!(pool.instance()[0], 1);
/// ```
#[must_use = "dropping the guard returns the object at once"]
pub struct OwnedPoolGuard<T, E = Infallible> {
    pub(super) object: ManuallyDrop<T>,
    /// As in [`PoolGuard`].
    pub(super) home: usize,
    pub(super) dies: u64,
    pub(super) pool: Arc<Pool<T, E>>,
}

impl<'a, T, E> PoolGuard<'a, T, E> {
    /// Removes the object from the pool for good: it will not come back.
    ///
    /// ```
    /// use multiopen::Pool;
    /// let pool = Pool::new(|| vec![1u8]);
    /// let mine: Vec<u8> = pool.instance().take();
    /// assert_eq!(mine, [1]);
    /// assert_eq!((pool.len(), pool.stats().taken), (0, 1));
    /// ```
    pub fn take(self) -> T {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped or used again, so the object is
        // moved out exactly once.
        let object = unsafe { ManuallyDrop::take(&mut this.object) };
        this.pool.note_taken();
        object
    }

    /// The pool the object came from.
    ///
    /// ```
    /// use multiopen::Pool;
    /// let pool = Pool::new(|| 0u8);
    /// let g = pool.instance();
    /// assert!(std::ptr::eq(g.pool(), &pool));
    /// ```
    pub fn pool(&self) -> &'a Pool<T, E> {
        self.pool
    }
}

impl<T, E> OwnedPoolGuard<T, E> {
    /// Removes the object from the pool for good, as [`PoolGuard::take`].
    ///
    /// ```
    /// use std::sync::Arc;
    /// use multiopen::Pool;
    /// let pool = Arc::new(Pool::new(|| 3u8));
    /// assert_eq!(pool.instance_owned().take(), 3);
    /// assert_eq!(pool.stats().taken, 1);
    /// ```
    pub fn take(self) -> T {
        let mut this = ManuallyDrop::new(self);
        this.pool.note_taken();
        // SAFETY: `this` is never dropped or used again, so the object and
        // the Arc are each moved out exactly once.
        // The object first: dropping the last `Arc` may run other objects'
        // `Drop`, and a panic there must not leak this one.
        let (object, pool) = unsafe {
            (
                ManuallyDrop::take(&mut this.object),
                std::ptr::read(&this.pool),
            )
        };
        // Dropping the last `Arc` runs the pool's `Drop`, which passes on an
        // idle object's panic. Our object must not then be dropped while that
        // panic unwinds (its own `Drop` may panic too: an abort): drop it
        // first, under `catch`, then pass the panic on.
        if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(pool)))
        {
            let _ = unwind::catch(|| drop(object));
            std::panic::resume_unwind(payload);
        }
        object
    }

    /// The pool the object came from.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use multiopen::Pool;
    /// let pool = Arc::new(Pool::new(|| 0u8));
    /// let g = pool.instance_owned();
    /// assert!(Arc::ptr_eq(g.pool(), &pool));
    /// ```
    pub fn pool(&self) -> &Arc<Pool<T, E>> {
        &self.pool
    }
}

impl<T, E> Deref for PoolGuard<'_, T, E> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.object
    }
}

impl<T, E> DerefMut for PoolGuard<'_, T, E> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        &mut self.object
    }
}

impl<T, E> Deref for OwnedPoolGuard<T, E> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.object
    }
}

impl<T, E> DerefMut for OwnedPoolGuard<T, E> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        &mut self.object
    }
}

impl<T, E> Drop for PoolGuard<'_, T, E> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: the object is given up only here and in `take`, which
        // never lets the guard drop.
        unsafe { self.pool.release(&mut self.object, self.home, self.dies) };
    }
}

impl<T, E> Drop for OwnedPoolGuard<T, E> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: as for `PoolGuard`.
        unsafe { self.pool.release(&mut self.object, self.home, self.dies) };
    }
}

impl<T: fmt::Debug, E> fmt::Debug for PoolGuard<'_, T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PoolGuard").field(&*self.object).finish()
    }
}

impl<T: fmt::Debug, E> fmt::Debug for OwnedPoolGuard<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("OwnedPoolGuard")
            .field(&*self.object)
            .finish()
    }
}
