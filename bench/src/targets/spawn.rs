//! Launching what is measured: a private MariaDB (`--spawn-mariadb`),
//! HAProxy (`--spawn-haproxy`) and Torpor (`--spawn-torpor`) in front of
//! the baseline, and again in front of the MariaDB's Unix socket
//! (`--spawn-socket`), Torpors set up as that Torpor plus a pool size
//! (`--spawn-torpor-pool-size`), the byte forwarder (`--spawn-floor`),
//! Torpors with one worker and a small pool in front of the baseline
//! (`--spawn-torpor-pool`), and a Torpor with a MariaDB of its own
//! (`--spawn-torpor-serverless`) or of an autoscaled container
//! (`--spawn-torpor-autoscale`). Dropping [`Spawned`] stops them,
//! proxies first.

use std::path::{Path, PathBuf};

use anyhow::Context;
use torpor::scaler::process::{Account, MariadbOptions, MariadbProcess};

use super::child::ChildProcess;
use super::{floor, haproxy, torpor as torpor_target, Origin};
use crate::cli::Settings;
use crate::interrupt::Stop;

/// Everything the suite started. Fields drop in order: the proxies go
/// before the database they forward to.
#[derive(Debug, Default)]
pub struct Spawned {
    /// Torpor with its own MariaDB and admin API, when spawned.
    pub torpor_serverless: Option<torpor_target::ServerlessTorpor>,
    /// Torpor with an autoscaled MariaDB container, when spawned.
    pub torpor_autoscale: Option<super::autoscale::AutoscaleTorpor>,
    /// Torpor, when spawned.
    pub torpor: Option<ChildProcess>,
    /// Torpors set up as `torpor` plus `--pool-size`: (size, process).
    pub torpor_pool_sizes: Vec<(u32, ChildProcess)>,
    /// HAProxy in front of the MariaDB's Unix socket, when spawned.
    pub haproxy_socket: Option<ChildProcess>,
    /// Torpor in front of the MariaDB's Unix socket, when spawned.
    pub torpor_socket: Option<ChildProcess>,
    /// The byte forwarder, when spawned.
    pub floor: Option<ChildProcess>,
    /// Torpors with a small pool: (pool bound, process).
    pub torpor_pools: Vec<(u32, ChildProcess)>,
    /// HAProxy, when spawned.
    pub haproxy: Option<ChildProcess>,
    /// The private MariaDB, when spawned.
    pub mariadb: Option<MariadbProcess>,
    /// The self-signed certificate the spawned MariaDB and Torpor serve
    /// TLS with (`--spawn-tls`); removed last.
    pub tls: Option<TlsFiles>,
}

/// A certificate and key in a folder of their own, removed on drop.
#[derive(Debug)]
pub struct TlsFiles {
    /// The certificate (clients' CA: it is self-signed).
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    _dir: tempfile::TempDir,
}

impl Spawned {
    /// Starts what the settings ask for. When a later start fails, the
    /// earlier ones are stopped as the partly built value drops.
    pub fn start(settings: &Settings, stop: &Stop) -> anyhow::Result<Spawned> {
        let plan = &settings.spawn;
        let mut spawned = Spawned::default();
        // Build torpor before starting anything: a failed build then costs
        // no server start, and the build's output is not interleaved.
        let torpor_binary = plan
            .torpor_source
            .as_ref()
            .map(torpor_target::binary)
            .transpose()?;
        if plan.mariadb {
            super::child::require_program("mariadbd", "mariadb-server")
                .context("--spawn-mariadb")?;
            eprintln!("starting a private MariaDB …");
            let credentials = &settings.credentials;
            let mut extra_args = Vec::new();
            if plan.tls {
                let (cert, key) = spawned.make_certificate()?;
                extra_args.push(format!("--ssl-cert={}", cert.display()));
                extra_args.push(format!("--ssl-key={}", key.display()));
            }
            let mariadb = MariadbProcess::start(MariadbOptions {
                accounts: vec![Account::superuser(&credentials.user, &credentials.password)],
                ready_timeout: plan.timeout,
                extra_args,
                ..Default::default()
            })
            .context("--spawn-mariadb")?;
            spawned.mariadb = Some(mariadb);
        }
        let backend = spawned.backend(settings);
        if plan.haproxy {
            if let Some(backend) = &backend {
                eprintln!("starting HAProxy in front of {backend} …");
                spawned.haproxy =
                    Some(haproxy::start(backend, plan.timeout, stop).context("--spawn-haproxy")?);
            }
        }
        if let (true, Some(binary), Some(backend)) = (plan.torpor, &torpor_binary, &backend) {
            eprintln!("starting Torpor in front of {backend} …");
            spawned.torpor = Some(torpor_target::start(
                binary,
                backend,
                &spawned.tls_arguments(),
                &settings.credentials,
                plan.timeout,
                stop,
            )?);
        }
        if let (Some(binary), Some(backend)) = (&torpor_binary, &backend) {
            for &size in &plan.torpor_pool_sizes {
                eprintln!("starting Torpor with a pool size of {size} in front of {backend} …");
                // The plain `torpor`'s arguments, so that the pool size
                // is the one difference between the two.
                let mut extra = spawned.tls_arguments();
                extra.extend(torpor_target::pool_size_arguments(size));
                let child = torpor_target::start(
                    binary,
                    backend,
                    &extra,
                    &settings.credentials,
                    plan.timeout,
                    stop,
                )
                .with_context(|| format!("--spawn-torpor-pool-size {size}"))?;
                spawned.torpor_pool_sizes.push((size, child));
            }
        }
        let socket = match (&spawned.mariadb, plan.socket) {
            (Some(mariadb), true) => Some(mariadb.socket().to_path_buf()),
            _ => None,
        };
        if let (true, Some(socket)) = (plan.haproxy, &socket) {
            eprintln!("starting HAProxy in front of {} …", socket.display());
            let server = haproxy::socket_server(socket).context("--spawn-socket")?;
            spawned.haproxy_socket = Some(
                haproxy::start(&server, plan.timeout, stop)
                    .context("--spawn-haproxy --spawn-socket")?,
            );
        }
        if let (true, Some(binary), Some(socket)) = (plan.torpor, &torpor_binary, &socket) {
            eprintln!("starting Torpor in front of {} …", socket.display());
            let path = socket
                .to_str()
                .with_context(|| format!("socket path {} is not UTF-8", socket.display()))?;
            spawned.torpor_socket = Some(
                torpor_target::start(
                    binary,
                    &format!("unix:{path}"),
                    &[],
                    &settings.credentials,
                    plan.timeout,
                    stop,
                )
                .context("--spawn-torpor --spawn-socket")?,
            );
        }
        if let (true, Some(backend)) = (plan.floor, &backend) {
            eprintln!("starting the floor (a byte forwarder) in front of {backend} …");
            spawned.floor =
                Some(floor::start(backend, plan.timeout, stop).context("--spawn-floor")?);
        }
        if let (Some(binary), Some(backend)) = (&torpor_binary, &backend) {
            for &bound in &plan.torpor_pools {
                eprintln!("starting Torpor with a pool of {bound} in front of {backend} …");
                let child = torpor_target::start(
                    binary,
                    backend,
                    &torpor_target::pool_arguments(bound),
                    &settings.credentials,
                    plan.timeout,
                    stop,
                )
                .with_context(|| format!("--spawn-torpor-pool {bound}"))?;
                spawned.torpor_pools.push((bound, child));
            }
        }
        if let (true, Some(binary)) = (plan.torpor_serverless, &torpor_binary) {
            eprintln!("starting Torpor with a MariaDB of its own (serverless workloads) …");
            spawned.torpor_serverless = Some(torpor_target::start_serverless(
                binary,
                &settings.credentials,
                plan.timeout,
                stop,
            )?);
        }
        if let (true, Some(binary)) = (plan.torpor_autoscale, &torpor_binary) {
            eprintln!("starting Torpor with an autoscaled MariaDB container (docker) …");
            spawned.torpor_autoscale = Some(
                super::autoscale::start(
                    binary,
                    &settings.credentials,
                    &settings.autoscale,
                    plan.timeout,
                    stop,
                )
                .context("--spawn-torpor-autoscale")?,
            );
        }
        Ok(spawned)
    }

    /// Makes the self-signed certificate (Torpor's own kind: for
    /// `localhost`, `127.0.0.1` and `::1`) both servers use with
    /// `--spawn-tls`; returns its certificate and key files.
    fn make_certificate(&mut self) -> anyhow::Result<(PathBuf, PathBuf)> {
        let dir = tempfile::Builder::new()
            .prefix("torpor-bench-tls-")
            .tempdir()
            .context("a folder for the TLS certificate")?;
        torpor::tls::TlsSettings::load(&torpor::config::TlsConfig::default(), dir.path())
            .context("making a self-signed certificate")?;
        let (cert, key) = torpor::tls::self_signed_paths(dir.path());
        self.tls = Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            _dir: dir,
        });
        Ok((cert, key))
    }

    /// The TLS arguments of the Torpors in front of the baseline: with
    /// `--spawn-tls`, MariaDB's certificate, so that one CA verifies both.
    fn tls_arguments(&self) -> Vec<String> {
        match &self.tls {
            Some(files) => vec![
                "--tls-cert".to_string(),
                files.cert.display().to_string(),
                "--tls-key".to_string(),
                files.key.display().to_string(),
            ],
            None => Vec::new(),
        }
    }

    /// The CA file TLS clients verify the spawned servers with, when
    /// `--spawn-tls` made one.
    pub fn tls_ca(&self) -> Option<&Path> {
        self.tls.as_ref().map(|files| files.cert.as_path())
    }

    /// Why the process behind a spawned target is gone, if it is: a
    /// process killed mid-run (by a neighbour's `pkill`, the OOM killer)
    /// is named, not left to show as a string of refused connections.
    pub fn exit_report(&mut self, origin: Origin) -> Option<String> {
        match origin {
            Origin::Given => None,
            Origin::SpawnedHaproxy => self.haproxy.as_mut()?.exit_report(),
            Origin::SpawnedTorpor => self.torpor.as_mut()?.exit_report(),
            Origin::SpawnedHaproxySocket => self.haproxy_socket.as_mut()?.exit_report(),
            Origin::SpawnedTorporSocket => self.torpor_socket.as_mut()?.exit_report(),
            Origin::SpawnedFloor => self.floor.as_mut()?.exit_report(),
            Origin::SpawnedTorporServerless => self.torpor_serverless.as_mut()?.child.exit_report(),
            Origin::SpawnedTorporAutoscale => self.torpor_autoscale.as_mut()?.child.exit_report(),
            Origin::SpawnedTorporPool(bound) => self
                .torpor_pools
                .iter_mut()
                .find(|(b, _)| *b == bound)?
                .1
                .exit_report(),
            Origin::SpawnedTorporPoolSize(size) => self
                .torpor_pool_sizes
                .iter_mut()
                .find(|(s, _)| *s == size)?
                .1
                .exit_report(),
            Origin::SpawnedMariadb => {
                let pid = self.mariadb.as_ref()?.pid()?;
                (!crate::procfs::is_running(pid))
                    .then(|| format!("the spawned mariadbd (pid {pid}) exited during the run"))
            }
        }
    }

    /// What spawned proxies forward to: the spawned MariaDB, else the
    /// first target given on the command line.
    fn backend(&self, settings: &Settings) -> Option<String> {
        if let Some(mariadb) = &self.mariadb {
            return Some(mariadb.addr().to_string());
        }
        settings.targets.first().map(|first| first.address())
    }
}
