//! `pool_size`: many clients share a few backend connections while
//! connections come back, and connections all held cost a wait at most
//! `pool_reserve_after_ms`, not an error.
//!
//! The only test in its binary: it counts the backend's connections of
//! the app user, which another test's would swell.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use torpor_tests::{admin_connect, backend, connect, Torpor};

/// The backend's connections logged in as the app user now.
fn app_connections(admin: &mut mysql::Conn) -> i64 {
    admin
        .query_first("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'app'")
        .unwrap()
        .unwrap_or(0)
}

/// `torpor_pool_checkouts_total{result="reserve"}` in `/metrics`, once
/// the workers have published it.
fn reserve_checkouts(admin_api: std::net::SocketAddr) -> Option<u64> {
    torpor_tests::serverless::metrics_text(admin_api)?
        .lines()
        .find(|l| l.starts_with("torpor_pool_checkouts_total{") && l.contains("result=\"reserve\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn clients_share_the_pool_size_and_a_held_pool_opens_one_more() {
    let mut admin = admin_connect();

    // Eight clients, each running statements back to back, on a pool of
    // two (and a reserve time no statement here waits for): the backend
    // sees two connections, not eight.
    let torpor = Torpor::start_with(backend().addr(), |config| {
        config.workers = 1;
        config.pool_size = 2;
        config.pool_reserve_after_ms = 60_000;
    });
    let clients = 8;
    let start = Arc::new(Barrier::new(clients));
    let addr = torpor.addr();
    let handles: Vec<_> = (0..clients)
        .map(|i| {
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                let mut conn = connect(addr);
                start.wait();
                let mut sum = 0;
                for n in 0..40 {
                    let got: Option<i64> =
                        conn.query_first(format!("SELECT SLEEP(0.005) + {i} * 100 + {n}"))?;
                    sum += got.unwrap_or(-1_000_000);
                }
                Ok::<i64, mysql::Error>(sum)
            })
        })
        .collect();
    let mut busiest = 0;
    while !handles.iter().all(|h| h.is_finished()) {
        busiest = busiest.max(app_connections(&mut admin));
        std::thread::sleep(Duration::from_millis(10));
    }
    for (i, handle) in handles.into_iter().enumerate() {
        let sum = handle
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("client {i}: {e}"));
        let i = i as i64;
        assert_eq!(sum, (0..40).map(|n| i * 100 + n).sum::<i64>(), "client {i}");
    }
    assert!(busiest >= 1, "the clients' statements were seen running");
    assert!(
        busiest <= 2,
        "{busiest} backend connections for a pool size of 2"
    );
    drop(torpor);

    // Two clients hold the pool's two connections in open transactions;
    // a third client's statement is not refused after the pool's wait
    // (3 s) but served on a third connection after the reserve time.
    let torpor = Torpor::start_with(backend().addr(), |config| {
        config.workers = 1;
        config.pool_size = 2;
        config.pool_reserve_after_ms = 100;
        config.pool_wait_timeout_ms = 3_000;
        config.admin.listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    });
    let admin_api = torpor.admin_addr().expect("admin API runs");
    let mut holders: Vec<mysql::Conn> = (0..2).map(|_| connect(torpor.addr())).collect();
    for holder in &mut holders {
        holder.query_drop("BEGIN").unwrap();
        holder.query_drop("SELECT 1").unwrap();
    }
    let mut third = connect(torpor.addr());
    let answer: Option<i64> = third
        .query_first("SELECT 2")
        .unwrap_or_else(|e| panic!("the third client was refused: {e}"));
    assert_eq!(answer, Some(2));
    assert_eq!(app_connections(&mut admin), 3, "one over the pool size");
    for holder in &mut holders {
        holder.query_drop("COMMIT").unwrap();
    }
    // Idle over the pool size, the third connection is closed (the
    // worker's tick, once it has been idle a second).
    let deadline = Instant::now() + Duration::from_secs(20);
    while app_connections(&mut admin) > 2 {
        assert!(
            Instant::now() < deadline,
            "{} backend connections 20 s after the transactions ended",
            app_connections(&mut admin)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The metrics tell such a pool from one that fits what holds it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while reserve_checkouts(admin_api) != Some(1) {
        assert!(
            Instant::now() < deadline,
            "reserve checkouts in /metrics: {:?}",
            reserve_checkouts(admin_api)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // And the pool still serves every client.
    for conn in holders.iter_mut().chain(std::iter::once(&mut third)) {
        let one: Option<i64> = conn.query_first("SELECT 1").unwrap();
        assert_eq!(one, Some(1));
    }
}
