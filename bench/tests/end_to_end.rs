//! The suite as users run it: the `torpor-bench` binary against a real
//! private MariaDB and a real HAProxy, on runs far too short to mean
//! anything. These tests check the mechanics (processes start and stop,
//! every report file appears with the expected names) and never a timing.
//!
//! MariaDB, HAProxy and sysbench are installed in CI; when one is missing
//! the test fails and says what to install rather than skipping.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_torpor-bench");

/// Fails the test, naming the package, unless `program` is installed.
fn require(program: &str, package: &str) {
    assert!(
        torpor::scaler::process::find_program(&[program]).is_some(),
        "{program} is not installed; this test needs it (Debian: apt-get install {package})"
    );
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("torpor-bench binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{} should exist: {e}", path.display()))
}

#[test]
fn short_run_with_spawned_mariadb_and_haproxy_writes_every_report() {
    require("mariadbd", "mariadb-server");
    require("mariadb-install-db", "mariadb-server");
    require("haproxy", "haproxy");
    require("sysbench", "sysbench");
    let out = tempfile::tempdir().expect("temp dir");
    let out_dir = out.path().join("results");
    let out_arg = out_dir.to_string_lossy().into_owned();
    let output = run(&[
        "run",
        "--spawn-mariadb",
        "--spawn-haproxy",
        "--rounds",
        "1",
        "--duration",
        "200ms",
        "--warmup",
        "0s",
        "--connections",
        "1,4",
        "--cpu-connections",
        "2",
        "--idle-connections",
        "4",
        "--sysbench-tables",
        "1",
        "--sysbench-table-size",
        "200",
        "--progress",
        "lines",
        "--out",
        &out_arg,
    ]);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(
        output.status.success(),
        "torpor-bench failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );

    // The table on stdout.
    assert!(stdout.contains("baseline: direct"), "{stdout}");
    assert!(stdout.contains("point-select"), "{stdout}");

    // JSON: both targets with their pids, every workload, honest statuses.
    let json: Value =
        serde_json::from_str(&read(&out_dir.join("report.json"))).expect("valid JSON");
    let targets = json["targets"].as_array().expect("targets");
    let names: Vec<_> = targets.iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, ["direct", "haproxy"]);
    assert!(
        targets.iter().all(|t| t["pid"].as_u64().is_some()),
        "spawned targets have pids"
    );
    let workloads = json["workloads"].as_array().expect("workloads");
    let status = |workload: &str, target: usize| -> String {
        let w = workloads
            .iter()
            .find(|w| w["name"] == workload)
            .unwrap_or_else(|| panic!("workload {workload} missing from the JSON"));
        w["targets"][target]["status"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    for workload in [
        "point-select",
        "prepared-point-select",
        "write-txn",
        "large-result",
        "throughput",
        "cpu-per-query",
        "connect",
        "idle-connections",
        "sysbench-point-select",
        "sysbench-read-only",
    ] {
        for target in 0..2 {
            assert_eq!(
                status(workload, target),
                "measured",
                "{workload} on target {target}\n{stderr}"
            );
        }
    }
    for workload in [
        "wake-after-suspend",
        "wake-after-suspend-connect",
        "wake-after-park",
        "random-suspend",
        "resize-stall",
        "relocate-stall",
    ] {
        for target in 0..2 {
            assert_eq!(
                status(workload, target),
                "not_available",
                "{workload} must not invent figures"
            );
        }
    }

    // `connect`'s hand-made logins went through on both targets: each
    // phase has a time, and the phases add up to their sum's order.
    let connect = workloads
        .iter()
        .find(|w| w["name"] == "connect")
        .expect("connect in the JSON");
    let median = |metric: &str, target: usize| -> f64 {
        connect["metrics"]
            .as_array()
            .and_then(|metrics| metrics.iter().find(|m| m["name"] == metric))
            .and_then(|m| m["values"][target]["median"].as_f64())
            .unwrap_or_else(|| panic!("{metric} of target {target} missing\n{connect}"))
    };
    for target in 0..2 {
        let phases = ["tcp p50", "greeting p50", "login p50", "first query p50"];
        for phase in phases {
            assert!(median(phase, target) > 0.0, "{phase} of target {target}");
        }
        // Medians of parts need not add up to the median of sums, but
        // none may exceed it by far.
        let by_hand = median("by hand p50", target);
        assert!(
            phases.iter().all(|p| median(p, target) < by_hand),
            "a phase longer than the whole login\n{connect}"
        );
    }

    // Markdown, with the charts linked.
    let md = read(&out_dir.join("report.md"));
    for expected in [
        "# torpor-bench report",
        "## point-select",
        "## sysbench-point-select",
        "| metric | direct | haproxy |",
    ] {
        assert!(md.contains(expected), "{expected:?} missing from report.md");
    }
    assert!(md.contains("(point-select-cdf.svg)"), "charts are linked");

    // Charts, each with both targets as series.
    for chart in [
        "point-select-cdf.svg",
        "throughput-qps.svg",
        "throughput-p99.svg",
        "connect-cdf.svg",
    ] {
        let svg = read(&out_dir.join(chart));
        assert!(svg.starts_with("<svg"), "{chart} is SVG");
        assert!(
            svg.contains("direct") && svg.contains("haproxy"),
            "{chart} has both series"
        );
    }
}

#[test]
fn a_torpor_binary_that_never_serves_fails_the_run_clearly() {
    require("mariadbd", "mariadb-server");
    require("mariadb-install-db", "mariadb-server");
    let output = run(&[
        "run",
        "--spawn-mariadb",
        "--spawn-torpor",
        "--torpor-bin",
        "/bin/true",
        "--workload",
        "point-select",
        "--rounds",
        "1",
        "--duration",
        "100ms",
    ]);
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "the run must fail");
    assert!(stderr.contains("--spawn-torpor"), "{stderr}");
    assert!(stderr.contains("torpor exited"), "{stderr}");
    assert!(stderr.contains("before accepting connections"), "{stderr}");
}

#[test]
fn bad_arguments_are_explained() {
    let output = run(&["run", "--target", "direct"]);
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("NAME=HOST:PORT"),
        "{}",
        text(&output.stderr)
    );
    let output = run(&[
        "run",
        "--target",
        "a=127.0.0.1:1",
        "--workload",
        "warp-speed",
    ]);
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("unknown workload"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn workloads_are_listed() {
    let output = run(&["list-workloads"]);
    assert!(output.status.success());
    let stdout = text(&output.stdout);
    for name in [
        "point-select",
        "throughput",
        "sysbench-read-only",
        "wake-after-suspend-connect",
        "random-suspend",
        "relocate-stall",
    ] {
        assert!(stdout.contains(name), "{name} missing from:\n{stdout}");
    }
}
