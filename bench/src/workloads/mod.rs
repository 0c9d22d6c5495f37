//! The workloads: what each measures, how it is chosen on the command
//! line, and the timed loop they share.
//!
//! A workload runs once per target and round and returns an [`Outcome`]:
//! figures (and, for latency workloads, the histogram behind them), or
//! "not available" with the reason. Reasons are reported as they are, in
//! every output; no workload ever makes a number up.
//!
//! - [`latency`]: one connection, one operation at a time.
//! - [`large_result`]: reading 10k rows.
//! - [`concurrent`]: many connections at once (throughput, CPU per query).
//! - [`connections`]: connection setup, and memory of idle connections.
//! - [`multiplex`]: many clients with think time sharing backend
//!   connections: latency, and the backend connections used.
//! - [`state_diff`]: sessions in different states taking turns on shared
//!   connections: the cost of the diff run on each move.
//! - [`sysbench`]: sysbench's point select and read-only tests.
//! - [`serverless`]: Torpor's wake after suspend and park, suspends at
//!   random moments, the stall of a resize, how an autoscaled service
//!   follows a stepped load, and (later) the stall of a relocation.

pub mod concurrent;
pub mod connect_phases;
pub mod connections;
pub mod large_result;
pub mod latency;
pub mod multiplex;
pub mod serverless;
pub mod state_diff;
pub mod sysbench;

use std::time::Duration;

use anyhow::bail;

use crate::cli::{PsModeArg, Settings};
use crate::interrupt::Stop;
use crate::stats::{Figure, LatencyHistogram};
use crate::targets::Target;

/// Every workload the suite knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkloadKind {
    /// Point select round trip, text protocol, one connection.
    PointSelect,
    /// Point select through a prepared statement (binary protocol).
    PreparedPointSelect,
    /// BEGIN, two single-row UPDATEs, COMMIT.
    WriteTxn,
    /// All 10k rows of the suite's table, text protocol.
    LargeResult,
    /// Point selects on 1/16/64/256 connections at once.
    Throughput,
    /// CPU time of the target's process per query.
    CpuPerQuery,
    /// Connect, authenticate, first query.
    Connect,
    /// Memory per idle connection held open.
    IdleConnections,
    /// Many clients with think time: latency and backend connections used.
    Multiplex,
    /// Sessions in different states taking turns on shared connections.
    StateDiff,
    /// sysbench `oltp_point_select`, 1 thread.
    SysbenchPointSelect {
        /// Run with `--db-ps-mode=disable`.
        ps_disabled: bool,
    },
    /// sysbench `oltp_read_only`, 16 threads.
    SysbenchReadOnly {
        /// Run with `--db-ps-mode=disable`.
        ps_disabled: bool,
    },
    /// First query after the service was suspended.
    WakeAfterSuspend,
    /// New connection and its first query after the service was suspended.
    WakeAfterSuspendConnect,
    /// First query after the service was parked.
    WakeAfterPark,
    /// Queries at random moments while the service is suspended at random
    /// moments: errors and wake latency.
    RandomSuspend,
    /// Stall a steady client sees during a resize.
    ResizeStall,
    /// Stall a steady client sees during a relocation.
    RelocateStall,
    /// Allocated against used CPU and memory under a stepped load, and
    /// the QPS against a static size.
    Autoscale,
    /// Time from creating a service to its first answer.
    Provision,
}

/// A family of workloads, selectable as one name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    Native,
    Sysbench,
    Serverless,
}

impl WorkloadKind {
    /// All workloads in the order they run within a round.
    /// `idle-connections` comes first: see
    /// [`WorkloadKind::once_before_setup`].
    pub const ALL: [WorkloadKind; 20] = [
        WorkloadKind::IdleConnections,
        WorkloadKind::PointSelect,
        WorkloadKind::PreparedPointSelect,
        WorkloadKind::WriteTxn,
        WorkloadKind::LargeResult,
        WorkloadKind::Throughput,
        WorkloadKind::CpuPerQuery,
        WorkloadKind::Connect,
        WorkloadKind::Multiplex,
        WorkloadKind::StateDiff,
        WorkloadKind::SysbenchPointSelect { ps_disabled: false },
        WorkloadKind::SysbenchReadOnly { ps_disabled: false },
        WorkloadKind::WakeAfterSuspend,
        WorkloadKind::WakeAfterSuspendConnect,
        WorkloadKind::WakeAfterPark,
        WorkloadKind::RandomSuspend,
        WorkloadKind::ResizeStall,
        WorkloadKind::RelocateStall,
        WorkloadKind::Autoscale,
        WorkloadKind::Provision,
    ];

    /// The name used on the command line and in every output.
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::PointSelect => "point-select",
            WorkloadKind::PreparedPointSelect => "prepared-point-select",
            WorkloadKind::WriteTxn => "write-txn",
            WorkloadKind::LargeResult => "large-result",
            WorkloadKind::Throughput => "throughput",
            WorkloadKind::CpuPerQuery => "cpu-per-query",
            WorkloadKind::Connect => "connect",
            WorkloadKind::IdleConnections => "idle-connections",
            WorkloadKind::Multiplex => "multiplex",
            WorkloadKind::StateDiff => "state-diff",
            WorkloadKind::SysbenchPointSelect { ps_disabled: false } => "sysbench-point-select",
            WorkloadKind::SysbenchPointSelect { ps_disabled: true } => {
                "sysbench-point-select-ps-disabled"
            }
            WorkloadKind::SysbenchReadOnly { ps_disabled: false } => "sysbench-read-only",
            WorkloadKind::SysbenchReadOnly { ps_disabled: true } => {
                "sysbench-read-only-ps-disabled"
            }
            WorkloadKind::WakeAfterSuspend => "wake-after-suspend",
            WorkloadKind::WakeAfterSuspendConnect => "wake-after-suspend-connect",
            WorkloadKind::WakeAfterPark => "wake-after-park",
            WorkloadKind::RandomSuspend => "random-suspend",
            WorkloadKind::ResizeStall => "resize-stall",
            WorkloadKind::RelocateStall => "relocate-stall",
            WorkloadKind::Provision => "provision",
            WorkloadKind::Autoscale => "autoscale",
        }
    }

    /// One line on what it measures.
    pub fn description(self) -> &'static str {
        match self {
            WorkloadKind::PointSelect => {
                "point select by primary key, text protocol, one connection: latency percentiles"
            }
            WorkloadKind::PreparedPointSelect => {
                "the same through a prepared statement (binary protocol)"
            }
            WorkloadKind::WriteTxn => {
                "BEGIN; two single-row UPDATEs; COMMIT, one connection: latency percentiles"
            }
            WorkloadKind::LargeResult => {
                "SELECT of all 10k rows (about 1.7 MB), text protocol: MB/s"
            }
            WorkloadKind::Throughput => {
                "point selects on 1/16/64/256 connections at once: QPS and p99"
            }
            WorkloadKind::CpuPerQuery => {
                "CPU time (user+sys, /proc/PID/stat) of the target's process per point select"
            }
            WorkloadKind::Connect => {
                "connect + authenticate + first query, a new connection each time; \
                 and, taking turns with it, the same login by hand, timed phase by phase \
                 (tcp, greeting, login, first query)"
            }
            WorkloadKind::IdleConnections => {
                "resident memory of the target's process per idle connection held open \
                 (measured once, first, on processes nothing has exercised yet)"
            }
            WorkloadKind::Multiplex => {
                "--multiplex-clients clients (64) running point selects in autocommit, each \
                 thinking up to --multiplex-think (20ms) between queries: latency percentiles, \
                 QPS, and the backend connections used (sampled from the direct target's \
                 PROCESSLIST)"
            }
            WorkloadKind::StateDiff => {
                "two sessions taking turns, one statement each, first in the same state, then \
                 in different sql_mode, time_zone and user variable: per-statement p50/p99 of \
                 each and the difference, the cost of a state diff where they share a \
                 connection (--spawn-torpor-pool 1)"
            }
            WorkloadKind::SysbenchPointSelect { ps_disabled: false } => {
                "sysbench oltp_point_select, 1 thread: p50/p95/p99 from its histogram, QPS"
            }
            WorkloadKind::SysbenchPointSelect { ps_disabled: true } => {
                "sysbench oltp_point_select --db-ps-mode=disable, 1 thread"
            }
            WorkloadKind::SysbenchReadOnly { ps_disabled: false } => {
                "sysbench oltp_read_only, 16 threads: QPS"
            }
            WorkloadKind::SysbenchReadOnly { ps_disabled: true } => {
                "sysbench oltp_read_only --db-ps-mode=disable, 16 threads: QPS"
            }
            WorkloadKind::WakeAfterSuspend => {
                "Torpor: first query on an open connection after the service was suspended \
                 through the admin API (--wake-cycles cycles): latency percentiles"
            }
            WorkloadKind::WakeAfterSuspendConnect => {
                "Torpor: a new connection (login) and its first query after the service was \
                 suspended: latency percentiles"
            }
            WorkloadKind::WakeAfterPark => {
                "Torpor: first query on an open connection after the service was parked \
                 (MariaDB stopped): latency percentiles"
            }
            WorkloadKind::RandomSuspend => {
                "Torpor: a client querying after random pauses while the service is suspended \
                 at random moments: errors (want 0) and wake latency"
            }
            WorkloadKind::ResizeStall => {
                "Torpor: a steady client's point selects while the service is resized to twice \
                 its CPUs and memory and back, --wake-cycles times: p50/p99/max against its \
                 own steady p99, and errors (want 0)"
            }
            WorkloadKind::RelocateStall => {
                "Torpor: a steady client's point selects, and a writer's single-row updates, \
                 while the service (holding --relocate-data-mib of data) moves to a new \
                 backend, min(--wake-cycles, 3) times: p50/p99/max against the steady p99, \
                 the switch-over's stall, each phase's time, and errors (want 0)"
            }
            WorkloadKind::Provision => {
                "Torpor: a service created through the admin API (the driver of the target's own \
                 service: process on torpor-serverless, docker on torpor-autoscale), its account's \
                 first SELECT 1, then deleted with its data, --wake-cycles times: POST to first \
                 answer p50/p99/max on a server of the warm pool (one on each spawned Torpor) and \
                 cold (made at once after, before the pool has its next), and errors (want 0)"
            }
            WorkloadKind::Autoscale => {
                "Torpor: an autoscaled service (--spawn-torpor-autoscale) under idle, 1 client, \
                 8 clients, idle (--autoscale-phases), sampled every 200 ms: time from the \
                 overload to the grow and from idle back down, QPS per phase against the same \
                 load at the static largest size, hydration after the grow, errors (want 0); \
                 a timeline chart of allocated against used CPU and memory"
            }
        }
    }

    /// Whether this workload runs once, before the tables are prepared
    /// and before any other workload.
    ///
    /// That is memory per idle connection: allocators keep what earlier
    /// work freed (sysbench's table loads, 256 throughput connections,
    /// MariaDB's thread cache), and new connections reuse that memory
    /// without RSS growing. Only a process nothing has exercised yet shows
    /// what a connection costs.
    pub fn once_before_setup(self) -> bool {
        self == WorkloadKind::IdleConnections
    }

    fn group(self) -> Group {
        match self {
            WorkloadKind::SysbenchPointSelect { .. } | WorkloadKind::SysbenchReadOnly { .. } => {
                Group::Sysbench
            }
            WorkloadKind::WakeAfterSuspend
            | WorkloadKind::WakeAfterSuspendConnect
            | WorkloadKind::WakeAfterPark
            | WorkloadKind::RandomSuspend
            | WorkloadKind::ResizeStall
            | WorkloadKind::RelocateStall
            | WorkloadKind::Provision
            | WorkloadKind::Autoscale => Group::Serverless,
            _ => Group::Native,
        }
    }

    fn with_ps_disabled(self, disabled: bool) -> WorkloadKind {
        match self {
            WorkloadKind::SysbenchPointSelect { .. } => WorkloadKind::SysbenchPointSelect {
                ps_disabled: disabled,
            },
            WorkloadKind::SysbenchReadOnly { .. } => WorkloadKind::SysbenchReadOnly {
                ps_disabled: disabled,
            },
            other => other,
        }
    }

    /// Resolves names and groups from the command line into workloads in
    /// running order, applying the sysbench prepared-statement mode.
    pub fn select(names: &[String], ps_mode: PsModeArg) -> anyhow::Result<Vec<WorkloadKind>> {
        let mut wanted = Vec::new();
        for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
            let group = match name {
                "all" => Some(None),
                "native" => Some(Some(Group::Native)),
                "sysbench" => Some(Some(Group::Sysbench)),
                "serverless" => Some(Some(Group::Serverless)),
                _ => None,
            };
            match group {
                Some(group) => wanted.extend(
                    WorkloadKind::ALL
                        .into_iter()
                        .filter(|k| group.is_none_or(|g| k.group() == g)),
                ),
                None => {
                    let kind = WorkloadKind::ALL
                        .into_iter()
                        .flat_map(|k| [k, k.with_ps_disabled(true)])
                        .find(|k| k.name() == name);
                    match kind {
                        // An explicit `-ps-disabled` name is taken as is.
                        Some(kind) => wanted.push(kind),
                        None => bail!(
                            "unknown workload {name:?}; `torpor-bench list-workloads` shows them \
                             (groups: all, native, sysbench, serverless)"
                        ),
                    }
                }
            }
        }
        if wanted.is_empty() {
            bail!("--workload selected nothing");
        }
        let mut selected = Vec::new();
        for kind in WorkloadKind::ALL
            .into_iter()
            .flat_map(|k| [k, k.with_ps_disabled(true)])
        {
            let asked = wanted.contains(&kind);
            let variants: &[WorkloadKind] = match (kind.group(), ps_mode, asked) {
                (_, _, false) => &[],
                (Group::Sysbench, PsModeArg::Disable, _) => &[kind.with_ps_disabled(true)],
                (Group::Sysbench, PsModeArg::Both, _) => &[kind, kind.with_ps_disabled(true)],
                _ => &[kind],
            };
            for variant in variants {
                if !selected.contains(variant) {
                    selected.push(*variant);
                }
            }
        }
        Ok(selected)
    }
}

/// Fails early, with the package to install, when a selected workload
/// needs a program that is missing.
pub fn check_programs(workloads: &[WorkloadKind]) -> anyhow::Result<()> {
    if workloads.iter().any(|k| k.group() == Group::Sysbench) {
        crate::targets::child::require_program("sysbench", "sysbench").map_err(|e| {
            e.context(
                "the sysbench workloads need sysbench (or leave them out with --workload native)",
            )
        })?;
    }
    Ok(())
}

/// What one run of a workload on one target produced.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Figures, and the latency histogram behind them when there is one.
    Measured(Sample),
    /// The workload cannot be measured on this target; why.
    NotAvailable(String),
}

/// The figures of one run.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Named numbers, in display order.
    pub figures: Vec<Figure>,
    /// Per-operation latencies, for the CDF chart.
    pub histogram: Option<LatencyHistogram>,
    /// What the figures alone do not say (the errors behind an error
    /// count, say), one line each; shown under the workload's table.
    pub notes: Vec<String>,
}

/// What a workload run may use.
#[derive(Debug)]
pub struct Ctx<'a> {
    /// The run settings.
    pub settings: &'a Settings,
    /// Set on Ctrl-C: loops end early (the runner discards that run).
    pub stop: &'a Stop,
    /// The clock every operation is timed with.
    pub clock: &'a quanta::Clock,
    /// The MariaDB the proxies front, asked directly how many backend
    /// connections are in use: the target named `direct`, when there is
    /// one.
    pub backend: Option<&'a Target>,
}

/// The target that is MariaDB itself: the one named `direct` (the
/// spawned server, or `--target direct=HOST:PORT`).
pub fn backend(targets: &[Target]) -> Option<&Target> {
    targets.iter().find(|t| t.name == "direct")
}

/// Whether [`prepare`] has anything to do: the native or sysbench
/// workloads are selected and the baseline is where they run. (The
/// serverless workloads prepare their own small table on each Torpor they
/// run on; on a serverless-only baseline nothing reads the shared tables.)
pub fn needs_preparing(baseline: &Target, workloads: &[WorkloadKind]) -> bool {
    !baseline.serverless_only() && workloads.iter().any(|k| k.group() != Group::Serverless)
}

/// Prepares what the selected workloads read, once, through the baseline:
/// the suite's table and sysbench's tables.
pub fn prepare(ctx: &Ctx<'_>, baseline: &Target, workloads: &[WorkloadKind]) -> anyhow::Result<()> {
    if !needs_preparing(baseline, workloads) {
        return Ok(());
    }
    let credentials = &ctx.settings.credentials;
    if workloads.iter().any(|k| k.group() == Group::Native) {
        crate::client::prepare_table(baseline, credentials)?;
    }
    if workloads.iter().any(|k| k.group() == Group::Sysbench) {
        crate::sysbench::prepare(
            baseline,
            credentials,
            ctx.settings.sysbench_tables,
            ctx.settings.sysbench_table_size,
            ctx.stop,
        )?;
    }
    Ok(())
}

/// Runs `kind` once against `target`.
pub fn run(kind: WorkloadKind, ctx: &Ctx<'_>, target: &Target) -> anyhow::Result<Outcome> {
    if target.serverless_only() && kind.group() != Group::Serverless {
        return Ok(Outcome::NotAvailable(
            serverless::SERVERLESS_ONLY.to_string(),
        ));
    }
    if target.tls_ca.is_some() && kind.group() == Group::Sysbench {
        return Ok(Outcome::NotAvailable(
            "sysbench runs without TLS here: see the plain target".to_string(),
        ));
    }
    match kind {
        WorkloadKind::PointSelect => latency::point_select(ctx, target),
        WorkloadKind::PreparedPointSelect => latency::prepared_point_select(ctx, target),
        WorkloadKind::WriteTxn => latency::write_txn(ctx, target),
        WorkloadKind::LargeResult => large_result::run(ctx, target),
        WorkloadKind::Throughput => concurrent::throughput(ctx, target),
        WorkloadKind::CpuPerQuery => concurrent::cpu_per_query(ctx, target),
        WorkloadKind::Connect => connections::setup(ctx, target),
        WorkloadKind::IdleConnections => connections::idle(ctx, target),
        WorkloadKind::Multiplex => multiplex::run(ctx, target),
        WorkloadKind::StateDiff => state_diff::run(ctx, target),
        WorkloadKind::SysbenchPointSelect { ps_disabled } => {
            sysbench::point_select(ctx, target, ps_disabled)
        }
        WorkloadKind::SysbenchReadOnly { ps_disabled } => {
            sysbench::read_only(ctx, target, ps_disabled)
        }
        WorkloadKind::WakeAfterSuspend
        | WorkloadKind::WakeAfterSuspendConnect
        | WorkloadKind::WakeAfterPark
        | WorkloadKind::RandomSuspend
        | WorkloadKind::ResizeStall
        | WorkloadKind::RelocateStall
        | WorkloadKind::Provision
        | WorkloadKind::Autoscale => serverless::run(kind, ctx, target),
    }
}

/// What a timed loop measured.
#[derive(Debug)]
pub struct Timed {
    /// Latency of each measured operation.
    pub histogram: LatencyHistogram,
    /// Units the operations reported (bytes, rows), summed.
    pub units: u64,
    /// Wall-clock time of the measured part.
    pub elapsed: Duration,
}

impl Timed {
    /// Operations per second over the measured time.
    pub fn rate(&self) -> f64 {
        self.histogram.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs `op` for the warm-up (unrecorded), then for `duration`, timing each
/// call. `op` returns units of work (bytes read, say) or an error that
/// ends the loop. Stops early when the user asks.
pub fn timed_loop(
    ctx: &Ctx<'_>,
    duration: Duration,
    mut op: impl FnMut() -> anyhow::Result<u64>,
) -> anyhow::Result<Timed> {
    let clock = ctx.clock;
    let warm_until = clock.now() + ctx.settings.warmup;
    while clock.now() < warm_until && !ctx.stop.is_set() {
        op()?;
    }
    let mut histogram = LatencyHistogram::new();
    let mut units = 0;
    let start = clock.now();
    let end = start + duration;
    let mut now = start;
    while now < end && !ctx.stop.is_set() {
        let before = now;
        units += op()?;
        now = clock.now();
        histogram.record(now.duration_since(before));
    }
    Ok(Timed {
        histogram,
        units,
        elapsed: now.duration_since(start),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn select(names: &[&str], ps: PsModeArg) -> anyhow::Result<Vec<WorkloadKind>> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        WorkloadKind::select(&names, ps)
    }

    #[test]
    fn names_are_unique_and_round_trip() {
        let mut all: Vec<WorkloadKind> = WorkloadKind::ALL.to_vec();
        all.extend(WorkloadKind::ALL.map(|k| k.with_ps_disabled(true)));
        for kind in &all {
            assert_eq!(
                select(&[kind.name()], PsModeArg::Auto).expect("known name"),
                [*kind]
            );
        }
        let mut names: Vec<_> = WorkloadKind::ALL.iter().map(|k| k.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), WorkloadKind::ALL.len());
    }

    #[test]
    fn selection_keeps_running_order_and_drops_duplicates() {
        let got = select(
            &["connect", "point-select", "connect", "idle-connections"],
            PsModeArg::Auto,
        )
        .expect("valid");
        assert_eq!(
            got,
            [
                WorkloadKind::IdleConnections,
                WorkloadKind::PointSelect,
                WorkloadKind::Connect
            ]
        );
    }

    #[test]
    fn groups_expand() {
        let serverless = select(&["serverless"], PsModeArg::Auto).expect("valid");
        assert_eq!(serverless.len(), 8);
        assert_eq!(
            select(&["native"], PsModeArg::Auto).expect("valid").len(),
            10
        );
        assert_eq!(
            select(&["all"], PsModeArg::Auto).expect("valid"),
            WorkloadKind::ALL
        );
        assert_eq!(
            select(&["sysbench"], PsModeArg::Both).expect("valid").len(),
            4
        );
    }

    #[test]
    fn ps_mode_disable_replaces_the_sysbench_variants() {
        let got =
            select(&["sysbench-read-only", "point-select"], PsModeArg::Disable).expect("valid");
        assert_eq!(
            got,
            [
                WorkloadKind::PointSelect,
                WorkloadKind::SysbenchReadOnly { ps_disabled: true }
            ]
        );
    }

    #[test]
    fn shared_tables_are_prepared_only_for_workloads_that_read_them() {
        let target = |origin| Target {
            name: "t".into(),
            host: "127.0.0.1".into(),
            port: 1,
            pid: None,
            origin,
            admin: None,
            tls_ca: None,
        };
        let direct = target(crate::targets::Origin::SpawnedMariadb);
        let serverless = target(crate::targets::Origin::SpawnedTorporServerless);
        let native = [WorkloadKind::PointSelect, WorkloadKind::WakeAfterPark];
        let only_serverless = [WorkloadKind::WakeAfterPark, WorkloadKind::RandomSuspend];
        assert!(needs_preparing(&direct, &native));
        assert!(!needs_preparing(&direct, &only_serverless));
        assert!(!needs_preparing(&serverless, &native));
    }

    #[test]
    fn unknown_or_empty_selections_are_refused() {
        assert!(select(&["pointselect"], PsModeArg::Auto).is_err());
        assert!(select(&[""], PsModeArg::Auto).is_err());
    }
}
