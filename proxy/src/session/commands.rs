//! The command loop: read what the client sends, forward it, and hand the
//! backend's replies back in order.
//!
//! The loop is sequential per session: take every complete command the
//! client has sent (several when it pipelines), forward them in one write,
//! then walk the replies the backend owes until none is left
//! (`super::drain`). A ledger keeps, in order, one entry per reply the
//! client is owed: a reply to forward from the backend (with what Torpor
//! must learn from it), or one Torpor writes itself. Commands that need
//! the whole connection (COM_CHANGE_USER, COM_QUIT, a statement that must
//! first be prepared again) wait until the ledger is empty.
//!
//! Statement ids are the session's own ([`super::statements`]): every
//! command that names a statement is rewritten to the backend
//! connection's id, in place (ids have a fixed width).

use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use torpor_protocol::auth::ProvenPassword;
use torpor_protocol::command::{Command, ReplyKind};
use torpor_protocol::frame::{write_payload, PacketHeader, HEADER_LEN};
use torpor_protocol::reply::ReplyTracker;
use torpor_protocol::{stmt, Capabilities, ProtocolError};
use torpor_replay::classify::{classify, StatementFacts};
use torpor_replay::journal::ReplyDigest;
use torpor_replay::mentions::{mentions, Mentions};
use tracing::info;

mod ledger;

use super::be;
use super::control::SessionControl;
use super::counts::FoundRows;
use super::model::SessionModel;
use super::reply::{ReplyWalk, WHOLE_PACKET_LIMIT};
use super::statements::{BackendStatements, Statements};
use super::transaction::JournalNote;
use super::{report, tell_client, Failure};
use crate::backend::BackendConn;
use crate::buffers::BufferPool;
use crate::client_error::ClientError;
use crate::context::{ConnectionPermit, Shared};
use crate::error::SessionError;
use crate::metrics::{CloseReason, WorkerMetrics};
use crate::net::{Conn, Peer};
use crate::pool::{BackendPool, Lent};
use crate::registry::SessionGuard;
use crate::service::{ClientCount, Service};

/// At most this many bytes of pipelined commands are forwarded before
/// their replies are drained. The backend reads one command at a time and
/// blocks writing replies nobody reads; bounding what is in flight keeps
/// both directions moving.
const PIPELINE_LIMIT: usize = 256 * 1024;

/// Bytes of a streamed command's payload looked at before it is relayed:
/// the command byte and a statement id.
pub(super) const STREAM_HEAD: usize = 5;

/// What Torpor learns from a reply besides forwarding it.
#[derive(Debug)]
pub(super) enum Follow {
    /// Nothing beyond status flags and tracked state.
    Plain,
    /// A COM_QUERY whose text may change untracked state.
    Query {
        /// What the text does.
        facts: StatementFacts,
        /// The text.
        sql: Vec<u8>,
    },
    /// A COM_STMT_PREPARE: the text, to register the statement.
    Prepare {
        /// The statement text.
        sql: Vec<u8>,
    },
    /// An execute (or bulk execute) of client statement `id`.
    Execute {
        /// Client statement id.
        id: u32,
        /// What its text does that Torpor follows (a prepared `LOCK
        /// TABLES`, `SET @x = ?`), if anything.
        facts: Option<Box<StatementFacts>>,
    },
    /// A COM_STMT_FETCH from client statement `id`'s cursor.
    Fetch {
        /// Client statement id.
        id: u32,
    },
    /// A COM_STMT_RESET of client statement `id`.
    StatementReset {
        /// Client statement id.
        id: u32,
    },
    /// COM_RESET_CONNECTION.
    ResetConnection,
    /// A command Torpor sent for itself (switching tracking on, a state
    /// diff): the reply is not forwarded, and an error ends the session.
    Swallow,
    /// Torpor's read-back of a state diff that went out ahead of the
    /// client's commands (debug builds and `verify_replay`): swallowed as
    /// [`Follow::Swallow`], but its bytes are kept and, once it ended,
    /// compared with the state meant; a difference ends the session.
    VerifyDiff {
        /// The state the diff was to bring the connection to.
        expected: Box<torpor_replay::state::SessionState>,
        /// The reply's bytes so far.
        captured: BytesMut,
    },
}

impl Follow {
    /// Whether the reply is Torpor's own, not the client's.
    pub(super) fn is_swallowed(&self) -> bool {
        matches!(self, Follow::Swallow | Follow::VerifyDiff { .. })
    }
}

/// A reply the client is owed, in order.
pub(super) enum Pending {
    /// The backend owes it; it is forwarded.
    Reply {
        /// Where the reply has got to.
        walk: ReplyWalk,
        /// What to learn from it.
        follow: Follow,
        /// What the transaction journal keeps of the command.
        note: JournalNote,
    },
    /// Torpor gives it itself.
    Local(BytesMut),
}

/// How a spell of commands ([`Session::spell`]) ended.
enum Spell {
    /// The session is over (the client quit, or its connection was
    /// released).
    Ended,
    /// The session waits for an idle client (`Session::wait_idle`):
    /// `want` bytes are to be read once it sends.
    Idle(usize),
}

/// What stopped a batch of commands.
pub(super) enum Batch {
    /// Everything buffered was dispatched (or the pipeline limit reached).
    Dispatched,
    /// The client said COM_QUIT.
    Quit,
    /// COM_CHANGE_USER is next and needs the connection to itself.
    ChangeUser,
    /// The next command names statement `id`, which the backend
    /// connection has not prepared: prepare it, then go on.
    Prepare {
        /// Client statement id.
        id: u32,
    },
}

/// A logged-in client and its backend connection.
pub struct Session {
    pub(super) client: Conn,
    /// The backend connection serving the session now: attached for a
    /// transaction (for a statement in autocommit), or while something
    /// pins the session; `None` between them.
    pub(super) backend: Option<Lent<BackendConn>>,
    /// The capabilities of the session's backend connections (all alike).
    pub(super) backend_caps: Capabilities,
    /// The worker's pool of backend connections to the session's service.
    pub(super) pool: Rc<BackendPool<BackendConn>>,
    /// Where the session keeps its free backend connection between
    /// statements while nobody else needs it ([`crate::pool::Keep`]).
    pub(super) keep: Rc<crate::pool::Keep<BackendConn>>,
    /// The key of the session's connections in the pool
    /// ([`Session::pool_key`]).
    pub(super) pool_key: Rc<crate::pool::PoolKey>,
    /// The state the session last gave the pool with a connection, shared
    /// ([`Session::state_to_pool`]).
    pub(super) pooled_state: Option<Rc<torpor_replay::state::SessionState>>,
    /// The service the session's user routes to.
    pub(super) service: Arc<Service>,
    /// Counts the session among its service's clients while it lives.
    _client_count: ClientCount,
    /// The session's `max_connections` slot.
    _permit: ConnectionPermit,
    /// When the client logged in (for the line that logs its close).
    logged_in: Instant,
    /// The pins the registry shows for this session
    /// ([`super::model::SessionModel::pin_mask`]), so that only a change
    /// is published.
    pub(super) pins_published: u16,
    pub(super) capabilities: Capabilities,
    pub(super) user: Vec<u8>,
    /// The host pattern of the backend account the user logged in as
    /// (`None`: a configured user).
    pub(super) account_host: Option<String>,
    pub(super) password: ProvenPassword,
    pub(super) seed: Vec<u8>,
    pub(super) collation: u8,
    /// The client's connection attributes, packed (a held session keeps
    /// them for the backend connections it opens).
    pub(super) attributes: torpor_protocol::handshake::PackedAttributes,
    pub(super) max_packet_size: u32,
    pub(super) guard: SessionGuard,
    pub(super) shared: Arc<Shared>,
    /// What `shared.settings()` gives, kept for the statements' reads
    /// of their timeouts.
    pub(super) settings: crate::context::SettingsCache,
    pub(super) peer: Peer,
    pub(super) control: Rc<SessionControl>,
    pub(super) buffers: Rc<BufferPool>,
    /// The worker's small buffers: the client's read buffer and
    /// `to_client` come from there when the client sends, and go back
    /// when it is idle.
    pub(super) small_buffers: Rc<BufferPool>,
    /// Waits for the client in a row that were short (see
    /// `Session::waits_idle`).
    pub(super) short_waits: u8,
    pub(super) ledger: VecDeque<Pending>,
    /// Bytes for the client, written when the ledger is drained or before
    /// waiting on the backend.
    pub(super) to_client: BytesMut,
    /// What Torpor knows of the session's state.
    pub(super) model: SessionModel,
    /// The session's prepared statements.
    pub(super) statements: Statements,
    /// The worker's metrics.
    pub(super) metrics: Rc<WorkerMetrics>,
    /// When the current batch of commands was taken up: their latency
    /// runs from here to the end of each reply.
    pub(super) batch_started: Instant,
    /// When the session's last wait for its client ended, until a batch
    /// takes it as its start.
    pub(super) woke_at: Option<Instant>,
    /// The digest of the last journalled reply, kept for the next one: a
    /// transaction digests every reply, and a new box each was a
    /// `malloc` and a `free` (~150 instructions a query). Dropped when
    /// the client goes idle.
    pub(super) spare_digest: Option<Box<ReplyDigest>>,
    /// The boxes of journal notes whose replies ended, kept for the next
    /// commands' notes: every statement of a transaction is journalled,
    /// and a new box each was a `malloc` and a `free`. A `RefCell`: a
    /// note is made while the command's bytes are borrowed from the
    /// client's buffer. Dropped when the client goes idle.
    // The boxes themselves are what is kept (a note is a box): a `Vec` of
    // the values would need a new box for each note again.
    #[allow(clippy::vec_box)]
    pub(super) journal_shells: std::cell::RefCell<Vec<Box<super::transaction::Recorded>>>,
    /// What `ROW_COUNT()` and `FOUND_ROWS()` read for the session, and
    /// whether its backend connection still says so.
    pub(super) counts: super::counts::Counts,
    /// The open transaction's statements and their results, to replay it
    /// if its backend connection dies.
    pub(super) journal: torpor_replay::journal::TransactionJournal,
    /// A statement of the current batch may change accounts: logins wait
    /// until it ran and the accounts were read again (the guard's drop).
    pub(super) accounts_change: std::cell::RefCell<Option<crate::accounts::keeper::AccountChange>>,
    /// The client sat idle past its `wait_timeout`, or left a command
    /// half sent past `net_read_timeout`: the session ends with a reset,
    /// as MariaDB 10.11 closes a connection it gave up waiting for.
    pub(super) reset_on_close: bool,
    /// The last statement was a `COMMIT`/`ROLLBACK` that releases the
    /// connection: MariaDB closed it after its answer; the session ends.
    pub(super) released: bool,
    /// What the session left unread on the connection it gave back last
    /// ([`super::left`]).
    pub(super) left: Option<std::rc::Rc<super::left::Unread>>,
}

pub(super) fn client_protocol(error: ProtocolError, reply_seq: u8) -> Failure {
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
        permit: ConnectionPermit,
        guard: SessionGuard,
        shared: Arc<Shared>,
        peer: Peer,
        parts: super::WorkerParts,
    ) -> Session {
        let super::WorkerParts {
            index,
            control,
            buffers,
            small_buffers,
            pools: _,
            metrics,
        } = parts;
        let service = authenticated.service;
        // The pool login borrowed from (the worker's, for this service).
        let pool = authenticated.pool;
        let pool_key = Rc::new(crate::pool::PoolKey {
            user: authenticated.user.clone(),
            account_host: authenticated.account_host.clone(),
            capabilities: authenticated.backend_caps,
            collation: authenticated.collation,
        });
        guard.entry.backend_thread_id.store(
            authenticated.backend.as_ref().map_or(0, |b| b.thread_id),
            Ordering::Release,
        );
        guard.entry.service.store(service.index, Ordering::Relaxed);
        Session {
            client,
            capabilities: authenticated.capabilities,
            user: authenticated.user,
            account_host: authenticated.account_host,
            password: authenticated.password,
            seed: authenticated.seed,
            collation: authenticated.collation,
            attributes: authenticated.attributes,
            max_packet_size: authenticated.max_packet_size,
            backend_caps: authenticated.backend_caps,
            backend: authenticated.backend,
            pool,
            keep: Rc::default(),
            pool_key,
            pooled_state: None,
            _client_count: ClientCount::new(Arc::clone(&service), index),
            _permit: permit,
            logged_in: Instant::now(),
            service,
            pins_published: 0,
            guard,
            peer,
            control,
            buffers,
            small_buffers,
            short_waits: 0,
            ledger: VecDeque::new(),
            to_client: BytesMut::new(),
            model: authenticated.model,
            statements: Statements::default(),
            metrics,
            batch_started: Instant::now(),
            woke_at: None,
            spare_digest: None,
            journal_shells: std::cell::RefCell::new(Vec::new()),
            counts: Default::default(),
            accounts_change: std::cell::RefCell::new(None),
            journal: torpor_replay::journal::TransactionJournal::new(
                shared.settings().transaction_replay_max_bytes,
            ),
            left: None,
            settings: shared.settings_cache(),
            shared,
            reset_on_close: false,
            released: false,
        }
    }

    /// Runs the command loop until the client quits or something fails,
    /// then closes both connections.
    ///
    /// Not an `async fn`: one moves its argument into a local of its
    /// future and keeps the argument's place too, so the session would be
    /// held twice for as long as its client stays. The block's capture is
    /// the session's only place.
    pub fn run(self) -> impl std::future::Future<Output = CloseReason> {
        let mut session = self;
        async move {
            // The login's connection goes back to the pool until the first
            // query: an idle session holds none.
            session.release_if_free();
            session.guard.entry.set_client_fd(session.client.raw_fd());
            let result = session.command_loop().await;
            // Boxed: run once, at the end, and not worth a place in the
            // future that waits for the client.
            Box::pin(session.close(result)).await
        }
    }

    /// Ends the session after its command loop ended with `result`: tells
    /// the client what it is owed, gives back or closes the backend
    /// connection, and closes the client's.
    async fn close(mut self, result: Result<(), Failure>) -> CloseReason {
        // A session that ended between commands leaves a clean backend
        // connection, which goes back to the pool.
        let clean = match &result {
            Ok(()) => true,
            Err(failure) => {
                matches!(
                    failure.error,
                    SessionError::ClientGone | SessionError::Shutdown
                ) && self.ledger.is_empty()
            }
        };
        let reason = CloseReason::of(result.as_ref().err().map(|f| &f.error));
        if let Err(failure) = result {
            report(self.guard.id, self.peer, &failure.error, "command");
            match (&failure.error, failure.reply_seq) {
                // MariaDB sends a killed connection nothing of its own:
                // what the backend said before it went (the ERR 1927 of
                // a connection that killed itself) is all it gets.
                (SessionError::Killed, _) => {
                    let _ = self.flush_client().await;
                }
                (_, Some(seq)) => {
                    let _ = self.flush_client().await;
                    tell_client(&mut self.client, &failure.error, seq).await;
                }
                (_, None) => {}
            }
        }
        self.finish_backend(clean && !self.shared.shutdown.is_stopping())
            .await;
        // The client's buffers go back to the worker's pool (empty ones
        // only: see `BufferPool::give`), for the next login: dropped
        // here, a connection that logged in, ran a query and quit took
        // two 4 KiB buffers from the allocator (~650 instructions, with
        // their frees).
        self.small_buffers
            .give(std::mem::take(&mut self.client.rbuf));
        let to_client = std::mem::take(&mut self.to_client);
        super::drain::give_reply_buffer(&self.small_buffers, &self.buffers, to_client);
        self.count_traffic();
        self.metrics.client_closed(reason);
        // No KILL may touch the socket once it closes (its number is
        // reused).
        self.guard.entry.clear_client_fd();
        // The lifecycle's last line: who, how long, and why it ended
        // (never a password or query text).
        info!(
            id = self.guard.id,
            peer = %self.peer,
            user = %String::from_utf8_lossy(&self.user),
            service = %self.service.name,
            reason = reason.name(),
            duration_ms = self.logged_in.elapsed().as_millis() as u64,
            "connection closed"
        );
        if self.reset_on_close {
            // MariaDB 10.11 resets a connection it stopped waiting for
            // (past wait_timeout, even mid-command), with nothing sent: the
            // socket closes when the session drops.
            super::hangup::reset_on_close(self.client.raw_fd());
            return reason;
        }
        let Session { client, .. } = self;
        client.close().await;
        reason
    }

    /// Adds what the client connection carried since the last call to
    /// the worker's metrics.
    pub(super) fn count_traffic(&mut self) {
        let (received, sent) = self.client.take_traffic();
        self.metrics
            .client_bytes(self.service.index, received, sent);
    }

    /// The command loop: spells of commands, and the waits of an idle
    /// client between them.
    ///
    /// A spell's future (the per-command path: attach, dispatch, drain
    /// and what they await) is several KiB, and is boxed so that an idle
    /// client does not hold it: it ends when the session would wait for
    /// a client that is not busy, and the wait happens here, holding only
    /// the session. One allocation per spell, not per command: a client
    /// that sends command after command (see `Session::waits_idle`)
    /// stays in one spell.
    async fn command_loop(&mut self) -> Result<(), Failure> {
        loop {
            match Box::pin(self.spell()).await? {
                Spell::Ended => return Ok(()),
                Spell::Idle(want) => {
                    // An idle client holds no spare digest, note shells or
                    // journal buffers (its memory is counted per idle
                    // client).
                    self.spare_digest = None;
                    self.journal_shells = std::cell::RefCell::new(Vec::new());
                    self.journal.release_spares();
                    self.wait_idle(want).await?
                }
            }
        }
    }

    /// Runs commands until the session ends, or until it would wait for
    /// an idle client ([`Spell::Idle`]).
    async fn spell(&mut self) -> Result<Spell, Failure> {
        loop {
            if self.guard.entry.killed.load(Ordering::Acquire) {
                return Err(Failure {
                    error: SessionError::Killed,
                    reply_seq: self.client_waits().then_some(1),
                });
            }
            // MariaDB refuses a command over max_allowed_packet as soon as
            // its header is in (see super::relay).
            if let Some(refusal) =
                PacketHeader::parse(&self.client.rbuf).and_then(|header| self.too_large(header))
            {
                return Err(refusal);
            }
            let Some(want) = self.bytes_missing() else {
                self.batch_started = self.woke_at.take().unwrap_or_else(Instant::now);
                if let Err(failure) = self.attach().await {
                    // A failed wake fails the command, not the session;
                    // so does a backend that stayed unreachable.
                    if matches!(
                        failure.error,
                        SessionError::WakeFailed { .. } | SessionError::BackendDown { .. }
                    ) && self.ledger.is_empty()
                        && self.refuse_front_command(&failure.error)
                    {
                        report(self.guard.id, self.peer, &failure.error, "attach");
                        continue;
                    }
                    // Nor does a transaction that could not be replayed.
                    self.refuse_after_replay(failure)?;
                    continue;
                }
                let (batch, run) = self.dispatch().await?;
                if let Err(failure) = self.drain(run).await {
                    // A transaction's connection that died under a command
                    // may be replayed, the command run again; otherwise
                    // the commands cut in flight get errors and the
                    // session goes on where it can.
                    if let Err(failure) = Box::pin(self.after_lost_reply(failure)).await {
                        self.answer_cut(failure).await?;
                    }
                    continue;
                }
                if self.guard.entry.killed.load(Ordering::Acquire) {
                    // Killed (by itself, or while its reply came): what it
                    // is owed goes out, then the session ends.
                    return Err(Failure {
                        error: SessionError::Killed,
                        reply_seq: None,
                    });
                }
                if self.released {
                    // `COMMIT RELEASE` (or `completion_type = RELEASE`):
                    // the client gets its answer, then the close MariaDB
                    // gives; the backend connection, closed by the server,
                    // is forgotten.
                    self.flush_client().await?;
                    self.drop_backend();
                    return Ok(Spell::Ended);
                }
                if self.model.tracking_dirty || self.model.unexplained_change {
                    // Tested here, not in the call: a future made, polled
                    // and dropped on every batch for the rare one that
                    // needs it.
                    self.after_batch().await?;
                }
                // The accounts are read again now that the statement ran.
                drop(self.accounts_change.take());
                match batch {
                    Batch::Dispatched => {}
                    Batch::Quit => return Ok(Spell::Ended),
                    Batch::ChangeUser => Box::pin(self.change_user()).await?,
                    Batch::Prepare { id } => Box::pin(self.prepare_again(id)).await?,
                }
                self.release_if_free();
                continue;
            };
            if self.waits_idle() {
                return Ok(Spell::Idle(want));
            }
            self.wait_for_client(want).await?;
        }
    }

    /// Whether the client is in the middle of sending a command (so that
    /// an ERR would be read as its reply).
    fn client_waits(&self) -> bool {
        !self.client.rbuf.is_empty()
    }

    /// `None` when a command can be dispatched now; otherwise how many
    /// more bytes to read first.
    pub(super) fn bytes_missing(&self) -> Option<usize> {
        let buf = &self.client.rbuf;
        let Some(header) = PacketHeader::parse(buf) else {
            return Some(4096.max(HEADER_LEN - buf.len()));
        };
        let streamable = header.len > WHOLE_PACKET_LIMIT || header.is_continued();
        if buf.len() >= header.total_len() || (streamable && buf.len() >= HEADER_LEN + STREAM_HEAD)
        {
            None
        } else {
            Some(header.total_len().min(WHOLE_PACKET_LIMIT) - buf.len().min(header.total_len()))
        }
    }

    /// Forwards every complete command buffered (up to the pipeline
    /// limit), queueing the replies they are owed. Returns why it stopped
    /// and how many bytes at the front of the client's buffer are still to
    /// be sent to the backend (sent by [`Session::drain`] together with
    /// the read for their replies).
    async fn dispatch(&mut self) -> Result<(Batch, usize), Failure> {
        // Commands forwarded as they are go straight from the read buffer:
        // `run` bytes at its front are due to the backend.
        let mut run = self.closes_first();
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
                return Err(client_protocol(
                    ProtocolError::OutOfOrder {
                        expected: 0,
                        got: header.seq,
                    },
                    header.seq.wrapping_add(1),
                ));
            }
            if self.too_large(header).is_some() {
                // Refused once the commands before it are answered.
                break Batch::Dispatched;
            }
            let whole = buf.len() >= header.total_len();
            if header.is_continued() || (!whole && header.len > WHOLE_PACKET_LIMIT) {
                if buf.len() < HEADER_LEN + STREAM_HEAD {
                    break Batch::Dispatched;
                }
                if self.names_statement_being_prepared(&buf[HEADER_LEN..HEADER_LEN + STREAM_HEAD]) {
                    // A direct execute too large to buffer: it streams
                    // once the prepare-OK it depends on is in.
                    break Batch::Dispatched;
                }
                // A command too large to buffer: its packets go through as
                // they arrive, looked at only for the command byte and the
                // statement id.
                self.forward_run(run).await?;
                run = 0;
                if let Some(id) = self.stream_command().await? {
                    if self.ledger.is_empty() {
                        return Ok((Batch::Prepare { id }, 0));
                    }
                    break Batch::Dispatched;
                }
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
                // A sleeping service is not woken to answer a ping.
                Command::Ping if self.backend.is_none() => {
                    self.forward_run(run).await?;
                    run = 0;
                    self.client.consume(total);
                    self.counts.pinged_locally();
                    self.reply_ok_locally();
                    continue;
                }
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
                    let refusal = ClientError::for_session_error(&SessionError::Unsupported(
                        "replication commands",
                    ))
                    .unwrap_or_else(ClientError::unknown_command);
                    self.reply_locally(&refusal);
                    continue;
                }
                Command::StmtExecute
                | Command::StmtBulkExecute
                | Command::StmtFetch
                | Command::StmtReset
                | Command::StmtClose
                | Command::StmtSendLongData => {
                    match self.statement_command(command, run, total)? {
                        StatementStep::Forward => run += total,
                        StatementStep::Consumed => {
                            // The command went nowhere (unknown id, close
                            // of a statement this connection never had):
                            // drop it from the buffer behind the run.
                            self.forward_run(run).await?;
                            run = 0;
                            self.client.consume(total);
                        }
                        StatementStep::Rewritten(payload) => {
                            self.forward_run(run).await?;
                            run = 0;
                            self.client.consume(total);
                            self.send_to_backend(&payload).await?;
                        }
                        StatementStep::AfterPrepare => break Batch::Dispatched,
                        StatementStep::PrepareFirst(id) => {
                            if run == 0 && self.ledger.is_empty() {
                                return Ok((Batch::Prepare { id }, 0));
                            }
                            break Batch::Dispatched;
                        }
                    }
                    continue;
                }
                _ => {}
            }
            #[cfg(debug_assertions)]
            panic_if_a_test_asks(command, payload);
            // One pass over the text answers every question asked of it
            // below.
            let mentioned = match command {
                Command::Query | Command::StmtPrepare => {
                    mentions(payload.get(1..).unwrap_or_default())
                }
                _ => Mentions::default(),
            };
            if self.kills_an_idle_session(command, payload, mentioned) {
                // The target has no backend connection now: nothing runs
                // to interrupt; a KILL CONNECTION marked it (it ends at its
                // next command). Answered here.
                self.forward_run(run).await?;
                run = 0;
                self.client.consume(total);
                self.reply_ok_locally();
                continue;
            }
            if let Some(rewritten) = self.rewrite(command, payload, mentioned) {
                // What is prepared again elsewhere is what was sent: the
                // rewritten text.
                let mentioned = mentions(rewritten.get(1..).unwrap_or_default());
                let follow = self.follow_for(command, &rewritten, mentioned);
                let note = self.note_for(command, &rewritten);
                let found_rows = found_rows(command, &rewritten, mentioned);
                self.forward_run(run).await?;
                run = 0;
                self.client.consume(total);
                self.expect_statement_reply(command, follow, note, found_rows);
                self.send_to_backend(&rewritten).await?;
                continue;
            }
            let follow = self.follow_for(command, payload, mentioned);
            let note = self.note_for(command, payload);
            let found_rows = found_rows(command, payload, mentioned);
            self.expect_statement_reply(command, follow, note, found_rows);
            run += total;
        };
        Ok((result, run))
    }

    /// Queues what the backend connection must get before the client's
    /// next commands: Torpor's tracking setup (reply swallowed), and
    /// COM_STMT_CLOSE for statements it should drop (evicted, or closed by
    /// the client while elsewhere). Returns the bytes now due at the front.
    fn closes_first(&mut self) -> usize {
        let Some(backend) = self.backend.as_mut() else {
            return 0;
        };
        if backend.to_close.is_empty() && !backend.needs_tracking && backend.state_diff.is_empty() {
            return 0;
        }
        let needs_tracking = std::mem::replace(&mut backend.needs_tracking, false);
        if needs_tracking {
            // Torpor's statement runs first there: what `ROW_COUNT()`
            // reads on the connection is its (a state diff told the
            // counts so in `align`).
            self.counts.left_connection();
        }
        let to_close: Vec<u32> = backend.to_close.drain(..).collect();
        let state_diff = std::mem::take(&mut backend.state_diff);
        let mut wire = BytesMut::new();
        let query = |wire: &mut BytesMut, sql: &str| {
            let mut payload = Vec::with_capacity(sql.len() + 1);
            payload.push(Command::Query as u8);
            payload.extend_from_slice(sql.as_bytes());
            write_payload(wire, 0, &payload);
        };
        if needs_tracking {
            query(&mut wire, crate::backend::TRACKING_INIT);
            self.expect_reply(Command::Query, Follow::Swallow, JournalNote::Neutral);
        }
        if !state_diff.is_empty() {
            // The session's state, brought over in the client's write (see
            // `Session::align`); then, where replays are verified, read
            // back before the client's commands run.
            for sql in &state_diff {
                query(&mut wire, sql);
                self.expect_reply(Command::Query, Follow::Swallow, JournalNote::Neutral);
            }
            if self.settings.load().verify_replay {
                let expected = Box::new(self.model.state.clone());
                query(&mut wire, &super::attach::verify_sql(&expected));
                let follow = Follow::VerifyDiff {
                    expected,
                    captured: BytesMut::new(),
                };
                self.expect_reply(Command::Query, follow, JournalNote::Neutral);
            }
        }
        for id in to_close {
            let mut payload = [0u8; 5];
            payload[0] = Command::StmtClose as u8;
            payload[1..].copy_from_slice(&id.to_le_bytes());
            write_payload(&mut wire, 0, &payload);
        }
        // Put them in front of what the client sent: they go out in the
        // same write as its commands.
        let n = wire.len();
        wire.extend_from_slice(&self.client.rbuf);
        self.client.rbuf = wire;
        n
    }

    /// Queues an OK reply Torpor gives itself.
    fn reply_ok_locally(&mut self) {
        let mut wire = BytesMut::new();
        let ok = torpor_protocol::packets::Ok {
            status: torpor_protocol::packets::ServerStatus(self.last_status()),
            ..Default::default()
        };
        torpor_protocol::packets::write_ok(&mut wire, 1, ok);
        self.ledger.push_back(Pending::Local(wire));
    }

    /// Status flags as the session has them now (for replies Torpor
    /// writes itself).
    pub(super) fn last_status(&self) -> u16 {
        let mut status = 0;
        if self.model.in_transaction() {
            status |= torpor_protocol::packets::ServerStatus::IN_TRANS;
        }
        if self
            .model
            .state
            .variables
            .get("autocommit")
            .is_none_or(|v| v == "ON")
        {
            status |= torpor_protocol::packets::ServerStatus::AUTOCOMMIT;
        }
        status
    }
}

/// Debug builds only (so never in a release): a test's way to make a
/// session panic while it holds a backend connection, to see what a bug
/// that panics leaves behind. It takes both the statement
/// `SELECT 'torpor-test-panic'` and `TORPOR_TEST_PANIC=1` in the
/// environment (read only when the statement comes).
/// What `payload` (a command's, its first byte the command) does to
/// `FOUND_ROWS()`: a text query's as its text tells (see
/// `super::counts`); any other command's is not a statement's.
fn found_rows(command: Command, payload: &[u8], mentioned: Mentions) -> FoundRows {
    match command {
        Command::Query => {
            super::counts::found_rows(payload.get(1..).unwrap_or_default(), mentioned.found_rows())
        }
        _ => FoundRows::Unknown,
    }
}

#[cfg(debug_assertions)]
fn panic_if_a_test_asks(command: Command, payload: &[u8]) {
    if command == Command::Query
        && payload.get(1..) == Some(&b"SELECT 'torpor-test-panic'"[..])
        && std::env::var_os("TORPOR_TEST_PANIC").is_some_and(|v| v == "1")
    {
        panic!("torpor-test-panic: a panic a test asked for");
    }
}

/// What to do with a statement command.
enum StatementStep {
    /// Its id was rewritten in place: forward it with the run.
    Forward,
    /// It goes nowhere (a reply, if any, is queued locally).
    Consumed,
    /// Send this payload instead.
    Rewritten(Vec<u8>),
    /// The statement must first be prepared on this connection.
    PrepareFirst(u32),
    /// It names the statement prepared last, whose prepare's reply is
    /// still owed: it waits for the next batch.
    AfterPrepare,
}
