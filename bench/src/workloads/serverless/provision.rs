//! How long a new database takes: each cycle creates a service through
//! the admin API (`POST /services`, one account, the driver of the
//! target's own service: `process` on `torpor-serverless`, `docker` on
//! `torpor-autoscale`), logs in as its account and runs `SELECT 1`, then
//! deletes it with its data. Figures: the time from the POST to the
//! first answer (p50, p99, max), the POST's own time, and errors (want
//! 0), for each path:
//!
//! - `warm`: Torpor has a local warm pool of that driver (the suite's
//!   Torpors have one of 1) and the cycle waits until it holds a ready
//!   server, which the new service takes over;
//! - `cold`: a datadir initialized and a server started. With a warm
//!   pool, the cycle's second service is made at once after the first,
//!   before the pool has its replacement (a burst that drains the pool);
//!   without one, every service is cold.

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
    let driver = existing.driver.as_str();
    if driver != "process" && driver != "docker" {
        return Ok(Outcome::NotAvailable(format!(
            "its service {} is {driver}: services are created with the process or docker driver",
            existing.name
        )));
    }

    let clock = ctx.clock;
    let mut paths = [Path::new("warm"), Path::new("cold")];
    let mut errors = Tally::default();
    let pooled = admin.warm_instances(driver)?.is_some();
    for cycle in 0..cycles {
        if ctx.stop.is_set() {
            break;
        }
        if pooled {
            if let Err(e) = wait_for_warm(admin, driver, ctx) {
                errors.add(format!("the warm pool: {e:#}"));
                break;
            }
        }
        let mut made_now = Vec::new();
        for made in 0..if pooled { 2 } else { 1 } {
            let warm = pooled && admin.warm_instances(driver)?.unwrap_or(0) > 0;
            let path = &mut paths[usize::from(!warm)];
            let name = format!("bench-made-{}-{cycle}-{made}", std::process::id());
            let account = format!("made{}x{cycle}x{made}", std::process::id());
            let mut body = json!({
                "name": name,
                "driver": driver,
                "buffer_pool_mib": 32,
                "suspend_after_secs": 0,
                "accounts": [{"name": account, "password_hash": hash}],
            });
            if driver == "docker" {
                // The warm pool's image, which a service must ask for to
                // take one of its containers.
                body["image"] = json!(crate::targets::autoscale::image());
            }
            let begun = clock.now();
            match admin.create_service(&body) {
                Ok(Ok(())) => path.post.record(clock.now().duration_since(begun)),
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
                Ok(()) => path.first_answer.record(clock.now().duration_since(begun)),
                Err(e) => errors.add(format!("the first query: {e:#}")),
            }
            made_now.push(name);
        }
        // Deleted once both are made: a delete between them would give
        // the pool time to boot the replacement.
        for name in made_now {
            if let Err(reason) = delete(admin, &name) {
                errors.add(reason);
            }
        }
    }
    let mut figures = Vec::new();
    let mut made = 0;
    for path in &paths {
        made += path.first_answer.len();
        path.figures(&mut figures);
    }
    figures.push(Figure {
        metric: Metric::count("services made", Better::Higher),
        value: made as f64,
    });
    figures.push(Figure {
        metric: Metric::count("errors", Better::Lower),
        value: f64::from(errors.total()),
    });
    let [warm, cold] = paths;
    let histogram = if warm.first_answer.is_empty() {
        cold.first_answer
    } else {
        warm.first_answer
    };
    Ok(Outcome::Measured(Sample {
        figures,
        histogram: Some(histogram),
        notes: errors.lines(),
    }))
}

/// One path's times (see the module's text).
struct Path {
    name: &'static str,
    first_answer: LatencyHistogram,
    post: LatencyHistogram,
}

impl Path {
    fn new(name: &'static str) -> Path {
        Path {
            name,
            first_answer: LatencyHistogram::new(),
            post: LatencyHistogram::new(),
        }
    }

    /// Its figures, when it was taken at all.
    fn figures(&self, figures: &mut Vec<Figure>) {
        if self.first_answer.is_empty() {
            return;
        }
        for (label, quantile) in [("p50", 50.0), ("p99", 99.0), ("max", 100.0)] {
            figures.push(Figure {
                metric: Metric::latency(&format!("{}: POST to first answer {label}", self.name)),
                value: self.first_answer.micros_at(quantile),
            });
        }
        if !self.post.is_empty() {
            figures.push(Figure {
                metric: Metric::latency(&format!("{}: POST call p50", self.name)),
                value: self.post.micros_at(50.0),
            });
        }
    }
}

/// How long the warm pool may take to hold a ready server again.
const REFILL_LIMIT: Duration = Duration::from_secs(120);

/// Waits until the warm pool of `driver` holds a ready server.
fn wait_for_warm(admin: &Admin, driver: &str, ctx: &Ctx<'_>) -> anyhow::Result<()> {
    let deadline = Instant::now() + REFILL_LIMIT;
    while admin.warm_instances(driver)?.unwrap_or(0) == 0 {
        anyhow::ensure!(!ctx.stop.is_set(), "interrupted");
        anyhow::ensure!(
            Instant::now() < deadline,
            "no ready server within {REFILL_LIMIT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
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
