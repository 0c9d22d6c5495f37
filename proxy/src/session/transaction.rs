//! Transaction replay: journaling the open transaction's statements with
//! digests of their replies ([`torpor_replay::journal`]), and when its
//! backend connection dies, running the journal again on a new one.
//!
//! The loss is noticed in two places:
//!
//! - between commands, by [`Session::attach`] (the held connection is
//!   closed): the journal is replayed, then the client's next command
//!   runs as usual;
//! - while a command waits for its reply, by the drain, when not one byte
//!   of that reply has reached the client and it is the only command in
//!   flight: a statement that cannot end the transaction is put back in
//!   front of the client's buffer and runs again after the replay; one
//!   that can (COMMIT above all) is never run again — the client is told
//!   that its outcome is unknown. A plain ROLLBACK is answered OK either
//!   way: the transaction is rolled back whether it ran or not. A plain
//!   BEGIN sent while no transaction was open runs again on a new
//!   connection: it had done nothing another connection could see.
//!
//! Replay happens only when the open transaction is the session's one pin
//! (a temporary table, a lock, a cursor… keep the old answer: the session
//! ends with "lost connection"). The new connection gets the session's
//! state with the `SET TRANSACTION` characteristics the transaction
//! started with, then every journaled command — each auto-increment id
//! fixed beforehand with `SET insert_id` — and each reply must match its
//! digest. On any difference the new connection's transaction is rolled
//! back and the client's command gets [`SessionError::TransactionNotReplayed`]
//! (a deadlock-style "rolled back, run it again"); the session goes on
//! outside a transaction.

use bytes::BytesMut;
use torpor_protocol::command::Command;
use torpor_protocol::frame::{write_payload, PacketHeader, HEADER_LEN, MAX_PAYLOAD};
use torpor_protocol::reply::{PacketClass, ReplyTracker, Step};
use torpor_protocol::{stmt, ProtocolError};
use torpor_replay::journal::{
    interrupted, is_plain_begin, is_plain_rollback, Interrupted, JournalCommand, JournalEntry,
    Outcome, ReplyDigest, TransactionJournal,
};
use tracing::{info, warn};

use super::attach::prepare_on;
use super::commands::{Pending, Session};
use super::model::PinReason;
use super::reply::ReplyWalk;
use super::statements::BackendStatements;
use super::{report, Failure};
use crate::backend::{self, read_packet, BackendConn, QueryResult};
use crate::client_error::ClientError;
use crate::error::SessionError;
use crate::pool::Lent;

/// What the transaction journal keeps of a command whose reply is owed.
#[derive(Debug)]
pub(super) enum JournalNote {
    /// Not the journal's business: it neither runs in nor ends a
    /// transaction (ping, prepare, statement reset, Torpor's own).
    Neutral,
    /// A command the journal cannot run again; inside a transaction it
    /// makes the transaction not replayable.
    Unrecorded,
    /// A statement or execute that is journaled.
    Recorded(Box<Recorded>),
}

impl JournalNote {
    /// The statement text of a journaled command.
    pub(super) fn sql(&self) -> Option<&[u8]> {
        match self {
            JournalNote::Recorded(recorded) => Some(recorded.command.sql()),
            _ => None,
        }
    }
}

/// A command with nothing in it, no allocation: what a kept shell holds
/// until its next command.
const EMPTY_COMMAND: JournalCommand = JournalCommand::Query(Vec::new());

/// Shells of journal notes a session keeps for its next commands: as
/// many as the commands of a pipelined batch that are usually in flight.
const KEPT_SHELLS: usize = 8;

/// A journaled command, as dispatched.
#[derive(Debug)]
pub(super) struct Recorded {
    command: JournalCommand,
    /// The pending `SET TRANSACTION` characteristics, when the command was
    /// sent outside a transaction (it may open one and consume them).
    characteristics: Option<String>,
}

/// Whether a statement text may open a transaction by itself (`BEGIN`,
/// `START TRANSACTION`, `XA START`), by a cheap look at its first bytes;
/// texts that open with a comment or a parenthesis count as "may". A miss
/// costs only the replay of that transaction (it is refused), never its
/// correctness.
fn might_open_transaction(sql: &[u8]) -> bool {
    let start = sql.iter().position(|b| !b.is_ascii_whitespace());
    let Some(text) = start.and_then(|s| sql.get(s..)) else {
        return false;
    };
    let starts = |word: &[u8]| {
        text.get(..word.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(word))
    };
    matches!(text.first(), Some(b'/' | b'(' | b'-' | b'#'))
        || starts(b"begin")
        || starts(b"start")
        || starts(b"xa")
}

impl Session {
    /// Whether a statement or execute sent now may belong to a transaction
    /// (so it is worth recording): one is open, autocommit is off, or
    /// commands before it in the batch may open one.
    fn may_be_in_transaction(&self) -> bool {
        self.journal.enabled()
            && (self.model.in_transaction() || !self.model.autocommit() || !self.ledger.is_empty())
    }

    /// The pending `SET TRANSACTION` characteristics a command sent now
    /// could consume.
    fn pending_characteristics(&self) -> Option<String> {
        if self.model.in_transaction() {
            None
        } else {
            self.model.state.next_transaction.clone()
        }
    }

    /// What the journal keeps of `command` (a whole payload).
    pub(super) fn note_for(&self, command: Command, payload: &[u8]) -> JournalNote {
        match command {
            Command::Query => {
                let sql = payload.get(1..).unwrap_or_default();
                let wanted = self.journal.enabled()
                    && (self.may_be_in_transaction() || might_open_transaction(sql));
                if !wanted {
                    return JournalNote::Unrecorded;
                }
                self.recorded(sql, JournalCommand::Query)
            }
            Command::Ping
            | Command::Statistics
            | Command::StmtPrepare
            | Command::StmtClose
            | Command::StmtReset => JournalNote::Neutral,
            _ => JournalNote::Unrecorded,
        }
    }

    /// What the journal keeps of an execute of client statement `id`
    /// (`payload` as the client sent it, with its own statement id): the
    /// payload with parameter types, which the new connection needs.
    pub(super) fn note_for_execute(&self, id: u32, payload: &[u8]) -> JournalNote {
        let Some(statement) = self.statements.get(id) else {
            return JournalNote::Unrecorded;
        };
        // A prepared BEGIN (sysbench prepares it) opens the transaction
        // it is the first entry of. Long data went ahead of the execute
        // and is not in its payload: running the payload alone would
        // bind other values.
        let wanted = self.journal.enabled()
            && (self.may_be_in_transaction() || might_open_transaction(&statement.sql));
        if !wanted || self.model.has_long_data(id) {
            return JournalNote::Unrecorded;
        }
        let types = match stmt::param_types(payload, statement.params) {
            Ok(Some(_)) => None,
            Ok(None) if statement.params == 0 => None,
            // Sent without types: the ones its client bound before, added
            // only if the transaction is replayed (`execute_payload`).
            Ok(None) => match &statement.param_types {
                Some(types) if types.len() == 2 * usize::from(statement.params) => {
                    Some(std::rc::Rc::clone(types))
                }
                _ => return JournalNote::Unrecorded,
            },
            Err(_) => return JournalNote::Unrecorded,
        };
        let sql = statement.sql.clone();
        self.recorded(payload, |payload| JournalCommand::Execute {
            statement: id,
            payload,
            types,
            sql,
        })
    }

    /// A note of the command `command` makes of `bytes` (copied): in a
    /// shell and a buffer kept from earlier notes when there are some, so
    /// that a transaction's statements allocate nothing once the session
    /// has run one or two (see [`Session::journal_shells`]).
    fn recorded(
        &self,
        bytes: &[u8],
        command: impl FnOnce(Vec<u8>) -> JournalCommand,
    ) -> JournalNote {
        let characteristics = self.pending_characteristics();
        let Some(mut shell) = self.journal_shells.borrow_mut().pop() else {
            return JournalNote::Recorded(Box::new(Recorded {
                command: command(bytes.to_vec()),
                characteristics,
            }));
        };
        let mut buffer = std::mem::replace(&mut shell.command, EMPTY_COMMAND).into_buffer();
        buffer.extend_from_slice(bytes);
        shell.command = command(buffer);
        shell.characteristics = characteristics;
        JournalNote::Recorded(shell)
    }

    /// A reply ended (the model already learnt from it): the journal
    /// takes it.
    pub(super) fn journal_reply_ended(&mut self, note: JournalNote, walk: &ReplyWalk) {
        let in_transaction = self.model.in_transaction();
        match note {
            JournalNote::Neutral => {}
            JournalNote::Unrecorded => {
                self.journal
                    .reply_ended(None, Outcome::default(), in_transaction, None)
            }
            JournalNote::Recorded(mut shell) => {
                let command = std::mem::replace(&mut shell.command, EMPTY_COMMAND);
                let characteristics = shell.characteristics.take();
                let outcome = walk.outcome().unwrap_or_default();
                self.journal.reply_ended(
                    Some(command),
                    outcome,
                    in_transaction,
                    characteristics.as_deref(),
                );
                // The shell is kept for the next note, with a buffer of
                // an ended transaction's when there is one.
                if let Some(buffer) = self.journal.take_spare_buffer() {
                    shell.command = JournalCommand::Query(buffer);
                }
                let shells = self.journal_shells.get_mut();
                if shells.len() < KEPT_SHELLS {
                    shells.push(shell);
                }
            }
        }
    }

    /// Whether the session's only pin is its open transaction, with a
    /// journal (replayable or not) — the case transaction replay answers.
    pub(super) fn pinned_by_transaction_only(&self) -> bool {
        self.journal.is_open()
            && self.model.pin_mask() == PinReason::Transaction.bit()
            && !self.model.user_variables_dirty
            && !self.model.last_insert_id_dirty
            && !self.model.tracking_dirty
    }

    /// With autocommit off and no transaction open, a statement sent now
    /// opens one: if its connection dies under it, nothing of it can have
    /// been committed (a statement that commits by itself is told apart by
    /// [`interrupted`]), so it may simply run again on a new connection —
    /// when nothing else ties the session to the dead one.
    fn opens_a_transaction_only(&self) -> bool {
        !self.model.autocommit() && self.nothing_open()
    }

    /// No transaction is open and nothing else ties the session to its
    /// connection.
    fn nothing_open(&self) -> bool {
        !self.journal.is_open()
            && !self.model.in_transaction()
            && self.model.pin_mask() == 0
            && !self.model.user_variables_dirty
            && !self.model.last_insert_id_dirty
            && !self.model.tracking_dirty
    }

    /// The command in flight is a plain `BEGIN` (or `START TRANSACTION`)
    /// sent while no transaction was open: it had not done anything
    /// another connection could see, so it may run again on a new one.
    fn begins_with_nothing_open(&self) -> bool {
        let begins = match self.ledger.front() {
            Some(Pending::Reply { note, .. }) => note.sql().is_some_and(is_plain_begin),
            _ => false,
        };
        begins && self.nothing_open()
    }

    /// The session's backend connection died while only its open
    /// transaction pinned it (it is dropped already): replays the
    /// transaction on a new connection, which it then holds; or gives the
    /// transaction up (a [`SessionError::TransactionNotReplayed`] failure
    /// for the client's next command; the session goes on).
    pub(super) async fn replay_transaction(&mut self) -> Result<(), Failure> {
        let budget = self.shared.settings().transaction_replay_max_bytes;
        let journal = std::mem::replace(&mut self.journal, TransactionJournal::new(budget));
        let (entries, characteristics) = match journal.replayable() {
            Ok((entries, characteristics)) => (entries, characteristics.map(str::to_string)),
            Err(refusal) => return Err(self.give_up(refusal.to_string())),
        };
        // The new connection gets the state the transaction started from:
        // the session's, with the characteristics its first statement
        // consumed pending again.
        let mut pending = characteristics;
        std::mem::swap(&mut self.model.state.next_transaction, &mut pending);
        let borrowed = self.borrow_backend(std::time::Instant::now(), false).await;
        std::mem::swap(&mut self.model.state.next_transaction, &mut pending);
        let conn = match borrowed {
            Ok(conn) => conn,
            // The backend stayed unreachable: the transaction is gone with
            // it, and the session goes on.
            Err(SessionError::BackendDown { held }) => {
                return Err(self.give_up(format!(
                    "the database was unreachable for {} s",
                    held.as_secs()
                )));
            }
            Err(error) => {
                self.model.transaction_lost();
                self.metrics.transaction_replayed(self.service.index, false);
                return Err(Failure {
                    error,
                    reply_seq: Some(1),
                });
            }
        };
        self.hold(conn);
        let result = match self.backend.as_mut() {
            Some(conn) => replay_entries(conn, entries, self.guard.id, &self.statements).await,
            None => return Err(Failure::internal()),
        };
        match result {
            Ok(Ok(())) => {
                let statements = entries.len();
                self.journal = journal;
                self.metrics.transaction_replayed(self.service.index, true);
                info!(
                    id = self.guard.id,
                    statements, "transaction replayed on a new backend connection"
                );
                Ok(())
            }
            Ok(Err(reason)) => {
                // The new connection is sound; only its transaction goes.
                let rolled_back = match self.backend.as_mut() {
                    Some(conn) => matches!(
                        backend::run_query(conn, "ROLLBACK").await,
                        Ok(QueryResult::Ok(_))
                    ),
                    None => false,
                };
                if !rolled_back {
                    self.drop_backend();
                }
                Err(self.give_up(reason))
            }
            Err(error) => {
                warn!(id = self.guard.id, %error, "transaction replay: the new backend connection failed");
                self.drop_backend();
                Err(self.give_up("the new connection failed too".to_string()))
            }
        }
    }

    /// Makes `conn` the session's backend connection.
    fn hold(&mut self, conn: Lent<BackendConn>) {
        self.counts.left_connection();
        self.guard
            .entry
            .backend_thread_id
            .store(conn.thread_id, std::sync::atomic::Ordering::Release);
        self.backend = Some(conn);
    }

    /// The transaction is not replayed: it is gone (the server rolled it
    /// back with its connection), and the client's command is told so.
    fn give_up(&mut self, reason: String) -> Failure {
        self.model.transaction_lost();
        self.journal.clear();
        self.metrics.transaction_replayed(self.service.index, false);
        Failure {
            error: SessionError::TransactionNotReplayed { reason },
            reply_seq: Some(1),
        }
    }

    /// Answers the client's front command with a failed replay's error and
    /// goes on — or with OK when it is a plain ROLLBACK, which the lost
    /// transaction fulfils; a failure it cannot answer is handed back.
    pub(super) fn refuse_after_replay(&mut self, failure: Failure) -> Result<(), Failure> {
        if !matches!(failure.error, SessionError::TransactionNotReplayed { .. })
            || !self.ledger.is_empty()
        {
            return Err(failure);
        }
        report(self.guard.id, self.peer, &failure.error, "replay");
        if let Some((total, seq)) = self.front_plain_rollback() {
            self.client.consume(total);
            self.write_ok_now(seq.wrapping_add(1));
            return Ok(());
        }
        if self.refuse_front_command(&failure.error) {
            return Ok(());
        }
        Err(failure)
    }

    /// The length and sequence id of the command at the front of the
    /// client's buffer when it is a whole COM_QUERY of a plain ROLLBACK.
    fn front_plain_rollback(&self) -> Option<(usize, u8)> {
        let header = PacketHeader::parse(&self.client.rbuf)?;
        if header.is_continued() {
            return None;
        }
        let payload = self.client.rbuf.get(HEADER_LEN..header.total_len())?;
        let (&command, sql) = payload.split_first()?;
        (command == Command::Query as u8 && is_plain_rollback(sql))
            .then_some((header.total_len(), header.seq))
    }

    /// Writes an OK with the session's status flags for the client.
    fn write_ok_now(&mut self, seq: u8) {
        let ok = torpor_protocol::packets::Ok {
            status: torpor_protocol::packets::ServerStatus(self.last_status()),
            ..Default::default()
        };
        torpor_protocol::packets::write_ok(&mut self.to_client, seq, ok);
    }

    /// The drain failed with `failure`. When the backend connection died
    /// before any byte of the only reply owed reached the client, and the
    /// session was pinned by its transaction only: a statement that cannot
    /// end the transaction goes back in front of the client's buffer and
    /// the transaction is replayed (or given up, the statement refused);
    /// one that can (COMMIT) is answered "outcome unknown" and never run
    /// again. Anything else is handed back.
    pub(super) async fn after_lost_reply(&mut self, failure: Failure) -> Result<(), Failure> {
        let lost = matches!(failure.error, SessionError::BackendLost(_));
        let killed = self
            .guard
            .entry
            .killed
            .load(std::sync::atomic::Ordering::Acquire);
        // Torpor's own commands ahead of the client's (a state diff, the
        // tracking setup) died unanswered with the connection: the next
        // one is brought to the session's state afresh, so only the
        // client's commands are in question. Not when one was refused:
        // that connection lives, and the client's command went after it.
        let disconnected = matches!(
            &failure.error,
            SessionError::BackendLost(io) if crate::error::is_disconnect(io)
        );
        if disconnected && !killed {
            while matches!(self.ledger.front(), Some(Pending::Reply { follow, .. }) if follow.is_swallowed())
            {
                self.ledger.pop_front();
            }
        }
        let only_reply = self.ledger.len() == 1
            && matches!(
                self.ledger.front(),
                Some(Pending::Reply { walk, note: JournalNote::Recorded(_), .. }) if walk.untouched()
            );
        let begins = self.begins_with_nothing_open();
        let first_statement = self.opens_a_transaction_only() || begins;
        if !lost || killed || !only_reply || !(first_statement || self.pinned_by_transaction_only())
        {
            return Err(failure);
        }
        let Some(Pending::Reply {
            note: JournalNote::Recorded(recorded),
            ..
        }) = self.ledger.pop_front()
        else {
            return Err(failure);
        };
        self.drop_backend();
        let command = recorded.command;
        // A BEGIN with nothing open ends nothing (it would commit an open
        // transaction, which is why `interrupted` calls it unknown).
        let kind = if begins {
            Interrupted::RunAgain
        } else {
            interrupted(command.sql())
        };
        match kind {
            Interrupted::OutcomeUnknown => {
                info!(
                    id = self.guard.id,
                    "backend connection lost during a statement that ends the transaction"
                );
                self.model.transaction_lost();
                self.journal.clear();
                self.metrics.transaction_replayed(self.service.index, false);
                if let Some(error) = ClientError::for_session_error(&SessionError::OutcomeUnknown) {
                    error.write(&mut self.to_client, 1);
                }
                return Ok(());
            }
            Interrupted::RolledBack => {
                // Ran or not, the transaction is rolled back.
                self.model.transaction_lost();
                self.journal.clear();
                self.write_ok_now(1);
                return Ok(());
            }
            Interrupted::RunAgain => {}
        }
        // The command runs again after the replay, as if it came now.
        let payload = match command {
            JournalCommand::Query(sql) => {
                let mut payload = Vec::with_capacity(sql.len() + 1);
                payload.push(Command::Query as u8);
                payload.extend_from_slice(&sql);
                payload
            }
            // The ledger adds the types where the statement needs them;
            // added here all the same, so it sees the execute as it was.
            JournalCommand::Execute { payload, types, .. } => {
                execute_payload(&payload, types.as_deref()).unwrap_or(payload)
            }
        };
        let mut wire = BytesMut::with_capacity(payload.len() + 4 + self.client.rbuf.len());
        write_payload(&mut wire, 0, &payload);
        wire.extend_from_slice(&self.client.rbuf);
        self.client.rbuf = wire;
        if first_statement {
            // Nothing to replay: the next attach brings a new connection
            // to the session's state and the statement runs there.
            info!(
                id = self.guard.id,
                "backend connection lost under a transaction's first statement; it runs again"
            );
            self.journal.clear();
            return Ok(());
        }
        match self.replay_transaction().await {
            Ok(()) => Ok(()),
            Err(failure) => self.refuse_after_replay(failure),
        }
    }
}

/// A journaled execute's payload as it runs again: with `types`, the
/// parameter types its client bound before, added when it came without
/// them. `None`: they do not fit it (the journal takes only executes
/// they fit, see [`Session::note_for_execute`]).
fn execute_payload(payload: &[u8], types: Option<&[u8]>) -> Option<Vec<u8>> {
    let Some(types) = types else {
        return Some(payload.to_vec());
    };
    let params = u16::try_from(types.len() / 2).ok()?;
    stmt::with_param_types(payload, params, types)
        .ok()
        .flatten()
}

/// Runs `entries` on `conn`, comparing each reply with the journaled one.
/// The outer error: the connection failed; the inner one: why the replay
/// does not match (for the client).
async fn replay_entries(
    conn: &mut BackendConn,
    entries: &[JournalEntry],
    session: u32,
    statements: &super::statements::Statements,
) -> Result<Result<(), String>, SessionError> {
    for (i, entry) in entries.iter().enumerate() {
        let n = i + 1;
        let fixes_id = entry.outcome.last_insert_id != 0;
        if fixes_id {
            // The same auto-increment id as the first time (what
            // statement-based binary logging does).
            let set = format!("SET insert_id = {}", entry.outcome.last_insert_id);
            if let QueryResult::Error(_) = backend::run_query(conn, &set).await? {
                return Ok(Err(format!(
                    "statement {n}'s auto-increment id could not be fixed"
                )));
            }
        }
        let (command, payload) = match &entry.command {
            JournalCommand::Query(sql) => {
                let mut payload = Vec::with_capacity(sql.len() + 1);
                payload.push(Command::Query as u8);
                payload.extend_from_slice(sql);
                (Command::Query, payload)
            }
            JournalCommand::Execute {
                statement,
                payload,
                types,
                ..
            } => {
                let Some(backend_id) = statement_on(conn, session, *statement, statements).await?
                else {
                    return Ok(Err(format!(
                        "statement {n}'s prepared statement cannot be prepared again"
                    )));
                };
                // Prepared anew: its first execute carries the types.
                let Some(mut payload) = execute_payload(payload, types.as_deref()) else {
                    return Ok(Err(format!(
                        "statement {n}'s parameter types cannot be added back"
                    )));
                };
                stmt::set_statement_id(&mut payload, backend_id);
                (Command::StmtExecute, payload)
            }
        };
        let outcome = run_digested(conn, command, &payload).await?;
        if fixes_id {
            // A statement that did not generate the id (an explicit id, an
            // update on a duplicate key also report one) leaves it pending
            // for the next insert — outside replication the server keeps
            // it until used. 0 takes it back.
            if let QueryResult::Error(_) = backend::run_query(conn, "SET insert_id = 0").await? {
                return Ok(Err(format!(
                    "statement {n}'s auto-increment id could not be cleared"
                )));
            }
        }
        if let Some(difference) = entry.outcome.difference(&outcome) {
            return Ok(Err(format!(
                "the result of statement {n} differs: {difference}"
            )));
        }
    }
    Ok(Ok(()))
}

/// The new connection's id of client statement `id`, prepared there now
/// if it is not yet; `None` when it cannot be.
async fn statement_on(
    conn: &mut BackendConn,
    session: u32,
    id: u32,
    statements: &super::statements::Statements,
) -> Result<Option<u32>, SessionError> {
    let key = BackendStatements::key(session, id);
    if let Some(backend_id) = conn.statements.lookup(key) {
        return Ok(Some(backend_id));
    }
    let Some(sql) = statements.get(id).map(|s| s.sql.clone()) else {
        return Ok(None);
    };
    match prepare_on(conn, &sql).await? {
        Ok(prepared) => {
            let evicted = conn.statements.insert(key, &sql, prepared.statement_id);
            conn.to_close.extend(evicted);
            Ok(Some(prepared.statement_id))
        }
        Err(_) => Ok(None),
    }
}

/// Sends one command and reads its whole reply, digested the way the
/// drain digests what it forwards (one wire packet at a time).
async fn run_digested(
    conn: &mut BackendConn,
    command: Command,
    payload: &[u8],
) -> Result<Outcome, SessionError> {
    let unexpected = |what| SessionError::BackendProtocol(ProtocolError::Unexpected { what });
    let mut wire = BytesMut::with_capacity(payload.len() + 4);
    write_payload(&mut wire, 0, payload);
    conn.conn
        .write_all(wire)
        .await
        .0
        .map_err(SessionError::BackendLost)?;
    let mut tracker = ReplyTracker::new(command.reply_kind(), conn.capabilities)
        .ok_or(unexpected("reply kind"))?
        .with_cursor_requested(torpor_protocol::stmt::requests_cursor(payload));
    let mut digest = ReplyDigest::new();
    loop {
        let (seq, packet) = read_packet(&mut conn.conn, usize::MAX)
            .await
            .map_err(SessionError::BackendLost)?;
        let header = PacketHeader {
            len: packet.len().min(MAX_PAYLOAD - 1),
            seq,
        };
        let step = tracker
            .on_packet(header, &packet)
            .map_err(SessionError::BackendProtocol)?;
        digest_payload(&mut digest, tracker.last_packet(), seq, &packet);
        match step {
            Step::More => {}
            Step::Done(_) => return Ok(digest.finish()),
            Step::LocalInfile => {
                return Err(unexpected("LOCAL INFILE during a transaction replay"))
            }
        }
    }
}

/// Digests a payload that came reassembled, whose class is `class` and
/// whose last packet's sequence id is `last_seq`, as the packets it came
/// in: the digest a drain's walk of them gives.
pub(super) fn digest_payload(
    digest: &mut ReplyDigest,
    class: PacketClass,
    last_seq: u8,
    payload: &[u8],
) {
    // A payload of n·MAX_PAYLOAD bytes or more came in n + 1 packets, the
    // last of them short (empty when it is an exact multiple).
    let packets = payload.len() / MAX_PAYLOAD + 1;
    let mut seq = last_seq.wrapping_sub((packets - 1) as u8);
    let mut class = class;
    let mut rest = payload;
    loop {
        let take = rest.len().min(MAX_PAYLOAD);
        let (chunk, after) = rest.split_at(take);
        if digest.packet(class, PacketHeader { len: take, seq }, chunk) {
            digest.body(chunk);
        }
        if take < MAX_PAYLOAD {
            break;
        }
        rest = after;
        seq = seq.wrapping_add(1);
        // What follows a full packet continues it.
        class = PacketClass::Other;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openers_are_recognized_cheaply() {
        for sql in [
            "BEGIN",
            "  start transaction read only",
            "XA START 'x'",
            "/* c */ BEGIN",
        ] {
            assert!(might_open_transaction(sql.as_bytes()), "{sql}");
        }
        for sql in ["SELECT 1", "INSERT INTO t VALUES (1)", "", "   "] {
            assert!(!might_open_transaction(sql.as_bytes()), "{sql}");
        }
    }
}
