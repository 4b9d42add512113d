//! [`RuntimeError`]: why a runtime call did not succeed.

use omnipaxos::{
    errors::{CompactionErr, ConfigError, StorageError},
    util::{NodeId, StopSign},
};

/// Why a call on an [`OmniPaxosNode`](crate::OmniPaxosNode) did not succeed.
///
/// For an append the variants say what is known of the entry:
/// [`NoLeader`](Self::NoLeader), [`BufferFull`](Self::BufferFull) and
/// [`Rejected`](Self::Rejected) mean it never entered the log;
/// [`Timeout`](Self::Timeout), [`Reconfigured`](Self::Reconfigured) and
/// [`ShutDown`](Self::ShutDown) after the entry was handed to the protocol
/// mean the outcome is unknown (it may still be decided), so a retry must be
/// safe to apply twice — give entries an id the state machine checks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The node configuration is invalid; the node did not start.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// No tokio runtime was running where the node was created.
    #[error("no tokio runtime: create the node inside a tokio runtime")]
    NoRuntime,
    /// No leader was known within the configured wait; the entry was not proposed.
    #[error("no leader is reachable")]
    NoLeader,
    /// The proposal buffer is full; the entry was not proposed.
    #[error("the proposal buffer is full")]
    BufferFull,
    /// The configuration ended with this stop-sign; the entry was not decided
    /// in it. Append in the next configuration.
    #[error("the configuration was reconfigured to configuration {}", .0.config_id)]
    Reconfigured(StopSign),
    /// The call did not complete in time; its outcome is unknown.
    #[error("timed out")]
    Timeout,
    /// The node is shut down (or stopped after a failure).
    #[error("the node is shut down")]
    ShutDown,
    /// A storage write failed; the node stopped acting.
    #[error("storage failed: {0}")]
    Storage(StorageError),
    /// A trim or snapshot was refused.
    #[error("compaction refused: {0}")]
    Compaction(#[from] CompactionErr),
    /// The protocol refused the request; the message says why.
    #[error("rejected: {0}")]
    Rejected(String),
    /// This server does not lead, and the call needs the leader.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader, if one is known.
        leader: Option<NodeId>,
    },
}
