//! Accounts read from the backend: users created with `CREATE USER` or
//! `GRANT` (through Torpor or not) log in through Torpor as they would to
//! MariaDB, beside the accounts of Torpor's own configuration (which come
//! first).
//!
//! - [`book`]: the accounts and MariaDB's rules for matching a client to
//!   one (pure).
//! - [`keeper`]: each service's book, kept fresh by one control-plane
//!   thread and saved in `state_dir` for logins while the service sleeps.
//! - [`over_tls`]: the keeper's read over TLS, through Torpor's own
//!   backend connection and the sessions' TLS settings.
//! - [`statements`]: which statements change accounts (a read follows).

pub mod book;
pub mod keeper;
pub mod over_tls;
pub mod statements;

pub use book::{AccountBook, BackendAccount, ClientHost, Refusal};
pub use keeper::AccountKeeper;
