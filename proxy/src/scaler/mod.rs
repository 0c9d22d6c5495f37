//! The embedded scaler: each managed service's backend is run by a
//! [`driver::Driver`] (a container, [`docker`], or a process,
//! [`process_driver`]) and moved through its [`lifecycle`] by its
//! [`actor`] thread: suspended when idle, parked after a longer silence,
//! woken by the next query.

pub mod actor;
pub mod admin_sql;
pub mod docker;
pub mod driver;
pub mod lifecycle;
pub mod process;
pub mod process_driver;
pub mod services;
