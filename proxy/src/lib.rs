//! Torpor: a serverless front for MariaDB.
//!
//! Map of the modules:
//!
//! - [`scaler`]: the embedded scaler; today [`scaler::process`] runs
//!   private `mariadbd` processes.
pub mod scaler;
