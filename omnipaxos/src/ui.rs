//! A read-only picture of a server's state, for dashboards and debugging.

use crate::{
    ballot::Ballot,
    sequence_paxos::{Phase, Role},
    util::{ConfigurationId, NodeId},
};

/// What [`OmniPaxos::get_ui_states`](crate::OmniPaxos::get_ui_states) returns:
/// a copy of the state a dashboard shows, taken at the time of the call.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct OmniPaxosStates {
    /// This server.
    pub pid: NodeId,
    /// The configuration this server runs in, so that a dashboard showing
    /// several servers can tell one that has not moved on yet.
    pub configuration_id: ConfigurationId,
    /// The leader election heartbeat round in progress; each peer's
    /// [`PeerState::last_heartbeat_round`] is measured against it.
    pub heartbeat_round: u32,
    /// This server's own ballot in leader election.
    pub current_ballot: Ballot,
    /// The leader this server follows (possibly itself), if any.
    pub current_leader: Option<Ballot>,
    /// Whether this server leads or follows in Sequence Paxos.
    pub role: Role,
    /// Where this server is in Sequence Paxos.
    pub phase: Phase,
    /// The highest ballot promised.
    pub promise: Ballot,
    /// The ballot in which the log was last accepted.
    pub accepted_round: Option<Ballot>,
    /// Entries below this index are decided.
    pub decided_idx: u64,
    /// The length of the local log.
    pub accepted_idx: u64,
    /// Entries below this index are compacted.
    pub compacted_idx: u64,
    /// Whether this server heard from a quorum in the last heartbeat round.
    pub quorum_connected: bool,
    /// One row per peer.
    pub cluster_state: Vec<PeerState>,
    /// Whether a storage write failed and the server stopped acting.
    pub storage_failed: bool,
}

/// What one server knows of a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct PeerState {
    /// The peer.
    pub pid: NodeId,
    /// Whether the peer answered the last heartbeat round: the link works
    /// both ways.
    pub connected: bool,
    /// This server's heartbeat round in which a heartbeat message (request
    /// or reply) from the peer last arrived; `None` if none has since this
    /// server started. Unlike `connected` it shows one direction: a round at
    /// or just below [`OmniPaxosStates::heartbeat_round`] means the peer's
    /// messages reach this server, whether or not this server's reach the
    /// peer.
    pub last_heartbeat_round: Option<u32>,
    /// How much of the log the peer accepted; known only on the leader.
    pub accepted_idx: Option<u64>,
}
