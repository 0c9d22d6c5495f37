//! What a statement does to `FOUND_ROWS()`, as far as its text tells.
//!
//! Read off MariaDB 10.11 directly, statement by statement (each after a
//! `SELECT` of 11 rows, then `SELECT FOUND_ROWS()`):
//!
//! - a `SELECT` sets it to the rows it sent;
//! - `INSERT`, `REPLACE` (also `… RETURNING`, `ON DUPLICATE KEY UPDATE`,
//!   `INSERT … SET`), a single-table `UPDATE` or `DELETE`, `SET`,
//!   `BEGIN`, `COMMIT`, `ROLLBACK`, `START TRANSACTION` leave it as it
//!   was, also when they fail, and also when they call a stored function
//!   or fire a trigger that selects (the server keeps a sub-statement's
//!   count to itself);
//! - but any of them that holds a subquery over a table (`INSERT …
//!   SELECT`, `UPDATE … WHERE v IN (SELECT v FROM t)`, `SET @x = (SELECT
//!   …)`), and a multi-table `UPDATE` or `DELETE` (a comma or a `JOIN` in
//!   its tables, `DELETE … USING`, `DELETE t1 FROM …`), sets it to rows of
//!   its own;
//! - `SHOW TABLES`, `DESCRIBE` set it; `SHOW WARNINGS` does not.
//!
//! Torpor takes a statement as one that leaves the count only when its
//! text proves it: no `select` anywhere (in a string or a name too), no
//! comment, no second statement, and the table list of one table. Any
//! doubt makes it [`FoundRows::Unknown`]: then the value is forgotten, and
//! a later `FOUND_ROWS()` reads what its connection says, as before.

/// What a statement leaves in `FOUND_ROWS()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FoundRows {
    /// Torpor cannot tell: the value is forgotten after it.
    #[default]
    Unknown,
    /// The rows of its result set (a `SELECT`).
    Rows,
    /// The value before it, unchanged.
    Kept,
}

/// What the statement `sql` (a text query's or a prepared statement's)
/// does to `FOUND_ROWS()`; `mentions_found_rows` when the text mentions
/// `found_rows` (it may then select `SQL_CALC_FOUND_ROWS`, whose count
/// Torpor does not see: unknown).
///
/// Every text query comes here, so the `SELECT` the hot path sends is
/// told from its first three bytes (a word compare cost ~60 instructions
/// a query, callgrind); only a statement whose first word may leave the
/// count is looked at whole.
pub fn found_rows(sql: &[u8], mentions_found_rows: bool) -> FoundRows {
    if mentions_found_rows {
        return FoundRows::Unknown;
    }
    let rest = match sql.first() {
        Some(b) if b.is_ascii_whitespace() => {
            let start = sql.iter().take_while(|b| b.is_ascii_whitespace()).count();
            sql.get(start..).unwrap_or_default()
        }
        _ => sql,
    };
    // Of the statements that send one result set, those whose first word
    // starts with `sel` are SELECTs, `wit` WITH … SELECT, `(` a SELECT or
    // UNION in parentheses. `| 0x20` lower-cases exactly the ASCII
    // letters, and maps no other byte onto one.
    match rest {
        [b'(', ..] => return FoundRows::Rows,
        [a, b, c, ..]
            if matches!(
                [a | 0x20, b | 0x20, c | 0x20],
                [b's', b'e', b'l'] | [b'w', b'i', b't']
            ) =>
        {
            return FoundRows::Rows
        }
        _ => {}
    }
    if leaves_found_rows(rest) {
        FoundRows::Kept
    } else {
        FoundRows::Unknown
    }
}

/// What one pass over a statement's words found.
#[derive(Default)]
struct Scan {
    /// A word that makes the statement set the count, or hides what it
    /// does: `select`, `join`, `using`, `for` (`SET STATEMENT … FOR`); or a
    /// comment, or a `;`.
    doubtful: bool,
    /// Whether a comma comes before the first `set` that stands between
    /// spaces (an `UPDATE`'s table list ends there).
    comma_before_set: bool,
}

/// One pass over `sql`: what makes it doubtful, and where its `SET` is.
fn scan(sql: &[u8]) -> Scan {
    let mut found = Scan::default();
    let mut seen_set = false;
    let mut at = 0;
    while let Some(&byte) = sql.get(at) {
        if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'$' {
            let len = sql
                .get(at..)
                .unwrap_or_default()
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_' || **b == b'$')
                .count();
            let word = sql.get(at..at + len).unwrap_or_default();
            let is = |name: &[u8]| word.eq_ignore_ascii_case(name);
            if is(b"select") || is(b"join") || is(b"using") || is(b"for") {
                found.doubtful = true;
                return found;
            }
            let spaced = |place: Option<&u8>| place.is_some_and(u8::is_ascii_whitespace);
            if !seen_set
                && is(b"set")
                && spaced(at.checked_sub(1).and_then(|i| sql.get(i)))
                && spaced(sql.get(at + len))
            {
                seen_set = true;
            }
            at += len;
            continue;
        }
        let next = sql.get(at + 1).copied();
        match (byte, next) {
            (b';' | b'#', _) | (b'/', Some(b'*')) | (b'-', Some(b'-')) => {
                found.doubtful = true;
                return found;
            }
            (b',', _) if !seen_set => found.comma_before_set = true,
            _ => {}
        }
        at += 1;
    }
    found
}

/// Whether the statement `sql` (its first byte not a space) leaves
/// `FOUND_ROWS()` as it was: see the module's text.
fn leaves_found_rows(sql: &[u8]) -> bool {
    // Only these first words can: anything else is not looked into.
    let first = sql.iter().take_while(|b| b.is_ascii_alphabetic()).count();
    let first = sql.get(..first).unwrap_or_default();
    let candidates: [&[u8]; 9] = [
        b"insert",
        b"replace",
        b"update",
        b"delete",
        b"set",
        b"begin",
        b"commit",
        b"rollback",
        b"start",
    ];
    if !candidates
        .iter()
        .any(|word| first.eq_ignore_ascii_case(word))
    {
        return false;
    }
    let scan = scan(sql);
    if scan.doubtful {
        return false;
    }
    if first.eq_ignore_ascii_case(b"update") {
        return !scan.comma_before_set;
    }
    if first.eq_ignore_ascii_case(b"delete") {
        // `DELETE [LOW_PRIORITY] [QUICK] [IGNORE] FROM t …`: a table
        // name before `FROM` is the multi-table form.
        let modifiers: [&[u8]; 3] = [b"low_priority", b"quick", b"ignore"];
        let from = sql
            .split(u8::is_ascii_whitespace)
            .filter(|token| !token.is_empty())
            .skip(1)
            .find(|word| !modifiers.iter().any(|m| word.eq_ignore_ascii_case(m)));
        return from.is_some_and(|word| word.eq_ignore_ascii_case(b"from"));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(sql: &str) -> FoundRows {
        found_rows(
            sql.as_bytes(),
            sql.to_ascii_lowercase().contains("found_rows"),
        )
    }

    #[test]
    fn a_select_sets_it_to_its_rows() {
        for sql in [
            "SELECT 1",
            "  select * from t",
            "WITH a AS (SELECT 1) SELECT * FROM a",
            "(SELECT 1) UNION (SELECT 2)",
        ] {
            assert_eq!(of(sql), FoundRows::Rows, "{sql}");
        }
        assert_eq!(
            of("SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 1"),
            FoundRows::Unknown
        );
    }

    #[test]
    fn statements_proven_to_leave_it_keep_it() {
        for sql in [
            "INSERT INTO t (a, b) VALUES (1, 2), (3, 4)",
            "insert into t set a = 1",
            "INSERT INTO t VALUES (1) ON DUPLICATE KEY UPDATE v = 1",
            "INSERT INTO t (v) VALUES (1), (2) RETURNING id",
            "REPLACE INTO t (id, v) VALUES (1, 1)",
            "UPDATE t SET a = 1, b = 2 WHERE id IN (1, 2)",
            "UPDATE t\nSET v = v ORDER BY id LIMIT 2",
            "UPDATE t SET v = f() WHERE id = 1",
            "DELETE FROM t WHERE id IN (1, 2)",
            "DELETE LOW_PRIORITY QUICK IGNORE FROM t WHERE id = 1",
            "DELETE FROM t WHERE v = 2 RETURNING id",
            "SET @a = 1, @b = 2",
            "SET NAMES utf8mb4",
            "BEGIN",
            "COMMIT",
            "ROLLBACK",
            "START TRANSACTION",
        ] {
            assert_eq!(of(sql), FoundRows::Kept, "{sql}");
        }
    }

    #[test]
    fn any_doubt_is_unknown() {
        for sql in [
            // Subqueries and multi-table forms set it.
            "INSERT INTO t (v) SELECT v FROM t WHERE v < 3",
            "UPDATE t SET v = v WHERE v IN (SELECT v FROM t)",
            "UPDATE t, t AS u SET t.v = u.v WHERE t.id = u.id",
            "UPDATE t JOIN u ON t.id = u.id SET t.v = 1",
            "UPDATE `set`, u SET v = 1",
            "UPDATE t PARTITION (p0, p1) SET v = 1",
            "DELETE t FROM t JOIN u ON t.id = u.id",
            "DELETE t, u FROM t, u WHERE t.id = u.id",
            "DELETE FROM t USING t, u WHERE t.id = u.id",
            "SET @x = (SELECT COUNT(*) FROM t)",
            "SET STATEMENT max_statement_time = 1 FOR UPDATE t, u SET v = 1",
            // Text that hides what it does.
            "UPDATE t /* , u */ SET v = 1",
            "UPDATE t SET v = 1; SELECT 1",
            "UPDATE t SET v = 1 -- x",
            "UPDATE t SET v = 1 # x",
            "INSERT INTO t VALUES ('select')",
            "INSERT INTO t VALUES (FOUND_ROWS())",
            // Statements it does not look into.
            "SHOW TABLES",
            "SHOW WARNINGS",
            "DESCRIBE t",
            "CALL p()",
            "DO 1",
            "EXPLAIN SELECT 1",
            "/* c */ SELECT 1",
            "se",
            "",
        ] {
            assert_eq!(of(sql), FoundRows::Unknown, "{sql}");
        }
    }
}
