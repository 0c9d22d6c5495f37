//! Running Torpor as operators do: the real `torpor` binary with its
//! flags, SIGTERM with queries in flight, JSON logs, and the I/O drivers
//! (epoll forced, and io_uring refused by a seccomp filter as Docker's
//! default profile refuses it).

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use torpor::config::IoDriver;
use torpor::scaler::process::free_port;
use torpor_protocol::command::Command as Com;
use torpor_tests::raw::{base_capabilities, com, LoginOptions, RawClient};
use torpor_tests::{
    admin_connect, backend, connect, torpor_binary, Torpor, APP_PASSWORD, APP_USER,
};

/// Bound on waits that only guard against hangs.
const HANG_LIMIT: Duration = Duration::from_secs(60);

/// The shutdown grace the binaries get.
const GRACE_SECS: u64 = 20;

/// A `torpor` process with its stderr (the log) in a file; killed on drop
/// if the test did not see it exit.
struct Running {
    child: Child,
    addr: SocketAddr,
    log: tempfile::NamedTempFile,
}

impl Running {
    /// Starts the binary in front of the test MariaDB with `extra` flags;
    /// with `deny_io_uring`, under a seccomp filter that refuses
    /// `io_uring_setup`. Returns once it accepts connections.
    fn start(extra: &[&str], deny_io_uring: bool) -> Running {
        let binary = torpor_binary();
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut command = Command::new(binary);
        command
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--backend")
            .arg(backend().addr().to_string())
            .arg("--user")
            .arg(format!("{APP_USER}:{APP_PASSWORD}"))
            .arg("--shutdown-grace-secs")
            .arg(GRACE_SECS.to_string())
            .arg("--log-level")
            .arg("info")
            .args(extra)
            .env_remove("RUST_LOG")
            .env_remove("MONOIO_FORCE_LEGACY_DRIVER")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap());
        if deny_io_uring {
            deny_io_uring_setup(&mut command);
        }
        let child = command.spawn().expect("the torpor binary starts");
        let mut running = Running { child, addr, log };
        running.wait_listening();
        running
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + HANG_LIMIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "torpor exited with {status} before listening; log:\n{}",
                    self.log_text()
                );
            }
            if TcpStream::connect(self.addr).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "torpor never listened; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    fn sigterm(&self) {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: sends a signal to our own child.
        let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(sent, 0, "SIGTERM delivered");
    }

    /// Waits for the process to exit, at most `limit`.
    fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The log as JSON objects, one per line; panics on a line that is not
    /// one.
    fn json_log(&self) -> Vec<serde_json::Value> {
        let text = self.log_text();
        BufReader::new(text.as_bytes())
            .lines()
            .map(|line| line.unwrap())
            .filter(|line| !line.trim().is_empty())
            .map(
                |line| match serde_json::from_str::<serde_json::Value>(&line) {
                    Ok(value) if value.is_object() => value,
                    _ => panic!("not a JSON object log line: {line}"),
                },
            )
            .collect()
    }

    /// Stops the process with SIGTERM and checks it exits 0 within the
    /// grace period (plus slack for a loaded machine).
    fn stop(&mut self) {
        self.sigterm();
        let status = self.wait_exit(Duration::from_secs(GRACE_SECS) + HANG_LIMIT);
        let status = status.unwrap_or_else(|| {
            panic!(
                "torpor did not exit after SIGTERM; log:\n{}",
                self.log_text()
            )
        });
        assert!(
            status.success(),
            "torpor exited with {status}; log:\n{}",
            self.log_text()
        );
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Installs, in the child between fork and exec, a seccomp filter that
/// makes `io_uring_setup` fail with EPERM, as Docker's default profile
/// does. Everything else is allowed.
fn deny_io_uring_setup(command: &mut Command) {
    #[cfg(target_arch = "x86_64")]
    const AUDIT_ARCH: u32 = 0xC000_003E;
    #[cfg(target_arch = "aarch64")]
    const AUDIT_ARCH: u32 = 0xC000_00B7;
    fn stmt(code: u32, k: u32) -> libc::sock_filter {
        libc::sock_filter {
            code: code as u16,
            jt: 0,
            jf: 0,
            k,
        }
    }
    fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
        libc::sock_filter {
            code: code as u16,
            jt,
            jf,
            k,
        }
    }
    let filter = [
        // seccomp_data.arch: other ABIs are not ours to filter.
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 4),
        jump(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            AUDIT_ARCH,
            1,
            0,
        ),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
        // seccomp_data.nr
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
        jump(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            libc::SYS_io_uring_setup as u32,
            0,
            1,
        ),
        stmt(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_ERRNO | (libc::EPERM as u32 & libc::SECCOMP_RET_DATA),
        ),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ];
    // SAFETY: the closure runs between fork and exec and only calls
    // prctl, which is async-signal-safe; `filter` was built before the
    // fork and is only read.
    unsafe {
        command.pre_exec(move || {
            let program = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr() as *mut libc::sock_filter,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &program) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

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

#[test]
fn json_logs_are_json_lines_and_name_each_workers_driver() {
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
    let binary = torpor_binary();
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut command = Command::new(binary);
    command
        .args([
            "--listen",
            &addr.to_string(),
            "--backend",
            &backend().addr().to_string(),
        ])
        .args([
            "--user",
            &format!("{APP_USER}:{APP_PASSWORD}"),
            "--io-driver",
            "io-uring",
        ])
        .args(["--log-format", "json", "--workers", "2"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap());
    deny_io_uring_setup(&mut command);
    let child = command.spawn().unwrap();
    let mut running = Running { child, addr, log };
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
