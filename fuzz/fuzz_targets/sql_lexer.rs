//! The SQL lexer: tokens cover the text exactly, in order, none empty;
//! quoted strings unquote.
//!
//! Input: statement text, any bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use torpor_replay::sql::{significant, tokenize, unquote, TokenKind};

fuzz_target!(|sql: &[u8]| {
    let tokens = tokenize(sql);
    let mut at = 0;
    for token in &tokens {
        assert_eq!(token.range.start, at, "tokens follow each other");
        assert!(token.range.end > token.range.start, "no empty token");
        at = token.range.end;
        let bytes = token.bytes(sql);
        assert_eq!(bytes.len(), token.range.len());
        match token.kind {
            TokenKind::String => {
                let quote = bytes[0];
                assert!(quote == b'\'' || quote == b'"');
                let closed = bytes.len() >= 2 && bytes.last() == Some(&quote);
                if closed {
                    let text = unquote(bytes).expect("a closed string unquotes");
                    assert!(text.len() <= bytes.len() - 2);
                }
            }
            TokenKind::QuotedIdent => assert_eq!(bytes[0], b'`'),
            TokenKind::Variable => assert_eq!(bytes[0], b'@'),
            TokenKind::Punct => assert_eq!(bytes.len(), 1),
            TokenKind::Space => assert!(bytes
                .iter()
                .all(|c| c.is_ascii_whitespace() || *c == b'\x0b')),
            TokenKind::Word | TokenKind::Number | TokenKind::Comment => {}
        }
        let _ = token.is_word(sql, "select");
        let _ = token.is_punct(sql, b';');
    }
    assert_eq!(at, sql.len(), "tokens cover the text");

    let kept = significant(sql);
    let expected: Vec<_> = tokens.into_iter().filter(|t| t.is_significant()).collect();
    assert_eq!(kept, expected);

    if let Some(text) = unquote(sql) {
        assert!(text.len() <= sql.len());
    }
});
