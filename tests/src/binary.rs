//! The real `torpor` binary as a child process, for tests of its command
//! line, signals and logs.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use torpor::scaler::process::free_port;

use crate::{backend, torpor_binary, APP_PASSWORD, APP_USER};

/// Bound on waits that only guard against hangs.
pub const HANG_LIMIT: Duration = Duration::from_secs(60);

/// The shutdown grace the binaries get.
pub const GRACE_SECS: u64 = 20;

/// A `torpor` process with its stderr (the log) in a file; killed on drop
/// if the test did not see it exit.
pub struct Running {
    /// The process.
    pub child: Child,
    /// Where it accepts clients.
    pub addr: SocketAddr,
    log: tempfile::NamedTempFile,
}

impl Running {
    /// Starts the binary in front of the test MariaDB with `extra` flags;
    /// with `deny_io_uring`, under a seccomp filter that refuses
    /// `io_uring_setup`. Returns once it accepts connections.
    pub fn start(extra: &[&str], deny_io_uring: bool) -> Running {
        let backend = backend().addr().to_string();
        let user = format!("{APP_USER}:{APP_PASSWORD}");
        let mut args = vec!["--backend", &backend, "--user", &user];
        args.extend_from_slice(extra);
        Running::start_bare(&args, deny_io_uring)
    }

    /// Starts the binary on a free port with only `args` besides the
    /// listen address, the shutdown grace and the log level (e.g. a
    /// `--config` file that names the backend itself).
    pub fn start_bare(args: &[&str], deny_io_uring: bool) -> Running {
        let mut running = Running::spawn(args, deny_io_uring);
        running.wait_listening();
        running
    }

    /// Like [`Running::start_bare`], without waiting for it to listen (a
    /// test that expects it to fail).
    pub fn spawn(args: &[&str], deny_io_uring: bool) -> Running {
        let binary = torpor_binary();
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut command = Command::new(binary);
        command
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--shutdown-grace-secs")
            .arg(GRACE_SECS.to_string())
            .arg("--log-level")
            .arg("info")
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("MONOIO_FORCE_LEGACY_DRIVER")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap());
        if deny_io_uring {
            deny_io_uring_setup(&mut command);
        }
        let child = command.spawn().expect("the torpor binary starts");
        Running { child, addr, log }
    }

    /// Waits until the process accepts connections; panics with its log
    /// when it exits first or takes longer than [`HANG_LIMIT`].
    pub fn wait_listening(&mut self) {
        let deadline = Instant::now() + HANG_LIMIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "torpor exited with {status} before listening; log:\n{}",
                    self.log_text()
                );
            }
            if TcpStream::connect(self.addr).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "torpor never listened; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Sends SIGTERM (a graceful stop).
    pub fn sigterm(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) with our own child's pid has no memory effects.
        let sent = unsafe { libc::kill(pid, signal) };
        assert_eq!(sent, 0, "signal {signal} delivered");
    }

    /// Waits until the log holds `needle` at least `count` times; panics
    /// with the log after [`HANG_LIMIT`].
    pub fn wait_log(&self, needle: &str, count: usize) {
        let deadline = Instant::now() + HANG_LIMIT;
        loop {
            let log = self.log_text();
            if log.matches(needle).count() >= count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the log never said {needle:?} {count} time(s):\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The log as JSON objects, one per line; panics on a line that is not
    /// one.
    pub fn json_log(&self) -> Vec<serde_json::Value> {
        let text = self.log_text();
        BufReader::new(text.as_bytes())
            .lines()
            .map(|line| line.unwrap())
            .filter(|line| !line.trim().is_empty())
            .map(
                |line| match serde_json::from_str::<serde_json::Value>(&line) {
                    Ok(value) if value.is_object() => value,
                    _ => panic!("not a JSON object log line: {line}"),
                },
            )
            .collect()
    }

    /// Stops the process with SIGTERM and checks it exits 0 within the
    /// grace period (plus slack for a loaded machine).
    pub fn stop(&mut self) {
        self.sigterm();
        let status = self.wait_exit(Duration::from_secs(GRACE_SECS) + HANG_LIMIT);
        let status = status.unwrap_or_else(|| {
            panic!(
                "torpor did not exit after SIGTERM; log:\n{}",
                self.log_text()
            )
        });
        assert!(
            status.success(),
            "torpor exited with {status}; log:\n{}",
            self.log_text()
        );
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Installs, in the child between fork and exec, a seccomp filter that
/// makes `io_uring_setup` fail with EPERM, as Docker's default profile
/// does. Everything else is allowed.
pub fn deny_io_uring_setup(command: &mut Command) {
    #[cfg(target_arch = "x86_64")]
    const AUDIT_ARCH: u32 = 0xC000_003E;
    #[cfg(target_arch = "aarch64")]
    const AUDIT_ARCH: u32 = 0xC000_00B7;
    fn stmt(code: u32, k: u32) -> libc::sock_filter {
        libc::sock_filter {
            code: code as u16,
            jt: 0,
            jf: 0,
            k,
        }
    }
    fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
        libc::sock_filter {
            code: code as u16,
            jt,
            jf,
            k,
        }
    }
    let filter = [
        // seccomp_data.arch: other ABIs are not ours to filter.
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 4),
        jump(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            AUDIT_ARCH,
            1,
            0,
        ),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
        // seccomp_data.nr
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
        jump(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            libc::SYS_io_uring_setup as u32,
            0,
            1,
        ),
        stmt(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_ERRNO | (libc::EPERM as u32 & libc::SECCOMP_RET_DATA),
        ),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ];
    // SAFETY: the closure runs between fork and exec and only calls
    // prctl, which is async-signal-safe; `filter` was built before the
    // fork and is only read.
    unsafe {
        command.pre_exec(move || {
            let program = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr() as *mut libc::sock_filter,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &program) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
