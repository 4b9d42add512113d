//! # omnipaxos
//!
//! Sequence consensus — a replicated log — in the Omni-Paxos design: Ballot
//! Leader Election picks a leader that is connected to a quorum, and Sequence
//! Paxos replicates the log under it. The crate is *sans-IO*: an
//! [`OmniPaxos`] value is a deterministic state machine. It never touches a
//! socket, a clock, a thread or a file; time enters as [`OmniPaxos::tick`],
//! messages enter by [`OmniPaxos::handle_incoming`] and leave by
//! [`OmniPaxos::outgoing_messages`], and persistence goes through the
//! [`Storage`](storage::Storage) trait. The `omnipaxos_runtime` crate drives it
//! with tokio; you can also drive it yourself, as below.
//!
//! ## Create a node
//!
//! ```
//! use omnipaxos::{OmniPaxos, OmniPaxosConfig, macros::Entry};
//! use omnipaxos_storage::memory_storage::MemoryStorage;
//!
//! #[derive(Clone, Debug, Entry)]
//! struct KeyValue {
//!     key: String,
//!     value: u64,
//! }
//!
//! // A one-server cluster decides on its own; pass `peers` for more.
//! let config = OmniPaxosConfig { configuration_id: 1, pid: 1, ..Default::default() };
//! let mut node: OmniPaxos<KeyValue, MemoryStorage<KeyValue>> =
//!     config.build(MemoryStorage::default()).expect("valid config");
//! # let _ = &mut node;
//! ```
//!
//! ## Tick it, append, and read what is decided
//!
//! ```
//! # use omnipaxos::{OmniPaxos, OmniPaxosConfig, macros::Entry, util::LogEntry};
//! # use omnipaxos_storage::memory_storage::MemoryStorage;
//! # #[derive(Clone, Debug, Entry)]
//! # struct KeyValue { key: String, value: u64 }
//! # let config = OmniPaxosConfig { configuration_id: 1, pid: 1, ..Default::default() };
//! # let mut node: OmniPaxos<KeyValue, MemoryStorage<KeyValue>> = config.build(MemoryStorage::default()).unwrap();
//! // Leader election runs in rounds of `election_tick_timeout` ticks.
//! while !node.is_leader() {
//!     node.tick();
//! }
//! node.append(KeyValue { key: "a".into(), value: 1 }).expect("buffer has room");
//! assert_eq!(node.get_decided_idx(), 1);
//! match node.read(0) {
//!     Some(LogEntry::Decided(kv)) => assert_eq!(kv.value, 1),
//!     other => panic!("expected a decided entry, got {other:?}"),
//! }
//! ```
//!
//! ## Send and receive messages
//!
//! With peers, drain the outgoing messages after every call and hand each to
//! your network; feed every message that arrives to `handle_incoming`:
//!
//! ```no_run
//! # use omnipaxos::{OmniPaxos, messages::Message, storage::{Entry, Storage}};
//! # fn send<T: Entry>(_to: u64, _m: Message<T>) {}
//! # fn receive<T: Entry>() -> Vec<Message<T>> { Vec::new() }
//! fn drive<T: Entry, S: Storage<T>>(node: &mut OmniPaxos<T, S>, buf: &mut Vec<Message<T>>) {
//!     for m in receive() {
//!         node.handle_incoming(m);
//!     }
//!     node.tick(); // at a fixed interval, e.g. every 10 ms
//!     node.take_outgoing_messages(buf);
//!     for m in buf.drain(..) {
//!         send(m.get_receiver(), m);
//!     }
//! }
//! ```
//!
//! ## The user guide
//!
//! The book in the repository's `book/` explains each feature in a chapter
//! of its own, with examples that CI compiles and runs (`mdbook serve book`
//! shows it in a browser):
//!
//! * `book/src/omnipaxos.md`: the entry type, creating a node, the config
//!   and its TOML form, fail-recovery;
//! * `book/src/communication.md`: the message loop a driver runs;
//! * `book/src/reading_writing.md`: what `append` guarantees across leader
//!   changes, `append_tracked`, reading the log;
//! * `book/src/leader_election.md`: ticks, priorities, `try_become_leader`
//!   and the partial-connectivity scenarios;
//! * `book/src/storage.md` and `book/src/compaction.md`: the storages, their
//!   durability contract, trimming and snapshots;
//! * `book/src/reconfiguration.md` and `book/src/linearizable_reads.md`;
//! * `book/src/performance.md`: every figure, with the command that gives it;
//! * `book/src/faq.md`: every error variant, what it means and what to do.
//!
//! ## Features
//!
//! * `macros` — `#[derive(Entry)]` as [`macros::Entry`].
//! * `serde` — `Serialize`/`Deserialize` on messages and public data types.
//! * `toml_config` — [`OmniPaxosConfig::with_toml`].
//! * `logging` — structured logs through `slog`, to `logger_file_path`.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod ballot;
mod ballot_leader_election;
mod clock;
mod config;
pub mod errors;
mod logging;
pub mod messages;
mod migration;
pub mod omni_paxos;
mod quorum;
mod reconfiguration;
mod sequence_paxos;
pub mod storage;
mod stragglers;
pub mod ui;
pub mod util;

pub use crate::{
    ballot::Ballot,
    config::{FlexibleQuorum, OmniPaxosConfig},
    errors::{CompactionErr, ConfigError, ProposeErr, ReconfigurationRequest, StorageError},
    migration::{Migration, MigrationStage, MigrationStatus, SourceStatus},
    omni_paxos::{OmniPaxos, ProposalId},
    sequence_paxos::{Phase, ReadError, ReadId, Role},
    util::{ConfigurationEnd, ConfigurationId, DecidedRead, LogEntry, NodeId, StopSign},
};

/// `#[derive(Entry)]` (feature `macros`).
#[cfg(feature = "macros")]
pub mod macros {
    pub use omnipaxos_macros::Entry;
}
