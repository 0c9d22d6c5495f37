//! Torpor: a serverless front for MariaDB.
//!
//! Applications connect to Torpor as they would to MariaDB. Torpor
//! terminates the handshake itself, checks passwords against stored
//! hashes, logs in to the backend as the same user, and forwards commands
//! and replies message by message.
//!
//! Map of the modules:
//!
//! - [`config`]: TOML configuration and command-line flags.
//! - [`worker`]: thread-per-core workers (monoio, io_uring or epoll), one
//!   `SO_REUSEPORT` listener each, graceful shutdown.
//! - [`session`]: one client connection, in phases: admit → login →
//!   command loop → close.
//! - [`backend`]: backend connections: probe, login, change user.
//! - [`net`]: a connection (TCP or Unix socket) with its read buffer.
//! - [`tls`]: TLS on both legs: certificates, rustls over a
//!   connection's buffers, the zero-configuration proof; the backend
//!   leg's CA or pinned fingerprint.
//! - [`endpoint`]: where a backend listens (TCP address or Unix socket).
//! - [`buffers`]: each worker's pools of read and reply buffers.
//! - [`timer`]: sleeps and time limits, kept by one helper thread (the
//!   workers' runtimes have no time driver).
//! - [`trim`]: giving freed memory back to the system after a burst of
//!   connections.
//! - [`pool`]: each worker's pool of backend connections, which sessions
//!   borrow per transaction.
//! - [`unread`]: what a session left unread on a connection it gave back.
//! - [`context`]: what all workers share (config, users, registry, limits).
//! - [`registry`]: client-visible connection ids, for KILL; sessions'
//!   pins, for the admin API and the scalers.
//! - [`users`]: accounts, their stored password hashes and the services
//!   each routes to (a TLS client's server name may choose among them:
//!   [`settings::Settings::service_named`]).
//! - [`accounts`]: accounts read from the backend (`CREATE USER` through
//!   Torpor or not), kept fresh and saved for logins while it sleeps.
//! - [`error`] and [`client_error`]: failures, who caused them, and what a
//!   client is told.
//! - [`shutdown`]: the SIGTERM/SIGINT trigger.
//! - [`logging`]: tracing output.
//! - [`service`]: a database service as the workers see it: address,
//!   cached greeting and baselines, wakes; its lifecycle state machine
//!   ([`service::lifecycle`]).
//! - [`outage`]: a backend that cannot be reached: commands and logins
//!   held while the connect is tried again with backoff, up to a bound.
//! - [`scaler`]: the embedded scaler: drivers (docker, process), one
//!   actor thread per managed service walking its lifecycle.
//! - [`storage`]: a service's datadir on a volume of its own, grown
//!   online as it fills.
//! - [`admin`]: the admin HTTP API (services, actions, health).
//! - [`provision`]: services created and deleted through the admin API,
//!   kept in `state_dir` across restarts.
//! - [`settings`] and [`reload`]: the configuration a SIGHUP may change,
//!   and the prepare-then-commit reload that changes it.
//! - [`metrics`]: Prometheus metrics, recorded per worker without atomics
//!   on the query path and rendered at `GET /metrics`.

pub mod accounts;
pub mod admin;
pub mod backend;
pub mod buffers;
pub mod client_error;
pub mod config;
pub mod context;
pub mod endpoint;
pub mod error;
pub mod hosts;
pub mod local_listener;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod outage;
pub mod pool;
pub mod provision;
pub mod registry;
pub mod reload;
pub mod scaler;
pub mod service;
pub mod session;
pub mod settings;
pub mod shutdown;
pub mod storage;
pub mod timer;
pub mod tls;
pub mod trim;
pub mod unread;
pub mod users;
pub mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use tracing::info;

pub use config::Config;
use context::Shared;
use shutdown::Shutdown;

/// Why Torpor could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// Binding the listeners or starting threads failed.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Binding the Unix socket failed.
    #[error("cannot listen on {}: {source}", path.display())]
    ListenSocket {
        /// The socket's path.
        path: std::path::PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A worker thread could not be started.
    #[error("cannot start a worker thread: {0}")]
    Thread(#[source] std::io::Error),
    /// A worker could not build its runtime (e.g. io_uring forced but
    /// refused).
    #[error("worker {index} cannot start: {source}")]
    Worker {
        /// Which worker.
        index: usize,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// A running proxy.
pub struct Proxy {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    /// Removes the socket file once the workers are done with it.
    local_listener: Option<local_listener::LocalListener>,
    workers: Vec<JoinHandle<std::io::Result<()>>>,
    services: scaler::services::Services,
    admin: Option<admin::AdminServer>,
    accounts: Option<accounts::keeper::Refresher>,
}

impl Proxy {
    /// Starts the workers and returns once they listen.
    pub fn start(config: Config) -> Result<Proxy, StartError> {
        config.validate()?;
        let count = config.worker_count();
        let nudge = Arc::new(event_listener::Event::new());
        let registry = Arc::new(registry::Registry::default());
        let mut services = scaler::services::build(&config, count, &nudge, &registry)?;
        let shared = match Shared::new(
            config,
            Shutdown::new(),
            services.services.clone(),
            nudge,
            registry,
        ) {
            Ok(shared) => Arc::new(shared),
            Err(e) => {
                services.shutdown();
                return Err(e.into());
            }
        };
        // Services created through the admin API before a restart come
        // back before the first client is accepted.
        provision::restore(&shared);
        shared.warm.fill();
        let listen = shared.config.listen;
        let listeners =
            worker::bind_listeners(listen, count).map_err(|source| StartError::Listen {
                addr: listen,
                source,
            })?;
        let local_addr = listeners
            .first()
            .and_then(|l| l.local_addr().ok())
            .unwrap_or(listen);
        let socket_error = |path: &std::path::Path| {
            let path = path.to_path_buf();
            move |source| StartError::ListenSocket { path, source }
        };
        let local_listener = match &shared.config.listen_socket {
            Some(path) => {
                Some(local_listener::LocalListener::bind(path).map_err(socket_error(path))?)
            }
            None => None,
        };
        // Every worker's duplicate of the socket before any worker starts:
        // a failure here must not leave workers running.
        let locals = (0..count)
            .map(|_| match &local_listener {
                Some(l) => l.for_worker().map(Some).map_err(socket_error(l.path())),
                None => Ok(None),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut workers = Vec::with_capacity(count);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        for ((index, listener), local) in listeners.into_iter().enumerate().zip(locals) {
            let shared = Arc::clone(&shared);
            let driver = shared.config.io_driver;
            let ready = ready_tx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("torpor-worker-{index}"))
                .spawn(move || worker::run_worker(index, listener, local, shared, driver, ready))
                .map_err(StartError::Thread)?;
            workers.push(handle);
        }
        drop(ready_tx);
        // Every worker says whether its runtime came up before Torpor
        // claims to be listening; one that cannot start fails the start.
        let mut failure = None;
        for _ in 0..count {
            match ready_rx.recv() {
                Ok((_, Ok(()))) => {}
                Ok((index, Err(source))) => {
                    failure.get_or_insert(StartError::Worker { index, source });
                }
                Err(_) => break,
            }
        }
        if let Some(failure) = failure {
            shared.shutdown.trigger();
            for worker in workers {
                let _ = worker.join();
            }
            services.shutdown();
            return Err(failure);
        }
        let live = shared.services.live();
        let names: Vec<&str> = live.iter().map(|s| s.name.as_str()).collect();
        let socket = local_listener
            .as_ref()
            .map(|l| l.path().display().to_string());
        info!(%local_addr, socket, workers = count, services = ?names, users = shared.settings().users.len(), "listening");
        let admin = admin::AdminServer::start(Arc::clone(&shared));
        hosts::spawn_watermark_watcher(Arc::clone(&shared));
        let accounts = match accounts::keeper::Refresher::start(
            {
                let shared = Arc::clone(&shared);
                move || shared.services.all()
            },
            shared.config.state_dir.clone(),
            std::time::Duration::from_secs(shared.config.accounts_refresh_secs.max(1)),
        ) {
            Ok(refresher) => Some(refresher),
            Err(e) => {
                tracing::warn!(
                    "accounts are not read from the backend: cannot start the thread ({e})"
                );
                None
            }
        };
        Ok(Proxy {
            shared,
            local_addr,
            local_listener,
            workers,
            services,
            admin,
            accounts,
        })
    }

    /// Where clients connect.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The Unix socket clients may connect to, if configured.
    pub fn local_socket(&self) -> Option<&std::path::Path> {
        self.local_listener
            .as_ref()
            .map(local_listener::LocalListener::path)
    }

    /// Where the admin API listens, if it runs.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(admin::AdminServer::local_addr)
    }

    /// The services clients may use now, for tests and embedding
    /// programs.
    pub fn services(&self) -> Arc<Vec<Arc<service::Service>>> {
        self.shared.services.live()
    }

    /// Applies new configurations to this proxy (SIGHUP).
    pub fn reloader(&self) -> reload::Reloader {
        reload::Reloader::new(Arc::clone(&self.shared))
    }

    /// The shutdown trigger (e.g. for signal handlers).
    pub fn shutdown_handle(&self) -> Arc<Shutdown> {
        Arc::clone(&self.shared.shutdown)
    }

    /// Client connections open now.
    pub fn connection_count(&self) -> usize {
        self.shared.connection_count()
    }

    /// Sessions each worker serves now (see [`worker::balance`]).
    pub fn sessions_per_worker(&self) -> Vec<usize> {
        self.shared.balance.sessions()
    }

    /// Starts a graceful shutdown and waits for the workers to finish.
    pub fn stop(self) -> bool {
        self.shared.shutdown.trigger();
        self.join()
    }

    /// Waits for the workers to finish (after a shutdown was triggered).
    /// Returns false when a worker failed or panicked.
    pub fn join(mut self) -> bool {
        let mut clean = true;
        for worker in std::mem::take(&mut self.workers) {
            match worker.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!("worker failed: {e}");
                    clean = false;
                }
                Err(_) => {
                    tracing::error!("worker panicked");
                    clean = false;
                }
            }
        }
        if let Some(admin) = self.admin.take() {
            admin.stop();
        }
        if let Some(accounts) = self.accounts.take() {
            accounts.stop();
        }
        // What logins need from each managed backend is kept, so that
        // the next start greets and logs clients in without waking it.
        for service in self.shared.services.live().iter() {
            if !service.is_managed() {
                continue;
            }
            if let Err(e) = service::kept::save(service, &self.shared.config.state_dir) {
                tracing::warn!(service = %service.name, "its greeting is not kept; the next start wakes it: {e}");
            }
        }
        // Managed backends stop cleanly (data kept) once no session needs
        // them.
        self.services.shutdown();
        self.shared.provisioned.shutdown();
        self.shared.warm.shutdown();
        clean
    }
}
