//! A proposal on its way into the log, and the leader's batch of them.
//!
//! An entry and what names it travel together as one [`Proposal`] wherever
//! this server holds proposals it has not placed yet (waiting for a leader,
//! forwarded, cut by a log sync, carried into the next configuration), so
//! that no list of entries has a list of tags beside it to keep in step.
//! Only the leader's [`Batch`] keeps its tags aside, sparsely: its entries
//! go to storage and to every follower as they are, without a copy.

use crate::storage::{OriginId, OriginIds};

/// Names one proposal made on this server, so that the caller learns the
/// index it was decided at. Handed out by `append` in increasing order.
pub(crate) type Tag = u64;

/// The tag of an entry nobody waits for (another server's proposal, or one
/// from before a restart).
pub(crate) const NO_TAG: Tag = 0;

/// One proposal: the entry, what names it to whoever waits for it here,
/// and its identity in every log ([`OriginId`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Proposal<T> {
    /// What is proposed.
    pub(crate) entry: T,
    /// Who waits here for its index ([`NO_TAG`] if nobody does).
    pub(crate) tag: Tag,
    /// Its identity, given when it first leaves this server (appended as
    /// leader or forwarded) and kept through every retry; `None` before
    /// that, and for an entry of a log written before ids existed.
    pub(crate) id: Option<OriginId>,
}

impl<T> Proposal<T> {
    /// A proposal under `tag` (or [`NO_TAG`]) that has no id yet.
    pub(crate) fn new(entry: T, tag: Tag) -> Self {
        Self {
            entry,
            tag,
            id: None,
        }
    }

    /// A proposal with the id `id` that nobody here waits for (another
    /// server's, forwarded to us).
    pub(crate) fn untagged(entry: T, id: Option<OriginId>) -> Self {
        Self {
            entry,
            tag: NO_TAG,
            id,
        }
    }

    /// Whether someone here waits for this proposal's index.
    pub(crate) fn is_tagged(&self) -> bool {
        self.tag != NO_TAG
    }
}

/// The proposals a leader gathered for its next `AcceptDecide`. The entries
/// are kept as a plain `Vec<T>`, the shape storage and the message take, so
/// that sending a batch copies nothing per entry beyond what each follower
/// gets; most entries are untagged, so the tags are kept aside, only for
/// the entries that have one.
#[derive(Debug)]
pub(crate) struct Batch<T> {
    /// The gathered entries, in proposal order.
    pub(crate) entries: Vec<T>,
    /// The tagged entries, as `(position in entries, tag)`, by position.
    pub(crate) tags: Vec<(usize, Tag)>,
    /// The entries' ids, index 0 being the first entry.
    pub(crate) origins: OriginIds,
}

impl<T> Batch<T> {
    /// An empty batch with room for `capacity` entries (the batch size).
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            entries: Vec::with_capacity(capacity),
            tags: Vec::new(),
            origins: OriginIds::new(),
        }
    }

    /// How many entries are gathered.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is gathered.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds a proposal at the end.
    #[inline]
    pub(crate) fn push(&mut self, p: Proposal<T>) {
        let pos = self.entries.len();
        if p.is_tagged() {
            self.tags.push((pos, p.tag));
        }
        if let Some(id) = p.id {
            self.origins.push(pos as u64, id);
        }
        self.entries.push(p.entry);
    }

    /// Splits off the proposals from position `at` on (`at` at most the
    /// length) as a batch of their own, numbered from 0, leaving the first
    /// `at` here.
    pub(crate) fn split_off(&mut self, at: usize) -> Self {
        debug_assert!(at <= self.len(), "a batch splits within its length");
        let entries = self.entries.split_off(at);
        let first_back = self.tags.partition_point(|&(pos, _)| pos < at);
        let tags = self
            .tags
            .drain(first_back..)
            .map(|(pos, tag)| (pos - at, tag))
            .collect();
        let at = at as u64;
        let origins = self
            .origins
            .range(at..u64::MAX)
            .shifted_down(at)
            .unwrap_or_default();
        self.origins.truncate(at);
        Self {
            entries,
            tags,
            origins,
        }
    }

    /// Empties the batch, giving its proposals in order.
    pub(crate) fn take(&mut self) -> Vec<Proposal<T>> {
        let mut tags = self.tags.drain(..).peekable();
        let origins = std::mem::take(&mut self.origins);
        std::mem::take(&mut self.entries)
            .into_iter()
            .enumerate()
            .map(|(pos, entry)| Proposal {
                entry,
                tag: tags.next_if(|&(p, _)| p == pos).map_or(NO_TAG, |(_, t)| t),
                id: origins.get(pos as u64),
            })
            .collect()
    }
}
