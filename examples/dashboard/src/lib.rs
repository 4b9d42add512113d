//! The `dashboard` example: a local omnipaxos cluster in one process, with the
//! terminal dashboard (`omnipaxos_ui`) attached to one node and keys that
//! crash nodes and cut links, so a viewer watches the cluster react.
//!
//! The binary (`src/main.rs`) wires these together:
//!
//! * [`cluster::LocalCluster`]: runtime nodes joined by routers that drop
//!   messages per directed link, with the partitions of the Omni-Paxos paper;
//! * [`storage::KeptStorage`]: each node's memory storage, kept across its
//!   crash so that a restart recovers;
//! * [`keys::Controls`]: which key does what.
#![deny(missing_docs)]

pub mod cluster;
pub mod keys;
pub mod storage;
