//! A worker's pool of backend connections.
//!
//! Sessions borrow a backend connection for a transaction (for one
//! statement in autocommit) and give it back when nothing pins them, so a
//! few backend connections serve many clients. Each worker has its own
//! pool — a connection lives on the thread whose runtime owns its socket —
//! with its share of the configured bound.
//!
//! Connections are kept by key: the user they are logged in as, the
//! capabilities that shape their replies, and the collation they were
//! opened with (whose baseline their state is compared against). Within a
//! key, a borrower prefers a connection whose state already equals its
//! session's, so that usually nothing has to be replayed.
//!
//! Pool rules, written down (as pingora's are): a connection that saw an
//! error, or is in the middle of anything, is never given back; one idle
//! longer than the idle timeout is closed; a borrower that finds none free
//! and none may be opened waits in a bounded queue, first come first
//! served, and gets a clear error when its wait times out.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use torpor_protocol::Capabilities;
use torpor_replay::state::SessionState;

/// What makes two backend connections interchangeable.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    /// The user the connection is logged in as.
    pub user: Vec<u8>,
    /// The host pattern of the backend account it is logged in as, when
    /// the account was read from the backend (`None`: a configured user).
    /// Two accounts of one user name are different identities (`CURRENT_USER()`,
    /// grants): a connection of one is never lent to the other.
    pub account_host: Option<String>,
    /// Its capabilities (they shape every reply).
    pub capabilities: Capabilities,
    /// The collation it was opened with.
    pub collation: u8,
}

/// A backend connection (`C`: [`crate::backend::BackendConn`]; generic
/// so the pool's rules are unit-tested on their own) with the session
/// state it has.
pub struct Pooled<C> {
    /// The connection.
    pub conn: C,
    /// What its session state is.
    pub state: SessionState,
    /// The session that used it last (0: none). A session that gets back
    /// the connection it used last, untouched since, still finds there
    /// what `ROW_COUNT()` and `FOUND_ROWS()` say of its own previous
    /// statement.
    pub last_session: u32,
}

struct Idle<C> {
    key: PoolKey,
    pooled: Pooled<C>,
    since: Instant,
}

/// A waiting borrower's slot: filled with a connection, or told that one
/// may now be opened.
struct Slot<C> {
    handoff: RefCell<Option<Handoff<C>>>,
    waker: RefCell<Option<Waker>>,
}

impl<C> Default for Slot<C> {
    fn default() -> Self {
        Slot {
            handoff: RefCell::new(None),
            waker: RefCell::new(None),
        }
    }
}

/// What a waiter is given.
enum Handoff<C> {
    /// A connection another session gave back, of the waiter's key.
    Conn(Box<Pooled<C>>),
    /// A place freed up: the waiter may open a new connection.
    Room,
}

/// What [`BackendPool::borrow`] found.
pub enum Borrowed<C> {
    /// An idle connection of the key.
    Conn(Box<Pooled<C>>),
    /// None idle, but one may be opened (the place is counted already;
    /// give it back with [`BackendPool::forget`] if opening fails).
    Open,
}

/// What borrowers got since [`BackendPool::take_stats`] last asked, for
/// metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// An idle connection at once.
    pub hits: u64,
    /// Room to open a new connection at once.
    pub opened: u64,
    /// A connection or room after waiting in the queue.
    pub waited: u64,
    /// Waits that timed out.
    pub timeouts: u64,
    /// Borrows refused because the queue was full.
    pub queue_full: u64,
}

/// The pool of one worker.
pub struct BackendPool<C> {
    idle: RefCell<Vec<Idle<C>>>,
    /// Connections open on this worker: lent out and idle.
    open: Cell<usize>,
    // Cells: a config reload changes them (on the worker's own thread).
    limit: Cell<usize>,
    idle_timeout: Cell<Duration>,
    waiters: RefCell<VecDeque<(PoolKey, Rc<Slot<C>>)>>,
    max_waiters: Cell<usize>,
    /// Counted in `borrow` (plain cells: the pool is its worker's own).
    stats: Cell<PoolStats>,
}

/// Why no connection could be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolError {
    /// Too many sessions wait already.
    QueueFull,
    /// None became free in time.
    Timeout,
}

/// The bound a configured `limit` stands for: 0 is none.
fn bound(limit: usize) -> usize {
    if limit == 0 {
        usize::MAX
    } else {
        limit
    }
}

impl<C> BackendPool<C> {
    /// A pool holding at most `limit` connections (lent and idle); 0: no
    /// bound of its own (the backend's `max_connections` refuses the one
    /// too many, with MariaDB's own error).
    pub fn new(limit: usize, idle_timeout: Duration, max_waiters: usize) -> BackendPool<C> {
        BackendPool {
            idle: RefCell::new(Vec::new()),
            open: Cell::new(0),
            limit: Cell::new(bound(limit)),
            idle_timeout: Cell::new(idle_timeout),
            waiters: RefCell::new(VecDeque::new()),
            max_waiters: Cell::new(max_waiters),
            stats: Cell::new(PoolStats::default()),
        }
    }

    /// Connections open on this worker.
    pub fn open(&self) -> usize {
        self.open.get()
    }

    /// Idle connections.
    pub fn idle(&self) -> usize {
        self.idle.borrow().len()
    }

    /// What borrowers got since the last call.
    pub fn take_stats(&self) -> PoolStats {
        self.stats.take()
    }

    fn count(&self, f: impl FnOnce(&mut PoolStats)) {
        let mut stats = self.stats.get();
        f(&mut stats);
        self.stats.set(stats);
    }

    /// The most connections this pool opens.
    pub fn limit(&self) -> usize {
        self.limit.get()
    }

    /// New bounds (a config reload). Connections lent out stay lent; idle
    /// ones over a lowered bound are closed now, the oldest first.
    pub fn set_limits(&self, limit: usize, idle_timeout: Duration, max_waiters: usize) {
        self.limit.set(bound(limit));
        self.idle_timeout.set(idle_timeout);
        self.max_waiters.set(max_waiters);
        let mut idle = self.idle.borrow_mut();
        let excess = self.open.get().saturating_sub(self.limit.get());
        let closing = excess.min(idle.len());
        if closing > 0 {
            // Newest last: the oldest are at the front.
            idle.sort_by_key(|i| i.since);
            idle.drain(..closing);
            self.open.set(self.open.get() - closing);
        }
    }

    /// A connection of `key` for `session`: the idle one it used last if
    /// no one used it since; else an idle one no session used (in `state`
    /// first); else, below the bound, leave to open one; else the longest
    /// idle one of another session (in `state` first); `None` when the
    /// pool is at its bound with nothing idle.
    pub fn try_borrow(
        &self,
        key: &PoolKey,
        state: &SessionState,
        session: u32,
    ) -> Option<Borrowed<C>> {
        self.expire();
        let mut idle = self.idle.borrow_mut();
        let own = (session != 0)
            .then(|| {
                idle.iter()
                    .rposition(|i| i.key == *key && i.pooled.last_session == session)
            })
            .flatten();
        // Otherwise: one no session calls its own, then (below the bound)
        // a new one, and only then the longest idle of another session's —
        // so each session keeps finding its own while there is room.
        let oldest = |matches: &dyn Fn(&Idle<C>) -> bool| {
            (0..idle.len())
                .filter(|&at| idle[at].key == *key && matches(&idle[at]))
                .min_by_key(|&at| idle[at].since)
        };
        let unowned = own.or_else(|| {
            oldest(&|i| i.pooled.last_session == 0 && i.pooled.state == *state)
                .or_else(|| oldest(&|i| i.pooled.last_session == 0))
        });
        if let Some(at) = unowned {
            return Some(Borrowed::Conn(Box::new(idle.swap_remove(at).pooled)));
        }
        if self.open.get() < self.limit.get() {
            self.open.set(self.open.get() + 1);
            return Some(Borrowed::Open);
        }
        let others = oldest(&|i| i.pooled.state == *state).or_else(|| oldest(&|_| true));
        if let Some(at) = others {
            return Some(Borrowed::Conn(Box::new(idle.swap_remove(at).pooled)));
        }
        // At the bound with idle connections of other keys: close the
        // oldest of them to make room.
        if let Some(oldest) = (0..idle.len()).min_by_key(|&i| idle[i].since) {
            let Idle { pooled, .. } = idle.swap_remove(oldest);
            drop(pooled);
            return Some(Borrowed::Open);
        }
        None
    }

    /// Like [`BackendPool::try_borrow`], waiting (first come, first served)
    /// up to `timeout` for a connection to come back.
    pub async fn borrow(
        &self,
        key: &PoolKey,
        state: &SessionState,
        session: u32,
        timeout: Duration,
    ) -> Result<Borrowed<C>, PoolError> {
        if self.waiters.borrow().is_empty() {
            if let Some(found) = self.try_borrow(key, state, session) {
                self.count(|s| match found {
                    Borrowed::Conn(_) => s.hits += 1,
                    Borrowed::Open => s.opened += 1,
                });
                return Ok(found);
            }
        }
        if self.waiters.borrow().len() >= self.max_waiters.get() {
            self.count(|s| s.queue_full += 1);
            return Err(PoolError::QueueFull);
        }
        let slot = Rc::new(Slot::default());
        self.waiters
            .borrow_mut()
            .push_back((key.clone(), Rc::clone(&slot)));
        let wait = std::future::poll_fn(|cx| {
            if let Some(handoff) = slot.handoff.borrow_mut().take() {
                return Poll::Ready(handoff);
            }
            *slot.waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        });
        let result = match monoio::time::timeout(timeout, wait).await {
            Ok(Handoff::Conn(pooled)) => Ok(Borrowed::Conn(pooled)),
            Ok(Handoff::Room) => Ok(Borrowed::Open),
            Err(_) => {
                self.waiters
                    .borrow_mut()
                    .retain(|(_, s)| !Rc::ptr_eq(s, &slot));
                // A handoff may have landed as the time ran out.
                match slot.handoff.borrow_mut().take() {
                    Some(Handoff::Conn(pooled)) => Ok(Borrowed::Conn(pooled)),
                    Some(Handoff::Room) => Ok(Borrowed::Open),
                    None => Err(PoolError::Timeout),
                }
            }
        };
        self.count(|s| match result {
            Ok(_) => s.waited += 1,
            Err(_) => s.timeouts += 1,
        });
        result
    }

    /// Takes back a clean connection: to a waiter of its key first, else
    /// into the idle set.
    pub fn give_back(&self, key: PoolKey, pooled: Pooled<C>) {
        let mut waiters = self.waiters.borrow_mut();
        if let Some(at) = waiters.iter().position(|(k, _)| *k == key) {
            if let Some((_, slot)) = waiters.remove(at) {
                drop(waiters);
                *slot.handoff.borrow_mut() = Some(Handoff::Conn(Box::new(pooled)));
                let waker = slot.waker.borrow_mut().take();
                if let Some(waker) = waker {
                    waker.wake();
                }
                return;
            }
        }
        drop(waiters);
        self.idle.borrow_mut().push(Idle {
            key,
            pooled,
            since: Instant::now(),
        });
        // A waiter of another key can have this place if idle ones are
        // all of other keys: it will close one (see try_borrow).
        self.wake_one_for_room();
    }

    /// A lent connection was closed (error, or the session could not use
    /// it): its place is free.
    pub fn forget(&self) {
        self.open.set(self.open.get().saturating_sub(1));
        self.wake_one_for_room();
    }

    fn wake_one_for_room(&self) {
        let has_room = self.open.get() < self.limit.get() || !self.idle.borrow().is_empty();
        if !has_room {
            return;
        }
        let Some((key, slot)) = self.waiters.borrow_mut().pop_front() else {
            return;
        };
        // Take an idle connection of its key, or make room.
        let handoff = match self.try_borrow(&key, &SessionState::default(), 0) {
            Some(Borrowed::Conn(pooled)) => Handoff::Conn(pooled),
            Some(Borrowed::Open) => Handoff::Room,
            None => {
                self.waiters.borrow_mut().push_front((key, slot));
                return;
            }
        };
        *slot.handoff.borrow_mut() = Some(handoff);
        let waker = slot.waker.borrow_mut().take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Closes connections idle longer than the idle timeout.
    pub fn expire(&self) {
        let timeout = self.idle_timeout.get();
        let mut idle = self.idle.borrow_mut();
        let before = idle.len();
        idle.retain(|i| i.since.elapsed() < timeout);
        let closed = before - idle.len();
        self.open.set(self.open.get().saturating_sub(closed));
    }

    /// Takes every idle connection out (shutdown); their places are freed.
    pub fn drain(&self) -> Vec<Pooled<C>> {
        let idle: Vec<Pooled<C>> = self.idle.borrow_mut().drain(..).map(|i| i.pooled).collect();
        self.open.set(self.open.get().saturating_sub(idle.len()));
        idle
    }

    /// When the most recently returned idle connection came back.
    pub fn last_returned(&self) -> Option<Instant> {
        self.idle.borrow().iter().map(|i| i.since).max()
    }

    /// A session ended: the idle connections it used last are nobody's
    /// now, so the next borrower takes them before opening new ones.
    pub fn disown(&self, session: u32) {
        for idle in self.idle.borrow_mut().iter_mut() {
            if idle.pooled.last_session == session {
                idle.pooled.last_session = 0;
            }
        }
    }

    /// Takes out the idle connections `pick` chooses (given how long each
    /// has been idle), to be given back with [`BackendPool::give_back`]
    /// or forgotten: they count as lent meanwhile.
    pub fn take_idle_where(
        &self,
        pick: impl Fn(&C, Duration) -> bool,
    ) -> Vec<(PoolKey, Pooled<C>)> {
        let mut idle = self.idle.borrow_mut();
        let mut taken = Vec::new();
        let mut at = 0;
        while at < idle.len() {
            if pick(&idle[at].pooled.conn, idle[at].since.elapsed()) {
                let Idle { key, pooled, .. } = idle.swap_remove(at);
                taken.push((key, pooled));
            } else {
                at += 1;
            }
        }
        taken
    }

    /// Applies `f` to every idle connection (e.g. to queue closes of a
    /// finished session's statements).
    pub fn for_each_idle(&self, mut f: impl FnMut(&mut C)) {
        for idle in self.idle.borrow_mut().iter_mut() {
            f(&mut idle.pooled.conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(user: &str) -> PoolKey {
        PoolKey {
            user: user.as_bytes().to_vec(),
            account_host: None,
            capabilities: Capabilities::CLIENT_PROTOCOL_41,
            collation: 45,
        }
    }

    fn state(schema: &str) -> SessionState {
        SessionState {
            schema: Some(schema.to_string()),
            ..SessionState::default()
        }
    }

    #[test]
    fn a_bound_of_zero_is_none_of_torpors_own() {
        let pool: BackendPool<u32> = BackendPool::new(0, Duration::from_secs(60), 8);
        for _ in 0..1000 {
            assert!(matches!(
                pool.try_borrow(&key("app"), &SessionState::default(), 1),
                Some(Borrowed::Open)
            ));
        }
        assert_eq!(pool.open(), 1000);
    }

    #[test]
    fn prefers_a_connection_already_in_the_sessions_state() {
        let pool: BackendPool<u32> = BackendPool::new(4, Duration::from_secs(60), 8);
        assert!(matches!(
            pool.try_borrow(&key("app"), &state("a"), 0),
            Some(Borrowed::Open)
        ));
        assert!(matches!(
            pool.try_borrow(&key("app"), &state("a"), 0),
            Some(Borrowed::Open)
        ));
        pool.give_back(
            key("app"),
            Pooled {
                conn: 1,
                state: state("a"),
                last_session: 0,
            },
        );
        pool.give_back(
            key("app"),
            Pooled {
                conn: 2,
                state: state("b"),
                last_session: 0,
            },
        );
        let Some(Borrowed::Conn(found)) = pool.try_borrow(&key("app"), &state("a"), 0) else {
            panic!("an idle connection")
        };
        assert_eq!(found.conn, 1);
        assert_eq!(pool.open(), 2);
        assert!(
            pool.try_borrow(&key("other"), &state("a"), 0).is_some(),
            "below the bound another user gets a new place"
        );
    }

    #[test]
    fn a_session_gets_back_the_connection_it_used_last_if_no_one_took_it() {
        let pool: BackendPool<u32> = BackendPool::new(4, Duration::from_secs(60), 8);
        for _ in 0..2 {
            assert!(matches!(
                pool.try_borrow(&key("app"), &state("a"), 0),
                Some(Borrowed::Open)
            ));
        }
        let back = |conn, last_session| {
            pool.give_back(
                key("app"),
                Pooled {
                    conn,
                    state: state("a"),
                    last_session,
                },
            )
        };
        back(1, 5);
        back(2, 6);
        let take = |session| match pool.try_borrow(&key("app"), &state("a"), session) {
            Some(Borrowed::Conn(found)) => found.conn,
            _ => panic!("an idle connection"),
        };
        // Session 5's own, though connection 2 came back later.
        assert_eq!(take(5), 1);
        back(1, 5);
        // Session 7 has none of its own and there is room: a new one.
        assert!(matches!(
            pool.try_borrow(&key("app"), &state("a"), 7),
            Some(Borrowed::Open)
        ));
        // At the bound (4), 8 takes the longest idle of another's (2),
        // so that 5 still finds its own.
        assert!(matches!(
            pool.try_borrow(&key("app"), &state("a"), 0),
            Some(Borrowed::Open)
        ));
        assert_eq!(take(8), 2);
        assert_eq!(take(5), 1);
        // A session that ended leaves its connection to anyone.
        back(1, 5);
        pool.disown(5);
        assert_eq!(take(9), 1);
    }

    #[test]
    fn the_bound_holds_and_other_keys_make_room() {
        let pool: BackendPool<u32> = BackendPool::new(1, Duration::from_secs(60), 8);
        assert!(matches!(
            pool.try_borrow(&key("app"), &state("a"), 0),
            Some(Borrowed::Open)
        ));
        assert!(
            pool.try_borrow(&key("app"), &state("a"), 0).is_none(),
            "at the bound"
        );
        pool.give_back(
            key("app"),
            Pooled {
                conn: 1,
                state: state("a"),
                last_session: 0,
            },
        );
        // Another user: the idle connection of the first is closed for it.
        assert!(matches!(
            pool.try_borrow(&key("other"), &state("a"), 0),
            Some(Borrowed::Open)
        ));
        assert_eq!(pool.open(), 1);
        assert_eq!(pool.idle(), 0);
        pool.forget();
        assert_eq!(pool.open(), 0);
    }

    #[test]
    fn idle_connections_expire() {
        let pool: BackendPool<u32> = BackendPool::new(2, Duration::from_millis(0), 8);
        assert!(matches!(
            pool.try_borrow(&key("app"), &state("a"), 0),
            Some(Borrowed::Open)
        ));
        pool.give_back(
            key("app"),
            Pooled {
                conn: 1,
                state: state("a"),
                last_session: 0,
            },
        );
        std::thread::sleep(Duration::from_millis(2));
        pool.expire();
        assert_eq!((pool.open(), pool.idle()), (0, 0));
    }

    #[test]
    fn waiters_get_returned_connections_first_come_first_served() {
        let mut runtime = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let pool: Rc<BackendPool<u32>> =
                Rc::new(BackendPool::new(1, Duration::from_secs(60), 1));
            assert!(matches!(
                pool.try_borrow(&key("app"), &state("a"), 0),
                Some(Borrowed::Open)
            ));
            let waiting = {
                let pool = Rc::clone(&pool);
                monoio::spawn(async move {
                    pool.borrow(&key("app"), &state("a"), 0, Duration::from_secs(5))
                        .await
                })
            };
            monoio::time::sleep(Duration::from_millis(5)).await;
            // The queue holds one: a second waiter is refused at once.
            let refused = pool
                .borrow(&key("app"), &state("a"), 0, Duration::from_secs(5))
                .await;
            assert!(matches!(refused, Err(PoolError::QueueFull)));
            pool.give_back(
                key("app"),
                Pooled {
                    conn: 7,
                    state: state("a"),
                    last_session: 0,
                },
            );
            match waiting.await {
                Ok(Borrowed::Conn(pooled)) => assert_eq!(pooled.conn, 7),
                _ => panic!("the waiter gets the returned connection"),
            }
            let timed_out = pool
                .borrow(&key("app"), &state("a"), 0, Duration::from_millis(10))
                .await;
            assert!(matches!(timed_out, Err(PoolError::Timeout)));
            // Only `borrow` counts (try_borrow also serves the pool's own
            // handoffs).
            assert_eq!(
                pool.take_stats(),
                PoolStats {
                    waited: 1,
                    timeouts: 1,
                    queue_full: 1,
                    ..PoolStats::default()
                }
            );
            assert_eq!(pool.take_stats(), PoolStats::default(), "taken");
        });
    }
}
