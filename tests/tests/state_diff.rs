//! A session moved onto a backend connection in another state gets its
//! state back in the same write as its statement: the diff's SETs go
//! ahead of the statement, their replies swallowed. Two sessions take
//! turns on a Torpor whose pool holds one connection, so every statement
//! moves its session onto the connection the other one left in its own
//! state. Each statement must run in its session's state (read back, and
//! acted on: strict mode refuses what the other mode truncates), see only
//! its own diagnostics, and get exactly its own reply.

use mysql::prelude::Queryable;
use torpor_tests::{admin_connect, backend, connect, Torpor};

/// One session's state.
struct Setup {
    sql_mode: &'static str,
    time_zone: &'static str,
    tag: i64,
}

const SETUPS: [Setup; 2] = [
    Setup {
        sql_mode: "STRICT_TRANS_TABLES,NO_ENGINE_SUBSTITUTION",
        time_zone: "+03:00",
        tag: 11,
    },
    Setup {
        sql_mode: "NO_ENGINE_SUBSTITUTION",
        time_zone: "-05:00",
        tag: 22,
    },
];

#[test]
fn sessions_taking_turns_on_one_connection_run_each_statement_in_their_own_state() {
    let torpor = Torpor::start_with(backend().addr(), |config| {
        // One worker and one connection: every turn moves a session.
        config.workers = 1;
        config.max_backend_connections = 1;
    });
    let mut admin = admin_connect();
    admin
        .query_drop("DROP TABLE IF EXISTS test.state_diff_short")
        .unwrap();
    admin
        .query_drop("CREATE TABLE test.state_diff_short (s VARCHAR(3))")
        .unwrap();
    let mut sessions: Vec<mysql::Conn> = SETUPS.iter().map(|_| connect(torpor.addr())).collect();
    for (conn, setup) in sessions.iter_mut().zip(&SETUPS) {
        conn.query_drop(format!(
            "SET SESSION sql_mode = '{}', SESSION time_zone = '{}', @state_diff_tag = {}",
            setup.sql_mode, setup.time_zone, setup.tag
        ))
        .unwrap();
    }
    for turn in 0..40 {
        let who = turn % 2;
        let (conn, setup) = (&mut sessions[who], &SETUPS[who]);
        // Read back: the statement ran after the diff.
        let (sql_mode, time_zone, tag): (String, String, i64) = conn
            .query_first("SELECT @@SESSION.sql_mode, @@SESSION.time_zone, @state_diff_tag")
            .unwrap()
            .unwrap();
        assert_eq!(
            (sql_mode.as_str(), time_zone.as_str(), tag),
            (setup.sql_mode, setup.time_zone, setup.tag),
            "turn {turn}: session {who} in another state"
        );
        // Acted on: a value too long for the column is refused in strict
        // mode, truncated with a warning in the other.
        let insert = conn.query_drop("INSERT INTO test.state_diff_short VALUES ('abcdef')");
        let strict = setup.sql_mode.starts_with("STRICT");
        match (strict, insert) {
            (true, Err(mysql::Error::MySqlError(e))) => assert_eq!(e.code, 1406, "turn {turn}"),
            (false, Ok(())) => {
                // The warning is the statement's own: the diff's replies,
                // swallowed ahead of it, left nothing the client sees.
                let warnings: Vec<(String, u32, String)> = conn.query("SHOW WARNINGS").unwrap();
                assert_eq!(warnings.len(), 1, "turn {turn}: {warnings:?}");
                assert_eq!(warnings[0].1, 1265, "turn {turn}: {warnings:?}");
            }
            (strict, other) => panic!("turn {turn}: strict {strict}, insert gave {other:?}"),
        }
    }
    // Both sessions were served all along by the pool's one connection.
    let rows: u64 = admin
        .query_first("SELECT COUNT(*) FROM test.state_diff_short")
        .unwrap()
        .unwrap();
    assert_eq!(rows, 20);
    admin
        .query_drop("DROP TABLE test.state_diff_short")
        .unwrap();
}

/// A login onto a pooled connection that another session left in another
/// state (PyMySQL leaves `autocommit = 0` on every connection it closes,
/// JDBC drivers their settings) needs no round trip to the backend: the
/// connection goes back to the pool as it is, and the session's first
/// statement takes the diff along. Shown on a frozen backend: the login
/// is answered while mariadbd is stopped (SIGSTOP), and the first
/// statement, once it runs on again, sees a fresh session's state.
#[test]
fn a_login_onto_a_connection_left_in_another_state_waits_for_no_backend() {
    // A private server: this test freezes it.
    let (server, _certificates) = torpor_tests::mariadb_with_tls(&[]);
    let pid = server.pid().expect("a private MariaDB has a process id") as libc::pid_t;
    let torpor = Torpor::start_with(server.addr(), |config| {
        config.workers = 1;
        config.max_backend_connections = 1;
    });
    let fresh_sql_mode: String = connect(server.addr())
        .query_first("SELECT @@SESSION.sql_mode")
        .unwrap()
        .unwrap();
    {
        let mut leaving = connect(torpor.addr());
        leaving
            .query_drop("SET SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION', SESSION autocommit = 0")
            .unwrap();
        let _: Option<i64> = leaving.query_first("SELECT 1").unwrap();
    }
    // The connection is back in the pool once Torpor has read the quit.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while torpor.connection_count() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the first session never ended"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }

    // SAFETY: kill with SIGSTOP/SIGCONT on the pid of a child server this
    // test started; no memory is involved.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let opts = mysql::OptsBuilder::from_opts(torpor_tests::mysql_opts(
        torpor.addr(),
        torpor_tests::APP_USER,
        torpor_tests::APP_PASSWORD,
    ))
    .read_timeout(Some(std::time::Duration::from_secs(3)))
    // Known up front: the crate's own `SELECT @@max_allowed_packet` after
    // the login would go to the frozen backend.
    .max_allowed_packet(Some(16 * 1024 * 1024));
    let login = mysql::Conn::new(opts);
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let mut arriving = login.expect("the login is answered while the backend is frozen");
    let (sql_mode, autocommit): (String, i64) = arriving
        .query_first("SELECT @@SESSION.sql_mode, @@SESSION.autocommit")
        .unwrap()
        .unwrap();
    assert_eq!(
        (sql_mode.as_str(), autocommit),
        (fresh_sql_mode.as_str(), 1),
        "the first statement runs in a fresh session's state"
    );
}
