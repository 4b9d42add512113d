//! Replication: appends are decided on every server, whichever server takes
//! them, on a hostile network, and across crashes of followers and leaders.

use omnipaxos_tests::{SimCluster, SimOptions, Value};
use pretty_assertions::assert_eq;
use rand::Rng;

/// Ticks per heartbeat round in these tests (the default).
const ETT: u64 = 10;
/// Ticks before an unanswered message is resent (the default).
const RESEND: u64 = 20;

fn options() -> SimOptions {
    let options = SimOptions::default();
    assert_eq!(options.election_tick_timeout, ETT);
    assert_eq!(options.resend_message_tick_timeout, RESEND);
    options
}

/// Asserts every server's decided log is `expected`, entry for entry.
fn assert_all_decided(cluster: &SimCluster, expected: &[Value]) {
    for &pid in cluster.ids() {
        assert_eq!(cluster.decided_entries(pid), expected, "server {pid}");
    }
}

#[test]
fn an_append_on_the_leader_is_decided_on_every_server() {
    let mut cluster = SimCluster::new(&[1, 2, 3], options());
    let leader = cluster.wait_for_leader(4 * ETT);
    let values: Vec<_> = (0..5).map(|_| cluster.propose_new(leader)).collect();
    cluster.run_until(|c| values.iter().all(|v| c.all_live_decided(v)), 2 * ETT);
    assert_all_decided(&cluster, &values);
}

#[test]
fn an_append_on_a_follower_is_forwarded_and_decided_on_every_server() {
    let mut cluster = SimCluster::new(&[1, 2, 3], options());
    let leader = cluster.wait_for_leader(4 * ETT);
    let follower = cluster.others(leader)[0];
    let values: Vec<_> = (0..5).map(|_| cluster.propose_new(follower)).collect();
    cluster.run_until(|c| values.iter().all(|v| c.all_live_decided(v)), 2 * ETT);
    assert_all_decided(&cluster, &values);
}

#[test]
fn a_forward_lost_on_a_cut_link_is_retried_and_decided_exactly_once() {
    let mut cluster = SimCluster::new(&[1, 2, 3], options());
    let leader = cluster.wait_for_leader(4 * ETT);
    let first = cluster.propose_new(leader);
    cluster.run_until(|c| c.all_live_decided(&first), 2 * ETT);

    let follower = cluster.others(leader)[0];
    cluster.cut(follower, leader);
    let value = cluster.propose_new(follower);
    // Shorter than a heartbeat round, so leadership stays put, but long
    // enough to lose the forward (sent in the very next step).
    cluster.run_for(ETT / 2);
    assert!(cluster.network().stats().dropped_by_cut > 0);
    assert!(
        !cluster.decided_by_any(&value),
        "the forward was cut off, so the leader cannot have decided it yet"
    );

    cluster.heal_one_way(follower, leader);
    // The retry goes out when the forward's resend timer fires.
    cluster.run_until(|c| c.all_live_decided(&value), RESEND + 2 * ETT);
    // Give any further (spurious) retries time to arrive and be appended.
    cluster.run_for(3 * RESEND);
    assert_all_decided(&cluster, &[first, value]);
}

#[test]
fn a_lossy_duplicating_reordering_network_still_decides_every_entry_exactly_once() {
    let options = SimOptions {
        seed: 7,
        drop_probability: 0.05,
        duplicate_probability: 0.05,
        min_delay_ticks: 0,
        max_delay_ticks: 3,
        ..options()
    };
    let mut cluster = SimCluster::new(&[1, 2, 3], options);
    cluster.wait_for_leader(8 * ETT);
    let mut values = Vec::new();
    for _ in 0..40 {
        let ids = cluster.ids().to_vec();
        let at = ids[cluster.rng().gen_range(0..ids.len())];
        values.push(cluster.propose_new(at));
        cluster.run_for(2);
    }
    cluster.run_until(|c| values.iter().all(|v| c.all_live_decided(v)), 60 * ETT);
    let stats = cluster.network().stats();
    assert!(
        stats.dropped_randomly > 0 && stats.duplicated > 0,
        "{stats:?}"
    );

    let log = cluster.decided_entries(1);
    let mut sorted = log.clone();
    sorted.sort();
    let mut proposed = values.clone();
    proposed.sort();
    assert_eq!(sorted, proposed, "every proposal decided exactly once");
    assert_all_decided(&cluster, &log);
}

#[test]
fn a_restarted_follower_recovers_from_its_storage_and_catches_up() {
    let mut cluster = SimCluster::new(&[1, 2, 3], options());
    let leader = cluster.wait_for_leader(4 * ETT);
    let mut values: Vec<_> = (0..3).map(|_| cluster.propose_new(leader)).collect();
    cluster.run_until(|c| values.iter().all(|v| c.all_live_decided(v)), 2 * ETT);

    let follower = cluster.others(leader)[0];
    cluster.crash(follower);
    values.extend((0..5).map(|_| cluster.propose_new(leader)));
    cluster.run_until(|c| values.iter().all(|v| c.all_live_decided(v)), 2 * ETT);
    assert_eq!(
        cluster.decided_idx(follower),
        3,
        "down, so it missed the last five"
    );

    cluster.restart(follower);
    // The restarted follower asks the leader to resynchronise it; that
    // request (or the leader's prepare) may need a resend.
    cluster.run_until(
        |c| values.iter().all(|v| c.is_decided(follower, v)),
        RESEND + 4 * ETT,
    );
    let value = cluster.propose_new(follower);
    values.push(value);
    cluster.run_until(|c| c.all_live_decided(&value), 2 * ETT);
    assert_all_decided(&cluster, &values);
}

#[test]
fn a_restarted_leader_recovers_from_its_storage_and_catches_up() {
    let mut cluster = SimCluster::new(&[1, 2, 3], options());
    let old = cluster.wait_for_leader(4 * ETT);
    let mut values: Vec<_> = (0..3).map(|_| cluster.propose_new(old)).collect();
    cluster.run_until(|c| values.iter().all(|v| c.all_live_decided(v)), 2 * ETT);

    cluster.crash(old);
    cluster.run_until(|c| c.agreed_leader().is_some_and(|l| l != old), 4 * ETT);
    let new = cluster.agreed_leader().expect("awaited above");
    values.extend((0..5).map(|_| cluster.propose_new(new)));
    cluster.run_until(|c| values.iter().all(|v| c.all_live_decided(v)), 2 * ETT);

    cluster.restart(old);
    cluster.run_until(
        |c| values.iter().all(|v| c.is_decided(old, v)),
        RESEND + 4 * ETT,
    );
    let value = cluster.propose_new(old);
    values.push(value);
    cluster.run_until(|c| c.all_live_decided(&value), 4 * ETT);
    assert_all_decided(&cluster, &values);
}
