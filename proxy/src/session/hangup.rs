//! How a session notices that its client is gone, or has been idle too
//! long, as MariaDB would.
//!
//! - A client that hangs up while a command runs: MariaDB aborts the
//!   statement (a `GET_LOCK` or `SLEEP` wait ends at once). The worker's
//!   watch looks at the client socket while the session waits for a
//!   reply ([`Session::unless_hung_up`]), and when it is gone the session
//!   stops the statement with
//!   `KILL QUERY` from a side connection; the backend connection, caught
//!   mid-reply, is then closed, never pooled.
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
//! - A client that leaves a command half sent: each wait for more of it
//!   ends after `net_read_timeout_secs` (shorter than MariaDB's own wait,
//!   which is `wait_timeout`: a command on its way may hold a backend
//!   connection), and the session is closed the same way
//!   ([`Session::stalled`]).
//!
//! The watch never cancels a read that is still wanted: it peeks at the
//! client socket (`MSG_PEEK`, never consuming a byte), and the reply read
//! it races is dropped only on a connection that is closed right after.

use std::future::Future;
use std::io::ErrorKind;
use std::os::fd::RawFd;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{select, Either};
use torpor_protocol::Capabilities;
use tracing::debug;

use super::commands::Session;
use super::Failure;
use crate::backend::{self, Login};
use crate::error::SessionError;
use crate::registry::SessionEntry;
use crate::worker::SessionControl;

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
    /// Runs `reply` unless the client hangs up first: `None` then, and
    /// `reply` is dropped (its connection must be closed, not reused).
    /// The worker's watch looks at the client socket (see
    /// `crate::worker`); this arms no timer. A session that KILL closed
    /// is not "hung up": its backend connection is being killed, and that
    /// ends the reply.
    pub(super) async fn unless_hung_up<F: Future>(
        control: &SessionControl,
        entry: &SessionEntry,
        reply: F,
    ) -> Option<F::Output> {
        let gone = async {
            control.hang_up().await;
            if entry.killed.load(Ordering::Acquire) {
                std::future::pending::<()>().await;
            }
        };
        match select(pin!(reply), pin!(gone)).await {
            Either::Left((output, _)) => Some(output),
            Either::Right(((), _)) => None,
        }
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
        match monoio::time::timeout(KILL_LIMIT, kill).await {
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
    pub(super) fn idle_limit(&self) -> Option<IdleLimit> {
        let in_transaction = if self.model.in_transaction() {
            self.shared.settings().idle_in_transaction_timeout
        } else {
            None
        };
        IdleLimit::of(self.wait_timeout(), in_transaction)
    }

    /// The session's `wait_timeout`, or for an interactive client that
    /// never set it, `interactive_timeout` (what MariaDB gives such a
    /// session at login). `None` when unknown or 0.
    fn wait_timeout(&self) -> Option<Duration> {
        let state = &self.model.state;
        let name = if self.capabilities.contains(Capabilities::CLIENT_INTERACTIVE)
            && !state.variables.contains_key("wait_timeout")
        {
            "interactive_timeout"
        } else {
            "wait_timeout"
        };
        let seconds: u64 = state
            .variable(&self.model.baseline, name)?
            .trim()
            .parse()
            .ok()?;
        (seconds > 0).then(|| Duration::from_secs(seconds))
    }

    /// Sends the client what it is owed and waits for its next bytes: the
    /// one place a session is idle, and so the one place a shutdown ends
    /// it (the worker shuts the read side of idle sessions' sockets).
    pub(super) async fn wait_for_client(&mut self, want: usize) -> Result<(), Failure> {
        self.client.shrink_if_idle();
        // Half a command buffered: the rest must come within
        // net_read_timeout (a pinned session holds its backend connection
        // meanwhile), or within the idle limit if that is shorter.
        let mid_command = !self.client.rbuf.is_empty();
        let limit = self.idle_limit();
        let net_read = self.shared.settings().net_read_timeout;
        let allowed = match limit.map(IdleLimit::after) {
            Some(idle) if mid_command => Some(idle.min(net_read)),
            None if mid_command => Some(net_read),
            idle => idle,
        };
        // The worker's watch shuts the socket's read side once the session
        // has waited past `allowed` (see `crate::worker`): no timer here.
        self.control.go_idle(allowed);
        if self.shared.shutdown.is_stopping() {
            self.flush_client().await?;
            return Err(SessionError::Shutdown.into());
        }
        let read = if !mid_command && !self.client.is_compressed() {
            self.wait_holding_nothing(want).await
        } else if self.to_client.is_empty() {
            Ok(self.client.read_more(want).await)
        } else {
            let out = std::mem::take(&mut self.to_client);
            let (written, mut out, read) = self.client.send_and_receive(out, want).await;
            out.clear();
            self.to_client = out;
            written.map(|()| read)
        };
        let read = read.map_err(SessionError::client_io)?;
        self.control.go_busy();
        if self.control.timed_out() {
            if mid_command {
                return Err(self.stalled());
            }
            if let Some(IdleLimit::InTransaction(after)) = limit {
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
        if self.to_client.capacity() > 64 * 1024 {
            self.to_client = bytes::BytesMut::new();
        }
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

    /// Between commands: writes what the client is owed, gives the read
    /// and reply buffers back to the worker's pool, and waits for the
    /// client's next bytes holding neither (a held idle client costs no
    /// buffer); then takes buffers again and reads.
    async fn wait_holding_nothing(
        &mut self,
        want: usize,
    ) -> std::io::Result<std::io::Result<usize>> {
        let small = std::rc::Rc::clone(&self.small_buffers);
        small.give(std::mem::take(&mut self.client.rbuf));
        let ready = if self.to_client.is_empty() {
            small.give(std::mem::take(&mut self.to_client));
            self.client.readable().await
        } else {
            let out = std::mem::take(&mut self.to_client);
            let (written, ready) = self
                .client
                .send_then_readable(out, |mut out| {
                    out.clear();
                    small.give(out);
                })
                .await;
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
