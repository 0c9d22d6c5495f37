//! The policy replayed on usage recorded from real runs (the bench's
//! `autoscale` workload writes them: `autoscale-<target>-trace.csv`), so
//! that its decisions are tested on what a loaded MariaDB really looks
//! like, noise and all, not only on tidy made-up series.
//!
//! `stepped-load-docker.csv`: a docker service between 0.5 CPU / 512 MiB
//! and 1.5 CPU / 1024 MiB, steps of 0.5 CPU / 256 MiB, scale-down after
//! 5 s, under idle (0–5 s) → 1 client (5–20 s) → 8 clients (20–45 s) →
//! idle (45–70 s), on a 2-core machine shared with builds (the clients
//! and Torpor on the same cores: at 1 CPU the server got about 0.85, so
//! it never reached 1.5). The live autoscaler grew to 1 CPU / 768 MiB at
//! +20.4 s and shrank back to 0.5 CPU / 512 MiB at +48.4 s; times are
//! the autoscaler's own sample times.

use std::time::Duration;

use super::{Autoscale, Decision, Policy, Sample};
use crate::scaler::driver::Resources;
use crate::scaler::usage::Usage;

/// One recorded row: when, what the backend used, and its limits then.
struct Row {
    at: Duration,
    sample: Sample,
    current: Resources,
}

fn rows(csv: &str) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    for line in csv.lines().skip(1).filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split(',').collect();
        let int = |i: usize| f[i].parse::<u64>().expect("an integer");
        let current = Resources {
            cpus: f[5].parse().expect("cpus"),
            memory_mib: int(6),
        };
        let at = Duration::from_millis(int(0));
        let usage = Usage {
            cpu_nanos: int(1),
            memory_bytes: int(2),
            working_set_bytes: int(3),
            cpu_limit: Some(current.cpus),
            memory_limit_bytes: Some(current.memory_mib * 1024 * 1024),
        };
        // The admin API shows the autoscaler's last sample: two reads
        // between its samples show the same one.
        if rows
            .last()
            .is_some_and(|r| r.sample.usage.cpu_nanos == usage.cpu_nanos)
        {
            continue;
        }
        rows.push(Row {
            at,
            sample: Sample {
                at,
                usage,
                buffer_pool_bytes: int(4),
            },
            current,
        });
    }
    rows
}

/// The bench's autoscale settings (bench/src/targets/autoscale.rs).
fn bench_config() -> Autoscale {
    Autoscale {
        min: Resources {
            cpus: 0.5,
            memory_mib: 512,
        },
        max: Resources {
            cpus: 1.5,
            memory_mib: 1024,
        },
        cpu_step: 0.5,
        memory_step_mib: 256,
        down_over: Duration::from_secs(5),
        ..Autoscale::default()
    }
}

/// Replays `rows` as the actor would. A row's limits are those after its
/// sample (the actor resizes right after deciding, before the view is
/// read): the policy saw the row before's. A decision is applied before
/// the next sample, which the recording shows as the limits changing;
/// until they do, nothing more is decided.
fn replay(rows: &[Row]) -> Vec<(Duration, Decision)> {
    let mut policy = Policy::new(bench_config());
    let mut decisions: Vec<(Duration, Decision)> = Vec::new();
    let mut waiting_for: Option<Resources> = None;
    let mut limits = rows.first().map(|r| r.current);
    for row in rows {
        let Some(seen) = limits.replace(row.current) else {
            continue;
        };
        if let Some(to) = waiting_for {
            if seen != to {
                continue;
            }
            waiting_for = None;
            policy.restart_windows();
        }
        if let Some(decision) = policy.observe(row.sample, seen) {
            waiting_for = Some(decision.to);
            decisions.push((row.at, decision));
        }
    }
    decisions
}

#[test]
fn a_stepped_load_grows_at_the_overload_and_shrinks_once_idle() {
    let rows = rows(include_str!("stepped-load-docker.csv"));
    assert!(rows.len() > 200, "the trace is short: {}", rows.len());
    let decisions = replay(&rows);
    let secs = |d: &Duration| d.as_secs_f64();
    // Nothing before the overload: idle, then one client below 90 % of
    // half a CPU.
    assert!(
        decisions.iter().all(|(at, _)| secs(at) >= 20.0),
        "decided before the overload: {decisions:?}"
    );
    // Up within 1.5 s of the 8 clients, and no step down while they run.
    let first = decisions.first().expect("a decision");
    assert!(
        secs(&first.0) < 21.5 && first.1.to.cpus > 0.5,
        "{decisions:?}"
    );
    assert!(
        decisions
            .iter()
            .filter(|(at, _)| secs(at) < 45.0)
            .all(|(_, d)| d.to.cpus > 0.5),
        "{decisions:?}"
    );
    // Back to the smallest size once idle (the 5 s average falls under
    // 20 % of the limit a few seconds into the silence).
    let last = decisions.last().expect("a decision");
    assert!(secs(&last.0) >= 45.0, "{decisions:?}");
    assert_eq!(last.1.to, bench_config().min, "{decisions:?}");
    // What the live autoscaler did, and when (within a sample or two).
    let live = [(20.4, 1.0, 768), (48.4, 0.5, 512)];
    assert_eq!(decisions.len(), live.len(), "{decisions:?}");
    for ((at, decision), (when, cpus, memory_mib)) in decisions.iter().zip(live) {
        assert!((secs(at) - when).abs() < 0.5, "{at:?} against {when}");
        assert_eq!(decision.to, Resources { cpus, memory_mib });
    }
}
