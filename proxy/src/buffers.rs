//! A worker's pools of read and reply buffers.
//!
//! A backend connection needs a large buffer only while a reply streams
//! through it; between commands it needs none. A client connection needs
//! a small one only from the moment its client has sent something until
//! the reply is written; an idle client holds none (it waits for its
//! socket to become readable, see [`crate::net::Conn::readable`]). Taking
//! buffers from the worker's pools when they are needed and giving them
//! back after keeps idle sessions small without an allocation per
//! command. Each pool keeps a bounded number of free buffers, so after a
//! burst of busy connections the rest goes back to the allocator.

use std::cell::RefCell;

use bytes::BytesMut;

use crate::net::SMALL_BUFFER;

/// Size of the large pooled buffers (backend replies).
pub const LARGE_BUFFER: usize = 128 * 1024;

/// How many free large buffers a worker keeps (32 MiB).
const KEEP_LARGE: usize = 256;

/// How many free small buffers a worker keeps (4 MiB): enough for every
/// session of a busy worker to have one in hand.
const KEEP_SMALL: usize = 1024;

/// Free buffers of one size, of one worker.
#[derive(Debug)]
pub struct BufferPool {
    size: usize,
    keep: usize,
    free: RefCell<Vec<BytesMut>>,
}

impl Default for BufferPool {
    /// A pool of large buffers.
    fn default() -> Self {
        BufferPool::large()
    }
}

impl BufferPool {
    /// A pool of [`LARGE_BUFFER`]s.
    pub fn large() -> BufferPool {
        BufferPool::new(LARGE_BUFFER, KEEP_LARGE)
    }

    /// A pool of [`SMALL_BUFFER`]s.
    pub fn small() -> BufferPool {
        BufferPool::new(SMALL_BUFFER, KEEP_SMALL)
    }

    fn new(size: usize, keep: usize) -> BufferPool {
        BufferPool {
            size,
            keep,
            free: RefCell::new(Vec::new()),
        }
    }

    /// An empty buffer with at least half the pool's size left (see
    /// [`BufferPool::give`]).
    pub fn take(&self) -> BytesMut {
        self.free
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| BytesMut::with_capacity(self.size))
    }

    /// Takes back an empty buffer; one that still holds bytes, or that
    /// has less than half the pool's size left even once its memory is
    /// reclaimed, or that grew well past the pool's size, is dropped
    /// instead, as is any beyond the pool's bound.
    ///
    /// A buffer with at least half the size left comes back as it is,
    /// its used front not reclaimed: `reserve` would move its start back
    /// (~55 instructions), and buffers come back after every command. A
    /// read that needs the room reclaims it ([`crate::net::Conn`]'s
    /// reads make room when less than half of what they want is left).
    pub fn give(&self, mut buf: BytesMut) {
        if !buf.is_empty() || buf.capacity() == 0 {
            return;
        }
        let least = self.size / 2;
        if buf.capacity() < least {
            // Reclaims the whole allocation when nothing else refers to it.
            buf.reserve(self.size);
        }
        let mut free = self.free.borrow_mut();
        if buf.capacity() >= least && buf.capacity() <= 2 * self.size && free.len() < self.keep {
            free.push(buf);
        }
    }

    /// Free buffers held.
    pub fn len(&self) -> usize {
        self.free.borrow().len()
    }

    /// Whether no free buffer is held.
    pub fn is_empty(&self) -> bool {
        self.free.borrow().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;

    #[test]
    fn buffers_come_back_as_they_are_or_whole() {
        let pool = BufferPool::default();
        // Little of it used: back as it is, its front not reclaimed.
        let mut buf = pool.take();
        buf.extend_from_slice(&[1u8; 1000]);
        buf.advance(1000);
        pool.give(buf);
        assert_eq!(pool.len(), 1);
        let mut again = pool.take();
        assert_eq!(again.capacity(), LARGE_BUFFER - 1000);
        assert!(pool.is_empty());
        // Most of it used: its memory reclaimed whole.
        let most = LARGE_BUFFER * 3 / 4;
        again.extend_from_slice(&vec![2u8; most]);
        again.advance(most);
        assert!(again.capacity() < LARGE_BUFFER / 2);
        pool.give(again);
        assert_eq!(pool.len(), 1);
        assert!(pool.take().capacity() >= LARGE_BUFFER);
        let mut busy = BytesMut::with_capacity(LARGE_BUFFER);
        busy.extend_from_slice(b"x");
        pool.give(busy);
        assert!(pool.is_empty(), "a buffer with bytes in it is not pooled");
    }

    #[test]
    fn small_buffers_are_kept_up_to_the_bound_and_grown_ones_dropped() {
        let pool = BufferPool::small();
        let taken: Vec<BytesMut> = (0..KEEP_SMALL + 10).map(|_| pool.take()).collect();
        assert!(taken.iter().all(|b| b.capacity() >= SMALL_BUFFER));
        for buf in taken {
            pool.give(buf);
        }
        assert_eq!(
            pool.len(),
            KEEP_SMALL,
            "what a burst leaves beyond the bound is freed"
        );
        let mut grown = pool.take();
        grown.reserve(10 * SMALL_BUFFER);
        pool.give(grown);
        assert_eq!(pool.len(), KEEP_SMALL - 1, "a buffer that grew is not kept");
        // A session that never had a buffer gives nothing back.
        pool.give(BytesMut::new());
        assert_eq!(pool.len(), KEEP_SMALL - 1);
    }
}
