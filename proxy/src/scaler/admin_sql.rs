//! Every connection Torpor opens with the `mysql` crate starts here.
//!
//! The crate's default, `prefer_socket = true`, makes a TCP connection
//! to a loopback address read `@@socket` and reconnect to that path on
//! *this* host. A container published on 127.0.0.1 answers
//! `/run/mysqld/mysqld.sock`, which on the host is the host's own
//! MariaDB: the scaler's `CREATE USER … WITH GRANT OPTION` and
//! `SET GLOBAL`s landed there (issue 14). [`tcp_opts`] turns it off, and
//! nothing else builds `mysql` options.

use std::net::SocketAddr;
use std::time::Duration;

use super::driver::AdminAccess;

/// Options for a `mysql` crate connection to `addr` over TCP, and only
/// over TCP: never to a Unix socket the server names. Callers add user,
/// password, timeouts, but must not turn `prefer_socket` back on.
pub fn tcp_opts(addr: SocketAddr) -> mysql::OptsBuilder {
    tcp_opts_to_host(&addr.ip().to_string(), addr.port())
}

/// [`tcp_opts`] for a host name (`localhost`, a container's name) and
/// port.
pub fn tcp_opts_to_host(host: &str, port: u16) -> mysql::OptsBuilder {
    mysql::OptsBuilder::new()
        .ip_or_hostname(Some(host.to_string()))
        .tcp_port(port)
        .prefer_socket(false)
}

/// Options for a `mysql` crate connection to the Unix socket at `path`:
/// a backend Torpor was told to reach there (never one a server names).
pub fn socket_opts(path: &std::path::Path) -> mysql::OptsBuilder {
    mysql::OptsBuilder::new()
        .socket(Some(path.display().to_string()))
        .prefer_socket(false)
}

/// How long an admin connection waits for each read or write: a backend
/// that hangs must not hang the control plane. A statement that waits on
/// the server on purpose (`MASTER_GTID_WAIT`) must ask for less.
pub const ADMIN_IO_TIMEOUT: Duration = Duration::from_secs(10);

/// An admin connection with `opts` as `user`: connect within 5 s, each
/// read and write within [`ADMIN_IO_TIMEOUT`].
pub fn admin_connect(
    opts: mysql::OptsBuilder,
    user: &str,
    password: &str,
) -> Result<mysql::Conn, String> {
    let opts = opts
        .user(Some(user))
        .pass(Some(password))
        .tcp_connect_timeout(Some(Duration::from_secs(5)))
        .read_timeout(Some(ADMIN_IO_TIMEOUT))
        .write_timeout(Some(ADMIN_IO_TIMEOUT));
    mysql::Conn::new(opts).map_err(|e| e.to_string())
}

/// Runs `statements` on the backend as the scaler's admin account. Each
/// failure is returned; the scaler treats them as warnings (a buffer pool
/// that does not shrink is no reason to stay awake).
pub fn run_admin_sql(access: &AdminAccess, statements: &[String]) -> Result<(), String> {
    use mysql::prelude::Queryable;
    let mut conn = admin_connect(tcp_opts(access.address), &access.user, &access.password)?;
    let mut failures = Vec::new();
    for statement in statements {
        if let Err(e) = conn.query_drop(statement) {
            failures.push(format!("{statement}: {e}"));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

/// Runs `query` as the scaler's admin account and reads the number in
/// the first column of its first row (a server variable read back after
/// a change).
pub fn admin_number(access: &AdminAccess, query: &str) -> Result<u64, String> {
    use mysql::prelude::Queryable;
    let mut conn = admin_connect(tcp_opts(access.address), &access.user, &access.password)?;
    conn.query_first::<u64, _>(query)
        .map_err(|e| format!("{query}: {e}"))?
        .ok_or_else(|| format!("{query}: no row"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_opts_never_prefer_the_servers_socket() {
        let opts: mysql::Opts = tcp_opts(SocketAddr::from(([127, 0, 0, 1], 3306))).into();
        assert!(!opts.get_prefer_socket());
        assert!(opts.get_socket().is_none());
        let opts: mysql::Opts = tcp_opts_to_host("localhost", 3306).into();
        assert!(!opts.get_prefer_socket());
    }
}
