//! What a client is told when something fails: the one place that maps
//! Torpor's errors to MySQL error codes, SQLSTATEs and messages.
//!
//! Messages name the cause in the client's terms and never carry
//! internals (addresses, OS errors, Rust types); those go to the log.

use bytes::BytesMut;
use torpor_protocol::packets::write_err;

use crate::error::SessionError;

/// A MySQL error as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    /// Error code.
    pub code: u16,
    /// SQLSTATE.
    pub sql_state: [u8; 5],
    /// Message.
    pub message: String,
}

/// ER_CON_COUNT_ERROR.
pub const TOO_MANY_CONNECTIONS: u16 = 1040;
/// ER_HANDSHAKE_ERROR.
pub const BAD_HANDSHAKE: u16 = 1043;
/// ER_ACCESS_DENIED_ERROR.
pub const ACCESS_DENIED: u16 = 1045;
/// ER_NOT_SUPPORTED_AUTH_MODE.
pub const AUTH_MODE_NOT_SUPPORTED: u16 = 1251;
/// ER_UNKNOWN_COM_ERROR.
pub const UNKNOWN_COMMAND: u16 = 1047;
/// ER_SERVER_SHUTDOWN.
pub const SERVER_SHUTDOWN: u16 = 1053;
/// ER_NO_SUCH_THREAD.
pub const NO_SUCH_THREAD: u16 = 1094;
/// ER_UNKNOWN_STMT_HANDLER.
pub const UNKNOWN_STATEMENT: u16 = 1243;
/// ER_NET_PACKET_TOO_LARGE.
pub const PACKET_TOO_LARGE: u16 = 1153;
/// ER_NET_PACKETS_OUT_OF_ORDER.
pub const PACKETS_OUT_OF_ORDER: u16 = 1156;
/// ER_NET_READ_ERROR.
pub const NET_READ_ERROR: u16 = 1158;
/// ER_LOCK_DEADLOCK: "the transaction was rolled back, run it again".
pub const DEADLOCK: u16 = 1213;
/// ER_CONNECTION_KILLED.
pub const CONNECTION_KILLED: u16 = 1927;
/// ER_QUERY_INTERRUPTED: the statement stopped before its end; the
/// session goes on.
pub const QUERY_INTERRUPTED: u16 = 1317;
/// ER_CONNECT_TO_FOREIGN_DATA_SOURCE: what MariaDB's own engines (FEDERATED,
/// CONNECT) say when the server behind them cannot be reached — the
/// situation of a client whose database behind Torpor is down.
pub const CANNOT_CONNECT: u16 = 1429;
/// A backend connection lost under a session that cannot go on: MariaDB's
/// "connection killed", which every client handles as the end of its
/// connection.
pub const SERVER_LOST: u16 = CONNECTION_KILLED;

/// Whether `code` may be sent on the wire. Codes 2000–2999 are the client
/// library's own (CR_*): libmariadb answers a server's ERR packet carrying
/// one with "2027 Received malformed packet" (checked against the 10.11
/// client: every code from 2001 to its last client error is refused), so
/// Torpor never sends one.
pub fn is_server_code(code: u16) -> bool {
    !(2000..3000).contains(&code)
}

impl ClientError {
    fn new(code: u16, sql_state: &[u8; 5], message: impl Into<String>) -> ClientError {
        ClientError {
            code,
            sql_state: *sql_state,
            message: message.into(),
        }
    }

    /// Appends this error as an ERR packet with sequence id `seq`.
    pub fn write(&self, dst: &mut BytesMut, seq: u8) -> u8 {
        debug_assert!(
            is_server_code(self.code),
            "client-library code {}",
            self.code
        );
        write_err(dst, seq, self.code, &self.sql_state, &self.message)
    }

    /// "Unknown thread id: N", as MariaDB says it.
    pub fn no_such_thread(id: u64) -> ClientError {
        ClientError::new(NO_SUCH_THREAD, b"HY000", format!("Unknown thread id: {id}"))
    }

    /// "Unknown prepared statement handler (N) given to …", as MariaDB
    /// says it.
    pub fn unknown_statement(id: u32, command: torpor_protocol::command::Command) -> ClientError {
        use torpor_protocol::command::Command;
        let function = match command {
            Command::StmtExecute => "mysqld_stmt_execute",
            Command::StmtBulkExecute => "mysqld_stmt_bulk_execute",
            Command::StmtFetch => "mysqld_stmt_fetch",
            Command::StmtReset => "mysqld_stmt_reset",
            Command::StmtSendLongData => "mysqld_stmt_send_long_data",
            _ => "mysqld_stmt_close",
        };
        ClientError::new(
            UNKNOWN_STATEMENT,
            b"HY000",
            format!("Unknown prepared statement handler ({id}) given to {function}"),
        )
    }

    /// A command byte no server knows.
    pub fn unknown_command() -> ClientError {
        ClientError::new(UNKNOWN_COMMAND, b"08S01", "Unknown command")
    }

    /// What to tell the client for `error`; `None` when there is nobody to
    /// tell (the client went away) or the backend's own ERR is relayed.
    pub fn for_session_error(error: &SessionError) -> Option<ClientError> {
        use torpor_protocol::ProtocolError as P;
        use SessionError::*;
        Some(match error {
            // A failed TLS handshake: the alert said it, nothing can be
            // said in plain text on a TLS connection.
            ClientGone | ClientIo(_) | ClientTls(_) | BackendRefused(_) => return None,
            ClientProtocol(P::TooLarge { .. }) => ClientError::new(
                PACKET_TOO_LARGE,
                b"08S01",
                "Got a packet bigger than 'max_allowed_packet' bytes",
            ),
            ClientProtocol(P::OutOfOrder { .. }) => {
                ClientError::new(PACKETS_OUT_OF_ORDER, b"08S01", "Got packets out of order")
            }
            ClientProtocol(_) => ClientError::new(
                NET_READ_ERROR,
                b"08S01",
                "Got an error reading communication packets (malformed packet)",
            ),
            Unsupported(what) => ClientError::new(
                UNKNOWN_COMMAND,
                b"08S01",
                format!("Torpor does not support {what}"),
            ),
            // MariaDB 10.11 (10.11.19, checked) answers a plain TCP login
            // under require_secure_transport as a wrong password, whatever
            // the password: 1045, not ER_SECURE_TRANSPORT_REQUIRED (3159).
            AccessDenied {
                user,
                host,
                using_password,
            }
            | InsecureTransport {
                user,
                host,
                using_password,
            } => ClientError::new(
                ACCESS_DENIED,
                b"28000",
                format!(
                    "Access denied for user '{user}'@'{host}' (using password: {})",
                    if *using_password { "YES" } else { "NO" }
                ),
            ),
            UnsupportedPlugin { user, host, plugin } => ClientError::new(
                AUTH_MODE_NOT_SUPPORTED,
                b"08004",
                format!(
                    "Account '{user}'@'{host}' authenticates with plugin '{plugin}', which Torpor cannot serve (it serves mysql_native_password accounts)"
                ),
            ),
            BackendUnreachable(_) => ClientError::new(
                CANNOT_CONNECT,
                b"HY000",
                "Can't connect to the database behind Torpor (backend unreachable)",
            ),
            BackendTls(e) if crate::tls::backend::is_untrusted_certificate(e) => ClientError::new(
                CANNOT_CONNECT,
                b"HY000",
                "Can't connect to the database behind Torpor (its TLS certificate is not trusted)",
            ),
            BackendTls(_) => ClientError::new(
                CANNOT_CONNECT,
                b"HY000",
                "Can't connect to the database behind Torpor (its TLS connection failed)",
            ),
            BackendLost(_) => ClientError::new(
                SERVER_LOST,
                b"70100",
                "Lost connection to the database behind Torpor during query",
            ),
            BackendProtocol(_) => ClientError::new(
                SERVER_LOST,
                b"70100",
                "Lost connection to the database behind Torpor (it sent a malformed reply)",
            ),
            // Deadlock (1213, SQLSTATE 40001) is the one error every
            // transaction retry loop (ORMs, connection pools, the JDBC
            // TransactionRollbackException) already treats as "the server
            // rolled the whole transaction back; run it again from the
            // start" — which is exactly the situation, and the one safe
            // reaction to it.
            TransactionNotReplayed { reason } => ClientError::new(
                DEADLOCK,
                b"40001",
                format!("Transaction rolled back: its connection to the database behind Torpor was lost and the transaction could not be replayed ({reason}); try restarting the transaction"),
            ),
            // The statement was interrupted and the session goes on; the
            // text says a client must not assume either outcome, which is
            // the truth.
            OutcomeUnknown => ClientError::new(
                QUERY_INTERRUPTED,
                b"70100",
                "Lost connection to the database behind Torpor during COMMIT (or another statement that ends the transaction): whether it committed is unknown",
            ),
            BackendDown { held } => ClientError::new(
                CANNOT_CONNECT,
                b"HY000",
                match held.as_secs() {
                    0 => "Can't connect to the database behind Torpor (backend unreachable); the session stays open and the next query tries again".to_string(),
                    secs => format!("Can't connect to the database behind Torpor: unreachable for {secs} s; the session stays open and the next query tries again"),
                },
            ),
            // As OutcomeUnknown, for a statement outside a transaction:
            // it may have run (and committed) or not.
            CutInFlight => ClientError::new(
                QUERY_INTERRUPTED,
                b"70100",
                "Lost connection to the database behind Torpor during the query: whether it ran is unknown; the session stays open",
            ),
            Killed => ClientError::new(CONNECTION_KILLED, b"70100", "Connection was killed"),
            // MariaDB has no such limit; as PostgreSQL's, it ends the
            // session, and a killed connection is what clients know to
            // reconnect after.
            IdleInTransaction { secs } => ClientError::new(
                CONNECTION_KILLED,
                b"70100",
                format!("Connection was killed: idle in a transaction for more than {secs} s (Torpor's idle_in_transaction_timeout_secs); the transaction was rolled back"),
            ),
            Shutdown => ClientError::new(SERVER_SHUTDOWN, b"08S01", "Server shutdown in progress"),
            TooManyConnections => {
                ClientError::new(TOO_MANY_CONNECTIONS, b"08004", "Too many connections")
            }
            // MariaDB's own text: clients match on it. Why the pool was
            // exhausted is in Torpor's log.
            PoolExhausted(_) => {
                ClientError::new(TOO_MANY_CONNECTIONS, b"08004", "Too many connections")
            }
            WakeFailed { service, cause } => ClientError::new(
                CANNOT_CONNECT,
                b"HY000",
                format!("Can't connect to the database behind Torpor: service '{service}' could not be woken ({cause}); the next query tries again"),
            ),
            Internal(_) => ClientError::new(
                SERVER_LOST,
                b"70100",
                "Lost connection to the database behind Torpor (internal error)",
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_carry_no_internals() {
        let io = std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "10.0.0.7:3306 refused",
        );
        let err = ClientError::for_session_error(&SessionError::BackendUnreachable(io)).unwrap();
        assert_eq!(err.code, CANNOT_CONNECT);
        assert!(!err.message.contains("10.0.0.7"));
        let denied = SessionError::AccessDenied {
            user: "app".into(),
            host: "127.0.0.1".into(),
            using_password: true,
        };
        let err = ClientError::for_session_error(&denied).unwrap();
        assert_eq!((err.code, &err.sql_state), (ACCESS_DENIED, b"28000"));
        assert_eq!(
            err.message,
            "Access denied for user 'app'@'127.0.0.1' (using password: YES)"
        );
    }

    /// libmariadb turns an ERR carrying a client-library code (2000–2999)
    /// into 2027 "malformed packet": no error Torpor writes may carry one.
    #[test]
    fn no_error_carries_a_client_library_code() {
        let io = || std::io::Error::other("x");
        let errors = [
            SessionError::BackendUnreachable(io()),
            SessionError::BackendLost(io()),
            SessionError::BackendProtocol(torpor_protocol::ProtocolError::malformed("x")),
            SessionError::OutcomeUnknown,
            SessionError::Killed,
            SessionError::IdleInTransaction { secs: 1 },
            SessionError::Shutdown,
            SessionError::TooManyConnections,
            SessionError::Internal("x"),
            SessionError::TransactionNotReplayed { reason: "x".into() },
            SessionError::BackendDown {
                held: std::time::Duration::from_secs(60),
            },
            SessionError::CutInFlight,
            SessionError::WakeFailed {
                service: "s".into(),
                cause: "c".into(),
            },
        ];
        for error in &errors {
            let client = ClientError::for_session_error(error).unwrap();
            assert!(is_server_code(client.code), "{error}: {}", client.code);
        }
    }

    #[test]
    fn a_lost_transaction_reads_as_a_retryable_rollback() {
        let lost = SessionError::TransactionNotReplayed {
            reason: "the result of statement 2 differs".into(),
        };
        assert!(lost.retryable());
        let err = ClientError::for_session_error(&lost).unwrap();
        assert_eq!((err.code, &err.sql_state), (DEADLOCK, b"40001"));
        assert!(err.message.contains("rolled back"), "{}", err.message);
        assert!(
            err.message.contains("statement 2 differs"),
            "{}",
            err.message
        );
        let unknown = ClientError::for_session_error(&SessionError::OutcomeUnknown).unwrap();
        assert_eq!(unknown.code, QUERY_INTERRUPTED);
        assert!(unknown.message.contains("unknown"), "{}", unknown.message);
        assert!(
            !SessionError::OutcomeUnknown.retryable(),
            "a commit of unknown outcome must not be retried blindly"
        );
    }
}
