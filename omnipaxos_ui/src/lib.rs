//! # omnipaxos_ui
//!
//! A terminal dashboard for an [`omnipaxos`] server: its role, ballot and log
//! indices, the leader, how it hears each peer, the leader's view of each
//! follower's replication, decided entries per second, leader changes and
//! elections as they happen, and a log pane fed by [`OmniPaxosUI::logger`].
//! Given every server's states ([`OmniPaxosUI::tick_cluster`]) it also draws
//! who hears whom, so that a partition shows as a pattern.
//!
//! The API follows upstream OmniPaxos's `omnipaxos_ui`: build with
//! [`OmniPaxosUI::with`], [`start`](OmniPaxosUI::start), then
//! [`tick`](OmniPaxosUI::tick) about every 100 ms with
//! [`OmniPaxos::get_ui_states`](omnipaxos::OmniPaxos::get_ui_states) (or the
//! runtime node's `get_ui_states().await`), and
//! [`stop`](OmniPaxosUI::stop). `q` or `Esc` in the dashboard stops it too;
//! [`is_started`](OmniPaxosUI::is_started) then turns false.
//!
//! ```no_run
//! use omnipaxos::{OmniPaxos, OmniPaxosConfig, storage::{Entry, NoSnapshot}};
//! use omnipaxos_storage::memory_storage::MemoryStorage;
//! use omnipaxos_ui::{OmniPaxosUI, UIAppConfig};
//! use std::time::Duration;
//!
//! #[derive(Clone, Debug)]
//! struct Put(u64);
//! impl Entry for Put {
//!     type Snapshot = NoSnapshot;
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = OmniPaxosConfig { configuration_id: 1, pid: 1, ..Default::default() };
//! let mut node: OmniPaxos<Put, MemoryStorage<Put>> =
//!     config.clone().build(MemoryStorage::default())?;
//! let mut ui = OmniPaxosUI::with(UIAppConfig::from(config));
//! ui.start()?;
//! slog::info!(ui.logger(), "dashboard up"; "pid" => 1);
//! while ui.is_started() {
//!     for _ in 0..10 {
//!         node.tick(); // your driver loop, at its own pace
//!     }
//!     ui.tick(node.get_ui_states()); // returns at once
//!     std::thread::sleep(Duration::from_millis(100));
//! }
//! ui.stop()?;
//! # Ok(())
//! # }
//! ```
//!
//! ## Drawing never blocks the node
//!
//! The dashboard draws on a thread of its own. `tick` and `tick_cluster` only
//! put the states into a one-value slot, replacing states not drawn yet, so
//! they take a lock for a swap and never wait for the terminal; when drawing
//! falls behind, states are skipped (the header counts them), never queued.
//! Every history (chart points, events, log lines) has a fixed capacity set
//! in [`UIAppConfig`].
//!
//! ## The terminal
//!
//! `start` puts the terminal in raw mode on the alternate screen; `stop`, a
//! quit key, dropping the `OmniPaxosUI`, and a panic on any thread (through a
//! panic hook installed in front of the existing one) give it back as it
//! was. A terminal smaller than the layout needs shows a request to resize
//! instead of the panes.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod config;
mod error;
mod log;
mod model;
mod ring;
mod slot;
mod terminal;
#[cfg(test)]
mod test_cluster;
mod views;

pub use crate::{
    config::{KeyHelp, UIAppConfig},
    error::UiError,
};

use crate::{
    log::PaneDrain,
    model::{Update, UpdateKind},
    terminal::{Shared, TerminalGuard},
};
use omnipaxos::ui::OmniPaxosStates;
use std::{
    sync::{Arc, atomic::Ordering},
    thread::JoinHandle,
    time::Instant,
};

/// The dashboard of one server (and, optionally, its cluster).
///
/// Methods take `&self` except `start` and `stop`, so one dashboard can be
/// ticked from the node's loop while another part of the program logs to it.
pub struct OmniPaxosUI {
    config: UIAppConfig,
    shared: Arc<Shared>,
    /// The terminal thread while it runs; it returns why it ended.
    thread: Option<JoinHandle<Result<(), UiError>>>,
    logger: slog::Logger,
}

impl std::fmt::Debug for OmniPaxosUI {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OmniPaxosUI")
            .field("config", &self.config)
            .field("started", &self.is_started())
            .finish_non_exhaustive()
    }
}

impl OmniPaxosUI {
    /// Creates a dashboard; nothing is drawn until [`start`](Self::start).
    /// The log pane already collects what is written to
    /// [`logger`](Self::logger).
    pub fn with(config: UIAppConfig) -> Self {
        let shared = Arc::new(Shared::new(config.log_capacity));
        let logger = slog::Logger::root(
            PaneDrain {
                book: shared.log.clone(),
            },
            slog::o!(),
        );
        Self {
            config,
            shared,
            thread: None,
            logger,
        }
    }

    /// Takes over the terminal and starts drawing. Does nothing if the
    /// dashboard is already started.
    ///
    /// Fails if a setting is invalid, if another dashboard owns the
    /// terminal, or if standard output is no terminal; the terminal is then
    /// left as it was.
    pub fn start(&mut self) -> Result<(), UiError> {
        if self.is_started() {
            return Ok(());
        }
        // A thread that ended by itself (the user quit) is reaped first; why
        // it ended no longer matters to a caller who starts again.
        let _ = self.join();
        self.config.validate()?;
        let guard = TerminalGuard::take()?;
        self.shared.running.store(true, Ordering::Release);
        let shared = self.shared.clone();
        let config = self.config.clone();
        let thread = std::thread::Builder::new()
            .name("omnipaxos-ui".into())
            .spawn(move || terminal::run(guard, shared, config))
            .map_err(|e| {
                self.shared.running.store(false, Ordering::Release);
                UiError::Spawn(e)
            })?;
        self.thread = Some(thread);
        Ok(())
    }

    /// Stops drawing and gives the terminal back; waits for the terminal
    /// thread, which takes at most one frame interval. Does nothing if the
    /// dashboard is not started.
    ///
    /// Returns the error that ended the terminal thread early, if one did
    /// (say, the terminal went away).
    pub fn stop(&mut self) -> Result<(), UiError> {
        self.shared.running.store(false, Ordering::Release);
        self.join()
    }

    fn join(&mut self) -> Result<(), UiError> {
        match self.thread.take() {
            Some(thread) => thread.join().unwrap_or(Err(UiError::Panicked)),
            None => Ok(()),
        }
    }

    /// Whether the dashboard is drawing: started, and not quit by the user
    /// (`q`, `Esc`) or ended by an error. An application whose dashboard is
    /// its only interface leaves when this turns false.
    pub fn is_started(&self) -> bool {
        self.shared.running.load(Ordering::Acquire)
            && self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Hands this server's latest states to the dashboard. Call it about
    /// every 100 ms with [`OmniPaxos::get_ui_states`](omnipaxos::OmniPaxos::get_ui_states).
    /// Returns at once: the states replace any not drawn yet.
    pub fn tick(&self, states: OmniPaxosStates) {
        self.put(UpdateKind::Node(states));
    }

    /// Hands every running server's states to the dashboard, for the
    /// connectivity matrix and the leader's view of replication. The
    /// server the dashboard is attached to is found among them by pid; a
    /// configured server whose states are missing is shown as down. Use it
    /// instead of [`tick`](Self::tick), at the same pace.
    pub fn tick_cluster(&self, states: Vec<OmniPaxosStates>) {
        self.put(UpdateKind::Cluster(states));
    }

    fn put(&self, kind: UpdateKind) {
        self.shared.updates.put(Update {
            at: Instant::now(),
            kind,
        });
    }

    /// A logger whose records appear in the log pane, newest last, with
    /// their key-values. Clone it freely; a record costs a format and a
    /// short lock, never a draw.
    pub fn logger(&self) -> slog::Logger {
        self.logger.clone()
    }

    /// The next key the user pressed that the dashboard does not handle
    /// itself (every character but `q`); list them in
    /// [`UIAppConfig::key_help`]. At most 64 wait; more are dropped.
    pub fn take_key(&self) -> Option<char> {
        self.shared.take_key()
    }

    /// Sets the line shown under the key help (say, what the application
    /// just did, or what it waits for); an empty string removes it.
    pub fn set_status(&self, status: impl Into<String>) {
        self.shared.status.put(status.into());
    }
}

impl Drop for OmniPaxosUI {
    /// Gives the terminal back if the dashboard is still drawing.
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_cluster::{states_at, three_node_cluster};

    #[test]
    fn tick_only_hands_over_the_states_and_keeps_the_latest_while_nothing_draws() {
        let cluster = three_node_cluster();
        let ui = OmniPaxosUI::with(UIAppConfig {
            pid: 1,
            peers: vec![2, 3],
            ..Default::default()
        });
        assert!(!ui.is_started());
        for _ in 0..1000 {
            ui.tick(states_at(&cluster, 1));
        }
        ui.tick_cluster(vec![states_at(&cluster, 1), states_at(&cluster, 2)]);
        // One value waits; every earlier one was dropped, not queued.
        assert_eq!(ui.shared.updates.skipped(), 1000);
        let Some(Update {
            kind: UpdateKind::Cluster(states),
            ..
        }) = ui.shared.updates.take()
        else {
            panic!("the newest update waits in the slot");
        };
        assert_eq!(states.len(), 2);
        assert!(ui.shared.updates.take().is_none());
    }

    #[test]
    fn an_invalid_config_is_refused_before_the_terminal_is_touched() {
        let mut ui = OmniPaxosUI::with(UIAppConfig::default());
        assert!(matches!(
            ui.start(),
            Err(UiError::InvalidConfig { field: "pid", .. })
        ));
        assert!(!ui.is_started());
        assert!(
            ui.stop().is_ok(),
            "stopping a dashboard never started is a no-op"
        );
    }

    #[test]
    fn the_logger_writes_to_the_log_pane_and_keys_wait_for_the_application() {
        let ui = OmniPaxosUI::with(UIAppConfig {
            pid: 1,
            ..Default::default()
        });
        slog::info!(ui.logger(), "crashed node"; "pid" => 2);
        let lines = ui.shared.log.newest(10);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].text, "crashed node pid=2");
        assert_eq!(ui.take_key(), None);
    }
}
