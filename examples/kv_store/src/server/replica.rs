//! The replica's state machine and the applier task that feeds it decided
//! entries, takes snapshots, and hands write results to the HTTP handlers
//! waiting for them.

use crate::store::{CommandId, CommandResult, KVCommand, KvState, SessionId};
use omnipaxos::{
    errors::CompactionErr,
    util::{LogEntry, StopSign},
};
use omnipaxos_runtime::{DecidedBatch, OmniPaxosNode, RuntimeError};
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};
use tokio::sync::{oneshot, watch};
use tracing::{debug, info, warn};

/// The key-value state of this server, the index up to which it is
/// applied, and the handlers waiting for their writes' results.
#[derive(Debug)]
pub(crate) struct Replica {
    /// The id prefix of every write this process proposes.
    session: SessionId,
    /// The next sequence number of the session.
    next_seq: AtomicU64,
    /// The key-value map and its deduplication table.
    state: RwLock<KvState>,
    /// Log entries below this index are applied to `state`.
    applied: watch::Sender<u64>,
    /// Handlers of this session's writes waiting for the result, by sequence number.
    waiters: Mutex<HashMap<u64, oneshot::Sender<CommandResult>>>,
}

/// Why the applier stopped with an error.
type ApplyError = String;

impl Replica {
    pub(crate) fn new(session: SessionId) -> Self {
        Self {
            session,
            next_seq: AtomicU64::new(0),
            state: RwLock::default(),
            applied: watch::Sender::new(0),
            waiters: Mutex::default(),
        }
    }

    /// A fresh command id, and a receiver for the command's result that is
    /// filled when the command is first applied on this server.
    pub(crate) fn register(self: &Arc<Self>) -> (CommandId, PendingResult) {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiters().insert(seq, tx);
        (
            CommandId {
                session: self.session,
                seq,
            },
            PendingResult {
                replica: Arc::clone(self),
                seq,
                rx,
            },
        )
    }

    /// Log entries below this index are applied.
    pub(crate) fn applied_idx(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Waits until entries below `idx` are applied, for at most `timeout`.
    /// Returns whether they are.
    pub(crate) async fn wait_applied(&self, idx: u64, timeout: Duration) -> bool {
        let mut rx = self.applied.subscribe();
        matches!(
            tokio::time::timeout(timeout, rx.wait_for(|&a| a >= idx)).await,
            Ok(Ok(_))
        )
    }

    /// The state, to read.
    pub(crate) fn state(&self) -> RwLockReadGuard<'_, KvState> {
        // The lock is only poisoned if an apply panicked half-way; the
        // process is going down then anyway, and reads of a map are safe.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn state_mut(&self) -> RwLockWriteGuard<'_, KvState> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn waiters(&self) -> MutexGuard<'_, HashMap<u64, oneshot::Sender<CommandResult>>> {
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies one batch of decided entries and publishes the new applied
    /// index. Returns it.
    fn apply_batch(&self, batch: DecidedBatch<KVCommand>) -> Result<u64, ApplyError> {
        let mut idx = self.applied_idx();
        if batch.start_idx != idx {
            return Err(format!(
                "decided entries start at {} but {idx} entries are applied",
                batch.start_idx
            ));
        }
        let mut results = Vec::new();
        {
            let mut state = self.state_mut();
            for entry in batch.entries {
                match entry {
                    LogEntry::Decided(cmd) => {
                        tracing::trace!(idx, id = ?cmd.id, op = ?cmd.op, "applying");
                        let result = state.apply(&cmd);
                        if let Some(result) = result {
                            if cmd.id.session == self.session {
                                results.push((cmd.id.seq, result));
                            }
                        } else {
                            debug!(idx, id = ?cmd.id, "skipped a duplicate command");
                        }
                        idx += 1;
                    }
                    LogEntry::Snapshotted(s) => {
                        // The snapshot covers the log from index 0, so it
                        // replaces whatever was applied before.
                        info!(
                            from = idx,
                            to = s.trimmed_idx,
                            "installing a snapshot of the compacted log"
                        );
                        *state = s.snapshot.into_state();
                        idx = s.trimmed_idx;
                    }
                    // A stop-sign ends a configuration and holds no command.
                    // It takes no index of the log we apply: the next
                    // configuration's first entry has its index. (The
                    // runtime's stream leaves it out; this is for safety.)
                    LogEntry::StopSign(..) => {}
                    LogEntry::Trimmed(t) => {
                        return Err(format!(
                            "the log below index {t} was trimmed without a snapshot, so this server's \
                             state cannot be rebuilt"
                        ));
                    }
                    LogEntry::Undecided(_) => {
                        return Err(format!(
                            "an undecided entry among decided ones at index {idx}"
                        ));
                    }
                }
            }
        }
        if idx != batch.end_idx {
            warn!(
                applied = idx,
                end = batch.end_idx,
                "a decided batch ended elsewhere than it said"
            );
        }
        // Hand out results before publishing the index: a handler that sees
        // the index passed its write finds its result already there.
        let mut waiters = self.waiters();
        for (seq, result) in results {
            if let Some(tx) = waiters.remove(&seq) {
                let _ = tx.send(result);
            }
        }
        drop(waiters);
        self.applied.send_replace(idx);
        Ok(idx)
    }
}

/// The result of a write this server proposed, once applied. Dropping it
/// (e.g. when the client goes away) unregisters it.
#[derive(Debug)]
pub(crate) struct PendingResult {
    replica: Arc<Replica>,
    seq: u64,
    rx: oneshot::Receiver<CommandResult>,
}

impl PendingResult {
    /// The result, if the write has been applied on this server by
    /// applying it (not by installing a snapshot that contains it).
    pub(crate) fn take(&mut self) -> Option<CommandResult> {
        self.rx.try_recv().ok()
    }
}

impl Drop for PendingResult {
    fn drop(&mut self) {
        self.replica.waiters().remove(&self.seq);
    }
}

/// Why the applier ended without an error.
#[derive(Debug)]
pub(crate) enum Ended {
    /// The node was shut down.
    ShutDown,
    /// The node retired: the configuration that `.0` begins leaves this
    /// server out, and it has served the new servers' pulls.
    Retired(StopSign),
}

/// Applies decided entries from index 0 on, in order, for as long as the
/// node runs; compacts the log into a snapshot every `snapshot_every`
/// entries, or every as many entries as the store holds keys if that is
/// more: a snapshot costs the whole store, so it waits until the log it
/// replaces is about as large, which keeps its cost per entry bounded
/// however many keys there are (and the log on disk within about the
/// snapshot's size).
pub(crate) async fn run_applier(
    node: OmniPaxosNode<KVCommand>,
    replica: Arc<Replica>,
    snapshot_every: u64,
) -> Result<Ended, ApplyError> {
    let mut decided = node.decided_entries(replica.applied_idx());
    let mut last_snapshot = 0;
    loop {
        let batch = match decided.next().await {
            Ok(batch) => batch,
            Err(RuntimeError::ShutDown) => return Ok(Ended::ShutDown),
            Err(RuntimeError::Removed(ss)) => return Ok(Ended::Retired(ss)),
            Err(e) => return Err(format!("reading decided entries: {e}")),
        };
        let applied = replica.apply_batch(batch)?;
        let every = snapshot_every.max(replica.state().len() as u64);
        if snapshot_every > 0 && applied >= last_snapshot + every {
            // Local only: every server compacts on its own schedule, and a
            // lagging one still gets the entries it lacks (or our snapshot).
            match node.snapshot(Some(applied), true).await {
                Ok(()) => debug!(idx = applied, "compacted the log into a snapshot"),
                Err(RuntimeError::Compaction(CompactionErr::AlreadyCompacted { .. })) => {}
                Err(RuntimeError::ShutDown) => return Ok(Ended::ShutDown),
                Err(RuntimeError::Removed(ss)) => return Ok(Ended::Retired(ss)),
                Err(e) => warn!(idx = applied, error = %e, "snapshot refused"),
            }
            last_snapshot = applied;
        }
    }
}
