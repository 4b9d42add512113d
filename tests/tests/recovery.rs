//! Fail-recovery on `PersistentStorage`: servers crash at many points of a
//! workload and come back by reopening their directories, and no decided
//! entry is ever lost.
//!
//! Every cluster here runs with [`SimStorage::Persistent`]: each server keeps
//! its log and state in files, a crash closes them and reopens the directory
//! (checking that it reads back exactly what was written), and a restart
//! reopens it once more before building `OmniPaxos` and calling
//! `fail_recovery()`. The invariants run after every tick and every command,
//! so "no decided entry is lost" is checked throughout, on crashed servers'
//! files too; the tests add the end-to-end views (decided logs before and
//! after, compaction state) and demand that the cluster decides new entries
//! afterwards.

use omnipaxos::util::LogEntry;
use omnipaxos_tests::{SimCluster, SimOptions, SimStorage, Value, ValueSnapshot};
use pretty_assertions::assert_eq;

/// Ticks per heartbeat round in these tests (the default).
const ETT: u64 = 10;
/// Ticks before an unanswered message is resent (the default).
const RESEND: u64 = 20;
/// Ticks a recovered cluster gets to decide a fresh entry everywhere.
const RECOVERY_TICKS: u64 = RESEND + 8 * ETT;

/// Default knobs, persistent storage, the given seed.
fn persistent(seed: u64) -> SimOptions {
    let options = SimOptions {
        seed,
        storage: SimStorage::Persistent,
        ..SimOptions::default()
    };
    assert_eq!(options.election_tick_timeout, ETT);
    assert_eq!(options.resend_message_tick_timeout, RESEND);
    options
}

/// Proposes one fresh value at the current leader, if there is one, and
/// remembers it. Values handed to a leader that crashes before replicating
/// them may never be decided; the checks only demand what was decided.
fn propose_at_leader(cluster: &mut SimCluster, proposed: &mut Vec<Value>) {
    if let Some(leader) = cluster.leader() {
        let value = cluster.next_value();
        if cluster.propose(leader, value).is_ok() {
            proposed.push(value);
        }
    }
}

/// Brings every server up, then demands that a fresh entry is decided on
/// every server, that every server's decided log equals the cluster's, and
/// that the cluster's decided log still starts with `decided_before`.
fn recover_and_decide(cluster: &mut SimCluster, decided_before: &[Value]) {
    for pid in cluster.ids().to_vec() {
        if !cluster.is_up(pid) {
            cluster.restart(pid);
        }
    }
    let leader = cluster.wait_for_leader(RECOVERY_TICKS);
    let fresh = cluster.propose_new(leader);
    cluster.run_until(|c| c.all_live_decided(&fresh), RECOVERY_TICKS);
    let log = cluster.decided_log().to_vec();
    assert!(
        log.starts_with(decided_before),
        "decided entries were lost: before {decided_before:?}, now {log:?}"
    );
    assert_eq!(log.last(), Some(&fresh));
    for &pid in cluster.ids() {
        assert_eq!(cluster.decided_entries(pid), log, "server {pid}");
    }
}

/// Ticks of proposals in the crash-point sweeps.
const WORKLOAD_TICKS: u64 = 30;

#[test]
fn a_follower_restarted_at_any_point_of_a_workload_loses_no_decided_entry() {
    for crash_at in 0..WORKLOAD_TICKS {
        // The downtime varies too, from one tick to more than an election
        // timeout, so the restart lands in different phases as well.
        let down_for = 1 + (crash_at * 7) % (2 * ETT);
        let mut cluster = SimCluster::new(&[1, 2, 3], persistent(crash_at));
        let leader = cluster.wait_for_leader(4 * ETT);
        let follower = cluster.others(leader)[crash_at as usize % 2];
        let mut proposed = Vec::new();
        let mut decided_at_crash = Vec::new();
        for tick in 0..WORKLOAD_TICKS + down_for {
            if tick == crash_at {
                decided_at_crash = cluster.decided_entries(follower);
                cluster.crash(follower);
            }
            if tick == crash_at + down_for {
                cluster.restart(follower);
                // The restarted server finds what it had decided in its files.
                let recovered = cluster.decided_entries(follower);
                assert!(
                    recovered.starts_with(&decided_at_crash),
                    "crash at {crash_at}: server {follower} decided {decided_at_crash:?} \
                     before the crash and recovered {recovered:?}"
                );
            }
            if tick < WORKLOAD_TICKS {
                propose_at_leader(&mut cluster, &mut proposed);
            }
            cluster.step();
        }
        // The leader never changed, so every proposal is decided.
        cluster.run_until(
            |c| proposed.iter().all(|v| c.all_live_decided(v)),
            RECOVERY_TICKS,
        );
        assert_eq!(cluster.decided_log(), proposed, "crash at {crash_at}");
        let decided = proposed.clone();
        recover_and_decide(&mut cluster, &decided);
    }
}

#[test]
fn a_leader_restarted_at_any_point_of_a_workload_loses_no_decided_entry() {
    for crash_at in 0..WORKLOAD_TICKS {
        // Short outages come back before the others elect a new leader, long
        // ones after; both must keep every decided entry.
        let down_for = 1 + (crash_at * 11) % (4 * ETT);
        let mut cluster = SimCluster::new(&[1, 2, 3], persistent(100 + crash_at));
        let leader = cluster.wait_for_leader(4 * ETT);
        let mut proposed = Vec::new();
        let mut decided_at_crash = Vec::new();
        for tick in 0..WORKLOAD_TICKS + down_for {
            if tick == crash_at {
                decided_at_crash = cluster.decided_log().to_vec();
                cluster.crash(leader);
            }
            if tick == crash_at + down_for {
                cluster.restart(leader);
            }
            if tick < WORKLOAD_TICKS {
                propose_at_leader(&mut cluster, &mut proposed);
            }
            cluster.step();
        }
        // That every decided value was proposed, once, the invariants check.
        recover_and_decide(&mut cluster, &decided_at_crash);
    }
}

#[test]
fn a_majority_crashed_one_by_one_and_restarted_one_by_one_keeps_every_decided_entry() {
    // Each rotation crashes the servers in another order; the first one
    // crashed is the leader in some rotations and a follower in others.
    for rotation in 0..5_usize {
        let mut cluster = SimCluster::new(&[1, 2, 3, 4, 5], persistent(200 + rotation as u64));
        cluster.wait_for_leader(4 * ETT);
        let mut order = cluster.ids().to_vec();
        order.rotate_left(rotation);
        let victims = &order[..3];
        let mut proposed = Vec::new();
        for &victim in victims {
            for _ in 0..ETT {
                propose_at_leader(&mut cluster, &mut proposed);
                cluster.step();
            }
            cluster.crash(victim);
            // Give the survivors time to elect a leader if they still can.
            for _ in 0..3 * ETT {
                propose_at_leader(&mut cluster, &mut proposed);
                cluster.step();
            }
        }
        // With a majority down, nothing more can be decided.
        let stalled = cluster.decided_log().to_vec();
        for _ in 0..2 * ETT {
            propose_at_leader(&mut cluster, &mut proposed);
            cluster.step();
        }
        assert_eq!(cluster.decided_log(), stalled, "rotation {rotation}");

        for &victim in victims {
            cluster.restart(victim);
            cluster.run_for(3 * ETT);
        }
        recover_and_decide(&mut cluster, &stalled);
    }
}

#[test]
fn a_whole_cluster_crashed_and_restarted_comes_back_with_exactly_its_decided_logs() {
    // Crash every server at several points of a workload, including while
    // entries are accepted but not yet decided everywhere.
    for crash_at in [0, 1, 2, 3, 5, 8, 13, 21] {
        let mut cluster = SimCluster::new(&[1, 2, 3], persistent(300 + crash_at));
        cluster.wait_for_leader(4 * ETT);
        let mut proposed = Vec::new();
        for _ in 0..crash_at {
            propose_at_leader(&mut cluster, &mut proposed);
            cluster.step();
        }
        let ids = cluster.ids().to_vec();
        let before: Vec<Vec<Value>> = ids.iter().map(|&p| cluster.decided_entries(p)).collect();
        for &pid in &ids {
            cluster.crash(pid);
        }
        // While everyone is down, the files hold every decided log.
        let on_disk: Vec<Vec<Value>> = ids.iter().map(|&p| cluster.decided_entries(p)).collect();
        assert_eq!(on_disk, before, "crash at {crash_at}: read from the files");
        for &pid in &ids {
            cluster.restart(pid);
        }
        let recovered: Vec<Vec<Value>> = ids.iter().map(|&p| cluster.decided_entries(p)).collect();
        assert_eq!(recovered, before, "crash at {crash_at}: after restart");

        let longest = before.iter().max_by_key(|log| log.len()).cloned();
        recover_and_decide(&mut cluster, &longest.unwrap_or_default());
    }
}

/// A cluster of `ids` with a leader and `n` decided entries on every server.
fn with_decided(ids: &[u64], n: usize, seed: u64) -> (SimCluster, u64, Vec<Value>) {
    let mut cluster = SimCluster::new(ids, persistent(seed));
    let leader = cluster.wait_for_leader(4 * ETT);
    let values: Vec<_> = (0..n).map(|_| cluster.propose_new(leader)).collect();
    cluster.run_until(|c| values.iter().all(|v| c.all_live_decided(v)), 4 * ETT);
    (cluster, leader, values)
}

/// Asserts that server `pid` reads its log as the snapshot of
/// `values[..compacted]` followed by the decided `values[compacted..]`.
fn assert_compacted_log(cluster: &SimCluster, pid: u64, compacted: u64, values: &[Value]) {
    let node = cluster.node(pid);
    assert_eq!(node.get_compacted_idx(), compacted, "server {pid}");
    let decided = node.get_decided_idx();
    let read = node
        .read_entries(0..decided)
        .unwrap_or_else(|| panic!("server {pid} cannot read 0..{decided}"));
    let mut want = Vec::new();
    if compacted > 0 {
        match &read[0] {
            LogEntry::Snapshotted(s) => {
                assert_eq!(
                    (s.trimmed_idx, s.snapshot),
                    (compacted, ValueSnapshot::of(&values[..compacted as usize])),
                    "server {pid}"
                );
            }
            other => panic!("server {pid}: expected a snapshot below {compacted}, read {other:?}"),
        }
        want.push(read[0].clone());
    }
    want.extend(
        values[compacted as usize..decided as usize]
            .iter()
            .map(|&v| LogEntry::Decided(v)),
    );
    assert_eq!(read, want, "server {pid}");
}

#[test]
fn a_snapshot_survives_restarting_every_server_and_the_log_goes_on() {
    let (mut cluster, leader, mut values) = with_decided(&[1, 2, 3], 20, 400);
    cluster.node_mut(leader).snapshot(Some(12), false).unwrap();
    cluster.run_until(
        |c| c.ids().iter().all(|&p| c.node(p).get_compacted_idx() == 12),
        4 * ETT,
    );
    // Followers first, then the leader, then all at once.
    for pid in cluster.others(leader) {
        cluster.crash(pid);
        cluster.restart(pid);
        assert_compacted_log(&cluster, pid, 12, &values);
    }
    cluster.crash(leader);
    cluster.restart(leader);
    assert_compacted_log(&cluster, leader, 12, &values);
    let ids = cluster.ids().to_vec();
    for &pid in &ids {
        cluster.crash(pid);
    }
    for &pid in &ids {
        cluster.restart(pid);
        assert_compacted_log(&cluster, pid, 12, &values);
    }

    let leader = cluster.wait_for_leader(RECOVERY_TICKS);
    values.extend((0..5).map(|_| cluster.propose_new(leader)));
    cluster.run_until(
        |c| values.iter().all(|v| c.all_live_decided(v)),
        RECOVERY_TICKS,
    );
    for &pid in &ids {
        assert_compacted_log(&cluster, pid, 12, &values);
    }
}

#[test]
fn a_follower_down_during_compaction_recovers_from_its_files_and_the_leaders_snapshot() {
    let (mut cluster, leader, mut values) = with_decided(&[1, 2, 3], 8, 401);
    let [lagging, other] = cluster.others(leader)[..] else {
        unreachable!("three servers")
    };
    cluster.crash(lagging);
    values.extend((0..12).map(|_| cluster.propose_new(leader)));
    cluster.run_until(|c| values.iter().all(|v| c.all_live_decided(v)), 4 * ETT);
    // A trim would wait for the crashed follower; local snapshots do not.
    cluster.node_mut(leader).snapshot(Some(15), true).unwrap();
    cluster.node_mut(other).snapshot(Some(15), true).unwrap();
    cluster.run_for(1);

    cluster.restart(lagging);
    assert_eq!(
        cluster.decided_idx(lagging),
        8,
        "the restarted follower finds what it decided before the crash"
    );
    cluster.run_until(|c| c.decided_idx(lagging) == 20, RECOVERY_TICKS);
    // It caught up through the leader's snapshot: entries below 15 are gone
    // from the leader, so they came as one snapshot.
    assert_compacted_log(&cluster, lagging, 15, &values);

    // What it installed survives another crash.
    cluster.crash(lagging);
    cluster.restart(lagging);
    assert_compacted_log(&cluster, lagging, 15, &values);
    let fresh = cluster.propose_new(lagging);
    values.push(fresh);
    cluster.run_until(|c| c.all_live_decided(&fresh), RECOVERY_TICKS);
    for &pid in cluster.ids() {
        let compacted = cluster.node(pid).get_compacted_idx();
        assert_compacted_log(&cluster, pid, compacted, &values);
    }
}

#[test]
fn a_trimmed_log_restarted_everywhere_keeps_its_start_and_decides_more() {
    let (mut cluster, leader, mut values) = with_decided(&[1, 2, 3], 10, 402);
    cluster.node_mut(leader).trim(Some(6)).unwrap();
    cluster.run_until(
        |c| c.ids().iter().all(|&p| c.node(p).get_compacted_idx() == 6),
        4 * ETT,
    );
    let ids = cluster.ids().to_vec();
    for &pid in &ids {
        cluster.crash(pid);
    }
    for &pid in &ids {
        cluster.restart(pid);
        assert_compacted_log(&cluster, pid, 6, &values);
    }
    let leader = cluster.wait_for_leader(RECOVERY_TICKS);
    values.extend((0..5).map(|_| cluster.propose_new(leader)));
    cluster.run_until(
        |c| values.iter().all(|v| c.all_live_decided(v)),
        RECOVERY_TICKS,
    );
    for &pid in &ids {
        assert_compacted_log(&cluster, pid, 6, &values);
    }
}
