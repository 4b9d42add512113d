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
//!  source ──PullLogReply{part of the slice, snapshot?, entries}──▶ J
//!     (at most buffer_size entries: J asks the same source for the rest)
//!  a slice unanswered for resend_message_tick_timeout ticks goes to the next source
//!  replies are taken only from a source the slice was asked of, for its range
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
    storage::{Entry, Snapshot},
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

/// One slice of the log, who was asked for it, and what came.
#[derive(Debug)]
struct Slice<T: Entry> {
    from: u64,
    to: u64,
    /// The source asked now, by position in `sources`.
    source: usize,
    /// Every source this slice was asked of: a late answer of one that was
    /// asked before the slice moved on to the next still counts, an answer
    /// from anyone else does not.
    asked: Vec<NodeId>,
    /// Where `got` starts: `from`, or where a snapshot that came with an
    /// answer ends.
    got_from: u64,
    /// The entries received, from `got_from` on. A source answers with at
    /// most `max_entries` entries, so a slice may come in several parts.
    got: Vec<T>,
    /// Whether an answer for this slice came since the resend timer last
    /// fired: only a slice without one is asked again (of the next source),
    /// so a source that is slow but sending is not sent duplicate requests,
    /// each of which would cost a duplicate reply on its link.
    progressed: bool,
}

impl<T: Entry> Slice<T> {
    /// The first index of the slice not received yet.
    fn next(&self) -> u64 {
        self.got_from + self.got.len() as u64
    }

    fn is_done(&self, covered: u64) -> bool {
        self.next() >= self.to || self.to <= covered
    }
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
                asked: Vec::new(),
                got_from: from,
                got: Vec::new(),
                progressed: false,
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

    /// Asks for every slice not complete yet; with `rotate`, only those
    /// that made no progress since the last time, from the next source.
    fn ask(&mut self, rotate: bool) {
        let n = self.sources.len();
        let covered = self.covered();
        for i in 0..self.slices.len() {
            if self.slices[i].is_done(covered) {
                continue;
            }
            if rotate && std::mem::take(&mut self.slices[i].progressed) {
                continue;
            }
            if rotate {
                self.slices[i].source = (self.slices[i].source + 1) % n;
            }
            self.ask_slice(i, covered);
        }
    }

    /// Asks the slice's current source for what the slice still lacks.
    fn ask_slice(&mut self, i: usize, covered: u64) {
        let slice = &mut self.slices[i];
        let to = self.sources[slice.source];
        if !slice.asked.contains(&to) {
            slice.asked.push(to);
        }
        let msg = PullLog {
            from_idx: slice.next().max(covered),
            to_idx: slice.to,
        };
        self.outgoing.push((to, msg));
    }

    pub(crate) fn tick(&mut self) {
        self.ticks += 1;
        if self.resend.tick_and_check() {
            self.ask(true);
        }
    }

    /// How the previous configuration ended, learned before the pull began.
    pub(crate) fn set_stopsign(&mut self, decided: StopSignDecided) {
        self.stopsign = Some(decided);
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

    /// Takes `from`'s reply. A reply is used only if it comes from a source
    /// its slice was asked of and lies within that slice (a snapshot may
    /// stand for the slice's start): anything else is ignored, and the
    /// slice asked for again later, perhaps of another source.
    pub(crate) fn handle_reply(&mut self, from: NodeId, reply: PullLogReply<T>) {
        let covered = self.covered();
        if reply.snapshot.is_some() && !T::Snapshot::use_snapshots() {
            return;
        }
        let Some(i) = self.slices.iter().position(|s| {
            !s.is_done(covered)
                && s.asked.contains(&from)
                && reply.to_idx > s.next().max(covered)
                && reply.to_idx <= s.to
        }) else {
            return;
        };
        let slice = &mut self.slices[i];
        // The entries must be exactly `from_idx..to_idx`.
        if reply.to_idx.checked_sub(reply.from_idx) != Some(reply.entries.len() as u64)
            && !(reply.entries.is_empty() && reply.snapshot.is_some())
        {
            return;
        }
        match reply.snapshot {
            // A source that compacted past where the slice continues answers
            // with its snapshot (of everything below `from_idx`) and the
            // entries after it; one that compacted past the whole slice,
            // with its snapshot alone. Its snapshot may even reach past
            // `log_len`, when the source went on in the new configuration and
            // compacted there: it is still a prefix of the same log, and the
            // joiner then starts at its end.
            Some(snapshot) if reply.from_idx >= slice.next() => {
                if reply.from_idx > covered {
                    self.snapshot = Some((reply.from_idx, snapshot));
                }
                slice.got_from = reply.from_idx;
                slice.got = reply.entries;
            }
            Some(_) => return,
            // Plain entries continue what the slice holds, or start where
            // the log we hold (`covered`) ends, which may be past it; a part
            // that overlaps what the slice holds (a late answer to an earlier
            // request) is the same decided log, and only what follows is kept.
            None if reply.from_idx > slice.next() && reply.from_idx <= covered => {
                slice.got_from = reply.from_idx;
                slice.got = reply.entries;
            }
            None if reply.from_idx >= slice.from && reply.from_idx <= slice.next() => {
                let skip = (slice.next() - reply.from_idx) as usize;
                slice.got.extend(reply.entries.into_iter().skip(skip));
            }
            None => return,
        }
        slice.progressed = true;
        if self.stopsign.is_none() {
            self.stopsign = reply.stopsign;
        }
        // A source answers with a bounded number of entries: ask the same
        // one for the rest of the slice at once.
        let covered = self.covered();
        if !self.slices[i].is_done(covered) {
            self.ask_slice(i, covered);
        }
    }

    /// The whole log, once every slice (or a snapshot past it) is in.
    pub(crate) fn finish(&mut self) -> Option<Pulled<T>> {
        let covered = self.covered();
        if !self.slices.iter().all(|s| s.is_done(covered)) {
            return None;
        }
        let end = self.log_len.max(covered);
        // Each slice holds its part from where a snapshot left off, and the
        // newest snapshot covers everything below `covered`, so the parts at
        // and above `covered` make up the log to `end`.
        let mut entries = Vec::with_capacity(self.slices.iter().map(|s| s.got.len()).sum());
        let mut next = covered;
        for slice in &mut self.slices {
            let from = slice.got_from;
            for (e, i) in std::mem::take(&mut slice.got).into_iter().zip(from..) {
                if i == next && i < end {
                    entries.push(e);
                    next += 1;
                }
            }
        }
        if next != end {
            // Only a bug here could leave a hole; rather than install a log
            // with one, pull again from the start.
            debug_assert_eq!(next, end, "the slices cover the log");
            for slice in &mut self.slices {
                slice.got_from = slice.from;
                slice.got.clear();
                slice.progressed = false;
            }
            self.snapshot = None;
            self.ask(true);
            return None;
        }
        Some(Pulled {
            snapshot: self.snapshot.take().map(|(_, s)| s),
            stopsign: self.stopsign.take(),
            start: covered,
            entries,
            log_len: end,
        })
    }
}

/// A server joining a new configuration that knows only where the old
/// servers are, not how long the log to pull is: it asks them (and its new
/// peers) how the previous configuration ended, every resend timeout, until
/// one that knows answers. Then it pulls, as [`Joining`] does.
///
/// ```text
///  J ──StopSignRequest (new configuration's id)──▶ each source and peer
///  old server whose decided stop-sign names J,
///  or a server of the new configuration that knows how the old one ended
///    ──StopSignReply{decided: Some(ss, stop_idx, ..)}──▶ J
///  J: Migration { log_len: stop_idx, sources } and starts pulling
/// ```
pub(crate) struct Discovery {
    /// The old servers to pull from, as the user named them.
    sources: Vec<NodeId>,
    /// Whom to ask: the sources, then the new configuration's other servers.
    ask: Vec<NodeId>,
    resend: LogicalClock,
    /// Whether the requests are due (at once when discovery starts).
    due: bool,
    ticks: u64,
}

impl Discovery {
    pub(crate) fn start(sources: Vec<NodeId>, peers: &[NodeId], resend_ticks: u64) -> Self {
        let mut ask = sources.clone();
        for &p in peers {
            if !ask.contains(&p) {
                ask.push(p);
            }
        }
        Self {
            sources,
            ask,
            resend: LogicalClock::with(resend_ticks),
            due: true,
            ticks: 0,
        }
    }

    pub(crate) fn tick(&mut self) {
        self.ticks += 1;
        if self.resend.tick_and_check() {
            self.due = true;
        }
    }

    pub(crate) fn ticks(&self) -> u64 {
        self.ticks
    }

    /// Whether `from` is a server this joiner asked.
    pub(crate) fn asked(&self, from: NodeId) -> bool {
        self.ask.contains(&from)
    }

    pub(crate) fn sources(&self) -> &[NodeId] {
        &self.sources
    }

    /// The servers to ask now, if the requests are due.
    pub(crate) fn take_due(&mut self) -> Option<&[NodeId]> {
        if std::mem::take(&mut self.due) {
            Some(&self.ask)
        } else {
            None
        }
    }
}
