//! Telling stragglers that their configuration ended.
//!
//! A server that missed the decision of its configuration's stop-sign learns
//! nothing more from its peers once they have moved on: they speak in the
//! next configuration, whose messages it drops. So the servers of the next
//! configuration answer whatever it still sends in the old one with how that
//! configuration ended, and it moves on too (see
//! `SequencePaxos::handle_stopsign_decided`).
//!
//! ```text
//!  straggler X (configuration c)              N (configuration c + 1)
//!   any message of c          ──────────────▶  knows how c ended
//!                             ◀──────────────  StopSignDecided{ss, stop_idx, n_accepted}
//!
//!  Y (c + 1, restarted or joined: does not know how c ended)
//!   StopSignRequest           ──────────────▶  each peer, every resend timeout
//!                             ◀──────────────  StopSignReply{decided: Option<..>}
//! ```
//!
//! What a server knows of the previous configuration is persisted
//! (`Storage::set_previous_configuration_end`): written in the same batch
//! that moves the server on, or when it learns it from a peer (by a
//! `StopSignReply`, or with the log it pulled when joining), and read back
//! when the server is built, so a restart does not forget it. A server that
//! does not know (it joined before anyone could say, or its storage predates
//! the slot) asks its peers. Servers of the ended configuration that know
//! of the decision tell their peers too (see `OmniPaxos::handle_incoming`).

use crate::{
    clock::LogicalClock,
    config::OmniPaxosConfig,
    messages::{Message, PaxosMessage, PaxosMsg, StopSignDecided, StopSignReply, StopSignRequest},
    storage::Entry,
    util::{ConfigurationId, MAX_LOG_INDEX, NodeId},
};

/// What this server knows of the configuration before its own, and the
/// messages about it on their way out.
pub(crate) struct Stragglers<T: Entry> {
    pid: NodeId,
    configuration_id: ConfigurationId,
    /// How the previous configuration ended, once known.
    previous: Option<StopSignDecided>,
    /// Peers that have not answered our [`StopSignRequest`] yet; empty once
    /// `previous` is known, or if this configuration is the first.
    unanswered: Vec<NodeId>,
    /// Fires when the peers in `unanswered` are asked again.
    ask_timer: LogicalClock,
    /// At most one message of each kind per receiver until the driver takes
    /// them: bounded by three times the servers of both configurations.
    outgoing: Vec<Message<T>>,
}

impl<T: Entry> Stragglers<T> {
    /// A server that does not know yet how the previous configuration ended
    /// (if there was one: any configuration but the first, id 1).
    pub(crate) fn with(config: &OmniPaxosConfig) -> Self {
        let first = config.configuration_id <= 1;
        Self {
            pid: config.pid,
            configuration_id: config.configuration_id,
            previous: None,
            unanswered: if first {
                Vec::new()
            } else {
                config.peers.clone()
            },
            ask_timer: LogicalClock::with(config.resend_message_tick_timeout),
            outgoing: Vec::new(),
        }
    }

    /// How the previous configuration ended, if known.
    pub(crate) fn previous(&self) -> Option<&StopSignDecided> {
        self.previous.as_ref()
    }

    /// This server moved on from the previous configuration, which ended as
    /// `decided` says.
    pub(crate) fn moved_on(&mut self, decided: StopSignDecided) {
        self.previous = Some(decided);
        self.unanswered.clear();
    }

    /// Whether `configuration_id` is the previous configuration's.
    pub(crate) fn is_previous(&self, configuration_id: ConfigurationId) -> bool {
        configuration_id.checked_add(1) == Some(self.configuration_id)
    }

    /// `from` sent a message in the previous configuration (`is_notice`: one
    /// that tells us how it ended): it missed the end; tell it, if we know.
    /// Never in answer to a notice, so that two servers never bounce them.
    pub(crate) fn handle_previous(&mut self, from: NodeId, is_notice: bool) {
        if let (Some(decided), false) = (&self.previous, is_notice) {
            let (config_id, decided) = (self.configuration_id - 1, decided.clone());
            self.push(from, config_id, PaxosMsg::StopSignDecided(decided));
        }
    }

    /// Tells peer `from`, of our own configuration, that its stop-sign was decided.
    pub(crate) fn tell(&mut self, from: NodeId, decided: StopSignDecided) {
        self.push(
            from,
            self.configuration_id,
            PaxosMsg::StopSignDecided(decided),
        );
    }

    pub(crate) fn handle_request(&mut self, from: NodeId) {
        let reply = StopSignReply {
            decided: self.previous.clone(),
        };
        self.push(from, self.configuration_id, PaxosMsg::StopSignReply(reply));
    }

    /// `from`, a server of the next configuration named by our decided
    /// stop-sign, asks how our configuration ended (it joins the next one
    /// and knows only where we are): answered in the next configuration.
    pub(crate) fn answer_joiner(&mut self, from: NodeId, decided: StopSignDecided) {
        let next = decided.ss.config_id;
        let reply = StopSignReply {
            decided: Some(decided),
        };
        self.push(from, next, PaxosMsg::StopSignReply(reply));
    }

    /// `from` answered our [`StopSignRequest`]; returns how the previous
    /// configuration ended if we learned it just now (for the caller to
    /// persist).
    pub(crate) fn handle_reply(
        &mut self,
        from: NodeId,
        reply: StopSignReply,
    ) -> Option<StopSignDecided> {
        self.unanswered.retain(|&p| p != from);
        match reply.decided {
            Some(d)
                if self.previous.is_none()
                    && d.ss.config_id == self.configuration_id
                    && d.stop_idx <= MAX_LOG_INDEX =>
            {
                self.moved_on(d.clone());
                Some(d)
            }
            _ => None,
        }
    }

    pub(crate) fn tick(&mut self) {
        if self.unanswered.is_empty() || !self.ask_timer.tick_and_check() {
            return;
        }
        for i in 0..self.unanswered.len() {
            let to = self.unanswered[i];
            self.push(
                to,
                self.configuration_id,
                PaxosMsg::StopSignRequest(StopSignRequest),
            );
        }
    }

    /// Moves the messages out (appending to `buf`).
    pub(crate) fn take_outgoing(&mut self, buf: &mut Vec<Message<T>>) {
        buf.append(&mut self.outgoing);
    }

    /// Drops what is waiting to go out (the server stopped).
    pub(crate) fn clear_outgoing(&mut self) {
        self.outgoing.clear();
    }

    fn push(&mut self, to: NodeId, configuration_id: ConfigurationId, msg: PaxosMsg<T>) {
        let kind = std::mem::discriminant(&msg);
        let waiting = self.outgoing.iter().any(|m| match m {
            Message::SequencePaxos(p) => p.to == to && std::mem::discriminant(&p.msg) == kind,
            Message::BLE(_) => false,
        });
        if !waiting {
            self.outgoing.push(Message::SequencePaxos(PaxosMessage {
                configuration_id,
                from: self.pid,
                to,
                msg,
            }));
        }
    }
}
