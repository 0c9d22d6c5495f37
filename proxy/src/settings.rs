//! The part of the configuration that a reload (SIGHUP) may change while
//! Torpor runs: accounts and limits. Workers read it through
//! [`crate::context::Shared::settings`], which is one lock-free pointer
//! load; the keys that need a restart stay in `Shared::config`.

use std::collections::HashMap;
use std::time::Duration;

use crate::config::{Config, ConfigError};
use crate::users::UserStore;

/// Reloadable settings, derived from one [`Config`].
#[derive(Debug)]
pub struct Settings {
    /// Accounts clients may log in as, and the service each routes to.
    pub users: UserStore,
    /// Server names (SNI, lower case) that choose a service, by index.
    pub hosts: HashMap<String, usize>,
    /// Client connections allowed at once, over all workers.
    pub max_connections: usize,
    /// How long a session waits for a free backend connection.
    pub pool_wait: Duration,
    /// How long a command or login waits for an unreachable backend.
    pub outage_hold: Duration,
    /// Each worker's share of the backend connection bound.
    pub backend_connections_per_worker: usize,
    /// Each worker's share of `pool_size` (0: none), and how long a
    /// session waits at it before opening one more.
    pub pool_size: PoolSize,
    /// Idle backend connections are closed after this long.
    pub backend_idle_timeout: Duration,
    /// Read back replayed session state after each move.
    pub verify_replay: bool,
    /// Bearer token the admin API requires, if any.
    pub admin_token: Option<String>,
    /// How long a client has from the greeting to proving its password.
    pub login_timeout: Duration,
    /// How long a client may leave a command half sent.
    pub net_read_timeout: Duration,
    /// How long a write may wait for a client that does not read.
    pub net_write_timeout: Duration,
    /// On SIGTERM/SIGINT, how long in-flight commands may take.
    pub shutdown_grace: Duration,
    /// Bytes of an open transaction journaled for replay (0: off).
    pub transaction_replay_max_bytes: usize,
    /// How long a session may sit idle in an open transaction; `None`:
    /// as long as it likes.
    pub idle_in_transaction_timeout: Option<Duration>,
    /// TLS for clients that ask for it; `None`: TLS off. A reload reads
    /// the certificate again: new connections get the new one.
    pub tls: Option<crate::tls::TlsSettings>,
    /// Plain TCP logins are refused.
    pub require_secure_transport: bool,
}

/// The pool's target size on one worker (see `Config::pool_size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolSize {
    /// Connections sessions share before more are opened (0: no target).
    pub per_worker: usize,
    /// How long a session waits at the target before opening one more.
    pub reserve_after: Duration,
}

impl Settings {
    /// The index of the service a TLS client's server name (SNI)
    /// chooses, if it names one (DNS names are case-insensitive).
    pub fn service_named(&self, server_name: Option<&str>) -> Option<usize> {
        let name = server_name?;
        self.hosts
            .get(name)
            .or_else(|| self.hosts.get(&name.to_ascii_lowercase()))
            .copied()
    }

    /// The settings `config` describes; hashes plaintext passwords.
    pub fn from_config(config: &Config) -> Result<Settings, ConfigError> {
        let users = UserStore::from_config(&config.users, |user| {
            let listing: Vec<usize> = config
                .services
                .iter()
                .enumerate()
                .filter(|(_, s)| s.users.iter().any(|u| u == user))
                .map(|(index, _)| index)
                .collect();
            if listing.is_empty() {
                vec![0]
            } else {
                listing
            }
        })?;
        let hosts = config
            .services
            .iter()
            .enumerate()
            .flat_map(|(index, s)| s.hosts.iter().map(move |h| (h.to_ascii_lowercase(), index)))
            .collect();
        Ok(Settings {
            users,
            hosts,
            max_connections: config.max_connections,
            pool_wait: Duration::from_millis(config.pool_wait_timeout_ms),
            outage_hold: Duration::from_secs(config.outage_hold_secs),
            backend_connections_per_worker: config.backend_connections_per_worker(),
            pool_size: PoolSize {
                per_worker: config.pool_size_per_worker(),
                reserve_after: Duration::from_millis(config.pool_reserve_after_ms),
            },
            backend_idle_timeout: Duration::from_secs(config.backend_idle_timeout_secs),
            verify_replay: cfg!(debug_assertions) || config.verify_replay,
            admin_token: config.admin.token().map(str::to_string),
            login_timeout: Duration::from_secs(config.login_timeout_secs),
            net_read_timeout: Duration::from_secs(config.net_read_timeout_secs),
            net_write_timeout: Duration::from_secs(config.net_write_timeout_secs),
            shutdown_grace: config.shutdown_grace(),
            transaction_replay_max_bytes: config.transaction_replay_max_bytes,
            idle_in_transaction_timeout: (config.idle_in_transaction_timeout_secs > 0)
                .then(|| Duration::from_secs(config.idle_in_transaction_timeout_secs)),
            tls: crate::tls::TlsSettings::load(&config.tls, &config.state_dir)?,
            require_secure_transport: config.require_secure_transport,
        })
    }
}
