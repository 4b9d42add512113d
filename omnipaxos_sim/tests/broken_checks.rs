//! The checks catch what they promise to: a state machine that is not
//! deterministic, a state invariant that fails, and an entry decided that
//! no one proposed.

use omnipaxos::macros::Entry;
use omnipaxos_sim::{Faults, Sim, SimError, Violation, ViolationKind};
use omnipaxos_storage::memory_storage::MemoryStorage;
use std::cell::Cell;

#[derive(Clone, Debug, PartialEq, Entry)]
struct Val(u64);

thread_local! {
    /// Hidden state shared by every replica: what a state machine must
    /// never read (like the server's id, a clock or a random number).
    static APPLY_CALLS: Cell<u64> = const { Cell::new(0) };
}

/// A replica that records, with each entry, how many applies this thread
/// made so far: the same entries give different states on different
/// servers.
#[derive(Debug, Default, PartialEq)]
struct Stamped(Vec<(u64, u64)>);

fn violation(err: SimError) -> Violation {
    match err {
        SimError::Violation(v) => *v,
        other => panic!("expected a violation, got {other}"),
    }
}

#[test]
fn a_state_machine_that_reads_hidden_state_is_caught_naming_both_replicas() {
    let mut sim = Sim::builder(&[1, 2, 3])
        .seed(5)
        .storage(|_| MemoryStorage::default())
        .state_machine(|s: &mut Stamped, v: &Val| {
            let n = APPLY_CALLS.with(|c| {
                c.set(c.get() + 1);
                c.get()
            });
            s.0.push((v.0, n));
        })
        .build()
        .unwrap();
    let leader = sim.wait_for_leader(200).unwrap();
    sim.propose(leader, Val(1)).unwrap();
    let err = sim.run_for(200).unwrap_err();
    let v = violation(err);
    assert_eq!(v.seed, 5);
    let ViolationKind::ReplicasDiverged { applied, a, b, .. } = &v.kind else {
        panic!("expected diverged replicas: {v}");
    };
    assert_eq!(*applied, 1);
    assert_ne!(a, b);
    let message = v.to_string();
    assert!(
        message.contains(&format!("servers {a} and {b}")) && message.contains("seed 5"),
        "{message}"
    );
}

#[test]
fn a_failing_state_invariant_names_the_server_and_index() {
    let mut sim = Sim::builder(&[1, 2, 3])
        .seed(6)
        .storage(|_| MemoryStorage::default())
        .state_machine(|total: &mut u64, v: &Val| *total += v.0)
        .state_invariant(|total| {
            if *total <= 10 {
                Ok(())
            } else {
                Err(format!("total {total} exceeds 10"))
            }
        })
        .build()
        .unwrap();
    let leader = sim.wait_for_leader(200).unwrap();
    for i in [4, 5, 6] {
        sim.propose(leader, Val(i)).unwrap();
    }
    let v = violation(sim.run_for(200).unwrap_err());
    let ViolationKind::StateInvariant { idx, message, .. } = &v.kind else {
        panic!("expected a state invariant failure: {v}");
    };
    assert_eq!(*idx, 2, "the third entry breaks it");
    assert_eq!(message, "total 15 exceeds 10");
}

#[test]
fn an_entry_appended_behind_the_simulators_back_fails_validity() {
    let mut sim = Sim::builder(&[1, 2, 3])
        .seed(8)
        .faults(Faults::none())
        .storage(|_| MemoryStorage::<Val>::default())
        .build()
        .unwrap();
    let leader = sim.wait_for_leader(200).unwrap();
    sim.node_mut(leader).unwrap().append(Val(77)).unwrap();
    let v = violation(sim.run_for(100).unwrap_err());
    assert!(
        matches!(&v.kind, ViolationKind::NotProposed { idx: 0, entry, .. } if entry == "Val(77)"),
        "{v}"
    );
}

#[test]
fn with_checks_off_the_same_run_goes_on() {
    let mut sim = Sim::builder(&[1, 2, 3])
        .seed(8)
        .storage(|_| MemoryStorage::<Val>::default())
        .check_invariants(false)
        .build()
        .unwrap();
    let leader = sim.wait_for_leader(200).unwrap();
    sim.node_mut(leader).unwrap().append(Val(77)).unwrap();
    sim.run_until(|s| s.decided_log().len() == 1, 100).unwrap();
}

#[test]
fn a_log_compacted_before_it_was_read_is_reported_not_panicked_on() {
    // One server decides alone, within `append`; trimming before the next
    // step leaves the simulator nothing to read the decided entry from.
    let mut sim = Sim::builder(&[1])
        .seed(9)
        .storage(|_| MemoryStorage::<Val>::default())
        .build()
        .unwrap();
    sim.wait_for_leader(100).unwrap();
    sim.propose(1, Val(1)).unwrap();
    sim.run_for(5).unwrap();
    assert_eq!(sim.applied(1), Some(1));
    sim.propose(1, Val(2)).unwrap();
    let node = sim.node_mut(1).unwrap();
    assert_eq!(node.get_decided_idx(), 2, "a single server decides at once");
    node.trim(Some(2)).unwrap();
    let err = sim.step().unwrap_err();
    assert!(
        matches!(err, SimError::UnreadableLog { pid: 1, idx: 1, .. }),
        "{err}"
    );
}
