//! A deterministic cluster simulator for `omnipaxos`, and the safety
//! properties it checks.
//!
//! The protocol crate is sans-IO: time enters only through
//! [`OmniPaxos::tick`](omnipaxos::OmniPaxos::tick) and messages only through
//! `handle_incoming` / `take_outgoing_messages`. That makes a whole cluster
//! runnable inside one thread, with every source of nondeterminism (message
//! loss, duplication, delay, partitions, crashes) drawn from one seeded
//! [`ChaCha8Rng`](rand_chacha::ChaCha8Rng). A run is therefore a pure function
//! of its seed and its script, and a failure is replayed by rerunning the same
//! seed.
//!
//! # The pieces
//!
//! * [`SimCluster`] owns N servers (any non-zero, not necessarily contiguous
//!   ids), each an [`OmniPaxos<Value, SharedStorage>`](omnipaxos::OmniPaxos).
//!   [`SimCluster::step`] advances logical time by one tick: it ticks every
//!   live server, moves their outgoing messages into the network, and delivers
//!   the messages that are due. [`SimCluster::run_until`] steps until a
//!   predicate holds and panics loudly, with the seed and a replay command,
//!   when it does not within a bound.
//! * [`Network`] queues every message with the tick it is due, and drops,
//!   duplicates and delays it as [`SimOptions`] say. Reordering falls out of
//!   random delays. Links can be cut one way ([`SimCluster::cut`]), both ways,
//!   per node ([`SimCluster::isolate`]) and healed again.
//! * [`SharedStorage`] is a [`MemoryStorage`](omnipaxos_storage::memory_storage::MemoryStorage)
//!   behind a shared handle, so that a crashed server's state outlives its
//!   `OmniPaxos` value: [`SimCluster::restart`] rebuilds the server on the very
//!   same storage and calls `fail_recovery()`, as a real process would after a
//!   crash. With [`SimStorage::Persistent`] in the options, each server runs on a
//!   [`PersistentStorage`](omnipaxos_storage::persistent_storage::PersistentStorage)
//!   in a temporary directory instead, and a crash and a restart close the
//!   files and reopen the directory, so recovery goes through the disk.
//! * [`join_bench`] measures a server joining a configuration whose decided
//!   log is large, pulling it from one old server or from three, over a
//!   bandwidth-limited network model (`cargo bench -p omnipaxos_tests
//!   --bench join`).
//! * [`invariants`] holds the safety properties of the Omni-Paxos paper as named
//!   code, one file each. The cluster checks all of them after every step and
//!   panics with the property's name, the tick and the seed on a violation.
//!
//! # Example
//!
//! ```
//! use omnipaxos_tests::{SimCluster, SimOptions};
//!
//! let mut cluster = SimCluster::new(&[5, 7, 9], SimOptions::default());
//! let leader = cluster.wait_for_leader(100);
//! let value = cluster.propose_new(leader);
//! cluster.run_until(|c| c.all_live_decided(&value), 50);
//! assert_eq!(cluster.decided_entries(7).last(), Some(&value));
//! ```
//!
//! # Replaying a failure
//!
//! Every panic raised by the simulator names the seed and prints a one-line
//! command that reruns the failing test; a failed test assertion prints the
//! seed, tick and command too (when the cluster is dropped during the panic).
//! The failure message of [`SimCluster::run_until`] ends with
//! [`SimCluster::describe`], one line of state per server. Prefix the replay
//! command with `SIM_TRACE=1` to print every delivered message and every
//! command, tick by tick. The randomized soak (`tests/soak.rs`) takes
//! `SOAK_SEED=<n>` to rerun one seed and `SOAK_SEEDS=<count>` to change how
//! many seeds it explores; its sibling on persistent storage
//! (`tests/soak_persistent.rs`) takes `PERSISTENT_SOAK_SEED` and
//! `PERSISTENT_SOAK_SEEDS`. Persistent servers keep their files under
//! `/dev/shm` where it exists; set `SIM_STORAGE_DIR` to use another directory.
#![deny(missing_docs)]

pub mod invariants;
pub mod join_bench;
pub mod sim;
pub mod soak;

pub use sim::{
    cluster::SimCluster,
    network,
    network::Network,
    options::{SimOptions, SimStorage},
    storage::{SharedStorage, UnsyncedLoss},
    value::{Value, ValueSnapshot},
};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
mod readme_doctests {}
