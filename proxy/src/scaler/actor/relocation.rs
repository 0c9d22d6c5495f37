//! The actor's part in a relocation: it starts the copy and catch-up on
//! a thread of its own ([`super::relocate`]), keeps answering meanwhile,
//! and carries out the switch-over when the target is ready.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::Actor;
use crate::config::hosts::HostConfig;
use crate::scaler::driver::Driver;
use crate::scaler::relocate::{self, AtRestJob, Prepare, PrepareJob, Prepared, RelocationView};
use crate::service::lifecycle::{Event, State};
use crate::service::stats::RelocationSample;
use crate::service::{KeptAwake, Request};

/// A relocation the actor started and waits to switch over.
#[derive(Debug, Clone, Copy)]
pub(super) struct Relocating {
    /// Sessions pinned by what cannot move get an error instead of the
    /// relocation being refused.
    pub(super) force: bool,
    /// A parked service's move (its data copied at rest).
    pub(super) at_rest: bool,
    /// The service woke during a move at rest: the copy is stale and goes.
    pub(super) abandoned: bool,
}

/// How long a relocation's switch-over lets running statements finish on
/// the old backend before it goes on without them (open transactions
/// wait only [`TRANSACTION_GRACE`]: then their journals are replayed on
/// the new one).
const SWITCH_BOUND: Duration = Duration::from_secs(2);

/// How long a switch-over lets open transactions finish on the old
/// backend before it carries the idle ones over.
const TRANSACTION_GRACE: Duration = Duration::from_millis(500);

/// Pins a session can move with: an open transaction is replayed from
/// its journal on the new backend.
const MOVABLE_PINS: [&str; 2] = ["transaction", "next-transaction"];

impl Actor {
    /// Pins of the service's sessions that cannot move with them, as
    /// `session N: reason` lines.
    fn immovable_pins(&self) -> Vec<String> {
        self.registry
            .pins_of(self.service.index)
            .into_iter()
            .filter_map(|pinned| {
                let stuck: Vec<&str> = pinned
                    .reasons
                    .iter()
                    .copied()
                    .filter(|r| !MOVABLE_PINS.contains(r))
                    .collect();
                (!stuck.is_empty())
                    .then(|| format!("session {}: {}", pinned.session, stuck.join(", ")))
            })
            .collect()
    }

    /// Starts moving the service to a new backend: the copy and the
    /// catch-up run on a thread of their own; the actor switches over
    /// when it reports ([`Actor::relocation_prepared`]).
    pub(super) fn start_relocation(
        &mut self,
        force: bool,
        to: Option<&HostConfig>,
    ) -> Result<(), String> {
        match self.service.lifecycle.state() {
            State::Active => {}
            // Asleep, its data is at rest: it moves by a plain copy (a
            // suspended one is parked first, so that its data is whole
            // on disk).
            State::Suspended => {
                self.park()?;
                return self.start_move_at_rest(to);
            }
            State::Parked => return self.start_move_at_rest(to),
            other => return Err(format!("service is {}", other.name())),
        }
        let pins = self.immovable_pins();
        if !pins.is_empty() && !force {
            return Err(format!(
                "sessions hold what cannot move (add force=1 to give them an error instead): {}",
                pins.join("; ")
            ));
        }
        let target = self
            .driver
            .relocation_target(to)
            .map_err(|e| e.to_string())?;
        let backup = self.driver.backup_command().map_err(|e| e.to_string())?;
        let hot_pages = self.driver.hot_pages_command().map_err(|e| e.to_string())?;
        let source = self
            .driver
            .admin_access()
            .ok_or("the backend gives no administrative access")?;
        let replicate_from = self
            .driver
            .replication_address(target.host())
            .map_err(|e| e.to_string())?;
        let view = RelocationView::starting(self.driver.describe(), target.describe());
        if let Ok(mut shown) = self.service.relocation.lock() {
            *shown = view;
        }
        let job = PrepareJob {
            backup,
            hot_pages,
            source,
            replicate_from,
            target,
            resources: self.resources,
            buffer_pool_bytes: self.timers.buffer_pool_bytes,
            view: Arc::clone(&self.service.relocation),
        };
        self.spawn_preparation(move || relocate::prepare(job))?;
        self.relocating = Some(Relocating {
            force,
            at_rest: false,
            abandoned: false,
        });
        info!(service = %self.service.name, force, "relocation started");
        Ok(())
    }

    /// Starts moving a parked service: its data is copied on a thread of
    /// its own; a wake meanwhile abandons the move.
    fn start_move_at_rest(&mut self, to: Option<&HostConfig>) -> Result<(), String> {
        let target = self
            .driver
            .relocation_target(to)
            .map_err(|e| e.to_string())?;
        let export = self.driver.export_at_rest().map_err(|e| e.to_string())?;
        let view = RelocationView::starting(self.driver.describe(), target.describe());
        if let Ok(mut shown) = self.service.relocation.lock() {
            *shown = view;
        }
        let job = AtRestJob {
            export,
            target,
            view: Arc::clone(&self.service.relocation),
        };
        self.spawn_preparation(move || relocate::prepare_at_rest(job))?;
        self.relocating = Some(Relocating {
            force: false,
            at_rest: true,
            abandoned: false,
        });
        info!(service = %self.service.name, "relocation of the parked service started");
        Ok(())
    }

    /// Runs a relocation's long part on a thread of its own, which hands
    /// the result back as a request.
    fn spawn_preparation(
        &self,
        prepare: impl FnOnce() -> Prepare + Send + 'static,
    ) -> Result<(), String> {
        let service = Arc::clone(&self.service);
        std::thread::Builder::new()
            .name(format!("torpor-move-{}", self.service.name))
            .spawn(move || {
                let prepared = prepare();
                // The actor is gone (Torpor stops): the target goes.
                if let Err(Request::Relocation(Prepare::Ready(prepared))) =
                    service.request_or_return(Request::Relocation(prepared))
                {
                    relocate::retire(prepared.target, service.name.clone(), None);
                }
            })
            .map(|_| ())
            .map_err(|e| format!("starting the relocation: {e}"))
    }

    /// The relocation's target caught up (or failed to): switch over.
    pub(super) fn relocation_prepared(&mut self, prepared: Prepare) {
        let Some(relocating) = self.relocating.take() else {
            return;
        };
        let force = relocating.force;
        let failed = |actor: &Actor, why: String| {
            warn!(service = %actor.service.name, "relocation failed: {why}");
            if let Ok(mut view) = actor.service.relocation.lock() {
                view.phase = "failed";
                view.error = Some(why);
            }
            actor.service.stats.relocated(RelocationSample {
                result: "failed",
                seconds: None,
                stall_seconds: None,
            });
        };
        let prepared = match prepared {
            Prepare::Ready(prepared) => prepared,
            Prepare::Failed(why) => return failed(self, why),
        };
        let Prepared {
            mut target,
            endpoint,
            started,
        } = *prepared;
        let switching = Instant::now();
        let switched = match endpoint {
            Some(endpoint) => self.switch_over(target.as_mut(), endpoint, force),
            None if relocating.abandoned => {
                Err("the service woke during the move: its data changed".to_string())
            }
            None if self.service.lifecycle.state() == State::Parked => {
                Ok((Duration::ZERO, Vec::new(), None))
            }
            None => Err(format!(
                "the service is {}, not parked, at the end of the move",
                self.service.lifecycle.state().name()
            )),
        };
        match switched {
            Ok((stall, pins_left, fence)) => {
                if let Err(e) = target.take_over() {
                    warn!(service = %self.service.name, "recording the new backend: {e}");
                }
                if let Ok(mut view) = self.service.scaling.lock() {
                    view.host = Some(target.host().to_string());
                }
                let old = std::mem::replace(&mut self.driver, target);
                relocate::retire(old, self.service.name.clone(), fence);
                // Usage is read from the new backend now: its counters
                // start afresh.
                self.autoscaler.restart();
                let total = started.elapsed();
                if let Ok(mut view) = self.service.relocation.lock() {
                    view.phase = "moved";
                    view.switch_ms = Some(switching.elapsed().as_millis() as u64);
                    view.stall_ms = Some(stall.as_millis() as u64);
                    view.total_ms = Some(total.as_millis() as u64);
                    view.pins_left = pins_left;
                }
                self.service.stats.relocated(RelocationSample {
                    result: "moved",
                    seconds: Some(total.as_secs_f64()),
                    stall_seconds: Some(stall.as_secs_f64()),
                });
                info!(
                    service = %self.service.name,
                    to = %self.driver.describe(),
                    ms = total.as_millis() as u64,
                    stall_ms = stall.as_millis() as u64,
                    "relocated"
                );
            }
            Err(why) => {
                relocate::retire(target, self.service.name.clone(), None);
                failed(self, why);
            }
        }
    }

    /// The switch-over: new statements wait while the statements running
    /// get up to [`SWITCH_BOUND`] to finish; then the source stops taking
    /// writes, the target applies the last of them and becomes the
    /// service's backend. Returns how long statements waited, the pins
    /// that could not move (forced), and the source's fence, to hold
    /// until the source is removed.
    fn switch_over(
        &mut self,
        target: &mut dyn Driver,
        endpoint: crate::endpoint::Endpoint,
        force: bool,
    ) -> Result<(Duration, Vec<String>, Option<relocate::Fenced>), String> {
        let state = self.service.lifecycle.state();
        if state != State::Active {
            return Err(format!("service is {} at the switch-over", state.name()));
        }
        let stall = Instant::now();
        self.transition(Event::MoveRequested);
        let deadline = stall + SWITCH_BOUND;
        // As for a suspend: the workers close their idle connections and
        // say what they still have lent; asked again until nothing is
        // lent, or the bound passes.
        loop {
            let epoch = self.service.suspend_epoch.fetch_add(1, Ordering::AcqRel) + 1;
            self.service.nudge.notify(usize::MAX);
            while Instant::now() < deadline
                && self
                    .service
                    .workers
                    .iter()
                    .any(|w| w.acked_epoch.load(Ordering::Acquire) < epoch)
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            // Open transactions get a short grace to finish where they
            // began: one carried over replays on the target at a later
            // snapshot, and under concurrent writes its reads may differ
            // there, which refuses the replay (its client gets a
            // retryable error). Past the grace, sessions idle in a
            // transaction move with their journals; statements running
            // must end first, up to the bound.
            let running = KeptAwake::now(&self.service, &self.registry)
                .map_or(0, |awake| awake.queries_running);
            let settled =
                self.service.lent() == 0 || (running == 0 && stall.elapsed() >= TRANSACTION_GRACE);
            if settled || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let pins_left = self.immovable_pins();
        if !pins_left.is_empty() && !force {
            self.transition(Event::MoveAborted);
            return Err(format!(
                "sessions still hold what cannot move after {}s: {}",
                SWITCH_BOUND.as_secs(),
                pins_left.join("; ")
            ));
        }
        // From here no session sends another statement on a connection to
        // the source: each moves at its next one.
        self.service.retire_generation();
        let abort = |actor: &Actor, why: String| {
            actor.transition(Event::MoveAborted);
            Err(why)
        };
        let Some(source) = self.driver.admin_access() else {
            return abort(self, "the source gives no administrative access".into());
        };
        let Some(target_access) = target.admin_access() else {
            return abort(self, "the target gives no administrative access".into());
        };
        let fenced = match relocate::fence(&source, Duration::from_secs(5)) {
            Ok(fenced) => fenced,
            Err(why) => return abort(self, why),
        };
        if let Err(why) = relocate::promote(&target_access, &fenced.position) {
            fenced.release();
            return abort(self, why);
        }
        self.service.set_address(Some(endpoint));
        self.service.accounts.set_access(Some(target_access.into()));
        self.transition(Event::Moved);
        let waited = stall.elapsed();
        // The source stays fenced until it is removed: a statement that
        // reached it after the fence (a pinned session's, sent as the
        // generation changed) waits on the lock until its connection
        // breaks with the old backend, and its session then replays the
        // transaction on the target. Released now, it would run into
        // read_only and fail.
        Ok((waited, pins_left, Some(fenced)))
    }
}
