//! What a session leaves unread on a backend connection it gives back.
//!
//! The server does not report user variables (nor `LAST_INSERT_ID(expr)`
//! inside a result set, nor what `ROW_COUNT()` and `FOUND_ROWS()` read
//! after a `CALL`, a text of several statements, a `SHOW`, …); Torpor
//! reads them back. Reading them on the
//! session's own connection right after its statement would change what
//! the client reads next: MariaDB clears the warnings of the previous
//! statement at the next one that opens a table (the read of
//! `information_schema.USER_VARIABLES` does), and any SELECT changes
//! `ROW_COUNT()` and `FOUND_ROWS()`. So they are read only when the
//! session's state must leave that connection: when another session takes
//! it (the taker reads, then hands the values to the owner), or when the
//! worker is about to close it idle ([`settle_idle`]). A session that gets
//! its own connection back reads nothing: its variables are still there.
//!
//! The owner keeps an `Rc<Unread>`; the connection carries the other end,
//! a [`LeftBehind`]. A `LeftBehind` dropped unread (the connection died or
//! was closed) marks the values lost, and the owner's next command fails
//! as a pinned session's would.

use crate::backend::{self, BackendConn};
use crate::error::SessionError;
use std::rc::Rc;

use crate::pool::BackendPool;
pub use crate::unread::{Learned, LeftBehind, Unread, Wanted};

/// Reads what the owner of `left` left on `conn`, hands it to the owner,
/// and returns it (it is also the connection's state now).
pub async fn read(left: LeftBehind, conn: &mut BackendConn) -> Result<Learned, SessionError> {
    let wanted = left.wanted();
    // First: any statement changes them (the read of the variables too).
    let counts = if wanted.counts {
        Some(backend::read_counts(conn).await?)
    } else {
        None
    };
    let user_variables = if wanted.user_variables || wanted.last_insert_id {
        Some(backend::read_user_variables(conn).await?)
    } else {
        None
    };
    let last_insert_id = if wanted.last_insert_id {
        Some(backend::read_last_insert_id(conn).await?)
    } else {
        None
    };
    let learned = Learned {
        user_variables,
        last_insert_id,
        counts,
    };
    left.resolve(learned.clone());
    Ok(learned)
}

/// Before the worker closes idle connections (those `expiring`, given
/// each connection and how long it has been idle): reads what live
/// sessions left on them, so that their state survives the close.
pub async fn settle_idle(
    pool: &Rc<BackendPool<BackendConn>>,
    expiring: impl Fn(&BackendConn, std::time::Duration) -> bool,
) {
    let taken = pool.take_idle_where(|conn, idle_for| {
        conn.left_by
            .as_ref()
            .is_some_and(|left| !left.orphaned() && expiring(conn, idle_for))
    });
    for (key, mut pooled) in taken {
        let Some(left) = pooled.conn.left_by.take() else {
            pooled
                .conn
                .give_back(key, pooled.state, pooled.last_session);
            continue;
        };
        // Dead, it is dropped (its place freed); the owner hears the
        // values were lost.
        if let Ok(learned) = read(left, &mut pooled.conn).await {
            learned.apply_to(std::rc::Rc::make_mut(&mut pooled.state));
            // The read was a statement: what `ROW_COUNT()` reads there is
            // no longer the owner's, so the connection is nobody's.
            pooled.conn.give_back(key, pooled.state, 0);
        }
    }
}
