//! A follower far behind a new leader's decided log takes it in parts
//! (`DecidedSync`): each part is installed as decided, the round its log was
//! accepted in stays, and a new promise asks for the next; anything that
//! could cut what the follower holds is refused.

use crate::fixtures::*;
use omnipaxos::{Ballot, messages::*};

/// Server 3's ballot, higher than B1.
const B3: Ballot = Ballot::with(2, 0, 3);

/// Node 2, synchronised by leader 1 in B1 with log [1, 2, 3] decided up to
/// 1, then promised to server 3 in B3 (whose log is empty).
fn promised_to_3() -> Node {
    let mut f = synced_follower(vec![E(1), E(2), E(3)], 1);
    f.handle_incoming(prepare(B3).sent(3, 2));
    f.outgoing_messages();
    f
}

/// A part of the decided log of the leader of `n`: `suffix` at `sync_idx`.
fn part(n: Ballot, sync_idx: u64, suffix: Vec<E>) -> DecidedSync<E> {
    DecidedSync {
        n,
        log_sync: log_sync(sync_idx, suffix),
    }
}

fn decided(n: &Node) -> Vec<u64> {
    n.read_decided_suffix(0)
        .unwrap_or_default()
        .into_iter()
        .map(|e| match e {
            omnipaxos::util::LogEntry::Decided(E(v)) => v,
            other => panic!("not a decided entry: {other:?}"),
        })
        .collect()
}

#[test]
fn a_part_is_installed_as_decided_and_answered_with_a_new_promise() {
    let mut f = promised_to_3();
    f.handle_incoming(part(B3, 1, vec![E(2), E(9), E(10), E(11)]).sent(3, 2));
    assert_eq!(decided(&f), [1, 2, 9, 10, 11]);
    assert_eq!(
        paxos_out(&mut f),
        [Promise {
            // Still the round the log was accepted in: nothing was accepted
            // in B3.
            n_accepted: B1,
            decided_idx: 5,
            accepted_idx: 5,
            ..promise(B3)
        }
        .sent(2, 3)]
    );
}

#[test]
fn a_part_from_a_server_that_does_not_lead_the_ballot_is_ignored() {
    let mut f = promised_to_3();
    f.handle_incoming(part(B3, 1, vec![E(2), E(9), E(10)]).sent(1, 2));
    assert_eq!(decided(&f), [1]);
    assert!(paxos_out(&mut f).is_empty());
}

#[test]
fn a_part_that_would_cut_the_followers_log_is_refused() {
    let mut f = promised_to_3();
    // Ends at 2, inside the follower's log of 3.
    f.handle_incoming(part(B3, 1, vec![E(2)]).sent(3, 2));
    assert_eq!(decided(&f), [1]);
    assert_eq!(paxos_out(&mut f), [PrepareReq { n: B3 }.sent(2, 3)]);
}

#[test]
fn a_part_with_a_stopsign_is_refused() {
    let mut f = promised_to_3();
    let mut m = part(B3, 1, vec![E(2), E(9), E(10)]);
    m.log_sync.stopsign = Some(stopsign_2());
    f.handle_incoming(m.sent(3, 2));
    assert_eq!(decided(&f), [1]);
    assert_eq!(paxos_out(&mut f), [PrepareReq { n: B3 }.sent(2, 3)]);
}

#[test]
fn a_late_copy_of_an_installed_part_is_ignored() {
    let mut f = promised_to_3();
    f.handle_incoming(part(B3, 1, vec![E(2), E(9), E(10)]).sent(3, 2));
    f.outgoing_messages();
    f.handle_incoming(part(B3, 1, vec![E(2), E(9), E(10)]).sent(3, 2));
    assert_eq!(decided(&f), [1, 2, 9, 10]);
    assert!(paxos_out(&mut f).is_empty());
}

#[test]
fn a_follower_that_accepted_in_the_ballot_ignores_a_part() {
    // Synchronised in B1: it takes B1's log by accepts, not parts.
    let mut f = synced_follower(vec![E(1), E(2), E(3)], 1);
    f.handle_incoming(part(B1, 1, vec![E(2), E(9), E(10)]).sent(1, 2));
    assert_eq!(decided(&f), [1]);
    assert!(paxos_out(&mut f).is_empty());
}

/// Node 1 preparing B1, with a promise from node 2 whose log, accepted in a
/// round after node 1's, is 10 long and decided up to `decided_idx`, and
/// whose `log_sync` holds only its first 4 entries.
fn leader_given_a_partial_promise(decided_idx: u64) -> Node {
    let mut l = node(1);
    l.try_become_leader();
    l.outgoing_messages();
    l.handle_incoming(partial_promise(decided_idx).sent(2, 1));
    l
}

fn partial_promise(decided_idx: u64) -> Promise<E> {
    Promise {
        n_accepted: Ballot::with(0, 5, 3),
        decided_idx,
        accepted_idx: 10,
        log_sync: Some(log_sync(0, vec![E(1), E(2), E(3), E(4)])),
        ..promise(B1)
    }
}

fn prepares_to_2_and_3(decided_idx: u64) -> Vec<Message<E>> {
    let prepare = Prepare {
        n: B1,
        decided_idx,
        n_accepted: Ballot::default(),
        accepted_idx: decided_idx,
    };
    vec![prepare.sent(1, 2), prepare.sent(1, 3)]
}

#[test]
fn a_leader_installs_a_decided_part_of_a_promise_and_prepares_again() {
    let mut l = leader_given_a_partial_promise(4);
    assert_eq!(decided(&l), [1, 2, 3, 4]);
    // Its own round is unchanged: the prepare says so.
    assert_eq!(paxos_out(&mut l), prepares_to_2_and_3(4));
}

#[test]
fn a_leader_refuses_part_of_an_undecided_log_from_a_later_round() {
    // Entries 3 and 4 are not decided at node 2: a log of 4 accepted in
    // node 2's round would be a short log of that round.
    let mut l = leader_given_a_partial_promise(2);
    assert_eq!(decided(&l), Vec::<u64>::new());
    assert_eq!(paxos_out(&mut l), prepares_to_2_and_3(0));
}

#[test]
fn a_late_copy_of_a_promise_from_an_earlier_prepare_round_does_not_end_the_prepare_phase() {
    let mut l = leader_given_a_partial_promise(4);
    l.outgoing_messages();
    // The same promise again, computed against the first prepare: its part
    // starts below what the leader has decided since. Adopting it without
    // its log would let the leader lead with a log shorter than node 2's.
    l.handle_incoming(partial_promise(4).sent(2, 1));
    assert_eq!(decided(&l), [1, 2, 3, 4]);
    assert_eq!(paxos_out(&mut l), prepares_to_2_and_3(4));
}
