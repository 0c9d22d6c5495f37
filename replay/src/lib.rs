//! Torpor's session state model.
//!
//! Map of the modules:
//!
//! - [`sql`]: a byte-level SQL lexer that knows MariaDB's quoting and
//!   comment rules, enough to find statements' keywords and rewrite
//!   function calls without ever looking inside strings or comments.
//!
//! The state model itself (`SessionState`, its diff, capture from OK
//! packets, the transaction journal) is the next part to land here.

pub mod sql;
