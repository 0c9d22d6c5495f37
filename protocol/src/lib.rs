//! The MariaDB/MySQL client/server wire protocol, sans-I/O.
//!
//! Nothing here opens a socket or knows about services: every function
//! decodes from or encodes into byte buffers, and "need more bytes" is a
//! normal answer (`None`), never an error. Parsing is checked everywhere:
//! peer bytes can make a function return [`ProtocolError`], never panic.
//!
//! Map of the modules:
//!
//! - [`frame`]: packet headers (3-byte length + sequence id), splitting a
//!   payload into packets with the 16 MiB continuation rule, and reading
//!   whole logical payloads back.
//! - [`caps`]: the 64-bit capability set (MySQL's 32 bits + MariaDB's
//!   extended 32 bits) and what Torpor offers.
//! - [`auth`]: `mysql_native_password` scramble maths: compute, verify,
//!   and recover `SHA1(password)` from a client's response.
//! - [`handshake`]: the server greeting (v10), the client's
//!   HandshakeResponse41 / SSLRequest, auth switch, COM_CHANGE_USER.
//! - [`packets`]: OK / ERR / EOF: parsing the parts a proxy needs and
//!   building the ones it sends itself.
//! - [`command`]: the commands a client may send and which reply ends each.
//! - [`compress`]: the compressed protocol's framing around the packet
//!   stream (zlib).
//! - [`reply`]: the reply tracker, a state machine that finds where a
//!   command's reply ends (result sets, multi-results, LOCAL INFILE,
//!   prepared statements, cursors) by looking at packet heads only.
//! - [`stmt`]: statement ids and parameter types of binary-protocol
//!   commands.
//! - [`resultset`]: text rows of the result sets the proxy asks for.
//! - [`session_track`]: OK packets in full, with the session-state
//!   changes MariaDB reports in them.
//! - [`lenenc`]: length-encoded integers and strings.
//! - [`error`]: the crate's error type.

// Peer bytes must never panic the proxy (sqlx #4139, go-mysql #557): no
// unwrap, expect, panic or unchecked indexing outside tests. Where an index
// truly cannot fail, an `#[allow]` next to it says why.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

pub mod auth;
pub mod caps;
pub mod command;
pub mod compress;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod lenenc;
pub mod packets;
pub mod reply;
pub mod resultset;
pub mod session_track;
pub mod stmt;

pub use caps::Capabilities;
pub use error::ProtocolError;
pub use frame::{PacketHeader, MAX_PAYLOAD};
