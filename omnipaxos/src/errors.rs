//! Error types, one enum per failure domain.

use crate::util::NodeId;
use std::{fmt, path::PathBuf};

/// An invalid [`OmniPaxosConfig`](crate::OmniPaxosConfig): the user's to fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A field holds a value that cannot work; `field` names it and `reason` says why.
    #[error("invalid config field `{field}`: {reason}")]
    InvalidField {
        /// The name of the offending field, as in the struct and the TOML file.
        field: String,
        /// What is wrong with its value.
        reason: String,
    },
    /// The configuration file could not be read.
    #[error("cannot read config file {}: {detail}", path.display())]
    Io {
        /// The file that was asked for.
        path: PathBuf,
        /// What the operating system said.
        detail: String,
    },
    /// The configuration file is not valid TOML for this config, for example
    /// because of an unknown key or a value of the wrong type.
    #[error("malformed config file {}: {detail}", path.display())]
    Parse {
        /// The file that was read.
        path: PathBuf,
        /// The field, if the parser named one.
        field: Option<String>,
        /// What the parser said, with line and column.
        detail: String,
    },
    /// The storage handed to `build` could not be read.
    #[error("cannot read the storage given to build: {0}")]
    Storage(#[from] StorageError),
}

impl ConfigError {
    pub(crate) fn field(field: &str, reason: impl Into<String>) -> Self {
        Self::InvalidField {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }
}

/// A storage operation failed: the backend's fault (disk, corruption), or a
/// request the storage cannot satisfy.
///
/// Once the protocol sees one of these on a write it stops acting (see
/// [`OmniPaxos::get_storage_failure`](crate::OmniPaxos::get_storage_failure)):
/// it never sends a message that claims what it failed to persist.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// An I/O operation failed.
    #[error("storage i/o failed during {operation}{}: {detail}", fmt_path(path))]
    Io {
        /// What the storage was doing, e.g. `"append entries"`.
        operation: String,
        /// The file or directory involved, if any.
        path: Option<PathBuf>,
        /// What the operating system or backend said.
        detail: String,
    },
    /// Stored data is damaged or belongs to something else.
    #[error("storage is corrupt{}: {detail}", fmt_path(path))]
    Corrupt {
        /// The file or directory involved, if any.
        path: Option<PathBuf>,
        /// What is wrong with it.
        detail: String,
    },
    /// An entry or state value could not be encoded or decoded.
    #[error("storage could not (de)serialise {what}: {detail}")]
    Serialization {
        /// What was being encoded or decoded.
        what: String,
        /// What the codec said.
        detail: String,
    },
    /// The request names indices that the storage cannot serve.
    #[error("index {idx} is out of range for {operation} (log holds {compacted_idx}..{log_len})")]
    IndexOutOfRange {
        /// The operation that was asked for.
        operation: String,
        /// The offending index.
        idx: u64,
        /// The first index the log holds.
        compacted_idx: u64,
        /// The log length.
        log_len: u64,
    },
    /// Any other backend failure.
    #[error("storage backend failed during {operation}: {detail}")]
    Backend {
        /// What the storage was doing.
        operation: String,
        /// What the backend said.
        detail: String,
    },
}

fn fmt_path(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| format!(" at {}", p.display()))
        .unwrap_or_default()
}

/// A proposal ([`append`](crate::OmniPaxos::append) or
/// [`reconfigure`](crate::OmniPaxos::reconfigure)) that was not taken; what
/// was proposed is handed back.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProposeErr<T> {
    /// The configuration has a stop-sign: it takes no more entries. Append in the next configuration.
    #[error("the configuration is being reconfigured and takes no more entries")]
    PendingReconfigEntry(T),
    /// A reconfiguration is already proposed or decided in this configuration.
    #[error("a reconfiguration is already under way")]
    PendingReconfigConfig(ReconfigurationRequest),
    /// The requested configuration cannot work; the error names what is wrong.
    #[error("invalid reconfiguration: {0}")]
    InvalidReconfiguration(ConfigError),
    /// The node buffers `buffer_size` proposals already (no leader yet, or an
    /// unreachable one); retry once a leader is known.
    #[error("the proposal buffer is full")]
    BufferFull(T),
    /// A storage write failed earlier and the node has stopped acting.
    #[error("the node stopped after a storage failure")]
    StorageFailure(T),
    /// Writing this proposal failed: it is not in the log, and the node has
    /// stopped acting. The entry went to the failed write and is not handed back.
    #[error("the proposal could not be persisted: {0}")]
    NotPersisted(StorageError),
}

impl<T> ProposeErr<T> {
    /// The same refusal without the entry it hands back: a driver that
    /// keeps the entry elsewhere (or has no use for it) can pass the reason
    /// on as a plain value.
    pub fn without_entry(self) -> ProposeErr<()> {
        match self {
            Self::PendingReconfigEntry(_) => ProposeErr::PendingReconfigEntry(()),
            Self::PendingReconfigConfig(rc) => ProposeErr::PendingReconfigConfig(rc),
            Self::InvalidReconfiguration(e) => ProposeErr::InvalidReconfiguration(e),
            Self::BufferFull(_) => ProposeErr::BufferFull(()),
            Self::StorageFailure(_) => ProposeErr::StorageFailure(()),
            Self::NotPersisted(e) => ProposeErr::NotPersisted(e),
        }
    }

    /// Gives the rejected entry back, if the proposal was an entry.
    pub fn into_entry(self) -> Option<T> {
        match self {
            Self::PendingReconfigEntry(t) | Self::BufferFull(t) | Self::StorageFailure(t) => {
                Some(t)
            }
            Self::PendingReconfigConfig(_)
            | Self::InvalidReconfiguration(_)
            | Self::NotPersisted(_) => None,
        }
    }
}

impl<T> fmt::Debug for ProposeErr<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The entry may be large or lack a useful Debug; the variant is what matters.
        match self {
            Self::PendingReconfigEntry(_) => f.write_str("PendingReconfigEntry(..)"),
            Self::BufferFull(_) => f.write_str("BufferFull(..)"),
            Self::StorageFailure(_) => f.write_str("StorageFailure(..)"),
            Self::PendingReconfigConfig(rc) => {
                f.debug_tuple("PendingReconfigConfig").field(rc).finish()
            }
            Self::InvalidReconfiguration(e) => {
                f.debug_tuple("InvalidReconfiguration").field(e).finish()
            }
            Self::NotPersisted(e) => f.debug_tuple("NotPersisted").field(e).finish(),
        }
    }
}

/// A request to move the log to a new configuration: the servers of the next
/// configuration, and data the application attaches to the change.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ReconfigurationRequest {
    /// The servers of the next configuration (non-zero, distinct ids).
    pub new_configuration: Vec<NodeId>,
    /// Data carried in the stop-sign for the application.
    pub metadata: Option<Vec<u8>>,
}

impl ReconfigurationRequest {
    /// A request for the configuration `new_configuration`.
    pub fn with(new_configuration: Vec<NodeId>, metadata: Option<Vec<u8>>) -> Self {
        Self {
            new_configuration,
            metadata,
        }
    }
}

/// A trim or snapshot that was refused; the state is unchanged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CompactionErr {
    /// The index is not decided yet; `decided_idx` is the highest index that would work.
    #[error("index {requested} is not decided (decided index is {decided_idx})")]
    UndecidedIndex {
        /// The index asked for.
        requested: u64,
        /// The current decided index.
        decided_idx: u64,
    },
    /// Not every server has accepted up to the index; `min_accepted` would work.
    #[error(
        "not every server has accepted up to {requested} (all have accepted up to {min_accepted})"
    )]
    NotAllAccepted {
        /// The index asked for.
        requested: u64,
        /// The highest index that every server has accepted.
        min_accepted: u64,
    },
    /// The log is already compacted past the index.
    #[error("index {requested} is already compacted (compacted index is {compacted_idx})")]
    AlreadyCompacted {
        /// The index asked for.
        requested: u64,
        /// The current compacted index.
        compacted_idx: u64,
    },
    /// Only the leader may trim; `leader` is the current one, if known.
    #[error("only the leader may trim (current leader: {leader:?})")]
    NotCurrentLeader {
        /// The current leader, if known.
        leader: Option<NodeId>,
    },
    /// The entry type does not use snapshots (`Snapshot::use_snapshots()` is
    /// false): compact with `trim` instead.
    #[error("the entry type does not use snapshots; use trim")]
    SnapshotsNotEnabled,
    /// The storage failed; the server has stopped acting.
    #[error(transparent)]
    Storage(#[from] StorageError),
}
