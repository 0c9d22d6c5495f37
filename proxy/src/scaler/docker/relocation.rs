//! Relocation of a docker service to a new container and volume, on the
//! same engine or another host's.
//!
//! The pair a service runs is named with a suffix (`-m<unix ms>`; none
//! for its first pair), recorded with its host's name in its state folder
//! at the switch-over ([`PLACEMENT_FILE`]) so a Torpor started again finds
//! it. The data is copied by programs of the image itself, so the hosts
//! need only the image and Torpor's machine the docker CLI:
//! `mariadb-backup` runs in the source container (`docker exec` on the
//! source's engine), `mbstream`, `mariadb-backup --prepare` and `tar` in
//! short-lived helper containers (`docker run --rm` on the target's) that
//! mount the target's volume before its own container exists; the stream
//! passes through Torpor's machine between the two CLIs.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicU64;

use super::{
    engine, DockerDriver, DockerOptions, ADMIN_USER, DATADIR, SERVICE_LABEL, SOCKET_DIR,
    SOCKET_NAME,
};
use crate::config::hosts::HostConfig;
use crate::scaler::driver::DriverError;
use crate::scaler::feed::{backup_gtid, feed, BUFFER_POOL_DUMP};

/// The file in a service's state folder that names the suffix of the
/// container and volume it runs after a relocation, and the host they
/// are on (`-m<unix ms> <host>`; no host: `local`); after it took over
/// a warm pool's pair, the name they were made under too (`-<id> <host>
/// warm`).
const PLACEMENT_FILE: &str = "docker.placement";

/// Where `mariadb-backup` keeps its few files of its own inside the
/// source container while it streams (not on the volume).
const BACKUP_SCRATCH: &str = "/tmp/torpor-backup";

/// MariaDB's port inside a container, where other containers reach it.
const CONTAINER_PORT: u16 = 3306;

/// The longest socket path a Unix socket address holds, with some room
/// (108 bytes with its terminating NUL).
const SOCKET_PATH_MAX: usize = 100;

/// A replication server id for the server in container `name`: servers
/// that replicate from each other must differ, and two names give two
/// ids. FNV-1a, so the id of a name never changes between builds.
pub(super) fn server_id(name: &str) -> u32 {
    let hash = name.bytes().fold(0x811c_9dc5u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    // 1..=2^31-1: 0 means "no id" to MariaDB.
    (hash & 0x7fff_ffff).max(1)
}

/// Whether `suffix` may end a container's and a volume's names.
fn valid_suffix(suffix: &str) -> bool {
    suffix.len() > 1
        && suffix.len() <= 32
        && suffix.starts_with('-')
        && suffix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The placement file of a service with this state folder.
fn placement_file(options: &DockerOptions) -> Option<PathBuf> {
    options
        .state_dir
        .as_ref()
        .map(|dir| dir.join(PLACEMENT_FILE))
}

/// The socket folder of the pair with `placement`, from the first
/// pair's (`run` → `run-m…`).
fn placed_socket_dir(home: &Path, placement: &str) -> Option<PathBuf> {
    let mut name = home.file_name()?.to_owned();
    name.push(placement);
    Some(home.with_file_name(name))
}

/// The first pair's socket folder, from the one `options` name.
fn home_socket_dir(options: &DockerOptions) -> Option<PathBuf> {
    let dir = options.socket_dir.as_ref()?;
    if options.made_as.is_some() {
        // A warm pool's pair's folder is the pool's; the service's first
        // one is in its state folder.
        return options.state_dir.as_ref().map(|dir| dir.join("run"));
    }
    let name = dir.file_name()?.to_str()?;
    let home = name.strip_suffix(options.placement.as_str())?;
    Some(dir.with_file_name(home))
}

/// Points `options` (of a service's first pair) at the pair its
/// placement file names, if any: names and socket folder.
pub(super) fn apply_placement(options: &mut DockerOptions) {
    if !options.placement.is_empty() {
        return;
    }
    let Some(file) = placement_file(options) else {
        return;
    };
    let Ok(text) = std::fs::read_to_string(&file) else {
        return;
    };
    let mut words = text.split_whitespace();
    let suffix = words.next().unwrap_or_default();
    if !valid_suffix(suffix) {
        tracing::warn!(file = %file.display(), "ignoring a placement that names no container");
        return;
    }
    let made_as = words.nth(1).filter(|name| {
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
    });
    options.placement = suffix.to_string();
    options.made_as = made_as.map(str::to_string);
    options.socket_dir = match made_as {
        Some(_) => options
            .socket_dir
            .as_deref()
            .and_then(|home| warm_socket_dir(home, &options.host.name, suffix)),
        None => options
            .socket_dir
            .as_deref()
            .and_then(|home| placed_socket_dir(home, suffix)),
    };
}

/// The socket folder of a warm pool's pair (`suffix` `-<id>`) on `host`,
/// from a service's first socket folder `home`
/// (`<state_dir>/services/<name>/run`): the one the pool made it with,
/// `<state_dir>/warm/docker-<host>/<id>/run`.
pub fn warm_socket_dir(home: &Path, host: &str, suffix: &str) -> Option<PathBuf> {
    let state_dir = home.parent()?.parent()?.parent()?;
    let id = suffix.strip_prefix('-')?;
    super::warm::socket_dir_within_limit(
        &crate::config::warm_pool::pool_dir(state_dir, "docker", host)
            .join(id)
            .join("run"),
    )
}

/// The host a relocated service's placement file names in `state_dir`;
/// `None` before any relocation, or when the file names none.
pub fn placed_host(state_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(state_dir.join(PLACEMENT_FILE)).ok()?;
    let mut words = text.split_whitespace();
    valid_suffix(words.next()?).then_some(())?;
    words.next().map(str::to_string)
}

impl DockerDriver {
    /// The options of a relocation's target: the same service, image,
    /// limits and password, a new suffix (so a new container, volume and
    /// socket folder), on host `to` (default: this one). A socket folder
    /// is shared only with a container on Torpor's default engine.
    pub(super) fn target_options(
        &self,
        to: Option<&HostConfig>,
    ) -> Result<DockerOptions, DriverError> {
        let mut options = self.options.clone();
        if let Some(host) = to {
            if !host.takes("docker") {
                return Err(DriverError::Failed(format!(
                    "host '{}' is a base directory for process services, not a Docker Engine",
                    host.name
                )));
            }
            options.host = host.clone();
        }
        // Said now, before anything is made, rather than halfway.
        engine::cli(&self.options.host)?;
        options.placement = format!("-m{}", crate::scaler::autoscaler::unix_ms());
        // The target is the service's own pair, named after it.
        options.made_as = None;
        options.socket_dir = home_socket_dir(&self.options)
            .filter(|_| options.host.engine.is_none())
            .and_then(|home| placed_socket_dir(&home, &options.placement))
            .filter(|dir| dir.join(SOCKET_NAME).as_os_str().len() < SOCKET_PATH_MAX);
        Ok(options)
    }

    /// The running container's address on its Docker network: where
    /// another container (a relocation's target) reaches its server. The
    /// published loopback port is the host's own.
    pub(super) fn network_address(&self) -> Result<SocketAddr, DriverError> {
        let name = self.options.container_name();
        let response = self
            .block_on(self.docker.inspect_container(&name, None))
            .map_err(|e| super::failed("inspecting", &name, e))?;
        self.check_ownership(&response)?;
        let networks = response
            .network_settings
            .and_then(|settings| settings.networks)
            .unwrap_or_default();
        // The default bridge first, then any network (sorted: the same
        // choice every time).
        let mut names: Vec<&String> = networks.keys().collect();
        names.sort_by_key(|network| (network.as_str() != "bridge", network.as_str()));
        names
            .into_iter()
            .filter_map(|network| networks.get(network)?.ip_address.as_deref())
            .find_map(|ip| ip.parse::<IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, CONTAINER_PORT))
            .ok_or_else(|| {
                DriverError::Failed(format!("{name} has no address on a Docker network"))
            })
    }

    /// `mariadb-backup --backup --stream` inside the running container,
    /// as root over its socket. The password travels in the docker CLI's
    /// environment (`-e MYSQL_PWD` without a value copies it from there),
    /// which only its owner reads, never on a command line.
    pub(super) fn backup(&self) -> Result<Command, DriverError> {
        let script = format!(
            "rm -rf {BACKUP_SCRATCH} && mkdir -p {BACKUP_SCRATCH} && \
             exec mariadb-backup --backup --stream=xbstream --user={ADMIN_USER} \
             --socket={SOCKET_DIR}/{SOCKET_NAME} --datadir={DATADIR} \
             --target-dir={BACKUP_SCRATCH} --tmpdir={BACKUP_SCRATCH}"
        );
        let mut command = engine::cli(&self.options.host)?;
        command
            .env("MYSQL_PWD", &self.options.admin_password)
            .args(["exec", "-e", "MYSQL_PWD"])
            .arg(self.options.container_name())
            .args(["sh", "-c", &script]);
        Ok(command)
    }

    /// `cat` of the running server's buffer pool dump, in its container.
    pub(super) fn hot_pages(&self) -> Result<Command, DriverError> {
        let mut command = engine::cli(&self.options.host)?;
        command
            .arg("exec")
            .arg(self.options.container_name())
            .args(["cat", &format!("{DATADIR}/{BUFFER_POOL_DUMP}")]);
        Ok(command)
    }

    /// Writes `pages` as the running server's buffer pool dump, in its
    /// container (readable by the server: root writes it 0644).
    pub(super) fn place_pages(&self, pages: &[u8]) -> Result<(), DriverError> {
        let mut command = engine::cli(&self.options.host)?;
        command
            .args(["exec", "-i"])
            .arg(self.options.container_name())
            .args(["sh", "-c", &format!("cat > {DATADIR}/{BUFFER_POOL_DUMP}")]);
        let mut input = pages;
        feed(command, &mut input, &AtomicU64::new(0)).map(drop)
    }

    /// A helper container of the image with this backend's volume on the
    /// datadir, no network, removed when `args` end.
    fn helper(&self, stdin: bool, read_only: bool, args: &[&str]) -> Result<Command, DriverError> {
        let mut mount = format!(
            "type=volume,source={},target={DATADIR}",
            self.options.volume_name()
        );
        if read_only {
            mount.push_str(",readonly");
        }
        let mut command = engine::cli(&self.options.host)?;
        command.args(["run", "--rm", "--network", "none"]);
        if stdin {
            command.arg("-i");
        }
        command
            .arg("--label")
            .arg(format!("{SERVICE_LABEL}={}", self.options.service))
            .arg("--mount")
            .arg(mount)
            .arg(&self.options.image)
            .args(args);
        Ok(command)
    }

    /// Fills the new volume from a backup stream: extracted, prepared and
    /// given to the server's user in a helper container; returns the GTID
    /// position the backup holds.
    pub(super) fn restore_backup(
        &mut self,
        backup: &mut dyn std::io::Read,
        copied: &AtomicU64,
    ) -> Result<String, DriverError> {
        self.connect()?;
        self.check_image()?;
        self.create_volume()?;
        // --prepare talks on stderr; only the binlog position goes to
        // stdout.
        let script = format!(
            "set -e; mbstream -x -C {DATADIR}; \
             mariadb-backup --prepare --target-dir={DATADIR} >&2; \
             chown -R mysql:mysql {DATADIR}; \
             cat {DATADIR}/mariadb_backup_binlog_info 2>/dev/null || true"
        );
        let output = feed(
            self.helper(true, false, &["sh", "-c", &script])?,
            backup,
            copied,
        )?;
        Ok(backup_gtid(&String::from_utf8_lossy(&output)))
    }

    /// A tar stream of the stopped container's volume, from a helper
    /// container that mounts it read-only.
    pub(super) fn export(&self) -> Result<Command, DriverError> {
        if self.negotiated {
            if let Some(found) = self.inspect()? {
                if found.state != super::State::Stopped {
                    return Err(DriverError::Failed(format!(
                        "{} is {}: its data is not at rest",
                        self.options.container_name(),
                        found.status
                    )));
                }
            }
        }
        self.helper(false, true, &["tar", "-C", DATADIR, "-cf", "-", "."])
    }

    /// Fills the new volume from another backend's [`Self::export`].
    pub(super) fn import(
        &mut self,
        data: &mut dyn std::io::Read,
        copied: &AtomicU64,
    ) -> Result<(), DriverError> {
        self.connect()?;
        self.check_image()?;
        self.create_volume()?;
        feed(
            self.helper(true, false, &["tar", "-C", DATADIR, "-xf", "-"])?,
            data,
            copied,
        )
        .map(drop)
    }

    /// Records this pair as the service's in its state folder.
    pub(super) fn record_placement(&mut self) -> Result<(), DriverError> {
        let file = placement_file(&self.options).ok_or_else(|| {
            DriverError::Failed(
                "no state folder to record the service's new container in: a Torpor started again would look for the first one".into(),
            )
        })?;
        if self.options.placement.is_empty() {
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
        // A service that never ran on this machine's engine has no
        // socket folder that would have made its state folder.
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| DriverError::Failed(format!("creating {}: {e}", dir.display())))?;
        }
        let placement = match &self.options.made_as {
            Some(made_as) => format!(
                "{} {} {made_as}\n",
                self.options.placement, self.options.host.name
            ),
            None => format!("{} {}\n", self.options.placement, self.options.host.name),
        };
        std::fs::write(&partial, placement)
            .and_then(|()| std::fs::rename(&partial, &file))
            .map_err(|e| DriverError::Failed(format!("writing {}: {e}", file.display())))
    }

    /// After this pair was removed: its placement goes when it names it,
    /// and a relocated pair's socket folder goes (best effort: the
    /// container's user made the files in it).
    pub(super) fn forget_placement(&self) {
        if self.options.placement.is_empty() {
            return;
        }
        if let Some(file) = placement_file(&self.options) {
            let named = std::fs::read_to_string(&file).unwrap_or_default();
            if named.split_whitespace().next() == Some(self.options.placement.as_str()) {
                let _ = std::fs::remove_file(&file);
            }
        }
        if let Some(dir) = &self.options.socket_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_ids_differ_by_name_and_are_never_zero() {
        let first = server_id("torpor-orders");
        assert_eq!(first, server_id("torpor-orders"));
        assert_ne!(first, server_id("torpor-orders-m1764894000000"));
        assert!((1..=0x7fff_ffff).contains(&first));
    }

    #[test]
    fn suffixes_are_name_safe() {
        assert!(valid_suffix("-m1764894000000"));
        assert!(!valid_suffix(""));
        assert!(!valid_suffix("-"));
        assert!(!valid_suffix("m1"));
        assert!(!valid_suffix("-m1/../x"));
        assert!(!valid_suffix("-m1 x"));
    }

    #[test]
    fn a_placement_renames_the_pair_and_its_socket_folder() {
        let state = tempfile::tempdir().expect("tempdir");
        let mut options = DockerOptions::new("orders", "secret");
        options.state_dir = Some(state.path().to_path_buf());
        options.socket_dir = Some(state.path().join("run"));
        std::fs::write(state.path().join(PLACEMENT_FILE), "-m42 b\n").expect("write");
        apply_placement(&mut options);
        assert_eq!(placed_host(state.path()).as_deref(), Some("b"));
        assert_eq!(options.container_name(), "torpor-orders-m42");
        assert_eq!(options.volume_name(), "torpor-orders-m42-data");
        assert_eq!(options.socket_dir, Some(state.path().join("run-m42")));
        assert_eq!(home_socket_dir(&options), Some(state.path().join("run")));
    }

    #[test]
    fn a_warm_placement_names_the_pools_pair_and_socket_folder() {
        let root = tempfile::tempdir().expect("tempdir");
        let home = root.path().join("services/orders");
        let mut options = DockerOptions::new("orders", "secret");
        options.state_dir = Some(home.clone());
        options.socket_dir = Some(home.join("run"));
        std::fs::create_dir_all(&home).expect("mkdir");
        std::fs::write(home.join(PLACEMENT_FILE), "-17-1 local warm\n").expect("write");
        apply_placement(&mut options);
        assert_eq!(options.container_name(), "torpor-warm-17-1");
        assert_eq!(options.volume_name(), "torpor-warm-17-1-data");
        assert_eq!(options.owner(), "warm");
        assert_eq!(
            options.socket_dir,
            Some(root.path().join("warm/docker-local/17-1/run"))
        );
        assert_eq!(home_socket_dir(&options), Some(home.join("run")));
    }

    #[test]
    fn a_bad_placement_is_ignored() {
        let state = tempfile::tempdir().expect("tempdir");
        let mut options = DockerOptions::new("orders", "secret");
        options.state_dir = Some(state.path().to_path_buf());
        std::fs::write(state.path().join(PLACEMENT_FILE), "../../etc").expect("write");
        apply_placement(&mut options);
        assert_eq!(options.container_name(), "torpor-orders");
    }
}
