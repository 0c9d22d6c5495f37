//! Storage that grows: the service's datadir is an XFS volume of its own
//! (an image on a loop device; with the `docker` driver bind-mounted into
//! the container) that Torpor grows while a client writes, up to its
//! maximum, where the writer gets MariaDB's own "table is full" and
//! everything else goes on.
//!
//! Needs root and loop devices (and xfsprogs, which tests/run installs);
//! elsewhere the tests say why and pass without running. The docker test
//! follows [`torpor_tests::docker`]'s rules (an engine and the image).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use torpor::config::storage::StorageConfig;
use torpor::config::DriverKind;
use torpor::service::lifecycle::State;
use torpor_tests::docker::{images_ready, mariadb_image};
use torpor_tests::relocation::{moves_live_with_nothing_lost, wait_gone, wait_relocated};
use torpor_tests::serverless::{name, Managed};
use torpor_tests::{tcp_opts, APP_PASSWORD, APP_USER};

const MIB: u64 = 1 << 20;

/// Whether volumes can be made here; says why not when they cannot.
fn volumes_possible() -> bool {
    match torpor::storage::volume::possible() {
        Ok(()) => true,
        Err(why) => {
            eprintln!("skipped: {why}");
            false
        }
    }
}

/// A Torpor with one process service on a 384 MiB volume (step 256 MiB,
/// at most 896 MiB). Not smaller: a fresh datadir fills 156 MiB, and on
/// a 320 MiB volume (256 MiB of filesystem) that sat at the 60 %
/// threshold, so the volume's own thread sometimes grew it before a test
/// had looked at it. On drop, after Torpor stopped, whatever it left
/// mounted or attached is unmounted and detached: a failed test leaves
/// no loop device behind.
struct OnVolume {
    managed: Option<Managed>,
    datadir: PathBuf,
    devices: Vec<String>,
}

impl OnVolume {
    fn start(driver: DriverKind, service: &str) -> OnVolume {
        let managed = Managed::start(driver, service, |service, _| {
            service.storage = Some(StorageConfig {
                initial_mib: 384,
                step_mib: 256,
                max_mib: 896,
            });
        });
        let datadir = managed
            .state_dir
            .path()
            .join("services")
            .join(service)
            .join("data");
        let mut on = OnVolume {
            managed: Some(managed),
            devices: Vec::new(),
            datadir,
        };
        on.note_device();
        on
    }

    fn managed(&mut self) -> &mut Managed {
        self.managed.as_mut().expect("running")
    }

    /// Remembers the loop device under the datadir (for the cleanup) and
    /// returns it.
    fn note_device(&mut self) -> String {
        let device = mounted_source(&self.datadir)
            .unwrap_or_else(|| panic!("{} is not a mount", self.datadir.display()));
        assert!(device.starts_with("/dev/loop"), "mounted from {device}");
        if !self.devices.contains(&device) {
            self.devices.push(device.clone());
        }
        device
    }

    fn size(&self) -> u64 {
        torpor::storage::usage::of(&self.datadir)
            .expect("statvfs")
            .size
    }
}

impl Drop for OnVolume {
    fn drop(&mut self) {
        // Torpor first: its backend stops and its volume is released.
        drop(self.managed.take());
        if mounted_source(&self.datadir).is_some() {
            eprintln!("cleanup: {} was still mounted", self.datadir.display());
            let _ = Command::new("umount").arg("-l").arg(&self.datadir).status();
        }
        for device in &self.devices {
            let listed = Command::new("losetup")
                .arg(device)
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if listed {
                eprintln!("cleanup: {device} was still attached");
                let _ = Command::new("losetup").arg("-d").arg(device).status();
            }
        }
    }
}

/// The device mounted at `path`, from the mount table.
fn mounted_source(path: &Path) -> Option<String> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let wanted = path.to_str()?;
    table.lines().rev().find_map(|line| {
        let point = line.split(' ').nth(4)?;
        (point == wanted).then(|| {
            line.split(" - ")
                .nth(1)?
                .split(' ')
                .nth(1)
                .map(String::from)
        })?
    })
}

/// A metric's value for the service, e.g. `torpor_storage_grows_total`
/// with no further labels, or the storage gauge of one `kind`.
fn metric(managed: &Managed, name: &str, kind: Option<&str>) -> Option<f64> {
    let (status, text) = managed.get_text("/metrics");
    assert_eq!(status, 200);
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("metrics parse");
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && kind.is_none_or(|k| s.labels.get("kind") == Some(k)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

/// What the writer saw.
struct Written {
    /// Inserts that went through (256 rows of 4 KiB each).
    rows: u64,
    /// The error that stopped it, if one did.
    error: Option<mysql::Error>,
    /// The longest single insert, and the volume's size at the end of it.
    slowest: Duration,
    /// Sizes the volume was seen at between inserts, in order.
    sizes: Vec<u64>,
}

/// Inserts 1 MiB a statement through Torpor until an insert fails or
/// `stop`.
fn write_until_error(managed: &Managed, datadir: &Path, stop: &AtomicBool) -> Written {
    let opts = tcp_opts(managed.addr())
        .user(Some(APP_USER))
        .pass(Some(APP_PASSWORD))
        .db_name(Some("test"))
        // A server that waited for space forever would fail the test,
        // not hang it.
        .read_timeout(Some(Duration::from_secs(120)));
    let mut conn = mysql::Conn::new(opts).expect("writer connects");
    let mut written = Written {
        rows: 0,
        error: None,
        slowest: Duration::ZERO,
        sizes: Vec::new(),
    };
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        // 1 MiB a statement, in rows that fit their page: MariaDB 10.11
        // rolling back a 1 MiB BLOB row (overflow pages) on a full disk
        // needed new space to free them, and aborted ("[FATAL] InnoDB:
        // Error (Out of disk space) in rollback"; see the README).
        let inserted =
            conn.query_drop("INSERT INTO blobs (b) SELECT REPEAT('x', 4096) FROM seq_1_to_256");
        written.slowest = written.slowest.max(started.elapsed());
        if let Err(e) = inserted {
            written.error = Some(e);
            return written;
        }
        written.rows += 1;
        let size = torpor::storage::usage::of(datadir).expect("statvfs").size;
        if written.sizes.last() != Some(&size) {
            written.sizes.push(size);
        }
    }
    written
}

/// The volume grows while a client fills it, with no error, up to its
/// maximum; there the writer gets 1114 ("The table is full"), and other
/// sessions still answer. Torpor restarted finds the volume and its rows
/// again.
#[test]
fn a_volume_grows_under_writes_and_its_maximum_is_table_full() {
    if !volumes_possible() {
        return;
    }
    grows_under_writes(DriverKind::Process, &name("stor", "grow"));
}

/// The same with the docker driver: the volume is bind-mounted into the
/// container and grown on the host while the container writes.
#[test]
fn a_containers_volume_grows_under_writes_and_its_maximum_is_table_full() {
    if !volumes_possible() || images_ready(&[mariadb_image()]).is_none() {
        return;
    }
    grows_under_writes(DriverKind::Docker, &name("stor", "dock"));
}

fn grows_under_writes(driver: DriverKind, service: &str) {
    let mut on = OnVolume::start(driver, service);
    let first = on.size();
    assert!(
        (300 * MIB..=384 * MIB).contains(&first),
        "a 384 MiB volume's filesystem is {} MiB",
        first / MIB
    );
    {
        let mut conn = on.managed().connect();
        conn.query_drop("CREATE TABLE blobs (id INT AUTO_INCREMENT PRIMARY KEY, b VARCHAR(4096) NOT NULL) ENGINE=InnoDB")
            .expect("create");
        conn.query_drop("INSERT INTO blobs (b) VALUES (REPEAT('k', 1000))")
            .expect("insert");
    }
    // A restart of Torpor unmounts the volume and mounts it again (a
    // test's docker service is temporary: it would go with the restart).
    if driver == DriverKind::Process {
        on.managed().restart();
    }
    {
        let mut conn = on.managed().connect();
        let kept: Option<u64> = conn
            .query_first("SELECT COUNT(*) FROM blobs")
            .expect("count after the restart");
        assert_eq!(kept, Some(1));
    }
    on.managed()
        .wait_for(State::Active, Duration::from_secs(60));
    on.note_device();
    assert!(on.size() >= first, "the volume came back smaller");

    let stop = Arc::new(AtomicBool::new(false));
    let managed = on.managed.as_ref().expect("running");
    let datadir = on.datadir.clone();
    let written = std::thread::scope(|scope| {
        let writer = scope.spawn(|| write_until_error(managed, &datadir, &stop));
        let deadline = Instant::now() + Duration::from_secs(600);
        while !writer.is_finished() {
            if Instant::now() > deadline {
                stop.store(true, Ordering::Relaxed);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        writer.join().expect("writer")
    });
    let grows = metric(managed, "torpor_storage_grows_total", None);
    let size = metric(managed, "torpor_service_storage_bytes", Some("size")).unwrap_or(0.0);
    let used = metric(managed, "torpor_service_storage_bytes", Some("used")).unwrap_or(0.0);
    let (_, service_json) = managed.get(&format!("/services/{service}"));
    eprintln!(
        "{} inserts of 1 MiB; sizes seen {:?} MiB; slowest insert {:?}; grows {grows:?}; used {} of {} MiB; storage {}",
        written.rows,
        written.sizes.iter().map(|s| s / MIB).collect::<Vec<_>>(),
        written.slowest,
        used as u64 / MIB,
        size as u64 / MIB,
        service_json["scaling"]["storage"]
    );
    // The writer's only error is the server's own "table is full", and
    // it came at the maximum, after both grows.
    match &written.error {
        Some(mysql::Error::MySqlError(e)) => assert_eq!(e.code, 1114, "{e}"),
        other => panic!("the writer stopped on {other:?}"),
    }
    if driver == DriverKind::Docker {
        // The container sees the grown filesystem where its datadir is.
        let container = format!("torpor-{service}");
        let df = torpor_tests::docker::docker_ok(&[
            "exec",
            &container,
            "df",
            "-B1",
            "--output=size",
            "/var/lib/mysql",
        ]);
        let inside: u64 = df
            .lines()
            .filter_map(|line| line.trim().parse().ok())
            .next()
            .unwrap_or_else(|| panic!("df said {df}"));
        assert_eq!(inside, on.size(), "the container's datadir filesystem");
    }
    assert_eq!(grows, Some(2.0), "grows");
    assert!(
        written.sizes.len() >= 3,
        "the writer saw the volume at {:?}",
        written.sizes
    );
    // The image is at the maximum; its filesystem is smaller by XFS's log.
    let image = std::fs::metadata(on.datadir.with_extension("img"))
        .expect("the image")
        .len();
    assert_eq!(image, 896 * MIB, "the image at its maximum");
    let last = on.size();
    assert!(
        (764 * MIB..896 * MIB).contains(&last),
        "at its maximum the filesystem is {} MiB",
        last / MIB
    );
    assert!(size >= (700 * MIB) as f64 && used > 0.0, "{size} {used}");
    // Everything else still answers: another session reads, and a write
    // that needs no new space goes through.
    let mut other = on.managed().connect();
    let rows: Option<u64> = other
        .query_first("SELECT COUNT(*) FROM blobs")
        .expect("another session reads");
    assert_eq!(rows, Some(written.rows * 256 + 1));
    other
        .query_drop("DELETE FROM blobs WHERE id = 1")
        .expect("a delete");
    let one: Option<u64> = other.query_first("SELECT 1").expect("SELECT 1");
    assert_eq!(one, Some(1));
}

/// A service created through the admin API with `storage` gets its
/// volume, and deleting it with its data removes the volume: unmounted,
/// detached, its image gone.
#[test]
fn a_created_service_gets_a_volume_and_loses_it_with_its_data() {
    if !volumes_possible() {
        return;
    }
    let managed = Managed::start(DriverKind::Process, &name("stor", "host"), |_, _| {});
    let admin = managed.admin_addr().expect("admin API");
    let service = name("stor", "made");
    let body = serde_json::json!({
        "name": service,
        "driver": "process",
        "buffer_pool_mib": 32,
        "suspend_after_secs": 0,
        "storage": {"initial_mib": 300, "step_mib": 100, "max_mib": 400},
        "accounts": [{"name": "maker", "password_hash": "*14E65567ABDB5135D0CFD9A70B3032C179A49EE7"}],
    });
    let (status, created) = call(admin, "POST", "/services", Some(&body.to_string()));
    assert_eq!(status, 201, "{created}");
    let datadir = managed
        .state_dir
        .path()
        .join("services")
        .join(&service)
        .join("data");
    let deadline = Instant::now() + Duration::from_secs(120);
    let device = loop {
        let (_, view) = call(admin, "GET", &format!("/services/{service}"), None);
        if view["state"] == "active" {
            if let Some(device) = mounted_source(&datadir) {
                break device;
            }
        }
        assert!(
            Instant::now() < deadline,
            "never active on a volume: {view}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let _cleanup = Detach(device.clone());
    assert!(device.starts_with("/dev/loop"), "mounted from {device}");

    let deadline = Instant::now() + Duration::from_secs(60);
    let (status, deleted) = loop {
        let answer = call(
            admin,
            "DELETE",
            &format!("/services/{service}?data=drop"),
            None,
        );
        if answer.0 != 409 || Instant::now() > deadline {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(mounted_source(&datadir), None, "still mounted");
    assert!(!datadir.with_extension("img").exists(), "the image stays");
    assert!(
        !attached(&device, &datadir),
        "{device} still holds the image"
    );
}

/// Detaches a loop device at the end of a test, if it is still attached.
struct Detach(String);

impl Drop for Detach {
    fn drop(&mut self) {
        let listed = Command::new("losetup").arg(&self.0).output();
        if listed.is_ok_and(|o| o.status.success()) {
            let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
        }
    }
}

/// Whether `device` is attached to the image under `datadir`.
fn attached(device: &str, datadir: &Path) -> bool {
    Command::new("losetup").arg(device).output().is_ok_and(|o| {
        o.status.success()
            && String::from_utf8_lossy(&o.stdout)
                .contains(&*datadir.with_extension("img").to_string_lossy())
    })
}

fn call(
    admin: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, serde_json::Value) {
    torpor_tests::serverless::admin_call(admin, method, path, body)
}

/// A live service on a volume moves to a new process on a new volume of
/// its own (while writers commit, nothing lost: the relocation suite's
/// check); the old volume goes, and Torpor restarted mounts the new one.
#[test]
fn a_service_on_a_volume_moves_onto_a_new_volume() {
    if !volumes_possible() {
        return;
    }
    assert!(
        torpor::scaler::process::find_program(&["mariadb-backup", "mariabackup"]).is_some(),
        "mariadb-backup is not installed: install Debian's mariadb-backup (tests/run does)"
    );
    let service = name("stor", "move");
    let mut on = OnVolume::start(DriverKind::Process, &service);
    let old_image = on.datadir.with_extension("img");
    let moved = moves_live_with_nothing_lost(on.managed(), &service);
    eprintln!("{}", moved.figures());
    let placement =
        std::fs::read_to_string(on.datadir.with_extension("placement")).expect("placement");
    let new_datadir = PathBuf::from(placement.trim());
    let device = mounted_source(&new_datadir)
        .unwrap_or_else(|| panic!("{} is not a mount", new_datadir.display()));
    on.devices.push(device.clone());
    assert!(device.starts_with("/dev/loop"), "mounted from {device}");
    assert!(
        torpor::storage::volume::image_for(&new_datadir).exists(),
        "no image next to {}",
        new_datadir.display()
    );
    wait_gone("the old volume's image", Duration::from_secs(30), || {
        !old_image.exists()
    });
    assert_eq!(
        mounted_source(&on.datadir),
        None,
        "the old volume is mounted"
    );

    let commits: Option<u64> = on
        .managed()
        .connect()
        .query_first("SELECT COUNT(*) FROM test.commits")
        .expect("count");
    on.managed().restart();
    let after: Option<u64> = on
        .managed()
        .connect()
        .query_first("SELECT COUNT(*) FROM test.commits")
        .expect("count after a restart");
    assert_eq!(after, commits, "rows after the restart");
    let again = mounted_source(&new_datadir).expect("mounted again after the restart");
    if !on.devices.contains(&again) {
        on.devices.push(again);
    }
}

/// A parked service whose volume Torpor has not mounted since it started
/// (parked across a restart) moves at rest from its volume, not from the
/// empty folder under it, onto a new volume of its own.
#[test]
fn a_parked_service_moves_at_rest_from_its_volume() {
    if !volumes_possible() {
        return;
    }
    let service = name("stor", "rest");
    let mut on = OnVolume::start(DriverKind::Process, &service);
    {
        let mut conn = on.managed().connect();
        conn.query_drop("CREATE TABLE kept (id INT PRIMARY KEY)")
            .expect("create");
        conn.query_drop("INSERT INTO kept SELECT seq FROM seq_1_to_1000")
            .expect("insert");
    }
    on.managed().restart();
    assert_eq!(
        on.managed().state(),
        State::Parked,
        "a restart wakes nothing"
    );
    assert_eq!(mounted_source(&on.datadir), None, "mounted while parked");

    let (status, body) = on.managed().act(&service, "relocate");
    assert_eq!(status, 202, "{body}");
    let moved = wait_relocated(on.managed(), &service, Duration::from_secs(120));
    assert_eq!(moved["relocation"]["phase"], "moved", "{moved}");
    let placement =
        std::fs::read_to_string(on.datadir.with_extension("placement")).expect("placement");
    let new_datadir = PathBuf::from(placement.trim());
    assert!(
        torpor::storage::volume::image_for(&new_datadir).exists(),
        "no image next to {}",
        new_datadir.display()
    );
    let rows: Option<u64> = on
        .managed()
        .connect()
        .query_first("SELECT COUNT(*) FROM kept")
        .expect("count where it moved");
    assert_eq!(rows, Some(1000));
    let device = mounted_source(&new_datadir).expect("the new volume is mounted");
    on.devices.push(device);
}

/// A docker service without `[services.storage]` on the local engine:
/// the filesystem that holds its named volume is watched, as a process
/// service's datadir is, so its use and size reach the metrics and the
/// service's JSON (before, a docker service showed no storage at all).
#[test]
fn a_containers_named_volume_is_watched() {
    if images_ready(&[mariadb_image()]).is_none() {
        return;
    }
    let service = name("storage", "named");
    let managed = Managed::start(DriverKind::Docker, &service, |_, _| {});
    let volume = format!("torpor-{service}-data");
    let mountpoint =
        torpor_tests::docker::docker_ok(&["volume", "inspect", "-f", "{{.Mountpoint}}", &volume]);
    let filesystem = torpor::storage::usage::of(Path::new(mountpoint.trim())).expect("statvfs");
    let deadline = Instant::now() + Duration::from_secs(30);
    let size = loop {
        let size = metric(&managed, "torpor_service_storage_bytes", Some("size"));
        if let Some(size) = size.filter(|&s| s > 0.0) {
            break size;
        }
        assert!(
            Instant::now() < deadline,
            "no storage size for {service} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        size as u64, filesystem.size,
        "the size of the filesystem under {volume}"
    );
    let used = metric(&managed, "torpor_service_storage_bytes", Some("used")).unwrap_or(0.0);
    assert!(
        used > 0.0 && used as u64 <= filesystem.size,
        "used {used} of {}",
        filesystem.size
    );
    let (_, json) = managed.get(&format!("/services/{service}"));
    assert_eq!(
        json["scaling"]["storage"]["size_bytes"].as_u64(),
        Some(filesystem.size),
        "{json}"
    );
}
