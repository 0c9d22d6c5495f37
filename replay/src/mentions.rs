//! One pass over a statement's text for the words that make it worth a
//! closer look: every query goes through here, and almost none is.
//!
//! Each question Torpor asks of every statement ("could it change session
//! state?", "could it call `CONNECTION_ID()`?") used to be its own scan,
//! one SIMD search per word, then one Aho-Corasick automaton; both cost
//! more per query than the rest of the statement's handling (callgrind:
//! ~900 instructions for a 35-byte point select through the automaton).
//! Every word but `@` starts with one of two-letter pairs that SQL text
//! rarely holds together, so one pass finds where a pair starts (16
//! bytes at a time, SIMD on x86_64) and compares whole words only there
//! (ASCII case-insensitive); `@` is one `memchr`. A mention is only a hint: the words may sit
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

/// The first two letters of every word but `@` (lower case): each of
/// [`FOLLOWERS`]' pairs.
const PAIRS: [[u8; 2]; 10] = [
    *b"pr", *b"te", *b"lo", *b"la", *b"fo", *b"ro", *b"ex", *b"ca", *b"co", *b"ki",
];

/// What `sql` mentions, in one pass (stopping once everything is found).
///
/// Per 16 bytes, first which of them start one of the words' first two
/// letters (SIMD: each byte and the next compared with each pair at
/// once), then a look at those only. SQL text rarely holds the pairs,
/// and letters alone are common: a loop that looked at each byte and
/// its follower cost about 15 instructions per byte (callgrind, a
/// 35-byte point select).
pub fn mentions(sql: &[u8]) -> Mentions {
    let mut found = if memchr::memchr(b'@', sql).is_some() {
        STATE
    } else {
        0
    };
    let mut base = 0;
    while base < sql.len() {
        let chunk = sql.get(base..).unwrap_or_default();
        let mut starts = pair_starts(chunk);
        while starts != 0 {
            let at = base + starts.trailing_zeros() as usize;
            starts &= starts - 1;
            let rest = sql.get(at..).unwrap_or_default();
            if let &[first, next, ..] = rest {
                found |= word_at(rest, [first | 0x20, next | 0x20]);
                if found == ALL {
                    return Mentions(found);
                }
            }
        }
        base += 16;
    }
    Mentions(found)
}

/// Of the first 16 bytes of `chunk` (fewer if it is shorter), those that
/// start one of [`PAIRS`] (any case): bit `i` for byte `i`. It may name
/// a byte that starts no word (`| 0x20` also maps a few symbols onto
/// letters; [`word_at`] tells), never miss one that does.
fn pair_starts(chunk: &[u8]) -> u32 {
    if let Some(block) = chunk.first_chunk::<17>() {
        return pair_starts_in(block);
    }
    // The text's last bytes: zeros past its end start no pair.
    let mut block = [0u8; 17];
    for (to, from) in block.iter_mut().zip(chunk) {
        *to = *from;
    }
    pair_starts_in(&block)
}

/// [`pair_starts`] of the 16 bytes that start `block` (its 17th is the
/// follower of the 16th).
#[cfg(target_arch = "x86_64")]
fn pair_starts_in(block: &[u8; 17]) -> u32 {
    use std::arch::x86_64::{
        __m128i, _mm_and_si128, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8, _mm_setzero_si128,
    };
    // SAFETY: SSE2 is part of every x86_64 target. Both unaligned loads
    // read 16 bytes inside `block`'s 17: from its start, and from its
    // second byte.
    unsafe {
        let lower = _mm_set1_epi8(0x20);
        let firsts = _mm_or_si128(_mm_loadu_si128(block.as_ptr().cast::<__m128i>()), lower);
        let seconds = _mm_or_si128(
            _mm_loadu_si128(block.as_ptr().add(1).cast::<__m128i>()),
            lower,
        );
        let mut hits = _mm_setzero_si128();
        for [first, second] in PAIRS {
            let pair = _mm_and_si128(
                _mm_cmpeq_epi8(firsts, _mm_set1_epi8(first as i8)),
                _mm_cmpeq_epi8(seconds, _mm_set1_epi8(second as i8)),
            );
            hits = _mm_or_si128(hits, pair);
        }
        u32::from(_mm_movemask_epi8(hits) as u16)
    }
}

/// [`pair_starts`] of the 16 bytes that start `block`, byte by byte.
#[cfg(not(target_arch = "x86_64"))]
fn pair_starts_in(block: &[u8; 17]) -> u32 {
    let mut starts = 0;
    for (bit, pair) in block.windows(2).enumerate() {
        if let &[first, second] = pair {
            if PAIRS.contains(&[first | 0x20, second | 0x20]) {
                starts |= 1 << bit;
            }
        }
    }
    starts
}

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
    fn words_are_found_across_the_stretches_of_the_scan() {
        for pad in 0..40 {
            for (word, meaning) in super::WORDS {
                let text = format!("{}{}", "x".repeat(pad), word.to_uppercase());
                assert_eq!(mentions(text.as_bytes()).0 & meaning, *meaning, "{text}");
            }
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
