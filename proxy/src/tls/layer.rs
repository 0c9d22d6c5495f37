//! rustls driven over a connection's own buffers.
//!
//! Why not monoio-rustls: a `Conn` keeps its read buffer in itself so
//! that no byte is lost with a dropped future, splits its socket so that
//! a write and a read go in one submission, and peeks at the socket for
//! hang-ups; a wrapper stream that owns the socket and its own buffers
//! fits none of that. rustls is sans-I/O already: this layer holds the
//! ciphertext read and not yet processed, and `crate::net::Conn` does
//! the socket I/O around it, as it does for the compressed protocol.
//! Nothing here touches a socket.
//!
//! Why rustls' unbuffered API rather than its `Connection`: records are
//! deframed and decrypted where they lie in [`TlsLayer::raw`] (the
//! buffered connection first copied them into a buffer of its own), and
//! encrypted straight into the buffer that goes to the socket (the
//! buffered one allocated a buffer per record, queued it, and copied it
//! out again). What TLS still adds per message is mostly AES-GCM itself
//! and rustls' record bookkeeping (see README, "What TLS costs").

use std::io;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use rustls::client::UnbufferedClientConnection;
use rustls::pki_types::ServerName;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncodeTlsData, EncryptError, InsufficientSizeError,
    UnbufferedStatus, WriteTraffic,
};
use rustls::{ClientConfig, ServerConfig};

use super::sni::{self, NotedName};

/// Largest plaintext of one TLS record.
const MAX_FRAGMENT: usize = 16 * 1024;

/// Bytes a record adds to its plaintext, at most: a 5-byte header, and a
/// 16-byte tag with TLS 1.3's content type byte or TLS 1.2's 8-byte
/// explicit nonce. A guess that is short costs one more try.
const RECORD_OVERHEAD: usize = 5 + 8 + 16;

/// Steps of the state machine taken at most to get out a close_notify or
/// the alert of a failed connection (each step is one pending message,
/// and there are one or two).
const MAX_FLUSH_STEPS: usize = 8;

/// One connection's TLS state: the server side on the client leg, the
/// client side on the backend leg.
pub struct TlsLayer {
    side: Side,
    /// Ciphertext read from the socket and not yet processed.
    pub raw: BytesMut,
    /// TLS bytes to send, in order: handshake messages, tickets, key
    /// updates, alerts, application data's records.
    out: Outgoing,
    /// Plaintext decrypted while nobody was reading (records that came
    /// right behind the handshake's last message): handed out first.
    early: BytesMut,
    /// The peer sent close_notify: nothing more will come.
    peer_closed: bool,
    /// The server name the client asked for (server side).
    server_name: Option<NotedName>,
}

enum Side {
    Server(UnbufferedServerConnection),
    Client(UnbufferedClientConnection),
}

/// The bytes to send, in a buffer kept from one write to the next.
/// rustls writes into initialized bytes only: the buffer stays
/// initialized up to its length, of which the first `used` bytes wait to
/// be sent, so that a reply's records go into room zeroed once per
/// connection rather than once per reply (and allocated once, too).
#[derive(Default)]
struct Outgoing {
    buf: Vec<u8>,
    used: usize,
}

impl Outgoing {
    /// `n` bytes of room after what waits, zero-filled only where the
    /// buffer grows.
    fn room(&mut self, n: usize) -> &mut [u8] {
        let end = self.used + n;
        if self.buf.len() < end {
            self.buf.resize(end, 0);
        }
        &mut self.buf[self.used..end]
    }

    /// The first `n` bytes of the last [`Outgoing::room`] wait to be sent.
    fn commit(&mut self, n: usize) {
        self.used += n;
    }
}

/// What a call to [`TlsLayer::decrypt`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decrypted {
    /// Plaintext bytes appended.
    pub added: usize,
    /// The peer sent close_notify: no more will come.
    pub closed: bool,
}

/// Where one turn of rustls' state machine left the connection.
enum Step {
    /// Plaintext came out of a record: turn again while ciphertext is
    /// left.
    Read,
    /// A message went to `out`, or one was sent: turn again.
    Progress,
    /// The handshake needs more ciphertext.
    Blocked,
    /// Nothing pending: application data may flow (and any partial record
    /// in `raw` waits for the rest of it).
    Ready,
    /// close_notify came (or the connection is closed both ways).
    PeerClosed,
}

/// rustls' two unbuffered connection types, seen alike.
trait Records {
    type Data;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data>;
}

impl Records for UnbufferedServerConnection {
    type Data = rustls::server::ServerConnectionData;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }
}

impl Records for UnbufferedClientConnection {
    type Data = rustls::client::ClientConnectionData;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }
}

/// Calls `$f` with the connection of either side (the two types share
/// no trait of rustls' that has what `$f` needs).
macro_rules! either {
    ($side:expr, $conn:ident => $f:expr) => {
        match $side {
            Side::Server($conn) => $f,
            Side::Client($conn) => $f,
        }
    };
}

impl TlsLayer {
    /// A server-side session; `already` holds bytes the client sent right
    /// after its SSLRequest, read with it (the start of its ClientHello).
    pub fn new(config: Arc<ServerConfig>, already: &[u8]) -> io::Result<TlsLayer> {
        let (config, noted) = sni::noting_server_name(&config);
        let conn = UnbufferedServerConnection::new(config).map_err(io::Error::other)?;
        Ok(TlsLayer::with_side(
            Side::Server(conn),
            BytesMut::from(already),
            Some(noted),
        ))
    }

    /// A client-side session to `name` (a backend connection).
    pub fn client(config: Arc<ClientConfig>, name: ServerName<'static>) -> io::Result<TlsLayer> {
        let conn = UnbufferedClientConnection::new(config, name).map_err(io::Error::other)?;
        Ok(TlsLayer::with_side(
            Side::Client(conn),
            BytesMut::new(),
            None,
        ))
    }

    fn with_side(side: Side, raw: BytesMut, server_name: Option<NotedName>) -> TlsLayer {
        TlsLayer {
            side,
            raw,
            out: Outgoing::default(),
            early: BytesMut::new(),
            peer_closed: false,
            server_name,
        }
    }

    /// Whether the handshake is still under way.
    pub fn is_handshaking(&self) -> bool {
        either!(&self.side, conn => conn.is_handshaking())
    }

    /// The negotiated cipher suite and protocol version, for the log.
    pub fn describe(&self) -> String {
        let (suite, version) = either!(&self.side, conn => (
            conn.negotiated_cipher_suite(),
            conn.protocol_version(),
        ));
        let suite = suite
            .map(|s| format!("{:?}", s.suite()))
            .unwrap_or_default();
        let version = version.map(|v| format!("{v:?}")).unwrap_or_default();
        format!("{version} {suite}")
    }

    /// The server name the client asked for (SNI), if any.
    pub fn server_name(&self) -> Option<&str> {
        self.server_name
            .as_ref()
            .and_then(|noted| noted.get())
            .map(String::as_str)
    }

    /// Runs the handshake as far as the buffered ciphertext takes it; the
    /// messages to send wait in [`TlsLayer::take_output`]. A TLS error
    /// is an `InvalidData` error, and the alert that tells the peer waits
    /// there too.
    pub fn advance(&mut self) -> io::Result<()> {
        let mut early = std::mem::take(&mut self.early);
        let result = self.turn_until_idle(&mut early);
        self.early = early;
        result.map(|_| ())
    }

    /// Processes the ciphertext buffered in [`TlsLayer::raw`] and appends
    /// the plaintext it holds to `plain`, until only a partial record (or
    /// nothing) is left: nothing waits inside rustls that a caller
    /// looking at its read buffer would not see. A TLS error is an
    /// `InvalidData` error; the alert that tells the peer waits in
    /// [`TlsLayer::take_output`], as do key updates to answer.
    pub fn decrypt(&mut self, plain: &mut BytesMut) -> io::Result<Decrypted> {
        let mut added = 0;
        if !self.early.is_empty() {
            added += self.early.len();
            plain.extend_from_slice(&self.early);
            self.early.clear();
        }
        added += self.turn_until_idle(plain)?;
        Ok(Decrypted {
            added,
            closed: self.peer_closed,
        })
    }

    /// Turns the state machine over the buffered ciphertext until it
    /// waits for more (or the peer closed); returns the plaintext bytes
    /// appended to `plain`.
    fn turn_until_idle(&mut self, plain: &mut BytesMut) -> io::Result<usize> {
        let before = plain.len();
        while !self.peer_closed {
            let turned =
                either!(&mut self.side, conn => turn(conn, &mut self.raw, plain, &mut self.out));
            match turned {
                Ok(Step::Progress) => {}
                // rustls reports plaintext as soon as it decrypted a
                // record, before it looks at anything behind it, and a
                // record leaves nothing to send: with no ciphertext left,
                // another turn would only find nothing to do (one turn
                // less per message read).
                Ok(Step::Read) if self.raw.is_empty() => break,
                Ok(Step::Read) => {}
                Ok(Step::Blocked | Step::Ready) => break,
                Ok(Step::PeerClosed) => self.peer_closed = true,
                Err(e) => {
                    either!(&mut self.side, conn => flush_pending(conn, &mut self.out, &mut self.early));
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
            }
        }
        Ok(plain.len() - before)
    }

    /// Encrypts `plain` into records that wait to be sent behind what
    /// waited already ([`TlsLayer::take_output`]).
    pub fn encrypt(&mut self, plain: &[u8]) -> io::Result<()> {
        if plain.is_empty() {
            return Ok(());
        }
        for _ in 0..MAX_FLUSH_STEPS {
            let sent = either!(&mut self.side, conn => write_turn(conn, plain, &mut self.out, &mut self.early));
            if sent? {
                return Ok(());
            }
        }
        Err(io::Error::other(
            "TLS: no state to send application data in",
        ))
    }

    /// Whether TLS bytes wait to be sent.
    pub fn wants_write(&self) -> bool {
        self.out.used > 0
    }

    /// What waits to be sent: a buffer whose first `n` bytes go to the
    /// socket, to be handed back with [`TlsLayer::give_back`] once they
    /// went (the layer keeps using it).
    pub fn take_output(&mut self) -> (Vec<u8>, usize) {
        let out = std::mem::take(&mut self.out);
        (out.buf, out.used)
    }

    /// Takes back a buffer [`TlsLayer::take_output`] gave, its bytes
    /// sent, unless it grew past `keep_up_to` bytes (a large reply's
    /// room is given back to the allocator) or more waits already.
    pub fn give_back(&mut self, buf: Vec<u8>, keep_up_to: usize) {
        if self.out.used == 0 && buf.capacity() <= keep_up_to {
            self.out = Outgoing { buf, used: 0 };
        }
    }

    /// Lets go of the buffer for sending when nothing waits in it and it
    /// holds more than `bytes` (an idle connection keeps no large room).
    pub fn shrink_output(&mut self, bytes: usize) {
        if self.out.used == 0 && self.out.buf.capacity() > bytes {
            self.out = Outgoing::default();
        }
    }

    /// Queues close_notify (sent with the next [`TlsLayer::take_output`]).
    /// Before the handshake ends there is nothing to close politely.
    pub fn close_notify(&mut self) {
        for _ in 0..MAX_FLUSH_STEPS {
            let done =
                either!(&mut self.side, conn => close_turn(conn, &mut self.out, &mut self.early));
            if done {
                return;
            }
        }
    }
}

/// One turn of `conn`'s state machine over `raw`: plaintext to `plain`,
/// messages to send to `out`; what it consumed leaves `raw`.
fn turn<C: Records>(
    conn: &mut C,
    raw: &mut BytesMut,
    plain: &mut BytesMut,
    out: &mut Outgoing,
) -> Result<Step, rustls::Error> {
    let UnbufferedStatus { mut discard, state } = conn.process(&mut raw[..]);
    let step = match state {
        Err(e) => Err(e),
        Ok(ConnectionState::ReadTraffic(mut traffic)) => {
            let mut result = Ok(Step::Read);
            while let Some(record) = traffic.next_record() {
                match record {
                    Ok(record) => {
                        discard += record.discard;
                        plain.extend_from_slice(record.payload);
                    }
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
            result
        }
        Ok(ConnectionState::EncodeTlsData(mut encode)) => {
            encode_into(&mut encode, out);
            Ok(Step::Progress)
        }
        // Sent with the rest of `out`, before anyone waits for the peer
        // (every caller flushes `out` before it reads again).
        Ok(ConnectionState::TransmitTlsData(transmit)) => {
            transmit.done();
            Ok(Step::Progress)
        }
        Ok(ConnectionState::BlockedHandshake) => Ok(Step::Blocked),
        Ok(ConnectionState::WriteTraffic(_)) => Ok(Step::Ready),
        Ok(ConnectionState::PeerClosed | ConnectionState::Closed) => Ok(Step::PeerClosed),
        // Early data (never accepted: the configuration's
        // max_early_data_size stays 0), and states of later versions.
        Ok(other) => Err(rustls::Error::General(format!(
            "unexpected TLS state {other:?}"
        ))),
    };
    raw.advance(discard.min(raw.len()));
    step
}

/// Encodes a pending message onto `out`, given as much room as rustls
/// says it needs.
fn encode_into<Data>(encode: &mut EncodeTlsData<'_, Data>, out: &mut Outgoing) {
    let need = match encode.encode(&mut []) {
        Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
            required_size
        }
        // Empty, or already encoded: nothing to add.
        Ok(_) | Err(_) => return,
    };
    if let Ok(n) = encode.encode(out.room(need)) {
        out.commit(n);
    }
}

/// Encrypts `plain` onto `out` (records of at most 16 KiB).
fn encrypt_into<Data>(
    traffic: &mut WriteTraffic<'_, Data>,
    plain: &[u8],
    out: &mut Outgoing,
) -> Result<(), EncryptError> {
    let records = plain.len() / MAX_FRAGMENT + 1;
    let mut room = plain.len() + records * RECORD_OVERHEAD;
    loop {
        match traffic.encrypt(plain, out.room(room)) {
            Ok(n) => {
                out.commit(n);
                return Ok(());
            }
            // Key updates rustls sends first, or a guess too short.
            Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size }))
                if required_size > room =>
            {
                room = required_size;
            }
            Err(e) => return Err(e),
        }
    }
}

/// One turn towards sending `plain`: `Ok(true)` once its records are on
/// `out`; messages that wait go onto `out` first, and plaintext that
/// waits (none, as callers drain it) goes to `early`.
fn write_turn<C: Records>(
    conn: &mut C,
    plain: &[u8],
    out: &mut Outgoing,
    early: &mut BytesMut,
) -> io::Result<bool> {
    let status = conn.process(&mut []);
    match status.state {
        Ok(ConnectionState::WriteTraffic(mut traffic)) => encrypt_into(&mut traffic, plain, out)
            .map(|()| true)
            .map_err(io::Error::other),
        Ok(state) => other_turn(state, out, early)
            .map(|()| false)
            .ok_or_else(|| io::Error::other("TLS: cannot send application data now")),
        Err(e) => Err(io::Error::new(io::ErrorKind::InvalidData, e)),
    }
}

/// One turn towards close_notify on `out`: `true` when it is there, or
/// when it cannot be sent.
fn close_turn<C: Records>(conn: &mut C, out: &mut Outgoing, early: &mut BytesMut) -> bool {
    let status = conn.process(&mut []);
    match status.state {
        Ok(ConnectionState::WriteTraffic(mut traffic)) => {
            let mut room = 64;
            loop {
                match traffic.queue_close_notify(out.room(room)) {
                    Ok(n) => {
                        out.commit(n);
                        return true;
                    }
                    Err(EncryptError::InsufficientSize(InsufficientSizeError {
                        required_size,
                    })) if required_size > room => room = required_size,
                    Err(_) => return true,
                }
            }
        }
        Ok(state) => other_turn(state, out, early).is_none(),
        Err(_) => true,
    }
}

/// Gets what waits to be sent out after a failure (the alert that tells
/// the peer) onto `out`.
fn flush_pending<C: Records>(conn: &mut C, out: &mut Outgoing, early: &mut BytesMut) {
    for _ in 0..MAX_FLUSH_STEPS {
        let status = conn.process(&mut []);
        match status.state {
            Ok(
                state @ (ConnectionState::EncodeTlsData(_) | ConnectionState::TransmitTlsData(_)),
            ) => {
                let _ = other_turn(state, out, early);
            }
            _ => return,
        }
    }
}

/// The states that stand between a caller and the one it wants (to
/// write, to close): a message to encode onto `out`, one sent, plaintext
/// to keep in `early`, the peer's close_notify (one may still write).
/// `None`: a state that never leads there (a handshake that is not
/// done, a connection closed both ways).
fn other_turn<Data>(
    state: ConnectionState<'_, '_, Data>,
    out: &mut Outgoing,
    early: &mut BytesMut,
) -> Option<()> {
    match state {
        ConnectionState::EncodeTlsData(mut encode) => encode_into(&mut encode, out),
        ConnectionState::TransmitTlsData(transmit) => transmit.done(),
        ConnectionState::ReadTraffic(mut traffic) => {
            while let Some(Ok(record)) = traffic.next_record() {
                early.extend_from_slice(record.payload);
            }
        }
        ConnectionState::PeerClosed => {}
        _ => return None,
    }
    Some(())
}
