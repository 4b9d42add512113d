//! The replicated data: the commands that go into the log, the state machine
//! every replica builds by applying the decided ones in log order, and the
//! snapshot that stands in for a compacted prefix of the log.
//!
//! Every command carries a [`CommandId`], which the server that took the
//! HTTP request gives it: when the command is applied, the id finds the
//! request waiting for its result. The protocol itself decides each append
//! once (a retried forward is found by its origin id and not appended
//! again), so on our storages no command reaches the log twice; the state
//! machine still applies each id at most once, which keeps the store right
//! on a storage that keeps no origins (there the protocol promises only
//! at-least-once). A client that retries a request whose outcome it does
//! not know sends a new request, with a new id: nothing deduplicates that,
//! and the error body's `outcome` says when such a retry could apply a
//! write twice. The table of applied ids is part of the state, so it is in
//! every snapshot too.

use omnipaxos::{
    storage::{Entry, Snapshot},
    util::NodeId,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One incarnation of a server process: the server's id and a random number
/// drawn at start, so that ids stay unique across restarts of the same server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SessionId {
    /// The server that took the write from a client.
    pub pid: NodeId,
    /// Drawn at process start.
    pub nonce: u64,
}

/// Names one write for its whole life: the session that took it from a
/// client and a counter of that session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CommandId {
    /// The server process that proposed the write.
    pub session: SessionId,
    /// Counts the writes of the session, from 0.
    pub seq: u64,
}

/// What a write does to the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Set `key` to `value`, replacing any earlier value.
    Put {
        /// The key to set.
        key: String,
        /// The new value.
        value: String,
    },
    /// Remove `key`; removing a missing key succeeds too.
    Delete {
        /// The key to remove.
        key: String,
    },
    /// Set `key` to `new` if its value is `expected` (`None`: if it has no
    /// value), and leave it alone otherwise.
    Cas {
        /// The key to compare and set.
        key: String,
        /// The value the key must have for the write to happen.
        expected: Option<String>,
        /// The value to set.
        new: String,
    },
}

impl Op {
    /// The key the write touches.
    pub fn key(&self) -> &str {
        match self {
            Self::Put { key, .. } | Self::Delete { key } | Self::Cas { key, .. } => key,
        }
    }
}

/// One write: the element type of the replicated log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KVCommand {
    /// Names the write, so that it is applied at most once.
    pub id: CommandId,
    /// What it does.
    pub op: Op,
}

/// By hand rather than `#[derive(Entry)]`, for the size hint: keys and
/// values live on the heap, so the in-memory size of a command says little
/// about the bytes a catch-up chunk of commands takes.
impl Entry for KVCommand {
    type Snapshot = KVSnapshot;

    fn size_hint(&self) -> usize {
        let strings = match &self.op {
            Op::Put { key, value } => key.len() + value.len(),
            Op::Delete { key } => key.len(),
            Op::Cas { key, expected, new } => {
                key.len() + expected.as_ref().map_or(0, String::len) + new.len()
            }
        };
        size_of::<Self>() + strings
    }
}

/// What applying a write did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResult {
    /// Whether the store changed as asked: always for a put or a delete, for
    /// a compare-and-swap only if the key had the expected value.
    pub success: bool,
    /// The key's value just before the write.
    pub previous: Option<String>,
}

/// The most ranges of applied sequence numbers kept per session. Each gap
/// between ranges is a write of the session that has not been applied (it
/// failed before reaching the log, or is still on its way). Past this many,
/// the oldest range is folded into the floor, and the gaps below it count as
/// applied: a very late copy of such a write is refused rather than applied.
const MAX_RANGES_PER_SESSION: usize = 1024;

/// The sequence numbers of one session that were applied, as disjoint ranges.
/// Writes are numbered in order and mostly applied in order, so this is
/// usually a single range however many writes there were.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct AppliedSeqs {
    /// Every number below this counts as applied.
    floor: u64,
    /// Applied ranges at or above `floor`: start -> end (exclusive).
    ranges: BTreeMap<u64, u64>,
}

impl AppliedSeqs {
    fn contains(&self, seq: u64) -> bool {
        seq < self.floor
            || self
                .ranges
                .range(..=seq)
                .next_back()
                .is_some_and(|(_, &end)| seq < end)
    }

    /// Records `seq`, which must not be contained yet.
    fn insert(&mut self, seq: u64) {
        debug_assert!(!self.contains(seq), "seq {seq} inserted twice");
        let mut start = seq;
        let mut end = seq + 1;
        if let Some((&s, &e)) = self.ranges.range(..seq).next_back()
            && e == seq
        {
            start = s;
        }
        if let Some(e) = self.ranges.remove(&end) {
            end = e;
        }
        self.ranges.insert(start, end);
        while self.ranges.len() > MAX_RANGES_PER_SESSION {
            if let Some((_, end)) = self.ranges.pop_first() {
                self.floor = end;
            }
        }
    }
}

/// The state machine: the key-value map and the ids of the writes applied
/// to it, built by applying decided commands in log order.
///
/// Two replicas that applied the same decided prefix hold equal states.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvState {
    /// The current value of every key.
    map: BTreeMap<String, String>,
    /// The writes applied so far, per session: the deduplication table.
    sessions: BTreeMap<SessionId, AppliedSeqs>,
}

impl KvState {
    /// The state after applying `commands` in order to an empty store.
    pub fn replay<'a>(commands: impl IntoIterator<Item = &'a KVCommand>) -> Self {
        let mut state = Self::default();
        for cmd in commands {
            state.apply(cmd);
        }
        state
    }

    /// Applies a decided command. Returns what it did, or `None` if a command
    /// with its id was applied before, in which case nothing changes.
    pub fn apply(&mut self, cmd: &KVCommand) -> Option<CommandResult> {
        let seqs = self.sessions.entry(cmd.id.session).or_default();
        if seqs.contains(cmd.id.seq) {
            return None;
        }
        seqs.insert(cmd.id.seq);
        Some(match &cmd.op {
            Op::Put { key, value } => CommandResult {
                success: true,
                previous: self.map.insert(key.clone(), value.clone()),
            },
            Op::Delete { key } => CommandResult {
                success: true,
                previous: self.map.remove(key),
            },
            Op::Cas { key, expected, new } => {
                let previous = self.map.get(key).cloned();
                let success = previous == *expected;
                if success {
                    self.map.insert(key.clone(), new.clone());
                }
                CommandResult { success, previous }
            }
        })
    }

    /// Whether the command with this id has been applied (or is too old to
    /// be applied any more).
    pub fn is_applied(&self, id: CommandId) -> bool {
        self.sessions
            .get(&id.session)
            .is_some_and(|s| s.contains(id.seq))
    }

    /// The value of `key`, if it has one.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
    }

    /// The keys that start with `prefix` and their values, in key order.
    pub fn scan<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.map
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The number of keys with a value.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no key has a value.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// What stands in for a compacted prefix of the log.
///
/// The protocol builds snapshots with [`Snapshot::create`] from a slice of
/// decided entries, and that slice need not start at index 0 (a log sync
/// sends a *delta* snapshot of the entries a follower lacks). A write's effect
/// depends on the state before it (a compare-and-swap, a duplicate id), so a
/// delta cannot be evaluated on its own: it keeps its commands. The protocol
/// merges a delta only into the snapshot of everything before it, and that
/// merge evaluates the commands into a [`KvState`]; from then on the
/// snapshot is the state, however long the log it replaces.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KVSnapshot {
    /// The state after applying every entry the snapshot covers, from index 0.
    State(KvState),
    /// The commands of a slice of the log, not yet applied to a state.
    Commands(Vec<KVCommand>),
}

impl KVSnapshot {
    /// The state this snapshot stands for, given that it covers the log from
    /// index 0, as every snapshot the protocol hands out does.
    pub fn into_state(self) -> KvState {
        match self {
            Self::State(state) => state,
            Self::Commands(commands) => KvState::replay(&commands),
        }
    }
}

impl Snapshot<KVCommand> for KVSnapshot {
    fn create(entries: &[KVCommand]) -> Self {
        Self::Commands(entries.to_vec())
    }

    /// `self` covers the log from index 0 (the protocol merges deltas only
    /// into the snapshot of the whole prefix before them), so it can be
    /// evaluated, and the delta's commands applied on top.
    fn merge(&mut self, delta: Self) {
        let mut state = std::mem::replace(self, Self::Commands(Vec::new())).into_state();
        match delta {
            // A snapshot that is already a state covers the log from index 0
            // up to its end, so it replaces what came before.
            Self::State(s) => state = s,
            Self::Commands(commands) => {
                for cmd in &commands {
                    state.apply(cmd);
                }
            }
        }
        *self = Self::State(state);
    }

    fn use_snapshots() -> bool {
        true
    }

    /// Counted as `into_parts` counts: keys and values with their string
    /// headers, commands by their own size hint.
    fn size_hint(&self) -> usize {
        match self {
            Self::State(KvState { map, sessions }) => {
                let keys: usize = map
                    .iter()
                    .map(|(k, v)| k.len() + v.len() + 2 * size_of::<String>())
                    .sum();
                keys + sessions.len() * size_of::<(SessionId, AppliedSeqs)>()
            }
            Self::Commands(commands) => commands.iter().map(Entry::size_hint).sum(),
        }
    }

    /// Splits by size: a state into parts of its keys (the deduplication
    /// table rides with the first), a slice of commands into shorter slices.
    fn into_parts(self, max_bytes: usize) -> Vec<Self> {
        let max_bytes = max_bytes.max(1);
        match self {
            Self::State(KvState { map, sessions }) => {
                let mut parts = vec![KvState {
                    map: BTreeMap::new(),
                    sessions,
                }];
                let mut bytes = 0;
                for (key, value) in map {
                    let size = key.len() + value.len() + 2 * size_of::<String>();
                    if bytes + size > max_bytes && bytes > 0 {
                        parts.push(KvState::default());
                        bytes = 0;
                    }
                    bytes += size;
                    let last = parts.last_mut().expect("parts start with one");
                    last.map.insert(key, value);
                }
                parts.into_iter().map(Self::State).collect()
            }
            Self::Commands(commands) => {
                let mut parts: Vec<Vec<KVCommand>> = vec![Vec::new()];
                let mut bytes = 0;
                for cmd in commands {
                    let size = cmd.size_hint();
                    if bytes + size > max_bytes && bytes > 0 {
                        parts.push(Vec::new());
                        bytes = 0;
                    }
                    bytes += size;
                    parts.last_mut().expect("parts start with one").push(cmd);
                }
                parts.into_iter().map(Self::Commands).collect()
            }
        }
    }

    /// Joins what [`into_parts`](Self::into_parts) split: all states (keys
    /// in no two parts) or all command slices, in order.
    fn from_parts(parts: Vec<Self>) -> Option<Self> {
        let mut parts = parts.into_iter();
        match parts.next()? {
            Self::State(mut state) => {
                for part in parts {
                    let Self::State(more) = part else { return None };
                    if !more.sessions.is_empty() {
                        return None;
                    }
                    for (key, value) in more.map {
                        if state.map.insert(key, value).is_some() {
                            return None;
                        }
                    }
                }
                Some(Self::State(state))
            }
            Self::Commands(mut commands) => {
                for part in parts {
                    let Self::Commands(more) = part else {
                        return None;
                    };
                    commands.extend(more);
                }
                Some(Self::Commands(commands))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    const S1: SessionId = SessionId { pid: 1, nonce: 7 };
    const S2: SessionId = SessionId { pid: 2, nonce: 9 };

    fn cmd(session: SessionId, seq: u64, op: Op) -> KVCommand {
        KVCommand {
            id: CommandId { session, seq },
            op,
        }
    }

    fn put(seq: u64, key: &str, value: &str) -> KVCommand {
        cmd(
            S1,
            seq,
            Op::Put {
                key: key.into(),
                value: value.into(),
            },
        )
    }

    fn cas(seq: u64, key: &str, expected: Option<&str>, new: &str) -> KVCommand {
        cmd(
            S2,
            seq,
            Op::Cas {
                key: key.into(),
                expected: expected.map(Into::into),
                new: new.into(),
            },
        )
    }

    fn ok(previous: Option<&str>) -> Option<CommandResult> {
        Some(CommandResult {
            success: true,
            previous: previous.map(Into::into),
        })
    }

    #[test]
    fn put_delete_and_cas_report_the_previous_value() {
        let mut s = KvState::default();
        assert_eq!(s.apply(&put(0, "a", "1")), ok(None));
        assert_eq!(s.apply(&put(1, "a", "2")), ok(Some("1")));
        assert_eq!(
            s.apply(&cas(0, "a", Some("1"), "3")),
            Some(CommandResult {
                success: false,
                previous: Some("2".into())
            })
        );
        assert_eq!(s.get("a"), Some("2"));
        assert_eq!(s.apply(&cas(1, "a", Some("2"), "3")), ok(Some("2")));
        assert_eq!(s.get("a"), Some("3"));
        assert_eq!(
            s.apply(&cmd(S1, 2, Op::Delete { key: "a".into() })),
            ok(Some("3"))
        );
        assert_eq!(s.get("a"), None);
        assert_eq!(s.apply(&cas(2, "a", None, "4")), ok(None));
        assert_eq!(s.get("a"), Some("4"));
    }

    #[test]
    fn a_command_decided_twice_is_applied_once() {
        let mut s = KvState::default();
        s.apply(&put(0, "a", "1"));
        s.apply(&put(1, "a", "2"));
        // The first put comes around again, e.g. re-decided after a leader change.
        assert_eq!(s.apply(&put(0, "a", "1")), None);
        assert_eq!(s.get("a"), Some("2"));
        assert!(s.is_applied(CommandId {
            session: S1,
            seq: 0
        }));
        assert!(!s.is_applied(CommandId {
            session: S1,
            seq: 2
        }));
    }

    #[test]
    fn applied_sequence_numbers_collapse_into_ranges() {
        let mut seqs = AppliedSeqs::default();
        for seq in [0, 1, 2, 5, 4, 3, 7] {
            seqs.insert(seq);
        }
        assert_eq!(
            seqs.ranges
                .iter()
                .map(|(&s, &e)| (s, e))
                .collect::<Vec<_>>(),
            vec![(0, 6), (7, 8)]
        );
        assert!(seqs.contains(3) && seqs.contains(7) && !seqs.contains(6) && !seqs.contains(8));
    }

    #[test]
    fn too_many_gaps_fold_the_oldest_range_into_the_floor() {
        let mut seqs = AppliedSeqs::default();
        // Every other number: each applied one is its own range.
        for i in 0..=MAX_RANGES_PER_SESSION as u64 {
            seqs.insert(2 * i);
        }
        assert_eq!(seqs.ranges.len(), MAX_RANGES_PER_SESSION);
        assert_eq!(seqs.floor, 1);
        assert!(seqs.contains(0) && seqs.contains(2));
        assert!(!seqs.contains(1) && !seqs.contains(3));
        // Once the range [2, 3) is folded too, the gap at 1 below it counts as
        // applied: a very late copy of write 1 is refused.
        seqs.insert(2 * MAX_RANGES_PER_SESSION as u64 + 2);
        assert_eq!(seqs.floor, 3);
        assert!(seqs.contains(1) && !seqs.contains(3));
    }

    #[test]
    fn a_delta_snapshot_merged_onto_its_base_equals_applying_the_log() {
        let log = vec![
            put(0, "a", "1"),
            cas(0, "b", None, "x"),
            put(1, "a", "2"),
            // From here on the delta: a CAS that depends on the base, and a
            // duplicate of a command in the base that must not be re-applied.
            cas(1, "a", Some("2"), "3"),
            put(0, "a", "1"),
            cas(2, "b", Some("x"), "y"),
            cmd(S1, 2, Op::Delete { key: "a".into() }),
            put(3, "c", "z"),
        ];
        let expected = KvState::replay(&log);
        for split in 0..=log.len() {
            let mut base = KVSnapshot::create(&log[..split]);
            base.merge(KVSnapshot::create(&log[split..]));
            assert_eq!(
                base,
                KVSnapshot::State(expected.clone()),
                "split at {split}"
            );
        }
        assert_eq!(expected.get("a"), None);
        assert_eq!(expected.get("b"), Some("y"));
        assert_eq!(expected.get("c"), Some("z"));
    }

    #[test]
    fn a_snapshot_keeps_the_deduplication_table() {
        let log = [put(0, "a", "1"), put(1, "a", "2")];
        let mut snapshot = KVSnapshot::create(&log[..1]);
        snapshot.merge(KVSnapshot::create(&log[1..]));
        let mut state = snapshot.into_state();
        assert_eq!(state.apply(&put(0, "a", "1")), None);
        assert_eq!(state.get("a"), Some("2"));
    }

    #[test]
    fn a_snapshot_split_into_parts_joins_back_to_itself() {
        let log: Vec<KVCommand> = (0..200)
            .map(|i| {
                put(
                    i,
                    &format!("key-{:03}", i % 70),
                    &"v".repeat(i as usize % 13),
                )
            })
            .collect();
        for max_bytes in [0, 1, 64, 500, 1 << 20] {
            let commands = KVSnapshot::create(&log);
            let parts = commands.clone().into_parts(max_bytes);
            assert!(!parts.is_empty());
            assert_eq!(KVSnapshot::from_parts(parts), Some(commands));

            let state = KVSnapshot::State(KvState::replay(&log));
            let parts = state.clone().into_parts(max_bytes);
            if max_bytes <= 64 {
                assert!(parts.len() > 10, "{max_bytes}: {} parts", parts.len());
            }
            assert_eq!(KVSnapshot::from_parts(parts), Some(state));
        }
        // Parts of two kinds, or a key in two parts, make no snapshot.
        let mixed = vec![
            KVSnapshot::State(KvState::default()),
            KVSnapshot::create(&log[..1]),
        ];
        assert_eq!(KVSnapshot::from_parts(mixed), None);
        let twice = KVSnapshot::State(KvState::replay(&log[..1]));
        assert_eq!(KVSnapshot::from_parts(vec![twice.clone(), twice]), None);
        assert_eq!(KVSnapshot::from_parts(Vec::new()), None);
    }

    #[test]
    fn scan_returns_exactly_the_keys_with_the_prefix() {
        let mut s = KvState::default();
        for (i, k) in ["a", "ab", "abc", "b", "aa"].iter().enumerate() {
            s.apply(&put(i as u64, k, "v"));
        }
        let keys: Vec<&str> = s.scan("ab").map(|(k, _)| k).collect();
        assert_eq!(keys, vec!["ab", "abc"]);
        assert_eq!(s.scan("").count(), 5);
        assert_eq!(s.scan("z").count(), 0);
    }
}
