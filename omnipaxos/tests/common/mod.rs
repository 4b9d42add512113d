//! What several test files share.

use omnipaxos::storage::{Entry, Snapshot};

/// An entry whose snapshot is the sum of the entries, for log syncs that
/// ship a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct N(pub(crate) u64);

/// The snapshot of [`N`] entries: their sum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Sum(pub(crate) u64);

impl Entry for N {
    type Snapshot = Sum;
}

impl Snapshot<N> for Sum {
    fn create(entries: &[N]) -> Self {
        Self(entries.iter().map(|e| e.0).sum())
    }

    fn merge(&mut self, delta: Self) {
        self.0 += delta.0;
    }

    fn use_snapshots() -> bool {
        true
    }
}
