//! One pass over a statement's text for the words that make it worth a
//! closer look: every query goes through here, and almost none is.
//!
//! Each question Torpor asks of every statement ("could it change session
//! state?", "could it call `CONNECTION_ID()`?") used to be its own scan,
//! one SIMD search per word, then one Aho-Corasick automaton; both cost
//! more per query than the rest of the statement's handling (callgrind:
//! ~900 instructions for a 35-byte point select through the automaton).
//! Every word but `@` starts with one of two-letter pairs that SQL text
//! rarely holds together, so one pass finds where a pair starts, and
//! where an `@` is (16 bytes at a time, SIMD on x86_64), and compares
//! whole words only there (ASCII case-insensitive). A mention is only a
//! hint: the words may sit inside a string or a comment, and the lexer
//! ([`crate::sql`]) decides. A missing mention is certain.

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

    /// `row_count` (any case): the text may call `ROW_COUNT()`.
    pub fn row_count(self) -> bool {
        self.0 & ROW_COUNT != 0
    }

    /// `found_rows` (any case): the text may call `FOUND_ROWS()`, or
    /// select `SQL_CALC_FOUND_ROWS`.
    pub fn found_rows(self) -> bool {
        self.0 & FOUND_ROWS != 0
    }
}

const STATE: u8 = 1;
const CONNECTION_ID: u8 = 2;
const KILL: u8 = 4;
const ROW_COUNT: u8 = 8;
const FOUND_ROWS: u8 = 16;

/// The words, and what each one's presence means.
#[cfg(test)]
const WORDS: &[(&str, u8)] = &[
    ("@", STATE),
    ("prepare", STATE),
    ("temporary", STATE),
    ("lock", STATE),
    ("found_rows", STATE | FOUND_ROWS),
    ("row_count", STATE | ROW_COUNT),
    ("last_insert_id", STATE),
    ("execute", STATE),
    ("call", STATE),
    ("commit", STATE),
    ("rollback", STATE),
    ("connection_id", CONNECTION_ID),
    ("kill", KILL),
];

/// Every mention Torpor looks for.
const ALL: u8 = STATE | CONNECTION_ID | KILL | ROW_COUNT | FOUND_ROWS;

/// The first two letters of every word but `@` (lower case).
#[cfg(not(target_arch = "x86_64"))]
const PAIRS: [[u8; 2]; 10] = [
    *b"pr", *b"te", *b"lo", *b"la", *b"fo", *b"ro", *b"ex", *b"ca", *b"co", *b"ki",
];

/// How many pair starts one look covers: the pairs that start in the
/// first 15 of its 16 bytes (the 16th's follower is in the next look).
const STRIDE: usize = 15;

/// What `sql` mentions, in one pass (stopping once everything is found).
///
/// Per 16 bytes, first which of them start one of the words' first two
/// letters (SIMD: each byte and the next compared with the letters at
/// once), then a look at those only. SQL text rarely holds the pairs,
/// and letters alone are common: a loop that looked at each byte and
/// its follower cost about 15 instructions per byte (callgrind, a
/// 35-byte point select).
pub fn mentions(sql: &[u8]) -> Mentions {
    let mut found = 0;
    let mut base = 0;
    while base < sql.len() {
        let Look {
            mut starts,
            at_sign,
        } = look(sql, base);
        if at_sign {
            found |= STATE;
        }
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
        base += STRIDE;
    }
    Mentions(found)
}

/// What one look at [`STRIDE`] bytes found.
struct Look {
    /// The bytes that start a word's first two letters (any case): bit
    /// `i` for byte `base + i`. It may name a byte that starts no word
    /// (`| 0x20` also maps a few symbols onto letters; [`word_at`]
    /// tells), never miss one that does.
    starts: u32,
    /// Whether one of the bytes is `@`.
    at_sign: bool,
}

/// Bits of a look's 16 bytes that stand for its [`STRIDE`] bytes.
const STRIDE_BITS: u32 = (1 << STRIDE) - 1;

/// A look at the [`STRIDE`] bytes of `sql` from `base` on (fewer at its
/// end).
fn look(sql: &[u8], base: usize) -> Look {
    let (starts, at_signs) =
        if let Some(block) = sql.get(base..).and_then(<[u8]>::first_chunk::<16>) {
            look_at(block)
        } else if let Some(block) = sql.last_chunk::<16>() {
            // The text's end, when the text is long enough: the 16 bytes that
            // end it, shifted to start at `base` (the bytes before were
            // looked at); its last byte is followed by nothing, as the look's
            // last is.
            let skip = base + 16 - sql.len();
            let (starts, at_signs) = look_at(block);
            (starts >> skip, at_signs >> skip)
        } else {
            // A text shorter than 16 bytes: zeros past its end start no pair.
            let mut block = [0u8; 16];
            if let Some(place) = block.get_mut(..sql.len()) {
                place.copy_from_slice(sql);
            }
            look_at(&block)
        };
    Look {
        starts: starts & STRIDE_BITS,
        at_sign: at_signs & STRIDE_BITS != 0,
    }
}

/// Of the 16 bytes of `block`, those that start a word's first two
/// letters (the 16th, whose follower is not in `block`, never does), and
/// those that are `@`: one bit a byte each.
#[cfg(target_arch = "x86_64")]
fn look_at(block: &[u8; 16]) -> (u32, u32) {
    use std::arch::x86_64::{
        __m128i, _mm_and_si128, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8, _mm_srli_si128,
    };
    // SAFETY: SSE2 is part of every x86_64 target. The unaligned load
    // reads `block`'s 16 bytes.
    unsafe {
        let bytes = _mm_loadu_si128(block.as_ptr().cast::<__m128i>());
        let at_signs = _mm_cmpeq_epi8(bytes, _mm_set1_epi8(b'@' as i8));
        let firsts = _mm_or_si128(bytes, _mm_set1_epi8(0x20));
        // Each byte's follower; the last byte's is 0, which no word has.
        let seconds = _mm_srli_si128::<1>(firsts);
        let first = |letter: u8| _mm_cmpeq_epi8(firsts, _mm_set1_epi8(letter as i8));
        let second = |letter: u8| _mm_cmpeq_epi8(seconds, _mm_set1_epi8(letter as i8));
        // The pairs pr te lo la fo ro ex ca co ki, grouped by the letters
        // they share: (l|c)(o|a), (f|r)o, pr, te, ex, ki.
        let o = second(b'o');
        let l_or_c = _mm_or_si128(first(b'l'), first(b'c'));
        let f_or_r = _mm_or_si128(first(b'f'), first(b'r'));
        let shared = _mm_or_si128(
            _mm_and_si128(l_or_c, _mm_or_si128(o, second(b'a'))),
            _mm_and_si128(f_or_r, o),
        );
        let own = _mm_or_si128(
            _mm_or_si128(
                _mm_and_si128(first(b'p'), second(b'r')),
                _mm_and_si128(first(b't'), second(b'e')),
            ),
            _mm_or_si128(
                _mm_and_si128(first(b'e'), second(b'x')),
                _mm_and_si128(first(b'k'), second(b'i')),
            ),
        );
        let mask = |bytes: __m128i| u32::from(_mm_movemask_epi8(bytes) as u16);
        (mask(_mm_or_si128(shared, own)), mask(at_signs))
    }
}

/// [`look_at`], byte by byte.
#[cfg(not(target_arch = "x86_64"))]
fn look_at(block: &[u8; 16]) -> (u32, u32) {
    let mut starts = 0;
    for (bit, pair) in block.windows(2).enumerate() {
        if let &[first, second] = pair {
            if PAIRS.contains(&[first | 0x20, second | 0x20]) {
                starts |= 1 << bit;
            }
        }
    }
    let mut at_signs = 0;
    for (bit, byte) in block.iter().enumerate() {
        if *byte == b'@' {
            at_signs |= 1 << bit;
        }
    }
    (starts, at_signs)
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
        b"fo" if is(b"found_rows") => STATE | FOUND_ROWS,
        b"ro" => {
            (if is(b"row_count") {
                STATE | ROW_COUNT
            } else {
                0
            }) | state(b"rollback")
        }
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
