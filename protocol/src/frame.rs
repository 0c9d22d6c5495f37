//! Packet framing: a 3-byte little-endian payload length and a 1-byte
//! sequence id in front of every payload.
//!
//! A payload of 0xFFFFFF bytes or more is split into packets of exactly
//! 0xFFFFFF bytes followed by one shorter packet; when the payload is an
//! exact multiple of 0xFFFFFF that last packet is empty. Every packet of a
//! payload carries the next sequence id (wrapping at 256).
//!
//! Written by hand rather than with `mysql_common`'s codec because the
//! proxy forwards packets without assembling them: it only needs to find
//! packet boundaries in a buffer, and a 4-byte header is not worth a copy.

use std::borrow::Cow;

use bytes::{BufMut, BytesMut};

use crate::ProtocolError;

/// The largest payload one packet can carry; a packet of exactly this
/// length is continued by the next one.
pub const MAX_PAYLOAD: usize = 0xFF_FFFF;

/// Size of a packet header in bytes.
pub const HEADER_LEN: usize = 4;

/// The 4-byte header in front of every packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketHeader {
    /// Length of this packet's payload (not of the whole logical payload).
    pub len: usize,
    /// Sequence id.
    pub seq: u8,
}

impl PacketHeader {
    /// Reads the header at the start of `buf`; `None` when fewer than four
    /// bytes are there.
    #[inline]
    pub fn parse(buf: &[u8]) -> Option<PacketHeader> {
        match buf {
            [a, b, c, seq, ..] => Some(PacketHeader {
                len: usize::from(*a) | usize::from(*b) << 8 | usize::from(*c) << 16,
                seq: *seq,
            }),
            _ => None,
        }
    }

    /// The header's four bytes.
    #[inline]
    pub fn encode(self) -> [u8; HEADER_LEN] {
        debug_assert!(self.len <= MAX_PAYLOAD);
        let len = self.len as u32;
        [len as u8, (len >> 8) as u8, (len >> 16) as u8, self.seq]
    }

    /// Whether the next packet continues this one's payload.
    #[inline]
    pub fn is_continued(self) -> bool {
        self.len == MAX_PAYLOAD
    }

    /// Header plus payload length.
    #[inline]
    pub fn total_len(self) -> usize {
        HEADER_LEN + self.len
    }
}

/// Appends `payload` to `dst` as one or more packets starting at sequence
/// id `seq`, and returns the sequence id that comes next.
pub fn write_payload(dst: &mut BytesMut, mut seq: u8, payload: &[u8]) -> u8 {
    dst.reserve(payload.len() + HEADER_LEN * (1 + payload.len() / MAX_PAYLOAD));
    let mut chunks = payload.chunks(MAX_PAYLOAD);
    let mut last_len = 0;
    for chunk in chunks.by_ref() {
        dst.put_slice(
            &PacketHeader {
                len: chunk.len(),
                seq,
            }
            .encode(),
        );
        dst.put_slice(chunk);
        seq = seq.wrapping_add(1);
        last_len = chunk.len();
    }
    // An empty payload is one empty packet; a payload that ends exactly on
    // a packet boundary needs an empty packet to say it ended.
    if payload.is_empty() || last_len == MAX_PAYLOAD {
        dst.put_slice(&PacketHeader { len: 0, seq }.encode());
        seq = seq.wrapping_add(1);
    }
    seq
}

/// One logical payload read back from a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload<'a> {
    /// The payload, borrowed when it fits one packet, assembled otherwise.
    pub data: Cow<'a, [u8]>,
    /// Sequence id of its first packet.
    pub first_seq: u8,
    /// Sequence id of its last packet.
    pub last_seq: u8,
    /// How many bytes of the buffer it took, headers included.
    pub consumed: usize,
}

/// Reads one whole logical payload from the start of `buf`.
///
/// Returns `Ok(None)` when `buf` does not hold all of it yet, and an error
/// when its packets' sequence ids do not follow each other or when it is
/// larger than `limit` bytes (checked as soon as the headers say so, so a
/// peer cannot make the caller buffer more than `limit`).
pub fn read_payload(buf: &[u8], limit: usize) -> Result<Option<Payload<'_>>, ProtocolError> {
    let Some(first) = PacketHeader::parse(buf) else {
        return Ok(None);
    };
    if first.len > limit {
        return Err(ProtocolError::TooLarge {
            size: first.len,
            limit,
        });
    }
    if !first.is_continued() {
        let Some(data) = buf.get(HEADER_LEN..first.total_len()) else {
            return Ok(None);
        };
        return Ok(Some(Payload {
            data: Cow::Borrowed(data),
            first_seq: first.seq,
            last_seq: first.seq,
            consumed: first.total_len(),
        }));
    }
    // A continued payload: walk the headers first, so nothing is copied
    // until all of it is here.
    let mut at = 0;
    let mut size = 0usize;
    let mut seq = first.seq;
    loop {
        let Some(header) = buf.get(at..).and_then(PacketHeader::parse) else {
            return Ok(None);
        };
        if at > 0 && header.seq != seq.wrapping_add(1) {
            return Err(ProtocolError::OutOfOrder {
                expected: seq.wrapping_add(1),
                got: header.seq,
            });
        }
        seq = header.seq;
        size += header.len;
        if size > limit {
            return Err(ProtocolError::TooLarge { size, limit });
        }
        if buf.len() < at + header.total_len() {
            return Ok(None);
        }
        at += header.total_len();
        if !header.is_continued() {
            break;
        }
    }
    let mut data = Vec::with_capacity(size);
    let mut pos = 0;
    while pos < at {
        // The walk above proved every header and body is in `buf`.
        let packet = buf.get(pos..).ok_or(ProtocolError::malformed("packet"))?;
        let header = PacketHeader::parse(packet).ok_or(ProtocolError::malformed("packet"))?;
        let body = packet.get(HEADER_LEN..header.total_len());
        data.extend_from_slice(body.ok_or(ProtocolError::malformed("packet"))?);
        pos += header.total_len();
    }
    Ok(Some(Payload {
        data: Cow::Owned(data),
        first_seq: first.seq,
        last_seq: seq,
        consumed: at,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_round_trip_fixture() {
        // COM_PING as the mariadb client sends it: length 1, seq 0, 0x0e.
        let wire = [0x01, 0x00, 0x00, 0x00, 0x0e];
        let header = PacketHeader::parse(&wire).expect("header");
        assert_eq!(header, PacketHeader { len: 1, seq: 0 });
        assert_eq!(header.encode(), [0x01, 0x00, 0x00, 0x00]);
        let payload = read_payload(&wire, 1 << 20).unwrap().unwrap();
        assert_eq!(&*payload.data, &[0x0e]);
        assert_eq!(payload.consumed, 5);
    }

    #[test]
    fn short_buffers_need_more_bytes() {
        assert_eq!(PacketHeader::parse(&[1, 0, 0]), None);
        assert_eq!(read_payload(&[5, 0, 0, 0, 1, 2], 100), Ok(None));
    }

    #[test]
    fn exact_multiple_of_max_payload_ends_with_empty_packet() {
        let payload = vec![7u8; MAX_PAYLOAD];
        let mut wire = BytesMut::new();
        let next = write_payload(&mut wire, 3, &payload);
        assert_eq!(next, 5);
        assert_eq!(wire.len(), MAX_PAYLOAD + 2 * HEADER_LEN);
        assert_eq!(&wire[wire.len() - 4..], &[0, 0, 0, 4]);
        let back = read_payload(&wire, usize::MAX).unwrap().unwrap();
        assert_eq!(back.data.len(), MAX_PAYLOAD);
        assert_eq!((back.first_seq, back.last_seq), (3, 4));
        assert_eq!(back.consumed, wire.len());
    }

    #[test]
    fn empty_payload_is_one_empty_packet() {
        let mut wire = BytesMut::new();
        assert_eq!(write_payload(&mut wire, 255, &[]), 0);
        assert_eq!(&wire[..], &[0, 0, 0, 255]);
    }

    #[test]
    fn limit_is_checked_from_headers_alone() {
        // Only the header of a 16 MiB packet: refused before the body came.
        let wire = [0xff, 0xff, 0xff, 0];
        assert!(matches!(
            read_payload(&wire, 1024),
            Err(ProtocolError::TooLarge { .. })
        ));
    }

    #[test]
    fn continuation_with_wrong_sequence_is_refused() {
        let mut wire = BytesMut::new();
        write_payload(&mut wire, 0, &vec![1u8; MAX_PAYLOAD + 10]);
        wire[MAX_PAYLOAD + HEADER_LEN + 3] = 9;
        assert_eq!(
            read_payload(&wire, usize::MAX),
            Err(ProtocolError::OutOfOrder {
                expected: 1,
                got: 9
            })
        );
    }

    proptest! {
        #[test]
        fn payload_round_trip(len in 0usize..70_000, seq in any::<u8>()) {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut wire = BytesMut::new();
            write_payload(&mut wire, seq, &payload);
            let back = read_payload(&wire, usize::MAX).unwrap().unwrap();
            prop_assert_eq!(&*back.data, &payload[..]);
            prop_assert_eq!(back.consumed, wire.len());
        }

        #[test]
        fn read_payload_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = read_payload(&bytes, 1 << 20);
        }
    }
}
