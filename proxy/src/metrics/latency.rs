//! `torpor_query_duration_seconds`: the one histogram on the data path,
//! kept as bucket counts from the worker to the scrape.
//!
//! Each worker counts its queries into a [`LocalLatency`] (plain cells),
//! and its one-second flush adds them to the service's [`SharedLatency`]
//! (one atomic add per bucket that was hit). `/metrics` renders those
//! counts as they are. Written here rather than left to the exporter: its
//! histogram keeps raw samples, one push per query at the flush and one
//! more fold per query at the upkeep that follows, where a scrape only
//! ever shows the buckets.

use std::cell::Cell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::service::Service;

/// The metric's name.
pub(super) const QUERY_DURATION: &str = "torpor_query_duration_seconds";

/// Its HELP line.
const HELP: &str = "Time from taking a batch of commands up (including a wait for a backend connection or a wake) to the end of each query's reply.";

/// Upper bounds of the buckets, in nanoseconds: 50 µs (a point select on
/// loopback) to 10 s, roughly 1-2.5-5 per decade.
pub(super) const QUERY_BOUNDS_NS: [u64; 17] = [
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// One per bound, and one past the last (`+Inf`).
const BUCKETS: usize = QUERY_BOUNDS_NS.len() + 1;

/// A worker's queries of one service since its last flush.
#[derive(Debug, Default)]
pub(super) struct LocalLatency {
    /// Per bucket, not cumulative.
    counts: [Cell<u64>; BUCKETS],
    sum_ns: Cell<u64>,
}

impl LocalLatency {
    /// Counts a query that took `ns`.
    #[inline]
    pub(super) fn record(&self, ns: u64) {
        let at = QUERY_BOUNDS_NS.partition_point(|&bound| bound < ns);
        self.counts[at].set(self.counts[at].get() + 1);
        self.sum_ns.set(self.sum_ns.get().saturating_add(ns));
    }

    /// Moves what accumulated into `shared`.
    pub(super) fn flush(&self, shared: &SharedLatency) {
        for (local, total) in self.counts.iter().zip(&shared.counts) {
            let n = local.replace(0);
            if n > 0 {
                total.fetch_add(n, Ordering::Relaxed);
            }
        }
        let sum = self.sum_ns.replace(0);
        if sum > 0 {
            shared.sum_ns.fetch_add(sum, Ordering::Relaxed);
        }
    }
}

/// One service's histogram over every worker, since Torpor started.
#[derive(Debug, Default)]
pub(super) struct SharedLatency {
    /// Per bucket, not cumulative.
    counts: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
}

/// Every service's histogram, by service index; workers take a service's
/// when they learn of it.
#[derive(Debug, Default)]
pub(super) struct Latencies {
    by_service: Mutex<Vec<Arc<SharedLatency>>>,
}

impl Latencies {
    /// The histogram of the service at `index` (made on first use).
    pub(super) fn of(&self, index: usize) -> Arc<SharedLatency> {
        let mut all = self.by_service.lock().unwrap_or_else(|p| p.into_inner());
        if all.len() <= index {
            all.resize_with(index + 1, Default::default);
        }
        Arc::clone(&all[index])
    }

    /// Appends the histogram of every service in `services` (by index)
    /// that workers record for, in the Prometheus text format.
    pub(super) fn render(&self, services: &[Arc<Service>], out: &mut String) {
        let all = self.by_service.lock().unwrap_or_else(|p| p.into_inner());
        let shown: Vec<(&str, &SharedLatency)> = services
            .iter()
            .filter_map(|s| Some((s.name.as_str(), &**all.get(s.index)?)))
            .collect();
        if shown.is_empty() {
            return;
        }
        // A flush runs meanwhile: each bucket is read once, and the
        // count is their total, so the series stays consistent with
        // itself (the sum may be a flush ahead or behind).
        let _ = writeln!(out, "# HELP {QUERY_DURATION} {HELP}");
        let _ = writeln!(out, "# TYPE {QUERY_DURATION} histogram");
        for (name, latency) in shown {
            let service = escape(name);
            let mut cumulative = 0;
            for (at, count) in latency.counts.iter().enumerate() {
                cumulative += count.load(Ordering::Relaxed);
                let le = match QUERY_BOUNDS_NS.get(at) {
                    Some(&bound) => super::seconds(bound).to_string(),
                    None => "+Inf".to_string(),
                };
                let _ = writeln!(
                    out,
                    "{QUERY_DURATION}_bucket{{service=\"{service}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let sum = super::seconds(latency.sum_ns.load(Ordering::Relaxed));
            let _ = writeln!(out, "{QUERY_DURATION}_sum{{service=\"{service}\"}} {sum}");
            let _ = writeln!(
                out,
                "{QUERY_DURATION}_count{{service=\"{service}\"}} {cumulative}"
            );
        }
    }
}

/// A label value as the text format wants it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_keep_counts_and_sum_through_a_flush() {
        let local = LocalLatency::default();
        for ns in [40_000, 50_000, 60_000, 2_000_000, 20_000_000_000] {
            local.record(ns);
        }
        assert_eq!(local.counts[0].get(), 2, "50 µs is in the first bucket");
        assert_eq!(local.counts[1].get(), 1);
        assert_eq!(local.counts[QUERY_BOUNDS_NS.len()].get(), 1, "past 10 s");
        let shared = SharedLatency::default();
        local.flush(&shared);
        assert!(local.counts.iter().all(|c| c.get() == 0));
        assert_eq!(local.sum_ns.get(), 0);
        // A second worker's flush adds to the same buckets.
        local.record(45_000);
        local.flush(&shared);
        assert_eq!(shared.counts[0].load(Ordering::Relaxed), 3);
        assert_eq!(shared.sum_ns.load(Ordering::Relaxed), 20_002_195_000);
    }

    #[test]
    fn a_service_name_cannot_break_out_of_its_label() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
