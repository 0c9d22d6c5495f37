//! The command loop: read what the client sends, forward it, and hand the
//! backend's replies back in order.
//!
//! The loop is sequential per session: take every complete command the
//! client has sent (several when it pipelines), forward them in one write,
//! then walk the replies the backend owes until none is left. A ledger
//! keeps, in order, one entry per reply the client is owed: a reply to
//! forward from the backend, or one Torpor writes itself (an unknown
//! command, a refused replication request). Commands that need the whole
//! connection (COM_CHANGE_USER, COM_QUIT) wait until the ledger is empty.
//!
//! Forwarding never decodes rows: replies are walked packet head by packet
//! head ([`super::reply`]) and copied or moved through in large chunks.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use monoio::buf::IoBuf;
use torpor_protocol::auth::{ProvenPassword, NATIVE_PASSWORD_PLUGIN};
use torpor_protocol::command::{Command, ReplyKind};
use torpor_protocol::frame::{write_payload, PacketHeader, HEADER_LEN, MAX_PAYLOAD};
use torpor_protocol::handshake::{AuthSwitch, ChangeUser};
use torpor_protocol::reply::ReplyTracker;
use torpor_protocol::{Capabilities, ProtocolError};
use tracing::debug;

use super::relay::{relay_packets, RelayError};
use super::reply::{ReplyWalk, Walked, WHOLE_PACKET_LIMIT};
use super::rewrite::{
    mentions_connection_id, might_be_kill, parse_kill, rewrite_connection_id, splice,
};
use super::{login, report, tell_client, Failure};
use crate::backend::{finish_auth, read_packet, BackendConn};
use crate::buffers::{BufferPool, LARGE_BUFFER};
use crate::client_error::ClientError;
use crate::context::Shared;
use crate::error::SessionError;
use crate::net::Conn;
use crate::registry::SessionGuard;
use crate::worker::SessionControl;

/// Replies up to this size are copied into one outgoing buffer, so that
/// pipelined replies leave in one write; larger ones are written straight
/// from the read buffer.
const COPY_LIMIT: usize = 16 * 1024;

/// At most this many bytes of pipelined commands are forwarded before
/// their replies are drained. The backend reads one command at a time and
/// blocks writing replies nobody reads; bounding what is in flight keeps
/// both directions moving.
const PIPELINE_LIMIT: usize = 256 * 1024;

/// How long the backend may take to answer COM_CHANGE_USER.
const CHANGE_USER_TIMEOUT: Duration = Duration::from_secs(30);

/// A reply the client is owed, in order.
enum Pending {
    /// The backend owes it; it is forwarded as it is.
    Reply(ReplyWalk),
    /// Torpor gives it itself.
    Local(BytesMut),
}

/// What stopped a batch of commands.
enum Batch {
    /// Everything buffered was dispatched (or the pipeline limit reached).
    Dispatched,
    /// The client said COM_QUIT.
    Quit,
    /// COM_CHANGE_USER is next and needs the connection to itself.
    ChangeUser,
}

/// A logged-in client and its backend connection.
pub struct Session {
    client: Conn,
    backend: BackendConn,
    capabilities: Capabilities,
    user: Vec<u8>,
    password: ProvenPassword,
    seed: Vec<u8>,
    guard: SessionGuard,
    shared: Arc<Shared>,
    peer: SocketAddr,
    control: Rc<SessionControl>,
    buffers: Rc<BufferPool>,
    ledger: VecDeque<Pending>,
    /// Bytes for the client, written when the ledger is drained or before
    /// waiting on the backend.
    to_client: BytesMut,
}

fn client_protocol(error: ProtocolError, reply_seq: u8) -> Failure {
    Failure {
        error: SessionError::ClientProtocol(error),
        reply_seq: Some(reply_seq),
    }
}

impl Session {
    /// A session for a client that just logged in.
    pub fn new(
        client: Conn,
        authenticated: super::login::Authenticated,
        guard: SessionGuard,
        shared: Arc<Shared>,
        peer: SocketAddr,
        control: Rc<SessionControl>,
        buffers: Rc<BufferPool>,
    ) -> Session {
        guard
            .entry
            .backend_thread_id
            .store(authenticated.backend.thread_id, Ordering::Release);
        Session {
            client,
            capabilities: authenticated.capabilities,
            user: authenticated.user,
            password: authenticated.password,
            seed: authenticated.seed,
            backend: authenticated.backend,
            guard,
            shared,
            peer,
            control,
            buffers,
            ledger: VecDeque::new(),
            to_client: BytesMut::new(),
        }
    }

    /// Runs the command loop until the client quits or something fails,
    /// then closes both connections.
    pub async fn run(mut self) {
        let result = self.command_loop().await;
        if let Err(failure) = result {
            report(self.guard.id, self.peer, &failure.error, "command");
            if let Some(seq) = failure.reply_seq {
                let _ = self.flush_client().await;
                tell_client(&mut self.client, &failure.error, seq).await;
            }
        }
        self.client.close().await;
        self.backend.conn.close().await;
    }

    async fn command_loop(&mut self) -> Result<(), Failure> {
        loop {
            if self.guard.entry.killed.load(Ordering::Acquire) {
                return Err(Failure {
                    error: SessionError::Killed,
                    reply_seq: self.client_waits().then_some(1),
                });
            }
            let Some(want) = self.bytes_missing() else {
                let (batch, run) = self.dispatch().await?;
                self.drain(run).await?;
                match batch {
                    Batch::Dispatched => {}
                    Batch::Quit => {
                        self.quit_backend().await;
                        return Ok(());
                    }
                    Batch::ChangeUser => self.change_user().await?,
                }
                continue;
            };
            self.wait_for_client(want).await?;
        }
    }

    /// Sends the client what it is owed and waits for its next bytes: the
    /// one place a session is idle, and so the one place a shutdown ends
    /// it (the worker shuts the read side of idle sessions' sockets).
    async fn wait_for_client(&mut self, want: usize) -> Result<(), Failure> {
        self.client.shrink_if_idle();
        self.control.set_idle(true);
        if self.shared.shutdown.is_stopping() {
            self.flush_client().await?;
            return Err(SessionError::Shutdown.into());
        }
        let read = if self.to_client.is_empty() {
            self.client.read_more(want).await
        } else {
            let out = std::mem::take(&mut self.to_client);
            let (written, mut out, read) = self.client.send_and_receive(out, want).await;
            out.clear();
            self.to_client = out;
            written.map_err(SessionError::client_io)?;
            read
        };
        self.control.set_idle(false);
        if self.to_client.capacity() > 4 * COPY_LIMIT {
            self.to_client = BytesMut::new();
        }
        match read {
            Ok(0) if self.shared.shutdown.is_stopping() => Err(SessionError::Shutdown.into()),
            Ok(0) => Err(SessionError::ClientGone.into()),
            Ok(_) => Ok(()),
            Err(e) => Err(SessionError::client_io(e).into()),
        }
    }

    /// Whether the client is in the middle of sending a command (so that
    /// an ERR would be read as its reply).
    fn client_waits(&self) -> bool {
        !self.client.rbuf.is_empty()
    }

    /// `None` when a command can be dispatched now; otherwise how many
    /// more bytes to read first.
    fn bytes_missing(&self) -> Option<usize> {
        let buf = &self.client.rbuf;
        let Some(header) = PacketHeader::parse(buf) else {
            return Some(4096.max(HEADER_LEN - buf.len()));
        };
        let streamable = header.len > WHOLE_PACKET_LIMIT || header.is_continued();
        if buf.len() >= header.total_len() || (streamable && buf.len() > HEADER_LEN) {
            None
        } else {
            Some(header.total_len().min(WHOLE_PACKET_LIMIT) - buf.len().min(header.total_len()))
        }
    }

    /// Forwards every complete command buffered (up to the pipeline
    /// limit), queueing the replies they are owed.
    /// Returns why it stopped and how many bytes at the front of the
    /// client's buffer are still to be sent to the backend (sent by
    /// [`Session::drain`] together with the read for their replies).
    async fn dispatch(&mut self) -> Result<(Batch, usize), Failure> {
        // Commands forwarded unchanged are sent straight from the read
        // buffer: `run` bytes at its front are due to the backend.
        let mut run = 0usize;
        let result = loop {
            if run >= PIPELINE_LIMIT {
                break Batch::Dispatched;
            }
            let buf = &self.client.rbuf[run..];
            let Some(header) = PacketHeader::parse(buf) else {
                break Batch::Dispatched;
            };
            if header.seq != 0 {
                self.forward_run(run).await?;
                let expected = 0;
                return Err(client_protocol(
                    ProtocolError::OutOfOrder {
                        expected,
                        got: header.seq,
                    },
                    header.seq.wrapping_add(1),
                ));
            }
            let whole = buf.len() >= header.total_len();
            if header.is_continued() || (!whole && header.len > WHOLE_PACKET_LIMIT) {
                if buf.len() <= HEADER_LEN {
                    break Batch::Dispatched;
                }
                // A command too large to buffer: its packets go through as
                // they arrive, unexamined but for the command byte.
                let byte = buf[HEADER_LEN];
                self.forward_run(run).await?;
                run = 0;
                self.stream_command(byte).await?;
                continue;
            }
            if !whole {
                break Batch::Dispatched;
            }
            let total = header.total_len();
            let payload = &buf[HEADER_LEN..total];
            let Some(command) = payload.first().copied().and_then(Command::from_byte) else {
                self.forward_run(run).await?;
                run = 0;
                self.client.consume(total);
                self.reply_locally(&ClientError::unknown_command());
                continue;
            };
            match command {
                Command::Quit => {
                    self.forward_run(run).await?;
                    self.client.consume(total);
                    return Ok((Batch::Quit, 0));
                }
                Command::ChangeUser => {
                    if run == 0 && self.ledger.is_empty() {
                        return Ok((Batch::ChangeUser, 0));
                    }
                    break Batch::Dispatched;
                }
                _ if command.reply_kind() == ReplyKind::Replication => {
                    self.forward_run(run).await?;
                    run = 0;
                    self.client.consume(total);
                    self.reply_locally(
                        &ClientError::for_session_error(&SessionError::Unsupported(
                            "replication commands",
                        ))
                        .unwrap_or_else(ClientError::unknown_command),
                    );
                    continue;
                }
                _ => {}
            }
            if let Some(rewritten) = self.rewrite(command, payload) {
                self.forward_run(run).await?;
                run = 0;
                self.client.consume(total);
                let mut wire = BytesMut::with_capacity(rewritten.len() + HEADER_LEN);
                write_payload(&mut wire, 0, &rewritten);
                self.expect_reply(command, 1);
                self.backend
                    .conn
                    .write_all(wire)
                    .await
                    .0
                    .map_err(|e| self.backend_lost(e))?;
                continue;
            }
            self.expect_reply(command, 1);
            run += total;
        };
        Ok((result, run))
    }

    /// Sends the first `run` buffered client bytes to the backend.
    async fn forward_run(&mut self, run: usize) -> Result<(), Failure> {
        if run == 0 {
            return Ok(());
        }
        let result = self
            .backend
            .conn
            .forward_from(&mut self.client.rbuf, run)
            .await;
        result.map_err(|e| self.backend_lost(e))
    }

    /// Queues the reply `command` is owed, if it is owed one.
    fn expect_reply(&mut self, command: Command, next_seq: u8) {
        if let Some(tracker) = ReplyTracker::new(command.reply_kind(), self.backend.capabilities) {
            self.ledger
                .push_back(Pending::Reply(ReplyWalk::new(command, tracker, next_seq)));
        }
    }

    /// Queues an ERR reply Torpor gives itself.
    fn reply_locally(&mut self, error: &ClientError) {
        let mut wire = BytesMut::new();
        error.write(&mut wire, 1);
        self.ledger.push_back(Pending::Local(wire));
    }

    /// A failure of the backend connection while the front reply (or the
    /// command just sent) is owed.
    fn backend_lost(&self, error: std::io::Error) -> Failure {
        let reply_seq = match self.ledger.front() {
            Some(Pending::Reply(walk)) => Some(walk.next_seq),
            _ => Some(1),
        };
        let error = if self.guard.entry.killed.load(Ordering::Acquire) {
            SessionError::Killed
        } else {
            SessionError::BackendLost(error)
        };
        Failure { error, reply_seq }
    }

    /// The payload to send instead of `payload`, when the command names a
    /// connection id that must be translated.
    fn rewrite(&self, command: Command, payload: &[u8]) -> Option<Vec<u8>> {
        match command {
            Command::Query | Command::StmtPrepare => {
                let sql = &payload[1..];
                let mut changed = None;
                if mentions_connection_id(sql) {
                    changed = rewrite_connection_id(sql, self.guard.id);
                }
                let current = changed.as_deref().unwrap_or(sql);
                if command == Command::Query && might_be_kill(current) {
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

    /// The backend thread to kill for client-visible id `id`; `None` when
    /// `id` is not a Torpor session (it may be a backend thread id that
    /// SHOW PROCESSLIST showed, and goes through unchanged).
    fn map_kill(&self, id: u64, query_only: bool) -> Option<u32> {
        let target = self.shared.registry.get(id)?;
        if !query_only {
            target.killed.store(true, Ordering::Release);
        }
        Some(target.backend_thread_id.load(Ordering::Acquire))
    }

    /// Streams a command whose packets are too large to buffer.
    async fn stream_command(&mut self, byte: u8) -> Result<(), Failure> {
        match Command::from_byte(byte) {
            Some(command) if command.reply_kind() != ReplyKind::Authentication => {
                // Sequence ids: the reply follows the command's last packet;
                // the walk learns the real one from the backend's packets.
                self.expect_reply(command, 1);
            }
            _ => {
                return Err(client_protocol(
                    ProtocolError::Unexpected {
                        what: "oversized packet that is not a command",
                    },
                    1,
                ))
            }
        }
        let result = relay_packets(&mut self.client, &mut self.backend.conn, |h| {
            h.len < MAX_PAYLOAD
        })
        .await;
        self.relay_result(result)
    }

    fn relay_result(&self, result: Result<(), RelayError>) -> Result<(), Failure> {
        match result {
            Ok(()) => Ok(()),
            Err(RelayError::From(None)) => Err(SessionError::ClientGone.into()),
            Err(RelayError::From(Some(e))) => Err(SessionError::client_io(e).into()),
            Err(RelayError::To(e)) => Err(self.backend_lost(e)),
        }
    }

    /// Sends the first `unsent` client bytes to the backend, then walks and
    /// forwards the replies the backend owes, in ledger order, until none
    /// is left. The commands go out in the same submission as the read
    /// that waits for their replies.
    async fn drain(&mut self, mut unsent: usize) -> Result<(), Failure> {
        while let Some(front) = self.ledger.front_mut() {
            let walk = match front {
                Pending::Local(bytes) => {
                    self.to_client.extend_from_slice(bytes);
                    self.ledger.pop_front();
                    continue;
                }
                Pending::Reply(walk) => walk,
            };
            let (n, walked) = match walk.walk(&self.backend.conn.rbuf) {
                Ok(step) => step,
                Err(e) => {
                    let reply_seq = Some(walk.next_seq);
                    return Err(Failure {
                        error: SessionError::BackendProtocol(e),
                        reply_seq,
                    });
                }
            };
            self.pass_to_client(n).await?;
            match walked {
                Walked::Done(_) => {
                    self.ledger.pop_front();
                }
                Walked::NeedMore { want } => {
                    // Whatever is complete goes out before we wait.
                    self.flush_client().await?;
                    self.ensure_backend_buffer();
                    let read = if unsent > 0 {
                        let out = std::mem::take(&mut self.client.rbuf);
                        let (written, out, read) = self
                            .backend
                            .conn
                            .send_and_receive(out.slice(0..unsent), want.max(4096))
                            .await;
                        self.client.rbuf = out.into_inner();
                        self.client.consume(unsent);
                        unsent = 0;
                        written.map_err(|e| self.backend_lost(e))?;
                        read
                    } else {
                        self.backend.conn.read_more(want.max(4096)).await
                    };
                    match read {
                        Ok(0) => {
                            let eof = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
                            return Err(self.backend_lost(eof));
                        }
                        Ok(_) => {}
                        Err(e) => return Err(self.backend_lost(e)),
                    }
                }
                Walked::LocalInfile => {
                    debug_assert_eq!(unsent, 0, "a reply started, so its command was sent");
                    self.flush_client().await?;
                    let result =
                        relay_packets(&mut self.client, &mut self.backend.conn, |h| h.len == 0)
                            .await;
                    self.relay_result(result)?;
                }
            }
        }
        // Commands that are owed no reply (COM_STMT_CLOSE) still go out.
        self.forward_run(unsent).await?;
        self.release_backend_buffer();
        Ok(())
    }

    /// Gives the backend connection a large pooled read buffer for the
    /// replies about to stream through, keeping what is buffered.
    fn ensure_backend_buffer(&mut self) {
        let rbuf = &mut self.backend.conn.rbuf;
        if rbuf.capacity() < LARGE_BUFFER / 2 {
            let mut large = self.buffers.take();
            large.extend_from_slice(rbuf);
            *rbuf = large;
        }
    }

    /// Hands the backend connection's read buffer back to the pool while
    /// no reply is owed.
    fn release_backend_buffer(&mut self) {
        if self.backend.conn.rbuf.is_empty() && self.backend.conn.rbuf.capacity() > 0 {
            self.buffers
                .give(std::mem::take(&mut self.backend.conn.rbuf));
        }
    }

    /// Moves the first `n` bytes of the backend's read buffer towards the
    /// client: copied when small (to batch replies), written directly
    /// when large.
    async fn pass_to_client(&mut self, n: usize) -> Result<(), Failure> {
        if n == 0 {
            return Ok(());
        }
        if n <= COPY_LIMIT && self.to_client.len() + n <= 4 * COPY_LIMIT {
            self.to_client.put_slice(&self.backend.conn.rbuf[..n]);
            self.backend.conn.consume(n);
            return Ok(());
        }
        self.flush_client().await?;
        self.client
            .forward_from(&mut self.backend.conn.rbuf, n)
            .await
            .map_err(|e| SessionError::client_io(e).into())
    }

    async fn flush_client(&mut self) -> Result<(), Failure> {
        if self.to_client.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.to_client);
        let (result, mut buf) = self.client.write_all(buf).await;
        buf.clear();
        self.to_client = buf;
        result.map_err(|e| SessionError::client_io(e).into())
    }

    /// Tells the backend we are leaving, so it does not log an aborted
    /// connection.
    async fn quit_backend(&mut self) {
        let mut wire = BytesMut::with_capacity(5);
        write_payload(&mut wire, 0, &[Command::Quit as u8]);
        let _ = self.backend.conn.write_all(wire).await;
    }

    /// COM_CHANGE_USER: authenticate the new user against Torpor's accounts
    /// (switching the client to mysql_native_password if it used another
    /// plugin), then change the backend connection's user with the proven
    /// password and relay the backend's answer.
    async fn change_user(&mut self) -> Result<(), Failure> {
        let (seq, payload) = read_packet(&mut self.client, WHOLE_PACKET_LIMIT)
            .await
            .map_err(|e| Failure::from(SessionError::client_io(e)))?;
        let mut reply_seq = seq.wrapping_add(1);
        let change = ChangeUser::parse(&payload, self.capabilities)
            .map_err(|e| client_protocol(e, reply_seq))?;
        let plugin = change.auth_plugin.as_deref().unwrap_or_default();
        let mut seed = self.seed.clone();
        let mut response = change.auth_response.clone();
        if !plugin.is_empty() && plugin != NATIVE_PASSWORD_PLUGIN.as_bytes() {
            seed = login::new_seed();
            let mut wire = BytesMut::new();
            let mut switch = BytesMut::new();
            AuthSwitch {
                plugin: NATIVE_PASSWORD_PLUGIN.as_bytes().to_vec(),
                data: seed.clone(),
            }
            .encode(&mut switch);
            write_payload(&mut wire, reply_seq, &switch);
            self.client
                .write_all(wire)
                .await
                .0
                .map_err(|e| Failure::from(SessionError::client_io(e)))?;
            let (seq, answer) = read_packet(&mut self.client, WHOLE_PACKET_LIMIT)
                .await
                .map_err(|e| Failure::from(SessionError::client_io(e)))?;
            reply_seq = seq.wrapping_add(1);
            response = answer;
        }
        let Some(password) = self
            .shared
            .users
            .get(&change.user)
            .and_then(|stored| stored.verify(&seed, &response))
        else {
            return Err(Failure {
                error: SessionError::AccessDenied {
                    user: String::from_utf8_lossy(&change.user).into_owned(),
                    host: self.peer.ip().to_string(),
                    using_password: !response.is_empty(),
                },
                reply_seq: Some(reply_seq),
            });
        };
        let backend_change = ChangeUser {
            user: change.user.clone(),
            auth_response: password.respond(&self.backend.seed),
            database: change.database.clone(),
            collation: change.collation,
            auth_plugin: Some(NATIVE_PASSWORD_PLUGIN.as_bytes().to_vec()),
            attributes: change.attributes.clone(),
        };
        let mut command = BytesMut::new();
        backend_change.encode(&mut command, self.backend.capabilities);
        let mut wire = BytesMut::new();
        write_payload(&mut wire, 0, &command);
        self.backend
            .conn
            .write_all(wire)
            .await
            .0
            .map_err(|e| Failure {
                error: SessionError::BackendLost(e),
                reply_seq: Some(reply_seq),
            })?;
        let outcome = finish_auth(&mut self.backend.conn, &password, CHANGE_USER_TIMEOUT).await;
        let ok = outcome.map_err(|error| Failure {
            error,
            reply_seq: Some(reply_seq),
        })?;
        let mut wire = BytesMut::new();
        write_payload(&mut wire, reply_seq, &ok);
        self.client
            .write_all(wire)
            .await
            .0
            .map_err(|e| Failure::from(SessionError::client_io(e)))?;
        debug!(id = self.guard.id, user = %String::from_utf8_lossy(&change.user), "changed user");
        self.user = change.user;
        self.password = password;
        Ok(())
    }
}
