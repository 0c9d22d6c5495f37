//! The protocol crate's error type.

/// Why bytes from a peer could not be understood.
///
/// Every variant is the peer's fault: the bytes break the protocol. "Not
/// enough bytes yet" is never an error in this crate; functions return
/// `None` for it instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A packet or field is shorter than its own framing says, or has
    /// impossible contents.
    #[error("malformed {what}")]
    Malformed {
        /// Which packet or field was malformed.
        what: &'static str,
    },
    /// A packet arrived with a sequence id other than the expected one.
    #[error("packet out of order: expected sequence id {expected}, got {got}")]
    OutOfOrder {
        /// The sequence id that should have come next.
        expected: u8,
        /// The sequence id that came.
        got: u8,
    },
    /// A logical payload is larger than the configured limit.
    #[error("packet of {size} bytes is larger than the limit of {limit} bytes")]
    TooLarge {
        /// Size of the payload (so far), in bytes.
        size: usize,
        /// The configured limit, in bytes.
        limit: usize,
    },
    /// A packet that is valid on its own came where the protocol does not
    /// allow it.
    #[error("unexpected {what}")]
    Unexpected {
        /// What came.
        what: &'static str,
    },
}

impl ProtocolError {
    /// Shorthand for [`ProtocolError::Malformed`].
    pub fn malformed(what: &'static str) -> Self {
        ProtocolError::Malformed { what }
    }
}
