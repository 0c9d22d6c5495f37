//! Helpers shared by the fuzz targets in `fuzz_targets/`: how a target
//! reads the few bytes of context (capabilities, a reply kind) that come
//! before the peer bytes it decodes, so that the committed seeds are real
//! packets behind a byte or two.

use torpor_protocol::command::ReplyKind;
use torpor_protocol::Capabilities;

/// The capability flags that change how packets decode, one per bit of a
/// context byte.
pub const CAPS_BITS: [Capabilities; 8] = [
    Capabilities::CLIENT_SESSION_TRACK,
    Capabilities::CLIENT_DEPRECATE_EOF,
    Capabilities::MARIADB_CLIENT_PROGRESS,
    Capabilities::MARIADB_CLIENT_CACHE_METADATA,
    Capabilities::CLIENT_PLUGIN_AUTH,
    Capabilities::CLIENT_CONNECT_ATTRS,
    Capabilities::CLIENT_SECURE_CONNECTION,
    Capabilities::CLIENT_PROTOCOL_41,
];

/// The capabilities a context byte stands for.
pub fn caps(byte: u8) -> Capabilities {
    CAPS_BITS
        .iter()
        .enumerate()
        .filter(|(bit, _)| byte & (1 << bit) != 0)
        .fold(Capabilities::EMPTY, |all, (_, flag)| all | *flag)
}

/// The context byte for `caps` (the flags of [`CAPS_BITS`] among them).
pub fn caps_byte(caps: Capabilities) -> u8 {
    CAPS_BITS
        .iter()
        .enumerate()
        .filter(|(_, flag)| caps.contains(**flag))
        .fold(0, |byte, (bit, _)| byte | 1 << bit)
}

/// The reply kinds a tracker follows, by a context byte.
pub const REPLY_KINDS: [ReplyKind; 5] = [
    ReplyKind::Results,
    ReplyKind::Single,
    ReplyKind::FieldList,
    ReplyKind::Prepare,
    ReplyKind::Fetch,
];

/// The reply kind a context byte stands for.
pub fn reply_kind(byte: u8) -> ReplyKind {
    REPLY_KINDS[usize::from(byte) % REPLY_KINDS.len()]
}

/// The context byte for `kind`.
pub fn reply_kind_byte(kind: ReplyKind) -> u8 {
    REPLY_KINDS.iter().position(|k| *k == kind).unwrap_or(0) as u8
}
