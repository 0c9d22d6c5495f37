//! A warm pool's containers ([`crate::provision::warm`]): made under the
//! name [`WARM_OWNER`] with a suffix of their own (`torpor-warm-<id>`
//! and its volume), booted and paused; a new service takes one over
//! ([`DockerDriver::adopt_warm`]) instead of making its own.

use std::path::Path;

use super::{DockerDriver, DockerOptions, SOCKET_NAME};
use crate::config::hosts::HostConfig;
use crate::scaler::driver::{DriverError, Resources};

/// The name a warm pool's containers and volumes are made under (and
/// labelled with), before and after a service takes them over.
pub const WARM_OWNER: &str = "warm";

/// A paused container at rest gets no CPU; this only bounds it while it
/// boots. The checkout gives it the service's own limits.
const WARM_RESOURCES: Resources = Resources {
    cpus: 1.0,
    memory_mib: 512,
};

/// The longest socket path a Unix socket address holds, with some room.
const SOCKET_PATH_MAX: usize = 100;

impl DockerOptions {
    /// The options of the warm pool's pair with folder `dir` (whose name
    /// is its id) on `host`, of `image` (default: the default image): its
    /// socket folder is `dir/run` on Torpor's own engine (when the path
    /// fits a socket address).
    pub fn for_warm_pool(
        dir: &Path,
        admin_password: &str,
        host: HostConfig,
        image: Option<&str>,
        buffer_pool_mib: u64,
    ) -> Result<DockerOptions, DriverError> {
        let id = dir
            .file_name()
            .and_then(|name| name.to_str())
            .ok_or_else(|| DriverError::Failed(format!("{} names no id", dir.display())))?;
        let mut options = DockerOptions::new(WARM_OWNER, admin_password);
        options.placement = format!("-{id}");
        if let Some(image) = image {
            options.image = image.to_string();
        }
        options.resources = WARM_RESOURCES;
        options.buffer_pool = format!("{buffer_pool_mib}M");
        options.host = host;
        options.socket_dir =
            socket_dir_within_limit(&dir.join("run")).filter(|_| options.host.engine.is_none());
        Ok(options)
    }
}

/// `dir` when a socket in it has a path short enough for a socket
/// address.
pub(super) fn socket_dir_within_limit(dir: &Path) -> Option<std::path::PathBuf> {
    (dir.join(SOCKET_NAME).as_os_str().len() < SOCKET_PATH_MAX).then(|| dir.to_path_buf())
}

impl DockerDriver {
    /// Takes over the warm pool's pair with suffix `-<id>` on this
    /// driver's host (paused, made with [`DockerOptions::for_warm_pool`]
    /// and the admin password this driver has) as this service's: the
    /// placement file names it from now on, so that Torpor started again
    /// finds it. The next [`Driver::start`](crate::scaler::driver::Driver::start) unpauses it; the service's
    /// limits follow ([`Driver::take_service_limits`](crate::scaler::driver::Driver::take_service_limits)).
    pub fn adopt_warm(&mut self, suffix: &str) -> Result<(), DriverError> {
        self.options.made_as = Some(WARM_OWNER.to_string());
        self.options.placement = suffix.to_string();
        self.options.socket_dir = self.options.socket_dir.as_deref().and_then(|home| {
            super::relocation::warm_socket_dir(home, &self.options.host.name, suffix)
        });
        self.record_placement()
    }
}
