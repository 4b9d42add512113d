//! [`ProcessCluster`]: a cluster of `kv_store server` processes on loopback,
//! each with its own data directory under one temporary directory. The demo
//! and the end-to-end tests drive it; it kills and restarts servers for real
//! (SIGKILL), and everything it started goes away when it is dropped.
//!
//! Servers are children of this process with a piped stdin and
//! `--exit-on-stdin-eof`: if this process dies, however it dies, the pipe
//! closes and they exit. Each runs in its own process group, so a Ctrl-C in
//! the terminal reaches only this process, which then stops them in order.

use crate::{
    api::{MembersChange, StatusResponse},
    client::{ClientError, KvClient},
    proxy::LinkProxy,
};
use omnipaxos::util::NodeId;
use std::{
    collections::BTreeMap,
    fs,
    hash::{BuildHasher, RandomState},
    io::{self, Read, Seek, SeekFrom},
    net::{Ipv4Addr, SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};
use tempfile::TempDir;
use tokio::process::{Child, ChildStdin, Command};

/// How often waits poll the servers' `/status`.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// How a [`ProcessCluster`] is set up.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// The `kv_store` executable to run servers with.
    pub exe: PathBuf,
    /// How many servers, with ids `1..=nodes`.
    pub nodes: usize,
    /// The cluster id passed to every server.
    pub cluster_id: u64,
    /// Run the servers with `--memory` instead of a data directory.
    pub memory: bool,
    /// Extra flags for every `server` command line; `{id}` in one stands
    /// for the server's id (e.g. `--tls-cert=certs/node-{id}.pem`).
    pub server_args: Vec<String>,
    /// The bearer token the servers require (their `--token-file`), for the
    /// cluster's own clients.
    pub token: Option<String>,
    /// Put a [`LinkProxy`] on every directed link between the first
    /// `nodes` servers, so that [`ProcessCluster::link`] can cut or slow
    /// each one. (Servers added later with `join` are reached directly.)
    pub proxied: bool,
    /// Use these HTTP and protocol ports for server `i` (`http + i`,
    /// `protocol + i`) if they are all free; otherwise free ports the
    /// operating system picks.
    pub preferred_ports: Option<(u16, u16)>,
    /// The longest a server may take to answer `/status` after it is started.
    pub start_timeout: Duration,
}

impl ClusterOptions {
    /// Three persistent servers of cluster 1 run by `exe`, on free ports.
    pub fn new(exe: impl Into<PathBuf>) -> Self {
        Self {
            exe: exe.into(),
            nodes: 3,
            cluster_id: 1,
            memory: false,
            server_args: Vec::new(),
            token: None,
            proxied: false,
            preferred_ports: None,
            start_timeout: Duration::from_secs(20),
        }
    }
}

/// Why a cluster operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// Setting up the temporary directory or the ports failed.
    #[error("cannot set up the cluster: {0}")]
    Setup(io::Error),
    /// A server process could not be started.
    #[error("cannot start server {id}: {source}")]
    Spawn {
        /// The server.
        id: NodeId,
        /// What the operating system said.
        source: io::Error,
    },
    /// A server process exited when it should be running.
    #[error("server {id} exited ({status}); the end of its log:\n{log}")]
    Exited {
        /// The server.
        id: NodeId,
        /// How it exited.
        status: String,
        /// The last lines of its output.
        log: String,
    },
    /// Something did not happen in time.
    #[error("timed out after {waited:?} waiting for {what}; last seen: {seen}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// How long.
        waited: Duration,
        /// What the servers last reported.
        seen: String,
    },
    /// A server id that is not in the cluster.
    #[error("no server {0} in the cluster")]
    UnknownNode(NodeId),
}

/// One server of the cluster.
#[derive(Debug)]
struct NodeProcess {
    /// Fixed for the cluster's life, so that peers find a restarted server.
    protocol_addr: SocketAddr,
    /// Fixed too, so that clients find it.
    http_addr: SocketAddr,
    /// Kept across restarts (unused with `--memory`).
    data_dir: PathBuf,
    /// The server's stdout and stderr, appended to across restarts.
    log_path: PathBuf,
    /// `None` while the server is killed.
    child: Option<Child>,
    /// Kept open so that the server keeps running; closing it stops the server.
    stdin: Option<ChildStdin>,
    /// For a server started with `--join`: the HTTP addresses it joins
    /// through. Only its first start joins: a restart names its peers with
    /// `--peers`, as one restarts a server that joined (`--join` refuses an
    /// id that is a member).
    join: Option<Vec<String>>,
    /// Whether the server was started before: a restart, then.
    started: bool,
    /// Whether the server is expected to exit by itself (a change of
    /// membership left it out): its exit is then recorded, not an error.
    retiring: bool,
    /// How it exited, once a retiring server has.
    exited: Option<std::process::ExitStatus>,
}

/// A cluster of server processes; see the [module docs](self).
#[derive(Debug)]
pub struct ProcessCluster {
    /// How servers are started (and restarted).
    opts: ClusterOptions,
    /// Every server, running or killed.
    nodes: BTreeMap<NodeId, NodeProcess>,
    /// The connection pool every client of this cluster shares.
    client: KvClient,
    /// With `proxied`, the proxy of each directed link `(from, to)`.
    links: BTreeMap<(NodeId, NodeId), LinkProxy>,
    /// Dropped last: the data directories and logs.
    dir: TempDir,
}

/// Set (to anything) in the environment, a cluster leaves its directory of
/// data and server logs behind when dropped, and prints where it is.
pub const KEEP_DIR_VAR: &str = "KV_CLUSTER_KEEP_DIR";

impl ProcessCluster {
    /// Starts every server and waits until each answers `/status`.
    pub async fn start(opts: ClusterOptions) -> Result<Self, ClusterError> {
        let mut dir = tempfile::Builder::new()
            .prefix("kv_store-cluster-")
            .tempdir()
            .map_err(ClusterError::Setup)?;
        if std::env::var_os(KEEP_DIR_VAR).is_some() {
            // For a post-mortem: the data directories and whole logs stay.
            dir.disable_cleanup(true);
            eprintln!("{KEEP_DIR_VAR} is set: keeping {}", dir.path().display());
        }
        let n = opts.nodes;
        let (http, protocol) = pick_ports(n, opts.preferred_ports).map_err(ClusterError::Setup)?;
        let mut nodes = BTreeMap::new();
        for i in 0..n {
            let id = i as NodeId + 1;
            nodes.insert(
                id,
                NodeProcess {
                    protocol_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, protocol[i])),
                    http_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, http[i])),
                    data_dir: dir.path().join(format!("n{id}")),
                    log_path: dir.path().join(format!("n{id}.log")),
                    child: None,
                    stdin: None,
                    join: None,
                    started: false,
                    retiring: false,
                    exited: None,
                },
            );
        }
        let client = KvClient::new(&nodes[&1].http_addr.to_string())
            .map_err(|e| ClusterError::Setup(io::Error::other(e.to_string())))?
            .with_timeout(Duration::from_secs(2))
            .with_token(opts.token.as_deref());
        let mut links = BTreeMap::new();
        if opts.proxied {
            for &from in nodes.keys() {
                for (&to, node) in &nodes {
                    if from != to {
                        let proxy = LinkProxy::start(node.protocol_addr)
                            .await
                            .map_err(ClusterError::Setup)?;
                        links.insert((from, to), proxy);
                    }
                }
            }
        }
        let mut cluster = Self {
            opts,
            nodes,
            client,
            links,
            dir,
        };
        let ids: Vec<NodeId> = cluster.nodes.keys().copied().collect();
        for &id in &ids {
            cluster.spawn(id)?;
        }
        for &id in &ids {
            cluster.wait_answering(id).await?;
        }
        Ok(cluster)
    }

    /// The temporary directory holding the data directories and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Every server's id.
    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    /// The servers that are running (not killed).
    pub fn running(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.child.is_some())
            .map(|(&id, _)| id)
            .collect()
    }

    /// Whether server `id` is running.
    pub fn is_running(&self, id: NodeId) -> bool {
        self.nodes.get(&id).is_some_and(|n| n.child.is_some())
    }

    /// Where server `id` serves HTTP.
    pub fn http_addr(&self, id: NodeId) -> Option<SocketAddr> {
        self.nodes.get(&id).map(|n| n.http_addr)
    }

    /// Where server `id` listens for its peers.
    pub fn protocol_addr(&self, id: NodeId) -> Option<SocketAddr> {
        self.nodes.get(&id).map(|n| n.protocol_addr)
    }

    /// The log file of server `id` (its stdout and stderr, across restarts).
    pub fn log_path(&self, id: NodeId) -> Option<&Path> {
        self.nodes.get(&id).map(|n| n.log_path.as_path())
    }

    /// A client of server `id`, sharing the cluster's connection pool.
    pub fn client(&self, id: NodeId) -> Result<KvClient, ClusterError> {
        let node = self.nodes.get(&id).ok_or(ClusterError::UnknownNode(id))?;
        self.client
            .for_server(&node.http_addr.to_string())
            .map_err(|e| ClusterError::Setup(io::Error::other(e.to_string())))
    }

    /// The `/status` of server `id`.
    pub async fn status(&self, id: NodeId) -> Result<StatusResponse, ClientError> {
        let node = self
            .nodes
            .get(&id)
            .expect("status is asked only of servers of the cluster");
        self.client
            .for_server(&node.http_addr.to_string())?
            .status()
            .await
    }

    /// The `/status` of every running server that answers.
    pub async fn statuses(&self) -> BTreeMap<NodeId, StatusResponse> {
        // Three to five servers on loopback: asking one after another costs
        // a round trip each, which keeps this simple and ordered.
        let mut out = BTreeMap::new();
        for id in self.running() {
            if let Ok(s) = self.status(id).await {
                out.insert(id, s);
            }
        }
        out
    }

    /// Polls the running servers' `/status` until `pred` returns something,
    /// for at most `timeout`. Fails early if a server exited.
    pub async fn wait_for<R>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&BTreeMap<NodeId, StatusResponse>) -> Option<R>,
    ) -> Result<R, ClusterError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_running()?;
            let statuses = self.statuses().await;
            if let Some(r) = pred(&statuses) {
                return Ok(r);
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::Timeout {
                    what: what.to_owned(),
                    waited: timeout,
                    seen: describe(&statuses),
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Waits until every running server answers and all name the same
    /// running leader, which says it leads. Returns the leader.
    pub async fn wait_for_leader(&mut self, timeout: Duration) -> Result<NodeId, ClusterError> {
        let running = self.running();
        self.wait_for("a leader all running servers agree on", timeout, |s| {
            agreed_leader(&running, s)
        })
        .await
    }

    /// The proxy of the directed link `from → to`, if the cluster is
    /// `proxied` and both are among its first servers.
    pub fn link(&self, from: NodeId, to: NodeId) -> Option<&LinkProxy> {
        self.links.get(&(from, to))
    }

    /// Heals every proxied link.
    pub fn heal_links(&self) {
        for proxy in self.links.values() {
            proxy.heal();
        }
    }

    /// Stops server `id` with SIGSTOP: it neither runs nor answers, but
    /// keeps its sockets, as a long pause (GC, swap, a stuck disk) would.
    pub fn pause(&self, id: NodeId) -> Result<(), ClusterError> {
        self.signal(id, "-STOP")
    }

    /// Lets a paused server run again (SIGCONT).
    pub fn resume(&self, id: NodeId) -> Result<(), ClusterError> {
        self.signal(id, "-CONT")
    }

    fn signal(&self, id: NodeId, signal: &str) -> Result<(), ClusterError> {
        let node = self.nodes.get(&id).ok_or(ClusterError::UnknownNode(id))?;
        let Some(pid) = node.child.as_ref().and_then(Child::id) else {
            return Ok(());
        };
        let status = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .map_err(|source| ClusterError::Spawn { id, source })?;
        if status.success() {
            Ok(())
        } else {
            Err(ClusterError::Spawn {
                id,
                source: io::Error::other(format!("kill {signal} {pid}: {status}")),
            })
        }
    }

    /// Kills server `id` with SIGKILL, as a crash would, and reaps it.
    pub async fn kill(&mut self, id: NodeId) -> Result<(), ClusterError> {
        let node = self
            .nodes
            .get_mut(&id)
            .ok_or(ClusterError::UnknownNode(id))?;
        node.stdin = None;
        if let Some(mut child) = node.child.take() {
            // `kill` sends SIGKILL on Unix and waits for the exit.
            let _ = child.kill().await;
        }
        Ok(())
    }

    /// Starts server `id` again on its data directory and ports, and waits
    /// until it answers `/status`. Its `--peers` are every other server not
    /// left out by a change (see [`expect_exit`](Self::expect_exit)): a
    /// server that joined with `--join` restarts with `--peers` too, as the
    /// user guide says to restart one.
    pub async fn restart(&mut self, id: NodeId) -> Result<(), ClusterError> {
        if self.is_running(id) {
            return Ok(());
        }
        self.spawn(id)?;
        self.wait_answering(id).await
    }

    /// Starts server `id`, new to the cluster, with `--join` and the HTTP
    /// addresses of the servers `via`, on free ports; waits until its HTTP
    /// API answers (with 503 `joining` until a change names it). Propose
    /// the change with [`protocol_addr`](Self::protocol_addr) of `id`.
    pub async fn join(&mut self, id: NodeId, via: &[NodeId]) -> Result<(), ClusterError> {
        if self.nodes.contains_key(&id) {
            return Err(ClusterError::Setup(io::Error::other(format!(
                "server {id} is already in the cluster"
            ))));
        }
        let urls = via
            .iter()
            .map(|v| {
                self.http_addr(*v)
                    .map(|a| format!("http://{a}"))
                    .ok_or(ClusterError::UnknownNode(*v))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // The ports are free when picked but not held (the server binds
        // them), so another process may take one first: then the server
        // exits at once saying it cannot listen, and gets other ports.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (http, protocol) = pick_ports(1, None).map_err(ClusterError::Setup)?;
            self.nodes.insert(
                id,
                NodeProcess {
                    protocol_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, protocol[0])),
                    http_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, http[0])),
                    data_dir: self.dir.path().join(format!("n{id}")),
                    log_path: self.dir.path().join(format!("n{id}.log")),
                    child: None,
                    stdin: None,
                    join: Some(urls.clone()),
                    started: false,
                    retiring: false,
                    exited: None,
                },
            );
            self.spawn(id)?;
            match self.wait_http(id).await {
                Err(ClusterError::Exited { log, .. })
                    if attempt < 3 && log.contains("cannot listen") =>
                {
                    let _ = fs::remove_dir_all(self.dir.path().join(format!("n{id}")));
                }
                r => return r,
            }
        }
    }

    /// The change that replaces member `old` by server `new` (started with
    /// [`join`](Self::join)), naming `new` at its protocol address: the body
    /// of a `POST /members`.
    pub fn replace(&self, old: NodeId, new: NodeId) -> Result<MembersChange, ClusterError> {
        Ok(MembersChange::Replace {
            old,
            id: new,
            addr: self
                .protocol_addr(new)
                .ok_or(ClusterError::UnknownNode(new))?,
        })
    }

    /// Waits until server `id` answers HTTP, with 503 `joining` or otherwise.
    async fn wait_http(&mut self, id: NodeId) -> Result<(), ClusterError> {
        let deadline = Instant::now() + self.opts.start_timeout;
        loop {
            self.check_running()?;
            match self.status(id).await {
                Ok(_) | Err(ClientError::Api { .. }) => return Ok(()),
                Err(_) if Instant::now() < deadline => tokio::time::sleep(POLL_INTERVAL).await,
                Err(_) => {
                    return Err(ClusterError::Timeout {
                        what: format!("server {id} to answer HTTP"),
                        waited: self.opts.start_timeout,
                        seen: self.log_tail(id, 20),
                    });
                }
            }
        }
    }

    /// Says that server `id` will exit by itself (a change of membership
    /// left it out): from now on its exit is not an error; wait for it
    /// with [`wait_exit`](Self::wait_exit).
    pub fn expect_exit(&mut self, id: NodeId) {
        if let Some(n) = self.nodes.get_mut(&id) {
            n.retiring = true;
        }
    }

    /// Waits, for at most `timeout`, until server `id` (see
    /// [`expect_exit`](Self::expect_exit)) has exited, and returns how.
    pub async fn wait_exit(
        &mut self,
        id: NodeId,
        timeout: Duration,
    ) -> Result<std::process::ExitStatus, ClusterError> {
        self.expect_exit(id);
        let deadline = Instant::now() + timeout;
        loop {
            self.check_running()?;
            let node = self.nodes.get(&id).ok_or(ClusterError::UnknownNode(id))?;
            if let Some(status) = node.exited {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::Timeout {
                    what: format!("server {id} to exit"),
                    waited: timeout,
                    seen: self.log_tail(id, 20),
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Fails if a server that should be running has exited.
    pub fn check_running(&mut self) -> Result<(), ClusterError> {
        for (&id, node) in &mut self.nodes {
            if let Some(child) = &mut node.child
                && let Ok(Some(status)) = child.try_wait()
            {
                node.child = None;
                node.stdin = None;
                if node.retiring {
                    node.exited = Some(status);
                    continue;
                }
                return Err(ClusterError::Exited {
                    id,
                    status: status.to_string(),
                    log: tail(&node.log_path, 30),
                });
            }
        }
        Ok(())
    }

    /// The last `lines` lines of server `id`'s log.
    pub fn log_tail(&self, id: NodeId, lines: usize) -> String {
        self.nodes
            .get(&id)
            .map(|n| tail(&n.log_path, lines))
            .unwrap_or_default()
    }

    /// Kills every server and removes the temporary directory.
    pub async fn shutdown(mut self) {
        for id in self.ids() {
            let _ = self.kill(id).await;
        }
    }

    fn spawn(&mut self, id: NodeId) -> Result<(), ClusterError> {
        let peers: Vec<String> = self
            .nodes
            .iter()
            // A server that a change left out is no peer of anyone's.
            .filter(|&(&p, n)| p != id && !n.retiring)
            .map(|(&p, n)| {
                let addr = self
                    .links
                    .get(&(id, p))
                    .map_or(n.protocol_addr, LinkProxy::addr);
                format!("{p}={addr}")
            })
            .collect();
        let node = self
            .nodes
            .get_mut(&id)
            .ok_or(ClusterError::UnknownNode(id))?;
        let spawn_err = |source| ClusterError::Spawn { id, source };
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log_path)
            .map_err(spawn_err)?;
        let log_err = log.try_clone().map_err(spawn_err)?;
        let mut cmd = Command::new(&self.opts.exe);
        cmd.arg("server")
            .args(["--id", &id.to_string()])
            .args(["--cluster-id", &self.opts.cluster_id.to_string()])
            .args(["--listen", &node.protocol_addr.to_string()])
            .args(["--http", &node.http_addr.to_string()])
            .arg("--exit-on-stdin-eof");
        match &node.join {
            Some(urls) if !node.started => cmd.args(["--join", &urls.join(",")]),
            _ => cmd.args(["--peers", &peers.join(",")]),
        };
        node.started = true;
        if self.opts.memory {
            cmd.arg("--memory");
        } else {
            cmd.arg("--data-dir").arg(&node.data_dir);
        }
        let id_text = id.to_string();
        cmd.args(
            self.opts
                .server_args
                .iter()
                .map(|a| a.replace("{id}", &id_text)),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .kill_on_drop(true)
        .process_group(0);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        let mut child = cmd.spawn().map_err(spawn_err)?;
        node.stdin = child.stdin.take();
        node.child = Some(child);
        Ok(())
    }

    async fn wait_answering(&mut self, id: NodeId) -> Result<(), ClusterError> {
        let deadline = Instant::now() + self.opts.start_timeout;
        loop {
            self.check_running()?;
            if self.status(id).await.is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::Timeout {
                    what: format!("server {id} to answer /status"),
                    waited: self.opts.start_timeout,
                    seen: self.log_tail(id, 20),
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        // `kill_on_drop` sends SIGKILL to each child as it is dropped, before
        // the temporary directory is removed.
        for node in self.nodes.values_mut() {
            if let Some(child) = &mut node.child {
                let _ = child.start_kill();
            }
        }
    }
}

/// The leader every running server agrees on, if they all answered, agree,
/// and the leader itself says it leads.
pub fn agreed_leader(
    running: &[NodeId],
    statuses: &BTreeMap<NodeId, StatusResponse>,
) -> Option<NodeId> {
    let mut leader = None;
    for id in running {
        let s = statuses.get(id)?;
        match (leader, s.leader) {
            (_, None) => return None,
            (None, Some(l)) => leader = Some(l),
            (Some(a), Some(b)) if a != b => return None,
            _ => {}
        }
    }
    let leader = leader?;
    (statuses.get(&leader)?.role == crate::api::Role::Leader).then_some(leader)
}

/// Whether one of the servers `ids` shows that the change to configuration
/// `configuration_id` is decided: it moved into that configuration (or a
/// later one), or it was left out and shows the change as decided. One
/// server that shows it is enough: a decided change happens, whatever fails
/// next.
pub fn configuration_decided(
    ids: &[NodeId],
    statuses: &BTreeMap<NodeId, StatusResponse>,
    configuration_id: u32,
) -> bool {
    ids.iter().filter_map(|id| statuses.get(id)).any(|st| {
        st.configuration_id >= configuration_id
            || st
                .next_configuration
                .as_ref()
                .is_some_and(|n| n.decided && n.configuration_id >= configuration_id)
    })
}

/// One line per server: what its status said.
fn describe(statuses: &BTreeMap<NodeId, StatusResponse>) -> String {
    if statuses.is_empty() {
        return "no server answered".to_owned();
    }
    statuses
        .iter()
        .map(|(id, s)| {
            format!(
                "n{id}: {:?} leader {:?} decided {} applied {}",
                s.role, s.leader, s.decided_idx, s.applied_idx
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `n` HTTP ports and `n` protocol ports: the preferred ones if all are
/// free, otherwise free ones below Linux's ephemeral range (32768 and up), so
/// that while a server is down no outgoing connection can take its port and
/// keep it from restarting. All listeners are held until every port is
/// chosen, so no port is picked twice.
fn pick_ports(n: usize, preferred: Option<(u16, u16)>) -> io::Result<(Vec<u16>, Vec<u16>)> {
    let bind = |p: u16| TcpListener::bind((Ipv4Addr::LOCALHOST, p));
    if let Some((http, protocol)) = preferred {
        let wanted: Vec<u16> = (1..=n as u16)
            .map(|i| http + i)
            .chain((1..=n as u16).map(|i| protocol + i))
            .collect();
        // Distinct fixed ports: each can be probed and released on its own.
        if wanted.iter().all(|&p| bind(p).is_ok()) {
            return Ok((wanted[..n].to_vec(), wanted[n..].to_vec()));
        }
    }
    let mut held = Vec::with_capacity(2 * n);
    // Start at a point that differs between processes, so that clusters
    // started at the same time (parallel tests) rarely probe the same ports.
    let mut candidate = 20_000 + (RandomState::new().hash_one(std::process::id()) % 12_000) as u16;
    for _ in 0..2_000 {
        if held.len() == 2 * n {
            break;
        }
        candidate = if candidate >= 32_000 {
            20_000
        } else {
            candidate + 1
        };
        if let Ok(l) = bind(candidate) {
            held.push(l);
        }
    }
    while held.len() < 2 * n {
        held.push(bind(0)?);
    }
    let ports = held
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<io::Result<Vec<_>>>()?;
    Ok((ports[..n].to_vec(), ports[n..].to_vec()))
}

/// The last `lines` lines of a file (its last 64 KiB at most).
fn tail(path: &Path, lines: usize) -> String {
    let Ok(mut f) = fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut s = String::new();
    let _ = f.read_to_string(&mut s);
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
