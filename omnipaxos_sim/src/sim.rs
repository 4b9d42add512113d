//! [`Sim`]: N servers, one network, one clock, one seed.

use crate::{
    Faults, ProposeError, SimBuilder, SimError,
    network::{Network, NetworkStats},
    record::Record,
};
use omnipaxos::{
    OmniPaxos, OmniPaxosConfig, ProposalId,
    messages::Message,
    storage::{Entry, Storage},
    util::NodeId,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::{
    collections::{BTreeMap, HashMap},
    fmt::Debug,
};

/// Makes a server's storage: see [`SimBuilder::storage`].
pub(crate) type StorageFactory<S> = Box<dyn FnMut(NodeId) -> S>;
/// Reopens a kept storage on restart: see [`SimBuilder::on_restart`].
pub(crate) type RestartHook<S> = Box<dyn FnMut(NodeId, S) -> S>;
/// Adjusts a server's config: see [`SimBuilder::config`].
pub(crate) type ConfigHook = Box<dyn FnMut(NodeId, &mut OmniPaxosConfig)>;
/// Applies a decided entry to a replica: see [`SimBuilder::state_machine`].
pub(crate) type Apply<T, M> = Box<dyn Fn(&mut M, &T)>;
/// The user's check of a replica: see [`SimBuilder::state_invariant`].
pub(crate) type StateCheck<M> = Box<dyn Fn(&M) -> Result<(), String>>;

/// Whether a simulated server runs.
pub(crate) enum Life<T: Entry, S: Storage<T>> {
    /// Running. Boxed: an `OmniPaxos` is large, a crashed server small.
    Running(Box<OmniPaxos<T, S>>),
    /// Crashed, with the storage it left (`None` once it was lost).
    Crashed(Option<S>),
}

/// One simulated server: what outlives a crash (config, storage) and what
/// the checks keep about it.
pub(crate) struct Server<T: Entry, S: Storage<T>, M> {
    /// What the server is built from, again at every restart.
    pub(crate) config: OmniPaxosConfig,
    /// The running protocol instance, or the storage of a crashed one.
    pub(crate) life: Life<T, S>,
    /// The server's replica of the user's state machine: the first
    /// `applied` decided entries of its log, applied in order.
    pub(crate) replica: M,
    /// How many of the server's decided entries `replica` has applied.
    pub(crate) applied: u64,
    /// The highest decided index the server reported on its current
    /// storage, for the check that it never goes down.
    pub(crate) max_decided: u64,
    /// What this server's `append_tracked` took and has not reported as
    /// decided yet. A crash forgets it, as the server forgets the ids.
    pub(crate) tracked: HashMap<ProposalId, T>,
}

/// The user's hooks, kept apart from the servers so that both can be
/// borrowed at once.
pub(crate) struct Hooks<T, S, M> {
    pub(crate) storage: StorageFactory<S>,
    pub(crate) on_restart: Option<RestartHook<S>>,
    pub(crate) apply: Apply<T, M>,
    pub(crate) state_invariant: Option<StateCheck<M>>,
}

/// A cluster of `OmniPaxos` servers on your entry type `T`, your storage
/// `S` and (optionally) your state machine `M`, driven tick by tick in one
/// thread by a seeded network, with the safety properties checked after
/// every step.
///
/// See the [crate documentation](crate) for a tour; build one with
/// [`Sim::builder`].
///
/// Time is counted in ticks: each [`step`](Self::step) calls `tick()` once
/// on every running server, so `k * election_tick_timeout` steps are `k`
/// election timeouts. Calls that take a server id return
/// [`SimError::UnknownServer`] for an id not in the cluster; none panics on
/// bad input.
pub struct Sim<T: Entry, S: Storage<T>, M = ()> {
    /// Seeds `rng`; printed in every error, to replay the run.
    pub(crate) seed: u64,
    /// The number of steps taken so far.
    pub(crate) now: u64,
    /// The only source of randomness of the run.
    pub(crate) rng: ChaCha8Rng,
    /// The network's loss, duplication and delay.
    pub(crate) faults: Faults,
    /// The servers' ids, ascending.
    pub(crate) ids: Vec<NodeId>,
    /// The servers by id; iteration in id order keeps runs deterministic.
    pub(crate) servers: BTreeMap<NodeId, Server<T, S, M>>,
    /// The messages in flight and the links.
    pub(crate) network: Network<T>,
    /// The user's storage factory, restart hook and state machine.
    pub(crate) hooks: Hooks<T, S, M>,
    /// The cluster-wide decided log and the proposals not decided yet.
    pub(crate) record: Record<T>,
    /// Whether to check the invariants after every step.
    pub(crate) check: bool,
    /// A reused buffer for `take_outgoing_messages`.
    outbox: Vec<Message<T>>,
    /// A reused buffer for the messages due in a step.
    inbox: Vec<Message<T>>,
    /// A reused buffer for `take_decided_proposals`.
    pub(crate) reports: Vec<(ProposalId, u64)>,
    /// A running hash of the run (see [`Sim::trace_hash`]).
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
fn message_kind<T: Entry>(msg: &Message<T>) -> u64 {
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

/// Tags folded into the trace hash for the commands of a script.
mod event {
    pub(super) const CRASH: u64 = 1;
    pub(super) const LOSE_STORAGE: u64 = 2;
    pub(super) const RESTART: u64 = 3;
    pub(super) const PROPOSE: u64 = 4;
}

impl<T, S> Sim<T, S>
where
    T: Entry + PartialEq,
    S: Storage<T>,
{
    /// Starts building a cluster of servers with the given ids (non-zero,
    /// distinct, any order, not necessarily contiguous). Give it at least a
    /// storage factory, then [`build`](SimBuilder::build) it.
    pub fn builder(ids: &[NodeId]) -> SimBuilder<T, S> {
        SimBuilder::new(ids)
    }
}

impl<T, S, M> Sim<T, S, M>
where
    T: Entry + PartialEq,
    S: Storage<T>,
    M: Default + PartialEq + Debug,
{
    pub(crate) fn from_builder(b: SimBuilder<T, S, M>) -> Result<Self, SimError> {
        let mut ids = b.ids.clone();
        ids.sort_unstable();
        ids.dedup();
        let invalid = |reason| SimError::InvalidIds {
            ids: b.ids.clone(),
            reason,
        };
        if ids.is_empty() {
            return Err(invalid("a cluster needs at least one server"));
        }
        if ids.len() != b.ids.len() {
            return Err(invalid("server ids must be distinct"));
        }
        if ids[0] == 0 {
            return Err(invalid("server id 0 is not allowed"));
        }
        b.faults.validate()?;
        let Some(mut factory) = b.storage else {
            return Err(SimError::NoStorage);
        };
        let mut configure = b.configure;
        let mut servers = BTreeMap::new();
        for &pid in &ids {
            let peers: Vec<NodeId> = ids.iter().copied().filter(|&p| p != pid).collect();
            let mut config = OmniPaxosConfig {
                configuration_id: 1,
                pid,
                peers: peers.clone(),
                ..OmniPaxosConfig::default()
            };
            if let Some(hook) = configure.as_mut() {
                hook(pid, &mut config);
            }
            let mut hooked_peers = config.peers.clone();
            hooked_peers.sort_unstable();
            let field = if config.pid != pid {
                Some("pid")
            } else if config.configuration_id != 1 {
                Some("configuration_id")
            } else if hooked_peers != peers {
                Some("peers")
            } else {
                None
            };
            if let Some(field) = field {
                return Err(SimError::ConfigMismatch { pid, field });
            }
            let paxos = config
                .clone()
                .build(factory(pid))
                .map_err(|error| SimError::Config { pid, error })?;
            servers.insert(
                pid,
                Server {
                    config,
                    life: Life::Running(Box::new(paxos)),
                    replica: M::default(),
                    applied: 0,
                    max_decided: 0,
                    tracked: HashMap::new(),
                },
            );
        }
        Ok(Self {
            seed: b.seed,
            now: 0,
            rng: ChaCha8Rng::seed_from_u64(b.seed),
            faults: b.faults,
            ids,
            servers,
            network: Network::new(),
            hooks: Hooks {
                storage: factory,
                on_restart: b.on_restart,
                apply: b.apply,
                state_invariant: b.state_invariant,
            },
            record: Record::new(),
            check: b.check,
            outbox: Vec::new(),
            inbox: Vec::new(),
            reports: Vec::new(),
            trace_hash: 0xcbf2_9ce4_8422_2325,
        })
    }

    // ----- time -------------------------------------------------------------

    /// Advances time by one tick: ticks every running server (in id order),
    /// moves their outgoing messages into the network, delivers every
    /// message that is due, brings every replica up to date with its
    /// server's decided log, and checks the invariants.
    ///
    /// Messages a server sends while handling a delivery wait in its outbox
    /// until the next step, so one network hop takes at least one tick.
    /// Returns the first [`SimError::Violation`] found (or
    /// [`SimError::UnreadableLog`]); after one, the run's records no longer
    /// mean much: stop and report it.
    pub fn step(&mut self) -> Result<(), SimError> {
        self.now += 1;
        for server in self.servers.values_mut() {
            if let Life::Running(paxos) = &mut server.life {
                paxos.tick();
            }
        }
        self.collect_outgoing();
        self.deliver_due();
        for server in self.servers.values() {
            let decided = match &server.life {
                Life::Running(paxos) => paxos.get_decided_idx(),
                Life::Crashed(_) => u64::MAX,
            };
            self.trace_hash = fold_hash(self.trace_hash, decided);
        }
        self.check_invariants()
    }

    /// Moves every running server's outgoing messages into the network.
    fn collect_outgoing(&mut self) {
        let mut outbox = std::mem::take(&mut self.outbox);
        for server in self.servers.values_mut() {
            if let Life::Running(paxos) = &mut server.life {
                paxos.take_outgoing_messages(&mut outbox);
            }
        }
        for msg in outbox.drain(..) {
            let receiver_up = self
                .servers
                .get(&msg.get_receiver())
                .is_some_and(|s| matches!(s.life, Life::Running(_)));
            self.network
                .send(msg, self.now, receiver_up, &self.faults, &mut self.rng);
        }
        self.outbox = outbox;
    }

    /// Hands every message due now to its receiver.
    fn deliver_due(&mut self) {
        let mut inbox = std::mem::take(&mut self.inbox);
        self.network.take_due(self.now, &mut inbox);
        for msg in inbox.drain(..) {
            let (from, to) = (msg.get_sender(), msg.get_receiver());
            let mut h = fold_hash(self.trace_hash, self.now);
            h = fold_hash(h, from.wrapping_shl(32) ^ to);
            self.trace_hash = fold_hash(h, message_kind(&msg));
            match self.servers.get_mut(&to).map(|s| &mut s.life) {
                Some(Life::Running(paxos)) => {
                    paxos.handle_incoming(msg);
                    self.network.note_delivered();
                }
                _ => self.network.note_undeliverable(),
            }
        }
        self.inbox = inbox;
    }

    /// Takes `ticks` steps, stopping at the first error.
    pub fn run_for(&mut self, ticks: u64) -> Result<(), SimError> {
        for _ in 0..ticks {
            self.step()?;
        }
        Ok(())
    }

    /// Steps until `done` holds and returns the number of steps taken (0 if
    /// it held already). Fails with [`SimError::Timeout`] (naming the seed)
    /// if it does not hold within `max_ticks` steps, or with the first
    /// violation a step finds.
    pub fn run_until(
        &mut self,
        mut done: impl FnMut(&Self) -> bool,
        max_ticks: u64,
    ) -> Result<u64, SimError> {
        let start = self.now;
        while !done(self) {
            if self.now - start >= max_ticks {
                return Err(SimError::Timeout {
                    max_ticks,
                    seed: self.seed,
                    tick: self.now,
                });
            }
            self.step()?;
        }
        Ok(self.now - start)
    }

    /// Steps until every running server names the same leader, and that
    /// server believes it leads; returns it. Fails with
    /// [`SimError::Timeout`] after `max_ticks` steps.
    pub fn wait_for_leader(&mut self, max_ticks: u64) -> Result<NodeId, SimError> {
        self.run_until(|sim| sim.leader().is_some(), max_ticks)?;
        self.leader().ok_or(SimError::Timeout {
            max_ticks,
            seed: self.seed,
            tick: self.now,
        })
    }

    // ----- faults -----------------------------------------------------------

    /// Replaces the network's loss, duplication and delay from the next
    /// message on (messages in flight keep their delivery tick). Leaves
    /// the faults as they were if a knob is out of range.
    pub fn set_faults(&mut self, faults: Faults) -> Result<(), SimError> {
        faults.validate()?;
        self.faults = faults;
        Ok(())
    }

    /// The network's current loss, duplication and delay.
    pub fn faults(&self) -> Faults {
        self.faults
    }

    /// Checks that `a -> b` is a link between two servers of the cluster.
    fn check_link(&self, a: NodeId, b: NodeId) -> Result<(), SimError> {
        for pid in [a, b] {
            if !self.servers.contains_key(&pid) {
                return Err(SimError::UnknownServer(pid));
            }
        }
        if a == b {
            return Err(SimError::SelfLink(a));
        }
        Ok(())
    }

    /// Cuts the link from `from` to `to` one way: what `from` sends to `to`
    /// is lost, including what is in flight; the reverse still works.
    pub fn cut(&mut self, from: NodeId, to: NodeId) -> Result<(), SimError> {
        self.check_link(from, to)?;
        self.network.cut(from, to);
        Ok(())
    }

    /// Cuts every link between a server of `a` and a server of `b`, both
    /// ways. Links within each side, and links of servers in neither, stay
    /// as they are. Changes nothing if an id is unknown or on both sides.
    pub fn partition(&mut self, a: &[NodeId], b: &[NodeId]) -> Result<(), SimError> {
        for &x in a {
            for &y in b {
                self.check_link(x, y)?;
            }
        }
        for &x in a {
            for &y in b {
                self.network.cut(x, y);
                self.network.cut(y, x);
            }
        }
        Ok(())
    }

    /// Cuts every link from and to `pid`, both ways; the server keeps
    /// running.
    pub fn isolate(&mut self, pid: NodeId) -> Result<(), SimError> {
        if !self.servers.contains_key(&pid) {
            return Err(SimError::UnknownServer(pid));
        }
        for &peer in &self.ids {
            if peer != pid {
                self.network.cut(pid, peer);
                self.network.cut(peer, pid);
            }
        }
        Ok(())
    }

    /// Restores every link. (It does not call `reconnected`: the protocol
    /// recovers from loss on its own timers. Call it through
    /// [`node_mut`](Self::node_mut) to test that path.)
    pub fn heal(&mut self) {
        self.network.heal_all();
    }

    /// Whether the directed link `from -> to` is cut.
    pub fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        self.network.is_cut(from, to)
    }

    /// Crashes server `pid`: its `OmniPaxos` value, its unsent messages and
    /// the messages in flight from or to it are dropped; its storage value
    /// is kept ([`OmniPaxos::into_storage`]) for [`restart`](Self::restart).
    /// Fails if the server is unknown or already crashed.
    pub fn crash(&mut self, pid: NodeId) -> Result<(), SimError> {
        let server = self
            .servers
            .get_mut(&pid)
            .ok_or(SimError::UnknownServer(pid))?;
        let life = std::mem::replace(&mut server.life, Life::Crashed(None));
        match life {
            Life::Running(paxos) => server.life = Life::Crashed(Some(paxos.into_storage())),
            crashed @ Life::Crashed(_) => {
                server.life = crashed;
                return Err(SimError::ServerDown(pid));
            }
        }
        server.tracked.clear();
        self.network.drop_involving(pid);
        self.trace_hash = fold_hash(fold_hash(self.trace_hash, event::CRASH), pid);
        Ok(())
    }

    /// Crashes server `pid` (if it runs) and drops its storage: the next
    /// [`restart`](Self::restart) builds it on a fresh storage from the
    /// factory, as a server whose disk was replaced.
    ///
    /// Paxos assumes a server keeps what it promised and accepted: a server
    /// that lost its storage and rejoins under its old id may make the
    /// cluster decide two values at one index if enough servers do so, and
    /// the simulator will then report it. Use it to test that your
    /// deployment tolerates one such loss at a time, not more.
    pub fn crash_and_lose_storage(&mut self, pid: NodeId) -> Result<(), SimError> {
        match self.crash(pid) {
            Ok(()) | Err(SimError::ServerDown(_)) => {}
            Err(e) => return Err(e),
        }
        if let Some(server) = self.servers.get_mut(&pid) {
            server.life = Life::Crashed(None);
        }
        self.trace_hash = fold_hash(fold_hash(self.trace_hash, event::LOSE_STORAGE), pid);
        Ok(())
    }

    /// Restarts crashed server `pid` from its config: on the storage it
    /// left (passed through [`SimBuilder::on_restart`] if given) followed by
    /// `fail_recovery()`, as a process does after a crash; or on a fresh
    /// storage from the factory after
    /// [`crash_and_lose_storage`](Self::crash_and_lose_storage).
    ///
    /// The server's replica starts over from `M::default()` and is rebuilt
    /// from the server's decided log at the next step, as an application
    /// rebuilds its state from its log.
    pub fn restart(&mut self, pid: NodeId) -> Result<(), SimError> {
        let server = self
            .servers
            .get_mut(&pid)
            .ok_or(SimError::UnknownServer(pid))?;
        let kept = match std::mem::replace(&mut server.life, Life::Crashed(None)) {
            running @ Life::Running(_) => {
                server.life = running;
                return Err(SimError::ServerUp(pid));
            }
            Life::Crashed(kept) => kept,
        };
        let (storage, recovering) = match kept {
            Some(storage) => match self.hooks.on_restart.as_mut() {
                Some(reopen) => (reopen(pid, storage), true),
                None => (storage, true),
            },
            None => ((self.hooks.storage)(pid), false),
        };
        // A failed build takes the storage with it: the server stays
        // crashed, with no storage.
        let mut paxos = server
            .config
            .clone()
            .build(storage)
            .map_err(|error| SimError::Config { pid, error })?;
        if recovering {
            paxos.fail_recovery();
        } else {
            server.max_decided = 0;
        }
        server.life = Life::Running(Box::new(paxos));
        server.replica = M::default();
        server.applied = 0;
        self.trace_hash = fold_hash(fold_hash(self.trace_hash, event::RESTART), pid);
        Ok(())
    }

    // ----- proposals --------------------------------------------------------

    /// Appends `entry` at server `pid` (with `append_tracked`) and records
    /// it as proposed: the checks then expect it decided at most once, and
    /// expect nothing decided that was not proposed this way. Returns the
    /// entry in the error if the server is unknown or crashed, or if
    /// `append` refused it.
    pub fn propose(&mut self, pid: NodeId, entry: T) -> Result<(), ProposeError<T>> {
        let Some(server) = self.servers.get_mut(&pid) else {
            return Err(ProposeError::UnknownServer(pid, entry));
        };
        let Life::Running(paxos) = &mut server.life else {
            return Err(ProposeError::ServerDown(pid, entry));
        };
        let id = paxos
            .append_tracked(entry.clone())
            .map_err(ProposeError::Refused)?;
        self.record.propose(entry.clone());
        server.tracked.insert(id, entry);
        self.trace_hash = fold_hash(fold_hash(self.trace_hash, event::PROPOSE), pid);
        Ok(())
    }

    // ----- observations -----------------------------------------------------

    /// The seed of this run.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The number of steps taken so far.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// The servers' ids, ascending.
    pub fn ids(&self) -> &[NodeId] {
        &self.ids
    }

    /// Whether server `pid` runs (`false` for an unknown id).
    pub fn is_up(&self, pid: NodeId) -> bool {
        self.servers
            .get(&pid)
            .is_some_and(|s| matches!(s.life, Life::Running(_)))
    }

    /// The running server `pid`, to query it; `None` if it is unknown or
    /// crashed.
    pub fn node(&self, pid: NodeId) -> Option<&OmniPaxos<T, S>> {
        match &self.servers.get(&pid)?.life {
            Life::Running(paxos) => Some(paxos),
            Life::Crashed(_) => None,
        }
    }

    /// The running server `pid`, to call it directly (compaction,
    /// `reconnected`, `set_priority`, ...); `None` if it is unknown or
    /// crashed. The invariants are checked at the next step, or call
    /// [`check_invariants`](Self::check_invariants). An entry appended here
    /// rather than through [`propose`](Self::propose) is not recorded, and
    /// its decision fails the validity check.
    pub fn node_mut(&mut self, pid: NodeId) -> Option<&mut OmniPaxos<T, S>> {
        match &mut self.servers.get_mut(&pid)?.life {
            Life::Running(paxos) => Some(paxos),
            Life::Crashed(_) => None,
        }
    }

    /// Server `pid`'s replica of the state machine: its first
    /// [`applied`](Self::applied) decided entries, applied in order. Kept
    /// while the server is crashed; `None` for an unknown id.
    pub fn replica(&self, pid: NodeId) -> Option<&M> {
        self.servers.get(&pid).map(|s| &s.replica)
    }

    /// How many decided entries server `pid`'s replica has applied.
    pub fn applied(&self, pid: NodeId) -> Option<u64> {
        self.servers.get(&pid).map(|s| s.applied)
    }

    /// Server `pid`'s decided index, if it runs.
    pub fn decided_idx(&self, pid: NodeId) -> Option<u64> {
        self.node(pid).map(OmniPaxos::get_decided_idx)
    }

    /// The cluster-wide decided log: index `i` holds what every server that
    /// decided `i` decided there (the invariants check that they agree).
    /// Grows at every step as the first server decides a new index, and is
    /// kept when that server crashes.
    pub fn decided_log(&self) -> &[T] {
        self.record.decided_log()
    }

    /// The leader, if every running server names it as its current leader
    /// and it believes it leads.
    pub fn leader(&self) -> Option<NodeId> {
        let mut running = self.servers.values().filter_map(|s| match &s.life {
            Life::Running(paxos) => Some(paxos),
            Life::Crashed(_) => None,
        });
        let leader = running.next()?.get_current_leader()?;
        let agreed = running.all(|p| p.get_current_leader() == Some(leader));
        (agreed && self.node(leader).is_some_and(|p| p.is_leader())).then_some(leader)
    }

    /// A hash of everything the run did so far: every delivery (tick,
    /// sender, receiver, kind of message), every server's decided index
    /// after every step, and the script's crashes, restarts and proposals.
    /// Two runs of one seed and one script give the same hash (in one
    /// build of the program), which is what makes a failing seed
    /// replayable.
    pub fn trace_hash(&self) -> u64 {
        self.trace_hash
    }

    /// What happened to the messages sent so far.
    pub fn network_stats(&self) -> NetworkStats {
        self.network.stats()
    }

    /// How many messages are in flight.
    pub fn in_flight(&self) -> usize {
        self.network.in_flight()
    }

    /// The run's random number generator, for scripts that make random
    /// choices (which server to crash, when to partition): drawing from it
    /// keeps the whole run a function of the seed.
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }
}
