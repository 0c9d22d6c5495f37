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
use super::autoscaler::Autoscaler;
use super::driver::{Driver, DriverError, Resources};
use super::policy::Autoscale;
use super::resize::{self, PoolSizing};
use crate::registry::Registry;
use crate::service::lifecycle::{Event, State};
use crate::service::{AdminAction, KeptAwake, Reconfigure, Request, Service};
use relocation::Relocating;
use resizing::Resizing;

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
    /// The driver took over a warm pool's server: the first wake is
    /// counted as `from="warm"`.
    pub from_warm: bool,
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
        from_warm,
    } = plan;
    std::thread::Builder::new()
        .name(format!("torpor-svc-{}", service.name))
        .spawn(move || {
            if let Ok(mut view) = service.scaling.lock() {
                view.resources = Some(sizing.start);
                view.autoscale = sizing.autoscale.as_ref().is_some_and(|(_, on)| *on);
                view.buffer_pool_bytes = Some(timers.buffer_pool_bytes);
                view.host = Some(driver.host().to_string());
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
                storage_checked: None,
                from_warm,
            };
            actor.adopt_frozen();
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
    /// When the storage was last sampled.
    storage_checked: Option<Instant>,
    /// The next wake is a warm pool's server's first (see
    /// [`Plan::from_warm`]).
    from_warm: bool,
}

/// How often an active service checks whether it has been idle long
/// enough: the suspend happens at most this late.
const IDLE_CHECK: Duration = Duration::from_millis(250);

/// How often, at most, the sessions' pins are looked at while the
/// service has connections lent out.
const PIN_CHECK: Duration = Duration::from_secs(1);

/// How often the storage's view is published (and, where no volume
/// grows on its own thread, the filesystem sampled).
const STORAGE_CHECK: Duration = Duration::from_millis(250);

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
        self.watch_storage();
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

    /// Publishes the storage's view (sampled here where no thread of its
    /// own grows it), at most once per [`STORAGE_CHECK`]; whatever the
    /// lifecycle is doing, since writes that were already running go on.
    fn watch_storage(&mut self) {
        if self
            .storage_checked
            .is_some_and(|at| at.elapsed() < STORAGE_CHECK)
        {
            return;
        }
        self.storage_checked = Some(Instant::now());
        let Some(view) = self.driver.check_storage() else {
            return;
        };
        if let Ok(mut scaling) = self.service.scaling.lock() {
            scaling.storage = Some(view);
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
            AdminAction::Relocate { force, to } => self.start_relocation(force, to.as_deref()),
        }
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
        // A warm pool's server (found paused, for a container) has none
        // of the service's accounts yet: as a fresh start's.
        let mut fresh_start = from == State::Parked || self.from_warm;
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
                let from_warm = std::mem::take(&mut self.from_warm);
                let from = if from_warm { "warm" } else { from.name() };
                self.service.stats.woke(from, took);
                info!(service = %self.service.name, from, ms = took.as_millis() as u64, "woke");
                if from_warm {
                    if let Err(e) = self.driver.take_service_limits() {
                        warn!(service = %self.service.name, "the warm server keeps the pool's limits: {e}");
                    }
                }
                self.after_wake();
                Ok(())
            }
            Err(e) => {
                let cause = e.to_string();
                warn!(service = %self.service.name, from = from.name(), "wake failed: {cause}");
                // Clients get the kind of failure; the operator (the log,
                // the admin API's answer) gets the whole text. Recorded
                // before the transition, whose notice wakes the waiters.
                self.service.wake_failed(e.client_cause().to_string());
                // The driver may have left nothing running: a parked
                // service is the honest state for a later retry.
                self.transition(Event::WakeFailed);
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

    /// A service that starts parked, whose backend a suspend left frozen
    /// before Torpor last stopped, is suspended: its park timer runs from
    /// now, and the next query thaws it.
    fn adopt_frozen(&mut self) {
        if self.temporary
            || self.service.lifecycle.state() != State::Parked
            || !self.driver.freeze_outlives_torpor()
        {
            return;
        }
        // A warm pool's container is paused: no need to ask the engine.
        if self.from_warm || self.driver.found_frozen() {
            self.transition(Event::FoundFrozen);
            self.suspended_at = Some(Instant::now());
            info!(service = %self.service.name, "found frozen, as it was left: suspended");
        }
    }

    fn shutdown(&mut self) {
        if self.temporary {
            if let Err(e) = self.driver.destroy() {
                warn!(service = %self.service.name, "removing the backend: {e}");
            }
            return;
        }
        match self.service.lifecycle.state() {
            State::Parked | State::Waking => return,
            // Found again, still frozen, when Torpor starts: a restart of
            // Torpor leaves a suspended service suspended.
            State::Suspended if self.driver.freeze_outlives_torpor() => {
                info!(service = %self.service.name, "left suspended for the next start");
                return;
            }
            _ => {}
        }
        if let Err(e) = self.driver.stop() {
            warn!(service = %self.service.name, "stopping the backend: {e}");
        }
    }
}

mod relocation;
mod resizing;

#[cfg(test)]
mod tests;
