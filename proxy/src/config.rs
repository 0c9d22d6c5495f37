//! Configuration: a TOML file (`--config`) and command-line flags that
//! override it for the one-backend case.
//!
//! ```toml
//! listen = "127.0.0.1:6033"
//! workers = 0              # 0: one per core
//! max_connections = 10000
//! shutdown_grace_secs = 10
//! log_format = "text"      # or "json"
//!
//! [backend]
//! address = "127.0.0.1:3306"
//! connect_timeout_ms = 5000
//!
//! [[users]]
//! name = "app"
//! password = "secret"      # or: password_hash = "*14E65567ABDB5135D0CFD9A70B3032C179A49EE7"
//! ```

pub mod autoscale;
mod cli;
pub mod hosts;
pub mod secrets;
pub mod storage;
pub mod warm_pool;

pub use cli::Cli;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::ValueEnum;
use serde::Deserialize;

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A value is not acceptable.
    #[error("{0}")]
    Invalid(String),
}

/// Where the admin API listens, from the environment (a flag wins): what a
/// container image's user sets to reach the API and `/metrics` from other
/// containers (`0.0.0.0:6034`, with `TORPOR_ADMIN_TOKEN`), or `off`.
pub const ADMIN_LISTEN_ENV: &str = "TORPOR_ADMIN_LISTEN";

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Which I/O driver the workers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum IoDriver {
    /// io_uring when the kernel and seccomp allow it, else epoll.
    #[default]
    Auto,
    /// io_uring, or fail to start.
    #[value(name = "io_uring", alias = "io-uring")]
    IoUring,
    /// epoll, even where io_uring works.
    Epoll,
}

/// The backend database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// `host:port` of the MariaDB server, or its Unix socket
    /// (`/path/to/mysqld.sock` or `unix:/path`).
    pub address: String,
    /// How long connecting and logging in to it may take, in milliseconds.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// An account that may read `mysql.global_priv`: with it, Torpor reads
    /// the backend's accounts, so users created there (or through Torpor)
    /// log in as they would to MariaDB. Without it, only `[[users]]` may.
    #[serde(default)]
    pub admin_user: Option<String>,
    /// Its password (or give `admin_password_file`, or the environment's
    /// `TORPOR_BACKEND_ADMIN_PASSWORD`, which win in that order).
    #[serde(default)]
    pub admin_password: Option<String>,
    /// A file holding the admin account's password.
    #[serde(default)]
    pub admin_password_file: Option<PathBuf>,
    /// TLS to the backend (TCP addresses; a Unix socket stays plain).
    #[serde(default)]
    pub tls: BackendTlsMode,
    /// The CA certificates (PEM) the backend's certificate must chain to
    /// (a self-signed certificate may be its own); needed unless `tls` is
    /// off (or give `tls_fingerprint`).
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// The backend's certificate pinned by its SHA-256 fingerprint
    /// (`sha256:` and 64 hex digits, colons allowed), instead of a CA.
    #[serde(default)]
    pub tls_fingerprint: Option<String>,
}

impl BackendConfig {
    /// Its TLS options.
    pub fn tls_options(&self) -> BackendTlsOptions<'_> {
        BackendTlsOptions {
            section: "[backend]".to_string(),
            mode: self.tls,
            ca: self.tls_ca.as_deref(),
            fingerprint: self.tls_fingerprint.as_deref(),
        }
    }
}

/// How connections to one backend use TLS: `[backend]`'s keys, or a
/// `[[services]]` entry's.
#[derive(Debug, Clone)]
pub struct BackendTlsOptions<'a> {
    /// Where they come from, for errors (`[backend]`, `service 'shop'`).
    pub section: String,
    /// Off, preferred or required.
    pub mode: BackendTlsMode,
    /// The CA file the certificate must chain to.
    pub ca: Option<&'a std::path::Path>,
    /// The certificate's pinned SHA-256 fingerprint.
    pub fingerprint: Option<&'a str>,
}

impl BackendTlsOptions<'_> {
    /// Checks that TLS has exactly one way to trust the backend, and a
    /// fingerprint that reads.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let section = &self.section;
        if let Some(pin) = self.fingerprint {
            crate::tls::pinned::Fingerprint::parse(pin)
                .map_err(|e| ConfigError::Invalid(format!("{section} tls_fingerprint: {e}")))?;
        }
        match (self.mode, self.ca, self.fingerprint) {
            (BackendTlsMode::Off, _, _) => Ok(()),
            (_, None, None) => Err(ConfigError::Invalid(format!(
                "{section} tls needs tls_ca (the CA file the backend's certificate is checked against) or tls_fingerprint"
            ))),
            (_, Some(_), Some(_)) => Err(ConfigError::Invalid(format!(
                "{section}: give tls_ca or tls_fingerprint, not both"
            ))),
            _ => Ok(()),
        }
    }
}

/// Whether backend connections use TLS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendTlsMode {
    /// Plain (the default: a backend on the same host, or its socket).
    #[default]
    Off,
    /// TLS when the backend offers it, plain otherwise.
    Preferred,
    /// TLS, or no connection.
    Required,
}

/// What runs a managed service's MariaDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DriverKind {
    /// A container of the Docker Engine (through its API).
    Docker,
    /// A `mariadbd` process of Torpor's own.
    Process,
    /// A backend Torpor does not manage, at the service's `address`
    /// (always active, as `[backend]`).
    Static,
}

impl DriverKind {
    /// The driver's name, as the config spells it.
    pub fn name(self) -> &'static str {
        match self {
            DriverKind::Docker => "docker",
            DriverKind::Process => "process",
            DriverKind::Static => "static",
        }
    }
}

/// A database service Torpor runs and scales: its backend is started,
/// suspended when idle, parked after a longer silence and woken by the
/// next query.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// The service's name (containers and datadirs are named after it).
    pub name: String,
    /// What runs the backend.
    pub driver: DriverKind,
    /// Names of the `[[users]]` that route to this service; every user
    /// when the list is empty and this is the only service.
    #[serde(default)]
    pub users: Vec<String>,
    /// Server names (SNI) that choose this service: a TLS client that
    /// asks for one of them logs in to this service (as one of its
    /// users), whatever other service its user name would route to.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// `static`: where the backend listens (`host:port`, or a Unix
    /// socket's path).
    #[serde(default)]
    pub address: Option<String>,
    /// TLS to the backend over TCP, as `[backend] tls`.
    #[serde(default)]
    pub tls: BackendTlsMode,
    /// The CA file the backend's certificate must chain to.
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// The backend's certificate pinned by its SHA-256 fingerprint.
    #[serde(default)]
    pub tls_fingerprint: Option<String>,
    /// `process`: the datadir (initialized on first start, kept); default
    /// `<state_dir>/services/<name>/data`.
    #[serde(default)]
    pub datadir: Option<PathBuf>,
    /// `docker`: the image (built by `docker/mariadb/build.sh`).
    #[serde(default = "default_image")]
    pub image: String,
    /// Seconds with no query and nothing pinned before a suspend; 0 never.
    #[serde(default = "default_suspend_after_secs")]
    pub suspend_after_secs: u64,
    /// Seconds suspended before parking; 0 never.
    #[serde(default = "default_park_after_secs")]
    pub park_after_secs: u64,
    /// Seconds a query waits for a wake before it gets an error.
    #[serde(default = "default_wake_timeout_secs")]
    pub wake_timeout_secs: u64,
    /// CPUs the backend may use (docker).
    #[serde(default = "default_cpus")]
    pub cpus: f64,
    /// Memory limit in MiB (docker).
    #[serde(default = "default_memory_mib")]
    pub memory_mib: u64,
    /// InnoDB buffer pool while active, in MiB.
    #[serde(default = "default_buffer_pool_mib")]
    pub buffer_pool_mib: u64,
    /// InnoDB buffer pool the backend shrinks to before it is frozen.
    #[serde(default = "default_suspended_buffer_pool_mib")]
    pub suspended_buffer_pool_mib: u64,
    /// `[services.autoscale]`: CPU and memory follow the load, between
    /// bounds (the buffer pool keeps its share of memory); absent, the
    /// service keeps `cpus` and `memory_mib`.
    #[serde(default)]
    pub autoscale: Option<autoscale::AutoscaleConfig>,
    /// `[services.storage]` (`process`): the datadir lives on a volume of
    /// its own that Torpor grows as it fills; absent, on whatever
    /// filesystem holds it.
    #[serde(default)]
    pub storage: Option<storage::StorageConfig>,
    /// `docker`: the `[[hosts]]` entry whose engine first runs the
    /// service; absent, the host with the most free memory. After a
    /// relocation the service stays where it was moved.
    #[serde(default)]
    pub runs_on: Option<String>,
    /// `process`: the datadir is a temporary one, removed when Torpor
    /// stops (`--spawn-mariadb --spawn-temporary`).
    #[serde(skip)]
    pub temporary: bool,
}

fn default_image() -> String {
    "torpor/mariadb:10.11".to_string()
}
fn default_suspend_after_secs() -> u64 {
    10
}
fn default_park_after_secs() -> u64 {
    4 * 3600
}
fn default_wake_timeout_secs() -> u64 {
    60
}
fn default_cpus() -> f64 {
    1.0
}
fn default_memory_mib() -> u64 {
    1024
}
fn default_buffer_pool_mib() -> u64 {
    128
}
fn default_suspended_buffer_pool_mib() -> u64 {
    16
}

impl ServiceConfig {
    /// A service run by `driver` with the defaults.
    pub fn new(name: &str, driver: DriverKind) -> ServiceConfig {
        ServiceConfig {
            name: name.to_string(),
            driver,
            users: Vec::new(),
            hosts: Vec::new(),
            address: None,
            tls: BackendTlsMode::Off,
            tls_ca: None,
            tls_fingerprint: None,
            datadir: None,
            image: default_image(),
            suspend_after_secs: default_suspend_after_secs(),
            park_after_secs: default_park_after_secs(),
            wake_timeout_secs: default_wake_timeout_secs(),
            cpus: default_cpus(),
            memory_mib: default_memory_mib(),
            buffer_pool_mib: default_buffer_pool_mib(),
            suspended_buffer_pool_mib: default_suspended_buffer_pool_mib(),
            autoscale: None,
            storage: None,
            runs_on: None,
            temporary: false,
        }
    }

    /// Its backend TLS options.
    pub fn tls_options(&self) -> BackendTlsOptions<'_> {
        BackendTlsOptions {
            section: format!("service '{}'", self.name),
            mode: self.tls,
            ca: self.tls_ca.as_deref(),
            fingerprint: self.tls_fingerprint.as_deref(),
        }
    }
}

/// The admin HTTP API.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Where it listens; off when not set.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// Bearer token every request must carry; required when `listen` is
    /// not a loopback address. An empty one counts as none.
    #[serde(default)]
    pub token: Option<String>,
}

impl AdminConfig {
    /// The token, if one is set: an empty string is none, so that
    /// `--admin-token ""` or an empty file cannot stand for a token.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref().filter(|token| !token.is_empty())
    }
}

/// TLS on the client leg (`[tls]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Offer TLS to clients (default on).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The certificate chain, PEM (leaf first). With `key`; without
    /// both, a self-signed certificate kept in `state_dir/tls/`.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// The certificate's private key, PEM.
    #[serde(default)]
    pub key: Option<PathBuf>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            enabled: true,
            cert: None,
            key: None,
        }
    }
}

fn default_true() -> bool {
    true
}

/// One account clients may log in as.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// User name.
    pub name: String,
    /// Plaintext password (hashed at load; never logged).
    #[serde(default)]
    pub password: Option<String>,
    /// `mysql_native_password` hash: `*` and 40 hex digits, as
    /// `SELECT PASSWORD('…')` or `mysql.user.authentication_string` show it.
    #[serde(default)]
    pub password_hash: Option<String>,
    /// Managed services: what the account Torpor creates on the backend
    /// may do, each `PRIVILEGES ON OBJECT` (optionally `WITH GRANT
    /// OPTION`). Default: `ALL PRIVILEGES ON test.*`, what the official
    /// image gives `MARIADB_USER` on its database.
    #[serde(default)]
    pub grants: Option<Vec<String>>,
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address clients connect to.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// A Unix socket clients on this host may connect to as well (as to
    /// MariaDB's own); none when not set.
    #[serde(default)]
    pub listen_socket: Option<PathBuf>,
    /// Worker threads (one runtime and listener each); 0 means one per core.
    #[serde(default)]
    pub workers: usize,
    /// Client connections allowed at once, over all workers.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Seconds a client has from the greeting to proving its password
    /// (MariaDB's `connect_timeout`); a silent socket is closed then.
    /// Until it has logged in, a client does not count against
    /// `max_connections`, so half-open logins cannot lock real ones out.
    #[serde(default = "default_login_timeout_secs")]
    pub login_timeout_secs: u64,
    /// Seconds a client may leave a command half sent (MariaDB's
    /// `net_read_timeout`): each wait for more of a command's bytes ends
    /// then, and the client is closed — a command streaming to the
    /// backend holds a backend connection until its last byte.
    #[serde(default = "default_net_read_timeout_secs")]
    pub net_read_timeout_secs: u64,
    /// Seconds a write to a client may wait for the client to read
    /// (MariaDB's `net_write_timeout`): a client that stops reading a
    /// reply is closed then, and the backend connection its reply came
    /// from is closed with it instead of being held for ever.
    #[serde(default = "default_net_write_timeout_secs")]
    pub net_write_timeout_secs: u64,
    /// On SIGTERM/SIGINT, how long in-flight commands may take to finish.
    #[serde(default = "default_shutdown_grace_secs")]
    pub shutdown_grace_secs: u64,
    /// I/O driver of the workers.
    #[serde(default)]
    pub io_driver: IoDriver,
    /// Backend connections open at most, over all workers (each worker
    /// gets its share). Sessions borrow them per transaction. 0 (the
    /// default): Torpor sets no bound of its own, so the backend's
    /// `max_connections` is the bound, as it is for clients that connect
    /// to it directly, and past it the client gets MariaDB's own 1040.
    #[serde(default = "default_max_backend_connections")]
    pub max_backend_connections: usize,
    /// Backend connections the sessions share before the pool opens more,
    /// over all workers (each worker gets its share; 0, the default: no
    /// such target, a session opens a connection whenever none is idle).
    /// At the target, a session waits for a connection to come back; one
    /// that waited [`Config::pool_reserve_after_ms`] opens a new one
    /// anyway (below `max_backend_connections`), so connections all held
    /// — long statements, open transactions, a client holding one
    /// transaction while it opens another — cost a wait, never an error.
    /// Connections over the target are closed once idle (within a
    /// second). Many clients on a small backend: the backend runs a few
    /// statements at once instead of one thread per client contending
    /// for its cores, and the tail of every statement falls (PgBouncer's
    /// `default_pool_size` and reserve pool).
    #[serde(default)]
    pub pool_size: usize,
    /// How long, in milliseconds, a session waits at `pool_size` before
    /// it opens a connection over it.
    #[serde(default = "default_pool_reserve_after_ms")]
    pub pool_reserve_after_ms: u64,
    /// How long a session waits for a free backend connection before it
    /// gets an error, in milliseconds.
    #[serde(default = "default_pool_wait_timeout_ms")]
    pub pool_wait_timeout_ms: u64,
    /// How long a command (or a login) waits for a backend that cannot be
    /// reached — stopped, restarting, crashed — while Torpor retries the
    /// connect with backoff, in seconds; then it gets `1429` and the
    /// session goes on. 0: no wait.
    #[serde(default = "default_outage_hold_secs")]
    pub outage_hold_secs: u64,
    /// Idle backend connections are closed after this many seconds.
    #[serde(default = "default_backend_idle_timeout_secs")]
    pub backend_idle_timeout_secs: u64,
    /// After moving a session to a new backend connection, read back what
    /// was replayed and compare (one round trip per move). Always on in
    /// debug builds.
    #[serde(default)]
    pub verify_replay: bool,
    /// Bytes of an open transaction's statements kept to replay it on a
    /// new backend connection if its own dies (the journal; per session).
    /// A transaction that outgrows it is not replayed: it gets an error
    /// as before. 0 turns transaction replay off.
    #[serde(default = "default_transaction_replay_max_bytes")]
    pub transaction_replay_max_bytes: usize,
    /// Seconds a session may sit idle inside an open transaction before
    /// it is closed with an error (the transaction rolled back), as
    /// PostgreSQL's `idle_in_transaction_session_timeout`; 0 (the
    /// default, as MariaDB has no such limit): never. Such a session
    /// keeps its service awake.
    #[serde(default)]
    pub idle_in_transaction_timeout_secs: u64,
    /// Log format.
    #[serde(default)]
    pub log_format: LogFormat,
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `torpor=debug`.
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// A backend Torpor does not manage (always on); mutually exclusive
    /// with `services`.
    pub backend: Option<BackendConfig>,
    /// Managed services.
    #[serde(default)]
    pub services: Vec<ServiceConfig>,
    /// Docker Engines services run on, besides (or describing) the
    /// local one: `[[hosts]]`.
    #[serde(default)]
    pub hosts: Vec<hosts::HostConfig>,
    /// Ready backends kept suspended for services created through the
    /// admin API: `[[warm_pools]]`.
    #[serde(default)]
    pub warm_pools: Vec<warm_pool::WarmPoolConfig>,
    /// Accounts.
    #[serde(default)]
    pub users: Vec<UserConfig>,
    /// The admin HTTP API.
    #[serde(default)]
    pub admin: AdminConfig,
    /// Where Torpor keeps what outlives it (datadirs of process services,
    /// admin secrets).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// How often the backend's accounts are read again, in seconds (they
    /// are also read at once after an account statement passes through
    /// Torpor, and when a login finds no account).
    #[serde(default = "default_accounts_refresh_secs")]
    pub accounts_refresh_secs: u64,
    /// TLS on the client leg.
    #[serde(default)]
    pub tls: TlsConfig,
    /// Refuse logins over plain TCP, as MariaDB's
    /// `require_secure_transport` does (the Unix socket is exempt): with
    /// MariaDB 10.11's answer, 1045 access denied.
    #[serde(default)]
    pub require_secure_transport: bool,
}

fn default_accounts_refresh_secs() -> u64 {
    60
}

/// `$XDG_STATE_HOME/torpor`, else `~/.local/state/torpor`, else
/// `/var/lib/torpor`.
pub fn default_state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("torpor");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(home).join(".local/state/torpor");
    }
    PathBuf::from("/var/lib/torpor")
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 6033))
}
fn default_transaction_replay_max_bytes() -> usize {
    torpor_replay::journal::DEFAULT_MAX_BYTES
}
fn default_max_connections() -> usize {
    10_000
}
fn default_login_timeout_secs() -> u64 {
    10
}
fn default_net_read_timeout_secs() -> u64 {
    30
}
fn default_net_write_timeout_secs() -> u64 {
    60
}
fn default_shutdown_grace_secs() -> u64 {
    10
}
fn default_connect_timeout_ms() -> u64 {
    5_000
}
fn default_max_backend_connections() -> usize {
    0
}
fn default_pool_reserve_after_ms() -> u64 {
    50
}
fn default_pool_wait_timeout_ms() -> u64 {
    10_000
}
fn default_outage_hold_secs() -> u64 {
    60
}
fn default_backend_idle_timeout_secs() -> u64 {
    300
}
fn default_log_level() -> String {
    "info".to_string()
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: default_listen(),
            listen_socket: None,
            workers: 0,
            max_connections: default_max_connections(),
            login_timeout_secs: default_login_timeout_secs(),
            net_read_timeout_secs: default_net_read_timeout_secs(),
            net_write_timeout_secs: default_net_write_timeout_secs(),
            shutdown_grace_secs: default_shutdown_grace_secs(),
            io_driver: IoDriver::Auto,
            max_backend_connections: default_max_backend_connections(),
            pool_size: 0,
            pool_reserve_after_ms: default_pool_reserve_after_ms(),
            pool_wait_timeout_ms: default_pool_wait_timeout_ms(),
            outage_hold_secs: default_outage_hold_secs(),
            backend_idle_timeout_secs: default_backend_idle_timeout_secs(),
            verify_replay: false,
            transaction_replay_max_bytes: default_transaction_replay_max_bytes(),
            idle_in_transaction_timeout_secs: 0,
            log_format: LogFormat::Text,
            log_level: default_log_level(),
            backend: None,
            services: Vec::new(),
            hosts: Vec::new(),
            warm_pools: Vec::new(),
            users: Vec::new(),
            admin: AdminConfig::default(),
            state_dir: default_state_dir(),
            accounts_refresh_secs: default_accounts_refresh_secs(),
            tls: TlsConfig::default(),
            require_secure_transport: false,
        }
    }
}

impl Config {
    /// Parses a TOML document.
    pub fn from_toml(text: &str, path: PathBuf) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|source| ConfigError::Parse {
            path,
            source: Box::new(source),
        })
    }

    /// Reads and parses a TOML file.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml(&text, path.to_path_buf())
    }

    /// Worker threads to run: the configured number, or one per core.
    ///
    /// The core count is read once per process: the workers are started
    /// from the first answer, and every per-worker share after it must
    /// divide by that same number, also after a `docker update --cpus`
    /// changed what `available_parallelism` (cgroup reads, several system
    /// calls, on each worker tick otherwise) would say now.
    pub fn worker_count(&self) -> usize {
        static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        if self.workers > 0 {
            self.workers
        } else {
            *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        }
    }

    /// Each worker's share of the backend connection bound (0: none).
    pub fn backend_connections_per_worker(&self) -> usize {
        self.per_worker(self.max_backend_connections)
    }

    /// Each worker's share of `pool_size` (0: none).
    pub fn pool_size_per_worker(&self) -> usize {
        self.per_worker(self.pool_size)
    }

    /// Each worker's share of a count over all workers, at least one;
    /// 0 (none) stays 0.
    fn per_worker(&self, total: usize) -> usize {
        if total == 0 {
            return 0;
        }
        total.div_ceil(self.worker_count()).max(1)
    }

    /// The shutdown grace period.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    /// Checks what serde cannot: a backend or services are set, users
    /// are well formed and each routes to one service.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(backend) = &self.backend {
            backend.tls_options().validate()?;
        }
        if self.require_secure_transport && !self.tls.enabled && self.listen_socket.is_none() {
            return Err(ConfigError::Invalid(
                "require_secure_transport with TLS off and no listen_socket: no client could log in".into(),
            ));
        }
        match (self.backend.is_some(), self.services.is_empty()) {
            (false, true) => {
                return Err(ConfigError::Invalid(
                    "no backend: give --backend HOST:PORT, --spawn-mariadb, a [backend] section or [[services]]".into(),
                ))
            }
            (true, false) => {
                return Err(ConfigError::Invalid(
                    "give either [backend] or [[services]], not both".into(),
                ))
            }
            _ => {}
        }
        let docker_hosts: Vec<&str> = self
            .hosts
            .iter()
            .filter(|host| host.takes("docker"))
            .map(|host| host.name.as_str())
            .collect();
        warm_pool::check_all(&self.warm_pools, &docker_hosts).map_err(ConfigError::Invalid)?;
        if self.backend.is_some() && !self.warm_pools.is_empty() {
            return Err(ConfigError::Invalid(
                "[[warm_pools]] serve services created through the admin API, which a [backend] has not".into(),
            ));
        }
        let mut host_names = std::collections::HashSet::new();
        for host in &self.hosts {
            host.check().map_err(ConfigError::Invalid)?;
            if !host_names.insert(&host.name) {
                return Err(ConfigError::Invalid(format!(
                    "host '{}' is declared twice",
                    host.name
                )));
            }
        }
        let mut names = std::collections::HashSet::new();
        for service in &self.services {
            if let Some(host) = &service.runs_on {
                let known = host == hosts::LOCAL_HOST || host_names.contains(host);
                if !known || service.driver != DriverKind::Docker {
                    return Err(ConfigError::Invalid(format!(
                        "service '{}': runs_on '{host}' needs driver docker and a [[hosts]] entry of that name",
                        service.name
                    )));
                }
            }
            if service.name.is_empty()
                || !service
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(ConfigError::Invalid(format!(
                    "service name '{}': use letters, digits, '-' and '_'",
                    service.name
                )));
            }
            if let Some(autoscale) = &service.autoscale {
                if service.driver == DriverKind::Static {
                    return Err(ConfigError::Invalid(format!(
                        "service '{}': a static backend is not Torpor's to resize; leave out [services.autoscale]",
                        service.name
                    )));
                }
                autoscale
                    .check(service.cpus, service.memory_mib)
                    .map_err(|why| {
                        ConfigError::Invalid(format!(
                            "service '{}': [services.autoscale]: {why}",
                            service.name
                        ))
                    })?;
            }
            if let Some(storage) = &service.storage {
                if service.driver == DriverKind::Static {
                    return Err(ConfigError::Invalid(format!(
                        "service '{}': a static backend's storage is not Torpor's; leave out [services.storage]",
                        service.name
                    )));
                }
                storage.check().map_err(|why| {
                    ConfigError::Invalid(format!(
                        "service '{}': [services.storage]: {why}",
                        service.name
                    ))
                })?;
                // The volume is a loop device mounted on this machine: a
                // container on another engine could not bind it. Said
                // now, not at the service's first wake.
                let remote = service.runs_on.as_ref().and_then(|name| {
                    self.hosts
                        .iter()
                        .find(|host| host.name == *name && host.engine.is_some())
                });
                if let Some(host) = remote {
                    return Err(ConfigError::Invalid(format!(
                        "service '{}': [services.storage] needs the local Docker Engine (its volume is mounted on this machine), and host '{}' is the engine at {}; leave out [services.storage] or runs_on",
                        service.name,
                        host.name,
                        host.engine.as_deref().unwrap_or_default()
                    )));
                }
            }
            if !names.insert(&service.name) {
                return Err(ConfigError::Invalid(format!(
                    "service '{}' is declared twice",
                    service.name
                )));
            }
            service.tls_options().validate()?;
            match (service.driver, &service.address) {
                (DriverKind::Static, None) => {
                    return Err(ConfigError::Invalid(format!(
                        "service '{}': driver static needs an address",
                        service.name
                    )))
                }
                (DriverKind::Docker | DriverKind::Process, Some(_)) => {
                    return Err(ConfigError::Invalid(format!(
                        "service '{}': address is for driver static (a managed backend's address is its driver's)",
                        service.name
                    )))
                }
                _ => {}
            }
            for host in &service.hosts {
                let taken = self
                    .services
                    .iter()
                    .take_while(|s| s.name != service.name)
                    .any(|s| s.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)));
                if taken || host.is_empty() {
                    return Err(ConfigError::Invalid(format!(
                        "service '{}': host '{host}' is empty or names another service too",
                        service.name
                    )));
                }
            }
            for user in &service.users {
                if !self.users.iter().any(|u| &u.name == user) {
                    return Err(ConfigError::Invalid(format!(
                        "service '{}' names user '{user}', which no [[users]] entry declares",
                        service.name
                    )));
                }
            }
        }
        if self.services.len() > 1 {
            for user in &self.users {
                let routes = self
                    .services
                    .iter()
                    .filter(|s| s.users.contains(&user.name))
                    .count();
                // Listed by several, the user routes by server name
                // (SNI) among them, and without one to the first.
                if routes == 0 {
                    return Err(ConfigError::Invalid(format!(
                        "user '{}' must be listed by a service (it is by none)",
                        user.name
                    )));
                }
            }
        }
        if self.login_timeout_secs == 0 {
            return Err(ConfigError::Invalid(
                "login_timeout_secs must be at least 1: a silent socket would keep its connection forever".into(),
            ));
        }
        if self.net_read_timeout_secs == 0 {
            return Err(ConfigError::Invalid(
                "net_read_timeout_secs must be at least 1: a client that stops mid-command would keep its backend connection forever".into(),
            ));
        }
        if self.net_write_timeout_secs == 0 {
            return Err(ConfigError::Invalid(
                "net_write_timeout_secs must be at least 1: a client that stops reading a reply would keep its backend connection forever".into(),
            ));
        }
        if let Some(listen) = self.admin.listen {
            if !listen.ip().is_loopback() && self.admin.token().is_none() {
                return Err(ConfigError::Invalid(format!(
                    "the admin API on {listen} is reachable from other hosts: set [admin] token"
                )));
            }
        }
        for user in &self.users {
            for grant in user.grants.iter().flatten() {
                crate::scaler::process::check_grant(grant)
                    .map_err(|e| ConfigError::Invalid(format!("user '{}': {e}", user.name)))?;
            }
            if user.password.is_some() == user.password_hash.is_some() {
                return Err(ConfigError::Invalid(format!(
                    "user '{}': give exactly one of password and password_hash",
                    user.name
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
