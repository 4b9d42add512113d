//! The JSON bodies of the HTTP client API, shared by the server and the client.
//!
//! ```text
//! GET    /kv/{key}[?stale=true]  -> 200 GetResponse | 404 ErrorBody (key_not_found)
//! PUT    /kv/{key}   PutRequest  -> 200 WriteResponse
//! DELETE /kv/{key}               -> 200 WriteResponse
//! POST   /kv/{key}/cas CasRequest-> 200 WriteResponse (success says whether it swapped)
//! GET    /kv?prefix=P[&limit=N][&stale=true] -> 200 ScanResponse
//! GET    /status                 -> 200 StatusResponse
//! ```
//!
//! Reads are linearizable unless `stale=true`. Every error is an
//! [`ErrorBody`] with a 4xx (the request's fault) or 5xx status.

use omnipaxos::{ui::OmniPaxosStates, util::NodeId};
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
}
