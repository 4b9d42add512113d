//! [`OmniPaxos`]: one server of a replicated log, as a pure state machine.

use crate::logging::{Logger, log};
use crate::{
    ballot::Ballot,
    ballot_leader_election::BallotLeaderElection,
    errors::{CompactionErr, ConfigError, ProposeErr, StorageError},
    messages::Message,
    migration::{Migration, MigrationStatus},
    reconfiguration::{self, Reconfiguration, Route},
    sequence_paxos::{NO_TAG, ReadError, ReadId, Role, SequencePaxos},
    storage::{Entry, Storage, internal::InternalStorage},
    ui::{OmniPaxosStates, PeerState},
    util::{DecidedRead, LogEntry, NodeId, StopSign},
};
pub use crate::{
    config::{FlexibleQuorum, OmniPaxosConfig},
    errors::ReconfigurationRequest,
};
use std::ops::RangeBounds;

/// Names one proposal made with [`OmniPaxos::append_tracked`] on this server.
/// Names are handed out in increasing order and are unique for the life of
/// the `OmniPaxos` value (and of the values built from it by
/// [`OmniPaxos::into_new_configuration`]); they are not persisted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProposalId(u64);

impl ProposalId {
    /// The name as a number.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// One server of a replicated log: Ballot Leader Election decides who leads,
/// Sequence Paxos replicates the log under that leader.
///
/// `OmniPaxos` does no I/O and keeps no time. Its methods come in four groups:
///
/// * **inputs** — [`handle_incoming`](Self::handle_incoming) for every message
///   the network delivers, [`tick`](Self::tick) at a fixed interval (timeouts
///   count ticks), [`reconnected`](Self::reconnected) when a link comes back,
///   and [`fail_recovery`](Self::fail_recovery) once after a restart;
/// * **commands** — [`append`](Self::append), [`set_priority`](Self::set_priority),
///   [`try_become_leader`](Self::try_become_leader);
/// * **outputs** — [`outgoing_messages`](Self::outgoing_messages) /
///   [`take_outgoing_messages`](Self::take_outgoing_messages), the messages to send;
/// * **queries** — [`read`](Self::read), [`read_entries`](Self::read_entries),
///   [`read_decided_suffix`](Self::read_decided_suffix), `get_*`.
///
/// A driver loops: feed what arrived and tick when the interval passed, issue
/// commands, then drain the outgoing messages and send each to
/// [`Message::get_receiver`], then apply newly decided entries to the state
/// machine. Draining after every batch of inputs keeps latency low; the order
/// within one iteration does not matter for safety.
pub struct OmniPaxos<T, S>
where
    T: Entry,
    S: Storage<T>,
{
    ble: BallotLeaderElection,
    seq_paxos: SequencePaxos<T, S>,
    /// Everything that crosses a configuration boundary: the previous
    /// configuration's stragglers and, while this server joins, what it
    /// pulls. It sees every message before leader election and Sequence
    /// Paxos do.
    reconf: Reconfiguration<T>,
    /// Decided proposals on their way out of `take_decided_proposals`.
    decided_scratch: Vec<(u64, u64)>,
    /// The validated config; leader election is rebuilt from it on recovery,
    /// and `set_priority` keeps its priority current.
    config: OmniPaxosConfig,
    /// Where protocol events are logged (nothing without feature `logging`).
    #[cfg_attr(
        not(feature = "logging"),
        allow(dead_code, reason = "read by log lines")
    )]
    logger: Logger,
    /// The logger as the user (or `build`) gave it, before this server's
    /// `pid` and `configuration_id` were added: a server built from this one
    /// for the next configuration adds its own, rather than a second pair.
    #[cfg_attr(
        not(feature = "logging"),
        allow(dead_code, reason = "read by log lines")
    )]
    root_logger: Logger,
    /// Whether the decision of this configuration's stop-sign was logged.
    #[cfg_attr(
        not(feature = "logging"),
        allow(dead_code, reason = "read by log lines")
    )]
    logged_stop: bool,
}

impl<T, S> OmniPaxos<T, S>
where
    T: Entry,
    S: Storage<T>,
{
    /// Called by [`OmniPaxosConfig::build`] after validation, with the
    /// logger to use (the user's, or the default one).
    pub(crate) fn new(
        config: OmniPaxosConfig,
        storage: S,
        root_logger: Logger,
    ) -> Result<Self, ConfigError> {
        let storage = InternalStorage::load(storage)?;
        #[cfg_attr(
            not(feature = "logging"),
            allow(
                clippy::let_unit_value,
                reason = "the logger is () without the feature"
            )
        )]
        let logger = crate::logging::for_server(&root_logger, &config);
        let ble = BallotLeaderElection::with(&config);
        #[cfg_attr(
            not(feature = "logging"),
            allow(
                clippy::clone_on_copy,
                clippy::unit_arg,
                reason = "the logger is () without the feature"
            )
        )]
        let mut seq_paxos = SequencePaxos::with(&config, storage, logger.clone());
        seq_paxos.start_incarnation()?;
        #[cfg_attr(
            not(feature = "logging"),
            allow(
                clippy::clone_on_copy,
                clippy::unit_arg,
                reason = "the logger is () without the feature"
            )
        )]
        let reconf = Reconfiguration::with(&config, &seq_paxos, logger.clone());
        Ok(Self {
            ble,
            seq_paxos,
            reconf,
            decided_scratch: Vec::new(),
            config,
            logger,
            root_logger,
            logged_stop: false,
        })
    }

    /// The logger a server built from this one starts from.
    #[cfg(feature = "logging")]
    fn logger_base(&self) -> Logger {
        self.root_logger.clone()
    }

    #[cfg(not(feature = "logging"))]
    fn logger_base(&self) -> Logger {}

    // ---- inputs ----

    /// Handles a message from a peer.
    ///
    /// Nothing a peer sends can make this panic, corrupt the storage, or make
    /// the server hold or send more than a bounded amount in answer. What is
    /// checked, and dropped without effect if it fails:
    ///
    /// * **addressing**: the message is for this server, from a server of
    ///   this configuration, in this configuration's id. The exceptions
    ///   cross configurations: a pull of the decided log is served to a
    ///   server of this configuration or one named by this configuration's
    ///   stop-sign (a joiner), at most four replies per puller (one per
    ///   range) until the driver takes the outgoing messages, each of at
    ///   most `max_entries_per_message` entries and `max_message_bytes`; a
    ///   pull reply is taken only from a server its part was asked of,
    ///   inside the range asked, and only once it is known (from the reply
    ///   or before) how the previous configuration ended; and a message of the configuration before this one
    ///   is answered with how that configuration ended.
    /// * **ballots**: every ballot has a round of at most
    ///   [`Ballot::MAX_ROUND`]; a ballot a server speaks for (a `Prepare`'s,
    ///   an `AcceptSync`'s, a heartbeat reply's) names its sender; messages
    ///   a leader sends are taken only from the leader this server promised
    ///   or follows (log syncs, accepts, decisions, acknowledgements of
    ///   forwarded proposals, read answers).
    /// * **ranges**: a log sync is installed only if it starts at or past
    ///   the compacted prefix, ends (without overflow) at or past the decided
    ///   index, and carries a snapshot only for an entry type that uses
    ///   snapshots; decided indices are clamped to what is accepted; no
    ///   memory is reserved from an index a peer names.
    ///
    /// What is trusted is what a member of the configuration claims within
    /// the protocol: that its log holds what it says, that the leader's
    /// decided index is decided. Paxos tolerates crashes, lost and repeated
    /// messages, not lies: a member that runs the protocol wrongly can make
    /// servers decide different logs, and nothing here detects that.
    pub fn handle_incoming(&mut self, m: Message<T>) {
        // The envelope: for us, with every ballot in range.
        if m.get_receiver() != self.config.pid {
            return;
        }
        // A driver that did not call `sync_storage` gets the sync now.
        self.seq_paxos.sync_storage();
        if let Message::SequencePaxos(p) = &m {
            if !p.msg.ballots_are_valid() {
                return;
            }
        }
        // What crosses configurations, or comes while we join, stops here.
        let m = match self.reconf.route(m, &mut self.seq_paxos) {
            Route::Pass(m) => m,
            Route::Consumed => return,
            Route::TakesPart => {
                // Leader election starts its rounds now, not from construction time.
                self.ble = BallotLeaderElection::with(&self.config);
                return;
            }
        };
        match m {
            Message::SequencePaxos(p) => {
                let promise = self.seq_paxos.promise();
                self.seq_paxos.handle(p);
                let new_promise = self.seq_paxos.promise();
                if new_promise > promise {
                    // Another server prepared us: leader election learns of
                    // that leader now, not a round late through heartbeats.
                    self.ble.observe_prepare(new_promise);
                }
                self.log_stop_decision();
            }
            Message::BLE(b) if !self.seq_paxos.is_halted() => self.ble.handle(b),
            Message::BLE(_) => {}
        }
    }

    /// Advances logical time by one tick. Call it at a fixed interval; every
    /// timeout in [`OmniPaxosConfig`] counts these calls.
    pub fn tick(&mut self) {
        self.seq_paxos.sync_storage();
        if self.seq_paxos.is_halted() || self.reconf.tick_migration() {
            return;
        }
        let promise = self.seq_paxos.promise();
        // If leader election picks this server while Sequence Paxos has promised
        // a higher ballot, it raises its own ballot above that promise at the end
        // of the round, so a stale election never blocks leadership.
        let leading = (self.seq_paxos.role() == Role::Leader).then_some(promise);
        let rejected_by = self.seq_paxos.take_rejected_by();
        if let Some(leader) = self.ble.tick(promise, leading, rejected_by) {
            self.on_new_leader(leader);
        }
        self.seq_paxos.tick();
        self.reconf.tick();
        self.log_stop_decision();
    }

    /// Logs, once, that this configuration's stop-sign is decided.
    fn log_stop_decision(&mut self) {
        #[cfg(feature = "logging")]
        if !self.logged_stop {
            if let Some(ss) = self.seq_paxos.decided_stopsign() {
                log!(info, self.logger, "stop-sign decided";
                    "next_configuration" => ss.config_id, "nodes" => ?ss.nodes);
                self.logged_stop = true;
            }
        }
    }

    fn on_new_leader(&mut self, leader: Ballot) {
        log!(info, self.logger, "leader changed";
            "leader" => leader.pid, "n" => leader.n, "is_self" => leader.pid == self.config.pid);
        self.seq_paxos.handle_leader(leader);
    }

    /// Tells the server that the link to `pid` was down and is back: messages
    /// sent meanwhile may be lost, so the two resynchronise.
    pub fn reconnected(&mut self, pid: NodeId) {
        self.seq_paxos.reconnected(pid);
    }

    /// Call once after building a server on storage that survived a crash: it
    /// forgets what it believed before the crash and asks the current leader
    /// to synchronise it.
    pub fn fail_recovery(&mut self) {
        self.ble = BallotLeaderElection::with(&self.config);
        self.seq_paxos.fail_recovery();
    }

    /// Stops this server as a crash would and hands its storage back: what
    /// it wrote stays, what it held only in memory (unflushed batches,
    /// unsent messages, its view of the leader) is dropped, and nothing is
    /// written on the way out.
    ///
    /// For a driver or a test that restarts the server on the same storage
    /// value, e.g. a `MemoryStorage` that stands in for a disk: build a
    /// new server on it with [`OmniPaxosConfig::build`] and call
    /// [`fail_recovery`](Self::fail_recovery) on it, as after a real crash.
    /// `omnipaxos_sim` crashes and restarts servers this way.
    pub fn into_storage(self) -> S {
        self.seq_paxos.storage.into_inner()
    }

    // ---- commands ----

    /// Proposes `entry` for the log.
    ///
    /// On the leader it joins the batch, written and sent to followers as
    /// [`batch_size`](crate::OmniPaxosConfig::batch_size) says (at once if
    /// the batch is full and nothing sent before is undecided, else at the
    /// next [`take_outgoing_messages`](Self::take_outgoing_messages)); on a
    /// follower it is forwarded to the leader and sent again until the leader
    /// acknowledges it; with no leader known it waits in a buffer of
    /// `buffer_size` entries. `Ok` means accepted for proposal, not decided:
    /// watch [`get_decided_idx`](Self::get_decided_idx).
    ///
    /// Exactly once while this server stays up: the proposal carries this
    /// server's id ([`OriginId`](crate::storage::OriginId)) into every log,
    /// and a leader that finds the id in its log does not append a retry
    /// again, whatever leader changes and log syncs happen. After a restart
    /// of this server, a proposal that reached a leader's log is decided
    /// once and one that did not is lost (at most once). With a storage that
    /// [keeps no origins](crate::storage::Storage::keeps_origins), a
    /// forwarded entry whose leader fails may be decided twice.
    pub fn append(&mut self, entry: T) -> Result<(), ProposeErr<T>> {
        // Untracked: nothing is kept to report, so nothing piles up for a
        // caller that never asks.
        self.seq_paxos.append_tagged(entry, NO_TAG)
    }

    /// Proposes `entry` as [`append`](Self::append) does, and names the
    /// proposal so that [`take_decided_proposals`](Self::take_decided_proposals)
    /// later reports the log index it was decided at.
    ///
    /// This is what a driver needs to answer "is my entry decided, and
    /// where?". The report follows the entry through forwarding, leader
    /// changes and a move to the next configuration (with
    /// [`into_new_configuration`](Self::into_new_configuration)). A crash
    /// forgets the names: after a restart nothing proposed before it is
    /// reported. Each proposal is reported once, at the one index it was
    /// decided at.
    pub fn append_tracked(&mut self, entry: T) -> Result<ProposalId, ProposeErr<T>> {
        self.seq_paxos.append(entry).map(ProposalId)
    }

    /// Moves the proposals made with [`append_tracked`](Self::append_tracked)
    /// that are now decided into `buf`, as `(proposal, log index)`.
    /// Call it after feeding inputs, as often as convenient; each proposal is
    /// reported once. Reports wait in memory until taken, so a caller of
    /// `append_tracked` must take them; plain [`append`](Self::append)
    /// keeps nothing.
    pub fn take_decided_proposals(&mut self, buf: &mut Vec<(ProposalId, u64)>) {
        self.seq_paxos.take_decided_tags(&mut self.decided_scratch);
        buf.extend(
            self.decided_scratch
                .drain(..)
                .map(|(tag, idx)| (ProposalId(tag), idx)),
        );
    }

    /// Trims the log below `trim_idx` (default: the decided index) on every
    /// server. Call it on the leader once the state machine has applied the
    /// prefix and no reader needs those entries. If the entry type uses
    /// snapshots, the trimmed entries are folded into the snapshot, so the
    /// compacted prefix always stays represented by one complete snapshot.
    ///
    /// Refused, with the state unchanged, if this server does not lead
    /// ([`CompactionErr::NotCurrentLeader`] names the leader), if the index is
    /// not decided ([`CompactionErr::UndecidedIndex`]), if some server has not
    /// accepted up to it ([`CompactionErr::NotAllAccepted`] gives the highest
    /// index that would work), or if it is already compacted. Afterwards reads
    /// below the index return [`LogEntry::Trimmed`] (or
    /// [`LogEntry::Snapshotted`] when snapshots are in use).
    pub fn trim(&mut self, trim_idx: Option<u64>) -> Result<(), CompactionErr> {
        self.seq_paxos.trim(trim_idx)
    }

    /// Replaces the decided log below `compact_idx` (default: the decided
    /// index) by a snapshot, built with [`Snapshot::create`] and merged into
    /// any earlier snapshot. With `local_only` false, every peer is asked to
    /// do the same (each as far as its own decided index goes).
    ///
    /// Works on any server. A server that lags behind a compacted prefix is
    /// later brought up to date with the snapshot plus the entries after it.
    /// Refused, with the state unchanged, for an undecided or already
    /// compacted index, or when the entry type does not use snapshots.
    /// Afterwards reads below the index return [`LogEntry::Snapshotted`].
    ///
    /// [`Snapshot::create`]: crate::storage::Snapshot::create
    pub fn snapshot(
        &mut self,
        compact_idx: Option<u64>,
        local_only: bool,
    ) -> Result<(), CompactionErr> {
        self.seq_paxos.snapshot(compact_idx, local_only)
    }

    /// Starts a linearizable read that writes nothing to the log.
    ///
    /// The leader checks with a write quorum that it still leads, then gives
    /// the read a *read point*: an index such that every entry decided before
    /// this call lies below it. Collect it with
    /// [`take_read_points`](Self::take_read_points), then serve the read once
    /// [`get_decided_idx`](Self::get_decided_idx) reaches the read point (and
    /// the state machine has applied that far). On a follower the request goes
    /// to the leader and is retried until answered; with no leader it waits.
    /// A read outlives a leader change; the caller decides how long to wait.
    ///
    /// Once a stop-sign is in the log, reads belong to the next
    /// configuration: this one refuses them ([`ReadError::Reconfigured`]),
    /// and its leader confirms no reads it had not started.
    pub fn request_read(&mut self) -> Result<ReadId, ReadError> {
        self.seq_paxos.request_read()
    }

    /// Moves the read points of completed linearizable reads, as
    /// `(read id, read point)`, into `buf` (appending).
    pub fn take_read_points(&mut self, buf: &mut Vec<(ReadId, u64)>) {
        self.seq_paxos.take_read_points(buf);
    }

    /// Proposes to end this configuration and continue the log with the
    /// servers in `rc`: a stop-sign is appended after the log (forwarded to
    /// the leader from a follower; held until a leader is known).
    ///
    /// From then on [`append`](Self::append) is refused with
    /// [`ProposeErr::PendingReconfigEntry`], and a second `reconfigure` with
    /// [`ProposeErr::PendingReconfigConfig`]. Once the stop-sign is decided,
    /// [`is_reconfigured`](Self::is_reconfigured) returns it and reads show it
    /// as the last entry; then build each continuing server's node of the
    /// next configuration with
    /// [`into_new_configuration`](Self::into_new_configuration). The next
    /// configuration's id is this one's plus one. A request with no server, a
    /// repeated id or id 0 is refused with
    /// [`ProposeErr::InvalidReconfiguration`].
    pub fn reconfigure(&mut self, rc: ReconfigurationRequest) -> Result<(), ProposeErr<T>> {
        self.seq_paxos.reconfigure(rc)
    }

    /// Turns this server, once its configuration's stop-sign is decided, into
    /// a server of the next configuration on the same storage: the log is
    /// kept (decided), the stop-sign and the old configuration's ballots are
    /// dropped. `config` must name the stop-sign's configuration id, this
    /// server's pid, and the stop-sign's other servers as peers; anything else
    /// is a [`ConfigError`] naming the field. Proposals this server accepted
    /// that the old configuration did not decide are proposed again in the
    /// new one.
    ///
    /// If the stop-sign was decided without this server and its log holds
    /// only part of the decided log, the new server first pulls the rest, as
    /// a joining server does ([`is_migrating`](Self::is_migrating),
    /// [`get_migration`](Self::get_migration)), from the servers that told it
    /// and its new peers. Its own proposals past what it knows to be decided
    /// are proposed again in the new configuration under the ids they had,
    /// and the new configuration's log begins with the old one: one that the
    /// old configuration did decide is found there and reported at its
    /// index, not decided twice.
    pub fn into_new_configuration(self, config: OmniPaxosConfig) -> Result<Self, ConfigError> {
        let Some(ss) = self.is_reconfigured() else {
            return Err(ConfigError::field(
                "configuration_id",
                "this server's configuration has no decided stop-sign yet",
            ));
        };
        reconfiguration::check_next_config(&ss, self.config.pid, &config)?;
        #[cfg_attr(
            not(feature = "logging"),
            allow(
                clippy::let_unit_value,
                reason = "the logger is () without the feature"
            )
        )]
        let logger = self.logger_base();
        let handover = self.seq_paxos.into_next_configuration()?;
        let mut node = Self::new(config, handover.storage, logger)?;
        debug_assert!(
            node.reconf.knows_previous_end(),
            "the new node knows how the old configuration ended"
        );
        node.seq_paxos.set_next_tag(handover.next_tag);
        node.seq_paxos
            .continue_identity(handover.incarnation, handover.next_seq);
        node.decided_scratch = handover.decided_tags;
        if handover.known_until < handover.stop_idx {
            // The stop-sign was decided without us, and our log holds the
            // decided one only in part: pull the rest before taking part.
            node.reconf.pull_rest(
                handover.known_until,
                handover.stop_idx,
                handover.sources,
                &node.seq_paxos,
            );
        }
        for p in handover.carried {
            // The new node has no leader yet: entries wait in its buffer,
            // which has room for what the old one held.
            if node.seq_paxos.append_carried(p).is_err() {
                break;
            }
        }
        Ok(node)
    }

    /// Sets this server's leader priority. If it exceeds the current leader's,
    /// this server takes over at the end of the current heartbeat round.
    pub fn set_priority(&mut self, priority: u32) {
        self.config.leader_priority = priority;
        self.ble.set_priority(priority);
    }

    /// Makes this server try to lead now with a ballot above every ballot it
    /// knows. It succeeds if it is connected to a quorum.
    pub fn try_become_leader(&mut self) {
        // A server still pulling its log neither votes nor leads.
        if self.seq_paxos.is_halted() || self.is_migrating() {
            return;
        }
        if let Some(leader) = self.ble.try_become_leader(self.seq_paxos.promise()) {
            self.on_new_leader(leader);
        }
    }

    /// Sends the proposals a leader has gathered into its current batch now,
    /// instead of when the batch holds `batch_size` entries or when
    /// `flush_batch_tick_timeout` ticks have passed. Does nothing on a
    /// follower (it forwards proposals at once) or with an empty batch. A
    /// leader with `max_entries_per_message` entries (or about
    /// `max_message_bytes`) undecided sends only what fits that window; the
    /// rest goes as soon as more is decided (see
    /// [`OmniPaxosConfig::max_entries_per_message`](crate::OmniPaxosConfig::max_entries_per_message)).
    ///
    /// A driver calls it once it has handed the server every input that was
    /// waiting: a lone proposal then goes out at once, while a burst still
    /// forms one large batch (and one storage write). The runtime's node does
    /// this after a step that left no input waiting, once nothing it sent
    /// before is still undecided.
    ///
    /// ```
    /// use omnipaxos::{OmniPaxos, OmniPaxosConfig, macros::Entry};
    /// use omnipaxos_storage::memory_storage::MemoryStorage;
    ///
    /// #[derive(Clone, Debug, Entry)]
    /// struct Op(u64);
    ///
    /// let config = OmniPaxosConfig { pid: 1, batch_size: 64, ..Default::default() };
    /// let mut node: OmniPaxos<Op, MemoryStorage<Op>> = config.build(MemoryStorage::default())?;
    /// while !node.is_leader() {
    ///     node.tick();
    /// }
    /// node.append(Op(7)).expect("room");
    /// assert_eq!(node.get_decided_idx(), 0, "waiting in the batch");
    /// node.flush_batch();
    /// assert_eq!(node.get_decided_idx(), 1, "a single server decides at once");
    /// # Ok::<(), omnipaxos::ConfigError>(())
    /// ```
    pub fn flush_batch(&mut self) {
        if !self.reconf.is_migrating() {
            self.seq_paxos.flush();
        }
    }

    /// Makes the leader's deferred write of its last batch durable and
    /// decides what that lets it decide; returns whether a write waited
    /// (then call [`take_outgoing_messages`](Self::take_outgoing_messages)
    /// again: the decision is news for the followers).
    ///
    /// Only with [`OmniPaxosConfig::defer_leader_sync`] on does a leader
    /// defer that write, sending its batch before its own copy is durable.
    /// Call this right after the messages of `take_outgoing_messages` are
    /// handed to the network, so that this disk sync overlaps the
    /// followers' instead of coming before them. Without the call, the
    /// next [`handle_incoming`](Self::handle_incoming) or [`tick`](Self::tick)
    /// syncs first. A failed sync stops this server, like any failed write
    /// ([`get_storage_failure`](Self::get_storage_failure)).
    ///
    /// ```
    /// use omnipaxos::{macros::Entry, OmniPaxosConfig};
    /// use omnipaxos_storage::memory_storage::MemoryStorage;
    ///
    /// #[derive(Clone, Debug, Entry)]
    /// struct Op(u64);
    ///
    /// let config = OmniPaxosConfig { pid: 1, defer_leader_sync: true, ..Default::default() };
    /// let mut node = config.build(MemoryStorage::<Op>::default())?;
    /// while !node.is_leader() {
    ///     node.tick();
    /// }
    /// node.append(Op(7)).expect("room");
    /// node.flush_batch();
    /// let to_send = node.outgoing_messages(); // hand these to the network
    /// # drop(to_send);
    /// // MemoryStorage writes at once, so nothing waited.
    /// assert!(!node.sync_storage());
    /// assert_eq!(node.get_decided_idx(), 1);
    /// # Ok::<(), omnipaxos::ConfigError>(())
    /// ```
    pub fn sync_storage(&mut self) -> bool {
        self.seq_paxos.sync_storage()
    }

    /// Whether the leader's deferred write of a batch waits for
    /// [`sync_storage`](Self::sync_storage): a driver may use it to skip its
    /// own work around the sync when nothing waits. (A decided index raised
    /// lazily waits for no sync: the next synced write commits it.)
    pub fn has_unsynced_storage(&self) -> bool {
        self.seq_paxos.has_unsynced_storage()
    }

    // ---- outputs ----

    /// Returns the messages to send, leaving none behind.
    pub fn outgoing_messages(&mut self) -> Vec<Message<T>> {
        let mut buf = Vec::new();
        self.take_outgoing_messages(&mut buf);
        buf
    }

    /// Moves the messages to send into `buf` (appending), so a driver can reuse
    /// one buffer for the life of the server.
    pub fn take_outgoing_messages(&mut self, buf: &mut Vec<Message<T>>) {
        if self.seq_paxos.is_halted() {
            // A stopped server says nothing, not even heartbeats, so that others replace it.
            self.ble.outgoing_mut().clear();
            self.reconf.clear_outgoing();
            return;
        }
        if self.reconf.take_outgoing(buf) {
            // A joining server sends only its questions and pull requests.
            return;
        }
        self.seq_paxos.take_outgoing(buf);
        buf.extend(self.ble.outgoing_mut().drain(..).map(Message::BLE));
    }

    /// Starts pulling the previous configuration's log from index `from`
    /// on (see [`Reconfiguration::start_joining`]).
    pub(crate) fn start_joining(&mut self, migration: Migration, from: u64) {
        self.reconf.start_joining(migration, from, &self.seq_paxos);
    }

    /// Starts asking `sources` (and the new peers) how the previous
    /// configuration ended, to learn what to pull.
    pub(crate) fn start_discovery(&mut self, sources: Vec<NodeId>) {
        self.reconf.start_discovery(sources);
    }

    /// The length of the log this server is pulling, if it is.
    pub(crate) fn pulling_log_len(&self) -> Option<u64> {
        self.reconf.pulling_log_len()
    }

    /// Whether this server knows how the previous configuration ended.
    pub(crate) fn knows_previous_end(&self) -> bool {
        self.reconf.knows_previous_end()
    }

    /// Whether this server is still pulling the previous configuration's log
    /// (see [`OmniPaxosConfig::build_joining`]), or still asking how long it
    /// is (see [`OmniPaxosConfig::build_joining_from`]); it takes no other
    /// part until done.
    pub fn is_migrating(&self) -> bool {
        self.reconf.is_migrating()
    }

    /// What this server is pulling, while it joins: if it restarts before it
    /// is done, build it again with
    /// [`OmniPaxosConfig::build_joining`] and this, on the same storage.
    /// Besides servers built with `build_joining`, a server that moved on
    /// with [`into_new_configuration`](Self::into_new_configuration) pulls
    /// when it missed part of the old configuration's log.
    pub fn get_migration(&self) -> Option<Migration> {
        self.reconf.migration()
    }

    /// How a server that joins its configuration is doing, for operators
    /// and dashboards; `None` once it takes part (or if it never joined).
    ///
    /// While pulling, the log comes in parts of at most
    /// `max_entries_per_message` entries, at most four parts in flight per
    /// source; each reply is at most the source's `max_message_bytes` (by
    /// [`Entry::size_hint`], at least one entry). Parts that continue the
    /// stored log are written at once; those that came ahead of a missing
    /// part wait in memory, so
    /// [`held_bytes`](MigrationStatus::held_bytes) stays below
    /// `4 × sources × max_message_bytes` (plus one entry per part for
    /// entries larger than that bound). A source that leaves a part
    /// unanswered for `resend_message_tick_timeout` ticks is marked
    /// unresponsive and its parts go to the others;
    /// [`stalled`](MigrationStatus::stalled) says that the stored log did
    /// not grow for a whole resend timeout (logged as a warning once per
    /// stall with feature `logging`).
    pub fn get_migration_status(&self) -> Option<MigrationStatus> {
        self.reconf.migration_status(self.seq_paxos.decided_idx())
    }

    /// How many ticks this server has spent pulling the previous
    /// configuration's log so far, if it is joining.
    pub fn get_migration_ticks(&self) -> Option<u64> {
        self.reconf.migration_ticks()
    }

    // ---- queries ----

    /// This server's id.
    pub fn get_pid(&self) -> NodeId {
        self.config.pid
    }

    /// The config this server runs with (its priority as last set).
    pub fn get_config(&self) -> &OmniPaxosConfig {
        &self.config
    }

    /// The stop-sign that ended the configuration before this server's, if
    /// this server knows it (it moved on, joined, or learned it from a peer).
    pub fn get_previous_stopsign(&self) -> Option<&StopSign> {
        self.reconf.previous_stopsign()
    }

    /// Reads the entry at `idx`; `None` if the log does not reach it (or the
    /// storage failed to read it).
    pub fn read(&self, idx: u64) -> Option<LogEntry<T>> {
        self.read_entries(idx..=idx).and_then(|mut v| v.pop())
    }

    /// Reads the entries in `range`; `None` if the range goes past the end of
    /// the log. A compacted part of the range is returned as one `Trimmed` or
    /// `Snapshotted` entry.
    pub fn read_entries<R: RangeBounds<u64>>(&self, range: R) -> Option<Vec<LogEntry<T>>> {
        self.seq_paxos.read_entries(range)
    }

    /// Reads the decided entries from `from_idx` on; `None` if there are none.
    pub fn read_decided_suffix(&self, from_idx: u64) -> Option<Vec<LogEntry<T>>> {
        let decided = self.get_decided_idx();
        if from_idx < decided {
            self.read_entries(from_idx..decided)
        } else {
            None
        }
    }

    /// Lends the decided entries in `range` to `f`, in log order, with their
    /// indices: what a state machine applies. Unlike
    /// [`read_entries`](Self::read_entries) it builds no `LogEntry` and, on
    /// a storage that holds its log in memory such as `MemoryStorage`,
    /// copies nothing.
    ///
    /// The read stops at the decided index, and says so: the result is
    /// [`DecidedRead::UpTo`] with the index to read on from next time,
    /// [`DecidedRead::StopSign`] when the log ends in a decided stop-sign
    /// (at that index; nothing is decided after it), or
    /// [`DecidedRead::Compacted`] when the range starts below the compacted
    /// index (then nothing is lent; read that part with `read_entries` to
    /// get its `Trimmed` or `Snapshotted` entry). On a storage error, `f`
    /// may have seen the first part of the range: the indices it was given
    /// say how far.
    ///
    /// ```
    /// # use omnipaxos::{DecidedRead, OmniPaxos, OmniPaxosConfig, macros::Entry};
    /// # use omnipaxos_storage::memory_storage::MemoryStorage;
    /// #[derive(Clone, Debug, Entry)]
    /// struct Add(u64);
    ///
    /// let config = OmniPaxosConfig { configuration_id: 1, pid: 1, ..Default::default() };
    /// let mut node: OmniPaxos<Add, MemoryStorage<Add>> =
    ///     config.build(MemoryStorage::default()).expect("valid config");
    /// while !node.is_leader() {
    ///     node.tick();
    /// }
    /// node.append(Add(2)).expect("room");
    /// node.append(Add(3)).expect("room");
    ///
    /// let (mut applied, mut sum) = (0, 0);
    /// let read = node
    ///     .read_decided_with(applied.., |idx, Add(x)| {
    ///         assert_eq!(idx, applied);
    ///         sum += x;
    ///         applied += 1;
    ///     })
    ///     .expect("memory storage reads never fail");
    /// assert_eq!(read, DecidedRead::UpTo(2));
    /// assert_eq!((applied, sum), (2, 5));
    /// ```
    pub fn read_decided_with<R, F>(&self, range: R, f: F) -> Result<DecidedRead, StorageError>
    where
        R: RangeBounds<u64>,
        F: FnMut(u64, &T),
    {
        self.seq_paxos.read_decided_with(range, f)
    }

    /// Entries below this index are decided.
    pub fn get_decided_idx(&self) -> u64 {
        self.seq_paxos.decided_idx()
    }

    /// The length of this server's log: entries below it are accepted here
    /// (decided or not).
    pub fn get_accepted_idx(&self) -> u64 {
        self.seq_paxos.accepted_idx()
    }

    /// Entries below this index are compacted (trimmed or snapshotted).
    pub fn get_compacted_idx(&self) -> u64 {
        self.seq_paxos.compacted_idx()
    }

    /// The server this one considers leader, if any.
    pub fn get_current_leader(&self) -> Option<NodeId> {
        self.get_current_leader_ballot().map(|b| b.pid)
    }

    /// The ballot of the server this one considers leader, if any.
    pub fn get_current_leader_ballot(&self) -> Option<Ballot> {
        self.ble.leader()
    }

    /// Whether this server leads and is replicating (past its prepare phase).
    pub fn is_leader(&self) -> bool {
        self.seq_paxos.is_accepting_leader()
    }

    /// The highest ballot this server promised.
    pub fn get_promise(&self) -> Ballot {
        self.seq_paxos.promise()
    }

    /// The stop-sign that ends this configuration, once it is decided: here,
    /// or without this server (a server that moved on to the next
    /// configuration told it; then the decided log may be incomplete here,
    /// and [`into_new_configuration`](Self::into_new_configuration) pulls the
    /// rest).
    pub fn is_reconfigured(&self) -> Option<StopSign> {
        self.seq_paxos.decided_stopsign().cloned()
    }

    /// The storage failure that stopped this server, if one did.
    pub fn get_storage_failure(&self) -> Option<&StorageError> {
        self.seq_paxos.storage_failure()
    }

    /// A copy of the state a dashboard shows.
    pub fn get_ui_states(&self) -> OmniPaxosStates {
        let sp = &self.seq_paxos;
        let connected = self.ble.connected_peers();
        OmniPaxosStates {
            pid: self.config.pid,
            configuration_id: self.config.configuration_id,
            heartbeat_round: self.ble.round(),
            current_ballot: self.ble.current_ballot(),
            current_leader: self.ble.leader(),
            role: sp.role(),
            phase: sp.phase(),
            promise: sp.promise(),
            accepted_round: sp.accepted_round(),
            decided_idx: sp.decided_idx(),
            accepted_idx: sp.accepted_idx(),
            compacted_idx: sp.compacted_idx(),
            quorum_connected: self.ble.is_quorum_connected(),
            cluster_state: self
                .config
                .peers
                .iter()
                .map(|&pid| PeerState {
                    pid,
                    connected: connected.contains(&pid),
                    last_heartbeat_round: self.ble.last_heard_round(pid),
                    accepted_idx: self.seq_paxos.peer_accepted_idx(pid),
                })
                .collect(),
            storage_failed: self.seq_paxos.is_halted(),
        }
    }
}
