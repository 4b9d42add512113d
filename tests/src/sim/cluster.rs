//! [`SimCluster`]: N servers, one network, one clock, one seed.

use crate::{
    invariants::{ConfigHistory, Invariants, NodeView, Violation},
    sim::{
        network::{Fate, Network},
        options::SimOptions,
        storage::SharedStorage,
        value::{Value, ValueSnapshot},
    },
};
use omnipaxos::{
    Migration, OmniPaxos, OmniPaxosConfig, ProposalId, ProposeErr, ReconfigurationRequest,
    messages::Message,
    util::{ConfigurationId, LogEntry, NodeId, StopSign},
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::{
    cell::Cell,
    collections::{BTreeMap, HashMap},
};

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
    /// Whether to print a line per delivered message and per command.
    trace: bool,
    /// Set once the simulator itself reported a failure, so that `Drop` does
    /// not print the replay line a second time.
    reported: Cell<bool>,
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
                let node = SimNode {
                    config,
                    migration: None,
                    generation: 0,
                    past_storages: Vec::new(),
                    retired: false,
                    storage,
                    paxos: Some(paxos),
                    tracked: HashMap::new(),
                    incarnation: 0,
                };
                (pid, node)
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
            outbox: Vec::new(),
            max_entries_sent: 0,
            max_entry_bytes_sent: 0,
            reported: Cell::new(false),
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
            match self.nodes.get_mut(&to).and_then(|n| n.paxos.as_mut()) {
                Some(paxos) => paxos.handle_incoming(msg),
                None => self.network.note_undeliverable(),
            }
        }
        self.check_invariants();
    }

    /// Moves every running server's outgoing messages into the network,
    /// after checking that each is addressed sensibly.
    fn collect_outgoing(&mut self) {
        let mut outbox = std::mem::take(&mut self.outbox);
        let live = self.live_ids();
        for &pid in &live {
            let start = outbox.len();
            self.node_mut(pid).take_outgoing_messages(&mut outbox);
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
    /// log syncs, accepts and pull replies count.
    pub fn max_entries_per_message(&self) -> usize {
        self.max_entries_sent
    }

    /// The most entry bytes, by [`Entry::size_hint`](omnipaxos::storage::Entry::size_hint),
    /// one message carried, counted as
    /// [`max_entries_per_message`](Self::max_entries_per_message) is.
    pub fn max_entry_bytes_per_message(&self) -> usize {
        self.max_entry_bytes_sent
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
        node.tracked.clear();
        self.network.drop_involving(pid);
        self.trace(|| format!("crash {pid}"));
        self.reopen_storage(pid);
        self.check_invariants();
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

    // ----- links ------------------------------------------------------------

    /// Cuts the link from `from` to `to` one way: what `from` sends to `to`
    /// is lost, including what is already in flight; the reverse still works.
    #[track_caller]
    pub fn cut(&mut self, from: NodeId, to: NodeId) {
        self.assert_link(from, to);
        self.network.cut(from, to);
        self.trace(|| format!("cut {from} -> {to}"));
    }

    /// Cuts the link between `a` and `b` both ways.
    #[track_caller]
    pub fn cut_both(&mut self, a: NodeId, b: NodeId) {
        self.cut(a, b);
        self.cut(b, a);
    }

    /// Cuts every link from and to `pid` (to every server the cluster ever
    /// had). The server keeps running.
    #[track_caller]
    pub fn isolate(&mut self, pid: NodeId) {
        for peer in self.all_ids() {
            if peer != pid {
                self.cut_both(pid, peer);
            }
        }
    }

    /// Restores the link between `a` and `b`, both ways (use
    /// [`heal_one_way`](Self::heal_one_way) to undo a single [`cut`](Self::cut)).
    #[track_caller]
    pub fn heal(&mut self, a: NodeId, b: NodeId) {
        self.assert_link(a, b);
        let mut healed = Vec::new();
        for (x, y) in [(a, b), (b, a)] {
            if self.network.heal(x, y) {
                healed.push((x, y));
            }
        }
        self.trace(|| format!("heal {healed:?}"));
        self.notify_reconnected(&healed);
    }

    /// Restores the link from `from` to `to` only.
    #[track_caller]
    pub fn heal_one_way(&mut self, from: NodeId, to: NodeId) {
        self.assert_link(from, to);
        if self.network.heal(from, to) {
            self.trace(|| format!("heal {from} -> {to}"));
            self.notify_reconnected(&[(from, to)]);
        }
    }

    /// Restores every link from and to `pid`.
    #[track_caller]
    pub fn heal_node(&mut self, pid: NodeId) {
        for peer in self.all_ids() {
            if peer != pid {
                self.heal(pid, peer);
            }
        }
    }

    /// Restores every link.
    pub fn heal_all(&mut self) {
        let healed = self.network.heal_all();
        self.trace(|| format!("heal {healed:?}"));
        self.notify_reconnected(&healed);
    }

    /// Makes the listed links, both ways, the only ones up: every other pair of
    /// servers is cut both ways. Builds the partial partitions of the
    /// Omni-Paxos paper in one call.
    #[track_caller]
    pub fn only_links(&mut self, links: &[(NodeId, NodeId)]) {
        for &(a, b) in links {
            self.assert_link(a, b);
        }
        self.heal_all();
        for (i, &a) in self.ids.clone().iter().enumerate() {
            for &b in &self.ids.clone()[i + 1..] {
                if !links.contains(&(a, b)) && !links.contains(&(b, a)) {
                    self.cut_both(a, b);
                }
            }
        }
    }

    #[track_caller]
    fn assert_link(&self, a: NodeId, b: NodeId) {
        assert!(
            self.nodes.contains_key(&a) && self.nodes.contains_key(&b) && a != b,
            "({a}, {b}) is not a link between two servers of {:?}",
            self.all_ids()
        );
    }

    /// Every server the cluster ever had, in any configuration, ascending.
    pub fn all_ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    /// Tells both ends of each healed link, if the options ask for it.
    fn notify_reconnected(&mut self, healed: &[(NodeId, NodeId)]) {
        if !self.options.call_reconnected {
            return;
        }
        for &(a, b) in healed {
            for (me, peer) in [(a, b), (b, a)] {
                if let Some(paxos) = self.nodes.get_mut(&me).and_then(|n| n.paxos.as_mut()) {
                    paxos.reconnected(peer);
                }
            }
        }
    }

    // ----- reconfiguration --------------------------------------------------

    /// Asks server `at` to end the current configuration and continue the log
    /// with the servers `members` (see `OmniPaxos::reconfigure`), and returns
    /// what it answered.
    ///
    /// The rest happens as the cluster steps, as an operator would do it:
    ///
    /// * when a server's configuration has a decided stop-sign, the next
    ///   configuration begins (once, at the stop-sign's index `L`): every new
    ///   id gets a server with a fresh storage of the run's kind, built with
    ///   `build_joining` to pull `0..L` from the old configuration's servers;
    /// * each server that stays moves on with `into_new_configuration` on its
    ///   own storage as soon as it has decided the stop-sign;
    /// * a server that leaves keeps running its old instance, so that joiners
    ///   can pull from it, until every server of the new configuration is in
    ///   it with its log and the new configuration decided an entry; then it
    ///   is retired for good (its storage stays for the invariants);
    /// * a server of the new configuration that missed the decision of its
    ///   old configuration's stop-sign learns it from the servers that moved
    ///   on (they answer its old configuration's messages), and moves on as
    ///   soon as it knows, pulling whatever part of the old log it lacks
    ///   (`get_migration` says what, for a restart meanwhile).
    ///
    /// What the servers of a configuration know of the previous one's end is
    /// persisted (`Storage::set_previous_configuration_end`), so restarts do
    /// not keep a straggler from being told. Only the end of the configuration
    /// right before a server's own is kept: a straggler two or more
    /// configurations behind has nobody to tell it, and only an operator can
    /// help it ([`rejoin_stragglers_afresh`](Self::rejoin_stragglers_afresh)).
    /// The soak never gets there: it reconfigures only once every server is
    /// in the current configuration.
    ///
    /// New servers need ids the cluster never had; a server that left cannot
    /// come back (its storage belongs to an old configuration).
    #[track_caller]
    pub fn reconfigure(&mut self, at: NodeId, members: &[NodeId]) -> Result<(), ProposeErr<Value>> {
        for pid in members {
            assert!(
                self.ids.contains(pid) || !self.nodes.contains_key(pid),
                "server {pid} was in an earlier configuration; new servers need fresh ids"
            );
        }
        let rc = ReconfigurationRequest::with(members.to_vec(), None);
        let result = self.node_mut(at).reconfigure(rc);
        self.trace(|| format!("reconfigure at {at} to {members:?}: {result:?}"));
        if result.is_ok() {
            let mut members = members.to_vec();
            members.sort_unstable();
            self.requested = Some(members);
        }
        self.check_invariants();
        result
    }

    /// Every configuration of the run so far: members, where each starts,
    /// and the stop-sign that ended it.
    pub fn configurations(&self) -> &ConfigHistory {
        self.invariants.configurations()
    }

    /// The servers of the next configuration, if a server of the current
    /// one took a request for one ([`reconfigure`](Self::reconfigure)
    /// returned `Ok`), sorted. The request may still be lost (its server
    /// crashes before the stop-sign is in the log).
    pub fn requested_configuration(&self) -> Option<&[NodeId]> {
        self.requested.as_deref()
    }

    /// Moves servers whose configuration ended on to the next one and retires
    /// servers that left once nobody needs them (see
    /// [`reconfigure`](Self::reconfigure)).
    fn advance_configurations(&mut self) {
        let ended: Vec<(NodeId, StopSign)> = self
            .nodes
            .iter()
            .filter_map(|(&pid, n)| {
                let ss = n.paxos.as_ref()?.is_reconfigured()?;
                (ss.config_id == n.config.configuration_id + 1).then_some((pid, ss))
            })
            .collect();
        for (pid, ss) in ended {
            if ss.config_id > self.config_id {
                self.begin_configuration(&ss);
            }
            if ss.nodes.contains(&pid) && ss.config_id == self.config_id {
                self.move_on(pid, ss.config_id);
            }
        }
        self.retire_leavers();
    }

    /// Starts configuration `ss.config_id`, ending the current one.
    fn begin_configuration(&mut self, ss: &StopSign) {
        if ss.config_id != self.config_id + 1 {
            self.fail(
                "reconfiguration",
                &format!(
                    "a stop-sign of configuration {} names configuration {}",
                    self.config_id, ss.config_id
                ),
            );
        }
        if self
            .invariants
            .configurations()
            .stop_idx(self.config_id)
            .is_none()
        {
            // Decided without a check in between (a test calling a server
            // directly): record the stop-sign before the servers move on.
            self.check_invariants();
        }
        let log_len = self
            .invariants
            .configurations()
            .stop_idx(self.config_id)
            .expect("the check above records a decided stop-sign");
        let mut members = ss.nodes.clone();
        members.sort_unstable();
        if let Some(old) = members
            .iter()
            .find(|p| self.nodes.contains_key(p) && !self.ids.contains(p))
        {
            let detail = format!("server {old} left an earlier configuration and cannot come back");
            self.fail("reconfiguration", &detail);
        }
        self.invariants.add_configuration(
            ss.config_id,
            &members,
            write_quorum(&self.options, members.len()),
        );
        self.previous_ids = std::mem::replace(&mut self.ids, members.clone());
        self.config_id = ss.config_id;
        self.config_started_at = self.now;
        self.requested = None;
        self.trace(|| {
            format!(
                "configuration {} {members:?} begins at index {log_len}",
                ss.config_id
            )
        });
        let sources = self.previous_ids.clone();
        for &pid in &members {
            if !self.nodes.contains_key(&pid) {
                let node = self.joiner(
                    pid,
                    Migration {
                        log_len,
                        sources: sources.clone(),
                    },
                    0,
                    Vec::new(),
                );
                self.nodes.insert(pid, node);
            }
        }
    }

    /// A new server `pid` of the current configuration, on an empty storage,
    /// pulling the log as `migration` says.
    fn joiner(
        &self,
        pid: NodeId,
        migration: Migration,
        generation: u32,
        past_storages: Vec<SharedStorage>,
    ) -> SimNode {
        let config = self.options.config_in(self.config_id, pid, &self.ids);
        let storage = SharedStorage::of_kind(self.options.storage);
        let built = if self.options.joiners_ask_log_len && !migration.sources.is_empty() {
            config
                .clone()
                .build_joining_from(storage.clone(), migration.sources.clone())
        } else {
            config
                .clone()
                .build_joining(storage.clone(), migration.clone())
        };
        let paxos = built.unwrap_or_else(|e| {
            panic!(
                "server {pid} cannot join configuration {}: {e}",
                self.config_id
            )
        });
        SimNode {
            config,
            migration: Some(migration),
            generation,
            past_storages,
            retired: false,
            storage,
            paxos: Some(paxos),
            tracked: HashMap::new(),
            incarnation: 0,
        }
    }

    /// Moves running server `pid`, whose configuration decided its stop-sign,
    /// on to configuration `config_id` on its own storage.
    fn move_on(&mut self, pid: NodeId, config_id: ConfigurationId) {
        let members = if config_id == self.config_id {
            self.ids.clone()
        } else {
            // Only the newest configuration can be reached from here: older
            // ones began long ago, so an earlier stop-sign was moved on from.
            self.fail(
                "reconfiguration",
                &format!(
                    "server {pid} would move on to configuration {config_id}, not the current {}",
                    self.config_id
                ),
            );
        };
        let mut config = self.options.config_in(config_id, pid, &members);
        let node = self.sim_node_mut(pid);
        config.leader_priority = node.config.leader_priority;
        let old = node.paxos.take().expect("only running servers move on");
        match old.into_new_configuration(config.clone()) {
            Ok(paxos) => {
                // A server that missed part of the old log pulls it first;
                // a restart meanwhile must pull again.
                node.migration = paxos.get_migration();
                node.paxos = Some(paxos);
                node.config = config;
            }
            Err(e) => {
                let detail =
                    format!("server {pid} cannot move on to configuration {config_id}: {e}");
                self.fail("reconfiguration", &detail);
            }
        }
        self.trace(|| format!("server {pid} moves on to configuration {config_id}"));
    }

    /// What an operator does for a server of the current configuration that
    /// is still in an older one and that nobody can tell of its end (more
    /// than one configuration behind, see [`reconfigure`](Self::reconfigure)): it wipes the server's storage and
    /// has it join afresh with `build_joining`, pulling the log from the
    /// servers that have it. The server's proposals are lost with its state,
    /// as in a crash. Returns the servers rejoined.
    pub fn rejoin_stragglers_afresh(&mut self) -> Vec<NodeId> {
        let stragglers: Vec<NodeId> = self
            .ids
            .iter()
            .copied()
            .filter(|p| {
                let n = &self.nodes[p];
                n.paxos.is_some() && n.config.configuration_id < self.config_id
            })
            .collect();
        let mut rejoined = Vec::new();
        for pid in stragglers {
            let log_len = self
                .invariants
                .configurations()
                .get(self.config_id)
                .expect("the current configuration is recorded")
                .start;
            // Whoever has the log: servers of the current configuration
            // first, then the old ones still running.
            let mut sources: Vec<NodeId> = self
                .ids
                .iter()
                .copied()
                .filter(|&p| p != pid && self.is_current(p))
                .collect();
            let old_ones: Vec<NodeId> = self
                .previous_ids
                .iter()
                .copied()
                .filter(|&p| p != pid && !sources.contains(&p) && !self.nodes[&p].retired)
                .collect();
            sources.extend(old_ones);
            if sources.is_empty() {
                continue;
            }
            rejoined.push(pid);
            self.network.drop_involving(pid);
            let old = self.nodes.remove(&pid).expect("a straggler is a server");
            let mut past = old.past_storages;
            past.push(old.storage);
            let node = self.joiner(
                pid,
                Migration { log_len, sources },
                old.generation + 1,
                past,
            );
            self.nodes.insert(pid, node);
            self.trace(|| {
                format!("server {pid} missed the end of its configuration; rejoins afresh")
            });
        }
        self.check_invariants();
        rejoined
    }

    /// Retires the servers that left, once every server of the current
    /// configuration is in it with its log and it decided an entry.
    fn retire_leavers(&mut self) {
        let leavers: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(p, n)| !n.retired && !self.ids.contains(p))
            .map(|(&p, _)| p)
            .collect();
        if leavers.is_empty() {
            return;
        }
        let start = self
            .invariants
            .configurations()
            .get(self.config_id)
            .expect("the current configuration is recorded")
            .start;
        let all_in = self.ids.iter().all(|p| {
            let n = &self.nodes[p];
            n.config.configuration_id == self.config_id
                && match &n.paxos {
                    Some(paxos) => !paxos.is_migrating(),
                    None => n.storage.decided_idx() >= start,
                }
        });
        let decided_new = self
            .current_servers()
            .any(|(_, p)| p.get_decided_idx() > start);
        if !(all_in && decided_new) {
            return;
        }
        for pid in leavers {
            let node = self.sim_node_mut(pid);
            node.paxos = None;
            node.tracked.clear();
            node.retired = true;
            self.network.drop_involving(pid);
            self.trace(|| format!("server {pid} left and is retired"));
        }
    }

    // ----- checking and failing ---------------------------------------------

    /// Runs every invariant now; panics on a violation.
    pub fn check_invariants(&mut self) {
        let views: Vec<NodeView<'_>> = self
            .nodes
            .iter()
            .map(|(&pid, n)| NodeView {
                pid,
                paxos: n.paxos.as_ref(),
                storage: &n.storage,
                incarnation: n.incarnation,
                config_id: n.config.configuration_id,
                generation: n.generation,
                past_storages: &n.past_storages,
            })
            .collect();
        let result = self.invariants.check(&views);
        drop(views);
        if let Err(Violation { property, detail }) = result {
            self.fail(property, &detail);
        }
        self.check_decided_proposals();
        if std::env::var_os("SIM_ROUND_CHECK").is_some() {
            self.check_same_round_logs_agree();
        }
    }

    /// Debugging aid (`SIM_ROUND_CHECK=1`): two running servers of one
    /// configuration whose logs were accepted in the same round hold
    /// prefixes of that round's leader log, so they agree where both have
    /// entries. Costs a pass over every pair of logs at every step.
    fn check_same_round_logs_agree(&self) {
        let mut logs = Vec::new();
        for (&pid, node) in &self.nodes {
            if node.paxos.is_none() {
                continue;
            }
            let (round, len, compacted) = node.storage.with(|s| {
                (
                    s.get_accepted_round().ok().flatten(),
                    s.get_log_len().unwrap_or(0),
                    s.get_compacted_idx().unwrap_or(0),
                )
            });
            let Some(round) = round else { continue };
            logs.push((pid, node.config.configuration_id, round, compacted, len));
        }
        for (i, a) in logs.iter().enumerate() {
            for b in &logs[i + 1..] {
                if a.1 != b.1 || a.2 != b.2 {
                    continue;
                }
                for idx in a.3.max(b.3)..a.4.min(b.4) {
                    let (x, y) = (
                        self.nodes[&a.0].storage.entry_at(idx),
                        self.nodes[&b.0].storage.entry_at(idx),
                    );
                    if x != y {
                        self.fail(
                            "same_round_logs_agree",
                            &format!(
                                "servers {} and {} both accepted in {:?} but hold {x:?} and {y:?} at {idx}",
                                a.0, b.0, a.2
                            ),
                        );
                    }
                }
            }
        }
    }

    /// Checks what each server reports of its tracked proposals: a proposal
    /// is reported once, at an index where the cluster decided it.
    fn check_decided_proposals(&mut self) {
        let mut buf = Vec::new();
        let mut failure = None;
        for (&pid, node) in &mut self.nodes {
            let Some(paxos) = node.paxos.as_mut() else {
                continue;
            };
            paxos.take_decided_proposals(&mut buf);
            for (id, idx) in buf.drain(..) {
                let Some(value) = node.tracked.remove(&id) else {
                    failure = Some(format!(
                        "server {pid} reported {id:?} (at {idx}), which it never took or reported before"
                    ));
                    continue;
                };
                let decided = usize::try_from(idx)
                    .ok()
                    .and_then(|i| self.invariants.decided_log().get(i));
                if decided != Some(&value) {
                    failure = Some(format!(
                        "server {pid} reported {value:?} decided at {idx}, where the cluster decided {decided:?}"
                    ));
                }
            }
        }
        if let Some(detail) = failure {
            self.fail("decided_proposal_reported_at_its_index", &detail);
        }
    }

    /// The proposals that running servers of the current configuration took
    /// with `append_tracked` and have not reported as decided, as
    /// `(server, value)`.
    pub fn unreported_proposals(&self) -> Vec<(NodeId, Value)> {
        let mut out: Vec<(NodeId, Value)> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.config.configuration_id == self.config_id)
            .flat_map(|(&pid, n)| n.tracked.values().map(move |&v| (pid, v)))
            .collect();
        out.sort_unstable_by_key(|&(pid, v)| (pid, v.0));
        out
    }

    /// The one-line command that reruns this test.
    pub fn replay_command(&self) -> String {
        if let Some(cmd) = &self.options.replay_command {
            return cmd.clone();
        }
        let test = std::thread::current()
            .name()
            .unwrap_or("<test name>")
            .to_owned();
        // Test binaries are named `<target>-<hash>`.
        let target = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .map(|stem| match stem.rsplit_once('-') {
                Some((name, _hash)) => name.to_owned(),
                None => stem,
            })
            .unwrap_or_else(|| "<test file>".to_owned());
        let selector = if target == "omnipaxos_tests" {
            "--lib".to_owned()
        } else {
            format!("--test {target}")
        };
        format!("cargo test -p omnipaxos_tests {selector} -- --exact {test}")
    }

    /// Panics with `what` went wrong, the tick, the seed and the replay command.
    #[track_caller]
    fn fail(&self, property: &str, detail: &str) -> ! {
        self.reported.set(true);
        panic!(
            "[sim] `{property}` failed at tick {} (seed {}): {detail}\n[sim] replay: {}",
            self.now,
            self.options.seed,
            self.replay_command()
        );
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

/// How many log entries `m` carries, and their bytes by `Entry::size_hint`.
fn entries_carried(m: &Message<Value>) -> (usize, usize) {
    use omnipaxos::messages::{PaxosMessage, PaxosMsg};
    use omnipaxos::storage::Entry;
    let entries: &[Value] = match m {
        Message::SequencePaxos(PaxosMessage { msg, .. }) => match msg {
            PaxosMsg::AcceptSync(s) => &s.log_sync.suffix,
            PaxosMsg::AcceptDecide(a) => &a.entries,
            PaxosMsg::PullLogReply(r) => &r.entries,
            _ => &[],
        },
        Message::BLE(_) => &[],
    };
    (entries.len(), entries.iter().map(Entry::size_hint).sum())
}
