//! A database service as the workers see it: where its backend listens,
//! what its greeting and fresh sessions look like (cached, so logins need
//! no backend while it sleeps), its lifecycle state, and the wake that
//! sessions wait for.
//!
//! The workers and the service's actor thread ([`crate::scaler::actor`])
//! meet here. The per-query path reads one atomic (the lifecycle state);
//! everything else is touched per login, per new backend connection, or
//! once a tick.
//!
//! - [`lifecycle`]: the lifecycle state machine.
//! - [`stats`]: what its actor records for metrics (decisions, wakes,
//!   resizes, relocations, connections opened).
//! - `requests`: what the workers, the admin API and a reload ask of its
//!   actor ([`Request`], [`AdminAction`], [`Reconfigure`]).
//! - `activity`: each worker's published use of it ([`WorkerActivity`],
//!   [`ClientCount`]).
//! - `kept_awake`: what keeps it from suspending ([`KeptAwake`]).

mod activity;
pub mod kept;
mod kept_awake;
pub mod lifecycle;
pub mod list;
mod requests;
pub mod stats;

pub use activity::{ClientCount, WorkerActivity};
pub use kept_awake::KeptAwake;
pub use requests::{AdminAction, Reconfigure, Request, ResizeRequest};

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use event_listener::Event;
use torpor_replay::state::Baseline;

use crate::backend::{self, BackendConn, BackendInfo};
use crate::endpoint::Endpoint;
use crate::error::SessionError;
use lifecycle::{Lifecycle, State};
use stats::ServiceStats;

/// A database service.
#[derive(Debug)]
pub struct Service {
    /// Position in the configuration (and in each worker's pools).
    pub index: usize,
    /// The service's name.
    pub name: String,
    /// The driver's name (`static`, `process`, `docker`).
    pub driver: &'static str,
    /// The lifecycle state machine (its actor is the only writer).
    pub lifecycle: Lifecycle,
    /// How long connecting and logging in to the backend may take.
    pub connect_timeout: Duration,
    /// How long a query waits for a wake before it gets an error, in
    /// milliseconds (a reload may change it).
    wake_timeout_ms: AtomicU64,
    /// The time origin of [`WorkerActivity::last_active_ms`].
    pub epoch: Instant,
    /// Per worker, indexed by worker.
    pub workers: Box<[WorkerActivity]>,
    /// Bumped by the actor when it starts a suspend; workers answer in
    /// [`WorkerActivity::acked_epoch`].
    pub suspend_epoch: AtomicU64,
    /// Wakes the workers' ticks early (a suspend is waiting for them).
    pub nudge: Arc<Event>,
    /// Scaler decisions, wakes and connection opens, for metrics.
    pub stats: ServiceStats,
    /// Where its backend listens, and that address's generation.
    address: RwLock<Addressed>,
    /// The generation of [`Service::address`], readable without the lock:
    /// sessions compare it with their connection's once per command.
    generation: AtomicU64,
    backend_info: RwLock<Option<Arc<BackendInfo>>>,
    /// The backend's `max_connections` (0 until read with a baseline).
    server_max_connections: AtomicUsize,
    baselines: RwLock<HashMap<u8, Arc<Baseline>>>,
    requests: Option<mpsc::Sender<Request>>,
    /// Notified on every lifecycle change and failed wake.
    changed: Event,
    wake_failures: AtomicU64,
    last_wake_error: Mutex<String>,
    /// Sessions inside [`Service::wait_active`].
    waiting: AtomicUsize,
    /// The accounts its backend holds, as last read.
    pub accounts: crate::accounts::AccountKeeper,
    /// Whether its backend is unreachable now, and the event that ends
    /// the holds of sessions waiting for it.
    pub outage: crate::outage::Outage,
    /// TLS to its backend (`[backend] tls`); unset: plain.
    backend_tls: std::sync::OnceLock<crate::tls::backend::BackendTls>,
    /// Its size and use as the scaler last saw them (its actor writes,
    /// the admin API reads).
    pub scaling: Mutex<crate::scaler::autoscaler::ScalingView>,
    /// Its last relocation, as it goes (its actor writes, the admin API
    /// reads).
    pub relocation: Arc<Mutex<crate::scaler::relocate::RelocationView>>,
}

/// A backend address and its generation, changed together.
#[derive(Debug)]
struct Addressed {
    /// Where it listens now; `None` while it is stopped.
    endpoint: Option<Endpoint>,
    /// The last address it had (kept while it is stopped).
    last_known: Option<Endpoint>,
    generation: u64,
}

/// Backend connections Torpor opens at most for clients when the
/// configuration sets no bound: what the server allows (`max_connections`)
/// less a tenth of it (at least 4, at most 32) kept for Torpor's own
/// connections and an operator's, so that at the bound clients wait in
/// Torpor's queue instead of getting the server's 1040.
pub fn default_pool_bound(server_max_connections: usize) -> usize {
    let reserve = (server_max_connections / 10).clamp(4, 32);
    server_max_connections.saturating_sub(reserve).max(1)
}

/// Counts a session as waiting for a wake while it lives.
struct WaitingGuard<'a>(&'a AtomicUsize);

impl<'a> WaitingGuard<'a> {
    fn new(count: &'a AtomicUsize) -> WaitingGuard<'a> {
        count.fetch_add(1, Ordering::AcqRel);
        WaitingGuard(count)
    }
}

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Service {
    /// A service whose backend is at `address` (`None` until its driver
    /// started it), in `initial` state, with `requests` going to its actor
    /// (`None`: a static backend nobody manages, always active).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        index: usize,
        name: &str,
        driver: &'static str,
        initial: State,
        address: Option<Endpoint>,
        connect_timeout: Duration,
        wake_timeout: Duration,
        worker_count: usize,
        nudge: Arc<Event>,
        requests: Option<mpsc::Sender<Request>>,
    ) -> Service {
        Service {
            index,
            name: name.to_string(),
            driver,
            lifecycle: Lifecycle::new(name, initial),
            connect_timeout,
            wake_timeout_ms: AtomicU64::new(wake_timeout.as_millis() as u64),
            epoch: Instant::now(),
            workers: (0..worker_count)
                .map(|_| WorkerActivity::default())
                .collect(),
            suspend_epoch: AtomicU64::new(0),
            nudge,
            stats: ServiceStats::default(),
            address: RwLock::new(Addressed {
                last_known: address.clone(),
                endpoint: address,
                generation: 0,
            }),
            generation: AtomicU64::new(0),
            backend_info: RwLock::new(None),
            server_max_connections: AtomicUsize::new(0),
            baselines: RwLock::new(HashMap::new()),
            requests,
            changed: Event::new(),
            wake_failures: AtomicU64::new(0),
            last_wake_error: Mutex::new(String::new()),
            waiting: AtomicUsize::new(0),
            accounts: crate::accounts::AccountKeeper::default(),
            outage: crate::outage::Outage::default(),
            backend_tls: std::sync::OnceLock::new(),
            scaling: Mutex::default(),
            relocation: Arc::default(),
        }
    }

    /// Backend connections over TCP use TLS as `tls` says (set once,
    /// when the service is built).
    pub fn set_backend_tls(&self, tls: crate::tls::backend::BackendTls) {
        let _ = self.backend_tls.set(tls);
    }

    /// TLS to its backend, if the backend leg uses it.
    pub fn backend_tls(&self) -> Option<&crate::tls::backend::BackendTls> {
        self.backend_tls.get()
    }

    /// Where the backend listens now, if it runs.
    pub fn address(&self) -> Option<Endpoint> {
        self.address.read().ok().and_then(|a| a.endpoint.clone())
    }

    /// Records where the backend listens (after a start: a container's
    /// published port can change). A different address is a new backend
    /// generation: connections opened to the old one are never lent
    /// again, and a session holding one moves off it at its next command
    /// ([`Service::generation`]).
    pub fn set_address(&self, address: Option<Endpoint>) {
        if let Ok(mut slot) = self.address.write() {
            // Parked and started again where it was is the same backend.
            if address.is_some() && address != slot.last_known {
                if slot.last_known.is_some() {
                    slot.generation += 1;
                    self.generation.store(slot.generation, Ordering::Release);
                }
                slot.last_known.clone_from(&address);
            }
            slot.endpoint = address;
        }
    }

    /// Starts a new backend generation without a new address (a
    /// relocation's switch-over, before the address changes): every
    /// connection open now counts as the old backend's, so no session
    /// sends another statement on one.
    pub fn retire_generation(&self) {
        if let Ok(mut slot) = self.address.write() {
            slot.generation += 1;
            self.generation.store(slot.generation, Ordering::Release);
        }
    }

    /// The backend generation: bumped whenever the backend's address
    /// changes (a relocation, a restart elsewhere). A connection carries
    /// the generation it was opened in ([`BackendConn::generation`]); one
    /// from an older generation leads to a server that no longer serves
    /// the service.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn backend_addr(&self) -> Result<(Endpoint, u64), SessionError> {
        let current = self.address.read().ok().and_then(|a| {
            let endpoint = a.endpoint.clone()?;
            Some((endpoint, a.generation))
        });
        current.ok_or_else(|| {
            SessionError::BackendUnreachable(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                format!("service '{}' has no running backend", self.name),
            ))
        })
    }

    /// Opens a backend connection for `login`. A failure that means the
    /// backend is not there starts an outage ([`crate::outage`]); a
    /// success ends one.
    pub async fn connect(
        &self,
        login: &backend::Login<'_>,
    ) -> Result<(BackendConn, Vec<u8>), SessionError> {
        // Boxed: a backend login's future is large, and every session
        // task that may open a connection would otherwise carry its size
        // while idle (one allocation per connection opened is nothing
        // next to a TCP and MySQL handshake).
        let (addr, generation) = self.backend_addr()?;
        let connect = Box::pin(backend::connect(
            &addr,
            login,
            self.connect_timeout,
            self.backend_tls.get(),
        ));
        let mut opened = match connect.await {
            Ok(opened) => opened,
            Err(error) => {
                if crate::outage::is_outage(&error) {
                    self.outage.seen(&self.name, &error);
                }
                return Err(error);
            }
        };
        self.outage.ended(&self.name);
        self.stats.backend_opened();
        opened.0.generation = generation;
        Ok(opened)
    }

    /// The backend's greeting, if known: what Torpor greets clients with.
    pub fn cached_backend_info(&self) -> Option<Arc<BackendInfo>> {
        self.backend_info.read().ok().and_then(|g| g.clone())
    }

    /// What the backend's greeting says; asks the backend (waking it) the
    /// first time, so Torpor can start before its backend.
    pub async fn backend_info(&self) -> Result<Arc<BackendInfo>, SessionError> {
        if let Some(info) = self.cached_backend_info() {
            return Ok(info);
        }
        self.wait_active().await?;
        let probed = backend::probe(&self.backend_addr()?.0, self.connect_timeout).await;
        // As a connection's open: an outage starts, or ends (which sends
        // every held login and command on at once).
        match &probed {
            Err(error) if crate::outage::is_outage(error) => self.outage.seen(&self.name, error),
            Err(_) => {}
            Ok(_) => self.outage.ended(&self.name),
        }
        let info = Arc::new(probed?);
        if let Ok(mut slot) = self.backend_info.write() {
            *slot = Some(Arc::clone(&info));
        }
        Ok(info)
    }

    /// The baseline of connections opened with `collation`, if known.
    pub fn cached_baseline(&self, collation: u8) -> Option<Arc<Baseline>> {
        self.baselines
            .read()
            .ok()
            .and_then(|m| m.get(&collation).cloned())
    }

    /// The baseline for connections opened with `collation`: cached, or
    /// read on `fresh`, a connection nothing has changed yet.
    pub async fn baseline(
        &self,
        collation: u8,
        fresh: &mut BackendConn,
    ) -> Result<Arc<Baseline>, SessionError> {
        if let Some(baseline) = self.cached_baseline(collation) {
            return Ok(baseline);
        }
        let baseline = Arc::new(backend::read_baseline(fresh).await?);
        if let Some(max) = baseline.server_max_connections {
            self.server_max_connections.store(max, Ordering::Release);
        }
        if let Ok(mut map) = self.baselines.write() {
            map.insert(collation, Arc::clone(&baseline));
        }
        Ok(baseline)
    }

    /// The bound of each worker's pool of this service's connections:
    /// `configured` (per worker) when the configuration sets one, else
    /// the backend's `max_connections` less a reserve for Torpor's own
    /// connections (account reads, admin SQL, KILL QUERY) and an operator,
    /// shared among `workers`; 0 (no bound) until that is known.
    pub fn pool_bound_per_worker(&self, configured: usize, workers: usize) -> usize {
        if configured > 0 {
            return configured;
        }
        match self.server_max_connections.load(Ordering::Acquire) {
            0 => 0,
            max => (default_pool_bound(max) / workers.max(1)).max(1),
        }
    }

    /// Returns once the service is active: at once when it is (one atomic
    /// load), otherwise after asking its actor for a wake and waiting for
    /// it. A wake that fails or outlasts [`Service::wake_timeout`] is an
    /// error naming the cause; the next call tries again.
    pub async fn wait_active(&self) -> Result<(), SessionError> {
        if self.lifecycle.is_active() {
            return Ok(());
        }
        let Some(requests) = &self.requests else {
            return Ok(()); // static: nothing to wake
        };
        // Counted as in flight while it waits: a suspend that lands between
        // the wake and this session's borrow is refused (scaler::actor).
        let _waiting = WaitingGuard::new(&self.waiting);
        let failures = self.wake_failures.load(Ordering::Acquire);
        let wake_timeout = self.wake_timeout();
        let deadline = Instant::now() + wake_timeout;
        let mut last_asked = None;
        loop {
            // Listen before checking, so a change in between is not missed.
            let listener = self.changed.listen();
            let state = self.lifecycle.state();
            if state == State::Active {
                return Ok(());
            }
            if self.wake_failures.load(Ordering::Acquire) != failures {
                let cause = self
                    .last_wake_error
                    .lock()
                    .map(|e| e.clone())
                    .unwrap_or_default();
                return Err(SessionError::WakeFailed {
                    service: self.name.clone(),
                    cause,
                });
            }
            // Asked again whenever the state changed under it: the
            // service may have gone back to sleep (an operator's suspend)
            // before this session got in.
            if last_asked != Some(state) {
                if requests.send(Request::Wake).is_err() {
                    return Err(SessionError::Shutdown);
                }
                last_asked = Some(state);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero()
                || crate::timer::timeout(left, listener).await.is_err()
                    && !self.lifecycle.is_active()
            {
                return Err(SessionError::WakeFailed {
                    service: self.name.clone(),
                    cause: format!("no wake within {wake_timeout:?}"),
                });
            }
        }
    }

    /// How long a query waits for a wake before it gets an error.
    pub fn wake_timeout(&self) -> Duration {
        Duration::from_millis(self.wake_timeout_ms.load(Ordering::Relaxed))
    }

    /// Sets [`Service::wake_timeout`] (a config reload); waits under way
    /// keep the deadline they started with.
    pub fn set_wake_timeout(&self, timeout: Duration) {
        self.wake_timeout_ms
            .store(timeout.as_millis() as u64, Ordering::Relaxed);
    }

    /// Sessions waiting for a wake now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// Sends a request to the actor; false when there is none (a static
    /// service) or it has stopped.
    pub fn request(&self, request: Request) -> bool {
        self.requests
            .as_ref()
            .is_some_and(|r| r.send(request).is_ok())
    }

    /// Sends `request` to the service's actor; gives it back when there
    /// is no actor to take it (static, or stopped).
    pub fn request_or_return(&self, request: Request) -> Result<(), Request> {
        match &self.requests {
            Some(requests) => requests.send(request).map_err(|e| e.0),
            None => Err(request),
        }
    }

    /// Whether an actor manages this service.
    pub fn is_managed(&self) -> bool {
        self.requests.is_some()
    }

    /// Wakes everyone waiting on a lifecycle change (the actor calls this
    /// after every transition).
    pub fn notify_changed(&self) {
        self.changed.notify(usize::MAX);
    }

    /// Records a failed wake: sessions waiting for it get `cause` when
    /// the transition that follows wakes them. Recorded first, so that a
    /// session woken by the state change sees why at once; woken by the
    /// state alone, it took the service's new state for an operator's
    /// and asked for another wake, which then ran behind its error.
    pub fn wake_failed(&self, cause: String) {
        if let Ok(mut last) = self.last_wake_error.lock() {
            *last = cause;
        }
        self.wake_failures.fetch_add(1, Ordering::AcqRel);
    }

    /// Backend connections lent out over all workers, as last published.
    pub fn lent(&self) -> usize {
        self.workers
            .iter()
            .map(|w| w.lent.load(Ordering::Acquire))
            .sum()
    }

    /// Backend connections open over all workers, as last published.
    pub fn open_connections(&self) -> usize {
        self.workers
            .iter()
            .map(|w| w.open.load(Ordering::Acquire))
            .sum()
    }

    /// Client sessions logged in to the service.
    pub fn clients(&self) -> usize {
        self.workers
            .iter()
            .map(|w| w.clients.load(Ordering::Acquire))
            .sum()
    }

    /// How long no worker has lent or taken back a connection.
    pub fn idle_for(&self) -> Duration {
        let last = self
            .workers
            .iter()
            .map(|w| w.last_active_ms.load(Ordering::Acquire))
            .max()
            .unwrap_or(0);
        let now = self.epoch.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(last))
    }

    /// Records activity now (the idle time restarts).
    pub fn touch(&self) {
        let now = self.now_ms();
        for worker in self.workers.iter() {
            worker.last_active_ms.fetch_max(now, Ordering::AcqRel);
        }
    }

    /// Milliseconds since [`Service::epoch`], for activity stamps.
    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::{default_pool_bound, Service, State};
    use crate::endpoint::Endpoint;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_new_address_is_a_new_generation_and_the_same_one_is_not() {
        let service = Service::new(
            0,
            "svc",
            "process",
            State::Active,
            None,
            Duration::from_secs(1),
            Duration::from_secs(1),
            1,
            Arc::new(event_listener::Event::new()),
            None,
        );
        let here = Endpoint::Unix("/run/a.sock".into());
        let there = Endpoint::Unix("/run/b.sock".into());
        service.set_address(Some(here.clone()));
        let first = service.generation();
        // Parked and woken where it was: connections to it are still its.
        service.set_address(None);
        service.set_address(Some(here));
        assert_eq!(service.generation(), first);
        service.set_address(Some(there.clone()));
        assert_eq!(service.generation(), first + 1);
        assert_eq!(service.address(), Some(there));
    }

    #[test]
    fn the_default_pool_bound_keeps_a_reserve_of_the_servers_connections() {
        assert_eq!(default_pool_bound(151), 136, "MariaDB's default");
        assert_eq!(default_pool_bound(30), 26);
        assert_eq!(default_pool_bound(2000), 1968);
        assert_eq!(default_pool_bound(3), 1);
    }
}
