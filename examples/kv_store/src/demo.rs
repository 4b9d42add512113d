//! The local-cluster demo: elect, write, read back, crash the leader, fail
//! over, write again, and check that the survivors agree and lost nothing.
//!
//! Every wait is bounded by [`DemoOptions::timeout`] and wakes on replica
//! events (a condition variable), never on a fixed sleep; every check that
//! fails becomes a [`DemoError`], so the binary can exit non-zero.

use crate::{
    cluster::{ClusterConfig, LocalCluster, NodeView},
    node::Ack,
    store::{KVCommand, RequestId},
};
use omnipaxos::{errors::ConfigError, util::NodeId};
use std::{
    collections::{BTreeMap, HashMap},
    io::{self, Write},
    sync::mpsc,
    time::{Duration, Instant},
};

/// The knobs of [`run_demo`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DemoOptions {
    /// Replicas in the cluster, with ids `1..=nodes`; at least 3, so that a
    /// majority survives the leader's crash.
    pub nodes: usize,
    /// Puts to make, half before the leader crashes and half after. A tenth of
    /// the first half's keys are deleted again, on top of this number.
    pub writes: usize,
    /// Picks which replica each write goes to and what value it carries; the
    /// same seed sends the same writes to the same replicas.
    pub seed: u64,
    /// Wall-clock length of one protocol tick.
    pub tick_interval: Duration,
    /// Ticks per heartbeat round ([`omnipaxos::OmniPaxosConfig::election_tick_timeout`]).
    pub election_tick_timeout: u64,
    /// Proposals the leader gathers per accept round ([`omnipaxos::OmniPaxosConfig::batch_size`]).
    pub batch_size: usize,
    /// The longest the demo waits for any one step (an election, a batch of
    /// writes, replicas catching up) before it declares that step failed.
    pub timeout: Duration,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            nodes: 3,
            writes: 10_000,
            seed: 1,
            tick_interval: Duration::from_millis(1),
            election_tick_timeout: 10,
            batch_size: 1,
            timeout: Duration::from_secs(20),
        }
    }
}

/// What a successful demo measured.
#[derive(Clone, Debug, PartialEq)]
pub struct DemoReport {
    /// The first leader, the one that is crashed.
    pub first_leader: NodeId,
    /// From start until every replica agreed on the first leader.
    pub first_election: Duration,
    /// The leader after the crash.
    pub second_leader: NodeId,
    /// From the crash until every survivor agreed on the new leader.
    pub failover: Duration,
    /// From the crash until a write sent at the moment of the crash was decided.
    pub first_write_after_crash: Duration,
    /// Writes (puts and deletes) that every replica acknowledged as decided.
    pub acknowledged_writes: usize,
    /// Of those, how many were sent to a replica that was not the leader and so went through forwarding.
    pub forwarded_writes: usize,
    /// Decided writes per second in the phase before the crash.
    pub throughput_before_crash: f64,
    /// Decided writes per second in the phase after the crash.
    pub throughput_after_crash: f64,
    /// The replicas still running at the end; all hold the same store.
    pub survivors: Vec<NodeId>,
    /// Keys in the final store.
    pub keys: usize,
    /// Entries in the decided log at the end.
    pub log_len: u64,
}

/// A step of the demo that did not work out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// The options cannot make a meaningful demo (the user's to fix).
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// The protocol refused a replica's config (a bug in this example).
    #[error("replica config refused: {0}")]
    Config(#[from] ConfigError),
    /// The replicas did not agree on a leader in time.
    #[error("no leader agreed on within {waited:?} (views: {views})")]
    NoLeader {
        /// How long the demo waited.
        waited: Duration,
        /// What each replica last reported.
        views: String,
    },
    /// A replica refused a write.
    #[error("node {node} refused write {id}: {reason}")]
    Rejected {
        /// The write.
        id: RequestId,
        /// The replica that refused it.
        node: NodeId,
        /// Why.
        reason: String,
    },
    /// Some step did not finish in time.
    #[error("timed out after {waited:?} {what}")]
    Timeout {
        /// What was being waited for.
        what: String,
        /// How long the demo waited.
        waited: Duration,
    },
    /// A replica's state does not match what the acknowledged writes imply.
    #[error("node {node} diverged: {detail}")]
    Diverged {
        /// The replica.
        node: NodeId,
        /// What differs.
        detail: String,
    },
    /// A replica reported a fault in its state machine or storage.
    #[error("node {node} failed: {fault}")]
    NodeFault {
        /// The replica.
        node: NodeId,
        /// What it reported.
        fault: String,
    },
    /// Writing progress lines failed.
    #[error("cannot print progress: {0}")]
    Output(#[from] io::Error),
}

/// Runs the demo and prints progress lines to `out`.
///
/// Returns the measurements if every check passed; the first failed check otherwise.
pub fn run_demo(opts: &DemoOptions, out: &mut dyn Write) -> Result<DemoReport, DemoError> {
    if opts.nodes < 3 {
        return Err(DemoError::InvalidOption(format!(
            "--nodes must be at least 3 so that a majority survives the leader's crash, is {}",
            opts.nodes
        )));
    }
    if opts.writes < 2 {
        return Err(DemoError::InvalidOption(format!(
            "--writes must be at least 2 (one before the crash, one after), is {}",
            opts.writes
        )));
    }
    let mut demo = Demo::start(opts, out)?;
    demo.run()
}

/// The client side of the demo and everything it has learnt.
struct Demo<'a> {
    opts: &'a DemoOptions,
    out: &'a mut dyn Write,
    cluster: LocalCluster,
    started: Instant,
    rng: SplitMix64,
    next_id: RequestId,
    /// What the store must hold, built from the acknowledged writes. Keys are
    /// never reused and a key is deleted only after its put was acknowledged,
    /// so the order in which acks arrive does not matter.
    expected: HashMap<String, String>,
    /// Log index of every acknowledged write: two writes at one index would be a safety bug.
    decided_at: HashMap<u64, RequestId>,
    forwarded: usize,
}

/// The outcome of one batch of writes.
struct Batch {
    elapsed: Duration,
    writes: usize,
    forwarded: usize,
}

impl Batch {
    fn per_second(&self) -> f64 {
        self.writes as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl<'a> Demo<'a> {
    fn start(opts: &'a DemoOptions, out: &'a mut dyn Write) -> Result<Self, DemoError> {
        writeln!(
            out,
            "kv_store demo: {} nodes, {} puts, seed {}, tick {:?}, election timeout {} ticks, batch size {}",
            opts.nodes,
            opts.writes,
            opts.seed,
            opts.tick_interval,
            opts.election_tick_timeout,
            opts.batch_size
        )?;
        let config = ClusterConfig {
            nodes: (1..=opts.nodes as NodeId).collect(),
            tick_interval: opts.tick_interval,
            election_tick_timeout: opts.election_tick_timeout,
            batch_size: opts.batch_size,
        };
        let started = Instant::now();
        let cluster = LocalCluster::start(&config)?;
        Ok(Self {
            opts,
            out,
            cluster,
            started,
            rng: SplitMix64(opts.seed),
            next_id: 1,
            expected: HashMap::new(),
            decided_at: HashMap::new(),
            forwarded: 0,
        })
    }

    fn run(&mut self) -> Result<DemoReport, DemoError> {
        let first_leader = self.wait_for_leader(None)?;
        let first_election = self.started.elapsed();
        self.say(format_args!(
            "node {first_leader} leads (elected {} after start)",
            ms(first_election)
        ))?;

        // Phase 1: puts to random replicas, pipelined, then deletes of a tenth of them.
        let before = self.opts.writes / 2;
        let puts: Vec<KVCommand> = (0..before).map(|i| self.put(i)).collect();
        let batch = self.write_batch(puts, first_leader, "phase 1 puts")?;
        let mut before_writes = batch.writes;
        let mut before_elapsed = batch.elapsed;
        self.say(format_args!(
            "phase 1: {} puts decided in {} ({} forwarded by followers): {:.0} writes/s",
            batch.writes,
            ms(batch.elapsed),
            batch.forwarded,
            batch.per_second()
        ))?;
        let deletes: Vec<KVCommand> = (0..before).step_by(10).map(|i| self.delete(i)).collect();
        if !deletes.is_empty() {
            let batch = self.write_batch(deletes, first_leader, "phase 1 deletes")?;
            before_writes += batch.writes;
            before_elapsed += batch.elapsed;
            self.say(format_args!(
                "phase 1: {} deletes decided in {}",
                batch.writes,
                ms(batch.elapsed)
            ))?;
        }
        let (keys, log_len) = self.check_replicas("read back")?;
        let sample = (0..before).find(|i| i % 10 != 0).map(key);
        if let Some(k) = sample {
            let v = self.expected[&k].clone();
            self.say(format_args!(
                "read back from every node: {keys} keys each, log length {log_len}, e.g. {k} = {v:?}"
            ))?;
        } else {
            self.say(format_args!(
                "read back from every node: {keys} keys each, log length {log_len}"
            ))?;
        }

        // Phase 2: crash the leader and keep writing to the survivors.
        self.say(format_args!("crashing leader node {first_leader}"))?;
        let crashed_at = Instant::now();
        self.cluster.crash(first_leader);
        let survivors = self.cluster.alive();
        // The first write after the crash goes out at once, to a replica that
        // still believes in the dead leader: it must wait for a new leader and
        // reach it by forwarding.
        let (probe_tx, probe_rx) = mpsc::channel();
        let probe = self.put(before);
        let probe_id = probe.id();
        let probe_key = probe.key().to_owned();
        let probe_node = survivors[self.rng.below(survivors.len())];
        self.cluster.append(probe_node, probe, probe_tx);
        let second_leader = self.wait_for_leader(Some(first_leader))?;
        let failover = crashed_at.elapsed();
        self.say(format_args!(
            "node {second_leader} leads, {} after the crash",
            ms(failover)
        ))?;
        let ack = probe_rx
            .recv_timeout(self.opts.timeout)
            .map_err(|_| DemoError::Timeout {
                what: format!(
                    "for write {probe_id}, sent to node {probe_node} during the failover"
                ),
                waited: self.opts.timeout,
            })?;
        self.record(ack, &probe_key)?;
        if probe_node != second_leader {
            self.forwarded += 1;
        }
        let first_write_after_crash = crashed_at.elapsed();
        self.say(format_args!(
            "first write after the crash (sent to node {probe_node}) decided {} after the crash",
            ms(first_write_after_crash)
        ))?;
        let puts: Vec<KVCommand> = (before + 1..self.opts.writes)
            .map(|i| self.put(i))
            .collect();
        let mut throughput_after_crash = 0.0;
        if !puts.is_empty() {
            let batch = self.write_batch(puts, second_leader, "phase 2 puts")?;
            throughput_after_crash = batch.per_second();
            self.say(format_args!(
                "phase 2: {} puts decided in {} ({} forwarded by followers): {:.0} writes/s",
                batch.writes,
                ms(batch.elapsed),
                batch.forwarded,
                throughput_after_crash
            ))?;
        }

        let (keys, log_len) = self.check_replicas("final check")?;
        self.say(format_args!(
            "survivors {} agree: {keys} keys, log length {log_len}; all {} acknowledged writes present",
            list(&survivors),
            self.decided_at.len()
        ))?;
        let report = DemoReport {
            first_leader,
            first_election,
            second_leader,
            failover,
            first_write_after_crash,
            acknowledged_writes: self.decided_at.len(),
            forwarded_writes: self.forwarded,
            throughput_before_crash: before_writes as f64 / before_elapsed.as_secs_f64().max(1e-9),
            throughput_after_crash,
            survivors,
            keys,
            log_len,
        };
        writeln!(
            self.out,
            "summary: election {}, failover {}, first write after crash {}, {:.0} writes/s before / {:.0} after the crash",
            ms(report.first_election),
            ms(report.failover),
            ms(report.first_write_after_crash),
            report.throughput_before_crash,
            report.throughput_after_crash
        )?;
        writeln!(self.out, "OK: all checks passed")?;
        Ok(report)
    }

    /// Waits until every running replica names the same leader, other than
    /// `not`, and that leader is in its accept phase.
    fn wait_for_leader(&self, not: Option<NodeId>) -> Result<NodeId, DemoError> {
        let alive = self.cluster.alive();
        let leader = self.cluster.watch().wait_for(self.opts.timeout, |views| {
            let first = views.get(alive.first()?)?.leader?;
            let agreed = Some(first) != not
                && alive
                    .iter()
                    .all(|p| views.get(p).is_some_and(|v| v.leader == Some(first)))
                && views.get(&first).is_some_and(|v| v.is_leader);
            agreed.then_some(first)
        });
        leader.ok_or_else(|| DemoError::NoLeader {
            waited: self.opts.timeout,
            views: describe(&self.cluster.watch().snapshot()),
        })
    }

    /// Sends every write to a random running replica, then waits for all of them to be decided.
    fn write_batch(
        &mut self,
        cmds: Vec<KVCommand>,
        leader: NodeId,
        what: &str,
    ) -> Result<Batch, DemoError> {
        let alive = self.cluster.alive();
        let (tx, rx) = mpsc::channel();
        let mut keys = HashMap::with_capacity(cmds.len());
        let mut forwarded = 0;
        let writes = cmds.len();
        let start = Instant::now();
        for cmd in cmds {
            let node = alive[self.rng.below(alive.len())];
            if node != leader {
                forwarded += 1;
            }
            keys.insert(cmd.id(), cmd.key().to_owned());
            self.cluster.append(node, cmd, tx.clone());
        }
        drop(tx);
        let deadline = start + self.opts.timeout;
        while !keys.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(ack) = rx.recv_timeout(left) else {
                return Err(DemoError::Timeout {
                    what: format!("for {what}: {} of {writes} writes not decided", keys.len()),
                    waited: self.opts.timeout,
                });
            };
            let key = keys
                .remove(&ack.id)
                .expect("each write is acknowledged once, by the replica it was sent to");
            self.record(ack, &key)?;
        }
        self.forwarded += forwarded;
        Ok(Batch {
            elapsed: start.elapsed(),
            writes,
            forwarded,
        })
    }

    /// Folds one acknowledgement into the expected store.
    fn record(&mut self, ack: Ack, key: &str) -> Result<(), DemoError> {
        let idx = ack.outcome.map_err(|reason| DemoError::Rejected {
            id: ack.id,
            node: ack.node,
            reason,
        })?;
        if let Some(other) = self.decided_at.insert(idx, ack.id) {
            return Err(DemoError::Diverged {
                node: ack.node,
                detail: format!("writes {other} and {} both decided at index {idx}", ack.id),
            });
        }
        match self.value_of(ack.id) {
            Some(value) => self.expected.insert(key.to_owned(), value),
            None => self.expected.remove(key),
        };
        Ok(())
    }

    /// Waits for every running replica to apply the whole decided log, then
    /// compares each one's store with the expected one. Returns the number of
    /// keys and the log length.
    fn check_replicas(&mut self, what: &str) -> Result<(usize, u64), DemoError> {
        let alive = self.cluster.alive();
        let acked_end = self.decided_at.keys().max().map_or(0, |&i| i + 1);
        let caught_up = self.cluster.watch().wait_for(self.opts.timeout, |views| {
            let vs: Vec<&NodeView> = alive.iter().filter_map(|p| views.get(p)).collect();
            let end = vs.first()?.applied_idx;
            let settled = vs.len() == alive.len()
                && end >= acked_end
                && vs
                    .iter()
                    .all(|v| v.applied_idx == end && v.decided_idx == end);
            settled.then_some(end)
        });
        let Some(log_len) = caught_up else {
            return Err(DemoError::Timeout {
                what: format!(
                    "for {what}: replicas to apply up to index {acked_end} ({})",
                    describe(&self.cluster.watch().snapshot())
                ),
                waited: self.opts.timeout,
            });
        };
        for (pid, view) in self.cluster.watch().snapshot() {
            if let Some(fault) = view.fault {
                return Err(DemoError::NodeFault { node: pid, fault });
            }
        }
        for &pid in &alive {
            let store =
                self.cluster
                    .dump(pid, self.opts.timeout)
                    .ok_or_else(|| DemoError::Timeout {
                        what: format!("for {what}: node {pid} to answer a read"),
                        waited: self.opts.timeout,
                    })?;
            if store.map() != &self.expected {
                let missing = self
                    .expected
                    .iter()
                    .filter(|&(k, v)| store.get(k) != Some(v.as_str()))
                    .count();
                return Err(DemoError::Diverged {
                    node: pid,
                    detail: format!(
                        "{missing} acknowledged writes missing or wrong, {} keys held, {} expected",
                        store.len(),
                        self.expected.len()
                    ),
                });
            }
            if store.duplicates() != 0 {
                return Err(DemoError::Diverged {
                    node: pid,
                    detail: format!("{} writes reached the log twice", store.duplicates()),
                });
            }
        }
        Ok((self.expected.len(), log_len))
    }

    fn put(&mut self, i: usize) -> KVCommand {
        let id = self.fresh_id();
        KVCommand::Put {
            id,
            key: key(i),
            value: self.value_of(id).expect("ids from fresh_id are odd: puts"),
        }
    }

    fn delete(&mut self, i: usize) -> KVCommand {
        // Deletes get even ids so that `value_of` can tell them from puts.
        let id = self.fresh_id() + 1;
        KVCommand::Delete { id, key: key(i) }
    }

    fn fresh_id(&mut self) -> RequestId {
        let id = self.next_id;
        self.next_id += 2;
        id
    }

    /// The value a put with this id carries (derived from the id and seed, so
    /// the client need not store it), or `None` for a delete.
    fn value_of(&self, id: RequestId) -> Option<String> {
        (id % 2 == 1).then(|| format!("v{:x}", SplitMix64(self.opts.seed ^ id).next()))
    }

    fn say(&mut self, line: std::fmt::Arguments<'_>) -> io::Result<()> {
        writeln!(self.out, "[{:>9}] {line}", ms(self.started.elapsed()))
    }
}

fn key(i: usize) -> String {
    format!("key-{i}")
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn list(pids: &[NodeId]) -> String {
    pids.iter()
        .map(NodeId::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe(views: &BTreeMap<NodeId, NodeView>) -> String {
    let parts: Vec<String> = views
        .iter()
        .map(|(pid, v)| {
            format!(
                "node {pid}: alive {}, leader {:?}, decided {}, applied {}",
                v.alive, v.leader, v.decided_idx, v.applied_idx
            )
        })
        .collect();
    parts.join("; ")
}

/// A tiny seeded generator (SplitMix64): enough to spread writes over
/// replicas reproducibly, without a dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_is_reproducible_per_seed() {
        let a: Vec<u64> = {
            let mut r = SplitMix64(7);
            (0..4).map(|_| r.next()).collect()
        };
        let mut r = SplitMix64(7);
        assert_eq!(a, (0..4).map(|_| r.next()).collect::<Vec<_>>());
        assert_ne!(a[0], SplitMix64(8).next());
    }
}
