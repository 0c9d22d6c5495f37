//! A large result: every row of the suite's table (10k rows, about
//! 1.7 MB) in one text-protocol query, streamed row by row. It shows how
//! well a proxy forwards bulk data: MB/s of row data, and the latency of
//! the whole read.

use anyhow::Context;
use mysql::prelude::Queryable;
use mysql::Value;

use super::{timed_loop, Ctx, Outcome, Sample};
use crate::client::{connect, ROWS, TABLE};
use crate::stats::{Better, Figure, Metric, Unit};
use crate::targets::Target;

/// Reads the whole table repeatedly for the round's duration.
pub fn run(ctx: &Ctx<'_>, target: &Target) -> anyhow::Result<Outcome> {
    let mut conn = connect(target, &ctx.settings.credentials)?;
    let query = format!("SELECT id, k, c, pad FROM {TABLE}");
    let timed = timed_loop(ctx, ctx.settings.duration, || {
        let mut bytes = 0u64;
        let mut rows = 0u32;
        for row in conn.query_iter(&query).context("large select")? {
            let row = row.context("reading a row")?;
            rows += 1;
            // Row data as the client library received it: the same for
            // every target, so MB/s compares paths, not encodings.
            bytes += (0..row.len())
                .filter_map(|i| row.as_ref(i))
                .map(|value| match value {
                    Value::Bytes(b) => b.len() as u64,
                    Value::NULL => 0,
                    _ => 8,
                })
                .sum::<u64>();
        }
        anyhow::ensure!(
            rows == ROWS,
            "expected {ROWS} rows from {TABLE}, got {rows}"
        );
        Ok(bytes)
    })?;
    let seconds = timed.elapsed.as_secs_f64().max(1e-9);
    let mut figures = vec![Figure {
        metric: Metric::new("throughput", Unit::MegabytesPerSecond, Better::Higher),
        value: timed.units as f64 / 1e6 / seconds,
    }];
    figures.extend(
        timed
            .histogram
            .figures()
            .into_iter()
            .filter(|f| f.metric.name == "p50" || f.metric.name == "p99"),
    );
    Ok(Outcome::Measured(Sample {
        figures,
        histogram: None,
        notes: Vec::new(),
    }))
}
