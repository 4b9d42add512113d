//! A linearizability checker for key-value histories, for tests.
//!
//! A history is what clients saw: each [`Operation`] was invoked at some time,
//! completed at a later time with an output, or never completed (a timed-out
//! or failed write, whose effect is unknown). The history is *linearizable*
//! if every operation can be given a point between its invocation and its
//! completion such that the outputs are those of a single key-value map that
//! applies the operations one by one in that order. Operations on different
//! keys never constrain each other, so [`check`] checks each key on its own
//! (this is what makes the search feasible: P-compositionality).
//!
//! The search is the one of Wing and Gong, with the memoisation of Lowe as
//! described by Horn and Kroening ("Faster linearizability checking via
//! P-compositionality", 2015): take the earliest-invoked operations that may
//! go next, try each, and backtrack, never exploring the same (set of
//! linearized operations, value) pair twice. An operation of unknown outcome
//! has no completion: it may take effect at any point after its invocation,
//! or never (taking effect after everything else is the same as never).
//!
//! Every write's output here includes the key's previous value, so almost
//! every operation observes the state: the search is tightly constrained and
//! histories of a few thousand operations per key check in milliseconds.

use std::collections::{HashMap, HashSet};

/// What a client asked of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvOp {
    /// Read the value.
    Get,
    /// Set the value.
    Put(String),
    /// Remove the value.
    Delete,
    /// Set the value to `new` if it is `expected` (`None`: absent).
    Cas {
        /// The value the key must have.
        expected: Option<String>,
        /// The value to set.
        new: String,
    },
}

/// What the client got back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvOutput {
    /// The answer to a [`KvOp::Get`]: the value, or `None` if absent.
    Value(Option<String>),
    /// The answer to a write: whether it changed the store (always for put
    /// and delete) and the value just before it.
    Write {
        /// Whether the write happened (a compare-and-swap may not).
        success: bool,
        /// The value just before the write.
        previous: Option<String>,
    },
    /// No answer: the operation may or may not have taken effect.
    Unknown,
}

/// One operation of a client history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// Which client issued it (for reports only).
    pub client: usize,
    /// The key it touched.
    pub key: String,
    /// What was asked.
    pub op: KvOp,
    /// What came back.
    pub output: KvOutput,
    /// When it was invoked, in any unit common to the history (e.g. ns since start).
    pub invoked: u64,
    /// When its answer arrived; `None` if none did.
    pub completed: Option<u64>,
}

/// Why a history failed the check.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// No order of the operations on `key` explains what the clients saw.
    #[error("the history of key {key:?} is not linearizable ({} operations)", ops.len())]
    NotLinearizable {
        /// The key.
        key: String,
        /// Its operations, in invocation order.
        ops: Vec<Operation>,
    },
    /// The search for key `key` gave up after `steps` steps without a verdict.
    #[error("gave up on key {key:?} after {steps} search steps")]
    Inconclusive {
        /// The key.
        key: String,
        /// Steps taken.
        steps: u64,
    },
    /// An operation is ill-formed, e.g. completed before it was invoked, or a
    /// read with a write's output. The caller built a wrong history.
    #[error("malformed operation: {0}")]
    Malformed(String),
}

/// What a successful check did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckStats {
    /// Keys checked.
    pub keys: usize,
    /// Operations checked (after dropping reads without an answer and
    /// unobserved writes of unknown outcome).
    pub operations: usize,
    /// Search steps taken over all keys.
    pub steps: u64,
}

/// The default bound on search steps per key.
pub const DEFAULT_MAX_STEPS: u64 = 10_000_000;

/// Checks that `history` is linearizable for a key-value map that starts
/// empty, key by key, with at most [`DEFAULT_MAX_STEPS`] search steps per key.
pub fn check(history: &[Operation]) -> Result<CheckStats, CheckError> {
    check_with_limit(history, DEFAULT_MAX_STEPS)
}

/// [`check`] with a bound on search steps per key.
pub fn check_with_limit(history: &[Operation], max_steps: u64) -> Result<CheckStats, CheckError> {
    let mut by_key: HashMap<&str, Vec<&Operation>> = HashMap::new();
    for op in history {
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    let mut keys: Vec<&str> = by_key.keys().copied().collect();
    keys.sort_unstable();
    let mut stats = CheckStats::default();
    for key in keys {
        let ops = &by_key[key];
        let (checked, steps) = check_key(key, ops, max_steps)?;
        stats.keys += 1;
        stats.operations += checked;
        stats.steps += steps;
    }
    Ok(stats)
}

/// A value as a small number, so that states hash and compare cheaply.
type Value = Option<u32>;

/// An operation with its values interned and its outcome decided.
#[derive(Clone, Copy, Debug)]
enum Step {
    Get(Value),
    /// A put (`new: Some`) or delete (`new: None`), with the previous value if known.
    Write {
        new: Value,
        previous: Option<Value>,
    },
    Cas {
        expected: Value,
        new: u32,
        /// `(success, previous)` if known.
        result: Option<(bool, Value)>,
    },
}

impl Step {
    /// The state after this step from `state`, or `None` if the step's
    /// output cannot have come from `state`.
    fn apply(self, state: Value) -> Option<Value> {
        match self {
            Self::Get(v) => (v == state).then_some(state),
            Self::Write { new, previous } => previous.is_none_or(|p| p == state).then_some(new),
            Self::Cas {
                expected,
                new,
                result,
            } => {
                let swaps = state == expected;
                match result {
                    Some((success, previous)) if success != swaps || previous != state => None,
                    _ => Some(if swaps { Some(new) } else { state }),
                }
            }
        }
    }

    /// The value this step writes, if it writes one.
    fn written(self) -> Option<u32> {
        match self {
            Self::Get(_) => None,
            Self::Write { new, .. } => new,
            Self::Cas { new, .. } => Some(new),
        }
    }

    /// Whether the step's output is known (it observed the state).
    fn observes(self) -> bool {
        match self {
            Self::Get(_) => true,
            Self::Write { previous, .. } => previous.is_some(),
            Self::Cas { result, .. } => result.is_some(),
        }
    }

    /// The values this step observed.
    fn observed(self) -> [Value; 1] {
        match self {
            Self::Get(v) => [v],
            Self::Write {
                previous: Some(p), ..
            } => [p],
            Self::Cas {
                result: Some((_, p)),
                ..
            } => [p],
            _ => [None],
        }
    }
}

#[derive(Default)]
struct Interner<'a> {
    ids: HashMap<&'a str, u32>,
}

impl<'a> Interner<'a> {
    fn id(&mut self, s: &'a str) -> u32 {
        let next = u32::try_from(self.ids.len()).expect("fewer than 2^32 distinct values");
        *self.ids.entry(s).or_insert(next)
    }

    fn value(&mut self, v: &'a Option<String>) -> Value {
        v.as_deref().map(|s| self.id(s))
    }
}

/// One operation ready for the search: its step and its interval.
struct Interval {
    step: Step,
    invoked: u64,
    /// `u64::MAX` for an operation of unknown outcome.
    completed: u64,
}

/// Translates the operations of one key, dropping what cannot constrain the
/// order: reads without an answer, and writes of unknown outcome whose
/// (unique) value nobody observed, which can always go last.
fn prepare(ops: &[&Operation]) -> Result<Vec<Interval>, CheckError> {
    let mut interner = Interner::default();
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        if op.completed.is_some_and(|c| c < op.invoked) {
            return Err(CheckError::Malformed(format!(
                "{op:?} completed before it was invoked"
            )));
        }
        let unknown = op.output == KvOutput::Unknown || op.completed.is_none();
        let step = if op.op == KvOp::Get {
            match &op.output {
                // A read without an answer changed nothing and showed nothing.
                _ if unknown => continue,
                KvOutput::Value(v) => Step::Get(interner.value(v)),
                KvOutput::Write { .. } | KvOutput::Unknown => {
                    return Err(CheckError::Malformed(format!(
                        "a read answered like a write: {op:?}"
                    )));
                }
            }
        } else {
            let known = match &op.output {
                _ if unknown => None,
                KvOutput::Write { success, previous } => Some((*success, interner.value(previous))),
                KvOutput::Value(_) | KvOutput::Unknown => {
                    return Err(CheckError::Malformed(format!(
                        "a write answered like a read: {op:?}"
                    )));
                }
            };
            match &op.op {
                KvOp::Put(_) | KvOp::Delete if known.is_some_and(|(success, _)| !success) => {
                    return Err(CheckError::Malformed(format!(
                        "a put or delete that did not succeed: {op:?}"
                    )));
                }
                KvOp::Put(v) => Step::Write {
                    new: Some(interner.id(v)),
                    previous: known.map(|(_, p)| p),
                },
                KvOp::Delete => Step::Write {
                    new: None,
                    previous: known.map(|(_, p)| p),
                },
                KvOp::Cas { expected, new } => Step::Cas {
                    expected: interner.value(expected),
                    new: interner.id(new),
                    result: known,
                },
                KvOp::Get => unreachable!("reads are handled above"),
            }
        };
        out.push(Interval {
            step,
            invoked: op.invoked,
            completed: if unknown {
                u64::MAX
            } else {
                op.completed.unwrap_or(u64::MAX)
            },
        });
    }
    // A write of unknown outcome whose value is written by no other operation
    // and observed by none can be placed after everything else, where it
    // constrains nothing: drop it. (If its value was observed, it took effect
    // before that observation, and must stay.)
    let mut writers: HashMap<u32, usize> = HashMap::new();
    let mut observed: HashSet<Value> = HashSet::new();
    for i in &out {
        if let Some(v) = i.step.written() {
            *writers.entry(v).or_default() += 1;
        }
        if i.step.observes() {
            observed.extend(i.step.observed());
        }
    }
    out.retain(|i| {
        i.step.observes()
            || !matches!(i.step.written(), Some(v) if writers[&v] == 1 && !observed.contains(&Some(v)))
    });
    Ok(out)
}

const NIL: usize = usize::MAX;

/// A node of the event list: the invocation or the completion of an operation.
#[derive(Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
    /// For a call: the node of its completion.
    matching: usize,
    prev: usize,
    next: usize,
}

/// The doubly linked list of events the search walks, with node 0 as head.
struct EventList {
    nodes: Vec<Event>,
}

impl EventList {
    fn new(ops: &[Interval]) -> Self {
        // (time, is_return, op): at equal times invocations come first, so
        // operations that touch in time count as concurrent.
        let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * ops.len());
        for (i, op) in ops.iter().enumerate() {
            events.push((op.invoked, false, i));
            events.push((op.completed, true, i));
        }
        events.sort_unstable();
        let mut nodes = Vec::with_capacity(events.len() + 1);
        nodes.push(Event {
            op: NIL,
            is_call: false,
            matching: NIL,
            prev: NIL,
            next: if events.is_empty() { NIL } else { 1 },
        });
        let mut call_node = vec![NIL; ops.len()];
        for (k, &(_, is_return, op)) in events.iter().enumerate() {
            let idx = k + 1;
            nodes.push(Event {
                op,
                is_call: !is_return,
                matching: NIL,
                prev: idx - 1,
                next: if idx == events.len() { NIL } else { idx + 1 },
            });
            if is_return {
                let call = call_node[op];
                debug_assert_ne!(call, NIL, "a completion sorts after its invocation");
                nodes[call].matching = idx;
            } else {
                call_node[op] = idx;
            }
        }
        Self { nodes }
    }

    fn first(&self) -> usize {
        self.nodes[0].next
    }

    fn unlink(&mut self, n: usize) {
        let Event { prev, next, .. } = self.nodes[n];
        self.nodes[prev].next = next;
        if next != NIL {
            self.nodes[next].prev = prev;
        }
    }

    fn relink(&mut self, n: usize) {
        let Event { prev, next, .. } = self.nodes[n];
        self.nodes[prev].next = n;
        if next != NIL {
            self.nodes[next].prev = n;
        }
    }

    /// Takes an operation (its call and its completion) out of the list.
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        self.unlink(self.nodes[call].matching);
    }

    /// Puts back the operation last lifted.
    fn unlift(&mut self, call: usize) {
        self.relink(self.nodes[call].matching);
        self.relink(call);
    }
}

/// Checks one key's operations; returns how many were checked and the steps taken.
fn check_key(key: &str, ops: &[&Operation], max_steps: u64) -> Result<(usize, u64), CheckError> {
    let intervals = prepare(ops)?;
    let n = intervals.len();
    let mut list = EventList::new(&intervals);
    let words = n.div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut seen: HashSet<(Vec<u64>, Value)> = HashSet::new();
    let mut stack: Vec<(usize, Value)> = Vec::new();
    let mut state: Value = None;
    let mut entry = list.first();
    let mut steps = 0u64;
    while list.first() != NIL {
        steps += 1;
        if steps > max_steps {
            return Err(CheckError::Inconclusive {
                key: key.to_owned(),
                steps,
            });
        }
        let ev = list.nodes[entry];
        if ev.is_call {
            if let Some(next_state) = intervals[ev.op].step.apply(state) {
                linearized[ev.op / 64] |= 1 << (ev.op % 64);
                if seen.insert((linearized.clone(), next_state)) {
                    stack.push((entry, state));
                    state = next_state;
                    list.lift(entry);
                    entry = list.first();
                    continue;
                }
                linearized[ev.op / 64] &= !(1 << (ev.op % 64));
            }
            entry = ev.next;
        } else {
            // A completion: every operation that completed by now must be
            // linearized already, so this branch is dead. Backtrack.
            let Some((call, prev_state)) = stack.pop() else {
                let mut ops: Vec<Operation> = ops.iter().map(|&o| o.clone()).collect();
                ops.sort_by_key(|o| o.invoked);
                return Err(CheckError::NotLinearizable {
                    key: key.to_owned(),
                    ops,
                });
            };
            let op = list.nodes[call].op;
            linearized[op / 64] &= !(1 << (op % 64));
            state = prev_state;
            list.unlift(call);
            entry = list.nodes[call].next;
        }
    }
    Ok((n, steps))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds operations on key "k" tersely: `(invoked, completed, op, output)`.
    fn op(invoked: u64, completed: Option<u64>, op: KvOp, output: KvOutput) -> Operation {
        Operation {
            client: 0,
            key: "k".into(),
            op,
            output,
            invoked,
            completed,
        }
    }

    fn put(inv: u64, done: u64, v: &str, prev: Option<&str>) -> Operation {
        op(
            inv,
            Some(done),
            KvOp::Put(v.into()),
            KvOutput::Write {
                success: true,
                previous: prev.map(Into::into),
            },
        )
    }

    fn get(inv: u64, done: u64, v: Option<&str>) -> Operation {
        op(
            inv,
            Some(done),
            KvOp::Get,
            KvOutput::Value(v.map(Into::into)),
        )
    }

    fn cas(
        inv: u64,
        done: u64,
        expected: Option<&str>,
        new: &str,
        success: bool,
        prev: Option<&str>,
    ) -> Operation {
        op(
            inv,
            Some(done),
            KvOp::Cas {
                expected: expected.map(Into::into),
                new: new.into(),
            },
            KvOutput::Write {
                success,
                previous: prev.map(Into::into),
            },
        )
    }

    fn unknown_put(inv: u64, v: &str) -> Operation {
        op(inv, None, KvOp::Put(v.into()), KvOutput::Unknown)
    }

    fn is_linearizable(h: &[Operation]) -> bool {
        match check(h) {
            Ok(_) => true,
            Err(CheckError::NotLinearizable { .. }) => false,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn an_empty_history_is_linearizable() {
        assert_eq!(check(&[]), Ok(CheckStats::default()));
    }

    #[test]
    fn a_sequential_history_that_follows_the_map_is_linearizable() {
        let h = vec![
            get(0, 1, None),
            put(2, 3, "a", None),
            get(4, 5, Some("a")),
            cas(6, 7, Some("a"), "b", true, Some("a")),
            cas(8, 9, Some("a"), "c", false, Some("b")),
            op(
                10,
                Some(11),
                KvOp::Delete,
                KvOutput::Write {
                    success: true,
                    previous: Some("b".into()),
                },
            ),
            get(12, 13, None),
        ];
        assert!(is_linearizable(&h));
    }

    #[test]
    fn a_read_concurrent_with_a_write_may_see_either_value() {
        assert!(is_linearizable(&[put(0, 10, "a", None), get(1, 2, None)]));
        assert!(is_linearizable(&[
            put(0, 10, "a", None),
            get(1, 2, Some("a"))
        ]));
    }

    #[test]
    fn a_stale_read_after_a_completed_write_is_rejected() {
        let h = vec![put(0, 1, "a", None), get(2, 3, None)];
        assert!(!is_linearizable(&h));
    }

    #[test]
    fn a_lost_acknowledged_write_is_rejected() {
        // "b" was acknowledged, yet a later read sees "a" again.
        let h = vec![
            put(0, 1, "a", None),
            put(2, 3, "b", Some("a")),
            get(4, 5, Some("a")),
        ];
        assert!(!is_linearizable(&h));
    }

    #[test]
    fn reads_that_go_back_in_time_are_rejected() {
        // The write is concurrent with both reads, but once one read saw the
        // new value, a read that starts later cannot see the old one.
        let h = vec![
            put(0, 100, "a", None),
            get(1, 2, Some("a")),
            get(3, 4, None),
        ];
        assert!(!is_linearizable(&h));
    }

    #[test]
    fn two_compare_and_swaps_from_the_same_value_cannot_both_succeed() {
        let h = vec![
            put(0, 1, "a", None),
            cas(2, 10, Some("a"), "b", true, Some("a")),
            cas(3, 9, Some("a"), "c", true, Some("a")),
        ];
        assert!(!is_linearizable(&h));
        // One of them failing (having seen the other's value) is fine.
        let h = vec![
            put(0, 1, "a", None),
            cas(2, 10, Some("a"), "b", true, Some("a")),
            cas(3, 9, Some("a"), "c", false, Some("b")),
        ];
        assert!(is_linearizable(&h));
    }

    #[test]
    fn a_write_of_unknown_outcome_may_take_effect_late_or_never() {
        // Seen by a read long after the client gave up: fine.
        let h = vec![
            unknown_put(0, "a"),
            get(50, 51, None),
            get(100, 101, Some("a")),
        ];
        assert!(is_linearizable(&h));
        // Never seen: fine.
        let h = vec![unknown_put(0, "a"), get(50, 51, None)];
        assert!(is_linearizable(&h));
        // Seen before it was invoked: impossible.
        let h = vec![get(0, 1, Some("a")), unknown_put(5, "a")];
        assert!(!is_linearizable(&h));
        // Seen, then unseen with no other write: impossible.
        let h = vec![unknown_put(0, "a"), get(2, 3, Some("a")), get(4, 5, None)];
        assert!(!is_linearizable(&h));
    }

    #[test]
    fn keys_are_checked_independently() {
        let mut h = vec![put(0, 1, "a", None)];
        let mut other = get(2, 3, None);
        other.key = "other".into();
        h.push(other);
        let stats = check(&h).expect("linearizable");
        assert_eq!(stats.keys, 2);
        // The same read on key "k" would be stale.
        h[1].key = "k".into();
        assert!(matches!(check(&h), Err(CheckError::NotLinearizable { key, .. }) if key == "k"));
    }

    #[test]
    fn many_concurrent_writes_of_unknown_outcome_check_quickly() {
        let mut h: Vec<Operation> = (0..60).map(|i| unknown_put(i, &format!("u{i}"))).collect();
        h.push(put(100, 101, "x", Some("u7")));
        h.push(get(102, 103, Some("x")));
        let stats = check_with_limit(&h, 100_000).expect("linearizable");
        assert!(stats.steps < 10_000, "{stats:?}");
    }

    #[test]
    fn a_history_of_overlapping_operations_checks_within_the_bound() {
        // 400 operations by 4 clients, each overlapping its neighbours, all
        // consistent with the order of invocation.
        let mut h = Vec::new();
        let mut current: Option<String> = None;
        for i in 0..400u64 {
            let v = format!("v{i}");
            if i % 3 == 0 {
                h.push(get(i * 10, i * 10 + 25, current.as_deref()));
            } else {
                h.push(put(i * 10, i * 10 + 25, &v, current.as_deref()));
                current = Some(v);
            }
        }
        let stats = check(&h).expect("linearizable");
        assert_eq!(stats.operations, 400);
    }

    #[test]
    fn an_operation_completed_before_its_invocation_is_malformed() {
        assert!(matches!(
            check(&[get(5, 4, None)]),
            Err(CheckError::Malformed(_))
        ));
    }
}
