//! Uniform agreement: all servers decide the same log.
//!
//! The Omni-Paxos paper requires of Sequence Paxos **SC2 (Uniform Agreement)**:
//! if one server decides a sequence `u` and another decides `v`, then one is a
//! prefix of the other. Checked index by index: the first time any server
//! decides index `i`, its entry is written into a cluster-wide record; every
//! later decision at `i`, by any server and in any incarnation, must carry the
//! same entry.

use super::{NewlyDecided, Violation};
use crate::sim::value::Value;

/// The property's name, as printed in a violation.
pub const NAME: &str = "decided_prefix_agreement";

/// The cluster-wide decided log.
#[derive(Debug, Default)]
pub struct DecidedPrefixAgreement {
    /// Index `i` holds the entry first decided at `i`. Servers decide in index
    /// order, so the first decision at `i` is never made before one at `i - 1`.
    log: Vec<Value>,
}

impl DecidedPrefixAgreement {
    /// The decided entries seen so far, by index.
    pub fn log(&self) -> &[Value] {
        &self.log
    }

    /// Compares a server's new decisions with the record and extends the
    /// record with the indices nobody had decided before.
    pub fn check_and_extend(&mut self, batch: &NewlyDecided) -> Result<(), Violation> {
        for &(idx, value) in &batch.entries {
            let len = self.log.len() as u64;
            if idx < len {
                let agreed = self.log[idx as usize];
                if agreed != value {
                    return Err(Violation::new(
                        NAME,
                        format!(
                            "server {} decided {value:?} at index {idx}, where {agreed:?} was decided before",
                            batch.pid
                        ),
                    ));
                }
            } else if idx == len {
                self.log.push(value);
            } else {
                // Only compaction leaves gaps in what a server reads as
                // decided, and no test compacts past an index nobody decided.
                return Err(Violation::new(
                    NAME,
                    format!(
                        "server {} decided index {idx} while the cluster's decided log ends at {len}",
                        batch.pid
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn batch(pid: u64, from: u64, values: &[u64]) -> NewlyDecided {
        NewlyDecided {
            pid,
            entries: (from..).zip(values.iter().map(|&v| Value(v))).collect(),
        }
    }

    #[test]
    fn servers_deciding_the_same_entries_extend_one_log() {
        let mut check = DecidedPrefixAgreement::default();
        check.check_and_extend(&batch(1, 0, &[10, 11])).unwrap();
        check.check_and_extend(&batch(2, 0, &[10, 11, 12])).unwrap();
        assert_eq!(check.log(), &[Value(10), Value(11), Value(12)]);
    }

    #[test]
    fn a_different_entry_at_a_decided_index_is_a_violation() {
        let mut check = DecidedPrefixAgreement::default();
        check.check_and_extend(&batch(1, 0, &[10, 11])).unwrap();
        let err = check.check_and_extend(&batch(2, 1, &[99])).unwrap_err();
        assert_eq!(err.property, NAME);
    }

    #[test]
    fn deciding_past_the_end_of_the_record_is_a_violation() {
        let mut check = DecidedPrefixAgreement::default();
        let err = check.check_and_extend(&batch(1, 3, &[10])).unwrap_err();
        assert_eq!(err.property, NAME);
    }
}
