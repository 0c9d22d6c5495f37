//! The command line: `torpor`'s flags, what `--help` shows as their
//! defaults, and how they lay over the configuration file.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser, ValueEnum};

use super::{
    default_connect_timeout_ms, secrets, BackendConfig, Config, ConfigError, DriverKind, IoDriver,
    LogFormat, ServiceConfig, UserConfig, ADMIN_LISTEN_ENV,
};

/// Torpor: a serverless front for MariaDB. Clients connect to Torpor as
/// they would to MariaDB; Torpor authenticates them and forwards their
/// commands to the backend.
#[derive(Debug, Clone, Parser)]
#[command(name = "torpor", version, about, long_about = None)]
pub struct Cli {
    /// TOML configuration file; the flags below override its values.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to accept clients on.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Also accept clients on this Unix socket (`mariadb -S PATH`).
    #[arg(long, value_name = "PATH")]
    pub listen_socket: Option<PathBuf>,
    /// The MariaDB server to forward to: host:port, or its Unix socket
    /// (/path/to/mysqld.sock or unix:/path), the cheaper hop on one host.
    #[arg(long, value_name = "HOST:PORT|PATH")]
    pub backend: Option<String>,
    /// An account clients may use, as NAME:PASSWORD; PASSWORD may also be a
    /// native hash (`*` and 40 hex digits). Repeatable. The same account
    /// must exist on the backend. Visible in `ps`: prefer --users-file or
    /// TORPOR_USERS (NAME:PASSWORD lines).
    #[arg(long = "user", value_name = "NAME:PASSWORD")]
    pub users: Vec<String>,
    /// A file of accounts, one NAME:PASSWORD per line (`#` comments).
    #[arg(long, value_name = "FILE")]
    pub users_file: Option<PathBuf>,
    /// Run a managed service "default" on a private MariaDB process
    /// (Debian's mariadb-server must be installed) with the --user
    /// accounts: suspended when idle, parked after a longer silence,
    /// woken by the next query. Its data is kept between runs, in
    /// `<state-dir>/services/default/data` unless --spawn-datadir says.
    #[arg(long, conflicts_with = "backend")]
    pub spawn_mariadb: bool,
    /// Datadir for --spawn-mariadb, kept between runs.
    #[arg(
        long,
        value_name = "DIR",
        requires = "spawn_mariadb",
        conflicts_with = "spawn_temporary"
    )]
    pub spawn_datadir: Option<PathBuf>,
    /// With --spawn-mariadb: a throwaway datadir, removed (tables and
    /// all) when Torpor exits.
    #[arg(long, requires = "spawn_mariadb")]
    pub spawn_temporary: bool,
    /// Keep N process servers booted and frozen, so that a service
    /// created through the admin API (driver process) takes one over
    /// and answers in milliseconds (a `[[warm_pools]]` entry; 0: none).
    #[arg(long, value_name = "N")]
    pub warm_pool: Option<usize>,
    /// Seconds without queries before a managed service is suspended
    /// (0: never). Applies to every service (the file's per service
    /// otherwise).
    #[arg(long, value_name = "SECS")]
    pub suspend_after_secs: Option<u64>,
    /// Seconds suspended before a managed service is parked (0: never).
    #[arg(long, value_name = "SECS")]
    pub park_after_secs: Option<u64>,
    /// Where the admin HTTP API listens (`off` disables it); also
    /// TORPOR_ADMIN_LISTEN. Off loopback it needs a token.
    #[arg(long, value_name = "ADDR|off")]
    pub admin_listen: Option<String>,
    /// Bearer token the admin API requires (needed off loopback; empty
    /// counts as none). Visible in `ps`: prefer --admin-token-file or
    /// TORPOR_ADMIN_TOKEN.
    #[arg(long, value_name = "TOKEN")]
    pub admin_token: Option<String>,
    /// A file holding the admin API's bearer token.
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Where Torpor keeps datadirs of process services and secrets.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Worker threads; 0 means one per core.
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Client connections allowed at once.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Seconds in-flight commands get to finish on SIGTERM/SIGINT.
    #[arg(long, value_name = "SECS")]
    pub shutdown_grace_secs: Option<u64>,
    /// Seconds a client has to log in before its socket is closed (as
    /// MariaDB's connect_timeout).
    #[arg(long, value_name = "SECS")]
    pub login_timeout_secs: Option<u64>,
    /// Seconds a client may leave a command half sent before its socket
    /// is closed (default 30, as MariaDB's net_read_timeout).
    #[arg(long, value_name = "SECS")]
    pub net_read_timeout_secs: Option<u64>,
    /// Seconds a client may leave a reply unread before its socket is
    /// closed (default 60, as MariaDB's net_write_timeout).
    #[arg(long, value_name = "SECS")]
    pub net_write_timeout_secs: Option<u64>,
    /// Backend connections open at most (sessions share them).
    #[arg(long, value_name = "N")]
    pub max_backend_connections: Option<usize>,
    /// Backend connections sessions share before more are opened: at it,
    /// a session waits for one to come back, and opens one more only
    /// after --pool-reserve-after-ms.
    #[arg(long, value_name = "N")]
    pub pool_size: Option<usize>,
    /// Milliseconds a session waits at --pool-size before it opens a
    /// connection over it.
    #[arg(long, value_name = "MS")]
    pub pool_reserve_after_ms: Option<u64>,
    /// Seconds a command or login waits for an unreachable backend
    /// (stopped, restarting) before it gets an error; the session stays
    /// open (default 60; 0: no wait).
    #[arg(long, value_name = "SECS")]
    pub outage_hold_secs: Option<u64>,
    /// Seconds a session may sit idle in an open transaction before it
    /// is closed with an error and its transaction rolled back (0: never).
    #[arg(long, value_name = "SECS")]
    pub idle_in_transaction_timeout_secs: Option<u64>,
    /// I/O driver: io_uring where allowed (falling back to epoll), or
    /// forced either way.
    #[arg(long, value_enum, value_name = "DRIVER")]
    pub io_driver: Option<IoDriver>,
    /// Log format.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Log filter, e.g. `info`, `debug`, `torpor=trace` (also RUST_LOG).
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Offer TLS to clients (`on`, the default, or `off`).
    #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
    pub tls: Option<bool>,
    /// The TLS certificate chain (PEM); with --tls-key. Without both, a
    /// self-signed certificate kept in `<state-dir>/tls/`.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The TLS certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Refuse logins over plain TCP with 1045 access denied, as MariaDB
    /// 10.11's require_secure_transport does (the Unix socket is exempt).
    #[arg(long)]
    pub require_secure_transport: bool,
}

fn parse_on_off(value: &str) -> Result<bool, String> {
    match value {
        "on" | "ON" | "1" | "true" => Ok(true),
        "off" | "OFF" | "0" | "false" => Ok(false),
        _ => Err(format!("'{value}': give on or off")),
    }
}

/// The default the configuration gives each option that has one, as
/// `--help` shows it. The flags themselves have no clap default: a flag
/// not given leaves the file's value, so the defaults are written into
/// the help text instead, from [`Config::default`].
pub(super) fn shown_defaults() -> Vec<(&'static str, String)> {
    let config = Config::default();
    let service = ServiceConfig::new("default", DriverKind::Process);
    let name = |value: &dyn Fn() -> Option<clap::builder::PossibleValue>| {
        value().map_or_else(String::new, |v| v.get_name().to_string())
    };
    vec![
        ("listen", config.listen.to_string()),
        ("admin_listen", "127.0.0.1:6034".to_string()),
        ("state_dir", config.state_dir.display().to_string()),
        ("workers", format!("{} (one per core)", config.workers)),
        ("max_connections", config.max_connections.to_string()),
        (
            "shutdown_grace_secs",
            config.shutdown_grace_secs.to_string(),
        ),
        ("login_timeout_secs", config.login_timeout_secs.to_string()),
        (
            "max_backend_connections",
            format!(
                "{} (the backend's max_connections less a reserve)",
                config.max_backend_connections
            ),
        ),
        ("pool_size", format!("{} (none)", config.pool_size)),
        (
            "pool_reserve_after_ms",
            config.pool_reserve_after_ms.to_string(),
        ),
        (
            "idle_in_transaction_timeout_secs",
            format!("{} (never)", config.idle_in_transaction_timeout_secs),
        ),
        ("suspend_after_secs", service.suspend_after_secs.to_string()),
        ("park_after_secs", service.park_after_secs.to_string()),
        ("io_driver", name(&|| config.io_driver.to_possible_value())),
        (
            "log_format",
            name(&|| config.log_format.to_possible_value()),
        ),
        ("log_level", config.log_level.clone()),
        (
            "tls",
            if config.tls.enabled { "on" } else { "off" }.to_string(),
        ),
    ]
}

impl Cli {
    /// The command line, with each option's default in its help.
    pub fn command_with_defaults() -> clap::Command {
        let mut command = Cli::command();
        for (id, default) in shown_defaults() {
            command = command.mut_arg(id, |arg| {
                let shown = format!(" [default: {default}]");
                let help = arg.get_help().map(|h| h.to_string() + &shown);
                let long_help = arg.get_long_help().map(|h| h.to_string() + &shown);
                let arg = match help {
                    Some(help) => arg.help(help),
                    None => arg,
                };
                match long_help {
                    Some(long_help) => arg.long_help(long_help),
                    None => arg,
                }
            });
        }
        command
    }

    /// Parses the process's arguments (with [`Cli::command_with_defaults`]
    /// for `--help`); exits with clap's message on a bad one.
    pub fn parse_with_defaults() -> Cli {
        let matches = Cli::command_with_defaults().get_matches();
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }

    /// The configuration these flags and the environment's secrets
    /// (`TORPOR_USERS`, `TORPOR_ADMIN_TOKEN`) describe: the file's,
    /// overridden.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        self.into_config_with_env(|name| std::env::var(name).ok())
    }

    /// [`Cli::into_config`] with the environment read through `env`.
    pub fn into_config_with_env(
        self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut config = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        if self.spawn_mariadb {
            let mut service = ServiceConfig::new("default", DriverKind::Process);
            service.temporary = self.spawn_temporary;
            service.datadir = self.spawn_datadir.clone();
            config.backend = None;
            config.services = vec![service];
        }
        if let Some(instances) = self.warm_pool {
            config
                .warm_pools
                .retain(|pool| pool.driver != DriverKind::Process);
            if instances > 0 {
                config
                    .warm_pools
                    .push(super::warm_pool::WarmPoolConfig::process(instances));
            }
        }
        if let Some(secs) = self.suspend_after_secs {
            config
                .services
                .iter_mut()
                .for_each(|s| s.suspend_after_secs = secs);
        }
        if let Some(secs) = self.park_after_secs {
            config
                .services
                .iter_mut()
                .for_each(|s| s.park_after_secs = secs);
        }
        let (admin_listen, origin) = match self.admin_listen.clone() {
            Some(addr) => (Some(addr), "--admin-listen"),
            None => (env(ADMIN_LISTEN_ENV), ADMIN_LISTEN_ENV),
        };
        match admin_listen.as_deref() {
            Some("off") => config.admin.listen = None,
            Some(addr) => {
                config.admin.listen = Some(
                    addr.parse()
                        .map_err(|e| ConfigError::Invalid(format!("{origin} '{addr}': {e}")))?,
                )
            }
            // The binary's default (a library user, like the tests, opts
            // in); a port already taken is a warning at start, not a stop.
            None => {
                config.admin.listen = config
                    .admin
                    .listen
                    .or(Some(SocketAddr::from(([127, 0, 0, 1], 6034))))
            }
        }
        if let Some(backend) = config.backend.as_mut() {
            if let Some(path) = &backend.admin_password_file {
                backend.admin_password = Some(secrets::read_secret_file(path)?);
            }
            if let Some(password) = env(secrets::BACKEND_ADMIN_PASSWORD_ENV) {
                backend.admin_password = Some(password);
            }
        }
        if let Some(path) = &self.admin_token_file {
            config.admin.token = Some(secrets::read_secret_file(path)?);
        }
        if let Some(token) = env(secrets::ADMIN_TOKEN_ENV) {
            config.admin.token = Some(token);
        }
        if let Some(token) = self.admin_token {
            config.admin.token = Some(token);
        }
        if let Some(dir) = self.state_dir {
            config.state_dir = dir;
        }
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(path) = self.listen_socket {
            config.listen_socket = Some(path);
        }
        if let Some(address) = self.backend {
            let connect_timeout_ms = config
                .backend
                .as_ref()
                .map_or_else(default_connect_timeout_ms, |b| b.connect_timeout_ms);
            let (admin_user, admin_password, admin_password_file) = config
                .backend
                .as_ref()
                .map(|b| {
                    (
                        b.admin_user.clone(),
                        b.admin_password.clone(),
                        b.admin_password_file.clone(),
                    )
                })
                .unwrap_or_default();
            let (tls, tls_ca, tls_fingerprint) = config
                .backend
                .as_ref()
                .map(|b| (b.tls, b.tls_ca.clone(), b.tls_fingerprint.clone()))
                .unwrap_or_default();
            config.backend = Some(BackendConfig {
                address,
                connect_timeout_ms,
                admin_user,
                admin_password,
                admin_password_file,
                tls,
                tls_ca,
                tls_fingerprint,
            });
        }
        let mut accounts = Vec::new();
        if let Some(path) = &self.users_file {
            let text = secrets::read_secret_file(path)?;
            let origin = format!("--users-file {}", path.display());
            accounts.extend(secrets::parse_user_lines(&text, &origin)?);
        }
        if let Some(text) = env(secrets::USERS_ENV) {
            accounts.extend(secrets::parse_user_lines(&text, secrets::USERS_ENV)?);
        }
        for spec in &self.users {
            accounts.push(secrets::parse_user(spec, "--user")?);
        }
        for (name, secret) in accounts {
            let is_hash = crate::scaler::process::is_native_hash(&secret);
            // A password given here replaces the file's; its grants stay.
            let grants = config
                .users
                .iter()
                .find(|u| u.name == name)
                .and_then(|u| u.grants.clone());
            config.users.retain(|u| u.name != name);
            config.users.push(UserConfig {
                password: (!is_hash).then(|| secret.clone()),
                password_hash: is_hash.then_some(secret),
                name,
                grants,
            });
        }
        if let Some(workers) = self.workers {
            config.workers = workers;
        }
        if let Some(max) = self.max_connections {
            config.max_connections = max;
        }
        if let Some(grace) = self.shutdown_grace_secs {
            config.shutdown_grace_secs = grace;
        }
        if let Some(secs) = self.login_timeout_secs {
            config.login_timeout_secs = secs;
        }
        if let Some(secs) = self.net_read_timeout_secs {
            config.net_read_timeout_secs = secs;
        }
        if let Some(secs) = self.net_write_timeout_secs {
            config.net_write_timeout_secs = secs;
        }
        if let Some(max) = self.max_backend_connections {
            config.max_backend_connections = max;
        }
        if let Some(size) = self.pool_size {
            config.pool_size = size;
        }
        if let Some(ms) = self.pool_reserve_after_ms {
            config.pool_reserve_after_ms = ms;
        }
        if let Some(secs) = self.outage_hold_secs {
            config.outage_hold_secs = secs;
        }
        if let Some(secs) = self.idle_in_transaction_timeout_secs {
            config.idle_in_transaction_timeout_secs = secs;
        }
        if let Some(driver) = self.io_driver {
            config.io_driver = driver;
        }
        if let Some(format) = self.log_format {
            config.log_format = format;
        }
        if let Some(level) = self.log_level {
            config.log_level = level;
        }
        if let Some(on) = self.tls {
            config.tls.enabled = on;
        }
        if let (Some(cert), Some(key)) = (self.tls_cert, self.tls_key) {
            config.tls.cert = Some(cert);
            config.tls.key = Some(key);
        }
        if self.require_secure_transport {
            config.require_secure_transport = true;
        }
        config.validate()?;
        Ok(config)
    }
}
