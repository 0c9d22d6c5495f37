//! Which statements change accounts, so that the accounts are read again
//! as soon as one passes through Torpor: `CREATE`/`ALTER`/`DROP`/`RENAME
//! USER`, `SET PASSWORD`, `GRANT`, `REVOKE`, `FLUSH PRIVILEGES`.
//!
//! Checked for every statement, so the first word decides cheaply (no
//! tokenizing, no allocation) and only a statement that starts with one
//! of the verbs is tokenized (by `replay::sql`, which every SQL recognizer
//! uses). A statement that starts with a comment is tokenized too.

use torpor_replay::sql::significant;

/// The verbs account statements start with.
const VERBS: [&[u8]; 8] = [
    b"create", b"alter", b"drop", b"rename", b"set", b"grant", b"revoke", b"flush",
];

/// Whether `sql` may change accounts (a `true` asks for a read of the
/// accounts after it ran; a false `true` costs one read).
pub fn changes_accounts(sql: &[u8]) -> bool {
    if !may_start_with_a_verb(sql) {
        return false;
    }
    let tokens = significant(sql);
    let word = |i: usize, w: &str| tokens.get(i).is_some_and(|t| t.is_word(sql, w));
    // `CREATE OR REPLACE USER`, `CREATE USER IF NOT EXISTS`.
    let create_user = word(0, "create")
        && (word(1, "user") || (word(1, "or") && word(2, "replace") && word(3, "user")));
    create_user
        || ((word(0, "alter") || word(0, "drop") || word(0, "rename")) && word(1, "user"))
        || (word(0, "set") && word(1, "password"))
        || word(0, "grant")
        || word(0, "revoke")
        || (word(0, "flush") && word(1, "privileges"))
}

/// The cheap check: the first word is one of [`VERBS`], or the text
/// starts with something that is not a word (a comment, a parenthesis).
fn may_start_with_a_verb(sql: &[u8]) -> bool {
    let start = sql
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(sql.len());
    let rest = &sql[start..];
    let end = rest
        .iter()
        .position(|b| !b.is_ascii_alphabetic())
        .unwrap_or(rest.len());
    if end == 0 {
        return !rest.is_empty();
    }
    let first = &rest[..end];
    VERBS.iter().any(|verb| first.eq_ignore_ascii_case(verb))
}

#[cfg(test)]
mod tests {
    use super::changes_accounts;

    #[test]
    fn account_statements_are_recognized() {
        for sql in [
            "CREATE USER bob IDENTIFIED BY 'x'",
            "create or replace user 'bob'@'%' identified by 'x'",
            "/* hi */ ALTER USER bob IDENTIFIED BY 'y'",
            "DROP USER IF EXISTS bob",
            "RENAME USER bob TO robert",
            "SET PASSWORD FOR bob = PASSWORD('z')",
            "GRANT SELECT ON *.* TO bob IDENTIFIED BY 'x'",
            "REVOKE ALL ON *.* FROM bob",
            "FLUSH PRIVILEGES",
        ] {
            assert!(changes_accounts(sql.as_bytes()), "{sql}");
        }
    }

    #[test]
    fn other_statements_are_not() {
        for sql in [
            "SELECT * FROM users",
            "SELECT 'CREATE USER x'",
            "INSERT INTO grants VALUES (1)",
            "UPDATE users SET password = 'x'",
            "SELECT 1",
            "SET @a = 1",
            "CREATE TABLE users (password TEXT)",
        ] {
            assert!(!changes_accounts(sql.as_bytes()), "{sql}");
        }
    }
}
