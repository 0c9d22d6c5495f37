//! The autoscaler's policy: a pure function of usage samples and config
//! that says when a service's CPU and memory should change, and to what.
//! It reads no clock and calls no driver — the actor feeds it readings
//! ([`super::usage::Usage`]) with the time they were taken, and carries
//! out what it decides — so it is tested on tables of samples and on
//! traces recorded from a real MariaDB under load.
//!
//! The rules (the design's, with its defaults):
//! - up: CPU used over the last `up_over` (1 s) is at least `up_at` (90 %)
//!   of the CPU limit → one CPU step and one memory step more;
//! - down: CPU used over the last `down_over` (30 s) is at most `down_at`
//!   (20 %) of the limit → one step less of each, never below what the
//!   server holds beyond its buffer pool, plus the smaller pool, plus a
//!   tenth;
//! - memory pressure: the working set reaches `memory_grow_at` (85 %) of
//!   the memory limit → one memory step more, CPU unchanged;
//! - always within the service's minimum and maximum; after a change the
//!   windows start again, since earlier samples were measured against
//!   other limits.

use std::collections::VecDeque;
use std::time::Duration;

use super::driver::Resources;
use super::usage::Usage;

const MIB: u64 = 1024 * 1024;

/// How a service's resources follow its load.
#[derive(Debug, Clone, PartialEq)]
pub struct Autoscale {
    /// The least a service is given.
    pub min: Resources,
    /// The most a service is given.
    pub max: Resources,
    /// CPUs added or taken in one step.
    pub cpu_step: f64,
    /// Memory added or taken in one step, MiB.
    pub memory_step_mib: u64,
    /// Scale up when CPU use over `up_over` reaches this share of the limit.
    pub up_at: f64,
    /// The window scale-up looks at.
    pub up_over: Duration,
    /// Scale down when CPU use over `down_over` is at most this share.
    pub down_at: f64,
    /// The window scale-down looks at.
    pub down_over: Duration,
    /// Grow memory when the working set reaches this share of the limit.
    pub memory_grow_at: f64,
    /// Memory kept free when shrinking, as a share of the new limit, above
    /// what the server holds beyond its buffer pool.
    pub memory_margin: f64,
}

impl Default for Autoscale {
    /// The design's defaults: 0.5 CPU / 2 GiB steps between 0.5 CPU /
    /// 2 GiB and 4 CPUs / 16 GiB.
    fn default() -> Self {
        Autoscale {
            min: Resources {
                cpus: 0.5,
                memory_mib: 2048,
            },
            max: Resources {
                cpus: 4.0,
                memory_mib: 16384,
            },
            cpu_step: 0.5,
            memory_step_mib: 2048,
            up_at: 0.9,
            up_over: Duration::from_secs(1),
            down_at: 0.2,
            down_over: Duration::from_secs(30),
            memory_grow_at: 0.85,
            memory_margin: 0.1,
        }
    }
}

/// One reading the policy is fed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// When it was taken, on any monotonic clock the caller keeps.
    pub at: Duration,
    /// What the backend used.
    pub usage: Usage,
    /// The buffer pool size the backend runs with now, bytes (the actor
    /// set it, so it knows it without asking the server).
    pub buffer_pool_bytes: u64,
}

/// Why the policy asks for a change.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Reason {
    /// CPU use stayed near the limit.
    CpuHigh {
        /// CPUs used on average over the window.
        used: f64,
    },
    /// CPU use stayed low.
    CpuLow {
        /// CPUs used on average over the window.
        used: f64,
    },
    /// The working set neared the memory limit.
    MemoryHigh {
        /// The working set, MiB.
        working_set_mib: u64,
    },
}

impl Reason {
    /// The word metrics label it with.
    pub fn label(&self) -> &'static str {
        match self {
            Reason::CpuHigh { .. } => "cpu_high",
            Reason::CpuLow { .. } => "cpu_low",
            Reason::MemoryHigh { .. } => "memory_high",
        }
    }
}

/// A change the policy asks for.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Decision {
    /// What the service should get.
    pub to: Resources,
    /// Why.
    pub reason: Reason,
}

impl Decision {
    /// Whether it gives the service more of either resource.
    pub fn grows(&self, from: Resources) -> bool {
        self.to.cpus > from.cpus || self.to.memory_mib > from.memory_mib
    }
}

/// The policy of one service: the samples of its windows, and the
/// resources it was last given.
#[derive(Debug, Clone)]
pub struct Policy {
    config: Autoscale,
    samples: VecDeque<Sample>,
}

impl Policy {
    /// A policy with no samples yet.
    pub fn new(config: Autoscale) -> Policy {
        Policy {
            config,
            samples: VecDeque::new(),
        }
    }

    /// Its config.
    pub fn config(&self) -> &Autoscale {
        &self.config
    }

    /// A new config (a reload); the windows start again.
    pub fn reconfigure(&mut self, config: Autoscale) {
        self.config = config;
        self.samples.clear();
    }

    /// Forgets the samples: the service was resized, suspended or woken,
    /// so what was measured before says nothing of the limits now.
    pub fn restart_windows(&mut self) {
        self.samples.clear();
    }

    /// Takes a sample of a service that runs with `current`, and says
    /// what it should have instead, if anything. A decision restarts the
    /// windows: the caller applies it (or gives up) before the next
    /// sample.
    pub fn observe(&mut self, sample: Sample, current: Resources) -> Option<Decision> {
        // A counter that went back is a new backend (restarted, moved):
        // nothing before it compares.
        if self.samples.back().is_some_and(|last| {
            sample.usage.cpu_nanos < last.usage.cpu_nanos || sample.at <= last.at
        }) {
            self.samples.clear();
        }
        self.samples.push_back(sample);
        let keep = self.config.up_over.max(self.config.down_over);
        while self
            .samples
            .get(1)
            .is_some_and(|second| sample.at.saturating_sub(second.at) >= keep)
        {
            self.samples.pop_front();
        }
        let decision = self.decide(&sample, current);
        if decision.is_some() {
            self.samples.clear();
        }
        decision
    }

    fn decide(&self, now: &Sample, current: Resources) -> Option<Decision> {
        let config = &self.config;
        if let Some(used) = self.cpus_used_over(config.up_over) {
            if used >= config.up_at * current.cpus {
                let to = Resources {
                    cpus: (current.cpus + config.cpu_step).min(config.max.cpus),
                    memory_mib: (current.memory_mib + config.memory_step_mib)
                        .min(config.max.memory_mib),
                };
                if to != current {
                    return Some(Decision {
                        to,
                        reason: Reason::CpuHigh { used },
                    });
                }
            }
        }
        let limit_bytes = current.memory_mib.saturating_mul(MIB);
        let working_set = now.usage.working_set_bytes;
        if working_set as f64 >= config.memory_grow_at * limit_bytes as f64 {
            let memory_mib =
                (current.memory_mib + config.memory_step_mib).min(config.max.memory_mib);
            if memory_mib > current.memory_mib {
                return Some(Decision {
                    to: Resources {
                        memory_mib,
                        ..current
                    },
                    reason: Reason::MemoryHigh {
                        working_set_mib: working_set / MIB,
                    },
                });
            }
        }
        let used = self.cpus_used_over(config.down_over)?;
        if used > config.down_at * current.cpus {
            return None;
        }
        let cpus = (current.cpus - config.cpu_step).max(config.min.cpus);
        let wanted = current.memory_mib.saturating_sub(config.memory_step_mib);
        let memory_mib = wanted
            .max(config.min.memory_mib)
            .max(self.memory_floor_mib(now, current, wanted))
            .min(current.memory_mib);
        let to = Resources { cpus, memory_mib };
        (to != current).then_some(Decision {
            to,
            reason: Reason::CpuLow { used },
        })
    }

    /// CPUs used on average over the last `window`, when the samples
    /// cover it; `None` before they do.
    fn cpus_used_over(&self, window: Duration) -> Option<f64> {
        let last = self.samples.back()?;
        // The newest sample at least `window` before the last one.
        let first = self
            .samples
            .iter()
            .rev()
            .find(|s| last.at.saturating_sub(s.at) >= window)?;
        let nanos = last.usage.cpu_nanos.saturating_sub(first.usage.cpu_nanos);
        let seconds = last.at.saturating_sub(first.at).as_secs_f64();
        (seconds > 0.0).then(|| nanos as f64 / 1e9 / seconds)
    }

    /// The least memory a service shrunk to `wanted_mib` may get: what it
    /// holds beyond its buffer pool, plus the pool it will have then (in
    /// proportion to memory, as the actor sizes it), plus the margin.
    fn memory_floor_mib(&self, now: &Sample, current: Resources, wanted_mib: u64) -> u64 {
        let beyond_pool = now
            .usage
            .working_set_bytes
            .saturating_sub(now.buffer_pool_bytes);
        let pool_share = if current.memory_mib == 0 {
            0.0
        } else {
            now.buffer_pool_bytes as f64 / (current.memory_mib * MIB) as f64
        };
        let pool_then = (pool_share * (wanted_mib * MIB) as f64) as u64;
        let margin = (wanted_mib as f64 * self.config.memory_margin) as u64;
        (beyond_pool + pool_then).div_ceil(MIB) + margin
    }
}

#[cfg(test)]
mod traces;

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1024 * MIB;

    fn small() -> Autoscale {
        Autoscale {
            min: Resources {
                cpus: 0.5,
                memory_mib: 512,
            },
            max: Resources {
                cpus: 2.0,
                memory_mib: 2048,
            },
            cpu_step: 0.5,
            memory_step_mib: 512,
            ..Autoscale::default()
        }
    }

    /// Feeds samples every 200 ms in which the backend uses `cpus` CPUs,
    /// for `seconds`, starting at `start`; returns the first decision.
    struct Feed {
        policy: Policy,
        at: Duration,
        cpu_nanos: u64,
        working_set: u64,
        buffer_pool: u64,
    }

    impl Feed {
        fn new(config: Autoscale) -> Feed {
            Feed {
                policy: Policy::new(config),
                at: Duration::ZERO,
                cpu_nanos: 0,
                working_set: 300 * MIB,
                buffer_pool: 128 * MIB,
            }
        }

        fn run(&mut self, cpus: f64, seconds: f64, current: Resources) -> Option<(f64, Decision)> {
            let steps = (seconds / 0.2).round() as u32;
            for _ in 0..steps {
                self.at += Duration::from_millis(200);
                self.cpu_nanos += (cpus * 0.2e9) as u64;
                let sample = Sample {
                    at: self.at,
                    usage: Usage {
                        cpu_nanos: self.cpu_nanos,
                        memory_bytes: self.working_set + 100 * MIB,
                        working_set_bytes: self.working_set,
                        cpu_limit: Some(current.cpus),
                        memory_limit_bytes: Some(current.memory_mib * MIB),
                    },
                    buffer_pool_bytes: self.buffer_pool,
                };
                if let Some(decision) = self.policy.observe(sample, current) {
                    return Some((self.at.as_secs_f64(), decision));
                }
            }
            None
        }
    }

    fn res(cpus: f64, memory_mib: u64) -> Resources {
        Resources { cpus, memory_mib }
    }

    #[test]
    fn a_busy_service_scales_up_after_one_second() {
        let mut feed = Feed::new(small());
        let (at, decision) = feed.run(0.48, 5.0, res(0.5, 512)).expect("scales up");
        // The first sample is at 0.2 s; the window of 1 s is full at 1.2 s.
        assert!((at - 1.2).abs() < 1e-9, "decided at {at}");
        assert_eq!(decision.to, res(1.0, 1024));
        assert!(matches!(decision.reason, Reason::CpuHigh { used } if (used - 0.48).abs() < 0.01));
    }

    #[test]
    fn busy_below_the_threshold_or_at_the_maximum_stays() {
        let mut feed = Feed::new(small());
        assert_eq!(
            feed.run(0.40, 40.0, res(0.5, 512)),
            None,
            "80 % is not 90 %"
        );
        let mut feed = Feed::new(small());
        assert_eq!(feed.run(2.0, 40.0, res(2.0, 2048)), None, "at the maximum");
    }

    #[test]
    fn steps_stop_at_the_maximum() {
        let mut config = small();
        config.max = res(1.2, 700);
        let mut feed = Feed::new(config);
        let (_, decision) = feed.run(1.0, 5.0, res(1.0, 512)).expect("scales up");
        assert_eq!(decision.to, res(1.2, 700));
    }

    #[test]
    fn an_idle_service_scales_down_after_thirty_seconds() {
        let mut feed = Feed::new(small());
        let (at, decision) = feed.run(0.05, 60.0, res(1.5, 1536)).expect("scales down");
        assert!((at - 30.2).abs() < 1e-9, "decided at {at}");
        assert_eq!(decision.to, res(1.0, 1024));
        assert_eq!(decision.reason.label(), "cpu_low");
        // Then the next window starts: 30 s more before the next step.
        let (at, decision) = feed.run(0.05, 60.0, res(1.0, 1024)).expect("again");
        assert!((at - 60.4).abs() < 1e-9, "decided at {at}");
        assert_eq!(decision.to, res(0.5, 512));
        assert_eq!(feed.run(0.05, 60.0, res(0.5, 512)), None, "at the minimum");
    }

    #[test]
    fn shrinking_memory_keeps_what_the_server_holds_beyond_its_pool() {
        let mut feed = Feed::new(small());
        // 850 MiB held, of which a 512 MiB pool (half of 1 GiB): at 512 MiB
        // of memory the pool would be 256 MiB, so the server needs 338 +
        // 256 + a tenth of 512 (51) = 645 MiB.
        feed.working_set = 850 * MIB;
        feed.buffer_pool = 512 * MIB;
        let (_, decision) = feed.run(0.0, 40.0, res(1.0, 1024)).expect("scales down");
        assert_eq!(decision.to, res(0.5, 645));
    }

    #[test]
    fn memory_grows_under_pressure_without_cpu() {
        let mut feed = Feed::new(small());
        feed.working_set = 900 * MIB;
        let (at, decision) = feed.run(0.3, 5.0, res(1.0, 1024)).expect("grows");
        assert!((at - 0.2).abs() < 1e-9, "at once: {at}");
        assert_eq!(decision.to, res(1.0, 1536));
        assert_eq!(
            decision.reason,
            Reason::MemoryHigh {
                working_set_mib: 900
            }
        );
        assert!(decision.grows(res(1.0, 1024)));
    }

    #[test]
    fn a_counter_that_goes_back_starts_the_windows_again() {
        let mut policy = Policy::new(small());
        let sample = |at_ms: u64, cpu_ms: u64| Sample {
            at: Duration::from_millis(at_ms),
            usage: Usage {
                cpu_nanos: cpu_ms * 1_000_000,
                memory_bytes: 0,
                working_set_bytes: 0,
                cpu_limit: None,
                memory_limit_bytes: None,
            },
            buffer_pool_bytes: 0,
        };
        let current = res(0.5, 512);
        for i in 0..4 {
            assert_eq!(policy.observe(sample(i * 200, i * 100), current), None);
        }
        // A restarted backend: its counter starts near zero; without the
        // restart the average would be negative, or huge.
        assert_eq!(policy.observe(sample(1000, 5), current), None);
        assert_eq!(policy.observe(sample(1200, 10), current), None);
        assert_eq!(policy.samples.len(), 2);
    }

    #[test]
    fn defaults_are_the_designs() {
        let config = Autoscale::default();
        assert_eq!(config.cpu_step, 0.5);
        assert_eq!(config.memory_step_mib * MIB, 2 * GIB);
        assert_eq!(config.up_over, Duration::from_secs(1));
        assert_eq!(config.down_over, Duration::from_secs(30));
    }
}
