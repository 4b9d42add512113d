//! A cluster on `PersistentStorage`: crashes close the files, restarts
//! reopen the directories, and nothing decided is lost.

use omnipaxos::{macros::Entry, util::NodeId};
use omnipaxos_sim::{Faults, Sim};
use omnipaxos_storage::persistent_storage::{PersistentStorage, PersistentStorageConfig};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Entry, Serialize, Deserialize)]
struct Val(u64);

fn dir_of(root: &Path, pid: NodeId) -> PathBuf {
    root.join(format!("server-{pid}"))
}

fn open(root: &Path, pid: NodeId) -> PersistentStorage<Val> {
    PersistentStorage::open(PersistentStorageConfig::with_path(dir_of(root, pid)))
        .unwrap_or_else(|e| panic!("opening server {pid}'s storage: {e}"))
}

#[test]
fn a_persistent_cluster_keeps_what_it_decided_through_crashes_and_reopened_files() {
    let root = tempfile::tempdir().unwrap();
    let (first, again) = (root.path().to_path_buf(), root.path().to_path_buf());
    let mut sim = Sim::builder(&[1, 2, 3])
        .seed(21)
        .faults(Faults {
            drop_probability: 0.02,
            max_delay_ticks: 2,
            ..Faults::none()
        })
        .storage(move |pid| open(&first, pid))
        // A restart goes through the files: close the storage the crashed
        // server left (dropping it releases sled's lock), then reopen.
        .on_restart(move |pid, old| {
            drop(old);
            open(&again, pid)
        })
        .state_machine(|sum: &mut u64, v: &Val| *sum += v.0)
        .build()
        .unwrap();
    let mut expected = 0;
    for round in 0..3u64 {
        let leader = sim.wait_for_leader(1_000).unwrap();
        for i in 0..5 {
            let v = round * 10 + i;
            sim.propose(leader, Val(v)).unwrap();
            expected += v;
        }
        let n = sim.decided_log().len() as u64 + 5;
        sim.run_until(|s| s.ids().iter().all(|&p| s.applied(p) == Some(n)), 2_000)
            .unwrap();
        // Crash everyone, the leader last, and bring them all back.
        for pid in [1, 2, 3] {
            if pid != leader {
                sim.crash(pid).unwrap();
            }
        }
        sim.crash(leader).unwrap();
        for pid in [1, 2, 3] {
            sim.restart(pid).unwrap();
        }
        // Restarted replicas are rebuilt from the reopened logs.
        sim.run_until(|s| s.ids().iter().all(|&p| s.applied(p) == Some(n)), 2_000)
            .unwrap();
        for pid in [1, 2, 3] {
            assert_eq!(sim.replica(pid), Some(&expected), "server {pid}");
        }
    }
    assert_eq!(sim.decided_log().len(), 15);
}
