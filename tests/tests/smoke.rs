//! The first thing that must work: a client logs in through Torpor and
//! gets the same answers as from MariaDB directly.

use mysql::prelude::Queryable;
use torpor_tests::{backend, connect, Torpor};

#[test]
fn query_through_torpor_matches_direct() {
    let torpor = Torpor::start();
    let mut direct = connect(backend().addr());
    let mut proxied = connect(torpor.addr());
    let sql = "SELECT 1 + 1, 'x', NULL, @@version, DATABASE()";
    let want: Vec<mysql::Row> = direct.query(sql).unwrap();
    let got: Vec<mysql::Row> = proxied.query(sql).unwrap();
    assert_eq!(format!("{want:?}"), format!("{got:?}"));
}
