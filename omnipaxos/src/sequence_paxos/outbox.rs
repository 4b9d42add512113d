//! The messages Sequence Paxos sends, waiting for the driver, and the
//! merging of what is sent again before the driver took the first.
//!
//! A leader that appends a batch while its `AcceptDecide` to a follower is
//! still waiting extends that message instead of queueing a second one; a
//! follower does the same with its `Accepted` and its forwarded proposals.
//! Which message is still open to new content is the outbox's to know:
//! handlers ask for the open message of a kind ([`Open`]), and taking or
//! dropping the messages closes every one, so no path has to remember to.
//!
//! The entries a leader replicates are staged here once per batch, not
//! copied into every follower's message: an open `AcceptDecide` records the
//! range of the staged entries it carries ([`Outbox::attach`]), and when the
//! driver takes the messages they all share one buffer ([`Entries`]).

use std::{ops::Range, sync::Arc};

use crate::{
    messages::{Entries, Message, PaxosMessage, PaxosMsg},
    migration::PullKey,
    storage::Entry,
    util::{ConfigurationId, NodeId},
};

/// A message that later content of the same kind may join while the driver
/// has not taken it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Open {
    /// Leader: the latest `AcceptDecide` or `Decide` of the session with the
    /// follower in this slot of `SequencePaxos::peers` (see
    /// `SequencePaxos::send_numbered`); new entries and a higher decided
    /// index join it.
    Accept(usize),
    /// Follower: an `Accepted` to the leader; a longer log updates it.
    Accepted,
    /// Follower: a `ProposalForward` of the last forwarded batch; further
    /// proposals join the batch and the message.
    Forward,
}

/// The outgoing messages of one Sequence Paxos server, in the order sent.
pub(super) struct Outbox<T: Entry> {
    /// Stamped on every message.
    configuration_id: ConfigurationId,
    /// This server, the sender of every message.
    pid: NodeId,
    /// The messages, in the order they were sent.
    msgs: Vec<Message<T>>,
    /// Per peer slot, the index in `msgs` of the open [`Open::Accept`].
    accept: Vec<Option<usize>>,
    /// The index in `msgs` of the open [`Open::Accepted`].
    accepted: Option<usize>,
    /// The index in `msgs` of the open [`Open::Forward`].
    forward: Option<usize>,
    /// The pull replies in `msgs`, as `(puller, what was asked)`: at most
    /// `MAX_QUEUED_PULL_REPLIES` per puller, and one per range or snapshot
    /// part, wait until the driver takes them, so that a burst of pulls
    /// queues no more than a puller's window of replies.
    pull_replies: Vec<(NodeId, PullKey)>,
    /// The entries the leader replicated since the driver last took the
    /// messages, in the order staged.
    staged: Vec<T>,
    /// The staged entries each `AcceptDecide` carries, as `(index in msgs,
    /// range of staged)`; a record whose index is `usize::MAX` was written
    /// into its message already.
    carries: Vec<(usize, Range<usize>)>,
    /// Per peer slot, the record in `carries` of the open [`Open::Accept`].
    accept_carries: Vec<Option<usize>>,
}

impl<T: Entry> Outbox<T> {
    /// An empty outbox for a server with `peers` peers, with room for
    /// `capacity` messages.
    pub(super) fn with(
        configuration_id: ConfigurationId,
        pid: NodeId,
        peers: usize,
        capacity: usize,
    ) -> Self {
        Self {
            configuration_id,
            pid,
            msgs: Vec::with_capacity(capacity),
            accept: vec![None; peers],
            accepted: None,
            forward: None,
            pull_replies: Vec::new(),
            staged: Vec::new(),
            carries: Vec::new(),
            accept_carries: vec![None; peers],
        }
    }

    /// Where the index of the open message of `kind` is kept.
    fn open_idx(&mut self, kind: Open) -> &mut Option<usize> {
        match kind {
            Open::Accept(slot) => &mut self.accept[slot],
            Open::Accepted => &mut self.accepted,
            Open::Forward => &mut self.forward,
        }
    }

    /// Queues a message to `to` that nothing joins.
    pub(super) fn send(&mut self, to: NodeId, msg: PaxosMsg<T>) {
        self.msgs.push(Message::SequencePaxos(PaxosMessage {
            configuration_id: self.configuration_id,
            from: self.pid,
            to,
            msg,
        }));
    }

    /// Queues a message to `to` as the open one of its kind: content of the
    /// same kind joins it until the driver takes it or [`Self::close`].
    pub(super) fn send_open(&mut self, kind: Open, to: NodeId, msg: PaxosMsg<T>) {
        *self.open_idx(kind) = Some(self.msgs.len());
        self.send(to, msg);
    }

    /// The open message of `kind`, if the driver has not taken it.
    pub(super) fn open_mut(&mut self, kind: Open) -> Option<&mut PaxosMsg<T>> {
        let i = (*self.open_idx(kind))?;
        match &mut self.msgs[i] {
            Message::SequencePaxos(PaxosMessage { msg, .. }) => Some(msg),
            Message::BLE(_) => None,
        }
    }

    /// Nothing more joins the open message of `kind`: what follows goes in a
    /// message of its own.
    pub(super) fn close(&mut self, kind: Open) {
        *self.open_idx(kind) = None;
        if let Open::Accept(slot) = kind {
            self.accept_carries[slot] = None;
        }
    }

    /// Closes every [`Open::Accept`] (a new prepare round, or a restart).
    pub(super) fn close_accepts(&mut self) {
        self.accept.fill(None);
        self.accept_carries.fill(None);
    }

    /// Closes every open message.
    fn close_all(&mut self) {
        self.close_accepts();
        self.accepted = None;
        self.forward = None;
        self.pull_replies.clear();
        self.carries.clear();
    }

    /// Keeps a copy of `entries` for the `AcceptDecide`s that will carry
    /// them ([`Self::attach`]): one copy however many followers get them.
    pub(super) fn stage(&mut self, entries: &[T]) -> Range<usize> {
        let start = self.staged.len();
        self.staged.extend_from_slice(entries);
        start..self.staged.len()
    }

    /// How many staged entries the open [`Open::Accept`] of `slot` carries.
    pub(super) fn carried_len(&self, slot: usize) -> usize {
        self.accept_carries[slot].map_or(0, |r| self.carries[r].1.len())
    }

    /// The open [`Open::Accept`] of `slot`, an `AcceptDecide`, carries the
    /// staged entries `range` after those it carries already. Does nothing
    /// if that message is not open.
    pub(super) fn attach(&mut self, slot: usize, range: Range<usize>) {
        let Some(msg) = self.accept[slot] else {
            debug_assert!(false, "attach needs an open accept");
            return;
        };
        if let Some(r) = self.accept_carries[slot] {
            let carried = &mut self.carries[r].1;
            if carried.end == range.start {
                carried.end = range.end;
                return;
            }
            // Not contiguous: every flush stages for each follower that takes
            // entries, and a follower that stops taking them has its accept
            // closed. Should it happen, what the message carries goes into
            // it now, and the new range follows.
            debug_assert!(false, "slot {slot} skipped staged entries");
            let carried = std::mem::replace(&mut self.carries[r], (usize::MAX, 0..0)).1;
            if let Message::SequencePaxos(PaxosMessage {
                msg: PaxosMsg::AcceptDecide(acc),
                ..
            }) = &mut self.msgs[msg]
            {
                acc.entries
                    .to_mut()
                    .extend_from_slice(&self.staged[carried]);
            }
        }
        self.accept_carries[slot] = Some(self.carries.len());
        self.carries.push((msg, range));
    }

    /// Hands every `AcceptDecide` the staged entries it carries, all sharing
    /// one buffer.
    fn fill_carried(&mut self) {
        if self.carries.is_empty() {
            self.staged.clear();
            return;
        }
        let buf = Arc::new(std::mem::take(&mut self.staged));
        for (i, range) in self.carries.drain(..) {
            let Some(Message::SequencePaxos(PaxosMessage {
                msg: PaxosMsg::AcceptDecide(acc),
                ..
            })) = self.msgs.get_mut(i)
            else {
                debug_assert!(i == usize::MAX, "a carrying message is an AcceptDecide");
                continue;
            };
            if acc.entries.is_empty() {
                acc.entries = Entries::shared(Arc::clone(&buf), range.start, range.end);
            } else {
                // It carries entries of its own (a catch-up chunk) first.
                acc.entries.to_mut().extend_from_slice(&buf[range]);
            }
        }
        // No message took a share (each copied): keep the allocation.
        if let Ok(v) = Arc::try_unwrap(buf) {
            self.staged = v;
            self.staged.clear();
        }
    }
    /// How many pull replies to `puller` wait, and whether one of them
    /// answers `key`.
    pub(super) fn pull_replies_to(&self, puller: NodeId, key: PullKey) -> (usize, bool) {
        let mut queued = 0;
        let mut same = false;
        for &(p, k) in &self.pull_replies {
            if p == puller {
                queued += 1;
                same |= k == key;
            }
        }
        (queued, same)
    }

    /// Queues a pull reply to `puller` answering `key`.
    pub(super) fn send_pull_reply(&mut self, puller: NodeId, key: PullKey, msg: PaxosMsg<T>) {
        self.pull_replies.push((puller, key));
        self.send(puller, msg);
    }

    /// Moves the messages into `buf`, closing every open one.
    pub(super) fn take(&mut self, buf: &mut Vec<Message<T>>) {
        self.fill_carried();
        if buf.is_empty() {
            std::mem::swap(buf, &mut self.msgs);
        } else {
            buf.append(&mut self.msgs);
        }
        self.close_all();
    }

    /// Drops every message (a storage write failed: they may vouch for it).
    pub(super) fn clear(&mut self) {
        self.msgs.clear();
        self.staged.clear();
        self.close_all();
    }
}
