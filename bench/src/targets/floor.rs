//! The `floor` target (`--spawn-floor`): this very binary as a byte
//! forwarder in front of the baseline (`torpor-bench floor-proxy`, see
//! [`crate::floor`]), in a process of its own so that its pid gives CPU
//! per query like HAProxy's.

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};

use super::child::{ChildProcess, NotServing};
use crate::interrupt::Stop;

/// Starts `torpor-bench floor-proxy` in front of `backend` (`host:port`)
/// with one worker per CPU, and waits until a handshake comes through it.
pub fn start(backend: &str, timeout: Duration, stop: &Stop) -> anyhow::Result<ChildProcess> {
    let binary = std::env::current_exe().context("finding torpor-bench's own binary")?;
    // The free port can be taken between our check and the bind; retry a
    // few times before calling it a failure.
    let mut last = String::new();
    for _ in 0..3 {
        let port =
            torpor::scaler::process::free_port().context("finding a free port for the floor")?;
        let dir = tempfile::Builder::new()
            .prefix("torpor-bench-floor-")
            .tempdir()
            .context("creating the floor's folder")?;
        let mut command = Command::new(&binary);
        command.args(arguments(port, backend, crate::procfs::cpus()));
        let mut child =
            ChildProcess::spawn("floor-proxy", command, dir, ([127, 0, 0, 1], port).into())?;
        match child.wait_serving(timeout, stop) {
            Ok(()) => return Ok(child),
            Err(NotServing::Exited(text)) => last = text,
            Err(NotServing::Silent(text)) => bail!("{text}\n(is the database at {backend} up?)"),
            Err(NotServing::Interrupted) => bail!("interrupted while starting the floor"),
        }
    }
    bail!("{last}\n(binary: {})", binary.display())
}

/// The forwarder's command line.
fn arguments(port: u16, backend: &str, workers: usize) -> Vec<String> {
    vec![
        "floor-proxy".to_string(),
        "--listen".to_string(),
        format!("127.0.0.1:{port}"),
        "--backend".to_string(),
        backend.to_string(),
        "--workers".to_string(),
        workers.to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn command_line_is_the_hidden_subcommand() {
        let args = arguments(40001, "127.0.0.1:3306", 2);
        assert_eq!(
            args,
            [
                "floor-proxy",
                "--listen",
                "127.0.0.1:40001",
                "--backend",
                "127.0.0.1:3306",
                "--workers",
                "2"
            ]
        );
        // And this binary's parser reads it back.
        let cli = crate::cli::Cli::try_parse_from(
            std::iter::once("torpor-bench".to_string()).chain(args),
        )
        .expect("floor-proxy parses");
        let crate::cli::Command::FloorProxy(floor) = cli.command else {
            panic!("parsed as another subcommand");
        };
        assert_eq!(floor.listen, ([127, 0, 0, 1], 40001).into());
        assert_eq!(floor.backend, "127.0.0.1:3306");
        assert_eq!(floor.workers, 2);
    }
}
