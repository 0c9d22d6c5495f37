//! The `docker` driver against a real engine and the real
//! `torpor/mariadb:10.11` image: start (create, initialize, greet),
//! freeze and thaw (pause, unpause), stop and start (data kept, maybe a
//! new port), resize (engine limits), a container removed underneath
//! Torpor, and the errors a person must be able to act on.
//!
//! Container tests follow [`torpor_tests::docker`]'s rules: without an
//! engine or the image they pass with a note, unless
//! `TORPOR_REQUIRE_DOCKER=1`. Each test drives its own service under a
//! unique `torpor-test-…` prefix and destroys it (container and volume)
//! on drop, also when it fails. Lines starting with `timing:` on stderr
//! (`--nocapture`) say how long the engine took; nothing asserts on them.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use torpor::endpoint::Endpoint;
use torpor::scaler::docker::{engine_available, DockerDriver, DockerOptions};
use torpor::scaler::driver::{Driver, DriverError, Resources};
use torpor_tests::docker::{docker, docker_ok, images_ready, mariadb_image, unique_name};

const ADMIN_PASSWORD: &str = "admin-secret";

/// Whether the engine and the MariaDB image are here (see the module doc).
#[must_use]
fn ready() -> Option<()> {
    images_ready(&[mariadb_image()])
}

/// One service's driver under a unique prefix; destroyed on drop, with
/// the container's log printed first when the test is failing.
struct Service {
    driver: DockerDriver,
    container: String,
    volume: String,
}

impl Service {
    /// A driver for a fresh service named after `what`, after
    /// `configure` had its say on the options.
    fn new(what: &str, configure: impl FnOnce(&mut DockerOptions)) -> Service {
        let mut options = DockerOptions::new("svc", ADMIN_PASSWORD);
        options.image = mariadb_image();
        options.name_prefix = format!("{}-", unique_name(what));
        configure(&mut options);
        let container = options.container_name();
        let volume = options.volume_name();
        let driver = DockerDriver::new(options).expect("the docker driver starts");
        Service {
            driver,
            container,
            volume,
        }
    }

    /// `docker inspect --format` of the container.
    fn inspect(&self, format: &str) -> String {
        docker_ok(&["inspect", "--format", format, &self.container])
    }
}

impl Deref for Service {
    type Target = DockerDriver;
    fn deref(&self) -> &DockerDriver {
        &self.driver
    }
}

impl DerefMut for Service {
    fn deref_mut(&mut self) -> &mut DockerDriver {
        &mut self.driver
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(out) = docker(&["logs", "--tail", "60", &self.container]) {
                eprintln!(
                    "---- log of {} ----\n{}{}",
                    self.container,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        if let Err(e) = self.driver.destroy() {
            // The driver's own cleanup failed: the CLI's is the fallback,
            // so a failing test leaves nothing behind.
            eprintln!(
                "destroying {}: {e}; removing it with the CLI",
                self.container
            );
            let _ = docker(&["rm", "--force", "--volumes", &self.container]);
            let _ = docker(&["volume", "rm", "--force", &self.volume]);
        }
    }
}

/// Runs `step`, printing how long it took.
fn timed<T>(what: &str, step: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let result = step();
    eprintln!("timing: {what}: {} ms", started.elapsed().as_millis());
    result
}

/// A `mysql` crate connection as root with the admin password, which the
/// image's entrypoint gave `root@'%'`.
/// The TCP address a container is reached at (the Docker driver has no
/// other).
fn tcp(endpoint: Endpoint) -> SocketAddr {
    endpoint.tcp().expect("a container is reached over TCP")
}

fn root_connect(addr: SocketAddr) -> mysql::Conn {
    let opts = torpor_tests::tcp_opts(addr)
        .user(Some("root"))
        .pass(Some(ADMIN_PASSWORD));
    mysql::Conn::new(opts).unwrap_or_else(|e| panic!("cannot log in as root on {addr}: {e}"))
}

/// Creates `kept.t` with one row noting `note`.
fn write_row(addr: SocketAddr, note: &str) {
    let mut conn = root_connect(addr);
    conn.query_drop("CREATE DATABASE IF NOT EXISTS kept")
        .unwrap();
    conn.query_drop("CREATE TABLE kept.t (id INT PRIMARY KEY, note VARCHAR(40))")
        .unwrap();
    conn.exec_drop("INSERT INTO kept.t VALUES (1, ?)", (note,))
        .unwrap();
}

/// The note of `kept.t`'s row, read over `conn`.
fn read_row(conn: &mut mysql::Conn) -> Option<String> {
    conn.query_first("SELECT note FROM kept.t WHERE id = 1")
        .unwrap()
}

/// Whether a connection to `addr` gets a MySQL greeting within `limit`,
/// connecting included.
fn greets_within(addr: SocketAddr, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, limit) else {
        return false;
    };
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
        return false;
    }
    // 3-byte length, sequence id 0, then protocol version 10.
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).is_ok() && head[3] == 0 && head[4] == 10
}

/// Whether `result` is `DriverError::Gone`.
fn is_gone<T: std::fmt::Debug>(result: Result<T, DriverError>) -> bool {
    match result {
        Err(DriverError::Gone(_)) => true,
        other => {
            eprintln!("expected Gone, got {other:?}");
            false
        }
    }
}

#[test]
fn a_frozen_container_greets_no_one_and_thaws_with_its_data() {
    if ready().is_none() {
        return;
    }
    let mut service = Service::new("freeze", |_| {});
    let addr = timed("first start (create, initialize the volume, greet)", || {
        tcp(service.start().expect("start"))
    });
    assert_eq!(service.kind(), "docker");
    let access = service.admin_access().expect("admin access once started");
    assert_eq!((access.address, access.user.as_str()), (addr, "root"));
    assert_eq!(access.password, ADMIN_PASSWORD);
    // Started twice is started once: same address, same container.
    assert_eq!(tcp(service.start().expect("start again")), addr);

    write_row(addr, "before freeze");
    let mut conn = root_connect(addr);
    assert!(greets_within(addr, Duration::from_secs(5)));

    timed("freeze (pause)", || service.freeze().expect("freeze"));
    assert!(
        !greets_within(addr, Duration::from_millis(300)),
        "a frozen server greeted"
    );
    assert!(
        service.describe().contains("(paused)"),
        "{}",
        service.describe()
    );
    // Freezing a frozen backend is not an error.
    service.freeze().expect("freeze again");

    let thawed = timed("thaw (unpause until a handshake)", || {
        tcp(service.thaw().expect("thaw"))
    });
    assert_eq!(thawed, addr, "a pause keeps the published port");
    // The connection opened before the freeze lives on, and new ones work.
    assert_eq!(read_row(&mut conn).as_deref(), Some("before freeze"));
    assert_eq!(
        read_row(&mut root_connect(thawed)).as_deref(),
        Some("before freeze")
    );
    assert!(
        service.describe().contains("(running)"),
        "{}",
        service.describe()
    );
}

#[test]
fn a_stopped_container_starts_again_with_its_data() {
    if ready().is_none() {
        return;
    }
    let mut service = Service::new("stop", |_| {});
    let addr = tcp(service.start().expect("start"));
    write_row(addr, "before stop");
    let id = service.inspect("{{.Id}}");

    // Parking a suspended service: stop works on a frozen container.
    service.freeze().expect("freeze");
    timed("stop a frozen container (unpause, SIGTERM)", || {
        service.stop().expect("stop")
    });
    assert!(service.admin_access().is_none(), "no address while stopped");
    assert_eq!(
        service.inspect("{{.State.Status}} {{.State.ExitCode}}"),
        "exited 0",
        "mariadbd did not shut down cleanly"
    );
    // Stopping a stopped backend is not an error.
    service.stop().expect("stop again");

    let again = timed("start a stopped container (greet)", || {
        tcp(service.start().expect("start after stop"))
    });
    eprintln!("address before the stop {addr}, after {again}");
    assert_eq!(service.inspect("{{.Id}}"), id, "the container was replaced");
    assert_eq!(
        read_row(&mut root_connect(again)).as_deref(),
        Some("before stop")
    );

    timed("stop a running container (SIGTERM)", || {
        service.stop().expect("stop running")
    });
    let third = tcp(service.start().expect("start after the second stop"));
    assert_eq!(
        read_row(&mut root_connect(third)).as_deref(),
        Some("before stop")
    );
}

#[test]
fn resize_sets_the_engine_limits() {
    if ready().is_none() {
        return;
    }
    let mut service = Service::new("resize", |options| {
        options.resources = Resources {
            cpus: 1.0,
            memory_mib: 1024,
        };
    });
    let addr = tcp(service.start().expect("start"));
    let limits = "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}} {{.HostConfig.MemorySwap}}";
    assert_eq!(service.inspect(limits), "1000000000 1073741824 1073741824");

    timed("resize", || {
        service
            .resize(Resources {
                cpus: 0.5,
                memory_mib: 512,
            })
            .expect("resize")
    });
    assert_eq!(service.inspect(limits), "500000000 536870912 536870912");
    // The server lives on under its new limits.
    let mut conn = root_connect(addr);
    let one: Option<i64> = conn.query_first("SELECT 1").unwrap();
    assert_eq!(one, Some(1));

    // Less memory than mariadbd holds: refused, old limits kept, and the
    // server not killed for it (cgroup v2 would OOM-kill rather than
    // refuse, so the driver checks first).
    let tiny = Resources {
        cpus: 0.5,
        memory_mib: 16,
    };
    match timed("resize below the working set", || service.resize(tiny)) {
        Err(DriverError::Failed(message)) => eprintln!("the error reads: {message}"),
        other => panic!("expected Failed, got {other:?}"),
    }
    assert_eq!(service.inspect(limits), "500000000 536870912 536870912");
    let one: Option<i64> = conn.query_first("SELECT 1").unwrap();
    assert_eq!(one, Some(1));
}

/// The usage the autoscaler samples, read from the container's cgroup:
/// CPU time that grows by what a busy query burns, the server's memory,
/// and the limits a resize set, read back from the kernel.
#[test]
fn usage_reads_the_containers_cgroup_and_follows_a_resize() {
    if ready().is_none() {
        return;
    }
    let mut service = Service::new("usage", |options| {
        options.resources = Resources {
            cpus: 1.0,
            memory_mib: 1024,
        };
    });
    let addr = tcp(service.start().expect("start"));
    let before = service.usage().expect("usage of a running container");
    assert_eq!(before.cpu_limit, Some(1.0), "{before:?}");
    assert_eq!(before.memory_limit_bytes, Some(1024 * 1024 * 1024));
    assert!(
        before.working_set_bytes > 20 * 1024 * 1024
            && before.working_set_bytes <= before.memory_bytes,
        "mariadbd holds tens of MiB: {before:?}"
    );

    // A second or two of one CPU, burnt inside the container.
    let mut conn = root_connect(addr);
    let started = Instant::now();
    let _: Option<i64> = conn
        .query_first("SELECT BENCHMARK(5000000, MD5('torpor'))")
        .unwrap();
    let wall = started.elapsed();
    let after = service.usage().expect("usage after the query");
    let burnt = Duration::from_nanos(after.cpu_nanos - before.cpu_nanos);
    eprintln!("timing: BENCHMARK took {wall:?} of wall time and {burnt:?} of CPU");
    // At least what five million MD5s take on any machine; at most what
    // one CPU (its limit) gives in that wall time: a count of the host's
    // CPU, or of another cgroup, would fail one or the other.
    assert!(
        burnt >= Duration::from_millis(300) && burnt <= wall + Duration::from_millis(300),
        "the cgroup counted {burnt:?} of CPU for a {wall:?} query"
    );

    service
        .resize(Resources {
            cpus: 0.5,
            memory_mib: 768,
        })
        .expect("resize");
    let resized = service.usage().expect("usage after the resize");
    assert_eq!(resized.cpu_limit, Some(0.5), "{resized:?}");
    assert_eq!(resized.memory_limit_bytes, Some(768 * 1024 * 1024));

    // Frozen, it reads still (and burns nothing).
    service.freeze().expect("freeze");
    let frozen = service.usage().expect("usage of a frozen container");
    std::thread::sleep(Duration::from_millis(300));
    let still = service.usage().expect("usage again");
    assert_eq!(
        frozen.cpu_nanos, still.cpu_nanos,
        "a frozen container burns no CPU"
    );
    service.stop().expect("stop");
    assert!(service.usage().is_err(), "a stopped container has no usage");
}

#[test]
fn a_container_removed_underneath_is_gone_and_start_creates_it_again() {
    if ready().is_none() {
        return;
    }
    let mut service = Service::new("removed", |_| {});
    let addr = tcp(service.start().expect("start"));
    write_row(addr, "before removal");

    docker_ok(&["rm", "--force", &service.container]);
    assert!(is_gone(service.freeze()), "freeze");
    assert!(is_gone(service.thaw()), "thaw");
    assert!(is_gone(service.stop()), "stop");
    assert!(
        service.describe().contains("not created"),
        "{}",
        service.describe()
    );

    // The named volume outlived its container: the new one has the data.
    let again = timed(
        "start after the container was removed (volume kept)",
        || tcp(service.start().expect("start after removal")),
    );
    assert_eq!(
        read_row(&mut root_connect(again)).as_deref(),
        Some("before removal")
    );

    // Container and volume both gone: a new volume initializes itself.
    docker_ok(&["rm", "--force", &service.container]);
    docker_ok(&["volume", "rm", &service.volume]);
    let fresh = timed("start after container and volume were removed", || {
        tcp(service.start().expect("start from nothing"))
    });
    let mut conn = root_connect(fresh);
    let tables: Option<i64> = conn
        .query_first("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'kept'")
        .unwrap();
    assert_eq!(tables, Some(0), "a new volume has no old tables");
}

#[test]
fn a_missing_image_is_an_error_that_says_how_to_build_it() {
    if ready().is_none() {
        return;
    }
    let mut service = Service::new("noimage", |options| {
        options.image = "torpor-test/no-such-image:0".into();
    });
    match service.start() {
        Err(DriverError::Failed(message)) => {
            eprintln!("the error reads: {message}");
            assert!(message.contains("docker/mariadb/build.sh"), "{message}");
            assert!(message.contains("no-such-image"), "{message}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    assert!(
        !docker(&["inspect", &service.container]).is_some_and(|out| out.status.success()),
        "a container was created anyway"
    );
}

#[test]
fn a_container_that_dies_while_starting_fails_fast_with_its_log() {
    if ready().is_none() {
        return;
    }
    // No root password: the image's entrypoint refuses to initialize.
    let mut service = Service::new("dies", |options| {
        options.admin_password = String::new();
    });
    let started = Instant::now();
    match service.start() {
        Err(DriverError::Failed(message)) => {
            eprintln!("the error reads: {message}");
            assert!(message.contains("MARIADB_ROOT_PASSWORD"), "{message}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    // Fast: well before the two-minute ready timeout.
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_container_of_that_name_not_made_by_torpor_is_left_alone() {
    if ready().is_none() {
        return;
    }
    let mut service = Service::new("stranger", |_| {});
    // Created, never started: someone else's container with our name.
    docker_ok(&["create", "--name", &service.container, &mariadb_image()]);
    match service.start() {
        Err(DriverError::Failed(message)) => {
            eprintln!("the error reads: {message}");
            assert!(message.contains("not Torpor's"), "{message}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    assert!(service.destroy().is_err(), "destroy removed a stranger");
    // Cleaned up by hand: the guard's destroy would refuse it too.
    docker_ok(&["rm", "--force", "--volumes", &service.container]);
}

#[test]
fn the_engine_is_available_where_docker_answers() {
    if ready().is_none() {
        return;
    }
    assert!(engine_available());
}
