//! One message into a fresh node, then the exact messages out and the exact
//! storage effect: a test per handler (STYLE.md 13).

use common::{N, Sum};
use omnipaxos::{
    Ballot, Migration, OmniPaxos, OmniPaxosConfig, ProposeErr, ReadError, ReconfigurationRequest,
    messages::*,
    storage::{Entry, NoSnapshot, Storage},
    util::{ConfigurationEnd, LogEntry, StopSign},
};
use omnipaxos_storage::memory_storage::MemoryStorage;
use pretty_assertions::assert_eq;

mod common;

#[derive(Clone, Debug, PartialEq, Eq)]
struct E(u64);

impl Entry for E {
    type Snapshot = NoSnapshot;
}

type Node = OmniPaxos<E, MemoryStorage<E>>;

const CONFIG: u32 = 1;

/// Node `pid` of the cluster {1, 2, 3}, with its start-up heartbeats drained.
fn node(pid: u64) -> Node {
    let peers = [1, 2, 3].into_iter().filter(|p| *p != pid).collect();
    let mut n: Node = OmniPaxosConfig {
        configuration_id: CONFIG,
        pid,
        peers,
        ..Default::default()
    }
    .build(MemoryStorage::default())
    .unwrap();
    n.outgoing_messages();
    n
}

fn sp(from: u64, to: u64, msg: PaxosMsg<E>) -> Message<E> {
    Message::SequencePaxos(PaxosMessage {
        configuration_id: CONFIG,
        from,
        to,
        msg,
    })
}

/// The Sequence Paxos messages a node has to send (heartbeats left out).
fn paxos_out(n: &mut Node) -> Vec<Message<E>> {
    n.outgoing_messages()
        .into_iter()
        .filter(|m| matches!(m, Message::SequencePaxos(_)))
        .collect()
}

const B1: Ballot = Ballot::with(1, 0, 1);

fn prepare_empty(n: Ballot) -> Prepare {
    Prepare {
        n,
        decided_idx: 0,
        n_accepted: Ballot::default(),
        accepted_idx: 0,
    }
}

/// Node 2 following leader 1 in ballot B1, synchronised with log `log`, decided `decided`.
fn synced_follower(log: Vec<E>, decided: u64) -> Node {
    let mut f = node(2);
    f.handle_incoming(sp(1, 2, PaxosMsg::Prepare(prepare_empty(B1))));
    f.handle_incoming(sp(
        1,
        2,
        PaxosMsg::AcceptSync(AcceptSync {
            n: B1,
            seq_num: SequenceNumber {
                session: 1,
                counter: 1,
            },
            decided_idx: decided,
            log_sync: LogSync {
                decided_snapshot: None,
                sync_idx: 0,
                suffix: log,
                stopsign: None,
            },
            forward_acks: vec![],
        }),
    ));
    f.outgoing_messages();
    f
}

/// Node 1 leading ballot B1 with node 2 promised and synchronised.
fn leader_with_follower_2() -> Node {
    let mut l = node(1);
    l.try_become_leader();
    l.outgoing_messages();
    l.handle_incoming(sp(
        2,
        1,
        PaxosMsg::Promise(Promise {
            n: B1,
            n_accepted: Ballot::default(),
            decided_idx: 0,
            accepted_idx: 0,
            log_sync: None,
        }),
    ));
    l.outgoing_messages();
    l
}

#[test]
fn fresh_follower_promises_a_prepare_and_persists_the_promise() {
    let mut f = node(2);
    f.handle_incoming(sp(1, 2, PaxosMsg::Prepare(prepare_empty(B1))));
    assert_eq!(
        paxos_out(&mut f),
        vec![sp(
            2,
            1,
            PaxosMsg::Promise(Promise {
                n: B1,
                n_accepted: Ballot::default(),
                decided_idx: 0,
                accepted_idx: 0,
                log_sync: None,
            })
        )]
    );
    assert_eq!(f.get_promise(), B1);
}

#[test]
fn follower_with_higher_promise_rejects_prepare_with_not_accepted() {
    let mut f = node(2);
    let high = Ballot::with(5, 0, 3);
    f.handle_incoming(sp(3, 2, PaxosMsg::Prepare(prepare_empty(high))));
    f.outgoing_messages();
    f.handle_incoming(sp(1, 2, PaxosMsg::Prepare(prepare_empty(B1))));
    assert_eq!(
        paxos_out(&mut f),
        vec![sp(2, 1, PaxosMsg::NotAccepted(NotAccepted { n: high }))]
    );
    assert_eq!(f.get_promise(), high);
}

#[test]
fn follower_that_accepted_in_a_later_round_sends_its_log_beyond_the_leaders_decided_prefix() {
    // The follower accepted [7, 8, 9] in B1; a new leader that accepted in an
    // older round with 1 decided entry must get everything from index 1.
    let mut f = synced_follower(vec![E(7), E(8), E(9)], 1);
    let b2 = Ballot::with(2, 0, 3);
    f.handle_incoming(sp(
        3,
        2,
        PaxosMsg::Prepare(Prepare {
            n: b2,
            decided_idx: 1,
            n_accepted: Ballot::default(),
            accepted_idx: 1,
        }),
    ));
    assert_eq!(
        paxos_out(&mut f),
        vec![sp(
            2,
            3,
            PaxosMsg::Promise(Promise {
                n: b2,
                n_accepted: B1,
                decided_idx: 1,
                accepted_idx: 3,
                log_sync: Some(LogSync {
                    decided_snapshot: None,
                    sync_idx: 1,
                    suffix: vec![E(8), E(9)],
                    stopsign: None,
                }),
            })
        )]
    );
}

#[test]
fn follower_installs_accept_sync_and_reports_its_log_length() {
    let mut f = node(2);
    f.handle_incoming(sp(1, 2, PaxosMsg::Prepare(prepare_empty(B1))));
    f.outgoing_messages();
    f.handle_incoming(sp(
        1,
        2,
        PaxosMsg::AcceptSync(AcceptSync {
            n: B1,
            seq_num: SequenceNumber {
                session: 1,
                counter: 1,
            },
            decided_idx: 1,
            log_sync: LogSync {
                decided_snapshot: None,
                sync_idx: 0,
                suffix: vec![E(10), E(11)],
                stopsign: None,
            },
            forward_acks: vec![],
        }),
    ));
    assert_eq!(
        paxos_out(&mut f),
        vec![sp(
            2,
            1,
            PaxosMsg::Accepted(Accepted {
                n: B1,
                accepted_idx: 2
            })
        )]
    );
    assert_eq!(f.read(0), Some(LogEntry::Decided(E(10))));
    assert_eq!(f.read(1), Some(LogEntry::Undecided(E(11))));
    assert_eq!(f.get_decided_idx(), 1);
}

fn accept_decide(counter: u64, decided_idx: u64, entries: Vec<E>) -> Message<E> {
    sp(
        1,
        2,
        PaxosMsg::AcceptDecide(AcceptDecide {
            n: B1,
            seq_num: SequenceNumber {
                session: 1,
                counter,
            },
            decided_idx,
            entries,
            forward_acks: vec![],
        }),
    )
}

#[test]
fn follower_appends_the_next_accept_decide_and_learns_the_decided_index() {
    let mut f = synced_follower(vec![E(1)], 0);
    f.handle_incoming(accept_decide(2, 1, vec![E(2), E(3)]));
    assert_eq!(
        paxos_out(&mut f),
        vec![sp(
            2,
            1,
            PaxosMsg::Accepted(Accepted {
                n: B1,
                accepted_idx: 3
            })
        )]
    );
    assert_eq!(f.get_decided_idx(), 1);
    assert_eq!(f.read(2), Some(LogEntry::Undecided(E(3))));
}

#[test]
fn follower_ignores_a_duplicated_accept_decide() {
    let mut f = synced_follower(vec![], 0);
    f.handle_incoming(accept_decide(2, 0, vec![E(1)]));
    f.outgoing_messages();
    f.handle_incoming(accept_decide(2, 0, vec![E(1)]));
    assert_eq!(paxos_out(&mut f), vec![]);
    assert_eq!(f.read_entries(..).unwrap().len(), 1);
}

#[test]
fn follower_that_misses_a_message_asks_the_leader_to_prepare_it_again() {
    let mut f = synced_follower(vec![], 0);
    // Message 2 is missing: 3 and 4 may only have overtaken it, and wait.
    f.handle_incoming(accept_decide(3, 0, vec![E(2)]));
    f.handle_incoming(accept_decide(4, 0, vec![E(3)]));
    assert_eq!(paxos_out(&mut f), vec![]);
    // A third message past the gap: 2 was lost.
    f.handle_incoming(accept_decide(5, 0, vec![E(4)]));
    assert_eq!(
        paxos_out(&mut f),
        vec![sp(2, 1, PaxosMsg::PrepareReq(PrepareReq { n: B1 }))]
    );
    assert_eq!(f.read(0), None, "nothing appended past the gap");
}

#[test]
fn follower_applies_messages_that_overtook_a_missing_one_once_it_arrives() {
    let mut f = synced_follower(vec![], 0);
    f.handle_incoming(accept_decide(3, 0, vec![E(2)]));
    assert_eq!(paxos_out(&mut f), vec![]);
    f.handle_incoming(accept_decide(2, 0, vec![E(1)]));
    let out = paxos_out(&mut f);
    assert!(
        !out.iter().any(
            |m| matches!(m, Message::SequencePaxos(p) if matches!(p.msg, PaxosMsg::PrepareReq(_)))
        ),
        "{out:?}"
    );
    assert_eq!(
        f.read_entries(..),
        Some(vec![LogEntry::Undecided(E(1)), LogEntry::Undecided(E(2))])
    );
}

#[test]
fn follower_applies_a_decide() {
    let mut f = synced_follower(vec![E(1), E(2)], 0);
    f.handle_incoming(sp(
        1,
        2,
        PaxosMsg::Decide(Decide {
            n: B1,
            seq_num: SequenceNumber {
                session: 1,
                counter: 2,
            },
            decided_idx: 2,
        }),
    ));
    assert_eq!(paxos_out(&mut f), vec![]);
    assert_eq!(f.get_decided_idx(), 2);
}

#[test]
fn follower_repeats_accepted_when_a_decide_shows_the_leader_lags_its_log() {
    // Our Accepted for index 1 was lost: the leader's periodic Decide still
    // says 1, so we tell it again that we hold 2 entries.
    let mut f = synced_follower(vec![E(1), E(2)], 0);
    f.handle_incoming(sp(
        1,
        2,
        PaxosMsg::Decide(Decide {
            n: B1,
            seq_num: SequenceNumber {
                session: 1,
                counter: 2,
            },
            decided_idx: 1,
        }),
    ));
    assert_eq!(
        paxos_out(&mut f),
        vec![sp(
            2,
            1,
            PaxosMsg::Accepted(Accepted {
                n: B1,
                accepted_idx: 2
            })
        )]
    );
    assert_eq!(f.get_decided_idx(), 1);
}

#[test]
fn follower_answers_an_accept_decide_of_an_older_ballot_with_not_accepted() {
    let mut f = synced_follower(vec![], 0);
    let b2 = Ballot::with(2, 0, 3);
    f.handle_incoming(sp(3, 2, PaxosMsg::Prepare(prepare_empty(b2))));
    f.outgoing_messages();
    f.handle_incoming(accept_decide(2, 0, vec![E(1)]));
    assert_eq!(
        paxos_out(&mut f),
        vec![sp(2, 1, PaxosMsg::NotAccepted(NotAccepted { n: b2 }))]
    );
    assert_eq!(f.read(0), None);
}

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
            })
        )]
    );
}

#[test]
fn messages_for_another_node_configuration_or_from_a_stranger_are_ignored() {
    let mut f = node(2);
    let prep = PaxosMsg::Prepare(prepare_empty(B1));
    f.handle_incoming(sp(1, 3, prep.clone()));
    f.handle_incoming(sp(9, 2, prep.clone()));
    f.handle_incoming(Message::SequencePaxos(PaxosMessage {
        configuration_id: 7,
        from: 1,
        to: 2,
        msg: prep,
    }));
    assert_eq!(f.outgoing_messages(), vec![]);
    assert_eq!(f.get_promise(), Ballot::default());
}

#[test]
fn a_prepare_whose_ballot_names_another_server_is_ignored() {
    let mut f = node(2);
    f.handle_incoming(sp(3, 2, PaxosMsg::Prepare(prepare_empty(B1))));
    assert_eq!(paxos_out(&mut f), vec![]);
    assert_eq!(f.get_promise(), Ballot::default());
}

#[test]
fn new_leader_persists_its_promise_and_prepares_every_peer() {
    let mut l = node(1);
    l.try_become_leader();
    assert_eq!(
        paxos_out(&mut l),
        vec![
            sp(1, 2, PaxosMsg::Prepare(prepare_empty(B1))),
            sp(1, 3, PaxosMsg::Prepare(prepare_empty(B1))),
        ]
    );
    assert_eq!(l.get_promise(), B1);
    assert!(!l.is_leader(), "still in the prepare phase");
}

#[test]
fn leader_with_a_quorum_of_promises_synchronises_the_follower() {
    let mut l = node(1);
    l.try_become_leader();
    l.outgoing_messages();
    l.append(E(5)).unwrap(); // held until the prepare phase ends
    l.handle_incoming(sp(
        2,
        1,
        PaxosMsg::Promise(Promise {
            n: B1,
            n_accepted: Ballot::default(),
            decided_idx: 0,
            accepted_idx: 0,
            log_sync: None,
        }),
    ));
    assert_eq!(
        paxos_out(&mut l),
        vec![
            sp(
                1,
                2,
                PaxosMsg::AcceptSync(AcceptSync {
                    n: B1,
                    seq_num: SequenceNumber {
                        session: 1,
                        counter: 1
                    },
                    decided_idx: 0,
                    log_sync: LogSync {
                        decided_snapshot: None,
                        sync_idx: 0,
                        suffix: vec![],
                        stopsign: None,
                    },
                    forward_acks: vec![],
                })
            ),
            sp(
                1,
                2,
                PaxosMsg::AcceptDecide(AcceptDecide {
                    n: B1,
                    seq_num: SequenceNumber {
                        session: 1,
                        counter: 2
                    },
                    decided_idx: 0,
                    entries: vec![E(5)],
                    forward_acks: vec![],
                })
            ),
        ]
    );
    assert!(l.is_leader());
    assert_eq!(l.read(0), Some(LogEntry::Undecided(E(5))));
}

#[test]
fn leader_adopts_the_log_of_the_most_up_to_date_promise() {
    let mut l = node(1);
    l.try_become_leader();
    l.outgoing_messages();
    l.handle_incoming(sp(
        2,
        1,
        PaxosMsg::Promise(Promise {
            n: B1,
            n_accepted: Ballot::with(0, 0, 3),
            decided_idx: 0,
            accepted_idx: 2,
            log_sync: Some(LogSync {
                decided_snapshot: None,
                sync_idx: 0,
                suffix: vec![E(1), E(2)],
                stopsign: None,
            }),
        }),
    ));
    assert_eq!(l.read_entries(..).unwrap().len(), 2);
    assert_eq!(l.read(1), Some(LogEntry::Undecided(E(2))));
}

#[test]
fn leader_decides_once_a_quorum_accepted_and_tells_followers() {
    let mut l = leader_with_follower_2();
    l.append(E(9)).unwrap();
    l.outgoing_messages();
    l.handle_incoming(sp(
        2,
        1,
        PaxosMsg::Accepted(Accepted {
            n: B1,
            accepted_idx: 1,
        }),
    ));
    assert_eq!(
        paxos_out(&mut l),
        vec![sp(
            1,
            2,
            PaxosMsg::Decide(Decide {
                n: B1,
                seq_num: SequenceNumber {
                    session: 1,
                    counter: 3
                },
                decided_idx: 1,
            })
        )]
    );
    assert_eq!(l.get_decided_idx(), 1);
    assert_eq!(l.read(0), Some(LogEntry::Decided(E(9))));
}

#[test]
fn leader_prepares_a_follower_that_asks() {
    let mut l = leader_with_follower_2();
    l.handle_incoming(sp(2, 1, PaxosMsg::PrepareReq(PrepareReq { n: B1 })));
    assert_eq!(
        paxos_out(&mut l),
        vec![sp(
            1,
            2,
            PaxosMsg::Prepare(Prepare {
                n: B1,
                decided_idx: 0,
                n_accepted: B1,
                accepted_idx: 0,
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
            first_idx: 0
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
                first_idx: 0
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
            }),
        )
    };
    l.handle_incoming(fwd(1));
    l.handle_incoming(fwd(2));
    let acks: Vec<_> = paxos_out(&mut l)
        .into_iter()
        .filter(|m| {
            matches!(
                m,
                Message::SequencePaxos(PaxosMessage {
                    msg: PaxosMsg::ProposalAck(_),
                    ..
                })
            )
        })
        .collect();
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
                    first_idx: 0
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
                    first_idx: 1
                })
            ),
        ]
    );
    assert_eq!(l.read_entries(..).unwrap().len(), 2);
}

#[test]
fn a_node_without_a_leader_buffers_proposals_up_to_buffer_size() {
    let mut n: Node = OmniPaxosConfig {
        pid: 1,
        peers: vec![2, 3],
        buffer_size: 1,
        ..Default::default()
    }
    .build(MemoryStorage::default())
    .unwrap();
    n.append(E(1)).unwrap();
    match n.append(E(2)) {
        Err(ProposeErr::BufferFull(e)) => assert_eq!(e, E(2)),
        other => panic!("expected BufferFull, got {other:?}"),
    }
}

#[test]
fn heartbeat_request_gets_a_reply_with_ballot_and_connectivity() {
    let mut f = node(2);
    f.handle_incoming(Message::BLE(BLEMessage {
        configuration_id: CONFIG,
        from: 1,
        to: 2,
        msg: HeartbeatMsg::Request(HeartbeatRequest { round: 3 }),
    }));
    assert_eq!(
        f.outgoing_messages(),
        vec![Message::BLE(BLEMessage {
            configuration_id: CONFIG,
            from: 2,
            to: 1,
            msg: HeartbeatMsg::Reply(HeartbeatReply {
                round: 3,
                ballot: Ballot::with(0, 0, 2),
                quorum_connected: true,
                leader: None,
            }),
        })]
    );
}

#[test]
fn one_node_cluster_decides_alone() {
    let mut n: Node = OmniPaxosConfig {
        pid: 7,
        ..Default::default()
    }
    .build(MemoryStorage::default())
    .unwrap();
    for _ in 0..10 {
        n.tick();
    }
    assert!(n.is_leader());
    n.append(E(1)).unwrap();
    assert_eq!(n.get_decided_idx(), 1);
    assert_eq!(n.outgoing_messages(), vec![]);
}

#[test]
fn leader_outbids_a_higher_ballot_named_in_a_prepare_request() {
    // Server 2 promised its own ballot 5 and crashed before leading; after a
    // restart it asks to be prepared under that ballot. Our ballot is lower,
    // so at the end of the next heartbeat round we take a ballot above 5.
    let mut l = leader_with_follower_2();
    l.handle_incoming(sp(
        2,
        1,
        PaxosMsg::PrepareReq(PrepareReq {
            n: Ballot::with(5, 0, 2),
        }),
    ));
    assert_eq!(paxos_out(&mut l), vec![]);
    for _ in 0..10 {
        l.tick();
    }
    assert!(
        l.get_promise() > Ballot::with(5, 0, 2),
        "promise {:?}",
        l.get_promise()
    );
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
        }),
    ));
    let ack = ProposalAck {
        n: B1,
        id,
        first_idx: 0,
    };
    assert_eq!(
        paxos_out(&mut l),
        vec![
            sp(
                1,
                2,
                PaxosMsg::AcceptDecide(AcceptDecide {
                    n: B1,
                    seq_num: SequenceNumber {
                        session: 1,
                        counter: 2
                    },
                    decided_idx: 0,
                    entries: vec![E(8)],
                    forward_acks: vec![ack],
                })
            ),
            sp(1, 2, PaxosMsg::ProposalAck(ack)),
        ]
    );
}

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
    f.handle_incoming(sp(1, 2, PaxosMsg::Prepare(prepare_empty(B1))));
    f.handle_incoming(sp(
        1,
        2,
        PaxosMsg::AcceptSync(AcceptSync {
            n: B1,
            seq_num: SequenceNumber {
                session: 2,
                counter: 1,
            },
            decided_idx: 0,
            log_sync: LogSync {
                decided_snapshot: None,
                sync_idx: 0,
                suffix: vec![],
                stopsign: None,
            },
            forward_acks: vec![],
        }),
    ));
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

/// Seed 663 of the reconfiguration soak: a leader re-prepared in a higher
/// ballot with a proposal still in its unsent batch, and adopted a log that
/// ends in a decided stop-sign. The batch must not be appended after the
/// adopted log: that would put an entry where the stop-sign was decided.
#[test]
fn a_leader_that_re_prepares_never_appends_its_old_batch_after_an_adopted_stop_sign() {
    let mut l: Node = OmniPaxosConfig {
        configuration_id: CONFIG,
        pid: 1,
        peers: vec![2, 3],
        batch_size: 3,
        ..Default::default()
    }
    .build(MemoryStorage::default())
    .unwrap();
    l.try_become_leader();
    l.handle_incoming(sp(
        2,
        1,
        PaxosMsg::Promise(Promise {
            n: B1,
            n_accepted: Ballot::default(),
            decided_idx: 0,
            accepted_idx: 0,
            log_sync: None,
        }),
    ));
    assert!(l.is_leader());
    let id = l.append_tracked(E(7)).unwrap(); // waits in the batch
    l.outgoing_messages();
    // Meanwhile server 3 led ballot (1, 0, 3) and decided a stop-sign at
    // index 0 with server 2. Server 1 did not hear of it and leads again.
    l.try_become_leader();
    let b2 = l.get_promise();
    assert!(b2 > Ballot::with(1, 0, 3));
    l.outgoing_messages();
    let ss = StopSign::with(CONFIG + 1, vec![1, 2, 3], None);
    l.handle_incoming(sp(
        2,
        1,
        PaxosMsg::Promise(Promise {
            n: b2,
            n_accepted: Ballot::with(1, 0, 3),
            decided_idx: 1,
            accepted_idx: 1,
            log_sync: Some(LogSync {
                decided_snapshot: None,
                sync_idx: 0,
                suffix: vec![],
                stopsign: Some(ss.clone()),
            }),
        }),
    ));
    assert_eq!(
        l.read_entries(..),
        Some(vec![LogEntry::StopSign(ss.clone(), true)])
    );
    assert_eq!(l.is_reconfigured(), Some(ss));
    let appended: Vec<Message<E>> = paxos_out(&mut l)
        .into_iter()
        .filter(|m| {
            matches!(m, Message::SequencePaxos(PaxosMessage { msg: PaxosMsg::AcceptDecide(a), .. }) if !a.entries.is_empty())
        })
        .collect();
    assert_eq!(appended, vec![], "nothing follows the stop-sign");
    let mut decided = Vec::new();
    l.take_decided_proposals(&mut decided);
    assert_eq!(
        decided,
        vec![],
        "{id:?} is not decided in this configuration"
    );
}

fn sp_n(from: u64, to: u64, msg: PaxosMsg<N>) -> Message<N> {
    Message::SequencePaxos(PaxosMessage {
        configuration_id: CONFIG,
        from,
        to,
        msg,
    })
}

/// Soak seed 3103: a leader re-prepared and adopted a log whose snapshot
/// replaced the index where it had appended a forwarded batch. A retry of
/// that batch must be appended again, not acknowledged at the old index,
/// which now holds something else.
#[test]
fn a_forwarded_batch_whose_index_a_snapshot_replaced_is_appended_again_on_retry() {
    let mut l: OmniPaxos<N, MemoryStorage<N>> = OmniPaxosConfig {
        configuration_id: CONFIG,
        pid: 1,
        peers: vec![2, 3],
        ..Default::default()
    }
    .build(MemoryStorage::default())
    .unwrap();
    l.try_become_leader();
    l.handle_incoming(sp_n(
        2,
        1,
        PaxosMsg::Promise(Promise {
            n: B1,
            n_accepted: Ballot::default(),
            decided_idx: 0,
            accepted_idx: 0,
            log_sync: None,
        }),
    ));
    let id = ForwardId {
        ballot: B1,
        session: 1,
        seq: 1,
    };
    let fwd = |n| {
        sp_n(
            3,
            1,
            PaxosMsg::ProposalForward(ProposalForward {
                n,
                id,
                entries: vec![N(7)],
            }),
        )
    };
    l.handle_incoming(fwd(B1));
    l.outgoing_messages();
    assert_eq!(l.read(0), Some(LogEntry::Undecided(N(7))));
    // Server 2 accepted a later leader's log, decided up to 5 and compacted
    // into a snapshot; it does not hold N(7).
    l.try_become_leader();
    let b2 = l.get_promise();
    l.outgoing_messages();
    l.handle_incoming(sp_n(
        2,
        1,
        PaxosMsg::Promise(Promise {
            n: b2,
            n_accepted: Ballot::with(1, 0, 2),
            decided_idx: 5,
            accepted_idx: 6,
            log_sync: Some(LogSync {
                decided_snapshot: Some(SnapshotType::Complete(Sum(15))),
                sync_idx: 5,
                suffix: vec![N(9)],
                stopsign: None,
            }),
        }),
    ));
    assert!(l.is_leader());
    assert_eq!(l.get_compacted_idx(), 5);
    l.outgoing_messages();
    l.handle_incoming(fwd(b2));
    let acks: Vec<Message<N>> = l
        .outgoing_messages()
        .into_iter()
        .filter(|m| {
            matches!(
                m,
                Message::SequencePaxos(PaxosMessage {
                    msg: PaxosMsg::ProposalAck(_),
                    ..
                })
            )
        })
        .collect();
    assert_eq!(
        acks,
        vec![sp_n(
            1,
            3,
            PaxosMsg::ProposalAck(ProposalAck {
                n: b2,
                id,
                first_idx: 6
            })
        )]
    );
    assert_eq!(l.read(6), Some(LogEntry::Undecided(N(7))));
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

fn stopsign_2() -> StopSign {
    StopSign::with(CONFIG + 1, vec![1, 2, 3], None)
}

/// A follower that accepted the stop-sign from the leader that decided it
/// but missed the decision: a server that moved on tells it, and its log,
/// accepted in that leader's round, is the decided one.
#[test]
fn a_follower_that_missed_the_decision_decides_the_stop_sign_when_told() {
    let mut f = synced_follower(vec![E(1)], 1);
    f.handle_incoming(sp(
        1,
        2,
        PaxosMsg::AcceptStopSign(AcceptStopSign {
            n: B1,
            seq_num: SequenceNumber {
                session: 1,
                counter: 2,
            },
            ss: stopsign_2(),
        }),
    ));
    f.outgoing_messages();
    assert_eq!(f.is_reconfigured(), None);
    f.handle_incoming(sp(
        3,
        2,
        PaxosMsg::StopSignDecided(StopSignDecided {
            ss: stopsign_2(),
            stop_idx: 1,
            n_accepted: B1,
        }),
    ));
    assert_eq!(f.is_reconfigured(), Some(stopsign_2()));
    assert_eq!(f.get_decided_idx(), 2);
    assert_eq!(
        f.read_entries(..),
        Some(vec![
            LogEntry::Decided(E(1)),
            LogEntry::StopSign(stopsign_2(), true)
        ])
    );
}

/// A follower that lacks part of the decided log learns of the stop-sign,
/// moves on, and pulls what it lacks from the server that told it and the
/// new configuration's servers before it takes part; then it answers the
/// old configuration's messages with the stop-sign itself.
#[test]
fn a_follower_with_a_shorter_log_moves_on_by_pulling_the_rest() {
    let mut f = synced_follower(vec![E(1)], 1);
    f.handle_incoming(sp(
        3,
        2,
        PaxosMsg::StopSignDecided(StopSignDecided {
            ss: stopsign_2(),
            stop_idx: 3,
            n_accepted: B1,
        }),
    ));
    assert_eq!(f.is_reconfigured(), Some(stopsign_2()));
    assert_eq!(f.append(E(5)), Err(ProposeErr::PendingReconfigEntry(E(5))));
    let mut n = f
        .into_new_configuration(OmniPaxosConfig {
            configuration_id: CONFIG + 1,
            pid: 2,
            peers: vec![1, 3],
            ..Default::default()
        })
        .unwrap();
    assert!(n.is_migrating());
    assert_eq!(
        n.get_migration(),
        Some(Migration {
            log_len: 3,
            sources: vec![3, 1],
        })
    );
    // Slices 1..2 from 3 and 2..3 from 1: it holds the decided log below 1.
    let pulls: Vec<(u64, PullLog)> = n
        .outgoing_messages()
        .into_iter()
        .filter_map(|m| match m {
            Message::SequencePaxos(PaxosMessage {
                to,
                msg: PaxosMsg::PullLog(p),
                ..
            }) => Some((to, p)),
            _ => None,
        })
        .collect();
    assert_eq!(
        pulls,
        vec![
            (
                3,
                PullLog {
                    from_idx: 1,
                    to_idx: 2
                }
            ),
            (
                1,
                PullLog {
                    from_idx: 2,
                    to_idx: 3
                }
            ),
        ]
    );
    for (from, idx, e) in [(3, 1, E(2)), (1, 2, E(3))] {
        n.handle_incoming(Message::SequencePaxos(PaxosMessage {
            configuration_id: CONFIG,
            from,
            to: 2,
            msg: PaxosMsg::PullLogReply(PullLogReply {
                from_idx: idx,
                to_idx: idx + 1,
                snapshot: None,
                entries: vec![e],
                stopsign: None,
            }),
        }));
    }
    assert!(!n.is_migrating());
    assert_eq!(
        n.read_entries(..),
        Some(vec![
            LogEntry::Decided(E(1)),
            LogEntry::Decided(E(2)),
            LogEntry::Decided(E(3))
        ])
    );
    // A straggler of configuration 1 is told how it ended.
    n.outgoing_messages();
    n.handle_incoming(sp(1, 2, PaxosMsg::PrepareReq(PrepareReq { n: B1 })));
    assert_eq!(
        n.outgoing_messages(),
        vec![sp(
            2,
            1,
            PaxosMsg::StopSignDecided(StopSignDecided {
                ss: stopsign_2(),
                stop_idx: 3,
                n_accepted: B1,
            })
        )]
    );
}

/// A server of a configuration that followed another, built afresh (after a
/// restart, say), asks its peers how the previous one ended until one
/// answers, and from then on can tell that configuration's stragglers.
#[test]
fn a_restarted_server_asks_its_peers_how_the_previous_configuration_ended() {
    let mut n: Node = OmniPaxosConfig {
        configuration_id: CONFIG + 1,
        pid: 2,
        peers: vec![1, 3],
        resend_message_tick_timeout: 2,
        ..Default::default()
    }
    .build(MemoryStorage::default())
    .unwrap();
    n.outgoing_messages();
    let in_2 = |from, to, msg| {
        Message::SequencePaxos(PaxosMessage {
            configuration_id: CONFIG + 1,
            from,
            to,
            msg,
        })
    };
    let asks = |n: &mut Node| -> Vec<u64> {
        n.outgoing_messages()
            .into_iter()
            .filter_map(|m| match m {
                Message::SequencePaxos(PaxosMessage {
                    to,
                    msg: PaxosMsg::StopSignRequest(_),
                    ..
                }) => Some(to),
                _ => None,
            })
            .collect()
    };
    n.tick();
    n.tick();
    assert_eq!(asks(&mut n), vec![1, 3]);
    // 1 does not know either; 3 does not answer: only 3 is asked again.
    n.handle_incoming(in_2(
        1,
        2,
        PaxosMsg::StopSignReply(StopSignReply { decided: None }),
    ));
    n.tick();
    n.tick();
    assert_eq!(asks(&mut n), vec![3]);
    let decided = StopSignDecided {
        ss: stopsign_2(),
        stop_idx: 4,
        n_accepted: B1,
    };
    n.handle_incoming(in_2(
        3,
        2,
        PaxosMsg::StopSignReply(StopSignReply {
            decided: Some(decided.clone()),
        }),
    ));
    n.tick();
    n.tick();
    assert_eq!(asks(&mut n), Vec::<u64>::new());
    // It answers its peers' requests, and configuration 1's stragglers.
    n.handle_incoming(in_2(1, 2, PaxosMsg::StopSignRequest(StopSignRequest)));
    n.handle_incoming(sp(3, 2, PaxosMsg::PrepareReq(PrepareReq { n: B1 })));
    let out: Vec<Message<E>> = n
        .outgoing_messages()
        .into_iter()
        .filter(|m| matches!(m, Message::SequencePaxos(_)))
        .collect();
    assert_eq!(
        out,
        vec![
            in_2(
                2,
                1,
                PaxosMsg::StopSignReply(StopSignReply {
                    decided: Some(decided.clone())
                })
            ),
            sp(2, 3, PaxosMsg::StopSignDecided(decided)),
        ]
    );
}

/// Soak seed 1625: a server joined a configuration with a snapshot that
/// reached past the previous configuration's log (its source had compacted
/// there), and promised the leader late, in the round the leader's own log
/// was accepted in. The leader synchronised it from the end of the prefix it
/// shared at prepare, inside the joiner's compacted prefix, which the joiner
/// cannot install: it asked again, forever. Its decided prefix is the
/// leader's too, so the sync starts there at the earliest.
#[test]
fn a_late_follower_of_the_synced_round_is_synchronised_from_its_decided_index_at_the_earliest() {
    let mut l = node(1);
    l.try_become_leader();
    l.handle_incoming(sp(
        3,
        1,
        PaxosMsg::Promise(Promise {
            n: B1,
            n_accepted: Ballot::default(),
            decided_idx: 0,
            accepted_idx: 0,
            log_sync: None,
        }),
    ));
    for v in 1..=5 {
        l.append(E(v)).unwrap();
    }
    l.handle_incoming(sp(
        3,
        1,
        PaxosMsg::Accepted(Accepted {
            n: B1,
            accepted_idx: 5,
        }),
    ));
    assert_eq!(l.get_decided_idx(), 5);
    l.outgoing_messages();
    l.handle_incoming(sp(
        2,
        1,
        PaxosMsg::Promise(Promise {
            n: B1,
            n_accepted: Ballot::default(),
            decided_idx: 4,
            accepted_idx: 4,
            log_sync: None,
        }),
    ));
    assert_eq!(
        paxos_out(&mut l),
        vec![sp(
            1,
            2,
            PaxosMsg::AcceptSync(AcceptSync {
                n: B1,
                seq_num: SequenceNumber {
                    session: 1,
                    counter: 1
                },
                decided_idx: 5,
                log_sync: LogSync {
                    decided_snapshot: None,
                    sync_idx: 4,
                    suffix: vec![E(5)],
                    stopsign: None,
                },
                forward_acks: vec![],
            })
        )]
    );
}

/// A new server learns, with the log it pulls, how the previous
/// configuration ended, so that it can tell that configuration's stragglers
/// even if every server that moved on restarts (and forgets) later.
#[test]
fn a_joiner_learns_how_the_previous_configuration_ended_from_its_sources() {
    let mut j: Node = OmniPaxosConfig {
        configuration_id: CONFIG + 1,
        pid: 4,
        peers: vec![1, 2, 3],
        ..Default::default()
    }
    .build_joining(
        MemoryStorage::default(),
        Migration {
            log_len: 1,
            sources: vec![1],
        },
    )
    .unwrap();
    j.outgoing_messages();
    let decided = StopSignDecided {
        ss: StopSign::with(CONFIG + 1, vec![1, 2, 3, 4], None),
        stop_idx: 1,
        n_accepted: B1,
    };
    j.handle_incoming(Message::SequencePaxos(PaxosMessage {
        configuration_id: CONFIG,
        from: 1,
        to: 4,
        msg: PaxosMsg::PullLogReply(PullLogReply {
            from_idx: 0,
            to_idx: 1,
            snapshot: None,
            entries: vec![E(1)],
            stopsign: Some(decided.clone()),
        }),
    }));
    assert!(!j.is_migrating());
    j.outgoing_messages();
    j.handle_incoming(sp(3, 4, PaxosMsg::PrepareReq(PrepareReq { n: B1 })));
    assert_eq!(
        j.outgoing_messages(),
        vec![sp(4, 3, PaxosMsg::StopSignDecided(decided))]
    );
}

/// A server of configuration 2 built on a storage that records how
/// configuration 1 ended (it moved on before a restart, with the decided
/// log) knows it at once: it asks no peer, and tells configuration 1's
/// stragglers.
#[test]
fn a_server_built_on_a_storage_recording_the_previous_end_tells_stragglers_without_asking() {
    let end = ConfigurationEnd {
        stopsign: stopsign_2(),
        stop_idx: 3,
        accepted_round: B1,
    };
    let mut storage = MemoryStorage::default();
    storage
        .set_previous_configuration_end(Some(end.clone()))
        .unwrap();
    storage.append_entries(vec![E(1), E(2), E(3)]).unwrap();
    storage.set_decided_idx(3).unwrap();
    let mut n: Node = OmniPaxosConfig {
        configuration_id: CONFIG + 1,
        pid: 2,
        peers: vec![1, 3],
        resend_message_tick_timeout: 2,
        ..Default::default()
    }
    .build(storage)
    .unwrap();
    n.outgoing_messages();
    n.tick();
    n.tick();
    n.handle_incoming(sp(1, 2, PaxosMsg::PrepareReq(PrepareReq { n: B1 })));
    let out: Vec<Message<E>> = n
        .outgoing_messages()
        .into_iter()
        .filter(|m| matches!(m, Message::SequencePaxos(_)))
        .collect();
    assert_eq!(
        out,
        vec![sp(2, 1, PaxosMsg::StopSignDecided(end.into()))],
        "no StopSignRequest, and the straggler is told"
    );
}

/// A record of how another configuration ended (the storage of a server
/// built for a configuration other than the one after it) says nothing about
/// the configuration before this one: the server asks its peers.
#[test]
fn a_recorded_end_of_another_configuration_is_ignored() {
    let mut storage = MemoryStorage::default();
    storage
        .set_previous_configuration_end(Some(ConfigurationEnd {
            stopsign: stopsign_2(),
            stop_idx: 3,
            accepted_round: B1,
        }))
        .unwrap();
    let mut n: Node = OmniPaxosConfig {
        configuration_id: CONFIG + 2,
        pid: 2,
        peers: vec![1, 3],
        resend_message_tick_timeout: 2,
        ..Default::default()
    }
    .build(storage)
    .unwrap();
    n.outgoing_messages();
    n.tick();
    n.tick();
    let asked: Vec<u64> = n
        .outgoing_messages()
        .into_iter()
        .filter_map(|m| match m {
            Message::SequencePaxos(PaxosMessage {
                to,
                msg: PaxosMsg::StopSignRequest(_),
                ..
            }) => Some(to),
            _ => None,
        })
        .collect();
    assert_eq!(asked, vec![1, 3]);
}

/// Soak seed 1302: a follower whose promise the leader adopted asked to be
/// prepared again before the prepare phase ended, which cleared its promise
/// from the leader's count. The leader then installed that follower's log,
/// snapshot and all, with a decided index taken only from the other
/// promises: its log was compacted past its decided index. Everything a
/// snapshot covers is decided.
#[test]
fn a_leader_that_adopts_a_snapshot_has_decided_everything_it_covers() {
    let mut l: OmniPaxos<N, MemoryStorage<N>> = OmniPaxosConfig {
        configuration_id: CONFIG,
        pid: 1,
        peers: vec![2, 3, 4, 5],
        ..Default::default()
    }
    .build(MemoryStorage::default())
    .unwrap();
    l.try_become_leader();
    l.outgoing_messages();
    let n = l.get_promise();
    // Of five servers, a read quorum is three. Server 2 accepted a later
    // log, compacted up to 40, and sends it all.
    l.handle_incoming(sp_n(
        2,
        1,
        PaxosMsg::Promise(Promise {
            n,
            n_accepted: Ballot::with(0, 0, 3),
            decided_idx: 40,
            accepted_idx: 42,
            log_sync: Some(LogSync {
                decided_snapshot: Some(SnapshotType::Complete(Sum(7))),
                sync_idx: 40,
                suffix: vec![N(1), N(2)],
                stopsign: None,
            }),
        }),
    ));
    // It asks to be prepared again; servers 3 and 4, knowing nothing, promise.
    l.handle_incoming(sp_n(2, 1, PaxosMsg::PrepareReq(PrepareReq { n })));
    for from in [3, 4] {
        l.handle_incoming(sp_n(
            from,
            1,
            PaxosMsg::Promise(Promise {
                n,
                n_accepted: Ballot::default(),
                decided_idx: 0,
                accepted_idx: 0,
                log_sync: None,
            }),
        ));
    }
    assert!(l.is_leader());
    assert_eq!(l.get_compacted_idx(), 40);
    assert!(
        l.get_decided_idx() >= l.get_compacted_idx(),
        "decided {} below the compacted {}",
        l.get_decided_idx(),
        l.get_compacted_idx()
    );
}

/// A storage that records how configuration 1 ended (at 3) but holds only
/// the first entry of its log, and promised nothing in configuration 2, is
/// a server that stopped while pulling: built with plain `build`, it pulls
/// on from its peers, from where its storage ends, and does not promise a
/// leader meanwhile. `build_joining` with another log length is refused.
#[test]
fn a_storage_recording_an_unfinished_pull_keeps_pulling_however_it_is_built() {
    let end = ConfigurationEnd {
        stopsign: stopsign_2(),
        stop_idx: 3,
        accepted_round: B1,
    };
    let storage = || {
        let mut s = MemoryStorage::default();
        s.set_previous_configuration_end(Some(end.clone())).unwrap();
        s.append_entries(vec![E(1)]).unwrap();
        s.set_decided_idx(1).unwrap();
        s
    };
    let config = OmniPaxosConfig {
        configuration_id: CONFIG + 1,
        pid: 2,
        peers: vec![1, 3],
        ..Default::default()
    };
    let mut n: Node = config.clone().build(storage()).unwrap();
    assert!(n.is_migrating());
    let status = n.get_migration_status().unwrap();
    assert_eq!(
        (status.log_len, status.started_at, status.stored_idx),
        (Some(3), 1, 1)
    );
    let asked: Vec<(u64, PullLog)> = n
        .outgoing_messages()
        .into_iter()
        .filter_map(|m| match m {
            Message::SequencePaxos(PaxosMessage {
                to,
                msg: PaxosMsg::PullLog(p),
                ..
            }) => Some((to, p)),
            _ => None,
        })
        .collect();
    assert_eq!(
        asked,
        vec![
            (
                1,
                PullLog {
                    from_idx: 1,
                    to_idx: 2
                }
            ),
            (
                3,
                PullLog {
                    from_idx: 2,
                    to_idx: 3
                }
            ),
        ]
    );
    let b2 = Ballot {
        n: 2,
        priority: 0,
        pid: 1,
    };
    n.handle_incoming(sp(1, 2, PaxosMsg::Prepare(prepare_empty(b2))));
    assert_eq!(
        n.get_promise(),
        Ballot::default(),
        "a joiner promises nothing"
    );
    assert!(
        n.outgoing_messages().iter().all(
            |m| !matches!(m, Message::SequencePaxos(p) if matches!(p.msg, PaxosMsg::Promise(_)))
        )
    );
    let refused = config.build_joining::<E, _>(
        storage(),
        Migration {
            log_len: 5,
            sources: vec![1],
        },
    );
    assert!(
        refused.is_err_and(|e| e.to_string().contains("migration.log_len")),
        "a log length other than the recorded one is refused"
    );
}
