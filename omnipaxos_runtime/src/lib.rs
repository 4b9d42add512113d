//! A tokio runtime for [`omnipaxos`]: it drives one server's protocol state
//! machine, hands messages in and out through mpsc channels, and gives an
//! async API whose `append` resolves when the entry is decided.
//!
//! ```no_run
//! use omnipaxos::macros::Entry;
//! use omnipaxos_runtime::{NodeConfig, OmniPaxosHandle, OmniPaxosNode};
//! use omnipaxos_storage::memory_storage::MemoryStorage;
//!
//! #[derive(Clone, Debug, Entry, serde::Serialize, serde::Deserialize)]
//! struct KeyValue {
//!     key: String,
//!     value: u64,
//! }
//!
//! # async fn run() -> Result<(), omnipaxos_runtime::RuntimeError> {
//! let mut node_conf = NodeConfig::default();
//! node_conf.set_pid(2);
//! node_conf.set_peers(vec![1, 3]);
//! let storage = MemoryStorage::<KeyValue>::default();
//! let OmniPaxosHandle { omni_paxos, seq_paxos_handle, ble_handle } =
//!     OmniPaxosNode::new(node_conf, storage);
//! // Connect `seq_paxos_handle` and `ble_handle` to the network (or use
//! // `omnipaxos_runtime::net`), then:
//! let idx = omni_paxos.append(KeyValue { key: "a".into(), value: 1 }).await?;
//! println!("decided at index {idx}");
//! # drop((seq_paxos_handle, ble_handle));
//! # Ok(())
//! # }
//! ```
//!
//! The node runs as one task on the caller's tokio runtime (current-thread
//! or multi-thread). It owns the protocol and its storage; every method on
//! [`OmniPaxosNode`] is a message to that task, so handles are cheap to
//! clone and use from any task.
//!
//! For monitoring, a node tells its state now ([`OmniPaxosNode::status`]) and
//! what it counted since it started ([`OmniPaxosNode::metrics`]: leader
//! changes, elections started here, appends and linearizable reads by
//! outcome), and the transport counts messages and bytes per peer
//! ([`net::Transport::stats`]). The runtime exports nothing itself: an
//! application turns these plain structs into its own monitoring's format,
//! as the kv_store example does for Prometheus.

mod config;
mod error;
mod metrics;
pub mod net;
mod node;

pub use crate::{
    config::NodeConfig,
    error::RuntimeError,
    metrics::{NodeMetrics, OutcomeCounts},
    node::{
        BLEHandle, DecidedBatch, DecidedEntries, NodeStatus, OmniPaxosHandle, OmniPaxosNode,
        PendingAppend, SequencePaxosHandle,
    },
};
pub use omnipaxos;
