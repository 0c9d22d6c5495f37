//! The compressed protocol: decoding a stream of compressed packets (fed
//! whole, and fed in two reads), and encoding plain bytes that must decode
//! back.
//!
//! Input: a split byte, then the bytes.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use torpor_protocol::compress::{decode, Decoder, Encoder};

fuzz_target!(|data: &[u8]| {
    let Some((&split, bytes)) = data.split_first() else {
        return;
    };

    // As a stream from a peer, at once.
    let mut src = BytesMut::from(bytes);
    let mut whole = BytesMut::new();
    let at_once = decode(&mut src, &mut whole);
    assert!(src.len() <= bytes.len());
    if at_once == Ok(None) {
        assert_eq!(src.len(), bytes.len(), "nothing decoded, nothing consumed");
    }

    // The same stream in two reads, through one decoder: the same result.
    let cut = bytes.len() * usize::from(split) / 256;
    let mut decoder = Decoder::new();
    let mut src2 = BytesMut::from(&bytes[..cut]);
    let mut pieces = BytesMut::new();
    match decoder.decode(&mut src2, &mut pieces) {
        Err(e) => assert_eq!(at_once, Err(e)),
        Ok(first) => {
            src2.extend_from_slice(&bytes[cut..]);
            let second = decoder.decode(&mut src2, &mut pieces).map(|b| b.or(first));
            assert_eq!(second, at_once);
            assert_eq!(pieces, whole);
            assert_eq!(src2, src);
        }
    }

    // As plain bytes to send: they come back whole, in numbered packets.
    let mut encoder = Encoder::new();
    encoder.next_seq = split;
    let mut wire = BytesMut::new();
    encoder.encode(bytes, &mut wire);
    let mut plain = BytesMut::new();
    let last = decode(&mut wire, &mut plain).expect("encoded bytes decode");
    assert!(wire.is_empty());
    assert_eq!(&plain[..], bytes);
    if bytes.is_empty() {
        assert_eq!(last, None);
    } else {
        assert_eq!(last, Some(encoder.next_seq.wrapping_sub(1)));
    }
});
