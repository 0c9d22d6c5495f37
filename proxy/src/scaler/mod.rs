//! The embedded scaler: each managed service's backend is run by a
//! [`driver::Driver`] (a container, [`docker`], or a process,
//! [`process_driver`]) and moved through its lifecycle
//! ([`crate::service::lifecycle`]) by its [`actor`] thread: suspended
//! when idle, parked after a longer silence, woken by the next query. Its autoscaling [`policy`] is a pure
//! function of the [`usage`] the drivers read.

pub mod actor;
pub mod admin_sql;
pub mod autoscaler;
pub mod cgroup;
pub mod docker;
pub mod driver;
pub mod feed;
pub mod policy;
pub mod process;
pub mod process_driver;
pub mod relocate;
pub mod resize;
pub mod services;
pub mod usage;
