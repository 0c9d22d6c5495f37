//! A connection (TCP, or a Unix socket to a local backend) with its read
//! buffer.
//!
//! The buffer lives in the connection, not in a future, so a caller can
//! look at what is buffered between reads and nothing read is ever lost
//! with a dropped future (mini-redis does the same). Reads append to the
//! buffer; callers consume from its front.
//!
//! The stream is split into read and write halves so that a write and the
//! read that waits for its answer can be submitted together
//! ([`Conn::send_and_receive`]): with io_uring that is one system call
//! for both instead of one each.
//!
//! A client that negotiated `CLIENT_COMPRESS` gets the compressed
//! protocol on this connection ([`Conn::start_compression`]): reads go to
//! a raw buffer and come out plain in the read buffer, writes are
//! compressed on their way out. Callers see plain packets either way.
//!
//! A client that sent an SSLRequest gets TLS on this connection
//! ([`Conn::start_tls`]): the same way down, one layer lower (socket ↔
//! [`TlsLayer`] ↔ compression ↔ read buffer). The socket's halves, its
//! descriptor (the worker's peek, shutdown(2)) and the read buffer stay
//! as they are.

use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures_util::future::{select, Either};
use monoio::buf::{IoBuf, IoBufMut, SliceMut};
use monoio::io::{
    AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable,
};
use monoio::net::{TcpStream, UnixStream};
use monoio::BufResult;
use torpor_protocol::compress;

use crate::tls::layer::TlsLayer;

/// Capacity a client connection's read buffer starts with and shrinks
/// back to: enough for the commands of most workloads, small enough that
/// thousands of idle connections stay cheap (io_uring holds the buffer of
/// a pending read).
pub const SMALL_BUFFER: usize = 4 * 1024;

/// A buffer that grew past this while busy is replaced by a small one when
/// the connection goes idle.
const SHRINK_ABOVE: usize = 64 * 1024;

/// A stream's two halves. An enum rather than a type parameter: a
/// session holds client and backend connections of either kind in the
/// same fields, and the match costs nothing next to a system call.
enum Halves {
    Tcp(OwnedReadHalf<TcpStream>, OwnedWriteHalf<TcpStream>),
    Unix(OwnedReadHalf<UnixStream>, OwnedWriteHalf<UnixStream>),
}

/// A stream and the bytes read from it but not yet consumed.
pub struct Conn {
    halves: Halves,
    fd: RawFd,
    /// Bytes read and not yet consumed.
    pub rbuf: BytesMut,
    /// Bytes read and written since [`Conn::take_traffic`] last asked
    /// (plain fields: a connection belongs to one task).
    received: u64,
    sent: u64,
    /// The compressed protocol's state, once it is on.
    compression: Option<Box<Compression>>,
    /// TLS, once the handshake started.
    tls: Option<Box<TlsLayer>>,
}

/// A compressed connection's bytes read and not yet decompressed, and the
/// numbering of the compressed packets it writes.
struct Compression {
    raw: BytesMut,
    encoder: compress::Encoder,
    decoder: compress::Decoder,
}

impl Conn {
    /// Wraps a connected stream (TCP_NODELAY on: every packet we forward is
    /// a complete message someone waits for).
    pub fn new(stream: TcpStream, capacity: usize) -> io::Result<Conn> {
        stream.set_nodelay(true)?;
        let fd = stream.as_raw_fd();
        let (reader, writer) = stream.into_split();
        Ok(Conn::with_halves(Halves::Tcp(reader, writer), fd, capacity))
    }

    /// Wraps a connected Unix stream (nothing to set: a Unix socket
    /// delivers each write at once).
    pub fn new_unix(stream: UnixStream, capacity: usize) -> Conn {
        let fd = stream.as_raw_fd();
        let (reader, writer) = stream.into_split();
        Conn::with_halves(Halves::Unix(reader, writer), fd, capacity)
    }

    fn with_halves(halves: Halves, fd: RawFd, capacity: usize) -> Conn {
        Conn {
            halves,
            fd,
            rbuf: BytesMut::with_capacity(capacity),
            received: 0,
            sent: 0,
            compression: None,
            tls: None,
        }
    }

    /// Turns TLS on (after an SSLRequest) and runs the handshake. Bytes
    /// already buffered came after the SSLRequest: they are the start of
    /// the client's ClientHello. An `InvalidData` error is a client that
    /// did not speak TLS (the alert that says so was sent); the
    /// connection is then good for nothing but closing.
    pub async fn start_tls(
        &mut self,
        config: std::sync::Arc<rustls::ServerConfig>,
    ) -> io::Result<()> {
        let layer = TlsLayer::new(config, &self.rbuf)?;
        self.rbuf.clear();
        self.tls = Some(Box::new(layer));
        self.handshake().await
    }

    /// Turns TLS on as the client (a backend connection, after its
    /// SSLRequest) and runs the handshake; the server's certificate is
    /// verified against `config`'s roots for `name`. An `InvalidData`
    /// error is a handshake that failed (a certificate not trusted).
    pub async fn start_tls_client(
        &mut self,
        config: std::sync::Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
    ) -> io::Result<()> {
        self.tls = Some(Box::new(TlsLayer::client(config, name)?));
        self.handshake().await
    }

    /// Runs the TLS handshake to its end.
    async fn handshake(&mut self) -> io::Result<()> {
        loop {
            let Some(tls) = self.tls.as_mut() else {
                return Err(io::Error::other("TLS is not on"));
            };
            let absorbed = tls.advance();
            let handshaking = tls.is_handshaking();
            // Handshake messages, or the alert that ends a failed one.
            self.flush_tls().await?;
            absorbed?;
            if !handshaking {
                return Ok(());
            }
            if self.read_ciphertext(SMALL_BUFFER).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Whether TLS is on.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The server name a TLS client asked for (SNI), if any.
    pub fn tls_server_name(&self) -> Option<&str> {
        self.tls.as_ref().and_then(|tls| tls.server_name())
    }

    /// The TLS protocol and cipher suite, for the log.
    pub fn tls_description(&self) -> Option<String> {
        self.tls.as_ref().map(|tls| tls.describe())
    }

    /// Reads ciphertext onto the TLS layer's buffer. Returns how many
    /// bytes came; 0: the peer closed.
    async fn read_ciphertext(&mut self, want: usize) -> io::Result<usize> {
        let Some(tls) = self.tls.as_mut() else {
            return Err(io::Error::other("TLS is not on"));
        };
        let mut raw = std::mem::take(&mut tls.raw);
        if raw.capacity() - raw.len() < want {
            raw.reserve(want.max(SMALL_BUFFER));
        }
        let len = raw.len();
        let cap = raw.capacity();
        let target = raw.slice_mut(len..cap);
        let (result, slice) = match &mut self.halves {
            Halves::Tcp(reader, _) => reader.read(target).await,
            Halves::Unix(reader, _) => reader.read(target).await,
        };
        if let Some(tls) = self.tls.as_mut() {
            tls.raw = slice.into_inner();
        }
        self.count_read(&result);
        result
    }

    /// Writes what the TLS layer has to send, and gives its buffer back.
    async fn flush_tls(&mut self) -> io::Result<()> {
        let Some(tls) = self.tls.as_mut().filter(|tls| tls.wants_write()) else {
            return Ok(());
        };
        let (wire, n) = tls.take_output();
        let (result, wire) = self.write_socket(wire.slice(..n)).await;
        if let Some(tls) = self.tls.as_mut() {
            tls.give_back(wire.into_inner(), SHRINK_ABOVE);
        }
        result.map(|_| ())
    }

    /// Reads plaintext onto the end of `buf`: from the socket as it is,
    /// or decrypted when TLS is on (then every byte decryptable is
    /// moved, so nothing waits inside rustls that `buf` does not show).
    /// Returns how many bytes were added; 0 means the peer closed.
    async fn read_plain(
        &mut self,
        mut buf: BytesMut,
        want: usize,
    ) -> (io::Result<usize>, BytesMut) {
        if self.tls.is_none() {
            if buf.capacity() - buf.len() < want {
                buf.reserve(want);
            }
            let len = buf.len();
            let cap = buf.capacity();
            let target = buf.slice_mut(len..cap);
            let (result, slice) = match &mut self.halves {
                Halves::Tcp(reader, _) => reader.read(target).await,
                Halves::Unix(reader, _) => reader.read(target).await,
            };
            self.count_read(&result);
            return (result, slice.into_inner());
        }
        loop {
            let Some(tls) = self.tls.as_mut() else {
                return (Err(io::Error::other("TLS is not on")), buf);
            };
            let decrypted = tls.decrypt(&mut buf);
            // Alerts, key updates: sent before anything else happens.
            if tls.wants_write() {
                if let Err(e) = self.flush_tls().await {
                    return (Err(e), buf);
                }
            }
            match decrypted {
                Err(e) => return (Err(e), buf),
                Ok(d) if d.added > 0 => return (Ok(d.added), buf),
                // close_notify: as a plain socket's end.
                Ok(d) if d.closed => return (Ok(0), buf),
                Ok(_) => {}
            }
            match self.read_ciphertext(want).await {
                Ok(0) => return (Ok(0), buf),
                Ok(_) => {}
                Err(e) => return (Err(e), buf),
            }
        }
    }

    /// Writes plaintext: to the socket as it is, or encrypted.
    async fn write_plain(&mut self, plain: &[u8]) -> io::Result<()> {
        match self.tls.as_mut() {
            None => {
                let (result, _) = self.write_socket(plain.to_vec()).await;
                result.map(|_| ())
            }
            Some(tls) => {
                tls.encrypt(plain)?;
                self.flush_tls().await
            }
        }
    }

    /// Turns the compressed protocol on (after the OK that ends a login
    /// that negotiated `CLIENT_COMPRESS`): from now on bytes read are
    /// decompressed into the read buffer and bytes written compressed.
    /// Bytes already buffered were read before it, so they stay as they
    /// are (a client sends nothing between its login and the OK).
    pub fn start_compression(&mut self) {
        self.compression = Some(Box::new(Compression {
            raw: BytesMut::with_capacity(SMALL_BUFFER),
            encoder: compress::Encoder::new(),
            decoder: compress::Decoder::new(),
        }));
    }

    /// Whether the compressed protocol is on.
    pub fn is_compressed(&self) -> bool {
        self.compression.is_some()
    }

    /// Bytes read and written since the last call, for metrics.
    pub fn take_traffic(&mut self) -> (u64, u64) {
        (
            std::mem::take(&mut self.received),
            std::mem::take(&mut self.sent),
        )
    }

    fn count_read(&mut self, result: &io::Result<usize>) {
        if let Ok(n) = result {
            self.received += *n as u64;
        }
    }

    /// The socket's file descriptor (for shutdown(2) from the worker).
    pub fn raw_fd(&self) -> RawFd {
        self.fd
    }

    fn read_target(&mut self, want: usize) -> SliceMut<BytesMut> {
        let room = self.rbuf.capacity() - self.rbuf.len();
        // An empty buffer with at least half of `want` left reads into
        // that: making the whole room (`reserve` moves an empty buffer's
        // start back to its allocation's) cost ~55 instructions at every
        // command of a client sending one after another, whose 4 KiB
        // buffer asked for 4 KiB with its front used by the last command.
        // The read that finds less than half reclaims it.
        if room < want && !(self.rbuf.is_empty() && room >= want / 2) {
            self.rbuf.reserve(want);
        }
        let buf = std::mem::take(&mut self.rbuf);
        let len = buf.len();
        let cap = buf.capacity();
        buf.slice_mut(len..cap)
    }

    /// Reads more bytes onto the end of the buffer, making room for at
    /// least `want` more. Returns how many arrived; 0 means the peer closed.
    pub async fn read_more(&mut self, want: usize) -> io::Result<usize> {
        if self.compression.is_some() {
            return self.read_more_compressed(want).await;
        }
        if self.tls.is_some() {
            let buf = std::mem::take(&mut self.rbuf);
            let (result, buf) = self.read_plain(buf, want).await;
            self.rbuf = buf;
            return result;
        }
        let target = self.read_target(want);
        let (result, slice) = match &mut self.halves {
            Halves::Tcp(reader, _) => reader.read(target).await,
            Halves::Unix(reader, _) => reader.read(target).await,
        };
        self.rbuf = slice.into_inner();
        self.count_read(&result);
        result
    }

    /// Like [`Conn::read_more`], but a wait longer than `limit` without a
    /// byte ends in a `TimedOut` error. The read is not dropped half done
    /// (io_uring may already be filling the buffer): the socket's read
    /// side is shut, which ends it, so after a time-out the connection is
    /// good for nothing but closing.
    pub async fn read_more_within(&mut self, want: usize, limit: Duration) -> io::Result<usize> {
        let fd = self.fd;
        let read = std::pin::pin!(self.read_more(want));
        let sleep = std::pin::pin!(crate::timer::sleep(limit));
        match select(read, sleep).await {
            Either::Left((read, _)) => read,
            Either::Right(((), read)) => {
                // SAFETY: `fd` is this connection's open socket (it closes
                // only when the connection drops); shutdown(2) only changes
                // its state.
                unsafe {
                    libc::shutdown(fd, libc::SHUT_RD);
                }
                let _ = read.await;
                Err(io::Error::new(io::ErrorKind::TimedOut, "read timeout"))
            }
        }
    }

    /// Writes all of `out` and, in the same submission, reads more onto
    /// the buffer (as [`Conn::read_more`]). Both finish before this
    /// returns: the write's result, `out` handed back, the read's result.
    pub async fn send_and_receive<B: IoBuf>(
        &mut self,
        out: B,
        want: usize,
    ) -> (io::Result<()>, B, io::Result<usize>) {
        if self.tls.is_some() && self.compression.is_none() {
            return self.send_and_receive_tls(out, want).await;
        }
        if self.compression.is_some() || self.tls.is_some() {
            // One after the other: the write is compressed (and then
            // maybe encrypted) first.
            let (written, out) = self.write_all(out).await;
            if written.is_err() {
                return (written, out, Ok(0));
            }
            let read = self.read_more(want).await;
            return (written, out, read);
        }
        let target = self.read_target(want);
        let (written, read) = match &mut self.halves {
            Halves::Tcp(reader, writer) => write_and_read(reader, writer, out, target).await,
            Halves::Unix(reader, writer) => write_and_read(reader, writer, out, target).await,
        };
        let (write_result, out) = written;
        let (read_result, slice) = read;
        self.rbuf = slice.into_inner();
        self.count_read(&read_result);
        if let Ok(n) = write_result {
            self.sent += n as u64;
        }
        (write_result.map(|_| ()), out, read_result)
    }

    /// [`Conn::send_and_receive`] on TLS: `out` is encrypted first, then
    /// its records are written in the same submission as a read of
    /// ciphertext, as on a plain connection; what the read brought is
    /// decrypted (and read further until plaintext or the end comes).
    async fn send_and_receive_tls<B: IoBuf>(
        &mut self,
        out: B,
        want: usize,
    ) -> (io::Result<()>, B, io::Result<usize>) {
        // SAFETY: as in `write_all`: `out` lives, unwritten, until the
        // slice's last use in `encrypt`, before it is handed back.
        let plain = unsafe { std::slice::from_raw_parts(out.read_ptr(), out.bytes_init()) };
        let Some(tls) = self.tls.as_mut() else {
            return (Err(io::Error::other("TLS is not on")), out, Ok(0));
        };
        if let Err(e) = tls.encrypt(plain) {
            return (Err(e), out, Ok(0));
        }
        let (wire, n) = tls.take_output();
        let wire = wire.slice(..n);
        let mut raw = std::mem::take(&mut tls.raw);
        if raw.capacity() - raw.len() < want {
            raw.reserve(want.max(SMALL_BUFFER));
        }
        let len = raw.len();
        let cap = raw.capacity();
        let target = raw.slice_mut(len..cap);
        let (written, read) = match &mut self.halves {
            Halves::Tcp(reader, writer) => write_and_read(reader, writer, wire, target).await,
            Halves::Unix(reader, writer) => write_and_read(reader, writer, wire, target).await,
        };
        let (write_result, wire) = written;
        let (read_result, slice) = read;
        if let Some(tls) = self.tls.as_mut() {
            tls.raw = slice.into_inner();
            tls.give_back(wire.into_inner(), SHRINK_ABOVE);
        }
        self.count_read(&read_result);
        if let Ok(n) = write_result {
            self.sent += n as u64;
        }
        if let Err(e) = write_result {
            return (Err(e), out, Ok(0));
        }
        let read = match read_result {
            Ok(0) => Ok(0),
            // Decrypts what came (reading on while no whole record has).
            Ok(_) => {
                let buf = std::mem::take(&mut self.rbuf);
                let (result, buf) = self.read_plain(buf, want).await;
                self.rbuf = buf;
                result
            }
            Err(e) => Err(e),
        };
        (Ok(()), out, read)
    }

    /// Waits until the socket has bytes to read (or its peer closed, or
    /// its read side was shut), holding no buffer: an idle client costs
    /// no read buffer (io_uring holds the buffer of a pending read; a
    /// readiness wait is a poll and holds none). The caller then puts a
    /// buffer in [`Conn::rbuf`] and reads. Only on a connection with
    /// nothing buffered and no compression: bytes already decompressed
    /// (or, for a stream that decrypts, already decrypted) would never
    /// make the socket readable.
    pub async fn readable(&self) -> io::Result<()> {
        // SAFETY: the halves share the stream through this cell and each
        // takes `&mut` to it for its own operations (monoio's split); the
        // readiness wait only clones the stream's fd into its poll
        // operation and reads nothing else of it.
        match &self.halves {
            Halves::Tcp(reader, _) => unsafe { &*reader.0.get() }.readable(false).await,
            Halves::Unix(reader, _) => unsafe { &*reader.0.get() }.readable(false).await,
        }
    }

    /// Reads what the socket holds now onto the end of the buffer, with
    /// one plain nonblocking `recv` (after [`Conn::readable`] said there
    /// is something: no second trip through the runtime for it). `Ok(0)`
    /// means the peer closed; `WouldBlock`, that nothing was there after
    /// all. Uncompressed connections only, and only on a stream whose
    /// bytes are the protocol's (a stream that decrypts must read
    /// through its own layer instead: this reads the socket itself).
    pub fn read_ready(&mut self) -> io::Result<usize> {
        if self.rbuf.capacity() == self.rbuf.len() {
            self.rbuf.reserve(SMALL_BUFFER);
        }
        let spare = self.rbuf.spare_capacity_mut();
        // SAFETY: `fd` is this connection's open socket; recv(2) writes at
        // most `spare.len()` bytes into the buffer's spare capacity, which
        // the slice covers.
        let n = unsafe {
            libc::recv(
                self.fd,
                spare.as_mut_ptr().cast(),
                spare.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        // SAFETY: recv(2) initialized the first `n` bytes of the spare
        // capacity.
        unsafe { self.rbuf.set_len(self.rbuf.len() + n) };
        self.received += n as u64;
        Ok(n)
    }

    /// Writes all of `out` and, in the same submission, waits until the
    /// socket is readable (as [`Conn::readable`]). `written` gets `out`
    /// back as soon as the write is done, so that it need not be held
    /// while the client thinks. Uncompressed connections only.
    pub async fn send_then_readable<B: IoBuf>(
        &mut self,
        out: B,
        written: impl FnOnce(B),
    ) -> (io::Result<()>, io::Result<()>) {
        let n = out.bytes_init();
        let (write, ready) = match &mut self.halves {
            Halves::Tcp(reader, writer) => {
                // SAFETY: as in `readable`.
                let stream = unsafe { &*reader.0.get() };
                let write = std::pin::pin!(async {
                    let (result, out) = writer.write_all(out).await;
                    written(out);
                    result
                });
                join_pinned(write, std::pin::pin!(stream.readable(false))).await
            }
            Halves::Unix(reader, writer) => {
                // SAFETY: as in `readable`.
                let stream = unsafe { &*reader.0.get() };
                let write = std::pin::pin!(async {
                    let (result, out) = writer.write_all(out).await;
                    written(out);
                    result
                });
                join_pinned(write, std::pin::pin!(stream.readable(false))).await
            }
        };
        if write.is_ok() {
            self.sent += n as u64;
        }
        (write.map(|_| ()), ready)
    }

    /// Writes all of `buf` and hands it back.
    pub async fn write_all<B: IoBuf>(&mut self, buf: B) -> (io::Result<()>, B) {
        if self.compression.is_some() || self.tls.is_some() {
            // SAFETY: an `IoBuf` promises that `read_ptr()` points to
            // `bytes_init()` initialized bytes that stay valid while the
            // buffer lives; `buf` lives (and is not written) until the
            // slice's last use in `write_layered`, which returns before
            // `buf` is handed back.
            let plain = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
            let result = self.write_layered(plain).await;
            return (result, buf);
        }
        let (result, buf) = self.write_whole(buf).await;
        if let Ok(n) = result {
            self.sent += n as u64;
        }
        (result.map(|_| ()), buf)
    }

    /// Writes the first `n` buffered (read) bytes of `from` to this
    /// connection without copying them, then drops them from `from`.
    pub async fn forward_from(&mut self, from: &mut BytesMut, n: usize) -> io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        if self.compression.is_some() || self.tls.is_some() {
            let result = match from.get(..n) {
                Some(plain) => self.write_layered(plain).await,
                None => Err(io::Error::other("forwarding more than is buffered")),
            };
            from.advance(n.min(from.len()));
            return result;
        }
        let buf = std::mem::take(from);
        let (result, slice) = self.write_whole(buf.slice(0..n)).await;
        *from = slice.into_inner();
        from.advance(n);
        if result.is_ok() {
            self.sent += n as u64;
        }
        result.map(|_| ())
    }

    /// Writes `plain` through the layers that are on: compressed, then
    /// encrypted.
    async fn write_layered(&mut self, plain: &[u8]) -> io::Result<()> {
        let Some(compression) = self.compression.as_mut() else {
            return self.write_plain(plain).await;
        };
        let mut wire = BytesMut::with_capacity(plain.len() / 2 + compress::HEADER_LEN + 16);
        compression.encoder.encode(plain, &mut wire);
        if self.tls.is_some() {
            return self.write_plain(&wire).await;
        }
        let (result, _) = self.write_socket(wire).await;
        result.map(|_| ())
    }

    /// Reads compressed bytes until at least one whole compressed packet
    /// came, and decompresses what came into the read buffer. Returns how
    /// many plain bytes were added; 0 means the peer closed.
    async fn read_more_compressed(&mut self, want: usize) -> io::Result<usize> {
        loop {
            let Some(compression) = self.compression.as_mut() else {
                return Err(io::Error::other("the connection is not compressed"));
            };
            let before = self.rbuf.len();
            let last = compression
                .decoder
                .decode(&mut compression.raw, &mut self.rbuf)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            if let Some(seq) = last {
                // Replies continue the numbering of what the client sent.
                compression.encoder.next_seq = seq.wrapping_add(1);
            }
            let added = self.rbuf.len() - before;
            if added > 0 {
                return Ok(added);
            }
            // No whole packet yet: read more of the raw stream (decrypted
            // when TLS is on).
            let raw = std::mem::take(&mut compression.raw);
            let (result, raw) = self.read_plain(raw, want.max(SMALL_BUFFER)).await;
            if let Some(compression) = self.compression.as_mut() {
                compression.raw = raw;
            }
            if result? == 0 {
                return Ok(0);
            }
        }
    }

    /// Writes all of `buf` to the socket as it is (plain connections,
    /// and the wire bytes of compressed or encrypted ones), counted.
    async fn write_socket<B: IoBuf>(&mut self, buf: B) -> BufResult<usize, B> {
        let (result, buf) = self.write_whole(buf).await;
        if let Ok(n) = result {
            self.sent += n as u64;
        }
        (result, buf)
    }

    async fn write_whole<B: IoBuf>(&mut self, buf: B) -> BufResult<usize, B> {
        match &mut self.halves {
            Halves::Tcp(_, writer) => writer.write_all(buf).await,
            Halves::Unix(_, writer) => writer.write_all(buf).await,
        }
    }

    /// Consumes the first `n` buffered bytes.
    pub fn consume(&mut self, n: usize) {
        self.rbuf.advance(n);
    }

    /// Gives a buffer that grew large back to the allocator once it is
    /// empty.
    pub fn shrink_if_idle(&mut self) {
        if self.rbuf.is_empty() && self.rbuf.capacity() > SHRINK_ABOVE {
            self.rbuf = BytesMut::with_capacity(SMALL_BUFFER);
        }
        if let Some(tls) = self.tls.as_mut() {
            // The ciphertext buffer: the next read reserves what it needs.
            if tls.raw.is_empty() && tls.raw.capacity() > SMALL_BUFFER {
                tls.raw = BytesMut::new();
            }
            // The room records are encrypted into: as the read buffer.
            tls.shrink_output(SHRINK_ABOVE);
        }
    }

    /// Shuts the write side down, so the peer sees an orderly close (on
    /// TLS, close_notify first).
    pub async fn close(mut self) {
        if let Some(tls) = self.tls.as_mut() {
            tls.close_notify();
            let _ = self.flush_tls().await;
        }
        let _ = match &mut self.halves {
            Halves::Tcp(_, writer) => writer.shutdown().await,
            Halves::Unix(_, writer) => writer.shutdown().await,
        };
    }
}

/// Writes all of `out` and reads into `target`, submitted together.
async fn write_and_read<R: AsyncReadRent, W: AsyncWriteRent, B: IoBuf>(
    reader: &mut R,
    writer: &mut W,
    out: B,
    target: SliceMut<BytesMut>,
) -> (BufResult<usize, B>, BufResult<usize, SliceMut<BytesMut>>) {
    let write = std::pin::pin!(writer.write_all(out));
    let read = std::pin::pin!(reader.read(target));
    join_pinned(write, read).await
}

/// Runs `first` and `second` together until both are done.
///
/// A join written out by hand: the callers pin both futures where they
/// make them, and they are polled there, where `monoio::join!` moves
/// each into a wrapper and the wrappers into its own state: copies of
/// futures some hundred bytes large on every statement's round trip,
/// about 400 of a point select's 10 000 instructions (callgrind).
async fn join_pinned<A: Future, B: Future>(
    mut first: Pin<&mut A>,
    mut second: Pin<&mut B>,
) -> (A::Output, B::Output) {
    let mut first_done = None;
    let mut second_done = None;
    std::future::poll_fn(move |cx| {
        // A future that finished is never polled again.
        if first_done.is_none() {
            if let Poll::Ready(output) = first.as_mut().poll(cx) {
                first_done = Some(output);
            }
        }
        if second_done.is_none() {
            if let Poll::Ready(output) = second.as_mut().poll(cx) {
                second_done = Some(output);
            }
        }
        match (first_done.take(), second_done.take()) {
            (Some(first), Some(second)) => Poll::Ready((first, second)),
            (first, second) => {
                first_done = first;
                second_done = second;
                Poll::Pending
            }
        }
    })
    .await
}

/// Who is at the other end of a client connection, for logs and for the
/// host part of error texts (`'user'@'host'`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// A TCP client.
    Tcp(std::net::SocketAddr),
    /// A client on Torpor's Unix socket (this host).
    Local,
}

impl Peer {
    /// The host as MariaDB would name it: the IP, or `localhost` for a
    /// socket client.
    pub fn host(&self) -> String {
        match self {
            Peer::Tcp(addr) => addr.ip().to_string(),
            Peer::Local => "localhost".to_string(),
        }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Tcp(std::net::SocketAddr::V4(addr)) => write_ipv4(f, addr),
            Peer::Tcp(addr) => write!(f, "{addr}"),
            Peer::Local => f.write_str("unix-socket"),
        }
    }
}

/// Writes `addr` as `a.b.c.d:port`, as its `Display` does, in one piece:
/// the peer is in both lines every connection logs, and the standard
/// `Display` goes through the formatter once per octet (~1 700
/// instructions a line, against ~200).
fn write_ipv4(f: &mut std::fmt::Formatter<'_>, addr: &std::net::SocketAddrV4) -> std::fmt::Result {
    // "255.255.255.255:65535" is 21 bytes.
    let mut text = [0u8; 21];
    let mut len = 0;
    let mut digits = itoa::Buffer::new();
    let mut push = |part: &[u8]| {
        if let Some(slot) = text.get_mut(len..len + part.len()) {
            slot.copy_from_slice(part);
            len += part.len();
        }
    };
    for (index, octet) in addr.ip().octets().into_iter().enumerate() {
        if index > 0 {
            push(b".");
        }
        push(digits.format(octet).as_bytes());
    }
    push(b":");
    push(digits.format(addr.port()).as_bytes());
    // Digits, dots and a colon: ASCII.
    f.write_str(std::str::from_utf8(&text[..len]).map_err(|_| std::fmt::Error)?)
}

#[cfg(test)]
mod peer_tests {
    use super::Peer;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_peer_reads_as_its_address_does(ip: u32, port: u16) {
            let addr = std::net::SocketAddr::from((std::net::Ipv4Addr::from(ip), port));
            prop_assert_eq!(Peer::Tcp(addr).to_string(), addr.to_string());
        }
    }
}

#[cfg(test)]
mod read_tests {
    use super::{Conn, SMALL_BUFFER};
    use std::io::Write;

    /// A client sending command after command: each read keeps the
    /// command whole, and the buffer's used front is reclaimed only when
    /// less than half of its room is left, not at every read.
    #[test]
    fn commands_read_one_after_another_reclaim_the_buffer_only_when_it_runs_short() {
        let mut runtime = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().expect("socket pair");
            ours.set_nonblocking(true).expect("nonblocking");
            let stream = monoio::net::UnixStream::from_std(ours).expect("monoio stream");
            let mut conn = Conn::new_unix(stream, SMALL_BUFFER);
            let mut reclaims = 0;
            for i in 0..300u32 {
                let command = format!("SELECT {i:034}");
                theirs.write_all(command.as_bytes()).expect("write");
                let room_before = conn.rbuf.capacity();
                let n = conn.read_more(SMALL_BUFFER).await.expect("read");
                assert_eq!(&conn.rbuf[..], command.as_bytes(), "command {i}");
                // A read into the room left keeps the capacity (counted
                // from the buffer's start); a reclaim moves the start
                // back, and the capacity grows.
                if conn.rbuf.capacity() > room_before {
                    reclaims += 1;
                }
                conn.consume(n);
            }
            // 300 commands of 41 bytes through 4 KiB: ~50 reads between
            // reclaims (one at each read before this change).
            assert!((4..=8).contains(&reclaims), "{reclaims} reclaims");
        });
    }
}
