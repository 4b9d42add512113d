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

/// A proposal that reaches a leader again under a new batch name (its
/// origin retried it to what it took for a new leader) is found by its id
/// and acknowledged where it is, not appended a second time; a proposal
/// twice in one forward goes in once.
#[test]
fn a_proposal_retried_under_another_batch_is_found_by_its_id_and_not_appended_again() {
    let mut l = leader_with_follower_2();
    let fwd = |seq: u64, entries: Vec<E>, origins| {
        sp(
            3,
            1,
            PaxosMsg::ProposalForward(ProposalForward {
                n: B1,
                id: ForwardId {
                    ballot: B1,
                    session: 7,
                    seq,
                },
                entries,
                origins,
            }),
        )
    };
    l.handle_incoming(fwd(1, vec![E(1), E(2)], ids_of(3, 10..12)));
    l.outgoing_messages();
    assert_eq!(l.get_accepted_idx(), 2);
    // The retry names a new batch and carries one proposal twice.
    let mut again = ids_of(3, 11..12);
    again.push(
        1,
        omnipaxos::storage::OriginId {
            origin: 3,
            incarnation: 1,
            seq: 12,
        },
    );
    again.push(
        2,
        omnipaxos::storage::OriginId {
            origin: 3,
            incarnation: 1,
            seq: 12,
        },
    );
    l.handle_incoming(fwd(2, vec![E(2), E(3), E(3)], again));
    assert_eq!(
        proposal_acks(paxos_out(&mut l)),
        vec![sp(
            1,
            3,
            PaxosMsg::ProposalAck(ProposalAck {
                n: B1,
                id: ForwardId {
                    ballot: B1,
                    session: 7,
                    seq: 2
                },
                first_idx: 1,
                placed: vec![1, 2, 2],
            })
        )]
    );
    assert_eq!(l.get_accepted_idx(), 3, "only E(3) was new, and once");
}
