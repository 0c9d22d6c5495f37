//! What every worker shares: configuration, accounts, the backend's
//! identity, the session registry, the shutdown trigger and the
//! connection count. Read-mostly; nothing here is touched per query.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use std::collections::HashMap;

use torpor_replay::state::Baseline;

use crate::backend::{self, BackendConn, BackendInfo};
use crate::config::{Config, ConfigError};
use crate::error::SessionError;
use crate::registry::Registry;
use crate::shutdown::Shutdown;
use crate::users::UserStore;

/// State shared by all workers.
#[derive(Debug)]
pub struct Shared {
    /// The configuration.
    pub config: Config,
    /// Accounts clients may log in as.
    pub users: UserStore,
    /// The backend's address.
    pub backend_addr: SocketAddr,
    /// How long connecting and logging in to the backend may take.
    pub connect_timeout: Duration,
    /// What the backend's greeting said, once known.
    backend_info: RwLock<Option<Arc<BackendInfo>>>,
    /// Live sessions by client-visible id.
    pub registry: Arc<Registry>,
    /// The shutdown trigger.
    pub shutdown: Arc<Shutdown>,
    /// Client connections open now, over all workers.
    connections: AtomicUsize,
    /// What a fresh connection to the backend has, by the collation the
    /// connection was opened with (a collation sets character-set
    /// variables).
    baselines: RwLock<HashMap<u8, Arc<Baseline>>>,
}

impl Shared {
    /// Builds the shared state from a validated configuration.
    pub fn new(config: Config, shutdown: Arc<Shutdown>) -> Result<Shared, ConfigError> {
        let backend = config
            .backend
            .clone()
            .ok_or_else(|| ConfigError::Invalid("no backend configured".into()))?;
        let backend_addr = backend
            .address
            .to_socket_addrs()
            .map_err(|e| ConfigError::Invalid(format!("backend '{}': {e}", backend.address)))?
            .next()
            .ok_or_else(|| {
                ConfigError::Invalid(format!("backend '{}' has no address", backend.address))
            })?;
        let users = UserStore::from_config(&config.users)?;
        Ok(Shared {
            users,
            backend_addr,
            connect_timeout: Duration::from_millis(backend.connect_timeout_ms),
            backend_info: RwLock::new(None),
            registry: Arc::new(Registry::default()),
            shutdown,
            connections: AtomicUsize::new(0),
            baselines: RwLock::new(HashMap::new()),
            config,
        })
    }

    /// What the backend's greeting says; asks the backend the first time
    /// (and again after a failure), so Torpor can start before its backend.
    pub async fn backend_info(&self) -> Result<Arc<BackendInfo>, SessionError> {
        if let Some(info) = self.backend_info.read().ok().and_then(|g| g.clone()) {
            return Ok(info);
        }
        let info = Arc::new(backend::probe(self.backend_addr, self.connect_timeout).await?);
        if let Ok(mut slot) = self.backend_info.write() {
            *slot = Some(Arc::clone(&info));
        }
        Ok(info)
    }

    /// The baseline for connections opened with `collation`: cached, or
    /// read on `fresh`, a connection nothing has changed yet.
    pub async fn baseline(
        &self,
        collation: u8,
        fresh: &mut BackendConn,
    ) -> Result<Arc<Baseline>, SessionError> {
        if let Some(baseline) = self
            .baselines
            .read()
            .ok()
            .and_then(|m| m.get(&collation).cloned())
        {
            return Ok(baseline);
        }
        let baseline = Arc::new(backend::read_baseline(fresh).await?);
        if let Ok(mut map) = self.baselines.write() {
            map.insert(collation, Arc::clone(&baseline));
        }
        Ok(baseline)
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
