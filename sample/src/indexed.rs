//! Samples made from their position: an input that skips for free.

use std::fmt;
use std::iter::FusedIterator;

/// `n` items made by `make(i)` for `i` in `0..n`, in order: what
/// `(0..n).map(make)` gives, except that skipping ([`Iterator::nth`]) moves
/// past items without making them.
///
/// This matters for a distributed run. A worker process rebuilds the
/// program's input and reads it forward to the partitions it is told to load,
/// skipping those other workers load: for a `map`, each skipped item is made
/// and dropped, so every worker makes nearly the whole input. Made with
/// [`indexed`], a worker makes only its own partitions' samples.
///
/// `make` must give the same item for the same position every time (no
/// clock, no unseeded random source): driver and workers each call it.
///
/// ```
/// use bob_pipelines_sample::{Sample, indexed};
///
/// let mut samples = indexed(1_000_000, |i| Sample::new(i.to_string(), i as f64));
/// // Skips 999 998 samples without making them.
/// let s = samples.nth(999_998).unwrap();
/// assert_eq!(s.key().as_str(), "999998");
/// assert_eq!(samples.len(), 1);
/// ```
pub fn indexed<S, F: FnMut(usize) -> S>(n: usize, make: F) -> Indexed<F> {
    Indexed {
        next: 0,
        end: n,
        make,
    }
}

/// The iterator of [`indexed`].
#[derive(Clone)]
pub struct Indexed<F> {
    next: usize,
    end: usize,
    make: F,
}

impl<F> fmt::Debug for Indexed<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Indexed")
            .field("next", &self.next)
            .field("end", &self.end)
            .finish_non_exhaustive()
    }
}

impl<S, F: FnMut(usize) -> S> Iterator for Indexed<F> {
    type Item = S;

    fn next(&mut self) -> Option<S> {
        if self.next >= self.end {
            return None;
        }
        let i = self.next;
        self.next += 1;
        Some((self.make)(i))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.end - self.next;
        (left, Some(left))
    }

    fn nth(&mut self, n: usize) -> Option<S> {
        self.next = self.next.saturating_add(n).min(self.end);
        self.next()
    }

    fn count(self) -> usize {
        self.end - self.next
    }

    fn last(mut self) -> Option<S> {
        self.next_back()
    }
}

impl<S, F: FnMut(usize) -> S> DoubleEndedIterator for Indexed<F> {
    fn next_back(&mut self) -> Option<S> {
        if self.next >= self.end {
            return None;
        }
        self.end -= 1;
        Some((self.make)(self.end))
    }

    fn nth_back(&mut self, n: usize) -> Option<S> {
        self.end = self.end.saturating_sub(n).max(self.next);
        self.next_back()
    }
}

impl<S, F: FnMut(usize) -> S> ExactSizeIterator for Indexed<F> {}

impl<S, F: FnMut(usize) -> S> FusedIterator for Indexed<F> {}

#[cfg(test)]
mod tests {
    use super::indexed;

    #[test]
    fn gives_what_a_map_gives_and_skips_without_making() {
        let made = std::cell::Cell::new(0);
        let all: Vec<usize> = indexed(10, |i| i * i).collect();
        assert_eq!(all, (0..10).map(|i| i * i).collect::<Vec<_>>());
        let mut it = indexed(10, |i| {
            made.set(made.get() + 1);
            i
        });
        assert_eq!(it.nth(6), Some(6));
        assert_eq!(made.get(), 1, "the six skipped were not made");
        assert_eq!(it.len(), 3);
        assert_eq!(it.nth(5), None, "past the end");
        assert_eq!(it.next(), None);
        assert_eq!(made.get(), 1);
        // From the back, as a map of a range does; count and last make
        // nothing or one.
        let mut it = indexed(10, |i| i);
        assert_eq!(it.next_back(), Some(9));
        assert_eq!(it.nth_back(2), Some(6));
        assert_eq!(it.next(), Some(0));
        assert_eq!(it.clone().rev().collect::<Vec<_>>(), [5, 4, 3, 2, 1]);
        assert_eq!(it.nth_back(9), None);
        assert_eq!(it.next(), None);
        let made = std::cell::Cell::new(0);
        let it = indexed(1_000, |i| {
            made.set(made.get() + 1);
            i
        });
        assert_eq!(it.clone().count(), 1_000);
        assert_eq!(it.last(), Some(999));
        assert_eq!(made.get(), 1);
    }
}
