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
//! # Across reconfigurations
//!
//! The log continues from one configuration to the next at the same indices:
//! configuration `c` decides its log `start_c..L`, then its stop-sign at index
//! `L`; configuration `c + 1` starts at `L` (its servers report decided index
//! `L`, one less than the `L + 1` the old servers reported) and decides new
//! entries from `L` on. [`ConfigHistory`] records every configuration (its
//! members, its write quorum, where it starts and the stop-sign that ended
//! it), and the properties read it:
//!
//! * agreement keeps one decided log of values for the whole run and the
//!   stop-signs beside it, per configuration: a stop-sign is compared only
//!   with the other decisions of its own configuration's stop-sign slot, and
//!   a configuration may decide nothing at or past its stop-sign;
//! * stability allows a server's decided index to drop exactly from `L + 1`
//!   to `L` when the server moves on to the next configuration on the same
//!   storage, and nowhere else;
//! * the quorum check counts, for each index, the write quorum of the
//!   configuration that decided it (a server that moved on from it no longer
//!   votes there, so it counts whatever its log holds);
//! * ballots and promises start over in every configuration, so monotonicity
//!   and leader uniqueness are checked per configuration;
//! * a server whose storage the simulator replaced by an empty one (a
//!   straggler too far behind for anyone to tell it of its configuration's
//!   end, wiped by the operator, see
//!   [`SimCluster::rejoin_stragglers_afresh`](crate::SimCluster::rejoin_stragglers_afresh))
//!   is a new server for the per-server records; its old storage still
//!   counts for the quorum check.
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
use omnipaxos::{
    OmniPaxos,
    util::{ConfigurationId, LogEntry, NodeId, StopSign},
};
use std::{collections::BTreeMap, fmt};

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
    /// The configuration the server's storage belongs to.
    pub config_id: ConfigurationId,
    /// How many times the simulator replaced the server's storage by an empty
    /// one; per-server records start over when this changes.
    pub generation: u32,
    /// The storages the server had before those replacements. Nothing writes
    /// to them any more; they count for the quorum check of the indices they hold.
    pub past_storages: &'a [SharedStorage],
}

impl<'a> NodeView<'a> {
    /// A view of a server of configuration 1 on its first storage, running
    /// `paxos` (or crashed, with `None`); for unit tests of the properties.
    pub fn first(
        pid: NodeId,
        paxos: Option<&'a OmniPaxos<Value, SharedStorage>>,
        storage: &'a SharedStorage,
    ) -> Self {
        Self {
            pid,
            paxos,
            storage,
            incarnation: 0,
            config_id: 1,
            generation: 0,
            past_storages: &[],
        }
    }
}

/// One configuration of the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigRecord {
    /// The servers of the configuration.
    pub members: Vec<NodeId>,
    /// How many of them make a write quorum.
    pub write_quorum: usize,
    /// The first log index the configuration decides: the index of the
    /// previous configuration's stop-sign (0 for the first configuration).
    pub start: u64,
    /// The index of its stop-sign and the stop-sign, once a server decided it.
    pub stop: Option<(u64, StopSign)>,
}

/// Every configuration of the run, by id. Configuration ids grow by one at
/// each reconfiguration.
#[derive(Clone, Debug, Default)]
pub struct ConfigHistory {
    configs: BTreeMap<ConfigurationId, ConfigRecord>,
}

impl ConfigHistory {
    /// Records configuration `id`. The first one starts at index 0; any later
    /// one must follow a configuration whose stop-sign was decided, and starts
    /// at that stop-sign's index.
    pub fn add(&mut self, id: ConfigurationId, members: &[NodeId], write_quorum: usize) {
        let start = match self.configs.last_key_value() {
            None => 0,
            Some((&last, prev)) => {
                assert_eq!(id, last + 1, "configuration ids grow by one");
                prev.stop
                    .as_ref()
                    .map(|(idx, _)| *idx)
                    .expect("a configuration starts once the previous one decided its stop-sign")
            }
        };
        self.configs.insert(
            id,
            ConfigRecord {
                members: members.to_vec(),
                write_quorum,
                start,
                stop: None,
            },
        );
    }

    /// Configuration `id`, if the run has it.
    pub fn get(&self, id: ConfigurationId) -> Option<&ConfigRecord> {
        self.configs.get(&id)
    }

    fn get_mut(&mut self, id: ConfigurationId) -> Option<&mut ConfigRecord> {
        self.configs.get_mut(&id)
    }

    /// The index of configuration `id`'s decided stop-sign, if known.
    pub fn stop_idx(&self, id: ConfigurationId) -> Option<u64> {
        self.get(id)?.stop.as_ref().map(|(idx, _)| *idx)
    }

    /// The configuration that decides index `idx`, with its id: the one
    /// whose range `start..stop` holds it.
    pub fn deciding(&self, idx: u64) -> Option<(ConfigurationId, &ConfigRecord)> {
        self.configs
            .iter()
            .rev()
            .find(|(_, c)| c.start <= idx && c.stop.as_ref().is_none_or(|(stop, _)| idx < *stop))
            .map(|(&id, c)| (id, c))
    }
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
    /// The configuration the server decided them in.
    pub config_id: ConfigurationId,
    /// `(index, entry)` pairs in index order. Compacted indices are left out.
    pub entries: Vec<(u64, Value)>,
    /// The stop-sign the server decided after them, and its index, if it did.
    pub stopsign: Option<(u64, StopSign)>,
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
    configs: ConfigHistory,
}

impl Invariants {
    /// Starts with empty records for a cluster whose first configuration
    /// (id 1) has the servers `members` and a write quorum (majority, unless
    /// flexible quorums are configured) of `write_quorum` servers.
    /// `allow_duplicates` relaxes validity to "every decided entry was
    /// proposed" (see [`SimOptions::allow_duplicate_decisions`](crate::SimOptions::allow_duplicate_decisions)).
    pub fn new(members: &[NodeId], write_quorum: usize, allow_duplicates: bool) -> Self {
        let mut configs = ConfigHistory::default();
        configs.add(1, members, write_quorum);
        Self {
            configs,
            stable: decided_is_stable::DecidedIsStable::default(),
            agreement: decided_prefix_agreement::DecidedPrefixAgreement::default(),
            validity: only_proposed_decided::OnlyProposedDecided::new(allow_duplicates),
            leaders: single_leader_per_ballot::SingleLeaderPerBallot::default(),
            ballots: monotonic_ballot::MonotonicBallot::default(),
            quorum: no_lost_decided_entry::NoLostDecidedEntry,
            snapshots: Default::default(),
        }
    }

    /// Records that a crash set server `pid`'s decided index back to `to`,
    /// the one it had made durable: with `defer_leader_sync` a raised
    /// decided index is written lazily, and integrity holds from what the
    /// storage kept (see [`decided_is_stable`]).
    pub fn decided_went_back(&mut self, pid: NodeId, to: u64) {
        self.stable.went_back(pid, to);
    }

    /// Records the next configuration, `id`, once the previous one's
    /// stop-sign was decided (and seen by a check).
    pub fn add_configuration(
        &mut self,
        id: ConfigurationId,
        members: &[NodeId],
        write_quorum: usize,
    ) {
        self.configs.add(id, members, write_quorum);
    }

    /// The configurations of the run.
    pub fn configurations(&self) -> &ConfigHistory {
        &self.configs
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
            let to = paxos.get_decided_idx();
            let from = self.stable.check_decided_idx(node, to, &self.configs)?;
            if to > from {
                newly.push(read_decided(node, paxos, from, to)?);
            }
            self.stable.advance(node.pid, to);
        }
        let first_new = self.agreement.log().len() as u64;
        for batch in &newly {
            self.agreement.check_and_extend(batch, &mut self.configs)?;
        }
        let log = self.agreement.log();
        self.stable.check_rewrites(nodes, &rewrites, log)?;
        self.validity.check_new(log, first_new)?;
        self.quorum
            .check(nodes, log, first_new, &rewrites, &self.configs)?;
        self.snapshots.check(nodes, log)?;
        self.leaders.check(nodes)?;
        self.ballots.check(nodes)?;
        Ok(())
    }
}

/// Reads the entries `from..to` that `paxos` reports as decided.
fn read_decided(
    node: &NodeView<'_>,
    paxos: &OmniPaxos<Value, SharedStorage>,
    from: u64,
    to: u64,
) -> Result<NewlyDecided, Violation> {
    let pid = node.pid;
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
    let mut stopsign = None;
    let first = if from < compacted {
        compacted - 1
    } else {
        from
    };
    for (idx, entry) in (first..to).zip(read) {
        match entry {
            LogEntry::Decided(v) => entries.push((idx, v)),
            // Compaction (trim, snapshot) replaces entries with markers that
            // carry no value to compare; nothing to check.
            LogEntry::Trimmed(_) | LogEntry::Snapshotted(_) => {}
            // A stop-sign ends the decided log; agreement compares it with
            // the other decisions of this configuration's stop-sign slot.
            LogEntry::StopSign(ss, true) if idx + 1 == to => stopsign = Some((idx, ss)),
            LogEntry::StopSign(ss, decided) => {
                return Err(Violation::new(
                    decided_is_stable::NAME,
                    format!(
                        "server {pid} reports decided index {to} but reads index {idx} as \
                         StopSign({ss:?}, decided: {decided}), which must be the last decided entry"
                    ),
                ));
            }
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
    Ok(NewlyDecided {
        pid,
        config_id: node.config_id,
        entries,
        stopsign,
    })
}
