//! The services Torpor runs, as a list that grows while it runs: services
//! created through the admin API (`crate::provision`) join it, deleted
//! ones leave it.
//!
//! A service's index is its position in [`ServiceList::all`] for ever: each
//! worker's pools, the metrics and the session registry are indexed by
//! it, so a deleted service keeps its slot (it only leaves
//! [`ServiceList::live`]) and a new one always takes the next. Readers get
//! a snapshot (one lock-free load); writers, on the admin thread, swap in
//! a new one.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use super::Service;

/// Every service, by index, and those that are not deleted.
#[derive(Debug)]
pub struct ServiceList {
    /// Every service ever run by this process, by index.
    all: ArcSwap<Vec<Arc<Service>>>,
    /// Those not deleted, in index order.
    live: ArcSwap<Vec<Arc<Service>>>,
    /// Writers take turns: the next index is the length of `all`.
    writing: Mutex<()>,
}

impl ServiceList {
    /// The list Torpor starts with (`services[i].index == i`).
    pub fn new(services: Vec<Arc<Service>>) -> ServiceList {
        ServiceList {
            all: ArcSwap::from_pointee(services.clone()),
            live: ArcSwap::from_pointee(services),
            writing: Mutex::new(()),
        }
    }

    /// Every service by index, deleted ones included (what per-index
    /// tables such as pools and metrics are aligned with).
    pub fn all(&self) -> Arc<Vec<Arc<Service>>> {
        self.all.load_full()
    }

    /// The services clients may use and the admin API shows.
    pub fn live(&self) -> Arc<Vec<Arc<Service>>> {
        self.live.load_full()
    }

    /// The live service named `name`.
    pub fn find(&self, name: &str) -> Option<Arc<Service>> {
        self.live.load().iter().find(|s| s.name == name).cloned()
    }

    /// The service at `index`, if it is live.
    pub fn get_live(&self, index: usize) -> Option<Arc<Service>> {
        self.live.load().iter().find(|s| s.index == index).cloned()
    }

    /// Adds a service built by `build` with the next index; nothing is
    /// added when it fails.
    pub fn add<E>(
        &self,
        build: impl FnOnce(usize) -> Result<Arc<Service>, E>,
    ) -> Result<Arc<Service>, E> {
        let _turn = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let index = self.all.load().len();
        let service = build(index)?;
        // The index is the slot: a builder that ignored it would make
        // every per-index table point at the wrong service.
        debug_assert_eq!(service.index, index);
        let mut all = Vec::clone(&self.all.load());
        all.push(Arc::clone(&service));
        let mut live = Vec::clone(&self.live.load());
        live.push(Arc::clone(&service));
        self.all.store(Arc::new(all));
        self.live.store(Arc::new(live));
        Ok(service)
    }

    /// Takes the live service named `name` out of [`ServiceList::live`]
    /// (its slot in [`ServiceList::all`] stays).
    pub fn remove(&self, name: &str) -> Option<Arc<Service>> {
        let _turn = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let live = self.live.load();
        let service = live.iter().find(|s| s.name == name).cloned()?;
        let rest: Vec<_> = live
            .iter()
            .filter(|s| s.index != service.index)
            .cloned()
            .collect();
        self.live.store(Arc::new(rest));
        Some(service)
    }
}
