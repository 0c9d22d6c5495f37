//! The clients of the `autoscale` workload: one thread per client of the
//! busiest phase, each querying back to back while the [`Schedule`] says
//! it runs and sleeping while it does not, and the caller's sampler on
//! the calling thread meanwhile.
//!
//! A client's queries are point selects on [`TABLE`] with a single-row
//! UPDATE every [`WRITE_EVERY`]th: reads and small writes that go
//! through the redo log, the load of a small OLTP service.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use mysql::prelude::Queryable;
use mysql::Conn;

use super::figures::Done;
use super::schedule::Schedule;
use super::table::{Ids, TABLE};
use crate::client::connect;
use crate::targets::Target;
use crate::workloads::serverless::Tally;
use crate::workloads::Ctx;

/// Every this many queries of a client, one is a single-row UPDATE.
pub const WRITE_EVERY: u64 = 10;

/// How often the sampler is called.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(200);

/// The longest a client sleeps before looking at the schedule again
/// while it has nothing to do.
const IDLE_NAP: Duration = Duration::from_millis(20);

/// Pause before a client reconnects after an error: a backend that is
/// gone should not be hammered.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);

/// What a run of the schedule produced.
#[derive(Debug, Default)]
pub struct Ran {
    /// Every query that completed, in no particular order.
    pub done: Vec<Done>,
    /// Errors the clients saw (must stay empty).
    pub errors: Tally,
    /// When the load started, milliseconds since the Unix epoch (the
    /// admin API times its resizes so).
    pub started_unix_ms: u64,
}

/// Runs `schedule` on `target` over the first `rows` rows of [`TABLE`],
/// calling `sample` with the time since the start every
/// [`SAMPLE_EVERY`] until the schedule ends.
pub fn run(
    ctx: &Ctx<'_>,
    target: &Target,
    schedule: &Schedule,
    rows: u32,
    mut sample: impl FnMut(Duration),
) -> anyhow::Result<Ran> {
    let credentials = &ctx.settings.credentials;
    let mut conns = Vec::new();
    for i in 0..schedule.most_clients() {
        conns.push(connect(target, credentials).with_context(|| format!("client {i}"))?);
    }
    let total = schedule.total();
    let started = Instant::now();
    let started_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let results = Mutex::new(Ran {
        started_unix_ms,
        ..Ran::default()
    });
    std::thread::scope(|scope| {
        for (i, conn) in conns.into_iter().enumerate() {
            let results = &results;
            scope.spawn(move || {
                let who = Client {
                    number: i as u32,
                    rows,
                    started,
                };
                let (done, errors) = client(ctx, target, schedule, &who, conn);
                // A poisoned lock means another client panicked: its
                // panic ends the scope anyway.
                if let Ok(mut results) = results.lock() {
                    results.done.extend(done);
                    for line in errors {
                        results.errors.add(line);
                    }
                }
            });
        }
        let mut next = Duration::ZERO;
        loop {
            let now = started.elapsed();
            if now >= total || ctx.stop.is_set() {
                break;
            }
            if now >= next {
                sample(now);
                next += SAMPLE_EVERY;
                // A sampler slower than its period skips ticks instead
                // of calling back to back.
                while next <= now {
                    next += SAMPLE_EVERY;
                }
            }
            std::thread::sleep(next.saturating_sub(started.elapsed()).min(SAMPLE_EVERY));
        }
    });
    results
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a client thread panicked"))
}

/// Which client a thread is, and what it shares with the others.
#[derive(Debug, Clone, Copy)]
struct Client {
    /// From 0; the schedule's first N clients run in a phase of N.
    number: u32,
    /// Rows of the table it reads.
    rows: u32,
    /// The start of the load.
    started: Instant,
}

/// A point select on [`TABLE`], from sending it to its last row.
fn point_select(conn: &mut Conn, id: u32) -> anyhow::Result<()> {
    let rows: Vec<(u32, u32)> = conn.query(format!("SELECT id, v FROM {TABLE} WHERE id = {id}"))?;
    anyhow::ensure!(
        rows.len() == 1 && rows.first().is_some_and(|(got, _)| *got == id),
        "SELECT of row {id} of {TABLE} returned {} rows",
        rows.len()
    );
    Ok(())
}

/// One client's loop; its completed queries and its error messages.
fn client(
    ctx: &Ctx<'_>,
    target: &Target,
    schedule: &Schedule,
    who: &Client,
    mut conn: Conn,
) -> (Vec<Done>, Vec<String>) {
    let Client {
        number,
        rows,
        started,
    } = *who;
    let mut done = Vec::new();
    let mut errors = Vec::new();
    let mut ids = Ids::new(u64::from(target.port) * 31 + u64::from(number), rows);
    let total = schedule.total();
    let clock = ctx.clock;
    let mut count: u64 = 0;
    loop {
        let offset = started.elapsed();
        if offset >= total || ctx.stop.is_set() {
            break;
        }
        if !schedule.runs(number, offset) {
            std::thread::sleep(IDLE_NAP);
            continue;
        }
        count += 1;
        let id = ids.next_id();
        let begun = clock.now();
        let result = if count % WRITE_EVERY == 0 {
            conn.query_drop(format!("UPDATE {TABLE} SET v = v + 1 WHERE id = {id}"))
                .map_err(anyhow::Error::from)
        } else {
            point_select(&mut conn, id)
        };
        let latency = clock.now().duration_since(begun);
        match result {
            Ok(()) => done.push(Done {
                at: started.elapsed(),
                latency,
            }),
            Err(e) => {
                errors.push(format!(
                    "client {number} at {:.1} s: {e:#}",
                    offset.as_secs_f64()
                ));
                // The connection may be gone; a new one carries on.
                std::thread::sleep(RECONNECT_PAUSE);
                match connect(target, &ctx.settings.credentials) {
                    Ok(fresh) => conn = fresh,
                    Err(e) => errors.push(format!("client {number} reconnecting: {e:#}")),
                }
            }
        }
    }
    (done, errors)
}
