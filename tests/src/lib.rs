//! The end-to-end test harness.
//!
//! - [`backend`]: one private MariaDB per test binary (`mariadb-install-db`
//!   and `mariadbd` on a temp dir and a free port), started on first use
//!   and stopped when the test binary exits.
//! - [`Torpor`]: a proxy in front of it, in-process, stopped on drop.
//! - [`torpor_binary`]: the real `torpor` binary, for tests of its command
//!   line and signals; [`binary::Running`] runs it as a child process.
//! - [`require_program`]: real client programs (`mariadb`, `sysbench`);
//!   a missing one fails the test with the package to install, never skips.
//! - [`docker`]: tests of real containers: the docker CLI, images, unique
//!   names, and when a missing engine is a skip or a failure.
//! - [`relocation`]: the relocation scenarios every relocating driver
//!   runs (a live move under writers, a parked move).
//! - [`engine_tls`]: certificates for an engine reached over TCP with TLS.
//! - [`second_host`]: a second Docker Engine in a network namespace of
//!   its own, reached over a veth pair, for tests across hosts.
//!
//! Tests in one binary run in parallel against the same server: each uses
//! its own schema or table names.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub use torpor::scaler::admin_sql::tcp_opts;
use torpor::scaler::process::{find_program, Account, MariadbOptions, MariadbProcess};
use torpor::{Config, Proxy};

/// The application account every test logs in as.
pub const APP_USER: &str = "app";
/// Its password.
pub const APP_PASSWORD: &str = "app-secret";
/// A second account, for COM_CHANGE_USER.
pub const OTHER_USER: &str = "other";
/// Its password.
pub const OTHER_PASSWORD: &str = "other-secret";
/// An account with all privileges, used directly against the backend to
/// look at or disturb what Torpor does (KILL, SHOW STATUS).
pub const ADMIN_USER: &str = "admin";
/// Its password.
pub const ADMIN_PASSWORD: &str = "admin-secret";

static BACKEND: Mutex<Option<Arc<MariadbProcess>>> = Mutex::new(None);

extern "C" fn stop_backend_at_exit() {
    if let Ok(mut slot) = BACKEND.lock() {
        slot.take();
    }
}

/// The test binary's private MariaDB, started on first use.
pub fn backend() -> Arc<MariadbProcess> {
    let mut slot = BACKEND.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(process) = slot.as_ref() {
        return Arc::clone(process);
    }
    let accounts = [
        (APP_USER, APP_PASSWORD),
        (OTHER_USER, OTHER_PASSWORD),
        (ADMIN_USER, ADMIN_PASSWORD),
    ]
    .iter()
    // Every privilege, as tests of account statements need (a managed
    // service's accounts get only what their configuration grants).
    .map(|(user, password)| Account::superuser(user, password))
    .collect();
    let options = MariadbOptions {
        accounts,
        ..MariadbOptions::default()
    };
    // MariadbProcess forks mariadbd from a keeper thread of its own, so
    // the server outlives the test thread that happened to start it.
    let process = MariadbProcess::start(options)
        .unwrap_or_else(|e| panic!("cannot start a private MariaDB: {e}"));
    let process = Arc::new(process);
    *slot = Some(Arc::clone(&process));
    // SAFETY: registering a plain extern "C" function with atexit has no
    // preconditions; the function only takes a lock and drops a value.
    unsafe {
        libc::atexit(stop_backend_at_exit);
    }
    process
}

/// A proxy running in this process; stopped (gracefully) on drop.
pub struct Torpor {
    proxy: Option<Proxy>,
}

impl Torpor {
    /// Starts a proxy in front of `backend` with the test accounts, on a
    /// free port, after `configure` had its say.
    pub fn start_with(backend: SocketAddr, configure: impl FnOnce(&mut Config)) -> Torpor {
        // TORPOR_TEST_LOG=debug shows the proxy's log while debugging a test.
        if let Ok(filter) = std::env::var("TORPOR_TEST_LOG") {
            // Kept for the life of the test process: its log thread
            // writes until the end.
            std::mem::forget(torpor::logging::init(
                torpor::config::LogFormat::Text,
                &filter,
            ));
        }
        let mut config = test_config(backend);
        configure(&mut config);
        let proxy = Proxy::start(config).unwrap_or_else(|e| panic!("cannot start torpor: {e}"));
        Torpor { proxy: Some(proxy) }
    }

    /// Starts a proxy in front of the test binary's MariaDB.
    pub fn start() -> Torpor {
        Torpor::start_with(backend().addr(), |_| {})
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.proxy.as_ref().map(Proxy::local_addr).expect("running")
    }

    /// Where the admin API listens, when the configuration turned it on.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.proxy.as_ref().and_then(Proxy::admin_addr)
    }

    /// Client connections the proxy has open.
    pub fn connection_count(&self) -> usize {
        self.proxy.as_ref().map_or(0, Proxy::connection_count)
    }

    /// Sessions each of its workers serves now.
    pub fn sessions_per_worker(&self) -> Vec<usize> {
        self.proxy
            .as_ref()
            .map_or_else(Vec::new, Proxy::sessions_per_worker)
    }

    /// Stops the proxy now and waits for it.
    pub fn stop(mut self) {
        if let Some(proxy) = self.proxy.take() {
            proxy.stop();
        }
    }
}

impl Drop for Torpor {
    fn drop(&mut self) {
        if let Some(proxy) = self.proxy.take() {
            proxy.stop();
        }
    }
}

/// The configuration tests start from: loopback, a free port, the test
/// accounts, a short shutdown grace.
pub fn test_config(backend: SocketAddr) -> Config {
    let mut config = Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        shutdown_grace_secs: 5,
        ..Config::default()
    };
    config.backend = Some(torpor::config::BackendConfig {
        address: backend.to_string(),
        connect_timeout_ms: 5_000,
        admin_user: None,
        admin_password: None,
        admin_password_file: None,
        tls: torpor::config::BackendTlsMode::Off,
        tls_ca: None,
        tls_fingerprint: None,
    });
    config.users = [
        (APP_USER, APP_PASSWORD),
        (OTHER_USER, OTHER_PASSWORD),
        (ADMIN_USER, ADMIN_PASSWORD),
    ]
    .iter()
    .map(|(name, password)| torpor::config::UserConfig {
        name: name.to_string(),
        password: Some(password.to_string()),
        password_hash: None,
        grants: None,
    })
    .collect();
    config
}

/// A private MariaDB of its own with TLS, on a self-signed certificate
/// of Torpor's kind (for `localhost`, `127.0.0.1` and `::1`; its
/// `cert.pem` is the CA clients check it with), with the test accounts
/// as superusers and `extra` options; the certificates' folder goes with
/// it.
pub fn mariadb_with_tls(extra: &[&str]) -> (MariadbProcess, tempfile::TempDir) {
    let certs = tempfile::tempdir().expect("a folder for certificates");
    torpor::tls::TlsSettings::load(&torpor::config::TlsConfig::default(), certs.path())
        .expect("a self-signed certificate");
    let (cert, key) = torpor::tls::self_signed_paths(certs.path());
    let mut extra_args = vec![
        format!("--ssl-cert={}", cert.display()),
        format!("--ssl-key={}", key.display()),
    ];
    extra_args.extend(extra.iter().map(|s| s.to_string()));
    let accounts = [
        (APP_USER, APP_PASSWORD),
        (OTHER_USER, OTHER_PASSWORD),
        (ADMIN_USER, ADMIN_PASSWORD),
    ]
    .iter()
    .map(|(user, password)| Account::superuser(user, password))
    .collect();
    let server = MariadbProcess::start(MariadbOptions {
        accounts,
        extra_args,
        ..MariadbOptions::default()
    })
    .expect("a private MariaDB with TLS");
    (server, certs)
}

/// Connection options for the `mysql` crate: over TCP only (Torpor's
/// [`tcp_opts`], so a loopback server's `@@socket` is never dialed).
pub fn mysql_opts(addr: SocketAddr, user: &str, password: &str) -> mysql::Opts {
    tcp_opts(addr)
        .user(Some(user))
        .pass(Some(password))
        .db_name(Some("test"))
        .into()
}

/// A `mysql` crate connection as the app user.
pub fn connect(addr: SocketAddr) -> mysql::Conn {
    mysql::Conn::new(mysql_opts(addr, APP_USER, APP_PASSWORD))
        .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"))
}

/// A `mysql` crate connection straight to the backend as the admin.
pub fn admin_connect() -> mysql::Conn {
    let addr = backend().addr();
    mysql::Conn::new(mysql_opts(addr, ADMIN_USER, ADMIN_PASSWORD))
        .unwrap_or_else(|e| panic!("cannot connect to the backend as admin: {e}"))
}

/// An installed program, or a test failure that names the package.
pub fn require_program(name: &str, package: &str) -> PathBuf {
    find_program(&[name]).unwrap_or_else(|| {
        panic!("{name} is not installed: install Debian's {package} package (.ci/run does)")
    })
}

/// The `torpor` binary of this workspace, built if needed (same profile
/// as the tests).
pub fn torpor_binary() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let status = std::process::Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            "torpor",
            "--bin",
            "torpor",
            "--manifest-path",
            manifest,
        ])
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the torpor binary failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")));
    target.join("debug").join("torpor")
}

pub mod binary;
pub mod docker;
pub mod engine_tls;
pub mod raw;
pub mod relocation;
pub mod second_host;
pub mod serverless;
pub mod stacks;
pub mod sysbench;
