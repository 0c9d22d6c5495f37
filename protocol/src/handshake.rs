//! The connection phase: the server's greeting (protocol v10), the
//! client's HandshakeResponse41 or SSLRequest, auth switch, and
//! COM_CHANGE_USER.
//!
//! Written here rather than taken from `mysql_common`: its greeting parser
//! computes the scramble length with an `i8` subtraction that overflows on
//! a length byte above 135 (a panic in debug builds, on peer bytes), its
//! response constructor fixes the collation instead of carrying the
//! client's, and its attribute map drops their order and any non-UTF-8
//! bytes. A proxy must carry all of these through unchanged.

use bytes::{BufMut, BytesMut};

use crate::auth::SCRAMBLE_LEN;
use crate::caps::Capabilities;
use crate::lenenc;
use crate::packets::{EOF_HEADER, ERR_HEADER};
use crate::ProtocolError;

/// The protocol version every MySQL and MariaDB server since 3.21 sends.
pub const PROTOCOL_VERSION: u8 = 10;

/// Size of an SSLRequest payload: flags, max packet, collation, filler.
pub const SSL_REQUEST_LEN: usize = 32;

/// Connection attributes: (key, value) pairs in the order sent.
pub type Attributes = Vec<(Vec<u8>, Vec<u8>)>;

/// Connection attributes packed as they go on the wire: each key and
/// value a length-encoded string, in the order sent, with no outer
/// length. One allocation however many pairs a client sends: what a
/// proxy keeps for each held client, to pass them on to the connections
/// it opens for it. A client's are kept as it sent them, byte for byte
/// (checked, never taken apart and put together again: a login does not
/// pay two allocations a pair for attributes nobody reads).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackedAttributes(Box<[u8]>);

impl PackedAttributes {
    /// Packs `attributes`.
    pub fn pack(attributes: &[(Vec<u8>, Vec<u8>)]) -> PackedAttributes {
        let mut block = BytesMut::new();
        for (key, value) in attributes {
            lenenc::put_bytes(&mut block, key);
            lenenc::put_bytes(&mut block, value);
        }
        PackedAttributes(block.to_vec().into_boxed_slice())
    }

    /// The attributes in `block` (as a client sends them, without the
    /// outer length), checked to be whole pairs.
    pub fn parse(block: &[u8]) -> Result<PackedAttributes, ProtocolError> {
        let mut r = Reader::new(block, "connection attributes");
        while !r.is_empty() {
            r.lenenc_bytes()?;
            r.lenenc_bytes()?;
        }
        Ok(PackedAttributes(block.into()))
    }

    /// The pairs, in their order, borrowed.
    pub fn pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let mut r = Reader::new(&self.0, "connection attributes");
        // Only whole pairs are ever kept: a pair cut short cannot happen,
        // and would only end the list.
        std::iter::from_fn(move || Some((r.lenenc_bytes().ok()?, r.lenenc_bytes().ok()?)))
    }

    /// The pairs again, in their order.
    pub fn unpack(&self) -> Attributes {
        self.pairs()
            .map(|(key, value)| (key.to_vec(), value.to_vec()))
            .collect()
    }

    /// The block as it goes on the wire (without its outer length).
    pub fn as_wire(&self) -> &[u8] {
        &self.0
    }
}

/// A checked reader over a payload.
struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, what }
    }

    fn err(&self) -> ProtocolError {
        ProtocolError::malformed(self.what)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        let (head, rest) = self.buf.split_at_checked(n).ok_or_else(|| self.err())?;
        self.buf = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ProtocolError> {
        let (head, rest) = self
            .buf
            .split_first_chunk::<N>()
            .ok_or_else(|| self.err())?;
        self.buf = rest;
        Ok(*head)
    }

    fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(u8::from_le_bytes(self.array()?))
    }

    fn u16(&mut self) -> Result<u16, ProtocolError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, ProtocolError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// A NUL-terminated string; a missing NUL at the very end is tolerated
    /// (old servers and some clients leave it out of the last field).
    fn null_str(&mut self) -> Result<&'a [u8], ProtocolError> {
        let mut parts = self.buf.splitn(2, |&b| b == 0);
        let s = parts.next().unwrap_or_default();
        self.buf = parts.next().unwrap_or_default();
        Ok(s)
    }

    fn lenenc_bytes(&mut self) -> Result<&'a [u8], ProtocolError> {
        let (bytes, used) = lenenc::read_bytes(self.buf).ok_or_else(|| self.err())?;
        self.buf = self.buf.get(used..).ok_or_else(|| self.err())?;
        Ok(bytes)
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// The server's first packet: Initial Handshake v10.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    /// The server's version string, e.g. `5.5.5-10.11.19-MariaDB-0+deb12u1`.
    pub server_version: Vec<u8>,
    /// The connection (thread) id.
    pub connection_id: u32,
    /// The authentication seed (20 bytes for native passwords).
    pub seed: Vec<u8>,
    /// The server's capabilities, MariaDB's extended ones included.
    pub capabilities: Capabilities,
    /// The server's default collation id (low byte).
    pub collation: u8,
    /// Server status flags.
    pub status: u16,
    /// The default authentication plugin.
    pub auth_plugin: Vec<u8>,
}

impl Greeting {
    /// Decodes a greeting. A server that refuses the connection sends an
    /// ERR packet instead; that is reported as [`ProtocolError::Unexpected`]
    /// and the caller should check for it first.
    pub fn parse(payload: &[u8]) -> Result<Greeting, ProtocolError> {
        let mut r = Reader::new(payload, "server greeting");
        match r.u8()? {
            PROTOCOL_VERSION => {}
            ERR_HEADER => {
                return Err(ProtocolError::Unexpected {
                    what: "ERR packet instead of a greeting",
                })
            }
            _ => {
                return Err(ProtocolError::Unexpected {
                    what: "protocol version other than 10",
                })
            }
        }
        let server_version = r.null_str()?.to_vec();
        let connection_id = r.u32()?;
        let mut seed = r.take(8)?.to_vec();
        r.u8()?; // filler
        let caps_low = r.u16()?;
        let collation = r.u8()?;
        let status = r.u16()?;
        let caps_high = r.u16()?;
        let mysql_caps = u32::from(caps_low) | u32::from(caps_high) << 16;
        let auth_data_len = r.u8()?;
        r.take(6)?;
        let mariadb_caps = r.u32()?;
        // MariaDB puts its extended flags in the last reserved bytes only
        // when it does not claim to be MySQL.
        let mariadb_caps = if mysql_caps & Capabilities::CLIENT_MYSQL.mysql_bits() == 0 {
            mariadb_caps
        } else {
            0
        };
        let capabilities = Capabilities::from_parts(mysql_caps, mariadb_caps);
        if capabilities.contains(Capabilities::CLIENT_SECURE_CONNECTION) {
            let len = usize::from(auth_data_len).saturating_sub(8).max(13);
            let part2 = r.take(len.min(r.buf.len()))?;
            // The second part is sent NUL-terminated.
            let part2 = part2.strip_suffix(&[0]).unwrap_or(part2);
            seed.extend_from_slice(part2);
        }
        let auth_plugin = if capabilities.contains(Capabilities::CLIENT_PLUGIN_AUTH) {
            r.null_str()?.to_vec()
        } else {
            Vec::new()
        };
        Ok(Greeting {
            server_version,
            connection_id,
            seed,
            capabilities,
            collation,
            status,
            auth_plugin,
        })
    }

    /// Encodes the greeting as a payload.
    pub fn encode(&self, dst: &mut BytesMut) {
        let caps = self.capabilities;
        dst.put_u8(PROTOCOL_VERSION);
        dst.put_slice(&self.server_version);
        dst.put_u8(0);
        dst.put_u32_le(self.connection_id);
        let (part1, part2) = self.seed.split_at(self.seed.len().min(8));
        dst.put_slice(part1);
        dst.put_bytes(0, 8 - part1.len());
        dst.put_u8(0);
        dst.put_u16_le(caps.mysql_bits() as u16);
        dst.put_u8(self.collation);
        dst.put_u16_le(self.status);
        dst.put_u16_le((caps.mysql_bits() >> 16) as u16);
        if caps.contains(Capabilities::CLIENT_PLUGIN_AUTH) {
            dst.put_u8((self.seed.len() + 1).min(255) as u8);
        } else {
            dst.put_u8(0);
        }
        dst.put_bytes(0, 6);
        dst.put_u32_le(caps.mariadb_bits());
        if caps.contains(Capabilities::CLIENT_SECURE_CONNECTION) {
            dst.put_slice(part2);
            dst.put_bytes(0, 13usize.saturating_sub(part2.len()).max(1));
        }
        if caps.contains(Capabilities::CLIENT_PLUGIN_AUTH) {
            dst.put_slice(&self.auth_plugin);
            dst.put_u8(0);
        }
    }
}

/// The client's answer to the greeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientHello {
    /// An SSLRequest: the client wants TLS before it says more.
    SslRequest {
        /// The flags it sent.
        capabilities: Capabilities,
    },
    /// A full HandshakeResponse41.
    Response(HandshakeResponse),
}

/// HandshakeResponse41.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeResponse {
    /// The flags the client asked for (MariaDB's extended flags only when
    /// it cleared CLIENT_MYSQL).
    pub capabilities: Capabilities,
    /// The largest packet the client accepts.
    pub max_packet_size: u32,
    /// The client's collation id.
    pub collation: u8,
    /// The user name.
    pub user: Vec<u8>,
    /// The authentication response.
    pub auth_response: Vec<u8>,
    /// The default schema, when CLIENT_CONNECT_WITH_DB.
    pub database: Option<Vec<u8>>,
    /// The plugin the response was made with, when CLIENT_PLUGIN_AUTH.
    pub auth_plugin: Option<Vec<u8>>,
    /// Connection attributes in the order the client sent them.
    pub attributes: PackedAttributes,
}

impl ClientHello {
    /// Decodes the client's first packet.
    pub fn parse(payload: &[u8]) -> Result<ClientHello, ProtocolError> {
        let mut r = Reader::new(payload, "handshake response");
        let mysql_caps = r.u32()?;
        let max_packet_size = r.u32()?;
        let collation = r.u8()?;
        r.take(19)?;
        let mariadb_caps = r.u32()?;
        let mariadb_caps = if mysql_caps & Capabilities::CLIENT_MYSQL.mysql_bits() == 0 {
            mariadb_caps
        } else {
            0
        };
        let capabilities = Capabilities::from_parts(mysql_caps, mariadb_caps);
        if r.is_empty() && capabilities.contains(Capabilities::CLIENT_SSL) {
            return Ok(ClientHello::SslRequest { capabilities });
        }
        if !capabilities.contains(Capabilities::CLIENT_PROTOCOL_41) {
            return Err(ProtocolError::Unexpected {
                what: "pre-4.1 handshake response",
            });
        }
        let user = r.null_str()?.to_vec();
        let auth_response =
            if capabilities.contains(Capabilities::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA) {
                r.lenenc_bytes()?.to_vec()
            } else if capabilities.contains(Capabilities::CLIENT_SECURE_CONNECTION) {
                let len = r.u8()?;
                r.take(usize::from(len))?.to_vec()
            } else {
                r.null_str()?.to_vec()
            };
        let database =
            if capabilities.contains(Capabilities::CLIENT_CONNECT_WITH_DB) && !r.is_empty() {
                Some(r.null_str()?.to_vec())
            } else {
                None
            };
        let auth_plugin =
            if capabilities.contains(Capabilities::CLIENT_PLUGIN_AUTH) && !r.is_empty() {
                Some(r.null_str()?.to_vec())
            } else {
                None
            };
        let attributes =
            if capabilities.contains(Capabilities::CLIENT_CONNECT_ATTRS) && !r.is_empty() {
                parse_attributes(&mut r)?
            } else {
                PackedAttributes::default()
            };
        Ok(ClientHello::Response(HandshakeResponse {
            capabilities,
            max_packet_size,
            collation,
            user,
            auth_response,
            database,
            auth_plugin,
            attributes,
        }))
    }
}

fn parse_attributes(r: &mut Reader<'_>) -> Result<PackedAttributes, ProtocolError> {
    PackedAttributes::parse(r.lenenc_bytes()?)
}

fn put_attributes(dst: &mut BytesMut, attributes: &PackedAttributes) {
    lenenc::put_bytes(dst, attributes.as_wire());
}

impl HandshakeResponse {
    /// Encodes the response as a payload, laid out for its own
    /// `capabilities`.
    pub fn encode(&self, dst: &mut BytesMut) {
        let caps = self.capabilities;
        dst.put_u32_le(caps.mysql_bits());
        dst.put_u32_le(self.max_packet_size);
        dst.put_u8(self.collation);
        dst.put_bytes(0, 19);
        dst.put_u32_le(caps.mariadb_bits());
        dst.put_slice(&self.user);
        dst.put_u8(0);
        if caps.contains(Capabilities::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA) {
            lenenc::put_bytes(dst, &self.auth_response);
        } else {
            // CLIENT_SECURE_CONNECTION: one length byte.
            let response = self.auth_response.get(..255).unwrap_or(&self.auth_response);
            dst.put_u8(response.len() as u8);
            dst.put_slice(response);
        }
        if caps.contains(Capabilities::CLIENT_CONNECT_WITH_DB) {
            dst.put_slice(self.database.as_deref().unwrap_or_default());
            dst.put_u8(0);
        }
        if caps.contains(Capabilities::CLIENT_PLUGIN_AUTH) {
            dst.put_slice(self.auth_plugin.as_deref().unwrap_or_default());
            dst.put_u8(0);
        }
        if caps.contains(Capabilities::CLIENT_CONNECT_ATTRS) {
            put_attributes(dst, &self.attributes);
        }
    }
}

/// Whether a packet in the authentication phase is an auth switch request
/// (0xFE followed by a plugin name) rather than OK or ERR.
pub fn is_auth_switch(payload: &[u8]) -> bool {
    payload.first() == Some(&EOF_HEADER)
}

/// An auth switch request: "answer this seed with that plugin".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSwitch {
    /// The plugin to use.
    pub plugin: Vec<u8>,
    /// Its data; for native passwords the 20-byte seed (without the NUL
    /// the server puts after it).
    pub data: Vec<u8>,
}

impl AuthSwitch {
    /// Decodes an auth switch request.
    pub fn parse(payload: &[u8]) -> Result<AuthSwitch, ProtocolError> {
        let mut r = Reader::new(payload, "auth switch request");
        if r.u8()? != EOF_HEADER {
            return Err(r.err());
        }
        let plugin = r.null_str()?.to_vec();
        let data = r.rest();
        let data = if data.len() == SCRAMBLE_LEN + 1 {
            data.strip_suffix(&[0]).unwrap_or(data)
        } else {
            data
        };
        Ok(AuthSwitch {
            plugin,
            data: data.to_vec(),
        })
    }

    /// Encodes the request as a payload (a native-password seed gets the
    /// NUL that servers send after it).
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.put_u8(EOF_HEADER);
        dst.put_slice(&self.plugin);
        dst.put_u8(0);
        dst.put_slice(&self.data);
        if self.data.len() == SCRAMBLE_LEN {
            dst.put_u8(0);
        }
    }
}

/// COM_CHANGE_USER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeUser {
    /// The user to become.
    pub user: Vec<u8>,
    /// The authentication response (to the connection's original seed).
    pub auth_response: Vec<u8>,
    /// The schema to use; empty for none.
    pub database: Vec<u8>,
    /// The collation id, when sent.
    pub collation: Option<u16>,
    /// The plugin the response was made with, when sent.
    pub auth_plugin: Option<Vec<u8>>,
    /// Connection attributes, when sent.
    pub attributes: PackedAttributes,
}

impl ChangeUser {
    /// Decodes COM_CHANGE_USER (command byte included) for a connection
    /// with `caps`.
    pub fn parse(payload: &[u8], caps: Capabilities) -> Result<ChangeUser, ProtocolError> {
        let mut r = Reader::new(payload, "COM_CHANGE_USER");
        r.u8()?;
        let user = r.null_str()?.to_vec();
        let auth_response = if caps.contains(Capabilities::CLIENT_SECURE_CONNECTION) {
            let len = r.u8()?;
            r.take(usize::from(len))?.to_vec()
        } else {
            r.null_str()?.to_vec()
        };
        let database = r.null_str()?.to_vec();
        let mut change = ChangeUser {
            user,
            auth_response,
            database,
            collation: None,
            auth_plugin: None,
            attributes: PackedAttributes::default(),
        };
        if r.is_empty() {
            return Ok(change);
        }
        change.collation = Some(r.u16()?);
        if caps.contains(Capabilities::CLIENT_PLUGIN_AUTH) && !r.is_empty() {
            change.auth_plugin = Some(r.null_str()?.to_vec());
        }
        if caps.contains(Capabilities::CLIENT_CONNECT_ATTRS) && !r.is_empty() {
            change.attributes = parse_attributes(&mut r)?;
        }
        Ok(change)
    }

    /// Encodes COM_CHANGE_USER (command byte included) for a connection
    /// with `caps`.
    pub fn encode(&self, dst: &mut BytesMut, caps: Capabilities) {
        dst.put_u8(crate::command::Command::ChangeUser as u8);
        dst.put_slice(&self.user);
        dst.put_u8(0);
        let response = self.auth_response.get(..255).unwrap_or(&self.auth_response);
        dst.put_u8(response.len() as u8);
        dst.put_slice(response);
        dst.put_slice(&self.database);
        dst.put_u8(0);
        if let Some(collation) = self.collation {
            dst.put_u16_le(collation);
            if caps.contains(Capabilities::CLIENT_PLUGIN_AUTH) {
                dst.put_slice(self.auth_plugin.as_deref().unwrap_or_default());
                dst.put_u8(0);
            }
            if caps.contains(Capabilities::CLIENT_CONNECT_ATTRS) {
                put_attributes(dst, &self.attributes);
            }
        }
    }
}

#[cfg(test)]
mod tests;
