//! A client session, from accept to close, in phases that hand each other
//! what they need: admit (connection limit) → login (greeting, password
//! check, backend login) → command loop → close.
//!
//! - [`login`]: the connection phase.
//! - [`commands`]: the command loop and its ledger of replies owed;
//!   `drain` forwards replies and learns from them, `attach` keeps the
//!   session on a live backend connection, `change_user` does
//!   COM_CHANGE_USER.
//! - [`model`]: what Torpor knows of a session's state, and its pins.
//! - [`control`]: what the session shows its worker's watch (idle or
//!   busy, a reply awaited, a write under way), and each look the watch
//!   takes.
//! - [`left`]: user variables read back only when a session's state
//!   leaves its connection, so the client's diagnostics stay untouched.
//! - [`statements`]: session-stable prepared statement ids.
//! - [`reply`]: finding reply boundaries in the backend's read buffer.
//! - [`relay`]: streaming packets Torpor does not look into, and the
//!   refusal of a command over `max_allowed_packet`.
//! - [`rewrite`]: KILL and CONNECTION_ID() id translation.
//! - `kill`: the session's side of it: which payload goes instead of the
//!   client's, and KILL of another session (its socket closes at once).
//! - `hangup`: waiting for the client; a client gone mid-command (its
//!   statement is stopped), idle past its `wait_timeout`, past
//!   `idle_in_transaction_timeout_secs` in an open transaction, or stalled
//!   half-way through sending a command (its session is closed).
//! - `transaction`: the open transaction's journal, and its replay when
//!   the backend connection dies under it.
//! - `cut`: commands cut in flight that replay does not take: each gets
//!   its error, and the session goes on.

mod attach;
mod change_user;
pub mod commands;
pub mod control;
mod counts;
mod cut;
mod drain;
mod hangup;
mod kill;
pub mod left;
pub mod login;
pub mod model;
pub mod relay;
pub mod reply;
pub mod rewrite;
pub mod statements;
mod transaction;

use std::rc::Rc;
use std::sync::Arc;

use bytes::BytesMut;
use tracing::{debug, info, warn};

use crate::buffers::BufferPool;
use crate::client_error::ClientError;
use crate::context::Shared;
use crate::error::{Fault, SessionError};
use crate::metrics::{CloseReason, WorkerMetrics};
use crate::net::{Conn, Peer};
use control::SessionControl;

/// A failure, with the sequence id at which the client waits for a packet
/// (`None` when it waits for nothing and just gets the connection closed).
#[derive(Debug)]
pub struct Failure {
    /// What went wrong.
    pub error: SessionError,
    /// Where an ERR packet may go, if anywhere.
    pub reply_seq: Option<u8>,
}

/// The attached backend connection, or an internal failure: every path
/// that needs one attaches it first, so `None` is a bug, reported as such
/// instead of a panic.
macro_rules! be {
    ($session:ident) => {
        match $session.backend.as_mut() {
            Some(backend) => backend,
            None => return Err($crate::session::Failure::internal()),
        }
    };
}
pub(crate) use be;

impl Failure {
    /// No backend connection was attached where one must be.
    pub fn internal() -> Failure {
        Failure {
            error: SessionError::Internal("no backend connection attached"),
            reply_seq: Some(1),
        }
    }
}

impl From<SessionError> for Failure {
    fn from(error: SessionError) -> Self {
        Failure {
            error,
            reply_seq: None,
        }
    }
}

/// What a session uses of its worker.
pub struct WorkerParts {
    /// The worker's index.
    pub index: usize,
    /// The worker's handle on the session (shutdown of idle sessions).
    pub control: Rc<SessionControl>,
    /// The worker's large read buffers.
    pub buffers: Rc<BufferPool>,
    /// The worker's small buffers (client commands and replies).
    pub small_buffers: Rc<BufferPool>,
    /// The worker's backend connections, one pool per service.
    pub pools: Rc<crate::worker::ServicePools>,
    /// The worker's metrics.
    pub metrics: Rc<WorkerMetrics>,
}

/// Serves one accepted client connection to its end.
///
/// The task this future becomes lives as long as its client, and is as
/// large as the largest state it can be in: so everything up to the
/// command loop (the login, a refusal) is one boxed future, freed once
/// the client is logged in, and the command loop another, which holds
/// the session. What stays in the task itself is the two boxes.
pub async fn serve(client: Conn, peer: Peer, shared: Arc<Shared>, parts: WorkerParts) {
    if let Some(run) = Box::pin(start(client, peer, shared, parts)).await {
        run.await;
    }
}

/// Logs the client in and builds its session; `None` when the login
/// failed (the client was told why, its connection closed). The command
/// loop's future comes back boxed, with the session in it: built in this
/// future, which ends before the loop runs, so no second copy of the
/// session stays in the task.
async fn start(
    mut client: Conn,
    peer: Peer,
    shared: Arc<Shared>,
    parts: WorkerParts,
) -> Option<std::pin::Pin<Box<impl std::future::Future<Output = CloseReason>>>> {
    parts.control.set_fd(client.raw_fd());
    parts.metrics.client_opened();
    let guard = shared.registry.register();
    let id = guard.id;
    // The permit (a max_connections slot) is taken once the client has
    // proven its password: see login::login.
    let (authenticated, permit) =
        match login::login(&mut client, &shared, id, peer, &parts.pools).await {
            Ok(logged_in) => logged_in,
            Err((error, seq)) => {
                if matches!(error, SessionError::TooManyConnections) {
                    parts.metrics.client_closed(CloseReason::Refused);
                    warn!(%peer, "connection refused: too many connections");
                } else {
                    parts.metrics.client_closed(CloseReason::LoginFailed);
                }
                report(id, peer, &error, "login");
                tell_client(&mut client, &error, seq).await;
                client.close().await;
                return None;
            }
        };
    let user = String::from_utf8_lossy(&authenticated.user);
    let service = &authenticated.service.name;
    match client.tls_server_name() {
        Some(server_name) => info!(id, %peer, %user, %service, server_name, "logged in"),
        None => info!(id, %peer, %user, %service, "logged in"),
    }
    let session = commands::Session::new(
        client,
        authenticated,
        permit,
        guard,
        Arc::clone(&shared),
        peer,
        parts,
    );
    Some(Box::pin(session.run()))
}

/// Logs a session's end once, at the level its fault deserves.
pub fn report(id: u32, peer: Peer, error: &SessionError, phase: &'static str) {
    if error.is_quiet() {
        debug!(id, %peer, phase, "session ended: {error}");
        return;
    }
    match error.fault() {
        Fault::Client => info!(id, %peer, phase, fault = "client", "session failed: {error}"),
        Fault::Backend => {
            warn!(id, %peer, phase, fault = "backend", retryable = error.retryable(), "session failed: {error}")
        }
        Fault::Proxy => info!(id, %peer, phase, fault = "proxy", "session ended: {error}"),
    }
}

/// Sends the client the ERR packet `error` calls for, if any, at `seq`.
pub async fn tell_client(client: &mut Conn, error: &SessionError, seq: u8) {
    let mut wire = BytesMut::new();
    if let SessionError::BackendRefused(err) = error {
        login::relay_error(err, seq, &mut wire);
    } else if let Some(client_error) = ClientError::for_session_error(error) {
        client_error.write(&mut wire, seq);
    }
    if !wire.is_empty() {
        let _ = client.write_all(wire).await;
    }
}

/// An OK packet from a backend connection (with Torpor's tracking), as a
/// client with `client` capabilities and `tracking` settings gets it.
pub fn client_ok(
    ok: &[u8],
    backend: torpor_protocol::Capabilities,
    client: torpor_protocol::Capabilities,
    tracking: &torpor_replay::tracking::ClientTracking,
) -> Vec<u8> {
    use torpor_protocol::session_track::{encode_changes, OkPacket};
    let Ok(parsed) = OkPacket::parse(ok, backend) else {
        return ok.to_vec();
    };
    let mut out = BytesMut::with_capacity(ok.len());
    match parsed.changes() {
        Ok(changes) if client.contains(torpor_protocol::Capabilities::CLIENT_SESSION_TRACK) => {
            let kept: Vec<_> = changes.into_iter().filter(|c| tracking.keeps(c)).collect();
            let mut block = BytesMut::new();
            encode_changes(&kept, &mut block);
            parsed.encode_with_state(client, &block, &mut out);
        }
        _ => parsed.encode_for(client, &mut out),
    }
    out.to_vec()
}
