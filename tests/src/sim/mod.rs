//! The simulator: a cluster of servers in one thread, a seeded network
//! between them, and storage that survives a crash.
//!
//! | file | concern |
//! | --- | --- |
//! | [`cluster`] | [`SimCluster`](cluster::SimCluster): servers, `step`, `run_until`, crash and restart, proposals; its links (`cluster/links.rs`), reconfiguration (`cluster/reconfiguration.rs`) and invariant checks (`cluster/checks.rs`) |
//! | [`network`] | [`Network`](network::Network): in-flight messages, loss, duplication, delay, link cuts |
//! | [`options`] | [`SimOptions`](options::SimOptions): the seed and every knob of a run, including the storage kind |
//! | [`storage`] | [`SharedStorage`](storage::SharedStorage): a crash-surviving handle on `MemoryStorage` or `PersistentStorage` |
//! | [`value`] | [`Value`](value::Value): the entry type, unique per proposal |

pub mod cluster;
pub mod network;
pub mod options;
pub mod storage;
pub mod value;
