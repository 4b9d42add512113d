//! Incoming traffic: the listener, and one task per inbound connection that
//! runs the acceptor's handshake, then reads, checks and delivers messages.

use super::{
    NetConfig, Refusal,
    frame::{DecodeError, Decoded, FRAME_HEADER_BYTES, FrameError, decode, read_frame},
    handshake::{self, HANDSHAKE_TIMEOUT, HandshakeError},
    stats::{Counters, PeerCounters},
    tls::TlsContext,
};
use crate::node::Delivery;
use governor::{
    Quota, RateLimiter,
    clock::{Clock, MonotonicClock},
};
use omnipaxos::{
    messages::{BLEMessage, Message},
    storage::Entry,
    util::NodeId,
};
use serde::de::DeserializeOwned;
use std::{
    collections::HashMap,
    net::IpAddr,
    num::NonZeroU32,
    sync::{Mutex, PoisonError},
};
use std::{
    future::Future,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::Ordering::{Relaxed, Release},
    },
    time::Duration,
};
use tokio::{
    io::AsyncRead,
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, mpsc},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{debug, info, warn};

/// At most this many inbound connections may be in their handshake at once;
/// more are closed at once, so strangers cannot pile up tasks and sockets.
pub(super) const MAX_PENDING_HANDSHAKES: usize = 64;
/// At most this many of them may come from one IP address, so that one host
/// holding connections open without a handshake cannot keep the others
/// out. (Servers behind one address, e.g. on one machine, dial once per
/// peer and link, far fewer.)
pub(super) const MAX_PENDING_HANDSHAKES_PER_ADDRESS: usize = 16;
/// After a failed `accept` (e.g. out of file descriptors) the listener waits
/// this long before accepting again, instead of spinning.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// What every inbound connection task needs; cloned into each.
pub(super) struct Inbound<T: Entry> {
    pub(super) config: Arc<NetConfig>,
    pub(super) counters: Arc<Counters>,
    /// With TLS, every connection starts with a TLS handshake that checks
    /// the dialer's certificate; the transport's handshake runs inside it.
    pub(super) tls: Option<TlsContext>,
    /// Sequence Paxos messages go to the node's delivery channel with their
    /// charge, so that their sender's in-flight budget is released only once
    /// the node has handled them.
    pub(super) sp_in: mpsc::Sender<Delivery<T>>,
    /// Leader election messages take no share of a budget: each is a
    /// fixed-size `BLEMessage` of 72 bytes, and the node's channel for them
    /// holds a bounded number.
    pub(super) ble_in: mpsc::Sender<BLEMessage>,
    pub(super) cancel: CancellationToken,
    pub(super) tracker: TaskTracker,
    pub(super) handshakes: Arc<Semaphore>,
    /// How many of the handshakes in progress come from each IP address.
    pub(super) handshakes_by_address: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// A handshake's share of the bounds: a permit of the total and a count
/// against its address, both given back when dropped.
pub(super) struct HandshakeSlot {
    _permit: OwnedSemaphorePermit,
    by_address: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        let mut map = self
            .by_address
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

impl<T: Entry> Clone for Inbound<T> {
    fn clone(&self) -> Self {
        Self {
            config: Arc::clone(&self.config),
            counters: Arc::clone(&self.counters),
            tls: self.tls.clone(),
            sp_in: self.sp_in.clone(),
            ble_in: self.ble_in.clone(),
            cancel: self.cancel.clone(),
            tracker: self.tracker.clone(),
            handshakes: Arc::clone(&self.handshakes),
            handshakes_by_address: Arc::clone(&self.handshakes_by_address),
        }
    }
}

/// Why an inbound link ended.
#[derive(Debug, thiserror::Error)]
enum ReadEnd {
    #[error("the transport stopped")]
    Stopped,
    #[error("a newer connection from the same peer replaced it")]
    Replaced,
    #[error("the peer was removed or re-pointed to another address")]
    Removed,
    #[error("the peer closed the connection")]
    Closed,
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    #[error("undecodable message: {0}")]
    Undecodable(#[from] DecodeError),
}

impl<T> Inbound<T>
where
    T: Entry + DeserializeOwned + Send + Sync + 'static,
    T::Snapshot: DeserializeOwned + Send,
{
    /// Accepts connections until the transport stops; the listener closes
    /// when this returns.
    pub(super) async fn listen(self, listener: TcpListener) {
        loop {
            let accepted = tokio::select! {
                biased;
                () = self.cancel.cancelled() => return,
                r = listener.accept() => r,
            };
            let (stream, addr) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "accepting a connection failed");
                    tokio::select! {
                        biased;
                        () = self.cancel.cancelled() => return,
                        () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => {}
                    }
                    continue;
                }
            };
            let Some(slot) = self.reserve_handshake(addr) else {
                continue;
            };
            self.tracker.spawn(self.clone().serve(stream, addr, slot));
        }
    }

    /// A place for a handshake from `addr`, or `None` (counted and logged)
    /// if too many are in progress, in all or from its IP address.
    fn reserve_handshake(&self, addr: SocketAddr) -> Option<HandshakeSlot> {
        let Ok(permit) = Arc::clone(&self.handshakes).try_acquire_owned() else {
            self.counters.refuse(Refusal::TooManyHandshakes);
            warn!(%addr, "refused a connection: {MAX_PENDING_HANDSHAKES} handshakes already in progress");
            return None;
        };
        let ip = addr.ip();
        let mut map = self
            .handshakes_by_address
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let n = map.entry(ip).or_insert(0);
        if *n >= MAX_PENDING_HANDSHAKES_PER_ADDRESS {
            drop(map);
            self.counters.refuse(Refusal::TooManyFromAddress);
            warn!(%addr, "refused a connection: {MAX_PENDING_HANDSHAKES_PER_ADDRESS} handshakes from {ip} already in progress");
            return None;
        }
        *n += 1;
        Some(HandshakeSlot {
            _permit: permit,
            by_address: Arc::clone(&self.handshakes_by_address),
            ip,
        })
    }

    /// Runs the handshake on one connection (inside TLS if configured),
    /// then reads it until it ends.
    async fn serve(self, stream: TcpStream, addr: SocketAddr, permit: HandshakeSlot) {
        let _ = stream.set_nodelay(true);
        let is_peer = |p| self.counters.peers.contains(p);
        match &self.tls {
            None => {
                let handshake = async {
                    let mut stream = stream;
                    let pid =
                        handshake::accept(&mut stream, &self.config, is_peer, |_, _| true).await?;
                    Ok((pid, stream))
                };
                if let Some((pid, stream)) = self.admit(addr, permit, handshake).await {
                    self.serve_link(pid, addr, stream).await;
                }
            }
            Some(tls) => {
                let handshake = async {
                    let mut stream = tls.accept(stream).await?;
                    let certified = |s: &_, pid| tls.certifies(s, pid);
                    let pid =
                        handshake::accept(&mut stream, &self.config, is_peer, certified).await?;
                    Ok((pid, stream))
                };
                if let Some((pid, stream)) = self.admit(addr, permit, handshake).await {
                    self.serve_link(pid, addr, stream).await;
                }
            }
        }
    }

    /// Runs `handshake` within the handshake timeout, holding `permit`;
    /// a refused connection is counted and logged, and gives `None`, as
    /// does the transport stopping.
    async fn admit<R>(
        &self,
        addr: SocketAddr,
        permit: HandshakeSlot,
        handshake: impl Future<Output = Result<R, HandshakeError>>,
    ) -> Option<R> {
        let handshake = tokio::select! {
            biased;
            () = self.cancel.cancelled() => return None,
            r = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake) => r,
        };
        drop(permit);
        match handshake {
            Ok(Ok(r)) => Some(r),
            Ok(Err(e)) => {
                let reason = e.refusal();
                self.counters.refuse(reason);
                warn!(%addr, reason = reason.label(), error = %e, "refused an inbound connection");
                None
            }
            Err(_) => {
                self.counters.refuse(Refusal::Timeout);
                warn!(%addr, reason = Refusal::Timeout.label(), "refused an inbound connection: no handshake within {HANDSHAKE_TIMEOUT:?}");
                None
            }
        }
    }

    /// Reads an established link from peer `pid` until it ends.
    async fn serve_link<S: AsyncRead + Unpin>(&self, pid: NodeId, addr: SocketAddr, mut stream: S) {
        // The handshake accepts only peers, and every peer has counters; a
        // peer removed since the handshake has none, or retired ones, and
        // its connection closes.
        let token = self.cancel.child_token();
        let opened = self
            .counters
            .peers
            .counters(pid)
            .and_then(|stats| Some((stats.open_inbound(token.clone())?, stats)));
        let Some((id, stats)) = opened else {
            info!(peer = pid, %addr, "closed a connection from a peer removed during its handshake");
            return;
        };
        info!(peer = pid, %addr, "the peer connected");
        let end = self.read_loop(pid, &mut stream, &stats, &token).await;
        stats.close_inbound(id);
        match end {
            ReadEnd::Stopped => {}
            e @ (ReadEnd::Replaced | ReadEnd::Removed | ReadEnd::Closed) => {
                info!(peer = pid, %addr, reason = %e, "inbound link from the peer ended");
            }
            e @ (ReadEnd::Frame(_) | ReadEnd::Undecodable(_)) => {
                warn!(peer = pid, %addr, error = %e, "dropped the inbound link from the peer");
            }
        }
    }

    /// Reads frames from peer `pid`, delivering each valid message to the
    /// node. Waits while the peer's in-flight budget is used up or the node's
    /// incoming channel is full, which pushes back through TCP to the peer,
    /// whose queue for us then drops.
    async fn read_loop(
        &self,
        pid: NodeId,
        stream: &mut (impl AsyncRead + Unpin),
        stats: &PeerCounters,
        token: &CancellationToken,
    ) -> ReadEnd {
        let mut buf = Vec::new();
        let mut warned = false;
        let frames = RateLimiter::direct(Quota::per_second(
            NonZeroU32::new(self.config.max_frames_per_second_per_peer).unwrap_or(NonZeroU32::MIN),
        ));
        let ended = || {
            if self.cancel.is_cancelled() {
                ReadEnd::Stopped
            } else if stats.is_retired() {
                ReadEnd::Removed
            } else {
                ReadEnd::Replaced
            }
        };
        loop {
            // The peer's frame budget: wait (reading nothing) until the
            // next frame fits it.
            while let Err(not_until) = frames.check() {
                stats.throttled.fetch_add(1, Relaxed);
                let wait = not_until.wait_time_from(MonotonicClock.now());
                tokio::select! {
                    biased;
                    () = token.cancelled() => return ended(),
                    () = tokio::time::sleep(wait) => {}
                }
            }
            let frame = tokio::select! {
                biased;
                () = token.cancelled() => return ended(),
                r = read_frame(stream, self.config.max_frame_bytes, &mut buf) => r,
            };
            match frame {
                Ok(true) => {}
                Ok(false) => return ReadEnd::Closed,
                Err(e) => return e.into(),
            }
            stats
                .bytes_received
                .fetch_add(FRAME_HEADER_BYTES + buf.len() as u64, Relaxed);
            let Decoded {
                value: msg,
                charged,
            } = match decode::<Message<T>>(&buf, self.config.max_decoded_bytes_per_frame) {
                Ok(d) => d,
                Err(e) => {
                    // A peer running our code sends neither an undecodable
                    // frame nor, with our settings, one past its memory
                    // budget: it is hostile, broken or configured otherwise.
                    // As for any frame that breaks the wire format the link
                    // is dropped (the log line says why), and the peer dials
                    // again.
                    stats.invalid.fetch_add(1, Relaxed);
                    return e.into();
                }
            };
            let (from, to) = (msg.get_sender(), msg.get_receiver());
            if from != pid || to != self.config.pid {
                // A peer may speak only for itself and only to us: the
                // handshake proved who it is, not who its messages claim.
                stats.invalid.fetch_add(1, Relaxed);
                if warned {
                    debug!(
                        peer = pid,
                        sender = from,
                        receiver = to,
                        "dropped a message with a foreign sender or receiver"
                    );
                } else {
                    warn!(
                        peer = pid,
                        sender = from,
                        receiver = to,
                        "dropped a message with a foreign sender or receiver"
                    );
                    warned = true;
                }
                continue;
            }
            let delivered = tokio::select! {
                biased;
                () = token.cancelled() => return ended(),
                r = self.deliver(msg, charged, stats) => r,
            };
            if !delivered {
                // The node stopped; the router shuts the transport down.
                return ReadEnd::Stopped;
            }
            stats.received.fetch_add(1, Release);
        }
    }

    /// Hands a message to the node, a Sequence Paxos one once its `charged`
    /// bytes fit into the peer's in-flight budget; `false` if the node has
    /// stopped.
    async fn deliver(&self, msg: Message<T>, charged: usize, stats: &PeerCounters) -> bool {
        match msg {
            Message::BLE(m) => self.ble_in.send(m).await.is_ok(),
            msg => {
                let charge = stats.in_flight.admit(charged).await;
                self.sp_in.send(Delivery { msg, charge }).await.is_ok()
            }
        }
    }
}
