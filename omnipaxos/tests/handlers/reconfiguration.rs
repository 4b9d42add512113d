//! Stop-signs, moving on, stragglers and joiners.

use crate::fixtures::*;
use omnipaxos::{
    Ballot, Migration, OmniPaxosConfig, ProposeErr,
    messages::*,
    storage::Storage,
    util::{ConfigurationEnd, LogEntry, StopSign},
};
use omnipaxos_storage::memory_storage::MemoryStorage;
use pretty_assertions::assert_eq;

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
    let pulls = pull_logs(n.outgoing_messages());
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
        n.handle_incoming(pull_log_reply(idx, vec![e]).sent(from, 2));
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
    j.handle_incoming(
        PullLogReply {
            stopsign: Some(decided.clone()),
            ..pull_log_reply(0, vec![E(1)])
        }
        .sent(1, 4),
    );
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
    let asked = pull_logs(n.outgoing_messages());
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
    n.handle_incoming(sp(1, 2, PaxosMsg::Prepare(prepare(b2))));
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
