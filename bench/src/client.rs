//! The client side: `mysql` crate connections to a target, and the
//! suite's own table, created once through the baseline.
//!
//! Every target must reach the same database (that is the point of a side
//! by side comparison), so the table is prepared once.

use std::time::Duration;

use anyhow::Context;
use mysql::prelude::Queryable;
use mysql::{Conn, Opts};
use torpor::scaler::admin_sql::tcp_opts_to_host;

use crate::cli::Credentials;
use crate::targets::Target;

/// The suite's table: `id` 1..=[`ROWS`], a number and two text columns,
/// about 170 bytes of row data each.
pub const TABLE: &str = "torpor_bench_kv";

/// Rows in [`TABLE`]; the large-result workload reads them all.
pub const ROWS: u32 = 10_000;

/// Connection options for `target` (over TLS, verifying the server's
/// certificate, for a target with a CA).
pub fn opts(target: &Target, credentials: &Credentials) -> Opts {
    let tls = target
        .tls_ca
        .as_ref()
        .map(|ca| mysql::SslOpts::default().with_root_cert_path(Some(ca.clone())));
    // Over TCP only: the crate would otherwise ask a loopback server for
    // its Unix socket and reconnect through it, straight past any proxy.
    tcp_opts_to_host(&target.host, target.port)
        .ssl_opts(tls)
        .user(Some(credentials.user.clone()))
        .pass(Some(credentials.password.clone()))
        .db_name(Some(credentials.database.clone()))
        // Known up front, so connecting is the handshake alone, without a
        // `SELECT @@max_allowed_packet` round trip of the crate's own.
        .max_allowed_packet(Some(64 * 1024 * 1024))
        .tcp_nodelay(true)
        .tcp_connect_timeout(Some(Duration::from_secs(10)))
        // A stalled target fails the workload instead of hanging the run.
        .read_timeout(Some(Duration::from_secs(60)))
        .write_timeout(Some(Duration::from_secs(60)))
        .into()
}

/// Opens one connection to `target`.
pub fn connect(target: &Target, credentials: &Credentials) -> anyhow::Result<Conn> {
    Conn::new(opts(target, credentials))
        .with_context(|| format!("connecting to {} ({})", target.name, target.address()))
}

/// Creates and fills [`TABLE`] unless it already holds [`ROWS`] rows.
pub fn prepare_table(target: &Target, credentials: &Credentials) -> anyhow::Result<()> {
    let mut conn = connect(target, credentials)?;
    conn.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS {TABLE} (\
           id INT UNSIGNED NOT NULL PRIMARY KEY, \
           k INT UNSIGNED NOT NULL, \
           c CHAR(60) NOT NULL, \
           pad CHAR(100) NOT NULL\
         ) ENGINE=InnoDB"
    ))
    .with_context(|| format!("creating {TABLE} through {}", target.name))?;
    let count: Option<u64> = conn
        .query_first(format!("SELECT COUNT(*) FROM {TABLE}"))
        .with_context(|| format!("counting the rows of {TABLE}"))?;
    if count == Some(u64::from(ROWS)) {
        return Ok(());
    }
    conn.query_drop(format!("TRUNCATE TABLE {TABLE}"))?;
    // Batches of 1000 rows keep each statement far below any packet limit.
    for start in (1..=ROWS).step_by(1000) {
        let end = (start + 999).min(ROWS);
        let values: Vec<String> = (start..=end)
            .map(|id| {
                format!(
                    "({id},{},'{}','{}')",
                    id.wrapping_mul(2_654_435_761) % 100_000,
                    filler(id, 60),
                    filler(id, 100)
                )
            })
            .collect();
        conn.query_drop(format!(
            "INSERT INTO {TABLE} (id,k,c,pad) VALUES {}",
            values.join(",")
        ))
        .with_context(|| format!("filling {TABLE}"))?;
    }
    Ok(())
}

/// `len` characters of digits and dashes that vary by row, like sysbench's
/// `c` and `pad` columns.
fn filler(id: u32, len: usize) -> String {
    let digits = format!(
        "{:011}-",
        u64::from(id).wrapping_mul(48_271) % 100_000_000_000
    );
    digits.chars().cycle().take(len).collect()
}

/// A cheap, seedable random row id in 1..=[`ROWS`] (xorshift): the
/// workloads need spread, not cryptographic quality.
#[derive(Debug, Clone)]
pub struct RowPicker(u64);

impl RowPicker {
    /// A picker seeded by `seed` (any value).
    pub fn new(seed: u64) -> RowPicker {
        RowPicker(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next row id.
    pub fn next_id(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        // ROWS fits u32 and the remainder is below it.
        (x % u64::from(ROWS)) as u32 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filler_has_the_asked_length() {
        assert_eq!(filler(7, 60).len(), 60);
        assert_eq!(filler(10_000, 100).len(), 100);
        assert_ne!(filler(1, 60), filler(2, 60));
    }

    #[test]
    fn row_ids_stay_in_range_and_spread() {
        let mut picker = RowPicker::new(0);
        let ids: Vec<u32> = (0..10_000).map(|_| picker.next_id()).collect();
        assert!(ids.iter().all(|id| (1..=ROWS).contains(id)));
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert!(distinct.len() > 5_000);
    }
}
