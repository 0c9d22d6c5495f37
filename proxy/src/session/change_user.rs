//! COM_CHANGE_USER: the new user authenticates against Torpor's accounts
//! (switched to mysql_native_password if it used another plugin), then
//! the backend connection changes user with the proven password, and the
//! session's state starts over as MariaDB's does.

use std::time::Duration;

use bytes::BytesMut;
use torpor_protocol::auth::NATIVE_PASSWORD_PLUGIN;
use torpor_protocol::frame::write_payload;
use torpor_protocol::handshake::{AuthSwitch, ChangeUser};
use tracing::debug;

use super::be;
use super::commands::{client_protocol, Session};
use super::reply::WHOLE_PACKET_LIMIT;
use super::{client_ok, login, Failure};
use crate::backend::{finish_auth, read_packet};
use crate::error::SessionError;

/// How long the backend may take to answer COM_CHANGE_USER.
const CHANGE_USER_TIMEOUT: Duration = Duration::from_secs(30);

impl Session {
    /// COM_CHANGE_USER: authenticate the new user against Torpor's accounts
    /// (switching the client to mysql_native_password if it used another
    /// plugin), then change the backend connection's user with the proven
    /// password and relay the backend's answer.
    pub(super) async fn change_user(&mut self) -> Result<(), Failure> {
        let (seq, payload) = read_packet(&mut self.client, WHOLE_PACKET_LIMIT)
            .await
            .map_err(|e| Failure::from(SessionError::client_io(e)))?;
        let mut reply_seq = seq.wrapping_add(1);
        let change = ChangeUser::parse(&payload, self.capabilities)
            .map_err(|e| client_protocol(e, reply_seq))?;
        let plugin = change.auth_plugin.as_deref().unwrap_or_default();
        let mut seed = self.seed.clone();
        let mut response = change.auth_response.clone();
        if !plugin.is_empty() && plugin != NATIVE_PASSWORD_PLUGIN.as_bytes() {
            seed = login::new_seed();
            let mut wire = BytesMut::new();
            let mut switch = BytesMut::new();
            AuthSwitch {
                plugin: NATIVE_PASSWORD_PLUGIN.as_bytes().to_vec(),
                data: seed.clone(),
            }
            .encode(&mut switch);
            write_payload(&mut wire, reply_seq, &switch);
            self.client
                .write_all(wire)
                .await
                .0
                .map_err(|e| Failure::from(SessionError::client_io(e)))?;
            // The backend connection waits with the client: an answer
            // that does not come ends the session (the socket is closed, so
            // a read dropped half done loses nothing anyone reads).
            let read_limit = self.shared.settings().net_read_timeout;
            let answer = read_packet(&mut self.client, WHOLE_PACKET_LIMIT);
            let (seq, answer) = match crate::timer::timeout(read_limit, answer).await {
                Ok(answer) => answer.map_err(|e| Failure::from(SessionError::client_io(e)))?,
                Err(_) => return Err(self.stalled()),
            };
            reply_seq = seq.wrapping_add(1);
            response = answer;
        }
        // The server name the client asked for at its login still
        // chooses the service.
        let chosen = self
            .shared
            .settings()
            .service_named(self.client.tls_server_name());
        let identified = match super::login::authenticate(
            &self.shared,
            &change.user,
            self.peer,
            &seed,
            &response,
            chosen,
        )
        .await
        {
            Ok(identified) => identified,
            Err(error) => {
                return Err(Failure {
                    error,
                    reply_seq: Some(reply_seq),
                })
            }
        };
        let password = identified.password;
        let backend_change = ChangeUser {
            user: change.user.clone(),
            auth_response: password.respond(&be!(self).seed),
            database: change.database.clone(),
            collation: change.collation,
            auth_plugin: Some(NATIVE_PASSWORD_PLUGIN.as_bytes().to_vec()),
            attributes: change.attributes.clone(),
        };
        let mut command = BytesMut::new();
        backend_change.encode(&mut command, be!(self).capabilities);
        let mut wire = BytesMut::new();
        write_payload(&mut wire, 0, &command);
        be!(self)
            .conn
            .write_all(wire)
            .await
            .0
            .map_err(|e| Failure {
                error: SessionError::BackendLost(e),
                reply_seq: Some(reply_seq),
            })?;
        let outcome = finish_auth(&mut be!(self).conn, &password, CHANGE_USER_TIMEOUT).await;
        let ok = outcome.map_err(|error| Failure {
            error,
            reply_seq: Some(reply_seq),
        })?;
        let mut wire = BytesMut::new();
        // The client is told only what its (new, default) tracking
        // settings report.
        let tracking = self.model.baseline.tracking.clone();
        write_payload(
            &mut wire,
            reply_seq,
            &client_ok(&ok, be!(self).capabilities, self.capabilities, &tracking),
        );
        self.client
            .write_all(wire)
            .await
            .0
            .map_err(|e| Failure::from(SessionError::client_io(e)))?;
        debug!(id = self.guard.id, user = %String::from_utf8_lossy(&change.user), "changed user");
        // MariaDB resets the session: variables, user variables, temporary
        // tables, locks, prepared statements; the schema is the one named.
        let schema = (!change.database.is_empty())
            .then(|| String::from_utf8_lossy(&change.database).into_owned());
        self.model.reset(Some(schema));
        self.counts.forget();
        self.left = None;
        // The transaction went with the old session.
        self.journal.clear();
        self.statements.clear();
        be!(self).statements.clear();
        be!(self).to_close.clear();
        if let Some(collation) = change.collation {
            self.collation = collation as u8;
        }
        self.attributes = change.attributes;
        self.user = change.user;
        self.account_host = identified.account_host;
        self.pool_key = std::rc::Rc::new(self.fresh_pool_key());
        self.password = password;
        be!(self).idle_since = std::time::Instant::now();
        // Torpor's tracking was reset with the session: put it back.
        self.after_batch().await
    }
}
