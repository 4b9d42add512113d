//! [`OmniPaxosConfig`]: a flat struct of settings with one validating [`build`](OmniPaxosConfig::build).

use crate::{
    ballot::Ballot,
    errors::ConfigError,
    migration::Migration,
    omni_paxos::OmniPaxos,
    storage::{Entry, Storage},
    util::{ConfigurationId, NodeId},
};
use std::collections::HashSet;

/// The settings of one server. Every field is public; start from `Default` and
/// set what you need:
///
/// ```
/// use omnipaxos::OmniPaxosConfig;
/// let config = OmniPaxosConfig {
///     configuration_id: 1,
///     pid: 2,
///     peers: vec![1, 3],
///     ..Default::default()
/// };
/// assert!(config.validate().is_ok());
/// ```
///
/// Timeouts count calls to [`OmniPaxos::tick`]; the driver decides how long a
/// tick is (the runtime's `tick_interval`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct OmniPaxosConfig {
    /// The id of the configuration (cluster membership) this server belongs to; at least 1.
    /// Messages of other configurations are ignored.
    pub configuration_id: ConfigurationId,
    /// This server's id: non-zero and unique in the cluster.
    pub pid: NodeId,
    /// The other servers of the configuration; empty for a one-server cluster.
    pub peers: Vec<NodeId>,
    /// Ticks per heartbeat round. A leader that stops answering is replaced after
    /// one to two rounds.
    pub election_tick_timeout: u64,
    /// Ticks before an unanswered message (prepare, resync request, forwarded
    /// proposal) is sent again.
    pub resend_message_tick_timeout: u64,
    /// Ticks a partly filled batch waits before the leader sends it anyway.
    pub flush_batch_tick_timeout: u64,
    /// How many proposals the leader gathers before it writes them and sends
    /// them to followers.
    ///
    /// A full batch goes at once if nothing the leader sent before is
    /// undecided: with 1, a lone proposal is written and sent in the call
    /// that makes it. Otherwise it waits for the next
    /// [`take_outgoing_messages`](crate::OmniPaxos::take_outgoing_messages)
    /// or tick and takes along what is proposed until then (group commit:
    /// the proposals made between two sends share one storage write and
    /// one message per follower), up to `max_entries_per_message` entries.
    pub batch_size: usize,
    /// How many proposals a server holds while it has no leader to send them
    /// to, or, as leader, while its window of undecided entries is full (see
    /// `max_entries_per_message`); more are refused with
    /// [`ProposeErr::BufferFull`](crate::ProposeErr::BufferFull).
    pub buffer_size: usize,
    /// At most this many log entries travel in one message when a server far
    /// behind is brought up to date: a leader's log sync to a follower, and a
    /// reply to a new server pulling the previous configuration's log. Longer
    /// transfers go in chunks, a few in flight at a time.
    ///
    /// It is also the leader's window: a leader keeps at most this many
    /// entries of its log undecided, and about `max_message_bytes` of those
    /// it appended; what else is proposed waits in memory (up to
    /// `buffer_size`) until more is decided. The window matters when a new
    /// leader adopts a log: the undecided part of a log cannot be split (a
    /// part of it could be taken for the whole by a later leader), so it
    /// travels in one message, which the window keeps within these bounds.
    /// Every server of a cluster should use the same values.
    ///
    /// A snapshot goes in parts when it splits (see
    /// [`Snapshot::into_parts`](crate::storage::Snapshot::into_parts)), in
    /// every direction. See the book's reconfiguration chapter, "Catch-up".
    pub max_entries_per_message: usize,
    /// The byte bound of one such chunk, as estimated by
    /// [`Entry::size_hint`]: a chunk takes entries until the next would
    /// exceed it (always at least one). Keep it well below the transport's
    /// frame limit (the runtime's TCP transport's `NetConfig::max_frame_bytes`,
    /// 8 MiB by default): a message may carry about twice this much (see
    /// `max_entries_per_message`).
    pub max_message_bytes: usize,
    /// Whether a leader may send a batch to its followers before its own
    /// copy is durable, writing it with
    /// [`Storage::write_deferred`](crate::storage::Storage::write_deferred)
    /// and syncing it while the followers write theirs: a write then waits
    /// for one disk sync instead of two in a row. The leader counts its own
    /// copy toward a decision only once it is synced.
    ///
    /// Every server then also writes a raised decided index lazily (deferred,
    /// with no sync of its own): it becomes durable with the server's next
    /// synced write, so that neither a leader's answer to a client nor a
    /// follower's next batch waits for a sync of the decided index alone.
    /// After a power cut a server may come back with a lower decided index
    /// than it had reported; the entries are still in its log, and the
    /// leader decides them for it again, with the same values (Raft keeps its
    /// commit index the same way). A decided stop-sign is always synced.
    ///
    /// The driver must call [`OmniPaxos::sync_storage`] right after it has
    /// sent the messages of
    /// [`take_outgoing_messages`](OmniPaxos::take_outgoing_messages);
    /// otherwise the sync waits for the next `handle_incoming` or `tick`.
    /// The runtime's driver does, and turns this on. Off by default; it
    /// changes nothing with a storage that does not defer writes (such as
    /// `MemoryStorage`).
    pub defer_leader_sync: bool,
    /// This server's leader priority: among servers that are quorum-connected, the
    /// one with the highest priority becomes leader, taking over from a healthy
    /// leader of lower priority.
    pub leader_priority: u32,
    /// Read and write quorum sizes; `None` uses majorities.
    pub flexible_quorum: Option<FlexibleQuorum>,
    /// Where the `logging` feature writes this server's protocol log; without the
    /// feature the field is accepted and ignored (so one config file serves both builds).
    pub logger_file_path: Option<String>,
}

impl Default for OmniPaxosConfig {
    fn default() -> Self {
        Self {
            configuration_id: 1,
            pid: 0,
            peers: Vec::new(),
            election_tick_timeout: 10,
            resend_message_tick_timeout: 20,
            flush_batch_tick_timeout: 1,
            batch_size: 1,
            buffer_size: 100_000,
            max_entries_per_message: 8192,
            max_message_bytes: 2 << 20,
            defer_leader_sync: false,
            leader_priority: 0,
            flexible_quorum: None,
            logger_file_path: None,
        }
    }
}

/// Quorum sizes other than majorities: leader election and Prepare wait for
/// `read_quorum_size` servers, deciding waits for `write_quorum_size`.
/// Every read quorum must meet every write quorum: `read + write > n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct FlexibleQuorum {
    /// Servers (including the leader) that must promise before a leader may accept.
    pub read_quorum_size: usize,
    /// Servers (including the leader) that must accept before an entry is decided.
    pub write_quorum_size: usize,
}

impl OmniPaxosConfig {
    /// Checks every setting; the error names the first field that is wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.configuration_id == 0 {
            return Err(ConfigError::field("configuration_id", "must be at least 1"));
        }
        if self.pid == 0 {
            return Err(ConfigError::field("pid", "must be non-zero"));
        }
        let mut seen = HashSet::with_capacity(self.peers.len());
        for &peer in &self.peers {
            if peer == 0 {
                return Err(ConfigError::field("peers", "node id 0 is not allowed"));
            }
            if peer == self.pid {
                return Err(ConfigError::field(
                    "peers",
                    format!("contains this server's own pid {peer}"),
                ));
            }
            if !seen.insert(peer) {
                return Err(ConfigError::field("peers", format!("lists {peer} twice")));
            }
        }
        for (field, value) in [
            ("election_tick_timeout", self.election_tick_timeout),
            (
                "resend_message_tick_timeout",
                self.resend_message_tick_timeout,
            ),
            ("flush_batch_tick_timeout", self.flush_batch_tick_timeout),
        ] {
            if value == 0 {
                return Err(ConfigError::field(field, "must be at least 1 tick"));
            }
        }
        if self.batch_size == 0 {
            return Err(ConfigError::field("batch_size", "must be at least 1"));
        }
        if self.max_entries_per_message == 0 {
            return Err(ConfigError::field(
                "max_entries_per_message",
                "must be at least 1",
            ));
        }
        if self.max_message_bytes == 0 {
            return Err(ConfigError::field(
                "max_message_bytes",
                "must be at least 1",
            ));
        }
        if self.buffer_size < self.batch_size {
            return Err(ConfigError::field(
                "buffer_size",
                format!("must be at least batch_size ({})", self.batch_size),
            ));
        }
        if let Some(fq) = self.flexible_quorum {
            let n = self.peers.len() + 1;
            for (field, q) in [
                ("flexible_quorum.read_quorum_size", fq.read_quorum_size),
                ("flexible_quorum.write_quorum_size", fq.write_quorum_size),
            ] {
                if q < 2 || q > n {
                    return Err(ConfigError::field(
                        field,
                        format!("must be between 2 and the cluster size {n}, is {q}"),
                    ));
                }
            }
            if fq.read_quorum_size + fq.write_quorum_size <= n {
                return Err(ConfigError::field(
                    "flexible_quorum",
                    format!(
                        "read ({}) + write ({}) quorum sizes must exceed the cluster size {n}, \
                         or a leader could miss a decided entry",
                        fq.read_quorum_size, fq.write_quorum_size
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Validates the config and creates the server on `storage`.
    ///
    /// A fresh storage starts a new log; a storage that holds state from an
    /// earlier run resumes it (call [`OmniPaxos::fail_recovery`] after a crash).
    /// A storage of a server that was still pulling the previous
    /// configuration's log when it stopped (it records how that
    /// configuration ended, holds less than its log, and promised nothing in
    /// this one) pulls on, from this configuration's other servers, and
    /// neither votes nor leads until it holds the whole log
    /// ([`OmniPaxos::is_migrating`]); [`build_joining`](Self::build_joining)
    /// names other sources.
    pub fn build<T, S>(self, storage: S) -> Result<OmniPaxos<T, S>, ConfigError>
    where
        T: Entry,
        S: Storage<T>,
    {
        self.validate()?;
        #[cfg(feature = "logging")]
        let logger = crate::logging::default_logger(&self)?;
        #[cfg(not(feature = "logging"))]
        let logger = ();
        OmniPaxos::new(self, storage, logger)
    }

    /// Validates the config and creates a server, as [`build`](Self::build)
    /// does, that logs through `logger` instead of the default logger
    /// (`logger_file_path` is then not used). Each line carries the
    /// server's `pid` and `configuration_id`. Feature `logging`.
    #[cfg(feature = "logging")]
    pub fn build_with_logger<T, S>(
        self,
        storage: S,
        logger: slog::Logger,
    ) -> Result<OmniPaxos<T, S>, ConfigError>
    where
        T: Entry,
        S: Storage<T>,
    {
        self.validate()?;
        OmniPaxos::new(self, storage, logger)
    }

    /// Validates the config and creates a server that joins this (new)
    /// configuration without having been in the previous one: it first pulls
    /// the previous configuration's decided log from `migration.sources`, in
    /// parts of at most `max_entries_per_message` entries, a few from each
    /// source in parallel, and takes part (votes, leads, accepts) only once
    /// it holds all of it. Each part that continues the stored log is
    /// written (decided) as it comes, after how the previous configuration
    /// ended is recorded ([`Storage::set_previous_configuration_end`]), so
    /// the pull holds little in memory
    /// ([`OmniPaxos::get_migration_status`]). Servers that were in the
    /// previous configuration use [`OmniPaxos::into_new_configuration`]
    /// instead.
    ///
    /// A storage that already holds the pulled log (a restart after joining)
    /// starts at once. One that holds a prefix of it and never took part in
    /// this configuration (a restart while pulling, including the pull that
    /// [`OmniPaxos::into_new_configuration`] starts for a server that missed
    /// part of the old log) pulls only the rest: `Migration` as
    /// [`OmniPaxos::get_migration`] gave it; if the storage records a
    /// different end of the previous configuration, `migration.log_len` is
    /// refused. A storage that took part in a configuration (it promised a
    /// ballot) and lacks the log is refused.
    ///
    /// [`Storage::set_previous_configuration_end`]: crate::storage::Storage::set_previous_configuration_end
    pub fn build_joining<T, S>(
        self,
        storage: S,
        migration: Migration,
    ) -> Result<OmniPaxos<T, S>, ConfigError>
    where
        T: Entry,
        S: Storage<T>,
    {
        self.validate()?;
        migration.validate(self.pid)?;
        #[cfg(feature = "logging")]
        let logger = crate::logging::default_logger(&self)?;
        #[cfg(not(feature = "logging"))]
        let logger = ();
        let mut node = OmniPaxos::new(self, storage, logger)?;
        let decided = node.get_decided_idx();
        if let Some(recorded) = node.pulling_log_len() {
            // The storage says it was pulling (a restart mid-pull): on, from
            // the sources named here.
            if recorded != migration.log_len {
                return Err(ConfigError::field(
                    "migration.log_len",
                    format!(
                        "the storage records that the previous configuration ended at \
                         {recorded}, not {}",
                        migration.log_len
                    ),
                ));
            }
            node.start_joining(migration, decided);
        } else if decided < migration.log_len {
            if node.get_promise() != Ballot::default() {
                return Err(ConfigError::field(
                    "migration.log_len",
                    format!(
                        "the storage holds a log decided only up to {decided}, not the one to \
                         pull, and took part in a configuration"
                    ),
                ));
            }
            node.start_joining(migration, decided);
        }
        Ok(node)
    }

    /// Validates the config and creates a server that joins this (new)
    /// configuration knowing only where the previous one's servers are:
    /// `sources`, the old servers to pull the log from. Where
    /// [`build_joining`](Self::build_joining) must be told how long the log
    /// to pull is, this server asks: it sends each source (and each of its
    /// new peers) a request every `resend_message_tick_timeout` ticks until
    /// one that knows how the previous configuration ended answers, an old
    /// server whose decided stop-sign names this one, or a new peer that
    /// moved on. Then it pulls that log from the sources in parallel, as
    /// `build_joining` does, and takes part once it holds all of it.
    /// Until then ([`OmniPaxos::is_migrating`]) it neither votes nor leads,
    /// and the servers it asks need not have decided the stop-sign yet: it
    /// may be started before or after the reconfiguration is proposed.
    ///
    /// A storage that took part in this configuration, or that knows how the
    /// previous one ended and holds its whole log (a restart after the
    /// pull), starts at once; one that records how it ended but holds only
    /// part of the log (a restart during the pull) pulls the rest from
    /// `sources` without asking again; one that holds part of the log and
    /// no record asks again and pulls only the rest. `sources` must be non-empty, without 0 or this
    /// server's pid.
    pub fn build_joining_from<T, S>(
        self,
        storage: S,
        sources: Vec<NodeId>,
    ) -> Result<OmniPaxos<T, S>, ConfigError>
    where
        T: Entry,
        S: Storage<T>,
    {
        #[cfg(feature = "logging")]
        let logger = crate::logging::default_logger(&self)?;
        #[cfg(not(feature = "logging"))]
        let logger = ();
        self.joining_from(storage, sources, logger)
    }

    /// [`build_joining_from`](Self::build_joining_from) with the logger to
    /// use, as [`build_with_logger`](Self::build_with_logger). Feature `logging`.
    #[cfg(feature = "logging")]
    pub fn build_joining_from_with_logger<T, S>(
        self,
        storage: S,
        sources: Vec<NodeId>,
        logger: slog::Logger,
    ) -> Result<OmniPaxos<T, S>, ConfigError>
    where
        T: Entry,
        S: Storage<T>,
    {
        self.joining_from(storage, sources, logger)
    }

    fn joining_from<T, S>(
        self,
        storage: S,
        sources: Vec<NodeId>,
        logger: crate::logging::Logger,
    ) -> Result<OmniPaxos<T, S>, ConfigError>
    where
        T: Entry,
        S: Storage<T>,
    {
        self.validate()?;
        if self.configuration_id <= 1 {
            return Err(ConfigError::field(
                "configuration_id",
                "a joining server joins a configuration after the first (id 2 or more)",
            ));
        }
        if sources.is_empty() {
            return Err(ConfigError::field(
                "migration.sources",
                "must name at least one server",
            ));
        }
        Migration {
            log_len: 0,
            sources: sources.clone(),
        }
        .validate(self.pid)?;
        let mut sorted = sources.clone();
        sorted.sort_unstable();
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            return Err(ConfigError::field(
                "migration.sources",
                "names a server more than once",
            ));
        }
        let mut node = OmniPaxos::new(self, storage, logger)?;
        if let Some(log_len) = node.pulling_log_len() {
            // The storage says it was pulling (a restart mid-pull): on, from
            // the sources named here.
            let decided = node.get_decided_idx();
            node.start_joining(Migration { log_len, sources }, decided);
        } else if node.get_promise() == Ballot::default() && !node.knows_previous_end() {
            node.start_discovery(sources);
        }
        Ok(node)
    }

    /// Reads a config from a TOML file with the same keys as the struct fields;
    /// unknown keys are an error that names them.
    ///
    /// ```toml
    /// configuration_id = 1
    /// pid = 2
    /// peers = [1, 3]
    /// logger_file_path = "/omnipaxos/logs"
    /// ```
    #[cfg(feature = "toml_config")]
    pub fn with_toml(file_path: impl AsRef<std::path::Path>) -> Result<Self, ConfigError> {
        let path = file_path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        let config = Self::from_toml_str(&text).map_err(|e| match e {
            ConfigError::Parse { field, detail, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                field,
                detail,
            },
            other => other,
        })?;
        Ok(config)
    }

    /// Parses a config from TOML text; see [`with_toml`](Self::with_toml).
    /// The result is parsed but not validated: [`build`](Self::build) validates.
    #[cfg(feature = "toml_config")]
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e: toml::de::Error| {
            let detail = e.to_string();
            ConfigError::Parse {
                path: std::path::PathBuf::new(),
                field: field_named_in(e.message()),
                detail,
            }
        })
    }
}

/// Picks the field name out of a serde message such as "unknown field `foo`, expected ...".
#[cfg(feature = "toml_config")]
fn field_named_in(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> OmniPaxosConfig {
        OmniPaxosConfig {
            pid: 2,
            peers: vec![1, 3],
            ..Default::default()
        }
    }

    fn bad_field(config: OmniPaxosConfig) -> String {
        match config.validate() {
            Err(ConfigError::InvalidField { field, .. }) => field,
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    #[test]
    fn default_with_pid_is_valid_and_one_node_cluster_is_valid() {
        assert_eq!(valid().validate(), Ok(()));
        let single = OmniPaxosConfig {
            pid: 7,
            ..Default::default()
        };
        assert_eq!(single.validate(), Ok(()));
    }

    #[test]
    fn each_invalid_setting_names_its_field() {
        assert_eq!(bad_field(OmniPaxosConfig { pid: 0, ..valid() }), "pid");
        assert_eq!(
            bad_field(OmniPaxosConfig {
                configuration_id: 0,
                ..valid()
            }),
            "configuration_id"
        );
        assert_eq!(
            bad_field(OmniPaxosConfig {
                peers: vec![1, 2],
                ..valid()
            }),
            "peers"
        );
        assert_eq!(
            bad_field(OmniPaxosConfig {
                peers: vec![1, 1],
                ..valid()
            }),
            "peers"
        );
        assert_eq!(
            bad_field(OmniPaxosConfig {
                peers: vec![0],
                ..valid()
            }),
            "peers"
        );
        assert_eq!(
            bad_field(OmniPaxosConfig {
                election_tick_timeout: 0,
                ..valid()
            }),
            "election_tick_timeout"
        );
        assert_eq!(
            bad_field(OmniPaxosConfig {
                resend_message_tick_timeout: 0,
                ..valid()
            }),
            "resend_message_tick_timeout"
        );
        assert_eq!(
            bad_field(OmniPaxosConfig {
                batch_size: 0,
                ..valid()
            }),
            "batch_size"
        );
        assert_eq!(
            bad_field(OmniPaxosConfig {
                buffer_size: 0,
                ..valid()
            }),
            "buffer_size"
        );
    }

    #[test]
    fn flexible_quorums_must_intersect_and_fit_the_cluster() {
        let five = OmniPaxosConfig {
            pid: 1,
            peers: vec![2, 3, 4, 5],
            ..Default::default()
        };
        let fq = |r, w| OmniPaxosConfig {
            flexible_quorum: Some(FlexibleQuorum {
                read_quorum_size: r,
                write_quorum_size: w,
            }),
            ..five.clone()
        };
        assert_eq!(fq(4, 2).validate(), Ok(()));
        assert_eq!(bad_field(fq(3, 2)), "flexible_quorum");
        assert_eq!(bad_field(fq(1, 5)), "flexible_quorum.read_quorum_size");
        assert_eq!(bad_field(fq(4, 6)), "flexible_quorum.write_quorum_size");
    }

    #[cfg(feature = "toml_config")]
    #[test]
    fn toml_reads_the_seed_keys_and_names_unknown_ones() {
        let config = OmniPaxosConfig::from_toml_str(
            "configuration_id = 1\npid = 2\npeers = [1, 3]\nlogger_file_path = \"/omnipaxos/logs\"\n",
        )
        .unwrap();
        assert_eq!(config.pid, 2);
        assert_eq!(config.peers, vec![1, 3]);
        assert_eq!(config.election_tick_timeout, 10);
        match OmniPaxosConfig::from_toml_str("pid = 2\nelection_timeout = 5\n") {
            Err(ConfigError::Parse { field, .. }) => {
                assert_eq!(field.as_deref(), Some("election_timeout"))
            }
            other => panic!("expected a parse error, got {other:?}"),
        }
        match OmniPaxosConfig::from_toml_str("pid = \"two\"\n") {
            Err(ConfigError::Parse { detail, .. }) => assert!(detail.contains("pid"), "{detail}"),
            other => panic!("expected a parse error, got {other:?}"),
        }
    }
}
