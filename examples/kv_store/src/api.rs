//! The JSON bodies of the HTTP client API, shared by the server and the client.
//!
//! ```text
//! GET    /kv/{key}[?stale=true]  -> 200 GetResponse | 404 ErrorBody (key_not_found)
//! PUT    /kv/{key}   PutRequest  -> 200 WriteResponse
//! DELETE /kv/{key}               -> 200 WriteResponse
//! POST   /kv/{key}/cas CasRequest-> 200 WriteResponse (success says whether it swapped)
//! GET    /kv?prefix=P[&limit=N][&stale=true] -> 200 ScanResponse
//! GET    /status                 -> 200 StatusResponse
//! GET    /members                -> 200 MembersResponse
//! POST   /members MembersChange  -> 200 MembersResponse (the new configuration)
//! GET    /metrics                -> 200 text/plain (the Prometheus text format)
//! ```
//!
//! Reads are linearizable unless `stale=true`. Every error is an
//! [`ErrorBody`] with a 4xx (the request's fault) or 5xx status.
//!
//! `GET /metrics` is for a Prometheus server to scrape; `GET /status` is the
//! same server's view as JSON, with one [`PeerStatus`] per peer, so that a
//! dashboard polling every server's `/status` can draw the whole cluster.

use omnipaxos::{ballot::Ballot, ui::OmniPaxosStates, util::NodeId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Body of `PUT /kv/{key}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutRequest {
    /// The value to store.
    pub value: String,
}

/// Body of `POST /kv/{key}/cas`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CasRequest {
    /// The value the key must have; `null` means the key must be absent.
    /// Required: a missing field is an error rather than "absent", so a
    /// client that forgot it does not create keys by accident.
    #[serde(deserialize_with = "Option::deserialize")]
    pub expected: Option<String>,
    /// The value to set if it has.
    pub new: String,
}

/// Answer to a write, once it is decided and applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteResponse {
    /// The log index at which the write was decided.
    pub index: u64,
    /// Whether the store changed as asked (always for put and delete; for a
    /// compare-and-swap, whether the key had the expected value).
    pub success: bool,
    /// The key's value just before the write.
    pub previous: Option<String>,
}

/// Answer to `GET /kv/{key}` when the key has a value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetResponse {
    /// The key.
    pub key: String,
    /// Its value.
    pub value: String,
    /// The number of log entries applied when the value was read.
    pub applied_idx: u64,
}

/// Answer to `GET /kv?prefix=P`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanResponse {
    /// The keys with the prefix and their values, in key order.
    pub items: BTreeMap<String, String>,
    /// Whether more keys matched than `limit`.
    pub truncated: bool,
}

/// What a server thinks its role is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// It leads: it orders writes and answers linearizable reads.
    Leader,
    /// It follows a known leader and forwards writes to it.
    Follower,
    /// It knows no leader; writes and linearizable reads wait for one.
    NoLeader,
}

impl Role {
    /// The role of a server that leads or not and knows `leader` as leader.
    pub fn of(is_leader: bool, leader: Option<NodeId>) -> Self {
        if is_leader {
            Self::Leader
        } else if leader.is_some() {
            Self::Follower
        } else {
            Self::NoLeader
        }
    }

    /// The role as it is written in JSON and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Leader => "leader",
            Self::Follower => "follower",
            Self::NoLeader => "no_leader",
        }
    }
}

/// Answer to `GET /status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusResponse {
    /// This server's id.
    pub pid: NodeId,
    /// The cluster it belongs to.
    pub cluster_id: u64,
    /// What it thinks it is.
    pub role: Role,
    /// The leader it follows (possibly itself), if any.
    pub leader: Option<NodeId>,
    /// Log entries below this index are decided.
    pub decided_idx: u64,
    /// The length of its log.
    pub accepted_idx: u64,
    /// Log entries below this index are compacted into a snapshot.
    pub compacted_idx: u64,
    /// Log entries below this index are applied to its key-value map.
    pub applied_idx: u64,
    /// Keys with a value in its map.
    pub keys: usize,
    /// The other servers' protocol addresses.
    pub peers: BTreeMap<NodeId, String>,
    /// `persistent` or `memory`.
    pub storage: String,
    /// Why the node stopped, if it did.
    pub stopped: Option<String>,
    /// The protocol's own picture of this server and of each peer as it
    /// sees it (`OmniPaxos::get_ui_states`): what `kv_store top` draws.
    /// Absent if the node did not answer (it stopped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<OmniPaxosStates>,
    /// The configuration the server runs in. (The fields from here on are
    /// newer; a client reading an older server gets their defaults.)
    #[serde(default)]
    pub configuration_id: u32,
    /// The ballot of the leader it follows, if any: its round rises with
    /// every new leadership, so servers that show different rounds have not
    /// all heard of the latest one.
    #[serde(default)]
    pub leader_ballot: Option<Ballot>,
    /// Whether it heard from a quorum in its last heartbeat round, which a
    /// server needs in order to lead or to take over.
    #[serde(default)]
    pub quorum_connected: bool,
    /// Its heartbeat round in progress; each peer's
    /// [`PeerStatus::last_heartbeat_round`] is measured against it.
    #[serde(default)]
    pub heartbeat_round: u32,
    /// Outgoing messages its node dropped because its channel to the
    /// transport was full.
    #[serde(default)]
    pub dropped_messages: u64,
    /// What it knows of each peer, in id order.
    #[serde(default)]
    pub cluster: Vec<PeerStatus>,
    /// The servers of its configuration (`configuration_id`), itself
    /// included, with their protocol addresses: as in `GET /members`.
    #[serde(default)]
    pub members: Vec<MemberStatus>,
    /// The configuration that follows, while a change is in flight or
    /// decided and this server has not moved into it: as in `GET /members`.
    #[serde(default)]
    pub next_configuration: Option<NextConfiguration>,
    /// Whether it is still joining its configuration (pulling the log);
    /// until it is done it answers reads and writes with 503 `joining`.
    #[serde(default)]
    pub joining: bool,
}

/// One peer as a server sees it, part of [`StatusResponse`]: whether
/// heartbeats and links get through (a dashboard that has this from every
/// server can tell a one-way cut from a dead server) and, on the leader, how
/// far the peer's log has come.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// The peer.
    pub pid: NodeId,
    /// Whether the peer answered this server's last heartbeat round: the
    /// protocol's messages get through both ways.
    pub connected: bool,
    /// This server's heartbeat round in which a heartbeat from the peer last
    /// arrived (one direction only); `None` if none has since it started.
    pub last_heartbeat_round: Option<u32>,
    /// How much of the log the peer has accepted; known only on the leader.
    pub accepted_idx: Option<u64>,
    /// How many entries of this server's log the peer lacks (this server's
    /// `accepted_idx` minus the peer's); known only on the leader.
    pub behind: Option<u64>,
    /// Whether this server's outbound link to the peer is up (dialed and
    /// handshaken): what it sends can reach the peer.
    pub outbound_link: bool,
    /// Whether the peer's link to this server is up.
    pub inbound_link: bool,
    /// How often the outbound link came back after being down.
    pub reconnects: u64,
}

/// What is known of a write that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The write certainly did not and will not change the store.
    NotApplied,
    /// The write may have been applied, or may still be; read to find out,
    /// or retry it (a retry is a new write).
    Unknown,
}

/// The body of every error response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable, machine-readable code, e.g. `no_leader`, `bad_request`.
    pub error: String,
    /// A sentence for humans.
    pub message: String,
    /// For writes: what is known of the write's effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// With `removed`: the configuration that left this server out, and
    /// where its servers are; send the request there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<NextConfiguration>,
}

/// Answer to `GET /members`: the configuration this server runs in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembersResponse {
    /// The cluster this server belongs to.
    pub cluster_id: u64,
    /// The configuration it runs in.
    pub configuration_id: u32,
    /// The configuration's servers, in id order.
    pub members: Vec<MemberStatus>,
    /// The leader it follows (possibly itself), if any.
    pub leader: Option<NodeId>,
    /// Whether this server is still joining the configuration (pulling the log).
    pub joining: bool,
    /// The configuration that follows this one: while this server proposes
    /// a change (a `POST /members` it took is under way), or once the change
    /// is decided and this server has not moved into it (it is left out).
    pub next_configuration: Option<NextConfiguration>,
}

/// The configuration after the one a server runs in, part of
/// [`MembersResponse`] and [`StatusResponse`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextConfiguration {
    /// Its id: the current one plus one.
    pub configuration_id: u32,
    /// Its servers, in id order, with the addresses this server knows.
    pub members: Vec<MemberStatus>,
    /// Whether the change is decided (the old configuration's stop-sign is
    /// in its log): then it happens, whatever fails next. If not, it is a
    /// proposal this server made that may still be dropped.
    pub decided: bool,
}

/// One server of a configuration, part of [`MembersResponse`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    /// The server.
    pub id: NodeId,
    /// Its protocol (transport) address, if this server knows it.
    pub peer_addr: Option<String>,
}

/// A server named with its protocol (transport) address, in a [`MembersChange`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewMember {
    /// Its id: not 0, not a member yet.
    pub id: NodeId,
    /// Its protocol address, IP:PORT.
    pub addr: std::net::SocketAddr,
}

/// Body of `POST /members`: one change of the configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum MembersChange {
    /// Add a server: `{"add": {"id": 4, "addr": "127.0.0.1:7004"}}`.
    Add(NewMember),
    /// Remove a server: `{"remove": 3}`.
    Remove(NodeId),
    /// Replace `old` by a new server: `{"replace": {"old": 3, "id": 4, "addr": "..."}}`.
    Replace {
        /// The member to remove.
        old: NodeId,
        /// The new server's id.
        id: NodeId,
        /// The new server's protocol address.
        addr: std::net::SocketAddr,
    },
}
