//! Waiting until a started container's server greets, and where
//! sessions then reach it (its published port, or its socket in a folder
//! shared with the container); the end of its log when it does not.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bollard::query_parameters::LogsOptions;
use futures_util::StreamExt;

use super::inspect::{Inspected, State};
use super::{
    DockerDriver, LOG_TAIL_LINES, MARIADB_PORT, PING_TIMEOUT, READY_POLL, SOCKET_NAME, SOCKET_WAIT,
};
use crate::endpoint::Endpoint;
use crate::scaler::driver::DriverError;
use crate::scaler::process::handshake_arrives;

impl DockerDriver {
    /// Reads the published address of the running container and waits
    /// for a MySQL handshake there. A container that stops meanwhile
    /// fails at once, with the end of its log.
    pub(super) fn wait_ready(&mut self) -> Result<SocketAddr, DriverError> {
        let name = self.options.container_name();
        let found = self.inspect_existing()?;
        // A container that died at once has no published port any more:
        // its log says why, the missing port does not.
        if found.state != State::Running {
            return Err(self.stopped_while_starting(&found));
        }
        let addr = self
            .reachable_at(found.address, found.port_label)
            .ok_or_else(|| {
                DriverError::Failed(format!(
                    "{name} publishes no port for {MARIADB_PORT} on host '{}'",
                    self.options.host.name
                ))
            })?;
        let deadline = Instant::now() + self.options.ready_timeout;
        loop {
            // Docker's port proxy accepts connections before anything
            // listens inside, and the image's entrypoint initializes the
            // datadir with a server that has no network: only a greeting
            // from the real server counts.
            if handshake_arrives(addr) {
                self.address = Some(addr);
                return Ok(addr);
            }
            let found = self.inspect_existing()?;
            if found.state != State::Running {
                return Err(self.stopped_while_starting(&found));
            }
            if Instant::now() >= deadline {
                return Err(DriverError::NotReady(format!(
                    "no MySQL handshake from {name} on {addr} within {:?}; its log ends:\n{}",
                    self.options.ready_timeout,
                    self.log_tail()
                )));
            }
            std::thread::sleep(READY_POLL);
        }
    }

    /// The error of a container that stopped while starting: its state,
    /// exit code and the end of its log.
    pub(super) fn stopped_while_starting(&self, found: &Inspected) -> DriverError {
        let code = found
            .exit_code
            .map_or_else(String::new, |code| format!(", exit code {code}"));
        DriverError::Failed(format!(
            "{} stopped while starting ({}{code}); its log ends:\n{}",
            self.options.container_name(),
            found.status,
            self.log_tail()
        ))
    }

    /// Where sessions reach the ready server: its socket in the shared
    /// directory when there is one (once the socket greets: it may lag
    /// the TCP port a little), else the published TCP port. A container
    /// created before the directory was configured has no such mount and
    /// stays on TCP, said once.
    pub(super) fn endpoint(&mut self, addr: SocketAddr) -> Endpoint {
        let Some(dir) = &self.options.socket_dir else {
            return Endpoint::Tcp(addr);
        };
        let socket = dir.join(SOCKET_NAME);
        let deadline = Instant::now() + SOCKET_WAIT;
        loop {
            if unix_handshake_arrives(&socket) {
                return Endpoint::Unix(socket);
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    container = %self.options.container_name(),
                    socket = %socket.display(),
                    "no greeting on the shared socket (a container made without it?): sessions use TCP"
                );
                return Endpoint::Tcp(addr);
            }
            std::thread::sleep(READY_POLL);
        }
    }

    /// The container's last log lines, for errors; what went wrong when
    /// the log cannot be read.
    pub(super) fn log_tail(&self) -> String {
        let name = self.options.container_name();
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            tail: LOG_TAIL_LINES.to_string(),
            ..Default::default()
        };
        let collect = async {
            let mut stream = self.docker.logs(&name, Some(options));
            let mut text = String::new();
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(output) => text.push_str(&output.to_string()),
                    Err(e) => {
                        text.push_str(&format!("(reading the log failed: {e})"));
                        break;
                    }
                }
            }
            text
        };
        match self.block_on(async { tokio::time::timeout(PING_TIMEOUT, collect).await }) {
            Ok(text) => text.trim_end().to_string(),
            Err(_) => "(reading the log timed out)".to_string(),
        }
    }
}

/// Whether a MySQL greeting arrives on the Unix socket at `path`.
fn unix_handshake_arrives(path: &Path) -> bool {
    use std::io::Read;
    let Ok(mut stream) = std::os::unix::net::UnixStream::connect(path) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).is_ok() && head[4] == 10
}
