//! The Markdown report: the run's context, the headline ratios, one table
//! per workload, the reasons behind cells without figures, and the charts
//! when they sit in the same folder.

use super::svg::Chart;
use super::{
    build_warning, cell_text, format_ratio, headlines, load_text, method_line, metric_label, notes,
    status_text, Report,
};

/// The report as Markdown; `charts` are linked under their workloads.
pub fn render(report: &Report, charts: &[Chart]) -> String {
    let mut md = String::from("# torpor-bench report\n\n");
    if report.interrupted {
        md.push_str("> **Interrupted**: the figures cover the rounds completed.\n\n");
    }
    if let Some(warning) = build_warning(report) {
        md.push_str(&format!("> **Note**: {warning}.\n\n"));
    }
    let mut context = format!(
        "Run {} → {}: {}, {} CPUs",
        report.started_at,
        report.finished_at,
        method_line(report),
        report.host.cpus
    );
    if let Some(kernel) = &report.host.kernel {
        context.push_str(&format!(", Linux {kernel}"));
    }
    if let Some(load) = load_text(&report.host) {
        context.push_str(&format!(", {load}"));
    }
    md.push_str(&context);
    md.push_str(".\n\n");
    md.push_str(&format!(
        "Baseline: **{}**. Each cell is the median over rounds, [min–max] over rounds, and ×ratio \
         to the baseline's median. ↓ lower is better, ↑ higher is better. Targets were interleaved \
         within every round (A B C, A B C, …) so machine noise hits them alike; compare ratios, \
         not absolute times.\n\n",
        escape(&report.baseline)
    ));
    md.push_str("| target | address | pid | spawned |\n|---|---|---|---|\n");
    for t in &report.targets {
        md.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            escape(&t.name),
            escape(&t.address),
            t.pid.map_or("–".to_string(), |p| p.to_string()),
            t.spawned.as_deref().unwrap_or("no")
        ));
    }
    md.push('\n');
    let lines = headlines(report);
    if !lines.is_empty() && report.targets.len() > 1 {
        md.push_str("## Headline ratios\n\n| figure |");
        for t in report.targets.iter().skip(1) {
            md.push_str(&format!(" {} |", escape(&t.name)));
        }
        md.push_str("\n|---|");
        md.push_str(&"---:|".repeat(report.targets.len() - 1));
        md.push('\n');
        for line in &lines {
            md.push_str(&format!("| {} |", escape(&line.label)));
            for ratio in line.ratios.iter().skip(1) {
                md.push_str(&format!(
                    " {} |",
                    ratio.map_or("–".to_string(), format_ratio)
                ));
            }
            md.push('\n');
        }
        md.push('\n');
    }
    for workload in &report.workloads {
        md.push_str(&format!(
            "## {}\n\n{}\n\n",
            workload.name,
            escape(&workload.description)
        ));
        if !workload.metrics.is_empty() {
            md.push_str("| metric |");
            for t in &report.targets {
                md.push_str(&format!(" {} |", escape(&t.name)));
            }
            md.push_str("\n|---|");
            md.push_str(&"---:|".repeat(report.targets.len()));
            md.push('\n');
            for metric in &workload.metrics {
                md.push_str(&format!("| {} |", escape(&metric_label(&metric.metric))));
                for (i, (cell, status)) in metric.values.iter().zip(&workload.targets).enumerate() {
                    let text = cell_text(cell, metric.metric.unit, i == 0)
                        .unwrap_or_else(|| status_text(status).to_string());
                    md.push_str(&format!(" {} |", escape(&text)));
                }
                md.push('\n');
            }
            md.push('\n');
        }
        let notes = notes(workload);
        for note in &notes {
            md.push_str(&format!("- {}\n", escape(note)));
        }
        if !notes.is_empty() {
            md.push('\n');
        }
        for chart in charts.iter().filter(|c| c.workload == workload.name) {
            md.push_str(&format!(
                "![{}]({})\n\n",
                escape(&chart.title),
                chart.file_name
            ));
        }
    }
    md
}

/// Keeps text from breaking a table cell or starting Markdown syntax.
fn escape(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample_report;

    #[test]
    fn markdown_has_a_section_and_table_per_workload() {
        let charts = vec![Chart {
            workload: "point-select".into(),
            file_name: "point-select-cdf.svg".into(),
            title: "point-select latency CDF".into(),
        }];
        let md = render(&sample_report(), &charts);
        for expected in [
            "# torpor-bench report",
            "Baseline: **direct**",
            "| direct | 127.0.0.1:3306 | 4242 | mariadb |",
            "## Headline ratios",
            "| point-select p50 µs ↓ | ×",
            "## point-select",
            "## throughput",
            "## wake-after-park",
            "| metric | direct | haproxy |",
            "| p50 µs ↓ |",
            "| qps @16 /s ↑ |",
            "- direct: not available: not a Torpor target",
            "![point-select latency CDF](point-select-cdf.svg)",
        ] {
            assert!(md.contains(expected), "{expected:?} missing from:\n{md}");
        }
        assert!(!md.contains("\n\n\n"), "no stray blank lines");
    }

    #[test]
    fn pipes_are_escaped() {
        assert_eq!(escape("a|b\nc"), "a\\|b c");
    }
}
