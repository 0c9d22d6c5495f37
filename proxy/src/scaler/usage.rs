//! What a backend uses, read from the kernel's own accounting: the
//! cgroup a container runs in (v1 or v2), or `/proc` for a process that
//! has no cgroup of its own.
//!
//! The policy samples every active service every 200 ms, so a reading
//! must cost a few file reads, never an engine round trip: Docker's stats
//! API answers once a second at best and costs the engine a goroutine per
//! call. Written by hand rather than with `cgroups-rs`: Torpor reads six
//! numbers from files whose paths it already knows, and that crate is made
//! for creating and managing hierarchies (with their own dependencies).

use std::path::{Path, PathBuf};

/// One reading of a backend's resource use, with the limits it runs
/// under.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Usage {
    /// CPU time used, in nanoseconds: a counter since the backend (or its
    /// cgroup) started; rates come from the difference of two readings.
    pub cpu_nanos: u64,
    /// Memory charged to the backend, page cache included, in bytes.
    pub memory_bytes: u64,
    /// Memory it holds that the kernel cannot simply drop (charged memory
    /// less inactive file cache, as `docker stats` counts it), in bytes.
    pub working_set_bytes: u64,
    /// Its CPU limit in CPUs; `None`: unlimited.
    pub cpu_limit: Option<f64>,
    /// Its memory limit in bytes; `None`: unlimited.
    pub memory_limit_bytes: Option<u64>,
}

/// Where a backend's usage is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageSource {
    /// A cgroup v1 hierarchy: one directory per controller.
    CgroupV1 {
        /// The `cpuacct` controller's directory (CPU time).
        cpuacct: PathBuf,
        /// The `cpu` controller's directory (CFS quota).
        cpu: PathBuf,
        /// The `memory` controller's directory.
        memory: PathBuf,
    },
    /// A cgroup v2 directory (all controllers in one).
    CgroupV2(PathBuf),
    /// A process without a cgroup of its own: its `/proc` entries, no
    /// limits.
    Process(u32),
}

/// A v1 memory limit at or above this is "none": the kernel reports
/// `PAGE_COUNTER_MAX` pages in bytes (9223372036854771712 on x86_64).
const V1_UNLIMITED: u64 = 1 << 62;

impl UsageSource {
    /// The cgroup process `pid` runs in, found through this process's
    /// mount table; `None` when neither a v1 hierarchy with the `cpuacct`
    /// and `memory` controllers nor a v2 one with `cpu.stat` holds it.
    pub fn cgroup_of(pid: u32) -> Option<UsageSource> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        let membership = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let source = locate(&mountinfo, &membership)?;
        match &source {
            UsageSource::CgroupV1 {
                cpuacct, memory, ..
            } => (cpuacct.join("cpuacct.usage").exists()
                && memory.join("memory.usage_in_bytes").exists())
            .then_some(source),
            UsageSource::CgroupV2(dir) => dir.join("cpu.stat").exists().then_some(source),
            UsageSource::Process(_) => Some(source),
        }
    }

    /// Reads the backend's usage now.
    pub fn read(&self) -> std::io::Result<Usage> {
        match self {
            UsageSource::CgroupV1 {
                cpuacct,
                cpu,
                memory,
            } => read_v1(cpuacct, cpu, memory),
            UsageSource::CgroupV2(dir) => read_v2(dir),
            UsageSource::Process(pid) => read_process(*pid),
        }
    }
}

/// The cgroup `membership` (a `/proc/<pid>/cgroup`) names, as a path
/// under the mounts `mountinfo` (a `/proc/self/mountinfo`) lists. v1 is
/// preferred where the controllers are mounted there: a hybrid host
/// mounts an empty v2 hierarchy beside them.
fn locate(mountinfo: &str, membership: &str) -> Option<UsageSource> {
    let mounts: Vec<Mount> = mountinfo.lines().filter_map(Mount::parse).collect();
    let v1_dir = |controller: &str| -> Option<PathBuf> {
        let mount = mounts
            .iter()
            .find(|m| m.v1_controllers().any(|c| c == controller))?;
        let path = membership.lines().find_map(|line| {
            let (_, rest) = line.split_once(':')?;
            let (controllers, path) = rest.split_once(':')?;
            controllers
                .split(',')
                .any(|c| c == controller)
                .then_some(path)
        })?;
        mount.dir_of(path)
    };
    if let (Some(cpuacct), Some(memory)) = (v1_dir("cpuacct"), v1_dir("memory")) {
        // The cpu controller (the quota) may be mounted apart from
        // cpuacct, or not at all; then there is no CPU limit to read.
        let cpu = v1_dir("cpu").unwrap_or_else(|| cpuacct.clone());
        return Some(UsageSource::CgroupV1 {
            cpuacct,
            cpu,
            memory,
        });
    }
    let unified = mounts.iter().find(|m| m.fstype == "cgroup2")?;
    let path = membership
        .lines()
        .find_map(|line| line.strip_prefix("0::"))?;
    Some(UsageSource::CgroupV2(unified.dir_of(path)?))
}

/// Where each cgroup hierarchy of this host is mounted: the v1 ones by
/// their controllers, and the v2 one (`None` where there is none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hierarchies {
    /// v1: (controllers of the hierarchy, its mount point).
    pub v1: Vec<(Vec<String>, PathBuf)>,
    /// The v2 hierarchy's mount point.
    pub v2: Option<PathBuf>,
}

impl Hierarchies {
    /// This host's, from `/proc/self/mountinfo` (only hierarchies mounted
    /// from their root: a container's view of a subtree is not one
    /// Torpor can make cgroups at the top of).
    pub fn of_this_host() -> Hierarchies {
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        Hierarchies::parse(&text)
    }

    fn parse(mountinfo: &str) -> Hierarchies {
        let mut found = Hierarchies::default();
        for mount in mountinfo.lines().filter_map(Mount::parse) {
            if mount.root != "/" {
                continue;
            }
            match mount.fstype {
                "cgroup" => found.v1.push((
                    mount.v1_controllers().map(str::to_string).collect(),
                    PathBuf::from(mount.point),
                )),
                "cgroup2" if found.v2.is_none() => found.v2 = Some(PathBuf::from(mount.point)),
                _ => {}
            }
        }
        found
    }

    /// The v1 mount point of `controller`.
    pub fn v1_mount(&self, controller: &str) -> Option<&Path> {
        self.v1
            .iter()
            .find(|(controllers, _)| controllers.iter().any(|c| c == controller))
            .map(|(_, point)| point.as_path())
    }
}

/// One line of `/proc/self/mountinfo`, the fields `locate` needs.
struct Mount<'a> {
    /// The directory of the filesystem that is mounted (a cgroup path).
    root: &'a str,
    /// Where it is mounted.
    point: &'a str,
    fstype: &'a str,
    /// Its super options: a v1 hierarchy lists its controllers here.
    options: &'a str,
}

impl<'a> Mount<'a> {
    fn parse(line: &'a str) -> Option<Mount<'a>> {
        // "id parent major:minor root point options [optional…] - fstype source super"
        let (left, right) = line.split_once(" - ")?;
        let mut left = left.split(' ');
        let root = left.nth(3)?;
        let point = left.next()?;
        let mut right = right.split(' ');
        let fstype = right.next()?;
        let options = right.nth(1).unwrap_or("");
        Some(Mount {
            root,
            point,
            fstype,
            options,
        })
    }

    fn v1_controllers(&self) -> impl Iterator<Item = &'a str> {
        let v1 = self.fstype == "cgroup";
        self.options.split(',').filter(move |_| v1)
    }

    /// Where cgroup `path` lies under this mount; `None` when the mount
    /// shows only another part of the hierarchy.
    fn dir_of(&self, path: &str) -> Option<PathBuf> {
        let root = self.root.trim_end_matches('/');
        let below = path.strip_prefix(root)?;
        Some(Path::new(self.point).join(below.trim_start_matches('/')))
    }
}

fn read_v1(cpuacct: &Path, cpu: &Path, memory: &Path) -> std::io::Result<Usage> {
    let cpu_nanos = read_number(&cpuacct.join("cpuacct.usage"))?;
    let memory_bytes = read_number(&memory.join("memory.usage_in_bytes"))?;
    let inactive = stat_field(&memory.join("memory.stat"), "total_inactive_file").unwrap_or(0);
    let memory_limit_bytes = read_number(&memory.join("memory.limit_in_bytes"))
        .ok()
        .filter(|&limit| limit < V1_UNLIMITED);
    let quota = read_text(&cpu.join("cpu.cfs_quota_us")).ok();
    let period = read_number(&cpu.join("cpu.cfs_period_us")).ok();
    let cpu_limit = match (quota.as_deref().map(str::parse::<i64>), period) {
        (Some(Ok(quota)), Some(period)) if quota > 0 && period > 0 => {
            Some(quota as f64 / period as f64)
        }
        _ => None,
    };
    Ok(Usage {
        cpu_nanos,
        memory_bytes,
        working_set_bytes: memory_bytes.saturating_sub(inactive),
        cpu_limit,
        memory_limit_bytes,
    })
}

fn read_v2(dir: &Path) -> std::io::Result<Usage> {
    let cpu_micros = stat_field(&dir.join("cpu.stat"), "usage_usec")
        .ok_or_else(|| invalid(&dir.join("cpu.stat"), "no usage_usec"))?;
    let memory_bytes = read_number(&dir.join("memory.current"))?;
    let inactive = stat_field(&dir.join("memory.stat"), "inactive_file").unwrap_or(0);
    let memory_limit_bytes = read_text(&dir.join("memory.max"))
        .ok()
        .and_then(|text| text.parse().ok());
    let cpu_limit = read_text(&dir.join("cpu.max")).ok().and_then(|text| {
        let (quota, period) = text.split_once(' ')?;
        let quota: f64 = quota.parse().ok()?;
        let period: f64 = period.parse().ok()?;
        (period > 0.0).then_some(quota / period)
    });
    Ok(Usage {
        cpu_nanos: cpu_micros.saturating_mul(1000),
        memory_bytes,
        working_set_bytes: memory_bytes.saturating_sub(inactive),
        cpu_limit,
        memory_limit_bytes,
    })
}

fn read_process(pid: u32) -> std::io::Result<Usage> {
    let stat_path = PathBuf::from(format!("/proc/{pid}/stat"));
    let stat = read_text(&stat_path)?;
    let ticks = process_cpu_ticks(&stat).ok_or_else(|| invalid(&stat_path, "no utime/stime"))?;
    // SAFETY: sysconf has no preconditions; it only reads a constant.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = u64::try_from(per_second)
        .ok()
        .filter(|&t| t > 0)
        .unwrap_or(100);
    let status_path = PathBuf::from(format!("/proc/{pid}/status"));
    let rss_kib =
        stat_field(&status_path, "VmRSS:").ok_or_else(|| invalid(&status_path, "no VmRSS"))?;
    let rss = rss_kib.saturating_mul(1024);
    Ok(Usage {
        cpu_nanos: ticks.saturating_mul(1_000_000_000 / per_second),
        memory_bytes: rss,
        working_set_bytes: rss,
        cpu_limit: None,
        memory_limit_bytes: None,
    })
}

/// utime + stime of a `/proc/<pid>/stat` line, in clock ticks. The
/// command name (field 2) may hold spaces and parentheses: fields are
/// counted after its last `)`.
fn process_cpu_ticks(stat: &str) -> Option<u64> {
    let (_, after_name) = stat.rsplit_once(')')?;
    // After the name: state is field 3, utime field 14, stime field 15.
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime.saturating_add(stime))
}

fn read_text(path: &Path) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(path)?.trim().to_string())
}

fn read_number(path: &Path) -> std::io::Result<u64> {
    let text = read_text(path)?;
    text.parse()
        .map_err(|_| invalid(path, &format!("not a number: {text:?}")))
}

/// The number after `key` on its line of a "key value" file
/// (`memory.stat`, `cpu.stat`, `/proc/<pid>/status`).
fn stat_field(path: &Path, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        if words.next()? != key {
            return None;
        }
        words.next()?.parse().ok()
    })
}

fn invalid(path: &Path, what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("{}: {what}", path.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine's layout: v1 controllers each on their own mount, an
    /// empty v2 hierarchy beside them (Debian 12, Docker 20.10).
    const HYBRID_MOUNTS: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn a_v1_container_is_found_under_each_controller() {
        let membership = "\
5:memory:/docker/abc
3:cpuacct:/docker/abc
2:cpu:/docker/abc
0::/
";
        assert_eq!(
            locate(HYBRID_MOUNTS, membership),
            Some(UsageSource::CgroupV1 {
                cpuacct: "/sys/fs/cgroup/cpuacct/docker/abc".into(),
                cpu: "/sys/fs/cgroup/cpu/docker/abc".into(),
                memory: "/sys/fs/cgroup/memory/docker/abc".into(),
            })
        );
    }

    #[test]
    fn joint_v1_controllers_share_a_directory() {
        let mounts = "\
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
";
        let membership = "4:cpu,cpuacct:/system.slice/docker-abc.scope\n9:memory:/system.slice/docker-abc.scope\n";
        let Some(UsageSource::CgroupV1 { cpuacct, cpu, .. }) = locate(mounts, membership) else {
            panic!("not found");
        };
        assert_eq!(
            cpuacct,
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/system.slice/docker-abc.scope")
        );
        assert_eq!(cpu, cpuacct);
    }

    #[test]
    fn a_v2_host_uses_the_unified_hierarchy() {
        let mounts = "25 20 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let membership = "0::/system.slice/docker-abc.scope\n";
        assert_eq!(
            locate(mounts, membership),
            Some(UsageSource::CgroupV2(
                "/sys/fs/cgroup/system.slice/docker-abc.scope".into()
            ))
        );
    }

    #[test]
    fn a_mount_of_a_subtree_is_followed_and_others_are_not_guessed() {
        // Inside a container: the hierarchy is mounted from its own cgroup.
        let mounts = "25 20 0:22 /docker/outer /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            locate(mounts, "0::/docker/outer/inner\n"),
            Some(UsageSource::CgroupV2("/sys/fs/cgroup/inner".into()))
        );
        assert_eq!(locate(mounts, "0::/elsewhere\n"), None);
        assert_eq!(locate("", "0::/\n"), None);
        assert_eq!(locate("garbage\n", "garbage\n"), None);
    }

    #[test]
    fn hierarchies_are_found_by_controller() {
        let found = Hierarchies::parse(HYBRID_MOUNTS);
        assert_eq!(
            found.v1_mount("memory"),
            Some(Path::new("/sys/fs/cgroup/memory"))
        );
        assert_eq!(
            found.v1_mount("cpuacct"),
            Some(Path::new("/sys/fs/cgroup/cpuacct"))
        );
        assert_eq!(found.v1_mount("pids"), None);
        assert_eq!(found.v2, Some(PathBuf::from("/sys/fs/cgroup/unified")));
    }

    #[test]
    fn process_ticks_count_after_the_name() {
        let stat = "1234 (my) proc) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0";
        assert_eq!(process_cpu_ticks(stat), Some(300));
        assert_eq!(process_cpu_ticks("1234 (x"), None);
        assert_eq!(process_cpu_ticks("1234 (x) S 1"), None);
    }

    #[test]
    fn this_process_can_be_read() {
        let usage = UsageSource::Process(std::process::id())
            .read()
            .expect("reading /proc/self");
        assert!(usage.memory_bytes > 0);
        assert_eq!(usage.memory_limit_bytes, None);
        // Any cgroup this test runs in reads too, where the host has one.
        if let Some(source) = UsageSource::cgroup_of(std::process::id()) {
            let usage = source.read().expect("reading this process's cgroup");
            assert!(usage.memory_bytes > 0 && usage.cpu_nanos > 0, "{usage:?}");
        }
    }
}
