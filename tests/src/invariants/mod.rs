//! Safety properties as named code, checked after every simulated tick.
//!
//! Each property lives in its own file whose doc cites the part of the
//! Omni-Paxos paper (Ng, Haridi, Carbone: *Omni-Paxos: Breaking the Barriers
//! of Partial Connectivity*, EuroSys 2023) it comes from. The paper states
//! Sequence Paxos' guarantees as the sequence-consensus properties SC1
//! (validity), SC2 (uniform agreement) and SC3 (integrity), and Ballot Leader
//! Election's as BLE properties over unique, monotonically increasing ballots.
//!
//! | property | file | paper | what is checked |
//! | --- | --- | --- | --- |
//! | [`decided_prefix_agreement`] | `decided_prefix_agreement.rs` | SC2 uniform agreement | no two servers ever decide different entries at one index |
//! | [`decided_is_stable`] | `decided_is_stable.rs` | SC3 integrity | a server's decided prefix never shrinks or changes, across restarts too |
//! | [`only_proposed_decided`] | `only_proposed_decided.rs` | SC1 validity | every decided entry was proposed, and is decided at one index only |
//! | [`single_leader_per_ballot`] | `single_leader_per_ballot.rs` | BLE unique ballots; Sequence Paxos leader uniqueness | at most one server ever leads a given ballot, and it is the ballot's owner |
//! | [`monotonic_ballot`] | `monotonic_ballot.rs` | BLE monotonic ballots; Paxos promise rule | promises, accepted rounds and followed leader ballots never go backwards |
//! | [`no_lost_decided_entry`] | `no_lost_decided_entry.rs` | quorum intersection behind SC2 | every decided entry is held by the storages of a write quorum (a majority by default) |
//! | [`snapshot_matches_decided_prefix`] | `snapshot_matches_decided_prefix.rs` | §3 log compaction, SC2 | every server's snapshot equals the snapshot of the decided log below its compacted index |
//!
//! [`Invariants`] owns the record each property needs (the cluster-wide
//! decided log, the proposed values, the ballots seen) and reads the servers
//! incrementally: per server it remembers how far the decided log has been
//! checked and reads only the new part, and it re-reads stored entries only
//! where a storage reports that it overwrote or trimmed them. A check is
//! therefore cheap enough to run after every tick of a long soak.

pub mod decided_is_stable;
pub mod decided_prefix_agreement;
pub mod monotonic_ballot;
pub mod no_lost_decided_entry;
pub mod only_proposed_decided;
pub mod single_leader_per_ballot;
pub mod snapshot_matches_decided_prefix;

use crate::sim::{storage::SharedStorage, value::Value};
use omnipaxos::{OmniPaxos, util::LogEntry, util::NodeId};
use std::fmt;

/// What the invariants may look at of one server.
pub struct NodeView<'a> {
    /// The server's id.
    pub pid: NodeId,
    /// The running server, or `None` while it is crashed.
    pub paxos: Option<&'a OmniPaxos<Value, SharedStorage>>,
    /// The server's storage; present whether or not the server runs.
    pub storage: &'a SharedStorage,
    /// How many times the server was restarted; in-memory state that is not
    /// persisted may start over when this changes.
    pub incarnation: u32,
}

/// A broken safety property.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The property's name, which is also its file name.
    pub property: &'static str,
    /// What was observed.
    pub detail: String,
}

impl Violation {
    pub(crate) fn new(property: &'static str, detail: impl Into<String>) -> Self {
        Self {
            property,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invariant `{}` violated: {}", self.property, self.detail)
    }
}

/// Entries one server decided since it was last checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewlyDecided {
    /// The server.
    pub pid: NodeId,
    /// `(index, entry)` pairs in index order. Compacted indices are left out.
    pub entries: Vec<(u64, Value)>,
}

/// Every property's state, and the order to check them in.
#[derive(Debug)]
pub struct Invariants {
    stable: decided_is_stable::DecidedIsStable,
    agreement: decided_prefix_agreement::DecidedPrefixAgreement,
    validity: only_proposed_decided::OnlyProposedDecided,
    leaders: single_leader_per_ballot::SingleLeaderPerBallot,
    ballots: monotonic_ballot::MonotonicBallot,
    quorum: no_lost_decided_entry::NoLostDecidedEntry,
    snapshots: snapshot_matches_decided_prefix::SnapshotMatchesDecidedPrefix,
}

impl Invariants {
    /// Starts with empty records for a cluster whose write quorum (majority,
    /// unless flexible quorums are configured) is `write_quorum` servers.
    /// `allow_duplicates` relaxes validity to "every decided entry was
    /// proposed" (see [`SimOptions::allow_duplicate_decisions`](crate::SimOptions::allow_duplicate_decisions)).
    pub fn new(write_quorum: usize, allow_duplicates: bool) -> Self {
        Self {
            stable: decided_is_stable::DecidedIsStable::default(),
            agreement: decided_prefix_agreement::DecidedPrefixAgreement::default(),
            validity: only_proposed_decided::OnlyProposedDecided::new(allow_duplicates),
            leaders: single_leader_per_ballot::SingleLeaderPerBallot::default(),
            ballots: monotonic_ballot::MonotonicBallot::default(),
            quorum: no_lost_decided_entry::NoLostDecidedEntry::new(write_quorum),
            snapshots: Default::default(),
        }
    }

    /// Notes that `value` was handed to `append`, so it may be decided.
    pub fn record_proposal(&mut self, value: Value) {
        self.validity.record_proposal(value);
    }

    /// Whether `value` was recorded as proposed.
    pub fn was_proposed(&self, value: &Value) -> bool {
        self.validity.was_proposed(value)
    }

    /// The cluster-wide decided log: index `i` holds the entry decided at `i`
    /// by whichever server decided it first.
    pub fn decided_log(&self) -> &[Value] {
        self.agreement.log()
    }

    /// The index `value` was decided at, if any server decided it.
    pub fn decided_index_of(&self, value: &Value) -> Option<u64> {
        self.validity.decided_index_of(value)
    }

    /// Checks every property against the current state of the servers.
    pub fn check(&mut self, nodes: &[NodeView<'_>]) -> Result<(), Violation> {
        // Which storages replaced or trimmed entries since the last check.
        let rewrites: Vec<(NodeId, u64)> = nodes
            .iter()
            .filter_map(|n| n.storage.take_rewritten_from().map(|idx| (n.pid, idx)))
            .collect();

        let mut newly = Vec::new();
        for node in nodes {
            let Some(paxos) = node.paxos else { continue };
            let from = self.stable.checked_up_to(node.pid);
            let to = paxos.get_decided_idx();
            self.stable.check_decided_idx(node.pid, from, to)?;
            if to > from {
                newly.push(read_decided(node.pid, paxos, from, to)?);
            }
            self.stable.advance(node.pid, to);
        }
        let first_new = self.agreement.log().len() as u64;
        for batch in &newly {
            self.agreement.check_and_extend(batch)?;
        }
        let log = self.agreement.log();
        self.stable.check_rewrites(nodes, &rewrites, log)?;
        self.validity.check_new(log, first_new)?;
        self.quorum.check(nodes, log, first_new, &rewrites)?;
        self.snapshots.check(nodes, log)?;
        self.leaders.check(nodes)?;
        self.ballots.check(nodes)?;
        Ok(())
    }
}

/// Reads the entries `from..to` that `paxos` reports as decided.
fn read_decided(
    pid: NodeId,
    paxos: &OmniPaxos<Value, SharedStorage>,
    from: u64,
    to: u64,
) -> Result<NewlyDecided, Violation> {
    let Some(read) = paxos.read_entries(from..to) else {
        return Err(Violation::new(
            decided_is_stable::NAME,
            format!(
                "server {pid} reports decided index {to} but read_entries({from}..{to}) is None"
            ),
        ));
    };
    // A compacted part of the range reads as one Trimmed/Snapshotted marker.
    let compacted = paxos.get_compacted_idx();
    let expected = if from < compacted {
        1 + to.saturating_sub(compacted)
    } else {
        to - from
    };
    if read.len() as u64 != expected {
        return Err(Violation::new(
            decided_is_stable::NAME,
            format!(
                "server {pid}: read_entries({from}..{to}) returned {} entries",
                read.len()
            ),
        ));
    }
    let mut entries = Vec::with_capacity(read.len());
    let first = if from < compacted {
        compacted - 1
    } else {
        from
    };
    for (idx, entry) in (first..to).zip(read) {
        match entry {
            LogEntry::Decided(v) => entries.push((idx, v)),
            // Compaction (trim, snapshot) and reconfiguration replace entries
            // with markers that carry no value to compare; nothing to check.
            LogEntry::Trimmed(_) | LogEntry::Snapshotted(_) | LogEntry::StopSign(..) => {}
            LogEntry::Undecided(v) => {
                return Err(Violation::new(
                    decided_is_stable::NAME,
                    format!(
                        "server {pid} reports decided index {to} but reads index {idx} as Undecided({v:?})"
                    ),
                ));
            }
        }
    }
    Ok(NewlyDecided { pid, entries })
}
