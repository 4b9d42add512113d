//! [`SimCluster`]: N servers, one network, one clock, one seed.

use crate::{
    invariants::Invariants,
    sim::{
        network::{Fate, Network},
        options::SimOptions,
        storage::SharedStorage,
        value::{Value, ValueSnapshot},
    },
};
use omnipaxos::{
    Migration, OmniPaxos, OmniPaxosConfig, ProposalId, ProposeErr,
    messages::Message,
    util::{ConfigurationId, LogEntry, NodeId},
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::{
    cell::Cell,
    collections::{BTreeMap, HashMap},
};

mod checks;
mod links;
mod reconfiguration;

/// One simulated server: its configuration and storage, which outlive a
/// crash, and the running protocol instance, which does not.
struct SimNode {
    /// What the server is (re)built from; `set_priority` updates it so a
    /// restart keeps the priority. Its `configuration_id` is the
    /// configuration the storage belongs to: moving on to the next
    /// configuration replaces it.
    config: OmniPaxosConfig,
    /// While the server joins its configuration by pulling the previous
    /// one's log: what it pulls, so that a restart before the pull finished
    /// starts pulling again.
    migration: Option<Migration>,
    /// How many times the simulator replaced the storage by an empty one.
    generation: u32,
    /// The storages it had before; kept for the quorum invariant.
    past_storages: Vec<SharedStorage>,
    /// Whether the server left the configuration and was shut down for good
    /// (its storage stays, for the invariants).
    retired: bool,
    /// The server's persistent state.
    storage: SharedStorage,
    /// The running server; `None` while crashed.
    paxos: Option<OmniPaxos<Value, SharedStorage>>,
    /// What this server's `append_tracked` took and has not yet reported as
    /// decided. A crash forgets it, as it forgets the names.
    tracked: HashMap<ProposalId, Value>,
    /// How many times the server was restarted.
    incarnation: u32,
}

impl SimNode {
    /// A server on its first storage, just built and running, that has
    /// tracked nothing yet; `migration` as the field says.
    fn running(
        config: OmniPaxosConfig,
        storage: SharedStorage,
        paxos: OmniPaxos<Value, SharedStorage>,
        migration: Option<Migration>,
    ) -> Self {
        Self {
            config,
            migration,
            generation: 0,
            past_storages: Vec::new(),
            retired: false,
            storage,
            paxos: Some(paxos),
            tracked: HashMap::new(),
            incarnation: 0,
        }
    }
}

/// How a run's proposals fared: taken by `append`, refused by it, and
/// forgotten (taken by a server that then crashed or left before they were
/// reported decided: at most once, by `append`'s contract).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProposalCounts {
    /// Proposals `append_tracked` accepted.
    pub taken: u64,
    /// Proposals it refused (buffer full, a stop-sign in the log, ...).
    pub refused: u64,
    /// Taken proposals whose server crashed or left before reporting them.
    pub forgotten: u64,
}

/// A cluster of `OmniPaxos` servers driven tick by tick in one thread.
///
/// A test builds a cluster, scripts commands (propose, cut links, crash,
/// restart) between steps, and waits for outcomes with
/// [`run_until`](Self::run_until). After every step, and after every command,
/// the cluster checks all [`invariants`](crate::invariants) and panics on a
/// violation with the property, the tick, the seed and a replay command.
///
/// Time is counted in ticks: each [`step`](Self::step) calls `tick()` once on
/// every running server, so `k * election_tick_timeout` steps are `k`
/// election timeouts for every server.
pub struct SimCluster {
    /// How the run's proposals fared so far (see [`ProposalCounts`]).
    proposal_counts: ProposalCounts,
    /// The knobs of this run, including the seed.
    options: SimOptions,
    /// The only source of randomness of the run, seeded from `options.seed`.
    rng: ChaCha8Rng,
    /// The number of steps taken so far.
    now: u64,
    /// The ids of the current configuration, in ascending order.
    ids: Vec<NodeId>,
    /// The current configuration's id (1 until the first reconfiguration).
    config_id: ConfigurationId,
    /// The servers of the configuration before the current one.
    previous_ids: Vec<NodeId>,
    /// The tick the current configuration began at.
    config_started_at: u64,
    /// The servers of the next configuration, once a server of the current
    /// one accepted a request for it (`reconfigure` returned `Ok`).
    requested: Option<Vec<NodeId>>,
    /// The servers by id; iteration in id order keeps runs deterministic.
    nodes: BTreeMap<NodeId, SimNode>,
    /// The messages in flight and the state of the links.
    network: Network,
    /// The safety properties and their records.
    invariants: Invariants,
    /// The number the next minted [`Value`] gets.
    next_value: u64,
    /// A reused buffer for `take_outgoing_messages`.
    outbox: Vec<Message<Value>>,
    /// The most log entries one message sent so far carried (see
    /// [`SimCluster::max_entries_per_message`]).
    max_entries_sent: usize,
    /// The most entry bytes (by `Entry::size_hint`) one message carried.
    max_entry_bytes_sent: usize,
    /// Messages sent so far that carried a snapshot whole although it
    /// splits into several parts (see [`SimCluster::whole_snapshots_that_split`]).
    whole_split_snapshots: usize,
    /// Messages sent so far that carried one part of a snapshot.
    snapshot_parts_sent: usize,
    /// Crashes that cut a server's log back to what it had synced (see
    /// [`SimCluster::unsynced_losses`]).
    unsynced_losses: u64,
    /// Crashes that set a server's decided index back to what it had synced
    /// (see [`SimCluster::decided_rollbacks`]).
    decided_rollbacks: u64,
    /// Whether to print a line per delivered message and per command.
    trace: bool,
    /// Set by [`SimCluster::hold_configuration_changes`]: servers stay in
    /// their configuration after it decided its stop-sign.
    configuration_changes_held: bool,
    /// Set by [`SimCluster::pull_from`]: whom the next configuration's new
    /// servers pull the old log from, instead of the previous servers.
    joiner_sources: Option<Vec<NodeId>>,
    /// Set once the simulator itself reported a failure, so that `Drop` does
    /// not print the replay line a second time.
    reported: Cell<bool>,
    /// A running hash of the run: every delivery (tick, sender, receiver,
    /// kind of message) and every server's decided index after each step.
    /// Two runs of one seed must end with the same hash.
    trace_hash: u64,
}

/// Folds `value` into the running trace hash `h` (FNV-1a over its bytes:
/// fixed, so a hash means the same thing in every run and on every machine).
fn fold_hash(h: u64, value: u64) -> u64 {
    value
        .to_le_bytes()
        .iter()
        .fold(h, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// A number for the kind of a message, for the trace hash.
fn message_kind(msg: &Message<Value>) -> u64 {
    match msg {
        Message::BLE(_) => 0,
        Message::SequencePaxos(p) => {
            // `DefaultHasher::new` has fixed keys: the same in every run of
            // one build, which is all a replay needs.
            use std::hash::{Hash, Hasher};
            let mut hasher = std::hash::DefaultHasher::new();
            std::mem::discriminant(&p.msg).hash(&mut hasher);
            hasher.finish() | 1
        }
    }
}

impl SimCluster {
    /// Builds a cluster of servers with the given ids (non-zero, distinct, any
    /// order, need not be contiguous), all running and fully connected.
    pub fn new(ids: &[NodeId], options: SimOptions) -> Self {
        options.validate();
        let mut sorted = ids.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert!(!sorted.is_empty(), "a cluster needs at least one server");
        assert_eq!(
            sorted.len(),
            ids.len(),
            "server ids must be distinct: {ids:?}"
        );
        assert!(sorted[0] != 0, "server id 0 is not allowed");
        let nodes = sorted
            .iter()
            .map(|&pid| {
                let config = options.config_for(pid, &sorted);
                let storage = SharedStorage::of_kind(options.storage);
                let paxos = config
                    .clone()
                    .build(storage.clone())
                    .unwrap_or_else(|e| panic!("config of server {pid} is invalid: {e}"));
                (pid, SimNode::running(config, storage, paxos, None))
            })
            .collect();
        Self {
            rng: ChaCha8Rng::seed_from_u64(options.seed),
            invariants: Invariants::new(
                &sorted,
                write_quorum(&options, sorted.len()),
                options.allow_duplicate_decisions,
            ),
            config_id: 1,
            previous_ids: Vec::new(),
            config_started_at: 0,
            requested: None,
            trace: options.trace || std::env::var_os("SIM_TRACE").is_some_and(|v| v != "0"),
            options,
            now: 0,
            ids: sorted,
            nodes,
            network: Network::new(),
            next_value: 1,
            proposal_counts: ProposalCounts::default(),
            outbox: Vec::new(),
            max_entries_sent: 0,
            whole_split_snapshots: 0,
            unsynced_losses: 0,
            decided_rollbacks: 0,
            snapshot_parts_sent: 0,
            max_entry_bytes_sent: 0,
            configuration_changes_held: false,
            joiner_sources: None,
            reported: Cell::new(false),
            trace_hash: 0xcbf2_9ce4_8422_2325,
        }
    }

    /// Prints one trace line, if tracing is on.
    fn trace(&self, what: impl FnOnce() -> String) {
        if self.trace {
            eprintln!("[t={}] {}", self.now, what());
        }
    }

    // ----- time -------------------------------------------------------------

    /// Advances time by one tick: ticks every running server (in id order),
    /// moves their outgoing messages into the network, delivers every message
    /// that is due, and checks the invariants.
    ///
    /// Messages a server sends while handling a delivery wait in its outbox
    /// until the next step, so one network hop takes at least one tick.
    pub fn step(&mut self) {
        self.now += 1;
        self.advance_configurations();
        for node in self.nodes.values_mut() {
            if let Some(paxos) = node.paxos.as_mut() {
                paxos.tick();
            }
        }
        self.collect_outgoing();
        for msg in self.network.take_due(self.now) {
            let to = msg.get_receiver();
            self.trace(|| format!("{} -> {to}: {msg:?}", msg.get_sender()));
            let mut h = fold_hash(self.trace_hash, self.now);
            h = fold_hash(h, msg.get_sender() << 32 | to);
            self.trace_hash = fold_hash(h, message_kind(&msg));
            match self.nodes.get_mut(&to).and_then(|n| n.paxos.as_mut()) {
                Some(paxos) => paxos.handle_incoming(msg),
                None => self.network.note_undeliverable(),
            }
        }
        for node in self.nodes.values() {
            let decided = node
                .paxos
                .as_ref()
                .map_or(u64::MAX, |p| p.get_decided_idx());
            self.trace_hash = fold_hash(self.trace_hash, decided);
        }
        self.check_invariants();
    }

    /// A hash of everything the run did so far (every delivery, and every
    /// server's decided index after every step): two runs of one seed and
    /// one script must give the same hash, which is what makes a failing
    /// seed replayable.
    pub fn trace_hash(&self) -> u64 {
        self.trace_hash
    }

    /// What happened to the messages sent so far.
    pub fn network_stats(&self) -> crate::sim::network::NetworkStats {
        self.network.stats()
    }

    /// Moves every running server's outgoing messages into the network,
    /// after checking that each is addressed sensibly.
    fn collect_outgoing(&mut self) {
        let mut outbox = std::mem::take(&mut self.outbox);
        let live = self.live_ids();
        for &pid in &live {
            let start = outbox.len();
            self.node_mut(pid).take_outgoing_messages(&mut outbox);
            // A driver that syncs right after it sends, as the runtime's
            // does; on the other half of the steps the sync waits for the
            // next tick, so that a crash can find a leader's batch sent but
            // not durable.
            if self.options.defer_leader_sync
                && fold_hash(self.trace_hash, pid) & 1 == 0
                && self.node_mut(pid).sync_storage()
            {
                self.node_mut(pid).take_outgoing_messages(&mut outbox);
            }
            let misaddressed = outbox[start..].iter().find(|m| {
                let (from, to) = (m.get_sender(), m.get_receiver());
                from != pid || to == pid || !self.nodes.contains_key(&to)
            });
            if let Some(msg) = misaddressed {
                let detail = format!(
                    "server {pid} sent a message from {} to {} in cluster {:?}: {msg:?}",
                    msg.get_sender(),
                    msg.get_receiver(),
                    self.nodes.keys().collect::<Vec<_>>()
                );
                self.fail("message_addressing", &detail);
            }
        }
        for msg in outbox.drain(..) {
            let (entries, bytes) = entries_carried(&msg);
            self.max_entries_sent = self.max_entries_sent.max(entries);
            self.max_entry_bytes_sent = self.max_entry_bytes_sent.max(bytes);
            match snapshot_carried(&msg, self.options.max_message_bytes) {
                Carried::Nothing => {}
                Carried::Whole { splits } => self.whole_split_snapshots += usize::from(splits),
                Carried::Part => self.snapshot_parts_sent += 1,
            }
            let (from, to) = (msg.get_sender(), msg.get_receiver());
            let receiver_up = live.contains(&to);
            let fate = self
                .network
                .send(msg, self.now, receiver_up, &self.options, &mut self.rng);
            if !matches!(fate, Fate::Queued { due, copy_due: None } if due == self.now) {
                self.trace(|| format!("{from} -> {to}: {fate:?}"));
            }
        }
        self.outbox = outbox;
    }

    /// Takes `ticks` steps.
    pub fn run_for(&mut self, ticks: u64) {
        for _ in 0..ticks {
            self.step();
        }
    }

    /// Steps until `done` holds, and returns the number of steps taken (0 if
    /// it held already). Panics, printing the seed and a replay command, if it
    /// does not hold within `max_ticks` steps.
    #[track_caller]
    pub fn run_until(&mut self, done: impl FnMut(&Self) -> bool, max_ticks: u64) -> u64 {
        let start = self.now;
        match self.try_run_until(done, max_ticks) {
            Some(steps) => steps,
            None => {
                let detail = format!(
                    "the awaited condition did not hold within {max_ticks} ticks (started at tick {start})\n{}",
                    self.describe()
                );
                self.fail("run_until", &detail);
            }
        }
    }

    /// Steps until `done` holds, and returns the number of steps taken (0 if
    /// it held already), or `None` if it does not hold within `max_ticks`
    /// steps: for a script that has a plan B.
    pub fn try_run_until(
        &mut self,
        mut done: impl FnMut(&Self) -> bool,
        max_ticks: u64,
    ) -> Option<u64> {
        let start = self.now;
        while !done(self) {
            if self.now - start >= max_ticks {
                return None;
            }
            self.step();
        }
        Some(self.now - start)
    }

    /// The number of steps taken so far.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// The options of this run.
    pub fn options(&self) -> &SimOptions {
        &self.options
    }

    /// The seed of this run.
    pub fn seed(&self) -> u64 {
        self.options.seed
    }

    /// The run's random number generator, for test scripts that make random
    /// choices (the soak): drawing from it keeps the whole run one function of
    /// the seed.
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    // ----- servers ----------------------------------------------------------

    /// The ids of the current configuration, ascending.
    pub fn ids(&self) -> &[NodeId] {
        &self.ids
    }

    /// The current configuration's id: 1, plus one per reconfiguration the
    /// cluster moved on from.
    pub fn config_id(&self) -> ConfigurationId {
        self.config_id
    }

    /// The configuration server `pid` is in (its storage's configuration).
    #[track_caller]
    pub fn config_of(&self, pid: NodeId) -> ConfigurationId {
        self.sim_node(pid).config.configuration_id
    }

    /// Whether server `pid` runs in the current configuration and has its
    /// log (is not still pulling it).
    pub fn is_current(&self, pid: NodeId) -> bool {
        self.nodes.get(&pid).is_some_and(|n| {
            n.config.configuration_id == self.config_id
                && n.paxos.as_ref().is_some_and(|p| !p.is_migrating())
        })
    }

    /// Whether server `pid` left the cluster for good.
    #[track_caller]
    pub fn is_retired(&self, pid: NodeId) -> bool {
        self.sim_node(pid).retired
    }

    /// The ids of the running servers, ascending: the current configuration's
    /// and those of older configurations still running (servers that left
    /// but are not retired yet, servers that have not moved on yet).
    pub fn live_ids(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.paxos.is_some())
            .map(|(&p, _)| p)
            .collect()
    }

    /// Whether server `pid` is running.
    #[track_caller]
    pub fn is_up(&self, pid: NodeId) -> bool {
        self.sim_node(pid).paxos.is_some()
    }

    #[track_caller]
    fn sim_node(&self, pid: NodeId) -> &SimNode {
        self.nodes
            .get(&pid)
            .unwrap_or_else(|| panic!("server {pid} is not in the cluster {:?}", self.ids))
    }

    #[track_caller]
    fn sim_node_mut(&mut self, pid: NodeId) -> &mut SimNode {
        let ids = &self.ids;
        self.nodes
            .get_mut(&pid)
            .unwrap_or_else(|| panic!("server {pid} is not in the cluster {ids:?}"))
    }

    /// The most log entries one message carried since the cluster started
    /// or since [`reset_max_entries_per_message`](Self::reset_max_entries_per_message):
    /// log syncs (in promises, decided parts and accept syncs), accepts,
    /// forwarded proposals and pull replies count.
    pub fn max_entries_per_message(&self) -> usize {
        self.max_entries_sent
    }

    /// The most entry bytes, by [`Entry::size_hint`](omnipaxos::storage::Entry::size_hint),
    /// one message carried, counted as
    /// [`max_entries_per_message`](Self::max_entries_per_message) is.
    pub fn max_entry_bytes_per_message(&self) -> usize {
        self.max_entry_bytes_sent
    }

    /// How many messages sent so far carried a snapshot whole although it
    /// splits into several parts ([`Snapshot::into_parts`](omnipaxos::storage::Snapshot::into_parts)
    /// with the servers' `max_message_bytes`): such a snapshot should travel
    /// in parts.
    pub fn whole_snapshots_that_split(&self) -> usize {
        self.whole_split_snapshots
    }

    /// How many crashes so far found a leader's deferred write not synced
    /// and cut its in-memory log back to what was durable (with
    /// `defer_leader_sync`).
    pub fn unsynced_losses(&self) -> u64 {
        self.unsynced_losses
    }

    /// How many crashes so far found a raised decided index written lazily
    /// and not synced (with `defer_leader_sync`), and set the server's
    /// decided index back to what was durable.
    pub fn decided_rollbacks(&self) -> u64 {
        self.decided_rollbacks
    }

    /// How many messages sent so far carried one part of a snapshot (to a
    /// follower or to a joining server).
    pub fn snapshot_parts_sent(&self) -> usize {
        self.snapshot_parts_sent
    }

    /// Starts [`max_entries_per_message`](Self::max_entries_per_message) and
    /// [`max_entry_bytes_per_message`](Self::max_entry_bytes_per_message) over.
    pub fn reset_max_entries_per_message(&mut self) {
        self.max_entries_sent = 0;
        self.max_entry_bytes_sent = 0;
    }

    /// The running server `pid`, to query it. Panics if it is crashed.
    #[track_caller]
    pub fn node(&self, pid: NodeId) -> &OmniPaxos<Value, SharedStorage> {
        self.sim_node(pid)
            .paxos
            .as_ref()
            .unwrap_or_else(|| panic!("server {pid} is crashed"))
    }

    /// The running server `pid`, to call it directly. Panics if it is crashed.
    /// The invariants are checked at the next step.
    #[track_caller]
    pub fn node_mut(&mut self, pid: NodeId) -> &mut OmniPaxos<Value, SharedStorage> {
        self.sim_node_mut(pid)
            .paxos
            .as_mut()
            .unwrap_or_else(|| panic!("server {pid} is crashed"))
    }

    /// Server `pid`'s storage, which is there whether or not the server runs.
    #[track_caller]
    pub fn storage(&self, pid: NodeId) -> &SharedStorage {
        &self.sim_node(pid).storage
    }

    /// Crashes server `pid`: its `OmniPaxos` value and unsent messages are
    /// dropped, as are the messages in flight from or to it. Its storage stays.
    ///
    /// A persistent storage ([`SimStorage::Persistent`](crate::sim::options::SimStorage))
    /// is closed and its directory reopened at once, so that while the server
    /// is down the invariants read what the files give back after the crash.
    #[track_caller]
    pub fn crash(&mut self, pid: NodeId) {
        let node = self.sim_node_mut(pid);
        assert!(node.paxos.is_some(), "server {pid} is already crashed");
        node.paxos = None;
        self.trace(|| format!("crash {pid}"));
        self.went_down(pid);
        self.check_invariants();
    }

    /// What follows server `pid` going down (its instance already gone):
    /// its tracked proposals are forgotten, its messages dropped, injected
    /// storage failures end (the disk was fixed) and its storage is reopened.
    pub(super) fn went_down(&mut self, pid: NodeId) {
        let node = self.sim_node_mut(pid);
        node.storage.clear_write_failures();
        let forgotten = node.tracked.len() as u64;
        node.tracked.clear();
        let lost = node.storage.lose_unsynced();
        self.proposal_counts.forgotten += forgotten;
        if let Some(from) = lost.log_from {
            self.unsynced_losses += 1;
            self.trace(|| format!("{pid} lost its unsynced log from {from}"));
        }
        if let Some(to) = lost.decided_back_to {
            self.decided_rollbacks += 1;
            self.invariants.decided_went_back(pid, to);
            self.trace(|| format!("{pid} lost a lazy decided index: back to {to}"));
        }
        self.network.drop_involving(pid);
        self.reopen_storage(pid);
    }

    /// Makes the next `n` storage writes of server `pid` fail with an I/O
    /// error (a full disk, a failing device): at the first one the server
    /// stops acting, without acknowledging what it could not persist.
    /// [`crash_halted`](Self::crash_halted) then takes it down, as a
    /// supervisor would restart a process whose storage failed; a crash
    /// ends the failures (the disk was fixed).
    pub fn fail_storage_writes(&mut self, pid: NodeId, n: u32) {
        self.trace(|| format!("the next {n} storage writes of {pid} fail"));
        self.sim_node(pid).storage.fail_next_writes(n);
    }

    /// Ends every injected storage failure that has not struck yet (the
    /// disks were fixed): after this, only crashes stop servers.
    pub fn clear_storage_failures(&mut self) {
        for node in self.nodes.values() {
            node.storage.clear_write_failures();
        }
    }

    /// Crashes every running server that stopped after a storage failure
    /// and returns how many it crashed.
    pub fn crash_halted(&mut self) -> u64 {
        let halted: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, n)| {
                n.paxos
                    .as_ref()
                    .is_some_and(|p| p.get_storage_failure().is_some())
            })
            .map(|(&pid, _)| pid)
            .collect();
        for &pid in &halted {
            self.crash(pid);
        }
        halted.len() as u64
    }

    /// Takes running server `pid`'s instance out of the cluster, for a test
    /// that consumes it (`into_new_configuration` with a config of the
    /// test's making, say). The cluster then counts the server as crashed,
    /// as after [`crash`](Self::crash), and can [`restart`](Self::restart)
    /// it from its storage, which the taken instance still writes to.
    #[track_caller]
    pub fn take_node(&mut self, pid: NodeId) -> OmniPaxos<Value, SharedStorage> {
        let node = self.sim_node_mut(pid);
        let paxos = node
            .paxos
            .take()
            .unwrap_or_else(|| panic!("server {pid} is crashed"));
        let forgotten = node.tracked.len() as u64;
        node.tracked.clear();
        self.proposal_counts.forgotten += forgotten;
        self.network.drop_involving(pid);
        self.trace(|| format!("take {pid} out"));
        self.check_invariants();
        paxos
    }

    /// Closes and reopens crashed server `pid`'s storage (a no-op in memory),
    /// failing the run if the files do not give back what was written.
    #[track_caller]
    fn reopen_storage(&mut self, pid: NodeId) {
        if let Err(detail) = self.sim_node(pid).storage.reopen() {
            self.fail(
                "storage_survives_restart",
                &format!("server {pid}: {detail}"),
            );
        }
    }

    /// Restarts crashed server `pid` from its configuration on the storage it
    /// had, and calls `fail_recovery()` on it, as a process does after a crash.
    ///
    /// A persistent storage is first closed and its directory reopened with
    /// `PersistentStorage::open`, so the restarted server recovers from the
    /// files, not from values still in memory.
    ///
    /// The server comes back in the configuration its storage belongs to; a
    /// server that was still pulling the previous configuration's log when it
    /// crashed starts pulling again.
    #[track_caller]
    pub fn restart(&mut self, pid: NodeId) {
        self.restart_built(pid, false);
    }

    /// Restarts crashed server `pid` as [`restart`](Self::restart) does, but
    /// always with plain `OmniPaxosConfig::build`, as a driver that does not
    /// remember that the server was joining would: a storage that records an
    /// unfinished pull must make it pull on by itself (from its new peers).
    #[track_caller]
    pub fn restart_with_plain_build(&mut self, pid: NodeId) {
        self.restart_built(pid, true);
    }

    #[track_caller]
    fn restart_built(&mut self, pid: NodeId, plain: bool) {
        assert!(
            self.sim_node(pid).paxos.is_none(),
            "server {pid} is running; crash it first"
        );
        assert!(!self.sim_node(pid).retired, "server {pid} is retired");
        self.reopen_storage(pid);
        let ask = self.options.joiners_ask_log_len;
        let node = self.sim_node_mut(pid);
        let config = node.config.clone();
        let storage = node.storage.clone();
        let migration = if plain { None } else { node.migration.clone() };
        let mut paxos = match migration {
            Some(m) if ask && !m.sources.is_empty() => {
                config.build_joining_from(storage, m.sources)
            }
            Some(migration) => config.build_joining(storage, migration),
            None => config.build(storage),
        }
        .unwrap_or_else(|e| panic!("rebuilding server {pid} failed: {e}"));
        if !paxos.is_migrating() {
            // A joiner that is still pulling has no state to recover.
            paxos.fail_recovery();
        }
        node.paxos = Some(paxos);
        node.incarnation += 1;
        self.trace(|| format!("restart {pid}"));
        if self.options.call_reconnected {
            for peer in self.live_ids() {
                if peer != pid {
                    self.node_mut(peer).reconnected(pid);
                }
            }
        }
        self.check_invariants();
    }

    /// Sets server `pid`'s leader priority, now and for later restarts.
    #[track_caller]
    pub fn set_priority(&mut self, pid: NodeId, priority: u32) {
        let node = self.sim_node_mut(pid);
        node.config.leader_priority = priority;
        if let Some(paxos) = node.paxos.as_mut() {
            paxos.set_priority(priority);
        }
        self.trace(|| format!("set_priority {pid} {priority}"));
        self.check_invariants();
    }

    /// Asks server `pid` to try to take over leadership.
    #[track_caller]
    pub fn try_become_leader(&mut self, pid: NodeId) {
        self.node_mut(pid).try_become_leader();
        self.trace(|| format!("try_become_leader {pid}"));
        self.check_invariants();
    }

    // ----- proposals --------------------------------------------------------

    /// A value no one has proposed yet.
    pub fn next_value(&mut self) -> Value {
        let value = Value(self.next_value);
        self.next_value += 1;
        value
    }

    /// Appends `value` at server `pid` and returns what `append` returned.
    /// A value `append` takes is recorded as proposed, for the validity check;
    /// proposing a recorded value again is a bug in the test and panics.
    #[track_caller]
    pub fn propose(&mut self, pid: NodeId, value: Value) -> Result<(), ProposeErr<Value>> {
        assert!(
            !self.invariants.was_proposed(&value),
            "{value:?} was proposed before; values must be unique (use next_value)"
        );
        self.next_value = self.next_value.max(value.0 + 1);
        let result = self.node_mut(pid).append_tracked(value);
        self.trace(|| format!("propose {value:?} at {pid}: {result:?}"));
        if let Ok(id) = result {
            self.invariants.record_proposal(value);
            self.sim_node_mut(pid).tracked.insert(id, value);
            self.proposal_counts.taken += 1;
        } else {
            self.proposal_counts.refused += 1;
        }
        self.check_invariants();
        result.map(|_| ())
    }

    /// Proposes a fresh value at server `pid` and returns it; panics if
    /// `append` refuses it.
    #[track_caller]
    pub fn propose_new(&mut self, pid: NodeId) -> Value {
        let value = self.next_value();
        if let Err(e) = self.propose(pid, value) {
            panic!("server {pid} refused {value:?}: {e}");
        }
        value
    }

    // ----- observations -----------------------------------------------------

    /// How the run's proposals fared so far.
    pub fn proposal_counts(&self) -> ProposalCounts {
        self.proposal_counts
    }

    /// The running servers of the current configuration.
    fn current_servers(&self) -> impl Iterator<Item = (NodeId, &OmniPaxos<Value, SharedStorage>)> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.config.configuration_id == self.config_id)
            .filter_map(|(&pid, n)| n.paxos.as_ref().map(|p| (pid, p)))
    }

    /// A running server of the current configuration that leads
    /// (`is_leader()`); if several believe they do, the one with the highest
    /// ballot.
    pub fn leader(&self) -> Option<NodeId> {
        self.current_servers()
            .filter(|(_, p)| p.is_leader())
            .max_by_key(|(_, p)| p.get_promise())
            .map(|(pid, _)| pid)
    }

    /// Every server of the cluster but `pid`, in the order the cluster was created with.
    pub fn others(&self, pid: NodeId) -> Vec<NodeId> {
        self.ids().iter().copied().filter(|&p| p != pid).collect()
    }

    /// The leader, if every running server of the current configuration
    /// (joiners that still pull excepted) also names it as its current leader.
    pub fn agreed_leader(&self) -> Option<NodeId> {
        let leader = self.leader()?;
        self.current_servers()
            .filter(|(_, p)| !p.is_migrating())
            .all(|(_, p)| p.get_current_leader() == Some(leader))
            .then_some(leader)
    }

    /// Steps until every running server of the current configuration agrees
    /// on one leader that leads, and returns it. Panics after `max_ticks` steps.
    #[track_caller]
    pub fn wait_for_leader(&mut self, max_ticks: u64) -> NodeId {
        self.run_until(|c| c.agreed_leader().is_some(), max_ticks);
        self.agreed_leader()
            .expect("run_until returned, so the leader is agreed")
    }

    /// Server `pid`'s decided index: from the running server, or from its
    /// storage while it is crashed.
    #[track_caller]
    pub fn decided_idx(&self, pid: NodeId) -> u64 {
        let node = self.sim_node(pid);
        match &node.paxos {
            Some(paxos) => paxos.get_decided_idx(),
            None => node.storage.decided_idx(),
        }
    }

    /// Server `pid`'s decided entries, read through `read_entries` (or from
    /// its storage while it is crashed). Reads the whole decided log: for
    /// assertions, not for predicates polled every tick.
    ///
    /// A prefix the server holds only as a snapshot (it compacted, or caught
    /// up from a snapshot) is filled in from the cluster's decided log, after
    /// checking that the snapshot is exactly the snapshot of that prefix.
    #[track_caller]
    pub fn decided_entries(&self, pid: NodeId) -> Vec<Value> {
        let node = self.sim_node(pid);
        let decided = self.decided_idx(pid);
        let Some(paxos) = &node.paxos else {
            return node.storage.entries(0, decided);
        };
        if decided == 0 {
            return Vec::new();
        }
        let mut values = Vec::with_capacity(decided as usize);
        for entry in paxos
            .read_entries(0..decided)
            .unwrap_or_else(|| panic!("server {pid} cannot read its decided log 0..{decided}"))
        {
            match entry {
                LogEntry::Decided(v) => values.push(v),
                LogEntry::Snapshotted(s) => {
                    let prefix = &self.decided_log()[..s.trimmed_idx as usize];
                    assert_eq!(
                        s.snapshot,
                        ValueSnapshot::of(prefix),
                        "server {pid}'s snapshot of 0..{} is not the decided prefix",
                        s.trimmed_idx
                    );
                    values.extend_from_slice(prefix);
                }
                // The stop-sign that ends an old configuration's log.
                LogEntry::StopSign(_, true) => {}
                other => panic!("server {pid} reads {other:?} below its decided index {decided}"),
            }
        }
        values
    }

    /// The cluster-wide decided log the invariants keep: index `i` holds what
    /// every server that decided `i` decided there.
    pub fn decided_log(&self) -> &[Value] {
        self.invariants.decided_log()
    }

    /// Whether server `pid` has decided `value`. Cheap: answered from the
    /// cluster-wide record and the server's decided index.
    #[track_caller]
    pub fn is_decided(&self, pid: NodeId, value: &Value) -> bool {
        self.invariants
            .decided_index_of(value)
            .is_some_and(|idx| self.decided_idx(pid) > idx)
    }

    /// Whether any server has decided `value`.
    pub fn decided_by_any(&self, value: &Value) -> bool {
        self.invariants.decided_index_of(value).is_some()
    }

    /// Whether every running server of the current configuration has decided
    /// `value` (servers still in an older configuration cannot).
    pub fn all_live_decided(&self, value: &Value) -> bool {
        self.current_servers()
            .all(|(p, _)| self.is_decided(p, value))
    }

    /// How many times `value` appears in server `pid`'s decided log.
    #[track_caller]
    pub fn count_decided(&self, pid: NodeId, value: &Value) -> usize {
        self.decided_entries(pid)
            .iter()
            .filter(|&v| v == value)
            .count()
    }

    /// One line per server with what a reader of a failed run wants first:
    /// up or down, role and phase, the leader it follows, its ballots and
    /// indices, and which links are cut.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "  configuration {} {:?} since tick {}\n",
            self.config_id, self.ids, self.config_started_at
        ));
        for (&pid, node) in &self.nodes {
            let config = node.config.configuration_id;
            if node.retired {
                out.push_str(&format!(
                    "  server {pid}: RETIRED from configuration {config}\n"
                ));
                continue;
            }
            let line = match &node.paxos {
                Some(paxos) if paxos.is_migrating() => format!(
                    "  server {pid} (config {config}): MIGRATING for {:?} ticks",
                    paxos.get_migration_ticks()
                ),
                None => format!(
                    "  server {pid}: CRASHED, stored promise {:?}, stored decided idx {}",
                    node.storage.promise(),
                    node.storage.decided_idx()
                ),
                Some(paxos) => {
                    let ui = paxos.get_ui_states();
                    format!(
                        "  server {pid} (config {config}): {:?}/{:?}{} follows {:?}, ble ballot {:?}, promise {:?}, \
                         accepted round {:?}, decided {} of {}, quorum-connected {}",
                        ui.role,
                        ui.phase,
                        if paxos.is_leader() {
                            " (is_leader)"
                        } else {
                            ""
                        },
                        ui.current_leader,
                        ui.current_ballot,
                        ui.promise,
                        ui.accepted_round,
                        ui.decided_idx,
                        ui.accepted_idx,
                        ui.quorum_connected
                    )
                }
            };
            out.push_str(&line);
            out.push('\n');
        }
        let cut: Vec<String> = self
            .network
            .cut_links()
            .map(|(a, b)| format!("{a}->{b}"))
            .collect();
        out.push_str(&format!(
            "  cut links: [{}]; {} messages in flight; {:?}",
            cut.join(", "),
            self.network.in_flight(),
            self.network.stats()
        ));
        out
    }

    /// The network, to inspect links and counters.
    pub fn network(&self) -> &Network {
        &self.network
    }
}

/// The write quorum of a configuration of `n` servers: a majority, or the
/// flexible write quorum the options set.
fn write_quorum(options: &SimOptions, n: usize) -> usize {
    options
        .flexible_quorum
        .map_or(n / 2 + 1, |fq| fq.write_quorum_size)
}

impl Drop for SimCluster {
    /// When a test assertion (not the simulator) fails, still say which seed
    /// and tick the cluster was at and how to replay the run.
    fn drop(&mut self) {
        if std::thread::panicking() && !self.reported.get() {
            eprintln!(
                "[sim] test failed at tick {} (seed {}); replay: {}",
                self.now,
                self.options.seed,
                self.replay_command()
            );
        }
    }
}

/// What snapshot a message carries ([`snapshot_carried`]).
enum Carried {
    Nothing,
    /// A snapshot whole; `splits`: whether it splits into several parts.
    Whole {
        splits: bool,
    },
    /// One part of a snapshot.
    Part,
}

fn snapshot_carried(m: &Message<Value>, max_bytes: usize) -> Carried {
    use omnipaxos::messages::{PaxosMessage, PaxosMsg, SnapshotType};
    use omnipaxos::storage::Snapshot;
    let Message::SequencePaxos(PaxosMessage { msg, .. }) = m else {
        return Carried::Nothing;
    };
    let of_sync = |s: &omnipaxos::messages::LogSync<Value>| match &s.decided_snapshot {
        Some(SnapshotType::Complete(s) | SnapshotType::Delta { snapshot: s, .. }) => Some(*s),
        None => None,
    };
    let whole = match msg {
        PaxosMsg::AcceptSync(s) => of_sync(&s.log_sync),
        PaxosMsg::DecidedSync(s) => of_sync(&s.log_sync),
        PaxosMsg::Promise(p) => p.log_sync.as_ref().and_then(of_sync),
        PaxosMsg::PullLogReply(r) => r.snapshot,
        PaxosMsg::SnapshotPart(_) | PaxosMsg::PullSnapshotPart(_) => return Carried::Part,
        _ => None,
    };
    match whole {
        Some(s) => Carried::Whole {
            splits: s.into_parts(max_bytes).len() > 1,
        },
        None => Carried::Nothing,
    }
}

/// How many log entries `m` carries, and their bytes by `Entry::size_hint`.
fn entries_carried(m: &Message<Value>) -> (usize, usize) {
    use omnipaxos::messages::{PaxosMessage, PaxosMsg};
    use omnipaxos::storage::Entry;
    let entries: &[Value] = match m {
        Message::SequencePaxos(PaxosMessage { msg, .. }) => match msg {
            PaxosMsg::AcceptSync(s) => &s.log_sync.suffix,
            PaxosMsg::DecidedSync(s) => &s.log_sync.suffix,
            PaxosMsg::Promise(p) => p.log_sync.as_ref().map_or(&[], |s| &s.suffix),
            PaxosMsg::AcceptDecide(a) => &a.entries,
            PaxosMsg::PullLogReply(r) => &r.entries,
            PaxosMsg::ProposalForward(f) => &f.entries,
            _ => &[],
        },
        Message::BLE(_) => &[],
    };
    (entries.len(), entries.iter().map(Entry::size_hint).sum())
}
