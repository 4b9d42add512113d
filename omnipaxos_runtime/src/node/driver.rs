//! The task that owns the protocol: it takes inputs, steps the protocol,
//! sends what it produced and resolves the calls it finished.

use super::{Command, Control, DecidedBatch, Delivery, NodeStatus, Reply};
use crate::{NodeConfig, RuntimeError, metrics::MetricCounters};
use omnipaxos::{
    OmniPaxos, OmniPaxosConfig, ReadError, ReadId, ReconfigurationRequest,
    ballot::Ballot,
    errors::{ConfigError, ProposeErr},
    messages::{BLEMessage, Message, PaxosMessage, PaxosMsg},
    omni_paxos::ProposalId,
    storage::{Entry, Storage},
    util::{ConfigurationId, LogEntry, NodeId, StopSign},
};
use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::Duration,
};
use tokio::{
    sync::{mpsc, oneshot, watch},
    time::{Instant, MissedTickBehavior},
};

/// The channels a driver owns, made by `OmniPaxosNode::prepare`: the ends
/// the node's handles do not hold.
pub(super) struct Channels<T: Entry> {
    /// Calls from [`OmniPaxosNode`](super::OmniPaxosNode) methods.
    pub(super) commands: mpsc::Receiver<Command<T>>,
    /// Control calls (a reconnected peer, priority, leadership, shutdown)
    /// that must not wait behind commands.
    pub(super) control: mpsc::UnboundedReceiver<Control>,
    /// Sequence Paxos messages handed in through the handle.
    pub(super) sp_in: mpsc::Receiver<Message<T>>,
    /// Sequence Paxos messages from the transport, with their flow control.
    pub(super) deliveries: mpsc::Receiver<Delivery<T>>,
    /// Ballot Leader Election messages handed in through the handle.
    pub(super) ble_in: mpsc::Receiver<BLEMessage>,
    /// Where the driver puts the Sequence Paxos messages it sends.
    pub(super) sp_out: mpsc::Sender<Message<T>>,
    /// Where the driver puts the Ballot Leader Election messages it sends.
    pub(super) ble_out: mpsc::Sender<BLEMessage>,
    /// The status the node's readers watch.
    pub(super) status: watch::Sender<NodeStatus>,
}

/// The task that owns the protocol.
pub(super) struct Driver<T: Entry, S: Storage<T>> {
    op: OmniPaxos<T, S>,
    /// What the driver takes inputs from and hands outputs to.
    channels: Channels<T>,
    /// The counters behind [`OmniPaxosNode::metrics`]; the driver counts
    /// leader changes there.
    metrics: Arc<MetricCounters>,
    configuration_id: ConfigurationId,
    /// The last leader ballot counted in `metrics`, to count each new one once.
    last_leader: Option<Ballot>,
    tick_interval: Duration,
    leader_wait: Duration,
    /// Reused buffer for outgoing messages.
    outgoing: Vec<Message<T>>,
    /// Appends that wait for a leader to be known before entering the protocol.
    waiting_leader: VecDeque<(T, Reply<u64>, Instant)>,
    /// Appends in the protocol, waiting for their decision.
    appends: HashMap<ProposalId, Reply<u64>>,
    /// Reused buffer for decided proposals.
    decided: Vec<(ProposalId, u64)>,
    /// Linearizable reads waiting for their read point.
    reads: HashMap<ReadId, Reply<u64>>,
    read_points: Vec<(ReadId, u64)>,
    /// Reads with a read point, waiting for the decided index to reach it.
    reads_applying: Vec<(u64, Reply<u64>)>,
    /// `reconfigure` calls, with the configuration they were made in,
    /// waiting for the next configuration to have a leader.
    reconfigure_waiters: Vec<(ConfigurationId, Reply<StopSign>)>,
    /// The servers of the configuration, for the status.
    members: Vec<NodeId>,
    /// This configuration's decided stop-sign, on a node the next
    /// configuration leaves out (a node in it moves on at once).
    reconfigured: Option<StopSign>,
    /// Appends that arrived while a stop-sign was in the log but not yet
    /// decided: proposed in the next configuration if this node is in it,
    /// refused otherwise.
    parked: Vec<(T, Reply<u64>)>,
    /// How long a left-out node serves pulls after the last one.
    retire_grace: Duration,
    /// When a left-out node shuts down.
    retire_at: Option<Instant>,
    /// Whether the node starts on storage of an earlier run (checked once).
    recovering: bool,
    dropped_messages: u64,
    ticks: u64,
    /// Servers outside this configuration that recently asked how it ended
    /// (a server started to join the next one does), with the tick they last
    /// did: `reconfigure` counts them as reachable new servers.
    heard_joiners: Vec<(NodeId, u64)>,
    /// For how many ticks a joiner's request counts as recent.
    joiner_window: u64,
}

/// At most this many joiners are remembered (the oldest is forgotten first).
const MAX_HEARD_JOINERS: usize = 64;

/// How many queued inputs one step takes before the node sends what they caused.
const MAX_INPUTS_PER_STEP: usize = 256;

impl<T, S> Driver<T, S>
where
    T: Entry + Send + Sync + 'static,
    T::Snapshot: Send,
    S: Storage<T> + Send + 'static,
{
    /// A driver for the protocol instance `op`, which runs in configuration
    /// `configuration_id`, on the given channels, with the durations of
    /// `node_conf`. It does nothing until [`run`](Self::run) is spawned.
    pub(super) fn new(
        op: OmniPaxos<T, S>,
        channels: Channels<T>,
        metrics: Arc<MetricCounters>,
        configuration_id: ConfigurationId,
        node_conf: &NodeConfig,
    ) -> Self {
        Self {
            members: members_of(&op),
            op,
            channels,
            metrics,
            configuration_id,
            last_leader: None,
            tick_interval: node_conf.tick_interval(),
            leader_wait: node_conf.leader_wait(),
            outgoing: Vec::new(),
            waiting_leader: VecDeque::new(),
            appends: HashMap::new(),
            decided: Vec::new(),
            reads: HashMap::new(),
            read_points: Vec::new(),
            reads_applying: Vec::new(),
            reconfigure_waiters: Vec::new(),
            reconfigured: None,
            parked: Vec::new(),
            retire_grace: node_conf.retire_grace(),
            retire_at: None,
            recovering: true,
            dropped_messages: 0,
            ticks: 0,
            heard_joiners: Vec::new(),
            // A joiner asks again every resend timeout until it is answered.
            joiner_window: node_conf
                .omnipaxos_config()
                .resend_message_tick_timeout
                .saturating_mul(4),
        }
    }

    /// The driver loop: wait for an input, take what else is queued, then
    /// send, resolve and publish what that changed.
    pub(super) async fn run(mut self) {
        let mut ticker = tokio::time::interval(self.tick_interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        if self.recovering
            && !self.op.is_migrating()
            && (self.op.get_promise() != Ballot::default() || self.op.get_decided_idx() > 0)
        {
            // The storage holds a previous run's state: rejoin as a recovering server.
            self.op.fail_recovery();
        }
        self.recovering = false;
        loop {
            tokio::select! {
                biased;
                c = self.channels.control.recv() => match c {
                    Some(Control::Shutdown(done)) => return self.stop(Some(done)),
                    Some(c) => self.on_control(c),
                    None => return self.stop(None),
                },
                _ = ticker.tick() => self.on_tick(),
                Some(m) = self.channels.ble_in.recv() => self.op.handle_incoming(Message::BLE(m)),
                Some(m) = self.channels.sp_in.recv() => self.handle_message(m),
                Some(d) = self.channels.deliveries.recv() => self.on_delivery(d),
                c = self.channels.commands.recv() => match c {
                    Some(c) => self.on_command(c),
                    None => return self.stop(None),
                },
            }
            let drained = self.take_queued();
            self.after_step(drained).await;
            if self.moves_on() {
                self = match self.move_on() {
                    Ok(driver) => driver,
                    Err(()) => return,
                };
                self.after_step(true).await;
            }
            if self.retire_at.is_some_and(|at| at <= Instant::now()) {
                return self.retire();
            }
        }
    }

    /// Takes inputs that are already queued, up to a bound, so that one
    /// step's outgoing messages and storage writes cover many of them.
    /// Returns whether it left none waiting.
    fn take_queued(&mut self) -> bool {
        let mut drained = true;
        let mut taken = 0;
        while let Ok(m) = self.channels.sp_in.try_recv() {
            self.handle_message(m);
            taken += 1;
            if taken == MAX_INPUTS_PER_STEP {
                drained = false;
                break;
            }
        }
        taken = 0;
        while let Ok(d) = self.channels.deliveries.try_recv() {
            self.on_delivery(d);
            taken += 1;
            if taken == MAX_INPUTS_PER_STEP {
                drained = false;
                break;
            }
        }
        taken = 0;
        while let Ok(c) = self.channels.commands.try_recv() {
            self.on_command(c);
            taken += 1;
            if taken == MAX_INPUTS_PER_STEP {
                drained = false;
                break;
            }
        }
        drained
    }

    /// Handles a message from the transport, then gives back its charge:
    /// whatever the protocol keeps of it is the node's memory from now on.
    fn on_delivery(&mut self, d: Delivery<T>) {
        let Delivery { msg, charge } = d;
        self.handle_message(msg);
        drop(charge);
    }

    fn handle_message(&mut self, m: Message<T>) {
        if self.retire_at.is_some()
            && matches!(
                &m,
                Message::SequencePaxos(PaxosMessage {
                    msg: PaxosMsg::PullLog(_) | PaxosMsg::PullSnapshot(_),
                    ..
                })
            )
        {
            // A server of the next configuration pulls the log from us: stay
            // up for it.
            self.retire_at = Some(Instant::now() + self.retire_grace);
        }
        if let Message::SequencePaxos(PaxosMessage {
            from,
            configuration_id,
            msg: PaxosMsg::StopSignRequest(_),
            ..
        }) = &m
        {
            if self.configuration_id.checked_add(1) == Some(*configuration_id)
                && !self.members.contains(from)
            {
                self.heard_joiner(*from);
            }
        }
        self.op.handle_incoming(m);
    }

    /// Notes that `pid`, a server outside this configuration, asked how it
    /// ended: it is starting to join the next one, and reaches us.
    fn heard_joiner(&mut self, pid: NodeId) {
        if let Some(e) = self.heard_joiners.iter_mut().find(|(p, _)| *p == pid) {
            e.1 = self.ticks;
            return;
        }
        if self.heard_joiners.len() >= MAX_HEARD_JOINERS {
            if let Some(oldest) =
                (0..self.heard_joiners.len()).min_by_key(|&i| self.heard_joiners[i].1)
            {
                self.heard_joiners.swap_remove(oldest);
            }
        }
        self.heard_joiners.push((pid, self.ticks));
    }

    /// Refuses a reconfiguration whose new servers, those not heard from
    /// lately, would leave fewer than a majority of the next configuration
    /// able to take part: its stop-sign would end this configuration with
    /// no quorum to continue the log until they start.
    fn check_reachable(&self, rc: &ReconfigurationRequest) -> Result<(), ConfigError> {
        let recent = |p: &NodeId| {
            self.heard_joiners
                .iter()
                .any(|(j, at)| j == p && self.ticks.saturating_sub(*at) <= self.joiner_window)
        };
        let unheard: Vec<NodeId> = rc
            .new_configuration
            .iter()
            .copied()
            .filter(|p| !self.members.contains(p) && !recent(p))
            .collect();
        let n = rc.new_configuration.len();
        let majority = n / 2 + 1;
        if unheard.is_empty() || n - unheard.len() >= majority {
            return Ok(());
        }
        Err(ConfigError::InvalidField {
            field: "new_configuration".to_owned(),
            reason: format!(
                "servers {unheard:?} are new and have not reached this server yet, which leaves \
                 {} of {n} able to take part, fewer than a majority ({majority}): start them \
                 first (OmniPaxosNode::join, with this server among their sources and, over \
                 TCP, Transport::add_peer for each here), or change fewer servers at a time",
                n - unheard.len()
            ),
        })
    }

    fn on_tick(&mut self) {
        self.op.tick();
        self.ticks += 1;
        let now = Instant::now();
        while let Some((_, _, deadline)) = self.waiting_leader.front() {
            if *deadline > now {
                break;
            }
            if let Some((_, reply, _)) = self.waiting_leader.pop_front() {
                let _ = reply.send(Err(RuntimeError::NoLeader));
            }
        }
        if self.ticks % 128 == 0 {
            // Forget appends whose callers gave up (timed out or dropped).
            self.appends.retain(|_, reply| !reply.is_closed());
            self.reads.retain(|_, reply| !reply.is_closed());
        }
    }

    fn on_control(&mut self, c: Control) {
        match c {
            Control::Reconnected(pid) => self.op.reconnected(pid),
            Control::SetPriority(p) => self.op.set_priority(p),
            Control::TryBecomeLeader => self.op.try_become_leader(),
            Control::Shutdown(_) => unreachable!("handled by the loop"),
        }
    }

    fn on_command(&mut self, c: Command<T>) {
        match c {
            Command::Append(entry, reply) => {
                if let Some(e) = self.refusal() {
                    let _ = reply.send(Err(e));
                } else if self.op.get_current_leader().is_some() && self.waiting_leader.is_empty() {
                    self.propose(entry, reply);
                } else {
                    let deadline = Instant::now() + self.leader_wait;
                    self.waiting_leader.push_back((entry, reply, deadline));
                }
            }
            Command::Reconfigure(rc, reply) => match self
                .check_reachable(&rc)
                .map_err(ProposeErr::InvalidReconfiguration)
                .and_then(|()| self.op.reconfigure(rc))
            {
                Ok(()) => self
                    .reconfigure_waiters
                    .push((self.configuration_id, reply)),
                Err(e) => {
                    let _ = reply.send(Err(self.propose_error(e)));
                }
            },
            Command::Trim(idx, reply) => {
                let _ = reply.send(self.op.trim(idx).map_err(Into::into));
            }
            Command::Snapshot(idx, local_only, reply) => {
                let _ = reply.send(self.op.snapshot(idx, local_only).map_err(Into::into));
            }
            Command::LinearizableRead(reply) => match self.op.request_read() {
                Ok(id) => {
                    self.reads.insert(id, reply);
                }
                Err(ReadError::BufferFull) => {
                    let _ = reply.send(Err(RuntimeError::BufferFull));
                }
                Err(ReadError::Reconfigured) => {
                    // The stop-sign is in the log; it may not be decided yet.
                    let e = match self.op.is_reconfigured() {
                        Some(ss) => RuntimeError::Reconfigured(ss),
                        None => RuntimeError::ReconfigurationPending,
                    };
                    let _ = reply.send(Err(e));
                }
                Err(_) => {
                    let _ = reply.send(Err(self.storage_error()));
                }
            },
            Command::Read(idx, reply) => {
                let _ = reply.send(self.op.read(idx));
            }
            Command::ReadEntries(bounds, reply) => {
                let _ = reply.send(self.op.read_entries(bounds));
            }
            Command::ReadDecided(from, reply) => {
                let _ = reply.send(decided_batch(&self.op, from));
            }
            Command::UiStates(reply) => {
                let _ = reply.send(self.op.get_ui_states());
            }
        }
    }

    fn propose(&mut self, entry: T, reply: Reply<u64>) {
        match self.op.append_tracked(entry) {
            Ok(id) => {
                self.appends.insert(id, reply);
            }
            Err(ProposeErr::PendingReconfigEntry(entry)) if self.op.is_reconfigured().is_none() => {
                // A stop-sign is in the log, not yet decided: the entry waits
                // for the next configuration (or for this one to go on, if
                // the stop-sign is never decided and a later leader drops it).
                self.parked.push((entry, reply));
            }
            Err(e) => {
                let _ = reply.send(Err(self.propose_error(e)));
            }
        }
    }

    /// Why an append is refused before it reaches the protocol, if it is.
    fn refusal(&self) -> Option<RuntimeError> {
        if let Some(ss) = &self.reconfigured {
            return Some(RuntimeError::Removed(ss.clone()));
        }
        self.op
            .get_storage_failure()
            .map(|e| RuntimeError::Storage(e.clone()))
    }

    fn storage_error(&self) -> RuntimeError {
        self.op
            .get_storage_failure()
            .map_or(RuntimeError::ShutDown, |e| RuntimeError::Storage(e.clone()))
    }

    fn propose_error<E>(&self, e: ProposeErr<E>) -> RuntimeError {
        match e {
            ProposeErr::BufferFull(_) => RuntimeError::BufferFull,
            ProposeErr::StorageFailure(_) => self.storage_error(),
            ProposeErr::NotPersisted(e) => RuntimeError::Storage(e),
            ProposeErr::InvalidReconfiguration(e) => RuntimeError::InvalidReconfiguration(e),
            ProposeErr::PendingReconfigConfig(_) => RuntimeError::ReconfigurationPending,
            ProposeErr::PendingReconfigEntry(_) => match self.op.is_reconfigured() {
                Some(ss) => RuntimeError::Reconfigured(ss),
                None => RuntimeError::ReconfigurationPending,
            },
            other => RuntimeError::Refused(other.without_entry()),
        }
    }

    /// After a step: send what the protocol produced, hand waiting appends to
    /// a newly known leader, resolve what was decided, publish the status.
    /// Sends what the step produced and answers what it settled.
    ///
    /// A leader's partly filled batch goes out now if no input is waiting
    /// (`drained`) and nothing it sent before is still undecided: a lone
    /// append does not wait for the flush timer, while under load the
    /// proposals that arrive during one batch's round trip and storage write
    /// form the next batch (sent when that one is decided, when it fills, or
    /// at the flush timer, whichever comes first).
    ///
    /// A leader's batch goes to the transport before its own copy is synced
    /// (`defer_leader_sync`): the driver yields once, so that the transport's
    /// task, which the send woke and which tokio may queue on this very
    /// worker, writes it to the sockets first; then it syncs, while the
    /// followers write theirs.
    async fn after_step(&mut self, drained: bool) {
        if self.op.get_current_leader().is_some() {
            while let Some((entry, reply, _)) = self.waiting_leader.pop_front() {
                self.propose(entry, reply);
            }
        }
        if drained && self.op.get_decided_idx() >= self.op.get_accepted_idx() {
            self.op.flush_batch();
        }
        if self.send_outgoing() && self.op.has_unsynced_storage() {
            tokio::task::yield_now().await;
        }
        if self.op.sync_storage() {
            // The decision that may bring is news for the followers.
            self.send_outgoing();
        }
        self.op.take_decided_proposals(&mut self.decided);
        for (id, idx) in self.decided.drain(..) {
            if let Some(reply) = self.appends.remove(&id) {
                let _ = reply.send(Ok(idx));
            }
        }
        self.op.take_read_points(&mut self.read_points);
        for (id, point) in self.read_points.drain(..) {
            if let Some(reply) = self.reads.remove(&id) {
                self.reads_applying.push((point, reply));
            }
        }
        if !self.reads_applying.is_empty() {
            let decided_idx = self.op.get_decided_idx();
            let mut i = 0;
            while i < self.reads_applying.len() {
                if self.reads_applying[i].0 <= decided_idx {
                    let (point, reply) = self.reads_applying.swap_remove(i);
                    let _ = reply.send(Ok(point));
                } else {
                    i += 1;
                }
            }
        }
        if self.reconfigured.is_none() {
            if let Some(ss) = self.op.is_reconfigured() {
                if !ss.nodes.contains(&self.op.get_pid()) {
                    self.on_removed(ss);
                }
            }
        }
        if !self.parked.is_empty()
            && self.op.is_reconfigured().is_none()
            && self.op.get_current_leader().is_some()
        {
            // Parked appends whose stop-sign went away (a new leader of this
            // configuration did not keep it), or that moved on with us.
            for (entry, reply) in std::mem::take(&mut self.parked) {
                self.propose(entry, reply);
            }
        }
        if !self.reconfigure_waiters.is_empty()
            && self.reconfigured.is_none()
            && self.op.get_current_leader().is_some()
        {
            // Calls made in an earlier configuration are done: we are in the
            // next one, and it has a leader.
            if let Some(ss) = self.op.get_previous_stopsign() {
                let now = self.configuration_id;
                let mut i = 0;
                while i < self.reconfigure_waiters.len() {
                    if self.reconfigure_waiters[i].0 < now {
                        let (_, reply) = self.reconfigure_waiters.swap_remove(i);
                        let _ = reply.send(Ok(ss.clone()));
                    } else {
                        i += 1;
                    }
                }
            }
        }
        if let Some(e) = self.op.get_storage_failure() {
            self.fail_all(&RuntimeError::Storage(e.clone()));
        }
        self.publish();
    }

    /// Hands the protocol's outgoing messages to the transport's channels;
    /// a full channel drops the message (the protocol resends what matters).
    /// Returns whether any message went.
    fn send_outgoing(&mut self) -> bool {
        self.op.take_outgoing_messages(&mut self.outgoing);
        let any = !self.outgoing.is_empty();
        for m in self.outgoing.drain(..) {
            let sent = match m {
                Message::BLE(b) => self.channels.ble_out.try_send(b).is_ok(),
                m => self.channels.sp_out.try_send(m).is_ok(),
            };
            if !sent {
                self.dropped_messages += 1;
            }
        }
        any
    }

    /// The stop-sign is decided and the next configuration leaves this node
    /// out: what waits here cannot be decided, and the node retires once the
    /// new servers no longer pull from it.
    fn on_removed(&mut self, ss: StopSign) {
        for (_, reply) in self.reconfigure_waiters.drain(..) {
            let _ = reply.send(Ok(ss.clone()));
        }
        let e = RuntimeError::Reconfigured(ss.clone());
        for (_, reply) in self.appends.drain() {
            let _ = reply.send(Err(e.clone()));
        }
        let removed = RuntimeError::Removed(ss.clone());
        for (_, reply, _) in self.waiting_leader.drain(..) {
            let _ = reply.send(Err(removed.clone()));
        }
        for (_, reply) in self.parked.drain(..) {
            let _ = reply.send(Err(removed.clone()));
        }
        for (_, reply) in self.reads.drain() {
            let _ = reply.send(Err(e.clone()));
        }
        self.retire_at = Some(Instant::now() + self.retire_grace);
        self.reconfigured = Some(ss);
    }

    /// Whether this node's configuration's stop-sign is decided and names it.
    fn moves_on(&self) -> bool {
        self.op
            .is_reconfigured()
            .is_some_and(|ss| ss.nodes.contains(&self.op.get_pid()))
    }

    /// Moves this node into the next configuration: the protocol is rebuilt
    /// on the same storage ([`OmniPaxos::into_new_configuration`]), and the
    /// channels, handles and waiting calls stay. `Err` if it could not be
    /// (the status says why; the node has stopped).
    fn move_on(mut self) -> Result<Self, ()> {
        let Some(ss) = self.op.is_reconfigured() else {
            return Ok(self);
        };
        let pid = self.op.get_pid();
        let mut config: OmniPaxosConfig = self.op.get_config().clone();
        config.configuration_id = ss.config_id;
        config.peers = ss.nodes.iter().copied().filter(|&p| p != pid).collect();
        // `into_new_configuration` consumes the protocol: move it out of the
        // driver and put its successor back, so every other field stays.
        self.op = match self.op.into_new_configuration(config) {
            Ok(op) => op,
            Err(e) => {
                self.channels
                    .status
                    .send_modify(|s| s.stopped = Some(RuntimeError::Config(e)));
                return Err(());
            }
        };
        // Read requests of the old configuration get no read point in the
        // new one: the caller retries.
        for (_, reply) in self.reads.drain() {
            let _ = reply.send(Err(RuntimeError::Reconfigured(ss.clone())));
        }
        self.configuration_id = ss.config_id;
        self.last_leader = None;
        self.members = ss.nodes;
        self.members.sort_unstable();
        self.heard_joiners.clear();
        Ok(self)
    }

    /// A node the next configuration left out has served its last pull:
    /// it shuts down, as [`OmniPaxosNode::shutdown`] would, and its status
    /// says it was removed.
    fn retire(mut self) {
        let ss = self
            .reconfigured
            .clone()
            .expect("only a removed node retires");
        self.fail_all(&RuntimeError::Removed(ss.clone()));
        self.channels
            .status
            .send_modify(|s| s.stopped = Some(RuntimeError::Removed(ss)));
    }

    fn fail_all(&mut self, e: &RuntimeError) {
        for (_, reply) in self.parked.drain(..) {
            let _ = reply.send(Err(e.clone()));
        }
        for (_, reply) in self.appends.drain() {
            let _ = reply.send(Err(e.clone()));
        }
        for (_, reply, _) in self.waiting_leader.drain(..) {
            let _ = reply.send(Err(e.clone()));
        }
        for (_, reply) in self.reads.drain() {
            let _ = reply.send(Err(e.clone()));
        }
        for (_, reply) in self.reconfigure_waiters.drain(..) {
            let _ = reply.send(Err(e.clone()));
        }
    }

    fn publish(&mut self) {
        let leader_ballot = self.op.get_current_leader_ballot();
        self.count_leader_change(leader_ballot);
        let op = &self.op;
        let dropped = self.dropped_messages;
        let stopped = op
            .get_storage_failure()
            .map(|e| RuntimeError::Storage(e.clone()));
        let previous_stopsign = op.get_previous_stopsign();
        // Field by field, so that nothing is cloned unless it changed: this
        // runs after every step.
        self.channels.status.send_if_modified(|s| {
            let mut changed = false;
            macro_rules! set {
                ($field:ident, $value:expr) => {{
                    let value = $value;
                    if s.$field != value {
                        s.$field = value;
                        changed = true;
                    }
                }};
            }
            set!(pid, op.get_pid());
            set!(configuration_id, self.configuration_id);
            set!(leader, leader_ballot.map(|b| b.pid));
            set!(leader_ballot, leader_ballot);
            set!(is_leader, op.is_leader());
            set!(decided_idx, op.get_decided_idx());
            set!(accepted_idx, op.get_accepted_idx());
            set!(compacted_idx, op.get_compacted_idx());
            set!(joining, op.is_migrating());
            set!(migration, op.get_migration_status());
            set!(stopped, stopped);
            set!(dropped_messages, dropped);
            if s.members != self.members {
                s.members.clone_from(&self.members);
                changed = true;
            }
            if s.reconfigured != self.reconfigured {
                s.reconfigured.clone_from(&self.reconfigured);
                changed = true;
            }
            if s.previous_stopsign.as_ref() != previous_stopsign {
                s.previous_stopsign = previous_stopsign.cloned();
                changed = true;
            }
            changed
        });
    }

    /// Counts a leader ballot the node had not followed before. A step holds
    /// at most one tick or one control command, and leader election changes
    /// the leader only there, so checking once per step misses no change.
    fn count_leader_change(&mut self, leader: Option<Ballot>) {
        match leader {
            Some(b) if self.last_leader != leader => {
                self.metrics.count_leader_change(b.pid == self.op.get_pid());
                self.last_leader = leader;
            }
            _ => {}
        }
    }

    /// Ends the node: pending calls fail, channels close, storage is dropped.
    /// (`parked` appends fail too: see `fail_all`.)
    fn stop(mut self, done: Option<oneshot::Sender<()>>) {
        self.fail_all(&RuntimeError::ShutDown);
        self.channels
            .status
            .send_modify(|s| s.stopped = Some(RuntimeError::ShutDown));
        drop(self);
        if let Some(done) = done {
            let _ = done.send(());
        }
    }

    /// For a node that cannot run: publish why; its channels close when dropped.
    pub(super) fn stop_with(self, e: RuntimeError) {
        self.channels.status.send_modify(|s| s.stopped = Some(e));
    }
}

/// The servers of `op`'s configuration, itself included, in increasing order.
/// The decided entries from `from` on, as the decided stream gives them.
///
/// A configuration's stop-sign is left out, and the batch ends before it:
/// the next configuration's first entry takes the stop-sign's index, so a
/// reader that counted the stop-sign as an entry would skip that one. A node
/// that moves on continues the stream in the next configuration; one left
/// out ends it with [`RuntimeError::Removed`]. A range the protocol cannot
/// read gives an empty batch that ends where it starts (the stream waits)
/// rather than one that skips entries.
pub(super) fn decided_batch<T: Entry, S: Storage<T>>(
    op: &OmniPaxos<T, S>,
    from: u64,
) -> DecidedBatch<T> {
    let mut end_idx = op.get_decided_idx();
    let Some(mut entries) = op.read_entries(from..end_idx) else {
        return DecidedBatch {
            start_idx: from,
            end_idx: from,
            entries: Vec::new(),
        };
    };
    if matches!(entries.last(), Some(LogEntry::StopSign(..))) {
        entries.pop();
        end_idx -= 1;
    }
    DecidedBatch {
        start_idx: from,
        end_idx,
        entries,
    }
}

fn members_of<T: Entry, S: Storage<T>>(op: &OmniPaxos<T, S>) -> Vec<NodeId> {
    let config = op.get_config();
    let mut members = config.peers.clone();
    members.push(config.pid);
    members.sort_unstable();
    members
}

#[cfg(test)]
mod tests {
    use super::decided_batch;
    use omnipaxos::{OmniPaxos, OmniPaxosConfig, ReconfigurationRequest, util::LogEntry};
    use omnipaxos_storage::memory_storage::MemoryStorage;

    #[derive(Clone, Debug, PartialEq, Eq, omnipaxos::macros::Entry)]
    struct Value(u64);

    /// A lone server of configuration 1 with `n` entries decided, then its
    /// stop-sign (at index `n`) decided.
    fn stopped_after(n: u64) -> OmniPaxos<Value, MemoryStorage<Value>> {
        let mut op = OmniPaxosConfig {
            configuration_id: 1,
            pid: 1,
            ..Default::default()
        }
        .build(MemoryStorage::default())
        .unwrap();
        while !op.is_leader() {
            op.tick();
        }
        for v in 0..n {
            op.append(Value(v)).unwrap();
        }
        op.reconfigure(ReconfigurationRequest::with(vec![1, 2], None))
            .unwrap();
        while op.is_reconfigured().is_none() {
            op.tick();
        }
        assert_eq!(
            op.get_decided_idx(),
            n + 1,
            "the stop-sign is decided at {n}"
        );
        op
    }

    #[test]
    fn the_decided_stream_ends_a_configuration_before_its_stop_sign() {
        let op = stopped_after(3);
        let batch = decided_batch(&op, 0);
        assert_eq!((batch.start_idx, batch.end_idx), (0, 3));
        assert_eq!(
            batch.entries,
            (0..3)
                .map(|v| LogEntry::Decided(Value(v)))
                .collect::<Vec<_>>()
        );
        // Read from the stop-sign's index: nothing, and no progress past it,
        // since the next configuration's first entry takes that index.
        let batch = decided_batch(&op, 3);
        assert_eq!((batch.end_idx, batch.entries.len()), (3, 0));
    }

    #[test]
    fn a_range_the_protocol_cannot_read_gives_a_batch_that_skips_nothing() {
        let op = stopped_after(2);
        let batch = decided_batch(&op, 10);
        assert_eq!((batch.start_idx, batch.end_idx), (10, 10));
        assert!(batch.entries.is_empty());
    }
}
