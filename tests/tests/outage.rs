//! A backend outage under load (issue 14, item 5): Torpor in front of a
//! plain `[backend]` it does not manage, the MariaDB behind it stopped (or
//! `kill -9`ed) and started again on the same datadir and port while
//! eight writers commit transactions through Torpor with the `mysql`
//! crate (which never reconnects on its own; TCP only, no
//! `prefer_socket`).
//!
//! Each writer records what it was told of every transaction: committed,
//! failed (an error before or at COMMIT, then ROLLBACK), or unknown (1317
//! on COMMIT: Torpor lost the backend during it). A checker compares that
//! with the table afterwards: a transaction reported committed is there
//! exactly once, one reported failed is not there, an unknown one is
//! there once or not at all. No client connection may close.
//!
//! Each test runs its own `mariadbd` (one at a time: a restart under load
//! is what is measured, not two servers fighting over two cores). The
//! figures are printed (`--nocapture` shows them).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use torpor::scaler::process::{free_port, Account, MariadbOptions, MariadbProcess};
use torpor_tests::{
    mysql_opts, Torpor, ADMIN_PASSWORD, ADMIN_USER, APP_PASSWORD, APP_USER, OTHER_PASSWORD,
    OTHER_USER,
};

/// One test at a time (each restarts a server under load).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Writers committing through Torpor during each outage.
const WRITERS: usize = 8;

/// Bound on waits that only guard against hangs.
const HANG_LIMIT: Duration = Duration::from_secs(120);

/// A MariaDB of the test's own that can be stopped, killed and started
/// again on the same datadir and port.
struct Restartable {
    datadir: tempfile::TempDir,
    port: u16,
    process: Option<MariadbProcess>,
}

impl Restartable {
    fn start() -> Restartable {
        let datadir = tempfile::Builder::new()
            .prefix("torpor-outage-data-")
            .tempdir()
            .unwrap();
        let port = free_port().unwrap();
        let mut server = Restartable {
            datadir,
            port,
            process: None,
        };
        server.boot();
        server
    }

    fn options(&self) -> MariadbOptions {
        let accounts = [
            (APP_USER, APP_PASSWORD),
            (OTHER_USER, OTHER_PASSWORD),
            (ADMIN_USER, ADMIN_PASSWORD),
        ]
        .iter()
        .map(|(user, password)| Account {
            user: user.to_string(),
            password: password.to_string(),
            grants: vec![torpor::scaler::process::GRANT_EVERYTHING.to_string()],
        })
        .collect();
        MariadbOptions {
            datadir: Some(self.datadir.path().to_path_buf()),
            port: Some(self.port),
            accounts,
            ready_timeout: HANG_LIMIT,
            ..MariadbOptions::default()
        }
    }

    /// Starts the server (again); returns once it answers a handshake.
    fn boot(&mut self) {
        assert!(self.process.is_none(), "already running");
        let process = MariadbProcess::start(self.options())
            .unwrap_or_else(|e| panic!("cannot start the test's MariaDB: {e}"));
        self.process = Some(process);
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// A clean shutdown (SIGTERM), waited for.
    fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop();
        }
    }

    /// `kill -9`: the server dies with its connections open.
    fn kill9(&mut self) {
        let Some(process) = self.process.take() else {
            return;
        };
        let pid = process.pid().expect("running") as i32;
        // SAFETY: kill(2) on the pid of our own child server.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
        // Reaps it (the keeper's SIGTERM finds it dead).
        drop(process);
    }

    fn admin(&self) -> mysql::Conn {
        mysql::Conn::new(mysql_opts(self.addr(), ADMIN_USER, ADMIN_PASSWORD))
            .unwrap_or_else(|e| panic!("admin connection to the test's MariaDB: {e}"))
    }
}

/// A connection to Torpor as the app user; the `mysql` crate does not
/// reconnect by itself, so a closed session shows as an I/O error.
fn client(addr: SocketAddr) -> mysql::Conn {
    mysql::Conn::new(mysql_opts(addr, APP_USER, APP_PASSWORD))
        .unwrap_or_else(|e| panic!("cannot connect to Torpor at {addr}: {e}"))
}

/// What a client was told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Told {
    /// COMMIT answered OK.
    Committed,
    /// An error before COMMIT or on it (with a code that says the
    /// transaction did not commit): its rows must not be there.
    Failed(u16),
    /// The outcome is unknown (1317 on COMMIT, or the connection closed).
    Unknown(u16),
}

/// How a statement failed: a server error (code), or the connection
/// closing (`None`).
fn code_of(error: &mysql::Error) -> Option<u16> {
    match error {
        mysql::Error::MySqlError(e) => Some(e.code),
        _ => None,
    }
}

/// Pseudo-code for "the connection closed" in the figures.
const CLOSED: u16 = 0;

/// ER_QUERY_INTERRUPTED: Torpor's "COMMIT outcome unknown".
const OUTCOME_UNKNOWN: u16 = 1317;

/// What one writer did.
#[derive(Debug, Default)]
struct WriterLog {
    /// Per transaction id.
    told: Vec<(u64, Told)>,
    /// Client errors by code and statement (`begin`, `insert`, `commit`).
    errors: BTreeMap<(u16, &'static str), u64>,
    /// Sessions that closed under the writer.
    closed: u64,
}

/// Eight writers, each on its own connection, committing two-row
/// transactions into `table` until told to stop.
struct Writers {
    stop: Arc<AtomicBool>,
    commits: Arc<AtomicU64>,
    threads: Vec<JoinHandle<WriterLog>>,
}

impl Writers {
    fn start(addr: SocketAddr, table: &'static str) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let commits = Arc::new(AtomicU64::new(0));
        let threads = (0..WRITERS as u64)
            .map(|writer| {
                let stop = Arc::clone(&stop);
                let commits = Arc::clone(&commits);
                std::thread::spawn(move || write(addr, table, writer, &stop, &commits))
            })
            .collect();
        Writers {
            stop,
            commits,
            threads,
        }
    }

    fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Waits until `more` commits were reported after this call.
    fn wait_for_commits(&self, more: u64) {
        let target = self.commits() + more;
        let deadline = Instant::now() + HANG_LIMIT;
        while self.commits() < target {
            assert!(Instant::now() < deadline, "the writers made no progress");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn finish(self) -> Vec<WriterLog> {
        self.stop.store(true, Ordering::Relaxed);
        self.threads
            .into_iter()
            .map(|t| t.join().expect("writer thread"))
            .collect()
    }
}

/// One writer's loop: BEGIN, two INSERTs, COMMIT; after an error,
/// ROLLBACK; after a closed connection, a new one.
fn write(
    addr: SocketAddr,
    table: &str,
    writer: u64,
    stop: &AtomicBool,
    commits: &AtomicU64,
) -> WriterLog {
    let mut log = WriterLog::default();
    let mut conn = client(addr);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let tx = writer * 1_000_000_000 + n;
        let steps: [(&'static str, String); 4] = [
            ("begin", "BEGIN".to_string()),
            (
                "insert",
                format!("INSERT INTO {table} (tx, part) VALUES ({tx}, 1)"),
            ),
            (
                "insert",
                format!("INSERT INTO {table} (tx, part) VALUES ({tx}, 2)"),
            ),
            ("commit", "COMMIT".to_string()),
        ];
        let mut told = Told::Committed;
        for (what, sql) in &steps {
            let Err(error) = conn.query_drop(sql) else {
                continue;
            };
            let code = code_of(&error).unwrap_or(CLOSED);
            *log.errors.entry((code, what)).or_default() += 1;
            told = match (code, *what) {
                (CLOSED, _) | (OUTCOME_UNKNOWN, "commit") => Told::Unknown(code),
                _ => Told::Failed(code),
            };
            if code == CLOSED {
                log.closed += 1;
                // Keep writing, so that the figures go on; the test
                // fails on any closed session anyway.
                conn = reconnect(addr);
            } else {
                // Whatever is open is rolled back; an error here is the
                // next transaction's to see.
                let _ = conn.query_drop("ROLLBACK");
            }
            break;
        }
        if told == Told::Committed {
            commits.fetch_add(1, Ordering::Relaxed);
        }
        log.told.push((tx, told));
    }
    log
}

fn reconnect(addr: SocketAddr) -> mysql::Conn {
    let deadline = Instant::now() + HANG_LIMIT;
    loop {
        match mysql::Conn::new(mysql_opts(addr, APP_USER, APP_PASSWORD)) {
            Ok(conn) => return conn,
            Err(e) if Instant::now() > deadline => panic!("cannot reconnect: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// What the checker found, and the figures to quote.
#[derive(Debug, Default)]
struct Verdict {
    transactions: u64,
    committed: u64,
    failed: u64,
    unknown: u64,
    unknown_present: u64,
    lost: Vec<u64>,
    duplicated: Vec<u64>,
    present_but_failed: Vec<u64>,
    torn: Vec<u64>,
    unrecorded: Vec<u64>,
    errors: BTreeMap<(u16, &'static str), u64>,
    closed: u64,
}

impl Verdict {
    fn print(&self, case: &str) {
        println!("outage figures [{case}]:");
        println!(
            "  transactions {}: committed {}, failed {}, unknown {} ({} of them present)",
            self.transactions, self.committed, self.failed, self.unknown, self.unknown_present
        );
        println!("  client sessions closed: {}", self.closed);
        if self.errors.is_empty() {
            println!("  client errors: none");
        }
        for ((code, what), n) in &self.errors {
            let code = match *code {
                CLOSED => "connection closed".to_string(),
                code => code.to_string(),
            };
            println!("  client errors on {what}: {code} x{n}");
        }
        println!(
            "  lost commits {}, duplicated {}, failed but present {}, torn {}, unrecorded {}",
            self.lost.len(),
            self.duplicated.len(),
            self.present_but_failed.len(),
            self.torn.len(),
            self.unrecorded.len()
        );
    }

    fn assert_clean(&self, case: &str) {
        assert_eq!(self.closed, 0, "[{case}] client sessions closed");
        assert!(
            self.lost.is_empty(),
            "[{case}] lost commits: {:?}",
            self.lost
        );
        assert!(
            self.duplicated.is_empty(),
            "[{case}] duplicated commits: {:?}",
            self.duplicated
        );
        assert!(
            self.present_but_failed.is_empty(),
            "[{case}] reported failed but committed: {:?}",
            self.present_but_failed
        );
        assert!(
            self.torn.is_empty(),
            "[{case}] half-committed: {:?}",
            self.torn
        );
        assert!(
            self.unrecorded.is_empty(),
            "[{case}] rows of no transaction: {:?}",
            self.unrecorded
        );
        for (code, what) in self.errors.keys() {
            assert!(
                !(2000..3000).contains(code),
                "[{case}] a client-library code {code} on {what}"
            );
        }
    }
}

/// Compares what the writers were told with `table` on the server.
fn check(server: &Restartable, table: &str, logs: &[WriterLog]) -> Verdict {
    let mut admin = server.admin();
    let rows: Vec<(u64, u64)> = admin
        .query(format!("SELECT tx, COUNT(*) FROM test.{table} GROUP BY tx"))
        .unwrap();
    let mut present: HashMap<u64, u64> = rows.into_iter().collect();
    let mut verdict = Verdict::default();
    for log in logs {
        verdict.closed += log.closed;
        for (key, n) in &log.errors {
            *verdict.errors.entry(*key).or_default() += n;
        }
        for &(tx, told) in &log.told {
            verdict.transactions += 1;
            let rows = present.remove(&tx).unwrap_or(0);
            if rows != 0 && rows != 2 {
                if rows > 2 {
                    verdict.duplicated.push(tx);
                } else {
                    verdict.torn.push(tx);
                }
            }
            match told {
                Told::Committed => {
                    verdict.committed += 1;
                    if rows == 0 {
                        verdict.lost.push(tx);
                    }
                }
                Told::Failed(_) => {
                    verdict.failed += 1;
                    if rows > 0 {
                        verdict.present_but_failed.push(tx);
                    }
                }
                Told::Unknown(_) => {
                    verdict.unknown += 1;
                    if rows > 0 {
                        verdict.unknown_present += 1;
                    }
                }
            }
        }
    }
    verdict.unrecorded = present.into_keys().collect();
    verdict
}

fn create_table(server: &Restartable, table: &str) {
    server
        .admin()
        .query_drop(format!(
            "CREATE TABLE test.{table} (id BIGINT AUTO_INCREMENT PRIMARY KEY, \
             tx BIGINT NOT NULL, part TINYINT NOT NULL, KEY (tx)) ENGINE=InnoDB"
        ))
        .unwrap();
}

/// Torpor in front of `server`, a plain `[backend]`.
fn torpor_for(server: &Restartable) -> Torpor {
    Torpor::start_with(server.addr(), |_| {})
}

#[test]
fn writers_idle_clients_and_a_login_ride_out_a_15_s_restart() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut server = Restartable::start();
    create_table(&server, "restart");
    let torpor = torpor_for(&server);
    // Idle sessions, one of them in a transaction it has not used yet.
    let mut idle: Vec<mysql::Conn> = (0..4).map(|_| client(torpor.addr())).collect();
    for conn in &mut idle {
        let one: Option<i64> = conn.query_first("SELECT 1").unwrap();
        assert_eq!(one, Some(1));
    }
    let writers = Writers::start(torpor.addr(), "restart");
    writers.wait_for_commits(200);

    let down = Instant::now();
    server.stop();
    // A login while the backend is down: it is held, and succeeds once
    // the backend is back.
    let login_addr = torpor.addr();
    let login = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(3));
        let started = Instant::now();
        let mut conn = mysql::Conn::new(mysql_opts(login_addr, APP_USER, APP_PASSWORD))
            .map_err(|e| format!("login during the outage: {e}"))?;
        let one: Option<i64> = conn
            .query_first("SELECT 1")
            .map_err(|e| format!("first query of the login made during the outage: {e}"))?;
        Ok::<_, String>((one, started.elapsed()))
    });
    std::thread::sleep(Duration::from_secs(15));
    server.boot();
    let outage = down.elapsed();
    writers.wait_for_commits(200);
    let logs = writers.finish();

    let login = login.join().unwrap();
    let idle_after: Vec<Result<Option<i64>, String>> = idle
        .iter_mut()
        .map(|conn| conn.query_first("SELECT 1").map_err(|e| e.to_string()))
        .collect();
    let verdict = check(&server, "restart", &logs);
    verdict.print("clean stop, 15 s");
    println!("  backend down for {:.1} s", outage.as_secs_f64());
    match &login {
        Ok((_, took)) => println!(
            "  the login made during the outage succeeded after {:.1} s",
            took.as_secs_f64()
        ),
        Err(e) => println!("  {e}"),
    }
    let kept = idle_after.iter().filter(|r| r.is_ok()).count();
    println!(
        "  idle sessions that work after it: {kept} of {}",
        idle.len()
    );
    assert!(outage >= Duration::from_secs(10));
    let (one, _) = login.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(one, Some(1));
    for (i, result) in idle_after.into_iter().enumerate() {
        let one = result.unwrap_or_else(|e| panic!("idle session {i} after the restart: {e}"));
        assert_eq!(one, Some(1));
    }
    verdict.assert_clean("clean stop, 15 s");
}

#[test]
fn writers_ride_out_a_kill_9_and_restart() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut server = Restartable::start();
    create_table(&server, "killed");
    let torpor = torpor_for(&server);
    let writers = Writers::start(torpor.addr(), "killed");
    writers.wait_for_commits(200);
    let down = Instant::now();
    server.kill9();
    std::thread::sleep(Duration::from_secs(4));
    server.boot();
    let outage = down.elapsed();
    writers.wait_for_commits(200);
    let logs = writers.finish();
    let verdict = check(&server, "killed", &logs);
    verdict.print("kill -9, 4 s");
    println!("  backend down for {:.1} s", outage.as_secs_f64());
    verdict.assert_clean("kill -9, 4 s");
}

/// Issue 14's fault suite: the backend connections Torpor holds for the
/// app are killed every 2 s (from an admin connection, as an operator or
/// MariaDB's own timeouts would) while eight writers commit. Transaction
/// replay and the idle checks must keep every session open and every
/// commit exact.
#[test]
fn writers_ride_out_their_backend_connections_killed_every_2_s() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = Restartable::start();
    create_table(&server, "kills");
    let torpor = torpor_for(&server);
    let writers = Writers::start(torpor.addr(), "kills");
    writers.wait_for_commits(100);
    let mut admin = server.admin();
    let mut killed = 0;
    for _ in 0..5 {
        let threads: Vec<u64> = admin
            .query(format!(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = '{APP_USER}'"
            ))
            .expect("processlist");
        for thread in threads {
            // A connection may have closed meanwhile (1094): fine.
            if admin.query_drop(format!("KILL {thread}")).is_ok() {
                killed += 1;
            }
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    writers.wait_for_commits(100);
    let logs = writers.finish();
    let verdict = check(&server, "kills", &logs);
    verdict.print("backend connections killed every 2 s");
    println!("  backend connections killed: {killed}");
    assert!(killed > 0, "no backend connection was killed");
    verdict.assert_clean("backend connections killed every 2 s");
}

#[test]
fn a_command_held_past_the_bound_gets_1429_and_the_session_goes_on() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut server = Restartable::start();
    let torpor = Torpor::start_with(server.addr(), |config| {
        config.outage_hold_secs = 2;
    });
    let mut conn = client(torpor.addr());
    conn.query_drop("SET time_zone = '+03:00'").unwrap();
    server.stop();
    let started = Instant::now();
    let error = conn
        .query_drop("SELECT 1")
        .expect_err("no backend for longer than the bound");
    let held = started.elapsed();
    assert_eq!(code_of(&error), Some(1429), "{error}");
    assert!(
        held >= Duration::from_millis(1500) && held < HANG_LIMIT,
        "held {held:?}"
    );
    server.boot();
    // The same session goes on, its state replayed on a new connection.
    let zone: Option<String> = conn.query_first("SELECT @@time_zone").unwrap();
    assert_eq!(zone.as_deref(), Some("+03:00"));
    println!(
        "outage figures [bound 2 s]: the command was held {:.1} s, then got 1429; the session went on",
        held.as_secs_f64()
    );
}

#[test]
fn a_statement_cut_in_flight_gets_1317_and_the_session_goes_on() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut server = Restartable::start();
    let torpor = torpor_for(&server);
    let mut conn = client(torpor.addr());
    conn.query_drop("SET time_zone = '+03:00'").unwrap();
    let running = std::thread::spawn(move || {
        let result = conn.query_first::<i64, _>("SELECT SLEEP(60) /* outage-cut */");
        (conn, result)
    });
    let mut admin = server.admin();
    let deadline = Instant::now() + HANG_LIMIT;
    loop {
        let n: Option<i64> = admin
            .query_first(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
                 WHERE INFO LIKE 'SELECT SLEEP(60) /* outage-cut%'",
            )
            .unwrap();
        if n > Some(0) {
            break;
        }
        assert!(Instant::now() < deadline, "the statement never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(admin);
    // Autocommit, no transaction to replay: whether it ran is unknown.
    server.kill9();
    let (mut conn, result) = running.join().unwrap();
    server.boot();
    let error = result.expect_err("its backend died under it");
    println!("outage figures [statement cut in flight]: the client got {error}");
    assert_eq!(code_of(&error), Some(OUTCOME_UNKNOWN), "{error}");
    // The same session goes on, its state replayed on a new connection.
    let zone: Option<String> = conn.query_first("SELECT @@time_zone").unwrap();
    assert_eq!(zone.as_deref(), Some("+03:00"));
}

/// The value of the first sample of `/metrics` at `admin` whose name is
/// `metric` and whose labels include every one of `labels`.
fn sample(admin: SocketAddr, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut response = ureq::get(&format!("http://{admin}/metrics"))
        .call()
        .unwrap_or_else(|e| panic!("GET /metrics: {e}"));
    let text = response.body_mut().read_to_string().expect("body");
    text.lines()
        .filter(|line| {
            line.strip_prefix(metric)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .find(|line| {
            labels
                .iter()
                .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

/// Issue 14: a Torpor started while its plain backend is down greets a
/// client at once (it terminates the handshake itself) and holds its
/// login until the backend comes; then the backend's own greeting is
/// used. Holds are counted in `/metrics` (`torpor_outage_holds`,
/// `torpor_outage_hold_duration_seconds`): logins and commands.
#[test]
fn torpor_started_while_its_backend_is_down_greets_at_once_and_holds_the_login() {
    use torpor_tests::raw::{base_capabilities, com_query, LoginOptions, RawClient};
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut server = Restartable::start();
    server.stop();
    let torpor = Torpor::start_with(server.addr(), |config| {
        config.admin.listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    });
    let admin = torpor.admin_addr().expect("admin API");
    let addr = torpor.addr();

    // The greeting comes while the backend is still down.
    let mut raw = RawClient::open(addr).expect("connect");
    let greeting = raw
        .read_greeting()
        .unwrap_or_else(|e| panic!("no greeting while the backend is down: {e:?}"))
        .clone();
    let stand_in = greeting.capabilities;
    println!(
        "outage figures [started during an outage]: greeted as {:?}",
        String::from_utf8_lossy(&greeting.server_version)
    );
    // The logins: a raw one and the mysql crate's, both held.
    let options = LoginOptions::app(base_capabilities());
    let raw_login = std::thread::spawn(move || {
        raw.login(&options).map_err(|e| format!("{e:?}"))?;
        let reply = raw
            .command(&com_query("SELECT 1"))
            .map_err(|e| e.to_string())?;
        match reply.and_then(|r| r.error()) {
            None => Ok(()),
            Some(e) => Err(e.to_string()),
        }
    });
    let crate_login = std::thread::spawn(move || {
        let mut conn = mysql::Conn::new(mysql_opts(addr, APP_USER, APP_PASSWORD))
            .map_err(|e| format!("login: {e}"))?;
        conn.query_first::<i64, _>("SELECT 2")
            .map_err(|e| format!("first query: {e}"))
    });
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !raw_login.is_finished() && !crate_login.is_finished(),
        "a login did not wait for the backend"
    );
    let holding = sample(admin, "torpor_outage_holds", &[]);
    server.boot();
    raw_login
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("the raw login held through the outage: {e}"));
    let two = crate_login
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("the mysql crate's login held through the outage: {e}"));
    assert_eq!(two, Some(2));

    // Clients now get the backend's own greeting, which offers at least
    // what the stand-in did (nothing a held client negotiated is missing
    // on the backend).
    let mut later = RawClient::open(addr).expect("connect");
    let real = later.read_greeting().expect("greeting").clone();
    assert_ne!(real.server_version, greeting.server_version);
    assert!(
        real.capabilities.contains(stand_in),
        "the stand-in offered {:?} that the backend does not",
        stand_in & !real.capabilities
    );

    // A command held through a restart is counted too.
    let mut conn = client(addr);
    server.stop();
    let command = std::thread::spawn(move || conn.query_first::<i64, _>("SELECT 3"));
    std::thread::sleep(Duration::from_secs(2));
    server.boot();
    let three = command
        .join()
        .unwrap()
        .expect("a command held through the restart");
    assert_eq!(three, Some(3));

    // Workers publish at once; the scrape reads the ended holds.
    let deadline = Instant::now() + HANG_LIMIT;
    let count = |what: &str| {
        sample(
            admin,
            "torpor_outage_hold_duration_seconds_count",
            &[("what", what), ("result", "ok")],
        )
    };
    let (mut logins, mut logins_held, mut commands) = (None, None, None);
    while Instant::now() < deadline {
        logins = logins.or_else(|| count("login"));
        logins_held = logins_held.or_else(|| {
            sample(
                admin,
                "torpor_outage_hold_duration_seconds_sum",
                &[("what", "login"), ("result", "ok")],
            )
        });
        commands = commands.or_else(|| count("command"));
        if logins.is_some() && commands.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let now_holding = sample(admin, "torpor_outage_holds", &[]);
    println!(
        "outage figures [started during an outage]: logins held {logins:?} for {logins_held:?} s in all; commands held {commands:?}; held during the outage (gauge) {holding:?}, after {now_holding:?}"
    );
    assert_eq!(logins, Some(2.0), "the two logins held");
    assert!(
        logins_held.is_some_and(|s| s >= 2.0),
        "the logins were held for the 3 s outage: {logins_held:?} s"
    );
    assert!(commands.is_some_and(|n| n >= 1.0), "{commands:?}");
    assert_eq!(holding, Some(2.0), "two logins held during the outage");
    assert_eq!(now_holding, Some(0.0));
}
