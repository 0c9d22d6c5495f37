//! A worker's table of its sessions, and the watch that looks over them
//! every [`WATCH_EVERY`]: what a look at one session does (idle past its
//! `wait_timeout`, a client gone while a reply is awaited, a write stuck
//! past `net_write_timeout`, shutdown) is [`crate::session::control`]'s.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::session::control::SessionControl;

/// How often the watch looks over the sessions: the lateness, at most, of
/// a `wait_timeout` close or of noticing a client that hung up.
pub const WATCH_EVERY: Duration = Duration::from_millis(500);

/// The sessions of one worker.
#[derive(Default)]
pub struct Sessions {
    next: Cell<u64>,
    table: RefCell<HashMap<u64, Rc<SessionControl>>>,
}

/// A session's place in its worker's table; removed on drop.
pub struct SessionSlot {
    sessions: Rc<Sessions>,
    key: u64,
}

impl Sessions {
    /// Adds a session to the table.
    pub fn insert(self: &Rc<Self>) -> (SessionSlot, Rc<SessionControl>) {
        let key = self.next.get();
        self.next.set(key + 1);
        let control = Rc::new(SessionControl::default());
        self.table.borrow_mut().insert(key, Rc::clone(&control));
        (
            SessionSlot {
                sessions: Rc::clone(self),
                key,
            },
            control,
        )
    }

    /// Number of sessions.
    pub fn len(&self) -> usize {
        self.table.borrow().len()
    }

    /// Ends every idle session's wait for its client.
    pub fn interrupt_idle(&self) {
        for control in self.table.borrow().values() {
            control.interrupt_if_idle();
        }
    }

    /// Looks over every session once.
    fn look(&self) {
        let now = Instant::now();
        // A woken session runs later, not inside this loop: the borrow
        // ends before it can insert or remove itself.
        for control in self.table.borrow().values() {
            control.look(now);
        }
    }

    /// The watch: looks over the sessions every [`WATCH_EVERY`] until the
    /// worker stops.
    pub async fn watch(self: Rc<Self>, stopping: impl Fn() -> bool) {
        while !stopping() {
            crate::timer::sleep(WATCH_EVERY).await;
            self.look();
        }
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.sessions.table.borrow_mut().remove(&self.key);
    }
}
