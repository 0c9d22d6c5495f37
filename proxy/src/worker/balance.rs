//! Spreading client connections evenly over the workers.
//!
//! Each worker accepts on a listener of its own (`SO_REUSEPORT`), and the
//! kernel picks the listener by a hash of the client's address and port:
//! even on average, but 256 connections of one benchmark came out 107 to
//! 149 here. A worker runs on one core at most, so the one with more
//! clients serves each of them less often, and under load that is the
//! tail of every query: the p99 at 256 connections was twice what one
//! worker alone gave. So a worker that accepts a connection while it
//! serves more than [`SLACK`] sessions more than the least busy worker
//! hands the connection to that worker, as HAProxy gives each accepted
//! connection to its least loaded thread. Handing over costs the new
//! connection a wake-up of the other worker, and only happens while the
//! workers are uneven.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use event_listener::Event;

/// How many more sessions than the least busy worker a worker may serve
/// before it hands new connections over.
pub const SLACK: usize = 1;

/// A TCP connection one worker accepted for another.
#[derive(Debug)]
pub struct Handed {
    /// The accepted socket.
    pub stream: std::net::TcpStream,
    /// Its client's address.
    pub peer: SocketAddr,
}

/// One worker's count of sessions and its inbox of handed connections.
#[derive(Default)]
struct Slot {
    sessions: AtomicUsize,
    inbox: Mutex<Vec<Handed>>,
    arrived: Event,
}

/// The workers' session counts and their inboxes.
pub struct Balance {
    slots: Vec<Slot>,
}

impl std::fmt::Debug for Balance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Balance")
            .field("sessions", &self.sessions())
            .finish_non_exhaustive()
    }
}

impl Balance {
    /// For `workers` workers (at least one).
    pub fn new(workers: usize) -> Balance {
        Balance {
            slots: (0..workers.max(1)).map(|_| Slot::default()).collect(),
        }
    }

    /// A session started on `worker` (it counts until [`Balance::ended`]).
    pub fn started(&self, worker: usize) {
        if let Some(slot) = self.slots.get(worker) {
            slot.sessions.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A session of `worker` ended.
    pub fn ended(&self, worker: usize) {
        if let Some(slot) = self.slots.get(worker) {
            // Never below zero, whatever the order of updates.
            let _ = slot
                .sessions
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }

    /// Sessions each worker serves now (handed connections not yet taken
    /// up count for the worker they were handed to).
    pub fn sessions(&self) -> Vec<usize> {
        self.slots
            .iter()
            .map(|slot| slot.sessions.load(Ordering::Relaxed))
            .collect()
    }

    /// The worker a connection `worker` just accepted should go to
    /// instead: the least busy one, when `worker` serves more than
    /// [`SLACK`] sessions more than it; `None` to keep it.
    pub fn elsewhere(&self, worker: usize) -> Option<usize> {
        let mine = self.slots.get(worker)?.sessions.load(Ordering::Relaxed);
        let (least, fewest) = self
            .slots
            .iter()
            .enumerate()
            .map(|(index, slot)| (index, slot.sessions.load(Ordering::Relaxed)))
            .min_by_key(|&(_, sessions)| sessions)?;
        (least != worker && mine > fewest + SLACK).then_some(least)
    }

    /// Gives `handed` to worker `to`, counted as its session from now.
    pub fn hand(&self, to: usize, handed: Handed) {
        let Some(slot) = self.slots.get(to) else {
            return;
        };
        slot.sessions.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut inbox) = slot.inbox.lock() {
            inbox.push(handed);
        }
        slot.arrived.notify(1);
    }

    /// Waits for connections handed to `worker`, and takes them all.
    pub async fn take_handed(&self, worker: usize) -> Vec<Handed> {
        let Some(slot) = self.slots.get(worker) else {
            return std::future::pending().await;
        };
        loop {
            // Listening before looking: a hand between the look and the
            // wait still wakes it.
            let arrived = slot.arrived.listen();
            let taken = slot
                .inbox
                .lock()
                .map(|mut inbox| std::mem::take(&mut *inbox))
                .unwrap_or_default();
            if !taken.is_empty() {
                return taken;
            }
            arrived.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_keeps_its_connections_while_the_workers_are_even() {
        let balance = Balance::new(2);
        assert_eq!(balance.elsewhere(0), None);
        balance.started(0);
        assert_eq!(balance.elsewhere(0), None, "one more is within the slack");
        balance.started(0);
        assert_eq!(balance.elsewhere(0), Some(1), "two more is not");
        assert_eq!(balance.elsewhere(1), None, "the least busy keeps its own");
        balance.ended(0);
        assert_eq!(balance.elsewhere(0), None);
        balance.ended(0);
        balance.ended(0);
        assert_eq!(balance.sessions(), [0, 0], "never below zero");
    }

    #[test]
    fn a_handed_connection_counts_for_its_new_worker_and_wakes_it() {
        let balance = std::sync::Arc::new(Balance::new(2));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let taker = {
            let balance = std::sync::Arc::clone(&balance);
            std::thread::spawn(move || {
                let mut runtime = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                    .build()
                    .unwrap();
                runtime.block_on(async move { balance.take_handed(1).await })
            })
        };
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let (stream, peer) = listener.accept().unwrap();
        balance.hand(1, Handed { stream, peer });
        assert_eq!(balance.sessions(), [0, 1]);
        let taken = taker.join().unwrap();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].peer, peer);
    }
}
