//! What every worker shares: configuration, accounts, the services, the
//! session registry, the shutdown trigger, the connection count and the
//! metrics recorder.
//! Read-mostly; nothing here is written per query. The reloadable part of
//! the configuration ([`Settings`]) is swapped whole by a reload.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use event_listener::Event;

use crate::config::{Config, ConfigError};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::service::list::ServiceList;
use crate::service::Service;
use crate::settings::Settings;
use crate::shutdown::Shutdown;

/// [`Settings`] held by one session (see [`Shared::settings_cache`]).
pub type SettingsCache = arc_swap::Cache<Arc<ArcSwap<Settings>>, Arc<Settings>>;

/// State shared by all workers.
#[derive(Debug)]
pub struct Shared {
    /// The configuration Torpor started with. Its reloadable keys are
    /// read from [`Shared::settings`] instead, which follows reloads.
    pub config: Config,
    /// Accounts and limits, as the last reload left them.
    settings: Arc<ArcSwap<Settings>>,
    /// The whole configuration the last reload applied (the start's at
    /// first), which the next reload is compared against.
    pub(crate) applied: Mutex<Config>,
    /// The database services: the configuration's in its order, then
    /// those created through the admin API ([`crate::provision`]); users
    /// route to one each.
    pub services: ServiceList,
    /// Services created through the admin API: their actors and files.
    pub provisioned: crate::provision::Provisioned,
    /// Ready backends new services take over (`[[warm_pools]]`).
    pub warm: crate::provision::warm::WarmPools,
    /// Wakes the workers' ticks early (a service is suspending).
    pub nudge: Arc<Event>,
    /// Live sessions by client-visible id.
    pub registry: Arc<Registry>,
    /// The shutdown trigger.
    pub shutdown: Arc<Shutdown>,
    /// Client connections open now, over all workers.
    connections: AtomicUsize,
    /// The proxy's metrics (recording on only when the admin API, which
    /// serves them, runs).
    pub metrics: Metrics,
    /// The hosts services run on, and their moves.
    pub hosts: crate::hosts::Hosts,
    /// Sessions per worker, and connections handed between workers to
    /// keep those even.
    pub balance: crate::worker::balance::Balance,
}

impl Shared {
    /// Builds the shared state from a validated configuration, the
    /// services built from it ([`crate::scaler::services`]) and the
    /// session registry their scalers read pins from.
    pub fn new(
        config: Config,
        shutdown: Arc<Shutdown>,
        services: Vec<Arc<Service>>,
        nudge: Arc<Event>,
        registry: Arc<Registry>,
    ) -> Result<Shared, ConfigError> {
        if services.is_empty() {
            return Err(ConfigError::Invalid(
                "no service to route clients to".into(),
            ));
        }
        let settings = Settings::from_config(&config)?;
        Ok(Shared {
            settings: Arc::new(ArcSwap::from_pointee(settings)),
            applied: Mutex::new(config.clone()),
            services: ServiceList::new(services),
            provisioned: crate::provision::Provisioned::default(),
            warm: crate::provision::warm::WarmPools::new(&config),
            nudge,
            registry,
            shutdown,
            connections: AtomicUsize::new(0),
            metrics: Metrics::new(config.admin.listen.is_some()),
            hosts: crate::hosts::Hosts::new(&config.hosts),
            balance: crate::worker::balance::Balance::new(config.worker_count()),
            config,
        })
    }

    /// The service `user` routes to (the first one for unknown users, so
    /// that they get their greeting and "access denied" as from MariaDB).
    pub fn service_for(&self, user: &[u8]) -> Arc<Service> {
        let index = self.settings().users.service_of(user).unwrap_or(0);
        let all = self.services.all();
        // Never empty: Torpor does not start without a service.
        Arc::clone(&all[index.min(all.len() - 1)])
    }

    /// The service whose greeting clients get before they name their user:
    /// the first, or any whose greeting is already known.
    pub fn greeting_service(&self) -> Arc<Service> {
        let live = self.services.live();
        let all = self.services.all();
        let known = live.iter().find(|s| s.cached_backend_info().is_some());
        // The first service may be deleted, but never leaves `all`.
        Arc::clone(known.or(live.first()).unwrap_or(&all[0]))
    }

    /// Counts a new client connection; `None` when the limit is reached.
    pub fn admit(self: &Arc<Self>) -> Option<ConnectionPermit> {
        let before = self.connections.fetch_add(1, Ordering::AcqRel);
        let permit = ConnectionPermit {
            shared: Arc::clone(self),
        };
        if before >= self.settings().max_connections {
            return None; // the permit's drop gives the slot back
        }
        Some(permit)
    }

    /// Accounts and limits now. One lock-free load (arc-swap), cheap
    /// enough for a login or a borrow; the guard should not be held
    /// across an await.
    pub fn settings(&self) -> arc_swap::Guard<Arc<Settings>> {
        self.settings.load()
    }

    /// The settings as a session keeps them: [`SettingsCache::load`]
    /// follows reloads like [`Shared::settings`], at the cost of one
    /// atomic load and a comparison instead of arc-swap's borrow of a
    /// slot (~60 instructions), which a session paid per statement.
    pub fn settings_cache(&self) -> SettingsCache {
        arc_swap::Cache::new(Arc::clone(&self.settings))
    }

    /// Replaces accounts and limits (a reload's commit). Sessions that
    /// logged in stay; the next login sees the new accounts.
    pub fn replace_settings(&self, settings: Settings) {
        self.settings.store(Arc::new(settings));
    }

    /// Client connections open now.
    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }
}

/// One counted client connection; uncounted on drop.
#[derive(Debug)]
pub struct ConnectionPermit {
    shared: Arc<Shared>,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.shared.connections.fetch_sub(1, Ordering::AcqRel);
    }
}
