//! How long a new database takes: each cycle creates a service through
//! the admin API (`POST /services`, the `process` driver, one account),
//! logs in as its account and runs `SELECT 1`, then deletes it with its
//! data. Figures: the time from the POST to the first answer (p50, p99,
//! max), the POST's own time, and errors (want 0). There is no warm pool
//! yet, so every cycle is the cold path: a datadir initialized and a
//! server started.

use std::time::{Duration, Instant};

use anyhow::Context;
use mysql::prelude::Queryable;
use serde_json::json;

use super::{active_service, Tally};
use crate::admin::Admin;
use crate::cli::Credentials;
use crate::client::connect;
use crate::stats::{Better, Figure, LatencyHistogram, Metric};
use crate::targets::Target;
use crate::workloads::{Ctx, Outcome, Sample};

/// How long a delete may be refused (its clients still closing).
const DELETE_LIMIT: Duration = Duration::from_secs(30);

/// Runs `cycles` creations.
pub fn run(ctx: &Ctx<'_>, target: &Target, admin: &Admin, cycles: u32) -> anyhow::Result<Outcome> {
    // The account of each new service logs in with the suite's password;
    // its hash comes from the running service's own MariaDB.
    let existing = active_service(admin).context("bringing the service to active")?;
    let mut conn = connect(target, &ctx.settings.credentials)?;
    let hash: String = conn
        .exec_first("SELECT PASSWORD(?)", (&ctx.settings.credentials.password,))?
        .with_context(|| format!("no password hash from {}", existing.name))?;
    drop(conn);

    let clock = ctx.clock;
    let mut first_answer = LatencyHistogram::new();
    let mut post = LatencyHistogram::new();
    let mut errors = Tally::default();
    for cycle in 0..cycles {
        if ctx.stop.is_set() {
            break;
        }
        let name = format!("bench-made-{}-{cycle}", std::process::id());
        let account = format!("made{}x{cycle}", std::process::id());
        let body = json!({
            "name": name,
            "driver": "process",
            "buffer_pool_mib": 32,
            "suspend_after_secs": 0,
            "accounts": [{"name": account, "password_hash": hash}],
        });
        let begun = clock.now();
        match admin.create_service(&body) {
            Ok(Ok(())) => post.record(clock.now().duration_since(begun)),
            Ok(Err(reason)) => {
                errors.add(format!("POST /services refused: {reason}"));
                continue;
            }
            Err(e) => {
                errors.add(format!("POST /services failed: {e:#}"));
                continue;
            }
        }
        let credentials = Credentials {
            user: account,
            password: ctx.settings.credentials.password.clone(),
            database: "test".to_string(),
        };
        match first_query(target, &credentials) {
            Ok(()) => first_answer.record(clock.now().duration_since(begun)),
            Err(e) => errors.add(format!("the first query: {e:#}")),
        }
        if let Err(reason) = delete(admin, &name) {
            errors.add(reason);
        }
    }
    let mut figures = Vec::new();
    if !first_answer.is_empty() {
        figures.push(Figure {
            metric: Metric::latency("POST to first answer p50"),
            value: first_answer.micros_at(50.0),
        });
        figures.push(Figure {
            metric: Metric::latency("POST to first answer p99"),
            value: first_answer.micros_at(99.0),
        });
        figures.push(Figure {
            metric: Metric::latency("POST to first answer max"),
            value: first_answer.micros_at(100.0),
        });
    }
    if !post.is_empty() {
        figures.push(Figure {
            metric: Metric::latency("POST call p50"),
            value: post.micros_at(50.0),
        });
    }
    figures.push(Figure {
        metric: Metric::count("services made", Better::Higher),
        value: first_answer.len() as f64,
    });
    figures.push(Figure {
        metric: Metric::count("errors", Better::Lower),
        value: f64::from(errors.total()),
    });
    Ok(Outcome::Measured(Sample {
        figures,
        histogram: Some(first_answer),
        notes: errors.lines(),
    }))
}

/// Logs in as the new service's account and runs `SELECT 1`: once,
/// since the login waits for the new server itself (a failure is an
/// error, not more latency).
fn first_query(target: &Target, credentials: &Credentials) -> anyhow::Result<()> {
    let mut conn = connect(target, credentials)?;
    let one: Option<u32> = conn.query_first("SELECT 1")?;
    anyhow::ensure!(one == Some(1), "SELECT 1 answered {one:?}");
    Ok(())
}

/// Deletes the service with its data, waiting out a 409 while its
/// connection closes.
fn delete(admin: &Admin, name: &str) -> Result<(), String> {
    let deadline = Instant::now() + DELETE_LIMIT;
    loop {
        match admin.delete_service(name) {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(reason)) if Instant::now() < deadline && reason.starts_with("409") => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(Err(reason)) => return Err(format!("DELETE {name} refused: {reason}")),
            Err(e) => return Err(format!("DELETE {name} failed: {e:#}")),
        }
    }
}
