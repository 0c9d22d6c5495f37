//! Sessions that survive their backend connection: a second, direct admin
//! connection KILLs the backend thread serving a client between two of its
//! statements, and the client's next statements run on a new backend
//! connection with everything it had set (user variables, SET NAMES,
//! sql_mode, time_zone, schema, prepared statements with parameters) —
//! the client sees nothing. An open transaction is replayed on the new
//! connection (its results compared with what the client saw), or refused
//! with a clear, retryable error; a session pinned by more than its
//! transaction (a temporary table) is not moved: it gets an error, as it
//! would from MariaDB.

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

    // A transaction that also made a temporary table cannot be replayed:
    // the temporary table would be lost with the connection.
    let mut conn = connect(torpor.addr());
    conn.query_drop("USE replay_pinned").unwrap();
    conn.query_drop("BEGIN").unwrap();
    conn.query_drop("INSERT INTO replay_pinned.t VALUES (1)")
        .unwrap();
    conn.query_drop("CREATE TEMPORARY TABLE tmp_in_transaction (a INT)")
        .unwrap();
    kill_transaction_backend("replay_pinned");
    let err = conn
        .query_drop("INSERT INTO replay_pinned.t VALUES (2)")
        .expect_err("a transaction with a temporary table cannot silently move");
    let text = err.to_string();
    assert!(
        text.contains("1927") && text.contains("Lost connection"),
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

    // A temporary table pins a session outside a transaction too.
    let mut conn = connect(torpor.addr());
    conn.query_drop("CREATE TEMPORARY TABLE tmp_pinned (a INT)")
        .unwrap();
    kill_backend_of(&mut conn);
    assert!(conn.query_drop("SELECT * FROM tmp_pinned").is_err());
}

/// KILLs, from an admin connection, the backend thread that runs the
/// open transaction of the (one) client working in `schema`, and returns
/// it.
fn kill_transaction_backend(schema: &str) -> u64 {
    let mut admin = admin_connect();
    // Not INNODB_TRX: InnoDB refreshes it only after 100 ms without a
    // reader, which tests polling in parallel may never leave it. The
    // status report lists open transactions as they are.
    let (_, _, status): (String, String, String) = admin
        .query_first("SHOW ENGINE INNODB STATUS")
        .unwrap()
        .unwrap();
    let in_transaction: Vec<u64> = status
        .lines()
        .filter_map(|line| {
            line.strip_prefix("MariaDB thread id ")
                .or_else(|| line.strip_prefix("MySQL thread id "))
        })
        .filter_map(|rest| rest.split(',').next()?.parse().ok())
        .collect();
    let in_schema: Vec<u64> = admin
        .exec(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = ?",
            (schema,),
        )
        .unwrap();
    let threads: Vec<u64> = in_schema
        .into_iter()
        .filter(|id| in_transaction.contains(id))
        .collect();
    assert_eq!(
        threads.len(),
        1,
        "one open transaction in {schema}: {threads:?}"
    );
    let thread = threads[0];
    admin
        .query_drop(format!("KILL {thread}"))
        .expect("admin KILL");
    // Past Torpor's idle check threshold, and time for the close to land.
    std::thread::sleep(Duration::from_millis(50));
    thread
}

/// A Torpor with its admin API on, to read its metrics.
fn torpor_with_metrics() -> Torpor {
    Torpor::start_with(torpor_tests::backend().addr(), |config| {
        config.admin.listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    })
}

/// Waits (workers publish once a second; 10 s at most) until
/// `torpor_transaction_replays_total{result}` reads `want`.
fn assert_transaction_replays(torpor: &Torpor, result: &str, want: u64) {
    let admin = torpor.admin_addr().expect("admin API runs");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let label = format!("result=\"{result}\"");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = agent
            .get(&format!("http://{admin}/metrics"))
            .call()
            .expect("GET /metrics")
            .body_mut()
            .read_to_string()
            .expect("body");
        let value = text
            .lines()
            .filter(|l| l.starts_with("torpor_transaction_replays_total{") && l.contains(&label))
            .find_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
        if value == Some(want as f64) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "torpor_transaction_replays_total{{{label}}} is {value:?}, not {want}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A database of its own for a test, with an auto-increment table `t` and
/// an account table `acct` (ids 1–3, balance 100).
fn transaction_schema(name: &str) {
    let mut admin = admin_connect();
    admin
        .query_drop(format!("DROP DATABASE IF EXISTS {name}"))
        .unwrap();
    admin.query_drop(format!("CREATE DATABASE {name}")).unwrap();
    admin
        .query_drop(format!(
            "CREATE TABLE {name}.t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(400)) ENGINE=InnoDB"
        ))
        .unwrap();
    admin
        .query_drop(format!(
            "CREATE TABLE {name}.acct (id INT PRIMARY KEY, balance INT) ENGINE=InnoDB"
        ))
        .unwrap();
    admin
        .query_drop(format!(
            "INSERT INTO {name}.acct VALUES (1, 100), (2, 100), (3, 100)"
        ))
        .unwrap();
}

fn stored_rows(name: &str) -> Vec<(u64, String)> {
    admin_connect()
        .query(format!("SELECT id, v FROM {name}.t ORDER BY id"))
        .unwrap()
}

fn balance(name: &str, id: u32) -> i64 {
    admin_connect()
        .exec_first(
            format!("SELECT balance FROM {name}.acct WHERE id = ?"),
            (id,),
        )
        .unwrap()
        .unwrap()
}

/// The transaction-replay refusal a client gets: deadlock-style, so its
/// retry loop runs the transaction again.
fn assert_not_replayed(err: mysql::Error, why: &str) {
    match &err {
        mysql::Error::MySqlError(e) => {
            assert_eq!(e.code, 1213, "{err}");
            assert_eq!(e.state, "40001", "{err}");
            assert!(e.message.contains("rolled back"), "{err}");
            assert!(e.message.contains(why), "{err}");
        }
        other => panic!("expected the replay refusal, got {other}"),
    }
}

#[test]
fn a_transaction_survives_a_killed_backend() {
    let torpor = torpor_with_metrics();
    transaction_schema("replay_txn");
    let mut conn = connect(torpor.addr());
    conn.query_drop("USE replay_txn").unwrap();

    conn.query_drop("BEGIN").unwrap();
    conn.query_drop("INSERT INTO t (v) VALUES ('a')").unwrap();
    let id_a = conn.last_insert_id();
    conn.query_drop("INSERT INTO t (v) VALUES ('b'), ('c')")
        .unwrap();
    let id_b = conn.last_insert_id();
    // An explicit id is reported as an insert id too (and must not stay
    // pending for the next insert when replayed).
    let id_e = id_b + 10;
    conn.query_drop(format!("INSERT INTO t (id, v) VALUES ({id_e}, 'e')"))
        .unwrap();
    assert_eq!(conn.last_insert_id(), id_e);
    let seen: i64 = conn
        .query_first("SELECT balance FROM acct WHERE id = 1")
        .unwrap()
        .unwrap();
    assert_eq!(seen, 100);
    conn.query_drop("UPDATE acct SET balance = balance - 10 WHERE id = 1")
        .unwrap();
    assert_eq!(conn.affected_rows(), 1);
    let rows: Vec<(u64, String)> = conn.query("SELECT id, v FROM t ORDER BY id").unwrap();
    assert_eq!(rows.len(), 4);

    let thread = kill_transaction_backend("replay_txn");
    // Meanwhile another connection takes the next auto-increment ids (its
    // row is gone again, so the transaction's reads do not change): the
    // replay must give the client's rows the ids the client saw anyway.
    let mut admin = admin_connect();
    admin
        .query_drop("INSERT INTO replay_txn.t (v) VALUES ('other')")
        .unwrap();
    admin
        .query_drop("DELETE FROM replay_txn.t WHERE v = 'other'")
        .unwrap();

    conn.query_drop("INSERT INTO t (v) VALUES ('d')")
        .expect("the statement after the kill runs in the replayed transaction");
    let id_d = conn.last_insert_id();
    let inside: Vec<(u64, String)> = conn.query("SELECT id, v FROM t ORDER BY id").unwrap();
    assert_eq!(
        inside.iter().filter(|(_, v)| v != "other").count(),
        5,
        "{inside:?}"
    );
    conn.query_drop("COMMIT").unwrap();

    assert_ne!(
        backend_thread(&mut conn),
        thread,
        "a new connection serves it"
    );
    let stored = stored_rows("replay_txn");
    let mine: Vec<(u64, String)> = stored.into_iter().filter(|(_, v)| v != "other").collect();
    assert_eq!(
        mine,
        vec![
            (id_a, "a".to_string()),
            (id_b, "b".to_string()),
            (id_b + 1, "c".to_string()),
            (id_e, "e".to_string()),
            (id_d, "d".to_string()),
        ],
        "exactly what the client wrote, under the ids it was told"
    );
    assert_eq!(balance("replay_txn", 1), 90, "the update was applied once");
    assert_transaction_replays(&torpor, "ok", 1);
}

#[test]
fn a_transaction_of_prepared_statements_survives_a_killed_backend() {
    let torpor = Torpor::start();
    transaction_schema("replay_txn_prep");
    let mut conn = connect(torpor.addr());
    conn.query_drop("USE replay_txn_prep").unwrap();
    let insert = conn.prep("INSERT INTO t (v) VALUES (?)").unwrap();
    let read = conn.prep("SELECT balance FROM acct WHERE id = ?").unwrap();
    let debit = conn
        .prep("UPDATE acct SET balance = balance - ? WHERE id = ?")
        .unwrap();

    let mut tx = conn
        .start_transaction(
            mysql::TxOpts::default()
                .set_isolation_level(Some(mysql::IsolationLevel::ReadCommitted)),
        )
        .unwrap();
    tx.exec_drop(&insert, ("one",)).unwrap();
    let id_one = tx.last_insert_id().unwrap();
    let seen: Option<i64> = tx.exec_first(&read, (2,)).unwrap();
    assert_eq!(seen, Some(100));
    tx.exec_drop(&debit, (25, 2)).unwrap();

    kill_transaction_backend("replay_txn_prep");
    let mut admin = admin_connect();
    admin
        .query_drop("INSERT INTO replay_txn_prep.t (v) VALUES ('other')")
        .unwrap();
    admin
        .query_drop("DELETE FROM replay_txn_prep.t WHERE v = 'other'")
        .unwrap();

    tx.exec_drop(&insert, ("two",))
        .expect("the execute after the kill runs in the replayed transaction");
    let id_two = tx.last_insert_id().unwrap();
    let seen: Option<i64> = tx.exec_first(&read, (2,)).unwrap();
    assert_eq!(seen, Some(75), "the transaction sees its own update");
    // READ COMMITTED came back with the replay: a change committed now
    // is seen (under the default REPEATABLE READ the snapshot the replay
    // took would hide it).
    admin
        .query_drop("UPDATE replay_txn_prep.acct SET balance = 7 WHERE id = 3")
        .unwrap();
    let other: Option<i64> = tx.exec_first(&read, (3,)).unwrap();
    assert_eq!(other, Some(7), "the transaction runs at READ COMMITTED");
    tx.commit().unwrap();

    let mine: Vec<(u64, String)> = stored_rows("replay_txn_prep")
        .into_iter()
        .filter(|(_, v)| v != "other")
        .collect();
    assert_eq!(
        mine,
        vec![(id_one, "one".to_string()), (id_two, "two".to_string())]
    );
    assert_eq!(balance("replay_txn_prep", 2), 75);
}

/// sysbench's way (`--db-ps-mode=auto`): BEGIN and COMMIT are prepared
/// statements too. The transaction a prepared BEGIN opened is journaled
/// from that BEGIN, so it survives a killed backend.
#[test]
fn a_transaction_opened_by_a_prepared_begin_survives_a_killed_backend() {
    let torpor = Torpor::start();
    transaction_schema("replay_txn_psbegin");
    let mut conn = connect(torpor.addr());
    conn.query_drop("USE replay_txn_psbegin").unwrap();
    let begin = conn.prep("BEGIN").unwrap();
    let commit = conn.prep("COMMIT").unwrap();
    let insert = conn.prep("INSERT INTO t (v) VALUES (?)").unwrap();
    conn.exec_drop(&begin, ()).unwrap();
    conn.exec_drop(&insert, ("one",)).unwrap();

    kill_transaction_backend("replay_txn_psbegin");
    conn.exec_drop(&insert, ("two",))
        .expect("the execute after the kill runs in the replayed transaction");
    conn.exec_drop(&commit, ()).unwrap();

    let rows: Vec<String> = stored_rows("replay_txn_psbegin")
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(rows, vec!["one".to_string(), "two".to_string()]);
}

/// libmariadb's and sysbench's way: a statement's parameter types go with
/// its first execute only. The journal keeps the executes that came
/// without them, and the replay, which prepares the statements again on a
/// new connection, must send each with the types its client bound.
#[test]
fn executes_sent_without_parameter_types_are_replayed_with_them() {
    use torpor_tests::raw::{base_capabilities, com_stmt_execute, LoginOptions, Param, RawClient};

    let torpor = torpor_with_metrics();
    let schema = "replay_txn_untyped";
    transaction_schema(schema);
    let mut options = LoginOptions::app(base_capabilities());
    options.database = Some(schema.to_string());
    let mut client = RawClient::connect(torpor.addr(), &options);
    let execute = |client: &mut RawClient, id: u32, params: &[Param], send_types: bool| {
        let payload = com_stmt_execute(id, 0, params, send_types);
        let reply = client
            .command(&payload)
            .expect("execute")
            .expect("an execute has a reply");
        assert!(reply.error().is_none(), "execute: {:?}", reply.error());
    };
    let insert = client
        .prepare("INSERT INTO t (v) VALUES (?)")
        .0
        .statement_id;
    let read = client
        .prepare("SELECT balance FROM acct WHERE id = ?")
        .0
        .statement_id;
    let debit = client
        .prepare("UPDATE acct SET balance = balance - ? WHERE id = ?")
        .0
        .statement_id;
    // Each statement's first execute, with its types, before the
    // transaction (autocommit); inside it, every execute comes without
    // them, and the journal has none to copy.
    let executes = [
        (insert, vec![Param::text("one")], vec![Param::text("two")]),
        (read, vec![Param::Int(2)], vec![Param::Int(2)]),
        (
            debit,
            vec![Param::Int(25), Param::Int(2)],
            vec![Param::Int(5), Param::Int(2)],
        ),
    ];
    for (id, before, _) in &executes {
        execute(&mut client, *id, before, true);
    }
    client.query("BEGIN").expect_ok("BEGIN");
    for (id, _, inside) in &executes {
        execute(&mut client, *id, inside, false);
    }

    kill_transaction_backend(schema);
    execute(&mut client, insert, &[Param::text("three")], false);
    let seen = client.query("SELECT balance FROM acct WHERE id = 2");
    assert_eq!(
        seen.text_rows(client.capabilities),
        vec![vec![Some(b"70".to_vec())]],
        "the replayed transaction holds both debits"
    );
    client.query("COMMIT").expect_ok("COMMIT");
    assert_transaction_replays(&torpor, "ok", 1);

    let rows: Vec<String> = stored_rows(schema).into_iter().map(|(_, v)| v).collect();
    assert_eq!(rows, ["one", "two", "three"]);
    assert_eq!(balance(schema, 2), 70);
}

#[test]
fn a_conflicting_change_makes_replay_refuse_cleanly() {
    let torpor = torpor_with_metrics();
    transaction_schema("replay_txn_conflict");
    let mut conn = connect(torpor.addr());
    conn.query_drop("USE replay_txn_conflict").unwrap();

    conn.query_drop("BEGIN").unwrap();
    let seen: i64 = conn
        .query_first("SELECT balance FROM acct WHERE id = 3")
        .unwrap()
        .unwrap();
    assert_eq!(seen, 100);
    conn.query_drop("INSERT INTO t (v) VALUES ('paid')")
        .unwrap();

    kill_transaction_backend("replay_txn_conflict");
    // The row the transaction read changes before it is replayed.
    admin_connect()
        .query_drop("UPDATE replay_txn_conflict.acct SET balance = 500 WHERE id = 3")
        .unwrap();

    let err = conn
        .query_drop("UPDATE acct SET balance = balance - 100 WHERE id = 3")
        .expect_err("the replay reads another balance");
    assert_not_replayed(err, "statement 2");
    // The client's COMMIT commits nothing: the transaction is gone.
    conn.query_drop("COMMIT").unwrap();
    assert!(stored_rows("replay_txn_conflict").is_empty());
    assert_eq!(balance("replay_txn_conflict", 3), 500);

    // The session goes on.
    let now: i64 = conn
        .query_first("SELECT balance FROM acct WHERE id = 3")
        .unwrap()
        .unwrap();
    assert_eq!(now, 500);
    conn.query_drop("BEGIN").unwrap();
    conn.query_drop("INSERT INTO t (v) VALUES ('again')")
        .unwrap();
    conn.query_drop("COMMIT").unwrap();
    assert_eq!(stored_rows("replay_txn_conflict").len(), 1);
    assert_transaction_replays(&torpor, "refused", 1);
}

#[test]
fn a_nondeterministic_statement_makes_replay_refuse_cleanly() {
    let torpor = Torpor::start();
    transaction_schema("replay_txn_rand");
    let mut conn = connect(torpor.addr());
    conn.query_drop("USE replay_txn_rand").unwrap();

    conn.query_drop("BEGIN").unwrap();
    conn.query_drop("INSERT INTO t (v) VALUES ('x')").unwrap();
    let token: String = conn.query_first("SELECT UUID()").unwrap().unwrap();
    assert!(!token.is_empty());

    kill_transaction_backend("replay_txn_rand");
    let err = conn
        .query_drop("INSERT INTO t (v) VALUES ('y')")
        .expect_err("a UUID() cannot be replayed");
    assert_not_replayed(err, "UUID()");
    assert!(stored_rows("replay_txn_rand").is_empty());
    let one: i64 = conn.query_first("SELECT 1").unwrap().unwrap();
    assert_eq!(one, 1, "the session goes on");
}

#[test]
fn a_transaction_over_the_journal_budget_is_refused_cleanly() {
    let torpor = Torpor::start_with(torpor_tests::backend().addr(), |config| {
        config.transaction_replay_max_bytes = 300;
    });
    transaction_schema("replay_txn_budget");
    let mut conn = connect(torpor.addr());
    conn.query_drop("USE replay_txn_budget").unwrap();

    conn.query_drop("BEGIN").unwrap();
    conn.query_drop(format!("INSERT INTO t (v) VALUES ('{}')", "z".repeat(350)))
        .unwrap();

    kill_transaction_backend("replay_txn_budget");
    let err = conn
        .query_drop("INSERT INTO t (v) VALUES ('small')")
        .expect_err("the journal overflowed");
    assert_not_replayed(err, "larger than");
    assert!(stored_rows("replay_txn_budget").is_empty());
    let one: i64 = conn.query_first("SELECT 1").unwrap().unwrap();
    assert_eq!(one, 1, "the session goes on");

    // A ROLLBACK of a transaction that could not be replayed did what it
    // asked: it gets OK.
    conn.query_drop("BEGIN").unwrap();
    conn.query_drop(format!("INSERT INTO t (v) VALUES ('{}')", "w".repeat(350)))
        .unwrap();
    kill_transaction_backend("replay_txn_budget");
    conn.query_drop("ROLLBACK")
        .expect("a lost transaction is rolled back");
    assert!(stored_rows("replay_txn_budget").is_empty());
    conn.query_drop("INSERT INTO t (v) VALUES ('after')")
        .unwrap();
    assert_eq!(
        stored_rows("replay_txn_budget").len(),
        1,
        "autocommit again"
    );
}

/// The KILL lands while the client's statement waits for a row lock: the
/// connection dies under the statement, before any reply; the transaction
/// is replayed and the statement run again, and completes.
#[test]
fn a_transaction_killed_under_a_running_statement_completes() {
    let torpor = Torpor::start();
    transaction_schema("replay_txn_running");
    let addr = torpor.addr();
    let mut locker = admin_connect();
    locker.query_drop("BEGIN").unwrap();
    locker
        .query_drop("SELECT * FROM replay_txn_running.acct WHERE id = 2 FOR UPDATE")
        .unwrap();

    let client = std::thread::spawn(move || {
        let mut conn = connect(addr);
        conn.query_drop("USE replay_txn_running").unwrap();
        conn.query_drop("BEGIN").unwrap();
        conn.query_drop("INSERT INTO t (v) VALUES ('before')")
            .unwrap();
        let id = conn.last_insert_id();
        // Waits for the locker's row lock.
        conn.query_drop("UPDATE acct SET balance = balance + 1 WHERE id = 2")?;
        let affected = conn.affected_rows();
        conn.query_drop("COMMIT")?;
        Ok::<_, mysql::Error>((id, affected))
    });

    kill_while_waiting_then_see_it_run_again("replay_txn_running", &client);
    locker.query_drop("COMMIT").unwrap();

    let (id, affected) = client
        .join()
        .unwrap()
        .expect("the transaction completes after the replay");
    assert_eq!(affected, 1);
    assert_eq!(
        stored_rows("replay_txn_running"),
        vec![(id, "before".to_string())]
    );
    assert_eq!(balance("replay_txn_running", 2), 101);
}

/// Kills the backend thread that runs the client's `UPDATE acct…` in
/// `schema` while it waits for a row lock, then waits until the statement
/// waits again on a new backend connection (run again by Torpor).
fn kill_while_waiting_then_see_it_run_again<T>(schema: &str, client: &std::thread::JoinHandle<T>) {
    let running = format!(
        "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = '{schema}' AND INFO LIKE 'UPDATE acct%'"
    );
    let mut admin = admin_connect();
    let waiting = loop {
        let thread: Option<u64> = admin.query_first(&running).unwrap();
        if let Some(thread) = thread {
            break thread;
        }
        assert!(!client.is_finished(), "the client stopped before waiting");
        std::thread::sleep(Duration::from_millis(10));
    };
    admin.query_drop(format!("KILL {waiting}")).unwrap();
    // Once the client's statement waits again (on its new connection),
    // the lock may be released.
    loop {
        let thread: Option<u64> = admin.query_first(&running).unwrap();
        if thread.is_some_and(|t| t != waiting) {
            break;
        }
        assert!(
            !client.is_finished(),
            "the client stopped before waiting again"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// With autocommit off, the statement that opens the transaction is in
/// flight when its backend connection dies: nothing of it can have been
/// committed, so it runs again on a new connection (it closed the session
/// with "lost connection" before).
#[test]
fn the_first_statement_with_autocommit_off_survives_a_killed_backend() {
    let torpor = Torpor::start();
    transaction_schema("replay_txn_first");
    let addr = torpor.addr();
    let mut locker = admin_connect();
    locker.query_drop("BEGIN").unwrap();
    locker
        .query_drop("SELECT * FROM replay_txn_first.acct WHERE id = 2 FOR UPDATE")
        .unwrap();

    let client = std::thread::spawn(move || {
        let mut conn = connect(addr);
        conn.query_drop("USE replay_txn_first").unwrap();
        conn.query_drop("SET autocommit = 0").unwrap();
        // The transaction's first statement waits for the locker's lock.
        conn.query_drop("UPDATE acct SET balance = balance + 1 WHERE id = 2")?;
        let affected = conn.affected_rows();
        conn.query_drop("INSERT INTO t (v) VALUES ('after')")?;
        conn.query_drop("COMMIT")?;
        let autocommit: Option<i64> = conn.query_first("SELECT @@autocommit")?;
        Ok::<_, mysql::Error>((affected, autocommit))
    });
    kill_while_waiting_then_see_it_run_again("replay_txn_first", &client);
    locker.query_drop("COMMIT").unwrap();

    let (affected, autocommit) = client
        .join()
        .unwrap()
        .expect("the transaction completes after its first statement ran again");
    assert_eq!(affected, 1);
    assert_eq!(autocommit, Some(0), "the session kept autocommit off");
    assert_eq!(balance("replay_txn_first", 2), 101, "updated once");
    assert_eq!(stored_rows("replay_txn_first").len(), 1);
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

/// A statement that ends the transaction is never run again: here an
/// ALTER TABLE, whose implicit commit went through before it waited for a
/// metadata lock and was KILLed. The client is told the outcome is
/// unknown (it did commit), nothing is run twice, and the session goes on.
#[test]
fn a_statement_that_ends_the_transaction_is_never_run_again() {
    let torpor = Torpor::start();
    transaction_schema("replay_txn_commit");
    let addr = torpor.addr();
    let mut locker = admin_connect();
    locker.query_drop("BEGIN").unwrap();
    locker
        .query_drop("SELECT * FROM replay_txn_commit.acct")
        .unwrap();

    let client = std::thread::spawn(move || {
        let mut conn = connect(addr);
        conn.query_drop("USE replay_txn_commit").unwrap();
        conn.query_drop("BEGIN").unwrap();
        conn.query_drop("INSERT INTO t (v) VALUES ('committed by the ALTER')")
            .unwrap();
        // Commits, then waits for the locker's metadata lock.
        let altered = conn.query_drop("ALTER TABLE acct ADD COLUMN c INT");
        let after: Option<i64> = conn.query_first("SELECT COUNT(*) FROM t").unwrap();
        (altered, after)
    });

    let mut admin = admin_connect();
    let waiting = loop {
        let thread: Option<u64> = admin
            .query_first(
                "SELECT ID FROM information_schema.PROCESSLIST \
                 WHERE DB = 'replay_txn_commit' AND INFO LIKE 'ALTER TABLE acct%'",
            )
            .unwrap();
        if let Some(thread) = thread {
            break thread;
        }
        if client.is_finished() {
            panic!("the client stopped before waiting: {:?}", client.join());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    admin.query_drop(format!("KILL {waiting}")).unwrap();
    let (altered, after) = client.join().unwrap();
    locker.query_drop("COMMIT").unwrap();

    match altered {
        Err(mysql::Error::MySqlError(e)) => {
            assert_eq!(e.code, 1317, "{e}");
            assert!(e.message.contains("unknown"), "{e}");
        }
        other => panic!("expected the outcome-unknown error, got {other:?}"),
    }
    assert_eq!(after, Some(1), "the session goes on");
    assert_eq!(
        stored_rows("replay_txn_commit").len(),
        1,
        "the implicit commit happened once"
    );
    let columns: i64 = admin
        .query_first(
            "SELECT COUNT(*) FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = 'replay_txn_commit' AND TABLE_NAME = 'acct' AND COLUMN_NAME = 'c'",
        )
        .unwrap()
        .unwrap();
    assert_eq!(columns, 0, "the ALTER was not run again");
}
