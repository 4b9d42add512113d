//! [`OmniPaxosNode`]: the async handle, and the task that drives the protocol.

use crate::{
    NodeConfig, RuntimeError,
    metrics::{CallKind, CallRecord, MetricCounters, NodeMetrics},
};
use omnipaxos::{
    OmniPaxos, OmniPaxosConfig, ReadError, ReadId, ReconfigurationRequest,
    ballot::Ballot,
    errors::{ConfigError, ProposeErr},
    messages::{BLEMessage, Message, PaxosMessage, PaxosMsg},
    omni_paxos::ProposalId,
    storage::{Entry, Storage},
    ui::OmniPaxosStates,
    util::{ConfigurationId, LogEntry, NodeId, StopSign},
};
use std::{
    collections::{HashMap, VecDeque},
    future::Future,
    ops::{Bound, RangeBounds},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};
use tokio::{
    sync::{OwnedSemaphorePermit, mpsc, oneshot, watch},
    time::{Instant, MissedTickBehavior, Sleep},
};

/// The channels that carry this node's Sequence Paxos messages.
///
/// Read `outgoing` and send each message to [`Message::get_receiver`]; push
/// what the network delivers into `incoming` (any [`Message`], leader
/// election ones included). When `outgoing` is full because nobody reads it,
/// the node drops the message: the protocol resends what matters.
#[derive(Debug)]
pub struct SequencePaxosHandle<T: Entry> {
    /// Messages from the network for this node.
    pub incoming: mpsc::Sender<Message<T>>,
    /// Messages this node sends (always [`Message::SequencePaxos`]).
    pub outgoing: mpsc::Receiver<Message<T>>,
}

/// The channels that carry this node's leader election messages, as
/// [`SequencePaxosHandle`] does for Sequence Paxos. Leader election messages
/// are small and frequent; keeping them apart lets a transport favour them.
#[derive(Debug)]
pub struct BLEHandle {
    /// Leader election messages from the network for this node.
    pub incoming: mpsc::Sender<BLEMessage>,
    /// Leader election messages this node sends; deliver each to its `to`.
    pub outgoing: mpsc::Receiver<BLEMessage>,
}

/// What [`OmniPaxosNode::new`] returns: the node's async API and its two
/// pairs of message channels.
#[derive(Debug)]
pub struct OmniPaxosHandle<T: Entry> {
    /// The async API; clone it freely.
    pub omni_paxos: OmniPaxosNode<T>,
    /// Sequence Paxos messages in and out.
    pub seq_paxos_handle: SequencePaxosHandle<T>,
    /// Leader election messages in and out.
    pub ble_handle: BLEHandle,
}

/// What a node shows of itself, updated by the node after every step; read it
/// with [`OmniPaxosNode::status`] or wait for changes with
/// [`OmniPaxosNode::watch_status`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeStatus {
    /// This node.
    pub pid: NodeId,
    /// The configuration this node runs in
    /// ([`OmniPaxosConfig::configuration_id`](omnipaxos::OmniPaxosConfig::configuration_id)).
    pub configuration_id: ConfigurationId,
    /// The leader this node follows (possibly itself), if any.
    pub leader: Option<NodeId>,
    /// The leader's ballot, if a leader is known.
    pub leader_ballot: Option<Ballot>,
    /// Whether this node leads.
    pub is_leader: bool,
    /// Entries below this index are decided.
    pub decided_idx: u64,
    /// The length of the local log.
    pub accepted_idx: u64,
    /// Entries below this index are compacted.
    pub compacted_idx: u64,
    /// The servers of this node's configuration, itself included, in
    /// increasing order.
    pub members: Vec<NodeId>,
    /// Whether the node is still joining its configuration: learning how
    /// the previous one ended and pulling its log (see
    /// [`NodeConfig::set_join_sources`]). It neither votes nor leads until done.
    pub joining: bool,
    /// While `joining`, how the pull goes: stage, log length, what is
    /// stored, memory held, each source's parts and whether the pull
    /// stalled (see [`OmniPaxos::get_migration_status`](omnipaxos::OmniPaxos::get_migration_status)).
    pub migration: Option<omnipaxos::MigrationStatus>,
    /// The stop-sign that ended this node's configuration, once decided. A
    /// node of the next configuration moves into it by itself (see
    /// [`OmniPaxosNode::reconfigure`]): then `configuration_id` changes
    /// and this is `None` again. A node the next configuration leaves out
    /// keeps it until it shuts down.
    pub reconfigured: Option<StopSign>,
    /// The stop-sign that ended the configuration before this node's, once
    /// known (the node moved on, or joined): its metadata is what the
    /// reconfiguration request carried, e.g. the new servers' addresses.
    pub previous_stopsign: Option<StopSign>,
    /// Why the node stopped, if it did (shut down, or a storage failure).
    pub stopped: Option<RuntimeError>,
    /// Outgoing messages dropped because an outgoing channel was full.
    pub dropped_messages: u64,
}

/// A run of decided log entries, as [`DecidedEntries::next`] returns them.
#[derive(Clone, Debug)]
pub struct DecidedBatch<T: Entry> {
    /// The log index of the first entry (a compacted prefix comes first, as
    /// one [`LogEntry::Snapshotted`] or [`LogEntry::Trimmed`]).
    pub start_idx: u64,
    /// The index after the last entry: the next batch starts here.
    pub end_idx: u64,
    /// The entries.
    pub entries: Vec<LogEntry<T>>,
}

type Reply<R> = oneshot::Sender<Result<R, RuntimeError>>;

/// A Sequence Paxos message from the [`net`](crate::net) transport, with the
/// share of its sender's in-flight budget that its decoded size took. The
/// node drops the charge once it has handled the message, which gives the
/// share back: that is how the transport knows what its peers' messages hold
/// while they wait here.
pub(crate) struct Delivery<T: Entry> {
    pub(crate) msg: Message<T>,
    pub(crate) charge: OwnedSemaphorePermit,
}

enum Command<T: Entry> {
    Append(T, Reply<u64>),
    Reconfigure(ReconfigurationRequest, Reply<StopSign>),
    Trim(Option<u64>, Reply<()>),
    Snapshot(Option<u64>, bool, Reply<()>),
    LinearizableRead(Reply<u64>),
    Read(u64, oneshot::Sender<Option<LogEntry<T>>>),
    ReadEntries(
        (Bound<u64>, Bound<u64>),
        oneshot::Sender<Option<Vec<LogEntry<T>>>>,
    ),
    ReadDecided(u64, oneshot::Sender<DecidedBatch<T>>),
    UiStates(oneshot::Sender<OmniPaxosStates>),
}

enum Control {
    Reconnected(NodeId),
    SetPriority(u32),
    TryBecomeLeader,
    Shutdown(oneshot::Sender<()>),
}

/// The async API of one node. Every method is a message to the task that
/// owns the protocol; clones share that task. The node shuts down when
/// [`shutdown`](Self::shutdown) is called or every clone is dropped.
#[derive(Debug)]
pub struct OmniPaxosNode<T: Entry> {
    commands: mpsc::Sender<Command<T>>,
    control: mpsc::UnboundedSender<Control>,
    /// Where the transport delivers Sequence Paxos messages, each with its
    /// charge; [`SequencePaxosHandle::incoming`] is for everyone else.
    deliveries: mpsc::Sender<Delivery<T>>,
    status: watch::Receiver<NodeStatus>,
    /// The counters behind [`metrics`](Self::metrics), shared with the driver.
    metrics: Arc<MetricCounters>,
    append_timeout: Option<Duration>,
}

impl<T: Entry> Clone for OmniPaxosNode<T> {
    fn clone(&self) -> Self {
        Self {
            commands: self.commands.clone(),
            control: self.control.clone(),
            deliveries: self.deliveries.clone(),
            status: self.status.clone(),
            metrics: Arc::clone(&self.metrics),
            append_timeout: self.append_timeout,
        }
    }
}

impl<T: Entry> std::fmt::Debug for Command<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

impl<T> OmniPaxosNode<T>
where
    T: Entry + Send + 'static,
    T::Snapshot: Send,
{
    /// Starts a node on the caller's tokio runtime and returns its handle.
    ///
    /// Never panics: if the configuration is invalid (or no tokio runtime is
    /// running) the node starts stopped, [`status`](Self::status) says why,
    /// and every call fails with that error. Use [`try_new`](Self::try_new)
    /// to get the error at once.
    // The contract (seed 003, DESIGN.md) names this `new` and has it return
    // the handle with the node inside.
    #[allow(clippy::new_ret_no_self)]
    pub fn new<S>(node_conf: NodeConfig, storage: S) -> OmniPaxosHandle<T>
    where
        S: Storage<T> + Send + 'static,
    {
        let (handle, driver) = Self::prepare(node_conf, storage);
        match (driver, tokio::runtime::Handle::try_current()) {
            (Ok(driver), Ok(rt)) => {
                rt.spawn(driver.run());
            }
            (Ok(driver), Err(_)) => driver.stop_with(RuntimeError::NoRuntime),
            (Err((status, e)), _) => {
                status.send_modify(|s| s.stopped = Some(e));
            }
        }
        handle
    }

    /// Starts a node as [`new`](Self::new) does, but returns an error if the
    /// configuration is invalid or no tokio runtime is running.
    pub fn try_new<S>(node_conf: NodeConfig, storage: S) -> Result<OmniPaxosHandle<T>, RuntimeError>
    where
        S: Storage<T> + Send + 'static,
    {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| RuntimeError::NoRuntime)?;
        let (handle, driver) = Self::prepare(node_conf, storage);
        let driver = driver.map_err(|(_, e)| e)?;
        rt.spawn(driver.run());
        Ok(handle)
    }

    /// Starts a node that joins its configuration as a new server, knowing
    /// only where the previous configuration's servers are: `sources`, whose
    /// log it pulls before it takes part (see
    /// [`NodeConfig::set_join_sources`]). `node_conf` names the new
    /// configuration: its id (the stop-sign's) and the new servers as
    /// peers. Otherwise as [`new`](Self::new); the status shows
    /// [`NodeStatus::joining`] until the log is in.
    pub fn join<S>(
        mut node_conf: NodeConfig,
        storage: S,
        sources: Vec<NodeId>,
    ) -> OmniPaxosHandle<T>
    where
        S: Storage<T> + Send + 'static,
    {
        node_conf.set_join_sources(sources);
        Self::new(node_conf, storage)
    }

    #[allow(clippy::type_complexity)]
    fn prepare<S>(
        node_conf: NodeConfig,
        storage: S,
    ) -> (
        OmniPaxosHandle<T>,
        Result<Driver<T, S>, (watch::Sender<NodeStatus>, RuntimeError)>,
    )
    where
        S: Storage<T> + Send + 'static,
    {
        let cap = node_conf.channel_capacity();
        let (commands_tx, commands) = mpsc::channel(cap);
        let (control_tx, control) = mpsc::unbounded_channel();
        let (sp_in_tx, sp_in) = mpsc::channel(cap);
        let (deliveries_tx, deliveries) = mpsc::channel(cap);
        let (sp_out, sp_out_rx) = mpsc::channel(cap);
        let (ble_in_tx, ble_in) = mpsc::channel(cap);
        let (ble_out, ble_out_rx) = mpsc::channel(cap);
        let mut config = node_conf.omnipaxos_config().clone();
        let mut join = node_conf.join_sources().map(<[NodeId]>::to_vec);
        // A node that moved on (or joined) recorded how the configuration
        // before its new one ended: on such storage it runs in that newer
        // configuration, whatever the (static) node config names, and it
        // has nothing left to join.
        if let Ok(Some(end)) = storage.get_previous_configuration_end() {
            let ss = end.stopsign;
            if ss.config_id >= config.configuration_id && ss.nodes.contains(&config.pid) {
                config.configuration_id = ss.config_id;
                config.peers = ss
                    .nodes
                    .iter()
                    .copied()
                    .filter(|&p| p != config.pid)
                    .collect();
                join = None;
            }
        }
        let configuration_id = config.configuration_id;
        let mut members = config.peers.clone();
        members.push(config.pid);
        members.sort_unstable();
        let (status, status_rx) = watch::channel(NodeStatus {
            pid: node_conf.pid(),
            configuration_id,
            members,
            ..NodeStatus::default()
        });
        let metrics = Arc::new(MetricCounters::default());
        let handle = OmniPaxosHandle {
            omni_paxos: Self {
                commands: commands_tx,
                control: control_tx,
                deliveries: deliveries_tx,
                status: status_rx,
                metrics: Arc::clone(&metrics),
                append_timeout: node_conf.append_timeout(),
            },
            seq_paxos_handle: SequencePaxosHandle {
                incoming: sp_in_tx,
                outgoing: sp_out_rx,
            },
            ble_handle: BLEHandle {
                incoming: ble_in_tx,
                outgoing: ble_out_rx,
            },
        };
        #[cfg(feature = "logging")]
        let built = match (node_conf.logger(), join) {
            (Some(logger), Some(sources)) => {
                config.build_joining_from_with_logger(storage, sources, logger.clone())
            }
            (Some(logger), None) => config.build_with_logger(storage, logger.clone()),
            (None, Some(sources)) => config.build_joining_from(storage, sources),
            (None, None) => config.build(storage),
        };
        #[cfg(not(feature = "logging"))]
        let built = match join {
            Some(sources) => config.build_joining_from(storage, sources),
            None => config.build(storage),
        };
        let op = match built {
            Ok(op) => op,
            Err(e) => return (handle, Err((status, e.into()))),
        };
        let members = members_of(&op);
        let driver = Driver {
            members,
            op,
            commands,
            control,
            sp_in,
            deliveries,
            ble_in,
            sp_out,
            ble_out,
            status,
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
        };
        (handle, Ok(driver))
    }

    async fn call<R>(
        &self,
        make: impl FnOnce(oneshot::Sender<R>) -> Command<T>,
    ) -> Result<R, RuntimeError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| self.stopped())?;
        rx.await.map_err(|_| self.stopped())
    }

    /// The channel the transport delivers Sequence Paxos messages on.
    pub(crate) fn deliveries(&self) -> mpsc::Sender<Delivery<T>> {
        self.deliveries.clone()
    }

    /// The error calls fail with once the node no longer runs.
    fn stopped(&self) -> RuntimeError {
        self.status
            .borrow()
            .stopped
            .clone()
            .unwrap_or(RuntimeError::ShutDown)
    }

    /// Appends `entry` to the replicated log and resolves, with the entry's
    /// log index, once it is decided.
    ///
    /// Call it on any node: a follower forwards the entry to the leader. It
    /// fails with [`RuntimeError::NoLeader`] if no leader was known within
    /// [`NodeConfig::set_leader_wait`] (the entry was not proposed), with
    /// [`RuntimeError::Timeout`] after [`NodeConfig::set_append_timeout`]
    /// (the outcome is unknown), with [`RuntimeError::Reconfigured`] if the
    /// configuration ended first, and with [`RuntimeError::ShutDown`] if the
    /// node stops. Awaiting one append at a time is slow over a network; use
    /// [`append_nowait`](Self::append_nowait) to have many in flight.
    pub async fn append(&self, entry: T) -> Result<u64, RuntimeError> {
        self.append_nowait(entry).await?.await
    }

    /// Hands `entry` to the node and returns at once with a [`PendingAppend`],
    /// a future that resolves as [`append`](Self::append) does. Entries handed
    /// over one after another from one task are proposed in that order.
    pub async fn append_nowait(&self, entry: T) -> Result<PendingAppend, RuntimeError> {
        let mut record = CallRecord::start(&self.metrics, CallKind::Append);
        let (tx, rx) = oneshot::channel();
        if self
            .commands
            .send(Command::Append(entry, tx))
            .await
            .is_err()
        {
            let e = Err(self.stopped());
            record.finish(&e);
            return e;
        }
        Ok(PendingAppend {
            rx,
            deadline: self.append_timeout.map(|t| Box::pin(tokio::time::sleep(t))),
            stopped: self.status.clone(),
            record,
        })
    }

    /// Proposes a reconfiguration: the servers of the next configuration
    /// are `rc.new_configuration`, its id this one's plus one.
    ///
    /// Once the old configuration decides the stop-sign, every node of the
    /// next configuration moves into it by itself, on the same storage and
    /// with the same handle: its log is kept, appends it held that the old
    /// configuration did not decide are proposed in the new one (they do not
    /// fail), and [`NodeStatus::configuration_id`] changes. A server new to
    /// the configuration is started with [`join`](Self::join) (before or
    /// after this call); it pulls the log from the old servers. A node the
    /// next configuration leaves out refuses appends from then on with
    /// [`RuntimeError::Removed`], serves the new servers' pulls of the log,
    /// and shuts down [`NodeConfig::set_retire_grace`] after the last one.
    ///
    /// Resolves with the stop-sign once this node is in the next
    /// configuration and knows its leader (on a node that is left out: once
    /// the stop-sign is decided). Fails with what is known after the append
    /// timeout ([`RuntimeError::ReconfigurationIncomplete`]); at once with
    /// [`RuntimeError::ReconfigurationPending`] if another reconfiguration is
    /// under way, and with [`RuntimeError::InvalidReconfiguration`] if the
    /// request names no server, an id twice or id 0, or if its new servers
    /// that have not reached this node would leave fewer than a majority of
    /// the next configuration to take part. A server reaches this node when
    /// it is started with [`join`](Self::join) naming this node among its
    /// sources or peers (over TCP, this node's transport must know its
    /// address: [`Transport::add_peer`](crate::net::Transport::add_peer)), and
    /// counts for four resend timeouts after it last asked. Replacing one
    /// server of three needs no such contact; replacing two does.
    pub async fn reconfigure(&self, rc: ReconfigurationRequest) -> Result<StopSign, RuntimeError> {
        let started_in = self.status.borrow().configuration_id;
        let wait = self.call(|tx| Command::Reconfigure(rc, tx));
        match self.append_timeout {
            Some(t) => match tokio::time::timeout(t, wait).await {
                Ok(r) => r?,
                Err(_) => {
                    // Decided: either still shown as this configuration's
                    // end (a node left out), or the node already moved on
                    // (then it is the stop-sign that moved it).
                    let status = self.status.borrow();
                    let stopsign = status.reconfigured.clone().or_else(|| {
                        status
                            .previous_stopsign
                            .clone()
                            .filter(|ss| ss.config_id > started_in)
                    });
                    Err(RuntimeError::ReconfigurationIncomplete { stopsign })
                }
            },
            None => wait.await?,
        }
    }

    /// Trims the log below `trim_idx` (default: the decided index) on every
    /// server; see [`OmniPaxos::trim`]. Only the leader may trim.
    pub async fn trim(&self, trim_idx: Option<u64>) -> Result<(), RuntimeError> {
        self.call(|tx| Command::Trim(trim_idx, tx)).await?
    }

    /// Replaces the decided log below `compact_idx` by a snapshot; see
    /// [`OmniPaxos::snapshot`].
    pub async fn snapshot(
        &self,
        compact_idx: Option<u64>,
        local_only: bool,
    ) -> Result<(), RuntimeError> {
        self.call(|tx| Command::Snapshot(compact_idx, local_only, tx))
            .await?
    }

    /// Starts a linearizable read and resolves with its *read point* once this
    /// node has decided up to it: a state machine that has applied every
    /// entry below the read point answers the read linearizably. Nothing is
    /// written to the log; the leader confirms with a quorum that it still
    /// leads. Bounded by the append timeout.
    pub async fn linearizable_read(&self) -> Result<u64, RuntimeError> {
        let mut record = CallRecord::start(&self.metrics, CallKind::Read);
        let wait = self.call(|tx| Command::LinearizableRead(tx));
        let result = match self.append_timeout {
            Some(t) => tokio::time::timeout(t, wait)
                .await
                .unwrap_or(Err(RuntimeError::Timeout))
                .and_then(|r| r),
            None => wait.await.and_then(|r| r),
        };
        record.finish(&result);
        result
    }

    /// The log entry at `idx`, if the log reaches it; see [`OmniPaxos::read`].
    /// `None` also once the node is shut down.
    pub async fn read(&self, idx: u64) -> Option<LogEntry<T>> {
        self.call(|tx| Command::Read(idx, tx)).await.ok().flatten()
    }

    /// The log entries in `range`; see [`OmniPaxos::read_entries`]. `None`
    /// when the range lies outside the log, or once the node is shut down.
    pub async fn read_entries<R: RangeBounds<u64>>(&self, range: R) -> Option<Vec<LogEntry<T>>> {
        let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
        self.call(|tx| Command::ReadEntries(bounds, tx))
            .await
            .ok()
            .flatten()
    }

    /// The decided entries from `from_idx` on; see
    /// [`OmniPaxos::read_decided_suffix`].
    pub async fn read_decided_suffix(&self, from_idx: u64) -> Option<Vec<LogEntry<T>>> {
        self.read_entries(from_idx..self.status().decided_idx).await
    }

    /// A stream of decided entries from `from_idx` on, to apply to a state
    /// machine. Each call of [`DecidedEntries::next`] waits until something
    /// past the previous batch is decided.
    pub fn decided_entries(&self, from_idx: u64) -> DecidedEntries<T> {
        DecidedEntries {
            node: self.clone(),
            status: self.status.clone(),
            next_idx: from_idx,
        }
    }

    /// The leader this node follows (possibly itself), if any.
    pub async fn get_current_leader(&self) -> Option<NodeId> {
        self.status.borrow().leader
    }

    /// Entries below this index are decided.
    pub async fn get_decided_idx(&self) -> u64 {
        self.status.borrow().decided_idx
    }

    /// The stop-sign of this configuration, once decided.
    pub async fn is_reconfigured(&self) -> Option<StopSign> {
        self.status.borrow().reconfigured.clone()
    }

    /// The protocol's full state, for dashboards; see
    /// [`OmniPaxos::get_ui_states`]. `None` once the node is shut down.
    pub async fn get_ui_states(&self) -> Option<OmniPaxosStates> {
        self.call(Command::UiStates).await.ok()
    }

    /// What the node shows of itself now.
    pub fn status(&self) -> NodeStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every change of [`status`](Self::status) from
    /// now on: its `changed()` waits for the next one.
    pub fn watch_status(&self) -> watch::Receiver<NodeStatus> {
        let mut status = self.status.clone();
        status.mark_unchanged();
        status
    }

    /// What the node counted since it started: leader changes, elections,
    /// appends and reads by outcome; see [`NodeMetrics`]. Cheap (a few atomic
    /// loads, no call to the node's task), so an exporter may read it on every
    /// scrape; it keeps working after the node stopped.
    pub fn metrics(&self) -> NodeMetrics {
        let status = self.status.borrow();
        self.metrics
            .snapshot(status.decided_idx, status.dropped_messages)
    }

    /// Tells the node that the link to `pid` was down and is back; see
    /// [`OmniPaxos::reconnected`]. Transports call this.
    pub fn reconnected(&self, pid: NodeId) {
        let _ = self.control.send(Control::Reconnected(pid));
    }

    /// Sets this node's leader priority; see [`OmniPaxos::set_priority`].
    pub fn set_priority(&self, priority: u32) {
        let _ = self.control.send(Control::SetPriority(priority));
    }

    /// Asks this node to take over leadership; see
    /// [`OmniPaxos::try_become_leader`].
    pub fn try_become_leader(&self) {
        let _ = self.control.send(Control::TryBecomeLeader);
    }

    /// Stops the node and waits until it has: calls waiting on it fail with
    /// [`RuntimeError::ShutDown`], its channels close (so transport tasks
    /// end) and its storage is dropped, which closes files cleanly. Calling
    /// it again, or on a stopped node, returns at once.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.control.send(Control::Shutdown(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

/// An append handed to the node: await it for the entry's log index once
/// decided, or the error that ended it (see [`OmniPaxosNode::append`]).
/// Dropping it does not withdraw the entry.
#[derive(Debug)]
#[must_use = "the append proceeds anyway; await this to learn its index"]
pub struct PendingAppend {
    rx: oneshot::Receiver<Result<u64, RuntimeError>>,
    deadline: Option<Pin<Box<Sleep>>>,
    stopped: watch::Receiver<NodeStatus>,
    /// Counts the outcome in [`OmniPaxosNode::metrics`] when this resolves,
    /// or as abandoned if it is dropped first.
    record: CallRecord,
}

impl Future for PendingAppend {
    type Output = Result<u64, RuntimeError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let result = if let Poll::Ready(r) = Pin::new(&mut self.rx).poll(cx) {
            r.unwrap_or_else(|_| {
                Err(self
                    .stopped
                    .borrow()
                    .stopped
                    .clone()
                    .unwrap_or(RuntimeError::ShutDown))
            })
        } else if self
            .deadline
            .as_mut()
            .is_some_and(|d| d.as_mut().poll(cx).is_ready())
        {
            Err(RuntimeError::Timeout)
        } else {
            return Poll::Pending;
        };
        self.record.finish(&result);
        Poll::Ready(result)
    }
}

/// Decided entries in log order, from [`OmniPaxosNode::decided_entries`].
#[derive(Debug)]
pub struct DecidedEntries<T: Entry> {
    node: OmniPaxosNode<T>,
    status: watch::Receiver<NodeStatus>,
    next_idx: u64,
}

impl<T> DecidedEntries<T>
where
    T: Entry + Send + 'static,
    T::Snapshot: Send,
{
    /// Waits until entries past the last batch are decided and returns them.
    /// Fails with [`RuntimeError::ShutDown`] once the node is shut down.
    pub async fn next(&mut self) -> Result<DecidedBatch<T>, RuntimeError> {
        loop {
            let decided = self.status.borrow_and_update().decided_idx;
            if decided > self.next_idx {
                let from = self.next_idx;
                let batch = self.node.call(|tx| Command::ReadDecided(from, tx)).await?;
                if batch.end_idx > self.next_idx {
                    self.next_idx = batch.end_idx;
                    return Ok(batch);
                }
            }
            if self.status.changed().await.is_err() {
                return Err(self.node.stopped());
            }
        }
    }

    /// The index the next batch starts at.
    pub fn next_idx(&self) -> u64 {
        self.next_idx
    }
}

/// The task that owns the protocol.
struct Driver<T: Entry, S: Storage<T>> {
    op: OmniPaxos<T, S>,
    commands: mpsc::Receiver<Command<T>>,
    control: mpsc::UnboundedReceiver<Control>,
    sp_in: mpsc::Receiver<Message<T>>,
    deliveries: mpsc::Receiver<Delivery<T>>,
    ble_in: mpsc::Receiver<BLEMessage>,
    sp_out: mpsc::Sender<Message<T>>,
    ble_out: mpsc::Sender<BLEMessage>,
    status: watch::Sender<NodeStatus>,
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
    T: Entry + Send + 'static,
    T::Snapshot: Send,
    S: Storage<T> + Send + 'static,
{
    /// The driver loop: wait for an input, take what else is queued, then
    /// send, resolve and publish what that changed.
    async fn run(mut self) {
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
                c = self.control.recv() => match c {
                    Some(Control::Shutdown(done)) => return self.stop(Some(done)),
                    Some(c) => self.on_control(c),
                    None => return self.stop(None),
                },
                _ = ticker.tick() => self.on_tick(),
                Some(m) = self.ble_in.recv() => self.op.handle_incoming(Message::BLE(m)),
                Some(m) = self.sp_in.recv() => self.handle_message(m),
                Some(d) = self.deliveries.recv() => self.on_delivery(d),
                c = self.commands.recv() => match c {
                    Some(c) => self.on_command(c),
                    None => return self.stop(None),
                },
            }
            self.take_queued();
            self.after_step();
            if self.moves_on() {
                self = match self.move_on() {
                    Ok(driver) => driver,
                    Err(()) => return,
                };
                self.after_step();
            }
            if self.retire_at.is_some_and(|at| at <= Instant::now()) {
                return self.retire();
            }
        }
    }

    /// Takes inputs that are already queued, up to a bound, so that one
    /// step's outgoing messages and storage writes cover many of them.
    fn take_queued(&mut self) {
        for _ in 0..MAX_INPUTS_PER_STEP {
            match self.sp_in.try_recv() {
                Ok(m) => self.handle_message(m),
                Err(_) => break,
            }
        }
        for _ in 0..MAX_INPUTS_PER_STEP {
            match self.deliveries.try_recv() {
                Ok(d) => self.on_delivery(d),
                Err(_) => break,
            }
        }
        for _ in 0..MAX_INPUTS_PER_STEP {
            match self.commands.try_recv() {
                Ok(c) => self.on_command(c),
                Err(_) => break,
            }
        }
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
                    msg: PaxosMsg::PullLog(_),
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
                        None => RuntimeError::Rejected(
                            "a reconfiguration is under way; read in the next configuration".into(),
                        ),
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
                let end_idx = self.op.get_decided_idx();
                let entries = self.op.read_entries(from..end_idx).unwrap_or_default();
                let _ = reply.send(DecidedBatch {
                    start_idx: from,
                    end_idx,
                    entries,
                });
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
                None => RuntimeError::Rejected(
                    "a reconfiguration is under way; append in the next configuration".into(),
                ),
            },
            other => RuntimeError::Rejected(other.to_string()),
        }
    }

    /// After a step: send what the protocol produced, hand waiting appends to
    /// a newly known leader, resolve what was decided, publish the status.
    fn after_step(&mut self) {
        if self.op.get_current_leader().is_some() {
            while let Some((entry, reply, _)) = self.waiting_leader.pop_front() {
                self.propose(entry, reply);
            }
        }
        self.op.take_outgoing_messages(&mut self.outgoing);
        for m in self.outgoing.drain(..) {
            let sent = match m {
                Message::BLE(b) => self.ble_out.try_send(b).is_ok(),
                m => self.sp_out.try_send(m).is_ok(),
            };
            if !sent {
                self.dropped_messages += 1;
            }
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
                self.status
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
        self.status
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
        self.status.send_if_modified(|s| {
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
        self.status
            .send_modify(|s| s.stopped = Some(RuntimeError::ShutDown));
        drop(self);
        if let Some(done) = done {
            let _ = done.send(());
        }
    }

    /// For a node that cannot run: publish why; its channels close when dropped.
    fn stop_with(self, e: RuntimeError) {
        self.status.send_modify(|s| s.stopped = Some(e));
    }
}

/// The servers of `op`'s configuration, itself included, in increasing order.
fn members_of<T: Entry, S: Storage<T>>(op: &OmniPaxos<T, S>) -> Vec<NodeId> {
    let config = op.get_config();
    let mut members = config.peers.clone();
    members.push(config.pid);
    members.sort_unstable();
    members
}
