//! Outgoing traffic: the router that sorts the node's messages into per-peer
//! queues, and one task per peer that dials it, keeps the link up and writes
//! the queues to it.

use super::{
    NetConfig,
    frame::encode_frame,
    handshake::{self, HANDSHAKE_TIMEOUT, HandshakeError},
    stats::{Counters, PeerCounters},
    tls::TlsContext,
};
use crate::OmniPaxosNode;
use omnipaxos::{
    messages::{BLEMessage, Message},
    storage::Entry,
    util::NodeId,
};
use rand::{RngCore, rngs::OsRng};
use serde::Serialize;
use std::{
    collections::BTreeMap,
    io,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::Ordering::{Relaxed, Release},
    },
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
    sync::mpsc::{self, error::TrySendError},
};
use tokio_util::{
    sync::{CancellationToken, DropGuard},
    task::TaskTracker,
};
use tracing::{debug, info, warn};

/// At most this many messages go into one write, so a long queue is sent in
/// large writes without one batch growing without bound.
const MAX_BATCH_MESSAGES: usize = 256;
/// A batch is written once it holds this many bytes.
const MAX_BATCH_BYTES: usize = 256 * 1024;

/// The router's end of one peer: its two queues and the dialer behind them.
struct Route<T: Entry> {
    ble: mpsc::Sender<BLEMessage>,
    sp: mpsc::Sender<Message<T>>,
    /// The membership of the peer this route serves (see
    /// [`Member::counters`](super::peers::Member::counters)).
    counters: Arc<PeerCounters>,
    /// Ends the peer's dialer when the route is dropped: the peer was
    /// removed or re-pointed. The queued messages go with the dialer.
    _stop: DropGuard,
}

/// Reads the node's two outgoing channels and puts each message in the queue
/// of its receiver. Never waits for a peer: a full queue drops the message.
///
/// It owns the peers' dialers: when the peer set changes it starts one for
/// each new peer and stops those of removed or re-pointed ones, so that
/// routing a message reads only the router's own map.
pub(super) struct Router<T: Entry> {
    sp_out: mpsc::Receiver<Message<T>>,
    ble_out: mpsc::Receiver<BLEMessage>,
    routes: BTreeMap<NodeId, Route<T>>,
    counters: Arc<Counters>,
    config: Arc<NetConfig>,
    /// Handed to each dialer: with TLS, every link is dialed over it.
    tls: Option<TlsContext>,
    /// Handed to each dialer, to tell the node of a link that came back.
    node: OmniPaxosNode<T>,
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl<T> Router<T>
where
    T: Entry + Serialize + Send + Sync + 'static,
    T::Snapshot: Serialize + Send,
{
    /// A router for the node's outgoing channels; it starts the dialers of
    /// the peers in `counters` when it runs, and spawns them on `tracker`.
    pub(super) fn new(
        (sp_out, ble_out): (mpsc::Receiver<Message<T>>, mpsc::Receiver<BLEMessage>),
        counters: Arc<Counters>,
        (config, tls): (Arc<NetConfig>, Option<TlsContext>),
        node: OmniPaxosNode<T>,
        tracker: TaskTracker,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            sp_out,
            ble_out,
            routes: BTreeMap::new(),
            counters,
            config,
            tls,
            node,
            tracker,
            cancel,
        }
    }

    /// Runs until the transport is shut down or the node stops; in the latter
    /// case it shuts the transport down.
    pub(super) async fn run(mut self) {
        self.reconcile();
        let counters = Arc::clone(&self.counters);
        let (mut sp_open, mut ble_open) = (true, true);
        while sp_open || ble_open {
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => return,
                () = counters.peers.changed() => self.reconcile(),
                m = self.ble_out.recv(), if ble_open => match m {
                    Some(m) => self.route(Message::BLE(m)),
                    None => ble_open = false,
                },
                m = self.sp_out.recv(), if sp_open => match m {
                    Some(m) => self.route(m),
                    None => sp_open = false,
                },
            }
        }
        // Both channels closed: the node has stopped, so there is nothing
        // left to send, and what arrives could not be delivered.
        info!("the node stopped; the transport shuts down");
        self.cancel.cancel();
    }

    /// Brings the routes in line with the peer set: drops the routes (and so
    /// stops the dialers) of peers that are gone or are another membership
    /// now, and starts a route and a dialer for every peer without one.
    fn reconcile(&mut self) {
        let members = self.counters.peers.members();
        self.routes.retain(|pid, route| {
            members
                .get(pid)
                .is_some_and(|m| Arc::ptr_eq(&m.counters, &route.counters))
        });
        for (pid, member) in members {
            if self.routes.contains_key(&pid) {
                continue;
            }
            let (ble_tx, ble_rx) = mpsc::channel(self.config.peer_queue_capacity);
            let (sp_tx, sp_rx) = mpsc::channel(self.config.peer_queue_capacity);
            let stop = self.cancel.child_token();
            let peer = Peer {
                pid,
                addr: member.addr,
                config: Arc::clone(&self.config),
                tls: self.tls.clone(),
                node: self.node.clone(),
                ble: ble_rx,
                sp: sp_rx,
                stats: Arc::clone(&member.counters),
                cancel: stop.clone(),
            };
            self.tracker.spawn(peer.run());
            self.routes.insert(
                pid,
                Route {
                    ble: ble_tx,
                    sp: sp_tx,
                    counters: member.counters,
                    _stop: stop.drop_guard(),
                },
            );
        }
    }

    fn route(&self, m: Message<T>) {
        let to = m.get_receiver();
        let Some(route) = self.routes.get(&to) else {
            self.counters.unknown_receiver.fetch_add(1, Relaxed);
            debug!(
                receiver = to,
                "dropped a message for a node that is not a peer"
            );
            return;
        };
        let full = match m {
            Message::BLE(b) => matches!(route.ble.try_send(b), Err(TrySendError::Full(_))),
            m => matches!(route.sp.try_send(m), Err(TrySendError::Full(_))),
        };
        // A closed queue means its peer task ended, which happens only at
        // shutdown; such a message is not worth counting.
        if full {
            route.counters.dropped.fetch_add(1, Relaxed);
            debug!(peer = to, "dropped a message: the peer's queue is full");
        }
    }
}

/// Why dialing a peer failed.
#[derive(Debug, thiserror::Error)]
enum DialError {
    #[error("cannot connect: {0}")]
    Connect(io::Error),
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    #[error("no connection and handshake within {HANDSHAKE_TIMEOUT:?}")]
    Timeout,
}

/// Why an established outbound link ended.
#[derive(Debug, thiserror::Error)]
enum LinkLost {
    #[error("the peer closed the connection")]
    Closed,
    #[error("the peer sent data on a send-only link")]
    UnexpectedData,
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    #[error("a write did not complete within {WRITE_TIMEOUT:?}: the peer stopped reading")]
    WriteTimeout,
}

/// How long one batch of frames may take to write before the link is
/// dropped and dialed again. A peer whose machine vanished without closing
/// the connection stops acknowledging; without this bound the link would
/// look connected until the operating system gave up on it, minutes later.
/// A live but slow peer is redialed too, which costs only messages the
/// protocol resends.
pub(super) const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// An established outbound link, plain or inside TLS.
enum Link {
    Plain(TcpStream),
    /// Boxed: a TLS stream holds its session's buffers inline.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// How a link ended: stop, or redial.
enum LinkEnd {
    /// The transport is shut down, the node stopped, or the peer was
    /// removed or re-pointed.
    Stopped,
    /// The connection failed; dial again.
    Lost(LinkLost),
}

/// The task that owns the outbound link to one peer.
struct Peer<T: Entry> {
    pid: NodeId,
    addr: SocketAddr,
    config: Arc<NetConfig>,
    tls: Option<TlsContext>,
    node: OmniPaxosNode<T>,
    ble: mpsc::Receiver<BLEMessage>,
    sp: mpsc::Receiver<Message<T>>,
    stats: Arc<PeerCounters>,
    /// Cancelled when the transport stops, or when the router drops the
    /// peer's route.
    cancel: CancellationToken,
}

impl<T> Peer<T>
where
    T: Entry + Serialize + Send + Sync + 'static,
    T::Snapshot: Serialize + Send,
{
    /// Dials, writes until the link fails, and dials again with backoff,
    /// until the transport is shut down, the node stops, or the peer is
    /// removed.
    async fn run(mut self) {
        let (pid, addr) = (self.pid, self.addr);
        let mut backoff = Backoff::new(
            self.config.reconnect_backoff_min,
            self.config.reconnect_backoff_max,
        );
        let mut ever_connected = false;
        // The last dial error, so that a peer that stays down is reported
        // once at warn level, not at every retry.
        let mut last_failure: Option<String> = None;
        loop {
            let dialed = tokio::select! {
                biased;
                () = self.cancel.cancelled() => return,
                r = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.connect()) => r,
            };
            match dialed.unwrap_or(Err(DialError::Timeout)) {
                Ok(stream) => {
                    backoff.reset();
                    last_failure = None;
                    self.stats.connected.store(true, Relaxed);
                    if ever_connected {
                        // The link was down: the protocol may have lost
                        // messages and must resynchronise with the peer.
                        self.stats.reconnects.fetch_add(1, Relaxed);
                        self.node.reconnected(pid);
                        info!(peer = pid, %addr, "the link to the peer is back");
                    } else {
                        info!(peer = pid, %addr, "connected to the peer");
                    }
                    ever_connected = true;
                    let end = match stream {
                        Link::Plain(s) => self.write_loop(s).await,
                        Link::Tls(s) => self.write_loop(*s).await,
                    };
                    self.stats.connected.store(false, Relaxed);
                    match end {
                        LinkEnd::Stopped => return,
                        LinkEnd::Lost(e) => {
                            warn!(peer = pid, %addr, error = %e, "lost the link to the peer; redialing");
                        }
                    }
                }
                Err(e) => {
                    let e = e.to_string();
                    if last_failure.as_ref() == Some(&e) {
                        debug!(peer = pid, %addr, error = %e, "cannot reach the peer");
                    } else {
                        warn!(peer = pid, %addr, error = %e, "cannot reach the peer; retrying with backoff");
                        last_failure = Some(e);
                    }
                }
            }
            let delay = backoff.next_delay();
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Connects, runs the TLS handshake if configured (which checks that
    /// the acceptor's certificate names the peer), then the transport's.
    async fn connect(&self) -> Result<Link, DialError> {
        let mut stream = TcpStream::connect(self.addr)
            .await
            .map_err(DialError::Connect)?;
        // Consensus messages are small and latency-bound; a failure here
        // only costs latency, so it is not worth failing the link for.
        let _ = stream.set_nodelay(true);
        match &self.tls {
            None => {
                handshake::dial(&mut stream, &self.config, self.pid).await?;
                Ok(Link::Plain(stream))
            }
            Some(tls) => {
                let mut stream = tls.connect(stream, self.pid).await?;
                handshake::dial(&mut stream, &self.config, self.pid).await?;
                Ok(Link::Tls(Box::new(stream)))
            }
        }
    }

    /// Writes the queues to an established link, leader election first,
    /// until the link fails or the transport stops.
    async fn write_loop<S: AsyncRead + AsyncWrite + Unpin>(&mut self, stream: S) -> LinkEnd {
        let (mut rd, mut wr) = tokio::io::split(stream);
        // The peer never writes on this link once the handshake is done, so
        // a read completes only when the peer closes it or the connection
        // breaks: that is how a link to a peer that went away is noticed
        // even while there is nothing to send.
        let mut probe = [0u8; 1];
        let mut out = Vec::new();
        loop {
            let first = tokio::select! {
                biased;
                () = self.cancel.cancelled() => return LinkEnd::Stopped,
                r = rd.read(&mut probe) => return LinkEnd::Lost(match r {
                    Ok(0) => LinkLost::Closed,
                    Ok(_) => LinkLost::UnexpectedData,
                    Err(e) => LinkLost::Io(e),
                }),
                m = self.ble.recv() => match m {
                    Some(m) => Message::BLE(m),
                    None => return LinkEnd::Stopped,
                },
                m = self.sp.recv() => match m {
                    Some(m) => m,
                    None => return LinkEnd::Stopped,
                },
            };
            out.clear();
            let mut batched = u64::from(self.encode(&first, &mut out));
            for _ in 1..MAX_BATCH_MESSAGES {
                if out.len() >= MAX_BATCH_BYTES {
                    break;
                }
                let next = match self.ble.try_recv() {
                    Ok(m) => Message::BLE(m),
                    Err(_) => match self.sp.try_recv() {
                        Ok(m) => m,
                        Err(_) => break,
                    },
                };
                batched += u64::from(self.encode(&next, &mut out));
            }
            if out.is_empty() {
                continue;
            }
            let written = tokio::select! {
                biased;
                () = self.cancel.cancelled() => return LinkEnd::Stopped,
                // TLS holds written bytes until flushed; a plain socket's
                // flush does nothing.
                r = tokio::time::timeout(WRITE_TIMEOUT, async {
                    wr.write_all(&out).await?;
                    wr.flush().await
                }) => r,
            };
            match written {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return LinkEnd::Lost(LinkLost::Io(e)),
                Err(_) => return LinkEnd::Lost(LinkLost::WriteTimeout),
            }
            self.stats.bytes_sent.fetch_add(out.len() as u64, Relaxed);
            self.stats.sent.fetch_add(batched, Release);
        }
    }

    /// Appends `m` as a frame to `out`; a message that cannot be a frame is
    /// dropped and counted. Returns whether it was appended.
    fn encode(&self, m: &Message<T>, out: &mut Vec<u8>) -> bool {
        match encode_frame(m, self.config.max_frame_bytes, out) {
            Ok(()) => true,
            Err(e) => {
                self.stats.dropped.fetch_add(1, Relaxed);
                warn!(peer = self.pid, error = %e, "dropped an outgoing message");
                false
            }
        }
    }
}

/// Exponential backoff with jitter between dials of one peer.
#[derive(Debug)]
pub(super) struct Backoff {
    min: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    pub(super) fn new(min: Duration, max: Duration) -> Self {
        debug_assert!(
            !min.is_zero() && min <= max,
            "NetConfig::validate checks the bounds"
        );
        Self {
            min,
            max,
            step: min,
        }
    }

    /// After a successful dial: the next failure waits the minimum again.
    pub(super) fn reset(&mut self) {
        self.step = self.min;
    }

    /// The wait before the next dial: uniform between half the current step
    /// and the step ("equal jitter", so peers that failed together do not
    /// redial in lockstep), after which the step doubles up to the maximum.
    pub(super) fn next_delay(&mut self) -> Duration {
        let step = self.step;
        self.step = step.saturating_mul(2).min(self.max);
        let half = step / 2;
        let span = u64::try_from((step - half).as_nanos()).unwrap_or(u64::MAX);
        let mut bytes = [0u8; 8];
        // Without OS randomness the wait is the full step: still bounded,
        // just not jittered.
        let draw = match OsRng.try_fill_bytes(&mut bytes) {
            Ok(()) => u64::from_le_bytes(bytes),
            Err(_) => u64::MAX,
        };
        half + Duration::from_nanos(span.checked_add(1).map_or(draw, |n| draw % n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_maximum_and_resets() {
        let (min, max) = (Duration::from_millis(20), Duration::from_millis(100));
        let mut b = Backoff::new(min, max);
        for step in [20, 40, 80, 100, 100] {
            let step = Duration::from_millis(step);
            let d = b.next_delay();
            assert!(
                d >= step / 2 && d <= step,
                "{d:?} outside [{:?}, {step:?}]",
                step / 2
            );
        }
        b.reset();
        assert!(b.next_delay() <= min);
    }
}
