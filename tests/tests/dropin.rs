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

/// A direct execute whose parameters make it larger than Torpor buffers
/// whole (1 MiB): it streams through, naming the statement its prepare
/// (in the same write) creates. It closed the session ("oversized command
/// for an unknown statement").
#[test]
fn a_large_direct_execute_streams_through() {
    let torpor = Torpor::start();
    let body = r#"
cur.execute("CREATE OR REPLACE TABLE dropin_large_direct (id INT PRIMARY KEY, v LONGBLOB)")
big = bytes(range(256)) * (3 * 4096)
run("insert 3 MiB", lambda: (cur.execute("INSERT INTO dropin_large_direct VALUES (?, ?)", (1, big)), cur.rowcount)[1])
run("insert 1.5 MiB", lambda: (cur.execute("INSERT INTO dropin_large_direct VALUES (?, ?)", (2, big[: 3 << 19])), cur.rowcount)[1])
def read_back():
    cur.execute("SELECT id, LENGTH(v), MD5(v) FROM dropin_large_direct ORDER BY id")
    return cur.fetchall()
run("read back", read_back)
run("after", lambda: (cur.execute("SELECT ? + 1", (41,)), cur.fetchall())[1])
cur.execute("DROP TABLE dropin_large_direct")
"#;
    let (proxied, direct) = python_both(&torpor, body);
    assert!(
        direct.contains("insert 3 MiB 1") && direct.contains("after [(42,)]"),
        "the script ran directly:\n{direct}"
    );
    assert_eq!(
        proxied, direct,
        "through Torpor (left) and directly (right)"
    );
}

/// A procedure that opens a cursor of its own and returns a result: its
/// column-definition EOF carries SERVER_STATUS_CURSOR_EXISTS although the
/// client asked for no cursor and the rows follow.
fn create_cursor_procedure(name: &str) {
    let mut admin = torpor_tests::admin_connect();
    use mysql::prelude::Queryable;
    admin
        .query_drop(format!(
            "CREATE OR REPLACE PROCEDURE test.{name}(IN n INT)
             BEGIN
               DECLARE done INT DEFAULT 0;
               DECLARE v INT;
               DECLARE c CURSOR FOR SELECT seq FROM seq_1_to_3;
               DECLARE CONTINUE HANDLER FOR NOT FOUND SET done = 1;
               OPEN c;
               FETCH c INTO v;
               SELECT v AS first, n AS arg, 'row' AS what UNION ALL SELECT v + 1, n, 'next';
               CLOSE c;
             END"
        ))
        .expect("create the procedure");
    admin
        .query_drop(format!(
            "GRANT EXECUTE ON PROCEDURE test.{name} TO '{APP_USER}'@'%'"
        ))
        .expect("grant it");
}

/// Runs the `mariadb` CLI on `addr` (no option files) with `args`; its
/// exit code, stdout and stderr.
fn mariadb_cli(addr: SocketAddr, args: &[&str]) -> (Option<i32>, String, String) {
    let program = require_program("mariadb", "mariadb-client");
    let output = Command::new(program)
        .arg("--no-defaults")
        .arg("--protocol=TCP")
        .arg(format!("--host={}", addr.ip()))
        .arg(format!("--port={}", addr.port()))
        .arg(format!("--user={APP_USER}"))
        .arg(format!("--password={APP_PASSWORD}"))
        .arg("--default-character-set=utf8mb4")
        .args(args)
        .output()
        .expect("the mariadb client runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn call_of_a_procedure_with_a_cursor_returns_its_rows_as_text() {
    create_cursor_procedure("dropin_cursor_text");
    let torpor = Torpor::start();
    let args = [
        "test",
        "-e",
        "CALL dropin_cursor_text(7); SELECT 'after' AS still_connected; CALL dropin_cursor_text(8)",
    ];
    let proxied = mariadb_cli(torpor.addr(), &args);
    let direct = mariadb_cli(backend().addr(), &args);
    assert!(
        direct.1.contains("next") && direct.0 == Some(0),
        "directly: {direct:?}"
    );
    assert_eq!(
        proxied, direct,
        "through Torpor (left) and directly (right)"
    );
}

#[test]
fn prepared_call_of_a_procedure_with_a_cursor_returns_its_rows() {
    create_cursor_procedure("dropin_cursor_binary");
    let torpor = Torpor::start();
    // read_timeout: a client left waiting for rows that never come fails
    // instead of hanging the test.
    let body = r#"
conn2 = mariadb.connect(host=host, port=port, user=user, password=password, database="test", read_timeout=30)
cur2 = conn2.cursor()
def call(n):
    cur2.execute("CALL dropin_cursor_binary(?)", (n,))
    rows = cur2.fetchall()
    more = []
    while cur2.nextset():
        if cur2.description:
            more.append(cur2.fetchall())
    return rows, more
run("call", lambda: call(7))
run("again", lambda: call(8))
run("after", lambda: (cur2.execute("SELECT ?", (9,)), cur2.fetchall())[1])
"#;
    let (proxied, direct) = python_both(&torpor, body);
    assert!(
        direct.contains("next"),
        "the script ran directly:\n{direct}"
    );
    assert_eq!(
        proxied, direct,
        "through Torpor (left) and directly (right)"
    );
}

/// Prints a text and a binary CALL's reply packets as MariaDB sends them
/// (the fixtures in protocol/src/reply/tests.rs).
#[test]
#[ignore]
fn capture_call_with_cursor() {
    use torpor_protocol::Capabilities;
    use torpor_tests::raw::{base_capabilities, LoginOptions, RawClient};
    create_cursor_procedure("dropin_cursor_capture");
    for caps in [
        base_capabilities(),
        base_capabilities() | Capabilities::CLIENT_DEPRECATE_EOF,
    ] {
        let mut client = RawClient::connect(backend().addr(), &LoginOptions::app(caps));
        let reply = client.query("CALL dropin_cursor_capture(7)");
        println!("text {caps:?}: {:?}", reply.packets);
        let (ok, _) = client.prepare("CALL dropin_cursor_capture(7)");
        let mut execute = vec![0x17];
        execute.extend_from_slice(&ok.statement_id.to_le_bytes());
        execute.extend_from_slice(&[0, 1, 0, 0, 0]);
        let reply = client.command(&execute).unwrap().unwrap();
        println!("binary {caps:?}: {:?}", reply.packets);
    }
}

/// Opens `clients` connections to `addr` that each hold a transaction open
/// until all of them have one (a barrier), then commit. Returns what each
/// got: "ok", or the server error.
fn concurrent_transactions(addr: SocketAddr, clients: usize) -> Vec<String> {
    use mysql::prelude::Queryable;
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(clients));
    let threads: Vec<_> = (0..clients)
        .map(|i| {
            let barrier = std::sync::Arc::clone(&barrier);
            std::thread::spawn(move || {
                let result = (|| -> mysql::Result<mysql::Conn> {
                    let mut conn =
                        mysql::Conn::new(torpor_tests::mysql_opts(addr, APP_USER, APP_PASSWORD))?;
                    conn.query_drop("BEGIN")?;
                    conn.query_drop(format!("INSERT INTO dropin_pool_bound VALUES ({i})"))?;
                    Ok(conn)
                })();
                // Every client waits for the others, whatever it got, so
                // that all transactions are open at once.
                // Ended without COMMIT when the connection drops: rolled
                // back, the table stays empty.
                barrier.wait();
                match result {
                    Ok(_) => "ok".to_string(),
                    Err(e) => e.to_string(),
                }
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("client thread"))
        .collect()
}

#[test]
fn more_concurrent_transactions_than_the_old_pool_bound_succeed() {
    use mysql::prelude::Queryable;
    torpor_tests::admin_connect()
        .query_drop("CREATE OR REPLACE TABLE test.dropin_pool_bound (id INT PRIMARY KEY)")
        .expect("create the table");
    let torpor = Torpor::start();
    let clients = 60;
    let direct = concurrent_transactions(backend().addr(), clients);
    assert!(direct.iter().all(|r| r == "ok"), "directly: {direct:?}");
    let proxied = concurrent_transactions(torpor.addr(), clients);
    assert_eq!(
        proxied, direct,
        "through Torpor (left) and directly (right)"
    );
}

/// `COMMIT RELEASE` and `COMMIT` under `completion_type = RELEASE`:
/// MariaDB answers, then closes the connection; through Torpor the client
/// sees the same (PyMySQL's next query finds the connection gone), and
/// with one backend connection the next client is served on a live one.
#[test]
fn commit_release_ends_the_session_as_mariadb_does() {
    let torpor = Torpor::start_with(backend().addr(), |c| c.max_backend_connections = 1);
    let body = r#"
import pymysql
for setup, end in [(None, "COMMIT RELEASE"), ("SET SESSION completion_type = 'RELEASE'", "COMMIT"),
                   ("SET SESSION completion_type = 'RELEASE'", "ROLLBACK NO RELEASE")]:
    c = pymysql.connect(host=host, port=port, user=user, password=password, database="test")
    cur = c.cursor()
    if setup:
        cur.execute(setup)
    cur.execute("BEGIN")
    cur.execute(end)
    print(end, "answered")
    try:
        cur.execute("SELECT 'still here'")
        print(end, "then", cur.fetchall())
    except pymysql.err.OperationalError as e:
        print(end, "then", e.args[0])
"#;
    let script = format!(
        "import sys\nhost, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]\n{body}"
    );
    let run = |addr: SocketAddr| {
        let python = require_program("python3", "python3");
        let output = Command::new(python)
            .arg("-c")
            .arg(&script)
            .arg(addr.ip().to_string())
            .arg(addr.port().to_string())
            .arg(APP_USER)
            .arg(APP_PASSWORD)
            .output()
            .expect("python3 runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let direct = run(backend().addr());
    assert!(
        direct.contains("COMMIT RELEASE then 2013"),
        "MariaDB closes the connection: {direct}"
    );
    let through = run(torpor.addr());
    assert_eq!(through, direct);
    // The connection MariaDB closed is not handed to the next client.
    let again = run(torpor.addr());
    assert_eq!(again, direct);
}

/// How a login refused with `error` reads in the `mysql` crate: MariaDB's
/// code and SQLSTATE, or what else went wrong.
fn refusal(error: mysql::Error) -> (u16, String) {
    match error {
        mysql::Error::MySqlError(e) => (e.code, e.state),
        other => panic!("not an error packet the client could read: {other:?}"),
    }
}

/// MariaDB refuses a connection over `max_connections` before its
/// handshake, with an ERR packet that has no SQLSTATE marker (nothing is
/// negotiated yet). Torpor, which has answered the handshake itself,
/// passes the refusal on where the client expects the marker: the `mysql`
/// crate read the bare packet as "Invalid SqlStateMarker value", an I/O
/// error. The client must read the same 1040 as from MariaDB directly.
#[test]
fn a_login_refused_by_a_full_backend_reads_as_mariadbs_own_refusal() {
    use mysql::prelude::Queryable;
    let (server, _certificates) = torpor_tests::mariadb_with_tls(&["--max-connections=10"]);
    let torpor = Torpor::start_with(server.addr(), |config| config.workers = 1);
    // A session in a transaction holds Torpor's backend connection: the
    // next login needs a new one.
    let mut pinned = torpor_tests::connect(torpor.addr());
    pinned.query_drop("BEGIN").unwrap();
    let opts = |addr| torpor_tests::mysql_opts(addr, APP_USER, APP_PASSWORD);
    let mut held = Vec::new();
    let direct = loop {
        match mysql::Conn::new(opts(server.addr())) {
            Ok(conn) => held.push(conn),
            Err(error) => break refusal(error),
        }
        assert!(held.len() < 50, "max_connections never refused a login");
    };
    assert_eq!(direct.0, 1040, "{direct:?}");
    let through_torpor = mysql::Conn::new(opts(torpor.addr()))
        .map(drop)
        .expect_err("the backend is full");
    assert_eq!(refusal(through_torpor), direct);
    // The session that held its connection is not harmed.
    pinned.query_drop("COMMIT").unwrap();
}
