//! Durability: every decided entry is held by a majority of storages.
//!
//! Sequence Paxos decides an entry only once a majority has accepted it, and
//! a server accepts only what it has persisted. The agreement argument of the
//! Omni-Paxos paper (SC2, through the intersection of the new leader's Prepare
//! quorum with every deciding quorum) rests on this: a later leader finds each
//! decided entry in at least one promise. If a storage lost or replaced an
//! entry so that fewer than a majority still held it, a later leader could miss
//! it and decide something else in its place.
//!
//! The check counts, for each decided index, the storages of the whole
//! configuration (running or crashed: a crashed server's storage still
//! counts, it will be back) that hold the decided entry there. A storage
//! whose log was compacted past the index counts too: compaction only removes
//! entries every server has accepted.
//!
//! Support for an entry only drops when a storage overwrites or trims it, so
//! besides newly decided indices the check re-counts only the indices at and
//! above the lowest one a storage rewrote since the last check.

use super::{NodeView, Violation};
use crate::sim::value::Value;
use omnipaxos::util::NodeId;

/// The property's name, as printed in a violation.
pub const NAME: &str = "no_lost_decided_entry";

/// The quorum size the check demands.
#[derive(Debug)]
pub struct NoLostDecidedEntry {
    /// The write quorum: how many storages must hold a decided entry.
    majority: usize,
}

impl NoLostDecidedEntry {
    /// Checks a configuration whose write quorum is `write_quorum` servers.
    pub fn new(write_quorum: usize) -> Self {
        Self {
            majority: write_quorum,
        }
    }

    /// Counts the holders of each index of `log` from `first_new` on, and of
    /// each index at or above the lowest one in `rewrites`.
    pub fn check(
        &self,
        nodes: &[NodeView<'_>],
        log: &[Value],
        first_new: u64,
        rewrites: &[(NodeId, u64)],
    ) -> Result<(), Violation> {
        let len = log.len() as u64;
        let recheck_from = rewrites.iter().map(|&(_, idx)| idx).min().unwrap_or(len);
        let from = first_new.min(recheck_from);
        for idx in from..len {
            let want = log[idx as usize];
            let holders: Vec<NodeId> = nodes
                .iter()
                .filter(|n| {
                    n.storage.compacted_idx() > idx || n.storage.entry_at(idx) == Some(want)
                })
                .map(|n| n.pid)
                .collect();
            if holders.len() < self.majority {
                return Err(Violation::new(
                    NAME,
                    format!(
                        "decided {want:?} at index {idx} is stored by {holders:?} only; a majority is {}",
                        self.majority
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::storage::SharedStorage;
    use omnipaxos::storage::Storage;
    use pretty_assertions::assert_eq;

    fn views(storages: &[SharedStorage]) -> Vec<NodeView<'_>> {
        (1..)
            .zip(storages)
            .map(|(pid, storage)| NodeView {
                pid,
                paxos: None,
                storage,
                incarnation: 0,
            })
            .collect()
    }

    #[test]
    fn an_entry_on_a_majority_of_storages_passes() {
        let storages = [
            SharedStorage::new(),
            SharedStorage::new(),
            SharedStorage::new(),
        ];
        for s in &storages[..2] {
            s.clone().append_entry(Value(1)).unwrap();
        }
        NoLostDecidedEntry::new(2)
            .check(&views(&storages), &[Value(1)], 0, &[])
            .unwrap();
    }

    #[test]
    fn an_entry_on_a_minority_of_storages_is_a_violation() {
        let storages = [
            SharedStorage::new(),
            SharedStorage::new(),
            SharedStorage::new(),
        ];
        storages[0].clone().append_entry(Value(1)).unwrap();
        let err = NoLostDecidedEntry::new(2)
            .check(&views(&storages), &[Value(1)], 0, &[])
            .unwrap_err();
        assert_eq!(err.property, NAME);
    }

    #[test]
    fn a_rewrite_below_the_new_entries_rechecks_old_indices() {
        let storages = [
            SharedStorage::new(),
            SharedStorage::new(),
            SharedStorage::new(),
        ];
        for s in &storages[..2] {
            s.clone().append_entries(vec![Value(1), Value(2)]).unwrap();
        }
        let check = NoLostDecidedEntry::new(2);
        check
            .check(&views(&storages), &[Value(1), Value(2)], 0, &[])
            .unwrap();
        // Server 2 replaces index 0: only one storage still holds Value(1).
        storages[1]
            .clone()
            .append_on_prefix(0, vec![Value(9), Value(2)])
            .unwrap();
        assert_eq!(storages[1].take_rewritten_from(), Some(0));
        let err = check
            .check(&views(&storages), &[Value(1), Value(2)], 2, &[(2, 0)])
            .unwrap_err();
        assert_eq!(err.property, NAME);
    }
}
