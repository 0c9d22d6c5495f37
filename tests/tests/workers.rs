//! Client connections are spread evenly over the workers: the kernel
//! picks a worker's listener by a hash of the client's address and port,
//! and a worker that gets more than its share hands new connections to
//! the least busy one (`torpor::worker::balance`). Every connection,
//! handed over or not, works.

use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use torpor::worker::balance::SLACK;
use torpor_tests::{backend, connect, Torpor};

#[test]
fn two_hundred_connections_are_spread_evenly_over_two_workers() {
    let torpor = Torpor::start_with(backend().addr(), |config| config.workers = 2);
    let mut held: Vec<mysql::Conn> = (0..200).map(|_| connect(torpor.addr())).collect();
    // Each one answers on its own connection.
    for conn in &mut held {
        let one: Option<i64> = conn.query_first("SELECT 1").unwrap();
        assert_eq!(one, Some(1));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let per_worker = loop {
        let per_worker = torpor.sessions_per_worker();
        if per_worker.iter().sum::<usize>() == held.len() || Instant::now() > deadline {
            break per_worker;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(
        per_worker.iter().sum::<usize>(),
        held.len(),
        "{per_worker:?}"
    );
    let (most, least) = (
        per_worker.iter().max().copied().unwrap_or(0),
        per_worker.iter().min().copied().unwrap_or(0),
    );
    assert!(
        most - least <= SLACK + 1,
        "sessions per worker {per_worker:?}: uneven"
    );
    held.clear();
    let deadline = Instant::now() + Duration::from_secs(10);
    while torpor.sessions_per_worker().iter().sum::<usize>() > 0 {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            torpor.sessions_per_worker()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
