//! A worker's pool of large read buffers.
//!
//! A backend connection needs a large buffer only while a reply streams
//! through it; between commands it needs none. Taking one from the pool
//! for the reply and giving it back after keeps idle sessions small (a few
//! KiB each) without a large allocation per command.

use std::cell::RefCell;

use bytes::BytesMut;

/// Size of the pooled buffers.
pub const LARGE_BUFFER: usize = 128 * 1024;

/// How many free buffers a worker keeps.
const KEEP: usize = 256;

/// Free large buffers of one worker.
#[derive(Debug, Default)]
pub struct BufferPool {
    free: RefCell<Vec<BytesMut>>,
}

impl BufferPool {
    /// An empty buffer of [`LARGE_BUFFER`] capacity.
    pub fn take(&self) -> BytesMut {
        self.free
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| BytesMut::with_capacity(LARGE_BUFFER))
    }

    /// Takes back an empty buffer; one that still holds bytes, or whose
    /// memory cannot be reclaimed whole, is dropped instead.
    pub fn give(&self, mut buf: BytesMut) {
        if !buf.is_empty() {
            return;
        }
        // Reclaims the whole allocation when nothing else refers to it.
        buf.reserve(LARGE_BUFFER);
        let mut free = self.free.borrow_mut();
        if buf.capacity() >= LARGE_BUFFER && buf.capacity() <= 2 * LARGE_BUFFER && free.len() < KEEP
        {
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
    fn buffers_come_back_whole() {
        let pool = BufferPool::default();
        let mut buf = pool.take();
        buf.extend_from_slice(&[1u8; 1000]);
        buf.advance(1000);
        pool.give(buf);
        assert_eq!(pool.len(), 1);
        let again = pool.take();
        assert!(again.capacity() >= LARGE_BUFFER);
        assert!(pool.is_empty());
        let mut busy = BytesMut::with_capacity(LARGE_BUFFER);
        busy.extend_from_slice(b"x");
        pool.give(busy);
        assert!(pool.is_empty(), "a buffer with bytes in it is not pooled");
    }
}
