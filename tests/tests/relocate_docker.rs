//! Relocation with the `docker` driver: a service moves to a new
//! container with a new volume on the same engine (a copy by
//! `mariadb-backup` run in the source container, restored by a helper
//! container of the image; a catch-up by GTID replication over the
//! containers' network; a switch-over), or, parked, by a copy of its
//! volume at rest. The scenarios are the process driver's
//! (`torpor_tests::relocation`); here the old container and volume must
//! be gone afterwards. Under `TORPOR_REQUIRE_DOCKER=1` (CI) a missing
//! engine or image fails these tests; elsewhere they say "skipped" and
//! pass.

use std::time::Duration;

use mysql::prelude::Queryable;
use torpor::config::DriverKind;
use torpor_tests::docker::{
    containers_of, docker, docker_ok, images_ready, mariadb_image, volumes_of, RemoveOnDrop,
};
use torpor_tests::relocation::{
    moves_live_with_nothing_lost, moves_parked, sysbench_through_a_move, wait_gone, wait_relocated,
    wakes_where_it_moved,
};
use torpor_tests::serverless::{name, Managed};

fn engine_and_image() -> bool {
    images_ready(&[mariadb_image()]).is_some()
}

/// Whether the engine knows a container (`container`) or volume
/// (`volume`) of that name.
fn exists(kind: &str, name: &str) -> bool {
    docker(&[kind, "inspect", name]).is_some_and(|out| out.status.success())
}

/// Checks the service's data is now on one new volume, which its
/// placement file names, and the first container and volume are gone;
/// returns the new container's name.
fn moved_to_a_new_volume(managed: &Managed, service: &str) -> String {
    let old = format!("torpor-{service}");
    wait_gone("the old container", Duration::from_secs(60), || {
        !exists("container", &old)
    });
    wait_gone("the old volume", Duration::from_secs(30), || {
        !exists("volume", &format!("{old}-data"))
    });
    let placement = std::fs::read_to_string(
        managed
            .state_dir
            .path()
            .join("services")
            .join(service)
            .join("docker.placement"),
    )
    .expect("a placement file");
    // The suffix, then the host (one host here: `local`).
    let mut words = placement.split_whitespace();
    let new = format!("{old}{}", words.next().expect("a suffix"));
    assert_eq!(words.next(), Some("local"), "{placement}");
    assert_eq!(volumes_of(service), vec![format!("{new}-data")]);
    new
}

#[test]
fn a_live_service_moves_to_a_new_container_with_nothing_lost() {
    if !engine_and_image() {
        return;
    }
    let service = name("dock", "move");
    let managed = Managed::start(DriverKind::Docker, &service, |_, _| {});
    let moved = moves_live_with_nothing_lost(&managed, &service);
    let new = moved_to_a_new_volume(&managed, &service);
    assert_eq!(containers_of(&service), vec![new.clone()]);
    assert_eq!(
        docker_ok(&["inspect", "--format", "{{.State.Status}}", &new]),
        "running"
    );
    println!("relocated to {new}: {}", moved.figures());
    // A temporary service's backend goes with Torpor: the new pair too.
    drop(managed);
    assert!(containers_of(&service).is_empty(), "a container was left");
    assert!(volumes_of(&service).is_empty(), "a volume was left");
}

/// sysbench `oltp_read_write` (8 threads, prepared statements) runs
/// through a move to a new container without an error or a reconnect.
#[test]
fn sysbench_read_write_runs_through_a_move_to_a_new_container() {
    if !engine_and_image() {
        return;
    }
    let service = name("dock", "sbmove");
    let managed = Managed::start(DriverKind::Docker, &service, |_, _| {});
    let figures = sysbench_through_a_move(&managed, &service, "relocate");
    moved_to_a_new_volume(&managed, &service);
    println!("sysbench through a move to a new container: {figures}");
}

#[test]
fn a_parked_service_moves_to_a_new_volume_at_rest() {
    if !engine_and_image() {
        return;
    }
    let service = name("dock", "restmove");
    let managed = Managed::start(DriverKind::Docker, &service, |_, _| {});
    let (moved, session, server_before) = moves_parked(&managed, &service);
    let new = moved_to_a_new_volume(&managed, &service);
    // Still parked: its container is made at the next wake.
    assert!(
        containers_of(&service).is_empty(),
        "{:?}",
        containers_of(&service)
    );
    wakes_where_it_moved(session, server_before);
    assert_eq!(containers_of(&service), vec![new.clone()]);
    assert_eq!(
        docker_ok(&["inspect", "--format", "{{.State.Status}}", &new]),
        "running"
    );
    println!(
        "parked service moved at rest to {new}: {} bytes copied in {} ms",
        moved["relocation"]["bytes_copied"], moved["relocation"]["copy_ms"]
    );
}

/// A Torpor started again after a relocation runs the container the
/// service moved to (its state folder's placement), with its data, not a
/// new empty one under the first name.
#[test]
fn a_restarted_torpor_runs_the_container_the_service_moved_to() {
    if !engine_and_image() {
        return;
    }
    let service = name("dock", "moveboot");
    // Dropped after Torpor (declared first): the containers go last.
    let _cleanup = RemoveOnDrop(service.clone());
    let mut managed = Managed::start(DriverKind::Docker, &service, |s, _| s.temporary = false);
    let mut setup = managed.connect();
    setup
        .query_drop("CREATE TABLE test.kept (id INT PRIMARY KEY)")
        .expect("create");
    setup
        .query_drop("INSERT INTO test.kept SELECT seq FROM test.seq_1_to_500")
        .expect("fill");
    drop(setup);
    let (status, body) = managed.act(&service, "relocate");
    assert_eq!(status, 202, "{body}");
    let moved = wait_relocated(&managed, &service, Duration::from_secs(180));
    assert_eq!(moved["relocation"]["phase"], "moved", "{moved}");
    let new = moved_to_a_new_volume(&managed, &service);
    let server_moved: u32 = managed
        .connect()
        .query_first("SELECT @@server_id")
        .expect("server id")
        .expect("a row");

    managed.restart();
    let mut check = managed.connect();
    let (rows, server): (i64, u32) = check
        .query_first("SELECT (SELECT COUNT(*) FROM test.kept), @@server_id")
        .expect("query")
        .expect("a row");
    assert_eq!(rows, 500);
    assert_eq!(server, server_moved, "another server than the moved one");
    assert_eq!(containers_of(&service), vec![new.clone()]);
    assert_eq!(
        docker_ok(&["inspect", "--format", "{{.State.Status}}", &new]),
        "running"
    );
}
