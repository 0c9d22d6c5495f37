//! Commands cut in flight: the backend connection died (a restart, a
//! crash, a KILL) after commands were sent and before their replies came,
//! and transaction replay ([`super::transaction`]) could not take them
//! (several in flight, a reply half forwarded, no transaction to replay).
//!
//! Each command cut gets an error of its own, in order, and the session
//! goes on — its state is replayed on the next backend connection as on
//! any move — when nothing but an open transaction ties it to the dead
//! connection. What each is told depends on what may have happened:
//!
//! - in a transaction (or with autocommit off), when no command cut can
//!   have ended it: 1213 "transaction rolled back" (the server rolled it
//!   back with the connection) — a plain ROLLBACK last gets OK;
//! - otherwise (autocommit, or a COMMIT among them): 1317, whether it ran
//!   is unknown. It is never run again.
//!
//! A session with more state on the dead connection (a temporary table,
//! a lock, user variables not read yet) ends as it would with MariaDB.

use torpor_protocol::reply::Ending;
use torpor_replay::journal::{interrupted, Interrupted};
use tracing::info;

use super::commands::{Pending, Session};
use super::model::PinReason;
use super::Failure;
use crate::client_error::ClientError;
use crate::error::SessionError;

/// What a command cut in flight is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CutAnswer {
    /// OK: a plain ROLLBACK, and the transaction is rolled back.
    RolledBack,
    /// 1213: its transaction was rolled back with the connection, and no
    /// command cut with it can have committed.
    TransactionLost,
    /// 1317: it (or a command cut with it) may have run and committed.
    Unknown,
}

/// The answers to the commands cut in flight, in order, given their
/// statement texts (`None`: a command the journal does not keep) and
/// whether they ran in a transaction (open, or opened by the first with
/// autocommit off).
fn cut_answers(transactional: bool, cut: &[Option<&[u8]>]) -> Vec<CutAnswer> {
    let unknown = vec![CutAnswer::Unknown; cut.len()];
    if !transactional {
        return unknown;
    }
    let kinds: Vec<Option<Interrupted>> = cut.iter().map(|sql| sql.map(interrupted)).collect();
    let Some((last, before)) = kinds.split_last() else {
        return unknown;
    };
    // Only the last may end the transaction (a plain ROLLBACK); a command
    // after an end would have run outside it, on its own.
    let before_safe = before.iter().all(|k| *k == Some(Interrupted::RunAgain));
    let last_answer = match last {
        Some(Interrupted::RunAgain) => CutAnswer::TransactionLost,
        Some(Interrupted::RolledBack) => CutAnswer::RolledBack,
        _ => return unknown,
    };
    if !before_safe {
        return unknown;
    }
    let mut answers = vec![CutAnswer::TransactionLost; before.len()];
    answers.push(last_answer);
    answers
}

impl Session {
    /// Whether the session can go on without the connection it lost:
    /// nothing but an open transaction was on it.
    fn survives_its_connection(&self) -> bool {
        self.model.pin_mask() & !PinReason::Transaction.bit() == 0
            && !self.model.user_variables_dirty
            && !self.model.last_insert_id_dirty
            && !self.model.tracking_dirty
    }

    /// The drain failed with `failure` and transaction replay did not
    /// answer it: when the backend connection died with commands in
    /// flight and the session survives it, each command gets its error
    /// (see the module) and the session goes on without a backend
    /// connection. Anything else is handed back.
    pub(super) async fn answer_cut(&mut self, failure: Failure) -> Result<(), Failure> {
        let gone = matches!(&failure.error, SessionError::BackendLost(io) if crate::error::is_disconnect(io));
        let killed = self
            .guard
            .entry
            .killed
            .load(std::sync::atomic::Ordering::Acquire);
        let front_whole = match self.ledger.front() {
            Some(Pending::Reply { walk, .. }) => walk.between_packets(),
            _ => true,
        };
        if !gone || killed || !front_whole || !self.survives_its_connection() {
            return Err(failure);
        }
        let transactional = self.model.in_transaction() || !self.model.autocommit();
        let cut: Vec<Option<&[u8]>> = self
            .ledger
            .iter()
            .filter_map(|pending| match pending {
                Pending::Reply { follow, .. } if follow.is_swallowed() => None,
                Pending::Local(_) => None,
                Pending::Reply { note, .. } => Some(note.sql()),
            })
            .collect();
        let mut answers = cut_answers(transactional, &cut).into_iter();
        info!(
            id = self.guard.id,
            commands = cut.len(),
            "backend connection lost with commands in flight: each gets an error, the session goes on"
        );
        self.drop_backend();
        if self.model.in_transaction() {
            self.model.transaction_lost();
            self.metrics.transaction_replayed(self.service.index, false);
        }
        self.journal.clear();
        while let Some(pending) = self.ledger.pop_front() {
            let (walk, follow) = match pending {
                Pending::Local(bytes) => {
                    self.to_client.extend_from_slice(&bytes);
                    continue;
                }
                Pending::Reply { follow, .. } if follow.is_swallowed() => continue,
                Pending::Reply { walk, follow, .. } => (walk, follow),
            };
            let seq = walk.next_seq;
            // The model learns it as a failed command (a prepare that
            // failed, a statement that changed nothing).
            self.counts.forget();
            self.reply_ended(follow, Ending::Error, walk.tracker().cursor_requested());
            let error = match answers.next().unwrap_or(CutAnswer::Unknown) {
                CutAnswer::RolledBack => {
                    let ok = torpor_protocol::packets::Ok {
                        status: torpor_protocol::packets::ServerStatus(self.last_status()),
                        ..Default::default()
                    };
                    torpor_protocol::packets::write_ok(&mut self.to_client, seq, ok);
                    continue;
                }
                CutAnswer::TransactionLost => SessionError::TransactionNotReplayed {
                    reason: "the statement was cut in flight".to_string(),
                },
                CutAnswer::Unknown if transactional => SessionError::OutcomeUnknown,
                CutAnswer::Unknown => SessionError::CutInFlight,
            };
            if let Some(client_error) = ClientError::for_session_error(&error) {
                client_error.write(&mut self.to_client, seq);
            }
        }
        // Answered now: the next command may wait for the backend.
        self.flush_client().await
    }
}

#[cfg(test)]
mod tests {
    use super::CutAnswer::*;
    use super::*;

    fn answers(transactional: bool, cut: &[Option<&str>]) -> Vec<CutAnswer> {
        let cut: Vec<Option<&[u8]>> = cut.iter().map(|c| c.map(str::as_bytes)).collect();
        cut_answers(transactional, &cut)
    }

    #[test]
    fn outside_a_transaction_a_cut_statement_may_have_run() {
        assert_eq!(
            answers(false, &[Some("INSERT INTO t VALUES (1)")]),
            [Unknown]
        );
        assert_eq!(answers(false, &[None, Some("BEGIN")]), [Unknown, Unknown]);
    }

    #[test]
    fn in_a_transaction_only_what_cannot_commit_is_told_it_was_rolled_back() {
        assert_eq!(
            answers(true, &[Some("INSERT INTO t VALUES (1)"), Some("SELECT 1")]),
            [TransactionLost, TransactionLost]
        );
        assert_eq!(
            answers(true, &[Some("INSERT INTO t VALUES (1)"), Some("ROLLBACK")]),
            [TransactionLost, RolledBack]
        );
        // A COMMIT among them: it may have committed what came before.
        assert_eq!(
            answers(true, &[Some("INSERT INTO t VALUES (1)"), Some("COMMIT")]),
            [Unknown, Unknown]
        );
        // After a ROLLBACK, a statement ran on its own.
        assert_eq!(
            answers(true, &[Some("ROLLBACK"), Some("INSERT INTO t VALUES (1)")]),
            [Unknown, Unknown]
        );
        // A command the journal does not keep: nothing is known of it.
        assert_eq!(answers(true, &[None]), [Unknown]);
        assert!(answers(true, &[]).is_empty());
    }
}
