//! Real containers from the images in `docker/`: `torpor/mariadb:10.11`
//! (docker/mariadb/build.sh) initializes its datadir and accounts from
//! the environment, and `torpor/torpor:dev` (docker/torpor/build.sh) in
//! front of it serves the real `mariadb` client and logs the io driver it
//! runs — io_uring where seccomp allows it, epoll under a profile that
//! refuses `io_uring_setup`.
//!
//! The tests run wherever a Docker engine answers, under the rules of
//! [`torpor_tests::docker`] (`TORPOR_REQUIRE_DOCKER=1` turns a missing
//! engine or image into a failure). Every container and network they
//! create is named `torpor-test-…` and removed on drop, also when a test
//! fails.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use torpor_tests::docker::{docker, docker_ok, mariadb_image, torpor_image, unique_name};
use torpor_tests::require_program;

const APP_USER: &str = "app";
const APP_PASSWORD: &str = "app-secret";
const ROOT_PASSWORD: &str = "root-secret";
const DATABASE: &str = "appdb";
/// Workers Torpor runs in its container: each logs its driver.
const WORKERS: usize = 2;

fn docker_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../docker"))
}

/// `Some(())` when the engine answers and both images exist; otherwise
/// `None` with a note (or a failure under `TORPOR_REQUIRE_DOCKER=1`).
#[must_use]
fn images_ready() -> Option<()> {
    torpor_tests::docker::images_ready(&[mariadb_image(), torpor_image()])
}

/// A user-defined network, removed on drop. Containers on it find each
/// other by name, as in a compose file.
struct Network {
    name: String,
}

impl Network {
    fn create() -> Network {
        let name = unique_name("net");
        docker_ok(&["network", "create", &name]);
        Network { name }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // Containers go first (they are declared after the network, so
        // they drop before it); a failure here is only a leak, reported.
        if let Some(out) = docker(&["network", "rm", &self.name]) {
            if !out.status.success() {
                eprintln!(
                    "cannot remove network {}: {}",
                    self.name,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
    }
}

/// A container, removed with its anonymous volumes on drop; its log is
/// printed first when the test is failing.
struct Container {
    name: String,
}

impl Container {
    /// `docker run --detach` with `options` before the image and `args`
    /// after it.
    fn run(what: &str, options: &[&str], image: &str, args: &[&str]) -> Container {
        let name = unique_name(what);
        // The guard exists before the container does: a `docker run` that
        // created the container and then failed to start it still leaves
        // something to remove.
        let container = Container { name };
        let mut command = vec!["run", "--detach", "--name", &container.name];
        command.extend_from_slice(options);
        command.push(image);
        command.extend_from_slice(args);
        docker_ok(&command);
        container
    }

    /// Where the host reaches the container's `port`, published on
    /// loopback with an ephemeral host port.
    fn published(&self, port: u16) -> SocketAddr {
        let out = docker_ok(&["port", &self.name, &format!("{port}/tcp")]);
        out.lines()
            .find_map(|line| line.trim().parse().ok())
            .unwrap_or_else(|| panic!("{}: no published address in {out:?}", self.name))
    }

    /// Everything the container wrote to stdout and stderr.
    fn logs(&self) -> String {
        let out = docker(&["logs", &self.name]).expect("docker runs");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    fn running(&self) -> bool {
        docker(&["inspect", "--format", "{{.State.Running}}", &self.name])
            .is_some_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "true")
    }

    /// Waits until the server on the published `port` sends a MySQL
    /// greeting. A running container is not a ready server: Docker's
    /// port proxy accepts connections before anything listens, and the
    /// MariaDB image runs a private server while it initializes.
    fn wait_for_greeting(&self, port: u16, timeout: Duration) -> SocketAddr {
        let addr = self.published(port);
        let deadline = Instant::now() + timeout;
        loop {
            if greets(addr) {
                return addr;
            }
            // The guards print every container's log when a test fails.
            assert!(self.running(), "{} stopped before serving", self.name);
            assert!(
                Instant::now() < deadline,
                "{} sent no MySQL greeting on {addr} within {timeout:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits for the container to exit; its exit code.
    fn wait_exit(&self) -> i32 {
        docker_ok(&["wait", &self.name])
            .parse()
            .expect("docker wait prints the exit code")
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- log of {} ----\n{}", self.name, self.logs());
        }
        // -v: the datadir volume goes with the container.
        if let Some(out) = docker(&["rm", "--force", "--volumes", &self.name]) {
            if !out.status.success() {
                eprintln!(
                    "cannot remove container {}: {}",
                    self.name,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
    }
}

/// Whether `addr` answers a connection with a protocol-10 greeting.
fn greets(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    // 3-byte length, sequence id 0, then the protocol version.
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).is_ok() && head[3] == 0 && head[4] == 10
}

/// A MariaDB container from the image, on `network` as `mariadb` (the
/// backend address of Torpor's default configuration), with the app
/// account and database; returned once it serves.
fn start_mariadb(network: &Network) -> (Container, SocketAddr) {
    let env = [
        format!("MARIADB_ROOT_PASSWORD={ROOT_PASSWORD}"),
        format!("MARIADB_DATABASE={DATABASE}"),
        format!("MARIADB_USER={APP_USER}"),
        format!("MARIADB_PASSWORD={APP_PASSWORD}"),
    ];
    let mut options = vec![
        "--network",
        &network.name,
        "--network-alias",
        "mariadb",
        "--publish",
        "127.0.0.1::3306",
    ];
    for var in &env {
        options.extend_from_slice(&["--env", var]);
    }
    let db = Container::run("mariadb", &options, &mariadb_image(), &[]);
    let addr = db.wait_for_greeting(3306, Duration::from_secs(120));
    (db, addr)
}

/// A Torpor container from the image on `network`, with its default
/// configuration file plus the app account, JSON logs and a fixed worker
/// count; `seccomp` names a profile in `docker/`, or `None` for the
/// engine's default. Returned once it greets (which takes a reachable
/// backend: the greeting carries the backend's version).
fn start_torpor(network: &Network, seccomp: Option<&str>) -> (Container, SocketAddr) {
    let profile = seccomp.map(|file| {
        let path = docker_dir().join(file);
        assert!(path.is_file(), "missing seccomp profile {}", path.display());
        format!("seccomp={}", path.display())
    });
    let mut options = Vec::new();
    if let Some(profile) = &profile {
        options.extend_from_slice(&["--security-opt", profile.as_str()]);
    }
    start_torpor_with(network, &options, &[])
}

/// [`start_torpor`] with more `docker run` options and Torpor flags.
fn start_torpor_with(network: &Network, more: &[&str], flags: &[&str]) -> (Container, SocketAddr) {
    let mut options = vec!["--network", &network.name, "--publish", "127.0.0.1::6033"];
    options.extend_from_slice(more);
    let user = format!("{APP_USER}:{APP_PASSWORD}");
    let workers = WORKERS.to_string();
    let mut args = vec![
        "--user",
        &user,
        "--log-format",
        "json",
        "--workers",
        &workers,
    ];
    args.extend_from_slice(flags);
    let torpor = Container::run("torpor", &options, &torpor_image(), &args);
    let addr = torpor.wait_for_greeting(6033, Duration::from_secs(30));
    (torpor, addr)
}

/// Runs the real `mariadb` client against `addr` as the app user, in
/// its database; its stdout, or a failure with its stderr.
fn mariadb_cli(addr: SocketAddr, sql: &str) -> String {
    mariadb_cli_as(addr, APP_USER, APP_PASSWORD, DATABASE, sql)
}

/// Runs the real `mariadb` client against `addr` as `user`; its stdout,
/// or a failure with its stderr. Reads no option file.
fn mariadb_cli_as(
    addr: SocketAddr,
    user: &str,
    password: &str,
    database: &str,
    sql: &str,
) -> String {
    let program = require_program("mariadb", "mariadb-client");
    let out = Command::new(program)
        .arg("--no-defaults")
        .arg("--protocol=TCP")
        .arg(format!("--host={}", addr.ip()))
        .arg(format!("--port={}", addr.port()))
        .arg(format!("--user={user}"))
        .arg(format!("--password={password}"))
        .arg(format!("--database={database}"))
        .args(["--batch", "--skip-column-names", "--execute", sql])
        .output()
        .expect("the mariadb client runs");
    assert!(
        out.status.success(),
        "mariadb client as {user} against {addr} failed on {sql:?}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The io driver each worker logged ("worker started" lines of the JSON
/// log), in log order.
fn worker_drivers(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|entry| entry["fields"]["message"] == "worker started")
        .map(|entry| {
            entry["fields"]["driver"]
                .as_str()
                .unwrap_or("(none)")
                .to_string()
        })
        .collect()
}

/// Logs in through Torpor with the real client, writes and reads a row,
/// and checks the session is Torpor's (its connection ids start at
/// 2^24) on the MariaDB image's server.
fn check_queries_through(torpor: SocketAddr, table: &str) {
    let out = mariadb_cli(
        torpor,
        &format!(
            "CREATE TABLE {table} (id INT PRIMARY KEY, note VARCHAR(20));
             INSERT INTO {table} VALUES (1, 'through torpor');
             SELECT note FROM {table} WHERE id = 1;
             SELECT CONNECTION_ID() >= 16777216, CURRENT_USER(), VERSION() LIKE '%MariaDB%';"
        ),
    );
    assert_eq!(
        out,
        format!("through torpor\n1\t{APP_USER}@%\t1\n"),
        "unexpected client output"
    );
}

/// Whether this host's kernel lets a process set up an io_uring (it may
/// be compiled out or disabled by sysctl), so a container allowed to use
/// it by seccomp should run io_uring workers.
fn host_allows_io_uring() -> bool {
    // struct io_uring_params is 120 bytes; all zero asks for defaults.
    let mut params = [0u64; 15];
    // SAFETY: io_uring_setup reads and writes only the params struct we
    // pass, which is large enough; the returned fd is closed right away.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
    if fd < 0 {
        return false;
    }
    // SAFETY: fd is a descriptor this function just opened and owns.
    unsafe { libc::close(fd as libc::c_int) };
    true
}

#[test]
fn mariadb_image_initializes_accounts_from_the_environment() {
    if images_ready().is_none() {
        return;
    }
    let network = Network::create();
    let (_db, addr) = start_mariadb(&network);
    // The app account reaches its database on the network address.
    let out = mariadb_cli(addr, "SELECT CURRENT_USER(), DATABASE(), @@bind_address");
    assert_eq!(out, format!("{APP_USER}@%\t{DATABASE}\t0.0.0.0\n"));
    // Root has its password from anywhere; the accounts are exactly these
    // (no anonymous or build-host ones), app's with the plugin Torpor
    // logs in with.
    let out = mariadb_cli_as(
        addr,
        "root",
        ROOT_PASSWORD,
        "mysql",
        "SELECT user, host, plugin FROM mysql.user ORDER BY user, host",
    );
    assert_eq!(
        out,
        format!(
            "{APP_USER}\t%\tmysql_native_password\n\
             mariadb.sys\tlocalhost\tmysql_native_password\n\
             mysql\tlocalhost\tunix_socket\n\
             root\t%\tmysql_native_password\n\
             root\tlocalhost\tmysql_native_password\n"
        )
    );
}

#[test]
fn mariadb_image_refuses_to_initialize_without_a_root_password() {
    if images_ready().is_none() {
        return;
    }
    let db = Container::run("mariadb-no-root", &[], &mariadb_image(), &[]);
    let code = db.wait_exit();
    let logs = db.logs();
    assert_ne!(code, 0, "started without a root password:\n{logs}");
    assert!(
        logs.contains("MARIADB_ROOT_PASSWORD"),
        "the error does not name the variable:\n{logs}"
    );
}

#[test]
fn torpor_image_serves_the_mariadb_client_and_logs_its_io_driver() {
    if images_ready().is_none() {
        return;
    }
    let network = Network::create();
    let (_db, _) = start_mariadb(&network);
    let (torpor, addr) = start_torpor(&network, None);
    check_queries_through(addr, "smoke_default_seccomp");
    let drivers = worker_drivers(&torpor.logs());
    assert_eq!(drivers.len(), WORKERS, "workers logged: {drivers:?}");
    // Which one depends on the engine: Docker 25 and later refuse
    // io_uring in their default profile, older ones allow it.
    assert!(
        drivers.iter().all(|d| d == "io_uring" || d == "epoll"),
        "unknown drivers: {drivers:?}"
    );
    eprintln!("Torpor under the engine's default seccomp profile runs {drivers:?}");
}

#[test]
fn torpor_image_falls_back_to_epoll_when_seccomp_refuses_io_uring() {
    if images_ready().is_none() {
        return;
    }
    let network = Network::create();
    let (_db, _) = start_mariadb(&network);
    let (torpor, addr) = start_torpor(&network, Some("seccomp-no-io-uring.json"));
    check_queries_through(addr, "smoke_no_io_uring");
    assert_eq!(worker_drivers(&torpor.logs()), vec!["epoll"; WORKERS]);
}

#[test]
fn torpor_image_runs_io_uring_under_the_profile_that_allows_it() {
    if images_ready().is_none() {
        return;
    }
    let network = Network::create();
    let (_db, _) = start_mariadb(&network);
    let (torpor, addr) = start_torpor(&network, Some("seccomp-io-uring.json"));
    check_queries_through(addr, "smoke_io_uring");
    // A kernel without io_uring leaves epoll whatever seccomp says.
    let expected = if host_allows_io_uring() {
        "io_uring"
    } else {
        "epoll"
    };
    assert_eq!(worker_drivers(&torpor.logs()), vec![expected; WORKERS]);
}

/// The two profiles are Docker's default with one difference: the
/// io_uring calls allowed in one, refused in the other.
#[test]
fn seccomp_profiles_differ_only_in_io_uring() {
    let read = |file: &str| -> serde_json::Value {
        let path = docker_dir().join(file);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let allow = read("seccomp-io-uring.json");
    let deny = read("seccomp-no-io-uring.json");
    let uring = |profile: &serde_json::Value| -> Vec<serde_json::Value> {
        profile["syscalls"]
            .as_array()
            .expect("a syscalls list")
            .iter()
            .filter(|rule| {
                rule["names"]
                    .as_array()
                    .is_some_and(|names| names.iter().any(|n| n == "io_uring_setup"))
            })
            .cloned()
            .collect()
    };
    let (allowed, refused) = (uring(&allow), uring(&deny));
    assert_eq!(allowed.len(), 1, "{allowed:?}");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(allowed[0]["action"], "SCMP_ACT_ALLOW");
    assert_eq!(refused[0]["action"], "SCMP_ACT_ERRNO");
    for rule in [&allowed[0], &refused[0]] {
        assert_eq!(
            rule["names"],
            serde_json::json!(["io_uring_enter", "io_uring_register", "io_uring_setup"])
        );
    }
    let without = |profile: &serde_json::Value| {
        let mut profile = profile.clone();
        if let Some(rules) = profile["syscalls"].as_array_mut() {
            rules.retain(|rule| {
                !rule["names"]
                    .as_array()
                    .is_some_and(|names| names.iter().any(|n| n == "io_uring_setup"))
            });
        }
        profile
    };
    assert_eq!(without(&allow), without(&deny));
    assert_eq!(allow["defaultAction"], "SCMP_ACT_ERRNO");
}

/// README's `docker run` line for the Torpor image, word for word.
const README_RUN: &str = "docker run -d --name torpor --network db -p 127.0.0.1:6033:6033 -p 127.0.0.1:6034:6034 -e TORPOR_USERS=app:secret -e TORPOR_ADMIN_LISTEN=0.0.0.0:6034 -e TORPOR_ADMIN_TOKEN=change-me torpor/torpor:dev";

/// An HTTP/1.0 `GET path` on the admin API from a container on `network`
/// (the Torpor image's bash, as a scraper in another container would
/// reach it): the whole response, status line first.
fn get_from_network(network: &Network, host: &str, path: &str, token: Option<&str>) -> String {
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\\r\\n"));
    let script = format!(
        "exec 3<>/dev/tcp/{host}/6034 && printf 'GET {path} HTTP/1.0\\r\\n{auth}\\r\\n' >&3 && timeout 20 cat <&3"
    );
    let image = torpor_image();
    docker_ok(&[
        "run",
        "--rm",
        "--network",
        &network.name,
        "--entrypoint",
        "bash",
        &image,
        "-c",
        &script,
    ])
}

/// The README's one-line `docker run` works as written (only names and
/// host ports are the test's own): clients log in, and the admin API and
/// `/metrics` are reachable from another container and from the host's
/// published port with the token, and refused without it.
#[test]
fn torpor_image_runs_as_the_readme_says_with_its_admin_api_open() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    assert!(
        readme.lines().any(|line| line == README_RUN),
        "README no longer has the line this test runs:\n{README_RUN}"
    );
    if images_ready().is_none() {
        return;
    }
    let network = Network::create();
    let (_db, _) = start_mariadb(&network);
    let alias = unique_name("torpor-alias");
    let users = format!("TORPOR_USERS={APP_USER}:{APP_PASSWORD}");
    let image = torpor_image();
    // The line, with what the test needs instead: its own network, an
    // alias in place of the fixed name, ephemeral host ports, the test
    // database's password and the image under test.
    let mut substitutions = [
        (vec!["docker", "run", "-d"], vec![]),
        (vec!["--name", "torpor"], vec!["--network-alias", &alias]),
        (vec!["--network", "db"], vec!["--network", &network.name]),
        (
            vec!["-p", "127.0.0.1:6033:6033"],
            vec!["-p", "127.0.0.1::6033"],
        ),
        (
            vec!["-p", "127.0.0.1:6034:6034"],
            vec!["-p", "127.0.0.1::6034"],
        ),
        (vec!["-e", "TORPOR_USERS=app:secret"], vec!["-e", &users]),
        (vec!["torpor/torpor:dev"], vec![&image]),
    ]
    .map(|(from, to)| (from, to, false));
    let words: Vec<&str> = README_RUN.split(' ').collect();
    let mut options: Vec<&str> = Vec::new();
    let mut at = 0;
    'words: while at < words.len() {
        for (from, to, used) in substitutions.iter_mut() {
            if words[at..].starts_with(from) {
                options.extend(to.iter().copied());
                at += from.len();
                *used = true;
                continue 'words;
            }
        }
        options.push(words[at]);
        at += 1;
    }
    assert!(
        substitutions.iter().all(|(_, _, used)| *used),
        "a substitution no longer matches README's line: {substitutions:?}"
    );
    // Container::run adds `run --detach --name` and takes the image last.
    let image_at = options.iter().position(|w| *w == image).expect("image");
    let (before, after) = options.split_at(image_at);
    let torpor = Container::run("torpor", before, &image, &after[1..]);
    let addr = torpor.wait_for_greeting(6033, Duration::from_secs(30));
    check_queries_through(addr, "readme_run");

    let from_network = get_from_network(&network, &alias, "/metrics", Some("change-me"));
    assert!(
        from_network.starts_with("HTTP/1.") && from_network.contains(" 200 "),
        "no /metrics from another container:\n{from_network}"
    );
    assert!(
        from_network.contains("torpor_client_connections"),
        "{from_network}"
    );
    let refused = get_from_network(&network, &alias, "/services", None);
    assert!(refused.contains(" 401 "), "without the token:\n{refused}");

    let admin = torpor.published(6034);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut response = agent
        .get(&format!("http://{admin}/services"))
        .header("Authorization", "Bearer change-me")
        .call()
        .expect("admin API from the host");
    let body = response.body_mut().read_to_string().expect("body");
    assert_eq!(response.status().as_u16(), 200, "{body}");
    assert!(body.contains("\"name\":\"default\""), "{body}");
}

/// A named volume, removed on drop (after the containers that use it).
struct Volume {
    name: String,
}

impl Volume {
    fn create() -> Volume {
        let name = unique_name("state");
        docker_ok(&["volume", "create", &name]);
        Volume { name }
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        if let Some(out) = docker(&["volume", "rm", "--force", &self.name]) {
            if !out.status.success() {
                eprintln!(
                    "cannot remove volume {}: {}",
                    self.name,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
    }
}

/// The `mariadb` CLI over TLS to `addr`, verifying the server's
/// certificate against `ca`: the `SSL:` line of its status, or its error.
fn verified_tls_status(addr: SocketAddr, ca: &std::path::Path) -> Result<String, String> {
    let out = Command::new(require_program("mariadb", "mariadb-client"))
        .arg("--no-defaults")
        .arg("--protocol=TCP")
        .arg(format!("--host={}", addr.ip()))
        .arg(format!("--port={}", addr.port()))
        .arg(format!("--user={APP_USER}"))
        .arg(format!("--password={APP_PASSWORD}"))
        .arg("--ssl")
        .arg("--ssl-verify-server-cert")
        .arg(format!("--ssl-ca={}", ca.display()))
        .args(["--execute", "status"])
        .output()
        .expect("the mariadb client runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout.lines().find(|line| line.starts_with("SSL:")) {
        Some(line) if out.status.success() => Ok(line.to_string()),
        _ => Err(String::from_utf8_lossy(&out.stderr).trim().to_string()),
    }
}

/// The image's state_dir is a volume: the self-signed certificate Torpor
/// made at its first start is served again by a new container on the same
/// volume (a client that pinned it keeps trusting it); a mounted
/// certificate and key given by flags are served instead.
#[test]
fn torpor_image_keeps_its_self_signed_certificate_on_its_volume_and_serves_a_mounted_one() {
    if images_ready().is_none() {
        return;
    }
    let network = Network::create();
    let (_db, _) = start_mariadb(&network);
    let volume = Volume::create();
    let state = format!("{}:/var/lib/torpor", volume.name);
    let pinned = tempfile::tempdir().unwrap();
    let ca = pinned.path().join("cert.pem");
    {
        let (first, addr) = start_torpor_with(&network, &["--volume", &state], &[]);
        let source = format!("{}:/var/lib/torpor/tls/cert.pem", first.name);
        docker_ok(&["cp", &source, &ca.display().to_string()]);
        let status = verified_tls_status(addr, &ca).expect("the first container's certificate");
        assert!(status.contains("Cipher in use"), "{status}");
    }
    // A new container, the same volume: the same certificate.
    let (_second, addr) = start_torpor_with(&network, &["--volume", &state], &[]);
    let status = verified_tls_status(addr, &ca).expect("the certificate kept on the volume");
    assert!(status.contains("Cipher in use"), "{status}");

    // An operator's own certificate, mounted read-only.
    let own = tempfile::tempdir().unwrap();
    torpor::tls::TlsSettings::load(&torpor::config::TlsConfig::default(), own.path()).unwrap();
    let (own_cert, own_key) = torpor::tls::self_signed_paths(own.path());
    let folder = own_cert.parent().unwrap().to_path_buf();
    use std::os::unix::fs::PermissionsExt;
    // Readable by the image's user (uid 6033).
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&own_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mount = format!("{}:/etc/torpor/tls:ro", folder.display());
    let flags = [
        "--tls-cert",
        "/etc/torpor/tls/cert.pem",
        "--tls-key",
        "/etc/torpor/tls/key.pem",
    ];
    let (_third, addr) = start_torpor_with(&network, &["--volume", &mount], &flags);
    let status = verified_tls_status(addr, &own_cert).expect("the mounted certificate");
    assert!(status.contains("Cipher in use"), "{status}");
    let refused = verified_tls_status(addr, &ca).expect_err("not the self-signed one");
    assert!(refused.contains("ERROR 2026"), "{refused}");
}

/// The MariaDB image serves TLS with a certificate and key mounted beside
/// a config snippet in its `mariadb.conf.d` (no rebuild), as any Debian
/// MariaDB does: the `mariadb` CLI verifies it, and a Torpor whose
/// backend leg requires TLS against that certificate runs a session on
/// it, encrypted on the backend's side.
#[test]
fn mariadb_image_serves_tls_from_a_mounted_certificate_and_torpor_speaks_it() {
    use mysql::prelude::Queryable;
    if images_ready().is_none() {
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    torpor::tls::TlsSettings::load(&torpor::config::TlsConfig::default(), certs.path())
        .expect("a self-signed certificate");
    let (cert, key) = torpor::tls::self_signed_paths(certs.path());
    // The server runs as the image's mysql user: it must read the key.
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let snippet = certs.path().join("95-tls.cnf");
    std::fs::write(
        &snippet,
        "[mariadbd]\nssl-cert = /etc/mysql/tls/cert.pem\nssl-key = /etc/mysql/tls/key.pem\n",
    )
    .unwrap();
    let tls_dir = cert.parent().unwrap().display().to_string();
    let mounts = [
        format!("{tls_dir}:/etc/mysql/tls:ro"),
        format!(
            "{}:/etc/mysql/mariadb.conf.d/95-tls.cnf:ro",
            snippet.display()
        ),
    ];
    // The harness's client logs in to `test`.
    let env = [
        format!("MARIADB_ROOT_PASSWORD={ROOT_PASSWORD}"),
        "MARIADB_DATABASE=test".to_string(),
        format!("MARIADB_USER={APP_USER}"),
        format!("MARIADB_PASSWORD={APP_PASSWORD}"),
    ];
    let mut options = vec!["--publish", "127.0.0.1::3306"];
    for mount in &mounts {
        options.extend_from_slice(&["--volume", mount]);
    }
    for var in &env {
        options.extend_from_slice(&["--env", var]);
    }
    let db = Container::run("mariadb-tls", &options, &mariadb_image(), &[]);
    let addr = db.wait_for_greeting(3306, Duration::from_secs(120));

    let status = verified_tls_status(addr, &cert).expect("the CLI verifies the image's TLS");
    assert!(status.contains("Cipher in use"), "{status}");

    let torpor = torpor_tests::Torpor::start_with(addr, |config| {
        if let Some(backend) = config.backend.as_mut() {
            backend.tls = torpor::config::BackendTlsMode::Required;
            backend.tls_ca = Some(cert.clone());
        }
    });
    let mut conn = mysql::Conn::new(torpor_tests::mysql_opts(
        torpor.addr(),
        APP_USER,
        APP_PASSWORD,
    ))
    .expect("a session through Torpor to the TLS-only container");
    let cipher: Option<(String, String)> = conn
        .query_first("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        .unwrap();
    let cipher = cipher.expect("a status row").1;
    assert!(!cipher.is_empty(), "the backend leg is encrypted");
}
