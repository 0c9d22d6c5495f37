//! Configuration reload on SIGHUP, with the real `torpor` binary: the file
//! is read again and applied without dropping a connection — accounts,
//! limits, and a managed service's timers and backend accounts — while an
//! invalid file, or one that changes what only a restart can change, is
//! refused with a clear log line and the running configuration stays.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use torpor::scaler::process::free_port;
use torpor_tests::binary::{Running, HANG_LIMIT};
use torpor_tests::{backend, mysql_opts, APP_PASSWORD, APP_USER, OTHER_PASSWORD, OTHER_USER};

const RELOADED: &str = "config reloaded";
const REFUSED: &str = "config reload refused, the running configuration stays";

/// A login as `user`, or the server's error code.
fn login(addr: SocketAddr, user: &str, password: &str) -> Result<mysql::Conn, u16> {
    match mysql::Conn::new(mysql_opts(addr, user, password)) {
        Ok(conn) => Ok(conn),
        Err(mysql::Error::MySqlError(e)) => Err(e.code),
        Err(e) => panic!("login as {user} failed without a server error: {e}"),
    }
}

/// Writes `text` as the whole config file (a rename, as editors and
/// configuration managers do, so a reload never reads half a file).
fn write_config(path: &Path, text: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, text).unwrap();
    std::fs::rename(&next, path).unwrap();
}

fn user_entry(name: &str, password: &str) -> String {
    format!("[[users]]\nname = \"{name}\"\npassword = \"{password}\"\n")
}

/// Accounts and limits, in front of the test MariaDB: a user added by a
/// reload can log in, one removed cannot (its open session goes on), a
/// lowered connection limit holds, sessions keep their state across every
/// reload, and invalid or restart-only changes are refused by name.
#[test]
fn sighup_reloads_accounts_and_limits_without_dropping_a_session() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("torpor.toml");
    let backend = backend().addr();
    let base = format!("[backend]\naddress = \"{backend}\"\n");
    write_config(&path, &base);
    let config = path.to_str().unwrap();
    let mut torpor = Running::start_bare(
        &[
            "--config",
            config,
            "--user",
            &format!("{APP_USER}:{APP_PASSWORD}"),
            "--admin-listen",
            "off",
        ],
        false,
    );
    let addr = torpor.addr;
    assert_eq!(
        login(addr, OTHER_USER, OTHER_PASSWORD).err(),
        Some(1045),
        "not in the configuration yet"
    );
    let mut kept = login(addr, APP_USER, APP_PASSWORD).unwrap();
    kept.query_drop("SET @kept = 42, sql_mode = 'ANSI_QUOTES'")
        .unwrap();
    let id: u64 = kept.query_first("SELECT CONNECTION_ID()").unwrap().unwrap();
    let check_kept = |kept: &mut mysql::Conn| {
        let row: (u64, i64, String) = kept
            .query_first("SELECT CONNECTION_ID(), @kept, @@sql_mode")
            .unwrap()
            .unwrap();
        assert_eq!(row, (id, 42, "ANSI_QUOTES".to_string()));
    };

    // A new account and a lower connection limit.
    write_config(
        &path,
        &format!(
            "max_connections = 2\n{base}{}",
            user_entry(OTHER_USER, OTHER_PASSWORD)
        ),
    );
    torpor.signal(libc::SIGHUP);
    torpor.wait_log(RELOADED, 1);
    let log = torpor.log_text();
    assert!(
        log.contains("users") && log.contains("max_connections"),
        "the log names what changed:\n{log}"
    );
    let mut other = login(addr, OTHER_USER, OTHER_PASSWORD).expect("added by the reload");
    let user: String = other.query_first("SELECT CURRENT_USER()").unwrap().unwrap();
    assert!(user.starts_with(&format!("{OTHER_USER}@")), "{user}");
    assert_eq!(
        login(addr, APP_USER, APP_PASSWORD).err(),
        Some(1040),
        "a third connection is over the reloaded limit of 2"
    );
    check_kept(&mut kept);

    // An invalid file: refused with the parser's reason; nothing changes.
    write_config(&path, &format!("max_connections = \"many\"\n{base}"));
    torpor.signal(libc::SIGHUP);
    torpor.wait_log(REFUSED, 1);
    let log = torpor.log_text();
    let refusal = &log[log.rfind(REFUSED).unwrap()..];
    assert!(
        refusal.contains("torpor.toml") && refusal.contains("\"many\""),
        "the refusal names the file and the value:\n{log}"
    );
    assert_eq!(login(addr, APP_USER, APP_PASSWORD).err(), Some(1040));

    // A key only a restart can change: refused whole, by name, even with
    // a reloadable change beside it.
    write_config(
        &path,
        &format!(
            "workers = 3\nmax_connections = 50\n{base}{}",
            user_entry(OTHER_USER, OTHER_PASSWORD)
        ),
    );
    torpor.signal(libc::SIGHUP);
    torpor.wait_log(REFUSED, 2);
    assert!(
        torpor
            .log_text()
            .contains("workers changed, which needs a restart"),
        "{}",
        torpor.log_text()
    );
    assert_eq!(login(addr, APP_USER, APP_PASSWORD).err(), Some(1040));

    // The account goes and the limit rises: new logins as it are refused,
    // its open session goes on.
    write_config(&path, &base);
    torpor.signal(libc::SIGHUP);
    torpor.wait_log(RELOADED, 2);
    assert_eq!(
        login(addr, OTHER_USER, OTHER_PASSWORD).err(),
        Some(1045),
        "removed by the reload"
    );
    let one: u8 = other.query_first("SELECT 1").unwrap().unwrap();
    assert_eq!(one, 1, "the removed user's open session goes on");
    let mut third = login(addr, APP_USER, APP_PASSWORD).expect("the limit is the default again");
    let one: u8 = third.query_first("SELECT 1").unwrap().unwrap();
    assert_eq!(one, 1);
    check_kept(&mut kept);
    drop((other, third));

    // A data-path limit reaches a session that logged in before it: the
    // kept session, idle in a transaction past the reloaded limit, is
    // closed, and its next command reads why.
    write_config(
        &path,
        &format!("idle_in_transaction_timeout_secs = 1\n{base}"),
    );
    torpor.signal(libc::SIGHUP);
    torpor.wait_log(RELOADED, 3);
    kept.query_drop("BEGIN").unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let closed = kept.query_drop("SELECT 1").map_err(|e| match e {
        mysql::Error::MySqlError(e) => e.code,
        other => panic!("not a server error: {other}"),
    });
    assert_eq!(
        closed,
        Err(1927),
        "idle in a transaction past the new limit"
    );
    drop(kept);
    torpor.stop();
}

/// The state of `service` as the admin API reports it.
fn service_state(admin: SocketAddr, service: &str) -> String {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let body = agent
        .get(&format!("http://{admin}/services/{service}"))
        .call()
        .unwrap_or_else(|e| panic!("GET /services/{service}: {e}"))
        .body_mut()
        .read_to_string()
        .unwrap();
    let value: serde_json::Value = serde_json::from_str(&body).unwrap();
    value["state"]
        .as_str()
        .unwrap_or_else(|| panic!("no state in {body}"))
        .to_string()
}

/// A managed service (process driver): a reload that adds an account
/// creates it on the running backend, so the new user's queries run
/// there; a reload that turns on suspending makes the idle service
/// suspend, and the next query wakes it with the session intact.
#[test]
fn sighup_reloads_a_services_timers_and_backend_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("torpor.toml");
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let state_dir = dir.path().join("state");
    let service = |suspend_after: u64| {
        format!(
            "state_dir = \"{}\"\n[[services]]\nname = \"db\"\ndriver = \"process\"\n\
             suspend_after_secs = {suspend_after}\n{}",
            state_dir.display(),
            user_entry(APP_USER, APP_PASSWORD)
        )
    };
    write_config(&path, &service(0));
    let mut torpor = Running::start_bare(
        &[
            "--config",
            path.to_str().unwrap(),
            "--admin-listen",
            &admin.to_string(),
        ],
        false,
    );
    let addr = torpor.addr;
    let mut app = login(addr, APP_USER, APP_PASSWORD).unwrap();
    app.query_drop("SET @kept = 'across the suspend'").unwrap();
    assert_eq!(login(addr, "late", "late-secret").err(), Some(1045));

    write_config(
        &path,
        &format!("{}{}", service(1), user_entry("late", "late-secret")),
    );
    torpor.signal(libc::SIGHUP);
    torpor.wait_log(RELOADED, 1);
    let log = torpor.log_text();
    assert!(
        log.contains("services.db.suspend_after_secs") && log.contains("services.db.accounts"),
        "{log}"
    );
    // The account exists on the backend: the login and the query run
    // there as `late`.
    let mut late = login(addr, "late", "late-secret").expect("added by the reload");
    let user: String = late.query_first("SELECT CURRENT_USER()").unwrap().unwrap();
    assert_eq!(user, "late@%");
    drop(late);

    // Suspending was off at start; the reload turned it on.
    let deadline = Instant::now() + HANG_LIMIT;
    while service_state(admin, "db") != "suspended" {
        assert!(
            Instant::now() < deadline,
            "the idle service never suspended after the reload:\n{}",
            torpor.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let kept: String = app.query_first("SELECT @kept").unwrap().unwrap();
    assert_eq!(kept, "across the suspend");
    drop(app);
    torpor.stop();
}
