//! Wake latency: on an open connection, a query (so the service is active
//! and the session clean), a suspend or park through the admin API, then
//! the first query timed from send to last row — or, for the connect
//! variant, a new connection's login and first query. One cycle per
//! recorded latency; `--wake-cycles` cycles per target and round.
//!
//! A failed query or a failed API call fails the run: the wake path must
//! work every time, and the report shows the error instead of a figure.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::{active_service, point_select, prepare_table, wake_row, Tally};
use crate::admin::{Action, Admin, Reply, Service};
use crate::client::{connect, RowPicker};
use crate::stats::{Better, Figure, LatencyHistogram, Metric};
use crate::targets::Target;
use crate::workloads::{Ctx, Outcome, Sample};

/// Pause after each wake before the next cycle: the service has just
/// come back (buffer pool reloading in the background); a cycle measures
/// a wake, not a suspend racing the previous one.
const SETTLE: Duration = Duration::from_millis(100);

/// How long a suspend or park refused with 409 is retried. The session
/// is idle and clean when the call is made, so a refusal is worth a note,
/// and a refusal that lasts is an error.
const REFUSAL_PATIENCE: Duration = Duration::from_secs(10);

/// Pause between retries of a refused call.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// What is timed after the suspend or park.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The first query on the connection that was open all along.
    OpenConnection,
    /// Connecting, logging in and the first query on a new connection.
    NewConnection,
}

/// Runs `cycles` cycles of `action` then the `probe`.
pub fn run(
    ctx: &Ctx<'_>,
    target: &Target,
    admin: &Admin,
    action: Action,
    probe: Probe,
    cycles: u32,
) -> anyhow::Result<Outcome> {
    let service = active_service(admin).context("bringing the service to active")?;
    let credentials = &ctx.settings.credentials;
    let mut conn = connect(target, credentials)?;
    prepare_table(&mut conn)?;
    let mut rows = RowPicker::new(u64::from(target.port) + 7);
    let clock = ctx.clock;
    let mut wakes = LatencyHistogram::new();
    let mut calls = LatencyHistogram::new();
    let mut notes = Tally::default();
    let mut refused = 0u32;
    let verb = action.name();
    for cycle in 1..=cycles {
        if ctx.stop.is_set() {
            break;
        }
        point_select(&mut conn, wake_row(&mut rows))
            .with_context(|| format!("cycle {cycle}: the query before {verb}"))?;
        let (took, after) = call_until_done(ctx, admin, &service, action, &mut notes, &mut refused)
            .with_context(|| format!("cycle {cycle}: {verb}"))?;
        calls.record(took);
        if after.state != action.reached() {
            notes.add(format!(
                "POST {verb} answered 200 with the service {} (expected {})",
                after.state.name(),
                action.reached().name()
            ));
        }
        let id = wake_row(&mut rows);
        let started = clock.now();
        let took = match probe {
            Probe::OpenConnection => {
                point_select(&mut conn, id)
                    .with_context(|| format!("cycle {cycle}: the first query after {verb}"))?;
                clock.now().duration_since(started)
            }
            Probe::NewConnection => {
                let mut fresh = connect(target, credentials)
                    .with_context(|| format!("cycle {cycle}: connecting after {verb}"))?;
                point_select(&mut fresh, id).with_context(|| {
                    format!("cycle {cycle}: a new connection's first query after {verb}")
                })?;
                let took = clock.now().duration_since(started);
                // Closing (COM_QUIT and the socket) happens outside the time.
                drop(fresh);
                took
            }
        };
        wakes.record(took);
        std::thread::sleep(SETTLE);
    }
    let mut figures = wake_figures(&wakes);
    if !calls.is_empty() {
        figures.push(Figure {
            metric: Metric::latency(&format!("{verb} call p50")),
            value: calls.micros_at(50.0),
        });
    }
    figures.push(Figure {
        metric: Metric::count("refused", Better::Lower),
        value: f64::from(refused),
    });
    Ok(Outcome::Measured(Sample {
        figures,
        histogram: Some(wakes),
        notes: notes.lines(),
    }))
}

/// p50, p99 and max of the wake latencies (the figures the suite reports
/// for wakes: over 20 cycles, p90 and p99.9 say nothing p99 and max do
/// not). Nothing when nothing was recorded.
pub fn wake_figures(wakes: &LatencyHistogram) -> Vec<Figure> {
    if wakes.is_empty() {
        return Vec::new();
    }
    wakes
        .figures()
        .into_iter()
        .filter(|f| matches!(f.metric.name.as_str(), "p50" | "p99" | "max"))
        .collect()
}

/// Calls `action` until it is done, retrying refusals (409, counted in
/// `refused`) for a while; returns how long the successful call took and
/// the service it returned.
fn call_until_done(
    ctx: &Ctx<'_>,
    admin: &Admin,
    service: &Service,
    action: Action,
    notes: &mut Tally,
    refused: &mut u32,
) -> anyhow::Result<(Duration, Service)> {
    let give_up = Instant::now() + REFUSAL_PATIENCE;
    loop {
        let started = ctx.clock.now();
        match admin.act(&service.name, action)? {
            Reply::Done(after) => return Ok((ctx.clock.now().duration_since(started), after)),
            Reply::Refused(reason) => {
                *refused += 1;
                notes.add(format!(
                    "POST {} refused (409) on an idle, clean session: {reason}",
                    action.name()
                ));
                if Instant::now() > give_up || ctx.stop.is_set() {
                    bail!(
                        "refused (409) for {}: {reason}",
                        humantime::format_duration(REFUSAL_PATIENCE)
                    );
                }
                std::thread::sleep(RETRY_PAUSE);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wake_figures_are_p50_p99_and_max_or_nothing() {
        assert!(wake_figures(&LatencyHistogram::new()).is_empty());
        let mut h = LatencyHistogram::new();
        for ms in 1..=20 {
            h.record(Duration::from_millis(ms));
        }
        let names: Vec<_> = wake_figures(&h)
            .into_iter()
            .map(|f| f.metric.name)
            .collect();
        assert_eq!(names, ["p50", "p99", "max"]);
    }
}
