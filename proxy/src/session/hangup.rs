//! How a session notices that its client is gone, or has been idle too
//! long, as MariaDB would.
//!
//! - A client that hangs up while a command runs: MariaDB aborts the
//!   statement (a `GET_LOCK` or `SLEEP` wait ends at once). Torpor looks
//!   at the client socket while it waits for a reply
//!   ([`HangupWatch`]), and when it is gone stops the statement with
//!   `KILL QUERY` from a side connection; the backend connection, caught
//!   mid-reply, is then closed, never pooled.
//! - A session idle past its `wait_timeout` (`interactive_timeout` for a
//!   client that set CLIENT_INTERACTIVE and did not change
//!   `wait_timeout`): MariaDB 10.11 closes the socket with nothing sent,
//!   and the client sees a reset ([`Session::idle_limit`],
//!   [`reset_on_close`]).
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

/// How long a reply is awaited before the client socket is first looked
/// at, and then how often: most replies come sooner, and cost nothing but
/// a timer.
const WATCH_EVERY: Duration = Duration::from_millis(100);

/// How long the side connection that stops a statement may take.
const KILL_LIMIT: Duration = Duration::from_secs(5);

/// What a client socket shows without being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerState {
    /// Open, nothing to read.
    Quiet,
    /// Bytes wait (the client pipelines its next command): it is there.
    Sent,
    /// End-of-file or an error: the client is gone.
    Gone,
}

/// Looks at the socket without consuming anything.
fn peer_state(fd: RawFd) -> PeerState {
    let mut byte = 0u8;
    // SAFETY: `fd` is the session's open client socket (the session owns
    // it for as long as it waits), and the buffer is one valid byte.
    let n = unsafe {
        libc::recv(
            fd,
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match n {
        0 => PeerState::Gone,
        n if n > 0 => PeerState::Sent,
        _ => match std::io::Error::last_os_error().kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => PeerState::Quiet,
            _ => PeerState::Gone,
        },
    }
}

/// Watches a session's client socket while a reply is awaited.
pub(super) struct HangupWatch {
    fd: RawFd,
    entry: Arc<SessionEntry>,
}

impl HangupWatch {
    /// Resolves when the client is gone. A client that sent more bytes is
    /// there (they are its next commands): the watch then waits forever.
    /// A session that KILL closed is not "hung up": its backend
    /// connection is being killed, and that ends the reply.
    async fn gone(&self) {
        loop {
            monoio::time::sleep(WATCH_EVERY).await;
            match peer_state(self.fd) {
                PeerState::Quiet => {}
                PeerState::Gone if !self.entry.killed.load(Ordering::Acquire) => return,
                PeerState::Gone | PeerState::Sent => std::future::pending::<()>().await,
            }
        }
    }

    /// Runs `reply` unless the client hangs up first: `None` then, and
    /// `reply` is dropped (its connection must be closed, not reused).
    pub(super) async fn race<F: Future>(&self, reply: F) -> Option<F::Output> {
        match select(pin!(reply), pin!(self.gone())).await {
            Either::Left((output, _)) => Some(output),
            Either::Right(((), _)) => None,
        }
    }
}

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
    /// A watch on this session's client socket.
    pub(super) fn hangup_watch(&self) -> HangupWatch {
        HangupWatch {
            fd: self.client.raw_fd(),
            entry: Arc::clone(&self.guard.entry),
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
    /// `wait_timeout`, or for an interactive client that never set it,
    /// `interactive_timeout` (what MariaDB gives such a session at
    /// login). `None` when unknown or 0.
    pub(super) fn idle_limit(&self) -> Option<Duration> {
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
        self.control.set_idle(true);
        if self.shared.shutdown.is_stopping() {
            self.flush_client().await?;
            return Err(SessionError::Shutdown.into());
        }
        // Half a command buffered: the rest must come within
        // net_read_timeout (a pinned session holds its backend connection
        // meanwhile), or within wait_timeout if that is shorter.
        let mid_command = !self.client.rbuf.is_empty();
        let limit = match self.idle_limit() {
            Some(idle) if mid_command => Some(idle.min(self.shared.settings().net_read_timeout)),
            None if mid_command => Some(self.shared.settings().net_read_timeout),
            idle => idle,
        };
        let fd = self.client.raw_fd();
        let read = async {
            if self.to_client.is_empty() {
                Ok(self.client.read_more(want).await)
            } else {
                let out = std::mem::take(&mut self.to_client);
                let (written, mut out, read) = self.client.send_and_receive(out, want).await;
                out.clear();
                self.to_client = out;
                written.map(|()| read)
            }
        };
        let mut timed_out = false;
        let read = match limit {
            None => read.await,
            Some(limit) => {
                let mut read = pin!(read);
                match select(read.as_mut(), pin!(monoio::time::sleep(limit))).await {
                    Either::Left((read, _)) => read,
                    Either::Right(((), _)) => {
                        // Idle too long. The read is not dropped half
                        // done: shutting the socket's read side ends it.
                        timed_out = true;
                        // SAFETY: `fd` is this session's open client
                        // socket; shutdown(2) only changes its state.
                        unsafe {
                            libc::shutdown(fd, libc::SHUT_RD);
                        }
                        read.await
                    }
                }
            }
        };
        let read = read.map_err(SessionError::client_io)?;
        self.control.set_idle(false);
        if timed_out {
            if mid_command {
                return Err(self.stalled());
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
