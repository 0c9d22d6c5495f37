//! Which Docker Engine a service's containers run on (a `[[hosts]]`
//! entry), and how Torpor talks to it: bollard for the API, the docker
//! CLI for a relocation's streams, both pointed at the host's engine.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use bollard::models::{ContainerMemoryStats, ContainerStatsResponse};
use bollard::query_parameters::{ListContainersOptions, StatsOptions};
use bollard::{ClientVersion, Docker};
use futures_util::StreamExt;

use super::{failed, DockerDriver, SERVICE_LABEL};
use crate::config::hosts::{HostConfig, HostNetwork};
use crate::scaler::driver::DriverError;
use crate::scaler::usage::Usage;

/// The label that says which port a server on a host's own network
/// listens on ([`HostNetwork::Host`]).
pub(super) const PORT_LABEL: &str = "org.torpor.port";

/// The ports Torpor gives servers on a host's own network: above
/// MariaDB's default, so a server the host runs itself keeps 3306.
const HOST_PORTS: std::ops::RangeInclusive<u16> = 13306..=14305;

/// How long a statistics sample may take.
const STATS_TIMEOUT: Duration = Duration::from_secs(2);

/// How long an engine call may take before the API client gives up.
const ENGINE_TIMEOUT_SECS: u64 = 120;

/// Docker's own socket, where bollard's local defaults look too.
const DOCKER_SOCKET: &str = "unix:///var/run/docker.sock";

/// The API version each engine settled on ([`settled_version`]), by
/// [`engine_key`].
static SETTLED: Mutex<Vec<(String, ClientVersion)>> = Mutex::new(Vec::new());

/// What tells engines apart: where Torpor reaches one and with what
/// credentials (a reload may point a host's name elsewhere).
fn engine_key(host: &HostConfig) -> String {
    format!(
        "{:?} {:?} {:?} {:?}",
        host.engine, host.tls_ca, host.tls_cert, host.tls_key
    )
}

/// The API version `host`'s engine settled on with an earlier driver:
/// a new one (a service created at run time, each service at a start)
/// then skips its own `/version` round trip, 5 ms here, which a warm
/// pool's checkout would otherwise wait for.
pub(super) fn settled_version(host: &HostConfig) -> Option<ClientVersion> {
    let key = engine_key(host);
    let settled = SETTLED.lock().unwrap_or_else(|e| e.into_inner());
    settled
        .iter()
        .find(|(engine, _)| *engine == key)
        .map(|(_, version)| *version)
}

/// Remembers the version `host`'s engine settled on.
pub(super) fn remember_version(host: &HostConfig, version: ClientVersion) {
    let key = engine_key(host);
    let mut settled = SETTLED.lock().unwrap_or_else(|e| e.into_inner());
    settled.retain(|(engine, _)| *engine != key);
    settled.push((key, version));
}

/// A client for `host`'s engine speaking API `version` (bollard's
/// default until one is settled). Call inside a tokio runtime: the
/// connector may need one, though it opens no connection yet.
pub(super) fn connect(host: &HostConfig, version: &ClientVersion) -> Result<Docker, DriverError> {
    let fail = |e: bollard::errors::Error| {
        DriverError::Failed(format!("host '{}': the Docker engine: {e}", host.name))
    };
    let Some(engine) = &host.engine else {
        // As `Docker::connect_with_local_defaults`, which takes no
        // version: `DOCKER_HOST` when it names a socket, else Docker's.
        let path = std::env::var("DOCKER_HOST")
            .ok()
            .filter(|p| p.starts_with("unix://"));
        let path = path.as_deref().unwrap_or(DOCKER_SOCKET);
        return Docker::connect_with_unix(path, ENGINE_TIMEOUT_SECS, version).map_err(fail);
    };
    if let Some(path) = engine.strip_prefix("unix://") {
        return Docker::connect_with_socket(path, ENGINE_TIMEOUT_SECS, version).map_err(fail);
    }
    match (&host.tls_ca, &host.tls_cert, &host.tls_key) {
        (Some(ca), Some(cert), Some(key)) => {
            Docker::connect_with_ssl(engine, key, cert, ca, ENGINE_TIMEOUT_SECS, version)
                .map_err(fail)
        }
        _ => Docker::connect_with_http(engine, ENGINE_TIMEOUT_SECS, version).map_err(fail),
    }
}

/// Whether `host`'s engine runs on Torpor's own machine (its default
/// engine or a Unix socket): then its containers' processes and cgroups
/// are this machine's, and their usage is read there.
pub(super) fn on_this_machine(host: &HostConfig) -> bool {
    host.engine
        .as_deref()
        .is_none_or(|engine| engine.starts_with("unix://"))
}

/// The docker CLI, pointed at `host`'s engine: a relocation runs it
/// (`docker exec`, `docker run` of helper containers: streams that
/// bollard would have to re-frame).
pub(super) fn cli(host: &HostConfig) -> Result<Command, DriverError> {
    let program = docker_program()?;
    let mut command = Command::new(program);
    if let Some(engine) = &host.engine {
        command.arg("--host").arg(engine);
        if let (Some(ca), Some(cert), Some(key)) = (&host.tls_ca, &host.tls_cert, &host.tls_key) {
            command
                .arg("--tlsverify")
                .arg("--tlscacert")
                .arg(ca)
                .arg("--tlscert")
                .arg(cert)
                .arg("--tlskey")
                .arg(key);
        }
    }
    Ok(command)
}

/// Where the docker CLI is, or why a relocation cannot run.
fn docker_program() -> Result<PathBuf, DriverError> {
    crate::scaler::process::find_program(&["docker"]).ok_or_else(|| {
        DriverError::Failed(
            "the docker CLI is not installed where Torpor runs: moving a container runs it (Debian: docker.io or docker-ce-cli)".into(),
        )
    })
}

/// Memory a container holds that the kernel cannot simply drop: its
/// usage less inactive page cache, as `docker stats` shows it.
pub(super) fn working_set(memory: &ContainerMemoryStats) -> Option<u64> {
    let usage = memory.usage?;
    // cgroup v1 names it total_inactive_file, v2 inactive_file.
    let inactive = memory.stats.as_ref().and_then(|stats| {
        stats
            .get("total_inactive_file")
            .or_else(|| stats.get("inactive_file"))
            .copied()
    });
    Some(usage.saturating_sub(inactive.unwrap_or(0)))
}

/// The memory `host` offers services, MiB: its entry's `memory_mib`, or
/// what its engine reports of its machine.
pub fn capacity_mib(host: &HostConfig) -> Result<u64, DriverError> {
    if let Some(memory) = host.memory_mib {
        return Ok(memory);
    }
    let runtime = super::runtime().map_err(|e| {
        DriverError::Failed(format!("starting a runtime for host '{}': {e}", host.name))
    })?;
    runtime.block_on(async {
        let settled = settled_version(host);
        let docker = connect(
            host,
            settled.as_ref().unwrap_or(bollard::API_DEFAULT_VERSION),
        )?;
        let info = tokio::time::timeout(Duration::from_secs(5), docker.info())
            .await
            .map_err(|_| {
                DriverError::Failed(format!("host '{}': the engine did not answer", host.name))
            })?
            .map_err(|e| failed("asking about", &host.name, e))?;
        let bytes = info
            .mem_total
            .and_then(|b| u64::try_from(b).ok())
            .unwrap_or(0);
        Ok(bytes / (1024 * 1024))
    })
}

impl DockerDriver {
    /// One sample of the container's statistics from the engine; `None`
    /// when it does not answer in time.
    pub(super) fn stats_once(&self) -> Option<ContainerStatsResponse> {
        let name = self.options.container_name();
        let options = StatsOptions {
            stream: false,
            // One sample now, instead of two a second apart.
            one_shot: true,
        };
        let sample = async {
            let mut stream = self.docker.stats(&name, Some(options));
            stream.next().await
        };
        match self.block_on(async { tokio::time::timeout(STATS_TIMEOUT, sample).await }) {
            Ok(Some(Ok(stats))) => Some(stats),
            other => {
                tracing::debug!(container = %name, ?other, "no stats from the engine");
                None
            }
        }
    }

    /// What a container on another machine uses, as its engine says
    /// (its cgroup is not this machine's to read): one API call.
    pub(super) fn engine_usage(&mut self) -> Result<Usage, DriverError> {
        let name = self.options.container_name();
        let stats = self.stats_once().ok_or_else(|| {
            DriverError::Failed(format!("no statistics of {name} from its engine"))
        })?;
        let memory = stats.memory_stats.as_ref();
        let memory_bytes = memory.and_then(|m| m.usage).unwrap_or(0);
        let limits = self.options.resources;
        Ok(Usage {
            cpu_nanos: stats
                .cpu_stats
                .and_then(|cpu| cpu.cpu_usage?.total_usage)
                .unwrap_or(0),
            memory_bytes,
            working_set_bytes: memory.and_then(working_set).unwrap_or(memory_bytes),
            cpu_limit: Some(limits.cpus),
            memory_limit_bytes: Some(limits.memory_mib.saturating_mul(1024 * 1024)),
        })
    }

    /// A port on the host's own network for a new server: the lowest of
    /// [`HOST_PORTS`] that none of Torpor's containers there holds.
    pub(super) fn free_host_port(&self) -> Result<u16, DriverError> {
        let options = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([(
                "label".to_string(),
                vec![SERVICE_LABEL.to_string()],
            )])),
            ..Default::default()
        };
        let containers = self
            .block_on(self.docker.list_containers(Some(options)))
            .map_err(|e| failed("listing the containers of", &self.options.host.name, e))?;
        let taken: Vec<u16> = containers
            .iter()
            .filter_map(|c| c.labels.as_ref()?.get(PORT_LABEL)?.parse().ok())
            .collect();
        HOST_PORTS
            .clone()
            .find(|port| !taken.contains(port))
            .ok_or_else(|| {
                DriverError::Failed(format!(
                    "host '{}': every port of {HOST_PORTS:?} is taken by Torpor's containers",
                    self.options.host.name
                ))
            })
    }

    /// Where the container's server is reached, from what the engine
    /// said of it: its published port, or on a host's own network the
    /// port it was given.
    pub(super) fn reachable_at(
        &self,
        published: Option<SocketAddr>,
        port_label: Option<u16>,
    ) -> Option<SocketAddr> {
        match self.options.host.network {
            HostNetwork::Publish => published,
            HostNetwork::Host => {
                port_label.map(|port| SocketAddr::new(self.options.host.address, port))
            }
        }
    }

    /// Where a relocation's target on `target_host` reaches this running
    /// server to replicate from it: on the same engine's bridge, the
    /// container's own address; from another host, the address this host
    /// publishes it on, which must not be loopback.
    pub(super) fn replication_source(&self, target_host: &str) -> Result<SocketAddr, DriverError> {
        let host = &self.options.host;
        if target_host == host.name && host.network == HostNetwork::Publish {
            return self.network_address();
        }
        let address = self
            .address
            .ok_or_else(|| DriverError::Gone("the backend is not running".into()))?;
        if address.ip().is_loopback() && target_host != host.name {
            return Err(DriverError::Failed(format!(
                "host '{}' publishes its containers on loopback only, where host '{target_host}' cannot reach them: \
                 give its [[hosts]] entry an address the other host reaches",
                host.name
            )));
        }
        Ok(address)
    }
}
