//! A replicated key-value store on `omnipaxos`, small enough to read in one sitting.
//!
//! Every replica owns an [`OmniPaxos`](omnipaxos::OmniPaxos) instance on its own
//! thread and applies the decided log to a [`KVStore`]. The replicas talk over
//! `std::sync::mpsc` channels, so the whole cluster runs in one process; a later
//! version puts each replica in its own process behind TCP.
//!
//! The pieces, in the order data flows through them:
//! - [`KVCommand`]: what goes into the log (`#[derive(Entry)]`).
//! - `node`: the driver loop of one replica (tick, feed, send, apply).
//! - `cluster`: threads, channels, and a condition variable to wait on.
//! - [`run_demo`]: the scripted scenario behind `cargo run -p kv_store -- demo`.

mod cluster;
mod demo;
mod node;
mod store;

pub use demo::{DemoError, DemoOptions, DemoReport, run_demo};
pub use store::{KVCommand, KVStore, RequestId};
