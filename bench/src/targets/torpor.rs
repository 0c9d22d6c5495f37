//! Torpor built from this workspace, started two ways:
//!
//! - in front of the baseline (`--spawn-torpor`), for the data path:
//!   `torpor --listen 127.0.0.1:PORT --backend HOST:PORT --user NAME:PASSWORD`,
//!   and the same with `--workers 1 --max-backend-connections N`
//!   (`--spawn-torpor-pool N`) for sessions that share connections, and
//!   with `--pool-size N` (`--spawn-torpor-pool-size N`) for many clients
//!   on a small backend;
//! - with a MariaDB of its own that it suspends and parks
//!   (`--spawn-torpor-serverless`), for the serverless workloads:
//!   `torpor --listen … --spawn-mariadb --user … --admin-listen 127.0.0.1:PORT
//!   --suspend-after-secs 86400 --park-after-secs 86400 --state-dir DIR`.
//!
//! "Started" means a client gets a MySQL handshake from it (and, for the
//! serverless one, its admin API answers `/readyz`); a binary that exits
//! or never answers is reported with its own output, so a broken proxy is
//! a clear error and not a benchmark of nothing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::child::{ChildProcess, NotServing};
use crate::cli::{Credentials, TorporSource};
use crate::interrupt::Stop;

/// The `torpor` binary to run: given, or built in release mode.
pub fn binary(source: &TorporSource) -> anyhow::Result<PathBuf> {
    match source {
        TorporSource::Binary(path) => {
            if !path.is_file() {
                bail!("--torpor-bin {}: no such file", path.display());
            }
            Ok(path.clone())
        }
        TorporSource::Build(workspace) => build(workspace),
    }
}

/// `cargo build --release -p torpor`, then the binary under the target
/// directory cargo reports (it honours `CARGO_TARGET_DIR`).
fn build(workspace: &Path) -> anyhow::Result<PathBuf> {
    let manifest = workspace.join("Cargo.toml");
    if !manifest.is_file() {
        bail!(
            "no Torpor workspace at {} (pass --workspace DIR or --torpor-bin PATH)",
            workspace.display()
        );
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!(
        "building torpor: cargo build --release -p torpor ({})",
        workspace.display()
    );
    // Cargo's own progress goes straight to our stderr: a release build
    // with LTO takes a while and the user should see it move.
    let status = Command::new(&cargo)
        .args(["build", "--release", "-p", "torpor", "--manifest-path"])
        .arg(&manifest)
        .stdin(Stdio::null())
        .status()
        .context("running cargo (is it in PATH?)")?;
    if !status.success() {
        bail!("cargo build --release -p torpor failed ({status})");
    }
    let output = Command::new(&cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--manifest-path",
        ])
        .arg(&manifest)
        .stdin(Stdio::null())
        .output()
        .context("running cargo metadata")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let target_dir = target_directory(&output.stdout)?;
    let path = target_dir.join("release").join("torpor");
    if !path.is_file() {
        bail!("cargo built torpor but {} does not exist", path.display());
    }
    Ok(path)
}

/// `target_directory` from `cargo metadata` output.
fn target_directory(metadata: &[u8]) -> anyhow::Result<PathBuf> {
    let value: serde_json::Value =
        serde_json::from_slice(metadata).context("cargo metadata printed no JSON")?;
    let dir = value
        .get("target_directory")
        .and_then(|v| v.as_str())
        .context("cargo metadata has no target_directory")?;
    Ok(PathBuf::from(dir))
}

/// The extra arguments of a Torpor with one worker and a pool of `bound`
/// backend connections (`--spawn-torpor-pool`): one worker, so that the
/// bound is one pool's and not split over per-core pools.
pub fn pool_arguments(bound: u32) -> Vec<String> {
    vec![
        "--workers".to_string(),
        "1".to_string(),
        "--max-backend-connections".to_string(),
        bound.to_string(),
    ]
}

/// The extra arguments of a Torpor whose sessions share `size` backend
/// connections before more are opened (`--spawn-torpor-pool-size`).
/// Nothing else: it keeps the default workers, one per core, so that it
/// differs from the plain `torpor` target by its pool size alone.
pub fn pool_size_arguments(size: u32) -> Vec<String> {
    vec!["--pool-size".to_string(), size.to_string()]
}

/// Starts `binary` in front of `backend`, with `extra` arguments after
/// the usual ones, and waits until it answers.
pub fn start(
    binary: &Path,
    backend: &str,
    extra: &[String],
    credentials: &Credentials,
    timeout: Duration,
    stop: &Stop,
) -> anyhow::Result<ChildProcess> {
    let port = torpor::scaler::process::free_port().context("finding a free port for Torpor")?;
    let dir = tempfile::Builder::new()
        .prefix("torpor-bench-torpor-")
        .tempdir()
        .context("creating Torpor's folder")?;
    let mut command = Command::new(binary);
    command.args(arguments(port, backend, credentials));
    command.args(extra);
    let mut child = ChildProcess::spawn("torpor", command, dir, ([127, 0, 0, 1], port).into())?;
    match child.wait_serving(timeout, stop) {
        Ok(()) => Ok(child),
        Err(NotServing::Exited(text)) | Err(NotServing::Silent(text)) => {
            bail!("--spawn-torpor: {text}\n(binary: {})", binary.display())
        }
        Err(NotServing::Interrupted) => bail!("interrupted while starting Torpor"),
    }
}

/// How long the serverless Torpor waits, idle, before suspending or
/// parking on its own: a day, so that only the suite's API calls do.
const IDLE_NEVER_SECS: u64 = 86_400;

/// A Torpor with a MariaDB of its own and its admin API.
#[derive(Debug)]
pub struct ServerlessTorpor {
    /// The process (its MariaDB is its child and stops with it).
    pub child: ChildProcess,
    /// Where its admin API listens.
    pub admin: SocketAddr,
}

/// Starts `binary` with `--spawn-mariadb` and an admin listener, and waits
/// until it answers a MySQL handshake and `GET /readyz`.
pub fn start_serverless(
    binary: &Path,
    credentials: &Credentials,
    timeout: Duration,
    stop: &Stop,
) -> anyhow::Result<ServerlessTorpor> {
    let free = || torpor::scaler::process::free_port().context("finding a free port for Torpor");
    let (port, admin_port) = (free()?, free()?);
    let dir = tempfile::Builder::new()
        .prefix("torpor-bench-torpor-serverless-")
        .tempdir()
        .context("creating Torpor's folder")?;
    // Torpor keeps state (datadirs, secrets) under --state-dir; a private
    // one keeps runs apart and out of the user's home.
    let state = dir.path().join("state");
    let mut command = Command::new(binary);
    command.args(serverless_arguments(port, admin_port, &state, credentials));
    let admin = SocketAddr::from(([127, 0, 0, 1], admin_port));
    let started = Instant::now();
    let mut child = ChildProcess::spawn(
        "torpor (serverless)",
        command,
        dir,
        ([127, 0, 0, 1], port).into(),
    )?;
    match child.wait_serving(timeout, stop) {
        Ok(()) => {}
        Err(NotServing::Exited(text)) | Err(NotServing::Silent(text)) => {
            bail!(
                "--spawn-torpor-serverless: {text}\n(binary: {})",
                binary.display()
            )
        }
        Err(NotServing::Interrupted) => bail!("interrupted while starting Torpor"),
    }
    // The MySQL port can open before the admin listener does.
    let api = crate::admin::Admin::new(&admin.to_string(), None);
    let mut wait = |ready: &mut dyn FnMut() -> bool, what: &str| {
        child
            .wait_until(
                ready,
                what,
                (started, timeout),
                Duration::from_millis(50),
                stop,
            )
            .context("--spawn-torpor-serverless")
    };
    wait(
        &mut || api.is_ready(),
        &format!(
            "its admin API on {admin} did not answer GET /readyz with 200 \
             (does this torpor have --admin-listen?)"
        ),
    )?;
    // Its warm pool boots a server now: measured workloads start after
    // that boot, not beside it.
    wait(
        &mut || api.warm_instances("process").ok().flatten().unwrap_or(0) > 0,
        "its warm pool held no ready server",
    )?;
    Ok(ServerlessTorpor { child, admin })
}

/// The serverless Torpor's command line.
fn serverless_arguments(
    port: u16,
    admin_port: u16,
    state: &Path,
    credentials: &Credentials,
) -> Vec<String> {
    vec![
        "--listen".to_string(),
        format!("127.0.0.1:{port}"),
        "--spawn-mariadb".to_string(),
        "--user".to_string(),
        format!("{}:{}", credentials.user, credentials.password),
        "--admin-listen".to_string(),
        format!("127.0.0.1:{admin_port}"),
        "--suspend-after-secs".to_string(),
        IDLE_NEVER_SECS.to_string(),
        "--park-after-secs".to_string(),
        IDLE_NEVER_SECS.to_string(),
        "--state-dir".to_string(),
        state.display().to_string(),
        // The `provision` workload's warm path; one frozen server at
        // rest costs the other workloads no CPU.
        "--warm-pool".to_string(),
        "1".to_string(),
    ]
}

/// Torpor's command line.
fn arguments(port: u16, backend: &str, credentials: &Credentials) -> Vec<String> {
    vec![
        "--listen".to_string(),
        format!("127.0.0.1:{port}"),
        "--backend".to_string(),
        backend.to_string(),
        "--user".to_string(),
        format!("{}:{}", credentials.user, credentials.password),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_matches_torpors_cli() {
        let credentials = Credentials {
            user: "bench".into(),
            password: "s3cret".into(),
            database: "test".into(),
        };
        assert_eq!(
            arguments(6033, "127.0.0.1:3306", &credentials),
            [
                "--listen",
                "127.0.0.1:6033",
                "--backend",
                "127.0.0.1:3306",
                "--user",
                "bench:s3cret"
            ]
        );
    }

    #[test]
    fn pool_arguments_name_one_worker_and_the_bound() {
        assert_eq!(
            pool_arguments(8),
            ["--workers", "1", "--max-backend-connections", "8"]
        );
    }

    #[test]
    fn pool_size_arguments_name_the_size_and_keep_the_workers() {
        assert_eq!(pool_size_arguments(16), ["--pool-size", "16"]);
        // Torpor's own parser reads them: the flag exists, and nothing
        // but the pool size differs from the plain `torpor` target.
        let credentials = Credentials {
            user: "bench".into(),
            password: "pw".into(),
            database: "test".into(),
        };
        let mut argv = vec!["torpor".to_string()];
        argv.extend(arguments(6033, "127.0.0.1:3306", &credentials));
        argv.extend(pool_size_arguments(16));
        let cli = <torpor::config::Cli as clap::Parser>::try_parse_from(argv)
            .expect("torpor accepts the arguments");
        assert_eq!(cli.pool_size, Some(16));
        assert_eq!((cli.workers, cli.max_backend_connections), (None, None));
    }

    #[test]
    fn serverless_command_line_matches_torpors_cli() {
        let credentials = Credentials {
            user: "bench".into(),
            password: "pw".into(),
            database: "test".into(),
        };
        assert_eq!(
            serverless_arguments(40001, 40002, Path::new("/tmp/s"), &credentials),
            [
                "--listen",
                "127.0.0.1:40001",
                "--spawn-mariadb",
                "--user",
                "bench:pw",
                "--admin-listen",
                "127.0.0.1:40002",
                "--suspend-after-secs",
                "86400",
                "--park-after-secs",
                "86400",
                "--state-dir",
                "/tmp/s",
                "--warm-pool",
                "1"
            ]
        );
    }

    #[test]
    fn target_directory_comes_from_cargo_metadata() {
        let json = br#"{"packages":[],"target_directory":"/work/target-x","version":1}"#;
        assert_eq!(
            target_directory(json).expect("valid"),
            PathBuf::from("/work/target-x")
        );
        assert!(target_directory(b"not json").is_err());
        assert!(target_directory(b"{}").is_err());
    }

    #[test]
    fn a_binary_that_exits_at_once_is_a_clear_error() {
        let credentials = Credentials {
            user: "u".into(),
            password: "p".into(),
            database: "test".into(),
        };
        let error = start(
            Path::new("/bin/true"),
            "127.0.0.1:1",
            &[],
            &credentials,
            Duration::from_secs(10),
            &Stop::default(),
        )
        .expect_err("/bin/true never accepts");
        let text = format!("{error:#}");
        assert!(text.contains("torpor exited"), "{text}");
        assert!(text.contains("before accepting connections"), "{text}");
    }

    #[test]
    fn a_binary_that_never_accepts_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let script = dir.path().join("silent-torpor");
        std::fs::write(&script, "#!/bin/sh\necho listening soon\nexec sleep 30\n")
            .expect("write script");
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let credentials = Credentials {
            user: "u".into(),
            password: "p".into(),
            database: "test".into(),
        };
        let error = start(
            &script,
            "127.0.0.1:1",
            &[],
            &credentials,
            Duration::from_millis(500),
            &Stop::default(),
        )
        .expect_err("the script never accepts");
        let text = format!("{error:#}");
        assert!(
            text.contains("did not answer with a MySQL handshake"),
            "{text}"
        );
        assert!(
            text.contains("listening soon"),
            "the child's output is shown: {text}"
        );
    }
}
