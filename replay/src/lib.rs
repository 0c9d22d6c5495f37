//! Torpor's session state model.
//!
//! Map of the modules:
//!
//! - [`sql`]: a byte-level SQL lexer that knows MariaDB's quoting and
//!   comment rules, enough to find statements' keywords and rewrite
//!   function calls without ever looking inside strings or comments.
//!
//! - [`mentions`]: one pass over a statement's text for the words that
//!   make it worth lexing (every query goes through it).
//! - [`classify`]: what a statement does that session tracking does not
//!   report (user variables, temporary tables, locks, PREPARE, …).
//! - [`journal`]: an open transaction's statements and digests of their
//!   replies, what may not be replayed, and what a lost COMMIT means.
//! - [`capture`]: applying the session-state changes of OK packets.
//! - [`tracking`]: what session tracking a client asked for, and so which
//!   reported changes it is told about.
//! - [`state`]: a session's movable state as a value, the baseline it is
//!   compared against, and the statements that move a connection from one
//!   state to another.

// Peer bytes must never panic the proxy (sqlx #4139, go-mysql #557): no
// unwrap, expect, panic or unchecked indexing outside tests. Where an index
// truly cannot fail, an `#[allow]` next to it says why.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

pub mod capture;
pub mod classify;
pub mod journal;
pub mod mentions;
pub mod sql;
pub mod state;
pub mod tracking;
