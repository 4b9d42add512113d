//! Reconfiguration: the stop-sign that ends a configuration, the refusals
//! that follow it, and continuing the same log in the next configuration.
//!
//! The scenarios run on the simulator's lossless default network. The
//! simulator moves servers on to the next configuration by itself; a test
//! that wants to look at servers in the configuration that ended, or to move
//! one on itself, holds that back
//! ([`SimCluster::hold_configuration_changes`]) and resumes it when done.

use omnipaxos::{
    ConfigError, Migration, OmniPaxos, OmniPaxosConfig, ProposeErr, ReconfigurationRequest,
    messages::{Message, PaxosMessage, PaxosMsg},
    util::{LogEntry, NodeId},
};
use omnipaxos_storage::memory_storage::MemoryStorage;
use omnipaxos_tests::{SharedStorage, SimCluster, SimOptions, Value};
use pretty_assertions::assert_eq;

type Node = OmniPaxos<Value, SharedStorage>;

/// Server `pid`'s config in configuration `configuration_id` of the servers
/// `all`: the defaults, which are also what the simulator builds with.
fn config(configuration_id: u32, pid: NodeId, all: &[NodeId]) -> OmniPaxosConfig {
    OmniPaxosConfig {
        configuration_id,
        pid,
        peers: all.iter().copied().filter(|&p| p != pid).collect(),
        ..Default::default()
    }
}

/// Steps until a server of the current configuration leads, and returns it.
fn wait_for_a_leader(c: &mut SimCluster) -> NodeId {
    c.run_until(|c| c.leader().is_some(), 100);
    c.leader().expect("run_until returned, so a server leads")
}

/// Whether every running server has a decided stop-sign.
fn all_reconfigured(c: &SimCluster) -> bool {
    c.live_ids()
        .iter()
        .all(|&p| c.node(p).is_reconfigured().is_some())
}

/// A three-server cluster on `options` with the `n` decided entries
/// `Value(0)..Value(n)`, and its leader.
fn with_entries_on(options: SimOptions, n: u64) -> (SimCluster, NodeId) {
    let mut c = SimCluster::new(&[1, 2, 3], options);
    let leader = wait_for_a_leader(&mut c);
    for v in 0..n {
        c.propose(leader, Value(v)).unwrap();
    }
    c.run_until(|c| c.live_ids().iter().all(|&p| c.decided_idx(p) == n), 100);
    (c, leader)
}

/// [`with_entries_on`] the default options.
fn with_entries(n: u64) -> (SimCluster, NodeId) {
    with_entries_on(SimOptions::default(), n)
}

/// `with_entries_on(options, 5)` whose stop-sign, naming `members`, is
/// decided everywhere, with the configuration changes held: every server is
/// still in configuration 1.
fn reconfigured_on(options: SimOptions, members: &[NodeId]) -> SimCluster {
    let (mut c, leader) = with_entries_on(options, 5);
    c.hold_configuration_changes();
    c.reconfigure(leader, members).unwrap();
    c.run_until(all_reconfigured, 100);
    c
}

/// [`reconfigured_on`] the default options.
fn reconfigured(members: &[NodeId]) -> SimCluster {
    reconfigured_on(SimOptions::default(), members)
}

#[test]
fn a_decided_stop_sign_ends_the_configuration_everywhere() {
    let (mut c, leader) = with_entries(4);
    c.hold_configuration_changes();
    let rc = ReconfigurationRequest::with(vec![1, 2, 3], Some(vec![7]));
    c.reconfigure_with(leader, rc.clone()).unwrap();
    c.run_until(all_reconfigured, 100);
    for pid in c.live_ids() {
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
            c.propose(pid, Value(99)),
            Err(ProposeErr::PendingReconfigEntry(Value(99)))
        ));
        assert!(matches!(
            c.reconfigure_with(pid, rc.clone()),
            Err(ProposeErr::PendingReconfigConfig(_))
        ));
    }
}

#[test]
fn a_reconfiguration_requested_at_a_follower_is_forwarded_and_decided() {
    let (mut c, leader) = with_entries(2);
    let follower = c.others(leader)[0];
    c.hold_configuration_changes();
    c.reconfigure(follower, &[1, 2]).unwrap();
    c.run_until(all_reconfigured, 100);
    assert_eq!(c.node(leader).is_reconfigured().unwrap().nodes, vec![1, 2]);
}

#[test]
fn invalid_reconfigurations_are_refused_and_change_nothing() {
    let (mut c, leader) = with_entries(1);
    for bad in [vec![], vec![1, 1], vec![0, 2]] {
        let err = c.reconfigure(leader, &bad).unwrap_err();
        assert!(
            matches!(&err, ProposeErr::InvalidReconfiguration(ConfigError::InvalidField { field, .. }) if field == "new_configuration"),
            "{bad:?}: {err:?}"
        );
    }
    c.run_for(30);
    assert!(
        c.live_ids()
            .iter()
            .all(|&p| c.node(p).is_reconfigured().is_none())
    );
    c.propose(leader, Value(5)).unwrap();
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
    let node = c.take_node(1);
    assert_eq!(
        field_of(node.into_new_configuration(config(2, 1, &[1, 2]))),
        "configuration_id"
    );
    for (bad, field) in [
        (config(3, 1, &[1, 2]), "configuration_id"),
        (config(2, 1, &[1, 3]), "peers"),
        (config(2, 1, &[1, 2, 3]), "peers"),
    ] {
        let node = reconfigured(&[1, 2]).take_node(1);
        assert_eq!(field_of(node.into_new_configuration(bad)), field);
    }
    // Server 3 is not a member of the next configuration.
    let node = reconfigured(&[1, 2]).take_node(3);
    assert_eq!(
        field_of(node.into_new_configuration(config(2, 3, &[1, 2, 3]))),
        "pid"
    );
}

#[test]
fn the_next_configuration_continues_the_same_log_with_fewer_servers() {
    let mut c = reconfigured(&[1, 2]);
    // The next configuration runs without server 3.
    c.crash(3);
    c.resume_configuration_changes();
    let leader = wait_for_a_leader(&mut c);
    for pid in [1, 2] {
        let node = c.node(pid);
        assert_eq!(node.get_decided_idx(), 5);
        assert_eq!(node.read(4), Some(LogEntry::Decided(Value(4))));
        assert_eq!(node.is_reconfigured(), None);
    }
    c.propose(leader, Value(50)).unwrap();
    c.run_until(|c| [1, 2].iter().all(|&p| c.decided_idx(p) == 6), 100);
    assert_eq!(c.node(1).read(5), Some(LogEntry::Decided(Value(50))));
}

#[test]
fn a_stop_sign_accepted_by_a_quorum_survives_the_old_leader_crashing() {
    let (mut c, leader) = with_entries(3);
    c.hold_configuration_changes();
    c.reconfigure(leader, &[1, 2, 3]).unwrap();
    // The followers get the stop-sign, then the leader crashes before it
    // hears that they accepted it: the stop-sign is accepted by a quorum but
    // decided nowhere. One step delivers what the leader sent; what the
    // followers answer waits for the next step, and the crash loses it.
    c.step();
    c.crash(leader);
    assert!(
        c.live_ids()
            .iter()
            .all(|&p| c.node(p).is_reconfigured().is_none())
    );
    // The next leader adopts the stop-sign with the log and decides it.
    c.run_until(all_reconfigured, 200);
    for pid in c.live_ids() {
        assert_eq!(
            c.node(pid)
                .read(3)
                .map(|e| matches!(e, LogEntry::StopSign(_, true))),
            Some(true)
        );
    }
}

#[test]
fn replacing_one_of_five_servers_keeps_the_log_while_clients_keep_appending() {
    let mut c = SimCluster::new(&[1, 2, 3, 4, 5], SimOptions::default());
    let leader = wait_for_a_leader(&mut c);
    let mut next_value = 0;
    // Clients append before, during and after the reconfiguration.
    for _ in 0..20 {
        c.propose(leader, Value(next_value)).unwrap();
        next_value += 1;
        c.step();
    }
    c.hold_configuration_changes();
    c.reconfigure(leader, &[1, 2, 3, 4, 6]).unwrap();
    // Appends racing the stop-sign are refused, never silently dropped.
    match c.propose(leader, Value(next_value)) {
        Err(ProposeErr::PendingReconfigEntry(_)) => {}
        other => panic!("expected PendingReconfigEntry, got {other:?}"),
    }
    c.run_until(all_reconfigured, 100);
    let old_log = c.decided_entries(1);
    assert_eq!(old_log.len(), 20);

    // Servers 1 to 4 move on; server 6 joins, pulling from 1 to 5.
    c.resume_configuration_changes();
    c.run_until(|c| !c.node(6).is_migrating(), 100);
    // Server 5 has left; its old instance is no longer needed.
    c.crash(5);
    let new_leader = wait_for_a_leader(&mut c);
    for v in 100..110 {
        c.propose(new_leader, Value(v)).unwrap();
        c.step();
    }
    c.run_until(
        |c| [1, 2, 3, 4, 6].iter().all(|&p| c.decided_idx(p) == 30),
        200,
    );
    for pid in [1, 2, 3, 4, 6] {
        let log = c.decided_entries(pid);
        assert_eq!(&log[..20], &old_log[..], "server {pid} changed the old log");
        assert_eq!(&log[20..], &(100..110).map(Value).collect::<Vec<_>>()[..]);
    }
}

#[test]
fn replacing_a_majority_pulls_the_log_before_the_new_servers_take_part() {
    let (mut c, _) = with_entries(12);
    let leader = wait_for_a_leader(&mut c);
    c.hold_configuration_changes();
    c.reconfigure(leader, &[1, 4, 5]).unwrap();
    c.run_until(all_reconfigured, 100);
    let old_log = c.decided_entries(1);
    // Server 1 moves on; servers 4 and 5 join, pulling from 1, 2 and 3.
    c.resume_configuration_changes();
    // The newcomers are a majority of the new configuration: had they voted
    // with empty logs, a leader could have started the new configuration
    // from nothing.
    assert!(c.node(4).is_migrating() && c.node(5).is_migrating());
    c.run_until(
        |c| !c.node(4).is_migrating() && !c.node(5).is_migrating(),
        100,
    );
    for pid in [4, 5] {
        assert_eq!(c.decided_entries(pid), old_log, "server {pid}");
    }
    c.crash(2);
    c.crash(3);
    let new_leader = wait_for_a_leader(&mut c);
    c.propose(new_leader, Value(77)).unwrap();
    c.run_until(|c| [1, 4, 5].iter().all(|&p| c.decided_idx(p) == 13), 100);
}

#[test]
fn pulling_from_three_sources_is_faster_than_from_one() {
    // A log of 600 entries and links that carry 10 entries per tick: from one
    // source the transfer takes ~60 ticks, from three ~20.
    let mut ticks = Vec::new();
    for sources in [vec![1], vec![1, 2, 3]] {
        let (mut c, leader) = with_entries(0);
        for v in 0..600 {
            c.propose(leader, Value(v)).unwrap();
        }
        c.run_until(
            |c| c.live_ids().iter().all(|&p| c.decided_idx(p) == 600),
            100,
        );
        c.hold_configuration_changes();
        c.reconfigure(leader, &[1, 2, 3, 4]).unwrap();
        c.run_until(all_reconfigured, 100);
        c.limit_pull_bandwidth(10);
        c.pull_from(&sources);
        c.resume_configuration_changes();
        let start = c.now();
        c.run_until(|c| !c.node(4).is_migrating(), 500);
        ticks.push(c.now() - start);
        assert_eq!(c.decided_entries(4).len(), 600);
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

/// Options under which a server new to a configuration is given only the
/// sources, and asks them how long the log is.
fn asking_joiners() -> SimOptions {
    SimOptions {
        joiners_ask_log_len: true,
        ..SimOptions::default()
    }
}

/// Server 4 joins `[1, 2, 4]` knowing only where the old servers are
/// (`build_joining_from`): it is started before the reconfiguration is even
/// proposed, learns the log's length from an old server once the stop-sign
/// is decided, pulls it, and then takes part.
#[test]
fn a_joiner_given_only_the_sources_learns_the_log_length_and_pulls_the_log() {
    let (mut c, leader) = with_entries_on(asking_joiners(), 12);
    c.add_joiner(4, &[1, 2, 4], &[1, 2, 3]);
    // Nobody can answer yet: the old configuration has no stop-sign.
    c.run_for(30);
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

    c.hold_configuration_changes();
    c.reconfigure(leader, &[1, 2, 4]).unwrap();
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
    let old_log = c.decided_entries(1);
    assert_eq!(old_log.len(), 12);
    assert_eq!(c.decided_entries(4), old_log);
    // Servers 1 and 2 move on; server 3 is gone.
    c.crash(3);
    c.resume_configuration_changes();
    let new_leader = wait_for_a_leader(&mut c);
    c.propose(new_leader, Value(99)).unwrap();
    c.run_until(|c| [1, 2, 4].iter().all(|&p| c.decided_idx(p) == 13), 100);
    assert_eq!(c.decided_entries(4).last(), Some(&Value(99)));
}

/// Once the continuing servers have moved on, they answer the joiner in the
/// new configuration, even with every old-only server gone.
#[test]
fn a_joiner_started_after_the_change_learns_the_log_length_from_its_new_peers() {
    let mut c = reconfigured_on(asking_joiners(), &[1, 2, 4]);
    let old_log = c.decided_entries(1);
    c.crash(3);
    // Servers 1 and 2 move on, and server 4 starts with `build_joining_from`
    // and the sources 1, 2 and 3 before anyone takes a step.
    c.resume_configuration_changes();
    // Server 3 is gone for good: its slice is asked of the next source.
    c.run_until(|c| !c.node(4).is_migrating(), 200);
    assert_eq!(c.decided_entries(4), old_log);
    let new_leader = wait_for_a_leader(&mut c);
    c.propose(new_leader, Value(7)).unwrap();
    c.run_until(|c| [1, 2, 4].iter().all(|&p| c.decided_idx(p) == 6), 100);
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
    // Servers 1 and 2 move on; server 3 keeps running configuration 1.
    c.resume_configuration_changes();
    // A message a server sends while handling another waits for the next
    // step, so an endless exchange cannot stall one step here as it could
    // a delivery loop: it would deliver something in every step. What the
    // servers' timers cause leaves steps with nothing to deliver.
    let mut delivered = Vec::new();
    for _ in 0..200 {
        let before = c.network().stats().delivered;
        c.step();
        delivered.push(c.network().stats().delivered - before);
    }
    let most = delivered.iter().copied().max().unwrap_or_default();
    assert!(most <= 10_000, "messages never stop: {most} in one step");
    for window in delivered[100..].windows(10) {
        assert!(
            window.contains(&0),
            "the servers trade messages in every step: {delivered:?}"
        );
    }
    assert!(c.node(3).is_reconfigured().is_some());
}
