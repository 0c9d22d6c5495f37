//! A second Docker Engine on this machine, for tests of what crosses
//! hosts (relocation, issue 17): a network namespace joined to the host
//! by a veth pair with a /30 of its own, and a `dockerd` inside it with
//! its own data, exec root and API socket.
//!
//! Traffic between the two "hosts" stays on the veth pair: the namespace
//! has no route beyond its /30, and its engine runs with no bridge and no
//! iptables rules. A container there started with `--network host`
//! listens on [`SecondHost::addr`]; the host reaches it there, and it
//! sees the host as [`SecondHost::host_addr`].
//!
//! Why `nsenter --net` and not `ip netns exec`: the latter remounts
//! `/sys` without the cgroup hierarchies, and dockerd then stops with
//! "Devices cgroup isn't mounted". Only the network namespace is new;
//! mounts, cgroups and processes are the host's.
//!
//! Everything is named `torpor-sh-<pid>-<slot>` (the test process's pid
//! and the /30's slot) and removed on drop. A test process killed before
//! its drops ran leaves a namespace with its processes, mounts, cgroups
//! and a folder behind; [`SecondHost::start`] first sweeps those whose
//! process is gone (`cleanup`).
//!
//! Needs root, `ip`, `nsenter` and `dockerd` (tests without them pass
//! with a note, or fail under `TORPOR_REQUIRE_DOCKER=1`, as in
//! [`crate::docker`]), and `fuse-overlayfs`, installed with apt-get when
//! missing. The storage driver is fuse-overlayfs, the one the host engine
//! of the machine this was measured on (Docker 20.10) uses: the recipe
//! is known to work with it.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::docker::{docker_required, images_ready};
use crate::engine_tls::EngineCertificates;

mod cleanup;
use cleanup::{sweep_leftovers, teardown};

/// What every namespace and folder of a second host is named from.
const PREFIX: &str = "torpor-sh-";
/// Where `ip netns` keeps its namespaces.
const NETNS_DIR: &str = "/var/run/netns";
/// The port the engine's TCP listener (mutual TLS) takes, Docker's own.
const TLS_PORT: u16 = 2376;
/// How long a fresh dockerd may take to answer on its socket.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long dockerd may take to stop its containers and itself.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// How to get what a skipped or failed second-host test was missing.
const HINT: &str = "run the tests as root on a machine with iproute2, util-linux and \
     docker.io (.ci/run's tests/run installs them), or unset TORPOR_REQUIRE_DOCKER \
     to let these tests pass without a second host";
/// The longest folder name that keeps every socket dockerd and containerd
/// make under it within a Unix socket path's 108 bytes.
const MAX_DIR_LEN: usize = 64;

/// A second Docker Engine in a network namespace of its own; stopped and
/// removed, with its containers, namespace, veth pair and folders, on
/// drop.
pub struct SecondHost {
    /// The namespace's name, `torpor-sh-<pid>-<slot>`.
    netns: String,
    /// The slot: the /30 is `10.231.<slot>.0/30`.
    slot: u8,
    /// Data root, exec root, socket, pid file and log of the engine.
    dir: Option<tempfile::TempDir>,
    /// The dockerd process (nsenter execs it, so this is dockerd).
    dockerd: Option<Child>,
    /// The certificates of the engine's TCP listener (mutual TLS).
    tls: Option<EngineCertificates>,
}

/// `Some(())` when a second host can start here and every one of
/// `images` exists in the host engine (to be copied over); otherwise
/// `None` with a note on stderr, or a failure under
/// `TORPOR_REQUIRE_DOCKER=1`. Installs fuse-overlayfs when it is missing,
/// and fails loudly when that does not work.
#[must_use]
pub fn second_host_ready(images: &[String]) -> Option<()> {
    images_ready(images)?;
    let why = if euid() != 0 {
        Some("a second Docker host needs root (network namespaces, dockerd)".to_string())
    } else {
        [
            ("ip", "iproute2"),
            ("nsenter", "util-linux"),
            ("dockerd", "docker.io"),
        ]
        .iter()
        .find(|(program, _)| !installed(program))
        .map(|(program, package)| format!("{program} is not installed (Debian's {package})"))
    };
    match why {
        None => {}
        Some(why) if docker_required() => {
            panic!("TORPOR_REQUIRE_DOCKER=1 but {why}: {HINT}")
        }
        Some(why) => {
            eprintln!("skipped: {why} ({HINT})");
            return None;
        }
    }
    ensure_fuse_overlayfs();
    let version = run("dockerd", &["--version"]).unwrap_or_default();
    if !version.starts_with("Docker version 20.10") {
        eprintln!(
            "note: the second host's recipe was measured with Docker 20.10; \
             this dockerd says {version:?}"
        );
    }
    Some(())
}

impl SecondHost {
    /// Creates the namespace and veth pair on a free /30, starts dockerd
    /// in it and waits until its API answers. Call
    /// [`second_host_ready`] first. Sweeps leftovers of test processes
    /// that died before cleaning up.
    pub fn start() -> SecondHost {
        sweep_leftovers();
        let pid = std::process::id();
        let (netns, slot) = claim_slot(pid);
        // From here on, a panic drops `host`, which removes what exists.
        let mut host = SecondHost {
            netns,
            slot,
            dir: None,
            dockerd: None,
            tls: None,
        };
        host.configure_network();
        let dir = tempfile::Builder::new()
            .prefix(&format!("{}.", host.netns))
            .tempdir()
            .expect("a folder for the second host");
        let len = dir.path().as_os_str().len();
        host.dir = Some(dir);
        assert!(
            len <= MAX_DIR_LEN,
            "the second host's folder {} is too long for its sockets: \
             point TMPDIR to a shorter path",
            host.dir().display()
        );
        host.start_dockerd();
        host.wait_for_api();
        host
    }

    /// The namespace's name (`ip netns list` shows it).
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// The namespace's address: where the host reaches what listens in
    /// the namespace (containers with `--network host`).
    pub fn addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 231, self.slot, 2)
    }

    /// The host's address as seen from the namespace (its end of the
    /// veth pair).
    pub fn host_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 231, self.slot, 1)
    }

    /// The engine's API socket.
    pub fn socket(&self) -> PathBuf {
        self.dir().join("docker.sock")
    }

    /// The engine's address for `docker -H` or `DOCKER_HOST`.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// The engine's TCP address with mutual TLS, as a remote engine is
    /// reached (`tcp://ADDR:2376`, dockerd's `--tlsverify`), and the
    /// certificates a client presents and verifies it with.
    pub fn tls_engine(&self) -> (String, &EngineCertificates) {
        let tls = self.tls.as_ref().expect("the engine listens with TLS");
        (format!("tcp://{}:{TLS_PORT}", self.addr()), tls)
    }

    /// Runs the docker CLI against this engine; `None` when it cannot
    /// even be started.
    pub fn docker(&self, args: &[&str]) -> Option<Output> {
        Command::new("docker")
            .arg("--host")
            .arg(self.docker_host())
            .args(args)
            .output()
            .ok()
    }

    /// Runs the docker CLI against this engine and returns its stdout, or
    /// fails the test with what docker said.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let output = self
            .docker(args)
            .unwrap_or_else(|| panic!("cannot run docker {args:?} on {}", self.netns));
        assert!(
            output.status.success(),
            "docker {args:?} on {} failed: {}",
            self.netns,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// The engine's version, as its API reports it.
    pub fn version(&self) -> String {
        self.docker_ok(&["version", "--format", "{{.Server.Version}}"])
    }

    /// Copies `image` from the host engine into this one
    /// (`docker save | docker load`: no registry involved).
    pub fn load_image(&self, image: &str) {
        let mut save = Command::new("docker")
            .args(["save", image])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("docker save starts");
        let stream = save.stdout.take().expect("piped stdout");
        let load = Command::new("docker")
            .arg("--host")
            .arg(self.docker_host())
            .args(["load", "--quiet"])
            .stdin(stream)
            .output()
            .expect("docker load runs");
        let saved = save.wait_with_output().expect("docker save runs");
        assert!(
            saved.status.success(),
            "docker save {image} failed: {}",
            String::from_utf8_lossy(&saved.stderr).trim()
        );
        assert!(
            load.status.success(),
            "docker load of {image} into {} failed: {}",
            self.netns,
            String::from_utf8_lossy(&load.stderr).trim()
        );
    }

    /// The dockerd process's id.
    pub fn dockerd_pid(&self) -> Option<u32> {
        self.dockerd.as_ref().map(Child::id)
    }

    /// What dockerd has written to its log so far.
    pub fn log(&self) -> String {
        std::fs::read(self.dir().join("dockerd.log"))
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    fn dir(&self) -> &Path {
        self.dir.as_ref().expect("the folder exists").path()
    }

    /// Addresses on both ends, both ends and the namespace's loopback up.
    /// No default route: nothing in the namespace reaches past the host.
    fn configure_network(&self) {
        let (outside, inside) = veth_names(self.slot);
        let host_cidr = format!("{}/30", self.host_addr());
        let ns_cidr = format!("{}/30", self.addr());
        let steps: [&[&str]; 5] = [
            &["addr", "add", &host_cidr, "dev", &outside],
            &["link", "set", &outside, "up"],
            &["-n", &self.netns, "link", "set", "lo", "up"],
            &["-n", &self.netns, "addr", "add", &ns_cidr, "dev", &inside],
            &["-n", &self.netns, "link", "set", &inside, "up"],
        ];
        for args in steps {
            run("ip", args).unwrap_or_else(|e| panic!("ip {args:?}: {e}"));
        }
    }

    fn start_dockerd(&mut self) {
        let dir = self.dir().to_path_buf();
        // An empty configuration: the host's daemon.json names the host's
        // data root, which this engine must never touch.
        let config = dir.join("daemon.json");
        std::fs::write(&config, "{}").expect("write daemon.json");
        let tls = EngineCertificates::write(&dir.join("tls"), IpAddr::V4(self.addr()));
        let log = File::create(dir.join("dockerd.log")).expect("create dockerd.log");
        let log_err = log.try_clone().expect("clone the log's handle");
        let child = Command::new("nsenter")
            .arg(format!("--net={NETNS_DIR}/{}", self.netns))
            .arg("dockerd")
            .arg("--config-file")
            .arg(&config)
            .args(["--storage-driver", "fuse-overlayfs"])
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--host")
            .arg(self.docker_host())
            // Also as a remote engine is reached: TCP with mutual TLS
            // (the Unix socket stays plain: TLS applies to TCP only).
            .arg("--host")
            .arg(format!("tcp://{}:{TLS_PORT}", self.addr()))
            .arg("--tlsverify")
            .arg("--tlscacert")
            .arg(&tls.ca)
            .arg("--tlscert")
            .arg(&tls.server_cert)
            .arg("--tlskey")
            .arg(&tls.server_key)
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            // No docker0, no NAT, no forwarding: containers use the
            // namespace's own network (--network host) and nothing else.
            .args(["--bridge", "none", "--iptables=false", "--ip-forward=false"])
            // The containers' cgroups under one of the host's name, so a
            // sweep finds them when a killed test left them behind.
            .arg("--cgroup-parent")
            .arg(format!("/{}", self.netns))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .expect("nsenter runs dockerd");
        self.dockerd = Some(child);
        self.tls = Some(tls);
    }

    fn wait_for_api(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self
                .docker(&["version", "--format", "{{.Server.Version}}"])
                .is_some_and(|out| out.status.success())
            {
                return;
            }
            let exited = self
                .dockerd
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten());
            assert!(
                exited.is_none(),
                "dockerd in {} exited ({exited:?}) before answering:\n{}",
                self.netns,
                self.log()
            );
            assert!(
                Instant::now() < deadline,
                "dockerd in {} did not answer within {START_TIMEOUT:?}:\n{}",
                self.netns,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Removes every container, then asks dockerd to stop and waits for
    /// it; false when something did not go as asked (teardown then kills).
    fn stop_engine(&mut self) -> bool {
        let Some(mut child) = self.dockerd.take() else {
            return true;
        };
        let mut clean = true;
        let ids = self.docker(&["ps", "--all", "--quiet"]);
        let ids = ids.map(|out| String::from_utf8_lossy(&out.stdout).into_owned());
        let ids: Vec<&str> = ids.iter().flat_map(|s| s.split_whitespace()).collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "--force", "--volumes"];
            args.extend(ids);
            clean &= self.docker(&args).is_some_and(|out| out.status.success());
        }
        let pid = child.id() as libc::pid_t;
        // SAFETY: kill(2) on our own child's pid, which we have not
        // reaped yet, so it cannot name another process.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() >= deadline {
                eprintln!("dockerd in {} ignored SIGTERM; killing it", self.netns);
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        clean
    }
}

impl Drop for SecondHost {
    fn drop(&mut self) {
        if std::thread::panicking() && self.dir.is_some() {
            eprintln!("---- log of dockerd in {} ----\n{}", self.netns, self.log());
        }
        if !self.stop_engine() {
            eprintln!("{}: containers or dockerd did not stop cleanly", self.netns);
        }
        let dir = self.dir.take().map(tempfile::TempDir::keep);
        teardown(&self.netns, self.slot, dir.as_deref());
    }
}

/// Finds a free /30 and claims it: a namespace named after this process
/// and the slot, and a veth pair whose inner end is created inside it.
/// Creating the pair is the claim: the kernel refuses a second link of
/// the same name, so two test processes never share a slot.
fn claim_slot(pid: u32) -> (String, u8) {
    // Tests of one process start hosts on threads of their own: they
    // would pick the same free slot and name the same namespace. One
    // claim at a time in a process; other processes differ by pid.
    static CLAIMING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _claiming = CLAIMING.lock().unwrap_or_else(|e| e.into_inner());
    let addrs = run("ip", &["-4", "-o", "addr", "show"]).unwrap_or_default();
    let routes = run("ip", &["-4", "route", "show", "table", "all"]).unwrap_or_default();
    for slot in 0..=u8::MAX {
        let net = format!("10.231.{slot}.");
        let (outside, inside) = veth_names(slot);
        if addrs.contains(&net) || routes.contains(&net) || link_exists(&outside) {
            continue;
        }
        let netns = format!("{PREFIX}{pid}-{slot}");
        run("ip", &["netns", "add", &netns]).unwrap_or_else(|e| panic!("ip netns add: {e}"));
        let claimed = run(
            "ip",
            &[
                "link", "add", &outside, "type", "veth", "peer", "name", &inside, "netns", &netns,
            ],
        );
        match claimed {
            Ok(_) => return (netns, slot),
            // Another process took the slot since we looked.
            Err(_) => {
                let _ = run("ip", &["netns", "delete", &netns]);
            }
        }
    }
    panic!("no free /30 left in 10.231.0.0/16 for a second host");
}

/// The veth pair's ends: outside (the host's) and inside the namespace.
/// Short: a link's name has at most 15 bytes.
fn veth_names(slot: u8) -> (String, String) {
    (format!("tsh{slot}-host"), format!("tsh{slot}-ns"))
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Runs `program` and returns its stdout, or what went wrong.
fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

fn installed(program: &str) -> bool {
    torpor::scaler::process::find_program(&[program]).is_some()
}

/// The engine's storage driver for trees on a fuse-overlayfs host; the
/// package is installed here when missing, since only these tests need
/// it (tests/run installs it up front).
fn ensure_fuse_overlayfs() {
    if installed("fuse-overlayfs") {
        return;
    }
    eprintln!("second host: installing fuse-overlayfs with apt-get");
    let apt_get = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|status| status.success())
    };
    let install = ["install", "-y", "-qq", "fuse-overlayfs"];
    // Package lists may be missing or stale: update only when needed.
    let installed_now = apt_get(&install) || (apt_get(&["update", "-qq"]) && apt_get(&install));
    assert!(
        installed_now && installed("fuse-overlayfs"),
        "fuse-overlayfs is missing and `apt-get install fuse-overlayfs` failed: \
         install Debian's fuse-overlayfs package (tests/run does)"
    );
}

fn euid() -> u32 {
    // SAFETY: geteuid(2) cannot fail and has no preconditions.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_name_links_that_fit() {
        let (outside, inside) = veth_names(u8::MAX);
        // A link's name has at most 15 bytes.
        assert!(outside.len() <= 15 && inside.len() <= 15);
        assert_ne!(outside, inside);
    }
}
