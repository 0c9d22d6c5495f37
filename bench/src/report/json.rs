//! The JSON report: the whole [`Report`] model, every round's value
//! included, for tooling and for comparing runs over time.

use std::path::Path;

use anyhow::Context;

use super::Report;

/// Writes `report` as pretty-printed JSON to `path`.
pub fn write(report: &Report, path: &Path) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(report).context("serializing the report")?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample_report;

    #[test]
    fn json_holds_targets_workloads_metrics_and_reasons() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("report.json");
        write(&sample_report(), &path).expect("written");
        let text = std::fs::read_to_string(&path).expect("readable");
        let value: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(value["tool"], "torpor-bench");
        assert_eq!(value["baseline"], "direct");
        assert_eq!(value["targets"][1]["name"], "haproxy");
        assert_eq!(value["targets"][1]["spawned"], "haproxy");
        let workloads = value["workloads"].as_array().expect("workloads");
        let names: Vec<_> = workloads
            .iter()
            .filter_map(|w| w["name"].as_str())
            .collect();
        assert_eq!(names, ["point-select", "throughput", "wake-after-park"]);
        let p50 = &workloads[0]["metrics"][0];
        assert_eq!(p50["name"], "p50");
        assert_eq!(p50["unit"], "us");
        assert_eq!(p50["better"], "lower");
        assert_eq!(p50["values"][0]["target"], "direct");
        assert_eq!(p50["values"][0]["rounds"].as_array().map(Vec::len), Some(3));
        assert!(p50["values"][1]["ratio"].as_f64().is_some());
        assert_eq!(workloads[1]["metrics"][0]["connections"], 1);
        assert_eq!(workloads[2]["targets"][0]["status"], "not_available");
        assert_eq!(workloads[2]["targets"][0]["detail"], "not a Torpor target");
        assert!(workloads[0]["cdf"][0]["points"]
            .as_array()
            .is_some_and(|p| !p.is_empty()));
    }
}
