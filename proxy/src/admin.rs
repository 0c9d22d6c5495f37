//! The admin HTTP API: JSON over HTTP/1.1 on its own thread, on loopback
//! by default and token-protected when bound elsewhere.
//!
//! - `GET /services`: every service with its state, driver, backend
//!   address, connection counts and transition counts.
//! - `GET /services/{name}`: one service.
//! - `POST /services/{name}/suspend | park | wake`: the action, answered
//!   once it is done (200 with the service), or 409 with the reason it
//!   was refused (a query running, a session pinned), 404 for an unknown
//!   service, 400 with the list of actions for an unknown action.
//! - `POST /services/{name}/resize?cpus=1.5&memory_mib=2048&autoscale=off`:
//!   a managed service's new limits now (buffer pool in proportion; what
//!   is not given stays), and autoscaling turned on or off; the service
//!   shows its limits, usage, buffer pool and recent resizes with their
//!   reasons under `scaling`.
//! - `POST /services/{name}/relocate[?force=1]`: moves an active service
//!   to a new backend (its copy and catch-up run in the background:
//!   202, or 409 with the pins that cannot move); `relocation` in the
//!   service shows its phase, bytes copied and times, and
//!   `backend_generation` counts its moves.
//!   `&host=NAME` moves it to that `[[hosts]]` entry's engine. The same
//!   two may come as a JSON body instead: `{"host": "b", "force": true}`.
//! - `GET /hosts`: every host with the memory it offers and has given its
//!   services, and the services on it ([`crate::hosts`]).
//! - `POST /hosts/{name}/drain`: moves every service off the host, one at
//!   a time, each to the host with the most free memory (202).
//!   `POST /hosts/{name}/undrain`: the host takes services again (a drain
//!   under way stops before its next move).
//! - `POST /services`, `DELETE /services/{name}?data=keep|drop`: services
//!   created and deleted while Torpor runs ([`crate::provision::api`]).
//! - `GET /livez`: the process answers. `GET /readyz`: Torpor accepts
//!   clients (every service can be woken on demand, so a parked one is
//!   ready).
//! - `GET /metrics`: every metric in the Prometheus text format
//!   ([`crate::metrics`]).
//!
//! tiny_http is a small, blocking server: this API serves operators and
//! scrapers, a few requests a second, and must never share a thread with
//! the data path.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tiny_http::{Header, Method, Response, Server};
use tracing::{info, warn};

use crate::context::Shared;
use crate::service::lifecycle::State;
use crate::service::{AdminAction, KeptAwake, Request, ResizeRequest, Service};

/// How long an action may take before the API answers 504 (the action
/// goes on).
const ACTION_TIMEOUT: Duration = Duration::from_secs(120);

/// How often the metrics' histogram samples are folded into buckets
/// while nobody scrapes (so that they do not pile up).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The running admin API.
pub struct AdminServer {
    server: Arc<Server>,
    /// Set before the server is unblocked: a wait that ends with no
    /// request may be the unblock, or just the upkeep timer.
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    local_addr: SocketAddr,
}

impl AdminServer {
    /// Starts the API where the configuration says; `None` when it is off
    /// or its address cannot be bound (logged: Torpor serves clients
    /// regardless).
    pub fn start(shared: Arc<Shared>) -> Option<AdminServer> {
        let listen = shared.config.admin.listen?;
        let server = match Server::http(listen) {
            Ok(server) => Arc::new(server),
            Err(e) => {
                warn!(%listen, "admin API not started: {e}");
                return None;
            }
        };
        let local_addr = server.server_addr().to_ip().unwrap_or(listen);
        let stopping = Arc::new(AtomicBool::new(false));
        let thread = {
            let server = Arc::clone(&server);
            let stopping = Arc::clone(&stopping);
            std::thread::Builder::new()
                .name("torpor-admin".into())
                .spawn(move || {
                    let mut upkept = Instant::now();
                    loop {
                        match server.recv_timeout(UPKEEP_EVERY) {
                            Ok(Some(request)) => handle(&shared, request),
                            Ok(None) if stopping.load(Ordering::Acquire) => break,
                            Ok(None) => {}
                            Err(e) => {
                                warn!("admin API stopped: {e}");
                                break;
                            }
                        }
                        // Also between requests that never let the wait
                        // time out.
                        if upkept.elapsed() >= UPKEEP_EVERY {
                            shared.metrics.upkeep();
                            upkept = Instant::now();
                        }
                    }
                })
                .ok()?
        };
        info!(%local_addr, "admin API listening");
        Some(AdminServer {
            server,
            stopping,
            thread: Some(thread),
            local_addr,
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting and waits for the thread.
    pub fn stop(mut self) {
        self.stopping.store(true, Ordering::Release);
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn handle(shared: &Shared, mut request: tiny_http::Request) {
    let wants_metrics =
        *request.method() == Method::Get && request.url().split('?').next() == Some("/metrics");
    if wants_metrics && authorized(shared, &request) {
        let text = shared.metrics.render(
            &shared.services.all(),
            &shared.registry,
            &shared.warm.counts(),
        );
        let mut response = Response::from_string(text);
        if let Ok(header) = Header::from_bytes("Content-Type", "text/plain; version=0.0.4") {
            response = response.with_header(header);
        }
        let _ = request.respond(response);
        return;
    }
    let (status, body) = if authorized(shared, &request) {
        match crate::provision::api::route(shared, &mut request) {
            Some(answer) => answer,
            None => match read_body(&mut request) {
                Ok(body) => route(shared, request.method(), request.url(), &body),
                Err(answer) => answer,
            },
        }
    } else {
        (
            401,
            json!({"error": "a valid 'Authorization: Bearer <token>' header is required"}),
        )
    };
    let header = Header::from_bytes("Content-Type", "application/json").ok();
    let mut response = Response::from_string(body.to_string() + "\n").with_status_code(status);
    if let Some(header) = header {
        response = response.with_header(header);
    }
    let _ = request.respond(response);
}

fn authorized(shared: &Shared, request: &tiny_http::Request) -> bool {
    let settings = shared.settings();
    let Some(token) = &settings.admin_token else {
        return true;
    };
    request.headers().iter().any(|h| {
        h.field.equiv("Authorization")
            && h.value
                .as_str()
                .strip_prefix("Bearer ")
                .is_some_and(|given| constant_time_eq(given.as_bytes(), token.as_bytes()))
    })
}

/// Compares without leaking where the first difference is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The most a request's body may hold: the actions' bodies are a few
/// words of JSON.
const MAX_BODY: u64 = 64 * 1024;

/// The request's body (empty when none was sent), or the answer to a
/// body too large or unreadable.
fn read_body(request: &mut tiny_http::Request) -> Result<Vec<u8>, (u16, Value)> {
    use std::io::Read;
    let mut body = Vec::new();
    request
        .as_reader()
        .take(MAX_BODY + 1)
        .read_to_end(&mut body)
        .map_err(|e| (400, json!({"error": format!("reading the body: {e}")})))?;
    if body.len() as u64 > MAX_BODY {
        return Err((
            413,
            json!({"error": format!("the body is larger than {MAX_BODY} bytes")}),
        ));
    }
    Ok(body)
}

fn route(shared: &Shared, method: &Method, url: &str, body: &[u8]) -> (u16, Value) {
    let path = url.split('?').next().unwrap_or_default();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, parts.as_slice()) {
        (Method::Get, ["livez"]) => (200, json!({"status": "ok"})),
        (Method::Get, ["readyz"]) => {
            if shared.shutdown.is_stopping() {
                (503, json!({"status": "stopping"}))
            } else {
                (200, json!({"status": "ready"}))
            }
        }
        (Method::Get, ["services"]) => (
            200,
            json!({"services": shared.services.live().iter().map(|s| describe(shared, s)).collect::<Vec<_>>()}),
        ),
        (Method::Get, ["services", name]) => match find(shared, name) {
            Some(service) => (200, describe(shared, &service)),
            None => not_found(name),
        },
        (Method::Get, ["hosts"]) => (200, crate::hosts::describe_all(shared)),
        (Method::Post, ["hosts", name, "drain"]) => crate::hosts::drain(shared, name),
        (Method::Post, ["hosts", name, "undrain"]) => crate::hosts::undrain(shared, name),
        (Method::Post, ["services", name, action]) => {
            let Some(service) = find(shared, name) else {
                return not_found(name);
            };
            let action = match *action {
                "suspend" => AdminAction::Suspend,
                "park" => AdminAction::Park,
                "wake" => AdminAction::Wake,
                "resize" => match resize_request(url) {
                    Ok(request) => AdminAction::Resize(request),
                    Err(why) => return (400, json!({ "error": why })),
                },
                "relocate" => match relocate_request(url, body) {
                    Ok((force, host)) => {
                        let to = match host
                            .map(|name| crate::hosts::destination(shared, &service, &name))
                        {
                            None => crate::hosts::placement(shared, &service),
                            Some(Ok(host)) => Some(host),
                            Some(Err(answer)) => return answer,
                        };
                        AdminAction::Relocate {
                            force,
                            to: to.map(Box::new),
                        }
                    }
                    Err(why) => return (400, json!({ "error": why })),
                },
                other => {
                    return (
                        400,
                        json!({
                            "error": format!("unknown action '{other}': suspend, park, wake, resize or relocate"),
                            "actions": ["suspend", "park", "wake", "resize", "relocate"],
                        }),
                    )
                }
            };
            let relocating = matches!(action, AdminAction::Relocate { .. });
            match act(shared, &service, action) {
                // Started: its progress shows in the service's `relocation`.
                (200, body) if relocating => (202, body),
                answer => answer,
            }
        }
        _ => (
            404,
            json!({"error": format!("no such endpoint: {method} {path}")}),
        ),
    }
}

/// The parameters of `POST /services/{name}/relocate[?force=1][&host=NAME]`,
/// or of its JSON body `{"host": NAME, "force": true}` (the body's win
/// where both say): whether to force it, and the host to move to.
fn relocate_request(url: &str, body: &[u8]) -> Result<(bool, Option<String>), String> {
    let query = url.split_once('?').map_or("", |(_, query)| query);
    let mut force = false;
    let mut host = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=').unwrap_or((pair, "1")) {
            ("force", "1" | "true" | "on") => force = true,
            ("force", "0" | "false" | "off") => force = false,
            ("host", name) if !name.is_empty() => host = Some(name.to_string()),
            (key, value) => {
                return Err(format!(
                    "{key}={value:?}: the parameters are force=1 (move even past sessions pinned by what cannot move) and host=NAME (a [[hosts]] entry)"
                ))
            }
        }
    }
    if body.iter().any(|b| !b.is_ascii_whitespace()) {
        let given: RelocateBody = serde_json::from_slice(body).map_err(|e| {
            format!("the body: {e} (it takes {{\"host\": NAME, \"force\": true|false}})")
        })?;
        if let Some(name) = given.host {
            if name.is_empty() {
                return Err("the body's host is empty: name a [[hosts]] entry".to_string());
            }
            host = Some(name);
        }
        force = given.force.unwrap_or(force);
    }
    Ok((force, host))
}

/// The JSON body `POST /services/{name}/relocate` takes.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RelocateBody {
    /// The `[[hosts]]` entry to move to.
    host: Option<String>,
    /// Move even past sessions pinned by what cannot move.
    force: Option<bool>,
}

/// The parameters of `POST /services/{name}/resize?…`.
fn resize_request(url: &str) -> Result<ResizeRequest, String> {
    let mut request = ResizeRequest::default();
    let query = url.split_once('?').map_or("", |(_, query)| query);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let bad = || format!("{key}={value:?} is not a valid value");
        match key {
            "cpus" => {
                let cpus: f64 = value.parse().map_err(|_| bad())?;
                if !(cpus.is_finite() && cpus > 0.0) {
                    return Err(bad());
                }
                request.cpus = Some(cpus);
            }
            "memory_mib" => request.memory_mib = Some(value.parse().map_err(|_| bad())?),
            "autoscale" => {
                request.autoscale = Some(match value {
                    "on" | "true" => true,
                    "off" | "false" => false,
                    _ => return Err(bad()),
                })
            }
            other => {
                return Err(format!(
                    "unknown parameter '{other}': cpus, memory_mib, autoscale=on|off"
                ))
            }
        }
    }
    if request == ResizeRequest::default() {
        return Err("give cpus, memory_mib or autoscale=on|off".into());
    }
    Ok(request)
}

fn find(shared: &Shared, name: &str) -> Option<Arc<Service>> {
    shared.services.find(name)
}

fn not_found(name: &str) -> (u16, Value) {
    (404, json!({"error": format!("no service named '{name}'")}))
}

pub(crate) fn act(shared: &Shared, service: &Service, action: AdminAction) -> (u16, Value) {
    if !service.is_managed() {
        return (
            409,
            json!({"error": format!("service '{}' has a static backend Torpor does not manage", service.name)}),
        );
    }
    let (tx, rx) = mpsc::channel();
    if !service.request(Request::Admin(action, tx)) {
        return (503, json!({"error": "the service's scaler has stopped"}));
    }
    match rx.recv_timeout(ACTION_TIMEOUT) {
        Ok(Ok(())) => (200, describe(shared, service)),
        Ok(Err(reason)) => (
            409,
            json!({"error": reason, "service": describe(shared, service)}),
        ),
        Err(_) => (504, json!({"error": "the action is still running"})),
    }
}

/// A service as the API shows it.
pub(crate) fn describe(shared: &Shared, service: &Service) -> Value {
    let transitions: serde_json::Map<String, Value> = service
        .lifecycle
        .transitions()
        .into_iter()
        .map(|(state, count)| (state.name().to_string(), json!(count)))
        .collect();
    let pinned = shared.registry.pins_of(service.index);
    let pins: Vec<Value> = pinned
        .iter()
        .map(|p| {
            json!({
                "session": p.session,
                "reasons": p.reasons,
                "pinned_ms": p.pinned_for.as_millis() as u64,
            })
        })
        .collect();
    // Only an active backend is kept awake; a frozen one has nothing lent.
    let kept_awake = KeptAwake::of(service.lent(), pinned)
        .filter(|_| service.lifecycle.state() == State::Active)
        .map(|awake| {
            json!({
                "open_transactions": awake.open_transactions,
                "pinned_sessions": awake.pinned_sessions,
                "queries_running": awake.queries_running,
                "since_ms": awake.oldest.map(|p| p.pinned_for.as_millis() as u64),
            })
        });
    json!({
        "name": service.name,
        "state": service.lifecycle.state().name(),
        "driver": service.driver,
        "address": service.address().map(|a| a.to_string()),
        "connections": {
            "clients": service.clients(),
            "backend_open": service.open_connections(),
            "backend_in_use": service.lent(),
        },
        "idle_ms": service.idle_for().as_millis() as u64,
        "pins": pins,
        "kept_awake": kept_awake,
        "transitions": transitions,
        "scaling": service
            .is_managed()
            .then(|| service.scaling.lock().ok().map(|view| json!(*view)))
            .flatten(),
        "relocation": service
            .relocation
            .lock()
            .ok()
            .filter(|view| !view.phase.is_empty())
            .map(|view| json!(view.snapshot())),
        "backend_generation": service.generation(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relocate_takes_force_and_host_and_nothing_else() {
        let plain = |url| relocate_request(url, b"");
        assert_eq!(plain("/services/a/relocate"), Ok((false, None)));
        assert_eq!(plain("/services/a/relocate?force=1"), Ok((true, None)));
        assert_eq!(plain("/services/a/relocate?force"), Ok((true, None)));
        assert_eq!(
            plain("/services/a/relocate?host=b&force=1"),
            Ok((true, Some("b".to_string())))
        );
        assert!(plain("/services/a/relocate?host=").is_err());
        assert!(plain("/services/a/relocate?to=b").is_err());
        assert!(plain("/services/a/relocate?force=maybe").is_err());
    }

    #[test]
    fn relocate_takes_a_json_body_too() {
        let url = "/services/a/relocate";
        assert_eq!(relocate_request(url, b" \n"), Ok((false, None)));
        assert_eq!(
            relocate_request(url, br#"{"host": "far", "force": true}"#),
            Ok((true, Some("far".to_string())))
        );
        assert_eq!(
            relocate_request(url, br#"{"host": "far"}"#),
            Ok((false, Some("far".to_string())))
        );
        // The body's word wins over the query's.
        assert_eq!(
            relocate_request(
                "/services/a/relocate?force=1&host=b",
                br#"{"force": false}"#
            ),
            Ok((false, Some("b".to_string())))
        );
        assert!(relocate_request(url, br#"{"host": ""}"#).is_err());
        assert!(relocate_request(url, br#"{"to": "far"}"#).is_err());
        assert!(relocate_request(url, br#"{"force": "yes"}"#).is_err());
        assert!(relocate_request(url, b"far").is_err());
    }

    #[test]
    fn resize_parameters_are_read_and_nonsense_refused() {
        let request = resize_request("/services/a/resize?cpus=1.5&memory_mib=2048").unwrap();
        assert_eq!(
            request,
            ResizeRequest {
                cpus: Some(1.5),
                memory_mib: Some(2048),
                autoscale: None,
            }
        );
        assert_eq!(
            resize_request("/x?autoscale=off").unwrap().autoscale,
            Some(false)
        );
        for bad in [
            "/x",
            "/x?",
            "/x?cpus=",
            "/x?cpus=-1",
            "/x?cpus=NaN",
            "/x?cpus=inf",
            "/x?memory_mib=1.5",
            "/x?autoscale=maybe",
            "/x?cpu=1",
        ] {
            assert!(resize_request(bad).is_err(), "{bad} accepted");
        }
    }
}
