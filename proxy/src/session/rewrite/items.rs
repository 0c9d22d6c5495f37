//! The items of a statement's select lists, and which of them name their
//! column themselves: a rewrite inside an item must keep the column name
//! MariaDB gives it, which is the item's own text when it has no alias
//! (`SELECT CONNECTION_ID() > 0` names its column `CONNECTION_ID() > 0`,
//! spaces and comments inside as written, read off MariaDB 10.11).

use torpor_replay::sql::{Token, TokenKind};

use super::ITEM_END_WORDS;

/// One item of a select list: significant tokens `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SelectItem {
    /// Its first significant token.
    pub first: usize,
    /// Its last significant token.
    pub last: usize,
    /// Whether it names its column itself (`AS x`, or `x` after the
    /// expression), or may: see [`has_alias`].
    pub aliased: bool,
}

/// Words between `SELECT` and its first item.
const MODIFIERS: &[&str] = &[
    "all",
    "distinct",
    "distinctrow",
    "high_priority",
    "straight_join",
    "sql_small_result",
    "sql_big_result",
    "sql_buffer_result",
    "sql_cache",
    "sql_no_cache",
    "sql_calc_found_rows",
];

/// One level of parentheses, as the scan walks it.
#[derive(Default)]
struct Level {
    /// Where the item being read starts, while the level is in a select
    /// list.
    item: Option<usize>,
}

/// Every item of every select list in `sig` (the significant tokens of
/// `sql`), at every depth: a subquery's items name the columns of a
/// derived table.
pub(super) fn select_items(sql: &[u8], sig: &[(usize, &Token)]) -> Vec<SelectItem> {
    let mut items = Vec::new();
    let mut levels = vec![Level::default()];
    let close = |level: &mut Level, end: Option<usize>, items: &mut Vec<SelectItem>| {
        if let (Some(first), Some(last)) = (level.item.take(), end) {
            if first <= last {
                let aliased = has_alias(sql, sig.get(first..=last).unwrap_or_default());
                items.push(SelectItem {
                    first,
                    last,
                    aliased,
                });
            }
        }
    };
    for (at, (_, token)) in sig.iter().enumerate() {
        let before = at.checked_sub(1);
        if token.is_punct(sql, b'(') {
            levels.push(Level::default());
            continue;
        }
        if token.is_punct(sql, b')') {
            if let Some(mut level) = levels.pop() {
                close(&mut level, before, &mut items);
            }
            if levels.is_empty() {
                // More `)` than `(`: the server will say so.
                levels.push(Level::default());
            }
            continue;
        }
        let Some(level) = levels.last_mut() else {
            continue;
        };
        if let Some(first) = level.item {
            if token.is_punct(sql, b',') {
                close(level, before, &mut items);
                level.item = Some(at + 1);
                continue;
            }
            if token.is_punct(sql, b';') || ITEM_END_WORDS.iter().any(|w| token.is_word(sql, w)) {
                close(level, before, &mut items);
                continue;
            }
            if first == at && MODIFIERS.iter().any(|w| token.is_word(sql, w)) {
                level.item = Some(at + 1);
                continue;
            }
        }
        if token.is_word(sql, "select") {
            level.item = Some(at + 1);
        }
    }
    let end = sig.len().checked_sub(1);
    for level in &mut levels {
        close(level, end, &mut items);
    }
    items
}

/// Words that cannot end an item as its alias (unquoted, they are part
/// of the expression).
const NEVER_ALIASES: &[&str] = &["end", "null", "true", "false", "unknown"];

/// Words after which the next word is an operand, not an alias.
const OPERATOR_WORDS: &[&str] = &[
    "and", "or", "xor", "not", "is", "like", "rlike", "regexp", "div", "mod", "collate", "between",
    "in", "case", "when", "then", "else", "escape", "binary", "interval", "sounds", "exists",
];

/// Whether an item (its significant tokens) names its column itself: an
/// `AS` outside parentheses, or a last word, string or quoted name after
/// something that ends an operand (`CONNECTION_ID() x`, `… + 1 'y'`).
/// When unsure it says yes: the item is then left as it is (a wrong "no"
/// would put a second alias after the first, a syntax error).
fn has_alias(sql: &[u8], tokens: &[(usize, &Token)]) -> bool {
    let mut depth = 0i32;
    for (_, token) in tokens {
        if token.is_punct(sql, b'(') {
            depth += 1;
        } else if token.is_punct(sql, b')') {
            depth -= 1;
        } else if depth == 0 && token.is_word(sql, "as") {
            return true;
        }
    }
    let [.., (_, previous), (_, last)] = tokens else {
        return false;
    };
    match last.kind {
        TokenKind::Word if NEVER_ALIASES.iter().any(|w| last.is_word(sql, w)) => false,
        TokenKind::Word | TokenKind::String | TokenKind::QuotedIdent => match previous.kind {
            TokenKind::Punct => previous.is_punct(sql, b')'),
            TokenKind::Word => !OPERATOR_WORDS.iter().any(|w| previous.is_word(sql, w)),
            _ => true,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use torpor_replay::sql::tokenize;

    /// Each item's text and whether it is aliased.
    fn items(sql: &str) -> Vec<(String, bool)> {
        let tokens = tokenize(sql.as_bytes());
        let sig: Vec<(usize, &Token)> = tokens
            .iter()
            .enumerate()
            .filter(|(_, t)| t.is_significant())
            .collect();
        let mut found = select_items(sql.as_bytes(), &sig);
        found.sort_by_key(|i| i.first);
        found
            .iter()
            .map(|i| {
                let range = sig[i.first].1.range.start..sig[i.last].1.range.end;
                (sql[range].to_string(), i.aliased)
            })
            .collect()
    }

    fn own(list: &[(&str, bool)]) -> Vec<(String, bool)> {
        list.iter().map(|(s, a)| (s.to_string(), *a)).collect()
    }

    #[test]
    fn items_are_split_at_depth_zero_commas_and_end_at_the_clause() {
        assert_eq!(
            items("SELECT DISTINCT a + 1, CONCAT(b, ',', c) FROM t WHERE x IN (1, 2)"),
            own(&[("a + 1", false), ("CONCAT(b, ',', c)", false)])
        );
        assert_eq!(
            items("select /* c */ x  >  0 ,1; select 2"),
            own(&[("x  >  0", false), ("1", false), ("2", false)])
        );
    }

    #[test]
    fn subqueries_have_items_of_their_own() {
        assert_eq!(
            items("SELECT (SELECT f() + 1) + 2 AS z FROM (SELECT g() h) d"),
            own(&[
                ("(SELECT f() + 1) + 2 AS z", true),
                ("f() + 1", false),
                ("g() h", true)
            ])
        );
    }

    #[test]
    fn aliases_are_told_from_operands() {
        for (sql, aliased) in [
            ("SELECT f() AS x", true),
            ("SELECT f() x", true),
            ("SELECT f() + 1 x", true),
            ("SELECT f() 'y'", true),
            ("SELECT f() `y`", true),
            ("SELECT f() + a b", true),
            ("SELECT f() + a", false),
            ("SELECT f() + t.a", false),
            ("SELECT f() IS NULL", false),
            ("SELECT f() IS NOT TRUE", false),
            ("SELECT CASE WHEN f() THEN 1 END", false),
            ("SELECT f() COLLATE utf8mb4_bin", false),
            ("SELECT CAST(f() AS CHAR)", false),
            ("SELECT -f()", false),
            ("SELECT f() DIV 2", false),
            ("SELECT f() + @v", false),
        ] {
            let found = items(sql);
            assert_eq!(found.len(), 1, "{sql}");
            assert_eq!(found[0].1, aliased, "{sql}");
        }
    }
}
