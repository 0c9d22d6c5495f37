//! What `/proc` says about a process: CPU time (user and system, all
//! threads) from `/proc/PID/stat` and resident memory from
//! `/proc/PID/status`. CPU time spent per query is the steadiest figure
//! on a noisy machine: it does not care how long the process waited.

use std::time::Duration;

use anyhow::{bail, Context};

/// CPU time a process has used so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTimes {
    /// Time in user mode.
    pub user: Duration,
    /// Time in the kernel on its behalf.
    pub system: Duration,
}

impl CpuTimes {
    /// User plus system.
    pub fn total(&self) -> Duration {
        self.user + self.system
    }

    /// The CPU time used between `earlier` and `self`.
    pub fn since(&self, earlier: &CpuTimes) -> CpuTimes {
        CpuTimes {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }
}

/// Reads the CPU time of process `pid` (all its threads).
pub fn cpu_times(pid: u32) -> anyhow::Result<CpuTimes> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat (has process {pid} exited?)"))?;
    parse_stat(&text, clock_ticks_per_second())
}

/// Resident set size of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status (has process {pid} exited?)"))?;
    parse_rss(&text).with_context(|| format!("no VmRSS line in /proc/{pid}/status"))
}

/// Whether process `pid` exists and is not a zombie (exited, not yet
/// reaped by its parent).
pub fn is_running(pid: u32) -> bool {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = text
        .rfind(')')
        .and_then(|i| text.get(i + 1..))
        .and_then(|rest| rest.split_whitespace().next());
    !matches!(state, None | Some("Z") | Some("X"))
}

/// The 1, 5 and 15 minute load averages, to show how busy the machine was.
pub fn loadavg() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut fields = text.split_whitespace().map(|f| f.parse::<f64>().ok());
    Some([fields.next()??, fields.next()??, fields.next()??])
}

/// The number of CPUs this process may run on.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The kernel release, for the report's host section.
pub fn kernel() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_string())
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    // 100 is what Linux reports everywhere; only a failed call lands here.
    u64::try_from(ticks).ok().filter(|t| *t > 0).unwrap_or(100)
}

/// Parses utime and stime (fields 14 and 15) out of a `/proc/PID/stat`
/// line. The command name (field 2) may hold spaces and parentheses, so
/// fields are counted after its last `)`.
fn parse_stat(text: &str, ticks_per_second: u64) -> anyhow::Result<CpuTimes> {
    let after_name = text
        .rfind(')')
        .and_then(|i| text.get(i + 1..))
        .context("no command name in /proc/PID/stat")?;
    // After the name come field 3 (state) onward; utime is field 14.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |n: usize| -> anyhow::Result<u64> {
        let text = fields
            .get(n - 3)
            .with_context(|| format!("/proc/PID/stat has no field {n}"))?;
        text.parse::<u64>()
            .with_context(|| format!("/proc/PID/stat field {n} is {text:?}"))
    };
    if ticks_per_second == 0 {
        bail!("zero clock ticks per second");
    }
    let to_duration =
        |ticks: u64| Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / ticks_per_second);
    Ok(CpuTimes {
        user: to_duration(field(14)?),
        system: to_duration(field(15)?),
    })
}

fn parse_rss(text: &str) -> Option<u64> {
    let line = text.lines().find(|line| line.starts_with("VmRSS:"))?;
    let mut words = line.split_whitespace().skip(1);
    let value = words.next()?.parse::<u64>().ok()?;
    match words.next() {
        Some("kB") | None => Some(value),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        // A name with spaces and a ')' inside, as a thread may set it.
        let line = "4242 (we(ird) name) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 75 0 0 20 0 4 0 100 1000 200";
        let times = parse_stat(line, 100).expect("valid stat line");
        assert_eq!(times.user, Duration::from_millis(2500));
        assert_eq!(times.system, Duration::from_millis(750));
        assert_eq!(times.total(), Duration::from_millis(3250));
    }

    #[test]
    fn truncated_stat_lines_are_errors_not_panics() {
        assert!(parse_stat("4242 (x) S 1 2", 100).is_err());
        assert!(parse_stat("garbage", 100).is_err());
        assert!(parse_stat("", 100).is_err());
    }

    #[test]
    fn rss_is_read_in_kib() {
        let status = "Name:\tmariadbd\nVmPeak:\t  100 kB\nVmRSS:\t   81234 kB\nThreads:\t9\n";
        assert_eq!(parse_rss(status), Some(81234));
        assert_eq!(parse_rss("Name: x\n"), None);
    }

    #[test]
    fn our_own_process_can_be_read() {
        let pid = std::process::id();
        assert!(is_running(pid));
        assert!(!is_running(u32::MAX));
        cpu_times(pid).expect("our own /proc/PID/stat");
        assert!(rss_kib(pid).expect("our own /proc/PID/status") > 0);
    }

    #[test]
    fn cpu_time_differences_saturate() {
        let a = CpuTimes {
            user: Duration::from_secs(2),
            system: Duration::from_secs(1),
        };
        let b = CpuTimes {
            user: Duration::from_secs(3),
            system: Duration::from_secs(1),
        };
        assert_eq!(b.since(&a).total(), Duration::from_secs(1));
        assert_eq!(a.since(&b).total(), Duration::ZERO);
    }
}
