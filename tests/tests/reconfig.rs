//! Reconfiguration: the stop-sign that ends a configuration, the refusals
//! that follow it, and continuing the same log in the next configuration.
//!
//! These tests drive a small lossless in-memory cluster by hand, so that a
//! server can be replaced by its next-configuration self mid-run.

use omnipaxos::{
    ConfigError, OmniPaxos, OmniPaxosConfig, ProposeErr, ReconfigurationRequest,
    messages::Message,
    util::{LogEntry, NodeId},
};
use omnipaxos_storage::memory_storage::MemoryStorage;
use omnipaxos_tests::Value;
use pretty_assertions::assert_eq;
use std::collections::BTreeMap;

type Node = OmniPaxos<Value, MemoryStorage<Value>>;

/// A lossless network of servers, some of which may be down.
struct Cluster {
    nodes: BTreeMap<NodeId, Option<Node>>,
    buf: Vec<Message<Value>>,
}

fn config(configuration_id: u32, pid: NodeId, all: &[NodeId]) -> OmniPaxosConfig {
    OmniPaxosConfig {
        configuration_id,
        pid,
        peers: all.iter().copied().filter(|&p| p != pid).collect(),
        ..Default::default()
    }
}

impl Cluster {
    fn new(all: &[NodeId]) -> Self {
        let nodes = all
            .iter()
            .map(|&pid| {
                (
                    pid,
                    Some(config(1, pid, all).build(MemoryStorage::default()).unwrap()),
                )
            })
            .collect();
        Self {
            nodes,
            buf: Vec::new(),
        }
    }

    fn node(&mut self, pid: NodeId) -> &mut Node {
        self.nodes
            .get_mut(&pid)
            .and_then(Option::as_mut)
            .expect("server is up")
    }

    /// One tick everywhere, then every message is delivered.
    fn step(&mut self) {
        for node in self.nodes.values_mut().flatten() {
            node.tick();
            node.take_outgoing_messages(&mut self.buf);
        }
        while !self.buf.is_empty() {
            for m in std::mem::take(&mut self.buf) {
                if let Some(Some(node)) = self.nodes.get_mut(&m.get_receiver()) {
                    node.handle_incoming(m);
                    node.take_outgoing_messages(&mut self.buf);
                }
            }
        }
    }

    fn run_until(&mut self, mut done: impl FnMut(&mut Self) -> bool, max_ticks: u64) {
        for _ in 0..max_ticks {
            if done(self) {
                return;
            }
            self.step();
        }
        assert!(done(self), "condition not reached within {max_ticks} ticks");
    }

    fn leader(&mut self) -> NodeId {
        self.run_until(|c| c.nodes.values().flatten().any(Node::is_leader), 100);
        self.nodes
            .iter()
            .find(|(_, n)| n.as_ref().is_some_and(Node::is_leader))
            .map(|(&p, _)| p)
            .expect("a leader")
    }

    fn up(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.is_some())
            .map(|(&p, _)| p)
            .collect()
    }

    fn all_reconfigured(&mut self) -> bool {
        self.nodes
            .values()
            .flatten()
            .all(|n| n.is_reconfigured().is_some())
    }
}

/// A three-server cluster with `n` decided entries.
fn with_entries(n: u64) -> (Cluster, NodeId) {
    let mut c = Cluster::new(&[1, 2, 3]);
    let leader = c.leader();
    for v in 0..n {
        c.node(leader).append(Value(v)).unwrap();
    }
    c.run_until(
        |c| {
            c.nodes
                .values()
                .flatten()
                .all(|node| node.get_decided_idx() == n)
        },
        100,
    );
    (c, leader)
}

/// `with_entries(5)` whose stop-sign, naming `members`, is decided everywhere.
fn reconfigured(members: &[NodeId]) -> Cluster {
    let (mut c, leader) = with_entries(5);
    c.node(leader)
        .reconfigure(ReconfigurationRequest::with(members.to_vec(), None))
        .unwrap();
    c.run_until(Cluster::all_reconfigured, 100);
    c
}

#[test]
fn a_decided_stop_sign_ends_the_configuration_everywhere() {
    let (mut c, leader) = with_entries(4);
    let rc = ReconfigurationRequest::with(vec![1, 2, 3], Some(vec![7]));
    c.node(leader).reconfigure(rc.clone()).unwrap();
    c.run_until(Cluster::all_reconfigured, 100);
    for pid in c.up() {
        let node = c.node(pid);
        let ss = node.is_reconfigured().unwrap();
        assert_eq!(
            (ss.config_id, ss.nodes.clone(), ss.metadata.clone()),
            (2, vec![1, 2, 3], Some(vec![7]))
        );
        // The stop-sign reads as the last entry, decided.
        assert_eq!(node.read(4), Some(LogEntry::StopSign(ss, true)));
        assert_eq!(node.read(3), Some(LogEntry::Decided(Value(3))));
        assert!(matches!(
            node.append(Value(99)),
            Err(ProposeErr::PendingReconfigEntry(Value(99)))
        ));
        assert!(matches!(
            node.reconfigure(rc.clone()),
            Err(ProposeErr::PendingReconfigConfig(_))
        ));
    }
}

#[test]
fn a_reconfiguration_requested_at_a_follower_is_forwarded_and_decided() {
    let (mut c, leader) = with_entries(2);
    let follower = c.up().into_iter().find(|&p| p != leader).unwrap();
    c.node(follower)
        .reconfigure(ReconfigurationRequest::with(vec![1, 2], None))
        .unwrap();
    c.run_until(Cluster::all_reconfigured, 100);
    assert_eq!(c.node(leader).is_reconfigured().unwrap().nodes, vec![1, 2]);
}

#[test]
fn invalid_reconfigurations_are_refused_and_change_nothing() {
    let (mut c, leader) = with_entries(1);
    for bad in [vec![], vec![1, 1], vec![0, 2]] {
        let err = c
            .node(leader)
            .reconfigure(ReconfigurationRequest::with(bad.clone(), None))
            .unwrap_err();
        assert!(
            matches!(&err, ProposeErr::InvalidReconfiguration(ConfigError::InvalidField { field, .. }) if field == "new_configuration"),
            "{bad:?}: {err:?}"
        );
    }
    for _ in 0..30 {
        c.step();
    }
    assert!(
        c.nodes
            .values()
            .flatten()
            .all(|n| n.is_reconfigured().is_none())
    );
    c.node(leader).append(Value(5)).unwrap();
}

#[test]
fn into_new_configuration_refuses_a_config_the_stop_sign_does_not_name() {
    let field_of = |r: Result<Node, ConfigError>| match r {
        Err(ConfigError::InvalidField { field, .. }) => field,
        Err(other) => panic!("expected an invalid field, got {other:?}"),
        Ok(_) => panic!("expected an error"),
    };
    // No decided stop-sign yet.
    let (mut c, _) = with_entries(1);
    let node = c.nodes.remove(&1).flatten().unwrap();
    assert_eq!(
        field_of(node.into_new_configuration(config(2, 1, &[1, 2]))),
        "configuration_id"
    );
    for (bad, field) in [
        (config(3, 1, &[1, 2]), "configuration_id"),
        (config(2, 1, &[1, 3]), "peers"),
        (config(2, 1, &[1, 2, 3]), "peers"),
    ] {
        let node = reconfigured(&[1, 2]).nodes.remove(&1).flatten().unwrap();
        assert_eq!(field_of(node.into_new_configuration(bad)), field);
    }
    // Server 3 is not a member of the next configuration.
    let node = reconfigured(&[1, 2]).nodes.remove(&3).flatten().unwrap();
    assert_eq!(
        field_of(node.into_new_configuration(config(2, 3, &[1, 2, 3]))),
        "pid"
    );
}

#[test]
fn the_next_configuration_continues_the_same_log_with_fewer_servers() {
    let mut c = reconfigured(&[1, 2]);
    let mut next = Cluster {
        nodes: BTreeMap::new(),
        buf: Vec::new(),
    };
    for pid in [1, 2] {
        let old = c.nodes.remove(&pid).flatten().unwrap();
        let node = old.into_new_configuration(config(2, pid, &[1, 2])).unwrap();
        next.nodes.insert(pid, Some(node));
    }
    let leader = next.leader();
    for pid in [1, 2] {
        let node = next.node(pid);
        assert_eq!(node.get_decided_idx(), 5);
        assert_eq!(node.read(4), Some(LogEntry::Decided(Value(4))));
        assert_eq!(node.is_reconfigured(), None);
    }
    next.node(leader).append(Value(50)).unwrap();
    next.run_until(
        |c| c.nodes.values().flatten().all(|n| n.get_decided_idx() == 6),
        100,
    );
    assert_eq!(next.node(1).read(5), Some(LogEntry::Decided(Value(50))));
}

#[test]
fn a_stop_sign_accepted_by_a_quorum_survives_the_old_leader_crashing() {
    let (mut c, leader) = with_entries(3);
    c.node(leader)
        .reconfigure(ReconfigurationRequest::with(vec![1, 2, 3], None))
        .unwrap();
    // The followers get the stop-sign, then the leader crashes before it
    // hears that they accepted it: the stop-sign is accepted by a quorum but
    // decided nowhere.
    let mut out = Vec::new();
    c.node(leader).take_outgoing_messages(&mut out);
    for m in out {
        let to = m.get_receiver();
        if let Some(Some(node)) = c.nodes.get_mut(&to) {
            node.handle_incoming(m);
            node.outgoing_messages();
        }
    }
    c.nodes.insert(leader, None);
    assert!(
        c.nodes
            .values()
            .flatten()
            .all(|n| n.is_reconfigured().is_none())
    );
    // The next leader adopts the stop-sign with the log and decides it.
    c.run_until(Cluster::all_reconfigured, 200);
    for pid in c.up() {
        assert_eq!(
            c.node(pid)
                .read(3)
                .map(|e| matches!(e, LogEntry::StopSign(_, true))),
            Some(true)
        );
    }
}
