//! How a service's size follows a stepped load, and what the load gets
//! out of it: the `autoscale` workload.
//!
//! The service starts at its smallest size with autoscaling on. Clients
//! then run idle → 1 client → 8 clients → idle ([`schedule`], lengths
//! from `--autoscale-phases`), point selects with a small write now and
//! then ([`load`]), while the admin API's `scaling` view is read every
//! 200 ms ([`timeline`]). The same loaded phases then run again with the
//! service held at its largest size (autoscaling off): the QPS the
//! autoscaled service gives up against a static one sized for the peak.
//! Afterwards it goes back to its smallest size with autoscaling on.
//!
//! Figures ([`figures`]): QPS per loaded phase for both runs and their
//! ratio, time from the overload to the first grow and to the largest
//! size, time from idle back to the start size, p99 and buffer pool hit
//! ratio per loaded phase and in the 10 s after the run's first grow
//! (hydration; [`table`] sizes the data), and errors (which must be 0).
//! The chart of allocated against used CPU and memory over time goes to
//! the SVG folder as `autoscale-<target>-timeline.svg` (the last
//! round's).

pub mod figures;
pub mod load;
pub mod schedule;
pub mod table;
pub mod timeline;

use std::time::Duration;

use anyhow::{bail, Context};
use mysql::prelude::Queryable;
use mysql::Conn;

use super::{active_service, Tally};
use crate::admin::{Admin, Reply};
use crate::client::connect;
use crate::report::timeline::Timeline;
use crate::stats::{Better, Figure, Metric, Unit};
use crate::targets::Target;
use crate::workloads::{Ctx, Outcome, Sample};
use figures::{Done, PoolReading};
use schedule::Schedule;
use timeline::{Point, Resize, Size, TraceRow};

/// Why the workload does not run on a service without autoscaling.
pub const NOT_AUTOSCALED: &str = "the service shows no size to scale (a static backend); \
     --spawn-torpor-autoscale starts one that autoscales";

/// The window after the first grow the hydration figures cover.
pub const AFTER_GROW: Duration = Duration::from_secs(10);

/// At most this many rows fit the smallest buffer pool many times over.
const SMALL_TABLE_ROWS: u32 = 100_000;

/// What the hydration figures compare, said in the report.
pub fn reload_note(reload_after_grow: bool) -> String {
    let how = if reload_after_grow {
        "with the reload (innodb_buffer_pool_load_now after each grow; \
         --autoscale-no-reload runs without it)"
    } else {
        "without the reload (--autoscale-no-reload: reload_after_grow = false)"
    };
    format!(
        "hydration {how}. The reload reads the page list of the last dump (taken at a \
         shrink, a suspend or a shutdown): round 1 starts from a fresh service with none; \
         later rounds start with a shrink from the largest size, whose dump holds the pages \
         the load read there"
    )
}

/// Runs the workload on `target`, whose service `admin` reaches.
pub fn run(ctx: &Ctx<'_>, target: &Target, admin: &Admin) -> anyhow::Result<Outcome> {
    let service = active_service(admin).context("bringing the service to active")?;
    let name = service.name.as_str();
    if admin.size(name)?.is_none() {
        return Ok(Outcome::NotAvailable(NOT_AUTOSCALED.to_string()));
    }
    let bounds = &ctx.settings.autoscale;
    let smallest = Size {
        cpus: bounds.min_cpus,
        memory_mib: bounds.min_memory_mib,
    };
    let largest = Size {
        cpus: bounds.max_cpus,
        memory_mib: bounds.max_memory_mib,
    };
    let mut conn = connect(target, &ctx.settings.credentials)?;
    // Filling millions of rows at the smallest size would take long and
    // make the policy grow before the run: fill at the largest.
    resize(admin, name, largest, false).context("the size to fill the table at")?;
    table::prepare(&mut conn, bounds.rows)?;
    let table_mib = table::size_mib(&mut conn)?;
    // Every round starts alike: smallest size, autoscaling on.
    resize(admin, name, smallest, true).context("the start size")?;

    let schedule = Schedule::stepped(bounds.phases);
    let mut points: Vec<Point> = Vec::new();
    let mut trace: Vec<TraceRow> = Vec::new();
    let mut resizes: Vec<Resize> = Vec::new();
    let mut pool: Vec<PoolReading> = Vec::new();
    let mut sampling = Tally::default();
    let ran = load::run(ctx, target, &schedule, bounds.rows, |at| {
        match admin.service_view(name) {
            Ok(view) => {
                points.push(timeline::point(&view, at));
                // Each of the autoscaler's samples once.
                if let Some(row) = TraceRow::of(&view) {
                    if trace.last().map(|r| r.sampled_unix_ms) != Some(row.sampled_unix_ms) {
                        trace.push(row);
                    }
                }
                timeline::merge(&mut resizes, timeline::resizes(&view));
            }
            Err(e) => sampling.add(format!("sampling the scaling view: {e:#}")),
        }
        match pool_reading(&mut conn, at) {
            Ok(reading) => pool.push(reading),
            Err(e) => sampling.add(format!("reading the buffer pool counters: {e:#}")),
        }
    })?;
    // Resizes applied after the last sample.
    timeline::merge(&mut resizes, timeline::resizes(&admin.service_view(name)?));

    // The same load on a service held at the largest size.
    resize(admin, name, largest, false).context("the static size")?;
    let loaded = schedule.loaded();
    let fixed = load::run(ctx, target, &loaded, bounds.rows, |_| {});
    // Back to the smallest with autoscaling on, whatever the static run
    // did, for what runs next.
    let restored = resize(admin, name, smallest, true);
    let fixed = fixed?;
    restored.context("back to the start size")?;

    let mut notes = Vec::new();
    if let Some(mib) = table_mib {
        notes.push(format!(
            "{}: {} rows, {mib:.0} MiB of data and index (InnoDB's estimate)",
            table::TABLE,
            bounds.rows
        ));
    }
    let figures = figures_of(
        &schedule, &ran, &fixed, &loaded, &resizes, &pool, smallest, &mut notes,
    );
    notes.extend(ran.errors.lines());
    notes.extend(
        fixed
            .errors
            .lines()
            .iter()
            .map(|l| format!("static run: {l}")),
    );
    notes.extend(sampling.lines());
    notes.extend(
        resizes
            .iter()
            .filter_map(|r| resize_line(r, ran.started_unix_ms)),
    );
    if let Some(dir) = &ctx.settings.outputs.svg_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(format!("autoscale-{}-timeline.svg", target.name));
        let chart = Timeline {
            title: format!(
                "autoscale on {}: {} to {}",
                target.name,
                smallest.text(),
                largest.text()
            ),
            points,
            qps: figures::per_second(&ran.done, schedule.total()),
            phases: schedule
                .starts()
                .into_iter()
                .zip(schedule.phases())
                .map(|(at, p)| (at.as_secs_f64(), p.name.clone()))
                .collect(),
            end_secs: schedule.total().as_secs_f64(),
        };
        crate::report::timeline::write(&chart, &path)?;
        notes.push(format!("timeline chart: {}", path.display()));
        // The raw usage, as the autoscaler's policy saw it.
        let path = dir.join(format!("autoscale-{}-trace.csv", target.name));
        let mut csv = String::from(TraceRow::HEADER);
        for row in &trace {
            csv.push('\n');
            csv.push_str(&row.csv(ran.started_unix_ms));
        }
        csv.push('\n');
        std::fs::write(&path, csv).with_context(|| format!("writing {}", path.display()))?;
        notes.push(format!("usage trace: {}", path.display()));
    }
    if bounds.rows <= SMALL_TABLE_ROWS {
        notes.push(format!(
            "{} rows fit any buffer pool: the hit ratio says nothing of hydration here \
             (--autoscale-rows 4000000 outgrows the smallest size's pool)",
            bounds.rows
        ));
    }
    notes.push(reload_note(bounds.reload_after_grow));
    Ok(Outcome::Measured(Sample {
        figures,
        histogram: None,
        notes,
    }))
}

/// Resizes the service `name` to `size` with autoscaling on or off.
fn resize(admin: &Admin, name: &str, size: Size, autoscale: bool) -> anyhow::Result<()> {
    match admin.resize_autoscaled(name, size.cpus, size.memory_mib, autoscale)? {
        Reply::Done(_) => Ok(()),
        Reply::Refused(reason) => bail!("resize to {} refused: {reason}", size.text()),
    }
}

/// InnoDB's buffer pool counters, read through the target.
fn pool_reading(conn: &mut Conn, at: Duration) -> anyhow::Result<PoolReading> {
    let rows: Vec<(String, String)> =
        conn.query("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_read%'")?;
    let value = |name: &str| -> anyhow::Result<u64> {
        let (_, text) = rows
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .with_context(|| format!("no {name} in SHOW GLOBAL STATUS"))?;
        text.parse()
            .with_context(|| format!("{name} = {text:?} is not a number"))
    };
    Ok(PoolReading {
        at,
        read_requests: value("Innodb_buffer_pool_read_requests")?,
        reads: value("Innodb_buffer_pool_reads")?,
    })
}

/// `+17.3 s: 0.5 CPU / 512 MiB → 1 CPU / 768 MiB (cpu_high, 140 ms)`.
fn resize_line(resize: &Resize, start_unix_ms: u64) -> Option<String> {
    let at = resize.offset(start_unix_ms)?;
    let why = resize.reason.as_deref().unwrap_or("operator");
    let took = resize
        .took_ms
        .map_or(String::new(), |ms| format!(", {ms} ms"));
    let error = resize
        .error
        .as_deref()
        .map_or(String::new(), |e| format!(", error: {e}"));
    Some(format!(
        "resize at +{:.1} s: {} → {} ({why}{took}{error})",
        at.as_secs_f64(),
        resize.from.text(),
        resize.to.text()
    ))
}

fn figure(name: &str, unit: Unit, better: Better, value: f64) -> Figure {
    Figure {
        metric: Metric::new(name, unit, better),
        value,
    }
}

/// Every figure of a run; what cannot be figured is said in `notes`.
#[allow(clippy::too_many_arguments)]
fn figures_of(
    schedule: &Schedule,
    ran: &load::Ran,
    fixed: &load::Ran,
    loaded: &Schedule,
    resizes: &[Resize],
    pool: &[PoolReading],
    start: Size,
    notes: &mut Vec<String>,
) -> Vec<Figure> {
    let mut out = Vec::new();
    let qps = figures::qps_per_phase(schedule, &ran.done);
    let fixed_qps = figures::qps_per_phase(loaded, &fixed.done);
    let phase_p99 = |done: &[Done], schedule: &Schedule, index: usize| -> Option<f64> {
        let from = *schedule.starts().get(index)?;
        let to = from + schedule.phases().get(index)?.length;
        figures::p99_between(done, from, to)
    };
    for (i, phase) in schedule.phases().iter().enumerate() {
        if phase.clients == 0 {
            continue;
        }
        let Some(&rate) = qps.get(i) else { continue };
        out.push(figure(
            &format!("qps {}", phase.name),
            Unit::PerSecond,
            Better::Higher,
            rate,
        ));
        if let Some(p99) = phase_p99(&ran.done, schedule, i) {
            out.push(figure(
                &format!("p99 {}", phase.name),
                Unit::Micros,
                Better::Lower,
                p99,
            ));
        }
        let from = schedule.starts().get(i).copied().unwrap_or_default();
        if let Some(hit) = figures::hit_ratio_between(pool, from, from + phase.length) {
            out.push(figure(
                &format!("hit ratio {}", phase.name),
                Unit::Percent,
                Better::Higher,
                hit,
            ));
        }
        let fixed_index = loaded.phases().iter().position(|p| p == phase);
        if let Some(j) = fixed_index {
            if let Some(&fixed_rate) = fixed_qps.get(j) {
                out.push(figure(
                    &format!("static qps {}", phase.name),
                    Unit::PerSecond,
                    Better::Higher,
                    fixed_rate,
                ));
                if let Some(r) = figures::ratio(rate, fixed_rate) {
                    out.push(figure(
                        &format!("qps / static {}", phase.name),
                        Unit::Ratio,
                        Better::Higher,
                        r,
                    ));
                }
            }
            if let Some(p99) = phase_p99(&fixed.done, loaded, j) {
                out.push(figure(
                    &format!("static p99 {}", phase.name),
                    Unit::Micros,
                    Better::Lower,
                    p99,
                ));
            }
        }
    }
    let start_ms = ran.started_unix_ms;
    let first_grow = figures::first_grow_after_overload(schedule, resizes, start_ms);
    match first_grow {
        Some(after) => out.push(figure(
            "overload → first grow",
            Unit::Seconds,
            Better::Lower,
            after.as_secs_f64(),
        )),
        None => notes.push(
            "no grow during or after the overload (grown already in the 1-client phase, \
             or the policy never saw the CPU near its limit)"
                .to_string(),
        ),
    }
    if let Some((after, size)) = figures::largest_after_overload(schedule, resizes, start_ms) {
        out.push(figure(
            "overload → largest size",
            Unit::Seconds,
            Better::Lower,
            after.as_secs_f64(),
        ));
        out.push(figure(
            "largest CPUs",
            Unit::Count,
            Better::Higher,
            size.cpus,
        ));
    }
    match figures::back_to_start_after_idle(schedule, resizes, start_ms, start) {
        Some(after) => out.push(figure(
            "idle → start size",
            Unit::Seconds,
            Better::Lower,
            after.as_secs_f64(),
        )),
        None => {
            let idle = schedule.final_idle_start().unwrap_or_default();
            let then = figures::size_at(resizes, start_ms, idle, start);
            let grew = figures::first_grow(resizes, start_ms).is_some();
            notes.push(if !grew {
                "never grew, so nothing to shrink back".to_string()
            } else if then == start {
                format!(
                    "already at {} when the idle phase began: shrunk during the load \
                     (see the resizes), so no time back down",
                    start.text()
                )
            } else {
                format!("not back at {} by the end of the idle phase", start.text())
            });
        }
    }
    let mine: Vec<&Resize> = resizes
        .iter()
        .filter(|r| r.by_policy() && r.offset(start_ms).is_some())
        .collect();
    out.push(figure(
        "grows",
        Unit::Count,
        Better::Lower,
        mine.iter().filter(|r| r.grows()).count() as f64,
    ));
    out.push(figure(
        "shrinks",
        Unit::Count,
        Better::Lower,
        mine.iter().filter(|r| r.shrinks()).count() as f64,
    ));
    // Hydration: the 10 s after the run's first grow, in whichever phase.
    if let Some(grow) = figures::first_grow(resizes, start_ms) {
        if let Some(p99) = figures::p99_between(&ran.done, grow, grow + AFTER_GROW) {
            out.push(figure(
                "p99 10 s after grow",
                Unit::Micros,
                Better::Lower,
                p99,
            ));
        }
        if let Some(hit) = figures::hit_ratio_between(pool, grow, grow + AFTER_GROW) {
            out.push(figure(
                "hit ratio 10 s after grow",
                Unit::Percent,
                Better::Higher,
                hit,
            ));
        }
    }
    out.push(figure(
        "errors",
        Unit::Count,
        Better::Lower,
        f64::from(ran.errors.total() + fixed.errors.total()),
    ));
    out
}
