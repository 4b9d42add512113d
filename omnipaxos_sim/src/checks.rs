//! The invariants, checked after every step: each server's decided log is
//! read, checked against the cluster's and applied to its replica; then the
//! replicas are compared and the servers' reports of their own proposals
//! checked.
//!
//! | property | where |
//! | --- | --- |
//! | decided prefixes agree across every server that ever decided | [`Record::decide`] |
//! | a server's decided index never goes down (on one storage) | [`catch_up`] |
//! | every decided entry was proposed, and no proposal is decided twice | [`Record::decide`] |
//! | a proposal reported decided is decided at the reported index, once | [`Sim::check_reports`] |
//! | replicas that applied the same prefix are equal | [`Sim::compare_replicas`] |
//! | the user's invariant holds on every replica after each apply | [`catch_up`] |

use crate::{
    SimError, Violation, ViolationKind,
    record::Record,
    sim::{Hooks, Life, Server, Sim},
};
use omnipaxos::{
    storage::{Entry, Storage},
    util::{LogEntry, NodeId},
};
use std::{collections::BTreeMap, fmt::Debug};

/// When and where a check runs, for its error.
#[derive(Clone, Copy)]
struct At {
    seed: u64,
    tick: u64,
    pid: NodeId,
}

impl At {
    fn violation(self, kind: ViolationKind) -> SimError {
        Violation {
            seed: self.seed,
            tick: self.tick,
            kind,
        }
        .into()
    }

    fn unreadable(self, idx: u64, reason: &'static str) -> SimError {
        SimError::UnreadableLog {
            seed: self.seed,
            tick: self.tick,
            pid: self.pid,
            idx,
            reason,
        }
    }
}

impl<T, S, M> Sim<T, S, M>
where
    T: Entry + PartialEq,
    S: Storage<T>,
    M: Default + PartialEq + Debug,
{
    /// Brings every replica up to date and checks every invariant now
    /// (the step does this after every tick). Call it after driving a node
    /// directly through [`node_mut`](Self::node_mut) to check at once.
    pub fn check_invariants(&mut self) -> Result<(), SimError> {
        for (&pid, server) in &mut self.servers {
            let at = At {
                seed: self.seed,
                tick: self.now,
                pid,
            };
            catch_up(at, server, &mut self.record, &self.hooks, self.check)?;
        }
        self.check_reports()?;
        if self.check {
            self.compare_replicas()?;
        }
        Ok(())
    }

    /// Checks what each running server reports of its own proposals
    /// (`take_decided_proposals`): each is reported once, at an index where
    /// the cluster decided it.
    fn check_reports(&mut self) -> Result<(), SimError> {
        let mut reports = std::mem::take(&mut self.reports);
        let mut result = Ok(());
        for (&pid, server) in &mut self.servers {
            let Life::Running(paxos) = &mut server.life else {
                continue;
            };
            paxos.take_decided_proposals(&mut reports);
            for (id, idx) in reports.drain(..) {
                let proposed = server.tracked.remove(&id);
                let decided = usize::try_from(idx)
                    .ok()
                    .and_then(|i| self.record.decided_log().get(i));
                let wrong = match &proposed {
                    Some(p) => decided != Some(p),
                    None => true,
                };
                if self.check && wrong && result.is_ok() {
                    let at = At {
                        seed: self.seed,
                        tick: self.now,
                        pid,
                    };
                    result = Err(at.violation(ViolationKind::ReportedWrongly {
                        pid,
                        idx,
                        proposed: proposed.map(|p| format!("{p:?}")),
                        decided: decided.map(|d| format!("{d:?}")),
                    }));
                }
            }
        }
        self.reports = reports;
        result
    }

    /// Checks that servers whose replicas applied the same number of
    /// decided entries hold equal replicas (crashed servers included: their
    /// replica is what they had applied).
    fn compare_replicas(&self) -> Result<(), SimError> {
        let mut first_at: BTreeMap<u64, (NodeId, &M)> = BTreeMap::new();
        for (&pid, server) in &self.servers {
            match first_at.get(&server.applied) {
                None => {
                    first_at.insert(server.applied, (pid, &server.replica));
                }
                Some(&(a, replica)) if *replica != server.replica => {
                    let at = At {
                        seed: self.seed,
                        tick: self.now,
                        pid,
                    };
                    return Err(at.violation(ViolationKind::ReplicasDiverged {
                        applied: server.applied,
                        a,
                        a_state: format!("{replica:?}"),
                        b: pid,
                        b_state: format!("{:?}", server.replica),
                    }));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// Reads running server `at.pid`'s newly decided entries, checks each
/// against the cluster's record, and applies it to the server's replica.
///
/// A prefix the server holds only as a snapshot or a trim (it compacted, or
/// caught up from a leader's snapshot) is filled in from the cluster's
/// decided log, which some server read before it was compacted; the
/// snapshot itself is not compared (`Snapshot` has no `PartialEq`). If no
/// server read those entries, the log is [`SimError::UnreadableLog`].
fn catch_up<T, S, M>(
    at: At,
    server: &mut Server<T, S, M>,
    record: &mut Record<T>,
    hooks: &Hooks<T, S, M>,
    check: bool,
) -> Result<(), SimError>
where
    T: Entry + PartialEq,
    S: Storage<T>,
    M: Default + PartialEq + Debug,
{
    let Life::Running(paxos) = &server.life else {
        return Ok(());
    };
    let decided = paxos.get_decided_idx();
    if check && decided < server.max_decided {
        return Err(at.violation(ViolationKind::DecidedIndexDecreased {
            pid: at.pid,
            was: server.max_decided,
            now: decided,
        }));
    }
    server.max_decided = server.max_decided.max(decided);
    if decided <= server.applied {
        return Ok(());
    }
    let entries = paxos
        .read_entries(server.applied..decided)
        .ok_or_else(|| at.unreadable(server.applied, "read_entries found no such range"))?;
    let apply_one = |server: &mut Server<T, S, M>, entry: &T| -> Result<(), SimError> {
        (hooks.apply)(&mut server.replica, entry);
        // Not a let-chain: the crate's rust-version (1.85) predates them.
        let Some(invariant) = hooks.state_invariant.as_ref().filter(|_| check) else {
            return Ok(());
        };
        if let Err(message) = invariant(&server.replica) {
            return Err(at.violation(ViolationKind::StateInvariant {
                pid: at.pid,
                idx: server.applied,
                message,
            }));
        }
        Ok(())
    };
    for entry in entries {
        match entry {
            LogEntry::Decided(entry) => {
                record
                    .decide(at.pid, server.applied, &entry, check)
                    .map_err(|kind| at.violation(kind))?;
                apply_one(server, &entry)?;
                server.applied += 1;
            }
            LogEntry::Snapshotted(omnipaxos::util::SnapshottedEntry {
                trimmed_idx: end, ..
            })
            | LogEntry::Trimmed(end) => {
                let end = end.min(decided);
                let known = record.decided_log().len() as u64;
                if end > known {
                    return Err(at.unreadable(
                        known.max(server.applied),
                        "the entries were compacted before any server's were read",
                    ));
                }
                while server.applied < end {
                    let Some(entry) = usize::try_from(server.applied)
                        .ok()
                        .and_then(|i| record.decided_log().get(i))
                    else {
                        return Err(at.unreadable(server.applied, "beyond the decided log"));
                    };
                    apply_one(server, entry)?;
                    server.applied += 1;
                }
            }
            // The stop-sign that ends a configuration's log: the simulator
            // runs one configuration, and the stop-sign is no entry of `T`.
            LogEntry::StopSign(..) => server.applied += 1,
            LogEntry::Undecided(_) => {
                return Err(
                    at.unreadable(server.applied, "an undecided entry below the decided index")
                );
            }
        }
    }
    if server.applied < decided {
        return Err(at.unreadable(
            server.applied,
            "read_entries returned fewer entries than the decided index covers",
        ));
    }
    Ok(())
}
