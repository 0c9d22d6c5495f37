//! Connections to the backend database: probing its greeting, and logging
//! in as a client's user with the `SHA1(password)` the client proved.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use monoio::net::TcpStream;
use torpor_protocol::auth::{ProvenPassword, NATIVE_PASSWORD_PLUGIN};
use torpor_protocol::frame::{read_payload, write_payload};
use torpor_protocol::handshake::{is_auth_switch, AuthSwitch, Greeting, HandshakeResponse};
use torpor_protocol::packets::{ERR_HEADER, OK_HEADER};
use torpor_protocol::{Capabilities, ProtocolError};

use crate::error::{BackendErr, SessionError};
use crate::net::Conn;

/// Largest packet accepted during a login exchange.
const LOGIN_PACKET_LIMIT: usize = 1 << 20;

/// Read buffer capacity of a backend connection while it logs in; replies
/// are read into pooled large buffers ([`crate::buffers`]).
const LOGIN_BUFFER: usize = 4 * 1024;

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
    pub attributes: &'a [(Vec<u8>, Vec<u8>)],
    /// The client's max packet size.
    pub max_packet_size: u32,
}

async fn with_timeout<T>(
    limit: Duration,
    what: &'static str,
    future: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    match monoio::time::timeout(limit, future).await {
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

async fn open(addr: SocketAddr, limit: Duration) -> Result<(Conn, Greeting), SessionError> {
    let stream = with_timeout(limit, "connect timed out", TcpStream::connect(addr))
        .await
        .map_err(SessionError::BackendUnreachable)?;
    let mut conn = Conn::new(stream, LOGIN_BUFFER).map_err(SessionError::BackendUnreachable)?;
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

/// Connects, reads the greeting and hangs up: what clients will be offered.
pub async fn probe(addr: SocketAddr, limit: Duration) -> Result<BackendInfo, SessionError> {
    let (conn, greeting) = open(addr, limit).await?;
    conn.close().await;
    Ok(BackendInfo {
        server_version: greeting.server_version,
        capabilities: greeting.capabilities,
        collation: greeting.collation,
    })
}

/// Opens a connection and logs in. Returns the connection and the payload
/// of the backend's final OK packet (relayed to the client, whose session
/// state it describes).
pub async fn connect(
    addr: SocketAddr,
    login: &Login<'_>,
    limit: Duration,
) -> Result<(BackendConn, Vec<u8>), SessionError> {
    let (mut conn, greeting) = open(addr, limit).await?;
    let mut capabilities = login.capabilities & greeting.capabilities;
    // Authentication flags are ours to choose; everything that shapes the
    // command phase is exactly what the client negotiated.
    capabilities = capabilities
        | Capabilities::CLIENT_PROTOCOL_41
        | Capabilities::CLIENT_SECURE_CONNECTION
        | Capabilities::CLIENT_PLUGIN_AUTH
        | Capabilities::CLIENT_CONNECT_ATTRS;
    capabilities = capabilities & !Capabilities::CLIENT_CONNECT_WITH_DB;
    if login.database.is_some() {
        capabilities = capabilities | Capabilities::CLIENT_CONNECT_WITH_DB;
    }
    let response = HandshakeResponse {
        capabilities,
        max_packet_size: login.max_packet_size,
        collation: login.collation,
        user: login.user.to_vec(),
        auth_response: login.password.respond(&greeting.seed),
        database: login.database.map(<[u8]>::to_vec),
        auth_plugin: Some(NATIVE_PASSWORD_PLUGIN.as_bytes().to_vec()),
        attributes: login.attributes.to_vec(),
    };
    let mut payload = BytesMut::new();
    response.encode(&mut payload);
    let io_err = SessionError::BackendUnreachable;
    send(&mut conn, 1, &payload).await.map_err(io_err)?;
    let ok = finish_auth(&mut conn, login.password, limit).await?;
    Ok((
        BackendConn {
            conn,
            thread_id: greeting.connection_id,
            seed: greeting.seed,
            capabilities,
        },
        ok,
    ))
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
