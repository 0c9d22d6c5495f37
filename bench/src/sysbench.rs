//! sysbench: preparing its tables, running one test against a target, and
//! reading its report. Our acceptance figures are quoted in sysbench
//! terms, so these runs sit next to the suite's own workloads.
//!
//! Warm-up uses `--report-checkpoints=W`: sysbench prints a report at W
//! seconds and resets its counters (histogram included), so the final
//! report covers only the measured time. Percentiles come from the
//! `--histogram=on` table rather than sysbench's single `--percentile`.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use mysql::prelude::Queryable;

use crate::cli::Credentials;
use crate::interrupt::Stop;
use crate::targets::child::{require_program, tie_to_us};
use crate::targets::Target;

/// One sysbench invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    /// The test script, e.g. `oltp_point_select`.
    pub test: &'static str,
    /// The command: `prepare`, `run`, `cleanup`.
    pub action: &'static str,
    /// `--threads`.
    pub threads: u32,
    /// Measured seconds (`--time` is this plus the warm-up).
    pub seconds: u64,
    /// Warm-up seconds, reset away with a report checkpoint.
    pub warmup_seconds: u64,
    /// `--tables`.
    pub tables: u32,
    /// `--table-size`.
    pub table_size: u32,
    /// `--db-ps-mode=disable`.
    pub ps_disabled: bool,
    /// `--histogram=on`.
    pub histogram: bool,
}

/// `host` as a name that means TCP to client libraries: `localhost` is
/// their word for the default Unix socket.
fn tcp_host(host: &str) -> &str {
    if host == "localhost" {
        "127.0.0.1"
    } else {
        host
    }
}

impl Invocation {
    /// The arguments after `sysbench` for `target`.
    pub fn args(&self, target: &Target, credentials: &Credentials) -> Vec<String> {
        let mut args = vec![
            self.test.to_string(),
            "--db-driver=mysql".to_string(),
            // libmysqlclient takes `localhost` for "the default Unix
            // socket", which is the host's own MariaDB, not the target.
            format!("--mysql-host={}", tcp_host(&target.host)),
            format!("--mysql-port={}", target.port),
            format!("--mysql-user={}", credentials.user),
            format!("--mysql-password={}", credentials.password),
            format!("--mysql-db={}", credentials.database),
            format!("--tables={}", self.tables),
            format!("--table-size={}", self.table_size),
        ];
        if self.action == "run" {
            args.push(format!("--threads={}", self.threads));
            args.push(format!("--time={}", self.seconds + self.warmup_seconds));
            if self.warmup_seconds > 0 {
                args.push(format!("--report-checkpoints={}", self.warmup_seconds));
            }
            if self.histogram {
                args.push("--histogram=on".to_string());
            }
        }
        if self.ps_disabled {
            args.push("--db-ps-mode=disable".to_string());
        }
        args.push(self.action.to_string());
        args
    }

    /// Runs sysbench and returns its stdout; stops it when the user asks.
    pub fn execute(
        &self,
        target: &Target,
        credentials: &Credentials,
        stop: &Stop,
    ) -> anyhow::Result<String> {
        let program = require_program("sysbench", "sysbench")?;
        let args = self.args(target, credentials);
        let shown = redact(&args, &credentials.password);
        let mut command = Command::new(program);
        command
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        tie_to_us(&mut command);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting sysbench {shown}"))?;
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        // Generous: sysbench's own time plus setup; a stuck target must not
        // hold the suite forever.
        let limit = Duration::from_secs(self.seconds + self.warmup_seconds + 120);
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().context("waiting for sysbench")? {
                break status;
            }
            if stop.is_set() || started.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                if stop.is_set() {
                    bail!("interrupted");
                }
                bail!(
                    "sysbench {shown} did not finish within {}",
                    humantime::format_duration(limit)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = stdout.join().unwrap_or_default();
        let err = stderr.join().unwrap_or_default();
        if !status.success() {
            bail!(
                "sysbench {shown} failed ({status}):\n{}",
                last_lines(&format!("{out}\n{err}"), 12)
            );
        }
        Ok(out)
    }
}

/// Reads a child's pipe to the end on a thread, so neither pipe can fill
/// and block sysbench while we wait for it.
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        text
    })
}

fn redact(args: &[String], password: &str) -> String {
    args.iter()
        .map(|arg| {
            if arg.starts_with("--mysql-password=") && !password.is_empty() {
                "--mysql-password=…".to_string()
            } else {
                arg.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Makes sure `sbtest1..=tables` exist with `table_size` rows each in the
/// baseline, running `sysbench oltp_common cleanup` and `prepare` when not.
pub fn prepare(
    target: &Target,
    credentials: &Credentials,
    tables: u32,
    table_size: u32,
    stop: &Stop,
) -> anyhow::Result<bool> {
    if tables_ready(target, credentials, tables, table_size) {
        return Ok(false);
    }
    for action in ["cleanup", "prepare"] {
        Invocation {
            test: "oltp_common",
            action,
            threads: 1,
            seconds: 0,
            warmup_seconds: 0,
            tables,
            table_size,
            ps_disabled: false,
            histogram: false,
        }
        .execute(target, credentials, stop)
        .with_context(|| format!("sysbench {action} on {}", target.name))?;
    }
    Ok(true)
}

/// Whether every sysbench table holds the expected row count.
fn tables_ready(target: &Target, credentials: &Credentials, tables: u32, table_size: u32) -> bool {
    let Ok(mut conn) = crate::client::connect(target, credentials) else {
        return false;
    };
    (1..=tables).all(|i| {
        let count: Result<Option<u64>, _> =
            conn.query_first(format!("SELECT COUNT(*) FROM sbtest{i}"));
        matches!(count, Ok(Some(n)) if n == u64::from(table_size))
    })
}

/// One row of sysbench's latency histogram.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// The bucket's latency, in milliseconds.
    pub millis: f64,
    /// Events that fell into it.
    pub count: u64,
}

/// The figures of sysbench's final report.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Queries in the measured time.
    pub queries: u64,
    /// Queries per second.
    pub qps: f64,
    /// Transactions (events) in the measured time.
    pub transactions: u64,
    /// Transactions per second.
    pub tps: f64,
    /// The latency histogram, when `--histogram=on`.
    pub histogram: Vec<Bucket>,
}

/// Reads the final report (the last one, after any checkpoint report).
pub fn parse(output: &str) -> anyhow::Result<Summary> {
    let start = output
        .rfind("SQL statistics:")
        .context("sysbench printed no \"SQL statistics\" report")?;
    let report = &output[start..];
    let (queries, qps) = counter(report, "queries:")?;
    let (transactions, tps) = counter(report, "transactions:")?;
    Ok(Summary {
        queries,
        qps,
        transactions,
        tps,
        histogram: parse_histogram(output)?,
    })
}

/// `    queries:   17843  (8918.05 per sec.)` → (17843, 8918.05).
fn counter(report: &str, label: &str) -> anyhow::Result<(u64, f64)> {
    let line = report
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with(label))
        .with_context(|| format!("no {label:?} line in sysbench's report"))?;
    let rest = &line[label.len()..];
    let mut words = rest.split_whitespace();
    let count = words
        .next()
        .and_then(|w| w.parse::<u64>().ok())
        .with_context(|| format!("unreadable count in {line:?}"))?;
    let rate = words
        .next()
        .map(|w| w.trim_start_matches('('))
        .and_then(|w| w.parse::<f64>().ok())
        .with_context(|| format!("unreadable rate in {line:?}"))?;
    Ok((count, rate))
}

/// The rows of the last `Latency histogram` table; empty when there is
/// none (`--histogram` off).
pub fn parse_histogram(output: &str) -> anyhow::Result<Vec<Bucket>> {
    let Some(start) = output.rfind("Latency histogram") else {
        return Ok(Vec::new());
    };
    let mut buckets = Vec::new();
    // Skip the title and the column header, then read `value |*** count`
    // rows until the first line that is not one.
    for line in output[start..].lines().skip(2) {
        let Some((value, rest)) = line.split_once('|') else {
            break;
        };
        let millis = value
            .trim()
            .parse::<f64>()
            .with_context(|| format!("unreadable histogram value in {line:?}"))?;
        let count = rest
            .split_whitespace()
            .last()
            .and_then(|w| w.parse::<u64>().ok())
            .with_context(|| format!("unreadable histogram count in {line:?}"))?;
        buckets.push(Bucket { millis, count });
    }
    Ok(buckets)
}

/// The latency (ms) at `percentile` (0..=100): the first bucket at which
/// the running count reaches that share of all events, as sysbench
/// computes its own percentile.
pub fn percentile(buckets: &[Bucket], percentile: f64) -> Option<f64> {
    let total: u64 = buckets.iter().map(|b| b.count).sum();
    if total == 0 {
        return None;
    }
    let wanted = ((percentile / 100.0) * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for bucket in buckets {
        seen += bucket.count;
        if seen >= wanted {
            return Some(bucket.millis);
        }
    }
    buckets.last().map(|b| b.millis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::Origin;

    /// A real `oltp_point_select --histogram=on --report-checkpoints=1`
    /// run against MariaDB 10.11: a checkpoint report, then the final one.
    const POINT_SELECT: &str =
        include_str!("../tests/fixtures/sysbench-point-select-checkpoint.txt");
    /// A real `oltp_read_only --threads=16 --db-ps-mode=disable` run.
    const READ_ONLY: &str = include_str!("../tests/fixtures/sysbench-read-only.txt");

    #[test]
    fn localhost_is_dialed_over_tcp_not_the_hosts_socket() {
        assert_eq!(tcp_host("localhost"), "127.0.0.1");
        assert_eq!(tcp_host("db.example"), "db.example");
    }

    #[test]
    fn final_report_wins_over_the_checkpoint() {
        let summary = parse(POINT_SELECT).expect("parses");
        assert_eq!(summary.queries, 17843);
        assert_eq!(summary.qps, 8918.05);
        assert_eq!(summary.transactions, 17843);
        let events: u64 = summary.histogram.iter().map(|b| b.count).sum();
        assert_eq!(events, 17843, "the histogram covers the measured time only");
    }

    #[test]
    fn percentiles_from_the_histogram_match_sysbench() {
        let summary = parse(POINT_SELECT).expect("parses");
        let h = &summary.histogram;
        assert_eq!(h.first().map(|b| b.millis), Some(0.053));
        assert_eq!(h.last().map(|b| b.millis), Some(2.069));
        // sysbench printed "95th percentile: 0.16" for this run.
        let p95 = percentile(h, 95.0).expect("events");
        assert!((p95 - 0.16).abs() < 0.005, "p95 {p95}");
        let p50 = percentile(h, 50.0).expect("events");
        let p99 = percentile(h, 99.0).expect("events");
        assert!(p50 <= p95 && p95 <= p99 && p99 <= 2.069);
        assert_eq!(percentile(h, 100.0), Some(2.069));
    }

    #[test]
    fn percentile_walks_the_counts() {
        let h = [
            Bucket {
                millis: 1.0,
                count: 50,
            },
            Bucket {
                millis: 2.0,
                count: 40,
            },
            Bucket {
                millis: 9.0,
                count: 10,
            },
        ];
        assert_eq!(percentile(&h, 50.0), Some(1.0));
        assert_eq!(percentile(&h, 51.0), Some(2.0));
        assert_eq!(percentile(&h, 90.0), Some(2.0));
        assert_eq!(percentile(&h, 99.0), Some(9.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn read_only_report_without_histogram() {
        let summary = parse(READ_ONLY).expect("parses");
        assert_eq!(summary.queries, 62640);
        assert_eq!(summary.qps, 31192.50);
        assert_eq!(summary.tps, 1949.53);
        assert!(summary.histogram.is_empty());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse("").is_err());
        assert!(parse("SQL statistics:\n    queries: lots\n").is_err());
        assert!(parse_histogram("Latency histogram\n value\n  0.1 | x\n").is_err());
    }

    #[test]
    fn arguments_follow_sysbench_conventions() {
        let target = Target {
            name: "direct".into(),
            host: "127.0.0.1".into(),
            port: 3306,
            pid: None,
            origin: Origin::Given,
            admin: None,
            tls_ca: None,
        };
        let credentials = Credentials {
            user: "bench".into(),
            password: "pw".into(),
            database: "test".into(),
        };
        let run = Invocation {
            test: "oltp_point_select",
            action: "run",
            threads: 1,
            seconds: 3,
            warmup_seconds: 1,
            tables: 4,
            table_size: 10_000,
            ps_disabled: true,
            histogram: true,
        };
        let args = run.args(&target, &credentials);
        assert_eq!(args.first().map(String::as_str), Some("oltp_point_select"));
        assert_eq!(args.last().map(String::as_str), Some("run"));
        for expected in [
            "--db-driver=mysql",
            "--mysql-host=127.0.0.1",
            "--mysql-port=3306",
            "--mysql-user=bench",
            "--mysql-password=pw",
            "--mysql-db=test",
            "--threads=1",
            "--time=4",
            "--report-checkpoints=1",
            "--histogram=on",
            "--db-ps-mode=disable",
            "--tables=4",
            "--table-size=10000",
        ] {
            assert!(
                args.iter().any(|a| a == expected),
                "{expected} missing from {args:?}"
            );
        }
        assert!(!redact(&args, "pw").contains("=pw"));
    }
}
