//! A service's data volume: an XFS filesystem in an image file, attached
//! to a loop device and mounted where the service's datadir lives.
//!
//! Why XFS: it grows while mounted with no more than the mount's own
//! rights (`xfs_growfs`), where ext4's online resize needs
//! `CAP_SYS_RESOURCE` (refused inside many sandboxes and containers even
//! to root: `resize2fs` then fails with "Permission denied"). XFS cannot
//! shrink, which a volume here never does.
//!
//! Why the programs (`losetup`, `mkfs.xfs`, `mount`, `xfs_growfs`,
//! `umount`) rather than ioctls: making and growing XFS is only done by
//! xfsprogs anyway, and the loop-device crates generate their bindings
//! with libclang at build time. Each program is one short call whose
//! failure text goes into the error as it is.
//!
//! Growing is: extend the image file, tell the loop device its backing
//! file grew (`losetup -c`), grow the filesystem to the device
//! (`xfs_growfs`). Writers carry on meanwhile.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::scaler::process::find_program;

/// Why a volume could not be made, found, grown or released.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// A program is not installed.
    #[error("{program} is not installed (Debian: apt-get install -y {package})")]
    NotInstalled {
        /// The program looked for.
        program: &'static str,
        /// The Debian package that has it.
        package: &'static str,
    },
    /// A step failed; `why` is the program's or the system's text.
    #[error("{what}: {why}")]
    Failed {
        /// What was being done.
        what: String,
        /// Why it failed.
        why: String,
    },
}

fn failed(what: impl Into<String>, why: impl std::fmt::Display) -> VolumeError {
    VolumeError::Failed {
        what: what.into(),
        why: why.to_string(),
    }
}

/// A mounted volume. Dropping it unmounts it and detaches its loop
/// device; the image file (the data) stays.
#[derive(Debug)]
pub struct Volume {
    image: PathBuf,
    mount: PathBuf,
    device: String,
    released: bool,
}

/// The image file of the volume mounted at `mount`: next to it, named
/// after it (`data` → `data.img`).
pub fn image_for(mount: &Path) -> PathBuf {
    let mut name = mount.as_os_str().to_owned();
    name.push(".img");
    PathBuf::from(name)
}

/// Whether this process may make volumes at all; if not, why not.
pub fn possible() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err("Torpor does not run as root (loop devices and mounts need it)".into());
    }
    if !Path::new("/dev/loop-control").exists() {
        return Err("there is no /dev/loop-control (no loop devices here)".into());
    }
    for (program, package) in PROGRAMS {
        if find_program(&[program]).is_none() {
            return Err(format!(
                "{program} is not installed (Debian: apt-get install -y {package})"
            ));
        }
    }
    Ok(())
}

/// How long a release waits for its device to let go of the image.
const DETACH_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// The programs a volume needs, with their Debian packages.
const PROGRAMS: [(&str, &str); 5] = [
    ("losetup", "mount"),
    ("mount", "mount"),
    ("umount", "mount"),
    ("mkfs.xfs", "xfsprogs"),
    ("xfs_growfs", "xfsprogs"),
];

/// Runs `program` with `args`; its standard output, or its error text.
fn run(program: &'static str, args: &[&std::ffi::OsStr]) -> Result<String, VolumeError> {
    let package = PROGRAMS
        .iter()
        .find(|(name, _)| *name == program)
        .map_or("util-linux", |(_, package)| package);
    let path = find_program(&[program]).ok_or(VolumeError::NotInstalled { program, package })?;
    let output = Command::new(path)
        .args(args)
        .output()
        .map_err(|e| failed(format!("running {program}"), e))?;
    if !output.status.success() {
        let mut text = String::from_utf8_lossy(&output.stderr).trim().to_string();
        if text.is_empty() {
            text = format!("exited with {}", output.status);
        }
        return Err(failed(program, text));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The device mounted at `mount`, from this process's mount table.
fn mounted_source(mount: &Path) -> Option<String> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let wanted = escape_mount_path(&mount.to_string_lossy());
    table.lines().rev().find_map(|line| {
        // id parent major:minor root mountpoint options [optional…] - type source …
        let mut fields = line.split(' ');
        let point = fields.nth(4)?;
        if point != wanted {
            return None;
        }
        let after = line.split(" - ").nth(1)?;
        after.split(' ').nth(1).map(str::to_string)
    })
}

/// A path as the kernel writes it in mountinfo: space, tab, newline and
/// backslash in octal.
fn escape_mount_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            ' ' => out.push_str("\\040"),
            '\t' => out.push_str("\\011"),
            '\n' => out.push_str("\\012"),
            '\\' => out.push_str("\\134"),
            c => out.push(c),
        }
    }
    out
}

/// The loop device `image` is attached to, if any (`losetup -j`).
fn attached_device(image: &Path) -> Result<Option<String>, VolumeError> {
    let listed = run("losetup", &["-j".as_ref(), image.as_os_str()])?;
    // "/dev/loop3: [2049]:1234 (/path/data.img)"
    Ok(listed
        .lines()
        .find_map(|line| line.split_once(':').map(|(dev, _)| dev.trim().to_string())))
}

impl Volume {
    /// Mounts the volume whose image is [`image_for`]`(mount)` at `mount`,
    /// making it (`initial_bytes`, XFS) when there is none yet. A volume
    /// left attached or mounted by an earlier Torpor is taken over as it
    /// is; one whose image is bigger than its filesystem (a grow cut
    /// short) is grown to the image.
    pub fn open(mount: &Path, initial_bytes: u64) -> Result<Volume, VolumeError> {
        let image = image_for(mount);
        if !image.exists() {
            Self::make(&image, mount, initial_bytes)?;
        }
        let device = match attached_device(&image)? {
            Some(device) => device,
            None => run(
                "losetup",
                &["-f".as_ref(), "--show".as_ref(), image.as_os_str()],
            )?
            .trim()
            .to_string(),
        };
        let volume = Volume {
            image,
            mount: mount.to_path_buf(),
            device,
            released: false,
        };
        match mounted_source(mount) {
            Some(source) if source == volume.device => {}
            Some(other) => {
                return Err(failed(
                    format!("mounting {}", mount.display()),
                    format!("{other} is mounted there already"),
                ))
            }
            None => {
                std::fs::create_dir_all(mount)
                    .map_err(|e| failed(format!("creating {}", mount.display()), e))?;
                run(
                    "mount",
                    &[
                        "-t".as_ref(),
                        "xfs".as_ref(),
                        volume.device.as_ref(),
                        mount.as_os_str(),
                    ],
                )?;
            }
        }
        volume.fit_to_image()?;
        Ok(volume)
    }

    /// Makes the image: a sparse file of `bytes` with XFS on it. Refuses
    /// when `mount` already holds files: mounting over them would hide a
    /// datadir made before the service had a volume.
    fn make(image: &Path, mount: &Path, bytes: u64) -> Result<(), VolumeError> {
        let holds_files = std::fs::read_dir(mount).is_ok_and(|mut dir| dir.next().is_some());
        if holds_files {
            return Err(failed(
                format!("making a volume for {}", mount.display()),
                "the directory already holds files outside a volume (README, \"Storage\", says how to move them onto one)",
            ));
        }
        if let Some(parent) = image.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| failed(format!("creating {}", parent.display()), e))?;
        }
        // Made under a temporary name, renamed once it has a filesystem:
        // an image file always holds one.
        let partial = image.with_extension("img.partial");
        let made = std::fs::File::create(&partial)
            .and_then(|file| file.set_len(bytes))
            .map_err(|e| failed(format!("creating {}", partial.display()), e))
            .and_then(|()| run("mkfs.xfs", &["-q".as_ref(), partial.as_os_str()]).map(drop))
            .and_then(|()| {
                std::fs::rename(&partial, image)
                    .map_err(|e| failed(format!("renaming {}", partial.display()), e))
            });
        if made.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        made
    }

    /// Where it is mounted.
    pub fn mount(&self) -> &Path {
        &self.mount
    }

    /// Its image file.
    pub fn image(&self) -> &Path {
        &self.image
    }

    /// Its loop device.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// The image's size, bytes: what the volume was made or grown to.
    pub fn size(&self) -> Result<u64, VolumeError> {
        std::fs::metadata(&self.image)
            .map(|meta| meta.len())
            .map_err(|e| failed(format!("reading {}", self.image.display()), e))
    }

    /// Grows the volume to `bytes` while it is mounted and in use.
    pub fn grow(&self, bytes: u64) -> Result<(), VolumeError> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.image)
            .map_err(|e| failed(format!("opening {}", self.image.display()), e))?;
        let len = file
            .metadata()
            .map_err(|e| failed(format!("reading {}", self.image.display()), e))?
            .len();
        if bytes > len {
            file.set_len(bytes)
                .map_err(|e| failed(format!("extending {}", self.image.display()), e))?;
        }
        self.fit_to_image()
    }

    /// Brings the loop device and the filesystem up to the image's size.
    fn fit_to_image(&self) -> Result<(), VolumeError> {
        run("losetup", &["-c".as_ref(), self.device.as_ref()])?;
        run("xfs_growfs", &[self.mount.as_os_str()]).map(drop)
    }

    /// Unmounts and detaches (the image stays). Its server must have
    /// stopped: a busy mount is not forced.
    pub fn release(&mut self) -> Result<(), VolumeError> {
        if self.released {
            return Ok(());
        }
        if mounted_source(&self.mount).as_deref() == Some(self.device.as_str()) {
            run("umount", &[self.mount.as_os_str()])?;
        }
        // Only while it still holds this image (when the image is still
        // there to ask about): a device released by someone else may
        // already serve another file.
        let ours = !self.image.exists()
            || run("losetup", &["-j".as_ref(), self.image.as_os_str()])?
                .lines()
                .any(|line| line.split(':').next() == Some(self.device.as_str()));
        if ours {
            run("losetup", &["-d".as_ref(), self.device.as_ref()])?;
            self.wait_detached();
        }
        self.released = true;
        Ok(())
    }

    /// Waits a little until the device lets go of the image: `losetup -d`
    /// on a device that something else has open at that moment (another
    /// `losetup` listing devices, a prober) only marks it to be released
    /// at its last close, and a start right after would find the image
    /// still attached to a device on its way out.
    fn wait_detached(&self) {
        let deadline = std::time::Instant::now() + DETACH_WAIT;
        while let Ok(Some(device)) = attached_device(&self.image) {
            if device != self.device {
                return; // attached again since, by someone else
            }
            if std::time::Instant::now() >= deadline {
                tracing::debug!(device, image = %self.image.display(), "still attached after losetup -d");
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Releases the volume and deletes its image: its data is gone.
    pub fn remove(mut self) -> Result<(), VolumeError> {
        self.release()?;
        match std::fs::remove_file(&self.image) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(failed(format!("removing {}", self.image.display()), e))
            }
            _ => Ok(()),
        }
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        if let Err(e) = self.release() {
            tracing::warn!(
                mount = %self.mount.display(),
                device = %self.device,
                "the volume stays mounted: {e}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths_are_escaped_as_mountinfo_writes_them() {
        assert_eq!(escape_mount_path("/a b\\c"), "/a\\040b\\134c");
        assert_eq!(escape_mount_path("/plain/path"), "/plain/path");
    }

    #[test]
    fn the_image_sits_next_to_the_mount() {
        assert_eq!(
            image_for(Path::new("/state/services/s/data")),
            PathBuf::from("/state/services/s/data.img")
        );
    }

    /// A real volume: made, mounted, grown while a file is open on it,
    /// released, and found again with its file.
    #[test]
    fn a_volume_grows_while_mounted_and_comes_back() {
        if let Err(why) = possible() {
            eprintln!("skipped: {why}");
            return;
        }
        let dir = tempfile::tempdir().expect("dir");
        let mount = dir.path().join("data");
        let mib = 1 << 20;
        let volume = Volume::open(&mount, 320 * mib).expect("volume");
        let before = crate::storage::usage::of(&mount).expect("usage");
        std::fs::write(mount.join("kept"), b"rows").expect("write");
        let writing = std::fs::File::create(mount.join("open")).expect("open file");
        volume.grow(640 * mib).expect("grow");
        let after = crate::storage::usage::of(&mount).expect("usage");
        assert!(
            after.size >= before.size + 300 * mib,
            "{before:?} -> {after:?}"
        );
        drop(writing);
        drop(volume);
        assert_eq!(mounted_source(&mount), None, "still mounted");
        let mut again = Volume::open(&mount, 320 * mib).expect("found again");
        assert_eq!(std::fs::read(mount.join("kept")).expect("kept"), b"rows");
        assert!(crate::storage::usage::of(&mount).expect("usage").size >= after.size);
        again.release().expect("release");
        assert_eq!(attached_device(&image_for(&mount)).expect("losetup"), None);
    }
}
