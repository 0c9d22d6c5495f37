//! Relocation with the `process` driver: a live service moves to a new
//! `mariadbd` on a new datadir (a copy by `mariadb-backup`, a catch-up by
//! GTID replication, a switch-over) while writers commit through Torpor
//! and sessions hold state. Nothing committed is lost or written twice,
//! no client sees an error, and every session finds its state — and its
//! open transaction — on the new backend.

use std::time::Duration;

use mysql::prelude::Queryable;
use torpor::config::DriverKind;
use torpor_tests::relocation::{
    moves_live_with_nothing_lost, moves_parked, sysbench_through_a_move, wait_gone, wait_relocated,
    wakes_where_it_moved,
};
use torpor_tests::serverless::{name, Managed, Stateful};

/// The service's configured datadir, once the move has removed it.
fn old_datadir_gone(managed: &Managed, service: &str) -> std::path::PathBuf {
    let home = managed
        .state_dir
        .path()
        .join("services")
        .join(service)
        .join("data");
    wait_gone("the old datadir", Duration::from_secs(30), || {
        !home.exists()
    });
    home
}

fn require_programs() {
    for (names, package) in [
        (&["mariadbd", "mysqld"][..], "mariadb-server"),
        (&["mariadb-backup", "mariabackup"][..], "mariadb-backup"),
        (&["mbstream"][..], "mariadb-backup"),
    ] {
        assert!(
            torpor::scaler::process::find_program(names).is_some(),
            "{} is not installed: install Debian's {package} (tests/run does)",
            names[0]
        );
    }
}

#[test]
fn a_live_service_moves_to_a_new_process_with_nothing_lost() {
    require_programs();
    let service = name("proc", "move");
    let managed = Managed::start(DriverKind::Process, &service, |_, _| {});
    let moved = moves_live_with_nothing_lost(&managed, &service);

    // The old datadir is gone, and the placement names the new one.
    let home = old_datadir_gone(&managed, &service);
    let placement = std::fs::read_to_string(home.with_extension("placement")).expect("placement");
    assert!(
        std::path::Path::new(placement.trim())
            .join("mysql")
            .is_dir(),
        "the placement names no datadir: {placement}"
    );
    println!("relocated: {}", moved.figures());
}

/// A session holding a temporary table (which cannot move) makes the
/// relocation refuse, naming it; forced, it moves and that session gets
/// an error while the others keep going.
#[test]
fn a_pin_that_cannot_move_refuses_the_relocation_unless_forced() {
    require_programs();
    let service = name("proc", "pinmove");
    let managed = Managed::start(DriverKind::Process, &service, |_, _| {});
    let mut pinned = managed.connect();
    pinned
        .query_drop("CREATE TEMPORARY TABLE scratch (a INT)")
        .expect("temporary table");
    let (status, body) = managed.act(&service, "relocate");
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("temporary-table"),
        "{body}"
    );
    let mut other = Stateful::open(&managed);
    let (status, body) = managed.act(&service, "relocate?force=1");
    assert_eq!(status, 202, "{body}");
    let moved = wait_relocated(&managed, &service, Duration::from_secs(120));
    assert_eq!(moved["relocation"]["phase"], "moved", "{moved}");
    assert!(
        moved["relocation"]["pins_left"]
            .to_string()
            .contains("temporary-table"),
        "{moved}"
    );
    other.check();
    match pinned.query_drop("SELECT * FROM scratch") {
        Err(mysql::Error::MySqlError(e)) => {
            assert!(
                e.message.to_lowercase().contains("lost") || e.code > 0,
                "{e}"
            )
        }
        Err(e) => println!("the pinned session ended: {e}"),
        Ok(()) => panic!("a temporary table survived a move it cannot survive"),
    }
}

/// sysbench `oltp_read_write` with 8 threads and server-side prepared
/// statements runs through a relocation without one error or reconnect,
/// and every table is whole afterwards.
#[test]
fn sysbench_read_write_runs_through_a_relocation() {
    require_programs();
    let service = name("proc", "sbmove");
    let managed = Managed::start(DriverKind::Process, &service, |_, _| {});
    println!(
        "sysbench through a relocation: {}",
        sysbench_through_a_move(&managed, &service, "relocate")
    );
}

/// A parked service moves by a plain copy of its data at rest; the next
/// query wakes it on the new datadir, with its data and the sessions'
/// state as they were.
#[test]
fn a_parked_service_moves_by_copying_its_data_at_rest() {
    require_programs();
    let service = name("proc", "restmove");
    let managed = Managed::start(DriverKind::Process, &service, |_, _| {});
    let (moved, session, server_before) = moves_parked(&managed, &service);
    old_datadir_gone(&managed, &service);
    wakes_where_it_moved(session, server_before);
    println!(
        "parked service moved at rest: {} bytes copied in {} ms",
        moved["relocation"]["bytes_copied"], moved["relocation"]["copy_ms"]
    );
}

/// A `[[hosts]]` entry with a `base_dir` is a host for process services:
/// a live service moves its datadir there (another disk) and back, and a
/// restarted Torpor finds it where it moved.
#[test]
fn a_live_service_moves_to_another_base_directory_and_is_found_there_after_a_restart() {
    require_programs();
    let disk = tempfile::Builder::new()
        .prefix("torpor-disk2-")
        .tempdir()
        .expect("a base directory");
    let service = name("proc", "disk");
    let mut managed = Managed::start(DriverKind::Process, &service, |_, config| {
        let mut host = torpor::config::hosts::HostConfig::local();
        host.name = "disk2".to_string();
        host.base_dir = Some(disk.path().to_path_buf());
        config.hosts = vec![host];
    });
    let mut setup = managed.connect();
    setup
        .query_drop("CREATE TABLE test.kept (id INT PRIMARY KEY)")
        .expect("create");
    setup
        .query_drop("INSERT INTO test.kept SELECT seq FROM test.seq_1_to_1000")
        .expect("fill");
    drop(setup);
    let mut session = Stateful::open(&managed);

    let (status, body) = managed.act(&service, "relocate?host=disk2");
    assert_eq!(status, 202, "{body}");
    let moved = wait_relocated(&managed, &service, Duration::from_secs(120));
    assert_eq!(moved["relocation"]["phase"], "moved", "{moved}");
    assert_eq!(moved["scaling"]["host"], "disk2", "{moved}");
    session.check();
    let home = old_datadir_gone(&managed, &service);
    let datadir = |managed: &Managed| -> String {
        managed
            .connect()
            .query_first("SELECT @@datadir")
            .expect("@@datadir")
            .expect("a row")
    };
    assert!(
        datadir(&managed).starts_with(&disk.path().display().to_string()),
        "{} is not under {}",
        datadir(&managed),
        disk.path().display()
    );
    let (status, hosts) = managed.get("/hosts");
    assert_eq!(status, 200, "{hosts}");
    let disk2 = hosts["hosts"]
        .as_array()
        .and_then(|all| all.iter().find(|host| host["name"] == "disk2"))
        .expect("disk2 listed")
        .clone();
    assert_eq!(disk2["services"], serde_json::json!([service]), "{hosts}");

    // Found there after a restart, with its data.
    managed.restart();
    assert!(datadir(&managed).starts_with(&disk.path().display().to_string()));
    let rows: Option<u64> = managed
        .connect()
        .query_first("SELECT COUNT(*) FROM test.kept")
        .expect("count");
    assert_eq!(rows, Some(1000));

    // And back to this machine's state folder.
    let (status, body) = managed.act(&service, "relocate?host=local");
    assert_eq!(status, 202, "{body}");
    let before = moved["relocation"]["started_at_unix_ms"].as_u64();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let back = loop {
        let view = torpor_tests::relocation::service_view(&managed, &service);
        let relocation = &view["relocation"];
        if relocation["started_at_unix_ms"].as_u64() > before
            && matches!(relocation["phase"].as_str(), Some("moved" | "failed"))
        {
            break view;
        }
        assert!(std::time::Instant::now() < deadline, "{view}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(back["relocation"]["phase"], "moved", "{back}");
    let home_parent = home.parent().expect("a parent").display().to_string();
    assert!(
        datadir(&managed).starts_with(&home_parent),
        "{}",
        datadir(&managed)
    );
    wait_gone("the datadir on disk2", Duration::from_secs(30), || {
        std::fs::read_dir(disk.path()).is_ok_and(|mut entries| entries.next().is_none())
    });
}
