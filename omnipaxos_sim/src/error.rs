//! What can go wrong: a bad call ([`SimError`]), a refused proposal
//! ([`ProposeError`]) and a broken safety property ([`Violation`]).

use omnipaxos::{ConfigError, ProposeErr, util::NodeId};
use std::fmt;

/// Why a call on the simulator, or a run, failed.
///
/// A [`Violation`](Self::Violation) is a bug in the protocol, the storage or
/// the state machine under test; every other variant is a mistake in the
/// calling test (an unknown server, a bad knob) or a run that did not
/// converge.
#[derive(Debug)]
#[non_exhaustive]
pub enum SimError {
    /// The server ids given to [`Sim::builder`](crate::Sim::builder) are
    /// empty, contain 0 or contain a duplicate. The caller's fault.
    InvalidIds {
        /// The ids as given.
        ids: Vec<NodeId>,
        /// What is wrong with them.
        reason: &'static str,
    },
    /// [`SimBuilder::build`](crate::SimBuilder::build) was called without a
    /// storage factory ([`SimBuilder::storage`](crate::SimBuilder::storage)).
    NoStorage,
    /// A [`Faults`](crate::Faults) knob is out of range. The caller's fault.
    InvalidFaults {
        /// The field of `Faults` that is out of range.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Building server `pid`'s `OmniPaxos` failed: the config hook made an
    /// invalid config, or (on a restart) the storage could not be loaded.
    /// On a restart the storage value is gone with the failed build.
    Config {
        /// The server that could not be built.
        pid: NodeId,
        /// What `OmniPaxosConfig::build` said.
        error: ConfigError,
    },
    /// The config hook changed the server's `pid`, `peers` or
    /// `configuration_id`, which the simulator owns.
    ConfigMismatch {
        /// The server whose config was changed.
        pid: NodeId,
        /// The field that was changed.
        field: &'static str,
    },
    /// The id names no server of the cluster.
    UnknownServer(NodeId),
    /// The call needs server `pid` running, and it is crashed.
    ServerDown(NodeId),
    /// [`Sim::restart`](crate::Sim::restart) was called on a running server.
    ServerUp(NodeId),
    /// A link was given from a server to itself.
    SelfLink(NodeId),
    /// [`Sim::run_until`](crate::Sim::run_until) or
    /// [`Sim::wait_for_leader`](crate::Sim::wait_for_leader) did not see its
    /// condition hold within `max_ticks` steps.
    Timeout {
        /// The bound the caller gave.
        max_ticks: u64,
        /// The seed of the run, to replay it.
        seed: u64,
        /// The tick the run stopped at.
        tick: u64,
    },
    /// A server's decided log cannot be read back, so its replica cannot be
    /// brought up to date: its decided entries were compacted away (trimmed
    /// or snapshotted) before the simulator read them and no other server
    /// read them either, or a read returned something a decided log does
    /// not hold. Not a safety violation: the simulator cannot check it.
    UnreadableLog {
        /// The seed of the run.
        seed: u64,
        /// The tick the read was made at.
        tick: u64,
        /// The server whose log was read.
        pid: NodeId,
        /// The first decided index that could not be read.
        idx: u64,
        /// What the read gave back.
        reason: &'static str,
    },
    /// A safety property failed: see [`Violation`].
    Violation(Box<Violation>),
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidIds { ids, reason } => write!(f, "invalid server ids {ids:?}: {reason}"),
            Self::NoStorage => write!(f, "no storage factory: call SimBuilder::storage"),
            Self::InvalidFaults { field, reason } => write!(f, "Faults::{field} {reason}"),
            Self::Config { pid, error } => write!(f, "building server {pid} failed: {error}"),
            Self::ConfigMismatch { pid, field } => write!(
                f,
                "the config hook changed server {pid}'s `{field}`, which the simulator sets"
            ),
            Self::UnknownServer(pid) => write!(f, "server {pid} is not in the cluster"),
            Self::ServerDown(pid) => write!(f, "server {pid} is crashed"),
            Self::ServerUp(pid) => write!(f, "server {pid} is running; crash it first"),
            Self::SelfLink(pid) => write!(f, "({pid}, {pid}) is not a link"),
            Self::Timeout {
                max_ticks,
                seed,
                tick,
            } => write!(
                f,
                "the condition did not hold within {max_ticks} ticks (seed {seed}, stopped at tick {tick})"
            ),
            Self::UnreadableLog {
                seed,
                tick,
                pid,
                idx,
                reason,
            } => write!(
                f,
                "server {pid}'s decided log cannot be read from index {idx} at tick {tick} (seed {seed}): {reason}"
            ),
            Self::Violation(v) => v.fmt(f),
        }
    }
}

impl std::error::Error for SimError {}

impl From<Violation> for SimError {
    fn from(v: Violation) -> Self {
        Self::Violation(Box::new(v))
    }
}

/// Why [`Sim::propose`](crate::Sim::propose) did not take an entry; every
/// variant hands the entry back.
#[derive(Debug)]
#[non_exhaustive]
pub enum ProposeError<T> {
    /// The id names no server of the cluster. The caller's fault.
    UnknownServer(NodeId, T),
    /// The server is crashed. Propose at another one, or restart it.
    ServerDown(NodeId, T),
    /// The server's `append` refused the entry (its buffer is full, it
    /// stopped after a storage failure, ...).
    Refused(ProposeErr<T>),
}

impl<T> ProposeError<T> {
    /// Gives the entry back, if the refusal kept it (every variant but
    /// `Refused(ProposeErr::NotPersisted(_))` does).
    pub fn into_entry(self) -> Option<T> {
        match self {
            Self::UnknownServer(_, e) | Self::ServerDown(_, e) => Some(e),
            Self::Refused(e) => e.into_entry(),
        }
    }
}

impl<T> fmt::Display for ProposeError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownServer(pid, _) => write!(f, "server {pid} is not in the cluster"),
            Self::ServerDown(pid, _) => write!(f, "server {pid} is crashed"),
            Self::Refused(e) => write!(f, "append refused the entry: {e}"),
        }
    }
}

impl<T: fmt::Debug> std::error::Error for ProposeError<T> {}

/// A safety property that failed, with where and when: the run's seed (to
/// replay it), the tick, and the property with the servers and index
/// involved. Entries and states are shown with their `Debug` form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The seed of the run.
    pub seed: u64,
    /// The tick (number of steps taken) at which the check failed.
    pub tick: u64,
    /// Which property failed, and the details.
    pub kind: ViolationKind,
}

/// The properties the simulator checks after every step, each with what a
/// reader of a failed run needs to find the bug.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ViolationKind {
    /// Two servers decided different entries at one index: consensus broke.
    DecidedPrefixDisagreement {
        /// The index where they differ.
        idx: u64,
        /// The server that decided the cluster's entry there first.
        first: NodeId,
        /// What it decided.
        first_entry: String,
        /// The server that decided something else there.
        other: NodeId,
        /// What that server decided.
        other_entry: String,
    },
    /// A running server's decided index went down (without losing its
    /// storage): a decided entry was taken back.
    DecidedIndexDecreased {
        /// The server.
        pid: NodeId,
        /// The highest decided index it had reported.
        was: u64,
        /// What it reports now.
        now: u64,
    },
    /// An entry was decided that no `propose` took, or was decided more
    /// often than it was proposed (a proposal decided twice).
    NotProposed {
        /// The server that read it in its decided log first.
        pid: NodeId,
        /// Where it was decided.
        idx: u64,
        /// The entry.
        entry: String,
    },
    /// A server reported a proposal of its own as decided
    /// (`take_decided_proposals`) at an index where the cluster decided
    /// something else, or reported one it never took or reported before.
    ReportedWrongly {
        /// The server that reported.
        pid: NodeId,
        /// The index it reported.
        idx: u64,
        /// What it had taken for the proposal, if it knew the proposal.
        proposed: Option<String>,
        /// What the cluster decided at `idx`, if anything yet.
        decided: Option<String>,
    },
    /// Two servers applied the same decided prefix to their replicas of the
    /// state machine and got different states: the state machine is not
    /// deterministic (it depends on the server, a clock, a random number,
    /// the order of a hash map, ...).
    ReplicasDiverged {
        /// The number of decided entries both applied.
        applied: u64,
        /// One server.
        a: NodeId,
        /// Its replica's state.
        a_state: String,
        /// The other server.
        b: NodeId,
        /// Its replica's state.
        b_state: String,
    },
    /// The user's invariant failed on a server's replica after it applied
    /// the entry at `idx`.
    StateInvariant {
        /// The server whose replica failed it.
        pid: NodeId,
        /// The index of the entry just applied.
        idx: u64,
        /// What the invariant said.
        message: String,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { seed, tick, kind } = self;
        write!(f, "[seed {seed}, tick {tick}] ")?;
        match kind {
            ViolationKind::DecidedPrefixDisagreement {
                idx,
                first,
                first_entry,
                other,
                other_entry,
            } => write!(
                f,
                "decided prefixes disagree at index {idx}: server {first} decided {first_entry}, \
                 server {other} decided {other_entry}"
            ),
            ViolationKind::DecidedIndexDecreased { pid, was, now } => write!(
                f,
                "server {pid}'s decided index went down from {was} to {now}"
            ),
            ViolationKind::NotProposed { pid, idx, entry } => write!(
                f,
                "server {pid} decided {entry} at index {idx}, which was never proposed \
                 through the simulator or is decided more often than it was proposed"
            ),
            ViolationKind::ReportedWrongly {
                pid,
                idx,
                proposed,
                decided,
            } => match proposed {
                Some(p) => write!(
                    f,
                    "server {pid} reported its proposal {p} decided at index {idx}, \
                     where the cluster decided {decided:?}"
                ),
                None => write!(
                    f,
                    "server {pid} reported a proposal decided at index {idx} that it never \
                     took or already reported"
                ),
            },
            ViolationKind::ReplicasDiverged {
                applied,
                a,
                a_state,
                b,
                b_state,
            } => write!(
                f,
                "the replicas of servers {a} and {b} differ after applying the first {applied} \
                 decided entries: {a_state} vs {b_state}"
            ),
            ViolationKind::StateInvariant { pid, idx, message } => write!(
                f,
                "the state invariant failed on server {pid}'s replica after applying index {idx}: {message}"
            ),
        }
    }
}

impl std::error::Error for Violation {}
