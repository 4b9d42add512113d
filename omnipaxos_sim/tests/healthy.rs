//! A cluster with nothing going wrong: it elects, decides, and its replicas
//! agree; a run is a function of its seed; bad input is an error.

use omnipaxos::{macros::Entry, util::NodeId};
use omnipaxos_sim::{Faults, ProposeError, Sim, SimError};
use omnipaxos_storage::memory_storage::MemoryStorage;

#[derive(Clone, Debug, PartialEq, Entry)]
struct Val(u64);

/// The decided entries in order: the strictest state a replica can keep.
#[derive(Debug, Default, PartialEq)]
struct Applied(Vec<u64>);

type ValSim = Sim<Val, MemoryStorage<Val>, Applied>;

fn cluster(ids: &[NodeId], seed: u64, faults: Faults) -> ValSim {
    Sim::builder(ids)
        .seed(seed)
        .faults(faults)
        .storage(|_| MemoryStorage::default())
        .state_machine(|a: &mut Applied, v: &Val| a.0.push(v.0))
        .build()
        .expect("a valid cluster")
}

fn all_applied(sim: &ValSim, n: u64) -> bool {
    sim.ids().iter().all(|&p| sim.applied(p) == Some(n))
}

#[test]
fn a_healthy_three_server_cluster_decides_and_its_replicas_agree() {
    let mut sim = cluster(&[1, 2, 3], 1, Faults::none());
    let leader = sim.wait_for_leader(200).unwrap();
    for i in 0..20 {
        // Proposals at followers are forwarded to the leader.
        let at = sim.ids()[i as usize % 3];
        sim.propose(at, Val(i)).unwrap();
    }
    sim.run_until(|s| all_applied(s, 20), 500).unwrap();
    let expected = sim.replica(leader).unwrap().0.clone();
    assert_eq!(expected.len(), 20);
    for &pid in sim.ids() {
        assert_eq!(sim.replica(pid).unwrap().0, expected);
        assert_eq!(sim.decided_idx(pid), Some(20));
    }
    assert_eq!(
        sim.decided_log().iter().map(|v| v.0).collect::<Vec<_>>(),
        expected
    );
}

#[test]
fn non_contiguous_ids_and_a_crashed_leader_still_decide() {
    let mut sim = cluster(&[5, 7, 9], 2, Faults::none());
    let leader = sim.wait_for_leader(200).unwrap();
    sim.propose(leader, Val(1)).unwrap();
    sim.run_until(|s| all_applied(s, 1), 200).unwrap();
    sim.crash(leader).unwrap();
    assert!(!sim.is_up(leader));
    assert!(sim.node(leader).is_none());
    let new_leader = sim.wait_for_leader(500).unwrap();
    assert_ne!(new_leader, leader);
    sim.propose(new_leader, Val(2)).unwrap();
    sim.restart(leader).unwrap();
    sim.run_until(|s| all_applied(s, 2), 1_000).unwrap();
    assert_eq!(sim.replica(leader).unwrap().0, vec![1, 2]);
}

#[test]
fn a_server_that_lost_its_storage_catches_up_from_its_peers() {
    let mut sim = cluster(&[1, 2, 3], 3, Faults::none());
    let leader = sim.wait_for_leader(200).unwrap();
    for i in 0..5 {
        sim.propose(leader, Val(i)).unwrap();
    }
    sim.run_until(|s| all_applied(s, 5), 200).unwrap();
    let follower = *sim.ids().iter().find(|&&p| p != leader).unwrap();
    sim.crash_and_lose_storage(follower).unwrap();
    sim.restart(follower).unwrap();
    sim.run_until(|s| all_applied(s, 5), 1_000).unwrap();
    assert_eq!(sim.replica(follower).unwrap().0, vec![0, 1, 2, 3, 4]);
}

/// Runs one script on a lossy network and returns its trace hash.
fn scripted_run(seed: u64) -> u64 {
    let faults = Faults {
        drop_probability: 0.1,
        duplicate_probability: 0.1,
        min_delay_ticks: 0,
        max_delay_ticks: 4,
    };
    let mut sim = cluster(&[1, 2, 3], seed, faults);
    for i in 0..10 {
        let _ = sim.propose(1 + i % 3, Val(i));
        sim.run_for(20).unwrap();
    }
    sim.crash(2).unwrap();
    sim.run_for(50).unwrap();
    sim.restart(2).unwrap();
    sim.run_for(200).unwrap();
    sim.trace_hash()
}

#[test]
fn one_seed_gives_one_trace_and_two_seeds_two() {
    assert_eq!(scripted_run(11), scripted_run(11));
    assert_ne!(scripted_run(11), scripted_run(12));
}

#[test]
fn bad_input_is_a_typed_error_not_a_panic() {
    let build = |ids: &[NodeId]| {
        Sim::<Val, MemoryStorage<Val>>::builder(ids)
            .storage(|_| MemoryStorage::default())
            .build()
    };
    assert!(matches!(build(&[]), Err(SimError::InvalidIds { .. })));
    assert!(matches!(build(&[0, 1]), Err(SimError::InvalidIds { .. })));
    assert!(matches!(build(&[1, 1]), Err(SimError::InvalidIds { .. })));
    let no_storage = Sim::<Val, MemoryStorage<Val>>::builder(&[1]).build();
    assert!(matches!(no_storage, Err(SimError::NoStorage)));
    let bad_faults = Sim::<Val, MemoryStorage<Val>>::builder(&[1])
        .storage(|_| MemoryStorage::default())
        .faults(Faults {
            drop_probability: 1.5,
            ..Faults::none()
        })
        .build();
    assert!(matches!(
        bad_faults,
        Err(SimError::InvalidFaults {
            field: "drop_probability",
            ..
        })
    ));
    let bad_config = Sim::<Val, MemoryStorage<Val>>::builder(&[1, 2])
        .storage(|_| MemoryStorage::default())
        .config(|_, c| c.election_tick_timeout = 0)
        .build();
    assert!(matches!(bad_config, Err(SimError::Config { pid: 1, .. })));
    let renamed = Sim::<Val, MemoryStorage<Val>>::builder(&[1, 2])
        .storage(|_| MemoryStorage::default())
        .config(|_, c| c.pid = 9)
        .build();
    assert!(matches!(
        renamed,
        Err(SimError::ConfigMismatch { field: "pid", .. })
    ));

    let mut sim = cluster(&[1, 2, 3], 4, Faults::none());
    assert!(matches!(sim.crash(4), Err(SimError::UnknownServer(4))));
    assert!(matches!(sim.restart(1), Err(SimError::ServerUp(1))));
    assert!(matches!(sim.cut(1, 1), Err(SimError::SelfLink(1))));
    assert!(matches!(sim.cut(1, 8), Err(SimError::UnknownServer(8))));
    assert!(matches!(sim.isolate(0), Err(SimError::UnknownServer(0))));
    assert!(matches!(
        sim.partition(&[1], &[1, 2]),
        Err(SimError::SelfLink(1))
    ));
    assert!(!sim.is_cut(1, 2), "a refused partition cuts nothing");
    assert!(matches!(
        sim.propose(6, Val(0)),
        Err(ProposeError::UnknownServer(6, Val(0)))
    ));
    sim.crash(1).unwrap();
    assert!(matches!(sim.crash(1), Err(SimError::ServerDown(1))));
    assert!(matches!(
        sim.propose(1, Val(0)),
        Err(ProposeError::ServerDown(1, Val(0)))
    ));
    assert!(sim.node_mut(1).is_none());
    assert!(sim.replica(42).is_none());
    assert!(matches!(
        sim.set_faults(Faults {
            min_delay_ticks: 3,
            max_delay_ticks: 1,
            ..Faults::none()
        }),
        Err(SimError::InvalidFaults { .. })
    ));
}

#[test]
fn run_until_reports_a_timeout_with_the_seed() {
    let mut sim = cluster(&[1, 2, 3], 99, Faults::none());
    for pid in [1, 2, 3] {
        sim.isolate(pid).unwrap();
    }
    let err = sim.wait_for_leader(100).unwrap_err();
    assert!(
        matches!(
            err,
            SimError::Timeout {
                max_ticks: 100,
                seed: 99,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("seed 99"), "{err}");
    sim.heal();
    sim.wait_for_leader(500).unwrap();
}
