//! The stepped load of the `autoscale` workload: phases of a fixed
//! length, each with a number of clients running at once (none: idle).
//!
//! Pure: which phase an instant falls in, where the phases start, and
//! which client runs when. The load threads and the figures read the
//! same [`Schedule`], so a boundary drawn on the chart is the boundary
//! the clients kept to.

use std::time::Duration;

/// Clients of the busy phase: enough to keep the smallest size's CPUs
/// saturated on a point-select load.
pub const BUSY_CLIENTS: u32 = 8;

/// One stretch of the load.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    /// Its name in figures and on the chart (`idle`, `1 client`, …).
    pub name: String,
    /// Clients running at once; 0 is idle.
    pub clients: u32,
    /// How long it lasts.
    pub length: Duration,
}

impl Phase {
    /// A phase of `clients` clients (0: idle) lasting `length`.
    pub fn new(clients: u32, length: Duration) -> Phase {
        let name = match clients {
            0 => "idle".to_string(),
            1 => "1 client".to_string(),
            n => format!("{n} clients"),
        };
        Phase {
            name,
            clients,
            length,
        }
    }
}

/// Phases back to back, from offset zero.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    phases: Vec<Phase>,
}

impl Schedule {
    /// Phases in this order.
    pub fn new(phases: Vec<Phase>) -> Schedule {
        Schedule { phases }
    }

    /// The workload's load: idle, 1 client, [`BUSY_CLIENTS`] clients,
    /// idle, lasting `lengths` in that order.
    pub fn stepped(lengths: [Duration; 4]) -> Schedule {
        let [before, one, busy, after] = lengths;
        Schedule::new(vec![
            Phase::new(0, before),
            Phase::new(1, one),
            Phase::new(BUSY_CLIENTS, busy),
            Phase::new(0, after),
        ])
    }

    /// The same phases without the idle ones: the static run has nothing
    /// to measure while nobody queries.
    pub fn loaded(&self) -> Schedule {
        Schedule::new(
            self.phases
                .iter()
                .filter(|p| p.clients > 0)
                .cloned()
                .collect(),
        )
    }

    /// The phases, in order.
    pub fn phases(&self) -> &[Phase] {
        &self.phases
    }

    /// Where each phase starts.
    pub fn starts(&self) -> Vec<Duration> {
        let mut at = Duration::ZERO;
        self.phases
            .iter()
            .map(|p| {
                let start = at;
                at += p.length;
                start
            })
            .collect()
    }

    /// The length of the whole schedule.
    pub fn total(&self) -> Duration {
        self.phases.iter().map(|p| p.length).sum()
    }

    /// The index of the phase `offset` falls in (a boundary belongs to
    /// the phase it starts); `None` at or after the end.
    pub fn phase_at(&self, offset: Duration) -> Option<usize> {
        let mut end = Duration::ZERO;
        for (i, phase) in self.phases.iter().enumerate() {
            end += phase.length;
            if offset < end {
                return Some(i);
            }
        }
        None
    }

    /// Whether client number `client` (from 0) runs at `offset`: the
    /// first `clients` of each phase do.
    pub fn runs(&self, client: u32, offset: Duration) -> bool {
        self.phase_at(offset)
            .and_then(|i| self.phases.get(i))
            .is_some_and(|p| client < p.clients)
    }

    /// The most clients any phase runs: the threads to start.
    pub fn most_clients(&self) -> u32 {
        self.phases.iter().map(|p| p.clients).max().unwrap_or(0)
    }

    /// Where the first phase with the most clients starts: the moment
    /// the service is overloaded.
    pub fn overload_start(&self) -> Option<Duration> {
        let most = self.most_clients();
        if most == 0 {
            return None;
        }
        let index = self.phases.iter().position(|p| p.clients == most)?;
        self.starts().get(index).copied()
    }

    /// Where the last idle phase after some load starts: from there the
    /// service should shrink back.
    pub fn final_idle_start(&self) -> Option<Duration> {
        let last = self.phases.len().checked_sub(1)?;
        let phase = self.phases.get(last)?;
        let loaded_before = self.phases.iter().take(last).any(|p| p.clients > 0);
        (phase.clients == 0 && loaded_before)
            .then(|| self.starts().get(last).copied())
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn stepped() -> Schedule {
        Schedule::stepped([secs(5), secs(10), secs(20), secs(15)])
    }

    #[test]
    fn the_stepped_load_is_idle_one_busy_idle() {
        let schedule = stepped();
        let names: Vec<&str> = schedule.phases().iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["idle", "1 client", "8 clients", "idle"]);
        assert_eq!(schedule.starts(), [secs(0), secs(5), secs(15), secs(35)]);
        assert_eq!(schedule.total(), secs(50));
        assert_eq!(schedule.most_clients(), BUSY_CLIENTS);
        assert_eq!(schedule.overload_start(), Some(secs(15)));
        assert_eq!(schedule.final_idle_start(), Some(secs(35)));
    }

    #[test]
    fn a_boundary_belongs_to_the_phase_it_starts() {
        let schedule = stepped();
        assert_eq!(schedule.phase_at(secs(0)), Some(0));
        assert_eq!(
            schedule.phase_at(secs(5) - Duration::from_nanos(1)),
            Some(0)
        );
        assert_eq!(schedule.phase_at(secs(5)), Some(1));
        assert_eq!(schedule.phase_at(secs(15)), Some(2));
        assert_eq!(schedule.phase_at(secs(49)), Some(3));
        assert_eq!(schedule.phase_at(secs(50)), None);
    }

    #[test]
    fn the_first_clients_of_each_phase_run() {
        let schedule = stepped();
        assert!(!schedule.runs(0, secs(1)), "idle");
        assert!(schedule.runs(0, secs(6)));
        assert!(!schedule.runs(1, secs(6)), "one client only");
        assert!(schedule.runs(7, secs(16)));
        assert!(!schedule.runs(8, secs(16)));
        assert!(!schedule.runs(0, secs(40)), "idle again");
        assert!(!schedule.runs(0, secs(60)), "after the end");
    }

    #[test]
    fn the_static_run_keeps_only_loaded_phases() {
        let loaded = stepped().loaded();
        assert_eq!(loaded.phases().len(), 2);
        assert_eq!(loaded.total(), secs(30));
        assert_eq!(loaded.overload_start(), Some(secs(10)));
        assert_eq!(loaded.final_idle_start(), None, "no idle end");
    }

    #[test]
    fn empty_and_idle_schedules_have_no_overload() {
        let empty = Schedule::new(Vec::new());
        assert_eq!(empty.phase_at(Duration::ZERO), None);
        assert_eq!(empty.overload_start(), None);
        assert_eq!(empty.final_idle_start(), None);
        let idle = Schedule::new(vec![Phase::new(0, secs(3))]);
        assert_eq!(idle.overload_start(), None);
        assert_eq!(idle.final_idle_start(), None, "nothing to shrink from");
    }
}
