use super::*;
use proptest::prelude::*;
use torpor_protocol::packets::ServerStatus;
use twox_hash::XxHash3_64;

/// A header for a packet of `len` bytes.
fn header(len: usize) -> PacketHeader {
    PacketHeader { len, seq: 1 }
}

fn query(sql: &str) -> Option<JournalCommand> {
    Some(JournalCommand::Query(sql.as_bytes().to_vec()))
}

fn ok(affected: u64, insert_id: u64) -> Outcome {
    let mut digest = ReplyDigest::new();
    let payload = [0u8, affected as u8, insert_id as u8, 2, 0, 0, 0];
    digest.packet(
        PacketClass::Ok(ServerStatus(ServerStatus::IN_TRANS)),
        header(payload.len()),
        &payload,
    );
    digest.finish()
}

#[test]
fn hazards_by_statement() {
    let table: &[(&str, Option<Hazard>)] = &[
        ("INSERT INTO t (a) VALUES (1)", None),
        ("SELECT * FROM t WHERE id = 5 FOR UPDATE", None),
        ("SELECT LAST_INSERT_ID()", None),
        ("SELECT 'rand()', `now` FROM t -- uuid()", None),
        ("UPDATE t SET a = 1 ORDER BY id LIMIT 1", None),
        ("BEGIN", None),
        ("SELECT RAND()", Some(Hazard::Nondeterministic("rand"))),
        ("select uuid()", Some(Hazard::Nondeterministic("uuid"))),
        (
            "SELECT UUID_SHORT()",
            Some(Hazard::Nondeterministic("uuid_short")),
        ),
        (
            "INSERT INTO t VALUES (NOW())",
            Some(Hazard::Nondeterministic("now")),
        ),
        (
            "INSERT INTO t VALUES (SYSDATE())",
            Some(Hazard::Nondeterministic("sysdate")),
        ),
        (
            "UPDATE t SET c = CURRENT_TIMESTAMP",
            Some(Hazard::Nondeterministic("current_timestamp")),
        ),
        (
            "SELECT UNIX_TIMESTAMP()",
            Some(Hazard::Nondeterministic("unix_timestamp")),
        ),
        ("DO SLEEP(1)", Some(Hazard::Nondeterministic("sleep"))),
        (
            "SELECT GET_LOCK('a', 1)",
            Some(Hazard::Nondeterministic("get_lock")),
        ),
        (
            "SELECT @@pseudo_thread_id",
            Some(Hazard::Nondeterministic("connection variable")),
        ),
        ("DELETE FROM t LIMIT 10", Some(Hazard::UnorderedLimit)),
        (
            "update t set a = 2 where b > 1 limit 1",
            Some(Hazard::UnorderedLimit),
        ),
        ("SET @x = 1", Some(Hazard::ChangesSession)),
        ("SET sql_mode = ''", Some(Hazard::ChangesSession)),
        ("USE other", Some(Hazard::ChangesSession)),
        ("SELECT a INTO @x FROM t", Some(Hazard::ChangesSession)),
        (
            "CREATE TEMPORARY TABLE x (a int)",
            Some(Hazard::ChangesSession),
        ),
        ("XA END 'x'", Some(Hazard::Opaque)),
        ("CALL p()", Some(Hazard::Opaque)),
        (
            "LOAD DATA LOCAL INFILE 'x' INTO TABLE t",
            Some(Hazard::Opaque),
        ),
    ];
    for (sql, want) in table {
        assert_eq!(hazard(sql.as_bytes()), *want, "{sql}");
    }
}

#[test]
fn a_commit_is_never_run_again() {
    for sql in [
        "COMMIT",
        "commit work",
        "/* app */ COMMIT",
        "  Commit;",
        "ROLLBACK AND CHAIN",
        "ROLLBACK RELEASE",
        "ROLLBACK; COMMIT",
        "XA COMMIT 'x'",
        "BEGIN",
        "START TRANSACTION",
        "CREATE TABLE t2 (a int)",
        "ALTER TABLE t ADD c int",
        "TRUNCATE t",
        "SET autocommit = 1",
        "INSERT INTO t VALUES (1); COMMIT",
        "CALL p()",
        "",
    ] {
        assert_eq!(
            interrupted(sql.as_bytes()),
            Interrupted::OutcomeUnknown,
            "{sql:?}"
        );
    }
    for sql in [
        "INSERT INTO t VALUES (1)",
        "UPDATE t SET a = 1 WHERE id = 2",
        "SELECT * FROM t",
        "ROLLBACK TO SAVEPOINT s",
        "SAVEPOINT s",
        "INSERT INTO t VALUES (1);",
    ] {
        assert_eq!(
            interrupted(sql.as_bytes()),
            Interrupted::RunAgain,
            "{sql:?}"
        );
    }
    for sql in ["ROLLBACK", "rollback work;", "/* x */ Rollback"] {
        assert_eq!(
            interrupted(sql.as_bytes()),
            Interrupted::RolledBack,
            "{sql:?}"
        );
    }
}

#[test]
fn a_plain_begin_is_told_apart() {
    for sql in [
        "BEGIN",
        "begin work;",
        "/* app */ START TRANSACTION",
        "START TRANSACTION READ ONLY",
        "start transaction with consistent snapshot, read write",
    ] {
        assert!(is_plain_begin(sql.as_bytes()), "{sql:?}");
    }
    for sql in [
        "",
        "COMMIT",
        "BEGIN; INSERT INTO t VALUES (1)",
        "BEGIN NOT ATOMIC SELECT 1; END",
        "START SLAVE",
        "START TRANSACTION; COMMIT",
        "XA START 'x'",
        "INSERT INTO t VALUES (1)",
    ] {
        assert!(!is_plain_begin(sql.as_bytes()), "{sql:?}");
    }
}

#[test]
fn a_transaction_is_journaled_from_its_first_statement_to_its_end() {
    let mut journal = TransactionJournal::new(DEFAULT_MAX_BYTES);
    journal.reply_ended(query("SELECT 1"), ok(0, 0), false, None);
    assert!(!journal.is_open());
    journal.reply_ended(
        query("BEGIN"),
        ok(0, 0),
        true,
        Some("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"),
    );
    journal.reply_ended(query("INSERT INTO t (v) VALUES (1)"), ok(1, 7), true, None);
    let (entries, characteristics) = journal.replayable().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1].outcome.last_insert_id, 7);
    assert_eq!(
        characteristics,
        Some("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
    );
    journal.reply_ended(query("COMMIT"), ok(0, 0), false, None);
    assert!(!journal.is_open());
    assert_eq!(journal.replayable().unwrap().0.len(), 0);
}

#[test]
fn refusals_last_until_the_transaction_ends() {
    let mut journal = TransactionJournal::new(DEFAULT_MAX_BYTES);
    journal.reply_ended(query("BEGIN"), ok(0, 0), true, None);
    journal.reply_ended(query("SELECT RAND()"), ok(0, 0), true, None);
    journal.reply_ended(query("SELECT 1"), ok(0, 0), true, None);
    assert_eq!(
        journal.replayable().unwrap_err(),
        Refusal::Hazard {
            statement: 2,
            what: Hazard::Nondeterministic("rand")
        }
    );
    journal.reply_ended(query("ROLLBACK"), ok(0, 0), false, None);
    journal.reply_ended(query("BEGIN"), ok(0, 0), true, None);
    assert!(
        journal.replayable().is_ok(),
        "a new transaction starts clean"
    );

    journal.reply_ended(None, ok(0, 0), true, None);
    assert!(matches!(
        journal.replayable(),
        Err(Refusal::Unrecorded { statement: 2, .. })
    ));

    let mut deadlocked = TransactionJournal::new(DEFAULT_MAX_BYTES);
    deadlocked.reply_ended(query("BEGIN"), ok(0, 0), true, None);
    let mut digest = ReplyDigest::new();
    let err = b"\xff\xbd\x04#40001Deadlock";
    digest.packet(PacketClass::Err, header(err.len()), err);
    deadlocked.reply_ended(query("UPDATE t SET a = 1"), digest.finish(), true, None);
    assert_eq!(
        deadlocked.replayable().unwrap_err(),
        Refusal::RolledBack { code: 1213 }
    );

    let mut off = TransactionJournal::new(0);
    assert!(!off.enabled());
    off.reply_ended(query("BEGIN"), ok(0, 0), true, None);
    assert_eq!(off.replayable().unwrap_err(), Refusal::Off);
}

#[test]
fn ok_packets_compare_by_rows_and_ids_not_by_flags() {
    let mut a = ReplyDigest::new();
    let mut b = ReplyDigest::new();
    // Same affected rows and insert id; different status, warnings, info
    // and session-state bytes.
    let first = b"\x00\x01\x05\x03\x40\x00\x00\x05hello";
    let second = b"\x00\x01\x05\x01\x00\x02\x00";
    a.packet(
        PacketClass::Ok(ServerStatus(0x4003)),
        header(first.len()),
        first,
    );
    b.packet(
        PacketClass::Ok(ServerStatus(1)),
        header(second.len()),
        second,
    );
    assert_eq!(a.finish(), b.finish());
    assert_eq!(a.finish().affected_rows, 1);
    assert_eq!(a.finish().last_insert_id, 5);

    let mut c = ReplyDigest::new();
    let other_id = b"\x00\x01\x06\x03\x00\x00\x00";
    c.packet(
        PacketClass::Ok(ServerStatus(3)),
        header(other_id.len()),
        other_id,
    );
    let difference = a.finish().difference(&c.finish()).unwrap();
    assert!(difference.contains("id 6 instead of 5"), "{difference}");
}

#[test]
fn over_budget_refuses_and_keeps_nothing() {
    let mut journal = TransactionJournal::new(1000);
    journal.reply_ended(query("BEGIN"), ok(0, 0), true, None);
    for _ in 0..5 {
        let sql = format!("INSERT INTO t VALUES ('{}')", "x".repeat(300));
        journal.reply_ended(query(&sql), ok(1, 0), true, None);
    }
    assert_eq!(
        journal.replayable().unwrap_err(),
        Refusal::OverBudget { budget: 1000 }
    );
}

fn rows_digest(packets: &[Vec<u8>], chunk: usize) -> Outcome {
    let mut digest = ReplyDigest::new();
    for packet in packets {
        if digest.packet(PacketClass::Other, header(packet.len()), packet) {
            for piece in packet.chunks(chunk.max(1)) {
                digest.body(piece);
            }
        }
    }
    digest.finish()
}

/// `rows` as wire packets (sequence ids from 2), digested a row at a
/// time through `packet` and `body`, or in runs: rows `cuts` apart handed
/// to `ReplyDigest::rows` whole.
fn wire_rows_digest(rows: &[Vec<u8>], cuts: Option<usize>) -> Outcome {
    let mut digest = ReplyDigest::new();
    let headers: Vec<PacketHeader> = rows
        .iter()
        .zip(2u8..)
        .map(|(row, seq)| PacketHeader {
            len: row.len(),
            seq,
        })
        .collect();
    let Some(every) = cuts else {
        for (row, header) in rows.iter().zip(&headers) {
            if digest.packet(PacketClass::Row, *header, row) {
                digest.body(row);
            }
        }
        return digest.finish();
    };
    for (run, run_headers) in rows.chunks(every.max(1)).zip(headers.chunks(every.max(1))) {
        let mut wire = Vec::new();
        for (row, header) in run.iter().zip(run_headers) {
            wire.extend_from_slice(&header.encode());
            wire.extend_from_slice(row);
        }
        digest.rows(&wire);
    }
    digest.finish()
}

proptest! {
    #[test]
    fn rows_in_runs_digest_as_rows_one_by_one(
        rows in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 0..20),
        every in 1usize..8,
    ) {
        prop_assert_eq!(wire_rows_digest(&rows, Some(every)), wire_rows_digest(&rows, None));
    }

    #[test]
    fn the_journal_never_holds_more_than_its_budget(
        budget in 0usize..4000,
        statements in proptest::collection::vec((0usize..500, any::<bool>()), 0..40),
    ) {
        let mut journal = TransactionJournal::new(budget);
        for (len, open) in statements {
            let sql = format!("SELECT '{}'", "y".repeat(len));
            journal.reply_ended(query(&sql), ok(0, 0), open, None);
            prop_assert!(journal.bytes <= budget);
            if let Ok((entries, _)) = journal.replayable() {
                let held: usize = entries.iter().map(|e| e.command.cost()).sum();
                prop_assert!(held <= budget);
                prop_assert!(budget > 0 || entries.is_empty());
            }
        }
    }

    #[test]
    fn digests_do_not_depend_on_how_bytes_arrive(
        // Rows small and large against the digest's 512-byte stage: some
        // are staged, some pass straight through, some fill it.
        packets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..700), 0..10),
        chunk in 1usize..600,
    ) {
        prop_assert_eq!(rows_digest(&packets, chunk), rows_digest(&packets, usize::MAX));
    }

    #[test]
    fn a_digest_is_xxh3_of_the_bytes_whether_they_fit_the_stage_or_not(
        // Around the 512-byte stage: replies that stay on it end in the
        // one-shot hash, longer ones in the streaming hasher.
        packets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..400), 0..6),
        chunk in 1usize..300,
    ) {
        let mut hashed = Vec::new();
        for packet in &packets {
            hashed.push(1u8);
            hashed.extend_from_slice(&(packet.len() as u64).to_le_bytes());
            hashed.extend_from_slice(packet);
        }
        prop_assert_eq!(rows_digest(&packets, chunk).digest, XxHash3_64::oneshot(&hashed));
    }

    #[test]
    fn a_reset_digest_is_a_new_one(
        before in proptest::collection::vec(any::<u8>(), 0..1500),
        after in proptest::collection::vec(any::<u8>(), 0..1500),
    ) {
        let mut reused = ReplyDigest::new();
        reused.packet(PacketClass::Other, header(before.len()), &before);
        reused.body(&before);
        reused.reset();
        let mut new = ReplyDigest::new();
        for digest in [&mut reused, &mut new] {
            digest.packet(PacketClass::Other, header(after.len()), &after);
            digest.body(&after);
        }
        prop_assert_eq!(reused.finish(), new.finish());
    }

    #[test]
    fn different_rows_give_different_digests(
        packets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..50), 1..5),
        at in any::<prop::sample::Index>(),
    ) {
        let mut changed = packets.clone();
        let packet = at.index(changed.len());
        let byte = at.index(changed[packet].len());
        changed[packet][byte] ^= 1;
        prop_assert_ne!(rows_digest(&packets, 7), rows_digest(&changed, 7));
    }
}

#[test]
fn an_ended_transaction_leaves_its_buffers_for_the_next_commands() {
    let mut journal = TransactionJournal::new(DEFAULT_MAX_BYTES);
    assert_eq!(journal.take_spare_buffer(), None, "nothing ended yet");
    let big = "x".repeat(KEPT_BUFFER_BYTES + 1);
    let mut statements = vec!["BEGIN".to_string(), big];
    statements.extend((0..KEPT_BUFFERS + 4).map(|i| format!("UPDATE t SET a = {i}")));
    for sql in &statements {
        journal.reply_ended(query(sql), ok(1, 0), true, None);
    }
    assert_eq!(journal.take_spare_buffer(), None, "the transaction is open");
    journal.reply_ended(query("COMMIT"), ok(0, 0), false, None);
    let mut spares = Vec::new();
    while let Some(buffer) = journal.take_spare_buffer() {
        spares.push(buffer);
    }
    // BEGIN and the first updates' buffers, the large one left out, at
    // most KEPT_BUFFERS of them, each emptied.
    assert_eq!(spares.len(), KEPT_BUFFERS);
    for buffer in &spares {
        assert!(buffer.is_empty(), "a kept buffer is emptied");
        assert!(buffer.capacity() > 0 && buffer.capacity() <= KEPT_BUFFER_BYTES);
    }
    // A refused transaction's entries are kept the same way; an idle
    // session gives them back.
    journal.reply_ended(query("BEGIN"), ok(0, 0), true, None);
    journal.reply_ended(query("UPDATE t SET a = 1"), ok(1, 0), true, None);
    journal.refuse(Refusal::Unrecorded {
        statement: 3,
        what: "long data",
    });
    assert!(journal.take_spare_buffer().is_some());
    journal.release_spares();
    assert_eq!(journal.take_spare_buffer(), None);
}

#[test]
fn a_recycled_buffer_carries_nothing_of_its_command() {
    let command = JournalCommand::Query(b"UPDATE t SET a = 1".to_vec());
    let buffer = command.into_buffer();
    assert!(buffer.is_empty());
    assert!(buffer.capacity() >= "UPDATE t SET a = 1".len());
}
