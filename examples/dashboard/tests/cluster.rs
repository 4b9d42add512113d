//! The dashboard's local cluster on paused tokio time: the crashes, restarts
//! and partitions its keys trigger do what the help bar says. Waiting is
//! stepping the paused clock by a tick at a time, bounded.

use dashboard::cluster::{ClusterError, LocalCluster, Put};
use omnipaxos::{NodeId, util::LogEntry};
use std::time::Duration;

const TICK: Duration = Duration::from_millis(10);
/// Ticks allowed for an election or a catch-up: a heartbeat round is ten
/// ticks, and the paper's partitions recover within four rounds.
const BOUND: u32 = 100;

/// Steps the paused clock a tick at a time until `done` holds; fails after
/// `BOUND` ticks.
async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..BOUND {
        if done() {
            return;
        }
        // Time is paused: this advances the clock by one tick.
        tokio::time::sleep(TICK).await;
    }
    panic!("{what} did not happen within {BOUND} ticks");
}

async fn leader_of(cluster: &LocalCluster) -> NodeId {
    wait_for("a leader", || cluster.leader().is_some()).await;
    cluster.leader().expect("checked above")
}

fn cuts(cluster: &LocalCluster) -> Vec<(NodeId, NodeId)> {
    let ids = cluster.ids();
    ids.iter()
        .flat_map(|&a| ids.iter().map(move |&b| (a, b)))
        .filter(|&(a, b)| cluster.is_cut(a, b))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn crashing_the_leader_elects_another_and_the_crashed_node_restarts_on_its_own_storage() {
    let mut cluster = LocalCluster::start(3, TICK);
    let old = leader_of(&cluster).await;
    let idx = cluster
        .node(old)
        .expect("running")
        .append(Put(7))
        .await
        .expect("decided");

    assert_eq!(cluster.crash_leader().await, Ok(old));
    assert_eq!(cluster.down(), vec![old]);
    assert_eq!(
        cluster.crash(old).await,
        Err(ClusterError::AlreadyDown(old))
    );
    wait_for("a new leader", || {
        cluster.leader().is_some_and(|l| l != old)
    })
    .await;

    // Cut off from everyone, the restarted node can only have the entry
    // from the storage it had before the crash.
    for &peer in cluster.ids() {
        if peer != old {
            cluster.cut_both(old, peer).expect("a link");
        }
    }
    cluster.restart(old).expect("down, so it restarts");
    assert_eq!(cluster.restart(old), Err(ClusterError::AlreadyUp(old)));
    let restarted = cluster.node(old).expect("running again");
    assert_eq!(restarted.read(idx).await, Some(LogEntry::Decided(Put(7))));

    assert_eq!(cluster.heal_all(), 4);
    let leader = leader_of(&cluster).await;
    let idx = cluster
        .node(leader)
        .expect("running")
        .append(Put(8))
        .await
        .expect("decided");
    wait_for("the restarted node to catch up", || {
        cluster
            .node(old)
            .is_some_and(|n| n.status().decided_idx > idx)
    })
    .await;
    cluster.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_chained_partition_cuts_the_leader_from_one_follower_both_ways() {
    let cluster = LocalCluster::start(5, TICK);
    let leader = leader_of(&cluster).await;
    cluster.cut(2, 3).expect("a link");
    let (l, far) = cluster.chained().expect("a leader is known");
    assert_eq!(l, leader);
    assert_ne!(far, leader);
    // The earlier cut is healed first: the partition is exactly the paper's.
    let mut expected = vec![(leader, far), (far, leader)];
    expected.sort_unstable();
    assert_eq!(cuts(&cluster), expected);
    // The cluster still decides.
    let middle = cluster
        .ids()
        .iter()
        .copied()
        .find(|&p| p != leader && p != far)
        .expect("five nodes");
    cluster
        .node(middle)
        .expect("running")
        .append(Put(1))
        .await
        .expect("decided under the chained partition");
    cluster.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_quorum_loss_partition_leaves_only_the_hubs_links_and_the_hub_takes_over() {
    let cluster = LocalCluster::start(5, TICK);
    let (leader, hub) = {
        leader_of(&cluster).await;
        cluster.quorum_loss().expect("a leader is known")
    };
    assert_ne!(hub, leader);
    for (a, b) in cuts(&cluster) {
        assert!(a != hub && b != hub, "{a}->{b} is cut but touches the hub");
    }
    assert_eq!(
        cuts(&cluster).len(),
        4 * 3,
        "every link among the four others, both ways"
    );
    cluster
        .node(hub)
        .expect("running")
        .append(Put(1))
        .await
        .expect("decided under quorum loss");
    wait_for("the hub to lead", || cluster.leader() == Some(hub)).await;
    cluster.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn commands_on_unknown_nodes_or_a_node_with_itself_are_refused() {
    let mut cluster = LocalCluster::start(2, TICK);
    assert_eq!(cluster.cut(1, 9), Err(ClusterError::UnknownNode(9)));
    assert_eq!(cluster.cut(1, 1), Err(ClusterError::SameNode(1)));
    assert_eq!(cluster.crash(9).await, Err(ClusterError::UnknownNode(9)));
    assert_eq!(cluster.chained(), Err(ClusterError::TooFewNodes));
    assert_eq!(cluster.heal_both(1, 2), Ok(false));
    cluster.shutdown().await;
}
