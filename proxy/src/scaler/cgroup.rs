//! A cgroup of Torpor's own for a `mariadbd` the process driver runs, so
//! that its CPU and memory have limits a resize can change, as a
//! container's do. Made at the top of the host's hierarchies, which needs
//! root; where Torpor cannot make one, the driver resizes the buffer pool
//! only and says so once.
//!
//! v1 (this machine's Docker 20.10 host): a directory under each of the
//! `cpu`, `cpuacct` and `memory` hierarchies. v2: one directory with the
//! `cpu` and `memory` controllers enabled above it. `mariadbd` joins it
//! as it starts ([`OwnCgroup::procs_files`]): memory it held before a
//! move would stay charged where it was (v2 never moves charges, and
//! this kernel refuses v1's `memory.move_charge_at_immigrate`), so a
//! server adopted while it runs counts less than it holds until its
//! next start.

use std::path::{Path, PathBuf};

use super::driver::Resources;
use super::usage::{Hierarchies, UsageSource};

/// The CFS period limits are expressed in (100 ms, the kernel's default).
const CFS_PERIOD_US: u64 = 100_000;

/// A cgroup made for one `mariadbd`, removed on drop (once empty).
#[derive(Debug)]
pub struct OwnCgroup {
    layout: Layout,
}

#[derive(Debug)]
enum Layout {
    V1 {
        cpu: PathBuf,
        cpuacct: PathBuf,
        memory: PathBuf,
    },
    V2(PathBuf),
}

impl OwnCgroup {
    /// Makes the cgroup `name` (e.g. `torpor.shop.1234`) at the top of
    /// this host's hierarchies; the reason when it cannot.
    pub fn create(name: &str) -> Result<OwnCgroup, String> {
        let hierarchies = Hierarchies::of_this_host();
        let v1 = |controller: &str| hierarchies.v1_mount(controller).map(|m| m.join(name));
        let layout = match (v1("cpu"), v1("cpuacct"), v1("memory")) {
            (Some(cpu), Some(cpuacct), Some(memory)) => {
                for dir in [&cpu, &cpuacct, &memory] {
                    make_dir(dir)?;
                }
                Layout::V1 {
                    cpu,
                    cpuacct,
                    memory,
                }
            }
            _ => {
                let root = hierarchies
                    .v2
                    .clone()
                    .ok_or("no cgroup hierarchy with the cpu and memory controllers is mounted")?;
                write(&root.join("cgroup.subtree_control"), "+cpu +memory")?;
                let dir = root.join(name);
                make_dir(&dir)?;
                Layout::V2(dir)
            }
        };
        Ok(OwnCgroup { layout })
    }

    /// Moves process `pid` (all its threads) into the cgroup.
    pub fn adopt(&self, pid: u32) -> Result<(), String> {
        let pid = pid.to_string();
        match &self.layout {
            Layout::V1 {
                cpu,
                cpuacct,
                memory,
            } => {
                for dir in [cpu, cpuacct, memory] {
                    write(&dir.join("cgroup.procs"), &pid)?;
                }
                Ok(())
            }
            Layout::V2(dir) => write(&dir.join("cgroup.procs"), &pid),
        }
    }

    /// The `cgroup.procs` files a process writes itself into to join.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        match &self.layout {
            Layout::V1 {
                cpu,
                cpuacct,
                memory,
            } => [cpu, cpuacct, memory]
                .into_iter()
                .map(|dir| dir.join("cgroup.procs"))
                .collect(),
            Layout::V2(dir) => vec![dir.join("cgroup.procs")],
        }
    }

    /// Sets the CPU and memory limits. The kernel refuses a memory limit
    /// below what the group holds (v1) — the caller shrinks the buffer
    /// pool first.
    pub fn limit(&self, resources: Resources) -> Result<(), String> {
        let quota = ((resources.cpus * CFS_PERIOD_US as f64).round() as u64).max(1000);
        let bytes = resources.memory_mib.saturating_mul(1024 * 1024);
        match &self.layout {
            Layout::V1 { cpu, memory, .. } => {
                write(&cpu.join("cpu.cfs_period_us"), &CFS_PERIOD_US.to_string())?;
                write(&cpu.join("cpu.cfs_quota_us"), &quota.to_string())?;
                write(&memory.join("memory.limit_in_bytes"), &bytes.to_string())
            }
            Layout::V2(dir) => {
                write(&dir.join("cpu.max"), &format!("{quota} {CFS_PERIOD_US}"))?;
                write(&dir.join("memory.max"), &bytes.to_string())
            }
        }
    }

    /// Where the group's usage is read.
    pub fn usage_source(&self) -> UsageSource {
        match &self.layout {
            Layout::V1 {
                cpu,
                cpuacct,
                memory,
            } => UsageSource::CgroupV1 {
                cpuacct: cpuacct.clone(),
                cpu: cpu.clone(),
                memory: memory.clone(),
            },
            Layout::V2(dir) => UsageSource::CgroupV2(dir.clone()),
        }
    }
}

impl Drop for OwnCgroup {
    fn drop(&mut self) {
        // rmdir fails while a process is left inside: the group stays
        // then, and the next Torpor of that name reuses it.
        let dirs: Vec<&Path> = match &self.layout {
            Layout::V1 {
                cpu,
                cpuacct,
                memory,
            } => vec![cpu, cpuacct, memory],
            Layout::V2(dir) => vec![dir],
        };
        for dir in dirs {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

fn make_dir(dir: &Path) -> Result<(), String> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("creating {}: {e}", dir.display())),
    }
}

fn write(path: &Path, value: &str) -> Result<(), String> {
    std::fs::write(path, value).map_err(|e| format!("writing {value} to {}: {e}", path.display()))
}
