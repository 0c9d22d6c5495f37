//! What `ROW_COUNT()` reads for a session, and whether its backend
//! connection still says so.
//!
//! MariaDB keeps `ROW_COUNT()` per connection: what the connection's last
//! command left. A session that moves to a connection where another
//! session ran a statement since (it gave its own back between two
//! autocommit statements, and the pool lent it out) would read the other
//! session's count there. So Torpor remembers what each reply leaves, and
//! a statement that asks for it on such a connection gets the remembered
//! value as a literal ([`super::rewrite::rewrite_row_count`]). On the
//! connection that ran the session's last command, untouched since, the
//! server's own answer stands and nothing is rewritten.
//!
//! What each command leaves, as MariaDB 10.11 does (read off the server,
//! command by command, against a direct connection):
//!
//! | command | `ROW_COUNT()` after it |
//! |---|---|
//! | a statement (COM_QUERY, COM_STMT_EXECUTE) | its OK's affected rows; -1 after a result set or an error |
//! | COM_PING, COM_INIT_DB, COM_STMT_RESET, COM_RESET_CONNECTION | 0 |
//! | COM_FIELD_LIST, COM_SET_OPTION | -1 |
//! | COM_STATISTICS, COM_STMT_PREPARE, COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA | unchanged |
//!
//! Anything else (a text of several statements or a `CALL`, whose count
//! is their last statement's; a fetch; a command that failed) leaves it
//! unknown, and an unknown count is never rewritten: the statement reads
//! whatever its connection says, as before.

use torpor_protocol::command::Command;
use torpor_protocol::reply::Ending;

/// A session's `ROW_COUNT()`: see the module's text.
#[derive(Debug, Clone, Copy)]
pub(super) struct RowCount {
    /// What the session's last command left, when Torpor knows it.
    value: Option<i64>,
    /// Whether the session's backend connection ran that command and
    /// nothing since, so that the server's own answer is the session's.
    here: bool,
}

impl Default for RowCount {
    /// A new session: a new MariaDB connection reads 0.
    fn default() -> RowCount {
        RowCount {
            value: Some(0),
            here: false,
        }
    }
}

impl RowCount {
    /// The session's backend connection is another one now, or ran
    /// statements of Torpor's own: it no longer holds the session's count.
    pub(super) fn left_connection(&mut self) {
        self.here = false;
    }

    /// The session got back the connection that ran its last command,
    /// untouched since.
    pub(super) fn back_on_own_connection(&mut self) {
        self.here = true;
    }

    /// A command of the client's goes to the session's backend
    /// connection: whatever it leaves there is the session's.
    pub(super) fn sent_here(&mut self) {
        self.here = true;
    }

    /// The reply to the client's `command` ended with `ending`;
    /// `statement_count` is what its tracker read
    /// ([`torpor_protocol::reply::ReplyTracker::row_count`]).
    pub(super) fn after_reply(
        &mut self,
        command: Command,
        ending: Ending,
        statement_count: Option<i64>,
    ) {
        self.value = match command {
            Command::Query | Command::StmtExecute => statement_count,
            _ if matches!(ending, Ending::Error) => None,
            Command::Ping | Command::InitDb | Command::StmtReset | Command::ResetConnection => {
                Some(0)
            }
            Command::FieldList | Command::SetOption => Some(-1),
            Command::Statistics
            | Command::StmtPrepare
            | Command::StmtClose
            | Command::StmtSendLongData => self.value,
            _ => None,
        };
    }

    /// Torpor answered a COM_PING itself (no backend connection): the
    /// server would have left 0.
    pub(super) fn pinged_locally(&mut self) {
        self.value = Some(0);
    }

    /// Torpor no longer knows the count (a reply cut short, a change of
    /// user).
    pub(super) fn forget(&mut self) {
        self.value = None;
    }

    /// The value a statement's `ROW_COUNT()` must be given as a literal:
    /// `Some` only when the connection does not hold the session's count
    /// and Torpor knows it.
    pub(super) fn value_to_restore(&self) -> Option<i64> {
        if self.here {
            None
        } else {
            self.value
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use torpor_protocol::packets::ServerStatus;

    const OK: Ending = Ending::Status(ServerStatus(2));

    #[test]
    fn a_count_is_restored_only_where_the_connection_lost_it() {
        let mut count = RowCount::default();
        assert_eq!(count.value_to_restore(), Some(0), "a new session reads 0");
        count.sent_here();
        count.after_reply(Command::Query, OK, Some(3));
        assert_eq!(count.value_to_restore(), None, "its own connection says 3");
        count.left_connection();
        assert_eq!(count.value_to_restore(), Some(3));
        count.back_on_own_connection();
        assert_eq!(count.value_to_restore(), None);
    }

    #[test]
    fn each_command_leaves_what_the_server_leaves() {
        let after = |command, ending, statement_count| {
            let mut count = RowCount::default();
            count.after_reply(Command::Query, OK, Some(7));
            count.after_reply(command, ending, statement_count);
            count.left_connection();
            count.value_to_restore()
        };
        assert_eq!(after(Command::Query, Ending::Error, Some(-1)), Some(-1));
        assert_eq!(after(Command::Query, OK, None), None, "several results");
        assert_eq!(after(Command::StmtExecute, OK, Some(-1)), Some(-1));
        assert_eq!(after(Command::Ping, OK, None), Some(0));
        assert_eq!(after(Command::InitDb, OK, None), Some(0));
        assert_eq!(after(Command::InitDb, Ending::Error, None), None);
        assert_eq!(after(Command::FieldList, OK, None), Some(-1));
        assert_eq!(after(Command::StmtPrepare, OK, None), Some(7));
        assert_eq!(after(Command::Statistics, Ending::Other, None), Some(7));
        assert_eq!(after(Command::StmtFetch, OK, None), None);
        assert_eq!(after(Command::ChangeUser, OK, None), None);
    }
}
