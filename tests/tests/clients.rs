//! A real client library (the `mysql` crate) through Torpor: what an
//! application sees must be what it sees from MariaDB directly.
//!
//! Covered: text and binary protocol results (columns, rows, OK packets,
//! errors) equal to direct; every column type round-tripped through bound
//! parameters, with NULLs in every position of the binary NULL bitmap;
//! multi-statements (several result sets, an error in the middle, LOCAL
//! INFILE in the middle); stored procedures with several result sets via
//! CALL as text and as a prepared statement; rows and commands over 16 MiB
//! in both directions, including payloads of exactly 16 MiB - 1 that need
//! an empty trailing packet; LOAD DATA LOCAL INFILE; COM_CHANGE_USER;
//! COM_RESET_CONNECTION; long runs of mixed commands on one connection;
//! 200 concurrent sessions; CONNECTION_ID() and KILL [QUERY] with the ids
//! clients see.
//!
//! Every test uses its own table, procedure or temporary names: tests run
//! in parallel against one MariaDB.

use std::collections::HashSet;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use mysql::prelude::{Protocol, Queryable};
use mysql::{ChangeUserOpts, Column, QueryResult, Value};
use sha1::{Digest, Sha1};
use torpor_tests::{
    admin_connect, backend, connect, mysql_opts, Torpor, APP_PASSWORD, APP_USER, OTHER_PASSWORD,
    OTHER_USER,
};

// Every column type, in a file of its own.
#[path = "clients/types.rs"]
mod types;

// Rows over 16 MiB and LOAD DATA LOCAL INFILE.
#[path = "clients/large.rs"]
mod large;

/// One reply as a client library sees it: a result set (with the OK
/// packet fields that go with it) or a server error.
#[derive(Debug, PartialEq)]
enum Reply {
    Set {
        columns: Vec<Column>,
        rows: Vec<Vec<Value>>,
        affected_rows: u64,
        last_insert_id: Option<u64>,
        warnings: u16,
        info: String,
    },
    Error {
        code: u16,
        state: String,
        message: String,
    },
}

/// A server error as a [`Reply`]; anything else (an I/O or driver error)
/// fails the test, since no comparison would make sense after it.
fn error_reply(error: mysql::Error) -> Reply {
    match error {
        mysql::Error::MySqlError(e) => Reply::Error {
            code: e.code,
            state: e.state,
            message: e.message,
        },
        other => panic!("not a server error: {other}"),
    }
}

/// Every reply of a query or execution, set by set, until the last one or
/// the first error (after which the server sends nothing more).
fn replies<T: Protocol>(result: mysql::Result<QueryResult<'_, '_, '_, T>>) -> Vec<Reply> {
    let mut result = match result {
        Ok(result) => result,
        Err(e) => return vec![error_reply(e)],
    };
    let mut out = Vec::new();
    while let Some(mut set) = result.iter() {
        // OK-packet fields belong to sets without rows; read them before
        // iterating moves the result on to the next set.
        let columns = set.columns().as_ref().to_vec();
        let affected_rows = set.affected_rows();
        let last_insert_id = set.last_insert_id();
        let warnings = set.warnings();
        let info = set.info_str().into_owned();
        let mut rows = Vec::new();
        for row in set.by_ref() {
            match row {
                Ok(row) => rows.push(row.unwrap()),
                Err(e) => {
                    out.push(error_reply(e));
                    return out;
                }
            }
        }
        out.push(Reply::Set {
            columns,
            rows,
            affected_rows,
            last_insert_id,
            warnings,
            info,
        });
    }
    out
}

/// Text-protocol replies to `sql`.
fn text(conn: &mut mysql::Conn, sql: &str) -> Vec<Reply> {
    replies(conn.query_iter(sql))
}

/// Runs a multi-statement script as text and fails on any error (unlike
/// `query_drop`, which would drop an error that follows the first set).
fn script(conn: &mut mysql::Conn, sql: &str) {
    for reply in text(conn, sql) {
        assert!(matches!(reply, Reply::Set { .. }), "{sql}: {reply:?}");
    }
}

/// Binary-protocol replies: `sql` prepared, executed with `params`, and
/// closed.
fn binary(conn: &mut mysql::Conn, sql: &str, params: Vec<Value>) -> Vec<Reply> {
    let stmt = match conn.prep(sql) {
        Ok(stmt) => stmt,
        Err(e) => return vec![error_reply(e)],
    };
    let out = replies(conn.exec_iter(&stmt, params));
    conn.close(stmt).expect("COM_STMT_CLOSE");
    out
}

/// The server error code of a failed call.
fn error_code<T: std::fmt::Debug>(result: mysql::Result<T>) -> u16 {
    match result {
        Err(mysql::Error::MySqlError(e)) => e.code,
        other => panic!("expected a server error, got {other:?}"),
    }
}

/// Rows of the first result set, values only.
fn rows_of(replies: &[Reply]) -> &[Vec<Value>] {
    match replies.first() {
        Some(Reply::Set { rows, .. }) => rows,
        other => panic!("expected a result set, got {other:?}"),
    }
}

fn bytes(text: &str) -> Value {
    Value::Bytes(text.as_bytes().to_vec())
}

/// Deterministic, non-repeating-looking bytes (so that a shifted or
/// duplicated chunk cannot compare equal).
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect()
}

/// UTF-8 text of exactly `len` bytes, with 2- and 4-byte characters.
fn utf8_text(len: usize) -> String {
    let pieces = ["torpor ", "é", "😀", "\n", "ü-", "\t"];
    let mut out = String::with_capacity(len);
    let mut i = 0;
    while out.len() < len {
        let piece = pieces[i % pieces.len()];
        if out.len() + piece.len() > len {
            out.push('x');
        } else {
            out.push_str(piece);
        }
        i += 1;
    }
    out
}

fn sha1_hex(data: &[u8]) -> String {
    Sha1::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn hex(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len() * 2);
    for b in data {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Where two long byte values first differ (Debug output truncates them).
fn describe_difference(got: &Value, want: &Value) -> String {
    match (got, want) {
        (Value::Bytes(a), Value::Bytes(b)) => {
            let at = a
                .iter()
                .zip(b.iter())
                .position(|(x, y)| x != y)
                .unwrap_or(a.len().min(b.len()));
            format!(
                " (lengths {} vs {}, first difference at byte {at})",
                a.len(),
                b.len()
            )
        }
        _ => String::new(),
    }
}

// ---------------------------------------------------------------------------
// Results equal to direct

#[test]
fn text_and_binary_results_equal_direct() {
    let torpor = Torpor::start();
    let mut setup = connect(backend().addr());
    script(
        &mut setup,
        "DROP TABLE IF EXISTS clients_eq;
             CREATE TABLE clients_eq (
                 id INT AUTO_INCREMENT PRIMARY KEY,
                 name VARCHAR(40) NOT NULL,
                 price DECIMAL(10,2),
                 qty SMALLINT UNSIGNED,
                 seen DATETIME(3),
                 note TEXT NULL
             ) DEFAULT CHARSET = utf8mb4",
    );
    for i in 1..=60 {
        let note = if i % 3 == 0 {
            Value::NULL
        } else {
            bytes(&format!("note {i} é😀"))
        };
        setup
            .exec_drop(
                "INSERT INTO clients_eq (name, price, qty, seen, note) VALUES (?, ?, ?, ?, ?)",
                (
                    format!("item-{i:03}"),
                    format!("{}.{:02}", i * 7, i % 100),
                    i * 11,
                    Value::Date(
                        2024,
                        1 + (i % 12) as u8,
                        1 + (i % 28) as u8,
                        10,
                        20,
                        30,
                        i as u32 * 1000,
                    ),
                    note,
                ),
            )
            .unwrap();
    }

    let mut direct = connect(backend().addr());
    let mut proxied = connect(torpor.addr());
    // (text SQL, the same question with parameters for the binary protocol)
    let cases: Vec<(&str, &str, Vec<Value>)> = vec![
        (
            "SELECT * FROM clients_eq ORDER BY id",
            "SELECT * FROM clients_eq WHERE id > ? ORDER BY id",
            vec![Value::Int(0)],
        ),
        (
            "SELECT COUNT(*), SUM(price), AVG(qty), MIN(seen), MAX(name), GROUP_CONCAT(id ORDER BY id) FROM clients_eq",
            "SELECT COUNT(*), SUM(price), AVG(qty), MIN(seen), MAX(name), GROUP_CONCAT(id ORDER BY id) FROM clients_eq WHERE qty >= ?",
            vec![Value::Int(0)],
        ),
        (
            "SELECT * FROM clients_eq WHERE 1 = 0",
            "SELECT * FROM clients_eq WHERE id = ?",
            vec![Value::Int(-1)],
        ),
        (
            "SELECT a.id, a.name, b.name AS next_name FROM clients_eq a JOIN clients_eq b ON b.id = a.id + 1 WHERE a.id < 10 ORDER BY a.id",
            "SELECT a.id, a.name, b.name AS next_name FROM clients_eq a JOIN clients_eq b ON b.id = a.id + 1 WHERE a.id < ? ORDER BY a.id",
            vec![Value::Int(10)],
        ),
        (
            "SELECT @@version, @@version_comment, @@sql_mode, DATABASE(), USER(), CURRENT_USER(), @@character_set_client, @@collation_connection, @@autocommit",
            "SELECT @@version, @@version_comment, @@sql_mode, DATABASE(), USER(), CURRENT_USER(), @@character_set_client, @@collation_connection, @@autocommit, ? AS p",
            vec![bytes("x")],
        ),
        (
            "SELECT 1.5e300 * 2 AS d, -0.0 AS z, CAST('2024-01-01' AS DATE) AS dt, TIMEDIFF('00:00:00', '12:00:00.5') AS neg, 0xCAFE AS hx, b'101' AS bits, NULL AS n, 18446744073709551615 AS big, -9223372036854775808 AS small",
            "SELECT ? * 2 AS d, -0.0 AS z, CAST(? AS DATE) AS dt, TIMEDIFF('00:00:00', ?) AS neg, 0xCAFE AS hx, b'101' AS bits, ? AS n, ? AS big, ? AS small",
            vec![
                Value::Double(1.5e300),
                bytes("2024-01-01"),
                bytes("12:00:00.5"),
                Value::NULL,
                Value::UInt(u64::MAX),
                Value::Int(i64::MIN),
            ],
        ),
        ("SHOW COLUMNS FROM clients_eq", "SHOW COLUMNS FROM clients_eq", vec![]),
        ("SHOW CREATE TABLE clients_eq", "SHOW CREATE TABLE clients_eq", vec![]),
        (
            "SELECT * FROM clients_eq_missing",
            "SELECT * FROM clients_eq WHERE no_such_column = ?",
            vec![Value::Int(1)],
        ),
        ("SELEKT 1", "SELEKT ?", vec![Value::Int(1)]),
    ];
    for (text_sql, binary_sql, params) in &cases {
        let want = text(&mut direct, text_sql);
        let got = text(&mut proxied, text_sql);
        assert_eq!(got, want, "text protocol: {text_sql}");
        let want = binary(&mut direct, binary_sql, params.clone());
        let got = binary(&mut proxied, binary_sql, params.clone());
        assert_eq!(got, want, "binary protocol: {binary_sql}");
    }
    // The comparisons above must have compared something.
    assert_eq!(rows_of(&text(&mut proxied, cases[0].0)).len(), 60);

    // Over 250 columns (a 3-byte column count) and over 255 parameters
    // (NULL bitmap and parameter types of many bytes), every other NULL.
    let wide_text = (0..300)
        .map(|i| match i % 2 {
            0 => format!("{i} AS c{i}"),
            _ => format!("NULL AS c{i}"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let wide_text = format!("SELECT {wide_text}");
    let wide_binary = (0..300)
        .map(|i| format!("? AS c{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let wide_binary = format!("SELECT {wide_binary}");
    let wide_params: Vec<Value> = (0..300)
        .map(|i| match i % 2 {
            0 => Value::Int(i),
            _ => Value::NULL,
        })
        .collect();
    let got = text(&mut proxied, &wide_text);
    assert_eq!(got, text(&mut direct, &wide_text), "300 columns, text");
    assert_eq!(rows_of(&got)[0].len(), 300);
    let got = binary(&mut proxied, &wide_binary, wide_params.clone());
    assert_eq!(
        got,
        binary(&mut direct, &wide_binary, wide_params.clone()),
        "300 parameters and columns, binary"
    );
    assert_eq!(rows_of(&got)[0], wide_params);

    // Statements that change data: the same statements against a
    // temporary table of the same name on each connection, so their OK
    // packets (affected rows, insert id, warnings, info) can be compared.
    let dml: Vec<(&str, Vec<Value>)> = vec![
        ("SET SESSION sql_mode = ''", vec![]),
        (
            "CREATE TEMPORARY TABLE clients_eq_dml (id INT AUTO_INCREMENT PRIMARY KEY, v TINYINT, s VARCHAR(4))",
            vec![],
        ),
        (
            "INSERT INTO clients_eq_dml (v, s) VALUES (?, ?), (?, ?), (?, ?)",
            vec![Value::Int(1), bytes("a"), Value::Int(2), bytes("b"), Value::Int(3), bytes("c")],
        ),
        ("UPDATE clients_eq_dml SET v = v + ? WHERE id <= ?", vec![Value::Int(10), Value::Int(2)]),
        ("UPDATE clients_eq_dml SET v = v WHERE id = ?", vec![Value::Int(3)]),
        // Out of range and too long: warnings, not errors, in this sql_mode.
        ("INSERT INTO clients_eq_dml (v, s) VALUES (?, ?)", vec![Value::Int(1000), bytes("toolong")]),
        ("SHOW WARNINGS", vec![]),
        (
            "INSERT INTO clients_eq_dml (id, v) VALUES (?, ?) ON DUPLICATE KEY UPDATE v = VALUES(v)",
            vec![Value::Int(1), Value::Int(99)],
        ),
        ("REPLACE INTO clients_eq_dml (id, v) VALUES (?, ?)", vec![Value::Int(2), Value::Int(98)]),
        ("SET SESSION sql_mode = 'STRICT_ALL_TABLES'", vec![]),
        ("INSERT INTO clients_eq_dml (id, v) VALUES (?, ?)", vec![Value::Int(1), Value::Int(1)]),
        ("INSERT INTO clients_eq_dml (v) VALUES (?)", vec![Value::Int(1000)]),
        // MariaDB's DML with a result set.
        (
            "INSERT INTO clients_eq_dml (v, s) VALUES (?, ?), (?, ?) RETURNING id, v, s",
            vec![Value::Int(5), bytes("r"), Value::Int(6), Value::NULL],
        ),
        (
            "DELETE FROM clients_eq_dml WHERE v = ? RETURNING id, s",
            vec![Value::Int(5)],
        ),
        ("DELETE FROM clients_eq_dml WHERE id > ?", vec![Value::Int(2)]),
        ("SELECT * FROM clients_eq_dml ORDER BY id", vec![]),
        ("DROP TEMPORARY TABLE clients_eq_dml", vec![]),
    ];
    for as_binary in [false, true] {
        for (sql, params) in &dml {
            let (want, got) = if as_binary {
                (
                    binary(&mut direct, sql, params.clone()),
                    binary(&mut proxied, sql, params.clone()),
                )
            } else {
                let literal = inline_params(sql, params);
                (text(&mut direct, &literal), text(&mut proxied, &literal))
            };
            assert_eq!(got, want, "binary: {as_binary}: {sql}");
        }
    }
}

/// `sql` with each `?` replaced by the literal of the next parameter.
fn inline_params(sql: &str, params: &[Value]) -> String {
    let mut out = String::new();
    let mut params = params.iter();
    for piece in sql.split('?').enumerate() {
        if piece.0 > 0 {
            out.push_str(&params.next().expect("as many params as ?").as_sql(false));
        }
        out.push_str(piece.1);
    }
    out
}

// ---------------------------------------------------------------------------
// Multi-statements and stored procedures

#[test]
fn multi_statements_give_every_result_set_and_stop_at_an_error() {
    let torpor = Torpor::start();
    let mut direct = connect(backend().addr());
    let mut proxied = connect(torpor.addr());
    let scripts = [
        // Several result sets with OK packets between them.
        "CREATE TEMPORARY TABLE clients_multi (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(10));
         SELECT 1 AS a;
         INSERT INTO clients_multi (v) VALUES ('x'), ('y'), ('z');
         SELECT 'two' AS b, 2.5 AS c UNION ALL SELECT 'three', 3.5;
         UPDATE clients_multi SET v = CONCAT(v, v) WHERE id > 1;
         SELECT * FROM clients_multi WHERE 1 = 0;
         SELECT * FROM clients_multi ORDER BY id;
         DO 1",
        // An error in the middle: the server stops there.
        "SELECT 1 AS first; SELECT * FROM clients_multi_no_such_table; SELECT 3 AS never",
        // An error first.
        "SELECT * FROM clients_multi_no_such_table; SELECT 2",
        // A syntax error after good statements.
        "SELECT 'ok' AS s; SELEKT 2; SELECT 3",
        "SELECT COUNT(*) FROM clients_multi; DROP TEMPORARY TABLE clients_multi",
    ];
    for script in scripts {
        let want = text(&mut direct, script);
        let got = text(&mut proxied, script);
        assert_eq!(got, want, "{script}");
    }

    // What the comparisons saw, spelled out for the first two scripts.
    let got = text(&mut proxied, scripts[0]);
    assert_eq!(got.len(), 8, "one reply per statement: {got:?}");
    assert!(matches!(
        &got[2],
        Reply::Set {
            affected_rows: 3,
            last_insert_id: Some(1),
            ..
        }
    ));
    assert_eq!(rows_of(&got[6..]).len(), 3);
    let got = text(&mut proxied, scripts[1]);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        matches!(&got[1], Reply::Error { code: 1146, .. }),
        "{got:?}"
    );
    text(&mut proxied, "DROP TEMPORARY TABLE clients_multi");

    // The session is in step after the errors.
    let after: Vec<(String, i64)> = proxied.query("SELECT 'after', 42").unwrap();
    assert_eq!(after, vec![("after".to_string(), 42)]);
}

#[test]
fn stored_procedure_result_sets_via_call_as_text_and_prepared() {
    let torpor = Torpor::start();
    let mut setup = connect(backend().addr());
    script(
        &mut setup,
        "DROP PROCEDURE IF EXISTS clients_proc_sets;
             CREATE PROCEDURE clients_proc_sets(IN n INT)
             BEGIN
                 SELECT n AS n;
                 SELECT n * 2 AS twice, 'two' AS label UNION ALL SELECT n * 3, 'three';
                 SELECT * FROM (SELECT 1 AS x) AS t WHERE x > n * 100;
                 SELECT REPEAT('p', 100000) AS wide, NULL AS nothing;
             END;
             DROP PROCEDURE IF EXISTS clients_proc_out;
             CREATE PROCEDURE clients_proc_out(IN a INT, OUT b INT, INOUT c VARCHAR(20))
             BEGIN
                 SELECT a AS a_in, c AS c_in;
                 SET b = a + 1;
                 SET c = CONCAT(c, '!');
             END;
             DROP PROCEDURE IF EXISTS clients_proc_fail;
             CREATE PROCEDURE clients_proc_fail(IN n INT)
             BEGIN
                 SELECT n AS before_failing;
                 SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'clients_proc_fail gave up';
                 SELECT 'never' AS never;
             END",
    );

    let mut direct = connect(backend().addr());
    let mut proxied = connect(torpor.addr());
    let calls: Vec<(&str, Vec<Value>)> = vec![
        ("CALL clients_proc_sets(7)", vec![]),
        ("CALL clients_proc_sets(?)", vec![Value::Int(7)]),
        // OUT parameters of a prepared CALL come back as a result set of
        // their own (SERVER_PS_OUT_PARAMS).
        (
            "CALL clients_proc_out(?, ?, ?)",
            vec![Value::Int(41), Value::NULL, bytes("hey")],
        ),
    ];
    let text_replies = text(&mut proxied, calls[0].0);
    assert_eq!(text_replies, text(&mut direct, calls[0].0), "CALL as text");
    for (sql, params) in &calls[1..] {
        let got = binary(&mut proxied, sql, params.clone());
        let want = binary(&mut direct, sql, params.clone());
        assert_eq!(got, want, "CALL prepared: {sql}");
    }
    let prepared_replies = binary(&mut proxied, calls[1].0, calls[1].1.clone());

    // A procedure that fails after its first result set: the set, then
    // the error, and nothing after it, both ways.
    let failing = [
        text(&mut proxied, "CALL clients_proc_fail(3)"),
        binary(
            &mut proxied,
            "CALL clients_proc_fail(?)",
            vec![Value::Int(3)],
        ),
    ];
    assert_eq!(failing[0], text(&mut direct, "CALL clients_proc_fail(3)"));
    assert_eq!(
        failing[1],
        binary(
            &mut direct,
            "CALL clients_proc_fail(?)",
            vec![Value::Int(3)]
        )
    );
    for replies in &failing {
        assert_eq!(replies.len(), 2, "{replies:?}");
        assert_eq!(rows_of(replies).len(), 1);
        assert!(
            matches!(&replies[1], Reply::Error { code: 1644, message, .. } if message == "clients_proc_fail gave up"),
            "{replies:?}"
        );
    }

    // Four SELECTs and the CALL's own OK, both ways.
    for (protocol, replies) in [("text", &text_replies), ("binary", &prepared_replies)] {
        assert_eq!(replies.len(), 5, "{protocol}: {replies:?}");
        let rows: Vec<usize> = replies[..4]
            .iter()
            .map(|r| rows_of(std::slice::from_ref(r)).len())
            .collect();
        assert_eq!(rows, vec![1, 2, 0, 1], "{protocol}: rows per set");
    }
    assert_eq!(
        rows_of(&text_replies[1..])[1],
        vec![bytes("21"), bytes("three")]
    );
    assert_eq!(
        rows_of(&prepared_replies[1..])[1],
        vec![Value::Int(21), bytes("three")]
    );

    let after: Vec<i64> = proxied.query("SELECT 5").unwrap();
    assert_eq!(after, vec![5]);
}

// ---------------------------------------------------------------------------
// COM_CHANGE_USER and COM_RESET_CONNECTION

fn current_user(conn: &mut mysql::Conn) -> String {
    conn.query_first("SELECT CURRENT_USER()").unwrap().unwrap()
}

#[test]
fn change_user_to_another_account_and_back() {
    let torpor = Torpor::start();
    let mut conn = connect(torpor.addr());
    let id = conn.connection_id();
    assert_eq!(current_user(&mut conn), format!("{APP_USER}@%"));
    conn.query_drop("SET @clients_change_user = 1").unwrap();

    conn.change_user(
        ChangeUserOpts::default()
            .with_user(Some(OTHER_USER.into()))
            .with_pass(Some(OTHER_PASSWORD.into())),
    )
    .unwrap();
    assert_eq!(current_user(&mut conn), format!("{OTHER_USER}@%"));
    // A new session for the new user: user variables are gone, the
    // connection (and its id) stays.
    let var: Option<Option<i64>> = conn.query_first("SELECT @clients_change_user").unwrap();
    assert_eq!(var, Some(None));
    let seen: Option<u32> = conn.query_first("SELECT CONNECTION_ID()").unwrap();
    assert_eq!(seen, Some(id));
    let db: Option<String> = conn.query_first("SELECT DATABASE()").unwrap();
    assert_eq!(db.as_deref(), Some("test"));

    conn.change_user(
        ChangeUserOpts::default()
            .with_user(Some(APP_USER.into()))
            .with_pass(Some(APP_PASSWORD.into())),
    )
    .unwrap();
    assert_eq!(current_user(&mut conn), format!("{APP_USER}@%"));
    let stmt = conn.prep("SELECT ? * 2").unwrap();
    let doubled: Option<i64> = conn.exec_first(&stmt, (21,)).unwrap();
    assert_eq!(doubled, Some(42));
}

#[test]
fn change_user_with_a_wrong_password_is_refused_like_mariadb() {
    let torpor = Torpor::start();
    let wrong = || {
        ChangeUserOpts::default()
            .with_user(Some(OTHER_USER.into()))
            .with_pass(Some("not-the-password".into()))
    };
    let mut direct = connect(backend().addr());
    let want = direct
        .change_user(wrong())
        .map_err(error_reply)
        .unwrap_err();
    let mut proxied = connect(torpor.addr());
    let got = proxied
        .change_user(wrong())
        .map_err(error_reply)
        .unwrap_err();
    assert!(matches!(got, Reply::Error { code: 1045, .. }), "{got:?}");
    assert_eq!(got, want);
}

#[test]
fn reset_connection_clears_session_state() {
    let torpor = Torpor::start();
    let mut direct = connect(backend().addr());
    let mut proxied = connect(torpor.addr());
    let mut seen = Vec::new();
    for conn in [&mut direct, &mut proxied] {
        script(
            conn,
            "SET @clients_reset = 42;
             PREPARE clients_reset_sql FROM 'SELECT 1';
             CREATE TEMPORARY TABLE clients_reset_tmp (a INT);
             SET SESSION sql_mode = 'ANSI_QUOTES';
             USE mysql",
        );
        // The state to be cleared is there.
        let var: Option<i64> = conn.query_first("SELECT @clients_reset").unwrap();
        assert_eq!(var, Some(42));
        let executed: Option<i64> = conn.query_first("EXECUTE clients_reset_sql").unwrap();
        assert_eq!(executed, Some(1));
        script(conn, "SELECT * FROM test.clients_reset_tmp");
        let stmt = conn.prep("SELECT ? + 1").unwrap();
        let before: Option<i64> = conn.exec_first(&stmt, (1,)).unwrap();
        assert_eq!(before, Some(2));
        let id = conn.connection_id();

        conn.reset().unwrap();

        let var: Option<Option<i64>> = conn.query_first("SELECT @clients_reset").unwrap();
        assert_eq!(var, Some(None), "user variable after reset");
        assert_eq!(
            error_code(conn.query::<mysql::Row, _>("EXECUTE clients_reset_sql")),
            1243
        );
        // The statement the client still holds is gone on the server.
        assert_eq!(error_code(conn.exec_first::<i64, _, _>(&stmt, (1,))), 1243);
        assert_eq!(
            error_code(conn.query::<mysql::Row, _>("SELECT * FROM test.clients_reset_tmp")),
            1146
        );
        let mode: Option<String> = conn
            .query_first("SELECT @@SESSION.sql_mode = @@GLOBAL.sql_mode")
            .unwrap();
        assert_eq!(mode.as_deref(), Some("1"), "sql_mode back to the default");
        let still: Option<u32> = conn.query_first("SELECT CONNECTION_ID()").unwrap();
        assert_eq!(still, Some(id), "same connection");
        let after: Option<i64> = conn.exec_first("SELECT ? + 1", (2,)).unwrap();
        assert_eq!(after, Some(3));
        // Compared with direct below: COM_RESET_CONNECTION keeps the
        // schema, so a client that fell back to COM_CHANGE_USER (the crate
        // does when the reset fails) would show another one.
        let db: Option<String> = conn.query_first("SELECT DATABASE()").unwrap();
        assert_eq!(
            db.as_deref(),
            Some("mysql"),
            "the schema survives COM_RESET_CONNECTION"
        );
        seen.push(text(
            conn,
            "SELECT DATABASE(), CURRENT_USER(), @@autocommit, @@character_set_client",
        ));
    }
    assert_eq!(seen[1], seen[0], "session after reset, proxied vs direct");
}

// ---------------------------------------------------------------------------
// Many commands on one connection

#[test]
fn many_mixed_commands_in_a_row_on_one_connection() {
    let torpor = Torpor::start();
    let table = "clients_mixed";
    let mut conn = connect(torpor.addr());
    conn.query_drop(format!("DROP TABLE IF EXISTS {table}"))
        .unwrap();
    conn.query_drop(format!(
        "CREATE TABLE {table} (id INT PRIMARY KEY, v VARCHAR(40), n BIGINT)"
    ))
    .unwrap();
    let insert = conn
        .prep(format!("INSERT INTO {table} (id, v, n) VALUES (?, ?, ?)"))
        .unwrap();
    let by_id = conn
        .prep(format!("SELECT v, n FROM {table} WHERE id = ?"))
        .unwrap();
    let mut expected_sum = 0i64;
    for i in 0..1500i64 {
        let v = format!("row-{i}");
        let n = i * 3 - 7;
        expected_sum += n;
        // Alternate text and binary writes.
        if i % 2 == 0 {
            conn.query_drop(format!(
                "INSERT INTO {table} (id, v, n) VALUES ({i}, '{v}', {n})"
            ))
            .unwrap();
        } else {
            conn.exec_drop(&insert, (i, &v, n)).unwrap();
        }
        // Read back what was just written, alternating protocols.
        let got: Option<(String, i64)> = if i % 3 == 0 {
            conn.query_first(format!("SELECT v, n FROM {table} WHERE id = {i}"))
                .unwrap()
        } else {
            conn.exec_first(&by_id, (i,)).unwrap()
        };
        assert_eq!(got, Some((v, n)), "row {i}");
        match i % 50 {
            // A statement prepared, run and closed (COM_STMT_CLOSE has no
            // reply, so nothing may be waited for), between others.
            7 => {
                let stmt = conn
                    .prep(format!(
                        "SELECT COUNT(*), SUM(n) FROM {table} WHERE id <= ?"
                    ))
                    .unwrap();
                let counted: Option<(i64, i64)> = conn.exec_first(&stmt, (i,)).unwrap();
                assert_eq!(counted, Some((i + 1, expected_sum)));
                conn.close(stmt).unwrap();
            }
            13 => conn.ping().unwrap(),
            29 => conn.select_db("test").unwrap(),
            41 => {
                let sets = text(
                    &mut conn,
                    &format!("SELECT {i}; SELECT COUNT(*) FROM {table}; DO 0"),
                );
                assert_eq!(sets.len(), 3, "{sets:?}");
                assert_eq!(rows_of(&sets[1..]), &[vec![bytes(&(i + 1).to_string())]]);
            }
            _ => {}
        }
    }
    let total: Option<(i64, i64)> = conn
        .query_first(format!("SELECT COUNT(*), SUM(n) FROM {table}"))
        .unwrap();
    assert_eq!(total, Some((1500, expected_sum)));
    conn.query_drop(format!("DROP TABLE {table}")).unwrap();
}

#[test]
fn bulk_execution_inserts_every_row() {
    let torpor = Torpor::start();
    let table = "clients_bulk";
    let mut direct = connect(backend().addr());
    let mut proxied = connect(torpor.addr());
    proxied
        .query_drop(format!("DROP TABLE IF EXISTS {table}"))
        .unwrap();
    proxied
        .query_drop(format!(
            "CREATE TABLE {table} (id INT PRIMARY KEY, v VARCHAR(100) NULL, n DOUBLE NULL) \
             DEFAULT CHARSET = utf8mb4"
        ))
        .unwrap();
    // exec_batch is COM_STMT_BULK_EXECUTE against MariaDB: many parameter
    // rows in one command (split where it would pass max_allowed_packet),
    // one reply each.
    let rows: Vec<(i64, Value, Value)> = (0..5000i64)
        .map(|i| {
            let v = if i % 7 == 0 {
                Value::NULL
            } else {
                bytes(&format!("bulk-{i}-{}", "é".repeat((i % 30) as usize)))
            };
            let n = if i % 5 == 0 {
                Value::NULL
            } else {
                Value::Double(i as f64 / 4.0)
            };
            (i, v, n)
        })
        .collect();
    proxied
        .exec_batch(
            format!("INSERT INTO {table} (id, v, n) VALUES (?, ?, ?)"),
            rows.iter().cloned(),
        )
        .unwrap();
    proxied
        .exec_batch(
            format!("UPDATE {table} SET n = n * 2 WHERE id = ?"),
            (0..5000i64).step_by(3).map(|i| (i,)),
        )
        .unwrap();
    let select = format!("SELECT id, v, n FROM {table} ORDER BY id");
    let stored = rows_of(&text(&mut direct, &select)).to_vec();
    assert_eq!(stored.len(), rows.len());
    for ((id, v, n), row) in rows.iter().zip(&stored) {
        let n = match n {
            Value::Double(n) if id % 3 == 0 => bytes(&(n * 2.0).to_string()),
            Value::Double(n) => bytes(&n.to_string()),
            _ => Value::NULL,
        };
        assert_eq!(row, &vec![bytes(&id.to_string()), v.clone(), n], "row {id}");
    }
    // A statement bulk execution refuses: the same error as directly, and
    // the session is in step after it.
    let refused = |conn: &mut mysql::Conn| {
        conn.exec_batch("SELECT ?", vec![(1,), (2,)])
            .map_err(error_reply)
            .unwrap_err()
    };
    let want = refused(&mut direct);
    // 1295 (ER_UNSUPPORTED_PS) is the bulk command's own refusal: proof
    // that COM_STMT_BULK_EXECUTE, not a loop of executions, was used.
    assert!(matches!(want, Reply::Error { code: 1295, .. }), "{want:?}");
    assert_eq!(refused(&mut proxied), want);
    assert_eq!(rows_of(&text(&mut proxied, &select)), &stored[..]);
}

// ---------------------------------------------------------------------------
// Concurrency and connection ids

#[test]
fn two_hundred_concurrent_sessions_each_keep_their_own_id() {
    const SESSIONS: usize = 200;
    let torpor = Torpor::start();
    let addr = torpor.addr();
    // Every session is connected before any queries run, so all 200 are
    // open at once; the main thread counts them in between.
    let connected = Barrier::new(SESSIONS + 1);
    let counted = Barrier::new(SESSIONS + 1);
    let ids: Vec<u32> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..SESSIONS)
            .map(|n| {
                let (connected, counted) = (&connected, &counted);
                scope.spawn(move || {
                    let conn = mysql::Conn::new(mysql_opts(addr, APP_USER, APP_PASSWORD));
                    connected.wait();
                    counted.wait();
                    let mut conn =
                        conn.unwrap_or_else(|e| panic!("session {n}: cannot connect: {e}"));
                    let id = conn.connection_id();
                    for round in 0..5 {
                        let (seen, echoed): (u32, String) = conn
                            .query_first(format!("SELECT CONNECTION_ID(), 'session-{n}-{round}'"))
                            .unwrap()
                            .unwrap();
                        assert_eq!(seen, id, "session {n}, round {round}");
                        assert_eq!(echoed, format!("session-{n}-{round}"));
                        let (seen, doubled): (u32, i64) = conn
                            .exec_first("SELECT CONNECTION_ID(), ? * 2", (n as i64 + round,))
                            .unwrap()
                            .unwrap();
                        assert_eq!(
                            (seen, doubled),
                            (id, (n as i64 + round) * 2),
                            "session {n}, round {round}"
                        );
                    }
                    id
                })
            })
            .collect();
        connected.wait();
        let open = torpor.connection_count();
        counted.wait();
        assert_eq!(open, SESSIONS, "client connections open at once");
        handles
            .into_iter()
            .map(|h| h.join().expect("session thread"))
            .collect()
    });
    let distinct: HashSet<u32> = ids.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        SESSIONS,
        "connection ids are distinct: {ids:?}"
    );
}

/// The processlist row of the backend thread running exactly `info`,
/// waited for; its id is the backend's thread id.
fn wait_for_backend_query(admin: &mut mysql::Conn, info: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let id: Option<u64> = admin
            .exec_first(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE INFO = ?",
                (info,),
            )
            .unwrap();
        if let Some(id) = id {
            return id;
        }
        assert!(
            Instant::now() < deadline,
            "the query never showed up on the backend: {info}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn connection_id_matches_the_greeting_and_kill_uses_it() {
    let torpor = Torpor::start();
    let mut victim = connect(torpor.addr());
    let id = victim.connection_id();
    let seen: Option<u32> = victim.query_first("SELECT CONNECTION_ID()").unwrap();
    assert_eq!(seen, Some(id), "CONNECTION_ID() as text");
    let seen: Option<u32> = victim.exec_first("SELECT CONNECTION_ID()", ()).unwrap();
    assert_eq!(seen, Some(id), "CONNECTION_ID() prepared");

    let mut killer = connect(torpor.addr());
    assert_ne!(killer.connection_id(), id);
    let mut admin = admin_connect();

    // KILL QUERY: the running statement fails with 1317, the session lives.
    let sleep = "SELECT SLEEP(10), 'clients-kill-query'";
    let running = std::thread::spawn(move || {
        // Not query_drop: it discards an error that arrives in place of
        // a row, which is how the interruption is reported.
        let result = victim.query::<mysql::Row, _>(sleep);
        (victim, result)
    });
    let thread = wait_for_backend_query(&mut admin, sleep);
    killer.query_drop(format!("KILL QUERY {id}")).unwrap();
    let (mut victim, result) = running.join().unwrap();
    assert_eq!(
        error_code(result),
        1317,
        "the sleeping query is interrupted"
    );
    let seen: Option<u32> = victim.query_first("SELECT CONNECTION_ID()").unwrap();
    assert_eq!(seen, Some(id), "the session survives KILL QUERY");

    // KILL: the session is closed, on the backend too.
    killer.query_drop(format!("KILL {id}")).unwrap();
    assert!(
        victim.query::<mysql::Row, _>("SELECT 1").is_err(),
        "a killed session must not answer"
    );
    assert!(victim.ping().is_err(), "a killed session stays closed");
    // Between statements the victim held no backend connection (Torpor
    // lends them per transaction): the one that ran its sleep went back to
    // the pool healthy and serves other sessions; nothing of the killed
    // session is left on it.
    let _ = thread;
    // The killer is unaffected.
    let fine: Option<i64> = killer.query_first("SELECT 1").unwrap();
    assert_eq!(fine, Some(1));
}
