//! The `server` subcommand: one replica of the store, as a process.
//!
//! ```text
//!  HTTP clients ──▶ http.rs ──append / linearizable_read──▶ OmniPaxosNode ◀──TCP──▶ peers
//!                     ▲                                         │ decided entries
//!                     └──── results, applied index ◀── replica.rs (applier) ◀┘
//! ```
//!
//! A write becomes a [`KVCommand`] with a fresh id and is
//! appended on this node (which forwards it to the leader). Once the node
//! reports its log index, the handler waits for the applier to pass that
//! index and answers with what applying it did. A linearizable read asks
//! the node for a read point and waits for the applier to reach it.
//!
//! `GET /metrics` reads what the node, the transport and the applier count
//! (see `metrics.rs`); the storage is wrapped so that the time of each of its
//! writes is measured inside the node (`timed_storage.rs`).

mod http;
mod identity;
mod metrics;
mod replica;
mod timed_storage;

use crate::store::{KVCommand, SessionId};
use metrics::Recorders;
use omnipaxos::{errors::StorageError, util::NodeId};
use omnipaxos_runtime::{
    NodeConfig, OmniPaxosHandle, OmniPaxosNode, RuntimeError,
    net::{NetConfig, NetError, Transport},
};
use omnipaxos_storage::{
    memory_storage::MemoryStorage,
    persistent_storage::{PersistentStorage, PersistentStorageConfig},
};
use replica::Replica;
use std::{
    collections::BTreeMap,
    future::Future,
    hash::{BuildHasher, RandomState},
    io,
    net::SocketAddr,
    path::PathBuf,
    sync::Arc,
    time::Duration,
};
use timed_storage::TimedStorage;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tracing::{info, warn};

pub use identity::Identity;

/// Where a server keeps its log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageChoice {
    /// On disk, in this data directory, surviving restarts.
    Persistent(PathBuf),
    /// In memory: a restarted server starts empty and catches up from its peers.
    Memory,
}

/// Everything a server needs to run; the CLI's `server` flags.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// This server's id, unique in the cluster and not 0.
    pub id: NodeId,
    /// The cluster's id: peers of another cluster are refused, and so is a
    /// data directory written by another cluster.
    pub cluster_id: u64,
    /// Where to listen for the other servers (the protocol's TCP transport).
    pub listen: SocketAddr,
    /// The other servers and their protocol addresses.
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// Where to serve the HTTP/JSON client API.
    pub http: SocketAddr,
    /// Where the log lives.
    pub storage: StorageChoice,
    /// How often the protocol ticks.
    pub tick_interval: Duration,
    /// Ticks per leader-election round; a dead leader is replaced after one
    /// to two rounds.
    pub election_tick_timeout: u64,
    /// Writes the leader gathers into one accept round (and one disk sync).
    pub batch_size: usize,
    /// The longest a client request waits for the cluster before it fails
    /// with 503.
    pub request_timeout: Duration,
    /// Take a local snapshot (compacting the log) every this many applied
    /// entries; 0 never does.
    pub snapshot_every: u64,
    /// Pre-shared key the servers prove to each other, if any.
    pub psk: Option<Vec<u8>>,
}

impl ServerOptions {
    /// Options with the given identity and addresses and every tuning knob
    /// at its default.
    pub fn new(
        id: NodeId,
        listen: SocketAddr,
        peers: BTreeMap<NodeId, SocketAddr>,
        http: SocketAddr,
        storage: StorageChoice,
    ) -> Self {
        Self {
            id,
            cluster_id: 1,
            listen,
            peers,
            http,
            storage,
            tick_interval: Duration::from_millis(5),
            election_tick_timeout: 20,
            batch_size: 64,
            request_timeout: Duration::from_secs(5),
            snapshot_every: 10_000,
            psk: None,
        }
    }
}

/// Why a server could not start, or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// An option is invalid (the user's to fix).
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// The data directory belongs to another server or cluster, or cannot
    /// be used (the user's to fix).
    #[error("{0}")]
    DataDir(String),
    /// The log storage could not be opened or failed.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// The HTTP address cannot be bound, e.g. because its port is in use.
    #[error("cannot listen for HTTP clients on {addr}: {source}")]
    HttpBind {
        /// The address.
        addr: SocketAddr,
        /// What the operating system said.
        source: io::Error,
    },
    /// The protocol transport could not start, e.g. because its port is in use.
    #[error("protocol transport: {0}")]
    Net(#[from] NetError),
    /// The consensus node failed.
    #[error("node: {0}")]
    Node(#[from] RuntimeError),
    /// The state machine cannot follow the log.
    #[error("applier: {0}")]
    Applier(String),
    /// The HTTP server failed.
    #[error("HTTP server: {0}")]
    Http(io::Error),
}

/// The reconnect backoff cap of the transport. The transport's default (1 s)
/// suits a WAN; on a LAN or loopback a restarted peer should be redialled
/// quickly, since its absence holds up its catch-up.
const RECONNECT_BACKOFF_MAX: Duration = Duration::from_millis(250);

/// How long the HTTP server gets to finish requests in flight at shutdown.
const HTTP_DRAIN: Duration = Duration::from_secs(2);

/// A running server: node, transport, applier and HTTP API.
#[derive(Debug)]
pub struct Server {
    /// The consensus node; shut down last, which closes the storage.
    node: OmniPaxosNode<KVCommand>,
    /// Carries the node's messages to and from the peers.
    transport: Transport,
    /// Where clients connect (the bound address, if port 0 was asked for).
    http_addr: SocketAddr,
    /// Where peers connect.
    protocol_addr: SocketAddr,
    /// Applies decided entries; ends with an error if the log cannot be followed.
    applier: JoinHandle<Result<(), String>>,
    /// The HTTP server task.
    http: JoinHandle<io::Result<()>>,
    /// Tells the HTTP server to stop accepting and drain.
    stop_http: oneshot::Sender<()>,
}

impl Server {
    /// Checks the options and the data directory, binds both addresses,
    /// opens the storage and starts everything.
    pub async fn start(opts: ServerOptions) -> Result<Self, ServerError> {
        validate(&opts)?;
        if let StorageChoice::Persistent(dir) = &opts.storage {
            Identity {
                cluster_id: opts.cluster_id,
                node_id: opts.id,
            }
            .claim(dir)?;
        }
        // Bind both listeners before opening the storage: a port in use is
        // the most common mistake, and it should be reported as such.
        let http_listener =
            TcpListener::bind(opts.http)
                .await
                .map_err(|source| ServerError::HttpBind {
                    addr: opts.http,
                    source,
                })?;
        let http_addr = http_listener
            .local_addr()
            .map_err(|source| ServerError::HttpBind {
                addr: opts.http,
                source,
            })?;
        let mut net_conf =
            NetConfig::new(opts.cluster_id, opts.id, opts.listen, opts.peers.clone());
        net_conf.psk.clone_from(&opts.psk);
        net_conf.reconnect_backoff_max = RECONNECT_BACKOFF_MAX;
        let bound = Transport::bind(net_conf).await?;
        let protocol_addr = bound.local_addr();

        let mut node_conf = NodeConfig::default();
        // The protocol's events (leader changes, syncs, compactions) go into
        // this server's own tracing log, so that one log tells the story.
        node_conf.set_logger(slog::Logger::root(
            tracing_slog::TracingSlogDrain,
            slog::o!(),
        ));
        node_conf.set_pid(opts.id);
        node_conf.set_peers(opts.peers.keys().copied().collect());
        node_conf.set_tick_interval(opts.tick_interval);
        node_conf.set_append_timeout(Some(opts.request_timeout));
        let core = node_conf.omnipaxos_config_mut();
        core.election_tick_timeout = opts.election_tick_timeout;
        core.batch_size = opts.batch_size;
        let recorders = Recorders::new();
        let writes = &recorders.storage_write_duration;
        let OmniPaxosHandle {
            omni_paxos: node,
            seq_paxos_handle,
            ble_handle,
        } = match &opts.storage {
            StorageChoice::Persistent(dir) => {
                let mut conf = PersistentStorageConfig::default();
                conf.set_path(dir.join(identity::LOG_DIR));
                let storage = PersistentStorage::<KVCommand>::open(conf)?;
                let report = storage.open_report();
                if !report.is_clean() {
                    info!(dir = %dir.display(), "opened the log: {report}");
                }
                OmniPaxosNode::try_new(node_conf, TimedStorage::new(storage, writes.clone()))?
            }
            StorageChoice::Memory => {
                let storage = MemoryStorage::<KVCommand>::default();
                OmniPaxosNode::try_new(node_conf, TimedStorage::new(storage, writes.clone()))?
            }
        };
        let transport = match bound.start(node.clone(), seq_paxos_handle, ble_handle) {
            Ok(t) => t,
            Err(e) => {
                node.shutdown().await;
                return Err(e.into());
            }
        };

        let replica = Arc::new(Replica::new(SessionId {
            pid: opts.id,
            nonce: random_nonce(),
        }));
        let applier = tokio::spawn(replica::run_applier(
            node.clone(),
            Arc::clone(&replica),
            opts.snapshot_every,
        ));
        let storage = match opts.storage {
            StorageChoice::Persistent(_) => "persistent",
            StorageChoice::Memory => "memory",
        };
        let registry = metrics::registry(
            &recorders,
            &metrics::Identity {
                pid: opts.id,
                cluster_id: opts.cluster_id,
                storage,
            },
            metrics::Sources {
                node: node.clone(),
                net: transport.stats_reader(),
                replica: Arc::clone(&replica),
            },
        );
        let app = http::router(http::AppState::new(http::Shared {
            node: node.clone(),
            replica,
            cluster_id: opts.cluster_id,
            peers: opts
                .peers
                .iter()
                .map(|(&id, addr)| (id, addr.to_string()))
                .collect(),
            protocol_addr: protocol_addr.to_string(),
            storage,
            request_timeout: opts.request_timeout,
            net: transport.stats_reader(),
            recorders,
            registry,
        }));
        let (stop_http, stopped) = oneshot::channel::<()>();
        let http = tokio::spawn(async move {
            axum::serve(http_listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
        });
        info!(
            pid = opts.id,
            cluster_id = opts.cluster_id,
            %protocol_addr,
            %http_addr,
            storage = ?opts.storage,
            "kv_store server started"
        );
        Ok(Self {
            node,
            transport,
            http_addr,
            protocol_addr,
            applier,
            http,
            stop_http,
        })
    }

    /// Where the HTTP API listens.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Where the protocol transport listens.
    pub fn protocol_addr(&self) -> SocketAddr {
        self.protocol_addr
    }

    /// Runs until `stop` resolves or a part of the server fails, then shuts
    /// down. Returns the failure, if one ended it.
    pub async fn run_until(mut self, stop: impl Future<Output = ()>) -> Result<(), ServerError> {
        let failure = tokio::select! {
            () = stop => None,
            r = &mut self.applier => Some(match r {
                Ok(Ok(())) => ServerError::Applier("the applier stopped".into()),
                Ok(Err(e)) => ServerError::Applier(e),
                Err(e) => ServerError::Applier(format!("the applier panicked: {e}")),
            }),
            r = &mut self.http => Some(match r {
                Ok(Ok(())) => ServerError::Http(io::Error::other("the HTTP server stopped")),
                Ok(Err(e)) => ServerError::Http(e),
                Err(e) => ServerError::Http(io::Error::other(e.to_string())),
            }),
        };
        if let Some(e) = &failure {
            warn!(error = %e, "shutting down after a failure");
        }
        self.shutdown().await;
        failure.map_or(Ok(()), Err)
    }

    /// Stops serving clients, then the transport, then the node (which
    /// closes the storage cleanly).
    pub async fn shutdown(self) {
        let _ = self.stop_http.send(());
        if !self.http.is_finished() {
            let abort = self.http.abort_handle();
            if tokio::time::timeout(HTTP_DRAIN, self.http).await.is_err() {
                abort.abort();
            }
        }
        self.transport.shutdown().await;
        self.node.shutdown().await;
        // The applier ends when the node does; wait so nothing outlives us.
        let _ = self.applier.await;
        info!("kv_store server stopped");
    }
}

fn validate(opts: &ServerOptions) -> Result<(), ServerError> {
    let invalid = |s: String| Err(ServerError::InvalidOption(s));
    if opts.id == 0 {
        return invalid("--id must not be 0".into());
    }
    if opts.peers.contains_key(&opts.id) {
        return invalid(format!(
            "--peers names this server's own id {}; list only the others",
            opts.id
        ));
    }
    if opts.peers.contains_key(&0) {
        return invalid("--peers names id 0; ids start at 1".into());
    }
    if opts.tick_interval.is_zero() {
        return invalid("the tick interval must not be zero".into());
    }
    if opts.election_tick_timeout == 0 {
        return invalid("the election timeout must be at least one tick".into());
    }
    if opts.batch_size == 0 {
        return invalid("--batch-size must be at least 1".into());
    }
    if opts.request_timeout.is_zero() {
        return invalid("the request timeout must not be zero".into());
    }
    Ok(())
}

/// A number that differs between processes, for the session id: std's
/// `RandomState` is seeded from the operating system's randomness.
fn random_nonce() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    RandomState::new().hash_one((nanos, std::process::id()))
}
