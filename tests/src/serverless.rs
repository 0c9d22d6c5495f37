//! The scale-to-zero suite, shared by both drivers: a Torpor with one
//! managed service (its own MariaDB, run by the `process` or `docker`
//! driver), the admin API on a free port, and checks of the lifecycle
//! through real clients. `tests/tests/scale_to_zero_*.rs` instantiate it
//! with [`crate::scale_to_zero_suite`].

use std::net::SocketAddr;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use serde_json::Value;
use torpor::config::{Config, DriverKind, ServiceConfig};
use torpor::endpoint::Endpoint;
use torpor::service::lifecycle::State;
use torpor::Proxy;

use crate::{mysql_opts, test_config, APP_PASSWORD, APP_USER};

/// A Torpor with one managed service, stopped (backend included) on drop.
pub struct Managed {
    proxy: Option<Proxy>,
    /// What it was started with, for [`Managed::restart`].
    config: Config,
    /// The state folder (datadirs, secrets), removed on drop.
    pub state_dir: tempfile::TempDir,
}

impl Managed {
    /// Starts Torpor with a service `name` run by `driver` (suspend and
    /// park timers off unless `configure` sets them) and waits until the
    /// service is active.
    pub fn start(
        driver: DriverKind,
        name: &str,
        configure: impl FnOnce(&mut ServiceConfig, &mut Config),
    ) -> Managed {
        if let Ok(filter) = std::env::var("TORPOR_TEST_LOG") {
            // Kept for the life of the test process: its log thread
            // writes until the end.
            std::mem::forget(torpor::logging::init(
                torpor::config::LogFormat::Text,
                &filter,
            ));
        }
        let state_dir = tempfile::Builder::new()
            .prefix("torpor-state-")
            .tempdir()
            .expect("state dir");
        // test_config's backend is replaced by the service.
        let mut config = test_config(SocketAddr::from(([127, 0, 0, 1], 9)));
        config.backend = None;
        config.state_dir = state_dir.path().to_path_buf();
        config.admin.listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        let mut service = ServiceConfig::new(name, driver);
        service.suspend_after_secs = 0;
        service.park_after_secs = 0;
        service.wake_timeout_secs = 60;
        service.buffer_pool_mib = 64;
        // Containers and their volumes go with the test.
        service.temporary = driver == DriverKind::Docker;
        if driver == DriverKind::Docker {
            // The image the Docker tests check for (TORPOR_MARIADB_IMAGE).
            service.image = crate::docker::mariadb_image();
        }
        configure(&mut service, &mut config);
        config.services = vec![service];
        let proxy =
            Proxy::start(config.clone()).unwrap_or_else(|e| panic!("cannot start torpor: {e}"));
        let managed = Managed {
            proxy: Some(proxy),
            config,
            state_dir,
        };
        managed.wait_for(State::Active, Duration::from_secs(120));
        managed
    }

    /// Stops Torpor (its backend stopped, or removed if temporary) and
    /// starts it again on the same state folder; waits until the service
    /// is back, parked or active. Clients connect to its new address.
    pub fn restart(&mut self) {
        if let Some(proxy) = self.proxy.take() {
            proxy.stop();
        }
        let proxy = Proxy::start(self.config.clone())
            .unwrap_or_else(|e| panic!("cannot start torpor again: {e}"));
        self.proxy = Some(proxy);
        // A restart wakes nothing that was known: the service comes back
        // parked or (a docker one left frozen) suspended, the next query
        // waking it, or active when it never ran.
        let deadline = Instant::now() + Duration::from_secs(120);
        while !matches!(
            self.state(),
            State::Parked | State::Suspended | State::Active
        ) {
            assert!(
                Instant::now() < deadline,
                "service still {:?} after a restart",
                self.state()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn proxy(&self) -> &Proxy {
        self.proxy.as_ref().expect("running")
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.proxy().local_addr()
    }

    /// The service's lifecycle state.
    pub fn state(&self) -> State {
        self.proxy().services()[0].lifecycle.state()
    }

    /// How many times the service entered `state`.
    pub fn entered(&self, state: State) -> u64 {
        self.proxy().services()[0]
            .lifecycle
            .transitions()
            .into_iter()
            .find(|(s, _)| *s == state)
            .map_or(0, |(_, n)| n)
    }

    /// Where the backend listens now.
    pub fn backend_addr(&self) -> Option<Endpoint> {
        self.proxy().services()[0].address()
    }

    /// Waits until the service is in `state`; panics after `timeout`.
    pub fn wait_for(&self, state: State, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.state() != state {
            assert!(
                Instant::now() < deadline,
                "service still {:?} after {timeout:?}, expected {state:?}",
                self.state()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Where the admin API listens.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.proxy().admin_addr()
    }

    fn admin_url(&self, path: &str) -> String {
        let addr = self.proxy().admin_addr().expect("admin API runs");
        format!("http://{addr}{path}")
    }

    /// `POST /services/{name}/{action}`: the status code and JSON body.
    pub fn act(&self, name: &str, action: &str) -> (u16, Value) {
        self.post(&format!("/services/{name}/{action}"))
    }

    /// `POST path` (no body) on the admin API: the status code and JSON
    /// body.
    pub fn post(&self, path: &str) -> (u16, Value) {
        let response = agent().post(&self.admin_url(path)).send_empty();
        json_answer(response)
    }

    /// `POST path` with a JSON body on the admin API: the status code and
    /// JSON body.
    pub fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = agent()
            .post(&self.admin_url(path))
            .header("Content-Type", "application/json")
            .send(body.to_string());
        json_answer(response)
    }

    /// `GET path` on the admin API: the status code and the body as text
    /// (`/metrics`).
    pub fn get_text(&self, path: &str) -> (u16, String) {
        let mut response = agent()
            .get(&self.admin_url(path))
            .call()
            .unwrap_or_else(|e| admin_failed(e));
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().expect("body"))
    }

    /// `GET path` on the admin API: the status code and JSON body.
    pub fn get(&self, path: &str) -> (u16, Value) {
        let mut response = agent()
            .get(&self.admin_url(path))
            .call()
            .unwrap_or_else(|e| admin_failed(e));
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().expect("body");
        (status, serde_json::from_str(&body).expect("JSON"))
    }

    /// A client connection as the app user.
    pub fn connect(&self) -> mysql::Conn {
        mysql::Conn::new(mysql_opts(self.addr(), APP_USER, APP_PASSWORD))
            .unwrap_or_else(|e| panic!("cannot connect through torpor: {e}"))
    }
}

/// A call to an admin API at `admin` (`POST` with a JSON body or
/// none, `DELETE`, else `GET`): its status and JSON body.
pub fn admin_call(admin: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let url = format!("http://{admin}{path}");
    let agent = agent();
    let response = match (method, body) {
        ("POST", Some(body)) => agent
            .post(&url)
            .header("Content-Type", "application/json")
            .send(body),
        ("POST", None) => agent.post(&url).send_empty(),
        ("DELETE", _) => agent.delete(&url).call(),
        _ => agent.get(&url).call(),
    };
    json_answer(response)
}

/// The text of `/metrics` on the admin API at `admin`; `None` while it
/// does not answer.
pub fn metrics_text(admin: SocketAddr) -> Option<String> {
    agent()
        .get(&format!("http://{admin}/metrics"))
        .call()
        .ok()?
        .body_mut()
        .read_to_string()
        .ok()
}

/// An admin API answer's status code and JSON body.
fn json_answer(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Value) {
    let mut response = response.unwrap_or_else(|e| admin_failed(e));
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().expect("body");
    (status, serde_json::from_str(&body).expect("JSON"))
}

/// Fails the test on an admin API call that got no answer; one that
/// timed out prints every thread's stack first, to show where it waits.
fn admin_failed(e: ureq::Error) -> ! {
    if matches!(e, ureq::Error::Timeout(_)) {
        crate::stacks::print_all_threads("the admin API did not answer");
    }
    panic!("admin API: {e}")
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(180)))
        .build()
        .into()
}

impl Drop for Managed {
    fn drop(&mut self) {
        if let Some(proxy) = self.proxy.take() {
            proxy.stop();
        }
    }
}

/// A session with state worth keeping: a user variable, a session
/// variable, a prepared statement, and its connection id.
pub struct Stateful {
    /// The client connection.
    pub conn: mysql::Conn,
    /// A prepared statement on it.
    pub stmt: mysql::Statement,
    /// Its CONNECTION_ID() before anything happened.
    pub id: u64,
}

impl Stateful {
    /// Opens the connection and sets the state up.
    pub fn open(managed: &Managed) -> Stateful {
        let mut conn = managed.connect();
        conn.query_drop("SET @kept = 'still here', SESSION sql_mode = 'ANSI_QUOTES'")
            .expect("set");
        let stmt = conn.prep("SELECT ? + 1, @kept").expect("prepare");
        let id: u64 = conn
            .query_first("SELECT CONNECTION_ID()")
            .expect("id")
            .expect("a row");
        Stateful { conn, stmt, id }
    }

    /// Checks the state survived: same connection id, variables, and the
    /// prepared statement still runs.
    pub fn check(&mut self) {
        let (id, kept, mode): (u64, String, String) = self
            .conn
            .query_first("SELECT CONNECTION_ID(), @kept, @@SESSION.sql_mode")
            .expect("query after wake")
            .expect("a row");
        assert_eq!(id, self.id, "the client's connection id changed");
        assert_eq!(kept, "still here");
        assert_eq!(mode, "ANSI_QUOTES");
        let (n, kept): (i64, String) = self
            .conn
            .exec_first(&self.stmt, (41,))
            .expect("prepared statement after wake")
            .expect("a row");
        assert_eq!((n, kept.as_str()), (42, "still here"));
    }
}

/// Suspends after the idle time on its own; the next query wakes it and
/// finds its session as it was.
pub fn suspends_when_idle_and_wakes_on_query(driver: DriverKind, name: &str) {
    let managed = Managed::start(driver, name, |s, _| s.suspend_after_secs = 1);
    let mut session = Stateful::open(&managed);
    managed.wait_for(State::Suspended, Duration::from_secs(20));
    // A ping is answered without waking the backend.
    session.conn.ping().expect("ping while suspended");
    assert_eq!(managed.state(), State::Suspended, "a ping woke the service");
    let wakes = managed.entered(State::Waking);
    session.check();
    assert_eq!(managed.entered(State::Waking), wakes + 1);
}

/// Parked on request (backend stopped); the next query starts it and the
/// session and the data are as they were.
pub fn parks_and_wakes(driver: DriverKind, name: &str) {
    let managed = Managed::start(driver, name, |_, _| {});
    let mut session = Stateful::open(&managed);
    session
        .conn
        .query_drop("CREATE TABLE test.kept (v INT); INSERT INTO test.kept VALUES (7)")
        .expect("table");
    let (status, body) = managed.act(name, "park");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "parked");
    assert_eq!(managed.state(), State::Parked);
    assert!(managed.backend_addr().is_none());
    session.check();
    let v: Option<i64> = session
        .conn
        .query_first("SELECT v FROM test.kept")
        .expect("data after park");
    assert_eq!(v, Some(7));
}

/// Twenty idle clients all query at once after a suspend: one wake serves
/// them all, and every query succeeds.
pub fn one_wake_serves_twenty_clients(driver: DriverKind, name: &str) {
    let managed = Managed::start(driver, name, |_, _| {});
    let clients: Vec<Stateful> = (0..20).map(|_| Stateful::open(&managed)).collect();
    let (status, body) = managed.act(name, "suspend");
    assert_eq!(status, 200, "{body}");
    let wakes = managed.entered(State::Waking);
    let barrier = Arc::new(Barrier::new(clients.len()));
    let threads: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                client.check();
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("a client failed after the wake");
    }
    assert_eq!(
        managed.entered(State::Waking),
        wakes + 1,
        "twenty first queries made more than one wake"
    );
}

/// Logins are checked while parked, without waking the backend; so are
/// pings.
pub fn logins_work_while_parked(driver: DriverKind, name: &str) {
    use crate::raw::{base_capabilities, LoginOptions, RawClient};
    let managed = Managed::start(driver, name, |_, _| {});
    drop(managed.connect()); // the greeting and a fresh session are known
    let (status, body) = managed.act(name, "park");
    assert_eq!(status, 200, "{body}");
    // A login alone (the mysql crate queries right after it).
    let options = LoginOptions::app(base_capabilities());
    let mut raw = RawClient::connect(managed.addr(), &options);
    assert_eq!(managed.state(), State::Parked, "a login woke the service");
    let pong = raw.command(&[0x0e]).expect("ping").expect("a reply");
    assert!(pong.error().is_none(), "ping while parked failed");
    assert_eq!(managed.state(), State::Parked, "a ping woke the service");
    let wrong = LoginOptions {
        password: "wrong".to_string(),
        ..options.clone()
    };
    match RawClient::try_connect(managed.addr(), &wrong) {
        Err(e) => assert!(format!("{e:?}").contains("1045"), "{e:?}"),
        Ok(_) => panic!("a wrong password was accepted while parked"),
    }
    assert_eq!(
        managed.state(),
        State::Parked,
        "a failed login woke the service"
    );
    let reply = raw.query("SELECT 1");
    assert!(
        reply.error().is_none(),
        "first query after the parked login"
    );
    assert_eq!(managed.state(), State::Active);
}

/// A session in a transaction holds the suspend off, and the admin API
/// says why; once it commits the service suspends.
pub fn a_pinned_session_holds_off_the_suspend(driver: DriverKind, name: &str) {
    let managed = Managed::start(driver, name, |_, _| {});
    let mut conn = managed.connect();
    conn.query_drop("BEGIN").expect("begin");
    conn.query_drop("SELECT 1").expect("select");
    // Pins are published when the statement ends.
    let (status, body) = managed.act(name, "suspend");
    assert_eq!(status, 409, "a suspend with an open transaction: {body}");
    assert_eq!(managed.state(), State::Active);
    let (_, listing) = managed.get("/services");
    let pins = &listing["services"][0]["pins"];
    assert!(
        pins.as_array()
            .is_some_and(|p| p.iter().any(|p| p["reasons"][0] == "transaction")),
        "pins not shown: {listing}"
    );
    conn.query_drop("COMMIT").expect("commit");
    let (status, body) = managed.act(name, "suspend");
    assert_eq!(status, 200, "{body}");
    assert_eq!(managed.state(), State::Suspended);
    let (_, listing) = managed.get(&format!("/services/{name}"));
    assert_eq!(listing["state"], "suspended");
    assert_eq!(listing["pins"].as_array().map(Vec::len), Some(0));
}

/// Declares the suite's tests for one driver, in the calling test binary.
#[macro_export]
macro_rules! scale_to_zero_suite {
    ($driver:expr, $prefix:literal, $ready:expr) => {
        #[test]
        fn suspends_when_idle_and_wakes_on_query() {
            if $ready() {
                $crate::serverless::suspends_when_idle_and_wakes_on_query(
                    $driver,
                    &$crate::serverless::name($prefix, "idle"),
                );
            }
        }
        #[test]
        fn parks_and_wakes() {
            if $ready() {
                $crate::serverless::parks_and_wakes(
                    $driver,
                    &$crate::serverless::name($prefix, "park"),
                );
            }
        }
        #[test]
        fn one_wake_serves_twenty_clients() {
            if $ready() {
                $crate::serverless::one_wake_serves_twenty_clients(
                    $driver,
                    &$crate::serverless::name($prefix, "twenty"),
                );
            }
        }
        #[test]
        fn logins_work_while_parked() {
            if $ready() {
                $crate::serverless::logins_work_while_parked(
                    $driver,
                    &$crate::serverless::name($prefix, "login"),
                );
            }
        }
        #[test]
        fn a_pinned_session_holds_off_the_suspend() {
            if $ready() {
                $crate::serverless::a_pinned_session_holds_off_the_suspend(
                    $driver,
                    &$crate::serverless::name($prefix, "pinned"),
                );
            }
        }
    };
}

/// A service name no other test or run uses (containers are named after
/// services).
pub fn name(prefix: &str, test: &str) -> String {
    format!("{prefix}-{test}-{}", std::process::id())
}
