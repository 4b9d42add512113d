//! The messages servers exchange.
//!
//! ```text
//!  Ballot Leader Election (every election_tick_timeout ticks)
//!    every server ──HeartbeatRequest{round}──▶ every peer
//!    every peer   ──HeartbeatReply{round, ballot, quorum_connected, leader}──▶ requester
//!
//!  Sequence Paxos, leader L and follower F
//!    L ──Prepare{n, decided_idx, n_accepted, accepted_idx}──▶ F      (new leader, or resync)
//!    F ──Promise{n, n_accepted, decided_idx, accepted_idx, log_sync}──▶ L
//!    L ──DecidedSync{n, log_sync}──▶ F   (F far behind L's decided prefix: the next part of it)
//!    F ──Promise{..}──▶ L                 (F's log now: the next part, or the AcceptSync)
//!    L ──SnapshotPart{n, sync_idx, part, parts, snapshot}──▶ F (a large snapshot F needs, in parts)
//!    F ──SnapshotPartAck{n, sync_idx, received}──▶ L   (then a Promise once all are installed)
//!    L ──AcceptSync{n, seq, decided_idx, log_sync}──▶ F             (F's log := L's log)
//!    L ──AcceptDecide{n, seq, decided_idx, entries}──▶ F            (steady state)
//!    F ──Accepted{n, accepted_idx}──▶ L
//!    L ──Decide{n, seq, decided_idx}──▶ F                           (decided index moved)
//!    F ──PrepareReq{n}──▶ L             (F missed a message or restarted: please resync me)
//!    F ──NotAccepted{n}──▶ L            (F promised a higher ballot n)
//!    F ──ProposalForward{id, entries}──▶ L ──ProposalAck{id, first_idx}──▶ F
//!    L ──AcceptStopSign{n, seq, ss}──▶ F   (the last entry of the configuration)
//!    F ──ForwardStopSign(ss)──▶ L          (a reconfiguration requested at a follower)
//!
//!  Joining a new configuration (any server of the old one serves)
//!    J ──PullLog{from, to}──▶ S_i           (parts of ≤ max_entries_per_message entries,
//!                                            ≤ 4 in flight per source, in parallel)
//!    S_i ──PullLogReply{from, to, snapshot, entries, stopsign}──▶ J
//!                                           (≤ max_entries_per_message, ≤ max_message_bytes)
//!    (S_i's snapshot too large for one message: instead)
//!    S_i ──PullSnapshotPart{covers, part: 0, parts, snapshot}──▶ J
//!    J ──PullSnapshot{covers, parts, part}──▶ S_i     (≤ 4 parts in flight)
//!    S_i ──PullSnapshotPart{covers, part, parts, snapshot}──▶ J
//!
//!  A straggler X of an ended configuration c (it missed the stop-sign's decision)
//!    X ──any message of c──▶ N              (N moved on to configuration c + 1,
//!                                            or is in c and knows the decision)
//!    N ──StopSignDecided{ss, stop_idx, n_accepted}──▶ X   (sent under c's id)
//!  A server Y of c + 1 that does not know how c ended (it restarted, or joined)
//!    Y ──StopSignRequest──▶ each peer       (again every resend timeout, until answered)
//!    peer ──StopSignReply{decided}──▶ Y     (decided: what the peer knows, if anything)
//!
//!  Linearizable reads
//!    F ──ReadRequest{id}──▶ L                     (a follower wants a read point)
//!    L ──ReadConfirm{n, round}──▶ every follower  (do you still promise n?)
//!    F ──ReadAck{n, round}──▶ L                   (yes; a write quorum confirms)
//!    L ──ReadResponse{id, read_idx}──▶ F          (serve once decided up to read_idx)
//! ```
//!
//! With feature `serde`, every type here is `Serialize` and `Deserialize`.

use crate::{
    ballot::Ballot,
    storage::{Entry, OriginIds, OriginTable},
    util::{ConfigurationEnd, ConfigurationId, NodeId, StopSign},
};
use derive_where::derive_where;

mod entries;
pub use entries::Entries;

/// Declares message types that carry entries or snapshots of `T`: `Clone`
/// and `Debug` for any `T`, `PartialEq` where the entry and snapshot types
/// have it, and (feature `serde`) serde bounded on both, instead of serde's
/// default bound on `T` alone.
macro_rules! entry_message {
    ($($item:item)*) => {
        $(
            #[derive_where(Clone, Debug)]
            #[derive_where(PartialEq; T, T::Snapshot)]
            #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
            #[cfg_attr(
                feature = "serde",
                serde(bound(
                    serialize = "T: serde::Serialize, T::Snapshot: serde::Serialize",
                    deserialize = "T: serde::Deserialize<'de>, T::Snapshot: serde::Deserialize<'de>"
                ))
            )]
            $item
        )*
    };
}

entry_message! {
/// A message for [`OmniPaxos::handle_incoming`](crate::OmniPaxos::handle_incoming).
pub enum Message<T: Entry> {
    /// A message of the replication protocol.
    SequencePaxos(PaxosMessage<T>),
    /// A message of leader election.
    BLE(BLEMessage),
}
}

impl<T: Entry> Message<T> {
    /// The server that sent the message.
    pub fn get_sender(&self) -> NodeId {
        match self {
            Self::SequencePaxos(m) => m.from,
            Self::BLE(m) => m.from,
        }
    }

    /// The server the message is for.
    pub fn get_receiver(&self) -> NodeId {
        match self {
            Self::SequencePaxos(m) => m.to,
            Self::BLE(m) => m.to,
        }
    }

    /// The configuration the message belongs to.
    pub fn get_configuration_id(&self) -> ConfigurationId {
        match self {
            Self::SequencePaxos(m) => m.configuration_id,
            Self::BLE(m) => m.configuration_id,
        }
    }
}

entry_message! {
/// A Sequence Paxos message with its envelope.
pub struct PaxosMessage<T: Entry> {
    /// The configuration the sender belongs to; other configurations ignore it.
    pub configuration_id: ConfigurationId,
    /// The sender.
    pub from: NodeId,
    /// The receiver.
    pub to: NodeId,
    /// The message.
    pub msg: PaxosMsg<T>,
}
}

entry_message! {
/// The Sequence Paxos messages.
#[allow(missing_docs)] // Each variant carries the struct of the same name, documented there.
pub enum PaxosMsg<T: Entry> {
    PrepareReq(PrepareReq),
    Prepare(Prepare),
    Promise(Promise<T>),
    AcceptSync(AcceptSync<T>),
    AcceptDecide(AcceptDecide<T>),
    Accepted(Accepted),
    Decide(Decide),
    NotAccepted(NotAccepted),
    ProposalForward(ProposalForward<T>),
    ProposalAck(ProposalAck),
    Compaction(Compaction),
    ReadRequest(ReadRequest),
    ReadConfirm(ReadConfirm),
    ReadAck(ReadAck),
    ReadResponse(ReadResponse),
    AcceptStopSign(AcceptStopSign),
    ForwardStopSign(StopSign),
    PullLog(PullLog),
    PullLogReply(PullLogReply<T>),
    StopSignDecided(StopSignDecided),
    StopSignRequest(StopSignRequest),
    StopSignReply(StopSignReply),
    DecidedSync(DecidedSync<T>),
    SnapshotPart(SnapshotPart<T>),
    SnapshotPartAck(SnapshotPartAck),
    PullSnapshot(PullSnapshot),
    PullSnapshotPart(PullSnapshotPart<T>),
}
}

impl<T: Entry> PaxosMsg<T> {
    /// Whether every ballot the message carries has a round a server may
    /// accept ([`Ballot::is_valid_round`]). A message with one that does not
    /// is refused whole: no correct server sends it, and acting on any part
    /// of it could leave the receiver promising a round nobody can outbid.
    pub(crate) fn ballots_are_valid(&self) -> bool {
        let ok = |b: &Ballot| b.is_valid_round();
        match self {
            Self::PrepareReq(m) => ok(&m.n),
            Self::Prepare(m) => ok(&m.n) && ok(&m.n_accepted),
            Self::Promise(m) => ok(&m.n) && ok(&m.n_accepted),
            Self::AcceptSync(m) => ok(&m.n) && m.forward_acks.iter().all(|a| ok(&a.n)),
            Self::DecidedSync(m) => ok(&m.n),
            Self::SnapshotPart(m) => ok(&m.n),
            Self::SnapshotPartAck(m) => ok(&m.n),
            Self::AcceptDecide(m) => ok(&m.n) && m.forward_acks.iter().all(|a| ok(&a.n)),
            Self::Accepted(m) => ok(&m.n),
            Self::Decide(m) => ok(&m.n),
            Self::NotAccepted(m) => ok(&m.n),
            Self::ProposalForward(m) => ok(&m.n) && ok(&m.id.ballot),
            Self::ProposalAck(m) => ok(&m.n) && ok(&m.id.ballot),
            Self::ReadRequest(m) => ok(&m.id.ballot),
            Self::ReadConfirm(m) => ok(&m.n),
            Self::ReadAck(m) => ok(&m.n),
            Self::ReadResponse(m) => ok(&m.id.ballot),
            Self::AcceptStopSign(m) => ok(&m.n),
            Self::StopSignDecided(m) => ok(&m.n_accepted),
            Self::StopSignReply(m) => m.decided.as_ref().is_none_or(|d| ok(&d.n_accepted)),
            Self::PullLogReply(m) => m.stopsign.as_ref().is_none_or(|d| ok(&d.n_accepted)),
            Self::PullSnapshotPart(m) => m.stopsign.as_ref().is_none_or(|d| ok(&d.n_accepted)),
            Self::Compaction(_)
            | Self::ForwardStopSign(_)
            | Self::PullLog(_)
            | Self::PullSnapshot(_)
            | Self::StopSignRequest(_) => true,
        }
    }
}

/// A server that moved on to the next configuration answers a message of the
/// configuration that ended (its sender missed the end): the stop-sign `ss`
/// was decided at index `stop_idx`. Sent under the ended configuration's id.
///
/// `n_accepted` is the round the answering server's log was accepted in when
/// it moved on; every log accepted in that round or a later one holds the
/// decided log up to the stop-sign, so a receiver whose log was accepted in
/// such a round knows its own entries are decided.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct StopSignDecided {
    /// The stop-sign that ended the configuration.
    pub ss: StopSign,
    /// Its index: the length of the log the configuration decided.
    pub stop_idx: u64,
    /// A round whose logs hold the decided log and the stop-sign.
    pub n_accepted: Ballot,
}

impl From<ConfigurationEnd> for StopSignDecided {
    fn from(end: ConfigurationEnd) -> Self {
        Self {
            ss: end.stopsign,
            stop_idx: end.stop_idx,
            n_accepted: end.accepted_round,
        }
    }
}

impl From<StopSignDecided> for ConfigurationEnd {
    fn from(d: StopSignDecided) -> Self {
        Self {
            stopsign: d.ss,
            stop_idx: d.stop_idx,
            accepted_round: d.n_accepted,
        }
    }
}

/// A server of a configuration that followed another asks a peer how the
/// previous configuration ended, so that it can tell that configuration's
/// stragglers (see [`StopSignDecided`]). Servers that moved on know (and
/// persist it, see
/// [`Storage::set_previous_configuration_end`](crate::storage::Storage::set_previous_configuration_end));
/// a server that does not (a joiner whose sources did not say) asks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct StopSignRequest;

/// The answer to a [`StopSignRequest`]: how the previous configuration ended,
/// if the peer knows.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct StopSignReply {
    /// What the peer would tell a straggler, or `None` if it does not know either.
    pub decided: Option<StopSignDecided>,
}

/// A server joining a new configuration asks one source for a part of the
/// previous configuration's decided log. Served across configurations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PullLog {
    /// First index wanted.
    pub from_idx: u64,
    /// One past the last index wanted.
    pub to_idx: u64,
}

entry_message! {
/// A source's answer to [`PullLog`]: the decided entries `from_idx..to_idx`,
/// with its snapshot first when the part starts in its compacted prefix (the
/// snapshot then covers `0..from_idx` of `entries`). `to_idx` may fall short
/// of what was asked: a reply holds at most the source's
/// `max_entries_per_message` entries and `max_message_bytes`.
pub struct PullLogReply<T: Entry> {
    /// Where `entries` start (the source's compacted index if it sends a snapshot).
    pub from_idx: u64,
    /// Where `entries` end: the end of the part asked for, or less when the
    /// source's bounds cut the reply short (with a snapshot alone, the end
    /// asked for).
    pub to_idx: u64,
    /// The source's snapshot of `0..from_idx`, when it compacted into the slice.
    pub snapshot: Option<T::Snapshot>,
    /// The decided entries `from_idx..to_idx`.
    pub entries: Vec<T>,
    /// Where those entries came from, index 0 being `from_idx`.
    pub origins: OriginIds,
    /// With a snapshot: what the source's log held below `from_idx`.
    pub origin_table: Option<OriginTable>,
    /// How the configuration before the joiner's ended, if the source knows:
    /// the joiner can then tell that configuration's stragglers (see
    /// [`StopSignDecided`]).
    pub stopsign: Option<StopSignDecided>,
}
}

/// A joiner asks the source that began sending it a snapshot in parts
/// ([`PullSnapshotPart`]) for one more of them. The source answers only if
/// it still holds that snapshot split the same way (`covers` and `parts`
/// match); otherwise the joiner asks for the log again and gets the
/// source's current snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PullSnapshot {
    /// The end of the log prefix the snapshot stands for.
    pub covers: u64,
    /// How many parts the source said the snapshot has.
    pub parts: u32,
    /// The part wanted, from 0.
    pub part: u32,
}

entry_message! {
/// One part of a source's snapshot of its decided log below `covers`, sent
/// instead of a [`PullLogReply`] when the snapshot splits into several
/// parts ([`Snapshot::into_parts`](crate::storage::Snapshot::into_parts) with
/// the source's `max_message_bytes`). Part 0 answers a [`PullLog`] that
/// starts in the source's compacted prefix; the joiner asks for the others
/// with [`PullSnapshot`], rebuilds the snapshot once it holds all `parts`,
/// and pulls the entries from `covers` on as usual.
pub struct PullSnapshotPart<T: Entry> {
    /// The end of the log prefix the snapshot stands for.
    pub covers: u64,
    /// This part's position, from 0.
    pub part: u32,
    /// How many parts the snapshot has (at least 2).
    pub parts: u32,
    /// The part.
    pub snapshot: T::Snapshot,
    /// What the source's log held below `covers` (see [`OriginTable`]).
    pub origin_table: OriginTable,
    /// How the configuration before the joiner's ended, if the source
    /// knows, as in [`PullLogReply::stopsign`].
    pub stopsign: Option<StopSignDecided>,
}
}

/// The leader replicates the stop-sign that ends the configuration; it is
/// the entry after the log.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct AcceptStopSign {
    /// The leader's ballot.
    pub n: Ballot,
    /// The position of this message in the session.
    pub seq_num: SequenceNumber,
    /// The stop-sign.
    pub ss: StopSign,
}

/// A follower asks the leader for a linearizable read point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ReadRequest {
    /// Names the request, unique across restarts of the follower (see
    /// [`ForwardId`]), so that an answer meant for an earlier incarnation
    /// can never complete a later read.
    pub id: ForwardId,
}

/// The leader checks that it still leads: every follower that still promises
/// `n` answers with a [`ReadAck`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ReadConfirm {
    /// The leader's ballot.
    pub n: Ballot,
    /// The confirmation round.
    pub round: u64,
}

/// A follower confirms that it still promises ballot `n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ReadAck {
    /// The ballot still promised.
    pub n: Ballot,
    /// The confirmation round answered.
    pub round: u64,
}

/// The leader answers a [`ReadRequest`]: the read is linearizable once the
/// follower has decided up to `read_idx`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ReadResponse {
    /// The request answered.
    pub id: ForwardId,
    /// The read point.
    pub read_idx: u64,
}

/// A compaction request the receiver carries out on its own log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Compaction {
    /// From the leader: trim the log below the index (every server accepted it).
    Trim(u64),
    /// Snapshot the decided log up to the index (or the whole decided log).
    Snapshot(Option<u64>),
}

/// Orders the accept-phase messages a leader sends one follower, so that the
/// follower notices a lost message and asks to be resynchronised.
///
/// `session` grows each time the leader (re)synchronises the follower;
/// `counter` grows with each message within a session, starting at 1 with the
/// `AcceptSync`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SequenceNumber {
    /// The synchronisation session.
    pub session: u64,
    /// The position in the session.
    pub counter: u64,
}

/// A follower asks the leader of ballot `n` to prepare it again (it restarted or missed a message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PrepareReq {
    /// The ballot of the leader the follower wants to follow.
    pub n: Ballot,
}

/// A new leader asks for a promise, and tells the follower what its own log looks like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Prepare {
    /// The leader's ballot.
    pub n: Ballot,
    /// The leader's decided index.
    pub decided_idx: u64,
    /// The ballot in which the leader last accepted.
    pub n_accepted: Ballot,
    /// The length of the leader's log.
    pub accepted_idx: u64,
}

entry_message! {
/// A follower promises ballot `n` and sends the part of its log that the leader may lack.
pub struct Promise<T: Entry> {
    /// The promised ballot.
    pub n: Ballot,
    /// The ballot in which the follower last accepted.
    pub n_accepted: Ballot,
    /// The follower's decided index.
    pub decided_idx: u64,
    /// The length of the follower's log.
    pub accepted_idx: u64,
    /// The follower's log from where it may be ahead of the leader, if it may be.
    pub log_sync: Option<LogSync<T>>,
    /// Set instead of `log_sync` when what the follower would send starts
    /// with a snapshot too large for one message: the snapshot follows in
    /// parts ([`SnapshotPart`]s from the follower to the leader), and this is
    /// the end of the log prefix it stands for. The leader installs it as
    /// decided once every part is in and prepares again; the next promise
    /// carries the rest.
    pub snapshot_follows: Option<u64>,
}
}

entry_message! {
/// A log suffix to install at `sync_idx`, replacing what is there, with a
/// snapshot of everything below `sync_idx` when the receiver may lack entries
/// the sender has compacted away.
pub struct LogSync<T: Entry> {
    /// A snapshot standing in for decided entries below `sync_idx`: the
    /// sender's complete snapshot when it compacted entries the receiver
    /// needs, or a delta when that is shorter than sending the entries.
    pub decided_snapshot: Option<SnapshotType<T>>,
    /// Where the suffix starts.
    pub sync_idx: u64,
    /// The entries from `sync_idx` on.
    pub suffix: Vec<T>,
    /// Where the suffix's entries came from, index 0 being `sync_idx`.
    pub suffix_origins: OriginIds,
    /// With a snapshot: what the sender's log held below `sync_idx`.
    pub origin_table: Option<OriginTable>,
    /// The stop-sign after the suffix, if the sender has one.
    pub stopsign: Option<StopSign>,
}
}

impl<T: Entry> LogSync<T> {
    /// Drops the first `k` entries of the suffix (the receiver has them),
    /// moving the sync index and the ids with them.
    pub(crate) fn skip(&mut self, k: usize) {
        let k = k.min(self.suffix.len());
        self.suffix.drain(..k);
        self.sync_idx += k as u64;
        self.suffix_origins.trim(k as u64);
        self.suffix_origins = self
            .suffix_origins
            .shifted_down(k as u64)
            .unwrap_or_default();
    }
}

/// A snapshot in a [`LogSync`].
#[derive_where(Clone, Debug)]
#[derive_where(PartialEq; T, T::Snapshot)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(bound(
        serialize = "T::Snapshot: serde::Serialize",
        deserialize = "T::Snapshot: serde::Deserialize<'de>"
    ))
)]
pub enum SnapshotType<T: Entry> {
    /// Stands for the whole log below the sync index.
    Complete(T::Snapshot),
    /// Stands for the decided entries `from_idx..sync_idx`; the receiver
    /// holds (or snapshotted) everything below `from_idx` and merges.
    Delta {
        /// Where the delta starts: the receiver's decided index.
        from_idx: u64,
        /// The snapshot of `from_idx..sync_idx`.
        snapshot: T::Snapshot,
    },
}

entry_message! {
/// The leader brings a promised follower's log up to date and starts a session.
pub struct AcceptSync<T: Entry> {
    /// The leader's ballot.
    pub n: Ballot,
    /// The session this message opens.
    pub seq_num: SequenceNumber,
    /// The leader's decided index.
    pub decided_idx: u64,
    /// What the follower installs.
    pub log_sync: LogSync<T>,
    /// Acknowledgements of this follower's forwarded batches in the suffix.
    pub forward_acks: Vec<ProposalAck>,
}
}

entry_message! {
/// The leader of ballot `n` sends a promised follower whose log lags far
/// behind the leader's decided prefix the next part of that prefix, before
/// its [`AcceptSync`]. Everything in the part is decided, so the follower
/// installs it without accepting anything in `n`: it keeps the round its log
/// was accepted in, raises its decided index to the part's end, and answers
/// with a new [`Promise`]. A part starts where the follower's decided prefix
/// ends once the parts before it are in (the first at the decided index the
/// follower promised with) and the first reaches at least the follower's log
/// end, so installing one cuts nothing the follower held. The leader keeps
/// a few parts unanswered at a time, and sends the `AcceptSync` once all are
/// in; the follower holds a part that comes ahead of a missing one.
///
/// This keeps every message of a catch-up after a leader change within the
/// chunk bound: an `AcceptSync` labels the follower's log with the leader's
/// ballot, so it must carry the whole log the leader adopted, and sent
/// first it would carry the follower's entire gap.
pub struct DecidedSync<T: Entry> {
    /// The leader's ballot.
    pub n: Ballot,
    /// The part: a suffix (possibly after a snapshot) of decided entries,
    /// never a stop-sign.
    pub log_sync: LogSync<T>,
}
}

entry_message! {
/// One part of a snapshot too large for one message (see
/// [`Snapshot::into_parts`](crate::storage::Snapshot::into_parts)), between
/// the leader of ballot `n` and a follower that promised `n`: the snapshot
/// stands for the decided log below `sync_idx`, whole (`delta_from: None`)
/// or from `delta_from` on (a delta onto the receiver's decided log below
/// that index). The receiver gathers the parts in order, acknowledging each
/// ([`SnapshotPartAck`]); once it holds all `parts`, it installs the
/// snapshot as decided, keeping the round its log was accepted in.
///
/// It goes both ways. From the leader, to a follower that needs it before
/// its log can be synchronised; the follower then promises again (see
/// [`DecidedSync`]). From a follower, to a leader in its prepare phase
/// whose decided prefix is shorter than what the follower compacted or
/// decided (the follower's [`Promise::snapshot_follows`]); the leader then
/// prepares again.
pub struct SnapshotPart<T: Entry> {
    /// The leader's ballot.
    pub n: Ballot,
    /// The end of the log prefix the whole snapshot stands for.
    pub sync_idx: u64,
    /// Where a delta snapshot starts; `None` for a complete one.
    pub delta_from: Option<u64>,
    /// This part's position, from 0.
    pub part: u32,
    /// How many parts the snapshot has.
    pub parts: u32,
    /// The part.
    pub snapshot: T::Snapshot,
    /// In the last part: what the sender's log held below `sync_idx`.
    pub origin_table: Option<OriginTable>,
}
}

/// The receiver of a snapshot sent in parts ([`SnapshotPart`]) holds the
/// first `received` of them: a follower, of the snapshot the leader of
/// ballot `n` sends it, or that leader, of the snapshot a follower sends it
/// after its promise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SnapshotPartAck {
    /// The leader's ballot.
    pub n: Ballot,
    /// The end of the prefix the snapshot stands for, as in its parts.
    pub sync_idx: u64,
    /// How many of its parts, from the first, the follower holds.
    pub received: u32,
}

/// The leader replicates new entries and tells the decided index.
#[derive_where(Clone, Debug)]
#[derive_where(PartialEq; T, T::Snapshot)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct AcceptDecide<T: Entry> {
    /// The leader's ballot.
    pub n: Ballot,
    /// The position of this message in the session.
    pub seq_num: SequenceNumber,
    /// The leader's decided index.
    pub decided_idx: u64,
    /// Entries to append at the end of the follower's log (shared with the
    /// other followers' messages until serialised).
    pub entries: Entries<T>,
    /// Where the entries came from, index 0 being the first entry.
    pub origins: OriginIds,
    /// Acknowledgements of this follower's forwarded batches whose entries
    /// travel in this message (or went before it): a follower never holds
    /// its own forwarded entries without knowing they were acknowledged.
    pub forward_acks: Vec<ProposalAck>,
}

/// A follower reports how much of the leader's log it has accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Accepted {
    /// The ballot accepted in.
    pub n: Ballot,
    /// The follower's log length.
    pub accepted_idx: u64,
}

/// The leader moved the decided index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Decide {
    /// The leader's ballot.
    pub n: Ballot,
    /// The position of this message in the session.
    pub seq_num: SequenceNumber,
    /// The leader's decided index.
    pub decided_idx: u64,
}

/// A follower refuses a message of an older ballot: it promised `n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct NotAccepted {
    /// The higher ballot the follower promised.
    pub n: Ballot,
}

/// A follower forwards proposals to the leader it knows.
#[derive_where(Clone, Debug)]
#[derive_where(PartialEq; T, T::Snapshot)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ProposalForward<T: Entry> {
    /// The ballot of the leader the proposals are meant for.
    pub n: Ballot,
    /// Names the batch, so that the leader appends a retried batch once.
    pub id: ForwardId,
    /// The proposals.
    pub entries: Vec<T>,
    /// The proposals' ids, index 0 being the first proposal: a leader that
    /// finds one in its log (the batch reached an earlier leader) does not
    /// append it again.
    pub origins: OriginIds,
}

/// Names a batch of forwarded proposals (or a follower's read request),
/// unique for its origin, also across restarts of the origin and changes of
/// leader.
///
/// `(ballot, session)` names the synchronisation the origin was in when it
/// first sent the batch: a leader opens a new session for every
/// synchronisation of a follower and never reuses one within its ballot, and
/// every incarnation of a server is synchronised before it may forward. So a
/// restarted server whose `seq` counts from 1 again never reuses an id, nor
/// does a batch first sent under an earlier leader and retried to a new one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ForwardId {
    /// The ballot of the leader that synchronised the origin.
    pub ballot: Ballot,
    /// The origin's synchronisation session in that ballot.
    pub session: u64,
    /// The origin's count of batches, from 1.
    pub seq: u64,
}

/// The leader appended a forwarded batch.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ProposalAck {
    /// The leader's ballot.
    pub n: Ballot,
    /// The batch appended.
    pub id: ForwardId,
    /// The log index the first entry of the batch got.
    pub first_idx: u64,
    /// Empty if the batch's entries are at `first_idx` and on; otherwise
    /// the index of each (some were in the log already, where an earlier
    /// leader put them).
    pub placed: Vec<u64>,
}

/// A leader election message with its envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct BLEMessage {
    /// The configuration the sender belongs to; other configurations ignore it.
    pub configuration_id: ConfigurationId,
    /// The sender.
    pub from: NodeId,
    /// The receiver.
    pub to: NodeId,
    /// The message.
    pub msg: HeartbeatMsg,
}

/// The leader election messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum HeartbeatMsg {
    /// Opens a heartbeat round.
    Request(HeartbeatRequest),
    /// Answers a round.
    Reply(HeartbeatReply),
}

/// Asks a peer for its view in heartbeat round `round`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct HeartbeatRequest {
    /// The requester's round.
    pub round: u32,
}

/// A peer's view: its ballot, whether it reaches a quorum, and the leader it sees directly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct HeartbeatReply {
    /// The round being answered.
    pub round: u32,
    /// The replier's own ballot.
    pub ballot: Ballot,
    /// Whether the replier heard from a quorum in its last round.
    pub quorum_connected: bool,
    /// The leader the replier heard from directly (or is) in its last round, if
    /// that leader is quorum-connected. Lets a server follow a leader it has no
    /// direct link to (the chained scenario).
    pub leader: Option<Ballot>,
}
