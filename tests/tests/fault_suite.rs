//! Issue 14's fault suite, the part that needs a managed service: 100
//! suspend/wake cycles at random moments (the `process` driver: SIGSTOP
//! and SIGCONT of a `mariadbd` Torpor runs) while one client keeps
//! querying and writing through Torpor.
//!
//! The client must see no error at all (a suspend waits for the query in
//! flight, a query waits for the wake), keep its session (connection id,
//! a user variable, a prepared statement), and every commit it was told
//! of must be in the table exactly once — a checker compares what the
//! client was told with the table afterwards. The figures are printed
//! (`--nocapture` shows them).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use rand::{Rng, SeedableRng};
use torpor::config::DriverKind;
use torpor::service::lifecycle::State;
use torpor_tests::serverless::{name, Managed};

/// Suspend/wake cycles to run.
const CYCLES: u64 = 100;

/// Bound on the whole run, against a hang (never a timing assertion: on
/// this 2-core machine 100 cycles take well under it).
const HANG_LIMIT: Duration = Duration::from_secs(600);

/// What the client did and was told.
#[derive(Debug, Default)]
struct ClientLog {
    /// Rows the client was told were committed, by key.
    committed: Vec<u64>,
    /// Statements run.
    statements: u64,
    /// Transactions (BEGIN … COMMIT) among them.
    transactions: u64,
    /// Longest wait for one statement's answer (a wake included).
    longest: Duration,
}

/// Counts a statement answered, and how long its answer took.
fn timed(log: &mut ClientLog, started: Instant) {
    log.statements += 1;
    log.longest = log.longest.max(started.elapsed());
}

/// One client on one connection, until `stop`: autocommit inserts,
/// two-row transactions, and reads that check its session kept its
/// state, with short random pauses between them so that suspends land.
/// Any error ends it with that error.
fn client(managed: &Managed, seed: u64, stop: &AtomicBool) -> Result<ClientLog, String> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut conn = managed.connect();
    conn.query_drop("SET @kept = 'still here'")
        .map_err(|e| format!("set: {e}"))?;
    let stmt = conn
        .prep("SELECT ? + 1, @kept")
        .map_err(|e| format!("prepare: {e}"))?;
    let id: Option<u64> = conn
        .query_first("SELECT CONNECTION_ID()")
        .map_err(|e| format!("id: {e}"))?;
    let mut log = ClientLog::default();
    let mut key = 0u64;
    while !stop.load(Ordering::Acquire) {
        let started = Instant::now();
        match rng.random_range(0..3) {
            0 => {
                key += 1;
                conn.query_drop(format!("INSERT INTO test.cycles (k) VALUES ({key})"))
                    .map_err(|e| format!("insert {key}: {e}"))?;
                log.committed.push(key);
                timed(&mut log, started);
            }
            1 => {
                let (a, b) = (key + 1, key + 2);
                key += 2;
                for sql in [
                    "BEGIN".to_string(),
                    format!("INSERT INTO test.cycles (k) VALUES ({a})"),
                    format!("INSERT INTO test.cycles (k) VALUES ({b})"),
                    "COMMIT".to_string(),
                ] {
                    let started = Instant::now();
                    conn.query_drop(&sql).map_err(|e| format!("{sql}: {e}"))?;
                    timed(&mut log, started);
                }
                log.committed.extend([a, b]);
                log.transactions += 1;
            }
            _ => {
                let row: Option<(u64, String, u64)> = conn
                    .query_first("SELECT CONNECTION_ID(), @kept, COUNT(*) FROM test.cycles")
                    .map_err(|e| format!("select: {e}"))?;
                timed(&mut log, started);
                let Some((now, kept, rows)) = row else {
                    return Err("select: no row".into());
                };
                if Some(now) != id || kept != "still here" {
                    return Err(format!(
                        "the session changed: id {now} (was {id:?}), @kept {kept:?}"
                    ));
                }
                if rows != log.committed.len() as u64 {
                    return Err(format!(
                        "the table has {rows} rows, the client was told of {} commits",
                        log.committed.len()
                    ));
                }
                let started = Instant::now();
                let (n, kept): (i64, String) = conn
                    .exec_first(&stmt, (41,))
                    .map_err(|e| format!("execute: {e}"))?
                    .ok_or("execute: no row")?;
                timed(&mut log, started);
                if (n, kept.as_str()) != (42, "still here") {
                    return Err(format!("the prepared statement answered {n}, {kept:?}"));
                }
            }
        }
        // 0 to 3 ms between statements: back to back, every suspend
        // would meet a query in flight and be refused.
        std::thread::sleep(Duration::from_micros(rng.random_range(0..3_000)));
    }
    Ok(log)
}

#[test]
fn a_hundred_random_suspend_wake_cycles_under_a_querying_writer() {
    let service = name("fault", "cycles");
    let managed = Arc::new(Managed::start(DriverKind::Process, &service, |s, _| {
        s.wake_timeout_secs = 60;
    }));
    managed
        .connect()
        .query_drop("CREATE TABLE test.cycles (id BIGINT AUTO_INCREMENT PRIMARY KEY, k BIGINT NOT NULL, KEY (k))")
        .expect("table");
    let seed: u64 = rand::rng().random();
    println!("suspend/wake cycles: seed {seed}");
    let stop = Arc::new(AtomicBool::new(false));
    let suspends = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let writer = {
        let (managed, stop) = (Arc::clone(&managed), Arc::clone(&stop));
        std::thread::spawn(move || client(&managed, seed, &stop))
    };
    let wakes_before = managed.entered(State::Waking);
    let started = Instant::now();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5eed);
    // The suspender: at random moments (0-40 ms after the last wake
    // finished), a suspend; the client's next query wakes the service.
    while managed.entered(State::Waking) - wakes_before < CYCLES {
        assert!(
            started.elapsed() < HANG_LIMIT,
            "{} cycles in {HANG_LIMIT:?}",
            managed.entered(State::Waking) - wakes_before
        );
        if writer.is_finished() {
            break; // it failed: join() below says why
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(0..40)));
        match managed.act(&service, "suspend").0 {
            200 => {
                suspends.fetch_add(1, Ordering::Relaxed);
                // Wait for the client's query to wake it (or for the
                // client to have failed).
                let deadline = Instant::now() + Duration::from_secs(120);
                while managed.state() != State::Active && !writer.is_finished() {
                    assert!(Instant::now() < deadline, "never woken after a suspend");
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            // A query in flight, a pinned session, or a wake under way.
            _ => {
                refused.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    stop.store(true, Ordering::Release);
    let log = match writer.join().expect("client thread") {
        Ok(log) => log,
        Err(e) => panic!(
            "the client saw an error after {} suspends: {e}",
            suspends.load(Ordering::Relaxed)
        ),
    };
    let cycles = managed.entered(State::Waking) - wakes_before;
    let took = started.elapsed();

    // The checker: every commit the client was told of is there exactly
    // once, and nothing else is.
    let mut conn = managed.connect();
    let rows: Vec<(u64, u64)> = conn
        .query("SELECT k, COUNT(*) FROM test.cycles GROUP BY k")
        .expect("rows");
    let mut present: HashMap<u64, u64> = rows.into_iter().collect();
    let mut lost = Vec::new();
    let mut duplicated = Vec::new();
    for key in &log.committed {
        match present.remove(key) {
            None => lost.push(*key),
            Some(1) => {}
            Some(_) => duplicated.push(*key),
        }
    }
    let unrecorded: Vec<u64> = present.into_keys().collect();
    println!(
        "suspend/wake cycles: {cycles} wakes after {} suspends ({} suspend requests refused) in {:.1} s",
        suspends.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
        took.as_secs_f64()
    );
    println!(
        "  client: {} statements ({} transactions), 0 errors, 0 sessions closed; longest wait for an answer {:.0} ms",
        log.statements,
        log.transactions,
        log.longest.as_secs_f64() * 1e3
    );
    println!(
        "  commits told {}: lost {}, duplicated {}, rows of no commit {}",
        log.committed.len(),
        lost.len(),
        duplicated.len(),
        unrecorded.len()
    );
    assert!(cycles >= CYCLES, "only {cycles} cycles ran");
    assert!(lost.is_empty(), "lost commits: {lost:?}");
    assert!(duplicated.is_empty(), "duplicated commits: {duplicated:?}");
    assert!(unrecorded.is_empty(), "rows of no commit: {unrecorded:?}");
}
