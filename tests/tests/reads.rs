//! Linearizable reads: a read point covers every write that completed before
//! the read began, on the leader and through a follower, and a deposed
//! leader cut off from the quorum can never hand one out.

use omnipaxos::ReadId;
use omnipaxos_tests::{SimCluster, SimOptions};
use pretty_assertions::assert_eq;

/// Ticks per heartbeat round in these tests (the default).
const ETT: u64 = 10;

/// Steps until `pid` reports the read point of `id`, and returns it.
fn poll(cluster: &mut SimCluster, pid: u64, id: ReadId, max_ticks: u64) -> u64 {
    let mut buf = Vec::new();
    for _ in 0..max_ticks {
        cluster.node_mut(pid).take_read_points(&mut buf);
        if let Some(&(_, point)) = buf.iter().find(|(r, _)| *r == id) {
            return point;
        }
        cluster.step();
    }
    panic!("server {pid}: read {id:?} got no read point within {max_ticks} ticks");
}

#[test]
fn a_read_on_the_leader_covers_every_decided_write() {
    let mut cluster = SimCluster::new(&[1, 2, 3], SimOptions::default());
    let leader = cluster.wait_for_leader(4 * ETT);
    let values: Vec<_> = (0..7).map(|_| cluster.propose_new(leader)).collect();
    cluster.run_until(|c| values.iter().all(|v| c.all_live_decided(v)), 4 * ETT);
    let id = cluster.node_mut(leader).request_read().unwrap();
    let point = poll(&mut cluster, leader, id, 4 * ETT);
    assert_eq!(point, 7);
}

#[test]
fn a_read_through_a_follower_covers_writes_the_follower_has_not_learned() {
    let mut cluster = SimCluster::new(&[1, 2, 3], SimOptions::default());
    let leader = cluster.wait_for_leader(4 * ETT);
    let follower = cluster.others(leader)[0];
    // The follower misses the writes: its link from the leader is cut.
    cluster.cut(leader, follower);
    let values: Vec<_> = (0..5).map(|_| cluster.propose_new(leader)).collect();
    cluster.run_until(|c| values.iter().all(|v| c.decided_by_any(v)), 4 * ETT);
    assert_eq!(cluster.node(follower).get_decided_idx(), 0);
    cluster.heal(leader, follower);
    let id = cluster.node_mut(follower).request_read().unwrap();
    let point = poll(&mut cluster, follower, id, 6 * ETT);
    assert!(point >= 5, "read point {point} misses decided writes");
}

#[test]
fn a_read_at_a_deposed_leader_covers_the_writes_of_its_successor() {
    // Quorum loss: the old leader reaches only server `hub`, which reaches
    // everyone; `hub` takes over and decides new writes. A read started at
    // the old leader afterwards must see them: the old leader cannot confirm
    // a read point of its own (no write quorum still promises its ballot),
    // so whatever point it hands out comes from `hub`.
    let ids = [1, 2, 3, 4, 5];
    let mut cluster = SimCluster::new(&ids, SimOptions::default());
    let old = cluster.wait_for_leader(4 * ETT);
    let hub = cluster.others(old)[0];
    let mut links = Vec::new();
    for &a in &ids {
        for &b in &ids {
            if a != b && (a == hub || b == hub) {
                links.push((a, b));
            }
        }
    }
    cluster.only_links(&links);
    cluster.run_until(|c| c.leader() == Some(hub), 8 * ETT);
    let values: Vec<_> = (0..4).map(|_| cluster.propose_new(hub)).collect();
    cluster.run_until(|c| values.iter().all(|v| c.decided_by_any(v)), 4 * ETT);
    let decided_before = cluster.decided_log().len() as u64;
    let id = cluster.node_mut(old).request_read().unwrap();
    let point = poll(&mut cluster, old, id, 10 * ETT);
    assert!(
        point >= decided_before,
        "read point {point} misses writes decided before the read ({decided_before})"
    );
}
