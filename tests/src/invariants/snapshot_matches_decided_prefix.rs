//! **Snapshots stand for the decided prefix** (Omni-Paxos paper, §3 log
//! compaction; a consequence of SC2 uniform agreement).
//!
//! A server's snapshot replaces the decided entries below its compacted
//! index. Whether the server built it itself from its decided log or
//! installed one shipped by a peer during a log synchronisation, it must
//! equal the snapshot of the cluster's decided log up to that index: a
//! snapshot of anything else means a server applied a different history.

use super::{NodeView, Violation};
use crate::sim::value::{Value, ValueSnapshot};
use omnipaxos::util::NodeId;
use std::collections::HashMap;

/// The property's name.
pub const NAME: &str = "snapshot_matches_decided_prefix";

/// Compares each server's snapshot with the decided log, when it changes.
#[derive(Debug, Default)]
pub struct SnapshotMatchesDecidedPrefix {
    /// Per server, the compacted index whose snapshot was last checked.
    checked: HashMap<NodeId, u64>,
}

impl SnapshotMatchesDecidedPrefix {
    /// Checks the servers whose compacted index moved since the last call.
    pub fn check(&mut self, nodes: &[NodeView<'_>], log: &[Value]) -> Result<(), Violation> {
        for n in nodes {
            let compacted = n.storage.compacted_idx();
            if self.checked.get(&n.pid) == Some(&compacted) {
                continue;
            }
            let snapshot = n.storage.with(|s| s.get_snapshot()).map_err(|e| {
                Violation::new(
                    NAME,
                    format!("server {}: cannot read its snapshot: {e}", n.pid),
                )
            })?;
            // A plain trim keeps no snapshot: nothing to compare.
            if let Some(snapshot) = snapshot {
                let Some(prefix) = log.get(..compacted as usize) else {
                    return Err(Violation::new(
                        NAME,
                        format!(
                            "server {} has a snapshot of 0..{compacted}, past the cluster's decided log (length {})",
                            n.pid,
                            log.len()
                        ),
                    ));
                };
                let want = ValueSnapshot::of(prefix);
                if snapshot != want {
                    return Err(Violation::new(
                        NAME,
                        format!(
                            "server {} holds snapshot {snapshot:?} of 0..{compacted}, but the decided log there gives {want:?}",
                            n.pid
                        ),
                    ));
                }
            }
            self.checked.insert(n.pid, compacted);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::storage::SharedStorage;
    use omnipaxos::storage::{Storage, StorageOp};
    use pretty_assertions::assert_eq;

    fn view(storage: &SharedStorage) -> Vec<NodeView<'_>> {
        vec![NodeView::first(1, None, storage)]
    }

    fn compacted_with(snapshot: ValueSnapshot, idx: u64) -> SharedStorage {
        let storage = SharedStorage::new();
        let mut s = storage.clone();
        s.append_entries((0..idx).map(Value).collect()).unwrap();
        s.write_atomically(vec![
            StorageOp::SetSnapshot(Some(snapshot)),
            StorageOp::Trim(idx),
            StorageOp::SetCompactedIdx(idx),
        ])
        .unwrap();
        storage
    }

    #[test]
    fn a_snapshot_of_the_decided_prefix_passes() {
        let log: Vec<Value> = (0..4).map(Value).collect();
        let storage = compacted_with(ValueSnapshot::of(&log[..3]), 3);
        SnapshotMatchesDecidedPrefix::default()
            .check(&view(&storage), &log)
            .unwrap();
    }

    #[test]
    fn a_snapshot_of_another_history_is_a_violation() {
        let log: Vec<Value> = (0..4).map(Value).collect();
        let storage = compacted_with(ValueSnapshot::of(&[Value(0), Value(2), Value(1)]), 3);
        let err = SnapshotMatchesDecidedPrefix::default()
            .check(&view(&storage), &log)
            .unwrap_err();
        assert_eq!(err.property, NAME);
    }
}
