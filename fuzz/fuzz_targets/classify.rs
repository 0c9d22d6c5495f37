//! The statement classifier: what a statement does to session state that
//! session tracking does not report.
//!
//! Checks: it never panics; `may_change_state`'s quick "no" is certain
//! (classify finds nothing that matters for state); the constants of
//! `SET @a = <constant>, …` read back the same from a statement written
//! from them.
//!
//! Input: statement text, any bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use torpor_replay::classify::{
    classify, constant_user_assignments, may_change_state, Literal, StatementFacts,
};

fuzz_target!(|sql: &[u8]| {
    let facts = classify(sql);
    if !may_change_state(sql) {
        // Calls of NOW(), RAND() and the like are the one fact the quick
        // check does not look for: they change no state.
        let state_facts = StatementFacts {
            nondeterministic: false,
            ..facts.clone()
        };
        assert_eq!(
            state_facts,
            StatementFacts::default(),
            "may_change_state said no to {:?}",
            String::from_utf8_lossy(sql)
        );
    }

    if let Some(assignments) = constant_user_assignments(sql) {
        assert!(!assignments.is_empty());
        assert!(facts.writes_user_variables);
        let mut text = b"SET ".to_vec();
        for (i, (name, literal)) in assignments.iter().enumerate() {
            if i > 0 {
                text.extend_from_slice(b", ");
            }
            text.push(b'@');
            text.extend_from_slice(name.as_bytes());
            text.extend_from_slice(b" = ");
            spell(literal, &mut text);
        }
        assert_eq!(
            constant_user_assignments(&text).as_ref(),
            Some(&assignments),
            "{}",
            String::from_utf8_lossy(&text)
        );
    }
});

/// Appends a literal as SQL text.
fn spell(literal: &Literal, text: &mut Vec<u8>) {
    match literal {
        Literal::Null => text.extend_from_slice(b"NULL"),
        Literal::Int(digits) | Literal::Decimal(digits) => {
            text.extend_from_slice(digits.as_bytes())
        }
        Literal::Str { bytes, introducer } => {
            if let Some(charset) = introducer {
                text.push(b'_');
                text.extend_from_slice(charset.as_bytes());
            }
            text.push(b'\'');
            for &b in bytes {
                if b == b'\'' {
                    text.push(b'\'');
                }
                text.push(b);
            }
            text.push(b'\'');
        }
    }
}
