//! The reply tracker, fed a backend's reply the way the proxy's reply walk
//! feeds it: whole packets up to 1 MiB, only the head of larger ones (the
//! rest streams through unseen).
//!
//! Checks: it never panics; the bytes it is shown stay within the input;
//! a tracker shown only the first `HEAD_LEN` bytes of each packet says
//! exactly what one shown whole packets says; nothing is accepted after
//! the end; the journal's digest of the reply takes whatever it classed.
//!
//! Input: a reply kind byte (torpor_fuzz::reply_kind), a capabilities byte
//! (torpor_fuzz::caps), a flags byte (bit 0: a cursor was asked for), then
//! the packets as they come on the wire.

#![no_main]

use libfuzzer_sys::fuzz_target;
use torpor_protocol::command::ReplyKind;
use torpor_protocol::frame::{PacketHeader, HEADER_LEN};
use torpor_protocol::reply::{PacketClass, ReplyTracker, Step, HEAD_LEN};
use torpor_protocol::ProtocolError;
use torpor_replay::journal::ReplyDigest;

/// The proxy looks at packets up to this size whole (proxy/src/session/reply.rs).
const WHOLE_PACKET_LIMIT: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&[kind, caps, flags], stream)) = data.split_first_chunk::<3>() else {
        return;
    };
    let kind = torpor_fuzz::reply_kind(kind);
    let caps = torpor_fuzz::caps(caps);
    let cursor = flags & 1 != 0;
    let new = || {
        ReplyTracker::new(kind, caps)
            .expect("a tracked kind")
            .with_cursor_requested(cursor)
    };
    let mut whole = new();
    let mut heads = new();
    let mut digest = ReplyDigest::new();
    assert!(!whole.is_finished());
    assert_eq!(whole.cursor_requested(), cursor);

    let mut at = 0;
    while let Some(header) = stream.get(at..).and_then(PacketHeader::parse) {
        let body = &stream[at + HEADER_LEN..];
        let shown = if header.len <= WHOLE_PACKET_LIMIT {
            header.len
        } else {
            HEAD_LEN
        };
        let Some(head) = body.get(..shown) else {
            break;
        };
        // A row taken whole (the drain's shortcut) is what the packet
        // by packet path makes of it.
        let taken = whole.clone().take_row(&stream[at..]);
        let was_finished = whole.is_finished();
        let step = whole.on_packet(header, head);
        if let Some(taken) = taken {
            assert_eq!(taken, header);
            assert_eq!(step, Ok(Step::More), "a row taken whole ends nothing");
            assert_eq!(whole.last_packet(), PacketClass::Row);
        }
        let short = &head[..head.len().min(HEAD_LEN)];
        assert_eq!(heads.on_packet(header, short), step, "the head is enough");
        assert_eq!(heads.last_packet(), whole.last_packet());
        assert_eq!(heads.is_finished(), whole.is_finished());
        assert_eq!(heads.prepare_ok(), whole.prepare_ok());
        at += HEADER_LEN + head.len();
        assert!(
            at <= stream.len(),
            "the tracker was shown bytes past the input"
        );

        if was_finished {
            assert!(
                matches!(step, Err(ProtocolError::Unexpected { .. })),
                "a packet after the end is refused"
            );
            break;
        }
        match step {
            Ok(Step::More) => assert!(!whole.is_finished()),
            Ok(Step::Done(_)) => assert!(whole.is_finished()),
            Ok(Step::LocalInfile) => {
                assert_eq!(kind, ReplyKind::Results);
                assert!(!whole.is_finished());
            }
            // A broken reply: the proxy closes the connection.
            Err(_) => break,
        }
        if whole.last_packet() == PacketClass::PrepareOk {
            assert_eq!(kind, ReplyKind::Prepare);
            assert!(whole.prepare_ok().is_some());
        }
        if digest.packet(whole.last_packet(), header, head) {
            digest.body(head);
        }
    }
    let outcome = digest.finish();
    if kind != ReplyKind::Prepare {
        assert_eq!(whole.prepare_ok(), None);
    }
    let _ = outcome.difference(&ReplyDigest::new().finish());
});
