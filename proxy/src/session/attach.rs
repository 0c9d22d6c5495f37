//! Keeping a session on a working backend connection: noticing that its
//! connection died while idle, opening a new one and replaying the
//! session's state onto it, preparing statements again where they are
//! missing, and reading back state the server does not report (user
//! variables).
//!
//! A session moves only while nothing pins it ([`super::model`]); a pinned
//! session whose connection died gets an error, as it would from MariaDB.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;
use torpor_protocol::command::{Command, ReplyKind};
use torpor_protocol::frame::{read_payload, write_payload, PacketHeader, HEADER_LEN};
use torpor_protocol::reply::{PacketClass, PrepareOk, ReplyTracker, Step};
use torpor_protocol::ProtocolError;
use torpor_replay::state::SessionState;
use tracing::{debug, info};

use super::commands::{Pending, Session};
use super::Failure;
use crate::backend::{self, read_packet, BackendConn, Login, QueryResult};
use crate::error::{BackendErr, SessionError};

/// A backend connection idle for longer than this is checked before it
/// is used (one non-blocking peek): a KILL or a restart in between is
/// noticed before a command is sent into a dead socket.
const CHECK_AFTER_IDLE: Duration = Duration::from_millis(1);

/// Whether the backend closed a connection: a non-blocking peek sees the
/// end of the stream (or an error) instead of "nothing to read".
fn backend_closed(fd: std::os::fd::RawFd) -> bool {
    let mut byte = 0u8;
    // SAFETY: recv into one byte of our stack with MSG_PEEK | MSG_DONTWAIT
    // only reads the socket's state; the fd is owned by this session.
    let n = unsafe {
        libc::recv(
            fd,
            std::ptr::addr_of_mut!(byte).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match n {
        0 => true,
        n if n > 0 => true, // unsolicited bytes: the connection is out of step
        _ => {
            let error = std::io::Error::last_os_error();
            error.kind() != std::io::ErrorKind::WouldBlock
        }
    }
}

impl Session {
    /// Before a command: makes sure the backend connection is alive, or
    /// replaces it when the session may move.
    pub(super) async fn ensure_live_backend(&mut self) -> Result<(), Failure> {
        if self.backend_idle_since.elapsed() < CHECK_AFTER_IDLE || !self.ledger.is_empty() {
            return Ok(());
        }
        // A client that is leaving needs no backend.
        if self.client.rbuf.get(HEADER_LEN) == Some(&(Command::Quit as u8)) {
            return Ok(());
        }
        if !backend_closed(self.backend.conn.raw_fd()) {
            return Ok(());
        }
        if self.guard.entry.killed.load(Ordering::Acquire) {
            return Err(Failure {
                error: SessionError::Killed,
                reply_seq: Some(1),
            });
        }
        let pins = self.model.pins();
        if !pins.is_empty() {
            let names: Vec<&str> = pins.iter().map(|p| p.name()).collect();
            info!(id = self.guard.id, pins = ?names, "backend connection lost while pinned");
            let eof = std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "backend closed while pinned",
            );
            return Err(Failure {
                error: SessionError::BackendLost(eof),
                reply_seq: Some(1),
            });
        }
        self.reconnect().await.map_err(|error| Failure {
            error,
            reply_seq: Some(1),
        })
    }

    /// Opens a new backend connection and replays the session's state onto
    /// it: schema at login, then variables, user variables and SQL prepared
    /// statements. Statements prepared with the binary protocol follow
    /// lazily, when first used.
    pub(super) async fn reconnect(&mut self) -> Result<(), SessionError> {
        let schema = self.model.state.schema.clone();
        let login = Login {
            user: &self.user,
            password: &self.password,
            capabilities: self.capabilities,
            collation: self.collation,
            database: schema.as_deref().map(str::as_bytes),
            attributes: &self.attributes,
            max_packet_size: self.max_packet_size,
        };
        let (mut fresh, _ok) = backend::connect(
            self.shared.backend_addr,
            &login,
            self.shared.connect_timeout,
        )
        .await?;
        let start = SessionState {
            schema,
            ..SessionState::default()
        };
        let statements = self
            .model
            .state
            .diff_from(&start, &self.model.baseline)
            .map_err(|_| {
                SessionError::BackendLost(std::io::Error::other("session state cannot be replayed"))
            })?;
        for statement in &statements {
            match backend::run_query(&mut fresh, statement).await? {
                QueryResult::Error(payload) => {
                    return Err(SessionError::BackendRefused(BackendErr { payload }))
                }
                QueryResult::Ok(_) | QueryResult::Rows(_) => {}
            }
        }
        if cfg!(debug_assertions) || self.shared.config.verify_replay {
            verify_replay(&mut fresh, &self.model.state).await?;
        }
        let old = std::mem::replace(&mut self.backend, fresh);
        old.conn.close().await;
        self.guard
            .entry
            .backend_thread_id
            .store(self.backend.thread_id, Ordering::Release);
        self.backend_idle_since = std::time::Instant::now();
        debug!(
            id = self.guard.id,
            thread = self.backend.thread_id,
            replayed = statements.len(),
            "moved to a new backend connection"
        );
        Ok(())
    }

    /// After a batch: reads back what the server does not report.
    pub(super) async fn after_batch(&mut self) -> Result<(), Failure> {
        if self.model.tracking_dirty {
            // The client changed session_track_* (or reset the session):
            // Torpor's own tracking goes back on, the client's settings are
            // kept in the model and applied to what it is told.
            self.backend.needs_tracking = true;
            backend::ensure_tracking(&mut self.backend).await?;
            self.model.tracking_dirty = false;
            self.backend_idle_since = std::time::Instant::now();
        }
        if !(self.model.user_variables_dirty || self.model.unexplained_change) {
            return Ok(());
        }
        let variables = backend::read_user_variables(&mut self.backend)
            .await
            .map_err(Failure::from)?;
        self.model.user_variables_read(variables);
        self.backend_idle_since = std::time::Instant::now();
        Ok(())
    }

    /// Prepares client statement `id` on the current backend connection
    /// (it was prepared on another one), before the command at the front
    /// of the client's buffer, which names it, goes out. If the backend
    /// refuses (the table is gone), that command gets the refusal.
    pub(super) async fn prepare_again(&mut self, id: u32) -> Result<(), Failure> {
        let Some(sql) = self.statements.get(id).map(|s| s.sql.clone()) else {
            return Ok(());
        };
        match prepare_on(&mut self.backend, &sql)
            .await
            .map_err(Failure::from)?
        {
            Ok(prepared) => {
                let evicted = self.backend.statements.insert(id, prepared.statement_id);
                self.backend.to_close.extend(evicted);
                Ok(())
            }
            Err(error) => {
                // The command that needed the statement is answered with
                // the backend's refusal instead of being sent.
                let front = read_payload(&self.client.rbuf, usize::MAX).ok().flatten();
                if let Some(front) = front {
                    let command = front.data.first().copied().and_then(Command::from_byte);
                    let consumed = front.consumed;
                    self.client.consume(consumed);
                    if command != Some(Command::StmtSendLongData) {
                        let mut wire = BytesMut::new();
                        write_payload(&mut wire, 1, &error.payload);
                        self.ledger.push_back(Pending::Local(wire));
                        self.drain(0).await?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// Reads back, in one round trip, what a replay set — the schema and every
/// variable that differs from the baseline — plus the user variables, and
/// compares them with the state that was meant. Runs in debug builds (so
/// in every test) and with `verify_replay = true`.
async fn verify_replay(
    backend: &mut BackendConn,
    state: &SessionState,
) -> Result<(), SessionError> {
    let names: Vec<&String> = state.variables.keys().collect();
    let mut sql = String::from("SELECT DATABASE()");
    for name in &names {
        sql.push_str(&format!(
            ", @@SESSION.{}",
            torpor_replay::state::quote_ident(name)
        ));
    }
    let rows = match backend::run_query(backend, &sql).await? {
        QueryResult::Rows(rows) => rows,
        QueryResult::Error(payload) => {
            return Err(SessionError::BackendRefused(BackendErr { payload }))
        }
        QueryResult::Ok(_) => Vec::new(),
    };
    let row = rows.into_iter().next().unwrap_or_default();
    let text = |v: Option<&Option<Vec<u8>>>| {
        v.and_then(|v| v.as_deref()).map_or_else(
            || "NULL".to_string(),
            |b| String::from_utf8_lossy(b).into_owned(),
        )
    };
    let mut mismatches = Vec::new();
    let schema = text(row.first());
    if state.schema.as_deref().unwrap_or("NULL") != schema {
        mismatches.push(format!("schema: want {:?}, have {schema}", state.schema));
    }
    for (i, name) in names.iter().enumerate() {
        let have = text(row.get(i + 1));
        let want = &state.variables[*name];
        if normalized(want) != normalized(&have) {
            mismatches.push(format!("{name}: want {want}, have {have}"));
        }
    }
    let users = backend::read_user_variables(backend).await?;
    if users != state.user_variables {
        mismatches.push(format!(
            "user variables: want {:?}, have {users:?}",
            state.user_variables
        ));
    }
    if mismatches.is_empty() {
        return Ok(());
    }
    tracing::error!(
        ?mismatches,
        "replayed session state differs from the session's"
    );
    Err(SessionError::BackendLost(std::io::Error::other(
        "replayed session state does not match",
    )))
}

/// A variable's value as text, with the spellings of a boolean made one
/// (tracking reports `ON`, `SELECT @@x` gives `1`).
fn normalized(value: &str) -> String {
    match value.to_ascii_uppercase().as_str() {
        "ON" | "1" | "TRUE" => "1".to_string(),
        "OFF" | "0" | "FALSE" => "0".to_string(),
        other => other.to_string(),
    }
}

/// Prepares `sql` on `backend`, reading the whole reply. The outer error
/// is the connection failing; the inner one the backend refusing.
async fn prepare_on(
    backend: &mut BackendConn,
    sql: &[u8],
) -> Result<Result<PrepareOk, BackendErr>, SessionError> {
    let mut payload = Vec::with_capacity(sql.len() + 1);
    payload.push(Command::StmtPrepare as u8);
    payload.extend_from_slice(sql);
    let mut wire = BytesMut::with_capacity(payload.len() + HEADER_LEN);
    write_payload(&mut wire, 0, &payload);
    backend
        .conn
        .write_all(wire)
        .await
        .0
        .map_err(SessionError::BackendLost)?;
    let mut tracker = ReplyTracker::new(ReplyKind::Prepare, backend.capabilities).ok_or(
        SessionError::BackendProtocol(ProtocolError::Unexpected { what: "reply kind" }),
    )?;
    let mut prepared = None;
    loop {
        let (seq, packet) = read_packet(&mut backend.conn, 16 << 20)
            .await
            .map_err(SessionError::BackendLost)?;
        let header = PacketHeader {
            len: packet.len().min(torpor_protocol::MAX_PAYLOAD - 1),
            seq,
        };
        let step = tracker
            .on_packet(header, &packet)
            .map_err(SessionError::BackendProtocol)?;
        match tracker.last_packet() {
            PacketClass::Err => return Ok(Err(BackendErr { payload: packet })),
            PacketClass::PrepareOk => prepared = tracker.prepare_ok(),
            _ => {}
        }
        if matches!(step, Step::Done(_)) {
            return prepared.map(Ok).ok_or(SessionError::BackendProtocol(
                ProtocolError::Unexpected {
                    what: "prepare reply without a prepare-OK",
                },
            ));
        }
    }
}
