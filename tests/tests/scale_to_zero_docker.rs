//! Scale to zero with the `docker` driver: the service's MariaDB is a
//! container of the `torpor/mariadb` image (built by
//! `docker/mariadb/build.sh`), paused when idle, stopped when parked and
//! started again on the next query. The suite is shared with the process
//! driver (`torpor_tests::serverless`). Under `TORPOR_REQUIRE_DOCKER=1`
//! (CI) a missing engine or image fails these tests; elsewhere they say
//! "skipped" and pass.

use std::time::Duration;

use mysql::prelude::Queryable;

use torpor::config::DriverKind;
use torpor::service::lifecycle::State;
use torpor_tests::docker::{docker, docker_ok, images_ready, mariadb_image, RemoveOnDrop};
use torpor_tests::serverless::{name, Managed, Stateful};

fn engine_and_image() -> bool {
    images_ready(&[mariadb_image()]).is_some()
}

torpor_tests::scale_to_zero_suite!(DriverKind::Docker, "dock", engine_and_image);

/// A suspended service's container is paused, a parked one's is stopped.
#[test]
fn suspend_pauses_and_park_stops_the_container() {
    if !engine_and_image() {
        return;
    }
    let service = name("dock", "states");
    let managed = Managed::start(DriverKind::Docker, &service, |_, _| {});
    let container = format!("torpor-{service}");
    let status = || docker_ok(&["inspect", "--format", "{{.State.Status}}", &container]);
    assert_eq!(status(), "running");
    assert_eq!(managed.act(&service, "suspend").0, 200);
    assert_eq!(status(), "paused");
    assert_eq!(managed.act(&service, "park").0, 200);
    assert_eq!(status(), "exited");
    assert_eq!(managed.act(&service, "wake").0, 200);
    assert_eq!(status(), "running");
}

/// A restart of Torpor leaves a suspended service suspended: its
/// container stays paused through it, the service comes back suspended
/// (not parked, not woken), and the first query thaws the same container
/// with the data and the session's state.
#[test]
fn a_suspended_service_stays_suspended_through_a_restart_of_torpor() {
    if !engine_and_image() {
        return;
    }
    let service = name("dock", "kept");
    // Dropped after Torpor (declared first): the container goes last.
    let _cleanup = RemoveOnDrop(service.clone());
    let mut managed = Managed::start(DriverKind::Docker, &service, |s, _| s.temporary = false);
    let container = format!("torpor-{service}");
    let inspect = |format: &str| docker_ok(&["inspect", "--format", format, &container]);
    let mut session = managed.connect();
    session
        .query_drop("CREATE TABLE test.kept_frozen (id INT PRIMARY KEY)")
        .expect("create");
    session
        .query_drop("INSERT INTO test.kept_frozen VALUES (1), (2), (3)")
        .expect("insert");
    drop(session);
    let id_before = inspect("{{.Id}}");
    // The greeting and baselines are kept within a second of being
    // learned; a restart before that would wake the service to learn them.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(managed.act(&service, "suspend").0, 200);
    assert_eq!(inspect("{{.State.Status}}"), "paused");

    managed.restart();
    // The service's scaler looks at its container first thing (parked
    // until it has: a query meanwhile would thaw it all the same).
    managed.wait_for(State::Suspended, Duration::from_secs(30));
    assert_eq!(inspect("{{.State.Status}}"), "paused");
    let (status, view) = managed.get(&format!("/services/{service}"));
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["state"], "suspended", "{view}");

    // The first query (the mysql crate's own, at connect) thaws the same
    // container.
    let mut session = managed.connect();
    let rows: Option<u64> = session
        .query_first("SELECT COUNT(*) FROM test.kept_frozen")
        .expect("query after the restart");
    assert_eq!(rows, Some(3));
    assert_eq!(managed.state(), State::Active);
    assert_eq!(inspect("{{.State.Status}}"), "running");
    assert_eq!(
        inspect("{{.Id}}"),
        id_before,
        "the container was made again"
    );
    let (status, metrics) = managed.get_text("/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.lines().any(
            |line| line.starts_with("torpor_wake_duration_seconds_count")
                && line.contains(&format!("service=\"{service}\""))
                && line.contains("from=\"suspended\"")
                && !line.ends_with(" 0")
        ),
        "no wake from suspended counted:\n{metrics}"
    );
}

/// A container removed underneath a suspended service: the next query
/// starts a new one on the kept volume and the session goes on.
#[test]
fn a_container_removed_while_suspended_is_recreated() {
    if !engine_and_image() {
        return;
    }
    let service = name("dock", "removed");
    let managed = Managed::start(DriverKind::Docker, &service, |_, _| {});
    let mut session = Stateful::open(&managed);
    assert_eq!(managed.act(&service, "suspend").0, 200);
    docker_ok(&["rm", "-f", &format!("torpor-{service}")]);
    session.check();
    assert_eq!(managed.state(), State::Active);
}

/// A wake that cannot finish in time (container and volume removed, so
/// the new container initializes a datadir first) gives the held query a
/// clear error; the connection stays, and once the backend is up the next
/// query runs with the session's state replayed.
#[test]
fn a_failed_wake_is_an_error_and_the_next_query_recovers() {
    if !engine_and_image() {
        return;
    }
    let service = name("dock", "fail");
    let managed = Managed::start(DriverKind::Docker, &service, |s, _| {
        s.wake_timeout_secs = 1;
    });
    let mut session = Stateful::open(&managed);
    assert_eq!(managed.act(&service, "park").0, 200);
    let container = format!("torpor-{service}");
    docker_ok(&["rm", "-f", &container]);
    let removed = docker(&["volume", "rm", &format!("{container}-data")])
        .is_some_and(|out| out.status.success());
    assert!(removed, "the volume could not be removed");
    match mysql::prelude::Queryable::query_drop(&mut session.conn, "SELECT 1") {
        Err(mysql::Error::MySqlError(e)) => {
            assert_eq!(e.code, 1429, "{e}");
            assert!(e.message.contains("could not be woken"), "{e}");
        }
        other => panic!("a wake past its timeout gave {other:?}"),
    }
    managed.wait_for(State::Active, Duration::from_secs(180));
    session.check();
}

/// Sessions reach the container through its Unix socket, in a folder of
/// the service's state shared with the container (a cheaper hop than the
/// published TCP port), through a suspend and a park too.
#[test]
fn sessions_reach_the_container_through_its_shared_socket() {
    if !engine_and_image() {
        return;
    }
    let service = name("dock", "socket");
    let managed = Managed::start(DriverKind::Docker, &service, |_, _| {});
    let socket = managed
        .state_dir
        .path()
        .join("services")
        .join(&service)
        .join("run")
        .join("mysqld.sock");
    let expected = torpor::endpoint::Endpoint::Unix(socket);
    assert_eq!(managed.backend_addr(), Some(expected.clone()));
    let mut session = Stateful::open(&managed);
    for action in ["suspend", "park"] {
        assert_eq!(managed.act(&service, action).0, 200, "{action}");
        session.check();
        assert_eq!(
            managed.backend_addr(),
            Some(expected.clone()),
            "after {action}"
        );
    }
}
