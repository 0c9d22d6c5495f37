//! Packet framing: headers and whole logical payloads read back from a
//! byte stream, then written again.
//!
//! Input: a limit selector byte, then the stream.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use torpor_protocol::frame::{read_payload, write_payload, PacketHeader, HEADER_LEN};
use torpor_protocol::{ProtocolError, MAX_PAYLOAD};

const LIMITS: [usize; 4] = [0, 64, 1 << 20, usize::MAX];

fuzz_target!(|data: &[u8]| {
    let Some((&limit, mut stream)) = data.split_first() else {
        return;
    };
    let limit = LIMITS[usize::from(limit) % LIMITS.len()];
    loop {
        if let Some(header) = PacketHeader::parse(stream) {
            assert!(header.len <= MAX_PAYLOAD);
            assert_eq!(PacketHeader::parse(&header.encode()), Some(header));
        }
        match read_payload(stream, limit) {
            Ok(Some(payload)) => {
                assert!(payload.consumed >= HEADER_LEN);
                assert!(payload.consumed <= stream.len(), "consumed past the input");
                assert!(payload.data.len() <= limit);
                // Written again from its first sequence id, the payload
                // gives back exactly the bytes it was read from.
                let mut wire = BytesMut::new();
                let next = write_payload(&mut wire, payload.first_seq, &payload.data);
                assert_eq!(&wire[..], &stream[..payload.consumed]);
                assert_eq!(next, payload.last_seq.wrapping_add(1));
                stream = &stream[payload.consumed..];
            }
            Ok(None) => break,
            Err(ProtocolError::TooLarge { size, limit: l }) => {
                assert_eq!(l, limit);
                assert!(size > limit);
                break;
            }
            Err(ProtocolError::OutOfOrder { expected, got }) => {
                assert_ne!(expected, got);
                break;
            }
            Err(e) => panic!("read_payload gave an error it never gives: {e}"),
        }
    }
});
