//! The stall clients see while their service moves to a new backend: a
//! steady client runs point selects back to back and a writer updates
//! single rows, first for a steady second (the baseline of the same run),
//! then while the service — holding `--relocate-data-mib` of data in a
//! table of its own — is relocated through the admin API, up to three
//! times. Figures: the steady client's p50, p99 and max during the moves
//! and against its own steady p99, Torpor's own account of each move
//! (copy, catch-up, switch-over and its stall, total), and errors, which
//! must be zero: a relocation is invisible to clients but for a pause.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use mysql::prelude::Queryable;
use mysql::Conn;

use super::{
    active_service, point_select, prepare_table, stall_figures, steady_baseline, wake_row, Tally,
    WAKE_TABLE,
};
use crate::admin::Admin;
use crate::client::{connect, RowPicker};
use crate::stats::{Better, Figure, LatencyHistogram, Metric};
use crate::targets::Target;
use crate::workloads::{Ctx, Outcome, Sample};

/// Moves per run at most: each copies the whole service.
const MAX_MOVES: u32 = 3;

/// How long one move may take before the run gives up on it.
const MOVE_LIMIT: Duration = Duration::from_secs(600);

/// The table that gives the service its size.
const BULK_TABLE: &str = "torpor_bench_relocate_bulk";

/// What Torpor said of one move.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Move {
    copy_ms: f64,
    catch_up_ms: f64,
    switch_ms: f64,
    stall_ms: f64,
    total_ms: f64,
}

impl Move {
    /// Reads a finished move from the service's `relocation` view.
    fn from_view(view: &serde_json::Value) -> Move {
        let ms = |key: &str| view[key].as_f64().unwrap_or(0.0);
        Move {
            copy_ms: ms("copy_ms"),
            catch_up_ms: ms("catch_up_ms"),
            switch_ms: ms("switch_ms"),
            stall_ms: ms("stall_ms"),
            total_ms: ms("total_ms"),
        }
    }
}

/// The median of `values` (0 for none).
fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Fills [`BULK_TABLE`] until InnoDB counts at least `mib` MiB in it.
fn fill_bulk(conn: &mut Conn, mib: u64) -> anyhow::Result<()> {
    conn.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS {BULK_TABLE} (\
           id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, \
           pad CHAR(255) NOT NULL\
         ) ENGINE=InnoDB"
    ))
    .with_context(|| format!("creating {BULK_TABLE}"))?;
    let wanted = mib << 20;
    loop {
        // InnoDB's estimate, refreshed: what the copy moves is pages.
        conn.query_drop(format!("ANALYZE TABLE {BULK_TABLE}"))
            .with_context(|| format!("analyzing {BULK_TABLE}"))?;
        let size: Option<u64> = conn
            .query_first(format!(
                "SELECT data_length + index_length FROM information_schema.tables \
                 WHERE table_schema = DATABASE() AND table_name = '{BULK_TABLE}'"
            ))
            .with_context(|| format!("sizing {BULK_TABLE}"))?;
        if size.unwrap_or(0) >= wanted {
            return Ok(());
        }
        conn.query_drop(format!(
            "INSERT INTO {BULK_TABLE} (pad) SELECT REPEAT('r', 255) FROM seq_1_to_100000"
        ))
        .with_context(|| format!("filling {BULK_TABLE}"))?;
    }
}

/// Moves the service once and waits for the move to end; Torpor's
/// account of it.
fn relocate_once(admin: &Admin, service: &str) -> anyhow::Result<Move> {
    if let Err(reason) = admin.relocate(service)? {
        bail!("relocate refused: {reason}");
    }
    let deadline = Instant::now() + MOVE_LIMIT;
    loop {
        let view = admin.relocation(service)?;
        match view["phase"].as_str() {
            Some("moved") => return Ok(Move::from_view(&view)),
            Some("failed") => bail!("the relocation failed: {}", view["error"]),
            _ if Instant::now() > deadline => bail!("the relocation took over {MOVE_LIMIT:?}"),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Runs the workload with up to `cycles` moves.
pub fn run(ctx: &Ctx<'_>, target: &Target, admin: &Admin, cycles: u32) -> anyhow::Result<Outcome> {
    let service = active_service(admin).context("bringing the service to active")?;
    let mut conn = connect(target, &ctx.settings.credentials)?;
    prepare_table(&mut conn)?;
    let data_mib = ctx.settings.serverless.relocate_data_mib;
    fill_bulk(&mut conn, data_mib)?;
    let mut writer = connect(target, &ctx.settings.credentials)?;
    let mut rows = RowPicker::new(u64::from(target.port) + 13);
    let clock = ctx.clock;
    let mut during = LatencyHistogram::new();
    let mut errors = Tally::default();
    let steady = steady_baseline(ctx, &mut conn, &mut rows, "the moves", &mut errors);
    let done = AtomicBool::new(false);
    let moves = std::thread::scope(|scope| {
        let mover = scope.spawn(|| {
            let mut moves = Vec::new();
            let mut failures = Tally::default();
            for _ in 0..cycles.min(MAX_MOVES) {
                if ctx.stop.is_set() {
                    break;
                }
                match relocate_once(admin, &service.name) {
                    Ok(done) => moves.push(done),
                    Err(e) => failures.add(format!("{e:#}")),
                }
            }
            done.store(true, Ordering::Release);
            (moves, failures)
        });
        let write_errors = scope.spawn(|| {
            let mut errors = Tally::default();
            let mut ids = RowPicker::new(u64::from(target.port) + 17);
            while !done.load(Ordering::Acquire) && !ctx.stop.is_set() {
                let id = wake_row(&mut ids);
                if let Err(e) =
                    writer.query_drop(format!("UPDATE {WAKE_TABLE} SET v = v + 1 WHERE id = {id}"))
                {
                    errors.add(format!("writer: {e}"));
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            errors
        });
        while !done.load(Ordering::Acquire) && !ctx.stop.is_set() {
            let begun = clock.now();
            match point_select(&mut conn, wake_row(&mut rows)) {
                Ok(()) => during.record(clock.now().duration_since(begun)),
                Err(e) => errors.add(format!("during the moves: {e:#}")),
            }
        }
        (mover.join(), write_errors.join())
    });
    let ((moves, failures), write_errors) = match moves {
        (Ok(moves), Ok(write_errors)) => (moves, write_errors),
        _ => bail!("a thread of the workload panicked"),
    };
    let mut figures = stall_figures(&steady, &during);
    let phase = |name: &str, pick: fn(&Move) -> f64| Figure {
        // Torpor reports milliseconds; latency figures are microseconds.
        metric: Metric::latency(name),
        value: median(moves.iter().map(pick).collect()) * 1000.0,
    };
    if !moves.is_empty() {
        figures.push(phase("switch stall (median)", |m| m.stall_ms));
        figures.push(Figure {
            metric: Metric::latency("switch stall (max)"),
            value: moves.iter().map(|m| m.stall_ms).fold(0.0, f64::max) * 1000.0,
        });
        figures.push(phase("copy", |m| m.copy_ms));
        figures.push(phase("catch-up", |m| m.catch_up_ms));
        figures.push(phase("switch-over", |m| m.switch_ms));
        figures.push(phase("move total", |m| m.total_ms));
    }
    figures.push(Figure {
        metric: Metric::count("moves", Better::Higher),
        value: moves.len() as f64,
    });
    figures.push(Figure {
        metric: Metric::count("data MiB", Better::Higher),
        value: data_mib as f64,
    });
    figures.push(Figure {
        metric: Metric::count("errors", Better::Lower),
        value: f64::from(errors.total() + write_errors.total()),
    });
    let mut notes = errors.lines();
    notes.extend(write_errors.lines());
    notes.extend(failures.lines());
    Ok(Outcome::Measured(Sample {
        figures,
        histogram: Some(during),
        notes,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_move_is_read_from_torpors_view() {
        let view = serde_json::json!({
            "phase": "moved", "copy_ms": 2400, "catch_up_ms": 600,
            "switch_ms": 20, "stall_ms": 18, "total_ms": 3020
        });
        assert_eq!(
            Move::from_view(&view),
            Move {
                copy_ms: 2400.0,
                catch_up_ms: 600.0,
                switch_ms: 20.0,
                stall_ms: 18.0,
                total_ms: 3020.0
            }
        );
        assert_eq!(Move::from_view(&serde_json::json!(null)), Move::default());
    }

    #[test]
    fn the_median_is_the_middle_value() {
        assert_eq!(median(vec![]), 0.0);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![5.0]), 5.0);
    }
}
