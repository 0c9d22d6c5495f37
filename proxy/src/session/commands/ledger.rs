//! Sending a client's commands on to the backend and writing down what
//! each one expects back (the reply ledger): what Torpor must learn from
//! a reply, and the replies it gives itself.

use super::*;

impl Session {
    /// What Torpor must learn from the reply to `command` (`mentions`:
    /// what its text mentions, when it has one).
    pub(super) fn follow_for(
        &self,
        command: Command,
        payload: &[u8],
        mentions: Mentions,
    ) -> Follow {
        match command {
            Command::Query => {
                let sql = &payload[1..];
                if crate::accounts::statements::changes_accounts(sql) {
                    let mut change = self.accounts_change.borrow_mut();
                    if change.is_none() {
                        *change = Some(crate::accounts::keeper::AccountChange::start(Arc::clone(
                            &self.service,
                        )));
                    }
                }
                if mentions.may_change_state() {
                    let facts = classify(sql);
                    if facts != StatementFacts::default() {
                        return Follow::Query {
                            facts,
                            sql: sql.to_vec(),
                        };
                    }
                }
                Follow::Plain
            }
            Command::StmtPrepare => Follow::Prepare {
                sql: payload[1..].to_vec(),
            },
            Command::ResetConnection => Follow::ResetConnection,
            _ => Follow::Plain,
        }
    }

    /// Sends the first `run` buffered client bytes to the backend.
    pub(in crate::session) async fn forward_run(&mut self, run: usize) -> Result<(), Failure> {
        if run == 0 {
            return Ok(());
        }
        let backend = be!(self);
        let result = backend.conn.forward_from(&mut self.client.rbuf, run).await;
        result.map_err(|e| self.backend_lost(e))
    }

    /// Sends one command payload (sequence id 0) to the backend.
    pub(in crate::session) async fn send_to_backend(
        &mut self,
        payload: &[u8],
    ) -> Result<(), Failure> {
        let mut wire = BytesMut::with_capacity(payload.len() + HEADER_LEN);
        write_payload(&mut wire, 0, payload);
        let result = be!(self).conn.write_all(wire).await.0;
        result.map_err(|e| self.backend_lost(e))
    }

    /// Queues the reply `command` is owed, if it is owed one; a journaled
    /// command's reply is digested on its way.
    pub(in crate::session) fn expect_reply(
        &mut self,
        command: Command,
        follow: Follow,
        note: JournalNote,
    ) {
        self.expect_reply_to(command, false, follow, note, FoundRows::Unknown);
    }

    /// [`Session::expect_reply`] for a client's text query, which does
    /// `found_rows` to `FOUND_ROWS()`.
    pub(in crate::session) fn expect_statement_reply(
        &mut self,
        command: Command,
        follow: Follow,
        note: JournalNote,
        found_rows: FoundRows,
    ) {
        self.expect_reply_to(command, false, follow, note, found_rows);
    }

    /// Queues the reply `command` is owed; `cursor` when it is an execute
    /// that asked for a cursor (its rows may then come with
    /// COM_STMT_FETCH instead); `found_rows` what a statement does to
    /// `FOUND_ROWS()`.
    pub(in crate::session) fn expect_reply_to(
        &mut self,
        command: Command,
        cursor: bool,
        follow: Follow,
        note: JournalNote,
        found_rows: FoundRows,
    ) {
        if !follow.is_swallowed() {
            self.counts.sent_here(command, found_rows);
        }
        if let Some(tracker) = ReplyTracker::new(command.reply_kind(), self.backend_caps) {
            let tracker = tracker.with_cursor_requested(cursor);
            let mut walk = ReplyWalk::new(command, tracker, 1);
            walk.found_rows = found_rows;
            let walk = match note {
                JournalNote::Recorded(_) => walk.digested_in(self.spare_digest.take()),
                _ => walk,
            };
            self.ledger.push_back(Pending::Reply { walk, follow, note });
        }
    }

    /// Queues an ERR reply Torpor gives itself.
    pub(in crate::session) fn reply_locally(&mut self, error: &ClientError) {
        let mut wire = BytesMut::new();
        error.write(&mut wire, 1);
        self.ledger.push_back(Pending::Local(wire));
    }

    /// A failure of the backend connection while the front reply (or the
    /// command just sent) is owed.
    pub(in crate::session) fn backend_lost(&self, error: std::io::Error) -> Failure {
        let reply_seq = match self.ledger.front() {
            Some(Pending::Reply { walk, .. }) => Some(walk.next_seq),
            _ => Some(1),
        };
        let error = if self.guard.entry.killed.load(Ordering::Acquire) {
            SessionError::Killed
        } else {
            SessionError::BackendLost(error)
        };
        Failure { error, reply_seq }
    }

    /// Maps a statement command's client id to the backend connection's,
    /// in the client's buffer at `at` (the packet's offset) when the
    /// command can go as it is.
    pub(super) fn statement_command(
        &mut self,
        command: Command,
        at: usize,
        total: usize,
    ) -> Result<StatementStep, Failure> {
        let payload = &self.client.rbuf[at + HEADER_LEN..at + total];
        let Some(named) = stmt::statement_id(payload) else {
            return Err(client_protocol(ProtocolError::malformed(command.name()), 1));
        };
        if named == stmt::LAST_PREPARED && self.prepare_owed() {
            // A direct execute: it names the statement whose prepare-OK
            // has not come back yet. It goes once that reply is in.
            return Ok(StatementStep::AfterPrepare);
        }
        let id = self.statements.resolve(named);
        let skey = BackendStatements::key(self.guard.id, id);
        let Some(statement) = self.statements.get(id) else {
            if command != Command::StmtClose && command != Command::StmtSendLongData {
                self.reply_locally(&ClientError::unknown_statement(named, command));
            }
            return Ok(StatementStep::Consumed);
        };
        // What the rest needs of the statement, read once (each lookup of
        // it is a hash probe).
        let params = statement.params;
        let may_change_state = statement.may_change_state;
        let found_rows_effect = statement.found_rows;
        if command == Command::StmtClose {
            self.statements.remove(id);
            self.model.statement_settled(id, true);
            return Ok(match be!(self).statements.remove(skey) {
                Some(backend_id) => {
                    let mut payload = payload.to_vec();
                    stmt::set_statement_id(&mut payload, backend_id);
                    StatementStep::Rewritten(payload)
                }
                None => StatementStep::Consumed,
            });
        }
        // Another session's statement with the same text on this
        // connection is not borrowed (`BackendStatements::share`): its
        // result metadata can differ from what this client was given at
        // prepare time (seen with `SELECT ?+0` and the mysql crate), so
        // each session prepares its own.
        let Some(backend_id) = be!(self).statements.lookup(skey) else {
            if command == Command::StmtReset {
                // Nothing to reset on a connection that never had it.
                self.model.statement_settled(id, false);
                self.model.cursor_opened(id, false);
                self.reply_ok_locally();
                return Ok(StatementStep::Consumed);
            }
            return Ok(StatementStep::PrepareFirst(id));
        };
        let payload = &self.client.rbuf[at + HEADER_LEN..at + total];
        let follow = match command {
            Command::StmtExecute | Command::StmtBulkExecute => Some(Follow::Execute {
                id,
                facts: if may_change_state {
                    self.statements
                        .get(id)
                        .and_then(|s| crate::session::model::execute_facts(&s.sql))
                } else {
                    None
                },
            }),
            Command::StmtFetch => Some(Follow::Fetch { id }),
            Command::StmtReset => Some(Follow::StatementReset { id }),
            _ => None,
        };
        if command == Command::StmtSendLongData {
            self.model.long_data_sent(id);
        }
        let mut rewritten = None;
        if matches!(command, Command::StmtExecute | Command::StmtBulkExecute) {
            match stmt::param_types(payload, params) {
                Ok(Some(types)) => {
                    be!(self).statements.set_last_types(backend_id, types);
                    // Most clients send the same types every time: keep
                    // them without an allocation per execute.
                    if let Some(statement) = self.statements.get_mut(id) {
                        if statement.param_types.as_deref() != Some(types) {
                            statement.param_types = Some(types.into());
                        }
                    }
                }
                Ok(None) => {
                    // The backend statement uses the types it last saw;
                    // if those are not this client's (it sent them to
                    // another connection, or another session shares the
                    // statement), the client's are added back.
                    // Borrowed, not cloned: a copy of the types was an
                    // allocation per execute (~100 instructions).
                    let mine = self
                        .statements
                        .get(id)
                        .and_then(|s| s.param_types.as_deref());
                    let backend = be!(self);
                    if let Some(types) = mine {
                        if backend.statements.last_types(backend_id) != Some(types) {
                            if let Ok(Some(mut with_types)) =
                                stmt::with_param_types(payload, params, types)
                            {
                                stmt::set_statement_id(&mut with_types, backend_id);
                                backend.statements.set_last_types(backend_id, types);
                                rewritten = Some(with_types);
                            }
                        }
                    }
                }
                Err(e) => return Err(client_protocol(e, 1)),
            }
        }
        if let Some(follow) = follow {
            let note = match command {
                Command::StmtExecute => {
                    let payload = &self.client.rbuf[at + HEADER_LEN..at + total];
                    self.note_for_execute(id, payload)
                }
                Command::StmtReset => JournalNote::Neutral,
                _ => JournalNote::Unrecorded,
            };
            let payload = &self.client.rbuf[at + HEADER_LEN..at + total];
            let cursor = stmt::requests_cursor(payload);
            // A cursor's rows come with COM_STMT_FETCH: not counted.
            let found_rows = match (command, cursor) {
                (Command::StmtExecute, false) => found_rows_effect,
                _ => FoundRows::Unknown,
            };
            self.expect_reply_to(command, cursor, follow, note, found_rows);
        }
        if let Some(payload) = rewritten {
            return Ok(StatementStep::Rewritten(payload));
        }
        // Same width: rewrite the id where it lies.
        let start = at + HEADER_LEN;
        stmt::set_statement_id(&mut self.client.rbuf[start..at + total], backend_id);
        Ok(StatementStep::Forward)
    }

    /// Whether a COM_STMT_PREPARE's reply is still owed: until it is in,
    /// Torpor does not know which statement [`stmt::LAST_PREPARED`] names.
    /// Whether a statement command's head (`head`: its first bytes)
    /// names the statement whose prepare-OK has not come back yet (MariaDB's
    /// direct execute, statement id 0xFFFFFFFF).
    pub(super) fn names_statement_being_prepared(&self, head: &[u8]) -> bool {
        let statement_command = head
            .first()
            .copied()
            .and_then(Command::from_byte)
            .is_some_and(|c| {
                matches!(
                    c,
                    Command::StmtExecute | Command::StmtBulkExecute | Command::StmtSendLongData
                )
            });
        statement_command
            && stmt::statement_id(head) == Some(stmt::LAST_PREPARED)
            && self.prepare_owed()
    }

    pub(super) fn prepare_owed(&self) -> bool {
        self.ledger.iter().any(|pending| {
            matches!(
                pending,
                Pending::Reply {
                    follow: Follow::Prepare { .. },
                    ..
                }
            )
        })
    }

    /// Answers the front command with `error` without running it (its
    /// bytes are dropped); false when it is not whole in the buffer.
    pub(in crate::session) fn refuse_front_command(&mut self, error: &SessionError) -> bool {
        let Some(header) = PacketHeader::parse(&self.client.rbuf) else {
            return false;
        };
        if header.is_continued() || self.client.rbuf.len() < header.total_len() {
            return false;
        }
        let command = self
            .client
            .rbuf
            .get(HEADER_LEN)
            .copied()
            .and_then(Command::from_byte);
        self.client.consume(header.total_len());
        let wants_reply = command.is_none_or(|c| c.reply_kind() != ReplyKind::None);
        if wants_reply {
            if let Some(client_error) = ClientError::for_session_error(error) {
                client_error.write(&mut self.to_client, header.seq.wrapping_add(1));
            }
        }
        true
    }
}
