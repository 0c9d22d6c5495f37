//! What `ROW_COUNT()` and `FOUND_ROWS()` read for a session, and whether
//! its backend connection still says so.
//!
//! MariaDB keeps both per connection: what the connection's last commands
//! left. A session that moves to a connection where another session ran a
//! statement since (it gave its own back between two autocommit
//! statements, and the pool lent it out) would read the other session's
//! counts there. So Torpor remembers what each reply leaves, and a
//! statement that asks for them on such a connection gets the remembered
//! values as literals ([`super::rewrite::rewrite_row_count`],
//! [`super::rewrite::rewrite_found_rows`]). On the connection that ran the
//! session's last command, untouched since, the server's own answers
//! stand and nothing is rewritten.
//!
//! What each command leaves, as MariaDB 10.11 does (read off the server,
//! command by command, against a direct connection):
//!
//! | command | `ROW_COUNT()` after it | `FOUND_ROWS()` after it |
//! |---|---|---|
//! | a statement (COM_QUERY, COM_STMT_EXECUTE) that succeeded | its OK's affected rows; -1 after a result set | a `SELECT`'s rows; see below |
//! | a statement that failed | -1 | unchanged (Torpor: unknown) |
//! | COM_PING, COM_INIT_DB, COM_STMT_RESET | 0 | unchanged |
//! | COM_RESET_CONNECTION | 0 | unknown |
//! | COM_FIELD_LIST, COM_SET_OPTION | -1 | unchanged |
//! | COM_STATISTICS, COM_STMT_PREPARE, COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA | unchanged | unchanged |
//!
//! `FOUND_ROWS()` is set by some statements only: a `SELECT` sets it to
//! the rows it sent (`SQL_CALC_FOUND_ROWS` to the rows it would have sent
//! without `LIMIT`, which Torpor does not see: the session stays pinned
//! until the next statement instead), `SELECT … INTO` to the rows it
//! read, `SHOW TABLES` to its rows, `SHOW WARNINGS` not at all, a
//! single-table `UPDATE` not at all, one with a subquery or a join does.
//! Torpor takes only what it can tell apart from the text (text queries
//! and prepared statements alike, [`text`]): a `SELECT` answered with one
//! result set sets it to its rows, a statement whose text proves it
//! leaves the count (`INSERT … VALUES`, a single-table `UPDATE`, `SET`,
//! `COMMIT`, …) leaves Torpor's value too, also when it fails. After any
//! other statement the value is unknown.
//!
//! Anything else (a text of several statements or a `CALL`, whose counts
//! are their last statement's; a fetch; another command that failed)
//! leaves the counts unknown, and an unknown count is never rewritten:
//! the statement reads whatever its connection says, as before.

use torpor_protocol::command::Command;
use torpor_protocol::reply::{Ending, ReplyTracker};

/// A session's `ROW_COUNT()` and `FOUND_ROWS()`: see the module's text.
#[derive(Debug, Clone, Copy)]
pub(super) struct Counts {
    /// What `ROW_COUNT()` reads, when Torpor knows it.
    row_count: Option<i64>,
    /// What `FOUND_ROWS()` reads, when Torpor knows it.
    found_rows: Option<u64>,
    /// Whether the session's backend connection holds the session's
    /// `ROW_COUNT()`: it ran the session's last command that sets it (or
    /// one is on its way there), and nothing of anyone else's since.
    row_count_here: bool,
    /// [`Counts::row_count_here`] for `FOUND_ROWS()`.
    found_rows_here: bool,
    /// Which unknown counts (`ROW_COUNT()`, `FOUND_ROWS()`) the connection
    /// the session gave back last holds for it, to be read there.
    awaited: (bool, bool),
}

impl Default for Counts {
    /// A new session: a new MariaDB connection reads 0 for `ROW_COUNT()`.
    fn default() -> Counts {
        Counts {
            row_count: Some(0),
            found_rows: None,
            row_count_here: false,
            found_rows_here: false,
            awaited: (false, false),
        }
    }
}

mod text;

pub(super) use text::{found_rows, FoundRows};

/// What a reply showed of the counts it leaves.
#[derive(Debug, Clone, Copy)]
pub(super) struct ReplyCounts {
    /// [`ReplyTracker::row_count`].
    pub row_count: Option<i64>,
    /// What `FOUND_ROWS()` reads after it.
    pub found_rows: FoundRowsAfter,
}

/// What `FOUND_ROWS()` reads after a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FoundRowsAfter {
    /// Torpor cannot tell.
    Unknown,
    /// The rows of the reply's one result set.
    Rows(u64),
    /// What it read before the command.
    Kept,
}

impl ReplyCounts {
    /// What `tracker`, at the end of its reply, showed; `effect` what the
    /// command's text does to `FOUND_ROWS()` ([`found_rows`]).
    pub fn read(tracker: &ReplyTracker, effect: FoundRows) -> ReplyCounts {
        let row_count = tracker.row_count();
        let found_rows = match effect {
            FoundRows::Rows => tracker
                .result_rows()
                .map_or(FoundRowsAfter::Unknown, FoundRowsAfter::Rows),
            // One statement ran (`row_count` is `None` after several):
            // the text's own, which leaves the count also when it failed.
            FoundRows::Kept if row_count.is_some() => FoundRowsAfter::Kept,
            FoundRows::Kept | FoundRows::Unknown => FoundRowsAfter::Unknown,
        };
        ReplyCounts {
            row_count,
            found_rows,
        }
    }
}

impl Counts {
    /// The session's backend connection is another one now, or ran
    /// statements of Torpor's own: it no longer holds the session's counts.
    pub(super) fn left_connection(&mut self) {
        self.row_count_here = false;
        self.found_rows_here = false;
    }

    /// The session got back the connection that ran its last command,
    /// untouched since.
    pub(super) fn back_on_own_connection(&mut self) {
        self.row_count_here = true;
        self.found_rows_here = true;
    }

    /// The client's `command` goes to the session's backend connection:
    /// what it sets there is the session's (a statement sets both counts,
    /// or only `ROW_COUNT()` when `found_rows` says its text leaves the
    /// other; most other commands set only `ROW_COUNT()`, and a few
    /// neither).
    pub(super) fn sent_here(&mut self, command: Command, found_rows: FoundRows) {
        match command {
            Command::Query | Command::StmtExecute => {
                self.row_count_here = true;
                // A statement that leaves `FOUND_ROWS()` leaves the
                // connection's: another session's, if this one just moved
                // there.
                if found_rows != FoundRows::Kept {
                    self.found_rows_here = true;
                }
            }
            Command::Statistics
            | Command::StmtPrepare
            | Command::StmtClose
            | Command::StmtSendLongData => {}
            _ => self.row_count_here = true,
        }
    }

    /// The reply to the client's `command` ended with `ending`, showing
    /// `reply`.
    pub(super) fn after_reply(&mut self, command: Command, ending: Ending, reply: ReplyCounts) {
        let failed = matches!(ending, Ending::Error);
        match command {
            Command::Query | Command::StmtExecute => {
                self.row_count = reply.row_count;
                match reply.found_rows {
                    FoundRowsAfter::Rows(rows) => self.found_rows = Some(rows),
                    FoundRowsAfter::Kept => {}
                    // A SELECT that failed also leaves FOUND_ROWS() as it
                    // was on its connection (another session's, if the
                    // session had just moved there); as after a text that
                    // proves nothing, Torpor forgets it.
                    FoundRowsAfter::Unknown => self.found_rows = None,
                }
            }
            _ if failed => self.forget(),
            Command::Ping | Command::InitDb | Command::StmtReset => self.row_count = Some(0),
            Command::ResetConnection => {
                self.row_count = Some(0);
                self.found_rows = None;
            }
            Command::FieldList | Command::SetOption => self.row_count = Some(-1),
            Command::Statistics
            | Command::StmtPrepare
            | Command::StmtClose
            | Command::StmtSendLongData => {}
            _ => self.forget(),
        }
    }

    /// The session gives its backend connection back: whether that
    /// connection holds counts of the session's that Torpor does not know
    /// (after a `CALL`, a text of several statements, a `SHOW`, …), to be
    /// read there if another session takes it ([`super::left`]).
    pub(super) fn leaving_unknown(&mut self) -> bool {
        self.awaited = (
            self.row_count.is_none() && self.row_count_here,
            self.found_rows.is_none() && self.found_rows_here,
        );
        self.awaited != (false, false)
    }

    /// What the connection the session left read for its counts, once
    /// another session took it: fills those it held for the session and
    /// that are still unknown (a command since, such as a ping Torpor
    /// answered, set its own).
    pub(super) fn learned(&mut self, row_count: i64, found_rows: u64) {
        let (row_count_awaited, found_rows_awaited) = std::mem::take(&mut self.awaited);
        if row_count_awaited {
            self.row_count = self.row_count.or(Some(row_count));
        }
        if found_rows_awaited {
            self.found_rows = self.found_rows.or(Some(found_rows));
        }
    }

    /// Torpor answered a COM_PING itself (no backend connection): the
    /// server would have left `ROW_COUNT()` at 0.
    pub(super) fn pinged_locally(&mut self) {
        self.row_count = Some(0);
    }

    /// Torpor no longer knows the counts (a reply cut short, a change of
    /// user).
    pub(super) fn forget(&mut self) {
        self.row_count = None;
        self.found_rows = None;
    }

    /// The value a statement's `ROW_COUNT()` must be given as a literal:
    /// `Some` only when the connection does not hold the session's count
    /// and Torpor knows it.
    pub(super) fn row_count_to_restore(&self) -> Option<i64> {
        self.row_count.filter(|_| !self.row_count_here)
    }

    /// [`Counts::row_count_to_restore`] for `FOUND_ROWS()`.
    pub(super) fn found_rows_to_restore(&self) -> Option<u64> {
        self.found_rows.filter(|_| !self.found_rows_here)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use torpor_protocol::packets::ServerStatus;

    const OK: Ending = Ending::Status(ServerStatus(2));

    fn reply(row_count: Option<i64>, selected_rows: Option<u64>) -> ReplyCounts {
        ReplyCounts {
            row_count,
            found_rows: selected_rows.map_or(FoundRowsAfter::Unknown, FoundRowsAfter::Rows),
        }
    }

    #[test]
    fn counts_are_restored_only_where_the_connection_lost_them() {
        let mut counts = Counts::default();
        assert_eq!(
            counts.row_count_to_restore(),
            Some(0),
            "a new session reads 0"
        );
        assert_eq!(counts.found_rows_to_restore(), None);
        counts.sent_here(Command::Query, FoundRows::Rows);
        counts.after_reply(Command::Query, OK, reply(Some(-1), Some(4)));
        assert_eq!(
            counts.row_count_to_restore(),
            None,
            "its own connection says -1"
        );
        counts.left_connection();
        assert_eq!(counts.row_count_to_restore(), Some(-1));
        assert_eq!(counts.found_rows_to_restore(), Some(4));
        counts.back_on_own_connection();
        assert_eq!(counts.found_rows_to_restore(), None);
    }

    #[test]
    fn each_command_leaves_what_the_server_leaves() {
        let after = |command, ending, last: ReplyCounts| {
            let mut counts = Counts::default();
            counts.after_reply(Command::Query, OK, reply(Some(-1), Some(7)));
            counts.after_reply(command, ending, last);
            counts.left_connection();
            (
                counts.row_count_to_restore(),
                counts.found_rows_to_restore(),
            )
        };
        let none = reply(None, None);
        let error = Ending::Error;
        assert_eq!(
            after(Command::Query, OK, reply(Some(3), None)),
            (Some(3), None)
        );
        assert_eq!(
            after(Command::Query, error, reply(Some(-1), None)),
            (Some(-1), None)
        );
        assert_eq!(
            after(Command::Query, error, none),
            (None, None),
            "after a result"
        );
        assert_eq!(
            after(Command::Query, OK, none),
            (None, None),
            "several results"
        );
        assert_eq!(
            after(Command::StmtExecute, OK, reply(Some(-1), None)),
            (Some(-1), None)
        );
        assert_eq!(after(Command::Ping, OK, none), (Some(0), Some(7)));
        assert_eq!(after(Command::InitDb, OK, none), (Some(0), Some(7)));
        assert_eq!(after(Command::InitDb, error, none), (None, None));
        assert_eq!(after(Command::ResetConnection, OK, none), (Some(0), None));
        assert_eq!(after(Command::FieldList, OK, none), (Some(-1), Some(7)));
        assert_eq!(after(Command::StmtPrepare, OK, none), (Some(-1), Some(7)));
        assert_eq!(
            after(Command::Statistics, Ending::Other, none),
            (Some(-1), Some(7))
        );
        assert_eq!(after(Command::StmtFetch, OK, none), (None, None));
        assert_eq!(after(Command::ChangeUser, OK, none), (None, None));
    }

    #[test]
    fn a_command_that_leaves_a_count_keeps_the_connection_from_holding_it() {
        let mut counts = Counts::default();
        counts.after_reply(Command::Query, OK, reply(Some(-1), Some(4)));
        // Moved: a ping there sets ROW_COUNT() (0), not FOUND_ROWS().
        counts.left_connection();
        counts.sent_here(Command::Ping, FoundRows::Unknown);
        counts.after_reply(Command::Ping, OK, reply(None, None));
        assert_eq!(counts.row_count_to_restore(), None);
        assert_eq!(counts.found_rows_to_restore(), Some(4));
        // A prepare sets neither.
        counts.left_connection();
        counts.sent_here(Command::StmtPrepare, FoundRows::Unknown);
        assert_eq!(counts.row_count_to_restore(), Some(0));
        assert_eq!(counts.found_rows_to_restore(), Some(4));
    }

    #[test]
    fn a_statement_that_leaves_found_rows_leaves_the_connections() {
        let mut counts = Counts::default();
        counts.sent_here(Command::Query, FoundRows::Rows);
        counts.after_reply(Command::Query, OK, reply(Some(-1), Some(4)));
        // Moved: an UPDATE there sets ROW_COUNT(), and leaves FOUND_ROWS()
        // as the other session left it on that connection.
        counts.left_connection();
        counts.sent_here(Command::Query, FoundRows::Kept);
        let kept = ReplyCounts {
            row_count: Some(2),
            found_rows: FoundRowsAfter::Kept,
        };
        counts.after_reply(Command::Query, OK, kept);
        assert_eq!(counts.row_count_to_restore(), None);
        assert_eq!(counts.found_rows_to_restore(), Some(4));
        // It fails: the same.
        let failed = ReplyCounts {
            row_count: Some(-1),
            found_rows: FoundRowsAfter::Kept,
        };
        counts.sent_here(Command::Query, FoundRows::Kept);
        counts.after_reply(Command::Query, Ending::Error, failed);
        assert_eq!(counts.found_rows_to_restore(), Some(4));
        // A text that proves nothing: forgotten.
        counts.sent_here(Command::Query, FoundRows::Unknown);
        counts.after_reply(Command::Query, OK, reply(Some(1), None));
        assert_eq!(counts.found_rows_to_restore(), None);
    }

    #[test]
    fn unknown_counts_are_learned_from_the_connection_that_holds_them() {
        let mut counts = Counts::default();
        // A text of several statements on its own connection: both
        // unknown, and that connection holds them.
        counts.sent_here(Command::Query, FoundRows::Unknown);
        counts.after_reply(Command::Query, OK, reply(None, None));
        assert!(counts.leaving_unknown());
        counts.left_connection();
        // A ping Torpor answered while the session had no connection.
        counts.pinged_locally();
        counts.learned(5, 9);
        assert_eq!(
            counts.row_count_to_restore(),
            Some(0),
            "the ping's, not the read's"
        );
        assert_eq!(counts.found_rows_to_restore(), Some(9));
        // Only what that connection held for the session is taken.
        let mut fresh = Counts::default();
        assert!(!fresh.leaving_unknown(), "a new session left nothing there");
        fresh.learned(5, 9);
        assert_eq!(fresh.found_rows_to_restore(), None);
    }
}
