//! The futures and streams a node's calls hand out.

use super::{Command, DecidedBatch, NodeStatus, OmniPaxosNode};
use crate::{RuntimeError, metrics::CallRecord};
use omnipaxos::storage::Entry;
use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};
use tokio::{
    sync::{oneshot, watch},
    time::Sleep,
};

/// An append handed to the node: await it for the entry's log index once
/// decided, or the error that ended it (see [`OmniPaxosNode::append`]).
/// Dropping it does not withdraw the entry.
#[derive(Debug)]
#[must_use = "the append proceeds anyway; await this to learn its index"]
pub struct PendingAppend {
    pub(super) rx: oneshot::Receiver<Result<u64, RuntimeError>>,
    pub(super) deadline: Option<Pin<Box<Sleep>>>,
    pub(super) stopped: watch::Receiver<NodeStatus>,
    /// Counts the outcome in [`OmniPaxosNode::metrics`] when this resolves,
    /// or as abandoned if it is dropped first.
    pub(super) record: CallRecord,
}

impl Future for PendingAppend {
    type Output = Result<u64, RuntimeError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let result = if let Poll::Ready(r) = Pin::new(&mut self.rx).poll(cx) {
            r.unwrap_or_else(|_| {
                Err(self
                    .stopped
                    .borrow()
                    .stopped
                    .clone()
                    .unwrap_or(RuntimeError::ShutDown))
            })
        } else if self
            .deadline
            .as_mut()
            .is_some_and(|d| d.as_mut().poll(cx).is_ready())
        {
            Err(RuntimeError::Timeout)
        } else {
            return Poll::Pending;
        };
        self.record.finish(&result);
        Poll::Ready(result)
    }
}

/// Decided entries in log order, from [`OmniPaxosNode::decided_entries`].
#[derive(Debug)]
pub struct DecidedEntries<T: Entry> {
    pub(super) node: OmniPaxosNode<T>,
    pub(super) status: watch::Receiver<NodeStatus>,
    pub(super) next_idx: u64,
}

impl<T> DecidedEntries<T>
where
    T: Entry + Send + Sync + 'static,
    T::Snapshot: Send,
{
    /// Waits until entries past the last batch are decided and returns them.
    /// Fails with [`RuntimeError::ShutDown`] once the node is shut down.
    ///
    /// The stream is one log across membership changes: a configuration's
    /// stop-sign is not in it, because the next configuration's first entry
    /// takes the stop-sign's index. A node that moves into the next
    /// configuration goes on with that configuration's entries; a node left
    /// out ends the stream with [`RuntimeError::Removed`] once it retires.
    /// (Watch [`NodeStatus::configuration_id`](crate::NodeStatus::configuration_id) to learn of
    /// the move.)
    pub async fn next(&mut self) -> Result<DecidedBatch<T>, RuntimeError> {
        loop {
            let decided = self.status.borrow_and_update().decided_idx;
            if decided > self.next_idx {
                let from = self.next_idx;
                let batch = self.node.call(|tx| Command::ReadDecided(from, tx)).await?;
                if batch.end_idx > self.next_idx {
                    self.next_idx = batch.end_idx;
                    return Ok(batch);
                }
            }
            if self.status.changed().await.is_err() {
                return Err(self.node.stopped());
            }
        }
    }

    /// The index the next batch starts at.
    pub fn next_idx(&self) -> u64 {
        self.next_idx
    }
}
