//! A session's state as a value, and the statements that bring a backend
//! connection from one state to another.
//!
//! The state holds what a client can set and a backend connection keeps:
//! the schema, session system variables, user variables, the next
//! transaction's characteristics and SQL-level prepared statements.
//! Variables are kept as the server reports them (text, from session
//! tracking or `information_schema`), and every state is compared against
//! an explicit [`Baseline`] — the values a fresh connection to that backend
//! really has — never against "unset".

use std::collections::BTreeMap;

/// How a system variable's value is written in `SET`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarKind {
    /// Written bare: integers and doubles.
    Number,
    /// Written as a quoted string: strings, enums, sets, flag sets,
    /// booleans (`'ON'`/`'OFF'`).
    Text,
}

impl VarKind {
    /// The kind for an `information_schema.SYSTEM_VARIABLES.VARIABLE_TYPE`.
    pub fn from_variable_type(variable_type: &str) -> VarKind {
        let t = variable_type.to_ascii_uppercase();
        if t.starts_with("INT") || t.starts_with("BIGINT") || t.starts_with("DOUBLE") {
            VarKind::Number
        } else {
            VarKind::Text
        }
    }
}

/// What a fresh connection to a backend has: each settable session
/// variable's value and kind, and the session tracking a new session gets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Baseline {
    /// Lower-case variable name → (value as text, kind).
    pub variables: BTreeMap<String, (String, VarKind)>,
    /// The `session_track_*` settings a new session starts with (the
    /// server's global values).
    pub tracking: crate::tracking::ClientTracking,
    /// The server's `max_connections` (a global setting, not a session
    /// variable: never replayed), when read.
    pub server_max_connections: Option<usize>,
}

/// Session variables that are never carried from one connection to
/// another: set per statement by the server, reserved to Torpor, needing
/// privileges a client session may not have, or meaningless to copy.
pub const NOT_CARRIED: &[&str] = &[
    "error_count",
    "warning_count",
    "identity",
    "insert_id",
    "last_insert_id",
    "in_transaction",
    "last_gtid",
    "timestamp",
    "rand_seed1",
    "rand_seed2",
    "pseudo_thread_id",
    "pseudo_slave_mode",
    "gtid_seq_no",
    "wsrep_gtid_seq_no",
    "external_user",
    "proxy_user",
    "session_track_system_variables",
    "session_track_schema",
    "session_track_state_change",
    "session_track_transaction_info",
    "session_track_user_variables",
];

/// Variables that must be set before others because setting them resets
/// others (a character set resets its collation; `SET NAMES` order).
const SET_FIRST: &[&str] = &[
    "character_set_client",
    "character_set_connection",
    "character_set_results",
    "character_set_database",
    "character_set_server",
];

/// Character-set variables and the collation that setting each resets.
const COLLATION_OF: &[(&str, &str)] = &[
    ("character_set_connection", "collation_connection"),
    ("character_set_database", "collation_database"),
    ("character_set_server", "collation_server"),
];

/// Whether a variable is carried between connections.
pub fn is_carried(name: &str) -> bool {
    !NOT_CARRIED.contains(&name)
}

/// A session's movable state.
#[derive(Debug, Clone, Default, Eq)]
pub struct SessionState {
    /// The current schema; `None` for none.
    pub schema: Option<String>,
    /// Session variables that differ from the baseline: lower-case name →
    /// value as text.
    pub variables: BTreeMap<String, String>,
    /// User variables: name (without `@`, lower-case) → an SQL expression
    /// that recreates the value exactly (`NULL`, `42`, `_binary 0x…`,
    /// `CONVERT(_binary 0x… USING utf8mb4)`).
    pub user_variables: BTreeMap<String, String>,
    /// The `SET TRANSACTION …` statement(s) that apply to the next
    /// transaction, as the server reports them.
    pub next_transaction: Option<String>,
    /// SQL-level prepared statements: lower-case name → statement text.
    pub sql_statements: BTreeMap<String, String>,
    /// What `LAST_INSERT_ID()` returns: the first id the last INSERT that
    /// generated one produced, or what `LAST_INSERT_ID(expr)` set. A
    /// connection keeps it across statements, so it moves with the
    /// session — and a session never reads another's.
    pub last_insert_id: u64,
}

/// Written by hand, not derived: the proxy compares a session's state
/// with a pooled connection's twice per autocommit statement (when it
/// borrows one and when it gives it back), and the maps are nearly always
/// empty, where the derived comparison sets up two iterators per map.
/// Cheap fields first, maps only when both hold something.
impl PartialEq for SessionState {
    fn eq(&self, other: &Self) -> bool {
        // Destructured, so that a new field cannot be left out.
        let SessionState {
            schema,
            variables,
            user_variables,
            next_transaction,
            sql_statements,
            last_insert_id,
        } = self;
        fn same<K: Ord, V: PartialEq>(a: &BTreeMap<K, V>, b: &BTreeMap<K, V>) -> bool {
            a.len() == b.len() && (a.is_empty() || a == b)
        }
        *last_insert_id == other.last_insert_id
            && *schema == other.schema
            && *next_transaction == other.next_transaction
            && same(variables, &other.variables)
            && same(user_variables, &other.user_variables)
            && same(sql_statements, &other.sql_statements)
    }
}

/// A state that no statement can reach from another.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unreachable {
    /// MariaDB cannot leave a schema once one is selected.
    #[error("a connection with a schema selected cannot go back to none")]
    Schema,
    /// `SET TRANSACTION` for the next transaction cannot be taken back
    /// except by running that transaction.
    #[error("a connection with characteristics set for its next transaction cannot drop them")]
    NextTransaction,
}

/// Quotes text as an SQL string literal that means the same bytes under
/// any sql_mode (no backslash escapes relied on).
pub fn quote_string(text: &str) -> String {
    if text
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'\\' && b != b'\'' || b == b' ')
    {
        format!("'{text}'")
    } else {
        let mut hex = String::with_capacity(text.len() * 2 + 16);
        for b in text.bytes() {
            hex.push_str(&format!("{b:02X}"));
        }
        if hex.is_empty() {
            "''".to_string()
        } else {
            format!("CONVERT(X'{hex}' USING utf8mb4)")
        }
    }
}

/// Quotes an identifier with backticks.
pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

impl SessionState {
    /// The value a variable has in this state, given the baseline.
    pub fn variable<'a>(&'a self, baseline: &'a Baseline, name: &str) -> Option<&'a str> {
        self.variables
            .get(name)
            .map(String::as_str)
            .or_else(|| baseline.variables.get(name).map(|(v, _)| v.as_str()))
    }

    /// Records a variable's new value (as the server reported it); a value
    /// equal to the baseline is dropped, so equal states compare equal.
    pub fn set_variable(&mut self, baseline: &Baseline, name: &str, value: &str) {
        let name = name.to_ascii_lowercase();
        if !is_carried(&name) {
            return;
        }
        if baseline
            .variables
            .get(&name)
            .is_some_and(|(v, _)| v == value)
        {
            self.variables.remove(&name);
        } else {
            self.variables.insert(name, value.to_string());
        }
    }

    /// The statements that turn a connection in state `from` into one in
    /// state `self`. Empty when they are equal.
    pub fn diff_from(
        &self,
        from: &SessionState,
        baseline: &Baseline,
    ) -> Result<Vec<String>, Unreachable> {
        let mut statements = Vec::new();
        if self.schema != from.schema {
            match &self.schema {
                Some(schema) => statements.push(format!("USE {}", quote_ident(schema))),
                None => return Err(Unreachable::Schema),
            }
        }
        let mut assignments: Vec<(bool, String)> = Vec::new();
        let names = self.variables.keys().chain(from.variables.keys());
        let mut seen = std::collections::BTreeSet::new();
        // Setting a character set resets its collation: a collation that
        // is equal on both sides is written anyway when its character set
        // is, after it.
        let charset_changes = |name: &str| {
            COLLATION_OF
                .iter()
                .find(|(_, collation)| *collation == name)
                .is_some_and(|(charset, _)| {
                    self.variable(baseline, charset) != from.variable(baseline, charset)
                })
        };
        // Only a collation the session set: one it never named is its
        // character set's default, which setting the character set gives.
        let collations = COLLATION_OF.iter().map(|(_, collation)| collation);
        let collations = collations.filter(|name| self.variables.contains_key(**name));
        let mut names: Vec<&str> = names.map(String::as_str).collect();
        names.extend(collations.copied());
        for name in names {
            if !seen.insert(name) {
                continue;
            }
            let want = self.variable(baseline, name);
            let have = from.variable(baseline, name);
            if want == have && !charset_changes(name) {
                continue;
            }
            let Some(want) = want else {
                // Not in the baseline and not set here: the variable is
                // unknown to this backend; nothing to restore it to.
                continue;
            };
            let kind = baseline
                .variables
                .get(name)
                .map_or(VarKind::Text, |(_, k)| *k);
            let value = match kind {
                VarKind::Number if !want.is_empty() => want.to_string(),
                _ if want == "NULL" => "NULL".to_string(),
                _ => quote_string(want),
            };
            let first = SET_FIRST.contains(&name);
            assignments.push((!first, format!("{} = {value}", session_var(name))));
        }
        if self.last_insert_id != from.last_insert_id {
            // A session variable MariaDB lets a session set (binary logs
            // replay it the same way), though no tracker reports it.
            assignments.push((
                true,
                format!("@@SESSION.last_insert_id = {}", self.last_insert_id),
            ));
        }
        // Character sets first: setting one resets its collation.
        assignments.sort_by_key(|(later, _)| *later);
        if !assignments.is_empty() {
            let list: Vec<String> = assignments.into_iter().map(|(_, a)| a).collect();
            statements.push(format!("SET {}", list.join(", ")));
        }
        let mut user_assignments = Vec::new();
        for (name, value) in &self.user_variables {
            if from.user_variables.get(name) != Some(value) {
                user_assignments.push(format!("@{} = {value}", quote_ident(name)));
            }
        }
        for name in from.user_variables.keys() {
            if !self.user_variables.contains_key(name) {
                user_assignments.push(format!("@{} = NULL", quote_ident(name)));
            }
        }
        if !user_assignments.is_empty() {
            statements.push(format!("SET {}", user_assignments.join(", ")));
        }
        for (name, sql) in &from.sql_statements {
            if self.sql_statements.get(name) != Some(sql) {
                statements.push(format!("DEALLOCATE PREPARE {}", quote_ident(name)));
            }
        }
        for (name, sql) in &self.sql_statements {
            if from.sql_statements.get(name) != Some(sql) {
                statements.push(format!(
                    "PREPARE {} FROM {}",
                    quote_ident(name),
                    quote_string(sql)
                ));
            }
        }
        if self.next_transaction != from.next_transaction {
            match &self.next_transaction {
                Some(characteristics) => {
                    statements.push(characteristics.trim_end_matches(';').to_string())
                }
                None => return Err(Unreachable::NextTransaction),
            }
        }
        Ok(statements)
    }
}

fn session_var(name: &str) -> String {
    format!("@@SESSION.{}", quote_ident(name))
}

#[cfg(test)]
mod tests;
