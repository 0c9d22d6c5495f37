//! The embedded scaler. Today it holds the piece every later part needs
//! first: running a private `mariadbd` ([`process`]), used by the tests,
//! the benchmark suite and, next, the `process` driver.

pub mod process;
