//! Connections themselves: what a new one costs (connect, authenticate,
//! first query) and what an idle one costs the target's process in
//! memory. A proxy that terminates handshakes itself shows its hand here.

use std::time::Duration;

use anyhow::Context;
use mysql::prelude::Queryable;
use mysql::Conn;

use super::{connect_phases, Ctx, Outcome, Sample};
use crate::client::opts;
use crate::procfs;
use crate::stats::{Better, Figure, LatencyHistogram, Metric, Unit};
use crate::targets::Target;

/// At most one new connection per this interval: a tight connect loop
/// would measure the kernel's TIME_WAIT handling more than the target.
const CONNECT_PACE: Duration = Duration::from_millis(2);

/// How long held connections settle before memory is read: lazily
/// allocated buffers and thread stacks show up in RSS only once touched.
const SETTLE: Duration = Duration::from_millis(500);

/// Connect + authenticate + `SELECT 1`, a fresh connection each time,
/// through the `mysql` crate; and, taking turns with it, the same login
/// made by hand and timed phase by phase ([`connect_phases`]), for where
/// the time goes. The phases are left out over TLS (the hand-made login
/// speaks plain TCP only).
pub fn setup(ctx: &Ctx<'_>, target: &Target) -> anyhow::Result<Outcome> {
    let options = opts(target, &ctx.settings.credentials);
    let clock = ctx.clock;
    let connect_once = || -> anyhow::Result<Duration> {
        let started = clock.now();
        let mut conn = Conn::new(options.clone()).context("connecting")?;
        let one: Option<u8> = conn.query_first("SELECT 1").context("first query")?;
        let took = clock.now().duration_since(started);
        anyhow::ensure!(one == Some(1), "SELECT 1 returned {one:?}");
        // Closing (COM_QUIT and the socket) happens here, outside the time.
        drop(conn);
        Ok(took)
    };
    let address = target.address();
    let in_phases = target.tls_ca.is_none();
    let phased_once = || {
        connect_phases::connect_in_phases(&address, &ctx.settings.credentials, clock)
            .context("connecting phase by phase")
    };
    let paced = |took: Duration| {
        if took < CONNECT_PACE {
            std::thread::sleep(CONNECT_PACE - took);
        }
    };
    let warm_until = clock.now() + ctx.settings.warmup;
    while clock.now() < warm_until && !ctx.stop.is_set() {
        paced(connect_once()?);
        if in_phases {
            paced(phased_once()?.total());
        }
    }
    let mut histogram = LatencyHistogram::new();
    let mut phases = PhaseHistograms::default();
    let start = clock.now();
    let end = start + ctx.settings.duration;
    while clock.now() < end && !ctx.stop.is_set() {
        let took = connect_once()?;
        histogram.record(took);
        paced(took);
        if in_phases {
            let phased = phased_once()?;
            phases.record(&phased);
            paced(phased.total());
        }
    }
    let mut figures = histogram.figures();
    figures.retain(|f| f.metric.name != "p99.9");
    if in_phases {
        figures.extend(phases.figures());
    }
    Ok(Outcome::Measured(Sample {
        figures,
        histogram: Some(histogram),
        notes: Vec::new(),
    }))
}

/// The phases of the hand-made logins, one histogram each.
#[derive(Default)]
struct PhaseHistograms {
    tcp: LatencyHistogram,
    greeting: LatencyHistogram,
    login: LatencyHistogram,
    first_query: LatencyHistogram,
    total: LatencyHistogram,
}

impl PhaseHistograms {
    fn record(&mut self, phases: &connect_phases::Phases) {
        self.tcp.record(phases.tcp);
        self.greeting.record(phases.greeting);
        self.login.record(phases.login);
        self.first_query.record(phases.first_query);
        self.total.record(phases.total());
    }

    /// The median of each phase, and of their sum (the hand-made login's
    /// own `p50`, beside the library's).
    fn figures(&self) -> Vec<Figure> {
        [
            ("tcp p50", &self.tcp),
            ("greeting p50", &self.greeting),
            ("login p50", &self.login),
            ("first query p50", &self.first_query),
            ("by hand p50", &self.total),
        ]
        .into_iter()
        .map(|(name, histogram)| Figure {
            metric: Metric::latency(name),
            value: histogram.micros_at(50.0),
        })
        .collect()
    }
}

/// Resident memory of the target's process per idle connection: RSS
/// before and after opening `--idle-connections` connections (each ran one
/// query, then sits idle), divided by their number.
pub fn idle(ctx: &Ctx<'_>, target: &Target) -> anyhow::Result<Outcome> {
    let Some(pid) = target.pid else {
        return Ok(Outcome::NotAvailable(
            "process id unknown (pass --pid NAME=PID)".to_string(),
        ));
    };
    let options = opts(target, &ctx.settings.credentials);
    let count = ctx.settings.idle_connections;
    std::thread::sleep(SETTLE);
    let before = procfs::rss_kib(pid)?;
    let mut held = Vec::new();
    for i in 0..count {
        if ctx.stop.is_set() {
            break;
        }
        let mut conn = Conn::new(options.clone())
            .with_context(|| format!("opening idle connection {}", i + 1))?;
        conn.query_drop("SELECT 1").context("first query")?;
        held.push(conn);
    }
    std::thread::sleep(SETTLE);
    let after = procfs::rss_kib(pid)?;
    // Every connection must still be there: memory of connections the
    // target dropped would mean nothing.
    for (i, conn) in held.iter_mut().enumerate() {
        conn.ping()
            .with_context(|| format!("idle connection {} was dropped", i + 1))?;
    }
    let per_connection = after.saturating_sub(before) as f64 / held.len().max(1) as f64;
    let mib = |kib: u64| kib as f64 / 1024.0;
    Ok(Outcome::Measured(Sample {
        figures: vec![
            Figure {
                metric: Metric::new("memory", Unit::KibPerConnection, Better::Lower),
                value: per_connection,
            },
            Figure {
                metric: Metric::new("rss before", Unit::Mebibytes, Better::Lower),
                value: mib(before),
            },
        ],
        histogram: None,
        notes: Vec::new(),
    }))
}
