//! Writes the committed seed corpus, `fuzz/seeds/<target>/`: real packets
//! captured from MariaDB 10.11.19 (the protocol crate's fixtures) and
//! packets built with the protocol crate's own encoders, each behind the
//! context bytes its target reads first (see the targets' docs).
//!
//! Run from `fuzz/`: `cargo run --example write_seeds`. It rewrites the
//! seed directories from scratch.

use std::fs;
use std::path::Path;

use bytes::{BufMut, BytesMut};
use torpor_fuzz::{caps_byte, reply_kind_byte};
use torpor_protocol::command::{Command, ReplyKind};
use torpor_protocol::compress::Encoder;
use torpor_protocol::frame::write_payload;
use torpor_protocol::handshake::{AuthSwitch, ChangeUser, Greeting, HandshakeResponse};
use torpor_protocol::packets::{write_eof, write_err, write_ok, Ok as OkFields, ServerStatus};
use torpor_protocol::session_track::{encode_changes, OkPacket, SessionChange};
use torpor_protocol::Capabilities;

type Seeds = Vec<(&'static str, Vec<u8>)>;

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Payloads as packets from sequence id `seq` on.
fn frames(seq: u8, payloads: &[&[u8]]) -> Vec<u8> {
    let mut wire = BytesMut::new();
    let mut seq = seq;
    for payload in payloads {
        seq = write_payload(&mut wire, seq, payload);
    }
    wire.to_vec()
}

// Captured from MariaDB 10.11.19 and libmariadb 3.3 (protocol/src/handshake/tests.rs).
const GREETING: &str = "0a352e352e352d31302e31312e31392d4d6172696144422d302b64656231327531000a000000377a274e33542e2700fef7080200ff81150000000000001d000000763f765527602f69465f2c5c006d7973716c5f6e61746976655f70617373776f726400";
const RESPONSE: &str = "8ca2bf000000100021000000000000000000000000000000000000001d00000061707000149607a8a9c33beb6fe860006ee1e9db0d5624338e74657374006d7973716c5f6e61746976655f70617373776f7264007e035f6f73054c696e75780c5f636c69656e745f6e616d650a6c69626d617269616462045f70696404373936320f5f636c69656e745f76657273696f6e06332e332e3230095f706c6174666f726d067838365f36340c70726f6772616d5f6e616d65056d7973716c0c5f7365727665725f686f7374093132372e302e302e31";

// OK packets with session tracking (protocol/src/session_track.rs).
const SET_SQL_MODE: &str = "00000002c00000004a00450873716c5f6d6f64653b5245414c5f41535f464c4f41542c50495045535f41535f434f4e4341542c414e53495f51554f5445532c49474e4f52455f53504143452c414e5349020131";
const USE_TEST: &str = "00000002c00000000a01050474657374020131";
const BEGIN: &str =
    "00000003c000000020050908545f5f5f5f5f5f5f0413125354415254205452414e53414354494f4e3b";
const INSERT_IN_TRANSACTION: &str = "00010003c00000000b050908545f5f5f575f5f5f";
const SET_NAMES_UTF8: &str = "0000000040000000650021186368617261637465725f7365745f636f6e6e656374696f6e07757466386d6233001d146368617261637465725f7365745f636c69656e7407757466386d6233001e156368617261637465725f7365745f726573756c747307757466386d6233020131";

// Reply packets (protocol/src/reply/tests.rs).
const COLUMN_A: &[u8] =
    b"\x03def\x00\x00\x00\x01a\x00\x0c?\x00\x01\x00\x00\x00\x03\x81\x00\x00\x00\x00";
const COLUMN_B: &[u8] =
    b"\x03def\x00\x00\x00\x01b\x00\x0c?\x00\x00\x00\x00\x00\x06\x80\x00\x00\x00\x00";
const EOF: &[u8] = b"\xfe\x00\x00\x02\x00";
const EOF_MORE: &[u8] = b"\xfe\x00\x00\x0a\x00";
const EOF_CURSOR: &[u8] = b"\xfe\x00\x00\x42\x00";
const OK_END: &[u8] = b"\xfe\x00\x00\x02\x00\x00\x00";
const OK_END_MORE: &[u8] = b"\xfe\x00\x00\x0a\x00\x00\x00";
const OK: &[u8] = b"\x00\x00\x00\x02\x00\x00\x00";
const OK_MORE: &[u8] = b"\x00\x00\x00\x0a\x00\x00\x00";
const ERR: &[u8] =
    b"\xff\xdb\x04#HY000Unknown prepared statement handler (999) given to mysqld_stmt_execute";
const ERR_UNKNOWN_COMMAND: &[u8] = b"\xff\x17\x04#08S01Unknown command";
const PROGRESS: &[u8] = b"\xff\xff\xff\x01\x00\x01\x10\x27\x00\x00\x05stage";
const TEXT_ROW: &[u8] = b"\x011\xfb";
const BINARY_ROW: &[u8] = b"\x00\x00\x06\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00";
const PREPARE_OK: &[u8] = b"\x00\x01\x00\x00\x00\x02\x00\x02\x00\x00\x00\x00";

fn execute(id: u32, bound: bool, cursor: bool) -> Vec<u8> {
    let mut p = vec![Command::StmtExecute as u8];
    p.extend_from_slice(&id.to_le_bytes());
    p.push(u8::from(cursor));
    p.extend_from_slice(&1u32.to_le_bytes());
    p.push(0); // null bitmap
    p.push(u8::from(bound));
    if bound {
        p.extend_from_slice(&[0x03, 0x00, 0x08, 0x00]);
    }
    p.extend_from_slice(&7i32.to_le_bytes());
    p.extend_from_slice(&9i64.to_le_bytes());
    p
}

fn frame() -> Seeds {
    let ping = frames(0, &[b"\x0e"]);
    let query = frames(0, &[b"\x03select 1"]);
    let result = frames(1, &[b"\x01", COLUMN_A, EOF, TEXT_ROW, EOF]);
    let mut ok = BytesMut::new();
    write_ok(&mut ok, 1, OkFields::default());
    let out_of_order = cat(&[&frames(0, &[b"\x03"]), &frames(7, &[b"\x01"])]);
    vec![
        ("ping", cat(&[&[2], &ping])),
        ("query", cat(&[&[3], &query])),
        ("greeting", cat(&[&[2], &frames(0, &[&hex(GREETING)])])),
        ("result_set", cat(&[&[2], &result])),
        ("ok_small_limit", cat(&[&[1], &ok])),
        ("empty_packet", vec![3, 0, 0, 0, 9]),
        ("out_of_order", cat(&[&[3], &out_of_order])),
        ("too_large", vec![0, 0xff, 0xff, 0xff, 0]),
    ]
}

fn greeting() -> Seeds {
    let mysql = Greeting {
        server_version: b"8.0.36".to_vec(),
        connection_id: 7,
        seed: b"abcdefgh".to_vec(),
        capabilities: Capabilities::CLIENT_MYSQL | Capabilities::CLIENT_PROTOCOL_41,
        collation: 45,
        status: 2,
        auth_plugin: Vec::new(),
    };
    let mut wire = BytesMut::new();
    mysql.encode(&mut wire);
    let mut refused = BytesMut::new();
    write_err(&mut refused, 0, 1040, b"08004", "Too many connections");
    vec![
        ("mariadb_10_11", hex(GREETING)),
        ("mysql_no_plugin", wire.to_vec()),
        ("err_instead", refused[4..].to_vec()),
    ]
}

fn handshake_response() -> Seeds {
    let built = HandshakeResponse {
        capabilities: Capabilities::CLIENT_PROTOCOL_41
            | Capabilities::CLIENT_SECURE_CONNECTION
            | Capabilities::CLIENT_PLUGIN_AUTH
            | Capabilities::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
            | Capabilities::CLIENT_CONNECT_WITH_DB
            | Capabilities::CLIENT_CONNECT_ATTRS
            | Capabilities::CLIENT_DEPRECATE_EOF
            | Capabilities::MARIADB_CLIENT_CACHE_METADATA,
        max_packet_size: 1 << 24,
        collation: 45,
        user: b"app".to_vec(),
        auth_response: vec![0x5a; 20],
        database: Some(b"shop".to_vec()),
        auth_plugin: Some(b"mysql_native_password".to_vec()),
        attributes: vec![(b"_client_name".to_vec(), b"torpor".to_vec())],
    };
    let mut wire = BytesMut::new();
    built.encode(&mut wire);
    let mut ssl = BytesMut::new();
    ssl.put_u32_le((Capabilities::CLIENT_SSL | Capabilities::CLIENT_PROTOCOL_41).mysql_bits());
    ssl.put_u32_le(1 << 24);
    ssl.put_u8(33);
    ssl.put_bytes(0, 23);
    vec![
        ("libmariadb_login", hex(RESPONSE)),
        ("lenenc_attrs", wire.to_vec()),
        ("ssl_request", ssl.to_vec()),
        (
            "hash_text",
            b"*6BB4837EB74329105EE4568DDA7DC67ED2CA2AD9".to_vec(),
        ),
    ]
}

fn change_user() -> Seeds {
    let caps = Capabilities::CLIENT_SECURE_CONNECTION
        | Capabilities::CLIENT_PLUGIN_AUTH
        | Capabilities::CLIENT_CONNECT_ATTRS;
    let change = ChangeUser {
        user: b"app".to_vec(),
        auth_response: vec![0x33; 20],
        database: b"test".to_vec(),
        collation: Some(45),
        auth_plugin: Some(b"mysql_native_password".to_vec()),
        attributes: vec![(b"_client_name".to_vec(), b"x".to_vec())],
    };
    let mut wire = BytesMut::new();
    change.encode(&mut wire, caps);
    let short = ChangeUser {
        collation: None,
        auth_plugin: None,
        attributes: Vec::new(),
        ..change
    };
    let mut short_wire = BytesMut::new();
    short.encode(&mut short_wire, caps);
    let switch = AuthSwitch {
        plugin: b"mysql_native_password".to_vec(),
        data: b"abcdefghijklmnopqrst".to_vec(),
    };
    let mut switch_wire = BytesMut::new();
    switch.encode(&mut switch_wire);
    let byte = caps_byte(caps);
    vec![
        ("change_user", cat(&[&[byte], &wire])),
        ("change_user_short", cat(&[&[byte], &short_wire])),
        ("auth_switch", cat(&[&[0], &switch_wire])),
    ]
}

fn packets() -> Seeds {
    let mut ok = BytesMut::new();
    write_ok(
        &mut ok,
        1,
        OkFields {
            affected_rows: 300,
            last_insert_id: 70_000,
            status: ServerStatus(ServerStatus::AUTOCOMMIT),
            warnings: 1,
        },
    );
    let mut eof_ok = BytesMut::new();
    write_eof(
        &mut eof_ok,
        3,
        Capabilities::CLIENT_DEPRECATE_EOF,
        ServerStatus(0x0a),
        0,
    );
    let dep = caps_byte(Capabilities::CLIENT_DEPRECATE_EOF);
    vec![
        ("ok_after_ping", cat(&[&[0], OK])),
        ("ok_big_ints", cat(&[&[0], &ok[4..]])),
        ("eof_more_results", cat(&[&[0], EOF_MORE])),
        ("ok_terminator", cat(&[&[dep], &eof_ok[4..]])),
        ("err_unknown_command", cat(&[&[0], ERR_UNKNOWN_COMMAND])),
        ("progress_report", cat(&[&[0], PROGRESS])),
        // Low nibble 2: two columns.
        ("text_row", cat(&[&[0x02], TEXT_ROW])),
        ("lenenc_3", cat(&[&[0x01], b"\xfd\x01\x02\x03abc"])),
        ("statement_close", cat(&[&[0], b"\x19\x01\x00\x00\x00"])),
    ]
}

fn session_track() -> Seeds {
    let track = caps_byte(Capabilities::CLIENT_SESSION_TRACK);
    let mut block = BytesMut::new();
    encode_changes(
        &[
            SessionChange::SystemVariable {
                name: b"autocommit",
                value: b"OFF",
            },
            SessionChange::Gtids(b"\x00\x010-1-5"),
            SessionChange::Unknown {
                kind: 9,
                data: b"ab",
            },
        ],
        &mut block,
    );
    let ok = OkPacket {
        header: 0,
        affected_rows: 0,
        last_insert_id: 0,
        status: ServerStatus(ServerStatus::AUTOCOMMIT),
        warnings: 0,
        info: b"Rows matched: 1  Changed: 1  Warnings: 0",
        session_state: &[],
    };
    let mut built = BytesMut::new();
    ok.encode_with_state(Capabilities::CLIENT_SESSION_TRACK, &block, &mut built);
    let mut plain = BytesMut::new();
    ok.encode_for(Capabilities::EMPTY, &mut plain);
    vec![
        ("set_sql_mode", cat(&[&[track], &hex(SET_SQL_MODE)])),
        ("use_test", cat(&[&[track], &hex(USE_TEST)])),
        ("begin", cat(&[&[track], &hex(BEGIN)])),
        ("insert", cat(&[&[track], &hex(INSERT_IN_TRANSACTION)])),
        ("set_names", cat(&[&[track], &hex(SET_NAMES_UTF8)])),
        ("built_unknown_kinds", cat(&[&[track], &built])),
        ("untracked_info", cat(&[&[0], &plain])),
    ]
}

fn stmt() -> Seeds {
    let two = 2u16.to_le_bytes();
    let mut bulk = vec![Command::StmtBulkExecute as u8];
    bulk.extend_from_slice(&3u32.to_le_bytes());
    bulk.extend_from_slice(&0u16.to_le_bytes());
    bulk.extend_from_slice(&[0, 1, 2, 3]);
    vec![
        ("prepare_ok", cat(&[&two, PREPARE_OK])),
        ("execute_bound", cat(&[&two, &execute(1, true, false)])),
        ("execute_unbound", cat(&[&two, &execute(1, false, false)])),
        ("execute_cursor", cat(&[&two, &execute(1, false, true)])),
        ("bulk_execute", cat(&[&1u16.to_le_bytes(), &bulk])),
        (
            "fetch",
            cat(&[&[0, 0], b"\x1c\x01\x00\x00\x00\x0a\x00\x00\x00"]),
        ),
    ]
}

fn compress() -> Seeds {
    let mut short = BytesMut::new();
    Encoder::new().encode(&frames(0, &[b"\x0e"]), &mut short);
    let query = frames(
        0,
        &[b"\x03SELECT * FROM orders WHERE customer_id = 42 AND status = 'open' ORDER BY id"],
    );
    let mut long = BytesMut::new();
    let mut encoder = Encoder::new();
    encoder.encode(&query, &mut long);
    encoder.encode(
        &frames(1, &[b"\x01", COLUMN_A, EOF, TEXT_ROW, EOF]),
        &mut long,
    );
    vec![
        ("ping_plain", cat(&[&[128], &short])),
        ("query_zlib", cat(&[&[100], &long])),
        ("plain_bytes", cat(&[&[0], &query])),
    ]
}

fn reply_tracker() -> Seeds {
    let context = |kind: ReplyKind, caps: Capabilities, cursor: bool| {
        vec![reply_kind_byte(kind), caps_byte(caps), u8::from(cursor)]
    };
    let dep = Capabilities::CLIENT_DEPRECATE_EOF;
    let cache = dep | Capabilities::MARIADB_CLIENT_CACHE_METADATA;
    let track = dep | Capabilities::CLIENT_SESSION_TRACK;
    let progress = Capabilities::MARIADB_CLIENT_PROGRESS;
    let results = ReplyKind::Results;
    vec![
        (
            "text_result_classic",
            cat(&[
                &context(results, Capabilities::EMPTY, false),
                &frames(1, &[b"\x02", COLUMN_A, COLUMN_B, EOF, TEXT_ROW, EOF]),
            ]),
        ),
        (
            "text_result_deprecate_eof",
            cat(&[
                &context(results, dep, false),
                &frames(1, &[b"\x01", COLUMN_A, TEXT_ROW, TEXT_ROW, OK_END]),
            ]),
        ),
        (
            "cached_metadata",
            cat(&[
                &context(results, cache, false),
                &frames(1, &[b"\x01\x00", TEXT_ROW, OK_END]),
            ]),
        ),
        (
            "multi_results",
            cat(&[
                &context(results, Capabilities::EMPTY, false),
                &frames(
                    1,
                    &[b"\x01", COLUMN_A, EOF, TEXT_ROW, EOF_MORE, OK_MORE, OK],
                ),
            ]),
        ),
        (
            "multi_results_deprecate_eof",
            cat(&[
                &context(results, dep, false),
                &frames(1, &[b"\x01", COLUMN_A, TEXT_ROW, OK_END_MORE, OK]),
            ]),
        ),
        (
            "session_ok",
            cat(&[&context(results, track, false), &frames(1, &[&hex(BEGIN)])]),
        ),
        (
            "binary_cursor",
            cat(&[
                &context(results, Capabilities::EMPTY, true),
                &frames(1, &[b"\x01", COLUMN_A, EOF_CURSOR]),
            ]),
        ),
        (
            "fetch_rows",
            cat(&[
                &context(ReplyKind::Fetch, Capabilities::EMPTY, false),
                &frames(1, &[BINARY_ROW, BINARY_ROW, EOF]),
            ]),
        ),
        (
            "local_infile",
            cat(&[
                &context(results, dep, false),
                &frames(1, &[b"\xfb/tmp/data.csv"]),
            ]),
        ),
        (
            "progress_then_ok",
            cat(&[
                &context(results, progress, false),
                &frames(1, &[PROGRESS, OK]),
            ]),
        ),
        (
            "prepare_classic",
            cat(&[
                &context(ReplyKind::Prepare, Capabilities::EMPTY, false),
                &frames(
                    1,
                    &[PREPARE_OK, COLUMN_A, COLUMN_B, EOF, COLUMN_A, COLUMN_B, EOF],
                ),
            ]),
        ),
        (
            "prepare_error",
            cat(&[&context(ReplyKind::Prepare, dep, false), &frames(1, &[ERR])]),
        ),
        (
            "field_list",
            cat(&[
                &context(ReplyKind::FieldList, Capabilities::EMPTY, false),
                &frames(1, &[COLUMN_A, COLUMN_B, EOF]),
            ]),
        ),
        (
            "statistics",
            cat(&[
                &context(ReplyKind::Single, dep, false),
                &frames(1, &[b"Uptime: 5  Threads: 1  Questions: 2"]),
            ]),
        ),
    ]
}

const SQL: &[(&str, &str)] = &[
    ("select", "SELECT id, name FROM t WHERE id = 5"),
    (
        "quotes_comments",
        "select 'a''b\\'c', \"x\" -- connection_id()\n#c\n/* k */`q``r`",
    ),
    ("numbers_variables", "@x:=1e-5+@@session.a-0x1F--1"),
    (
        "set_user_vars",
        "SET @a = 1, @b = 'x', @c = _utf8mb4'y', @d = NULL, @e = -2.50",
    ),
    ("select_into", "SELECT a, b INTO @x, @y FROM t LIMIT 1"),
    (
        "prepare",
        "PREPARE s FROM 'SELECT ?'; EXECUTE s USING @a; DEALLOCATE PREPARE s",
    ),
    (
        "execute_immediate",
        "EXECUTE IMMEDIATE 'LOCK TABLES t READ'",
    ),
    (
        "temporary",
        "CREATE TEMPORARY TABLE tmp (id INT); DROP TEMPORARY TABLE tmp",
    ),
    (
        "locks",
        "SELECT GET_LOCK('x', 1); LOCK TABLES t WRITE; UNLOCK TABLES",
    ),
    ("untracked_set", "set sql_mode='', @@time_zone='+01:00'"),
    (
        "previous",
        "SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 1; SELECT FOUND_ROWS(), LAST_INSERT_ID()",
    ),
    (
        "nondeterministic",
        "INSERT INTO t VALUES (NOW(), RAND(), CURRENT_TIMESTAMP)",
    ),
    ("call", "CALL p(1, @out)"),
    ("unterminated", "/* abc 'def"),
    ("executable_comment", "/*!40101 SET NAMES utf8mb4 */"),
];

fn sql() -> Seeds {
    SQL.iter()
        .map(|(name, text)| (*name, text.as_bytes().to_vec()))
        .collect()
}

fn journal() -> Seeds {
    // Records: [op, len, bytes]; op bit 3 = in a transaction after it.
    let record = |op: u8, bytes: &[u8]| cat(&[&[op, bytes.len() as u8], bytes]);
    let ok_packet = |bytes: &[u8]| record(6, bytes); // class Ok
    let row = |bytes: &[u8]| record(6 | 0x80, bytes); // class Other
    let budget_1m = 3u8;
    vec![
        (
            "begin_insert_commit",
            cat(&[
                &[budget_1m],
                &record(0x08, b"BEGIN"),
                &ok_packet(b"\x00\x01\x05\x03\x40\x00\x00"),
                &record(0x08, b"INSERT INTO t VALUES (1)"),
                &row(b"\x011"),
                &record(0x08, b"SELECT * FROM t"),
                &record(5, b""),
                &record(0, b"COMMIT"),
                &record(5, b""),
            ]),
        ),
        (
            "hazards",
            cat(&[
                &[budget_1m],
                &record(0x28, b"START TRANSACTION"),
                &record(0x08, b"UPDATE t SET c = NOW() LIMIT 1"),
                &record(5, b""),
                &record(7, b"ROLLBACK WORK;"),
                &record(7, b"ROLLBACK TO SAVEPOINT s"),
            ]),
        ),
        (
            "over_budget",
            cat(&[
                &[1],
                &record(0x08, b"INSERT INTO t VALUES (1)"),
                &record(0x09, b"\x17\x01\x00\x00\x00\x00\x01\x00\x00\x00"),
                &record(0x0a, b""),
                &record(0x18, b"UPDATE t SET c = 1"),
                &record(5, b""),
            ]),
        ),
    ]
}

fn main() -> std::io::Result<()> {
    let targets: [(&str, Seeds); 12] = [
        ("frame", frame()),
        ("greeting", greeting()),
        ("handshake_response", handshake_response()),
        ("change_user", change_user()),
        ("packets", packets()),
        ("session_track", session_track()),
        ("stmt", stmt()),
        ("compress", compress()),
        ("reply_tracker", reply_tracker()),
        ("sql_lexer", sql()),
        ("classify", sql()),
        ("journal", journal()),
    ];
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    for (target, seeds) in targets {
        let dir = root.join(target);
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        fs::create_dir_all(&dir)?;
        for (name, bytes) in seeds {
            fs::write(dir.join(name), bytes)?;
        }
    }
    Ok(())
}
