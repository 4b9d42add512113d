//! [`NodeConfig`]: what a runtime node needs beyond the protocol's config.

use omnipaxos::{OmniPaxosConfig, util::NodeId};
use std::time::Duration;

/// The configuration of one runtime node: the protocol's [`OmniPaxosConfig`]
/// plus how the runtime drives it.
///
/// ```
/// use omnipaxos_runtime::NodeConfig;
/// use std::time::Duration;
///
/// let mut node_conf = NodeConfig::default();
/// node_conf.set_pid(2);
/// node_conf.set_peers(vec![1, 3]);
/// node_conf.set_tick_interval(Duration::from_millis(10));
/// node_conf.omnipaxos_config_mut().batch_size = 64;
/// assert_eq!(node_conf.omnipaxos_config().peers, vec![1, 3]);
/// ```
#[derive(Clone, Debug)]
pub struct NodeConfig {
    omnipaxos: OmniPaxosConfig,
    /// The logger the protocol writes to, if the user gave one (feature
    /// `logging`); else the protocol's default (`logger_file_path`).
    #[cfg(feature = "logging")]
    logger: Option<slog::Logger>,
    tick_interval: Duration,
    append_timeout: Option<Duration>,
    leader_wait: Option<Duration>,
    channel_capacity: usize,
    /// For a server new to its configuration: the old servers to pull the log from.
    join_sources: Option<Vec<NodeId>>,
    retire_grace: Duration,
}

impl Default for NodeConfig {
    /// Configuration 1, no pid yet, a 10 ms tick (so the default election
    /// timeout of the core, 10 ticks, is 100 ms), appends that wait at most 10 s,
    /// channels of 4096 messages.
    fn default() -> Self {
        Self {
            omnipaxos: OmniPaxosConfig {
                configuration_id: 1,
                ..OmniPaxosConfig::default()
            },
            #[cfg(feature = "logging")]
            logger: None,
            tick_interval: Duration::from_millis(10),
            append_timeout: Some(Duration::from_secs(10)),
            leader_wait: None,
            channel_capacity: 4096,
            join_sources: None,
            retire_grace: Duration::from_secs(10),
        }
    }
}

impl NodeConfig {
    /// A node config around a protocol config; runtime settings at their defaults.
    pub fn with_omnipaxos_config(omnipaxos: OmniPaxosConfig) -> Self {
        Self {
            omnipaxos,
            ..Self::default()
        }
    }

    /// Makes the protocol log through `logger` (feature `logging`) instead
    /// of its default logger, which writes to `logger_file_path` if set.
    /// An application that logs with `tracing` can pass a drain that
    /// forwards to it (the kv_store uses `tracing-slog`), so one log holds
    /// both.
    #[cfg(feature = "logging")]
    pub fn set_logger(&mut self, logger: slog::Logger) {
        self.logger = Some(logger);
    }

    /// The logger set with [`set_logger`](Self::set_logger), if any.
    #[cfg(feature = "logging")]
    pub fn logger(&self) -> Option<&slog::Logger> {
        self.logger.as_ref()
    }

    /// Sets this node's id (`OmniPaxosConfig::pid`).
    pub fn set_pid(&mut self, pid: NodeId) {
        self.omnipaxos.pid = pid;
    }

    /// Sets the other servers of the configuration (`OmniPaxosConfig::peers`).
    pub fn set_peers(&mut self, peers: Vec<NodeId>) {
        self.omnipaxos.peers = peers;
    }

    /// Sets how often the runtime calls [`OmniPaxos::tick`]. Every timeout in
    /// the protocol config counts ticks, so this scales them all.
    ///
    /// [`OmniPaxos::tick`]: omnipaxos::OmniPaxos::tick
    pub fn set_tick_interval(&mut self, interval: Duration) {
        self.tick_interval = interval;
    }

    /// Sets how long [`OmniPaxosNode::append`](crate::OmniPaxosNode::append)
    /// waits for its entry to be decided before it gives up with
    /// [`RuntimeError::Timeout`](crate::RuntimeError::Timeout); `None` waits
    /// for as long as the node runs.
    pub fn set_append_timeout(&mut self, timeout: Option<Duration>) {
        self.append_timeout = timeout;
    }

    /// Sets how long an append waits for a leader to be known before it
    /// fails with [`RuntimeError::NoLeader`](crate::RuntimeError::NoLeader);
    /// such an append never reached the protocol, so it is certainly not in
    /// the log. `None` (the default) waits four election timeouts.
    pub fn set_leader_wait(&mut self, wait: Option<Duration>) {
        self.leader_wait = wait;
    }

    /// Sets the capacity of each message and command channel.
    pub fn set_channel_capacity(&mut self, capacity: usize) {
        self.channel_capacity = capacity.max(1);
    }

    /// The protocol config.
    pub fn omnipaxos_config(&self) -> &OmniPaxosConfig {
        &self.omnipaxos
    }

    /// The protocol config, to change any of its fields.
    pub fn omnipaxos_config_mut(&mut self) -> &mut OmniPaxosConfig {
        &mut self.omnipaxos
    }

    /// This node's id.
    pub fn pid(&self) -> NodeId {
        self.omnipaxos.pid
    }

    /// The other servers of the configuration.
    pub fn peers(&self) -> &[NodeId] {
        &self.omnipaxos.peers
    }

    /// The tick interval.
    pub fn tick_interval(&self) -> Duration {
        self.tick_interval
    }

    /// How long an append waits for its decision.
    pub fn append_timeout(&self) -> Option<Duration> {
        self.append_timeout
    }

    /// How long an append waits for a leader to be known.
    pub fn leader_wait(&self) -> Duration {
        self.leader_wait.unwrap_or_else(|| {
            let ticks = self
                .omnipaxos
                .election_tick_timeout
                .saturating_mul(4)
                .max(1);
            self.tick_interval
                .saturating_mul(u32::try_from(ticks).unwrap_or(u32::MAX))
        })
    }

    /// The capacity of each channel.
    pub fn channel_capacity(&self) -> usize {
        self.channel_capacity
    }

    /// Makes the node a server new to its configuration (id 2 or more) that
    /// joins it knowing only where the previous configuration's servers
    /// are: `sources`, the old servers to pull the log from. It asks them
    /// how the previous configuration ended, pulls its log from all of them
    /// in parallel, and takes part only once it holds all of it (see
    /// [`OmniPaxosConfig::build_joining_from`]). It may be started before
    /// or after the reconfiguration that names it is proposed.
    /// [`OmniPaxosNode::join`](crate::OmniPaxosNode::join) sets this.
    pub fn set_join_sources(&mut self, sources: Vec<NodeId>) {
        self.join_sources = Some(sources);
    }

    /// The old servers a joining node pulls from, if it joins.
    pub fn join_sources(&self) -> Option<&[NodeId]> {
        self.join_sources.as_deref()
    }

    /// How long a server that the next configuration leaves out keeps
    /// running after its configuration's stop-sign is decided, counted from
    /// the decision and again from each pull of the log that a server of
    /// the next configuration makes of it: it serves those pulls, then
    /// shuts down. Default 10 s.
    pub fn set_retire_grace(&mut self, grace: Duration) {
        self.retire_grace = grace;
    }

    /// See [`set_retire_grace`](Self::set_retire_grace).
    pub fn retire_grace(&self) -> Duration {
        self.retire_grace
    }
}
