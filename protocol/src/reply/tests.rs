//! Reply-boundary fixtures captured from MariaDB 10.11.19.

use super::*;

const DEP: Capabilities = Capabilities::CLIENT_DEPRECATE_EOF;
const CACHE: Capabilities = Capabilities::MARIADB_CLIENT_CACHE_METADATA;
const CLASSIC: Capabilities = Capabilities::EMPTY;

const COLUMN_A: &[u8] =
    b"\x03def\x00\x00\x00\x01a\x00\x0c?\x00\x01\x00\x00\x00\x03\x81\x00\x00\x00\x00";
const COLUMN_B: &[u8] =
    b"\x03def\x00\x00\x00\x01b\x00\x0c?\x00\x00\x00\x00\x00\x06\x80\x00\x00\x00\x00";
const EOF: &[u8] = b"\xfe\x00\x00\x02\x00";
const EOF_MORE: &[u8] = b"\xfe\x00\x00\x0a\x00";
const EOF_CURSOR: &[u8] = b"\xfe\x00\x00\x42\x00";
const EOF_LAST_ROW: &[u8] = b"\xfe\x00\x00\x82\x00";
const OK_END: &[u8] = b"\xfe\x00\x00\x02\x00\x00\x00";
const OK_END_MORE: &[u8] = b"\xfe\x00\x00\x0a\x00\x00\x00";
const OK_END_CURSOR: &[u8] = b"\xfe\x00\x00\x42\x00\x00\x00";
const OK: &[u8] = b"\x00\x00\x00\x02\x00\x00\x00";
const ERR: &[u8] =
    b"\xff\xdb\x04#HY000Unknown prepared statement handler (999) given to mysqld_stmt_execute";
const TEXT_ROW: &[u8] = b"\x011\xfb";
const BINARY_ROW: &[u8] = b"\x00\x00\x06\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00";

/// Feeds `packets` and checks that the reply ends exactly at the last one.
fn ends_at_last(kind: ReplyKind, caps: Capabilities, packets: &[&[u8]]) -> Step {
    let mut tracker = ReplyTracker::new(kind, caps).expect("tracked kind");
    let mut last = Step::More;
    for (i, payload) in packets.iter().enumerate() {
        assert!(!tracker.is_finished(), "ended early, before packet {i}");
        let header = PacketHeader {
            len: payload.len(),
            seq: (i + 1) as u8,
        };
        last = tracker
            .on_packet(header, payload)
            .unwrap_or_else(|e| panic!("packet {i}: {e}"));
        if i + 1 < packets.len() {
            assert!(matches!(last, Step::More), "packet {i} gave {last:?}");
        }
    }
    assert!(tracker.is_finished(), "did not end at the last packet");
    last
}

#[test]
fn text_select_classic_and_deprecate_eof() {
    ends_at_last(
        ReplyKind::Results,
        CLASSIC,
        &[b"\x02", COLUMN_A, COLUMN_B, EOF, TEXT_ROW, EOF],
    );
    ends_at_last(
        ReplyKind::Results,
        DEP,
        &[b"\x02", COLUMN_A, COLUMN_B, TEXT_ROW, OK_END],
    );
}

#[test]
fn cached_metadata_with_and_without_definitions() {
    ends_at_last(
        ReplyKind::Results,
        CACHE,
        &[b"\x02\x01", COLUMN_A, COLUMN_B, EOF, BINARY_ROW, EOF],
    );
    // Metadata left out: the classic EOF still comes.
    ends_at_last(
        ReplyKind::Results,
        CACHE,
        &[b"\x02\x00", EOF, BINARY_ROW, EOF],
    );
    ends_at_last(
        ReplyKind::Results,
        CACHE | DEP,
        &[b"\x02\x00", BINARY_ROW, OK_END],
    );
    let mut tracker = ReplyTracker::new(ReplyKind::Results, CACHE).unwrap();
    let header = PacketHeader { len: 1, seq: 1 };
    assert!(tracker.on_packet(header, b"\x02").is_err(), "flag missing");
}

#[test]
fn cursor_open_then_fetch() {
    let mut tracker = ReplyTracker::new(ReplyKind::Results, CLASSIC)
        .unwrap()
        .with_cursor_requested(true);
    let mut step = Step::More;
    for (i, payload) in [&b"\x02"[..], COLUMN_A, COLUMN_B, EOF_CURSOR]
        .iter()
        .enumerate()
    {
        let header = PacketHeader {
            len: payload.len(),
            seq: i as u8 + 1,
        };
        step = tracker.on_packet(header, payload).unwrap();
    }
    assert_eq!(step, Step::Done(Ending::Status(ServerStatus(0x42))));
    ends_at_last(
        ReplyKind::Results,
        DEP,
        &[b"\x02", COLUMN_A, COLUMN_B, OK_END_CURSOR],
    );
    ends_at_last(
        ReplyKind::Results,
        CACHE | DEP,
        &[b"\x02\x00", OK_END_CURSOR],
    );
    ends_at_last(ReplyKind::Fetch, CLASSIC, &[BINARY_ROW, EOF_LAST_ROW]);
    ends_at_last(ReplyKind::Fetch, DEP, &[BINARY_ROW, BINARY_ROW, OK_END]);
    ends_at_last(ReplyKind::Fetch, DEP, &[ERR]);
}

// CALL of a procedure that opened a cursor of its own, then ran
// `SELECT v AS first, n AS arg, 'row' AS what UNION ALL SELECT v + 1, n,
// 'next'`: the column-definition EOF and the terminator carry
// SERVER_STATUS_CURSOR_EXISTS (0x6a), yet the rows follow.
const CALL_FIRST: &[u8] =
    b"\x03def\x00\x00\x00\x05first\x00\x00\x0c?\x00\x0c\x00\x00\x00\x08\x80\x00\x00\x00\x00";
const CALL_ARG: &[u8] =
    b"\x03def\x00\x00\x00\x03arg\x00\x00\x0c?\x00\x0b\x00\x00\x00\x03\x80\x00\x00\x00\x00";
const CALL_WHAT: &[u8] =
    b"\x03def\x00\x00\x00\x04what\x00\x00\x0c-\x00\x10\x00\x00\x00\xfd\x01\x00'\x00\x00";
const CALL_EOF: &[u8] = b"\xfe\x00\x00j\x00";
const CALL_OK_END: &[u8] = b"\xfe\x00\x00j\x00\x00\x00";
const CALL_TEXT_ROWS: [&[u8]; 2] = [b"\x011\x017\x03row", b"\x012\x017\x04next"];
const CALL_BINARY_ROWS: [&[u8]; 2] = [
    b"\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x07\x00\x00\x00\x03row",
    b"\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x07\x00\x00\x00\x04next",
];
const CALL_OK: &[u8] = b"\x00\x00\x00\x22\x00\x00\x00";

/// The whole reply to that CALL, as MariaDB 10.11.19 sent it.
fn call_with_cursor(caps: Capabilities, rows: [&'static [u8]; 2]) -> Vec<&'static [u8]> {
    let mut packets: Vec<&[u8]> = vec![b"\x03", CALL_FIRST, CALL_ARG, CALL_WHAT];
    if caps.contains(DEP) {
        packets.extend(rows);
        packets.push(CALL_OK_END);
    } else {
        packets.push(CALL_EOF);
        packets.extend(rows);
        packets.push(CALL_EOF);
    }
    packets.push(CALL_OK);
    packets
}

#[test]
fn call_whose_procedure_opened_a_cursor_has_rows() {
    for caps in [CLASSIC, DEP] {
        // Text protocol, and an execute that asked for no cursor.
        let step = ends_at_last(
            ReplyKind::Results,
            caps,
            &call_with_cursor(caps, CALL_TEXT_ROWS),
        );
        assert_eq!(step, Step::Done(Ending::Status(ServerStatus(0x22))));
        ends_at_last(
            ReplyKind::Results,
            caps,
            &call_with_cursor(caps, CALL_BINARY_ROWS),
        );
    }
}

#[test]
fn the_cursor_flag_ends_a_result_only_when_a_cursor_was_requested() {
    let mut tracker = ReplyTracker::new(ReplyKind::Results, CLASSIC)
        .unwrap()
        .with_cursor_requested(true);
    assert!(tracker.cursor_requested());
    for (i, payload) in [&b"\x02"[..], COLUMN_A, COLUMN_B, EOF_CURSOR]
        .iter()
        .enumerate()
    {
        let header = PacketHeader {
            len: payload.len(),
            seq: i as u8 + 1,
        };
        let step = tracker.on_packet(header, payload).unwrap();
        if i == 3 {
            assert_eq!(step, Step::Done(Ending::Status(ServerStatus(0x42))));
        }
    }
    let mut tracker = ReplyTracker::new(ReplyKind::Results, CLASSIC).unwrap();
    assert!(!tracker.cursor_requested());
    for (i, payload) in [&b"\x02"[..], COLUMN_A, COLUMN_B, EOF_CURSOR]
        .iter()
        .enumerate()
    {
        let header = PacketHeader {
            len: payload.len(),
            seq: i as u8 + 1,
        };
        let step = tracker.on_packet(header, payload).unwrap();
        assert_eq!(step, Step::More, "no cursor was asked for: rows follow");
    }
}

#[test]
fn multi_statements_and_call() {
    // select 1; select 2; do 1
    ends_at_last(
        ReplyKind::Results,
        CLASSIC,
        &[
            b"\x01", COLUMN_A, EOF_MORE, b"\x011", EOF_MORE, b"\x01", COLUMN_A, EOF_MORE, b"\x012",
            EOF_MORE, OK,
        ],
    );
    ends_at_last(
        ReplyKind::Results,
        DEP,
        &[
            b"\x01",
            COLUMN_A,
            b"\x011",
            OK_END_MORE,
            b"\x01",
            COLUMN_A,
            b"\x012",
            OK_END_MORE,
            OK,
        ],
    );
    // An error in the middle ends the whole reply.
    ends_at_last(
        ReplyKind::Results,
        DEP,
        &[b"\x01", COLUMN_A, b"\x011", OK_END_MORE, ERR],
    );
}

#[test]
fn prepare_replies() {
    let prepare_ok = b"\x00\x01\x00\x00\x00\x02\x00\x01\x00\x00\x00\x00";
    ends_at_last(
        ReplyKind::Prepare,
        CLASSIC,
        &[prepare_ok, COLUMN_A, EOF, COLUMN_A, COLUMN_B, EOF],
    );
    ends_at_last(
        ReplyKind::Prepare,
        DEP,
        &[prepare_ok, COLUMN_A, COLUMN_A, COLUMN_B],
    );
    ends_at_last(
        ReplyKind::Prepare,
        CLASSIC,
        &[b"\x00\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"],
    );
    ends_at_last(
        ReplyKind::Prepare,
        CLASSIC,
        &[
            b"\x00\x03\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00",
            COLUMN_A,
            COLUMN_A,
            EOF,
        ],
    );
    ends_at_last(
        ReplyKind::Prepare,
        CLASSIC,
        &[
            b"\x00\x03\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00",
            COLUMN_A,
            EOF,
        ],
    );
    ends_at_last(ReplyKind::Prepare, DEP, &[ERR]);
    let mut tracker = ReplyTracker::new(ReplyKind::Prepare, DEP).unwrap();
    tracker
        .on_packet(PacketHeader { len: 12, seq: 1 }, prepare_ok)
        .unwrap();
    assert_eq!(
        tracker.prepare_ok(),
        Some(PrepareOk {
            statement_id: 1,
            columns: 2,
            params: 1,
            warnings: 0
        })
    );
}

#[test]
fn single_packet_replies() {
    ends_at_last(ReplyKind::Single, CLASSIC, &[OK]);
    ends_at_last(ReplyKind::Single, CLASSIC, &[EOF]);
    ends_at_last(ReplyKind::Single, DEP, &[OK_END]);
    let step = ends_at_last(
        ReplyKind::Single,
        CLASSIC,
        &[b"Uptime: 24  Threads: 1  Questions: 19"],
    );
    assert_eq!(step, Step::Done(Ending::Other));
    assert_eq!(
        ends_at_last(ReplyKind::Single, CLASSIC, &[ERR]),
        Step::Done(Ending::Error)
    );
}

#[test]
fn field_list() {
    let column =
        b"\x03def\x02d1\x01t\x01t\x01a\x01a\x0c?\x00\x0b\x00\x00\x00\x03\x00\x00\x00\x00\x00\xfb";
    ends_at_last(ReplyKind::FieldList, CLASSIC, &[column, column, EOF]);
    ends_at_last(ReplyKind::FieldList, DEP, &[column, OK_END]);
    ends_at_last(ReplyKind::FieldList, DEP, &[ERR]);
}

/// Found by the `reply_tracker` fuzz target: a COM_FIELD_LIST reply whose
/// EOF had SERVER_MORE_RESULTS_EXISTS set was followed into a new result,
/// which then took a LOCAL INFILE request (or waited for packets that never
/// come). Only a reply that can hold results has more of them.
#[test]
fn field_list_and_fetch_end_at_their_terminator_whatever_it_says() {
    let column =
        b"\x03def\x02d1\x01t\x01t\x01a\x01a\x0c?\x00\x0b\x00\x00\x00\x03\x00\x00\x00\x00\x00\xfb";
    let step = ends_at_last(ReplyKind::FieldList, CLASSIC, &[column, EOF_MORE]);
    assert_eq!(step, Step::Done(Ending::Status(ServerStatus(0x0a))));
    ends_at_last(ReplyKind::FieldList, DEP, &[column, OK_END_MORE]);
    ends_at_last(ReplyKind::Fetch, CLASSIC, &[BINARY_ROW, EOF_MORE]);
    ends_at_last(ReplyKind::Fetch, DEP, &[BINARY_ROW, OK_END_MORE]);
    let mut tracker = ReplyTracker::new(ReplyKind::FieldList, CLASSIC).unwrap();
    let header = |len: usize| PacketHeader { len, seq: 1 };
    tracker.on_packet(header(EOF_MORE.len()), EOF_MORE).unwrap();
    assert!(
        tracker.on_packet(header(3), b"\xfbab").is_err(),
        "no LOCAL INFILE after a field list"
    );
}

#[test]
fn local_infile_waits_for_the_client() {
    let mut tracker = ReplyTracker::new(ReplyKind::Results, CLASSIC).unwrap();
    let step = tracker
        .on_packet(PacketHeader { len: 9, seq: 1 }, b"\xfb/tmp/x.csv")
        .unwrap();
    assert_eq!(step, Step::LocalInfile);
    let step = tracker
        .on_packet(PacketHeader { len: 7, seq: 4 }, OK)
        .unwrap();
    assert_eq!(step, Step::Done(Ending::Status(ServerStatus(2))));
}

#[test]
fn progress_reports_end_nothing() {
    let progress = b"\xff\xff\xff\x01\x01\x02\x00\x00\x00\x00\x05stage";
    let caps = Capabilities::MARIADB_CLIENT_PROGRESS;
    ends_at_last(ReplyKind::Results, caps, &[progress, progress, OK]);
    // Without the capability it is an error like any other.
    ends_at_last(ReplyKind::Results, CLASSIC, &[progress]);
}

#[test]
fn huge_rows_are_not_looked_into() {
    let mut tracker = ReplyTracker::new(ReplyKind::Fetch, DEP).unwrap();
    let full = PacketHeader {
        len: MAX_PAYLOAD,
        seq: 1,
    };
    // A 16 MiB row whose string length prefix is 0xFE: not a terminator.
    assert_eq!(
        tracker
            .on_packet(full, b"\xfe\x00\x00\x00\x01\x00\x00\x00\x00")
            .unwrap(),
        Step::More
    );
    // Its continuation starts with bytes that look like an OK terminator.
    assert_eq!(
        tracker
            .on_packet(PacketHeader { len: 7, seq: 2 }, OK_END)
            .unwrap(),
        Step::More
    );
    assert!(matches!(
        tracker
            .on_packet(PacketHeader { len: 7, seq: 3 }, OK_END)
            .unwrap(),
        Step::Done(_)
    ));
}

#[test]
fn packets_after_the_end_are_refused() {
    let mut tracker = ReplyTracker::new(ReplyKind::Single, CLASSIC).unwrap();
    tracker
        .on_packet(PacketHeader { len: 7, seq: 1 }, OK)
        .unwrap();
    assert!(tracker
        .on_packet(PacketHeader { len: 7, seq: 2 }, OK)
        .is_err());
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn never_panics_on_any_packets(
            kind in prop_oneof![Just(ReplyKind::Results), Just(ReplyKind::Single), Just(ReplyKind::FieldList), Just(ReplyKind::Prepare), Just(ReplyKind::Fetch)],
            caps in any::<u64>(),
            packets in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..40), any::<bool>()), 0..20),
        ) {
            let mut tracker = ReplyTracker::new(kind, Capabilities(caps)).unwrap();
            for (payload, full) in packets {
                let len = if full { MAX_PAYLOAD } else { payload.len() };
                if tracker.on_packet(PacketHeader { len, seq: 0 }, &payload).is_err() || tracker.is_finished() {
                    break;
                }
            }
        }
    }
}

#[test]
fn packets_are_classified() {
    let mut tracker = ReplyTracker::new(ReplyKind::Results, DEP).unwrap();
    let header = |len: usize| PacketHeader { len, seq: 1 };
    tracker.on_packet(header(1), b"\x01").unwrap();
    assert_eq!(tracker.last_packet(), PacketClass::Other);
    tracker.on_packet(header(COLUMN_A.len()), COLUMN_A).unwrap();
    assert_eq!(tracker.last_packet(), PacketClass::Other);
    tracker.on_packet(header(3), TEXT_ROW).unwrap();
    assert_eq!(tracker.last_packet(), PacketClass::Row);
    tracker.on_packet(header(7), OK_END_MORE).unwrap();
    assert_eq!(tracker.last_packet(), PacketClass::Ok(ServerStatus(0x0a)));
    tracker.on_packet(header(7), OK).unwrap();
    assert_eq!(tracker.last_packet(), PacketClass::Ok(ServerStatus(0x02)));

    let mut tracker = ReplyTracker::new(ReplyKind::Results, CLASSIC).unwrap();
    for packet in [&b"\x02"[..], COLUMN_A, COLUMN_B, EOF] {
        tracker.on_packet(header(packet.len()), packet).unwrap();
    }
    assert_eq!(tracker.last_packet(), PacketClass::Eof(ServerStatus(0x02)));

    let mut tracker = ReplyTracker::new(ReplyKind::Prepare, DEP).unwrap();
    tracker
        .on_packet(
            header(12),
            b"\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
        )
        .unwrap();
    assert_eq!(tracker.last_packet(), PacketClass::PrepareOk);

    let mut tracker = ReplyTracker::new(ReplyKind::Single, CLASSIC).unwrap();
    tracker.on_packet(header(ERR.len()), ERR).unwrap();
    assert_eq!(tracker.last_packet(), PacketClass::Err);
}

/// `payload` as one packet on the wire.
fn wire(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = PacketHeader {
        len: payload.len(),
        seq,
    }
    .encode()
    .to_vec();
    out.extend_from_slice(payload);
    out
}

#[test]
fn whole_rows_are_taken_and_nothing_else_is() {
    let mut tracker = ReplyTracker::new(ReplyKind::Results, DEP).unwrap();
    // Not before the rows: a column count, a column definition.
    assert_eq!(tracker.take_row(&wire(1, b"\x01")), None);
    tracker
        .on_packet(PacketHeader { len: 1, seq: 1 }, b"\x01")
        .unwrap();
    assert_eq!(tracker.take_row(&wire(2, COLUMN_A)), None);
    tracker
        .on_packet(
            PacketHeader {
                len: COLUMN_A.len(),
                seq: 2,
            },
            COLUMN_A,
        )
        .unwrap();
    // A whole row is taken, as `on_packet` would take it.
    let row = wire(3, TEXT_ROW);
    assert_eq!(
        tracker.take_row(&row),
        Some(PacketHeader {
            len: TEXT_ROW.len(),
            seq: 3
        })
    );
    assert_eq!(tracker.last_packet(), PacketClass::Row);
    // Not a row cut short, nor a header alone, nor nothing.
    assert_eq!(tracker.take_row(&row[..row.len() - 1]), None);
    assert_eq!(tracker.take_row(&row[..HEADER_LEN]), None);
    assert_eq!(tracker.take_row(&[]), None);
    // Not what ends the rows: the terminator, an ERR (a progress report
    // too: `on_packet` tells them apart).
    assert_eq!(tracker.take_row(&wire(4, OK_END)), None);
    assert_eq!(tracker.take_row(&wire(4, ERR)), None);
    // Not an empty packet, nor a full one (continued: its next packet is
    // data, which only `on_packet` knows to skip).
    assert_eq!(tracker.take_row(&wire(4, b"")), None);
    let mut full = PacketHeader {
        len: MAX_PAYLOAD,
        seq: 4,
    }
    .encode()
    .to_vec();
    full.resize(HEADER_LEN + MAX_PAYLOAD, b'x');
    assert_eq!(tracker.take_row(&full), None);
    // After a full packet, its continuation is not a row either.
    tracker
        .on_packet(
            PacketHeader {
                len: MAX_PAYLOAD,
                seq: 4,
            },
            b"\x00",
        )
        .unwrap();
    assert_eq!(tracker.take_row(&wire(5, TEXT_ROW)), None);
    tracker
        .on_packet(PacketHeader { len: 3, seq: 5 }, TEXT_ROW)
        .unwrap();
    assert_eq!(
        tracker.take_row(&wire(6, BINARY_ROW)).map(|h| h.seq),
        Some(6)
    );
    // Once the reply ended, nothing is a row.
    tracker
        .on_packet(
            PacketHeader {
                len: OK_END.len(),
                seq: 7,
            },
            OK_END,
        )
        .unwrap();
    assert!(tracker.is_finished());
    assert_eq!(tracker.take_row(&wire(8, TEXT_ROW)), None);
}

/// The tracker that took every packet of `packets`.
fn tracked(kind: ReplyKind, caps: Capabilities, packets: &[&[u8]]) -> ReplyTracker {
    let mut tracker = ReplyTracker::new(kind, caps).expect("tracked kind");
    for (i, payload) in packets.iter().enumerate() {
        let header = PacketHeader {
            len: payload.len(),
            seq: (i + 1) as u8,
        };
        tracker
            .on_packet(header, payload)
            .unwrap_or_else(|e| panic!("packet {i}: {e}"));
    }
    tracker
}

#[test]
fn row_count_is_what_the_server_reads_after_one_statement() {
    // UPDATE of 3 rows: OK with affected rows 3.
    let ok3: &[u8] = b"\x00\x03\x00\x02\x00\x00\x00";
    assert_eq!(
        tracked(ReplyKind::Results, DEP, &[ok3]).row_count(),
        Some(3)
    );
    // A two-byte affected count (300).
    let ok300: &[u8] = b"\x00\xfc\x2c\x01\x00\x02\x00\x00\x00";
    assert_eq!(
        tracked(ReplyKind::Results, DEP, &[ok300]).row_count(),
        Some(300)
    );
    // A result set: -1, with either terminator.
    let select = [b"\x01" as &[u8], COLUMN_A, TEXT_ROW, OK_END];
    assert_eq!(
        tracked(ReplyKind::Results, DEP, &select).row_count(),
        Some(-1)
    );
    let classic = [b"\x01" as &[u8], COLUMN_A, EOF, TEXT_ROW, EOF];
    assert_eq!(
        tracked(ReplyKind::Results, CLASSIC, &classic).row_count(),
        Some(-1)
    );
    // An error: -1.
    assert_eq!(
        tracked(ReplyKind::Results, DEP, &[ERR]).row_count(),
        Some(-1)
    );
    // Several results, or an error after one: not one statement's.
    let multi = [b"\x01" as &[u8], COLUMN_A, TEXT_ROW, OK_END_MORE, ok3];
    assert_eq!(tracked(ReplyKind::Results, DEP, &multi).row_count(), None);
    let failed = [b"\x01" as &[u8], COLUMN_A, TEXT_ROW, OK_END_MORE, ERR];
    assert_eq!(tracked(ReplyKind::Results, DEP, &failed).row_count(), None);
    // Not ended yet.
    assert_eq!(
        tracked(ReplyKind::Results, DEP, &select[..3]).row_count(),
        None
    );
}

#[test]
fn result_rows_count_the_rows_of_one_result_set() {
    let select = [
        b"\x01" as &[u8],
        COLUMN_A,
        TEXT_ROW,
        TEXT_ROW,
        TEXT_ROW,
        OK_END,
    ];
    assert_eq!(
        tracked(ReplyKind::Results, DEP, &select).result_rows(),
        Some(3)
    );
    let classic = [b"\x01" as &[u8], COLUMN_A, EOF, EOF];
    assert_eq!(
        tracked(ReplyKind::Results, CLASSIC, &classic).result_rows(),
        Some(0)
    );
    // Rows taken by the fast path count the same.
    let mut tracker = tracked(ReplyKind::Results, DEP, &select[..2]);
    let mut wire = bytes::BytesMut::new();
    crate::frame::write_payload(&mut wire, 3, TEXT_ROW);
    assert!(tracker.take_row(&wire).is_some());
    tracker
        .on_packet(
            PacketHeader {
                len: OK_END.len(),
                seq: 4,
            },
            OK_END,
        )
        .unwrap();
    assert_eq!(tracker.result_rows(), Some(1));
    // An OK, an error, several results: no one result set.
    let ok: &[u8] = b"\x00\x03\x00\x02\x00\x00\x00";
    assert_eq!(tracked(ReplyKind::Results, DEP, &[ok]).result_rows(), None);
    assert_eq!(tracked(ReplyKind::Results, DEP, &[ERR]).result_rows(), None);
    let failed = [b"\x01" as &[u8], COLUMN_A, TEXT_ROW, ERR];
    assert_eq!(
        tracked(ReplyKind::Results, DEP, &failed).result_rows(),
        None
    );
    let multi = [
        b"\x01" as &[u8],
        COLUMN_A,
        TEXT_ROW,
        OK_END_MORE,
        b"\x01",
        COLUMN_A,
        OK_END,
    ];
    assert_eq!(tracked(ReplyKind::Results, DEP, &multi).result_rows(), None);
}
