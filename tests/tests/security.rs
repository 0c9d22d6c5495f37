//! Torpor under an attacker's and an operator's eyes (issue 14,
//! "Security"): nothing it does may land on the host's own MariaDB, a
//! silent socket cannot hold a login slot, and secrets need not appear on
//! the command line.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use mysql::prelude::Queryable;
use torpor::config::DriverKind;
use torpor::scaler::process::free_port;
use torpor::scaler::process::{MariadbOptions, MariadbProcess};
use torpor_tests::binary::{Running, HANG_LIMIT};
use torpor_tests::docker::{images_ready, mariadb_image};
use torpor_tests::serverless::{name, Managed};
use torpor_tests::{backend, connect, mysql_opts, Torpor, APP_PASSWORD, APP_USER};

/// Where Debian's MariaDB (and the container's) listens by default: the
/// path the `mysql` crate reads from `@@socket` and then dials on the
/// host when `prefer_socket` is left on.
const HOST_SOCKET: &str = "/run/mysqld/mysqld.sock";

/// A MariaDB of the test's own on the host's default socket path, with
/// the general log on: whatever reaches it is written down.
struct HostMariadb {
    _process: MariadbProcess,
    general_log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl HostMariadb {
    /// Starts it; fails loudly when a live server already holds the path
    /// (the test could not tell its statements from that server's).
    fn start() -> HostMariadb {
        let socket = Path::new(HOST_SOCKET);
        if UnixStream::connect(socket).is_ok() {
            panic!(
                "a live server already listens on {HOST_SOCKET}: this test needs the path \
                 (CI machines are fresh); stop that server to run it"
            );
        }
        std::fs::create_dir_all(socket.parent().expect("a parent")).expect("creating /run/mysqld");
        // A stale socket file of a dead server: mariadbd replaces it.
        let dir = tempfile::Builder::new()
            .prefix("torpor-host-mariadb-")
            .tempdir()
            .expect("temp dir");
        let general_log = dir.path().join("general.log");
        let process = MariadbProcess::start(MariadbOptions {
            extra_args: vec![
                format!("--socket={HOST_SOCKET}"),
                "--general-log=1".into(),
                format!("--general-log-file={}", general_log.display()),
            ],
            ..MariadbOptions::default()
        })
        .unwrap_or_else(|e| panic!("cannot start the host MariaDB on {HOST_SOCKET}: {e}"));
        assert!(
            UnixStream::connect(socket).is_ok(),
            "the host MariaDB does not listen on {HOST_SOCKET}"
        );
        HostMariadb {
            _process: process,
            general_log,
            _dir: dir,
        }
    }

    /// The general log's connections and statements so far (its header
    /// lines left out).
    fn logged(&self) -> Vec<String> {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(&self.general_log) {
            file.read_to_string(&mut text)
                .expect("reading the general log");
        }
        text.lines()
            .filter(|line| {
                ["Connect", "Query", "Init DB", "Quit"]
                    .iter()
                    .any(|kind| line.contains(kind))
            })
            .map(str::to_string)
            .collect()
    }
}

/// The docker driver's admin SQL (accounts at start, buffer pool at
/// suspend and wake) connected to the container's published port, read
/// `@@socket` and reconnected to that path on the host: the host's
/// MariaDB got Torpor's `CREATE USER … WITH GRANT OPTION` and
/// `SET GLOBAL`s. With a MariaDB on the host's default socket, a docker
/// service is started, queried, suspended and woken: that MariaDB must
/// see nothing.
#[test]
fn docker_admin_sql_never_reaches_the_hosts_mariadb() {
    if images_ready(&[mariadb_image()]).is_none() {
        return;
    }
    let host = HostMariadb::start();
    let before = host.logged();
    let service = name("sec", "hostsock");
    let managed = Managed::start(DriverKind::Docker, &service, |_, _| {});
    let mut conn = managed.connect();
    let one: Option<i64> = conn
        .query_first("SELECT 1")
        .expect("a query through torpor");
    assert_eq!(one, Some(1));
    assert_eq!(managed.act(&service, "suspend").0, 200);
    assert_eq!(managed.act(&service, "wake").0, 200);
    let one: Option<i64> = conn
        .query_first("SELECT 1")
        .expect("a query after the wake");
    assert_eq!(one, Some(1));
    drop(conn);
    drop(managed);
    let after = host.logged();
    let new: Vec<&String> = after.iter().skip(before.len()).collect();
    assert!(
        new.is_empty(),
        "the host's MariaDB on {HOST_SOCKET} saw Torpor's connections or statements:\n{}",
        new.iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// A socket that reads the greeting and then says nothing.
fn silent_socket(addr: SocketAddr) -> TcpStream {
    let mut socket = TcpStream::connect(addr).expect("connecting");
    // Only a guard against hanging the test run forever: the login
    // timeout under test is far shorter.
    socket
        .set_read_timeout(Some(Duration::from_secs(120)))
        .expect("read timeout");
    let mut header = [0u8; 4];
    socket.read_exact(&mut header).expect("a greeting header");
    let len = usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
    let mut greeting = vec![0u8; len];
    socket.read_exact(&mut greeting).expect("the greeting");
    assert_eq!(greeting.first(), Some(&10), "a handshake v10 greeting");
    socket
}

/// What a silent socket finally sees: `true` when Torpor closed it (end
/// of file, or a reset), `false` when the guard's read timeout ran out.
fn closed_by_torpor(mut socket: TcpStream) -> bool {
    let mut rest = Vec::new();
    match socket.read_to_end(&mut rest) {
        Ok(_) => true,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// No login timeout: sockets that read the greeting and stayed silent
/// held their `max_connections` slots forever, so with
/// `--max-connections 5` five of them locked every login out (1040).
/// Now a half-open login does not count against `max_connections` (a
/// real client logs in beside them) and is dropped after the login
/// timeout (the default, 10 s, as MariaDB's `connect_timeout`).
#[test]
fn silent_sockets_neither_lock_logins_out_nor_stay_open() {
    let torpor = Torpor::start_with(backend().addr(), |c| c.max_connections = 5);
    let silent: Vec<TcpStream> = (0..5).map(|_| silent_socket(torpor.addr())).collect();
    let mut real = connect(torpor.addr());
    let one: Option<i64> = real.query_first("SELECT 1").expect("a query");
    assert_eq!(one, Some(1));
    for socket in silent {
        assert!(
            closed_by_torpor(socket),
            "a silent socket was still open after two minutes"
        );
    }
    let one: Option<i64> = real
        .query_first("SELECT 1")
        .expect("the real client goes on");
    assert_eq!(one, Some(1));
}

/// A file of the test's own holding `text`.
fn secret_file(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().expect("a temp file");
    std::fs::write(file.path(), text).expect("writing it");
    file
}

/// `GET /metrics` on the admin API at `addr`, with `token` if any: the
/// status code.
fn metrics_status(addr: SocketAddr, token: Option<&str>) -> u16 {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(HANG_LIMIT))
        .build()
        .into();
    let mut request = agent.get(format!("http://{addr}/metrics"));
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    request
        .call()
        .unwrap_or_else(|e| panic!("admin API: {e}"))
        .status()
        .as_u16()
}

/// An empty admin token counted as set: with the admin API on 0.0.0.0,
/// `--admin-token ""` started Torpor (answering 401 to everyone) where no
/// token refuses to start. Now it refuses, as with no token.
#[test]
fn an_empty_admin_token_off_loopback_refuses_to_start() {
    let users = secret_file(&format!("{APP_USER}:{APP_PASSWORD}\n"));
    let backend = backend().addr().to_string();
    let admin = format!("0.0.0.0:{}", free_port().expect("a free port"));
    let empty_file = secret_file("\n");
    for token in [
        ["--admin-token", ""],
        ["--admin-token-file", path(&empty_file)],
    ] {
        let mut running = Running::spawn(
            &[
                "--backend",
                &backend,
                "--users-file",
                path(&users),
                "--admin-listen",
                &admin,
                token[0],
                token[1],
            ],
            false,
        );
        let status = running.wait_exit(HANG_LIMIT);
        let log = running.log_text();
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(2),
            "{token:?} on {admin} must refuse to start; log:\n{log}"
        );
        assert!(log.contains("[admin] token"), "{log}");
    }
}

fn path(file: &tempfile::NamedTempFile) -> &str {
    file.path().to_str().expect("a UTF-8 temp path")
}

/// Passwords (`--user NAME:PASSWORD`) and the admin token
/// (`--admin-token`) could only be flags, which every user of the host
/// reads in `ps`. Files serve both now: the client logs in, the admin API
/// wants the file's token, the command line holds neither secret and the
/// log warns of no flag.
#[test]
fn secrets_from_files_stay_off_the_command_line() {
    let token = "file-token-5f2c";
    let users = secret_file(&format!("# accounts\n{APP_USER}:{APP_PASSWORD}\n"));
    let token_file = secret_file(&format!("{token}\n"));
    let backend = backend().addr().to_string();
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port().expect("a free port")));
    let admin_flag = admin.to_string();
    let mut running = Running::start_bare(
        &[
            "--backend",
            &backend,
            "--users-file",
            path(&users),
            "--admin-listen",
            &admin_flag,
            "--admin-token-file",
            path(&token_file),
        ],
        false,
    );
    let mut conn = mysql::Conn::new(mysql_opts(running.addr, APP_USER, APP_PASSWORD))
        .unwrap_or_else(|e| panic!("login with the file's password: {e}"));
    let one: Option<i64> = conn.query_first("SELECT 1").expect("a query");
    assert_eq!(one, Some(1));
    assert_eq!(metrics_status(admin, None), 401);
    assert_eq!(metrics_status(admin, Some("wrong")), 401);
    assert_eq!(metrics_status(admin, Some(token)), 200);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", running.child.id())).expect("cmdline");
    let cmdline = String::from_utf8_lossy(&cmdline);
    assert!(!cmdline.contains(APP_PASSWORD), "{cmdline}");
    assert!(!cmdline.contains(token), "{cmdline}");
    let log = running.log_text();
    assert!(!log.contains("command line"), "{log}");
    drop(conn);
    running.stop();
}

/// A password given as a flag still works, with a warning in the log.
#[test]
fn a_password_on_the_command_line_is_warned_about() {
    let mut running = Running::start(&[], false);
    let conn = mysql::Conn::new(mysql_opts(running.addr, APP_USER, APP_PASSWORD));
    assert!(conn.is_ok(), "login with --user's password");
    let log = running.log_text();
    assert!(
        log.contains("--user puts passwords on the command line"),
        "{log}"
    );
    drop(conn);
    running.stop();
}

/// A second Torpor on a port already in use bound it anyway (SO_REUSEPORT)
/// and shared its clients with the first; it must refuse to start, as any
/// server does.
#[test]
fn a_port_already_in_use_refuses_to_start() {
    let first = Torpor::start();
    let mut config = torpor_tests::test_config(backend().addr());
    config.listen = first.addr();
    match torpor::Proxy::start(config) {
        Ok(second) => {
            second.stop();
            panic!("a second proxy started on {}, already in use", first.addr());
        }
        Err(e) => assert!(e.to_string().contains("in use"), "{e}"),
    }
    let mut conn = connect(first.addr());
    let one: Option<i64> = conn.query_first("SELECT 1").expect("the first goes on");
    assert_eq!(one, Some(1));
}

/// At the file limit each worker logged EMFILE every 20 ms, and the soft
/// `RLIMIT_NOFILE` (often 1024) was where it got there: Torpor raises it
/// to the hard limit at start. Started with a soft limit of 512, its
/// `/proc/PID/limits` must show soft = hard.
#[test]
fn the_open_files_soft_limit_is_raised_to_the_hard_one() {
    use std::os::unix::process::CommandExt;
    let mut hard = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct passed, on this stack frame.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut hard) },
        0
    );
    assert!(hard.rlim_max > 512, "the hard limit is too low to test");
    let port = free_port().expect("a free port");
    let mut command = std::process::Command::new(torpor_tests::torpor_binary());
    command
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--backend", &backend().addr().to_string()])
        .args(["--admin-listen", "off"])
        .env("TORPOR_USERS", format!("{APP_USER}:{APP_PASSWORD}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: the closure runs between fork and exec and only calls
    // setrlimit, which is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
            limit.rlim_cur = 512;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            Ok(())
        });
    }
    let mut child = command.spawn().expect("torpor starts");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = std::time::Instant::now() + HANG_LIMIT;
    while TcpStream::connect(addr).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "torpor never listened"
        );
        assert!(child.try_wait().expect("wait").is_none(), "torpor exited");
        std::thread::sleep(Duration::from_millis(20));
    }
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).expect("limits");
    let _ = child.kill();
    let _ = child.wait();
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .expect("a Max open files line");
    let numbers: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(
        numbers,
        vec![hard.rlim_max.to_string(), hard.rlim_max.to_string()],
        "{line}"
    );
}
