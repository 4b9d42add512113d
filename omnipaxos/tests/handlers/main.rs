//! One message into a fresh node, then the exact messages out and the exact
//! storage effect: a test per handler (STYLE.md 13).
//!
//! One test binary, a module per topic; `fixtures` builds the nodes and
//! messages the tests start from.

#[path = "../common/mod.rs"]
mod common;
mod decided_sync;
mod envelope;
mod fixtures;
mod follower;
mod forwarding;
mod leader;
mod reads;
mod reconfiguration;
mod regressions;
