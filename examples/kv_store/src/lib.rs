//! A replicated key-value store on `omnipaxos`: the project's flagship example.
//!
//! Each server is one process: an [`omnipaxos_runtime`] node with
//! persistent storage and the TCP transport, a state machine that applies
//! the decided log, and an HTTP/JSON API for clients. One binary, `kv_store`,
//! runs a server, talks to one as a client, or runs a whole local cluster as
//! a demo.
//!
//! The pieces, in the order a write flows through them:
//! - [`api`]: the HTTP routes and JSON bodies.
//! - [`server`]: a server process (HTTP API, node, transport, applier).
//! - [`store`]: the log entry [`KVCommand`] and the state machine [`KvState`],
//!   with duplicate suppression and snapshots.
//! - [`client`]: [`KvClient`], a typed client of the API.
//! - [`cluster`]: a local cluster of server processes, for the demo and tests,
//!   with [`proxy`] on every link when a test needs to cut one.
//! - [`demo`]: `kv_store demo`, the guided tour.
//! - [`checker`]: a linearizability checker for client histories.

pub mod api;
pub mod checker;
pub mod client;
pub mod cluster;
pub mod demo;
pub mod load;
pub mod proxy;
pub mod server;
pub mod store;
pub mod top;

pub use client::{ClientError, KvClient};
pub use server::{Server, ServerError, ServerOptions, StorageChoice};
pub use store::{CommandId, CommandResult, KVCommand, KVSnapshot, KvState, Op, SessionId};
