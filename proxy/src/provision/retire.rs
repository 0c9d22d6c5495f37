//! Warm instances no pool wants any more: those of a pool removed from
//! `[[warm_pools]]`, and a shrunk pool's beyond its size. A docker
//! instance is a paused container that would otherwise hold its memory
//! and volume for good; a process instance is a datadir on disk. Both go
//! at the start that finds them unwanted. Folders a service claimed hold
//! that service's data and are never touched here.

use std::path::{Path, PathBuf};

use tracing::{info, warn};

use super::warm::{remove_quietly, CLAIMED};
use crate::config::hosts::HostConfig;
use crate::config::DriverKind;
use crate::scaler::docker::{DockerDriver, DockerOptions};
use crate::scaler::driver::Driver;

/// An instance's folder to remove, with what made it.
#[derive(Debug, Clone)]
pub struct Unwanted {
    /// The instance's folder, `state_dir/warm/<driver>-<host>/<id>`.
    pub dir: PathBuf,
    /// The pool's driver.
    pub driver: DriverKind,
    /// The docker pool's host, when the config still names it.
    pub host: Option<HostConfig>,
}

/// The unclaimed instances under `state_dir/warm` in a pool folder that
/// is none of `pool_dirs` (the configured pools'). `hosts` are the
/// config's hosts with `local`.
pub fn of_removed_pools(
    state_dir: &Path,
    pool_dirs: &[&Path],
    hosts: &[HostConfig],
) -> Vec<Unwanted> {
    let Ok(entries) = std::fs::read_dir(state_dir.join("warm")) else {
        return Vec::new();
    };
    let mut unwanted = Vec::new();
    for pool_dir in entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()) {
        if pool_dirs.contains(&pool_dir.as_path()) {
            continue;
        }
        // Named `<driver>-<host>` (`config::warm_pool::pool_dir`).
        let Some(name) = pool_dir.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let (driver, host) = match name.split_once('-') {
            Some(("process", _)) => (DriverKind::Process, None),
            Some(("docker", host)) => (
                DriverKind::Docker,
                hosts.iter().find(|h| h.name == host).cloned(),
            ),
            _ => continue,
        };
        for dir in unclaimed(&pool_dir) {
            unwanted.push(Unwanted {
                dir,
                driver,
                host: host.clone(),
            });
        }
    }
    unwanted
}

/// The instance folders in `pool_dir` no service claimed.
fn unclaimed(pool_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(pool_dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir() && !p.join(CLAIMED).exists())
        .collect()
}

/// Removes `instance`: a docker instance's container and volume (when
/// its host is still configured), then its folder.
pub fn remove(instance: &Unwanted) {
    if instance.driver == DriverKind::Docker {
        let Some(host) = instance.host.clone() else {
            warn!(
                dir = %instance.dir.display(),
                "a warm container of a host no longer configured: remove it with docker rm -f -v"
            );
            return;
        };
        let removed = DockerOptions::for_warm_pool(&instance.dir, "", host, None, 0)
            .and_then(DockerDriver::new)
            .and_then(|mut driver| driver.destroy());
        if let Err(e) = removed {
            warn!(dir = %instance.dir.display(), "removing a warm container no pool wants: {e}");
            return;
        }
    }
    remove_quietly(&instance.dir);
    info!(dir = %instance.dir.display(), "removed a warm instance no pool wants");
}
