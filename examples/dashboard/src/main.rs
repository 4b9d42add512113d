//! `dashboard`: a local cluster with the terminal dashboard attached to one
//! node. `cargo run -p dashboard -- --nodes 5 --attach 1`; the keys are on
//! screen, `q` quits.

use clap::Parser;
use dashboard::{
    cluster::{ClusterError, LocalCluster, Put},
    keys::{Action, Controls},
};
use omnipaxos::NodeId;
use omnipaxos_ui::{OmniPaxosUI, UIAppConfig, UiError};
use std::{
    process::ExitCode,
    time::{Duration, Instant},
};

/// A local omnipaxos cluster with the dashboard attached to one node.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Servers in the cluster, with ids 1..=N (at most 9, so that a digit
    /// key names each).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=9))]
    nodes: u64,
    /// The server the dashboard is attached to.
    #[arg(long, default_value_t = 1)]
    attach: NodeId,
    /// Appends per second, handed to the leader (0 for none).
    #[arg(long, default_value_t = 20.0, value_parser = parse_rate)]
    rate: f64,
    /// Leave by itself after this many seconds (default: run until `q`).
    #[arg(long)]
    duration: Option<u64>,
    /// Milliseconds between two ticks of every node. A heartbeat round is 10
    /// ticks, so the default gives half-second rounds: slow enough to watch
    /// an election happen.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    tick_ms: u64,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let rate: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if rate.is_finite() && (0.0..=100_000.0).contains(&rate) {
        Ok(rate)
    } else {
        Err("must be between 0 and 100000".into())
    }
}

/// How often the dashboard gets every node's states.
const UI_INTERVAL: Duration = Duration::from_millis(100);
/// How often the appender hands entries over; each time it hands over
/// what the rate has accrued since.
const APPEND_INTERVAL: Duration = Duration::from_millis(10);

fn main() -> ExitCode {
    let args = Args::parse();
    if args.attach == 0 || args.attach > args.nodes {
        eprintln!(
            "--attach {} is not a node of 1..={}",
            args.attach, args.nodes
        );
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dashboard: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), UiError> {
    let mut cluster = LocalCluster::start(args.nodes, Duration::from_millis(args.tick_ms));
    let Some(node_config) = cluster.config(args.attach) else {
        unreachable!("--attach was checked against --nodes");
    };
    let mut ui_config = UIAppConfig::from(node_config.omnipaxos_config());
    ui_config.title = "omnipaxos dashboard".into();
    ui_config.key_help = Controls::help();
    let mut ui = OmniPaxosUI::with(ui_config);
    if let Err(e) = ui.start() {
        cluster.shutdown().await;
        return Err(e);
    }
    let log = ui.logger();
    slog::info!(log, "cluster started"; "nodes" => args.nodes, "attached" => args.attach, "rate" => args.rate);
    let mut controls = Controls::new(cluster.ids());
    let deadline = args
        .duration
        .map(|s| Instant::now() + Duration::from_secs(s));

    let mut ui_tick = tokio::time::interval(UI_INTERVAL);
    let mut append_tick = tokio::time::interval(APPEND_INTERVAL);
    let mut last_append = Instant::now();
    let (mut owed, mut next_value) = (0.0_f64, 0_u64);
    while ui.is_started() && deadline.is_none_or(|d| Instant::now() < d) {
        tokio::select! {
            _ = append_tick.tick() => {
                // Appends accrue at the rate and are handed over in whole
                // numbers, so any rate works with a fixed interval.
                let now = Instant::now();
                owed += args.rate * now.duration_since(last_append).as_secs_f64();
                last_append = now;
                while owed >= 1.0 {
                    owed -= 1.0;
                    if cluster.append(Put(next_value)).await {
                        next_value += 1;
                    }
                }
            }
            _ = ui_tick.tick() => {
                while let Some(key) = ui.take_key() {
                    match controls.key(key) {
                        Ok(Some(action)) => match perform(&mut cluster, action).await {
                            Ok(done) => slog::info!(log, "{}", done),
                            Err(e) => slog::warn!(log, "{}", e),
                        },
                        Ok(None) => {}
                        Err(e) => slog::warn!(log, "{}", e),
                    }
                }
                ui.set_status(format!(
                    "{}   down: {:?}   cut links: {}   messages dropped: {}",
                    controls.selection(),
                    cluster.down(),
                    cluster.cut_links(),
                    cluster.dropped_messages()
                ));
                ui.tick_cluster(cluster.states().await);
            }
        }
    }
    let result = ui.stop();
    cluster.shutdown().await;
    result
}

/// Carries out one operator action; the text says what was done.
async fn perform(cluster: &mut LocalCluster, action: Action) -> Result<String, ClusterError> {
    Ok(match action {
        Action::Crash(pid) => {
            cluster.crash(pid).await?;
            format!("crashed node {pid}")
        }
        Action::Restart(pid) => {
            cluster.restart(pid)?;
            format!("restarted node {pid} on its storage")
        }
        Action::CrashLeader => {
            let pid = cluster.crash_leader().await?;
            format!("crashed the leader, node {pid}")
        }
        Action::RestartAll => {
            let pids = cluster.restart_all();
            format!("restarted {pids:?}")
        }
        Action::Cut { from, to } => {
            cluster.cut(from, to)?;
            format!("cut {from} -> {to}")
        }
        Action::CutBoth(a, b) => {
            cluster.cut_both(a, b)?;
            format!("cut {a} <-> {b}")
        }
        Action::Heal { from, to } => {
            cluster.heal(from, to)?;
            format!("healed {from} -> {to}")
        }
        Action::HealBoth(a, b) => {
            cluster.heal_both(a, b)?;
            format!("healed {a} <-> {b}")
        }
        Action::HealAll => format!("healed all {} cut links", cluster.heal_all()),
        Action::Chained => {
            let (leader, far) = cluster.chained()?;
            format!("chained partition: cut leader {leader} <-> {far}")
        }
        Action::QuorumLoss => {
            let (leader, hub) = cluster.quorum_loss()?;
            format!("quorum-loss partition: only node {hub} links to others (leader was {leader})")
        }
    })
}
