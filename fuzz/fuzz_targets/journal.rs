//! The transaction journal: a session's commands and reply digests driven
//! in any order, and the statement checks made before a replay.
//!
//! Checks: it never panics; what it offers to replay fits its budget,
//! holds no more entries than statements were seen, and has no statement
//! that `hazard` refuses; it is open exactly while a transaction is; only
//! a plain ROLLBACK counts as rolled back when its connection dies.
//!
//! Input: a budget byte, then records of [op, length, bytes…]. The op's
//! low three bits choose what happens (see `match`); bit 3 says a
//! transaction is open after the reply, bit 4 that the reply was a
//! deadlock error, bit 5 that `SET TRANSACTION` characteristics were
//! pending.

#![no_main]

use libfuzzer_sys::fuzz_target;
use torpor_protocol::frame::{PacketHeader, MAX_PAYLOAD};
use torpor_protocol::packets::ServerStatus;
use torpor_protocol::reply::PacketClass;
use torpor_replay::journal::{
    hazard, interrupted, is_plain_rollback, Interrupted, JournalCommand, Outcome, Refusal,
    ReplyDigest, TransactionJournal,
};

const BUDGETS: [usize; 4] = [0, 100, 400, 1 << 20];
/// What an entry costs besides its bytes (replay/src/journal.rs).
const ENTRY_OVERHEAD: usize = 64;

fuzz_target!(|data: &[u8]| {
    let Some((&budget, mut records)) = data.split_first() else {
        return;
    };
    let budget = BUDGETS[usize::from(budget) % BUDGETS.len()];
    let mut journal = TransactionJournal::new(budget);
    assert_eq!(journal.enabled(), budget > 0);
    let mut digest = ReplyDigest::new();
    // Statements seen since the transaction opened.
    let mut seen = 0usize;

    while let Some((&[op, len], rest)) = records.split_first_chunk::<2>() {
        let len = usize::from(len).min(rest.len());
        let (bytes, rest) = rest.split_at(len);
        records = rest;
        let in_transaction = op & 0x08 != 0;
        let deadlock = op & 0x10 != 0;
        let characteristics = (op & 0x20 != 0).then_some("SET TRANSACTION READ ONLY");
        match op & 0x07 {
            0..=2 => {
                let command = match op & 0x07 {
                    0 => Some(JournalCommand::Query(bytes.to_vec())),
                    1 => Some(JournalCommand::Execute {
                        statement: len as u32,
                        payload: bytes.to_vec(),
                        types: (op & 0x40 != 0).then(|| bytes.into()),
                        sql: bytes.into(),
                    }),
                    _ => None,
                };
                let was_open = journal.is_open();
                let outcome = take_outcome(&mut digest, deadlock);
                journal.reply_ended(command, outcome, in_transaction, characteristics);
                assert_eq!(journal.is_open(), in_transaction);
                seen = match (in_transaction, was_open) {
                    (false, _) => 0,
                    (true, true) => seen + 1,
                    (true, false) => 1,
                };
            }
            3 => journal.refuse(Refusal::Unrecorded {
                statement: seen,
                what: "long data",
            }),
            4 => {
                journal.clear();
                seen = 0;
                assert!(!journal.is_open());
            }
            5 => check_replayable(&journal, budget, seen),
            6 => {
                // A reply packet: its class from the op's high bits.
                let status = ServerStatus(u16::from(op));
                let class = match op >> 5 {
                    0 => PacketClass::Ok(status),
                    1 => PacketClass::Eof(status),
                    2 => PacketClass::Err,
                    3 => PacketClass::PrepareOk,
                    4 => PacketClass::Row,
                    _ => PacketClass::Other,
                };
                let header = PacketHeader {
                    len: bytes.len().min(MAX_PAYLOAD),
                    seq: op,
                };
                if digest.packet(class, header, bytes) {
                    digest.body(bytes);
                }
            }
            _ => {
                let _ = hazard(bytes);
                assert_eq!(
                    interrupted(bytes) == Interrupted::RolledBack,
                    is_plain_rollback(bytes)
                );
                let _ = take_outcome(&mut digest, deadlock).difference(&Outcome::default());
            }
        }
    }
    check_replayable(&journal, budget, seen);
});

/// The outcome of the reply digested so far; the next reply starts anew.
fn take_outcome(digest: &mut ReplyDigest, deadlock: bool) -> Outcome {
    Outcome {
        error: deadlock.then_some(1213),
        ..std::mem::take(digest).finish()
    }
}

fn check_replayable(journal: &TransactionJournal, budget: usize, seen: usize) {
    match journal.replayable() {
        Ok((entries, _characteristics)) => {
            assert!(entries.len() <= seen, "more entries than statements");
            let cost: usize = entries
                .iter()
                .map(|e| {
                    ENTRY_OVERHEAD
                        + match &e.command {
                            JournalCommand::Query(sql) => sql.len(),
                            JournalCommand::Execute { payload, .. } => payload.len(),
                        }
                })
                .sum();
            assert!(cost <= budget, "entries over the budget");
            for entry in entries {
                assert_eq!(hazard(entry.command.sql()), None);
            }
            if !journal.is_open() {
                assert!(entries.is_empty());
            }
        }
        Err(Refusal::Off) => assert_eq!(budget, 0),
        Err(Refusal::Hazard { statement, .. }) => assert!(statement >= 1 && statement <= seen),
        Err(Refusal::Unrecorded { statement, .. }) => assert!(statement <= seen),
        Err(Refusal::OverBudget { budget: b }) => assert_eq!(b, budget),
        Err(Refusal::RolledBack { code }) => assert_eq!(code, 1213),
    }
}
