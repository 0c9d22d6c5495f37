//! SVG charts, drawn with `plotters`' SVG backend:
//!
//! - `<workload>-cdf.svg`: latency by percentile per target, every round
//!   merged, for each workload that keeps a latency histogram. The x axis
//!   is in "nines" (90 %, 99 %, 99.9 %, …) so the tail gets the room it
//!   deserves; the y axis is logarithmic.
//! - `throughput-qps.svg` and `throughput-p99.svg`: median QPS and p99 per
//!   connection count, with min–max bars over rounds.

use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;

use super::{Report, WorkloadSummary};

/// A chart written for a workload.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// The workload it belongs to.
    pub workload: String,
    /// File name inside the SVG folder.
    pub file_name: String,
    /// What it shows.
    pub title: String,
}

const SIZE: (u32, u32) = (900, 540);

/// Series colours, picked to stay apart for the usual 2–4 targets.
const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

/// Writes every chart the report has data for into `dir`.
pub fn write_all(report: &Report, dir: &Path) -> anyhow::Result<Vec<Chart>> {
    let mut charts = Vec::new();
    for workload in &report.workloads {
        if !workload.cdf.is_empty() {
            let chart = Chart {
                workload: workload.name.clone(),
                file_name: format!("{}-cdf.svg", workload.name),
                title: format!("{} latency CDF", workload.name),
            };
            cdf(workload, &dir.join(&chart.file_name), &chart.title)?;
            charts.push(chart);
        }
        for (metric, what) in [("qps", "QPS"), ("p99", "p99 latency")] {
            let series = by_connections(report, workload, metric);
            if series.iter().any(|s| !s.points.is_empty()) {
                let chart = Chart {
                    workload: workload.name.clone(),
                    file_name: format!("{}-{metric}.svg", workload.name),
                    title: format!("{} {what} vs connections", workload.name),
                };
                connections_chart(&series, &dir.join(&chart.file_name), &chart.title, metric)?;
                charts.push(chart);
            }
        }
    }
    Ok(charts)
}

/// `-log10(1 - p)`: 90 % → 1, 99 % → 2, 99.9 % → 3.
fn nines(percentile: f64) -> f64 {
    -(1.0 - percentile / 100.0).log10()
}

fn nines_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    let text = format!("{p:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

fn plot_error(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing a chart: {e}")
}

fn cdf(workload: &WorkloadSummary, path: &Path, title: &str) -> anyhow::Result<()> {
    // The 100 % point (the max) has no finite position in nines: it goes
    // to the right edge, half a nine past the last finite point.
    let finite_max = workload
        .cdf
        .iter()
        .flat_map(|s| &s.points)
        .filter(|p| p.percentile < 100.0)
        .map(|p| nines(p.percentile))
        .fold(1.0, f64::max);
    let x_max = (finite_max + 0.5).ceil();
    let latencies = workload
        .cdf
        .iter()
        .flat_map(|s| &s.points)
        .map(|p| p.micros.max(0.001));
    let (y_min, y_max) = latencies.fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (y_min, y_max) = (y_min * 0.8, (y_max * 1.25).max(y_min * 2.0));

    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .margin_right(40)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(0.0..x_max, (y_min..y_max).log_scale())
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (µs)")
        .x_labels(x_max as usize + 1)
        .x_label_formatter(&|x| {
            if *x >= x_max - 1e-9 {
                "max".to_string()
            } else {
                nines_label(*x)
            }
        })
        .y_labels(12)
        .y_label_formatter(&|y| super::format_number(*y))
        .draw()
        .map_err(plot_error)?;
    for (i, series) in workload.cdf.iter().enumerate() {
        let points: Vec<(f64, f64)> = series
            .points
            .iter()
            .map(|p| {
                let x = if p.percentile >= 100.0 {
                    x_max
                } else {
                    nines(p.percentile).min(x_max)
                };
                (x, p.micros.max(0.001))
            })
            .collect();
        let style = color(i).stroke_width(2);
        chart
            .draw_series(LineSeries::new(points, style))
            .map_err(plot_error)?
            .label(series.target.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color(i).stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(())
}

/// One target's median and min–max per connection count.
#[derive(Debug, Clone, PartialEq)]
struct Series {
    target: String,
    /// (connections, median, min, max).
    points: Vec<(u32, f64, f64, f64)>,
}

fn by_connections(report: &Report, workload: &WorkloadSummary, metric: &str) -> Vec<Series> {
    report
        .targets
        .iter()
        .enumerate()
        .map(|(i, target)| Series {
            target: target.name.clone(),
            points: workload
                .metrics
                .iter()
                .filter(|m| m.metric.name == metric)
                .filter_map(|m| {
                    let cell = m.values.get(i)?;
                    Some((m.metric.connections?, cell.median?, cell.min?, cell.max?))
                })
                .collect(),
        })
        .collect()
}

fn connections_chart(
    series: &[Series],
    path: &Path,
    title: &str,
    metric: &str,
) -> anyhow::Result<()> {
    // Connection counts grow geometrically (1, 16, 64, 256): evenly spaced
    // categories read better than a linear axis.
    let mut counts: Vec<u32> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .collect();
    counts.sort_unstable();
    counts.dedup();
    let position = |c: u32| counts.iter().position(|&x| x == c).unwrap_or(0) as f64;
    let y_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.3))
        .fold(0.0f64, f64::max)
        * 1.15;
    let y_max = if y_max > 0.0 { y_max } else { 1.0 };
    let x_max = counts.len().saturating_sub(1).max(1) as f64;

    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .margin_right(40)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d(-0.3..x_max + 0.3, 0.0..y_max)
        .map_err(plot_error)?;
    let label_counts = counts.clone();
    chart
        .configure_mesh()
        .x_desc("client connections")
        .y_desc(if metric == "qps" {
            "queries per second"
        } else {
            "µs"
        })
        .x_labels(counts.len() * 2 + 2)
        .x_label_formatter(&move |x| {
            let i = x.round();
            if (x - i).abs() > 0.01 || i < 0.0 {
                return String::new();
            }
            label_counts
                .get(i as usize)
                .map(|c| c.to_string())
                .unwrap_or_default()
        })
        .y_label_formatter(&|y| super::format_number(*y))
        .draw()
        .map_err(plot_error)?;
    for (i, s) in series.iter().enumerate() {
        if s.points.is_empty() {
            continue;
        }
        let line: Vec<(f64, f64)> = s.points.iter().map(|p| (position(p.0), p.1)).collect();
        chart
            .draw_series(LineSeries::new(line.clone(), color(i).stroke_width(2)))
            .map_err(plot_error)?
            .label(s.target.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color(i).stroke_width(2))
            });
        chart
            .draw_series(line.iter().map(|&p| Circle::new(p, 4, color(i).filled())))
            .map_err(plot_error)?;
        chart
            .draw_series(s.points.iter().map(|p| {
                PathElement::new(vec![(position(p.0), p.2), (position(p.0), p.3)], color(i))
            }))
            .map_err(plot_error)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample_report;

    #[test]
    fn charts_are_written_with_every_target_as_a_series() {
        let dir = tempfile::tempdir().expect("temp dir");
        let charts = write_all(&sample_report(), dir.path()).expect("charts");
        let names: Vec<_> = charts.iter().map(|c| c.file_name.as_str()).collect();
        assert_eq!(
            names,
            [
                "point-select-cdf.svg",
                "throughput-qps.svg",
                "throughput-p99.svg"
            ]
        );
        for chart in &charts {
            let svg =
                std::fs::read_to_string(dir.path().join(&chart.file_name)).expect("chart written");
            assert!(svg.starts_with("<svg"), "{} is not SVG", chart.file_name);
            assert!(
                svg.contains(&chart.title),
                "{} lacks its title",
                chart.file_name
            );
            for target in ["direct", "haproxy"] {
                assert!(
                    svg.contains(target),
                    "{} lacks series {target}",
                    chart.file_name
                );
            }
        }
        let cdf = std::fs::read_to_string(dir.path().join("point-select-cdf.svg")).expect("cdf");
        assert!(cdf.contains("99%"), "nines axis labels");
        let qps = std::fs::read_to_string(dir.path().join("throughput-qps.svg")).expect("qps");
        assert!(qps.contains("client connections"));
    }

    #[test]
    fn nines_axis_round_trips() {
        assert!((nines(90.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
        assert_eq!(nines_label(0.0), "0%");
        assert_eq!(nines_label(2.0), "99%");
        assert_eq!(nines_label(3.0), "99.9%");
    }
}
