//! Backend faults a client must not see: pooled backend connections that
//! died while idle (KILLed) are never handed to a new session — at its
//! login or at its first query.

use std::net::SocketAddr;

use mysql::prelude::Queryable;
use torpor_tests::{
    admin_connect, backend, connect, require_program, Torpor, APP_PASSWORD, APP_USER,
};

/// Kills every backend connection of `user` (as the admin, directly on
/// the backend); returns how many.
fn kill_connections_of(user: &str) -> usize {
    let mut admin = admin_connect();
    let threads: Vec<u64> = admin
        .exec(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ? AND ID <> CONNECTION_ID()",
            (user,),
        )
        .unwrap();
    for thread in &threads {
        // Gone already is fine.
        let _ = admin.query_drop(format!("KILL {thread}"));
    }
    threads.len()
}

/// Fills Torpor's pool with `n` idle backend connections of the app user.
fn fill_pool(addr: SocketAddr, n: usize) {
    let mut sessions: Vec<mysql::Conn> = (0..n).map(|_| connect(addr)).collect();
    // All at once inside transactions, so each holds its own connection.
    for session in &mut sessions {
        session.query_drop("BEGIN").unwrap();
        session.query_drop("SELECT 1").unwrap();
    }
    for session in &mut sessions {
        session.query_drop("COMMIT").unwrap();
    }
}

#[test]
fn pooled_connections_killed_while_idle_are_never_handed_out() {
    let torpor = Torpor::start_with(backend().addr(), |config| {
        config.max_backend_connections = 8;
        // One worker: its pool holds all eight.
        config.workers = 1;
    });
    fill_pool(torpor.addr(), 8);
    assert!(kill_connections_of(APP_USER) >= 8);
    // New clients: each logs in (borrowing at login) and queries at once.
    for i in 0..16 {
        let mut conn = connect(torpor.addr());
        let value: Option<i64> = conn
            .query_first(format!("SELECT {i}"))
            .unwrap_or_else(|e| panic!("client {i} after the kill: {e}"));
        assert_eq!(value, Some(i));
    }
    // And the client library that showed it as 2027: the mariadb CLI.
    fill_pool(torpor.addr(), 8);
    kill_connections_of(APP_USER);
    let program = require_program("mariadb", "mariadb-client");
    for i in 0..8 {
        let out = std::process::Command::new(&program)
            .arg("--no-defaults")
            .arg("--protocol=TCP")
            .arg(format!("--host={}", torpor.addr().ip()))
            .arg(format!("--port={}", torpor.addr().port()))
            .arg(format!("--user={APP_USER}"))
            .arg(format!("--password={APP_PASSWORD}"))
            .args(["-N", "-e", &format!("SELECT {i}")])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            i.to_string(),
            "client {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
