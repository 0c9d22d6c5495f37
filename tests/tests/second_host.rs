//! A second Docker host on this machine ([`torpor_tests::second_host`]):
//! a MariaDB container there, started with `--network host`, serves a
//! real client on the host over the veth pair, and the host engine knows
//! nothing of it; dropping the host leaves no namespace, link, process
//! or folder behind.
//!
//! The groundwork of relocation between hosts (issue 17). The tests run
//! as root wherever a Docker engine answers and has the MariaDB image,
//! under the rules of [`torpor_tests::docker`].

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use torpor_tests::docker::{docker_ok, mariadb_image, unique_name};
use torpor_tests::second_host::{second_host_ready, SecondHost};
use torpor_tests::tcp_opts;

const APP_USER: &str = "app";
const APP_PASSWORD: &str = "app-secret";
const DATABASE: &str = "appdb";

/// One test at a time: a test checking that a dropped host left nothing
/// behind must not see the slot claimed again by another test.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn mariadb_on_a_second_host_serves_the_host_over_the_veth_pair() {
    let image = mariadb_image();
    let Some(()) = second_host_ready(std::slice::from_ref(&image)) else {
        return;
    };
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());

    let started = Instant::now();
    let host = SecondHost::start();
    let start_time = started.elapsed();
    let loading = Instant::now();
    host.load_image(&image);
    let load_time = loading.elapsed();
    // Not assertions: how long the groundwork of a relocation takes here.
    eprintln!(
        "second host {}: engine answered after {start_time:.2?}, {image} loaded in {load_time:.2?}",
        host.netns()
    );
    // The same dockerd binary as the host's: the engine really is a
    // Docker Engine, answering on its own socket.
    let host_version = docker_ok(&["version", "--format", "{{.Server.Version}}"]);
    assert_eq!(host.version(), host_version);
    // Its own store, in the host's folder, on the driver it was given.
    let info = host.docker_ok(&["info", "--format", "{{.DockerRootDir}} {{.Driver}}"]);
    let folder = host.socket().parent().expect("a folder").to_path_buf();
    assert_eq!(
        info,
        format!("{} fuse-overlayfs", folder.join("data").display())
    );

    let name = unique_name("second-host-mariadb");
    let env = [
        "MARIADB_ROOT_PASSWORD=root-secret".to_string(),
        format!("MARIADB_DATABASE={DATABASE}"),
        format!("MARIADB_USER={APP_USER}"),
        format!("MARIADB_PASSWORD={APP_PASSWORD}"),
    ];
    let mut run = vec!["run", "--detach", "--name", &name, "--network", "host"];
    for var in &env {
        run.extend_from_slice(&["--env", var]);
    }
    run.push(&image);
    host.docker_ok(&run);
    let logs = ContainerLogs {
        host: &host,
        name: &name,
    };
    let mariadbd: u32 = host
        .docker_ok(&["inspect", "--format", "{{.State.Pid}}", &name])
        .parse()
        .expect("docker inspect prints the container's pid");

    // Its cgroups are under one named after the host, where a sweep
    // after a killed test run finds them.
    let cgroups = std::fs::read_to_string(format!("/proc/{mariadbd}/cgroup")).expect("cgroups");
    assert!(
        cgroups.contains(&format!(":/{}/", host.netns())),
        "{cgroups}"
    );

    let addr = SocketAddr::from((host.addr(), 3306));
    let mut conn = logs.connect_when_ready(addr, Duration::from_secs(120));
    // The server saw the client come from the host's end of the veth
    // pair: the connection went over it, not over some other route.
    let (user, port): (String, u16) = conn
        .query_first("SELECT USER(), @@port")
        .expect("SELECT USER()")
        .expect("a row");
    assert_eq!(user, format!("{APP_USER}@{}", host.host_addr()));
    assert_eq!(port, 3306);
    conn.query_drop("CREATE TABLE relocated (id INT PRIMARY KEY, what TEXT)")
        .expect("CREATE TABLE");
    conn.query_drop("INSERT INTO relocated VALUES (1, 'one'), (2, 'two'), (3, 'three')")
        .expect("INSERT");
    let (count, sum): (u64, u64) = conn
        .query_first("SELECT COUNT(*), SUM(id) FROM relocated")
        .expect("SELECT")
        .expect("a row");
    assert_eq!((count, sum), (3, 6));

    // The container belongs to the second engine only.
    let there = host.docker_ok(&["ps", "--format", "{{.Names}}"]);
    assert!(there.lines().any(|n| n == name), "{name} not in {there:?}");
    let here = docker_ok(&["ps", "--all", "--format", "{{.Names}}"]);
    assert!(
        !here.lines().any(|n| n == name),
        "{name} shows in the host engine: {here:?}"
    );

    drop(conn);
    drop(logs);
    let netns = host.netns().to_string();
    let dockerd = host.dockerd_pid().expect("dockerd runs");
    let addr_there = host.addr();
    drop(host);
    assert_left_nothing(&netns, addr_there, &[dockerd, mariadbd], &folder);
}

#[test]
fn two_second_hosts_get_their_own_subnets_and_no_route_beyond() {
    let Some(()) = second_host_ready(&[]) else {
        return;
    };
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let first = SecondHost::start();
    let second = SecondHost::start();
    assert_ne!(first.netns(), second.netns());
    assert_ne!(first.addr(), second.addr());
    for host in [&first, &second] {
        assert!(!host.version().is_empty());
        // Each end of the pair is in the other's /30, and nothing else is
        // routed from the namespace: traffic stays on the pair.
        let [a, b, c, d] = host.addr().octets();
        assert_eq!(host.host_addr(), Ipv4Addr::new(a, b, c, d - 1));
        let routes = ip(&["-n", host.netns(), "-4", "route", "show"]);
        assert!(!routes.contains("default"), "a default route: {routes}");
        assert!(
            ip(&["-n", host.netns(), "-4", "route", "get", "192.0.2.1"]).is_empty(),
            "the namespace routes to the outside"
        );
        let reached = ip(&[
            "-n",
            host.netns(),
            "-4",
            "route",
            "get",
            &host.host_addr().to_string(),
        ]);
        assert!(reached.contains(&host.host_addr().to_string()), "{reached}");
    }
    for host in [first, second] {
        let netns = host.netns().to_string();
        let dockerd = host.dockerd_pid().expect("dockerd runs");
        let folder = host.socket().parent().expect("a folder").to_path_buf();
        let addr = host.addr();
        drop(host);
        assert_left_nothing(&netns, addr, &[dockerd], &folder);
    }
}

/// Prints a container's log when the test fails while it runs.
struct ContainerLogs<'a> {
    host: &'a SecondHost,
    name: &'a str,
}

impl ContainerLogs<'_> {
    /// Logs in as the app user once the server takes logins: the image
    /// runs a private server while it initializes.
    fn connect_when_ready(&self, addr: SocketAddr, timeout: Duration) -> mysql::Conn {
        let opts: mysql::Opts = tcp_opts(addr)
            .user(Some(APP_USER))
            .pass(Some(APP_PASSWORD))
            .db_name(Some(DATABASE))
            .tcp_connect_timeout(Some(Duration::from_secs(2)))
            .into();
        let deadline = Instant::now() + timeout;
        loop {
            match mysql::Conn::new(opts.clone()) {
                Ok(conn) => return conn,
                Err(e) => {
                    let running = self.host.docker_ok(&[
                        "inspect",
                        "--format",
                        "{{.State.Running}}",
                        self.name,
                    ]);
                    assert_eq!(running, "true", "{} stopped before serving", self.name);
                    assert!(
                        Instant::now() < deadline,
                        "{} took no login on {addr} within {timeout:?}: {e}",
                        self.name
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for ContainerLogs<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(out) = self.host.docker(&["logs", self.name]) {
                eprintln!(
                    "---- log of {} ----\n{}{}",
                    self.name,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}

/// After a second host's drop: no namespace, no veth end with its
/// address, none of `pids` running, no folder, no cgroups.
fn assert_left_nothing(netns: &str, addr: Ipv4Addr, pids: &[u32], folder: &Path) {
    let namespaces = ip(&["netns", "list"]);
    assert!(
        !namespaces
            .lines()
            .any(|line| line.split_whitespace().next() == Some(netns)),
        "{netns} is still in {namespaces:?}"
    );
    let [a, b, c, _] = addr.octets();
    let subnet = format!("{a}.{b}.{c}.");
    let addrs = ip(&["-4", "-o", "addr", "show"]);
    assert!(
        !addrs.contains(&subnet),
        "{subnet}0/30 still on a link: {addrs}"
    );
    for pid in pids {
        assert!(!running(*pid), "process {pid} of {netns} still runs");
    }
    assert!(!folder.exists(), "{} is still there", folder.display());
    let hierarchies = std::fs::read_dir("/sys/fs/cgroup").expect("cgroups are mounted");
    for hierarchy in hierarchies.flatten() {
        let cgroup = hierarchy.path().join(netns);
        assert!(!cgroup.exists(), "{} is still there", cgroup.display());
    }
    let cgroup_v2 = Path::new("/sys/fs/cgroup").join(netns);
    assert!(
        !cgroup_v2.exists(),
        "{} is still there",
        cgroup_v2.display()
    );
}

/// Whether `pid` is a live process (a zombie is dead, only not reaped).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat.rsplit_once(") ")?.1.chars().next()?;
            Some(state != 'Z' && state != 'X')
        })
        .unwrap_or(false)
}

/// `ip ARGS`' stdout; empty when it failed.
fn ip(args: &[&str]) -> String {
    std::process::Command::new("ip")
        .args(args)
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default()
}
