//! A service's lifecycle, as one state machine: which state follows which
//! on which event, and nothing else. The actor ([`crate::scaler::actor`]) feeds it
//! events and carries out what each transition asks for; every transition
//! is logged and counted here, so no path can change state unrecorded.
//!
//! ```text
//!            idle ─────────► Suspending ──frozen──► Suspended ──stopped──► Parked
//!   Active ◄──────────────── │ busy/failed            │ wake                   │ wake
//!     ▲                      ▼                        ▼                        ▼
//!     └──────────── ready ── Waking ◄─────────────────┴────────────────────────┘
//! ```
//! (`Waking` also starts a service that never ran; a failed wake goes back
//! to where it started from, so the next query tries again.)
//!
//! A relocation's switch-over is `Active → Moving → Active`: while
//! `Moving`, new statements wait at transaction boundaries, as during a
//! wake, and the service comes back active on its new backend (or, when
//! the switch is abandoned, on its old one).

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use serde::Serialize;

/// Where a service is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum State {
    /// The backend runs and serves queries.
    Active = 0,
    /// Workers are closing backend connections; the backend is about to
    /// be frozen. New queries wait for the next wake.
    Suspending = 1,
    /// The backend is frozen (paused container, stopped process): memory
    /// kept, no CPU. Client connections stay open.
    Suspended = 2,
    /// The backend is stopped; its data is kept.
    Parked = 3,
    /// The backend is being resumed or started; queries wait for it.
    Waking = 4,
    /// The service is switching to another backend (a relocation); new
    /// statements wait for it at transaction boundaries.
    Moving = 5,
}

impl State {
    /// Every state, in declaration order (for counters and listings).
    pub const ALL: [State; 6] = [
        State::Active,
        State::Suspending,
        State::Suspended,
        State::Parked,
        State::Waking,
        State::Moving,
    ];

    /// The state's name, as the admin API and logs spell it.
    pub fn name(self) -> &'static str {
        match self {
            State::Active => "active",
            State::Suspending => "suspending",
            State::Suspended => "suspended",
            State::Parked => "parked",
            State::Waking => "waking",
            State::Moving => "moving",
        }
    }

    fn from_u8(value: u8) -> State {
        match value {
            0 => State::Active,
            1 => State::Suspending,
            2 => State::Suspended,
            3 => State::Parked,
            5 => State::Moving,
            _ => State::Waking,
        }
    }
}

/// What happened to a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Nothing ran for the idle time and nothing is pinned (or an operator
    /// asked for a suspend).
    SuspendRequested,
    /// Every worker closed its backend connections and the backend froze.
    Frozen,
    /// A suspend could not finish: a query or pinned session appeared, or
    /// the driver failed. The backend still runs.
    SuspendAborted,
    /// Suspended for the park time (or an operator asked to park), and
    /// the backend stopped cleanly. (A stop cannot be interrupted by a
    /// wake, so the actor stops first and records the park after.)
    Parked,
    /// A query (or an operator) needs the backend.
    WakeRequested,
    /// The backend answers a handshake again.
    Ready,
    /// The wake failed or timed out; the backend is where it was.
    WakeFailed,
    /// A relocation's new backend has caught up: the switch-over starts.
    MoveRequested,
    /// The service runs on its new backend.
    Moved,
    /// The switch-over was abandoned; the service stays on its old backend.
    MoveAborted,
    /// At Torpor's start, the backend of a service kept asleep is found
    /// frozen, as a suspend left it before Torpor last stopped.
    FoundFrozen,
}

/// A transition the state machine refuses: the event makes no sense in
/// that state (a bug in the caller, or a race it must handle).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{event:?} is not expected while {from:?}")]
pub struct Refused {
    /// The state.
    pub from: State,
    /// The event.
    pub event: Event,
}

/// The state machine of one service: its state, published for the workers
/// to read with one atomic load, and where a wake started from.
#[derive(Debug)]
pub struct Lifecycle {
    service: String,
    state: AtomicU8,
    /// Where the current wake started (a failed wake goes back there).
    wake_from: AtomicU8,
    /// Transitions into each state, indexed by `State as usize`.
    entered: [AtomicU64; 6],
}

impl Lifecycle {
    /// A service that starts in `initial` (Parked when its backend has not
    /// been started, Active when it runs).
    pub fn new(service: &str, initial: State) -> Lifecycle {
        Lifecycle {
            service: service.to_string(),
            state: AtomicU8::new(initial as u8),
            wake_from: AtomicU8::new(initial as u8),
            entered: Default::default(),
        }
    }

    /// The current state. One atomic load: workers call this before
    /// borrowing a backend connection.
    #[inline]
    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Whether queries can run now.
    #[inline]
    pub fn is_active(&self) -> bool {
        self.state.load(Ordering::Acquire) == State::Active as u8
    }

    /// Where the current (or last) wake started.
    pub fn wake_from(&self) -> State {
        State::from_u8(self.wake_from.load(Ordering::Acquire))
    }

    /// How many times the service entered each state.
    pub fn transitions(&self) -> Vec<(State, u64)> {
        State::ALL
            .iter()
            .map(|&s| (s, self.entered[s as usize].load(Ordering::Relaxed)))
            .collect()
    }

    /// Applies `event`: moves to the next state, logs and counts the
    /// transition, and returns the new state. Only the service's actor
    /// calls this, so there is one writer.
    pub fn apply(&self, event: Event) -> Result<State, Refused> {
        let from = self.state();
        let to = next(from, event, self.wake_from()).ok_or(Refused { from, event })?;
        if event == Event::WakeRequested {
            self.wake_from.store(from as u8, Ordering::Release);
        }
        self.state.store(to as u8, Ordering::Release);
        self.entered[to as usize].fetch_add(1, Ordering::Relaxed);
        tracing::info!(service = %self.service, from = from.name(), to = to.name(), ?event, "service transition");
        Ok(to)
    }
}

/// The transition table.
fn next(from: State, event: Event, wake_from: State) -> Option<State> {
    Some(match (from, event) {
        (State::Active, Event::SuspendRequested) => State::Suspending,
        (State::Suspending, Event::Frozen) => State::Suspended,
        (State::Suspending, Event::SuspendAborted) => State::Active,
        (State::Suspended, Event::Parked) => State::Parked,
        (State::Parked, Event::FoundFrozen) => State::Suspended,
        (State::Suspended | State::Parked, Event::WakeRequested) => State::Waking,
        (State::Waking, Event::Ready) => State::Active,
        (State::Waking, Event::WakeFailed) => wake_from,
        (State::Active, Event::MoveRequested) => State::Moving,
        (State::Moving, Event::Moved | Event::MoveAborted) => State::Active,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_cycle_is_counted() {
        let life = Lifecycle::new("s", State::Parked);
        assert_eq!(life.apply(Event::WakeRequested), Ok(State::Waking));
        assert_eq!(life.apply(Event::Ready), Ok(State::Active));
        assert_eq!(life.apply(Event::SuspendRequested), Ok(State::Suspending));
        assert_eq!(life.apply(Event::Frozen), Ok(State::Suspended));
        assert_eq!(life.apply(Event::Parked), Ok(State::Parked));
        assert_eq!(life.apply(Event::WakeRequested), Ok(State::Waking));
        assert_eq!(life.wake_from(), State::Parked);
        assert_eq!(life.apply(Event::Ready), Ok(State::Active));
        let counts: std::collections::HashMap<_, _> = life.transitions().into_iter().collect();
        assert_eq!(counts[&State::Active], 2);
        assert_eq!(counts[&State::Waking], 2);
        assert_eq!(counts[&State::Suspended], 1);
    }

    #[test]
    fn a_failed_wake_goes_back_where_it_started() {
        let life = Lifecycle::new("s", State::Active);
        life.apply(Event::SuspendRequested).unwrap();
        life.apply(Event::Frozen).unwrap();
        life.apply(Event::WakeRequested).unwrap();
        assert_eq!(life.apply(Event::WakeFailed), Ok(State::Suspended));
        life.apply(Event::Parked).unwrap();
        life.apply(Event::WakeRequested).unwrap();
        assert_eq!(life.apply(Event::WakeFailed), Ok(State::Parked));
    }

    #[test]
    fn nonsense_is_refused_and_changes_nothing() {
        let life = Lifecycle::new("s", State::Active);
        assert_eq!(
            life.apply(Event::Frozen),
            Err(Refused {
                from: State::Active,
                event: Event::Frozen
            })
        );
        assert_eq!(life.state(), State::Active);
        assert!(life.apply(Event::WakeRequested).is_err());
        assert!(life.apply(Event::Parked).is_err());
    }

    #[test]
    fn a_switch_over_ends_active_whether_it_moved_or_not() {
        let life = Lifecycle::new("s", State::Active);
        assert_eq!(life.apply(Event::MoveRequested), Ok(State::Moving));
        assert!(!life.is_active());
        assert!(life.apply(Event::SuspendRequested).is_err());
        assert!(life.apply(Event::WakeRequested).is_err());
        assert_eq!(life.apply(Event::Moved), Ok(State::Active));
        life.apply(Event::MoveRequested).unwrap();
        assert_eq!(life.apply(Event::MoveAborted), Ok(State::Active));
        // Only an active service moves.
        life.apply(Event::SuspendRequested).unwrap();
        assert!(life.apply(Event::MoveRequested).is_err());
    }

    #[test]
    fn an_aborted_suspend_is_active_again() {
        let life = Lifecycle::new("s", State::Active);
        life.apply(Event::SuspendRequested).unwrap();
        assert_eq!(life.apply(Event::SuspendAborted), Ok(State::Active));
        assert!(life.is_active());
    }

    #[test]
    fn a_backend_found_frozen_at_start_is_suspended_and_only_then() {
        let life = Lifecycle::new("s", State::Parked);
        assert_eq!(life.apply(Event::FoundFrozen), Ok(State::Suspended));
        // A thaw, not a start, wakes it from there.
        assert_eq!(life.apply(Event::WakeRequested), Ok(State::Waking));
        assert_eq!(life.apply(Event::Ready), Ok(State::Active));
        assert!(life.apply(Event::FoundFrozen).is_err());
    }
}
