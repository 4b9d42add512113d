//! Unions are accepted: `Entry` has no methods, so the fields are never read.

use omnipaxos::storage::{Entry, NoSnapshot};
use omnipaxos::macros::Entry;
use std::fmt;

#[derive(Clone, Copy, Entry)]
union Word {
    int: u64,
    float: f64,
}

impl fmt::Debug for Word {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Word")
    }
}

fn snapshot_is<T: Entry<Snapshot = S>, S>() {}

fn main() {
    snapshot_is::<Word, NoSnapshot>();
    let _ = Word { int: 1 };
    let _ = Word { float: 1.0 };
}
