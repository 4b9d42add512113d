//! Sequence Paxos: replicates the log under the leader that Ballot Leader
//! Election chose.
//!
//! ```text
//!  leader L (ballot n)                        follower F
//!  ── Prepare phase ───────────────────────────────────────────────────────
//!   Prepare{n, ld, na, la}        ──────────▶  promise n; send what L may lack
//!                                 ◀──────────  Promise{n, na, ld, la, log_sync}
//!   on a read quorum of promises: adopt the most up-to-date log
//!   (highest na, then longest), accept it in round n
//!  ── Accept phase ────────────────────────────────────────────────────────
//!   AcceptSync{n, seq, ld, log_sync} ───────▶  install L's log from sync_idx
//!                                 ◀──────────  Accepted{n, la}
//!   append -> AcceptDecide{n, seq, ld, entries} ▶ append
//!                                 ◀──────────  Accepted{n, la}
//!   write quorum accepted idx -> decided; Decide{n, seq, ld} ▶
//!  ── Repair ──────────────────────────────────────────────────────────────
//!   F sees a gap in seq, or restarted   ──▶  PrepareReq{n}: L prepares F again
//! ```
//!
//! `leader.rs` holds what only a leader does, `follower.rs` what only a
//! follower does; this file holds the state and the dispatch.

mod compaction;
mod follower;
mod leader;
mod queries;
mod read;
mod reconfig;

pub use read::{ReadError, ReadId};

use crate::{
    ballot::Ballot,
    clock::LogicalClock,
    config::OmniPaxosConfig,
    errors::{ProposeErr, StorageError},
    logging::{Logger, log},
    messages::{
        ForwardId, LogSync, Message, PaxosMessage, PaxosMsg, ProposalAck, SequenceNumber,
        SnapshotType,
    },
    quorum::Quorum,
    storage::{Entry, Snapshot, Storage, StorageResult, internal::InternalStorage},
    util::{ConfigurationId, MAX_LOG_INDEX, NodeId, StopSign},
};
use std::collections::{HashMap, VecDeque};

/// Names one proposal made on this server, so that the caller learns the
/// index it was decided at. Handed out by `append` in increasing order.
pub(crate) type Tag = u64;

/// The tag of an entry nobody waits for (another server's proposal, or one
/// from before a restart).
pub(crate) const NO_TAG: Tag = 0;

/// Whether this server leads or follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Role {
    /// This server leads the current ballot.
    Leader,
    /// This server follows another (or has no leader yet).
    Follower,
}

/// Where in the protocol this server is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Phase {
    /// Leader: gathering promises. Follower: promised, waiting for the leader's log.
    Prepare,
    /// Replicating: the log is synchronised with the leader's.
    Accept,
    /// Restarted after a crash: waiting to be prepared by the current leader.
    Recover,
    /// No leader known yet.
    None,
}

/// The leader's view of one follower in the current ballot; `P` is the
/// snapshot type (see `snapshot_stream`).
#[derive(Clone, Debug)]
#[derive_where::derive_where(Default)]
struct FollowerProgress<P> {
    /// The follower's promise, once received in this ballot.
    promise: Option<PromiseMeta>,
    /// How much of the leader's log the follower accepted; `None` until it
    /// received its `AcceptSync`.
    accepted_idx: Option<u64>,
    /// The last sequence number sent to the follower.
    seq: SequenceNumber,
    /// Whether the follower was sent its `AcceptSync` in this ballot, so
    /// that new entries go to it.
    synced: bool,
    /// While the follower is brought up to date chunk by chunk (its log
    /// sync did not reach the end of our log): where it stands.
    catch_up: Option<CatchUp>,
    /// While the follower takes our decided prefix in parts before its
    /// `AcceptSync` (see `leader::start_decided_parts`): where it stands.
    decided_parts: Option<DecidedParts>,
    /// While the follower is sent a snapshot in parts before its log can be
    /// synchronised (see `leader::start_snapshot_stream`): the parts and
    /// where it stands.
    snapshot_stream: Option<Box<SnapshotStream<P>>>,
    /// Acknowledgements of this follower's forwarded batches, to ride on the
    /// next `AcceptDecide` to it (the one carrying their entries).
    pending_acks: Vec<ProposalAck>,
    /// Index, in the outgoing buffer, of an `AcceptDecide` to this follower
    /// that is not yet taken by the driver: new entries join it instead of
    /// making a new message.
    open_accept: Option<usize>,
}

/// A follower far behind, brought up to date in chunks (see
/// `leader::pump_catch_up`): its `AcceptSync` carried the first chunk, the
/// rest follow as `AcceptDecide`s of the same session, at most
/// [`CATCH_UP_WINDOW`] unacknowledged at a time. New entries do not go to
/// the follower meanwhile (they are in our log, so a later chunk carries
/// them), nor does the stop-sign (it follows the last chunk).
#[derive(Clone, Debug, Default)]
struct CatchUp {
    /// The next index of our log to send.
    next: u64,
    /// The end of each chunk sent and not yet acknowledged, oldest first.
    in_flight: VecDeque<u64>,
    /// Whether the follower acknowledged a chunk since the resend timer last
    /// fired; if not, it is prepared again and resumes from what it holds.
    progressed: bool,
}

/// A follower far behind our decided prefix after a leader change, taking
/// it in parts (`DecidedSync`s), at most [`CATCH_UP_WINDOW`] unanswered at a
/// time; each promise it answers with moves the window on. Once the parts
/// are in, its `AcceptSync` carries the rest.
#[derive(Clone, Debug)]
struct DecidedParts {
    /// Where the next part starts: the end of the last one sent.
    next: u64,
    /// The end of each part sent and not yet answered, oldest first.
    in_flight: VecDeque<u64>,
    /// Parts stop before one would reach here: what the `AcceptSync` must
    /// carry at least (see `leader::send_accept_sync`).
    until: u64,
    /// Whether a part was answered since the resend timer last fired; if
    /// not, one was lost (or its answer was), and the follower is prepared
    /// again.
    progressed: bool,
}

/// A snapshot too large for one message, on its way to a follower in parts,
/// at most [`CATCH_UP_WINDOW`] unacknowledged at a time. The leader keeps the
/// parts until the follower holds all of them, since a snapshot of the same
/// prefix made again could split differently.
#[derive(Clone, Debug)]
struct SnapshotStream<P> {
    /// The end of the prefix the snapshot stands for.
    sync_idx: u64,
    /// Where a delta starts; `None` for a complete snapshot.
    delta_from: Option<u64>,
    /// Every part, in order.
    parts: Vec<P>,
    /// How many parts were sent.
    sent: usize,
    /// How many the follower holds, by its acknowledgements.
    acked: usize,
    /// Whether the follower acknowledged a part since the resend timer last
    /// fired; if not, the parts from the first unacknowledged one go again.
    progressed: bool,
    /// Resend timeouts in a row without an acknowledgement.
    stalls: u32,
}

/// Which snapshot sent in parts a follower is gathering: the parts of one
/// snapshot all carry the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SnapshotKey {
    n: Ballot,
    sync_idx: u64,
    delta_from: Option<u64>,
    parts: u32,
}

/// The most parts a follower takes a snapshot in: a bound on what a faulty
/// leader can make it gather, far above what a real snapshot needs (at the
/// default `max_message_bytes`, 2 MiB parts make 128 GiB).
const MAX_SNAPSHOT_PARTS: u32 = 1 << 16;

/// How many catch-up chunks may be unacknowledged per follower: enough to
/// keep a link busy over a round trip, few enough to bound what a slow
/// follower makes us hold.
const CATCH_UP_WINDOW: usize = 4;

/// What a promise told the leader about the follower's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PromiseMeta {
    n_accepted: Ballot,
    accepted_idx: u64,
    decided_idx: u64,
}

/// Proposals a follower forwarded, kept until they are decided: a leader
/// that acknowledged them may still be deposed before deciding them.
#[derive(Debug)]
struct ForwardedBatch<T> {
    id: ForwardId,
    entries: Vec<T>,
    /// The tag of each entry (see [`Tag`]).
    tags: Vec<Tag>,
    /// The leader's ballot and the index it gave the first entry, once acknowledged.
    acked: Option<(Ballot, u64)>,
}

pub(crate) struct SequencePaxos<T, S>
where
    T: Entry,
    S: Storage<T>,
{
    pub(crate) storage: InternalStorage<S, T>,
    pid: NodeId,
    peers: Vec<NodeId>,
    configuration_id: ConfigurationId,
    quorum: Quorum,
    role: Role,
    phase: Phase,
    /// The ballot of the leader this server follows or is.
    leader: Ballot,
    /// Per peer, in the order of `peers`: the leader's view of each follower.
    progress: Vec<FollowerProgress<T::Snapshot>>,
    /// The most up-to-date promise seen in the prepare phase (with its log
    /// suffix); the leader adopts its log.
    max_promise: Option<(PromiseMeta, NodeId, Option<LogSync<T>>)>,
    /// The round in which the adopted log was accepted.
    synced_round: Ballot,
    /// The length of the log the leader synchronised from the promises: the
    /// prefix it shares with followers that accepted in `max_promise`'s round.
    synced_len: u64,
    /// Follower: the last sequence number received from the leader.
    last_seq: SequenceNumber,
    /// Follower: messages of the leader's current session that came ahead
    /// of one still missing (the network reordered them), at most
    /// [`MAX_EARLY`]; handled once the missing one arrives.
    early: Vec<PaxosMessage<T>>,
    /// Follower: parts of the leader's decided log (`DecidedSync`) that came
    /// ahead of one still missing, with the ballot they came in; at most
    /// [`MAX_EARLY`].
    early_parts: Vec<(Ballot, LogSync<T>)>,
    /// Follower: the parts gathered so far of a snapshot the leader sends in
    /// parts, and which snapshot they belong to.
    snapshot_parts: Option<(SnapshotKey, Vec<T::Snapshot>)>,
    /// Proposals waiting for a leader (or for this leader's prepare phase to end).
    pending: Vec<T>,
    /// The tag of each entry in `pending`.
    pending_tags: Vec<Tag>,
    /// Leader: proposals gathered for the next batch.
    batch: Vec<T>,
    /// The tagged entries of `batch`, as `(position in batch, tag)`; most
    /// entries are untagged, so the hot path stores nothing for them.
    batch_tags: Vec<(usize, Tag)>,
    /// This server's tagged proposals that are in its log, as
    /// `(index, tag)`, accepted in the log's accepted round: each log sync
    /// keeps or cuts them (cut ones are proposed again, tag and all).
    /// Sorted by index, so decided ones leave from the front.
    placed: VecDeque<(u64, Tag)>,
    /// The next tag `append` hands out.
    next_tag: Tag,
    /// Tagged proposals known to be decided, as `(tag, index)`, until the
    /// driver takes them.
    decided_tags: Vec<(Tag, u64)>,
    /// Follower: forwarded batches not yet known to be decided.
    forwarded: VecDeque<ForwardedBatch<T>>,
    /// How many entries `forwarded` holds, bounded by `buffer_size`.
    forwarded_len: usize,
    next_forward_seq: u64,
    /// Follower: index, in the outgoing buffer, of an `Accepted` not yet taken.
    open_accepted: Option<usize>,
    /// Follower: index, in the outgoing buffer, of a `ProposalForward` not yet taken.
    open_forward: Option<usize>,
    /// The pull replies waiting in the outgoing buffer, as `(puller, first
    /// index asked)`: at most `MAX_QUEUED_PULL_REPLIES` per puller, and one
    /// per range, until the driver takes them, so that a burst of pulls
    /// queues no more than a puller's window of replies.
    pull_replies: Vec<(NodeId, crate::migration::PullKey)>,
    /// Leader: recently appended forwarded batches, so that a retried batch
    /// is acknowledged rather than appended twice.
    recent_forwards: RecentForwards,
    buffer_size: usize,
    /// At most this many entries per catch-up chunk.
    max_entries_per_message: usize,
    /// At most this many bytes (by `Entry::size_hint`) per catch-up chunk.
    max_message_bytes: usize,
    batch_size: usize,
    /// Fires when unanswered messages are sent again.
    resend_timer: LogicalClock,
    /// Fires when a partly filled batch is sent anyway.
    flush_timer: LogicalClock,
    outgoing: Vec<Message<T>>,
    /// Reused buffer for the decided-index computation.
    scratch: Vec<u64>,
    /// A stop-sign requested here that is not yet in the log: proposed once
    /// this server leads, or forwarded (and retried) to the leader.
    pending_stopsign: Option<StopSign>,
    /// This configuration's stop-sign, decided without this server: a server
    /// that knew told it (see `handle_stopsign_decided`). Not persisted:
    /// after a restart it is told again.
    learned_stop: Option<reconfig::LearnedStop>,
    /// Linearizable reads in progress, in either role.
    reads: read::Reads,
    /// Leader: the highest ballot a follower refused us for, since leader
    /// election last looked.
    rejected_by: Option<Ballot>,
    /// Set by the first failed storage write; from then on this server stays silent.
    storage_failure: Option<StorageError>,
    /// Where protocol events are logged (nothing without feature `logging`).
    #[cfg_attr(
        not(feature = "logging"),
        allow(dead_code, reason = "read by log lines")
    )]
    logger: Logger,
}

/// The forwarded batches a leader appended, by `(origin, id)`, with the
/// indices they took. A record stays valid while the log holds those indices
/// unchanged, across ballots (a leader that re-prepares keeps its log), and
/// is dropped when a log sync cuts them. Bounded: the oldest are forgotten
/// first, by which time their origin has long had the ack.
#[derive(Debug, Default)]
struct RecentForwards {
    /// `(origin, id)` -> `(first_idx, len)`.
    batches: HashMap<(NodeId, ForwardId), (u64, u64)>,
    order: VecDeque<(NodeId, ForwardId)>,
}

impl RecentForwards {
    /// How many batches are remembered.
    const CAPACITY: usize = 4096;

    /// The index the batch's first entry got, if the batch was appended.
    fn first_idx(&self, origin: NodeId, id: ForwardId) -> Option<u64> {
        self.batches.get(&(origin, id)).map(|&(first, _)| first)
    }

    fn insert(&mut self, origin: NodeId, id: ForwardId, first_idx: u64, len: u64) {
        if self.order.len() == Self::CAPACITY {
            if let Some(oldest) = self.order.pop_front() {
                self.batches.remove(&oldest);
            }
        }
        self.order.push_back((origin, id));
        self.batches.insert((origin, id), (first_idx, len));
    }

    /// Whether a forwarded batch took log index `idx`.
    fn covers(&self, idx: u64) -> bool {
        self.batches
            .values()
            .any(|&(first, len)| (first..first + len).contains(&idx))
    }

    /// Acknowledgements of `origin`'s batches that took indices from `from` on.
    fn acks_for(&self, origin: NodeId, from: u64, n: Ballot) -> Vec<ProposalAck> {
        self.batches
            .iter()
            .filter(|&(&(o, _), &(first, _))| o == origin && first >= from)
            .map(|(&(_, id), &(first_idx, _))| ProposalAck { n, id, first_idx })
            .collect()
    }

    /// Forgets the batches that took any index from `idx` on: a log sync cut
    /// them, so a retry must be appended again.
    fn forget_from(&mut self, idx: u64) {
        self.batches
            .retain(|_, &mut (first, len)| first + len <= idx);
        let batches = &self.batches;
        self.order.retain(|key| batches.contains_key(key));
    }
}

impl<T, S> SequencePaxos<T, S>
where
    T: Entry,
    S: Storage<T>,
{
    pub(crate) fn with(
        config: &OmniPaxosConfig,
        storage: InternalStorage<S, T>,
        logger: Logger,
    ) -> Self {
        let peers = config.peers.clone();
        let promise = storage.promise();
        Self {
            storage,
            pid: config.pid,
            configuration_id: config.configuration_id,
            quorum: Quorum::with(config.flexible_quorum, peers.len() + 1),
            role: Role::Follower,
            phase: Phase::None,
            leader: promise,
            progress: vec![FollowerProgress::default(); peers.len()],
            peers,
            max_promise: None,
            synced_round: Ballot::default(),
            synced_len: 0,
            forwarded_len: 0,
            open_accepted: None,
            open_forward: None,
            pull_replies: Vec::new(),
            last_seq: SequenceNumber::default(),
            early: Vec::new(),
            early_parts: Vec::new(),
            snapshot_parts: None,
            pending: Vec::with_capacity(config.batch_size),
            pending_tags: Vec::new(),
            batch: Vec::with_capacity(config.batch_size),
            batch_tags: Vec::new(),
            placed: VecDeque::new(),
            next_tag: 1,
            decided_tags: Vec::new(),
            forwarded: VecDeque::new(),
            next_forward_seq: 1,
            recent_forwards: RecentForwards::default(),
            buffer_size: config.buffer_size,
            max_entries_per_message: config.max_entries_per_message,
            max_message_bytes: config.max_message_bytes,
            batch_size: config.batch_size,
            resend_timer: LogicalClock::with(config.resend_message_tick_timeout),
            flush_timer: LogicalClock::with(config.flush_batch_tick_timeout),
            outgoing: Vec::with_capacity(config.buffer_size.min(1024)),
            scratch: Vec::with_capacity(config.peers.len() + 1),
            storage_failure: None,
            rejected_by: None,
            reads: read::Reads::default(),
            pending_stopsign: None,
            learned_stop: None,
            logger,
        }
    }

    /// Serves a joining server's pull; a failed read stops this server.
    /// `previous`: how the configuration before ours ended, if we know.
    pub(crate) fn handle_pull(
        &mut self,
        from: NodeId,
        req: crate::messages::PullLog,
        previous: Option<&crate::messages::StopSignDecided>,
        snapshots: &mut crate::migration::SnapshotServer<T>,
    ) {
        let r = self.handle_pull_log(from, req, previous, snapshots);
        self.guard(r);
    }

    /// Serves a joining server a part of the snapshot it is pulling (see
    /// [`Self::handle_pull_log`]).
    pub(crate) fn handle_pull_snapshot(
        &mut self,
        from: NodeId,
        req: crate::messages::PullSnapshot,
        previous: Option<&crate::messages::StopSignDecided>,
        snapshots: &mut crate::migration::SnapshotServer<T>,
    ) {
        let r = self.serve_snapshot_part(from, req, previous, snapshots);
        self.guard(r);
    }

    /// Records a storage failure from outside the message handlers.
    pub(crate) fn fail_with(&mut self, e: StorageError) {
        self.fail(e);
    }

    pub(crate) fn role(&self) -> Role {
        self.role
    }

    pub(crate) fn phase(&self) -> Phase {
        self.phase
    }

    pub(crate) fn storage_failure(&self) -> Option<&StorageError> {
        self.storage_failure.as_ref()
    }

    pub(crate) fn peer_accepted_idx(&self, pid: NodeId) -> Option<u64> {
        if self.role != Role::Leader {
            return None;
        }
        self.slot(pid).and_then(|i| self.progress[i].accepted_idx)
    }

    /// Moves the outgoing messages into `buf`.
    pub(crate) fn take_outgoing(&mut self, buf: &mut Vec<Message<T>>) {
        if buf.is_empty() {
            std::mem::swap(buf, &mut self.outgoing);
        } else {
            buf.append(&mut self.outgoing);
        }
        self.close_open_messages();
    }

    fn close_open_messages(&mut self) {
        for p in &mut self.progress {
            p.open_accept = None;
        }
        self.open_accepted = None;
        self.open_forward = None;
        self.pull_replies.clear();
    }

    /// Records a failed storage write: this server stops acting, and drops
    /// whatever it was about to send, since those messages may vouch for the
    /// write that failed.
    fn fail(&mut self, err: StorageError) {
        if self.storage_failure.is_none() {
            log!(error, self.logger, "storage failed; this server stops"; "error" => %err);
            self.storage_failure = Some(err);
        }
        self.outgoing.clear();
        self.close_open_messages();
    }

    /// Runs a step that writes to storage, turning a failure into a halt.
    fn guard(&mut self, result: StorageResult<()>) {
        if let Err(e) = result {
            self.fail(e);
        }
    }

    pub(crate) fn is_halted(&self) -> bool {
        self.storage_failure.is_some()
    }

    /// Installs a log synchronisation (a new leader adopting the most
    /// up-to-date log, or a follower taking its leader's), accepted in
    /// `round` (`None` for a part of decided entries, which leaves the round
    /// our log was accepted in as it is), and returns the
    /// proposals it cut that exist nowhere else, for the caller to propose again.
    ///
    /// Those are the entries this server appended itself while it led the
    /// ballot its log was accepted in: nobody else holds them once the sync
    /// cuts them, so proposing them again cannot decide them twice. Entries
    /// that followers forwarded are left out; their origins retry them.
    fn install_sync(
        &mut self,
        round: Option<Ballot>,
        sync: LogSync<T>,
        decided_idx: u64,
    ) -> StorageResult<(Vec<T>, Vec<Tag>)> {
        let LogSync {
            decided_snapshot,
            sync_idx,
            suffix,
            stopsign,
        } = sync;
        let prev_round = self.storage.accepted_round();
        let prev_len = self.storage.log_len();
        // Our log is unchanged below `kept_until`: below the sync index,
        // except where a snapshot replaces entries we had not decided.
        let kept_until = match &decided_snapshot {
            None => sync_idx,
            Some(SnapshotType::Complete(_)) => sync_idx.min(self.storage.decided_idx()),
            Some(SnapshotType::Delta { from_idx, .. }) => {
                sync_idx.min((*from_idx).max(self.storage.decided_idx()))
            }
        };
        let (cut, cut_tags) = self.cut_own_proposals(kept_until, sync_idx)?;
        let decided_snapshot = match decided_snapshot {
            Some(s) => Some(self.complete_snapshot(s)?),
            None => None,
        };
        if kept_until < prev_len {
            // Forwarded batches we appended from `kept_until` on may be gone:
            // a retry must be appended again, not acknowledged at an index
            // that now holds something else. A snapshot replaces entries from
            // `kept_until`, below the sync index (soak seed 3103).
            self.recent_forwards.forget_from(kept_until);
        }
        self.storage.sync_log(
            round,
            sync_idx,
            decided_snapshot,
            suffix,
            stopsign,
            decided_idx,
        )?;
        self.settle_forwards_after_sync(prev_round, prev_len, kept_until);
        Ok((cut, cut_tags))
    }

    /// Takes this server's own proposals out of the part of its log that is
    /// about to change: the tagged ones at `kept_until` and above, and, if
    /// the log was accepted in a round this server led, the untagged entries
    /// it appended itself at `replaced_from` and above (forwarded ones are
    /// left to their origins, which retry them). Returns them in log order,
    /// to be proposed again.
    fn cut_own_proposals(
        &mut self,
        kept_until: u64,
        replaced_from: u64,
    ) -> StorageResult<(Vec<T>, Vec<Tag>)> {
        let prev_len = self.storage.log_len();
        let own_round = self
            .storage
            .accepted_round()
            .is_some_and(|r| r.pid == self.pid);
        let mut cut = Vec::new();
        let mut cut_tags = Vec::new();
        let cut_placed = self
            .placed
            .back()
            .is_some_and(|&(idx, _)| idx >= kept_until);
        if (own_round && replaced_from < prev_len) || cut_placed {
            let from = if cut_placed {
                kept_until
            } else {
                replaced_from
            };
            let entries = self.storage.get_entries(from, prev_len)?;
            let first_cut = self.placed.partition_point(|&(idx, _)| idx < from);
            let mut tags = self.placed.drain(first_cut..).peekable();
            for (entry, idx) in entries.into_iter().zip(from..) {
                let tag = match tags.peek() {
                    Some(&(i, tag)) if i == idx => {
                        tags.next();
                        tag
                    }
                    _ => NO_TAG,
                };
                let untagged_own =
                    own_round && idx >= replaced_from && !self.recent_forwards.covers(idx);
                if tag != NO_TAG || untagged_own {
                    cut.push(entry);
                    cut_tags.push(tag);
                }
            }
        }
        Ok((cut, cut_tags))
    }

    /// Whether this configuration takes no more entries: a stop-sign is in
    /// the log, or one was decided without us.
    /// Empties the batch, giving its entries with the tag of each.
    pub(super) fn take_batch(&mut self) -> (Vec<T>, Vec<Tag>) {
        let batch = std::mem::take(&mut self.batch);
        let mut tags = vec![NO_TAG; batch.len()];
        for (pos, tag) in self.batch_tags.drain(..) {
            tags[pos] = tag;
        }
        (batch, tags)
    }

    fn takes_no_entries(&self) -> bool {
        self.storage.stopsign().is_some() || self.learned_stop.is_some()
    }

    /// Checks a log sync against our log: `None` if we cannot install it (it
    /// starts inside our compacted prefix, or past our log end without a
    /// snapshot), or if no correct server sends it: it carries a snapshot
    /// for an entry type that uses none, its end overflows, or it would cut
    /// entries we decided (every log a leader can hold has them). A snapshot
    /// of a prefix we have already decided is dropped: our own entries there
    /// are the decided ones.
    fn checked_sync(&self, mut sync: LogSync<T>) -> Option<LogSync<T>> {
        if sync.sync_idx < self.storage.compacted_idx() {
            return None;
        }
        if sync.decided_snapshot.is_some() && !T::Snapshot::use_snapshots() {
            return None;
        }
        let end = sync
            .sync_idx
            .checked_add(sync.suffix.len() as u64)?
            .checked_add(u64::from(sync.stopsign.is_some()))?;
        if end < self.storage.decided_idx() || end > MAX_LOG_INDEX {
            return None;
        }
        if sync.decided_snapshot.is_some() && sync.sync_idx <= self.storage.decided_idx() {
            sync.decided_snapshot = None;
        }
        // A delta builds on our own decided log below its start.
        if let Some(SnapshotType::Delta { from_idx, .. }) = &sync.decided_snapshot {
            let (compacted, decided) = (self.storage.compacted_idx(), self.storage.decided_idx());
            if *from_idx < compacted || *from_idx > decided.min(self.storage.log_len()) {
                return None;
            }
        }
        if sync.decided_snapshot.is_none() && sync.sync_idx > self.storage.log_len() {
            return None;
        }
        Some(sync)
    }

    /// The next chunk of our log from `from` on, for a server being brought
    /// up to date: at most `max_entries_per_message` entries and, by
    /// [`Entry::size_hint`], at most `max_message_bytes` (but at least one
    /// entry); empty at the end of the log. Read a little at a time, so that
    /// large entries are not read only to be left out.
    pub(super) fn read_chunk(&self, from: u64) -> StorageResult<Vec<T>> {
        self.read_chunk_until(from, self.storage.log_len())
    }

    /// [`read_chunk`](Self::read_chunk), ending at `to` at the latest.
    pub(super) fn read_chunk_until(&self, from: u64, to: u64) -> StorageResult<Vec<T>> {
        self.read_chunk_within(
            from,
            to,
            self.max_entries_per_message,
            self.max_message_bytes,
            true,
        )
    }

    /// Entries from `from` on, ending at `to` at the latest: at most
    /// `max_entries` of them and at most `max_bytes` by
    /// [`Entry::size_hint`] (but at least one if `at_least_one`).
    pub(super) fn read_chunk_within(
        &self,
        from: u64,
        to: u64,
        max_entries: usize,
        max_bytes: usize,
        at_least_one: bool,
    ) -> StorageResult<Vec<T>> {
        const READ_STEP: u64 = 256;
        let end = to
            .min(self.storage.log_len())
            .min(from.saturating_add(max_entries as u64));
        let mut chunk = Vec::new();
        let mut bytes = 0usize;
        let mut at = from;
        while at < end {
            let step_end = end.min(at + READ_STEP);
            for entry in self.storage.get_entries(at, step_end)? {
                bytes = bytes.saturating_add(entry.size_hint());
                if bytes > max_bytes && (!chunk.is_empty() || !at_least_one) {
                    return Ok(chunk);
                }
                chunk.push(entry);
            }
            at = step_end;
        }
        Ok(chunk)
    }

    fn slot(&self, pid: NodeId) -> Option<usize> {
        self.peers.iter().position(|p| *p == pid)
    }

    fn send(&mut self, to: NodeId, msg: PaxosMsg<T>) {
        self.outgoing.push(Message::SequencePaxos(PaxosMessage {
            configuration_id: self.configuration_id,
            from: self.pid,
            to,
            msg,
        }));
    }

    /// Leader election chose `n`: lead it if it is ours, else follow it.
    pub(crate) fn handle_leader(&mut self, n: Ballot) {
        if self.is_halted() || n <= self.leader && self.phase != Phase::None {
            return;
        }
        if n.pid == self.pid {
            if n > self.storage.promise() {
                let r = self.become_leader(n);
                self.guard(r);
            }
        } else {
            self.become_follower_of(n);
        }
    }

    /// A new leader is known; proposals waiting here go to it once it synchronised us.
    fn become_follower_of(&mut self, n: Ballot) {
        let changed = n != self.leader || self.role == Role::Leader;
        self.leader = n;
        if self.role == Role::Leader {
            // Proposals this server gathered as leader but did not send go to
            // the new leader instead of being lost.
            let (batch, tags) = self.take_batch();
            self.pending.extend(batch);
            self.pending_tags.extend(tags);
            // Forwarded batches that were (partly) in that batch never got the
            // indices their acknowledgements named: a retry must be appended
            // again, not acknowledged with those indices.
            self.recent_forwards.forget_from(self.storage.log_len());
        }
        self.role = Role::Follower;
        if n > self.storage.promise() || self.phase == Phase::None {
            self.phase = Phase::Prepare;
        }
        if changed {
            self.reset_reads_for_new_ballot();
        }
    }

    pub(crate) fn handle(&mut self, msg: PaxosMessage<T>) {
        if self.is_halted() {
            return;
        }
        let Some(msg) = self.hold_if_early(msg) else {
            return;
        };
        self.dispatch(msg);
        // What came early and is next now.
        while let Some(i) = self.early.iter().position(|m| {
            seq_of(m).is_some_and(|s| {
                s.session == self.last_seq.session
                    && Some(s.counter) == self.last_seq.counter.checked_add(1)
            })
        }) {
            let next = self.early.swap_remove(i);
            self.dispatch(next);
        }
        let (promise, following) = (
            self.storage.promise(),
            self.phase == Phase::Accept && self.role == Role::Follower,
        );
        let last = self.last_seq;
        self.early.retain(|m| {
            following
                && ballot_of(m) == Some(promise)
                && seq_of(m).is_some_and(|s| s.session == last.session && s.counter > last.counter)
        });
    }

    /// A follower keeps a message of its leader's current session that
    /// comes ahead of one still missing (at most [`MAX_EARLY`] of them)
    /// instead of asking to be synchronised again at once: a network that
    /// reorders would otherwise restart a long catch-up over and over. A
    /// message further ahead, or one more, is a gap as before (a lost
    /// message shows as one once a few later ones arrived).
    fn hold_if_early(&mut self, msg: PaxosMessage<T>) -> Option<PaxosMessage<T>> {
        let (Some(n), Some(seq)) = (ballot_of(&msg), seq_of(&msg)) else {
            return Some(msg);
        };
        let early = self.role == Role::Follower
            && self.phase == Phase::Accept
            && n == self.storage.promise()
            && msg.from == n.pid
            && seq.session == self.last_seq.session
            && seq.counter > self.last_seq.counter.saturating_add(1)
            && seq.counter <= self.last_seq.counter.saturating_add(1 + MAX_EARLY as u64)
            && self.early.len() < MAX_EARLY
            && !self.early.iter().any(|m| seq_of(m) == Some(seq));
        if early {
            self.early.push(msg);
            return None;
        }
        Some(msg)
    }

    fn dispatch(&mut self, msg: PaxosMessage<T>) {
        let from = msg.from;
        let result = match msg.msg {
            PaxosMsg::PrepareReq(req) => {
                self.handle_prepare_req(from, req);
                Ok(())
            }
            PaxosMsg::Prepare(prep) => self.handle_prepare(from, prep),
            PaxosMsg::Promise(prom) => self.handle_promise(from, prom),
            PaxosMsg::AcceptSync(sync) => self.handle_accept_sync(from, sync),
            PaxosMsg::DecidedSync(part) => self.handle_decided_sync(from, part),
            PaxosMsg::SnapshotPart(part) => self.handle_snapshot_part(from, part),
            PaxosMsg::SnapshotPartAck(ack) => {
                self.handle_snapshot_part_ack(from, ack);
                Ok(())
            }
            PaxosMsg::AcceptDecide(acc) => self.handle_accept_decide(from, acc),
            PaxosMsg::Accepted(acc) => self.handle_accepted(from, acc),
            PaxosMsg::Decide(dec) => self.handle_decide(from, dec),
            PaxosMsg::NotAccepted(na) => {
                self.handle_not_accepted(na);
                Ok(())
            }
            PaxosMsg::ProposalForward(fwd) => self.handle_forward(from, fwd),
            PaxosMsg::ProposalAck(ack) => {
                self.handle_proposal_ack(from, ack);
                Ok(())
            }
            PaxosMsg::Compaction(c) => self.handle_compaction(from, c),
            PaxosMsg::ReadRequest(r) => {
                self.handle_read_request(from, r);
                Ok(())
            }
            PaxosMsg::ReadConfirm(c) => {
                self.handle_read_confirm(from, c);
                Ok(())
            }
            PaxosMsg::ReadAck(a) => {
                self.handle_read_ack(from, a);
                Ok(())
            }
            PaxosMsg::ReadResponse(r) => {
                self.handle_read_response(from, r);
                Ok(())
            }
            PaxosMsg::AcceptStopSign(acc) => self.handle_accept_stopsign(from, acc),
            // `OmniPaxos` routes pulls and their replies (`Reconfiguration::route`).
            PaxosMsg::PullLog(_)
            | PaxosMsg::PullLogReply(_)
            | PaxosMsg::PullSnapshot(_)
            | PaxosMsg::PullSnapshotPart(_) => Ok(()),
            PaxosMsg::ForwardStopSign(ss) => self.handle_forward_stopsign(ss),
            PaxosMsg::StopSignDecided(d) => self.handle_stopsign_decided(from, d),
            // About the previous configuration: `OmniPaxos` answers these.
            PaxosMsg::StopSignRequest(_) | PaxosMsg::StopSignReply(_) => Ok(()),
        };
        self.guard(result);
    }

    /// Proposes an entry: appended here if this server leads, forwarded if it
    /// follows a known leader, held until a leader is known otherwise. On
    /// success returns the entry's tag, which [`Self::take_decided_tags`]
    /// reports with the entry's index once it is decided.
    pub(crate) fn append(&mut self, entry: T) -> Result<Tag, ProposeErr<T>> {
        let tag = self.next_tag;
        self.append_tagged(entry, tag)?;
        self.next_tag += 1;
        Ok(tag)
    }

    /// Proposes an entry under a tag already given out (or [`NO_TAG`]).
    pub(crate) fn append_tagged(&mut self, entry: T, tag: Tag) -> Result<(), ProposeErr<T>> {
        if self.is_halted() {
            return Err(ProposeErr::StorageFailure(entry));
        }
        if self.takes_no_entries() {
            return Err(ProposeErr::PendingReconfigEntry(entry));
        }
        match (self.role, self.phase) {
            (Role::Leader, Phase::Accept) => match self.accept_entry(entry, tag) {
                Ok(()) => Ok(()),
                Err(e) => {
                    // Not acknowledged: nothing claiming it was sent either.
                    self.fail(e.clone());
                    Err(ProposeErr::NotPersisted(e))
                }
            },
            (Role::Follower, Phase::Accept) => {
                self.forward(vec![entry], vec![tag]).map_err(|(mut v, _)| {
                    ProposeErr::BufferFull(v.pop().expect("forward hands back what it was given"))
                })
            }
            _ => {
                if self.pending.len() >= self.buffer_size {
                    return Err(ProposeErr::BufferFull(entry));
                }
                self.pending.push(entry);
                self.pending_tags.push(tag);
                Ok(())
            }
        }
    }

    /// The next tag `append` will hand out; tags are handed out in order.
    pub(crate) fn next_tag(&self) -> Tag {
        self.next_tag
    }

    /// Continues the tags of a previous configuration's server.
    pub(crate) fn set_next_tag(&mut self, tag: Tag) {
        self.next_tag = self.next_tag.max(tag);
    }

    /// Moves the tagged proposals now known to be decided, as `(tag, index)`,
    /// into `buf`.
    pub(crate) fn take_decided_tags(&mut self, buf: &mut Vec<(Tag, u64)>) {
        let decided = self.storage.decided_idx();
        while let Some(&(idx, tag)) = self.placed.front() {
            if idx >= decided {
                break;
            }
            self.placed.pop_front();
            self.decided_tags.push((tag, idx));
        }
        buf.append(&mut self.decided_tags);
    }

    /// A leader sends the batch it gathered now, without waiting for the
    /// batch to fill or for the flush timer.
    pub(crate) fn flush(&mut self) {
        if !self.is_halted() && self.role == Role::Leader {
            let r = self.flush_batch();
            self.guard(r);
        }
    }

    pub(crate) fn tick(&mut self) {
        if self.is_halted() {
            return;
        }
        if self.role == Role::Leader && self.flush_timer.tick_and_check() {
            let r = self.flush_batch();
            self.guard(r);
        }
        if self.resend_timer.tick_and_check() {
            match self.role {
                Role::Leader => self.resend_as_leader(),
                Role::Follower => self.resend_as_follower(),
            }
            self.resend_reads();
        }
    }

    /// A link to `pid` came back: messages sent in the meantime may be lost,
    /// so resynchronise with it.
    pub(crate) fn reconnected(&mut self, pid: NodeId) {
        if self.is_halted() || pid == self.pid {
            return;
        }
        match self.role {
            Role::Leader => self.prepare_follower(pid),
            Role::Follower if pid == self.leader.pid => {
                self.phase = Phase::Prepare;
                self.send(
                    pid,
                    PaxosMsg::PrepareReq(crate::messages::PrepareReq { n: self.leader }),
                );
            }
            Role::Follower => {}
        }
    }

    /// Called after a restart on persisted storage: forget volatile state and
    /// ask every peer to be prepared by whoever leads now.
    pub(crate) fn fail_recovery(&mut self) {
        self.role = Role::Follower;
        self.phase = Phase::Recover;
        self.leader = self.storage.promise();
        for p in &mut self.progress {
            *p = FollowerProgress::default();
        }
        let n = self.storage.promise();
        for i in 0..self.peers.len() {
            let to = self.peers[i];
            self.send(to, PaxosMsg::PrepareReq(crate::messages::PrepareReq { n }));
        }
    }
}

/// How many messages of the leader's session a follower holds that came
/// ahead of a missing one (see `SequencePaxos::hold_if_early`): fewer than
/// the catch-up chunks a leader has in flight (4), so that a lost chunk
/// still shows as a gap once the later ones arrived.
const MAX_EARLY: usize = 2;

/// The position in the leader's session of a message that has one.
fn seq_of<T: Entry>(m: &PaxosMessage<T>) -> Option<SequenceNumber> {
    match &m.msg {
        PaxosMsg::AcceptDecide(a) => Some(a.seq_num),
        PaxosMsg::Decide(d) => Some(d.seq_num),
        PaxosMsg::AcceptStopSign(a) => Some(a.seq_num),
        _ => None,
    }
}

/// The ballot of a message that [`seq_of`] places in a session.
fn ballot_of<T: Entry>(m: &PaxosMessage<T>) -> Option<Ballot> {
    match &m.msg {
        PaxosMsg::AcceptDecide(a) => Some(a.n),
        PaxosMsg::Decide(d) => Some(d.n),
        PaxosMsg::AcceptStopSign(a) => Some(a.n),
        _ => None,
    }
}
