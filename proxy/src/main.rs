//! The `torpor` binary: parse flags, start the services and workers, wait
//! for a signal: SIGTERM/SIGINT stop, SIGHUP reloads the configuration
//! (the file again, with the same flags over it).

use torpor::config::Cli;
use torpor::Proxy;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse_with_defaults();
    let config = match cli.clone().into_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("torpor: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    // Held to the end of main: the lines still waiting are written out
    // when it drops, on every way out below.
    let _log_writer = torpor::logging::init(config.log_format, &config.log_level);
    for warning in torpor::config::secrets::command_line_warnings(&cli) {
        tracing::warn!("{warning}");
    }
    raise_file_limit();
    // Caught before anything listens: a SIGTERM (or a SIGHUP, whose default
    // action also kills) while Torpor starts is acted on once it runs, not
    // a kill in the middle of serving its first clients.
    let (stop_signals, reload_signals) = match (
        torpor::shutdown::Shutdown::catch_stop_signals(),
        signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP]),
    ) {
        (Ok(stop), Ok(reload)) => (stop, reload),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("torpor: cannot install signal handlers: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let proxy = match Proxy::start(config) {
        Ok(proxy) => proxy,
        Err(e) => {
            eprintln!("torpor: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if let Err(e) = proxy
        .shutdown_handle()
        .install_signal_handlers(stop_signals)
    {
        eprintln!("torpor: cannot install signal handlers: {e}");
        return std::process::ExitCode::FAILURE;
    }
    if let Err(e) = reload_on_sighup(cli, proxy.reloader(), reload_signals) {
        eprintln!("torpor: cannot install the SIGHUP handler: {e}");
        return std::process::ExitCode::FAILURE;
    }
    if proxy.join() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

/// Raises the soft limit on open files to the hard one: each client and
/// each backend connection is a descriptor, and the usual soft default
/// (1024) would refuse clients (EMFILE) long before memory runs out.
fn raise_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct
    // passed, which lives on this stack frame.
    let raised = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        if limit.rlim_cur >= limit.rlim_max {
            return;
        }
        let from = limit.rlim_cur;
        limit.rlim_cur = limit.rlim_max;
        (libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0).then_some(from)
    };
    match raised {
        Some(from) => tracing::info!(from, to = limit.rlim_max, "raised the open files limit"),
        None => tracing::warn!(
            "cannot raise the open files limit: {}",
            std::io::Error::last_os_error()
        ),
    }
}

/// Reloads on each SIGHUP, from a thread of its own: the configuration is
/// read again as at start (the file, the flags over it) and applied if it
/// can be; the outcome is logged either way.
fn reload_on_sighup(
    cli: Cli,
    reloader: torpor::reload::Reloader,
    mut signals: signal_hook::iterator::Signals,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("torpor-reload".into())
        .spawn(move || {
            for _ in signals.forever() {
                tracing::info!("SIGHUP: reloading the configuration");
                reloader.reload_and_log(cli.clone().into_config());
            }
        })?;
    Ok(())
}
