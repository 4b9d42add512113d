//! Joining a new configuration: a server that was not in the previous
//! configuration pulls that configuration's decided log from several of its
//! servers in parallel, as in the Omni-Paxos paper, before it takes part. A
//! server that was in it but missed part of its decided log (see
//! `stragglers.rs`) pulls the rest the same way.
//!
//! ```text
//!  log S..L in parts of at most max_entries_per_message entries
//!  (S: what the joiner's storage already holds decided, 0 for a new server;
//!   a small log is cut into one part per source, so it still comes in parallel)
//!  J ──PullLog{part}──▶ source i     at most PULL_WINDOW (4) parts in flight per
//!                                    source, PULL_WINDOW × sources in all
//!  source ──PullLogReply{from, to, snapshot?, entries, stopsign}──▶ J
//!     at most max_entries_per_message entries and max_message_bytes (by
//!     Entry::size_hint, at least one entry); at most PULL_WINDOW replies
//!     queued per puller until the driver takes the outgoing messages.
//!     A short reply ends its part; the rest becomes a new part.
//!  a part that starts in the source's compacted prefix: its snapshot first,
//!     in the reply if it is one part by Snapshot::into_parts, else
//!  source ──PullSnapshotPart{covers, part 0, parts}──▶ J   (source keeps the parts)
//!  J ──PullSnapshot{covers, parts, part}──▶ that source   (≤ PULL_WINDOW ahead)
//!     J asks no one else for the log below `covers` meanwhile; once all
//!     parts are in, the rebuilt snapshot is written like a snapshot reply's
//!  J: the first reply saying how the previous configuration ended (or what
//!     the storage recorded) is persisted first (set_previous_configuration_end):
//!     from then on the storage marks J as joining, decided_idx < stop_idx;
//!     until then entries wait in memory, and every resend timeout J asks
//!     each source for one entry (its reply says, once it decided the stop-sign)
//!  J: each time the stored prefix can grow, the parts that continue it are
//!     appended in one write that also raises the decided index; parts past
//!     a gap wait in memory (at most the parts in flight)
//!  a part without an answer for resend_message_tick_timeout ticks moves to
//!  the next source, or sooner (once per timeout) when it waited twice the
//!  recent round trip (lost, most likely); a source that answered nothing for
//!  a whole timeout after a request counts as unresponsive
//!  replies are taken only from a source the part was asked of, inside the
//!  range it was asked for
//!  decided_idx reaches L  ->  J runs as an ordinary server of the new configuration
//! ```
//!
//! Until then the joiner neither votes nor leads: a server without the
//! decided log must not be counted in a read quorum, or a leader of the new
//! configuration could start from an empty log. A restart does not change
//! that: a server whose storage records how the previous configuration ended
//! (`stop_idx`) but whose decided index is below it, and which promised
//! nothing in its configuration, resumes the pull from its decided index
//! however it is built.

use crate::{
    clock::LogicalClock,
    errors::ConfigError,
    messages::{PaxosMsg, PullLog, PullLogReply, PullSnapshot, PullSnapshotPart, StopSignDecided},
    storage::{Entry, OriginIds, OriginRun, OriginTable, Snapshot},
    util::{ConfigurationId, MAX_LOG_INDEX, NodeId},
};

/// How many parts a joiner has in flight per source (asked and not yet
/// answered), and, times the number of sources, how many parts it has at
/// most asked or held in memory. It bounds what a join holds: at most
/// `PULL_WINDOW × sources` parts of one reply each, so
/// `PULL_WINDOW × sources × max_message_bytes` (plus one entry per part, for
/// entries larger than the bound). A source queues as many replies per
/// puller ([`MAX_QUEUED_PULL_REPLIES`]).
pub(crate) const PULL_WINDOW: usize = 4;

/// How many pull replies a source queues for one puller until the driver
/// takes the outgoing messages: as many as the puller has parts in flight
/// with it. More requests are dropped; the puller asks again after its
/// resend timeout.
pub(crate) const MAX_QUEUED_PULL_REPLIES: usize = PULL_WINDOW;

/// The most parts a pulled snapshot may come in: a bound on what a faulty
/// source can make a joiner gather, as for a leader's snapshot parts.
pub(crate) const MAX_PULL_SNAPSHOT_PARTS: u32 = 1 << 16;

/// How long a source keeps a snapshot it split for pullers after the last
/// request for one of its parts, in resend timeouts. A joiner asks for the
/// next parts as soon as earlier ones arrive, so a pause this long means the
/// pullers are gone (or will start over with the source's current snapshot).
const SERVED_SNAPSHOT_KEEP_TIMEOUTS: u64 = 8;

/// What a source's pull replies are waiting in its outgoing buffer for: a
/// range of the log (by its first index) or one part of a snapshot. A source
/// queues at most one reply per key and [`MAX_QUEUED_PULL_REPLIES`] per
/// puller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PullKey {
    Log(u64),
    SnapshotPart(u32),
}

/// A source's snapshot split into parts for pullers (see
/// [`PullSnapshotPart`]): split once, when a pull first needs it, and kept
/// while pullers ask for its parts, so that sending a snapshot of `k` parts
/// costs one split, not `k`. Splitting anew for every part would make a
/// large snapshot's transfer quadratic in its size.
pub(crate) struct SnapshotServer<T: Entry> {
    served: Option<ServedSnapshot<T>>,
    /// Ticks after the last request at which the split is dropped.
    keep_ticks: u64,
}

struct ServedSnapshot<T: Entry> {
    /// The snapshot stands for the decided log below this index.
    covers: u64,
    parts: Vec<T::Snapshot>,
    /// Ticks since a part was last asked for.
    idle_ticks: u64,
}

/// How a source answers a pull that starts in its compacted prefix
/// ([`SnapshotServer::split`]).
pub(crate) enum SnapshotAnswer<T: Entry> {
    /// The snapshot fits one message: a [`PullLogReply`] carries it.
    Whole(T::Snapshot),
    /// The snapshot is held in this many parts: send part 0.
    Parts(u32),
    /// [`Snapshot::into_parts`] broke its contract (no part, or more than
    /// [`MAX_PULL_SNAPSHOT_PARTS`]): nothing can stand for the snapshot.
    Unusable(usize),
}

impl<T: Entry> SnapshotServer<T> {
    pub(crate) fn new(resend_ticks: u64) -> Self {
        Self {
            served: None,
            keep_ticks: resend_ticks.saturating_mul(SERVED_SNAPSHOT_KEEP_TIMEOUTS),
        }
    }

    /// How many parts the snapshot of the log below `covers` is held in, if
    /// it is.
    pub(crate) fn held(&mut self, covers: u64) -> Option<u32> {
        let served = self.served.as_mut().filter(|s| s.covers == covers)?;
        served.idle_ticks = 0;
        Some(served.parts.len() as u32)
    }

    /// Splits `snapshot` (of the log below `covers`) into parts of about
    /// `max_bytes`; one that splits into several is kept, replacing any
    /// other, for the pullers to ask its parts of.
    pub(crate) fn split(
        &mut self,
        covers: u64,
        snapshot: T::Snapshot,
        max_bytes: usize,
    ) -> SnapshotAnswer<T> {
        let mut parts = snapshot.into_parts(max_bytes);
        match parts.len() {
            1 => SnapshotAnswer::Whole(parts.pop().expect("length checked")),
            n if n == 0 || n > MAX_PULL_SNAPSHOT_PARTS as usize => SnapshotAnswer::Unusable(n),
            n => {
                self.served = Some(ServedSnapshot {
                    covers,
                    parts,
                    idle_ticks: 0,
                });
                SnapshotAnswer::Parts(n as u32)
            }
        }
    }

    /// Part `part` of the snapshot of the log below `covers` in `parts`
    /// parts, if that is the snapshot held.
    pub(crate) fn part(&mut self, covers: u64, parts: u32, part: u32) -> Option<&T::Snapshot> {
        let served = self
            .served
            .as_mut()
            .filter(|s| s.covers == covers && s.parts.len() == parts as usize)?;
        served.idle_ticks = 0;
        served.parts.get(part as usize)
    }

    /// Drops the split once no puller asked for a while.
    pub(crate) fn tick(&mut self) {
        if let Some(s) = &mut self.served {
            s.idle_ticks += 1;
            if s.idle_ticks > self.keep_ticks {
                self.served = None;
            }
        }
    }
}

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

/// Where a joining server is ([`MigrationStatus::stage`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum MigrationStage {
    /// Asking the previous configuration's servers how it ended, to learn
    /// how long the log to pull is ([`OmniPaxosConfig::build_joining_from`](crate::OmniPaxosConfig::build_joining_from)).
    Discovering,
    /// Pulling the previous configuration's decided log.
    Pulling,
}

/// What one source of a pull is doing ([`MigrationStatus::sources`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct SourceStatus {
    /// The source.
    pub pid: NodeId,
    /// Parts asked of it and not answered yet: at most four new parts, more
    /// only while parts move on from silent sources (see
    /// [`OmniPaxos::get_migration_status`](crate::OmniPaxos::get_migration_status)).
    pub outstanding: usize,
    /// Whether it left its parts unanswered for a whole resend timeout:
    /// its parts moved on to other sources. Cleared when it answers again.
    pub unresponsive: bool,
    /// Entries taken from its replies so far.
    pub entries_received: u64,
}

/// A joining server's progress, for operators
/// ([`OmniPaxos::get_migration_status`](crate::OmniPaxos::get_migration_status)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct MigrationStatus {
    /// Discovering the log's length, or pulling it.
    pub stage: MigrationStage,
    /// The length of the log to pull: the previous configuration's
    /// stop-sign index. `None` while discovering.
    pub log_len: Option<u64>,
    /// Where this pull started: what the storage held when it began (0 for
    /// a new server, more after a restart mid-pull).
    pub started_at: u64,
    /// The log below this index is in storage (decided); the pull is done
    /// when it reaches `log_len`.
    pub stored_idx: u64,
    /// Bytes of pulled entries and snapshots held in memory (by
    /// [`Entry::size_hint`] and [`Snapshot::size_hint`]): parts that arrived
    /// ahead of a part still missing, and the parts of a snapshot coming in
    /// parts (or the snapshot, until it is written).
    pub held_bytes: usize,
    /// The most `held_bytes` has been during this pull (counting each reply
    /// as it arrives, before it is written).
    pub peak_held_bytes: usize,
    /// Each source, in the order they are asked.
    pub sources: Vec<SourceStatus>,
    /// Whether the stored prefix did not grow during the last resend
    /// timeout (a warning is logged once when a stall begins).
    pub stalled: bool,
    /// Ticks spent joining so far.
    pub ticks: u64,
}

/// One part of the log, who was asked for it, and what came.
#[derive(Debug)]
struct Part<T: Entry> {
    /// The part is `from..to`.
    from: u64,
    to: u64,
    /// The source asked now, by position in `sources`.
    source: usize,
    /// Every source this part was asked of: a late answer of one that was
    /// asked before the part moved on to the next still counts, an answer
    /// from anyone else does not.
    asked: Vec<NodeId>,
    /// The range the part was first asked for: an answer must lie inside it.
    /// (A part later starts further on, after a snapshot, or ends earlier,
    /// when an answer came short.)
    asked_range: (u64, u64),
    /// The entries received, from `from` on.
    got: Vec<T>,
    /// What `got` holds by [`Entry::size_hint`].
    bytes: usize,
    /// Whether an answer for this part came since the resend timer last
    /// fired: only a part without one moves on to the next source, so a
    /// source that is slow but sending is not sent duplicate requests.
    progressed: bool,
    /// The tick (of [`Joining::ticks`]) it was last asked at.
    asked_at: u64,
    /// Whether it moved on early (see [`Joining::retry_overdue`]) since the
    /// resend timer last fired: at most once per timeout.
    retried_early: bool,
}

impl<T: Entry> Part<T> {
    /// The first index of the part not received yet.
    fn next(&self) -> u64 {
        self.from + self.got.len() as u64
    }

    fn is_complete(&self) -> bool {
        self.next() >= self.to
    }
}

/// One source and what it has done.
#[derive(Debug)]
struct Source {
    pid: NodeId,
    /// The tick of the oldest request it has not answered since (any
    /// answer clears it): a source silent for a whole resend timeout after
    /// a request is unresponsive.
    waiting_since: Option<u64>,
    unresponsive: bool,
    entries_received: u64,
}

/// A snapshot a source sent (of `0..covers`), with the entries after it,
/// waiting to be written.
struct SnapshotPart<T: Entry> {
    covers: u64,
    snapshot: T::Snapshot,
    entries: Vec<T>,
    bytes: usize,
}

/// A snapshot a source is sending in parts ([`PullSnapshotPart`]), being
/// gathered: from one source, in order, at most [`PULL_WINDOW`] parts asked
/// ahead of those in hand.
struct Gathering<T: Entry> {
    source: NodeId,
    covers: u64,
    parts: u32,
    /// Parts 0.. in hand, in order.
    got: Vec<T::Snapshot>,
    /// Parts that came ahead of one still missing (the network reordered
    /// them), with their positions; only parts asked, so at most the window.
    early: Vec<(u32, T::Snapshot)>,
    /// Parts `0..asked` have been asked for (part 0 answers a `PullLog`).
    asked: u32,
    /// What `got` and `early` hold by [`Snapshot::size_hint`].
    bytes: usize,
    /// Whether a part came since the resend timer last fired.
    progressed: bool,
    /// Resend timeouts in a row without a part: a gathering that stalls
    /// gives way to another source's snapshot.
    stalls: u32,
}

/// What the joiner writes next: a snapshot of `0..start` if there is one,
/// then `entries` from `start` on, all decided.
pub(crate) struct Ready<T: Entry> {
    pub(crate) snapshot: Option<T::Snapshot>,
    pub(crate) start: u64,
    pub(crate) entries: Vec<T>,
    /// The entries' origin ids, index 0 being `start`.
    pub(crate) origins: OriginIds,
    /// With a snapshot: what the log below `start` held.
    pub(crate) origin_table: Option<OriginTable>,
}

/// What the resend timer found ([`Joining::tick`]).
#[derive(Debug, Default)]
pub(crate) struct TickReport {
    /// The stored prefix stopped growing: nothing came for a whole resend
    /// timeout (reported once per stall).
    pub(crate) stall_began: bool,
}

/// The joiner's progress.
pub(crate) struct Joining<T: Entry> {
    /// The origin ids of pulled entries not yet written, as the replies
    /// gave them (absolute indices; sources may overlap).
    pulled_origins: Vec<OriginRun>,
    /// What the compacted prefix of the snapshot pulled held.
    pulled_table: Option<OriginTable>,
    /// This server and its configuration: a reply's word on how the previous
    /// configuration ended must name them.
    pid: NodeId,
    configuration_id: ConfigurationId,
    /// Where the pull started.
    started_at: u64,
    /// The storage holds the decided log below this index.
    stored: u64,
    log_len: u64,
    sources: Vec<Source>,
    /// Parts asked or held, sorted by `from`, disjoint, all at or past `stored`.
    parts: Vec<Part<T>>,
    /// Ranges below `cursor` in no part (the rest of a part that came short),
    /// sorted; asked before anything past `cursor`.
    unassigned: Vec<(u64, u64)>,
    /// Everything from here to `log_len` is in no part yet.
    cursor: u64,
    /// The longest a recent part took from being asked to being answered,
    /// in ticks (decaying by an eighth with each answer): a part unanswered
    /// for much longer was most likely lost.
    round_trip: Option<u64>,
    /// How many entries a new part has: at most `max_entries_per_message`.
    part_len: u64,
    /// A snapshot that came, not written yet.
    snapshot: Option<SnapshotPart<T>>,
    /// A snapshot coming in parts, not complete yet.
    gathering: Option<Gathering<T>>,
    /// How the previous configuration ended, once known.
    stopsign: Option<StopSignDecided>,
    /// Whether `stopsign` is persisted: nothing pulled is written before, so
    /// that a storage holding part of the log always says it is joining.
    recorded: bool,
    held_bytes: usize,
    peak_held_bytes: usize,
    /// `stored` when the resend timer last fired, to tell a stall.
    stored_at_last_resend: u64,
    stalled: bool,
    resend: LogicalClock,
    /// The resend timeout, in ticks.
    resend_ticks: u64,
    outgoing: Vec<(NodeId, PaxosMsg<T>)>,
    /// Ticks since joining started, for reporting how long migration took.
    ticks: u64,
}

/// The settings a pull takes from the joiner's config.
pub(crate) struct PullSettings {
    pub(crate) pid: NodeId,
    pub(crate) configuration_id: ConfigurationId,
    pub(crate) resend_ticks: u64,
    pub(crate) max_entries_per_message: usize,
}

impl<T: Entry> Joining<T> {
    /// Starts pulling `from..m.log_len` (the storage holds the decided log
    /// below `from`). `stopsign`: how the previous configuration ended, if
    /// known, and whether the storage records it.
    pub(crate) fn start(
        m: Migration,
        from: u64,
        settings: &PullSettings,
        stopsign: Option<(StopSignDecided, bool)>,
    ) -> Self {
        debug_assert!(from < m.log_len, "there is something to pull");
        let mut sources: Vec<Source> = Vec::with_capacity(m.sources.len());
        for pid in m.sources {
            if pid != settings.pid && pid != 0 && !sources.iter().any(|s| s.pid == pid) {
                sources.push(Source {
                    pid,
                    waiting_since: None,
                    unresponsive: false,
                    entries_received: 0,
                });
            }
        }
        let k = sources.len().max(1) as u64;
        // A log of fewer than `k` full parts is still pulled from every
        // source at once.
        let part_len = (m.log_len - from)
            .div_ceil(k)
            .clamp(1, settings.max_entries_per_message.max(1) as u64);
        let (stopsign, recorded) = match stopsign {
            Some((d, recorded)) => (Some(d), recorded),
            None => (None, false),
        };
        let mut joining = Self {
            pid: settings.pid,
            configuration_id: settings.configuration_id,
            started_at: from,
            stored: from,
            log_len: m.log_len,
            sources,
            parts: Vec::new(),
            unassigned: Vec::new(),
            cursor: from,
            round_trip: None,
            part_len,
            snapshot: None,
            gathering: None,
            stopsign,
            recorded,
            held_bytes: 0,
            peak_held_bytes: 0,
            pulled_origins: Vec::new(),
            pulled_table: None,
            stored_at_last_resend: from,
            stalled: false,
            resend: LogicalClock::with(settings.resend_ticks),
            resend_ticks: settings.resend_ticks,
            outgoing: Vec::new(),
            ticks: 0,
        };
        joining.fill();
        joining
    }

    /// The most parts asked or held at once.
    fn max_parts(&self) -> usize {
        PULL_WINDOW * self.sources.len().max(1)
    }

    /// Parts asked of source `s` and not complete.
    fn outstanding(&self, s: usize) -> usize {
        self.parts
            .iter()
            .filter(|p| p.source == s && !p.is_complete())
            .count()
    }

    /// The source a new part goes to: the responsive one with the fewest
    /// parts outstanding, below the window; an unresponsive one only if no
    /// other has room. Ties go to the earlier source, so that parts are
    /// dealt round-robin.
    /// With `force`, the least loaded source even if every window is full.
    fn pick_source(&self, force: bool) -> Option<usize> {
        let load: Vec<usize> = (0..self.sources.len())
            .map(|s| self.outstanding(s))
            .collect();
        let best = |responsive: bool| {
            (0..self.sources.len())
                .filter(|&s| {
                    (force || load[s] < PULL_WINDOW) && self.sources[s].unresponsive != responsive
                })
                .min_by_key(|&s| load[s])
        };
        best(true).or_else(|| best(false))
    }

    /// The next range to make a part of: the lowest unassigned one, else
    /// the next `part_len` entries past `cursor`.
    fn next_range(&mut self) -> Option<(u64, u64)> {
        if !self.unassigned.is_empty() {
            let (from, to) = self.unassigned[0];
            let to = to.min(from + self.part_len);
            if to >= self.unassigned[0].1 {
                self.unassigned.remove(0);
            } else {
                self.unassigned[0].0 = to;
            }
            return Some((from, to));
        }
        if self.cursor >= self.log_len {
            return None;
        }
        let from = self.cursor;
        let to = self.log_len.min(from + self.part_len);
        self.cursor = to;
        Some((from, to))
    }

    /// Makes and asks new parts while the window has room.
    fn fill(&mut self) {
        loop {
            let frontier_unassigned = self
                .unassigned
                .first()
                .is_some_and(|r| r.0 <= self.stored_or_snapshot());
            // The part that continues the stored prefix is always asked,
            // even with the window full, so that the pull cannot wedge. (The
            // window's accounting rules that out: the rest of a short part
            // at the frontier is left only when that part is written, which
            // makes room.)
            let full = self.parts.len() >= self.max_parts();
            if full && !frontier_unassigned {
                return;
            }
            let Some(s) = self.pick_source(full) else {
                return;
            };
            let Some((from, to)) = self.next_range() else {
                return;
            };
            let pid = self.sources[s].pid;
            self.sources[s].waiting_since.get_or_insert(self.ticks);
            let part = Part {
                from,
                to,
                source: s,
                asked: vec![pid],
                asked_range: (from, to),
                got: Vec::new(),
                bytes: 0,
                // A new part waits a whole resend timeout before it moves on.
                progressed: true,
                asked_at: self.ticks,
                retried_early: false,
            };
            let at = self.parts.partition_point(|p| p.from < from);
            self.parts.insert(at, part);
            self.outgoing.push((
                pid,
                PaxosMsg::PullLog(PullLog {
                    from_idx: from,
                    to_idx: to,
                }),
            ));
        }
    }

    /// Asks part `i`'s current source for what the part still lacks.
    fn ask_part(&mut self, i: usize) {
        let ticks = self.ticks;
        let part = &mut self.parts[i];
        part.asked_at = ticks;
        let source = &mut self.sources[part.source];
        source.waiting_since.get_or_insert(ticks);
        let to = source.pid;
        if !part.asked.contains(&to) {
            part.asked.push(to);
        }
        let msg = PullLog {
            from_idx: part.next(),
            to_idx: part.to,
        };
        self.outgoing.push((to, PaxosMsg::PullLog(msg)));
    }

    /// Advances the timers; when the resend timer fires, parts that got
    /// nothing since the last firing move on to the next source, and
    /// sources that answered nothing count as unresponsive.
    pub(crate) fn tick(&mut self) -> TickReport {
        self.ticks += 1;
        let mut report = TickReport::default();
        if !self.resend.tick_and_check() {
            self.retry_overdue();
            return report;
        }
        for p in &mut self.parts {
            p.retried_early = false;
        }
        self.tick_gathering();
        let n = self.sources.len();
        // A source that answered nothing for a whole timeout after it was
        // asked is unresponsive.
        let (now, timeout) = (self.ticks, self.resend_ticks);
        for s in &mut self.sources {
            if s.waiting_since.is_some_and(|t| now - t >= timeout) {
                s.unresponsive = true;
            }
        }
        let mut load: Vec<usize> = (0..n).map(|s| self.outstanding(s)).collect();
        for i in 0..self.parts.len() {
            if self.parts[i].is_complete() || std::mem::take(&mut self.parts[i].progressed) {
                continue;
            }
            // The next source after the current one that is responsive and
            // has room in its window; else the next responsive one; else
            // simply the next. (So a source may have more than its window
            // outstanding while others are silent; the parts in all never
            // exceed the window times the sources.)
            let cur = self.parts[i].source;
            let order = || (1..=n).map(|d| (cur + d) % n);
            let next = order()
                .find(|&s| !self.sources[s].unresponsive && load[s] < PULL_WINDOW)
                .or_else(|| order().find(|&s| !self.sources[s].unresponsive))
                .unwrap_or((cur + 1) % n);
            load[cur] -= 1;
            load[next] += 1;
            self.parts[i].source = next;
            self.ask_part(i);
        }
        if self.stopsign.is_none() {
            // Nothing is written before we know how the previous
            // configuration ended: ask every source for one entry, whose
            // answer says it once the source decided the stop-sign.
            for s in &self.sources {
                let probe = PullLog {
                    from_idx: self.stored,
                    to_idx: self.stored + 1,
                };
                self.outgoing.push((s.pid, PaxosMsg::PullLog(probe)));
            }
        }
        self.fill();
        let stalled = self.stored == self.stored_at_last_resend && !self.is_done();
        report.stall_began = stalled && !self.stalled;
        self.stalled = stalled;
        self.stored_at_last_resend = self.stored;
        report
    }

    /// A part still unanswered long after answers usually come (twice the
    /// recent round trip, and two ticks more) was most likely lost on the
    /// way, and every part past it waits in the window: it moves on to the
    /// next source at once rather than at the next resend timeout, at most
    /// once per timeout. Over a lossy network a pull of many small parts
    /// would otherwise crawl at a few parts per timeout.
    fn retry_overdue(&mut self) {
        let Some(rtt) = self.round_trip else {
            return;
        };
        let n = self.sources.len();
        let due = rtt.saturating_mul(2).saturating_add(2);
        for i in 0..self.parts.len() {
            let p = &self.parts[i];
            if p.is_complete()
                || p.retried_early
                || self.ticks - p.asked_at <= due
                || self.gathering_covers(p)
            {
                continue;
            }
            let cur = p.source;
            let next = (1..=n)
                .map(|d| (cur + d) % n)
                .find(|&s| !self.sources[s].unresponsive)
                .unwrap_or(cur);
            self.parts[i].retried_early = true;
            self.parts[i].source = next;
            self.ask_part(i);
        }
    }

    /// How the previous configuration ended, learned before the pull began
    /// (not recorded in storage yet).
    pub(crate) fn set_stopsign(&mut self, decided: StopSignDecided) {
        if self.stopsign.is_none() && self.describes_our_start(&decided) {
            self.stopsign = Some(decided);
        }
    }

    /// Whether `d` says how the configuration before ours ended, with us in
    /// ours, at the index we pull to.
    fn describes_our_start(&self, d: &StopSignDecided) -> bool {
        d.ss.config_id == self.configuration_id
            && d.stop_idx == self.log_len
            && d.stop_idx <= MAX_LOG_INDEX
            && d.ss.nodes.contains(&self.pid)
    }

    /// How the previous configuration ended, if known and not yet recorded:
    /// the caller persists it, then calls [`recorded`](Self::recorded).
    pub(crate) fn to_record(&self) -> Option<&StopSignDecided> {
        self.stopsign.as_ref().filter(|_| !self.recorded)
    }

    /// The storage now records how the previous configuration ended.
    pub(crate) fn recorded(&mut self) {
        self.recorded = true;
    }

    pub(crate) fn ticks(&self) -> u64 {
        self.ticks
    }

    /// The length of the log being pulled.
    pub(crate) fn log_len(&self) -> u64 {
        self.log_len
    }

    /// What is being pulled, as a restarted joiner would be told to pull it
    /// (it continues from what its storage holds).
    pub(crate) fn migration(&self) -> Migration {
        Migration {
            log_len: self.log_len,
            sources: self.sources.iter().map(|s| s.pid).collect(),
        }
    }

    pub(crate) fn status(&self) -> MigrationStatus {
        MigrationStatus {
            stage: MigrationStage::Pulling,
            log_len: Some(self.log_len),
            started_at: self.started_at,
            stored_idx: self.stored,
            held_bytes: self.held_bytes,
            peak_held_bytes: self.peak_held_bytes,
            sources: (0..self.sources.len())
                .map(|s| SourceStatus {
                    pid: self.sources[s].pid,
                    outstanding: self.outstanding(s),
                    unresponsive: self.sources[s].unresponsive,
                    entries_received: self.sources[s].entries_received,
                })
                .collect(),
            stalled: self.stalled,
            ticks: self.ticks,
        }
    }

    pub(crate) fn take_outgoing(&mut self) -> std::vec::Drain<'_, (NodeId, PaxosMsg<T>)> {
        self.outgoing.drain(..)
    }

    fn hold(&mut self, bytes: usize) {
        self.held_bytes = self.held_bytes.saturating_add(bytes);
        self.peak_held_bytes = self.peak_held_bytes.max(self.held_bytes);
    }

    /// Takes `from`'s reply. Its entries are used only if it comes from a
    /// source their part was asked of and lies within the range asked (a
    /// snapshot may stand for the part's start): anything else is ignored,
    /// and the part asked for again later, perhaps of another source. What
    /// it says of how the previous configuration ended is used if it comes
    /// from a source and names this server, its configuration and the log
    /// length pulled. Every index is checked before it is used in
    /// arithmetic.
    pub(crate) fn handle_reply(&mut self, from: NodeId, reply: PullLogReply<T>) {
        if reply.snapshot.is_some() && !T::Snapshot::use_snapshots() {
            return;
        }
        // The entries must be exactly `from_idx..to_idx`; a snapshot alone
        // may end anywhere (its `from_idx`), even past `to_idx`.
        let snapshot_only = reply.snapshot.is_some() && reply.entries.is_empty();
        let shape_ok = snapshot_only
            || reply.to_idx.checked_sub(reply.from_idx) == Some(reply.entries.len() as u64);
        if !shape_ok || reply.to_idx > self.log_len || reply.from_idx > MAX_LOG_INDEX {
            return;
        }
        // Ids name the reply's entries, or nothing.
        if reply.origins.end() > reply.entries.len() as u64
            || reply
                .origin_table
                .as_ref()
                .is_some_and(|t| reply.snapshot.is_none() || !t.is_well_formed())
        {
            return;
        }
        self.learn_stopsign(from, reply.stopsign.as_ref());
        let Some(i) = self.parts.iter().position(|p| {
            !p.is_complete()
                && p.asked.contains(&from)
                && reply.to_idx > p.next()
                && reply.to_idx <= p.asked_range.1
                && (reply.snapshot.is_some() || reply.from_idx >= p.asked_range.0)
        }) else {
            return;
        };
        let s = self.sources.iter().position(|s| s.pid == from);
        if let Some(ids) = reply.origins.shifted(reply.from_idx) {
            self.pulled_origins.extend_from_slice(ids.runs());
        }
        match reply.snapshot {
            // A source that compacted past where the part continues answers
            // with its snapshot (of everything below `from_idx`) and the
            // entries after it; one that compacted past the whole part, with
            // its snapshot alone. Its snapshot may even reach past
            // `log_len`, when the source went on in the new configuration and
            // compacted there: it is still a prefix of the same log, and the
            // joiner then ends at its end. A snapshot covers all parts below
            // it, so it is written at once (with its entries).
            Some(snapshot) if reply.from_idx > self.stored_or_snapshot() => {
                let bytes = reply.entries.iter().map(Entry::size_hint).sum::<usize>()
                    + snapshot.size_hint();
                let covers = reply.from_idx;
                let end = covers + reply.entries.len() as u64;
                if let Some(old) = self.snapshot.take() {
                    self.held_bytes = self.held_bytes.saturating_sub(old.bytes);
                }
                self.hold(bytes);
                self.pulled_table = reply.origin_table;
                self.snapshot = Some(SnapshotPart {
                    covers,
                    snapshot,
                    entries: reply.entries,
                    bytes,
                });
                self.drop_below(end);
            }
            Some(_) if reply.entries.is_empty() => return,
            // A snapshot that adds nothing: its entries are plain ones.
            Some(_) | None => {
                let ticks = self.ticks;
                let part = &mut self.parts[i];
                if reply.from_idx > part.next() || reply.from_idx < part.asked_range.0 {
                    return;
                }
                let sample = ticks - part.asked_at;
                self.round_trip = Some(self.round_trip.map_or(sample, |r| sample.max(r - r / 8)));
                let part = &mut self.parts[i];
                let skip = (part.next() - reply.from_idx) as usize;
                let take = (part.to - part.next()) as usize;
                let before = part.got.len();
                part.got
                    .extend(reply.entries.into_iter().skip(skip).take(take));
                let bytes: usize = part.got[before..].iter().map(Entry::size_hint).sum();
                part.bytes += bytes;
                part.progressed = true;
                let short = !part.is_complete();
                self.hold(bytes);
                if let Some(s) = s {
                    self.sources[s].entries_received += (self.parts[i].got.len() - before) as u64;
                }
                if short {
                    self.split_short(i);
                }
            }
        }
        if let Some(s) = s {
            self.sources[s].waiting_since = None;
            self.sources[s].unresponsive = false;
        }
        self.fill();
    }

    /// How the previous configuration ended, from any of our sources: a
    /// source of that configuration answers without it until it decided
    /// the stop-sign itself, so the first word may come later than the
    /// entries (which then wait in memory, see `take_ready`).
    fn learn_stopsign(&mut self, from: NodeId, said: Option<&StopSignDecided>) {
        if self.stopsign.is_some() || !self.sources.iter().any(|s| s.pid == from) {
            return;
        }
        if let Some(d) = said.filter(|d| self.describes_our_start(d)) {
            self.stopsign = Some(d.clone());
        }
    }

    /// Whether part `p` waits for the snapshot being gathered (it starts
    /// below the snapshot's end) while that snapshot is still coming: it is
    /// not asked of anyone else meanwhile, or every source would split its
    /// own snapshot for us.
    fn gathering_covers(&self, p: &Part<T>) -> bool {
        self.gathering
            .as_ref()
            .is_some_and(|g| g.stalls == 0 && p.next() < g.covers)
    }

    /// Takes one part of a snapshot that `from` sends in parts. Part 0
    /// answers a pull of ours that starts below the snapshot's end; it starts
    /// gathering, unless another source's snapshot is coming along (one
    /// that stalled for a resend timeout gives way). The other parts count
    /// only from the source and snapshot being gathered; each is checked
    /// before anything is kept. Once all parts are in, the rebuilt snapshot
    /// is written as a snapshot reply's would be, and the log from its end
    /// on is pulled as usual.
    pub(crate) fn handle_snapshot_part(&mut self, from: NodeId, m: PullSnapshotPart<T>) {
        let s = self.sources.iter().position(|s| s.pid == from);
        if !T::Snapshot::use_snapshots()
            || s.is_none()
            || m.parts < 2
            || m.parts > MAX_PULL_SNAPSHOT_PARTS
            || m.part >= m.parts
            || m.covers > MAX_LOG_INDEX
        {
            return;
        }
        self.learn_stopsign(from, m.stopsign.as_ref());
        if m.covers <= self.stored_or_snapshot() {
            // Nothing we lack: what is in hand already reaches that far.
            return;
        }
        // Part 0 starts a gathering: there is none, or the one there stalled
        // (its source may have dropped its parts and split anew), or its
        // source sends another snapshot. Otherwise it is a duplicate.
        let same =
            |g: &Gathering<T>| g.source == from && g.covers == m.covers && g.parts == m.parts;
        let start = m.part == 0
            && match &self.gathering {
                None => true,
                Some(g) => g.stalls > 0 || (g.source == from && !same(g)),
            };
        if start {
            let asked_for = self
                .parts
                .iter()
                .any(|p| !p.is_complete() && p.asked.contains(&from) && p.next() < m.covers);
            if !asked_for {
                return;
            }
            if let Some(old) = self.gathering.take() {
                self.held_bytes = self.held_bytes.saturating_sub(old.bytes);
            }
            self.gathering = Some(Gathering {
                source: from,
                covers: m.covers,
                parts: m.parts,
                got: Vec::new(),
                early: Vec::new(),
                asked: 1,
                bytes: 0,
                progressed: true,
                stalls: 0,
            });
        }
        if !self.gathering.as_ref().is_some_and(same) {
            return;
        }
        if m.origin_table.is_well_formed() {
            self.pulled_table
                .get_or_insert_with(OriginTable::new)
                .merge(&m.origin_table);
        }
        let Some(g) = self.gathering.as_mut() else {
            return;
        };
        let at = g.got.len() as u32;
        let bytes = m.snapshot.size_hint();
        if m.part == at {
            g.got.push(m.snapshot);
            // Parts that came early and now continue the ones in hand.
            while let Some(i) = g.early.iter().position(|(p, _)| *p == g.got.len() as u32) {
                let (_, part) = g.early.swap_remove(i);
                g.got.push(part);
            }
        } else if m.part > at && m.part < g.asked && !g.early.iter().any(|(p, _)| *p == m.part) {
            g.early.push((m.part, m.snapshot));
        } else {
            return;
        }
        g.bytes += bytes;
        g.progressed = true;
        g.stalls = 0;
        let covers = g.covers;
        self.hold(bytes);
        if let Some(s) = s {
            self.sources[s].waiting_since = None;
            self.sources[s].unresponsive = false;
        }
        // The parts the snapshot will cover are being answered.
        let ticks = self.ticks;
        for p in self.parts.iter_mut().filter(|p| p.next() < covers) {
            p.progressed = true;
            p.asked_at = ticks;
        }
        self.ask_snapshot_parts();
        self.finish_gathering();
    }

    /// Asks the source of the snapshot being gathered for the parts after
    /// those asked, up to [`PULL_WINDOW`] beyond those in hand.
    fn ask_snapshot_parts(&mut self) {
        let Some(g) = &mut self.gathering else {
            return;
        };
        let window_end = (g.got.len() as u32).saturating_add(PULL_WINDOW as u32);
        while g.asked < g.parts && g.asked < window_end {
            let req = PullSnapshot {
                covers: g.covers,
                parts: g.parts,
                part: g.asked,
            };
            self.outgoing.push((g.source, PaxosMsg::PullSnapshot(req)));
            g.asked += 1;
        }
    }

    /// Once every part of the snapshot being gathered is in: rebuilds it
    /// and takes it as a snapshot reply without entries (parts that did not
    /// make a snapshot are dropped; the pull then asks again, perhaps
    /// another source). The parts that now start at its end are asked for
    /// at once.
    fn finish_gathering(&mut self) {
        let Some(g) = self.gathering.take_if(|g| g.got.len() as u32 == g.parts) else {
            return;
        };
        self.held_bytes = self.held_bytes.saturating_sub(g.bytes);
        let Some(snapshot) = T::Snapshot::from_parts(g.got) else {
            return;
        };
        if g.covers <= self.stored_or_snapshot() {
            return;
        }
        if let Some(old) = self.snapshot.take() {
            self.held_bytes = self.held_bytes.saturating_sub(old.bytes);
        }
        self.hold(g.bytes);
        self.snapshot = Some(SnapshotPart {
            covers: g.covers,
            snapshot,
            entries: Vec::new(),
            bytes: g.bytes,
        });
        self.drop_below(g.covers);
        for i in 0..self.parts.len() {
            let p = &self.parts[i];
            if p.from == g.covers && !p.is_complete() && p.got.is_empty() {
                self.ask_part(i);
            }
        }
        self.fill();
    }

    /// The resend timer fired: a gathering without a part since the last
    /// firing asks its source again for the parts missing, and counts a
    /// stall (so that another source's snapshot may take over).
    fn tick_gathering(&mut self) {
        let Some(g) = &mut self.gathering else {
            return;
        };
        if std::mem::take(&mut g.progressed) {
            return;
        }
        g.stalls = g.stalls.saturating_add(1);
        let have = g.got.len() as u32;
        for part in have..g.asked {
            if !g.early.iter().any(|(p, _)| *p == part) {
                let req = PullSnapshot {
                    covers: g.covers,
                    parts: g.parts,
                    part,
                };
                self.outgoing.push((g.source, PaxosMsg::PullSnapshot(req)));
            }
        }
    }

    /// Part `i` came short (the source's bounds are tighter than ours): it
    /// ends where the answer ended, and the rest waits to be asked as a new
    /// part. The window counts parts, not ranges, so this makes no room: the
    /// rest is asked once a part is written.
    fn split_short(&mut self, i: usize) {
        let part = &mut self.parts[i];
        let (rest_from, rest_to) = (part.next(), part.to);
        part.to = rest_from;
        let at = self.unassigned.partition_point(|r| r.0 < rest_from);
        self.unassigned.insert(at, (rest_from, rest_to));
    }

    /// Where the log in hand ends: what the storage holds, or the snapshot
    /// waiting to be written.
    fn stored_or_snapshot(&self) -> u64 {
        self.snapshot
            .as_ref()
            .map_or(self.stored, |s| s.covers.max(self.stored))
    }

    /// Forgets every part and range below `idx` (written, or covered by a
    /// snapshot), and cuts those that reach past it.
    fn drop_below(&mut self, idx: u64) {
        let mut freed = 0usize;
        self.parts.retain_mut(|p| {
            if p.to <= idx {
                freed += p.bytes;
                return false;
            }
            if p.from < idx {
                let cut = ((idx - p.from) as usize).min(p.got.len());
                let dropped: usize = p.got.drain(..cut).map(|e| e.size_hint()).sum();
                freed += dropped;
                p.bytes -= dropped;
                p.from = idx;
            }
            true
        });
        if let Some(g) = self.gathering.take_if(|g| g.covers <= idx) {
            // The log in hand reaches past that snapshot already.
            freed += g.bytes;
        }
        self.held_bytes = self.held_bytes.saturating_sub(freed);
        self.unassigned.retain_mut(|r| {
            r.0 = r.0.max(idx);
            r.0 < r.1
        });
        self.cursor = self.cursor.max(idx);
    }

    /// What to write now, if anything: the snapshot that came, and the
    /// complete parts that continue the log in storage. Nothing before how
    /// the previous configuration ended is recorded.
    pub(crate) fn take_ready(&mut self) -> Option<Ready<T>> {
        if !self.recorded {
            return None;
        }
        let (snapshot, start, mut entries) = match self.snapshot.take() {
            Some(s) => {
                self.held_bytes = self.held_bytes.saturating_sub(s.bytes);
                (Some(s.snapshot), s.covers, s.entries)
            }
            None => (None, self.stored, Vec::new()),
        };
        let mut end = start + entries.len() as u64;
        // The complete parts that continue each other from `end` on (parts
        // are disjoint and sorted by `from`).
        let mut reach = end;
        let complete = self
            .parts
            .iter()
            .take_while(|p| {
                let continues = p.is_complete() && p.from <= reach && p.to > reach;
                if continues {
                    reach = p.to;
                }
                continues
            })
            .count();
        for mut p in self.parts.drain(..complete) {
            self.held_bytes = self.held_bytes.saturating_sub(p.bytes);
            let skip = (end - p.from) as usize;
            if skip > 0 {
                p.got.drain(..skip);
            }
            end = p.to;
            entries.append(&mut p.got);
        }
        if snapshot.is_none() && entries.is_empty() {
            return None;
        }
        let origins = OriginIds::from_overlapping(&mut self.pulled_origins, start..end)
            .shifted_down(start)
            .unwrap_or_default();
        let origin_table = if snapshot.is_some() {
            Some(self.pulled_table.take().unwrap_or_default())
        } else {
            None
        };
        Some(Ready {
            snapshot,
            start,
            entries,
            origins,
            origin_table,
        })
    }

    /// The storage now holds the decided log below `idx`.
    pub(crate) fn stored(&mut self, idx: u64) {
        debug_assert!(idx >= self.stored, "the stored prefix only grows");
        self.stored = self.stored.max(idx);
        self.pulled_origins.retain(|r| r.end() > idx);
        self.drop_below(self.stored);
        self.fill();
    }

    /// Whether the whole log is in storage.
    pub(crate) fn is_done(&self) -> bool {
        self.stored >= self.log_len
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
