//! `kv_store demo`: a three-server cluster as child processes on loopback,
//! a write/read workload against it, the leader killed with SIGKILL in the
//! middle, the killed server restarted and caught up, and a final check that
//! every acknowledged write is still there.
//!
//! `kv_store demo --replace` (in `replace.rs`) runs the same workload
//! while a fourth server joins with `--join` and replaces one of the three.
//!
//! Waits poll the servers' `/status` with a deadline; the only sleeps are
//! the workload phases themselves ("let the clients run for 3 s").

mod replace;

pub use replace::{ReplaceReport, run_replace_demo};

use crate::{
    client::{ClientError, KvClient},
    cluster::{ClusterError, ClusterOptions, ProcessCluster, agreed_leader},
};
use indicatif::{ProgressBar, ProgressStyle};
use omnipaxos::util::NodeId;
use rand::{Rng as _, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::{
    collections::BTreeMap,
    fmt::Write as _,
    hash::{BuildHasher, RandomState},
    path::PathBuf,
    sync::{
        Arc, Mutex, MutexGuard, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::task::JoinHandle;

/// The knobs of [`run_demo`].
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// The `kv_store` executable the servers run (normally this one).
    pub exe: PathBuf,
    /// Concurrent clients in the workload.
    pub clients: usize,
    /// How long the workload runs before the leader is killed, between the
    /// kill and the restart, and after the restarted server caught up.
    pub phase: Duration,
    /// Servers keep their log in memory instead of on disk.
    pub memory: bool,
    /// Extra flags for every server.
    pub server_args: Vec<String>,
    /// Show the cluster in the terminal dashboard while the demo runs.
    pub ui: bool,
    /// How long a server left out by `--replace` serves pulls before it exits.
    pub retire_grace: Duration,
}

impl DemoOptions {
    /// The defaults, with servers run by `exe`.
    pub fn new(exe: impl Into<PathBuf>) -> Self {
        Self {
            exe: exe.into(),
            clients: 32,
            phase: Duration::from_secs(3),
            memory: false,
            server_args: Vec::new(),
            ui: false,
            retire_grace: Duration::from_secs(2),
        }
    }
}

/// Latency percentiles of one kind of operation.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Latency {
    /// How many operations.
    pub count: usize,
    /// The median.
    pub p50: Duration,
    /// The 99th percentile.
    pub p99: Duration,
}

impl Latency {
    fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        let at = |q: f64| {
            samples
                .get(((samples.len() as f64 * q) as usize).min(samples.len().saturating_sub(1)))
                .copied()
                .unwrap_or_default()
        };
        Self {
            count: samples.len(),
            p50: at(0.50),
            p99: at(0.99),
        }
    }
}

/// What a successful demo measured.
#[derive(Clone, Debug, PartialEq)]
pub struct DemoReport {
    /// The leader that was killed.
    pub killed_leader: NodeId,
    /// The leader after it.
    pub new_leader: NodeId,
    /// From the kill until every surviving server named the new leader.
    pub leader_change: Duration,
    /// From the last write acknowledged before the kill to the first write
    /// acknowledged after it: how long writers saw no progress.
    pub write_gap: Duration,
    /// From the restart until the restarted server had applied everything
    /// decided when it restarted.
    pub catch_up: Duration,
    /// Entries the restarted server had to get from the others (about: what
    /// they had decided when it caught up, less what it had before the kill).
    pub catch_up_entries: u64,
    /// Successful operations per second over the whole workload.
    pub throughput: f64,
    /// How long the workload ran.
    pub duration: Duration,
    /// Acknowledged writes.
    pub writes: Latency,
    /// Successful linearizable reads.
    pub reads: Latency,
    /// Requests that failed and were retried (mostly around the kill).
    pub retries: u64,
    /// Acknowledged writes read back at the end.
    pub verified: usize,
    /// Concurrent clients.
    pub clients: usize,
}

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// Starting, killing or restarting a server failed, or a wait timed out.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// A request the demo needed failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A read returned something other than the last acknowledged write.
    #[error("a read contradicted an acknowledged write: {0}")]
    StaleRead(String),
    /// The terminal dashboard (`--ui`) could not start.
    #[error("cannot show the dashboard: {0}")]
    Ui(String),
    /// A server that a change of membership left out did not exit with 0.
    #[error("server {id} was left out of the configuration but exited with {status}:\n{log}")]
    NotRetired {
        /// The server.
        id: NodeId,
        /// How it exited.
        status: String,
        /// The end of its log.
        log: String,
    },
    /// Acknowledged writes are missing or wrong at the end.
    #[error("{count} acknowledged writes were lost, e.g. {examples}")]
    LostWrites {
        /// How many.
        count: usize,
        /// A few of them.
        examples: String,
    },
}

/// Where the demo says what it does: above the progress bar, plainly when
/// there is no terminal, or into the dashboard's log pane with `--ui`.
#[derive(Clone)]
enum Printer {
    Bar(ProgressBar),
    Ui(slog::Logger),
}

impl Printer {
    fn line(&self, s: impl AsRef<str>) {
        match self {
            Self::Bar(bar) if bar.is_hidden() => println!("{}", s.as_ref()),
            Self::Bar(bar) => bar.println(s.as_ref()),
            Self::Ui(log) => slog::info!(log, "{}", s.as_ref()),
        }
    }

    /// Shows the running figures: the progress bar's message, or (with the
    /// dashboard, whose status line `feed_dashboard` keeps) nothing.
    fn progress(&self, s: impl Into<String>) {
        if let Self::Bar(bar) = self {
            bar.set_message(s.into());
            bar.tick();
        }
    }
}

/// What the clients share: where to send requests and what they measured.
#[derive(Debug)]
struct Workload {
    /// The servers clients may use (a killed one is taken out).
    targets: RwLock<Vec<KvClient>>,
    /// Set when the clients should finish.
    stop: AtomicBool,
    /// Successful operations, for the progress line.
    ops: AtomicU64,
    /// Failed requests, retried.
    retries: AtomicU64,
    /// Latency of every acknowledged write.
    write_latencies: Mutex<Vec<Duration>>,
    /// Latency of every successful read.
    read_latencies: Mutex<Vec<Duration>>,
    /// When the last write was acknowledged.
    last_write_ack: Mutex<Option<Instant>>,
    /// When the kill happened, once it has.
    kill_at: Mutex<Option<Instant>>,
    /// The first acknowledgement of a write sent after the kill.
    first_ack_after_kill: Mutex<Option<Instant>>,
    /// Reads that did not return the acknowledged value: must stay empty.
    stale_reads: Mutex<Vec<String>>,
    /// When each write was acknowledged, in order, if the demo asks for
    /// them (`--replace` measures the longest gap between two).
    ack_times: Option<Mutex<Vec<Instant>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Workload mutexes hold plain data that stays valid if a holder panicked.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Workload {
    fn target(&self, i: usize) -> Option<KvClient> {
        let targets = self.targets.read().unwrap_or_else(|e| e.into_inner());
        (!targets.is_empty()).then(|| targets[i % targets.len()].clone())
    }

    fn set_targets(&self, targets: Vec<KvClient>) {
        *self.targets.write().unwrap_or_else(|e| e.into_inner()) = targets;
    }

    fn write_acked(&self, sent: Instant, latency: Duration) {
        let now = Instant::now();
        lock(&self.write_latencies).push(latency);
        *lock(&self.last_write_ack) = Some(now);
        if let Some(times) = &self.ack_times {
            lock(times).push(now);
        }
        if lock(&self.kill_at).is_some_and(|k| sent >= k) {
            let mut first = lock(&self.first_ack_after_kill);
            if first.is_none_or(|f| now < f) {
                *first = Some(now);
            }
        }
        self.ops.fetch_add(1, Ordering::Relaxed);
    }
}

/// One client: puts fresh keys of its own (`cNN-NNNNNN`), and reads back a
/// random one of them three times in ten, checking the value. A write that
/// fails is retried until it is acknowledged. Returns the acknowledged writes.
async fn client_loop(w: Arc<Workload>, me: usize) -> Vec<(String, String)> {
    let mut rng = ChaCha8Rng::seed_from_u64(RandomState::new().hash_one(me));
    let mut acked: Vec<(String, String)> = Vec::new();
    let mut pending: Option<(String, String)> = None;
    let mut turn = me;
    while !w.stop.load(Ordering::Relaxed) {
        turn += 1;
        let Some(client) = w.target(turn) else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let read = pending.is_none() && !acked.is_empty() && rng.gen_range(0..10) < 3;
        let sent = Instant::now();
        if read {
            let (key, value) = &acked[rng.gen_range(0..acked.len())];
            match client.get(key).await {
                Ok(got) => {
                    if got.as_deref() != Some(value.as_str()) {
                        lock(&w.stale_reads).push(format!(
                            "{} read {key:?} as {got:?}, acknowledged as {value:?}",
                            client.server()
                        ));
                    }
                    lock(&w.read_latencies).push(sent.elapsed());
                    w.ops.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    w.retries.fetch_add(1, Ordering::Relaxed);
                    // A client backs off after a failure rather than hammer
                    // a cluster that is electing a leader.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            continue;
        }
        let (key, value) = pending.get_or_insert_with(|| {
            let n = acked.len();
            (
                format!("c{me:02}-{n:06}"),
                format!("{n}-{:08x}", rng.r#gen::<u32>()),
            )
        });
        match client.put(key, value).await {
            Ok(_) => {
                w.write_acked(sent, sent.elapsed());
                acked.extend(pending.take());
            }
            Err(_) => {
                // The outcome may be unknown; putting the same value again is
                // harmless, so retry until acknowledged.
                w.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    acked
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn ms1(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// The timeouts of the demo's waits.
const ELECTION_WAIT: Duration = Duration::from_secs(15);
const CATCH_UP_WAIT: Duration = Duration::from_secs(30);

/// Runs the demo, printing as it goes. The cluster (processes and
/// directories) is cleaned up when this returns or when the future is dropped.
pub async fn run_demo(opts: &DemoOptions) -> Result<DemoReport, DemoError> {
    if opts.ui {
        // The dashboard owns the terminal: no progress bar, and lines go to
        // its log pane. It is named after server 1 of the demo's cluster.
        let config = omnipaxos_ui::UIAppConfig {
            pid: 1,
            peers: vec![2, 3],
            title: "kv_store demo".to_owned(),
            ..omnipaxos_ui::UIAppConfig::default()
        };
        let mut ui = omnipaxos_ui::OmniPaxosUI::with(config);
        ui.start().map_err(|e| DemoError::Ui(e.to_string()))?;
        let out = Printer::Ui(ui.logger());
        let ui = Arc::new(ui);
        let result = Demo::run(opts, &out, Some(ui.clone())).await;
        if let Ok(mut ui) = Arc::try_unwrap(ui) {
            let _ = ui.stop();
        }
        return result;
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner:.green} {elapsed_precise} {msg}")
            .expect("the progress template is valid"),
    );
    let out = Printer::Bar(bar.clone());
    let result = Demo::run(opts, &out, None).await;
    bar.finish_and_clear();
    result
}

/// Feeds the dashboard the states of the cluster's servers until dropped.
async fn feed_dashboard(ui: Arc<omnipaxos_ui::OmniPaxosUI>, clients: Vec<KvClient>) {
    loop {
        let poll = crate::top::poll(&clients, Duration::from_millis(300)).await;
        ui.tick_cluster(poll.states);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A running demo: where it prints and the cluster it drives.
struct Demo<'a> {
    out: &'a Printer,
    cluster: ProcessCluster,
}

impl<'a> Demo<'a> {
    async fn run(
        opts: &DemoOptions,
        out: &'a Printer,
        ui: Option<Arc<omnipaxos_ui::OmniPaxosUI>>,
    ) -> Result<DemoReport, DemoError> {
        out.line(format!(
            "kv_store demo: 3 servers as child processes on 127.0.0.1, {} storage, {} concurrent clients",
            if opts.memory { "in-memory" } else { "persistent" },
            opts.clients
        ));
        let mut cluster_opts = ClusterOptions::new(&opts.exe);
        cluster_opts.memory = opts.memory;
        cluster_opts.server_args.clone_from(&opts.server_args);
        // The client subcommands default to http://127.0.0.1:8001, so use the
        // same ports as the README's manual cluster when they are free.
        cluster_opts.preferred_ports = Some((8000, 7000));
        let started = Instant::now();
        let cluster = ProcessCluster::start(cluster_opts).await?;
        let mut demo = Demo { out, cluster };
        for id in demo.cluster.ids() {
            out.line(format!(
                "  server {id}: http://{}  (peers on {}, log {})",
                demo.cluster.http_addr(id).expect("a cluster member"),
                demo.cluster.protocol_addr(id).expect("a cluster member"),
                demo.cluster
                    .log_path(id)
                    .expect("a cluster member")
                    .display(),
            ));
        }
        // With `--ui`, a task polls every server's status for the dashboard
        // while the demo runs (it ends with the demo).
        let feeder = match ui {
            Some(ui) => {
                let clients = demo
                    .cluster
                    .ids()
                    .into_iter()
                    .filter_map(|id| demo.cluster.client(id).ok())
                    .collect();
                Some(tokio::spawn(feed_dashboard(ui, clients)))
            }
            None => None,
        };
        let leader = demo.cluster.wait_for_leader(ELECTION_WAIT).await?;
        out.line(format!(
            "server {leader} leads ({} after the processes were started)",
            ms(started.elapsed())
        ));
        let report = demo.workload(opts, leader).await;
        if let Some(feeder) = feeder {
            feeder.abort();
            let _ = feeder.await;
        }
        report
    }

    async fn workload(
        &mut self,
        opts: &DemoOptions,
        first_leader: NodeId,
    ) -> Result<DemoReport, DemoError> {
        let out = self.out;
        let all: Vec<NodeId> = self.cluster.ids();
        let by_id = all
            .iter()
            .map(|&id| Ok((id, self.cluster.client(id)?)))
            .collect::<Result<BTreeMap<NodeId, KvClient>, ClusterError>>()?;
        let clients_of = |ids: &[NodeId]| -> Vec<KvClient> {
            ids.iter().filter_map(|id| by_id.get(id).cloned()).collect()
        };
        let w = Arc::new(Workload {
            targets: RwLock::new(clients_of(&all)),
            stop: AtomicBool::new(false),
            ops: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            write_latencies: Mutex::default(),
            read_latencies: Mutex::default(),
            last_write_ack: Mutex::default(),
            kill_at: Mutex::default(),
            first_ack_after_kill: Mutex::default(),
            stale_reads: Mutex::default(),
            ack_times: None,
        });
        let t0 = Instant::now();
        let clients: Vec<JoinHandle<Vec<(String, String)>>> = (0..opts.clients)
            .map(|i| tokio::spawn(client_loop(Arc::clone(&w), i)))
            .collect();
        let ticker = tokio::spawn(progress(out.clone(), Arc::clone(&w), t0));
        out.line("workload: each client puts fresh keys and reads its own back (linearizable GETs), any server");

        // Phase 1: steady state.
        tokio::time::sleep(opts.phase).await;
        let leader = self
            .cluster
            .wait_for_leader(ELECTION_WAIT)
            .await
            .unwrap_or(first_leader);
        let survivors: Vec<NodeId> = all.iter().copied().filter(|&id| id != leader).collect();
        // What the leader had decided just before it dies: what its restart
        // finds on disk (a little more, as it kept deciding until the kill).
        let had = self
            .cluster
            .status(leader)
            .await
            .map_or(0, |s| if opts.memory { 0 } else { s.decided_idx });
        w.set_targets(clients_of(&survivors));
        let kill_at = Instant::now();
        *lock(&w.kill_at) = Some(kill_at);
        let last_ack_before = lock(&w.last_write_ack).unwrap_or(kill_at);
        self.cluster.kill(leader).await?;
        out.line(format!(
            "SIGKILL -> server {leader}, the leader ({} operations so far)",
            w.ops.load(Ordering::Relaxed)
        ));
        let new_leader = self
            .cluster
            .wait_for("a new leader among the survivors", ELECTION_WAIT, |s| {
                agreed_leader(&survivors, s).filter(|&l| l != leader)
            })
            .await?;
        let leader_change = kill_at.elapsed();
        out.line(format!(
            "server {new_leader} leads now: both survivors named it {} after the kill",
            ms(leader_change)
        ));

        // Phase 2: two servers of three keep serving.
        tokio::time::sleep(opts.phase).await;
        let first_ack_after = *lock(&w.first_ack_after_kill);
        let write_gap = first_ack_after.map_or(Duration::ZERO, |f| f - last_ack_before);
        out.line(format!(
            "writes went on: {} from the last write acknowledged before the kill to the first after it",
            ms(write_gap)
        ));

        // Restart the killed server and watch it catch up.
        let decided = self
            .cluster
            .statuses()
            .await
            .values()
            .map(|s| s.decided_idx)
            .max()
            .unwrap_or(0);
        let restart_at = Instant::now();
        self.cluster.restart(leader).await?;
        out.line(format!(
            "server {leader} restarted {}; the others have decided {decided} entries",
            if opts.memory {
                "with an empty memory".to_owned()
            } else {
                format!("on its data directory (it had decided about {had} before the kill)")
            }
        ));
        let caught = self
            .cluster
            .wait_for("the restarted server to catch up", CATCH_UP_WAIT, |s| {
                s.get(&leader).filter(|s| s.applied_idx >= decided).cloned()
            })
            .await?;
        let catch_up = restart_at.elapsed();
        out.line(format!(
            "server {leader} caught up: applied {} entries {} after the restart ({} of them compacted into a snapshot)",
            caught.applied_idx,
            ms(catch_up),
            caught.compacted_idx
        ));
        w.set_targets(clients_of(&all));

        // Phase 3: all three again.
        tokio::time::sleep(opts.phase).await;
        w.stop.store(true, Ordering::Relaxed);
        let mut acked = Vec::new();
        for c in clients {
            acked.push(c.await.unwrap_or_default());
        }
        let duration = t0.elapsed();
        ticker.abort();
        out.progress("");

        let stale = std::mem::take(&mut *lock(&w.stale_reads));
        if let Some(first) = stale.first() {
            return Err(DemoError::StaleRead(format!(
                "{first} (and {} more)",
                stale.len() - 1
            )));
        }
        let verified = self.verify(leader, &acked).await?;
        let writes = Latency::of(std::mem::take(&mut *lock(&w.write_latencies)));
        let reads = Latency::of(std::mem::take(&mut *lock(&w.read_latencies)));
        let ops = writes.count + reads.count;
        Ok(DemoReport {
            killed_leader: leader,
            new_leader,
            leader_change,
            write_gap,
            catch_up,
            catch_up_entries: caught.applied_idx.saturating_sub(had),
            throughput: ops as f64 / duration.as_secs_f64(),
            duration,
            writes,
            reads,
            retries: w.retries.load(Ordering::Relaxed),
            verified,
            clients: opts.clients,
        })
    }

    /// Reads every acknowledged write back, linearizably, through `via`
    /// (the restarted server, to show it is up to date).
    async fn verify(
        &mut self,
        via: NodeId,
        acked: &[Vec<(String, String)>],
    ) -> Result<usize, DemoError> {
        let client = self.cluster.client(via)?;
        let mut lost = Vec::new();
        let mut verified = 0;
        for (i, writes) in acked.iter().enumerate() {
            let found = client.scan(&format!("c{i:02}-"), 100_000).await?;
            for (key, value) in writes {
                verified += 1;
                if found.items.get(key) != Some(value) {
                    lost.push(format!("{key}={value} read as {:?}", found.items.get(key)));
                }
            }
        }
        if lost.is_empty() {
            self.out.line(format!(
                "read back all {verified} acknowledged writes through server {via} (linearizable scans): none lost"
            ));
            Ok(verified)
        } else {
            Err(DemoError::LostWrites {
                count: lost.len(),
                examples: lost.iter().take(3).cloned().collect::<Vec<_>>().join(", "),
            })
        }
    }
}

/// Updates the progress line five times a second.
async fn progress(out: Printer, w: Arc<Workload>, t0: Instant) {
    let mut last = (Instant::now(), 0u64);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let ops = w.ops.load(Ordering::Relaxed);
        let now = Instant::now();
        let rate = (ops - last.1) as f64 / (now - last.0).as_secs_f64();
        last = (now, ops);
        out.progress(format!(
            "{ops} ops ({rate:.0}/s now, {:.0}/s overall), {} retried",
            ops as f64 / t0.elapsed().as_secs_f64(),
            w.retries.load(Ordering::Relaxed)
        ));
    }
}

/// The first lines of a demo's closing summary: "results", then throughput
/// and latency (`ops` is `(writes, reads)`, `load` is `(clients, retries)`).
fn load_lines(
    s: &mut String,
    throughput: f64,
    ops: (&Latency, &Latency),
    duration: Duration,
    load: (usize, u64),
) {
    let (writes, reads) = ops;
    let _ = writeln!(s, "results");
    let _ = writeln!(
        s,
        "  throughput   {throughput:.0} ops/s ({} writes + {} linearizable reads in {:.1} s, {} clients, {} retried)",
        writes.count,
        reads.count,
        duration.as_secs_f64(),
        load.0,
        load.1
    );
    let _ = writeln!(
        s,
        "  latency      writes p50 {} p99 {}; reads p50 {} p99 {}",
        ms1(writes.p50),
        ms1(writes.p99),
        ms1(reads.p50),
        ms1(reads.p99)
    );
}

impl DemoReport {
    /// The closing summary, as printed by the CLI.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        load_lines(
            &mut s,
            self.throughput,
            (&self.writes, &self.reads),
            self.duration,
            (self.clients, self.retries),
        );
        let _ = writeln!(
            s,
            "  failover     leader {} killed -> server {} elected in {}; writes paused {} (last ack before -> first ack after)",
            self.killed_leader,
            self.new_leader,
            ms(self.leader_change),
            ms(self.write_gap)
        );
        let _ = writeln!(
            s,
            "  catch-up     about {} entries from the others, caught up {} after the restart",
            self.catch_up_entries,
            ms(self.catch_up)
        );
        let _ = write!(
            s,
            "  durability   {} acknowledged writes read back, none lost",
            self.verified
        );
        s
    }
}
