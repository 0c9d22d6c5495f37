//! The command line, and the [`Settings`] it is validated into.
//!
//! Parsing only checks shapes (`NAME=HOST:PORT`, durations, lists);
//! [`Settings::from_args`] checks what needs the whole picture (names
//! unique, something to measure, where the files go).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::workloads::WorkloadKind;

mod values;

use values::{parse_admin, parse_duration, parse_pid, parse_target};

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
    /// With --spawn-mariadb and --spawn-torpor: the spawned MariaDB and
    /// Torpor serve TLS on one self-signed certificate, and are measured
    /// again over TLS as `direct-tls` and `torpor-tls` (the client
    /// verifies the certificate).
    #[arg(long)]
    pub spawn_tls: bool,
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
    /// Start one more Torpor in front of the baseline per N, as
    /// `torpor-sizeN`: the plain `torpor`'s binary and arguments plus
    /// `--pool-size N` (backend connections that sessions share before
    /// more are opened), default workers kept. For many clients on a
    /// small backend: compare `torpor-sizeN` with `torpor` on the
    /// `throughput` workload at 64 and 256 connections
    /// (`--connections 64,256`).
    #[arg(long, value_name = "N,...", value_delimiter = ',',
          value_parser = clap::value_parser!(u32).range(1..))]
    pub spawn_torpor_pool_size: Vec<u32>,
    /// Build and start a Torpor whose one service is a MariaDB container
    /// (the `docker` driver, image torpor/mariadb:10.11) that starts at
    /// the --autoscale-min-* size with autoscaling on, as
    /// `torpor-autoscale`; only the serverless workloads run on it. The
    /// container and its volume are removed afterwards.
    #[arg(long)]
    pub spawn_torpor_autoscale: bool,
    /// Lengths of the `autoscale` workload's phases: idle, 1 client, 8
    /// clients, idle.
    #[arg(long, value_delimiter = ',', default_value = "5s,15s,25s,25s",
          value_parser = parse_duration)]
    pub autoscale_phases: Vec<Duration>,
    /// The fewest CPUs the autoscaled service gets: it starts there.
    #[arg(long, default_value_t = 0.5)]
    pub autoscale_min_cpus: f64,
    /// The most CPUs the autoscaled service gets, and the static size the
    /// `autoscale` workload compares with.
    #[arg(long, default_value_t = 1.5)]
    pub autoscale_max_cpus: f64,
    /// The least memory (MiB) of the autoscaled service: it starts there.
    #[arg(long, default_value_t = 512)]
    pub autoscale_min_memory_mib: u64,
    /// The most memory (MiB) of the autoscaled service, and the static
    /// size's.
    #[arg(long, default_value_t = 1024)]
    pub autoscale_max_memory_mib: u64,
    /// Data the `relocate-stall` workload puts in the service before it
    /// moves it, MiB (a table of its own, filled once and kept).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub relocate_data_mib: u64,
    /// The `autoscale` service does not load its buffer pool's last dump
    /// back after a grow (`reload_after_grow = false`): run once with and
    /// once without to see what hydration is worth.
    #[arg(long)]
    pub autoscale_no_reload: bool,
    /// Rows of the `autoscale` workload's table: the default fits any
    /// buffer pool; a few million outgrow the smallest size's, for the
    /// hydration figures.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub autoscale_rows: u32,
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
    /// The spawned MariaDB and Torpor with TLS, measured over it as
    /// `direct-tls` and `torpor-tls` too.
    pub tls: bool,
    /// The byte forwarder in front of the baseline, `floor`.
    pub floor: bool,
    /// Torpor with a MariaDB of its own and its admin API,
    /// `torpor-serverless`.
    pub torpor_serverless: bool,
    /// Torpor with an autoscaled MariaDB container, `torpor-autoscale`.
    pub torpor_autoscale: bool,
    /// Pool bounds of the Torpors with one worker and a small pool,
    /// `torpor-poolN` each.
    pub torpor_pools: Vec<u32>,
    /// Pool sizes (`--pool-size`) of the Torpors set up as the plain
    /// `torpor` otherwise, `torpor-sizeN` each.
    pub torpor_pool_sizes: Vec<u32>,
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
    /// Data `relocate-stall` moves, MiB.
    pub relocate_data_mib: u64,
}

impl Default for ServerlessSettings {
    fn default() -> Self {
        ServerlessSettings {
            wake_cycles: 20,
            random_cycles: 100,
            random_pause: Duration::from_millis(200),
            admin_token: None,
            relocate_data_mib: 100,
        }
    }
}

/// How the `autoscale` workload runs, and the bounds of the service
/// `--spawn-torpor-autoscale` starts.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoscaleSettings {
    /// Lengths of the phases: idle, 1 client, 8 clients, idle.
    pub phases: [Duration; 4],
    /// Smallest size (and the start): CPUs.
    pub min_cpus: f64,
    /// Largest size (and the static comparison): CPUs.
    pub max_cpus: f64,
    /// Smallest size (and the start): memory, MiB.
    pub min_memory_mib: u64,
    /// Largest size (and the static comparison): memory, MiB.
    pub max_memory_mib: u64,
    /// Rows of the workload's table.
    pub rows: u32,
    /// Whether a grown buffer pool loads its last dump back.
    pub reload_after_grow: bool,
}

impl Default for AutoscaleSettings {
    fn default() -> Self {
        AutoscaleSettings {
            phases: [5, 15, 25, 25].map(Duration::from_secs),
            min_cpus: 0.5,
            max_cpus: 1.5,
            min_memory_mib: 512,
            max_memory_mib: 1024,
            rows: 1_000,
            reload_after_grow: true,
        }
    }
}

impl AutoscaleSettings {
    /// The settings of the command line, or what is wrong with them.
    fn from_args(args: &RunArgs) -> anyhow::Result<AutoscaleSettings> {
        let Ok(phases) = <[Duration; 4]>::try_from(args.autoscale_phases.as_slice()) else {
            bail!(
                "--autoscale-phases wants four lengths (idle, 1 client, 8 clients, idle), got {}",
                args.autoscale_phases.len()
            );
        };
        if phases[1].is_zero() && phases[2].is_zero() {
            bail!("--autoscale-phases: the loaded phases (second and third) cannot both be 0");
        }
        let cpus_ok = args.autoscale_min_cpus.is_finite()
            && args.autoscale_min_cpus > 0.0
            && args.autoscale_min_cpus <= args.autoscale_max_cpus
            && args.autoscale_max_cpus.is_finite();
        if !cpus_ok {
            bail!(
                "--autoscale-min-cpus {} and --autoscale-max-cpus {}: want 0 < min <= max",
                args.autoscale_min_cpus,
                args.autoscale_max_cpus
            );
        }
        if args.autoscale_min_memory_mib == 0
            || args.autoscale_min_memory_mib > args.autoscale_max_memory_mib
        {
            bail!(
                "--autoscale-min-memory-mib {} and --autoscale-max-memory-mib {}: want 0 < min <= max",
                args.autoscale_min_memory_mib,
                args.autoscale_max_memory_mib
            );
        }
        Ok(AutoscaleSettings {
            phases,
            min_cpus: args.autoscale_min_cpus,
            max_cpus: args.autoscale_max_cpus,
            min_memory_mib: args.autoscale_min_memory_mib,
            max_memory_mib: args.autoscale_max_memory_mib,
            rows: args.autoscale_rows,
            reload_after_grow: !args.autoscale_no_reload,
        })
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

/// The name of the spawned Torpor started with `--pool-size size`.
pub fn pool_size_target_name(size: u32) -> String {
    format!("torpor-size{size}")
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
    /// Phases and bounds of `autoscale`.
    pub autoscale: AutoscaleSettings,
    /// Report files.
    pub outputs: Outputs,
    /// Progress display.
    pub progress: ProgressMode,
}

impl Settings {
    /// Checks the arguments as a whole.
    pub fn from_args(args: RunArgs) -> anyhow::Result<Settings> {
        let autoscale = AutoscaleSettings::from_args(&args)?;
        let names = planned_names(&args);
        if names.is_empty() {
            bail!("nothing to measure: give --target NAME=HOST:PORT, --spawn-mariadb, --spawn-torpor-serverless or --spawn-torpor-autoscale");
        }
        for (i, name) in names.iter().enumerate() {
            if names[..i].contains(name) {
                bail!("target name {name:?} is used twice (spawned targets are named direct, haproxy, torpor, haproxy-socket, torpor-socket, direct-tls, torpor-tls, floor, torpor-serverless, torpor-autoscale, torpor-poolN and torpor-sizeN)");
            }
        }
        for pid in &args.pids {
            if !args.targets.iter().any(|t| t.name == pid.name) {
                if names.contains(&pid.name) {
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
            || !args.spawn_torpor_pool.is_empty()
            || !args.spawn_torpor_pool_size.is_empty();
        if in_front && !args.spawn_mariadb && targets.is_empty() {
            bail!("--spawn-haproxy, --spawn-torpor, --spawn-floor, --spawn-torpor-pool and --spawn-torpor-pool-size need a database behind them: --spawn-mariadb or a first --target");
        }
        if args.spawn_socket && !args.spawn_mariadb {
            // Only a MariaDB the suite started has a socket it knows of.
            bail!("--spawn-socket needs --spawn-mariadb: the proxies go in front of the spawned MariaDB's Unix socket");
        }
        if args.spawn_socket && !args.spawn_haproxy && !args.spawn_torpor {
            bail!("--spawn-socket adds socket twins of the spawned proxies: give --spawn-haproxy, --spawn-torpor or both");
        }
        if args.spawn_tls && !(args.spawn_mariadb && args.spawn_torpor) {
            bail!("--spawn-tls adds TLS twins of the spawned MariaDB and Torpor: give --spawn-mariadb and --spawn-torpor");
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
        let any_torpor = args.spawn_torpor
            || args.spawn_torpor_serverless
            || args.spawn_torpor_autoscale
            || !args.spawn_torpor_pool.is_empty()
            || !args.spawn_torpor_pool_size.is_empty();
        let torpor_source = match (any_torpor, args.torpor_bin) {
            (false, Some(_)) => {
                bail!("--torpor-bin only matters with --spawn-torpor, --spawn-torpor-pool, --spawn-torpor-pool-size, --spawn-torpor-serverless or --spawn-torpor-autoscale")
            }
            (false, None) => None,
            (true, Some(path)) => Some(TorporSource::Binary(path)),
            (true, None) => Some(TorporSource::Build(args.workspace)),
        };
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
                tls: args.spawn_tls,
                floor: args.spawn_floor,
                torpor_serverless: args.spawn_torpor_serverless,
                torpor_autoscale: args.spawn_torpor_autoscale,
                torpor_pools: args.spawn_torpor_pool,
                torpor_pool_sizes: args.spawn_torpor_pool_size,
                torpor_source,
                timeout: args.spawn_timeout,
            },
            serverless: ServerlessSettings {
                wake_cycles: args.wake_cycles,
                random_cycles: args.random_suspend_cycles,
                random_pause: args.random_suspend_pause,
                admin_token: args.admin_token,
                relocate_data_mib: args.relocate_data_mib,
            },
            multiplex: MultiplexSettings {
                clients: args.multiplex_clients,
                think: args.multiplex_think,
            },
            autoscale,
            outputs,
            progress: args.progress,
        })
    }
}

/// Every target's name in measuring order, the baseline first. Each
/// `torpor-sizeN` follows the plain `torpor`, which it differs from only
/// by its pool size, so the two read side by side in every table.
fn planned_names(args: &RunArgs) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    if args.spawn_mariadb {
        names.push("direct".into());
    }
    names.extend(args.targets.iter().map(|target| target.name.clone()));
    if args.spawn_haproxy {
        names.push("haproxy".into());
    }
    if args.spawn_torpor {
        names.push("torpor".into());
    }
    names.extend(
        args.spawn_torpor_pool_size
            .iter()
            .map(|&size| pool_size_target_name(size)),
    );
    if args.spawn_socket && args.spawn_haproxy {
        names.push("haproxy-socket".into());
    }
    if args.spawn_socket && args.spawn_torpor {
        names.push("torpor-socket".into());
    }
    if args.spawn_tls {
        names.push("direct-tls".into());
        names.push("torpor-tls".into());
    }
    if args.spawn_floor {
        names.push("floor".into());
    }
    if args.spawn_torpor_serverless {
        names.push("torpor-serverless".into());
    }
    if args.spawn_torpor_autoscale {
        names.push("torpor-autoscale".into());
    }
    names.extend(
        args.spawn_torpor_pool
            .iter()
            .map(|&bound| pool_target_name(bound)),
    );
    names
}

/// The workspace this binary was built from: `bench/..`.
fn default_workspace() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/..")
}

/// Adds each `--admin NAME=HOST:PORT` to the given target it names.
fn with_admin_addresses(
    mut targets: Vec<TargetArg>,
    admins: &[AdminArg],
    names: &[String],
) -> anyhow::Result<Vec<TargetArg>> {
    for admin in admins {
        let Some(target) = targets.iter_mut().find(|t| t.name == admin.name) else {
            if names.contains(&admin.name) {
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

#[cfg(test)]
mod tests;
