//! A worker's backend pools, one per service, indexed like
//! [`crate::service::list::ServiceList::all`]. The list of services grows
//! while Torpor runs (services created through the admin API), so the
//! pools grow with it: a pool is made the first time a login or the
//! worker's tick meets a service that has none yet.

use std::cell::RefCell;
use std::rc::Rc;

use crate::backend::BackendConn;
use crate::context::Shared;
use crate::pool::BackendPool;

/// One worker's pools, by service index.
#[derive(Default)]
pub struct ServicePools {
    pools: RefCell<Vec<Rc<BackendPool<BackendConn>>>>,
}

impl std::fmt::Debug for ServicePools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServicePools")
            .field("services", &self.pools.borrow().len())
            .finish()
    }
}

impl ServicePools {
    /// The pool of service `index`, made (with those of every service
    /// before it) if the worker has not met it yet; `None` for an index
    /// no service has.
    pub fn get(&self, shared: &Shared, index: usize) -> Option<Rc<BackendPool<BackendConn>>> {
        if let Some(pool) = self.pools.borrow().get(index) {
            return Some(Rc::clone(pool));
        }
        self.grow(shared);
        self.pools.borrow().get(index).cloned()
    }

    /// Makes the pools of services the worker has not met yet.
    pub fn grow(&self, shared: &Shared) {
        let all = shared.services.all();
        let mut pools = self.pools.borrow_mut();
        if pools.len() >= all.len() {
            return;
        }
        let settings = shared.settings();
        let workers = shared.config.worker_count();
        for service in &all[pools.len()..] {
            let pool = BackendPool::new(
                service.pool_bound_per_worker(settings.backend_connections_per_worker, workers),
                settings.backend_idle_timeout,
                settings.max_connections,
            );
            pool.set_target(
                settings.pool_size.per_worker,
                settings.pool_size.reserve_after,
            );
            pools.push(Rc::new(pool));
        }
    }

    /// Every pool made so far, by service index (a copy: the caller may
    /// await while it walks them).
    pub fn snapshot(&self) -> Vec<Rc<BackendPool<BackendConn>>> {
        self.pools.borrow().clone()
    }
}
