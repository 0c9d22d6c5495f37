//! A TCP connection with its read buffer.
//!
//! The buffer lives in the connection, not in a future, so a read that is
//! interrupted (shutdown) never loses bytes that were already read, and a
//! caller can look at what is buffered between reads (mini-redis does the
//! same). Reads append to the buffer; callers consume from its front.

use std::io;

use bytes::{Buf, BytesMut};
use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

/// Capacity a connection's read buffer starts with and shrinks back to.
pub const SMALL_BUFFER: usize = 16 * 1024;

/// A buffer that grew past this while busy is replaced by a small one when
/// the connection goes idle, so that thousands of idle connections stay
/// cheap.
const SHRINK_ABOVE: usize = 256 * 1024;

/// A TCP stream and the bytes read from it but not yet consumed.
pub struct Conn {
    stream: TcpStream,
    /// Bytes read and not yet consumed.
    pub rbuf: BytesMut,
}

impl Conn {
    /// Wraps a connected stream (TCP_NODELAY on: every packet we forward is
    /// a complete message someone waits for).
    pub fn new(stream: TcpStream, capacity: usize) -> io::Result<Conn> {
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            rbuf: BytesMut::with_capacity(capacity),
        })
    }

    /// Reads more bytes onto the end of the buffer, making room for at
    /// least `want` more. Returns how many arrived; 0 means the peer closed.
    pub async fn read_more(&mut self, want: usize) -> io::Result<usize> {
        if self.rbuf.capacity() - self.rbuf.len() < want {
            self.rbuf.reserve(want);
        }
        let buf = std::mem::take(&mut self.rbuf);
        let len = buf.len();
        let cap = buf.capacity();
        let (result, slice) = self.stream.read(buf.slice_mut(len..cap)).await;
        self.rbuf = slice.into_inner();
        result
    }

    /// Writes all of `buf` and hands it back.
    pub async fn write_all<B: IoBuf>(&mut self, buf: B) -> (io::Result<()>, B) {
        let (result, buf) = self.stream.write_all(buf).await;
        (result.map(|_| ()), buf)
    }

    /// Writes the first `n` buffered (read) bytes of `from` to this
    /// connection without copying them, then drops them from `from`.
    pub async fn forward_from(&mut self, from: &mut BytesMut, n: usize) -> io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        let buf = std::mem::take(from);
        let (result, slice) = self.stream.write_all(buf.slice(0..n)).await;
        *from = slice.into_inner();
        from.advance(n);
        result.map(|_| ())
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
    }

    /// Shuts the write side down, so the peer sees an orderly close.
    pub async fn close(mut self) {
        let _ = self.stream.shutdown().await;
    }
}
