//! The command line, and the [`Settings`] it is validated into.
//!
//! Parsing only checks shapes (`NAME=HOST:PORT`, durations, lists);
//! [`Settings::from_args`] checks what needs the whole picture (names
//! unique, something to measure, where the files go).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::workloads::WorkloadKind;

/// torpor-bench: latency of MariaDB reached directly, through HAProxy and
/// through Torpor, side by side.
#[derive(Debug, Parser)]
#[command(name = "torpor-bench", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Measure targets side by side and write a report.
    Run(Box<RunArgs>),
    /// List the workloads and what each measures.
    ListWorkloads,
    /// The `floor` target's byte forwarder (run by `run --spawn-floor`).
    #[command(hide = true)]
    FloorProxy(crate::floor::FloorArgs),
}

/// Arguments of `torpor-bench run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// A target to measure, `NAME=HOST:PORT`; repeat for more. The first
    /// one is the baseline (a spawned MariaDB, `direct`, comes first).
    /// A Torpor target may name its admin API:
    /// `NAME=HOST:PORT,admin=HOST:PORT`.
    #[arg(
        long = "target",
        value_name = "NAME=HOST:PORT[,admin=HOST:PORT]",
        value_parser = parse_target
    )]
    pub targets: Vec<TargetArg>,
    /// The admin API of a Torpor target, `NAME=HOST:PORT` (the same as
    /// `,admin=HOST:PORT` in its `--target`): the serverless workloads
    /// suspend and park its service through it.
    #[arg(long = "admin", value_name = "NAME=HOST:PORT", value_parser = parse_admin)]
    pub admins: Vec<AdminArg>,
    /// Bearer token for the admin APIs of the targets given on the
    /// command line (spawned Torpor runs without one).
    #[arg(long, env = "TORPOR_BENCH_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// The process id behind a target, `NAME=PID`, for CPU and memory
    /// figures; spawned targets get theirs automatically.
    #[arg(long = "pid", value_name = "NAME=PID", value_parser = parse_pid)]
    pub pids: Vec<PidArg>,
    /// User to log in as (and to create in a spawned MariaDB).
    #[arg(long, env = "TORPOR_BENCH_USER", default_value = "bench")]
    pub user: String,
    /// Password of that user.
    #[arg(
        long,
        env = "TORPOR_BENCH_PASSWORD",
        default_value = "bench",
        hide_env_values = true
    )]
    pub password: String,
    /// Database holding the suite's tables.
    #[arg(long, default_value = "test")]
    pub database: String,
    /// Rounds; each round runs every workload once on every target, in
    /// target order.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: u32,
    /// Measured time per workload, target and round (per connection count
    /// for `throughput`), e.g. `3s`, `500ms`.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Unrecorded time before each measurement (whole seconds for sysbench).
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Workloads to run, comma-separated: names from `list-workloads`, or
    /// the groups `native`, `sysbench`, `serverless`, `all`.
    #[arg(long = "workload", value_delimiter = ',', default_value = "all")]
    pub workloads: Vec<String>,
    /// Connection counts for the `throughput` workload.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
    pub connections: Vec<u32>,
    /// Connections for the `cpu-per-query` workload.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub cpu_connections: u32,
    /// Connections held open by the `idle-connections` workload.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub idle_connections: u32,
    /// Rows per sysbench table.
    #[arg(long, default_value_t = 10_000)]
    pub sysbench_table_size: u32,
    /// Number of sysbench tables.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub sysbench_tables: u32,
    /// Suspend (or park) and wake cycles of each `wake-after-*` workload,
    /// per target and round.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub wake_cycles: u32,
    /// Queries of the `random-suspend` workload, per target and round.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub random_suspend_cycles: u32,
    /// Longest random pause of `random-suspend`, before each query and
    /// before each suspend call (uniform from zero to this).
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    pub random_suspend_pause: Duration,
    /// sysbench's prepared statements: `auto` (sysbench's default),
    /// `disable` (`--db-ps-mode=disable`), or `both` as separate workloads.
    #[arg(long, value_enum, default_value_t = PsModeArg::Auto)]
    pub sysbench_ps_mode: PsModeArg,
    /// Start a private MariaDB and measure it as `direct` (the baseline).
    #[arg(long)]
    pub spawn_mariadb: bool,
    /// Start HAProxy (TCP mode) in front of the baseline, as `haproxy`.
    #[arg(long)]
    pub spawn_haproxy: bool,
    /// Build and start Torpor in front of the baseline, as `torpor`.
    #[arg(long)]
    pub spawn_torpor: bool,
    /// With --spawn-mariadb: also start the spawned HAProxy and Torpor in
    /// front of that MariaDB's Unix socket, as `haproxy-socket` and
    /// `torpor-socket` (no TCP stack on the proxy's backend hop).
    #[arg(long)]
    pub spawn_socket: bool,
    /// Start a byte forwarder in front of the baseline, as `floor`: the
    /// least any user-space proxy can do per query (nothing parsed).
    #[arg(long)]
    pub spawn_floor: bool,
    /// Build and start a Torpor with a MariaDB of its own and its admin
    /// API, as `torpor-serverless`; only the serverless workloads run on it.
    #[arg(long)]
    pub spawn_torpor_serverless: bool,
    /// Start one more Torpor in front of the baseline per N, as
    /// `torpor-poolN`, with one worker and a pool of N backend connections
    /// (`--workers 1 --max-backend-connections N`), so that sessions share
    /// connections: `multiplex` on `--spawn-torpor-pool 8` puts 64 clients
    /// on 8 connections, `state-diff` needs `--spawn-torpor-pool 1`.
    #[arg(long, value_name = "N,...", value_delimiter = ',',
          value_parser = clap::value_parser!(u32).range(1..))]
    pub spawn_torpor_pool: Vec<u32>,
    /// Clients of the `multiplex` workload.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub multiplex_clients: u32,
    /// Longest think time of a `multiplex` client between two queries
    /// (uniform from zero to this); `0s` runs closed-loop.
    #[arg(long, default_value = "20ms", value_parser = parse_duration)]
    pub multiplex_think: Duration,
    /// A `torpor` binary to spawn instead of building the workspace's.
    #[arg(long, value_name = "PATH")]
    pub torpor_bin: Option<PathBuf>,
    /// The Torpor workspace to build `torpor` from.
    #[arg(long, value_name = "DIR", default_value = default_workspace())]
    pub workspace: PathBuf,
    /// How long a spawned process may take to accept connections.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub spawn_timeout: Duration,
    /// Write report.md, report.json and the charts into this folder.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Write the JSON report here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the Markdown report here.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Write the SVG charts into this folder.
    #[arg(long, value_name = "DIR")]
    pub svg_dir: Option<PathBuf>,
    /// How to show progress on stderr.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
}

/// `NAME=HOST:PORT[,admin=HOST:PORT]`.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetArg {
    /// The target's name in every output.
    pub name: String,
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Its admin API, `host:port`, when it is a Torpor that has one.
    pub admin: Option<String>,
}

/// `--admin NAME=HOST:PORT`.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminArg {
    /// A target's name.
    pub name: String,
    /// Its admin API, `host:port`.
    pub address: String,
}

impl TargetArg {
    /// `host:port`, IPv6 hosts in brackets.
    pub fn address(&self) -> String {
        crate::targets::host_port(&self.host, self.port)
    }
}

/// `NAME=PID`.
#[derive(Debug, Clone, PartialEq)]
pub struct PidArg {
    /// A target's name.
    pub name: String,
    /// Its process id.
    pub pid: u32,
}

/// sysbench's prepared-statement modes to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PsModeArg {
    /// sysbench's default (prepared statements when the driver has them).
    Auto,
    /// `--db-ps-mode=disable`: plain text queries.
    Disable,
    /// Both, as separate workloads.
    Both,
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    /// A live line when stderr is a terminal, plain lines otherwise.
    Auto,
    /// A live line, rewritten in place.
    Live,
    /// One line per step.
    Lines,
    /// Nothing but errors.
    Off,
}

/// Where the report files go.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outputs {
    /// JSON report.
    pub json: Option<PathBuf>,
    /// Markdown report.
    pub markdown: Option<PathBuf>,
    /// Folder for the SVG charts.
    pub svg_dir: Option<PathBuf>,
}

/// What to spawn.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpawnPlan {
    /// A private MariaDB, `direct`.
    pub mariadb: bool,
    /// HAProxy in front of the baseline, `haproxy`.
    pub haproxy: bool,
    /// Torpor in front of the baseline, `torpor`.
    pub torpor: bool,
    /// The spawned HAProxy and Torpor also in front of the spawned
    /// MariaDB's Unix socket, `haproxy-socket` and `torpor-socket`.
    pub socket: bool,
    /// The byte forwarder in front of the baseline, `floor`.
    pub floor: bool,
    /// Torpor with a MariaDB of its own and its admin API,
    /// `torpor-serverless`.
    pub torpor_serverless: bool,
    /// Pool bounds of the Torpors with one worker and a small pool,
    /// `torpor-poolN` each.
    pub torpor_pools: Vec<u32>,
    /// Where the `torpor` binary comes from, when either Torpor is spawned.
    pub torpor_source: Option<TorporSource>,
    /// How long each may take to accept connections.
    pub timeout: Duration,
}

/// How the serverless workloads run.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerlessSettings {
    /// Cycles of each `wake-after-*` workload.
    pub wake_cycles: u32,
    /// Queries of `random-suspend`.
    pub random_cycles: u32,
    /// Longest random pause of `random-suspend`.
    pub random_pause: Duration,
    /// Bearer token for the admin APIs of given targets.
    pub admin_token: Option<String>,
}

impl Default for ServerlessSettings {
    fn default() -> Self {
        ServerlessSettings {
            wake_cycles: 20,
            random_cycles: 100,
            random_pause: Duration::from_millis(200),
            admin_token: None,
        }
    }
}

/// How the `multiplex` workload runs.
#[derive(Debug, Clone, PartialEq)]
pub struct MultiplexSettings {
    /// Clients at once.
    pub clients: u32,
    /// Longest think time between two queries of a client.
    pub think: Duration,
}

impl Default for MultiplexSettings {
    fn default() -> Self {
        MultiplexSettings {
            clients: 64,
            think: Duration::from_millis(20),
        }
    }
}

/// The name of the spawned Torpor whose pool holds `bound` connections.
pub fn pool_target_name(bound: u32) -> String {
    format!("torpor-pool{bound}")
}

/// Where the `torpor` binary comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum TorporSource {
    /// `cargo build --release -p torpor` in this workspace.
    Build(PathBuf),
    /// This binary, as it is.
    Binary(PathBuf),
}

/// Login used for every target.
#[derive(Debug, Clone, PartialEq)]
pub struct Credentials {
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
    /// Default database.
    pub database: String,
}

/// The validated run settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Every target's name in measuring order, the baseline first:
    /// `targets::assemble` builds the targets in this order and checks
    /// that it did.
    pub names: Vec<String>,
    /// Targets given on the command line, in order.
    pub targets: Vec<TargetArg>,
    /// Process ids given on the command line.
    pub pids: Vec<PidArg>,
    /// Login.
    pub credentials: Credentials,
    /// Rounds.
    pub rounds: u32,
    /// Measured time per workload, target and round.
    pub duration: Duration,
    /// Unrecorded warm-up before each measurement.
    pub warmup: Duration,
    /// Workloads, in the order they run within a round.
    pub workloads: Vec<WorkloadKind>,
    /// Connection counts for `throughput`.
    pub connections: Vec<u32>,
    /// Connections for `cpu-per-query`.
    pub cpu_connections: u32,
    /// Connections for `idle-connections`.
    pub idle_connections: u32,
    /// Rows per sysbench table.
    pub sysbench_table_size: u32,
    /// Number of sysbench tables.
    pub sysbench_tables: u32,
    /// What to spawn.
    pub spawn: SpawnPlan,
    /// The serverless workloads' cycles and admin token.
    pub serverless: ServerlessSettings,
    /// Clients and think time of `multiplex`.
    pub multiplex: MultiplexSettings,
    /// Report files.
    pub outputs: Outputs,
    /// Progress display.
    pub progress: ProgressMode,
}

impl Settings {
    /// Checks the arguments as a whole.
    pub fn from_args(args: RunArgs) -> anyhow::Result<Settings> {
        let mut names: Vec<&str> = Vec::new();
        if args.spawn_mariadb {
            names.push("direct");
        }
        for target in &args.targets {
            names.push(&target.name);
        }
        if args.spawn_haproxy {
            names.push("haproxy");
        }
        if args.spawn_torpor {
            names.push("torpor");
        }
        if args.spawn_socket && args.spawn_haproxy {
            names.push("haproxy-socket");
        }
        if args.spawn_socket && args.spawn_torpor {
            names.push("torpor-socket");
        }
        if args.spawn_floor {
            names.push("floor");
        }
        if args.spawn_torpor_serverless {
            names.push("torpor-serverless");
        }
        let pool_names: Vec<String> = args
            .spawn_torpor_pool
            .iter()
            .map(|&bound| pool_target_name(bound))
            .collect();
        names.extend(pool_names.iter().map(String::as_str));
        if names.is_empty() {
            bail!("nothing to measure: give --target NAME=HOST:PORT, --spawn-mariadb or --spawn-torpor-serverless");
        }
        for (i, name) in names.iter().enumerate() {
            if names[..i].contains(name) {
                bail!("target name {name:?} is used twice (spawned targets are named direct, haproxy, torpor, haproxy-socket, torpor-socket, floor, torpor-serverless and torpor-poolN)");
            }
        }
        for pid in &args.pids {
            if !args.targets.iter().any(|t| t.name == pid.name) {
                if names.contains(&pid.name.as_str()) {
                    bail!(
                        "--pid {}={}: {} is spawned, its pid is known",
                        pid.name,
                        pid.pid,
                        pid.name
                    );
                }
                bail!(
                    "--pid {}={}: no target is named {:?}",
                    pid.name,
                    pid.pid,
                    pid.name
                );
            }
        }
        let targets = with_admin_addresses(args.targets.clone(), &args.admins, &names)?;
        let in_front = args.spawn_haproxy
            || args.spawn_torpor
            || args.spawn_floor
            || !args.spawn_torpor_pool.is_empty();
        if in_front && !args.spawn_mariadb && targets.is_empty() {
            bail!("--spawn-haproxy, --spawn-torpor, --spawn-floor and --spawn-torpor-pool need a database behind them: --spawn-mariadb or a first --target");
        }
        if args.spawn_socket && !args.spawn_mariadb {
            // Only a MariaDB the suite started has a socket it knows of.
            bail!("--spawn-socket needs --spawn-mariadb: the proxies go in front of the spawned MariaDB's Unix socket");
        }
        if args.spawn_socket && !args.spawn_haproxy && !args.spawn_torpor {
            bail!("--spawn-socket adds socket twins of the spawned proxies: give --spawn-haproxy, --spawn-torpor or both");
        }
        if args.duration.is_zero() {
            bail!("--duration must be more than zero");
        }
        if args.connections.is_empty() || args.connections.contains(&0) {
            bail!("--connections needs one or more counts above zero");
        }
        let workloads = WorkloadKind::select(&args.workloads, args.sysbench_ps_mode)?;
        let outputs = Outputs {
            json: args
                .json
                .or_else(|| args.out.as_ref().map(|dir| dir.join("report.json"))),
            markdown: args
                .markdown
                .or_else(|| args.out.as_ref().map(|dir| dir.join("report.md"))),
            svg_dir: args.svg_dir.or(args.out),
        };
        let any_torpor =
            args.spawn_torpor || args.spawn_torpor_serverless || !args.spawn_torpor_pool.is_empty();
        let torpor_source = match (any_torpor, args.torpor_bin) {
            (false, Some(_)) => {
                bail!("--torpor-bin only matters with --spawn-torpor, --spawn-torpor-pool or --spawn-torpor-serverless")
            }
            (false, None) => None,
            (true, Some(path)) => Some(TorporSource::Binary(path)),
            (true, None) => Some(TorporSource::Build(args.workspace)),
        };
        let names = names.iter().map(|name| name.to_string()).collect();
        Ok(Settings {
            names,
            targets,
            pids: args.pids,
            credentials: Credentials {
                user: args.user,
                password: args.password,
                database: args.database,
            },
            rounds: args.rounds,
            duration: args.duration,
            warmup: args.warmup,
            workloads,
            connections: args.connections,
            cpu_connections: args.cpu_connections,
            idle_connections: args.idle_connections,
            sysbench_table_size: args.sysbench_table_size,
            sysbench_tables: args.sysbench_tables,
            spawn: SpawnPlan {
                mariadb: args.spawn_mariadb,
                haproxy: args.spawn_haproxy,
                torpor: args.spawn_torpor,
                socket: args.spawn_socket,
                floor: args.spawn_floor,
                torpor_serverless: args.spawn_torpor_serverless,
                torpor_pools: args.spawn_torpor_pool,
                torpor_source,
                timeout: args.spawn_timeout,
            },
            serverless: ServerlessSettings {
                wake_cycles: args.wake_cycles,
                random_cycles: args.random_suspend_cycles,
                random_pause: args.random_suspend_pause,
                admin_token: args.admin_token,
            },
            multiplex: MultiplexSettings {
                clients: args.multiplex_clients,
                think: args.multiplex_think,
            },
            outputs,
            progress: args.progress,
        })
    }
}

/// The workspace this binary was built from: `bench/..`.
fn default_workspace() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/..")
}

/// Adds each `--admin NAME=HOST:PORT` to the given target it names.
fn with_admin_addresses(
    mut targets: Vec<TargetArg>,
    admins: &[AdminArg],
    names: &[&str],
) -> anyhow::Result<Vec<TargetArg>> {
    for admin in admins {
        let Some(target) = targets.iter_mut().find(|t| t.name == admin.name) else {
            if names.contains(&admin.name.as_str()) {
                bail!(
                    "--admin {}={}: {} is spawned; torpor-serverless gets its admin address \
                     by itself, and the others have none",
                    admin.name,
                    admin.address,
                    admin.name
                );
            }
            bail!(
                "--admin {}={}: no target is named {:?}",
                admin.name,
                admin.address,
                admin.name
            );
        };
        match &target.admin {
            Some(given) if *given != admin.address => bail!(
                "target {} has two admin addresses: {given} and {}",
                target.name,
                admin.address
            ),
            _ => target.admin = Some(admin.address.clone()),
        }
    }
    Ok(targets)
}

fn parse_target(text: &str) -> anyhow::Result<TargetArg> {
    let (name, rest) = text
        .split_once('=')
        .context("expected NAME=HOST:PORT, e.g. direct=127.0.0.1:3306")?;
    check_name(name)?;
    let mut parts = rest.split(',');
    let address = parts.next().unwrap_or_default();
    let (host, port) =
        parse_address(address).context("expected HOST:PORT after the name, e.g. 127.0.0.1:3306")?;
    let mut admin = None;
    for option in parts {
        match option.split_once('=') {
            Some(("admin", address)) => {
                let (host, port) = parse_address(address)
                    .context("expected admin=HOST:PORT, e.g. admin=127.0.0.1:6034")?;
                admin = Some(crate::targets::host_port(&host, port));
            }
            _ => bail!("unknown target option {option:?} (known: admin=HOST:PORT)"),
        }
    }
    Ok(TargetArg {
        name: name.to_string(),
        host,
        port,
        admin,
    })
}

fn parse_admin(text: &str) -> anyhow::Result<AdminArg> {
    let (name, address) = text
        .split_once('=')
        .context("expected NAME=HOST:PORT, e.g. torpor=127.0.0.1:6034")?;
    check_name(name)?;
    let (host, port) = parse_address(address)?;
    Ok(AdminArg {
        name: name.to_string(),
        address: crate::targets::host_port(&host, port),
    })
}

/// `HOST:PORT` (IPv6 hosts in brackets) into host and port.
fn parse_address(address: &str) -> anyhow::Result<(String, u16)> {
    let (host, port) = address
        .rsplit_once(':')
        .with_context(|| format!("{address:?} is not HOST:PORT"))?;
    // `[::1]:3306` names an IPv6 host; the brackets are not part of it.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        bail!("the host is empty");
    }
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|port| *port != 0)
        .with_context(|| format!("{port:?} is not a TCP port"))?;
    Ok((host.to_string(), port))
}

fn parse_pid(text: &str) -> anyhow::Result<PidArg> {
    let (name, pid) = text
        .split_once('=')
        .context("expected NAME=PID, e.g. torpor=4242")?;
    check_name(name)?;
    let pid = pid
        .parse::<u32>()
        .ok()
        .filter(|pid| *pid != 0)
        .with_context(|| format!("{pid:?} is not a process id"))?;
    Ok(PidArg {
        name: name.to_string(),
        pid,
    })
}

/// Names end up in file names and table headers: keep them plain.
fn check_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!("target name {name:?} must be letters, digits, '-' or '_'");
    }
    Ok(())
}

fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    humantime::parse_duration(text)
        .with_context(|| format!("{text:?} is not a duration such as 3s or 500ms"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(args: &[&str]) -> anyhow::Result<Settings> {
        let mut argv = vec!["torpor-bench", "run"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv)?;
        match cli.command {
            Command::Run(args) => Settings::from_args(*args),
            Command::ListWorkloads => bail!("parsed as list-workloads"),
            Command::FloorProxy(_) => bail!("parsed as floor-proxy"),
        }
    }

    #[test]
    fn targets_keep_their_order_and_parse_host_and_port() {
        let s = settings(&[
            "--target",
            "direct=127.0.0.1:3306",
            "--target",
            "torpor=localhost:6033",
            "--target",
            "v6=[::1]:3307",
        ])
        .expect("valid arguments");
        let names: Vec<_> = s.targets.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["direct", "torpor", "v6"]);
        assert_eq!(s.targets[1].host, "localhost");
        assert_eq!(s.targets[1].port, 6033);
        assert_eq!(s.targets[2].host, "::1");
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = settings(&["--target", "direct=127.0.0.1:3306"]).expect("valid arguments");
        assert_eq!(s.credentials.database, "test");
        assert_eq!(s.rounds, 5);
        assert_eq!(s.connections, [1, 16, 64, 256]);
        assert_eq!(s.workloads, WorkloadKind::ALL);
        assert_eq!(s.outputs, Outputs::default());
    }

    #[test]
    fn bad_target_shapes_are_refused() {
        for bad in [
            "direct",
            "direct=127.0.0.1",
            "=127.0.0.1:3306",
            "a b=h:1",
            "x=h:0",
            "x=h:70000",
            "x=:3306",
        ] {
            assert!(settings(&["--target", bad]).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn durations_rounds_and_lists_parse() {
        let s = settings(&[
            "--spawn-mariadb",
            "--duration",
            "250ms",
            "--warmup",
            "0s",
            "--rounds",
            "2",
            "--connections",
            "1,8",
            "--workload",
            "point-select,sysbench",
        ])
        .expect("valid arguments");
        assert_eq!(s.duration, Duration::from_millis(250));
        assert_eq!(s.warmup, Duration::ZERO);
        assert_eq!(s.rounds, 2);
        assert_eq!(s.connections, [1, 8]);
        assert_eq!(
            s.workloads,
            [
                WorkloadKind::PointSelect,
                WorkloadKind::SysbenchPointSelect { ps_disabled: false },
                WorkloadKind::SysbenchReadOnly { ps_disabled: false },
            ]
        );
        assert!(settings(&["--spawn-mariadb", "--rounds", "0"]).is_err());
        assert!(settings(&["--spawn-mariadb", "--duration", "fast"]).is_err());
        assert!(settings(&["--spawn-mariadb", "--workload", "nope"]).is_err());
        assert!(settings(&["--spawn-mariadb", "--connections", "0"]).is_err());
    }

    #[test]
    fn ps_mode_both_adds_the_disabled_variants() {
        let s = settings(&[
            "--spawn-mariadb",
            "--workload",
            "sysbench-point-select",
            "--sysbench-ps-mode",
            "both",
        ])
        .expect("valid arguments");
        assert_eq!(
            s.workloads,
            [
                WorkloadKind::SysbenchPointSelect { ps_disabled: false },
                WorkloadKind::SysbenchPointSelect { ps_disabled: true },
            ]
        );
    }

    #[test]
    fn pids_must_name_a_target() {
        let s = settings(&["--target", "a=h:1", "--pid", "a=42"]).expect("valid arguments");
        assert_eq!(
            s.pids,
            [PidArg {
                name: "a".into(),
                pid: 42
            }]
        );
        assert!(settings(&["--target", "a=h:1", "--pid", "b=42"]).is_err());
        assert!(settings(&["--target", "a=h:1", "--pid", "a=x"]).is_err());
        assert!(settings(&["--spawn-mariadb", "--pid", "direct=42"]).is_err());
    }

    #[test]
    fn spawned_names_cannot_be_reused_and_proxies_need_a_database() {
        assert!(settings(&["--spawn-mariadb", "--target", "direct=h:1"]).is_err());
        assert!(settings(&["--spawn-haproxy"]).is_err());
        assert!(settings(&[]).is_err());
        let s = settings(&["--target", "db=h:1", "--spawn-haproxy", "--spawn-torpor"])
            .expect("valid arguments");
        assert!(s.spawn.haproxy);
        assert!(s.spawn.torpor && !s.spawn.torpor_serverless);
        assert!(matches!(
            s.spawn.torpor_source,
            Some(TorporSource::Build(_))
        ));
        assert!(settings(&["--spawn-mariadb", "--torpor-bin", "/bin/true"]).is_err());
    }

    #[test]
    fn the_serverless_torpor_needs_no_database_and_shares_the_binary() {
        let s = settings(&["--spawn-torpor-serverless", "--torpor-bin", "/bin/true"])
            .expect("valid arguments");
        assert!(s.spawn.torpor_serverless && !s.spawn.torpor);
        assert_eq!(
            s.spawn.torpor_source,
            Some(TorporSource::Binary(PathBuf::from("/bin/true")))
        );
        assert_eq!(s.serverless, ServerlessSettings::default());
        let s = settings(&[
            "--spawn-torpor-serverless",
            "--wake-cycles",
            "3",
            "--random-suspend-cycles",
            "7",
            "--random-suspend-pause",
            "50ms",
            "--admin-token",
            "t0k",
        ])
        .expect("valid arguments");
        assert_eq!(
            s.serverless,
            ServerlessSettings {
                wake_cycles: 3,
                random_cycles: 7,
                random_pause: Duration::from_millis(50),
                admin_token: Some("t0k".into()),
            }
        );
        assert!(settings(&["--spawn-torpor-serverless", "--wake-cycles", "0"]).is_err());
        assert!(settings(&[
            "--spawn-torpor-serverless",
            "--target",
            "torpor-serverless=h:1"
        ])
        .is_err());
    }

    #[test]
    fn admin_addresses_come_from_the_target_spec_or_admin_flags() {
        let s = settings(&[
            "--target",
            "direct=h:3306",
            "--target",
            "torpor=h:6033,admin=h:6034",
            "--target",
            "t2=h:7033",
            "--admin",
            "t2=[::1]:7034",
        ])
        .expect("valid arguments");
        let admins: Vec<_> = s.targets.iter().map(|t| t.admin.as_deref()).collect();
        assert_eq!(admins, [None, Some("h:6034"), Some("[::1]:7034")]);
        assert_eq!(s.targets[1].port, 6033);
        // The same address twice is fine; two different ones are not.
        assert!(settings(&["--target", "t=h:1,admin=h:2", "--admin", "t=h:2"]).is_ok());
        assert!(settings(&["--target", "t=h:1,admin=h:2", "--admin", "t=h:3"]).is_err());
        assert!(settings(&["--target", "t=h:1", "--admin", "u=h:2"]).is_err());
        assert!(settings(&["--spawn-mariadb", "--admin", "direct=h:2"]).is_err());
        for bad in ["t=h:1,admin=h", "t=h:1,admin=", "t=h:1,pid=3", "t=h:1,"] {
            assert!(settings(&["--target", bad]).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn pool_torpors_are_named_by_their_bound_and_need_a_database() {
        let s =
            settings(&["--spawn-mariadb", "--spawn-torpor-pool", "1,8"]).expect("valid arguments");
        assert_eq!(s.spawn.torpor_pools, [1, 8]);
        assert!(matches!(
            s.spawn.torpor_source,
            Some(TorporSource::Build(_))
        ));
        assert_eq!(pool_target_name(8), "torpor-pool8");
        assert_eq!(s.multiplex, MultiplexSettings::default());
        assert!(settings(&["--spawn-torpor-pool", "8"]).is_err());
        assert!(settings(&["--spawn-mariadb", "--spawn-torpor-pool", "0"]).is_err());
        assert!(settings(&["--spawn-mariadb", "--spawn-torpor-pool", "2,2"]).is_err());
        assert!(settings(&[
            "--spawn-mariadb",
            "--spawn-torpor-pool",
            "1",
            "--target",
            "torpor-pool1=h:1"
        ])
        .is_err());
        let s = settings(&[
            "--spawn-mariadb",
            "--multiplex-clients",
            "16",
            "--multiplex-think",
            "0s",
        ])
        .expect("valid arguments");
        assert_eq!(
            s.multiplex,
            MultiplexSettings {
                clients: 16,
                think: Duration::ZERO
            }
        );
        assert!(settings(&["--spawn-mariadb", "--multiplex-clients", "0"]).is_err());
    }

    #[test]
    fn socket_and_floor_targets_follow_the_tcp_proxies_in_order() {
        let s = settings(&[
            "--spawn-mariadb",
            "--spawn-haproxy",
            "--spawn-torpor",
            "--spawn-socket",
            "--spawn-floor",
            "--spawn-torpor-pool",
            "8",
        ])
        .expect("valid arguments");
        assert_eq!(
            s.names,
            [
                "direct",
                "haproxy",
                "torpor",
                "haproxy-socket",
                "torpor-socket",
                "floor",
                "torpor-pool8"
            ]
        );
        assert!(s.spawn.socket && s.spawn.floor);
        // One proxy gets one socket twin.
        let s = settings(&["--spawn-mariadb", "--spawn-torpor", "--spawn-socket"])
            .expect("valid arguments");
        assert_eq!(s.names, ["direct", "torpor", "torpor-socket"]);
        let s = settings(&["--spawn-mariadb", "--spawn-haproxy", "--spawn-socket"])
            .expect("valid arguments");
        assert_eq!(s.names, ["direct", "haproxy", "haproxy-socket"]);
        assert!(s.spawn.torpor_source.is_none(), "no torpor to build");
    }

    #[test]
    fn without_the_new_flags_names_and_order_are_unchanged() {
        let s = settings(&[
            "--spawn-mariadb",
            "--target",
            "other=h:1",
            "--spawn-haproxy",
            "--spawn-torpor",
            "--spawn-torpor-serverless",
        ])
        .expect("valid arguments");
        assert_eq!(
            s.names,
            ["direct", "other", "haproxy", "torpor", "torpor-serverless"]
        );
        assert!(!s.spawn.socket && !s.spawn.floor);
    }

    #[test]
    fn socket_twins_need_the_spawned_mariadb_and_a_proxy() {
        let error = settings(&["--target", "db=h:1", "--spawn-haproxy", "--spawn-socket"])
            .expect_err("a given target has no socket we know of");
        assert!(
            error
                .to_string()
                .contains("--spawn-socket needs --spawn-mariadb"),
            "{error}"
        );
        let error = settings(&["--spawn-mariadb", "--spawn-socket"])
            .expect_err("no proxy to put in front of the socket");
        assert!(error.to_string().contains("--spawn-haproxy"), "{error}");
        assert!(settings(&[
            "--spawn-mariadb",
            "--spawn-haproxy",
            "--spawn-socket",
            "--target",
            "haproxy-socket=h:1"
        ])
        .is_err());
    }

    #[test]
    fn the_floor_needs_a_database_behind_it() {
        let error = settings(&["--spawn-floor", "--spawn-torpor-serverless"])
            .expect_err("nothing for the floor to forward to");
        assert!(error.to_string().contains("--spawn-floor"), "{error}");
        let s = settings(&["--target", "db=h:1", "--spawn-floor"]).expect("valid arguments");
        assert_eq!(s.names, ["db", "floor"]);
        assert!(settings(&["--spawn-mariadb", "--spawn-floor", "--target", "floor=h:1"]).is_err());
    }

    #[test]
    fn out_fills_in_every_report_file_unless_given() {
        let s = settings(&[
            "--spawn-mariadb",
            "--out",
            "res",
            "--json",
            "elsewhere.json",
        ])
        .expect("valid arguments");
        assert_eq!(s.outputs.json, Some(PathBuf::from("elsewhere.json")));
        assert_eq!(s.outputs.markdown, Some(PathBuf::from("res/report.md")));
        assert_eq!(s.outputs.svg_dir, Some(PathBuf::from("res")));
    }
}
