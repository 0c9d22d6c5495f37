//! A Torpor whose one service is an autoscaled MariaDB container
//! (`--spawn-torpor-autoscale`), for the `autoscale` workload: the
//! `docker` driver, the `torpor/mariadb:10.11` image
//! (`docker/mariadb/build.sh`), starting at the smallest size of
//! [`AutoscaleSettings`] with `[services.autoscale]` on, and a docker
//! warm pool of one container (`[[warm_pools]]`) for the `provision`
//! workload's services.
//!
//! Torpor's command line cannot describe a docker service, so the suite
//! writes a config file ([`config_text`]) and starts
//! `torpor --config FILE`. The service is named after this process, so
//! runs side by side (or a neighbour's tests) never share a container;
//! the container and its volume, and the warm pool's, are removed when
//! the target is dropped, after Torpor has stopped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::child::{ChildProcess, NotServing};
use crate::admin::{Admin, ServiceState};
use crate::cli::{AutoscaleSettings, Credentials};
use crate::interrupt::Stop;

/// CPUs added or taken in one step.
pub const CPU_STEP: f64 = 0.5;

/// Memory added or taken in one step, MiB.
pub const MEMORY_STEP_MIB: u64 = 256;

/// Seconds of low CPU use before a step down: short, so that a run of a
/// minute or two shows the way back down (Torpor's default is 30).
pub const SCALE_DOWN_AFTER_SECS: u64 = 5;

/// Milliseconds of CPU use near the limit before a step up (Torpor's
/// default).
pub const SCALE_UP_AFTER_MS: u64 = 1_000;

/// The first start initializes the volume (mariadb-install-db in the
/// container): it gets at least this long, whatever `--spawn-timeout`.
const FIRST_START: Duration = Duration::from_secs(180);

/// A Torpor with an autoscaled container, removed on drop.
#[derive(Debug)]
pub struct AutoscaleTorpor {
    /// The Torpor process. Declared before `_leftovers`: fields drop in
    /// order, so Torpor stops before its container is removed.
    pub child: ChildProcess,
    /// Where its admin API listens.
    pub admin: SocketAddr,
    /// Where its warm pool keeps a folder per container.
    warm_pool: PathBuf,
    /// Held for its `Drop`: the containers and volumes go last.
    leftovers: Leftovers,
}

impl Drop for AutoscaleTorpor {
    fn drop(&mut self) {
        // Read while Torpor runs: its folder goes with the child. The
        // pool's containers outlive Torpor (a restart finds them again).
        let names = std::fs::read_dir(&self.warm_pool)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| entry.file_name().into_string().ok())
            .map(|id| format!("{}warm-{id}", torpor::scaler::docker::DEFAULT_PREFIX));
        self.leftovers.containers.extend(names);
    }
}

/// The containers of the service and of the warm pool, removed on drop
/// with their volumes (`<container>-data`).
#[derive(Debug)]
struct Leftovers {
    containers: Vec<String>,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        // Best effort: a container that was never created is no error.
        let quiet = |args: &[&str]| {
            let _ = Command::new("docker")
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        };
        for container in &self.containers {
            quiet(&["rm", "--force", container]);
            quiet(&["volume", "rm", "--force", &format!("{container}-data")]);
        }
    }
}

/// The service's name: unique to this process.
pub fn service_name(pid: u32) -> String {
    format!("bench-autoscale-{pid}")
}

/// Quotes `text` as a TOML basic string (JSON's escapes are TOML's).
fn toml_string(text: &str) -> String {
    serde_json::Value::String(text.to_string()).to_string()
}

/// The config file: listeners, the bench account, one docker service of
/// `service` starting at the smallest size with autoscaling between the
/// bounds, and idle timers off (only the workload's load changes it); a
/// warm pool of one container of the same image.
pub fn config_text(
    listen: SocketAddr,
    admin: SocketAddr,
    state_dir: &Path,
    credentials: &Credentials,
    service: &str,
    bounds: &AutoscaleSettings,
) -> String {
    // The buffer pool keeps a quarter of memory, as the scaler resizes it.
    let buffer_pool_mib = (bounds.min_memory_mib / 4).max(32);
    format!(
        r#"listen = "{listen}"
state_dir = {state}

[admin]
listen = "{admin}"

[[users]]
name = {user}
password = {password}

[[services]]
name = {service}
driver = "docker"
image = {image}
cpus = {min_cpus}
memory_mib = {min_memory}
buffer_pool_mib = {buffer_pool_mib}
suspend_after_secs = 0
park_after_secs = 0

[services.autoscale]
min_cpus = {min_cpus}
max_cpus = {max_cpus}
min_memory_mib = {min_memory}
max_memory_mib = {max_memory}
cpu_step = {CPU_STEP}
memory_step_mib = {MEMORY_STEP_MIB}
scale_up_after_ms = {SCALE_UP_AFTER_MS}
scale_down_after_secs = {SCALE_DOWN_AFTER_SECS}
reload_after_grow = {reload}

[[warm_pools]]
driver = "docker"
instances = 1
image = {image}
"#,
        state = toml_string(&state_dir.display().to_string()),
        user = toml_string(&credentials.user),
        password = toml_string(&credentials.password),
        service = toml_string(service),
        image = toml_string(&image()),
        reload = bounds.reload_after_grow,
        min_cpus = bounds.min_cpus,
        max_cpus = bounds.max_cpus,
        min_memory = bounds.min_memory_mib,
        max_memory = bounds.max_memory_mib,
    )
}

/// The MariaDB image: `TORPOR_MARIADB_IMAGE`, as the tests read it, or
/// Torpor's default.
pub fn image() -> String {
    std::env::var("TORPOR_MARIADB_IMAGE")
        .unwrap_or_else(|_| torpor::scaler::docker::DEFAULT_IMAGE.to_string())
}

/// Checks the engine answers and has the image, saying how to get it.
fn require_image() -> anyhow::Result<()> {
    let image = image();
    let output = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", &image])
        .stdin(Stdio::null())
        .output()
        .context("running docker (is the CLI installed?)")?;
    if !output.status.success() {
        bail!(
            "docker has no image {image} ({}): build it with docker/mariadb/build.sh",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Starts `binary` with an autoscaled docker service and waits until it
/// answers a MySQL handshake and its service is active.
pub fn start(
    binary: &Path,
    credentials: &Credentials,
    bounds: &AutoscaleSettings,
    timeout: Duration,
    stop: &Stop,
) -> anyhow::Result<AutoscaleTorpor> {
    require_image()?;
    let free = || torpor::scaler::process::free_port().context("finding a free port for Torpor");
    let listen = SocketAddr::from(([127, 0, 0, 1], free()?));
    let admin = SocketAddr::from(([127, 0, 0, 1], free()?));
    let dir = tempfile::Builder::new()
        .prefix("torpor-bench-torpor-autoscale-")
        .tempdir()
        .context("creating Torpor's folder")?;
    let service = service_name(std::process::id());
    let prefix = torpor::scaler::docker::DEFAULT_PREFIX;
    let leftovers = Leftovers {
        containers: vec![format!("{prefix}{service}")],
    };
    let warm_pool = dir.path().join("state/warm/docker-local");
    let config = dir.path().join("torpor.toml");
    std::fs::write(
        &config,
        config_text(
            listen,
            admin,
            &dir.path().join("state"),
            credentials,
            &service,
            bounds,
        ),
    )
    .with_context(|| format!("writing {}", config.display()))?;
    let mut command = Command::new(binary);
    command.arg("--config").arg(&config);
    let started = Instant::now();
    let mut child = ChildProcess::spawn("torpor (autoscale)", command, dir, listen)?;
    match child.wait_serving(timeout, stop) {
        Ok(()) => {}
        Err(NotServing::Exited(text)) | Err(NotServing::Silent(text)) => {
            bail!("{text}\n(binary: {})", binary.display())
        }
        Err(NotServing::Interrupted) => bail!("interrupted while starting Torpor"),
    }
    let api = Admin::new(&admin.to_string(), None);
    let limit = timeout.max(FIRST_START);
    let every = Duration::from_millis(200);
    let mut state = None;
    child
        .wait_until(
            &mut || {
                state = api
                    .services()
                    .ok()
                    .and_then(|all| all.into_iter().find(|s| s.name == service))
                    .map(|s| s.state);
                state == Some(ServiceState::Active)
            },
            &format!("its service {service} was not active"),
            (started, limit),
            every,
            stop,
        )
        .with_context(|| {
            let state = state.as_ref().map_or("unknown", |s| s.name());
            format!("last state of {service}: {state}")
        })?;
    let mut target = AutoscaleTorpor {
        child,
        admin,
        warm_pool,
        leftovers,
    };
    // Its warm pool boots a container now: measured workloads start
    // after that boot, not beside it (and a dropped target removes it).
    target.child.wait_until(
        &mut || api.warm_instances("docker").ok().flatten().unwrap_or(0) > 0,
        "its warm pool held no ready container",
        (started, limit),
        every,
        stop,
    )?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_torpor_reads_has_one_autoscaled_docker_service() {
        let credentials = Credentials {
            user: "bench".into(),
            password: "pw\"x".into(),
            database: "test".into(),
        };
        let text = config_text(
            SocketAddr::from(([127, 0, 0, 1], 4000)),
            SocketAddr::from(([127, 0, 0, 1], 4001)),
            Path::new("/tmp/state"),
            &credentials,
            "bench-autoscale-7",
            &AutoscaleSettings::default(),
        );
        // Torpor's own parser and checks: the file is what it accepts.
        let config = torpor::config::Config::from_toml(&text, "bench.toml".into())
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        config.validate().unwrap_or_else(|e| panic!("{e}\n{text}"));
        let service = config.services.first().expect("one service");
        assert_eq!(service.name, "bench-autoscale-7");
        assert_eq!(service.driver, torpor::config::DriverKind::Docker);
        assert_eq!((service.cpus, service.memory_mib), (0.5, 512));
        assert_eq!(service.suspend_after_secs, 0);
        let autoscale = service.autoscale.as_ref().expect("autoscale on");
        assert!(autoscale.enabled);
        assert_eq!((autoscale.max_cpus, autoscale.max_memory_mib), (1.5, 1024));
        assert_eq!(autoscale.scale_down_after_secs, SCALE_DOWN_AFTER_SECS);
        assert_eq!(config.users.first().map(|u| u.name.as_str()), Some("bench"));
        assert_eq!(
            config.users.first().and_then(|u| u.password.as_deref()),
            Some("pw\"x")
        );
        assert_eq!(
            config.admin.listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 4001)))
        );
        assert!(autoscale.reload_after_grow);
        let pool = config.warm_pools.first().expect("a warm pool");
        assert_eq!(pool.driver, torpor::config::DriverKind::Docker);
        assert_eq!(pool.instances, 1);
        assert_eq!(pool.image.as_deref(), Some(image().as_str()));
        // --autoscale-no-reload reaches the service.
        let without = AutoscaleSettings {
            reload_after_grow: false,
            ..AutoscaleSettings::default()
        };
        let text = config_text(
            SocketAddr::from(([127, 0, 0, 1], 4000)),
            SocketAddr::from(([127, 0, 0, 1], 4001)),
            Path::new("/tmp/state"),
            &credentials,
            "bench-autoscale-7",
            &without,
        );
        let config = torpor::config::Config::from_toml(&text, "bench.toml".into())
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        let autoscale = config.services[0].autoscale.as_ref().expect("autoscale on");
        assert!(!autoscale.reload_after_grow);
    }

    #[test]
    fn service_names_are_per_process() {
        assert_eq!(service_name(42), "bench-autoscale-42");
    }
}
