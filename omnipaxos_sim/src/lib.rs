//! A deterministic simulator for [`omnipaxos`] clusters on **your** entry
//! type, **your** storage and **your** state machine.
//!
//! `OmniPaxos` does no I/O and reads no clock, so a whole cluster runs in
//! one thread: the simulator ticks every server, carries their messages
//! over a seeded network that loses, duplicates, delays and reorders them,
//! cuts links, partitions and crashes servers, and after every tick checks
//! that the cluster stayed safe. A run is a function of its seed and its
//! script: no threads, no clocks, no sleeps, and all randomness from one
//! `ChaCha8Rng`. A failing seed replays exactly, and every error names it.
//!
//! # A cluster on your state machine
//!
//! ```
//! use omnipaxos::macros::Entry;
//! use omnipaxos_sim::{Faults, Sim};
//! use omnipaxos_storage::memory_storage::MemoryStorage;
//!
//! /// The log's entries: add to a counter.
//! #[derive(Clone, Debug, PartialEq, Entry)]
//! struct Add(u64);
//!
//! /// The state machine every server applies the decided entries to.
//! #[derive(Debug, Default, PartialEq)]
//! struct Counter {
//!     total: u64,
//!     adds: u64,
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut sim = Sim::builder(&[1, 2, 3])
//!     .seed(7)
//!     .faults(Faults {
//!         drop_probability: 0.05,
//!         max_delay_ticks: 3,
//!         ..Faults::none()
//!     })
//!     .storage(|_pid| MemoryStorage::default())
//!     .state_machine(|c: &mut Counter, add: &Add| {
//!         c.total += add.0;
//!         c.adds += 1;
//!     })
//!     .state_invariant(|c| {
//!         if c.total >= c.adds { Ok(()) } else { Err(format!("{c:?} lost an add")) }
//!     })
//!     .build()?;
//!
//! let leader = sim.wait_for_leader(500)?;
//! for i in 1..=10 {
//!     sim.propose(leader, Add(i))?;
//! }
//! // Crash a follower and bring it back on the storage it left.
//! let follower = sim.ids().iter().copied().find(|&p| p != leader).unwrap();
//! sim.crash(follower)?;
//! sim.run_for(50)?;
//! sim.restart(follower)?;
//! sim.run_until(|s| s.ids().iter().all(|&p| s.applied(p) == Some(10)), 2_000)?;
//! assert_eq!(sim.replica(follower), Some(&Counter { total: 55, adds: 10 }));
//! assert_eq!(sim.decided_log().len(), 10);
//! # Ok(())
//! # }
//! ```
//!
//! # What it checks
//!
//! After every [`Sim::step`] (and on [`Sim::check_invariants`]), a broken
//! property is a [`SimError::Violation`] carrying a [`Violation`]: the seed,
//! the tick, and a [`ViolationKind`] naming the servers and the index.
//!
//! 1. **Decided prefixes agree**: the simulator keeps a cluster-wide decided
//!    log ([`Sim::decided_log`]) and compares every entry every server
//!    decides against it, also for servers that crashed since.
//! 2. **A server's decided index never goes down** on one storage.
//! 3. **Every decided entry was proposed**, through [`Sim::propose`].
//! 4. **No proposal is decided twice**: an entry decided more often than it
//!    was proposed fails 3; and each server's reports of its own proposals
//!    (the simulator proposes with `append_tracked` and drains
//!    `take_decided_proposals`) must name the index where the cluster
//!    decided that very entry, once.
//! 5. **Your state machine is deterministic**: each server's replica
//!    ([`Sim::replica`]) applies its decided entries in order, and two
//!    replicas that applied the same number of entries must be equal; your
//!    [`state_invariant`](SimBuilder::state_invariant) must hold on every
//!    replica after each apply.
//!
//! ## Why `T: PartialEq`
//!
//! Agreement compares entries, so the entry type must be `PartialEq` (and
//! `Debug`, which every `Entry` is, for the messages). Validity (3) and
//! exactly-once (4) match a newly decided entry against the proposals not
//! decided yet by equality, so equal entries are interchangeable: to check
//! exactly-once per proposal, make entries unique, as the kv_store's
//! commands are with their `CommandId`. No `Hash` is required; the list of
//! undecided proposals is searched linearly, and it stays short (proposals
//! in flight, and those a crash lost). The ids of `append_tracked` add the
//! per-proposal check of 4 where a server stays up.
//!
//! ## Snapshots and compaction
//!
//! The simulator compacts nothing itself: only your calls to `trim` or
//! `snapshot` through [`Sim::node_mut`] do, and for an entry type whose
//! snapshot is `NoSnapshot` a follower's log is never compacted for it. An
//! entry type with real snapshots (as the kv_store's) may catch a lagging
//! follower up with a snapshot instead of entries; its replica is then
//! brought up to date from the cluster's decided log, which the leader read
//! before. If a server's decided entries are no longer readable anywhere
//! (every server compacted them before the simulator read them), the step
//! returns [`SimError::UnreadableLog`] naming the server and index, rather
//! than panicking.
//!
//! ## What it does not simulate
//!
//! One configuration: `reconfigure` through [`Sim::node_mut`] is not
//! followed into the next configuration (the stop-sign ends every log).
//! Storage failures are your storage's own; the simulator drives it as it
//! is.
//!
//! # The pieces
//!
//! | item | what |
//! | --- | --- |
//! | [`Sim`] | the cluster: `step`, `run_for`, `run_until`, `wait_for_leader`, `propose`, links, crashes, observations |
//! | [`SimBuilder`] | the ids, seed, faults, storage factory, config hook, state machine |
//! | [`Faults`] | loss, duplication, delay |
//! | [`SimError`], [`Violation`], [`ViolationKind`], [`ProposeError`] | what went wrong |
//! | [`NetworkStats`] | what happened to the messages |
#![deny(missing_docs)]

mod builder;
mod checks;
mod error;
mod faults;
mod network;
mod record;
mod sim;

pub use crate::{
    builder::SimBuilder,
    error::{ProposeError, SimError, Violation, ViolationKind},
    faults::Faults,
    network::NetworkStats,
    sim::Sim,
};
