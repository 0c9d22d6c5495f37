//! What a session leaves unread on a backend connection it gives back:
//! the owner's end ([`Unread`]) and the connection's ([`LeftBehind`]).
//! Why and when it is read: [`crate::session::left`].

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::task::{Poll, Waker};

/// What was read on the connection a session left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Learned {
    /// The session's user variables, as recreating expressions.
    pub user_variables: BTreeMap<String, String>,
    /// What `LAST_INSERT_ID()` returns, when it was unknown.
    pub last_insert_id: Option<u64>,
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
    wants_last_insert_id: bool,
    wakers: RefCell<Vec<Waker>>,
}

/// The connection's end of an [`Unread`].
pub struct LeftBehind(Rc<Unread>);

impl Unread {
    /// A new pair: the owner's end and the connection's.
    pub fn new(wants_last_insert_id: bool) -> (Rc<Unread>, LeftBehind) {
        let unread = Rc::new(Unread {
            outcome: RefCell::new(Outcome::Pending),
            wants_last_insert_id,
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

    /// Whether the owner also lacks `LAST_INSERT_ID()`.
    pub fn wants_last_insert_id(&self) -> bool {
        self.0.wants_last_insert_id
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
