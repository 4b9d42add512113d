//! [`SimOptions`]: every knob of a simulated run, in one place.

use omnipaxos::{
    FlexibleQuorum, OmniPaxosConfig,
    util::{ConfigurationId, NodeId},
};

/// The seed and the knobs of one simulated run.
///
/// Everything random in a run (which message is lost, duplicated or delayed,
/// and whatever a test script draws from [`SimCluster::rng`](crate::SimCluster::rng))
/// comes from a `ChaCha8Rng` seeded with [`seed`](Self::seed), so the same
/// options and the same script give the same run, tick for tick.
///
/// The defaults describe a perfect network: nothing is lost, duplicated or
/// delayed beyond the step a message is sent in. Tests that want a hostile
/// network raise the probabilities and the delay range.
#[derive(Clone, Debug, PartialEq)]
pub struct SimOptions {
    /// Seeds the run's only random number generator.
    pub seed: u64,
    /// The chance, in `[0, 1]`, that the network silently loses a message.
    pub drop_probability: f64,
    /// The chance, in `[0, 1]`, that the network delivers a message twice
    /// (the copy gets its own delay, so it may arrive first).
    pub duplicate_probability: f64,
    /// The fewest ticks a message waits in the network after the step that
    /// sent it; 0 delivers it in that same step.
    pub min_delay_ticks: u64,
    /// The most ticks a message waits in the network. Each message draws its
    /// delay uniformly from `min_delay_ticks..=max_delay_ticks`, which is what
    /// reorders messages.
    pub max_delay_ticks: u64,
    /// Passed to every server's [`OmniPaxosConfig::election_tick_timeout`].
    pub election_tick_timeout: u64,
    /// Passed to every server's [`OmniPaxosConfig::resend_message_tick_timeout`].
    pub resend_message_tick_timeout: u64,
    /// Passed to every server's [`OmniPaxosConfig::flush_batch_tick_timeout`].
    pub flush_batch_tick_timeout: u64,
    /// Passed to every server's [`OmniPaxosConfig::batch_size`].
    pub batch_size: usize,
    /// Passed to every server's [`OmniPaxosConfig::defer_leader_sync`]: a
    /// leader sends its batch before it is durable. The cluster then syncs
    /// right after sending on about half of the steps and leaves the sync
    /// to the next tick on the others, and a crashed server's in-memory
    /// storage loses what was not synced.
    pub defer_leader_sync: bool,
    /// Passed to every server's [`OmniPaxosConfig::buffer_size`].
    pub buffer_size: usize,
    /// `OmniPaxosConfig::max_entries_per_message`: small values make every log
    /// synchronisation go in chunks.
    pub max_entries_per_message: usize,
    /// `OmniPaxosConfig::max_message_bytes`: the byte bound of a catch-up
    /// chunk, by `Entry::size_hint` (8 bytes per [`Value`](crate::Value)).
    pub max_message_bytes: usize,
    /// Passed to every server's [`OmniPaxosConfig::flexible_quorum`], in
    /// every configuration (so a reconfiguration must keep it valid for the
    /// new number of servers).
    pub flexible_quorum: Option<FlexibleQuorum>,
    /// Whether to call `reconnected(peer)` on both ends when a cut link is
    /// healed or a peer restarts, as a connection-based transport would.
    /// Off by default: the protocol must recover from loss on its own timers,
    /// and the hint is an optimisation on top.
    pub call_reconnected: bool,
    /// Whether one proposal may be decided at two indices without failing
    /// the validity check. Off by default, and off in every soak: an append
    /// is decided once (proposals carry their origin's id, and a leader
    /// appends an id it finds in its log no more). On only for a storage
    /// that keeps no origins, which promises at-least-once.
    pub allow_duplicate_decisions: bool,
    /// Whether to print every delivered message and every command to stderr,
    /// one line each, prefixed with the tick. The environment variable
    /// `SIM_TRACE=1` turns it on too, so a failing test can be replayed with
    /// a trace without editing it.
    pub trace: bool,
    /// Which storage the servers persist to: memory (the default, fast) or
    /// `PersistentStorage` files that a restart really reopens.
    pub storage: SimStorage,
    /// Whether servers new to a configuration are built with
    /// `build_joining_from` (given only the sources: they ask how long the
    /// log is) instead of `build_joining` (given the log's length too).
    pub joiners_ask_log_len: bool,
    /// The command printed to replay a failing run. `None` derives
    /// `cargo test ... --exact <test>` from the running test's binary and
    /// thread name, which is right for ordinary `#[test]` functions; the soak
    /// sets it because it runs seeds on worker threads.
    pub replay_command: Option<String>,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            seed: 0x5EED,
            drop_probability: 0.0,
            duplicate_probability: 0.0,
            min_delay_ticks: 0,
            max_delay_ticks: 0,
            election_tick_timeout: 10,
            resend_message_tick_timeout: 20,
            flush_batch_tick_timeout: 1,
            batch_size: 1,
            defer_leader_sync: false,
            buffer_size: 100_000,
            max_entries_per_message: OmniPaxosConfig::default().max_entries_per_message,
            max_message_bytes: OmniPaxosConfig::default().max_message_bytes,
            flexible_quorum: None,
            call_reconnected: false,
            allow_duplicate_decisions: false,
            trace: false,
            storage: SimStorage::Memory,
            joiners_ask_log_len: false,
            replay_command: None,
        }
    }
}

/// The storage backend every simulated server runs on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SimStorage {
    /// A `MemoryStorage` per server that survives the server's crash inside
    /// the simulator, as if it were a disk. Restarts find it exactly as it
    /// was. Fast: what most scenarios and the main soak use.
    #[default]
    Memory,
    /// A `PersistentStorage` per server, in a temporary directory of its own
    /// that is deleted with the cluster. A crash closes the storage and a
    /// restart reopens its directory, so recovery goes through the files,
    /// and each reopen is checked to read back exactly what was written.
    /// Every write syncs to disk: runs are slower than in memory.
    Persistent,
}

impl SimOptions {
    /// The default options with another seed.
    pub fn with_seed(seed: u64) -> Self {
        Self {
            seed,
            ..Self::default()
        }
    }

    /// Panics, naming the field, if a knob is out of range. The simulator is
    /// test code, so a wrong knob is a bug in the test and a panic is the
    /// clearest report.
    pub fn validate(&self) {
        for (name, p) in [
            ("drop_probability", self.drop_probability),
            ("duplicate_probability", self.duplicate_probability),
        ] {
            assert!(
                (0.0..=1.0).contains(&p),
                "SimOptions::{name} must be within [0, 1], is {p}"
            );
        }
        assert!(
            self.min_delay_ticks <= self.max_delay_ticks,
            "SimOptions::min_delay_ticks ({}) exceeds max_delay_ticks ({})",
            self.min_delay_ticks,
            self.max_delay_ticks
        );
    }

    /// The configuration server `pid` of the cluster `all` starts with.
    pub fn config_for(&self, pid: NodeId, all: &[NodeId]) -> OmniPaxosConfig {
        self.config_in(1, pid, all)
    }

    /// Server `pid`'s config in configuration `configuration_id`, whose
    /// servers are `all`.
    pub fn config_in(
        &self,
        configuration_id: ConfigurationId,
        pid: NodeId,
        all: &[NodeId],
    ) -> OmniPaxosConfig {
        OmniPaxosConfig {
            configuration_id,
            pid,
            peers: all.iter().copied().filter(|&p| p != pid).collect(),
            election_tick_timeout: self.election_tick_timeout,
            resend_message_tick_timeout: self.resend_message_tick_timeout,
            flush_batch_tick_timeout: self.flush_batch_tick_timeout,
            batch_size: self.batch_size,
            defer_leader_sync: self.defer_leader_sync,
            buffer_size: self.buffer_size,
            max_entries_per_message: self.max_entries_per_message,
            max_message_bytes: self.max_message_bytes,
            flexible_quorum: self.flexible_quorum,
            ..OmniPaxosConfig::default()
        }
    }
}
