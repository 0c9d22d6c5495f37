//! Connections to the backend database: probing its greeting, and logging
//! in as a client's user with the `SHA1(password)` the client proved.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use monoio::net::{TcpStream, UnixStream};
use torpor_protocol::auth::{ProvenPassword, NATIVE_PASSWORD_PLUGIN};
use torpor_protocol::frame::{read_payload, write_payload};
use torpor_protocol::handshake::{is_auth_switch, AuthSwitch, Greeting, HandshakeResponse};
use torpor_protocol::packets::{ERR_HEADER, OK_HEADER};
use torpor_protocol::{Capabilities, ProtocolError};

use std::collections::BTreeMap;

use torpor_replay::state::{Baseline, VarKind};

use crate::endpoint::Endpoint;
use crate::error::{BackendErr, SessionError};
use crate::net::Conn;
use crate::tls::backend::BackendTls;

/// Largest packet accepted during a login exchange.
const LOGIN_PACKET_LIMIT: usize = 1 << 20;

/// Read buffer capacity of a backend connection while it logs in; replies
/// are read into pooled large buffers ([`crate::buffers`]).
const LOGIN_BUFFER: usize = 4 * 1024;

/// An SSLRequest's length: a handshake response's fixed part.
const SSL_REQUEST_LEN: usize = 32;

/// What the backend's greeting says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendInfo {
    /// Its version string, shown to clients unchanged.
    pub server_version: Vec<u8>,
    /// Its capabilities.
    pub capabilities: Capabilities,
    /// Its default collation id.
    pub collation: u8,
}

impl BackendInfo {
    /// What clients are greeted with while a backend Torpor has never
    /// reached cannot be reached (Torpor started during an outage): the
    /// oldest MariaDB Torpor is meant for (10.6), with the capabilities
    /// every MariaDB since offers, so that nothing a client negotiates is
    /// missing on the backend once it comes. Never cached: the backend's
    /// own greeting replaces it as soon as it answers.
    pub fn unseen() -> BackendInfo {
        BackendInfo {
            server_version: b"5.5.5-10.6.0-MariaDB-torpor".to_vec(),
            // MariaDB clears CLIENT_MYSQL to say it has extended flags;
            // the last two are client-side flags no server offers.
            capabilities: Capabilities::FORWARDABLE
                & !(Capabilities::CLIENT_MYSQL
                    | Capabilities::CLIENT_SSL_VERIFY_SERVER_CERT
                    | Capabilities::CLIENT_REMEMBER_OPTIONS),
            // utf8mb4_general_ci, MariaDB's default.
            collation: 45,
        }
    }
}

/// A logged-in backend connection.
pub struct BackendConn {
    /// The connection and its read buffer.
    pub conn: Conn,
    /// The backend's thread id for this connection.
    pub thread_id: u32,
    /// The seed from its greeting (COM_CHANGE_USER answers it again).
    pub seed: Vec<u8>,
    /// The capabilities in force on this connection.
    pub capabilities: Capabilities,
    /// The client statements prepared on this connection, by client id.
    pub statements: crate::session::statements::BackendStatements,
    /// Backend statements to close (evicted) before the next command.
    pub to_close: Vec<u32>,
    /// Torpor's session tracking is not switched on yet: it goes out
    /// ahead of the first command (one write, its reply swallowed), so a
    /// login costs no extra round trip.
    pub needs_tracking: bool,
    /// When it last finished a command.
    pub idle_since: std::time::Instant,
    /// The statements of a state diff (SETs) that bring it to the state
    /// of the session it is lent to: they go out in the same write as
    /// that session's next commands, ahead of them, their replies
    /// swallowed (`crate::session::attach`), so a move to a connection in
    /// another state costs no round trip of its own.
    pub state_diff: Vec<String>,
    /// What the session that gave it back last left unread here (its user
    /// variables): read by whoever takes it next, unless that session
    /// itself ([`crate::session::left`]).
    pub left_by: Option<crate::unread::LeftBehind>,
    /// The service's backend generation when it was opened
    /// ([`crate::service::Service::generation`]): an older one than the
    /// service's now leads to a backend that no longer serves it.
    pub generation: u64,
}

/// Who to log in as, and how.
#[derive(Debug, Clone)]
pub struct Login<'a> {
    /// User name.
    pub user: &'a [u8],
    /// What the client proved about its password.
    pub password: &'a ProvenPassword,
    /// The capabilities the client negotiated with Torpor.
    pub capabilities: Capabilities,
    /// The client's collation.
    pub collation: u8,
    /// The schema the client asked for.
    pub database: Option<&'a [u8]>,
    /// The client's connection attributes.
    pub attributes: &'a torpor_protocol::handshake::PackedAttributes,
    /// The client's max packet size.
    pub max_packet_size: u32,
}

async fn with_timeout<T>(
    limit: Duration,
    what: &'static str,
    future: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    match crate::timer::timeout(limit, future).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, what)),
    }
}

/// Reads one whole payload from `conn`: its sequence id and bytes.
pub async fn read_packet(conn: &mut Conn, limit: usize) -> io::Result<(u8, Vec<u8>)> {
    loop {
        match read_payload(&conn.rbuf, limit) {
            Ok(Some(payload)) => {
                let result = (payload.last_seq, payload.data.into_owned());
                conn.consume(payload.consumed);
                return Ok(result);
            }
            Ok(None) => {}
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
        if conn.read_more(4096).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

async fn send(conn: &mut Conn, seq: u8, payload: &[u8]) -> io::Result<()> {
    let mut wire = BytesMut::with_capacity(payload.len() + 4);
    write_payload(&mut wire, seq, payload);
    conn.write_all(wire).await.0
}

async fn open(addr: &Endpoint, limit: Duration) -> Result<(Conn, Greeting), SessionError> {
    let mut conn = with_timeout(limit, "connect timed out", dial(addr))
        .await
        .map_err(SessionError::BackendUnreachable)?;
    let (_, payload) = with_timeout(
        limit,
        "greeting timed out",
        read_packet(&mut conn, LOGIN_PACKET_LIMIT),
    )
    .await
    .map_err(SessionError::BackendUnreachable)?;
    if payload.first() == Some(&ERR_HEADER) {
        // e.g. "Too many connections" or "Host is blocked": relayed as is.
        return Err(SessionError::BackendRefused(BackendErr { payload }));
    }
    let greeting = Greeting::parse(&payload).map_err(SessionError::BackendProtocol)?;
    Ok((conn, greeting))
}

/// Opens a stream to `addr`.
async fn dial(addr: &Endpoint) -> io::Result<Conn> {
    match addr {
        Endpoint::Tcp(addr) => Conn::new(TcpStream::connect(addr).await?, LOGIN_BUFFER),
        Endpoint::Unix(path) => Ok(Conn::new_unix(
            UnixStream::connect(path).await?,
            LOGIN_BUFFER,
        )),
    }
}

/// Connects, reads the greeting and hangs up: what clients will be offered.
pub async fn probe(addr: &Endpoint, limit: Duration) -> Result<BackendInfo, SessionError> {
    let (conn, greeting) = open(addr, limit).await?;
    conn.close().await;
    Ok(BackendInfo {
        server_version: greeting.server_version,
        capabilities: greeting.capabilities,
        collation: greeting.collation,
    })
}

/// The capabilities a backend connection uses for a client that
/// negotiated `client` with Torpor, on a server offering `server`
/// (CLIENT_CONNECT_WITH_DB aside, which depends on the login).
///
/// Authentication flags are Torpor's to choose; everything that shapes the
/// command phase is what the client negotiated, plus session tracking,
/// which Torpor needs to follow the session's state (OK packets are
/// re-encoded for clients that did not ask for it).
pub fn capabilities_for(client: Capabilities, server: Capabilities) -> Capabilities {
    let capabilities = (client & server)
        | Capabilities::CLIENT_PROTOCOL_41
        | Capabilities::CLIENT_SECURE_CONNECTION
        | Capabilities::CLIENT_PLUGIN_AUTH
        | Capabilities::CLIENT_CONNECT_ATTRS
        | (server & Capabilities::CLIENT_SESSION_TRACK);
    // Compression and TLS are the client leg's alone: backend
    // connections are plain (and shared by clients that asked for them
    // and clients that did not).
    capabilities
        & !(Capabilities::CLIENT_CONNECT_WITH_DB
            | Capabilities::CLIENT_COMPRESS
            | Capabilities::CLIENT_SSL
            | Capabilities::CLIENT_SSL_VERIFY_SERVER_CERT)
}

/// Opens a connection and logs in. Returns the connection and the payload
/// of the backend's final OK packet (relayed to the client, whose session
/// state it describes).
pub async fn connect(
    addr: &Endpoint,
    login: &Login<'_>,
    limit: Duration,
    tls: Option<&BackendTls>,
) -> Result<(BackendConn, Vec<u8>), SessionError> {
    let (mut conn, greeting) = open(addr, limit).await?;
    let mut capabilities = capabilities_for(login.capabilities, greeting.capabilities);
    if login.database.is_some() {
        capabilities = capabilities | Capabilities::CLIENT_CONNECT_WITH_DB;
    }
    // TLS over TCP only: a Unix socket is this host's own.
    let tls = tls.filter(|_| matches!(addr, Endpoint::Tcp(_)));
    let use_tls = match tls {
        Some(tls) if greeting.capabilities.contains(Capabilities::CLIENT_SSL) => Some(tls),
        Some(tls) if tls.required => {
            return Err(SessionError::BackendTls(io::Error::other(
                "the backend offers no TLS and [backend] tls is required",
            )))
        }
        _ => None,
    };
    let wire_capabilities = if use_tls.is_some() {
        capabilities | Capabilities::CLIENT_SSL
    } else {
        capabilities
    };
    let response = HandshakeResponse {
        capabilities: wire_capabilities,
        max_packet_size: login.max_packet_size,
        collation: login.collation,
        user: login.user.to_vec(),
        auth_response: login.password.respond(&greeting.seed),
        database: login.database.map(<[u8]>::to_vec),
        auth_plugin: Some(NATIVE_PASSWORD_PLUGIN.as_bytes().to_vec()),
        attributes: login.attributes.clone(),
    };
    let mut payload = BytesMut::new();
    response.encode(&mut payload);
    let io_err = SessionError::BackendUnreachable;
    let mut seq = 1;
    if let Some(tls) = use_tls {
        // The SSLRequest is the response's first 32 bytes (capabilities,
        // max packet size, collation, filler with MariaDB's extended
        // capabilities); the whole response follows over TLS.
        let request = payload.get(..SSL_REQUEST_LEN).unwrap_or_default();
        send(&mut conn, seq, request).await.map_err(io_err)?;
        seq += 1;
        let name = tls.name_for(addr).ok_or_else(|| {
            SessionError::BackendTls(io::Error::other("no name to check the certificate against"))
        })?;
        let handshake = conn.start_tls_client(Arc::clone(&tls.config), name);
        with_timeout(limit, "TLS handshake timed out", handshake)
            .await
            .map_err(|e| match e.kind() {
                io::ErrorKind::InvalidData => SessionError::BackendTls(e),
                _ => SessionError::BackendUnreachable(e),
            })?;
    }
    send(&mut conn, seq, &payload).await.map_err(io_err)?;
    let ok = finish_auth(&mut conn, login.password, limit).await?;
    let backend = BackendConn {
        conn,
        thread_id: greeting.connection_id,
        seed: greeting.seed,
        capabilities,
        statements: Default::default(),
        to_close: Vec::new(),
        needs_tracking: capabilities.contains(Capabilities::CLIENT_SESSION_TRACK),
        idle_since: std::time::Instant::now(),
        state_diff: Vec::new(),
        left_by: None,
        generation: 0,
    };
    Ok((backend, ok))
}

/// Switches on everything MariaDB can report about a session's state in
/// its OK packets, for this connection.
pub const TRACKING_INIT: &str = "SET SESSION session_track_system_variables='*', \
     session_track_schema=ON, session_track_state_change=ON, \
     session_track_transaction_info='CHARACTERISTICS'";

/// The whole reply to a query Torpor runs itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryResult {
    /// An OK packet (the last one, for several statements).
    Ok(Vec<u8>),
    /// An ERR packet.
    Error(Vec<u8>),
    /// A result set's rows (text protocol; `None` is NULL).
    Rows(Vec<Vec<Option<Vec<u8>>>>),
}

/// Switches Torpor's session tracking on now, if it is not yet.
pub async fn ensure_tracking(backend: &mut BackendConn) -> Result<(), SessionError> {
    if !backend.needs_tracking {
        return Ok(());
    }
    match run_query(backend, TRACKING_INIT).await? {
        QueryResult::Error(payload) => Err(SessionError::BackendRefused(BackendErr { payload })),
        QueryResult::Ok(_) | QueryResult::Rows(_) => {
            backend.needs_tracking = false;
            Ok(())
        }
    }
}

/// Resets `backend` to a fresh session (COM_RESET_CONNECTION: variables,
/// user variables, temporary tables, locks, the transaction and prepared
/// statements; MariaDB keeps the schema and the login's character set) and
/// switches Torpor's tracking back on, in one round trip. `Ok(false)`:
/// the server refused.
pub async fn reset(backend: &mut BackendConn) -> Result<bool, SessionError> {
    use torpor_protocol::command::Command;

    let mut wire = BytesMut::new();
    write_payload(&mut wire, 0, &[Command::ResetConnection as u8]);
    let mut tracking = vec![Command::Query as u8];
    tracking.extend_from_slice(TRACKING_INIT.as_bytes());
    write_payload(&mut wire, 0, &tracking);
    backend
        .conn
        .write_all(wire)
        .await
        .0
        .map_err(SessionError::BackendLost)?;
    let (_, reply) = read_packet(&mut backend.conn, QUERY_PACKET_LIMIT)
        .await
        .map_err(SessionError::BackendLost)?;
    let tracked = read_query_reply(backend).await?;
    // Every statement of every session is gone with the reset.
    backend.statements.clear();
    backend.to_close.clear();
    backend.left_by = None;
    backend.needs_tracking = !matches!(tracked, QueryResult::Ok(_));
    backend.idle_since = std::time::Instant::now();
    Ok(reply.first() == Some(&OK_HEADER) && !backend.needs_tracking)
}

/// Runs `sql` on `backend` and reads its whole reply. For Torpor's own
/// small queries (tracking setup, variable defaults, user variables).
pub async fn run_query(backend: &mut BackendConn, sql: &str) -> Result<QueryResult, SessionError> {
    let mut results = run_queries(backend, &[sql]).await?;
    results
        .pop()
        .ok_or(SessionError::Internal("no reply to a query"))
}

/// Runs `statements` on `backend` pipelined — all sent in one write, then
/// every reply read — so that N statements cost one round trip, not N.
/// The server runs each whatever the one before it answered, so every
/// reply is read (and returned) even after an error.
pub async fn run_queries<S: AsRef<str>>(
    backend: &mut BackendConn,
    statements: &[S],
) -> Result<Vec<QueryResult>, SessionError> {
    use torpor_protocol::command::Command;

    let mut wire = BytesMut::new();
    for sql in statements {
        let sql = sql.as_ref();
        let mut payload = Vec::with_capacity(sql.len() + 1);
        payload.push(Command::Query as u8);
        payload.extend_from_slice(sql.as_bytes());
        write_payload(&mut wire, 0, &payload);
    }
    if wire.is_empty() {
        return Ok(Vec::new());
    }
    backend
        .conn
        .write_all(wire)
        .await
        .0
        .map_err(SessionError::BackendLost)?;
    let mut results = Vec::with_capacity(statements.len());
    for _ in statements {
        results.push(read_query_reply(backend).await?);
    }
    Ok(results)
}

/// Reads the whole reply to one COM_QUERY of Torpor's.
async fn read_query_reply(backend: &mut BackendConn) -> Result<QueryResult, SessionError> {
    let mut reply = QueryReply::new(backend.capabilities)?;
    loop {
        let (seq, packet) = read_packet(&mut backend.conn, QUERY_PACKET_LIMIT)
            .await
            .map_err(SessionError::BackendLost)?;
        if let Some(result) = reply.on_packet(seq, packet)? {
            return Ok(result);
        }
    }
}

/// The reply to one COM_QUERY of Torpor's, collected packet by packet
/// (whole payloads, sans I/O): read from the socket by
/// [`run_queries`], or taken from a reply the session swallowed in the
/// middle of a client's write (the check of a pipelined state diff).
pub struct QueryReply {
    tracker: torpor_protocol::reply::ReplyTracker,
    capabilities: Capabilities,
    rows: Vec<Vec<Option<Vec<u8>>>>,
    columns: Option<usize>,
    definitions_left: usize,
}

impl QueryReply {
    /// A reply on a connection with `capabilities`, nothing read yet.
    pub fn new(capabilities: Capabilities) -> Result<QueryReply, SessionError> {
        use torpor_protocol::command::ReplyKind;
        let tracker = torpor_protocol::reply::ReplyTracker::new(ReplyKind::Results, capabilities)
            .ok_or(SessionError::BackendProtocol(ProtocolError::Unexpected {
            what: "reply kind",
        }))?;
        Ok(QueryReply {
            tracker,
            capabilities,
            rows: Vec::new(),
            columns: None,
            definitions_left: 0,
        })
    }

    /// Takes the next packet's payload (sequence id `seq`); the result
    /// once it was the last.
    pub fn on_packet(
        &mut self,
        seq: u8,
        packet: Vec<u8>,
    ) -> Result<Option<QueryResult>, SessionError> {
        use torpor_protocol::frame::PacketHeader;
        use torpor_protocol::reply::{PacketClass, Step};

        let protocol = SessionError::BackendProtocol;
        // Payloads come whole here, so a continued one never reaches the
        // tracker as such.
        let header = PacketHeader {
            len: packet.len().min(torpor_protocol::MAX_PAYLOAD - 1),
            seq,
        };
        let step = self.tracker.on_packet(header, &packet).map_err(protocol)?;
        match (step, self.tracker.last_packet()) {
            (_, PacketClass::Err) => return Ok(Some(QueryResult::Error(packet))),
            (Step::Done(_), _) => {
                return Ok(Some(match self.columns {
                    Some(_) => QueryResult::Rows(std::mem::take(&mut self.rows)),
                    None => QueryResult::Ok(packet),
                }))
            }
            (Step::LocalInfile, _) => {
                return Err(protocol(ProtocolError::Unexpected {
                    what: "LOCAL INFILE request to a query of Torpor's",
                }))
            }
            (Step::More, PacketClass::Other | PacketClass::Row) => match self.columns {
                None => {
                    let (count, used) = torpor_protocol::lenenc::read_int(&packet)
                        .ok_or(protocol(ProtocolError::malformed("column count")))?;
                    let count = usize::try_from(count)
                        .map_err(|_| protocol(ProtocolError::malformed("column count")))?;
                    let metadata = !self
                        .capabilities
                        .contains(Capabilities::MARIADB_CLIENT_CACHE_METADATA)
                        || packet.get(used) == Some(&1);
                    self.columns = Some(count);
                    self.definitions_left = if metadata { count } else { 0 };
                }
                Some(_) if self.definitions_left > 0 => self.definitions_left -= 1,
                Some(count) => {
                    let values =
                        torpor_protocol::resultset::text_row(&packet, count).map_err(protocol)?;
                    self.rows
                        .push(values.into_iter().map(|v| v.map(<[u8]>::to_vec)).collect());
                }
            },
            (Step::More, _) => {}
        }
        Ok(None)
    }
}

/// Largest packet accepted in a reply to one of Torpor's own queries.
const QUERY_PACKET_LIMIT: usize = 16 << 20;

/// Reads what a fresh session on this backend has: every session
/// variable's value and type. Run on a connection nothing has changed yet.
pub async fn read_baseline(backend: &mut BackendConn) -> Result<Baseline, SessionError> {
    let sql = "SELECT LOWER(VARIABLE_NAME), SESSION_VALUE, VARIABLE_TYPE, GLOBAL_VALUE \
               FROM information_schema.SYSTEM_VARIABLES \
               WHERE VARIABLE_SCOPE IN ('SESSION', 'SESSION ONLY') \
               OR VARIABLE_NAME = 'MAX_CONNECTIONS'";
    let rows = match run_query(backend, sql).await? {
        QueryResult::Rows(rows) => rows,
        QueryResult::Error(payload) => {
            return Err(SessionError::BackendRefused(BackendErr { payload }))
        }
        QueryResult::Ok(_) => Vec::new(),
    };
    let mut baseline = Baseline::default();
    for row in rows {
        let [Some(name), value, Some(kind), global] = row.as_slice() else {
            continue;
        };
        let name = String::from_utf8_lossy(name).into_owned();
        if name == "max_connections" {
            // Global only: it bounds Torpor's pool, it is no session state.
            baseline.server_max_connections = global
                .as_deref()
                .and_then(|g| String::from_utf8_lossy(g).parse().ok());
            continue;
        }
        if torpor_replay::tracking::SETTINGS.contains(&name.as_str()) {
            // This connection runs with Torpor's tracking; a client's
            // session starts with the server's own.
            let global = global
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            baseline.tracking.set(&name, &global);
        }
        let value = value.as_deref().map_or_else(
            || "NULL".to_string(),
            |v| String::from_utf8_lossy(v).into_owned(),
        );
        let kind = VarKind::from_variable_type(&String::from_utf8_lossy(kind));
        baseline.variables.insert(name, (value, kind));
    }
    Ok(baseline)
}

/// What `LAST_INSERT_ID()` returns on `backend` now.
pub async fn read_last_insert_id(backend: &mut BackendConn) -> Result<u64, SessionError> {
    let rows = rows_of(run_query(backend, "SELECT LAST_INSERT_ID()").await?)?;
    Ok(rows
        .first()
        .and_then(|row| row.first())
        .and_then(|value| value.as_deref())
        .and_then(|text| std::str::from_utf8(text).ok())
        .and_then(|text| text.parse().ok())
        .unwrap_or(0))
}

/// Reads what `ROW_COUNT()` and `FOUND_ROWS()` say on the connection:
/// the counts its last statement left (a SELECT without a table changes
/// neither before it is done).
pub async fn read_counts(backend: &mut BackendConn) -> Result<(i64, u64), SessionError> {
    let rows = rows_of(run_query(backend, "SELECT ROW_COUNT(), FOUND_ROWS()").await?)?;
    let value = |at: usize| {
        rows.first()
            .and_then(|row| row.get(at))
            .and_then(|value| value.as_deref())
            .and_then(|text| std::str::from_utf8(text).ok())
    };
    let row_count = value(0).and_then(|text| text.parse().ok());
    let found_rows = value(1).and_then(|text| text.parse().ok());
    match (row_count, found_rows) {
        (Some(row_count), Some(found_rows)) => Ok((row_count, found_rows)),
        _ => Err(SessionError::Internal(
            "unreadable ROW_COUNT() and FOUND_ROWS()",
        )),
    }
}

/// Reads a session's user variables exactly, as SQL expressions that
/// recreate each value with its type and character set.
///
/// Two round trips: `information_schema.USER_VARIABLES` gives names,
/// types and character sets, but converts values to the connection's
/// result character set (after `SET NAMES latin1` a UTF-8 value comes back
/// changed); `HEX(@name)` then gives each string's own bytes.
pub async fn read_user_variables(
    backend: &mut BackendConn,
) -> Result<BTreeMap<String, String>, SessionError> {
    let sql = "SELECT VARIABLE_NAME, VARIABLE_TYPE, CHARACTER_SET_NAME, VARIABLE_VALUE IS NULL \
               FROM information_schema.USER_VARIABLES";
    let rows = rows_of(run_query(backend, sql).await?)?;
    let mut described = Vec::new();
    for row in rows {
        let [Some(name), kind, charset, is_null] = row.as_slice() else {
            continue;
        };
        let text = |v: &Option<Vec<u8>>| {
            v.as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default()
                .into_owned()
        };
        described.push((
            String::from_utf8_lossy(name).into_owned(),
            text(kind),
            text(charset),
            is_null.as_deref() == Some(b"1"),
        ));
    }
    let mut variables = BTreeMap::new();
    if described.is_empty() {
        return Ok(variables);
    }
    let selects: Vec<String> = described
        .iter()
        .map(|(name, kind, _, _)| {
            let var = format!("@{}", torpor_replay::state::quote_ident(name));
            match kind.to_ascii_uppercase().as_str() {
                // Numbers print the same in every character set.
                "INT" | "DECIMAL" | "REAL" => format!("CAST({var} AS CHAR CHARACTER SET ascii)"),
                _ => format!("HEX({var})"),
            }
        })
        .collect();
    let values = rows_of(run_query(backend, &format!("SELECT {}", selects.join(", "))).await?)?;
    let values = values.into_iter().next().unwrap_or_default();
    for (i, (name, kind, charset, is_null)) in described.into_iter().enumerate() {
        // A variable holding NULL reads the same as one never set (MariaDB
        // cannot unset one): it is left out, so states compare equal.
        if is_null {
            continue;
        }
        let value = values.get(i).cloned().flatten();
        let expression = user_variable_expression(value.as_deref(), &kind, &charset);
        if expression != "NULL" {
            variables.insert(name.to_lowercase(), expression);
        }
    }
    Ok(variables)
}

fn rows_of(result: QueryResult) -> Result<Vec<Vec<Option<Vec<u8>>>>, SessionError> {
    match result {
        QueryResult::Rows(rows) => Ok(rows),
        QueryResult::Error(payload) => Err(SessionError::BackendRefused(BackendErr { payload })),
        QueryResult::Ok(_) => Ok(Vec::new()),
    }
}

/// An SQL expression with exactly a user variable's value and type:
/// `value` is the printed number for INT, DECIMAL and REAL variables, and
/// `HEX(@name)` (the string's own bytes) for the others.
pub fn user_variable_expression(value: Option<&[u8]>, kind: &str, charset: &str) -> String {
    let Some(value) = value else {
        return "NULL".to_string();
    };
    let text = String::from_utf8_lossy(value);
    let text = text.trim();
    let numeric = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'.' | b'e' | b'E' | b'+'));
    match kind.to_ascii_uppercase().as_str() {
        "INT" | "DECIMAL" if numeric => text.to_string(),
        // A double printed back in full precision is the same double.
        "REAL" if numeric => format!("CAST({text} AS DOUBLE)"),
        "INT" | "DECIMAL" | "REAL" => "NULL".to_string(),
        _ => {
            let hex_ok = text.len() % 2 == 0 && text.bytes().all(|b| b.is_ascii_hexdigit());
            let literal = match (text.is_empty(), hex_ok) {
                (true, _) => "''".to_string(),
                (false, true) => format!("X'{text}'"),
                (false, false) => return "NULL".to_string(),
            };
            let charset_ok = charset
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if charset.is_empty() || charset.eq_ignore_ascii_case("binary") || !charset_ok {
                format!("CAST({literal} AS BINARY)")
            } else {
                format!("CONVERT({literal} USING {charset})")
            }
        }
    }
}

/// Reads the server's answer to an authentication response, following at
/// most one switch to `mysql_native_password`. Returns the OK payload.
pub async fn finish_auth(
    conn: &mut Conn,
    password: &ProvenPassword,
    limit: Duration,
) -> Result<Vec<u8>, SessionError> {
    let io_err = SessionError::BackendUnreachable;
    let mut switched = false;
    loop {
        let (seq, payload) = with_timeout(
            limit,
            "login timed out",
            read_packet(conn, LOGIN_PACKET_LIMIT),
        )
        .await
        .map_err(io_err)?;
        match payload.first() {
            Some(&OK_HEADER) => return Ok(payload),
            Some(&ERR_HEADER) => return Err(SessionError::BackendRefused(BackendErr { payload })),
            _ if is_auth_switch(&payload) && !switched => {
                let switch = AuthSwitch::parse(&payload).map_err(SessionError::BackendProtocol)?;
                if switch.plugin != NATIVE_PASSWORD_PLUGIN.as_bytes() {
                    return Err(SessionError::BackendProtocol(ProtocolError::Unexpected {
                        what: "backend account uses an authentication plugin other than mysql_native_password",
                    }));
                }
                switched = true;
                send(conn, seq.wrapping_add(1), &password.respond(&switch.data))
                    .await
                    .map_err(io_err)?;
            }
            _ => {
                return Err(SessionError::BackendProtocol(ProtocolError::Unexpected {
                    what: "packet during backend authentication",
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::user_variable_expression;

    #[test]
    fn user_variables_keep_their_bytes_and_types() {
        assert_eq!(user_variable_expression(None, "STRING", "utf8mb4"), "NULL");
        assert_eq!(user_variable_expression(Some(b"42"), "INT", ""), "42");
        assert_eq!(
            user_variable_expression(Some(b"1.50"), "DECIMAL", ""),
            "1.50"
        );
        assert_eq!(
            user_variable_expression(Some(b"0.1"), "REAL", ""),
            "CAST(0.1 AS DOUBLE)"
        );
        assert_eq!(
            user_variable_expression(Some(b"68C3A9"), "STRING", "utf8mb4"),
            "CONVERT(X'68C3A9' USING utf8mb4)"
        );
        assert_eq!(
            user_variable_expression(Some(b"00FF"), "STRING", "binary"),
            "CAST(X'00FF' AS BINARY)"
        );
        assert_eq!(
            user_variable_expression(Some(b""), "STRING", "latin1"),
            "CONVERT('' USING latin1)"
        );
        assert_eq!(
            user_variable_expression(Some(b"zz"), "STRING", "latin1"),
            "NULL",
            "not hex: refused"
        );
        assert_eq!(
            user_variable_expression(Some(b"41"), "STRING", "x; DROP"),
            "CAST(X'41' AS BINARY)",
            "a strange charset name never reaches SQL"
        );
    }
}
