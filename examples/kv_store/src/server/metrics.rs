//! `GET /metrics`: the server's figures in the Prometheus text exposition
//! format (version 0.0.4), through a [`prometheus_client`] registry.
//!
//! Two kinds of figures end up there:
//!
//! - **Recorded as they happen** ([`Recorders`]): the latency histograms of
//!   client writes and linearizable reads (observed by the HTTP handlers) and
//!   of storage writes (observed by [`TimedStorage`](super::timed_storage::TimedStorage)
//!   inside the node).
//! - **Read at scrape time** ([`Sources`], a registry collector): what the
//!   node, the transport and the applier already count. The runtime keeps
//!   them in atomics ([`OmniPaxosNode::metrics`], [`NodeStatus`],
//!   [`NetStats`]), so a scrape copies them instead of the server keeping a
//!   second set of counters in step with the first.
//!
//! Names carry the prefix of what they describe: `omnipaxos_` for the
//! protocol and its runtime (`omnipaxos_net_` for the transport, one series
//! per peer with a `peer` label), `kv_store_` for what this server measures
//! itself. Counters end in `_total`, durations are in seconds.

use super::{members::Directory, replica::Replica};
use crate::{api::Role, store::KVCommand};
use omnipaxos::util::NodeId;
use omnipaxos_runtime::{
    NodeStatus, OmniPaxosNode,
    net::{NetStats, NetStatsReader, PeerStats},
};
use prometheus_client::{
    collector::Collector,
    encoding::{
        DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeMetric, prometheus_text,
    },
    metrics::{counter::ConstCounter, gauge::ConstGauge, histogram::Histogram, info::Info},
    registry::{Registry, Unit},
};
use std::{fmt, sync::Arc};

/// The upper bounds, in seconds, of the latency histograms' buckets: from
/// 100 µs (a write to memory, a read the leader answers at once) to 5 s (the
/// default request timeout), in steps of 1, 2.5 and 5.
pub(crate) const LATENCY_BUCKETS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The `Content-Type` of the answer to `GET /metrics`.
pub(crate) const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// The histograms that parts of the server observe into as things happen.
/// Clones share their values, so each part keeps its own. A request whose
/// client goes away before the answer is not observed: axum drops its
/// handler, and with it the measurement.
#[derive(Clone, Debug)]
pub(crate) struct Recorders {
    /// Seconds from a write request reaching the node to the server having
    /// its answer, whatever the answer.
    pub(crate) write_duration: Histogram,
    /// Seconds a linearizable read waits for its read point to be applied,
    /// whatever the outcome.
    pub(crate) read_duration: Histogram,
    /// Seconds each durable storage write takes.
    pub(crate) storage_write_duration: Histogram,
}

impl Recorders {
    pub(crate) fn new() -> Self {
        Self {
            write_duration: Histogram::new(LATENCY_BUCKETS),
            read_duration: Histogram::new(LATENCY_BUCKETS),
            storage_write_duration: Histogram::new(LATENCY_BUCKETS),
        }
    }
}

/// Where a scrape reads the figures that others count.
#[derive(Debug)]
pub(crate) struct Sources {
    pub(crate) node: OmniPaxosNode<KVCommand>,
    pub(crate) net: NetStatsReader,
    pub(crate) replica: Arc<Replica>,
    pub(crate) directory: Arc<Directory>,
}

/// Server facts that never change while it runs, for the info metric.
#[derive(Debug)]
pub(crate) struct Identity {
    pub(crate) pid: NodeId,
    pub(crate) cluster_id: u64,
    pub(crate) storage: &'static str,
}

/// The registry `GET /metrics` encodes: the recorders, the identity, and a
/// collector over `sources`.
pub(crate) fn registry(recorders: &Recorders, identity: &Identity, sources: Sources) -> Registry {
    let mut registry = Registry::default();
    registry.register(
        "kv_store_server",
        "Always 1; the labels say which server this is and where it keeps its log",
        Info::new(vec![
            ("pid", identity.pid.to_string()),
            ("cluster_id", identity.cluster_id.to_string()),
            ("storage", identity.storage.to_owned()),
        ]),
    );
    // The registry adds `_seconds` to the names and a full stop to the help.
    registry.register_with_unit(
        "kv_store_write_duration",
        "Time from a write request (put, delete, compare-and-swap) reaching the node to the \
         server having its answer, whatever the answer",
        Unit::Seconds,
        recorders.write_duration.clone(),
    );
    registry.register_with_unit(
        "kv_store_read_duration",
        "Time a linearizable read waits for the cluster to confirm its read point and for this \
         server to apply the log up to it, whatever the outcome (stale reads are not counted)",
        Unit::Seconds,
        recorders.read_duration.clone(),
    );
    registry.register_with_unit(
        "kv_store_storage_write_duration",
        "Time each durable write of the protocol's storage takes (a batch is one write)",
        Unit::Seconds,
        recorders.storage_write_duration.clone(),
    );
    registry.register_collector(Box::new(sources));
    registry
}

/// The registry in the Prometheus text format.
pub(crate) fn encode(registry: &Registry) -> Result<String, fmt::Error> {
    // About 10 KiB for three servers; start big enough for most scrapes.
    let mut out = String::with_capacity(16 << 10);
    prometheus_text::encode(&mut out, registry)?;
    Ok(out)
}

impl Collector for Sources {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> fmt::Result {
        let status = self.node.status();
        let m = self.node.metrics();
        encode_role(&mut e, &status)?;
        gauge(
            &mut e,
            "omnipaxos_leader_id",
            "The id of the server this one follows as leader (itself if it leads); 0 while it knows none.",
            status.leader.unwrap_or(0),
        )?;
        gauge(
            &mut e,
            "omnipaxos_leader_ballot_round",
            "The round of the leader's ballot: it rises with every new leadership, from 0 for the first (and 0 while no leader is known).",
            status.leader_ballot.map_or(0, |b| b.n),
        )?;
        gauge(
            &mut e,
            "omnipaxos_configuration_id",
            "The configuration this server runs in.",
            status.configuration_id,
        )?;
        encode_members(&mut e, &status, &self.directory)?;
        gauge(
            &mut e,
            "kv_store_joining",
            "1 while this server is joining its configuration (pulling the log; it answers reads and writes with 503 joining), else 0.",
            u64::from(status.joining),
        )?;
        gauge(
            &mut e,
            "omnipaxos_decided_index",
            "Log entries below this index are decided.",
            status.decided_idx,
        )?;
        gauge(
            &mut e,
            "omnipaxos_accepted_index",
            "The length of this server's log.",
            status.accepted_idx,
        )?;
        gauge(
            &mut e,
            "omnipaxos_compacted_index",
            "Log entries below this index are compacted into a snapshot.",
            status.compacted_idx,
        )?;
        counter(
            &mut e,
            "omnipaxos_leader_changes",
            "New leader ballots this server followed (a re-election of the same server counts).",
            m.leader_changes,
        )?;
        counter(
            &mut e,
            "omnipaxos_elections_started",
            "Leader ballots of this server's own that it adopted, each beginning a prepare phase.",
            m.elections_started,
        )?;
        labelled(
            &mut e,
            "omnipaxos_appends",
            "Appends made on this server, by how they ended for their caller.",
            Kind::Counter,
            "outcome",
            m.appends.iter(),
        )?;
        labelled(
            &mut e,
            "omnipaxos_reads",
            "Linearizable reads made on this server, by how they ended for their caller.",
            Kind::Counter,
            "outcome",
            m.reads.iter(),
        )?;
        counter(
            &mut e,
            "omnipaxos_dropped_messages",
            "Outgoing messages the node dropped because its channel to the transport was full.",
            m.dropped_messages,
        )?;
        encode_net(&mut e, &self.net.stats())?;
        gauge(
            &mut e,
            "kv_store_applied_index",
            "Log entries below this index are applied to this server's key-value map.",
            self.replica.applied_idx(),
        )?;
        gauge(
            &mut e,
            "kv_store_keys",
            "Keys with a value in this server's map.",
            self.replica.state().len() as u64,
        )
    }
}

/// The role as a state set: one series per role, 1 for the current one.
fn encode_role(e: &mut DescriptorEncoder<'_>, status: &NodeStatus) -> fmt::Result {
    let now = Role::of(status.is_leader, status.leader);
    labelled(
        e,
        "omnipaxos_role",
        "1 for the role this server has now (leader, follower or no_leader), 0 for the others.",
        Kind::Gauge,
        "role",
        [Role::Leader, Role::Follower, Role::NoLeader]
            .into_iter()
            .map(|r| (r.as_str(), u64::from(r == now))),
    )
}

/// The members of the configuration this server runs in, one series each,
/// labelled with the member's id and protocol address (empty if unknown):
/// a scrape of any server tells where the whole configuration listens.
fn encode_members(
    e: &mut DescriptorEncoder<'_>,
    status: &NodeStatus,
    directory: &Directory,
) -> fmt::Result {
    let mut m = e.encode_descriptor(
        "kv_store_member",
        "1 for each server of the configuration this server runs in (member: its id, peer_addr: its protocol address as this server knows it).",
        None,
        ConstGauge::new(0u64).metric_type(),
    )?;
    for member in directory.members(status) {
        let labels = [
            ("member", member.id.to_string()),
            ("peer_addr", member.peer_addr.unwrap_or_default()),
        ];
        ConstGauge::new(1u64).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// One per-peer series of the transport: its name, help and kind, and how
/// to read its value from a peer's stats.
struct PeerMetric {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    value: fn(&PeerStats) -> u64,
}

/// Every per-peer series, in the order a scrape shows them.
const PEER_METRICS: [PeerMetric; 11] = [
    PeerMetric {
        name: "omnipaxos_net_peer_connected",
        help: "1 while the outbound link to the peer is up (dialed and handshaken), else 0.",
        kind: Kind::Gauge,
        value: |p| u64::from(p.connected),
    },
    PeerMetric {
        name: "omnipaxos_net_peer_inbound_connected",
        help: "1 while the peer has an inbound link to this server, else 0.",
        kind: Kind::Gauge,
        value: |p| u64::from(p.inbound_connected),
    },
    PeerMetric {
        name: "omnipaxos_net_sent_messages",
        help: "Messages written to the outbound link to the peer.",
        kind: Kind::Counter,
        value: |p| p.sent,
    },
    PeerMetric {
        name: "omnipaxos_net_sent_bytes",
        help: "Bytes written to the outbound link to the peer, frame headers included.",
        kind: Kind::Counter,
        value: |p| p.bytes_sent,
    },
    PeerMetric {
        name: "omnipaxos_net_received_messages",
        help: "Valid messages received from the peer and handed to the node.",
        kind: Kind::Counter,
        value: |p| p.received,
    },
    PeerMetric {
        name: "omnipaxos_net_received_bytes",
        help: "Bytes of frames read from the peer, valid or not, frame headers included.",
        kind: Kind::Counter,
        value: |p| p.bytes_received,
    },
    PeerMetric {
        name: "omnipaxos_net_dropped_messages",
        help: "Messages for the peer dropped because its queue was full or they could not be framed.",
        kind: Kind::Counter,
        value: |p| p.dropped,
    },
    PeerMetric {
        name: "omnipaxos_net_invalid_messages",
        help: "Frames from the peer refused: undecodable, over budget, or speaking for another server.",
        kind: Kind::Counter,
        value: |p| p.invalid,
    },
    PeerMetric {
        name: "omnipaxos_net_reconnects",
        help: "Times the outbound link to the peer came back after being down.",
        kind: Kind::Counter,
        value: |p| p.reconnects,
    },
    PeerMetric {
        name: "omnipaxos_net_throttled",
        help: "Times the inbound link waited before reading the peer's next frame: the peer passed its frames-per-second bound.",
        kind: Kind::Counter,
        value: |p| p.throttled,
    },
    PeerMetric {
        name: "omnipaxos_net_in_flight_bytes",
        help: "Decoded bytes of the peer's messages that the node has not handled yet.",
        kind: Kind::Gauge,
        value: |p| p.in_flight_bytes,
    },
];

/// The transport's counters, one series per peer.
fn encode_net(e: &mut DescriptorEncoder<'_>, net: &NetStats) -> fmt::Result {
    for m in &PEER_METRICS {
        let series = net.peers.iter().map(|(&pid, p)| (pid, (m.value)(p)));
        labelled(e, m.name, m.help, m.kind, "peer", series)?;
    }
    counter(
        e,
        "omnipaxos_net_unknown_receiver_messages",
        "Outgoing messages dropped because their receiver is not a configured peer.",
        net.unknown_receiver,
    )?;
    counter(
        e,
        "omnipaxos_net_rejected_connections",
        "Inbound connections refused or dropped before their handshake completed.",
        net.rejected_connections,
    )?;
    labelled(
        e,
        "omnipaxos_net_refused_connections",
        "Inbound connections refused before their handshake completed, by reason (a TLS \
         certificate untrusted, expired or not the node's, plain TCP to a TLS node, a wrong \
         pre-shared key, another cluster, ...).",
        Kind::Counter,
        "reason",
        net.refused.iter().map(|(r, &n)| (r.label(), n)),
    )
}

/// Whether a labelled series is a counter or a gauge.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Counter,
    Gauge,
}

fn gauge(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: impl EncodeGaugeValue,
) -> fmt::Result {
    let g = ConstGauge::new(value);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

fn counter(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: impl EncodeCounterValue,
) -> fmt::Result {
    let c = ConstCounter::new(value);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

/// One metric with a series per `(label value, value)` pair, all under one
/// HELP and TYPE as the format requires.
fn labelled<L: prometheus_client::encoding::EncodeLabelValue>(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: Kind,
    label: &str,
    series: impl IntoIterator<Item = (L, u64)>,
) -> fmt::Result {
    let metric_type = match kind {
        Kind::Counter => ConstCounter::new(0u64).metric_type(),
        Kind::Gauge => ConstGauge::new(0u64).metric_type(),
    };
    let mut m = e.encode_descriptor(name, help, None, metric_type)?;
    for (value_of_label, value) in series {
        let labels = [(label, value_of_label)];
        let series = m.encode_family(&labels)?;
        match kind {
            Kind::Counter => ConstCounter::new(value).encode(series)?,
            Kind::Gauge => ConstGauge::new(value).encode(series)?,
        }
    }
    Ok(())
}
