//! Sessions that share backend connections never see each other, and what
//! Torpor runs for itself never shows in what a session sees (issue 13,
//! defects 4, 5 and 6).
//!
//! Most tests run Torpor with one worker and `max_backend_connections =
//! 1`, so that every session is served by the same backend connection:
//! whatever one session leaves there, the next one finds. Each is a
//! differential check where it can be: the same statements straight to
//! MariaDB and through Torpor, compared.

use mysql::prelude::Queryable;
use mysql::{Conn, Row};
use torpor_tests::{admin_connect, backend, connect, Torpor};

/// Torpor with one backend connection for all sessions; a session that
/// cannot have it gives up after two seconds.
fn one_connection() -> Torpor {
    Torpor::start_with(backend().addr(), |config| {
        config.workers = 1;
        config.max_backend_connections = 1;
        config.pool_wait_timeout_ms = 2_000;
    })
}

/// A session through `torpor`, or `None` when it could not have a backend
/// connection in time (another session holds the only one: waiting is
/// what a pinned session's neighbours may see; finding its state never).
fn try_connect(torpor: &Torpor) -> Option<Conn> {
    let opts = torpor_tests::mysql_opts(
        torpor.addr(),
        torpor_tests::APP_USER,
        torpor_tests::APP_PASSWORD,
    );
    Conn::new(opts).ok()
}

/// Creates schema `schema` with tables `t` and `u` (one row each).
fn tables(schema: &str) {
    let mut admin = admin_connect();
    admin
        .query_drop(format!("CREATE DATABASE IF NOT EXISTS {schema}"))
        .unwrap();
    for table in ["t", "u"] {
        admin
            .query_drop(format!(
                "CREATE TABLE IF NOT EXISTS {schema}.{table} (a INT)"
            ))
            .unwrap();
        admin
            .query_drop(format!("TRUNCATE {schema}.{table}"))
            .unwrap();
        admin
            .query_drop(format!("INSERT INTO {schema}.{table} VALUES (1)"))
            .unwrap();
    }
    admin
        .query_drop(format!("GRANT ALL ON {schema}.* TO 'app'@'%'"))
        .unwrap();
}

/// What a client reads of the diagnostics and previous-statement
/// functions after `statements`, each sent alone.
fn diagnostics_after(conn: &mut Conn, statements: &[&str]) -> Vec<String> {
    for sql in statements {
        conn.query_drop(*sql).unwrap();
    }
    let mut seen = Vec::new();
    let warnings: Vec<Row> = conn.query("SHOW WARNINGS").unwrap();
    for row in warnings {
        let (level, code, message): (String, u32, String) = mysql::from_row(row);
        seen.push(format!("{level} {code} {message}"));
    }
    // Each of these is the first statement after `statements` in its own
    // run, so each reads what they left.
    for probe in [
        "SELECT @@warning_count",
        "SELECT ROW_COUNT()",
        "SELECT FOUND_ROWS()",
        "SELECT LAST_INSERT_ID()",
    ] {
        for sql in statements {
            conn.query_drop(*sql).unwrap();
        }
        let value: Option<String> = conn.query_first(probe).unwrap().flatten();
        seen.push(format!("{probe} = {value:?}"));
    }
    seen
}

#[test]
fn torpors_read_of_user_variables_does_not_clear_warnings() {
    tables("iso_diag");
    let torpor = one_connection();
    let cases: [&[&str]; 4] = [
        &["SET @b = CAST('abc' AS SIGNED)"],
        &[
            "SELECT SQL_CALC_FOUND_ROWS a FROM iso_diag.t LIMIT 0",
            "SET @c = 1",
        ],
        &[
            "UPDATE iso_diag.t SET a = a + 1",
            "SELECT @d := CAST('x' AS SIGNED)",
        ],
        &["SELECT LAST_INSERT_ID(7)"],
    ];
    for statements in cases {
        let mut direct = Conn::new(torpor_tests::mysql_opts(
            backend().addr(),
            torpor_tests::APP_USER,
            torpor_tests::APP_PASSWORD,
        ))
        .unwrap();
        let want = diagnostics_after(&mut direct, statements);
        let mut through = connect(torpor.addr());
        let have = diagnostics_after(&mut through, statements);
        assert_eq!(have, want, "after {statements:?}");
        // The variables still move with the session to another
        // connection: another session takes the only one, then this
        // session reads its variable back.
        let mut other = connect(torpor.addr());
        other.query_drop("SET @b = 'other'").unwrap();
        let mut again = direct;
        for sql in statements {
            again.query_drop(*sql).unwrap();
        }
        let direct_b: Option<String> = again.query_first("SELECT @b").unwrap().flatten();
        let through_b: Option<String> = through.query_first("SELECT @b").unwrap().flatten();
        assert_eq!(through_b, direct_b, "@b after {statements:?}");
    }
}

/// A lock taken by `take` in one session, which then quits: the next
/// session (on the same backend connection) must not be inside it.
fn lock_does_not_outlive_its_session(torpor: &Torpor, take: impl FnOnce(&mut Conn)) {
    let mut first = connect(torpor.addr());
    take(&mut first);
    // Under the lock, only locked tables can be read: the lock is real.
    let refused = first.query_drop("SELECT * FROM iso_lock.u");
    assert!(refused.is_err(), "the lock was taken");
    drop(first);
    let mut next = connect(torpor.addr());
    let rows: Vec<i32> = next
        .query("SELECT a FROM iso_lock.u")
        .unwrap_or_else(|e| panic!("the next session is inside the old lock: {e}"));
    assert_eq!(rows.len(), 1);
}

#[test]
fn lock_tables_as_a_prepared_statement_pins_and_ends_with_the_session() {
    tables("iso_lock");
    let torpor = one_connection();
    lock_does_not_outlive_its_session(&torpor, |c| {
        c.exec_drop("LOCK TABLES iso_lock.t READ", ()).unwrap();
    });
    lock_does_not_outlive_its_session(&torpor, |c| {
        c.query_drop("EXECUTE IMMEDIATE 'LOCK TABLES iso_lock.t READ'")
            .unwrap();
    });
    lock_does_not_outlive_its_session(&torpor, |c| {
        c.query_drop("PREPARE s FROM 'LOCK TABLES iso_lock.t READ'")
            .unwrap();
        c.query_drop("EXECUTE s").unwrap();
    });
    lock_does_not_outlive_its_session(&torpor, |c| {
        c.query_drop("SET @q = 'LOCK TABLES iso_lock.t READ'")
            .unwrap();
        c.query_drop("EXECUTE IMMEDIATE @q").unwrap();
    });
}

#[test]
fn lock_tables_as_a_prepared_statement_pins_while_the_session_lives() {
    tables("iso_lock2");
    let torpor = one_connection();
    let mut first = connect(torpor.addr());
    first
        .exec_drop("LOCK TABLES iso_lock2.t WRITE", ())
        .unwrap();
    // A second session must wait for (or be refused) the only backend
    // connection, never run on it inside the first one's lock: with the
    // lock pinned, its wait times out.
    let Some(mut second) = try_connect(&torpor) else {
        return;
    };
    match second.query_drop("SELECT * FROM iso_lock2.u") {
        Err(mysql::Error::MySqlError(e)) => assert_ne!(
            e.code, 1100,
            "the second session ran on the first one's locked connection: {e}"
        ),
        other => panic!("the second session got the locked connection: {other:?}"),
    }
    drop(first);
}

/// Every way of setting a session variable that a session may use; each
/// must stay in its session.
const SET_FORMS: [&str; 4] = [
    "SET @@time_zone = '+05:00'",
    "SET @@sql_mode = 'ansi'",
    "SET sql_mode = 'ansi', @@time_zone = '+05:00'",
    "EXECUTE IMMEDIATE 'SET @@time_zone = ''+05:00'''",
];

fn fresh_session_sees(conn: &mut Conn) -> (String, String) {
    conn.query_first("SELECT @@sql_mode, @@time_zone")
        .unwrap()
        .unwrap()
}

#[test]
fn untracked_set_forms_do_not_leak_into_the_next_session() {
    let torpor = one_connection();
    let mut direct = Conn::new(torpor_tests::mysql_opts(
        backend().addr(),
        torpor_tests::APP_USER,
        torpor_tests::APP_PASSWORD,
    ))
    .unwrap();
    let want = fresh_session_sees(&mut direct);
    for form in SET_FORMS {
        for prepared in [false, true] {
            if prepared && form.starts_with("EXECUTE") {
                continue;
            }
            let mut first = connect(torpor.addr());
            if prepared {
                first.exec_drop(form, ()).unwrap();
            } else {
                first.query_drop(form).unwrap();
            }
            let mine = fresh_session_sees(&mut first);
            assert_ne!(mine, want, "{form} changed the session");
            // While the first session lives (idle), and after it quits.
            if let Some(mut second) = try_connect(&torpor) {
                assert_eq!(
                    fresh_session_sees(&mut second),
                    want,
                    "{form} (prepared: {prepared}) leaked into another live session"
                );
            }
            assert_eq!(fresh_session_sees(&mut first), mine, "{form} stays");
            drop(first);
            let mut third = connect(torpor.addr());
            assert_eq!(
                fresh_session_sees(&mut third),
                want,
                "{form} (prepared: {prepared}) leaked past its session's end"
            );
        }
    }
}

#[test]
fn a_procedure_that_sets_variables_does_not_leak_into_the_next_session() {
    let mut admin = admin_connect();
    admin
        .query_drop("CREATE DATABASE IF NOT EXISTS iso_proc")
        .unwrap();
    admin
        .query_drop("GRANT ALL ON iso_proc.* TO 'app'@'%'")
        .unwrap();
    admin
        .query_drop(
            "CREATE OR REPLACE PROCEDURE iso_proc.p() \
             BEGIN SET @@time_zone = '+05:00'; SET @pv = 1; END",
        )
        .unwrap();
    let torpor = one_connection();
    let mut direct = Conn::new(torpor_tests::mysql_opts(
        backend().addr(),
        torpor_tests::APP_USER,
        torpor_tests::APP_PASSWORD,
    ))
    .unwrap();
    let want = fresh_session_sees(&mut direct);
    let mut first = connect(torpor.addr());
    first.query_drop("CALL iso_proc.p()").unwrap();
    let mine = fresh_session_sees(&mut first);
    assert_eq!(mine.1, "+05:00");
    if let Some(mut second) = try_connect(&torpor) {
        assert_eq!(fresh_session_sees(&mut second), want, "live first session");
        let pv: Option<i64> = second.query_first("SELECT @pv").unwrap().flatten();
        assert_eq!(pv, None);
    }
    assert_eq!(fresh_session_sees(&mut first), mine, "the session keeps it");
    drop(first);
    let mut third = connect(torpor.addr());
    assert_eq!(fresh_session_sees(&mut third), want, "after its end");
}

#[test]
fn a_pinned_sessions_connection_is_reset_at_its_end_not_leaked() {
    tables("iso_reset");
    let torpor = one_connection();
    let mut direct = Conn::new(torpor_tests::mysql_opts(
        backend().addr(),
        torpor_tests::APP_USER,
        torpor_tests::APP_PASSWORD,
    ))
    .unwrap();
    let want = fresh_session_sees(&mut direct);
    let mut first = connect(torpor.addr());
    first
        .query_drop("CREATE TEMPORARY TABLE iso_reset.tmp (a INT)")
        .unwrap();
    first.query_drop("SET @@time_zone = '+05:00'").unwrap();
    first.query_drop("SELECT GET_LOCK('iso_reset', 0)").unwrap();
    first.query_drop("BEGIN").unwrap();
    first
        .exec_drop("INSERT INTO iso_reset.t VALUES (2)", ())
        .unwrap();
    let thread: u64 = first
        .query_first("SELECT @@pseudo_thread_id")
        .unwrap()
        .unwrap();
    drop(first);
    let mut next = connect(torpor.addr());
    let same: u64 = next
        .query_first("SELECT @@pseudo_thread_id")
        .unwrap()
        .unwrap();
    assert_eq!(same, thread, "the connection was kept (reset), not closed");
    assert_eq!(fresh_session_sees(&mut next), want);
    let free: Option<i64> = next
        .query_first("SELECT IS_FREE_LOCK('iso_reset')")
        .unwrap()
        .flatten();
    assert_eq!(free, Some(1), "the named lock went with the session");
    assert!(
        next.query_drop("SELECT * FROM iso_reset.tmp").is_err(),
        "the temporary table went with the session"
    );
    let rows: Vec<i32> = next.query("SELECT a FROM iso_reset.t").unwrap();
    assert_eq!(rows, vec![1], "the open transaction was rolled back");
}

/// The `mariadb` client with `--show-warnings`, over TCP to `addr`.
fn mariadb_cli(addr: std::net::SocketAddr, script: &str) -> (Option<i32>, String, String) {
    let program = torpor_tests::require_program("mariadb", "mariadb-client");
    let output = std::process::Command::new(program)
        .arg("--no-defaults")
        .arg("--protocol=TCP")
        .arg(format!("--host={}", addr.ip()))
        .arg(format!("--port={}", addr.port()))
        .arg(format!("--user={}", torpor_tests::APP_USER))
        .arg(format!("--password={}", torpor_tests::APP_PASSWORD))
        .arg("--default-character-set=utf8mb4")
        .args(["--show-warnings", "--table", "test", "-e", script])
        .output()
        .expect("the mariadb client runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The issue's own repro, through the `mariadb` client: the warning of a
/// SET that assigns a user variable, and what the next statements read.
#[test]
fn the_mariadb_client_sees_the_warnings_of_a_user_variable_assignment() {
    let torpor = one_connection();
    for script in [
        "SET @b = CAST('abc' AS SIGNED); SHOW WARNINGS",
        "SET @b = CAST('abc' AS SIGNED); SELECT @@warning_count, ROW_COUNT()",
        "SELECT @c := CAST('x' AS SIGNED); SHOW WARNINGS; SELECT @c",
    ] {
        let proxied = mariadb_cli(torpor.addr(), script);
        let direct = mariadb_cli(backend().addr(), script);
        assert_eq!(proxied, direct, "-e {script:?}");
        assert!(direct.1.contains("1292"), "{direct:?}");
    }
}
