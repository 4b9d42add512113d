//! The log entry type the simulated servers replicate.

use omnipaxos::{macros::Entry, storage::Snapshot};
use serde::{Deserialize, Serialize};

/// One proposal: a number that the cluster hands out once.
///
/// Because every proposal carries a fresh number, a decided entry names exactly
/// one `append` call. That is what lets the invariants tell a proposed entry
/// from an invented one, and a retried proposal from a duplicated decision.
///
/// It is serde-serialisable so that servers can run on `PersistentStorage`
/// (see [`SimStorage`](crate::sim::options::SimStorage)).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Entry, Serialize, Deserialize,
)]
#[snapshot(ValueSnapshot)]
pub struct Value(pub u64);

/// A snapshot of a run of values: how many, and an order-sensitive hash of
/// them, so two snapshots agree only if they stand for the same sequence.
///
/// `merge` is exact: the hash of `a` followed by `b` is
/// `hash(a) * BASE^len(b) + hash(b)` (wrapping), so a snapshot built by
/// merging deltas equals one built from the whole run at once. That lets the
/// invariants compare any server's snapshot with the cluster's decided log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueSnapshot {
    /// How many values the snapshot stands for.
    pub count: u64,
    /// The polynomial hash of the values, in order.
    pub hash: u64,
}

impl ValueSnapshot {
    const BASE: u64 = 0x100_0000_01b3;

    /// The lowest `bits` bits set.
    fn mask(bits: u32) -> u64 {
        if bits >= 64 {
            u64::MAX
        } else {
            (1 << bits) - 1
        }
    }

    /// The snapshot of `values`, in order.
    pub fn of(values: &[Value]) -> Self {
        let hash = values
            .iter()
            .fold(0u64, |h, v| h.wrapping_mul(Self::BASE).wrapping_add(v.0));
        Self {
            count: values.len() as u64,
            hash,
        }
    }
}

impl Snapshot<Value> for ValueSnapshot {
    fn create(entries: &[Value]) -> Self {
        Self::of(entries)
    }

    fn merge(&mut self, delta: Self) {
        let shift = (0..delta.count).fold(1u64, |p, _| p.wrapping_mul(Self::BASE));
        self.hash = self.hash.wrapping_mul(shift).wrapping_add(delta.hash);
        self.count += delta.count;
    }

    fn use_snapshots() -> bool {
        true
    }

    /// Splits the snapshot into one to three parts by its count, whatever
    /// `max_bytes`, so that the simulator exercises snapshots sent in parts
    /// (a real snapshot splits only when it is large): each part carries the
    /// count and a slice of the hash's bits.
    fn into_parts(self, _max_bytes: usize) -> Vec<Self> {
        let k = 1 + (self.count % 3) as u32;
        let bits = 64u32.div_ceil(k);
        (0..k)
            .map(|j| Self {
                count: self.count,
                hash: (self.hash >> (j * bits)) & Self::mask(bits),
            })
            .collect()
    }

    fn from_parts(parts: Vec<Self>) -> Option<Self> {
        let first = parts.first()?;
        let k = u32::try_from(parts.len()).ok()?;
        if k != 1 + (first.count % 3) as u32 || parts.iter().any(|p| p.count != first.count) {
            return None;
        }
        let bits = 64u32.div_ceil(k);
        let mut hash = 0u64;
        for (j, p) in (0u32..).zip(&parts) {
            if p.hash > Self::mask(bits) {
                return None;
            }
            hash |= p.hash.checked_shl(j * bits).unwrap_or(0);
        }
        Some(Self {
            count: first.count,
            hash,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_split_into_parts_is_rebuilt_from_them() {
        for n in 0..9 {
            let values: Vec<Value> = (0..n)
                .map(|v: u64| Value(v.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
                .collect();
            let s = ValueSnapshot::of(&values);
            let parts = s.into_parts(1);
            assert_eq!(parts.len(), 1 + (n % 3) as usize);
            assert_eq!(ValueSnapshot::from_parts(parts.clone()), Some(s));
            if parts.len() > 1 {
                assert_eq!(ValueSnapshot::from_parts(parts[1..].to_vec()), None);
            }
        }
    }

    #[test]
    fn merged_snapshots_equal_the_snapshot_of_the_whole_run() {
        let values: Vec<Value> = (0..10).map(Value).collect();
        let mut merged = ValueSnapshot::of(&values[..3]);
        merged.merge(ValueSnapshot::of(&values[3..7]));
        merged.merge(ValueSnapshot::of(&values[7..]));
        assert_eq!(merged, ValueSnapshot::of(&values));
        assert_ne!(
            ValueSnapshot::of(&[Value(1), Value(2)]),
            ValueSnapshot::of(&[Value(2), Value(1)])
        );
    }
}
