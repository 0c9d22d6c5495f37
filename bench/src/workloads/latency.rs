//! One connection, one operation at a time: the round trip a proxy adds
//! shows here undiluted. Each workload reports p50/p90/p99/p99.9/max of
//! its HDR histogram and the rate it reached.

use anyhow::Context;
use mysql::prelude::Queryable;

use super::{timed_loop, Ctx, Outcome, Sample, Timed};
use crate::client::{connect, RowPicker, TABLE};
use crate::stats::{Figure, Metric};
use crate::targets::Target;

/// `SELECT … WHERE id = N` as a text query.
pub fn point_select(ctx: &Ctx<'_>, target: &Target) -> anyhow::Result<Outcome> {
    let mut conn = connect(target, &ctx.settings.credentials)?;
    let mut rows = RowPicker::new(u64::from(target.port));
    let timed = timed_loop(ctx, ctx.settings.duration, || {
        let id = rows.next_id();
        let row: Option<(u32, u32, String)> = conn
            .query_first(format!("SELECT id, k, c FROM {TABLE} WHERE id = {id}"))
            .context("point select")?;
        row.with_context(|| format!("row {id} of {TABLE} is missing"))?;
        Ok(1)
    })?;
    Ok(latency_outcome(timed, "qps"))
}

/// The same select through a prepared statement: binary protocol, and the
/// statement prepared once per connection.
pub fn prepared_point_select(ctx: &Ctx<'_>, target: &Target) -> anyhow::Result<Outcome> {
    let mut conn = connect(target, &ctx.settings.credentials)?;
    let statement = conn
        .prep(format!("SELECT id, k, c FROM {TABLE} WHERE id = ?"))
        .context("preparing the point select")?;
    let mut rows = RowPicker::new(u64::from(target.port) + 1);
    let timed = timed_loop(ctx, ctx.settings.duration, || {
        let id = rows.next_id();
        let row: Option<(u32, u32, String)> = conn
            .exec_first(&statement, (id,))
            .context("prepared point select")?;
        row.with_context(|| format!("row {id} of {TABLE} is missing"))?;
        Ok(1)
    })?;
    Ok(latency_outcome(timed, "qps"))
}

/// `BEGIN; UPDATE one row; UPDATE another; COMMIT`: four round trips and a
/// commit, the shape of a small OLTP write.
pub fn write_txn(ctx: &Ctx<'_>, target: &Target) -> anyhow::Result<Outcome> {
    let mut conn = connect(target, &ctx.settings.credentials)?;
    let mut rows = RowPicker::new(u64::from(target.port) + 2);
    let timed = timed_loop(ctx, ctx.settings.duration, || {
        let (a, b) = (rows.next_id(), rows.next_id());
        conn.query_drop("BEGIN").context("BEGIN")?;
        conn.query_drop(format!("UPDATE {TABLE} SET k = k + 1 WHERE id = {a}"))
            .context("UPDATE")?;
        conn.query_drop(format!("UPDATE {TABLE} SET k = k + 1 WHERE id = {b}"))
            .context("UPDATE")?;
        conn.query_drop("COMMIT").context("COMMIT")?;
        Ok(1)
    })?;
    Ok(latency_outcome(timed, "tps"))
}

/// Percentiles, the rate (named `rate_name`), and the histogram for the
/// CDF chart.
fn latency_outcome(timed: Timed, rate_name: &str) -> Outcome {
    let mut figures = timed.histogram.figures();
    figures.push(Figure {
        metric: Metric::rate(rate_name),
        value: timed.rate(),
    });
    Outcome::Measured(Sample {
        figures,
        histogram: Some(timed.histogram),
        notes: Vec::new(),
    })
}
