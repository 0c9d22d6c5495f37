//! Where a new connection's time goes: one connection opened phase by
//! phase, each phase timed on the client's side of the wire.
//!
//! The `connect` workload times a real client library's `Conn::new` and
//! first query as one figure. A proxy that answers the handshake itself
//! (Torpor) and one that forwards it (HAProxy) spend that time in
//! different places, and one figure cannot say which: so beside it, the
//! same login is made by hand and timed in four parts:
//!
//! - `tcp`: the TCP handshake (`connect(2)` returns);
//! - `greeting`: until the server's greeting has arrived;
//! - `login`: the handshake response sent until its OK has arrived
//!   (the server checks the password, and sets the session up);
//! - `first query`: `SELECT 1` sent until its whole result has arrived
//!   (a proxy that pools its backend connections borrows one here).
//!
//! The packets come from `mysql_common` (the `mysql` crate's own protocol
//! layer): the greeting is parsed and the response built by it, the
//! password scrambled for `mysql_native_password`. Only that plugin is
//! spoken, without TLS: a server that asks for anything else fails the
//! connection with an error that says so.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use mysql_common::auth::plugins::mysql_native_password::scramble_native;
use mysql_common::constants::CapabilityFlags;
use mysql_common::io::ParseBuf;
use mysql_common::packets::{AuthPlugin, HandshakePacket, HandshakeResponse};
use mysql_common::proto::{MyDeserialize, MySerialize};

use crate::cli::Credentials;

/// How long one login may take before the workload fails (a stalled
/// target must not hang the run).
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The four parts of one connection's setup.
#[derive(Debug, Clone, Copy, Default)]
pub struct Phases {
    /// `connect(2)`: the TCP handshake.
    pub tcp: Duration,
    /// Until the greeting has arrived.
    pub greeting: Duration,
    /// The handshake response sent until its OK has arrived.
    pub login: Duration,
    /// `SELECT 1` sent until its result has arrived whole.
    pub first_query: Duration,
}

impl Phases {
    /// The whole setup, as the `connect` workload times it.
    pub fn total(&self) -> Duration {
        self.tcp + self.greeting + self.login + self.first_query
    }
}

/// Opens one connection to `address` as `credentials` say, runs `SELECT
/// 1`, quits, and says how long each part took (by `clock`).
pub fn connect_in_phases(
    address: &str,
    credentials: &Credentials,
    clock: &quanta::Clock,
) -> anyhow::Result<Phases> {
    let now = || clock.now();
    let started = now();
    let stream = TcpStream::connect(address).with_context(|| format!("connecting to {address}"))?;
    let connected = now();
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut wire = Wire { stream };

    let (seq, greeting) = wire.read_packet().context("reading the greeting")?;
    let greeted = now();
    let response = handshake_response(&greeting, credentials)?;
    wire.write_packet(seq.wrapping_add(1), &response)?;
    let (_, reply) = wire.read_packet().context("reading the login's reply")?;
    match reply.first() {
        Some(0x00) => {}
        Some(0xff) => bail!("login refused: {}", error_text(&reply)),
        Some(0xfe) => bail!("the server asked for another authentication plugin"),
        _ => bail!("unexpected reply to the login ({} bytes)", reply.len()),
    }
    let logged_in = now();

    wire.write_packet(0, b"\x03SELECT 1")?;
    wire.read_text_result()
        .context("reading SELECT 1's result")?;
    let answered = now();

    // COM_QUIT, outside the time; the server closes without a reply.
    let _ = wire.write_packet(0, b"\x01");
    Ok(Phases {
        tcp: connected.duration_since(started),
        greeting: greeted.duration_since(connected),
        login: logged_in.duration_since(greeted),
        first_query: answered.duration_since(logged_in),
    })
}

/// The handshake response to `greeting`: `mysql_native_password`, the
/// credentials' database, no TLS, no attributes.
fn handshake_response(greeting: &[u8], credentials: &Credentials) -> anyhow::Result<Vec<u8>> {
    let handshake = HandshakePacket::deserialize((), &mut ParseBuf(greeting))
        .context("parsing the greeting")?;
    let plugin = handshake
        .auth_plugin_name_ref()
        .unwrap_or(b"mysql_native_password");
    ensure!(
        plugin == b"mysql_native_password",
        "the greeting asks for {}: only mysql_native_password is spoken",
        String::from_utf8_lossy(plugin)
    );
    let scramble = scramble_native(&handshake.nonce(), credentials.password.as_bytes())
        .map(|s| s.to_vec())
        .unwrap_or_default();
    let wanted = CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_LONG_PASSWORD
        | CapabilityFlags::CLIENT_TRANSACTIONS
        | CapabilityFlags::CLIENT_PLUGIN_AUTH
        | CapabilityFlags::CLIENT_CONNECT_WITH_DB;
    let response = HandshakeResponse::new(
        Some(scramble),
        handshake.server_version_parsed().unwrap_or((10, 11, 0)),
        Some(credentials.user.as_bytes()),
        Some(credentials.database.as_bytes()),
        Some(AuthPlugin::MysqlNativePassword),
        wanted & handshake.capabilities(),
        None,
        16 * 1024 * 1024,
    );
    let mut payload = Vec::new();
    response.serialize(&mut payload);
    Ok(payload)
}

/// The text of an ERR packet's message (after its code and SQL state).
fn error_text(err: &[u8]) -> String {
    let message = err.get(9..).unwrap_or_default();
    format!(
        "{} {}",
        u16::from_le_bytes([
            err.get(1).copied().unwrap_or(0),
            err.get(2).copied().unwrap_or(0)
        ]),
        String::from_utf8_lossy(message)
    )
}

/// Packets over a blocking socket.
struct Wire {
    stream: TcpStream,
}

impl Wire {
    /// One packet: its sequence id and payload (a packet of 16 MiB or
    /// more, never sent here, would be refused).
    fn read_packet(&mut self) -> anyhow::Result<(u8, Vec<u8>)> {
        let mut header = [0u8; 4];
        self.stream.read_exact(&mut header)?;
        let len = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
        ensure!(len < 0xff_ffff, "a packet of 16 MiB or more");
        let mut payload = vec![0u8; len];
        self.stream.read_exact(&mut payload)?;
        Ok((header[3], payload))
    }

    fn write_packet(&mut self, seq: u8, payload: &[u8]) -> anyhow::Result<()> {
        let len = u32::try_from(payload.len())?.to_le_bytes();
        let mut packet = Vec::with_capacity(payload.len() + 4);
        packet.extend_from_slice(&[len[0], len[1], len[2], seq]);
        packet.extend_from_slice(payload);
        self.stream.write_all(&packet)?;
        Ok(())
    }

    /// A whole text result set (without CLIENT_DEPRECATE_EOF: column
    /// count, definitions, EOF, rows, EOF), or an ERR.
    fn read_text_result(&mut self) -> anyhow::Result<()> {
        let (_, first) = self.read_packet()?;
        match first.first() {
            Some(0xff) => bail!("{}", error_text(&first)),
            Some(0x00) => return Ok(()),
            _ => {}
        }
        let mut eofs = 0;
        while eofs < 2 {
            let (_, packet) = self.read_packet()?;
            match packet.first() {
                Some(0xff) => bail!("{}", error_text(&packet)),
                Some(0xfe) if packet.len() < 9 => eofs += 1,
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_packet_reads_as_its_code_and_message() {
        let err = b"\xff\x15\x04#28000Access denied";
        assert_eq!(error_text(err), "1045 Access denied");
        assert_eq!(error_text(b"\xff"), "0 ");
    }
}
