//! OK, ERR and EOF packets: the parts of them a proxy reads, and the ones
//! it writes itself.
//!
//! The reply tracker only needs a packet's status flags, so they are read
//! directly here; the full OK packet with session-state data is decoded
//! in [`crate::session_track`] where state tracking needs it.

use bytes::{BufMut, BytesMut};

use crate::caps::Capabilities;
use crate::frame::write_payload;
use crate::lenenc;
use crate::ProtocolError;

/// Header byte of an OK packet.
pub const OK_HEADER: u8 = 0x00;
/// Header byte of an EOF packet, and of an OK packet that ends a result
/// set under CLIENT_DEPRECATE_EOF.
pub const EOF_HEADER: u8 = 0xFE;
/// Header byte of an ERR packet.
pub const ERR_HEADER: u8 = 0xFF;
/// Header byte of a LOCAL INFILE request.
pub const LOCAL_INFILE_HEADER: u8 = 0xFB;
/// Error code MariaDB uses for a progress report in an ERR packet.
pub const PROGRESS_REPORT_CODE: u16 = 0xFFFF;

/// Server status flags, as in OK and EOF packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServerStatus(pub u16);

impl ServerStatus {
    /// A transaction is open.
    pub const IN_TRANS: u16 = 0x0001;
    /// Autocommit is on.
    pub const AUTOCOMMIT: u16 = 0x0002;
    /// Another result follows this one.
    pub const MORE_RESULTS_EXISTS: u16 = 0x0008;
    /// A cursor was opened; rows come with COM_STMT_FETCH.
    pub const CURSOR_EXISTS: u16 = 0x0040;
    /// The cursor's last row was sent.
    pub const LAST_ROW_SENT: u16 = 0x0080;
    /// The transaction is read-only.
    pub const IN_TRANS_READONLY: u16 = 0x2000;
    /// Session state changed; details are in the OK packet.
    pub const SESSION_STATE_CHANGED: u16 = 0x4000;

    /// Whether `flag` is set.
    #[inline]
    pub fn has(self, flag: u16) -> bool {
        self.0 & flag != 0
    }
}

/// Reads the status flags of an OK packet (header 0x00, or 0xFE when it
/// ends a result set under CLIENT_DEPRECATE_EOF).
pub fn ok_status(payload: &[u8]) -> Result<ServerStatus, ProtocolError> {
    let bad = || ProtocolError::malformed("OK packet");
    let rest = payload.get(1..).ok_or_else(bad)?;
    let (_, affected_len) = lenenc::read_int(rest).ok_or_else(bad)?;
    let rest = rest.get(affected_len..).ok_or_else(bad)?;
    let (_, insert_id_len) = lenenc::read_int(rest).ok_or_else(bad)?;
    let status = rest.get(insert_id_len..).and_then(|s| s.first_chunk::<2>());
    Ok(ServerStatus(u16::from_le_bytes(*status.ok_or_else(bad)?)))
}

/// Reads the status flags of a classic EOF packet (0xFE, warnings, status).
pub fn eof_status(payload: &[u8]) -> Result<ServerStatus, ProtocolError> {
    match payload {
        [EOF_HEADER, _, _, lo, hi, ..] => Ok(ServerStatus(u16::from_le_bytes([*lo, *hi]))),
        _ => Err(ProtocolError::malformed("EOF packet")),
    }
}

/// Reads the status flags of whatever ends a result set: an EOF packet, or
/// an OK packet with header 0xFE under CLIENT_DEPRECATE_EOF.
pub fn terminator_status(
    payload: &[u8],
    caps: Capabilities,
) -> Result<ServerStatus, ProtocolError> {
    if caps.contains(Capabilities::CLIENT_DEPRECATE_EOF) {
        ok_status(payload)
    } else {
        eof_status(payload)
    }
}

/// A decoded ERR packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrPacket<'a> {
    /// Error code.
    pub code: u16,
    /// SQLSTATE, when the packet has one.
    pub sql_state: Option<[u8; 5]>,
    /// Human-readable message.
    pub message: &'a [u8],
}

impl<'a> ErrPacket<'a> {
    /// Decodes an ERR packet (CLIENT_PROTOCOL_41 form).
    pub fn parse(payload: &'a [u8]) -> Result<ErrPacket<'a>, ProtocolError> {
        let [ERR_HEADER, lo, hi, rest @ ..] = payload else {
            return Err(ProtocolError::malformed("ERR packet"));
        };
        let code = u16::from_le_bytes([*lo, *hi]);
        match rest {
            [b'#', a, b, c, d, e, message @ ..] => Ok(ErrPacket {
                code,
                sql_state: Some([*a, *b, *c, *d, *e]),
                message,
            }),
            message => Ok(ErrPacket {
                code,
                sql_state: None,
                message,
            }),
        }
    }

    /// Whether this is a MariaDB progress report rather than an error.
    pub fn is_progress_report(&self) -> bool {
        self.code == PROGRESS_REPORT_CODE
    }
}

/// Appends an ERR packet at sequence id `seq`; returns the next sequence id.
pub fn write_err(dst: &mut BytesMut, seq: u8, code: u16, sql_state: &[u8; 5], message: &str) -> u8 {
    let mut payload = BytesMut::with_capacity(9 + message.len());
    payload.put_u8(ERR_HEADER);
    payload.put_u16_le(code);
    payload.put_u8(b'#');
    payload.put_slice(sql_state);
    payload.put_slice(message.as_bytes());
    write_payload(dst, seq, &payload)
}

/// The fields of an OK packet that Torpor writes itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ok {
    /// Affected rows.
    pub affected_rows: u64,
    /// Last insert id.
    pub last_insert_id: u64,
    /// Status flags.
    pub status: ServerStatus,
    /// Warning count.
    pub warnings: u16,
}

/// Appends an OK packet at sequence id `seq`; returns the next sequence id.
pub fn write_ok(dst: &mut BytesMut, seq: u8, ok: Ok) -> u8 {
    write_payload(dst, seq, &ok_payload(OK_HEADER, ok))
}

fn ok_payload(header: u8, ok: Ok) -> BytesMut {
    let mut payload = BytesMut::with_capacity(24);
    payload.put_u8(header);
    lenenc::put_int(&mut payload, ok.affected_rows);
    lenenc::put_int(&mut payload, ok.last_insert_id);
    payload.put_u16_le(ok.status.0);
    payload.put_u16_le(ok.warnings);
    payload
}

/// Appends what ends a result set (or answers COM_SET_OPTION) for a client
/// with `caps`: an EOF packet, or an OK packet with header 0xFE under
/// CLIENT_DEPRECATE_EOF. Returns the next sequence id.
pub fn write_eof(
    dst: &mut BytesMut,
    seq: u8,
    caps: Capabilities,
    status: ServerStatus,
    warnings: u16,
) -> u8 {
    if caps.contains(Capabilities::CLIENT_DEPRECATE_EOF) {
        let ok = Ok {
            status,
            warnings,
            ..Ok::default()
        };
        write_payload(dst, seq, &ok_payload(EOF_HEADER, ok))
    } else {
        let mut payload = [EOF_HEADER, 0, 0, 0, 0];
        payload[1..3].copy_from_slice(&warnings.to_le_bytes());
        payload[3..5].copy_from_slice(&status.0.to_le_bytes());
        write_payload(dst, seq, &payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Captured from MariaDB 10.11.19.
    const OK_AFTER_PING: &[u8] = b"\x00\x00\x00\x02\x00\x00\x00";
    const EOF_MORE_RESULTS: &[u8] = b"\xfe\x00\x00\x0a\x00";
    const OK_TERMINATOR_CURSOR: &[u8] = b"\xfe\x00\x00\x42\x00\x00\x00";
    const ERR_UNKNOWN_COMMAND: &[u8] = b"\xff\x17\x04#08S01Unknown command";

    #[test]
    fn status_fixtures() {
        assert_eq!(
            ok_status(OK_AFTER_PING),
            Ok(ServerStatus(ServerStatus::AUTOCOMMIT))
        );
        let status = eof_status(EOF_MORE_RESULTS).unwrap();
        assert!(status.has(ServerStatus::MORE_RESULTS_EXISTS));
        let status =
            terminator_status(OK_TERMINATOR_CURSOR, Capabilities::CLIENT_DEPRECATE_EOF).unwrap();
        assert!(status.has(ServerStatus::CURSOR_EXISTS));
        assert!(ok_status(b"\x00\xfc\x01").is_err());
        assert!(eof_status(b"\xfe\x00").is_err());
    }

    #[test]
    fn err_fixture_round_trip() {
        let err = ErrPacket::parse(ERR_UNKNOWN_COMMAND).unwrap();
        assert_eq!(err.code, 1047);
        assert_eq!(err.sql_state, Some(*b"08S01"));
        assert_eq!(err.message, b"Unknown command");
        let mut wire = BytesMut::new();
        assert_eq!(
            write_err(&mut wire, 1, 1047, b"08S01", "Unknown command"),
            2
        );
        assert_eq!(&wire[4..], ERR_UNKNOWN_COMMAND);
        assert_eq!(wire[3], 1);
    }

    #[test]
    fn written_ok_and_eof_match_mariadb() {
        let mut wire = BytesMut::new();
        let ok = Ok {
            status: ServerStatus(ServerStatus::AUTOCOMMIT),
            ..Ok::default()
        };
        write_ok(&mut wire, 1, ok);
        assert_eq!(&wire[4..], OK_AFTER_PING);
        let mut wire = BytesMut::new();
        write_eof(&mut wire, 3, Capabilities::EMPTY, ServerStatus(0x0a), 0);
        assert_eq!(&wire[4..], EOF_MORE_RESULTS);
        let mut wire = BytesMut::new();
        write_eof(
            &mut wire,
            3,
            Capabilities::CLIENT_DEPRECATE_EOF,
            ServerStatus(0x42),
            0,
        );
        assert_eq!(&wire[4..], OK_TERMINATOR_CURSOR);
    }

    proptest! {
        #[test]
        fn ok_round_trip(affected in any::<u64>(), id in any::<u64>(), status in any::<u16>(), warnings in any::<u16>()) {
            let mut wire = BytesMut::new();
            write_ok(&mut wire, 0, Ok { affected_rows: affected, last_insert_id: id, status: ServerStatus(status), warnings });
            prop_assert_eq!(ok_status(&wire[4..]), Ok(ServerStatus(status)));
        }

        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..32)) {
            let _ = ok_status(&bytes);
            let _ = eof_status(&bytes);
            let _ = ErrPacket::parse(&bytes);
        }
    }
}
