//! The iterator adapter: [`RunState::iter`], [`UntilCancelled`] and
//! [`UntilCancelledExt`].

use std::iter::FusedIterator;

use super::error::Cancelled;
use super::RunState;

// ---------------------------------------------------------------------------
// The iterator adapter
// ---------------------------------------------------------------------------

impl RunState {
    /// An iterator over `items` that stops once this state is cancelled
    /// and blocks while it is paused: before each item it calls
    /// [`check`](Self::check). The Python `cs.resources`'s `RunState.iter`.
    /// Also as [`UntilCancelledExt::until_cancelled`].
    ///
    /// ```
    /// use multiopen::RunState;
    ///
    /// let rs = RunState::new("job");
    /// let _run = rs.run();
    /// let mut seen = Vec::new();
    /// for i in rs.iter(0..100) {
    ///     seen.push(i);
    ///     if i == 2 {
    ///         rs.cancel();
    ///     }
    /// }
    /// assert_eq!(seen, [0, 1, 2]);
    /// # Ok::<(), multiopen::CallbackPanicked>(())
    /// ```
    pub fn iter<I: IntoIterator>(&self, items: I) -> UntilCancelled<'_, I::IntoIter> {
        UntilCancelled {
            runstate: self,
            items: items.into_iter(),
            done: false,
        }
    }
}

/// Yields the items of an iterator until a [`RunState`] is cancelled,
/// blocking while it is paused: see [`RunState::iter`] and
/// [`UntilCancelledExt::until_cancelled`]. Once it has returned `None` it
/// always does.
///
/// ```
/// use multiopen::{RunState, UntilCancelled};
///
/// let rs = RunState::new("job");
/// rs.cancel();
/// let mut it: UntilCancelled<'_, _> = rs.iter([1, 2, 3]);
/// assert_eq!(it.next(), None);
/// # Ok::<(), multiopen::CallbackPanicked>(())
/// ```
#[derive(Debug)]
#[must_use = "iterators are lazy and do nothing unless consumed"]
pub struct UntilCancelled<'a, I> {
    runstate: &'a RunState,
    items: I,
    done: bool,
}

impl<I: Iterator> Iterator for UntilCancelled<'_, I> {
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        if self.done {
            return None;
        }
        let item = match self.runstate.check() {
            Ok(()) => self.items.next(),
            Err(Cancelled { .. }) => None,
        };
        self.done = item.is_none();
        item
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.done {
            (0, Some(0))
        } else {
            (0, self.items.size_hint().1)
        }
    }
}

impl<I: Iterator> FusedIterator for UntilCancelled<'_, I> {}

/// `iterator.until_cancelled(&runstate)`: the [`RunState::iter`] adapter as
/// an iterator method.
///
/// ```
/// use multiopen::{RunState, UntilCancelledExt};
///
/// let rs = RunState::new("job");
/// let _run = rs.run();
/// let firsts: Vec<_> = (1..)
///     .until_cancelled(&rs)
///     .inspect(|&i| if i == 3 { rs.cancel() })
///     .collect();
/// assert_eq!(firsts, [1, 2, 3]);
/// ```
pub trait UntilCancelledExt: Iterator + Sized {
    /// Yields this iterator's items until `runstate` is cancelled, blocking
    /// while it is paused.
    ///
    /// ```
    /// use multiopen::{RunState, UntilCancelledExt};
    ///
    /// let rs = RunState::new("job");
    /// assert_eq!((0..3).until_cancelled(&rs).count(), 3);
    /// ```
    fn until_cancelled(self, runstate: &RunState) -> UntilCancelled<'_, Self> {
        runstate.iter(self)
    }
}

impl<I: Iterator> UntilCancelledExt for I {}
