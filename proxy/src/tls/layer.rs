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

use std::io::{self, BufRead, Write};
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

/// One connection's TLS state: the server side on the client leg, the
/// client side on the backend leg.
pub struct TlsLayer {
    conn: Connection,
    /// Ciphertext read from the socket and not yet given to rustls.
    pub raw: BytesMut,
}

/// What a call to [`TlsLayer::decrypt`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decrypted {
    /// Plaintext bytes appended.
    pub added: usize,
    /// The peer sent close_notify: no more will come.
    pub closed: bool,
}

impl TlsLayer {
    /// A server-side session; `already` holds bytes the client sent right
    /// after its SSLRequest, read with it (the start of its ClientHello).
    pub fn new(config: Arc<ServerConfig>, already: &[u8]) -> io::Result<TlsLayer> {
        let conn = ServerConnection::new(config).map_err(io::Error::other)?;
        Ok(TlsLayer {
            conn: Connection::Server(conn),
            raw: BytesMut::from(already),
        })
    }

    /// A client-side session to `name` (a backend connection).
    pub fn client(config: Arc<ClientConfig>, name: ServerName<'static>) -> io::Result<TlsLayer> {
        let conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
        Ok(TlsLayer {
            conn: Connection::Client(conn),
            raw: BytesMut::new(),
        })
    }

    /// Whether the handshake is still under way.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// The negotiated cipher suite and protocol version, for the log.
    pub fn describe(&self) -> String {
        let suite = self
            .conn
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()))
            .unwrap_or_default();
        let version = self
            .conn
            .protocol_version()
            .map(|v| format!("{v:?}"))
            .unwrap_or_default();
        format!("{version} {suite}")
    }

    /// The server name the client asked for (SNI), if any.
    pub fn server_name(&self) -> Option<&str> {
        match &self.conn {
            Connection::Server(conn) => conn.server_name(),
            Connection::Client(_) => None,
        }
    }

    /// Gives rustls the ciphertext buffered in [`TlsLayer::raw`] and moves
    /// the plaintext it yields onto the end of `plain`, until both are
    /// exhausted (rustls holds at most 16 KiB of plaintext: it is drained
    /// between records, so that nothing stays inside it that a caller
    /// looking at its read buffer would not see). A TLS error is an
    /// `InvalidData` error; the alert that tells the peer waits in
    /// [`TlsLayer::take_output`].
    pub fn decrypt(&mut self, plain: &mut BytesMut) -> io::Result<Decrypted> {
        let mut added = 0;
        loop {
            // Copied straight out of rustls' own buffer: reading into a
            // zeroed 16 KiB slice of `plain` cost a 16 KiB memset per call,
            // two per message.
            loop {
                let mut reader = self.conn.reader();
                let chunk = match reader.fill_buf() {
                    Ok(chunk) => chunk,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                };
                if chunk.is_empty() {
                    // close_notify, and everything before it taken.
                    return Ok(Decrypted {
                        added,
                        closed: true,
                    });
                }
                let n = chunk.len();
                plain.extend_from_slice(chunk);
                reader.consume(n);
                added += n;
            }
            if self.raw.is_empty() || self.absorb()? == 0 {
                return Ok(Decrypted {
                    added,
                    closed: false,
                });
            }
        }
    }

    /// Gives rustls what it takes of the buffered ciphertext (one read:
    /// rustls refuses more while 16 KiB of plaintext wait in it) and
    /// processes it. Returns how many bytes it took.
    pub fn absorb(&mut self) -> io::Result<usize> {
        let mut unread: &[u8] = &self.raw;
        let taken = self.conn.read_tls(&mut unread)?;
        self.raw.advance(taken);
        self.conn
            .process_new_packets()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(taken)
    }

    /// Encrypts `plain` and appends the records to `wire`.
    pub fn encrypt(&mut self, plain: &[u8], wire: &mut Vec<u8>) -> io::Result<()> {
        let mut rest = plain;
        while !rest.is_empty() {
            let n = self.conn.writer().write(rest)?;
            rest = rest.get(n..).unwrap_or_default();
            self.take_output(wire)?;
        }
        Ok(())
    }

    /// Appends what rustls has to send (handshake messages, tickets,
    /// alerts, records) to `wire`.
    pub fn take_output(&mut self, wire: &mut Vec<u8>) -> io::Result<()> {
        while self.conn.wants_write() {
            if self.conn.write_tls(wire)? == 0 {
                break;
            }
        }
        Ok(())
    }

    /// Queues close_notify (sent with the next [`TlsLayer::take_output`]).
    pub fn close_notify(&mut self) {
        self.conn.send_close_notify();
    }
}
