//! The `process` driver: a service's MariaDB as a `mariadbd` process of
//! Torpor's own ([`super::process::MariadbProcess`]) with a datadir that
//! outlives it. Suspending freezes the process (SIGSTOP), waking thaws it
//! (SIGCONT); parking shuts it down cleanly and a wake starts it again on
//! the same datadir and, when it is still free, the same port. This is
//! the default where no container engine answers: Torpor on a laptop with
//! MariaDB installed is already a scale-to-zero database.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::cgroup::OwnCgroup;
use super::driver::{AdminAccess, Driver, DriverError, Resources};
use super::process::{handshake_arrives, Account, MariadbOptions, MariadbProcess};
use super::usage::{Usage, UsageSource};
use crate::config::hosts::{HostConfig, LOCAL_HOST};
use crate::config::storage::StorageConfig;
use crate::endpoint::Endpoint;
use crate::storage::{StorageView, Watch};

/// The account the scaler uses for administrative SQL on a process
/// backend (created at every boot with the service's accounts).
pub const ADMIN_USER: &str = "torpor_admin";

/// How to run a service's `mariadbd`.
#[derive(Debug, Clone)]
pub struct ProcessOptions {
    /// The datadir, initialized on first start and kept.
    pub datadir: PathBuf,
    /// Accounts clients log in as (created or updated at every boot).
    pub accounts: Vec<Account>,
    /// The scaler's own account's password.
    pub admin_password: String,
    /// InnoDB buffer pool size at start, e.g. `128M`.
    pub buffer_pool: String,
    /// How long a start or thaw may take to greet.
    pub ready_timeout: Duration,
    /// CPU and memory limits from the start (a cgroup of Torpor's own;
    /// `None`: none until a resize asks for them).
    pub limits: Option<Resources>,
    /// The name of that cgroup, unique on the host.
    pub cgroup_name: String,
    /// The service's name: a datadir moved to another host's base
    /// directory is named after it.
    pub service: String,
    /// The hosts with a base directory (`[[hosts]] base_dir`) the service
    /// may move to; its datadir's host is the one whose directory holds
    /// it, else `local`.
    pub hosts: Vec<HostConfig>,
    /// `[services.storage]`: the datadir on a volume of its own, grown
    /// as it fills; `None`: on whatever filesystem holds it.
    pub storage: Option<StorageConfig>,
}

/// A service backend run as a local process.
#[derive(Debug)]
pub struct ProcessDriver {
    options: ProcessOptions,
    /// The datadir the configuration names: relocated datadirs are named
    /// after it, and a file next to it ([`placement_file`]) says which
    /// one is the service's now.
    home: PathBuf,
    running: Option<MariadbProcess>,
    /// The cgroup that carries mariadbd's limits, once one was asked for.
    cgroup: Option<OwnCgroup>,
    /// Why no cgroup could be made (said once in the log; resizes then
    /// change the buffer pool only).
    no_cgroup: Option<String>,
    /// The port of the last start, tried again on the next.
    port: Option<u16>,
    /// The host the datadir is on (see [`ProcessOptions::hosts`]).
    host: String,
    /// The datadir's volume (or watched filesystem), once attached at
    /// the first start. Declared after `running`: fields drop in order,
    /// so mariadbd has stopped before its volume is unmounted.
    storage: Option<Watch>,
}

impl ProcessDriver {
    /// A driver for a backend that has not started yet. A service that
    /// was relocated runs from the datadir its placement file names.
    pub fn new(mut options: ProcessOptions) -> ProcessDriver {
        let home = options.datadir.clone();
        if let Some(moved) = placed_datadir(&home) {
            options.datadir = moved;
        }
        let host = host_of(&options.datadir, &options.hosts);
        ProcessDriver {
            home,
            options,
            running: None,
            cgroup: None,
            no_cgroup: None,
            port: None,
            host,
            storage: None,
        }
    }

    /// Takes over `process`, a running (or frozen) server a warm pool
    /// started on a datadir of its own, as this service's backend: its
    /// datadir becomes the service's (recorded in the placement file, as
    /// a relocation's is, so that Torpor started again finds it) and the
    /// next [`Driver::start`] thaws it instead of booting a server. Its
    /// admin account's password must be [`ProcessOptions::admin_password`].
    pub fn adopt(&mut self, process: MariadbProcess) -> Result<(), DriverError> {
        self.options.datadir = process.datadir().to_path_buf();
        self.host = host_of(&self.options.datadir, &self.options.hosts);
        self.port = Some(process.addr().port());
        self.running = Some(process);
        self.take_over()?;
        // Without `[services.storage]` this only watches the filesystem.
        self.attach_storage()?;
        if let Some(limits) = self.options.limits {
            self.apply_limits(limits)?;
        }
        Ok(())
    }

    /// Puts the datadir on its volume before anything writes there (the
    /// first start; a restart of Torpor finds the image and mounts it
    /// again). Without `[services.storage]` the datadir's filesystem is
    /// only watched.
    fn attach_storage(&mut self) -> Result<(), DriverError> {
        if self.storage.is_none() {
            let watch = Watch::attach(
                self.options.storage.clone(),
                &self.options.service,
                &self.options.datadir,
            )
            .map_err(DriverError::Failed)?;
            self.storage = Some(watch);
        }
        Ok(())
    }

    fn pid(&self) -> Result<i32, DriverError> {
        let pid = self
            .running
            .as_ref()
            .and_then(MariadbProcess::pid)
            .and_then(|pid| i32::try_from(pid).ok())
            .ok_or_else(|| DriverError::Gone("mariadbd is not running".into()))?;
        if !alive(pid) {
            return Err(DriverError::Gone(format!("mariadbd (pid {pid}) exited")));
        }
        Ok(pid)
    }

    fn signal(&self, signal: i32) -> Result<(), DriverError> {
        let pid = self.pid()?;
        // SAFETY: kill sends a signal to our own child's pid; no memory is
        // involved.
        if unsafe { libc::kill(pid, signal) } != 0 {
            return Err(DriverError::Failed(format!(
                "signalling mariadbd: {}",
                std::io::Error::last_os_error()
            )));
        }
        Ok(())
    }

    fn process(&self) -> Result<&MariadbProcess, DriverError> {
        self.running
            .as_ref()
            .ok_or_else(|| DriverError::Gone("mariadbd is not running".into()))
    }

    /// Puts the running mariadbd under `limits`, in a cgroup made the
    /// first time. Where none can be made, says why once and succeeds:
    /// the buffer pool (the actor's SQL) still bounds its memory.
    fn apply_limits(&mut self, limits: Resources) -> Result<(), DriverError> {
        let pid = self.pid()?.unsigned_abs();
        self.make_cgroup();
        let Some(cgroup) = &self.cgroup else {
            return Ok(());
        };
        cgroup
            .adopt(pid)
            .and_then(|()| cgroup.limit(limits))
            .map_err(|e| DriverError::Failed(format!("limiting mariadbd: {e}")))?;
        self.options.limits = Some(limits);
        Ok(())
    }

    /// Makes the cgroup once; where it cannot, says why once.
    fn make_cgroup(&mut self) {
        if self.cgroup.is_some() || self.no_cgroup.is_some() {
            return;
        }
        match OwnCgroup::create(&self.options.cgroup_name) {
            Ok(cgroup) => self.cgroup = Some(cgroup),
            Err(why) => {
                tracing::info!(
                    "mariadbd runs without CPU and memory limits (no cgroup of its own: {why}); resizes change its buffer pool only"
                );
                self.no_cgroup = Some(why);
            }
        }
    }

    /// Where sessions reach the running server: its Unix socket, the
    /// cheaper hop on one host (TCP stays open for the scaler's own
    /// administrative connections and for operators).
    fn endpoint(&self) -> Result<Endpoint, DriverError> {
        Ok(Endpoint::Unix(self.process()?.socket().to_path_buf()))
    }
}

/// The file next to a service's configured datadir that names the
/// datadir it runs from after a relocation.
fn placement_file(home: &Path) -> PathBuf {
    let mut name = home.as_os_str().to_owned();
    name.push(".placement");
    PathBuf::from(name)
}

/// The datadir a relocation left the service in, if any (and it exists,
/// or its volume's image does: the volume is mounted at the start).
fn placed_datadir(home: &Path) -> Option<PathBuf> {
    let named = std::fs::read_to_string(placement_file(home)).ok()?;
    let datadir = PathBuf::from(named.trim());
    let there =
        datadir.join("mysql").is_dir() || crate::storage::volume::image_for(&datadir).exists();
    there.then_some(datadir)
}

/// The host whose base directory holds `datadir`; `local` for none.
fn host_of(datadir: &Path, hosts: &[HostConfig]) -> String {
    hosts
        .iter()
        .find(|host| {
            host.base_dir
                .as_deref()
                .is_some_and(|dir| datadir.starts_with(dir))
        })
        .map_or_else(|| LOCAL_HOST.to_string(), |host| host.name.clone())
}

/// A replication server id for the server on `datadir`: servers that
/// replicate from each other must differ, and two datadirs give two ids.
fn server_id(datadir: &Path) -> u32 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    datadir.hash(&mut hasher);
    // 1..=2^31-1: 0 means "no id" to MariaDB.
    (hasher.finish() as u32 & 0x7fff_ffff).max(1)
}

/// What every service's `mariadbd` runs with besides
/// [`MariadbProcess`]'s own arguments (a warm pool's instances too, so
/// that one checked out runs as a started one would).
pub(crate) fn server_args(datadir: &Path) -> Vec<String> {
    vec![
        "--innodb-buffer-pool-dump-at-shutdown=ON".into(),
        // A binary log with GTIDs, so that a relocation's target can
        // catch up by replication; rows, so that replays are exact;
        // kept a day.
        "--log-bin=mariadb-bin".into(),
        "--relay-log=relay-bin".into(),
        "--binlog-format=ROW".into(),
        "--expire-logs-days=1".into(),
        // What it applied as a relocation's target goes to its own
        // binary log too: moved again, its copy's GTID position is one
        // its binary log holds, and the next target's replication
        // starts there.
        "--log-slave-updates=ON".into(),
        format!("--server-id={}", server_id(datadir)),
        // 10.11.12–10.11.16 refuse (with a warning only) to grow the
        // pool past this, which defaults to its size at start there: a
        // resize could never grow it.
        format!("--innodb-buffer-pool-size-max={}", host_memory_mib() << 20),
    ]
}

/// This machine's memory, MiB (what a buffer pool may at most grow to).
pub(crate) fn host_memory_mib() -> u64 {
    // SAFETY: sysconf reads two constants of the running system.
    let (pages, page_size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let bytes = u64::try_from(pages).unwrap_or(0) * u64::try_from(page_size).unwrap_or(0);
    // Unknown: 64 GiB, far above what these services get.
    if bytes == 0 {
        64 << 10
    } else {
        bytes >> 20
    }
}

/// Runs `command` (an extractor: `mbstream -x`, `tar -x`) into a new
/// `datadir` with `stream` as its input, counting the bytes in `copied`.
fn feed(
    command: std::process::Command,
    datadir: &Path,
    stream: &mut dyn std::io::Read,
    copied: &std::sync::atomic::AtomicU64,
) -> Result<(), DriverError> {
    std::fs::create_dir_all(datadir)
        .map_err(|e| DriverError::Failed(format!("creating the datadir: {e}")))?;
    super::feed::feed(command, stream, copied).map(drop)
}

/// Writes `contents` to a new file at `path` that only its owner reads.
pub(crate) fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())
}

/// The state letter of process `pid` in /proc (R, S, T, Z, …).
fn state_of(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The state letter follows the command name in parentheses.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Stops process `pid` (SIGSTOP) and returns once it has: the signal is
/// delivered asynchronously, and "suspended" is said only then.
pub(crate) fn freeze_pid(pid: i32) -> Result<(), DriverError> {
    // SAFETY: kill sends a signal to a pid of our own child; no memory is
    // involved.
    if unsafe { libc::kill(pid, libc::SIGSTOP) } != 0 {
        return Err(DriverError::Failed(format!(
            "signalling mariadbd: {}",
            std::io::Error::last_os_error()
        )));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while state_of(pid) != Some('T') {
        if Instant::now() > deadline {
            return Err(DriverError::Failed(
                "mariadbd did not stop on SIGSTOP".into(),
            ));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(())
}

/// Whether process `pid` runs (exists and is not a zombie).
pub(crate) fn alive(pid: i32) -> bool {
    state_of(pid).is_some_and(|state| state != 'Z' && state != 'X')
}

impl Driver for ProcessDriver {
    fn kind(&self) -> &'static str {
        "process"
    }

    fn start(&mut self) -> Result<Endpoint, DriverError> {
        if let Ok(pid) = self.pid() {
            // SAFETY: as in `signal`; a running process ignores SIGCONT.
            unsafe { libc::kill(pid, libc::SIGCONT) };
            return self.thaw();
        }
        self.running = None;
        self.attach_storage()?;
        std::fs::create_dir_all(&self.options.datadir).map_err(|e| {
            DriverError::Failed(format!(
                "creating the datadir {}: {e}",
                self.options.datadir.display()
            ))
        })?;
        let mut accounts = self.options.accounts.clone();
        accounts.push(Account::superuser(ADMIN_USER, &self.options.admin_password));
        // A service with limits starts inside its cgroup.
        if self.options.limits.is_some() {
            self.make_cgroup();
        }
        let cgroup_procs = self
            .cgroup
            .as_ref()
            .map(OwnCgroup::procs_files)
            .unwrap_or_default();
        let start = |port| {
            MariadbProcess::start(MariadbOptions {
                datadir: Some(self.options.datadir.clone()),
                port,
                accounts: accounts.clone(),
                buffer_pool: self.options.buffer_pool.clone(),
                extra_args: server_args(&self.options.datadir),
                ready_timeout: self.options.ready_timeout,
                cgroup_procs: cgroup_procs.clone(),
            })
        };
        // The same port as before when it is still free (clients never see
        // it, but logs and operators do); any free one otherwise.
        let process = match self.port {
            Some(port) => start(Some(port)).or_else(|_| start(None)),
            None => start(None),
        }
        .map_err(|e| DriverError::NotReady(e.to_string()))?;
        self.port = Some(process.addr().port());
        self.running = Some(process);
        if let Some(limits) = self.options.limits {
            self.apply_limits(limits)?;
        }
        self.endpoint()
    }

    fn freeze(&mut self) -> Result<(), DriverError> {
        freeze_pid(self.pid()?)
    }

    fn thaw(&mut self) -> Result<Endpoint, DriverError> {
        self.signal(libc::SIGCONT)?;
        let addr = self.process()?.addr();
        let deadline = Instant::now() + self.options.ready_timeout;
        while !handshake_arrives(addr) {
            self.pid()?;
            if Instant::now() > deadline {
                return Err(DriverError::NotReady(format!(
                    "no handshake from {addr} within {:?}",
                    self.options.ready_timeout
                )));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        self.endpoint()
    }

    fn check_storage(&mut self) -> Option<StorageView> {
        Some(self.storage.as_mut()?.check())
    }

    fn stop(&mut self) -> Result<(), DriverError> {
        // A frozen process would hold SIGTERM until it runs again.
        let _ = self.signal(libc::SIGCONT);
        match self.running.take() {
            Some(mut process) => {
                process.stop();
                Ok(())
            }
            None => Err(DriverError::Gone("mariadbd is not running".into())),
        }
    }

    fn resize(&mut self, resources: Resources) -> Result<(), DriverError> {
        self.apply_limits(resources)
    }

    fn usage(&mut self) -> Result<Usage, DriverError> {
        let pid = self.pid()?;
        // Without a cgroup of its own mariadbd shares Torpor's: its /proc
        // entries count it alone.
        let source = match &self.cgroup {
            Some(cgroup) => cgroup.usage_source(),
            None => UsageSource::Process(pid.unsigned_abs()),
        };
        source
            .read()
            .map_err(|e| DriverError::Failed(format!("reading mariadbd's usage: {e}")))
    }

    fn admin_access(&self) -> Option<AdminAccess> {
        Some(AdminAccess {
            address: self.running.as_ref()?.addr(),
            user: ADMIN_USER.to_string(),
            password: self.options.admin_password.clone(),
        })
    }

    fn describe(&self) -> String {
        match &self.running {
            Some(process) => format!(
                "mariadbd pid {} on {} (datadir {})",
                process.pid().unwrap_or_default(),
                process.addr(),
                self.options.datadir.display()
            ),
            None => format!("stopped (datadir {})", self.options.datadir.display()),
        }
    }

    fn relocation_target(
        &self,
        to: Option<&crate::config::hosts::HostConfig>,
    ) -> Result<Box<dyn Driver>, DriverError> {
        let moved_at = super::autoscaler::unix_ms();
        // To the named host, else to the one it is on.
        let to_name = to.map_or(self.host.as_str(), |host| host.name.as_str());
        let datadir = if to_name == LOCAL_HOST {
            let mut datadir = self.home.as_os_str().to_owned();
            datadir.push(format!(".{moved_at}"));
            PathBuf::from(datadir)
        } else {
            let base = to
                .filter(|host| host.takes("process"))
                .or_else(|| self.options.hosts.iter().find(|host| host.name == to_name))
                .and_then(|host| host.base_dir.as_deref())
                .ok_or_else(|| {
                    DriverError::Failed(format!(
                        "host '{to_name}' has no base_dir: a process service moves between base directories on this machine"
                    ))
                })?;
            base.join(format!("{}.{moved_at}", self.options.service))
        };
        let mut options = self.options.clone();
        // The target gets a volume of its own (made before the copy lands
        // on it), at least as big as this one: the copy must fit.
        if let Some(storage) = &mut options.storage {
            let now_mib =
                std::fs::metadata(crate::storage::volume::image_for(&self.options.datadir))
                    .map_or(0, |image| image.len().div_ceil(1 << 20));
            storage.initial_mib = storage.initial_mib.max(now_mib);
        }
        options.datadir = datadir;
        options.cgroup_name = format!("{}-{moved_at}", self.options.cgroup_name);
        options.limits = self.options.limits;
        Ok(Box::new(ProcessDriver {
            home: self.home.clone(),
            options,
            running: None,
            cgroup: None,
            no_cgroup: None,
            port: None,
            host: to_name.to_string(),
            storage: None,
        }))
    }

    fn host(&self) -> &str {
        &self.host
    }

    fn backup_command(&self) -> Result<std::process::Command, DriverError> {
        let program =
            super::process::find_program(&["mariadb-backup", "mariabackup"]).ok_or_else(|| {
                DriverError::Failed(
                    "mariadb-backup is not installed (Debian: apt-get install mariadb-backup)"
                        .into(),
                )
            })?;
        let process = self.process()?;
        let rundir = process
            .socket()
            .parent()
            .ok_or_else(|| DriverError::Failed("mariadbd has no run directory".into()))?;
        // The password goes in a file only root reads, not on a command
        // line every user can see.
        let defaults = rundir.join("backup.cnf");
        let contents = format!(
            "[client]\nuser={ADMIN_USER}\npassword={}\nhost=127.0.0.1\nport={}\n",
            self.options.admin_password,
            process.addr().port()
        );
        write_private(&defaults, &contents)
            .map_err(|e| DriverError::Failed(format!("writing {}: {e}", defaults.display())))?;
        let scratch = rundir.join("backup");
        let _ = std::fs::remove_dir_all(&scratch);
        let mut command = std::process::Command::new(program);
        command
            // It must come first: mariadb-backup reads options in order.
            .arg(format!("--defaults-extra-file={}", defaults.display()))
            .arg("--backup")
            .arg("--stream=xbstream")
            // Several files at once: one reader leaves the disk idle
            // between small reads.
            .arg("--parallel=4")
            .arg(format!("--datadir={}", process.datadir().display()))
            .arg(format!("--target-dir={}", scratch.display()))
            .arg(format!("--tmpdir={}", rundir.display()));
        Ok(command)
    }

    fn hot_pages_command(&self) -> Result<std::process::Command, DriverError> {
        let mut command = std::process::Command::new("cat");
        command.arg(
            self.process()?
                .datadir()
                .join(super::feed::BUFFER_POOL_DUMP),
        );
        Ok(command)
    }

    fn place_hot_pages(&mut self, pages: &[u8]) -> Result<(), DriverError> {
        let path = self
            .process()?
            .datadir()
            .join(super::feed::BUFFER_POOL_DUMP);
        std::fs::write(&path, pages)
            .map_err(|e| DriverError::Failed(format!("writing {}: {e}", path.display())))
    }

    fn restore(
        &mut self,
        backup: &mut dyn std::io::Read,
        copied: &std::sync::atomic::AtomicU64,
    ) -> Result<String, DriverError> {
        let failed =
            |what: &str, e: &dyn std::fmt::Display| DriverError::Failed(format!("{what}: {e}"));
        let mbstream = super::process::find_program(&["mbstream"]).ok_or_else(|| {
            DriverError::Failed("mbstream is not installed (mariadb-backup)".into())
        })?;
        let program = super::process::find_program(&["mariadb-backup", "mariabackup"])
            .ok_or_else(|| DriverError::Failed("mariadb-backup is not installed".into()))?;
        self.attach_storage()?;
        let datadir = self.options.datadir.clone();
        let mut extract = std::process::Command::new(mbstream);
        extract.arg("-x").arg("-C").arg(&datadir);
        feed(extract, &datadir, backup, copied)?;
        let prepared = std::process::Command::new(program)
            .arg("--prepare")
            .arg(format!("--target-dir={}", datadir.display()))
            .output()
            .map_err(|e| failed("running mariadb-backup --prepare", &e))?;
        if !prepared.status.success() {
            return Err(DriverError::Failed(format!(
                "mariadb-backup --prepare failed: {}",
                super::feed::last_lines(&prepared.stderr)
            )));
        }
        let info = ["mariadb_backup_binlog_info", "xtrabackup_binlog_info"]
            .iter()
            .find_map(|name| std::fs::read_to_string(datadir.join(name)).ok())
            .unwrap_or_default();
        Ok(super::feed::backup_gtid(&info))
    }

    fn export_at_rest(&mut self) -> Result<std::process::Command, DriverError> {
        if self.running.is_some() {
            return Err(DriverError::Failed(
                "mariadbd runs: its data is not at rest".into(),
            ));
        }
        // A service parked since Torpor started has its volume unmounted:
        // the copy must read the volume, not the empty folder under it.
        self.attach_storage()?;
        let mut command = std::process::Command::new("tar");
        command
            .arg("-C")
            .arg(&self.options.datadir)
            .arg("-cf")
            .arg("-")
            .arg(".");
        Ok(command)
    }

    fn import_at_rest(
        &mut self,
        data: &mut dyn std::io::Read,
        copied: &std::sync::atomic::AtomicU64,
    ) -> Result<(), DriverError> {
        self.attach_storage()?;
        let datadir = self.options.datadir.clone();
        let mut untar = std::process::Command::new("tar");
        untar.arg("-C").arg(&datadir).arg("-xf").arg("-");
        feed(untar, &datadir, data, copied)
    }

    fn take_over(&mut self) -> Result<(), DriverError> {
        let file = placement_file(&self.home);
        if self.options.datadir == self.home {
            return match std::fs::remove_file(&file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(DriverError::Failed(
                    format!("removing {}: {e}", file.display()),
                )),
                _ => Ok(()),
            };
        }
        // Written whole, then renamed: a crash leaves the old file or the
        // new one, never half of one.
        let partial = file.with_extension("placement.partial");
        std::fs::write(&partial, self.options.datadir.display().to_string())
            .and_then(|()| std::fs::rename(&partial, &file))
            .map_err(|e| DriverError::Failed(format!("writing {}: {e}", file.display())))
    }

    fn destroy(&mut self) -> Result<(), DriverError> {
        if self.running.is_some() {
            self.stop()?;
        }
        // Its placement goes with it, when it names this datadir.
        if placed_datadir(&self.home).as_deref() == Some(self.options.datadir.as_path()) {
            let _ = std::fs::remove_file(placement_file(&self.home));
        }
        // Empty now: its directories go.
        self.cgroup = None;
        // The volume goes with its data (made first if it never was, so
        // that an image left by an earlier Torpor goes too).
        self.attach_storage()?;
        if let Some(storage) = self.storage.take() {
            storage
                .remove()
                .map_err(|e| DriverError::Failed(format!("removing the datadir's volume: {e}")))?;
        }
        std::fs::remove_dir_all(&self.options.datadir)
            .or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(|e| DriverError::Failed(format!("removing the datadir: {e}")))
    }
}
