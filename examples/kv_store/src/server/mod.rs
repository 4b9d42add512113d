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
mod https;
mod identity;
mod join;
mod members;
mod metrics;
mod replica;
mod timed_storage;

use crate::store::{KVCommand, SessionId};
use members::Directory;
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
use prometheus_client::metrics::{counter::Counter, family::Family};
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

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use http::fuzzing_router;
pub use https::HttpsConfig;
pub use identity::Identity;
pub use join::JoinError;

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
    /// entries, or every as many as the store holds keys if that is more;
    /// 0 never does.
    pub snapshot_every: u64,
    /// Pre-shared key the servers prove to each other, if any.
    pub psk: Option<Vec<u8>>,
    /// Mutual TLS on the links between servers (the transport's
    /// `NetConfig::tls`), if set: every server of the cluster needs one.
    pub tls: Option<omnipaxos_runtime::net::TlsConfig>,
    /// Serve the client API over HTTPS with this certificate, if set; plain
    /// HTTP otherwise.
    pub https: Option<HttpsConfig>,
    /// The bearer token every client request must carry (`Authorization:
    /// Bearer <token>`), if any; requests without it get 401
    /// `unauthorized`. A joining server sends it to the servers it asks.
    pub client_token: Option<String>,
    /// The HTTP addresses of servers of a running cluster that this server
    /// joins as a new member (`--join`); empty for a server that starts with
    /// `peers` in the first configuration. A joining server learns the
    /// configuration that names it (and its peers) from them, so `peers`
    /// is then unused.
    pub join: Vec<String>,
    /// How long a server that a change of membership left out keeps serving
    /// the new servers' pulls of the log, counted from the change and from
    /// each pull; then it exits.
    pub retire_grace: Duration,
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
            tls: None,
            https: None,
            client_token: None,
            join: Vec::new(),
            retire_grace: DEFAULT_RETIRE_GRACE,
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
    /// A `--join` server could not learn a configuration to join (the
    /// user's to fix).
    #[error("cannot join: {0}")]
    Join(#[from] JoinError),
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

/// The default of [`ServerOptions::retire_grace`] (`--retire-grace-ms`):
/// the runtime's own default.
pub const DEFAULT_RETIRE_GRACE: Duration = Duration::from_secs(10);

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
    /// Applies decided entries; ends with an error if the log cannot be
    /// followed, or when the node retires after a change left it out.
    applier: JoinHandle<Result<replica::Ended, String>>,
    /// The HTTP server task.
    http: JoinHandle<io::Result<()>>,
    /// Tells the HTTP server to stop accepting and drain.
    stop_http: oneshot::Sender<()>,
}

impl Server {
    /// Checks the options and the data directory, binds both addresses,
    /// opens the storage and starts everything.
    ///
    /// A server with [`ServerOptions::join`] serves HTTP at once (every
    /// request gets 503 `joining`), learns the cluster from those servers,
    /// and returns only once a decided configuration names it and its node
    /// has started (it then pulls the log, still answering reads and writes
    /// with `joining`); it fails at once if the cluster cannot be reached,
    /// is another one, or has a member with this server's id.
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
        net_conf.tls.clone_from(&opts.tls);
        net_conf.reconnect_backoff_max = RECONNECT_BACKOFF_MAX;
        let mut bound = Transport::bind(net_conf).await?;
        let protocol_addr = bound.local_addr();

        let state = http::AppState::waiting(
            format!(
                "server {} is joining cluster {}: it waits for a configuration that names it",
                opts.id, opts.cluster_id
            ),
            http::Access::new(opts.client_token.as_deref()),
        );
        let (stop_http, stopped) = oneshot::channel::<()>();
        let app = http::router(state.clone());
        let tls_refused = Family::<Vec<(String, String)>, Counter>::default();
        let http = match &opts.https {
            None => tokio::spawn(async move {
                axum::serve(http_listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await
            }),
            Some(https) => {
                let listener = https::TlsListener::new(http_listener, https, tls_refused.clone())
                    .map_err(|source| ServerError::HttpBind {
                    addr: opts.http,
                    source,
                })?;
                tokio::spawn(async move {
                    axum::serve(listener, app)
                        .with_graceful_shutdown(async move {
                            let _ = stopped.await;
                        })
                        .await
                })
            }
        };

        let mut node_conf = NodeConfig::default();
        // The protocol's events (leader changes, syncs, compactions) go into
        // this server's own tracing log, so that one log tells the story.
        node_conf.set_logger(slog::Logger::root(
            tracing_slog::TracingSlogDrain,
            slog::o!(),
        ));
        node_conf.set_pid(opts.id);
        node_conf.set_tick_interval(opts.tick_interval);
        node_conf.set_append_timeout(Some(opts.request_timeout));
        node_conf.set_retire_grace(opts.retire_grace);
        let (started_with, sources) = if opts.join.is_empty() {
            node_conf.set_peers(opts.peers.keys().copied().collect());
            (opts.peers.clone(), None)
        } else {
            let plan = match join::Joiner::probe(
                &opts.join,
                opts.id,
                opts.cluster_id,
                opts.client_token.as_deref(),
            )
            .await
            {
                Ok(joiner) => joiner.wait_for_plan().await,
                Err(e) => Err(e),
            };
            let plan = match plan {
                Ok(plan) => plan,
                Err(e) => return abandon(stop_http, http, e.into()).await,
            };
            node_conf.omnipaxos_config_mut().configuration_id = plan.configuration_id;
            node_conf.set_peers(
                plan.members
                    .iter()
                    .copied()
                    .filter(|&m| m != opts.id)
                    .collect(),
            );
            bound.peers_mut().clone_from(&plan.addrs);
            (plan.addrs, Some(plan.sources))
        };
        let core = node_conf.omnipaxos_config_mut();
        core.election_tick_timeout = opts.election_tick_timeout;
        core.batch_size = opts.batch_size;
        let recorders = Recorders::new();
        let writes = &recorders.storage_write_duration;
        let started = match &opts.storage {
            StorageChoice::Persistent(dir) => {
                let mut conf = PersistentStorageConfig::default();
                conf.set_path(dir.join(identity::LOG_DIR));
                match PersistentStorage::<KVCommand>::open(conf) {
                    Ok(storage) => {
                        let report = storage.open_report();
                        if !report.is_clean() {
                            info!(dir = %dir.display(), "opened the log: {report}");
                        }
                        start_node(
                            node_conf,
                            TimedStorage::new(storage, writes.clone()),
                            sources,
                        )
                    }
                    Err(e) => Err(e.into()),
                }
            }
            StorageChoice::Memory => {
                let storage = MemoryStorage::<KVCommand>::default();
                start_node(
                    node_conf,
                    TimedStorage::new(storage, writes.clone()),
                    sources,
                )
            }
        };
        let OmniPaxosHandle {
            omni_paxos: node,
            seq_paxos_handle,
            ble_handle,
        } = match started {
            Ok(h) => h,
            Err(e) => return abandon(stop_http, http, e).await,
        };
        let transport = match bound.start(node.clone(), seq_paxos_handle, ble_handle) {
            Ok(t) => t,
            Err(e) => {
                node.shutdown().await;
                return abandon(stop_http, http, e.into()).await;
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
        let directory = Arc::new(Directory::new(opts.id, protocol_addr, started_with));
        let mut registry = metrics::registry(
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
                directory: Arc::clone(&directory),
            },
        );
        registry.register(
            "kv_store_client_requests_refused",
            "Client requests refused for want of the bearer token, by reason: missing, malformed \
             or wrong",
            state.refused_requests(),
        );
        registry.register(
            "kv_store_client_tls_refused",
            "Client connections to the HTTPS port refused before a session, by reason: not_tls \
             (plain HTTP, told so), handshake (failed), handshake_timeout",
            tls_refused,
        );
        state.start(http::Shared {
            node: node.clone(),
            replica,
            cluster_id: opts.cluster_id,
            directory,
            storage,
            request_timeout: opts.request_timeout,
            net: transport.stats_reader(),
            recorders,
            registry,
        });
        info!(
            pid = opts.id,
            cluster_id = opts.cluster_id,
            configuration_id = node.status().configuration_id,
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

    /// Runs until `stop` resolves, a part of the server fails, or a change
    /// of membership left this server out and it has served the new
    /// servers for the retire grace period; then shuts down. Returns the
    /// failure, if one ended it (retiring is not one).
    pub async fn run_until(mut self, stop: impl Future<Output = ()>) -> Result<(), ServerError> {
        let failure = tokio::select! {
            () = stop => None,
            r = &mut self.applier => match r {
                Ok(Ok(replica::Ended::Retired(ss))) => {
                    info!(
                        configuration_id = ss.config_id,
                        members = ?ss.nodes,
                        "this server is not in the new configuration and served its last pull; exiting"
                    );
                    None
                }
                Ok(Ok(replica::Ended::ShutDown)) => {
                    Some(ServerError::Applier("the applier stopped".into()))
                }
                Ok(Err(e)) => Some(ServerError::Applier(e)),
                Err(e) => Some(ServerError::Applier(format!("the applier panicked: {e}"))),
            },
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
        // The applier ends when the node does; wait so nothing outlives us
        // (unless `run_until` already saw it end).
        if !self.applier.is_finished() {
            let _ = self.applier.await;
        }
        info!("kv_store server stopped");
    }
}

/// Stops the HTTP server of a server that could not start, and fails with `e`.
async fn abandon<T>(
    stop_http: oneshot::Sender<()>,
    http: JoinHandle<io::Result<()>>,
    e: ServerError,
) -> Result<T, ServerError> {
    let _ = stop_http.send(());
    let _ = http.await;
    Err(e)
}

/// Starts the node: a server of the first configuration, or with
/// `sources` one that joins a later one.
fn start_node<S>(
    node_conf: NodeConfig,
    storage: S,
    sources: Option<Vec<NodeId>>,
) -> Result<OmniPaxosHandle<KVCommand>, ServerError>
where
    S: omnipaxos::storage::Storage<KVCommand> + Send + 'static,
{
    Ok(match sources {
        None => OmniPaxosNode::try_new(node_conf, storage)?,
        Some(sources) => {
            // `join` reports a bad configuration in the status, not as an
            // error: check it here so it is refused as `try_new` would.
            let handle = OmniPaxosNode::join(node_conf, storage, sources);
            if let Some(e) = handle.omni_paxos.status().stopped {
                return Err(e.into());
            }
            handle
        }
    })
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
