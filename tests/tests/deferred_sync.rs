//! A leader that sends before it syncs (`OmniPaxosConfig::defer_leader_sync`):
//! it writes its batch with `Storage::write_deferred`, hands the batch to
//! its followers, and syncs its own copy while they write theirs. Its copy
//! counts toward a decision only once synced, and a crash that loses the
//! unsynced copy loses nothing that was decided.
//!
//! With the option, every server also writes a raised decided index lazily
//! (synced with its next write); a crash before that takes it back to the
//! decided index its disk holds, and the entries are decided again.
//!
//! The simulator's in-memory storage models the loss: a crashed server's
//! log is cut back to what it had synced and its decided index set back
//! (`SharedStorage::lose_unsynced`).

use omnipaxos::{OmniPaxos, OmniPaxosConfig};
use omnipaxos_tests::{SharedStorage, SimCluster, SimOptions, Value};

fn lone_server() -> (OmniPaxos<Value, SharedStorage>, SharedStorage) {
    let storage = SharedStorage::new();
    let config = OmniPaxosConfig {
        pid: 1,
        defer_leader_sync: true,
        ..Default::default()
    };
    let mut node = config.build(storage.clone()).expect("a valid config");
    for _ in 0..100 {
        if node.is_leader() {
            break;
        }
        node.tick();
    }
    assert!(node.is_leader(), "a lone server leads within 100 ticks");
    (node, storage)
}

fn log_len(storage: &SharedStorage) -> u64 {
    storage
        .with(|s| s.get_log_len())
        .expect("the simulator's storage does not fail reads")
}

#[test]
fn a_lone_leader_decides_its_batch_only_once_it_is_synced() {
    let (mut node, storage) = lone_server();
    node.append(Value(7)).expect("room in the batch");
    node.flush_batch();
    assert_eq!(log_len(&storage), 1, "the batch is written");
    assert_eq!(
        node.get_decided_idx(),
        0,
        "a write quorum of one is this server's disk, which does not hold the batch yet"
    );
    assert!(node.sync_storage(), "the write waited for its sync");
    assert_eq!(node.get_decided_idx(), 1, "synced, and so decided");
    assert!(!node.sync_storage(), "nothing waits any more");
}

#[test]
fn without_a_sync_call_the_next_tick_syncs() {
    let (mut node, storage) = lone_server();
    node.append(Value(7)).expect("room in the batch");
    node.flush_batch();
    assert_eq!(node.get_decided_idx(), 0);
    node.tick();
    assert_eq!(node.get_decided_idx(), 1, "the tick synced first");
    // A crash now loses no entry: the batch was synced. The decided index it
    // raised was written lazily, and goes back to what the disk holds.
    let lost = storage.lose_unsynced();
    assert_eq!(lost.log_from, None);
    assert_eq!(lost.decided_back_to, Some(0));
    assert_eq!(log_len(&storage), 1);
}

#[test]
fn a_lazy_decided_index_lost_in_a_crash_is_decided_again_with_the_same_entries() {
    let (mut node, storage) = lone_server();
    for v in 1..=3 {
        node.append(Value(v)).expect("room in the batch");
    }
    node.flush_batch();
    node.sync_storage();
    assert_eq!(node.get_decided_idx(), 3);
    drop(node);
    assert_eq!(storage.lose_unsynced().decided_back_to, Some(0));

    // The restarted server holds the entries and decides them again.
    let config = OmniPaxosConfig {
        pid: 1,
        defer_leader_sync: true,
        ..Default::default()
    };
    let mut node: OmniPaxos<Value, SharedStorage> =
        config.build(storage.clone()).expect("a valid config");
    node.fail_recovery();
    assert_eq!(node.get_decided_idx(), 0, "what the disk kept");
    assert_eq!(log_len(&storage), 3, "the entries were synced");
    for _ in 0..100 {
        if node.get_decided_idx() == 3 {
            break;
        }
        node.tick();
    }
    assert_eq!(node.get_decided_idx(), 3, "decided again within 100 ticks");
    let decided: Vec<Value> = (0..3)
        .map(|i| match node.read(i) {
            Some(omnipaxos::util::LogEntry::Decided(v)) => v,
            other => panic!("index {i}: {other:?}"),
        })
        .collect();
    assert_eq!(decided, vec![Value(1), Value(2), Value(3)]);
}

#[test]
fn a_crash_before_the_sync_loses_the_unsynced_batch_but_nothing_decided() {
    // Three servers; the leader crashes after every few steps of proposals,
    // often between writing a batch and syncing it. The cluster checks
    // after every step that no two servers decide differently and that
    // nothing decided changes; here, that the losses happened and that the
    // cluster goes on deciding.
    let (mut losses, mut rollbacks) = (0, 0);
    for seed in 0..20 {
        let options = SimOptions {
            seed,
            defer_leader_sync: true,
            batch_size: 3,
            ..SimOptions::default()
        };
        let mut c = SimCluster::new(&[1, 2, 3], options);
        for round in 0..30 {
            c.run_until(|c| c.leader().is_some(), 2_000);
            let leader = c.leader().expect("a leader within 2,000 ticks");
            for _ in 0..=(round % 4) {
                for _ in 0..4 {
                    c.propose_new(leader);
                }
                c.step();
            }
            c.crash(leader);
            c.step();
            c.restart(leader);
        }
        c.run_until(|c| c.leader().is_some(), 2_000);
        let leader = c.leader().expect("a leader after the last restart");
        let before = c.decided_idx(leader);
        c.propose_new(leader);
        c.run_until(
            |c| [1, 2, 3].iter().all(|&p| c.decided_idx(p) > before),
            5_000,
        );
        assert!(
            [1, 2, 3].iter().all(|&p| c.decided_idx(p) > before),
            "seed {seed}: the cluster decides after the crashes"
        );
        losses += c.unsynced_losses();
        rollbacks += c.decided_rollbacks();
    }
    assert!(
        losses > 0,
        "no crash found an unsynced batch, so this test did not test the loss"
    );
    assert!(
        rollbacks > 0,
        "no crash found a lazy decided index, so this test did not test its loss"
    );
}

#[test]
fn a_follower_writes_the_decided_index_of_a_decide_lazily_and_learns_it_again() {
    let options = SimOptions {
        seed: 7,
        defer_leader_sync: true,
        ..SimOptions::default()
    };
    let mut c = SimCluster::new(&[1, 2, 3], options);
    c.run_until(|c| c.leader().is_some(), 2_000);
    let leader = c.leader().expect("a leader within 2,000 ticks");
    let follower = [1, 2, 3]
        .into_iter()
        .find(|&p| p != leader)
        .expect("two followers");
    for _ in 0..5 {
        c.propose_new(leader);
    }
    // The follower syncs the entries with its Accepted; the Decide that
    // follows raises its decided index lazily.
    c.run_until(|c| [1, 2, 3].iter().all(|&p| c.decided_idx(p) >= 5), 2_000);
    let decided = c.decided_idx(follower);
    assert!(decided >= 5, "the follower decided the five entries");
    let before = c.decided_rollbacks();
    c.crash(follower);
    assert_eq!(
        c.decided_rollbacks(),
        before + 1,
        "the crash found the follower's decided index not synced"
    );
    c.restart(follower);
    c.run_until(|c| c.decided_idx(follower) >= decided, 2_000);
    assert!(
        c.decided_idx(follower) >= decided,
        "the restarted follower learns the decided index again"
    );
}
