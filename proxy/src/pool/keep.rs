//! A connection a session keeps between its statements while nobody
//! else needs it.
//!
//! An autocommit session gives its connection back after each statement
//! and borrows one for the next. Through the idle set that trip cost
//! about 1 200 instructions of the 11 100 a point select takes (callgrind):
//! the search by key and session, the place, the state compared for the
//! give-back and again for the borrow, the checks on the way. A session
//! whose connection is free keeps it in its [`Keep`] instead, and takes it
//! straight back for its next statement.
//!
//! Kept is idle in every way others can see: counted as idle, and moved
//! into the idle set ([`BackendPool::flush_kept`]) before anything looks
//! at that set — a borrower that finds nothing else (the pool at its
//! bound), the worker's tick (expiry, a suspend, a move, what sessions
//! left unread), the end of a session. A session never keeps while others
//! wait for a connection. So a held connection is never one that another
//! session goes without, nor one that keeps an idle service awake; the
//! worst a flush costs its session is one borrow through the idle set,
//! which finds its own connection first.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Instant;

use torpor_replay::state::SessionState;

use super::{BackendPool, Idle, Lent, PoolKey, Pooled};

/// Where a session keeps its free connection between statements (see the
/// module's text). Dropped holding one (a session that ends any other
/// way), the connection closes and its place is freed.
pub struct Keep<C> {
    held: RefCell<Option<Kept<C>>>,
    /// Whether the pool lists this keep (until its next flush).
    listed: Cell<bool>,
}

impl<C> Default for Keep<C> {
    fn default() -> Self {
        Keep {
            held: RefCell::new(None),
            listed: Cell::new(false),
        }
    }
}

impl<C> Drop for Keep<C> {
    fn drop(&mut self) {
        if let Some(kept) = self.held.get_mut().take() {
            kept.uncount();
        }
    }
}

impl<C> Keep<C> {
    /// The connection kept here, if the pool has not taken it back.
    pub fn take(&self) -> Option<Kept<C>> {
        let kept = self.held.borrow_mut().take()?;
        kept.uncount();
        Some(kept)
    }
}

/// A connection held in a [`Keep`], with what the pool would hold with it.
pub struct Kept<C> {
    /// The connection, lent (its place counted).
    pub conn: Lent<C>,
    /// Its key.
    pub key: Rc<PoolKey>,
    /// Its session state.
    pub state: Rc<SessionState>,
    /// The session that keeps it.
    pub session: u32,
    /// When it was last used (it counts as idle since).
    pub since: Instant,
}

impl<C> Kept<C> {
    /// Back to the pool, idle since it was kept.
    pub fn give_back(self) {
        let Kept {
            conn,
            key,
            state,
            session,
            since,
        } = self;
        conn.give_back_at(key, state, session, since);
    }

    /// No longer counted as kept by its pool.
    fn uncount(&self) {
        let pool = &self.conn.place.pool;
        pool.kept.set(pool.kept.get().saturating_sub(1));
    }
}

impl<C> Lent<C> {
    /// Like [`Lent::give_back_at`], but into the session's `keep` when no
    /// one waits for a connection of this pool (see the module's text).
    pub fn keep_at(
        self,
        keep: &Rc<Keep<C>>,
        key: Rc<PoolKey>,
        state: Rc<SessionState>,
        session: u32,
        now: Instant,
    ) {
        let pool = Rc::clone(&self.place.pool);
        if !pool.waiters.borrow().is_empty() {
            return self.give_back_at(key, state, session, now);
        }
        let kept = Kept {
            conn: self,
            key,
            state,
            session,
            since: now,
        };
        let previous = keep.held.borrow_mut().replace(kept);
        pool.kept.set(pool.kept.get() + 1);
        if let Some(previous) = previous {
            // Not reached by a session, which keeps one connection at a
            // time; should it happen, the first is not lost.
            previous.uncount();
            previous.give_back();
        }
        if !keep.listed.replace(true) {
            pool.keeps.borrow_mut().push(Rc::downgrade(keep));
        }
    }
}

impl<C> BackendPool<C> {
    /// Moves every kept connection into the idle set, where every rule of
    /// the pool sees it (each stays its session's: the session finds it
    /// first at its next borrow). The list of keeps is emptied too, which
    /// drops those of sessions gone; a session lists its keep again when
    /// it next keeps.
    pub(super) fn flush_kept(&self) {
        if self.keeps.borrow().is_empty() {
            return;
        }
        let keeps = std::mem::take(&mut *self.keeps.borrow_mut());
        for keep in keeps.iter().filter_map(std::rc::Weak::upgrade) {
            keep.listed.set(false);
            let Some(kept) = keep.held.borrow_mut().take() else {
                continue;
            };
            kept.uncount();
            let Kept {
                conn: Lent { conn, mut place },
                key,
                state,
                session,
                since,
            } = kept;
            // Idle now: its place counts among the idle set's.
            place.held = false;
            self.idle.borrow_mut().push(Idle {
                key,
                pooled: Pooled {
                    conn,
                    state,
                    last_session: session,
                },
                since,
            });
        }
    }
}
