//! What can end or fail a client session, and whose fault it was.
//!
//! Every failure is classified once, here; [`crate::client_error`] turns
//! it into what the client is told, and the session logs it once with its
//! [`Fault`].

use std::io;

use torpor_protocol::ProtocolError;

/// Who caused a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The client: bad bytes, wrong password, went away.
    Client,
    /// The backend database: unreachable, refused, died, spoke nonsense.
    Backend,
    /// Torpor itself: a limit, a shutdown, an internal bug.
    Proxy,
}

/// An error the backend sent us, kept to relay it unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendErr {
    /// The ERR packet's payload.
    pub payload: Vec<u8>,
}

impl BackendErr {
    /// The error code, when the payload is a well-formed ERR packet.
    pub fn code(&self) -> Option<u16> {
        match self.payload.as_slice() {
            [0xff, low, high, ..] => Some(u16::from_le_bytes([*low, *high])),
            _ => None,
        }
    }
}

/// Why a session failed or ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The client closed its connection (possibly mid-command).
    #[error("client closed the connection")]
    ClientGone,
    /// Reading from or writing to the client failed.
    #[error("client connection error: {0}")]
    ClientIo(#[source] io::Error),
    /// The client broke the protocol.
    #[error("client protocol error: {0}")]
    ClientProtocol(#[source] ProtocolError),
    /// The client asked for something Torpor does not do (yet).
    #[error("unsupported by Torpor: {0}")]
    Unsupported(&'static str),
    /// The client's TLS handshake failed (it sent something that is not
    /// TLS, or TLS that rustls refuses); the alert was sent.
    #[error("client TLS handshake failed: {0}")]
    ClientTls(#[source] io::Error),
    /// Wrong user name or password.
    #[error("access denied for user '{user}'@'{host}'")]
    AccessDenied {
        /// The user name, as the client sent it (lossy UTF-8).
        user: String,
        /// The client's address, as MariaDB names it in the message.
        host: String,
        /// Whether the client sent a password.
        using_password: bool,
    },
    /// No connection to the backend could be made.
    #[error("backend unreachable: {0}")]
    BackendUnreachable(#[source] io::Error),
    /// TLS to the backend failed: it offers none while `[backend] tls` is
    /// required, or its certificate is not trusted. Not an outage (trying
    /// again soon does not help): the login fails at once.
    #[error("backend TLS failed: {0}")]
    BackendTls(#[source] io::Error),
    /// The backend refused the login or a command with an ERR packet that
    /// is relayed to the client as it is.
    #[error("backend refused")]
    BackendRefused(BackendErr),
    /// The backend connection failed while a command was in flight.
    #[error("lost the backend connection: {0}")]
    BackendLost(#[source] io::Error),
    /// The backend broke the protocol.
    #[error("backend protocol error: {0}")]
    BackendProtocol(#[source] ProtocolError),
    /// The backend connection of an open transaction died and the
    /// transaction could not be replayed on a new one: it was rolled back
    /// and the session goes on outside a transaction.
    #[error("transaction lost with its backend connection, not replayed: {reason}")]
    TransactionNotReplayed {
        /// Why, in words a client may read (no internals).
        reason: String,
    },
    /// The backend connection died while a statement that may have ended
    /// the transaction (COMMIT) was in flight: whether it committed is
    /// unknown, and it is never run again.
    #[error("lost the backend connection during a statement that ends the transaction")]
    OutcomeUnknown,
    /// The backend stayed unreachable (stopped, restarting) for as long as
    /// a command may be held ([`crate::outage`]). The session goes on: the
    /// command gets this error, the next one tries again.
    #[error("backend unreachable for {held:?}")]
    BackendDown {
        /// How long the command was held.
        held: std::time::Duration,
    },
    /// The backend connection died while a statement outside a
    /// transaction was in flight (sent, no reply): whether it ran is
    /// unknown, it is not run again, and the session goes on.
    #[error("lost the backend connection during a statement")]
    CutInFlight,
    /// The connection was killed with KILL CONNECTION.
    #[error("connection killed")]
    Killed,
    /// The client sat idle in an open transaction past
    /// `idle_in_transaction_timeout_secs`: the session is closed, its
    /// transaction rolled back with its backend connection.
    #[error("idle in a transaction for more than {secs} s (idle_in_transaction_timeout_secs)")]
    IdleInTransaction {
        /// The limit, in seconds.
        secs: u64,
    },
    /// Torpor is shutting down.
    #[error("shutting down")]
    Shutdown,
    /// A plain TCP login while `require_secure_transport` is on. The
    /// client is told what MariaDB 10.11 tells it: access denied, as for
    /// a wrong password (the log says why).
    #[error("plain TCP login for '{user}'@'{host}' while require_secure_transport is on")]
    InsecureTransport {
        /// The user name, as the client sent it (lossy UTF-8).
        user: String,
        /// The client's address.
        host: String,
        /// Whether the client sent a password.
        using_password: bool,
    },
    /// The connection limit is reached.
    #[error("too many connections")]
    TooManyConnections,
    /// No backend connection became free in time (or too many sessions
    /// wait for one).
    #[error("no backend connection free: {0}")]
    PoolExhausted(&'static str),
    /// The session's service could not be woken (or not in time). The
    /// session goes on: the command gets this error, the next one tries
    /// again.
    #[error("service '{service}' could not be woken: {cause}")]
    WakeFailed {
        /// The service.
        service: String,
        /// Why (driver error or timeout).
        cause: String,
    },
    /// The account the client logs in as authenticates with a plugin
    /// Torpor cannot serve.
    #[error("account '{user}'@'{host}' uses authentication plugin '{plugin}'")]
    UnsupportedPlugin {
        /// The account's user.
        user: String,
        /// Its host pattern.
        host: String,
        /// The plugin.
        plugin: String,
    },
    /// A bug in Torpor: a state its code should never reach.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl SessionError {
    /// Who caused it.
    pub fn fault(&self) -> Fault {
        use SessionError::*;
        match self {
            ClientGone
            | ClientIo(_)
            | ClientProtocol(_)
            | AccessDenied { .. }
            | IdleInTransaction { .. }
            | Unsupported(_)
            | InsecureTransport { .. }
            | ClientTls(_)
            | UnsupportedPlugin { .. } => Fault::Client,
            BackendUnreachable(_)
            | BackendTls(_)
            | BackendRefused(_)
            | BackendLost(_)
            | BackendProtocol(_)
            | TransactionNotReplayed { .. }
            | OutcomeUnknown
            | BackendDown { .. }
            | CutInFlight
            | WakeFailed { .. } => Fault::Backend,
            Killed | Shutdown | TooManyConnections | PoolExhausted(_) | Internal(_) => Fault::Proxy,
        }
    }

    /// Whether trying again later may succeed (a client may reconnect).
    pub fn retryable(&self) -> bool {
        use SessionError::*;
        matches!(
            self,
            BackendUnreachable(_)
                | BackendLost(_)
                | Shutdown
                | TooManyConnections
                | PoolExhausted(_)
                | WakeFailed { .. }
                | BackendDown { .. }
                | TransactionNotReplayed { .. }
        )
    }

    /// Whether this is an orderly end rather than a failure worth a warning.
    pub fn is_quiet(&self) -> bool {
        matches!(self, SessionError::ClientGone | SessionError::Shutdown)
    }

    /// Maps an I/O error on the client socket.
    pub fn client_io(error: io::Error) -> SessionError {
        if is_disconnect(&error) {
            SessionError::ClientGone
        } else {
            SessionError::ClientIo(error)
        }
    }
}

/// Whether an I/O error just means the peer went away.
pub fn is_disconnect(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionAborted
    )
}

impl From<crate::pool::PoolError> for SessionError {
    /// What a session is told when the pool had no connection for it.
    fn from(error: crate::pool::PoolError) -> SessionError {
        match error {
            crate::pool::PoolError::QueueFull => {
                SessionError::PoolExhausted("too many sessions are waiting")
            }
            crate::pool::PoolError::Timeout => SessionError::PoolExhausted("the wait timed out"),
        }
    }
}
