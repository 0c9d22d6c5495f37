//! README's first command, `torpor --spawn-mariadb --user app:secret`, as
//! a newcomer runs it: the real binary, a private MariaDB it runs itself,
//! a real client. What a newcomer puts in it is still there after a
//! restart.

use mysql::prelude::Queryable;
use torpor_tests::binary::Running;
use torpor_tests::mysql_opts;

fn mariadb_installed() {
    assert!(
        torpor::scaler::process::find_program(&["mariadbd", "mysqld"]).is_some(),
        "mariadbd is not installed: install Debian's mariadb-server (tests/run does)"
    );
}

#[test]
fn the_quickstart_keeps_its_tables_across_a_restart() {
    mariadb_installed();
    let state = tempfile::Builder::new()
        .prefix("torpor-quickstart-")
        .tempdir()
        .expect("state dir");
    let state_dir = state.path().to_str().expect("UTF-8 path");
    // README's command, with a state folder of the test's own and no
    // admin API (its port may be another test's).
    let args = [
        "--spawn-mariadb",
        "--user",
        "app:secret",
        "--state-dir",
        state_dir,
        "--admin-listen",
        "off",
    ];
    let mut first = Running::start_bare(&args, false);
    {
        let mut conn = mysql::Conn::new(mysql_opts(first.addr, "app", "secret"))
            .unwrap_or_else(|e| panic!("cannot log in: {e}; log:\n{}", first.log_text()));
        conn.query_drop("CREATE TABLE test.kept (id INT PRIMARY KEY, note TEXT)")
            .expect("create table");
        conn.query_drop("INSERT INTO test.kept VALUES (1, 'still here')")
            .expect("insert");
    }
    let datadir = state.path().join("services/default/data");
    let log = first.log_text();
    assert!(
        log.contains("keeps its data") && log.contains(&datadir.display().to_string()),
        "the log does not say where the data is kept:\n{log}"
    );
    first.stop();
    assert!(
        datadir.join("test").is_dir(),
        "the datadir went with Torpor"
    );

    let second = Running::start_bare(&args, false);
    let mut conn = mysql::Conn::new(mysql_opts(second.addr, "app", "secret"))
        .unwrap_or_else(|e| panic!("cannot log in again: {e}; log:\n{}", second.log_text()));
    let note: Option<String> = conn
        .query_first("SELECT note FROM test.kept WHERE id = 1")
        .unwrap_or_else(|e| panic!("the table is gone: {e}"));
    assert_eq!(note.as_deref(), Some("still here"));
}

/// `GET` or `POST` on the admin API: the status and the JSON body.
fn admin(method: &str, url: &str) -> (u16, serde_json::Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(120)))
        .build()
        .into();
    let mut response = match method {
        "POST" => agent.post(url).send_empty(),
        _ => agent.get(url).call(),
    }
    .unwrap_or_else(|e| panic!("admin API {url}: {e}"));
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().expect("body");
    (status, serde_json::from_str(&body).expect("JSON"))
}

/// A session that sits in an open transaction keeps its service awake:
/// the log and the admin API say so and since when. With
/// `--idle-in-transaction-timeout-secs` the session is closed with an
/// error that says why (its next command reads it), the transaction is
/// rolled back, and the service suspends.
#[test]
fn an_idle_transaction_is_named_and_closed_after_its_timeout() {
    mariadb_installed();
    let state = tempfile::tempdir().expect("state dir");
    let admin_addr = format!(
        "127.0.0.1:{}",
        torpor::scaler::process::free_port().expect("free port")
    );
    let args = [
        "--spawn-mariadb",
        "--spawn-temporary",
        "--user",
        "app:secret",
        "--state-dir",
        state.path().to_str().expect("UTF-8 path"),
        "--admin-listen",
        &admin_addr,
        "--suspend-after-secs",
        "1",
        "--idle-in-transaction-timeout-secs",
        "4",
    ];
    let torpor = Running::start_bare(&args, false);
    let service = format!("http://{admin_addr}/services/default");
    let opts = mysql_opts(torpor.addr, "app", "secret");
    let mut other = mysql::Conn::new(opts.clone()).expect("log in");
    other
        .query_drop("CREATE TABLE test.idle_tx (id INT PRIMARY KEY)")
        .expect("create table");
    let mut idle = mysql::Conn::new(opts).expect("log in");
    idle.query_drop("BEGIN").expect("begin");
    idle.query_drop("INSERT INTO test.idle_tx VALUES (1)")
        .expect("insert");

    torpor.wait_log(
        "kept awake past suspend_after_secs: 1 session(s) in an open transaction",
        1,
    );
    let (status, body) = admin("GET", &service);
    assert_eq!(status, 200, "{body}");
    // The timeout may have struck already on a slow machine: then the
    // service shows nothing kept awake, and the checks below still hold.
    if body["connections"]["clients"] == 2 {
        assert_eq!(body["kept_awake"]["open_transactions"], 1, "{body}");
        assert!(body["kept_awake"]["since_ms"].is_u64(), "{body}");
        assert_eq!(body["pins"][0]["reasons"][0], "transaction", "{body}");
        assert!(body["pins"][0]["pinned_ms"].is_u64(), "{body}");
    }

    // Closed by the timeout: the session leaves the service's clients.
    let deadline = std::time::Instant::now() + torpor_tests::binary::HANG_LIMIT;
    while admin("GET", &service).1["connections"]["clients"] != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the idle transaction was never closed; log:\n{}",
            torpor.log_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    match idle.query_drop("SELECT 1") {
        Err(mysql::Error::MySqlError(e)) => {
            assert_eq!(e.code, 1927, "{e:?}");
            assert!(e.message.contains("idle in a transaction"), "{e:?}");
        }
        other => panic!("the closed session's next command: {other:?}"),
    }
    let rows: Vec<i64> = other.query("SELECT id FROM test.idle_tx").expect("select");
    assert!(
        rows.is_empty(),
        "the idle transaction was committed: {rows:?}"
    );
    drop(other);
    // Nothing keeps it awake now: it suspends.
    while admin("GET", &service).1["state"] != "suspended" {
        assert!(
            std::time::Instant::now() < deadline,
            "the service never suspended; log:\n{}",
            torpor.log_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // An action the API does not know is a bad request that lists them.
    let (status, body) = admin("POST", &format!("{service}/sleep"));
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["actions"],
        serde_json::json!(["suspend", "park", "wake", "resize", "relocate"])
    );
}
