//! A backend that cannot be reached — stopped, restarting, crashed — is
//! an outage, not a reason to close sessions: commands and logins that
//! need a backend connection are held (their client sockets stay open)
//! while Torpor tries the connect again with backoff, up to a bound
//! (`outage_hold_secs`); past it the command gets `1429` and the session
//! goes on, as after a failed wake.
//!
//! - [`is_outage`] says which failures mean "the backend is not there"
//!   (worth another try) rather than "it refused" (not).
//! - [`retry_delay`] is the backoff, a pure function.
//! - [`Outage`] is a service's view: since when its backend has been
//!   unreachable (logged once per outage), and the event that wakes every
//!   held session of every worker as soon as one of them got through.
//! - [`Hold`] is one command's (or login's) wait through an outage.
//! - [`HoldStats`] counts the holds for the metrics
//!   (`torpor_outage_holds`, `torpor_outage_hold_duration_seconds`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use event_listener::Event;
use tracing::{info, warn};

use crate::error::SessionError;

/// The first pause before a connect is tried again.
const FIRST_DELAY: Duration = Duration::from_millis(50);

/// The longest pause between tries: a backend that is back is found
/// within this long (sooner when another session finds it first).
const MAX_DELAY: Duration = Duration::from_secs(1);

/// ER_SERVER_SHUTDOWN: what a MariaDB that is stopping answers a login.
const SERVER_SHUTDOWN: u16 = 1053;

/// The pause before try number `attempt + 1` (0-based): doubling from
/// 50 ms, at most 1 s.
pub fn retry_delay(attempt: u32) -> Duration {
    let factor = 1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX);
    FIRST_DELAY.saturating_mul(factor).min(MAX_DELAY)
}

/// Whether `error`, met while opening (or aligning) a backend connection,
/// means the backend is not there: unreachable, gone mid-login, or
/// stopping. A refusal (a wrong password, an unknown schema, too many
/// connections) is not: trying again would not help.
pub fn is_outage(error: &SessionError) -> bool {
    match error {
        SessionError::BackendUnreachable(_) => true,
        SessionError::BackendLost(io) => crate::error::is_disconnect(io),
        SessionError::BackendRefused(err) => err.code() == Some(SERVER_SHUTDOWN),
        _ => false,
    }
}

/// A service's outage, if it has one.
#[derive(Debug, Default)]
pub struct Outage {
    /// When the backend was first found unreachable (`None`: it is not
    /// known to be).
    since: Mutex<Option<Instant>>,
    /// Notified when a connection got through again.
    over: Event,
    /// The holds of this service's sessions, for the metrics.
    stats: Arc<HoldStats>,
}

/// What a hold waited for: a command's backend connection, or a login's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holding {
    /// A command (or the first query after a login).
    Command,
    /// A login.
    Login,
}

impl Holding {
    /// The metric label value.
    pub fn name(self) -> &'static str {
        match self {
            Holding::Command => "command",
            Holding::Login => "login",
        }
    }
}

/// Ended holds kept for the next scrape; beyond this (no scrape through
/// a long outage of many sessions) newer ones are dropped.
const MAX_PENDING_HOLDS: usize = 4096;

/// A service's outage holds, read when `/metrics` is scraped: how many
/// wait now, and the holds that ended since the last scrape. Written only
/// by holds that waited (never on a command's way when the backend is
/// there).
#[derive(Debug, Default)]
pub struct HoldStats {
    holding: AtomicU64,
    ended: Mutex<Vec<EndedHold>>,
}

/// One hold that ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EndedHold {
    /// What it held.
    pub what: Holding,
    /// Whether it got its backend connection (else: the bound was spent,
    /// or the session ended meanwhile).
    pub through: bool,
    /// How long it held, in seconds.
    pub seconds: f64,
}

impl HoldStats {
    /// Commands and logins held now.
    pub fn holding(&self) -> u64 {
        self.holding.load(Ordering::Relaxed)
    }

    /// The holds that ended since the last call.
    pub fn take_ended(&self) -> Vec<EndedHold> {
        self.ended
            .lock()
            .map(|mut e| std::mem::take(&mut *e))
            .unwrap_or_default()
    }
}

impl Outage {
    /// A connect to `service`'s backend failed with `error`, an outage
    /// error: the outage starts now unless it already had.
    pub fn seen(&self, service: &str, error: &SessionError) {
        let Ok(mut since) = self.since.lock() else {
            return;
        };
        if since.is_none() {
            *since = Some(Instant::now());
            warn!(
                %service,
                %error,
                "backend unreachable: holding commands and logins while it comes back"
            );
        }
    }

    /// A connection to `service`'s backend got through: an outage is
    /// over, and every held session tries again now.
    pub fn ended(&self, service: &str) {
        let started = match self.since.lock() {
            Ok(mut since) => since.take(),
            Err(_) => None,
        };
        if let Some(started) = started {
            info!(
                %service,
                down_ms = started.elapsed().as_millis() as u64,
                "backend reachable again"
            );
            self.over.notify(usize::MAX);
        }
    }

    /// Waits `delay`, or less when the outage ends meanwhile.
    async fn wait(&self, delay: Duration) {
        // Listen before looking, so an end in between is not missed.
        let over = self.over.listen();
        if self.is_down() {
            let _ = crate::timer::timeout(delay, over).await;
        } else {
            // Not known to be down (the error came from elsewhere, or the
            // outage just ended): still a pause, so a loop of failures
            // cannot spin.
            crate::timer::sleep(delay).await;
        }
    }

    /// Whether the backend is known to be unreachable now.
    pub fn is_down(&self) -> bool {
        self.since.lock().map(|s| s.is_some()).unwrap_or(false)
    }

    /// The holds of the service's sessions.
    pub fn stats(&self) -> &HoldStats {
        &self.stats
    }
}

/// One command's (or login's) wait through an outage: how long it may
/// still wait, and how many tries it made. Once it has waited it counts
/// in its service's [`HoldStats`] until it drops.
#[derive(Debug)]
pub struct Hold {
    started: Instant,
    bound: Duration,
    attempt: u32,
    what: Holding,
    /// Set at the first pause: the stats it counts in.
    stats: Option<Arc<HoldStats>>,
    through: bool,
}

impl Hold {
    /// A hold of `what`, of at most `bound`, starting now.
    pub fn new(bound: Duration, what: Holding) -> Hold {
        Hold::since(Instant::now(), bound, what)
    }

    /// A hold of `what`, of at most `bound`, that started at `started`
    /// (a moment the caller read already: one clock read less per
    /// command).
    pub fn since(started: Instant, bound: Duration, what: Holding) -> Hold {
        Hold {
            started,
            bound,
            attempt: 0,
            what,
            stats: None,
            through: false,
        }
    }

    /// The backend connection came: the hold ended well.
    pub fn got_through(&mut self) {
        self.through = true;
    }

    /// Waits before the next try: the backoff's pause, cut short when
    /// another session finds the backend back. False when the bound is
    /// spent (nothing was waited).
    pub async fn pause(&mut self, outage: &Outage) -> bool {
        let left = self.bound.saturating_sub(self.started.elapsed());
        if left.is_zero() {
            return false;
        }
        let delay = retry_delay(self.attempt).min(left);
        self.attempt = self.attempt.saturating_add(1);
        if self.stats.is_none() {
            outage.stats.holding.fetch_add(1, Ordering::Relaxed);
            self.stats = Some(Arc::clone(&outage.stats));
        }
        outage.wait(delay).await;
        true
    }

    /// Whether the hold waited at all.
    pub fn waited(&self) -> bool {
        self.attempt > 0
    }

    /// How long it has held.
    pub fn held(&self) -> Duration {
        self.started.elapsed()
    }

    /// The error once the bound is spent: the backend stayed unreachable.
    pub fn expired(&self) -> SessionError {
        SessionError::BackendDown { held: self.held() }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let Some(stats) = self.stats.take() else {
            return;
        };
        stats.holding.fetch_sub(1, Ordering::Relaxed);
        if let Ok(mut ended) = stats.ended.lock() {
            if ended.len() < MAX_PENDING_HOLDS {
                ended.push(EndedHold {
                    what: self.what,
                    through: self.through,
                    seconds: self.held().as_secs_f64(),
                });
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::BackendErr;

    #[test]
    fn the_backoff_doubles_up_to_a_second() {
        let delays: Vec<u64> = (0..8).map(|a| retry_delay(a).as_millis() as u64).collect();
        assert_eq!(delays, [50, 100, 200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(retry_delay(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn only_an_absent_backend_is_an_outage() {
        let io = |kind| std::io::Error::from(kind);
        use std::io::ErrorKind::*;
        assert!(is_outage(&SessionError::BackendUnreachable(io(
            ConnectionRefused
        ))));
        assert!(is_outage(&SessionError::BackendUnreachable(io(TimedOut))));
        assert!(is_outage(&SessionError::BackendLost(io(UnexpectedEof))));
        assert!(is_outage(&SessionError::BackendLost(io(ConnectionReset))));
        // Torpor's own findings are not (state that could not be kept).
        assert!(!is_outage(&SessionError::BackendLost(
            std::io::Error::other(
                "the backend connection holding the session's user variables closed"
            )
        )));
        let err = |code: u16| {
            let mut payload = vec![0xff];
            payload.extend_from_slice(&code.to_le_bytes());
            payload.extend_from_slice(b"#HY000x");
            SessionError::BackendRefused(BackendErr { payload })
        };
        assert!(is_outage(&err(1053)), "shutdown in progress");
        assert!(!is_outage(&err(1045)), "access denied");
        assert!(!is_outage(&err(1040)), "too many connections");
        assert!(!is_outage(&SessionError::TooManyConnections));
    }

    #[test]
    fn a_hold_ends_at_its_bound() {
        let mut runtime = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let outage = Outage::default();
            outage.seen(
                "db",
                &SessionError::BackendUnreachable(std::io::Error::other("x")),
            );
            assert!(outage.is_down());
            let mut hold = Hold::new(Duration::from_millis(120), Holding::Command);
            let mut pauses = 0;
            while hold.pause(&outage).await {
                pauses += 1;
                assert!(pauses < 100, "the hold never ends");
                assert_eq!(outage.stats().holding(), 1);
            }
            assert!(pauses >= 1);
            assert!(hold.held() >= Duration::from_millis(120));
            assert!(matches!(hold.expired(), SessionError::BackendDown { .. }));
            drop(hold);
            assert_eq!(outage.stats().holding(), 0);
            let ended = outage.stats().take_ended();
            assert_eq!(ended.len(), 1);
            assert!(!ended[0].through && ended[0].seconds >= 0.12);
            let mut none = Hold::new(Duration::ZERO, Holding::Login);
            assert!(!none.pause(&outage).await, "a bound of 0 holds nothing");
            assert!(!none.waited());
            drop(none);
            assert!(outage.stats().take_ended().is_empty(), "it never held");
            let mut good = Hold::new(Duration::from_secs(60), Holding::Login);
            assert!(good.pause(&outage).await);
            good.got_through();
            drop(good);
            let ended = outage.stats().take_ended();
            assert_eq!((ended[0].what, ended[0].through), (Holding::Login, true));
        });
    }

    #[test]
    fn the_end_of_an_outage_wakes_held_sessions_at_once() {
        let mut runtime = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let outage = std::rc::Rc::new(Outage::default());
            outage.seen(
                "db",
                &SessionError::BackendUnreachable(std::io::Error::other("x")),
            );
            let ender = {
                let outage = std::rc::Rc::clone(&outage);
                monoio::spawn(async move {
                    crate::timer::sleep(Duration::from_millis(20)).await;
                    outage.ended("db");
                })
            };
            let started = Instant::now();
            outage.wait(Duration::from_secs(600)).await;
            ender.await;
            assert!(started.elapsed() < Duration::from_secs(300));
            assert!(!outage.is_down());
        });
    }
}
