//! Logical timers counted in ticks. The protocol has no clock: the driver
//! calls `tick()` and each timer counts those calls.

/// A timer that fires every `timeout` ticks.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LogicalClock {
    elapsed: u64,
    timeout: u64,
}

impl LogicalClock {
    pub(crate) fn with(timeout: u64) -> Self {
        debug_assert!(timeout > 0, "config validation rejects zero timeouts");
        Self {
            elapsed: 0,
            timeout,
        }
    }

    /// Counts one tick; true when the timeout is reached (and the clock restarts).
    pub(crate) fn tick_and_check(&mut self) -> bool {
        self.elapsed += 1;
        if self.elapsed >= self.timeout {
            self.elapsed = 0;
            true
        } else {
            false
        }
    }

    /// Starts counting from zero again.
    pub(crate) fn reset(&mut self) {
        self.elapsed = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_every_timeout_ticks() {
        let mut c = LogicalClock::with(3);
        let fired: Vec<bool> = (0..7).map(|_| c.tick_and_check()).collect();
        assert_eq!(fired, [false, false, true, false, false, true, false]);
    }
}
