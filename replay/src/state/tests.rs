//! Table tests and the property apply(diff(a, b), a) == b, with a small
//! interpreter for the statements `diff_from` writes.

use super::*;
use proptest::prelude::*;

fn baseline() -> Baseline {
    let mut b = Baseline::default();
    for (name, value, kind) in [
        ("sql_mode", "STRICT_TRANS_TABLES", VarKind::Text),
        ("time_zone", "SYSTEM", VarKind::Text),
        ("autocommit", "ON", VarKind::Text),
        ("wait_timeout", "28800", VarKind::Number),
        ("character_set_client", "utf8mb4", VarKind::Text),
        ("collation_connection", "utf8mb4_general_ci", VarKind::Text),
        ("character_set_results", "utf8mb4", VarKind::Text),
    ] {
        b.variables.insert(name.into(), (value.into(), kind));
    }
    b
}

#[test]
fn equal_states_need_nothing() {
    let b = baseline();
    let mut a = SessionState::default();
    a.set_variable(&b, "SQL_MODE", "STRICT_TRANS_TABLES");
    assert!(
        a.variables.is_empty(),
        "a value equal to the baseline is not a difference"
    );
    assert_eq!(
        a.diff_from(&SessionState::default(), &b).unwrap(),
        Vec::<String>::new()
    );
}

#[test]
fn diff_writes_typed_assignments_charsets_first() {
    let b = baseline();
    let mut to = SessionState::default();
    to.set_variable(&b, "collation_connection", "latin1_swedish_ci");
    to.set_variable(&b, "character_set_client", "latin1");
    to.set_variable(&b, "wait_timeout", "100");
    to.set_variable(&b, "character_set_results", "NULL");
    to.set_variable(&b, "timestamp", "12345");
    to.schema = Some("shop".into());
    to.user_variables.insert("x".into(), "42".into());
    let statements = to.diff_from(&SessionState::default(), &b).unwrap();
    assert_eq!(
        statements,
        vec![
            "USE `shop`".to_string(),
            "SET @@SESSION.`character_set_client` = 'latin1', @@SESSION.`character_set_results` = NULL, \
             @@SESSION.`collation_connection` = 'latin1_swedish_ci', @@SESSION.`wait_timeout` = 100"
                .to_string(),
            "SET @`x` = 42".to_string(),
        ]
    );
}

#[test]
fn going_back_to_the_baseline_restores_it() {
    let b = baseline();
    let mut from = SessionState::default();
    from.set_variable(&b, "time_zone", "+02:00");
    from.user_variables.insert("gone".into(), "1".into());
    from.sql_statements.insert("s".into(), "SELECT 1".into());
    let statements = SessionState::default().diff_from(&from, &b).unwrap();
    assert_eq!(
        statements,
        vec![
            "SET @@SESSION.`time_zone` = 'SYSTEM'".to_string(),
            "SET @`gone` = NULL".to_string(),
            "DEALLOCATE PREPARE `s`".to_string(),
        ]
    );
}

#[test]
fn unreachable_states_are_refused() {
    let b = baseline();
    let with_schema = SessionState {
        schema: Some("db".into()),
        ..SessionState::default()
    };
    assert_eq!(
        SessionState::default().diff_from(&with_schema, &b),
        Err(Unreachable::Schema)
    );
    let with_next = SessionState {
        next_transaction: Some("SET TRANSACTION READ ONLY;".into()),
        ..SessionState::default()
    };
    assert_eq!(
        SessionState::default().diff_from(&with_next, &b),
        Err(Unreachable::NextTransaction)
    );
    assert_eq!(
        with_next.diff_from(&SessionState::default(), &b).unwrap(),
        vec!["SET TRANSACTION READ ONLY".to_string()]
    );
}

#[test]
fn quoting_never_relies_on_backslashes() {
    assert_eq!(quote_string("ANSI,NO_ZERO_DATE"), "'ANSI,NO_ZERO_DATE'");
    assert_eq!(quote_string("it's"), "CONVERT(X'69742773' USING utf8mb4)");
    assert_eq!(quote_string(""), "''");
    assert_eq!(quote_ident("a`b"), "`a``b`");
}

/// Applies statements written by `diff_from` to a state: the statements'
/// meaning, as MariaDB would give it, for exactly the forms diff writes.
fn apply(state: &mut SessionState, baseline: &Baseline, statements: &[String]) {
    for statement in statements {
        if let Some(name) = statement.strip_prefix("USE ") {
            state.schema = Some(unident(name));
        } else if let Some(name) = statement.strip_prefix("DEALLOCATE PREPARE ") {
            state.sql_statements.remove(&unident(name));
        } else if let Some(rest) = statement.strip_prefix("PREPARE ") {
            let (name, sql) = rest.split_once(" FROM ").expect("PREPARE x FROM y");
            state.sql_statements.insert(unident(name), unquote(sql));
        } else if statement.starts_with("SET TRANSACTION") {
            state.next_transaction = Some(format!("{statement};"));
        } else if let Some(list) = statement.strip_prefix("SET ") {
            for assignment in split_assignments(list) {
                let (target, value) = assignment.split_once(" = ").expect("x = y");
                if target == "@@SESSION.last_insert_id" {
                    state.last_insert_id = value.parse().expect("a number");
                } else if let Some(var) = target.strip_prefix("@@SESSION.") {
                    let value = if value == "NULL" {
                        "NULL".to_string()
                    } else {
                        unquote(value)
                    };
                    state.set_variable(baseline, &unident(var), &value);
                } else if let Some(user) = target.strip_prefix('@') {
                    let name = unident(user);
                    if value == "NULL" {
                        state.user_variables.remove(&name);
                    } else {
                        state.user_variables.insert(name, value.to_string());
                    }
                }
            }
        } else {
            panic!("diff wrote a statement the interpreter does not know: {statement}");
        }
    }
}

fn unident(quoted: &str) -> String {
    quoted.trim_matches('`').replace("``", "`")
}

fn unquote(literal: &str) -> String {
    if let Some(hex) = literal
        .strip_prefix("CONVERT(X'")
        .and_then(|s| s.strip_suffix("' USING utf8mb4)"))
    {
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        return String::from_utf8(bytes).unwrap();
    }
    literal.trim_matches('\'').to_string()
}

/// Splits `@a = 1, @b = 'x'` into assignments (the values diff writes
/// never hold ", @").
fn split_assignments(list: &str) -> Vec<String> {
    list.split(", @")
        .enumerate()
        .map(|(i, part)| {
            if i == 0 {
                part.to_string()
            } else {
                format!("@{part}")
            }
        })
        .collect()
}

fn arb_state() -> impl Strategy<Value = SessionState> {
    let var = prop_oneof![
        Just("sql_mode"),
        Just("time_zone"),
        Just("autocommit"),
        Just("wait_timeout"),
        Just("character_set_client"),
        Just("collation_connection"),
    ];
    let value = prop_oneof![
        Just("ANSI"),
        Just("+01:00"),
        Just("OFF"),
        Just("100"),
        Just("latin1"),
        Just("it's"),
        Just("STRICT_TRANS_TABLES")
    ];
    (
        proptest::option::of(prop_oneof![Just("a"), Just("b`c")]),
        proptest::collection::btree_map(var, value, 0..4),
        proptest::collection::btree_map(
            prop_oneof![Just("x"), Just("y z")],
            prop_oneof![Just("1"), Just("_binary 0x00")],
            0..2,
        ),
        proptest::collection::btree_map(
            prop_oneof![Just("s1"), Just("s2")],
            prop_oneof![Just("SELECT 1"), Just("SELECT 'q'")],
            0..2,
        ),
        prop_oneof![Just(0u64), Just(1), Just(u64::MAX)],
    )
        .prop_map(|(schema, vars, users, statements, last_insert_id)| {
            let b = baseline();
            let mut state = SessionState {
                schema: schema.map(String::from),
                last_insert_id,
                ..SessionState::default()
            };
            for (name, value) in vars {
                state.set_variable(&b, name, value);
            }
            state.user_variables = users
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            state.sql_statements = statements
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            state
        })
}

proptest! {
    #[test]
    fn apply_diff_reaches_the_target(from in arb_state(), to in arb_state()) {
        let b = baseline();
        match to.diff_from(&from, &b) {
            Ok(statements) => {
                let mut state = from.clone();
                apply(&mut state, &b, &statements);
                prop_assert_eq!(state, to);
            }
            Err(Unreachable::Schema) => prop_assert!(from.schema.is_some() && to.schema.is_none()),
            Err(Unreachable::NextTransaction) => prop_assert!(false, "no next-transaction state generated"),
        }
    }
}

#[test]
fn last_insert_id_moves_with_the_session_and_is_reset_for_another() {
    let b = baseline();
    let inserted = SessionState {
        last_insert_id: 41,
        ..SessionState::default()
    };
    assert_eq!(
        inserted.diff_from(&SessionState::default(), &b).unwrap(),
        ["SET @@SESSION.last_insert_id = 41"]
    );
    // A fresh session on a connection another session inserted through
    // reads 0, as on a new connection.
    assert_eq!(
        SessionState::default().diff_from(&inserted, &b).unwrap(),
        ["SET @@SESSION.last_insert_id = 0"]
    );
}

#[test]
fn a_collation_is_written_again_after_the_character_set_that_resets_it() {
    let mut b = baseline();
    b.variables.insert(
        "character_set_connection".into(),
        ("utf8mb4".into(), VarKind::Text),
    );
    let mut from = SessionState::default();
    from.set_variable(&b, "collation_connection", "latin1_german1_ci");
    let mut to = from.clone();
    to.set_variable(&b, "character_set_connection", "latin1");
    let statements = to.diff_from(&from, &b).unwrap();
    assert_eq!(
        statements,
        vec!["SET @@SESSION.`character_set_connection` = 'latin1', \
             @@SESSION.`collation_connection` = 'latin1_german1_ci'"
            .to_string()]
    );
}

#[test]
fn a_collation_the_session_never_named_is_left_to_its_character_set() {
    let mut b = baseline();
    b.variables.insert(
        "character_set_connection".into(),
        ("utf8mb4".into(), VarKind::Text),
    );
    let mut to = SessionState::default();
    to.set_variable(&b, "character_set_connection", "latin1");
    let statements = to.diff_from(&SessionState::default(), &b).unwrap();
    assert_eq!(
        statements,
        vec!["SET @@SESSION.`character_set_connection` = 'latin1'".to_string()]
    );
}
