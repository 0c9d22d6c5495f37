//! The relocation scenarios, shared by the drivers that relocate
//! (`tests/tests/relocate_*.rs`): a live service moved under writers and
//! sessions with state, one moved under sysbench, and a parked one moved
//! by a copy of its data at rest. Each returns what the driver's own test checks next (that the
//! old backend is gone) and prints.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use serde_json::Value;
use torpor::service::lifecycle::State;

use crate::serverless::{Managed, Stateful};
use crate::{mysql_opts, APP_PASSWORD, APP_USER};

/// What the writers were told was committed, and what went wrong.
#[derive(Default)]
pub struct Ledger {
    /// Acknowledged commits: (writer, seq).
    pub committed: Vec<(u32, u32)>,
    /// Errors clients saw.
    pub errors: Vec<String>,
}

/// A writer: autocommit inserts of (writer, seq) into `test.commits`,
/// each acknowledged one recorded, until `stop`.
pub fn writer(addr: SocketAddr, id: u32, stop: Arc<AtomicBool>, ledger: Arc<Mutex<Ledger>>) {
    let mut conn =
        mysql::Conn::new(mysql_opts(addr, APP_USER, APP_PASSWORD)).expect("writer connects");
    let mut seq = 0;
    while !stop.load(Ordering::Acquire) {
        seq += 1;
        match conn.exec_drop(
            "INSERT INTO test.commits (writer, seq) VALUES (?, ?)",
            (id, seq),
        ) {
            Ok(()) => ledger.lock().unwrap().committed.push((id, seq)),
            Err(e) => ledger
                .lock()
                .unwrap()
                .errors
                .push(format!("writer {id} seq {seq}: {e}")),
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `GET /services/{service}`.
pub fn service_view(managed: &Managed, service: &str) -> Value {
    let (status, body) = managed.get(&format!("/services/{service}"));
    assert_eq!(status, 200, "{body}");
    body
}

/// Waits until the relocation moved or failed; returns the service.
pub fn wait_relocated(managed: &Managed, service: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let body = service_view(managed, service);
        let phase = body["relocation"]["phase"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if phase == "moved" || phase == "failed" {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "still {phase} after {limit:?}: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until `gone` says the old backend is gone.
pub fn wait_gone(what: &str, limit: Duration, mut gone: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !gone() {
        assert!(Instant::now() < deadline, "{what} is still there");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What a live move did, for the driver's own checks and figures.
pub struct LiveMove {
    /// The service as the admin API shows it after the move.
    pub view: Value,
    /// Commits acknowledged to the writers (all found, once each).
    pub commits: usize,
    /// Bytes of the backup copied into the target.
    pub copied: u64,
}

impl LiveMove {
    /// One line of figures for the test's output.
    pub fn figures(&self) -> String {
        let relocation = &self.view["relocation"];
        format!(
            "{} commits by 4 writers, 0 errors; copy {} ms ({} MiB), catch-up {} ms, switch {} ms, stall {} ms, total {} ms",
            self.commits,
            relocation["copy_ms"],
            self.copied >> 20,
            relocation["catch_up_ms"],
            relocation["switch_ms"],
            relocation["stall_ms"],
            relocation["total_ms"],
        )
    }
}

/// Moves the live `service` while four writers commit through Torpor, a
/// session holds state and another an open transaction: the move ends
/// `moved`, no client sees an error, every acknowledged commit is there
/// exactly once, the sessions' state and the open transaction carried
/// over, and another server (another `@@server_id`) answers.
pub fn moves_live_with_nothing_lost(managed: &Managed, service: &str) -> LiveMove {
    let mut setup = managed.connect();
    setup
        .query_drop(
            "CREATE TABLE test.commits (writer INT NOT NULL, seq INT NOT NULL, \
             PRIMARY KEY (writer, seq)) ENGINE=InnoDB",
        )
        .expect("create table");
    // Data worth copying: a few MiB.
    setup
        .query_drop("CREATE TABLE test.bulk (id INT PRIMARY KEY AUTO_INCREMENT, pad CHAR(200))")
        .expect("create bulk");
    setup
        .query_drop("INSERT INTO test.bulk (pad) SELECT REPEAT('x', 200) FROM test.seq_1_to_20000")
        .expect("fill bulk");
    let server_before: u32 = setup
        .query_first("SELECT @@server_id")
        .expect("server id")
        .expect("a row");

    // A session with state, and one in the middle of a transaction.
    let mut stateful = Stateful::open(managed);
    let mut in_transaction = managed.connect();
    in_transaction.query_drop("SET @mine = 7").expect("set");
    in_transaction.query_drop("BEGIN").expect("begin");
    in_transaction
        .query_drop("INSERT INTO test.commits (writer, seq) VALUES (1000, 1)")
        .expect("insert in transaction");

    let stop = Arc::new(AtomicBool::new(false));
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let writers: Vec<_> = (0..4)
        .map(|id| {
            let (stop, ledger, addr) = (Arc::clone(&stop), Arc::clone(&ledger), managed.addr());
            std::thread::spawn(move || writer(addr, id, stop, ledger))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));

    let (status, body) = managed.act(service, "relocate");
    assert_eq!(status, 202, "{body}");
    let moved = wait_relocated(managed, service, Duration::from_secs(180));
    assert_eq!(moved["relocation"]["phase"], "moved", "{moved}");
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Release);
    for w in writers {
        w.join().expect("writer");
    }
    let ledger = ledger.lock().unwrap();
    assert!(
        ledger.errors.is_empty(),
        "clients saw errors: {:?}",
        ledger.errors
    );
    assert!(
        ledger.committed.len() > 100,
        "too few commits to tell: {}",
        ledger.committed.len()
    );

    // The open transaction carried over: it commits on the new backend.
    in_transaction
        .query_drop("INSERT INTO test.commits (writer, seq) VALUES (1000, 2)")
        .expect("insert after the move");
    in_transaction
        .query_drop("COMMIT")
        .expect("commit after the move");
    let mine: Option<i64> = in_transaction.query_first("SELECT @mine").expect("@mine");
    assert_eq!(mine, Some(7));
    stateful.check();

    // Every acknowledged commit is there once, and nothing else is.
    let mut check = managed.connect();
    let rows: Vec<(u32, u32)> = check
        .query("SELECT writer, seq FROM test.commits WHERE writer < 1000 ORDER BY writer, seq")
        .expect("read commits");
    let mut acked = ledger.committed.clone();
    acked.sort_unstable();
    assert_eq!(rows.len(), acked.len(), "lost or extra commits");
    assert_eq!(rows, acked);
    let carried: i64 = check
        .query_first("SELECT COUNT(*) FROM test.commits WHERE writer = 1000")
        .expect("count")
        .expect("a row");
    assert_eq!(carried, 2, "the transaction's two rows");
    let bulk: i64 = check
        .query_first("SELECT COUNT(*) FROM test.bulk")
        .expect("count")
        .expect("a row");
    assert_eq!(bulk, 20000);

    let server_after: u32 = check
        .query_first("SELECT @@server_id")
        .expect("server id")
        .expect("a row");
    assert_ne!(server_before, server_after, "still the same server");
    // The target was hydrated with the source's hot pages: the backup
    // carries the source's buffer pool dump, which the target loads (a
    // backup without it says "Cannot open '…ib_buffer_pool'").
    let load_status = wait_buffer_pool_loaded(&mut check);
    assert!(load_status.contains("load completed"), "{load_status}");
    assert_eq!(managed.state(), State::Active);
    assert!(moved["backend_generation"].as_u64() >= Some(1), "{moved}");
    let copied = moved["relocation"]["bytes_copied"].as_u64().unwrap_or(0);
    assert!(copied > 4 << 20, "bytes copied: {copied}");
    LiveMove {
        commits: acked.len(),
        copied,
        view: moved,
    }
}

/// The server's `Innodb_buffer_pool_load_status` once its load of a
/// buffer pool dump has ended (or after 30 s).
fn wait_buffer_pool_loaded(session: &mut mysql::Conn) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status: String = session
            .query_first::<(String, String), _>(
                "SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_load_status'",
            )
            .expect("the load status")
            .map(|(_, value)| value)
            .unwrap_or_default();
        let loading = status.starts_with("Loaded ") || status.contains("not started");
        if !loading || Instant::now() > deadline {
            return status;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Parks `service` with data and a session with state, moves it, and
/// returns the service once moved (still parked). Call
/// [`wakes_where_it_moved`] after checking the old backend is gone.
pub fn moves_parked(managed: &Managed, service: &str) -> (Value, Stateful, u32) {
    let mut setup = managed.connect();
    setup
        .query_drop("CREATE TABLE test.kept (id INT PRIMARY KEY)")
        .expect("create");
    setup
        .query_drop("INSERT INTO test.kept SELECT seq FROM test.seq_1_to_1000")
        .expect("fill");
    let server_before: u32 = setup
        .query_first("SELECT @@server_id")
        .expect("server id")
        .expect("a row");
    drop(setup);
    let session = Stateful::open(managed);
    let (status, body) = managed.act(service, "park");
    assert_eq!(status, 200, "{body}");

    let (status, body) = managed.act(service, "relocate");
    assert_eq!(status, 202, "{body}");
    let moved = wait_relocated(managed, service, Duration::from_secs(120));
    assert_eq!(moved["relocation"]["phase"], "moved", "{moved}");
    assert_eq!(moved["state"], "parked", "{moved}");
    (moved, session, server_before)
}

/// The next query wakes a service moved at rest on its new backend, with
/// its data and the session's state as they were.
pub fn wakes_where_it_moved(mut session: Stateful, server_before: u32) {
    session.check();
    let (rows, server_after): (i64, u32) = session
        .conn
        .query_first("SELECT (SELECT COUNT(*) FROM test.kept), @@server_id")
        .expect("query")
        .expect("a row");
    assert_eq!(rows, 1000);
    assert_ne!(server_before, server_after, "still the same server");
}

/// sysbench `oltp_read_write` with 8 threads and server-side prepared
/// statements, and a commit checker (two writers whose every acknowledged
/// commit is recorded), run through a relocation of `service` (`POST
/// /services/{service}/{action}`) without one error or reconnect; every
/// table is whole afterwards (sysbench's transactions delete and
/// re-insert rows: a lost or doubled statement shows as a row count),
/// every acknowledged commit is there exactly once, and a session's user
/// variable, `sql_mode` and prepared statement are intact. Returns the
/// figures.
pub fn sysbench_through_a_move(managed: &Managed, service: &str, action: &str) -> String {
    use crate::sysbench::{parse_summary, sysbench, TABLES, TABLE_SIZE};
    sysbench(managed.addr(), "test", "oltp_read_write", &[], "prepare");
    managed
        .connect()
        .query_drop(
            "CREATE TABLE test.commits (writer INT NOT NULL, seq INT NOT NULL, \
             PRIMARY KEY (writer, seq)) ENGINE=InnoDB",
        )
        .expect("create table");
    let mut stateful = Stateful::open(managed);
    let stop = Arc::new(AtomicBool::new(false));
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let writers: Vec<_> = (0..2)
        .map(|id| {
            let (stop, ledger, addr) = (Arc::clone(&stop), Arc::clone(&ledger), managed.addr());
            std::thread::spawn(move || writer(addr, id, stop, ledger))
        })
        .collect();
    let load = {
        let addr = managed.addr();
        std::thread::spawn(move || {
            sysbench(
                addr,
                "test",
                "oltp_read_write",
                &[
                    "--threads=8",
                    "--time=30",
                    "--report-interval=0",
                    "--db-ps-mode=auto",
                ],
                "run",
            )
        })
    };
    std::thread::sleep(Duration::from_secs(4));
    let (status, body) = managed.act(service, action);
    assert_eq!(status, 202, "{body}");
    let moved = wait_relocated(managed, service, Duration::from_secs(120));
    assert_eq!(moved["relocation"]["phase"], "moved", "{moved}");
    let output = load.join().expect("sysbench");
    stop.store(true, Ordering::Release);
    for w in writers {
        w.join().expect("writer");
    }
    let ledger = ledger.lock().unwrap();
    assert!(
        ledger.errors.is_empty(),
        "writers saw errors: {:?}",
        ledger.errors
    );
    let mut acked = ledger.committed.clone();
    acked.sort_unstable();
    let rows: Vec<(u32, u32)> = managed
        .connect()
        .query("SELECT writer, seq FROM test.commits ORDER BY writer, seq")
        .expect("read commits");
    assert_eq!(rows.len(), acked.len(), "lost or extra commits");
    assert_eq!(rows, acked);
    stateful.check();
    let summary = parse_summary(&output);
    assert!(summary.transactions > 0, "{output}");
    assert_eq!(summary.ignored_errors, 0, "{output}");
    assert_eq!(summary.reconnects, 0, "{output}");
    let mut check = managed.connect();
    for table in 1..=TABLES {
        let count: Option<u64> = check
            .query_first(format!("SELECT COUNT(*) FROM test.sbtest{table}"))
            .expect("count");
        assert_eq!(count, Some(TABLE_SIZE), "sbtest{table} after the move");
    }
    format!(
        "{} transactions, {} checked commits, 0 errors, 0 reconnects; copy {} ms, catch-up {} ms, stall {} ms, total {} ms",
        summary.transactions,
        acked.len(),
        moved["relocation"]["copy_ms"],
        moved["relocation"]["catch_up_ms"],
        moved["relocation"]["stall_ms"],
        moved["relocation"]["total_ms"],
    )
}
