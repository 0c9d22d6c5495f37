//! The actor's part in resizing: the autoscaler's samples and decisions,
//! operators' resizes, and a shrink carried out in steps
//! ([`super::resize`]) while the actor keeps answering.

use std::sync::mpsc;
use std::time::Instant;

use tracing::{info, warn};

use super::Actor;
use crate::scaler::autoscaler::{unix_ms, Resized};
use crate::scaler::driver::Resources;
use crate::scaler::policy::Reason;
use crate::scaler::resize::{self, Shrink, Step};
use crate::service::lifecycle::State;
use crate::service::stats::ResizeSample;
use crate::service::ResizeRequest;

/// A resize the actor carries out in steps.
#[derive(Debug)]
pub(super) struct Resizing {
    shrink: Shrink,
    to: Resources,
    reason: Option<Reason>,
    started: Instant,
    /// The operator who asked, answered when it is done.
    pub(super) reply: Option<mpsc::Sender<Result<(), String>>>,
}

impl Actor {
    /// Samples the backend when a sample is due and applies what the
    /// policy decides.
    pub(super) fn autoscale(&mut self) {
        let decision = self.autoscaler.sample(
            self.driver.as_mut(),
            self.resources,
            self.timers.buffer_pool_bytes,
            &self.service.scaling,
        );
        if let Some(decision) = decision {
            let _ = self.resize_to(decision.to, Some(decision.reason));
        }
    }

    /// An operator's resize: now, whatever the policy would say; it
    /// samples on from the new size (or not, if turned off).
    pub(super) fn operator_resize(&mut self, request: ResizeRequest) -> Result<(), String> {
        if let Some(on) = request.autoscale {
            if !self.autoscale_configured {
                return Err(
                    "the service has no [services.autoscale] section: no bounds to scale within"
                        .into(),
                );
            }
            self.autoscaler.enabled = on;
            self.autoscaler.restart();
            if let Ok(mut view) = self.service.scaling.lock() {
                view.autoscale = on;
            }
        }
        if request.cpus.is_none() && request.memory_mib.is_none() {
            return Ok(());
        }
        let to = Resources {
            cpus: request.cpus.unwrap_or(self.resources.cpus),
            memory_mib: request.memory_mib.unwrap_or(self.resources.memory_mib),
        };
        if !(to.cpus > 0.0 && to.memory_mib > 0) {
            return Err("cpus and memory_mib must be above 0".into());
        }
        if self.service.lifecycle.state() != State::Active {
            return Err(format!(
                "service is {}: wake it first",
                self.service.lifecycle.state().name()
            ));
        }
        self.resize_to(to, None)
    }

    /// Resizes the running backend to `to` (buffer pool in proportion),
    /// records it for the admin API and metrics. A memory shrink goes on
    /// in steps ([`Actor::poll_resize`]) while the actor keeps answering.
    fn resize_to(&mut self, to: Resources, reason: Option<Reason>) -> Result<(), String> {
        let from = self.resources;
        let started = Instant::now();
        let outcome = match resize::start(
            self.driver.as_mut(),
            &self.service.name,
            from,
            to,
            self.pool,
        ) {
            Ok(Step::Shrinking(shrink)) => {
                self.resizing = Some(Resizing {
                    shrink,
                    to,
                    reason,
                    started,
                    reply: None,
                });
                return Ok(());
            }
            Ok(Step::Done(applied)) => Ok(applied),
            Err(e) => Err(e),
        };
        self.resized(from, to, reason, started, outcome)
    }

    /// One step of a shrink under way: done once the server gave its
    /// memory back (or the wait is over); answers the operator who asked.
    pub(super) fn poll_resize(&mut self) {
        let Some(resizing) = &self.resizing else {
            return;
        };
        let Some(outcome) = resizing.shrink.poll(self.driver.as_mut()) else {
            return;
        };
        let Some(Resizing {
            to,
            reason,
            started,
            reply,
            ..
        }) = self.resizing.take()
        else {
            return;
        };
        let answer = self.resized(self.resources, to, reason, started, outcome);
        if let Some(reply) = reply {
            let _ = reply.send(answer);
        }
    }

    /// Records a resize that ended (applied or refused) for the admin API
    /// and metrics.
    fn resized(
        &mut self,
        from: Resources,
        to: Resources,
        reason: Option<Reason>,
        started: Instant,
        outcome: Result<resize::Applied, resize::ResizeError>,
    ) -> Result<(), String> {
        let took = started.elapsed();
        let (applied, error) = match &outcome {
            Ok(applied) => (Some(*applied), None),
            Err(e) => (None, Some(e.to_string())),
        };
        if let Some(applied) = applied {
            self.resources = applied.resources;
            self.timers.buffer_pool_bytes = self.pool.bytes_for(applied.resources.memory_mib);
        }
        self.autoscaler.restart();
        let direction = if to.cpus > from.cpus || to.memory_mib > from.memory_mib {
            "up"
        } else {
            "down"
        };
        let why = reason.map_or("operator", |r| r.label());
        match &error {
            None => info!(
                service = %self.service.name,
                from_cpus = from.cpus,
                from_memory_mib = from.memory_mib,
                cpus = self.resources.cpus,
                memory_mib = self.resources.memory_mib,
                reason = why,
                ms = took.as_millis() as u64,
                "resized"
            ),
            Some(e) => warn!(service = %self.service.name, reason = why, "resize refused: {e}"),
        }
        if error.is_none() {
            self.service.stats.resized(ResizeSample {
                direction,
                reason: why,
                seconds: took.as_secs_f64(),
            });
        }
        if let Ok(mut view) = self.service.scaling.lock() {
            view.resources = Some(self.resources);
            view.buffer_pool_bytes = applied
                .and_then(|a| a.buffer_pool_bytes)
                .or(Some(self.timers.buffer_pool_bytes));
            view.record(Resized {
                at_unix_ms: unix_ms(),
                from,
                to: self.resources,
                reason,
                took_ms: took.as_millis() as u64,
                error: error.clone(),
            });
        }
        error.map_or(Ok(()), Err)
    }
}
