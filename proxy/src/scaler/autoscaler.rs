//! The actor's side of autoscaling: it samples the backend's usage every
//! 200 ms while the service is active, feeds the pure [`Policy`], and
//! keeps what the admin API shows (limits, usage, buffer pool, recent
//! decisions with their reasons).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::driver::{Driver, Resources};
use super::policy::{Autoscale, Decision, Policy, Reason, Sample};
use super::usage::Usage;

/// How often an active service's usage is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(200);

/// Resizes kept for the admin API.
const DECISIONS_KEPT: usize = 20;

/// One resize, as the admin API lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Resized {
    /// When it was applied, milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// What the service had.
    pub from: Resources,
    /// What it has now.
    pub to: Resources,
    /// Why the policy asked; `None`: an operator did.
    pub reason: Option<Reason>,
    /// From the decision to the limits applied, milliseconds.
    pub took_ms: u64,
    /// What went wrong, if the change was refused or only partly made.
    pub error: Option<String>,
}

/// What the admin API shows of a service's size and use.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ScalingView {
    /// Whether the policy resizes the service on its own.
    pub autoscale: bool,
    /// The limits the backend runs under (`None`: a static backend).
    pub resources: Option<Resources>,
    /// CPUs used between the last two samples.
    pub cpus_used: Option<f64>,
    /// The last reading.
    pub usage: Option<Usage>,
    /// When it was taken, ms since the Unix epoch (a recorded trace
    /// replays on the sampler's own clock).
    pub sampled_at_unix_ms: Option<u64>,
    /// The buffer pool size as last set or read back, bytes.
    pub buffer_pool_bytes: Option<u64>,
    /// The latest resizes, newest last.
    pub recent: VecDeque<Resized>,
    /// The `[[hosts]]` entry the backend runs on.
    pub host: Option<String>,
    /// Its storage's last sample (`[services.storage]`).
    pub storage: Option<crate::storage::StorageView>,
}

impl ScalingView {
    /// Notes a resize, keeping the latest few.
    pub fn record(&mut self, resized: Resized) {
        if self.recent.len() == DECISIONS_KEPT {
            self.recent.pop_front();
        }
        self.recent.push_back(resized);
    }
}

/// The sampling loop's state of one service.
#[derive(Debug)]
pub struct Autoscaler {
    policy: Policy,
    /// Turned off by an operator (or the config), sampling goes on for
    /// the admin API but nothing is decided.
    pub enabled: bool,
    origin: Instant,
    next_sample: Instant,
    last: Option<(Duration, Usage)>,
}

impl Autoscaler {
    /// A loop with no samples yet.
    pub fn new(config: Autoscale, enabled: bool) -> Autoscaler {
        let now = Instant::now();
        Autoscaler {
            policy: Policy::new(config),
            enabled,
            origin: now,
            next_sample: now,
            last: None,
        }
    }

    /// The bounds and steps it keeps to.
    pub fn config(&self) -> &Autoscale {
        self.policy.config()
    }

    /// Time until the next sample is due.
    pub fn due_in(&self) -> Duration {
        self.next_sample.saturating_duration_since(Instant::now())
    }

    /// The service slept, woke or was resized by hand: earlier samples
    /// say nothing of it now.
    pub fn restart(&mut self) {
        self.policy.restart_windows();
        self.last = None;
    }

    /// Reads the backend's usage when a sample is due, publishes it in
    /// `view`, and returns what the policy decides for a service that
    /// runs with `current` and a buffer pool of `pool_bytes`.
    ///
    /// The view is locked only to publish: the admin API reads it, and
    /// must not wait on an engine's answer (up to its timeout, on a
    /// remote one).
    pub fn sample(
        &mut self,
        driver: &mut dyn Driver,
        current: Resources,
        pool_bytes: u64,
        view: &Mutex<ScalingView>,
    ) -> Option<Decision> {
        let now = Instant::now();
        if now < self.next_sample {
            return None;
        }
        self.next_sample = now + SAMPLE_EVERY;
        let usage = match driver.usage() {
            Ok(usage) => usage,
            Err(e) => {
                tracing::debug!("no usage sample: {e}");
                return None;
            }
        };
        let at = now.duration_since(self.origin);
        // The last rate stays shown until two samples make a new one.
        let used = self.last.and_then(|(then, before)| {
            let seconds = at.saturating_sub(then).as_secs_f64();
            let nanos = usage.cpu_nanos.checked_sub(before.cpu_nanos)?;
            (seconds > 0.0).then(|| nanos as f64 / 1e9 / seconds)
        });
        if let Ok(mut view) = view.lock() {
            if used.is_some() {
                view.cpus_used = used;
            }
            view.usage = Some(usage);
            view.sampled_at_unix_ms = Some(unix_ms());
        }
        self.last = Some((at, usage));
        if !self.enabled {
            return None;
        }
        self.policy.observe(
            Sample {
                at,
                usage,
                buffer_pool_bytes: pool_bytes,
            },
            current,
        )
    }
}

/// Milliseconds since the Unix epoch, for the admin API.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
