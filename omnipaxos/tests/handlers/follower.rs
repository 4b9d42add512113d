//! A follower: promises, log syncs, accepts and decisions from its leader.

use crate::fixtures::*;
use omnipaxos::{Ballot, messages::*, util::LogEntry};
use pretty_assertions::assert_eq;

#[test]
fn fresh_follower_promises_a_prepare_and_persists_the_promise() {
    let mut f = node(2);
    f.handle_incoming(sp(1, 2, PaxosMsg::Prepare(prepare(B1))));
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
    f.handle_incoming(sp(3, 2, PaxosMsg::Prepare(prepare(high))));
    f.outgoing_messages();
    f.handle_incoming(sp(1, 2, PaxosMsg::Prepare(prepare(B1))));
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
    f.handle_incoming(sp(1, 2, PaxosMsg::Prepare(prepare(B1))));
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

#[test]
fn follower_appends_the_next_accept_decide_and_learns_the_decided_index() {
    let mut f = synced_follower(vec![E(1)], 0);
    f.handle_incoming(accept_decide_from_1(2, 1, vec![E(2), E(3)]));
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
    f.handle_incoming(accept_decide_from_1(2, 0, vec![E(1)]));
    f.outgoing_messages();
    f.handle_incoming(accept_decide_from_1(2, 0, vec![E(1)]));
    assert_eq!(paxos_out(&mut f), vec![]);
    assert_eq!(f.read_entries(..).unwrap().len(), 1);
}

#[test]
fn follower_that_misses_a_message_asks_the_leader_to_prepare_it_again() {
    let mut f = synced_follower(vec![], 0);
    // Message 2 is missing: 3 and 4 may only have overtaken it, and wait.
    f.handle_incoming(accept_decide_from_1(3, 0, vec![E(2)]));
    f.handle_incoming(accept_decide_from_1(4, 0, vec![E(3)]));
    assert_eq!(paxos_out(&mut f), vec![]);
    // A third message past the gap: 2 was lost.
    f.handle_incoming(accept_decide_from_1(5, 0, vec![E(4)]));
    assert_eq!(
        paxos_out(&mut f),
        vec![sp(2, 1, PaxosMsg::PrepareReq(PrepareReq { n: B1 }))]
    );
    assert_eq!(f.read(0), None, "nothing appended past the gap");
}

#[test]
fn follower_applies_messages_that_overtook_a_missing_one_once_it_arrives() {
    let mut f = synced_follower(vec![], 0);
    f.handle_incoming(accept_decide_from_1(3, 0, vec![E(2)]));
    assert_eq!(paxos_out(&mut f), vec![]);
    f.handle_incoming(accept_decide_from_1(2, 0, vec![E(1)]));
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
    f.handle_incoming(sp(3, 2, PaxosMsg::Prepare(prepare(b2))));
    f.outgoing_messages();
    f.handle_incoming(accept_decide_from_1(2, 0, vec![E(1)]));
    assert_eq!(
        paxos_out(&mut f),
        vec![sp(2, 1, PaxosMsg::NotAccepted(NotAccepted { n: b2 }))]
    );
    assert_eq!(f.read(0), None);
}
