//! What every worker shares: configuration, accounts, the services, the
//! session registry, the shutdown trigger, the connection count and the
//! metrics recorder.
//! Read-mostly; nothing here is written per query.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use event_listener::Event;

use crate::config::{Config, ConfigError};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::service::Service;
use crate::shutdown::Shutdown;
use crate::users::UserStore;

/// State shared by all workers.
#[derive(Debug)]
pub struct Shared {
    /// The configuration.
    pub config: Config,
    /// Accounts clients may log in as.
    pub users: UserStore,
    /// The database services, in configuration order; users route to
    /// one each.
    pub services: Vec<Arc<Service>>,
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
}

impl Shared {
    /// Builds the shared state from a validated configuration and the
    /// services built from it ([`crate::scaler::services`]).
    pub fn new(
        config: Config,
        shutdown: Arc<Shutdown>,
        services: Vec<Arc<Service>>,
        nudge: Arc<Event>,
    ) -> Result<Shared, ConfigError> {
        if services.is_empty() {
            return Err(ConfigError::Invalid(
                "no service to route clients to".into(),
            ));
        }
        let users = UserStore::from_config(&config.users, |user| {
            config
                .services
                .iter()
                .position(|s| s.users.iter().any(|u| u == user))
                .unwrap_or(0)
        })?;
        Ok(Shared {
            users,
            services,
            nudge,
            registry: Arc::new(Registry::default()),
            shutdown,
            connections: AtomicUsize::new(0),
            metrics: Metrics::new(config.admin.listen.is_some()),
            config,
        })
    }

    /// The service `user` routes to (the first one for unknown users, so
    /// that they get their greeting and "access denied" as from MariaDB).
    pub fn service_for(&self, user: &[u8]) -> &Arc<Service> {
        let index = self.users.service_of(user).unwrap_or(0);
        &self.services[index.min(self.services.len() - 1)]
    }

    /// The service whose greeting clients get before they name their user:
    /// the first, or any whose greeting is already known.
    pub fn greeting_service(&self) -> &Arc<Service> {
        self.services
            .iter()
            .find(|s| s.cached_backend_info().is_some())
            .unwrap_or(&self.services[0])
    }

    /// Counts a new client connection; `None` when the limit is reached.
    pub fn admit(self: &Arc<Self>) -> Option<ConnectionPermit> {
        let before = self.connections.fetch_add(1, Ordering::AcqRel);
        let permit = ConnectionPermit {
            shared: Arc::clone(self),
        };
        if before >= self.config.max_connections {
            return None; // the permit's drop gives the slot back
        }
        Some(permit)
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
