//! The stall a steady client sees while its service is resized: one
//! client runs point selects back to back, first for a steady second
//! (the baseline of the same run), then while a driver thread resizes the
//! service up (twice its CPUs and memory) and back down through the admin
//! API, `--wake-cycles` times. Figures: the client's p50, p99 and max
//! during the resizes, its steady p99, their ratio, the resize call's
//! p50, and errors (which must be zero: a resize is invisible to
//! clients).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{bail, Context};

use super::{
    active_service, point_select, prepare_table, stall_figures, steady_baseline, wake_row, Tally,
};
use crate::admin::{Admin, Reply};
use crate::client::{connect, RowPicker};
use crate::stats::{Better, Figure, LatencyHistogram, Metric};
use crate::targets::Target;
use crate::workloads::{Ctx, Outcome, Sample};

/// Pause after each resize, so the client runs at each size.
const AT_EACH_SIZE: Duration = Duration::from_millis(300);

/// Runs the workload with `cycles` resizes up and down.
pub fn run(ctx: &Ctx<'_>, target: &Target, admin: &Admin, cycles: u32) -> anyhow::Result<Outcome> {
    let service = active_service(admin).context("bringing the service to active")?;
    let Some((cpus, memory_mib)) = admin.size(&service.name)? else {
        bail!("the service shows no size (a static backend cannot be resized)");
    };
    let mut conn = connect(target, &ctx.settings.credentials)?;
    prepare_table(&mut conn)?;
    let mut rows = RowPicker::new(u64::from(target.port) + 11);
    let clock = ctx.clock;
    let mut during = LatencyHistogram::new();
    let mut errors = Tally::default();
    let steady = steady_baseline(ctx, &mut conn, &mut rows, "the resizes", &mut errors);
    let done = AtomicBool::new(false);
    let calls = std::thread::scope(|scope| {
        let driver = scope.spawn(|| {
            let mut calls = LatencyHistogram::new();
            let mut refusals = Tally::default();
            let sizes = [(cpus * 2.0, memory_mib * 2), (cpus, memory_mib)];
            'cycles: for _ in 0..cycles {
                for (to_cpus, to_memory) in sizes {
                    if ctx.stop.is_set() {
                        break 'cycles;
                    }
                    let begun = clock.now();
                    match admin.resize(&service.name, to_cpus, to_memory) {
                        Ok(Reply::Done(_)) => calls.record(clock.now().duration_since(begun)),
                        Ok(Reply::Refused(reason)) => {
                            refusals.add(format!("resize refused: {reason}"))
                        }
                        Err(e) => refusals.add(format!("resize failed: {e:#}")),
                    }
                    std::thread::sleep(AT_EACH_SIZE);
                }
            }
            done.store(true, Ordering::Release);
            (calls, refusals)
        });
        while !done.load(Ordering::Acquire) && !ctx.stop.is_set() {
            let begun = clock.now();
            match point_select(&mut conn, wake_row(&mut rows)) {
                Ok(()) => during.record(clock.now().duration_since(begun)),
                Err(e) => errors.add(format!("during the resizes: {e:#}")),
            }
        }
        driver.join()
    });
    let (calls, refusals) = calls.map_err(|_| anyhow::anyhow!("the resize thread panicked"))?;
    let mut figures = stall_figures(&steady, &during);
    if !calls.is_empty() {
        figures.push(Figure {
            metric: Metric::latency("resize call p50"),
            value: calls.micros_at(50.0),
        });
    }
    figures.push(Figure {
        metric: Metric::count("resizes", Better::Higher),
        value: calls.len() as f64,
    });
    figures.push(Figure {
        metric: Metric::count("errors", Better::Lower),
        value: f64::from(errors.total()),
    });
    let mut notes = errors.lines();
    notes.extend(refusals.lines());
    Ok(Outcome::Measured(Sample {
        figures,
        histogram: Some(during),
        notes,
    }))
}
