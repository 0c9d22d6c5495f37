//! A byte-level SQL lexer.
//!
//! It splits MariaDB SQL into tokens with their byte ranges, following the
//! server's rules for quoting (`'…'`, `"…"`, `` `…` ``, doubled quotes and
//! backslash escapes) and comments (`-- `, `#`, `/* … */`). It does not
//! parse: callers look at token sequences ("`KILL QUERY 42`", "`CONNECTION_ID
//! ( )`") and rewrite ranges of the original text.
//!
//! Text is handled as bytes, so statements in any ASCII-compatible
//! character set lex; in multi-byte sets whose trailing bytes can be `\`
//! (GBK, Big5, SJIS) a backslash inside a string may be misread, which at
//! worst hides a function call from a rewrite.

use std::ops::Range;

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// An unquoted word: keyword, identifier, function name.
    Word,
    /// A number (digits, optionally with `.`, exponent, or hex `0x…`).
    Number,
    /// A quoted string (`'…'` or `"…"`).
    String,
    /// A backtick-quoted identifier.
    QuotedIdent,
    /// A user or system variable (`@x`, `@@x`, `@'x'`).
    Variable,
    /// A comment, including MariaDB's executable `/*! … */` comments.
    Comment,
    /// White space.
    Space,
    /// Any other single character (operators, parentheses, `,`, `;`).
    Punct,
}

/// One token: its kind and where it is in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The kind.
    pub kind: TokenKind,
    /// Byte range in the text.
    pub range: Range<usize>,
}

impl Token {
    /// The token's bytes in `text`.
    pub fn bytes<'a>(&self, text: &'a [u8]) -> &'a [u8] {
        // Empty for a range outside `text` (a token of another text).
        text.get(self.range.clone()).unwrap_or_default()
    }

    /// Whether this is a word equal to `word`, ignoring ASCII case.
    pub fn is_word(&self, text: &[u8], word: &str) -> bool {
        self.kind == TokenKind::Word && self.bytes(text).eq_ignore_ascii_case(word.as_bytes())
    }

    /// Whether this is the punctuation character `c`.
    pub fn is_punct(&self, text: &[u8], c: u8) -> bool {
        self.kind == TokenKind::Punct && self.bytes(text) == [c]
    }

    /// Whether the token carries meaning (not space, not a comment).
    pub fn is_significant(&self) -> bool {
        !matches!(self.kind, TokenKind::Space | TokenKind::Comment)
    }
}

/// Splits `text` into tokens. Never fails: an unterminated string or
/// comment runs to the end of the text, as the server would report it.
pub fn tokenize(text: &[u8]) -> Vec<Token> {
    // Room for a token every four bytes or so (words, spaces and
    // punctuation alternate): the vector seldom grows, where growing it
    // from empty cost several reallocations per statement.
    let mut tokens = Vec::with_capacity(text.len() / 4 + 4);
    let mut at = 0;
    while let Some(&b) = text.get(at) {
        let (kind, end) = next_token(text, at, b);
        debug_assert!(end > at);
        tokens.push(Token {
            kind,
            range: at..end,
        });
        at = end;
    }
    tokens
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// The token that starts at `at` with byte `b`: its kind and end.
fn next_token(text: &[u8], at: usize, b: u8) -> (TokenKind, usize) {
    let next = text.get(at + 1).copied();
    match b {
        b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c' => {
            let end = scan_while(text, at, |c| c.is_ascii_whitespace() || c == b'\x0b');
            (TokenKind::Space, end)
        }
        b'#' => (TokenKind::Comment, line_end(text, at)),
        // "--" starts a comment only when followed by white space or the end.
        b'-' if next == Some(b'-') && text.get(at + 2).is_none_or(|c| c.is_ascii_whitespace()) => {
            (TokenKind::Comment, line_end(text, at))
        }
        b'/' if next == Some(b'*') => {
            let end = find(text, at + 2, b"*/").map_or(text.len(), |i| i + 2);
            (TokenKind::Comment, end)
        }
        b'\'' | b'"' => (TokenKind::String, quoted_end(text, at, b, true)),
        b'`' => (TokenKind::QuotedIdent, quoted_end(text, at, b'`', false)),
        b'@' => {
            let mut end = at + 1;
            if text.get(end) == Some(&b'@') {
                end += 1;
            }
            match text.get(end) {
                Some(&q @ (b'\'' | b'"' | b'`')) => {
                    (TokenKind::Variable, quoted_end(text, end, q, q != b'`'))
                }
                _ => (
                    TokenKind::Variable,
                    scan_while(text, end, |c| is_word_byte(c) || c == b'.'),
                ),
            }
        }
        b'0'..=b'9' => {
            let end = scan_while(text, at, |c| {
                c.is_ascii_alphanumeric() || c == b'.' || c == b'_'
            });
            // "1e" followed by a sign is still one number: 1e-5.
            let lexeme = text.get(at..end).unwrap_or_default();
            let end = if matches!(text.get(end), Some(b'+' | b'-'))
                && lexeme.last().is_some_and(|c| c.eq_ignore_ascii_case(&b'e'))
            {
                scan_while(text, end + 1, |c| c.is_ascii_digit())
            } else {
                end
            };
            // A word that starts with digits (e.g. `1abc`) is an identifier.
            let lexeme = text.get(at..end).unwrap_or_default();
            let kind = if lexeme.iter().all(|c| c.is_ascii_digit() || *c == b'.')
                || lexeme.starts_with(b"0x")
                || lexeme.iter().any(|c| c.eq_ignore_ascii_case(&b'e'))
            {
                TokenKind::Number
            } else {
                TokenKind::Word
            };
            (kind, end)
        }
        _ if is_word_byte(b) => (TokenKind::Word, scan_while(text, at, is_word_byte)),
        _ => (TokenKind::Punct, at + 1),
    }
}

fn scan_while(text: &[u8], mut at: usize, keep: impl Fn(u8) -> bool) -> usize {
    while text.get(at).is_some_and(|&c| keep(c)) {
        at += 1;
    }
    at
}

fn line_end(text: &[u8], at: usize) -> usize {
    text.get(at..)
        .unwrap_or_default()
        .iter()
        .position(|&c| c == b'\n')
        .map_or(text.len(), |i| at + i + 1)
}

fn find(text: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    text.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| from + i)
}

/// End of a quoted run that starts at `at` with `quote`; a doubled quote
/// stands for itself, and in strings a backslash escapes the next byte.
fn quoted_end(text: &[u8], at: usize, quote: u8, backslash: bool) -> usize {
    let mut i = at + 1;
    while let Some(&c) = text.get(i) {
        if backslash && c == b'\\' {
            i += 2;
            continue;
        }
        if c == quote {
            if text.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    text.len()
}

/// Significant tokens only (no space, no comments).
pub fn significant(text: &[u8]) -> Vec<Token> {
    tokenize(text)
        .into_iter()
        .filter(Token::is_significant)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kinds(text: &str) -> Vec<(TokenKind, &str)> {
        tokenize(text.as_bytes())
            .into_iter()
            .map(|t| (t.kind, &text[t.range]))
            .collect()
    }

    #[test]
    fn strings_and_comments_hide_their_contents() {
        use TokenKind::*;
        assert_eq!(
            kinds("select 'a''b\\'c', \"x\" -- connection_id()\n#c\n/* k */`q``r`"),
            vec![
                (Word, "select"),
                (Space, " "),
                (String, "'a''b\\'c'"),
                (Punct, ","),
                (Space, " "),
                (String, "\"x\""),
                (Space, " "),
                (Comment, "-- connection_id()\n"),
                (Comment, "#c\n"),
                (Comment, "/* k */"),
                (QuotedIdent, "`q``r`"),
            ]
        );
    }

    #[test]
    fn numbers_variables_and_operators() {
        use TokenKind::*;
        assert_eq!(
            kinds("@x:=1e-5+@@session.a-0x1F--1"),
            vec![
                (Variable, "@x"),
                (Punct, ":"),
                (Punct, "="),
                (Number, "1e-5"),
                (Punct, "+"),
                (Variable, "@@session.a"),
                (Punct, "-"),
                (Number, "0x1F"),
                (Punct, "-"),
                (Punct, "-"),
                (Number, "1"),
            ]
        );
    }

    #[test]
    fn unterminated_runs_to_the_end() {
        assert_eq!(kinds("'abc"), vec![(TokenKind::String, "'abc")]);
        assert_eq!(kinds("/* abc"), vec![(TokenKind::Comment, "/* abc")]);
    }

    proptest! {
        #[test]
        fn tokens_cover_the_text_exactly(text in proptest::collection::vec(any::<u8>(), 0..200)) {
            let tokens = tokenize(&text);
            let mut at = 0;
            for token in &tokens {
                prop_assert_eq!(token.range.start, at);
                prop_assert!(token.range.end > token.range.start);
                at = token.range.end;
            }
            prop_assert_eq!(at, text.len());
        }
    }
}

/// The text of a quoted string token (`'…'` or `"…"`, quotes included),
/// with its escapes and doubled quotes undone as the server reads them;
/// `None` when `raw` is not a whole quoted string.
pub fn unquote(raw: &[u8]) -> Option<Vec<u8>> {
    let quote = *raw.first()?;
    if !matches!(quote, b'\'' | b'"') || raw.len() < 2 || raw.last() != Some(&quote) {
        return None;
    }
    let inner = raw.strip_prefix(&[quote])?.strip_suffix(&[quote])?;
    let mut text = Vec::with_capacity(inner.len());
    let mut i = 0;
    while let Some(&b) = inner.get(i) {
        match (b, inner.get(i + 1)) {
            (b'\\', Some(&next)) => {
                text.push(match next {
                    b'n' => b'\n',
                    b't' => b'\t',
                    b'r' => b'\r',
                    b'0' => 0,
                    b'Z' => 0x1a,
                    other => other,
                });
                i += 2;
            }
            (b, Some(&next)) if b == quote && next == quote => {
                text.push(quote);
                i += 2;
            }
            _ => {
                text.push(b);
                i += 1;
            }
        }
    }
    Some(text)
}

#[cfg(test)]
mod unquote_tests {
    use super::unquote;

    #[test]
    fn strings_read_as_the_server_reads_them() {
        assert_eq!(unquote(b"'a''b'").as_deref(), Some(&b"a'b"[..]));
        assert_eq!(unquote(b"'a\\nb'").as_deref(), Some(&b"a\nb"[..]));
        assert_eq!(unquote(b"\"x\"").as_deref(), Some(&b"x"[..]));
        assert_eq!(unquote(b"'open"), None);
        assert_eq!(unquote(b"`id`"), None);
    }
}
