//! [`InFlight`]: the bytes of decoded messages from one peer that the node
//! has not handled yet, bounded by
//! [`NetConfig::max_in_flight_bytes_per_peer`](super::NetConfig::max_in_flight_bytes_per_peer).
//!
//! The node's incoming channel counts messages, not bytes, so on its own it
//! would let a peer park thousands of frame-sized messages in it. Each message
//! a link hands to the node therefore carries a [`Charge`], a share of its
//! sender's budget as large as the message's decoded size; the node drops
//! the charge once it has handled the message, and the share is free again.
//! A link whose peer has used up its budget waits before it hands over the
//! next message, and so stops reading, which pushes back through TCP to the
//! peer.

use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A share of one peer's in-flight budget, held by a message until the node
/// has handled it.
pub(super) type Charge = OwnedSemaphorePermit;

/// One peer's in-flight budget; shared by its successive inbound connections,
/// so a peer that reconnects does not get a fresh budget while its earlier
/// messages still wait for the node.
#[derive(Debug)]
pub(super) struct InFlight {
    /// One permit per byte.
    bytes: Arc<Semaphore>,
    capacity: usize,
}

impl InFlight {
    /// A budget of `capacity` bytes; `NetConfig::validate` keeps it within
    /// what a semaphore can count.
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            bytes: Arc::new(Semaphore::new(capacity.min(Semaphore::MAX_PERMITS))),
            capacity,
        }
    }

    /// Waits until `bytes` more fit into the budget and takes them. A charge
    /// larger than the whole budget is taken as the whole budget, so it waits
    /// until nothing else is in flight instead of forever; `NetConfig::validate`
    /// keeps every frame's charge within the budget anyway.
    pub(super) async fn admit(&self, bytes: usize) -> Charge {
        let mut left = bytes.min(self.capacity);
        // The semaphore takes at most `u32::MAX` permits at a time; a larger
        // charge is taken in pieces. Only the peer's current link admits, so
        // pieces of two charges do not interleave and starve each other.
        let mut charge = self.take(0).await;
        while left > 0 {
            let piece = u32::try_from(left).unwrap_or(u32::MAX);
            charge.merge(self.take(piece).await);
            left -= piece as usize;
        }
        charge
    }

    async fn take(&self, n: u32) -> Charge {
        match Arc::clone(&self.bytes).acquire_many_owned(n).await {
            Ok(permit) => permit,
            Err(_) => unreachable!("nothing closes an in-flight semaphore"),
        }
    }

    /// The bytes in flight now.
    pub(super) fn used(&self) -> usize {
        self.capacity
            .min(Semaphore::MAX_PERMITS)
            .saturating_sub(self.bytes.available_permits())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_charge_waits_until_earlier_ones_are_released() {
        let budget = InFlight::new(100);
        let a = budget.admit(60).await;
        assert_eq!(budget.used(), 60);
        let waiting = tokio::time::timeout(Duration::from_secs(1), budget.admit(50)).await;
        assert!(
            waiting.is_err(),
            "50 more bytes do not fit beside 60 of 100"
        );
        drop(a);
        assert_eq!(budget.used(), 0);
        let b = budget.admit(50).await;
        assert_eq!(budget.used(), 50);
        drop(b);
    }

    #[tokio::test(start_paused = true)]
    async fn a_charge_above_the_budget_takes_all_of_it() {
        let budget = InFlight::new(100);
        let c = budget.admit(1000).await;
        assert_eq!(budget.used(), 100);
        drop(c);
        assert_eq!(budget.used(), 0);
    }
}
