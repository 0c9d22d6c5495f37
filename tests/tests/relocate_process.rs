//! Relocation with the `process` driver: a live service moves to a new
//! `mariadbd` on a new datadir (a copy by `mariadb-backup`, a catch-up by
//! GTID replication, a switch-over) while writers commit through Torpor
//! and sessions hold state. Nothing committed is lost or written twice,
//! no client sees an error, and every session finds its state — and its
//! open transaction — on the new backend.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use serde_json::Value;
use torpor::config::DriverKind;
use torpor::service::lifecycle::State;
use torpor_tests::serverless::{name, Managed, Stateful};

fn require_programs() {
    for (names, package) in [
        (&["mariadbd", "mysqld"][..], "mariadb-server"),
        (&["mariadb-backup", "mariabackup"][..], "mariadb-backup"),
        (&["mbstream"][..], "mariadb-backup"),
    ] {
        assert!(
            torpor::scaler::process::find_program(names).is_some(),
            "{} is not installed: install Debian's {package} (tests/run does)",
            names[0]
        );
    }
}

/// What the writers were told was committed, and what went wrong.
#[derive(Default)]
struct Ledger {
    committed: Vec<(u32, u32)>,
    errors: Vec<String>,
}

/// A writer: autocommit inserts of (writer, seq), each acknowledged one
/// recorded, until `stop`.
fn writer(
    managed_addr: std::net::SocketAddr,
    id: u32,
    stop: Arc<AtomicBool>,
    ledger: Arc<Mutex<Ledger>>,
) {
    let mut conn = mysql::Conn::new(torpor_tests::mysql_opts(
        managed_addr,
        torpor_tests::APP_USER,
        torpor_tests::APP_PASSWORD,
    ))
    .expect("writer connects");
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

fn relocation(managed: &Managed, service: &str) -> Value {
    let (status, body) = managed.get(&format!("/services/{service}"));
    assert_eq!(status, 200, "{body}");
    body
}

/// Waits until the relocation moved or failed; returns the service.
fn wait_relocated(managed: &Managed, service: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let body = relocation(managed, service);
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

#[test]
fn a_live_service_moves_to_a_new_process_with_nothing_lost() {
    require_programs();
    let service = name("proc", "move");
    let managed = Managed::start(DriverKind::Process, &service, |_, _| {});
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
    let mut stateful = Stateful::open(&managed);
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

    let (status, body) = managed.act(&service, "relocate");
    assert_eq!(status, 202, "{body}");
    let moved = wait_relocated(&managed, &service, Duration::from_secs(120));
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

    // Another server, and the old one gone with its datadir.
    let server_after: u32 = check
        .query_first("SELECT @@server_id")
        .expect("server id")
        .expect("a row");
    assert_ne!(server_before, server_after, "still the same mariadbd");
    assert_eq!(managed.state(), State::Active);
    assert!(moved["backend_generation"].as_u64() >= Some(1), "{moved}");
    let home = managed
        .state_dir
        .path()
        .join("services")
        .join(&service)
        .join("data");
    let deadline = Instant::now() + Duration::from_secs(30);
    while home.exists() {
        assert!(Instant::now() < deadline, "the old datadir is still there");
        std::thread::sleep(Duration::from_millis(100));
    }
    let placement = std::fs::read_to_string(home.with_extension("placement")).expect("placement");
    assert!(
        std::path::Path::new(placement.trim())
            .join("mysql")
            .is_dir(),
        "the placement names no datadir: {placement}"
    );
    let copied = moved["relocation"]["bytes_copied"].as_u64().unwrap_or(0);
    assert!(copied > 4 << 20, "bytes copied: {copied}");
    println!(
        "relocated: {} commits by 4 writers, 0 errors; copy {} ms ({} MiB), catch-up {} ms, switch {} ms, stall {} ms, total {} ms",
        acked.len(),
        moved["relocation"]["copy_ms"],
        copied >> 20,
        moved["relocation"]["catch_up_ms"],
        moved["relocation"]["switch_ms"],
        moved["relocation"]["stall_ms"],
        moved["relocation"]["total_ms"],
    );
}

/// A session holding a temporary table (which cannot move) makes the
/// relocation refuse, naming it; forced, it moves and that session gets
/// an error while the others keep going.
#[test]
fn a_pin_that_cannot_move_refuses_the_relocation_unless_forced() {
    require_programs();
    let service = name("proc", "pinmove");
    let managed = Managed::start(DriverKind::Process, &service, |_, _| {});
    let mut pinned = managed.connect();
    pinned
        .query_drop("CREATE TEMPORARY TABLE scratch (a INT)")
        .expect("temporary table");
    let (status, body) = managed.act(&service, "relocate");
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("temporary-table"),
        "{body}"
    );
    let mut other = Stateful::open(&managed);
    let (status, body) = managed.act(&service, "relocate?force=1");
    assert_eq!(status, 202, "{body}");
    let moved = wait_relocated(&managed, &service, Duration::from_secs(120));
    assert_eq!(moved["relocation"]["phase"], "moved", "{moved}");
    assert!(
        moved["relocation"]["pins_left"]
            .to_string()
            .contains("temporary-table"),
        "{moved}"
    );
    other.check();
    match pinned.query_drop("SELECT * FROM scratch") {
        Err(mysql::Error::MySqlError(e)) => {
            assert!(
                e.message.to_lowercase().contains("lost") || e.code > 0,
                "{e}"
            )
        }
        Err(e) => println!("the pinned session ended: {e}"),
        Ok(()) => panic!("a temporary table survived a move it cannot survive"),
    }
}

/// sysbench `oltp_read_write` with 8 threads and server-side prepared
/// statements runs through a relocation without one error or reconnect,
/// and every table is whole afterwards (its transactions delete and
/// re-insert rows: a lost or doubled statement shows as a row count).
#[test]
fn sysbench_read_write_runs_through_a_relocation() {
    use torpor_tests::sysbench::{parse_summary, sysbench, TABLES, TABLE_SIZE};
    require_programs();
    let service = name("proc", "sbmove");
    let managed = Managed::start(DriverKind::Process, &service, |_, _| {});
    sysbench(managed.addr(), "test", "oltp_read_write", &[], "prepare");
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
    let (status, body) = managed.act(&service, "relocate");
    assert_eq!(status, 202, "{body}");
    let moved = wait_relocated(&managed, &service, Duration::from_secs(120));
    assert_eq!(moved["relocation"]["phase"], "moved", "{moved}");
    let output = load.join().expect("sysbench");
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
    println!(
        "sysbench through a relocation: {} transactions, 0 errors, 0 reconnects; copy {} ms, catch-up {} ms, stall {} ms, total {} ms",
        summary.transactions,
        moved["relocation"]["copy_ms"],
        moved["relocation"]["catch_up_ms"],
        moved["relocation"]["stall_ms"],
        moved["relocation"]["total_ms"],
    );
}

/// A parked service moves by a plain copy of its data at rest; the next
/// query wakes it on the new datadir, with its data and the sessions'
/// state as they were.
#[test]
fn a_parked_service_moves_by_copying_its_data_at_rest() {
    require_programs();
    let service = name("proc", "restmove");
    let managed = Managed::start(DriverKind::Process, &service, |_, _| {});
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
    let mut session = Stateful::open(&managed);
    let (status, body) = managed.act(&service, "park");
    assert_eq!(status, 200, "{body}");

    let (status, body) = managed.act(&service, "relocate");
    assert_eq!(status, 202, "{body}");
    let moved = wait_relocated(&managed, &service, Duration::from_secs(60));
    assert_eq!(moved["relocation"]["phase"], "moved", "{moved}");
    assert_eq!(moved["state"], "parked", "{moved}");
    let home = managed
        .state_dir
        .path()
        .join("services")
        .join(&service)
        .join("data");
    let deadline = Instant::now() + Duration::from_secs(30);
    while home.exists() {
        assert!(Instant::now() < deadline, "the old datadir is still there");
        std::thread::sleep(Duration::from_millis(100));
    }

    // The next query wakes it where it moved to.
    session.check();
    let (rows, server_after): (i64, u32) = session
        .conn
        .query_first("SELECT (SELECT COUNT(*) FROM test.kept), @@server_id")
        .expect("query")
        .expect("a row");
    assert_eq!(rows, 1000);
    assert_ne!(
        server_before, server_after,
        "still the same datadir's server"
    );
    println!(
        "parked service moved at rest: {} bytes copied in {} ms",
        moved["relocation"]["bytes_copied"], moved["relocation"]["copy_ms"]
    );
}
