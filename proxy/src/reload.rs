//! Configuration reload (SIGHUP), in two steps: [`plan`] checks a new
//! configuration against the running one without touching anything, and
//! [`Reloader::reload`] commits a plan. A configuration that does not
//! validate, or that changes what only a restart can change (addresses,
//! worker threads, the set of services, where their data lives), is
//! refused whole with a message naming why; the running one stays.
//!
//! What a reload changes: accounts (new logins see them; sessions already
//! logged in keep going), client and backend connection limits, pool
//! timeouts, replay verification, the admin token, the shutdown grace,
//! the server names (`hosts`) that choose services, and per managed
//! service its suspend, park and wake timers and the accounts created on
//! its backend. Services created through the admin API
//! ([`crate::provision`]) are not the file's: a reload leaves them
//! running and their accounts in place.

use std::sync::{mpsc, Arc};
use std::time::Duration;

use tracing::{info, warn};

use crate::config::{Config, ConfigError, ServiceConfig};
use crate::context::Shared;
use crate::scaler::process;
use crate::scaler::services::{accounts_of, secs};
use crate::service::{Reconfigure, Request};
use crate::settings::Settings;

/// Why a reload was refused; the running configuration stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new configuration cannot be read or is invalid.
    #[error("{0}")]
    Invalid(#[from] ConfigError),
    /// It changes keys that only a restart can change.
    #[error("{} changed, which needs a restart", .0.join(", "))]
    NeedsRestart(Vec<String>),
}

/// A checked reload, ready to commit.
#[derive(Debug)]
pub struct Plan {
    /// The reloadable keys that differ, by their config names.
    pub changed: Vec<String>,
    /// The new accounts and limits.
    settings: Settings,
    /// Per service (by index): its new timers and accounts.
    services: Vec<ServiceChange>,
    /// The configuration the plan applies.
    config: Config,
}

#[derive(Debug)]
struct ServiceChange {
    wake_timeout: Duration,
    reconfigure: Reconfigure,
}

/// What a committed reload did.
#[derive(Debug, Default)]
pub struct ReloadReport {
    /// The keys that changed (empty: the file said what runs already).
    pub changed: Vec<String>,
    /// Parts that are committed but not in effect everywhere yet (e.g.
    /// accounts a suspended backend gets at its next wake).
    pub warnings: Vec<String>,
}

/// Checks `new` against the running `old`: the reloadable keys that
/// differ, or why `new` cannot be applied without a restart.
pub fn plan(old: &Config, new: Config) -> Result<Plan, ReloadError> {
    new.validate()?;
    let fixed = fixed_changes(old, &new);
    if !fixed.is_empty() {
        return Err(ReloadError::NeedsRestart(fixed));
    }
    let settings = Settings::from_config(&new)?;
    let mut changed = Vec::new();
    let mut note = |differs: bool, key: &str| {
        if differs {
            changed.push(key.to_string());
        }
    };
    note(!same_users(old, &new), "users");
    note(
        old.max_connections != new.max_connections,
        "max_connections",
    );
    note(
        old.max_backend_connections != new.max_backend_connections,
        "max_backend_connections",
    );
    note(old.pool_size != new.pool_size, "pool_size");
    note(
        old.pool_reserve_after_ms != new.pool_reserve_after_ms,
        "pool_reserve_after_ms",
    );
    note(
        old.pool_wait_timeout_ms != new.pool_wait_timeout_ms,
        "pool_wait_timeout_ms",
    );
    note(
        old.outage_hold_secs != new.outage_hold_secs,
        "outage_hold_secs",
    );
    note(
        old.backend_idle_timeout_secs != new.backend_idle_timeout_secs,
        "backend_idle_timeout_secs",
    );
    note(old.verify_replay != new.verify_replay, "verify_replay");
    // The certificate files are read again at every reload (Settings):
    // a certificate renewed in place reaches new connections with a
    // SIGHUP even when no key changed.
    note(old.tls != new.tls, "tls");
    note(
        old.require_secure_transport != new.require_secure_transport,
        "require_secure_transport",
    );
    note(old.admin.token != new.admin.token, "admin.token");
    note(
        old.shutdown_grace_secs != new.shutdown_grace_secs,
        "shutdown_grace_secs",
    );
    note(
        old.login_timeout_secs != new.login_timeout_secs,
        "login_timeout_secs",
    );
    note(
        old.net_read_timeout_secs != new.net_read_timeout_secs,
        "net_read_timeout_secs",
    );
    note(
        old.net_write_timeout_secs != new.net_write_timeout_secs,
        "net_write_timeout_secs",
    );
    note(
        old.transaction_replay_max_bytes != new.transaction_replay_max_bytes,
        "transaction_replay_max_bytes",
    );
    note(
        old.idle_in_transaction_timeout_secs != new.idle_in_transaction_timeout_secs,
        "idle_in_transaction_timeout_secs",
    );
    let mut services = Vec::new();
    for (before, after) in old.services.iter().zip(&new.services) {
        let name = &after.name;
        let mut note = |differs: bool, key: &str| {
            if differs {
                changed.push(format!("services.{name}.{key}"));
            }
        };
        note(
            before.suspend_after_secs != after.suspend_after_secs,
            "suspend_after_secs",
        );
        note(
            before.park_after_secs != after.park_after_secs,
            "park_after_secs",
        );
        note(
            before.wake_timeout_secs != after.wake_timeout_secs,
            "wake_timeout_secs",
        );
        note(before.hosts != after.hosts, "hosts");
        let accounts_before = process::account_sql(&accounts_of(old, before));
        let accounts_after = process::account_sql(&accounts_of(&new, after));
        let accounts_changed = accounts_before != accounts_after;
        note(accounts_changed, "accounts");
        services.push(ServiceChange {
            wake_timeout: Duration::from_secs(after.wake_timeout_secs),
            reconfigure: Reconfigure {
                suspend_after: secs(after.suspend_after_secs),
                park_after: secs(after.park_after_secs),
                accounts_sql: accounts_changed.then_some(accounts_after),
            },
        });
    }
    Ok(Plan {
        changed,
        settings,
        services,
        config: new,
    })
}

/// The keys that differ and that only a restart can change.
fn fixed_changes(old: &Config, new: &Config) -> Vec<String> {
    // Every key is either compared here or reloaded in `plan`: this
    // pattern names them all, so a new key does not compile until it is
    // given one of the two (a key in neither would be silently ignored).
    let Config {
        listen: _,
        listen_socket: _,
        workers: _,
        io_driver: _,
        log_format: _,
        log_level: _,
        state_dir: _,
        accounts_refresh_secs: _,
        admin: _,
        backend: _,
        services: _,
        hosts: _,
        warm_pools: _,
        // Reloaded (see `plan` and `Settings`):
        users: _,
        max_connections: _,
        max_backend_connections: _,
        pool_size: _,
        pool_reserve_after_ms: _,
        pool_wait_timeout_ms: _,
        outage_hold_secs: _,
        backend_idle_timeout_secs: _,
        verify_replay: _,
        shutdown_grace_secs: _,
        login_timeout_secs: _,
        net_read_timeout_secs: _,
        net_write_timeout_secs: _,
        transaction_replay_max_bytes: _,
        idle_in_transaction_timeout_secs: _,
        tls: _,
        require_secure_transport: _,
    } = new;
    let mut fixed = Vec::new();
    let mut note = |differs: bool, key: String| {
        if differs {
            fixed.push(key);
        }
    };
    note(old.listen != new.listen, "listen".into());
    note(
        old.listen_socket != new.listen_socket,
        "listen_socket".into(),
    );
    note(old.workers != new.workers, "workers".into());
    note(old.io_driver != new.io_driver, "io_driver".into());
    note(old.log_format != new.log_format, "log_format".into());
    note(old.log_level != new.log_level, "log_level".into());
    note(old.state_dir != new.state_dir, "state_dir".into());
    note(
        old.accounts_refresh_secs != new.accounts_refresh_secs,
        "accounts_refresh_secs".into(),
    );
    note(old.admin.listen != new.admin.listen, "admin.listen".into());
    let backend = |c: &Config| {
        c.backend.as_ref().map(|b| {
            (
                b.address.clone(),
                b.connect_timeout_ms,
                b.admin_user.clone(),
                b.admin_password.clone(),
                b.admin_password_file.clone(),
            )
        })
    };
    note(backend(old) != backend(new), "backend".into());
    note(old.hosts != new.hosts, "[[hosts]]".into());
    note(old.warm_pools != new.warm_pools, "[[warm_pools]]".into());
    let names = |c: &Config| {
        c.services
            .iter()
            .map(|s| s.name.clone())
            .collect::<Vec<_>>()
    };
    if names(old) != names(new) {
        note(true, "the list of [[services]]".into());
        return fixed;
    }
    for (before, after) in old.services.iter().zip(&new.services) {
        for key in fixed_service_changes(before, after) {
            note(true, format!("services.{}.{key}", after.name));
        }
    }
    fixed
}

/// A service's keys that differ and that only a restart can change: what
/// runs its backend, where its data lives and the resources it was
/// created with.
fn fixed_service_changes(before: &ServiceConfig, after: &ServiceConfig) -> Vec<&'static str> {
    let mut keys = Vec::new();
    if before.driver != after.driver {
        keys.push("driver");
    }
    if before.datadir != after.datadir {
        keys.push("datadir");
    }
    if before.address != after.address {
        keys.push("address");
    }
    if (before.tls, &before.tls_ca, &before.tls_fingerprint)
        != (after.tls, &after.tls_ca, &after.tls_fingerprint)
    {
        keys.push("tls");
    }
    if before.image != after.image {
        keys.push("image");
    }
    if before.cpus != after.cpus {
        keys.push("cpus");
    }
    if before.memory_mib != after.memory_mib {
        keys.push("memory_mib");
    }
    if before.buffer_pool_mib != after.buffer_pool_mib {
        keys.push("buffer_pool_mib");
    }
    if before.suspended_buffer_pool_mib != after.suspended_buffer_pool_mib {
        keys.push("suspended_buffer_pool_mib");
    }
    if before.runs_on != after.runs_on {
        keys.push("runs_on");
    }
    // The driver keeps the volume it mounted at its first start.
    if before.storage != after.storage {
        keys.push("storage");
    }
    keys
}

/// Users compared by what logins see: names, secrets and routes.
fn same_users(old: &Config, new: &Config) -> bool {
    let key = |c: &Config| {
        let mut users: Vec<_> = c
            .users
            .iter()
            .map(|u| {
                let route: Vec<usize> = c
                    .services
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.users.contains(&u.name))
                    .map(|(index, _)| index)
                    .collect();
                (
                    u.name.clone(),
                    u.password.clone(),
                    u.password_hash.clone(),
                    route,
                )
            })
            .collect();
        users.sort();
        users
    };
    key(old) == key(new)
}

/// Applies reloads to a running proxy.
#[derive(Debug, Clone)]
pub struct Reloader {
    shared: Arc<Shared>,
}

/// How long a service's actor gets to take new timers and accounts (it
/// may be in the middle of a wake).
const ACTOR_ANSWER: Duration = Duration::from_secs(30);

impl Reloader {
    pub(crate) fn new(shared: Arc<Shared>) -> Reloader {
        Reloader { shared }
    }

    /// Checks `new` ([`plan`]) and, when it can be applied, commits it:
    /// services first (their backends get new accounts before logins may
    /// use them), then accounts and limits in one swap.
    pub fn reload(&self, new: Config) -> Result<ReloadReport, ReloadError> {
        // One reload at a time: the lock is held from plan to commit.
        let mut applied = match self.shared.applied.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let plan = plan(&applied, new)?;
        let mut report = ReloadReport {
            changed: plan.changed,
            warnings: Vec::new(),
        };
        for (service, change) in self.shared.services.all().iter().zip(plan.services) {
            service.set_wake_timeout(change.wake_timeout);
            let (tx, rx) = mpsc::channel();
            if !service.request(Request::Reconfigure(Box::new(change.reconfigure), tx)) {
                continue; // static backend: no actor, nothing to tell
            }
            match rx.recv_timeout(ACTOR_ANSWER) {
                Ok(Ok(())) => {}
                Ok(Err(why)) => report
                    .warnings
                    .push(format!("service {}: {why}", service.name)),
                Err(_) => report.warnings.push(format!(
                    "service {}: its scaler did not answer; the change applies when it does",
                    service.name
                )),
            }
        }
        // Accounts of services created through the admin API stay
        // (crate::provision): the new file's plus theirs.
        let settings = self
            .shared
            .provisioned
            .settings_with(&self.shared, &plan.config)
            .unwrap_or(plan.settings);
        self.shared.replace_settings(settings);
        *applied = plan.config;
        Ok(report)
    }

    /// [`Reloader::reload`] with the outcome logged: what changed, or why
    /// the reload was refused and the running configuration stays.
    pub fn reload_and_log(&self, new: Result<Config, ConfigError>) {
        let outcome = new
            .map_err(ReloadError::from)
            .and_then(|config| self.reload(config));
        match outcome {
            Ok(report) if report.changed.is_empty() => {
                info!("config reloaded: nothing changed")
            }
            Ok(report) => {
                info!(changed = ?report.changed, "config reloaded");
                for warning in report.warnings {
                    warn!("config reload: {warning}");
                }
            }
            Err(e) => warn!("config reload refused, the running configuration stays: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DriverKind, UserConfig};

    fn user(name: &str, password: &str) -> UserConfig {
        UserConfig {
            name: name.into(),
            password: Some(password.into()),
            password_hash: None,
            grants: None,
        }
    }

    fn base() -> Config {
        Config {
            services: vec![ServiceConfig::new("db", DriverKind::Process)],
            users: vec![user("app", "secret")],
            ..Config::default()
        }
    }

    #[test]
    fn the_same_config_changes_nothing() {
        let plan = plan(&base(), base()).unwrap();
        assert!(plan.changed.is_empty(), "{:?}", plan.changed);
        assert!(plan.services[0].reconfigure.accounts_sql.is_none());
    }

    #[test]
    fn users_limits_and_timers_reload() {
        let mut new = base();
        new.users.push(user("report", "r"));
        new.users[0].password = Some("changed".into());
        new.max_connections = 7;
        new.services[0].suspend_after_secs = 0;
        new.services[0].wake_timeout_secs = 3;
        let plan = plan(&base(), new).unwrap();
        assert_eq!(
            plan.changed,
            [
                "users",
                "max_connections",
                "services.db.suspend_after_secs",
                "services.db.wake_timeout_secs",
                "services.db.accounts"
            ]
        );
        let change = &plan.services[0];
        assert_eq!(change.reconfigure.suspend_after, None);
        assert_eq!(change.wake_timeout, Duration::from_secs(3));
        let sql = change.reconfigure.accounts_sql.as_ref().unwrap().join(";");
        assert!(
            sql.contains("'report'") && sql.contains("'changed'"),
            "{sql}"
        );
        assert_eq!(plan.settings.max_connections, 7);
        assert!(plan.settings.users.get(b"report").is_some());
    }

    #[test]
    fn the_replay_budget_reloads() {
        let mut new = base();
        new.transaction_replay_max_bytes = 0;
        let plan = plan(&base(), new).unwrap();
        assert_eq!(plan.changed, ["transaction_replay_max_bytes"]);
        assert_eq!(plan.settings.transaction_replay_max_bytes, 0);
    }

    #[test]
    fn restart_only_keys_are_refused_by_name() {
        let mut new = base();
        new.listen = "127.0.0.1:1".parse().unwrap();
        new.services[0].datadir = Some("/elsewhere".into());
        new.max_connections = 1; // reloadable, but the whole reload is refused
        let err = plan(&base(), new).unwrap_err().to_string();
        assert_eq!(
            err,
            "listen, services.db.datadir changed, which needs a restart"
        );
        let mut grows = base();
        grows.services[0].storage = Some(crate::config::storage::StorageConfig::default());
        let err = plan(&base(), grows).unwrap_err().to_string();
        assert_eq!(err, "services.db.storage changed, which needs a restart");
        let mut new = base();
        new.services
            .push(ServiceConfig::new("other", DriverKind::Docker));
        new.services[0].users = vec!["app".into()];
        new.users.push(user("o", "o"));
        new.services[1].users = vec!["o".into()];
        let err = plan(&base(), new).unwrap_err().to_string();
        assert!(err.contains("[[services]]"), "{err}");
    }

    #[test]
    fn an_invalid_config_is_refused_with_its_reason() {
        let mut new = base();
        new.users[0].password_hash = Some("*00".into());
        let err = plan(&base(), new).unwrap_err().to_string();
        assert!(err.contains("exactly one of password"), "{err}");
        let mut new = base();
        new.users[0].password = None;
        new.users[0].password_hash = Some("*not-a-hash".into());
        let err = plan(&base(), new).unwrap_err().to_string();
        assert!(err.contains("user 'app'"), "{err}");
    }
}
