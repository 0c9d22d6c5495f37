//! A spawned proxy process (HAProxy, Torpor) that is stopped when dropped,
//! and the wait for it to accept connections.
//!
//! Children run in their own process group, so a Ctrl-C typed at the
//! terminal reaches only us and we stop them in order; and with
//! `PR_SET_PDEATHSIG`, so they die with us if we are killed outright.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::{Origin, Target};
use crate::interrupt::Stop;

/// A running child process with its private folder (config, output log).
#[derive(Debug)]
pub struct ChildProcess {
    what: &'static str,
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    /// Removed after the child has stopped (fields drop after `drop`).
    _dir: tempfile::TempDir,
}

/// Why a spawned process is not serving.
#[derive(Debug)]
pub enum NotServing {
    /// It exited; its status and the end of its output.
    Exited(String),
    /// It runs but no MySQL handshake came within the timeout.
    Silent(String),
    /// The user asked us to stop.
    Interrupted,
}

impl ChildProcess {
    /// Starts `command` (stdout and stderr go to `dir/output.log`).
    pub fn spawn(
        what: &'static str,
        mut command: Command,
        dir: tempfile::TempDir,
        addr: SocketAddr,
    ) -> anyhow::Result<ChildProcess> {
        let log = dir.path().join("output.log");
        let out =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone().context("duplicating the log file handle")?;
        command.stdin(Stdio::null()).stdout(out).stderr(err);
        tie_to_us(&mut command);
        let program = command.get_program().to_string_lossy().into_owned();
        let child = command
            .spawn()
            .with_context(|| format!("starting {what} ({program})"))?;
        Ok(ChildProcess {
            what,
            child,
            addr,
            log,
            _dir: dir,
        })
    }

    /// Waits until a MySQL handshake arrives through the child's port.
    pub fn wait_serving(&mut self, timeout: Duration, stop: &Stop) -> Result<(), NotServing> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(NotServing::Exited(format!(
                    "{} exited ({status}) before accepting connections on {}; its output:\n{}",
                    self.what,
                    self.addr,
                    self.log_tail()
                )));
            }
            // A handshake from a child that has exited came from someone
            // else on the port (another run picked the same free port):
            // the exit check above runs again before it counts.
            if torpor::scaler::process::handshake_arrives(self.addr) {
                if let Ok(None) = self.child.try_wait() {
                    return Ok(());
                }
                continue;
            }
            if stop.is_set() {
                return Err(NotServing::Interrupted);
            }
            if Instant::now() > deadline {
                return Err(NotServing::Silent(format!(
                    "{} (pid {}) did not answer with a MySQL handshake on {} within {}; its output:\n{}",
                    self.what,
                    self.child.id(),
                    self.addr,
                    humantime::format_duration(timeout),
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls `ready` every `every` until it holds (a started process
    /// getting ready beyond its handshake: its admin API, its services, a
    /// warm pool). Fails when the process exits, the run is interrupted,
    /// or `limit` has passed since `started`: then the error says `what`
    /// did not happen, with the end of the process's output.
    pub fn wait_until(
        &mut self,
        ready: &mut dyn FnMut() -> bool,
        what: &str,
        (started, limit): (Instant, Duration),
        every: Duration,
        stop: &Stop,
    ) -> anyhow::Result<()> {
        while !ready() {
            if let Some(report) = self.exit_report() {
                bail!("{report}");
            }
            if stop.is_set() {
                bail!("interrupted while starting {}", self.what);
            }
            if started.elapsed() > limit {
                bail!(
                    "{what} within {}; its output:\n{}",
                    humantime::format_duration(limit),
                    self.log_tail()
                );
            }
            std::thread::sleep(every);
        }
        Ok(())
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// This process as a target.
    pub fn target(&self, name: &str, origin: Origin) -> Target {
        Target {
            name: name.to_string(),
            host: self.addr.ip().to_string(),
            port: self.addr.port(),
            pid: Some(self.pid()),
            origin,
            admin: None,
            tls_ca: None,
        }
    }

    /// The last lines of the child's output, or a note that there is none.
    pub fn log_tail(&self) -> String {
        tail(&self.log, 20)
    }

    /// `None` while it runs; once it has exited, how and its last output.
    pub fn exit_report(&mut self) -> Option<String> {
        let status = self.child.try_wait().ok()??;
        Some(format!(
            "{} (pid {}) exited ({status}) during the run; its output:\n{}",
            self.what,
            self.child.id(),
            tail(&self.log, 10)
        ))
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill only sends a signal to our own child.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes a child ours alone: its own process group (a Ctrl-C at the
/// terminal reaches only us, and we stop children in order) and killed
/// when the thread that spawned it dies (nothing outlives a killed suite).
/// Spawn from a long-lived thread: the signal follows the spawning thread.
pub fn tie_to_us(command: &mut Command) {
    // SAFETY: runs in the child between fork and exec and only calls
    // setpgid and prctl, both async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            libc::setpgid(0, 0);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// The last `lines` lines of a file, indented, or "(no output)".
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    if all.is_empty() {
        return "  (no output)".to_string();
    }
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|line| format!("  {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Where a program is, installing the Debian package that holds it when
/// it is missing (so that one command works on a fresh machine), or an
/// error naming that package. The benchmark is a tool a person runs at a
/// terminal, so it may install what it measures; the `torpor` server
/// never installs anything.
pub fn require_program(name: &'static str, package: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = torpor::scaler::process::find_program(&[name]) {
        return Ok(path);
    }
    if let Err(e) = apt_install(package) {
        bail!("{name} not found in PATH or the sbin folders and not installed: {e} (Debian: apt-get install {package})");
    }
    torpor::scaler::process::find_program(&[name]).with_context(|| {
        format!("{name} is still missing after installing {package} (Debian: apt-get install {package})")
    })
}

/// `apt-get install -y package`, as root or with `sudo -n` (nothing is
/// asked interactively); says on stderr what it installs.
fn apt_install(package: &str) -> anyhow::Result<()> {
    let find = |program: &str| {
        torpor::scaler::process::find_program(&[program])
            .with_context(|| format!("{program} is not installed"))
    };
    let apt = find("apt-get")?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let prefix: Vec<PathBuf> = if root {
        Vec::new()
    } else {
        vec![find("sudo")?, PathBuf::from("-n")]
    };
    eprintln!("torpor-bench: installing Debian's {package} package");
    for args in [vec!["update", "-qq"], vec!["install", "-y", "-qq", package]] {
        let mut command = match prefix.split_first() {
            Some((first, rest)) => {
                let mut command = Command::new(first);
                command.args(rest).arg(&apt);
                command
            }
            None => Command::new(&apt),
        };
        let status = command
            .args(&args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .status()
            .context("running apt-get")?;
        if !status.success() {
            bail!("apt-get {} failed with {status}", args.join(" "));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_that_dies_is_reported_with_its_status_and_output() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut command = Command::new("/bin/sh");
        command.args(["-c", "echo goodbye from the child; exit 3"]);
        let mut child = ChildProcess::spawn("haproxy", command, dir, ([127, 0, 0, 1], 9).into())
            .expect("sh starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        let report = loop {
            if let Some(report) = child.exit_report() {
                break report;
            }
            assert!(Instant::now() < deadline, "sh did not exit");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(report.contains("haproxy (pid"), "{report}");
        assert!(report.contains("exit status: 3"), "{report}");
        assert!(report.contains("goodbye from the child"), "{report}");
    }

    #[test]
    fn a_running_child_has_no_exit_report_and_is_stopped_on_drop() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut command = Command::new("/bin/sleep");
        command.arg("30");
        let mut child = ChildProcess::spawn("torpor", command, dir, ([127, 0, 0, 1], 9).into())
            .expect("sleep starts");
        let pid = child.pid();
        assert_eq!(child.exit_report(), None);
        drop(child);
        assert!(!crate::procfs::is_running(pid), "the child was stopped");
    }
}
