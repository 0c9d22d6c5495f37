//! `[services.storage]` for the docker driver: the container's datadir
//! is the service's own volume ([`crate::storage`]), mounted on this
//! machine under the service's state folder and bind-mounted into the
//! container at `/var/lib/mysql`, instead of a named Docker volume. The
//! image's entrypoint gives the mount's root to its `mysql` user.

use std::path::{Path, PathBuf};

use bollard::models::{Mount, MountType};

use super::inspect::Inspected;
use super::{DockerDriver, DATADIR};
use crate::scaler::driver::DriverError;
use crate::storage::Watch;

impl DockerDriver {
    /// Where the service's own volume is mounted on this machine:
    /// `<state folder>/data` (its image `data.img` next to it).
    fn storage_dir(&self) -> Result<PathBuf, DriverError> {
        if self.options.host.engine.is_some() {
            return Err(DriverError::Failed(
                "[services.storage] needs the local Docker Engine: the volume is mounted on this machine".into(),
            ));
        }
        self.options
            .state_dir
            .as_ref()
            .map(|dir| dir.join("data"))
            .ok_or_else(|| DriverError::Failed("[services.storage] needs a state folder".into()))
    }

    /// Mounts the service's volume before anything can write to it: at
    /// every start (the container binds whatever is at the path when it
    /// starts, and a restarted Torpor has not mounted it yet). Without
    /// `[services.storage]`, nothing.
    pub(super) fn attach_storage(&mut self) -> Result<(), DriverError> {
        let Some(config) = self.options.storage.clone() else {
            return Ok(());
        };
        if self.storage.is_none() {
            let dir = self.storage_dir()?;
            let watch = Watch::attach(Some(config), &self.options.service, &dir)
                .map_err(DriverError::Failed)?;
            self.storage = Some(watch);
        }
        Ok(())
    }

    /// The container's datadir: the service's volume bound in, with
    /// `[services.storage]`; else the named volume `volume`.
    pub(super) fn datadir_mount(
        &mut self,
        volume: impl FnOnce(&Self) -> Result<String, DriverError>,
    ) -> Result<Mount, DriverError> {
        if self.options.storage.is_none() {
            return Ok(Mount {
                target: Some(DATADIR.to_string()),
                source: Some(volume(self)?),
                typ: Some(MountType::VOLUME),
                ..Default::default()
            });
        }
        self.attach_storage()?;
        let dir = self.storage_dir()?;
        Ok(Mount {
            target: Some(DATADIR.to_string()),
            source: Some(dir.display().to_string()),
            typ: Some(MountType::BIND),
            ..Default::default()
        })
    }

    /// Refuses a container whose datadir is not the service's volume (made
    /// before the service had `[services.storage]`): its data is in its
    /// named volume, and the new volume would be watched in its stead.
    pub(super) fn check_datadir(&self, found: &Inspected) -> Result<(), DriverError> {
        if self.options.storage.is_none() {
            return Ok(());
        }
        let dir = self.storage_dir()?;
        match found.datadir_source.as_deref() {
            Some(source) if Path::new(source) == dir => Ok(()),
            other => Err(DriverError::Failed(format!(
                "the container {} keeps its datadir in {}, not on the service's volume {}: move the data there and remove the container (README, \"Storage\")",
                self.options.container_name(),
                other.unwrap_or("its own filesystem"),
                dir.display()
            ))),
        }
    }

    /// Without `[services.storage]`, on this machine's engine, watches
    /// the filesystem that holds the container's named volume, as the
    /// process driver watches its datadir's: every service's storage is
    /// shown. Looked up once per volume (a relocation makes a new one),
    /// once the container runs; another machine's engine has no
    /// filesystem here to watch.
    pub(super) fn watch_named_volume(&mut self) {
        if self.options.storage.is_some()
            || self.address.is_none()
            || !super::engine::on_this_machine(&self.options.host)
        {
            return;
        }
        let volume = self.options.volume_name();
        if self.watched_volume.as_deref() == Some(volume.as_str()) {
            return;
        }
        self.watched_volume = Some(volume.clone());
        let found = self.block_on(async {
            tokio::time::timeout(super::PING_TIMEOUT, self.docker.inspect_volume(&volume)).await
        });
        match found {
            Ok(Ok(found)) => {
                let mountpoint = PathBuf::from(found.mountpoint);
                self.storage = Watch::attach(None, &self.options.service, &mountpoint).ok();
            }
            Ok(Err(e)) => tracing::debug!(%volume, "not watched: {e}"),
            Err(_) => tracing::debug!(%volume, "not watched: the engine did not answer"),
        }
    }

    /// Removes the service's volume with its data (after the container).
    pub(super) fn remove_storage(&mut self) -> Result<(), DriverError> {
        self.attach_storage()?;
        match self.storage.take() {
            Some(storage) => storage
                .remove()
                .map_err(|e| DriverError::Failed(format!("removing the service's volume: {e}"))),
            None => Ok(()),
        }
    }
}
