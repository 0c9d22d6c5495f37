//! Workers: one thread per core, each with its own monoio runtime and its
//! own `SO_REUSEPORT` listener, so the kernel spreads connections and a
//! connection lives and dies on one thread with no locks on its path.
//!
//! The runtime is io_uring where the kernel and seccomp allow it (Docker's
//! default profile in newer engines refuses `io_uring_setup`) and epoll
//! otherwise; each worker logs which one it runs.

use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use socket2::{Domain, Protocol, Socket, Type};
use std::panic::AssertUnwindSafe;
use tracing::{error, info, warn};

use crate::buffers::BufferPool;
use crate::config::IoDriver;
use crate::context::Shared;
use crate::metrics::WorkerMetrics;
use crate::net::{Conn, Peer};
use crate::session;

pub mod balance;
mod pools;
mod sessions;

pub use pools::ServicePools;

use sessions::Sessions;

/// Entries in each io_uring submission queue.
const URING_ENTRIES: u32 = 4096;

/// Binds `count` listeners on the same address with SO_REUSEPORT. A port
/// of 0 is resolved by the first bind and reused by the others. A port
/// another process (or another Torpor) listens on is refused with
/// `AddrInUse`: SO_REUSEPORT alone would share it and split its clients.
pub fn bind_listeners(
    addr: SocketAddr,
    count: usize,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    if addr.port() != 0 {
        ensure_port_free(addr)?;
    }
    let mut listeners = Vec::with_capacity(count);
    let mut addr = addr;
    for _ in 0..count {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nodelay(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        let listener: std::net::TcpListener = socket.into();
        listener.set_nonblocking(true)?;
        addr = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Fails with `AddrInUse` when something listens on `addr`: a probe bound
/// without SO_REUSEPORT cannot share the port with anyone (SO_REUSEADDR
/// only lets it past connections of an earlier run in TIME_WAIT). The
/// probe closes before the workers' listeners bind.
fn ensure_port_free(addr: SocketAddr) -> std::io::Result<()> {
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    probe.set_reuse_address(true)?;
    probe.bind(&addr.into()).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!(
                    "{addr} is already in use (another server, or another Torpor, listens there)"
                ),
            )
        } else {
            e
        }
    })
}

/// Which driver a worker ended up with, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverKind {
    /// io_uring.
    IoUring,
    /// epoll.
    Epoll,
}

/// Tells the starter whether worker `index` came up.
pub type ReadySender = std::sync::mpsc::Sender<(usize, std::io::Result<()>)>;

/// Runs worker `index` on the current thread until shutdown. Reports on
/// `ready` once its runtime is built (or could not be).
pub fn run_worker(
    index: usize,
    listener: std::net::TcpListener,
    local: Option<std::os::unix::net::UnixListener>,
    shared: Arc<Shared>,
    driver: IoDriver,
    ready: ReadySender,
) -> std::io::Result<()> {
    // Its sessions' lines go to the log thread a batch a tick (see
    // `crate::logging::Batched`), and what waits goes when it ends.
    let _batch = crate::logging::BatchThisThread::start();
    let try_uring = match driver {
        IoDriver::Epoll => false,
        IoDriver::IoUring => true,
        IoDriver::Auto => monoio::utils::detect_uring(),
    };
    if try_uring {
        let tuned = std::env::var_os("TORPOR_URING_PLAIN").is_none();
        let built = match tuned.then(|| uring_runtime(true)) {
            Some(Ok(runtime)) => Ok((runtime, true)),
            _ => uring_runtime(false).map(|runtime| (runtime, false)),
        };
        match built {
            Ok((mut runtime, tuned)) => {
                info!(
                    worker = index,
                    driver = "io_uring",
                    defer_taskrun = tuned,
                    "worker started"
                );
                let _ = ready.send((index, Ok(())));
                return runtime.block_on(accept_loop(index, listener, local, shared));
            }
            Err(e) if driver == IoDriver::Auto => {
                // e.g. seccomp refuses io_uring_setup, or RLIMIT_MEMLOCK is
                // too low for the rings.
                warn!(
                    worker = index,
                    "io_uring refused ({e}); falling back to epoll"
                );
            }
            Err(e) => {
                let report = std::io::Error::new(e.kind(), format!("io_uring: {e}"));
                let _ = ready.send((index, Err(report)));
                return Err(e);
            }
        }
    }
    let mut runtime = match monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            let report = std::io::Error::new(e.kind(), format!("epoll: {e}"));
            let _ = ready.send((index, Err(report)));
            return Err(e);
        }
    };
    info!(worker = index, driver = "epoll", "worker started");
    let _ = ready.send((index, Ok(())));
    runtime.block_on(accept_loop(index, listener, local, shared))
}

/// A worker's io_uring runtime. It has no time driver: Torpor's timers
/// are kept by [`crate::timer`], so a park costs the I/O wait alone.
pub type UringRuntime = monoio::Runtime<monoio::IoUringDriver>;

/// An io_uring runtime. With `tuned`, the ring is set up for one thread
/// that both submits and reaps (SINGLE_ISSUER), with completion work
/// deferred to the moment the worker waits for events (DEFER_TASKRUN)
/// instead of interrupting it (COOP_TASKRUN): fewer interruptions and
/// wake-ups per query. Kernels older than 6.1 refuse these flags; the
/// caller then builds a plain ring.
pub fn uring_runtime(tuned: bool) -> std::io::Result<UringRuntime> {
    let mut ring = io_uring::IoUring::builder();
    if tuned {
        ring.setup_coop_taskrun()
            .setup_single_issuer()
            .setup_defer_taskrun();
    }
    monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .with_entries(URING_ENTRIES)
        .uring_builder(ring)
        .build()
}

/// A client connection a listener accepted.
type Accepted = std::io::Result<(Conn, Peer)>;

/// Accepts the next TCP connection this worker keeps: one accepted while
/// it serves more sessions than another worker goes to that worker
/// ([`balance`]).
async fn accept_tcp(
    listener: &monoio::net::TcpListener,
    shared: &Shared,
    worker: usize,
) -> Accepted {
    loop {
        let (stream, peer) = listener.accept().await?;
        let Some(to) = shared.balance.elsewhere(worker) else {
            return Ok((Conn::new(stream, 0)?, Peer::Tcp(peer)));
        };
        // SAFETY: `into_raw_fd` gave up the socket's only owner, so the
        // std stream made from it is now its sole owner and closes it.
        let stream = unsafe { std::net::TcpStream::from_raw_fd(stream.into_raw_fd()) };
        shared.balance.hand(to, balance::Handed { stream, peer });
    }
}

async fn accept_local(listener: &monoio::net::UnixListener) -> Accepted {
    let (stream, _) = listener.accept().await?;
    Ok((Conn::new_unix(stream, 0), Peer::Local))
}

/// How often a listener that keeps failing says so.
const FAILURE_LOG_EVERY: Duration = Duration::from_secs(10);

/// Rate-limits a repeating failure's log line: the first is logged, then
/// one per [`FAILURE_LOG_EVERY`] with the count of those left unsaid.
#[derive(Debug, Default)]
struct FailureLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl FailureLog {
    /// Counts a failure at `now`; `Some(left unsaid since the last line)`
    /// when this one should be logged.
    fn record(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < FAILURE_LOG_EVERY => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// What a worker gives every session it accepts, on any listener.
#[derive(Clone)]
struct Acceptor {
    index: usize,
    shared: Arc<Shared>,
    sessions: Rc<Sessions>,
    buffers: Rc<BufferPool>,
    small_buffers: Rc<BufferPool>,
    pools: Rc<ServicePools>,
    metrics: Rc<WorkerMetrics>,
}

impl Acceptor {
    /// Accepts with `accept` until shutdown, each client served by a task
    /// of its own. One loop per listener, not one select over several: a
    /// select drops the losing accept, and an accept dropped after the
    /// kernel completed it would lose that connection.
    async fn run<F, Fut>(&self, mut accept: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Accepted>,
    {
        let shutdown = Arc::clone(&self.shared.shutdown);
        let mut stop = std::pin::pin!(shutdown.wait());
        let mut failures = FailureLog::default();
        loop {
            let accepted = monoio::select! {
                accepted = accept() => accepted,
                _ = &mut stop => return,
            };
            match accepted {
                Ok((client, peer)) => {
                    self.shared.balance.started(self.index);
                    self.serve(client, peer);
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off a
                    // little instead of spinning, and say so once in a
                    // while, not at every retry (50 lines a second each).
                    if let Some(suppressed) = failures.record(Instant::now()) {
                        warn!(worker = self.index, suppressed, "accept failed: {e}");
                    }
                    crate::timer::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    /// Serves the connections other workers hand to this one, until
    /// shutdown.
    async fn take_handed(&self) {
        let shutdown = Arc::clone(&self.shared.shutdown);
        let mut stop = std::pin::pin!(shutdown.wait());
        loop {
            let handed = monoio::select! {
                handed = self.shared.balance.take_handed(self.index) => handed,
                _ = &mut stop => return,
            };
            for balance::Handed { stream, peer } in handed {
                // Counted for this worker when it was handed over.
                match monoio::net::TcpStream::from_std(stream).and_then(|s| Conn::new(s, 0)) {
                    Ok(client) => self.serve(client, Peer::Tcp(peer)),
                    Err(e) => {
                        self.shared.balance.ended(self.index);
                        warn!(worker = self.index, %peer, "a handed connection failed: {e}");
                    }
                }
            }
        }
    }

    fn serve(&self, mut client: Conn, peer: Peer) {
        // The login's read buffer comes from the pool it goes back to
        // when the session first waits for its client.
        client.rbuf = self.small_buffers.take();
        let (slot, control) = self.sessions.insert();
        let index = self.index;
        let shared = Arc::clone(&self.shared);
        let shared_at_end = Arc::clone(&self.shared);
        let parts = session::WorkerParts {
            index,
            control,
            buffers: Rc::clone(&self.buffers),
            small_buffers: Rc::clone(&self.small_buffers),
            pools: Rc::clone(&self.pools),
            metrics: Rc::clone(&self.metrics),
        };
        // A bug that panics ends its own session (its sockets close as it
        // unwinds), not the worker and every other session on it. A
        // combinator rather than an async block: a block that awaits a
        // future held in a local keeps two copies of it, and this one is
        // the session's whole state, held for as long as its client.
        let serve = AssertUnwindSafe(session::serve(client, peer, shared, parts))
            .catch_unwind()
            .map(move |result| {
                if result.is_err() {
                    error!(worker = index, %peer, "session panicked; it was closed");
                }
                shared_at_end.balance.ended(index);
                drop(slot);
            });
        monoio::spawn(serve);
    }
}

async fn accept_loop(
    index: usize,
    listener: std::net::TcpListener,
    local: Option<std::os::unix::net::UnixListener>,
    shared: Arc<Shared>,
) -> std::io::Result<()> {
    // The worker's start line (with its I/O driver) goes out now, not
    // with its first batch a second later: it is what an operator, or a
    // test, looks for as soon as Torpor serves.
    crate::logging::flush_this_thread();
    let listener = monoio::net::TcpListener::from_std(listener)?;
    let local = local.map(monoio::net::UnixListener::from_std).transpose()?;
    let sessions = Rc::new(Sessions::default());
    {
        let shared = Arc::clone(&shared);
        monoio::spawn(Rc::clone(&sessions).watch(move || shared.shutdown.is_stopping()));
    }
    let buffers = Rc::new(BufferPool::large());
    let small_buffers = Rc::new(BufferPool::small());
    // One pool per service, indexed like `shared.services.all()`; it
    // grows as services are created.
    let pools = Rc::new(ServicePools::default());
    pools.grow(&shared);
    let metrics = Rc::new(shared.metrics.worker(&shared.services.all()));
    monoio::spawn(tick(
        index,
        Arc::clone(&shared),
        Rc::clone(&pools),
        Rc::clone(&metrics),
    ));
    let acceptor = Acceptor {
        index,
        shared: Arc::clone(&shared),
        sessions: Rc::clone(&sessions),
        buffers,
        small_buffers,
        pools: Rc::clone(&pools),
        metrics,
    };
    if let Some(local) = local {
        let acceptor = acceptor.clone();
        // Ends, dropping the socket, when the shutdown starts.
        monoio::spawn(async move { acceptor.run(|| accept_local(&local)).await });
    }
    {
        // Connections other workers accepted for this one.
        let acceptor = acceptor.clone();
        monoio::spawn(async move { acceptor.take_handed().await });
    }
    acceptor.run(|| accept_tcp(&listener, &shared, index)).await;
    drop(listener);
    // Idle sessions end now; busy ones finish their command, see the
    // shutdown as they go idle, and end then.
    sessions.interrupt_idle();
    let grace = shared.settings().shutdown_grace;
    let deadline = Instant::now() + grace;
    while sessions.len() > 0 && Instant::now() < deadline {
        crate::timer::sleep(Duration::from_millis(20)).await;
    }
    if sessions.len() > 0 {
        warn!(
            worker = index,
            sessions = sessions.len(),
            "grace period over: closing sessions still busy"
        );
    }
    // Idle backend connections say goodbye instead of being cut.
    for pool in pools.snapshot() {
        for pooled in pool.drain() {
            pooled.conn.conn.close().await;
        }
    }
    info!(worker = index, "worker stopped");
    Ok(())
}

/// The worker's housekeeping, once a second and whenever a service's
/// actor nudges: idle backend connections past their timeout close; for a
/// service that is suspending (or asleep) every idle connection closes;
/// and what the worker has lent and when it last saw use is published for
/// the actors; what the worker's sessions recorded goes to the metrics;
/// and worker 0 gives freed memory back after a burst of connections
/// closed ([`crate::trim`]). Nothing here runs per query.
async fn tick(
    index: usize,
    shared: Arc<Shared>,
    pools: Rc<ServicePools>,
    metrics: Rc<WorkerMetrics>,
) {
    let mut trim = crate::trim::BurstTrim::default();
    loop {
        let nudged = shared.nudge.listen();
        monoio::select! {
            _ = crate::timer::sleep(Duration::from_secs(1)) => {},
            _ = nudged => {},
        }
        crate::logging::flush_this_thread();
        // Services created since the last tick get pools and counters.
        pools.grow(&shared);
        shared.metrics.grow_worker(&metrics, &shared.services.all());
        let all_pools = pools.snapshot();
        metrics.flush(all_pools.iter().map(|pool| pool.take_stats()));
        if shared.shutdown.is_stopping() {
            return;
        }
        // The allocator's arenas are the process's: one worker decides.
        if index == 0 && trim.observe(shared.registry.len()) {
            crate::trim::give_back_free_memory();
        }
        // A reload's new limits reach the pools here, within a second.
        let settings = shared.settings();
        let workers = shared.config.worker_count();
        let services = shared.services.all();
        for (service, pool) in services.iter().zip(all_pools.iter()) {
            pool.set_limits(
                service.pool_bound_per_worker(settings.backend_connections_per_worker, workers),
                settings.backend_idle_timeout,
                settings.max_connections,
            );
            pool.set_target(
                settings.pool_size.per_worker,
                settings.pool_size.reserve_after,
            );
        }
        let settings_idle_timeout = settings.backend_idle_timeout;
        drop(settings);
        for (service, pool) in services.iter().zip(all_pools.iter()) {
            let Some(activity) = service.workers.get(index) else {
                continue;
            };
            // The epoch first: a worker that answers epoch N must have
            // seen the state the actor set before it published N.
            let epoch = service.suspend_epoch.load(Ordering::Acquire);
            // What live sessions left unread on connections about to
            // close is read first, so that their state survives.
            let active = service.lifecycle.is_active();
            let timeout = settings_idle_timeout;
            let generation = service.generation();
            crate::session::left::settle_idle(pool, |conn, idle_for| {
                !active
                    || conn.generation != generation
                    || idle_for + Duration::from_secs(2) >= timeout
            })
            .await;
            pool.expire();
            if !service.lifecycle.is_active() {
                for pooled in pool.drain() {
                    pooled.conn.conn.close().await;
                }
            }
            // Connections to where the backend was before it moved are
            // never lent again: they close now, not at their idle timeout
            // (dropped, each closes and frees its place).
            drop(pool.take_idle_where(|conn, _| conn.generation != generation));
            let lent = pool.open() - pool.idle();
            activity.lent.store(lent, Ordering::Release);
            activity.open.store(pool.open(), Ordering::Release);
            let now = service.now_ms();
            let last = if lent > 0 {
                Some(now)
            } else {
                pool.last_returned()
                    .map(|at| now.saturating_sub(at.elapsed().as_millis() as u64))
            };
            if let Some(last) = last {
                activity.last_active_ms.fetch_max(last, Ordering::AcqRel);
            }
            activity.acked_epoch.store(epoch, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeating_accept_failure_is_logged_once_per_interval() {
        let mut log = FailureLog::default();
        let start = Instant::now();
        assert_eq!(log.record(start), Some(0));
        // An accept retried every 20 ms for the interval: one line.
        let retries = (1..500).map(|i| start + Duration::from_millis(20 * i));
        assert!(retries.clone().all(|at| log.record(at).is_none()));
        assert_eq!(log.record(start + FAILURE_LOG_EVERY), Some(499));
        assert_eq!(log.record(start + FAILURE_LOG_EVERY * 2), Some(0));
    }
}
