//! The first thing that must work: a client logs in through Torpor and
//! gets the same answers as from MariaDB directly.

use mysql::prelude::Queryable;
use torpor_tests::{backend, connect, Torpor};

#[test]
fn query_through_torpor_matches_direct() {
    let torpor = Torpor::start();
    let mut proxied = connect(torpor.addr());
    assert_answers_match_direct(&mut proxied);
}

/// A few values of different types, and the server's own, read through
/// `proxied` are what MariaDB answers directly.
fn assert_answers_match_direct(proxied: &mut mysql::Conn) {
    let mut direct = connect(backend().addr());
    let sql = "SELECT 1 + 1, 'x', NULL, @@version, DATABASE()";
    let want: Vec<mysql::Row> = direct.query(sql).unwrap();
    let got: Vec<mysql::Row> = proxied.query(sql).unwrap();
    assert_eq!(format!("{want:?}"), format!("{got:?}"));
}

/// A backend named by its Unix socket is reached through it: the same
/// answers, prepared statements and large results as over TCP, and
/// MariaDB sees a socket client (its PROCESSLIST host has no port).
#[test]
fn a_backend_named_by_its_unix_socket_is_reached_through_it() {
    let socket = backend().socket().to_path_buf();
    let torpor = Torpor::start_with(backend().addr(), |config| {
        if let Some(backend) = config.backend.as_mut() {
            backend.address = format!("unix:{}", socket.display());
        }
    });
    let mut proxied = connect(torpor.addr());
    assert_answers_match_direct(&mut proxied);

    let hosts: Vec<String> = proxied
        .query(
            "SELECT HOST FROM information_schema.PROCESSLIST \
             WHERE INFO LIKE '%unix-socket-marker%'",
        )
        .unwrap();
    assert_eq!(hosts.len(), 1, "the query itself is listed once: {hosts:?}");
    assert!(
        !hosts[0].contains(':'),
        "a TCP client's host is host:port, a socket client's has no port: {}",
        hosts[0]
    );

    let statement = proxied.prep("SELECT ? + 1, REPEAT('y', ?)").unwrap();
    let (sum, text): (i64, String) = proxied
        .exec_first(&statement, (41, 3 << 20))
        .unwrap()
        .expect("a row");
    assert_eq!((sum, text.len()), (42, 3 << 20));
}
