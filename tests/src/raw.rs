//! A small blocking MySQL client that speaks raw bytes over a
//! `std::net::TcpStream`, for tests that need to see (or break) the wire
//! itself: which capabilities are asked for, every packet's sequence id and
//! payload, pipelined commands in one write, malformed input.
//!
//! It uses `torpor_protocol` for the parts it has (greeting, handshake
//! response, scramble maths, framing) and its [`ReplyTracker`] to know
//! where each reply ends, so a test reads exactly one reply per command and
//! can compare replies packet by packet. Everything else (binary-protocol
//! commands) is encoded here by hand, field by field as the protocol
//! documents them, because the point is to send exactly these bytes.
//!
//! Every read has a timeout ([`READ_TIMEOUT`] unless a test sets its own),
//! so a proxy that stops answering fails a test instead of hanging it.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use sha1::{Digest, Sha1};
use torpor_protocol::auth::{ProvenPassword, NATIVE_PASSWORD_PLUGIN};
use torpor_protocol::command::{Command, ReplyKind};
use torpor_protocol::frame::{write_payload, PacketHeader, HEADER_LEN};
use torpor_protocol::handshake::{Greeting, HandshakeResponse};
use torpor_protocol::lenenc;
use torpor_protocol::packets::{ErrPacket, ERR_HEADER, OK_HEADER};
use torpor_protocol::reply::{Ending, PrepareOk, ReplyTracker, Step};
use torpor_protocol::Capabilities;

use crate::{APP_PASSWORD, APP_USER};

/// How long any read may block before the test gives up on the peer.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// One packet as it came off the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct Packet {
    /// Its sequence id.
    pub seq: u8,
    /// Its payload.
    pub payload: Vec<u8>,
}

impl std::fmt::Debug for Packet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{} {}", self.seq, show_bytes(&self.payload))
    }
}

/// Bytes as text where printable and `\xNN` elsewhere, cut at 200 bytes:
/// readable in an assertion message.
pub fn show_bytes(bytes: &[u8]) -> String {
    let mut out = String::new();
    for &b in bytes.iter().take(200) {
        if b.is_ascii_graphic() || b == b' ' {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    if bytes.len() > 200 {
        out.push_str(&format!("… ({} bytes)", bytes.len()));
    }
    out
}

/// A whole reply to one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Its packets, in order.
    pub packets: Vec<Packet>,
    /// How it ended, as the reply tracker saw it.
    pub ending: Ending,
}

impl Reply {
    /// The ERR this reply ended with, if it did.
    pub fn error(&self) -> Option<ServerError> {
        match self.ending {
            Ending::Error => self
                .packets
                .last()
                .and_then(|p| ServerError::parse(&p.payload)),
            _ => None,
        }
    }

    /// The status flags it ended with, if it ended with OK or EOF.
    pub fn status(&self) -> Option<u16> {
        match self.ending {
            Ending::Status(status) => Some(status.0),
            _ => None,
        }
    }

    /// The rows of the reply's first result set, decoded as text-protocol
    /// rows (NULL as `None`), for a connection with `caps`. Empty when the
    /// reply is not a result set.
    pub fn text_rows(&self, caps: Capabilities) -> Vec<Vec<Option<Vec<u8>>>> {
        let Some(first) = self.packets.first() else {
            return Vec::new();
        };
        let Some((columns, used)) = lenenc::read_int(&first.payload) else {
            return Vec::new();
        };
        if matches!(first.payload.first(), Some(&OK_HEADER) | Some(&ERR_HEADER)) {
            return Vec::new();
        }
        let metadata_follows = !caps.contains(Capabilities::MARIADB_CLIENT_CACHE_METADATA)
            || first.payload.get(used) == Some(&1);
        let mut at = 1 + if metadata_follows {
            columns as usize
        } else {
            0
        };
        if !caps.contains(Capabilities::CLIENT_DEPRECATE_EOF) {
            at += 1;
        }
        let mut rows = Vec::new();
        for packet in self.packets.iter().skip(at) {
            if matches!(packet.payload.first(), Some(&0xFE) | Some(&ERR_HEADER))
                && packet.payload.len() < 0xFF_FFFF
            {
                break;
            }
            let mut row = Vec::new();
            let mut rest = &packet.payload[..];
            while !rest.is_empty() {
                if rest[0] == 0xFB {
                    row.push(None);
                    rest = &rest[1..];
                } else if let Some((value, n)) = lenenc::read_bytes(rest) {
                    row.push(Some(value.to_vec()));
                    rest = &rest[n..];
                } else {
                    break;
                }
            }
            rows.push(row);
        }
        rows
    }

    /// Panics with the server's error if the reply is an ERR.
    #[track_caller]
    pub fn expect_ok(self, what: &str) -> Reply {
        if let Some(error) = self.error() {
            panic!("{what}: {error}");
        }
        self
    }
}

/// An ERR packet, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    /// Error code.
    pub code: u16,
    /// SQLSTATE, or empty when the packet had none.
    pub state: String,
    /// Message.
    pub message: String,
}

impl ServerError {
    /// Decodes an ERR payload; `None` when it is not one.
    pub fn parse(payload: &[u8]) -> Option<ServerError> {
        let err = ErrPacket::parse(payload).ok()?;
        Some(ServerError {
            code: err.code,
            state: err
                .sql_state
                .map(|s| String::from_utf8_lossy(&s).into_owned())
                .unwrap_or_default(),
            message: String::from_utf8_lossy(err.message).into_owned(),
        })
    }
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ERROR {} ({}): {}", self.code, self.state, self.message)
    }
}

/// What a login attempt ended with, when it did not succeed.
#[derive(Debug)]
pub enum LoginError {
    /// The server answered with an ERR packet.
    Server(ServerError),
    /// The connection failed or closed, or the server sent nonsense.
    Io(io::Error),
}

impl std::fmt::Display for LoginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoginError::Server(e) => write!(f, "{e}"),
            LoginError::Io(e) => write!(f, "I/O: {e}"),
        }
    }
}

impl From<io::Error> for LoginError {
    fn from(e: io::Error) -> Self {
        LoginError::Io(e)
    }
}

/// How a connection ended when a test read until it did.
#[derive(Debug)]
pub enum Closing {
    /// The peer closed in order (FIN).
    Closed,
    /// The connection was reset or failed.
    Failed(io::Error),
    /// Nothing more came and the connection stayed open.
    TimedOut,
}

/// What arrived before a connection ended.
#[derive(Debug)]
pub struct Aftermath {
    /// Whole packets that arrived.
    pub packets: Vec<Packet>,
    /// Bytes after the last whole packet (a partial packet).
    pub trailing: Vec<u8>,
    /// How it ended.
    pub closing: Closing,
}

/// The flags every raw test client asks for, whatever else it varies:
/// roughly what libmariadb 3.3 sends, without CLIENT_MYSQL so that MariaDB's
/// extended flags are read, and without TLS and compression.
pub fn base_capabilities() -> Capabilities {
    Capabilities::CLIENT_LONG_FLAG
        | Capabilities::CLIENT_CONNECT_WITH_DB
        | Capabilities::CLIENT_LOCAL_FILES
        | Capabilities::CLIENT_PROTOCOL_41
        | Capabilities::CLIENT_TRANSACTIONS
        | Capabilities::CLIENT_SECURE_CONNECTION
        | Capabilities::CLIENT_MULTI_STATEMENTS
        | Capabilities::CLIENT_MULTI_RESULTS
        | Capabilities::CLIENT_PS_MULTI_RESULTS
        | Capabilities::CLIENT_PLUGIN_AUTH
        | Capabilities::CLIENT_CONNECT_ATTRS
        | Capabilities::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
        | Capabilities::CLIENT_SESSION_TRACK
        | Capabilities::MARIADB_CLIENT_PROGRESS
        | Capabilities::MARIADB_CLIENT_STMT_BULK_OPERATIONS
        | Capabilities::MARIADB_CLIENT_EXTENDED_METADATA
}

/// Who to log in as, with which flags.
#[derive(Debug, Clone)]
pub struct LoginOptions {
    /// User name.
    pub user: String,
    /// Plaintext password.
    pub password: String,
    /// Schema to start in.
    pub database: Option<String>,
    /// The flags to ask for (the server's offer is intersected with them).
    pub capabilities: Capabilities,
    /// Connection attributes.
    pub attributes: Vec<(Vec<u8>, Vec<u8>)>,
}

impl LoginOptions {
    /// The app user in schema `test`, asking for `capabilities`.
    pub fn app(capabilities: Capabilities) -> LoginOptions {
        LoginOptions {
            user: APP_USER.to_string(),
            password: APP_PASSWORD.to_string(),
            database: Some("test".to_string()),
            capabilities,
            attributes: vec![(b"_client_name".to_vec(), b"torpor-raw-test".to_vec())],
        }
    }
}

/// The `mysql_native_password` response to `seed` for `password`.
pub fn native_response(password: &str, seed: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let sha1: [u8; 20] = Sha1::digest(password.as_bytes()).into();
    ProvenPassword::Sha1(sha1).respond(seed)
}

/// A raw connection: a socket, the bytes read from it and not yet taken,
/// and, after the handshake, what was negotiated.
pub struct RawClient {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The greeting, once read.
    pub greeting: Option<Greeting>,
    /// The capabilities in force after login (the client's ∩ the
    /// server's, with no MariaDB flags for a client that set CLIENT_MYSQL).
    pub capabilities: Capabilities,
    /// The OK packet that ended the login.
    pub login_ok: Option<Packet>,
}

impl RawClient {
    /// Opens a TCP connection and reads nothing yet.
    pub fn open(addr: SocketAddr) -> io::Result<RawClient> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        stream.set_write_timeout(Some(READ_TIMEOUT))?;
        Ok(RawClient {
            stream,
            buf: Vec::new(),
            greeting: None,
            capabilities: Capabilities::EMPTY,
            login_ok: None,
        })
    }

    /// Connects and logs in; panics with the reason if that fails.
    #[track_caller]
    pub fn connect(addr: SocketAddr, options: &LoginOptions) -> RawClient {
        match RawClient::try_connect(addr, options) {
            Ok(client) => client,
            Err(e) => panic!("raw login to {addr} failed: {e}"),
        }
    }

    /// Connects and logs in.
    pub fn try_connect(addr: SocketAddr, options: &LoginOptions) -> Result<RawClient, LoginError> {
        let mut client = RawClient::open(addr)?;
        client.read_greeting()?;
        client.login(options)?;
        Ok(client)
    }

    /// The underlying socket (for timeouts, shutdown, raw writes).
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Reads the server's first packet as a greeting. An ERR instead (a
    /// server that refuses the connection outright) is returned as
    /// [`LoginError::Server`].
    pub fn read_greeting(&mut self) -> Result<&Greeting, LoginError> {
        let packet = self.read_packet()?;
        if packet.payload.first() == Some(&ERR_HEADER) {
            return Err(server_error(&packet));
        }
        let greeting = Greeting::parse(&packet.payload)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("greeting: {e}")))?;
        Ok(self.greeting.insert(greeting))
    }

    /// Sends a HandshakeResponse41 for `options` and reads the answer,
    /// answering one auth switch to `mysql_native_password`.
    pub fn login(&mut self, options: &LoginOptions) -> Result<(), LoginError> {
        let greeting = self
            .greeting
            .clone()
            .ok_or_else(|| io::Error::other("login before the greeting"))?;
        let mut capabilities = options.capabilities & !Capabilities::CLIENT_CONNECT_WITH_DB;
        if options.database.is_some() {
            capabilities = capabilities | Capabilities::CLIENT_CONNECT_WITH_DB;
        }
        let response = HandshakeResponse {
            capabilities,
            max_packet_size: 1 << 30,
            collation: 45,
            user: options.user.as_bytes().to_vec(),
            auth_response: native_response(&options.password, &greeting.seed),
            database: options.database.as_ref().map(|d| d.as_bytes().to_vec()),
            auth_plugin: Some(NATIVE_PASSWORD_PLUGIN.as_bytes().to_vec()),
            attributes: torpor_protocol::handshake::PackedAttributes::pack(&options.attributes),
        };
        let mut payload = BytesMut::new();
        response.encode(&mut payload);
        self.send_packet(1, &payload)?;
        loop {
            let packet = self.read_packet()?;
            match packet.payload.first() {
                Some(&OK_HEADER) => {
                    self.capabilities =
                        Capabilities::negotiate(capabilities, greeting.capabilities);
                    self.login_ok = Some(packet);
                    return Ok(());
                }
                Some(&ERR_HEADER) => return Err(server_error(&packet)),
                Some(0xFE) => {
                    let switch = torpor_protocol::handshake::AuthSwitch::parse(&packet.payload)
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    let answer = native_response(&options.password, &switch.data);
                    self.send_packet(packet.seq.wrapping_add(1), &answer)?;
                }
                _ => {
                    return Err(LoginError::Io(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("unexpected login packet {packet:?}"),
                    )))
                }
            }
        }
    }

    /// Writes `bytes` as they are.
    pub fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Writes one payload as packet(s) starting at sequence id `seq`.
    pub fn send_packet(&mut self, seq: u8, payload: &[u8]) -> io::Result<()> {
        let mut wire = BytesMut::with_capacity(payload.len() + HEADER_LEN);
        write_payload(&mut wire, seq, payload);
        self.stream.write_all(&wire)
    }

    /// Writes a command (sequence id 0).
    pub fn send_command(&mut self, payload: &[u8]) -> io::Result<()> {
        self.send_packet(0, payload)
    }

    /// Half-closes the connection: the server reads end-of-file.
    pub fn shutdown_write(&self) -> io::Result<()> {
        self.stream.shutdown(Shutdown::Write)
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 64 * 1024];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads one packet (not reassembling 16 MiB continuations: each
    /// packet as it is on the wire).
    pub fn read_packet(&mut self) -> io::Result<Packet> {
        loop {
            if let Some(header) = PacketHeader::parse(&self.buf) {
                if self.buf.len() >= header.total_len() {
                    let payload = self.buf[HEADER_LEN..header.total_len()].to_vec();
                    self.buf.drain(..header.total_len());
                    return Ok(Packet {
                        seq: header.seq,
                        payload,
                    });
                }
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "connection closed ({} bytes of a packet buffered)",
                        self.buf.len()
                    ),
                ));
            }
        }
    }

    /// Reads one reply of `kind`. A LOCAL INFILE request is declined (an
    /// empty packet, as a client without the file sends).
    pub fn read_reply(&mut self, kind: ReplyKind) -> io::Result<Reply> {
        self.read_reply_with_file(kind, None)
    }

    /// Reads one reply of `kind`, answering a LOCAL INFILE request with
    /// `file` (in packets of at most 16 KiB, then the empty packet).
    pub fn read_reply_with_file(
        &mut self,
        kind: ReplyKind,
        file: Option<&[u8]>,
    ) -> io::Result<Reply> {
        self.read_reply_tracked(kind, false, file)
    }

    /// Reads one reply of `kind` to a command that asked for a cursor
    /// when `cursor` (a COM_STMT_EXECUTE with CURSOR_TYPE_READ_ONLY: only
    /// then may a result end after its column definitions), answering a
    /// LOCAL INFILE request with `file`.
    pub fn read_reply_tracked(
        &mut self,
        kind: ReplyKind,
        cursor: bool,
        file: Option<&[u8]>,
    ) -> io::Result<Reply> {
        let mut tracker = ReplyTracker::new(kind, self.capabilities)
            .ok_or_else(|| io::Error::other(format!("no reply to read for {kind:?}")))?
            .with_cursor_requested(cursor);
        let mut packets = Vec::new();
        loop {
            let packet = self.read_packet()?;
            let header = PacketHeader {
                len: packet.payload.len(),
                seq: packet.seq,
            };
            let step = tracker.on_packet(header, &packet.payload).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidData, format!("{e} in {packet:?}"))
            })?;
            let seq = packet.seq;
            packets.push(packet);
            match step {
                Step::More => {}
                Step::Done(ending) => return Ok(Reply { packets, ending }),
                Step::LocalInfile => {
                    let mut next = seq.wrapping_add(1);
                    let mut wire = BytesMut::new();
                    for chunk in file.unwrap_or_default().chunks(16 * 1024) {
                        next = write_payload(&mut wire, next, chunk);
                    }
                    write_payload(&mut wire, next, &[]);
                    self.stream.write_all(&wire)?;
                }
            }
        }
    }

    /// Sends a command and reads its reply (`None` for commands that get
    /// none: COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA, COM_QUIT).
    pub fn command(&mut self, payload: &[u8]) -> io::Result<Option<Reply>> {
        self.send_command(payload)?;
        self.read_reply_for(payload)
    }

    /// Reads the reply that the command `payload` (already sent) is owed.
    pub fn read_reply_for(&mut self, payload: &[u8]) -> io::Result<Option<Reply>> {
        let kind = payload
            .first()
            .and_then(|&b| Command::from_byte(b))
            .map_or(ReplyKind::Single, Command::reply_kind);
        match kind {
            ReplyKind::None => Ok(None),
            kind => {
                let cursor = torpor_protocol::stmt::requests_cursor(payload);
                self.read_reply_tracked(kind, cursor, None).map(Some)
            }
        }
    }

    /// COM_QUERY; panics on I/O failure (the tests' replies must come).
    #[track_caller]
    pub fn query(&mut self, sql: &str) -> Reply {
        match self.command(&com_query(sql)) {
            Ok(Some(reply)) => reply,
            Ok(None) => unreachable!("COM_QUERY always has a reply"),
            Err(e) => panic!("{sql}: {e}"),
        }
    }

    /// COM_STMT_PREPARE: the prepare-OK and the whole reply.
    #[track_caller]
    pub fn prepare(&mut self, sql: &str) -> (PrepareOk, Reply) {
        let mut payload = vec![Command::StmtPrepare as u8];
        payload.extend_from_slice(sql.as_bytes());
        self.send_command(&payload)
            .unwrap_or_else(|e| panic!("prepare {sql}: {e}"));
        let reply = self
            .read_reply(ReplyKind::Prepare)
            .unwrap_or_else(|e| panic!("prepare {sql}: {e}"));
        if let Some(error) = reply.error() {
            panic!("prepare {sql}: {error}");
        }
        let ok = PrepareOk::parse(&reply.packets[0].payload).expect("prepare OK");
        (ok, reply)
    }

    /// Reads whatever comes until the peer closes or `limit` passes
    /// without a byte arriving.
    pub fn read_to_end(&mut self, limit: Duration) -> Aftermath {
        let _ = self.stream.set_read_timeout(Some(limit));
        let deadline = Instant::now() + limit;
        let closing = loop {
            match self.fill() {
                Ok(0) => break Closing::Closed,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break Closing::TimedOut
                }
                Err(e) => break Closing::Failed(e),
            }
            if Instant::now() > deadline {
                break Closing::TimedOut;
            }
        };
        let mut packets = Vec::new();
        while let Some(header) = PacketHeader::parse(&self.buf) {
            if self.buf.len() < header.total_len() {
                break;
            }
            packets.push(Packet {
                seq: header.seq,
                payload: self.buf[HEADER_LEN..header.total_len()].to_vec(),
            });
            self.buf.drain(..header.total_len());
        }
        Aftermath {
            packets,
            trailing: std::mem::take(&mut self.buf),
            closing,
        }
    }
}

fn server_error(packet: &Packet) -> LoginError {
    match ServerError::parse(&packet.payload) {
        Some(e) => LoginError::Server(e),
        None => LoginError::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("malformed ERR packet {packet:?}"),
        )),
    }
}

// Command payloads, byte by byte as the protocol documents them.

/// COM_QUERY.
pub fn com_query(sql: &str) -> Vec<u8> {
    let mut payload = vec![Command::Query as u8];
    payload.extend_from_slice(sql.as_bytes());
    payload
}

/// A command with just its byte (COM_PING, COM_STATISTICS, COM_QUIT,
/// COM_RESET_CONNECTION).
pub fn com(command: Command) -> Vec<u8> {
    vec![command as u8]
}

/// COM_INIT_DB.
pub fn com_init_db(schema: &str) -> Vec<u8> {
    let mut payload = vec![Command::InitDb as u8];
    payload.extend_from_slice(schema.as_bytes());
    payload
}

/// COM_FIELD_LIST: a table and a column wildcard.
pub fn com_field_list(table: &str, wildcard: &str) -> Vec<u8> {
    let mut payload = vec![Command::FieldList as u8];
    payload.extend_from_slice(table.as_bytes());
    payload.push(0);
    payload.extend_from_slice(wildcard.as_bytes());
    payload
}

/// COM_SET_OPTION option: multi-statements on.
pub const MULTI_STATEMENTS_ON: u16 = 0;
/// COM_SET_OPTION option: multi-statements off.
pub const MULTI_STATEMENTS_OFF: u16 = 1;

/// COM_SET_OPTION.
pub fn com_set_option(option: u16) -> Vec<u8> {
    let mut payload = vec![Command::SetOption as u8];
    payload.extend_from_slice(&option.to_le_bytes());
    payload
}

fn with_statement(command: Command, statement: u32) -> Vec<u8> {
    let mut payload = vec![command as u8];
    payload.extend_from_slice(&statement.to_le_bytes());
    payload
}

/// COM_STMT_CLOSE.
pub fn com_stmt_close(statement: u32) -> Vec<u8> {
    with_statement(Command::StmtClose, statement)
}

/// COM_STMT_RESET.
pub fn com_stmt_reset(statement: u32) -> Vec<u8> {
    with_statement(Command::StmtReset, statement)
}

/// COM_STMT_FETCH of up to `rows` rows.
pub fn com_stmt_fetch(statement: u32, rows: u32) -> Vec<u8> {
    let mut payload = with_statement(Command::StmtFetch, statement);
    payload.extend_from_slice(&rows.to_le_bytes());
    payload
}

/// COM_STMT_SEND_LONG_DATA for parameter `param`.
pub fn com_stmt_send_long_data(statement: u32, param: u16, data: &[u8]) -> Vec<u8> {
    let mut payload = with_statement(Command::StmtSendLongData, statement);
    payload.extend_from_slice(&param.to_le_bytes());
    payload.extend_from_slice(data);
    payload
}

/// COM_STMT_EXECUTE flag: no cursor.
pub const CURSOR_TYPE_NO_CURSOR: u8 = 0;
/// COM_STMT_EXECUTE flag: open a read-only cursor.
pub const CURSOR_TYPE_READ_ONLY: u8 = 1;

/// MySQL type codes used by the binary-protocol helpers.
pub mod types {
    /// MYSQL_TYPE_DOUBLE.
    pub const DOUBLE: u8 = 0x05;
    /// MYSQL_TYPE_LONGLONG.
    pub const LONGLONG: u8 = 0x08;
    /// MYSQL_TYPE_BLOB.
    pub const BLOB: u8 = 0xfc;
    /// MYSQL_TYPE_VAR_STRING.
    pub const VAR_STRING: u8 = 0xfd;
    /// MYSQL_TYPE_NULL.
    pub const NULL: u8 = 0x06;
}

/// A parameter value for COM_STMT_EXECUTE / COM_STMT_BULK_EXECUTE.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// SQL NULL.
    Null,
    /// A signed 64-bit integer.
    Int(i64),
    /// A double.
    Double(f64),
    /// A string.
    Text(Vec<u8>),
    /// A value sent before with COM_STMT_SEND_LONG_DATA: only its type
    /// goes in the execute packet.
    LongData,
}

impl Param {
    /// A string parameter.
    pub fn text(s: &str) -> Param {
        Param::Text(s.as_bytes().to_vec())
    }

    fn type_code(&self) -> u8 {
        match self {
            Param::Null => types::NULL,
            Param::Int(_) => types::LONGLONG,
            Param::Double(_) => types::DOUBLE,
            Param::Text(_) => types::VAR_STRING,
            Param::LongData => types::BLOB,
        }
    }

    fn put_value(&self, dst: &mut BytesMut) {
        match self {
            Param::Null | Param::LongData => {}
            Param::Int(v) => dst.put_i64_le(*v),
            Param::Double(v) => dst.put_f64_le(*v),
            Param::Text(v) => lenenc::put_bytes(dst, v),
        }
    }
}

/// COM_STMT_EXECUTE with `params`. With `send_types` the parameter types
/// are bound anew (new-params-bound = 1); without, the server uses the
/// types of the previous execute, as sysbench and libmariadb do after the
/// first one.
pub fn com_stmt_execute(statement: u32, flags: u8, params: &[Param], send_types: bool) -> Vec<u8> {
    let mut payload = BytesMut::new();
    payload.put_u8(Command::StmtExecute as u8);
    payload.put_u32_le(statement);
    payload.put_u8(flags);
    payload.put_u32_le(1); // iteration count, always 1
    if !params.is_empty() {
        let mut bitmap = vec![0u8; params.len().div_ceil(8)];
        for (i, param) in params.iter().enumerate() {
            if *param == Param::Null {
                bitmap[i / 8] |= 1 << (i % 8);
            }
        }
        payload.put_slice(&bitmap);
        payload.put_u8(u8::from(send_types));
        if send_types {
            for param in params {
                payload.put_u8(param.type_code());
                payload.put_u8(0); // signed
            }
        }
        for param in params {
            param.put_value(&mut payload);
        }
    }
    payload.to_vec()
}

/// COM_STMT_BULK_EXECUTE flag: the parameter types follow.
pub const BULK_SEND_TYPES: u16 = 128;

/// MariaDB's COM_STMT_BULK_EXECUTE: one row of parameters per entry of
/// `rows`, each value behind an indicator byte (0: value follows, 1: NULL).
pub fn com_stmt_bulk_execute(statement: u32, rows: &[Vec<Param>]) -> Vec<u8> {
    let mut payload = BytesMut::new();
    payload.put_u8(Command::StmtBulkExecute as u8);
    payload.put_u32_le(statement);
    payload.put_u16_le(BULK_SEND_TYPES);
    if let Some(first) = rows.first() {
        for position in 0..first.len() {
            // A NULL in the first row says nothing about the column: send
            // the type of the first non-NULL value in that position.
            let code = rows
                .iter()
                .map(|row| &row[position])
                .find(|p| **p != Param::Null)
                .map_or(types::NULL, Param::type_code);
            payload.put_u8(code);
            payload.put_u8(0);
        }
    }
    for row in rows {
        for param in row {
            if *param == Param::Null {
                payload.put_u8(1);
            } else {
                payload.put_u8(0);
                param.put_value(&mut payload);
            }
        }
    }
    payload.to_vec()
}

/// The affected-rows count of an OK packet's payload.
pub fn affected_rows(payload: &[u8]) -> Option<u64> {
    match payload {
        [OK_HEADER, rest @ ..] => lenenc::read_int(rest).map(|(value, _)| value),
        _ => None,
    }
}
