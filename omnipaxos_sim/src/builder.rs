//! [`SimBuilder`]: the servers, the seed, the faults, the storage and the
//! state machine of a run.

use crate::{
    Faults, Sim, SimError,
    sim::{Apply, ConfigHook, RestartHook, StateCheck, StorageFactory},
};
use omnipaxos::{
    storage::{Entry, Storage},
    util::NodeId,
};
use std::fmt::Debug;

/// Builds a [`Sim`]; made by [`Sim::builder`]. Only
/// [`storage`](Self::storage) is required.
///
/// | call | default |
/// | --- | --- |
/// | [`seed`](Self::seed) | `0` |
/// | [`faults`](Self::faults) | [`Faults::none()`]: a perfect network |
/// | [`storage`](Self::storage) | required |
/// | [`on_restart`](Self::on_restart) | a restart gets the storage value back as it was |
/// | [`config`](Self::config) | `OmniPaxosConfig::default()` with the simulator's `pid`, `peers` and `configuration_id: 1` (election timeout 10 ticks, resend 20 ticks, `batch_size` 1) |
/// | [`state_machine`](Self::state_machine) | none (the replicas are `()`) |
/// | [`state_invariant`](Self::state_invariant) | none |
/// | [`check_invariants`](Self::check_invariants) | on |
pub struct SimBuilder<T: Entry, S: Storage<T>, M = ()> {
    pub(crate) ids: Vec<NodeId>,
    pub(crate) seed: u64,
    pub(crate) faults: Faults,
    pub(crate) storage: Option<StorageFactory<S>>,
    pub(crate) on_restart: Option<RestartHook<S>>,
    pub(crate) configure: Option<ConfigHook>,
    pub(crate) apply: Apply<T, M>,
    pub(crate) state_invariant: Option<StateCheck<M>>,
    pub(crate) check: bool,
}

impl<T, S> SimBuilder<T, S>
where
    T: Entry + PartialEq,
    S: Storage<T>,
{
    pub(crate) fn new(ids: &[NodeId]) -> Self {
        Self {
            ids: ids.to_vec(),
            seed: 0,
            faults: Faults::none(),
            storage: None,
            on_restart: None,
            configure: None,
            apply: Box::new(|(), _| {}),
            state_invariant: None,
            check: true,
        }
    }
}

impl<T, S, M> SimBuilder<T, S, M>
where
    T: Entry + PartialEq,
    S: Storage<T>,
    M: Default + PartialEq + Debug,
{
    /// Seeds the run's only random number generator: the same seed, faults
    /// and script give the same run, tick for tick.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the network's loss, duplication and delay (checked by
    /// [`build`](Self::build)); [`Sim::set_faults`] changes them later.
    pub fn faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    /// The storage factory: called with a server's id when the server first
    /// starts, and again when it restarts after
    /// [`Sim::crash_and_lose_storage`]. A plain [`Sim::crash`] keeps the
    /// storage value and does not call it.
    pub fn storage(mut self, factory: impl FnMut(NodeId) -> S + 'static) -> Self {
        self.storage = Some(Box::new(factory));
        self
    }

    /// Called on every [`Sim::restart`] that keeps the storage, with the
    /// server's id and the storage value the crashed server left, before
    /// the server is rebuilt on what it returns. For a storage whose state
    /// must go through its files: drop the value and open its directory
    /// again (see the `persistent_storage` test). Without it, the server is
    /// rebuilt on the value as it was, which is what a `MemoryStorage` that
    /// stands in for a disk needs.
    pub fn on_restart(mut self, reopen: impl FnMut(NodeId, S) -> S + 'static) -> Self {
        self.on_restart = Some(Box::new(reopen));
        self
    }

    /// Adjusts each server's config once, when the cluster is built: the
    /// hook gets the server's id and a config the simulator filled in
    /// (`configuration_id: 1`, `pid`, `peers`, and the defaults of
    /// `OmniPaxosConfig` for everything else) and may change anything but
    /// those three fields (election timeout, batch size, leader priority,
    /// flexible quorum, ...). Restarts reuse the adjusted config.
    pub fn config(
        mut self,
        hook: impl FnMut(NodeId, &mut omnipaxos::OmniPaxosConfig) + 'static,
    ) -> Self {
        self.configure = Some(Box::new(hook));
        self
    }

    /// Gives every server a replica of the state machine `M2`: it starts as
    /// `M2::default()` (and again at every restart, to be rebuilt from the
    /// server's log as an application would), and `apply` applies each
    /// entry the server decided, in log order. After every step, two
    /// replicas that applied the same number of entries must be equal
    /// ([`ViolationKind::ReplicasDiverged`](crate::ViolationKind::ReplicasDiverged)).
    ///
    /// Replaces an earlier [`state_invariant`](Self::state_invariant), which
    /// was for the old state type.
    pub fn state_machine<M2>(self, apply: impl Fn(&mut M2, &T) + 'static) -> SimBuilder<T, S, M2>
    where
        M2: Default + PartialEq + Debug,
    {
        SimBuilder {
            ids: self.ids,
            seed: self.seed,
            faults: self.faults,
            storage: self.storage,
            on_restart: self.on_restart,
            configure: self.configure,
            apply: Box::new(apply),
            state_invariant: None,
            check: self.check,
        }
    }

    /// A property of your state machine, checked on a replica after each
    /// entry it applies: `Err(message)` fails the run with
    /// [`ViolationKind::StateInvariant`](crate::ViolationKind::StateInvariant).
    pub fn state_invariant(mut self, check: impl Fn(&M) -> Result<(), String> + 'static) -> Self {
        self.state_invariant = Some(Box::new(check));
        self
    }

    /// Whether to check the invariants after every step (on by default).
    /// Off, the simulator still keeps the decided log and the replicas, but
    /// compares nothing and returns no [`Violation`](crate::Violation).
    pub fn check_invariants(mut self, on: bool) -> Self {
        self.check = on;
        self
    }

    /// Builds and starts every server, fully connected.
    ///
    /// Fails if the ids are empty, contain 0 or a duplicate, if no storage
    /// factory was given, if a [`Faults`] knob is out of range, or if a
    /// server's config is invalid.
    pub fn build(self) -> Result<Sim<T, S, M>, SimError> {
        Sim::from_builder(self)
    }
}
