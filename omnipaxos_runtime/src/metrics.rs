//! [`NodeMetrics`]: what a node counts about itself, for an application to
//! export to its monitoring (Prometheus, StatsD, logs) in whatever form it uses.
//!
//! The counters live in atomics that every clone of an
//! [`OmniPaxosNode`](crate::OmniPaxosNode) shares with the task that drives
//! the protocol. Calls count their own outcome when they resolve, on the
//! caller's task; the driver counts leader changes once per step. Nothing is
//! allocated to count, and [`OmniPaxosNode::metrics`](crate::OmniPaxosNode::metrics)
//! reads them without a round trip to the driver.

use crate::RuntimeError;
use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering::Relaxed},
};

/// What a node counted since it started, from
/// [`OmniPaxosNode::metrics`](crate::OmniPaxosNode::metrics).
///
/// Counters only grow; `decided_idx` tells the state now. Each counter is
/// read on its own, so a snapshot taken while calls resolve may be a moment
/// apart between fields, never torn within one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeMetrics {
    /// How often the leader this node follows changed to a new leader
    /// ballot: each is a new leadership, even when the same server leads again
    /// under a higher ballot. The first leader counts; losing the leader
    /// without learning a new one does not (the leader id drops to none and
    /// comes back unchanged if the same leadership resumes).
    pub leader_changes: u64,
    /// How often this node adopted a leader ballot of its own: each time it
    /// began a prepare phase to lead with that ballot, whether or not it then
    /// won a quorum of promises. A subset of `leader_changes`; a cluster whose
    /// servers keep raising this counter is fighting over leadership.
    pub elections_started: u64,
    /// Appends made on this node ([`OmniPaxosNode::append`](crate::OmniPaxosNode::append)
    /// and [`append_nowait`](crate::OmniPaxosNode::append_nowait)), by how
    /// each ended for its caller.
    pub appends: OutcomeCounts,
    /// Linearizable reads made on this node
    /// ([`OmniPaxosNode::linearizable_read`](crate::OmniPaxosNode::linearizable_read)),
    /// by how each ended for its caller.
    pub reads: OutcomeCounts,
    /// Entries below this index are decided (as in
    /// [`NodeStatus::decided_idx`](crate::NodeStatus::decided_idx)).
    pub decided_idx: u64,
    /// Outgoing messages dropped because an outgoing channel was full (as in
    /// [`NodeStatus::dropped_messages`](crate::NodeStatus::dropped_messages)).
    pub dropped_messages: u64,
}

/// How many calls of one kind ended in each way, part of [`NodeMetrics`].
///
/// A call is counted once, when its caller learns the outcome: an append
/// that timed out for its caller counts as `timeout` even if it is decided
/// later. The names of the fields are the labels [`iter`](Self::iter) gives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutcomeCounts {
    /// Succeeded: the append was decided, or the read got its read point.
    pub ok: u64,
    /// Failed with [`RuntimeError::NoLeader`]: no leader within the wait.
    pub no_leader: u64,
    /// Failed with [`RuntimeError::BufferFull`]: the proposal buffer was full.
    pub buffer_full: u64,
    /// Failed with [`RuntimeError::Timeout`]: no outcome in time.
    pub timeout: u64,
    /// Failed with [`RuntimeError::Reconfigured`] or [`RuntimeError::Removed`]:
    /// the configuration ended.
    pub reconfigured: u64,
    /// Failed with [`RuntimeError::ShutDown`]: the node stopped.
    pub shut_down: u64,
    /// Failed with [`RuntimeError::Storage`]: a storage write failed and the
    /// node stopped acting.
    pub storage_failure: u64,
    /// Refused by the protocol ([`RuntimeError::Refused`],
    /// [`RuntimeError::InvalidReconfiguration`],
    /// [`RuntimeError::ReconfigurationPending`], [`RuntimeError::Compaction`]).
    pub rejected: u64,
    /// Failed because the node never started ([`RuntimeError::Config`],
    /// [`RuntimeError::NoRuntime`]).
    pub not_started: u64,
    /// The caller dropped the call (or its [`PendingAppend`](crate::PendingAppend))
    /// before it resolved, as a client that goes away does; an abandoned
    /// append still proceeds.
    pub abandoned: u64,
}

impl OutcomeCounts {
    /// Every outcome with its label (the field's name, e.g. `"no_leader"`),
    /// always all of them and in the same order, for an exporter that turns
    /// them into one labelled counter.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> {
        [
            ("ok", self.ok),
            ("no_leader", self.no_leader),
            ("buffer_full", self.buffer_full),
            ("timeout", self.timeout),
            ("reconfigured", self.reconfigured),
            ("shut_down", self.shut_down),
            ("storage_failure", self.storage_failure),
            ("rejected", self.rejected),
            ("not_started", self.not_started),
            ("abandoned", self.abandoned),
        ]
        .into_iter()
    }

    /// How many calls ended, in any way.
    pub fn total(&self) -> u64 {
        self.iter().map(|(_, n)| n).sum()
    }
}

/// The ways a call can end, one counter each; the discriminant indexes
/// [`OutcomeCounters`].
#[derive(Clone, Copy, Debug)]
enum Outcome {
    Ok,
    NoLeader,
    BufferFull,
    Timeout,
    Reconfigured,
    ShutDown,
    StorageFailure,
    Rejected,
    NotStarted,
    Abandoned,
}

impl Outcome {
    const COUNT: usize = Self::Abandoned as usize + 1;

    fn of<R>(result: &Result<R, RuntimeError>) -> Self {
        let Err(e) = result else {
            return Self::Ok;
        };
        // Exhaustive on purpose: a new error variant must be given a counter.
        match e {
            RuntimeError::NoLeader => Self::NoLeader,
            RuntimeError::BufferFull => Self::BufferFull,
            RuntimeError::Timeout => Self::Timeout,
            RuntimeError::Reconfigured(_) | RuntimeError::Removed(_) => Self::Reconfigured,
            RuntimeError::ReconfigurationIncomplete { .. } => Self::Timeout,
            RuntimeError::ShutDown => Self::ShutDown,
            RuntimeError::Storage(_) => Self::StorageFailure,
            RuntimeError::Refused(_)
            | RuntimeError::InvalidReconfiguration(_)
            | RuntimeError::ReconfigurationPending
            | RuntimeError::Compaction(_) => Self::Rejected,
            RuntimeError::Config(_) | RuntimeError::NoRuntime => Self::NotStarted,
        }
    }
}

/// The live counters of one kind of call.
#[derive(Debug, Default)]
struct OutcomeCounters([AtomicU64; Outcome::COUNT]);

impl OutcomeCounters {
    fn count(&self, outcome: Outcome) {
        self.0[outcome as usize].fetch_add(1, Relaxed);
    }

    fn snapshot(&self) -> OutcomeCounts {
        let n = |o: Outcome| self.0[o as usize].load(Relaxed);
        OutcomeCounts {
            ok: n(Outcome::Ok),
            no_leader: n(Outcome::NoLeader),
            buffer_full: n(Outcome::BufferFull),
            timeout: n(Outcome::Timeout),
            reconfigured: n(Outcome::Reconfigured),
            shut_down: n(Outcome::ShutDown),
            storage_failure: n(Outcome::StorageFailure),
            rejected: n(Outcome::Rejected),
            not_started: n(Outcome::NotStarted),
            abandoned: n(Outcome::Abandoned),
        }
    }
}

/// Which kind of call a [`CallRecord`] counts.
#[derive(Clone, Copy, Debug)]
pub(crate) enum CallKind {
    Append,
    Read,
}

/// The live counters behind [`NodeMetrics`], shared by every handle of one
/// node and its driver. The figures that the node's status already carries
/// (decided index, dropped messages) are read from there instead.
#[derive(Debug, Default)]
pub(crate) struct MetricCounters {
    leader_changes: AtomicU64,
    elections_started: AtomicU64,
    appends: OutcomeCounters,
    reads: OutcomeCounters,
}

impl MetricCounters {
    /// Counts a new leader ballot; `own` says whether it is this node's.
    /// Only the driver calls this.
    pub(crate) fn count_leader_change(&self, own: bool) {
        self.leader_changes.fetch_add(1, Relaxed);
        if own {
            self.elections_started.fetch_add(1, Relaxed);
        }
    }

    /// The counters now, with the status figures filled in by the caller.
    pub(crate) fn snapshot(&self, decided_idx: u64, dropped_messages: u64) -> NodeMetrics {
        NodeMetrics {
            leader_changes: self.leader_changes.load(Relaxed),
            elections_started: self.elections_started.load(Relaxed),
            appends: self.appends.snapshot(),
            reads: self.reads.snapshot(),
            decided_idx,
            dropped_messages,
        }
    }

    fn of(&self, kind: CallKind) -> &OutcomeCounters {
        match kind {
            CallKind::Append => &self.appends,
            CallKind::Read => &self.reads,
        }
    }
}

/// One call being counted: [`finish`](Self::finish) counts its outcome, and
/// dropping it unfinished counts it as abandoned, so every call is counted
/// exactly once however its caller leaves it.
#[derive(Debug)]
pub(crate) struct CallRecord {
    /// `None` once counted.
    counters: Option<Arc<MetricCounters>>,
    kind: CallKind,
}

impl CallRecord {
    pub(crate) fn start(counters: &Arc<MetricCounters>, kind: CallKind) -> Self {
        Self {
            counters: Some(Arc::clone(counters)),
            kind,
        }
    }

    /// Counts the call's outcome; later calls, and the drop, count nothing.
    pub(crate) fn finish<R>(&mut self, result: &Result<R, RuntimeError>) {
        if let Some(c) = self.counters.take() {
            c.of(self.kind).count(Outcome::of(result));
        }
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        if let Some(c) = self.counters.take() {
            c.of(self.kind).count(Outcome::Abandoned);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_call_is_counted_once_under_its_outcome_and_a_dropped_one_as_abandoned() {
        let counters = Arc::new(MetricCounters::default());
        let mut ok = CallRecord::start(&counters, CallKind::Append);
        ok.finish(&Ok::<u64, RuntimeError>(3));
        // A second finish and the drop after a finish count nothing.
        ok.finish(&Err::<u64, _>(RuntimeError::Timeout));
        drop(ok);
        let mut late = CallRecord::start(&counters, CallKind::Append);
        late.finish(&Err::<u64, _>(RuntimeError::Timeout));
        drop(CallRecord::start(&counters, CallKind::Append));
        let mut read = CallRecord::start(&counters, CallKind::Read);
        read.finish(&Err::<u64, _>(RuntimeError::ReconfigurationPending));

        let m = counters.snapshot(7, 1);
        let appends = OutcomeCounts {
            ok: 1,
            timeout: 1,
            abandoned: 1,
            ..OutcomeCounts::default()
        };
        let reads = OutcomeCounts {
            rejected: 1,
            ..OutcomeCounts::default()
        };
        assert_eq!(
            m,
            NodeMetrics {
                appends,
                reads,
                decided_idx: 7,
                dropped_messages: 1,
                ..NodeMetrics::default()
            }
        );
        assert_eq!((m.appends.total(), m.reads.total()), (3, 1));
    }

    #[test]
    fn outcome_labels_are_the_field_names_in_a_fixed_order() {
        let labels: Vec<_> = OutcomeCounts::default().iter().map(|(l, _)| l).collect();
        assert_eq!(
            labels,
            [
                "ok",
                "no_leader",
                "buffer_full",
                "timeout",
                "reconfigured",
                "shut_down",
                "storage_failure",
                "rejected",
                "not_started",
                "abandoned"
            ]
        );
    }

    #[test]
    fn a_leader_change_of_our_own_ballot_is_also_an_election_started_here() {
        let counters = MetricCounters::default();
        counters.count_leader_change(false);
        counters.count_leader_change(true);
        let m = counters.snapshot(0, 0);
        assert_eq!((m.leader_changes, m.elections_started), (2, 1));
    }
}
