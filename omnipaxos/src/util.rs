//! Small shared types: node ids, the entries a read returns, stop-signs.

use crate::{ballot::Ballot, storage::Entry};

/// The id of a server. Ids are any non-zero numbers; they need not be `1..=n`.
pub type NodeId = u64;

/// The id of a cluster configuration. Configuration ids start at 1.
pub type ConfigurationId = u32;

/// The index below which a log was trimmed (compacted away without a snapshot).
pub type TrimmedIndex = u64;

/// The highest log index a server accepts from a peer: no log grows to
/// 2^62 entries, and refusing indices above it leaves every sum of an index
/// and a length far from overflowing. A message naming a larger index (in a
/// log sync, an acknowledgement, a stop-sign's position) is dropped.
pub(crate) const MAX_LOG_INDEX: u64 = 1 << 62;

/// What a read of one log index returns.
#[derive(Clone, Debug)]
pub enum LogEntry<T: Entry> {
    /// The entry is decided: it is in the log of every future leader and will never change.
    Decided(T),
    /// The entry is accepted locally but not known to be decided; it may still be replaced.
    Undecided(T),
    /// The index was compacted away by a trim; everything below the given index is gone.
    Trimmed(TrimmedIndex),
    /// The index is covered by a snapshot.
    Snapshotted(SnapshottedEntry<T>),
    /// The last entry of a configuration: a stop-sign, with whether it is decided.
    StopSign(StopSign, bool),
}

/// How far [`OmniPaxos::read_decided_with`](crate::OmniPaxos::read_decided_with)
/// read, and why it stopped there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DecidedRead {
    /// The decided entries from the range's start up to this index were
    /// lent (none if it is the start): the read reached the range's end or
    /// the decided index. Read on from here later.
    UpTo(u64),
    /// The entries up to this index were lent, and the entry at this index
    /// is this configuration's decided stop-sign (see
    /// [`OmniPaxos::is_reconfigured`](crate::OmniPaxos::is_reconfigured)):
    /// nothing is decided after it in this configuration.
    StopSign(u64),
    /// Nothing was lent: the range starts below this index, the compacted
    /// index, and the entries there are gone. Read them as one `Trimmed` or
    /// `Snapshotted` entry with
    /// [`read_entries`](crate::OmniPaxos::read_entries), then read on from
    /// this index.
    Compacted(u64),
}

/// A snapshot that stands in for a compacted prefix of the log.
#[derive(Clone, Debug)]
pub struct SnapshottedEntry<T: Entry> {
    /// The snapshot covers indices `0..trimmed_idx`.
    pub trimmed_idx: TrimmedIndex,
    /// The snapshot itself.
    pub snapshot: T::Snapshot,
}

// Written by hand: a derive would not require `T::Snapshot: PartialEq`.
impl<T> PartialEq for LogEntry<T>
where
    T: Entry + PartialEq,
    T::Snapshot: PartialEq,
{
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Decided(a), Self::Decided(b)) | (Self::Undecided(a), Self::Undecided(b)) => {
                a == b
            }
            (Self::Trimmed(a), Self::Trimmed(b)) => a == b,
            (Self::Snapshotted(a), Self::Snapshotted(b)) => a == b,
            (Self::StopSign(a, x), Self::StopSign(b, y)) => a == b && x == y,
            _ => false,
        }
    }
}

impl<T> PartialEq for SnapshottedEntry<T>
where
    T: Entry,
    T::Snapshot: PartialEq,
{
    fn eq(&self, other: &Self) -> bool {
        self.trimmed_idx == other.trimmed_idx && self.snapshot == other.snapshot
    }
}

/// The entry that ends a configuration and names the next one.
///
/// Once a stop-sign is decided the configuration accepts no more entries; the
/// servers in `nodes` continue the log under `config_id`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct StopSign {
    /// The id of the next configuration.
    pub config_id: ConfigurationId,
    /// The servers of the next configuration.
    pub nodes: Vec<NodeId>,
    /// Free-form data the user attaches to the reconfiguration.
    pub metadata: Option<Vec<u8>>,
}

impl StopSign {
    /// Creates a stop-sign for configuration `config_id` with servers `nodes`.
    pub fn with(config_id: ConfigurationId, nodes: Vec<NodeId>, metadata: Option<Vec<u8>>) -> Self {
        Self {
            config_id,
            nodes,
            metadata,
        }
    }
}

/// How the configuration before a server's own ended, as the server persists
/// it (see [`Storage::set_previous_configuration_end`](crate::storage::Storage::set_previous_configuration_end)):
/// enough to tell a server that missed the end (a *straggler*, still in the
/// old configuration) that it is over, and which of its entries are decided.
///
/// Written when the server moves on with
/// [`OmniPaxos::into_new_configuration`](crate::OmniPaxos::into_new_configuration),
/// or when it joins or restarts in the new configuration and learns the end
/// from a peer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ConfigurationEnd {
    /// The decided stop-sign that ended the previous configuration; its
    /// `config_id` is the id of the configuration the server is in.
    pub stopsign: StopSign,
    /// The stop-sign's index: the length of the log the previous
    /// configuration decided.
    pub stop_idx: u64,
    /// A round of the previous configuration whose accepted logs hold its
    /// whole decided log and the stop-sign: a straggler whose log was
    /// accepted in this round or a later one knows its log is decided.
    pub accepted_round: Ballot,
}
