//! Many connections at once, one client thread each, all running point
//! selects: throughput (QPS and p99 per connection count) and the CPU the
//! target's process spends per query.
//!
//! Connections are opened before the clock starts, so connection setup
//! never counts as query time; every thread warms up, then all measure
//! over the same window.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use anyhow::Context;
use mysql::prelude::Queryable;

use super::{Ctx, Outcome, Sample};
use crate::client::{connect, RowPicker, TABLE};
use crate::procfs::{self, CpuTimes};
use crate::stats::{Better, Figure, LatencyHistogram, Metric, Unit};
use crate::targets::Target;

/// Client threads do little but wait on sockets; a small stack lets 256 of
/// them start quickly.
pub(super) const CLIENT_STACK: usize = 256 * 1024;

/// What a window of concurrent clients measured.
#[derive(Debug)]
struct Window {
    histogram: LatencyHistogram,
    elapsed: Duration,
    /// CPU of the target's process over the window, when its pid is known.
    cpu: Option<CpuTimes>,
}

impl Window {
    fn qps(&self) -> f64 {
        self.histogram.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// QPS and latency at each connection count of `--connections`.
pub fn throughput(ctx: &Ctx<'_>, target: &Target) -> anyhow::Result<Outcome> {
    let mut figures = Vec::new();
    for &connections in &ctx.settings.connections {
        let window = clients(ctx, target, connections, None)
            .with_context(|| format!("with {connections} connections"))?;
        figures.push(Figure {
            metric: Metric::rate("qps").at_connections(connections),
            value: window.qps(),
        });
        for (name, p) in [("p50", 50.0), ("p99", 99.0)] {
            figures.push(Figure {
                metric: Metric::latency(name).at_connections(connections),
                value: window.histogram.micros_at(p),
            });
        }
        if ctx.stop.is_set() {
            break;
        }
    }
    Ok(Outcome::Measured(Sample {
        figures,
        histogram: None,
        notes: Vec::new(),
    }))
}

/// CPU time (user + system) of the target's process per query, under
/// `--cpu-connections` clients.
pub fn cpu_per_query(ctx: &Ctx<'_>, target: &Target) -> anyhow::Result<Outcome> {
    let Some(pid) = target.pid else {
        return Ok(Outcome::NotAvailable(
            "process id unknown (pass --pid NAME=PID)".to_string(),
        ));
    };
    let window = clients(ctx, target, ctx.settings.cpu_connections, Some(pid))?;
    let queries = window.histogram.len().max(1) as f64;
    let cpu = window.cpu.unwrap_or_default();
    let per_query = |d: Duration| d.as_secs_f64() * 1e6 / queries;
    let cpu_metric = |name: &str| Metric::new(name, Unit::CpuMicrosPerQuery, Better::Lower);
    Ok(Outcome::Measured(Sample {
        figures: vec![
            Figure {
                metric: cpu_metric("cpu"),
                value: per_query(cpu.total()),
            },
            Figure {
                metric: cpu_metric("user"),
                value: per_query(cpu.user),
            },
            Figure {
                metric: cpu_metric("sys"),
                value: per_query(cpu.system),
            },
            Figure {
                metric: Metric::rate("qps"),
                value: window.qps(),
            },
        ],
        histogram: None,
        notes: Vec::new(),
    }))
}

/// Runs `connections` client threads over one warm-up and one measured
/// window; reads `pid`'s CPU time at the window's edges.
fn clients(
    ctx: &Ctx<'_>,
    target: &Target,
    connections: u32,
    pid: Option<u32>,
) -> anyhow::Result<Window> {
    let credentials = &ctx.settings.credentials;
    let mut conns = Vec::new();
    for _ in 0..connections {
        if ctx.stop.is_set() {
            break;
        }
        conns.push(connect(target, credentials)?);
    }
    let clock = ctx.clock;
    let gate = Gate::default();
    let (warmup, duration) = (ctx.settings.warmup, ctx.settings.duration);
    let stop = ctx.stop;
    std::thread::scope(|scope| -> anyhow::Result<Window> {
        let mut handles = Vec::new();
        for (i, mut conn) in conns.into_iter().enumerate() {
            let gate = &gate;
            let spawned = std::thread::Builder::new()
                .name(format!("client-{i}"))
                .stack_size(CLIENT_STACK)
                .spawn_scoped(scope, move || -> anyhow::Result<LatencyHistogram> {
                    let (measure_from, end) = gate.wait();
                    let mut rows = RowPicker::new(i as u64 + u64::from(target.port));
                    let mut histogram = LatencyHistogram::new();
                    let mut now = clock.now();
                    while now < end && !stop.is_set() {
                        let before = now;
                        let id = rows.next_id();
                        let _: Option<(u32, u32, String)> = conn
                            .query_first(format!("SELECT id, k, c FROM {TABLE} WHERE id = {id}"))
                            .with_context(|| format!("client {i}: point select"))?;
                        now = clock.now();
                        if before >= measure_from {
                            histogram.record(now.duration_since(before));
                        }
                    }
                    Ok(histogram)
                });
            match spawned {
                Ok(handle) => handles.push(handle),
                Err(error) => {
                    // Release the threads already waiting with a window
                    // that is over, so the scope can join them.
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
        let cpu_before = pid.map(procfs::cpu_times).transpose()?;
        sleep_until(clock, end, ctx);
        let cpu_after = pid.map(procfs::cpu_times).transpose()?;
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
        if let Some(error) = first_error {
            return Err(error);
        }
        let cpu = match (cpu_before, cpu_after) {
            (Some(before), Some(after)) => Some(after.since(&before)),
            _ => None,
        };
        Ok(Window {
            histogram,
            elapsed,
            cpu,
        })
    })
}

/// Holds client threads until the measuring window is known, then lets
/// them all go at once.
#[derive(Debug, Default)]
pub(super) struct Gate {
    window: Mutex<Option<(quanta::Instant, quanta::Instant)>>,
    opened: Condvar,
}

impl Gate {
    /// Sets the window (measure from, end) and releases every waiter.
    pub(super) fn open(&self, measure_from: quanta::Instant, end: quanta::Instant) {
        let mut window = self.window.lock().unwrap_or_else(|p| p.into_inner());
        *window = Some((measure_from, end));
        self.opened.notify_all();
    }

    /// Blocks until the window is set and returns it.
    pub(super) fn wait(&self) -> (quanta::Instant, quanta::Instant) {
        let mut window = self.window.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(w) = *window {
                return w;
            }
            window = self.opened.wait(window).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Sleeps until `deadline`, waking early when the user asks to stop.
pub(super) fn sleep_until(clock: &quanta::Clock, deadline: quanta::Instant, ctx: &Ctx<'_>) {
    loop {
        let now = clock.now();
        if now >= deadline || ctx.stop.is_set() {
            return;
        }
        std::thread::sleep((deadline.duration_since(now)).min(Duration::from_millis(50)));
    }
}
