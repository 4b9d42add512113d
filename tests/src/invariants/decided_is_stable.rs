//! Integrity: what a server decided stays decided, unchanged.
//!
//! The Omni-Paxos paper requires of Sequence Paxos **SC3 (Integrity)**: if a
//! server decides a sequence `u` and later decides `v`, then `u` is a prefix of
//! `v`. Here that means, for every server:
//!
//! * its decided index never decreases, also across a crash and restart (the
//!   server's storage survives, so a decided index it reported must have been
//!   persisted before it was reported). One exception: with
//!   `defer_leader_sync` a raised decided index is written lazily, and a
//!   crash that lost such a write takes the server back to the decided index
//!   its storage kept (the simulator says so); the entries above it are
//!   checked again as the server decides them anew;
//! * reading an index below the decided index gives a `Decided` entry;
//! * a storage write that replaces or trims entries (the only writes that can
//!   change existing indices) leaves every index below the server's decided
//!   index holding the entry the cluster decided there.
//!
//! Reconfiguration: a server that moves on to the next configuration on the
//! same storage reported decided index `L + 1` (its log and the stop-sign at
//! `L`) and reports `L` in the new configuration, whose log continues at `L`.
//! That one step down, exactly from the old configuration's stop-sign, is
//! allowed. A server that missed the stop-sign's decision and learned it from
//! the next configuration moves on from the decided index it had (at most
//! `L`), without a step down, and pulls the rest of the old log in the new
//! configuration. Any other decrease, a decrease across more than one
//! configuration, or a server going back to an older configuration is a
//! violation. A server whose storage the simulator replaced by an empty one
//! (a new generation) is checked as a new server.

use super::{ConfigHistory, NodeView, Violation};
use crate::sim::value::Value;
use omnipaxos::util::{ConfigurationId, NodeId};
use std::collections::BTreeMap;

/// The property's name, as printed in a violation.
pub const NAME: &str = "decided_is_stable";

/// How far each server's decided log has been checked.
#[derive(Debug, Default)]
pub struct DecidedIsStable {
    /// Per server, the highest decided index it has reported, in which
    /// configuration and on which generation of its storage. Kept across
    /// crashes: the restarted server must report at least as much.
    checked: BTreeMap<NodeId, Checked>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Checked {
    config_id: ConfigurationId,
    generation: u32,
    up_to: u64,
}

impl DecidedIsStable {
    /// The decided index of `pid` that has been checked so far (0 at first).
    pub fn checked_up_to(&self, pid: NodeId) -> u64 {
        self.checked.get(&pid).map_or(0, |c| c.up_to)
    }

    /// Fails if `node`'s decided index went back from the one checked before
    /// to `now`, other than by moving on to the next configuration (see the
    /// module doc). Returns the index from which `node`'s decided log is new.
    pub fn check_decided_idx(
        &mut self,
        node: &NodeView<'_>,
        now: u64,
        configs: &ConfigHistory,
    ) -> Result<u64, Violation> {
        let pid = node.pid;
        let fresh = Checked {
            config_id: node.config_id,
            generation: node.generation,
            up_to: 0,
        };
        let seen = self.checked.entry(pid).or_insert(fresh);
        if node.generation != seen.generation {
            // A new, empty storage: a new server as far as integrity goes.
            *seen = fresh;
        } else if node.config_id < seen.config_id {
            return Err(Violation::new(
                NAME,
                format!(
                    "server {pid} went back from configuration {} to {} on the same storage",
                    seen.config_id, node.config_id
                ),
            ));
        } else if node.config_id > seen.config_id {
            let old = seen.config_id;
            let stop = configs.stop_idx(old);
            // Decided the stop-sign at `l` and continues from `l`, or learned
            // of it and continues from what it had decided (see the module doc).
            let continues_from = stop.and_then(|l| {
                if seen.up_to == l + 1 {
                    Some(l)
                } else {
                    (seen.up_to <= l).then_some(seen.up_to)
                }
            });
            let moved_on =
                node.config_id == old + 1 && continues_from.is_some_and(|from| now >= from);
            if !moved_on {
                return Err(Violation::new(
                    NAME,
                    format!(
                        "server {pid} moved from configuration {old} (decided index {}) to {} \
                         (decided index {now}), but configuration {old}'s stop-sign is at {stop:?}: \
                         only a server whose configuration decided it may continue, from what it decided",
                        seen.up_to, node.config_id
                    ),
                ));
            }
            seen.config_id = node.config_id;
            seen.up_to = continues_from.unwrap_or_default();
        }
        let before = seen.up_to;
        if now < before {
            return Err(Violation::new(
                NAME,
                format!("server {pid}'s decided index went back from {before} to {now}"),
            ));
        }
        Ok(before)
    }

    /// Lowers what `pid` must report to `to`: a crash lost a decided index
    /// written lazily (`defer_leader_sync`), and the storage holds `to`.
    /// The entries in between are checked again when it decides them anew,
    /// against the cluster's decided log.
    pub fn went_back(&mut self, pid: NodeId, to: u64) {
        if let Some(slot) = self.checked.get_mut(&pid) {
            slot.up_to = slot.up_to.min(to);
        }
    }

    /// Records that `pid` was checked up to decided index `to`.
    pub fn advance(&mut self, pid: NodeId, to: u64) {
        let slot = self.checked.entry(pid).or_default();
        slot.up_to = slot.up_to.max(to);
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
            // A server that holds its configuration's stop-sign has decided
            // the stop-sign's slot (its log length) too; that slot holds no
            // entry, and the next configuration's entry there is not its to
            // hold. Only that one index is left out.
            let stopsign_slot = node.storage.with(|st| {
                st.get_stopsign()
                    .ok()
                    .flatten()
                    .and_then(|_| st.get_log_len().ok())
            });
            let decided = match stopsign_slot {
                Some(slot) if decided == slot + 1 => slot,
                _ => decided,
            };
            let compacted = node.storage.compacted_idx();
            if compacted > decided {
                return Err(Violation::new(
                    NAME,
                    format!(
                        "server {pid} compacted its log up to {compacted}, past its decided \
                         index {decided}: a write from index {from} compacted undecided entries"
                    ),
                ));
            }
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

    fn history_ending_at(stop: u64) -> ConfigHistory {
        let mut h = ConfigHistory::default();
        h.add(1, &[7, 8, 9], 2);
        let mut check = super::super::decided_prefix_agreement::DecidedPrefixAgreement::default();
        let batch = super::super::NewlyDecided {
            pid: 7,
            config_id: 1,
            entries: (0..stop).map(|i| (i, Value(i))).collect(),
            stopsign: Some((
                stop,
                omnipaxos::util::StopSign::with(2, vec![7, 8, 9], None),
            )),
        };
        check.check_and_extend(&batch, &mut h).unwrap();
        h.add(2, &[7, 8, 9], 2);
        h
    }

    fn observe(
        check: &mut DecidedIsStable,
        storage: &SharedStorage,
        config_id: u32,
        generation: u32,
        now: u64,
        h: &ConfigHistory,
    ) -> Result<u64, Violation> {
        let mut view = NodeView::first(7, None, storage);
        view.config_id = config_id;
        view.generation = generation;
        let from = check.check_decided_idx(&view, now, h)?;
        check.advance(7, now);
        Ok(from)
    }

    #[test]
    fn a_shrinking_decided_index_is_a_violation() {
        let (storage, h) = (SharedStorage::new(), history_ending_at(3));
        let mut check = DecidedIsStable::default();
        observe(&mut check, &storage, 1, 0, 3, &h).unwrap();
        let err = observe(&mut check, &storage, 1, 0, 2, &h).unwrap_err();
        assert_eq!(err.property, NAME);
    }

    #[test]
    fn moving_on_from_the_stop_sign_may_step_back_by_exactly_one() {
        let (storage, h) = (SharedStorage::new(), history_ending_at(3));
        let mut check = DecidedIsStable::default();
        // Decided 0..3 and the stop-sign at 3, then continues at 3.
        observe(&mut check, &storage, 1, 0, 4, &h).unwrap();
        assert_eq!(observe(&mut check, &storage, 2, 0, 3, &h), Ok(3));
        observe(&mut check, &storage, 2, 0, 5, &h).unwrap();
        // Going back in the new configuration, or to the old one, is not allowed.
        let err = observe(&mut check, &storage, 2, 0, 4, &h).unwrap_err();
        assert_eq!(err.property, NAME);
        let err = observe(&mut check, &storage, 1, 0, 5, &h).unwrap_err();
        assert_eq!(err.property, NAME);
    }

    #[test]
    fn moving_on_below_what_was_decided_is_a_violation() {
        let h = history_ending_at(3);
        // Decided up to 2, without the stop-sign: it learned of the
        // stop-sign from the next configuration, and continues from 2...
        let storage = SharedStorage::new();
        let mut check = DecidedIsStable::default();
        observe(&mut check, &storage, 1, 0, 2, &h).unwrap();
        assert_eq!(observe(&mut check, &storage, 2, 0, 2, &h), Ok(2));
        // ...but not from below what it decided.
        let mut check = DecidedIsStable::default();
        observe(&mut check, &storage, 1, 0, 3, &h).unwrap();
        let err = observe(&mut check, &storage, 2, 0, 2, &h).unwrap_err();
        assert_eq!(err.property, NAME);
        // Decided the stop-sign but continues below its index.
        let mut check = DecidedIsStable::default();
        observe(&mut check, &storage, 1, 0, 4, &h).unwrap();
        let err = observe(&mut check, &storage, 2, 0, 2, &h).unwrap_err();
        assert_eq!(err.property, NAME);
        // A new generation of storage starts over from 0.
        let mut check = DecidedIsStable::default();
        observe(&mut check, &storage, 1, 0, 2, &h).unwrap();
        assert_eq!(observe(&mut check, &storage, 2, 1, 0, &h), Ok(0));
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
        let view = [NodeView::first(7, None, &storage)];
        let log = [Value(1), Value(2)];
        // Rewriting the undecided tail (here: nothing) is fine...
        check.check_rewrites(&view, &[(7, 2)], &log).unwrap();
        // ...but replacing index 1 is not.
        storage.clone().append_on_prefix(1, vec![Value(5)]).unwrap();
        let err = check.check_rewrites(&view, &[(7, 1)], &log).unwrap_err();
        assert_eq!(err.property, NAME);
    }
}
