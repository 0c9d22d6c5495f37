//! Running Torpor as operators do: the real `torpor` binary with its
//! flags, SIGTERM with queries in flight, JSON logs, and the I/O drivers
//! (epoll forced, and io_uring refused by a seccomp filter as Docker's
//! default profile refuses it).

use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use torpor::config::IoDriver;
use torpor_protocol::command::Command as Com;
use torpor_tests::binary::{Running, GRACE_SECS, HANG_LIMIT};
use torpor_tests::raw::{base_capabilities, com, LoginOptions, RawClient};
use torpor_tests::{admin_connect, backend, connect, Torpor, APP_PASSWORD, APP_USER};

/// The "worker started" log entries: (worker index, driver).
fn workers_started(log: &[serde_json::Value]) -> Vec<(u64, String)> {
    log.iter()
        .filter(|line| line["fields"]["message"] == "worker started")
        .map(|line| {
            let fields = &line["fields"];
            (
                fields["worker"].as_u64().expect("worker index"),
                fields["driver"].as_str().expect("driver name").to_string(),
            )
        })
        .collect()
}

fn run_queries(addr: SocketAddr) {
    let mut conn = connect(addr);
    let sum: Option<u64> = conn
        .query_first("SELECT SUM(seq) FROM seq_1_to_100")
        .unwrap();
    assert_eq!(sum, Some(5050));
    let echoed: Option<String> = conn.exec_first("SELECT CONCAT(?, '!')", ("hi",)).unwrap();
    assert_eq!(echoed.as_deref(), Some("hi!"));
}

/// SIGTERM while a query runs: the query finishes and its client gets the
/// row, new connections are refused from the moment of the signal, and the
/// process exits 0 within the grace period.
#[test]
fn sigterm_finishes_the_running_query_then_exits() {
    let mut torpor = Running::start(&["--workers", "2"], false);
    let mut busy = connect(torpor.addr);
    let sql = "SELECT SLEEP(3) /* operations-graceful */";
    let (done, result) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(busy.query_first::<i64, _>(sql));
    });
    // Signal only once the backend is running the query.
    let mut admin = admin_connect();
    let deadline = Instant::now() + HANG_LIMIT;
    loop {
        let running: Option<u64> = admin
            .query_first("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT SLEEP(3) /* operations-graceful%'")
            .unwrap();
        if running == Some(1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the query never started on the backend"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    torpor.sigterm();

    // The listeners close at once; the query is still sleeping meanwhile.
    let deadline = Instant::now() + HANG_LIMIT;
    while TcpStream::connect(torpor.addr).is_ok() {
        assert!(
            Instant::now() < deadline,
            "still accepting connections after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        matches!(result.try_recv(), Err(mpsc::TryRecvError::Empty)),
        "connections were refused only after the running query ended"
    );
    assert!(
        torpor.child.try_wait().unwrap().is_none(),
        "the process waits for the query"
    );

    let row = result
        .recv_timeout(HANG_LIMIT)
        .expect("the running query never finished");
    assert_eq!(row.expect("the running query completes"), Some(0));
    let status = torpor
        .wait_exit(Duration::from_secs(GRACE_SECS) + HANG_LIMIT)
        .unwrap_or_else(|| panic!("torpor did not exit; log:\n{}", torpor.log_text()));
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        torpor.log_text()
    );
}

/// `--log-format json`: every line is a JSON object; each worker names
/// its I/O driver; each client connection has a login line and a close
/// line (reason, duration), and no line shows a password or query text.
#[test]
fn json_logs_are_json_lines_name_each_workers_driver_and_each_connections_lifecycle() {
    let mut torpor = Running::start(&["--log-format", "json", "--workers", "2"], false);
    run_queries(torpor.addr);
    // A failed login, so the log has a session failure line too.
    let mut options = LoginOptions::app(base_capabilities());
    options.password = "wrong".into();
    assert!(RawClient::try_connect(torpor.addr, &options).is_err());
    torpor.stop();

    let log = torpor.json_log();
    for line in &log {
        for key in ["timestamp", "level", "fields", "target"] {
            assert!(line.get(key).is_some(), "no {key} in {line}");
        }
    }
    let mut workers = workers_started(&log);
    workers.sort();
    assert_eq!(workers.len(), 2, "one line per worker: {workers:?}");
    assert_eq!((workers[0].0, workers[1].0), (0, 1));
    for (_, driver) in &workers {
        assert!(driver == "io_uring" || driver == "epoll", "driver {driver}");
    }
    assert!(
        log.iter()
            .any(|line| line["fields"]["message"] == "listening"),
        "the listening line is there"
    );
    // Each connection's lifecycle: logged in, then closed with its reason
    // and duration; the failed login says why. No secret, no query text.
    let with_message = |message: &str| -> Vec<&serde_json::Value> {
        log.iter()
            .filter(|line| line["fields"]["message"] == message)
            .map(|line| &line["fields"])
            .collect()
    };
    let logged_in = with_message("logged in");
    assert_eq!(logged_in.len(), 1, "{logged_in:?}");
    assert_eq!(logged_in[0]["user"], APP_USER);
    let closed = with_message("connection closed");
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(closed[0]["id"], logged_in[0]["id"]);
    assert_eq!(closed[0]["reason"], "client_quit");
    assert_eq!(closed[0]["service"], "default");
    assert!(closed[0]["duration_ms"].is_u64(), "{}", closed[0]);
    assert!(
        log.iter().any(|line| line["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("access denied for user"))),
        "the failed login has its line"
    );
    let text = torpor.log_text();
    for secret in [APP_PASSWORD, "seq_1_to_100", "CONCAT"] {
        assert!(!text.contains(secret), "the log shows {secret:?}:\n{text}");
    }
}

/// The epoll driver, forced, serves the same things the default does.
#[test]
fn epoll_driver_passes_a_basic_suite() {
    let torpor = Torpor::start_with(backend().addr(), |c| c.io_driver = IoDriver::Epoll);
    run_queries(torpor.addr());
    let mut conn = connect(torpor.addr());
    // Several results, a transaction, a large row.
    let mut sets: Vec<Vec<u8>> = Vec::new();
    let mut result = conn.query_iter("SELECT 1; SELECT 2; SELECT 3").unwrap();
    while let Some(set) = result.iter() {
        sets.push(set.map(|row| mysql::from_row::<u8>(row.unwrap())).collect());
    }
    drop(result);
    assert_eq!(sets, vec![vec![1], vec![2], vec![3]]);
    conn.query_drop("CREATE TEMPORARY TABLE ops_epoll (n INT) ENGINE=InnoDB")
        .unwrap();
    conn.query_drop("START TRANSACTION").unwrap();
    conn.query_drop("INSERT INTO ops_epoll VALUES (1), (2)")
        .unwrap();
    conn.query_drop("ROLLBACK").unwrap();
    let count: Option<u64> = conn.query_first("SELECT COUNT(*) FROM ops_epoll").unwrap();
    assert_eq!(count, Some(0));
    let big: Option<u64> = conn
        .query_first("SELECT LENGTH(REPEAT('e', 3000000))")
        .unwrap();
    assert_eq!(big, Some(3_000_000));
    let row: Option<String> = conn.query_first("SELECT REPEAT('e', 3000000)").unwrap();
    assert_eq!(row.map(|r| r.len()), Some(3_000_000));

    // Pipelined commands over one connection.
    let mut raw = RawClient::connect(torpor.addr(), &LoginOptions::app(base_capabilities()));
    let mut wire = bytes::BytesMut::new();
    for _ in 0..20 {
        torpor_protocol::frame::write_payload(&mut wire, 0, &com(Com::Ping));
    }
    raw.write_raw(&wire).unwrap();
    for _ in 0..20 {
        raw.read_reply_for(&com(Com::Ping))
            .unwrap()
            .unwrap()
            .expect_ok("ping");
    }

    // Clients on several threads at once.
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let addr = torpor.addr();
            std::thread::spawn(move || {
                let mut conn = connect(addr);
                for i in 0..50u64 {
                    let got: Option<u64> =
                        conn.exec_first("SELECT ? * 2", (t * 1000 + i,)).unwrap();
                    assert_eq!(got, Some((t * 1000 + i) * 2));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("a client thread");
    }
}

/// Where io_uring is refused (Docker's default seccomp profile), the
/// default driver choice falls back to epoll, says so in the log, and
/// serves.
#[test]
fn io_uring_refused_by_seccomp_falls_back_to_epoll() {
    let mut torpor = Running::start(&["--log-format", "json", "--workers", "2"], true);
    run_queries(torpor.addr);
    torpor.stop();
    let workers = workers_started(&torpor.json_log());
    assert_eq!(workers.len(), 2, "{workers:?}");
    for (worker, driver) in &workers {
        assert_eq!(driver, "epoll", "worker {worker}");
    }
}

/// With io_uring forced and refused, Torpor must not look like it ran:
/// it fails to start with a non-zero exit status (a supervisor then sees
/// a failure, not a clean stop). This also shows the seccomp filter above
/// really refuses io_uring on this machine.
#[test]
fn forced_io_uring_when_refused_fails_to_start() {
    let backend = backend().addr().to_string();
    let user = format!("{APP_USER}:{APP_PASSWORD}");
    let mut running = Running::spawn(
        &[
            "--backend",
            &backend,
            "--user",
            &user,
            "--io-driver",
            "io-uring",
            "--log-format",
            "json",
            "--workers",
            "2",
        ],
        true,
    );
    let addr = running.addr;
    let status = match running.wait_exit(HANG_LIMIT) {
        Some(status) => status,
        None => panic!(
            "torpor kept running with io_uring forced and refused (accepting: {}); log:\n{}",
            TcpStream::connect(addr).is_ok(),
            running.log_text()
        ),
    };
    assert!(
        !status.success(),
        "torpor could not run a single worker yet exited with {status}; log:\n{}",
        running.log_text()
    );
}
