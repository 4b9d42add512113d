//! Real states for the tests: small clusters run by the deterministic
//! simulator, so that the views are tested on what `get_ui_states` really
//! returns (the structs are `#[non_exhaustive]` and cannot be made up here).

use omnipaxos::ui::OmniPaxosStates;
use omnipaxos_tests::{SimCluster, SimOptions};

/// Ticks per heartbeat round (the simulator's default).
pub(crate) const ETT: u64 = 10;

pub(crate) fn cluster(ids: &[u64]) -> SimCluster {
    let options = SimOptions::default();
    assert_eq!(options.election_tick_timeout, ETT);
    SimCluster::new(ids, options)
}

pub(crate) fn three_node_cluster() -> SimCluster {
    cluster(&[1, 2, 3])
}

pub(crate) fn states_at(cluster: &SimCluster, pid: u64) -> OmniPaxosStates {
    cluster.node(pid).get_ui_states()
}

/// Every running server's states, as `tick_cluster` gets them.
pub(crate) fn all_states(cluster: &SimCluster) -> Vec<OmniPaxosStates> {
    cluster
        .live_ids()
        .iter()
        .map(|&p| states_at(cluster, p))
        .collect()
}
