//! The `autoscale` workload's arithmetic, apart from any I/O: QPS per
//! phase, how long the scaler took to grow after the overload and to
//! shrink back after it, p99 and buffer pool hit ratio over a window.

use std::time::Duration;

use super::schedule::Schedule;
use super::timeline::{Resize, Size};
use crate::stats::LatencyHistogram;

/// One query that completed: when (from the start of the load) and how
/// long it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Done {
    /// When it completed.
    pub at: Duration,
    /// Its latency.
    pub latency: Duration,
}

/// Queries per second of each phase, in order: completions inside the
/// phase over its length (0 for a phase of no length).
pub fn qps_per_phase(schedule: &Schedule, done: &[Done]) -> Vec<f64> {
    let mut counts = vec![0u64; schedule.phases().len()];
    for query in done {
        if let Some(slot) = schedule.phase_at(query.at).and_then(|i| counts.get_mut(i)) {
            *slot += 1;
        }
    }
    schedule
        .phases()
        .iter()
        .zip(counts)
        .map(|(phase, count)| {
            let secs = phase.length.as_secs_f64();
            if secs > 0.0 {
                count as f64 / secs
            } else {
                0.0
            }
        })
        .collect()
}

/// Queries per second in each whole second of `0..total`, as (middle of
/// the second, rate): the QPS line of the chart.
pub fn per_second(done: &[Done], total: Duration) -> Vec<(f64, f64)> {
    let seconds = total.as_secs() as usize;
    let mut counts = vec![0u64; seconds];
    for query in done {
        if let Some(slot) = counts.get_mut(query.at.as_secs() as usize) {
            *slot += 1;
        }
    }
    counts
        .into_iter()
        .enumerate()
        .map(|(i, n)| (i as f64 + 0.5, n as f64))
        .collect()
}

/// The policy's resizes of the run, each with its offset from the start
/// of the load (`start_unix_ms`); operators' resizes and those applied
/// before the start are left out.
fn by_policy(resizes: &[Resize], start_unix_ms: u64) -> impl Iterator<Item = (Duration, &Resize)> {
    resizes
        .iter()
        .filter(|r| r.by_policy() && r.error.is_none())
        .filter_map(move |r| Some((r.offset(start_unix_ms)?, r)))
}

/// When (from the start of the load) the run's first grow was applied,
/// in whichever phase: the start of the hydration window.
pub fn first_grow(resizes: &[Resize], start_unix_ms: u64) -> Option<Duration> {
    by_policy(resizes, start_unix_ms)
        .find(|(_, r)| r.grows())
        .map(|(at, _)| at)
}

/// How long after the overload began (the busiest phase's start) the
/// first grow was applied.
pub fn first_grow_after_overload(
    schedule: &Schedule,
    resizes: &[Resize],
    start_unix_ms: u64,
) -> Option<Duration> {
    let overload = schedule.overload_start()?;
    by_policy(resizes, start_unix_ms)
        .find(|(at, r)| *at >= overload && r.grows())
        .map(|(at, _)| at - overload)
}

/// How long after the overload began the largest size the run reached
/// was applied, and that size: the whole climb, where one step may not
/// be enough. `None` when nothing grew during or after the overload.
pub fn largest_after_overload(
    schedule: &Schedule,
    resizes: &[Resize],
    start_unix_ms: u64,
) -> Option<(Duration, Size)> {
    let overload = schedule.overload_start()?;
    let end = schedule.final_idle_start().unwrap_or(schedule.total());
    by_policy(resizes, start_unix_ms)
        .filter(|(at, r)| *at >= overload && *at < end && r.grows())
        // The first time the largest size was reached, not a later
        // return to it.
        .fold(None, |best: Option<(Duration, Size)>, (at, r)| match best {
            Some((_, size)) if size.cpus >= r.to.cpus && size.memory_mib >= r.to.memory_mib => best,
            _ => Some((at - overload, r.to)),
        })
}

/// How long after the final idle phase began the service was back at
/// `start` (the size the run started at); `None` when it never was.
pub fn back_to_start_after_idle(
    schedule: &Schedule,
    resizes: &[Resize],
    start_unix_ms: u64,
    start: Size,
) -> Option<Duration> {
    let idle = schedule.final_idle_start()?;
    by_policy(resizes, start_unix_ms)
        .find(|(at, r)| *at >= idle && r.shrinks() && r.to == start)
        .map(|(at, _)| at - idle)
}

/// The size the service had at `offset`: the last successful resize
/// applied before it, by the policy or an operator, else `initial`.
pub fn size_at(resizes: &[Resize], start_unix_ms: u64, offset: Duration, initial: Size) -> Size {
    resizes
        .iter()
        .filter(|r| r.error.is_none())
        .filter(|r| r.offset(start_unix_ms).is_some_and(|at| at < offset))
        .max_by_key(|r| r.at_unix_ms)
        .map_or(initial, |r| r.to)
}

/// The p99 (µs) of the queries that completed in `from..to`; `None`
/// when none did.
pub fn p99_between(done: &[Done], from: Duration, to: Duration) -> Option<f64> {
    let mut histogram = LatencyHistogram::new();
    for query in done.iter().filter(|q| q.at >= from && q.at < to) {
        histogram.record(query.latency);
    }
    (!histogram.is_empty()).then(|| histogram.micros_at(99.0))
}

/// A reading of InnoDB's buffer pool counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolReading {
    /// When, from the start of the load.
    pub at: Duration,
    /// `Innodb_buffer_pool_read_requests`: logical reads.
    pub read_requests: u64,
    /// `Innodb_buffer_pool_reads`: reads that missed the pool and went
    /// to disk.
    pub reads: u64,
}

/// The hit ratio (per cent) over `from..to`, from the last reading at
/// or before `from` to the last at or before `to`; `None` without two
/// readings or without logical reads in between, or when the counters
/// went back (the server restarted).
pub fn hit_ratio_between(readings: &[PoolReading], from: Duration, to: Duration) -> Option<f64> {
    let first = readings.iter().rev().find(|r| r.at <= from)?;
    let last = readings
        .iter()
        .rev()
        .find(|r| r.at <= to && r.at > first.at)?;
    let requests = last.read_requests.checked_sub(first.read_requests)?;
    let misses = last.reads.checked_sub(first.reads)?;
    (requests > 0).then(|| 100.0 * (1.0 - misses as f64 / requests as f64).max(0.0))
}

/// `a / b`, when `b` is a number above zero.
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a.is_finite() && b.is_finite()).then(|| a / b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn schedule() -> Schedule {
        Schedule::stepped([secs(5.0), secs(10.0), secs(20.0), secs(15.0)])
    }

    const START: u64 = 1_000_000;

    fn resize(at_secs: f64, from: (f64, u64), to: (f64, u64), reason: Option<&str>) -> Resize {
        Resize {
            at_unix_ms: START + (at_secs * 1000.0) as u64,
            from: Size {
                cpus: from.0,
                memory_mib: from.1,
            },
            to: Size {
                cpus: to.0,
                memory_mib: to.1,
            },
            reason: reason.map(str::to_string),
            took_ms: Some(100),
            error: None,
        }
    }

    fn done(at: f64, latency_ms: u64) -> Done {
        Done {
            at: secs(at),
            latency: Duration::from_millis(latency_ms),
        }
    }

    #[test]
    fn qps_counts_completions_per_phase_over_its_length() {
        let mut queries: Vec<Done> = (0..50).map(|i| done(5.0 + i as f64 * 0.2, 1)).collect();
        queries.extend((0..400).map(|i| done(15.0 + i as f64 * 0.05, 1)));
        queries.push(done(60.0, 1)); // after the end: not counted
        assert_eq!(qps_per_phase(&schedule(), &queries), [0.0, 5.0, 20.0, 0.0]);
        assert_eq!(qps_per_phase(&schedule(), &[]), [0.0; 4]);
    }

    #[test]
    fn per_second_rates_cover_whole_seconds() {
        let queries = [done(0.1, 1), done(0.9, 1), done(2.5, 1), done(3.2, 1)];
        assert_eq!(
            per_second(&queries, secs(3.5)),
            [(0.5, 2.0), (1.5, 0.0), (2.5, 1.0)]
        );
        assert!(per_second(&queries, Duration::ZERO).is_empty());
    }

    #[test]
    fn scale_up_is_timed_from_the_overload_not_from_the_first_client() {
        let resizes = [
            // During the 1-client phase: before the overload.
            resize(8.0, (0.5, 512), (1.0, 768), Some("cpu_high")),
            // An operator's resize never counts.
            resize(15.5, (1.0, 768), (1.5, 1024), None),
            resize(17.25, (1.0, 768), (1.5, 1024), Some("cpu_high")),
            resize(19.0, (1.5, 1024), (2.0, 1024), Some("cpu_high")),
            // Shrinks after the idle phase began.
            resize(41.0, (2.0, 1024), (1.5, 768), Some("cpu_low")),
            resize(47.5, (1.5, 768), (0.5, 512), Some("cpu_low")),
        ];
        assert_eq!(
            first_grow_after_overload(&schedule(), &resizes, START),
            Some(secs(2.25))
        );
        assert_eq!(first_grow(&resizes, START), Some(secs(8.0)));
        let (after, size) = largest_after_overload(&schedule(), &resizes, START).expect("grew");
        assert_eq!(after, secs(4.0));
        assert_eq!(size.cpus, 2.0);
        let start = Size {
            cpus: 0.5,
            memory_mib: 512,
        };
        assert_eq!(
            back_to_start_after_idle(&schedule(), &resizes, START, start),
            Some(secs(12.5))
        );
    }

    #[test]
    fn nothing_grown_or_shrunk_is_none_not_zero() {
        let start = Size {
            cpus: 0.5,
            memory_mib: 512,
        };
        assert_eq!(first_grow_after_overload(&schedule(), &[], START), None);
        assert_eq!(first_grow(&[], START), None);
        assert_eq!(largest_after_overload(&schedule(), &[], START), None);
        assert_eq!(
            back_to_start_after_idle(&schedule(), &[], START, start),
            None
        );
        // A shrink that stops short of the start size is not "back".
        let partial = [resize(40.0, (1.5, 1024), (1.0, 768), Some("cpu_low"))];
        assert_eq!(
            back_to_start_after_idle(&schedule(), &partial, START, start),
            None
        );
        // A failed grow is not a grow.
        let mut failed = resize(16.0, (0.5, 512), (1.0, 768), Some("cpu_high"));
        failed.error = Some("engine said no".into());
        assert_eq!(
            first_grow_after_overload(&schedule(), &[failed], START),
            None
        );
    }

    #[test]
    fn the_size_at_a_moment_is_the_last_resize_before_it() {
        let start = Size {
            cpus: 0.5,
            memory_mib: 512,
        };
        let resizes = [
            resize(16.0, (0.5, 512), (1.0, 768), Some("cpu_high")),
            // Shrunk during the load: a starved host showed low use.
            resize(33.0, (1.0, 768), (0.5, 512), Some("cpu_low")),
        ];
        assert_eq!(size_at(&resizes, START, secs(10.0), start), start);
        assert_eq!(size_at(&resizes, START, secs(20.0), start).cpus, 1.0);
        assert_eq!(size_at(&resizes, START, secs(35.0), start), start);
        assert_eq!(size_at(&[], START, secs(35.0), start), start);
    }

    #[test]
    fn the_largest_size_is_the_first_time_it_was_reached() {
        let resizes = [
            resize(16.0, (0.5, 512), (1.0, 768), Some("cpu_high")),
            resize(18.0, (1.0, 768), (0.5, 512), Some("cpu_low")),
            resize(20.0, (0.5, 512), (1.0, 768), Some("cpu_high")),
        ];
        let (after, _) = largest_after_overload(&schedule(), &resizes, START).expect("grew");
        assert_eq!(after, secs(1.0));
    }

    #[test]
    fn p99_is_taken_over_the_window_only() {
        let mut queries: Vec<Done> = (0..100).map(|i| done(10.0 + i as f64 * 0.01, 1)).collect();
        queries.push(done(30.0, 500));
        let p99 = p99_between(&queries, secs(10.0), secs(20.0)).expect("queries");
        assert!((900.0..1100.0).contains(&p99), "{p99}");
        assert_eq!(p99_between(&queries, secs(40.0), secs(50.0)), None);
    }

    #[test]
    fn hit_ratio_comes_from_counter_differences() {
        let reading = |at: f64, read_requests, reads| PoolReading {
            at: secs(at),
            read_requests,
            reads,
        };
        let readings = [
            reading(9.8, 1_000, 10),
            reading(10.0, 2_000, 20),
            reading(15.0, 5_000, 50),
            reading(20.0, 12_000, 60),
        ];
        // From the reading at 10 s to the one at 20 s: 10k requests, 40 misses.
        let ratio = hit_ratio_between(&readings, secs(10.0), secs(20.0)).expect("readings");
        assert!((ratio - 99.6).abs() < 1e-9, "{ratio}");
        assert_eq!(hit_ratio_between(&readings, secs(1.0), secs(20.0)), None);
        assert_eq!(hit_ratio_between(&readings, secs(20.0), secs(30.0)), None);
        let restarted = [reading(0.0, 5_000, 5), reading(1.0, 10, 1)];
        assert_eq!(hit_ratio_between(&restarted, secs(0.0), secs(2.0)), None);
    }

    #[test]
    fn ratios_need_a_positive_divisor() {
        assert_eq!(ratio(3.0, 2.0), Some(1.5));
        assert_eq!(ratio(3.0, 0.0), None);
        assert_eq!(ratio(f64::NAN, 2.0), None);
    }
}
