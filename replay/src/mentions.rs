//! One pass over a statement's text for the words that make it worth a
//! closer look: every query goes through here, and almost none is.
//!
//! Each question Torpor asks of every statement ("could it change session
//! state?", "could it call `CONNECTION_ID()`?") used to be its own scan,
//! one SIMD search per word, then one Aho-Corasick automaton; both cost
//! more per query than the rest of the statement's handling (callgrind:
//! ~900 instructions for a 35-byte point select through the automaton).
//! Every word but `@` starts with one of two-letter pairs that SQL text
//! rarely holds together, so one pass looks at each byte pair and
//! compares whole words only where a pair fits (ASCII case-insensitive);
//! `@` is one `memchr`. A mention is only a hint: the words may sit
//! inside a string or a comment, and the lexer ([`crate::sql`]) decides.
//! A missing mention is certain.

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

    /// `kill` (any case): the text may be a `KILL` statement.
    pub fn kill(self) -> bool {
        self.0 & KILL != 0
    }
}

const STATE: u8 = 1;
const CONNECTION_ID: u8 = 2;
const KILL: u8 = 4;

/// The words, and what each one's presence means.
#[cfg(test)]
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
    ("kill", KILL),
];

/// Every mention Torpor looks for.
const ALL: u8 = STATE | CONNECTION_ID | KILL;

/// For each byte that may start a word of more than one letter (either
/// case), the letters that may follow it, as a bit set (`a` is bit 0):
/// most bytes of a statement are ruled out by one load, and the rest by
/// the next byte, before any word is compared.
// Evaluated at compile time: an index out of bounds here fails the
// build, it cannot panic on a statement.
#[allow(clippy::indexing_slicing)]
const FOLLOWERS: [u32; 256] = {
    let pairs: [(u8, &[u8]); 8] = [
        (b'p', b"r"),
        (b't', b"e"),
        (b'l', b"oa"),
        (b'f', b"o"),
        (b'r', b"o"),
        (b'e', b"x"),
        (b'c', b"ao"),
        (b'k', b"i"),
    ];
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < pairs.len() {
        let (first, seconds) = pairs[i];
        let mut set = 0u32;
        let mut j = 0;
        while j < seconds.len() {
            set |= 1 << (seconds[j] - b'a');
            j += 1;
        }
        table[first as usize] = set;
        table[first.to_ascii_uppercase() as usize] = set;
        i += 1;
    }
    table
};

/// What the text at the start of `rest` mentions, given its first two
/// bytes lower-cased (`| 0x20` lower-cases exactly the ASCII letters
/// among the bytes a word can start with; no other byte maps onto a
/// lower-case letter).
fn word_at(rest: &[u8], pair: [u8; 2]) -> u8 {
    let is = |word: &[u8]| {
        rest.get(..word.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(word))
    };
    let state = |word: &[u8]| if is(word) { STATE } else { 0 };
    match &pair {
        b"pr" => state(b"prepare"),
        b"te" => state(b"temporary"),
        b"lo" => state(b"lock"),
        b"la" => state(b"last_insert_id"),
        b"fo" => state(b"found_rows"),
        b"ro" => state(b"row_count") | state(b"rollback"),
        b"ex" => state(b"execute"),
        b"ca" => state(b"call"),
        b"ki" if is(b"kill") => KILL,
        b"co" => {
            state(b"commit")
                | if is(b"connection_id") {
                    CONNECTION_ID
                } else {
                    0
                }
        }
        _ => 0,
    }
}

/// What `sql` mentions, in one pass (stopping once everything is found).
pub fn mentions(sql: &[u8]) -> Mentions {
    let mut found = if memchr::memchr(b'@', sql).is_some() {
        STATE
    } else {
        0
    };
    // Every word is two bytes or longer: a last byte alone starts none.
    for (at, pair) in sql.windows(2).enumerate() {
        let &[first, next] = pair else {
            continue;
        };
        // A `u8` index into 256 entries: never out of bounds.
        let followers = FOLLOWERS.get(usize::from(first)).copied().unwrap_or(0);
        if followers == 0 {
            continue;
        }
        // Only an ASCII letter lands in `a..=z` once `| 0x20`-ed.
        let second = (next | 0x20).wrapping_sub(b'a');
        if second >= 26 || followers & (1 << second) == 0 {
            continue;
        }
        let rest = sql.get(at..).unwrap_or_default();
        found |= word_at(rest, [first | 0x20, next | 0x20]);
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

    /// What the words' plain substring search says.
    fn naive(sql: &[u8]) -> u8 {
        let lower = sql.to_ascii_lowercase();
        let mut found = 0;
        for (word, meaning) in super::WORDS {
            if lower.windows(word.len()).any(|w| w == word.as_bytes()) {
                found |= meaning;
            }
        }
        found
    }

    proptest::proptest! {
        #[test]
        fn the_scan_finds_what_a_substring_search_finds(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(super::WORDS.iter().map(|(w, _)| w.to_string()).collect::<Vec<_>>()),
                    "[ -~]{0,6}",
                    "[a-zA-Z_@]{0,4}",
                ],
                0..8,
            ),
            upper in proptest::collection::vec(proptest::bool::ANY, 0..64),
        ) {
            let mut sql: Vec<u8> = parts.concat().into_bytes();
            for (byte, up) in sql.iter_mut().zip(upper) {
                if up {
                    *byte = byte.to_ascii_uppercase();
                }
            }
            proptest::prop_assert_eq!(mentions(&sql).0, naive(&sql), "{:?}", String::from_utf8_lossy(&sql));
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
