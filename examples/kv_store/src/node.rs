//! One replica: a thread that owns an `OmniPaxos`, a [`KVStore`], and an inbox.
//!
//! ```text
//!            peers' Input::Net ──┐
//!   client's Input::Client ──────┼──▶ inbox ──▶ OmniPaxos ──▶ outgoing ──▶ peers' inboxes
//!                  ticker ───────┘      (recv_timeout)  │
//!                                                       └──▶ decided suffix ──▶ KVStore ──▶ acks
//! ```
//!
//! The loop is the whole driver: wait for input until the next tick is due,
//! feed what arrived, tick if due, send what the protocol produced, apply what
//! became decided, publish a [`NodeView`]. This is what a runtime does for you;
//! here it is spelled out with std threads and channels.

use crate::{
    cluster::{ClusterWatch, NodeView},
    store::{KVCommand, KVStore, RequestId},
};
use omnipaxos::{OmniPaxos, messages::Message, util::LogEntry, util::NodeId};
use omnipaxos_storage::memory_storage::MemoryStorage;
use std::{
    collections::HashMap,
    sync::{
        Arc,
        mpsc::{Receiver, RecvTimeoutError, Sender},
    },
    time::{Duration, Instant},
};

/// The protocol instance every replica owns.
pub(crate) type KVPaxos = OmniPaxos<KVCommand, MemoryStorage<KVCommand>>;

/// How many inputs the loop takes before it sends and applies. Draining a
/// burst first lets the protocol batch it; the bound keeps ticks on time.
const MAX_INPUTS_PER_ROUND: usize = 512;

/// What arrives in a replica's inbox.
pub(crate) enum Input {
    /// A protocol message from a peer.
    Net(Message<KVCommand>),
    /// A request from a client.
    Client(Request),
    /// Stop at once, as a crashed process would: no goodbye to peers, and
    /// everything in memory (log included, it is `MemoryStorage`) is gone.
    Crash,
}

/// A client request to one replica.
pub(crate) enum Request {
    /// Propose a write; `reply` hears about it once it is decided and applied
    /// here, or at once if the replica refuses it.
    Append { cmd: KVCommand, reply: Sender<Ack> },
    /// Read this replica's applied state.
    Dump { reply: Sender<KVStore> },
}

/// The answer to a [`Request::Append`].
#[derive(Debug)]
pub(crate) struct Ack {
    /// The write being answered.
    pub(crate) id: RequestId,
    /// The replica that answers.
    pub(crate) node: NodeId,
    /// The log index the write was decided at, or why it was refused.
    pub(crate) outcome: Result<u64, String>,
}

/// The replica's state on its own thread.
pub(crate) struct Node {
    pid: NodeId,
    paxos: KVPaxos,
    store: KVStore,
    inbox: Receiver<Input>,
    /// Senders to the other replicas' inboxes. A send to a crashed replica
    /// fails and the message is dropped, as a dead link would drop it.
    peers: HashMap<NodeId, Sender<Input>>,
    /// Writes taken here and not yet applied, by request id: who to tell.
    pending: HashMap<RequestId, Sender<Ack>>,
    /// Reused for `take_outgoing_messages`, so steady state allocates nothing per round.
    outgoing: Vec<Message<KVCommand>>,
    /// Wall-clock length of one protocol tick (the protocol counts in ticks).
    tick_interval: Duration,
    watch: Arc<ClusterWatch>,
    /// Set if the replica saw something that breaks its state machine; the demo fails on it.
    fault: Option<String>,
    /// The view last published, to publish (and wake waiters) only on change.
    last_view: NodeView,
}

impl Node {
    pub(crate) fn new(
        paxos: KVPaxos,
        inbox: Receiver<Input>,
        peers: HashMap<NodeId, Sender<Input>>,
        tick_interval: Duration,
        watch: Arc<ClusterWatch>,
    ) -> Self {
        Self {
            pid: paxos.get_pid(),
            paxos,
            store: KVStore::default(),
            inbox,
            peers,
            pending: HashMap::new(),
            outgoing: Vec::new(),
            tick_interval,
            watch,
            fault: None,
            last_view: NodeView::default(),
        }
    }

    /// Runs the replica until it is told to crash or every sender to its inbox is gone.
    pub(crate) fn run(mut self) {
        let mut next_tick = Instant::now() + self.tick_interval;
        self.publish();
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            let first = match self.inbox.recv_timeout(wait) {
                Ok(input) => Some(input),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut alive = true;
            if let Some(input) = first {
                alive = self.handle(input);
                for _ in 1..MAX_INPUTS_PER_ROUND {
                    if !alive {
                        break;
                    }
                    match self.inbox.try_recv() {
                        Ok(input) => alive = self.handle(input),
                        Err(_) => break,
                    }
                }
            }
            if !alive {
                break;
            }
            let now = Instant::now();
            if now >= next_tick {
                self.paxos.tick();
                // After a stall (a descheduled thread), resume the cadence from
                // now instead of firing a burst of catch-up ticks that would
                // look to the protocol like a long silence from every peer.
                next_tick = (next_tick + self.tick_interval).max(now);
            }
            self.send_outgoing();
            self.apply_decided();
            self.publish();
        }
        self.last_view.alive = false;
        self.watch.update(self.pid, self.last_view.clone());
    }

    /// Feeds one input to the replica. Returns `false` if it must stop.
    fn handle(&mut self, input: Input) -> bool {
        match input {
            Input::Net(msg) => self.paxos.handle_incoming(msg),
            Input::Client(Request::Append { cmd, reply }) => {
                let id = cmd.id();
                match self.paxos.append(cmd) {
                    Ok(()) => {
                        self.pending.insert(id, reply);
                    }
                    Err(err) => {
                        let _ = reply.send(Ack {
                            id,
                            node: self.pid,
                            outcome: Err(err.to_string()),
                        });
                    }
                }
            }
            Input::Client(Request::Dump { reply }) => {
                let _ = reply.send(self.store.clone());
            }
            Input::Crash => return false,
        }
        true
    }

    fn send_outgoing(&mut self) {
        self.paxos.take_outgoing_messages(&mut self.outgoing);
        for msg in self.outgoing.drain(..) {
            if let Some(peer) = self.peers.get(&msg.get_receiver()) {
                // An error means the peer crashed; the message is lost, as on a real network.
                let _ = peer.send(Input::Net(msg));
            }
        }
    }

    fn apply_decided(&mut self) {
        let Some(entries) = self.paxos.read_decided_suffix(self.store.applied_idx()) else {
            return;
        };
        for entry in entries {
            let idx = self.store.applied_idx();
            match entry {
                LogEntry::Decided(cmd) => {
                    self.store.apply(&cmd);
                    if let Some(reply) = self.pending.remove(&cmd.id()) {
                        let _ = reply.send(Ack {
                            id: cmd.id(),
                            node: self.pid,
                            outcome: Ok(idx),
                        });
                    }
                }
                LogEntry::StopSign(..) => self.store.skip(),
                // This example never trims or snapshots, so a decided suffix
                // holds only the two kinds above. Anything else means the state
                // machine can no longer be rebuilt; flag it so the demo fails.
                LogEntry::Undecided(_) | LogEntry::Trimmed(_) | LogEntry::Snapshotted(_) => {
                    self.fault = Some(format!("unexpected entry at decided index {idx}"));
                    self.store.skip();
                }
            }
        }
    }

    fn publish(&mut self) {
        let view = NodeView {
            alive: true,
            leader: self.paxos.get_current_leader(),
            is_leader: self.paxos.is_leader(),
            decided_idx: self.paxos.get_decided_idx(),
            applied_idx: self.store.applied_idx(),
            fault: self
                .paxos
                .get_storage_failure()
                .map(|e| format!("storage failed: {e}"))
                .or_else(|| self.fault.clone()),
        };
        if view != self.last_view {
            self.watch.update(self.pid, view.clone());
            self.last_view = view;
        }
    }
}
