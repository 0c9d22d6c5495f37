//! torpor-bench: Torpor's latency benchmark suite.
//!
//! It measures several targets side by side (a database reached directly,
//! through HAProxy, through Torpor, ...), interleaving them round after
//! round so that a noisy machine hurts every target alike, and reports each
//! figure as the median over rounds with its min and max and its ratio to
//! the first target, the baseline.
//!
//! Map of the modules:
//!
//! - [`cli`]: the command line and the validated [`cli::Settings`].
//! - [`targets`]: what is measured; [`targets::spawn`] launches private
//!   MariaDB, HAProxy, Torpor and floor processes and cleans them up.
//! - [`floor`]: the byte forwarder behind the `floor` target (the hidden
//!   `floor-proxy` subcommand).
//! - [`client`]: connection options for the `mysql` crate and the suite's
//!   own tables.
//! - [`admin`]: Torpor's admin API (list services, suspend, park, wake),
//!   which the serverless workloads drive.
//! - [`workloads`]: one module per family of workloads, behind one trait.
//! - [`sysbench`]: running sysbench and reading its output.
//! - [`runner`]: the interleaved rounds.
//! - [`stats`]: medians, spreads, ratios and latency histograms.
//! - [`procfs`]: CPU time and memory of a process from `/proc`.
//! - [`report`]: the report model and its table, JSON, Markdown and SVG
//!   writers.
//! - [`interrupt`] and [`progress`]: Ctrl-C and the live status line.

mod admin;
mod cli;
mod client;
mod floor;
mod interrupt;
mod procfs;
mod progress;
mod report;
mod runner;
mod stats;
mod sysbench;
mod targets;
mod workloads;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Run(args) => match run(*args) {
            Ok(code) => code,
            Err(error) => {
                eprintln!("torpor-bench: error: {error:#}");
                ExitCode::FAILURE
            }
        },
        cli::Command::ListWorkloads => {
            for kind in workloads::WorkloadKind::ALL {
                println!("{:<28} {}", kind.name(), kind.description());
            }
            ExitCode::SUCCESS
        }
        cli::Command::FloorProxy(args) => match floor::run(args) {
            // It serves until killed; returning at all means it failed.
            Ok(()) => ExitCode::FAILURE,
            Err(error) => {
                eprintln!("torpor-bench floor-proxy: error: {error:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Runs the suite; everything spawned is dropped (stopped) before this
/// returns, on success, on error and on Ctrl-C.
fn run(args: cli::RunArgs) -> anyhow::Result<ExitCode> {
    let stop = interrupt::Stop::install()?;
    let settings = cli::Settings::from_args(args)?;
    workloads::check_programs(&settings.workloads)?;
    let started = std::time::SystemTime::now();
    let load_start = procfs::loadavg();
    // Declared before anything that borrows from it so it is dropped last:
    // spawned servers outlive every connection to them.
    let mut spawned = targets::spawn::Spawned::start(&settings, &stop)?;
    let targets = targets::assemble(&settings, &spawned)?;
    let mut progress = progress::Progress::new(settings.progress);
    progress.message(&format!(
        "targets: {}",
        targets
            .iter()
            .map(|t| t.describe())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let mut watch = |target: &targets::Target| spawned.exit_report(target.origin);
    let records = runner::run(&settings, &targets, &stop, &mut progress, &mut watch)?;
    progress.finish();
    let report = report::Report::build(
        &settings,
        &targets,
        &records,
        report::Timing {
            started,
            finished: std::time::SystemTime::now(),
            load_start,
            load_end: procfs::loadavg(),
            interrupted: stop.is_set(),
        },
    );
    print!("{}", report::table::render(&report));
    let written = report::write_files(&report, &settings.outputs)?;
    for path in written {
        eprintln!("wrote {}", path.display());
    }
    drop(spawned);
    if stop.is_set() {
        eprintln!("interrupted: the report covers the rounds completed");
        return Ok(ExitCode::from(130));
    }
    // A run where a target failed is not a clean run: say so to CI, after
    // the report that explains it has been written.
    let failed: Vec<String> = report
        .workloads
        .iter()
        .flat_map(|w| {
            w.targets
                .iter()
                .filter(|t| t.status == "failed")
                .map(move |t| format!("{} on {}", w.name, t.target))
        })
        .collect();
    if !failed.is_empty() {
        eprintln!("torpor-bench: failed: {}", failed.join(", "));
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
