//! sysbench, run as the tests run it: against an address, in a schema,
//! with uniform keys, failing on a non-zero exit or any error line, and
//! its closing counters read back.

use std::net::SocketAddr;
use std::process::Command;

use crate::{require_program, APP_PASSWORD, APP_USER};

/// Tables each run uses.
pub const TABLES: u64 = 4;
/// Rows in each table.
pub const TABLE_SIZE: u64 = 20_000;

/// The counters sysbench prints at the end of a run.
#[derive(Debug, Default)]
pub struct Summary {
    /// Reads.
    pub read: u64,
    /// Writes.
    pub write: u64,
    /// Other statements (BEGIN, COMMIT).
    pub other: u64,
    /// Transactions.
    pub transactions: u64,
    /// Every statement.
    pub queries: u64,
    /// Errors sysbench ignored.
    pub ignored_errors: u64,
    /// Reconnects.
    pub reconnects: u64,
}

/// The first number after `label` on the line that starts with it.
fn counter(output: &str, label: &str) -> u64 {
    let line = output
        .lines()
        .map(str::trim_start)
        .find(|line| line.starts_with(label))
        .unwrap_or_else(|| panic!("no '{label}' in sysbench's output:\n{output}"));
    line[label.len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after '{label}' in: {line}"))
}

/// The closing counters of a `run`'s output.
pub fn parse_summary(output: &str) -> Summary {
    Summary {
        read: counter(output, "read:"),
        write: counter(output, "write:"),
        other: counter(output, "other:"),
        transactions: counter(output, "transactions:"),
        queries: counter(output, "queries:"),
        ignored_errors: counter(output, "ignored errors:"),
        reconnects: counter(output, "reconnects:"),
    }
}

/// Runs `sysbench <test> <extra…> <command>` against `addr` in `schema`;
/// fails on a non-zero exit. Returns stdout.
pub fn sysbench(
    addr: SocketAddr,
    schema: &str,
    test: &str,
    extra: &[&str],
    command: &str,
) -> String {
    let program = require_program("sysbench", "sysbench");
    let output = Command::new(program)
        .arg(test)
        .arg("--db-driver=mysql")
        .arg(format!("--mysql-host={}", addr.ip()))
        .arg(format!("--mysql-port={}", addr.port()))
        .arg(format!("--mysql-user={APP_USER}"))
        .arg(format!("--mysql-password={APP_PASSWORD}"))
        .arg(format!("--mysql-db={schema}"))
        .arg(format!("--tables={TABLES}"))
        .arg(format!("--table-size={TABLE_SIZE}"))
        // Uniform keys: sysbench's default "special" distribution piles
        // onto a few hot rows, where InnoDB deadlocks (error 1213) are
        // the database's doing, not Torpor's.
        .arg("--rand-type=uniform")
        .args(extra)
        .arg(command)
        .output()
        .expect("sysbench runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "sysbench {test} {command} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    // sysbench reports errors it ignores or survives on stderr/stdout as
    // FATAL or "error" lines even when it exits 0.
    for line in stdout.lines().chain(stderr.lines()) {
        let lower = line.to_ascii_lowercase();
        assert!(
            !lower.contains("fatal")
                && !lower.contains("error:")
                && !lower.contains("returned error"),
            "sysbench {test} {command} reported: {line}\n{stdout}\n{stderr}"
        );
    }
    stdout
}
