//! One thread per managed service that owns its driver and walks its
//! lifecycle: it suspends the backend when nothing has run for the idle
//! time, parks it after a longer silence, wakes it when a session asks,
//! and carries out operators' actions. Driver calls block, so each
//! service gets its own thread: a slow container engine delays only the
//! service it serves, never the workers.
//!
//! Suspending is a handshake with the workers, who own the backend
//! connections: the actor publishes `Suspending` and a new suspend epoch,
//! nudges the workers, and each worker's tick closes its idle connections
//! to the service and answers with what it still has lent. A worker
//! checks the state and counts a lent connection in one synchronous step
//! (see `Session::borrow_backend`), so after every worker answered, zero
//! lent means no query runs and none can start before the next wake.

use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use tracing::{info, warn};

pub use super::admin_sql::run_admin_sql;
use super::autoscaler::{unix_ms, Autoscaler, Resized};
use super::driver::{Driver, DriverError, Resources};
use super::policy::{Autoscale, Reason};
use super::relocate::{self, AtRestJob, Prepare, PrepareJob, Prepared, RelocationView};
use super::resize::{self, PoolSizing, Shrink, Step};
use crate::registry::Registry;
use crate::service::lifecycle::{Event, State};
use crate::service::stats::{RelocationSample, ResizeSample};
use crate::service::{AdminAction, KeptAwake, Reconfigure, Request, ResizeRequest, Service};

/// When a service suspends and parks, and how big its buffer pool is.
#[derive(Debug, Clone)]
pub struct Timers {
    /// Idle time (no query, nothing pinned) before a suspend; `None`
    /// never suspends on its own.
    pub suspend_after: Option<Duration>,
    /// Time suspended before parking; `None` never parks on its own.
    pub park_after: Option<Duration>,
    /// How long workers get to answer a suspend.
    pub drain_timeout: Duration,
    /// Buffer pool size while active, in bytes (restored on wake).
    pub buffer_pool_bytes: u64,
    /// Buffer pool size to shrink to before freezing, in bytes.
    pub suspended_buffer_pool_bytes: u64,
}

/// A service's size: where it starts, and how it follows its load.
#[derive(Debug, Clone)]
pub struct Sizing {
    /// The resources it starts with.
    pub start: Resources,
    /// Autoscaling bounds and steps, and whether it is on; `None`: the
    /// service keeps its size unless an operator changes it.
    pub autoscale: Option<(Autoscale, bool)>,
    /// The buffer pool's share of memory.
    pub pool: PoolSizing,
}

/// SQL the scaler runs on the backend with its admin account.
#[derive(Debug, Clone, Default)]
pub struct StartupSql {
    /// After each fresh start (e.g. a schema the image lacks).
    pub always: Vec<String>,
    /// The statements that create or update the service's accounts.
    pub accounts: Vec<String>,
    /// Whether `accounts` must run after each fresh start: the driver
    /// cannot create them itself (docker), or a reload changed them since
    /// the driver's own copy was made (process).
    pub accounts_after_start: bool,
}

/// How an actor runs its service.
#[derive(Debug, Clone)]
pub struct Plan {
    /// When it suspends and parks, and its buffer pool sizes.
    pub timers: Timers,
    /// Its size and how it scales.
    pub sizing: Sizing,
    /// SQL to run on the backend.
    pub startup_sql: StartupSql,
    /// The backend and its data go when Torpor stops.
    pub temporary: bool,
}

/// Starts the actor thread of `service`. It ends on [`Request::Shutdown`]
/// (stopping the backend, data kept) or when every sender is gone.
pub fn spawn(
    service: Arc<Service>,
    driver: Box<dyn Driver>,
    plan: Plan,
    registry: Arc<Registry>,
    requests: mpsc::Receiver<Request>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let Plan {
        timers,
        sizing,
        startup_sql,
        temporary,
    } = plan;
    std::thread::Builder::new()
        .name(format!("torpor-svc-{}", service.name))
        .spawn(move || {
            if let Ok(mut view) = service.scaling.lock() {
                view.resources = Some(sizing.start);
                view.autoscale = sizing.autoscale.as_ref().is_some_and(|(_, on)| *on);
                view.buffer_pool_bytes = Some(timers.buffer_pool_bytes);
            }
            let mut actor = Actor {
                service,
                driver,
                resources: sizing.start,
                autoscale_configured: sizing.autoscale.is_some(),
                // Every managed service is sampled (the admin API and the
                // metrics show its usage); only a configured one may
                // decide.
                autoscaler: match sizing.autoscale {
                    Some((config, on)) => Autoscaler::new(config, on),
                    None => Autoscaler::new(Autoscale::default(), false),
                },
                pool: sizing.pool,
                timers,
                startup_sql,
                temporary,
                registry,
                kept_awake_told: false,
                pins_checked: Instant::now(),
                suspended_at: None,
                accounts_pending: false,
                relocating: None,
                resizing: None,
            };
            actor.run(requests);
        })
}

struct Actor {
    service: Arc<Service>,
    driver: Box<dyn Driver>,
    /// The limits the backend runs under now.
    resources: Resources,
    /// Samples usage and decides resizes, for a service that autoscales.
    autoscaler: Autoscaler,
    /// Whether the service has bounds to scale within
    /// (`[services.autoscale]`).
    autoscale_configured: bool,
    /// The buffer pool's share of memory, kept through resizes.
    pool: PoolSizing,
    timers: Timers,
    startup_sql: StartupSql,
    /// The backend and its data go when Torpor stops.
    temporary: bool,
    /// Where sessions publish their pins: what keeps the service awake.
    registry: Arc<Registry>,
    /// The log said what keeps the service awake past its suspend time;
    /// said again only once nothing was lent in between.
    kept_awake_told: bool,
    /// When the sessions' pins were last looked at.
    pins_checked: Instant,
    suspended_at: Option<Instant>,
    /// A reload changed the accounts while the backend could not take
    /// them (frozen, stopped, or the SQL failed): run them after the
    /// next wake.
    accounts_pending: bool,
    /// A relocation under way (its target is being prepared on a thread
    /// of its own): the service neither suspends nor resizes meanwhile.
    relocating: Option<Relocating>,
    /// A memory shrink under way, waiting for the server's memory.
    resizing: Option<Resizing>,
}

/// A resize the actor carries out in steps.
#[derive(Debug)]
struct Resizing {
    shrink: Shrink,
    to: Resources,
    reason: Option<Reason>,
    started: Instant,
    /// The operator who asked, answered when it is done.
    reply: Option<mpsc::Sender<Result<(), String>>>,
}

/// A relocation the actor started and waits to switch over.
#[derive(Debug, Clone, Copy)]
struct Relocating {
    /// Sessions pinned by what cannot move get an error instead of the
    /// relocation being refused.
    force: bool,
    /// A parked service's move (its data copied at rest).
    at_rest: bool,
    /// The service woke during a move at rest: the copy is stale and goes.
    abandoned: bool,
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

/// How often an active service checks whether it has been idle long
/// enough: the suspend happens at most this late.
const IDLE_CHECK: Duration = Duration::from_millis(250);

/// How often, at most, the sessions' pins are looked at while the
/// service has connections lent out.
const PIN_CHECK: Duration = Duration::from_secs(1);

impl Actor {
    fn run(&mut self, requests: mpsc::Receiver<Request>) {
        loop {
            let request = match requests.recv_timeout(self.next_check()) {
                Ok(request) => Some(request),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            match request {
                Some(Request::Wake) => {
                    let _ = self.wake();
                }
                Some(Request::Admin(action, reply)) => {
                    let pending_before = self.resizing.is_some();
                    let answer = self.admin(action);
                    // A shrink it started answers when it is done.
                    match &mut self.resizing {
                        Some(resizing) if answer.is_ok() && !pending_before => {
                            resizing.reply = Some(reply);
                        }
                        _ => {
                            let _ = reply.send(answer);
                        }
                    }
                }
                Some(Request::Reconfigure(change, reply)) => {
                    let _ = reply.send(self.reconfigure(*change));
                }
                Some(Request::Relocation(prepared)) => self.relocation_prepared(prepared),
                Some(Request::Shutdown) => {
                    self.shutdown();
                    break;
                }
                None => self.on_timer(),
            }
        }
    }

    fn next_check(&self) -> Duration {
        if self.resizing.is_some() {
            return resize::SHRINK_POLL;
        }
        if self.service.lifecycle.state() == State::Active {
            return self.autoscaler.due_in().min(IDLE_CHECK);
        }
        match (self.service.lifecycle.state(), self.suspended_at) {
            (State::Suspended, Some(at)) => match self.timers.park_after {
                Some(after) => after.saturating_sub(at.elapsed()).max(IDLE_CHECK),
                None => Duration::from_secs(3600),
            },
            _ => IDLE_CHECK,
        }
    }

    fn on_timer(&mut self) {
        if self.resizing.is_some() {
            return self.poll_resize();
        }
        if self.relocating.is_some() {
            return;
        }
        match self.service.lifecycle.state() {
            State::Active => {
                self.autoscale();
                let Some(after) = self.timers.suspend_after else {
                    return;
                };
                if self.service.lent() == 0 {
                    self.kept_awake_told = false;
                    if self.service.idle_for() >= after {
                        if let Err(why) = self.suspend() {
                            tracing::debug!(service = %self.service.name, "no suspend: {why}");
                        }
                    }
                    return;
                }
                // A connection lent out counts as activity. When a session
                // has held one pinned for longer than the service may idle,
                // the log says once what keeps the service awake: an idle
                // transaction may hold it for hours, and nobody else would
                // say so. The sessions are looked at once a second at most.
                if self.kept_awake_told || self.pins_checked.elapsed() < PIN_CHECK {
                    return;
                }
                self.pins_checked = Instant::now();
                let Some(awake) = KeptAwake::now(&self.service, &self.registry) else {
                    return;
                };
                let held = awake.oldest.as_ref().map(|p| p.pinned_for);
                if held.is_some_and(|held| held >= after) {
                    self.kept_awake_told = true;
                    info!(
                        service = %self.service.name,
                        held_secs = held.unwrap_or_default().as_secs(),
                        "kept awake past suspend_after_secs: {}",
                        awake.describe()
                    );
                }
            }
            State::Suspended => {
                if let (Some(after), Some(at)) = (self.timers.park_after, self.suspended_at) {
                    if at.elapsed() >= after {
                        if let Err(why) = self.park() {
                            warn!(service = %self.service.name, "park failed: {why}");
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn transition(&self, event: Event) {
        match self.service.lifecycle.apply(event) {
            Ok(_) => self.service.stats.event(event),
            // The actor is the only writer: a refusal is a bug here.
            Err(refused) => warn!(service = %self.service.name, "{refused}"),
        }
        self.service.notify_changed();
    }

    fn admin(&mut self, action: AdminAction) -> Result<(), String> {
        if self.relocating.is_some() && action != AdminAction::Wake {
            return Err("a relocation is under way".into());
        }
        if self.resizing.is_some() && action != AdminAction::Wake {
            return Err("a resize is under way".into());
        }
        match action {
            AdminAction::Suspend => match self.service.lifecycle.state() {
                State::Suspended | State::Parked => Ok(()),
                _ => self.suspend(),
            },
            AdminAction::Park => {
                if self.service.lifecycle.state() == State::Parked {
                    return Ok(());
                }
                if self.service.lifecycle.state() != State::Suspended {
                    self.suspend()?;
                }
                self.park()
            }
            AdminAction::Wake => self.wake(),
            AdminAction::Resize(request) => self.operator_resize(request),
            AdminAction::Relocate { force } => self.start_relocation(force),
        }
    }

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
    fn start_relocation(&mut self, force: bool) -> Result<(), String> {
        match self.service.lifecycle.state() {
            State::Active => {}
            // Asleep, its data is at rest: it moves by a plain copy (a
            // suspended one is parked first, so that its data is whole
            // on disk).
            State::Suspended => {
                self.park()?;
                return self.start_move_at_rest();
            }
            State::Parked => return self.start_move_at_rest(),
            other => return Err(format!("service is {}", other.name())),
        }
        let pins = self.immovable_pins();
        if !pins.is_empty() && !force {
            return Err(format!(
                "sessions hold what cannot move (add force=1 to give them an error instead): {}",
                pins.join("; ")
            ));
        }
        let target = self.driver.relocation_target().map_err(|e| e.to_string())?;
        let backup = self.driver.backup_command().map_err(|e| e.to_string())?;
        let source = self
            .driver
            .admin_access()
            .ok_or("the backend gives no administrative access")?;
        let replicate_from = self
            .driver
            .replication_address()
            .map_err(|e| e.to_string())?;
        let view = RelocationView::starting(self.driver.describe(), target.describe());
        if let Ok(mut shown) = self.service.relocation.lock() {
            *shown = view;
        }
        let job = PrepareJob {
            backup,
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
    fn start_move_at_rest(&mut self) -> Result<(), String> {
        let target = self.driver.relocation_target().map_err(|e| e.to_string())?;
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
    fn relocation_prepared(&mut self, prepared: Prepare) {
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

    /// Samples the backend when a sample is due and applies what the
    /// policy decides.
    fn autoscale(&mut self) {
        let decision = {
            let Ok(mut view) = self.service.scaling.lock() else {
                return;
            };
            self.autoscaler.sample(
                self.driver.as_mut(),
                self.resources,
                self.timers.buffer_pool_bytes,
                &mut view,
            )
        };
        if let Some(decision) = decision {
            let _ = self.resize_to(decision.to, Some(decision.reason));
        }
    }

    /// An operator's resize: now, whatever the policy would say; it
    /// samples on from the new size (or not, if turned off).
    fn operator_resize(&mut self, request: ResizeRequest) -> Result<(), String> {
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
    fn poll_resize(&mut self) {
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

    /// Active → Suspending → Suspended, or back to Active when a worker
    /// still has a connection lent (a query runs, a session is pinned).
    fn suspend(&mut self) -> Result<(), String> {
        if self.service.lifecycle.state() != State::Active {
            return Err(format!(
                "service is {}",
                self.service.lifecycle.state().name()
            ));
        }
        let started = Instant::now();
        self.transition(Event::SuspendRequested);
        let epoch = self.service.suspend_epoch.fetch_add(1, Ordering::AcqRel) + 1;
        self.service.nudge.notify(usize::MAX);
        let deadline = Instant::now() + self.timers.drain_timeout;
        while self
            .service
            .workers
            .iter()
            .any(|w| w.acked_epoch.load(Ordering::Acquire) < epoch)
        {
            if Instant::now() > deadline {
                self.transition(Event::SuspendAborted);
                return Err("workers did not answer the suspend in time".into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let waiting = self.service.waiting();
        if waiting > 0 {
            self.transition(Event::SuspendAborted);
            return Err(format!("{waiting} session(s) are waiting for the backend"));
        }
        let lent = self.service.lent();
        if lent > 0 {
            self.transition(Event::SuspendAborted);
            return Err(format!(
                "{lent} backend connection(s) in use: a query is running or a session holds state that cannot move (see pins)"
            ));
        }
        // Hot pages first, so a wake after a park reloads them; then the
        // pool shrinks, so a frozen backend holds less memory.
        self.admin_sql(&[
            "SET GLOBAL innodb_buffer_pool_dump_now = ON".to_string(),
            format!(
                "SET GLOBAL innodb_buffer_pool_size = {}",
                self.timers.suspended_buffer_pool_bytes
            ),
        ]);
        if let Err(e) = self.driver.freeze() {
            warn!(service = %self.service.name, "freeze failed: {e}");
            self.transition(Event::SuspendAborted);
            return Err(format!("freeze failed: {e}"));
        }
        self.suspended_at = Some(Instant::now());
        self.autoscaler.restart();
        self.transition(Event::Frozen);
        info!(service = %self.service.name, ms = started.elapsed().as_millis() as u64, "suspended");
        Ok(())
    }

    /// Suspended → Parked: the backend stops, its data stays.
    fn park(&mut self) -> Result<(), String> {
        if self.service.lifecycle.state() != State::Suspended {
            return Err(format!(
                "service is {}",
                self.service.lifecycle.state().name()
            ));
        }
        match self.driver.stop() {
            // Gone already: parked is what it is.
            Ok(()) | Err(DriverError::Gone(_)) => {}
            Err(e) => return Err(format!("stop failed: {e}")),
        }
        self.service.set_address(None);
        self.suspended_at = None;
        self.transition(Event::Parked);
        Ok(())
    }

    /// Suspended or Parked → Waking → Active (or back, on failure).
    fn wake(&mut self) -> Result<(), String> {
        let from = self.service.lifecycle.state();
        // A parked service moving wakes where it is; the copy is stale.
        if let Some(relocating) = self.relocating.as_mut().filter(|r| r.at_rest) {
            if from != State::Active && !relocating.abandoned {
                info!(service = %self.service.name, "woken during its move: the move is abandoned");
                relocating.abandoned = true;
            }
        }
        match from {
            State::Active => {
                self.service.notify_changed();
                return Ok(());
            }
            State::Suspended | State::Parked => {}
            other => return Err(format!("service is {}", other.name())),
        }
        let started = Instant::now();
        self.transition(Event::WakeRequested);
        let mut fresh_start = from == State::Parked;
        let woke = match from {
            State::Suspended => self.driver.thaw().or_else(|e| {
                // Frozen but gone (removed underneath): start it anew.
                warn!(service = %self.service.name, "thaw failed ({e}); starting the backend");
                fresh_start = true;
                self.driver.start()
            }),
            _ => self.driver.start(),
        };
        match woke {
            Ok(address) => {
                self.service.set_address(Some(address));
                // The backend's accounts are read with the scaler's own
                // admin account, wherever the backend now listens.
                self.service
                    .accounts
                    .set_access(self.driver.admin_access().map(Into::into));
                self.suspended_at = None;
                if fresh_start {
                    self.admin_sql(&self.startup_sql.always.clone());
                }
                if (fresh_start && self.startup_sql.accounts_after_start) || self.accounts_pending {
                    self.accounts_pending = self.run_accounts_sql().is_err();
                }
                // The idle clock starts again: a service just woken is not
                // idle since before it slept.
                self.service.touch();
                self.autoscaler.restart();
                self.transition(Event::Ready);
                let took = started.elapsed();
                self.service.stats.woke(from, took);
                info!(service = %self.service.name, from = from.name(), ms = took.as_millis() as u64, "woke");
                self.after_wake();
                Ok(())
            }
            Err(e) => {
                let cause = e.to_string();
                warn!(service = %self.service.name, from = from.name(), "wake failed: {cause}");
                // The driver may have left nothing running: a parked
                // service is the honest state for a later retry.
                self.transition(Event::WakeFailed);
                // Clients get the kind of failure; the operator (the log,
                // the admin API's answer) gets the whole text.
                self.service.wake_failed(e.client_cause().to_string());
                Err(cause)
            }
        }
    }

    /// A config reload: new timers now; new accounts on the backend now
    /// when it runs, else after its next wake.
    fn reconfigure(&mut self, change: Reconfigure) -> Result<(), String> {
        self.timers.suspend_after = change.suspend_after;
        self.timers.park_after = change.park_after;
        let Some(accounts) = change.accounts_sql else {
            return Ok(());
        };
        self.startup_sql.accounts = accounts;
        // The driver's own copy (the process driver's init file) is the
        // start's: after a fresh start these statements correct it.
        self.startup_sql.accounts_after_start = true;
        if self.service.lifecycle.state() != State::Active {
            self.accounts_pending = true;
            return Ok(());
        }
        let applied = self.run_accounts_sql();
        self.accounts_pending = applied.is_err();
        applied.map_err(|e| format!("accounts not applied yet (retried at the next wake): {e}"))
    }

    fn run_accounts_sql(&self) -> Result<(), String> {
        let Some(access) = self.driver.admin_access() else {
            return Err("the driver gives no admin access".into());
        };
        run_admin_sql(&access, &self.startup_sql.accounts).inspect_err(|e| {
            warn!(service = %self.service.name, "applying the accounts failed: {e}");
        })
    }

    /// The buffer pool grows back and reloads its hot pages, in the
    /// background: queries run meanwhile.
    fn after_wake(&self) {
        let Some(access) = self.driver.admin_access() else {
            return;
        };
        let statements = vec![
            format!(
                "SET GLOBAL innodb_buffer_pool_size = {}",
                self.timers.buffer_pool_bytes
            ),
            "SET GLOBAL innodb_buffer_pool_load_now = ON".to_string(),
        ];
        let name = self.service.name.clone();
        let _ = std::thread::Builder::new()
            .name(format!("torpor-warm-{name}"))
            .spawn(move || {
                if let Err(e) = run_admin_sql(&access, &statements) {
                    tracing::debug!(service = %name, "buffer pool restore: {e}");
                }
            });
    }

    fn admin_sql(&self, statements: &[String]) {
        if statements.is_empty() {
            return;
        }
        let Some(access) = self.driver.admin_access() else {
            return;
        };
        if let Err(e) = run_admin_sql(&access, statements) {
            warn!(service = %self.service.name, "administrative SQL failed: {e}");
        }
    }

    fn shutdown(&mut self) {
        if self.temporary {
            if let Err(e) = self.driver.destroy() {
                warn!(service = %self.service.name, "removing the backend: {e}");
            }
            return;
        }
        if matches!(
            self.service.lifecycle.state(),
            State::Parked | State::Waking
        ) {
            return;
        }
        if let Err(e) = self.driver.stop() {
            warn!(service = %self.service.name, "stopping the backend: {e}");
        }
    }
}

#[cfg(test)]
mod tests;
