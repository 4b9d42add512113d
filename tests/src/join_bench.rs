//! Measuring the paper's parallel catch-up: a server that joins a new
//! configuration pulls the previous configuration's decided log from several
//! old servers at once, so it joins sooner and the leader sends less.
//!
//! [`run_join`] builds a three-server cluster {1, 2, 3} whose storages already
//! hold the same decided log of [`JoinBenchOptions::log_entries`] entries of
//! [`JoinBenchOptions::entry_bytes`] bytes each (filled directly, not pushed
//! through consensus, which would take minutes for a GiB), reconfigures it to
//! {1, 2, 3, 4} through the protocol, waits for the new configuration's
//! leader among the old servers, then starts server 4 with
//! [`OmniPaxosConfig::build_joining`] pulling from one source (the leader) or
//! three (the leader first, then the followers). It reports how long the
//! join took in virtual time, what each server sent meanwhile, and the
//! wall-clock time the leader and the joiner spent inside the protocol.
//! Before reporting it checks that the join happened: server 4 holds the
//! leader's log (a sample of it, and the decided index) and the new
//! configuration decides a fresh entry with server 4 in it.
//!
//! # The network model
//!
//! A discrete-event model of servers with one full-duplex network card each,
//! behind a switch. A message is sized once, as its `bincode` encoding.
//!
//! ```text
//!  sender ──egress queue──▶ (latency) ──▶ ingress queue──▶ receiver
//!          FIFO, size/egress_bw            FIFO, size/ingress_bw
//! ```
//!
//! The sender's card sends one message after the other at its egress
//! bandwidth; the first byte reaches the receiver `latency` later; the
//! receiver's card takes the message in at its ingress bandwidth, one message
//! after the other in the order their first bytes arrive, and no sooner than
//! the last byte arrived (cut-through, so a large message is not delayed
//! twice by its own size). Each directed link is therefore FIFO. With the
//! joiner's ingress as fast as each source's egress, three sources together
//! can send no faster than the joiner can take in; the paper's setting, a
//! joiner whose inbound capacity exceeds one source's outbound, is
//! [`JoinBenchOptions::joiner_ingress_mbit_s`]. Every server is ticked every
//! [`JoinBenchOptions::tick_interval_us`] of virtual time, so the protocol's
//! tick-counted timeouts are real timeouts here.

use omnipaxos::{
    Migration, OmniPaxos, OmniPaxosConfig, ReconfigurationRequest,
    macros::Entry,
    messages::{Message, PaxosMessage, PaxosMsg},
    storage::Storage,
    util::{LogEntry, NodeId},
};
use omnipaxos_storage::memory_storage::MemoryStorage;
use serde::{Deserialize, Serialize};
use std::{
    cmp::Reverse,
    collections::{BTreeMap, BinaryHeap, HashSet},
    fmt::Write as _,
    time::{Duration, Instant},
};

/// One log entry: an opaque payload of [`JoinBenchOptions::entry_bytes`]
/// bytes, the first eight of which hold the entry's index (so a misplaced
/// entry is caught by comparing logs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Entry)]
pub struct Payload(pub Vec<u8>);

impl Payload {
    /// The entry the benchmark stores at `idx`.
    fn at(idx: u64, len: usize) -> Self {
        let mut bytes = vec![(idx % 251) as u8; len.max(8)];
        bytes[..8].copy_from_slice(&idx.to_le_bytes());
        Self(bytes)
    }
}

type Node = OmniPaxos<Payload, MemoryStorage<Payload>>;

/// The servers of the old configuration; the joiner is [`JOINER`].
const OLD: [NodeId; 3] = [1, 2, 3];
/// The server that joins the new configuration.
pub const JOINER: NodeId = 4;

/// The knobs of one measurement. `Default` is the benchmark's setting with
/// the default log of 1 GiB; [`from_env`](Self::from_env) reads overrides.
#[derive(Clone, Debug)]
pub struct JoinBenchOptions {
    /// How many entries the old configuration decided.
    pub log_entries: u64,
    /// The payload size of each entry, in bytes.
    pub entry_bytes: usize,
    /// Every server's egress and ingress bandwidth, in Mbit/s (1000 is
    /// 1 Gbit/s, 125 MB/s).
    pub mbit_s: f64,
    /// The joiner's ingress bandwidth in Mbit/s; `None` is [`mbit_s`](Self::mbit_s).
    pub joiner_ingress_mbit_s: Option<f64>,
    /// The fixed delay from a byte leaving the sender to its reaching the
    /// receiver, in microseconds.
    pub latency_us: u64,
    /// Virtual time between two ticks of every server, in microseconds.
    pub tick_interval_us: u64,
    /// `buffer_size` and `max_entries_per_message` of every server: a source
    /// answers a pull with at most this many entries, and the joiner asks
    /// for parts of at most this many.
    ///
    /// The default is 1024 (1 MiB replies, 8 ms at 1 Gbit/s), not the
    /// config's 100,000: with entries of 1 KiB that is a 100 MB reply, 0.8 s
    /// on the wire, four times the resend timeout of 200 ms. The joiner's
    /// resend timer fires every `resend_message_tick_timeout` ticks and then
    /// asks again for every slice not complete, answered meanwhile or not,
    /// so each firing puts another copy of the reply in flight on the
    /// source's link, ahead of the next real part: the link fills with
    /// duplicates faster than it drains. Small replies keep that to one
    /// small duplicate per slice per firing (counted in
    /// [`JoinReport::resends`]).
    pub buffer_size: usize,
    /// `resend_message_tick_timeout` of every server: the joiner asks again
    /// for the slices not complete each time it fires.
    pub resend_message_tick_timeout: u64,
}

impl Default for JoinBenchOptions {
    fn default() -> Self {
        let config = OmniPaxosConfig::default();
        Self {
            log_entries: 1 << 20,
            entry_bytes: 1024,
            mbit_s: 1000.0,
            joiner_ingress_mbit_s: None,
            latency_us: 100,
            tick_interval_us: 10_000,
            buffer_size: 1024,
            resend_message_tick_timeout: config.resend_message_tick_timeout,
        }
    }
}

impl JoinBenchOptions {
    /// The defaults with the overrides the environment sets:
    /// `JOIN_BENCH_MIB` (log size in MiB of payload, default 1024),
    /// `JOIN_BENCH_MBPS` (every server's bandwidth in Mbit/s, default 1000),
    /// `JOIN_BENCH_JOINER_IN_MBPS` (the joiner's ingress in Mbit/s),
    /// `JOIN_BENCH_BUFFER` (entries per pull reply, default 1024) and `JOIN_BENCH_RESEND_TICKS` (the resend timeout).
    /// A value that does not parse is an error naming the variable.
    pub fn from_env() -> Result<Self, String> {
        fn var<V: std::str::FromStr>(name: &str) -> Result<Option<V>, String> {
            match std::env::var(name) {
                Ok(s) => s
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| format!("{name}={s:?} is not a number")),
                Err(_) => Ok(None),
            }
        }
        let mut o = Self::default();
        if let Some(mib) = var::<u64>("JOIN_BENCH_MIB")? {
            o.log_entries = mib * (1 << 20) / o.entry_bytes as u64;
        }
        if let Some(v) = var("JOIN_BENCH_MBPS")? {
            o.mbit_s = v;
        }
        o.joiner_ingress_mbit_s = var("JOIN_BENCH_JOINER_IN_MBPS")?;
        if let Some(v) = var("JOIN_BENCH_BUFFER")? {
            o.buffer_size = v;
        }
        if let Some(v) = var("JOIN_BENCH_RESEND_TICKS")? {
            o.resend_message_tick_timeout = v;
        }
        Ok(o)
    }

    /// The payload bytes of the decided log.
    pub fn log_bytes(&self) -> u64 {
        self.log_entries * self.entry_bytes as u64
    }
}

/// What one join measured. Times named `virtual` are in the network model's
/// time; `cpu` times are wall-clock time spent inside `handle_incoming`,
/// `tick` and `take_outgoing_messages` of that server while it joined.
#[derive(Clone, Debug)]
pub struct JoinReport {
    /// How many servers the joiner pulled from.
    pub sources: usize,
    /// The new configuration's leader, the first source.
    pub leader: NodeId,
    /// Entries in the pulled log.
    pub log_entries: u64,
    /// From the joiner's first message to its holding the whole log.
    pub join_time_virtual: Duration,
    /// Encoded bytes each server sent during the join.
    pub bytes_sent: BTreeMap<NodeId, u64>,
    /// Messages all servers sent during the join.
    pub messages: u64,
    /// The leader's protocol time during the join.
    pub leader_cpu: Duration,
    /// The joiner's protocol time during the join.
    pub joiner_cpu: Duration,
    /// Of `leader_cpu`, the time the thread was on a CPU (from the
    /// scheduler's `/proc/thread-self/schedstat`, where there is one): on a
    /// machine shared with other work, wall-clock time also counts the time
    /// the thread waited for a core.
    pub leader_oncpu: Option<Duration>,
    /// Of `joiner_cpu`, the time on a CPU, as for `leader_oncpu`. Both
    /// include reading that file, some microseconds per call: noticeable
    /// only for the joiner's many small calls in a small join.
    pub joiner_oncpu: Option<Duration>,
    /// Pull requests the joiner sent.
    pub pull_requests: u64,
    /// Pull requests for a part of the log the joiner had asked for before
    /// (its resend timer fired while the answer was on its way).
    pub resends: u64,
    /// Encoded bytes of pull replies for a part already answered: the cost
    /// of the resends.
    pub duplicate_reply_bytes: u64,
    /// Wall-clock time of the whole run (building, reconfiguring, joining,
    /// checking), to see what the simulation itself costs.
    pub wall: Duration,
}

impl JoinReport {
    /// The header of [`table_row`](Self::table_row).
    pub fn table_header() -> String {
        format!(
            "{:>7}  {:>11}  {:>14}  {:>17}  {:>13}  {:>13}  {:>15}  {:>15}  {:>8}  {:>7}  {:>7}",
            "sources",
            "join_time_s",
            "leader_MB_sent",
            "MB_sent_by_1/2/3",
            "leader_cpu_ms",
            "joiner_cpu_ms",
            "leader_oncpu_ms",
            "joiner_oncpu_ms",
            "messages",
            "resends",
            "dup_MB"
        )
    }

    /// One line of the table, in MB of 10^6 bytes.
    pub fn table_row(&self) -> String {
        let mb = |b: u64| b as f64 / 1e6;
        let per_source = OLD
            .iter()
            .map(|p| format!("{:.0}", mb(self.bytes_sent.get(p).copied().unwrap_or(0))))
            .collect::<Vec<_>>()
            .join("/");
        let ms = |d: Option<Duration>| {
            d.map_or_else(|| "-".into(), |d| format!("{:.1}", d.as_secs_f64() * 1e3))
        };
        format!(
            "{:>7}  {:>11.3}  {:>14.1}  {:>17}  {:>13.1}  {:>13.1}  {:>15}  {:>15}  {:>8}  {:>7}  {:>7.1}",
            self.sources,
            self.join_time_virtual.as_secs_f64(),
            mb(self.leader_bytes()),
            per_source,
            self.leader_cpu.as_secs_f64() * 1e3,
            self.joiner_cpu.as_secs_f64() * 1e3,
            ms(self.leader_oncpu),
            ms(self.joiner_oncpu),
            self.messages,
            self.resends,
            mb(self.duplicate_reply_bytes),
        )
    }

    /// The report as one line of JSON.
    pub fn to_json(&self, o: &JoinBenchOptions) -> String {
        let mut bytes = String::new();
        for (i, (p, b)) in self.bytes_sent.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(bytes, "{sep}\"{p}\":{b}");
        }
        format!(
            "{{\"sources\":{},\"leader\":{},\"log_entries\":{},\"entry_bytes\":{},\
             \"mbit_s\":{},\"joiner_ingress_mbit_s\":{},\"buffer_size\":{},\
             \"join_time_s\":{:.6},\"bytes_sent\":{{{bytes}}},\"leader_bytes_sent\":{},\
             \"messages\":{},\"leader_cpu_ms\":{:.3},\"joiner_cpu_ms\":{:.3},\
             \"leader_oncpu_ms\":{},\"joiner_oncpu_ms\":{},\
             \"pull_requests\":{},\"resends\":{},\"duplicate_reply_bytes\":{},\"wall_s\":{:.3}}}",
            self.sources,
            self.leader,
            self.log_entries,
            o.entry_bytes,
            o.mbit_s,
            o.joiner_ingress_mbit_s.unwrap_or(o.mbit_s),
            o.buffer_size,
            self.join_time_virtual.as_secs_f64(),
            self.leader_bytes(),
            self.messages,
            self.leader_cpu.as_secs_f64() * 1e3,
            self.joiner_cpu.as_secs_f64() * 1e3,
            json_ms(self.leader_oncpu),
            json_ms(self.joiner_oncpu),
            self.pull_requests,
            self.resends,
            self.duplicate_reply_bytes,
            self.wall.as_secs_f64(),
        )
    }

    /// Encoded bytes the leader sent during the join.
    pub fn leader_bytes(&self) -> u64 {
        self.bytes_sent.get(&self.leader).copied().unwrap_or(0)
    }
}

/// Milliseconds as JSON: a number, or `null`.
fn json_ms(d: Option<Duration>) -> String {
    d.map_or_else(
        || "null".into(),
        |d| format!("{:.3}", d.as_secs_f64() * 1e3),
    )
}

/// Virtual time in nanoseconds.
type Nanos = u64;

/// What happens at a point of virtual time.
enum Event {
    /// Every server ticks.
    Tick,
    /// A message's first byte reaches the receiver's card; its last byte
    /// arrives at `last_byte`.
    Arrive {
        msg: Message<Payload>,
        size: u64,
        last_byte: Nanos,
    },
    /// The receiver's card has taken the whole message in.
    Deliver(Message<Payload>),
}

/// An event in the queue, ordered by time, then by when it was scheduled
/// (so that equal times keep their order and the run is deterministic).
struct Scheduled {
    at: Nanos,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// What one server's card and protocol did while counting was on.
#[derive(Default)]
struct NodeStats {
    bytes_sent: u64,
    messages_sent: u64,
    cpu: Duration,
    /// On-CPU nanoseconds, if the scheduler tells them.
    oncpu: Option<u64>,
}

/// Nanoseconds this thread has run on a CPU, from the first field of
/// `/proc/thread-self/schedstat`; `None` where that file does not exist.
fn thread_oncpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// The servers, their cards, and the event queue.
struct Bench<'o> {
    o: &'o JoinBenchOptions,
    nodes: BTreeMap<NodeId, Node>,
    /// When each server's egress card is free to send the next message.
    egress_free: BTreeMap<NodeId, Nanos>,
    /// When each server's ingress card is free to take the next message in.
    ingress_free: BTreeMap<NodeId, Nanos>,
    queue: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    now: Nanos,
    /// Whether sends and protocol time are counted (during the join).
    counting: bool,
    /// The leader, whose on-CPU time is read besides the joiner's.
    leader_timed: Option<NodeId>,
    stats: BTreeMap<NodeId, NodeStats>,
    /// `from_idx` of every pull request and pull reply seen, to tell resends.
    asked_from: HashSet<u64>,
    answered_from: HashSet<u64>,
    pull_requests: u64,
    resends: u64,
    duplicate_reply_bytes: u64,
    out: Vec<Message<Payload>>,
}

impl<'o> Bench<'o> {
    fn new(o: &'o JoinBenchOptions, nodes: BTreeMap<NodeId, Node>) -> Self {
        let mut b = Self {
            o,
            nodes,
            egress_free: BTreeMap::new(),
            ingress_free: BTreeMap::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            now: 0,
            counting: false,
            leader_timed: None,
            stats: BTreeMap::new(),
            asked_from: HashSet::new(),
            answered_from: HashSet::new(),
            pull_requests: 0,
            resends: 0,
            duplicate_reply_bytes: 0,
            out: Vec::new(),
        };
        b.schedule(b.tick_ns(), Event::Tick);
        b
    }

    fn tick_ns(&self) -> Nanos {
        self.o.tick_interval_us * 1_000
    }

    fn schedule(&mut self, at: Nanos, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            event,
        }));
    }

    /// Nanoseconds `size` bytes take at `mbit_s`; 0 for an unlimited card.
    fn transfer_ns(size: u64, mbit_s: f64) -> Nanos {
        if mbit_s <= 0.0 || !mbit_s.is_finite() {
            return 0;
        }
        (size as f64 * 8.0 * 1e3 / mbit_s).ceil() as Nanos
    }

    fn ingress_mbit_s(&self, pid: NodeId) -> f64 {
        match self.o.joiner_ingress_mbit_s {
            Some(v) if pid == JOINER => v,
            _ => self.o.mbit_s,
        }
    }

    /// Runs `f` on server `pid`, counting its time if counting is on, then
    /// sends what it has to send.
    fn with_node(&mut self, pid: NodeId, f: impl FnOnce(&mut Node)) {
        let Some(node) = self.nodes.get_mut(&pid) else {
            return;
        };
        // Only the two servers reported are timed on CPU: reading the
        // scheduler's file costs a system call per reading.
        let oncpu = self.counting && (pid == JOINER || Some(pid) == self.leader_timed);
        let oncpu_start = if oncpu { thread_oncpu_ns() } else { None };
        let start = Instant::now();
        f(node);
        node.take_outgoing_messages(&mut self.out);
        let spent = start.elapsed();
        if self.counting {
            let s = self.stats.entry(pid).or_default();
            s.cpu += spent;
            if let (Some(a), Some(b)) = (oncpu_start, oncpu.then(thread_oncpu_ns).flatten()) {
                *s.oncpu.get_or_insert(0) += b.saturating_sub(a);
            }
        }
        let mut out = std::mem::take(&mut self.out);
        for msg in out.drain(..) {
            self.send(msg);
        }
        self.out = out;
    }

    /// Puts `msg` on its sender's egress queue.
    fn send(&mut self, msg: Message<Payload>) {
        let (from, to) = (msg.get_sender(), msg.get_receiver());
        if !self.nodes.contains_key(&to) {
            // The joiner before it is started: nobody listens there yet.
            return;
        }
        let size = bincode::serialized_size(&msg).expect("bench messages are serialisable");
        if self.counting {
            self.count_pull(&msg, size);
            let s = self.stats.entry(from).or_default();
            s.bytes_sent += size;
            s.messages_sent += 1;
        }
        let free = self.egress_free.entry(from).or_insert(0);
        let start = (*free).max(self.now);
        let end = start + Self::transfer_ns(size, self.o.mbit_s);
        *free = end;
        let latency = self.o.latency_us * 1_000;
        self.schedule(
            start + latency,
            Event::Arrive {
                msg,
                size,
                last_byte: end + latency,
            },
        );
    }

    /// Counts pull requests, resends and replies for parts answered before.
    fn count_pull(&mut self, msg: &Message<Payload>, size: u64) {
        if let Message::SequencePaxos(PaxosMessage { msg, .. }) = msg {
            match msg {
                PaxosMsg::PullLog(req) => {
                    self.pull_requests += 1;
                    if !self.asked_from.insert(req.from_idx) {
                        self.resends += 1;
                    }
                }
                PaxosMsg::PullLogReply(reply) if !self.answered_from.insert(reply.from_idx) => {
                    self.duplicate_reply_bytes += size;
                }
                _ => {}
            }
        }
    }

    /// Handles the next event; false if there is none.
    fn step(&mut self) -> bool {
        let Some(Reverse(Scheduled { at, event, .. })) = self.queue.pop() else {
            return false;
        };
        debug_assert!(at >= self.now, "events come in time order");
        self.now = at;
        match event {
            Event::Tick => {
                let pids: Vec<NodeId> = self.nodes.keys().copied().collect();
                for pid in pids {
                    self.with_node(pid, Node::tick);
                }
                self.schedule(at + self.tick_ns(), Event::Tick);
            }
            Event::Arrive {
                msg,
                size,
                last_byte,
            } => {
                let to = msg.get_receiver();
                let take = Self::transfer_ns(size, self.ingress_mbit_s(to));
                let free = self.ingress_free.entry(to).or_insert(0);
                let done = ((*free).max(at) + take).max(last_byte);
                *free = done;
                self.schedule(done, Event::Deliver(msg));
            }
            Event::Deliver(msg) => {
                let to = msg.get_receiver();
                self.with_node(to, |n| n.handle_incoming(msg));
            }
        }
        true
    }

    /// Steps until `done` holds, for at most `max` of virtual time; panics
    /// naming `what` and each server's state if it does not.
    fn run_until(&mut self, what: &str, max: Duration, done: impl Fn(&Self) -> bool) {
        let deadline = self.now + max.as_nanos() as Nanos;
        while !done(self) {
            assert!(
                self.now <= deadline && self.step(),
                "join bench: {what} did not happen within {max:?} of virtual time:\n{}",
                self.describe()
            );
        }
    }

    fn describe(&self) -> String {
        self.nodes
            .iter()
            .map(|(p, n)| {
                format!(
                    "  server {p}: leader {:?}, is_leader {}, decided {}, accepted {}, \
                     migrating {}, reconfigured {}\n",
                    n.get_current_leader(),
                    n.is_leader(),
                    n.get_decided_idx(),
                    n.get_accepted_idx(),
                    n.is_migrating(),
                    n.is_reconfigured().is_some()
                )
            })
            .collect()
    }

    fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .find(|(_, n)| n.is_leader())
            .map(|(&p, _)| p)
    }
}

/// The config of server `pid` in configuration `id` of `members`.
fn config(o: &JoinBenchOptions, id: u32, pid: NodeId, members: &[NodeId]) -> OmniPaxosConfig {
    OmniPaxosConfig {
        configuration_id: id,
        pid,
        peers: members.iter().copied().filter(|&p| p != pid).collect(),
        buffer_size: o.buffer_size,
        // A pull reply carries at most this many entries (and at most
        // `max_message_bytes`, by `size_hint`, which for `Payload` is its
        // in-memory size: the entry bound is the one that applies).
        max_entries_per_message: o.buffer_size,
        batch_size: 1,
        resend_message_tick_timeout: o.resend_message_tick_timeout,
        ..Default::default()
    }
}

/// A storage holding the decided log `0..o.log_entries`, made once and cloned.
fn filled_storage(o: &JoinBenchOptions) -> MemoryStorage<Payload> {
    let mut storage = MemoryStorage::default();
    let entries = (0..o.log_entries)
        .map(|i| Payload::at(i, o.entry_bytes))
        .collect();
    storage
        .append_entries(entries)
        .and_then(|()| storage.set_decided_idx(o.log_entries))
        .expect("memory storage accepts a fresh log");
    storage
}

/// Measures server 4 joining {1, 2, 3} with `sources` sources (1 to 3): the
/// new configuration's leader, then the other old servers. Panics, with
/// each server's state, if the join or the checks after it fail.
pub fn run_join(o: &JoinBenchOptions, sources: usize) -> JoinReport {
    assert!((1..=OLD.len()).contains(&sources), "1 to 3 sources");
    let wall = Instant::now();
    let template = filled_storage(o);
    // The last server takes the template itself: one copy fewer in memory.
    let storages = [template.clone(), template.clone(), template];
    let mut nodes = BTreeMap::new();
    for (pid, storage) in OLD.into_iter().zip(storages) {
        let node = config(o, 1, pid, &OLD)
            .build(storage)
            .expect("a valid config on a consistent storage");
        nodes.insert(pid, node);
    }
    let mut b = Bench::new(o, nodes);
    let second = Duration::from_secs(1);

    // Configuration 1 elects a leader and decides the stop-sign.
    b.run_until("a leader in configuration 1", 5 * second, |b| {
        b.leader().is_some()
    });
    let old_leader = b.leader().expect("elected above");
    let members = [OLD[0], OLD[1], OLD[2], JOINER];
    b.nodes
        .get_mut(&old_leader)
        .expect("the leader is a server")
        .reconfigure(ReconfigurationRequest::with(members.to_vec(), None))
        .expect("the leader takes the stop-sign");
    b.run_until(
        "the stop-sign decided on every old server",
        5 * second,
        |b| b.nodes.values().all(|n| n.is_reconfigured().is_some()),
    );
    let log_len = b.nodes[&old_leader].get_decided_idx() - 1;
    assert_eq!(log_len, o.log_entries, "the stop-sign follows the log");
    for pid in OLD {
        let old = b.nodes.remove(&pid).expect("an old server");
        let node = old
            .into_new_configuration(config(o, 2, pid, &members))
            .expect("every old server is in the new configuration");
        b.nodes.insert(pid, node);
    }
    // The new configuration's leader, elected by the three old servers (a
    // majority of four), is the first source.
    b.run_until("a leader in configuration 2", 5 * second, |b| {
        b.leader().is_some()
    });
    let leader = b.leader().expect("elected above");
    let mut source_ids = vec![leader];
    source_ids.extend(OLD.iter().copied().filter(|&p| p != leader));
    source_ids.truncate(sources);

    // The join, counted from the joiner's first message.
    let joiner = config(o, 2, JOINER, &members)
        .build_joining(
            MemoryStorage::default(),
            Migration {
                log_len,
                sources: source_ids,
            },
        )
        .expect("a valid joining config");
    b.nodes.insert(JOINER, joiner);
    b.counting = true;
    b.leader_timed = Some(leader);
    let start = b.now;
    b.with_node(JOINER, |_| {});
    // At 1 Mbit/s a GiB takes about three hours; allow ten times what the
    // leader's link needs to send the whole log alone, plus slack.
    let wire = Bench::transfer_ns(o.log_bytes(), o.mbit_s.min(b.ingress_mbit_s(JOINER)));
    let max_join = Duration::from_nanos(10 * wire) + 10 * second;
    b.run_until("server 4 holding the pulled log", max_join, |b| {
        !b.nodes[&JOINER].is_migrating()
    });
    b.counting = false;
    let join_time_virtual = Duration::from_nanos(b.now - start);
    check_same_log(&b, leader, log_len);

    // The new configuration decides a fresh entry with server 4 in it.
    let fresh = Payload::at(u64::MAX, 16);
    let at = b.leader().unwrap_or(leader);
    b.nodes
        .get_mut(&at)
        .expect("the leader is a server")
        .append(fresh.clone())
        .expect("the leader takes a fresh entry");
    b.run_until(
        "a fresh entry decided on all four servers",
        10 * second,
        |b| b.nodes.values().all(|n| n.get_decided_idx() > log_len),
    );
    assert_eq!(
        b.nodes[&JOINER].read(log_len),
        Some(LogEntry::Decided(fresh)),
        "server 4 decided the fresh entry after the pulled log"
    );

    let stat = |p: NodeId| b.stats.get(&p);
    JoinReport {
        sources,
        leader,
        log_entries: log_len,
        join_time_virtual,
        bytes_sent: b
            .stats
            .iter()
            .map(|(&p, s)| (p, s.bytes_sent))
            .filter(|&(_, bytes)| bytes > 0)
            .collect(),
        messages: b.stats.values().map(|s| s.messages_sent).sum(),
        leader_cpu: stat(leader).map_or(Duration::ZERO, |s| s.cpu),
        joiner_cpu: stat(JOINER).map_or(Duration::ZERO, |s| s.cpu),
        leader_oncpu: stat(leader).and_then(|s| s.oncpu).map(Duration::from_nanos),
        joiner_oncpu: stat(JOINER).and_then(|s| s.oncpu).map(Duration::from_nanos),
        pull_requests: b.pull_requests,
        resends: b.resends,
        duplicate_reply_bytes: b.duplicate_reply_bytes,
        wall: wall.elapsed(),
    }
}

/// Server 4 holds the leader's log: the same decided index, and the same
/// entries at the ends and at 64 places spread over the log, 256 entries
/// each.
fn check_same_log(b: &Bench<'_>, leader: NodeId, log_len: u64) {
    let (joiner, leader_node) = (&b.nodes[&JOINER], &b.nodes[&leader]);
    assert_eq!(
        joiner.get_decided_idx(),
        log_len,
        "server 4 decided the pulled log"
    );
    assert!(
        leader_node.get_decided_idx() >= log_len,
        "the leader decided the old log"
    );
    let run = 256.min(log_len);
    let mut starts: Vec<u64> = (0..64).map(|k| k * (log_len / 64)).collect();
    starts.push(log_len - run);
    for from in starts {
        let to = (from + run).min(log_len);
        let mine = joiner.read_entries(from..to);
        assert!(
            mine.is_some() && mine == leader_node.read_entries(from..to),
            "server 4's entries {from}..{to} differ from the leader's"
        );
        if let Some(LogEntry::Decided(Payload(bytes))) = mine.and_then(|v| v.into_iter().next()) {
            assert_eq!(bytes[..8], from.to_le_bytes(), "entry {from} in its place");
        }
    }
}
