//! One replication workload, run the same way on three libraries: our
//! `omnipaxos` (by path), upstream `omnipaxos` 0.2.4 and tikv's `raft` 0.7.
//!
//! # The workload
//!
//! * Three servers of one library live in one thread. Messages go from the
//!   sender's outgoing list straight to the receiver's handler: moved in
//!   memory, never serialised (raft-rs carries its entries' payload as bytes,
//!   so there a `u64` becomes 8 bytes; that is the library's own format).
//! * A leader is elected before the clock starts: the OmniPaxos clusters tick
//!   until one server leads in the accept phase, raft-rs campaigns on server 1.
//! * The timed part is a loop of *rounds*. A round (1) proposes up to `batch`
//!   new entries on the leader, as long as at most `window` proposals are
//!   outstanding (proposed and not yet applied on the leader) and fewer than
//!   `n` have been proposed in all; (2) collects every server's outgoing
//!   messages and hands each to its receiver, once; (3) on every server,
//!   applies what is newly decided (committed). A round that moves no
//!   message ticks every server instead (timers: a partly filled batch, a
//!   heartbeat). The clock stops when all three servers have applied `n`
//!   entries.
//! * An entry is `Value(u64)`, the `i`-th proposal carries `i`. Applying
//!   checks that every server sees exactly `0, 1, 2, ...`: an entry out of
//!   order, a gap or a repeat ends the trial with an error, and the process
//!   exits non-zero.
//! * Both OmniPaxos clusters use their library's default config (batch size
//!   1, so the driver's rounds are the only batching), or both the same
//!   `batch_size` given by `--batch-size` (a leader then writes and sends
//!   a batch when it fills, or at its flush timer); raft-rs uses
//!   `max_size_per_msg` 1 MiB and `max_inflight_msgs` 256 and handles every
//!   `Ready` in full: messages out, entries and hard state into its
//!   `MemStorage`, committed entries applied, `advance`, the light ready's
//!   commit index, messages and committed entries, `advance_apply`.
//! * Nothing is compacted: each library keeps its whole log in its in-memory
//!   storage.
//!
//! # Measuring
//!
//! Each trial runs in a child process of this binary (`compare trial ...`),
//! so its peak resident memory (`VmHWM` of `/proc/self/status` at the end of
//! the trial) belongs to one library alone. The parent runs the libraries
//! alternately, `ours, upstream, raft, ours, ...`, for `--rounds` rounds and
//! prints medians: entries per second, messages sent in the timed part,
//! peak memory, and our throughput as a ratio to each of the others.

use std::{
    collections::BTreeMap,
    process::{Command, ExitCode},
    time::{Duration, Instant},
};

/// The libraries, in the order each round runs them.
const LIBS: [&str; 3] = ["ours", "upstream", "raft"];
/// Rounds in a row without progress before a trial is declared stuck.
const MAX_IDLE_ROUNDS: u64 = 100_000;

/// The workload's size.
#[derive(Clone, Copy, Debug)]
struct Workload {
    /// Entries to decide and apply on every server.
    n: u64,
    /// Proposals made in one round.
    batch: u64,
    /// Most proposals outstanding (proposed, not yet applied on the leader).
    window: u64,
    /// The OmniPaxos libraries' `batch_size` (both default to 1; raft-rs
    /// has no such setting).
    batch_size: usize,
}

/// One library under the workload: three servers with a leader.
trait Cluster: Sized {
    /// Builds the servers and elects a leader (not timed).
    fn elected(w: &Workload) -> Result<Self, String>;
    /// Proposes the entries `first..first + count` on the leader.
    fn propose(&mut self, first: u64, count: u64) -> Result<(), String>;
    /// Hands every outgoing message to its receiver once; returns how many moved.
    fn deliver(&mut self) -> Result<u64, String>;
    /// Applies what is newly decided on every server, checking the order.
    fn apply(&mut self) -> Result<(), String>;
    /// One tick on every server.
    fn tick(&mut self) -> Result<(), String>;
    /// Entries the leader has applied.
    fn leader_applied(&self) -> u64;
    /// Entries applied on the server that is furthest behind.
    fn min_applied(&self) -> u64;
}

/// The result of one trial.
struct Outcome {
    elapsed: Duration,
    messages: u64,
}

fn run<C: Cluster>(w: Workload) -> Result<Outcome, String> {
    let mut cluster = C::elected(&w)?;
    let start = Instant::now();
    let mut proposed = 0u64;
    let mut messages = 0u64;
    let mut idle = 0u64;
    loop {
        let outstanding = proposed - cluster.leader_applied();
        let count = w
            .batch
            .min(w.window.saturating_sub(outstanding))
            .min(w.n - proposed);
        if count > 0 {
            cluster.propose(proposed, count)?;
            proposed += count;
        }
        let moved = cluster.deliver()?;
        messages += moved;
        cluster.apply()?;
        if cluster.min_applied() >= w.n {
            break;
        }
        if moved == 0 {
            cluster.tick()?;
            idle += 1;
            if idle > MAX_IDLE_ROUNDS {
                return Err(format!(
                    "stuck: {proposed} proposed, leader applied {}, slowest server {}",
                    cluster.leader_applied(),
                    cluster.min_applied()
                ));
            }
        } else {
            idle = 0;
        }
    }
    let elapsed = start.elapsed();
    Ok(Outcome { elapsed, messages })
}

/// Checks the applied entry `value` on server `server`, which has applied
/// `*applied` before it.
fn check(server: u64, applied: &mut u64, value: u64) -> Result<(), String> {
    if value != *applied {
        return Err(format!(
            "server {server} applied {value} where {} was due",
            *applied
        ));
    }
    *applied += 1;
    Ok(())
}

/// Our omnipaxos, on our `MemoryStorage`.
mod ours_cluster {
    use super::{Cluster, Workload, check};
    use ours::{
        DecidedRead, OmniPaxos, OmniPaxosConfig,
        messages::Message,
        storage::{Entry, NoSnapshot},
    };
    use ours_storage::memory_storage::MemoryStorage;

    #[derive(Clone, Debug)]
    pub(crate) struct Value(u64);

    impl Entry for Value {
        type Snapshot = NoSnapshot;
    }

    pub(crate) struct Ours {
        nodes: Vec<OmniPaxos<Value, MemoryStorage<Value>>>,
        applied: Vec<u64>,
        leader: usize,
        buf: Vec<Message<Value>>,
    }

    impl Cluster for Ours {
        fn elected(w: &Workload) -> Result<Self, String> {
            let pids = [1u64, 2, 3];
            let mut nodes = Vec::new();
            for pid in pids {
                let config = OmniPaxosConfig {
                    configuration_id: 1,
                    pid,
                    peers: pids.iter().copied().filter(|&p| p != pid).collect(),
                    batch_size: w.batch_size,
                    ..Default::default()
                };
                nodes.push(
                    config
                        .build(MemoryStorage::default())
                        .map_err(|e| e.to_string())?,
                );
            }
            let mut c = Self {
                nodes,
                applied: vec![0; 3],
                leader: 0,
                buf: Vec::new(),
            };
            for _ in 0..10_000 {
                if let Some(i) = c.nodes.iter().position(|n| n.is_leader()) {
                    c.leader = i;
                    return Ok(c);
                }
                c.tick()?;
                while c.deliver()? > 0 {}
            }
            Err("ours: no leader within 10000 ticks".into())
        }

        fn propose(&mut self, first: u64, count: u64) -> Result<(), String> {
            let leader = &mut self.nodes[self.leader];
            for v in first..first + count {
                leader
                    .append(Value(v))
                    .map_err(|e| format!("ours: append refused: {e:?}"))?;
            }
            Ok(())
        }

        fn deliver(&mut self) -> Result<u64, String> {
            for node in &mut self.nodes {
                node.take_outgoing_messages(&mut self.buf);
            }
            let moved = self.buf.len() as u64;
            for msg in self.buf.drain(..) {
                let to = msg.get_receiver();
                self.nodes[(to - 1) as usize].handle_incoming(msg);
            }
            Ok(moved)
        }

        fn apply(&mut self) -> Result<(), String> {
            for (node, applied) in self.nodes.iter().zip(&mut self.applied) {
                let decided = node.get_decided_idx();
                if decided <= *applied {
                    continue;
                }
                let pid = node.get_pid();
                // The entries are lent where the storage holds them: no
                // `LogEntry` is built and nothing is copied.
                let mut failed = None;
                let read = node
                    .read_decided_with(*applied..decided, |idx, Value(v)| {
                        if failed.is_none() && idx != *applied {
                            failed = Some(format!("ours: server {pid} lent {idx} at {applied}"));
                        }
                        if failed.is_none()
                            && let Err(e) = check(pid, applied, *v)
                        {
                            failed = Some(e);
                        }
                    })
                    .map_err(|e| format!("ours: server {pid} cannot read: {e}"))?;
                if let Some(e) = failed {
                    return Err(e);
                }
                if read != DecidedRead::UpTo(decided) || *applied != decided {
                    return Err(format!(
                        "ours: server {pid} read {read:?} of ..{decided}, applied {applied}"
                    ));
                }
            }
            Ok(())
        }

        fn tick(&mut self) -> Result<(), String> {
            for node in &mut self.nodes {
                node.tick();
            }
            Ok(())
        }

        fn leader_applied(&self) -> u64 {
            self.applied[self.leader]
        }

        fn min_applied(&self) -> u64 {
            self.applied.iter().copied().min().unwrap_or(0)
        }
    }
}

/// Upstream omnipaxos 0.2.4, on its `MemoryStorage`.
mod upstream_cluster {
    use super::{Cluster, Workload, check};
    use upstream::{
        ClusterConfig, OmniPaxos, OmniPaxosConfig, ServerConfig,
        messages::Message,
        storage::{Entry, NoSnapshot},
        util::LogEntry,
    };
    use upstream_storage::memory_storage::MemoryStorage;

    #[derive(Clone, Debug)]
    pub(crate) struct Value(u64);

    impl Entry for Value {
        type Snapshot = NoSnapshot;
    }

    pub(crate) struct Upstream {
        nodes: Vec<OmniPaxos<Value, MemoryStorage<Value>>>,
        applied: Vec<u64>,
        leader: usize,
        buf: Vec<Message<Value>>,
    }

    impl Cluster for Upstream {
        fn elected(w: &Workload) -> Result<Self, String> {
            let pids = vec![1u64, 2, 3];
            let mut nodes = Vec::new();
            for &pid in &pids {
                let config = OmniPaxosConfig {
                    cluster_config: ClusterConfig {
                        configuration_id: 1,
                        nodes: pids.clone(),
                        ..Default::default()
                    },
                    server_config: ServerConfig {
                        pid,
                        batch_size: w.batch_size,
                        ..Default::default()
                    },
                };
                nodes.push(
                    config
                        .build(MemoryStorage::default())
                        .map_err(|e| e.to_string())?,
                );
            }
            let mut c = Self {
                nodes,
                applied: vec![0; 3],
                leader: 0,
                buf: Vec::new(),
            };
            for _ in 0..10_000 {
                let leader = c
                    .nodes
                    .iter()
                    .position(|n| n.get_current_leader() == Some((n.get_pid(), true)));
                if let Some(i) = leader {
                    c.leader = i;
                    return Ok(c);
                }
                c.tick()?;
                while c.deliver()? > 0 {}
            }
            Err("upstream: no leader within 10000 ticks".into())
        }

        fn propose(&mut self, first: u64, count: u64) -> Result<(), String> {
            let leader = &mut self.nodes[self.leader];
            for v in first..first + count {
                leader
                    .append(Value(v))
                    .map_err(|e| format!("upstream: append refused: {e:?}"))?;
            }
            Ok(())
        }

        fn deliver(&mut self) -> Result<u64, String> {
            for node in &mut self.nodes {
                node.take_outgoing_messages(&mut self.buf);
            }
            let moved = self.buf.len() as u64;
            for msg in self.buf.drain(..) {
                let to = msg.get_receiver();
                self.nodes[(to - 1) as usize].handle_incoming(msg);
            }
            Ok(moved)
        }

        fn apply(&mut self) -> Result<(), String> {
            for (node, applied) in self.nodes.iter().zip(&mut self.applied) {
                let decided = node.get_decided_idx() as u64;
                if decided <= *applied {
                    continue;
                }
                let pid = node.get_pid();
                let entries = node
                    .read_entries(*applied as usize..decided as usize)
                    .ok_or_else(|| {
                        format!("upstream: server {pid} cannot read {applied}..{decided}")
                    })?;
                if entries.len() as u64 != decided - *applied {
                    return Err(format!("upstream: server {pid} read a short range"));
                }
                for e in entries {
                    match e {
                        LogEntry::Decided(Value(v)) => check(pid, applied, v)?,
                        other => {
                            return Err(format!(
                                "upstream: server {pid} holds {other:?} at {applied}"
                            ));
                        }
                    }
                }
            }
            Ok(())
        }

        fn tick(&mut self) -> Result<(), String> {
            for node in &mut self.nodes {
                node.tick();
            }
            Ok(())
        }

        fn leader_applied(&self) -> u64 {
            self.applied[self.leader]
        }

        fn min_applied(&self) -> u64 {
            self.applied.iter().copied().min().unwrap_or(0)
        }
    }
}

/// tikv's raft-rs 0.7, on its `MemStorage`.
mod raft_cluster {
    use super::{Cluster, Workload, check};
    use raft::{
        Config, RawNode, StateRole,
        eraftpb::{ConfState, Entry, EntryType, Message},
        storage::MemStorage,
    };

    pub(crate) struct Raft {
        nodes: Vec<RawNode<MemStorage>>,
        applied: Vec<u64>,
        /// The leader's index in `nodes` (server 1 campaigns).
        leader: usize,
        buf: Vec<Message>,
    }

    fn raft_err(e: raft::Error) -> String {
        format!("raft: {e}")
    }

    /// Applies committed entries: the leader's empty entry of a new term is
    /// skipped, every other entry must be the next value.
    fn apply_entries(id: u64, applied: &mut u64, entries: Vec<Entry>) -> Result<(), String> {
        for e in entries {
            if e.get_entry_type() != EntryType::EntryNormal {
                return Err(format!(
                    "raft: server {id} committed a {:?}",
                    e.get_entry_type()
                ));
            }
            if e.data.is_empty() {
                continue;
            }
            let bytes: [u8; 8] = e.data[..]
                .try_into()
                .map_err(|_| format!("raft: server {id} committed {} bytes", e.data.len()))?;
            check(id, applied, u64::from_le_bytes(bytes))?;
        }
        Ok(())
    }

    /// Handles one server's `Ready`, if it has one, in full.
    fn handle_ready(
        node: &mut RawNode<MemStorage>,
        applied: &mut u64,
        out: &mut Vec<Message>,
    ) -> Result<(), String> {
        if !node.has_ready() {
            return Ok(());
        }
        let id = node.raft.id;
        let mut ready = node.ready();
        out.extend(ready.take_messages());
        if !ready.snapshot().is_empty() {
            let snap = ready.snapshot().clone();
            node.store().wl().apply_snapshot(snap).map_err(raft_err)?;
        }
        apply_entries(id, applied, ready.take_committed_entries())?;
        if !ready.entries().is_empty() {
            node.store()
                .wl()
                .append(ready.entries())
                .map_err(raft_err)?;
        }
        if let Some(hs) = ready.hs() {
            node.store().wl().set_hardstate(hs.clone());
        }
        out.extend(ready.take_persisted_messages());
        let mut light = node.advance(ready);
        if let Some(commit) = light.commit_index() {
            node.store().wl().mut_hard_state().set_commit(commit);
        }
        out.extend(light.take_messages());
        apply_entries(id, applied, light.take_committed_entries())?;
        node.advance_apply();
        Ok(())
    }

    impl Raft {
        fn ready_all(&mut self) -> Result<(), String> {
            for (node, applied) in self.nodes.iter_mut().zip(&mut self.applied) {
                handle_ready(node, applied, &mut self.buf)?;
            }
            Ok(())
        }
    }

    impl Cluster for Raft {
        fn elected(_: &Workload) -> Result<Self, String> {
            let logger = slog::Logger::root(slog::Discard, slog::o!());
            let mut nodes = Vec::new();
            for id in 1..=3u64 {
                let config = Config {
                    id,
                    election_tick: 10,
                    heartbeat_tick: 3,
                    max_size_per_msg: 1 << 20,
                    max_inflight_msgs: 256,
                    ..Default::default()
                };
                config.validate().map_err(raft_err)?;
                let storage =
                    MemStorage::new_with_conf_state(ConfState::from((vec![1, 2, 3], vec![])));
                nodes.push(RawNode::new(&config, storage, &logger).map_err(raft_err)?);
            }
            let mut c = Self {
                nodes,
                applied: vec![0; 3],
                leader: 0,
                buf: Vec::new(),
            };
            c.nodes[0].campaign().map_err(raft_err)?;
            for _ in 0..10_000 {
                while c.deliver()? > 0 {}
                if c.nodes[0].raft.state == StateRole::Leader {
                    return Ok(c);
                }
                c.tick()?;
            }
            Err("raft: no leader within 10000 ticks".into())
        }

        fn propose(&mut self, first: u64, count: u64) -> Result<(), String> {
            let leader = &mut self.nodes[self.leader];
            for v in first..first + count {
                leader
                    .propose(Vec::new(), v.to_le_bytes().to_vec())
                    .map_err(raft_err)?;
            }
            Ok(())
        }

        fn deliver(&mut self) -> Result<u64, String> {
            // Every Ready first: a proposal or a received message only turns
            // into outgoing messages (and applied entries) through it.
            self.ready_all()?;
            let moved = self.buf.len() as u64;
            let mut msgs = std::mem::take(&mut self.buf);
            for msg in msgs.drain(..) {
                let to = msg.to;
                self.nodes[(to - 1) as usize].step(msg).map_err(raft_err)?;
            }
            self.buf = msgs;
            Ok(moved)
        }

        fn apply(&mut self) -> Result<(), String> {
            // Committed entries are applied in `handle_ready`; a Ready left
            // by the messages just delivered is handled in the next round.
            Ok(())
        }

        fn tick(&mut self) -> Result<(), String> {
            for node in &mut self.nodes {
                node.tick();
            }
            Ok(())
        }

        fn leader_applied(&self) -> u64 {
            self.applied[self.leader]
        }

        fn min_applied(&self) -> u64 {
            self.applied.iter().copied().min().unwrap_or(0)
        }
    }
}

/// Peak resident memory of this process so far, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// `compare trial LIB`: one trial in this process; prints one `result` line.
fn trial(lib: &str, w: Workload) -> Result<(), String> {
    let outcome = match lib {
        "ours" => run::<ours_cluster::Ours>(w)?,
        "upstream" => run::<upstream_cluster::Upstream>(w)?,
        "raft" => run::<raft_cluster::Raft>(w)?,
        other => return Err(format!("unknown library {other}")),
    };
    let secs = outcome.elapsed.as_secs_f64();
    println!(
        "result lib={lib} entries_per_s={:.0} messages={} secs={secs:.6} peak_kib={}",
        w.n as f64 / secs,
        outcome.messages,
        peak_rss_kib()
    );
    Ok(())
}

/// One trial's figures, parsed from a child's `result` line.
#[derive(Clone, Copy, Debug)]
struct Figures {
    entries_per_s: f64,
    messages: f64,
    peak_kib: f64,
}

fn parse_result(line: &str) -> Option<Figures> {
    let rest = line.strip_prefix("result ")?;
    let fields: BTreeMap<&str, &str> = rest.split(' ').filter_map(|f| f.split_once('=')).collect();
    Some(Figures {
        entries_per_s: fields.get("entries_per_s")?.parse().ok()?,
        messages: fields.get("messages")?.parse().ok()?,
        peak_kib: fields.get("peak_kib")?.parse().ok()?,
    })
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

fn run_child(lib: &str, w: Workload) -> Result<Figures, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = Command::new(exe)
        .args(["trial", lib])
        .args(["--n", &w.n.to_string()])
        .args(["--batch", &w.batch.to_string()])
        .args(["--window", &w.window.to_string()])
        .args(["--batch-size", &w.batch_size.to_string()])
        .output()
        .map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "{lib} trial failed ({}): {}{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    stdout
        .lines()
        .find_map(parse_result)
        .ok_or_else(|| format!("{lib} trial printed no result: {stdout}"))
}

/// `compare [--rounds R]`: alternating trials in child processes, then medians.
fn compare(rounds: usize, libs: &[String], w: Workload) -> Result<(), String> {
    println!(
        "workload: 3 servers in one thread, n = {}, batch = {} proposals per round, window = {}, OmniPaxos batch_size {}, {rounds} rounds",
        w.n, w.batch, w.window, w.batch_size
    );
    let mut all: BTreeMap<&str, Vec<Figures>> = BTreeMap::new();
    for round in 1..=rounds {
        for lib in libs {
            let f = run_child(lib, w)?;
            println!(
                "round {round} {lib:>8}: {:>12.0} entries/s {:>9} messages {:>8.1} MiB peak",
                f.entries_per_s,
                f.messages,
                f.peak_kib / 1024.0
            );
            all.entry(lib.as_str()).or_default().push(f);
        }
    }
    println!("medians over {rounds} rounds (batch {}):", w.batch);
    let mut tput = BTreeMap::new();
    for lib in libs {
        let fs = &all[lib.as_str()];
        let eps = median(fs.iter().map(|f| f.entries_per_s).collect());
        let msgs = median(fs.iter().map(|f| f.messages).collect());
        let peak = median(fs.iter().map(|f| f.peak_kib).collect());
        tput.insert(
            lib.as_str(),
            fs.iter().map(|f| f.entries_per_s).collect::<Vec<_>>(),
        );
        println!(
            "  {lib:>8}: {eps:>12.0} entries/s {msgs:>9.0} messages {:>8.1} MiB peak",
            peak / 1024.0
        );
    }
    // Ratios per round (the trials of one round ran back to back), then the median.
    if let Some(ours) = tput.get("ours") {
        for other in ["upstream", "raft"] {
            if let Some(theirs) = tput.get(other) {
                let ratios = ours.iter().zip(theirs).map(|(a, b)| a / b).collect();
                println!("  ours/{other}: {:.2}x", median(ratios));
            }
        }
    }
    Ok(())
}

fn usage() -> String {
    "usage: compare [--rounds R] [--libs ours,upstream,raft] [--n N] [--batch B] [--window W] [--batch-size S]\n       compare trial LIB [--n N] [--batch B] [--window W] [--batch-size S]".into()
}

fn main_inner() -> Result<(), String> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let trial_lib = if args.first().map(String::as_str) == Some("trial") {
        if args.len() < 2 {
            return Err(usage());
        }
        let lib = args.remove(1);
        args.remove(0);
        Some(lib)
    } else {
        None
    };
    let mut w = Workload {
        n: 1_000_000,
        batch: 1_000,
        window: 10_000,
        batch_size: 1,
    };
    let mut rounds = 5usize;
    let mut libs: Vec<String> = LIBS.iter().map(|s| s.to_string()).collect();
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(usage)?;
        let num = || value.replace('_', "").parse::<u64>().map_err(|_| usage());
        match flag.as_str() {
            "--n" => w.n = num()?,
            "--batch" => w.batch = num()?,
            "--window" => w.window = num()?,
            "--batch-size" => w.batch_size = num()? as usize,
            "--rounds" => rounds = num()? as usize,
            "--libs" => libs = value.split(',').map(str::to_string).collect(),
            _ => return Err(usage()),
        }
    }
    if w.batch == 0 || w.window == 0 || w.batch_size == 0 || rounds == 0 {
        return Err(usage());
    }
    match trial_lib {
        Some(lib) => trial(&lib, w),
        None => compare(rounds, &libs, w),
    }
}

fn main() -> ExitCode {
    match main_inner() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Workload = Workload {
        n: 20_000,
        batch: 1_000,
        window: 10_000,
        batch_size: 1,
    };

    #[test]
    fn check_rejects_a_gap_and_a_repeat() {
        let mut applied = 0;
        check(1, &mut applied, 0).unwrap();
        check(1, &mut applied, 1).unwrap();
        assert!(check(1, &mut applied, 3).is_err(), "a gap");
        assert!(check(1, &mut applied, 1).is_err(), "a repeat");
        assert_eq!(applied, 2);
    }

    #[test]
    fn each_library_applies_the_whole_log_in_order() {
        for batch in [1, 1_000, 10_000] {
            for batch_size in [1, 1_000] {
                let w = Workload {
                    batch,
                    batch_size,
                    ..SMALL
                };
                run::<ours_cluster::Ours>(w).map(drop).unwrap();
                // Upstream with batch_size > 1 fails the order check when a
                // round leaves its batch partly filled (see the book's
                // performance chapter), so it runs only where batches fill.
                if (batch as usize).is_multiple_of(batch_size) {
                    run::<upstream_cluster::Upstream>(w).map(drop).unwrap();
                }
                run::<raft_cluster::Raft>(w).map(drop).unwrap();
            }
        }
    }

    #[test]
    fn upstream_with_partly_filled_batches_fails_the_order_check() {
        // Measured 2026-12-06: upstream 0.2.4 with batch_size 10 and one
        // proposal per round; kept as a test so that the bench's claim
        // about it stays true of the bench.
        let w = Workload {
            batch: 1,
            batch_size: 10,
            ..SMALL
        };
        let err = run::<upstream_cluster::Upstream>(w).map(drop).unwrap_err();
        assert!(err.contains("where 0 was due"), "{err}");
        run::<ours_cluster::Ours>(w).map(drop).unwrap();
    }

    #[test]
    fn a_short_window_still_completes() {
        let w = Workload {
            n: 5_000,
            batch: 1_000,
            window: 10,
            batch_size: 1,
        };
        run::<ours_cluster::Ours>(w).map(drop).unwrap();
        run::<upstream_cluster::Upstream>(w).map(drop).unwrap();
        run::<raft_cluster::Raft>(w).map(drop).unwrap();
    }

    #[test]
    fn parses_a_result_line() {
        let f = parse_result("result lib=ours entries_per_s=12 messages=4 secs=0.1 peak_kib=2048")
            .unwrap();
        assert_eq!(
            (f.entries_per_s, f.messages, f.peak_kib),
            (12.0, 4.0, 2048.0)
        );
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
