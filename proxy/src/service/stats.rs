//! What a service's actor (and its connection opens) record: the
//! scaler's decisions, wakes, resizes and relocations, and backend
//! connections opened. The metrics module reads it at scrape time
//! (`GET /metrics`); nothing here knows how it is rendered.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::lifecycle::Event;

/// Wake samples kept for the next scrape; beyond this (no scrape for
/// hundreds of wakes) newer ones are dropped rather than memory grown.
const MAX_PENDING_WAKES: usize = 1024;

/// What the scaler decided and carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A suspend finished: the backend is frozen.
    Suspend,
    /// A suspend was given up (a query ran, a session was pinned, the
    /// driver failed).
    SuspendRefused,
    /// The backend was stopped.
    Park,
    /// The backend answers again.
    Wake,
    /// A wake failed.
    WakeFailed,
}

impl Decision {
    /// Every decision, in label order.
    pub const ALL: [Decision; 5] = [
        Decision::Suspend,
        Decision::SuspendRefused,
        Decision::Park,
        Decision::Wake,
        Decision::WakeFailed,
    ];

    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            Decision::Suspend => "suspend",
            Decision::SuspendRefused => "suspend_refused",
            Decision::Park => "park",
            Decision::Wake => "wake",
            Decision::WakeFailed => "wake_failed",
        }
    }

    /// The decision a lifecycle event concludes, if any (requests start
    /// one; only outcomes are counted).
    pub fn concluded_by(event: Event) -> Option<Decision> {
        match event {
            Event::Frozen => Some(Decision::Suspend),
            Event::SuspendAborted => Some(Decision::SuspendRefused),
            Event::Parked => Some(Decision::Park),
            Event::Ready => Some(Decision::Wake),
            Event::WakeFailed => Some(Decision::WakeFailed),
            Event::SuspendRequested
            | Event::WakeRequested
            | Event::MoveRequested
            | Event::Moved
            | Event::MoveAborted
            | Event::FoundFrozen => None,
        }
    }
}

/// What a service's actor (and its connection opens) record, read at
/// scrape time. Written a few times an hour, or per backend connection
/// opened: never per query.
#[derive(Debug, Default)]
pub struct ServiceStats {
    decisions: [AtomicU64; 5],
    /// Backend connections opened to the service.
    backend_opened: AtomicU64,
    /// Wakes since the last scrape: where from, and seconds taken.
    wakes: Mutex<Vec<(&'static str, f64)>>,
    /// Resizes since the last scrape.
    resizes: Mutex<Vec<ResizeSample>>,
    /// Relocations since the last scrape.
    relocations: Mutex<Vec<RelocationSample>>,
    /// A service created at run time: from its `POST` to its backend
    /// ready, and from where (`cold`: initialized and started; `warm`: a
    /// warm pool's server taken over), until
    /// the next scrape.
    provisioned: Mutex<Option<(&'static str, f64)>>,
}

/// A relocation, as metrics count it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RelocationSample {
    /// `moved` or `failed`.
    pub result: &'static str,
    /// From its start to the switch-over done (moved ones).
    pub seconds: Option<f64>,
    /// How long new statements waited during the switch-over (moved ones).
    pub stall_seconds: Option<f64>,
}

/// A resize, as metrics count it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResizeSample {
    /// `up` (more of either resource) or `down`.
    pub direction: &'static str,
    /// `cpu_high`, `cpu_low`, `memory_high` or `operator`.
    pub reason: &'static str,
    /// From the decision to the limits applied.
    pub seconds: f64,
}

impl ServiceStats {
    /// Counts the decision `event` concludes, if any.
    pub fn event(&self, event: Event) {
        if let Some(decision) = Decision::concluded_by(event) {
            self.decisions[decision as usize].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records a wake from `from` (`suspended`, `parked`, or `warm`: a
    /// warm pool's server taken over) that took `took`.
    pub fn woke(&self, from: &'static str, took: Duration) {
        if let Ok(mut wakes) = self.wakes.lock() {
            if wakes.len() < MAX_PENDING_WAKES {
                wakes.push((from, took.as_secs_f64()));
            }
        }
    }

    /// Records a resize carried out.
    pub fn resized(&self, resize: ResizeSample) {
        if let Ok(mut resizes) = self.resizes.lock() {
            if resizes.len() < MAX_PENDING_WAKES {
                resizes.push(resize);
            }
        }
    }

    /// Records a relocation that ended.
    pub fn relocated(&self, relocation: RelocationSample) {
        if let Ok(mut relocations) = self.relocations.lock() {
            if relocations.len() < MAX_PENDING_WAKES {
                relocations.push(relocation);
            }
        }
    }

    /// The relocations since the last call.
    pub fn take_relocations(&self) -> Vec<RelocationSample> {
        self.relocations
            .lock()
            .map(|mut relocations| std::mem::take(&mut *relocations))
            .unwrap_or_default()
    }

    /// The resizes since the last call.
    pub fn take_resizes(&self) -> Vec<ResizeSample> {
        self.resizes
            .lock()
            .map(|mut resizes| std::mem::take(&mut *resizes))
            .unwrap_or_default()
    }

    /// Counts a backend connection opened.
    pub fn backend_opened(&self) {
        self.backend_opened.fetch_add(1, Ordering::Relaxed);
    }

    /// Backend connections opened to the service, ever.
    pub fn backends_opened(&self) -> u64 {
        self.backend_opened.load(Ordering::Relaxed)
    }

    /// How many times `decision` was carried out.
    pub fn decided(&self, decision: Decision) -> u64 {
        self.decisions[decision as usize].load(Ordering::Relaxed)
    }

    /// Records a created service ready `took` seconds after its `POST`,
    /// from `from` (`cold` or `warm`).
    pub fn provisioned(&self, from: &'static str, took: f64) {
        if let Ok(mut slot) = self.provisioned.lock() {
            *slot = Some((from, took));
        }
    }

    /// The creation recorded since the last call, if any.
    pub fn take_provisioned(&self) -> Option<(&'static str, f64)> {
        self.provisioned.lock().ok().and_then(|mut p| p.take())
    }

    /// The wakes since the last call: where from, and seconds taken.
    pub fn take_wakes(&self) -> Vec<(&'static str, f64)> {
        self.wakes
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_outcomes_are_decisions() {
        let stats = ServiceStats::default();
        stats.event(Event::SuspendRequested);
        stats.event(Event::Frozen);
        stats.event(Event::WakeRequested);
        stats.event(Event::Ready);
        let total: u64 = stats
            .decisions
            .iter()
            .map(|d| d.load(Ordering::Relaxed))
            .sum();
        assert_eq!(total, 2);
    }
}
