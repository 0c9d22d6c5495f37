//! The default bound of Torpor's backend connections follows what the
//! backend allows: its `max_connections` less a reserve for Torpor's own
//! connections. More clients than that wait in Torpor's queue for a
//! connection instead of getting the server's 1040.
//!
//! The only test in its binary: it lowers the global `max_connections`
//! of the binary's private MariaDB.

use std::sync::{Arc, Barrier};

use mysql::prelude::Queryable;
use torpor_tests::{admin_connect, backend, connect, Torpor};

#[test]
fn more_clients_than_the_backend_allows_wait_for_a_connection() {
    let mut admin = admin_connect();
    admin.query_drop("SET GLOBAL max_connections = 30").unwrap();
    let torpor = Torpor::start_with(backend().addr(), |config| {
        // No bound of Torpor's own: the backend's decides (30 less 4).
        config.max_backend_connections = 0;
    });
    // A first login reads the backend's settings; the workers apply the
    // bound on their next tick.
    drop(connect(torpor.addr()));
    std::thread::sleep(std::time::Duration::from_millis(1500));

    let clients = 40;
    let start = Arc::new(Barrier::new(clients));
    let addr = torpor.addr();
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                let mut conn = connect(addr);
                start.wait();
                conn.query_first::<i64, _>("SELECT SLEEP(0.3) + 1")
            })
        })
        .collect();
    let mut busiest = 0;
    while !handles.iter().all(|h| h.is_finished()) {
        let open: Option<i64> = admin
            .query_first("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'app'")
            .unwrap();
        busiest = busiest.max(open.unwrap_or(0));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    admin
        .query_drop("SET GLOBAL max_connections = 2000")
        .unwrap();
    for result in &results {
        match result {
            Ok(value) => assert_eq!(*value, Some(1)),
            Err(e) => panic!("a client failed: {e}"),
        }
    }
    assert!(
        busiest <= 26,
        "{busiest} backend connections for 30 allowed"
    );
}
