//! The differential harness (issue 13): every case of
//! `tests/differential/cases/*.sql` runs directly against MariaDB and
//! through Torpor, through five clients — the `mariadb` CLI, a C program
//! on libmariadb (built here with `cc`), MariaDB Connector/Python, PyMySQL
//! and the Rust `mysql` crate — once with Torpor's default pool and once
//! with `max_backend_connections = 1`, so that sessions interleave on one
//! backend connection. The transcripts (results, errors with code and
//! SQLSTATE, warnings, the session-tracking data libmariadb hands the
//! client) must be byte for byte the same.
//!
//! `tests/differential/expected.txt` lists the divergences known today,
//! each with its defect number. The test fails on a divergence that is not
//! listed AND on a listed one that no longer shows, so the list stays
//! honest: delete its entries as the fixes merge.
//!
//! `DIFF_CASES=a,b` runs only those cases while debugging.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use torpor_tests::{backend, mysql_opts, require_program, Torpor, APP_PASSWORD, APP_USER};

/// Where the corpus, the runners and the expectations live.
fn dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/differential"))
}

/// One statement of a case.
#[derive(Debug, Clone)]
struct Step {
    /// "A" or "B": which of the case's two sessions runs it.
    session: String,
    /// text, binary, direct, bulk, sleep or close.
    kind: String,
    sql: String,
    /// JSON parameters (a list; a list of lists for bulk).
    params: Option<serde_json::Value>,
}

/// One file of the corpus.
#[derive(Debug, Clone)]
struct Case {
    name: String,
    /// Why the case does not run with one backend connection, if it does not.
    skip_pool1: Option<String>,
    steps: Vec<Step>,
}

fn parse_case(name: &str, text: &str) -> Case {
    let mut skip_pool1 = None;
    let mut raw: Vec<String> = Vec::new();
    for line in text.lines() {
        if let Some(reason) = line.strip_prefix("# skip-pool1:") {
            skip_pool1 = Some(reason.trim().to_string());
        }
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        match raw.last_mut() {
            Some(last) if line.starts_with([' ', '\t']) => {
                last.push('\n');
                last.push_str(line);
            }
            _ => raw.push(line.to_string()),
        }
    }
    let steps =
        raw.into_iter()
            .map(|line| {
                let (session, rest) = match line.strip_prefix("B: ") {
                    Some(rest) => ("B", rest.to_string()),
                    None => ("A", line),
                };
                let (kind, rest) = match rest.strip_prefix('@') {
                    Some(directive) => match directive.split_once(' ') {
                        Some((kind, rest)) => (kind.to_string(), rest.to_string()),
                        None => (directive.to_string(), String::new()),
                    },
                    None => ("text".to_string(), rest),
                };
                let (sql, params) = match rest.split_once("|||") {
                    Some((sql, params)) => (
                        sql.trim().to_string(),
                        Some(serde_json::from_str(params.trim()).unwrap_or_else(|e| {
                            panic!("case {name}: bad parameters {params}: {e}")
                        })),
                    ),
                    None => (rest, None),
                };
                Step {
                    session: session.to_string(),
                    kind,
                    sql,
                    params,
                }
            })
            .collect();
    Case {
        name: name.to_string(),
        skip_pool1,
        steps,
    }
}

fn corpus() -> Vec<Case> {
    let only: Option<BTreeSet<String>> = std::env::var("DIFF_CASES")
        .ok()
        .map(|list| list.split(',').map(str::to_string).collect());
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir().join("cases"))
        .expect("tests/differential/cases exists")
        .map(|entry| entry.expect("readable").path())
        .filter(|path| path.extension().is_some_and(|e| e == "sql"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|path| {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            parse_case(&name, &std::fs::read_to_string(path).expect("readable"))
        })
        .filter(|case| only.as_ref().is_none_or(|only| only.contains(&case.name)))
        .collect()
}

/// The clients every case runs through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Driver {
    Cli,
    C,
    PyMariadb,
    Pymysql,
    RustMysql,
}

const DRIVERS: [Driver; 5] = [
    Driver::Cli,
    Driver::C,
    Driver::PyMariadb,
    Driver::Pymysql,
    Driver::RustMysql,
];

impl Driver {
    fn name(self) -> &'static str {
        match self {
            Driver::Cli => "cli",
            Driver::C => "c",
            Driver::PyMariadb => "py-mariadb",
            Driver::Pymysql => "pymysql",
            Driver::RustMysql => "rust-mysql",
        }
    }
}

/// A child process's output, killed after `limit` (a hung client is a
/// divergence, not a hung test).
fn run_child(mut command: Command, stdin: Option<&str>, limit: Duration) -> String {
    let out = tempfile::NamedTempFile::new().expect("temp file");
    let err = tempfile::NamedTempFile::new().expect("temp file");
    command
        .stdout(out.reopen().expect("reopen"))
        .stderr(err.reopen().expect("reopen"))
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    if let Some(input) = stdin {
        use std::io::Write;
        let mut pipe = child.stdin.take().expect("piped");
        let _ = pipe.write_all(input.as_bytes());
    }
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut text = std::fs::read_to_string(out.path()).unwrap_or_default();
    let stderr = std::fs::read_to_string(err.path()).unwrap_or_default();
    if !stderr.is_empty() {
        let _ = write!(text, "stderr:\n{stderr}");
    }
    match status {
        None => {
            let _ = writeln!(text, "TIMEOUT: killed after {limit:?}");
        }
        Some(status) if !status.success() => {
            let _ = writeln!(text, "exit: {status}");
        }
        Some(_) => {}
    }
    text
}

const LIMIT: Duration = Duration::from_secs(40);

/// The C runner, compiled once per test binary.
fn c_runner() -> PathBuf {
    static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut slot = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = slot.as_ref() {
        return path.clone();
    }
    let cc = require_program("cc", "gcc");
    let config = require_program("mariadb_config", "libmariadb-dev");
    let flags = |flag: &str| -> Vec<String> {
        let out = Command::new(&config)
            .arg(flag)
            .output()
            .expect("mariadb_config runs");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let dir = tempfile::tempdir().expect("temp dir").keep();
    let binary = dir.join("runner");
    let status = Command::new(cc)
        .arg("-O1")
        .arg("-o")
        .arg(&binary)
        .arg(self::dir().join("runner.c"))
        .args(flags("--cflags"))
        .args(flags("--libs"))
        .status()
        .expect("cc runs");
    assert!(
        status.success(),
        "compiling tests/differential/runner.c failed"
    );
    *slot = Some(binary.clone());
    binary
}

fn python() -> PathBuf {
    static CHECKED: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut slot = CHECKED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = slot.as_ref() {
        return path.clone();
    }
    let python = require_program("python3", "python3");
    for module in ["pymysql", "mariadb"] {
        let ok = Command::new(&python)
            .args(["-c", &format!("import {module}")])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "the Python module {module} is missing: tests/run installs it with python3 -m pip"
        );
    }
    *slot = Some(python.clone());
    python
}

/// What must differ, or may: MariaDB lists the tracked variables of one
/// reply in an order that depends on the connection's history (seen
/// directly: the same SET NAMES reported client-connection-results on one
/// connection and connection-results-client on another), and libmariadb
/// keeps that order; the pairs are sorted so that only their content
/// counts.
fn normalize(transcript: &str) -> String {
    let mut out = String::with_capacity(transcript.len());
    for line in transcript.lines() {
        match line.strip_prefix("  track vars: [") {
            Some(rest) => {
                let items: Vec<&str> = rest.trim_end_matches(']').split("] [").collect();
                let mut pairs: Vec<String> = items.chunks(2).map(|pair| pair.join("] [")).collect();
                pairs.sort();
                out.push_str("  track vars: [");
                out.push_str(&pairs.join("] ["));
                out.push(']');
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

fn run_case(driver: Driver, case: &Case, addr: SocketAddr) -> String {
    let host = addr.ip().to_string();
    let port = addr.port().to_string();
    match driver {
        Driver::Cli => run_cli(case, addr),
        Driver::C => {
            let mut input = format!("=== {}\n", case.name);
            for step in &case.steps {
                let mut fields = vec![
                    step.session.clone(),
                    step.kind.clone(),
                    step.sql.replace('\n', "\x1e"),
                ];
                if let Some(serde_json::Value::Array(params)) = &step.params {
                    for param in params {
                        fields.push(match param {
                            serde_json::Value::String(s) => s.clone(),
                            serde_json::Value::Null => "NULL".into(),
                            other => other.to_string(),
                        });
                    }
                }
                input.push_str(&fields.join("\x1f"));
                input.push('\n');
            }
            let file = tempfile::NamedTempFile::new().expect("temp file");
            std::fs::write(file.path(), input).expect("write");
            let mut command = Command::new(c_runner());
            command
                .args([&host, &port, APP_USER, APP_PASSWORD])
                .arg(file.path());
            run_child(command, None, LIMIT)
        }
        Driver::PyMariadb | Driver::Pymysql => {
            let steps: Vec<serde_json::Value> = case
                .steps
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "session": s.session, "kind": s.kind, "sql": s.sql, "params": s.params,
                    })
                })
                .collect();
            let json = serde_json::json!([{ "case": case.name, "steps": steps }]);
            let file = tempfile::NamedTempFile::new().expect("temp file");
            std::fs::write(file.path(), json.to_string()).expect("write");
            let mut command = Command::new(python());
            command
                .arg(dir().join("runner.py"))
                .arg(if driver == Driver::Pymysql {
                    "pymysql"
                } else {
                    "mariadb"
                })
                .args([&host, &port, APP_USER, APP_PASSWORD])
                .arg(file.path());
            run_child(command, None, LIMIT)
        }
        Driver::RustMysql => run_rust(case, addr),
    }
}

/// The `mariadb` CLI runs session A's text statements as one script (it
/// has no second session and no prepared statements; those steps are
/// left out, and the transcript says so).
fn run_cli(case: &Case, addr: SocketAddr) -> String {
    let mut script = String::from("DELIMITER $$\n");
    let mut skipped = Vec::new();
    for step in &case.steps {
        if step.session == "A" && step.kind == "text" {
            script.push_str(&step.sql);
            script.push_str("$$\n");
        } else if step.kind == "sleep" {
            let _ = writeln!(script, "DO SLEEP(0)$$\nsystem sleep {}$$", step.sql);
        } else {
            skipped.push(format!("[{}] {} {}", step.session, step.kind, step.sql));
        }
    }
    let mut command = Command::new(require_program("mariadb", "mariadb-client"));
    command.args([
        "--no-defaults",
        "--protocol=TCP",
        &format!("--host={}", addr.ip()),
        &format!("--port={}", addr.port()),
        &format!("--user={APP_USER}"),
        &format!("--password={APP_PASSWORD}"),
        "--default-character-set=utf8mb4",
        "--batch",
        "--raw",
        "--show-warnings",
        "--column-type-info",
        "--force",
        "test",
    ]);
    let mut text = format!("=== case {}\n", case.name);
    for line in skipped {
        let _ = writeln!(text, "not in the CLI: {line}");
    }
    text.push_str(&run_child(command, Some(&script), LIMIT));
    text
}

fn json_to_value(v: &serde_json::Value) -> mysql::Value {
    match v {
        serde_json::Value::Null => mysql::Value::NULL,
        serde_json::Value::Bool(b) => mysql::Value::Int(i64::from(*b)),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => mysql::Value::Int(i),
            None => mysql::Value::Double(n.as_f64().unwrap_or(0.0)),
        },
        serde_json::Value::String(s) => mysql::Value::Bytes(s.clone().into_bytes()),
        other => mysql::Value::Bytes(other.to_string().into_bytes()),
    }
}

fn params_of(v: &Option<serde_json::Value>) -> mysql::Params {
    match v {
        Some(serde_json::Value::Array(items)) => {
            mysql::Params::Positional(items.iter().map(json_to_value).collect())
        }
        _ => mysql::Params::Empty,
    }
}

fn rust_error(e: &mysql::Error) -> String {
    match e {
        mysql::Error::MySqlError(e) => format!("error: {} {} {}", e.code, e.state, e.message),
        other => format!("error: {other}"),
    }
}

/// Prints every result set of `result` the way the other runners do.
fn rust_results<P: mysql::prelude::Protocol>(
    mut result: mysql::QueryResult<'_, '_, '_, P>,
    out: &mut String,
) -> Result<(), mysql::Error> {
    while let Some(mut set) = result.iter() {
        let columns = set.columns();
        let columns: Vec<String> = columns
            .as_ref()
            .iter()
            .map(|c| format!("{}:{:?}", c.name_str(), c.column_type()))
            .collect();
        if !columns.is_empty() {
            let _ = writeln!(out, "  cols: {}", columns.join(", "));
        }
        for row in set.by_ref() {
            let row = row?;
            let values: Vec<String> = row.unwrap().into_iter().map(|v| v.as_sql(false)).collect();
            let _ = writeln!(out, "  row: {}", values.join(" | "));
        }
        // Affected rows, insert id and warnings of the set just read.
        let _ = writeln!(
            out,
            "  ok: rows={} insert_id={:?} warnings={}",
            set.affected_rows(),
            set.last_insert_id(),
            set.warnings()
        );
    }
    Ok(())
}

fn run_rust(case: &Case, addr: SocketAddr) -> String {
    let opts: mysql::Opts = mysql::OptsBuilder::from_opts(mysql_opts(addr, APP_USER, APP_PASSWORD))
        .read_timeout(Some(Duration::from_secs(4)))
        .into();
    let mut out = format!("=== case {}\n", case.name);
    let mut sessions: BTreeMap<String, mysql::Conn> = BTreeMap::new();
    for step in &case.steps {
        let _ = writeln!(out, "[{}] {} {}", step.session, step.kind, step.sql);
        match step.kind.as_str() {
            "sleep" => {
                std::thread::sleep(Duration::from_secs_f64(step.sql.parse().unwrap_or(0.0)));
                continue;
            }
            "close" => {
                sessions.remove(&step.session);
                continue;
            }
            _ => {}
        }
        if !sessions.contains_key(&step.session) {
            match mysql::Conn::new(opts.clone()) {
                Ok(conn) => {
                    sessions.insert(step.session.clone(), conn);
                }
                Err(e) => {
                    let _ = writeln!(out, "  connect {}", rust_error(&e));
                    continue;
                }
            }
        }
        let conn = sessions.get_mut(&step.session).expect("just opened");
        let result = match step.kind.as_str() {
            "text" => conn
                .query_iter(&step.sql)
                .and_then(|r| rust_results(r, &mut out)),
            "bulk" => {
                let rows: Vec<mysql::Params> = match &step.params {
                    Some(serde_json::Value::Array(rows)) => {
                        rows.iter().map(|r| params_of(&Some(r.clone()))).collect()
                    }
                    _ => Vec::new(),
                };
                conn.exec_batch(&step.sql, rows).map(|()| {
                    let _ = writeln!(out, "  ok: rows={}", conn.affected_rows());
                })
            }
            _ => conn
                .exec_iter(&step.sql, params_of(&step.params))
                .and_then(|r| rust_results(r, &mut out)),
        };
        if let Err(e) = result {
            let _ = writeln!(out, "  {}", rust_error(&e));
        }
    }
    out
}

/// One entry of expected.txt.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Known {
    case: String,
    driver: String,
    pool: String,
}

/// `case driver pool defect reason...`; `*` matches any driver or pool.
/// An entry whose reason contains `(sometimes)` is one whose showing
/// depends on which pooled connection a session happens to get; it is not
/// reported when it does not show.
fn expected() -> BTreeMap<Known, String> {
    let text = std::fs::read_to_string(dir().join("expected.txt")).expect("expected.txt");
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|line| {
            let mut words = line.split_whitespace();
            let mut next = || words.next().unwrap_or_else(|| panic!("short line: {line}"));
            let known = Known {
                case: next().into(),
                driver: next().into(),
                pool: next().into(),
            };
            (known, line.to_string())
        })
        .collect()
}

fn unified_diff(direct: &str, proxied: &str) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = dir.path().join("direct");
    let b = dir.path().join("torpor");
    std::fs::write(&a, direct).expect("write");
    std::fs::write(&b, proxied).expect("write");
    let out = Command::new("diff")
        .args(["-u", "--label", "direct", "--label", "torpor"])
        .arg(&a)
        .arg(&b)
        .output()
        .expect("diff runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What one run (one pool setting) found: the divergences and their diffs.
fn differences(pool: &str, torpor: &Torpor, cases: &[Case]) -> BTreeMap<Known, String> {
    // One case at a time: with cases in parallel, which pooled connection
    // a session gets (and so whether state leaks into it) would be chance.
    let mut found = BTreeMap::new();
    for case in cases {
        if pool == "pool1" && case.skip_pool1.is_some() {
            continue;
        }
        for driver in DRIVERS {
            let started = Instant::now();
            let direct = normalize(&run_case(driver, case, backend().addr()));
            let proxied = normalize(&run_case(driver, case, torpor.addr()));
            eprintln!(
                "differential: {} {} {pool}: {:?}",
                case.name,
                driver.name(),
                started.elapsed()
            );
            if direct != proxied {
                let diff = unified_diff(&direct, &proxied);
                let known = Known {
                    case: case.name.clone(),
                    driver: driver.name().into(),
                    pool: pool.into(),
                };
                found.insert(known, diff);
            }
        }
    }
    found
}

fn matches(known: &Known, found: &Known) -> bool {
    known.case == found.case
        && (known.driver == "*" || known.driver == found.driver)
        && (known.pool == "*" || known.pool == found.pool)
}

fn check(pool: &str, found: &BTreeMap<Known, String>, cases: &[Case]) -> Vec<String> {
    let mut failures = Vec::new();
    let expected = expected();
    for (divergence, diff) in found {
        if !expected.keys().any(|k| matches(k, divergence)) {
            failures.push(format!(
                "UNLISTED divergence: case {} driver {} pool {}\n{diff}",
                divergence.case, divergence.driver, divergence.pool
            ));
        }
    }
    for (known, line) in &expected {
        let ran = cases
            .iter()
            .any(|c| c.name == known.case && !(pool == "pool1" && c.skip_pool1.is_some()));
        if !ran || (known.pool != "*" && known.pool != pool) || line.contains("(sometimes)") {
            continue;
        }
        for driver in DRIVERS {
            if known.driver != "*" && known.driver != driver.name() {
                continue;
            }
            let probe = Known {
                case: known.case.clone(),
                driver: driver.name().into(),
                pool: pool.into(),
            };
            if !found.contains_key(&probe) {
                failures.push(format!(
                    "FIXED? listed divergence no longer shows (delete it from tests/differential/expected.txt): \
                     case {} driver {} pool {pool}: {line}",
                    known.case,
                    driver.name()
                ));
            }
        }
    }
    failures
}

#[test]
fn every_client_sees_through_torpor_what_it_sees_from_mariadb() {
    let cases = corpus();
    assert!(!cases.is_empty(), "no cases in tests/differential/cases");
    c_runner();
    python();
    // The corpus's routines read seq_1_to_3 (the sequence engine) in test.
    let mut failures = Vec::new();
    for pool in ["default", "pool1"] {
        let torpor = Torpor::start_with(backend().addr(), |config| {
            if pool == "pool1" {
                config.workers = 1;
                config.max_backend_connections = 1;
            }
        });
        let found = differences(pool, &torpor, &cases);
        if std::env::var_os("DIFF_SHOW").is_some() {
            for (k, diff) in &found {
                eprintln!("--- {} {} {}\n{diff}", k.case, k.driver, k.pool);
            }
        }
        failures.extend(check(pool, &found, &cases));
        torpor.stop();
    }
    assert!(
        failures.is_empty(),
        "{} differential failure(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
