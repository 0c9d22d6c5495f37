//! Connections themselves: what a new one costs (connect, authenticate,
//! first query) and what an idle one costs the target's process in
//! memory. A proxy that terminates handshakes itself shows its hand here.

use std::time::Duration;

use anyhow::Context;
use mysql::prelude::Queryable;
use mysql::Conn;

use super::{Ctx, Outcome, Sample};
use crate::client::opts;
use crate::procfs;
use crate::stats::{Better, Figure, LatencyHistogram, Metric, Unit};
use crate::targets::Target;

/// At most one new connection per this interval: a tight connect loop
/// would measure the kernel's TIME_WAIT handling more than the target.
const CONNECT_PACE: Duration = Duration::from_millis(2);

/// How long held connections settle before memory is read: lazily
/// allocated buffers and thread stacks show up in RSS only once touched.
const SETTLE: Duration = Duration::from_millis(500);

/// Connect + authenticate + `SELECT 1`, a fresh connection each time.
pub fn setup(ctx: &Ctx<'_>, target: &Target) -> anyhow::Result<Outcome> {
    let options = opts(target, &ctx.settings.credentials);
    let clock = ctx.clock;
    let connect_once = || -> anyhow::Result<Duration> {
        let started = clock.now();
        let mut conn = Conn::new(options.clone()).context("connecting")?;
        let one: Option<u8> = conn.query_first("SELECT 1").context("first query")?;
        let took = clock.now().duration_since(started);
        anyhow::ensure!(one == Some(1), "SELECT 1 returned {one:?}");
        // Closing (COM_QUIT and the socket) happens here, outside the time.
        drop(conn);
        Ok(took)
    };
    let paced = |took: Duration| {
        if took < CONNECT_PACE {
            std::thread::sleep(CONNECT_PACE - took);
        }
    };
    let warm_until = clock.now() + ctx.settings.warmup;
    while clock.now() < warm_until && !ctx.stop.is_set() {
        paced(connect_once()?);
    }
    let mut histogram = LatencyHistogram::new();
    let start = clock.now();
    let end = start + ctx.settings.duration;
    while clock.now() < end && !ctx.stop.is_set() {
        let took = connect_once()?;
        histogram.record(took);
        paced(took);
    }
    let mut figures = histogram.figures();
    figures.retain(|f| f.metric.name != "p99.9");
    Ok(Outcome::Measured(Sample {
        figures,
        histogram: Some(histogram),
        notes: Vec::new(),
    }))
}

/// Resident memory of the target's process per idle connection: RSS
/// before and after opening `--idle-connections` connections (each ran one
/// query, then sits idle), divided by their number.
pub fn idle(ctx: &Ctx<'_>, target: &Target) -> anyhow::Result<Outcome> {
    let Some(pid) = target.pid else {
        return Ok(Outcome::NotAvailable(
            "process id unknown (pass --pid NAME=PID)".to_string(),
        ));
    };
    let options = opts(target, &ctx.settings.credentials);
    let count = ctx.settings.idle_connections;
    std::thread::sleep(SETTLE);
    let before = procfs::rss_kib(pid)?;
    let mut held = Vec::new();
    for i in 0..count {
        if ctx.stop.is_set() {
            break;
        }
        let mut conn = Conn::new(options.clone())
            .with_context(|| format!("opening idle connection {}", i + 1))?;
        conn.query_drop("SELECT 1").context("first query")?;
        held.push(conn);
    }
    std::thread::sleep(SETTLE);
    let after = procfs::rss_kib(pid)?;
    // Every connection must still be there: memory of connections the
    // target dropped would mean nothing.
    for (i, conn) in held.iter_mut().enumerate() {
        conn.ping()
            .with_context(|| format!("idle connection {} was dropped", i + 1))?;
    }
    let per_connection = after.saturating_sub(before) as f64 / held.len().max(1) as f64;
    let mib = |kib: u64| kib as f64 / 1024.0;
    Ok(Outcome::Measured(Sample {
        figures: vec![
            Figure {
                metric: Metric::new("memory", Unit::KibPerConnection, Better::Lower),
                value: per_connection,
            },
            Figure {
                metric: Metric::new("rss before", Unit::Mebibytes, Better::Lower),
                value: mib(before),
            },
        ],
        histogram: None,
        notes: Vec::new(),
    }))
}
