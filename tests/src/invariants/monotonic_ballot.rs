//! Monotonic ballots: no server ever goes back to an older round.
//!
//! Ballot Leader Election in the Omni-Paxos paper guarantees monotonically
//! increasing ballots, and Sequence Paxos follows the Paxos promise rule: a
//! server that promised ballot `n` never again takes part in a lower ballot,
//! which is why its promise (and the round it last accepted in) must never
//! decrease and must survive a crash. In Paxos a server also never accepts in
//! a round above its promise. Checked per server after every tick:
//!
//! * the Sequence Paxos promise (`get_promise()`) never decreases, across
//!   restarts too: a promise that was reported and then forgotten in a crash
//!   was not persisted before it was acted on;
//! * the persisted promise and accepted round never decrease, and the accepted
//!   round never exceeds the promise;
//! * the ballot of the leader a server follows in Ballot Leader Election
//!   (`get_current_leader_ballot()`) never decreases while the server runs,
//!   and neither does the round number of its own election ballot (its
//!   priority may go down: that is the user's `set_priority`). Election state
//!   need not be persisted, so a restart may start both over.
//!
//! Reconfiguration: ballots belong to a configuration. A server that moves on
//! to the next configuration starts its promise, accepted round and election
//! over there (the old configuration's ballots mean nothing to the new one),
//! so every record above is kept per configuration and starts over when the
//! server's configuration grows; a server going back to an older
//! configuration on the same storage is a violation. A server whose storage
//! the simulator replaced by an empty one starts over too.

use super::{NodeView, Violation};
use omnipaxos::{
    ballot::Ballot,
    util::{ConfigurationId, NodeId},
};
use std::collections::BTreeMap;

/// The property's name, as printed in a violation.
pub const NAME: &str = "monotonic_ballot";

/// The highest ballots seen per server.
#[derive(Debug, Default)]
pub struct MonotonicBallot {
    seen: BTreeMap<NodeId, Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    /// The configuration and storage generation the records belong to.
    config_id: ConfigurationId,
    generation: u32,
    /// The highest in-memory promise reported.
    promise: Ballot,
    /// The highest persisted promise.
    stored_promise: Option<Ballot>,
    /// The highest persisted accepted round.
    stored_accepted: Option<Ballot>,
    /// The incarnation the two fields below belong to.
    incarnation: u32,
    /// The highest leader ballot followed in this incarnation.
    leader: Option<Ballot>,
    /// The highest round number of the server's own election ballot in this incarnation.
    own_round: u32,
}

fn went_back<T: PartialOrd + std::fmt::Debug>(
    pid: NodeId,
    what: &str,
    before: T,
    now: T,
) -> Result<(), Violation> {
    if now < before {
        return Err(Violation::new(
            NAME,
            format!("server {pid}'s {what} went back from {before:?} to {now:?}"),
        ));
    }
    Ok(())
}

impl MonotonicBallot {
    /// Compares every server's ballots with the highest seen before.
    pub fn check(&mut self, nodes: &[NodeView<'_>]) -> Result<(), Violation> {
        for node in nodes {
            let pid = node.pid;
            let seen = self.seen.entry(pid).or_insert_with(|| Seen {
                config_id: node.config_id,
                generation: node.generation,
                ..Seen::default()
            });
            if seen.generation == node.generation && node.config_id < seen.config_id {
                return Err(Violation::new(
                    NAME,
                    format!(
                        "server {pid} went back from configuration {} to {} on the same storage",
                        seen.config_id, node.config_id
                    ),
                ));
            }
            if (seen.config_id, seen.generation) != (node.config_id, node.generation) {
                *seen = Seen {
                    config_id: node.config_id,
                    generation: node.generation,
                    incarnation: node.incarnation,
                    ..Seen::default()
                };
            }

            let stored_promise = node.storage.promise();
            let stored_accepted = node.storage.accepted_round();
            went_back(pid, "stored promise", seen.stored_promise, stored_promise)?;
            went_back(
                pid,
                "stored accepted round",
                seen.stored_accepted,
                stored_accepted,
            )?;
            if stored_accepted > stored_promise {
                return Err(Violation::new(
                    NAME,
                    format!(
                        "server {pid} stored accepted round {stored_accepted:?} above its stored promise {stored_promise:?}"
                    ),
                ));
            }
            seen.stored_promise = stored_promise;
            seen.stored_accepted = stored_accepted;

            let Some(paxos) = node.paxos else { continue };
            let promise = paxos.get_promise();
            went_back(pid, "promise", seen.promise, promise)?;
            seen.promise = promise;

            if seen.incarnation != node.incarnation {
                seen.incarnation = node.incarnation;
                seen.leader = None;
                seen.own_round = 0;
            }
            let leader = paxos.get_current_leader_ballot();
            went_back(pid, "followed leader ballot", seen.leader, leader)?;
            seen.leader = leader;
            let own_round = paxos.get_ui_states().current_ballot.n;
            went_back(pid, "election ballot round", seen.own_round, own_round)?;
            seen.own_round = own_round;
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

    fn check_once(check: &mut MonotonicBallot, storage: &SharedStorage) -> Result<(), Violation> {
        check.check(&[NodeView::first(1, None, storage)])
    }

    #[test]
    fn a_stored_promise_that_goes_back_is_a_violation() {
        let storage = SharedStorage::new();
        let mut check = MonotonicBallot::default();
        storage.clone().set_promise(Ballot::with(2, 0, 1)).unwrap();
        check_once(&mut check, &storage).unwrap();
        storage.clone().set_promise(Ballot::with(1, 0, 3)).unwrap();
        let err = check_once(&mut check, &storage).unwrap_err();
        assert_eq!(err.property, NAME);
    }

    #[test]
    fn ballots_start_over_in_the_next_configuration_only() {
        let storage = SharedStorage::new();
        let mut check = MonotonicBallot::default();
        storage.clone().set_promise(Ballot::with(5, 0, 1)).unwrap();
        check_once(&mut check, &storage).unwrap();
        // Moving on resets the promise; in configuration 2 that is allowed.
        storage.clone().set_promise(Ballot::default()).unwrap();
        let mut view = NodeView::first(1, None, &storage);
        view.config_id = 2;
        check.check(&[view]).unwrap();
        storage.clone().set_promise(Ballot::with(2, 0, 1)).unwrap();
        let mut view = NodeView::first(1, None, &storage);
        view.config_id = 2;
        check.check(&[view]).unwrap();
        // Within configuration 2 the promise still may not go back...
        storage.clone().set_promise(Ballot::with(1, 0, 1)).unwrap();
        let mut view = NodeView::first(1, None, &storage);
        view.config_id = 2;
        assert_eq!(check.check(&[view]).unwrap_err().property, NAME);
        // ...and the server may not go back to configuration 1.
        let err = check_once(&mut check, &storage).unwrap_err();
        assert_eq!(err.property, NAME);
    }

    #[test]
    fn an_accepted_round_above_the_promise_is_a_violation() {
        let storage = SharedStorage::new();
        storage.clone().set_promise(Ballot::with(1, 0, 1)).unwrap();
        storage
            .clone()
            .set_accepted_round(Ballot::with(2, 0, 1))
            .unwrap();
        let err = check_once(&mut MonotonicBallot::default(), &storage).unwrap_err();
        assert_eq!(err.property, NAME);
    }
}
