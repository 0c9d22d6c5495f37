//! The session's side of connection ids in SQL and `COM_PROCESS_KILL`:
//! which payload goes instead of a client's (its ids translated by
//! [`super::rewrite`]), and `KILL` of another Torpor session, which closes
//! that client's socket at once, as MariaDB does.

use std::sync::atomic::Ordering;

use torpor_protocol::command::Command;

use super::commands::Session;
use torpor_replay::mentions::Mentions;

use super::rewrite::{
    might_be_kill, parse_kill, rewrite_connection_id, rewrite_found_rows, rewrite_row_count, splice,
};

impl Session {
    /// The payload to send instead of `payload`, when the command names a
    /// connection id that must be translated, or asks `ROW_COUNT()` or
    /// `FOUND_ROWS()` on a connection that lost the session's (see
    /// `super::counts`).
    /// `mentions`: what the text of a query or prepare mentions.
    pub(super) fn rewrite(
        &self,
        command: Command,
        payload: &[u8],
        mentions: Mentions,
    ) -> Option<Vec<u8>> {
        match command {
            Command::Query | Command::StmtPrepare => {
                let sql = &payload[1..];
                let mut changed = None;
                if mentions.connection_id() {
                    changed = rewrite_connection_id(sql, self.guard.id);
                }
                // A prepared statement's ROW_COUNT() asks at each execute,
                // not now: only a query's is given the session's value.
                if command == Command::Query && mentions.row_count() {
                    if let Some(value) = self.counts.row_count_to_restore() {
                        let current = changed.as_deref().unwrap_or(sql);
                        changed = rewrite_row_count(current, value).or(changed);
                    }
                }
                if command == Command::Query && mentions.found_rows() {
                    if let Some(value) = self.counts.found_rows_to_restore() {
                        let current = changed.as_deref().unwrap_or(sql);
                        changed = rewrite_found_rows(current, value).or(changed);
                    }
                }
                let current = changed.as_deref().unwrap_or(sql);
                // A KILL names the word: the text's one pass said whether.
                if command == Command::Query && mentions.kill() && might_be_kill(current) {
                    if let Some(kill) = parse_kill(current) {
                        if let Some(thread) = self.map_kill(kill.id, kill.query_only) {
                            changed = Some(splice(
                                current,
                                kill.id_range,
                                thread.to_string().as_bytes(),
                            ));
                        }
                    }
                }
                changed.map(|sql| {
                    let mut out = Vec::with_capacity(sql.len() + 1);
                    out.push(command as u8);
                    out.extend_from_slice(&sql);
                    out
                })
            }
            Command::ProcessKill => {
                let id = payload.get(1..5)?;
                let id = u32::from_le_bytes([id[0], id[1], id[2], id[3]]);
                let thread = self.map_kill(u64::from(id), false)?;
                let mut out = vec![Command::ProcessKill as u8];
                out.extend_from_slice(&thread.to_le_bytes());
                Some(out)
            }
            _ => None,
        }
    }

    /// Whether `command` KILLs a Torpor session that holds no backend
    /// connection now (marking it killed when it is KILL CONNECTION).
    pub(super) fn kills_an_idle_session(
        &self,
        command: Command,
        payload: &[u8],
        mentions: Mentions,
    ) -> bool {
        let (id, query_only) = match command {
            Command::ProcessKill => match payload.get(1..5) {
                Some(b) => (
                    u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                    false,
                ),
                None => return false,
            },
            Command::Query if mentions.kill() && might_be_kill(&payload[1..]) => {
                let sql = &payload[1..];
                let rewritten = mentions
                    .connection_id()
                    .then(|| rewrite_connection_id(sql, self.guard.id))
                    .flatten();
                match parse_kill(rewritten.as_deref().unwrap_or(sql)) {
                    Some(kill) => (kill.id, kill.query_only),
                    None => return false,
                }
            }
            _ => return false,
        };
        let Some(target) = self.shared.registry.get(id) else {
            return false;
        };
        if target.backend_thread_id.load(Ordering::Acquire) != 0 {
            return false;
        }
        if !query_only {
            self.kill_session(&target, id);
        }
        true
    }

    /// Marks session `id` killed and, as MariaDB closes a killed
    /// connection's socket at once, ends its wait for its client now (not
    /// at its next command). A session that kills itself is answered
    /// first (the backend's ERR 1927), then closed.
    pub(super) fn kill_session(&self, target: &crate::registry::SessionEntry, id: u64) {
        target.killed.store(true, Ordering::Release);
        if id != u64::from(self.guard.id) {
            target.hang_up();
        }
    }

    /// The backend thread to kill for client-visible id `id`; `None` when
    /// `id` is not a Torpor session (it may be a backend thread id that
    /// SHOW PROCESSLIST showed, and goes through unchanged).
    pub(super) fn map_kill(&self, id: u64, query_only: bool) -> Option<u32> {
        let target = self.shared.registry.get(id)?;
        if !query_only {
            self.kill_session(&target, id);
        }
        Some(target.backend_thread_id.load(Ordering::Acquire))
    }
}
