//! [`Faults`]: how hostile the network is.

use crate::SimError;

/// The knobs of the simulated network: loss, duplication and delay (which
/// reorders). Every draw comes from the run's one seeded generator, so a
/// run is a function of its seed, its faults and its script.
///
/// [`Faults::default()`] is a perfect network: nothing is lost, duplicated
/// or delayed past the step a message is sent in. Link cuts, partitions and
/// crashes are commands on [`Sim`](crate::Sim), not knobs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Faults {
    /// The chance, in `[0, 1]`, that the network silently loses a message.
    pub drop_probability: f64,
    /// The chance, in `[0, 1]`, that the network delivers a message twice
    /// (the copy draws its own delay, so it may arrive first).
    pub duplicate_probability: f64,
    /// The fewest ticks a message waits in the network after the step that
    /// sent it; 0 delivers it in the next step's delivery phase at the
    /// earliest (messages sent while handling a delivery wait for the next
    /// step).
    pub min_delay_ticks: u64,
    /// The most ticks a message waits. Each message draws its delay
    /// uniformly from `min_delay_ticks..=max_delay_ticks`, which is what
    /// reorders messages on a link.
    pub max_delay_ticks: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Self::none()
    }
}

impl Faults {
    /// A perfect network (the default).
    pub const fn none() -> Self {
        Self {
            drop_probability: 0.0,
            duplicate_probability: 0.0,
            min_delay_ticks: 0,
            max_delay_ticks: 0,
        }
    }

    /// Checks every knob: probabilities within `[0, 1]`, delays in order.
    pub fn validate(&self) -> Result<(), SimError> {
        for (field, p) in [
            ("drop_probability", self.drop_probability),
            ("duplicate_probability", self.duplicate_probability),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(SimError::InvalidFaults {
                    field,
                    reason: "must be within [0, 1]",
                });
            }
        }
        if self.min_delay_ticks > self.max_delay_ticks {
            return Err(SimError::InvalidFaults {
                field: "min_delay_ticks",
                reason: "must not exceed max_delay_ticks",
            });
        }
        Ok(())
    }
}
