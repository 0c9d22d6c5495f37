//! What Torpor knows of a session: its movable state (a
//! [`torpor_replay::state::SessionState`] compared against the backend's
//! [`Baseline`]), the reasons it cannot move right now (pins), and how each
//! reply changes both.
//!
//! Pin reasons, the one documented list:
//!
//! | reason | set by | cleared by |
//! |---|---|---|
//! | `transaction` | a status with SERVER_STATUS_IN_TRANS | a status without it |
//! | `next-transaction` | `SET TRANSACTION …` outside a transaction | the transaction starting |
//! | `temporary-table` | `CREATE TEMPORARY TABLE` | COM_RESET_CONNECTION, COM_CHANGE_USER |
//! | `named-lock` | `GET_LOCK()` | `RELEASE_ALL_LOCKS()`, reset, change user |
//! | `table-lock` | `LOCK TABLES` | `UNLOCK TABLES`, reset, change user |
//! | `cursor` | an execute that opened a cursor | its last row fetched, statement reset or closed |
//! | `found-rows` | a statement with `SQL_CALC_FOUND_ROWS` | the end of the session's next statement (which may ask `FOUND_ROWS()`) |
//! | `long-data` | COM_STMT_SEND_LONG_DATA | the statement's execute, reset or close |
//! | `unknown-state` | a state change Torpor cannot name or reproduce: `SET @@name` without a scope (MariaDB does not track it), `CALL`, `EXECUTE IMMEDIATE` of text not in the statement, untracked changes no statement explains | reset, change user |
//!
//! Statements are recognized in every form they arrive in: text,
//! prepared (COM_STMT_EXECUTE of the prepared text), `EXECUTE IMMEDIATE
//! '…'` and `EXECUTE` of an SQL prepared statement. A session that ends
//! pinned leaves its connection reset (COM_RESET_CONNECTION) before the
//! pool lends it again.
//!
//! A pinned session keeps its backend connection; if that connection dies
//! the client gets an error instead of a silent move — unless the open
//! transaction is its only pin and its journal replays on a new
//! connection with the same results (`super::transaction`).

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::BytesMut;
use torpor_protocol::packets::ServerStatus;
use torpor_protocol::session_track::{encode_changes, OkPacket, SessionChange};
use torpor_protocol::Capabilities;
use torpor_replay::classify::StatementFacts;
use torpor_replay::state::{Baseline, SessionState};
use torpor_replay::tracking::ClientTracking;

/// Why a session cannot leave its backend connection now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PinReason {
    /// A transaction is open.
    Transaction,
    /// `SET TRANSACTION` waits for the next transaction.
    NextTransaction,
    /// A temporary table exists.
    TemporaryTable,
    /// A named lock (`GET_LOCK`) may be held.
    NamedLock,
    /// `LOCK TABLES` is in force.
    TableLock,
    /// A cursor is open.
    Cursor,
    /// Long data was sent for a statement not executed yet.
    LongData,
    /// `SQL_CALC_FOUND_ROWS` ran: `FOUND_ROWS()` answers only on this
    /// connection, until the next statement.
    FoundRows,
    /// State changed in a way Torpor cannot reproduce.
    UnknownState,
}

impl PinReason {
    /// Every reason, in the fixed order [`SessionModel::pins`] lists them.
    pub const ALL: [PinReason; 9] = [
        PinReason::Transaction,
        PinReason::NextTransaction,
        PinReason::TemporaryTable,
        PinReason::NamedLock,
        PinReason::TableLock,
        PinReason::Cursor,
        PinReason::LongData,
        PinReason::FoundRows,
        PinReason::UnknownState,
    ];

    /// The reason's bit in [`SessionModel::pin_mask`].
    pub fn bit(self) -> u16 {
        1 << (self as u16)
    }

    /// The reason's name in logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            PinReason::Transaction => "transaction",
            PinReason::NextTransaction => "next-transaction",
            PinReason::TemporaryTable => "temporary-table",
            PinReason::NamedLock => "named-lock",
            PinReason::TableLock => "table-lock",
            PinReason::Cursor => "cursor",
            PinReason::LongData => "long-data",
            PinReason::FoundRows => "found-rows",
            PinReason::UnknownState => "unknown-state",
        }
    }
}

/// A session's state as Torpor follows it.
#[derive(Debug, Clone)]
pub struct SessionModel {
    /// The movable state.
    pub state: SessionState,
    /// What a fresh connection to the backend has.
    pub baseline: Arc<Baseline>,
    in_transaction: bool,
    temporary_tables: bool,
    named_locks: bool,
    table_locks: bool,
    unknown_state: bool,
    /// Statements (client ids) with an open cursor.
    cursors: BTreeSet<u32>,
    /// Statements (client ids) with long data sent and not executed.
    long_data: BTreeSet<u32>,
    /// User variables may have changed: read them back before the session
    /// next moves or the connection next serves a command.
    pub user_variables_dirty: bool,
    /// `LAST_INSERT_ID(expr)` ran in a statement whose reply does not
    /// carry the value (a result set): read it back like user variables.
    pub last_insert_id_dirty: bool,
    found_rows_pending: bool,
    /// The server said untracked state changed and nothing Torpor parsed
    /// explains it (a procedure that set a user variable or made a
    /// temporary table): user variables are read back, and if they did not
    /// change, the session is pinned as `unknown-state`.
    pub unexplained_change: bool,
    /// The baseline's values of the variables read around every command,
    /// parsed once (a lookup in the baseline's few hundred variables and a
    /// parse, per command, cost more than the rest of the bookkeeping).
    baseline_numbers: BaselineNumbers,
    /// The session tracking the client asked for (what it is told).
    pub tracking: ClientTracking,
    /// The client changed a `session_track_*` setting, which changed the
    /// backend connection's too: Torpor's own must be put back.
    pub tracking_dirty: bool,
}

impl SessionModel {
    /// A session that starts in `schema` on a fresh connection.
    pub fn new(baseline: Arc<Baseline>, schema: Option<String>) -> SessionModel {
        let baseline_tracking = baseline.tracking.clone();
        let baseline_numbers = BaselineNumbers::remembered(&baseline);
        SessionModel {
            state: SessionState {
                schema,
                ..SessionState::default()
            },
            baseline,
            in_transaction: false,
            temporary_tables: false,
            named_locks: false,
            table_locks: false,
            unknown_state: false,
            cursors: BTreeSet::new(),
            long_data: BTreeSet::new(),
            user_variables_dirty: false,
            last_insert_id_dirty: false,
            found_rows_pending: false,
            unexplained_change: false,
            baseline_numbers,
            tracking: baseline_tracking,
            tracking_dirty: false,
        }
    }

    /// A numeric session variable that is read around every command
    /// (`wait_timeout`, `interactive_timeout`, `max_allowed_packet`): the
    /// session's own value when it set one, else the baseline's, parsed
    /// once. `None` when unknown or not a number.
    pub fn number(&self, name: NumericVariable) -> Option<u64> {
        // Most sessions set no variable: then nothing is looked up.
        if !self.state.variables.is_empty() {
            if let Some(value) = self.state.variables.get(name.name()) {
                return value.trim().parse().ok();
            }
        }
        self.baseline_numbers.get(name)
    }

    /// Whether the session set `name` itself.
    pub fn sets(&self, name: NumericVariable) -> bool {
        self.state.variables.contains_key(name.name())
    }

    /// Every reason the session is pinned now, one bit each
    /// ([`PinReason::bit`]): what the per-statement checks look at, with
    /// no allocation.
    pub fn pin_mask(&self) -> u16 {
        [
            (self.in_transaction, PinReason::Transaction),
            (
                self.state.next_transaction.is_some() && !self.in_transaction,
                PinReason::NextTransaction,
            ),
            (self.temporary_tables, PinReason::TemporaryTable),
            (self.named_locks, PinReason::NamedLock),
            (self.table_locks, PinReason::TableLock),
            (!self.cursors.is_empty(), PinReason::Cursor),
            (!self.long_data.is_empty(), PinReason::LongData),
            (self.found_rows_pending, PinReason::FoundRows),
            (self.unknown_state, PinReason::UnknownState),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .fold(0, |mask, (_, reason)| mask | reason.bit())
    }

    /// Every reason the session is pinned now, in a fixed order.
    pub fn pins(&self) -> Vec<PinReason> {
        let mask = self.pin_mask();
        PinReason::ALL
            .into_iter()
            .filter(|reason| mask & reason.bit() != 0)
            .collect()
    }

    /// Whether a transaction is open.
    pub fn in_transaction(&self) -> bool {
        self.in_transaction
    }

    /// Whether autocommit is on (a statement outside a transaction
    /// commits by itself).
    pub fn autocommit(&self) -> bool {
        self.state
            .variables
            .get("autocommit")
            .is_none_or(|v| v.eq_ignore_ascii_case("on") || v == "1")
    }

    /// The open transaction died with its backend connection (the server
    /// rolled it back): no transaction is open, and the characteristics
    /// it consumed are gone with it.
    pub fn transaction_lost(&mut self) {
        self.in_transaction = false;
        self.state.next_transaction = None;
    }

    /// Whether anything pins the session.
    pub fn is_pinned(&self) -> bool {
        self.pin_mask() != 0
    }

    /// What a statement does, with the texts it runs looked at too: the
    /// session's SQL-level prepared statements that it `EXECUTE`s.
    pub fn resolve(&self, facts: &StatementFacts) -> StatementFacts {
        let mut resolved = facts.clone();
        for name in &facts.executes {
            match self.state.sql_statements.get(name) {
                Some(text) => {
                    let mut inner = torpor_replay::classify::classify(text.as_bytes());
                    // One level: a prepared EXECUTE of another prepared
                    // statement is not followed further.
                    inner.runs_unseen_sql |= !inner.executes.is_empty();
                    inner.executes.clear();
                    resolved.merge(inner);
                }
                // Not one Torpor knows (it failed to prepare, or came from
                // a text it could not see): the server refuses it, or it
                // does what cannot be known.
                None => resolved.runs_unseen_sql = true,
            }
        }
        resolved.executes.clear();
        resolved
    }

    /// Takes what a statement text said it does (before its reply).
    /// User variables set to constants are known from the text; others
    /// must be read back when the session leaves its connection
    /// ([`super::left`]).
    pub fn before_statement(&mut self, facts: &StatementFacts, sql: &[u8]) {
        if facts.writes_user_variables && self.constant_assignments(sql).is_none() {
            self.user_variables_dirty = true;
        }
    }

    /// What `SET @a = <constant>, …` leaves in each variable, as the
    /// expression a read-back would give (`None`: NULL, which reads as
    /// unset); `None` when the text is not such a statement, or a string's
    /// character set depends on a conversion Torpor does not redo.
    fn constant_assignments(&self, sql: &[u8]) -> Option<Vec<(String, Option<String>)>> {
        use torpor_replay::classify::{constant_user_assignments, Literal};
        let variable = |name: &str| {
            self.state
                .variables
                .get(name)
                .or_else(|| self.baseline.variables.get(name).map(|(value, _)| value))
                .map(|value| value.to_ascii_lowercase())
        };
        let mut values = Vec::new();
        for (name, literal) in constant_user_assignments(sql)? {
            let expression = match literal {
                Literal::Null => None,
                Literal::Int(text) | Literal::Decimal(text) => Some(text),
                Literal::Str { bytes, introducer } => {
                    let charset = match introducer {
                        Some(charset) => charset,
                        // A plain literal is in the connection's character
                        // set, converted from the client's when they differ.
                        None => {
                            let connection = variable("character_set_connection")?;
                            if variable("character_set_client")? != connection {
                                return None;
                            }
                            connection
                        }
                    };
                    let hex: String = bytes.iter().map(|b| format!("{b:02X}")).collect();
                    let expression = crate::backend::user_variable_expression(
                        Some(hex.as_bytes()),
                        "STRING",
                        &charset,
                    );
                    Some(expression)
                }
            };
            values.push((name, expression));
        }
        Some(values)
    }

    /// A client's statement ended (before [`SessionModel::after_statement`]
    /// takes what it did, when its text says anything): the one after a
    /// `SQL_CALC_FOUND_ROWS` query was the last that could ask
    /// `FOUND_ROWS()` for it, whatever its text.
    pub fn statement_ended(&mut self) {
        self.found_rows_pending = false;
    }

    /// Takes a statement's outcome: `ok` when it succeeded.
    pub fn after_statement(&mut self, facts: &StatementFacts, sql: &[u8], ok: bool) {
        let explains = facts.writes_user_variables
            || facts.creates_temporary_table
            || facts.drops_temporary_table
            || !facts.prepares.is_empty()
            || !facts.deallocates.is_empty();
        if explains {
            self.unexplained_change = false;
        }
        // The statement after a SQL_CALC_FOUND_ROWS one is the last that
        // may ask FOUND_ROWS() for it.
        self.found_rows_pending = ok && facts.calculates_found_rows;
        if !ok {
            return;
        }
        if facts.sets_last_insert_id {
            self.last_insert_id_dirty = true;
        }
        if facts.writes_user_variables {
            for (name, value) in self.constant_assignments(sql).unwrap_or_default() {
                match value {
                    Some(value) => self.state.user_variables.insert(name, value),
                    None => self.state.user_variables.remove(&name),
                };
            }
        }
        if facts.creates_temporary_table {
            self.temporary_tables = true;
        }
        if facts.takes_named_lock {
            self.named_locks = true;
        }
        if facts.releases_all_named_locks {
            self.named_locks = false;
        }
        if facts.locks_tables {
            self.table_locks = true;
        }
        if facts.unlocks_tables {
            self.table_locks = false;
        }
        // A change the server does not report and Torpor cannot name: the
        // session stays on this connection (and the connection is closed
        // or reset when the session ends), so no one else sees it.
        if facts.sets_untracked_variable || facts.runs_unseen_sql {
            self.unknown_state = true;
        }
        for name in &facts.deallocates {
            self.state.sql_statements.remove(name);
        }
        if let [name] = facts.prepares.as_slice() {
            match prepared_text(sql) {
                Some(text) => {
                    self.state.sql_statements.insert(name.clone(), text);
                }
                // `PREPARE s FROM @var`: the text is not in the statement.
                None => self.unknown_state = true,
            }
        } else if facts.prepares.len() > 1 {
            self.unknown_state = true;
        }
    }

    /// Takes the status flags of an OK or EOF packet.
    pub fn observe_status(&mut self, status: ServerStatus) {
        self.in_transaction = status.has(ServerStatus::IN_TRANS);
    }

    /// Takes an OK packet's session-state changes (decoded from the
    /// backend's OK, which always carries them).
    pub fn observe_ok(&mut self, ok: &OkPacket<'_>) {
        self.observe_status(ok.status);
        // An INSERT that generated ids (or LAST_INSERT_ID(expr)) reports
        // what LAST_INSERT_ID() returns from now on; 0 leaves it as it was.
        if ok.last_insert_id != 0 {
            self.state.last_insert_id = ok.last_insert_id;
        }
        if !ok.status.has(ServerStatus::SESSION_STATE_CHANGED) {
            return;
        }
        match ok.changes() {
            Ok(changes) => {
                for change in &changes {
                    if let SessionChange::SystemVariable { name, value } = change {
                        let name = String::from_utf8_lossy(name);
                        if self.tracking.set(&name, &String::from_utf8_lossy(value)) {
                            self.tracking_dirty = true;
                        }
                    }
                }
                let observed = self.state.apply_changes(&changes, &self.baseline);
                if observed.unknown_change {
                    self.unknown_state = true;
                }
                let only_untracked = changes
                    .iter()
                    .all(|c| matches!(c, SessionChange::StateChanged));
                if observed.untracked_change && only_untracked {
                    self.unexplained_change = true;
                }
            }
            Err(_) => self.unknown_state = true,
        }
    }

    /// User variables were read back after an unexplained change; if they
    /// did not change, something else did that Torpor cannot reproduce.
    pub fn user_variables_read(&mut self, variables: std::collections::BTreeMap<String, String>) {
        if self.unexplained_change && variables == self.state.user_variables {
            self.unknown_state = true;
        }
        self.state.user_variables = variables;
        self.user_variables_dirty = false;
        self.unexplained_change = false;
    }

    /// Pins the session for good: something happened that Torpor cannot
    /// reproduce on another connection.
    pub fn pin_unknown(&mut self) {
        self.unknown_state = true;
    }

    /// A cursor was opened (or not) by executing client statement `id`.
    pub fn cursor_opened(&mut self, id: u32, open: bool) {
        if open {
            self.cursors.insert(id);
        } else {
            self.cursors.remove(&id);
        }
    }

    /// Long data was sent for client statement `id`.
    pub fn long_data_sent(&mut self, id: u32) {
        self.long_data.insert(id);
    }

    /// Whether long data waits for client statement `id`'s execute.
    pub fn has_long_data(&self, id: u32) -> bool {
        self.long_data.contains(&id)
    }

    /// Client statement `id` was executed, reset or closed.
    pub fn statement_settled(&mut self, id: u32, closed: bool) {
        self.long_data.remove(&id);
        if closed {
            self.cursors.remove(&id);
        }
    }

    /// COM_RESET_CONNECTION or COM_CHANGE_USER succeeded: MariaDB resets
    /// variables, user variables, temporary tables, locks, prepared
    /// statements and the transaction; the schema is kept by a reset and
    /// set by a change of user.
    pub fn reset(&mut self, schema: Option<Option<String>>) {
        let kept_schema = match schema {
            Some(schema) => schema,
            None => self.state.schema.clone(),
        };
        *self = SessionModel::new(Arc::clone(&self.baseline), kept_schema);
        // The backend connection's tracking was reset with the rest.
        self.tracking_dirty = true;
    }

    /// The session-state block a client gets for `changes`: only what its
    /// own tracking settings report.
    pub fn client_block(&self, changes: &[SessionChange<'_>]) -> BytesMut {
        let kept: Vec<SessionChange<'_>> = changes
            .iter()
            .filter(|c| self.tracking.keeps(c))
            .cloned()
            .collect();
        let mut block = BytesMut::new();
        encode_changes(&kept, &mut block);
        block
    }
}

/// The statement text of `PREPARE name FROM 'text'`.
fn prepared_text(sql: &[u8]) -> Option<String> {
    use torpor_replay::sql::{significant, TokenKind};
    let tokens = significant(sql);
    let from = tokens.iter().position(|t| t.is_word(sql, "from"))?;
    let literal = tokens.get(from + 1)?;
    if literal.kind != TokenKind::String {
        return None;
    }
    String::from_utf8(torpor_replay::sql::unquote(literal.bytes(sql))?).ok()
}

/// What executing a prepared statement with text `sql` does to the
/// session, when it does anything Torpor follows (`None` for the usual
/// query, found without lexing).
pub fn execute_facts(sql: &[u8]) -> Option<Box<StatementFacts>> {
    if !torpor_replay::classify::may_change_state(sql) {
        return None;
    }
    let facts = torpor_replay::classify::classify(sql);
    (facts != StatementFacts::default()).then(|| Box::new(facts))
}

/// The capabilities a backend connection needs so that its replies can be
/// forwarded to a client with `client` capabilities.
pub fn backend_shape(client: Capabilities) -> Capabilities {
    client | Capabilities::CLIENT_SESSION_TRACK
}

#[cfg(test)]
mod tests {
    use super::*;
    use torpor_replay::classify::classify;

    #[test]
    fn each_baseline_gives_its_own_numbers_however_logins_alternate() {
        let with_wait = |seconds: &str| {
            let mut baseline = Baseline::default();
            baseline.variables.insert(
                "wait_timeout".into(),
                (seconds.into(), torpor_replay::state::VarKind::Number),
            );
            Arc::new(baseline)
        };
        let wait = |baseline: &Arc<Baseline>| {
            SessionModel::new(Arc::clone(baseline), None).number(NumericVariable::WaitTimeout)
        };
        let (short, long) = (with_wait("5"), with_wait("600"));
        assert_eq!(wait(&short), Some(5));
        assert_eq!(wait(&long), Some(600));
        assert_eq!(wait(&short), Some(5), "back to the first");
        assert_eq!(wait(&short), Some(5), "remembered");
        // A baseline made after another was dropped, perhaps where it was.
        drop(short);
        let other = with_wait("7");
        assert_eq!(wait(&other), Some(7));
        assert_eq!(wait(&long), Some(600));
    }

    #[test]
    fn pins_follow_statements() {
        let mut model = SessionModel::new(Arc::new(Baseline::default()), None);
        assert!(!model.is_pinned());
        let sql = b"CREATE TEMPORARY TABLE t (a int)";
        model.after_statement(&classify(sql), sql, true);
        assert_eq!(model.pins(), vec![PinReason::TemporaryTable]);
        let sql = b"LOCK TABLES t READ";
        model.after_statement(&classify(sql), sql, false);
        assert_eq!(
            model.pins(),
            vec![PinReason::TemporaryTable],
            "a failed statement pins nothing"
        );
        model.observe_status(ServerStatus(ServerStatus::IN_TRANS));
        assert_eq!(model.pins()[0], PinReason::Transaction);
        model.reset(None);
        assert!(!model.is_pinned());
    }

    #[test]
    fn every_pin_has_its_own_bit_and_lists_in_order() {
        let mut model = SessionModel::new(Arc::new(Baseline::default()), None);
        assert_eq!(model.pin_mask(), 0);
        model.in_transaction = true;
        model.temporary_tables = true;
        model.named_locks = true;
        model.table_locks = true;
        model.cursors.insert(1);
        model.long_data.insert(2);
        model.found_rows_pending = true;
        model.unknown_state = true;
        let mut want = PinReason::ALL.to_vec();
        // SET TRANSACTION waiting for the next transaction pins only
        // outside one.
        want.retain(|r| *r != PinReason::NextTransaction);
        assert_eq!(model.pins(), want);
        let bits: u16 = PinReason::ALL.iter().map(|r| r.bit()).sum();
        assert_eq!(bits.count_ones(), 9, "distinct bits");
        assert_eq!(model.pin_mask(), bits & !PinReason::NextTransaction.bit());
        model.reset(None);
        assert!(!model.is_pinned());
    }

    #[test]
    fn prepare_texts_are_kept() {
        let mut model = SessionModel::new(Arc::new(Baseline::default()), None);
        let sql = b"PREPARE s FROM 'SELECT ''a'', ?'";
        model.after_statement(&classify(sql), sql, true);
        assert_eq!(
            model.state.sql_statements.get("s").map(String::as_str),
            Some("SELECT 'a', ?")
        );
        let sql = b"PREPARE t FROM @q";
        model.after_statement(&classify(sql), sql, true);
        assert_eq!(model.pins(), vec![PinReason::UnknownState]);
        let sql = b"DEALLOCATE PREPARE s";
        model.after_statement(&classify(sql), sql, true);
        assert!(model.state.sql_statements.is_empty());
    }
}

/// The numeric session variables Torpor reads around every command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumericVariable {
    /// `wait_timeout`.
    WaitTimeout,
    /// `interactive_timeout`.
    InteractiveTimeout,
    /// `max_allowed_packet`.
    MaxAllowedPacket,
}

impl NumericVariable {
    const ALL: [NumericVariable; 3] = [
        NumericVariable::WaitTimeout,
        NumericVariable::InteractiveTimeout,
        NumericVariable::MaxAllowedPacket,
    ];

    /// The variable's name, as the state and the baseline key it.
    pub fn name(self) -> &'static str {
        match self {
            NumericVariable::WaitTimeout => "wait_timeout",
            NumericVariable::InteractiveTimeout => "interactive_timeout",
            NumericVariable::MaxAllowedPacket => "max_allowed_packet",
        }
    }
}

/// The baseline's [`NumericVariable`]s, parsed.
#[derive(Debug, Clone, Copy, Default)]
struct BaselineNumbers([Option<u64>; 3]);

thread_local! {
    /// The last baseline this worker parsed the numbers of, and them: a
    /// service's sessions share one baseline, so a login finds its numbers
    /// here instead of looking up three names among the ~600 variables
    /// (~2 400 instructions a login). Held weakly: the allocation cannot be
    /// reused by another baseline while the entry points at it.
    static LAST_NUMBERS: std::cell::RefCell<(std::sync::Weak<Baseline>, BaselineNumbers)> =
        std::cell::RefCell::new((std::sync::Weak::new(), BaselineNumbers::default()));
}

impl BaselineNumbers {
    /// The numbers of `baseline`, remembered from the last call with it.
    fn remembered(baseline: &Arc<Baseline>) -> BaselineNumbers {
        LAST_NUMBERS.with(|last| {
            let mut last = last.borrow_mut();
            if !std::ptr::eq(last.0.as_ptr(), Arc::as_ptr(baseline)) {
                *last = (Arc::downgrade(baseline), BaselineNumbers::of(baseline));
            }
            last.1
        })
    }

    fn of(baseline: &Baseline) -> BaselineNumbers {
        BaselineNumbers(NumericVariable::ALL.map(|name| {
            baseline
                .variables
                .get(name.name())
                .and_then(|(value, _)| value.trim().parse().ok())
        }))
    }

    fn get(&self, name: NumericVariable) -> Option<u64> {
        self.0[name as usize]
    }
}
