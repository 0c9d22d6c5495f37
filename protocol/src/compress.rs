//! The compressed protocol (`CLIENT_COMPRESS`): a second framing around
//! the byte stream of ordinary packets. Each compressed packet has a
//! 7-byte header — payload length (3 bytes), its own sequence id (1 byte),
//! the length before compression (3 bytes; 0 when the payload was sent as
//! it is) — and a zlib payload.
//!
//! The stream inside is cut anywhere: a compressed packet may hold part
//! of a packet or several. So this module moves byte runs, not packets:
//! [`decode`] turns whole compressed packets into the plain stream, and
//! [`Encoder::encode`] wraps a run of plain bytes. Written here rather than
//! taken from `mysql_common`, whose codec compresses whole packets it
//! frames itself; a proxy forwards runs of bytes it did not frame.

use bytes::{Buf, BufMut, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::ProtocolError;

/// Bytes of a compressed packet's header.
pub const HEADER_LEN: usize = 7;

/// Largest payload of one compressed packet (and largest run compressed
/// into one).
pub const MAX_PAYLOAD: usize = 0xFF_FFFF;

/// Runs shorter than this are sent uncompressed, as MariaDB does
/// (`MIN_COMPRESS_LENGTH`): zlib would make them longer.
pub const MIN_COMPRESS_LEN: usize = 50;

/// The most plain bytes deflate can make of one compressed byte (a
/// 258-byte match in two bits): a packet that claims more is not zlib.
const MAX_INFLATE_RATIO: usize = 1032;

/// Decodes every whole compressed packet at the front of `src` into
/// `dst` (the plain stream), consuming them. Returns the sequence id of
/// the last packet decoded, or `None` when `src` holds no whole packet.
/// A one-off [`Decoder`]; a connection keeps one instead.
pub fn decode(src: &mut BytesMut, dst: &mut BytesMut) -> Result<Option<u8>, ProtocolError> {
    Decoder::new().decode(src, dst)
}

/// Inflates compressed packets, keeping zlib's state (tens of KiB)
/// between them: set up once per connection, reset per packet.
pub struct Decoder {
    inflate: Decompress,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Decoder")
    }
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    /// A decoder.
    pub fn new() -> Decoder {
        Decoder {
            inflate: Decompress::new(true),
        }
    }

    /// As [`decode`].
    pub fn decode(
        &mut self,
        src: &mut BytesMut,
        dst: &mut BytesMut,
    ) -> Result<Option<u8>, ProtocolError> {
        let bad = || ProtocolError::malformed("compressed packet");
        let mut last = None;
        while let Some((header, rest)) = src.split_first_chunk::<HEADER_LEN>() {
            let [l0, l1, l2, seq, p0, p1, p2] = *header;
            let length = usize::from(l0) | usize::from(l1) << 8 | usize::from(l2) << 16;
            let plain = usize::from(p0) | usize::from(p1) << 8 | usize::from(p2) << 16;
            let Some(payload) = rest.get(..length) else {
                break;
            };
            if plain == 0 {
                dst.extend_from_slice(payload);
            } else {
                // Checked before room for `plain` bytes is made: a 7-byte
                // header must not buy a peer 16 MiB.
                if plain > length.saturating_mul(MAX_INFLATE_RATIO) {
                    return Err(bad());
                }
                // Exactly `plain` bytes must come out, and the stream end.
                let mut out = Vec::with_capacity(plain);
                self.inflate.reset(true);
                let status = self
                    .inflate
                    .decompress_vec(payload, &mut out, FlushDecompress::Finish)
                    .map_err(|_| bad())?;
                if status != Status::StreamEnd || out.len() != plain {
                    return Err(bad());
                }
                dst.extend_from_slice(&out);
            }
            src.advance(HEADER_LEN + length);
            last = Some(seq);
        }
        Ok(last)
    }
}

/// Wraps plain bytes in compressed packets, numbering them. zlib's state
/// (hundreds of KiB to set up) is kept between packets and reset per
/// packet, so a small reply costs a deflate, not an allocation.
pub struct Encoder {
    /// The sequence id of the next compressed packet.
    pub next_seq: u8,
    deflate: Compress,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("next_seq", &self.next_seq)
            .finish()
    }
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder::new()
    }
}

impl Encoder {
    /// An encoder at zlib's fastest level: a proxy compresses every reply
    /// it forwards, and the first level gives most of the size for a
    /// fraction of the CPU.
    pub fn new() -> Encoder {
        Encoder {
            next_seq: 0,
            deflate: Compress::new(Compression::fast(), true),
            scratch: Vec::new(),
        }
    }

    /// Appends `plain` to `dst` as compressed packets.
    pub fn encode(&mut self, plain: &[u8], dst: &mut BytesMut) {
        for run in plain.chunks(MAX_PAYLOAD) {
            let mut plain_len = 0;
            let mut header_len = run.len();
            if run.len() >= MIN_COMPRESS_LEN {
                self.scratch.clear();
                // Room for all of it: a run that does not shrink is sent
                // as it is anyway.
                self.scratch.reserve(run.len());
                self.deflate.reset();
                let done = self
                    .deflate
                    .compress_vec(run, &mut self.scratch, FlushCompress::Finish);
                if matches!(done, Ok(Status::StreamEnd)) && self.scratch.len() < run.len() {
                    plain_len = run.len();
                    header_len = self.scratch.len();
                }
            }
            dst.put_slice(&[
                header_len as u8,
                (header_len >> 8) as u8,
                (header_len >> 16) as u8,
                self.next_seq,
                plain_len as u8,
                (plain_len >> 8) as u8,
                (plain_len >> 16) as u8,
            ]);
            if plain_len == 0 {
                dst.put_slice(run);
            } else {
                dst.put_slice(&self.scratch);
            }
            self.next_seq = self.next_seq.wrapping_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn short_runs_go_uncompressed_and_long_ones_compressed() {
        let mut encoder = Encoder::new();
        let mut wire = BytesMut::new();
        encoder.encode(b"\x01\x00\x00\x00\x0e", &mut wire);
        assert_eq!(
            &wire[..],
            b"\x05\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x0e"
        );
        let long = vec![b'a'; 1000];
        encoder.encode(&long, &mut wire);
        assert_eq!(wire[12 + 3], 1, "the second packet's sequence id");
        assert_eq!(
            &wire[12 + 4..12 + 7],
            &[0xe8, 0x03, 0x00],
            "plain length 1000"
        );
        assert!(wire.len() < 12 + HEADER_LEN + 100, "compressed");
        let mut plain = BytesMut::new();
        assert_eq!(decode(&mut wire, &mut plain).unwrap(), Some(1));
        assert!(wire.is_empty());
        assert_eq!(&plain[..5], b"\x01\x00\x00\x00\x0e");
        assert_eq!(&plain[5..], &long[..]);
    }

    #[test]
    fn a_partial_packet_waits_for_more() {
        let mut wire = BytesMut::new();
        Encoder::new().encode(&[7u8; 200], &mut wire);
        let mut front = wire.split_to(wire.len() - 1);
        let mut plain = BytesMut::new();
        assert_eq!(decode(&mut front, &mut plain).unwrap(), None);
        assert!(plain.is_empty());
    }

    #[test]
    fn a_payload_longer_than_its_header_says_is_refused() {
        let mut wire = BytesMut::new();
        Encoder::new().encode(&[7u8; 200], &mut wire);
        wire[4] = 100; // claims 100 bytes, holds 200
        let mut plain = BytesMut::new();
        assert!(decode(&mut wire, &mut plain).is_err());
    }

    /// Found through the `compress` fuzz target's slow pace (250 inputs a
    /// second under ASan): a header claiming 16 MiB of plain bytes for a
    /// few compressed ones made room for all of them before inflating
    /// anything.
    #[test]
    fn a_plain_length_zlib_cannot_reach_is_refused() {
        let mut wire = BytesMut::from(&b"\x02\x00\x00\x00\xff\xff\xff\x78\x9c"[..]);
        let mut plain = BytesMut::new();
        assert!(decode(&mut wire, &mut plain).is_err());
        // The densest stream there is still decodes: 64 KiB of zeros.
        let zeros = vec![0u8; 1 << 16];
        let mut wire = BytesMut::new();
        Encoder::new().encode(&zeros, &mut wire);
        let mut plain = BytesMut::new();
        assert_eq!(decode(&mut wire, &mut plain).unwrap(), Some(0));
        assert_eq!(plain.len(), zeros.len());
    }

    proptest! {
        #[test]
        fn round_trip(runs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..6)) {
            let mut encoder = Encoder::new();
            let mut wire = BytesMut::new();
            for run in &runs {
                encoder.encode(run, &mut wire);
            }
            let mut plain = BytesMut::new();
            decode(&mut wire, &mut plain).unwrap();
            prop_assert!(wire.is_empty());
            prop_assert_eq!(plain.to_vec(), runs.concat());
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut src = BytesMut::from(&bytes[..]);
            let mut dst = BytesMut::new();
            let _ = decode(&mut src, &mut dst);
        }
    }
}
