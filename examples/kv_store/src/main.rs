//! `kv_store`: run a replicated key-value store cluster in one process.
//!
//! ```text
//! cargo run --release -p kv_store -- demo --nodes 3 --writes 10000 --seed 1
//! ```

use clap::{Args, Parser, Subcommand};
use kv_store::{DemoOptions, run_demo};
use std::{process::ExitCode, time::Duration};

/// A replicated key-value store on omnipaxos.
#[derive(Parser, Debug)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Options of `demo`, which runs when no subcommand is given.
    #[command(flatten)]
    demo: DemoArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a cluster in this process: elect, write, read back from every
    /// node, crash the leader, fail over, write again, and check that the
    /// survivors agree and lost no acknowledged write.
    Demo(DemoArgs),
}

#[derive(Args, Debug)]
struct DemoArgs {
    /// Replicas in the cluster (at least 3).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Puts to make: half before the leader crashes, half after.
    #[arg(long, default_value_t = 10_000)]
    writes: usize,
    /// Seed that picks which node each write goes to, and the values.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Wall-clock length of one protocol tick, in milliseconds.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    tick_interval_ms: u64,
    /// Ticks per heartbeat round; a dead leader is replaced after one to two rounds.
    #[arg(long, default_value_t = 10)]
    election_tick_timeout: u64,
    /// Proposals the leader gathers per accept round.
    #[arg(long, default_value_t = 1)]
    batch_size: usize,
    /// Longest wait for any one step before the demo gives up, in seconds.
    #[arg(long, default_value_t = 20)]
    timeout_secs: u64,
}

impl From<DemoArgs> for DemoOptions {
    fn from(a: DemoArgs) -> Self {
        Self {
            nodes: a.nodes,
            writes: a.writes,
            seed: a.seed,
            tick_interval: Duration::from_millis(a.tick_interval_ms),
            election_tick_timeout: a.election_tick_timeout,
            batch_size: a.batch_size,
            timeout: Duration::from_secs(a.timeout_secs),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Demo(args)) => args,
        None => cli.demo,
    };
    let mut stdout = std::io::stdout().lock();
    match run_demo(&args.into(), &mut stdout) {
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("FAILED: {err}");
            ExitCode::FAILURE
        }
    }
}
