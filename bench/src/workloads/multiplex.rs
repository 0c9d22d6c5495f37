//! Many clients sharing few backend connections: `--multiplex-clients`
//! clients (64), one thread each, run point selects in autocommit and
//! think for a random time (uniform up to `--multiplex-think`, 20 ms)
//! between two queries.
//!
//! Think time, not a closed loop: clients of a real application are idle
//! most of the time, and that idleness is what lets a proxy serve them
//! with fewer backend connections. A closed loop on this many clients
//! measures the machine's CPU saturation instead (every target then
//! queues on the same two cores), and it would keep every backend
//! connection busy, which is the one case a pool cannot help. Only the
//! query is timed, never the think time. The QPS is then mostly the
//! offered load; a target falling short of the others is one that cannot
//! keep up with it.
//!
//! While the clients run, a separate connection straight to MariaDB (the
//! `direct` target) samples `information_schema.PROCESSLIST` every
//! [`SAMPLE_EVERY`]: the bench user's connections that ran a statement
//! within the last [`RECENT_MS`] ms (or are running one). Idle
//! connections other targets left open (a proxy's pool from an earlier
//! workload) do not count: they have been idle for at least the warm-up.
//! The figures are the largest and the median count over the window.

use std::time::Duration;

use anyhow::Context;
use mysql::prelude::Queryable;
use mysql::Conn;
use rand::Rng;

use super::concurrent::{sleep_until, Gate, CLIENT_STACK};
use super::{Ctx, Outcome, Sample};
use crate::client::{connect, RowPicker, TABLE};
use crate::stats::{spread, Better, Figure, LatencyHistogram, Metric};
use crate::targets::Target;

/// How often the backend's process list is read.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// A connection counts as used when it ran a statement this recently, in
/// milliseconds: well above the longest think time of the default
/// settings, well below the warm-up that separates two targets' runs.
pub const RECENT_MS: u32 = 250;

/// Runs the clients on `target` and samples the backend meanwhile.
pub fn run(ctx: &Ctx<'_>, target: &Target) -> anyhow::Result<Outcome> {
    let settings = &ctx.settings.multiplex;
    let credentials = &ctx.settings.credentials;
    // The sampler first: a backend that refuses it fails before the
    // clients connect.
    let mut sampler = match ctx.backend {
        Some(backend) => Some(
            connect(backend, credentials)
                .context("connecting to the direct target to sample its PROCESSLIST")?,
        ),
        None => None,
    };
    let mut conns = Vec::new();
    for _ in 0..settings.clients {
        if ctx.stop.is_set() {
            break;
        }
        conns.push(connect(target, credentials)?);
    }
    let clock = ctx.clock;
    let gate = Gate::default();
    let (warmup, duration) = (ctx.settings.warmup, ctx.settings.duration);
    let think = settings.think;
    let stop = ctx.stop;
    let (histogram, counts, elapsed) = std::thread::scope(|scope| {
        let mut handles = Vec::new();
        for (i, mut conn) in conns.into_iter().enumerate() {
            let gate = &gate;
            let spawned = std::thread::Builder::new()
                .name(format!("mux-client-{i}"))
                .stack_size(CLIENT_STACK)
                .spawn_scoped(scope, move || -> anyhow::Result<LatencyHistogram> {
                    let (measure_from, end) = gate.wait();
                    let mut rows = RowPicker::new(i as u64 + u64::from(target.port));
                    let mut rng = rand::rng();
                    let mut histogram = LatencyHistogram::new();
                    let think_nanos = u64::try_from(think.as_nanos()).unwrap_or(u64::MAX);
                    while clock.now() < end && !stop.is_set() {
                        if think_nanos > 0 {
                            let pause = rng.random_range(0..=think_nanos);
                            std::thread::sleep(Duration::from_nanos(pause));
                        }
                        let before = clock.now();
                        if before >= end {
                            break;
                        }
                        let id = rows.next_id();
                        let row: Option<(u32, u32, String)> = conn
                            .query_first(format!("SELECT id, k, c FROM {TABLE} WHERE id = {id}"))
                            .with_context(|| format!("client {i}: point select"))?;
                        row.with_context(|| format!("row {id} of {TABLE} is missing"))?;
                        if before >= measure_from {
                            histogram.record(clock.now().duration_since(before));
                        }
                    }
                    Ok(histogram)
                });
            match spawned {
                Ok(handle) => handles.push(handle),
                Err(error) => {
                    let now = clock.now();
                    gate.open(now, now);
                    return Err(anyhow::Error::new(error).context("starting a client thread"));
                }
            }
        }
        let measure_from = clock.now() + warmup;
        let end = measure_from + duration;
        gate.open(measure_from, end);
        sleep_until(clock, measure_from, ctx);
        let mut counts = Vec::new();
        let mut sample_error = None;
        while clock.now() < end && !stop.is_set() {
            let next = clock.now() + SAMPLE_EVERY;
            if let Some(conn) = sampler.as_mut() {
                match backend_connections_in_use(conn, &credentials.user) {
                    Ok(count) => counts.push(count),
                    Err(error) => {
                        sample_error.get_or_insert(error);
                    }
                }
            }
            sleep_until(clock, next.min(end), ctx);
        }
        let elapsed = clock.now().duration_since(measure_from).min(duration);
        let mut histogram = LatencyHistogram::new();
        let mut first_error = None;
        for handle in handles {
            match handle.join() {
                Ok(Ok(h)) => histogram.merge(&h),
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(_) => {
                    first_error.get_or_insert(anyhow::anyhow!("a client thread panicked"));
                }
            }
        }
        if let Some(error) = first_error.or(sample_error) {
            return Err(error);
        }
        Ok((histogram, counts, elapsed))
    })?;
    let qps = histogram.len() as f64 / elapsed.as_secs_f64().max(1e-9);
    let mut figures = histogram.figures();
    figures.push(Figure {
        metric: Metric::rate("qps"),
        value: qps,
    });
    figures.push(Figure {
        metric: Metric::count("clients", Better::Lower),
        value: f64::from(settings.clients),
    });
    let mut notes = Vec::new();
    match summarize_counts(&counts) {
        Some(used) => {
            figures.push(Figure {
                metric: Metric::count("backend conns max", Better::Lower),
                value: used.max,
            });
            figures.push(Figure {
                metric: Metric::count("backend conns median", Better::Lower),
                value: used.median,
            });
            notes.push(format!(
                "clients {}, backend connections used {} (median {})",
                settings.clients, used.max, used.median
            ));
        }
        None => notes.push(
            "backend connections not sampled: no target named direct \
             (give --spawn-mariadb or --target direct=HOST:PORT)"
                .to_string(),
        ),
    }
    Ok(Outcome::Measured(Sample {
        figures,
        histogram: Some(histogram),
        notes,
    }))
}

/// The largest and the median of the sampled counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Used {
    /// The largest count.
    pub max: f64,
    /// The median count.
    pub median: f64,
}

/// Summarizes the samples; `None` when there are none.
pub fn summarize_counts(counts: &[u64]) -> Option<Used> {
    let values: Vec<f64> = counts.iter().map(|&c| c as f64).collect();
    let s = spread(&values)?;
    Some(Used {
        max: s.max,
        median: s.median,
    })
}

/// The query counting `user`'s connections, other than the asking one,
/// that are running a statement or ran one within [`RECENT_MS`].
pub fn processlist_query(user: &str) -> String {
    // A user name is an SQL string literal here: double its quotes and
    // backslashes (the sampler's own connection has the default sql_mode).
    let user = user.replace('\\', "\\\\").replace('\'', "''");
    format!(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
         WHERE USER = '{user}' AND ID <> CONNECTION_ID() \
         AND (COMMAND <> 'Sleep' OR TIME_MS < {RECENT_MS})"
    )
}

/// Asks the backend how many of `user`'s connections are in use.
fn backend_connections_in_use(conn: &mut Conn, user: &str) -> anyhow::Result<u64> {
    let count: Option<u64> = conn
        .query_first(processlist_query(user))
        .context("sampling information_schema.PROCESSLIST on the direct target")?;
    count.context("COUNT(*) returned no row")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_excludes_the_sampler_and_long_idle_connections() {
        let query = processlist_query("bench");
        assert!(query.contains("USER = 'bench'"), "{query}");
        assert!(query.contains("ID <> CONNECTION_ID()"), "{query}");
        assert!(query.contains("TIME_MS < 250"), "{query}");
    }

    #[test]
    fn user_names_are_quoted_as_literals() {
        assert!(processlist_query("o'brien").contains("USER = 'o''brien'"));
        assert!(processlist_query("a\\b").contains("USER = 'a\\\\b'"));
    }

    #[test]
    fn counts_summarize_to_max_and_median() {
        assert_eq!(summarize_counts(&[]), None);
        assert_eq!(
            summarize_counts(&[8, 3, 7, 8, 6]),
            Some(Used {
                max: 8.0,
                median: 7.0
            })
        );
    }
}
