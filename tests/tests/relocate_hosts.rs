//! Relocation between hosts (issue 17): a second Docker Engine in a
//! network namespace ([`torpor_tests::second_host`]) is a `[[hosts]]`
//! entry of its own, reached over a veth pair, its containers on its own
//! network. A docker service moves there under sysbench and a commit
//! checker, comes back when the host is drained, goes there again once
//! it is undrained, and leaves a host that is over its memory watermark
//! on its own — that host's engine reached as a remote one is, over TCP
//! with mutual TLS.
//!
//! The tests run as root wherever a Docker engine answers and has the
//! MariaDB image, under the rules of [`torpor_tests::docker`].

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use serde_json::{json, Value};
use torpor::config::hosts::{HostConfig, HostNetwork};
use torpor::config::DriverKind;
use torpor_tests::docker::{docker_ok, mariadb_image};
use torpor_tests::relocation::{service_view, sysbench_through_a_move, wait_gone, wait_relocated};
use torpor_tests::second_host::{second_host_ready, SecondHost};
use torpor_tests::serverless::{name, Managed};

/// The second host's name in Torpor's config.
const FAR: &str = "far";

/// One test at a time: each runs two engines' worth of MariaDB servers
/// and copies between them, more than two cores take at once.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A second host with the MariaDB image; `None` (the test passes with a
/// note) where one cannot run.
fn second_host() -> Option<SecondHost> {
    second_host_ready(&[mariadb_image()])?;
    // The caller holds ONE_AT_A_TIME.
    let host = SecondHost::start();
    host.load_image(&mariadb_image());
    Some(host)
}

/// How Torpor reaches the second host's engine.
#[derive(Clone, Copy)]
enum Reached {
    /// Its API socket.
    Socket,
    /// TCP with mutual TLS, as a remote engine is reached.
    Tls,
}

/// The two hosts: this machine's engine, publishing on its end of the
/// veth pair (where the second host's servers reach its containers to
/// replicate), and the second host's, whose containers listen on its
/// own network.
fn hosts(second: &SecondHost, far_memory_mib: Option<u64>, reached: Reached) -> Vec<HostConfig> {
    let mut local = HostConfig::local();
    local.address = IpAddr::V4(second.host_addr());
    let mut far = HostConfig::local();
    far.name = FAR.to_string();
    match reached {
        Reached::Socket => far.engine = Some(second.docker_host()),
        Reached::Tls => {
            let (engine, tls) = second.tls_engine();
            far.engine = Some(engine);
            far.tls_ca = Some(tls.ca.clone());
            far.tls_cert = Some(tls.client_cert.clone());
            far.tls_key = Some(tls.client_key.clone());
        }
    }
    far.address = IpAddr::V4(second.addr());
    far.network = HostNetwork::Host;
    far.memory_mib = far_memory_mib;
    vec![local, far]
}

/// The names of Torpor's containers of `service` on an engine, as `ps`
/// prints them with `docker` (the host's CLI or the second host's).
fn containers(ps: impl Fn(&[&str]) -> String, service: &str) -> Vec<String> {
    ps(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=org.torpor.service={service}"),
        "--format",
        "{{.Names}}",
    ])
    .lines()
    .map(str::to_string)
    .collect()
}

/// The host `GET /hosts` lists `service` on.
fn listed_on(managed: &Managed, service: &str) -> String {
    let (status, body) = managed.get("/hosts");
    assert_eq!(status, 200, "{body}");
    let hosts = body["hosts"].as_array().expect("hosts").clone();
    let on: Vec<&Value> = hosts
        .iter()
        .filter(|host| {
            host["services"]
                .as_array()
                .is_some_and(|names| names.iter().any(|n| n == service))
        })
        .collect();
    assert_eq!(on.len(), 1, "{body}");
    on[0]["name"].as_str().expect("a name").to_string()
}

/// The host the service's placement file names.
fn placed_on(state_dir: &Path, service: &str) -> String {
    let text = std::fs::read_to_string(
        state_dir
            .join("services")
            .join(service)
            .join("docker.placement"),
    )
    .expect("a placement file");
    text.split_whitespace().nth(1).expect("a host").to_string()
}

/// Where the service's server says it runs: its address's host part is
/// what the session reached.
fn server_port(managed: &Managed) -> u16 {
    managed
        .connect()
        .query_first("SELECT @@port")
        .expect("@@port")
        .expect("a row")
}

/// Waits until a move that started after the one at `before` (ms since
/// the epoch) ended; returns the service.
fn wait_next_move(managed: &Managed, service: &str, before: Option<u64>) -> Value {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let view = service_view(managed, service);
        let relocation = &view["relocation"];
        let newer = relocation["started_at_unix_ms"].as_u64() > before;
        if newer && matches!(relocation["phase"].as_str(), Some("moved" | "failed")) {
            return view;
        }
        assert!(Instant::now() < deadline, "no new move ended: {view}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_service_moves_to_another_host_under_sysbench_and_back_when_it_is_drained() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(second) = second_host() else {
        return;
    };
    let service = name("host", "move");
    let managed = Managed::start(DriverKind::Docker, &service, |_, config| {
        config.hosts = hosts(&second, None, Reached::Socket);
    });
    assert_eq!(listed_on(&managed, &service), "local");
    assert_eq!(containers(docker_ok, &service).len(), 1);

    // To the second host, while sysbench and two writers run.
    let figures = sysbench_through_a_move(&managed, &service, &format!("relocate?host={FAR}"));
    println!("sysbench through a move to another host: {figures}");
    assert_eq!(listed_on(&managed, &service), FAR);
    assert_eq!(placed_on(managed.state_dir.path(), &service), FAR);
    wait_gone("the source container", Duration::from_secs(60), || {
        containers(docker_ok, &service).is_empty()
    });
    let far = containers(|args| second.docker_ok(args), &service);
    assert_eq!(far.len(), 1, "{far:?}");
    // On the second host's own network, on a port Torpor chose.
    let port = server_port(&managed);
    assert!((13306..=14305).contains(&port), "port {port}");
    let view = service_view(&managed, &service);
    assert_eq!(
        view["address"],
        format!("{}:{port}", second.addr()),
        "{view}"
    );
    let first_move = view["relocation"]["started_at_unix_ms"].as_u64();

    // Drained, the second host gives the service back to the only other.
    let (status, body) = managed.post(&format!("/hosts/{FAR}/drain"));
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["moving"], serde_json::json!([service]), "{body}");
    let moved = wait_next_move(&managed, &service, first_move);
    assert_eq!(moved["relocation"]["phase"], "moved", "{moved}");
    assert_eq!(listed_on(&managed, &service), "local");
    assert_eq!(placed_on(managed.state_dir.path(), &service), "local");
    wait_gone(
        "the second host's container",
        Duration::from_secs(60),
        || containers(|args| second.docker_ok(args), &service).is_empty(),
    );
    let count: Option<u64> = managed
        .connect()
        .query_first("SELECT COUNT(*) FROM test.sbtest1")
        .expect("count");
    assert_eq!(count, Some(torpor_tests::sysbench::TABLE_SIZE));
    // A draining host takes no service, asked in the query or the body.
    let relocate = format!("/services/{service}/relocate");
    let (status, body) = managed.act(&service, &format!("relocate?host={FAR}"));
    assert_eq!(status, 409, "{body}");
    let (status, body) = managed.post_json(&relocate, &json!({"host": FAR}));
    assert_eq!(status, 409, "{body}");
    let (status, body) = managed.act(&service, "relocate?host=nowhere");
    assert_eq!(status, 404, "{body}");
    let (status, body) = managed.post_json(&relocate, &json!({"host": "nowhere"}));
    assert_eq!(status, 404, "{body}");

    // Undrained, it takes the service again.
    let (status, body) = managed.post(&format!("/hosts/{FAR}/undrain"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["was_draining"], true, "{body}");
    let (_, hosts) = managed.get("/hosts");
    let far_host = hosts["hosts"]
        .as_array()
        .and_then(|all| all.iter().find(|h| h["name"] == FAR))
        .cloned()
        .unwrap_or_default();
    assert_eq!(far_host["draining"], false, "{hosts}");
    let second_move = service_view(&managed, &service)["relocation"]["started_at_unix_ms"].as_u64();
    let (status, body) = managed.post_json(&relocate, &json!({"host": FAR, "force": false}));
    assert_eq!(status, 202, "{body}");
    let moved = wait_next_move(&managed, &service, second_move);
    assert_eq!(moved["relocation"]["phase"], "moved", "{moved}");
    assert_eq!(listed_on(&managed, &service), FAR);
    let (status, body) = managed.post("/hosts/nowhere/undrain");
    assert_eq!(status, 404, "{body}");
    drop(managed);
}

#[test]
fn a_host_over_its_memory_watermark_moves_its_service_away_from_an_engine_reached_over_tls() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(second) = second_host() else {
        return;
    };
    let service = name("host", "mark");
    // 1024 MiB given on a host that offers 1200: over its 70 % watermark.
    // Torpor reaches that engine as a remote one, over TCP with mutual
    // TLS: the API for the container and its statistics, the CLI for the
    // move's backup stream.
    let managed = Managed::start(DriverKind::Docker, &service, |service, config| {
        config.hosts = hosts(&second, Some(1200), Reached::Tls);
        service.runs_on = Some(FAR.to_string());
    });
    assert_eq!(containers(|args| second.docker_ok(args), &service).len(), 1);
    let mut session = managed.connect();
    session
        .query_drop("CREATE TABLE test.kept (id INT PRIMARY KEY)")
        .expect("create");
    session
        .query_drop("INSERT INTO test.kept SELECT seq FROM test.seq_1_to_1000")
        .expect("fill");
    session.query_drop("SET @mine = 'here'").expect("set");
    let moved = wait_relocated(&managed, &service, Duration::from_secs(180));
    assert_eq!(moved["relocation"]["phase"], "moved", "{moved}");
    assert_eq!(listed_on(&managed, &service), "local");
    assert_eq!(placed_on(managed.state_dir.path(), &service), "local");
    let (rows, mine): (u64, String) = session
        .query_first("SELECT (SELECT COUNT(*) FROM test.kept), @mine")
        .expect("query after the move")
        .expect("a row");
    assert_eq!((rows, mine.as_str()), (1000, "here"));
    wait_gone(
        "the second host's container",
        Duration::from_secs(60),
        || containers(|args| second.docker_ok(args), &service).is_empty(),
    );
    drop(managed);
}

#[test]
fn a_move_to_a_host_without_the_image_fails_and_the_service_stays_where_it_was() {
    let image = mariadb_image();
    let Some(()) = second_host_ready(std::slice::from_ref(&image)) else {
        return;
    };
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // No image loaded there: the target cannot be made.
    let second = SecondHost::start();
    let service = name("host", "fail");
    let managed = Managed::start(DriverKind::Docker, &service, |_, config| {
        config.hosts = hosts(&second, None, Reached::Socket);
    });
    let mut session = managed.connect();
    session.query_drop("SET @mine = 'here'").expect("set");
    let server_before: u32 = session
        .query_first("SELECT @@server_id")
        .expect("server id")
        .expect("a row");
    let (status, body) = managed.act(&service, &format!("relocate?host={FAR}"));
    assert_eq!(status, 202, "{body}");
    let failed = wait_relocated(&managed, &service, Duration::from_secs(120));
    let relocation = &failed["relocation"];
    assert_eq!(relocation["phase"], "failed", "{failed}");
    // The cause, not what it did to the copy's other end.
    let error = relocation["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&image) && error.contains("not on this machine"),
        "{error}"
    );
    assert_eq!(failed["state"], "active", "{failed}");
    assert_eq!(failed["backend_generation"], 0, "{failed}");
    // The session goes on where it was, with its state.
    let (server_after, mine): (u32, String) = session
        .query_first("SELECT @@server_id, @mine")
        .expect("query after the failed move")
        .expect("a row");
    assert_eq!((server_after, mine.as_str()), (server_before, "here"));
    assert_eq!(listed_on(&managed, &service), "local");
    assert!(containers(|args| second.docker_ok(args), &service).is_empty());
    let (status, metrics) = managed.get_text("/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("torpor_relocations_total")
                && line.contains("result=\"failed\"")
                && line.ends_with(" 1")),
        "{metrics}"
    );
    drop(managed);
}
