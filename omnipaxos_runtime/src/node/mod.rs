//! [`OmniPaxosNode`]: the async handle and its calls; `futures` holds what
//! the calls hand out, `driver` the task that drives the protocol.

use crate::{
    NodeConfig, RuntimeError,
    metrics::{CallKind, CallRecord, MetricCounters, NodeMetrics},
};
use omnipaxos::{
    ReconfigurationRequest,
    ballot::Ballot,
    messages::{BLEMessage, Message},
    storage::{Entry, Storage},
    ui::OmniPaxosStates,
    util::{ConfigurationId, LogEntry, NodeId, StopSign},
};
use std::{
    ops::{Bound, RangeBounds},
    sync::Arc,
    time::Duration,
};
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot, watch};

mod driver;
mod futures;

use driver::{Channels, Driver};
pub use futures::{DecidedEntries, PendingAppend};

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
    T: Entry + Send + Sync + 'static,
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
        // The driver syncs right after it hands a step's messages to the
        // network, so a leader's disk write overlaps its followers'.
        config.defer_leader_sync = true;
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
        let channels = Channels {
            commands,
            control,
            sp_in,
            deliveries,
            ble_in,
            sp_out,
            ble_out,
            status,
        };
        let driver = Driver::new(op, channels, metrics, configuration_id, &node_conf);
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
    /// server; see [`OmniPaxos::trim`](omnipaxos::OmniPaxos::trim). Only the leader may trim.
    pub async fn trim(&self, trim_idx: Option<u64>) -> Result<(), RuntimeError> {
        self.call(|tx| Command::Trim(trim_idx, tx)).await?
    }

    /// Replaces the decided log below `compact_idx` by a snapshot; see
    /// [`OmniPaxos::snapshot`](omnipaxos::OmniPaxos::snapshot).
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

    /// The log entry at `idx`, if the log reaches it; see [`OmniPaxos::read`](omnipaxos::OmniPaxos::read).
    /// `None` also once the node is shut down.
    pub async fn read(&self, idx: u64) -> Option<LogEntry<T>> {
        self.call(|tx| Command::Read(idx, tx)).await.ok().flatten()
    }

    /// The log entries in `range`; see [`OmniPaxos::read_entries`](omnipaxos::OmniPaxos::read_entries). `None`
    /// when the range lies outside the log, or once the node is shut down.
    pub async fn read_entries<R: RangeBounds<u64>>(&self, range: R) -> Option<Vec<LogEntry<T>>> {
        let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
        self.call(|tx| Command::ReadEntries(bounds, tx))
            .await
            .ok()
            .flatten()
    }

    /// The decided entries from `from_idx` on; see
    /// [`OmniPaxos::read_decided_suffix`](omnipaxos::OmniPaxos::read_decided_suffix).
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
    /// [`OmniPaxos::get_ui_states`](omnipaxos::OmniPaxos::get_ui_states). `None` once the node is shut down.
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
    /// [`OmniPaxos::reconnected`](omnipaxos::OmniPaxos::reconnected). Transports call this.
    pub fn reconnected(&self, pid: NodeId) {
        let _ = self.control.send(Control::Reconnected(pid));
    }

    /// Sets this node's leader priority; see [`OmniPaxos::set_priority`](omnipaxos::OmniPaxos::set_priority).
    pub fn set_priority(&self, priority: u32) {
        let _ = self.control.send(Control::SetPriority(priority));
    }

    /// Asks this node to take over leadership; see
    /// [`OmniPaxos::try_become_leader`](omnipaxos::OmniPaxos::try_become_leader).
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
