//! Figures and what is computed from them: a [`Metric`] names what a
//! number means, [`Spread`] summarizes a metric over rounds (median, min,
//! max), [`ratio`] compares it to the baseline, and [`LatencyHistogram`]
//! holds per-query latencies at HDR precision.
//!
//! Every figure the suite shows is a median over rounds: a single run on
//! a shared machine says more about the neighbours than about the target.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// The unit of a figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Unit {
    /// Microseconds of wall-clock latency.
    #[serde(rename = "us")]
    Micros,
    /// Queries (or transactions, as the metric says) per second.
    #[serde(rename = "per_second")]
    PerSecond,
    /// Megabytes (10^6 bytes) of row data per second.
    #[serde(rename = "MB/s")]
    MegabytesPerSecond,
    /// Microseconds of CPU time (user + system) per query.
    #[serde(rename = "us_cpu_per_query")]
    CpuMicrosPerQuery,
    /// KiB of resident memory per connection.
    #[serde(rename = "KiB_per_connection")]
    KibPerConnection,
    /// MiB of resident memory.
    #[serde(rename = "MiB")]
    Mebibytes,
    /// A number of events (errors, suspends).
    #[serde(rename = "count")]
    Count,
    /// Seconds of wall-clock time (how long a scaler took to act).
    #[serde(rename = "s")]
    Seconds,
    /// A share, in per cent (a hit ratio).
    #[serde(rename = "percent")]
    Percent,
    /// A plain ratio of two figures of the same run (×).
    #[serde(rename = "ratio")]
    Ratio,
}

impl Unit {
    /// How the unit is written after a number.
    pub fn symbol(self) -> &'static str {
        match self {
            Unit::Micros => "µs",
            Unit::PerSecond => "/s",
            Unit::MegabytesPerSecond => "MB/s",
            Unit::CpuMicrosPerQuery => "µs/q",
            Unit::KibPerConnection => "KiB/conn",
            Unit::Mebibytes => "MiB",
            Unit::Count => "#",
            Unit::Seconds => "s",
            Unit::Percent => "%",
            Unit::Ratio => "×",
        }
    }
}

/// Which way is good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    /// Latency, CPU, memory.
    Lower,
    /// Throughput.
    Higher,
}

/// What a number means.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metric {
    /// Short name, e.g. `p99`, `qps`.
    pub name: String,
    /// Its unit.
    pub unit: Unit,
    /// Which way is good.
    pub better: Better,
    /// The number of client connections it was measured with, when the
    /// workload varies it (drawn as the x axis of the throughput chart).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections: Option<u32>,
}

impl Metric {
    /// A latency in microseconds.
    pub fn latency(name: &str) -> Metric {
        Metric::new(name, Unit::Micros, Better::Lower)
    }

    /// A number of events, where fewer is better (errors).
    pub fn count(name: &str, better: Better) -> Metric {
        Metric::new(name, Unit::Count, better)
    }

    /// A rate per second.
    pub fn rate(name: &str) -> Metric {
        Metric::new(name, Unit::PerSecond, Better::Higher)
    }

    /// Any metric.
    pub fn new(name: &str, unit: Unit, better: Better) -> Metric {
        Metric {
            name: name.to_string(),
            unit,
            better,
            connections: None,
        }
    }

    /// The same metric, measured with `connections` clients.
    pub fn at_connections(mut self, connections: u32) -> Metric {
        self.connections = Some(connections);
        self
    }

    /// Name with the connection count, e.g. `qps @16`.
    pub fn label(&self) -> String {
        match self.connections {
            Some(c) => format!("{} @{c}", self.name),
            None => self.name.clone(),
        }
    }
}

/// One measured number.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// What it is.
    pub metric: Metric,
    /// Its value in the metric's unit.
    pub value: f64,
}

/// A metric over rounds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    /// The median (mean of the two middle values for an even count).
    pub median: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
}

/// Median, min and max of `values`; `None` when there is no finite value.
pub fn spread(values: &[f64]) -> Option<Spread> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    Some(Spread {
        median,
        min: sorted[0],
        max: sorted[n - 1],
    })
}

/// `value / baseline`, or `None` when that means nothing: a zero or
/// non-finite baseline, or a negative value or baseline (a difference of
/// two latencies, such as `state-diff`'s diff cost, can be below zero
/// within noise, and its ratio would read as nonsense).
pub fn ratio(value: f64, baseline: f64) -> Option<f64> {
    let r = value / baseline;
    (baseline > 0.0 && value >= 0.0 && r.is_finite()).then_some(r)
}

/// The highest latency recorded exactly: one minute. Longer ones are
/// clamped to it rather than lost.
const MAX_NANOS: u64 = 60_000_000_000;

/// Per-operation latencies, in nanoseconds, three significant digits.
#[derive(Debug, Clone)]
pub struct LatencyHistogram(Histogram<u64>);

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram::new()
    }
}

/// One point of a latency CDF.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CdfPoint {
    /// Share of operations at or below `micros`, in percent.
    pub percentile: f64,
    /// Latency in microseconds.
    pub micros: f64,
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> LatencyHistogram {
        // Constant bounds that hdrhistogram accepts (low >= 1, high >= 2 *
        // low, sigfig <= 5): this cannot fail.
        let histogram =
            Histogram::new_with_bounds(1, MAX_NANOS, 3).expect("valid constant histogram bounds");
        LatencyHistogram(histogram)
    }

    /// Records one operation's latency.
    pub fn record(&mut self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.0.saturating_record(nanos.clamp(1, MAX_NANOS));
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        // Both have the same bounds, so the addition cannot overflow them.
        let _ = self.0.add(&other.0);
    }

    /// How many operations were recorded.
    pub fn len(&self) -> u64 {
        self.0.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Latency at `percentile` (0..=100), in microseconds.
    pub fn micros_at(&self, percentile: f64) -> f64 {
        // 99.9 / 100 is 0.9990000000000001 in binary floating point; times
        // 1000 operations that rounds up to the 1000th, so p99.9 of a
        // thousand values would be the max. A nudge far below one rank
        // (for any count under a billion) keeps ranks where they belong.
        let quantile = (percentile / 100.0 - 1e-12).clamp(0.0, 1.0);
        self.0.value_at_quantile(quantile) as f64 / 1000.0
    }

    /// The largest latency, in microseconds.
    pub fn max_micros(&self) -> f64 {
        self.0.max() as f64 / 1000.0
    }

    /// p50, p90, p99, p99.9 and max, in microseconds.
    pub fn figures(&self) -> Vec<Figure> {
        let mut figures: Vec<Figure> =
            [("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9)]
                .into_iter()
                .map(|(name, p)| Figure {
                    metric: Metric::latency(name),
                    value: self.micros_at(p),
                })
                .collect();
        figures.push(Figure {
            metric: Metric::latency("max"),
            value: self.max_micros(),
        });
        figures
    }

    /// The CDF at HDR resolution: points get denser towards the tail, a
    /// few per "nine".
    pub fn cdf(&self) -> Vec<CdfPoint> {
        if self.is_empty() {
            return Vec::new();
        }
        let mut points: Vec<CdfPoint> = self
            .0
            .iter_quantiles(4)
            .map(|step| CdfPoint {
                percentile: step.quantile_iterated_to() * 100.0,
                micros: self.0.highest_equivalent(step.value_iterated_to()) as f64 / 1000.0,
            })
            .collect();
        points.dedup_by(|a, b| a.percentile == b.percentile);
        points
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        let s = spread(&[5.0, 1.0, 3.0]).expect("values");
        assert_eq!((s.median, s.min, s.max), (3.0, 1.0, 5.0));
        let s = spread(&[4.0, 1.0, 3.0, 2.0]).expect("values");
        assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 4.0));
        let s = spread(&[7.0]).expect("values");
        assert_eq!((s.median, s.min, s.max), (7.0, 7.0, 7.0));
    }

    #[test]
    fn spread_ignores_non_finite_values_and_empty_input() {
        assert_eq!(spread(&[]), None);
        assert_eq!(spread(&[f64::NAN]), None);
        let s = spread(&[f64::INFINITY, 2.0, f64::NAN]).expect("values");
        assert_eq!(s.median, 2.0);
    }

    #[test]
    fn ratios_to_the_baseline() {
        assert_eq!(ratio(150.0, 100.0), Some(1.5));
        assert_eq!(ratio(50.0, 100.0), Some(0.5));
        assert_eq!(ratio(1.0, 0.0), None);
        assert_eq!(ratio(0.0, 0.0), None);
        assert_eq!(ratio(f64::NAN, 1.0), None);
        assert_eq!(ratio(100.0, -20.0), None);
        assert_eq!(ratio(-20.0, 100.0), None);
    }

    #[test]
    fn hdr_percentiles_of_a_known_distribution() {
        let mut h = LatencyHistogram::new();
        // 1..=1000 µs, once each.
        for micros in 1..=1000u64 {
            h.record(Duration::from_micros(micros));
        }
        assert_eq!(h.len(), 1000);
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.001 + 0.001;
        assert!(close(h.micros_at(50.0), 500.0), "p50 {}", h.micros_at(50.0));
        assert!(close(h.micros_at(90.0), 900.0), "p90 {}", h.micros_at(90.0));
        assert!(close(h.micros_at(99.0), 990.0), "p99 {}", h.micros_at(99.0));
        assert!(
            close(h.micros_at(99.9), 999.0),
            "p99.9 {}",
            h.micros_at(99.9)
        );
        assert!(close(h.max_micros(), 1000.0), "max {}", h.max_micros());
        let names: Vec<_> = h.figures().into_iter().map(|f| f.metric.name).collect();
        assert_eq!(names, ["p50", "p90", "p99", "p99.9", "max"]);
    }

    #[test]
    fn merged_histograms_count_both_and_clamp_outliers() {
        let mut a = LatencyHistogram::new();
        let mut b = LatencyHistogram::new();
        a.record(Duration::from_micros(10));
        b.record(Duration::from_secs(3600));
        b.record(Duration::ZERO);
        a.merge(&b);
        assert_eq!(a.len(), 3);
        assert!(a.max_micros() <= 60_000_000.0 * 1.001);
    }

    #[test]
    fn cdf_rises_to_one_hundred_percent() {
        let mut h = LatencyHistogram::new();
        assert!(h.cdf().is_empty());
        for micros in 1..=10_000u64 {
            h.record(Duration::from_micros(micros));
        }
        let cdf = h.cdf();
        assert!(cdf.len() > 10);
        assert!(cdf
            .windows(2)
            .all(|w| w[0].percentile < w[1].percentile && w[0].micros <= w[1].micros));
        let last = cdf.last().expect("points");
        assert_eq!(last.percentile, 100.0);
    }

    #[test]
    fn metric_labels_carry_the_connection_count() {
        assert_eq!(Metric::rate("qps").at_connections(16).label(), "qps @16");
        assert_eq!(Metric::latency("p99").label(), "p99");
    }
}
