//! Flexible quorums: leader election and Prepare wait for the read quorum,
//! deciding waits for the write quorum, and the cluster keeps deciding with
//! exactly as many servers as those quorums need.

use omnipaxos::FlexibleQuorum;
use omnipaxos_tests::{SimCluster, SimOptions};

/// Ticks per heartbeat round in these tests (the default).
const ETT: u64 = 10;

/// Five servers, read quorum 4, write quorum 2.
fn cluster() -> SimCluster {
    let options = SimOptions {
        flexible_quorum: Some(FlexibleQuorum {
            read_quorum_size: 4,
            write_quorum_size: 2,
        }),
        ..SimOptions::default()
    };
    SimCluster::new(&[1, 2, 3, 4, 5], options)
}

#[test]
fn with_n_minus_write_followers_crashed_the_leader_still_decides() {
    // Write quorum 2: the leader and one follower decide; three followers may be down.
    let mut cluster = cluster();
    let leader = cluster.wait_for_leader(4 * ETT);
    for pid in cluster.others(leader).into_iter().take(3) {
        cluster.crash(pid);
    }
    let values: Vec<_> = (0..5).map(|_| cluster.propose_new(leader)).collect();
    cluster.run_until(|c| values.iter().all(|v| c.all_live_decided(v)), 4 * ETT);
}

#[test]
fn with_write_minus_one_servers_including_the_leader_crashed_a_new_leader_decides() {
    // Killing write - 1 = 1 server (the leader) leaves 4 = a read quorum, so
    // a new leader is elected, prepares, and decides.
    let mut cluster = cluster();
    let leader = cluster.wait_for_leader(4 * ETT);
    let first = cluster.propose_new(leader);
    cluster.run_until(|c| c.all_live_decided(&first), 4 * ETT);
    cluster.crash(leader);
    let new_leader = cluster.wait_for_leader(8 * ETT);
    assert_ne!(new_leader, leader);
    let values: Vec<_> = (0..5).map(|_| cluster.propose_new(new_leader)).collect();
    cluster.run_until(|c| values.iter().all(|v| c.all_live_decided(v)), 4 * ETT);
}

#[test]
fn without_a_read_quorum_no_new_leader_is_elected_and_nothing_new_is_decided() {
    // Two servers down (the leader among them) leaves 3 < read quorum 4: no
    // server may become leader, so no new entry can be decided, which is what
    // keeps a decision of the old write quorum from being missed.
    let mut cluster = cluster();
    let leader = cluster.wait_for_leader(4 * ETT);
    cluster.crash(leader);
    cluster.crash(cluster.others(leader)[0]);
    let stuck = cluster.live_ids()[0];
    let value = cluster.propose_new(stuck);
    cluster.run_for(20 * ETT);
    assert!(!cluster.decided_by_any(&value));
    assert!(
        cluster
            .live_ids()
            .iter()
            .all(|&p| !cluster.node(p).is_leader())
    );
}
