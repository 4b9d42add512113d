//! Joining a new configuration: a server that was not in the previous
//! configuration pulls that configuration's decided log from several of its
//! servers in parallel, as in the Omni-Paxos paper, before it takes part. A
//! server that was in it but missed part of its decided log (see
//! `stragglers.rs`) pulls the rest the same way.
//!
//! ```text
//!  log F..L split into one slice per source:  [F, F+(L-F)/k) ...
//!  (F: what the joiner's storage already holds decided, 0 for a new server)
//!  J ──PullLog{slice}──▶ source i, for every slice at once
//!  source ──PullLogReply{slice, snapshot?, entries}──▶ J
//!  a slice unanswered for resend_message_tick_timeout ticks goes to the next source
//!  every slice in  ->  J writes the log (and snapshot) in one atomic write,
//!                      then runs as an ordinary server of the new configuration
//! ```
//!
//! Until then the joiner neither votes nor leads: a server without the
//! decided log must not be counted in a read quorum, or a leader of the new
//! configuration could start from an empty log.

use crate::{
    clock::LogicalClock,
    errors::ConfigError,
    messages::{PullLog, PullLogReply, StopSignDecided},
    storage::Entry,
    util::NodeId,
};

/// Where a server joining a new configuration gets the log it continues:
/// the previous configuration's decided log `0..log_len`, from `sources`.
///
/// `log_len` is the index of the previous configuration's stop-sign (the
/// decided index of its servers, minus one), and `sources` are servers that
/// hold that log: any of the previous configuration's servers. The more
/// sources, the more of the log is fetched in parallel.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Migration {
    /// How many entries the previous configuration decided.
    pub log_len: u64,
    /// Servers to pull the log from.
    pub sources: Vec<NodeId>,
}

impl Migration {
    pub(crate) fn validate(&self, pid: NodeId) -> Result<(), ConfigError> {
        if self.sources.is_empty() && self.log_len > 0 {
            return Err(ConfigError::field(
                "migration.sources",
                "must name at least one server",
            ));
        }
        if let Some(bad) = self.sources.iter().find(|&&p| p == 0 || p == pid) {
            return Err(ConfigError::field(
                "migration.sources",
                format!("cannot contain {bad} (0, or this server itself)"),
            ));
        }
        Ok(())
    }
}

/// One slice of the log and who is asked for it.
#[derive(Debug)]
struct Slice<T: Entry> {
    from: u64,
    to: u64,
    source: usize,
    /// The answer: where its entries start, and the entries.
    received: Option<(u64, Vec<T>)>,
}

/// The joiner's progress.
pub(crate) struct Joining<T: Entry> {
    /// Where the pull starts: the joiner's storage holds the decided log
    /// below it (nothing for a new server).
    from: u64,
    log_len: u64,
    sources: Vec<NodeId>,
    slices: Vec<Slice<T>>,
    /// The newest snapshot received, covering `0..covers`.
    snapshot: Option<(u64, T::Snapshot)>,
    /// How the previous configuration ended, as a source said.
    stopsign: Option<StopSignDecided>,
    resend: LogicalClock,
    outgoing: Vec<(NodeId, PullLog)>,
    /// Ticks since joining started, for reporting how long migration took.
    ticks: u64,
}

/// What a finished migration installs: a snapshot of `0..start` (if any),
/// then the entries `start..log_len`.
pub(crate) struct Pulled<T: Entry> {
    pub(crate) snapshot: Option<T::Snapshot>,
    /// How the previous configuration ended, if a source said.
    pub(crate) stopsign: Option<StopSignDecided>,
    pub(crate) start: u64,
    pub(crate) entries: Vec<T>,
    pub(crate) log_len: u64,
}

impl<T: Entry> Joining<T> {
    /// Starts pulling `from..m.log_len`, one slice per source.
    pub(crate) fn start(m: Migration, from: u64, resend_ticks: u64) -> Self {
        debug_assert!(from < m.log_len, "there is something to pull");
        let k = m.sources.len().max(1) as u64;
        let per = (m.log_len - from).div_ceil(k).max(1);
        let slices = (0..k)
            .map(|i| {
                let lo = from + i * per;
                (lo, (lo + per).min(m.log_len), i as usize)
            })
            .filter(|(from, to, _)| from < to)
            .map(|(from, to, source)| Slice {
                from,
                to,
                source,
                received: None,
            })
            .collect();
        let mut joining = Self {
            from,
            log_len: m.log_len,
            sources: m.sources,
            slices,
            snapshot: None,
            stopsign: None,
            resend: LogicalClock::with(resend_ticks),
            outgoing: Vec::new(),
            ticks: 0,
        };
        joining.ask(false);
        joining
    }

    /// Asks for every missing slice; with `rotate`, from the next source.
    fn ask(&mut self, rotate: bool) {
        let n = self.sources.len();
        let covered = self.covered();
        for slice in &mut self.slices {
            if slice.received.is_some() || slice.to <= covered {
                continue;
            }
            if rotate {
                slice.source = (slice.source + 1) % n;
            }
            let msg = PullLog {
                from_idx: slice.from,
                to_idx: slice.to,
            };
            self.outgoing.push((self.sources[slice.source], msg));
        }
    }

    pub(crate) fn tick(&mut self) {
        self.ticks += 1;
        if self.resend.tick_and_check() {
            self.ask(true);
        }
    }

    pub(crate) fn ticks(&self) -> u64 {
        self.ticks
    }

    /// What is being pulled, as a restarted joiner would be told to pull it
    /// (it continues from what its storage holds).
    pub(crate) fn migration(&self) -> Migration {
        Migration {
            log_len: self.log_len,
            sources: self.sources.clone(),
        }
    }

    /// The log below this index is in hand: what the storage held, or the
    /// newest snapshot received.
    fn covered(&self) -> u64 {
        self.snapshot
            .as_ref()
            .map_or(self.from, |(c, _)| (*c).max(self.from))
    }

    pub(crate) fn take_outgoing(&mut self) -> std::vec::Drain<'_, (NodeId, PullLog)> {
        self.outgoing.drain(..)
    }

    /// Takes a source's reply; a reply to no slice we miss is ignored.
    pub(crate) fn handle_reply(&mut self, reply: PullLogReply<T>) {
        let covered = self.covered();
        let Some(slice) = self
            .slices
            .iter_mut()
            .find(|s| s.to == reply.to_idx && s.received.is_none())
        else {
            return;
        };
        // A source that compacted past the whole slice answers with its
        // snapshot alone (`from_idx >= to_idx`, no entries). Its snapshot may
        // even reach past `log_len`, when the source went on in the new
        // configuration and compacted there: it is still a prefix of the same
        // log, and the joiner then starts at its end.
        let well_formed = match reply.to_idx.checked_sub(reply.from_idx) {
            Some(expected) => {
                reply.entries.len() as u64 == expected
                    && (reply.from_idx <= slice.from || reply.snapshot.is_some())
            }
            None => reply.entries.is_empty() && reply.snapshot.is_some(),
        };
        if !well_formed {
            return; // Ask again later, perhaps another source.
        }
        if let Some(snapshot) = reply.snapshot {
            // The snapshot covers everything below where the entries start;
            // one that covers no more than we hold is of no use.
            if reply.from_idx > covered {
                self.snapshot = Some((reply.from_idx, snapshot));
            }
        }
        slice.received = Some((reply.from_idx, reply.entries));
        if self.stopsign.is_none() {
            self.stopsign = reply.stopsign;
        }
    }

    /// The whole log, once every slice (or a snapshot past it) is in.
    pub(crate) fn finish(&mut self) -> Option<Pulled<T>> {
        let covered = self.covered();
        if !self
            .slices
            .iter()
            .all(|s| s.received.is_some() || s.to <= covered)
        {
            return None;
        }
        let end = self.log_len.max(covered);
        let mut entries = Vec::with_capacity((end - covered) as usize);
        for slice in &mut self.slices {
            if let Some((from, got)) = slice.received.take() {
                entries.extend(
                    got.into_iter()
                        .zip(from..)
                        .filter(|(_, i)| *i >= covered)
                        .map(|(e, _)| e),
                );
            }
        }
        debug_assert_eq!(entries.len() as u64, end - covered);
        Some(Pulled {
            snapshot: self.snapshot.take().map(|(_, s)| s),
            stopsign: self.stopsign.take(),
            start: covered,
            entries,
            log_len: end,
        })
    }
}
