//! How a session notices that its client is gone, or has been idle too
//! long, as MariaDB would.
//!
//! - A client that hangs up while a command runs: MariaDB aborts the
//!   statement (a `GET_LOCK` or `SLEEP` wait ends at once). The worker's
//!   watch looks at the client socket while the session waits for a
//!   reply, and when it is gone shuts the read side of the backend socket
//!   the reply comes on ([`Session::hung_up_meanwhile`]); the session then
//!   stops the statement with `KILL QUERY` from a side connection. The
//!   backend connection, caught mid-reply, is then closed, never pooled.
//! - A session idle past its `wait_timeout` (`interactive_timeout` for a
//!   client that set CLIENT_INTERACTIVE and did not change
//!   `wait_timeout`): MariaDB 10.11 closes the socket with nothing sent,
//!   and the client sees a reset ([`Session::idle_limit`],
//!   [`reset_on_close`]); the worker's watch notices it.
//! - A session idle inside an open transaction past Torpor's
//!   `idle_in_transaction_timeout_secs` (off by default; MariaDB has no
//!   such limit): closed with an error, as PostgreSQL's
//!   `idle_in_transaction_session_timeout` does, its transaction rolled
//!   back with its backend connection ([`IdleLimit::InTransaction`]).
//! - A client that stops reading a reply: a write to it that waits past
//!   `net_write_timeout_secs` (MariaDB's `net_write_timeout`) is ended by
//!   the worker's watch, and the session closes with a reset
//!   ([`Session::client_write_failed`]); the backend connection the
//!   reply came from is closed, not held for ever.
//! - A client that leaves a command half sent: each wait for more of it
//!   ends after `net_read_timeout_secs` (shorter than MariaDB's own wait,
//!   which is `wait_timeout`: a command on its way may hold a backend
//!   connection), and the session is closed the same way
//!   ([`Session::stalled`]).
//!
//! The watch never takes a byte from a client: it peeks at the client
//! socket (`MSG_PEEK`), and ends a reply's wait only on a backend
//! connection that is closed right after.

use std::io::ErrorKind;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use torpor_protocol::Capabilities;
use tracing::debug;

use super::commands::Session;
use super::model::NumericVariable;
use super::Failure;
use crate::backend::{self, Login};
use crate::error::SessionError;

/// A wait for the client shorter than this counts as a busy client's.
const SHORT_WAIT: Duration = Duration::from_secs(1);

/// After this many short waits in a row, a session keeps its read buffer
/// and its command path's future through its waits (see
/// [`Session::waits_idle`]). Waiting holding nothing costs a readiness
/// wait and then a `recv` (one system call more than a read with a
/// buffer), and leaving the command path's future an allocation when the
/// next command comes: a client sending command after command would pay
/// both on every query.
const BUSY_AFTER_SHORT_WAITS: u8 = 8;

/// How long the side connection that stops a statement may take.
const KILL_LIMIT: Duration = Duration::from_secs(5);

/// Makes the next close of `fd` a reset, as MariaDB's close of a timed-out
/// connection is (the client's next command fails on the spot).
pub(super) fn reset_on_close(fd: RawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `fd` is the session's open socket and `linger` a valid
    // option value of the size given.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

impl Session {
    /// Whether a reply's wait ended because the client hung up: the
    /// worker's watch found it gone and shut the backend socket's read
    /// side (see [`super::control`]; no timer, no select per reply). A
    /// session that KILL closed is not "hung up": its backend connection
    /// is being killed, and that ends the reply.
    pub(super) fn hung_up_meanwhile(&self) -> bool {
        self.control.hung_up() && !self.guard.entry.killed.load(Ordering::Acquire)
    }

    /// The client hung up mid-command: stops the statement its backend
    /// connection runs (`KILL QUERY` from a side connection, as the
    /// session's own user), and ends the session. The backend connection
    /// is mid-reply: the failure leaves the ledger unfinished, so it is
    /// closed, not pooled.
    pub(super) async fn client_hung_up(&mut self) -> Failure {
        let gone = Failure {
            error: SessionError::ClientGone,
            reply_seq: None,
        };
        let Some(thread) = self.backend.as_ref().map(|b| b.thread_id) else {
            return gone;
        };
        let login = Login {
            user: &self.user,
            password: &self.password,
            capabilities: self.capabilities & !Capabilities::CLIENT_INTERACTIVE,
            collation: self.collation,
            database: None,
            attributes: &self.attributes,
            max_packet_size: self.max_packet_size,
        };
        let service = Arc::clone(&self.service);
        let kill = async {
            let (mut side, _) = service.connect(&login).await?;
            let result = backend::run_query(&mut side, &format!("KILL QUERY {thread}")).await;
            side.conn.close().await;
            result.map(drop)
        };
        match crate::timer::timeout(KILL_LIMIT, kill).await {
            Ok(Ok(())) => debug!(
                id = self.guard.id,
                thread, "client hung up: statement killed"
            ),
            Ok(Err(error)) => {
                debug!(id = self.guard.id, thread, %error, "client hung up: KILL QUERY failed")
            }
            Err(_) => debug!(
                id = self.guard.id,
                thread, "client hung up: KILL QUERY timed out"
            ),
        }
        gone
    }

    /// How long the session may sit idle before it is closed: its
    /// [`Session::wait_timeout`], or, inside an open transaction, Torpor's
    /// idle-in-transaction limit when that is shorter. `None`: no limit.
    pub(super) fn idle_limit(&mut self) -> Option<IdleLimit> {
        let in_transaction = if self.model.in_transaction() {
            self.settings.load().idle_in_transaction_timeout
        } else {
            None
        };
        IdleLimit::of(self.wait_timeout(), in_transaction)
    }

    /// The session's `wait_timeout`, or for an interactive client that
    /// never set it, `interactive_timeout` (what MariaDB gives such a
    /// session at login). `None` when unknown or 0.
    fn wait_timeout(&self) -> Option<Duration> {
        let model = &self.model;
        let name = if self.capabilities.contains(Capabilities::CLIENT_INTERACTIVE)
            && !model.sets(NumericVariable::WaitTimeout)
        {
            NumericVariable::InteractiveTimeout
        } else {
            NumericVariable::WaitTimeout
        };
        let seconds = model.number(name)?;
        (seconds > 0).then(|| Duration::from_secs(seconds))
    }

    /// Whether the session's next wait for its client is an idle one
    /// ([`Session::wait_idle`]): no command half sent, and a client that
    /// is not sending command after command (its last
    /// [`BUSY_AFTER_SHORT_WAITS`] waits each shorter than [`SHORT_WAIT`]).
    pub(super) fn waits_idle(&self) -> bool {
        self.client.rbuf.is_empty() && self.short_waits < BUSY_AFTER_SHORT_WAITS
    }

    /// Sends the client what it is owed and waits for its next bytes,
    /// with its read buffer, in one submission: a client half-way
    /// through a command, or one that sends command after command. One
    /// of the two places a session
    /// waits for its client, and so where a shutdown ends it (the worker
    /// shuts the read side of idle sessions' sockets).
    pub(super) async fn wait_for_client(&mut self, want: usize) -> Result<(), Failure> {
        let wait = self.start_wait();
        if self.shared.shutdown.is_stopping() {
            self.flush_client().await?;
            return Err(SessionError::Shutdown.into());
        }
        let read = if self.to_client.is_empty() {
            self.client.read_more(want).await
        } else {
            // The replies may not fit in the socket: a client that stopped
            // reading them is closed after net_write_timeout (the watch
            // tells a finished write from a stuck one by the socket).
            let out = std::mem::take(&mut self.to_client);
            self.control.write_started_at(wait.net_write, wait.since);
            let (written, mut out, read) = self.client.send_and_receive(out, want).await;
            self.control.write_done();
            out.clear();
            self.to_client = out;
            if let Err(e) = written {
                return Err(self.client_write_failed(e));
            }
            read
        };
        self.end_wait(wait, read)
    }

    /// The wait of an idle client ([`Session::waits_idle`]); the other
    /// place a session waits for its client (see
    /// [`Session::wait_for_client`]). Runs outside the command path's
    /// future, which an idle session does not keep; what it awaits is
    /// what the session's task holds while its client is idle. A plain
    /// connection waits holding no buffer
    /// ([`Session::wait_holding_nothing`]); a compressed or TLS one, which
    /// reads through its layers, writes what the client is owed and then
    /// reads with its buffer (two submissions: the futures of the joint
    /// write-and-read would make every idle session's task larger).
    pub(super) async fn wait_idle(&mut self, want: usize) -> Result<(), Failure> {
        let wait = self.start_wait();
        if self.shared.shutdown.is_stopping() {
            self.flush_client().await?;
            return Err(SessionError::Shutdown.into());
        }
        let read = if self.client.is_compressed() || self.client.is_tls() {
            self.flush_client().await?;
            self.client.read_more(want).await
        } else {
            match self.wait_holding_nothing(want, wait.since).await {
                Ok(read) => read,
                Err(e) => return Err(self.client_write_failed(e)),
            }
        };
        self.end_wait(wait, read)
    }

    /// Before a wait for the client: tells the worker's watch how long
    /// the session may wait.
    fn start_wait(&mut self) -> Wait {
        self.client.shrink_if_idle();
        // Half a command buffered: the rest must come within
        // net_read_timeout (a pinned session holds its backend connection
        // meanwhile), or within the idle limit if that is shorter.
        let mid_command = !self.client.rbuf.is_empty();
        let limit = self.idle_limit();
        let (net_read, net_write) = {
            let settings = self.settings.load();
            (settings.net_read_timeout, settings.net_write_timeout)
        };
        let allowed = match limit.map(IdleLimit::after) {
            Some(idle) if mid_command => Some(idle.min(net_read)),
            None if mid_command => Some(net_read),
            idle => idle,
        };
        // The worker's watch shuts the socket's read side once the session
        // has waited past `allowed` (see `super::control`): no timer here.
        let since = self.control.go_idle(allowed);
        Wait {
            mid_command,
            limit,
            net_write,
            since,
        }
    }

    /// After a wait for the client that read `read`: what it means for
    /// the session (a time-out, a client gone, bytes to go on with).
    fn end_wait(&mut self, wait: Wait, read: std::io::Result<usize>) -> Result<(), Failure> {
        let (waited, now) = self.control.go_busy();
        // The command that woke the session is taken up in a moment: its
        // batch starts now, without another read of the clock.
        self.woke_at = Some(now);
        self.short_waits = if waited < SHORT_WAIT {
            self.short_waits.saturating_add(1)
        } else {
            0
        };
        if self.control.timed_out() {
            if wait.mid_command {
                return Err(self.stalled());
            }
            if let Some(IdleLimit::InTransaction(after)) = wait.limit {
                // The client is told why at its next read (its next
                // command reads this ERR as its reply); the backend
                // connection, in the transaction, is closed, which rolls
                // it back.
                return Err(Failure {
                    error: SessionError::IdleInTransaction {
                        secs: after.as_secs(),
                    },
                    reply_seq: Some(1),
                });
            }
            debug!(id = self.guard.id, peer = %self.peer, "idle past wait_timeout: closed");
            self.reset_on_close = true;
            return Err(SessionError::ClientGone.into());
        }
        self.count_traffic();
        self.settle_to_client();
        match read {
            Ok(0) if self.guard.entry.killed.load(Ordering::Acquire) => {
                Err(SessionError::Killed.into())
            }
            Ok(0) if self.shared.shutdown.is_stopping() => Err(SessionError::Shutdown.into()),
            Ok(0) => Err(SessionError::ClientGone.into()),
            Ok(_) => Ok(()),
            Err(e) => Err(SessionError::client_io(e).into()),
        }
    }

    /// A write to the client failed with `error`. When the worker's watch
    /// ended it (the client read nothing for `net_write_timeout`), the
    /// session ends as MariaDB ends it, with the socket reset; its backend
    /// connection, caught mid-reply, is closed with it, never pooled.
    pub(super) fn client_write_failed(&mut self, error: std::io::Error) -> Failure {
        if !self.control.write_timed_out() {
            return SessionError::client_io(error).into();
        }
        debug!(id = self.guard.id, peer = %self.peer, "client read nothing within net_write_timeout: closed");
        self.reset_on_close = true;
        SessionError::client_io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the client read nothing within net_write_timeout",
        ))
        .into()
    }

    /// Between commands: writes what the client is owed, gives the read
    /// and reply buffers back to the worker's pool, and waits for the
    /// client's next bytes holding neither (a held idle client costs no
    /// buffer); then takes buffers again and reads. The wait began at
    /// `since`.
    async fn wait_holding_nothing(
        &mut self,
        want: usize,
        since: Instant,
    ) -> std::io::Result<std::io::Result<usize>> {
        let small = std::rc::Rc::clone(&self.small_buffers);
        let large = std::rc::Rc::clone(&self.buffers);
        small.give(std::mem::take(&mut self.client.rbuf));
        // Nor the ledger's room (four entries of a couple of hundred bytes
        // once a command ran): taken again with the next command's reply.
        // A busy client, which waits with its buffer, keeps it.
        if self.ledger.is_empty() {
            self.ledger = std::collections::VecDeque::new();
        }
        let ready = if self.to_client.is_empty() {
            let emptied = std::mem::take(&mut self.to_client);
            super::drain::give_reply_buffer(&small, &large, emptied);
            self.client.readable().await
        } else {
            // As in `wait_for_client`: a client that stops reading is
            // closed after net_write_timeout.
            let out = std::mem::take(&mut self.to_client);
            let control = std::rc::Rc::clone(&self.control);
            control.write_started_at(self.settings.load().net_write_timeout, since);
            let (written, ready) = self
                .client
                .send_then_readable(out, |out| {
                    control.write_done();
                    super::drain::give_reply_buffer(&small, &large, out);
                })
                .await;
            self.control.write_done();
            written?;
            ready
        };
        if let Err(e) = ready {
            return Ok(Err(e));
        }
        self.client.rbuf = small.take();
        self.to_client = small.take();
        match self.client.read_ready() {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                Ok(self.client.read_more(want).await)
            }
            read => Ok(read),
        }
    }

    /// The client left a command half sent past `net_read_timeout` (or
    /// its `wait_timeout`): the session ends, the socket is reset, and a
    /// backend connection caught mid-command is closed with it.
    pub(super) fn stalled(&mut self) -> Failure {
        self.reset_on_close = true;
        SessionError::client_io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no more of the command came within net_read_timeout",
        ))
        .into()
    }
}

/// What a wait for the client needs to know once it is over.
struct Wait {
    /// Half a command was buffered when it began.
    mid_command: bool,
    /// The idle limit it ran under.
    limit: Option<IdleLimit>,
    /// `net_write_timeout`, read with `net_read_timeout` (one load of the
    /// settings per wait).
    net_write: Duration,
    /// When it began: also when the write of what the client is owed,
    /// which goes with the wait, starts.
    since: Instant,
}

/// How long a session may sit idle, and what ends it then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IdleLimit {
    /// Its `wait_timeout` (or `interactive_timeout`): closed with a
    /// reset, nothing sent, as MariaDB does.
    WaitTimeout(Duration),
    /// Torpor's `idle_in_transaction_timeout_secs`, shorter than the
    /// former: closed with an ERR that says why.
    InTransaction(Duration),
}

impl IdleLimit {
    /// The time it allows.
    pub(super) fn after(self) -> Duration {
        match self {
            IdleLimit::WaitTimeout(after) | IdleLimit::InTransaction(after) => after,
        }
    }

    /// The shorter of the session's `wait_timeout` and, when it is in a
    /// transaction, the idle-in-transaction limit.
    fn of(wait: Option<Duration>, in_transaction: Option<Duration>) -> Option<IdleLimit> {
        match (wait, in_transaction) {
            (Some(wait), Some(limit)) if wait <= limit => Some(IdleLimit::WaitTimeout(wait)),
            (_, Some(limit)) => Some(IdleLimit::InTransaction(limit)),
            (wait, None) => wait.map(IdleLimit::WaitTimeout),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::IdleLimit;
    use std::time::Duration;

    #[test]
    fn the_shorter_limit_decides_and_wait_timeout_wins_a_tie() {
        let secs = Duration::from_secs;
        let cases = [
            (None, None, None),
            (
                Some(secs(28800)),
                None,
                Some(IdleLimit::WaitTimeout(secs(28800))),
            ),
            (
                None,
                Some(secs(30)),
                Some(IdleLimit::InTransaction(secs(30))),
            ),
            (
                Some(secs(28800)),
                Some(secs(30)),
                Some(IdleLimit::InTransaction(secs(30))),
            ),
            (
                Some(secs(10)),
                Some(secs(30)),
                Some(IdleLimit::WaitTimeout(secs(10))),
            ),
            (
                Some(secs(30)),
                Some(secs(30)),
                Some(IdleLimit::WaitTimeout(secs(30))),
            ),
        ];
        for (wait, in_transaction, want) in cases {
            assert_eq!(
                IdleLimit::of(wait, in_transaction),
                want,
                "{wait:?} {in_transaction:?}"
            );
        }
    }
}
