//! The report: one model built from the rounds' records, written four
//! ways — a table on stdout ([`table`]), JSON ([`json`]), Markdown
//! ([`markdown`]) and SVG charts ([`svg`]); the `autoscale` workload
//! draws its own time series chart ([`timeline`]).
//!
//! Every figure is the median over rounds with min and max, and its ratio
//! to the baseline (the first target). Targets where a workload was not
//! available or failed carry the reason instead of numbers.

pub mod json;
pub mod markdown;
pub mod svg;
pub mod table;
pub mod timeline;

use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::Context;
use serde::Serialize;

use crate::cli::{Outputs, Settings};
use crate::runner::{Status, WorkloadRecord};
use crate::stats::{ratio, spread, CdfPoint, LatencyHistogram, Metric, Unit};
use crate::targets::{Origin, Target};

/// When the run happened and how busy the machine was.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Start of the run.
    pub started: SystemTime,
    /// End of the run.
    pub finished: SystemTime,
    /// Load averages at the start.
    pub load_start: Option<[f64; 3]>,
    /// Load averages at the end.
    pub load_end: Option<[f64; 3]>,
    /// Whether Ctrl-C cut the run short.
    pub interrupted: bool,
}

/// Everything a report shows.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `torpor-bench`.
    pub tool: String,
    /// Its version.
    pub version: String,
    /// `release` or `debug`: a debug client inflates every figure.
    pub build: String,
    /// Start, RFC 3339.
    pub started_at: String,
    /// End, RFC 3339.
    pub finished_at: String,
    /// Whether Ctrl-C cut the run short (the figures cover the rounds done).
    pub interrupted: bool,
    /// The machine.
    pub host: Host,
    /// How the run was configured.
    pub settings: SettingsSummary,
    /// The target every ratio refers to.
    pub baseline: String,
    /// The targets, in measuring order.
    pub targets: Vec<TargetSummary>,
    /// One entry per workload, in running order.
    pub workloads: Vec<WorkloadSummary>,
}

/// The machine the run was on.
#[derive(Debug, Clone, Serialize)]
pub struct Host {
    /// CPUs available to the suite.
    pub cpus: usize,
    /// Kernel release.
    pub kernel: Option<String>,
    /// 1/5/15-minute load averages at the start.
    pub load_start: Option<[f64; 3]>,
    /// The same at the end.
    pub load_end: Option<[f64; 3]>,
}

/// The settings that shape the figures.
#[derive(Debug, Clone, Serialize)]
pub struct SettingsSummary {
    /// Rounds.
    pub rounds: u32,
    /// Measured milliseconds per workload, target and round.
    pub duration_ms: u64,
    /// Warm-up milliseconds before each measurement.
    pub warmup_ms: u64,
    /// Login user.
    pub user: String,
    /// Database.
    pub database: String,
    /// Connection counts of `throughput`.
    pub connections: Vec<u32>,
    /// Connections of `cpu-per-query`.
    pub cpu_connections: u32,
    /// Connections held by `idle-connections`.
    pub idle_connections: u32,
    /// sysbench tables.
    pub sysbench_tables: u32,
    /// Rows per sysbench table.
    pub sysbench_table_size: u32,
    /// Cycles of each `wake-after-*` workload.
    pub wake_cycles: u32,
    /// Queries of `random-suspend`.
    pub random_suspend_cycles: u32,
    /// Longest random pause of `random-suspend`, in milliseconds.
    pub random_suspend_pause_ms: u64,
    /// Phase lengths of `autoscale` (idle, 1 client, 8 clients, idle),
    /// in milliseconds.
    pub autoscale_phases_ms: Vec<u64>,
    /// Smallest and largest CPUs of `autoscale`.
    pub autoscale_cpus: [f64; 2],
    /// Smallest and largest memory of `autoscale`, MiB.
    pub autoscale_memory_mib: [u64; 2],
    /// Rows of the `autoscale` table.
    pub autoscale_rows: u32,
    /// Data `relocate-stall` moves, MiB.
    pub relocate_data_mib: u64,
    /// Whether the `autoscale` service reloaded its buffer pool's dump
    /// after a grow.
    pub autoscale_reload_after_grow: bool,
}

/// A target as reported.
#[derive(Debug, Clone, Serialize)]
pub struct TargetSummary {
    /// Name.
    pub name: String,
    /// `host:port`.
    pub address: String,
    /// Process id, when known.
    pub pid: Option<u32>,
    /// What the suite spawned there, if anything: `mariadb`, `haproxy`,
    /// `torpor` (`…, socket backend` in front of MariaDB's Unix socket),
    /// `floor-proxy`.
    pub spawned: Option<String>,
}

/// How a workload went on one target.
#[derive(Debug, Clone, Serialize)]
pub struct TargetStatus {
    /// The target's name.
    pub target: String,
    /// `measured`, `not_available`, `failed` or `no_data`.
    pub status: &'static str,
    /// The reason or error, unless measured.
    pub detail: Option<String>,
    /// Rounds that produced figures.
    pub rounds: usize,
    /// What the rounds noted beside their figures (`round N: …`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// One workload's results.
#[derive(Debug, Clone, Serialize)]
pub struct WorkloadSummary {
    /// Its name.
    pub name: String,
    /// What it measures.
    pub description: String,
    /// How it went on each target.
    pub targets: Vec<TargetStatus>,
    /// Its metrics, each across the targets.
    pub metrics: Vec<MetricSummary>,
    /// Latency CDF per target, all rounds merged (latency workloads only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cdf: Vec<CdfSeries>,
}

/// One metric across the targets.
#[derive(Debug, Clone, Serialize)]
pub struct MetricSummary {
    /// What it is.
    #[serde(flatten)]
    pub metric: Metric,
    /// Its value per target, in target order.
    pub values: Vec<Cell>,
}

/// One metric on one target.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    /// The target's name.
    pub target: String,
    /// Median over rounds.
    pub median: Option<f64>,
    /// Smallest round.
    pub min: Option<f64>,
    /// Largest round.
    pub max: Option<f64>,
    /// Median divided by the baseline's median.
    pub ratio: Option<f64>,
    /// Each round's value.
    pub rounds: Vec<f64>,
}

/// A latency CDF.
#[derive(Debug, Clone, Serialize)]
pub struct CdfSeries {
    /// The target's name.
    pub target: String,
    /// Points, percentile ascending.
    pub points: Vec<CdfPoint>,
}

impl Report {
    /// Builds the report from the rounds' records.
    pub fn build(
        settings: &Settings,
        targets: &[Target],
        records: &[WorkloadRecord],
        timing: Timing,
    ) -> Report {
        Report {
            tool: "torpor-bench".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            build: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
            .to_string(),
            started_at: humantime::format_rfc3339_seconds(timing.started).to_string(),
            finished_at: humantime::format_rfc3339_seconds(timing.finished).to_string(),
            interrupted: timing.interrupted,
            host: Host {
                cpus: crate::procfs::cpus(),
                kernel: crate::procfs::kernel(),
                load_start: timing.load_start,
                load_end: timing.load_end,
            },
            settings: SettingsSummary {
                rounds: settings.rounds,
                duration_ms: millis(settings.duration),
                warmup_ms: millis(settings.warmup),
                user: settings.credentials.user.clone(),
                database: settings.credentials.database.clone(),
                connections: settings.connections.clone(),
                cpu_connections: settings.cpu_connections,
                idle_connections: settings.idle_connections,
                sysbench_tables: settings.sysbench_tables,
                sysbench_table_size: settings.sysbench_table_size,
                wake_cycles: settings.serverless.wake_cycles,
                random_suspend_cycles: settings.serverless.random_cycles,
                random_suspend_pause_ms: millis(settings.serverless.random_pause),
                autoscale_phases_ms: settings
                    .autoscale
                    .phases
                    .iter()
                    .map(|d| millis(*d))
                    .collect(),
                autoscale_cpus: [settings.autoscale.min_cpus, settings.autoscale.max_cpus],
                autoscale_memory_mib: [
                    settings.autoscale.min_memory_mib,
                    settings.autoscale.max_memory_mib,
                ],
                autoscale_rows: settings.autoscale.rows,
                relocate_data_mib: settings.serverless.relocate_data_mib,
                autoscale_reload_after_grow: settings.autoscale.reload_after_grow,
            },
            baseline: targets.first().map(|t| t.name.clone()).unwrap_or_default(),
            targets: targets.iter().map(summarize_target).collect(),
            workloads: records
                .iter()
                .map(|r| summarize_workload(r, targets))
                .collect(),
        }
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn summarize_target(target: &Target) -> TargetSummary {
    let spawned = match target.origin {
        Origin::Given => None,
        Origin::SpawnedMariadb => Some("mariadb"),
        Origin::SpawnedHaproxy => Some("haproxy"),
        Origin::SpawnedTorpor => Some("torpor"),
        Origin::SpawnedHaproxySocket => Some("haproxy, socket backend"),
        Origin::SpawnedTorporSocket => Some("torpor, socket backend"),
        Origin::SpawnedFloor => Some("floor-proxy"),
        Origin::SpawnedTorporServerless => Some("torpor-serverless"),
        Origin::SpawnedTorporAutoscale => Some("torpor-autoscale, docker"),
        Origin::SpawnedTorporPool(_) | Origin::SpawnedTorporPoolSize(_) => Some("torpor"),
    };
    TargetSummary {
        name: target.name.clone(),
        address: target.address(),
        pid: target.pid,
        spawned: spawned.map(str::to_string),
    }
}

fn summarize_workload(record: &WorkloadRecord, targets: &[Target]) -> WorkloadSummary {
    let names = targets.iter().map(|t| t.name.clone());
    let statuses = record
        .targets
        .iter()
        .zip(names.clone())
        .map(|(r, target)| {
            let (status, detail) = match &r.status {
                Status::Measured if r.samples.is_empty() => {
                    ("no_data", Some("no round completed".to_string()))
                }
                Status::Measured => ("measured", None),
                Status::NotAvailable(reason) => ("not_available", Some(reason.clone())),
                Status::Failed(error) => ("failed", Some(error.clone())),
            };
            let notes = r
                .samples
                .iter()
                .enumerate()
                .flat_map(|(i, s)| s.notes.iter().map(move |n| format!("round {}: {n}", i + 1)))
                .collect();
            TargetStatus {
                target,
                status,
                detail,
                rounds: r.samples.len(),
                notes,
            }
        })
        .collect();
    // Metrics in the order they first appear in any sample.
    let mut metrics: Vec<Metric> = Vec::new();
    for sample in record.targets.iter().flat_map(|t| &t.samples) {
        for figure in &sample.figures {
            if !metrics.contains(&figure.metric) {
                metrics.push(figure.metric.clone());
            }
        }
    }
    let metrics = metrics
        .into_iter()
        .map(|metric| {
            let per_target: Vec<Vec<f64>> = record
                .targets
                .iter()
                .map(|t| {
                    t.samples
                        .iter()
                        .flat_map(|s| {
                            s.figures
                                .iter()
                                .filter(|f| f.metric == metric)
                                .map(|f| f.value)
                        })
                        .collect()
                })
                .collect();
            let baseline = per_target.first().and_then(|v| spread(v)).map(|s| s.median);
            let values = per_target
                .into_iter()
                .zip(names.clone())
                .map(|(rounds, target)| {
                    let s = spread(&rounds);
                    Cell {
                        target,
                        median: s.map(|s| s.median),
                        min: s.map(|s| s.min),
                        max: s.map(|s| s.max),
                        ratio: s.zip(baseline).and_then(|(s, b)| ratio(s.median, b)),
                        rounds,
                    }
                })
                .collect();
            MetricSummary { metric, values }
        })
        .collect();
    let cdf = record
        .targets
        .iter()
        .zip(names)
        .filter_map(|(t, target)| {
            let mut merged: Option<LatencyHistogram> = None;
            for h in t.samples.iter().filter_map(|s| s.histogram.as_ref()) {
                merged.get_or_insert_with(LatencyHistogram::new).merge(h);
            }
            let points = merged?.cdf();
            (!points.is_empty()).then_some(CdfSeries { target, points })
        })
        .collect();
    WorkloadSummary {
        name: record.kind.name().to_string(),
        description: record.kind.description().to_string(),
        targets: statuses,
        metrics,
        cdf,
    }
}

/// Writes the JSON, Markdown and SVG files asked for; returns their paths.
pub fn write_files(report: &Report, outputs: &Outputs) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let mut charts = Vec::new();
    if let Some(dir) = &outputs.svg_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        charts = svg::write_all(report, dir)?;
        written.extend(charts.iter().map(|c| dir.join(&c.file_name)));
    }
    if let Some(path) = &outputs.markdown {
        create_parent(path)?;
        // Charts are linked when they sit next to the Markdown file.
        let same_dir = outputs
            .svg_dir
            .as_deref()
            .zip(path.parent())
            .is_some_and(|(svg, md)| {
                let md = if md.as_os_str().is_empty() {
                    std::path::Path::new(".")
                } else {
                    md
                };
                std::fs::canonicalize(svg).ok() == std::fs::canonicalize(md).ok()
            });
        let links: &[svg::Chart] = if same_dir { &charts } else { &[] };
        std::fs::write(path, markdown::render(report, links))
            .with_context(|| format!("writing {}", path.display()))?;
        written.push(path.clone());
    }
    if let Some(path) = &outputs.json {
        create_parent(path)?;
        json::write(report, path)?;
        written.push(path.clone());
    }
    Ok(written)
}

fn create_parent(path: &std::path::Path) -> anyhow::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// A number in a unit's usual precision: about four significant digits,
/// never scientific notation.
pub fn format_number(value: f64) -> String {
    if value == 0.0 {
        return "0".to_string();
    }
    let magnitude = value.abs();
    let decimals = if magnitude >= 1000.0 {
        0
    } else if magnitude >= 10.0 {
        1
    } else if magnitude >= 1.0 {
        2
    } else {
        3
    };
    format!("{value:.decimals$}")
}

/// A number in its unit's usual precision: counts (errors, suspends)
/// whole when they are, `67` rather than `67.0`; the rest as
/// [`format_number`].
pub fn format_value(value: f64, unit: Unit) -> String {
    if unit == Unit::Count && value.fract() == 0.0 && value.abs() < 1e15 {
        return format!("{value:.0}");
    }
    format_number(value)
}

/// `×1.42`, the way ratios are shown.
pub fn format_ratio(ratio: f64) -> String {
    format!("×{ratio:.2}")
}

/// `61.2 [58.0–64.1] ×1.44`: median, spread over rounds, and the ratio to
/// the baseline (left out for the baseline itself); `None` without data.
pub fn cell_text(cell: &Cell, unit: Unit, is_baseline: bool) -> Option<String> {
    let (median, min, max) = (cell.median?, cell.min?, cell.max?);
    let mut text = format_value(median, unit);
    if cell.rounds.len() > 1 {
        text.push_str(&format!(
            " [{}–{}]",
            format_value(min, unit),
            format_value(max, unit)
        ));
    }
    if let (false, Some(r)) = (is_baseline, cell.ratio) {
        text.push(' ');
        text.push_str(&format_ratio(r));
    }
    Some(text)
}

/// What a cell without figures shows, from its target's status.
pub fn status_text(status: &TargetStatus) -> &'static str {
    match status.status {
        "not_available" => "n/a",
        "failed" => "failed",
        "no_data" => "no data",
        _ => "–",
    }
}

/// `p50 µs ↓`: a metric's name, unit and good direction.
pub fn metric_label(metric: &Metric) -> String {
    let arrow = match metric.better {
        crate::stats::Better::Lower => "↓",
        crate::stats::Better::Higher => "↑",
    };
    format!("{} {} {arrow}", metric.label(), metric.unit.symbol())
}

/// What the rounds noted beside their figures, then the reasons behind
/// cells without figures, one line each.
pub fn notes(workload: &WorkloadSummary) -> Vec<String> {
    let remarks = workload.targets.iter().flat_map(|t| {
        t.notes
            .iter()
            .map(move |n| format!("{}: {}", t.target, one_line(n)))
    });
    let reasons = workload.targets.iter().filter_map(|t| {
        let detail = t.detail.as_deref()?;
        let kind = match t.status {
            "not_available" => "not available",
            "failed" if t.rounds > 0 => "failed after some rounds",
            "failed" => "failed",
            _ => "no data",
        };
        Some(format!("{}: {kind}: {}", t.target, one_line(detail)))
    });
    remarks.chain(reasons).collect()
}

/// Errors can span lines (a child's output); a table note must not.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `3 rounds × 3s (warm-up 500ms)`.
pub fn method_line(report: &Report) -> String {
    let s = &report.settings;
    format!(
        "{} round{} × {} per workload and target (warm-up {})",
        s.rounds,
        if s.rounds == 1 { "" } else { "s" },
        humantime::format_duration(std::time::Duration::from_millis(s.duration_ms)),
        humantime::format_duration(std::time::Duration::from_millis(s.warmup_ms)),
    )
}

/// The figures a reader looks at first, as `(workload, metric name)`:
/// single-connection latency, the sysbench acceptance figures, CPU per
/// query and connection setup.
const HEADLINES: [(&str, &str); 8] = [
    ("point-select", "p50"),
    ("point-select", "p99"),
    ("sysbench-point-select", "p95"),
    ("sysbench-point-select", "qps"),
    ("sysbench-read-only", "qps"),
    ("large-result", "throughput"),
    ("cpu-per-query", "cpu"),
    ("connect", "p50"),
];

/// One headline figure: its label and each target's ratio to the
/// baseline (`None` where there is none).
#[derive(Debug, Clone, PartialEq)]
pub struct Headline {
    /// `point-select p50 µs ↓`.
    pub label: String,
    /// Per target, in target order; the baseline's is 1.
    pub ratios: Vec<Option<f64>>,
}

/// The headline figures the report has data for.
pub fn headlines(report: &Report) -> Vec<Headline> {
    HEADLINES
        .iter()
        .filter_map(|(workload, metric)| {
            let w = report.workloads.iter().find(|w| w.name == *workload)?;
            let m = w
                .metrics
                .iter()
                .find(|m| m.metric.name == *metric && m.metric.connections.is_none())?;
            let ratios: Vec<Option<f64>> = m.values.iter().map(|c| c.ratio).collect();
            ratios
                .iter()
                .skip(1)
                .any(Option::is_some)
                .then(|| Headline {
                    label: format!("{workload} {}", metric_label(&m.metric)),
                    ratios,
                })
        })
        .collect()
}

/// A warning for reports made by a debug build, whose client-side
/// overhead (the `mysql` crate unoptimized) inflates every latency.
pub fn build_warning(report: &Report) -> Option<&'static str> {
    (report.build == "debug").then_some(
        "this torpor-bench is a debug build: client overhead inflates every figure \
         (build with --release for figures worth quoting)",
    )
}

/// `load 0.52 → 1.10` (1-minute averages), or nothing when unknown.
pub fn load_text(host: &Host) -> Option<String> {
    let start = host.load_start?[0];
    Some(match host.load_end {
        Some(end) => format!("load {start:.2} → {:.2}", end[0]),
        None => format!("load {start:.2}"),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::cli::{Credentials, Outputs, ProgressMode, SpawnPlan};
    use crate::runner::TargetRecord;
    use crate::stats::Figure;
    use crate::workloads::{Sample, WorkloadKind};

    fn target(name: &str, port: u16, origin: Origin) -> Target {
        Target {
            name: name.into(),
            host: "127.0.0.1".into(),
            port,
            pid: Some(4242),
            origin,
            admin: None,
            tls_ca: None,
        }
    }

    fn settings() -> Settings {
        Settings {
            names: Vec::new(),
            targets: Vec::new(),
            pids: Vec::new(),
            credentials: Credentials {
                user: "bench".into(),
                password: "secret".into(),
                database: "test".into(),
            },
            rounds: 3,
            duration: Duration::from_secs(1),
            warmup: Duration::ZERO,
            workloads: vec![
                WorkloadKind::PointSelect,
                WorkloadKind::Throughput,
                WorkloadKind::WakeAfterPark,
            ],
            connections: vec![1, 16],
            cpu_connections: 16,
            idle_connections: 10,
            sysbench_table_size: 100,
            sysbench_tables: 1,
            spawn: SpawnPlan::default(),
            serverless: Default::default(),
            multiplex: Default::default(),
            autoscale: Default::default(),
            outputs: Outputs::default(),
            progress: ProgressMode::Off,
        }
    }

    fn latency_sample(base_micros: u64) -> Sample {
        let mut h = LatencyHistogram::new();
        for i in 0..1000 {
            h.record(Duration::from_micros(base_micros + i % 50));
        }
        let mut figures = h.figures();
        figures.push(Figure {
            metric: Metric::rate("qps"),
            value: 1e6 / base_micros as f64,
        });
        Sample {
            figures,
            histogram: Some(h),
            notes: Vec::new(),
        }
    }

    fn throughput_sample(scale: f64) -> Sample {
        let figures = [1, 16]
            .into_iter()
            .flat_map(|c| {
                [
                    Figure {
                        metric: Metric::rate("qps").at_connections(c),
                        value: scale * f64::from(c).sqrt() * 1000.0,
                    },
                    Figure {
                        metric: Metric::latency("p99").at_connections(c),
                        value: 100.0 * f64::from(c) / scale,
                    },
                ]
            })
            .collect();
        Sample {
            figures,
            histogram: None,
            notes: Vec::new(),
        }
    }

    /// A small report with two targets, one failing throughput, and a
    /// serverless workload not available anywhere.
    pub(crate) fn sample_report() -> Report {
        let targets = vec![
            target("direct", 3306, Origin::SpawnedMariadb),
            target("haproxy", 40001, Origin::SpawnedHaproxy),
        ];
        let records = vec![
            WorkloadRecord {
                kind: WorkloadKind::PointSelect,
                targets: vec![
                    TargetRecord {
                        samples: vec![latency_sample(60), latency_sample(62), latency_sample(58)],
                        status: Status::Measured,
                    },
                    TargetRecord {
                        samples: vec![
                            latency_sample(90),
                            Sample {
                                notes: vec!["1 query error: gone\naway".into()],
                                ..latency_sample(95)
                            },
                            latency_sample(85),
                        ],
                        status: Status::Measured,
                    },
                ],
            },
            WorkloadRecord {
                kind: WorkloadKind::Throughput,
                targets: vec![
                    TargetRecord {
                        samples: vec![throughput_sample(1.0), throughput_sample(1.1)],
                        status: Status::Measured,
                    },
                    TargetRecord {
                        samples: vec![throughput_sample(0.8)],
                        status: Status::Failed("connecting to haproxy: refused".into()),
                    },
                ],
            },
            WorkloadRecord {
                kind: WorkloadKind::WakeAfterPark,
                targets: vec![
                    TargetRecord {
                        samples: Vec::new(),
                        status: Status::NotAvailable("not a Torpor target".into()),
                    },
                    TargetRecord {
                        samples: Vec::new(),
                        status: Status::NotAvailable("not a Torpor target".into()),
                    },
                ],
            },
        ];
        Report::build(
            &settings(),
            &targets,
            &records,
            Timing {
                started: SystemTime::UNIX_EPOCH,
                finished: SystemTime::UNIX_EPOCH + Duration::from_secs(90),
                load_start: Some([0.5, 0.4, 0.3]),
                load_end: None,
                interrupted: false,
            },
        )
    }

    #[test]
    fn medians_spreads_and_ratios_per_metric() {
        let report = sample_report();
        let point = &report.workloads[0];
        let qps = point
            .metrics
            .iter()
            .find(|m| m.metric.name == "qps")
            .expect("qps metric");
        let direct = &qps.values[0];
        let haproxy = &qps.values[1];
        assert_eq!(direct.rounds.len(), 3);
        assert_eq!(direct.median, Some(1e6 / 60.0));
        assert_eq!(direct.min, Some(1e6 / 62.0));
        assert_eq!(direct.max, Some(1e6 / 58.0));
        assert_eq!(direct.ratio, Some(1.0));
        let expected = (1e6 / 90.0) / (1e6 / 60.0);
        assert!((haproxy.ratio.expect("ratio") - expected).abs() < 1e-12);
        let names: Vec<_> = point
            .metrics
            .iter()
            .map(|m| m.metric.name.as_str())
            .collect();
        assert_eq!(names, ["p50", "p90", "p99", "p99.9", "max", "qps"]);
        assert_eq!(point.cdf.len(), 2);
    }

    #[test]
    fn statuses_carry_reasons() {
        let report = sample_report();
        let throughput = &report.workloads[1];
        assert_eq!(throughput.targets[1].status, "failed");
        assert_eq!(throughput.targets[1].rounds, 1);
        let park = &report.workloads[2];
        assert!(park.metrics.is_empty());
        assert!(park.targets.iter().all(|t| t.status == "not_available"));
        assert_eq!(
            park.targets[0].detail.as_deref(),
            Some("not a Torpor target")
        );
    }

    #[test]
    fn sample_notes_are_kept_per_round_and_listed_first() {
        let report = sample_report();
        let point = &report.workloads[0];
        assert_eq!(
            point.targets[1].notes,
            ["round 2: 1 query error: gone\naway"]
        );
        assert!(point.targets[0].notes.is_empty());
        assert_eq!(notes(point), ["haproxy: round 2: 1 query error: gone away"]);
        let throughput = &report.workloads[1];
        assert_eq!(
            notes(throughput),
            ["haproxy: failed after some rounds: connecting to haproxy: refused"]
        );
    }

    #[test]
    fn headlines_pick_the_known_figures_with_ratios() {
        let report = sample_report();
        let lines = headlines(&report);
        let labels: Vec<_> = lines.iter().map(|h| h.label.as_str()).collect();
        assert_eq!(labels, ["point-select p50 µs ↓", "point-select p99 µs ↓"]);
        assert_eq!(lines[0].ratios[0], Some(1.0));
        assert!(lines[0].ratios[1].is_some_and(|r| r > 1.0));
    }

    #[test]
    fn numbers_are_formatted_without_noise() {
        assert_eq!(format_number(61.234), "61.2");
        assert_eq!(format_number(12345.6), "12346");
        assert_eq!(format_number(1.234), "1.23");
        assert_eq!(format_number(0.01234), "0.012");
        assert_eq!(format_number(0.0), "0");
        assert_eq!(format_value(67.0, Unit::Count), "67");
        assert_eq!(format_value(2.5, Unit::Count), "2.50");
        assert_eq!(format_value(67.0, Unit::Micros), "67.0");
        assert_eq!(format_ratio(1.4234), "×1.42");
    }
}
