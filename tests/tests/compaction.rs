//! Compaction: trimming and snapshotting the decided prefix, the refusals
//! that leave the state unchanged, and bringing a lagging server up to date
//! with a snapshot plus the entries after it.

use omnipaxos::{CompactionErr, util::LogEntry};
use omnipaxos_tests::{SimCluster, SimOptions, Value, ValueSnapshot};
use pretty_assertions::assert_eq;

/// Ticks per heartbeat round in these tests (the default).
const ETT: u64 = 10;

/// A cluster of `ids` with a leader and `n` decided entries on every server.
fn with_decided(ids: &[u64], n: usize) -> (SimCluster, u64, Vec<Value>) {
    let mut cluster = SimCluster::new(ids, SimOptions::default());
    let leader = cluster.wait_for_leader(4 * ETT);
    let values: Vec<_> = (0..n).map(|_| cluster.propose_new(leader)).collect();
    cluster.run_until(|c| values.iter().all(|v| c.all_live_decided(v)), 4 * ETT);
    (cluster, leader, values)
}

#[test]
fn leader_trim_compacts_every_server_and_keeps_the_prefix_in_the_snapshot() {
    // Non-contiguous ids: compaction must not assume ids 1..=n.
    let (mut cluster, leader, values) = with_decided(&[5, 7, 9], 20);
    cluster.node_mut(leader).trim(Some(10)).unwrap();
    cluster.run_until(
        |c| c.ids().iter().all(|&p| c.node(p).get_compacted_idx() == 10),
        2 * ETT,
    );
    for &pid in cluster.ids() {
        let node = cluster.node(pid);
        // `Value` uses snapshots, so the trimmed prefix lives on in one.
        match node.read(3) {
            Some(LogEntry::Snapshotted(s)) => {
                assert_eq!(
                    (s.trimmed_idx, s.snapshot),
                    (10, ValueSnapshot::of(&values[..10]))
                )
            }
            other => panic!("server {pid}: expected a snapshotted entry, got {other:?}"),
        }
        assert_eq!(node.read(10), Some(LogEntry::Decided(values[10])));
    }
    // The log goes on after a trim.
    let next = cluster.propose_new(leader);
    cluster.run_until(|c| c.all_live_decided(&next), 2 * ETT);
}

#[test]
fn trim_refusals_name_the_reason_and_change_nothing() {
    let (mut cluster, leader, _) = with_decided(&[1, 2, 3], 10);
    let follower = cluster.others(leader)[0];
    assert_eq!(
        cluster.node_mut(follower).trim(Some(5)),
        Err(CompactionErr::NotCurrentLeader {
            leader: Some(leader)
        })
    );
    assert_eq!(
        cluster.node_mut(leader).trim(Some(11)),
        Err(CompactionErr::UndecidedIndex {
            requested: 11,
            decided_idx: 10
        })
    );
    cluster.node_mut(leader).trim(Some(5)).unwrap();
    assert_eq!(
        cluster.node_mut(leader).trim(Some(5)),
        Err(CompactionErr::AlreadyCompacted {
            requested: 5,
            compacted_idx: 5
        })
    );
    for &pid in cluster.ids() {
        assert!(cluster.node(pid).get_compacted_idx() <= 5);
    }
}

#[test]
fn trim_waits_for_a_crashed_follower_and_says_what_would_work() {
    let (mut cluster, leader, _) = with_decided(&[1, 2, 3], 10);
    let down = cluster.others(leader)[0];
    cluster.crash(down);
    let more: Vec<_> = (0..5).map(|_| cluster.propose_new(leader)).collect();
    cluster.run_until(|c| more.iter().all(|v| c.all_live_decided(v)), 4 * ETT);
    // The crashed server accepted 10 entries; trimming past them would lose
    // what it needs to catch up.
    assert_eq!(
        cluster.node_mut(leader).trim(Some(15)),
        Err(CompactionErr::NotAllAccepted {
            requested: 15,
            min_accepted: 10
        })
    );
    assert_eq!(cluster.node(leader).get_compacted_idx(), 0);
    cluster.node_mut(leader).trim(Some(10)).unwrap();
}

#[test]
fn a_local_snapshot_on_a_follower_compacts_only_that_follower() {
    let (mut cluster, leader, values) = with_decided(&[1, 2, 3], 12);
    let follower = cluster.others(leader)[0];
    cluster.node_mut(follower).snapshot(Some(8), true).unwrap();
    cluster.run_for(2 * ETT);
    for &pid in cluster.ids() {
        let want = if pid == follower { 8 } else { 0 };
        assert_eq!(cluster.node(pid).get_compacted_idx(), want, "server {pid}");
    }
    match cluster.node(follower).read(2) {
        Some(LogEntry::Snapshotted(s)) => {
            assert_eq!(s.trimmed_idx, 8);
            assert_eq!(s.snapshot, ValueSnapshot::of(&values[..8]));
        }
        other => panic!("expected a snapshotted entry, got {other:?}"),
    }
    assert_eq!(
        cluster.node_mut(follower).snapshot(Some(13), true),
        Err(CompactionErr::UndecidedIndex {
            requested: 13,
            decided_idx: 12
        })
    );
}

#[test]
fn a_global_snapshot_compacts_every_server_and_merges_with_earlier_ones() {
    let (mut cluster, leader, values) = with_decided(&[1, 2, 3], 12);
    cluster.node_mut(leader).snapshot(Some(4), false).unwrap();
    cluster.node_mut(leader).snapshot(None, false).unwrap();
    cluster.run_until(
        |c| c.ids().iter().all(|&p| c.node(p).get_compacted_idx() == 12),
        2 * ETT,
    );
    for &pid in cluster.ids() {
        match cluster.node(pid).read(0) {
            Some(LogEntry::Snapshotted(s)) => {
                assert_eq!(s.snapshot, ValueSnapshot::of(&values), "server {pid}")
            }
            other => panic!("server {pid}: expected a snapshotted entry, got {other:?}"),
        }
    }
}

#[test]
fn a_follower_behind_the_compacted_prefix_catches_up_from_a_snapshot() {
    let (mut cluster, leader, _) = with_decided(&[1, 2, 3], 5);
    let lagging = cluster.others(leader)[0];
    cluster.crash(lagging);
    let more: Vec<_> = (0..20).map(|_| cluster.propose_new(leader)).collect();
    cluster.run_until(|c| more.iter().all(|v| c.all_live_decided(v)), 4 * ETT);
    // Everyone alive snapshots up to 20: entries 5..20, which the crashed
    // server never saw, now exist only inside snapshots.
    cluster.node_mut(leader).snapshot(Some(20), false).unwrap();
    cluster.run_for(ETT);
    cluster.restart(lagging);
    let last = more.last().copied().expect("20 proposals");
    cluster.run_until(|c| c.all_live_decided(&last), 6 * ETT);
    let node = cluster.node(lagging);
    assert_eq!(node.get_decided_idx(), 25);
    assert_eq!(node.get_compacted_idx(), 20);
    assert_eq!(node.read(24), Some(LogEntry::Decided(last)));
    // And it takes part in new decisions.
    let next = cluster.propose_new(lagging);
    cluster.run_until(|c| c.all_live_decided(&next), 4 * ETT);
}

#[test]
fn a_new_leader_with_a_compacted_log_brings_a_lagging_server_up_to_date() {
    let (mut cluster, leader, _) = with_decided(&[1, 2, 3, 4, 5], 5);
    let lagging = cluster.others(leader)[0];
    cluster.crash(lagging);
    let more: Vec<_> = (0..10).map(|_| cluster.propose_new(leader)).collect();
    cluster.run_until(|c| more.iter().all(|v| c.all_live_decided(v)), 4 * ETT);
    cluster.node_mut(leader).snapshot(None, false).unwrap();
    cluster.run_for(ETT);
    // The old leader fails; the new one ships its snapshot to the lagging server.
    cluster.crash(leader);
    cluster.restart(lagging);
    let new_leader = cluster.wait_for_leader(6 * ETT);
    assert_ne!(new_leader, leader);
    let next = cluster.propose_new(new_leader);
    cluster.run_until(|c| c.all_live_decided(&next), 6 * ETT);
    assert_eq!(cluster.node(lagging).get_compacted_idx(), 15);
}

#[test]
fn snapshot_is_refused_for_an_entry_type_without_snapshots() {
    use omnipaxos::{OmniPaxosConfig, macros::Entry};
    use omnipaxos_storage::memory_storage::MemoryStorage;
    #[derive(Clone, Debug, PartialEq, Entry)]
    struct Plain(u8);
    let mut node = OmniPaxosConfig {
        pid: 1,
        ..Default::default()
    }
    .build::<Plain, _>(MemoryStorage::default())
    .unwrap();
    while !node.is_leader() {
        node.tick();
    }
    node.append(Plain(1)).unwrap();
    assert_eq!(
        node.snapshot(None, false),
        Err(CompactionErr::SnapshotsNotEnabled)
    );
    node.trim(None).unwrap();
    assert_eq!(node.read(0), Some(LogEntry::Trimmed(1)));
}

#[test]
fn a_follower_far_behind_catches_up_from_a_delta_snapshot_instead_of_every_entry() {
    let (mut cluster, leader, _) = with_decided(&[1, 2, 3], 5);
    let lagging = cluster.others(leader)[0];
    cluster.crash(lagging);
    let more: Vec<_> = (0..100).map(|_| cluster.propose_new(leader)).collect();
    cluster.run_until(|c| more.iter().all(|v| c.all_live_decided(v)), 6 * ETT);
    cluster.restart(lagging);
    cluster.run_until(|c| c.node(lagging).get_decided_idx() == 105, 6 * ETT);
    // The leader compacted nothing; the lagging server got the 100 decided
    // entries it missed as one snapshot merged onto its own 5.
    assert_eq!(cluster.node(leader).get_compacted_idx(), 0);
    let node = cluster.node(lagging);
    assert_eq!(node.get_compacted_idx(), 105);
    match node.read(50) {
        Some(LogEntry::Snapshotted(s)) => {
            assert_eq!(s.snapshot, ValueSnapshot::of(&cluster.decided_log()[..105]))
        }
        other => panic!("expected a snapshotted entry, got {other:?}"),
    }
    let next = cluster.propose_new(lagging);
    cluster.run_until(|c| c.all_live_decided(&next), 4 * ETT);
}

/// Server `pid` compacted at least the first 20 entries into a snapshot of
/// the decided log.
#[track_caller]
fn assert_holds_the_snapshot_of_20(cluster: &SimCluster, pid: u64, seed: u64) {
    let node = cluster.node(pid);
    assert!(node.get_compacted_idx() >= 20, "seed {seed}");
    match node.read(10) {
        Some(LogEntry::Snapshotted(s)) => assert_eq!(
            s.snapshot,
            ValueSnapshot::of(&cluster.decided_log()[..s.trimmed_idx as usize]),
            "seed {seed}"
        ),
        other => panic!("seed {seed}: expected a snapshotted entry, got {other:?}"),
    }
}

/// `ValueSnapshot` splits into one to three parts by its count (to exercise
/// this), so the snapshot of 20 entries goes in three `SnapshotPart`s. Over
/// a network that loses and duplicates messages the follower still gathers
/// all of them, installs the snapshot and catches up.
#[test]
fn a_snapshot_sent_in_parts_survives_lost_and_duplicated_parts() {
    for seed in 1..=8 {
        let mut cluster = SimCluster::new(
            &[1, 2, 3],
            SimOptions {
                seed,
                drop_probability: 0.2,
                duplicate_probability: 0.1,
                ..SimOptions::default()
            },
        );
        let leader = cluster.wait_for_leader(20 * ETT);
        let lagging = if leader == 3 { 2 } else { 3 };
        cluster.crash(lagging);
        let more: Vec<_> = (0..20).map(|_| cluster.propose_new(leader)).collect();
        cluster.run_until(|c| more.iter().all(|v| c.is_decided(leader, v)), 40 * ETT);
        assert_eq!(ValueSnapshot::of(&cluster.decided_log()[..20]).count % 3, 2);
        cluster.node_mut(leader).snapshot(Some(20), false).unwrap();
        cluster.restart(lagging);
        cluster.run_until(|c| c.node(lagging).get_decided_idx() >= 20, 100 * ETT);
        assert_holds_the_snapshot_of_20(&cluster, lagging, seed);
    }
}

/// Three servers; one (`lagging`) is down while the other two decide 20
/// entries and each snapshots them (the snapshot of 20 `Value`s splits into
/// three parts). Then the leader crashes and `lagging` comes back with the
/// highest priority. Returns the cluster, `lagging` and the other server.
fn lagging_server_elected_over_compacted_followers(seed: u64, loss: f64) -> (SimCluster, u64, u64) {
    let mut cluster = SimCluster::new(
        &[1, 2, 3],
        SimOptions {
            seed,
            drop_probability: loss,
            duplicate_probability: loss / 2.0,
            ..SimOptions::default()
        },
    );
    let leader = cluster.wait_for_leader(20 * ETT);
    let lagging = if leader == 3 { 2 } else { 3 };
    let other = 6 - leader - lagging;
    cluster.crash(lagging);
    let more: Vec<_> = (0..20).map(|_| cluster.propose_new(leader)).collect();
    cluster.run_until(
        |c| {
            more.iter()
                .all(|v| c.is_decided(leader, v) && c.is_decided(other, v))
        },
        40 * ETT,
    );
    assert_eq!(ValueSnapshot::of(&cluster.decided_log()[..20]).count % 3, 2);
    // Each compacts by itself: a lost `Compaction` message is not what
    // these tests are about.
    cluster.node_mut(leader).snapshot(Some(20), true).unwrap();
    cluster.node_mut(other).snapshot(Some(20), true).unwrap();
    cluster.set_priority(lagging, 10);
    cluster.crash(leader);
    cluster.restart(lagging);
    (cluster, lagging, other)
}

/// A new leader far behind, whose followers compacted past its decided
/// prefix: the promise would carry their snapshot, which splits into three
/// parts, so the parts follow the promise (`Promise::snapshot_follows`) and
/// no message carries the snapshot whole. Over a network that loses and
/// duplicates messages the leader gathers them, installs the snapshot,
/// prepares again and leads from there.
#[test]
fn a_new_leader_far_behind_takes_a_followers_snapshot_in_parts_after_its_promise() {
    for seed in 1..=8 {
        let loss = if seed <= 2 { 0.0 } else { 0.15 };
        let (mut cluster, lagging, other) =
            lagging_server_elected_over_compacted_followers(seed, loss);
        cluster.run_until(
            |c| c.leader() == Some(lagging) && c.node(lagging).get_decided_idx() >= 20,
            200 * ETT,
        );
        assert_eq!(
            cluster.whole_snapshots_that_split(),
            0,
            "seed {seed}: a snapshot that splits travelled whole"
        );
        assert!(
            cluster.snapshot_parts_sent() >= 3,
            "seed {seed}: {} snapshot parts sent",
            cluster.snapshot_parts_sent()
        );
        assert_holds_the_snapshot_of_20(&cluster, lagging, seed);
        let next = cluster.propose_new(lagging);
        cluster.run_until(
            |c| c.is_decided(lagging, &next) && c.is_decided(other, &next),
            40 * ETT,
        );
    }
}

/// The follower sending its snapshot after its promise crashes once the
/// first parts are sent (the leader may or may not get them: the handler
/// test `a_leader_waits_for_a_snapshot_that_follows_a_promise_...` pins
/// down the stall itself). Once the follower is back, the new leader takes
/// the snapshot, whole or afresh, and leads.
#[test]
fn a_snapshot_after_a_promise_whose_sender_crashes_is_taken_after_its_restart() {
    for seed in 1..=4 {
        let (mut cluster, lagging, other) =
            lagging_server_elected_over_compacted_followers(seed, 0.0);
        cluster.run_until(|c| c.snapshot_parts_sent() >= 1, 100 * ETT);
        cluster.crash(other);
        cluster.run_for(30 * ETT);
        cluster.restart(other);
        cluster.run_until(
            |c| c.leader() == Some(lagging) && c.node(lagging).get_decided_idx() >= 20,
            200 * ETT,
        );
        assert_eq!(cluster.whole_snapshots_that_split(), 0, "seed {seed}");
        let next = cluster.propose_new(lagging);
        cluster.run_until(
            |c| c.is_decided(lagging, &next) && c.is_decided(other, &next),
            40 * ETT,
        );
    }
}
