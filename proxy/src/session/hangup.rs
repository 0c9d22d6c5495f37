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
}
