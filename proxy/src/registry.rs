//! Client-visible connection ids and what KILL needs to find a session
//! from any worker.
//!
//! Clients see Torpor's own connection ids (in the greeting and from
//! `CONNECTION_ID()`), not the backend's thread ids: a session outlives
//! its backend connections. Ids start at 2^24 so that they are not
//! mistaken for backend thread ids, which `SHOW PROCESSLIST` shows and a
//! client may KILL directly.
//!
//! This map is the one structure shared by workers; it is touched when a
//! session starts or ends and by KILL, never per query.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashmap::DashMap;

/// The first client-visible connection id.
pub const FIRST_ID: u32 = 1 << 24;

/// What other sessions may learn about or do to a session.
#[derive(Debug, Default)]
pub struct SessionEntry {
    /// The backend thread currently serving the session; 0 when none.
    pub backend_thread_id: AtomicU32,
    /// Set by KILL CONNECTION: the session must end, not reconnect.
    pub killed: AtomicBool,
    /// The index of the service the session logged in to.
    pub service: AtomicUsize,
    /// Why the session cannot move to another backend connection now
    /// (names from `session::model::PinReason`), and since when;
    /// published only when it changes, for the admin API and the scaler.
    pins: Mutex<Pins>,
    /// The client's socket while the session may still read from it:
    /// KILL from any worker ends the victim's wait for its client at once
    /// ([`SessionEntry::hang_up`]). Behind a lock so that the session can
    /// withdraw it before the descriptor closes and is reused.
    client_fd: Mutex<Option<RawFd>>,
}

/// A session's pins as published.
#[derive(Debug, Default)]
struct Pins {
    reasons: Vec<&'static str>,
    /// When the session became pinned (its reasons may have changed
    /// since, it has not been free in between).
    since: Option<Instant>,
}

/// A pinned session, as the admin API and the scaler see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedSession {
    /// Its client-visible id.
    pub session: u32,
    /// Why it is pinned (`transaction`, `temporary-table`, …).
    pub reasons: Vec<&'static str>,
    /// How long it has been pinned.
    pub pinned_for: Duration,
}

impl PinnedSession {
    /// Whether an open transaction is one of the reasons.
    pub fn in_transaction(&self) -> bool {
        self.reasons.contains(&"transaction")
    }
}

impl SessionEntry {
    /// Publishes the session's pins (none: it is free); the time it
    /// became pinned is kept while it stays pinned.
    pub fn set_pins(&self, reasons: Vec<&'static str>) {
        if let Ok(mut pins) = self.pins.lock() {
            pins.since = match (reasons.is_empty(), pins.since) {
                (true, _) => None,
                (false, Some(since)) => Some(since),
                (false, None) => Some(Instant::now()),
            };
            pins.reasons = reasons;
        }
    }

    /// Records the client's socket (the session reads from it).
    pub fn set_client_fd(&self, fd: RawFd) {
        if let Ok(mut slot) = self.client_fd.lock() {
            *slot = Some(fd);
        }
    }

    /// Withdraws the client's socket: called before it closes.
    pub fn clear_client_fd(&self) {
        if let Ok(mut slot) = self.client_fd.lock() {
            *slot = None;
        }
    }

    /// Ends the session's wait for its client now, as MariaDB closes a
    /// killed connection's socket at once: the pending read sees
    /// end-of-file. Writes still go out (what the session owes its
    /// client is sent before it closes).
    pub fn hang_up(&self) {
        if let Ok(slot) = self.client_fd.lock() {
            if let Some(fd) = *slot {
                // SAFETY: the descriptor is the session's open socket: the
                // session withdraws it under this lock before closing it.
                // shutdown(2) only changes the socket's state.
                unsafe {
                    libc::shutdown(fd, libc::SHUT_RD);
                }
            }
        }
    }
}

/// All live sessions, by client-visible id.
#[derive(Debug)]
pub struct Registry {
    next_id: AtomicU32,
    sessions: DashMap<u32, Arc<SessionEntry>>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            next_id: AtomicU32::new(FIRST_ID),
            sessions: DashMap::new(),
        }
    }
}

impl Registry {
    /// Registers a new session; it is removed when the guard drops.
    pub fn register(self: &Arc<Self>) -> SessionGuard {
        loop {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            if id < FIRST_ID {
                // Wrapped around: start over above the backend id range.
                self.next_id.store(FIRST_ID, Ordering::Relaxed);
                continue;
            }
            let entry = Arc::new(SessionEntry::default());
            if self.sessions.insert(id, Arc::clone(&entry)).is_none() {
                return SessionGuard {
                    registry: Arc::clone(self),
                    id,
                    entry,
                };
            }
        }
    }

    /// The session with client-visible `id`, if it is live.
    pub fn get(&self, id: u64) -> Option<Arc<SessionEntry>> {
        let id = u32::try_from(id).ok()?;
        self.sessions.get(&id).map(|e| Arc::clone(e.value()))
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Sessions of service `service` that are pinned, longest pinned
    /// first.
    pub fn pins_of(&self, service: usize) -> Vec<PinnedSession> {
        let mut pinned: Vec<PinnedSession> = self
            .sessions
            .iter()
            .filter(|e| e.value().service.load(Ordering::Relaxed) == service)
            .filter_map(|e| {
                let pins = e.value().pins.lock().ok()?;
                (!pins.reasons.is_empty()).then(|| PinnedSession {
                    session: *e.key(),
                    reasons: pins.reasons.clone(),
                    pinned_for: pins.since.map_or(Duration::ZERO, |since| since.elapsed()),
                })
            })
            .collect();
        pinned.sort_by_key(|p| std::cmp::Reverse(p.pinned_for));
        pinned
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

/// A session's registration; unregisters on drop.
#[derive(Debug)]
pub struct SessionGuard {
    registry: Arc<Registry>,
    /// The client-visible connection id.
    pub id: u32,
    /// The session's shared entry.
    pub entry: Arc<SessionEntry>,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.registry.sessions.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_released() {
        let registry = Arc::new(Registry::default());
        let a = registry.register();
        let b = registry.register();
        assert_ne!(a.id, b.id);
        assert!(a.id >= FIRST_ID);
        assert!(registry.get(u64::from(a.id)).is_some());
        let id = a.id;
        drop(a);
        assert!(registry.get(u64::from(id)).is_none());
        assert_eq!(registry.len(), 1);
    }
}
