//! Leader uniqueness: one ballot, one leader, ever.
//!
//! Ballot Leader Election in the Omni-Paxos paper elects leaders with unique
//! ballots (a ballot carries its owner's pid), and Sequence Paxos lets a
//! server lead a ballot only after a majority promised it. Two servers leading
//! the same ballot could each get entries accepted in it, which is exactly the
//! ambiguity Paxos' proof excludes. Several servers may believe they lead at
//! once, but only in different ballots.
//!
//! After every tick the check looks at each running server that reports
//! `is_leader()`. The ballot it leads is its promise (a leader that promised
//! a higher ballot has stepped down). That ballot must be owned by the server
//! itself, and across the whole run no ballot may be led by two servers.
//!
//! Reconfiguration: every configuration runs its own elections, and ballots
//! start over in each, so uniqueness is per configuration: a ballot is
//! recorded with the configuration it was led in.

use super::{NodeView, Violation};
use omnipaxos::{
    ballot::Ballot,
    util::{ConfigurationId, NodeId},
};
use std::collections::BTreeMap;

/// The property's name, as printed in a violation.
pub const NAME: &str = "single_leader_per_ballot";

/// Every ballot that was led, and by whom.
#[derive(Debug, Default)]
pub struct SingleLeaderPerBallot {
    /// (configuration, ballot) -> the server that led it. Never forgets:
    /// uniqueness is over the whole run.
    led_by: BTreeMap<(ConfigurationId, Ballot), NodeId>,
}

impl SingleLeaderPerBallot {
    /// Records the current leaders and fails on a second leader of a ballot.
    pub fn check(&mut self, nodes: &[NodeView<'_>]) -> Result<(), Violation> {
        for node in nodes {
            let Some(paxos) = node.paxos else { continue };
            if !paxos.is_leader() {
                continue;
            }
            let ballot = paxos.get_promise();
            if ballot.pid != node.pid {
                return Err(Violation::new(
                    NAME,
                    format!(
                        "server {} reports is_leader() while its promise is {ballot:?}, a ballot of server {}",
                        node.pid, ballot.pid
                    ),
                ));
            }
            let leader = *self
                .led_by
                .entry((node.config_id, ballot))
                .or_insert(node.pid);
            if leader != node.pid {
                return Err(Violation::new(
                    NAME,
                    format!(
                        "ballot {ballot:?} of configuration {} is led by server {} and by server {leader}",
                        node.config_id, node.pid
                    ),
                ));
            }
        }
        Ok(())
    }

    /// How many distinct ballots have been led so far.
    pub fn ballots_led(&self) -> usize {
        self.led_by.len()
    }
}
