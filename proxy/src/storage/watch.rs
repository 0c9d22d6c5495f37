//! One service's storage as its driver holds it: the volume under its
//! datadir (or, where none can be made, just the datadir's filesystem),
//! sampled and grown when the policy says so.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::policy::{self, Decision};
use super::usage::{self, Usage};
use super::volume::{self, Volume};
use crate::config::storage::StorageConfig;

const MIB: u64 = 1 << 20;

/// What the admin API and the metrics show of a service's storage.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct StorageView {
    /// Bytes in use on the datadir's filesystem.
    pub used_bytes: u64,
    /// That filesystem's size (less than its volume's by the
    /// filesystem's log and metadata).
    pub size_bytes: u64,
    /// The volume's size, as made or grown (its image file's length; the
    /// filesystem's size without a volume).
    pub volume_bytes: u64,
    /// Grows since Torpor started.
    pub grows: u64,
    /// Whether Torpor can grow it (it is a volume of Torpor's own).
    pub growable: bool,
    /// How long the last grow took, milliseconds.
    pub last_grow_ms: Option<u64>,
}

/// A service's storage: its volume, or the filesystem it watches.
#[derive(Debug)]
pub struct Watch {
    /// `None`: a service with no `[services.storage]`, only watched.
    config: Option<StorageConfig>,
    service: String,
    datadir: PathBuf,
    volume: Option<Volume>,
    /// The policy said "grow" where Torpor cannot, or "at the maximum":
    /// the log said so once (again only after the volume changed).
    told_full: bool,
    view: StorageView,
}

impl Watch {
    /// With a `config`, mounts (making it first if needed) the volume for
    /// `datadir`; where no volume can be made, says why once and watches
    /// the filesystem that holds `datadir` instead: the service runs as
    /// before. Without, only watches (every service's storage is shown).
    ///
    /// An image that exists but cannot be mounted is an error: the
    /// service's data is in it, and a server started on the empty
    /// directory underneath would make a new, empty database there.
    pub fn attach(
        config: Option<StorageConfig>,
        service: &str,
        datadir: &Path,
    ) -> Result<Watch, String> {
        let Some(wanted) = &config else {
            return Ok(Watch {
                config,
                service: service.to_string(),
                datadir: datadir.to_path_buf(),
                volume: None,
                told_full: false,
                view: StorageView::default(),
            });
        };
        let image = volume::image_for(datadir);
        let volume = volume::possible()
            .and_then(|()| {
                Volume::open(datadir, wanted.initial_mib * MIB).map_err(|e| e.to_string())
            })
            .inspect(|volume| {
                tracing::info!(
                    service,
                    image = %volume.image().display(),
                    device = volume.device(),
                    mount = %datadir.display(),
                    "the datadir is on a volume of its own, grown as it fills"
                );
            })
            .inspect_err(|why| {
                tracing::warn!(
                    service,
                    datadir = %datadir.display(),
                    "no volume for the datadir ({why}): its filesystem is only watched, never grown"
                );
            })
            .ok();
        if volume.is_none() && image.exists() {
            return Err(format!(
                "{} holds the service's data and cannot be mounted (see the warning above)",
                image.display()
            ));
        }
        let growable = volume.is_some();
        Ok(Watch {
            config,
            service: service.to_string(),
            datadir: datadir.to_path_buf(),
            volume,
            told_full: false,
            view: StorageView {
                growable,
                ..StorageView::default()
            },
        })
    }

    /// The last sample.
    pub fn view(&self) -> StorageView {
        self.view
    }

    /// Samples the filesystem and grows the volume when it is past its
    /// threshold. A grow that fails is logged and tried at the next
    /// check.
    pub fn check(&mut self) -> StorageView {
        let Some(used) = self.sample() else {
            return self.view;
        };
        let Some(config) = &self.config else {
            return self.view;
        };
        // Without a volume the filesystem stands for it.
        let volume_bytes = match &self.volume {
            Some(volume) => match volume.size() {
                Ok(bytes) => bytes,
                Err(e) => {
                    tracing::debug!(service = %self.service, "{e}");
                    return self.view;
                }
            },
            None => used.size,
        };
        self.view.volume_bytes = volume_bytes;
        match policy::decide(used.used, used.size, volume_bytes, config) {
            Decision::Keep => self.told_full = false,
            Decision::Grow(to) => match &self.volume {
                Some(volume) => {
                    let started = Instant::now();
                    match volume.grow(to) {
                        Ok(()) => {
                            let ms = started.elapsed().as_millis() as u64;
                            self.view.grows += 1;
                            self.view.last_grow_ms = Some(ms);
                            self.told_full = false;
                            tracing::info!(
                                service = %self.service,
                                used_mib = used.used / MIB,
                                from_mib = volume_bytes / MIB,
                                to_mib = to / MIB,
                                ms,
                                "storage grown"
                            );
                            self.view.volume_bytes = to;
                            self.sample();
                        }
                        Err(e) => tracing::warn!(
                            service = %self.service,
                            "growing the storage failed (tried again at the next check): {e}"
                        ),
                    }
                }
                None => self.tell_full(used, "Torpor cannot grow it (no volume of its own)"),
            },
            Decision::AtMax => self.tell_full(used, "it is at its max_mib"),
        }
        self.view
    }

    fn sample(&mut self) -> Option<Usage> {
        // Before the first start the datadir may not exist yet: its
        // nearest parent's filesystem is where it will be.
        let path = self
            .datadir
            .ancestors()
            .find(|dir| dir.exists())
            .unwrap_or(&self.datadir);
        match usage::of(path) {
            Ok(used) => {
                self.view.used_bytes = used.used;
                self.view.size_bytes = used.size;
                Some(used)
            }
            Err(e) => {
                tracing::debug!(service = %self.service, "reading the storage's use: {e}");
                None
            }
        }
    }

    fn tell_full(&mut self, used: Usage, why: &str) {
        if self.told_full {
            return;
        }
        self.told_full = true;
        tracing::warn!(
            service = %self.service,
            used_mib = used.used / MIB,
            size_mib = used.size / MIB,
            "the storage is past its threshold and stays as it is: {why}; writes fail once it is full"
        );
    }

    /// Unmounts and detaches the volume (its server must have stopped);
    /// it is mounted again by the next [`Watch::attach`].
    pub fn release(&mut self) -> Result<(), String> {
        match &mut self.volume {
            Some(volume) => volume.release().map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }

    /// Releases the volume and deletes its image: the data is gone.
    pub fn remove(mut self) -> Result<(), String> {
        match self.volume.take() {
            Some(volume) => volume.remove().map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A datadir that already holds files (made before the service had
    /// `[services.storage]`) is not hidden under a new volume: it is
    /// watched, and the service runs on as before. Not being root ends
    /// the same way.
    #[test]
    fn a_datadir_with_files_outside_a_volume_is_only_watched() {
        let dir = tempfile::tempdir().expect("dir");
        let datadir = dir.path().join("data");
        std::fs::create_dir_all(&datadir).expect("datadir");
        std::fs::write(datadir.join("ibdata1"), b"rows").expect("a file");
        let config = StorageConfig {
            initial_mib: 300,
            step_mib: 100,
            max_mib: 400,
        };
        let mut watch = Watch::attach(Some(config), "old", &datadir).expect("watched");
        assert!(!watch.view().growable);
        assert!(!volume::image_for(&datadir).exists(), "an image was made");
        let view = watch.check();
        assert!(view.size_bytes > 0 && view.grows == 0, "{view:?}");
        assert_eq!(
            std::fs::read(datadir.join("ibdata1")).expect("kept"),
            b"rows"
        );
        watch.remove().expect("nothing to remove");
        assert!(datadir.join("ibdata1").exists());
    }

    /// A service without `[services.storage]` is watched, never grown.
    #[test]
    fn without_a_config_the_filesystem_is_only_watched() {
        let dir = tempfile::tempdir().expect("dir");
        let mut watch = Watch::attach(None, "plain", &dir.path().join("data")).expect("watched");
        let view = watch.check();
        assert!(!view.growable && view.size_bytes > 0, "{view:?}");
    }

    /// An image that cannot be mounted (here: not a filesystem) stops
    /// the start rather than letting a server make a new database on
    /// the empty directory under it.
    #[test]
    fn an_image_that_cannot_be_mounted_is_an_error() {
        let dir = tempfile::tempdir().expect("dir");
        let datadir = dir.path().join("data");
        std::fs::write(volume::image_for(&datadir), b"not a filesystem").expect("image");
        let config = StorageConfig::default();
        let refused = Watch::attach(Some(config), "broken", &datadir).expect_err("mounted");
        assert!(refused.contains("data.img"), "{refused}");
    }
}
