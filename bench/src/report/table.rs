//! The readable table printed on stdout at the end of a run.

use super::{
    build_warning, cell_text, format_ratio, headlines, load_text, method_line, metric_label, notes,
    status_text, Report,
};

/// The whole report as aligned plain-text tables, one per workload.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let mut header = format!(
        "torpor-bench · {} · baseline: {}",
        method_line(report),
        report.baseline
    );
    header.push_str(&format!(" · {} CPUs", report.host.cpus));
    if let Some(load) = load_text(&report.host) {
        header.push_str(&format!(", {load}"));
    }
    out.push_str(&header);
    out.push('\n');
    out.push_str(&format!(
        "cells: median [min–max] over rounds, ×ratio to {}; ↓ lower is better, ↑ higher is better\n",
        report.baseline
    ));
    if report.interrupted {
        out.push_str("INTERRUPTED: the figures cover the rounds completed\n");
    }
    if let Some(warning) = build_warning(report) {
        out.push_str(&format!("note: {warning}\n"));
    }
    for workload in &report.workloads {
        out.push('\n');
        out.push_str(&format!("{} — {}\n", workload.name, workload.description));
        if !workload.metrics.is_empty() {
            let mut rows = vec![std::iter::once("metric".to_string())
                .chain(report.targets.iter().map(|t| t.name.clone()))
                .collect::<Vec<_>>()];
            for metric in &workload.metrics {
                let mut row = vec![metric_label(&metric.metric)];
                for (i, (cell, status)) in metric.values.iter().zip(&workload.targets).enumerate() {
                    row.push(
                        cell_text(cell, metric.metric.unit, i == 0)
                            .unwrap_or_else(|| status_text(status).to_string()),
                    );
                }
                rows.push(row);
            }
            out.push_str(&grid(&rows, "  "));
        }
        for note in notes(workload) {
            out.push_str(&format!("  {note}\n"));
        }
    }
    // Last, so it is what stays on screen.
    let lines = headlines(report);
    if !lines.is_empty() && report.targets.len() > 1 {
        out.push_str(&format!("\nheadline ratios to {}\n", report.baseline));
        let mut rows = vec![std::iter::once("figure".to_string())
            .chain(report.targets.iter().skip(1).map(|t| t.name.clone()))
            .collect::<Vec<_>>()];
        for line in lines {
            let mut row = vec![line.label];
            row.extend(
                line.ratios
                    .iter()
                    .skip(1)
                    .map(|r| r.map_or("–".to_string(), format_ratio)),
            );
            rows.push(row);
        }
        out.push_str(&grid(&rows, "  "));
    }
    out
}

/// Left-aligned columns, two spaces apart, each line indented.
fn grid(rows: &[Vec<String>], indent: &str) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = indent.to_string();
        for (c, text) in row.iter().enumerate() {
            line.push_str(text);
            let pad = widths[c].saturating_sub(text.chars().count());
            if c + 1 < row.len() {
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample_report;

    #[test]
    fn table_names_targets_metrics_and_reasons() {
        let text = render(&sample_report());
        assert!(text.contains("baseline: direct"));
        for expected in [
            "point-select",
            "throughput",
            "wake-after-park",
            "direct",
            "haproxy",
            "p50 µs ↓",
            "qps /s ↑",
            "qps @16 /s ↑",
            "×0.76",
            "haproxy: failed after some rounds: connecting to haproxy: refused",
            "direct: not available: not a Torpor target",
            "headline ratios to direct",
        ] {
            assert!(
                text.contains(expected),
                "{expected:?} missing from:\n{text}"
            );
        }
    }

    #[test]
    fn columns_line_up() {
        let rows = vec![
            vec!["a".to_string(), "µµ".to_string(), "x".to_string()],
            vec!["long".to_string(), "b".to_string(), "y".to_string()],
        ];
        let text = grid(&rows, "");
        let lines: Vec<&str> = text.lines().collect();
        let column = |line: &str| line.chars().position(|c| c == 'x' || c == 'y');
        assert_eq!(column(lines[0]), column(lines[1]));
    }
}
