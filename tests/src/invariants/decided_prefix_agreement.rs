//! Uniform agreement: all servers decide the same log.
//!
//! The Omni-Paxos paper requires of Sequence Paxos **SC2 (Uniform Agreement)**:
//! if one server decides a sequence `u` and another decides `v`, then one is a
//! prefix of the other. Checked index by index: the first time any server
//! decides index `i`, its entry is written into a cluster-wide record; every
//! later decision at `i`, by any server and in any incarnation, must carry the
//! same entry.
//!
//! Reconfiguration: the log of values continues across configurations at
//! the same indices, so one record serves the whole run. The stop-sign that
//! ends configuration `c` at index `L` is a decision too, but of `c` only
//! (configuration `c + 1` decides a value at `L`): every server of `c` that
//! decides its stop-sign must decide the same one at the same index, that
//! index must be where the record of values ends when the first server
//! decides it (nothing of `c` decided at or past it), and no server of `c`
//! may afterwards decide a value at or past it.

use super::{ConfigHistory, NewlyDecided, Violation};
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
    /// A stop-sign is recorded in `configs` under the batch's configuration.
    pub fn check_and_extend(
        &mut self,
        batch: &NewlyDecided,
        configs: &mut ConfigHistory,
    ) -> Result<(), Violation> {
        let config = batch.config_id;
        let Some(record) = configs.get(config) else {
            return Err(Violation::new(
                NAME,
                format!(
                    "server {} decided in configuration {config}, which the run never had",
                    batch.pid
                ),
            ));
        };
        let stop = record.stop.as_ref().map(|(idx, _)| *idx);
        for &(idx, value) in &batch.entries {
            if stop.is_some_and(|stop| idx >= stop) {
                return Err(Violation::new(
                    NAME,
                    format!(
                        "server {} decided {value:?} at index {idx} in configuration {config}, \
                         whose stop-sign was decided at index {}",
                        batch.pid,
                        stop.unwrap_or_default()
                    ),
                ));
            }
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
        if let Some((idx, ss)) = &batch.stopsign {
            self.check_stopsign(batch.pid, config, *idx, ss, configs)?;
        }
        Ok(())
    }

    fn check_stopsign(
        &self,
        pid: u64,
        config: u32,
        idx: u64,
        ss: &omnipaxos::util::StopSign,
        configs: &mut ConfigHistory,
    ) -> Result<(), Violation> {
        let record = configs
            .get_mut(config)
            .expect("the batch's configuration was looked up above");
        match &record.stop {
            Some((at, agreed)) if (*at, agreed) != (idx, ss) => Err(Violation::new(
                NAME,
                format!(
                    "server {pid} decided {ss:?} at index {idx} to end configuration {config}, \
                     where {agreed:?} at index {at} was decided before"
                ),
            )),
            Some(_) => Ok(()),
            None => {
                let len = self.log.len() as u64;
                if idx != len || ss.config_id != config + 1 {
                    return Err(Violation::new(
                        NAME,
                        format!(
                            "server {pid} decided {ss:?} at index {idx} to end configuration \
                             {config}, but the decided log ends at {len} (the stop-sign must \
                             follow it and name configuration {})",
                            config + 1
                        ),
                    ));
                }
                record.stop = Some((idx, ss.clone()));
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    use omnipaxos::util::StopSign;

    fn batch(pid: u64, from: u64, values: &[u64]) -> NewlyDecided {
        NewlyDecided {
            pid,
            config_id: 1,
            entries: (from..).zip(values.iter().map(|&v| Value(v))).collect(),
            stopsign: None,
        }
    }

    fn history() -> ConfigHistory {
        let mut h = ConfigHistory::default();
        h.add(1, &[1, 2, 3], 2);
        h
    }

    fn ending(mut b: NewlyDecided, idx: u64, members: &[u64]) -> NewlyDecided {
        b.stopsign = Some((idx, StopSign::with(b.config_id + 1, members.to_vec(), None)));
        b
    }

    #[test]
    fn servers_deciding_the_same_entries_extend_one_log() {
        let mut check = DecidedPrefixAgreement::default();
        let mut h = history();
        check
            .check_and_extend(&batch(1, 0, &[10, 11]), &mut h)
            .unwrap();
        check
            .check_and_extend(&batch(2, 0, &[10, 11, 12]), &mut h)
            .unwrap();
        assert_eq!(check.log(), &[Value(10), Value(11), Value(12)]);
    }

    #[test]
    fn a_different_entry_at_a_decided_index_is_a_violation() {
        let mut check = DecidedPrefixAgreement::default();
        let mut h = history();
        check
            .check_and_extend(&batch(1, 0, &[10, 11]), &mut h)
            .unwrap();
        let err = check
            .check_and_extend(&batch(2, 1, &[99]), &mut h)
            .unwrap_err();
        assert_eq!(err.property, NAME);
    }

    #[test]
    fn deciding_past_the_end_of_the_record_is_a_violation() {
        let mut check = DecidedPrefixAgreement::default();
        let err = check
            .check_and_extend(&batch(1, 3, &[10]), &mut history())
            .unwrap_err();
        assert_eq!(err.property, NAME);
    }

    #[test]
    fn the_next_configuration_continues_the_log_at_the_stop_sign_index() {
        let mut check = DecidedPrefixAgreement::default();
        let mut h = history();
        check
            .check_and_extend(&ending(batch(1, 0, &[10, 11]), 2, &[1, 2, 4]), &mut h)
            .unwrap();
        check
            .check_and_extend(&ending(batch(2, 0, &[10, 11]), 2, &[1, 2, 4]), &mut h)
            .unwrap();
        h.add(2, &[1, 2, 4], 2);
        // The new configuration decides a value at the old stop-sign's index.
        let mut next = batch(4, 0, &[10, 11, 12]);
        next.config_id = 2;
        check.check_and_extend(&next, &mut h).unwrap();
        assert_eq!(check.log(), &[Value(10), Value(11), Value(12)]);
        assert_eq!(h.stop_idx(1), Some(2));
    }

    #[test]
    fn two_stop_signs_for_one_configuration_are_a_violation() {
        let mut check = DecidedPrefixAgreement::default();
        let mut h = history();
        check
            .check_and_extend(&ending(batch(1, 0, &[10]), 1, &[1, 2, 4]), &mut h)
            .unwrap();
        let err = check
            .check_and_extend(&ending(batch(2, 0, &[10]), 1, &[1, 2, 5]), &mut h)
            .unwrap_err();
        assert_eq!(err.property, NAME);
    }

    #[test]
    fn a_value_and_a_stop_sign_at_one_index_of_one_configuration_are_a_violation() {
        // Server 1 decides a value at index 1, server 2 the stop-sign there.
        let mut check = DecidedPrefixAgreement::default();
        let mut h = history();
        check
            .check_and_extend(&batch(1, 0, &[10, 11]), &mut h)
            .unwrap();
        let err = check
            .check_and_extend(&ending(batch(2, 0, &[10]), 1, &[1, 2, 4]), &mut h)
            .unwrap_err();
        assert_eq!(err.property, NAME);
        // And the other way round: the stop-sign first, then a value of the
        // same configuration at its index.
        let mut check = DecidedPrefixAgreement::default();
        let mut h = history();
        check
            .check_and_extend(&ending(batch(2, 0, &[10]), 1, &[1, 2, 4]), &mut h)
            .unwrap();
        let err = check
            .check_and_extend(&batch(1, 1, &[11]), &mut h)
            .unwrap_err();
        assert_eq!(err.property, NAME);
    }
}
