//! Walking a backend reply through the read buffer: which bytes belong to
//! the reply the client is owed, and when it ends.
//!
//! Packets up to [`WHOLE_PACKET_LIMIT`] bytes are looked at whole (OK
//! packets with session-state data need that); larger ones (big rows) are
//! classified by their head and then streamed through as they arrive, so a
//! 1 GiB row never has to fit in memory.

use torpor_protocol::command::Command;
use torpor_protocol::frame::{PacketHeader, HEADER_LEN};
use torpor_protocol::packets::ServerStatus;
use torpor_protocol::reply::{Ending, PacketClass, ReplyTracker, Step, HEAD_LEN};
use torpor_protocol::ProtocolError;
use torpor_replay::journal::{Outcome, ReplyDigest};

/// Packets up to this size are only looked at once all of them is here.
pub const WHOLE_PACKET_LIMIT: usize = 1 << 20;

/// Where a walk over the buffered bytes stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Walked {
    /// The reply goes on; at least `want` more bytes are needed to make
    /// progress.
    NeedMore {
        /// Bytes to read before walking again.
        want: usize,
    },
    /// The reply ended.
    Done(Ending),
    /// The server asked for a local file; the client sends it next.
    LocalInfile,
}

/// A packet of a reply that Torpor must look at before it goes on: an OK
/// packet that reports session-state changes, or a prepare-OK whose
/// statement id the client must not see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Special {
    /// Offset of its header in the walked buffer.
    pub at: usize,
    /// Its length, header included.
    pub len: usize,
    /// What it is.
    pub class: PacketClass,
}

/// One reply the backend owes, as it is walked.
#[derive(Debug)]
pub struct ReplyWalk {
    tracker: ReplyTracker,
    /// The command the reply answers.
    pub command: Command,
    /// Body bytes of the current packet not walked yet.
    body_left: usize,
    /// What the current packet said, once its body is through.
    after_body: Option<Step>,
    /// The sequence id the client expects next (for an ERR we write
    /// ourselves if the backend fails mid-reply).
    pub next_seq: u8,
    /// The reply's digest, for the transaction journal (only when the
    /// command is journaled: hashing costs a pass over the bytes).
    digest: Option<Box<ReplyDigest>>,
    /// Whether the current packet's body goes into the digest.
    hash_body: bool,
    /// Whether any of the reply has been walked (and so forwarded).
    started: bool,
    /// What the command's statement does to `FOUND_ROWS()` (see
    /// `super::counts`).
    pub found_rows: super::counts::FoundRows,
}

impl ReplyWalk {
    /// A walk for the reply to `command`, whose packets start at `next_seq`.
    pub fn new(command: Command, tracker: ReplyTracker, next_seq: u8) -> ReplyWalk {
        ReplyWalk {
            tracker,
            command,
            body_left: 0,
            after_body: None,
            next_seq,
            digest: None,
            hash_body: false,
            started: false,
            found_rows: super::counts::FoundRows::Unknown,
        }
    }

    /// The same walk, digesting the reply as it goes.
    #[cfg(test)]
    pub fn digested(self) -> ReplyWalk {
        self.digested_in(None)
    }

    /// The same walk, digesting the reply as it goes in `spare` (an
    /// earlier walk's, from [`ReplyWalk::into_digest`]) when there is
    /// one.
    pub fn digested_in(mut self, spare: Option<Box<ReplyDigest>>) -> ReplyWalk {
        self.digest = Some(match spare {
            Some(mut digest) => {
                digest.reset();
                digest
            }
            None => Box::default(),
        });
        self
    }

    /// The walk's digest, for the next digested walk to reuse.
    pub fn into_digest(self) -> Option<Box<ReplyDigest>> {
        self.digest
    }

    /// The digest of the reply walked so far, if it is digested.
    pub fn outcome(&self) -> Option<Outcome> {
        self.digest.as_ref().map(|d| d.finish())
    }

    /// Whether no byte of the reply has been walked yet.
    pub fn untouched(&self) -> bool {
        !self.started
    }

    /// Whether the walk stands between two packets (none half forwarded),
    /// so that the client can still be sent a packet of Torpor's own.
    pub fn between_packets(&self) -> bool {
        self.body_left == 0
    }

    /// The tracker (e.g. for the prepare-OK it decoded).
    pub fn tracker(&self) -> &ReplyTracker {
        &self.tracker
    }

    /// Walks `buf` from its start. Returns how many of its bytes belong to
    /// this reply (to be forwarded now) and where the walk stopped, and
    /// adds the packets among them that must be looked at to `specials`.
    pub fn walk(
        &mut self,
        buf: &[u8],
        specials: &mut Vec<Special>,
    ) -> Result<(usize, Walked), ProtocolError> {
        let mut at = 0;
        loop {
            if self.body_left > 0 {
                let take = self.body_left.min(buf.len() - at);
                if self.hash_body {
                    if let (Some(digest), Some(bytes)) =
                        (self.digest.as_mut(), buf.get(at..at + take))
                    {
                        digest.body(bytes);
                    }
                }
                at += take;
                self.body_left -= take;
                if self.body_left > 0 {
                    return Ok((
                        at,
                        Walked::NeedMore {
                            want: self.body_left.min(WHOLE_PACKET_LIMIT),
                        },
                    ));
                }
            }
            match self.after_body.take() {
                Some(Step::Done(ending)) => return Ok((at, Walked::Done(ending))),
                Some(Step::LocalInfile) => return Ok((at, Walked::LocalInfile)),
                Some(Step::More) | None => {}
            }
            // Whole rows, a result's bulk, go by in a few comparisons
            // each, and into the digest in one piece; anything else takes
            // the packet-by-packet path below.
            let rows_from = at;
            while let Some(header) = self.tracker.take_row(buf.get(at..).unwrap_or_default()) {
                self.started = true;
                self.next_seq = header.seq.wrapping_add(1);
                at += header.total_len();
            }
            if at > rows_from {
                if let (Some(digest), Some(rows)) = (self.digest.as_mut(), buf.get(rows_from..at)) {
                    digest.rows(rows);
                }
            }
            let rest = &buf[at..];
            let Some(header) = PacketHeader::parse(rest) else {
                return Ok((
                    at,
                    Walked::NeedMore {
                        want: HEADER_LEN - rest.len(),
                    },
                ));
            };
            let available = rest.len() - HEADER_LEN;
            let needed = if header.len <= WHOLE_PACKET_LIMIT {
                header.len
            } else {
                HEAD_LEN
            };
            if available < needed {
                return Ok((
                    at,
                    Walked::NeedMore {
                        want: needed - available,
                    },
                ));
            }
            let head = &rest[HEADER_LEN..HEADER_LEN + available.min(header.len)];
            let step = self.tracker.on_packet(header, head)?;
            self.started = true;
            self.hash_body = match self.digest.as_mut() {
                Some(digest) => digest.packet(self.tracker.last_packet(), header, head),
                None => false,
            };
            let special = match self.tracker.last_packet() {
                PacketClass::PrepareOk => true,
                // Also an OK that reports an insert id: LAST_INSERT_ID()
                // is part of the session's state.
                PacketClass::Ok(status) => {
                    status.has(ServerStatus::SESSION_STATE_CHANGED) || reports_insert_id(head)
                }
                _ => false,
            };
            if special {
                // Status packets are small: whole, since they are below
                // the whole-packet limit.
                specials.push(Special {
                    at,
                    len: header.total_len(),
                    class: self.tracker.last_packet(),
                });
            }
            self.next_seq = header.seq.wrapping_add(1);
            at += HEADER_LEN;
            self.body_left = header.len;
            if step != Step::More {
                self.after_body = Some(step);
            }
        }
    }
}

/// Whether an OK packet's payload (its start is enough) reports a
/// non-zero last insert id. Two length-encoded integers, decoded here so
/// the common OK packet is not parsed whole.
fn reports_insert_id(payload: &[u8]) -> bool {
    use torpor_protocol::lenenc::read_int;
    let Some(after_header) = payload.get(1..) else {
        return false;
    };
    let Some((_, affected_len)) = read_int(after_header) else {
        return false;
    };
    after_header
        .get(affected_len..)
        .and_then(read_int)
        .is_some_and(|(id, _)| id != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use torpor_protocol::command::ReplyKind;
    use torpor_protocol::frame::{write_payload, MAX_PAYLOAD};
    use torpor_protocol::Capabilities;

    /// A text result set: one column, one row, its EOF terminator.
    fn one_row_result_set() -> BytesMut {
        let mut wire = BytesMut::new();
        write_payload(&mut wire, 1, b"\x01");
        write_payload(
            &mut wire,
            2,
            b"\x03def\x00\x00\x00\x01a\x00\x0c?\x00\x01\x00\x00\x00\x03\x81\x00\x00\x00\x00",
        );
        write_payload(&mut wire, 3, b"\x011");
        write_payload(&mut wire, 4, b"\xfe\x00\x00\x02\x00\x00\x00");
        wire
    }

    fn walk_for(kind: ReplyKind) -> ReplyWalk {
        let caps = Capabilities::CLIENT_DEPRECATE_EOF;
        ReplyWalk::new(Command::Query, ReplyTracker::new(kind, caps).unwrap(), 1)
    }

    #[test]
    fn an_ok_with_an_insert_id_is_told_apart_cheaply() {
        assert!(!reports_insert_id(b"\x00\x01\x00\x02\x00\x00\x00"));
        assert!(reports_insert_id(b"\x00\x01\x2a\x02\x00\x00\x00"));
        // Two-byte affected rows, then a three-byte insert id.
        assert!(reports_insert_id(b"\x00\xfc\x00\x01\xfd\x01\x00\x00"));
        assert!(!reports_insert_id(b"\x00"));
        assert!(!reports_insert_id(b""));
        assert!(!reports_insert_id(b"\x00\xfc\x00"));
    }

    #[test]
    fn stops_exactly_at_the_end_of_a_reply_and_leaves_the_next() {
        let mut wire = BytesMut::new();
        write_payload(&mut wire, 1, b"\x00\x00\x00\x02\x00\x00\x00");
        let first = wire.len();
        write_payload(&mut wire, 1, b"\x00\x00\x00\x02\x00\x00\x00");
        let mut walk = walk_for(ReplyKind::Single);
        let (n, walked) = walk.walk(&wire, &mut Vec::new()).unwrap();
        assert_eq!(n, first);
        assert!(matches!(walked, Walked::Done(_)));
        assert_eq!(walk.next_seq, 2);
    }

    #[test]
    fn byte_by_byte_arrival_gives_the_same_boundaries() {
        let wire = one_row_result_set();
        let mut walk = walk_for(ReplyKind::Results);
        let mut buffered = Vec::new();
        let mut forwarded = 0;
        let mut done = false;
        for &b in wire.iter() {
            buffered.push(b);
            let (n, walked) = walk.walk(&buffered, &mut Vec::new()).unwrap();
            buffered.drain(..n);
            forwarded += n;
            if matches!(walked, Walked::Done(_)) {
                done = true;
            }
        }
        assert!(done);
        assert_eq!(forwarded, wire.len());
    }

    #[test]
    fn digests_do_not_depend_on_how_the_reply_arrives() {
        let wire = one_row_result_set();
        let whole = {
            let mut walk = walk_for(ReplyKind::Results).digested();
            walk.walk(&wire, &mut Vec::new()).unwrap();
            walk.outcome().unwrap()
        };
        let mut walk = walk_for(ReplyKind::Results).digested();
        let mut buffered = Vec::new();
        for &b in wire.iter() {
            buffered.push(b);
            let (n, _) = walk.walk(&buffered, &mut Vec::new()).unwrap();
            buffered.drain(..n);
        }
        assert_eq!(walk.outcome().unwrap(), whole);

        // Another row value: another digest; the terminator's flags count
        // for nothing.
        let mut other = BytesMut::new();
        write_payload(&mut other, 1, b"\x01");
        write_payload(
            &mut other,
            2,
            b"\x03def\x00\x00\x00\x01a\x00\x0c?\x00\x01\x00\x00\x00\x03\x81\x00\x00\x00\x00",
        );
        write_payload(&mut other, 3, b"\x012");
        write_payload(&mut other, 4, b"\xfe\x00\x00\x03\x40\x00\x00");
        let mut walk = walk_for(ReplyKind::Results).digested();
        walk.walk(&other, &mut Vec::new()).unwrap();
        assert_ne!(walk.outcome().unwrap(), whole);
        assert!(walk_for(ReplyKind::Results).outcome().is_none());
    }

    /// A text result set of `rows` rows of varied lengths (a few empty
    /// strings, a NULL, one that starts with 0xFC), its OK terminator.
    fn many_rows_result_set(rows: usize) -> BytesMut {
        let mut wire = BytesMut::new();
        let mut seq = write_payload(&mut wire, 1, b"\x01");
        seq = write_payload(
            &mut wire,
            seq,
            b"\x03def\x00\x00\x00\x01a\x00\x0c?\x00\x01\x00\x00\x00\x03\x81\x00\x00\x00\x00",
        );
        for i in 0..rows {
            let row: Vec<u8> = match i % 5 {
                0 => vec![0],
                1 => vec![0xfb],
                2 => {
                    let mut row = vec![0xfc, 0x2c, 0x01];
                    row.resize(3 + 300, b'r');
                    row
                }
                _ => {
                    let text = format!("row {i}");
                    let mut row = vec![text.len() as u8];
                    row.extend_from_slice(text.as_bytes());
                    row
                }
            };
            seq = write_payload(&mut wire, seq, &row);
        }
        write_payload(&mut wire, seq, b"\xfe\x00\x00\x02\x00\x00\x00");
        wire
    }

    /// The digest of `wire` as a transaction's replay takes it: payload
    /// by payload through a tracker (`session::transaction`).
    fn digest_packet_by_packet(wire: &[u8]) -> Outcome {
        let caps = Capabilities::CLIENT_DEPRECATE_EOF;
        let mut tracker = ReplyTracker::new(ReplyKind::Results, caps).unwrap();
        let mut digest = ReplyDigest::default();
        let mut rest = wire;
        while let Some(header) = PacketHeader::parse(rest) {
            let payload = &rest[HEADER_LEN..header.total_len()];
            tracker.on_packet(header, payload).unwrap();
            super::super::transaction::digest_payload(
                &mut digest,
                tracker.last_packet(),
                header.seq,
                payload,
            );
            rest = &rest[header.total_len()..];
        }
        digest.finish()
    }

    #[test]
    fn rows_taken_whole_walk_and_digest_as_packet_by_packet() {
        let wire = many_rows_result_set(200);
        let reference = digest_packet_by_packet(&wire);
        // Whole, then in pieces of every size from a byte to more than a
        // row: the same boundaries and sequence ids, the same digest as
        // the packet-by-packet reading.
        for piece in [wire.len(), 1, 2, 3, 5, 7, 64, 301, 4096] {
            let mut walk = walk_for(ReplyKind::Results).digested();
            let mut buffered = Vec::new();
            let mut forwarded = 0;
            let mut ending = None;
            for chunk in wire.chunks(piece) {
                buffered.extend_from_slice(chunk);
                let (n, walked) = walk.walk(&buffered, &mut Vec::new()).unwrap();
                buffered.drain(..n);
                forwarded += n;
                if let Walked::Done(end) = walked {
                    ending = Some(end);
                }
            }
            assert_eq!(forwarded, wire.len(), "pieces of {piece}");
            assert!(
                matches!(ending, Some(Ending::Status(_))),
                "pieces of {piece}"
            );
            assert_eq!(walk.next_seq, 203u8.wrapping_add(1), "pieces of {piece}");
            assert_eq!(walk.outcome().unwrap(), reference, "pieces of {piece}");
        }
        // Another row: another digest.
        let mut other = many_rows_result_set(200);
        let at = other.len() - 15;
        other[at] ^= 1;
        assert_ne!(digest_packet_by_packet(&other), reference);
    }

    #[test]
    fn big_rows_stream_without_being_buffered_whole() {
        let mut walk = walk_for(ReplyKind::Fetch);
        let mut wire = BytesMut::new();
        wire.extend_from_slice(
            &PacketHeader {
                len: MAX_PAYLOAD,
                seq: 1,
            }
            .encode(),
        );
        wire.extend_from_slice(&[0u8; 100]);
        let (n, walked) = walk.walk(&wire, &mut Vec::new()).unwrap();
        assert_eq!(n, wire.len(), "header and head forwarded at once");
        assert!(matches!(walked, Walked::NeedMore { .. }));
    }
}
