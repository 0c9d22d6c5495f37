//! What a statement does to session state that the server does not
//! report through session tracking: user variables, SQL-level prepared
//! statements, temporary tables, named locks, table locks, and the
//! functions whose answer depends on the previous statement.
//!
//! Recognition is by tokens ([`crate::sql`]), never inside strings or
//! comments, and errs on the side of "may": a false "may change user
//! variables" costs one extra capture round trip; a miss would lose state.

use crate::sql::{significant, unquote, Token, TokenKind};

/// Facts about one statement (or a multi-statement text).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatementFacts {
    /// It may assign user variables (`SET @x`, `SELECT … INTO @x`, `@x :=`).
    pub writes_user_variables: bool,
    /// `PREPARE name FROM …`: the name.
    pub prepares: Vec<String>,
    /// `DEALLOCATE PREPARE name` / `DROP PREPARE name`: the name.
    pub deallocates: Vec<String>,
    /// `CREATE TEMPORARY TABLE`.
    pub creates_temporary_table: bool,
    /// `DROP TEMPORARY TABLE`.
    pub drops_temporary_table: bool,
    /// `GET_LOCK(…)` is called.
    pub takes_named_lock: bool,
    /// `RELEASE_ALL_LOCKS()` is called.
    pub releases_all_named_locks: bool,
    /// `LOCK TABLES` / `LOCK TABLE`.
    pub locks_tables: bool,
    /// `UNLOCK TABLES`.
    pub unlocks_tables: bool,
    /// `SQL_CALC_FOUND_ROWS`: a following `FOUND_ROWS()` needs this
    /// connection.
    pub calculates_found_rows: bool,
    /// Calls `FOUND_ROWS()`, `ROW_COUNT()` or `LAST_INSERT_ID()` (without
    /// an argument): answered from the previous statement on the same
    /// connection.
    pub asks_previous_statement: bool,
    /// Calls `LAST_INSERT_ID(expr)`, which sets what `LAST_INSERT_ID()`
    /// returns from then on (reported in an OK packet only when the
    /// statement ends with one).
    pub sets_last_insert_id: bool,
    /// Calls a function whose result differs between runs (NOW(), RAND(),
    /// UUID(), …): replaying the statement would not give the same result.
    pub nondeterministic: bool,
    /// Assigns a system variable in a form MariaDB's session tracking
    /// does not report (`SET @@name = …`, without `SESSION`/`LOCAL`;
    /// checked against 10.11): the change is invisible in the OK packet.
    pub sets_untracked_variable: bool,
    /// Runs SQL whose text is not in the statement (`EXECUTE IMMEDIATE
    /// @q`, `EXECUTE IMMEDIATE CONCAT(…)`), or calls a stored procedure
    /// (whose body may change anything, silently): what it did to the
    /// session cannot be known.
    pub runs_unseen_sql: bool,
    /// `EXECUTE name`: SQL-level prepared statements run (their text is
    /// the session's to look up).
    pub executes: Vec<String>,
    /// `COMMIT` or `ROLLBACK` (not `ROLLBACK TO SAVEPOINT`), and what it
    /// says about closing the connection afterwards.
    pub ends_transaction: Option<Completion>,
}

/// What a `COMMIT` or `ROLLBACK` says about the connection afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// `… RELEASE`: MariaDB closes the connection once it has answered.
    Release,
    /// `… NO RELEASE`: the connection stays, whatever `completion_type`
    /// says.
    NoRelease,
    /// Neither: `completion_type` decides (`RELEASE` closes).
    AsConfigured,
}

impl StatementFacts {
    /// Adds what another text (one the statement runs: `EXECUTE
    /// IMMEDIATE '…'`, a prepared statement's) does.
    pub fn merge(&mut self, other: StatementFacts) {
        self.writes_user_variables |= other.writes_user_variables;
        self.prepares.extend(other.prepares);
        self.deallocates.extend(other.deallocates);
        self.creates_temporary_table |= other.creates_temporary_table;
        self.drops_temporary_table |= other.drops_temporary_table;
        self.takes_named_lock |= other.takes_named_lock;
        self.releases_all_named_locks |= other.releases_all_named_locks;
        self.locks_tables |= other.locks_tables;
        self.unlocks_tables |= other.unlocks_tables;
        self.calculates_found_rows |= other.calculates_found_rows;
        self.asks_previous_statement |= other.asks_previous_statement;
        self.sets_last_insert_id |= other.sets_last_insert_id;
        self.nondeterministic |= other.nondeterministic;
        self.sets_untracked_variable |= other.sets_untracked_variable;
        self.runs_unseen_sql |= other.runs_unseen_sql;
        self.executes.extend(other.executes);
        self.ends_transaction = self.ends_transaction.or(other.ends_transaction);
    }
}

/// Functions whose value differs between two runs of the same statement
/// (time, randomness, the connection, locks, sequences). The transaction
/// journal refuses to replay statements that call them.
pub(crate) const CHANGES_BETWEEN_RUNS: &[&str] = &[
    "now",
    "sysdate",
    "current_timestamp",
    "current_time",
    "current_date",
    "curtime",
    "curdate",
    "localtime",
    "localtimestamp",
    "unix_timestamp",
    "utc_timestamp",
    "utc_time",
    "utc_date",
    "rand",
    "uuid",
    "uuid_short",
    "sys_guid",
    "connection_id",
    "sleep",
    "benchmark",
    "get_lock",
    "release_lock",
    "is_free_lock",
    "is_used_lock",
    "nextval",
    "lastval",
    "setval",
];

/// Functions answered from the previous statement on the connection:
/// run again elsewhere, they answer for another statement.
const ANSWERS_FOR_THE_PREVIOUS_STATEMENT: &[&str] = &["found_rows", "row_count", "last_insert_id"];

/// Cheap check: could [`classify`] find anything that matters for state
/// (user variables, SQL PREPARE, temporary tables, locks, functions of the
/// previous statement)? A `false` is certain; a `true` means "lex it".
/// The same pass answers other questions ([`crate::mentions`]): callers
/// that ask several use that.
pub fn may_change_state(sql: &[u8]) -> bool {
    crate::mentions::mentions(sql).may_change_state()
}

/// Looks at a statement text.
pub fn classify(sql: &[u8]) -> StatementFacts {
    let tokens = significant(sql);
    let mut facts = StatementFacts::default();
    for (i, token) in tokens.iter().enumerate() {
        let next = tokens.get(i + 1);
        let prev = i.checked_sub(1).and_then(|j| tokens.get(j));
        match token.kind {
            TokenKind::Variable => {
                let text = token.bytes(sql);
                if text.starts_with(b"@@") {
                    if assigns_untracked(sql, &tokens, i) {
                        facts.sets_untracked_variable = true;
                    }
                    continue;
                }
                // `@x :=`, `SET @x =`, `SET … , @x =`, `INTO @x`.
                // A `, @x` is assigned in a SET list or after INTO, not in
                // a select list (`SELECT @a, @b`), which only reads.
                let before = tokens.get(..i).unwrap_or_default();
                let listed = prev.is_some_and(|p| p.is_punct(sql, b','))
                    && (statement_starts_with(sql, before, &["set"]) || into_before(sql, before));
                let assigned = next.is_some_and(|n| n.is_punct(sql, b':'))
                    || listed
                    || prev.is_some_and(|p| p.is_word(sql, "set"))
                    || prev.is_some_and(|p| p.is_word(sql, "into"));
                if assigned {
                    facts.writes_user_variables = true;
                }
            }
            TokenKind::Word => {
                let is_call = next.is_some_and(|n| n.is_punct(sql, b'('));
                if is_call {
                    let names = CHANGES_BETWEEN_RUNS
                        .iter()
                        .chain(ANSWERS_FOR_THE_PREVIOUS_STATEMENT);
                    for name in names {
                        if token.is_word(sql, name) {
                            facts.nondeterministic = true;
                        }
                    }
                    if token.is_word(sql, "get_lock") {
                        facts.takes_named_lock = true;
                    }
                    if token.is_word(sql, "release_all_locks") {
                        facts.releases_all_named_locks = true;
                    }
                    let empty_args = tokens.get(i + 2).is_some_and(|t| t.is_punct(sql, b')'));
                    if (token.is_word(sql, "found_rows") || token.is_word(sql, "row_count"))
                        || token.is_word(sql, "last_insert_id") && empty_args
                    {
                        facts.asks_previous_statement = true;
                    }
                    if token.is_word(sql, "last_insert_id") && !empty_args {
                        facts.sets_last_insert_id = true;
                    }
                } else if [
                    "now",
                    "current_timestamp",
                    "current_time",
                    "current_date",
                    "localtime",
                    "localtimestamp",
                ]
                .iter()
                .any(|w| token.is_word(sql, w))
                {
                    // Keyword forms without parentheses.
                    facts.nondeterministic = true;
                }
                if token.is_word(sql, "sql_calc_found_rows") {
                    facts.calculates_found_rows = true;
                }
                if token.is_word(sql, "temporary") {
                    if prev.is_some_and(|p| p.is_word(sql, "create")) {
                        facts.creates_temporary_table = true;
                    }
                    if prev.is_some_and(|p| p.is_word(sql, "drop")) {
                        facts.drops_temporary_table = true;
                    }
                }
                if token.is_word(sql, "lock")
                    && next.is_some_and(|n| n.is_word(sql, "tables") || n.is_word(sql, "table"))
                    && starts_statement(sql, &tokens, i)
                {
                    facts.locks_tables = true;
                }
                if token.is_word(sql, "unlock")
                    && next.is_some_and(|n| n.is_word(sql, "tables") || n.is_word(sql, "table"))
                {
                    facts.unlocks_tables = true;
                }
                if (token.is_word(sql, "commit") || token.is_word(sql, "rollback"))
                    && starts_statement(sql, &tokens, i)
                {
                    facts.ends_transaction = completion(sql, tokens.get(i + 1..).unwrap_or(&[]));
                }
                if token.is_word(sql, "call") && starts_statement(sql, &tokens, i) {
                    facts.runs_unseen_sql = true;
                }
                if token.is_word(sql, "execute") && starts_statement(sql, &tokens, i) {
                    match next {
                        Some(n) if n.is_word(sql, "immediate") => {
                            // Only a lone string literal is text we can see.
                            let literal = tokens.get(i + 2).filter(|t| t.kind == TokenKind::String);
                            let ends = tokens.get(i + 3).is_none_or(|t| t.is_punct(sql, b';'));
                            match literal.and_then(|t| unquote(t.bytes(sql))) {
                                Some(text) if ends => facts.merge(classify(&text)),
                                _ => facts.runs_unseen_sql = true,
                            }
                        }
                        Some(name) => facts.executes.push(ident_text(sql, name)),
                        None => {}
                    }
                }
                if token.is_word(sql, "prepare") && starts_statement(sql, &tokens, i) {
                    if let Some(name) = next {
                        facts.prepares.push(ident_text(sql, name));
                    }
                }
                if (token.is_word(sql, "deallocate") || token.is_word(sql, "drop"))
                    && next.is_some_and(|n| n.is_word(sql, "prepare"))
                    && starts_statement(sql, &tokens, i)
                {
                    if let Some(name) = tokens.get(i + 2) {
                        facts.deallocates.push(ident_text(sql, name));
                    }
                }
            }
            _ => {}
        }
    }
    facts
}

/// A constant a user variable is set to, as the statement spells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Literal {
    /// `NULL`.
    Null,
    /// An integer that fits a BIGINT, in its canonical spelling (`-5`).
    Int(String),
    /// A decimal without exponent, in its canonical spelling (`1.50`).
    Decimal(String),
    /// A single-quoted string: its bytes (escapes undone), and the
    /// character set of its introducer (`_latin1'…'`), if any.
    Str {
        /// The string's bytes.
        bytes: Vec<u8>,
        /// The introducer's character set, lower-case.
        introducer: Option<String>,
    },
}

/// The assignments of `SET @a = <constant> [, @b = <constant>]…`, when the
/// statement is exactly that: what the variables hold afterwards can be
/// known from the text alone, with no read on the server. `None` for
/// anything else (an expression, a system variable in the list, a string
/// with a backslash, whose meaning depends on `sql_mode`).
pub fn constant_user_assignments(sql: &[u8]) -> Option<Vec<(String, Literal)>> {
    let tokens = significant(sql);
    let mut at = 0;
    let first = tokens.first()?;
    if !first.is_word(sql, "set") {
        return None;
    }
    at += 1;
    let mut assignments = Vec::new();
    loop {
        let var = tokens.get(at)?;
        let name = var.bytes(sql);
        if var.kind != TokenKind::Variable
            || name.starts_with(b"@@")
            || !name
                .get(1..)
                .unwrap_or_default()
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'$')
            || name.len() < 2
        {
            return None;
        }
        at += 1;
        if tokens.get(at)?.is_punct(sql, b':') {
            at += 1;
        }
        if !tokens.get(at)?.is_punct(sql, b'=') {
            return None;
        }
        at += 1;
        let (literal, used) = constant(sql, tokens.get(at..)?)?;
        at += used;
        let name = String::from_utf8_lossy(name.get(1..)?).to_lowercase();
        assignments.push((name, literal));
        match tokens.get(at) {
            None => return Some(assignments),
            Some(t) if t.is_punct(sql, b',') => at += 1,
            Some(t) if t.is_punct(sql, b';') && at + 1 == tokens.len() => return Some(assignments),
            Some(_) => return None,
        }
    }
}

/// A constant at the front of `tokens`, and how many tokens it took.
fn constant(sql: &[u8], tokens: &[Token]) -> Option<(Literal, usize)> {
    let first = tokens.first()?;
    if first.is_word(sql, "null") {
        return Some((Literal::Null, 1));
    }
    let (negative, number) = match first.is_punct(sql, b'-') {
        true => (true, tokens.get(1)?),
        false => (false, first),
    };
    if number.kind == TokenKind::Number {
        let text = std::str::from_utf8(number.bytes(sql)).ok()?;
        let used = 1 + usize::from(negative);
        let canonical = |digits: &str| {
            !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit())
                && (digits == "0" || !digits.starts_with('0'))
        };
        let sign = if negative { "-" } else { "" };
        return match text.split_once('.') {
            None if canonical(text) && text.len() <= 18 && !(negative && text == "0") => {
                Some((Literal::Int(format!("{sign}{text}")), used))
            }
            Some((whole, fraction))
                if canonical(whole)
                    && !fraction.is_empty()
                    && fraction.bytes().all(|b| b.is_ascii_digit())
                    && whole.len() + fraction.len() <= 30
                    && !negative =>
            {
                Some((Literal::Decimal(text.to_string()), used))
            }
            _ => None,
        };
    }
    if negative {
        return None;
    }
    let (introducer, string, used) = match first.kind {
        TokenKind::Word => {
            let word = String::from_utf8_lossy(first.bytes(sql)).to_lowercase();
            let charset = word.strip_prefix('_')?;
            let charset = match charset {
                "utf8" | "utf8mb3" => "utf8mb3",
                "utf8mb4" | "latin1" | "ascii" | "binary" => charset,
                _ => return None,
            };
            (Some(charset.to_string()), tokens.get(1)?, 2)
        }
        _ => (None, first, 1),
    };
    let raw = string.bytes(sql);
    if string.kind != TokenKind::String || raw.first() != Some(&b'\'') || raw.contains(&b'\\') {
        return None;
    }
    let bytes = unquote(raw)?;
    Some((Literal::Str { bytes, introducer }, used))
}

/// Whether system variable token `i` (`@@…`) is assigned in a form
/// session tracking does not report: `SET @@name =` (or `, @@name =` in a
/// SET), where `name` has no `session.`/`local.` scope (`global.` changes
/// no session).
fn assigns_untracked(sql: &[u8], tokens: &[Token], i: usize) -> bool {
    let Some(token) = tokens.get(i) else {
        return false;
    };
    let text = token.bytes(sql).to_ascii_lowercase();
    let scoped = [&b"@@session."[..], b"@@local.", b"@@global."]
        .iter()
        .any(|scope| text.starts_with(scope));
    if scoped {
        return false;
    }
    let prev = i.checked_sub(1).and_then(|j| tokens.get(j));
    let next = tokens.get(i + 1);
    let assigned = next.is_some_and(|n| n.is_punct(sql, b'=') || n.is_punct(sql, b':'));
    let listed = prev.is_some_and(|p| p.is_word(sql, "set"))
        || prev.is_some_and(|p| p.is_punct(sql, b','))
            && statement_starts_with(sql, tokens.get(..i).unwrap_or_default(), &["set"]);
    assigned && listed
}

/// Whether the statement that `before` ends in has an INTO so far.
fn into_before(sql: &[u8], before: &[Token]) -> bool {
    let start = before
        .iter()
        .rposition(|t| t.is_punct(sql, b';'))
        .map_or(0, |p| p + 1);
    before
        .get(start..)
        .unwrap_or_default()
        .iter()
        .any(|t| t.is_word(sql, "into"))
}

/// Whether token `i` is the first of a statement (text start or after `;`).
fn starts_statement(sql: &[u8], tokens: &[Token], i: usize) -> bool {
    match i.checked_sub(1) {
        None => true,
        Some(prev) => tokens.get(prev).is_some_and(|t| t.is_punct(sql, b';')),
    }
}

/// What the rest of a `COMMIT` / `ROLLBACK` statement (`rest`, the tokens
/// after that word) says: `None` for `ROLLBACK [WORK] TO …`, which ends
/// no transaction.
fn completion(sql: &[u8], rest: &[Token]) -> Option<Completion> {
    let end = rest
        .iter()
        .position(|t| t.is_punct(sql, b';'))
        .unwrap_or(rest.len());
    let words = rest.get(..end).unwrap_or(&[]);
    let after_work = match words.first() {
        Some(first) if first.is_word(sql, "work") => words.get(1..).unwrap_or(&[]),
        _ => words,
    };
    if after_work.first().is_some_and(|t| t.is_word(sql, "to")) {
        return None;
    }
    let release = words.iter().position(|t| t.is_word(sql, "release"));
    Some(match release {
        Some(at) if at > 0 && words.get(at - 1).is_some_and(|t| t.is_word(sql, "no")) => {
            Completion::NoRelease
        }
        Some(_) => Completion::Release,
        None => Completion::AsConfigured,
    })
}

/// Whether the statement that `before` ends in started with one of `words`.
fn statement_starts_with(sql: &[u8], before: &[Token], words: &[&str]) -> bool {
    let start = before
        .iter()
        .rposition(|t| t.is_punct(sql, b';'))
        .map_or(0, |p| p + 1);
    before
        .get(start)
        .is_some_and(|t| words.iter().any(|w| t.is_word(sql, w)))
}

/// An identifier's text, unquoted and lower-cased (prepared statement
/// names are case-insensitive).
fn ident_text(sql: &[u8], token: &Token) -> String {
    let text = String::from_utf8_lossy(token.bytes(sql));
    let text = if token.kind == TokenKind::QuotedIdent {
        text.trim_matches('`').replace("``", "`")
    } else {
        text.into_owned()
    };
    text.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefilter_never_misses_what_classify_finds() {
        for sql in [
            &b"SET @x = 1"[..],
            b"PREPARE s FROM 'x'",
            b"create TEMPORARY table t (a int)",
            b"SELECT get_lock('a', 1)",
            b"UNLOCK TABLES",
            b"SELECT FOUND_ROWS()",
        ] {
            assert!(may_change_state(sql), "{}", String::from_utf8_lossy(sql));
        }
        assert!(!may_change_state(b"SELECT c FROM sbtest1 WHERE id=42"));
    }

    #[test]
    fn user_variables() {
        assert!(classify(b"SET @x = 1").writes_user_variables);
        assert!(classify(b"set @a=1, @b=2").writes_user_variables);
        assert!(classify(b"SELECT @x := 5").writes_user_variables);
        assert!(classify(b"SELECT a INTO @x FROM t").writes_user_variables);
        assert!(classify(b"SELECT a, b INTO @x, @y FROM t").writes_user_variables);
        assert!(!classify(b"SELECT @x").writes_user_variables);
        assert!(!classify(b"SELECT @n, HEX(@s), @d").writes_user_variables);
        assert!(!classify(b"SELECT * FROM t WHERE a = @x").writes_user_variables);
        assert!(!classify(b"SET @@session.sql_mode = ''").writes_user_variables);
        assert!(!classify(b"SELECT '@x := 1'").writes_user_variables);
    }

    #[test]
    fn prepared_statements() {
        let facts = classify(b"PREPARE s1 FROM 'SELECT 1'");
        assert_eq!(facts.prepares, vec!["s1".to_string()]);
        let facts = classify(b"DEALLOCATE PREPARE `S1`; DROP PREPARE s2");
        assert_eq!(facts.deallocates, vec!["s1".to_string(), "s2".to_string()]);
        assert!(classify(b"SELECT prepare FROM t").prepares.is_empty());
    }

    #[test]
    fn pinning_statements() {
        assert!(classify(b"CREATE TEMPORARY TABLE t (a int)").creates_temporary_table);
        assert!(classify(b"drop temporary table if exists t").drops_temporary_table);
        assert!(classify(b"SELECT GET_LOCK('a', 1)").takes_named_lock);
        assert!(classify(b"DO RELEASE_ALL_LOCKS()").releases_all_named_locks);
        assert!(classify(b"LOCK TABLES t READ").locks_tables);
        assert!(classify(b"UNLOCK TABLES").unlocks_tables);
        assert!(!classify(b"SELECT * FROM t FOR UPDATE").locks_tables);
        assert!(!classify(b"SELECT * FROM t LOCK IN SHARE MODE").locks_tables);
    }

    #[test]
    fn constant_assignments_are_known_from_the_text() {
        let got = constant_user_assignments(
            b"SET @n = 42, @s = _utf8mb4'h\xc3\xa9', @d := 1.50, @Nothing = NULL, @m = -5, @e = ''",
        );
        assert_eq!(
            got,
            Some(vec![
                ("n".to_string(), Literal::Int("42".to_string())),
                (
                    "s".to_string(),
                    Literal::Str {
                        bytes: b"h\xc3\xa9".to_vec(),
                        introducer: Some("utf8mb4".to_string())
                    }
                ),
                ("d".to_string(), Literal::Decimal("1.50".to_string())),
                ("nothing".to_string(), Literal::Null),
                ("m".to_string(), Literal::Int("-5".to_string())),
                (
                    "e".to_string(),
                    Literal::Str {
                        bytes: Vec::new(),
                        introducer: None
                    }
                ),
            ])
        );
        for sql in [
            &b"SET @b = CAST('abc' AS SIGNED)"[..],
            b"SET @a = 1 + 1",
            b"SET @a = 007",
            b"SET @a = 1e3",
            b"SET @a = 'x\\n'",
            b"SET @a = \"x\"",
            b"SET @a = 1, sql_mode = ''",
            b"SET @a = 1; SET @b = NOW()",
            b"SELECT @a := 1",
            b"SET @a = 99999999999999999999",
        ] {
            assert_eq!(
                constant_user_assignments(sql),
                None,
                "{}",
                String::from_utf8_lossy(sql)
            );
        }
    }

    #[test]
    fn untracked_forms_and_unseen_sql() {
        assert!(classify(b"SET @@sql_mode = 'ansi'").sets_untracked_variable);
        assert!(classify(b"set sql_mode='', @@time_zone='+01:00'").sets_untracked_variable);
        assert!(!classify(b"SET @@session.sql_mode = 'ansi'").sets_untracked_variable);
        assert!(!classify(b"SET @@LOCAL.sql_mode = 'ansi'").sets_untracked_variable);
        assert!(!classify(b"SET SESSION sql_mode = 'ansi'").sets_untracked_variable);
        assert!(!classify(b"SELECT @@sql_mode").sets_untracked_variable);
        assert!(!classify(b"SET @x = @@sql_mode").sets_untracked_variable);
        let facts = classify(b"EXECUTE IMMEDIATE 'LOCK TABLES t READ'");
        assert!(facts.locks_tables && !facts.runs_unseen_sql);
        let facts = classify(b"execute immediate \"SET @@time_zone = '+01:00'\"");
        assert!(facts.sets_untracked_variable);
        assert!(classify(b"EXECUTE IMMEDIATE @q").runs_unseen_sql);
        assert!(classify(b"EXECUTE IMMEDIATE CONCAT('LOCK', ' TABLES t READ')").runs_unseen_sql);
        assert!(classify(b"CALL p()").runs_unseen_sql);
        assert_eq!(
            classify(b"EXECUTE `S` USING @a").executes,
            vec!["s".to_string()]
        );
        assert!(may_change_state(b"EXECUTE s"));
        assert!(may_change_state(b"call p()"));
    }

    #[test]
    fn previous_statement_and_nondeterminism() {
        assert!(classify(b"SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 1").calculates_found_rows);
        assert!(classify(b"SELECT FOUND_ROWS()").asks_previous_statement);
        assert!(classify(b"SELECT LAST_INSERT_ID()").asks_previous_statement);
        assert!(!classify(b"SELECT LAST_INSERT_ID(5)").asks_previous_statement);
        assert!(classify(b"UPDATE t SET id = LAST_INSERT_ID(id + 1)").sets_last_insert_id);
        assert!(!classify(b"SELECT LAST_INSERT_ID()").sets_last_insert_id);
        assert!(classify(b"INSERT INTO t VALUES (NOW())").nondeterministic);
        assert!(classify(b"UPDATE t SET c = RAND()").nondeterministic);
        assert!(classify(b"INSERT INTO t VALUES (CURRENT_TIMESTAMP)").nondeterministic);
        assert!(!classify(b"UPDATE t SET c = c + 1 WHERE id = 5").nondeterministic);
        assert!(!classify(b"SELECT 'now()'").nondeterministic);
    }

    #[test]
    fn commit_and_rollback_say_whether_the_connection_closes() {
        let of = |sql: &[u8]| classify(sql).ends_transaction;
        assert_eq!(of(b"COMMIT"), Some(Completion::AsConfigured));
        assert_eq!(
            of(b"commit work and no chain"),
            Some(Completion::AsConfigured)
        );
        assert_eq!(of(b"COMMIT RELEASE"), Some(Completion::Release));
        assert_eq!(
            of(b"COMMIT WORK AND CHAIN RELEASE"),
            Some(Completion::Release)
        );
        assert_eq!(of(b"ROLLBACK NO RELEASE"), Some(Completion::NoRelease));
        assert_eq!(of(b"ROLLBACK WORK RELEASE;"), Some(Completion::Release));
        assert_eq!(of(b"ROLLBACK TO SAVEPOINT a"), None);
        assert_eq!(of(b"ROLLBACK WORK TO a"), None);
        assert_eq!(of(b"SELECT 'COMMIT RELEASE'"), None);
        assert_eq!(of(b"DO RELEASE_LOCK('a')"), None);
        assert!(may_change_state(b"COMMIT"));
    }
}
