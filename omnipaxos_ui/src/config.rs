//! [`UIAppConfig`]: what the dashboard shows and how much history it keeps.

use crate::UiError;
use omnipaxos::{ConfigurationId, NodeId, OmniPaxosConfig};
use std::time::Duration;

/// The dashboard's settings. Build it from the server's own config with
/// `UIAppConfig::from(omnipaxos_config)` and adjust fields as needed;
/// [`OmniPaxosUI::start`](crate::OmniPaxosUI::start) checks them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UIAppConfig {
    /// The server the dashboard is attached to: its states are the ones
    /// [`tick`](crate::OmniPaxosUI::tick) gets, and its row leads the
    /// connectivity matrix.
    pub pid: NodeId,
    /// The other servers, so that the matrix has a row for a server that
    /// never reported (it may have been down since the start).
    pub peers: Vec<NodeId>,
    /// Shown in the header, so that an operator watching two clusters can
    /// tell them apart.
    pub configuration_id: ConfigurationId,
    /// The header's first word (say, the application's name).
    pub title: String,
    /// How long the terminal thread waits for a key before it looks for new
    /// states (and redraws if anything changed): the longest a state waits
    /// to be drawn. Shorter than the tick interval, so that states are not
    /// skipped merely because two arrived within one wait. Has to be
    /// non-zero, or the thread would spin.
    pub frame_interval: Duration,
    /// How often a point of the decided-entries-per-second chart is taken.
    /// Longer than the tick interval, so that a point averages several
    /// states instead of jumping with each batch.
    pub sample_interval: Duration,
    /// How many chart points are kept: with the defaults, two minutes.
    pub history_len: usize,
    /// How many events (leader changes, elections, lost peers) are kept.
    pub event_capacity: usize,
    /// How many log lines from [`logger`](crate::OmniPaxosUI::logger) are kept.
    pub log_capacity: usize,
    /// Keys the application handles itself (read with
    /// [`take_key`](crate::OmniPaxosUI::take_key)), listed in the help bar
    /// after the dashboard's own `q`/`Esc`.
    pub key_help: Vec<KeyHelp>,
}

/// One entry of the help bar: a key (or keys) and what it does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyHelp {
    /// The key as the user types it, e.g. `"x"` or `"1-9"`.
    pub keys: String,
    /// What it does, in a few words.
    pub action: String,
}

impl KeyHelp {
    /// A help entry.
    pub fn new(keys: impl Into<String>, action: impl Into<String>) -> Self {
        Self {
            keys: keys.into(),
            action: action.into(),
        }
    }
}

impl Default for UIAppConfig {
    /// The defaults; `pid` is 0, which [`start`](crate::OmniPaxosUI::start)
    /// refuses, so set it (or build from an `OmniPaxosConfig`).
    fn default() -> Self {
        Self {
            pid: 0,
            peers: Vec::new(),
            configuration_id: 1,
            title: "OmniPaxos".into(),
            frame_interval: Duration::from_millis(20),
            sample_interval: Duration::from_secs(1),
            history_len: 120,
            event_capacity: 200,
            log_capacity: 500,
            key_help: Vec::new(),
        }
    }
}

impl From<OmniPaxosConfig> for UIAppConfig {
    fn from(config: OmniPaxosConfig) -> Self {
        Self::from(&config)
    }
}

impl From<&OmniPaxosConfig> for UIAppConfig {
    fn from(config: &OmniPaxosConfig) -> Self {
        Self {
            pid: config.pid,
            peers: config.peers.clone(),
            configuration_id: config.configuration_id,
            ..Self::default()
        }
    }
}

impl UIAppConfig {
    /// Checks every setting; the error names the first field that is wrong.
    pub fn validate(&self) -> Result<(), UiError> {
        let invalid = |field, reason| Err(UiError::InvalidConfig { field, reason });
        if self.pid == 0 {
            return invalid("pid", "must be non-zero");
        }
        if self.peers.contains(&self.pid) {
            return invalid("peers", "must not contain pid");
        }
        if self.frame_interval.is_zero() {
            return invalid("frame_interval", "must be non-zero");
        }
        if self.sample_interval.is_zero() {
            return invalid("sample_interval", "must be non-zero");
        }
        if self.history_len < 2 {
            return invalid(
                "history_len",
                "must be at least 2 (a chart needs two points)",
            );
        }
        if self.event_capacity == 0 {
            return invalid("event_capacity", "must be at least 1");
        }
        if self.log_capacity == 0 {
            return invalid("log_capacity", "must be at least 1");
        }
        Ok(())
    }

    /// Every server of the configuration, ascending.
    pub(crate) fn all_pids(&self) -> Vec<NodeId> {
        let mut pids = self.peers.clone();
        pids.push(self.pid);
        pids.sort_unstable();
        pids.dedup();
        pids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_built_from_the_servers_config_names_the_server_and_its_peers() {
        let op = OmniPaxosConfig {
            configuration_id: 3,
            pid: 2,
            peers: vec![1, 3],
            ..Default::default()
        };
        let ui = UIAppConfig::from(op);
        assert_eq!(
            (ui.pid, ui.peers.clone(), ui.configuration_id),
            (2, vec![1, 3], 3)
        );
        assert!(ui.validate().is_ok());
        assert_eq!(ui.all_pids(), vec![1, 2, 3]);
    }

    #[test]
    fn validation_names_the_field_that_is_wrong() {
        let field = |c: UIAppConfig| match c.validate() {
            Err(UiError::InvalidConfig { field, .. }) => field,
            other => panic!("expected an invalid field, got {other:?}"),
        };
        let ok = UIAppConfig {
            pid: 1,
            ..Default::default()
        };
        assert_eq!(field(UIAppConfig::default()), "pid");
        assert_eq!(
            field(UIAppConfig {
                peers: vec![1],
                ..ok.clone()
            }),
            "peers"
        );
        assert_eq!(
            field(UIAppConfig {
                frame_interval: Duration::ZERO,
                ..ok.clone()
            }),
            "frame_interval"
        );
        assert_eq!(
            field(UIAppConfig {
                history_len: 1,
                ..ok.clone()
            }),
            "history_len"
        );
        assert_eq!(
            field(UIAppConfig {
                log_capacity: 0,
                ..ok
            }),
            "log_capacity"
        );
    }
}
