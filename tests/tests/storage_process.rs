//! Storage that grows, with the `process` driver: the service's datadir
//! is an XFS volume of its own (an image on a loop device) that Torpor
//! grows while a client writes, up to its maximum, where the writer gets
//! MariaDB's own "table is full" and everything else goes on.
//!
//! Needs root and loop devices (and xfsprogs, which tests/run installs);
//! elsewhere the tests say why and pass without running.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use torpor::config::storage::StorageConfig;
use torpor::config::DriverKind;
use torpor::service::lifecycle::State;
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

/// A Torpor with one process service on a 320 MiB volume (step 256 MiB,
/// at most 832 MiB). On drop, after Torpor stopped, whatever it left
/// mounted or attached is unmounted and detached: a failed test leaves
/// no loop device behind.
struct OnVolume {
    managed: Option<Managed>,
    datadir: PathBuf,
    devices: Vec<String>,
}

impl OnVolume {
    fn start(service: &str) -> OnVolume {
        let managed = Managed::start(DriverKind::Process, service, |service, _| {
            service.storage = Some(StorageConfig {
                initial_mib: 320,
                step_mib: 256,
                max_mib: 832,
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
    rows: u64,
    /// The error that stopped it.
    error: mysql::Error,
    /// The longest single insert, and the volume's size at the end of it.
    slowest: Duration,
    /// Sizes the volume was seen at between inserts, in order.
    sizes: Vec<u64>,
}

/// Inserts 1 MiB rows through Torpor until an insert fails.
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
        error: mysql::Error::DriverError(mysql::DriverError::ConnectTimeout),
        slowest: Duration::ZERO,
        sizes: Vec::new(),
    };
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let inserted = conn.query_drop("INSERT INTO blobs (b) VALUES (REPEAT('x', 1048576))");
        written.slowest = written.slowest.max(started.elapsed());
        if let Err(e) = inserted {
            written.error = e;
            return written;
        }
        written.rows += 1;
        let size = torpor::storage::usage::of(datadir).expect("statvfs").size;
        if written.sizes.last() != Some(&size) {
            written.sizes.push(size);
        }
    }
    panic!("the writer was stopped before an insert failed");
}

/// The volume grows while a client fills it, with no error, up to its
/// maximum; there the writer gets 1114 ("The table is full"), and other
/// sessions (and the writer's own) still answer. Torpor restarted finds
/// the volume and its rows again.
#[test]
fn a_volume_grows_under_writes_and_its_maximum_is_table_full() {
    if !volumes_possible() {
        return;
    }
    let service = name("stor", "grow");
    let mut on = OnVolume::start(&service);
    let first = on.size();
    assert!(
        (250 * MIB..=320 * MIB).contains(&first),
        "a 320 MiB volume's filesystem is {} MiB",
        first / MIB
    );
    {
        let mut conn = on.managed().connect();
        conn.query_drop("CREATE TABLE blobs (id INT AUTO_INCREMENT PRIMARY KEY, b LONGBLOB NOT NULL) ENGINE=InnoDB")
            .expect("create");
        conn.query_drop("INSERT INTO blobs (b) VALUES (REPEAT('k', 1000))")
            .expect("insert");
    }
    // A restart of Torpor unmounts the volume and mounts it again.
    on.managed().restart();
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
        "{} rows of 1 MiB; sizes seen {:?} MiB; slowest insert {:?}; grows {grows:?}; used {} of {} MiB; storage {}",
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
        mysql::Error::MySqlError(e) => assert_eq!(e.code, 1114, "{e}"),
        other => panic!("the writer stopped on {other}"),
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
    assert_eq!(image, 832 * MIB, "the image at its maximum");
    let last = on.size();
    assert!(
        (700 * MIB..832 * MIB).contains(&last),
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
    assert_eq!(rows, Some(written.rows + 1));
    other
        .query_drop("DELETE FROM blobs WHERE id = 1")
        .expect("a delete");
    let one: Option<u64> = other.query_first("SELECT 1").expect("SELECT 1");
    assert_eq!(one, Some(1));
}
