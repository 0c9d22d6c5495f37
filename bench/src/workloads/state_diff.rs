//! The cost of moving a session between connections in different states.
//!
//! Two sessions take turns, one statement each, from one thread, so no
//! statement ever waits for the other. First both are put in the same
//! state (`sql_mode`, `time_zone`, a user variable), then, on two fresh
//! sessions, in different states. On a Torpor whose pool holds a single
//! connection (`--spawn-torpor-pool 1`) every statement moves its session
//! onto the connection the other session used last: with the same state
//! the move needs no diff, with different states Torpor runs a diff (SET
//! statements) before the statement. The difference of the two is what a
//! diff costs. Where each session keeps its own connection (MariaDB
//! itself, a Torpor with a larger pool) the two should measure the same:
//! that is the noise floor.
//!
//! Every statement reads the state back, so a diff that was skipped or
//! went wrong fails the workload instead of measuring nothing.

use anyhow::{ensure, Context};
use mysql::prelude::Queryable;
use mysql::Conn;

use super::{timed_loop, Ctx, Outcome, Sample, Timed};
use crate::client::{connect, RowPicker, TABLE};
use crate::stats::{Figure, Metric};
use crate::targets::Target;

/// Sessions taking turns.
pub const SESSIONS: usize = 2;

/// The user variable each session sets.
const TAG: &str = "@torpor_bench_tag";

/// A session's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSetup {
    /// `sql_mode`, as MariaDB reports it back.
    pub sql_mode: &'static str,
    /// `time_zone`.
    pub time_zone: &'static str,
    /// The value of [`TAG`].
    pub tag: i64,
}

impl SessionSetup {
    /// The statement that puts a session in this state.
    pub fn statement(&self) -> String {
        format!(
            "SET SESSION sql_mode = '{}', SESSION time_zone = '{}', {TAG} = {}",
            self.sql_mode, self.time_zone, self.tag
        )
    }
}

/// The states of the [`SESSIONS`] sessions: all alike, or all different
/// (in every part: sql_mode, time_zone and the user variable).
pub fn setups(distinct: bool) -> Vec<SessionSetup> {
    const MODES: [&str; 2] = [
        "STRICT_TRANS_TABLES,NO_ENGINE_SUBSTITUTION",
        "NO_ENGINE_SUBSTITUTION",
    ];
    const ZONES: [&str; 2] = ["+01:00", "+02:00"];
    (0..SESSIONS)
        .map(|i| {
            let which = if distinct { i % 2 } else { 0 };
            SessionSetup {
                sql_mode: MODES[which],
                time_zone: ZONES[which],
                tag: if distinct { i as i64 + 1 } else { 1 },
            }
        })
        .collect()
}

/// Both variants, same state first; per-statement p50 and p99 of each,
/// and distinct minus same.
pub fn run(ctx: &Ctx<'_>, target: &Target) -> anyhow::Result<Outcome> {
    let same = variant(ctx, target, &setups(false)).context("sessions in the same state")?;
    let distinct = variant(ctx, target, &setups(true)).context("sessions in different states")?;
    let mut figures = Vec::new();
    for (name, timed) in [("same", &same), ("distinct", &distinct)] {
        for (p_name, p) in [("p50", 50.0), ("p99", 99.0)] {
            figures.push(Figure {
                metric: Metric::latency(&format!("{name} {p_name}")),
                value: timed.histogram.micros_at(p),
            });
        }
    }
    for (p_name, p) in [("p50", 50.0), ("p99", 99.0)] {
        figures.push(Figure {
            metric: Metric::latency(&format!("diff cost {p_name}")),
            value: distinct.histogram.micros_at(p) - same.histogram.micros_at(p),
        });
    }
    figures.push(Figure {
        metric: Metric::rate("distinct qps"),
        value: distinct.rate(),
    });
    Ok(Outcome::Measured(Sample {
        figures,
        histogram: Some(distinct.histogram),
        notes: Vec::new(),
    }))
}

/// Sessions set up as `setups` take turns for the warm-up and the
/// duration.
fn variant(ctx: &Ctx<'_>, target: &Target, setups: &[SessionSetup]) -> anyhow::Result<Timed> {
    let mut sessions: Vec<(Conn, &SessionSetup)> = Vec::new();
    for setup in setups {
        let mut conn = connect(target, &ctx.settings.credentials)?;
        conn.query_drop(setup.statement())
            .with_context(|| format!("setting the state: {}", setup.statement()))?;
        sessions.push((conn, setup));
    }
    let mut rows = RowPicker::new(u64::from(target.port) + 3);
    let mut turn = 0;
    timed_loop(ctx, ctx.settings.duration, || {
        let (conn, setup) = &mut sessions[turn % setups.len()];
        turn += 1;
        let id = rows.next_id();
        let row: Option<(Option<i64>, String, String, u32)> = conn
            .query_first(format!(
                "SELECT {TAG}, @@session.time_zone, @@session.sql_mode, k \
                 FROM {TABLE} WHERE id = {id}"
            ))
            .context("point select reading the session state")?;
        let (tag, time_zone, sql_mode, _) =
            row.with_context(|| format!("row {id} of {TABLE} is missing"))?;
        check(setup, tag, &time_zone, &sql_mode)?;
        Ok(1)
    })
}

/// Fails when the state read back is not the session's own.
fn check(
    setup: &SessionSetup,
    tag: Option<i64>,
    time_zone: &str,
    sql_mode: &str,
) -> anyhow::Result<()> {
    ensure!(
        tag == Some(setup.tag) && time_zone == setup.time_zone && sql_mode == setup.sql_mode,
        "a session saw another's state: {TAG} {tag:?}, time_zone {time_zone}, sql_mode {sql_mode} \
         (want {}, {}, {})",
        setup.tag,
        setup.time_zone,
        setup.sql_mode
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_setups_are_equal_and_distinct_ones_differ_in_every_part() {
        let same = setups(false);
        assert_eq!(same.len(), SESSIONS);
        assert!(same.windows(2).all(|w| w[0] == w[1]));
        let distinct = setups(true);
        assert_eq!(distinct.len(), SESSIONS);
        let (a, b) = (&distinct[0], &distinct[1]);
        assert_ne!(a.sql_mode, b.sql_mode);
        assert_ne!(a.time_zone, b.time_zone);
        assert_ne!(a.tag, b.tag);
    }

    #[test]
    fn the_statement_sets_all_three() {
        assert_eq!(
            setups(true)[1].statement(),
            "SET SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION', SESSION time_zone = '+02:00', \
             @torpor_bench_tag = 2"
        );
    }

    #[test]
    fn a_foreign_state_is_refused() {
        let mine = &setups(true)[0];
        assert!(check(mine, Some(1), "+01:00", mine.sql_mode).is_ok());
        assert!(check(mine, Some(2), "+01:00", mine.sql_mode).is_err());
        assert!(check(mine, Some(1), "+02:00", mine.sql_mode).is_err());
        assert!(check(mine, None, "+01:00", mine.sql_mode).is_err());
        assert!(check(mine, Some(1), "+01:00", "NO_ENGINE_SUBSTITUTION").is_err());
    }
}
