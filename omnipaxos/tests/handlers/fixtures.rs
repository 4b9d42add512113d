//! What the handler tests share: the entry types, nodes in a known state,
//! and message builders.
//!
//! A builder makes one message body with the defaults of a fresh cluster:
//! nothing accepted or decided before, the leader's first session, no
//! snapshot, no stop-sign. A test changes what its scenario is about with
//! struct update syntax and addresses the body with [`Body::sent`]:
//!
//! ```text
//! l.handle_incoming(Promise { decided_idx: 4, accepted_idx: 4, ..promise(B1) }.sent(2, 1));
//! ```
//!
//! `hostile.rs` uses the builders too (it includes this file).

pub(crate) use crate::common::{N, Sum};
use omnipaxos::{
    Ballot, OmniPaxos, OmniPaxosConfig,
    messages::*,
    storage::{Entry, NoSnapshot},
    util::{NodeId, StopSign},
};
use omnipaxos_storage::memory_storage::MemoryStorage;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct E(pub(crate) u64);

impl Entry for E {
    type Snapshot = NoSnapshot;
}

pub(crate) type Node = OmniPaxos<E, MemoryStorage<E>>;

pub(crate) const CONFIG: u32 = 1;

// ----- nodes -------------------------------------------------------------------

/// The config of server `pid` of configuration [`CONFIG`] whose other
/// servers are `peers`; the defaults otherwise.
pub(crate) fn config(pid: NodeId, peers: &[NodeId]) -> OmniPaxosConfig {
    OmniPaxosConfig {
        configuration_id: CONFIG,
        pid,
        peers: peers.to_vec(),
        ..Default::default()
    }
}

/// Server `pid` of the cluster {1, 2, 3}, just built on an empty storage.
pub(crate) fn member<T: Entry>(pid: NodeId) -> OmniPaxos<T, MemoryStorage<T>> {
    let peers: Vec<NodeId> = [1, 2, 3].into_iter().filter(|p| *p != pid).collect();
    config(pid, &peers)
        .build(MemoryStorage::default())
        .expect("the config of a member of {1, 2, 3} is valid")
}

/// Node `pid` of the cluster {1, 2, 3}, with its start-up heartbeats drained.
pub(crate) fn node(pid: NodeId) -> Node {
    let mut n = member(pid);
    n.outgoing_messages();
    n
}

/// Node 2 following leader 1 in ballot B1, synchronised with log `log`, decided `decided`.
pub(crate) fn synced_follower(log: Vec<E>, decided: u64) -> Node {
    let mut f = node(2);
    f.handle_incoming(prepare(B1).sent(1, 2));
    f.handle_incoming(
        AcceptSync {
            decided_idx: decided,
            ..accept_sync(B1, log_sync(0, log))
        }
        .sent(1, 2),
    );
    f.outgoing_messages();
    f
}

/// Node 1 leading ballot B1 with node 2 promised and synchronised.
pub(crate) fn leader_with_follower_2() -> Node {
    let mut l = node(1);
    l.try_become_leader();
    l.outgoing_messages();
    l.handle_incoming(promise(B1).sent(2, 1));
    l.outgoing_messages();
    l
}

/// Has `l` (server 1) start to lead B1 and hands it `from`'s promise of a
/// server that accepted nothing: with three servers, `l` then leads.
pub(crate) fn promised_by<T: Entry>(l: &mut OmniPaxos<T, MemoryStorage<T>>, from: NodeId) {
    l.try_become_leader();
    l.handle_incoming(promise(B1).sent(from, 1));
}

/// The Sequence Paxos messages a node has to send (heartbeats left out).
pub(crate) fn paxos_out(n: &mut Node) -> Vec<Message<E>> {
    n.outgoing_messages()
        .into_iter()
        .filter(|m| matches!(m, Message::SequencePaxos(_)))
        .collect()
}

/// The messages among `msgs` that acknowledge forwarded proposals.
pub(crate) fn proposal_acks<T: Entry>(msgs: Vec<Message<T>>) -> Vec<Message<T>> {
    msgs.into_iter()
        .filter(|m| {
            matches!(
                m,
                Message::SequencePaxos(PaxosMessage {
                    msg: PaxosMsg::ProposalAck(_),
                    ..
                })
            )
        })
        .collect()
}

/// The pull requests among `msgs`, each with the server it goes to.
pub(crate) fn pull_logs<T: Entry>(msgs: Vec<Message<T>>) -> Vec<(NodeId, PullLog)> {
    msgs.into_iter()
        .filter_map(|m| match m {
            Message::SequencePaxos(PaxosMessage {
                to,
                msg: PaxosMsg::PullLog(p),
                ..
            }) => Some((to, p)),
            _ => None,
        })
        .collect()
}

// ----- messages ------------------------------------------------------------------

/// The ballot server 1 leads in first.
pub(crate) const B1: Ballot = Ballot::with(1, 0, 1);

/// A Sequence Paxos message of configuration [`CONFIG`].
pub(crate) fn sp<T: Entry>(from: NodeId, to: NodeId, msg: PaxosMsg<T>) -> Message<T> {
    msg.sent(from, to)
}

/// A leader election message of configuration [`CONFIG`].
pub(crate) fn ble<T: Entry>(from: NodeId, to: NodeId, msg: HeartbeatMsg) -> Message<T> {
    Message::BLE(BLEMessage {
        configuration_id: CONFIG,
        from,
        to,
        msg,
    })
}

/// A message body that can be sent: a [`PaxosMsg`] or one of the structs
/// its variants carry.
pub(crate) trait Body<T: Entry>: Sized {
    /// The body as a message from `from` to `to` in configuration
    /// `configuration_id`.
    fn sent_in(self, configuration_id: u32, from: NodeId, to: NodeId) -> Message<T>;

    /// The body as a message from `from` to `to` in configuration [`CONFIG`].
    fn sent(self, from: NodeId, to: NodeId) -> Message<T> {
        self.sent_in(CONFIG, from, to)
    }
}

impl<T: Entry> Body<T> for PaxosMsg<T> {
    fn sent_in(self, configuration_id: u32, from: NodeId, to: NodeId) -> Message<T> {
        Message::SequencePaxos(PaxosMessage {
            configuration_id,
            from,
            to,
            msg: self,
        })
    }
}

/// `Body` for the struct each named [`PaxosMsg`] variant carries.
macro_rules! body_for_variants {
    ($($variant:ident $(<$t:ident>)?),* $(,)?) => {
        $(
            impl<T: Entry> Body<T> for $variant$(<$t>)? {
                fn sent_in(self, configuration_id: u32, from: NodeId, to: NodeId) -> Message<T> {
                    PaxosMsg::$variant(self).sent_in(configuration_id, from, to)
                }
            }
        )*
    };
}

body_for_variants!(
    PrepareReq,
    Prepare,
    Promise<T>,
    AcceptSync<T>,
    DecidedSync<T>,
    AcceptDecide<T>,
    Accepted,
    Decide,
    NotAccepted,
    ProposalForward<T>,
    ProposalAck,
    AcceptStopSign,
    PullLog,
    PullLogReply<T>,
    StopSignDecided,
);

/// The `counter`-th message of the leader's first session with a follower.
pub(crate) fn seq(counter: u64) -> SequenceNumber {
    SequenceNumber {
        session: 1,
        counter,
    }
}

/// A Prepare of ballot `n` from a leader that has accepted and decided nothing.
pub(crate) fn prepare(n: Ballot) -> Prepare {
    Prepare {
        n,
        decided_idx: 0,
        n_accepted: Ballot::default(),
        accepted_idx: 0,
    }
}

/// A Promise of ballot `n` from a server that has accepted and decided nothing.
pub(crate) fn promise<T: Entry>(n: Ballot) -> Promise<T> {
    Promise {
        n,
        n_accepted: Ballot::default(),
        decided_idx: 0,
        accepted_idx: 0,
        log_sync: None,
        snapshot_follows: None,
    }
}

/// A log sync that puts `suffix` at `sync_idx`, with no snapshot or stop-sign.
pub(crate) fn log_sync<T: Entry>(sync_idx: u64, suffix: Vec<T>) -> LogSync<T> {
    LogSync {
        decided_snapshot: None,
        sync_idx,
        suffix,
        stopsign: None,
        suffix_origins: Default::default(),
        origin_table: None,
    }
}

/// The first message of ballot `n`'s leader to a follower that promised:
/// `log_sync`, with nothing decided.
pub(crate) fn accept_sync<T: Entry>(n: Ballot, log_sync: LogSync<T>) -> AcceptSync<T> {
    AcceptSync {
        n,
        seq_num: seq(1),
        decided_idx: 0,
        log_sync,
        forward_acks: vec![],
    }
}

/// The `counter`-th message of ballot `n`'s leader to a follower: `entries`
/// to append, with nothing decided.
pub(crate) fn accept_decide<T: Entry>(n: Ballot, counter: u64, entries: Vec<T>) -> AcceptDecide<T> {
    AcceptDecide {
        n,
        seq_num: seq(counter),
        decided_idx: 0,
        entries: entries.into(),
        forward_acks: vec![],
        origins: Default::default(),
    }
}

/// Leader 1's `counter`-th message to node 2 in B1: `entries` to append, and
/// the log decided up to `decided_idx`.
pub(crate) fn accept_decide_from_1(counter: u64, decided_idx: u64, entries: Vec<E>) -> Message<E> {
    AcceptDecide {
        decided_idx,
        ..accept_decide(B1, counter, entries)
    }
    .sent(1, 2)
}

/// A follower's word that it accepted ballot `n`'s log up to `accepted_idx`.
pub(crate) fn accepted(n: Ballot, accepted_idx: u64) -> Accepted {
    Accepted { n, accepted_idx }
}

/// The `counter`-th message of ballot `n`'s leader to a follower: the log
/// is decided up to `decided_idx`.
pub(crate) fn decide(n: Ballot, counter: u64, decided_idx: u64) -> Decide {
    Decide {
        n,
        seq_num: seq(counter),
        decided_idx,
    }
}

/// A pull reply with the decided `entries` from `from_idx` on, no snapshot,
/// and no word of how the previous configuration ended.
pub(crate) fn pull_log_reply<T: Entry>(from_idx: u64, entries: Vec<T>) -> PullLogReply<T> {
    PullLogReply {
        from_idx,
        to_idx: from_idx + entries.len() as u64,
        snapshot: None,
        entries,
        stopsign: None,
        origins: Default::default(),
        origin_table: None,
    }
}

/// The stop-sign that ends configuration [`CONFIG`], keeping {1, 2, 3}.
pub(crate) fn stopsign_2() -> StopSign {
    StopSign::with(CONFIG + 1, vec![1, 2, 3], None)
}

/// The ids server `origin` gives its proposals `seqs` in its first
/// incarnation, as a message carries them (index 0 being the first).
pub(crate) fn ids_of(origin: NodeId, seqs: std::ops::Range<u64>) -> omnipaxos::storage::OriginIds {
    let mut ids = omnipaxos::storage::OriginIds::new();
    for (k, seq) in seqs.enumerate() {
        ids.push(
            k as u64,
            omnipaxos::storage::OriginId {
                origin,
                incarnation: 1,
                seq,
            },
        );
    }
    ids
}
