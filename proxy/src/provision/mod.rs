//! Services created while Torpor runs (`POST /services`) and deleted
//! (`DELETE /services/{name}?data=keep|drop`).
//!
//! - [`spec`]: the request body, checked as the config file's
//!   `[[services]]` entry and `[[users]]` would be.
//! - [`store`]: each created service's body kept as
//!   `state_dir/provisioned/<name>.json`, read back at start.
//! - [`api`]: the admin API's routes.
//!
//! A created service runs as a config file's would (same driver, actor
//! and state folder `state_dir/services/<name>/`); it joins
//! [`crate::service::list::ServiceList`] with the next index and its
//! accounts join the login table, which is rebuilt from the config file
//! plus the created services at every change and every reload
//! ([`Provisioned::settings_with`]).

pub mod api;
pub mod retire;
pub mod spec;
pub mod store;
pub mod warm;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tracing::{info, warn};

use crate::config::{Config, ConfigError, ServiceConfig};
use crate::context::Shared;
use crate::scaler::services::{self, Services};
use crate::service::Service;
use crate::settings::Settings;
use spec::ServiceSpec;

/// Why a create or a delete was refused; each maps to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// The body or the parameters are wrong (400).
    #[error("{0}")]
    Invalid(String),
    /// No such service (404).
    #[error("no service named '{0}'")]
    NotFound(String),
    /// It clashes with what runs (409).
    #[error("{0}")]
    Conflict(String),
    /// Torpor could not do it (500): files, threads, the driver.
    #[error("{0}")]
    Failed(String),
}

impl ProvisionError {
    /// The HTTP status the admin API answers with.
    pub fn status(&self) -> u16 {
        match self {
            ProvisionError::Invalid(_) => 400,
            ProvisionError::NotFound(_) => 404,
            ProvisionError::Conflict(_) => 409,
            ProvisionError::Failed(_) => 500,
        }
    }
}

impl From<ConfigError> for ProvisionError {
    fn from(e: ConfigError) -> Self {
        ProvisionError::Invalid(e.to_string())
    }
}

/// What to do with a deleted service's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Data {
    /// The datadir (or volume) stays; a service created again with the
    /// same name finds it.
    Keep,
    /// The datadir (or container and volume) and the state folder go.
    Drop,
}

/// One created service: what it was created with and its actor.
struct Created {
    spec: ServiceSpec,
    running: Services,
}

/// The created services, by name.
#[derive(Default)]
pub struct Provisioned {
    created: Mutex<BTreeMap<String, Created>>,
}

impl std::fmt::Debug for Provisioned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self
            .created
            .lock()
            .map(|c| c.keys().cloned().collect())
            .unwrap_or_default();
        f.debug_struct("Provisioned")
            .field("created", &names)
            .finish()
    }
}

impl Provisioned {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Created>> {
        self.created.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `name` was created through the API.
    pub fn contains(&self, name: &str) -> bool {
        self.lock().contains_key(name)
    }

    /// The login table of the config file `file` plus the created
    /// services' accounts, indexed like the service list.
    pub fn settings_with(&self, shared: &Shared, file: &Config) -> Result<Settings, ConfigError> {
        let created = self.lock();
        let mut merged = file.clone();
        let all = shared.services.all();
        let live = shared.services.live();
        // Slots past the config file's: created services, live or
        // deleted (a deleted one routes nobody but keeps its index).
        let first = merged
            .services
            .len()
            .max(usize::from(file.backend.is_some()));
        for service in all.iter().skip(first) {
            let is_live = live.iter().any(|s| s.index == service.index);
            match created.get(&service.name).filter(|_| is_live) {
                Some(c) => {
                    merged.services.push(c.spec.service_config());
                    merged.users.extend(c.spec.users());
                }
                None => merged
                    .services
                    .push(ServiceConfig::new("", crate::config::DriverKind::Static)),
            }
        }
        Settings::from_config(&merged)
    }

    /// Asks every created service's actor to stop its backend (data
    /// kept) and waits for them (Torpor is stopping).
    pub fn shutdown(&self) {
        let mut created = std::mem::take(&mut *self.lock());
        for c in created.values_mut() {
            c.running.shutdown();
        }
    }
}

/// Refreshes the login table after the list of services changed; the
/// config file's part is the one the last reload applied.
fn refresh_settings(shared: &Shared) -> Result<(), ConfigError> {
    let applied = shared.applied.lock().unwrap_or_else(|p| p.into_inner());
    let settings = shared.provisioned.settings_with(shared, &applied)?;
    shared.replace_settings(settings);
    Ok(())
}

/// Creates and starts a service; it is kept in `state_dir` before it
/// starts, so that a crash between the two still finds it.
pub fn create(shared: &Shared, mut spec: ServiceSpec) -> Result<Arc<Service>, ProvisionError> {
    let asked = std::time::Instant::now();
    spec.validate(&shared.config.hosts)?;
    if let Some(host) = &spec.runs_on {
        let known = shared.hosts.get(host).is_some_and(|h| h.takes("docker"));
        if spec.driver != crate::config::DriverKind::Docker || !known {
            return Err(ProvisionError::Invalid(format!(
                "runs_on '{host}' needs driver docker and a [[hosts]] entry of that name that is a Docker Engine"
            )));
        }
    } else if spec.driver == crate::config::DriverKind::Docker && spec.storage.is_none() {
        // Placed once, where the most memory is free; kept with it. (A
        // service with a volume of its own stays on the local engine:
        // the volume is mounted on this machine.)
        let size = spec
            .memory_mib
            .unwrap_or(crate::config::ServiceConfig::new("", spec.driver).memory_mib);
        spec.runs_on = crate::hosts::place_new(shared, "docker", size).map(|host| host.name);
    }
    if shared.config.backend.is_some() {
        return Err(ProvisionError::Conflict(
            "Torpor fronts one [backend] here: services can be created when the config file has [[services]]".into(),
        ));
    }
    if shared.services.find(&spec.name).is_some() {
        return Err(ProvisionError::Conflict(format!(
            "a service named '{}' exists already",
            spec.name
        )));
    }
    {
        let settings = shared.settings();
        if let Some(taken) = spec
            .accounts
            .iter()
            .find(|a| settings.users.get(a.name.as_bytes()).is_some())
        {
            return Err(ProvisionError::Conflict(format!(
                "account '{}' exists already (each account routes to one service)",
                taken.name
            )));
        }
        for host in &spec.hosts {
            if settings.service_named(Some(host)).is_some() {
                return Err(ProvisionError::Conflict(format!(
                    "host '{host}' already names a service"
                )));
            }
        }
    }
    let path = store::save(&shared.config.state_dir, &spec)
        .map_err(|e| ProvisionError::Failed(format!("keeping the service in state_dir: {e}")))?;
    let warm = take_warm(shared, &spec);
    let from = if warm.is_some() { "warm" } else { "cold" };
    match start(shared, spec, warm) {
        Ok(service) => {
            info!(service = %service.name, file = %path.display(), from, "service created");
            time_until_ready(&service, asked, from);
            Ok(service)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            Err(e)
        }
    }
}

/// A warm pool's server for the new service, when one can serve it: a
/// service of the pool's driver on the pool's host (and image), without
/// a volume of its own (`[services.storage]` makes its datadir on the
/// volume), and whose name has no data kept from an
/// earlier service of that name (deleted with `data=keep`: that data
/// comes back instead). The server's admin password becomes the
/// service's.
fn take_warm(shared: &Shared, spec: &ServiceSpec) -> Option<warm::Warm> {
    let service_dir = shared.config.state_dir.join("services").join(&spec.name);
    if spec.storage.is_some() || service_dir.exists() {
        return None;
    }
    let host = spec
        .runs_on
        .as_deref()
        .unwrap_or(crate::config::hosts::LOCAL_HOST);
    let image = spec
        .image
        .as_deref()
        .unwrap_or(crate::scaler::docker::DEFAULT_IMAGE);
    let warm = shared.warm.checkout(spec.driver, host, image, &spec.name)?;
    match services::keep_admin_secret(&service_dir, &warm.admin_password) {
        Ok(()) => Some(warm),
        Err(e) => {
            warn!(service = %spec.name, "not using a warm instance: {e}");
            None
        }
    }
}

/// How long a created service may take to be ready and still count.
const READY_LIMIT: std::time::Duration = std::time::Duration::from_secs(300);

/// Records, on a thread of its own, how long the new `service` took from
/// its `POST` (at `asked`) to its backend ready (first active), as
/// started `from` (`warm` or `cold`): the `POST` answers before that,
/// the server starting (or thawing) in the background.
fn time_until_ready(service: &Arc<Service>, asked: std::time::Instant, from: &'static str) {
    let made = Arc::clone(service);
    let spawned = std::thread::Builder::new()
        .name(format!("torpor-made-{}", service.name))
        .spawn(move || {
            while asked.elapsed() < READY_LIMIT {
                if made.lifecycle.is_active() {
                    made.stats.provisioned(from, asked.elapsed().as_secs_f64());
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(service = %service.name, "not timing its start: {e}");
    }
}

/// Starts a (new or kept) service, on `warm` when given, and lets its
/// accounts log in.
fn start(
    shared: &Shared,
    spec: ServiceSpec,
    warm: Option<warm::Warm>,
) -> Result<Arc<Service>, ProvisionError> {
    let config = spec.service_config();
    let mut running = Services {
        services: Vec::new(),
        actors: Vec::new(),
        temporary: Vec::new(),
    };
    let service = shared
        .services
        .add(|index| {
            services::start_managed(
                &shared.config,
                &config,
                spec.backend_accounts(),
                index,
                shared.config.worker_count(),
                &shared.nudge,
                &shared.registry,
                &mut running,
                warm.map(|w| w.backend),
            )
        })
        .map_err(|e| ProvisionError::Failed(format!("the service cannot start: {e}")))?;
    running.services.push(Arc::clone(&service));
    shared
        .provisioned
        .lock()
        .insert(spec.name.clone(), Created { spec, running });
    refresh_settings(shared)?;
    Ok(service)
}

/// Deletes a created service: it leaves the list and the login table, its
/// backend stops, its file in `state_dir` goes, and its data stays or
/// goes as `data` says. Refused while clients are connected to it.
pub fn delete(shared: &Shared, name: &str, data: Data) -> Result<(), ProvisionError> {
    let Some(service) = shared.services.find(name) else {
        return Err(ProvisionError::NotFound(name.to_string()));
    };
    if !shared.provisioned.contains(name) {
        return Err(ProvisionError::Conflict(format!(
            "service '{name}' comes from the config file: remove it there"
        )));
    }
    if service.clients() > 0 {
        return Err(ProvisionError::Conflict(format!(
            "service '{name}' has {} client(s) connected",
            service.clients()
        )));
    }
    shared.services.remove(name);
    let created = shared.provisioned.lock().remove(name);
    refresh_settings(shared)?;
    let Some(mut created) = created else {
        return Ok(());
    };
    // Its actor stops the backend (data kept) before anything is removed;
    // its accounts are not read from it any more.
    created.running.shutdown();
    service.accounts.set_access(None);
    store::remove(&shared.config.state_dir, name)
        .map_err(|e| ProvisionError::Failed(format!("removing its file in state_dir: {e}")))?;
    if data == Data::Drop {
        services::destroy_backend(&shared.config, &created.spec.service_config())
            .map_err(|e| ProvisionError::Failed(format!("dropping its data: {e}")))?;
        for dir in [
            shared.config.state_dir.join("services").join(name),
            shared
                .config
                .state_dir
                .join("accounts")
                .join(format!("{name}.json")),
        ] {
            let gone = if dir.is_dir() {
                std::fs::remove_dir_all(&dir)
            } else {
                std::fs::remove_file(&dir)
            };
            if let Err(e) = gone.or_else(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Ok(()),
                _ => Err(e),
            }) {
                return Err(ProvisionError::Failed(format!(
                    "removing {}: {e}",
                    dir.display()
                )));
            }
        }
    }
    info!(service = %name, ?data, "service deleted");
    Ok(())
}

/// Starts the services kept in `state_dir` (Torpor starting). One that
/// cannot start, or whose name the config file now uses, is logged and
/// left in its file.
pub fn restore(shared: &Shared) {
    if shared.config.backend.is_some() {
        return;
    }
    for (path, kept) in store::load_all(&shared.config.state_dir) {
        let spec = match kept {
            Ok(spec) => spec,
            Err(e) => {
                warn!(file = %path.display(), "a kept service cannot be read: {e}");
                continue;
            }
        };
        if shared.services.find(&spec.name).is_some() {
            warn!(service = %spec.name, file = %path.display(), "the config file declares a service of the same name: the kept one is not started");
            continue;
        }
        let name = spec.name.clone();
        if let Err(e) = spec
            .validate(&shared.config.hosts)
            .map_err(ProvisionError::from)
            .and_then(|()| start(shared, spec, None))
        {
            warn!(service = %name, file = %path.display(), "a kept service cannot start: {e}");
        }
    }
}
