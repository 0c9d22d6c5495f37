//! The `docker` driver: a service's MariaDB as a container of the
//! `torpor/mariadb` image (`docker/mariadb/build.sh`), driven through the
//! Docker Engine API ([`bollard`]).
//!
//! Each service gets a container `<prefix><service>` and a named volume
//! `<prefix><service>-data` on `/var/lib/mysql`, its port 3306 published
//! on loopback with an ephemeral host port. Suspending pauses the
//! container (cgroup freezer: memory kept, no CPU), parking stops it
//! (clean shutdown, volume kept), waking unpauses or starts it. Docker
//! may hand out a new host port on every start, so the address is read
//! back from the engine each time, never remembered across a stop.
//!
//! The engine is the service's host's (`engine`, `[[hosts]]`): the
//! local one by default, or another reached by its socket or over TCP,
//! whose containers publish on the host's address or listen on its own
//! network.
//!
//! A relocation (`relocation`) moves the service to a new container and
//! volume, on the same engine or another host's, named with a suffix; a
//! file in the service's state folder says which pair, on which host, is
//! the service's now.
//!
//! The [`Driver`] trait is synchronous and bollard is async: the driver
//! owns a current-thread tokio runtime and blocks on each engine call. It
//! never pulls images — there is no registry to pull from — so a missing
//! image is an error that says how to build it.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bollard::errors::Error as EngineError;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerUpdateBody, HostConfig, Mount,
    MountType, PortBinding, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, RemoveContainerOptions, RemoveVolumeOptions, StopContainerOptions,
};
use bollard::Docker;

use super::driver::{AdminAccess, Driver, DriverError, Resources};
use super::usage::{Usage, UsageSource};
use crate::config::hosts::HostNetwork;
use crate::endpoint::Endpoint;

mod engine;
mod inspect;
mod ready;
mod relocation;
mod storage;
mod warm;

pub use engine::capacity_mib;
pub use relocation::placed_host;
pub use warm::WARM_OWNER;

use inspect::{inspected, short, Inspected, State};

/// The image a service runs unless configured otherwise.
pub const DEFAULT_IMAGE: &str = "torpor/mariadb:10.11";
/// What container and volume names start with unless configured otherwise.
pub const DEFAULT_PREFIX: &str = "torpor-";
/// The label that names the Torpor service a container or volume belongs to.
pub const SERVICE_LABEL: &str = "org.torpor.service";
/// The account `admin_access` hands out: the image's entrypoint creates
/// `root@'%'` with `MARIADB_ROOT_PASSWORD` when it initializes a volume.
pub const ADMIN_USER: &str = "root";

/// MariaDB's port inside the container, as the engine keys it.
const MARIADB_PORT: &str = "3306/tcp";
/// Where the image keeps its datadir.
const DATADIR: &str = "/var/lib/mysql";
/// Where the image's server puts its Unix socket (Debian's default).
const SOCKET_DIR: &str = "/run/mysqld";
/// The socket's file name there.
const SOCKET_NAME: &str = "mysqld.sock";
/// How long the socket may lag behind the TCP port's first greeting.
const SOCKET_WAIT: Duration = Duration::from_secs(2);
/// How long `docker stop` waits for a clean shutdown before SIGKILL.
/// InnoDB flushes dirty pages and dumps the buffer pool's page ids on
/// SIGTERM; killing it instead costs a crash recovery at the next start.
const STOP_TIMEOUT_SECS: i32 = 30;
/// How long [`engine_available`] waits for the engine to answer.
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between handshake attempts while a backend comes up.
const READY_POLL: Duration = Duration::from_millis(20);
/// Log lines quoted in the error of a backend that died while starting.
const LOG_TAIL_LINES: &str = "20";

/// How to run one service's container.
#[derive(Debug, Clone)]
pub struct DockerOptions {
    /// The Torpor service; names the container and volume and labels them.
    pub service: String,
    /// The image to run; never pulled (see `docker/mariadb/build.sh`).
    pub image: String,
    /// Root's password (`MARIADB_ROOT_PASSWORD`). The image applies it
    /// only when it initializes an empty volume: an existing volume keeps
    /// the password it was initialized with.
    pub admin_password: String,
    /// CPU and memory limits of a newly created container (later changes
    /// go through [`Driver::resize`]).
    pub resources: Resources,
    /// InnoDB buffer pool size at start, e.g. `128M`.
    pub buffer_pool: String,
    /// How long a start or thaw may take to greet.
    pub ready_timeout: Duration,
    /// What the container and volume names start with; tests use unique
    /// prefixes so parallel runs never share a container.
    pub name_prefix: String,
    /// A host directory bind-mounted at the container's `/run/mysqld`:
    /// sessions then reach the server through its Unix socket there, a
    /// cheaper hop than the published TCP port (no TCP stack, no Docker
    /// port proxy: 10–25 % less proxy CPU per query, measured). `None`:
    /// TCP. The scaler's own connections stay on TCP either way.
    pub socket_dir: Option<PathBuf>,
    /// The service's state folder: a relocation records there which
    /// container and volume are the service's now. `None`: not recorded
    /// (a Torpor started again would look for the first pair).
    pub state_dir: Option<PathBuf>,
    /// What a relocated backend's container and volume names end with
    /// (`-m<unix ms>`), or a warm pool's pair (`-<id>`, see
    /// [`DockerOptions::made_as`]); empty for the service's first pair.
    /// Read from the
    /// state folder by [`DockerDriver::new`].
    pub placement: String,
    /// The host whose engine runs the containers.
    pub host: crate::config::hosts::HostConfig,
    /// `[services.storage]`: the datadir is a volume of the service's own
    /// (`storage`) instead of a named Docker volume.
    pub storage: Option<crate::config::storage::StorageConfig>,
    /// The name the container and volume were made under when it is not
    /// the service's: a warm pool's pair (`warm`) the service took over.
    /// Their names and label say it; the placement file keeps it.
    pub made_as: Option<String>,
}

impl DockerOptions {
    /// Options with the defaults for everything but the service and the
    /// admin password: the default image and prefix, 1 CPU, 1 GiB, a
    /// 128 MiB buffer pool and two minutes to become ready (the first
    /// start initializes the datadir).
    pub fn new(service: impl Into<String>, admin_password: impl Into<String>) -> DockerOptions {
        DockerOptions {
            service: service.into(),
            image: DEFAULT_IMAGE.to_string(),
            admin_password: admin_password.into(),
            resources: Resources {
                cpus: 1.0,
                memory_mib: 1024,
            },
            buffer_pool: "128M".to_string(),
            ready_timeout: Duration::from_secs(120),
            name_prefix: DEFAULT_PREFIX.to_string(),
            socket_dir: None,
            state_dir: None,
            placement: String::new(),
            made_as: None,
            host: crate::config::hosts::HostConfig::local(),
            storage: None,
        }
    }

    /// The container's name.
    pub fn container_name(&self) -> String {
        format!("{}{}{}", self.name_prefix, self.owner(), self.placement)
    }

    /// The name the container and volume were made under, which their
    /// label carries: the service's, or [`DockerOptions::made_as`].
    pub fn owner(&self) -> &str {
        self.made_as.as_deref().unwrap_or(&self.service)
    }

    /// The datadir volume's name.
    pub fn volume_name(&self) -> String {
        format!(
            "{}{}{}-data",
            self.name_prefix,
            self.owner(),
            self.placement
        )
    }
}

/// Whether a Docker engine answers on the local socket within a short
/// timeout; the scaler's choice of default driver.
pub fn engine_available() -> bool {
    let Ok(runtime) = runtime() else {
        return false;
    };
    runtime.block_on(async {
        let Ok(docker) = Docker::connect_with_local_defaults() else {
            return false;
        };
        matches!(
            tokio::time::timeout(PING_TIMEOUT, docker.ping()).await,
            Ok(Ok(_))
        )
    })
}

/// A current-thread runtime with what bollard needs: sockets and timers.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
}

/// A service backend run as a Docker container.
pub struct DockerDriver {
    options: DockerOptions,
    runtime: tokio::runtime::Runtime,
    docker: Docker,
    /// Whether `docker` speaks the engine's API version yet. Negotiated
    /// on first use, so a driver can be built while the engine restarts,
    /// unless an earlier driver settled it with the same engine.
    negotiated: bool,
    /// Where the server answered last; `None` while stopped or unknown.
    address: Option<SocketAddr>,
    /// The container's id as of the last engine call that saw it.
    container_id: Option<String>,
    /// Where the running container's usage is read (its cgroup), found
    /// once per start.
    usage_source: Option<UsageSource>,
    /// The service's own volume, once mounted (`[services.storage]`);
    /// else, on this machine, the watch of its named volume's filesystem.
    storage: Option<crate::storage::Watch>,
    /// The named volume [`Self::watch_named_volume`] looked up last.
    watched_volume: Option<String>,
}

impl std::fmt::Debug for DockerDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not derived: the options hold the admin password.
        f.debug_struct("DockerDriver")
            .field("container", &self.options.container_name())
            .field("image", &self.options.image)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl DockerDriver {
    /// A driver for `options.service`. Nothing is asked of the engine
    /// yet: the first driver call connects, creating the container if
    /// needed. A service that was relocated runs the container and volume
    /// its state folder's placement file names.
    pub fn new(mut options: DockerOptions) -> Result<DockerDriver, DriverError> {
        relocation::apply_placement(&mut options);
        let runtime = runtime().map_err(|e| {
            DriverError::Failed(format!("starting the docker driver's runtime: {e}"))
        })?;
        // The client is built inside the runtime: its connector may need
        // one, even though it opens no connection before the first call.
        let settled = engine::settled_version(&options.host);
        let version = settled.as_ref().unwrap_or(bollard::API_DEFAULT_VERSION);
        let docker = runtime.block_on(async { engine::connect(&options.host, version) })?;
        Ok(DockerDriver {
            options,
            runtime,
            docker,
            negotiated: settled.is_some(),
            address: None,
            container_id: None,
            usage_source: None,
            storage: None,
            watched_volume: None,
        })
    }

    /// The options the driver runs with.
    pub fn options(&self) -> &DockerOptions {
        &self.options
    }

    /// Runs an engine call to completion on the driver's runtime.
    fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Settles the API version with the engine once. bollard's default
    /// is newer than older engines accept (Docker 20.10 speaks 1.41 and
    /// refuses anything above).
    fn connect(&mut self) -> Result<(), DriverError> {
        if self.negotiated {
            return Ok(());
        }
        let docker = self
            .block_on(self.docker.clone().negotiate_version())
            .map_err(|e| DriverError::Failed(format!("the Docker engine does not answer: {e}")))?;
        engine::remember_version(&self.options.host, docker.client_version());
        self.docker = docker;
        self.negotiated = true;
        Ok(())
    }

    /// Inspects the container; `None` when it does not exist.
    fn inspect(&self) -> Result<Option<Inspected>, DriverError> {
        let name = self.options.container_name();
        let response = match self.block_on(self.docker.inspect_container(&name, None)) {
            Ok(response) => response,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(failed("inspecting", &name, e)),
        };
        self.check_ownership(&response)?;
        Ok(Some(inspected(&response)))
    }

    /// Inspects the container that must exist: a missing one is
    /// [`DriverError::Gone`].
    fn inspect_existing(&mut self) -> Result<Inspected, DriverError> {
        self.connect()?;
        match self.inspect()? {
            Some(found) => {
                self.container_id = Some(found.id.clone());
                Ok(found)
            }
            None => {
                self.forget();
                Err(DriverError::Gone(format!(
                    "the container {} no longer exists",
                    self.options.container_name()
                )))
            }
        }
    }

    /// Refuses to drive a container of that name that some other tool
    /// created: stopping or destroying it would lose someone else's data.
    fn check_ownership(&self, response: &ContainerInspectResponse) -> Result<(), DriverError> {
        let label = response
            .config
            .as_ref()
            .and_then(|config| config.labels.as_ref())
            .and_then(|labels| labels.get(SERVICE_LABEL));
        if label.map(String::as_str) == Some(self.options.owner()) {
            return Ok(());
        }
        Err(DriverError::Failed(format!(
            "a container named {} exists but is not Torpor's service {:?} (label {SERVICE_LABEL} is {label:?}); \
             remove or rename it",
            self.options.container_name(),
            self.options.service
        )))
    }

    /// Forgets what the driver knew of a container that went away.
    fn forget(&mut self) {
        self.address = None;
        self.container_id = None;
        self.usage_source = None;
    }

    /// The cgroup of the running container, through its main process.
    fn find_usage_source(&mut self) -> Result<UsageSource, DriverError> {
        let found = self.inspect_existing()?;
        let name = self.options.container_name();
        let pid = found
            .pid
            .filter(|&pid| pid > 0)
            .ok_or_else(|| DriverError::Failed(format!("{name} is {}", found.status)))?;
        UsageSource::cgroup_of(pid).ok_or_else(|| {
            DriverError::Failed(format!(
                "no cgroup of {name} (pid {pid}) under this host's /sys/fs/cgroup"
            ))
        })
    }

    /// Creates the volume (labelled) and the container.
    fn create(&mut self) -> Result<(), DriverError> {
        let name = self.options.container_name();
        self.check_image()?;
        // Creating an existing volume returns it as it is: a container
        // removed underneath Torpor comes back on its old data.
        let mut mounts = vec![self.datadir_mount(Self::create_volume)?];
        let image = &self.options.image;
        let labels = self.labels();
        if let Some(dir) = &self.options.socket_dir {
            std::fs::create_dir_all(dir).map_err(|e| {
                DriverError::Failed(format!(
                    "creating the socket directory {}: {e}",
                    dir.display()
                ))
            })?;
            // The image's entrypoint gives it to the container's mysql user.
            mounts.push(Mount {
                target: Some(SOCKET_DIR.to_string()),
                source: Some(dir.display().to_string()),
                typ: Some(MountType::BIND),
                ..Default::default()
            });
        }
        let mut labels = labels;
        let mut cmd = vec![
            format!("--innodb-buffer-pool-size={}", self.options.buffer_pool),
            "--innodb-buffer-pool-dump-at-shutdown=ON".to_string(),
            // The image keeps a binary log: a relocation's target
            // replicates from this server, and needs another id.
            format!("--server-id={}", relocation::server_id(&name)),
            // What it applied as a relocation's target goes to its own
            // binary log too: moved again, its copy's GTID position is
            // one its binary log holds (else the next target's
            // replication starts at the log's first event, and repeats
            // what the copy holds).
            "--log-slave-updates=ON".to_string(),
        ];
        let host = &self.options.host;
        let (network_mode, port_bindings) = match host.network {
            // `ADDRESS::3306`: on the host's address only (loopback by
            // default), any free host port.
            HostNetwork::Publish => (
                None,
                Some(HashMap::from([(
                    MARIADB_PORT.to_string(),
                    Some(vec![PortBinding {
                        host_ip: Some(host.address.to_string()),
                        host_port: Some(String::new()),
                    }]),
                )])),
            ),
            // The host's own network: a port of its own, on the host's
            // address only, said in a label for the next inspection.
            HostNetwork::Host => {
                let port = self.free_host_port()?;
                labels.insert(engine::PORT_LABEL.to_string(), port.to_string());
                cmd.push(format!("--port={port}"));
                cmd.push(format!("--bind-address={}", host.address));
                (Some("host".to_string()), None)
            }
        };
        let body = ContainerCreateBody {
            image: Some(image.clone()),
            env: Some(vec![format!(
                "MARIADB_ROOT_PASSWORD={}",
                self.options.admin_password
            )]),
            // Arguments starting with '-' go to mariadbd after the image's
            // own command (its entrypoint prepends `mariadbd`).
            cmd: Some(cmd),
            labels: Some(labels),
            exposed_ports: Some(vec![MARIADB_PORT.to_string()]),
            // A `docker stop` by hand shuts down as cleanly as Torpor's.
            stop_timeout: Some(i64::from(STOP_TIMEOUT_SECS)),
            host_config: Some(HostConfig {
                mounts: Some(mounts),
                network_mode,
                port_bindings,
                ..limits(self.options.resources)
            }),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(name.clone()),
            ..Default::default()
        };
        match self.block_on(self.docker.create_container(Some(options), body)) {
            Ok(created) => {
                // E.g. a kernel without swap accounting ignoring MemorySwap.
                for warning in &created.warnings {
                    tracing::warn!(container = %name, %warning, "the engine warned");
                }
                tracing::info!(container = %name, id = %short(&created.id), "created");
                Ok(())
            }
            // The image went away between the check and the create.
            Err(e) if is_not_found(&e) => Err(missing_image(image)),
            Err(e) => Err(failed("creating the container", &name, e)),
        }
    }

    /// The labels of the service's container and volume.
    fn labels(&self) -> HashMap<String, String> {
        HashMap::from([(SERVICE_LABEL.to_string(), self.options.owner().to_string())])
    }

    /// Checks that the image is on this machine (it is never pulled).
    fn check_image(&self) -> Result<(), DriverError> {
        let image = &self.options.image;
        match self.block_on(self.docker.inspect_image(image)) {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Err(missing_image(image)),
            Err(e) => Err(failed("inspecting the image", image, e)),
        }
    }

    /// Creates the datadir volume (labelled), or finds it; returns its name.
    fn create_volume(&self) -> Result<String, DriverError> {
        let volume = self.options.volume_name();
        self.block_on(self.docker.create_volume(VolumeCreateRequest {
            name: Some(volume.clone()),
            labels: Some(self.labels()),
            ..Default::default()
        }))
        .map_err(|e| failed("creating the volume", &volume, e))?;
        Ok(volume)
    }

    /// Unpauses the container.
    fn unpause(&mut self) -> Result<(), DriverError> {
        let name = self.options.container_name();
        self.block_on(self.docker.unpause_container(&name))
            .map_err(|e| self.engine_error("unpausing", &name, e))
    }

    /// Starts the stopped container.
    fn start_container(&mut self) -> Result<(), DriverError> {
        let name = self.options.container_name();
        self.block_on(self.docker.start_container(&name, None))
            .map_err(|e| self.engine_error("starting", &name, e))
    }

    /// Classifies an engine error about the container, forgetting it
    /// when it is gone.
    fn engine_error(&mut self, action: &str, name: &str, e: EngineError) -> DriverError {
        if is_not_found(&e) {
            self.forget();
            return DriverError::Gone(format!("{action} {name}: {}", engine_message(&e)));
        }
        failed(action, name, e)
    }

    /// Refuses a memory limit below the container's working set. On
    /// cgroup v1 the engine would refuse it too, but on cgroup v2 the
    /// kernel takes it and OOM-kills mariadbd instead. Without stats (an
    /// engine that does not answer in time) the engine decides.
    fn check_fits(&self, limit: i64) -> Result<(), DriverError> {
        let Some(working_set) = self.working_set() else {
            return Ok(());
        };
        if i64::try_from(working_set).unwrap_or(i64::MAX) <= limit {
            return Ok(());
        }
        Err(DriverError::Failed(format!(
            "{} uses {} MiB, more than the {} MiB limit asked for; shrink the buffer pool first",
            self.options.container_name(),
            working_set / (1024 * 1024),
            limit / (1024 * 1024)
        )))
    }

    /// Memory the container holds that the kernel cannot simply drop:
    /// its usage less inactive page cache, as `docker stats` shows it.
    fn working_set(&self) -> Option<u64> {
        let stats = self.stats_once()?;
        engine::working_set(stats.memory_stats.as_ref()?)
    }
}

impl Driver for DockerDriver {
    fn kind(&self) -> &'static str {
        "docker"
    }

    fn start(&mut self) -> Result<Endpoint, DriverError> {
        self.connect()?;
        self.attach_storage()?;
        let started = Instant::now();
        let found = match self.inspect()? {
            Some(found) => found,
            None => {
                self.forget();
                self.create()?;
                self.inspect_existing()?
            }
        };
        self.check_datadir(&found)?;
        match found.state {
            State::Running => {}
            State::Paused => self.unpause()?,
            State::Stopped => self.start_container()?,
            State::Other => {
                return Err(DriverError::Failed(format!(
                    "{} is {}; remove it to let Torpor create it anew",
                    self.options.container_name(),
                    found.status
                )))
            }
        }
        let addr = self.wait_ready()?;
        let endpoint = self.endpoint(addr);
        tracing::info!(
            container = %self.options.container_name(),
            %endpoint,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "ready"
        );
        Ok(endpoint)
    }

    fn freeze(&mut self) -> Result<(), DriverError> {
        let found = self.inspect_existing()?;
        match found.state {
            State::Paused => Ok(()),
            State::Running => {
                let name = self.options.container_name();
                self.block_on(self.docker.pause_container(&name))
                    .map_err(|e| self.engine_error("pausing", &name, e))
            }
            State::Stopped | State::Other => Err(DriverError::Failed(format!(
                "cannot freeze {}: it is {}",
                self.options.container_name(),
                found.status
            ))),
        }
    }

    fn thaw(&mut self) -> Result<Endpoint, DriverError> {
        let found = self.inspect_existing()?;
        match found.state {
            State::Paused => self.unpause()?,
            State::Running => {}
            // Stopped behind Torpor's back (engine restart, OOM kill): a
            // start brings the service back, slower but whole.
            State::Stopped => self.start_container()?,
            State::Other => {
                return Err(DriverError::Failed(format!(
                    "cannot thaw {}: it is {}",
                    self.options.container_name(),
                    found.status
                )))
            }
        }
        let addr = self.wait_ready()?;
        Ok(self.endpoint(addr))
    }

    fn stop(&mut self) -> Result<(), DriverError> {
        let found = self.inspect_existing()?;
        self.address = None;
        let name = self.options.container_name();
        match found.state {
            State::Stopped => return Ok(()),
            // A paused server would only get SIGTERM once thawed, so the
            // stop would wait out its timeout and then kill it.
            State::Paused => self.unpause()?,
            State::Running | State::Other => {}
        }
        let options = StopContainerOptions {
            t: Some(STOP_TIMEOUT_SECS),
            ..Default::default()
        };
        self.block_on(self.docker.stop_container(&name, Some(options)))
            .map_err(|e| self.engine_error("stopping", &name, e))
    }

    fn resize(&mut self, resources: Resources) -> Result<(), DriverError> {
        let found = self.inspect_existing()?;
        let name = self.options.container_name();
        let limits = limits(resources);
        let shrinking = match (found.memory, limits.memory) {
            (Some(old), Some(new)) => old <= 0 || new < old,
            _ => false,
        };
        if shrinking {
            self.check_fits(limits.memory.unwrap_or_default())?;
        }
        let body = ContainerUpdateBody {
            nano_cpus: limits.nano_cpus,
            memory: limits.memory,
            memory_swap: limits.memory_swap,
            ..Default::default()
        };
        // Above the working set, the kernel may still fail to reclaim
        // enough page cache (cgroup v1): runc's message ("unable to set
        // memory limit … current usage …") comes back and the old limits
        // stay.
        self.block_on(self.docker.update_container(&name, body))
            .map_err(|e| self.engine_error("resizing", &name, e))?;
        // A container created anew (after it was removed) gets these.
        self.options.resources = resources;
        Ok(())
    }

    fn usage(&mut self) -> Result<Usage, DriverError> {
        if !engine::on_this_machine(&self.options.host) {
            return self.engine_usage();
        }
        if let Some(source) = &self.usage_source {
            if let Ok(usage) = source.read() {
                return Ok(usage);
            }
        }
        // Not found yet, or gone (the container restarted or was
        // replaced): look it up again.
        let source = self.find_usage_source()?;
        let usage = source.read().map_err(|e| {
            DriverError::Failed(format!(
                "reading {}'s usage: {e}",
                self.options.container_name()
            ))
        })?;
        self.usage_source = Some(source);
        Ok(usage)
    }

    fn admin_access(&self) -> Option<AdminAccess> {
        Some(AdminAccess {
            address: self.address?,
            user: ADMIN_USER.to_string(),
            password: self.options.admin_password.clone(),
        })
    }

    fn describe(&self) -> String {
        let name = self.options.container_name();
        // Asked live (briefly) so the admin API shows what the engine
        // says, not what the driver last did.
        let live = self.negotiated.then(|| {
            self.block_on(async {
                tokio::time::timeout(PING_TIMEOUT, self.docker.inspect_container(&name, None)).await
            })
        });
        match live {
            Some(Ok(Ok(response))) => {
                let found = inspected(&response);
                let on = self
                    .address
                    .map_or_else(String::new, |addr| format!(" on {addr}"));
                format!(
                    "container {name} {} ({}){on}",
                    short(&found.id),
                    found.status
                )
            }
            Some(Ok(Err(e))) if is_not_found(&e) => format!("container {name} (not created)"),
            _ => match &self.container_id {
                Some(id) => format!("container {name} {} (state unknown)", short(id)),
                None => format!("container {name} (state unknown)"),
            },
        }
    }

    fn host(&self) -> &str {
        &self.options.host.name
    }

    fn replication_address(&self, target_host: &str) -> Result<SocketAddr, DriverError> {
        self.replication_source(target_host)
    }

    fn relocation_target(
        &self,
        to: Option<&crate::config::hosts::HostConfig>,
    ) -> Result<Box<dyn Driver>, DriverError> {
        if self.options.storage.is_some() {
            return Err(DriverError::Failed(
                "a service with [services.storage] cannot be relocated yet: its datadir is a volume of its own".into(),
            ));
        }
        Ok(Box::new(DockerDriver::new(self.target_options(to)?)?))
    }

    fn backup_command(&self) -> Result<std::process::Command, DriverError> {
        self.backup()
    }

    fn restore(
        &mut self,
        backup: &mut dyn std::io::Read,
        copied: &std::sync::atomic::AtomicU64,
    ) -> Result<String, DriverError> {
        self.restore_backup(backup, copied)
    }

    fn freeze_outlives_torpor(&self) -> bool {
        // Not on a volume of Torpor's ([services.storage]): it is
        // unmounted when Torpor stops, and a paused server must not keep
        // writing to an image mounted again at the next start.
        self.options.storage.is_none()
    }

    fn found_frozen(&mut self) -> bool {
        matches!(self.inspect_existing(), Ok(found) if found.state == State::Paused)
    }

    fn hot_pages_command(&self) -> Result<std::process::Command, DriverError> {
        self.hot_pages()
    }

    fn place_hot_pages(&mut self, pages: &[u8]) -> Result<(), DriverError> {
        self.place_pages(pages)
    }

    fn export_at_rest(&mut self) -> Result<std::process::Command, DriverError> {
        self.export()
    }

    fn import_at_rest(
        &mut self,
        data: &mut dyn std::io::Read,
        copied: &std::sync::atomic::AtomicU64,
    ) -> Result<(), DriverError> {
        self.import(data, copied)
    }

    fn take_service_limits(&mut self) -> Result<(), DriverError> {
        let resources = self.options.resources;
        self.resize(resources)
    }

    fn take_over(&mut self) -> Result<(), DriverError> {
        self.record_placement()
    }

    fn destroy(&mut self) -> Result<(), DriverError> {
        self.connect()?;
        let name = self.options.container_name();
        // Only Torpor's own container: inspect refuses a stranger's.
        if self.inspect()?.is_some() {
            let options = RemoveContainerOptions {
                force: true,
                v: true,
                ..Default::default()
            };
            match self.block_on(self.docker.remove_container(&name, Some(options))) {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(failed("removing", &name, e)),
            }
        }
        self.forget();
        let volume = self.options.volume_name();
        let options = RemoveVolumeOptions { force: true };
        match self.block_on(self.docker.remove_volume(&volume, Some(options))) {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(failed("removing the volume", &volume, e)),
        }
        self.forget_placement();
        self.remove_storage()
    }

    fn check_storage(&mut self) -> Option<crate::storage::StorageView> {
        self.watch_named_volume();
        Some(self.storage.as_mut()?.check())
    }
}

/// The engine's limits for `resources`: CPUs as nano-CPUs, memory in
/// bytes, and no swap on top (`MemorySwap` equal to `Memory`): a database
/// that swaps is slower than one that is told it has less memory.
fn limits(resources: Resources) -> HostConfig {
    // Rounded: 0.5 CPU is exactly 500_000_000, whatever the float says.
    let nano_cpus = (resources.cpus * 1e9).round() as i64;
    let bytes = i64::try_from(resources.memory_mib.saturating_mul(1024 * 1024)).unwrap_or(i64::MAX);
    HostConfig {
        nano_cpus: Some(nano_cpus),
        memory: Some(bytes),
        memory_swap: Some(bytes),
        ..Default::default()
    }
}

/// Whether the engine answered 404: no such container, image or volume.
fn is_not_found(e: &EngineError) -> bool {
    matches!(
        e,
        EngineError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// The engine's own words for an error, without bollard's wrapping.
fn engine_message(e: &EngineError) -> String {
    match e {
        EngineError::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// A failed engine call on `what`.
fn failed(action: &str, what: &str, e: EngineError) -> DriverError {
    DriverError::Failed(format!("{action} {what}: {}", engine_message(&e)))
}

/// The error for an image that is not on this machine.
fn missing_image(image: &str) -> DriverError {
    DriverError::Failed(format!(
        "the image {image} is not on this machine and Torpor does not pull images: \
         build it with docker/mariadb/build.sh"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_exact_engine_units() {
        let limits = limits(Resources {
            cpus: 0.5,
            memory_mib: 512,
        });
        assert_eq!(limits.nano_cpus, Some(500_000_000));
        assert_eq!(limits.memory, Some(512 * 1024 * 1024));
        assert_eq!(limits.memory_swap, limits.memory);
    }

    #[test]
    fn names_follow_the_prefix() {
        let mut options = DockerOptions::new("orders", "secret");
        assert_eq!(options.container_name(), "torpor-orders");
        options.name_prefix = "t1-".into();
        assert_eq!(options.volume_name(), "t1-orders-data");
    }
}
