//! [`Ring`]: a history with a fixed capacity, for the dashboard's charts,
//! events and log lines.

use std::collections::VecDeque;

/// The last `capacity` values pushed, oldest first.
///
/// Every history the dashboard keeps is one of these, so that a dashboard left
/// running for days holds as much as one started a minute ago.
#[derive(Clone, Debug)]
pub(crate) struct Ring<T> {
    items: VecDeque<T>,
    /// At least 1 (see [`Ring::with_capacity`]).
    capacity: usize,
}

impl<T> Ring<T> {
    /// An empty ring that keeps `capacity` values; a capacity of 0 is taken
    /// as 1, since a history that can hold nothing would only hide bugs in
    /// the caller's arithmetic.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            items: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Appends `item`, dropping the oldest value when the ring is full.
    pub(crate) fn push(&mut self, item: T) {
        if self.items.len() == self.capacity {
            self.items.pop_front();
        }
        self.items.push_back(item);
    }

    /// The values, oldest first.
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = &T> + ExactSizeIterator {
        self.items.iter()
    }

    /// The newest value.
    pub(crate) fn last(&self) -> Option<&T> {
        self.items.back()
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_ring_drops_its_oldest_value_and_keeps_its_capacity() {
        let mut ring = Ring::with_capacity(3);
        for i in 0..5 {
            ring.push(i);
        }
        assert_eq!(ring.iter().copied().collect::<Vec<_>>(), vec![2, 3, 4]);
        assert_eq!(ring.len(), 3);
        assert_eq!(ring.last(), Some(&4));
    }

    #[test]
    fn a_ring_of_capacity_zero_keeps_the_newest_value() {
        let mut ring = Ring::with_capacity(0);
        ring.push('a');
        ring.push('b');
        assert_eq!(ring.iter().copied().collect::<Vec<_>>(), vec!['b']);
    }
}
