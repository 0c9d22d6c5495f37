//! Real load through Torpor with sysbench: `oltp_read_write` with
//! server-side prepared statements (`--db-ps-mode=auto`: sysbench prepares
//! even BEGIN and COMMIT, sends parameter types only on the first
//! execution, and libmariadb uses MariaDB's metadata caching) and with
//! plain text queries (`--db-ps-mode=disable`), and `oltp_point_select`.
//! Every run must end without a single error or reconnect, and the data
//! must be whole afterwards.
//!
//! The runs take about 50 s in all. They run one at a time (a lock) so
//! that the backend's statement counters can be attributed to one run;
//! each uses a schema of its own.

use std::sync::Mutex;

use mysql::prelude::Queryable;
use torpor_tests::sysbench::{parse_summary, sysbench, Summary, TABLES, TABLE_SIZE};
use torpor_tests::{admin_connect, Torpor};

/// One sysbench run at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const THREADS: u32 = 8;

/// The backend's global statement counters.
fn statement_counters(admin: &mut mysql::Conn) -> (u64, u64) {
    let rows: Vec<(String, u64)> = admin
        .query("SHOW GLOBAL STATUS WHERE Variable_name IN ('Com_stmt_prepare', 'Com_stmt_execute')")
        .unwrap();
    let get = |name: &str| {
        rows.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no {name} in {rows:?}"))
    };
    (get("Com_stmt_prepare"), get("Com_stmt_execute"))
}

/// Prepares `schema` through Torpor, runs `test` for `seconds` with
/// `extra` options, checks the run was clean and the tables whole, and
/// returns the summary and how many statements the backend prepared and
/// executed meanwhile.
fn run(test: &str, schema: &str, seconds: u32, extra: &[&str]) -> (Summary, u64, u64) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let torpor = Torpor::start();
    let mut admin = admin_connect();
    admin
        .query_drop(format!("DROP DATABASE IF EXISTS {schema}"))
        .unwrap();
    admin
        .query_drop(format!("CREATE DATABASE {schema}"))
        .unwrap();
    // The tables are created and filled through Torpor too (multi-row
    // INSERTs of a few hundred kilobytes, CREATE INDEX).
    sysbench(torpor.addr(), schema, test, &[], "prepare");

    let (prepared_before, executed_before) = statement_counters(&mut admin);
    let mut options = vec![
        format!("--threads={THREADS}"),
        format!("--time={seconds}"),
        "--report-interval=0".into(),
    ];
    options.extend(extra.iter().map(|s| s.to_string()));
    let options: Vec<&str> = options.iter().map(String::as_str).collect();
    let output = sysbench(torpor.addr(), schema, test, &options, "run");
    let (prepared_after, executed_after) = statement_counters(&mut admin);
    let summary = parse_summary(&output);

    assert!(summary.transactions > 0, "no transactions:\n{output}");
    assert_eq!(summary.ignored_errors, 0, "errors:\n{output}");
    assert_eq!(summary.reconnects, 0, "reconnects:\n{output}");
    assert_eq!(
        summary.read + summary.write + summary.other,
        summary.queries,
        "{output}"
    );

    // Every row is still there: oltp_read_write deletes and re-inserts
    // rows inside its transactions, so a lost or misrouted statement
    // shows up as a row too few or too many.
    for table in 1..=TABLES {
        let count: Option<u64> = admin
            .query_first(format!("SELECT COUNT(*) FROM {schema}.sbtest{table}"))
            .unwrap();
        assert_eq!(
            count,
            Some(TABLE_SIZE),
            "{schema}.sbtest{table} after {test}"
        );
    }
    admin.query_drop(format!("DROP DATABASE {schema}")).unwrap();
    drop(torpor);
    (
        summary,
        prepared_after - prepared_before,
        executed_after - executed_before,
    )
}

#[test]
fn oltp_read_write_with_server_side_prepared_statements() {
    let (summary, prepared, executed) =
        run("oltp_read_write", "sb_rw_ps", 20, &["--db-ps-mode=auto"]);
    assert!(summary.write > 0, "{summary:?}");
    // Each thread prepares its statements once, then every query,
    // BEGIN and COMMIT included, is a COM_STMT_EXECUTE (this binary's
    // MariaDB runs nothing else meanwhile).
    assert!(
        prepared > 0 && prepared < executed,
        "{summary:?}: prepared {prepared}"
    );
    assert_eq!(executed, summary.queries, "{summary:?}: executed");
}

#[test]
fn oltp_read_write_with_text_queries() {
    let (summary, prepared, executed) = run(
        "oltp_read_write",
        "sb_rw_text",
        20,
        &["--db-ps-mode=disable"],
    );
    assert!(summary.write > 0, "{summary:?}");
    assert_eq!(
        (prepared, executed),
        (0, 0),
        "{summary:?}: no prepared statements in this mode"
    );
}

#[test]
fn oltp_point_select() {
    let (summary, prepared, executed) =
        run("oltp_point_select", "sb_point", 8, &["--db-ps-mode=auto"]);
    assert_eq!((summary.write, summary.other), (0, 0), "{summary:?}");
    assert_eq!(
        summary.read, summary.transactions,
        "one SELECT per transaction: {summary:?}"
    );
    assert!(prepared > 0, "{summary:?}: prepared {prepared}");
    assert_eq!(executed, summary.queries, "{summary:?}: executed");
}
