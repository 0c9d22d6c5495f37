//! OK packets in full: their info text and the session-state changes
//! MariaDB reports in them when the connection negotiated
//! CLIENT_SESSION_TRACK.
//!
//! Written here rather than taken from `mysql_common`, whose decoder
//! rejects the whole packet on a change kind it does not know; a proxy must
//! keep going (and keep such a change as [`SessionChange::Unknown`]).

use bytes::{BufMut, BytesMut};

use crate::caps::Capabilities;
use crate::lenenc;
use crate::packets::ServerStatus;
use crate::ProtocolError;

/// A decoded OK packet (header 0x00, or 0xFE when it ends a result set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OkPacket<'a> {
    /// The header byte.
    pub header: u8,
    /// Affected rows.
    pub affected_rows: u64,
    /// Last insert id.
    pub last_insert_id: u64,
    /// Status flags.
    pub status: ServerStatus,
    /// Warning count.
    pub warnings: u16,
    /// Human-readable info (e.g. "Rows matched: 1 Changed: 1").
    pub info: &'a [u8],
    /// The raw session-state block, when the status says it changed.
    pub session_state: &'a [u8],
}

/// One reported change of session state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionChange<'a> {
    /// A system variable's new value.
    SystemVariable {
        /// Its name.
        name: &'a [u8],
        /// Its value, as text.
        value: &'a [u8],
    },
    /// The current schema.
    Schema(&'a [u8]),
    /// Some state changed that has no tracker of its own (user variables,
    /// temporary tables, prepared statements…).
    StateChanged,
    /// GTIDs (not sent by MariaDB today).
    Gtids(&'a [u8]),
    /// `SET TRANSACTION …` statements that recreate the current
    /// transaction's characteristics; empty when back to defaults.
    TransactionCharacteristics(&'a [u8]),
    /// Transaction state flags, eight characters such as `T___W___`.
    TransactionState(&'a [u8]),
    /// A kind this code does not know, kept as it came.
    Unknown {
        /// The kind byte.
        kind: u8,
        /// Its data.
        data: &'a [u8],
    },
}

impl<'a> OkPacket<'a> {
    /// Decodes an OK packet of a connection with `caps`.
    pub fn parse(payload: &'a [u8], caps: Capabilities) -> Result<OkPacket<'a>, ProtocolError> {
        let bad = || ProtocolError::malformed("OK packet");
        let (&header, rest) = payload.split_first().ok_or_else(bad)?;
        let (affected_rows, n) = lenenc::read_int(rest).ok_or_else(bad)?;
        let rest = rest.get(n..).ok_or_else(bad)?;
        let (last_insert_id, n) = lenenc::read_int(rest).ok_or_else(bad)?;
        let rest = rest.get(n..).ok_or_else(bad)?;
        let (status, rest) = rest.split_first_chunk::<2>().ok_or_else(bad)?;
        let status = ServerStatus(u16::from_le_bytes(*status));
        let (warnings, rest) = rest.split_first_chunk::<2>().ok_or_else(bad)?;
        let warnings = u16::from_le_bytes(*warnings);
        let (info, session_state): (&[u8], &[u8]) = if rest.is_empty() {
            (&[], &[])
        } else if caps.contains(Capabilities::CLIENT_SESSION_TRACK) {
            let (info, n) = lenenc::read_bytes(rest).ok_or_else(bad)?;
            let after = rest.get(n..).ok_or_else(bad)?;
            if status.has(ServerStatus::SESSION_STATE_CHANGED) && !after.is_empty() {
                let (state, _) = lenenc::read_bytes(after).ok_or_else(bad)?;
                (info, state)
            } else {
                (info, &[])
            }
        } else {
            // Servers write the info as a length-encoded string here too,
            // though old documents say string<EOF>; accept both.
            match lenenc::read_bytes(rest) {
                Some((info, n)) if n == rest.len() => (info, &[]),
                _ => (rest, &[]),
            }
        };
        Ok(OkPacket {
            header,
            affected_rows,
            last_insert_id,
            status,
            warnings,
            info,
            session_state,
        })
    }

    /// The session-state changes this packet reports, in order.
    pub fn changes(&self) -> Result<Changes<'a>, ProtocolError> {
        parse_changes(self.session_state)
    }

    /// Encodes the packet with `state` as its session-state block instead
    /// of its own (an empty block: no changes, and no flag).
    pub fn encode_with_state(&self, caps: Capabilities, state: &[u8], dst: &mut BytesMut) {
        let mut packet = self.clone();
        packet.session_state = state;
        if state.is_empty() {
            packet.status.0 &= !ServerStatus::SESSION_STATE_CHANGED;
        } else {
            packet.status.0 |= ServerStatus::SESSION_STATE_CHANGED;
        }
        packet.encode_for(caps, dst);
    }

    /// Encodes the packet for a client with `caps`: without
    /// CLIENT_SESSION_TRACK the session-state block and its status flag
    /// are left out, as MariaDB does for such a client.
    pub fn encode_for(&self, caps: Capabilities, dst: &mut BytesMut) {
        let tracked = caps.contains(Capabilities::CLIENT_SESSION_TRACK);
        let mut status = self.status;
        if !tracked {
            status.0 &= !ServerStatus::SESSION_STATE_CHANGED;
        }
        dst.put_u8(self.header);
        lenenc::put_int(dst, self.affected_rows);
        lenenc::put_int(dst, self.last_insert_id);
        dst.put_u16_le(status.0);
        dst.put_u16_le(self.warnings);
        if tracked {
            if !self.info.is_empty() || status.has(ServerStatus::SESSION_STATE_CHANGED) {
                lenenc::put_bytes(dst, self.info);
            }
            if status.has(ServerStatus::SESSION_STATE_CHANGED) {
                lenenc::put_bytes(dst, self.session_state);
            }
        } else if !self.info.is_empty() {
            lenenc::put_bytes(dst, self.info);
        }
    }
}

/// Encodes changes as a session-state block (the inverse of
/// [`parse_changes`]).
pub fn encode_changes(changes: &[SessionChange<'_>], dst: &mut BytesMut) {
    for change in changes {
        let mut data = BytesMut::new();
        let kind = match change {
            SessionChange::SystemVariable { name, value } => {
                // One entry per variable, as MariaDB sends them: libmariadb
                // reads exactly one name and value from an entry and calls
                // anything more a malformed packet (2027).
                lenenc::put_bytes(&mut data, name);
                lenenc::put_bytes(&mut data, value);
                0
            }
            SessionChange::Schema(schema) => {
                lenenc::put_bytes(&mut data, schema);
                1
            }
            SessionChange::StateChanged => {
                data.put_slice(b"1");
                2
            }
            SessionChange::Gtids(raw) => {
                data.put_slice(raw);
                3
            }
            SessionChange::TransactionCharacteristics(text) => {
                lenenc::put_bytes(&mut data, text);
                4
            }
            SessionChange::TransactionState(flags) => {
                lenenc::put_bytes(&mut data, flags);
                5
            }
            SessionChange::Unknown { kind, data: raw } => {
                data.put_slice(raw);
                *kind
            }
        };
        dst.put_u8(kind);
        lenenc::put_bytes(dst, &data);
    }
}

/// A block's session-state changes. An OK packet reports a few at most
/// (a transaction's state, a variable or two), and every one inside a
/// transaction that Torpor follows reports some: kept on the stack, where
/// a `Vec` cost a `malloc` and a `free` per OK (~100 instructions of a
/// read-only query, callgrind).
pub type Changes<'a> = smallvec::SmallVec<[SessionChange<'a>; 4]>;

/// Decodes a session-state block: a sequence of (kind, length-encoded
/// data) entries.
pub fn parse_changes(mut block: &[u8]) -> Result<Changes<'_>, ProtocolError> {
    let bad = || ProtocolError::malformed("session state information");
    let mut changes = Changes::new();
    while let Some((&kind, rest)) = block.split_first() {
        let (data, n) = lenenc::read_bytes(rest).ok_or_else(bad)?;
        block = rest.get(n..).ok_or_else(bad)?;
        match kind {
            0 => {
                let mut vars = data;
                while !vars.is_empty() {
                    let (name, n) = lenenc::read_bytes(vars).ok_or_else(bad)?;
                    vars = vars.get(n..).ok_or_else(bad)?;
                    let (value, m) = lenenc::read_bytes(vars).ok_or_else(bad)?;
                    vars = vars.get(m..).ok_or_else(bad)?;
                    changes.push(SessionChange::SystemVariable { name, value });
                }
            }
            1 => changes.push(SessionChange::Schema(
                lenenc::read_bytes(data).ok_or_else(bad)?.0,
            )),
            2 => changes.push(SessionChange::StateChanged),
            3 => changes.push(SessionChange::Gtids(data)),
            4 => changes.push(SessionChange::TransactionCharacteristics(
                lenenc::read_bytes(data).ok_or_else(bad)?.0,
            )),
            5 => changes.push(SessionChange::TransactionState(
                lenenc::read_bytes(data).ok_or_else(bad)?.0,
            )),
            kind => changes.push(SessionChange::Unknown { kind, data }),
        }
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    const TRACK: Capabilities = Capabilities::CLIENT_SESSION_TRACK;

    // MariaDB 10.11.19 replies, with session tracking on.
    const SET_SQL_MODE: &str = "00000002c00000004a00450873716c5f6d6f64653b5245414c5f41535f464c4f41542c50495045535f41535f434f4e4341542c414e53495f51554f5445532c49474e4f52455f53504143452c414e5349020131";
    const USE_TEST: &str = "00000002c00000000a01050474657374020131";
    const BEGIN: &str =
        "00000003c000000020050908545f5f5f5f5f5f5f0413125354415254205452414e53414354494f4e3b";
    const INSERT_IN_TRANSACTION: &str = "00010003c00000000b050908545f5f5f575f5f5f";
    // `SET NAMES utf8` (10.11.19): three variables, each its own entry.
    const SET_NAMES_UTF8: &str = "0000000040000000650021186368617261637465725f7365745f636f6e6e656374696f6e07757466386d6233001d146368617261637465725f7365745f636c69656e7407757466386d6233001e156368617261637465725f7365745f726573756c747307757466386d6233020131";
    // `SET @@session.sql_mode='ANSI', @@session.autocommit=0` (10.11.19).
    const TWO_VARIABLES: &str = "00000000c00000005b000f0a6175746f636f6d6d6974034f464600450873716c5f6d6f64653b5245414c5f41535f464c4f41542c50495045535f41535f434f4e4341542c414e53495f51554f5445532c49474e4f52455f53504143452c414e5349020131";

    #[test]
    fn fixtures_decode() {
        let wire = hex(SET_SQL_MODE);
        let ok = OkPacket::parse(&wire, TRACK).unwrap();
        assert_eq!(
            ok.changes().unwrap().to_vec(),
            vec![
                SessionChange::SystemVariable {
                    name: b"sql_mode",
                    value: b"REAL_AS_FLOAT,PIPES_AS_CONCAT,ANSI_QUOTES,IGNORE_SPACE,ANSI"
                },
                SessionChange::StateChanged,
            ]
        );
        let wire = hex(USE_TEST);
        let ok = OkPacket::parse(&wire, TRACK).unwrap();
        assert_eq!(
            ok.changes().unwrap().to_vec(),
            vec![SessionChange::Schema(b"test"), SessionChange::StateChanged]
        );
        let wire = hex(BEGIN);
        let ok = OkPacket::parse(&wire, TRACK).unwrap();
        assert!(ok.status.has(ServerStatus::IN_TRANS));
        assert_eq!(
            ok.changes().unwrap().to_vec(),
            vec![
                SessionChange::TransactionState(b"T_______"),
                SessionChange::TransactionCharacteristics(b"START TRANSACTION;"),
            ]
        );
        let wire = hex(INSERT_IN_TRANSACTION);
        let ok = OkPacket::parse(&wire, TRACK).unwrap();
        assert_eq!(ok.affected_rows, 1);
        assert_eq!(
            ok.changes().unwrap().to_vec(),
            vec![SessionChange::TransactionState(b"T___W___")]
        );
    }

    #[test]
    fn clients_without_tracking_get_plain_ok_packets() {
        let wire = hex(USE_TEST);
        let ok = OkPacket::parse(&wire, TRACK).unwrap();
        let mut plain = BytesMut::new();
        ok.encode_for(Capabilities::EMPTY, &mut plain);
        assert_eq!(&plain[..], b"\x00\x00\x00\x02\x80\x00\x00");
        let back = OkPacket::parse(&plain, Capabilities::EMPTY).unwrap();
        assert!(!back.status.has(ServerStatus::SESSION_STATE_CHANGED));
        let mut tracked = BytesMut::new();
        ok.encode_for(TRACK, &mut tracked);
        assert_eq!(
            &tracked[..],
            &wire[..],
            "re-encoding for a tracking client changes nothing"
        );
    }

    #[test]
    fn blocks_round_trip() {
        for fixture in [
            SET_SQL_MODE,
            USE_TEST,
            BEGIN,
            INSERT_IN_TRANSACTION,
            SET_NAMES_UTF8,
            TWO_VARIABLES,
        ] {
            let wire = hex(fixture);
            let ok = OkPacket::parse(&wire, TRACK).unwrap();
            let changes = ok.changes().unwrap();
            let mut block = BytesMut::new();
            encode_changes(&changes, &mut block);
            assert_eq!(&block[..], ok.session_state, "{fixture}");
        }
    }

    /// libmariadb reads one name and value per entry and rejects a packet
    /// whose entry holds more (client error 2027 on `SET NAMES utf8`).
    #[test]
    fn several_variables_are_encoded_one_entry_each() {
        let wire = hex(SET_NAMES_UTF8);
        let ok = OkPacket::parse(&wire, TRACK).unwrap();
        let changes = ok.changes().unwrap();
        assert_eq!(changes.len(), 4);
        let variables: Vec<_> = changes
            .into_iter()
            .filter(|c| matches!(c, SessionChange::SystemVariable { .. }))
            .collect();
        let mut block = BytesMut::new();
        encode_changes(&variables, &mut block);
        let mut entries = 0;
        let mut rest = &block[..];
        while let Some((&kind, after)) = rest.split_first() {
            assert_eq!(kind, 0);
            let (data, n) = lenenc::read_bytes(after).unwrap();
            let (_, a) = lenenc::read_bytes(data).unwrap();
            let (_, b) = lenenc::read_bytes(&data[a..]).unwrap();
            assert_eq!(a + b, data.len(), "one name and one value per entry");
            rest = &after[n..];
            entries += 1;
        }
        assert_eq!(entries, 3);
    }

    #[test]
    fn unknown_kinds_are_kept() {
        let block = b"\x09\x02ab\x02\x011";
        assert_eq!(
            parse_changes(block).unwrap().to_vec(),
            vec![
                SessionChange::Unknown {
                    kind: 9,
                    data: b"ab"
                },
                SessionChange::StateChanged
            ]
        );
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64), caps in any::<u64>()) {
            if let Ok(ok) = OkPacket::parse(&bytes, Capabilities(caps)) {
                let _ = ok.changes();
                let mut out = BytesMut::new();
                ok.encode_for(Capabilities(caps), &mut out);
            }
            let _ = parse_changes(&bytes);
        }
    }
}
