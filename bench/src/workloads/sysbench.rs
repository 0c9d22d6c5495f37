//! sysbench's `oltp_point_select` (1 thread: p50/p95/p99 from its
//! histogram, QPS) and `oltp_read_only` (16 threads: QPS), each with the
//! CPU the target's process spent per query when its pid is known.

use std::time::Duration;

use super::{Ctx, Outcome, Sample};
use crate::procfs;
use crate::stats::{Better, Figure, Metric, Unit};
use crate::sysbench::{parse, percentile, Invocation};
use crate::targets::Target;

/// `oltp_point_select`, one thread.
pub fn point_select(ctx: &Ctx<'_>, target: &Target, ps_disabled: bool) -> anyhow::Result<Outcome> {
    run(ctx, target, "oltp_point_select", 1, ps_disabled, true)
}

/// `oltp_read_only`, sixteen threads.
pub fn read_only(ctx: &Ctx<'_>, target: &Target, ps_disabled: bool) -> anyhow::Result<Outcome> {
    run(ctx, target, "oltp_read_only", 16, ps_disabled, false)
}

/// Whole seconds for sysbench's `--time`, never zero for a nonzero span.
fn whole_seconds(span: Duration) -> u64 {
    span.as_secs() + u64::from(span.subsec_nanos() > 0)
}

fn run(
    ctx: &Ctx<'_>,
    target: &Target,
    test: &'static str,
    threads: u32,
    ps_disabled: bool,
    latency: bool,
) -> anyhow::Result<Outcome> {
    let invocation = Invocation {
        test,
        action: "run",
        threads,
        seconds: whole_seconds(ctx.settings.duration).max(1),
        warmup_seconds: whole_seconds(ctx.settings.warmup),
        tables: ctx.settings.sysbench_tables,
        table_size: ctx.settings.sysbench_table_size,
        ps_disabled,
        histogram: latency,
    };
    // CPU is read around the whole sysbench process; connection setup is
    // included, a slight overestimate that is the same for every target.
    let cpu_before = target.pid.map(procfs::cpu_times).transpose()?;
    let output = invocation.execute(target, &ctx.settings.credentials, ctx.stop)?;
    let cpu_after = target.pid.map(procfs::cpu_times).transpose()?;
    let summary = parse(&output)?;
    let mut figures = Vec::new();
    if latency {
        for (name, p) in [("p50", 50.0), ("p95", 95.0), ("p99", 99.0)] {
            let millis = percentile(&summary.histogram, p)
                .ok_or_else(|| anyhow::anyhow!("sysbench printed an empty latency histogram"))?;
            figures.push(Figure {
                metric: Metric::latency(name),
                value: millis * 1000.0,
            });
        }
    }
    figures.push(Figure {
        metric: Metric::rate("qps"),
        value: summary.qps,
    });
    if let (Some(before), Some(after)) = (cpu_before, cpu_after) {
        // The CPU covers the whole run, warm-up included, while sysbench
        // counts the measured queries only: scale the count up by time so
        // both cover the same span.
        let whole_run =
            (invocation.seconds + invocation.warmup_seconds) as f64 / invocation.seconds as f64;
        let queries = summary.queries.max(1) as f64 * whole_run;
        figures.push(Figure {
            metric: Metric::new("cpu", Unit::CpuMicrosPerQuery, Better::Lower),
            value: after.since(&before).total().as_secs_f64() * 1e6 / queries,
        });
    }
    Ok(Outcome::Measured(Sample {
        figures,
        histogram: None,
        notes: Vec::new(),
    }))
}
