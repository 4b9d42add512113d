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
//!
//! Reconfiguration: an index is decided by one configuration (the one whose
//! range, from its start to its stop-sign, holds it), so its holders are
//! counted among that configuration's servers against that configuration's
//! write quorum. A server that moved on from that configuration counts
//! whatever its log holds: it no longer votes there, so it cannot be in a
//! read quorum that misses the entry, and a server that missed part of the
//! old log drops what it cannot tell is decided when it moves on, then pulls
//! the decided log (the new configuration's servers are checked by
//! agreement and stability). With `d` servers moved on, `q` holders and a
//! read quorum `r` among `n`, the servers still voting without the entry
//! number `n - q - d`; requiring `q + d` to reach the write quorum `w` keeps
//! that below `r` (as `r + w > n`).
//!
//! The storages of servers that left count as long as the simulator keeps
//! them (it keeps every storage to the end of the run), and
//! so does the storage a server had before the simulator replaced it by an
//! empty one: losing a decided entry that way is not what this property is
//! about (the server rejoins by pulling the decided log), and counting the
//! old storage keeps the check about the protocol's own writes.

use super::{ConfigHistory, NodeView, Violation};
use crate::sim::{storage::SharedStorage, value::Value};
use omnipaxos::util::NodeId;

/// The property's name, as printed in a violation.
pub const NAME: &str = "no_lost_decided_entry";

/// The check; the quorum sizes come from the [`ConfigHistory`].
#[derive(Debug, Default)]
pub struct NoLostDecidedEntry;

fn holds(storage: &SharedStorage, idx: u64, want: Value) -> bool {
    storage.compacted_idx() > idx || storage.entry_at(idx) == Some(want)
}

impl NoLostDecidedEntry {
    /// Counts the holders of each index of `log` from `first_new` on, and of
    /// each index at or above the lowest one in `rewrites`.
    pub fn check(
        &self,
        nodes: &[NodeView<'_>],
        log: &[Value],
        first_new: u64,
        rewrites: &[(NodeId, u64)],
        configs: &ConfigHistory,
    ) -> Result<(), Violation> {
        let len = log.len() as u64;
        let recheck_from = rewrites.iter().map(|&(_, idx)| idx).min().unwrap_or(len);
        let from = first_new.min(recheck_from);
        for idx in from..len {
            let want = log[idx as usize];
            let Some((config_id, config)) = configs.deciding(idx) else {
                return Err(Violation::new(
                    NAME,
                    format!("decided {want:?} at index {idx} lies in no configuration's range"),
                ));
            };
            let holders: Vec<NodeId> = nodes
                .iter()
                .filter(|n| config.members.contains(&n.pid))
                .filter(|n| {
                    n.config_id > config_id
                        || holds(n.storage, idx, want)
                        || n.past_storages.iter().any(|s| holds(s, idx, want))
                })
                .map(|n| n.pid)
                .collect();
            if holders.len() < config.write_quorum {
                return Err(Violation::new(
                    NAME,
                    format!(
                        "decided {want:?} at index {idx} is stored by {holders:?} only (counting \
                         servers that moved on from its configuration); a write quorum of its \
                         configuration {:?} is {}",
                        config.members, config.write_quorum
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
            .map(|(pid, storage)| NodeView::first(pid, None, storage))
            .collect()
    }

    fn three() -> ConfigHistory {
        let mut h = ConfigHistory::default();
        h.add(1, &[1, 2, 3], 2);
        h
    }

    #[test]
    fn an_index_counts_the_quorum_of_the_configuration_that_decided_it() {
        // Configuration 1 {1, 2, 3} decides index 0 and ends with its
        // stop-sign at 1; configuration 2 {1, 4, 5} decides index 1.
        let mut h = three();
        let mut agreement =
            super::super::decided_prefix_agreement::DecidedPrefixAgreement::default();
        let batch = super::super::NewlyDecided {
            pid: 1,
            config_id: 1,
            entries: vec![(0, Value(1))],
            stopsign: Some((1, omnipaxos::util::StopSign::with(2, vec![1, 4, 5], None))),
        };
        agreement.check_and_extend(&batch, &mut h).unwrap();
        h.add(2, &[1, 4, 5], 2);
        let storages: Vec<SharedStorage> = (0..5).map(|_| SharedStorage::new()).collect();
        // Index 0 on servers 1 and 2 (a quorum of configuration 1); index 1
        // on servers 1 and 2: server 2 is not in configuration 2.
        for s in &storages[..2] {
            s.clone().append_entries(vec![Value(1), Value(2)]).unwrap();
        }
        let log = [Value(1), Value(2)];
        let err = NoLostDecidedEntry
            .check(&views(&storages), &log, 0, &[], &h)
            .unwrap_err();
        assert_eq!(err.property, NAME);
        assert!(err.detail.contains("index 1"), "{}", err.detail);
        // Server 4 holding index 1 makes a quorum of configuration 2.
        storages[3]
            .clone()
            .append_entries(vec![Value(1), Value(2)])
            .unwrap();
        NoLostDecidedEntry
            .check(&views(&storages), &log, 0, &[], &h)
            .unwrap();
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
        NoLostDecidedEntry
            .check(&views(&storages), &[Value(1)], 0, &[], &three())
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
        let err = NoLostDecidedEntry
            .check(&views(&storages), &[Value(1)], 0, &[], &three())
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
        let check = NoLostDecidedEntry;
        check
            .check(&views(&storages), &[Value(1), Value(2)], 0, &[], &three())
            .unwrap();
        // Server 2 replaces index 0: only one storage still holds Value(1).
        storages[1]
            .clone()
            .append_on_prefix(0, vec![Value(9), Value(2)])
            .unwrap();
        assert_eq!(storages[1].take_rewritten_from(), Some(0));
        let err = check
            .check(
                &views(&storages),
                &[Value(1), Value(2)],
                2,
                &[(2, 0)],
                &three(),
            )
            .unwrap_err();
        assert_eq!(err.property, NAME);
    }
}
