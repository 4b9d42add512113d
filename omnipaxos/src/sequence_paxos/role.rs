//! What a server holds because of its role, in one type per role: a
//! field only a leader has lives in [`LeaderState`], one only a follower has
//! in [`FollowerState`], and [`RoleState`] holds exactly one of them. A role
//! change builds the new role's state, so a leader's view of its followers
//! exists only while it leads (openraft keeps its leader the same way).
//!
//! What outlives a role change stays in `SequencePaxos`: the log and its
//! proposals (`pending`, `placed`, forwarded batches, which a follower that
//! becomes leader proposes itself), and what leader election reads after a
//! deposition (`rejected_by`).

use super::{
    Phase, Role,
    dedup::{Found, LogIndex, find_in_run},
    proposal::{Batch, Proposal},
};
use crate::{
    ballot::Ballot,
    messages::{LogSync, PaxosMessage, ProposalAck, SequenceNumber, SnapshotPart},
    storage::{Entry, OriginId, OriginIds, OriginRun, OriginTable},
    util::NodeId,
};
use std::collections::VecDeque;

/// The state of this server's role.
pub(super) enum RoleState<T: Entry> {
    /// Leading `SequencePaxos::leader` (boxed: it is the larger, and a
    /// server follows most of the time).
    Leader(Box<LeaderState<T>>),
    /// Following `SequencePaxos::leader`, or waiting for a leader.
    Follower(FollowerState<T>),
}

/// What only a leader has.
pub(super) struct LeaderState<T: Entry> {
    /// Gathering promises, or replicating.
    pub(super) phase: LeaderPhase<T>,
    /// Per peer, in the order of `SequencePaxos::peers`: the leader's view
    /// of each follower.
    pub(super) progress: Vec<FollowerProgress<T::Snapshot>>,
    /// Proposals gathered for the next `AcceptDecide`.
    pub(super) batch: Batch<T>,
    /// The proposals of the log and the batch, so that a retried one is
    /// not appended again (see `dedup.rs`). Built when the prepare phase
    /// ends, from the adopted log.
    pub(super) log_index: LogIndex,
    /// In the prepare phase: the parts gathered so far of a snapshot a
    /// follower sends after its promise (`Promise::snapshot_follows`), from
    /// one follower at a time.
    pub(super) incoming_snapshot: Option<Box<IncomingSnapshot<T::Snapshot>>>,
    /// The window of undecided entries (see `SequencePaxos::window_room`):
    /// the batches written in this ballot that are not all decided yet, as
    /// `(end index, bytes by Entry::size_hint)`, oldest first.
    pub(super) unsettled: VecDeque<(u64, usize)>,
    /// The sum of the bytes in `unsettled`.
    pub(super) unsettled_bytes: usize,
    /// Set when the window held back part of the batch: the decided index
    /// then. The rest goes once more is decided (`release_held`).
    pub(super) held_at: Option<u64>,
    /// A stop-sign is proposed and waits for the entries the window holds
    /// back: it goes after them, and nothing more is appended before it.
    pub(super) stop_waits: bool,
}

/// A snapshot a follower sends its new leader in parts, as the leader
/// gathers it: in order, the whole of it held until it is installed (a
/// snapshot is restored from all its parts at once).
#[derive(Debug)]
pub(super) struct IncomingSnapshot<P> {
    /// The follower sending it.
    pub(super) from: NodeId,
    /// Which snapshot the parts belong to.
    pub(super) key: SnapshotKey,
    /// The parts received, in order, from the first.
    pub(super) parts: Vec<P>,
    /// Whether a new part came since the resend timer last fired.
    pub(super) progressed: bool,
    /// Resend timeouts in a row without a new part; after a few the leader
    /// gives up on this follower's snapshot and prepares again.
    pub(super) stalls: u32,
}

/// A leader's phase, with what only that phase has.
pub(super) enum LeaderPhase<T: Entry> {
    /// Gathering promises in the leader's ballot.
    Prepare {
        /// The most up-to-date promise seen so far (our own to begin with),
        /// with its log suffix: the leader adopts its log. `None` only while
        /// `finish_prepare` works on it.
        max_promise: Option<Box<MaxPromise<T>>>,
    },
    /// Replicating the log adopted at the end of the prepare phase.
    Accept {
        /// The round in which the adopted log was accepted.
        synced_round: Ballot,
        /// The length of the log the leader synchronised from the promises:
        /// the prefix it shares with followers that accepted in
        /// `synced_round`.
        synced_len: u64,
    },
}

/// The most up-to-date promise of a prepare phase: what it said, who sent
/// it, and the part of its log it carried.
pub(super) type MaxPromise<T> = (PromiseMeta, NodeId, Option<LogSync<T>>);

/// What only a follower has.
pub(super) struct FollowerState<T: Entry> {
    /// Where this follower is: promised and waiting for the leader's log
    /// (`Prepare`), replicating (`Accept`), restarted (`Recover`) or without
    /// a leader (`None`).
    pub(super) phase: Phase,
    /// The last sequence number received from the leader.
    pub(super) last_seq: SequenceNumber,
    /// Messages of the leader's current session that came ahead of one
    /// still missing (the network reordered them), at most
    /// [`MAX_EARLY`](super::MAX_EARLY); handled once the missing one arrives.
    pub(super) early: Vec<PaxosMessage<T>>,
    /// Parts of the leader's decided log (`DecidedSync`) that came ahead of
    /// one still missing, with the ballot they came in; at most
    /// [`MAX_EARLY`](super::MAX_EARLY).
    pub(super) early_parts: Vec<(Ballot, LogSync<T>)>,
    /// The parts gathered so far of a snapshot the leader sends in parts,
    /// and which snapshot they belong to.
    pub(super) snapshot_parts: Option<(SnapshotKey, Vec<T::Snapshot>)>,
    /// A snapshot this follower sends, in parts, after its promise to the
    /// leader of the ballot it is kept with (`Promise::snapshot_follows`);
    /// kept split, so that a new prepare in the same ballot resumes it.
    pub(super) promise_stream: Option<(Ballot, Box<SnapshotStream<T::Snapshot>>)>,
}

impl<T: Entry> FollowerState<T> {
    /// A follower in `phase` that has heard nothing of its leader's session yet.
    pub(super) fn new(phase: Phase) -> Self {
        Self {
            phase,
            last_seq: SequenceNumber::default(),
            early: Vec::new(),
            early_parts: Vec::new(),
            snapshot_parts: None,
            promise_stream: None,
        }
    }
}

impl<T: Entry> FollowerState<T> {
    /// Takes out a message that came early and is next in the leader's
    /// session now.
    pub(super) fn take_next_early(&mut self) -> Option<PaxosMessage<T>> {
        let last = self.last_seq;
        let i = self.early.iter().position(|m| {
            super::seq_of(m).is_some_and(|s| {
                s.session == last.session && Some(s.counter) == last.counter.checked_add(1)
            })
        })?;
        Some(self.early.swap_remove(i))
    }

    /// Keeps only the early messages still ahead in the current session of
    /// ballot `promise`, and none unless replicating.
    pub(super) fn drop_stale_early(&mut self, promise: Ballot) {
        let following = self.phase == Phase::Accept;
        let last = self.last_seq;
        self.early.retain(|m| {
            following
                && super::ballot_of(m) == Some(promise)
                && super::seq_of(m)
                    .is_some_and(|s| s.session == last.session && s.counter > last.counter)
        });
    }
}

impl<T: Entry> LeaderState<T> {
    /// A leader at the start of its prepare phase, before any promise;
    /// `sessions` continues the numbering of this server's earlier sessions
    /// with each peer.
    pub(super) fn new(sessions: &[SequenceNumber], batch_size: usize) -> Self {
        Self {
            phase: LeaderPhase::Prepare { max_promise: None },
            progress: sessions
                .iter()
                .map(|&seq| FollowerProgress {
                    seq,
                    ..FollowerProgress::default()
                })
                .collect(),
            batch: Batch::with_capacity(batch_size),
            log_index: LogIndex::default(),
            incoming_snapshot: None,
            unsettled: VecDeque::new(),
            unsettled_bytes: 0,
            held_at: None,
            stop_waits: false,
        }
    }

    /// Whether the window holds back a buffer's worth already, so that the
    /// leader takes no more proposals (see `SequencePaxos::window_room`).
    #[inline]
    pub(super) fn window_full(&self, buffer_size: usize) -> bool {
        self.held_at.is_some() && self.batch.len() >= buffer_size
    }
}

impl<T: Entry> LeaderState<T> {
    /// Adds a proposal to the batch; returns the batch's length. Its id
    /// joins the index when the batch is flushed ([`Self::note_flushed`]);
    /// until then [`Self::find`] looks in the batch too.
    pub(super) fn gather(&mut self, p: Proposal<T>) -> usize {
        self.batch.push(p);
        self.batch.len()
    }

    /// Notes the ids of a batch written at `first_idx` in the index. Our own
    /// proposals are noted too: a copy of one can come back relayed by a
    /// server that gathered it while it led (leaving them out failed soak
    /// seed 659).
    pub(super) fn note_flushed(&mut self, origins: &OriginIds, first_idx: u64) {
        for run in origins.runs() {
            self.log_index.add_run(&OriginRun {
                idx: run.idx + first_idx,
                ..*run
            });
        }
    }

    /// Where the log (whose end is `log_len`), the batch after it, or the
    /// compacted prefix `table` describes, has `id`.
    pub(super) fn find(&self, id: &OriginId, table: &OriginTable, log_len: u64) -> Option<Found> {
        // The batch's runs are the newest: a later life in them wins.
        let batch = self.batch.origins.runs();
        if let Some(found) = batch
            .iter()
            .rev()
            .find_map(|run| find_in_run(run, log_len, id))
        {
            return Some(found);
        }
        self.log_index.find(id, table)
    }
}

impl<T: Entry> RoleState<T> {
    /// Which role this is.
    pub(super) fn role(&self) -> Role {
        match self {
            Self::Leader(_) => Role::Leader,
            Self::Follower(_) => Role::Follower,
        }
    }

    /// Where in the protocol this server is.
    pub(super) fn phase(&self) -> Phase {
        match self {
            Self::Leader(l) => match l.phase {
                LeaderPhase::Prepare { .. } => Phase::Prepare,
                LeaderPhase::Accept { .. } => Phase::Accept,
            },
            Self::Follower(f) => f.phase,
        }
    }

    /// The leader's state, if this server leads.
    pub(super) fn leader(&self) -> Option<&LeaderState<T>> {
        match self {
            Self::Leader(l) => Some(l),
            Self::Follower(_) => None,
        }
    }

    /// The leader's state, if this server leads.
    pub(super) fn leader_mut(&mut self) -> Option<&mut LeaderState<T>> {
        match self {
            Self::Leader(l) => Some(l),
            Self::Follower(_) => None,
        }
    }

    /// The follower's state, if this server follows.
    pub(super) fn follower(&self) -> Option<&FollowerState<T>> {
        match self {
            Self::Follower(f) => Some(f),
            Self::Leader(_) => None,
        }
    }

    /// The follower's state, if this server follows.
    pub(super) fn follower_mut(&mut self) -> Option<&mut FollowerState<T>> {
        match self {
            Self::Follower(f) => Some(f),
            Self::Leader(_) => None,
        }
    }

    /// The leader's state, on a path only a leader takes.
    pub(super) fn lead(&self) -> &LeaderState<T> {
        self.leader()
            .expect("a leader-only path: reached from the leader's dispatch or while leading")
    }

    /// The leader's state, on a path only a leader takes.
    pub(super) fn lead_mut(&mut self) -> &mut LeaderState<T> {
        self.leader_mut()
            .expect("a leader-only path: reached from the leader's dispatch or while leading")
    }

    /// The follower's state, on a path only a follower takes.
    pub(super) fn follow(&self) -> &FollowerState<T> {
        self.follower()
            .expect("a follower-only path: reached from the follower's dispatch or while following")
    }

    /// The follower's state, on a path only a follower takes.
    pub(super) fn follow_mut(&mut self) -> &mut FollowerState<T> {
        self.follower_mut()
            .expect("a follower-only path: reached from the follower's dispatch or while following")
    }
}

/// The leader's view of one follower in the current ballot; `P` is the
/// snapshot type (see `snapshot_stream`).
#[derive(Clone, Debug)]
#[derive_where::derive_where(Default)]
pub(super) struct FollowerProgress<P> {
    /// The follower's promise, once received in this ballot.
    pub(super) promise: Option<PromiseMeta>,
    /// How much of the leader's log the follower accepted; `None` until it
    /// received its `AcceptSync`.
    pub(super) accepted_idx: Option<u64>,
    /// The last sequence number sent to the follower.
    pub(super) seq: SequenceNumber,
    /// Whether the follower was sent its `AcceptSync` in this ballot, so
    /// that new entries go to it.
    pub(super) synced: bool,
    /// While the follower is brought up to date chunk by chunk (its log
    /// sync did not reach the end of our log): where it stands.
    pub(super) catch_up: Option<CatchUp>,
    /// While the follower takes our decided prefix in parts before its
    /// `AcceptSync` (see `leader::start_decided_parts`): where it stands.
    pub(super) decided_parts: Option<DecidedParts>,
    /// While the follower is sent a snapshot in parts before its log can be
    /// synchronised (see `leader::start_snapshot_stream`): the parts and
    /// where it stands.
    pub(super) snapshot_stream: Option<Box<SnapshotStream<P>>>,
    /// Acknowledgements of this follower's forwarded batches, to ride on the
    /// next `AcceptDecide` to it (the one carrying their entries).
    pub(super) pending_acks: Vec<ProposalAck>,
}

impl<P> FollowerProgress<P> {
    /// Whether new entries (and a new stop-sign) go to the follower as they
    /// come: it is synchronised and not being brought up to date in chunks.
    pub(super) fn takes_new_entries(&self) -> bool {
        self.synced && self.catch_up.is_none()
    }
}

/// A follower far behind, brought up to date in chunks (see
/// `leader::pump_catch_up`): its `AcceptSync` carried the first chunk, the
/// rest follow as `AcceptDecide`s of the same session, at most
/// [`CATCH_UP_WINDOW`](super::CATCH_UP_WINDOW) unacknowledged at a time. New entries do not go to
/// the follower meanwhile (they are in our log, so a later chunk carries
/// them), nor does the stop-sign (it follows the last chunk).
#[derive(Clone, Debug, Default)]
pub(super) struct CatchUp {
    /// The next index of our log to send.
    pub(super) next: u64,
    /// The end of each chunk sent and not yet acknowledged, oldest first.
    pub(super) in_flight: VecDeque<u64>,
    /// Whether the follower acknowledged a chunk since the resend timer last
    /// fired; if not, it is prepared again and resumes from what it holds.
    pub(super) progressed: bool,
}

/// A follower far behind our decided prefix after a leader change, taking
/// it in parts (`DecidedSync`s), at most [`CATCH_UP_WINDOW`](super::CATCH_UP_WINDOW) unanswered at a
/// time; each promise it answers with moves the window on. Once the parts
/// are in, its `AcceptSync` carries the rest.
#[derive(Clone, Debug)]
pub(super) struct DecidedParts {
    /// Where the next part starts: the end of the last one sent.
    pub(super) next: u64,
    /// The end of each part sent and not yet answered, oldest first.
    pub(super) in_flight: VecDeque<u64>,
    /// Parts stop before one would reach here: what the `AcceptSync` must
    /// carry at least (see `leader::send_accept_sync`).
    pub(super) until: u64,
    /// Whether a part was answered since the resend timer last fired; if
    /// not, one was lost (or its answer was), and the follower is prepared
    /// again.
    pub(super) progressed: bool,
}

/// A snapshot too large for one message, on its way in parts (from a leader
/// to a follower, or from a follower to its new leader after its promise),
/// at most [`CATCH_UP_WINDOW`](super::CATCH_UP_WINDOW) unacknowledged at a time. The sender keeps the
/// parts until the receiver holds all of them, since a snapshot of the same
/// prefix made again could split differently.
#[derive(Clone, Debug)]
pub(super) struct SnapshotStream<P> {
    /// The end of the prefix the snapshot stands for.
    pub(super) sync_idx: u64,
    /// Where a delta starts; `None` for a complete snapshot.
    pub(super) delta_from: Option<u64>,
    /// Every part, in order.
    pub(super) parts: Vec<P>,
    /// What the sender's log held below `sync_idx`, sent with the last part.
    pub(super) origin_table: OriginTable,
    /// How many parts were sent.
    pub(super) sent: usize,
    /// How many the receiver holds, by its acknowledgements.
    pub(super) acked: usize,
    /// Whether the receiver acknowledged a part since the resend timer last
    /// fired; if not, the parts from the first unacknowledged one go again.
    pub(super) progressed: bool,
    /// Resend timeouts in a row without an acknowledgement.
    pub(super) stalls: u32,
}

impl<P: Clone> SnapshotStream<P> {
    /// A stream of `parts` of the snapshot of the prefix below `sync_idx`
    /// (a delta from `delta_from`), nothing sent yet.
    pub(super) fn new(
        sync_idx: u64,
        delta_from: Option<u64>,
        parts: Vec<P>,
        origin_table: OriginTable,
    ) -> Self {
        Self {
            sync_idx,
            delta_from,
            parts,
            origin_table,
            sent: 0,
            acked: 0,
            progressed: true,
            stalls: 0,
        }
    }

    /// The next part to send in ballot `n`, if the window has room for it.
    pub(super) fn next_part<T: Entry<Snapshot = P>>(
        &mut self,
        n: Ballot,
    ) -> Option<SnapshotPart<T>> {
        if self.sent >= self.parts.len() || self.sent - self.acked >= super::CATCH_UP_WINDOW {
            return None;
        }
        let last = self.sent + 1 == self.parts.len();
        let part = SnapshotPart {
            n,
            sync_idx: self.sync_idx,
            delta_from: self.delta_from,
            part: self.sent as u32,
            parts: self.parts.len() as u32,
            snapshot: self.parts[self.sent].clone(),
            origin_table: last.then(|| self.origin_table.clone()),
        };
        self.sent += 1;
        Some(part)
    }
}

/// Which snapshot sent in parts a follower is gathering: the parts of one
/// snapshot all carry the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct SnapshotKey {
    /// The ballot of the leader sending it.
    pub(super) n: Ballot,
    /// The end of the prefix the snapshot stands for.
    pub(super) sync_idx: u64,
    /// Where a delta starts; `None` for a complete snapshot.
    pub(super) delta_from: Option<u64>,
    /// How many parts make the snapshot.
    pub(super) parts: u32,
}

impl SnapshotKey {
    /// The snapshot `part` belongs to, if a correct sender could have sent
    /// it: a part within a count of at most
    /// [`MAX_SNAPSHOT_PARTS`](super::MAX_SNAPSHOT_PARTS), and a delta that
    /// starts within the prefix it stands for.
    pub(super) fn of<T: Entry>(part: &SnapshotPart<T>) -> Option<Self> {
        let well_formed = part.parts > 0
            && part.part < part.parts
            && part.parts <= super::MAX_SNAPSHOT_PARTS
            && part.delta_from.is_none_or(|d| d <= part.sync_idx);
        well_formed.then_some(Self {
            n: part.n,
            sync_idx: part.sync_idx,
            delta_from: part.delta_from,
            parts: part.parts,
        })
    }
}

/// What a promise told the leader about the follower's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct PromiseMeta {
    /// The round the follower's log was accepted in.
    pub(super) n_accepted: Ballot,
    /// The length of the follower's log.
    pub(super) accepted_idx: u64,
    /// How much of it the follower knows to be decided.
    pub(super) decided_idx: u64,
    /// The end of the prefix a snapshot the follower sends in parts stands
    /// for, if its log comes that way (`Promise::snapshot_follows`).
    pub(super) snapshot_follows: Option<u64>,
}
