//! The warm pool (`[[warm_pools]]`): servers started ahead of need, each
//! on data of its own, then frozen, so that a service created through the
//! admin API takes one over ([`WarmPools::checkout`]) and answers its
//! first query in milliseconds: the cold path initializes a datadir and
//! boots a server, seconds.
//!
//! - `process`: a `mariadbd` on the datadir `data/`, frozen by SIGSTOP.
//!   It dies with Torpor (every process backend does); the next start
//!   boots the datadir again, which skips the initialization.
//! - `docker`: a container `torpor-warm-<id>` with its volume, made under
//!   the name `warm` ([`crate::scaler::docker::WARM_OWNER`]) and paused;
//!   its socket folder is `run/`. It stays paused when Torpor stops; the
//!   next start finds it.
//!
//! Each instance has a folder `state_dir/warm/<driver>-<host>/<id>/`
//! holding its admin password `admin.secret` until a checkout, which
//! marks the folder `claimed` (the service's placement file names the
//! datadir or container from then on); a filler thread per pool then
//! starts a replacement.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::{info, warn};

use super::retire;
use crate::config::hosts::{with_local, HostConfig};
use crate::config::warm_pool::{pool_dir, WarmPoolConfig};
use crate::config::{Config, DriverKind};
use crate::scaler::docker::{DockerDriver, DockerOptions, DEFAULT_IMAGE};
use crate::scaler::driver::Driver;
use crate::scaler::process::{Account, MariadbOptions, MariadbProcess};
use crate::scaler::process_driver::{self, ADMIN_USER};

/// The file that marks an instance's folder as a service's.
pub(super) const CLAIMED: &str = "claimed";
/// The instance's admin password, in its folder until a checkout.
const ADMIN_SECRET: &str = "admin.secret";
/// How long an instance may take to boot.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long after a checkout the replacement starts booting.
const REFILL_DELAY: Duration = Duration::from_millis(500);
/// The pause after an instance failed to start, before the next try.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// A warm instance taken over by a new service.
#[derive(Debug)]
pub struct Warm {
    /// The admin account's password the server booted with (the
    /// service's scaler logs in with it from now on).
    pub admin_password: String,
    /// The frozen server.
    pub backend: WarmBackend,
}

/// What a service takes over.
#[derive(Debug)]
pub enum WarmBackend {
    /// A frozen `mariadbd`; its datadir stays where the pool made it.
    Process(MariadbProcess),
    /// The paused container (and volume) with this suffix
    /// (`-<id>`: `torpor-warm-<id>`), on the pool's host.
    Docker(String),
}

/// How many instances one pool holds ready now (the metric
/// `torpor_warm_pool_instances`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarmCount {
    /// The driver's name.
    pub driver: &'static str,
    /// The host.
    pub host: String,
    /// Instances ready.
    pub instances: usize,
}

/// Every configured pool and its filler thread.
#[derive(Debug, Default)]
pub struct WarmPools {
    pools: Vec<Arc<Pool>>,
    /// Instances of pools no longer configured, removed by [`Self::fill`].
    unwanted: Vec<retire::Unwanted>,
    fillers: Mutex<Vec<JoinHandle<()>>>,
}

#[derive(Debug)]
struct Pool {
    config: WarmPoolConfig,
    /// The `[[hosts]]` entry (or `local`) its servers run on.
    host: Option<HostConfig>,
    /// `state_dir/warm/<driver>-<host>`.
    dir: PathBuf,
    ready: Mutex<VecDeque<Instance>>,
    /// Signalled on a checkout and on shutdown.
    changed: Condvar,
    stopping: AtomicBool,
}

/// One ready instance.
#[derive(Debug)]
struct Instance {
    dir: PathBuf,
    admin_password: String,
    /// `None` once checked out (its drop then leaves it running).
    process: Option<MariadbProcess>,
    /// A container's suffix (its drop leaves it paused, for the next
    /// start).
    container: Option<String>,
}

impl Instance {
    fn pid(&self) -> Option<i32> {
        self.process
            .as_ref()
            .and_then(MariadbProcess::pid)
            .and_then(|p| i32::try_from(p).ok())
    }

    /// Whether its server is still there (a process checked; a container
    /// is found by the service's own driver, which makes it anew if it
    /// went away).
    fn alive(&self) -> bool {
        self.container.is_some() || self.pid().is_some_and(process_driver::alive)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // A frozen server would hold the SIGTERM its drop sends.
        if let Some(pid) = self.pid() {
            // SAFETY: kill sends a signal to our own child; no memory is
            // involved.
            unsafe { libc::kill(pid, libc::SIGCONT) };
        }
    }
}

impl WarmPools {
    /// The pools `config` declares; nothing starts until [`Self::fill`].
    pub fn new(config: &Config) -> WarmPools {
        let hosts = with_local(&config.hosts);
        let dirs: Vec<_> = config
            .warm_pools
            .iter()
            .map(|pool| {
                let dir = pool_dir(&config.state_dir, pool.driver.name(), &pool.host);
                (dir, pool)
            })
            .collect();
        let wanted: Vec<&Path> = dirs.iter().map(|(dir, _)| dir.as_path()).collect();
        let unwanted = retire::of_removed_pools(&config.state_dir, &wanted, &hosts);
        let pools = dirs
            .into_iter()
            .map(|(dir, pool)| {
                Arc::new(Pool {
                    dir,
                    host: hosts.iter().find(|host| host.name == pool.host).cloned(),
                    config: pool.clone(),
                    ready: Mutex::new(VecDeque::new()),
                    changed: Condvar::new(),
                    stopping: AtomicBool::new(false),
                })
            })
            .collect();
        WarmPools {
            pools,
            unwanted,
            fillers: Mutex::new(Vec::new()),
        }
    }

    /// Starts each pool's filler thread: it brings the pool up to its
    /// size, and back up after every checkout, one instance at a time.
    /// The instances of pools no longer configured are removed, on a
    /// thread of their own.
    pub fn fill(&self) {
        let mut fillers = self.fillers.lock().unwrap_or_else(|p| p.into_inner());
        if !self.unwanted.is_empty() {
            let unwanted = self.unwanted.clone();
            match std::thread::Builder::new()
                .name("torpor-warm-retire".to_string())
                .spawn(move || unwanted.iter().for_each(retire::remove))
            {
                Ok(handle) => fillers.push(handle),
                Err(e) => warn!("the unwanted warm instances stay: {e}"),
            }
        }
        for pool in &self.pools {
            let filling = Arc::clone(pool);
            let name = format!("torpor-warm-{}", pool.config.driver.name());
            match std::thread::Builder::new()
                .name(name)
                .spawn(move || filling.fill())
            {
                Ok(handle) => fillers.push(handle),
                Err(e) => warn!(pool = %pool.dir.display(), "the warm pool cannot start: {e}"),
            }
        }
    }

    /// Takes a ready instance of `driver` on `host` (a container of
    /// `image`) for `service`, if the pool has one (and it is alive); its
    /// folder is marked as the service's and a replacement starts.
    pub fn checkout(
        &self,
        driver: DriverKind,
        host: &str,
        image: &str,
        service: &str,
    ) -> Option<Warm> {
        let pool = self.pools.iter().find(|p| {
            p.config.driver == driver
                && p.config.host == host
                && (driver != DriverKind::Docker
                    || p.config.image.as_deref().unwrap_or(DEFAULT_IMAGE) == image)
        })?;
        loop {
            let instance = pool.lock().pop_front()?;
            pool.changed.notify_all();
            if !instance.alive() {
                warn!(dir = %instance.dir.display(), "a warm instance had died: not handed out");
                let dir = instance.dir.clone();
                drop(instance);
                remove_quietly(&dir);
                continue;
            }
            if let Err(e) = std::fs::write(instance.dir.join(CLAIMED), service) {
                warn!(dir = %instance.dir.display(), "a warm instance cannot be claimed: {e}");
                continue;
            }
            // The service keeps its own copy from now on.
            let _ = std::fs::remove_file(instance.dir.join(ADMIN_SECRET));
            info!(service, dir = %instance.dir.display(), "warm instance checked out");
            let mut instance = instance;
            let backend = match (instance.process.take(), instance.container.take()) {
                (Some(process), _) => WarmBackend::Process(process),
                (None, Some(suffix)) => WarmBackend::Docker(suffix),
                (None, None) => continue,
            };
            return Some(Warm {
                admin_password: std::mem::take(&mut instance.admin_password),
                backend,
            });
        }
    }

    /// How many instances each pool holds ready.
    pub fn counts(&self) -> Vec<WarmCount> {
        self.pools
            .iter()
            .map(|pool| WarmCount {
                driver: pool.config.driver.name(),
                host: pool.config.host.clone(),
                instances: pool.lock().len(),
            })
            .collect()
    }

    /// Stops the fillers and every ready instance (Torpor stopping);
    /// their datadirs stay for the next start.
    pub fn shutdown(&self) {
        for pool in &self.pools {
            pool.stopping.store(true, Ordering::SeqCst);
            pool.changed.notify_all();
        }
        let fillers = std::mem::take(&mut *self.fillers.lock().unwrap_or_else(|p| p.into_inner()));
        for filler in fillers {
            let _ = filler.join();
        }
        for pool in &self.pools {
            pool.lock().clear();
        }
    }
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Instance>> {
        self.ready.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The filler thread's loop.
    fn fill(&self) {
        let mut leftovers = self.leftovers();
        let mut fresh = 0u32;
        loop {
            {
                let mut ready = self.lock();
                let mut waited = false;
                while !self.stopping.load(Ordering::SeqCst) && ready.len() >= self.config.instances
                {
                    ready = self.changed.wait(ready).unwrap_or_else(|p| p.into_inner());
                    waited = true;
                }
                if waited {
                    // A checkout: the new service's first queries go
                    // before the replacement's boot takes the CPUs.
                    drop(
                        self.changed
                            .wait_timeout_while(ready, REFILL_DELAY, |_| {
                                !self.stopping.load(Ordering::SeqCst)
                            })
                            .unwrap_or_else(|p| p.into_inner()),
                    );
                }
            }
            if self.stopping.load(Ordering::SeqCst) {
                return;
            }
            let dir = leftovers.pop().unwrap_or_else(|| {
                fresh += 1;
                self.dir
                    .join(format!("{}-{fresh}", crate::scaler::autoscaler::unix_ms()))
            });
            let started = std::time::Instant::now();
            match self.make_instance(&dir) {
                Ok(instance) => {
                    info!(dir = %dir.display(), ms = started.elapsed().as_millis() as u64, "warm instance ready");
                    self.lock().push_back(instance);
                }
                Err(e) => {
                    warn!(dir = %dir.display(), "a warm instance did not start: {e}");
                    remove_quietly(&dir);
                    let ready = self.lock();
                    let _ = self.changed.wait_timeout(ready, RETRY_AFTER);
                }
            }
        }
    }

    /// The folders a previous run left: unclaimed ones are booted again
    /// (a process's datadir, no initialization) or found (a container);
    /// half-made ones, and claimed ones whose service dropped its data
    /// (no datadir, no socket folder), are removed.
    fn leftovers(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut reusable = Vec::new();
        for dir in entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()) {
            let has_data = match self.config.driver {
                DriverKind::Process => dir.join("data").join("mysql").is_dir(),
                _ => true,
            };
            if dir.join(CLAIMED).exists() {
                if !dir.join("data").exists() && !dir.join("run").exists() {
                    remove_quietly(&dir);
                }
            } else if has_data && dir.join(ADMIN_SECRET).is_file() {
                reusable.push(dir);
            } else {
                remove_quietly(&dir);
            }
        }
        // A pool made smaller keeps only what it holds now.
        reusable.sort();
        for dir in reusable.split_off(self.config.instances.min(reusable.len())) {
            retire::remove(&retire::Unwanted {
                dir,
                driver: self.config.driver,
                host: self.host.clone(),
            });
        }
        reusable
    }
}

impl Pool {
    /// Boots (initializing when new) the instance in `dir` at the pool's
    /// size, then freezes it.
    fn make_instance(&self, dir: &Path) -> Result<Instance, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let secret_file = dir.join(ADMIN_SECRET);
        let admin_password = match std::fs::read_to_string(&secret_file) {
            Ok(kept) if !kept.trim().is_empty() => kept.trim().to_string(),
            _ => {
                let secret = crate::scaler::services::random_secret();
                process_driver::write_private(&secret_file, &secret)
                    .map_err(|e| format!("{}: {e}", secret_file.display()))?;
                secret
            }
        };
        let mut instance = Instance {
            dir: dir.to_path_buf(),
            admin_password,
            process: None,
            container: None,
        };
        match self.config.driver {
            DriverKind::Docker => {
                let host = self
                    .host
                    .clone()
                    .ok_or_else(|| format!("no host named '{}'", self.config.host))?;
                let options = DockerOptions::for_warm_pool(
                    dir,
                    &instance.admin_password,
                    host,
                    self.config.image.as_deref(),
                    self.config.buffer_pool_mib,
                )
                .map_err(|e| e.to_string())?;
                let suffix = options.placement.clone();
                let mut driver = DockerDriver::new(options).map_err(|e| e.to_string())?;
                if let Err(e) = driver.start().and_then(|_| driver.freeze()) {
                    // Nothing half made is left behind for the next try.
                    let _ = driver.destroy();
                    return Err(e.to_string());
                }
                instance.container = Some(suffix);
            }
            _ => {
                let datadir = dir.join("data");
                let process = MariadbProcess::start(MariadbOptions {
                    extra_args: process_driver::server_args(&datadir),
                    datadir: Some(datadir),
                    port: None,
                    accounts: vec![Account::superuser(ADMIN_USER, &instance.admin_password)],
                    buffer_pool: format!("{}M", self.config.buffer_pool_mib),
                    ready_timeout: READY_TIMEOUT,
                    cgroup_procs: Vec::new(),
                })
                .map_err(|e| e.to_string())?;
                instance.process = Some(process);
                let pid = instance.pid().ok_or("the server has no pid")?;
                process_driver::freeze_pid(pid).map_err(|e| e.to_string())?;
            }
        }
        Ok(instance)
    }
}

/// Removes an instance's folder; a folder already gone is no error.
pub(super) fn remove_quietly(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            warn!(dir = %dir.display(), "removing a warm instance's folder: {e}");
        }
    }
}
