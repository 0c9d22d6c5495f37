//! Turns the configuration's services into running ones: a [`Service`]
//! for the workers, and for each managed service a driver and an actor
//! thread. A `[backend]` Torpor does not manage becomes a static service
//! named `default`, always active.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use event_listener::Event;
use rand::Rng;

use super::actor::{self, Plan, Sizing, Timers};
use super::docker::{DockerDriver, DockerOptions};
use super::driver::{Driver, DriverError, Resources};
use super::policy::Autoscale;
use super::process::{self, Account};
use super::process_driver::{ProcessDriver, ProcessOptions};
use super::resize::PoolSizing;
use crate::accounts::keeper::AdminLogin;
use crate::config::hosts::{with_local, HostConfig, LOCAL_HOST};
use crate::config::{BackendTlsOptions, Config, ConfigError, DriverKind, ServiceConfig};
use crate::endpoint::Endpoint;
use crate::provision::warm::WarmBackend;
use crate::registry::Registry;
use crate::service::lifecycle::State;
use crate::service::{Request, Service};
use crate::tls::backend::BackendTls;

/// The running services and their actor threads.
pub struct Services {
    /// One per configured service, in order.
    pub services: Vec<Arc<Service>>,
    /// The actors (empty for a static backend).
    pub actors: Vec<JoinHandle<()>>,
    /// Temporary datadirs, removed when Torpor stops.
    pub temporary: Vec<tempfile::TempDir>,
}

impl Drop for Services {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Services {
    /// Asks every actor to stop its backend (data kept) and waits for it.
    pub fn shutdown(&mut self) {
        for service in &self.services {
            service.request(Request::Shutdown);
        }
        for actor in self.actors.drain(..) {
            let _ = actor.join();
        }
    }
}

/// Builds the services of `config` for `workers` workers; their actors
/// read what keeps them awake from `registry`.
pub fn build(
    config: &Config,
    workers: usize,
    nudge: &Arc<Event>,
    registry: &Arc<Registry>,
) -> Result<Services, ConfigError> {
    let mut built = Services {
        services: Vec::new(),
        actors: Vec::new(),
        temporary: Vec::new(),
    };
    if let Some(backend) = &config.backend {
        let service = static_service(
            0,
            "default",
            &backend.address,
            Duration::from_millis(backend.connect_timeout_ms),
            &backend.tls_options(),
            workers,
            nudge,
        )?;
        if let Some(user) = &backend.admin_user {
            if let Some(endpoint) = service.address() {
                service.accounts.set_access(Some(AdminLogin {
                    endpoint,
                    user: user.clone(),
                    password: backend.admin_password.clone().unwrap_or_default(),
                }));
            }
        }
        built.services.push(service);
        return Ok(built);
    }
    for (index, service_config) in config.services.iter().enumerate() {
        if let (DriverKind::Static, Some(address)) =
            (service_config.driver, &service_config.address)
        {
            built.services.push(static_service(
                index,
                &service_config.name,
                address,
                Duration::from_millis(5_000),
                &service_config.tls_options(),
                workers,
                nudge,
            )?);
            continue;
        }
        let accounts = accounts_of(config, service_config);
        let service = start_managed(
            config,
            service_config,
            accounts,
            index,
            workers,
            nudge,
            registry,
            &mut built,
            None,
        )?;
        built.services.push(service);
    }
    Ok(built)
}

/// Starts a managed service at `index`: its [`Service`], driver and actor
/// thread (the actor joins `built`'s), with `accounts` created on its
/// backend; its backend starts at once, in the background: `warm`, a
/// warm pool's frozen server, is taken over instead of booting one.
#[allow(clippy::too_many_arguments)]
pub fn start_managed(
    config: &Config,
    service_config: &ServiceConfig,
    accounts: Vec<Account>,
    index: usize,
    workers: usize,
    nudge: &Arc<Event>,
    registry: &Arc<Registry>,
    built: &mut Services,
    warm: Option<WarmBackend>,
) -> Result<Arc<Service>, ConfigError> {
    let (tx, rx) = mpsc::channel();
    let service = Arc::new(Service::new(
        index,
        &service_config.name,
        service_config.driver.name(),
        State::Parked,
        None,
        Duration::from_secs(5),
        Duration::from_secs(service_config.wake_timeout_secs),
        workers,
        Arc::clone(nudge),
        Some(tx),
    ));
    // A managed backend's address is known once it runs: its
    // certificate is checked against that address's host.
    if let Some(tls) = BackendTls::load(&service_config.tls_options(), None)? {
        service.set_backend_tls(tls);
    }
    let from_warm = warm.is_some();
    let (driver, startup_sql) = driver_for(config, service_config, accounts, built, warm)?;
    let mib = 1024 * 1024;
    let timers = Timers {
        suspend_after: secs(service_config.suspend_after_secs),
        park_after: secs(service_config.park_after_secs),
        drain_timeout: Duration::from_secs(5),
        buffer_pool_bytes: service_config.buffer_pool_mib * mib,
        suspended_buffer_pool_bytes: service_config.suspended_buffer_pool_mib * mib,
    };
    let plan = Plan {
        timers,
        sizing: sizing_of(service_config),
        startup_sql,
        temporary: service_config.temporary,
        from_warm,
    };
    let handle = actor::spawn(Arc::clone(&service), driver, plan, Arc::clone(registry), rx)
        .map_err(|e| ConfigError::Invalid(format!("cannot start the scaler thread: {e}")))?;
    // A service whose greeting and baselines were kept when Torpor last
    // stopped stays asleep until its first query: a restart of Torpor
    // wakes nothing. Otherwise the backend starts now, in the
    // background: the first login needs its greeting anyway.
    let kept =
        !service_config.temporary && crate::service::kept::restore(&service, &config.state_dir);
    if !kept {
        service.request(Request::Wake);
    }
    built.actors.push(handle);
    Ok(service)
}

/// Where a service starts and how it scales, from its config.
pub fn sizing_of(service: &ServiceConfig) -> Sizing {
    let start = Resources {
        cpus: service.cpus,
        memory_mib: service.memory_mib,
    };
    let autoscale = service.autoscale.as_ref().map(|a| {
        let policy = Autoscale {
            min: Resources {
                cpus: a.min_cpus,
                memory_mib: a.min_memory_mib,
            },
            max: Resources {
                cpus: a.max_cpus,
                memory_mib: a.max_memory_mib,
            },
            cpu_step: a.cpu_step,
            memory_step_mib: a.memory_step_mib,
            up_over: Duration::from_millis(a.scale_up_after_ms),
            down_over: Duration::from_secs(a.scale_down_after_secs),
            ..Autoscale::default()
        };
        (policy, a.enabled)
    });
    let share = if service.memory_mib == 0 {
        0.0
    } else {
        (service.buffer_pool_mib as f64 / service.memory_mib as f64).min(1.0)
    };
    Sizing {
        start,
        autoscale,
        pool: PoolSizing {
            share,
            reload_after_grow: service
                .autoscale
                .as_ref()
                .is_none_or(|a| a.reload_after_grow),
        },
    }
}

/// A backend Torpor does not manage, always active, at `address`.
fn static_service(
    index: usize,
    name: &str,
    address: &str,
    connect_timeout: Duration,
    tls: &BackendTlsOptions<'_>,
    workers: usize,
    nudge: &Arc<Event>,
) -> Result<Arc<Service>, ConfigError> {
    let endpoint = Endpoint::parse(address)
        .map_err(|e| ConfigError::Invalid(format!("{} address '{address}': {e}", tls.section)))?;
    let service = Arc::new(Service::new(
        index,
        name,
        "static",
        State::Active,
        Some(endpoint),
        connect_timeout,
        Duration::ZERO,
        workers,
        Arc::clone(nudge),
        None,
    ));
    if let Some(tls) = BackendTls::load(tls, Some(address))? {
        service.set_backend_tls(tls);
    }
    Ok(service)
}

/// `Some(value seconds)`, or `None` for 0 ("never").
pub fn secs(value: u64) -> Option<Duration> {
    (value > 0).then(|| Duration::from_secs(value))
}

/// The accounts of the users routed to `service`, to create on its
/// backend with the same passwords (or hashes).
pub fn accounts_of(config: &Config, service: &ServiceConfig) -> Vec<Account> {
    let only = config.services.len() == 1 && service.users.is_empty();
    config
        .users
        .iter()
        .filter(|u| only || service.users.contains(&u.name))
        .filter_map(|u| {
            Some(Account {
                user: u.name.clone(),
                password: u.password.clone().or_else(|| u.password_hash.clone())?,
                grants: u.grants.clone().unwrap_or_else(process::default_grants),
            })
        })
        .collect()
}

fn driver_for(
    config: &Config,
    service: &ServiceConfig,
    accounts: Vec<Account>,
    built: &mut Services,
    warm: Option<WarmBackend>,
) -> Result<(Box<dyn Driver>, actor::StartupSql), ConfigError> {
    let taking_over = |e: DriverError| {
        ConfigError::Invalid(format!(
            "service '{}': taking over a warm pool's server: {e}",
            service.name
        ))
    };
    let service_dir = config.state_dir.join("services").join(&service.name);
    match service.driver {
        DriverKind::Static => Err(ConfigError::Invalid(format!(
            "service '{}': a static backend has no driver",
            service.name
        ))),
        DriverKind::Process => {
            process::ensure_installed().map_err(|e| ConfigError::Invalid(e.to_string()))?;
            let (datadir, admin_password) = if service.temporary {
                let dir = tempfile::Builder::new()
                    .prefix("torpor-mariadb-data-")
                    .tempdir()
                    .map_err(|e| ConfigError::Invalid(format!("temporary datadir: {e}")))?;
                let path = dir.path().to_path_buf();
                built.temporary.push(dir);
                tracing::warn!(
                    service = %service.name,
                    datadir = %path.display(),
                    "the service's datadir is temporary: its tables are removed when Torpor exits"
                );
                (path, random_secret())
            } else {
                let datadir = service
                    .datadir
                    .clone()
                    .unwrap_or_else(|| service_dir.join("data"));
                tracing::info!(
                    service = %service.name,
                    datadir = %datadir.display(),
                    "the service keeps its data in its datadir, across restarts"
                );
                (datadir, admin_secret(&service_dir)?)
            };
            let accounts_copy = accounts.clone();
            let mut driver = ProcessDriver::new(ProcessOptions {
                datadir,
                accounts,
                admin_password,
                buffer_pool: format!("{}M", service.buffer_pool_mib),
                ready_timeout: Duration::from_secs(service.wake_timeout_secs),
                // Limits only for a service that scales: a fixed one runs
                // as mariadbd always did here.
                limits: service.autoscale.as_ref().map(|_| Resources {
                    cpus: service.cpus,
                    memory_mib: service.memory_mib,
                }),
                cgroup_name: format!("torpor.{}.{}", service.name, std::process::id()),
                service: service.name.clone(),
                hosts: config
                    .hosts
                    .iter()
                    .filter(|host| host.base_dir.is_some())
                    .cloned()
                    .collect(),
                storage: service.storage.clone(),
            });
            // Accounts are created at every boot through --init-file; a
            // warm pool's server booted with the admin account only, and
            // gets them once it has been taken over.
            let startup = actor::StartupSql {
                always: Vec::new(),
                accounts: process::account_sql(&accounts_copy),
                accounts_after_start: warm.is_some(),
            };
            match warm {
                Some(WarmBackend::Process(process)) => {
                    driver.adopt(process).map_err(taking_over)?
                }
                Some(other) => return Err(taking_over(mismatched(other))),
                None => {}
            }
            Ok((Box::new(driver), startup))
        }
        DriverKind::Docker => {
            let admin_password = if service.temporary {
                random_secret()
            } else {
                admin_secret(&service_dir)?
            };
            let mut options = DockerOptions::new(&service.name, admin_password);
            options.image = service.image.clone();
            options.resources = Resources {
                cpus: service.cpus,
                memory_mib: service.memory_mib,
            };
            options.buffer_pool = format!("{}M", service.buffer_pool_mib);
            // A first start initializes the volume: allow it more than a wake.
            options.ready_timeout = Duration::from_secs(service.wake_timeout_secs.max(120));
            options.host = service_host(config, service, &service_dir)?;
            // Sessions reach the server through its socket in a folder
            // shared with the container (on Torpor's default engine),
            // unless the path is too long for a socket address (108 bytes
            // with its terminating NUL).
            let socket_dir = service_dir.join("run");
            if options.host.engine.is_some() {
                // Another engine's containers are reached over TCP.
            } else if socket_dir.join("mysqld.sock").as_os_str().len() < 100 {
                options.socket_dir = Some(socket_dir);
            } else {
                tracing::info!(
                    service = %service.name,
                    dir = %socket_dir.display(),
                    "the state folder's path is too long for a socket: sessions reach the container over TCP"
                );
            }
            // A relocation records there which container is the service's.
            options.state_dir = Some(service_dir.clone());
            options.storage = service.storage.clone();
            let mut driver = DockerDriver::new(options)
                .map_err(|e| ConfigError::Invalid(format!("service '{}': {e}", service.name)))?;
            match warm {
                Some(WarmBackend::Docker(suffix)) => {
                    driver.adopt_warm(&suffix).map_err(taking_over)?
                }
                Some(other) => return Err(taking_over(mismatched(other))),
                None => {}
            }
            // The image creates only root: the service's accounts (and
            // the `test` schema the process driver has too) are made, or
            // updated, after every fresh start.
            let startup = actor::StartupSql {
                always: vec!["CREATE DATABASE IF NOT EXISTS test".to_string()],
                accounts: process::account_sql(&accounts),
                accounts_after_start: true,
            };
            Ok((Box::new(driver), startup))
        }
    }
}

/// A warm pool's server handed to a service of another driver (a bug).
fn mismatched(warm: WarmBackend) -> DriverError {
    DriverError::Failed(format!("a warm pool's server of another driver: {warm:?}"))
}

/// The host a docker service runs on: where its last relocation put it
/// (its state folder says), else its `runs_on`, else `local`.
fn service_host(
    config: &Config,
    service: &ServiceConfig,
    service_dir: &Path,
) -> Result<HostConfig, ConfigError> {
    let named = crate::scaler::docker::placed_host(service_dir)
        .or_else(|| service.runs_on.clone())
        .unwrap_or_else(|| LOCAL_HOST.to_string());
    with_local(&config.hosts)
        .into_iter()
        .find(|host| host.name == named)
        .ok_or_else(|| {
            ConfigError::Invalid(format!(
                "service '{}' runs on host '{named}' (its state folder says so), which no [[hosts]] entry names any more",
                service.name
            ))
        })
}

/// 32 random alphanumeric characters.
pub(crate) fn random_secret() -> String {
    let mut rng = rand::rng();
    (0..32)
        .map(|_| {
            const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
            char::from(CHARS[rng.random_range(0..CHARS.len())])
        })
        .collect()
}

/// The scaler's admin password for a service: kept in its state folder
/// (mode 0600) so that a parked backend's accounts still match after
/// Torpor restarts.
fn admin_secret(service_dir: &Path) -> Result<String, ConfigError> {
    let path: PathBuf = service_dir.join("admin.secret");
    if let Ok(secret) = std::fs::read_to_string(&path) {
        let secret = secret.trim().to_string();
        if !secret.is_empty() {
            return Ok(secret);
        }
    }
    let secret = random_secret();
    keep_admin_secret(service_dir, &secret)?;
    Ok(secret)
}

/// Keeps `secret` as the scaler's admin password for the service with
/// this state folder (mode 0600), e.g. the one a warm pool's instance
/// was started with, before the service's driver is made.
pub(crate) fn keep_admin_secret(service_dir: &Path, secret: &str) -> Result<(), ConfigError> {
    let path: PathBuf = service_dir.join("admin.secret");
    let fail = |e: std::io::Error| ConfigError::Invalid(format!("{}: {e}", path.display()));
    std::fs::create_dir_all(service_dir).map_err(fail)?;
    let mut file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(fail)?
    };
    file.write_all(secret.as_bytes()).map_err(fail)
}

/// Removes a managed service's backend and its data (the datadir, or
/// the container and its volume), through the driver that ran it; its
/// actor must have stopped first.
pub fn destroy_backend(config: &Config, service: &ServiceConfig) -> Result<(), ConfigError> {
    let mut scratch = Services {
        services: Vec::new(),
        actors: Vec::new(),
        temporary: Vec::new(),
    };
    let (mut driver, _) = driver_for(config, service, Vec::new(), &mut scratch, None)?;
    driver
        .destroy()
        .map_err(|e| ConfigError::Invalid(format!("service '{}': {e}", service.name)))
}
