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
//!
//! A pool may also have a target size below its bound (`pool_size`): at
//! the target a borrower waits for a connection to come back, as at the
//! bound, but one that has waited the reserve time opens a new one anyway
//! (PgBouncer's reserve pool). So many clients share a few connections
//! while connections come back, and connections all held (long
//! statements, open transactions, a client holding one transaction while
//! it opens another) cost a short wait, not an error. Connections over
//! the target are closed once they have been idle a while.
//!
//! What the pool lends is a value: a [`Lent`] connection, or a [`Place`]
//! to open one in. Either counts as lent while it lives; given back with
//! [`Lent::give_back`] it goes to a waiter or the idle set, and dropped
//! any other way — an error, an early return, a session that panics and
//! unwinds — it is closed and its place freed. So no path can leave the
//! worker counting a connection lent forever (which would keep its
//! service from ever suspending, and a full pool full).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::ops::{Deref, DerefMut};
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use torpor_protocol::Capabilities;
use torpor_replay::state::SessionState;

mod keep;
pub use keep::{Keep, Kept};

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
/// state it has; borrowers get it as a `Pooled<Lent<C>>`.
pub struct Pooled<C> {
    /// The connection.
    pub conn: C,
    /// What its session state is: shared with the session that gave it
    /// back, which keeps it while its state stays the same (so a give-back
    /// costs no copy of the state).
    pub state: Rc<SessionState>,
    /// The session that used it last (0: none). A session that gets back
    /// the connection it used last, untouched since, still finds there
    /// what `ROW_COUNT()` and `FOUND_ROWS()` say of its own previous
    /// statement.
    pub last_session: u32,
}

/// A place counted among the pool's open connections, held by whoever
/// will open a connection in it (or holds one, inside a [`Lent`]).
/// Dropped, it is freed, and a waiter may have it.
pub struct Place<C> {
    pool: Rc<BackendPool<C>>,
    /// False once the place went back with its connection.
    held: bool,
}

impl<C> Place<C> {
    /// The connection opened in this place, lent.
    pub fn fill(self, conn: C) -> Lent<C> {
        Lent {
            conn: Box::new(conn),
            place: self,
        }
    }
}

impl<C> Drop for Place<C> {
    fn drop(&mut self) {
        if self.held {
            self.pool.forget();
        }
    }
}

/// A connection lent out of the pool. Use it through `Deref`; give it
/// back clean with [`Lent::give_back`]. Dropped otherwise, it is closed
/// and its place freed.
pub struct Lent<C> {
    // Declared first, so dropped first: the connection closes before its
    // place is offered to a waiter. Boxed once, when it is opened: lent,
    // given back and found again per statement, it moves as a pointer,
    // not as the whole connection (hundreds of bytes, copied each time).
    conn: Box<C>,
    place: Place<C>,
}

impl<C> Lent<C> {
    /// Takes the connection back, clean (see the pool rules), with the
    /// key and the state it has now and the session that used it: to a
    /// waiter of its key first, else into the idle set.
    pub fn give_back(self, key: Rc<PoolKey>, state: Rc<SessionState>, last_session: u32) {
        self.give_back_at(key, state, last_session, Instant::now());
    }

    /// [`Lent::give_back`] for a caller that read the clock a moment ago
    /// (`now`): one clock read less on the path every autocommit
    /// statement takes (a read of the monotonic clock costs tens of
    /// nanoseconds in a VM, and the path made a dozen per statement).
    pub fn give_back_at(
        self,
        key: Rc<PoolKey>,
        state: Rc<SessionState>,
        last_session: u32,
        now: Instant,
    ) {
        let Lent { conn, mut place } = self;
        place.held = false;
        place.pool.take_back(
            key,
            Pooled {
                conn,
                state,
                last_session,
            },
            now,
        );
    }

    /// Closes the connection, keeping its place (to open another in).
    pub fn close(self) -> Place<C> {
        let Lent { conn, place } = self;
        drop(conn);
        place
    }
}

impl<C> Deref for Lent<C> {
    type Target = C;

    fn deref(&self) -> &C {
        &self.conn
    }
}

impl<C> DerefMut for Lent<C> {
    fn deref_mut(&mut self) -> &mut C {
        &mut self.conn
    }
}

struct Idle<C> {
    key: Rc<PoolKey>,
    pooled: Pooled<Box<C>>,
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

/// A borrower's place in the queue. Dropped — the wait is over, or its
/// future was dropped half-way (a cancelled select, a task that ends) —
/// it leaves the queue, and a handoff that landed meanwhile goes back to
/// the pool instead of vanishing with the slot (a connection closed
/// without its place ever being freed).
struct Queued<'a, C> {
    pool: &'a BackendPool<C>,
    key: Rc<PoolKey>,
    slot: Rc<Slot<C>>,
}

impl<C> Drop for Queued<'_, C> {
    fn drop(&mut self) {
        self.pool
            .waiters
            .borrow_mut()
            .retain(|(_, s)| !Rc::ptr_eq(s, &self.slot));
        let landed = self.slot.handoff.borrow_mut().take();
        match landed {
            Some(Handoff::Conn(pooled)) => {
                self.pool
                    .take_back(Rc::clone(&self.key), pooled, Instant::now())
            }
            Some(Handoff::Room) => self.pool.forget(),
            None => {}
        }
    }
}

impl<C> Queued<'_, C> {
    /// Waits up to `timeout` for a handoff.
    async fn wait(&self, timeout: Duration) -> Option<Handoff<C>> {
        let handed = std::future::poll_fn(|cx| {
            if let Some(handoff) = self.slot.handoff.borrow_mut().take() {
                return Poll::Ready(handoff);
            }
            *self.slot.waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        });
        match crate::timer::timeout(timeout, handed).await {
            Ok(handoff) => Some(handoff),
            // A handoff may have landed as the time ran out.
            Err(_) => self.slot.handoff.borrow_mut().take(),
        }
    }
}

/// A borrower in the queue: the key it wants, and its slot.
type Waiter<C> = (Rc<PoolKey>, Rc<Slot<C>>);

/// What a waiter is given.
enum Handoff<C> {
    /// A connection another session gave back, of the waiter's key.
    Conn(Pooled<Box<C>>),
    /// A place freed up: the waiter may open a new connection.
    Room,
}

/// What [`BackendPool::borrow`] found.
pub enum Borrowed<C> {
    /// An idle connection of the key, lent.
    Conn(Pooled<Lent<C>>),
    /// None idle, but one may be opened in this place (dropped unused, it
    /// is freed).
    Open(Place<C>),
}

/// What [`BackendPool::find`] found, before it is lent.
enum Found<C> {
    Idle(Pooled<Box<C>>),
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
    /// Room over the target after the reserve time (see the module's
    /// doc): a pool size too small for what holds it.
    pub reserved: u64,
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
    /// The target size (`usize::MAX`: none): see the module's doc.
    target: Cell<usize>,
    /// How long a borrower waits at the target before opening one more.
    reserve_after: Cell<Duration>,
    idle_timeout: Cell<Duration>,
    waiters: RefCell<VecDeque<Waiter<C>>>,
    max_waiters: Cell<usize>,
    /// Counted in `borrow` (plain cells: the pool is its worker's own).
    stats: Cell<PoolStats>,
    /// The keeps of sessions that kept a connection since the last
    /// [`BackendPool::flush_kept`] (see [`Keep`]).
    keeps: RefCell<Vec<std::rc::Weak<Keep<C>>>>,
    /// Connections held in keeps now: idle, as those in `idle` are.
    kept: Cell<usize>,
}

/// Why no connection could be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolError {
    /// Too many sessions wait already.
    QueueFull,
    /// None became free in time.
    Timeout,
}

/// How long a connection over the target stays idle before it is closed:
/// long enough that one a busy pool lends again and again is kept (a
/// close and a reopen each time would cost a backend login).
pub const SURPLUS_IDLE: Duration = Duration::from_secs(1);

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
            target: Cell::new(usize::MAX),
            reserve_after: Cell::new(Duration::ZERO),
            idle_timeout: Cell::new(idle_timeout),
            waiters: RefCell::new(VecDeque::new()),
            max_waiters: Cell::new(max_waiters),
            stats: Cell::new(PoolStats::default()),
            keeps: RefCell::new(Vec::new()),
            kept: Cell::new(0),
        }
    }

    /// Connections open on this worker.
    pub fn open(&self) -> usize {
        self.open.get()
    }

    /// Idle connections (kept by their sessions among them).
    pub fn idle(&self) -> usize {
        self.idle.borrow().len() + self.kept.get()
    }

    /// What borrowers got since the last call.
    pub fn take_stats(&self) -> PoolStats {
        self.stats.take()
    }

    /// Counts a session's taking back of the connection it kept: a hit,
    /// as finding it in the idle set would have been.
    pub fn count_kept_hit(&self) {
        self.count(|s| s.hits += 1);
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

    /// A target size (0: none) and the wait at it before a borrower opens
    /// one more (see the module's doc). Connections over a lowered target
    /// are closed once idle (see [`BackendPool::expire`]).
    pub fn set_target(&self, target: usize, reserve_after: Duration) {
        self.target.set(bound(target));
        self.reserve_after.set(reserve_after);
    }

    /// Connections a borrower may open without waiting: the bound, or the
    /// target below it.
    fn room(&self) -> usize {
        self.limit.get().min(self.target.get())
    }

    /// Whether the pool has no bound yet (a service whose backend's
    /// `max_connections` was not known when the pool was made).
    pub fn is_unbounded(&self) -> bool {
        self.limit.get() == usize::MAX
    }

    /// New bounds (a config reload). Connections lent out stay lent; idle
    /// ones over a lowered bound are closed now, the oldest first.
    pub fn set_limits(&self, limit: usize, idle_timeout: Duration, max_waiters: usize) {
        self.limit.set(bound(limit));
        self.idle_timeout.set(idle_timeout);
        self.max_waiters.set(max_waiters);
        self.flush_kept();
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
    /// first); else, below the bound, a place to open one; else the longest
    /// idle one of another session (in `state` first); `None` when the
    /// pool is at its bound with nothing idle.
    pub fn try_borrow(
        self: &Rc<Self>,
        key: &Rc<PoolKey>,
        state: &SessionState,
        session: u32,
    ) -> Option<Borrowed<C>> {
        self.find(key, state, session).map(|found| self.lend(found))
    }

    /// What a borrower holds of what was found (counted as open already).
    fn lend(self: &Rc<Self>, found: Found<C>) -> Borrowed<C> {
        match found {
            Found::Idle(pooled) => Borrowed::Conn(self.lend_idle(pooled)),
            Found::Open => Borrowed::Open(self.place()),
        }
    }

    /// A place counted already, as the value that frees it.
    fn place(self: &Rc<Self>) -> Place<C> {
        Place {
            pool: Rc::clone(self),
            held: true,
        }
    }

    /// An idle connection taken out (its place counted), lent.
    fn lend_idle(self: &Rc<Self>, pooled: Pooled<Box<C>>) -> Pooled<Lent<C>> {
        let Pooled {
            conn,
            state,
            last_session,
        } = pooled;
        Pooled {
            conn: Lent {
                conn,
                place: self.place(),
            },
            state,
            last_session,
        }
    }

    /// See [`BackendPool::try_borrow`]; what is found counts as lent.
    ///
    /// Expired connections are not looked for here: the worker's tick
    /// (every second) reads what sessions left on those about to expire,
    /// then closes the expired ones. One found here may be up to a tick
    /// past the idle timeout, which is Torpor's own bound (the server's
    /// `wait_timeout` is longer, and a connection the server closed is
    /// caught by the borrower's peek); expiring here as well cost a clock
    /// read and a pass over the idle set per statement.
    ///
    /// Connections sessions keep are looked at only when nothing else is
    /// found (the pool at its bound): they move into the idle set first.
    fn find(&self, key: &Rc<PoolKey>, state: &SessionState, session: u32) -> Option<Found<C>> {
        if let Some(found) = self.find_idle_or_room(key, state, session) {
            return Some(found);
        }
        if self.kept.get() == 0 {
            return None;
        }
        self.flush_kept();
        self.find_idle_or_room(key, state, session)
    }

    /// [`BackendPool::find`] in the idle set and the room below the bound.
    fn find_idle_or_room(
        &self,
        key: &Rc<PoolKey>,
        state: &SessionState,
        session: u32,
    ) -> Option<Found<C>> {
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
            oldest(&|i| i.pooled.last_session == 0 && *i.pooled.state == *state)
                .or_else(|| oldest(&|i| i.pooled.last_session == 0))
        });
        if let Some(at) = unowned {
            return Some(Found::Idle(idle.swap_remove(at).pooled));
        }
        if self.open.get() < self.room() {
            self.open.set(self.open.get() + 1);
            return Some(Found::Open);
        }
        let others = oldest(&|i| *i.pooled.state == *state).or_else(|| oldest(&|_| true));
        if let Some(at) = others {
            return Some(Found::Idle(idle.swap_remove(at).pooled));
        }
        // At the bound with idle connections of other keys: close the
        // oldest of them to make room.
        if let Some(oldest) = (0..idle.len()).min_by_key(|&i| idle[i].since) {
            let Idle { pooled, .. } = idle.swap_remove(oldest);
            drop(pooled);
            return Some(Found::Open);
        }
        None
    }

    /// Like [`BackendPool::try_borrow`], waiting (first come, first served)
    /// up to `timeout` for a connection to come back.
    pub async fn borrow(
        self: &Rc<Self>,
        key: &Rc<PoolKey>,
        state: &SessionState,
        session: u32,
        timeout: Duration,
    ) -> Result<Borrowed<C>, PoolError> {
        if self.waiters.borrow().is_empty() {
            if let Some(found) = self.find(key, state, session) {
                self.count(|s| match found {
                    Found::Idle(_) => s.hits += 1,
                    Found::Open => s.opened += 1,
                });
                return Ok(self.lend(found));
            }
        }
        if self.waiters.borrow().len() >= self.max_waiters.get() {
            self.count(|s| s.queue_full += 1);
            return Err(PoolError::QueueFull);
        }
        // Leaves the queue however the wait ends (a handoff, the timeout,
        // or the waiting future dropped): see `Queued::drop`.
        let queued = Queued {
            pool: self,
            key: Rc::clone(key),
            slot: Rc::new(Slot::default()),
        };
        self.waiters
            .borrow_mut()
            .push_back((Rc::clone(key), Rc::clone(&queued.slot)));
        let mut handoff = None;
        let mut reserved = false;
        let mut left = timeout;
        if self.target.get() < self.limit.get() {
            // Waiting at the target, not at the bound: past the reserve
            // time (or the whole wait, if shorter), one more connection
            // is opened.
            let reserve_after = self.reserve_after.get().min(timeout);
            handoff = queued.wait(reserve_after).await;
            if handoff.is_none() && self.open.get() < self.limit.get() {
                self.open.set(self.open.get() + 1);
                handoff = Some(Handoff::Room);
                reserved = true;
            }
            left = timeout - reserve_after;
        }
        if handoff.is_none() && !left.is_zero() {
            handoff = queued.wait(left).await;
        }
        drop(queued);
        let result = match handoff {
            Some(Handoff::Conn(pooled)) => Ok(self.lend(Found::Idle(pooled))),
            Some(Handoff::Room) => Ok(self.lend(Found::Open)),
            None => Err(PoolError::Timeout),
        };
        self.count(|s| match result {
            Ok(_) if reserved => s.reserved += 1,
            Ok(_) => s.waited += 1,
            Err(_) => s.timeouts += 1,
        });
        result
    }

    /// Takes back a clean connection: to a waiter of its key first, else
    /// into the idle set.
    fn take_back(&self, key: Rc<PoolKey>, pooled: Pooled<Box<C>>, now: Instant) {
        let mut waiters = self.waiters.borrow_mut();
        if let Some(at) = waiters.iter().position(|(k, _)| *k == key) {
            if let Some((_, slot)) = waiters.remove(at) {
                drop(waiters);
                *slot.handoff.borrow_mut() = Some(Handoff::Conn(pooled));
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
            since: now,
        });
        // A waiter of another key can have this place if idle ones are
        // all of other keys: it will close one (see find).
        self.wake_one_for_room();
    }

    /// A lent connection was closed, or a place given up: it is free.
    /// (Only [`Place`]'s drop calls it.)
    fn forget(&self) {
        self.open.set(self.open.get().saturating_sub(1));
        self.wake_one_for_room();
    }

    fn wake_one_for_room(&self) {
        let has_room =
            self.open.get() < self.room() || !self.idle.borrow().is_empty() || self.kept.get() > 0;
        if !has_room {
            return;
        }
        let Some((key, slot)) = self.waiters.borrow_mut().pop_front() else {
            return;
        };
        // Take an idle connection of its key, or make room.
        let handoff = match self.find(&key, &SessionState::default(), 0) {
            Some(Found::Idle(pooled)) => Handoff::Conn(pooled),
            Some(Found::Open) => Handoff::Room,
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

    /// Closes connections idle longer than the idle timeout, and those
    /// over the target idle [`SURPLUS_IDLE`] or longer (the oldest first).
    pub fn expire(&self) {
        let timeout = self.idle_timeout.get();
        self.flush_kept();
        let mut idle = self.idle.borrow_mut();
        let before = idle.len();
        // One clock read for all of them.
        let now = Instant::now();
        idle.retain(|i| now.saturating_duration_since(i.since) < timeout);
        let mut surplus = self
            .open
            .get()
            .saturating_sub(before - idle.len())
            .saturating_sub(self.target.get());
        if surplus > 0 {
            // Oldest first: the front.
            idle.sort_by_key(|i| i.since);
            idle.retain(|i| {
                let close = surplus > 0 && now.saturating_duration_since(i.since) >= SURPLUS_IDLE;
                surplus -= usize::from(close);
                !close
            });
        }
        let closed = before - idle.len();
        self.open.set(self.open.get().saturating_sub(closed));
    }

    /// Takes every idle connection out (shutdown); their places are freed.
    pub fn drain(&self) -> Vec<Pooled<C>> {
        self.flush_kept();
        let idle: Vec<Pooled<C>> = self
            .idle
            .borrow_mut()
            .drain(..)
            .map(|i| Pooled {
                conn: *i.pooled.conn,
                state: i.pooled.state,
                last_session: i.pooled.last_session,
            })
            .collect();
        self.open.set(self.open.get().saturating_sub(idle.len()));
        idle
    }

    /// When the most recently returned idle connection came back.
    pub fn last_returned(&self) -> Option<Instant> {
        self.flush_kept();
        self.idle.borrow().iter().map(|i| i.since).max()
    }

    /// A session ended: the idle connections it used last are nobody's
    /// now, so the next borrower takes them before opening new ones.
    pub fn disown(&self, session: u32) {
        self.flush_kept();
        for idle in self.idle.borrow_mut().iter_mut() {
            if idle.pooled.last_session == session {
                idle.pooled.last_session = 0;
            }
        }
    }

    /// Takes out the idle connections `pick` chooses (given how long each
    /// has been idle), lent, to be given back or dropped.
    pub fn take_idle_where(
        self: &Rc<Self>,
        pick: impl Fn(&C, Duration) -> bool,
    ) -> Vec<(Rc<PoolKey>, Pooled<Lent<C>>)> {
        let mut picked = Vec::new();
        self.flush_kept();
        {
            let mut idle = self.idle.borrow_mut();
            let mut at = 0;
            while at < idle.len() {
                if pick(&idle[at].pooled.conn, idle[at].since.elapsed()) {
                    let Idle { key, pooled, .. } = idle.swap_remove(at);
                    picked.push((key, pooled));
                } else {
                    at += 1;
                }
            }
        }
        picked
            .into_iter()
            .map(|(key, pooled)| (key, self.lend_idle(pooled)))
            .collect()
    }

    /// Applies `f` to every idle connection (e.g. to queue closes of a
    /// finished session's statements).
    pub fn for_each_idle(&self, mut f: impl FnMut(&mut C)) {
        self.flush_kept();
        for idle in self.idle.borrow_mut().iter_mut() {
            f(&mut idle.pooled.conn);
        }
    }
}

#[cfg(test)]
mod tests;
