//! The capability set: MySQL's 32 flags in the low half and MariaDB's
//! extended flags in the high half, as one `u64`.
//!
//! MariaDB sends its extended flags in the last four "reserved" bytes of
//! the greeting and of the HandshakeResponse41, and only reads them from a
//! client that cleared [`Capabilities::CLIENT_MYSQL`]: a client that sets
//! it is a MySQL client and has no extended flags.

use std::fmt;
use std::ops::{BitAnd, BitOr, Not};

/// A set of capability flags.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Capabilities(pub u64);

macro_rules! flags {
    ($($(#[$doc:meta])* $name:ident = $value:expr;)*) => {
        impl Capabilities {
            $($(#[$doc])* pub const $name: Capabilities = Capabilities($value);)*
        }
        const NAMES: &[(&str, u64)] = &[$((stringify!($name), $value)),*];
    };
}

flags! {
    /// Old "long password"; MariaDB servers clear it, MySQL clients set it.
    CLIENT_MYSQL = 1;
    /// Affected rows counts found rows, not changed rows.
    CLIENT_FOUND_ROWS = 1 << 1;
    /// Long column flags.
    CLIENT_LONG_FLAG = 1 << 2;
    /// A schema name follows in the handshake response.
    CLIENT_CONNECT_WITH_DB = 1 << 3;
    /// `db.table.column` is not allowed.
    CLIENT_NO_SCHEMA = 1 << 4;
    /// zlib compression of the packet stream.
    CLIENT_COMPRESS = 1 << 5;
    /// ODBC client.
    CLIENT_ODBC = 1 << 6;
    /// LOAD DATA LOCAL INFILE may be used.
    CLIENT_LOCAL_FILES = 1 << 7;
    /// Spaces before '(' are ignored.
    CLIENT_IGNORE_SPACE = 1 << 8;
    /// The 4.1 protocol.
    CLIENT_PROTOCOL_41 = 1 << 9;
    /// `wait_timeout` becomes `interactive_timeout`.
    CLIENT_INTERACTIVE = 1 << 10;
    /// TLS; in a handshake response it announces an SSLRequest.
    CLIENT_SSL = 1 << 11;
    /// Unused by servers.
    CLIENT_IGNORE_SIGPIPE = 1 << 12;
    /// Transaction status in status flags.
    CLIENT_TRANSACTIONS = 1 << 13;
    /// Unused.
    CLIENT_RESERVED = 1 << 14;
    /// 4.1 authentication.
    CLIENT_SECURE_CONNECTION = 1 << 15;
    /// Several statements in one COM_QUERY.
    CLIENT_MULTI_STATEMENTS = 1 << 16;
    /// Several result sets for one command.
    CLIENT_MULTI_RESULTS = 1 << 17;
    /// Several result sets for one COM_STMT_EXECUTE.
    CLIENT_PS_MULTI_RESULTS = 1 << 18;
    /// Authentication plugins.
    CLIENT_PLUGIN_AUTH = 1 << 19;
    /// Connection attributes in the handshake response.
    CLIENT_CONNECT_ATTRS = 1 << 20;
    /// Length-encoded auth data in the handshake response.
    CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA = 1 << 21;
    /// The client can handle expired passwords.
    CLIENT_CAN_HANDLE_EXPIRED_PASSWORDS = 1 << 22;
    /// Session state change information in OK packets.
    CLIENT_SESSION_TRACK = 1 << 23;
    /// OK packets (header 0xFE) instead of EOF packets.
    CLIENT_DEPRECATE_EOF = 1 << 24;
    /// MySQL 8: optional result set metadata.
    CLIENT_OPTIONAL_RESULTSET_METADATA = 1 << 25;
    /// MySQL 8: zstd compression.
    CLIENT_ZSTD_COMPRESSION = 1 << 26;
    /// MySQL 8: query attributes in COM_QUERY.
    CLIENT_QUERY_ATTRIBUTES = 1 << 27;
    /// MySQL 8: multi-factor authentication.
    CLIENT_MULTI_FACTOR_AUTH = 1 << 28;
    /// Reserved for an extension of the flags.
    CLIENT_CAPABILITY_EXTENSION = 1 << 29;
    /// Client-side only: verify the server's certificate.
    CLIENT_SSL_VERIFY_SERVER_CERT = 1 << 30;
    /// Client-side only: remember options after a failed connect.
    CLIENT_REMEMBER_OPTIONS = 1 << 31;
    /// MariaDB: progress reports (ERR packets with code 0xFFFF).
    MARIADB_CLIENT_PROGRESS = 1 << 32;
    /// MariaDB 10.2-10.5: COM_MULTI.
    MARIADB_CLIENT_COM_MULTI = 1 << 33;
    /// MariaDB: COM_STMT_BULK_EXECUTE.
    MARIADB_CLIENT_STMT_BULK_OPERATIONS = 1 << 34;
    /// MariaDB: extended type information in column definitions.
    MARIADB_CLIENT_EXTENDED_METADATA = 1 << 35;
    /// MariaDB: "metadata follows" byte after a result set's column count.
    MARIADB_CLIENT_CACHE_METADATA = 1 << 36;
    /// MariaDB 11.5+: one result per parameter set of a bulk execute.
    MARIADB_CLIENT_BULK_UNIT_RESULTS = 1 << 37;
}

impl Capabilities {
    /// No flags.
    pub const EMPTY: Capabilities = Capabilities(0);

    /// What Torpor can forward today. Everything else a backend offers is
    /// taken out of the greeting clients see, and so never negotiated on
    /// either side: TLS and compression (not implemented yet), COM_MULTI
    /// (gone from MariaDB), bulk unit results (MariaDB 11.5, not tested
    /// yet), and MySQL 8 extensions that MariaDB does not have.
    pub const FORWARDABLE: Capabilities = Capabilities(
        Self::CLIENT_MYSQL.0
            | Self::CLIENT_FOUND_ROWS.0
            | Self::CLIENT_LONG_FLAG.0
            | Self::CLIENT_CONNECT_WITH_DB.0
            | Self::CLIENT_NO_SCHEMA.0
            | Self::CLIENT_ODBC.0
            | Self::CLIENT_LOCAL_FILES.0
            | Self::CLIENT_IGNORE_SPACE.0
            | Self::CLIENT_PROTOCOL_41.0
            | Self::CLIENT_INTERACTIVE.0
            | Self::CLIENT_IGNORE_SIGPIPE.0
            | Self::CLIENT_TRANSACTIONS.0
            | Self::CLIENT_RESERVED.0
            | Self::CLIENT_SECURE_CONNECTION.0
            | Self::CLIENT_MULTI_STATEMENTS.0
            | Self::CLIENT_MULTI_RESULTS.0
            | Self::CLIENT_PS_MULTI_RESULTS.0
            | Self::CLIENT_PLUGIN_AUTH.0
            | Self::CLIENT_CONNECT_ATTRS.0
            | Self::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA.0
            | Self::CLIENT_CAN_HANDLE_EXPIRED_PASSWORDS.0
            | Self::CLIENT_SESSION_TRACK.0
            | Self::CLIENT_DEPRECATE_EOF.0
            | Self::CLIENT_SSL_VERIFY_SERVER_CERT.0
            | Self::CLIENT_REMEMBER_OPTIONS.0
            | Self::MARIADB_CLIENT_PROGRESS.0
            | Self::MARIADB_CLIENT_STMT_BULK_OPERATIONS.0
            | Self::MARIADB_CLIENT_EXTENDED_METADATA.0
            | Self::MARIADB_CLIENT_CACHE_METADATA.0,
    );

    /// Joins MySQL's flags and MariaDB's extended flags.
    pub fn from_parts(mysql: u32, mariadb: u32) -> Capabilities {
        Capabilities(u64::from(mysql) | u64::from(mariadb) << 32)
    }

    /// The low 32 bits, as they go on the wire.
    pub fn mysql_bits(self) -> u32 {
        self.0 as u32
    }

    /// The MariaDB extended flags, as they go on the wire.
    pub fn mariadb_bits(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// Whether every flag of `other` is set.
    #[inline]
    pub fn contains(self, other: Capabilities) -> bool {
        self.0 & other.0 == other.0
    }

    /// The flags a client actually gets: it asked for them and the server
    /// offered them. A client that set [`Self::CLIENT_MYSQL`] gets no
    /// MariaDB extended flags, whatever its reserved bytes said.
    pub fn negotiate(client: Capabilities, offered: Capabilities) -> Capabilities {
        let mut agreed = client & offered;
        if client.contains(Self::CLIENT_MYSQL) {
            agreed = Capabilities(agreed.0 & 0xFFFF_FFFF);
        }
        agreed
    }
}

impl BitOr for Capabilities {
    type Output = Capabilities;
    fn bitor(self, rhs: Capabilities) -> Capabilities {
        Capabilities(self.0 | rhs.0)
    }
}

impl BitAnd for Capabilities {
    type Output = Capabilities;
    fn bitand(self, rhs: Capabilities) -> Capabilities {
        Capabilities(self.0 & rhs.0)
    }
}

impl Not for Capabilities {
    type Output = Capabilities;
    fn not(self) -> Capabilities {
        Capabilities(!self.0)
    }
}

impl fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        let mut list = f.debug_set();
        for (name, value) in NAMES {
            if rest & value != 0 {
                list.entry(&format_args!("{name}"));
                rest &= !value;
            }
        }
        if rest != 0 {
            list.entry(&format_args!("{rest:#x}"));
        }
        list.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_clients_get_no_extended_flags() {
        let offered = Capabilities::from_parts(0x81ff_f7fe, 0x1d);
        let mysql_client = Capabilities::from_parts(0x000f_a68d, 0x1d);
        let agreed = Capabilities::negotiate(mysql_client, offered);
        assert_eq!(agreed.mariadb_bits(), 0);
        let mariadb_client = Capabilities::from_parts(0x000f_a68c, 0x10);
        let agreed = Capabilities::negotiate(mariadb_client, offered);
        assert!(agreed.contains(Capabilities::MARIADB_CLIENT_CACHE_METADATA));
    }

    #[test]
    fn debug_names_flags() {
        let text = format!(
            "{:?}",
            Capabilities::CLIENT_SSL | Capabilities::MARIADB_CLIENT_PROGRESS
        );
        assert_eq!(text, "{CLIENT_SSL, MARIADB_CLIENT_PROGRESS}");
    }
}
