//! What the workers, the admin API and a config reload ask of a
//! service's actor.

use std::sync::mpsc;
use std::time::Duration;

/// What the workers and the admin API ask of a service's actor.
#[derive(Debug)]
pub enum Request {
    /// A session needs the backend (idempotent: one wake serves all).
    Wake,
    /// An operator's action; the reply says how it ended.
    Admin(AdminAction, mpsc::Sender<Result<(), String>>),
    /// A config reload: new timers and accounts; the reply says whether
    /// the accounts reached the backend (or wait for its next wake).
    Reconfigure(Box<Reconfigure>, mpsc::Sender<Result<(), String>>),
    /// A relocation's target caught up (or failed to): the actor
    /// switches over to it.
    Relocation(crate::scaler::relocate::Prepare),
    /// Torpor is stopping: stop the backend (data kept) and end.
    Shutdown,
}

/// What a config reload changes in a managed service.
#[derive(Debug, Clone)]
pub struct Reconfigure {
    /// Idle time before a suspend; `None` never.
    pub suspend_after: Option<Duration>,
    /// Time suspended before parking; `None` never.
    pub park_after: Option<Duration>,
    /// Statements that create or update the service's accounts on its
    /// backend, when they changed; `None` when they did not.
    pub accounts_sql: Option<Vec<String>>,
}

/// What an operator can ask for.
#[derive(Debug, Clone, PartialEq)]
pub enum AdminAction {
    /// Suspend now (refused while a query runs or a session is pinned).
    Suspend,
    /// Suspend if needed, then park.
    Park,
    /// Wake now.
    Wake,
    /// Resize now: CPUs and memory (what is not given stays), and turn
    /// autoscaling on or off.
    Resize(ResizeRequest),
    /// Move the service to a new backend; with `force`, sessions pinned
    /// by what cannot move (a temporary table, a lock) get an error
    /// instead of the relocation being refused.
    Relocate {
        /// Move even past pins that cannot move.
        force: bool,
        /// The host to move to (default: the service's own). Boxed: a
        /// host entry would make every request as large.
        to: Option<Box<crate::config::hosts::HostConfig>>,
    },
}

/// An operator's resize ([`AdminAction::Resize`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ResizeRequest {
    /// CPUs to give the backend.
    pub cpus: Option<f64>,
    /// Memory to give it, MiB.
    pub memory_mib: Option<u64>,
    /// Autoscaling on (`true`) or off from now on.
    pub autoscale: Option<bool>,
}
