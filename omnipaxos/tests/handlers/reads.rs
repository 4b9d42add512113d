//! Linearizable reads.

use crate::fixtures::*;
use omnipaxos::{ReadError, ReconfigurationRequest, messages::*};
use pretty_assertions::assert_eq;

#[test]
fn an_answer_to_a_read_of_an_earlier_incarnation_does_not_complete_a_new_read() {
    // Before a crash this server asked for a read under session 1; restarted,
    // it is synchronised in session 2 and asks again with the same local id.
    let old_id = ForwardId {
        ballot: B1,
        session: 1,
        seq: 1,
    };
    let mut f = node(2);
    f.handle_incoming(prepare(B1).sent(1, 2));
    f.handle_incoming(
        AcceptSync {
            seq_num: SequenceNumber {
                session: 2,
                counter: 1,
            },
            ..accept_sync(B1, log_sync(0, vec![]))
        }
        .sent(1, 2),
    );
    f.outgoing_messages();
    let read = f.request_read().unwrap();
    let new_id = ForwardId {
        ballot: B1,
        session: 2,
        seq: 1,
    };
    assert_eq!(
        paxos_out(&mut f),
        vec![sp(2, 1, PaxosMsg::ReadRequest(ReadRequest { id: new_id }))]
    );
    let mut points = Vec::new();
    f.handle_incoming(sp(
        1,
        2,
        PaxosMsg::ReadResponse(ReadResponse {
            id: old_id,
            read_idx: 3,
        }),
    ));
    f.take_read_points(&mut points);
    assert_eq!(points, vec![], "a stale answer completed the read");
    f.handle_incoming(sp(
        1,
        2,
        PaxosMsg::ReadResponse(ReadResponse {
            id: new_id,
            read_idx: 7,
        }),
    ));
    f.take_read_points(&mut points);
    assert_eq!(points, vec![(read, 7)]);
}

/// Soak seeds 1739, 2432, 2684: a server whose configuration ended kept
/// serving linearizable reads with read points of the old configuration,
/// while the next one decided new entries.
#[test]
fn no_read_is_served_once_the_stop_sign_is_in_the_log() {
    let mut l = leader_with_follower_2();
    l.reconfigure(ReconfigurationRequest::with(vec![1, 2, 3], None))
        .unwrap();
    l.outgoing_messages();
    assert_eq!(l.request_read(), Err(ReadError::Reconfigured));
    l.handle_incoming(sp(
        2,
        1,
        PaxosMsg::ReadRequest(ReadRequest {
            id: ForwardId {
                ballot: B1,
                session: 1,
                seq: 1,
            },
        }),
    ));
    assert_eq!(paxos_out(&mut l), vec![], "no confirmation round opens");
}
