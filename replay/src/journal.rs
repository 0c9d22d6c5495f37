//! The journal of an open transaction: what its commands were and what
//! their replies said, so that the transaction can be run again on a new
//! backend connection when the one it ran on dies, and the new replies
//! compared with what the client was told.
//!
//! - [`ReplyDigest`] folds a reply into an [`Outcome`] as it streams by:
//!   result-set packets (column definitions, rows) are hashed byte for
//!   byte, uninterpreted; OK packets count by their affected rows and last
//!   insert id only — status flags, warnings, info text and session-state
//!   data legitimately differ on another connection; ERR packets by their
//!   code.
//! - [`TransactionJournal`] keeps the entries of the transaction open now,
//!   within a byte budget; over it, or after a command it cannot record,
//!   the transaction is marked not replayable ([`Refusal`]) and its
//!   entries are dropped. Whether a statement can be re-run faithfully
//!   ([`hazard`]) is asked only when a replay is wanted: it costs a
//!   tokenization per statement, and connections seldom die.
//! - [`interrupted`] decides what may be done with a command whose
//!   connection died after it was sent: a statement that can end the
//!   transaction (COMMIT above all) is never run again.
//!
//! Auto-increment ids are reproduced, not ignored: an entry whose reply
//! had a last insert id N ≠ 0 is replayed after `SET insert_id = N` (what
//! statement-based binary logging does), so the ids match and the OK
//! packets are compared whole.

use std::hash::Hasher;

use torpor_protocol::frame::PacketHeader;
use torpor_protocol::lenenc;
use torpor_protocol::reply::PacketClass;
use twox_hash::xxhash3_64::{RawHasher, SecretBuffer, DEFAULT_SECRET_LENGTH};
use twox_hash::XxHash3_64;

/// XXH3 over a static secret: streaming (the same digest however the
/// bytes arrive in reads), allocation-free, and several times faster than
/// XXH64 on row data, which every journaled reply passes through.
type Xxh3 = RawHasher<&'static [u8; DEFAULT_SECRET_LENGTH]>;

use crate::classify::{classify, CHANGES_BETWEEN_RUNS};
use crate::sql::{significant, Token, TokenKind};

/// The journal's default byte budget per transaction (1 MiB).
pub const DEFAULT_MAX_BYTES: usize = 1 << 20;

/// What an entry costs besides its command bytes (outcome, bookkeeping),
/// so that many tiny statements also reach the budget.
const ENTRY_OVERHEAD: usize = 64;

/// ER_LOCK_DEADLOCK: the server rolled the whole transaction back.
const DEADLOCK: u16 = 1213;

/// What a reply said, as far as a replay must reproduce it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Outcome {
    /// Hash of every result-set packet (length and bytes) and of each OK
    /// packet's affected rows and last insert id, in order.
    pub digest: u64,
    /// Affected rows of the last OK packet.
    pub affected_rows: u64,
    /// The first non-zero last insert id of the reply (0: none).
    pub last_insert_id: u64,
    /// The ERR packet's code, when the reply was an error.
    pub error: Option<u16>,
}

impl Outcome {
    /// How `replayed` differs from this one, in words for a log line or a
    /// client message; `None` when it does not.
    pub fn difference(&self, replayed: &Outcome) -> Option<String> {
        if self == replayed {
            return None;
        }
        Some(if self.error != replayed.error {
            let code = |e: Option<u16>| e.map_or_else(|| "success".to_string(), |c| c.to_string());
            format!(
                "it gave {} instead of {}",
                code(replayed.error),
                code(self.error)
            )
        } else if self.affected_rows != replayed.affected_rows {
            format!(
                "it affected {} rows instead of {}",
                replayed.affected_rows, self.affected_rows
            )
        } else if self.last_insert_id != replayed.last_insert_id {
            format!(
                "it generated id {} instead of {}",
                replayed.last_insert_id, self.last_insert_id
            )
        } else {
            "its result differs".to_string()
        })
    }
}

/// Folds a reply into an [`Outcome`] as its packets pass: call
/// [`ReplyDigest::packet`] for each packet (with its class and as much of
/// its payload as is at hand), then [`ReplyDigest::body`] with the payload
/// bytes of each packet it said to hash.
pub struct ReplyDigest {
    hasher: Xxh3,
    /// Whether `hasher` has been given any bytes. A reply that fits the
    /// stage (most: an OK, a row or a few) never reaches it, and is
    /// hashed at the end in one call of XXH3's one-shot form, which gives
    /// the same digest as the streaming one for the same bytes at a
    /// fraction of its cost: the streaming hasher's end (a copy of it,
    /// its buffered stripes, its long-input finalization) cost about 280
    /// instructions a reply in callgrind, a fifth of a journaled point
    /// select's digest.
    hashed: bool,
    /// Bytes not yet given to `hasher`: each call into the streaming
    /// hasher has a fixed cost (its feature dispatch and buffering) that a
    /// reply of many small rows, three writes a row, paid dozens of times
    /// a query. Collected here, they go in about one call per stage.
    stage: [u8; STAGE_BYTES],
    /// How many bytes of `stage` wait.
    staged: usize,
    outcome: Outcome,
}

/// The size of [`ReplyDigest`]'s stage: a few typical rows.
const STAGE_BYTES: usize = 512;

impl std::fmt::Debug for ReplyDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyDigest")
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}

impl Default for ReplyDigest {
    fn default() -> Self {
        ReplyDigest::new()
    }
}

impl ReplyDigest {
    /// A digest of nothing yet.
    pub fn new() -> ReplyDigest {
        ReplyDigest {
            hasher: RawHasher::new(SecretBuffer::default()),
            hashed: false,
            stage: [0; STAGE_BYTES],
            staged: 0,
            outcome: Outcome::default(),
        }
    }

    /// Makes this a digest of nothing yet, as [`ReplyDigest::new`] would,
    /// without writing the whole of it again: the stage's bytes are dead
    /// once `staged` is 0, and a hasher that was never given a byte is as
    /// new.
    pub fn reset(&mut self) {
        if self.hashed {
            self.hasher = RawHasher::new(SecretBuffer::default());
            self.hashed = false;
        }
        self.staged = 0;
        self.outcome = Outcome::default();
    }

    /// Takes one packet, whose header is `header` and whose class is
    /// `class`; `head` is its payload, whole for OK and ERR packets (they
    /// are small). Returns whether its payload bytes are to be hashed
    /// (fed through [`ReplyDigest::body`]).
    pub fn packet(&mut self, class: PacketClass, header: PacketHeader, head: &[u8]) -> bool {
        let len = header.len;
        match class {
            PacketClass::Ok(_) => {
                // header byte, affected rows, last insert id (lenenc each).
                let rest = head.get(1..).unwrap_or_default();
                let (affected, n) = lenenc::read_int(rest).unwrap_or((0, 0));
                let (insert_id, _) = rest.get(n..).and_then(lenenc::read_int).unwrap_or((0, 0));
                let mut fields = [0u8; 17];
                fields[1..9].copy_from_slice(&affected.to_le_bytes());
                fields[9..].copy_from_slice(&insert_id.to_le_bytes());
                self.feed_fixed(fields);
                self.outcome.affected_rows = affected;
                if self.outcome.last_insert_id == 0 {
                    self.outcome.last_insert_id = insert_id;
                }
                false
            }
            PacketClass::Err => {
                let code = match head.get(1..3) {
                    Some(&[lo, hi]) => u16::from_le_bytes([lo, hi]),
                    _ => 0,
                };
                self.outcome.error = Some(code);
                false
            }
            // Terminators carry only status flags and warnings.
            PacketClass::Eof(_) => false,
            // A row is hashed as it came, header and all, so that a run
            // of whole rows can be hashed in one piece
            // ([`ReplyDigest::rows`]). The header's length delimits it,
            // and its sequence id is the same whenever the same command
            // gets the same reply.
            PacketClass::Row => {
                self.feed_fixed(header.encode());
                true
            }
            PacketClass::PrepareOk | PacketClass::Other => {
                let mut tag_and_len = [1u8; 9];
                tag_and_len[1..].copy_from_slice(&(len as u64).to_le_bytes());
                self.feed_fixed(tag_and_len);
                true
            }
        }
    }

    /// Payload bytes of a packet [`ReplyDigest::packet`] said to hash.
    pub fn body(&mut self, bytes: &[u8]) {
        self.feed(bytes);
    }

    /// Whole rows as they came on the wire, headers and all: the same
    /// digest as each row through [`ReplyDigest::packet`] (as
    /// [`PacketClass::Row`]) and [`ReplyDigest::body`], in one piece
    /// instead of two calls and a copy onto the stage per row.
    pub fn rows(&mut self, wire: &[u8]) {
        self.feed(wire);
    }

    /// The outcome of the reply.
    pub fn finish(&self) -> Outcome {
        let digest = if !self.hashed {
            XxHash3_64::oneshot(self.staged_bytes())
        } else if self.staged == 0 {
            self.hasher.finish()
        } else {
            let mut hasher = self.hasher.clone();
            hasher.write(self.staged_bytes());
            hasher.finish()
        };
        Outcome {
            digest,
            ..self.outcome
        }
    }

    /// [`ReplyDigest::feed`] for a few bytes of a size known here: copied
    /// into the stage inline, not by a call to `memcpy`, when they fit.
    fn feed_fixed<const N: usize>(&mut self, bytes: [u8; N]) {
        match self.stage.get_mut(self.staged..self.staged + N) {
            Some(place) => {
                place.copy_from_slice(&bytes);
                self.staged += N;
            }
            None => self.feed(&bytes),
        }
    }

    /// Hashes `bytes` after those before them: staged, or straight
    /// through when they would not fit. The digest depends only on the
    /// bytes' order, never on how they were cut.
    fn feed(&mut self, bytes: &[u8]) {
        if self.staged + bytes.len() > STAGE_BYTES {
            self.flush();
            if bytes.len() > STAGE_BYTES / 2 {
                self.hasher.write(bytes);
                self.hashed = true;
                return;
            }
        }
        // Always there: the stage had room, or was just emptied for bytes
        // of at most half its size.
        if let Some(place) = self.stage.get_mut(self.staged..self.staged + bytes.len()) {
            place.copy_from_slice(bytes);
            self.staged += bytes.len();
        }
    }

    /// Hands what waits on the stage to the hasher.
    fn flush(&mut self) {
        if self.staged > 0 {
            let staged = self.staged;
            self.staged = 0;
            if let Some(bytes) = self.stage.get(..staged) {
                self.hasher.write(bytes);
                self.hashed = true;
            }
        }
    }

    /// The bytes that wait on the stage.
    fn staged_bytes(&self) -> &[u8] {
        self.stage.get(..self.staged).unwrap_or_default()
    }
}

/// A command of the transaction, as it is run again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalCommand {
    /// A COM_QUERY: its text.
    Query(Vec<u8>),
    /// A COM_STMT_EXECUTE of the client's statement `statement`: its
    /// payload as the client sent it, and the parameter types to add when
    /// it came without them (the new connection has never seen this
    /// statement's types); the statement id in it is replaced by the new
    /// connection's when it is run.
    Execute {
        /// Client statement id.
        statement: u32,
        /// The command payload (command byte first), as the client sent
        /// it.
        payload: Vec<u8>,
        /// The parameter types its client bound before, when the payload
        /// came without them (libmariadb and sysbench send them with a
        /// statement's first execute only): a statement prepared anew for
        /// a replay needs them, and they are added then. Shared with the
        /// session's prepared statement: a copy of the payload with them
        /// at every execute cost ~200 instructions of a read-only query.
        types: Option<std::rc::Rc<[u8]>>,
        /// The statement's SQL text, to classify it: shared with the
        /// session's prepared statement, since every execute in a
        /// transaction is journalled (a copy each cost a `malloc`, the
        /// copy and a `free`, ~200 instructions of a read-only query).
        sql: std::rc::Rc<[u8]>,
    },
}

impl JournalCommand {
    fn cost(&self) -> usize {
        ENTRY_OVERHEAD
            + match self {
                JournalCommand::Query(sql) => sql.len(),
                JournalCommand::Execute { payload, types, .. } => {
                    payload.len() + types.as_ref().map_or(0, |t| t.len())
                }
            }
    }

    /// The command's own bytes (a statement's text, an execute's
    /// payload), emptied, their room kept: a recycled buffer for the next
    /// command journalled.
    pub fn into_buffer(self) -> Vec<u8> {
        let mut buffer = match self {
            JournalCommand::Query(sql) => sql,
            JournalCommand::Execute { payload, .. } => payload,
        };
        buffer.clear();
        buffer
    }

    /// The statement text (an execute's prepared statement).
    pub fn sql(&self) -> &[u8] {
        match self {
            JournalCommand::Query(sql) => sql,
            JournalCommand::Execute { sql, .. } => sql,
        }
    }
}

/// One command of the transaction and what its reply said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// The command.
    pub command: JournalCommand,
    /// Its reply.
    pub outcome: Outcome,
}

/// Why an open transaction cannot be replayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Replay is off (`transaction_replay_max_bytes = 0`).
    #[error("transaction replay is off")]
    Off,
    /// The journal outgrew its budget.
    #[error("the transaction is larger than the replay journal's {budget} bytes")]
    OverBudget {
        /// The budget, bytes.
        budget: usize,
    },
    /// A statement would not give the same result again.
    #[error("statement {statement} of the transaction is not repeatable ({what})")]
    Hazard {
        /// 1-based position in the transaction.
        statement: usize,
        /// What makes it so.
        what: Hazard,
    },
    /// A command the journal cannot run again (streamed, long data, a
    /// cursor, a change of schema or user…).
    #[error("statement {statement} of the transaction cannot be replayed ({what})")]
    Unrecorded {
        /// 1-based position in the transaction.
        statement: usize,
        /// What it was.
        what: &'static str,
    },
    /// The server rolled the transaction back itself (deadlock).
    #[error("the server rolled the transaction back (error {code})")]
    RolledBack {
        /// The ERR code.
        code: u16,
    },
}

/// What makes a statement unfit for replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hazard {
    /// It calls a function whose value differs on every run (the name).
    Nondeterministic(&'static str),
    /// An UPDATE or DELETE with LIMIT and no ORDER BY: which rows it
    /// touches is up to the server.
    UnorderedLimit,
    /// It changes session state (variables, schema, temporary tables,
    /// locks, prepared statements), which the replay restores separately.
    ChangesSession,
    /// An XA statement, a procedure call or LOAD DATA: what it does is
    /// not visible in its text (or its data came from the client).
    Opaque,
}

impl std::fmt::Display for Hazard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hazard::Nondeterministic(name) => write!(f, "it calls {}()", name.to_uppercase()),
            Hazard::UnorderedLimit => f.write_str("LIMIT without ORDER BY"),
            Hazard::ChangesSession => f.write_str("it changes session state"),
            Hazard::Opaque => f.write_str("XA, CALL or LOAD DATA"),
        }
    }
}

/// The functions of [`CHANGES_BETWEEN_RUNS`] that have keyword forms,
/// without parentheses. `LAST_INSERT_ID()`, `ROW_COUNT()` and
/// `FOUND_ROWS()` are not hazards: a replay runs the statements before
/// them in the same order on one connection, with the same insert ids,
/// and their results are compared.
const NONDETERMINISTIC_KEYWORDS: &[&str] = &[
    "current_timestamp",
    "current_time",
    "current_date",
    "localtime",
    "localtimestamp",
];

/// Connection-bound system variables: their values differ on a new
/// connection.
const CONNECTION_VARIABLES: &[&str] = &[
    "@@pseudo_thread_id",
    "@@session.pseudo_thread_id",
    "@@timestamp",
    "@@session.timestamp",
    "@@rand_seed1",
    "@@rand_seed2",
];

/// Why a statement text is unfit for replay, if it is. Recognition is by
/// tokens ([`crate::sql`]), never inside strings or comments; it errs on
/// the side of refusing: a false alarm costs a retry the client would have
/// done anyway, a miss a silent divergence.
pub fn hazard(sql: &[u8]) -> Option<Hazard> {
    let tokens = significant(sql);
    let facts = classify(sql);
    if facts.writes_user_variables
        || !facts.prepares.is_empty()
        || !facts.deallocates.is_empty()
        || facts.creates_temporary_table
        || facts.drops_temporary_table
        || facts.locks_tables
        || facts.unlocks_tables
    {
        return Some(Hazard::ChangesSession);
    }
    for (i, token) in tokens.iter().enumerate() {
        let next = tokens.get(i + 1);
        let starts = i == 0 || tokens.get(i - 1).is_some_and(|t| t.is_punct(sql, b';'));
        match token.kind {
            TokenKind::Word => {
                let call = next.is_some_and(|n| n.is_punct(sql, b'('));
                if call {
                    if let Some(name) = CHANGES_BETWEEN_RUNS.iter().find(|n| token.is_word(sql, n))
                    {
                        return Some(Hazard::Nondeterministic(name));
                    }
                } else if let Some(name) = NONDETERMINISTIC_KEYWORDS
                    .iter()
                    .find(|n| token.is_word(sql, n))
                {
                    return Some(Hazard::Nondeterministic(name));
                }
                if starts {
                    if token.is_word(sql, "set") || token.is_word(sql, "use") {
                        return Some(Hazard::ChangesSession);
                    }
                    if token.is_word(sql, "xa")
                        || token.is_word(sql, "call")
                        || token.is_word(sql, "load")
                    {
                        return Some(Hazard::Opaque);
                    }
                    if (token.is_word(sql, "update") || token.is_word(sql, "delete"))
                        && unordered_limit(sql, tokens.get(i..).unwrap_or_default())
                    {
                        return Some(Hazard::UnorderedLimit);
                    }
                }
            }
            TokenKind::Variable => {
                let text = token.bytes(sql);
                if CONNECTION_VARIABLES
                    .iter()
                    .any(|v| text.eq_ignore_ascii_case(v.as_bytes()))
                {
                    return Some(Hazard::Nondeterministic("connection variable"));
                }
            }
            _ => {}
        }
    }
    None
}

/// Whether the statement at the start of `tokens` (up to a `;`) has a
/// LIMIT and no ORDER BY.
fn unordered_limit(sql: &[u8], tokens: &[Token]) -> bool {
    let statement = tokens
        .split(|t| t.is_punct(sql, b';'))
        .next()
        .unwrap_or_default();
    let limit = statement.iter().any(|t| t.is_word(sql, "limit"));
    let ordered = statement
        .windows(2)
        .any(|w| matches!(w, [order, by] if order.is_word(sql, "order") && by.is_word(sql, "by")));
    limit && !ordered
}

/// What may be done with a command whose backend connection died after it
/// was (perhaps) delivered, before its reply reached the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupted {
    /// It cannot have ended the transaction: the server rolled the
    /// transaction back with the connection, so replaying the journal and
    /// running the command again is what the client asked for.
    RunAgain,
    /// It may have committed (COMMIT, a statement with an implicit commit,
    /// XA, a procedure, several statements): its outcome is unknown and it
    /// is never run again.
    OutcomeUnknown,
    /// A plain `ROLLBACK`: whether it ran or not, the transaction is rolled
    /// back (the server rolls back what a dead connection leaves open), so
    /// it succeeded.
    RolledBack,
}

/// Statements that end a transaction, explicitly or by an implicit
/// commit, by their first word. `ROLLBACK` is among them: only its plain
/// form ([`is_plain_rollback`]) is known to have done what it asked.
const ENDS_TRANSACTION: &[&str] = &[
    "commit",
    "rollback",
    "begin",
    "start",
    "xa",
    "call",
    "create",
    "alter",
    "drop",
    "rename",
    "truncate",
    "grant",
    "revoke",
    "lock",
    "unlock",
    "flush",
    "analyze",
    "optimize",
    "repair",
    "install",
    "uninstall",
    "load",
    "set",
    "handler",
    "do",
    "cache",
    "reset",
    "purge",
    "change",
    "shutdown",
    "kill",
    "execute",
    "deallocate",
    "prepare",
];

/// Decides what may be done with statement text `sql` after its
/// connection died with it in flight. Only plain statements that cannot
/// end the transaction are run again; everything else — above all COMMIT
/// — has an unknown outcome.
pub fn interrupted(sql: &[u8]) -> Interrupted {
    if is_plain_rollback(sql) {
        return Interrupted::RolledBack;
    }
    let tokens = significant(sql);
    let Some(first) = tokens.first() else {
        return Interrupted::OutcomeUnknown;
    };
    // Several statements in one text: one of them may have committed.
    let last_semicolon = tokens.iter().rposition(|t| t.is_punct(sql, b';'));
    if last_semicolon.is_some_and(|p| p + 1 < tokens.len()) {
        return Interrupted::OutcomeUnknown;
    }
    if first.kind != TokenKind::Word && first.kind != TokenKind::Punct {
        return Interrupted::OutcomeUnknown;
    }
    // `ROLLBACK TO [SAVEPOINT] s` stays in the transaction.
    if first.is_word(sql, "rollback") && tokens.get(1).is_some_and(|t| t.is_word(sql, "to")) {
        return Interrupted::RunAgain;
    }
    if first.kind == TokenKind::Punct || ENDS_TRANSACTION.iter().any(|w| first.is_word(sql, w)) {
        return Interrupted::OutcomeUnknown;
    }
    Interrupted::RunAgain
}

/// Whether `sql` is `ROLLBACK [WORK]` alone (not `TO SAVEPOINT`, `AND
/// CHAIN` or `RELEASE`, which do more than end the transaction): when its
/// transaction is gone anyway, it has done what it asked.
pub fn is_plain_rollback(sql: &[u8]) -> bool {
    let tokens = significant(sql);
    let mut words = tokens.iter().filter(|t| !t.is_punct(sql, b';'));
    let semicolons_last = tokens
        .iter()
        .position(|t| t.is_punct(sql, b';'))
        .is_none_or(|p| {
            let rest = tokens.get(p..).unwrap_or_default();
            rest.iter().all(|t| t.is_punct(sql, b';'))
        });
    let first = words.next();
    let second = words.next();
    semicolons_last
        && first.is_some_and(|t| t.is_word(sql, "rollback"))
        && second.is_none_or(|t| t.is_word(sql, "work"))
        && words.next().is_none()
}

/// Whether `sql` only opens a transaction: `BEGIN [WORK]` or `START
/// TRANSACTION` with its characteristics (`READ ONLY`, `READ WRITE`,
/// `WITH CONSISTENT SNAPSHOT`), alone. Sent while no transaction is open,
/// it changes nothing another connection could see, so when its
/// connection dies with it in flight it may simply run again.
pub fn is_plain_begin(sql: &[u8]) -> bool {
    let tokens = significant(sql);
    let semicolons_last = tokens
        .iter()
        .position(|t| t.is_punct(sql, b';'))
        .is_none_or(|p| {
            tokens
                .get(p..)
                .is_some_and(|rest| rest.iter().all(|t| t.is_punct(sql, b';')))
        });
    let mut words = tokens.iter().filter(|t| !t.is_punct(sql, b';'));
    let Some(first) = words.next() else {
        return false;
    };
    if !semicolons_last {
        return false;
    }
    if first.is_word(sql, "begin") {
        let second = words.next();
        return second.is_none_or(|t| t.is_word(sql, "work")) && words.next().is_none();
    }
    if !first.is_word(sql, "start") || !words.next().is_some_and(|t| t.is_word(sql, "transaction"))
    {
        return false;
    }
    const CHARACTERISTICS: [&str; 6] = ["read", "only", "write", "with", "consistent", "snapshot"];
    words.all(|t| t.is_punct(sql, b',') || CHARACTERISTICS.iter().any(|w| t.is_word(sql, w)))
}

/// The journal of the transaction open on a session's backend connection.
///
/// Fed with every reply's end ([`TransactionJournal::reply_ended`]): the
/// entry opens with the reply that leaves a transaction open, grows while
/// one stays open, and empties when none is.
#[derive(Debug, Clone)]
pub struct TransactionJournal {
    budget: usize,
    bytes: usize,
    open: bool,
    entries: Vec<JournalEntry>,
    /// Statements seen in the transaction (entries are dropped once it is
    /// refused; positions in messages still count).
    seen: usize,
    refusal: Option<Refusal>,
    /// `SET TRANSACTION …` characteristics that were pending when the
    /// transaction's first statement ran (it consumed them).
    characteristics: Option<String>,
    /// The emptied buffers of the last transaction's entries, for the
    /// next commands' bytes ([`TransactionJournal::take_spare_buffer`]).
    spare_buffers: Vec<Vec<u8>>,
}

/// Journal entries whose room is kept between transactions.
const KEPT_ENTRIES: usize = 32;

/// Command buffers kept between transactions: at most this many…
const KEPT_BUFFERS: usize = 16;

/// …each of at most this many bytes (a large statement's room goes back
/// to the allocator).
const KEPT_BUFFER_BYTES: usize = 512;

impl TransactionJournal {
    /// An empty journal that keeps at most `budget` bytes per transaction
    /// (0: replay off).
    pub fn new(budget: usize) -> TransactionJournal {
        TransactionJournal {
            budget,
            bytes: 0,
            open: false,
            entries: Vec::new(),
            seen: 0,
            refusal: None,
            characteristics: None,
            spare_buffers: Vec::new(),
        }
    }

    /// An empty buffer with room, from the entries of a transaction that
    /// ended, for the bytes of a command to journal: every statement of a
    /// transaction is copied into the journal, and a new buffer each was
    /// a `malloc` and, at the transaction's end, a `free` (~100
    /// instructions of a read-only query each, callgrind).
    pub fn take_spare_buffer(&mut self) -> Option<Vec<u8>> {
        self.spare_buffers.pop()
    }

    /// Gives the room kept between transactions back (a session whose
    /// client went idle holds none).
    pub fn release_spares(&mut self) {
        self.spare_buffers = Vec::new();
    }

    /// Empties the entries, keeping some of their buffers for the next
    /// commands.
    fn recycle_entries(&mut self) {
        for entry in self.entries.drain(..) {
            if self.spare_buffers.len() == KEPT_BUFFERS {
                break;
            }
            let buffer = entry.command.into_buffer();
            if buffer.capacity() <= KEPT_BUFFER_BYTES {
                self.spare_buffers.push(buffer);
            }
        }
    }

    /// Whether commands are worth recording at all (replay is on).
    pub fn enabled(&self) -> bool {
        self.budget > 0
    }

    /// Whether a transaction is open (and journaled or refused).
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// The reply to a command ended. `command` is what was recorded of it
    /// (`None`: nothing, e.g. it was streamed), `in_transaction` whether a
    /// transaction is open after it, and `characteristics` the pending
    /// `SET TRANSACTION` text the command may have consumed (kept when it
    /// opens the transaction).
    pub fn reply_ended(
        &mut self,
        command: Option<JournalCommand>,
        outcome: Outcome,
        in_transaction: bool,
        characteristics: Option<&str>,
    ) {
        if !in_transaction {
            self.clear();
            return;
        }
        if !self.open {
            self.clear();
            self.open = true;
            self.characteristics = characteristics.map(str::to_string);
            if self.budget == 0 {
                self.refusal = Some(Refusal::Off);
            }
        }
        self.seen += 1;
        if self.refusal.is_some() {
            return;
        }
        let Some(command) = command else {
            self.refuse(Refusal::Unrecorded {
                statement: self.seen,
                what: "a command that is not a statement or an execute",
            });
            return;
        };
        if outcome.error == Some(DEADLOCK) {
            self.refuse(Refusal::RolledBack { code: DEADLOCK });
            return;
        }
        let bytes = self.bytes + command.cost();
        if bytes > self.budget {
            self.refuse(Refusal::OverBudget {
                budget: self.budget,
            });
            return;
        }
        self.bytes = bytes;
        self.entries.push(JournalEntry { command, outcome });
    }

    /// Marks the open transaction as not replayable (a command the session
    /// saw but the journal could not record, such as long data).
    pub fn refuse(&mut self, refusal: Refusal) {
        if self.open && self.refusal.is_none() {
            self.refusal = Some(refusal);
            self.recycle_entries();
            self.entries = Vec::new();
            self.bytes = 0;
        }
    }

    /// The entries to replay, in order, and the pending transaction
    /// characteristics to restore before them; or why there are none.
    pub fn replayable(&self) -> Result<(&[JournalEntry], Option<&str>), Refusal> {
        if let Some(refusal) = &self.refusal {
            return Err(refusal.clone());
        }
        // Without a refusal every statement seen was recorded: entry i is
        // statement i + 1.
        for (index, entry) in self.entries.iter().enumerate() {
            if let Some(what) = hazard(entry.command.sql()) {
                return Err(Refusal::Hazard {
                    statement: index + 1,
                    what,
                });
            }
        }
        Ok((&self.entries, self.characteristics.as_deref()))
    }

    /// Forgets the transaction (it ended, or it was given up).
    pub fn clear(&mut self) {
        self.open = false;
        self.recycle_entries();
        // Most transactions are a few statements: their room is kept for
        // the next one instead of being given back and grown again.
        if self.entries.capacity() > KEPT_ENTRIES {
            self.entries = Vec::new();
        }
        self.bytes = 0;
        self.seen = 0;
        self.refusal = None;
        self.characteristics = None;
    }
}

#[cfg(test)]
mod tests;
