//! `OmniPaxos::read_decided_with`: what it lends, and where it stops (the
//! decided index, a decided stop-sign, a compacted prefix).

use omnipaxos::{
    DecidedRead, OmniPaxos, OmniPaxosConfig, ReconfigurationRequest,
    storage::{Entry, NoSnapshot},
};
use omnipaxos_storage::memory_storage::MemoryStorage;

#[derive(Clone, Debug, PartialEq)]
struct V(u64);

impl Entry for V {
    type Snapshot = NoSnapshot;
}

type Node = OmniPaxos<V, MemoryStorage<V>>;

/// A one-server cluster that leads and has decided `V(0)..V(n)`.
fn leader_with(n: u64) -> Node {
    let config = OmniPaxosConfig {
        configuration_id: 1,
        pid: 1,
        ..Default::default()
    };
    let mut node: Node = config
        .build(MemoryStorage::default())
        .expect("valid config");
    for _ in 0..1_000 {
        if node.is_leader() {
            break;
        }
        node.tick();
    }
    assert!(node.is_leader(), "a lone server leads within 1000 ticks");
    for i in 0..n {
        node.append(V(i)).expect("room in the buffer");
    }
    assert_eq!(node.get_decided_idx(), n);
    node
}

/// Collects what a read lends.
fn lent(node: &Node, range: impl std::ops::RangeBounds<u64>) -> (Vec<(u64, u64)>, DecidedRead) {
    let mut seen = Vec::new();
    let read = node
        .read_decided_with(range, |idx, v| seen.push((idx, v.0)))
        .expect("memory storage reads never fail");
    (seen, read)
}

#[test]
fn lends_every_decided_entry_with_its_index_and_stops_at_the_decided_index() {
    let node = leader_with(5);
    assert_eq!(
        lent(&node, 0..),
        ((0..5).map(|i| (i, i)).collect(), DecidedRead::UpTo(5))
    );
    assert_eq!(
        lent(&node, 1..3),
        (vec![(1, 1), (2, 2)], DecidedRead::UpTo(3))
    );
    assert_eq!(lent(&node, 2..=2), (vec![(2, 2)], DecidedRead::UpTo(3)));
}

#[test]
fn a_read_from_the_decided_index_or_past_it_lends_nothing() {
    let node = leader_with(3);
    assert_eq!(lent(&node, 3..), (vec![], DecidedRead::UpTo(3)));
    assert_eq!(lent(&node, 7..), (vec![], DecidedRead::UpTo(7)));
    assert_eq!(lent(&node, 2..2), (vec![], DecidedRead::UpTo(2)));
}

#[test]
fn a_decided_stop_sign_ends_the_read_at_its_index() {
    let mut node = leader_with(2);
    node.reconfigure(ReconfigurationRequest::with(vec![1, 2], None))
        .expect("a lone leader proposes the stop-sign");
    assert!(node.is_reconfigured().is_some(), "a lone server decides it");
    assert_eq!(
        lent(&node, 0..),
        (vec![(0, 0), (1, 1)], DecidedRead::StopSign(2))
    );
    assert_eq!(lent(&node, 2..), (vec![], DecidedRead::StopSign(2)));
    // A range that ends before the stop-sign does not reach it.
    assert_eq!(
        lent(&node, 0..2),
        (vec![(0, 0), (1, 1)], DecidedRead::UpTo(2))
    );
}

#[test]
fn a_range_that_starts_in_the_compacted_prefix_lends_nothing_and_names_the_compacted_index() {
    let mut node = leader_with(6);
    node.trim(Some(4))
        .expect("a lone leader trims its decided log");
    assert_eq!(node.get_compacted_idx(), 4);
    assert_eq!(lent(&node, 0..), (vec![], DecidedRead::Compacted(4)));
    assert_eq!(lent(&node, 3..5), (vec![], DecidedRead::Compacted(4)));
    assert_eq!(
        lent(&node, 4..),
        (vec![(4, 4), (5, 5)], DecidedRead::UpTo(6))
    );
}
