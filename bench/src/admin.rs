//! A client for Torpor's admin API: list services, and suspend, park or
//! wake one on demand, so the serverless workloads can time what a client
//! sees afterwards.
//!
//! The API is HTTP/1.1 with JSON bodies (`GET /services`,
//! `POST /services/{name}/suspend|park|wake`, `GET /readyz`), with an
//! optional `Authorization: Bearer` token. HTTP goes through `ureq`;
//! what the answers mean is decided by pure functions ([`parse_services`],
//! [`parse_reply`]) that are unit-tested on their own.

use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;

/// How long one call may take. A park stops MariaDB cleanly and a wake
/// may start it again: seconds, not milliseconds, on a busy machine.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// How long connecting to the admin listener may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How much of an unexpected body goes into an error message.
const BODY_EXCERPT: usize = 300;

/// The service a Torpor started with `--spawn-mariadb` manages.
pub const DEFAULT_SERVICE: &str = "default";

/// A service's lifecycle state, as the API names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceState {
    /// Serving queries.
    Active,
    /// On its way to suspended.
    Suspending,
    /// Frozen; the first query wakes it.
    Suspended,
    /// MariaDB stopped, data kept; the first query starts it again.
    Parked,
    /// On its way back to active.
    Waking,
    /// A state this suite does not know yet, kept as named (a newer
    /// Torpor may add states; that is not an error).
    Other(String),
}

impl ServiceState {
    fn from_name(name: &str) -> ServiceState {
        match name {
            "active" => ServiceState::Active,
            "suspending" => ServiceState::Suspending,
            "suspended" => ServiceState::Suspended,
            "parked" => ServiceState::Parked,
            "waking" => ServiceState::Waking,
            other => ServiceState::Other(other.to_string()),
        }
    }

    /// The state's name in the API.
    pub fn name(&self) -> &str {
        match self {
            ServiceState::Active => "active",
            ServiceState::Suspending => "suspending",
            ServiceState::Suspended => "suspended",
            ServiceState::Parked => "parked",
            ServiceState::Waking => "waking",
            ServiceState::Other(name) => name,
        }
    }
}

impl<'de> Deserialize<'de> for ServiceState {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Ok(ServiceState::from_name(&name))
    }
}

/// A service as `GET /services` lists it (fields this suite does not use
/// are ignored).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Service {
    /// Its name, the `{name}` of the action paths.
    pub name: String,
    /// Where it is in its lifecycle.
    pub state: ServiceState,
    /// What runs it: `process`, `docker` or `static`.
    #[serde(default)]
    pub driver: String,
}

/// What can be asked of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Freeze it; the first query wakes it.
    Suspend,
    /// Stop MariaDB cleanly, keeping its data.
    Park,
    /// Bring it back to active.
    Wake,
}

impl Action {
    /// The last path segment, also the word used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Action::Suspend => "suspend",
            Action::Park => "park",
            Action::Wake => "wake",
        }
    }

    /// The state the service is in when the call answers 200.
    pub fn reached(self) -> ServiceState {
        match self {
            Action::Suspend => ServiceState::Suspended,
            Action::Park => ServiceState::Parked,
            Action::Wake => ServiceState::Active,
        }
    }
}

/// How an action call ended, short of a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Done (200): the service as it is now.
    Done(Service),
    /// Refused for now (409), e.g. a query was in flight: Torpor's reason.
    Refused(String),
}

/// One Torpor's admin API.
#[derive(Debug, Clone)]
pub struct Admin {
    agent: ureq::Agent,
    /// `http://host:port`, no trailing slash.
    base: String,
    token: Option<String>,
}

impl Admin {
    /// A client for the API at `address` (`host:port`), sending `token`
    /// as a bearer token when given.
    pub fn new(address: &str, token: Option<String>) -> Admin {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            // 409 and 500 carry a JSON reason this suite reports.
            .http_status_as_error(false)
            // The API is on this machine or the operator's network: an
            // HTTP_PROXY from the environment would only get in the way.
            .proxy(None)
            .timeout_global(Some(CALL_TIMEOUT))
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .build()
            .into();
        Admin {
            agent,
            base: format!("http://{address}"),
            token,
        }
    }

    /// Every service Torpor manages.
    pub fn services(&self) -> anyhow::Result<Vec<Service>> {
        let (status, body) = self.call("GET", "/services")?;
        if status != 200 {
            bail!(
                "GET {}/services answered {status}: {}",
                self.base,
                error_text(&body)
            );
        }
        parse_services(&body).with_context(|| format!("GET {}/services", self.base))
    }

    /// The service the workloads act on: `default` when there is one,
    /// else the only one.
    pub fn pick_service(&self) -> anyhow::Result<Service> {
        pick_service(self.services()?)
    }

    /// Asks for `action` on the service `name` and waits for the answer.
    pub fn act(&self, name: &str, action: Action) -> anyhow::Result<Reply> {
        let path = format!("/services/{}/{}", encode_segment(name), action.name());
        let (status, body) = self.call("POST", &path)?;
        parse_reply(status, &body).with_context(|| format!("POST {}{path}", self.base))
    }

    /// Asks for new limits of the service `name` (Torpor's
    /// `POST /services/{name}/resize`) and waits for the answer.
    pub fn resize(&self, name: &str, cpus: f64, memory_mib: u64) -> anyhow::Result<Reply> {
        let path = format!(
            "/services/{}/resize?cpus={cpus}&memory_mib={memory_mib}",
            encode_segment(name)
        );
        let (status, body) = self.call("POST", &path)?;
        parse_reply(status, &body).with_context(|| format!("POST {}{path}", self.base))
    }

    /// New limits for the service `name` with its autoscaling turned on
    /// or off in the same call (`…/resize?…&autoscale=on|off`).
    pub fn resize_autoscaled(
        &self,
        name: &str,
        cpus: f64,
        memory_mib: u64,
        autoscale: bool,
    ) -> anyhow::Result<Reply> {
        let switch = if autoscale { "on" } else { "off" };
        let path = format!(
            "/services/{}/resize?cpus={cpus}&memory_mib={memory_mib}&autoscale={switch}",
            encode_segment(name)
        );
        let (status, body) = self.call("POST", &path)?;
        parse_reply(status, &body).with_context(|| format!("POST {}{path}", self.base))
    }

    /// The service `name` as `GET /services/{name}` shows it, every field
    /// kept (its `scaling` view is read by [`crate::workloads::serverless`]).
    pub fn service_view(&self, name: &str) -> anyhow::Result<serde_json::Value> {
        let path = format!("/services/{}", encode_segment(name));
        let (status, body) = self.call("GET", &path)?;
        if status != 200 {
            bail!(
                "GET {}{path} answered {status}: {}",
                self.base,
                error_text(&body)
            );
        }
        serde_json::from_str(&body).with_context(|| format!("GET {}{path}", self.base))
    }

    /// The CPUs and memory (MiB) the service `name` runs with, from its
    /// `scaling` view; `None` when Torpor shows none (a static backend).
    pub fn size(&self, name: &str) -> anyhow::Result<Option<(f64, u64)>> {
        let service = self.service_view(name)?;
        let resources = &service["scaling"]["resources"];
        Ok(resources["cpus"]
            .as_f64()
            .zip(resources["memory_mib"].as_u64()))
    }

    /// Starts moving the service `name` to a new backend (Torpor's
    /// `POST /services/{name}/relocate`): `Ok(Ok(()))` once it started
    /// (202), `Ok(Err(reason))` when refused.
    pub fn relocate(&self, name: &str) -> anyhow::Result<Result<(), String>> {
        let path = format!("/services/{}/relocate", encode_segment(name));
        let (status, body) = self.call("POST", &path)?;
        match status {
            202 => Ok(Ok(())),
            409 => Ok(Err(error_text(&body))),
            other => bail!(
                "POST {}{path} answered {other}: {}",
                self.base,
                error_text(&body)
            ),
        }
    }

    /// The service's last relocation as Torpor shows it (`relocation` in
    /// `GET /services/{name}`; `null` before any).
    pub fn relocation(&self, name: &str) -> anyhow::Result<serde_json::Value> {
        Ok(self.service_view(name)?["relocation"].clone())
    }

    /// Creates a service (Torpor's `POST /services` with `body`):
    /// `Ok(Ok(()))` once created (201), `Ok(Err(reason))` when refused.
    pub fn create_service(&self, body: &serde_json::Value) -> anyhow::Result<Result<(), String>> {
        let url = format!("{}/services", self.base);
        let response = self
            .with_token(self.agent.post(&url))
            .header("Content-Type", "application/json")
            .send(body.to_string());
        let (status, text) = answer("POST", &url, response)?;
        Ok(match status {
            201 => Ok(()),
            _ => Err(format!("{status}: {}", error_text(&text))),
        })
    }

    /// Deletes the service `name` with its data (`DELETE
    /// /services/{name}?data=drop`): `Ok(Ok(()))` once deleted,
    /// `Ok(Err(reason))` when refused (409 while clients are connected).
    pub fn delete_service(&self, name: &str) -> anyhow::Result<Result<(), String>> {
        let url = format!("{}/services/{}?data=drop", self.base, encode_segment(name));
        let response = self.with_token(self.agent.delete(&url)).call();
        let (status, text) = answer("DELETE", &url, response)?;
        Ok(match status {
            200 => Ok(()),
            _ => Err(format!("{status}: {}", error_text(&text))),
        })
    }

    /// How many servers Torpor's local warm pool of `driver` holds
    /// ready now (its metric `torpor_warm_pool_instances{driver,host}`);
    /// `None` when it has no such pool.
    pub fn warm_instances(&self, driver: &str) -> anyhow::Result<Option<u64>> {
        let (status, body) = self.call("GET", "/metrics")?;
        if status != 200 {
            bail!("GET {}/metrics answered {status}", self.base);
        }
        Ok(warm_instances_in(&body, driver))
    }

    /// Whether `GET /readyz` answers 200 now.
    pub fn is_ready(&self) -> bool {
        matches!(self.call("GET", "/readyz"), Ok((200, _)))
    }

    /// One request; the status and the body, whatever the status.
    fn call(&self, method: &str, path: &str) -> anyhow::Result<(u16, String)> {
        let url = format!("{}{path}", self.base);
        let result = match method {
            "POST" => self.with_token(self.agent.post(&url)).send_empty(),
            _ => self.with_token(self.agent.get(&url)).call(),
        };
        answer(method, &url, result)
    }

    fn with_token<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(token) => request.header("Authorization", format!("Bearer {token}")),
            None => request,
        }
    }
}

/// The status and body of an API answer, whatever the status.
fn answer(
    method: &str,
    url: &str,
    result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> anyhow::Result<(u16, String)> {
    let mut response = result.with_context(|| format!("{method} {url}"))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_string()
        .with_context(|| format!("reading the answer to {method} {url}"))?;
    Ok((status, body))
}

/// The ready count of the local warm pool of `driver` in a metrics
/// text.
pub fn warm_instances_in(metrics: &str, driver: &str) -> Option<u64> {
    let driver = format!("driver=\"{driver}\"");
    metrics
        .lines()
        .filter(|line| {
            line.starts_with("torpor_warm_pool_instances{")
                && line.contains(&driver)
                && line.contains("host=\"local\"")
        })
        .find_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|count| count as u64)
}

/// The `services` of a `GET /services` body.
pub fn parse_services(body: &str) -> anyhow::Result<Vec<Service>> {
    #[derive(Deserialize)]
    struct Listing {
        services: Vec<Service>,
    }
    let listing: Listing = serde_json::from_str(body).with_context(|| {
        format!(
            "expected {{\"services\":[{{\"name\":…,\"state\":…}}]}}, got {}",
            excerpt(body)
        )
    })?;
    Ok(listing.services)
}

/// `default` when listed, else the only service; an error naming them
/// otherwise.
pub fn pick_service(services: Vec<Service>) -> anyhow::Result<Service> {
    if let Some(found) = services.iter().find(|s| s.name == DEFAULT_SERVICE) {
        return Ok(found.clone());
    }
    let names: Vec<String> = services.iter().map(|s| s.name.clone()).collect();
    let mut services = services;
    match services.len() {
        1 => Ok(services.remove(0)),
        0 => bail!("Torpor manages no service"),
        _ => bail!(
            "Torpor manages several services ({}) and none is named {DEFAULT_SERVICE:?}",
            names.join(", ")
        ),
    }
}

/// What an action's answer means: 200 with the service, 409 with a
/// reason, or an error for anything else.
pub fn parse_reply(status: u16, body: &str) -> anyhow::Result<Reply> {
    match status {
        200 => {
            let service: Service = serde_json::from_str(body).with_context(|| {
                format!(
                    "answered 200 without a service object ({{\"name\":…,\"state\":…}}): {}",
                    excerpt(body)
                )
            })?;
            Ok(Reply::Done(service))
        }
        409 => Ok(Reply::Refused(error_text(body))),
        _ => bail!("answered {status}: {}", error_text(body)),
    }
}

/// The `error` of a `{"error":"…"}` body, else an excerpt of the body.
pub fn error_text(body: &str) -> String {
    #[derive(Deserialize)]
    struct ErrorBody {
        error: String,
    }
    match serde_json::from_str::<ErrorBody>(body) {
        Ok(parsed) => parsed.error,
        Err(_) => excerpt(body),
    }
}

/// The start of `body` on one line, or `(empty body)`.
fn excerpt(body: &str) -> String {
    let line = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.is_empty() {
        return "(empty body)".to_string();
    }
    match line.char_indices().nth(BODY_EXCERPT) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

/// A service name as one URL path segment: letters, digits and `-._~`
/// as they are, every other byte percent-encoded.
pub fn encode_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_warm_pool_count_is_read_from_the_metrics() {
        let text = "# TYPE torpor_warm_pool_instances gauge\n\
                    torpor_warm_pool_instances{driver=\"process\",host=\"local\"} 2\n\
                    torpor_warm_pool_instances{driver=\"docker\",host=\"local\"} 1\n\
                    torpor_warm_pool_instances{driver=\"docker\",host=\"far\"} 3\n";
        assert_eq!(warm_instances_in(text, "process"), Some(2));
        assert_eq!(warm_instances_in(text, "docker"), Some(1));
        assert_eq!(warm_instances_in("torpor_up 1\n", "process"), None);
    }

    #[test]
    fn services_parse_with_unknown_fields_and_states() {
        let body = r#"{"services":[
            {"name":"default","state":"suspended","driver":"process","cpu":0.5,"idle_secs":12},
            {"name":"other","state":"migrating","driver":"docker"}
        ]}"#;
        let services = parse_services(body).expect("valid listing");
        assert_eq!(
            services,
            [
                Service {
                    name: "default".into(),
                    state: ServiceState::Suspended,
                    driver: "process".into()
                },
                Service {
                    name: "other".into(),
                    state: ServiceState::Other("migrating".into()),
                    driver: "docker".into()
                },
            ]
        );
        assert_eq!(services[1].state.name(), "migrating");
    }

    #[test]
    fn every_documented_state_round_trips() {
        for name in ["active", "suspending", "suspended", "parked", "waking"] {
            let state = ServiceState::from_name(name);
            assert!(!matches!(state, ServiceState::Other(_)), "{name}");
            assert_eq!(state.name(), name);
        }
    }

    #[test]
    fn malformed_listings_are_errors_that_show_the_body() {
        for body in [
            "",
            "[]",
            r#"{"services":{}}"#,
            r#"{"services":[{"state":"active"}]}"#,
        ] {
            let error = parse_services(body).expect_err(body);
            assert!(format!("{error:#}").contains("expected"), "{body}");
        }
    }

    #[test]
    fn the_default_service_is_picked_else_the_only_one() {
        let service = |name: &str| Service {
            name: name.into(),
            state: ServiceState::Active,
            driver: "process".into(),
        };
        let picked = pick_service(vec![service("a"), service("default")]).expect("default");
        assert_eq!(picked.name, "default");
        assert_eq!(
            pick_service(vec![service("only")]).expect("one").name,
            "only"
        );
        let error = pick_service(vec![service("a"), service("b")]).expect_err("ambiguous");
        assert!(format!("{error}").contains("a, b"), "{error}");
        assert!(pick_service(Vec::new()).is_err());
    }

    #[test]
    fn replies_are_done_refused_or_errors() {
        let done = parse_reply(
            200,
            r#"{"name":"default","state":"parked","driver":"process"}"#,
        )
        .expect("200");
        assert!(matches!(done, Reply::Done(s) if s.state == ServiceState::Parked));
        assert_eq!(
            parse_reply(409, r#"{"error":"a query is in flight"}"#).expect("409"),
            Reply::Refused("a query is in flight".into())
        );
        assert_eq!(
            parse_reply(409, "busy\n").expect("409"),
            Reply::Refused("busy".into())
        );
        let error = parse_reply(500, r#"{"error":"driver: kill failed"}"#).expect_err("500");
        assert_eq!(format!("{error}"), "answered 500: driver: kill failed");
        let error = parse_reply(404, "").expect_err("404");
        assert_eq!(format!("{error}"), "answered 404: (empty body)");
        assert!(
            parse_reply(200, "ok").is_err(),
            "200 must carry the service"
        );
    }

    #[test]
    fn actions_name_their_paths_and_end_states() {
        assert_eq!(Action::Suspend.name(), "suspend");
        assert_eq!(Action::Park.reached(), ServiceState::Parked);
        assert_eq!(Action::Wake.reached(), ServiceState::Active);
    }

    #[test]
    fn long_bodies_are_cut_on_a_character_boundary() {
        let body = "é".repeat(BODY_EXCERPT + 10);
        let text = excerpt(&body);
        assert_eq!(text.chars().count(), BODY_EXCERPT + 1);
        assert!(text.ends_with('…'));
    }

    #[test]
    fn service_names_are_encoded_as_one_path_segment() {
        assert_eq!(encode_segment("default"), "default");
        assert_eq!(encode_segment("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
        assert_eq!(encode_segment("é"), "%C3%A9");
    }
}
