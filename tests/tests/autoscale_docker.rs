//! Vertical autoscaling of a live MariaDB container: a busy client makes
//! the service grow (CPU and memory, buffer pool in proportion), idleness
//! makes it shrink back, an operator can resize it by the admin API, and
//! the client never sees an error meanwhile. Real Docker, the real
//! `torpor/mariadb` image (see `scale_to_zero_docker.rs` for the rules
//! when the engine is missing).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use serde_json::Value;
use torpor::config::autoscale::AutoscaleConfig;
use torpor::config::DriverKind;
use torpor_tests::docker::{docker_ok, images_ready, mariadb_image};
use torpor_tests::serverless::{name, Managed};

const MIB: u64 = 1024 * 1024;

fn engine_and_image() -> bool {
    images_ready(&[mariadb_image()]).is_some()
}

/// The container's CPU (nano-CPUs) and memory limits, as the engine has
/// them.
fn limits(container: &str) -> (u64, u64) {
    let text = docker_ok(&[
        "inspect",
        "--format",
        "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}}",
        container,
    ]);
    let mut words = text.split_whitespace().map(|w| w.parse::<u64>().unwrap());
    (words.next().unwrap(), words.next().unwrap())
}

/// Waits until the container's limits are `want`; panics after `limit`.
fn wait_for_limits(container: &str, want: (u64, u64), limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let have = limits(container);
        if have == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "limits still {have:?} after {limit:?}, expected {want:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The buffer pool size the server itself reports.
fn buffer_pool(conn: &mut mysql::Conn) -> u64 {
    conn.query_first("SELECT @@innodb_buffer_pool_size")
        .unwrap()
        .unwrap()
}

fn scaling(managed: &Managed, service: &str) -> Value {
    let (status, body) = managed.get(&format!("/services/{service}"));
    assert_eq!(status, 200, "{body}");
    body["scaling"].clone()
}

/// The admin API's view once it lists `count` resizes (the engine's
/// limits change before the buffer pool follows and the resize is
/// recorded).
fn after_resizes(managed: &Managed, service: &str, count: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let view = scaling(managed, service);
        if view["recent"].as_array().is_some_and(|r| r.len() >= count) {
            return view;
        }
        assert!(
            Instant::now() < deadline,
            "{count} resizes not recorded: {view}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_busy_service_grows_and_an_idle_one_shrinks_back() {
    if !engine_and_image() {
        return;
    }
    let service = name("dock", "autoscale");
    let container = format!("torpor-{service}");
    let managed = Managed::start(DriverKind::Docker, &service, |service, _| {
        service.cpus = 0.5;
        service.memory_mib = 512;
        service.buffer_pool_mib = 128;
        service.autoscale = Some(AutoscaleConfig {
            min_cpus: 0.5,
            max_cpus: 1.0,
            min_memory_mib: 512,
            max_memory_mib: 768,
            cpu_step: 0.5,
            memory_step_mib: 256,
            scale_up_after_ms: 1000,
            scale_down_after_secs: 3,
            ..AutoscaleConfig::default()
        });
    });
    assert_eq!(limits(&container), (500_000_000, 512 * MIB));
    let mut observer = managed.connect();
    assert_eq!(buffer_pool(&mut observer), 128 * MIB);

    // A client that keeps its half CPU busy, counting its errors.
    let busy = Arc::new(AtomicBool::new(true));
    let errors = Arc::new(AtomicU64::new(0));
    let queries = Arc::new(AtomicU64::new(0));
    let worker = {
        let (busy, errors, queries) = (busy.clone(), errors.clone(), queries.clone());
        let mut conn = managed.connect();
        std::thread::spawn(move || {
            while busy.load(Ordering::Relaxed) {
                match conn.query_drop("SELECT BENCHMARK(300000, MD5('autoscale'))") {
                    Ok(()) => queries.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("client error: {e}");
                        errors.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        })
    };
    let up = wait_for_limits(
        &container,
        (1_000_000_000, 768 * MIB),
        Duration::from_secs(30),
    );
    eprintln!("timing: load to scaled up: {up:?}");
    let view = after_resizes(&managed, &service, 1);
    let last = view["recent"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["reason"]["kind"], "cpu_high", "{view}");
    assert_eq!(last["error"], Value::Null, "{view}");
    assert_eq!(view["resources"]["cpus"], 1.0);
    // The buffer pool keeps its quarter of memory: 192 MiB of 768.
    assert_eq!(buffer_pool(&mut observer), 192 * MIB, "{view}");

    busy.store(false, Ordering::Relaxed);
    worker.join().unwrap();
    let down = wait_for_limits(
        &container,
        (500_000_000, 512 * MIB),
        Duration::from_secs(30),
    );
    eprintln!("timing: idle to scaled down: {down:?}");
    let view = after_resizes(&managed, &service, 2);
    assert_eq!(buffer_pool(&mut observer), 128 * MIB, "{view}");
    let last = view["recent"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["reason"]["kind"], "cpu_low", "{view}");
    assert!(
        view["usage"]["working_set_bytes"].as_u64().unwrap() > 0,
        "{view}"
    );

    assert_eq!(errors.load(Ordering::Relaxed), 0, "the client saw errors");
    assert!(queries.load(Ordering::Relaxed) > 0);

    // An operator's fixed size, with autoscaling off: it stays.
    let (status, body) = managed.act(&service, "resize?cpus=0.75&autoscale=off");
    assert_eq!(status, 200, "{body}");
    assert_eq!(limits(&container), (750_000_000, 512 * MIB));
    assert_eq!(body["scaling"]["autoscale"], false);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        limits(&container),
        (750_000_000, 512 * MIB),
        "autoscaling is off"
    );
    let one: Option<i64> = observer.query_first("SELECT 1").unwrap();
    assert_eq!(one, Some(1));

    // Metrics count each resize by direction and reason, and show the
    // limits now.
    let admin = managed.admin_addr().expect("admin API");
    let metrics = ureq::get(&format!("http://{admin}/metrics"))
        .call()
        .expect("GET /metrics")
        .body_mut()
        .read_to_string()
        .expect("metrics text");
    for line in [
        "direction=\"up\",reason=\"cpu_high\"",
        "direction=\"down\",reason=\"cpu_low\"",
        "direction=\"up\",reason=\"operator\"",
    ] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("torpor_resizes_total")
                    && l.contains(line)
                    && l.ends_with(" 1")),
            "no torpor_resizes_total with {line} at 1 in:\n{metrics}"
        );
    }
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("torpor_service_cpus_limit") && l.ends_with(" 0.75")),
        "{metrics}"
    );

    // Nonsense is refused with a reason, and changes nothing.
    let (status, body) = managed.act(&service, "resize?cpus=-1");
    assert_eq!(status, 400, "{body}");
    let (status, body) = managed.act(&service, "resize");
    assert_eq!(status, 400, "{body}");
}
