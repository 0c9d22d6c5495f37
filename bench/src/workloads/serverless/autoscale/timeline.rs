//! What the `autoscale` workload reads from Torpor's admin API while the
//! load runs: the `scaling` view of `GET /services/{name}` turned into
//! [`Point`]s (allocated and used CPU and memory at one instant) and the
//! resizes it lists ([`Resize`]).
//!
//! Pure functions of the JSON, so that a view from a newer Torpor with
//! fields missing or added reads as "unknown", never as a panic or a
//! made-up zero.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

const MIB: f64 = 1024.0 * 1024.0;

/// One reading of the scaling view.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Point {
    /// When it was read, seconds from the start of the load.
    pub at_secs: f64,
    /// CPUs the backend may use.
    pub cpus: Option<f64>,
    /// CPUs it used between Torpor's last two samples.
    pub cpus_used: Option<f64>,
    /// Its memory limit, MiB.
    pub memory_mib: Option<f64>,
    /// Memory it holds that the kernel cannot drop, MiB.
    pub working_set_mib: Option<f64>,
    /// Its InnoDB buffer pool, MiB.
    pub buffer_pool_mib: Option<f64>,
}

/// The point of a `GET /services/{name}` body read at `at`.
pub fn point(service: &Value, at: Duration) -> Point {
    let scaling = &service["scaling"];
    let bytes_as_mib = |v: &Value| v.as_u64().map(|b| b as f64 / MIB);
    Point {
        at_secs: at.as_secs_f64(),
        cpus: scaling["resources"]["cpus"].as_f64(),
        cpus_used: scaling["cpus_used"].as_f64(),
        memory_mib: scaling["resources"]["memory_mib"]
            .as_u64()
            .map(|m| m as f64),
        working_set_mib: bytes_as_mib(&scaling["usage"]["working_set_bytes"]),
        buffer_pool_mib: bytes_as_mib(&scaling["buffer_pool_bytes"]),
    }
}

/// One raw reading of the backend's usage as Torpor's autoscaler saw it:
/// what its policy is fed (a recorded trace replays through the policy's
/// own tests, `proxy/src/scaler/policy/traces/`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TraceRow {
    /// When Torpor's autoscaler took it, ms since the Unix epoch.
    pub sampled_unix_ms: u64,
    /// CPU time the backend used, ns (a counter).
    pub cpu_nanos: u64,
    /// Memory charged to it, bytes.
    pub memory_bytes: u64,
    /// Memory it holds that the kernel cannot drop, bytes.
    pub working_set_bytes: u64,
    /// Its buffer pool, bytes.
    pub buffer_pool_bytes: u64,
    /// Its CPU limit then.
    pub cpus: f64,
    /// Its memory limit then, MiB.
    pub memory_mib: u64,
}

impl TraceRow {
    /// The CSV header [`TraceRow::csv`] lines follow.
    pub const HEADER: &'static str =
        "at_ms,cpu_nanos,memory_bytes,working_set_bytes,buffer_pool_bytes,cpus,memory_mib";

    /// The row of a `GET /services/{name}` body; `None` when a field is
    /// missing (a Torpor that does not show them).
    pub fn of(service: &Value) -> Option<TraceRow> {
        let scaling = &service["scaling"];
        let usage = &scaling["usage"];
        Some(TraceRow {
            sampled_unix_ms: scaling["sampled_at_unix_ms"].as_u64()?,
            cpu_nanos: usage["cpu_nanos"].as_u64()?,
            memory_bytes: usage["memory_bytes"].as_u64()?,
            working_set_bytes: usage["working_set_bytes"].as_u64()?,
            buffer_pool_bytes: scaling["buffer_pool_bytes"].as_u64()?,
            cpus: scaling["resources"]["cpus"].as_f64()?,
            memory_mib: scaling["resources"]["memory_mib"].as_u64()?,
        })
    }

    /// The row as one CSV line, its time in ms from `start_unix_ms`.
    pub fn csv(&self, start_unix_ms: u64) -> String {
        format!(
            "{},{},{},{},{},{},{}",
            self.sampled_unix_ms.saturating_sub(start_unix_ms),
            self.cpu_nanos,
            self.memory_bytes,
            self.working_set_bytes,
            self.buffer_pool_bytes,
            self.cpus,
            self.memory_mib
        )
    }
}

/// CPUs and memory (MiB).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Size {
    /// CPUs.
    pub cpus: f64,
    /// Memory limit, MiB.
    pub memory_mib: u64,
}

impl Size {
    fn from_json(value: &Value) -> Option<Size> {
        Some(Size {
            cpus: value["cpus"].as_f64()?,
            memory_mib: value["memory_mib"].as_u64()?,
        })
    }

    /// `1.5 CPU / 768 MiB`.
    pub fn text(&self) -> String {
        format!("{} CPU / {} MiB", self.cpus, self.memory_mib)
    }
}

/// A resize as the view's `recent` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resize {
    /// When it was applied, milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// What the service had.
    pub from: Size,
    /// What it got.
    pub to: Size,
    /// The policy's reason (`cpu_high`, `cpu_low`, `memory_high`);
    /// `None`: an operator asked.
    pub reason: Option<String>,
    /// From the decision to the limits applied, milliseconds.
    pub took_ms: Option<u64>,
    /// What went wrong, if it was refused or only partly made.
    pub error: Option<String>,
}

impl Resize {
    /// Whether it gave the service more CPU or memory.
    pub fn grows(&self) -> bool {
        self.to.cpus > self.from.cpus || self.to.memory_mib > self.from.memory_mib
    }

    /// Whether it took CPU or memory away.
    pub fn shrinks(&self) -> bool {
        self.to.cpus < self.from.cpus || self.to.memory_mib < self.from.memory_mib
    }

    /// Whether the autoscaler decided it (not an operator).
    pub fn by_policy(&self) -> bool {
        self.reason.is_some()
    }

    /// Seconds from `start_unix_ms`; `None` when it was applied before.
    pub fn offset(&self, start_unix_ms: u64) -> Option<Duration> {
        self.at_unix_ms
            .checked_sub(start_unix_ms)
            .map(Duration::from_millis)
    }
}

/// The resizes of a `GET /services/{name}` body, oldest first; entries
/// that lack a time or a size are left out.
pub fn resizes(service: &Value) -> Vec<Resize> {
    let Some(recent) = service["scaling"]["recent"].as_array() else {
        return Vec::new();
    };
    recent
        .iter()
        .filter_map(|entry| {
            Some(Resize {
                at_unix_ms: entry["at_unix_ms"].as_u64()?,
                from: Size::from_json(&entry["from"])?,
                to: Size::from_json(&entry["to"])?,
                reason: entry["reason"]["kind"].as_str().map(str::to_string),
                took_ms: entry["took_ms"].as_u64(),
                error: entry["error"].as_str().map(str::to_string),
            })
        })
        .collect()
}

/// Adds the resizes of `seen` that `all` does not have yet, keeping
/// `all` in time order: the view keeps only the latest few, so a run
/// collects them as it samples.
pub fn merge(all: &mut Vec<Resize>, seen: Vec<Resize>) {
    for resize in seen {
        if !all.contains(&resize) {
            all.push(resize);
        }
    }
    all.sort_by_key(|r| r.at_unix_ms);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view() -> Value {
        json!({
            "name": "s",
            "state": "active",
            "scaling": {
                "autoscale": true,
                "resources": {"cpus": 1.0, "memory_mib": 768},
                "cpus_used": 0.93,
                "usage": {"cpu_nanos": 5, "memory_bytes": 400_000_000u64,
                          "working_set_bytes": 314_572_800u64},
                "buffer_pool_bytes": 201_326_592u64,
                "recent": [
                    {"at_unix_ms": 1_000_500u64,
                     "from": {"cpus": 0.5, "memory_mib": 512},
                     "to": {"cpus": 1.0, "memory_mib": 768},
                     "reason": {"kind": "cpu_high", "used": 0.49},
                     "took_ms": 120, "error": null},
                    {"at_unix_ms": 1_009_000u64,
                     "from": {"cpus": 1.0, "memory_mib": 768},
                     "to": {"cpus": 0.5, "memory_mib": 512},
                     "reason": null, "took_ms": 80, "error": null},
                    {"at_unix_ms": 1_010_000u64, "from": {}, "to": {}}
                ]
            }
        })
    }

    #[test]
    fn a_trace_row_keeps_the_raw_counters_and_needs_them_all() {
        let mut sampled = view();
        sampled["scaling"]["sampled_at_unix_ms"] = json!(1_002_500u64);
        let row = TraceRow::of(&sampled).expect("a row");
        assert_eq!(
            row.csv(1_000_000),
            "2500,5,400000000,314572800,201326592,1,768"
        );
        assert_eq!(
            TraceRow::HEADER.split(',').count(),
            row.csv(0).split(',').count()
        );
        assert_eq!(TraceRow::of(&view()), None, "no sample time");
        sampled["scaling"]["usage"] = json!({});
        assert_eq!(TraceRow::of(&sampled), None);
    }

    #[test]
    fn a_point_reads_limits_use_and_pool_in_mib() {
        let p = point(&view(), Duration::from_millis(2500));
        assert_eq!(p.at_secs, 2.5);
        assert_eq!(p.cpus, Some(1.0));
        assert_eq!(p.cpus_used, Some(0.93));
        assert_eq!(p.memory_mib, Some(768.0));
        assert_eq!(p.working_set_mib, Some(300.0));
        assert_eq!(p.buffer_pool_mib, Some(192.0));
    }

    #[test]
    fn missing_fields_are_unknown_not_zero() {
        let p = point(&json!({"name": "s", "scaling": null}), Duration::ZERO);
        assert_eq!(
            p,
            Point {
                at_secs: 0.0,
                ..Point::default()
            }
        );
        assert!(resizes(&json!({"scaling": {"recent": "no"}})).is_empty());
    }

    #[test]
    fn resizes_are_read_and_malformed_ones_left_out() {
        let all = resizes(&view());
        assert_eq!(all.len(), 2);
        let up = &all[0];
        assert!(up.grows() && !up.shrinks() && up.by_policy());
        assert_eq!(up.reason.as_deref(), Some("cpu_high"));
        assert_eq!(up.took_ms, Some(120));
        assert_eq!(up.to.text(), "1 CPU / 768 MiB");
        let operator = &all[1];
        assert!(operator.shrinks() && !operator.by_policy());
        assert_eq!(up.offset(1_000_000), Some(Duration::from_millis(500)));
        assert_eq!(up.offset(2_000_000), None, "before the start");
    }

    #[test]
    fn merging_keeps_each_resize_once_in_time_order() {
        let seen = resizes(&view());
        let mut all = vec![seen[1].clone()];
        merge(&mut all, seen.clone());
        merge(&mut all, seen.clone());
        assert_eq!(all, seen);
    }
}
