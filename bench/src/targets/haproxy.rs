//! HAProxy in TCP mode in front of the baseline: the floor of what one
//! extra hop costs, to put Torpor's figures in perspective.

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};

use super::child::{require_program, ChildProcess, NotServing};
use crate::interrupt::Stop;

/// The configuration: plain TCP forwarding, one thread per CPU, timeouts
/// long enough that idle benchmark connections are never cut.
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

/// Starts `haproxy -db -f cfg` forwarding to `backend` (`host:port`) and
/// waits until a handshake comes through it.
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
}
