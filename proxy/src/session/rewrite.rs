//! The two places where a client's SQL names a connection id: `KILL` and
//! `CONNECTION_ID()`. Clients know Torpor's connection ids, the backend
//! knows its own thread ids; these rewrites translate.
//!
//! - `KILL [HARD|SOFT] [CONNECTION|QUERY] <id>` with a Torpor id becomes
//!   the same statement with the backend thread that serves that session.
//! - `CONNECTION_ID()` becomes the session's Torpor id. In a select list,
//!   where the expression's text names the result column, it keeps that
//!   name (`… AS \`CONNECTION_ID()\``), and it keeps the function's type
//!   (unsigned, 10 wide) with a CAST of a zero-padded literal.
//!
//! Both are found with the lexer, so words inside strings and comments are
//! never touched. Anything not in these exact shapes is left alone.

use torpor_replay::sql::{significant, tokenize, Token, TokenKind};

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
    let tokens = tokenize(sql);
    let sig: Vec<(usize, &Token)> = tokens
        .iter()
        .enumerate()
        .filter(|(_, t)| t.is_significant())
        .collect();
    // In KILL the id must stay a bare number, so that the KILL rewrite
    // that follows can map it to a backend thread.
    let bare = sig.first().is_some_and(|(_, t)| t.is_word(sql, "kill"));
    let mut edits: Vec<(std::ops::Range<usize>, Vec<u8>)> = Vec::new();
    let mut i = 0;
    while i + 2 < sig.len() {
        let (name, open, close) = (sig[i].1, sig[i + 1].1, sig[i + 2].1);
        let is_call = name.is_word(sql, "connection_id")
            && open.is_punct(sql, b'(')
            && close.is_punct(sql, b')')
            // `x.connection_id()` would be some other function.
            && !(i > 0 && sig[i - 1].1.is_punct(sql, b'.'));
        if !is_call {
            i += 1;
            continue;
        }
        let range = name.range.start..close.range.end;
        let before = i.checked_sub(1).map(|j| sig[j].1);
        let after = sig.get(i + 3).map(|(_, t)| *t);
        let starts_item = before.is_some_and(|t| t.is_word(sql, "select") || t.is_punct(sql, b','));
        let ends_item = after.is_none_or(|t| {
            t.is_punct(sql, b',')
                || t.is_punct(sql, b';')
                || ITEM_END_WORDS.iter().any(|w| t.is_word(sql, w))
        });
        let in_select_list = starts_item && ends_item && inside_select(sql, &sig[..i]);
        if bare {
            edits.push((range, id.to_string().into_bytes()));
            i += 3;
            continue;
        }
        // Ten digits, zero-padded: MariaDB sizes the column from the
        // literal, and CONNECTION_ID()'s column is 10 wide.
        let mut replacement = format!("CAST({id:010} AS UNSIGNED)").into_bytes();
        if in_select_list {
            // The column keeps the name the client's text gave it.
            let original = &sql[range.clone()];
            replacement.extend_from_slice(b" AS `");
            for &b in original {
                if b == b'`' {
                    replacement.push(b'`');
                }
                replacement.push(b);
            }
            replacement.push(b'`');
        }
        edits.push((range, replacement));
        i += 3;
    }
    if edits.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(sql.len() + 32 * edits.len());
    let mut at = 0;
    for (range, replacement) in edits {
        out.extend_from_slice(&sql[at..range.start]);
        out.extend_from_slice(&replacement);
        at = range.end;
    }
    out.extend_from_slice(&sql[at..]);
    Some(out)
}

/// Whether the nearest unclosed clause before a position is a SELECT list
/// at the same parenthesis depth (so `WHERE a IN (1, CONNECTION_ID())`
/// does not count).
fn inside_select(sql: &[u8], before: &[(usize, &Token)]) -> bool {
    let mut depth = 0i32;
    for (_, token) in before.iter().rev() {
        if token.is_punct(sql, b')') {
            depth += 1;
        } else if token.is_punct(sql, b'(') {
            if depth == 0 {
                return false;
            }
            depth -= 1;
        } else if depth == 0 {
            if token.is_word(sql, "select") {
                return true;
            }
            if ITEM_END_WORDS.iter().any(|w| token.is_word(sql, w)) || token.is_word(sql, "set") {
                return false;
            }
        }
    }
    false
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
}
