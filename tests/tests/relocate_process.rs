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
