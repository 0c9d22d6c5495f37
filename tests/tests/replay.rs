//! Sessions that survive their backend connection: a second, direct admin
//! connection KILLs the backend thread serving a client between two of its
//! statements, and the client's next statements run on a new backend
//! connection with everything it had set (user variables, SET NAMES,
//! sql_mode, time_zone, schema, prepared statements with parameters) —
//! the client sees nothing. A pinned session (open transaction, temporary
//! table) is not moved: it gets an error, as it would from MariaDB.

use std::time::Duration;

use mysql::prelude::Queryable;
use mysql::{Conn, Value};
use torpor_tests::{admin_connect, connect, Torpor};

/// The backend thread serving this client's session right now (Torpor
/// rewrites CONNECTION_ID(), not pseudo_thread_id).
fn backend_thread(conn: &mut Conn) -> u64 {
    conn.query_first("SELECT @@pseudo_thread_id")
        .expect("query")
        .expect("a row")
}

fn kill_backend_of(conn: &mut Conn) -> u64 {
    let thread = backend_thread(conn);
    admin_connect()
        .query_drop(format!("KILL {thread}"))
        .expect("admin KILL");
    // Past Torpor's idle check threshold, and time for the close to land.
    std::thread::sleep(Duration::from_millis(50));
    thread
}

#[test]
fn state_survives_a_killed_backend_between_statements() {
    let torpor = Torpor::start();
    let mut admin = admin_connect();
    admin
        .query_drop("CREATE DATABASE IF NOT EXISTS replay_between")
        .unwrap();
    admin
        .query_drop(
            "CREATE TABLE IF NOT EXISTS replay_between.t (id INT PRIMARY KEY, v VARCHAR(20))",
        )
        .unwrap();
    admin
        .query_drop("REPLACE INTO replay_between.t VALUES (1, 'one'), (2, 'two')")
        .unwrap();

    let mut conn = connect(torpor.addr());
    let client_id = conn.connection_id();
    conn.query_drop("USE replay_between").unwrap();
    conn.query_drop("SET @n = 42, @s = _utf8mb4'héllo wörld', @d = 1.50, @nothing = NULL")
        .unwrap();
    conn.query_drop("SET NAMES latin1").unwrap();
    conn.query_drop("SET sql_mode = 'ANSI_QUOTES,NO_ENGINE_SUBSTITUTION'")
        .unwrap();
    conn.query_drop("SET time_zone = '+03:00'").unwrap();
    conn.query_drop("SET SESSION wait_timeout = 1234").unwrap();
    let statement = conn.prep("SELECT v, ? + 1 FROM t WHERE id = ?").unwrap();
    let before: Vec<(String, i64)> = conn.exec(&statement, (10, 1)).unwrap();
    assert_eq!(before, vec![("one".to_string(), 11)]);

    let old_thread = kill_backend_of(&mut conn);

    let row: mysql::Row = conn
        .query_first(
            "SELECT @n, HEX(@s), CHARSET(@s), @d, @nothing, DATABASE(), @@sql_mode, \
             @@time_zone, @@character_set_client, @@character_set_results, @@wait_timeout",
        )
        .expect("the query after the kill runs")
        .expect("a row");
    let values: Vec<Value> = row.unwrap();
    let text = |v: &Value| match v {
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::NULL => "NULL".to_string(),
        other => format!("{other:?}"),
    };
    let got: Vec<String> = values.iter().map(text).collect();
    assert_eq!(
        got,
        vec![
            "42",
            // HEX: the value's own bytes, whatever SET NAMES does to output.
            "68C3A96C6C6F2077C3B6726C64",
            "utf8mb4",
            "1.50",
            "NULL",
            "replay_between",
            "ANSI_QUOTES,NO_ENGINE_SUBSTITUTION",
            "+03:00",
            "latin1",
            "latin1",
            "1234",
        ]
    );
    assert_ne!(
        backend_thread(&mut conn),
        old_thread,
        "a new backend connection serves the session"
    );
    assert_eq!(
        conn.connection_id(),
        client_id,
        "the client's connection id did not change"
    );
    let client_visible: u64 = conn.query_first("SELECT CONNECTION_ID()").unwrap().unwrap();
    assert_eq!(client_visible, u64::from(client_id));

    // The statement prepared on the old connection runs on the new one,
    // under the same client id, with parameters.
    let after: Vec<(String, i64)> = conn.exec(&statement, (20, 2)).unwrap();
    assert_eq!(after, vec![("two".to_string(), 21)]);
    // …and again after a second kill.
    kill_backend_of(&mut conn);
    let again: Vec<(String, i64)> = conn.exec(&statement, (30, 1)).unwrap();
    assert_eq!(again, vec![("one".to_string(), 31)]);
    let n: i64 = conn.query_first("SELECT @n").unwrap().unwrap();
    assert_eq!(n, 42);
}

#[test]
fn a_pinned_session_is_not_moved() {
    let torpor = Torpor::start();
    let mut admin = admin_connect();
    admin
        .query_drop("CREATE DATABASE IF NOT EXISTS replay_pinned")
        .unwrap();
    admin
        .query_drop("CREATE TABLE IF NOT EXISTS replay_pinned.t (id INT PRIMARY KEY)")
        .unwrap();

    // An open transaction pins the session: its work cannot move.
    let mut conn = connect(torpor.addr());
    conn.query_drop("BEGIN").unwrap();
    conn.query_drop("INSERT INTO replay_pinned.t VALUES (1)")
        .unwrap();
    kill_backend_of(&mut conn);
    let err = conn
        .query_drop("INSERT INTO replay_pinned.t VALUES (2)")
        .expect_err("a transaction cannot silently move");
    let text = err.to_string();
    assert!(
        text.contains("2013") || text.contains("Lost connection"),
        "{text}"
    );
    let count: i64 = admin
        .query_first("SELECT COUNT(*) FROM replay_pinned.t")
        .unwrap()
        .unwrap();
    assert_eq!(
        count, 0,
        "the killed transaction was rolled back, nothing half-applied"
    );

    // A temporary table pins it too.
    let mut conn = connect(torpor.addr());
    conn.query_drop("CREATE TEMPORARY TABLE tmp_pinned (a INT)")
        .unwrap();
    kill_backend_of(&mut conn);
    assert!(conn.query_drop("SELECT * FROM tmp_pinned").is_err());
}

#[test]
fn statements_are_closed_on_the_backend_when_the_client_closes_them() {
    let torpor = Torpor::start();
    let mut conn = connect(torpor.addr());
    let mut admin = admin_connect();
    let before: i64 = admin
        .query_first::<(String, i64), _>("SHOW GLOBAL STATUS LIKE 'Prepared_stmt_count'")
        .unwrap()
        .map(|(_, v)| v)
        .unwrap();
    for i in 0..50 {
        let statement = conn.prep(format!("SELECT {i} + ?")).unwrap();
        let value: Option<i64> = conn.exec_first(&statement, (1,)).unwrap();
        assert_eq!(value, Some(i + 1));
        conn.close(statement).unwrap();
    }
    let after: i64 = admin
        .query_first::<(String, i64), _>("SHOW GLOBAL STATUS LIKE 'Prepared_stmt_count'")
        .unwrap()
        .map(|(_, v)| v)
        .unwrap();
    // Other tests of this binary may hold a few statements meanwhile;
    // fifty left open would show.
    assert!(
        after < before + 10,
        "statements closed by the client are closed on the backend ({before} → {after})"
    );
}
