//! [`OmniPaxos`]: one server of a replicated log, as a pure state machine.

use crate::logging::{Logger, log};
use crate::{
    ballot::Ballot,
    ballot_leader_election::BallotLeaderElection,
    errors::{CompactionErr, ConfigError, ProposeErr, StorageError},
    messages::{Message, PaxosMessage, PaxosMsg},
    migration::{
        Discovery, Joining, Migration, MigrationStage, MigrationStatus, PullSettings, SourceStatus,
    },
    sequence_paxos::{NO_TAG, ReadError, ReadId, Role, SequencePaxos},
    storage::{Entry, Storage, internal::InternalStorage},
    stragglers::Stragglers,
    ui::{OmniPaxosStates, PeerState},
    util::{ConfigurationEnd, LogEntry, MAX_LOG_INDEX, NodeId, SnapshottedEntry, StopSign},
};
pub use crate::{
    config::{FlexibleQuorum, OmniPaxosConfig},
    errors::ReconfigurationRequest,
};
use std::ops::{Bound, RangeBounds};

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
    /// While joining a new configuration: pulling the previous configuration's
    /// log. The server takes no other part until that is done.
    joining: Option<Joining<T>>,
    /// Before `joining`, for a server built with
    /// [`OmniPaxosConfig::build_joining_from`]: asking the old servers how
    /// long the log to pull is. The server takes no other part until that
    /// and the pull are done.
    discovering: Option<Discovery>,
    /// Decided proposals on their way out of `take_decided_proposals`.
    decided_scratch: Vec<(u64, u64)>,
    /// What this server knows of how the previous configuration ended, to
    /// tell that configuration's stragglers.
    stragglers: Stragglers<T>,
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
        let mut stragglers = Stragglers::with(&config);
        // A server that moved on (or learned how the previous configuration
        // ended) persisted it, so that it can still tell that
        // configuration's stragglers after a restart. A record of another
        // configuration's end (the storage of a server built for a
        // configuration it never moved on to) says nothing about ours.
        if let Some(end) = storage.previous_end() {
            if end.stopsign.config_id == config.configuration_id {
                stragglers.moved_on(end.clone().into());
            }
        }
        #[cfg_attr(
            not(feature = "logging"),
            allow(
                clippy::clone_on_copy,
                clippy::unit_arg,
                reason = "the logger is () without the feature"
            )
        )]
        let seq_paxos = SequencePaxos::with(&config, storage, logger.clone());
        let mut node = Self {
            ble,
            seq_paxos,
            joining: None,
            discovering: None,
            decided_scratch: Vec::new(),
            stragglers,
            config,
            logger,
            root_logger,
            logged_stop: false,
        };
        node.resume_recorded_join();
        Ok(node)
    }

    /// A storage that records how the previous configuration ended but
    /// holds its decided log only in part, and that never promised a ballot
    /// in this configuration, belongs to a server that was pulling that log
    /// when it stopped (a joiner, or a server that moved on without all of
    /// it): it pulls on, from the new configuration's other servers (a build
    /// that names sources replaces them), and takes no other part until the
    /// log is in. Whatever the server was built with, it must not vote with
    /// part of the log.
    fn resume_recorded_join(&mut self) {
        let storage = &self.seq_paxos.storage;
        let Some(end) = storage.previous_end() else {
            return;
        };
        let decided = storage.decided_idx();
        if end.stopsign.config_id != self.config.configuration_id
            || decided >= end.stop_idx
            || end.stop_idx > MAX_LOG_INDEX
            || storage.promise() != Ballot::default()
        {
            return;
        }
        let migration = Migration {
            log_len: end.stop_idx,
            sources: self.config.peers.clone(),
        };
        self.start_joining(migration, decided);
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
        if m.get_receiver() != self.config.pid {
            return;
        }
        let from = m.get_sender();
        if let Message::SequencePaxos(p) = &m {
            if !p.msg.ballots_are_valid() {
                return;
            }
        }
        // Pulling a decided log crosses configurations: a joining server asks
        // servers of the previous one.
        if let Message::SequencePaxos(PaxosMessage { msg, .. }) = &m {
            match msg {
                PaxosMsg::PullLog(req) => {
                    // A server still pulling serves nothing: what it would
                    // send waits until it takes part.
                    if self.joining.is_none() {
                        let req = *req;
                        self.seq_paxos
                            .handle_pull(from, req, self.stragglers.previous());
                    }
                    return;
                }
                PaxosMsg::PullLogReply(_) => {
                    if let (
                        Some(joining),
                        Message::SequencePaxos(PaxosMessage {
                            msg: PaxosMsg::PullLogReply(reply),
                            ..
                        }),
                    ) = (&mut self.joining, m)
                    {
                        joining.handle_reply(from, reply);
                        self.pump_joining();
                    }
                    return;
                }
                PaxosMsg::StopSignRequest(_)
                    if self.config.configuration_id.checked_add(1)
                        == Some(m.get_configuration_id()) =>
                {
                    // A server joining the next configuration, which knows
                    // only where we are, asks how ours ended.
                    if let Some(decided) = self.seq_paxos.stopsign_decided_msg() {
                        if decided.ss.nodes.contains(&from) {
                            self.stragglers.answer_joiner(from, decided);
                        }
                    }
                    return;
                }
                _ => {}
            }
        }
        if self.discovering.is_some() {
            // Only the answer to our question counts until we know what to pull.
            if let Message::SequencePaxos(PaxosMessage {
                configuration_id,
                msg: PaxosMsg::StopSignReply(reply),
                ..
            }) = m
            {
                self.handle_discovery_reply(from, configuration_id, reply.decided);
            }
            return;
        }
        let is_notice = matches!(
            &m,
            Message::SequencePaxos(PaxosMessage {
                msg: PaxosMsg::StopSignDecided(_),
                ..
            })
        );
        if self.stragglers.is_previous(m.get_configuration_id()) {
            // The sender still speaks in the configuration that ended
            // before ours: it missed the end. (Told once we hold the decided
            // log it will ask us for.)
            if self.joining.is_none() {
                self.stragglers.handle_previous(from, is_notice);
            }
            return;
        }
        if self.joining.is_some() {
            // Not a voter, nor a candidate, until the log is here.
            return;
        }
        if m.get_configuration_id() != self.config.configuration_id
            || !self.config.peers.contains(&from)
        {
            return;
        }
        let m = match m {
            Message::SequencePaxos(PaxosMessage {
                msg: PaxosMsg::StopSignRequest(_),
                ..
            }) => {
                self.stragglers.handle_request(from);
                return;
            }
            Message::SequencePaxos(PaxosMessage {
                msg: PaxosMsg::StopSignReply(reply),
                ..
            }) => {
                if let Some(learned) = self.stragglers.handle_reply(from, reply) {
                    // Persisted, so that a restart does not forget it.
                    if let Err(e) = self.seq_paxos.storage.set_previous_end(learned.into()) {
                        self.seq_paxos.fail_with(e);
                    }
                }
                return;
            }
            m => m,
        };
        if !is_notice && !self.is_leader() {
            // Our stop-sign is decided and the sender may not know: it may
            // have no leader that could tell it (the leader moved on), so
            // tell it ourselves. A leader tells its followers with Decide.
            if let Some(decided) = self.seq_paxos.stopsign_decided_msg() {
                self.stragglers.tell(from, decided);
            }
        }
        match m {
            Message::SequencePaxos(p) => {
                let promise = self.seq_paxos.storage.promise();
                self.seq_paxos.handle(p);
                let new_promise = self.seq_paxos.storage.promise();
                if new_promise > promise {
                    // Another server prepared us: leader election learns of
                    // that leader now, not a round late through heartbeats.
                    self.ble.observe_prepare(new_promise);
                }
                self.log_stop_decision();
            }
            Message::BLE(b) => {
                if !self.seq_paxos.is_halted() {
                    self.ble.handle(b);
                }
            }
        }
    }

    /// Advances logical time by one tick. Call it at a fixed interval; every
    /// timeout in [`OmniPaxosConfig`] counts these calls.
    pub fn tick(&mut self) {
        if self.seq_paxos.is_halted() {
            return;
        }
        if let Some(discovery) = &mut self.discovering {
            discovery.tick();
            return;
        }
        if let Some(joining) = &mut self.joining {
            let report = joining.tick();
            #[cfg(feature = "logging")]
            if report.stall_began {
                let status = joining.status();
                let unresponsive: Vec<NodeId> = status
                    .sources
                    .iter()
                    .filter(|s| s.unresponsive)
                    .map(|s| s.pid)
                    .collect();
                log!(warn, self.logger, "migration stalled: the stored log did not grow for a resend timeout";
                    "stored_idx" => status.stored_idx, "log_len" => ?status.log_len,
                    "knows_previous_end" => joining.to_record().is_some() || self.stragglers.previous().is_some(),
                    "unresponsive" => ?unresponsive);
            }
            #[cfg(not(feature = "logging"))]
            let _ = report;
            return;
        }
        let promise = self.seq_paxos.storage.promise();
        // If leader election picks this server while Sequence Paxos has promised
        // a higher ballot, it raises its own ballot above that promise at the end
        // of the round, so a stale election never blocks leadership.
        let leading =
            (self.seq_paxos.role() == Role::Leader).then(|| self.seq_paxos.storage.promise());
        let rejected_by = self.seq_paxos.take_rejected_by();
        if let Some(leader) = self.ble.tick(promise, leading, rejected_by) {
            self.on_new_leader(leader);
        }
        self.seq_paxos.tick();
        self.stragglers.tick();
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

    // ---- commands ----

    /// Proposes `entry` for the log.
    ///
    /// On the leader it is appended (and sent to followers) at once; on a
    /// follower it is forwarded to the leader and sent again until the leader
    /// acknowledges it; with no leader known it waits in a buffer of
    /// `buffer_size` entries. `Ok` means accepted for proposal, not decided:
    /// watch [`get_decided_idx`](Self::get_decided_idx). A forwarded entry
    /// whose leader fails before acknowledging it is sent to the next leader,
    /// so in that case it may be decided twice; entries that must not repeat
    /// should carry an id the state machine checks.
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
    /// reported. An entry proposed twice (see [`append`](Self::append)) is
    /// reported once, at one of its indices.
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
    /// are proposed again in the new configuration, so one of them that the
    /// old configuration did decide may be decided twice (as
    /// [`append`](Self::append) allows); it is reported once.
    pub fn into_new_configuration(self, config: OmniPaxosConfig) -> Result<Self, ConfigError> {
        let Some(ss) = self.is_reconfigured() else {
            return Err(ConfigError::field(
                "configuration_id",
                "this server's configuration has no decided stop-sign yet",
            ));
        };
        config.validate()?;
        if config.configuration_id != ss.config_id {
            return Err(ConfigError::field(
                "configuration_id",
                format!(
                    "the stop-sign names configuration {}, not {}",
                    ss.config_id, config.configuration_id
                ),
            ));
        }
        if config.pid != self.config.pid || !ss.nodes.contains(&config.pid) {
            return Err(ConfigError::field(
                "pid",
                format!(
                    "must be this server ({}) and one of the next configuration's servers {:?}",
                    self.config.pid, ss.nodes
                ),
            ));
        }
        let mut want: Vec<NodeId> = ss
            .nodes
            .iter()
            .copied()
            .filter(|&p| p != config.pid)
            .collect();
        let mut peers = config.peers.clone();
        want.sort_unstable();
        peers.sort_unstable();
        if want != peers {
            return Err(ConfigError::field(
                "peers",
                format!("must be the next configuration's other servers {want:?}"),
            ));
        }
        #[cfg_attr(
            not(feature = "logging"),
            allow(
                clippy::let_unit_value,
                reason = "the logger is () without the feature"
            )
        )]
        let logger = self.logger_base();
        let mut seq_paxos = self.seq_paxos;
        let stop = seq_paxos
            .stop_point()
            .expect("is_reconfigured above: the stop-sign is decided");
        // Proposals accepted here that the old configuration never decided
        // (it refuses entries once its stop-sign is in) are proposed again in
        // the new one, so an `Ok` from `append` is not lost to the change.
        let (carried, tags) = seq_paxos.take_undecided_proposals(&stop)?;
        let mut decided_tags = Vec::new();
        seq_paxos.take_decided_tags(&mut decided_tags);
        let next_tag = seq_paxos.next_tag();
        let mut storage = seq_paxos.into_storage();
        let end = ConfigurationEnd {
            stopsign: stop.ss,
            stop_idx: stop.stop_idx,
            accepted_round: stop.n_accepted,
        };
        // The new node reads `end` back from the storage: it then tells the
        // old configuration's stragglers how it ended, also after restarts.
        storage.reset_for_new_configuration(stop.known_until, end)?;
        config.validate()?;
        let mut node = Self::new(config, storage.into_inner(), logger)?;
        debug_assert!(
            node.stragglers.previous().is_some(),
            "the new node knows how the old configuration ended"
        );
        node.seq_paxos.set_next_tag(next_tag);
        node.decided_scratch = decided_tags;
        if stop.known_until < stop.stop_idx {
            // The stop-sign was decided without us (a server that knew told
            // us), and our log holds the decided one only below
            // `known_until`: pull the rest, as a new server does, before
            // taking part. From those who told us first; the servers of the
            // new configuration hold that log too (or will, once they pulled
            // it), in case those do not answer.
            let mut sources = stop.sources;
            for &p in &node.config.peers {
                if !sources.contains(&p) {
                    sources.push(p);
                }
            }
            let migration = Migration {
                log_len: stop.stop_idx,
                sources,
            };
            node.start_joining(migration, stop.known_until);
        }
        for (entry, tag) in carried.into_iter().zip(tags) {
            // The new node has no leader yet: entries wait in its buffer,
            // which has room for what the old one held.
            if node.seq_paxos.append_tagged(entry, tag).is_err() {
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
        if let Some(leader) = self.ble.try_become_leader(self.seq_paxos.storage.promise()) {
            self.on_new_leader(leader);
        }
    }

    /// Sends the proposals a leader has gathered into its current batch now,
    /// instead of when the batch holds `batch_size` entries or when
    /// `flush_batch_tick_timeout` ticks have passed. Does nothing on a
    /// follower (it forwards proposals at once) or with an empty batch.
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
        if self.discovering.is_none() && self.joining.is_none() {
            self.seq_paxos.flush();
        }
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
            self.stragglers.clear_outgoing();
            return;
        }
        self.stragglers.take_outgoing(buf);
        if let Some(discovery) = &mut self.discovering {
            let (configuration_id, from) = (self.config.configuration_id, self.config.pid);
            if let Some(ask) = discovery.take_due() {
                buf.extend(ask.iter().map(|&to| {
                    Message::SequencePaxos(PaxosMessage {
                        configuration_id,
                        from,
                        to,
                        msg: PaxosMsg::StopSignRequest(crate::messages::StopSignRequest),
                    })
                }));
            }
            return;
        }
        if let Some(joining) = &mut self.joining {
            let (configuration_id, from) = (self.config.configuration_id, self.config.pid);
            buf.extend(joining.take_outgoing().map(|(to, msg)| {
                Message::SequencePaxos(PaxosMessage {
                    configuration_id,
                    from,
                    to,
                    msg: PaxosMsg::PullLog(msg),
                })
            }));
            return;
        }
        self.seq_paxos.take_outgoing(buf);
        buf.extend(self.ble.outgoing_mut().drain(..).map(Message::BLE));
    }

    /// Starts pulling the previous configuration's log (see [`Migration`])
    /// from index `from` on; the storage holds the decided log below it.
    ///
    /// If the storage records how the previous configuration ended, the
    /// pull continues under that record; otherwise the first reply that says
    /// how it ended is recorded before anything pulled is written, so that
    /// a storage holding part of the log always says it is still pulling.
    /// Starting again replaces a pull in progress (a build that names other
    /// sources than the record's resumption).
    pub(crate) fn start_joining(&mut self, migration: Migration, from: u64) {
        log!(info, self.logger, "pulling the previous configuration's log";
            "from" => from, "log_len" => migration.log_len, "sources" => ?migration.sources);
        let recorded = self
            .seq_paxos
            .storage
            .previous_end()
            .filter(|e| {
                e.stopsign.config_id == self.config.configuration_id
                    && e.stop_idx == migration.log_len
            })
            .map(|e| (e.clone().into(), true));
        let settings = PullSettings {
            pid: self.config.pid,
            configuration_id: self.config.configuration_id,
            resend_ticks: self.config.resend_message_tick_timeout,
            max_entries_per_message: self.config.max_entries_per_message,
        };
        self.joining = Some(Joining::start(migration, from, &settings, recorded));
    }

    /// Starts asking `sources` (and the new peers) how the previous
    /// configuration ended, to learn what to pull.
    pub(crate) fn start_discovery(&mut self, sources: Vec<NodeId>) {
        log!(info, self.logger, "asking the previous configuration's servers how it ended";
            "sources" => ?sources);
        self.discovering = Some(Discovery::start(
            sources,
            &self.config.peers,
            self.config.resend_message_tick_timeout,
        ));
    }

    /// A `StopSignReply` while discovering: if it comes from a server asked,
    /// in our configuration, and says how the previous one ended with us in
    /// the next, pull that log.
    fn handle_discovery_reply(
        &mut self,
        from: NodeId,
        configuration_id: crate::util::ConfigurationId,
        decided: Option<crate::messages::StopSignDecided>,
    ) {
        let Some(discovery) = &self.discovering else {
            return;
        };
        let Some(d) = decided else {
            // The server does not know yet; ask again at the next resend.
            return;
        };
        if !discovery.asked(from)
            || configuration_id != self.config.configuration_id
            || d.ss.config_id != self.config.configuration_id
            || !d.ss.nodes.contains(&self.config.pid)
            || d.stop_idx > MAX_LOG_INDEX
        {
            return;
        }
        let sources = discovery.sources().to_vec();
        self.discovering = None;
        let decided_idx = self.seq_paxos.storage.decided_idx();
        log!(info, self.logger, "learned how the previous configuration ended";
            "from" => from, "log_len" => d.stop_idx, "decided_idx" => decided_idx);
        if decided_idx < d.stop_idx {
            let migration = Migration {
                log_len: d.stop_idx,
                sources,
            };
            self.start_joining(migration, decided_idx);
            if let Some(joining) = &mut self.joining {
                joining.set_stopsign(d);
            }
            self.pump_joining();
            return;
        }
        // Our storage holds that log already: take part now.
        self.stragglers.moved_on(d.clone());
        if let Err(e) = self.seq_paxos.storage.set_previous_end(d.into()) {
            self.seq_paxos.fail_with(e);
            return;
        }
        self.ble = BallotLeaderElection::with(&self.config);
    }

    /// Writes what the pull made ready: first how the previous
    /// configuration ended (nothing pulled is written before it), then the
    /// parts that continue the stored log, each batch in one write that also
    /// raises the decided index. Once the whole log is in, the server takes
    /// part. A failed write stops the server.
    fn pump_joining(&mut self) {
        let Some(joining) = &mut self.joining else {
            return;
        };
        let mut failure = None;
        if let Some(d) = joining.to_record().cloned() {
            self.stragglers.moved_on(d.clone());
            match self.seq_paxos.storage.set_previous_end(d.into()) {
                Ok(()) => joining.recorded(),
                Err(e) => failure = Some(e),
            }
        }
        while failure.is_none() {
            let Some(ready) = joining.take_ready() else {
                break;
            };
            match self
                .seq_paxos
                .storage
                .append_pulled(ready.snapshot, ready.start, ready.entries)
            {
                Ok(()) => joining.stored(self.seq_paxos.storage.decided_idx()),
                Err(e) => failure = Some(e),
            }
        }
        let done = joining.is_done();
        if let Some(e) = failure {
            self.joining = None;
            self.seq_paxos.fail_with(e);
            return;
        }
        if !done {
            return;
        }
        self.joining = None;
        log!(info, self.logger, "pulled the previous configuration's log; taking part";
            "log_len" => self.seq_paxos.storage.log_len());
        // Leader election starts its rounds now, not from construction time.
        self.ble = BallotLeaderElection::with(&self.config);
    }

    /// The length of the log this server is pulling, if it is.
    pub(crate) fn pulling_log_len(&self) -> Option<u64> {
        self.joining.as_ref().map(Joining::log_len)
    }

    /// Whether this server knows how the previous configuration ended.
    pub(crate) fn knows_previous_end(&self) -> bool {
        self.stragglers.previous().is_some()
    }

    /// Whether this server is still pulling the previous configuration's log
    /// (see [`OmniPaxosConfig::build_joining`]), or still asking how long it
    /// is (see [`OmniPaxosConfig::build_joining_from`]); it takes no other
    /// part until done.
    pub fn is_migrating(&self) -> bool {
        self.joining.is_some() || self.discovering.is_some()
    }

    /// What this server is pulling, while it joins: if it restarts before it
    /// is done, build it again with
    /// [`OmniPaxosConfig::build_joining`] and this, on the same storage.
    /// Besides servers built with `build_joining`, a server that moved on
    /// with [`into_new_configuration`](Self::into_new_configuration) pulls
    /// when it missed part of the old configuration's log.
    pub fn get_migration(&self) -> Option<Migration> {
        self.joining.as_ref().map(Joining::migration)
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
        match (&self.joining, &self.discovering) {
            (Some(joining), _) => Some(joining.status()),
            (None, Some(discovery)) => {
                let decided = self.seq_paxos.storage.decided_idx();
                Some(MigrationStatus {
                    stage: MigrationStage::Discovering,
                    log_len: None,
                    started_at: decided,
                    stored_idx: decided,
                    held_bytes: 0,
                    peak_held_bytes: 0,
                    sources: discovery
                        .sources()
                        .iter()
                        .map(|&pid| SourceStatus {
                            pid,
                            outstanding: 0,
                            unresponsive: false,
                            entries_received: 0,
                        })
                        .collect(),
                    stalled: false,
                    ticks: discovery.ticks(),
                })
            }
            (None, None) => None,
        }
    }

    /// How many ticks this server has spent pulling the previous
    /// configuration's log so far, if it is joining.
    pub fn get_migration_ticks(&self) -> Option<u64> {
        match (&self.joining, &self.discovering) {
            (Some(joining), _) => Some(joining.ticks()),
            (None, Some(discovery)) => Some(discovery.ticks()),
            (None, None) => None,
        }
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
        self.stragglers.previous().map(|d| &d.ss)
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
        let storage = &self.seq_paxos.storage;
        let log_len = storage.log_len();
        let stopsign = storage.stopsign().cloned();
        let end_of_log = log_len + u64::from(stopsign.is_some());
        let from = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i.checked_add(1)?,
            Bound::Unbounded => 0,
        };
        let to = match range.end_bound() {
            Bound::Included(&i) => i.checked_add(1)?,
            Bound::Excluded(&i) => i,
            Bound::Unbounded => end_of_log,
        };
        if from >= to || to > end_of_log {
            return None;
        }
        let decided = storage.decided_idx();
        let compacted = storage.compacted_idx();
        // Reserved from what the log holds, not from the range asked: an
        // index can be far past the entries (after a snapshot), and a
        // capacity taken from it alone could be more than memory.
        let held = to.min(log_len).saturating_sub(from.max(compacted));
        let mut out = Vec::with_capacity(held as usize + 2);
        if from < compacted {
            out.push(self.compacted_entry(compacted)?);
        }
        let entries_from = from.max(compacted);
        let entries_to = to.min(log_len);
        if entries_from < entries_to {
            let entries = storage.get_entries(entries_from, entries_to).ok()?;
            out.extend(entries.into_iter().zip(entries_from..).map(|(e, idx)| {
                if idx < decided {
                    LogEntry::Decided(e)
                } else {
                    LogEntry::Undecided(e)
                }
            }));
        }
        if to > log_len {
            if let Some(ss) = stopsign {
                out.push(LogEntry::StopSign(ss, decided > log_len));
            }
        }
        Some(out)
    }

    fn compacted_entry(&self, compacted: u64) -> Option<LogEntry<T>> {
        match self.seq_paxos.storage.get_snapshot().ok()? {
            Some(snapshot) => Some(LogEntry::Snapshotted(SnapshottedEntry {
                trimmed_idx: compacted,
                snapshot,
            })),
            None => Some(LogEntry::Trimmed(compacted)),
        }
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

    /// Entries below this index are decided.
    pub fn get_decided_idx(&self) -> u64 {
        self.seq_paxos.storage.decided_idx()
    }

    /// The length of this server's log: entries below it are accepted here
    /// (decided or not).
    pub fn get_accepted_idx(&self) -> u64 {
        self.seq_paxos.storage.log_len()
    }

    /// Entries below this index are compacted (trimmed or snapshotted).
    pub fn get_compacted_idx(&self) -> u64 {
        self.seq_paxos.storage.compacted_idx()
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
        self.seq_paxos.role() == Role::Leader
            && self.seq_paxos.phase() == crate::sequence_paxos::Phase::Accept
            && !self.seq_paxos.is_halted()
    }

    /// The highest ballot this server promised.
    pub fn get_promise(&self) -> Ballot {
        self.seq_paxos.storage.promise()
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
        let storage = &self.seq_paxos.storage;
        let connected = self.ble.connected_peers();
        OmniPaxosStates {
            pid: self.config.pid,
            configuration_id: self.config.configuration_id,
            heartbeat_round: self.ble.round(),
            current_ballot: self.ble.current_ballot(),
            current_leader: self.ble.leader(),
            role: self.seq_paxos.role(),
            phase: self.seq_paxos.phase(),
            promise: storage.promise(),
            accepted_round: storage.accepted_round(),
            decided_idx: storage.decided_idx(),
            accepted_idx: storage.log_len(),
            compacted_idx: storage.compacted_idx(),
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
