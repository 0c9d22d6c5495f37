//! Suspends at random moments under a live client: one client sleeps a
//! random pause and runs a point select, `--random-suspend-cycles` times,
//! while a driver thread sleeps random pauses and asks the admin API to
//! suspend the service, until the client is done. Suspends land between
//! queries, on queries in flight (Torpor must refuse those, 409) and on
//! queries that arrive while a suspend is under way (Torpor must hold
//! them and wake).
//!
//! The figure that matters is `errors`: every query error and every lost
//! connection counts, and the target is zero. Wake latency is the latency
//! of the queries that started after a suspend had returned, with no
//! other query in between (so the service was suspended when they came).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use mysql::Conn;
use rand::Rng;

use super::wake::wake_figures;
use super::{active_service, point_select, prepare_table, wake_row, Tally};
use crate::admin::{Action, Admin, Reply, Service};
use crate::client::{connect, RowPicker};
use crate::stats::{Better, Figure, LatencyHistogram, Metric};
use crate::targets::Target;
use crate::workloads::{Ctx, Outcome, Sample};

/// How long the client keeps trying to connect again after it lost its
/// connection; each failed attempt counts as an error.
const RECONNECT_PATIENCE: Duration = Duration::from_secs(30);

/// Pause between reconnection attempts, and after an admin call that
/// failed outright (so a dead API is not hammered).
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// The moments the two threads share, as nanoseconds since one start.
#[derive(Debug)]
struct Timeline {
    start: Instant,
    /// When the last suspend call returned 200; 0 before the first.
    last_suspend: AtomicU64,
    /// Set when the client is done: the driver stops.
    client_done: AtomicBool,
}

impl Timeline {
    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos())
            .unwrap_or(u64::MAX)
            .max(1)
    }
}

/// What the client saw.
#[derive(Debug, Default)]
struct ClientTally {
    /// Query errors and lost connections.
    errors: Tally,
    /// Queries that came to a suspended service.
    wakes: LatencyHistogram,
    /// Every query that succeeded.
    all: LatencyHistogram,
}

/// What the driver did.
#[derive(Debug, Default)]
struct DriverTally {
    suspends: u32,
    refused: u32,
    refusals: Tally,
    failures: Tally,
}

/// Runs the client and the driver against `target`'s service.
pub fn run(ctx: &Ctx<'_>, target: &Target, admin: &Admin) -> anyhow::Result<Outcome> {
    let service = active_service(admin).context("bringing the service to active")?;
    let mut conn = connect(target, &ctx.settings.credentials)?;
    prepare_table(&mut conn)?;
    let timeline = Timeline {
        start: Instant::now(),
        last_suspend: AtomicU64::new(0),
        client_done: AtomicBool::new(false),
    };
    let (client, driver) = std::thread::scope(|scope| {
        let driver = scope.spawn(|| drive(ctx, admin, &service, &timeline));
        let client = query(ctx, target, conn, &timeline);
        timeline.client_done.store(true, Ordering::SeqCst);
        (client, driver.join())
    });
    let client = client?;
    let driver = driver.map_err(|_| anyhow!("the thread calling suspend panicked"))?;
    let count = |name: &str, better: Better, value: u32| Figure {
        metric: Metric::count(name, better),
        value: f64::from(value),
    };
    let mut figures = vec![count("errors", Better::Lower, client.errors.total())];
    figures.extend(wake_figures(&client.wakes));
    if !client.all.is_empty() {
        figures.push(Figure {
            metric: Metric::latency("all p99"),
            value: client.all.micros_at(99.0),
        });
    }
    // Wakes and suspends are not better or worse: more of them is more
    // of the race exercised.
    let wakes = u32::try_from(client.wakes.len()).unwrap_or(u32::MAX);
    figures.push(count("wakes", Better::Higher, wakes));
    figures.push(count("suspends", Better::Higher, driver.suspends));
    figures.push(count("refused", Better::Lower, driver.refused));
    figures.push(count("api errors", Better::Lower, driver.failures.total()));
    let mut notes: Vec<String> = client
        .errors
        .lines()
        .into_iter()
        .map(|l| format!("client error: {l}"))
        .collect();
    notes.extend(
        driver
            .failures
            .lines()
            .into_iter()
            .map(|l| format!("suspend call failed: {l}")),
    );
    notes.extend(
        driver
            .refusals
            .lines()
            .into_iter()
            .map(|l| format!("suspend refused (409): {l}")),
    );
    Ok(Outcome::Measured(Sample {
        figures,
        histogram: Some(client.wakes),
        notes,
    }))
}

/// The client: random pause, point select, `--random-suspend-cycles`
/// times; errors are counted and the connection opened again.
fn query(
    ctx: &Ctx<'_>,
    target: &Target,
    conn: Conn,
    timeline: &Timeline,
) -> anyhow::Result<ClientTally> {
    let settings = &ctx.settings.serverless;
    let mut rng = rand::rng();
    let mut rows = RowPicker::new(u64::from(target.port) + 11);
    let mut tally = ClientTally::default();
    let mut conn = Some(conn);
    let mut previous_end = timeline.now();
    for cycle in 1..=settings.random_cycles {
        if ctx.stop.is_set() {
            break;
        }
        std::thread::sleep(pause(&mut rng, settings.random_pause));
        let mut current = match conn.take() {
            Some(current) => current,
            None => reconnect(ctx, target, &mut tally.errors)
                .with_context(|| format!("query {cycle}: connecting again"))?,
        };
        let id = wake_row(&mut rows);
        let start = timeline.now();
        let started = ctx.clock.now();
        let result = point_select(&mut current, id);
        let took = ctx.clock.now().duration_since(started);
        let end = timeline.now();
        match result {
            Ok(()) => {
                tally.all.record(took);
                if follows_suspend(
                    timeline.last_suspend.load(Ordering::SeqCst),
                    previous_end,
                    start,
                ) {
                    tally.wakes.record(took);
                }
                conn = Some(current);
            }
            // A connection that still answers a ping stays (Torpor
            // promises connections survive suspends, and answers pings
            // itself); one that does not is a lost connection, replaced
            // by a new one whose failures count too.
            Err(error) => match current.ping() {
                Ok(()) => {
                    tally
                        .errors
                        .add(format!("query (connection kept): {error:#}"));
                    conn = Some(current);
                }
                Err(_) => tally
                    .errors
                    .add(format!("query (connection lost): {error:#}")),
            },
        }
        previous_end = end;
    }
    Ok(tally)
}

/// Whether a query that started at `start` came to a suspended service:
/// a suspend returned after the previous query ended and before this one
/// started. (A suspend that returned while a query was in flight is left
/// out: that query may have woken the service already.)
fn follows_suspend(last_suspend: u64, previous_end: u64, start: u64) -> bool {
    last_suspend > previous_end && last_suspend <= start
}

/// Connects again, counting each failed attempt as an error.
fn reconnect(ctx: &Ctx<'_>, target: &Target, errors: &mut Tally) -> anyhow::Result<Conn> {
    let give_up = Instant::now() + RECONNECT_PATIENCE;
    loop {
        match connect(target, &ctx.settings.credentials) {
            Ok(conn) => return Ok(conn),
            Err(error) => {
                errors.add(format!("connect: {error:#}"));
                if Instant::now() > give_up || ctx.stop.is_set() {
                    bail!(
                        "no connection for {}: {error:#}",
                        humantime::format_duration(RECONNECT_PATIENCE)
                    );
                }
                std::thread::sleep(RETRY_PAUSE);
            }
        }
    }
}

/// The driver: random pause, suspend, until the client is done.
fn drive(ctx: &Ctx<'_>, admin: &Admin, service: &Service, timeline: &Timeline) -> DriverTally {
    let mut rng = rand::rng();
    let mut tally = DriverTally::default();
    let done = || timeline.client_done.load(Ordering::SeqCst) || ctx.stop.is_set();
    while !done() {
        std::thread::sleep(pause(&mut rng, ctx.settings.serverless.random_pause));
        if done() {
            break;
        }
        match admin.act(&service.name, Action::Suspend) {
            Ok(Reply::Done(_)) => {
                tally.suspends += 1;
                timeline
                    .last_suspend
                    .store(timeline.now(), Ordering::SeqCst);
            }
            Ok(Reply::Refused(reason)) => {
                tally.refused += 1;
                tally.refusals.add(reason);
            }
            Err(error) => {
                tally.failures.add(format!("{error:#}"));
                std::thread::sleep(RETRY_PAUSE);
            }
        }
    }
    tally
}

/// A pause drawn uniformly from zero to `longest`.
fn pause(rng: &mut impl Rng, longest: Duration) -> Duration {
    let nanos = u64::try_from(longest.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.random_range(0..=nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_is_a_wake_only_when_a_suspend_returned_just_before_it() {
        // No suspend yet.
        assert!(!follows_suspend(0, 1, 10));
        // Returned between the previous query and this one.
        assert!(follows_suspend(5, 3, 10));
        assert!(follows_suspend(10, 3, 10));
        // Returned during the previous query, or after this one started.
        assert!(!follows_suspend(2, 3, 10));
        assert!(!follows_suspend(11, 3, 10));
    }

    #[test]
    fn pauses_stay_within_the_range() {
        let mut rng = rand::rng();
        let longest = Duration::from_millis(200);
        for _ in 0..1000 {
            assert!(pause(&mut rng, longest) <= longest);
        }
        assert_eq!(pause(&mut rng, Duration::ZERO), Duration::ZERO);
    }
}
