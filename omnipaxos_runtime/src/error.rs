//! [`RuntimeError`]: why a runtime call did not succeed.

use omnipaxos::{
    errors::{CompactionErr, ConfigError, ProposeErr, StorageError},
    util::StopSign,
};

/// Why a call on an [`OmniPaxosNode`](crate::OmniPaxosNode) did not succeed.
///
/// For an append the variants say what is known of the entry:
/// [`NoLeader`](Self::NoLeader), [`BufferFull`](Self::BufferFull),
/// [`ReconfigurationPending`](Self::ReconfigurationPending) and
/// [`Refused`](Self::Refused) mean it never entered the log;
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
    /// This server is not in the configuration that follows its own (the
    /// stop-sign names the next configuration and its servers): it takes no
    /// more appends, and the entry was not proposed. Append at one of the
    /// stop-sign's servers.
    #[error(
        "this server is not in configuration {} (servers {:?}): append there",
        .0.config_id, .0.nodes
    )]
    Removed(StopSign),
    /// A reconfiguration did not complete within the append timeout:
    /// `stopsign` is the decided stop-sign if the old configuration decided
    /// it (the change will happen; the next configuration had no leader
    /// this server knew of yet, e.g. because a new server has not joined),
    /// `None` if not even that (the proposal may still be decided).
    #[error("the reconfiguration did not complete in time ({})", match .stopsign {
        Some(ss) => format!(
            "the stop-sign for configuration {} is decided, but no leader of it is known yet",
            ss.config_id
        ),
        None => "its stop-sign is not decided yet".to_owned(),
    })]
    ReconfigurationIncomplete {
        /// The stop-sign, if decided.
        stopsign: Option<StopSign>,
    },
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
    /// The reconfiguration request is invalid and was not proposed: no
    /// server, a repeated or zero id, or new servers that have not reached
    /// this one and would leave fewer than a majority of the next
    /// configuration to take part. The error names the field and the
    /// servers. The configuration keeps serving.
    #[error("invalid reconfiguration: {0}")]
    InvalidReconfiguration(ConfigError),
    /// A reconfiguration is under way: its stop-sign is proposed or in the
    /// log, not yet decided. A second reconfiguration, or an append or
    /// linearizable read that met it, was not carried out; retry in the
    /// next configuration once [`reconfigure`](crate::OmniPaxosNode::reconfigure)
    /// of the first resolves.
    #[error("a reconfiguration is under way; retry in the next configuration")]
    ReconfigurationPending,
    /// The protocol refused the proposal for a reason the variants above do
    /// not name (a kind of refusal added to [`ProposeErr`] after this
    /// runtime was written); the entry was not proposed.
    #[error("refused: {0}")]
    Refused(ProposeErr<()>),
}
