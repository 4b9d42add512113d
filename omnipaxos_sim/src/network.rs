//! The messages in flight between simulated servers, and the links they
//! travel on.
//!
//! ```text
//!   step t: server A ──take_outgoing_messages──▶ Network::send
//!              │  lost?       (link A->B cut, B down, or drop_probability)
//!              │  copied?     (duplicate_probability; the copy draws its own delay)
//!              ▼
//!           in flight, keyed (due tick, send order)
//!              │  due tick = t + delay, delay drawn from min..=max_delay_ticks
//!              ▼
//!   step t': Network::take_due(t') ──▶ B.handle_incoming   (unless A->B was cut meanwhile)
//! ```
//!
//! Messages due in the same tick are delivered in the order they were sent,
//! so with a fixed delay the network is FIFO per link; random delays are
//! what reorder messages.

use crate::Faults;
use omnipaxos::{messages::Message, storage::Entry, util::NodeId};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};

/// Counters of what happened to the messages sent so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetworkStats {
    /// Messages the servers sent.
    pub sent: u64,
    /// Messages handed to their receiver (duplicates count once per copy).
    pub delivered: u64,
    /// Messages lost to `drop_probability`.
    pub dropped_randomly: u64,
    /// Messages lost to a cut link.
    pub dropped_by_cut: u64,
    /// Messages lost because the sender or receiver was down, or the
    /// receiver is not in the cluster.
    pub dropped_by_crash: u64,
    /// Extra copies made by `duplicate_probability`.
    pub duplicated: u64,
}

/// The in-flight messages of a cluster and the state of its links. A link
/// is directed: cutting `a -> b` loses what `a` sends to `b` only.
pub(crate) struct Network<T: Entry> {
    /// Messages not yet delivered, keyed by (due tick, send order) so that
    /// iteration order is delivery order.
    in_flight: BTreeMap<(u64, u64), Message<T>>,
    /// Numbers messages in send order: the tie-breaker of the key above.
    next_seq: u64,
    /// The directed links `(from, to)` that currently lose everything.
    cut_links: BTreeSet<(NodeId, NodeId)>,
    /// What happened so far.
    stats: NetworkStats,
}

impl<T: Entry> Network<T> {
    /// A network with every link up and nothing in flight.
    pub(crate) fn new() -> Self {
        Self {
            in_flight: BTreeMap::new(),
            next_seq: 0,
            cut_links: BTreeSet::new(),
            stats: NetworkStats::default(),
        }
    }

    /// Accepts a message sent in step `now`: loses it, or schedules it (and
    /// maybe a copy) for a later delivery phase.
    pub(crate) fn send(
        &mut self,
        msg: Message<T>,
        now: u64,
        receiver_up: bool,
        faults: &Faults,
        rng: &mut ChaCha8Rng,
    ) {
        self.stats.sent += 1;
        if !receiver_up {
            self.stats.dropped_by_crash += 1;
            return;
        }
        if self.is_cut(msg.get_sender(), msg.get_receiver()) {
            self.stats.dropped_by_cut += 1;
            return;
        }
        // The draws happen in a fixed order for every message that reaches
        // this point, so a run stays a function of its seed whatever the
        // probabilities are.
        let lost = rng.gen_bool(faults.drop_probability);
        let copied = rng.gen_bool(faults.duplicate_probability);
        let delay = rng.gen_range(faults.min_delay_ticks..=faults.max_delay_ticks);
        if lost {
            self.stats.dropped_randomly += 1;
            return;
        }
        if copied {
            let copy_delay = rng.gen_range(faults.min_delay_ticks..=faults.max_delay_ticks);
            self.stats.duplicated += 1;
            self.enqueue(msg.clone(), now + copy_delay);
        }
        self.enqueue(msg, now + delay);
    }

    fn enqueue(&mut self, msg: Message<T>, due: u64) {
        self.in_flight.insert((due, self.next_seq), msg);
        self.next_seq += 1;
    }

    /// Moves every message due at or before `now` whose link is still up
    /// into `out`, in delivery order. Messages on a link cut while they
    /// were in flight are lost.
    pub(crate) fn take_due(&mut self, now: u64, out: &mut Vec<Message<T>>) {
        let later = self.in_flight.split_off(&(now.saturating_add(1), 0));
        let due = std::mem::replace(&mut self.in_flight, later);
        for msg in due.into_values() {
            if self.is_cut(msg.get_sender(), msg.get_receiver()) {
                self.stats.dropped_by_cut += 1;
            } else {
                out.push(msg);
            }
        }
    }

    /// Counts a message handed to its receiver.
    pub(crate) fn note_delivered(&mut self) {
        self.stats.delivered += 1;
    }

    /// Counts a message whose receiver was down (or unknown) at delivery.
    pub(crate) fn note_undeliverable(&mut self) {
        self.stats.dropped_by_crash += 1;
    }

    /// Loses every in-flight message from or to `pid` (it crashed).
    pub(crate) fn drop_involving(&mut self, pid: NodeId) {
        let before = self.in_flight.len();
        self.in_flight
            .retain(|_, m| m.get_sender() != pid && m.get_receiver() != pid);
        self.stats.dropped_by_crash += (before - self.in_flight.len()) as u64;
    }

    /// Cuts the directed link `from -> to`.
    pub(crate) fn cut(&mut self, from: NodeId, to: NodeId) {
        self.cut_links.insert((from, to));
    }

    /// Restores every link.
    pub(crate) fn heal_all(&mut self) {
        self.cut_links.clear();
    }

    /// Whether the directed link `from -> to` is cut.
    pub(crate) fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        self.cut_links.contains(&(from, to))
    }

    /// The number of messages in flight.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// What happened to the messages so far.
    pub(crate) fn stats(&self) -> NetworkStats {
        self.stats
    }
}
