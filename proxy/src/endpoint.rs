//! Where a backend listens: a TCP address, or a Unix socket when MariaDB
//! runs on the same host.
//!
//! A Unix socket is the cheaper hop: no TCP state machine, no netfilter,
//! no loopback device, so each query forwarded over it costs Torpor (and
//! MariaDB) less CPU than over loopback TCP. Torpor reaches a MariaDB it
//! runs itself (the process driver, `--spawn-mariadb`) through its socket,
//! and a configured backend through one when its address is a path, as
//! ProxySQL and HAProxy spell it.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

/// The prefix that marks a Unix socket in an address written as text
/// (a bare absolute path works too).
pub const UNIX_PREFIX: &str = "unix:";

/// A backend's address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `host:port` over TCP.
    Tcp(SocketAddr),
    /// A Unix socket's path.
    Unix(PathBuf),
}

impl Endpoint {
    /// Reads `unix:/path`, `/path` or `host:port` (the host resolved now;
    /// the first address wins). The error names what is wrong.
    pub fn parse(text: &str) -> Result<Endpoint, String> {
        if let Some(path) = text.strip_prefix(UNIX_PREFIX) {
            return Endpoint::unix(path);
        }
        if text.starts_with('/') {
            return Endpoint::unix(text);
        }
        text.to_socket_addrs()
            .map_err(|e| format!("{e}"))?
            .next()
            .map(Endpoint::Tcp)
            .ok_or_else(|| "has no address".to_string())
    }

    fn unix(path: &str) -> Result<Endpoint, String> {
        if path.is_empty() {
            return Err("names no socket path".into());
        }
        if !path.starts_with('/') {
            return Err("a Unix socket path must be absolute".into());
        }
        Ok(Endpoint::Unix(PathBuf::from(path)))
    }

    /// The TCP address, if this is one.
    pub fn tcp(&self) -> Option<SocketAddr> {
        match self {
            Endpoint::Tcp(addr) => Some(*addr),
            Endpoint::Unix(_) => None,
        }
    }
}

impl From<SocketAddr> for Endpoint {
    fn from(addr: SocketAddr) -> Endpoint {
        Endpoint::Tcp(addr)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(addr) => write!(f, "{addr}"),
            Endpoint::Unix(path) => write!(f, "{UNIX_PREFIX}{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_unix_sockets_and_the_rest_is_tcp() {
        assert_eq!(
            Endpoint::parse("/run/mysqld/mysqld.sock"),
            Ok(Endpoint::Unix("/run/mysqld/mysqld.sock".into()))
        );
        assert_eq!(
            Endpoint::parse("unix:/tmp/m.sock"),
            Ok(Endpoint::Unix("/tmp/m.sock".into()))
        );
        assert_eq!(
            Endpoint::parse("127.0.0.1:3306"),
            Ok(Endpoint::Tcp(([127, 0, 0, 1], 3306).into()))
        );
        assert!(Endpoint::parse("unix:relative.sock").is_err());
        assert!(Endpoint::parse("unix:").is_err());
        assert!(Endpoint::parse("no-port").is_err());
    }

    #[test]
    fn display_reads_back() {
        for text in ["unix:/tmp/m.sock", "127.0.0.1:3306", "[::1]:3307"] {
            let endpoint = Endpoint::parse(text).expect("valid");
            assert_eq!(Endpoint::parse(&endpoint.to_string()), Ok(endpoint));
        }
    }
}
