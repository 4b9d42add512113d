//! Where each log entry came from: the identity a proposal keeps from the
//! server that made it to every log that holds it, so that a proposal sent
//! twice (a retry to a new leader, say) is appended once.
//!
//! * [`OriginId`] names one proposal: the server that made it, that
//!   server's incarnation (one more on every start on the same storage) and
//!   a sequence number the server counts up in that incarnation.
//! * [`OriginIds`] maps log indices to the ids of the entries there, in runs:
//!   a leader's batch of its own proposals, or a follower's forwarded batch,
//!   has consecutive indices and consecutive sequence numbers, and is one
//!   run of five numbers however many entries it holds.
//! * [`OriginTable`] says which proposals the compacted part of a log held
//!   (trimmed or taken into a snapshot), per origin: the newest incarnation
//!   seen and the sequence numbers of it, as ranges.
//!
//! Storages keep all three for the protocol (see
//! [`Storage::keeps_origins`](super::Storage::keeps_origins)); the values
//! are opaque to them beyond [`OriginIds::truncate`] and
//! [`OriginIds::trim`], which a storage calls when its log is cut or
//! trimmed.

use crate::util::NodeId;
use smallvec::SmallVec;
use std::ops::Range;

/// The identity of one proposal: made by server `origin` in its
/// `incarnation`-th life on its storage, `seq`-th in that life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct OriginId {
    /// The server that proposed the entry.
    pub origin: NodeId,
    /// How many times that server had started on its storage when it proposed.
    pub incarnation: u64,
    /// The proposal's number among that server's proposals in that incarnation.
    pub seq: u64,
}

impl OriginId {
    /// The id `k` proposals after this one in the same incarnation.
    fn plus(self, k: u64) -> Option<Self> {
        Some(Self {
            seq: self.seq.checked_add(k)?,
            ..self
        })
    }
}

/// Consecutive log indices `idx..idx + len` holding the proposals
/// `first`, `first.seq + 1`, ... of one origin and incarnation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct OriginRun {
    /// The log index of the run's first entry.
    pub idx: u64,
    /// How many entries the run covers (at least one).
    pub len: u64,
    /// The id of the entry at `idx`; the one at `idx + k` has `seq + k`.
    pub first: OriginId,
}

impl OriginRun {
    /// One past the run's last index.
    pub fn end(&self) -> u64 {
        self.idx + self.len
    }

    /// Whether `next` at index `idx` continues this run.
    #[inline]
    fn continued_by(&self, idx: u64, next: &OriginId) -> bool {
        idx == self.end()
            && next.origin == self.first.origin
            && next.incarnation == self.first.incarnation
            && self
                .first
                .plus(self.len)
                .is_some_and(|id| id.seq == next.seq)
    }
}

/// The ids of the entries of a stretch of log, by index, as runs sorted by
/// index that do not overlap. An index no run covers holds an entry with no
/// id (one written before ids existed).
///
/// Deserialising checks the runs (sorted, not overlapping, not empty, no
/// index or sequence number overflowing), so a value from a peer or a disk
/// is well-formed or an error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(try_from = "Vec<OriginRun>", into = "Vec<OriginRun>")
)]
pub struct OriginIds {
    /// One run inline: a batch of one origin's proposals, the common case,
    /// costs no allocation.
    runs: SmallVec<[OriginRun; 1]>,
}

/// Why a list of runs is not an [`OriginIds`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MalformedOriginIds(&'static str);

impl std::fmt::Display for MalformedOriginIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed origin ids: {}", self.0)
    }
}

impl std::error::Error for MalformedOriginIds {}

impl TryFrom<Vec<OriginRun>> for OriginIds {
    type Error = MalformedOriginIds;

    fn try_from(runs: Vec<OriginRun>) -> Result<Self, Self::Error> {
        let mut end = 0;
        for run in &runs {
            if run.len == 0 {
                return Err(MalformedOriginIds("a run is empty"));
            }
            if run.idx < end {
                return Err(MalformedOriginIds("runs overlap or are out of order"));
            }
            end = run
                .idx
                .checked_add(run.len)
                .ok_or(MalformedOriginIds("a run's end overflows"))?;
            if run.first.seq.checked_add(run.len).is_none() {
                return Err(MalformedOriginIds("a run's sequence numbers overflow"));
            }
        }
        Ok(Self {
            runs: SmallVec::from_vec(runs),
        })
    }
}

impl From<OriginIds> for Vec<OriginRun> {
    fn from(ids: OriginIds) -> Self {
        ids.runs.into_vec()
    }
}

impl OriginIds {
    /// No ids.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether no index has an id.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// The runs, sorted by index.
    pub fn runs(&self) -> &[OriginRun] {
        &self.runs
    }

    /// One past the last index with an id (0 if none has one).
    pub fn end(&self) -> u64 {
        self.runs.last().map_or(0, OriginRun::end)
    }

    /// How many indices have an id.
    pub fn count(&self) -> u64 {
        self.runs.iter().map(|r| r.len).sum()
    }

    /// Gives index `idx` the id `id`. Indices only grow: `idx` is at least
    /// [`end`](Self::end), or the call changes nothing and returns `false`.
    #[inline]
    pub fn push(&mut self, idx: u64, id: OriginId) -> bool {
        // The common case, inlined into the caller's loop: the next
        // proposal of the last run's origin lengthens the run.
        if let Some(last) = self.runs.last_mut() {
            if idx != u64::MAX && id.seq != u64::MAX && last.continued_by(idx, &id) {
                last.len += 1;
                return true;
            }
        }
        // The id goes as three words: passed by value it would be copied
        // to the stack on every call of the inlined fast path above.
        self.push_new_run(idx, id.origin, id.incarnation, id.seq)
    }

    /// The rest of [`push`](Self::push), out of line: the id `origin`,
    /// `incarnation`, `seq` starts a run, or is refused.
    #[inline(never)]
    fn push_new_run(&mut self, idx: u64, origin: NodeId, incarnation: u64, seq: u64) -> bool {
        let id = OriginId {
            origin,
            incarnation,
            seq,
        };
        if idx < self.end() || idx == u64::MAX || id.seq == u64::MAX {
            return false;
        }
        // `push` found that `id` does not continue the last run.
        self.runs.push(OriginRun {
            idx,
            len: 1,
            first: id,
        });
        true
    }

    /// Appends `other`, whose indices all lie at or past [`end`](Self::end)
    /// (else returns `false` and changes nothing), joining runs that continue.
    pub fn append(&mut self, other: &Self) -> bool {
        // The common case, a batch of one origin continuing the last run:
        // only the run's length changes.
        if let ([run], Some(last)) = (other.runs.as_slice(), self.runs.last_mut()) {
            if last.continued_by(run.idx, &run.first) {
                last.len += run.len;
                return true;
            }
        }
        if other.runs.first().is_some_and(|r| r.idx < self.end()) {
            return false;
        }
        for run in &other.runs {
            match self.runs.last_mut() {
                Some(last) if last.continued_by(run.idx, &run.first) => last.len += run.len,
                _ => self.runs.push(*run),
            }
        }
        true
    }

    /// The same ids, every index moved by `+by` (`None` if one overflows).
    pub fn shifted(&self, by: u64) -> Option<Self> {
        let mut runs = self.runs.clone();
        for run in &mut runs {
            run.idx = run.idx.checked_add(by)?;
            run.idx.checked_add(run.len)?;
        }
        Some(Self { runs })
    }

    /// Moves every index by `+by` in place; `false` (and nothing moved) if
    /// one would overflow.
    pub fn shift_up(&mut self, by: u64) -> bool {
        if self
            .runs
            .last()
            .is_some_and(|r| r.end().checked_add(by).is_none())
        {
            return false;
        }
        for run in &mut self.runs {
            run.idx += by;
        }
        true
    }

    /// Appends `other` with every index moved by `+by`, as
    /// [`append`](Self::append) does, without an intermediate copy.
    pub fn append_shifted(&mut self, other: &Self, by: u64) -> bool {
        if let ([run], Some(last)) = (other.runs.as_slice(), self.runs.last_mut()) {
            if let Some(idx) = run.idx.checked_add(by) {
                if last.continued_by(idx, &run.first) && idx.checked_add(run.len).is_some() {
                    last.len += run.len;
                    return true;
                }
            }
        }
        let Some(first) = other.runs.first() else {
            return true;
        };
        if first.idx.checked_add(by).is_none_or(|i| i < self.end())
            || other.end().checked_add(by).is_none()
        {
            return false;
        }
        for run in &other.runs {
            let run = OriginRun {
                idx: run.idx + by,
                ..*run
            };
            match self.runs.last_mut() {
                Some(last) if last.continued_by(run.idx, &run.first) => last.len += run.len,
                _ => self.runs.push(run),
            }
        }
        true
    }

    /// The same ids, every index moved by `-by` (`None` if one would go below 0).
    pub fn shifted_down(&self, by: u64) -> Option<Self> {
        let mut runs = self.runs.clone();
        for run in &mut runs {
            run.idx = run.idx.checked_sub(by)?;
        }
        Some(Self { runs })
    }

    /// The ids that `runs` (in any order, possibly overlapping: copies of
    /// the same log from several sources) give indices in `range`; the
    /// runs used up by the range's end are removed from `runs`.
    pub fn from_overlapping(runs: &mut Vec<OriginRun>, range: Range<u64>) -> Self {
        runs.sort_unstable_by_key(|r| r.idx);
        let mut out = Self::new();
        for run in runs.iter() {
            let from = run.idx.max(range.start).max(out.end());
            let to = run.end().min(range.end);
            if from >= to {
                continue;
            }
            let first = OriginId {
                seq: run.first.seq + (from - run.idx),
                ..run.first
            };
            out.append(&Self {
                runs: smallvec::smallvec![OriginRun {
                    idx: from,
                    len: to - from,
                    first,
                }],
            });
        }
        runs.retain(|r| r.end() > range.end);
        out
    }

    /// Forgets the ids of indices `from` and above (the log was cut there).
    pub fn truncate(&mut self, from: u64) {
        let keep = self.runs.partition_point(|r| r.idx < from);
        self.runs.truncate(keep);
        if let Some(last) = self.runs.last_mut() {
            if last.end() > from {
                last.len = from - last.idx;
            }
        }
    }

    /// Forgets the ids of indices below `below` (the log was trimmed there).
    pub fn trim(&mut self, below: u64) {
        let drop = self.runs.partition_point(|r| r.end() <= below);
        self.runs.drain(..drop);
        if let Some(first) = self.runs.first_mut() {
            if first.idx < below {
                let cut = below - first.idx;
                first.idx = below;
                first.len -= cut;
                first.first.seq += cut;
            }
        }
    }

    /// The ids of indices in `range`.
    pub fn range(&self, range: Range<u64>) -> Self {
        let mut out = self.clone_from_index(range.start);
        out.truncate(range.end);
        out
    }

    /// The ids of indices `from` and above.
    fn clone_from_index(&self, from: u64) -> Self {
        let first = self.runs.partition_point(|r| r.end() <= from);
        let mut out = Self {
            runs: SmallVec::from_slice(&self.runs[first..]),
        };
        out.trim(from);
        out
    }

    /// The id of the entry at `idx`, if it has one.
    pub fn get(&self, idx: u64) -> Option<OriginId> {
        let pos = self.runs.partition_point(|r| r.end() <= idx);
        let run = self.runs.get(pos).filter(|r| r.idx <= idx)?;
        run.first.plus(idx - run.idx)
    }

    /// Every `(index, id)`, by index.
    pub fn iter(&self) -> impl Iterator<Item = (u64, OriginId)> + '_ {
        self.runs.iter().flat_map(|run| {
            (0..run.len).map(move |k| {
                (
                    run.idx + k,
                    OriginId {
                        seq: run.first.seq + k,
                        ..run.first
                    },
                )
            })
        })
    }
}

/// What the compacted part of a log held, per origin: its newest
/// incarnation seen there, and which sequence numbers of that incarnation
/// went to which indices, as runs sorted by sequence number. Older
/// incarnations are forgotten: a server that started again does not retry
/// what it proposed before.
///
/// Bounded: an origin keeps at most [`OriginTable::MAX_RUNS`] runs. An
/// origin retries a proposal only until it learns where it was decided, so
/// only its newest proposals are ever looked up; when an origin has more
/// runs than the bound, the lowest is forgotten, and a retry of a proposal
/// in it would be appended again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct OriginTable {
    origins: Vec<OriginSeqs>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
struct OriginSeqs {
    origin: NodeId,
    incarnation: u64,
    /// `(seq, len, idx)`: proposals `seq..seq + len` are at indices
    /// `idx..idx + len`. Sorted by `seq`, not overlapping.
    runs: Vec<(u64, u64, u64)>,
}

/// Where an [`OriginTable`] says a proposal is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TablePosition {
    /// At this log index, in the compacted prefix.
    At(u64),
    /// Its origin has started again since: that life is over, and the
    /// proposal is not appended (it may or may not be in the log).
    PreviousLife,
}

impl OriginTable {
    /// How many runs one origin keeps at most.
    pub const MAX_RUNS: usize = 1024;

    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the table knows no proposal.
    pub fn is_empty(&self) -> bool {
        self.origins.is_empty()
    }

    /// How many origins the table has a record of.
    pub fn origins(&self) -> usize {
        self.origins.len()
    }

    /// The newest incarnation of `origin` the table knows.
    pub fn incarnation_of(&self, origin: NodeId) -> Option<u64> {
        self.record(origin).map(|r| r.incarnation)
    }

    fn record(&self, origin: NodeId) -> Option<&OriginSeqs> {
        self.origins
            .binary_search_by_key(&origin, |r| r.origin)
            .ok()
            .map(|i| &self.origins[i])
    }

    /// Where the table puts proposal `id`, if it has it or the proposal
    /// belongs to an older life of its origin.
    pub fn position(&self, id: &OriginId) -> Option<TablePosition> {
        let r = self.record(id.origin)?;
        if id.incarnation != r.incarnation {
            return (id.incarnation < r.incarnation).then_some(TablePosition::PreviousLife);
        }
        let pos = r.runs.partition_point(|&(seq, len, _)| seq + len <= id.seq);
        let &(seq, _, idx) = r.runs.get(pos).filter(|&&(seq, _, _)| seq <= id.seq)?;
        Some(TablePosition::At(idx + (id.seq - seq)))
    }

    /// Adds a run of proposals (see [`OriginRun`]).
    pub fn insert_run(&mut self, run: &OriginRun) {
        let first = run.first;
        if run.len == 0 || first.seq.checked_add(run.len).is_none() {
            return;
        }
        let i = match self
            .origins
            .binary_search_by_key(&first.origin, |r| r.origin)
        {
            Ok(i) => i,
            Err(i) => {
                self.origins.insert(
                    i,
                    OriginSeqs {
                        origin: first.origin,
                        incarnation: first.incarnation,
                        runs: Vec::new(),
                    },
                );
                i
            }
        };
        let r = &mut self.origins[i];
        if first.incarnation < r.incarnation {
            return;
        }
        if first.incarnation > r.incarnation {
            r.incarnation = first.incarnation;
            r.runs.clear();
        }
        // A proposal is in a log once: where the table has some of the
        // run's proposals already, those keep their place, and the pieces
        // between them are added.
        let (seq, end) = (first.seq, first.seq + run.len);
        let mut pieces = Vec::new();
        let mut cur = seq;
        let from = r.runs.partition_point(|&(s, l, _)| s + l <= seq);
        for &(s, l, _) in r.runs[from..].iter().take_while(|&&(s, _, _)| s < end) {
            if s > cur {
                pieces.push((cur, s - cur));
            }
            cur = cur.max(s + l);
        }
        if cur < end {
            pieces.push((cur, end - cur));
        }
        for (s, l) in pieces {
            Self::insert_piece(r, s, l, run.idx + (s - seq));
        }
        if r.runs.len() > Self::MAX_RUNS {
            r.runs.remove(0);
        }
    }

    /// Adds proposals `seq..seq + len` at `idx..`, which no run has yet.
    fn insert_piece(r: &mut OriginSeqs, seq: u64, len: u64, idx: u64) {
        let at = r.runs.partition_point(|&(s, _, _)| s < seq);
        let joins_before = at > 0 && {
            let (s, l, i) = r.runs[at - 1];
            s + l == seq && i + l == idx
        };
        if joins_before {
            r.runs[at - 1].1 += len;
        } else {
            r.runs.insert(at, (seq, len, idx));
        }
        // The run may now touch the one after it.
        let j = if joins_before { at - 1 } else { at };
        if let Some(&(s2, l2, i2)) = r.runs.get(j + 1) {
            let (s, l, i) = r.runs[j];
            if s + l == s2 && i + l == i2 {
                r.runs[j].1 += l2;
                r.runs.remove(j + 1);
            }
        }
    }

    /// Adds every proposal of `ids`.
    pub fn absorb(&mut self, ids: &OriginIds) {
        for run in ids.runs() {
            self.insert_run(run);
        }
    }

    /// Adds everything `other` knows.
    pub fn merge(&mut self, other: &Self) {
        for r in &other.origins {
            for &(seq, len, idx) in &r.runs {
                self.insert_run(&OriginRun {
                    idx,
                    len,
                    first: OriginId {
                        origin: r.origin,
                        incarnation: r.incarnation,
                        seq,
                    },
                });
            }
        }
    }

    /// Checks a table from a peer or a disk: origins sorted and unique,
    /// runs sorted, not overlapping, not empty, not overflowing and not
    /// more than the bound.
    pub fn is_well_formed(&self) -> bool {
        self.origins.windows(2).all(|w| w[0].origin < w[1].origin)
            && self.origins.iter().all(|r| {
                r.runs.len() <= Self::MAX_RUNS
                    && r.runs.iter().all(|&(s, l, i)| {
                        l > 0 && s.checked_add(l).is_some() && i.checked_add(l).is_some()
                    })
                    && r.runs.windows(2).all(|w| w[0].0 + w[0].1 <= w[1].0)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(origin: NodeId, incarnation: u64, seq: u64) -> OriginId {
        OriginId {
            origin,
            incarnation,
            seq,
        }
    }

    #[test]
    fn consecutive_proposals_of_one_origin_make_one_run() {
        let mut ids = OriginIds::new();
        for k in 0..100 {
            assert!(ids.push(10 + k, id(1, 1, 5 + k)));
        }
        assert!(ids.push(110, id(2, 1, 1)));
        assert_eq!(ids.runs().len(), 2);
        assert_eq!(ids.get(50), Some(id(1, 1, 45)));
        assert_eq!(ids.get(110), Some(id(2, 1, 1)));
        assert_eq!(ids.get(9), None);
        assert!(!ids.push(5, id(3, 1, 1)), "indices only grow");
    }

    #[test]
    fn truncate_and_trim_cut_runs_where_the_log_was_cut() {
        let mut ids = OriginIds::new();
        for k in 0..10 {
            ids.push(k, id(1, 1, k));
        }
        for k in 10..20 {
            ids.push(k, id(2, 1, k));
        }
        ids.truncate(15);
        assert_eq!(ids.end(), 15);
        ids.trim(3);
        assert_eq!(ids.get(3), Some(id(1, 1, 3)));
        assert_eq!(ids.get(2), None);
        assert_eq!(ids.count(), 12);
        let r = ids.range(5..12);
        assert_eq!(
            r.iter().map(|(i, _)| i).collect::<Vec<_>>(),
            (5..12).collect::<Vec<_>>()
        );
        assert_eq!(r.get(11), Some(id(2, 1, 11)));
    }

    #[test]
    fn appended_runs_join_and_shift() {
        let mut a = OriginIds::new();
        a.push(0, id(1, 1, 1));
        let mut b = OriginIds::new();
        b.push(0, id(1, 1, 2));
        b.push(1, id(1, 1, 3));
        let b = b.shifted(1).expect("no overflow");
        assert!(a.append(&b));
        assert_eq!(a.runs().len(), 1);
        assert_eq!(a.count(), 3);
        assert!(!a.append(&b), "b's indices lie below a's end now");
    }

    #[test]
    fn malformed_runs_do_not_deserialise() {
        let run = |idx, len| OriginRun {
            idx,
            len,
            first: id(1, 1, 1),
        };
        assert!(OriginIds::try_from(vec![run(0, 0)]).is_err());
        assert!(OriginIds::try_from(vec![run(5, 2), run(6, 1)]).is_err());
        assert!(OriginIds::try_from(vec![run(u64::MAX, 2)]).is_err());
        assert!(OriginIds::try_from(vec![run(0, 2), run(2, 1)]).is_ok());
    }

    fn run(idx: u64, len: u64, first: OriginId) -> OriginRun {
        OriginRun { idx, len, first }
    }

    #[test]
    fn the_table_keeps_indices_and_forgets_older_incarnations() {
        let mut t = OriginTable::new();
        t.insert_run(&run(100, 5, id(1, 1, 1)));
        t.insert_run(&run(200, 5, id(1, 1, 10)));
        assert_eq!(t.position(&id(1, 1, 3)), Some(TablePosition::At(102)));
        assert_eq!(t.position(&id(1, 1, 7)), None);
        assert_eq!(t.position(&id(1, 1, 12)), Some(TablePosition::At(202)));
        // Contiguous in both sequence numbers and indices: one run.
        t.insert_run(&run(105, 5, id(1, 1, 6)));
        assert_eq!(t.record(1).map(|r| r.runs.len()), Some(2));
        t.insert_run(&run(150, 1, id(1, 1, 3)));
        assert_eq!(
            t.position(&id(1, 1, 3)),
            Some(TablePosition::At(102)),
            "the first place stays"
        );
        // A run that overlaps adds what it has beyond the overlap.
        t.insert_run(&run(112, 6, id(1, 1, 13)));
        assert_eq!(t.position(&id(1, 1, 14)), Some(TablePosition::At(204)));
        assert_eq!(t.position(&id(1, 1, 15)), Some(TablePosition::At(114)));
        assert_eq!(t.position(&id(1, 1, 16)), Some(TablePosition::At(115)));
        t.insert_run(&run(300, 1, id(1, 2, 1)));
        assert_eq!(t.position(&id(1, 1, 99)), Some(TablePosition::PreviousLife));
        assert_eq!(t.position(&id(1, 2, 2)), None);
        assert_eq!(t.position(&id(2, 1, 1)), None);
        assert!(t.is_well_formed());
        let mut u = OriginTable::new();
        u.merge(&t);
        assert_eq!(u, t);
    }

    #[test]
    fn the_table_keeps_a_bounded_number_of_runs() {
        let mut t = OriginTable::new();
        for k in 0..(OriginTable::MAX_RUNS as u64 + 10) {
            t.insert_run(&run(3 * k, 1, id(1, 1, 2 * k)));
        }
        assert_eq!(
            t.record(1).map(|r| r.runs.len()),
            Some(OriginTable::MAX_RUNS)
        );
        assert!(t.is_well_formed());
    }
}
