//! Sequence Paxos: replicates the log under the leader that Ballot Leader
//! Election chose.
//!
//! ```text
//!  leader L (ballot n)                        follower F
//!  ── Prepare phase ───────────────────────────────────────────────────────
//!   Prepare{n, ld, na, la}        ──────────▶  promise n; send what L may lack
//!                                 ◀──────────  Promise{n, na, ld, la, log_sync}
//!   (a snapshot too large for the promise follows it in parts:
//!   `promise_snapshot.rs`)
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
//! `role.rs` holds what a server has because of its role (a leader's view
//! of its followers, a follower's place in its leader's session), one type
//! per role; `leader.rs` holds what only a leader does, `follower.rs` what
//! only a follower does; `proposal.rs` the proposal an entry travels in
//! until it is placed. This file holds the state both roles share and the
//! dispatch: a message goes first by role (`step_leader`,
//! `step_follower`), then by kind.

mod compaction;
mod dedup;
mod follower;
mod leader;
mod outbox;
mod promise_snapshot;
mod proposal;
mod queries;
mod read;
mod reconfig;
mod role;

pub(crate) use proposal::{NO_TAG, Tag};
pub use read::{ReadError, ReadId};

use crate::{
    ballot::Ballot,
    clock::LogicalClock,
    config::OmniPaxosConfig,
    errors::{ProposeErr, StorageError},
    logging::{Logger, log},
    messages::{
        AcceptDecide, AcceptStopSign, Decide, ForwardId, LogSync, Message, PaxosMessage, PaxosMsg,
        ProposalAck, SequenceNumber, SnapshotType,
    },
    quorum::Quorum,
    storage::{Entry, OriginId, Snapshot, Storage, StorageResult, internal::InternalStorage},
    util::{ConfigurationId, MAX_LOG_INDEX, NodeId, StopSign},
};
use outbox::{Open, Outbox};
use proposal::Proposal;
use role::{
    CatchUp, DecidedParts, FollowerProgress, FollowerState, LeaderPhase, LeaderState, PromiseMeta,
    RoleState, SnapshotKey, SnapshotStream,
};
use std::collections::{HashMap, VecDeque};

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

/// The most parts a follower takes a snapshot in: a bound on what a faulty
/// leader can make it gather, far above what a real snapshot needs (at the
/// default `max_message_bytes`, 2 MiB parts make 128 GiB).
const MAX_SNAPSHOT_PARTS: u32 = 1 << 16;

/// How many catch-up chunks may be unacknowledged per follower: enough to
/// keep a link busy over a round trip, few enough to bound what a slow
/// follower makes us hold.
const CATCH_UP_WINDOW: usize = 4;

/// Proposals a follower forwarded, kept until they are decided: a leader
/// that acknowledged them may still be deposed before deciding them.
#[derive(Debug)]
struct ForwardedBatch<T> {
    /// Names the batch to the leader, so that a retry is recognised.
    id: ForwardId,
    /// The proposals, in the order the leader appends them.
    proposals: Vec<Proposal<T>>,
    /// Their bytes by `Entry::size_hint`, to keep a batch within a chunk.
    bytes: usize,
    /// The leader's ballot and where it put the entries, once acknowledged.
    acked: Option<(Ballot, Placed)>,
}

/// In a [`ProposalAck`]'s `placed`: the entry was not appended (a
/// proposal of an earlier life of its origin, see `dedup.rs`).
pub(super) const NOT_APPENDED: u64 = u64::MAX;

/// Where a leader put a forwarded batch's entries: from an index on, or
/// (when some were in its log already) one index each.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Placed {
    From(u64),
    Each(Vec<u64>),
}

impl Placed {
    /// From an acknowledgement of a batch of `len` entries; `None` if the
    /// indices cannot be those of such a batch.
    fn of(ack: &ProposalAck, len: usize) -> Option<Self> {
        if ack.placed.is_empty() {
            return (ack.first_idx.saturating_add(len as u64) <= MAX_LOG_INDEX)
                .then_some(Self::From(ack.first_idx));
        }
        (ack.placed.len() == len
            && ack
                .placed
                .iter()
                .all(|&i| i < MAX_LOG_INDEX || i == NOT_APPENDED))
        .then(|| Self::Each(ack.placed.clone()))
    }

    /// The index of the `k`-th entry.
    fn at(&self, k: usize) -> u64 {
        match self {
            Self::From(first) => first + k as u64,
            Self::Each(v) => v[k],
        }
    }

    /// One past the highest index of a batch of `len` entries (entries
    /// not appended count for none).
    fn end(&self, len: usize) -> u64 {
        match self {
            Self::From(first) => first + len as u64,
            Self::Each(v) => v
                .iter()
                .filter(|&&i| i != NOT_APPENDED)
                .max()
                .map_or(0, |&m| m + 1),
        }
    }
}

pub(crate) struct SequencePaxos<T, S>
where
    T: Entry,
    S: Storage<T>,
{
    /// The log and the promise, through a cache of what the protocol reads often.
    pub(crate) storage: InternalStorage<S, T>,
    /// This server's id: the sender of every message, the owner of its ballots.
    pid: NodeId,
    /// The other servers of this configuration; per-peer state is in this order.
    peers: Vec<NodeId>,
    /// Stamped on every message, so that one from another configuration is told apart.
    configuration_id: ConfigurationId,
    /// How many servers make a read (prepare) or write (accept) quorum.
    quorum: Quorum,
    /// What this server holds because it leads or follows (see `role.rs`).
    state: RoleState<T>,
    /// The ballot of the leader this server follows or is.
    leader: Ballot,
    /// Per peer, in the order of `peers`: the last session number this
    /// server used with it when it last led (see `FollowerProgress::seq`),
    /// which its next leadership continues from. Sessions are per ballot,
    /// so starting from 0 would be as correct; continuing keeps every
    /// message what it was before leader state had a type of its own.
    sessions: Vec<SequenceNumber>,
    /// Proposals waiting for a leader (or for this leader's prepare phase to end).
    pending: Vec<Proposal<T>>,
    /// This server's tagged proposals that are in its log, as
    /// `(index, tag)`, accepted in the log's accepted round: each log sync
    /// keeps or cuts them (cut ones are proposed again, tag and all).
    /// Sorted by index, so decided ones leave from the front.
    placed: VecDeque<(u64, Tag)>,
    /// The next tag `append` hands out.
    next_tag: Tag,
    /// This server's incarnation on its storage, which every id it gives
    /// its proposals carries (see [`OriginId`]); `None` until known: a
    /// storage with none stored learns it from the first log it is
    /// synchronised with (one more than any incarnation of ours there).
    incarnation: Option<u64>,
    /// The sequence number of the next id this server gives a proposal.
    next_seq: u64,
    /// Tagged proposals known to be decided, as `(tag, index)`, until the
    /// driver takes them.
    decided_tags: Vec<(Tag, u64)>,
    /// Batches forwarded while following, not yet known to be decided. Not
    /// follower state: a follower that becomes leader proposes (or keeps
    /// in place) what it forwarded (see `finish_prepare`).
    forwarded: VecDeque<ForwardedBatch<T>>,
    /// How many entries `forwarded` holds, bounded by `buffer_size`.
    forwarded_len: usize,
    /// The sequence number of the next forwarded batch's id; it only grows,
    /// so that no two batches of one ballot and session share an id.
    next_forward_seq: u64,
    /// Forwarded batches this server appended as leader, so that a retried
    /// batch is acknowledged rather than appended twice. Not leader state:
    /// the records describe our log, which outlives the role (a log sync
    /// while following cuts them, see `install_sync`).
    recent_forwards: RecentForwards,
    /// The bound on proposals waiting here (`pending`, `forwarded`) and on reads.
    buffer_size: usize,
    /// At most this many entries per catch-up chunk.
    max_entries_per_message: usize,
    /// At most this many bytes (by `Entry::size_hint`) per catch-up chunk.
    max_message_bytes: usize,
    /// A leader's batch is written and sent once it holds this many entries.
    batch_size: usize,
    /// A leader sends its batch before it syncs it, and every server raises
    /// its decided index without a sync (`OmniPaxosConfig::defer_leader_sync`).
    defer_leader_sync: bool,
    /// Fires when unanswered messages are sent again.
    resend_timer: LogicalClock,
    /// Fires when a partly filled batch is sent anyway.
    flush_timer: LogicalClock,
    /// Messages waiting for the driver (`take_outgoing`), and which of them
    /// later content may join.
    outbox: Outbox<T>,
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
    /// The highest ballot a follower refused us for while we led, since
    /// leader election last looked. Not leader state: leader election takes
    /// it on its next tick even if a higher ballot deposed us meanwhile.
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
    /// The keys of `batches`, oldest first, so that the oldest go first.
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
    fn took(&self, idx: u64) -> bool {
        self.batches
            .values()
            .any(|&(first, len)| (first..first + len).contains(&idx))
    }

    /// Acknowledgements of `origin`'s batches that took indices from `from` on.
    fn acks_for(&self, origin: NodeId, from: u64, n: Ballot) -> Vec<ProposalAck> {
        self.batches
            .iter()
            .filter(|&(&(o, _), &(first, _))| o == origin && first >= from)
            .map(|(&(_, id), &(first_idx, _))| ProposalAck {
                n,
                id,
                first_idx,
                placed: Vec::new(),
            })
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
            state: RoleState::Follower(FollowerState::new(Phase::None)),
            leader: promise,
            sessions: vec![SequenceNumber::default(); peers.len()],
            peers,
            forwarded_len: 0,
            pending: Vec::with_capacity(config.batch_size),
            placed: VecDeque::new(),
            next_tag: 1,
            incarnation: None,
            next_seq: 1,
            decided_tags: Vec::new(),
            forwarded: VecDeque::new(),
            next_forward_seq: 1,
            recent_forwards: RecentForwards::default(),
            buffer_size: config.buffer_size,
            max_entries_per_message: config.max_entries_per_message,
            max_message_bytes: config.max_message_bytes,
            batch_size: config.batch_size,
            defer_leader_sync: config.defer_leader_sync,
            resend_timer: LogicalClock::with(config.resend_message_tick_timeout),
            flush_timer: LogicalClock::with(config.flush_batch_tick_timeout),
            outbox: Outbox::with(
                config.configuration_id,
                config.pid,
                config.peers.len(),
                config.buffer_size.min(1024),
            ),
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
        self.state.role()
    }

    pub(crate) fn phase(&self) -> Phase {
        self.state.phase()
    }

    pub(crate) fn storage_failure(&self) -> Option<&StorageError> {
        self.storage_failure.as_ref()
    }

    pub(crate) fn peer_accepted_idx(&self, pid: NodeId) -> Option<u64> {
        let l = self.state.leader()?;
        self.slot(pid).and_then(|i| l.progress[i].accepted_idx)
    }

    /// Moves the outgoing messages into `buf`; nothing joins them after.
    pub(crate) fn take_outgoing(&mut self, buf: &mut Vec<Message<T>>) {
        self.flush_full_batch();
        self.outbox.take(buf);
    }

    /// Records a failed storage write: this server stops acting, and drops
    /// whatever it was about to send, since those messages may vouch for the
    /// write that failed.
    fn fail(&mut self, err: StorageError) {
        if self.storage_failure.is_none() {
            log!(error, self.logger, "storage failed; this server stops"; "error" => %err);
            self.storage_failure = Some(err);
        }
        self.outbox.clear();
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
    ) -> StorageResult<Vec<Proposal<T>>> {
        let LogSync {
            decided_snapshot,
            sync_idx,
            suffix,
            suffix_origins,
            origin_table,
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
        let cut = self.cut_own_proposals(kept_until, sync_idx)?;
        let decided_snapshot = match decided_snapshot {
            Some(s) => Some((self.complete_snapshot(s)?, origin_table.unwrap_or_default())),
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
            suffix_origins,
            stopsign,
            decided_idx,
        )?;
        self.settle_forwards_after_sync(prev_round, prev_len, kept_until);
        self.learn_incarnation()?;
        Ok(cut)
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
    ) -> StorageResult<Vec<Proposal<T>>> {
        let prev_len = self.storage.log_len();
        let own_round = self
            .storage
            .accepted_round()
            .is_some_and(|r| r.pid == self.pid);
        let mut cut = Vec::new();
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
            let ids = self.storage.origins().range(from..prev_len);
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
                // An entry is ours if its id says so; one without an id (a
                // log written before ids) is ours if a batch forwarded to us
                // did not put it there.
                let id = ids.get(idx);
                let ours = match id {
                    Some(id) => id.origin == self.pid,
                    None => !self.recent_forwards.took(idx),
                };
                let untagged_own = own_round && idx >= replaced_from && ours;
                if tag != NO_TAG || untagged_own {
                    cut.push(Proposal {
                        entry,
                        tag,
                        id: id.filter(|id| id.origin == self.pid),
                    });
                }
            }
        }
        Ok(cut)
    }

    /// What our log held below `idx`: the compacted prefix's table and the
    /// ids of our entries up to `idx`, for a snapshot of the log below `idx`.
    pub(crate) fn origin_table_below(&self, idx: u64) -> crate::storage::OriginTable {
        let mut table = self.storage.origin_table().clone();
        table.absorb(
            &self
                .storage
                .origins()
                .range(self.storage.compacted_idx()..idx),
        );
        table
    }

    /// Whether this configuration takes no more entries: a stop-sign is in
    /// the log, or one was decided without us.
    fn takes_no_entries(&self) -> bool {
        self.storage.stopsign().is_some() || self.learned_stop.is_some()
    }

    /// Whether no entry may be appended in this configuration any more: the
    /// stop-sign is in (see [`Self::takes_no_entries`]), or as leader we
    /// proposed it and it waits behind entries the window holds back (a
    /// proposal made then is taken, and waits for the next configuration).
    fn appends_closed(&self) -> bool {
        self.takes_no_entries() || self.state.leader().is_some_and(|l| l.stop_waits)
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
        // Ids name entries of the suffix, and a table comes with a snapshot.
        if sync.suffix_origins.end() > sync.suffix.len() as u64
            || sync
                .origin_table
                .as_ref()
                .is_some_and(|t| sync.decided_snapshot.is_none() || !t.is_well_formed())
        {
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

    /// Refuses a message of ballot `n` if it is older than our promise, so
    /// that its sender learns it was deposed.
    fn refuse_if_older(&mut self, from: NodeId, n: Ballot) {
        if n < self.storage.promise() {
            let msg = self.not_accepted();
            self.send(from, msg);
        }
    }

    /// While leading in the accept phase: the length of the log adopted in
    /// the prepare phase (see `LeaderPhase::Accept`); 0 otherwise.
    fn synced_len(&self) -> u64 {
        match self.state.leader().map(|l| &l.phase) {
            Some(LeaderPhase::Accept { synced_len, .. }) => *synced_len,
            _ => 0,
        }
    }

    fn send(&mut self, to: NodeId, msg: PaxosMsg<T>) {
        self.outbox.send(to, msg);
    }

    /// Leader election chose `n`: lead it if it is ours, else follow it.
    pub(crate) fn handle_leader(&mut self, n: Ballot) {
        if self.is_halted() || n <= self.leader && self.phase() != Phase::None {
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
        let changed = n != self.leader || self.role() == Role::Leader;
        self.leader = n;
        if let RoleState::Leader(l) = &mut self.state {
            // Proposals this server gathered as leader but did not send go to
            // the new leader instead of being lost.
            self.pending.extend(l.batch.take());
            // Forwarded batches that were (partly) in that batch never got the
            // indices their acknowledgements named: a retry must be appended
            // again, not acknowledged with those indices.
            self.recent_forwards.forget_from(self.storage.log_len());
            self.keep_sessions();
            // A leader is deposed only by a higher ballot than the one it
            // promised: it waits to be prepared in that one.
            self.state = RoleState::Follower(FollowerState::new(Phase::Prepare));
            self.outbox.close(Open::Accepted);
        }
        let promise = self.storage.promise();
        let f = self.state.follow_mut();
        if n > promise || f.phase == Phase::None {
            f.phase = Phase::Prepare;
        }
        if changed {
            self.reset_reads_for_new_ballot();
        }
    }

    /// Records, before leader state is dropped or rebuilt, how far this
    /// server's sessions with each peer went (see `sessions`).
    fn keep_sessions(&mut self) {
        if let RoleState::Leader(l) = &self.state {
            for (kept, p) in self.sessions.iter_mut().zip(&l.progress) {
                *kept = p.seq;
            }
        }
    }

    pub(crate) fn handle(&mut self, msg: PaxosMessage<T>) {
        if self.is_halted() {
            return;
        }
        let Some(msg) = self.hold_if_early(msg) else {
            return;
        };
        let decided_before = self.storage.decided_idx();
        self.dispatch(msg);
        // What came early and is next now (only a follower holds any). Not
        // after a storage failure: the message that failed was not stored,
        // so what follows it would land at the wrong index (soak seed 3951,
        // with storage write failures).
        while !self.is_halted() {
            let Some(next) = self
                .state
                .follower_mut()
                .and_then(FollowerState::take_next_early)
            else {
                break;
            };
            self.dispatch(next);
        }
        // Whatever raised the decided index (a Decide, an AcceptDecide, a
        // sync), forwarded batches it now covers are decided: report them
        // here, once, rather than in each handler (soak seed 98: a sync
        // decided a batch and every later Decide came out of order).
        if self.storage.decided_idx() > decided_before && !self.forwarded.is_empty() {
            self.prune_decided_forwards();
        }
        let promise = self.storage.promise();
        if let Some(f) = self.state.follower_mut() {
            f.drop_stale_early(promise);
        }
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
        let promise = self.storage.promise();
        let Some(f) = self.state.follower_mut() else {
            return Some(msg);
        };
        let early = f.phase == Phase::Accept
            && n == promise
            && msg.from == n.pid
            && seq.session == f.last_seq.session
            && seq.counter > f.last_seq.counter.saturating_add(1)
            && seq.counter <= f.last_seq.counter.saturating_add(1 + MAX_EARLY as u64)
            && f.early.len() < MAX_EARLY
            && !f.early.iter().any(|m| seq_of(m) == Some(seq));
        if early {
            f.early.push(msg);
            return None;
        }
        Some(msg)
    }

    /// Hands a message to the handler of this server's role: a leader
    /// takes what followers send it, a follower what its leader sends, and
    /// either takes what is not about the role (a prepare, reads answered,
    /// compaction, reconfiguration).
    fn dispatch(&mut self, msg: PaxosMessage<T>) {
        let from = msg.from;
        let result = match self.role() {
            Role::Leader => self.step_leader(from, msg.msg),
            Role::Follower => self.step_follower(from, msg.msg),
        };
        self.guard(result);
    }

    /// A message to this server while it leads.
    fn step_leader(&mut self, from: NodeId, msg: PaxosMsg<T>) -> StorageResult<()> {
        match msg {
            PaxosMsg::PrepareReq(req) => self.handle_prepare_req(from, req),
            PaxosMsg::Promise(prom) => return self.handle_promise(from, prom),
            PaxosMsg::SnapshotPartAck(ack) => self.handle_snapshot_part_ack(from, ack),
            PaxosMsg::Accepted(acc) => return self.handle_accepted(from, acc),
            PaxosMsg::NotAccepted(na) => self.handle_not_accepted(na),
            PaxosMsg::ProposalForward(fwd) => return self.handle_forward(from, fwd),
            PaxosMsg::ReadRequest(r) => self.handle_read_request(from, r),
            PaxosMsg::ReadAck(a) => self.handle_read_ack(from, a),
            PaxosMsg::ForwardStopSign(ss) => return self.handle_forward_stopsign(ss),
            // A leader's replication messages: one of an older ballot than
            // ours is refused, so that its sender learns it was deposed.
            PaxosMsg::AcceptDecide(AcceptDecide { n, .. })
            | PaxosMsg::Decide(Decide { n, .. })
            | PaxosMsg::AcceptStopSign(AcceptStopSign { n, .. }) => self.refuse_if_older(from, n),
            // What only a follower installs: not for us while we lead.
            PaxosMsg::AcceptSync(_) | PaxosMsg::DecidedSync(_) | PaxosMsg::ProposalAck(_) => {}
            // A follower's snapshot that follows its promise.
            PaxosMsg::SnapshotPart(part) => return self.handle_promise_snapshot_part(from, part),
            other => return self.step_either(from, other),
        }
        Ok(())
    }

    /// A message to this server while it follows (or waits for a leader).
    fn step_follower(&mut self, from: NodeId, msg: PaxosMsg<T>) -> StorageResult<()> {
        match msg {
            PaxosMsg::AcceptSync(sync) => self.handle_accept_sync(from, sync),
            PaxosMsg::DecidedSync(part) => self.handle_decided_sync(from, part),
            PaxosMsg::SnapshotPart(part) => self.handle_snapshot_part(from, part),
            PaxosMsg::AcceptDecide(acc) => self.handle_accept_decide(from, acc),
            PaxosMsg::Decide(dec) => self.handle_decide(from, dec),
            PaxosMsg::AcceptStopSign(acc) => self.handle_accept_stopsign(from, acc),
            PaxosMsg::ProposalAck(ack) => {
                self.handle_proposal_ack(from, ack);
                Ok(())
            }
            // What only a leader acts on: a follower ignores it (the sender
            // learns who leads from its own leader election).
            PaxosMsg::SnapshotPartAck(ack) => {
                // The leader's acknowledgement of the snapshot that follows
                // our promise.
                self.handle_promise_stream_ack(from, ack);
                Ok(())
            }
            PaxosMsg::PrepareReq(_)
            | PaxosMsg::Promise(_)
            | PaxosMsg::Accepted(_)
            | PaxosMsg::NotAccepted(_)
            | PaxosMsg::ProposalForward(_)
            | PaxosMsg::ReadRequest(_)
            | PaxosMsg::ReadAck(_)
            | PaxosMsg::ForwardStopSign(_) => Ok(()),
            other => self.step_either(from, other),
        }
    }

    /// A message either role handles the same way.
    fn step_either(&mut self, from: NodeId, msg: PaxosMsg<T>) -> StorageResult<()> {
        match msg {
            // A higher ballot's prepare makes a leader a follower.
            PaxosMsg::Prepare(prep) => self.handle_prepare(from, prep),
            PaxosMsg::Compaction(c) => self.handle_compaction(from, c),
            PaxosMsg::ReadConfirm(c) => {
                self.handle_read_confirm(from, c);
                Ok(())
            }
            PaxosMsg::ReadResponse(r) => {
                self.handle_read_response(from, r);
                Ok(())
            }
            // `OmniPaxos` routes pulls and their replies (`Reconfiguration::route`).
            PaxosMsg::PullLog(_)
            | PaxosMsg::PullLogReply(_)
            | PaxosMsg::PullSnapshot(_)
            | PaxosMsg::PullSnapshotPart(_) => Ok(()),
            PaxosMsg::StopSignDecided(d) => self.handle_stopsign_decided(from, d),
            // About the previous configuration: `OmniPaxos` answers these.
            PaxosMsg::StopSignRequest(_) | PaxosMsg::StopSignReply(_) => Ok(()),
            // Role messages, handled by `step_leader` and `step_follower`.
            PaxosMsg::PrepareReq(_)
            | PaxosMsg::Promise(_)
            | PaxosMsg::AcceptSync(_)
            | PaxosMsg::DecidedSync(_)
            | PaxosMsg::SnapshotPart(_)
            | PaxosMsg::SnapshotPartAck(_)
            | PaxosMsg::AcceptDecide(_)
            | PaxosMsg::Accepted(_)
            | PaxosMsg::Decide(_)
            | PaxosMsg::NotAccepted(_)
            | PaxosMsg::ProposalForward(_)
            | PaxosMsg::ProposalAck(_)
            | PaxosMsg::ReadRequest(_)
            | PaxosMsg::ReadAck(_)
            | PaxosMsg::AcceptStopSign(_)
            | PaxosMsg::ForwardStopSign(_) => Ok(()),
        }
    }

    /// Starts this server's life on its storage: one incarnation more than
    /// the storage recorded, persisted before any proposal carries it. A
    /// storage that recorded none (new, from before incarnations, or one that
    /// keeps no origins) leaves it to be learned from the first log sync.
    pub(crate) fn start_incarnation(&mut self) -> StorageResult<()> {
        let stored = self.storage.incarnation();
        if stored > 0 {
            self.storage.set_incarnation(stored + 1)?;
            self.incarnation = Some(stored + 1);
        }
        Ok(())
    }

    /// Continues the identity of this server's previous configuration (see
    /// `into_next_configuration`): its proposals carried over keep their
    /// ids, so the new configuration, whose log begins with the old one,
    /// appends none of them twice.
    pub(crate) fn continue_identity(&mut self, incarnation: Option<u64>, next_seq: u64) {
        if incarnation.is_some() {
            self.incarnation = incarnation;
        }
        self.next_seq = self.next_seq.max(next_seq);
    }

    /// This server's incarnation and next sequence number.
    pub(crate) fn identity(&self) -> (Option<u64>, u64) {
        (self.incarnation, self.next_seq)
    }

    /// Once synchronised with a log: if this server's incarnation is not
    /// known yet, it is one more than any of ours that log and its
    /// compacted prefix name, persisted.
    fn learn_incarnation(&mut self) -> StorageResult<()> {
        if self.incarnation.is_some() {
            return Ok(());
        }
        let pid = self.pid;
        let in_log = self
            .storage
            .origins()
            .runs()
            .iter()
            .filter(|r| r.first.origin == pid)
            .map(|r| r.first.incarnation)
            .max();
        let seen = in_log
            .into_iter()
            .chain(self.storage.origin_table().incarnation_of(pid))
            .chain([self.storage.incarnation()])
            .max()
            .unwrap_or(0);
        let n = seen.saturating_add(1);
        self.storage.set_incarnation(n)?;
        self.incarnation = Some(n);
        Ok(())
    }

    /// Gives `p` this server's next id if it has none and the incarnation
    /// is known (it is once this server leads or was synchronised).
    #[inline]
    fn stamp(&mut self, p: &mut Proposal<T>) {
        if p.id.is_some() {
            return;
        }
        debug_assert!(
            self.incarnation.is_some(),
            "a proposal leaves only a synchronised server"
        );
        if let Some(incarnation) = self.incarnation {
            p.id = Some(OriginId {
                origin: self.pid,
                incarnation,
                seq: self.next_seq,
            });
            self.next_seq += 1;
        }
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
        self.propose(Proposal::new(entry, tag))
    }

    /// Proposes again a proposal of this server's previous configuration,
    /// under the tag and the id it had there.
    pub(crate) fn append_carried(&mut self, p: Proposal<T>) -> Result<(), ProposeErr<T>> {
        self.propose(p)
    }

    #[inline]
    fn propose(&mut self, mut p: Proposal<T>) -> Result<(), ProposeErr<T>> {
        if self.is_halted() {
            return Err(ProposeErr::StorageFailure(p.entry));
        }
        if self.takes_no_entries() {
            return Err(ProposeErr::PendingReconfigEntry(p.entry));
        }
        if self.phase() == Phase::Accept && self.role() == Role::Leader {
            self.stamp(&mut p);
        }
        match &mut self.state {
            // The hot path: straight into the batch (`accept_entry` without
            // the stop-sign check made above).
            // (A leader whose stop-sign waits for the window appends no more
            // in this configuration: the proposal waits in the buffer below,
            // and `into_new_configuration` proposes it in the next one.)
            RoleState::Leader(l)
                if matches!(l.phase, LeaderPhase::Accept { .. }) && !l.stop_waits =>
            {
                if l.window_full(self.buffer_size) {
                    return Err(ProposeErr::BufferFull(p.entry));
                }
                let len = l.gather(p);
                if !self.batch_goes_now(len) {
                    return Ok(());
                }
                self.flush_batch().map_err(|e| {
                    // Not acknowledged: nothing claiming it was sent either.
                    self.fail(e.clone());
                    ProposeErr::NotPersisted(e)
                })
            }
            RoleState::Follower(f) if f.phase == Phase::Accept => {
                self.forward(vec![p]).map_err(|mut v| {
                    let p = v.pop().expect("forward hands back what it was given");
                    ProposeErr::BufferFull(p.entry)
                })
            }
            _ => {
                if self.pending.len() >= self.buffer_size {
                    return Err(ProposeErr::BufferFull(p.entry));
                }
                self.pending.push(p);
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

    /// Syncs a deferred write of the leader's batch, if one waits, and
    /// decides what that lets it decide. Returns whether one waited.
    pub(crate) fn sync_storage(&mut self) -> bool {
        if self.is_halted() || !self.storage.has_unsynced() {
            return false;
        }
        let r = self.storage.sync().and_then(|()| {
            if self.phase() == Phase::Accept && self.role() == Role::Leader {
                self.update_decided()
            } else {
                Ok(())
            }
        });
        self.guard(r);
        true
    }

    /// Whether a deferred write waits for `sync_storage`.
    pub(crate) fn has_unsynced_storage(&self) -> bool {
        self.storage.has_unsynced()
    }

    /// A leader sends the batch it gathered now, without waiting for the
    /// batch to fill or for the flush timer.
    pub(crate) fn flush(&mut self) {
        if !self.is_halted() && self.role() == Role::Leader {
            let r = self.flush_batch();
            self.guard(r);
        }
    }

    /// Whether a leader's batch of `len` gathered proposals is written and
    /// sent now, in the call that filled it.
    ///
    /// A full batch goes at once when nothing the leader sent is undecided,
    /// so a lone append is not delayed. Otherwise it waits for the next
    /// [`Self::take_outgoing`] or tick, gathering whatever else is proposed
    /// until then: the entries proposed between two sends are written in one
    /// storage write (one sync, with a durable storage) and sent in one
    /// message, which is no later than the network would see them anyway. A
    /// waiting batch goes at `max_entries_per_message` entries in any case,
    /// which bounds the batch and the message.
    fn batch_goes_now(&self, len: usize) -> bool {
        len >= self.batch_size
            && (self.storage.decided_idx() >= self.storage.log_len()
                || len >= self.max_entries_per_message)
    }

    /// Writes and sends a full batch that waited for this send or tick (see
    /// [`Self::batch_goes_now`]).
    fn flush_full_batch(&mut self) {
        if let RoleState::Leader(l) = &self.state {
            if l.batch.len() >= self.batch_size && !self.is_halted() {
                let r = self.flush_batch();
                self.guard(r);
            }
        }
    }

    pub(crate) fn tick(&mut self) {
        if self.is_halted() {
            return;
        }
        self.flush_full_batch();
        if self.is_halted() {
            return;
        }
        if self.role() == Role::Leader && self.flush_timer.tick_and_check() {
            let r = self.flush_batch();
            self.guard(r);
        }
        if self.resend_timer.tick_and_check() {
            match self.role() {
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
        match self.role() {
            Role::Leader => self.prepare_follower(pid),
            Role::Follower if pid == self.leader.pid => {
                self.state.follow_mut().phase = Phase::Prepare;
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
        if self.role() == Role::Leader && !self.is_halted() {
            // Called on a running leader (the usual call is on a fresh
            // server, which leads nothing): the batch it gathered goes into
            // the log first, in the ballot it was gathered in, as when it
            // re-prepares (`become_leader`). Dropped with the leader state,
            // its proposals would be lost, their acknowledged indices given
            // to other entries.
            let r = self.flush_batch();
            self.guard(r);
        }
        // Nothing volatile survives a restart, the session numbers included.
        self.state = RoleState::Follower(FollowerState::new(Phase::Recover));
        self.sessions.fill(SequenceNumber::default());
        self.outbox.close(Open::Accepted);
        self.outbox.close_accepts();
        self.leader = self.storage.promise();
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
