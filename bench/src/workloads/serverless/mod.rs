//! Torpor's serverless behaviour, driven through its admin API: the first
//! query after the service was suspended or parked ([`wake`]), and a
//! client that queries while suspends land at random moments
//! ([`random`]), a steady client while the service is resized
//! ([`resize`]), how an autoscaled service's size follows a stepped
//! load ([`autoscale`]), and how long a new service takes to answer
//! ([`provision`]). The relocation stall waits for an API that can
//! relocate.
//!
//! These run only on a Torpor target with an admin address; everywhere
//! else they report "not available" with the reason, never a number. They
//! read a small table of their own, [`WAKE_TABLE`], created on the target
//! itself: the serverless Torpor fronts a MariaDB of its own, not the
//! baseline's database.

pub mod autoscale;
pub mod provision;
pub mod random;
pub mod relocate;
pub mod resize;
pub mod wake;

use std::time::{Duration, Instant};

use anyhow::Context;
use mysql::prelude::Queryable;
use mysql::Conn;

use super::{Ctx, Outcome, WorkloadKind};
use crate::admin::{Action, Admin, Reply, Service, ServiceState};
use crate::client::RowPicker;
use crate::stats::{Better, Figure, LatencyHistogram, Metric};
use crate::targets::{Origin, Target};

/// Why they do not apply to other targets.
pub const NOT_TORPOR: &str = "not a Torpor target";

/// Why they cannot run on a Torpor target nobody gave an admin address.
pub const NO_ADMIN_ADDRESS: &str = "no admin address (give --admin NAME=HOST:PORT, or \
     --target NAME=HOST:PORT,admin=HOST:PORT)";

/// Why they do not run on the data-path Torpor the suite spawns.
pub const DATA_PATH_TORPOR: &str = "this Torpor fronts the baseline's database (--backend) and \
     has no admin API; --spawn-torpor-serverless starts one that has";

/// Why the other workloads do not run on the serverless Torpor.
pub const SERVERLESS_ONLY: &str = "this Torpor fronts a MariaDB of its own, not the database \
     the other targets share: only the serverless workloads run on it";

/// The serverless workloads' table: `id` 1..=[`WAKE_ROWS`] and a number.
pub const WAKE_TABLE: &str = "torpor_bench_wake";

/// Rows in [`WAKE_TABLE`].
pub const WAKE_ROWS: u32 = 1_000;

/// At most this many distinct messages are kept per run; more are
/// counted as "other".
const MAX_DISTINCT_NOTES: usize = 5;

/// Runs a serverless workload on `target`, or says why it cannot.
pub fn run(kind: WorkloadKind, ctx: &Ctx<'_>, target: &Target) -> anyhow::Result<Outcome> {
    let address = match availability(target) {
        Ok(address) => address,
        Err(reason) => return Ok(Outcome::NotAvailable(reason.to_string())),
    };
    // Only targets given on the command line can have a token: the suite
    // spawns Torpor without one.
    let token = match target.origin {
        Origin::Given => ctx.settings.serverless.admin_token.clone(),
        _ => None,
    };
    let admin = Admin::new(address, token);
    let cycles = ctx.settings.serverless.wake_cycles;
    match kind {
        WorkloadKind::WakeAfterSuspend => wake::run(
            ctx,
            target,
            &admin,
            Action::Suspend,
            wake::Probe::OpenConnection,
            cycles,
        ),
        WorkloadKind::WakeAfterSuspendConnect => wake::run(
            ctx,
            target,
            &admin,
            Action::Suspend,
            wake::Probe::NewConnection,
            cycles,
        ),
        WorkloadKind::WakeAfterPark => wake::run(
            ctx,
            target,
            &admin,
            Action::Park,
            wake::Probe::OpenConnection,
            cycles,
        ),
        WorkloadKind::RandomSuspend => random::run(ctx, target, &admin),
        WorkloadKind::ResizeStall => resize::run(ctx, target, &admin, cycles),
        WorkloadKind::Autoscale => autoscale::run(ctx, target, &admin),
        WorkloadKind::RelocateStall => relocate::run(ctx, target, &admin, cycles),
        WorkloadKind::Provision => provision::run(ctx, target, &admin, cycles),
        _ => Ok(Outcome::NotAvailable(format!(
            "{} is not a serverless workload",
            kind.name()
        ))),
    }
}

/// The admin address to drive a serverless workload on `target` through
/// (they all need the same), or why it cannot run there.
pub fn availability(target: &Target) -> Result<&str, &'static str> {
    if !target.is_torpor() {
        return Err(NOT_TORPOR);
    }
    match (&target.admin, target.origin) {
        (Some(address), _) => Ok(address),
        (
            None,
            Origin::SpawnedTorpor
            | Origin::SpawnedTorporSocket
            | Origin::SpawnedTorporPool(_)
            | Origin::SpawnedTorporPoolSize(_),
        ) => Err(DATA_PATH_TORPOR),
        (None, _) => Err(NO_ADMIN_ADDRESS),
    }
}

/// The service to act on, brought back to active through the API when
/// an earlier run left it suspended or parked: every run starts from an
/// active service, and the API's own wake is exercised on the way.
pub fn active_service(admin: &Admin) -> anyhow::Result<Service> {
    let service = admin.pick_service()?;
    if service.state == ServiceState::Active {
        return Ok(service);
    }
    match admin.act(&service.name, Action::Wake)? {
        Reply::Done(woken) if woken.state == ServiceState::Active => Ok(woken),
        Reply::Done(other) => anyhow::bail!(
            "POST wake answered 200 with the service {} (expected active)",
            other.state.name()
        ),
        Reply::Refused(reason) => anyhow::bail!("POST wake refused (409): {reason}"),
    }
}

/// How long a steady client runs before whatever it is measured against:
/// its own baseline, in the same run.
pub const STEADY: Duration = Duration::from_secs(1);

/// A steady client's baseline: point selects back to back for
/// [`STEADY`]; their latencies, and errors counted as `before {what}`.
pub fn steady_baseline(
    ctx: &Ctx<'_>,
    conn: &mut Conn,
    rows: &mut RowPicker,
    what: &str,
    errors: &mut Tally,
) -> LatencyHistogram {
    let mut steady = LatencyHistogram::new();
    let started = Instant::now();
    while started.elapsed() < STEADY && !ctx.stop.is_set() {
        let begun = ctx.clock.now();
        match point_select(conn, wake_row(rows)) {
            Ok(()) => steady.record(ctx.clock.now().duration_since(begun)),
            Err(e) => errors.add(format!("before {what}: {e:#}")),
        }
    }
    steady
}

/// What a steady client saw `during` something against its `steady`
/// baseline: p50, p99 and max, the steady p99, and their ratio.
pub fn stall_figures(steady: &LatencyHistogram, during: &LatencyHistogram) -> Vec<Figure> {
    let mut figures: Vec<Figure> = during
        .figures()
        .into_iter()
        .filter(|f| matches!(f.metric.name.as_str(), "p50" | "p99" | "max"))
        .collect();
    if !steady.is_empty() {
        figures.push(Figure {
            metric: Metric::latency("steady p99"),
            value: steady.micros_at(99.0),
        });
        if !during.is_empty() {
            figures.push(Figure {
                metric: Metric::count("p99 / steady p99", Better::Lower),
                value: during.micros_at(99.0) / steady.micros_at(99.0).max(1.0),
            });
        }
    }
    figures
}

/// Creates and fills [`WAKE_TABLE`] through `conn` unless it is complete.
pub fn prepare_table(conn: &mut Conn) -> anyhow::Result<()> {
    conn.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS {WAKE_TABLE} (\
           id INT UNSIGNED NOT NULL PRIMARY KEY, \
           v INT UNSIGNED NOT NULL\
         ) ENGINE=InnoDB"
    ))
    .with_context(|| format!("creating {WAKE_TABLE}"))?;
    let count: Option<u64> = conn
        .query_first(format!("SELECT COUNT(*) FROM {WAKE_TABLE}"))
        .with_context(|| format!("counting the rows of {WAKE_TABLE}"))?;
    if count == Some(u64::from(WAKE_ROWS)) {
        return Ok(());
    }
    let values: Vec<String> = (1..=WAKE_ROWS)
        .map(|id| format!("({id},{})", id.wrapping_mul(2_654_435_761) % 100_000))
        .collect();
    conn.query_drop(format!("DELETE FROM {WAKE_TABLE}"))
        .with_context(|| format!("emptying {WAKE_TABLE}"))?;
    conn.query_drop(format!(
        "INSERT INTO {WAKE_TABLE} (id, v) VALUES {}",
        values.join(",")
    ))
    .with_context(|| format!("filling {WAKE_TABLE}"))?;
    Ok(())
}

/// The probe every serverless workload times: a point select on
/// [`WAKE_TABLE`], from sending it to its last row (InnoDB is read, so a
/// wake that leaves the engine unusable cannot pass for fast).
pub fn point_select(conn: &mut Conn, id: u32) -> anyhow::Result<()> {
    let rows: Vec<(u32, u32)> =
        conn.query(format!("SELECT id, v FROM {WAKE_TABLE} WHERE id = {id}"))?;
    anyhow::ensure!(
        rows.len() == 1 && rows.first().is_some_and(|(got, _)| *got == id),
        "SELECT of row {id} of {WAKE_TABLE} returned {} rows",
        rows.len()
    );
    Ok(())
}

/// A row id of [`WAKE_TABLE`] from a [`crate::client::RowPicker`].
pub fn wake_row(picker: &mut crate::client::RowPicker) -> u32 {
    (picker.next_id() - 1) % WAKE_ROWS + 1
}

/// Messages seen during a run, each once with how often it came.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    distinct: Vec<(String, u32)>,
    other: u32,
}

impl Tally {
    /// Counts `message`.
    pub fn add(&mut self, message: impl Into<String>) {
        let message = message.into();
        if let Some((_, n)) = self.distinct.iter_mut().find(|(m, _)| *m == message) {
            *n += 1;
        } else if self.distinct.len() < MAX_DISTINCT_NOTES {
            self.distinct.push((message, 1));
        } else {
            self.other += 1;
        }
    }

    /// How many messages were counted.
    pub fn total(&self) -> u32 {
        self.distinct.iter().map(|(_, n)| n).sum::<u32>() + self.other
    }

    /// `3× message` lines, in first-seen order.
    pub fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .distinct
            .iter()
            .map(|(m, n)| format!("{n}× {m}"))
            .collect();
        if self.other > 0 {
            lines.push(format!("{}× other messages", self.other));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::RowPicker;

    fn target(name: &str, origin: Origin, admin: Option<&str>) -> Target {
        Target {
            name: name.into(),
            host: "127.0.0.1".into(),
            port: 6033,
            pid: None,
            origin,
            admin: admin.map(str::to_string),
            tls_ca: None,
        }
    }

    #[test]
    fn only_torpor_targets_with_an_admin_address_run_them() {
        assert_eq!(
            availability(&target("direct", Origin::SpawnedMariadb, None)),
            Err(NOT_TORPOR)
        );
        assert_eq!(
            availability(&target("haproxy", Origin::SpawnedHaproxy, None)),
            Err(NOT_TORPOR)
        );
        assert_eq!(
            availability(&target("torpor", Origin::Given, None)),
            Err(NO_ADMIN_ADDRESS)
        );
        assert_eq!(
            availability(&target("torpor", Origin::SpawnedTorpor, None)),
            Err(DATA_PATH_TORPOR)
        );
        assert_eq!(
            availability(&target("t", Origin::SpawnedTorporPoolSize(16), None)),
            Err(DATA_PATH_TORPOR)
        );
        assert_eq!(
            availability(&target("db", Origin::Given, Some("h:6034"))),
            Ok("h:6034")
        );
        assert_eq!(
            availability(&target(
                "t",
                Origin::SpawnedTorporServerless,
                Some("127.0.0.1:9")
            )),
            Ok("127.0.0.1:9")
        );
    }

    #[test]
    fn the_no_admin_reason_says_what_to_give() {
        assert!(NO_ADMIN_ADDRESS.starts_with("no admin address (give --admin"));
    }

    #[test]
    fn wake_rows_stay_in_the_table() {
        let mut picker = RowPicker::new(3);
        for _ in 0..10_000 {
            assert!((1..=WAKE_ROWS).contains(&wake_row(&mut picker)));
        }
    }

    #[test]
    fn the_tally_counts_distinct_messages_and_caps_them() {
        let mut tally = Tally::default();
        assert!(tally.lines().is_empty());
        tally.add("a");
        tally.add("b");
        tally.add("a");
        assert_eq!(tally.lines(), ["2× a", "1× b"]);
        for i in 0..10 {
            tally.add(format!("m{i}"));
        }
        assert_eq!(tally.total(), 13);
        let lines = tally.lines();
        assert_eq!(lines.len(), MAX_DISTINCT_NOTES + 1);
        assert_eq!(lines.last().map(String::as_str), Some("7× other messages"));
    }
}
