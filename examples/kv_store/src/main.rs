//! `kv_store`: a replicated key-value store on omnipaxos.
//!
//! ```text
//! cargo run --release -p kv_store -- demo
//!
//! kv_store server --id 1 --listen 127.0.0.1:7001 \
//!     --peers 2=127.0.0.1:7002,3=127.0.0.1:7003 --data-dir /var/lib/kv/1   # HTTP on 127.0.0.1:8001
//! kv_store put greeting hello        # against http://127.0.0.1:8001 unless --server
//! kv_store get greeting
//! kv_store cas greeting hello bye
//! kv_store status
//!
//! kv_store server --id 4 --listen 127.0.0.1:7004 --data-dir /var/lib/kv/4 \
//!     --join http://127.0.0.1:8001                                          # waits, answering 503 joining
//! kv_store members replace 3 4=127.0.0.1:7004   # server 4 joins, server 3 retires and exits 0
//! cargo run --release -p kv_store -- demo --replace
//! ```

use clap::{Args, Parser, Subcommand};
use kv_store::{
    KvClient, Server, ServerOptions, StorageChoice,
    demo::{DemoOptions, run_demo, run_replace_demo},
};
use omnipaxos::util::NodeId;
use std::{
    collections::BTreeMap,
    io::{IsTerminal, Read},
    net::SocketAddr,
    path::PathBuf,
    process::ExitCode,
    time::Duration,
};
use tracing_subscriber::EnvFilter;

/// A replicated key-value store on omnipaxos: a server, a client, and a demo.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start a 3-server cluster as child processes, run a workload, kill the
    /// leader, restart it, check that nothing acknowledged was lost, and
    /// print throughput, latency and failover time.
    Demo(DemoArgs),
    /// Run one server of a cluster.
    Server(Box<ServerArgs>),
    /// Draw a running cluster in the terminal dashboard, polling every
    /// server's GET /status ('q' leaves).
    Top {
        /// The servers' HTTP addresses: URL[,URL...].
        #[arg(long, value_delimiter = ',', required = true)]
        server: Vec<String>,
        /// Milliseconds between two polls.
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(50..))]
        interval_ms: u64,
        /// Leave after this many seconds (for scripts).
        #[arg(long)]
        duration_secs: Option<u64>,
        /// File holding the bearer token the servers require (their --token-file).
        #[arg(long)]
        token_file: Option<PathBuf>,
    },
    /// Set KEY to VALUE.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
        #[command(flatten)]
        target: Target,
    },
    /// Print the value of KEY (linearizable unless --stale).
    Get {
        /// The key.
        key: String,
        /// Read this server's copy without asking the leader (may be stale).
        #[arg(long)]
        stale: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Remove KEY.
    Delete {
        /// The key.
        key: String,
        #[command(flatten)]
        target: Target,
    },
    /// Set KEY to NEW if its value is EXPECTED: `cas KEY EXPECTED NEW`, or
    /// `cas --expect-absent KEY NEW` to create KEY only if it has no value.
    Cas {
        /// The key.
        key: String,
        /// EXPECTED NEW, or NEW alone with --expect-absent.
        #[arg(num_args = 1..=2, required = true)]
        values: Vec<String>,
        /// Swap only if KEY has no value.
        #[arg(long)]
        expect_absent: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Print the configuration a server runs in and its members as JSON,
    /// or change it: `members add ID=ADDR`, `members remove ID`,
    /// `members replace OLD NEW=ADDR` (ADDR: the protocol address).
    Members {
        /// Nothing (list), or add ID=ADDR, remove ID, replace OLD ID=ADDR.
        change: Vec<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Apply a closed-loop HTTP load (like `wrk -c N`) to a kv_store server
    /// or to etcd's JSON gateway, and print requests/s and latency
    /// percentiles (`--json` for one JSON line).
    Load(LoadArgs),
    /// Print a server's view of the cluster as JSON.
    Status {
        #[command(flatten)]
        target: Target,
    },
}

/// Which server a client subcommand talks to.
#[derive(Args, Debug)]
struct Target {
    /// The server's HTTP address.
    #[arg(long, default_value = "http://127.0.0.1:8001")]
    server: String,
    /// How long to wait for the answer, in seconds.
    #[arg(long, default_value_t = 10)]
    timeout_secs: u64,
    /// File holding the bearer token the servers require (their --token-file).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// The CA certificates (PEM) to trust for an https:// --server.
    #[arg(long)]
    tls_ca: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct LoadArgs {
    /// The server's HTTP address.
    #[arg(long, default_value = "http://127.0.0.1:8001")]
    url: String,
    /// Which API the server speaks.
    #[arg(long, value_enum, default_value = "kv")]
    dialect: kv_store::load::Dialect,
    /// Writes or (linearizable) reads.
    #[arg(long, value_enum, default_value = "put")]
    op: kv_store::load::LoadOp,
    /// Concurrent connections, one request outstanding on each.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    connections: u64,
    /// Seconds of load.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    duration_secs: u64,
    /// Distinct keys, drawn at random.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    keys: u64,
    /// Bytes per value written.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(0..=1_048_576))]
    value_bytes: u64,
    /// Print the report as one JSON line.
    #[arg(long)]
    json: bool,
    /// File holding a bearer token to send with every request (a kv_store
    /// server's --token-file).
    #[arg(long)]
    token_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct DemoArgs {
    /// Concurrent clients in the workload.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Seconds of workload before the kill, between kill and restart, and after.
    #[arg(long, default_value_t = 3)]
    phase_secs: u64,
    /// Servers keep their log in memory instead of on disk.
    #[arg(long)]
    memory: bool,
    /// Show the cluster in the terminal dashboard (as `kv_store top` does)
    /// while the demo runs; its lines go to the dashboard's log pane.
    #[arg(long)]
    ui: bool,
    /// An extra flag for every server, e.g. `--server-arg=--batch-size=8`; repeatable.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
    /// Instead of killing the leader: while the clients write, start a 4th
    /// server with --join, replace a follower by it (POST /members), and
    /// print the write gap, how long until the new configuration took
    /// writes, and the acknowledged writes read back.
    #[arg(long, conflicts_with = "ui")]
    replace: bool,
}

#[derive(Args, Debug)]
struct ServerArgs {
    /// This server's id: unique in the cluster, not 0.
    #[arg(long)]
    id: NodeId,
    /// Address to listen on for the other servers.
    #[arg(long)]
    listen: SocketAddr,
    /// The other servers: ID=ADDR,ID=ADDR,... (this server's own id may be
    /// listed too, with its --listen address; it is skipped).
    #[arg(long, value_parser = parse_peers, default_value = "")]
    peers: Peers,
    /// Join a running cluster as a new server instead of starting with
    /// --peers: the HTTP addresses of some of its servers, URL[,URL...].
    /// The server learns the cluster over HTTP and waits (answering 503
    /// `joining`) until a change that names it is decided, e.g. `kv_store
    /// members replace OLD ID=ADDR` with this --id and --listen; it then
    /// pulls the log and serves. It refuses to start if no URL answers, the
    /// cluster id differs from --cluster-id, or --id is already a member.
    #[arg(long, value_delimiter = ',', conflicts_with = "peers")]
    join: Vec<String>,
    /// Milliseconds a server that a change of membership leaves out keeps
    /// serving the new servers' pulls of the log (counted from the change
    /// and from each pull) before it exits with status 0. Meanwhile it
    /// refuses reads and writes with 503 `removed`, naming the new members.
    #[arg(long, default_value_t = 10_000)]
    retire_grace_ms: u64,
    /// Directory for this server's log; claimed for this --id and
    /// --cluster-id on first start, refused to any other.
    #[arg(long, required_unless_present = "memory", conflicts_with = "memory")]
    data_dir: Option<PathBuf>,
    /// Keep the log in memory, for tests and demos: a restarted server has
    /// forgotten its log and its promises and catches up from its peers.
    #[arg(long)]
    memory: bool,
    /// Address of the HTTP/JSON client API [default: 127.0.0.1:(8000 + id)].
    #[arg(long)]
    http: Option<SocketAddr>,
    /// Cluster id: servers of other clusters are refused.
    #[arg(long, default_value_t = 1)]
    cluster_id: u64,
    /// Milliseconds per protocol tick. The leader sends a partly filled
    /// batch after one tick, so this bounds the batching delay of a write.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    tick_ms: u64,
    /// Ticks per leader-election round (a dead leader is replaced after one to two rounds).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    election_ticks: u64,
    /// Writes the leader batches into one round (and one disk sync).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    batch_size: u64,
    /// Milliseconds a client request may wait for the cluster before it fails with 503.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    request_timeout_ms: u64,
    /// Compact the log into a snapshot every this many applied entries, or
    /// every as many as the store holds keys if that is more (0: never).
    #[arg(long, default_value_t = 10_000)]
    snapshot_every: u64,
    /// File holding a pre-shared key that every server of the cluster knows.
    #[arg(long)]
    psk_file: Option<PathBuf>,
    /// Serve the client API over HTTPS with this certificate (PEM, then any
    /// intermediates; it must name the host clients use). Needs --http-tls-key.
    #[arg(long, requires = "http_tls_key")]
    http_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --http-tls-cert.
    #[arg(long, requires = "http_tls_cert")]
    http_tls_key: Option<PathBuf>,
    /// Mutual TLS between the servers: the cluster's CA certificates (PEM).
    /// Needs --tls-cert and --tls-key; every server of the cluster needs TLS.
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    tls_ca: Option<PathBuf>,
    /// This server's certificate (PEM, then any intermediates), naming
    /// `node-<id>.cluster-<cluster-id>.omnipaxos`.
    #[arg(long, requires_all = ["tls_ca", "tls_key"])]
    tls_cert: Option<PathBuf>,
    /// This server's private key (PEM: PKCS #8, PKCS #1 or SEC1).
    #[arg(long, requires_all = ["tls_ca", "tls_cert"])]
    tls_key: Option<PathBuf>,
    /// File holding a bearer token that every client request must carry
    /// (`Authorization: Bearer <token>`; the clients' --token-file):
    /// requests without it are answered 401 `unauthorized` and counted in
    /// `kv_store_client_requests_refused_total`. A joining server sends it to
    /// the servers it asks. Give every server of a cluster the same token.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Write this server's log (its own events and the protocol's) to this
    /// file, appending, instead of standard error.
    #[arg(long)]
    log_file: Option<PathBuf>,
    /// Exit when standard input closes (set by a parent process that
    /// starts servers, so they do not outlive it).
    #[arg(long, hide = true)]
    exit_on_stdin_eof: bool,
}

#[derive(Clone, Debug, Default)]
struct Peers(BTreeMap<NodeId, SocketAddr>);

fn parse_peers(s: &str) -> Result<Peers, String> {
    let mut peers = BTreeMap::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (id, addr) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?} is not ID=ADDR"))?;
        let id: NodeId = id
            .trim()
            .parse()
            .map_err(|e| format!("bad id in {item:?}: {e}"))?;
        let addr: SocketAddr = addr
            .trim()
            .parse()
            .map_err(|e| format!("bad address in {item:?}: {e} (expected IP:PORT)"))?;
        if peers.insert(id, addr).is_some() {
            return Err(format!("id {id} is listed twice"));
        }
    }
    Ok(Peers(peers))
}

/// The words after `members`: none (list) or one change.
fn parse_change(words: &[String]) -> Result<Option<kv_store::api::MembersChange>, String> {
    use kv_store::api::{MembersChange, NewMember};
    let new = |w: &str| -> Result<NewMember, String> {
        let peers = parse_peers(w)?.0;
        match peers.into_iter().collect::<Vec<_>>().as_slice() {
            [(id, addr)] => Ok(NewMember {
                id: *id,
                addr: *addr,
            }),
            _ => Err(format!("{w:?} is not one ID=ADDR")),
        }
    };
    let id = |w: &str| {
        w.parse::<NodeId>()
            .map_err(|e| format!("bad id {w:?}: {e}"))
    };
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    Ok(Some(match words.as_slice() {
        [] => return Ok(None),
        ["add", m] => MembersChange::Add(new(m)?),
        ["remove", old] => MembersChange::Remove(id(old)?),
        ["replace", old, m] => {
            let m = new(m)?;
            MembersChange::Replace {
                old: id(old)?,
                id: m.id,
                addr: m.addr,
            }
        }
        _ => {
            return Err(
                "members takes nothing, add ID=ADDR, remove ID, or replace OLD ID=ADDR".into(),
            );
        }
    }))
}

/// A server spends a tenth of its time in the system allocator under a
/// write load (many small, short-lived buffers per request, freed on other
/// threads); mimalloc's thread-local heaps take less.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (verbose, log_file) = match &cli.command {
        Command::Server(args) => (true, args.log_file.clone()),
        _ => (false, None),
    };
    if let Err(e) = init_logging(if verbose { "info" } else { "warn" }, log_file.as_deref()) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run(cli.command));
    // Do not wait for blocking tasks (e.g. a stdin reader) to notice.
    runtime.shutdown_timeout(Duration::from_millis(100));
    code
}

/// Logs to standard error, or appends to `file`; `RUST_LOG` overrides the
/// default filter.
fn init_logging(default: &str, file: Option<&std::path::Path>) -> Result<(), String> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match file {
        Some(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("cannot open the log file {}: {e}", path.display()))?;
            builder
                .with_writer(std::sync::Mutex::new(file))
                .with_ansi(false)
                .init();
        }
        None => builder
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .init(),
    }
    Ok(())
}

async fn run(command: Command) -> ExitCode {
    let result = match command {
        Command::Demo(args) => return demo(args).await,
        Command::Server(args) => return server(*args).await,
        Command::Top {
            server,
            interval_ms,
            duration_secs,
            token_file,
        } => {
            let token = match optional_token(token_file.as_deref()) {
                Ok(t) => t,
                Err(e) => return usage(&e),
            };
            let opts = kv_store::top::TopOptions {
                servers: server,
                interval: Duration::from_millis(interval_ms),
                duration: duration_secs.map(Duration::from_secs),
                token,
            };
            return match kv_store::top::run_top(opts).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Put { key, value, target } => match client(&target) {
            Ok(c) => c.put(&key, &value).await.map(|r| print_json(&r)),
            Err(e) => Err(e),
        },
        Command::Get { key, stale, target } => match client(&target) {
            Ok(c) => {
                let r = if stale {
                    c.get_stale(&key).await
                } else {
                    c.get(&key).await
                };
                match r {
                    Ok(Some(value)) => {
                        println!("{value}");
                        Ok(())
                    }
                    Ok(None) => {
                        eprintln!("key {key:?} has no value");
                        return ExitCode::FAILURE;
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        },
        Command::Delete { key, target } => match client(&target) {
            Ok(c) => c.delete(&key).await.map(|r| print_json(&r)),
            Err(e) => Err(e),
        },
        Command::Cas {
            key,
            values,
            expect_absent,
            target,
        } => {
            let (expected, new) = match (expect_absent, values.as_slice()) {
                (false, [expected, new]) => (Some(expected.as_str()), new),
                (true, [new]) => (None, new),
                (false, _) => {
                    return usage("cas takes KEY EXPECTED NEW (or --expect-absent KEY NEW)");
                }
                (true, _) => return usage("with --expect-absent, cas takes KEY NEW"),
            };
            match client(&target) {
                Ok(c) => c.cas(&key, expected, new).await.map(|r| print_json(&r)),
                Err(e) => Err(e),
            }
        }
        Command::Members { change, target } => {
            let change = match parse_change(&change) {
                Ok(c) => c,
                Err(e) => return usage(&e),
            };
            match (client(&target), change) {
                (Ok(c), None) => c.members().await.map(|r| print_json(&r)),
                (Ok(c), Some(ch)) => c.change_members(&ch).await.map(|r| print_json(&r)),
                (Err(e), _) => Err(e),
            }
        }
        Command::Load(args) => {
            let token = match optional_token(args.token_file.as_deref()) {
                Ok(t) => t,
                Err(e) => return usage(&e),
            };
            let spec = kv_store::load::LoadSpec {
                token,
                url: args.url,
                dialect: args.dialect,
                op: args.op,
                connections: args.connections as usize,
                duration: Duration::from_secs(args.duration_secs),
                keys: args.keys,
                value_bytes: args.value_bytes as usize,
                timeout: Duration::from_secs(10),
            };
            return match kv_store::load::run_load(&spec).await {
                Ok(report) if args.json => {
                    println!(
                        "{}",
                        serde_json::to_string(&report).expect("a report is plain data")
                    );
                    ExitCode::SUCCESS
                }
                Ok(report) => {
                    println!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Status { target } => match client(&target) {
            Ok(c) => c.status().await.map(|r| print_json(&r)),
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}

/// The token in `path`, if one is given (see `read_token_file`).
fn optional_token(path: Option<&std::path::Path>) -> Result<Option<String>, String> {
    path.map(kv_store::client::read_token_file).transpose()
}

/// The client a subcommand's options describe. An unreadable or invalid
/// --token-file is a usage error: the process exits with status 2.
fn client(target: &Target) -> Result<KvClient, kv_store::ClientError> {
    let files = optional_token(target.token_file.as_deref()).and_then(|token| {
        let ca = target
            .tls_ca
            .as_deref()
            .map(|p| {
                std::fs::read(p)
                    .map_err(|e| format!("cannot read the CA file {}: {e}", p.display()))
            })
            .transpose()?;
        Ok((token, ca))
    });
    let (token, ca) = files.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(2);
    });
    Ok(KvClient::with_ca(&target.server, ca.as_deref())?
        .with_timeout(Duration::from_secs(target.timeout_secs))
        .with_token(token.as_deref()))
}

fn print_json<T: serde::Serialize>(value: &T) {
    use std::io::Write as _;
    match serde_json::to_string_pretty(value) {
        // A closed pipe (`| head`) is the reader's choice, not an error.
        Ok(s) => {
            let _ = writeln!(std::io::stdout().lock(), "{s}");
        }
        Err(e) => eprintln!("error: cannot print the answer: {e}"),
    }
}

async fn demo(args: DemoArgs) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("error: cannot find this executable to start servers with: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut opts = DemoOptions::new(exe);
    opts.clients = args.clients.max(1);
    opts.phase = Duration::from_secs(args.phase_secs.max(1));
    opts.memory = args.memory;
    opts.server_args = args.server_args;
    opts.ui = args.ui;
    // Dropping the demo's future on Ctrl-C drops its cluster, which kills
    // the servers and removes their directories.
    let replace = args.replace;
    let run = async {
        if replace {
            run_replace_demo(&opts).await.map(|r| r.summary())
        } else {
            run_demo(&opts).await.map(|r| r.summary())
        }
    };
    tokio::select! {
        r = run => match r {
            Ok(summary) => {
                println!("{summary}");
                println!("OK: every check passed");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("FAILED: {e}");
                ExitCode::FAILURE
            }
        },
        () = interrupted() => {
            eprintln!("interrupted: the servers are stopped and their directories removed");
            ExitCode::from(130)
        }
    }
}

async fn server(args: ServerArgs) -> ExitCode {
    match run_server(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_server(args: ServerArgs) -> Result<(), kv_store::ServerError> {
    let invalid = kv_store::ServerError::InvalidOption;
    let mut peers = args.peers.0;
    if let Some(own) = peers.remove(&args.id)
        && own != args.listen
    {
        return Err(invalid(format!(
            "--peers gives this server ({}) the address {own}, but --listen is {}",
            args.id, args.listen
        )));
    }
    let http = match args.http {
        Some(http) => http,
        None => u16::try_from(8000 + args.id)
            .map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
            .map_err(|_| {
                invalid(format!(
                    "--id {} leaves no default HTTP port; give --http",
                    args.id
                ))
            })?,
    };
    let storage = match args.data_dir {
        Some(dir) => StorageChoice::Persistent(dir),
        None => StorageChoice::Memory,
    };
    let mut opts = ServerOptions::new(args.id, args.listen, peers, http, storage);
    opts.cluster_id = args.cluster_id;
    opts.tick_interval = Duration::from_millis(args.tick_ms);
    opts.election_tick_timeout = args.election_ticks;
    opts.batch_size = usize::try_from(args.batch_size).unwrap_or(usize::MAX);
    opts.request_timeout = Duration::from_millis(args.request_timeout_ms);
    opts.snapshot_every = args.snapshot_every;
    opts.join = args.join;
    opts.retire_grace = Duration::from_millis(args.retire_grace_ms);
    if let Some(path) = args.psk_file {
        let key = std::fs::read(&path).map_err(|e| {
            invalid(format!(
                "cannot read the pre-shared key file {}: {e}",
                path.display()
            ))
        })?;
        opts.psk = Some(key);
    }
    if let (Some(ca), Some(cert), Some(key)) = (&args.tls_ca, &args.tls_cert, &args.tls_key) {
        opts.tls = Some(
            omnipaxos_runtime::net::TlsConfig::from_pem_files(ca, cert, key)
                .map_err(|e| invalid(e.to_string()))?,
        );
    }
    if let (Some(cert), Some(key)) = (&args.http_tls_cert, &args.http_tls_key) {
        opts.https =
            Some(kv_store::server::HttpsConfig::from_pem_files(cert, key).map_err(invalid)?);
    }
    if let Some(path) = args.token_file {
        opts.client_token = Some(kv_store::client::read_token_file(&path).map_err(invalid)?);
    }
    let mut stdin_closed = if args.exit_on_stdin_eof {
        Some(watch_stdin())
    } else {
        None
    };
    // A joining server may wait long in `start` for a change naming it: a
    // signal (or the parent going away) stops that wait too.
    let server = tokio::select! {
        r = Server::start(opts) => r?,
        () = interrupted() => {
            tracing::info!("signal received before the server started");
            return Ok(());
        }
        () = async {
            match &mut stdin_closed {
                Some(rx) => { let _ = rx.await; }
                None => std::future::pending().await,
            }
        } => {
            tracing::info!("standard input closed before the server started");
            return Ok(());
        }
    };
    server
        .run_until(async move {
            tokio::select! {
                () = interrupted() => tracing::info!("signal received"),
                () = async {
                    match stdin_closed {
                        Some(rx) => { let _ = rx.await; }
                        None => std::future::pending().await,
                    }
                } => tracing::info!("standard input closed; the parent is gone"),
            }
        })
        .await
}

/// Resolves on Ctrl-C or SIGTERM.
async fn interrupted() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

/// A receiver that resolves when standard input reaches end-of-file. A plain
/// thread reads it, since a blocking read cannot be cancelled.
fn watch_stdin() -> tokio::sync::oneshot::Receiver<()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let mut stdin = std::io::stdin().lock();
        while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
        let _ = tx.send(());
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_and_bad_ones_are_explained() {
        let p = parse_peers("2=127.0.0.1:7002, 3=127.0.0.1:7003").unwrap();
        assert_eq!(p.0.len(), 2);
        assert!(parse_peers("").unwrap().0.is_empty());
        assert!(
            parse_peers("2:127.0.0.1:7002")
                .unwrap_err()
                .contains("ID=ADDR")
        );
        assert!(parse_peers("2=localhost").unwrap_err().contains("IP:PORT"));
        assert!(
            parse_peers("2=127.0.0.1:1,2=127.0.0.1:2")
                .unwrap_err()
                .contains("twice")
        );
    }

    #[test]
    fn the_cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
