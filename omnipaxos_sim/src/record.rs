//! [`Record`]: what the cluster decided, who decided each index first, and
//! the proposals not decided yet.

use crate::ViolationKind;
use omnipaxos::util::NodeId;
use std::{collections::BTreeMap, fmt::Debug};

/// The cluster-wide records the invariants compare each server against.
pub(crate) struct Record<T> {
    /// Index `i` holds what the first server to decide `i` decided there.
    decided: Vec<T>,
    /// Who decided each index first, as runs: the key is the first index of
    /// a run of indices one server decided first (a leader decides long
    /// runs), the value that server. Not a vector beside `decided`, so that
    /// `decided` can be handed out as the plain slice of entries.
    first_deciders: BTreeMap<u64, NodeId>,
    /// Entries proposed through the simulator and not decided yet, oldest
    /// first; equal entries are interchangeable. Searched linearly when a
    /// new index is decided: it holds the proposals in flight (and those a
    /// crash lost), a short list next to the decided log.
    pending: Vec<T>,
}

impl<T: PartialEq + Clone + Debug> Record<T> {
    pub(crate) fn new() -> Self {
        Self {
            decided: Vec::new(),
            first_deciders: BTreeMap::new(),
            pending: Vec::new(),
        }
    }

    pub(crate) fn decided_log(&self) -> &[T] {
        &self.decided
    }

    /// Notes a proposal some server's `append` took.
    pub(crate) fn propose(&mut self, entry: T) {
        self.pending.push(entry);
    }

    /// The server that decided index `idx` first.
    fn first_decider(&self, idx: u64) -> NodeId {
        self.first_deciders
            .range(..=idx)
            .next_back()
            .map_or(0, |(_, &pid)| pid)
    }

    /// Server `pid` decided `entry` at `idx`, having decided (and been
    /// checked for) every index below. Checks it against what the cluster
    /// decided there, or, for a new index, against the proposals, and
    /// records it. `check: false` records without checking.
    pub(crate) fn decide(
        &mut self,
        pid: NodeId,
        idx: u64,
        entry: &T,
        check: bool,
    ) -> Result<(), ViolationKind> {
        let len = self.decided.len() as u64;
        if idx < len {
            let Some(known) = usize::try_from(idx).ok().and_then(|i| self.decided.get(i)) else {
                return Ok(());
            };
            if check && known != entry {
                return Err(ViolationKind::DecidedPrefixDisagreement {
                    idx,
                    first: self.first_decider(idx),
                    first_entry: format!("{known:?}"),
                    other: pid,
                    other_entry: format!("{entry:?}"),
                });
            }
            return Ok(());
        }
        // Every server reads its decided log from the start, filling a
        // compacted prefix from this record, so it reaches a new index only
        // after all the ones before it.
        debug_assert_eq!(idx, len, "decided indices are recorded in order");
        match self.pending.iter().position(|p| p == entry) {
            Some(i) => {
                self.pending.remove(i);
            }
            None if check => {
                return Err(ViolationKind::NotProposed {
                    pid,
                    idx,
                    entry: format!("{entry:?}"),
                });
            }
            None => {}
        }
        if self.first_deciders.last_key_value().map(|(_, &p)| p) != Some(pid) {
            self.first_deciders.insert(idx, pid);
        }
        self.decided.push(entry.clone());
        Ok(())
    }
}
