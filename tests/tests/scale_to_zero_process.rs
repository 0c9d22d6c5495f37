//! Scale to zero with the `process` driver: Torpor runs the service's
//! `mariadbd` itself, freezes it with SIGSTOP when idle, stops it when
//! parked and starts it again on the next query. The suite is shared with
//! the docker driver (`torpor_tests::serverless`).

use std::path::Path;
use std::time::Duration;

use mysql::prelude::Queryable;
use torpor::config::DriverKind;
use torpor::endpoint::Endpoint;
use torpor::service::lifecycle::State;
use torpor_tests::serverless::{name, Managed, Stateful};

fn mariadb_installed() -> bool {
    torpor::scaler::process::find_program(&["mariadbd", "mysqld"]).is_some()
        || panic!("mariadbd is not installed: install Debian's mariadb-server (tests/run does)")
}

torpor_tests::scale_to_zero_suite!(DriverKind::Process, "proc", mariadb_installed);

/// A suspended process is really frozen: its state in /proc is 'T'.
#[test]
fn a_suspended_process_is_stopped() {
    let managed = Managed::start(DriverKind::Process, &name("proc", "frozen"), |_, _| {});
    // Sessions reach a local mariadbd through its Unix socket.
    let Some(Endpoint::Unix(socket)) = managed.backend_addr() else {
        panic!("a running process service is reached through its socket")
    };
    let pid = pid_listening_on(&socket).expect("mariadbd's pid");
    let (status, body) = managed.act(&name("proc", "frozen"), "suspend");
    assert_eq!(status, 200, "{body}");
    assert_eq!(process_state(pid), Some('T'), "not stopped while suspended");
    let mut conn = managed.connect();
    let one: Option<i64> = conn.query_first("SELECT 1").expect("query");
    assert_eq!(one, Some(1));
    assert_eq!(process_state(pid).map(|s| s != 'T'), Some(true));
}

/// A wake that fails gives the held query a clear error without closing
/// the connection; once the cause is gone, the next query runs with the
/// session intact.
#[test]
fn a_failed_wake_is_an_error_and_the_next_query_recovers() {
    let service = name("proc", "fail");
    let managed = Managed::start(DriverKind::Process, &service, |_, _| {});
    let mut session = Stateful::open(&managed);
    let (status, body) = managed.act(&service, "park");
    assert_eq!(status, 200, "{body}");
    // The datadir's place taken by a file: the start cannot create it.
    let datadir = managed
        .state_dir
        .path()
        .join("services")
        .join(&service)
        .join("data");
    let aside = datadir.with_extension("aside");
    std::fs::rename(&datadir, &aside).expect("move the datadir aside");
    std::fs::write(&datadir, b"not a directory").expect("block the datadir");
    match session.conn.query_drop("SELECT 1") {
        Err(mysql::Error::MySqlError(e)) => {
            assert_eq!(e.code, 1429, "{e}");
            assert!(e.message.contains("could not be woken"), "{e}");
            // The cause in words, never Torpor's paths or the driver's text.
            assert!(e.message.contains("could not be started"), "{e}");
            assert!(!e.message.contains("/"), "a path reached the client: {e}");
        }
        other => panic!("a failed wake gave {other:?}"),
    }
    assert_eq!(managed.state(), State::Parked);
    std::fs::remove_file(&datadir).expect("unblock");
    std::fs::rename(&aside, &datadir).expect("datadir back");
    session.check();
    managed.wait_for(State::Active, Duration::from_secs(1));
}

fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// The pid of the process listening on loopback `port` (from
/// /proc/net/tcp and the processes' fds).
fn pid_listening_on(socket: &Path) -> Option<u32> {
    // Num RefCount Protocol Flags Type St Inode Path
    let unix = std::fs::read_to_string("/proc/net/unix").ok()?;
    let inode = unix.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(7).map(Path::new) == Some(socket))
            .then(|| fields.get(6).map(|s| s.to_string()))?
    })?;
    let target = format!("socket:[{inode}]");
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy() == target) {
                return Some(pid);
            }
        }
    }
    None
}

/// Operators' suspends racing with wakes never fail a query: a suspend
/// that lands between a wake and the woken session's borrow is refused or
/// followed by another wake (the bench found queries starved until their
/// wake timeout here).
#[test]
fn suspends_racing_wakes_never_fail_a_query() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let service = name("proc", "race");
    let managed = Arc::new(Managed::start(DriverKind::Process, &service, |s, _| {
        s.wake_timeout_secs = 10;
    }));
    let mut conn = managed.connect();
    let done = Arc::new(AtomicBool::new(false));
    let suspends = Arc::new(AtomicUsize::new(0));
    let suspender = {
        let (managed, done, service) = (Arc::clone(&managed), Arc::clone(&done), service.clone());
        let suspends = Arc::clone(&suspends);
        std::thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                if managed.act(&service, "suspend").0 == 200 {
                    suspends.fetch_add(1, Ordering::AcqRel);
                }
            }
        })
    };
    // Short pauses between queries let suspends land (back to back, every
    // suspend meets a query in flight and is refused); the run ends after
    // enough of them, or a time budget on a slow machine.
    let started = std::time::Instant::now();
    let mut round = 0u64;
    while suspends.load(Ordering::Acquire) < 30 && started.elapsed() < Duration::from_secs(60) {
        let one: Option<i64> = conn
            .query_first("SELECT 1")
            .unwrap_or_else(|e| panic!("query {round} failed: {e}"));
        assert_eq!(one, Some(1));
        round += 1;
        std::thread::sleep(Duration::from_micros(500 * (round % 5)));
    }
    done.store(true, Ordering::Release);
    suspender.join().expect("suspender");
    assert!(
        suspends.load(Ordering::Acquire) > 0,
        "no suspend happened in {round} queries: the race was not run"
    );
}

/// A managed account gets what the official MariaDB image gives
/// `MARIADB_USER`: every privilege on its database (`test`), no global
/// rights and no grant option; an account whose configuration lists
/// grants gets those.
#[test]
fn managed_accounts_get_their_database_not_global_rights() {
    let service = name("proc", "grants");
    let managed = Managed::start(DriverKind::Process, &service, |_, config| {
        config.users.push(torpor::config::UserConfig {
            name: "reader".into(),
            password: Some("reader-pw".into()),
            password_hash: None,
            grants: Some(vec!["SELECT ON test.*".into()]),
        });
    });
    let mut conn = managed.connect();
    let grants: Vec<String> = conn.query("SHOW GRANTS").expect("show grants");
    assert_eq!(grants.len(), 2, "{grants:#?}");
    assert!(
        grants[0].starts_with("GRANT USAGE ON *.* TO `app`@`%`"),
        "{grants:#?}"
    );
    assert_eq!(grants[1], "GRANT ALL PRIVILEGES ON `test`.* TO `app`@`%`");
    assert!(
        conn.query_drop("CREATE DATABASE grants_elsewhere").is_err(),
        "a managed account made a database besides its own"
    );
    conn.query_drop("CREATE TABLE test.granted (id INT)")
        .expect("its own database is all its own");

    let mut reader = mysql::Conn::new(torpor_tests::mysql_opts(
        managed.addr(),
        "reader",
        "reader-pw",
    ))
    .expect("reader logs in");
    let grants: Vec<String> = reader.query("SHOW GRANTS").expect("show grants");
    assert_eq!(
        grants.get(1).map(String::as_str),
        Some("GRANT SELECT ON `test`.* TO `reader`@`%`"),
        "{grants:#?}"
    );
}

/// The process driver's usage, which the autoscaler samples: mariadbd's
/// own CPU time and resident memory from `/proc` (it shares Torpor's
/// cgroup), growing by what a busy query burns; no limits; none once it
/// stopped.
#[test]
fn process_usage_counts_mariadbd_alone() {
    use torpor::scaler::driver::Driver;

    if !mariadb_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut driver = process_driver(dir.path(), None, String::new());
    driver.start().expect("mariadbd starts");
    let before = driver.usage().expect("usage of a running mariadbd");
    assert!(
        before.memory_bytes > 20 * 1024 * 1024,
        "mariadbd holds tens of MiB: {before:?}"
    );
    assert_eq!((before.cpu_limit, before.memory_limit_bytes), (None, None));

    let mut conn = admin_conn(&driver);
    let started = std::time::Instant::now();
    let _: Option<i64> = conn
        .query_first("SELECT BENCHMARK(5000000, MD5('torpor'))")
        .unwrap();
    let wall = started.elapsed();
    let after = driver.usage().expect("usage after the query");
    let burnt = Duration::from_nanos(after.cpu_nanos - before.cpu_nanos);
    eprintln!("timing: BENCHMARK took {wall:?} of wall time and {burnt:?} of CPU");
    // At least what five million MD5s take on any machine; at most the
    // wall time (one connection runs on one thread) plus /proc's ticks
    // and mariadbd's own background threads.
    assert!(
        burnt >= Duration::from_millis(300) && burnt <= wall + Duration::from_millis(500),
        "/proc counted {burnt:?} of CPU for a {wall:?} query"
    );
    drop(conn);
    driver.destroy().expect("destroy");
    assert!(driver.usage().is_err(), "a stopped mariadbd has no usage");
}

/// A process service with limits runs mariadbd in a cgroup of Torpor's
/// own (as root): the limits read back from the kernel, every page the
/// server touched is charged there, a busy query gets no more CPU than
/// its half CPU, and a resize changes the limits. Without root the driver
/// says so and resizes nothing but the buffer pool; this test then only
/// checks that starting and resizing are not errors.
#[test]
fn process_resize_limits_mariadbd_through_its_own_cgroup() {
    use torpor::scaler::driver::{Driver, Resources};

    if !mariadb_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut driver = process_driver(
        dir.path(),
        Some(Resources {
            cpus: 0.5,
            memory_mib: 768,
        }),
        format!("torpor.test-resize.{}", std::process::id()),
    );
    driver.start().expect("mariadbd starts");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: no cgroup, buffer pool only");
        driver
            .resize(Resources {
                cpus: 1.0,
                memory_mib: 1024,
            })
            .expect("resize");
        driver.destroy().expect("destroy");
        return;
    }
    let usage = driver.usage().expect("usage");
    assert_eq!(usage.cpu_limit, Some(0.5), "{usage:?}");
    assert_eq!(usage.memory_limit_bytes, Some(768 * 1024 * 1024));
    assert!(
        usage.memory_bytes > 20 * 1024 * 1024,
        "charges moved in: {usage:?}"
    );

    let mut conn = admin_conn(&driver);
    let before = driver.usage().expect("usage").cpu_nanos;
    let started = std::time::Instant::now();
    let _: Option<i64> = conn
        .query_first("SELECT BENCHMARK(5000000, MD5('torpor'))")
        .unwrap();
    let wall = started.elapsed();
    let burnt = Duration::from_nanos(driver.usage().expect("usage").cpu_nanos - before);
    eprintln!("timing: BENCHMARK under half a CPU took {wall:?} of wall time and {burnt:?} of CPU");
    // Half a CPU: what it burns is at most half the wall time (plus a
    // CFS period of slack), however idle the machine is.
    assert!(
        burnt <= wall / 2 + Duration::from_millis(150) && burnt >= Duration::from_millis(300),
        "{burnt:?} of CPU in {wall:?} under a 0.5 CPU limit"
    );
    let whole = Resources {
        cpus: 1.0,
        memory_mib: 1024,
    };
    driver.resize(whole).expect("resize");
    let usage = driver.usage().expect("usage");
    assert_eq!(usage.cpu_limit, Some(1.0), "{usage:?}");
    assert_eq!(usage.memory_limit_bytes, Some(1024 * 1024 * 1024));
    drop(conn);
    driver.destroy().expect("destroy");
    let hierarchies = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !hierarchies.is_empty()
            && !std::path::Path::new(&format!(
                "/sys/fs/cgroup/memory/torpor.test-resize.{}",
                std::process::id()
            ))
            .exists(),
        "the cgroup is removed with the service"
    );
}

/// A process driver for a mariadbd of the test's own in `dir`, with
/// `limits` from its start (a cgroup named `cgroup_name`) or none.
fn process_driver(
    dir: &Path,
    limits: Option<torpor::scaler::driver::Resources>,
    cgroup_name: String,
) -> torpor::scaler::process_driver::ProcessDriver {
    torpor::scaler::process_driver::ProcessDriver::new(
        torpor::scaler::process_driver::ProcessOptions {
            datadir: dir.join("data"),
            accounts: Vec::new(),
            admin_password: "admin-secret".into(),
            buffer_pool: "64M".into(),
            ready_timeout: Duration::from_secs(60),
            limits,
            cgroup_name,
            service: "driver-test".into(),
            hosts: Vec::new(),
            storage: None,
        },
    )
}

/// A connection as the driver's own admin account (the scaler's).
fn admin_conn(driver: &torpor::scaler::process_driver::ProcessDriver) -> mysql::Conn {
    use torpor::scaler::driver::Driver;
    let access = driver.admin_access().expect("admin access");
    assert_eq!(access.user, torpor::scaler::process_driver::ADMIN_USER);
    let opts = torpor_tests::tcp_opts(access.address)
        .user(Some(access.user.clone()))
        .pass(Some(access.password.clone()));
    mysql::Conn::new(opts).expect("admin login")
}
