//! Proposals forwarded from a follower to the leader, their
//! acknowledgements, and retries.

use crate::fixtures::*;
use omnipaxos::messages::*;
use pretty_assertions::assert_eq;

#[test]
fn follower_forwards_a_proposal_to_the_leader() {
    let mut f = synced_follower(vec![], 0);
    f.append(E(42)).unwrap();
    assert_eq!(
        paxos_out(&mut f),
        vec![sp(
            2,
            1,
            PaxosMsg::ProposalForward(ProposalForward {
                n: B1,
                id: ForwardId {
                    ballot: B1,
                    session: 1,
                    seq: 1
                },
                entries: vec![E(42)],
                origins: ids_of(2, 1..2),
            })
        )]
    );
}

#[test]
fn leader_appends_a_forwarded_batch_once_and_acknowledges_every_retry() {
    let mut l = leader_with_follower_2();
    let fwd = || {
        sp(
            3,
            1,
            PaxosMsg::ProposalForward(ProposalForward {
                n: B1,
                id: ForwardId {
                    ballot: B1,
                    session: 7,
                    seq: 4,
                },
                entries: vec![E(1), E(2)],
                origins: Default::default(),
            }),
        )
    };
    l.handle_incoming(fwd());
    let out = paxos_out(&mut l);
    assert!(out.contains(&sp(
        1,
        3,
        PaxosMsg::ProposalAck(ProposalAck {
            n: B1,
            id: ForwardId {
                ballot: B1,
                session: 7,
                seq: 4
            },
            first_idx: 0,
            placed: Vec::new(),
        })
    )));
    l.handle_incoming(fwd());
    assert_eq!(
        paxos_out(&mut l),
        vec![sp(
            1,
            3,
            PaxosMsg::ProposalAck(ProposalAck {
                n: B1,
                id: ForwardId {
                    ballot: B1,
                    session: 7,
                    seq: 4
                },
                first_idx: 0,
                placed: Vec::new(),
            })
        )]
    );
    assert_eq!(
        l.read_entries(..).unwrap().len(),
        2,
        "the retry was not appended again"
    );
}

#[test]
fn leader_appends_a_batch_from_a_restarted_origin_that_reuses_a_seq() {
    // The origin restarted: its batch numbers count from 1 again, but it was
    // synchronised in a new session, so the id differs and the batch is new.
    let mut l = leader_with_follower_2();
    let fwd = |session| {
        sp(
            3,
            1,
            PaxosMsg::ProposalForward(ProposalForward {
                n: B1,
                id: ForwardId {
                    ballot: B1,
                    session,
                    seq: 1,
                },
                entries: vec![E(session)],
                origins: Default::default(),
            }),
        )
    };
    l.handle_incoming(fwd(1));
    l.handle_incoming(fwd(2));
    let acks = proposal_acks(paxos_out(&mut l));
    assert_eq!(
        acks,
        vec![
            sp(
                1,
                3,
                PaxosMsg::ProposalAck(ProposalAck {
                    n: B1,
                    id: ForwardId {
                        ballot: B1,
                        session: 1,
                        seq: 1
                    },
                    first_idx: 0,
                    placed: Vec::new(),
                })
            ),
            sp(
                1,
                3,
                PaxosMsg::ProposalAck(ProposalAck {
                    n: B1,
                    id: ForwardId {
                        ballot: B1,
                        session: 2,
                        seq: 1
                    },
                    first_idx: 1,
                    placed: Vec::new(),
                })
            ),
        ]
    );
    assert_eq!(l.read_entries(..).unwrap().len(), 2);
}

#[test]
fn the_acknowledgement_of_a_forwarded_batch_rides_with_its_entries_to_the_origin() {
    // If the standalone ack is lost but the entries arrive, the origin still
    // learns that its batch is in the log, so it never proposes it twice.
    let mut l = leader_with_follower_2();
    let id = ForwardId {
        ballot: B1,
        session: 1,
        seq: 1,
    };
    l.handle_incoming(sp(
        2,
        1,
        PaxosMsg::ProposalForward(ProposalForward {
            n: B1,
            id,
            entries: vec![E(8)],
            origins: Default::default(),
        }),
    ));
    let ack = ProposalAck {
        n: B1,
        id,
        first_idx: 0,
        placed: Vec::new(),
    };
    assert_eq!(
        paxos_out(&mut l),
        vec![
            AcceptDecide {
                forward_acks: vec![ack.clone()],
                ..accept_decide(B1, 2, vec![E(8)])
            }
            .sent(1, 2),
            ack.sent(1, 2),
        ]
    );
}
