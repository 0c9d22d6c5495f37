//! The wire, byte for byte: a raw client sends the same commands to
//! MariaDB directly and through Torpor, and every reply must be identical
//! packet for packet (sequence ids and payloads), under each combination
//! of the capabilities that change reply shapes: classic EOF or
//! CLIENT_DEPRECATE_EOF, and MariaDB's metadata caching on or off.
//!
//! Torpor forwards replies without decoding rows, so identical bytes is
//! the right bar: anything it got wrong about where a reply ends shows up
//! as a missing, extra or misplaced packet. Nothing is masked but what
//! must differ between two connections (COM_STATISTICS' counters).
//!
//! Each connection works on its own TEMPORARY table, so the direct and the
//! proxied connection see the same data (same auto values, same affected
//! rows) and parallel tests cannot disturb each other.

use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use torpor_protocol::command::{Command, ReplyKind};
use torpor_protocol::frame::write_payload;
use torpor_protocol::packets::ServerStatus;
use torpor_protocol::reply::{Ending, PrepareOk};
use torpor_protocol::Capabilities;
use torpor_tests::raw::{
    affected_rows, base_capabilities, com, com_field_list, com_init_db, com_query, com_set_option,
    com_stmt_bulk_execute, com_stmt_close, com_stmt_execute, com_stmt_fetch, com_stmt_reset,
    com_stmt_send_long_data, Closing, LoginOptions, Packet, Param, RawClient, Reply,
    CURSOR_TYPE_NO_CURSOR, CURSOR_TYPE_READ_ONLY, MULTI_STATEMENTS_OFF, MULTI_STATEMENTS_ON,
};
use torpor_tests::{admin_connect, backend, Torpor};

const DEP: Capabilities = Capabilities::CLIENT_DEPRECATE_EOF;
const CACHE: Capabilities = Capabilities::MARIADB_CLIENT_CACHE_METADATA;

/// The same conversation held with MariaDB directly and through Torpor.
struct Pair {
    direct: RawClient,
    proxied: RawClient,
    label: String,
}

/// A statement prepared on both sides: its id on each. MariaDB numbers
/// statements per connection from a counter that a reused server thread
/// keeps, so the two ids may differ; each side executes its own.
#[derive(Debug, Clone, Copy)]
struct Statement {
    direct: u32,
    proxied: u32,
    ok: PrepareOk,
}

impl Pair {
    fn new(torpor: &Torpor, capabilities: Capabilities, label: &str) -> Pair {
        let options = LoginOptions::app(capabilities);
        let direct = RawClient::connect(backend().addr(), &options);
        let proxied = RawClient::connect(torpor.addr(), &options);
        assert_eq!(
            direct.capabilities, proxied.capabilities,
            "{label}: negotiated capabilities differ"
        );
        let pair = Pair {
            direct,
            proxied,
            label: label.to_string(),
        };
        // The login OK describes the new session (schema, tracked
        // variables); Torpor relays the backend's own.
        pair.compare(
            "login OK",
            &[pair.direct.login_ok.clone().unwrap()],
            &[pair.proxied.login_ok.clone().unwrap()],
        );
        pair
    }

    fn caps(&self) -> Capabilities {
        self.proxied.capabilities
    }

    #[track_caller]
    fn compare(&self, what: &str, direct: &[Packet], proxied: &[Packet]) {
        if direct == proxied {
            return;
        }
        let at = direct
            .iter()
            .zip(proxied)
            .position(|(a, b)| a != b)
            .unwrap_or(direct.len().min(proxied.len()));
        panic!(
            "{}: {what}: replies differ at packet {at} (direct {} packets, proxied {})\n direct:  {:?}\n proxied: {:?}",
            self.label,
            direct.len(),
            proxied.len(),
            direct.get(at),
            proxied.get(at),
        );
    }

    /// Sends each side its command (`build(true)` for the direct side),
    /// reads both replies, normalizes them and checks they are identical;
    /// returns Torpor's reply as it came.
    #[track_caller]
    fn exchange(
        &mut self,
        what: &str,
        build: impl Fn(bool) -> Vec<u8>,
        file: Option<&[u8]>,
        normalize: fn(&mut Packet),
    ) -> Option<Reply> {
        let mut replies = Vec::new();
        for (is_direct, client) in [(true, &mut self.direct), (false, &mut self.proxied)] {
            let payload = build(is_direct);
            client
                .send_command(&payload)
                .unwrap_or_else(|e| panic!("{what}: send: {e}"));
            let kind = payload
                .first()
                .and_then(|&b| Command::from_byte(b))
                .expect("tests send known commands")
                .reply_kind();
            let reply = (kind != ReplyKind::None).then(|| {
                let cursor = torpor_protocol::stmt::requests_cursor(&payload);
                client
                    .read_reply_tracked(kind, cursor, file)
                    .unwrap_or_else(|e| panic!("{}: {what}: read: {e}", self.label))
            });
            replies.push(reply);
        }
        let proxied = replies.pop().unwrap();
        let direct = replies.pop().unwrap();
        match (&direct, &proxied) {
            (Some(d), Some(p)) => {
                let masked = |reply: &Reply| {
                    let mut packets = reply.packets.clone();
                    packets.iter_mut().for_each(normalize);
                    packets
                };
                self.compare(what, &masked(d), &masked(p));
                assert_eq!(d.ending, p.ending, "{}: {what}: endings differ", self.label);
            }
            (None, None) => {}
            _ => unreachable!("same command, same reply kind"),
        }
        proxied
    }

    /// The same command to both sides.
    #[track_caller]
    fn same(&mut self, what: &str, payload: &[u8]) -> Option<Reply> {
        self.exchange(what, |_| payload.to_vec(), None, |_| {})
    }

    #[track_caller]
    fn same_query(&mut self, sql: &str) -> Reply {
        self.same(sql, &com_query(sql))
            .expect("COM_QUERY has a reply")
    }

    /// COM_STMT_PREPARE on both sides; replies compared but for the ids.
    #[track_caller]
    fn prepare(&mut self, sql: &str) -> Statement {
        let payload = com_prepare(sql);
        let mut ids = Vec::new();
        for client in [&mut self.direct, &mut self.proxied] {
            client.send_command(&payload).expect("send prepare");
            let reply = client
                .read_reply(ReplyKind::Prepare)
                .expect("prepare reply");
            if let Some(error) = reply.error() {
                panic!("{}: prepare {sql}: {error}", self.label);
            }
            ids.push(reply);
        }
        let proxied = ids.pop().unwrap();
        let direct = ids.pop().unwrap();
        let mask = |reply: &Reply| {
            let mut packets = reply.packets.clone();
            mask_statement_id(&mut packets[0]);
            packets
        };
        self.compare(&format!("prepare {sql}"), &mask(&direct), &mask(&proxied));
        let ok = PrepareOk::parse(&proxied.packets[0].payload).expect("prepare OK");
        Statement {
            direct: PrepareOk::parse(&direct.packets[0].payload)
                .unwrap()
                .statement_id,
            proxied: ok.statement_id,
            ok,
        }
    }

    /// A command about `statement`, built for each side with its own id.
    #[track_caller]
    fn same_stmt(
        &mut self,
        what: &str,
        statement: Statement,
        build: impl Fn(u32) -> Vec<u8>,
    ) -> Option<Reply> {
        self.exchange(
            what,
            |is_direct| {
                build(if is_direct {
                    statement.direct
                } else {
                    statement.proxied
                })
            },
            None,
            |_| {},
        )
    }
}

fn com_prepare(sql: &str) -> Vec<u8> {
    let mut payload = vec![Command::StmtPrepare as u8];
    payload.extend_from_slice(sql.as_bytes());
    payload
}

/// A prepare-OK's statement id is the connection's own.
fn mask_statement_id(packet: &mut Packet) {
    if packet.payload.first() == Some(&0) {
        if let Some(id) = packet.payload.get_mut(1..5) {
            id.fill(0);
        }
    }
}

/// Numbers in text that differ between two connections or two moments
/// (COM_STATISTICS' counters, a statement id in an error message): each
/// run of digits becomes one `#`, so the shape is still compared.
fn mask_digits(packet: &mut Packet) {
    let mut masked = Vec::with_capacity(packet.payload.len());
    for &b in &packet.payload {
        if !b.is_ascii_digit() {
            masked.push(b);
        } else if masked.last() != Some(&b'#') {
            masked.push(b'#');
        }
    }
    packet.payload = masked;
}

fn first_payload(reply: &Reply) -> &[u8] {
    &reply.packets[0].payload
}

/// Every command kind Torpor forwards, with replies compared to MariaDB's.
fn conversation(torpor: &Torpor, capabilities: Capabilities, label: &str) {
    let procedure = format!("rp_two_results_{label}");
    admin_connect()
        .query_drop(format!(
            "CREATE OR REPLACE PROCEDURE test.{procedure}() BEGIN SELECT 1 AS a; SELECT 'two' AS b, 2.5 AS c; END"
        ))
        .expect("create procedure");

    let mut pair = Pair::new(torpor, capabilities, label);
    let caps = pair.caps();
    let cache = caps.contains(CACHE);
    let deprecate_eof = caps.contains(DEP);

    // Text results.
    pair.same_query(
        "CREATE TEMPORARY TABLE rp_t (id INT PRIMARY KEY, name VARCHAR(20), val DOUBLE, note TEXT)",
    )
    .expect_ok("create");
    let insert = pair.same_query(
        "INSERT INTO rp_t VALUES (1, 'a', 1.5, NULL), (2, 'b', NULL, 'x'), (3, 'c', -2.25, 'yy')",
    );
    assert_eq!(affected_rows(first_payload(&insert)), Some(3));
    let select = pair
        .same_query("SELECT id, name, val, note, 1 + 1 AS two, NULL AS n FROM rp_t ORDER BY id");
    assert_eq!(select.text_rows(caps).len(), 3, "{label}: three rows");
    if cache {
        assert_eq!(
            first_payload(&select),
            &[6, 1],
            "text results always carry metadata"
        );
    }
    // Large enough that Torpor writes it from its read buffer in several
    // chunks rather than copying it.
    let big = pair.same_query("SELECT seq, REPEAT('r', 300) FROM seq_1_to_2000");
    assert_eq!(big.text_rows(caps).len(), 2000);
    let error = pair.same_query("SELECT * FROM rp_no_such_table");
    assert_eq!(error.error().map(|e| e.code), Some(1146));

    // Multi-statements and multi-results.
    let multi = pair.same_query(
        "SELECT 1 AS one; SELECT name, val FROM rp_t ORDER BY id; DO 1; UPDATE rp_t SET val = val + 1 WHERE id = 1",
    );
    assert_eq!(
        multi
            .status()
            .map(|s| s & ServerStatus::MORE_RESULTS_EXISTS),
        Some(0)
    );
    let broken = pair.same_query("SELECT 1; SELECT * FROM rp_no_such_table; SELECT 2");
    assert_eq!(broken.error().map(|e| e.code), Some(1146));
    let call = pair.same_query(&format!("CALL {procedure}()"));
    let last = call.packets.last().unwrap();
    assert_eq!(
        last.payload[0], 0x00,
        "{label}: CALL ends with its trailing OK: {last:?}"
    );

    // Prepared statements: parameters and columns, types bound once.
    let select = pair.prepare("SELECT id, name, val, note FROM rp_t WHERE id >= ? AND name <> ?");
    assert_eq!((select.ok.params, select.ok.columns), (2, 4));
    let first = pair
        .same_stmt("execute with types", select, |id| {
            com_stmt_execute(
                id,
                CURSOR_TYPE_NO_CURSOR,
                &[Param::Int(1), Param::text("zz")],
                true,
            )
        })
        .unwrap();
    let second = pair
        .same_stmt("execute without types", select, |id| {
            com_stmt_execute(
                id,
                CURSOR_TYPE_NO_CURSOR,
                &[Param::Int(2), Param::text("zz")],
                false,
            )
        })
        .unwrap();
    assert_eq!(
        first.packets.len(),
        second.packets.len() + 1,
        "{label}: one row fewer"
    );
    if cache {
        // The prepare reply already carried the column definitions, so
        // MariaDB leaves them out of every execute while they hold.
        assert_eq!(first_payload(&first), &[4, 0], "{label}: {first:?}");
        assert_eq!(
            first_payload(&second),
            &[4, 0],
            "{label}: second execute leaves metadata out"
        );
        // Count, two binary rows, terminator(s): no column definitions.
        let expected = if deprecate_eof { 4 } else { 5 };
        assert_eq!(second.packets.len(), expected, "{label}: {second:?}");
    }

    // A cursor, fetched two rows at a time until the last row was sent.
    let cursor = pair.prepare("SELECT id, name FROM rp_t ORDER BY id");
    let opened = pair
        .same_stmt("execute with a cursor", cursor, |id| {
            com_stmt_execute(id, CURSOR_TYPE_READ_ONLY, &[], false)
        })
        .unwrap();
    let status = opened.status().expect("cursor open ends with a status");
    assert_ne!(
        status & ServerStatus::CURSOR_EXISTS,
        0,
        "{label}: cursor opened"
    );
    let mut fetched = 0;
    for round in 0.. {
        assert!(round < 10, "{label}: the cursor never sent its last row");
        let reply = pair
            .same_stmt("fetch", cursor, |id| com_stmt_fetch(id, 2))
            .unwrap();
        fetched += reply.packets.len() - 1;
        let status = reply.status().expect("fetch ends with a status");
        if status & ServerStatus::LAST_ROW_SENT != 0 {
            break;
        }
    }
    assert_eq!(fetched, 3, "{label}: rows fetched through the cursor");
    pair.same_stmt("reset cursor statement", cursor, com_stmt_reset)
        .unwrap()
        .expect_ok("reset");

    // Long data, then an execute that leaves that parameter's value out.
    let insert = pair.prepare("INSERT INTO rp_t (id, name, val, note) VALUES (?, ?, ?, ?)");
    assert!(pair
        .same_stmt("long data 1", insert, |id| com_stmt_send_long_data(
            id, 3, b"long-"
        ))
        .is_none());
    assert!(pair
        .same_stmt("long data 2", insert, |id| com_stmt_send_long_data(
            id, 3, b"data"
        ))
        .is_none());
    let inserted = pair
        .same_stmt("execute with long data", insert, |id| {
            com_stmt_execute(
                id,
                CURSOR_TYPE_NO_CURSOR,
                &[
                    Param::Int(10),
                    Param::text("ld"),
                    Param::Double(0.5),
                    Param::LongData,
                ],
                true,
            )
        })
        .unwrap()
        .expect_ok("insert with long data");
    assert_eq!(affected_rows(first_payload(&inserted)), Some(1));
    let note = pair.same_query("SELECT note FROM rp_t WHERE id = 10");
    assert_eq!(
        note.text_rows(caps),
        vec![vec![Some(b"long-data".to_vec())]]
    );
    pair.same_stmt("reset insert", insert, com_stmt_reset)
        .unwrap()
        .expect_ok("reset");

    // MariaDB's bulk insert: one command, three rows.
    if caps.contains(Capabilities::MARIADB_CLIENT_STMT_BULK_OPERATIONS) {
        let rows = vec![
            vec![
                Param::Int(20),
                Param::text("b1"),
                Param::Double(1.0),
                Param::Null,
            ],
            vec![
                Param::Int(21),
                Param::Null,
                Param::Double(2.0),
                Param::text("n"),
            ],
            vec![
                Param::Int(22),
                Param::text("b3"),
                Param::Null,
                Param::text("m"),
            ],
        ];
        let bulk = pair
            .same_stmt("bulk execute", insert, |id| {
                com_stmt_bulk_execute(id, &rows)
            })
            .unwrap()
            .expect_ok("bulk insert");
        assert_eq!(
            affected_rows(first_payload(&bulk)),
            Some(3),
            "{label}: {bulk:?}"
        );
    }

    // Closing gets no reply; the statement is gone afterwards (the error
    // names the statement id, each side its own).
    assert!(pair.same_stmt("close", insert, com_stmt_close).is_none());
    let gone = pair
        .exchange(
            "execute closed statement",
            |is_direct| {
                let id = if is_direct {
                    insert.direct
                } else {
                    insert.proxied
                };
                com_stmt_execute(
                    id,
                    CURSOR_TYPE_NO_CURSOR,
                    &[Param::Int(1), Param::Null, Param::Null, Param::Null],
                    true,
                )
            },
            None,
            mask_digits,
        )
        .unwrap();
    assert_eq!(gone.error().map(|e| e.code), Some(1243));

    // The small commands.
    let fields = pair
        .same("field list", &com_field_list("rp_t", ""))
        .unwrap();
    assert_eq!(
        fields.packets.len(),
        5,
        "{label}: four columns and a terminator: {fields:?}"
    );
    let statistics = pair
        .exchange(
            "statistics",
            |_| com(Command::Statistics),
            None,
            mask_digits,
        )
        .unwrap();
    assert!(first_payload(&statistics).starts_with(b"Uptime: "));
    pair.same(
        "multi-statements off",
        &com_set_option(MULTI_STATEMENTS_OFF),
    );
    let refused = pair.same_query("SELECT 1; SELECT 2");
    assert_eq!(refused.error().map(|e| e.code), Some(1064));
    pair.same("multi-statements on", &com_set_option(MULTI_STATEMENTS_ON));
    pair.same("ping", &com(Command::Ping))
        .unwrap()
        .expect_ok("ping");
    pair.same("init db", &com_init_db("test"))
        .unwrap()
        .expect_ok("init db");
    let missing = pair
        .same("init missing db", &com_init_db("rp_no_such_db"))
        .unwrap();
    assert_eq!(missing.error().map(|e| e.code), Some(1049));

    // LOAD DATA LOCAL INFILE: the server asks, the client sends the file.
    let loaded = pair
        .exchange(
            "local infile",
            |_| com_query("LOAD DATA LOCAL INFILE 'rp.csv' INTO TABLE rp_t FIELDS TERMINATED BY ',' (id, name)"),
            Some(b"30,x\n31,y\n"),
            |_| {},
        )
        .unwrap()
        .expect_ok("load data");
    assert_eq!(
        loaded.packets[0].payload[0], 0xFB,
        "{label}: the server asked for the file"
    );
    assert_eq!(
        affected_rows(&loaded.packets.last().unwrap().payload),
        Some(2)
    );
    pair.same_query("SELECT id, name, val, note FROM rp_t ORDER BY id");

    // COM_RESET_CONNECTION drops the temporary table.
    pair.same("reset connection", &com(Command::ResetConnection))
        .unwrap()
        .expect_ok("reset connection");
    let dropped = pair.same_query("SELECT COUNT(*) FROM rp_t");
    assert_eq!(dropped.error().map(|e| e.code), Some(1146));

    // COM_QUIT: no reply, an orderly close from both.
    for (side, client) in [("direct", &mut pair.direct), ("proxied", &mut pair.proxied)] {
        client.send_command(&com(Command::Quit)).unwrap();
        let after = client.read_to_end(Duration::from_secs(20));
        assert!(
            after.packets.is_empty(),
            "{label}: {side}: no reply to COM_QUIT: {after:?}"
        );
        assert!(
            matches!(after.closing, Closing::Closed),
            "{label}: {side}: {after:?}"
        );
    }
    admin_connect()
        .query_drop(format!("DROP PROCEDURE IF EXISTS test.{procedure}"))
        .expect("drop procedure");
}

#[test]
fn replies_match_direct_with_classic_eof() {
    let torpor = Torpor::start();
    conversation(&torpor, base_capabilities(), "classic");
}

#[test]
fn replies_match_direct_with_deprecate_eof() {
    let torpor = Torpor::start();
    conversation(&torpor, base_capabilities() | DEP, "deprecate_eof");
}

#[test]
fn replies_match_direct_with_cached_metadata() {
    let torpor = Torpor::start();
    conversation(&torpor, base_capabilities() | CACHE, "cache");
}

#[test]
fn replies_match_direct_with_deprecate_eof_and_cached_metadata() {
    let torpor = Torpor::start();
    conversation(
        &torpor,
        base_capabilities() | DEP | CACHE,
        "deprecate_eof_cache",
    );
}

/// A MySQL-style client (CLIENT_MYSQL set) gets none of MariaDB's extended
/// flags, whatever its reserved bytes say; replies must match all the same.
#[test]
fn replies_match_direct_for_a_mysql_style_client() {
    let torpor = Torpor::start();
    let caps = base_capabilities() | DEP | CACHE | Capabilities::CLIENT_MYSQL;
    let pair = Pair::new(&torpor, caps, "mysql_style");
    assert_eq!(
        pair.caps().mariadb_bits(),
        0,
        "no extended flags for a MySQL client"
    );
    drop(pair);
    conversation(&torpor, caps, "mysql_style");
}

/// Fifty commands of every kind in one write; the fifty replies must come
/// back in order, identical to MariaDB's.
#[test]
fn pipelined_commands_match_direct() {
    let torpor = Torpor::start();
    for (label, caps) in [
        ("pipe_classic", base_capabilities()),
        ("pipe_dep_cache", base_capabilities() | DEP | CACHE),
    ] {
        let mut pair = Pair::new(&torpor, caps, label);
        pair.same_query("CREATE TEMPORARY TABLE rp_pipe (n INT)")
            .expect_ok("create");

        // Statements executed in the pipeline are prepared before it: a
        // client learns a statement's id from the prepare's reply.
        let statements: Vec<Statement> = (0..5)
            .map(|k| pair.prepare(&format!("SELECT ? + {k} AS s")))
            .collect();
        let build = |is_direct: bool| -> Vec<Vec<u8>> {
            let mut commands = Vec::new();
            for i in 0..50u32 {
                let statement = statements[(i / 10) as usize];
                let id = if is_direct {
                    statement.direct
                } else {
                    statement.proxied
                };
                commands.push(match i % 10 {
                    0 => com_query(&format!("SELECT {i} AS n, REPEAT('p', {})", i * 37)),
                    1 => com(Command::Ping),
                    2 => com_query(&format!("INSERT INTO rp_pipe VALUES ({i})")),
                    3 => com_query(&format!("SELECT * FROM rp_no_such_{i}")),
                    4 => com_init_db("test"),
                    5 => com_prepare(&format!("SELECT ? * {i} AS p")),
                    6 => com_stmt_execute(
                        id,
                        CURSOR_TYPE_NO_CURSOR,
                        &[Param::Int(i64::from(i))],
                        true,
                    ),
                    7 => com_query("SELECT 1; SELECT 2 AS two; DO 0"),
                    8 => com_field_list("rp_pipe", ""),
                    _ => com_query("SELECT COUNT(*) FROM rp_pipe"),
                });
                if i % 10 == 6 {
                    // No reply owed: must not shift the replies after it.
                    commands.push(com_stmt_close(id));
                }
            }
            commands
        };
        let mut replies: [Vec<Option<Reply>>; 2] = [Vec::new(), Vec::new()];
        for (side, client) in [&mut pair.direct, &mut pair.proxied]
            .into_iter()
            .enumerate()
        {
            let commands = build(side == 0);
            let mut wire = bytes::BytesMut::new();
            for payload in &commands {
                write_payload(&mut wire, 0, payload);
            }
            client.write_raw(&wire).expect("one write");
            for payload in &commands {
                let mut reply = client.read_reply_for(payload).expect("reply");
                if payload[0] == Command::StmtPrepare as u8 {
                    if let Some(reply) = reply.as_mut() {
                        mask_statement_id(&mut reply.packets[0]);
                    }
                }
                replies[side].push(reply);
            }
        }
        let [direct, proxied] = replies;
        let answered = proxied.iter().filter(|r| r.is_some()).count();
        assert_eq!(answered, 50, "{label}: fifty replies");
        for (i, (d, p)) in direct.iter().zip(&proxied).enumerate() {
            let (d, p) = (
                d.as_ref().map(|r| &r.packets[..]),
                p.as_ref().map(|r| &r.packets[..]),
            );
            pair.compare(
                &format!("pipelined command {i}"),
                d.unwrap_or_default(),
                p.unwrap_or_default(),
            );
        }
        // An execute that named the wrong statement id would fail too.
        let errors = proxied
            .iter()
            .flatten()
            .filter(|r| r.ending == Ending::Error)
            .count();
        let messages: Vec<_> = proxied.iter().flatten().filter_map(Reply::error).collect();
        assert_eq!(
            errors, 5,
            "{label}: only the five missing-table selects fail: {messages:#?}"
        );
        // And the connection is still in step afterwards.
        pair.same("ping after pipeline", &com(Command::Ping))
            .unwrap()
            .expect_ok("ping");
    }
}

/// sysbench ends a connection with COM_STMT_CLOSE and COM_QUIT in one TCP
/// segment. Torpor must close the client connection cleanly and let go
/// of the backend connection.
#[test]
fn stmt_close_and_quit_in_one_segment_release_the_backend() {
    let torpor = Torpor::start();
    let mut client =
        RawClient::connect(torpor.addr(), &LoginOptions::app(base_capabilities() | DEP));
    let caps = client.capabilities;
    let (statement, _) = client.prepare("SELECT ? AS x");
    client
        .command(&com_stmt_execute(
            statement.statement_id,
            0,
            &[Param::Int(7)],
            true,
        ))
        .unwrap()
        .unwrap()
        .expect_ok("execute");

    // The query finds its own backend thread: the processlist shows it
    // running this very text.
    let marker = "rp-close-quit-marker";
    let me = client.query(&format!(
        "SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE '%{marker}%'"
    ));
    let rows = me.text_rows(caps);
    assert_eq!(
        rows.len(),
        1,
        "exactly one thread runs the marker query: {rows:?}"
    );
    let thread: u64 = String::from_utf8(rows[0][0].clone().unwrap())
        .unwrap()
        .parse()
        .unwrap();
    let mut admin = admin_connect();
    let count = |admin: &mut mysql::Conn| -> u64 {
        admin
            .query_first(format!(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = {thread}"
            ))
            .unwrap()
            .unwrap()
    };
    assert_eq!(
        count(&mut admin),
        1,
        "the backend connection is there before"
    );

    let closes = |admin: &mut mysql::Conn| -> u64 {
        admin
            .query_first::<(String, u64), _>("SHOW GLOBAL STATUS LIKE 'Com_stmt_close'")
            .unwrap()
            .map_or(0, |(_, n)| n)
    };
    let closes_before = closes(&mut admin);

    let mut wire = bytes::BytesMut::new();
    write_payload(&mut wire, 0, &com_stmt_close(statement.statement_id));
    write_payload(&mut wire, 0, &com(Command::Quit));
    client.write_raw(&wire).unwrap();
    let after = client.read_to_end(Duration::from_secs(20));
    assert!(
        after.packets.is_empty() && after.trailing.is_empty(),
        "nothing answers COM_STMT_CLOSE or COM_QUIT: {after:?}"
    );
    assert!(
        matches!(after.closing, Closing::Closed),
        "an orderly close: {:?}",
        after.closing
    );

    // Torpor lets go of the session, closes its statement on the backend,
    // and keeps the backend connection, idle, for other sessions (it
    // lends connections per transaction).
    let deadline = Instant::now() + Duration::from_secs(30);
    while torpor.connection_count() > 0 {
        assert!(Instant::now() < deadline, "Torpor still counts the session");
        std::thread::sleep(Duration::from_millis(20));
    }
    while closes(&mut admin) <= closes_before {
        assert!(
            Instant::now() < deadline,
            "the statement was never closed on the backend"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let command: Option<String> = admin
        .query_first(format!(
            "SELECT COMMAND FROM information_schema.PROCESSLIST WHERE ID = {thread}"
        ))
        .unwrap();
    assert_eq!(
        command.as_deref(),
        Some("Sleep"),
        "the backend connection waits in the pool"
    );
}

/// The greeting a client gets is the backend's, as far as it can be: the
/// same version string and collation, and the same capabilities except
/// TLS, which is Torpor's own (offered whether the backend offers it or
/// not, as its certificate is Torpor's). Compression is offered as the
/// backend offers it (Torpor compresses the client leg itself).
#[test]
fn greeting_carries_the_backend_version_and_capabilities() {
    let torpor = Torpor::start();
    let mut direct = RawClient::open(backend().addr()).unwrap();
    let direct = direct.read_greeting().unwrap().clone();
    let mut proxied = RawClient::open(torpor.addr()).unwrap();
    let proxied = proxied.read_greeting().unwrap().clone();

    assert_eq!(
        String::from_utf8_lossy(&proxied.server_version),
        String::from_utf8_lossy(&direct.server_version)
    );
    assert!(String::from_utf8_lossy(&proxied.server_version).contains("MariaDB"));
    let torpors_own = Capabilities::CLIENT_SSL;
    assert_eq!(
        proxied.capabilities & !torpors_own,
        direct.capabilities & !torpors_own,
        "backend offers {:?}",
        direct.capabilities
    );
    assert!(proxied.capabilities.contains(Capabilities::CLIENT_SSL));
    assert_eq!(
        proxied.capabilities.contains(Capabilities::CLIENT_COMPRESS),
        direct.capabilities.contains(Capabilities::CLIENT_COMPRESS)
    );
    assert_eq!(proxied.collation, direct.collation);
    assert_eq!(proxied.auth_plugin, b"mysql_native_password");
    assert_eq!(proxied.seed.len(), 20);
    assert!(
        proxied.connection_id >= 1 << 24,
        "Torpor's ids are above backend thread ids: {}",
        proxied.connection_id
    );
}
