//! Reconfiguration: the stop-sign that ends a configuration, the refusals
//! that follow it, and continuing the same log in the next configuration.
//!
//! These tests drive a small lossless in-memory cluster by hand, so that a
//! server can be replaced by its next-configuration self mid-run.

use omnipaxos::{
    ConfigError, Migration, OmniPaxos, OmniPaxosConfig, ProposeErr, ReconfigurationRequest,
    messages::{Message, PaxosMessage, PaxosMsg},
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
    /// Log transfers (pull replies) carry at most this many entries per tick
    /// on each link; `None` delivers everything at once.
    bandwidth: Option<u64>,
    /// Pull replies still on the wire: `(arrival tick, message)`.
    in_transit: Vec<(u64, Message<Value>)>,
    /// Per link `(from, to)`, the tick at which it is free again.
    busy_until: BTreeMap<(NodeId, NodeId), u64>,
    now: u64,
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
        Self::of(nodes)
    }

    fn of(nodes: BTreeMap<NodeId, Option<Node>>) -> Self {
        Self {
            nodes,
            buf: Vec::new(),
            bandwidth: None,
            in_transit: Vec::new(),
            busy_until: BTreeMap::new(),
            now: 0,
        }
    }

    fn node(&mut self, pid: NodeId) -> &mut Node {
        self.nodes
            .get_mut(&pid)
            .and_then(Option::as_mut)
            .expect("server is up")
    }

    /// One tick everywhere, then every message is delivered (pull replies
    /// when the bandwidth model says they arrive).
    fn step(&mut self) {
        self.now += 1;
        for node in self.nodes.values_mut().flatten() {
            node.tick();
            node.take_outgoing_messages(&mut self.buf);
        }
        let now = self.now;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.in_transit)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.in_transit = later;
        // Transfers that arrive now go straight to their receiver.
        for (_, m) in due {
            if let Some(Some(node)) = self.nodes.get_mut(&m.get_receiver()) {
                node.handle_incoming(m);
                node.take_outgoing_messages(&mut self.buf);
            }
        }
        while !self.buf.is_empty() {
            for m in std::mem::take(&mut self.buf) {
                if let (
                    Some(b),
                    Message::SequencePaxos(PaxosMessage {
                        from,
                        to,
                        msg: PaxosMsg::PullLogReply(r),
                        ..
                    }),
                ) = (self.bandwidth, &m)
                {
                    // The link sends one transfer after another.
                    let link = self.busy_until.entry((*from, *to)).or_insert(now);
                    let start = (*link).max(now);
                    *link = start + (r.entries.len() as u64).div_ceil(b).max(1);
                    self.in_transit.push((*link, m));
                    continue;
                }
                if let Some(Some(node)) = self.nodes.get_mut(&m.get_receiver()) {
                    node.handle_incoming(m);
                    node.take_outgoing_messages(&mut self.buf);
                }
            }
        }
    }

    /// As `step`, but fails if one tick's messages cause more than `max`
    /// deliveries: servers that answer each other without end.
    fn step_bounded(&mut self, max: usize) {
        self.now += 1;
        for node in self.nodes.values_mut().flatten() {
            node.tick();
            node.take_outgoing_messages(&mut self.buf);
        }
        let mut delivered = 0;
        while !self.buf.is_empty() {
            for m in std::mem::take(&mut self.buf) {
                delivered += 1;
                assert!(delivered <= max, "messages never stop: {m:?}");
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
    let mut next = Cluster::of(BTreeMap::new());
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

/// Moves the servers of a reconfigured cluster to configuration 2 with
/// `members`: continuing servers via `into_new_configuration`, new ones via
/// `build_joining` pulling the log from `sources`. Servers that leave keep
/// running their old configuration, so that they can serve pulls.
fn move_to(c: &mut Cluster, members: &[NodeId], sources: &[NodeId]) {
    let log_len = c
        .nodes
        .values()
        .flatten()
        .next()
        .map(|n| n.get_decided_idx() - 1)
        .expect("a server");
    for &pid in members {
        let node = match c.nodes.remove(&pid) {
            Some(Some(old)) => old.into_new_configuration(config(2, pid, members)).unwrap(),
            _ => config(2, pid, members)
                .build_joining(
                    MemoryStorage::default(),
                    Migration {
                        log_len,
                        sources: sources.to_vec(),
                    },
                )
                .unwrap(),
        };
        c.nodes.insert(pid, Some(node));
    }
}

/// Moves the servers `pids` of a reconfigured cluster into configuration 2
/// with `members`, on their storage.
fn continue_in_configuration_2(c: &mut Cluster, pids: &[NodeId], members: &[NodeId]) {
    for &pid in pids {
        let old = c.nodes.remove(&pid).flatten().expect("server is up");
        let new = old.into_new_configuration(config(2, pid, members)).unwrap();
        c.nodes.insert(pid, Some(new));
    }
}

/// The decided entries of server `pid`, as values.
fn decided_values(c: &mut Cluster, pid: NodeId) -> Vec<Value> {
    let node = c.node(pid);
    node.read_decided_suffix(0)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| match e {
            LogEntry::Decided(v) => Some(v),
            _ => None,
        })
        .collect()
}

#[test]
fn replacing_one_of_five_servers_keeps_the_log_while_clients_keep_appending() {
    let mut c = Cluster::new(&[1, 2, 3, 4, 5]);
    let leader = c.leader();
    let mut next_value = 0;
    // Clients append before, during and after the reconfiguration.
    for _ in 0..20 {
        c.node(leader).append(Value(next_value)).unwrap();
        next_value += 1;
        c.step();
    }
    c.node(leader)
        .reconfigure(ReconfigurationRequest::with(vec![1, 2, 3, 4, 6], None))
        .unwrap();
    // Appends racing the stop-sign are refused, never silently dropped.
    match c.node(leader).append(Value(next_value)) {
        Err(ProposeErr::PendingReconfigEntry(_)) => {}
        other => panic!("expected PendingReconfigEntry, got {other:?}"),
    }
    c.run_until(Cluster::all_reconfigured, 100);
    let old_log = decided_values(&mut c, 1);
    assert_eq!(old_log.len(), 20);

    move_to(&mut c, &[1, 2, 3, 4, 6], &[1, 2, 3, 4, 5]);
    c.run_until(|c| !c.node(6).is_migrating(), 100);
    let new_leader = {
        let mut n = Cluster::of(std::mem::take(&mut c.nodes));
        n.nodes.remove(&5); // server 5 has left; its old instance is no longer needed
        let l = n.leader();
        c.nodes = std::mem::take(&mut n.nodes);
        l
    };
    for v in 100..110 {
        c.node(new_leader).append(Value(v)).unwrap();
        c.step();
    }
    c.run_until(
        |c| {
            [1, 2, 3, 4, 6]
                .iter()
                .all(|&p| c.node(p).get_decided_idx() == 30)
        },
        200,
    );
    for pid in [1, 2, 3, 4, 6] {
        let log = decided_values(&mut c, pid);
        assert_eq!(&log[..20], &old_log[..], "server {pid} changed the old log");
        assert_eq!(&log[20..], &(100..110).map(Value).collect::<Vec<_>>()[..]);
    }
}

#[test]
fn replacing_a_majority_pulls_the_log_before_the_new_servers_take_part() {
    let (mut c, _) = with_entries(12);
    let leader = c.leader();
    c.node(leader)
        .reconfigure(ReconfigurationRequest::with(vec![1, 4, 5], None))
        .unwrap();
    c.run_until(Cluster::all_reconfigured, 100);
    let old_log = decided_values(&mut c, 1);
    move_to(&mut c, &[1, 4, 5], &[1, 2, 3]);
    // The newcomers are a majority of the new configuration: had they voted
    // with empty logs, a leader could have started the new configuration
    // from nothing.
    assert!(c.node(4).is_migrating() && c.node(5).is_migrating());
    c.run_until(
        |c| !c.node(4).is_migrating() && !c.node(5).is_migrating(),
        100,
    );
    for pid in [4, 5] {
        assert_eq!(decided_values(&mut c, pid), old_log, "server {pid}");
    }
    c.nodes.remove(&2);
    c.nodes.remove(&3);
    let new_leader = c.leader();
    c.node(new_leader).append(Value(77)).unwrap();
    c.run_until(
        |c| [1, 4, 5].iter().all(|&p| c.node(p).get_decided_idx() == 13),
        100,
    );
}

#[test]
fn pulling_from_three_sources_is_faster_than_from_one() {
    // A log of 600 entries and links that carry 10 entries per tick: from one
    // source the transfer takes ~60 ticks, from three ~20.
    let mut ticks = Vec::new();
    for sources in [vec![1], vec![1, 2, 3]] {
        let mut c = Cluster::new(&[1, 2, 3]);
        let leader = c.leader();
        for v in 0..600 {
            c.node(leader).append(Value(v)).unwrap();
        }
        c.run_until(
            |c| {
                c.nodes
                    .values()
                    .flatten()
                    .all(|n| n.get_decided_idx() == 600)
            },
            100,
        );
        c.node(leader)
            .reconfigure(ReconfigurationRequest::with(vec![1, 2, 3, 4], None))
            .unwrap();
        c.run_until(Cluster::all_reconfigured, 100);
        c.bandwidth = Some(10);
        move_to(&mut c, &[1, 2, 3, 4], &sources);
        let start = c.now;
        c.run_until(|c| !c.node(4).is_migrating(), 500);
        ticks.push(c.now - start);
        assert_eq!(decided_values(&mut c, 4).len(), 600);
    }
    eprintln!(
        "migration of 600 entries at 10 entries/tick/link: 1 source {} ticks, 3 sources {} ticks",
        ticks[0], ticks[1]
    );
    assert!(
        ticks[1] * 2 < ticks[0],
        "parallel pulling is not faster: {ticks:?}"
    );
}

/// Server 4 joins `[1, 2, 4]` knowing only where the old servers are
/// (`build_joining_from`): it is started before the reconfiguration is even
/// proposed, learns the log's length from an old server once the stop-sign
/// is decided, pulls it, and then takes part.
#[test]
fn a_joiner_given_only_the_sources_learns_the_log_length_and_pulls_the_log() {
    let (mut c, leader) = with_entries(12);
    let joiner = config(2, 4, &[1, 2, 4])
        .build_joining_from(MemoryStorage::default(), vec![1, 2, 3])
        .unwrap();
    c.nodes.insert(4, Some(joiner));
    // Nobody can answer yet: the old configuration has no stop-sign.
    for _ in 0..30 {
        c.step();
    }
    assert!(c.node(4).is_migrating());
    assert_eq!(
        c.node(4).get_migration(),
        None,
        "the length is not known yet"
    );
    assert_eq!(c.node(4).get_decided_idx(), 0);
    assert_eq!(
        c.node(leader).get_decided_idx(),
        12,
        "the old servers go on"
    );

    c.node(leader)
        .reconfigure(ReconfigurationRequest::with(vec![1, 2, 4], None))
        .unwrap();
    c.run_until(
        |c| {
            [1, 2, 3]
                .iter()
                .all(|&p| c.node(p).is_reconfigured().is_some())
        },
        100,
    );
    // The old servers are all still in configuration 1: they answer the
    // joiner from their decided stop-sign, and serve its pulls.
    c.run_until(|c| !c.node(4).is_migrating(), 100);
    let old_log = decided_values(&mut c, 1);
    assert_eq!(old_log.len(), 12);
    assert_eq!(decided_values(&mut c, 4), old_log);
    continue_in_configuration_2(&mut c, &[1, 2], &[1, 2, 4]);
    c.nodes.remove(&3);
    let new_leader = c.leader();
    c.node(new_leader).append(Value(99)).unwrap();
    c.run_until(
        |c| [1, 2, 4].iter().all(|&p| c.node(p).get_decided_idx() == 13),
        100,
    );
    assert_eq!(decided_values(&mut c, 4).last(), Some(&Value(99)));
}

/// Once the continuing servers have moved on, they answer the joiner in the
/// new configuration, even with every old-only server gone.
#[test]
fn a_joiner_started_after_the_change_learns_the_log_length_from_its_new_peers() {
    let mut c = reconfigured(&[1, 2, 4]);
    let old_log = decided_values(&mut c, 1);
    continue_in_configuration_2(&mut c, &[1, 2], &[1, 2, 4]);
    c.nodes.remove(&3);
    let joiner = config(2, 4, &[1, 2, 4])
        .build_joining_from(MemoryStorage::default(), vec![1, 2, 3])
        .unwrap();
    c.nodes.insert(4, Some(joiner));
    // Server 3 is gone for good: its slice is asked of the next source.
    c.run_until(|c| !c.node(4).is_migrating(), 200);
    assert_eq!(decided_values(&mut c, 4), old_log);
    let new_leader = c.leader();
    c.node(new_leader).append(Value(7)).unwrap();
    c.run_until(
        |c| [1, 2, 4].iter().all(|&p| c.node(p).get_decided_idx() == 6),
        100,
    );
}

/// A joiner takes an answer only from a server it asked, about the
/// configuration it joins, and naming it; and a storage that already holds
/// the pulled log (a restart after joining) starts at once.
#[test]
fn a_joiner_ignores_answers_it_did_not_ask_for_and_restarts_without_asking_again() {
    use omnipaxos::messages::{StopSignDecided, StopSignReply};
    use omnipaxos::{ballot::Ballot, util::StopSign};
    let mut joiner = config(2, 4, &[1, 2, 4])
        .build_joining_from(MemoryStorage::<Value>::default(), vec![1, 2])
        .unwrap();
    let reply = |from, config_id, nodes: Vec<NodeId>| {
        Message::SequencePaxos(PaxosMessage {
            configuration_id: 2,
            from,
            to: 4,
            msg: PaxosMsg::StopSignReply(StopSignReply {
                decided: Some(StopSignDecided {
                    ss: StopSign::with(config_id, nodes, None),
                    stop_idx: 10,
                    n_accepted: Ballot::default(),
                }),
            }),
        })
    };
    joiner.handle_incoming(reply(9, 2, vec![1, 2, 4])); // not asked
    joiner.handle_incoming(reply(1, 3, vec![1, 2, 4])); // another configuration
    joiner.handle_incoming(reply(1, 2, vec![1, 2, 5])); // without the joiner
    assert_eq!(joiner.get_migration(), None);
    assert!(joiner.is_migrating());
    joiner.handle_incoming(reply(1, 2, vec![1, 2, 4]));
    assert_eq!(
        joiner.get_migration(),
        Some(Migration {
            log_len: 10,
            sources: vec![1, 2]
        })
    );

    // A restart of a server that finished joining: its storage holds the
    // log and how the old configuration ended, so it does not ask again.
    use omnipaxos::{storage::Storage, util::ConfigurationEnd};
    let mut storage = MemoryStorage::<Value>::default();
    storage.append_entries((0..5).map(Value).collect()).unwrap();
    storage.set_decided_idx(5).unwrap();
    storage
        .set_previous_configuration_end(Some(ConfigurationEnd {
            stopsign: StopSign::with(2, vec![1, 2, 4], None),
            stop_idx: 5,
            accepted_round: Ballot::default(),
        }))
        .unwrap();
    let restarted = config(2, 4, &[1, 2, 4])
        .build_joining_from(storage, vec![1, 2])
        .unwrap();
    assert!(!restarted.is_migrating());
    assert_eq!(restarted.get_decided_idx(), 5);
}

#[test]
fn build_joining_from_refuses_sources_it_cannot_use() {
    let build = |configuration_id, sources: Vec<NodeId>| {
        config(configuration_id, 4, &[1, 2, 4])
            .build_joining_from(MemoryStorage::<Value>::default(), sources)
            .err()
    };
    for (configuration_id, sources, field) in [
        (2, vec![], "migration.sources"),
        (2, vec![1, 4], "migration.sources"),
        (2, vec![0], "migration.sources"),
        (2, vec![1, 1], "migration.sources"),
        (1, vec![1], "configuration_id"),
    ] {
        match build(configuration_id, sources.clone()) {
            Some(ConfigError::InvalidField { field: f, .. }) => {
                assert_eq!(f, field, "{sources:?}");
            }
            other => panic!("{sources:?}: expected an invalid {field}, got {other:?}"),
        }
    }
}

/// A server the next configuration leaves out keeps running its old
/// configuration beside the servers that moved on: it learns how its
/// configuration ended and the servers do not trade messages endlessly.
#[test]
fn a_left_out_server_beside_the_moved_on_ones_goes_quiet() {
    let mut c = reconfigured(&[1, 2]);
    continue_in_configuration_2(&mut c, &[1, 2], &[1, 2]);
    for _ in 0..200 {
        c.step_bounded(10_000);
    }
    assert!(c.node(3).is_reconfigured().is_some());
}
