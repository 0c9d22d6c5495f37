//! HAProxy in TCP mode in front of the baseline: what one extra hop costs
//! in a mature proxy, to put Torpor's figures in perspective. Its server
//! is `host:port`, or a MariaDB's Unix socket (`--spawn-socket`).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};

use super::child::{require_program, ChildProcess, NotServing};
use crate::interrupt::Stop;

/// The configuration: plain TCP forwarding, one thread per CPU, timeouts
/// long enough that idle benchmark connections are never cut. `backend`
/// is a server address as HAProxy reads it: `host:port`, or
/// [`socket_server`]'s quoted path.
pub fn config(listen_port: u16, backend: &str, threads: usize) -> String {
    format!(
        "\
global
    nbthread {threads}
    maxconn 8000

defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h

frontend torpor_bench
    bind 127.0.0.1:{listen_port}
    default_backend database

backend database
    server db {backend}
"
    )
}

/// A Unix socket as HAProxy's server address. HAProxy 2.6 reads a path
/// that starts with `/` as a Unix socket; single quotes keep spaces, `$`
/// and `\` literal (no escapes or variables inside them), so only a
/// path holding a quote or a line break, or that is not UTF-8, is refused.
pub fn socket_server(path: &Path) -> anyhow::Result<String> {
    let text = path
        .to_str()
        .with_context(|| format!("socket path {} is not UTF-8", path.display()))?;
    if !text.starts_with('/') {
        bail!("socket path {text:?} is not absolute");
    }
    if text.contains(['\'', '\n', '\r']) {
        bail!("socket path {text:?} holds a quote or a line break, which HAProxy's config cannot carry");
    }
    Ok(format!("'{text}'"))
}

/// Starts `haproxy -db -f cfg` forwarding to `backend` (`host:port`, or
/// [`socket_server`]'s form) and waits until a handshake comes through it.
pub fn start(backend: &str, timeout: Duration, stop: &Stop) -> anyhow::Result<ChildProcess> {
    let haproxy = require_program("haproxy", "haproxy")?;
    // The free port can be taken between our check and HAProxy's bind;
    // retry a few times before calling it a failure.
    let mut last = String::new();
    for _ in 0..3 {
        let port =
            torpor::scaler::process::free_port().context("finding a free port for HAProxy")?;
        let dir = tempfile::Builder::new()
            .prefix("torpor-bench-haproxy-")
            .tempdir()
            .context("creating HAProxy's folder")?;
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(&cfg, config(port, backend, crate::procfs::cpus()))
            .with_context(|| format!("writing {}", cfg.display()))?;
        let mut command = Command::new(&haproxy);
        // -db: stay in the foreground, no daemon, no master process, so the
        // pid we hold is the one doing the work.
        command.arg("-db").arg("-f").arg(&cfg);
        let mut child =
            ChildProcess::spawn("haproxy", command, dir, ([127, 0, 0, 1], port).into())?;
        match child.wait_serving(timeout, stop) {
            Ok(()) => return Ok(child),
            Err(NotServing::Exited(text)) => last = text,
            Err(NotServing::Silent(text)) => bail!("{text}\n(is the database at {backend} up?)"),
            Err(NotServing::Interrupted) => bail!("interrupted while starting HAProxy"),
        }
    }
    bail!("{last}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_forwards_tcp_to_the_backend() {
        let cfg = config(40001, "127.0.0.1:3306", 2);
        assert!(cfg.contains("mode tcp"));
        assert!(cfg.contains("nbthread 2"));
        assert!(cfg.contains("bind 127.0.0.1:40001"));
        assert!(cfg.contains("server db 127.0.0.1:3306"));
        assert!(cfg.contains("timeout client 1h"));
    }

    #[test]
    fn config_forwards_to_a_unix_socket_by_its_quoted_path() {
        let server = socket_server(Path::new("/tmp/torpor run/mysqld.sock")).expect("valid");
        assert_eq!(server, "'/tmp/torpor run/mysqld.sock'");
        let cfg = config(40001, &server, 2);
        assert!(cfg.contains("mode tcp"));
        assert!(cfg.contains("server db '/tmp/torpor run/mysqld.sock'\n"));
        assert!(socket_server(Path::new("relative.sock")).is_err());
        assert!(socket_server(Path::new("/tmp/it's.sock")).is_err());
        assert!(socket_server(Path::new("/tmp/a\nb.sock")).is_err());
    }

    #[test]
    fn haproxy_accepts_the_socket_config() {
        // HAProxy itself is the judge of its syntax: `haproxy -c` checks
        // the file without starting (the socket need not exist).
        let haproxy = require_program("haproxy", "haproxy").expect("haproxy is installed");
        let dir = tempfile::tempdir().expect("temp dir");
        let server = socket_server(&dir.path().join("my $sql\\dir").join("mysqld.sock"))
            .expect("valid path");
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(&cfg, config(40001, &server, 2)).expect("write config");
        let output = Command::new(haproxy)
            .arg("-c")
            .arg("-f")
            .arg(&cfg)
            .output()
            .expect("haproxy runs");
        assert!(
            output.status.success(),
            "haproxy -c refused:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
