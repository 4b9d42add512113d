//! What every message passes first: the receiver, the configuration, the
//! sender's right to send it; and the heartbeats of leader election.

use crate::fixtures::*;
use omnipaxos::{Ballot, messages::*};
use pretty_assertions::assert_eq;

#[test]
fn messages_for_another_node_configuration_or_from_a_stranger_are_ignored() {
    let mut f = node(2);
    f.handle_incoming(prepare(B1).sent(1, 3));
    f.handle_incoming(prepare(B1).sent(9, 2));
    f.handle_incoming(prepare(B1).sent_in(7, 1, 2));
    assert_eq!(f.outgoing_messages(), vec![]);
    assert_eq!(f.get_promise(), Ballot::default());
}

#[test]
fn a_prepare_whose_ballot_names_another_server_is_ignored() {
    let mut f = node(2);
    f.handle_incoming(prepare(B1).sent(3, 2));
    assert_eq!(paxos_out(&mut f), vec![]);
    assert_eq!(f.get_promise(), Ballot::default());
}

#[test]
fn heartbeat_request_gets_a_reply_with_ballot_and_connectivity() {
    let mut f = node(2);
    f.handle_incoming(ble(
        1,
        2,
        HeartbeatMsg::Request(HeartbeatRequest { round: 3 }),
    ));
    assert_eq!(
        f.outgoing_messages(),
        vec![ble(
            2,
            1,
            HeartbeatMsg::Reply(HeartbeatReply {
                round: 3,
                ballot: Ballot::with(0, 0, 2),
                quorum_connected: true,
                leader: None,
            })
        )]
    );
}
