//! OK / ERR / EOF status reads, text rows, length-encoded values and
//! command bytes.
//!
//! Input: a capabilities byte (torpor_fuzz::caps; its low bits also give
//! a text row's column count), then the payload.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use torpor_protocol::command::{self, Command};
use torpor_protocol::lenenc;
use torpor_protocol::packets::{
    eof_status, ok_status, terminator_status, write_err, ErrPacket, EOF_HEADER,
};
use torpor_protocol::resultset::text_row;
use torpor_protocol::session_track::OkPacket;
use torpor_protocol::Capabilities;

fuzz_target!(|data: &[u8]| {
    let Some((&context, payload)) = data.split_first() else {
        return;
    };
    let caps = torpor_fuzz::caps(context);

    // The tracker's quick status read agrees with the full OK decoder.
    if let Ok(status) = ok_status(payload) {
        let ok = OkPacket::parse(payload, caps);
        if let Ok(ok) = ok {
            assert_eq!(ok.status, status);
        }
    }
    if let Ok(status) = eof_status(payload) {
        assert_eq!(payload.first(), Some(&EOF_HEADER));
        assert_eq!(terminator_status(payload, Capabilities::EMPTY), Ok(status));
    }
    let _ = terminator_status(payload, caps);

    if let Ok(err) = ErrPacket::parse(payload) {
        let _ = err.is_progress_report();
        if let (Some(state), Ok(message)) = (err.sql_state, std::str::from_utf8(err.message)) {
            let mut wire = BytesMut::new();
            assert_eq!(write_err(&mut wire, 3, err.code, &state, message), 4);
            assert_eq!(
                &wire[4..],
                payload,
                "an ERR packet is written as it was read"
            );
        }
    }

    let columns = usize::from(context & 0x0f);
    if let Ok(values) = text_row(payload, columns) {
        assert_eq!(values.len(), columns);
        let mut wire = BytesMut::new();
        for value in &values {
            match value {
                Some(bytes) => lenenc::put_bytes(&mut wire, bytes),
                None => wire.extend_from_slice(&[0xFB]),
            }
        }
        assert!(
            wire.len() <= payload.len(),
            "minimal encoding is never longer"
        );
        assert_eq!(text_row(&wire, columns).as_ref(), Ok(&values));
    }

    if let Some((value, used)) = lenenc::read_int(payload) {
        assert!(used <= payload.len());
        let mut wire = BytesMut::new();
        lenenc::put_int(&mut wire, value);
        assert!(wire.len() <= used);
        assert_eq!(lenenc::read_int(&wire), Some((value, wire.len())));
    }
    if let Some((bytes, used)) = lenenc::read_bytes(payload) {
        assert!(used <= payload.len() && bytes.len() <= used);
    }

    if let Some(&byte) = payload.first() {
        if let Some(command) = Command::from_byte(byte) {
            assert_eq!(command as u8, byte);
            let _ = (command.reply_kind(), command.name());
        }
    }
    let id = command::statement_id(payload);
    assert_eq!(id.is_some(), payload.len() >= 5);
});
