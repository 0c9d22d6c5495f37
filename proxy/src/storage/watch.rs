//! One service's storage as its driver holds it: the volume under its
//! datadir (or, where none can be made, just the datadir's filesystem),
//! sampled and grown when the policy says so.
//!
//! A volume that can grow is checked by a thread of its own, every
//! [`GROW_CHECK`]: a writer fills a small volume's headroom in about a
//! second, and the service's actor, which sampled it before, can be busy
//! that long with something else (an engine call, a resize, an admin
//! request). The actor only reads what that thread saw.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::policy::{self, Decision};
use super::usage::{self, Usage};
use super::volume::{self, Volume};
use crate::config::storage::StorageConfig;

const MIB: u64 = 1 << 20;

/// How often a growable volume is sampled (a `statvfs` and a `stat`):
/// a step of headroom must outlast this long of writes, plus the grow.
pub const GROW_CHECK: Duration = Duration::from_millis(100);

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

/// A service's storage: its volume, or the filesystem it watches. A
/// volume that can grow is grown by a thread of its own; dropping the
/// watch stops that thread, then releases the volume.
#[derive(Debug)]
pub struct Watch {
    storage: Arc<Shared>,
    /// The thread that grows the volume; `None` when there is nothing
    /// Torpor can grow.
    grower: Option<JoinHandle<()>>,
    /// What the last sample showed, for when the grower holds the lock.
    last_view: StorageView,
}

/// What a watch and its grower share.
#[derive(Debug)]
struct Shared {
    sampled: Mutex<Sampled>,
    /// Set when the grower must stop; `stopping` wakes it.
    stop: Mutex<bool>,
    stopping: Condvar,
}

/// The storage itself, sampled and grown under [`Shared::sampled`].
#[derive(Debug)]
struct Sampled {
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
            return Ok(Watch::new(Sampled {
                config,
                service: service.to_string(),
                datadir: datadir.to_path_buf(),
                volume: None,
                told_full: false,
                view: StorageView::default(),
            }));
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
        Ok(Watch::new(Sampled {
            config,
            service: service.to_string(),
            datadir: datadir.to_path_buf(),
            volume,
            told_full: false,
            view: StorageView {
                growable,
                ..StorageView::default()
            },
        }))
    }

    /// Wraps `sampled`, with a grower thread when it can grow. A thread
    /// that cannot be started leaves the growing to [`Watch::check`].
    fn new(sampled: Sampled) -> Watch {
        let growable = sampled.volume.is_some() && sampled.config.is_some();
        let service = sampled.service.clone();
        let last_view = sampled.view;
        let storage = Arc::new(Shared {
            sampled: Mutex::new(sampled),
            stop: Mutex::new(false),
            stopping: Condvar::new(),
        });
        let grower = growable
            .then(|| {
                let storage = Arc::clone(&storage);
                std::thread::Builder::new()
                    .name("torpor-storage".into())
                    .spawn(move || storage.grow_until_stopped())
                    .inspect_err(|e| {
                        tracing::warn!(
                            service,
                            "no storage thread ({e}): the volume is grown at the scaler's checks"
                        );
                    })
                    .ok()
            })
            .flatten();
        Watch {
            storage,
            grower,
            last_view,
        }
    }

    /// The last sample.
    pub fn view(&self) -> StorageView {
        self.last_view
    }

    /// The storage's view now: where a grower runs, what it saw last
    /// (without waiting for a grow under way); elsewhere a new sample,
    /// grown when past its threshold.
    pub fn check(&mut self) -> StorageView {
        if self.grower.is_some() {
            if let Ok(sampled) = self.storage.sampled.try_lock() {
                self.last_view = sampled.view;
            }
            return self.last_view;
        }
        self.last_view = self.storage.lock().check();
        self.last_view
    }

    /// Stops the grower and waits for it (a grow under way finishes).
    fn stop_grower(&mut self) {
        let Some(grower) = self.grower.take() else {
            return;
        };
        *self
            .storage
            .stop
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
        self.storage.stopping.notify_all();
        if grower.join().is_err() {
            tracing::warn!("the storage thread panicked");
        }
    }

    /// Releases the volume and deletes its image: the data is gone.
    pub fn remove(mut self) -> Result<(), String> {
        self.stop_grower();
        let volume = self.storage.lock().volume.take();
        match volume {
            Some(volume) => volume.remove().map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }
}

impl Drop for Watch {
    /// The grower stops before the volume goes (with the last
    /// `Shared`): it never grows a released volume.
    fn drop(&mut self) {
        self.stop_grower();
    }
}

impl Shared {
    /// The storage, whatever a panic elsewhere left in it: its fields
    /// are each consistent on their own.
    fn lock(&self) -> MutexGuard<'_, Sampled> {
        self.sampled.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The grower: checks the volume every [`GROW_CHECK`] until told to
    /// stop.
    fn grow_until_stopped(&self) {
        let mut stop = self.stop.lock().unwrap_or_else(PoisonError::into_inner);
        while !*stop {
            drop(stop);
            self.lock().check();
            stop = self.stop.lock().unwrap_or_else(PoisonError::into_inner);
            if *stop {
                break;
            }
            stop = self
                .stopping
                .wait_timeout(stop, GROW_CHECK)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl Sampled {
    /// Samples the filesystem and grows the volume when it is past its
    /// threshold. A grow that fails is logged and tried at the next
    /// check.
    fn check(&mut self) -> StorageView {
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

    /// A volume past its threshold grows on its own thread, with nobody
    /// calling [`Watch::check`]: a busy scaler does not hold it back.
    /// Dropping the watch stops the thread and releases the volume.
    #[test]
    fn a_volume_past_its_threshold_grows_with_nobody_checking() {
        if let Err(why) = volume::possible() {
            eprintln!("skipped: {why}");
            return;
        }
        let dir = tempfile::tempdir().expect("dir");
        let datadir = dir.path().join("data");
        let config = StorageConfig {
            initial_mib: 320,
            step_mib: 128,
            max_mib: 448,
        };
        let watch = Watch::attach(Some(config), "busy", &datadir).expect("a volume");
        assert!(watch.view().growable);
        let before = usage::of(&datadir).expect("usage");
        // Past the 60 % threshold, written for real (a sparse file
        // takes no space).
        let fill = vec![7u8; MIB as usize];
        let mut file = std::fs::File::create(datadir.join("fill")).expect("file");
        for _ in 0..(before.size * 7 / 10 / MIB) {
            std::io::Write::write_all(&mut file, &fill).expect("write");
        }
        file.sync_all().expect("sync");
        // Nobody calls check() until the image has grown.
        let image = volume::image_for(&datadir);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&image).expect("image").len() < 448 * MIB {
            assert!(Instant::now() < deadline, "the volume did not grow");
            std::thread::sleep(GROW_CHECK);
        }
        // Then check() shows what the grower did, once its grow is done.
        let mut watch = watch;
        let view = loop {
            let view = watch.check();
            if view.grows > 0 || Instant::now() > deadline {
                break view;
            }
            std::thread::sleep(GROW_CHECK);
        };
        assert_eq!((view.grows, view.volume_bytes), (1, 448 * MIB), "{view:?}");
        assert_eq!(std::fs::metadata(&image).expect("image").len(), 448 * MIB);
        assert!(
            view.size_bytes > before.size + 100 * MIB,
            "{before:?} -> {view:?}"
        );
        drop(file);
        drop(watch);
        // Unmounted: the file written on the volume is no longer there.
        assert!(
            !datadir.join("fill").exists(),
            "the volume is still mounted after the watch went"
        );
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
