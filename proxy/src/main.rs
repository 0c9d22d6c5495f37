//! The `torpor` binary: parse flags, start the services and workers, wait
//! for a signal.

use clap::Parser;
use torpor::config::Cli;
use torpor::Proxy;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let config = match cli.into_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("torpor: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    torpor::logging::init(config.log_format, &config.log_level);
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
    if proxy.join() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
