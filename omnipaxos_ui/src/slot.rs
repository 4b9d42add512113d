//! [`Slot`]: how states cross from the node to the terminal thread without
//! ever making the node wait for a draw.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Holds at most one value: a put replaces the value not yet taken.
///
/// The node's side ([`OmniPaxosUI::tick`](crate::OmniPaxosUI::tick)) only
/// puts; the terminal thread takes once per frame and draws without holding
/// the lock. So the node waits at most for another put or a take (a pointer
/// swap), never for drawing, and when drawing falls behind, states are
/// skipped instead of piling up.
#[derive(Debug)]
pub(crate) struct Slot<T> {
    inner: Mutex<SlotInner<T>>,
}

#[derive(Debug)]
struct SlotInner<T> {
    value: Option<T>,
    /// How many values were replaced before anyone took them.
    skipped: u64,
}

impl<T> Slot<T> {
    pub(crate) fn new() -> Self {
        Self {
            inner: Mutex::new(SlotInner {
                value: None,
                skipped: 0,
            }),
        }
    }

    /// Stores `value`, dropping the one not yet taken, if any.
    pub(crate) fn put(&self, value: T) {
        let old = {
            let mut inner = self.lock();
            let old = inner.value.replace(value);
            if old.is_some() {
                inner.skipped += 1;
            }
            old
        };
        // Dropped outside the lock: a large state's memory is freed on the
        // caller's time, not while the other side waits.
        drop(old);
    }

    /// Takes the value, if one was put since the last take.
    pub(crate) fn take(&self) -> Option<T> {
        self.lock().value.take()
    }

    /// How many values were dropped unread so far.
    pub(crate) fn skipped(&self) -> u64 {
        self.lock().skipped
    }

    fn lock(&self) -> MutexGuard<'_, SlotInner<T>> {
        // The critical sections above cannot panic, so a poisoned lock still
        // holds a consistent value.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_put_replaces_the_value_not_yet_taken_and_counts_it_as_skipped() {
        let slot = Slot::new();
        slot.put(1);
        slot.put(2);
        slot.put(3);
        assert_eq!(slot.take(), Some(3));
        assert_eq!(slot.take(), None);
        assert_eq!(slot.skipped(), 2);
        slot.put(4);
        assert_eq!(slot.take(), Some(4));
        assert_eq!(slot.skipped(), 2, "a value taken in time is not skipped");
    }
}
