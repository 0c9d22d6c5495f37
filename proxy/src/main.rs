//! The `torpor` binary: parse flags, start the workers, wait for a signal.

use clap::Parser;
use torpor::config::{BackendConfig, Cli};
use torpor::scaler::process::{self, Account, MariadbOptions, MariadbProcess};
use torpor::Proxy;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let spawn = cli.spawn_mariadb;
    let spawn_datadir = cli.spawn_datadir.clone();
    let mut config = match cli.into_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("torpor: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    torpor::logging::init(config.log_format, &config.log_level);
    // Kept alive until the proxy has stopped; dropping it stops MariaDB.
    let mut spawned: Option<MariadbProcess> = None;
    if spawn {
        match spawn_mariadb(&config, spawn_datadir) {
            Ok(mariadb) => {
                tracing::info!(addr = %mariadb.addr(), datadir = %mariadb.datadir().display(), "private MariaDB started");
                config.backend = Some(BackendConfig {
                    address: mariadb.addr().to_string(),
                    connect_timeout_ms: 5_000,
                });
                spawned = Some(mariadb);
            }
            Err(e) => {
                eprintln!("torpor: cannot start a private MariaDB: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    let proxy = match Proxy::start(config) {
        Ok(proxy) => proxy,
        Err(e) => {
            eprintln!("torpor: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if let Err(e) = proxy.shutdown_handle().install_signal_handlers() {
        eprintln!("torpor: cannot install signal handlers: {e}");
        return std::process::ExitCode::FAILURE;
    }
    let clean = proxy.join();
    drop(spawned);
    if clean {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

fn spawn_mariadb(
    config: &torpor::Config,
    datadir: Option<std::path::PathBuf>,
) -> Result<MariadbProcess, process::ProcessError> {
    process::ensure_installed()?;
    let accounts = config
        .users
        .iter()
        .filter_map(|u| {
            let secret = u.password.clone().or_else(|| u.password_hash.clone())?;
            Some(Account {
                user: u.name.clone(),
                password: secret,
            })
        })
        .collect();
    if let Some(dir) = &datadir {
        std::fs::create_dir_all(dir).map_err(|source| process::ProcessError::Io {
            step: "creating the datadir",
            source,
        })?;
    }
    MariadbProcess::start(MariadbOptions {
        datadir,
        accounts,
        ..MariadbOptions::default()
    })
}
