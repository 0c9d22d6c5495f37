//! The `autoscale` workload's table, [`TABLE`]: `--autoscale-rows` rows
//! of an id and a number, and the random ids the clients read.
//!
//! Its size is a choice: 1000 rows (the default) fit any buffer pool, so
//! the figures are about CPU alone; a few million rows outgrow the
//! smallest size's buffer pool, so the grow's larger pool shows in the
//! hit ratio and the p99 after it (hydration).

use anyhow::Context;
use mysql::prelude::Queryable;
use mysql::Conn;

/// The table's name.
pub const TABLE: &str = "torpor_bench_autoscale";

/// Rows per INSERT while filling it.
const BATCH: u32 = 50_000;

/// Creates [`TABLE`] and fills it with ids `1..=rows`, unless it holds
/// exactly those already (kept from an earlier round or run: filling
/// millions of rows takes a while).
pub fn prepare(conn: &mut Conn, rows: u32) -> anyhow::Result<()> {
    conn.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS {TABLE} (\
           id INT UNSIGNED NOT NULL PRIMARY KEY, \
           v INT UNSIGNED NOT NULL\
         ) ENGINE=InnoDB"
    ))
    .with_context(|| format!("creating {TABLE}"))?;
    // MIN and MAX read the ends of the primary key: instant, where
    // COUNT(*) would scan millions of rows.
    let ends: Option<(Option<u32>, Option<u32>)> = conn
        .query_first(format!("SELECT MIN(id), MAX(id) FROM {TABLE}"))
        .with_context(|| format!("reading the ids of {TABLE}"))?;
    if ends == Some((Some(1), Some(rows))) {
        return Ok(());
    }
    conn.query_drop(format!("TRUNCATE TABLE {TABLE}"))
        .with_context(|| format!("emptying {TABLE}"))?;
    let mut first = 1u32;
    while first <= rows {
        let last = first.saturating_add(BATCH - 1).min(rows);
        conn.query_drop(insert_statement(first, last))
            .with_context(|| format!("filling {TABLE} with rows {first}..={last}"))?;
        first = match last.checked_add(1) {
            Some(next) => next,
            None => break,
        };
    }
    Ok(())
}

/// The table's data and index size as InnoDB states it, MiB (an
/// estimate: InnoDB's statistics).
pub fn size_mib(conn: &mut Conn) -> anyhow::Result<Option<f64>> {
    // Right after a fill the statistics still say 0: InnoDB recounts in
    // the background. ANALYZE samples a few pages, not every row.
    conn.query_drop(format!("ANALYZE TABLE {TABLE}"))
        .with_context(|| format!("ANALYZE TABLE {TABLE}"))?;
    let bytes: Option<Option<u64>> = conn
        .query_first(format!(
            "SELECT data_length + index_length FROM information_schema.tables \
             WHERE table_schema = DATABASE() AND table_name = '{TABLE}'"
        ))
        .with_context(|| format!("reading the size of {TABLE}"))?;
    Ok(bytes.flatten().map(|b| b as f64 / (1024.0 * 1024.0)))
}

/// One multi-row INSERT of ids `first..=last`.
pub fn insert_statement(first: u32, last: u32) -> String {
    let values: Vec<String> = (first..=last)
        .map(|id| {
            format!(
                "({id},{})",
                u64::from(id).wrapping_mul(2_654_435_761) % 100_000
            )
        })
        .collect();
    format!("INSERT INTO {TABLE} (id, v) VALUES {}", values.join(","))
}

/// Seedable random ids in `1..=rows` (xorshift): spread, not quality.
#[derive(Debug, Clone)]
pub struct Ids {
    state: u64,
    rows: u32,
}

impl Ids {
    /// Ids in `1..=rows` (at least one row) from `seed`.
    pub fn new(seed: u64, rows: u32) -> Ids {
        Ids {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            rows: rows.max(1),
        }
    }

    /// The next id.
    pub fn next_id(&mut self) -> u32 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        // The remainder is below `rows`, a u32.
        (x % u64::from(self.rows)) as u32 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_stay_in_range_and_spread() {
        let mut ids = Ids::new(3, 4_000_000);
        let drawn: Vec<u32> = (0..10_000).map(|_| ids.next_id()).collect();
        assert!(drawn.iter().all(|id| (1..=4_000_000).contains(id)));
        let distinct: std::collections::HashSet<_> = drawn.iter().collect();
        assert!(distinct.len() > 9_900);
        let mut one = Ids::new(0, 0);
        assert_eq!(one.next_id(), 1, "no rows reads as one row");
    }

    #[test]
    fn inserts_cover_the_batch_exactly() {
        let statement = insert_statement(9, 11);
        assert!(statement.starts_with(&format!("INSERT INTO {TABLE} (id, v) VALUES (9,")));
        assert_eq!(statement.matches("),(").count(), 2, "{statement}");
        assert!(statement.contains("(11,"));
        assert!(!statement.contains("(12,"));
    }
}
