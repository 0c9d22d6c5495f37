//! Each worker's use of a service, published for its actor to read.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use super::Service;

/// One worker's view of its use of a service, published by the worker's
/// tick (never per query) for the actor to read.
#[derive(Debug, Default)]
pub struct WorkerActivity {
    /// Backend connections lent to sessions (a query in flight, or a
    /// pinned session holding its connection).
    pub lent: AtomicUsize,
    /// Backend connections open (lent and idle).
    pub open: AtomicUsize,
    /// When a connection was last lent or given back, in milliseconds
    /// since [`Service::epoch`].
    pub last_active_ms: AtomicU64,
    /// The last suspend epoch this worker has answered: it saw the
    /// service suspending, closed its idle connections and published the
    /// counts above after that.
    pub acked_epoch: AtomicU64,
    /// Sessions of this worker logged in to the service.
    pub clients: AtomicUsize,
}

/// Keeps a session counted in its worker's [`WorkerActivity::clients`].
#[derive(Debug)]
pub struct ClientCount {
    service: Arc<Service>,
    worker: usize,
}

impl ClientCount {
    /// Counts one client of `service` on `worker` until dropped.
    pub fn new(service: Arc<Service>, worker: usize) -> ClientCount {
        if let Some(w) = service.workers.get(worker) {
            w.clients.fetch_add(1, Ordering::Relaxed);
        }
        ClientCount { service, worker }
    }
}

impl Drop for ClientCount {
    fn drop(&mut self) {
        if let Some(w) = self.service.workers.get(self.worker) {
            w.clients.fetch_sub(1, Ordering::Relaxed);
        }
    }
}
