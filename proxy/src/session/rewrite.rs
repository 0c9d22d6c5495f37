//! The places where a client's SQL names what belongs to its own
//! connection: `KILL` and `CONNECTION_ID()` (clients know Torpor's
//! connection ids, the backend knows its own thread ids; these rewrites
//! translate), and `ROW_COUNT()` and `FOUND_ROWS()` (what the session's
//! previous statements left, on whichever connection they ran).
//!
//! - `KILL [HARD|SOFT] [CONNECTION|QUERY] <id>` with a Torpor id becomes
//!   the same statement with the backend thread that serves that session.
//! - `CONNECTION_ID()` becomes the session's Torpor id. A select-list
//!   item that holds it and has no alias keeps the column name its text
//!   gives it (`… AS \`CONNECTION_ID() > 0\``; see [`items`]), and the
//!   call keeps the function's type
//!   (unsigned, 10 wide) with a CAST of a zero-padded literal.
//! - `ROW_COUNT()` and `FOUND_ROWS()` become what the session's previous
//!   statements left, when the statement runs on a connection where
//!   another session's statement ran since (the same way, BIGINT 21
//!   wide; see `super::counts`).
//!
//! Neither is rewritten inside a `CREATE` or `ALTER` statement, whose
//! calls the server keeps in a definition and evaluates later.
//!
//! All are found with the lexer, so words inside strings and comments are
//! never touched. Anything not in these exact shapes is left alone.

use torpor_replay::sql::{significant, tokenize, Token, TokenKind};

mod items;

/// A `KILL` statement that names a thread by number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillStatement {
    /// The id as the client wrote it.
    pub id: u64,
    /// Whether it is `KILL QUERY` (else the connection).
    pub query_only: bool,
    /// Byte range of the number in the statement.
    pub id_range: std::ops::Range<usize>,
}

/// Recognises `KILL [HARD|SOFT] [CONNECTION|QUERY] <number>` (and nothing
/// else after it but a `;`). `KILL QUERY ID …` and `KILL USER …` are not
/// thread ids and are left alone.
pub fn parse_kill(sql: &[u8]) -> Option<KillStatement> {
    let tokens = significant(sql);
    let mut it = tokens.iter().peekable();
    if !it.next()?.is_word(sql, "kill") {
        return None;
    }
    if it
        .peek()
        .is_some_and(|t| t.is_word(sql, "hard") || t.is_word(sql, "soft"))
    {
        it.next();
    }
    let mut query_only = false;
    if it.peek().is_some_and(|t| t.is_word(sql, "connection")) {
        it.next();
    } else if it.peek().is_some_and(|t| t.is_word(sql, "query")) {
        it.next();
        query_only = true;
    }
    let number = it.next()?;
    if number.kind != TokenKind::Number {
        return None;
    }
    let id = std::str::from_utf8(number.bytes(sql))
        .ok()?
        .parse::<u64>()
        .ok()?;
    match it.next() {
        None => {}
        Some(t) if t.is_punct(sql, b';') && it.next().is_none() => {}
        Some(_) => return None,
    }
    Some(KillStatement {
        id,
        query_only,
        id_range: number.range.clone(),
    })
}

/// Replaces `range` of `sql` with `with`.
pub fn splice(sql: &[u8], range: std::ops::Range<usize>, with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(sql.len() + with.len());
    out.extend_from_slice(&sql[..range.start]);
    out.extend_from_slice(with);
    out.extend_from_slice(&sql[range.end..]);
    out
}

/// Cheap check before lexing: could `sql` be a KILL statement? True when
/// its first word is `kill`, or when it starts with a comment (then the
/// lexer decides).
pub fn might_be_kill(sql: &[u8]) -> bool {
    let start = sql
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(sql.len());
    let rest = &sql[start..];
    rest.get(..4)
        .is_some_and(|w| w.eq_ignore_ascii_case(b"kill"))
        || rest.starts_with(b"/*")
        || rest.starts_with(b"#")
        || rest.starts_with(b"--")
}

/// Words after which an expression is no longer in the select list, or
/// which end an item: an item followed by one of these has no alias.
const ITEM_END_WORDS: &[&str] = &[
    "from",
    "into",
    "where",
    "group",
    "having",
    "order",
    "limit",
    "union",
    "except",
    "intersect",
    "window",
    "for",
    "lock",
    "procedure",
    "offset",
    "fetch",
    "returning",
];

/// Rewrites every `CONNECTION_ID()` call in `sql` to the literal `id`.
/// Returns `None` when there is none.
pub fn rewrite_connection_id(sql: &[u8], id: u32) -> Option<Vec<u8>> {
    // Ten digits, zero-padded: MariaDB sizes the column from the literal,
    // and CONNECTION_ID()'s column is 10 wide. In KILL the id stays a
    // bare number, so that the KILL rewrite that follows can map it to a
    // backend thread.
    let literal = format!("CAST({id:010} AS UNSIGNED)");
    replace_calls(
        sql,
        "connection_id",
        Reach::Everywhere,
        &literal,
        Some(&id.to_string()),
    )
}

/// Rewrites the `ROW_COUNT()` calls of the first statement of `sql` to
/// the literal `value`: what the session's previous statement left, for a
/// statement that runs on a connection where another session's statement
/// ran since. The statements after the first in a multi-statement text
/// ask for the text's own statements, and are left alone. Returns `None`
/// when there is none.
pub fn rewrite_row_count(sql: &[u8], value: i64) -> Option<Vec<u8>> {
    // Twenty-one characters, zero-padded (a sign among them): the column
    // is then BIGINT, 21 wide, as ROW_COUNT()'s (checked with `mariadb
    // --column-type-info`).
    let literal = format!("CAST({value:021} AS SIGNED)");
    replace_calls(sql, "row_count", Reach::FirstStatement, &literal, None)
}

/// [`rewrite_row_count`] for `FOUND_ROWS()` (typed the same: BIGINT, 21
/// wide). Not in a statement that reads a derived table or a CTE: there
/// MariaDB's `FOUND_ROWS()` reads 0, whatever came before (the derived
/// table's own select sets it first; read off MariaDB 10.11 after
/// selects of 1 and of 4 rows), so the server's answer is already the
/// session's.
pub fn rewrite_found_rows(sql: &[u8], value: u64) -> Option<Vec<u8>> {
    if reads_derived_table(sql) {
        return None;
    }
    let literal = format!("CAST({value:021} AS SIGNED)");
    replace_calls(sql, "found_rows", Reach::FirstStatement, &literal, None)
}

/// Whether the first statement of `sql` starts with `WITH` or selects
/// from a `(SELECT …)` in a `FROM` clause (after `FROM`, a `JOIN` or a
/// `,` of it).
fn reads_derived_table(sql: &[u8]) -> bool {
    let sig = significant(sql);
    if sig.first().is_some_and(|t| t.is_word(sql, "with")) {
        return true;
    }
    // The clause each open parenthesis level is in: `true` in a FROM.
    let mut in_from = vec![false];
    for (at, token) in sig.iter().enumerate() {
        if token.is_punct(sql, b';') {
            break;
        }
        if token.is_punct(sql, b'(') {
            let derived = in_from.last() == Some(&true)
                && sig.get(at + 1).is_some_and(|t| t.is_word(sql, "select"));
            if derived {
                return true;
            }
            in_from.push(false);
        } else if token.is_punct(sql, b')') {
            in_from.pop();
            if in_from.is_empty() {
                in_from.push(false);
            }
        } else if let Some(level) = in_from.last_mut() {
            if token.is_word(sql, "from") {
                *level = true;
            } else if token.is_word(sql, "on")
                || token.is_word(sql, "using")
                || token.is_word(sql, "select")
                || ITEM_END_WORDS.iter().any(|w| token.is_word(sql, w))
            {
                *level = false;
            }
        }
    }
    false
}

/// Which statements of a text a rewrite reaches.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// Every statement.
    Everywhere,
    /// The first statement only (up to the first `;`).
    FirstStatement,
}

/// Replaces every call `name()` in `sql` (within `reach`) with `literal`,
/// or with `in_kill` in a `KILL` statement. A select-list item whose
/// text names its column keeps that name ([`name_columns`]).
///
/// Nothing is replaced from the first `CREATE` or `ALTER` statement on:
/// there a call is part of a definition the server keeps (a view, a
/// routine's or trigger's body, an event, a column's default), evaluated
/// each time it runs, for whoever runs it; a literal would freeze one
/// session's value into it.
fn replace_calls(
    sql: &[u8],
    name: &str,
    reach: Reach,
    literal: &str,
    in_kill: Option<&str>,
) -> Option<Vec<u8>> {
    let tokens = tokenize(sql);
    let sig: Vec<(usize, &Token)> = tokens
        .iter()
        .enumerate()
        .filter(|(_, t)| t.is_significant())
        .collect();
    let in_kill = in_kill.filter(|_| sig.first().is_some_and(|(_, t)| t.is_word(sql, "kill")));
    let mut edits: Vec<(std::ops::Range<usize>, Vec<u8>)> = Vec::new();
    // Where the replaced calls are (significant-token indexes).
    let mut calls = Vec::new();
    let mut i = 0;
    while i < sig.len() {
        let token = sig[i].1;
        let starts_statement = i == 0 || sig[i - 1].1.is_punct(sql, b';');
        if starts_statement && (token.is_word(sql, "create") || token.is_word(sql, "alter")) {
            break;
        }
        if reach == Reach::FirstStatement && token.is_punct(sql, b';') {
            break;
        }
        let (Some((_, open)), Some((_, close))) = (sig.get(i + 1), sig.get(i + 2)) else {
            break;
        };
        let is_call = token.is_word(sql, name)
            && open.is_punct(sql, b'(')
            && close.is_punct(sql, b')')
            // `x.connection_id()` would be some other function.
            && !(i > 0 && sig[i - 1].1.is_punct(sql, b'.'));
        if !is_call {
            i += 1;
            continue;
        }
        let range = token.range.start..close.range.end;
        if let Some(bare) = in_kill {
            edits.push((range, bare.as_bytes().to_vec()));
            i += 3;
            continue;
        }
        calls.push(i);
        edits.push((range, literal.as_bytes().to_vec()));
        i += 3;
    }
    if edits.is_empty() {
        return None;
    }
    if in_kill.is_none() {
        name_columns(sql, &sig, &calls, &mut edits);
    }
    edits.sort_by_key(|(range, _)| (range.start, range.end));
    let mut out = Vec::with_capacity(sql.len() + 32 * edits.len());
    let mut at = 0;
    for (range, replacement) in edits {
        // Edits never overlap (calls are whole tokens, aliases go after
        // an item's last token); should two, the text is left alone.
        out.extend_from_slice(sql.get(at..range.start)?);
        out.extend_from_slice(&replacement);
        at = range.end;
    }
    out.extend_from_slice(sql.get(at..)?);
    Some(out)
}

/// Gives each select-list item that holds one of the replaced `calls`
/// and has no alias of its own the name its text gives it (an alias
/// after the item, in `edits`): MariaDB names such a column after the
/// item's text, which the replacement changed (`CONNECTION_ID() > 0`, not
/// `CAST(… AS UNSIGNED) > 0`). Items at every depth: a derived table's
/// columns are named so too.
fn name_columns(
    sql: &[u8],
    sig: &[(usize, &Token)],
    calls: &[usize],
    edits: &mut Vec<(std::ops::Range<usize>, Vec<u8>)>,
) {
    for item in items::select_items(sql, sig) {
        if item.aliased || !calls.iter().any(|&c| (item.first..=item.last).contains(&c)) {
            continue;
        }
        let (Some((_, first)), Some((_, last))) = (sig.get(item.first), sig.get(item.last)) else {
            continue;
        };
        let text = sql
            .get(first.range.start..last.range.end)
            .unwrap_or_default();
        let mut alias = Vec::with_capacity(text.len() + 6);
        alias.extend_from_slice(b" AS `");
        for &b in text {
            if b == b'`' {
                alias.push(b'`');
            }
            alias.push(b);
        }
        alias.push(b'`');
        edits.push((last.range.end..last.range.end, alias));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(sql: &str) -> Option<String> {
        rewrite_connection_id(sql.as_bytes(), 16777216).map(|v| String::from_utf8(v).unwrap())
    }

    #[test]
    fn kill_forms() {
        let k = parse_kill(b"KILL 16777300").unwrap();
        assert_eq!((k.id, k.query_only), (16777300, false));
        let k = parse_kill(b"kill query 7;").unwrap();
        assert_eq!((k.id, k.query_only), (7, true));
        let k = parse_kill(b"/* x */ KILL HARD CONNECTION 9").unwrap();
        assert_eq!(k.id, 9);
        assert_eq!(parse_kill(b"KILL QUERY ID 5"), None);
        assert_eq!(parse_kill(b"KILL USER app"), None);
        assert_eq!(parse_kill(b"KILL 5; SELECT 1"), None);
        assert_eq!(parse_kill(b"SELECT 'KILL 5'"), None);
        let sql = b"KILL QUERY 42";
        let k = parse_kill(sql).unwrap();
        assert_eq!(splice(sql, k.id_range, b"7"), b"KILL QUERY 7");
    }

    #[test]
    fn connection_id_in_select_list_keeps_its_column_name() {
        assert_eq!(
            rewrite("SELECT CONNECTION_ID()").as_deref(),
            Some("SELECT CAST(0016777216 AS UNSIGNED) AS `CONNECTION_ID()`")
        );
        assert_eq!(
            rewrite("select 1, connection_id( ) from dual").as_deref(),
            Some("select 1, CAST(0016777216 AS UNSIGNED) AS `connection_id( )` from dual")
        );
    }

    #[test]
    fn an_expression_keeps_its_column_name_at_every_depth() {
        assert_eq!(
            rewrite("SELECT CONNECTION_ID() > 0, 1").as_deref(),
            Some("SELECT CAST(0016777216 AS UNSIGNED) > 0 AS `CONNECTION_ID() > 0`, 1")
        );
        assert_eq!(
            rewrite("SELECT CONCAT('`', CONNECTION_ID()) c, CONNECTION_ID()+1 FROM t").as_deref(),
            Some(
                "SELECT CONCAT('`', CAST(0016777216 AS UNSIGNED)) c, \
                 CAST(0016777216 AS UNSIGNED)+1 AS `CONNECTION_ID()+1` FROM t"
            )
        );
        assert_eq!(
            rewrite("SELECT (SELECT CONNECTION_ID() + 1) * 2").as_deref(),
            Some(
                "SELECT (SELECT CAST(0016777216 AS UNSIGNED) + 1 AS `CONNECTION_ID() + 1`) * 2 \
                 AS `(SELECT CONNECTION_ID() + 1) * 2`"
            )
        );
        // A backtick of the item's text is doubled in the name.
        assert_eq!(
            rewrite("SELECT CONNECTION_ID() + `a``b`.c FROM t").as_deref(),
            Some(
                "SELECT CAST(0016777216 AS UNSIGNED) + `a``b`.c \
                 AS `CONNECTION_ID() + ``a````b``.c` FROM t"
            )
        );
    }

    #[test]
    fn connection_id_elsewhere_is_a_plain_value() {
        assert_eq!(
            rewrite("SELECT CONNECTION_ID() AS id").as_deref(),
            Some("SELECT CAST(0016777216 AS UNSIGNED) AS id")
        );
        assert_eq!(
            rewrite("SELECT * FROM t WHERE c IN (1, CONNECTION_ID())").as_deref(),
            Some("SELECT * FROM t WHERE c IN (1, CAST(0016777216 AS UNSIGNED))")
        );
        assert_eq!(
            rewrite("KILL CONNECTION_ID()").as_deref(),
            Some("KILL 16777216")
        );
        assert_eq!(
            rewrite("SET @a = CONNECTION_ID()").as_deref(),
            Some("SET @a = CAST(0016777216 AS UNSIGNED)")
        );
    }

    #[test]
    fn strings_comments_and_other_functions_are_left_alone() {
        assert_eq!(rewrite("SELECT 'CONNECTION_ID()'"), None);
        assert_eq!(rewrite("SELECT 1 /* CONNECTION_ID() */"), None);
        assert_eq!(rewrite("SELECT db.connection_id()"), None);
        assert_eq!(rewrite("SELECT my_connection_id()"), None);
        assert!(might_be_kill(b"  KILL 5"));
        assert!(might_be_kill(b"/* c */ kill 5"));
        assert!(!might_be_kill(b"select 1"));
    }

    fn row_count(sql: &str, value: i64) -> Option<String> {
        rewrite_row_count(sql.as_bytes(), value).map(|v| String::from_utf8(v).unwrap())
    }

    #[test]
    fn row_count_keeps_its_type_and_name_in_the_first_statement_only() {
        assert_eq!(
            row_count("SELECT ROW_COUNT()", 3).as_deref(),
            Some("SELECT CAST(000000000000000000003 AS SIGNED) AS `ROW_COUNT()`")
        );
        assert_eq!(
            row_count("select row_count() as n, 1", -1).as_deref(),
            Some("select CAST(-00000000000000000001 AS SIGNED) as n, 1")
        );
        assert_eq!(
            row_count("INSERT INTO log VALUES (ROW_COUNT())", 12).as_deref(),
            Some("INSERT INTO log VALUES (CAST(000000000000000000012 AS SIGNED))")
        );
        // The second statement asks for the first one's count.
        assert_eq!(
            row_count(
                "SELECT ROW_COUNT(); UPDATE t SET a = 1; SELECT ROW_COUNT()",
                2
            )
            .as_deref(),
            Some(
                "SELECT CAST(000000000000000000002 AS SIGNED) AS `ROW_COUNT()`; \
                 UPDATE t SET a = 1; SELECT ROW_COUNT()"
            )
        );
        assert_eq!(row_count("UPDATE t SET a = 1; SELECT ROW_COUNT()", 2), None);
        assert_eq!(row_count("SELECT 'ROW_COUNT()', x.row_count()", 2), None);
    }

    #[test]
    fn definitions_keep_their_calls() {
        for sql in [
            "CREATE VIEW v AS SELECT CONNECTION_ID() AS c",
            "create or replace procedure p() begin select connection_id(); end",
            "CREATE TABLE t (c BIGINT DEFAULT (CONNECTION_ID()))",
            "ALTER TABLE t ALTER COLUMN c SET DEFAULT (CONNECTION_ID())",
            "CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW SET NEW.c = CONNECTION_ID()",
            "ALTER EVENT e DO INSERT INTO t VALUES (CONNECTION_ID())",
        ] {
            assert_eq!(rewrite(sql), None, "{sql}");
        }
        assert_eq!(
            row_count("CREATE PROCEDURE p() SELECT ROW_COUNT()", 1),
            None
        );
        // A statement before the definition is rewritten; the definition
        // is not.
        assert_eq!(
            rewrite("SET @a = CONNECTION_ID(); CREATE VIEW v AS SELECT CONNECTION_ID()").as_deref(),
            Some("SET @a = CAST(0016777216 AS UNSIGNED); CREATE VIEW v AS SELECT CONNECTION_ID()")
        );
    }

    #[test]
    fn found_rows_is_typed_as_row_count() {
        assert_eq!(
            rewrite_found_rows(b"SELECT FOUND_ROWS()", 4)
                .map(|v| String::from_utf8(v).unwrap())
                .as_deref(),
            Some("SELECT CAST(000000000000000000004 AS SIGNED) AS `FOUND_ROWS()`")
        );
        assert_eq!(rewrite_found_rows(b"SELECT SQL_CALC_FOUND_ROWS 1", 4), None);
    }

    #[test]
    fn found_rows_beside_a_derived_table_is_the_servers() {
        for sql in [
            "SELECT FOUND_ROWS(), d.* FROM (SELECT 1) d",
            "select found_rows() from t join (select 2) e on 1",
            "SELECT FOUND_ROWS() FROM t, (SELECT 2) e",
            "WITH w AS (SELECT 1) SELECT FOUND_ROWS() FROM w",
            "SELECT (SELECT FOUND_ROWS() FROM (SELECT 1) x)",
        ] {
            assert_eq!(rewrite_found_rows(sql.as_bytes(), 4), None, "{sql}");
        }
        for sql in [
            "SELECT FOUND_ROWS() FROM t WHERE a IN (SELECT a FROM u)",
            "SELECT FOUND_ROWS(), (SELECT 5)",
            "SELECT FOUND_ROWS() FROM t JOIN u ON u.a = (SELECT 1)",
            "SELECT FOUND_ROWS(); SELECT * FROM (SELECT 1) d",
        ] {
            assert!(rewrite_found_rows(sql.as_bytes(), 4).is_some(), "{sql}");
        }
    }
}
