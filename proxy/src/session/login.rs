//! The connection phase, which Torpor terminates itself: greet the client,
//! check its password against the stored hash, and log in to the backend
//! as the same user with the `SHA1(password)` the client proved.

use bytes::BytesMut;
use rand::Rng;
use torpor_protocol::auth::{ProvenPassword, NATIVE_PASSWORD_PLUGIN, SCRAMBLE_LEN};
use torpor_protocol::frame::write_payload;
use torpor_protocol::handshake::{
    AuthSwitch, ClientHello, Greeting, HandshakeResponse, PackedAttributes,
};
use torpor_protocol::packets::ServerStatus;
use torpor_protocol::Capabilities;

use torpor_replay::state::SessionState;

use crate::accounts::Refusal;
use crate::backend::{self, BackendConn, BackendInfo, Login};
use crate::context::{ConnectionPermit, Shared};
use crate::error::{BackendErr, SessionError};
use crate::net::{Conn, Peer};
use crate::outage::{self, Hold, Holding};
use crate::pool::{BackendPool, Borrowed, Lent, Place, PoolKey, Pooled};
use crate::service::Service;
use crate::session::model::SessionModel;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;
use tracing::{debug, info};

/// Largest packet accepted from a client before it has logged in.
pub const LOGIN_PACKET_LIMIT: usize = 64 * 1024;

/// A client that proved who it is, and its backend connection.
pub struct Authenticated {
    /// The user name.
    pub user: Vec<u8>,
    /// The host pattern of the backend account it logged in as (`None`: a
    /// configured user).
    pub account_host: Option<String>,
    /// What the client proved about its password.
    pub password: ProvenPassword,
    /// Capabilities negotiated with the client.
    pub capabilities: Capabilities,
    /// The seed Torpor greeted the client with (COM_CHANGE_USER answers it).
    pub seed: Vec<u8>,
    /// The service the user routes to.
    pub service: Arc<Service>,
    /// This worker's pool of backend connections to that service.
    pub pool: Rc<BackendPool<BackendConn>>,
    /// The backend connection, logged in as the user; `None` when the
    /// service sleeps (the login did not wake it) or the connection went
    /// back to the pool.
    pub backend: Option<Lent<BackendConn>>,
    /// The capabilities the session's backend connections use.
    pub backend_caps: Capabilities,
    /// The client's collation (new backend connections open with it).
    pub collation: u8,
    /// The client's connection attributes (passed to new backend
    /// connections).
    pub attributes: PackedAttributes,
    /// The client's max packet size.
    pub max_packet_size: u32,
    /// What Torpor knows of the new session's state.
    pub model: SessionModel,
}

/// A fresh authentication seed: 20 printable ASCII bytes without `\0`
/// and `$`, as MariaDB makes them, since some clients treat it as a string.
pub fn new_seed() -> Vec<u8> {
    let mut rng = rand::rng();
    (0..SCRAMBLE_LEN)
        .map(|_| loop {
            let b: u8 = rng.random_range(0x21..0x7f);
            if b != b'$' {
                break b;
            }
        })
        .collect()
}

/// Where the login has got to: what the next packet's sequence id is,
/// and until when the client may take to prove who it is.
struct Exchange<'a> {
    client: &'a mut Conn,
    seq: u8,
    /// The login timeout's end (MariaDB's `connect_timeout`): every wait
    /// on the client ends there, so a silent or trickling socket is
    /// closed instead of holding its task, buffers and descriptor.
    deadline: Instant,
}

/// A client that did not finish its login in time: closed without a
/// word, as MariaDB closes it after `connect_timeout`.
fn login_timed_out() -> SessionError {
    SessionError::client_io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "login timeout",
    ))
}

impl Exchange<'_> {
    async fn send(&mut self, payload: &[u8]) -> Result<(), SessionError> {
        let mut wire = BytesMut::with_capacity(payload.len() + 4);
        self.seq = write_payload(&mut wire, self.seq, payload);
        crate::timer::timeout_at(self.deadline, self.client.write_all(wire))
            .await
            .map_err(|_| login_timed_out())?
            .0
            .map_err(SessionError::client_io)
    }

    async fn receive(&mut self) -> Result<Vec<u8>, SessionError> {
        let read = backend::read_packet(self.client, LOGIN_PACKET_LIMIT);
        let (seq, payload) = crate::timer::timeout_at(self.deadline, read)
            .await
            .map_err(|_| login_timed_out())?
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::InvalidData => SessionError::ClientProtocol(
                    torpor_protocol::ProtocolError::malformed("login packet"),
                ),
                _ => SessionError::client_io(e),
            })?;
        if seq != self.seq {
            return Err(SessionError::ClientProtocol(
                torpor_protocol::ProtocolError::OutOfOrder {
                    expected: self.seq,
                    got: seq,
                },
            ));
        }
        self.seq = seq.wrapping_add(1);
        Ok(payload)
    }
}

/// Sends the greeting, authenticates the client and logs in to the
/// backend. The client counts against `max_connections` (the permit) only
/// once its password is proven: half-open logins, bounded by the login
/// timeout, cannot take the slots of clients that log in. On failure the
/// error is returned with the sequence id the client expects an ERR
/// packet at.
pub async fn login(
    client: &mut Conn,
    shared: &Arc<Shared>,
    connection_id: u32,
    peer: Peer,
    pools: &crate::worker::ServicePools,
) -> Result<(Authenticated, ConnectionPermit), (SessionError, u8)> {
    let mut exchange = Exchange {
        client,
        seq: 0,
        deadline: Instant::now() + shared.settings().login_timeout,
    };
    match run(&mut exchange, shared, connection_id, peer, pools).await {
        Ok(authenticated) => Ok(authenticated),
        Err(e) => Err((e, exchange.seq)),
    }
}

async fn run(
    exchange: &mut Exchange<'_>,
    shared: &Arc<Shared>,
    connection_id: u32,
    peer: Peer,
    pools: &crate::worker::ServicePools,
) -> Result<(Authenticated, ConnectionPermit), SessionError> {
    // Clients are greeted before they name their user (and so their
    // service): with the first service's greeting, known without waking
    // it once it ran. A backend never reached yet that cannot be reached
    // now (Torpor started during an outage) does not delay the greeting:
    // the login is held below, as during any outage.
    let info = match shared.greeting_service().backend_info().await {
        Ok(info) => info,
        Err(error) if outage::is_outage(&error) => Arc::new(BackendInfo::unseen()),
        Err(error) => return Err(error),
    };
    // Compression is Torpor's own on the client leg (the backend leg
    // stays plain), offered when the backend offers it, as MariaDB would.
    let mut offered =
        info.capabilities & (Capabilities::FORWARDABLE | Capabilities::CLIENT_COMPRESS);
    // TLS is Torpor's own on the client leg, offered whenever it has a
    // certificate (the settings a SIGHUP reloads: a new certificate is
    // for new connections).
    let tls = shared.settings().tls.clone();
    if tls.is_some() {
        offered = offered | Capabilities::CLIENT_SSL;
    }
    let seed = new_seed();
    let greeting = Greeting {
        server_version: info.server_version.clone(),
        connection_id,
        seed: seed.clone(),
        capabilities: offered,
        collation: info.collation,
        status: ServerStatus::AUTOCOMMIT,
        auth_plugin: NATIVE_PASSWORD_PLUGIN.as_bytes().to_vec(),
    };
    let mut payload = BytesMut::with_capacity(128);
    greeting.encode(&mut payload);
    // The client's time starts with the greeting, not with a wait for the
    // backend's greeting details above.
    exchange.deadline = Instant::now() + shared.settings().login_timeout;
    exchange.send(&payload).await?;

    let hello = exchange.receive().await?;
    // Parsed once (its attributes are most of a login's parsing); again
    // only when it was an SSLRequest and the response comes over TLS.
    let mut parsed = ClientHello::parse(&hello).map_err(SessionError::ClientProtocol)?;
    if let ClientHello::SslRequest { .. } = parsed {
        let Some(tls) = tls.as_ref() else {
            return Err(SessionError::Unsupported("TLS (it is off)"));
        };
        // The handshake response comes over TLS, numbered after the
        // SSLRequest, as MariaDB reads it.
        let handshake = exchange
            .client
            .start_tls(std::sync::Arc::clone(&tls.config));
        crate::timer::timeout_at(exchange.deadline, handshake)
            .await
            .map_err(|_| login_timed_out())?
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::InvalidData => SessionError::ClientTls(e),
                _ => SessionError::client_io(e),
            })?;
        debug!(
            id = connection_id,
            %peer,
            tls = exchange.client.tls_description().unwrap_or_default(),
            "TLS handshake done"
        );
        let hello = exchange.receive().await?;
        parsed = ClientHello::parse(&hello).map_err(SessionError::ClientProtocol)?;
    }
    let mut response = match parsed {
        // A second SSLRequest, or one over TLS.
        ClientHello::SslRequest { .. } => {
            return Err(SessionError::ClientProtocol(
                torpor_protocol::ProtocolError::malformed("SSLRequest after TLS"),
            ))
        }
        ClientHello::Response(response) => response,
    };
    if shared.settings().require_secure_transport
        && matches!(peer, Peer::Tcp(_))
        && !exchange.client.is_tls()
    {
        return Err(SessionError::InsecureTransport {
            user: String::from_utf8_lossy(&response.user).into_owned(),
            host: peer.host(),
            using_password: !response.auth_response.is_empty(),
        });
    }
    let capabilities = Capabilities::negotiate(response.capabilities, offered);
    let auth_response = native_response(exchange, &response, capabilities, &seed).await?;
    // A TLS client's server name may choose the service (`[[services]]
    // hosts`); else the user name does.
    let chosen = shared
        .settings()
        .service_named(exchange.client.tls_server_name());
    let Identified {
        password,
        service,
        account_host,
    } = authenticate(shared, &response.user, peer, &seed, &auth_response, chosen).await?;
    let permit = shared.admit().ok_or(SessionError::TooManyConnections)?;

    let pool = pools
        .get(shared, service.index)
        .ok_or(SessionError::Internal("no pool for the service"))?;
    // While the backend cannot be reached (stopped, restarting, or never
    // reached since Torpor started), the login is held — the client waits
    // for its OK — and tries again with backoff, as commands are
    // (crate::outage).
    let mut hold = Hold::new(shared.settings().outage_hold, Holding::Login);
    let info = loop {
        match service.backend_info().await {
            Ok(info) => break info,
            Err(error) if outage::is_outage(&error) => {
                hold_login(shared, &service.outage, &mut hold).await?;
            }
            Err(error) => return Err(error),
        }
    };
    let attributes = std::mem::take(&mut response.attributes);
    let login = Login {
        user: &response.user,
        password: &password,
        capabilities,
        collation: response.collation,
        database: response.database.as_deref().filter(|db| !db.is_empty()),
        attributes: &attributes,
        max_packet_size: response.max_packet_size,
    };
    let schema = response
        .database
        .as_deref()
        .filter(|db| !db.is_empty())
        .map(|db| String::from_utf8_lossy(db).into_owned());
    let key = std::rc::Rc::new(PoolKey {
        user: response.user.clone(),
        account_host: account_host.clone(),
        capabilities: backend::capabilities_for(capabilities, info.capabilities),
        collation: response.collation,
    });
    let start = SessionState {
        schema: schema.clone(),
        ..SessionState::default()
    };
    // A sleeping service is not woken by a login: the session starts
    // without a backend connection when a fresh session's state is known.
    // (The schema is then checked on the first query, not here.)
    let asleep = if service.lifecycle.is_active() {
        None
    } else {
        service.cached_baseline(response.collation)
    };
    let (backend, model, ok) = if let Some(baseline) = asleep {
        let model = SessionModel::new(baseline, schema.clone());
        let ok = fresh_session_ok(schema.as_deref(), &model, capabilities);
        (None, model, ok)
    } else {
        let (backend, model, ok) = loop {
            let attempt = async {
                let wait = shared.settings().pool_wait;
                // Nothing may yield between the state check in `wait_active`
                // and the borrow: a suspending worker counts lent
                // connections (see scaler::actor).
                let borrowed = loop {
                    service.wait_active().await?;
                    let borrowed = pool
                        .borrow(&key, &start, connection_id, wait)
                        .await
                        .map_err(SessionError::from)?;
                    match borrowed {
                        // Died in the pool (killed, timed out by the server,
                        // a restart): let it go (dropped: closed, its place
                        // freed) and borrow again, so that no login starts
                        // on a dead connection.
                        Borrowed::Conn(pooled)
                            if super::attach::died_idle(
                                &pooled.conn,
                                std::time::Instant::now(),
                            ) => {}
                        borrowed => break borrowed,
                    }
                };
                // A pooled connection is brought to a fresh session's state
                // (which also checks the schema exists); a new one logs in
                // with the schema. What fails on the way is dropped: closed,
                // its place freed.
                let verify = shared.settings().verify_replay;
                let lending = match borrowed {
                    Borrowed::Open(place) => Lending::Open(place),
                    Borrowed::Conn(pooled) => {
                        let Pooled {
                            conn: mut backend,
                            mut state,
                            ..
                        } = pooled;
                        // Another session's state leaves this connection:
                        // what it left unread is read now (for it, and as
                        // the state here).
                        if let Some(left) = backend.left_by.take() {
                            let learned = super::left::read(left, &mut backend).await?;
                            learned.apply_to(std::rc::Rc::make_mut(&mut state));
                        }
                        let baseline = service.baseline(response.collation, &mut backend).await?;
                        let model = SessionModel::new(baseline, schema.clone());
                        if rides_with_first_command(&state, &model) {
                            // Back to the pool as it is, in its own state:
                            // the session's first command borrows it again
                            // and takes the diff along in the same write
                            // (see `Session::align`). No round trip here.
                            backend.give_back(Rc::clone(&key), state, connection_id);
                            let ok = fresh_session_ok(schema.as_deref(), &model, capabilities);
                            Lending::Ready(Box::new((None, model, ok)))
                        } else {
                            let replayed = super::attach::replay_onto(
                                &mut backend,
                                &state,
                                &model.state,
                                &model.baseline,
                                verify,
                            )
                            .await;
                            match replayed {
                                Ok(_) => {
                                    let ok =
                                        fresh_session_ok(schema.as_deref(), &model, capabilities);
                                    Lending::Ready(Box::new((Some(backend), model, ok)))
                                }
                                Err(Some(error)) => return Err(error),
                                // It cannot be brought there (it has a
                                // schema, the session none): a new
                                // connection in its place below.
                                Err(None) => Lending::Open(backend.close()),
                            }
                        }
                    }
                };
                let lent = match lending {
                    Lending::Ready(ready) => *ready,
                    Lending::Open(place) => {
                        let (backend, ok) = service.connect(&login).await?;
                        let mut backend = place.fill(backend);
                        let baseline = service.baseline(response.collation, &mut backend).await?;
                        let model = SessionModel::new(baseline, schema.clone());
                        // The backend's OK describes the new session; the
                        // client is told what its own tracking settings
                        // report.
                        let ok = super::client_ok(
                            &ok,
                            backend.capabilities,
                            capabilities,
                            &model.baseline.tracking,
                        );
                        (Some(backend), model, ok)
                    }
                };
                Ok::<_, SessionError>(lent)
            };
            match attempt.await {
                Ok(lent) => break lent,
                Err(error) if outage::is_outage(&error) => {
                    hold_login(shared, &service.outage, &mut hold).await?;
                }
                Err(error) => return Err(error),
            }
        };
        if pool.is_unbounded() {
            // The first connection to the backend has just read its
            // max_connections: the default bound follows it now, not at
            // the worker's next tick (a burst of logins in the first
            // second opened a connection each, past the backend's limit).
            let settings = shared.settings();
            let workers = shared.config.worker_count();
            pool.set_limits(
                service.pool_bound_per_worker(settings.backend_connections_per_worker, workers),
                settings.backend_idle_timeout,
                settings.max_connections,
            );
        }
        if hold.waited() {
            info!(
                id = connection_id,
                held_ms = hold.held().as_millis() as u64,
                "login held through a backend outage"
            );
            // The wait was the backend's, not the client's: its time to
            // take the OK starts now.
            exchange.deadline = Instant::now() + shared.settings().login_timeout;
        }
        (backend, model, ok)
    };
    hold.got_through();
    drop(hold);
    // Over TLS, the OK carries the zero-configuration proof that MariaDB
    // 11.4+ clients check when they could not verify the certificate:
    // made from Torpor's own certificate and scramble (the backend's OK
    // would name another certificate and scramble).
    let ok = match (&tls, exchange.client.is_tls(), password.native_hash()) {
        (Some(tls), true, Some(hash)) => with_info(&ok, capabilities, &tls.proof(&hash, &seed)),
        _ => ok,
    };
    let sent = exchange.send(&ok).await;
    if sent.is_ok() && capabilities.contains(Capabilities::CLIENT_COMPRESS) {
        // Everything after the OK that ends the login is compressed.
        exchange.client.start_compression();
    }
    if let Err(e) = sent {
        if let Some(conn) = backend {
            conn.give_back(key, std::rc::Rc::new(model.state.clone()), connection_id);
        }
        return Err(e);
    }
    // A new connection gets Torpor's session tracking now, while the
    // client reads its OK, so that the session can give the connection
    // back to the pool before its first query: an idle session holds no
    // backend connection, and so never keeps its service awake.
    let mut backend = backend;
    if let Some(conn) = backend.as_mut().filter(|b| b.needs_tracking) {
        if backend::ensure_tracking(conn).await.is_err() {
            backend = None;
        }
    }
    let authenticated = Authenticated {
        backend_caps: key.capabilities,
        user: response.user,
        account_host,
        password,
        capabilities,
        seed,
        service,
        pool: Rc::clone(&pool),
        backend,
        collation: response.collation,
        attributes,
        max_packet_size: response.max_packet_size,
        model,
    };
    Ok((authenticated, permit))
}

/// After a try that found the backend unreachable: waits before the next
/// one, the login held; or says why the login ends (Torpor stops, or the
/// hold reached `outage_hold_secs`).
async fn hold_login(
    shared: &Shared,
    outage: &crate::outage::Outage,
    hold: &mut Hold,
) -> Result<(), SessionError> {
    if shared.shutdown.is_stopping() {
        return Err(SessionError::Shutdown);
    }
    if !hold.pause(outage).await {
        return Err(login_unreachable(hold));
    }
    Ok(())
}

/// A login held past `outage_hold_secs`: a login has no session to keep,
/// so the plain "unreachable" (1429), not [`SessionError::BackendDown`]'s
/// text.
fn login_unreachable(hold: &Hold) -> SessionError {
    SessionError::BackendUnreachable(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("unreachable for {:?}", hold.held()),
    ))
}

/// Whether a pooled connection in `state` may go back to the pool as it
/// is at a login, leaving the way to the fresh session's state to its
/// first command: when that way is SETs alone, which the first command
/// takes along in its own write and which cannot be refused for what
/// happened since (see `Session::align`). A `USE` (another schema, which
/// may be gone) or a `PREPARE` runs at the login, as before. Clients that
/// set session variables as they connect (PyMySQL's `autocommit`, JDBC's
/// settings) leave such a state behind on every connection they close.
fn rides_with_first_command(state: &SessionState, model: &SessionModel) -> bool {
    if *state == model.state {
        return false;
    }
    model
        .state
        .diff_from(state, &model.baseline)
        .is_ok_and(|statements| statements.iter().all(|sql| sql.starts_with("SET ")))
}

/// Where a login's backend connection comes from.
enum Lending {
    /// A pooled one, brought to a fresh session's state, or (`None`)
    /// given back to the pool in its own state for the first command to
    /// take with the diff: with the session's model and the OK that ends
    /// the login.
    Ready(Box<(Option<Lent<BackendConn>>, SessionModel, Vec<u8>)>),
    /// A place to open a new one in.
    Open(Place<BackendConn>),
}

/// Who a client proved it is.
pub(super) struct Identified {
    /// What it proved about its password.
    pub password: ProvenPassword,
    /// The service it routes to.
    pub service: Arc<Service>,
    /// The host pattern of the backend account it matched (`None`: a
    /// configured user).
    pub account_host: Option<String>,
}

/// Checks the client's scramble against the account it logs in as: one of
/// Torpor's configured users (they come first), else an account read from
/// a service's backend, found as MariaDB finds it (user, then the most
/// specific host pattern that admits the client). A miss asks for a fresh
/// read of the accounts once (a user just created) before it is refused.
/// When the client's server name `chose` a service, only that service's
/// accounts may log in: the configured users it lists, and the accounts
/// its backend holds.
pub(super) async fn authenticate(
    shared: &Shared,
    user: &[u8],
    peer: Peer,
    seed: &[u8],
    response: &[u8],
    chosen: Option<usize>,
) -> Result<Identified, SessionError> {
    let denied = || SessionError::AccessDenied {
        user: String::from_utf8_lossy(user).into_owned(),
        host: peer.host(),
        using_password: !response.is_empty(),
    };
    let settings = shared.settings();
    let configured = match chosen {
        Some(index) if !settings.users.routes_to(user, index) => None,
        _ => settings.users.get(user),
    };
    if let Some(stored) = configured {
        let proven = stored.verify(seed, response).ok_or_else(denied)?;
        let service = match chosen.and_then(|index| shared.services.get_live(index)) {
            Some(service) => service,
            None => shared.service_for(user),
        };
        return Ok(Identified {
            password: proven,
            service,
            account_host: None,
        });
    }
    drop(settings);
    let live = shared.services.live();
    let candidates = || {
        live.iter()
            .filter(move |s| chosen.is_none_or(|index| s.index == index))
    };
    for service in candidates() {
        service.accounts.settle().await;
    }
    let mut refreshed = false;
    loop {
        for service in candidates().filter(|s| s.accounts.enabled()) {
            let book = service.accounts.book();
            let Some(account) = book.find(user, &peer) else {
                continue;
            };
            let stored = match account.credential() {
                Ok(stored) => stored,
                Err(Refusal::Plugin(plugin)) => {
                    return Err(SessionError::UnsupportedPlugin {
                        user: account.user.clone(),
                        host: account.host.clone(),
                        plugin,
                    })
                }
                Err(Refusal::NoUsablePassword) => break,
            };
            if let Some(proven) = stored.verify(seed, response) {
                return Ok(Identified {
                    password: proven,
                    service: Arc::clone(service),
                    account_host: Some(account.host.clone()),
                });
            }
            break;
        }
        if refreshed {
            return Err(denied());
        }
        refreshed = true;
        let mut any = false;
        for service in candidates().filter(|s| s.accounts.enabled()) {
            any |= service.accounts.refresh_for_miss().await;
        }
        if !any {
            return Err(denied());
        }
    }
}

/// The client's `mysql_native_password` response: the one it sent, or,
/// when it used another plugin, its answer to an auth switch.
async fn native_response(
    exchange: &mut Exchange<'_>,
    response: &HandshakeResponse,
    capabilities: Capabilities,
    seed: &[u8],
) -> Result<Vec<u8>, SessionError> {
    let plugin = response.auth_plugin.as_deref().unwrap_or_default();
    let is_native = plugin.is_empty() || plugin == NATIVE_PASSWORD_PLUGIN.as_bytes();
    if is_native || !capabilities.contains(Capabilities::CLIENT_PLUGIN_AUTH) {
        return Ok(response.auth_response.clone());
    }
    let switch = AuthSwitch {
        plugin: NATIVE_PASSWORD_PLUGIN.as_bytes().to_vec(),
        data: seed.to_vec(),
    };
    let mut payload = BytesMut::new();
    switch.encode(&mut payload);
    exchange.send(&payload).await?;
    exchange.receive().await
}

/// Relays a backend's ERR packet at the client's sequence id.
///
/// One the server sent before its handshake (too many connections, a
/// blocked host) has no SQLSTATE marker: nothing was negotiated yet. The
/// client has negotiated `CLIENT_PROTOCOL_41` with Torpor (it is
/// required) and reads a marker after the code, so it gets the state a
/// client assumes when none came, `HY000`: what it reads from MariaDB
/// directly (the `mysql` crate took the bare packet for a protocol error).
pub fn relay_error(err: &BackendErr, seq: u8, dst: &mut BytesMut) {
    match err.payload.as_slice() {
        [0xff, low, high, message @ ..] if message.first() != Some(&b'#') => {
            let mut payload = Vec::with_capacity(err.payload.len() + 6);
            payload.extend_from_slice(&[0xff, *low, *high, b'#']);
            payload.extend_from_slice(b"HY000");
            payload.extend_from_slice(message);
            write_payload(dst, seq, &payload);
        }
        _ => {
            write_payload(dst, seq, &err.payload);
        }
    }
}

/// `ok` (as a client with `client` capabilities reads it) with `info` as
/// its info field; unchanged if it does not parse.
fn with_info(ok: &[u8], client: Capabilities, info: &[u8]) -> Vec<u8> {
    use torpor_protocol::session_track::OkPacket;
    let Ok(mut parsed) = OkPacket::parse(ok, client) else {
        return ok.to_vec();
    };
    parsed.info = info;
    let mut out = BytesMut::with_capacity(ok.len() + info.len() + 2);
    parsed.encode_for(client, &mut out);
    out.to_vec()
}

/// The OK a fresh session's login gets when Torpor lends it a pooled
/// connection: what MariaDB sends a new session — autocommit, and the
/// schema as a tracked change when the client tracks it.
fn fresh_session_ok(schema: Option<&str>, model: &SessionModel, client: Capabilities) -> Vec<u8> {
    use torpor_protocol::session_track::{encode_changes, OkPacket, SessionChange};
    let mut block = BytesMut::new();
    if let Some(schema) = schema {
        let change = SessionChange::Schema(schema.as_bytes());
        if model.tracking.keeps(&change) {
            encode_changes(&[change], &mut block);
        }
    }
    let ok = OkPacket {
        header: 0,
        affected_rows: 0,
        last_insert_id: 0,
        status: ServerStatus(ServerStatus::AUTOCOMMIT),
        warnings: 0,
        info: &[],
        session_state: &[],
    };
    let mut out = BytesMut::new();
    ok.encode_with_state(client, &block, &mut out);
    out.to_vec()
}
