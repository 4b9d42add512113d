//! A follower: promises, log syncs, accepts and decisions from its leader.

use crate::fixtures::*;
use omnipaxos::{Ballot, messages::*, util::LogEntry};
use pretty_assertions::assert_eq;

#[test]
fn fresh_follower_promises_a_prepare_and_persists_the_promise() {
    let mut f = node(2);
    f.handle_incoming(prepare(B1).sent(1, 2));
    assert_eq!(paxos_out(&mut f), vec![promise(B1).sent(2, 1)]);
    assert_eq!(f.get_promise(), B1);
}

#[test]
fn follower_with_higher_promise_rejects_prepare_with_not_accepted() {
    let mut f = node(2);
    let high = Ballot::with(5, 0, 3);
    f.handle_incoming(prepare(high).sent(3, 2));
    f.outgoing_messages();
    f.handle_incoming(prepare(B1).sent(1, 2));
    assert_eq!(paxos_out(&mut f), vec![NotAccepted { n: high }.sent(2, 1)]);
    assert_eq!(f.get_promise(), high);
}

#[test]
fn follower_that_accepted_in_a_later_round_sends_its_log_beyond_the_leaders_decided_prefix() {
    // The follower accepted [7, 8, 9] in B1; a new leader that accepted in an
    // older round with 1 decided entry must get everything from index 1.
    let mut f = synced_follower(vec![E(7), E(8), E(9)], 1);
    let b2 = Ballot::with(2, 0, 3);
    f.handle_incoming(
        Prepare {
            decided_idx: 1,
            accepted_idx: 1,
            ..prepare(b2)
        }
        .sent(3, 2),
    );
    assert_eq!(
        paxos_out(&mut f),
        vec![
            Promise {
                n_accepted: B1,
                decided_idx: 1,
                accepted_idx: 3,
                log_sync: Some(log_sync(1, vec![E(8), E(9)])),
                ..promise(b2)
            }
            .sent(2, 3)
        ]
    );
}

#[test]
fn follower_installs_accept_sync_and_reports_its_log_length() {
    let mut f = node(2);
    f.handle_incoming(prepare(B1).sent(1, 2));
    f.outgoing_messages();
    f.handle_incoming(
        AcceptSync {
            decided_idx: 1,
            ..accept_sync(B1, log_sync(0, vec![E(10), E(11)]))
        }
        .sent(1, 2),
    );
    assert_eq!(paxos_out(&mut f), vec![accepted(B1, 2).sent(2, 1)]);
    assert_eq!(f.read(0), Some(LogEntry::Decided(E(10))));
    assert_eq!(f.read(1), Some(LogEntry::Undecided(E(11))));
    assert_eq!(f.get_decided_idx(), 1);
}

#[test]
fn follower_appends_the_next_accept_decide_and_learns_the_decided_index() {
    let mut f = synced_follower(vec![E(1)], 0);
    f.handle_incoming(accept_decide_from_1(2, 1, vec![E(2), E(3)]));
    assert_eq!(paxos_out(&mut f), vec![accepted(B1, 3).sent(2, 1)]);
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
    assert_eq!(paxos_out(&mut f), vec![PrepareReq { n: B1 }.sent(2, 1)]);
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
    f.handle_incoming(decide(B1, 2, 2).sent(1, 2));
    assert_eq!(paxos_out(&mut f), vec![]);
    assert_eq!(f.get_decided_idx(), 2);
}

#[test]
fn follower_repeats_accepted_when_a_decide_shows_the_leader_lags_its_log() {
    // Our Accepted for index 1 was lost: the leader's periodic Decide still
    // says 1, so we tell it again that we hold 2 entries.
    let mut f = synced_follower(vec![E(1), E(2)], 0);
    f.handle_incoming(decide(B1, 2, 1).sent(1, 2));
    assert_eq!(paxos_out(&mut f), vec![accepted(B1, 2).sent(2, 1)]);
    assert_eq!(f.get_decided_idx(), 1);
}

#[test]
fn follower_answers_an_accept_decide_of_an_older_ballot_with_not_accepted() {
    let mut f = synced_follower(vec![], 0);
    let b2 = Ballot::with(2, 0, 3);
    f.handle_incoming(prepare(b2).sent(3, 2));
    f.outgoing_messages();
    f.handle_incoming(accept_decide_from_1(2, 0, vec![E(1)]));
    assert_eq!(paxos_out(&mut f), vec![NotAccepted { n: b2 }.sent(2, 1)]);
    assert_eq!(f.read(0), None);
}
