//! The `autoscale` workload's chart: allocated against used CPU, memory
//! limit against working set and buffer pool, and the clients' QPS, over
//! the run's time, one panel each on a shared time axis, with the load's
//! phase boundaries drawn across all three.
//!
//! [`series`] turns the sampled points into the lines to draw (pure,
//! tested); [`write()`] draws them with `plotters`' SVG backend.

use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;

use crate::workloads::serverless::autoscale::timeline::Point;

/// Which panel a line goes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Panel {
    /// CPUs.
    Cpu,
    /// MiB.
    Memory,
    /// Queries per second.
    Qps,
}

/// One line of the chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// Its legend.
    pub name: &'static str,
    /// Its panel.
    pub panel: Panel,
    /// Whether it is a limit, drawn as a step (a limit holds until the
    /// next change; it does not slope between samples).
    pub step: bool,
    /// (seconds, value), in time order.
    pub points: Vec<(f64, f64)>,
}

/// What the chart shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    /// Its caption.
    pub title: String,
    /// The sampled points.
    pub points: Vec<Point>,
    /// Queries per second, (middle of the second, rate).
    pub qps: Vec<(f64, f64)>,
    /// Phase starts (seconds) and names.
    pub phases: Vec<(f64, String)>,
    /// The end of the run, seconds.
    pub end_secs: f64,
}

/// The lines to draw: allocated and used CPUs; memory limit, working
/// set and buffer pool; QPS. Readings a point lacks are left out of
/// that line (a gap, not a zero); lines with no point are dropped.
pub fn series(timeline: &Timeline) -> Vec<Line> {
    let pick = |f: fn(&Point) -> Option<f64>| -> Vec<(f64, f64)> {
        timeline
            .points
            .iter()
            .filter_map(|p| Some((p.at_secs, f(p)?)))
            .collect()
    };
    let lines = [
        ("CPUs allocated", Panel::Cpu, true, pick(|p| p.cpus)),
        ("CPUs used", Panel::Cpu, false, pick(|p| p.cpus_used)),
        ("memory limit", Panel::Memory, true, pick(|p| p.memory_mib)),
        (
            "working set",
            Panel::Memory,
            false,
            pick(|p| p.working_set_mib),
        ),
        (
            "buffer pool",
            Panel::Memory,
            true,
            pick(|p| p.buffer_pool_mib),
        ),
        ("QPS", Panel::Qps, false, timeline.qps.clone()),
    ];
    lines
        .into_iter()
        .filter(|(_, _, _, points)| !points.is_empty())
        .map(|(name, panel, step, points)| Line {
            name,
            panel,
            step,
            points: if step { steps(&points) } else { points },
        })
        .collect()
}

/// A step line through `points`: each value holds until the next point's
/// time, where it jumps.
pub fn steps(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(points.len() * 2);
    for (i, &(x, y)) in points.iter().enumerate() {
        if let Some(&(_, before)) = i.checked_sub(1).and_then(|j| points.get(j)) {
            if before != y {
                out.push((x, before));
            }
        }
        out.push((x, y));
    }
    out
}

const SIZE: (u32, u32) = (1000, 900);

const COLORS: [RGBColor; 3] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
];

fn plot_error(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing the autoscale chart: {e}")
}

/// Draws `timeline` into an SVG file at `path`.
pub fn write(timeline: &Timeline, path: &Path) -> anyhow::Result<()> {
    let lines = series(timeline);
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let root = root
        .titled(&timeline.title, ("sans-serif", 22))
        .map_err(plot_error)?;
    let panels = root.split_evenly((3, 1));
    let x_max = timeline.end_secs.max(1.0);
    for (area, (panel, unit)) in panels.iter().zip([
        (Panel::Cpu, "CPUs"),
        (Panel::Memory, "MiB"),
        (Panel::Qps, "queries per second"),
    ]) {
        let mine: Vec<&Line> = lines.iter().filter(|l| l.panel == panel).collect();
        let y_max = mine
            .iter()
            .flat_map(|l| l.points.iter().map(|p| p.1))
            .fold(0.0f64, f64::max)
            * 1.15;
        let y_max = if y_max > 0.0 { y_max } else { 1.0 };
        let mut chart = ChartBuilder::on(area)
            .margin(10)
            .margin_right(30)
            .x_label_area_size(36)
            .y_label_area_size(72)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(plot_error)?;
        // CPUs come in halves and quarters; MiB and QPS in whole numbers.
        let decimals = if panel == Panel::Cpu { 2 } else { 0 };
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc(unit)
            .y_label_formatter(&|y| format!("{y:.decimals$}"))
            .draw()
            .map_err(plot_error)?;
        for (start, name) in &timeline.phases {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(*start, 0.0), (*start, y_max)],
                    BLACK.mix(0.35).stroke_width(1),
                )))
                .map_err(plot_error)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    name.clone(),
                    (*start + x_max * 0.005, y_max * 0.97),
                    ("sans-serif", 13).into_font().color(&BLACK.mix(0.6)),
                )))
                .map_err(plot_error)?;
        }
        for (i, line) in mine.iter().enumerate() {
            let colour = COLORS[i % COLORS.len()];
            chart
                .draw_series(LineSeries::new(line.points.clone(), colour.stroke_width(2)))
                .map_err(plot_error)?
                .label(line.name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                });
        }
        if !mine.is_empty() {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(plot_error)?;
        }
    }
    root.present().map_err(plot_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(at_secs: f64, cpus: f64, used: Option<f64>) -> Point {
        Point {
            at_secs,
            cpus: Some(cpus),
            cpus_used: used,
            memory_mib: Some(512.0),
            working_set_mib: Some(200.0),
            buffer_pool_mib: None,
        }
    }

    fn timeline() -> Timeline {
        Timeline {
            title: "autoscale".into(),
            points: vec![
                point(0.0, 0.5, Some(0.1)),
                point(0.2, 0.5, None),
                point(0.4, 1.0, Some(0.9)),
            ],
            qps: vec![(0.5, 1200.0)],
            phases: vec![(0.0, "idle".into()), (0.3, "8 clients".into())],
            end_secs: 1.0,
        }
    }

    #[test]
    fn limits_are_steps_and_gaps_are_left_out() {
        let lines = series(&timeline());
        let names: Vec<&str> = lines.iter().map(|l| l.name).collect();
        // No buffer pool reading at all: no line.
        assert_eq!(
            names,
            [
                "CPUs allocated",
                "CPUs used",
                "memory limit",
                "working set",
                "QPS"
            ]
        );
        assert_eq!(
            lines[0].points,
            [(0.0, 0.5), (0.2, 0.5), (0.4, 0.5), (0.4, 1.0)]
        );
        assert!(lines[0].step && !lines[1].step);
        assert_eq!(lines[1].points, [(0.0, 0.1), (0.4, 0.9)], "a gap at 0.2 s");
        assert_eq!(lines[4].panel, Panel::Qps);
    }

    #[test]
    fn steps_jump_only_where_the_value_changes() {
        assert!(steps(&[]).is_empty());
        assert_eq!(steps(&[(1.0, 2.0)]), [(1.0, 2.0)]);
        assert_eq!(
            steps(&[(0.0, 1.0), (1.0, 1.0), (2.0, 3.0)]),
            [(0.0, 1.0), (1.0, 1.0), (2.0, 1.0), (2.0, 3.0)]
        );
    }

    #[test]
    fn the_chart_is_written() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("autoscale.svg");
        write(&timeline(), &path).expect("drawn");
        let svg = std::fs::read_to_string(&path).expect("written");
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        for text in ["CPUs allocated", "working set", "8 clients", "QPS"] {
            assert!(svg.contains(text), "no {text:?} in the chart");
        }
    }
}
