//! What `get_ui_states` reports about leader election, exactly: the
//! configuration, the heartbeat round, and the one-way "heard from" rounds a
//! dashboard draws its connectivity matrix from.

use omnipaxos::{
    OmniPaxos, OmniPaxosConfig,
    ballot::Ballot,
    messages::{BLEMessage, HeartbeatMsg, HeartbeatReply, HeartbeatRequest, Message},
    storage::{Entry, NoSnapshot},
};
use omnipaxos_storage::memory_storage::MemoryStorage;
use pretty_assertions::assert_eq;

#[derive(Clone, Debug, PartialEq, Eq)]
struct E;

impl Entry for E {
    type Snapshot = NoSnapshot;
}

type Node = OmniPaxos<E, MemoryStorage<E>>;

const CONFIG: u32 = 7;
const ETT: u64 = 10;

/// Node 1 of the cluster {1, 2, 3} in configuration 7.
fn node() -> Node {
    OmniPaxosConfig {
        configuration_id: CONFIG,
        pid: 1,
        peers: vec![2, 3],
        election_tick_timeout: ETT,
        ..Default::default()
    }
    .build(MemoryStorage::default())
    .unwrap()
}

fn heartbeat(from: u64, msg: HeartbeatMsg) -> Message<E> {
    Message::BLE(BLEMessage {
        configuration_id: CONFIG,
        from,
        to: 1,
        msg,
    })
}

/// `(pid, last_heartbeat_round)` of every peer row.
fn heard(n: &Node) -> Vec<(u64, Option<u32>)> {
    n.get_ui_states()
        .cluster_state
        .iter()
        .map(|p| (p.pid, p.last_heartbeat_round))
        .collect()
}

#[test]
fn a_fresh_node_reports_its_configuration_and_has_heard_from_nobody() {
    let n = node();
    let states = n.get_ui_states();
    assert_eq!(states.configuration_id, CONFIG);
    assert_eq!(states.heartbeat_round, 1, "the first round opens at start");
    assert_eq!(heard(&n), vec![(2, None), (3, None)]);
}

#[test]
fn a_request_from_a_peer_records_the_round_it_arrived_in_for_that_peer_only() {
    let mut n = node();
    // The peer's own round number is unrelated to ours: what is recorded
    // is this node's round at arrival.
    n.handle_incoming(heartbeat(
        2,
        HeartbeatMsg::Request(HeartbeatRequest { round: 41 }),
    ));
    assert_eq!(heard(&n), vec![(2, Some(1)), (3, None)]);
    assert!(
        !n.get_ui_states().cluster_state[0].connected,
        "one direction heard is not a round trip"
    );
}

#[test]
fn rounds_advance_every_election_timeout_and_a_silent_peer_falls_behind() {
    let mut n = node();
    n.handle_incoming(heartbeat(
        3,
        HeartbeatMsg::Request(HeartbeatRequest { round: 1 }),
    ));
    for _ in 0..2 * ETT {
        n.tick();
    }
    let states = n.get_ui_states();
    assert_eq!(states.heartbeat_round, 3);
    assert_eq!(heard(&n), vec![(2, None), (3, Some(1))]);
}

#[test]
fn a_reply_counts_as_heard_and_answering_the_round_makes_the_peer_connected() {
    let mut n = node();
    let reply = HeartbeatReply {
        round: 1,
        // A reply speaks for its sender's own ballot; one naming another
        // server's is refused.
        ballot: Ballot::with(0, 0, 2),
        quorum_connected: false,
        leader: None,
    };
    n.handle_incoming(heartbeat(2, HeartbeatMsg::Reply(reply)));
    for _ in 0..ETT {
        n.tick();
    }
    let states = n.get_ui_states();
    assert_eq!(heard(&n), vec![(2, Some(1)), (3, None)]);
    assert_eq!(
        states
            .cluster_state
            .iter()
            .map(|p| (p.pid, p.connected))
            .collect::<Vec<_>>(),
        vec![(2, true), (3, false)]
    );
}

#[test]
fn heartbeats_from_a_server_outside_the_configuration_are_not_recorded() {
    let mut n = node();
    n.handle_incoming(heartbeat(
        9,
        HeartbeatMsg::Request(HeartbeatRequest { round: 1 }),
    ));
    assert_eq!(heard(&n), vec![(2, None), (3, None)]);
    assert_eq!(n.get_ui_states().cluster_state.len(), 2);
}
