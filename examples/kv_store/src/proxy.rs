//! A TCP proxy on loopback for one directed link between two servers, so a
//! test can cut, slow or heal that link without root: server `i` is told
//! that server `j` is at the proxy's address, and the proxy forwards to
//! `j`. The transport sends `i`'s messages to `j` over the connection `i`
//! dials, so cutting the proxy of `(i, j)` stops `i → j` alone: a one-way
//! cut.
//!
//! Cutting closes the link's connections at once and closes every new one
//! as soon as it is accepted; healing lets new ones through (the transport
//! dials again by itself). A delay holds each chunk read from the dialer
//! that long before forwarding it, in order.

use std::{
    io,
    net::{Ipv4Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};

/// The largest chunk forwarded at once.
const CHUNK: usize = 64 << 10;

/// A proxy for one directed link; see the [module docs](self). Dropping it
/// stops it and closes its connections.
#[derive(Debug)]
pub struct LinkProxy {
    addr: SocketAddr,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

#[derive(Debug)]
struct State {
    target: SocketAddr,
    cut: AtomicBool,
    delay_us: AtomicU64,
    /// Bumped on every cut: connections end when it changes.
    cuts: watch::Sender<u64>,
}

impl LinkProxy {
    /// A proxy on a free loopback port forwarding to `target`, passing
    /// everything.
    pub async fn start(target: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            target,
            cut: AtomicBool::new(false),
            delay_us: AtomicU64::new(0),
            cuts: watch::channel(0).0,
        });
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&state)));
        Ok(Self {
            addr,
            state,
            accept,
        })
    }

    /// Where the dialing server is told its peer is.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the link: its connections close, new ones are closed at once.
    pub fn cut(&self) {
        self.state.cut.store(true, Ordering::SeqCst);
        self.state.cuts.send_modify(|n| *n += 1);
    }

    /// Lets new connections through again, with no delay.
    pub fn heal(&self) {
        self.state.delay_us.store(0, Ordering::SeqCst);
        self.state.cut.store(false, Ordering::SeqCst);
    }

    /// Holds every chunk from the dialer `delay` before forwarding it.
    pub fn set_delay(&self, delay: Duration) {
        let us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.state.delay_us.store(us, Ordering::SeqCst);
    }

    /// Whether the link is cut.
    pub fn is_cut(&self) -> bool {
        self.state.cut.load(Ordering::SeqCst)
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    loop {
        let Ok((dialer, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        if state.cut.load(Ordering::SeqCst) {
            drop(dialer);
            continue;
        }
        tokio::spawn(forward(dialer, Arc::clone(&state)));
    }
}

/// Carries one connection until either side closes it or the link is cut.
async fn forward(dialer: TcpStream, state: Arc<State>) {
    let mut cuts = state.cuts.subscribe();
    let Ok(server) = TcpStream::connect(state.target).await else {
        return;
    };
    let _ = dialer.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut from_dialer, mut to_dialer) = dialer.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let upstream = async {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match from_dialer.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let delay = state.delay_us.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(Duration::from_micros(delay)).await;
            }
            if to_server.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let downstream = async {
        let _ = tokio::io::copy(&mut from_server, &mut to_dialer).await;
    };
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
        _ = cuts.changed() => {}
    }
}
