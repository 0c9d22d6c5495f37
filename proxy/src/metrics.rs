//! Metrics, named by Prometheus' conventions and served as text by the
//! admin API at `GET /metrics`.
//!
//! Recording goes through the `metrics` facade into a
//! [`PrometheusRecorder`] that belongs to one running proxy. It is never
//! installed as the process's global recorder: two proxies in one process
//! (the tests start many) would otherwise share, and overwrite, each
//! other's series, and a global is exactly the hidden coupling the style
//! guide forbids. Handles are taken with [`metrics::with_local_recorder`].
//!
//! Three paths feed it, so that the per-query path touches no atomic:
//!
//! - The data path records into its worker's [`WorkerMetrics`]: plain
//!   `Cell`s and a bucketed latency histogram, owned by one thread. Each
//!   worker's one-second tick ([`crate::worker`]) moves what accumulated
//!   into the exporter's handles and the latencies into their service's
//!   buckets ([`WorkerMetrics::flush`]; the buckets are the `latency` module's). A
//!   scrape sees the data path at most a tick late.
//! - The scaler's actor records into its service's
//!   [`ServiceStats`](crate::service::stats::ServiceStats) (atomics; a few
//!   events an hour).
//! - Everything that is a state rather than an event (connections open,
//!   lifecycle state, pins) is read when `/metrics` is scraped
//!   ([`Metrics::render`]), from what workers and actors already publish.

use std::cell::{Cell, Ref, RefCell};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Counter, Unit,
};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::error::SessionError;
use crate::pool::PoolStats;
use crate::registry::Registry;
use crate::service::stats::Decision;
use crate::service::Service;

mod latency;

use latency::{Latencies, LocalLatency, SharedLatency};

/// Upper bounds of the wake latency buckets, in seconds: thawing a frozen
/// process takes milliseconds, starting a parked container tens of
/// seconds.
const WAKE_BOUNDS: [f64; 14] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
];

/// Upper bounds of the outage hold buckets, in seconds: a backend found
/// again at the first retry (50 ms) up to the longest sensible
/// `outage_hold_secs`.
const HOLD_BOUNDS: [f64; 13] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
];

const QUERIES: &str = "torpor_queries_total";
const BYTES_RECEIVED: &str = "torpor_client_bytes_received_total";
const BYTES_SENT: &str = "torpor_client_bytes_sent_total";
const CLIENTS: &str = "torpor_client_connections";
const CLIENTS_OPENED: &str = "torpor_client_connections_opened_total";
const CLIENTS_CLOSED: &str = "torpor_client_connections_closed_total";
const BACKENDS: &str = "torpor_backend_connections";
const BACKENDS_IN_USE: &str = "torpor_backend_connections_in_use";
const BACKENDS_OPENED: &str = "torpor_backend_connections_opened_total";
const CHECKOUTS: &str = "torpor_pool_checkouts_total";
const WAIT_TIMEOUTS: &str = "torpor_pool_wait_timeouts_total";
const QUEUE_FULL: &str = "torpor_pool_queue_full_total";
const PINS: &str = "torpor_session_pins";
const REPLAYS: &str = "torpor_replays_total";
const TRANSACTION_REPLAYS: &str = "torpor_transaction_replays_total";
const SERVICE_STATE: &str = "torpor_service_state";
const TRANSITIONS: &str = "torpor_service_transitions_total";
const WAKE_DURATION: &str = "torpor_wake_duration_seconds";
const DECISIONS: &str = "torpor_scaler_decisions_total";
const HOLDING: &str = "torpor_outage_holds";
const HOLD_DURATION: &str = "torpor_outage_hold_duration_seconds";
const RESIZES: &str = "torpor_resizes_total";
const RESIZE_DURATION: &str = "torpor_resize_duration_seconds";
const RELOCATIONS: &str = "torpor_relocations_total";
const RELOCATION_DURATION: &str = "torpor_relocation_duration_seconds";
const RELOCATION_STALL: &str = "torpor_relocation_stall_seconds";
const CPUS_LIMIT: &str = "torpor_service_cpus_limit";
const CPUS_USED: &str = "torpor_service_cpus_used";
const MEMORY_LIMIT: &str = "torpor_service_memory_limit_bytes";
const MEMORY_USED: &str = "torpor_service_memory_working_set_bytes";
const BUFFER_POOL: &str = "torpor_service_buffer_pool_bytes";
const STORAGE: &str = "torpor_service_storage_bytes";
const STORAGE_GROWS: &str = "torpor_storage_grows_total";
const PROVISION_DURATION: &str = "torpor_provision_duration_seconds";
const WARM_POOL: &str = "torpor_warm_pool_instances";

/// A proxy's metrics: the recorder its workers register handles with, and
/// the handle `/metrics` renders.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// Off when nothing can scrape (no admin API): handles are no-ops, so
    /// histogram samples do not pile up unread.
    enabled: bool,
    /// Pin gauges ever set, by service and reason, so that a reason no
    /// session has any more is shown as 0 instead of its last count.
    pins_shown: Mutex<HashSet<(usize, &'static str)>>,
    /// `torpor_query_duration_seconds`, rendered by hand (see
    /// [`latency`]).
    latencies: Latencies,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// A recorder with Torpor's histogram buckets and descriptions;
    /// `enabled` false makes every handle a no-op.
    pub fn new(enabled: bool) -> Metrics {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(WAKE_DURATION.into()), &WAKE_BOUNDS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(HOLD_DURATION.into()), &HOLD_BOUNDS)
            })
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(RESIZE_DURATION.into()), &WAKE_BOUNDS)
            })
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(RELOCATION_DURATION.into()), &HOLD_BOUNDS)
            })
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(RELOCATION_STALL.into()), &WAKE_BOUNDS)
            })
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(PROVISION_DURATION.into()), &WAKE_BOUNDS)
            });
        // Only an empty bucket list is refused, and ours are constants.
        let recorder = match builder {
            Ok(builder) => builder.build_recorder(),
            Err(_) => PrometheusBuilder::new().build_recorder(),
        };
        let handle = recorder.handle();
        let metrics = Metrics {
            recorder,
            handle,
            enabled,
            pins_shown: Mutex::new(HashSet::new()),
            latencies: Latencies::default(),
        };
        metrics.with(describe_all);
        metrics
    }

    /// Runs `f` with this proxy's recorder behind the facade's macros.
    fn with<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&self.recorder, f)
    }

    /// Whether handles record anything.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// A worker's recording state, with its handles for `services`.
    pub fn worker(&self, services: &[Arc<Service>]) -> WorkerMetrics {
        let handles = if self.enabled {
            self.with(|| WorkerHandles::register(services, &self.latencies))
        } else {
            WorkerHandles::noop(services.len())
        };
        WorkerMetrics {
            clients_opened: Cell::new(0),
            clients_closed: Default::default(),
            services: RefCell::new(
                services
                    .iter()
                    .map(|_| ServiceCounters::default())
                    .collect(),
            ),
            handles,
        }
    }

    /// Gives `worker` counters and handles for the services created
    /// since it was made (`services`: every service, by index).
    pub fn grow_worker(&self, worker: &WorkerMetrics, services: &[Arc<Service>]) {
        let mut counters = worker.services.borrow_mut();
        let mut handles = worker.handles.services.borrow_mut();
        for service in services.iter().skip(handles.len()) {
            handles.push(if self.enabled {
                self.with(|| ServiceHandles::register(service, &self.latencies))
            } else {
                ServiceHandles::noop()
            });
        }
        counters.resize_with(handles.len(), ServiceCounters::default);
    }

    /// Publishes what is read at scrape time and renders every metric in
    /// the Prometheus text format (version 0.0.4).
    pub fn render(
        &self,
        services: &[Arc<Service>],
        registry: &Registry,
        warm: &[crate::provision::warm::WarmCount],
    ) -> String {
        if self.enabled {
            self.with(|| {
                for service in services {
                    publish_service(service);
                }
                self.publish_pins(services, registry);
                for pool in warm {
                    gauge!(WARM_POOL, "driver" => pool.driver, "host" => pool.host.clone())
                        .set(pool.instances as f64);
                }
            });
        }
        let mut text = self.handle.render();
        if self.enabled {
            self.latencies.render(services, &mut text);
        }
        text
    }

    /// Folds histogram samples into their buckets so that they do not
    /// accumulate between scrapes (the exporter keeps raw samples until
    /// then). Called every few seconds by the admin thread.
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }

    fn publish_pins(&self, services: &[Arc<Service>], registry: &Registry) {
        let Ok(mut shown) = self.pins_shown.lock() else {
            return;
        };
        let mut counts: std::collections::HashMap<(usize, &'static str), u64> =
            shown.iter().map(|&key| (key, 0)).collect();
        for service in services {
            for pinned in registry.pins_of(service.index) {
                for reason in pinned.reasons {
                    *counts.entry((service.index, reason)).or_default() += 1;
                }
            }
        }
        for ((index, reason), count) in counts {
            let Some(service) = services.get(index) else {
                continue;
            };
            gauge!(PINS, "service" => service.name.clone(), "reason" => reason).set(count as f64);
            shown.insert((index, reason));
        }
    }
}

/// Descriptions (HELP lines) and units.
fn describe_all() {
    describe_counter!(
        QUERIES,
        Unit::Count,
        "Queries (COM_QUERY, COM_STMT_EXECUTE) answered, per service."
    );
    describe_counter!(
        BYTES_RECEIVED,
        Unit::Bytes,
        "Bytes read from clients of logged-in sessions."
    );
    describe_counter!(
        BYTES_SENT,
        Unit::Bytes,
        "Bytes written to clients of logged-in sessions."
    );
    describe_gauge!(
        CLIENTS,
        Unit::Count,
        "Client sessions logged in, per service."
    );
    describe_counter!(CLIENTS_OPENED, Unit::Count, "Client connections accepted.");
    describe_counter!(
        CLIENTS_CLOSED,
        Unit::Count,
        "Client connections closed, by reason."
    );
    describe_gauge!(
        BACKENDS,
        Unit::Count,
        "Backend connections open (lent and idle), per service."
    );
    describe_gauge!(
        BACKENDS_IN_USE,
        Unit::Count,
        "Backend connections lent to sessions, per service."
    );
    describe_counter!(
        BACKENDS_OPENED,
        Unit::Count,
        "Backend connections opened, per service."
    );
    describe_counter!(CHECKOUTS, Unit::Count, "Backend connections taken from the pool: hit (an idle one), opened (room for a new one), waited (queued first), reserve (over pool_size, after waiting pool_reserve_after_ms).");
    describe_counter!(WAIT_TIMEOUTS, Unit::Count, "Pool waits that timed out.");
    describe_counter!(
        QUEUE_FULL,
        Unit::Count,
        "Pool checkouts refused because too many sessions were waiting."
    );
    describe_gauge!(
        PINS,
        Unit::Count,
        "Sessions pinned to their backend connection, by reason."
    );
    describe_counter!(
        REPLAYS,
        Unit::Count,
        "Session state replays onto another backend connection: ok or refused."
    );
    describe_counter!(
        TRANSACTION_REPLAYS,
        Unit::Count,
        "Open transactions replayed onto a new backend connection after theirs died: ok, or refused (rolled back, the client told)."
    );
    describe_gauge!(
        SERVICE_STATE,
        Unit::Count,
        "1 for the service's current lifecycle state, 0 for the others."
    );
    describe_counter!(
        TRANSITIONS,
        Unit::Count,
        "Lifecycle transitions, by the state entered."
    );
    describe_histogram!(
        WAKE_DURATION,
        Unit::Seconds,
        "Time to wake a service, by where it woke from (suspended: thawed; parked: started; warm: a warm pool's server taken over by a new service)."
    );
    describe_counter!(
        RESIZES,
        Unit::Count,
        "Resizes carried out, by direction (up: more of either resource; down) and reason (cpu_high, cpu_low, memory_high: the autoscaler; operator: the admin API)."
    );
    describe_histogram!(
        RESIZE_DURATION,
        Unit::Seconds,
        "Time from a resize decision to the new limits applied (buffer pool included; its reload runs after, in the background)."
    );
    describe_counter!(
        RELOCATIONS,
        Unit::Count,
        "Relocations to another backend, by result (moved, failed)."
    );
    describe_histogram!(
        RELOCATION_DURATION,
        Unit::Seconds,
        "Time from a relocation's start to its switch-over done (copy, catch-up, switch)."
    );
    describe_histogram!(
        RELOCATION_STALL,
        Unit::Seconds,
        "Time new statements waited during a relocation's switch-over."
    );
    describe_gauge!(
        CPUS_LIMIT,
        Unit::Count,
        "CPUs the service's backend may use."
    );
    describe_gauge!(
        CPUS_USED,
        Unit::Count,
        "CPUs the service's backend used between its last two samples (200 ms apart while active)."
    );
    describe_gauge!(
        MEMORY_LIMIT,
        Unit::Bytes,
        "The memory limit of the service's backend."
    );
    describe_gauge!(
        MEMORY_USED,
        Unit::Bytes,
        "Memory the service's backend holds that the kernel cannot drop (charged memory less inactive file cache)."
    );
    describe_gauge!(
        BUFFER_POOL,
        Unit::Bytes,
        "The InnoDB buffer pool size of the service's backend, as last set and read back."
    );
    describe_gauge!(
        HOLDING,
        Unit::Count,
        "Commands and logins held now because the backend cannot be reached (an outage), per service."
    );
    describe_histogram!(
        HOLD_DURATION,
        Unit::Seconds,
        "Commands and logins held through an outage, and how long each was held, by what was held (command, login) and how the hold ended (ok: the backend came back; failed: the bound was spent or the session ended)."
    );
    describe_counter!(
        DECISIONS,
        Unit::Count,
        "Scaler decisions carried out: suspend, suspend_refused, park, wake, wake_failed."
    );
    describe_gauge!(
        STORAGE,
        Unit::Bytes,
        "The filesystem under a service's datadir ([services.storage]): used, and its size."
    );
    describe_histogram!(
        PROVISION_DURATION,
        Unit::Seconds,
        "Time from a service's creation (POST /services) to its backend ready, by where it came from (cold: a datadir initialized and a server started; warm: a warm pool's server taken over)."
    );
    describe_gauge!(
        WARM_POOL,
        Unit::Count,
        "Ready servers in a warm pool ([[warm_pools]]), by driver and host."
    );
    describe_counter!(
        STORAGE_GROWS,
        Unit::Count,
        "Times a service's data volume was grown online, since Torpor started."
    );
}

/// Scrape-time values of one service.
fn publish_service(service: &Service) {
    let name = service.name.clone();
    gauge!(CLIENTS, "service" => name.clone()).set(service.clients() as f64);
    gauge!(BACKENDS, "service" => name.clone()).set(service.open_connections() as f64);
    gauge!(BACKENDS_IN_USE, "service" => name.clone()).set(service.lent() as f64);
    counter!(BACKENDS_OPENED, "service" => name.clone()).absolute(service.stats.backends_opened());
    let now = service.lifecycle.state();
    for (state, entered) in service.lifecycle.transitions() {
        let current = if state == now { 1.0 } else { 0.0 };
        gauge!(SERVICE_STATE, "service" => name.clone(), "state" => state.name()).set(current);
        counter!(TRANSITIONS, "service" => name.clone(), "to" => state.name()).absolute(entered);
    }
    for decision in Decision::ALL {
        let count = service.stats.decided(decision);
        counter!(DECISIONS, "service" => name.clone(), "decision" => decision.name())
            .absolute(count);
    }
    for (from, took) in service.stats.take_wakes() {
        histogram!(WAKE_DURATION, "service" => name.clone(), "from" => from).record(took);
    }
    if let Some((from, took)) = service.stats.take_provisioned() {
        histogram!(PROVISION_DURATION, "service" => name.clone(), "from" => from).record(took);
    }
    for resize in service.stats.take_resizes() {
        counter!(RESIZES, "service" => name.clone(), "direction" => resize.direction, "reason" => resize.reason)
            .increment(1);
        histogram!(RESIZE_DURATION, "service" => name.clone()).record(resize.seconds);
    }
    for relocation in service.stats.take_relocations() {
        counter!(RELOCATIONS, "service" => name.clone(), "result" => relocation.result)
            .increment(1);
        if let Some(seconds) = relocation.seconds {
            histogram!(RELOCATION_DURATION, "service" => name.clone()).record(seconds);
        }
        if let Some(stall) = relocation.stall_seconds {
            histogram!(RELOCATION_STALL, "service" => name.clone()).record(stall);
        }
    }
    if let Ok(view) = service.scaling.lock() {
        if let Some(resources) = view.resources {
            gauge!(CPUS_LIMIT, "service" => name.clone()).set(resources.cpus);
            gauge!(MEMORY_LIMIT, "service" => name.clone())
                .set((resources.memory_mib * 1024 * 1024) as f64);
        }
        if let Some(used) = view.cpus_used {
            gauge!(CPUS_USED, "service" => name.clone()).set(used);
        }
        if let Some(usage) = view.usage {
            gauge!(MEMORY_USED, "service" => name.clone()).set(usage.working_set_bytes as f64);
        }
        if let Some(bytes) = view.buffer_pool_bytes {
            gauge!(BUFFER_POOL, "service" => name.clone()).set(bytes as f64);
        }
        if let Some(storage) = view.storage {
            gauge!(STORAGE, "service" => name.clone(), "kind" => "used")
                .set(storage.used_bytes as f64);
            gauge!(STORAGE, "service" => name.clone(), "kind" => "size")
                .set(storage.size_bytes as f64);
            counter!(STORAGE_GROWS, "service" => name.clone()).absolute(storage.grows);
        }
    }
    let holds = service.outage.stats();
    gauge!(HOLDING, "service" => name.clone()).set(holds.holding() as f64);
    for hold in holds.take_ended() {
        let result = if hold.through { "ok" } else { "failed" };
        histogram!(HOLD_DURATION, "service" => name.clone(), "what" => hold.what.name(), "result" => result)
            .record(hold.seconds);
    }
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// Why a client connection closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// COM_QUIT.
    ClientQuit,
    /// The client closed its socket or it failed.
    ClientGone,
    /// A protocol or backend failure ended the session.
    Error,
    /// KILL CONNECTION.
    Killed,
    /// Torpor stopped.
    Shutdown,
    /// The login failed (password, unknown user, backend refusal).
    LoginFailed,
    /// The connection limit was reached.
    Refused,
}

impl CloseReason {
    const COUNT: usize = 7;
    const ALL: [CloseReason; CloseReason::COUNT] = [
        CloseReason::ClientQuit,
        CloseReason::ClientGone,
        CloseReason::Error,
        CloseReason::Killed,
        CloseReason::Shutdown,
        CloseReason::LoginFailed,
        CloseReason::Refused,
    ];

    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            CloseReason::ClientQuit => "client_quit",
            CloseReason::ClientGone => "client_gone",
            CloseReason::Error => "error",
            CloseReason::Killed => "killed",
            CloseReason::Shutdown => "shutdown",
            CloseReason::LoginFailed => "login_failed",
            CloseReason::Refused => "refused",
        }
    }

    /// The reason a session's command loop ended with `error` (`None`: it
    /// ended cleanly, with COM_QUIT).
    pub fn of(error: Option<&SessionError>) -> CloseReason {
        match error {
            None => CloseReason::ClientQuit,
            Some(SessionError::ClientGone | SessionError::ClientIo(_)) => CloseReason::ClientGone,
            Some(SessionError::Killed) => CloseReason::Killed,
            Some(SessionError::Shutdown) => CloseReason::Shutdown,
            Some(_) => CloseReason::Error,
        }
    }
}

/// One service's events on one worker since the last flush.
#[derive(Debug, Default)]
struct ServiceCounters {
    queries: Cell<u64>,
    latency: LocalLatency,
    bytes_received: Cell<u64>,
    bytes_sent: Cell<u64>,
    replays_ok: Cell<u64>,
    replays_refused: Cell<u64>,
    transaction_replays_ok: Cell<u64>,
    transaction_replays_refused: Cell<u64>,
}

/// The exporter handles a worker flushes into, per service.
struct ServiceHandles {
    queries: Counter,
    /// `None`: nothing scrapes.
    latency: Option<Arc<SharedLatency>>,
    bytes_received: Counter,
    bytes_sent: Counter,
    replays_ok: Counter,
    replays_refused: Counter,
    transaction_replays_ok: Counter,
    transaction_replays_refused: Counter,
    hits: Counter,
    opened: Counter,
    waited: Counter,
    reserved: Counter,
    wait_timeouts: Counter,
    queue_full: Counter,
}

impl ServiceHandles {
    fn register(service: &Service, latencies: &Latencies) -> ServiceHandles {
        let name = service.name.clone();
        let s = move || name.clone();
        ServiceHandles {
            queries: counter!(QUERIES, "service" => s()),
            latency: Some(latencies.of(service.index)),
            bytes_received: counter!(BYTES_RECEIVED, "service" => s()),
            bytes_sent: counter!(BYTES_SENT, "service" => s()),
            replays_ok: counter!(REPLAYS, "service" => s(), "result" => "ok"),
            replays_refused: counter!(REPLAYS, "service" => s(), "result" => "refused"),
            transaction_replays_ok: counter!(TRANSACTION_REPLAYS, "service" => s(), "result" => "ok"),
            transaction_replays_refused: counter!(
                TRANSACTION_REPLAYS,
                "service" => s(),
                "result" => "refused"
            ),
            hits: counter!(CHECKOUTS, "service" => s(), "result" => "hit"),
            opened: counter!(CHECKOUTS, "service" => s(), "result" => "opened"),
            waited: counter!(CHECKOUTS, "service" => s(), "result" => "waited"),
            reserved: counter!(CHECKOUTS, "service" => s(), "result" => "reserve"),
            wait_timeouts: counter!(WAIT_TIMEOUTS, "service" => s()),
            queue_full: counter!(QUEUE_FULL, "service" => s()),
        }
    }

    fn noop() -> ServiceHandles {
        ServiceHandles {
            queries: Counter::noop(),
            latency: None,
            bytes_received: Counter::noop(),
            bytes_sent: Counter::noop(),
            replays_ok: Counter::noop(),
            replays_refused: Counter::noop(),
            transaction_replays_ok: Counter::noop(),
            transaction_replays_refused: Counter::noop(),
            hits: Counter::noop(),
            opened: Counter::noop(),
            waited: Counter::noop(),
            reserved: Counter::noop(),
            wait_timeouts: Counter::noop(),
            queue_full: Counter::noop(),
        }
    }
}

struct WorkerHandles {
    clients_opened: Counter,
    clients_closed: [Counter; CloseReason::COUNT],
    /// Grows with the services ([`Metrics::grow_worker`]).
    services: RefCell<Vec<ServiceHandles>>,
}

impl WorkerHandles {
    fn register(services: &[Arc<Service>], latencies: &Latencies) -> WorkerHandles {
        WorkerHandles {
            clients_opened: counter!(CLIENTS_OPENED),
            clients_closed: CloseReason::ALL
                .map(|r| counter!(CLIENTS_CLOSED, "reason" => r.name())),
            services: RefCell::new(
                services
                    .iter()
                    .map(|s| ServiceHandles::register(s, latencies))
                    .collect(),
            ),
        }
    }

    fn noop(services: usize) -> WorkerHandles {
        WorkerHandles {
            clients_opened: Counter::noop(),
            clients_closed: CloseReason::ALL.map(|_| Counter::noop()),
            services: RefCell::new((0..services).map(|_| ServiceHandles::noop()).collect()),
        }
    }
}

/// One worker's recording state. Owned by the worker's thread (shared
/// with its sessions through an `Rc`), so recording is a few plain adds;
/// [`WorkerMetrics::flush`] publishes once a tick.
pub struct WorkerMetrics {
    clients_opened: Cell<u64>,
    clients_closed: [Cell<u64>; CloseReason::COUNT],
    /// Indexed like the services; grows with them (a borrow per
    /// record: single-threaded, no lock).
    services: RefCell<Vec<ServiceCounters>>,
    handles: WorkerHandles,
}

impl WorkerMetrics {
    fn service(&self, index: usize) -> Option<Ref<'_, ServiceCounters>> {
        Ref::filter_map(self.services.borrow(), |all| all.get(index)).ok()
    }

    /// A query of service `service` that was taken up at `started` got
    /// the end of its reply at `now`.
    #[inline]
    pub fn query_done(&self, service: usize, started: Instant, now: Instant) {
        if let Some(counters) = self.service(service) {
            counters.queries.set(counters.queries.get() + 1);
            let took = now.saturating_duration_since(started);
            counters
                .latency
                .record(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
        }
    }

    /// Bytes a session of `service` read from and wrote to its client.
    #[inline]
    pub fn client_bytes(&self, service: usize, received: u64, sent: u64) {
        if let Some(counters) = self.service(service) {
            counters
                .bytes_received
                .set(counters.bytes_received.get() + received);
            counters.bytes_sent.set(counters.bytes_sent.get() + sent);
        }
    }

    /// A session's state was replayed onto a backend connection of
    /// `service` (`ok`), or the backend refused it.
    pub fn replayed(&self, service: usize, ok: bool) {
        if let Some(counters) = self.service(service) {
            let cell = if ok {
                &counters.replays_ok
            } else {
                &counters.replays_refused
            };
            cell.set(cell.get() + 1);
        }
    }

    /// An open transaction was replayed onto a new backend connection of
    /// `service` (`ok`), or its replay was refused (it was rolled back and
    /// the client told).
    pub fn transaction_replayed(&self, service: usize, ok: bool) {
        if let Some(counters) = self.service(service) {
            let cell = if ok {
                &counters.transaction_replays_ok
            } else {
                &counters.transaction_replays_refused
            };
            cell.set(cell.get() + 1);
        }
    }

    /// A client connection was accepted.
    pub fn client_opened(&self) {
        self.clients_opened.set(self.clients_opened.get() + 1);
    }

    /// A client connection closed for `reason`.
    pub fn client_closed(&self, reason: CloseReason) {
        let cell = &self.clients_closed[reason as usize];
        cell.set(cell.get() + 1);
    }

    /// Publishes everything recorded since the last flush, with the
    /// worker's pool counters (`pools`: per service, in order).
    pub fn flush(&self, pools: impl IntoIterator<Item = PoolStats>) {
        let h = &self.handles;
        add(&h.clients_opened, &self.clients_opened);
        for (handle, cell) in h.clients_closed.iter().zip(&self.clients_closed) {
            add(handle, cell);
        }
        let services = self.services.borrow();
        let service_handles = h.services.borrow();
        for (counters, handles) in services.iter().zip(service_handles.iter()) {
            add(&handles.queries, &counters.queries);
            if let Some(latency) = &handles.latency {
                counters.latency.flush(latency);
            }
            add(&handles.bytes_received, &counters.bytes_received);
            add(&handles.bytes_sent, &counters.bytes_sent);
            add(&handles.replays_ok, &counters.replays_ok);
            add(&handles.replays_refused, &counters.replays_refused);
            add(
                &handles.transaction_replays_ok,
                &counters.transaction_replays_ok,
            );
            add(
                &handles.transaction_replays_refused,
                &counters.transaction_replays_refused,
            );
        }
        for (stats, handles) in pools.into_iter().zip(service_handles.iter()) {
            increment(&handles.hits, stats.hits);
            increment(&handles.opened, stats.opened);
            increment(&handles.waited, stats.waited);
            increment(&handles.reserved, stats.reserved);
            increment(&handles.wait_timeouts, stats.timeouts);
            increment(&handles.queue_full, stats.queue_full);
        }
    }
}

fn add(handle: &Counter, cell: &Cell<u64>) {
    increment(handle, cell.replace(0));
}

fn increment(handle: &Counter, by: u64) {
    if by > 0 {
        handle.increment(by);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_histogram_renders_every_worker_s_buckets() {
        let metrics = Metrics::new(true);
        let service = Arc::new(Service::new(
            0,
            "t",
            "static",
            crate::service::lifecycle::State::Active,
            None,
            std::time::Duration::from_secs(1),
            std::time::Duration::from_secs(1),
            2,
            Arc::new(event_listener::Event::new()),
            None,
        ));
        let services = [service];
        let workers = [metrics.worker(&services), metrics.worker(&services)];
        let at = Instant::now();
        let after = |ns| at + std::time::Duration::from_nanos(ns);
        for ns in [40_000, 50_000, 60_000, 2_000_000] {
            workers[0].query_done(0, at, after(ns));
        }
        workers[1].query_done(0, at, after(20_000_000_000));
        for worker in &workers {
            worker.flush([]);
        }
        let text = metrics.render(&services, &Registry::default(), &[]);
        let line = |prefix: &str| {
            text.lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(f64::NAN)
        };
        assert_eq!(
            line("torpor_query_duration_seconds_count{service=\"t\"}"),
            5.0
        );
        assert_eq!(
            line("torpor_query_duration_seconds_bucket{service=\"t\",le=\"0.00005\"}"),
            2.0
        );
        assert_eq!(
            line("torpor_query_duration_seconds_bucket{service=\"t\",le=\"0.0025\"}"),
            4.0
        );
        assert_eq!(
            line("torpor_query_duration_seconds_bucket{service=\"t\",le=\"+Inf\"}"),
            5.0
        );
        let sum = line("torpor_query_duration_seconds_sum{service=\"t\"}");
        assert!((sum - 20.00215).abs() < 1e-9, "sum {sum}");
        assert_eq!(
            text.matches("# TYPE torpor_query_duration_seconds histogram")
                .count(),
            1
        );
    }

    #[test]
    fn two_proxies_do_not_share_series() {
        let a = Metrics::new(true);
        let b = Metrics::new(true);
        a.with(|| counter!(QUERIES, "service" => "x").increment(3));
        assert!(a
            .handle
            .render()
            .contains("torpor_queries_total{service=\"x\"} 3"));
        assert!(!b
            .handle
            .render()
            .contains("torpor_queries_total{service=\"x\"}"));
    }

    #[test]
    fn close_reasons() {
        assert_eq!(CloseReason::of(None), CloseReason::ClientQuit);
        assert_eq!(
            CloseReason::of(Some(&SessionError::ClientGone)),
            CloseReason::ClientGone
        );
        assert_eq!(
            CloseReason::of(Some(&SessionError::Killed)),
            CloseReason::Killed
        );
        assert_eq!(
            CloseReason::of(Some(&SessionError::Internal("x"))),
            CloseReason::Error
        );
    }
}
