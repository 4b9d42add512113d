//! `kv_store top`: the dashboard of `omnipaxos_ui` drawn from a running
//! cluster, by polling every server's `GET /status`.
//!
//! ```text
//!  every interval:  GET /status ──▶ each server (concurrently, with a timeout)
//!                   the protocol states that came back ──▶ OmniPaxosUI::tick_cluster
//!                   a server that does not answer, or not like a kv_store,
//!                   is said once in the log pane (and again when it changes)
//! ```
//!
//! Nothing here touches the servers beyond reading their status, so `top`
//! can run anywhere that reaches their HTTP addresses, as often as wanted.

use crate::{
    api::StatusResponse,
    client::{ClientError, KvClient},
};
use omnipaxos::ui::OmniPaxosStates;
use omnipaxos_ui::{OmniPaxosUI, UIAppConfig};
use std::{collections::BTreeMap, time::Duration};

/// What one round of polling found.
#[derive(Debug, Default)]
pub struct Poll {
    /// The protocol states of the servers that answered.
    pub states: Vec<OmniPaxosStates>,
    /// The first server's status that answered, to name the dashboard.
    pub first: Option<StatusResponse>,
    /// Per server URL, a sentence on why it gave no state (absent if it did).
    pub problems: BTreeMap<String, String>,
}

/// Asks every server for its status at once, each within `timeout`.
pub async fn poll(clients: &[KvClient], timeout: Duration) -> Poll {
    let mut asks = tokio::task::JoinSet::new();
    for (i, c) in clients.iter().enumerate() {
        let c = c.clone();
        asks.spawn(async move { (i, tokio::time::timeout(timeout, c.status()).await) });
    }
    let mut answers: Vec<_> = asks.join_all().await;
    answers.sort_by_key(|(i, _)| *i);
    let mut poll = Poll::default();
    for (i, answer) in answers {
        let url = clients[i].server().to_owned();
        match answer {
            Ok(Ok(status)) => match status.protocol.clone() {
                Some(states) => {
                    poll.states.push(states);
                    poll.first.get_or_insert(status);
                }
                None => {
                    poll.problems.insert(
                        url,
                        format!(
                            "server {} answers but its node has stopped: {}",
                            status.pid,
                            status.stopped.as_deref().unwrap_or("no reason given")
                        ),
                    );
                }
            },
            Ok(Err(e)) => {
                let problem = describe(&url, &e);
                poll.problems.insert(url, problem);
            }
            Err(_) => {
                let problem = format!("{url} did not answer within {} ms", timeout.as_millis());
                poll.problems.insert(url, problem);
            }
        }
    }
    poll
}

/// One sentence on why `url` gave no status.
fn describe(url: &str, e: &ClientError) -> String {
    match e {
        ClientError::Api { .. } | ClientError::Decode { .. } => {
            format!("{url} does not answer like a kv_store server ({e})")
        }
        _ => format!("{url} is unreachable ({e})"),
    }
}

/// How `top` runs.
#[derive(Clone, Debug)]
pub struct TopOptions {
    /// The servers' HTTP addresses.
    pub servers: Vec<String>,
    /// How often to poll.
    pub interval: Duration,
    /// Stop after this long (for scripts); `None` runs until `q`.
    pub duration: Option<Duration>,
    /// The servers' bearer token, if they require one.
    pub token: Option<String>,
}

/// Draws the cluster until the user quits (or `duration` passes). Fails
/// if no server address parses, or the terminal cannot be taken.
pub async fn run_top(opts: TopOptions) -> Result<(), String> {
    let clients = opts
        .servers
        .iter()
        .map(|s| {
            KvClient::new(s).map(|c| {
                c.with_timeout(opts.interval.max(Duration::from_millis(200)))
                    .with_token(opts.token.as_deref())
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if clients.is_empty() {
        return Err("name at least one server: --server URL[,URL...]".to_owned());
    }
    let timeout = opts.interval.max(Duration::from_millis(200));
    // The dashboard is named after the first server that answers; until one
    // does, keep asking (and say why not).
    let mut first = poll(&clients, timeout).await;
    let named = loop {
        if let Some(status) = first.first.take() {
            break status;
        }
        for problem in first.problems.values() {
            eprintln!("{problem}");
        }
        tokio::time::sleep(opts.interval).await;
        first = poll(&clients, timeout).await;
    };
    let config = UIAppConfig {
        pid: named.pid,
        peers: named.peers.keys().copied().collect(),
        configuration_id: named.protocol.as_ref().map_or(1, |p| p.configuration_id),
        title: format!("kv_store top (cluster {})", named.cluster_id),
        ..UIAppConfig::default()
    };
    let mut ui = OmniPaxosUI::with(config);
    ui.start()
        .map_err(|e| format!("kv_store top needs a terminal: {e}"))?;
    let log = ui.logger();
    let started = tokio::time::Instant::now();
    let mut said: BTreeMap<String, String> = BTreeMap::new();
    let mut next = first;
    loop {
        for (url, problem) in &next.problems {
            if said.get(url) != Some(problem) {
                slog::warn!(log, "{}", problem);
                said.insert(url.clone(), problem.clone());
            }
        }
        said.retain(|url, _| {
            let back = !next.problems.contains_key(url);
            if back {
                slog::info!(log, "{url} answers again");
            }
            !back
        });
        ui.set_status(format!(
            "polling {} servers every {} ms; {} answer",
            clients.len(),
            opts.interval.as_millis(),
            next.states.len()
        ));
        ui.tick_cluster(std::mem::take(&mut next.states));
        if !ui.is_started() || opts.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        tokio::time::sleep(opts.interval).await;
        next = poll(&clients, timeout).await;
    }
    ui.stop().map_err(|e| e.to_string())
}
