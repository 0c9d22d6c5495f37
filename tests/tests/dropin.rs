//! Drop-in: client libraries see through Torpor what they see from
//! MariaDB (issue 13). Each test runs the same client program directly
//! against the test MariaDB and through Torpor, and compares what it
//! printed.
//!
//! Covered: MariaDB's direct execute (a COM_STMT_PREPARE and a
//! COM_STMT_EXECUTE naming statement id 0xFFFFFFFF in one write, as the
//! MariaDB Python connector sends every parameterized execute), also
//! behind a prepare that fails, and bulk executes.
//!
//! Every test uses its own table names: tests run in parallel against one
//! MariaDB.

use std::net::SocketAddr;
use std::process::Command;

use torpor_tests::{backend, require_program, Torpor, APP_PASSWORD, APP_USER};

/// Runs `script` with the MariaDB Python connector (PyPI `mariadb`,
/// built on libmariadb) against `addr`; the script gets host, port, user
/// and password as arguments and prints what it saw. Returns its stdout;
/// a script that fails (an exception it did not expect) fails the test.
fn python_mariadb(addr: SocketAddr, script: &str) -> String {
    let python = require_program("python3", "python3");
    let output = Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .arg(APP_USER)
        .arg(APP_PASSWORD)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the script failed against {addr} (is PyPI's mariadb installed?)\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout
}

/// The start of every Python script: connect, and a `run` that prints a
/// step's result or the server error it got.
const PYTHON_PRELUDE: &str = r#"
import sys, mariadb
host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
conn = mariadb.connect(host=host, port=port, user=user, password=password, database="test")
cur = conn.cursor()
def run(label, step):
    try:
        print(label, repr(step()))
    except mariadb.Error as e:
        print(label, "error", e.errno, e.sqlstate, str(e))
"#;

/// The same script through Torpor and directly.
fn python_both(torpor: &Torpor, body: &str) -> (String, String) {
    let script = format!("{PYTHON_PRELUDE}\n{body}");
    let proxied = python_mariadb(torpor.addr(), &script);
    let direct = python_mariadb(backend().addr(), &script);
    (proxied, direct)
}

#[test]
fn direct_execute_of_the_statement_just_prepared_is_not_refused() {
    let torpor = Torpor::start();
    let body = r#"
def fetch(sql, params):
    cur.execute(sql, params)
    return cur.fetchall()
def many(sql, rows):
    cur.executemany(sql, rows)
    return cur.rowcount
cur.execute("CREATE OR REPLACE TABLE dropin_direct_execute (id INT PRIMARY KEY, v VARCHAR(20))")
run("select", lambda: fetch("SELECT ? + 1, ?", (41, "x")))
run("again", lambda: fetch("SELECT ? + 1, ?", (1, "y")))
run("insert", lambda: (cur.execute("INSERT INTO dropin_direct_execute VALUES (?, ?)", (1, "one")), cur.rowcount)[1])
run("executemany", lambda: many("INSERT INTO dropin_direct_execute VALUES (?, ?)", [(2, "two"), (3, "three"), (4, None)]))
run("duplicate in bulk", lambda: many("INSERT INTO dropin_direct_execute VALUES (?, ?)", [(5, "five"), (1, "dup")]))
run("read back", lambda: fetch("SELECT id, v FROM dropin_direct_execute WHERE id > ? ORDER BY id", (0,)))
run("prepare fails", lambda: fetch("SELECT * FROM dropin_no_such_table WHERE id = ?", (1,)))
run("after the failure", lambda: fetch("SELECT ?", (7,)))
run("syntax error", lambda: fetch("SELEC ?", (7,)))
run("update", lambda: (cur.execute("UPDATE dropin_direct_execute SET v = ? WHERE id < ?", ("low", 3)), cur.rowcount)[1])
run("delete many", lambda: many("DELETE FROM dropin_direct_execute WHERE id = ?", [(1,), (2,)]))
run("left", lambda: fetch("SELECT COUNT(*) FROM dropin_direct_execute WHERE id > ?", (0,)))
cur.execute("DROP TABLE dropin_direct_execute")
"#;
    let (proxied, direct) = python_both(&torpor, body);
    assert!(
        direct.contains("select [(42, 'x')]"),
        "the script ran directly:\n{direct}"
    );
    assert_eq!(
        proxied, direct,
        "through Torpor (left) and directly (right)"
    );
}
