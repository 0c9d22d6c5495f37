//! A session that panics while it holds a backend connection: the
//! worker catches the panic and closes the session, and the connection's
//! place in the pool must come back — else the worker counts it lent
//! forever, its service never suspends again, and a full pool stays full.
//!
//! The panic is one a test asks for: debug builds only, with
//! `TORPOR_TEST_PANIC=1` set, the statement `SELECT 'torpor-test-panic'`
//! panics in the session. The only test in its binary: it sets the
//! variable before anything else runs.

use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use serde_json::Value;
use torpor_tests::{backend, connect, Torpor};

/// However loaded the machine: generous, never a timing assertion.
const LIMIT: Duration = Duration::from_secs(30);

/// `connections.backend_in_use` of service `default`, from the admin API.
fn in_use(admin: std::net::SocketAddr) -> Option<u64> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let body = agent
        .get(&format!("http://{admin}/services/default"))
        .call()
        .expect("GET /services/default")
        .body_mut()
        .read_to_string()
        .expect("body");
    let service: Value = serde_json::from_str(&body).expect("JSON");
    service["connections"]["backend_in_use"].as_u64()
}

/// Polls (workers publish what they lent once a second) until
/// `backend_in_use` is `want`; returns the values it read on the way.
fn wait_for_in_use(admin: std::net::SocketAddr, want: u64) -> Vec<Option<u64>> {
    let deadline = Instant::now() + LIMIT;
    let mut seen = Vec::new();
    loop {
        let lent = in_use(admin);
        if seen.last() != Some(&lent) {
            seen.push(lent);
        }
        if lent == Some(want) {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "backend_in_use never came to {want}: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_session_that_panics_gives_its_backend_connection_back() {
    // Before any thread of this binary reads the environment.
    std::env::set_var("TORPOR_TEST_PANIC", "1");
    let torpor = Torpor::start_with(backend().addr(), |config| {
        config.workers = 1;
        config.admin.listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        // One backend connection: a leaked place would be the only one.
        config.max_backend_connections = 1;
        config.pool_wait_timeout_ms = 5_000;
    });
    let admin = torpor.admin_addr().expect("admin API runs");
    let mut conn = connect(torpor.addr());
    // In a transaction the session holds its backend connection; once the
    // admin API shows it lent, what it shows is the worker's live count.
    conn.query_drop("BEGIN").expect("BEGIN");
    let one: Option<i64> = conn.query_first("SELECT 1").expect("a query");
    assert_eq!(one, Some(1));
    wait_for_in_use(admin, 1);
    let panicked = conn.query_drop("SELECT 'torpor-test-panic'");
    assert!(panicked.is_err(), "the session should have been closed");
    drop(conn);

    let seen = wait_for_in_use(admin, 0);
    println!("backend_in_use after the panic: {seen:?}");

    // And the pool's one place serves the next client.
    let mut next = connect(torpor.addr());
    let two: Option<i64> = next
        .query_first("SELECT 2")
        .unwrap_or_else(|e| panic!("a client after the panic: {e}"));
    assert_eq!(two, Some(2));
}
