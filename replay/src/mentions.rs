//! One pass over a statement's text for the words that make it worth a
//! closer look: every query goes through here, and almost none is.
//!
//! Each question Torpor asks of every statement ("could it change session
//! state?", "could it call `CONNECTION_ID()`?") used to be its own scan,
//! one SIMD search per word. One Aho-Corasick automaton (the
//! `aho-corasick` crate, ASCII case-insensitive) answers them all in a
//! single pass. A mention is only a hint: the words may sit inside a
//! string or a comment, and the lexer ([`crate::sql`]) decides. A missing
//! mention is certain.

use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};

/// What a statement's text mentions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mentions(u8);

impl Mentions {
    /// Something [`crate::classify::classify`] could find: a user variable
    /// (`@`), `PREPARE`/`EXECUTE`, `TEMPORARY`, a lock, `CALL`, a function
    /// of the previous statement, `COMMIT`/`ROLLBACK`. `false` is certain;
    /// `true` means "lex it".
    pub fn may_change_state(self) -> bool {
        self.0 & STATE != 0
    }

    /// `connection_id` (any case): the text may call `CONNECTION_ID()`.
    pub fn connection_id(self) -> bool {
        self.0 & CONNECTION_ID != 0
    }
}

const STATE: u8 = 1;
const CONNECTION_ID: u8 = 2;

/// The words, and what each one's presence means.
const WORDS: &[(&str, u8)] = &[
    ("@", STATE),
    ("prepare", STATE),
    ("temporary", STATE),
    ("lock", STATE),
    ("found_rows", STATE),
    ("row_count", STATE),
    ("last_insert_id", STATE),
    ("execute", STATE),
    ("call", STATE),
    ("commit", STATE),
    ("rollback", STATE),
    ("connection_id", CONNECTION_ID),
];

/// Every mention Torpor looks for.
const ALL: u8 = STATE | CONNECTION_ID;

fn automaton() -> Option<&'static AhoCorasick> {
    static AUTOMATON: OnceLock<Option<AhoCorasick>> = OnceLock::new();
    AUTOMATON
        .get_or_init(|| {
            AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::Standard)
                // A DFA: a few KiB built once, the fastest search for texts
                // as short as most statements.
                .kind(Some(AhoCorasickKind::DFA))
                .build(WORDS.iter().map(|(word, _)| word))
                .ok()
        })
        .as_ref()
}

/// What `sql` mentions, in one pass (stopping once everything is found).
pub fn mentions(sql: &[u8]) -> Mentions {
    let Some(automaton) = automaton() else {
        // The automaton cannot fail to build from these words; were it to,
        // every statement is looked at closely (slower, never wrong).
        return Mentions(ALL);
    };
    let mut found = 0u8;
    for hit in automaton.find_overlapping_iter(sql) {
        found |= WORDS
            .get(hit.pattern().as_usize())
            .map_or(ALL, |(_, meaning)| *meaning);
        if found == ALL {
            break;
        }
    }
    Mentions(found)
}

#[cfg(test)]
mod tests {
    use super::mentions;

    #[test]
    fn each_word_is_found_in_any_case_and_anywhere() {
        for (word, meaning) in super::WORDS {
            for text in [
                word.to_string(),
                word.to_uppercase(),
                format!("select x{}y from t", word.to_uppercase()),
            ] {
                let found = mentions(text.as_bytes());
                assert_eq!(found.0 & meaning, *meaning, "{text}");
            }
        }
    }

    #[test]
    fn plain_statements_mention_nothing() {
        for sql in [
            "SELECT c FROM sbtest1 WHERE id=42",
            "UPDATE sbtest3 SET k=k+1 WHERE id=7",
            "INSERT INTO t (a, b) VALUES (1, 'x')",
            "",
        ] {
            assert_eq!(
                mentions(sql.as_bytes()),
                super::Mentions::default(),
                "{sql}"
            );
        }
    }

    #[test]
    fn both_questions_are_answered_in_one_pass() {
        let found = mentions(b"SELECT @a, CONNECTION_ID()");
        assert!(found.may_change_state());
        assert!(found.connection_id());
        let found = mentions(b"SELECT Connection_Id()");
        assert!(!found.may_change_state());
        assert!(found.connection_id());
    }
}
