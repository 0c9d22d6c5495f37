//! What a session leaves unread on a backend connection it gives back:
//! the owner's end ([`Unread`]) and the connection's ([`LeftBehind`]).
//! Why and when it is read: [`crate::session::left`].

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::task::{Poll, Waker};

use torpor_replay::state::SessionState;

/// What was read on the connection a session left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Learned {
    /// The session's user variables, as recreating expressions, when
    /// they were unknown.
    pub user_variables: Option<BTreeMap<String, String>>,
    /// What `LAST_INSERT_ID()` returns, when it was unknown.
    pub last_insert_id: Option<u64>,
    /// What `ROW_COUNT()` and `FOUND_ROWS()` read, when the session's
    /// last commands there left values Torpor could not tell.
    pub counts: Option<(i64, u64)>,
}

impl Learned {
    /// Makes `state` (the connection's, as the pool holds it) say what
    /// was read there.
    pub fn apply_to(self, state: &mut SessionState) {
        if let Some(user_variables) = self.user_variables {
            state.user_variables = user_variables;
        }
        if let Some(id) = self.last_insert_id {
            state.last_insert_id = id;
        }
    }
}

/// What a session left unknown on the connection it gave back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wanted {
    /// Its user variables (a statement wrote some).
    pub user_variables: bool,
    /// `LAST_INSERT_ID()`.
    pub last_insert_id: bool,
    /// `ROW_COUNT()` and `FOUND_ROWS()`: losing them costs the session
    /// nothing but the two values (they are then unknown, as before).
    pub counts: bool,
}

impl Wanted {
    /// Whether anything is wanted at all.
    pub fn any(self) -> bool {
        self.user_variables || self.last_insert_id || self.counts
    }

    /// Whether the session cannot go on without the values: its state.
    pub fn is_state(self) -> bool {
        self.user_variables || self.last_insert_id
    }
}

enum Outcome {
    /// Not read yet.
    Pending,
    /// Read; not taken by the owner yet.
    Read(Learned),
    /// Taken by the owner, or the owner got its connection back.
    Settled,
    /// The connection went away unread.
    Lost,
}

/// The owner's end: what it left unread, and whether it was read.
pub struct Unread {
    outcome: RefCell<Outcome>,
    wanted: Wanted,
    wakers: RefCell<Vec<Waker>>,
}

/// The connection's end of an [`Unread`].
pub struct LeftBehind(Rc<Unread>);

impl Unread {
    /// A new pair: the owner's end and the connection's.
    pub fn new(wanted: Wanted) -> (Rc<Unread>, LeftBehind) {
        let unread = Rc::new(Unread {
            outcome: RefCell::new(Outcome::Pending),
            wanted,
            wakers: RefCell::new(Vec::new()),
        });
        let left = LeftBehind(Rc::clone(&unread));
        (unread, left)
    }

    fn settle(&self, outcome: Outcome) {
        *self.outcome.borrow_mut() = outcome;
        for waker in self.wakers.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    /// What the owner left unknown.
    pub fn wanted(&self) -> Wanted {
        self.wanted
    }

    /// What was read, once it was: `Ok(Some)` the values, `Ok(None)`
    /// nothing to take (already taken), `Err` lost. `None` while unread.
    pub fn try_take(&self) -> Option<Result<Option<Learned>, ()>> {
        let mut outcome = self.outcome.borrow_mut();
        match std::mem::replace(&mut *outcome, Outcome::Settled) {
            Outcome::Pending => {
                *outcome = Outcome::Pending;
                None
            }
            Outcome::Read(learned) => Some(Ok(Some(learned))),
            Outcome::Settled => Some(Ok(None)),
            Outcome::Lost => {
                *outcome = Outcome::Lost;
                Some(Err(()))
            }
        }
    }

    /// Waits until another session (or the worker) read what the owner
    /// left on its old connection: one round trip on that connection,
    /// already under way when this is called.
    pub async fn wait(&self) -> Result<Option<Learned>, ()> {
        std::future::poll_fn(|cx| match self.try_take() {
            Some(result) => Poll::Ready(result),
            None => {
                self.wakers.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

impl LeftBehind {
    /// Whether `mine` is this connection's owner's end.
    pub fn belongs_to(&self, mine: &Rc<Unread>) -> bool {
        Rc::ptr_eq(&self.0, mine)
    }

    /// Whether the owner is gone (its session ended): nothing needs the
    /// values but the next user of the connection.
    pub fn orphaned(&self) -> bool {
        Rc::strong_count(&self.0) == 1
    }

    /// What the owner lacks.
    pub fn wanted(&self) -> Wanted {
        self.0.wanted
    }

    /// The owner got its connection back: nothing to read.
    pub fn reclaim(self) {
        self.0.settle(Outcome::Settled);
    }

    /// What was read, for the owner.
    pub fn resolve(self, learned: Learned) {
        self.0.settle(Outcome::Read(learned));
    }
}

impl Drop for LeftBehind {
    fn drop(&mut self) {
        let pending = matches!(*self.0.outcome.borrow(), Outcome::Pending);
        if pending {
            self.0.settle(Outcome::Lost);
        }
    }
}
