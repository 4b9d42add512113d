//! Everything that crosses a configuration boundary, in one place.
//!
//! A server of configuration `c` meets three kinds of traffic that do not
//! belong to `c`'s leader election or Sequence Paxos:
//!
//! ```text
//!  joiner J (c, pulling)        old server O (c - 1)        straggler X (c - 1)
//!   StopSignRequest (in c)  ──▶  O answers in c with how c - 1 ended
//!   PullLog{range}          ──▶  O serves its decided log
//!                           ◀──  PullLogReply{part}
//!   PullSnapshot{part}      ──▶  O serves its snapshot in parts
//!                           ◀──  PullSnapshotPart{part}
//!                                                 any message of c - 1 ──▶ us (c)
//!                                                 ◀── StopSignDecided (how c - 1 ended)
//! ```
//!
//! [`Reconfiguration`] owns the state for all three: the stragglers of the
//! previous configuration (and what we know of how it ended), and, while
//! this server joins, the discovery of what to pull and the pull itself.
//! [`Reconfiguration::route`] takes every message that passed the envelope
//! checks and either handles it here or passes it on to leader election or
//! Sequence Paxos. The decided stop-sign of our own configuration, and one
//! learned from a server that moved on, stay in Sequence Paxos, which
//! decides them; the move to the next configuration takes them out as a
//! `Handover` (`SequencePaxos::into_next_configuration`).

use crate::{
    ballot::Ballot,
    config::OmniPaxosConfig,
    errors::ConfigError,
    logging::{Logger, log},
    messages::{Message, PaxosMessage, PaxosMsg, StopSignDecided, StopSignRequest},
    migration::{
        Discovery, Joining, Migration, MigrationStage, MigrationStatus, PullSettings,
        SnapshotServer, SourceStatus,
    },
    sequence_paxos::SequencePaxos,
    storage::{Entry, Storage},
    stragglers::Stragglers,
    util::{ConfigurationId, MAX_LOG_INDEX, NodeId, StopSign},
};

/// Where [`Reconfiguration::route`] sends a message.
#[allow(
    clippy::large_enum_variant,
    reason = "returned once per message and consumed at once; boxing `Pass` would allocate per message"
)]
pub(crate) enum Route<T: Entry> {
    /// Handled here, or dropped: nothing more to do.
    Consumed,
    /// Handled here, and with it this server's pull is over: from now on it
    /// takes part, so leader election starts its rounds afresh.
    TakesPart,
    /// A message of this configuration from one of its servers, for leader
    /// election or Sequence Paxos.
    Pass(Message<T>),
}

/// What this server knows and does across the boundary between its
/// configuration and the previous one.
pub(crate) struct Reconfiguration<T: Entry> {
    /// This server's identity and pull limits, from its config.
    settings: PullSettings,
    /// The other servers of this configuration: a joiner also pulls from
    /// them, and only their messages pass.
    peers: Vec<NodeId>,
    /// What this server knows of how the previous configuration ended, to
    /// tell that configuration's stragglers.
    stragglers: Stragglers<T>,
    /// While joining a new configuration: pulling the previous configuration's
    /// log. The server takes no other part until that is done.
    joining: Option<Joining<T>>,
    /// Before `joining`, for a server built with
    /// [`OmniPaxosConfig::build_joining_from`]: asking the old servers how
    /// long the log to pull is. The server takes no other part until that
    /// and the pull are done.
    discovering: Option<Discovery>,
    /// The snapshot this server serves pullers in parts, split once.
    snapshots: SnapshotServer<T>,
    /// Where pull progress is logged (nothing without feature `logging`).
    #[cfg_attr(
        not(feature = "logging"),
        allow(dead_code, reason = "read by log lines")
    )]
    logger: Logger,
}

impl<T: Entry> Reconfiguration<T> {
    /// The state of a server built with `config` on the storage that
    /// `seq_paxos` holds: what that storage records of the previous
    /// configuration's end is known, and a pull it records as unfinished
    /// goes on.
    pub(crate) fn with<S: Storage<T>>(
        config: &OmniPaxosConfig,
        seq_paxos: &SequencePaxos<T, S>,
        logger: Logger,
    ) -> Self {
        let mut stragglers = Stragglers::with(config);
        // A server that moved on (or learned how the previous configuration
        // ended) persisted it, so that it can still tell that
        // configuration's stragglers after a restart. A record of another
        // configuration's end (the storage of a server built for a
        // configuration it never moved on to) says nothing about ours.
        if let Some(end) = seq_paxos.previous_end() {
            if end.stopsign.config_id == config.configuration_id {
                stragglers.moved_on(end.clone().into());
            }
        }
        let mut reconf = Self {
            settings: PullSettings {
                pid: config.pid,
                configuration_id: config.configuration_id,
                resend_ticks: config.resend_message_tick_timeout,
                max_entries_per_message: config.max_entries_per_message,
            },
            peers: config.peers.clone(),
            stragglers,
            joining: None,
            discovering: None,
            snapshots: SnapshotServer::new(config.resend_message_tick_timeout),
            logger,
        };
        reconf.resume_recorded_join(seq_paxos);
        reconf
    }

    /// A storage that records how the previous configuration ended but
    /// holds its decided log only in part, and that never promised a ballot
    /// in this configuration, belongs to a server that was pulling that log
    /// when it stopped (a joiner, or a server that moved on without all of
    /// it): it pulls on, from the new configuration's other servers (a build
    /// that names sources replaces them), and takes no other part until the
    /// log is in. Whatever the server was built with, it must not vote with
    /// part of the log.
    fn resume_recorded_join<S: Storage<T>>(&mut self, seq_paxos: &SequencePaxos<T, S>) {
        let Some(end) = seq_paxos.previous_end() else {
            return;
        };
        let decided = seq_paxos.decided_idx();
        if end.stopsign.config_id != self.settings.configuration_id
            || decided >= end.stop_idx
            || end.stop_idx > MAX_LOG_INDEX
            || seq_paxos.promise() != Ballot::default()
        {
            return;
        }
        let migration = Migration {
            log_len: end.stop_idx,
            sources: self.peers.clone(),
        };
        self.start_joining(migration, decided, seq_paxos);
    }

    // ---- routing ----

    /// Takes a message that passed the envelope checks (addressed to us,
    /// ballots in range): handles here what crosses configurations or what
    /// a joining server may take, drops what is neither ours nor for a
    /// joiner, and passes on the rest.
    pub(crate) fn route<S: Storage<T>>(
        &mut self,
        m: Message<T>,
        seq_paxos: &mut SequencePaxos<T, S>,
    ) -> Route<T> {
        let from = m.get_sender();
        let configuration_id = m.get_configuration_id();
        // Pulling a decided log crosses configurations: a joining server asks
        // servers of the previous one.
        if let Message::SequencePaxos(PaxosMessage { msg, .. }) = &m {
            match msg {
                PaxosMsg::PullLog(_)
                | PaxosMsg::PullLogReply(_)
                | PaxosMsg::PullSnapshot(_)
                | PaxosMsg::PullSnapshotPart(_) => {
                    return self.route_pull(from, m, seq_paxos);
                }
                PaxosMsg::StopSignRequest(_)
                    if self.settings.configuration_id.checked_add(1) == Some(configuration_id) =>
                {
                    // A server joining the next configuration, which knows
                    // only where we are, asks how ours ended.
                    if let Some(decided) = seq_paxos.stopsign_decided_msg() {
                        if decided.ss.nodes.contains(&from) {
                            self.stragglers.answer_joiner(from, decided);
                        }
                    }
                    return Route::Consumed;
                }
                _ => {}
            }
        }
        if self.discovering.is_some() {
            // Only the answer to our question counts until we know what to pull.
            if let Message::SequencePaxos(PaxosMessage {
                msg: PaxosMsg::StopSignReply(reply),
                ..
            }) = m
            {
                return self.handle_discovery_reply(
                    from,
                    configuration_id,
                    reply.decided,
                    seq_paxos,
                );
            }
            return Route::Consumed;
        }
        let is_notice = matches!(
            &m,
            Message::SequencePaxos(PaxosMessage {
                msg: PaxosMsg::StopSignDecided(_),
                ..
            })
        );
        if self.stragglers.is_previous(configuration_id) {
            // The sender still speaks in the configuration that ended
            // before ours: it missed the end. (Told once we hold the decided
            // log it will ask us for.)
            if self.joining.is_none() {
                self.stragglers.handle_previous(from, is_notice);
            }
            return Route::Consumed;
        }
        if self.joining.is_some() {
            // Not a voter, nor a candidate, until the log is here.
            return Route::Consumed;
        }
        if configuration_id != self.settings.configuration_id || !self.peers.contains(&from) {
            return Route::Consumed;
        }
        match m {
            Message::SequencePaxos(PaxosMessage {
                msg: PaxosMsg::StopSignRequest(_),
                ..
            }) => self.stragglers.handle_request(from),
            Message::SequencePaxos(PaxosMessage {
                msg: PaxosMsg::StopSignReply(reply),
                ..
            }) => {
                if let Some(learned) = self.stragglers.handle_reply(from, reply) {
                    // Persisted, so that a restart does not forget it.
                    if let Err(e) = seq_paxos.record_previous_end(learned.into()) {
                        seq_paxos.fail_with(e);
                    }
                }
            }
            m => {
                if !is_notice && !seq_paxos.is_accepting_leader() {
                    // Our stop-sign is decided and the sender may not know:
                    // it may have no leader that could tell it (the leader
                    // moved on), so tell it ourselves. A leader tells its
                    // followers with Decide.
                    if let Some(decided) = seq_paxos.stopsign_decided_msg() {
                        self.stragglers.tell(from, decided);
                    }
                }
                return Route::Pass(m);
            }
        }
        Route::Consumed
    }

    /// A pull request is served unless we are still pulling ourselves (what
    /// we would send waits until we take part); a pull reply goes to our
    /// own pull, if there is one.
    fn route_pull<S: Storage<T>>(
        &mut self,
        from: NodeId,
        m: Message<T>,
        seq_paxos: &mut SequencePaxos<T, S>,
    ) -> Route<T> {
        let Message::SequencePaxos(PaxosMessage { msg, .. }) = m else {
            return Route::Consumed;
        };
        match (msg, &mut self.joining) {
            (PaxosMsg::PullLog(req), None) => {
                seq_paxos.handle_pull(from, req, self.stragglers.previous(), &mut self.snapshots);
                Route::Consumed
            }
            (PaxosMsg::PullSnapshot(req), None) => {
                seq_paxos.handle_pull_snapshot(
                    from,
                    req,
                    self.stragglers.previous(),
                    &mut self.snapshots,
                );
                Route::Consumed
            }
            (PaxosMsg::PullLogReply(reply), Some(joining)) => {
                joining.handle_reply(from, reply);
                self.pump_joining(seq_paxos)
            }
            (PaxosMsg::PullSnapshotPart(part), Some(joining)) => {
                joining.handle_snapshot_part(from, part);
                self.pump_joining(seq_paxos)
            }
            _ => Route::Consumed,
        }
    }

    // ---- joining ----

    /// Starts pulling the previous configuration's log (see [`Migration`])
    /// from index `from` on; the storage holds the decided log below it.
    ///
    /// If the storage records how the previous configuration ended, the
    /// pull continues under that record; otherwise the first reply that says
    /// how it ended is recorded before anything pulled is written, so that
    /// a storage holding part of the log always says it is still pulling.
    /// Starting again replaces a pull in progress (a build that names other
    /// sources than the record's resumption).
    pub(crate) fn start_joining<S: Storage<T>>(
        &mut self,
        migration: Migration,
        from: u64,
        seq_paxos: &SequencePaxos<T, S>,
    ) {
        log!(info, self.logger, "pulling the previous configuration's log";
            "from" => from, "log_len" => migration.log_len, "sources" => ?migration.sources);
        let recorded = seq_paxos
            .previous_end()
            .filter(|e| {
                e.stopsign.config_id == self.settings.configuration_id
                    && e.stop_idx == migration.log_len
            })
            .map(|e| (e.clone().into(), true));
        self.joining = Some(Joining::start(migration, from, &self.settings, recorded));
    }

    /// After a move to the next configuration that left this server with
    /// the decided log only below `known_until` (the stop-sign was decided
    /// without us): pulls the rest, up to `stop_idx`, as a new server does,
    /// before taking part. From `sources` (those who told us) first; the
    /// servers of the new configuration hold that log too (or will, once
    /// they pulled it), in case those do not answer.
    pub(crate) fn pull_rest<S: Storage<T>>(
        &mut self,
        known_until: u64,
        stop_idx: u64,
        mut sources: Vec<NodeId>,
        seq_paxos: &SequencePaxos<T, S>,
    ) {
        for &p in &self.peers {
            if !sources.contains(&p) {
                sources.push(p);
            }
        }
        let migration = Migration {
            log_len: stop_idx,
            sources,
        };
        self.start_joining(migration, known_until, seq_paxos);
    }

    /// Starts asking `sources` (and the new peers) how the previous
    /// configuration ended, to learn what to pull.
    pub(crate) fn start_discovery(&mut self, sources: Vec<NodeId>) {
        log!(info, self.logger, "asking the previous configuration's servers how it ended";
            "sources" => ?sources);
        self.discovering = Some(Discovery::start(
            sources,
            &self.peers,
            self.settings.resend_ticks,
        ));
    }

    /// A `StopSignReply` while discovering: if it comes from a server asked,
    /// in our configuration, and says how the previous one ended with us in
    /// the next, pull that log.
    fn handle_discovery_reply<S: Storage<T>>(
        &mut self,
        from: NodeId,
        configuration_id: ConfigurationId,
        decided: Option<StopSignDecided>,
        seq_paxos: &mut SequencePaxos<T, S>,
    ) -> Route<T> {
        let Some(discovery) = &self.discovering else {
            return Route::Consumed;
        };
        let Some(d) = decided else {
            // The server does not know yet; ask again at the next resend.
            return Route::Consumed;
        };
        let own = self.settings.configuration_id;
        if !discovery.asked(from)
            || configuration_id != own
            || d.ss.config_id != own
            || !d.ss.nodes.contains(&self.settings.pid)
            || d.stop_idx > MAX_LOG_INDEX
        {
            return Route::Consumed;
        }
        let sources = discovery.sources().to_vec();
        self.discovering = None;
        let decided_idx = seq_paxos.decided_idx();
        log!(info, self.logger, "learned how the previous configuration ended";
            "from" => from, "log_len" => d.stop_idx, "decided_idx" => decided_idx);
        if decided_idx < d.stop_idx {
            let migration = Migration {
                log_len: d.stop_idx,
                sources,
            };
            self.start_joining(migration, decided_idx, seq_paxos);
            if let Some(joining) = &mut self.joining {
                joining.set_stopsign(d);
            }
            return self.pump_joining(seq_paxos);
        }
        // Our storage holds that log already: take part now.
        self.stragglers.moved_on(d.clone());
        if let Err(e) = seq_paxos.record_previous_end(d.into()) {
            seq_paxos.fail_with(e);
            return Route::Consumed;
        }
        Route::TakesPart
    }

    /// Writes what the pull made ready: first how the previous
    /// configuration ended (nothing pulled is written before it), then the
    /// parts that continue the stored log, each batch in one write that also
    /// raises the decided index. Once the whole log is in, the server takes
    /// part ([`Route::TakesPart`]). A failed write stops the server.
    fn pump_joining<S: Storage<T>>(&mut self, seq_paxos: &mut SequencePaxos<T, S>) -> Route<T> {
        let Some(joining) = &mut self.joining else {
            return Route::Consumed;
        };
        let mut failure = None;
        if let Some(d) = joining.to_record().cloned() {
            self.stragglers.moved_on(d.clone());
            match seq_paxos.record_previous_end(d.into()) {
                Ok(()) => joining.recorded(),
                Err(e) => failure = Some(e),
            }
        }
        while failure.is_none() {
            let Some(ready) = joining.take_ready() else {
                break;
            };
            match seq_paxos.append_pulled(ready) {
                Ok(()) => joining.stored(seq_paxos.decided_idx()),
                Err(e) => failure = Some(e),
            }
        }
        let done = joining.is_done();
        if let Some(e) = failure {
            self.joining = None;
            seq_paxos.fail_with(e);
            return Route::Consumed;
        }
        if !done {
            return Route::Consumed;
        }
        self.joining = None;
        log!(info, self.logger, "pulled the previous configuration's log; taking part";
            "log_len" => seq_paxos.accepted_idx());
        Route::TakesPart
    }

    // ---- time and outputs ----

    /// Advances the discovery or the pull by one tick. Returns whether this
    /// server is migrating, and so does nothing else this tick.
    pub(crate) fn tick_migration(&mut self) -> bool {
        if let Some(discovery) = &mut self.discovering {
            discovery.tick();
            return true;
        }
        let Some(joining) = &mut self.joining else {
            return false;
        };
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
        true
    }

    /// Advances the questions to peers about the previous configuration's
    /// end by one tick (a server that takes part).
    pub(crate) fn tick(&mut self) {
        self.stragglers.tick();
        self.snapshots.tick();
    }

    /// Moves the messages to send into `buf` (appending): answers to
    /// stragglers, and the questions and pull requests of a joiner. Returns
    /// whether this server is migrating, and so sends nothing else.
    pub(crate) fn take_outgoing(&mut self, buf: &mut Vec<Message<T>>) -> bool {
        self.stragglers.take_outgoing(buf);
        let (configuration_id, from) = (self.settings.configuration_id, self.settings.pid);
        if let Some(discovery) = &mut self.discovering {
            if let Some(ask) = discovery.take_due() {
                buf.extend(ask.iter().map(|&to| {
                    Message::SequencePaxos(PaxosMessage {
                        configuration_id,
                        from,
                        to,
                        msg: PaxosMsg::StopSignRequest(StopSignRequest),
                    })
                }));
            }
            return true;
        }
        if let Some(joining) = &mut self.joining {
            buf.extend(joining.take_outgoing().map(|(to, msg)| {
                Message::SequencePaxos(PaxosMessage {
                    configuration_id,
                    from,
                    to,
                    msg,
                })
            }));
            return true;
        }
        false
    }

    /// Drops what is waiting to go out (the server stopped).
    pub(crate) fn clear_outgoing(&mut self) {
        self.stragglers.clear_outgoing();
    }

    // ---- queries ----

    /// How the previous configuration ended, if this server knows.
    pub(crate) fn previous_stopsign(&self) -> Option<&StopSign> {
        self.stragglers.previous().map(|d| &d.ss)
    }

    /// Whether this server knows how the previous configuration ended.
    pub(crate) fn knows_previous_end(&self) -> bool {
        self.stragglers.previous().is_some()
    }

    /// The length of the log this server is pulling, if it is.
    pub(crate) fn pulling_log_len(&self) -> Option<u64> {
        self.joining.as_ref().map(Joining::log_len)
    }

    /// Whether this server is pulling, or asking what to pull.
    pub(crate) fn is_migrating(&self) -> bool {
        self.joining.is_some() || self.discovering.is_some()
    }

    /// What this server is pulling, if it is.
    pub(crate) fn migration(&self) -> Option<Migration> {
        self.joining.as_ref().map(Joining::migration)
    }

    /// How the pull (or the discovery before it) is doing; `decided` is the
    /// decided index of the storage, where a discovering server stands.
    pub(crate) fn migration_status(&self, decided: u64) -> Option<MigrationStatus> {
        match (&self.joining, &self.discovering) {
            (Some(joining), _) => Some(joining.status()),
            (None, Some(discovery)) => Some(MigrationStatus {
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
            }),
            (None, None) => None,
        }
    }

    /// Ticks spent pulling (or discovering) so far, if this server is.
    pub(crate) fn migration_ticks(&self) -> Option<u64> {
        match (&self.joining, &self.discovering) {
            (Some(joining), _) => Some(joining.ticks()),
            (None, Some(discovery)) => Some(discovery.ticks()),
            (None, None) => None,
        }
    }
}

/// Checks that `config` describes this server (`pid`) in the configuration
/// that the decided stop-sign `ss` starts; each mismatch is a
/// [`ConfigError`] naming the field.
pub(crate) fn check_next_config(
    ss: &StopSign,
    pid: NodeId,
    config: &OmniPaxosConfig,
) -> Result<(), ConfigError> {
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
    if config.pid != pid || !ss.nodes.contains(&config.pid) {
        return Err(ConfigError::field(
            "pid",
            format!(
                "must be this server ({pid}) and one of the next configuration's servers {:?}",
                ss.nodes
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
    Ok(())
}
