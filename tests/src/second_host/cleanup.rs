//! Removing a second host: what its drop does once dockerd has stopped
//! (or refused to), and the sweep of hosts whose test process died
//! before its drops ran (a SIGKILL, a crash, a timeout of the runner).
//!
//! A host leaves things in four places, all named after it
//! (`torpor-sh-<pid>-<slot>`): the namespace in `/var/run/netns` with the
//! veth pair and every process inside it (dockerd, containerd, the shims,
//! fuse-overlayfs, the containers' processes); mounts under its folder
//! (fuse-overlayfs layers and container roots); its containers' cgroups,
//! grouped under a parent of its name in every hierarchy; the folder.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{link_exists, run, veth_names, NETNS_DIR, PREFIX};

/// Kills what still runs in the namespace, detaches what is still
/// mounted under `dir`, and removes the containers' cgroups, the veth
/// pair, the namespace and `dir`. Everything is tried; what fails is
/// reported, not fatal.
pub(super) fn teardown(netns: &str, slot: u8, dir: Option<&Path>) {
    // Processes may fork while we kill: a few rounds until none is left.
    for _ in 0..10 {
        let pids = run("ip", &["netns", "pids", netns]).unwrap_or_default();
        let pids: Vec<libc::pid_t> = pids
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            // SAFETY: kill(2) has no memory-safety preconditions; the pids
            // are those `ip` just found in this host's own namespace.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if let Some(dir) = dir {
        unmount_under(dir);
    }
    remove_cgroups(netns);
    let (outside, _) = veth_names(slot);
    if link_exists(&outside) {
        if let Err(e) = run("ip", &["link", "del", &outside]) {
            eprintln!("cannot remove veth {outside}: {e}");
        }
    }
    if Path::new(NETNS_DIR).join(netns).exists() {
        if let Err(e) = run("ip", &["netns", "delete", netns]) {
            eprintln!("cannot remove netns {netns}: {e}");
        }
    }
    if let Some(dir) = dir {
        if let Err(e) = std::fs::remove_dir_all(dir) {
            eprintln!("cannot remove {}: {e}", dir.display());
        }
    }
}

/// Removes what second hosts of dead test processes left: namespaces,
/// cgroups and folders. Those of live processes, this one included, are
/// left alone: they may be in use.
pub(super) fn sweep_leftovers() {
    let mut hosts: Vec<String> = names_in(Path::new(NETNS_DIR));
    for hierarchy in cgroup_hierarchies() {
        hosts.extend(names_in(&hierarchy));
    }
    hosts.sort();
    hosts.dedup();
    for name in hosts {
        if let Some((pid, slot)) = parse_name(&name) {
            if !alive(pid) {
                eprintln!("removing the leftover second host {name}");
                teardown(&name, slot, None);
            }
        }
    }
    // Folders are named `<host>.<random>` (tempfile's suffix).
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let owner = name.split_once('.').and_then(|(host, _)| parse_name(host));
        if owner.is_some_and(|(pid, _)| !alive(pid)) {
            eprintln!("removing the leftover folder {name}");
            let dir = entry.path();
            unmount_under(&dir);
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                eprintln!("cannot remove {}: {e}", dir.display());
            }
        }
    }
}

/// The pid and slot in a name `torpor-sh-<pid>-<slot>`.
fn parse_name(name: &str) -> Option<(u32, u8)> {
    let (pid, slot) = name.strip_prefix(PREFIX)?.split_once('-')?;
    Some((pid.parse().ok()?, slot.parse().ok()?))
}

/// Whether a process `pid` exists. A test process whose pid was reused
/// looks alive: its leftovers wait for a later sweep.
fn alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// Names in `dir` that start like a second host's.
fn names_in(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(PREFIX))
        .collect()
}

/// Where the cgroup hierarchies are mounted (one per controller under
/// cgroup v1, one in all under v2).
fn cgroup_hierarchies() -> Vec<PathBuf> {
    mounts()
        .into_iter()
        .filter(|(_, fstype)| fstype == "cgroup" || fstype == "cgroup2")
        .map(|(point, _)| point)
        .collect()
}

/// Removes the cgroup `/<name>` (the host's dockerd runs its containers
/// under it, see `--cgroup-parent`) and everything below it, in every
/// hierarchy. Only empty cgroups go: run after killing the processes.
fn remove_cgroups(name: &str) {
    for hierarchy in cgroup_hierarchies() {
        let top = hierarchy.join(name);
        if !top.is_dir() {
            continue;
        }
        let mut dirs = Vec::new();
        collect_dirs(&top, &mut dirs);
        // Children before parents.
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for dir in dirs {
            if let Err(e) = std::fs::remove_dir(&dir) {
                eprintln!("cannot remove cgroup {}: {e}", dir.display());
            }
        }
    }
}

fn collect_dirs(dir: &Path, into: &mut Vec<PathBuf>) {
    into.push(dir.to_path_buf());
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&entry.path(), into);
            }
        }
    }
}

/// Lazily unmounts everything mounted at or under `dir`, deepest first
/// (fuse-overlayfs layers and container roots of a dockerd that died
/// without unmounting them), so the folder can be removed.
fn unmount_under(dir: &Path) {
    let mut points: Vec<PathBuf> = mounts()
        .into_iter()
        .map(|(point, _)| point)
        .filter(|point| point.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for point in points {
        let Ok(c_path) = std::ffi::CString::new(point.as_os_str().as_encoded_bytes()) else {
            continue;
        };
        // SAFETY: umount2 reads a NUL-terminated path that outlives the
        // call.
        let rc = unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) };
        if rc != 0 {
            eprintln!(
                "cannot unmount {}: {}",
                point.display(),
                std::io::Error::last_os_error()
            );
        }
    }
}

/// This process's mounts: mount point and filesystem type of each.
fn mounts() -> Vec<(PathBuf, String)> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|info| info.lines().filter_map(parse_mountinfo_line).collect())
        .unwrap_or_default()
}

/// One line of mountinfo: the mount point is the 5th field; the type
/// comes first after the ` - ` that ends the optional fields.
fn parse_mountinfo_line(line: &str) -> Option<(PathBuf, String)> {
    let (before, after) = line.split_once(" - ")?;
    let point = before.split(' ').nth(4)?;
    let fstype = after.split(' ').next()?;
    Some((
        PathBuf::from(unescape_mount_point(point)),
        fstype.to_string(),
    ))
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_mount_point(raw: &str) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|digits| {
            let digits = std::str::from_utf8(digits).ok()?;
            u8::from_str_radix(digits, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_give_back_the_owner_and_the_slot() {
        assert_eq!(parse_name("torpor-sh-4242-17"), Some((4242, 17)));
        assert_eq!(parse_name("torpor-sh-4242"), None);
        assert_eq!(parse_name("torpor-sh-x-1"), None);
        assert_eq!(parse_name("torpor-sh-4242-256"), None);
        assert_eq!(parse_name("other-4242-17"), None);
    }

    #[test]
    fn mountinfo_lines_give_the_point_and_type() {
        // Read on the machine the harness was written on.
        let line = "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory";
        assert_eq!(
            parse_mountinfo_line(line),
            Some((PathBuf::from("/sys/fs/cgroup/memory"), "cgroup".to_string()))
        );
        // proc(5)'s example: optional fields before the separator.
        let line = "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue";
        assert_eq!(
            parse_mountinfo_line(line),
            Some((PathBuf::from("/mnt2"), "ext3".to_string()))
        );
        let spaced = r"36 35 98:0 / /tmp/a\040b rw - fuse.fuse-overlayfs fuse-overlayfs rw";
        assert_eq!(
            parse_mountinfo_line(spaced),
            Some((PathBuf::from("/tmp/a b"), "fuse.fuse-overlayfs".to_string()))
        );
        assert_eq!(parse_mountinfo_line("garbage"), None);
    }

    #[test]
    fn mount_points_are_unescaped() {
        assert_eq!(unescape_mount_point(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape_mount_point(r"/tmp/a\134b"), r"/tmp/a\b");
        assert_eq!(unescape_mount_point(r"/tmp/plain\"), r"/tmp/plain\");
    }
}
