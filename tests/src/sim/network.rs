//! [`Network`]: the messages in flight between simulated servers, and the
//! links they travel on.
//!
//! ```text
//!   step t: server A ──take_outgoing_messages──▶ Network::send
//!              │  lost?       (drop_probability, or link A->B cut, or B down)
//!              │  copied?     (duplicate_probability; the copy draws its own delay)
//!              ▼
//!           in flight, keyed (due tick, send order)
//!              │  due tick = t + delay, delay drawn from min..=max_delay_ticks
//!              ▼
//!   step t': Network::take_due(t') ──▶ B.handle_incoming   (unless A->B was cut meanwhile)
//! ```
//!
//! Messages due in the same tick are delivered in the order they were sent,
//! so with a fixed delay the network is FIFO per link; random delays are what
//! reorder messages.

use crate::sim::{options::SimOptions, value::Value};
use omnipaxos::{messages::Message, util::NodeId};
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
    /// Messages lost because the sender or receiver was down.
    pub dropped_by_crash: u64,
    /// Extra copies created by `duplicate_probability`.
    pub duplicated: u64,
}

/// What [`Network::send`] did with a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Lost because the receiver is down.
    LostReceiverDown,
    /// Lost because the link is cut.
    LostLinkCut,
    /// Lost to `drop_probability`.
    LostRandomly,
    /// Queued for the given tick, and a copy for the other tick if duplicated.
    Queued {
        /// When the message is due.
        due: u64,
        /// When its duplicate is due, if it has one.
        copy_due: Option<u64>,
    },
}

/// The in-flight messages of a cluster and the state of its links.
///
/// All links start up. A link is directed: cutting `a -> b` loses what `a`
/// sends to `b` but not what `b` sends to `a`, which is how the simulator
/// builds the asymmetric failures the Omni-Paxos paper studies.
#[derive(Debug, Default)]
pub struct Network {
    /// Messages not yet delivered, keyed by (due tick, send order) so that
    /// iteration order is delivery order.
    in_flight: BTreeMap<(u64, u64), Message<Value>>,
    /// Numbers the messages in send order; the tie-breaker of the key above.
    next_seq: u64,
    /// The directed links `(from, to)` that currently lose everything.
    cut_links: BTreeSet<(NodeId, NodeId)>,
    /// What happened so far, for tests that assert the network did something.
    stats: NetworkStats,
    /// Set by [`limit_pull_bandwidth`](Self::limit_pull_bandwidth): how many
    /// log entries a link carries per tick in pull replies.
    pull_entries_per_tick: Option<u64>,
    /// Per directed link, the tick at which the pull reply it carries last
    /// has arrived; the next one starts no sooner.
    pull_link_busy_until: BTreeMap<(NodeId, NodeId), u64>,
}

impl Network {
    /// Creates a network with every link up and nothing in flight.
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts a message sent in step `now`: loses it, or schedules it (and
    /// maybe a copy) for this or a later step. Returns which.
    ///
    /// `receiver_up` says whether the receiver is running; a message to a
    /// crashed server is lost, as it would be on a real network.
    pub fn send(
        &mut self,
        msg: Message<Value>,
        now: u64,
        receiver_up: bool,
        options: &SimOptions,
        rng: &mut ChaCha8Rng,
    ) -> Fate {
        self.stats.sent += 1;
        let link = (msg.get_sender(), msg.get_receiver());
        if !receiver_up {
            self.stats.dropped_by_crash += 1;
            return Fate::LostReceiverDown;
        }
        if self.cut_links.contains(&link) {
            self.stats.dropped_by_cut += 1;
            return Fate::LostLinkCut;
        }
        // The random draws happen in a fixed order for every message, so a
        // run stays a function of its seed whatever the probabilities are.
        let lost = rng.gen_bool(options.drop_probability);
        let copied = rng.gen_bool(options.duplicate_probability);
        let delay = rng.gen_range(options.min_delay_ticks..=options.max_delay_ticks);
        if lost {
            self.stats.dropped_randomly += 1;
            return Fate::LostRandomly;
        }
        let sent_at = self.transfer_end(&msg, now);
        let copy_due = copied.then(|| {
            let copy_delay = rng.gen_range(options.min_delay_ticks..=options.max_delay_ticks);
            self.stats.duplicated += 1;
            self.enqueue(msg.clone(), sent_at + copy_delay);
            sent_at + copy_delay
        });
        self.enqueue(msg, sent_at + delay);
        Fate::Queued {
            due: sent_at + delay,
            copy_due,
        }
    }

    /// Makes every link carry pull replies (the log a joiner pulls) at
    /// `entries_per_tick` entries a tick, one reply after the other: a reply
    /// of `k` entries sent in step `t` on a free link arrives
    /// `ceil(k / entries_per_tick)` ticks later (one at the least), plus the
    /// delay the options draw. Other messages are not slowed. `None`, the
    /// default, delivers pull replies as any other message.
    pub fn limit_pull_bandwidth(&mut self, entries_per_tick: Option<u64>) {
        assert!(
            entries_per_tick != Some(0),
            "a link must carry at least one entry per tick"
        );
        self.pull_entries_per_tick = entries_per_tick;
    }

    /// The tick at which `msg`, sent in step `now`, has gone over its link:
    /// `now`, but for a pull reply under
    /// [`limit_pull_bandwidth`](Self::limit_pull_bandwidth).
    fn transfer_end(&mut self, msg: &Message<Value>, now: u64) -> u64 {
        use omnipaxos::messages::{PaxosMessage, PaxosMsg};
        let (
            Some(per_tick),
            Message::SequencePaxos(PaxosMessage {
                from,
                to,
                msg: PaxosMsg::PullLogReply(reply),
                ..
            }),
        ) = (self.pull_entries_per_tick, msg)
        else {
            return now;
        };
        let busy_until = self.pull_link_busy_until.entry((*from, *to)).or_insert(now);
        let start = (*busy_until).max(now);
        *busy_until = start + (reply.entries.len() as u64).div_ceil(per_tick).max(1);
        *busy_until
    }

    fn enqueue(&mut self, msg: Message<Value>, due: u64) {
        self.in_flight.insert((due, self.next_seq), msg);
        self.next_seq += 1;
    }

    /// Removes and returns, in delivery order, every message due at or before
    /// `now` whose link is still up. Messages on a link cut while they were in
    /// flight are lost.
    pub fn take_due(&mut self, now: u64) -> Vec<Message<Value>> {
        let later = self.in_flight.split_off(&(now + 1, 0));
        let due = std::mem::replace(&mut self.in_flight, later);
        let mut out = Vec::with_capacity(due.len());
        for msg in due.into_values() {
            if self.is_cut(msg.get_sender(), msg.get_receiver()) {
                self.stats.dropped_by_cut += 1;
            } else {
                self.stats.delivered += 1;
                out.push(msg);
            }
        }
        out
    }

    /// Loses every in-flight message from or to `node` (it crashed).
    pub fn drop_involving(&mut self, node: NodeId) {
        let before = self.in_flight.len();
        self.in_flight
            .retain(|_, m| m.get_sender() != node && m.get_receiver() != node);
        self.stats.dropped_by_crash += (before - self.in_flight.len()) as u64;
    }

    /// Counts a message that reached a server that was down at delivery time.
    pub fn note_undeliverable(&mut self) {
        self.stats.delivered -= 1;
        self.stats.dropped_by_crash += 1;
    }

    /// Cuts the directed link `from -> to`. Returns whether it was up.
    pub fn cut(&mut self, from: NodeId, to: NodeId) -> bool {
        self.cut_links.insert((from, to))
    }

    /// Restores the directed link `from -> to`. Returns whether it was cut.
    pub fn heal(&mut self, from: NodeId, to: NodeId) -> bool {
        self.cut_links.remove(&(from, to))
    }

    /// Restores every link; returns the directed links that were cut.
    pub fn heal_all(&mut self) -> Vec<(NodeId, NodeId)> {
        std::mem::take(&mut self.cut_links).into_iter().collect()
    }

    /// Whether the directed link `from -> to` is cut.
    pub fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        self.cut_links.contains(&(from, to))
    }

    /// The directed links that are cut, in order.
    pub fn cut_links(&self) -> impl Iterator<Item = (NodeId, NodeId)> + '_ {
        self.cut_links.iter().copied()
    }

    /// How many messages are in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// What happened to the messages so far.
    pub fn stats(&self) -> NetworkStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use omnipaxos::messages::{BLEMessage, HeartbeatMsg, HeartbeatRequest};
    use pretty_assertions::assert_eq;
    use rand::SeedableRng;

    fn heartbeat(from: NodeId, to: NodeId, round: u32) -> Message<Value> {
        Message::BLE(BLEMessage {
            configuration_id: 1,
            from,
            to,
            msg: HeartbeatMsg::Request(HeartbeatRequest { round }),
        })
    }

    fn rounds(msgs: &[Message<Value>]) -> Vec<u32> {
        msgs.iter()
            .map(|m| match m {
                Message::BLE(BLEMessage {
                    msg: HeartbeatMsg::Request(r),
                    ..
                }) => r.round,
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_fixed_delay_delivers_in_send_order_when_due() {
        let options = SimOptions {
            min_delay_ticks: 2,
            max_delay_ticks: 2,
            ..SimOptions::default()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut net = Network::new();
        for round in 0..3 {
            net.send(heartbeat(1, 2, round), 5, true, &options, &mut rng);
        }
        assert_eq!(net.take_due(6), vec![]);
        assert_eq!(rounds(&net.take_due(7)), vec![0, 1, 2]);
        assert_eq!(net.in_flight(), 0);
    }

    #[test]
    fn a_cut_link_loses_new_and_in_flight_messages_one_way_only() {
        let options = SimOptions {
            max_delay_ticks: 1,
            min_delay_ticks: 1,
            ..SimOptions::default()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut net = Network::new();
        net.send(heartbeat(1, 2, 0), 0, true, &options, &mut rng);
        net.cut(1, 2);
        let fate = net.send(heartbeat(1, 2, 1), 0, true, &options, &mut rng);
        assert_eq!(fate, Fate::LostLinkCut);
        net.send(heartbeat(2, 1, 2), 0, true, &options, &mut rng);
        assert_eq!(rounds(&net.take_due(1)), vec![2]);
        assert_eq!(net.stats().dropped_by_cut, 2);
    }

    #[test]
    fn certain_duplication_delivers_two_copies_and_certain_loss_none() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut net = Network::new();
        let copy_all = SimOptions {
            duplicate_probability: 1.0,
            ..SimOptions::default()
        };
        net.send(heartbeat(1, 2, 0), 0, true, &copy_all, &mut rng);
        let lose_all = SimOptions {
            drop_probability: 1.0,
            ..SimOptions::default()
        };
        net.send(heartbeat(1, 2, 1), 0, true, &lose_all, &mut rng);
        assert_eq!(rounds(&net.take_due(0)), vec![0, 0]);
        let stats = net.stats();
        assert_eq!((stats.duplicated, stats.dropped_randomly), (1, 1));
    }

    #[test]
    fn limited_pull_bandwidth_delays_pull_replies_one_after_another_per_link() {
        use omnipaxos::messages::{PaxosMessage, PaxosMsg, PullLogReply};
        let reply = |from, to, len: u64| {
            Message::SequencePaxos(PaxosMessage {
                configuration_id: 1,
                from,
                to,
                msg: PaxosMsg::PullLogReply(PullLogReply {
                    from_idx: 0,
                    to_idx: len,
                    snapshot: None,
                    entries: (0..len).map(Value).collect(),
                    stopsign: None,
                    origins: Default::default(),
                    origin_table: None,
                }),
            })
        };
        let options = SimOptions::default();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut net = Network::new();
        net.limit_pull_bandwidth(Some(10));
        let mut due = |net: &mut Network, msg| match net.send(msg, 5, true, &options, &mut rng) {
            Fate::Queued { due, .. } => due,
            other => panic!("{other:?}"),
        };
        // 25 entries take 3 ticks; the next reply on that link waits for it.
        assert_eq!(due(&mut net, reply(1, 4, 25)), 8);
        assert_eq!(due(&mut net, reply(1, 4, 5)), 9);
        // Another link, and other messages, are not held up.
        assert_eq!(due(&mut net, reply(2, 4, 5)), 6);
        assert_eq!(due(&mut net, heartbeat(1, 4, 0)), 5);
    }

    #[test]
    fn a_crash_drops_what_is_in_flight_from_and_to_the_server() {
        let options = SimOptions {
            max_delay_ticks: 1,
            min_delay_ticks: 1,
            ..SimOptions::default()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut net = Network::new();
        net.send(heartbeat(1, 2, 0), 0, true, &options, &mut rng);
        net.send(heartbeat(2, 1, 1), 0, true, &options, &mut rng);
        net.send(heartbeat(2, 3, 2), 0, true, &options, &mut rng);
        net.drop_involving(1);
        assert_eq!(rounds(&net.take_due(1)), vec![2]);
    }
}
