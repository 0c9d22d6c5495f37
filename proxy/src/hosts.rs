//! The hosts services run on (`[[hosts]]`), and where services go:
//! placement by free memory, draining a host, and a host's memory
//! watermark.
//!
//! A host's load is what Torpor has given its services there: the memory
//! limit of each service that holds memory on it (running or suspended;
//! a parked one holds none). Its capacity is its entry's `memory_mib`, or
//! what its engine reports, asked once. A moving service goes to the host
//! with the most memory left; a draining host takes none.
//!
//! Moves run one at a time, on a thread of their own: a drain walks its
//! host's services in turn, and the watermark watcher moves the
//! least-used service off a host over its watermark, then looks again.

use std::collections::{HashMap, HashSet};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tracing::{info, warn};

use crate::config::hosts::{with_local, HostConfig};
use crate::context::Shared;
use crate::service::lifecycle::State;
use crate::service::{AdminAction, Request, Service};

/// How often the watermark watcher looks at the hosts.
const WATERMARK_EVERY: Duration = Duration::from_secs(5);

/// How long one move may take before a drain goes on to the next service.
const MOVE_LIMIT: Duration = Duration::from_secs(600);

/// The hosts, and what Torpor learned of them.
#[derive(Debug)]
pub struct Hosts {
    /// Every host, `local` first unless an entry describes it.
    hosts: Vec<HostConfig>,
    /// What survives between requests.
    state: Arc<Mutex<HostsState>>,
}

/// What the hosts' moves share.
#[derive(Debug, Default)]
struct HostsState {
    /// Memory each host offers, MiB, as its engine reported it.
    capacity_mib: HashMap<String, u64>,
    /// Hosts being drained: they take no service.
    draining: HashSet<String>,
    /// A drain or a watermark move is under way (one at a time).
    moving: bool,
    /// Hosts whose engine did not say its memory: said once in the log,
    /// not at every look.
    unknown: HashSet<String>,
}

/// One host's load, as placement sees it.
#[derive(Debug, Clone)]
struct Load {
    host: HostConfig,
    /// `None` when its engine did not say.
    capacity_mib: Option<u64>,
    assigned_mib: u64,
    services: Vec<Arc<Service>>,
}

impl Load {
    fn free_mib(&self) -> Option<u64> {
        Some(self.capacity_mib?.saturating_sub(self.assigned_mib))
    }
}

impl Hosts {
    /// The hosts of `entries` (the config's `[[hosts]]`).
    pub fn new(entries: &[HostConfig]) -> Hosts {
        Hosts {
            hosts: with_local(entries),
            state: Arc::default(),
        }
    }

    /// The host named `name`.
    pub fn get(&self, name: &str) -> Option<&HostConfig> {
        self.hosts.iter().find(|host| host.name == name)
    }

    /// The memory `host` offers: its entry's, this machine's for a host
    /// on it (`local`, a base directory), else what its engine says
    /// (asked once).
    fn capacity(&self, host: &HostConfig) -> Option<u64> {
        if let Some(memory) = host.memory_mib {
            return Some(memory);
        }
        if host.engine.is_none() {
            return Some(crate::scaler::process_driver::host_memory_mib());
        }
        if let Some(known) = lock(&self.state).capacity_mib.get(&host.name) {
            return Some(*known);
        }
        match crate::scaler::docker::capacity_mib(host) {
            Ok(mib) => {
                let mut state = lock(&self.state);
                state.capacity_mib.insert(host.name.clone(), mib);
                state.unknown.remove(&host.name);
                Some(mib)
            }
            Err(e) => {
                if lock(&self.state).unknown.insert(host.name.clone()) {
                    warn!(host = %host.name, "the host's memory is unknown, so it takes no service: {e}");
                }
                None
            }
        }
    }

    /// Every host's load now.
    fn loads(&self, services: &[Arc<Service>]) -> Vec<Load> {
        self.hosts
            .iter()
            .map(|host| {
                let on: Vec<Arc<Service>> = services
                    .iter()
                    .filter(|service| host_of(service).as_deref() == Some(host.name.as_str()))
                    .cloned()
                    .collect();
                Load {
                    capacity_mib: self.capacity(host),
                    assigned_mib: on.iter().map(|service| assigned_mib(service)).sum(),
                    services: on,
                    host: host.clone(),
                }
            })
            .collect()
    }

    /// The host with the most free memory for a service of `size_mib`
    /// leaving host `from` (which may take it back when `may_stay`: the
    /// service's own memory there is freed by the move), never a
    /// draining host; `None` when none has room under its watermark.
    fn choose(
        &self,
        loads: &[Load],
        service: &Service,
        from: &str,
        may_stay: bool,
    ) -> Option<HostConfig> {
        let draining = lock(&self.state).draining.clone();
        let fitting: Vec<Load> = loads
            .iter()
            .filter(|load| load.host.takes(service.driver))
            .cloned()
            .collect();
        choose_among(&fitting, &draining, from, assigned_mib(service), may_stay)
    }
}

/// See [`Hosts::choose`].
fn choose_among(
    loads: &[Load],
    draining: &HashSet<String>,
    from: &str,
    size_mib: u64,
    may_stay: bool,
) -> Option<HostConfig> {
    loads
        .iter()
        .filter(|load| !draining.contains(&load.host.name))
        .filter(|load| may_stay || load.host.name != from)
        .filter_map(|load| {
            let capacity = load.capacity_mib?;
            let mut assigned = load.assigned_mib;
            if load.host.name == from {
                assigned = assigned.saturating_sub(size_mib);
            }
            let after = assigned + size_mib;
            (after as f64 <= load.host.watermark * capacity as f64)
                .then_some((capacity.saturating_sub(assigned), load))
        })
        .max_by_key(|(free, _)| *free)
        .map(|(_, load)| load.host.clone())
}

/// Where `service` goes when a relocation names no host: the host with
/// the most free memory, its own included; `None` (stay on its own) with
/// a single host or when none has room.
pub fn placement(shared: &Shared, service: &Service) -> Option<HostConfig> {
    if shared.hosts.hosts.len() < 2 {
        return None;
    }
    let from = host_of(service)?;
    let loads = shared.hosts.loads(&shared.services.live());
    shared.hosts.choose(&loads, service, &from, true)
}

/// Where a new service of driver `kind` and `size_mib` of memory goes:
/// the host with the most free memory that stays under its watermark
/// with it; `None` (its driver's default) with a single host or when
/// none has room.
pub fn place_new(shared: &Shared, kind: &str, size_mib: u64) -> Option<HostConfig> {
    if shared.hosts.hosts.len() < 2 {
        return None;
    }
    let loads: Vec<Load> = shared
        .hosts
        .loads(&shared.services.live())
        .into_iter()
        .filter(|load| load.host.takes(kind))
        .collect();
    let draining = lock(&shared.hosts.state).draining.clone();
    choose_among(&loads, &draining, "", size_mib, false)
}

/// The host a service's backend runs on, as its scaler last said.
fn host_of(service: &Service) -> Option<String> {
    service.scaling.lock().ok()?.host.clone()
}

/// The memory a service holds on its host, MiB: its limit while it runs
/// or is suspended; nothing parked.
fn assigned_mib(service: &Service) -> u64 {
    if service.lifecycle.state() == State::Parked {
        return 0;
    }
    service
        .scaling
        .lock()
        .ok()
        .and_then(|view| view.resources)
        .map_or(0, |resources| resources.memory_mib)
}

/// Locks the state; a panic elsewhere while it was held leaves it usable.
fn lock(state: &Mutex<HostsState>) -> std::sync::MutexGuard<'_, HostsState> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// The host `name`, for moving `service` there: 404 for an unknown host,
/// 409 for a draining one.
pub fn destination(
    shared: &Shared,
    service: &Service,
    name: &str,
) -> Result<HostConfig, (u16, Value)> {
    let Some(host) = shared.hosts.get(name) else {
        return Err((
            404,
            json!({"error": format!("no host named '{name}'"), "hosts": host_names(shared)}),
        ));
    };
    if lock(&shared.hosts.state).draining.contains(name) {
        return Err((
            409,
            json!({"error": format!("host '{name}' is being drained: it takes no service"), "service": service.name}),
        ));
    }
    Ok(host.clone())
}

fn host_names(shared: &Shared) -> Vec<&str> {
    shared
        .hosts
        .hosts
        .iter()
        .map(|host| host.name.as_str())
        .collect()
}

/// `GET /hosts`: each host with its capacity, what its services were
/// given, and which services run there.
pub fn describe_all(shared: &Shared) -> Value {
    let draining = lock(&shared.hosts.state).draining.clone();
    let hosts: Vec<Value> = shared
        .hosts
        .loads(&shared.services.live())
        .iter()
        .map(|load| {
            json!({
                "name": load.host.name,
                "engine": load.host.engine.as_deref().unwrap_or("(local default)"),
                "address": load.host.address.to_string(),
                "network": format!("{:?}", load.host.network).to_lowercase(),
                "memory_mib": load.capacity_mib,
                "assigned_mib": load.assigned_mib,
                "free_mib": load.free_mib(),
                "watermark": load.host.watermark,
                "draining": draining.contains(&load.host.name),
                "services": load.services.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "hosts": hosts })
}

/// `POST /hosts/{name}/drain`: the host takes no more services and each
/// of its services moves, one at a time, to the host with the most free
/// memory. 202 with the services that will move.
pub fn drain(shared: &Shared, name: &str) -> (u16, Value) {
    let Some(host) = shared.hosts.get(name).cloned() else {
        return (
            404,
            json!({"error": format!("no host named '{name}'"), "hosts": host_names(shared)}),
        );
    };
    let loads = shared.hosts.loads(&shared.services.live());
    let Some(load) = loads.iter().find(|load| load.host.name == host.name) else {
        return (404, json!({"error": format!("no host named '{name}'")}));
    };
    let moving: Vec<Arc<Service>> = load.services.clone();
    {
        let mut state = lock(&shared.hosts.state);
        if state.moving {
            return (
                409,
                json!({"error": "another drain or watermark move is under way"}),
            );
        }
        state.draining.insert(host.name.clone());
        state.moving = true;
    }
    let names: Vec<String> = moving.iter().map(|s| s.name.clone()).collect();
    let hosts = Hosts {
        hosts: shared.hosts.hosts.clone(),
        state: Arc::clone(&shared.hosts.state),
    };
    let all: Vec<Arc<Service>> = shared.services.live().to_vec();
    let leaving = host.name.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("torpor-drain-{leaving}"))
        .spawn(move || {
            for service in moving {
                if !lock(&hosts.state).draining.contains(&leaving) {
                    info!(host = %leaving, "undrained: the drain stops");
                    break;
                }
                let loads = hosts.loads(&all);
                let Some(to) = hosts.choose(&loads, &service, &leaving, false) else {
                    warn!(host = %leaving, service = %service.name, "no host has room: the service stays");
                    continue;
                };
                move_and_wait(&service, to);
            }
            lock(&hosts.state).moving = false;
            info!(host = %leaving, "drained");
        });
    if let Err(e) = spawned {
        let mut state = lock(&shared.hosts.state);
        state.moving = false;
        return (500, json!({"error": format!("starting the drain: {e}")}));
    }
    (
        202,
        json!({"host": host.name, "draining": true, "moving": names}),
    )
}

/// `POST /hosts/{name}/undrain`: the host takes services again; a drain
/// under way stops before its next move (the one running ends first).
pub fn undrain(shared: &Shared, name: &str) -> (u16, Value) {
    let Some(host) = shared.hosts.get(name) else {
        return (
            404,
            json!({"error": format!("no host named '{name}'"), "hosts": host_names(shared)}),
        );
    };
    let was = lock(&shared.hosts.state).draining.remove(&host.name);
    if was {
        info!(host = %host.name, "undrained: the host takes services again");
    }
    (
        200,
        json!({"host": host.name, "draining": false, "was_draining": was}),
    )
}

/// Asks `service`'s scaler to move it to `to` and waits until the move
/// ends (or [`MOVE_LIMIT`] passes); whether it moved.
fn move_and_wait(service: &Service, to: HostConfig) -> bool {
    let host = to.name.clone();
    let (tx, rx) = mpsc::channel();
    let action = AdminAction::Relocate {
        force: false,
        to: Some(Box::new(to)),
    };
    if !service.request(Request::Admin(action, tx)) {
        return false;
    }
    match rx.recv_timeout(MOVE_LIMIT) {
        Ok(Ok(())) => {}
        Ok(Err(why)) => {
            warn!(service = %service.name, %host, "not moved: {why}");
            return false;
        }
        Err(_) => return false,
    }
    let deadline = Instant::now() + MOVE_LIMIT;
    loop {
        let (under_way, phase) = match service.relocation.lock() {
            Ok(view) => (view.under_way(), view.phase),
            Err(_) => return false,
        };
        if !under_way {
            info!(service = %service.name, %host, phase, "move ended");
            return phase == "moved";
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Starts the watermark watcher when there is more than one host: every
/// few seconds, a host whose services were given more than its watermark
/// of its memory sees its least-used service moved to the host with the
/// most free memory, if one has room.
pub fn spawn_watermark_watcher(shared: Arc<Shared>) {
    if shared.hosts.hosts.len() < 2 {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("torpor-watermark".into())
        .spawn(move || {
            while !shared.shutdown.is_stopping() {
                std::thread::sleep(WATERMARK_EVERY);
                watermark_pass(&shared);
            }
        });
    if let Err(e) = spawned {
        warn!("the watermark watcher did not start: {e}");
    }
}

/// One look at the hosts: at most one move.
fn watermark_pass(shared: &Shared) {
    let hosts = &shared.hosts;
    let loads = hosts.loads(&shared.services.live());
    let over = loads.iter().find(|load| {
        load.capacity_mib.is_some_and(|capacity| {
            load.assigned_mib as f64 > load.host.watermark * capacity as f64
        })
    });
    let Some(over) = over else {
        return;
    };
    // The least used: the fewest CPUs used at the last sample, among
    // those that can move now.
    let candidate = over
        .services
        .iter()
        .filter(|service| service.is_managed() && assigned_mib(service) > 0)
        .filter(|service| {
            service
                .relocation
                .lock()
                .is_ok_and(|view| !view.under_way())
        })
        .min_by(|a, b| cpus_used(a).total_cmp(&cpus_used(b)));
    let Some(service) = candidate else {
        return;
    };
    let Some(to) = hosts.choose(&loads, service, &over.host.name, false) else {
        return;
    };
    {
        let mut state = lock(&hosts.state);
        if state.moving {
            return;
        }
        state.moving = true;
    }
    info!(
        host = %over.host.name,
        assigned_mib = over.assigned_mib,
        service = %service.name,
        to = %to.name,
        "the host is over its watermark: moving its least-used service"
    );
    move_and_wait(service, to);
    lock(&hosts.state).moving = false;
}

/// CPUs a service used at its last sample (0 when unknown).
fn cpus_used(service: &Service) -> f64 {
    service
        .scaling
        .lock()
        .ok()
        .and_then(|view| view.cpus_used)
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(name: &str, capacity_mib: Option<u64>, assigned_mib: u64) -> Load {
        let mut host = HostConfig::local();
        host.name = name.to_string();
        Load {
            host,
            capacity_mib,
            assigned_mib,
            services: Vec::new(),
        }
    }

    fn chosen(
        loads: &[Load],
        draining: &[&str],
        from: &str,
        size: u64,
        may_stay: bool,
    ) -> Option<String> {
        let draining = draining.iter().map(|d| d.to_string()).collect();
        choose_among(loads, &draining, from, size, may_stay).map(|host| host.name)
    }

    #[test]
    fn the_host_with_the_most_free_memory_takes_the_service() {
        let loads = [
            load("a", Some(10_000), 6_000),
            load("b", Some(8_000), 1_000),
            load("c", Some(20_000), 12_000),
            load("unknown", None, 0),
        ];
        // Free: a 4000, b 7000, c 8000; c stays under 70 % with 1000 more.
        assert_eq!(chosen(&loads, &[], "a", 1_000, false).as_deref(), Some("c"));
        // c would pass its watermark with 3000 more: b.
        assert_eq!(chosen(&loads, &[], "a", 3_000, false).as_deref(), Some("b"));
        // Draining hosts take nothing; none has room for 6000.
        assert_eq!(
            chosen(&loads, &["c"], "a", 1_000, false).as_deref(),
            Some("b")
        );
        assert_eq!(chosen(&loads, &[], "a", 6_000, false), None);
    }

    #[test]
    fn a_service_may_stay_where_it_is_when_that_host_is_freest() {
        let loads = [
            load("a", Some(10_000), 2_000),
            load("b", Some(10_000), 3_000),
        ];
        // Leaving a, its 2000 there are freed: a has 10000 free, b 7000.
        assert_eq!(chosen(&loads, &[], "a", 2_000, true).as_deref(), Some("a"));
        assert_eq!(chosen(&loads, &[], "a", 2_000, false).as_deref(), Some("b"));
    }
}
