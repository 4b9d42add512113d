//! Integrity: what a server decided stays decided, unchanged.
//!
//! The Omni-Paxos paper requires of Sequence Paxos **SC3 (Integrity)**: if a
//! server decides a sequence `u` and later decides `v`, then `u` is a prefix of
//! `v`. Here that means, for every server:
//!
//! * its decided index never decreases, also across a crash and restart (the
//!   server's storage survives, so a decided index it reported must have been
//!   persisted before it was reported);
//! * reading an index below the decided index gives a `Decided` entry;
//! * a storage write that replaces or trims entries (the only writes that can
//!   change existing indices) leaves every index below the server's decided
//!   index holding the entry the cluster decided there.

use super::{NodeView, Violation};
use crate::sim::value::Value;
use omnipaxos::util::NodeId;
use std::collections::BTreeMap;

/// The property's name, as printed in a violation.
pub const NAME: &str = "decided_is_stable";

/// How far each server's decided log has been checked.
#[derive(Debug, Default)]
pub struct DecidedIsStable {
    /// Per server, the highest decided index it has reported. Kept across
    /// crashes: the restarted server must report at least as much.
    checked_up_to: BTreeMap<NodeId, u64>,
}

impl DecidedIsStable {
    /// The decided index of `pid` that has been checked so far (0 at first).
    pub fn checked_up_to(&self, pid: NodeId) -> u64 {
        self.checked_up_to.get(&pid).copied().unwrap_or(0)
    }

    /// Fails if `pid`'s decided index went from `before` down to `now`.
    pub fn check_decided_idx(&self, pid: NodeId, before: u64, now: u64) -> Result<(), Violation> {
        if now < before {
            return Err(Violation::new(
                NAME,
                format!("server {pid}'s decided index went back from {before} to {now}"),
            ));
        }
        Ok(())
    }

    /// Records that `pid` was checked up to decided index `to`.
    pub fn advance(&mut self, pid: NodeId, to: u64) {
        let slot = self.checked_up_to.entry(pid).or_insert(0);
        *slot = (*slot).max(to);
    }

    /// For each storage that replaced or trimmed entries from some index on,
    /// checks that the entries below the server's decided index still match
    /// the cluster's decided `log`.
    pub fn check_rewrites(
        &self,
        nodes: &[NodeView<'_>],
        rewrites: &[(NodeId, u64)],
        log: &[Value],
    ) -> Result<(), Violation> {
        for &(pid, from) in rewrites {
            let decided = self.checked_up_to(pid).min(log.len() as u64);
            if from >= decided {
                continue;
            }
            let node = nodes
                .iter()
                .find(|n| n.pid == pid)
                .expect("a rewrite is reported only by a storage of the cluster");
            let compacted = node.storage.compacted_idx();
            let start = from.max(compacted);
            let stored = node.storage.entries(start, decided);
            for (idx, want) in (start..decided).zip(&log[start as usize..decided as usize]) {
                let got = stored.get((idx - start) as usize);
                if got != Some(want) {
                    return Err(Violation::new(
                        NAME,
                        format!(
                            "server {pid} had decided up to {decided}, but a storage write from \
                             index {from} left index {idx} holding {got:?} instead of the decided {want:?}"
                        ),
                    ));
                }
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

    #[test]
    fn a_shrinking_decided_index_is_a_violation() {
        let check = DecidedIsStable::default();
        check.check_decided_idx(1, 3, 3).unwrap();
        let err = check.check_decided_idx(1, 3, 2).unwrap_err();
        assert_eq!(err.property, NAME);
    }

    #[test]
    fn overwriting_a_decided_index_is_a_violation() {
        let storage = SharedStorage::new();
        storage
            .clone()
            .append_entries(vec![Value(1), Value(2)])
            .unwrap();
        let mut check = DecidedIsStable::default();
        check.advance(7, 2);
        let view = [NodeView {
            pid: 7,
            paxos: None,
            storage: &storage,
            incarnation: 0,
        }];
        let log = [Value(1), Value(2)];
        // Rewriting the undecided tail (here: nothing) is fine...
        check.check_rewrites(&view, &[(7, 2)], &log).unwrap();
        // ...but replacing index 1 is not.
        storage.clone().append_on_prefix(1, vec![Value(5)]).unwrap();
        let err = check.check_rewrites(&view, &[(7, 1)], &log).unwrap_err();
        assert_eq!(err.property, NAME);
    }
}
