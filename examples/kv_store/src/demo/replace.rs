//! `kv_store demo --replace`: the demo's three servers and clients, and,
//! while the clients write, a fourth server started with `--join` that
//! replaces one of the three (`POST /members`). It prints how long writes
//! paused, how long the change took until the new configuration took
//! writes, and reads every acknowledged write back through the new server.

use super::{
    DemoError, DemoOptions, ELECTION_WAIT, Latency, Printer, Workload, client_loop, load_lines,
    lock, ms, progress,
};
use crate::{
    api::MembersChange,
    client::KvClient,
    cluster::{ClusterOptions, ProcessCluster},
};
use indicatif::{ProgressBar, ProgressStyle};
use omnipaxos::util::NodeId;
use std::{
    fmt::Write as _,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// The id of the server that joins.
const NEW_ID: NodeId = 4;
/// How long the new configuration may take to take a write through the new
/// server (it must pull the log first).
const ACCEPT_WAIT: Duration = Duration::from_secs(30);

/// What a successful `demo --replace` measured.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplaceReport {
    /// The server that was replaced.
    pub replaced: NodeId,
    /// The server that replaced it.
    pub joined: NodeId,
    /// The longest time without an acknowledged write, from the last write
    /// acknowledged before the `POST /members` to the end of the workload.
    pub write_gap: Duration,
    /// From sending the `POST /members` to its answer (the new configuration
    /// has a leader).
    pub change_answered: Duration,
    /// From sending the `POST /members` to the first write acknowledged
    /// through the new server (so the new configuration takes writes and
    /// the new server holds the log).
    pub accepting: Duration,
    /// How the replaced server exited (0: it retired as it should).
    pub replaced_exit: String,
    /// Successful operations per second over the whole workload.
    pub throughput: f64,
    /// How long the workload ran.
    pub duration: Duration,
    /// Acknowledged writes.
    pub writes: Latency,
    /// Successful linearizable reads.
    pub reads: Latency,
    /// Requests that failed and were retried (mostly around the change).
    pub retries: u64,
    /// Acknowledged writes read back through the new server at the end.
    pub verified: usize,
    /// Concurrent clients.
    pub clients: usize,
}

/// Runs `demo --replace`, printing as it goes. The cluster is cleaned up
/// when this returns or when the future is dropped.
pub async fn run_replace_demo(opts: &DemoOptions) -> Result<ReplaceReport, DemoError> {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner:.green} {elapsed_precise} {msg}")
            .expect("the progress template is valid"),
    );
    let out = Printer::Bar(bar.clone());
    let result = run(opts, &out).await;
    bar.finish_and_clear();
    result
}

async fn run(opts: &DemoOptions, out: &Printer) -> Result<ReplaceReport, DemoError> {
    out.line(format!(
        "kv_store demo --replace: 3 servers as child processes on 127.0.0.1, {} storage, {} concurrent clients; \
         server {NEW_ID} will join and replace one of them",
        if opts.memory { "in-memory" } else { "persistent" },
        opts.clients
    ));
    let mut cluster_opts = ClusterOptions::new(&opts.exe);
    cluster_opts.memory = opts.memory;
    cluster_opts.server_args.clone_from(&opts.server_args);
    if !opts
        .server_args
        .iter()
        .any(|a| a.starts_with("--retire-grace-ms"))
    {
        cluster_opts.server_args.push(format!(
            "--retire-grace-ms={}",
            opts.retire_grace.as_millis()
        ));
    }
    cluster_opts.preferred_ports = Some((8000, 7000));
    let started = Instant::now();
    let mut cluster = ProcessCluster::start(cluster_opts).await?;
    for id in cluster.ids() {
        out.line(format!(
            "  server {id}: http://{}  (peers on {})",
            cluster.http_addr(id).expect("a cluster member"),
            cluster.protocol_addr(id).expect("a cluster member"),
        ));
    }
    let leader = cluster.wait_for_leader(ELECTION_WAIT).await?;
    out.line(format!(
        "server {leader} leads ({} after the processes were started)",
        ms(started.elapsed())
    ));
    let old = cluster.ids();
    let w = Arc::new(Workload {
        targets: RwLock::new(clients_of(&cluster, &old)?),
        stop: AtomicBool::new(false),
        ops: AtomicU64::new(0),
        retries: AtomicU64::new(0),
        write_latencies: Mutex::default(),
        read_latencies: Mutex::default(),
        last_write_ack: Mutex::default(),
        kill_at: Mutex::default(),
        first_ack_after_kill: Mutex::default(),
        stale_reads: Mutex::default(),
        ack_times: Some(Mutex::default()),
    });
    let t0 = Instant::now();
    let clients: Vec<_> = (0..opts.clients)
        .map(|i| tokio::spawn(client_loop(Arc::clone(&w), i)))
        .collect();
    let ticker = tokio::spawn(progress(out.clone(), Arc::clone(&w), t0));
    out.line("workload: each client puts fresh keys and reads its own back (linearizable GETs), any server");
    tokio::time::sleep(opts.phase).await;

    // Replace the follower with the highest id (the leader stays; a leader
    // can be replaced too, it just adds an election).
    let leader = cluster.wait_for_leader(ELECTION_WAIT).await?;
    let replaced = *old
        .iter()
        .rev()
        .find(|&&id| id != leader)
        .expect("three servers have a follower");
    cluster.join(NEW_ID, &old).await?;
    let new_addr = cluster.protocol_addr(NEW_ID).expect("it just joined");
    out.line(format!(
        "server {NEW_ID} started with --join {}: it learnt the cluster and answers 503 joining",
        old.iter()
            .map(|&id| format!("http://{}", cluster.http_addr(id).expect("a member")))
            .collect::<Vec<_>>()
            .join(",")
    ));
    let change = MembersChange::Replace {
        old: replaced,
        id: NEW_ID,
        addr: new_addr,
    };
    let via = cluster.client(leader)?.with_timeout(ACCEPT_WAIT);
    cluster.expect_exit(replaced);
    let post_at = Instant::now();
    let last_ack_before = lock(&w.last_write_ack).unwrap_or(post_at);
    out.line(format!(
        "POST /members to server {leader}: replace {replaced} by {NEW_ID}={new_addr}"
    ));
    let answer = via.change_members(&change).await?;
    let change_answered = post_at.elapsed();
    out.line(format!(
        "the change is done: configuration {} with servers {:?}, answered {} after the POST",
        answer.configuration_id,
        answer.members.iter().map(|m| m.id).collect::<Vec<_>>(),
        ms(change_answered)
    ));
    let new_members: Vec<NodeId> = answer.members.iter().map(|m| m.id).collect();
    w.set_targets(clients_of(&cluster, &new_members)?);

    // The new configuration takes writes once a write through the new
    // server is acknowledged: it has a leader and the new server the log.
    let newcomer = cluster.client(NEW_ID)?.with_timeout(Duration::from_secs(2));
    let deadline = post_at + ACCEPT_WAIT;
    let accepting = loop {
        match newcomer.put("replace-probe", "1").await {
            Ok(_) => break post_at.elapsed(),
            Err(e) if Instant::now() >= deadline => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    };
    out.line(format!(
        "server {NEW_ID} took a write {} after the POST: the new configuration accepts writes",
        ms(accepting)
    ));

    tokio::time::sleep(opts.phase).await;
    w.stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for c in clients {
        acked.push(c.await.unwrap_or_default());
    }
    let duration = t0.elapsed();
    ticker.abort();
    out.progress("");

    let exit = cluster
        .wait_exit(replaced, opts.retire_grace + ACCEPT_WAIT)
        .await?;
    if !exit.success() {
        return Err(DemoError::NotRetired {
            id: replaced,
            status: exit.to_string(),
            log: cluster.log_tail(replaced, 20),
        });
    }
    out.line(format!(
        "server {replaced} retired by itself ({exit}) after serving the new server's pulls"
    ));
    let stale = std::mem::take(&mut *lock(&w.stale_reads));
    if let Some(first) = stale.first() {
        return Err(DemoError::StaleRead(format!(
            "{first} (and {} more)",
            stale.len() - 1
        )));
    }
    let write_gap = longest_gap(
        last_ack_before,
        lock(w.ack_times.as_ref().expect("asked for"))
            .iter()
            .copied()
            .filter(|&t| t >= last_ack_before),
    );
    let mut demo = super::Demo { out, cluster };
    let verified = demo.verify(NEW_ID, &acked).await?;
    let writes = Latency::of(std::mem::take(&mut *lock(&w.write_latencies)));
    let reads = Latency::of(std::mem::take(&mut *lock(&w.read_latencies)));
    let ops = writes.count + reads.count;
    Ok(ReplaceReport {
        replaced,
        joined: NEW_ID,
        write_gap,
        change_answered,
        accepting,
        replaced_exit: exit.to_string(),
        throughput: ops as f64 / duration.as_secs_f64(),
        duration,
        writes,
        reads,
        retries: w.retries.load(Ordering::Relaxed),
        verified,
        clients: opts.clients,
    })
}

fn clients_of(cluster: &ProcessCluster, ids: &[NodeId]) -> Result<Vec<KvClient>, DemoError> {
    Ok(ids
        .iter()
        .map(|&id| cluster.client(id))
        .collect::<Result<_, _>>()?)
}

/// The longest time between two consecutive instants, starting at `from`.
fn longest_gap(from: Instant, times: impl Iterator<Item = Instant>) -> Duration {
    let mut last = from;
    let mut longest = Duration::ZERO;
    for t in times {
        longest = longest.max(t.saturating_duration_since(last));
        last = last.max(t);
    }
    longest
}

impl ReplaceReport {
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
            "  replacement  server {} replaced by server {}: POST answered in {}, new configuration took a write through server {} {} after the POST; server {} exited with {}",
            self.replaced,
            self.joined,
            ms(self.change_answered),
            self.joined,
            ms(self.accepting),
            self.replaced,
            self.replaced_exit
        );
        let _ = writeln!(
            s,
            "  write gap    {} at most without an acknowledged write, from the last ack before the POST on",
            ms(self.write_gap)
        );
        let _ = write!(
            s,
            "  durability   {} acknowledged writes read back through server {}, none lost",
            self.verified, self.joined
        );
        s
    }
}
