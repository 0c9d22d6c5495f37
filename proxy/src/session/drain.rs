//! Handing the backend's replies to the client, in ledger order, and
//! learning from them on the way: status flags (transactions, cursors),
//! session-state changes in OK packets, statement ids of prepare-OKs.
//!
//! Bytes move in large chunks; only the few packets that must be looked
//! at (an OK with session-state changes, a prepare-OK) are decoded, and
//! re-encoded when the client must see them differently (without session
//! tracking it did not ask for; with its own statement id).

use std::time::Instant;

use bytes::{BufMut, BytesMut};
use monoio::buf::IoBuf;
use torpor_protocol::command::Command;
use torpor_protocol::frame::{write_payload, PacketHeader, HEADER_LEN};
use torpor_protocol::packets::ServerStatus;
use torpor_protocol::reply::{Ending, PacketClass, PrepareOk};
use torpor_protocol::session_track::OkPacket;
use torpor_protocol::{stmt, Capabilities};

use torpor_replay::classify::Completion;

use super::be;
use super::commands::{Follow, Pending, Session};
use super::counts::ReplyCounts;
use super::relay::{relay_packets, Relayed};
use super::reply::{Special, Walked};
use super::statements::{BackendStatements, ClientStatement};
use super::Failure;
use crate::buffers::{BufferPool, LARGE_BUFFER};
use crate::error::SessionError;

/// Replies up to this size are copied into one outgoing buffer, so that
/// pipelined replies leave in one write; larger ones are written straight
/// from the read buffer.
const COPY_LIMIT: usize = 16 * 1024;

/// Replies from this size up to [`COPY_LIMIT`] that fill the backend's
/// read buffer, with nothing queued for the client yet, are not copied:
/// the read buffer itself becomes the client's outgoing one (see
/// [`Session::queue_plain`]). Below it the copy is cheaper than the
/// buffers' trips to and from their pools.
const SWAP_FROM: usize = 2 * 1024;

/// Whether a reply answers a query the client ran (counted in the
/// metrics): a statement or an execute, not Torpor's own commands.
fn is_query(command: Command, follow: &Follow) -> bool {
    matches!(
        command,
        Command::Query | Command::StmtExecute | Command::StmtBulkExecute
    ) && !follow.is_swallowed()
}

impl Session {
    /// Sends the first `unsent` client bytes to the backend, then walks and
    /// forwards the replies the backend owes, in ledger order, until none
    /// is left. The commands go out in the same submission as the read
    /// that waits for their replies.
    pub(super) async fn drain(&mut self, mut unsent: usize) -> Result<(), Failure> {
        let mut specials = Vec::new();
        // When the server was last heard from: read once at the end of a
        // query's reply, for its latency and for `idle_since` both.
        let mut heard = None;
        while let Some(front) = self.ledger.front_mut() {
            let walk = match front {
                Pending::Local(bytes) => {
                    self.to_client.extend_from_slice(bytes);
                    self.ledger.pop_front();
                    continue;
                }
                Pending::Reply { walk, .. } => walk,
            };
            specials.clear();
            let (n, walked) = match walk.walk(&be!(self).conn.rbuf, &mut specials) {
                Ok(step) => step,
                Err(e) => {
                    let reply_seq = Some(walk.next_seq);
                    return Err(Failure {
                        error: SessionError::BackendProtocol(e),
                        reply_seq,
                    });
                }
            };
            let swallow = matches!(
                self.ledger.front(),
                Some(Pending::Reply { follow, .. }) if follow.is_swallowed()
            );
            if swallow {
                let captured = match self.ledger.front_mut() {
                    Some(Pending::Reply {
                        follow: Follow::VerifyDiff { captured, .. },
                        ..
                    }) => Some(captured),
                    _ => None,
                };
                match (captured, self.backend.as_mut()) {
                    (Some(captured), Some(backend)) => {
                        captured.extend_from_slice(&backend.conn.rbuf.split_to(n))
                    }
                    _ => be!(self).conn.consume(n),
                }
            } else {
                self.pass_to_client(n, &specials).await?;
            }
            match walked {
                Walked::Done(Ending::Error) if swallow => {
                    let error = std::io::Error::other("Torpor's own command was refused");
                    return Err(Failure {
                        error: SessionError::BackendLost(error),
                        reply_seq: Some(1),
                    });
                }
                Walked::Done(ending) => {
                    if let Some(Pending::Reply { follow, walk, note }) = self.ledger.pop_front() {
                        if let Follow::VerifyDiff { expected, captured } = &follow {
                            let caps = be!(self).capabilities;
                            if let Err(error) = check_diff(captured, expected, caps) {
                                return Err(Failure {
                                    error,
                                    reply_seq: Some(1),
                                });
                            }
                        }
                        if is_query(walk.command, &follow) {
                            let now = Instant::now();
                            heard = Some(now);
                            self.metrics
                                .query_done(self.service.index, self.batch_started, now);
                        }
                        let cursor = walk.tracker().cursor_requested();
                        if !follow.is_swallowed() {
                            let counts = ReplyCounts::read(walk.tracker(), walk.found_rows);
                            self.counts.after_reply(walk.command, ending, counts);
                            if matches!(walk.command, Command::Query | Command::StmtExecute) {
                                self.model.statement_ended();
                            }
                        }
                        self.reply_ended(follow, ending, cursor);
                        self.journal_reply_ended(note, &walk);
                        if let Some(digest) = walk.into_digest() {
                            self.spare_digest = Some(digest);
                        }
                    }
                }
                Walked::NeedMore { want } => {
                    // Whatever is complete goes out before we wait.
                    self.flush_client().await?;
                    self.ensure_backend_buffer();
                    // A client that hangs up meanwhile has its statement
                    // stopped: the worker's watch ends this wait
                    // ([`super::hangup`]).
                    let awaiting = self.control.await_reply(be!(self).conn.raw_fd());
                    let read = if unsent > 0 {
                        let out = std::mem::take(&mut self.client.rbuf);
                        let backend = be!(self);
                        let (written, out, read) = backend
                            .conn
                            .send_and_receive(out.slice(0..unsent), want.max(4096))
                            .await;
                        self.client.rbuf = out.into_inner();
                        self.client.consume(unsent);
                        unsent = 0;
                        written.map_err(|e| self.backend_lost(e))?;
                        read
                    } else {
                        be!(self).conn.read_more(want.max(4096)).await
                    };
                    drop(awaiting);
                    match read {
                        Ok(n) if n > 0 => {}
                        // Boxed: a rare end (its KILL QUERY's connection
                        // and login), whose future of ~4.7 KiB held in
                        // place made this one ~4.9 KiB instead of ~1.2,
                        // and so every busy session's command path.
                        _ if self.hung_up_meanwhile() => {
                            return Err(Box::pin(self.client_hung_up()).await)
                        }
                        Ok(_) => {
                            let eof = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
                            return Err(self.backend_lost(eof));
                        }
                        Err(e) => return Err(self.backend_lost(e)),
                    }
                }
                Walked::LocalInfile => {
                    debug_assert_eq!(unsent, 0, "a reply started, so its command was sent");
                    self.flush_client().await?;
                    let read_limit = self.settings.load().net_read_timeout;
                    // MariaDB reads the file packet by packet: one that
                    // reaches max_allowed_packet is refused as a command
                    // would be (1153 after its header, then the close).
                    let max = self.max_allowed_packet();
                    let result = relay_packets(
                        &mut self.client,
                        &mut be!(self).conn,
                        read_limit,
                        |h| match h.len {
                            0 => Relayed::Last,
                            len if max.is_some_and(|max| len >= max) => Relayed::Refuse,
                            _ => Relayed::More,
                        },
                    )
                    .await;
                    self.relay_result(result)?;
                }
            }
        }
        // Commands that are owed no reply (COM_STMT_CLOSE) still go out.
        // Tested here: the call (a future made, polled and dropped) cost
        // more than the test, on every query.
        if unsent > 0 {
            self.forward_run(unsent).await?;
        }
        if let Some(backend) = self.backend.as_mut() {
            backend.idle_since = heard.unwrap_or_else(Instant::now);
        }
        self.release_backend_buffer();
        Ok(())
    }

    /// What the end of a reply teaches about the session; `cursor_requested`
    /// when the command asked for a cursor (only then does
    /// SERVER_STATUS_CURSOR_EXISTS mean one is open for the client: a
    /// stored procedure's own cursors set it too).
    pub(super) fn reply_ended(&mut self, follow: Follow, ending: Ending, cursor_requested: bool) {
        let ok = !matches!(ending, Ending::Error);
        let status = match ending {
            Ending::Status(status) => Some(status),
            _ => None,
        };
        if let (Some(status), false) = (status, follow.is_swallowed()) {
            self.model.observe_status(status);
        }
        match follow {
            Follow::Plain | Follow::Swallow | Follow::VerifyDiff { .. } => {}
            Follow::Prepare { .. } => {
                if !ok {
                    self.statements.prepare_failed();
                }
            }
            Follow::Query { facts, sql } => {
                self.released = ok && self.releases_connection(facts.ends_transaction);
                let facts = self.model.resolve(&facts);
                self.model.before_statement(&facts, &sql);
                self.model.after_statement(&facts, &sql, ok);
            }
            Follow::Execute { id, facts } => {
                if let Some(facts) = facts {
                    // The binary protocol cannot run PREPARE: no text needed.
                    self.model.before_statement(&facts, b"");
                    self.model.after_statement(&facts, b"", ok);
                }
                self.model.statement_settled(id, false);
                let cursor =
                    cursor_requested && status.is_some_and(|s| s.has(ServerStatus::CURSOR_EXISTS));
                self.model.cursor_opened(id, cursor);
            }
            Follow::Fetch { id } => {
                if status.is_some_and(|s| s.has(ServerStatus::LAST_ROW_SENT)) || !ok {
                    self.model.cursor_opened(id, false);
                }
            }
            Follow::StatementReset { id } => {
                self.model.statement_settled(id, false);
                self.model.cursor_opened(id, false);
            }
            Follow::ResetConnection => {
                if ok {
                    self.model.reset(None);
                    // What it left elsewhere was reset too.
                    self.left = None;
                    self.statements.clear();
                    // The server dropped every statement on the connection.
                    if let Some(backend) = self.backend.as_mut() {
                        backend.statements.clear();
                    }
                }
            }
        }
    }

    /// Moves the first `n` bytes of the backend's read buffer towards the
    /// client, with the special packets among them looked at (and
    /// re-encoded where the client must see them differently).
    async fn pass_to_client(&mut self, n: usize, specials: &[Special]) -> Result<(), Failure> {
        let mut done = 0;
        for special in specials {
            if !self.queue_plain(special.at - done) {
                self.write_plain(special.at - done).await?;
            }
            let packet = be!(self).conn.rbuf.split_to(special.len);
            self.take_special(&packet, special.class);
            done = special.at + special.len;
        }
        if !self.queue_plain(n - done) {
            self.write_plain(n - done).await?;
        }
        Ok(())
    }

    /// Learns from one special packet and queues what the client gets in
    /// its place.
    fn take_special(&mut self, packet: &[u8], class: PacketClass) {
        let (header, payload) = match PacketHeader::parse(packet) {
            Some(header) => (header, &packet[HEADER_LEN..]),
            None => return,
        };
        let follow = match self.ledger.front() {
            Some(Pending::Reply { follow, .. }) => follow,
            _ => return,
        };
        match class {
            PacketClass::PrepareOk => {
                let Follow::Prepare { sql } = follow else {
                    self.to_client.put_slice(packet);
                    return;
                };
                let Ok(prepared) = PrepareOk::parse(payload) else {
                    self.to_client.put_slice(packet);
                    return;
                };
                let found_rows = super::counts::found_rows(
                    sql,
                    torpor_replay::mentions::mentions(sql).found_rows(),
                );
                let id = self.statements.add(ClientStatement {
                    may_change_state: torpor_replay::classify::may_change_state(sql),
                    found_rows,
                    sql: sql.as_slice().into(),
                    params: prepared.params,
                    columns: prepared.columns,
                    param_types: None,
                });
                let Some(backend) = self.backend.as_mut() else {
                    return;
                };
                let key = BackendStatements::key(self.guard.id, id);
                let evicted = backend.statements.insert(key, sql, prepared.statement_id);
                backend.to_close.extend(evicted);
                let mut rewritten = payload.to_vec();
                stmt::set_statement_id(&mut rewritten, id);
                write_payload(&mut self.to_client, header.seq, &rewritten);
            }
            PacketClass::Ok(_) => {
                let Ok(ok) = OkPacket::parse(payload, self.backend_caps) else {
                    self.to_client.put_slice(packet);
                    return;
                };
                self.model.observe_ok(&ok);
                let tracked = self
                    .capabilities
                    .contains(Capabilities::CLIENT_SESSION_TRACK);
                // Nothing to strip without session-state data (an OK that
                // is here only for its insert id): forwarded as it came.
                let bare = !ok.status.has(ServerStatus::SESSION_STATE_CHANGED);
                if bare || tracked && self.model.tracking.keeps_all() {
                    self.to_client.put_slice(packet);
                    return;
                }
                let mut out = BytesMut::with_capacity(payload.len());
                match ok.changes() {
                    Ok(changes) if tracked => {
                        let block = self.model.client_block(&changes);
                        ok.encode_with_state(self.capabilities, &block, &mut out);
                    }
                    _ => ok.encode_for(self.capabilities, &mut out),
                }
                write_payload(&mut self.to_client, header.seq, &out);
            }
            _ => self.to_client.put_slice(packet),
        }
    }

    /// Moves `n` bytes as they are, written directly: what
    /// [`Session::queue_plain`] (which its callers try first) could not
    /// queue.
    async fn write_plain(&mut self, n: usize) -> Result<(), Failure> {
        self.flush_client().await?;
        self.control
            .write_started(self.settings.load().net_write_timeout);
        let result = self.client.forward_from(&mut be!(self).conn.rbuf, n).await;
        self.control.write_done();
        result.map_err(|e| self.client_write_failed(e))
    }

    /// Moves `n` bytes as they are, when that needs no write: nothing to
    /// move, a small reply copied (to batch replies), or a reply that is
    /// the whole of the backend's read buffer, with nothing queued before
    /// it, handed over as the client's outgoing buffer instead of copied
    /// (it goes back to the large pool once written,
    /// [`give_reply_buffer`]; the read-only mix's range queries, 100 rows,
    /// ~13 KiB, spent a fifth of Torpor's instructions per query copying
    /// their rows). Whether it did; if not, [`Session::write_plain`].
    /// Tested before that `async` call, which (a future made, polled and
    /// dropped) cost more per query than the copy of a point select's
    /// reply (callgrind).
    fn queue_plain(&mut self, n: usize) -> bool {
        if n == 0 {
            return true;
        }
        // No backend: `write_plain` reports it.
        let Some(backend) = self.backend.as_mut() else {
            return false;
        };
        let rbuf = &mut backend.conn.rbuf;
        if (SWAP_FROM..=COPY_LIMIT).contains(&n) && self.to_client.is_empty() && n == rbuf.len() {
            let reply = std::mem::take(rbuf);
            let emptied = std::mem::replace(&mut self.to_client, reply);
            give_reply_buffer(&self.small_buffers, &self.buffers, emptied);
            return true;
        }
        if n <= COPY_LIMIT && self.to_client.len() + n <= 4 * COPY_LIMIT {
            let Some(bytes) = rbuf.get(..n) else {
                return false;
            };
            self.to_client.put_slice(bytes);
            backend.conn.consume(n);
            return true;
        }
        false
    }

    /// Writes what is queued for the client, within `net_write_timeout`
    /// (the worker's watch ends a write that waits longer).
    pub(super) async fn flush_client(&mut self) -> Result<(), Failure> {
        if self.to_client.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.to_client);
        self.control
            .write_started(self.settings.load().net_write_timeout);
        let (result, mut buf) = self.client.write_all(buf).await;
        self.control.write_done();
        buf.clear();
        self.to_client = buf;
        self.settle_to_client();
        result.map_err(|e| self.client_write_failed(e))
    }

    /// Once the outgoing buffer is written: a large one (a backend's read
    /// buffer that carried a reply out, or one that grew with pipelined
    /// replies) goes back to its pool, and a small one takes its place,
    /// so that no session holds 128 KiB between its commands.
    pub(super) fn settle_to_client(&mut self) {
        if self.to_client.is_empty() && is_large(&self.to_client) {
            let written = std::mem::replace(&mut self.to_client, self.small_buffers.take());
            give_reply_buffer(&self.small_buffers, &self.buffers, written);
        }
    }

    /// Gives the backend connection a large pooled read buffer for the
    /// replies about to stream through, keeping what is buffered.
    pub(super) fn ensure_backend_buffer(&mut self) {
        let Some(backend) = self.backend.as_mut() else {
            return;
        };
        let rbuf = &mut backend.conn.rbuf;
        if rbuf.capacity() < LARGE_BUFFER / 2 {
            let mut large = self.buffers.take();
            large.extend_from_slice(rbuf);
            *rbuf = large;
        }
    }

    /// Hands the backend connection's read buffer back to the pool while
    /// no reply is owed.
    pub(super) fn release_backend_buffer(&mut self) {
        let Some(backend) = self.backend.as_mut() else {
            return;
        };
        if backend.conn.rbuf.is_empty() && backend.conn.rbuf.capacity() > 0 {
            self.buffers.give(std::mem::take(&mut backend.conn.rbuf));
        }
    }
}

/// Gives an emptied outgoing buffer back to the pool of its size: a
/// client's small one, or a larger one — a backend's read buffer that
/// carried a reply out ([`Session::queue_plain`]), or a small one that
/// grew with pipelined replies — to the large pool (which reclaims its
/// used front, or grows it once to its size). Given to the small pool, a
/// large buffer would be dropped, and the large pool allocate anew.
pub(super) fn give_reply_buffer(small: &BufferPool, large: &BufferPool, mut buf: BytesMut) {
    buf.clear();
    if is_large(&buf) {
        large.give(buf);
    } else {
        small.give(buf);
    }
}

/// Whether an outgoing buffer is more than a client's small one (a
/// backend's read buffer, or one that grew): the large pool's.
fn is_large(buf: &BytesMut) -> bool {
    buf.capacity() > 2 * crate::net::SMALL_BUFFER
}

/// Compares the read-back of a pipelined state diff (`captured`, the
/// whole reply to [`super::attach::verify_sql`]) with the state meant.
fn check_diff(
    captured: &[u8],
    expected: &torpor_replay::state::SessionState,
    capabilities: Capabilities,
) -> Result<(), SessionError> {
    let mut reply = crate::backend::QueryReply::new(capabilities)?;
    let mut rest = captured;
    while let Some(packet) = torpor_protocol::frame::read_payload(rest, usize::MAX)
        .map_err(SessionError::BackendProtocol)?
    {
        rest = &rest[packet.consumed..];
        match reply.on_packet(packet.last_seq, packet.data.into_owned())? {
            Some(crate::backend::QueryResult::Rows(rows)) => {
                return super::attach::replay_verdict(super::attach::replay_mismatches(
                    rows, expected,
                ))
            }
            Some(_) => break,
            None => {}
        }
    }
    super::attach::replay_verdict(vec!["no rows read back".to_string()])
}

impl Session {
    /// Whether a `COMMIT`/`ROLLBACK` that succeeded made MariaDB close the
    /// connection: `… RELEASE`, or neither form with `completion_type =
    /// RELEASE`.
    fn releases_connection(&self, completion: Option<Completion>) -> bool {
        match completion {
            Some(Completion::Release) => true,
            Some(Completion::AsConfigured) => self
                .model
                .state
                .variable(&self.model.baseline, "completion_type")
                .is_some_and(|v| v.eq_ignore_ascii_case("RELEASE") || v.trim() == "2"),
            Some(Completion::NoRelease) | None => false,
        }
    }
}
