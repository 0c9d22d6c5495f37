//! What the scaler asks of whatever runs a service's MariaDB: a container
//! ([`super::docker`]) or a process ([`super::process_driver`]).
//!
//! The calls block: each service's actor thread ([`super::actor`]) makes
//! them one at a time, so a driver never sees two at once for the same
//! service, and a slow engine never holds up the workers.

use std::net::SocketAddr;

use super::usage::Usage;
use crate::endpoint::Endpoint;

/// CPU and memory a backend may use.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Resources {
    /// CPUs (fractions allowed: 0.5 is half a core).
    pub cpus: f64,
    /// Memory limit in MiB.
    pub memory_mib: u64,
}

/// How the scaler logs in to a backend for administrative SQL (buffer
/// pool dump, load and resize).
#[derive(Debug, Clone)]
pub struct AdminAccess {
    /// Where the server listens.
    pub address: SocketAddr,
    /// An account with the SUPER-level privileges `SET GLOBAL` needs.
    pub user: String,
    /// Its password.
    pub password: String,
}

/// Why a driver call failed. The text goes to logs and, for a failed
/// wake, into the error clients get, so it names the cause.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The engine or process manager refused or failed.
    #[error("{0}")]
    Failed(String),
    /// The backend started but did not greet within its timeout.
    #[error("the backend did not become ready: {0}")]
    NotReady(String),
    /// The container or process is gone (removed underneath Torpor).
    #[error("the backend is gone: {0}")]
    Gone(String),
}

impl DriverError {
    /// The cause in words a client may see: what happened, never the
    /// engine's text, paths, container names or addresses (those go to
    /// Torpor's log, where the operator reads them).
    pub fn client_cause(&self) -> &'static str {
        match self {
            DriverError::Failed(_) => "its server could not be started; Torpor's log says why",
            DriverError::NotReady(_) => "its server did not become ready in time",
            DriverError::Gone(_) => "its server is gone",
        }
    }
}

/// Runs one service's MariaDB.
///
/// The lifecycle ([`crate::service::lifecycle`]) calls these in this order:
/// `start` (from nothing or from parked) → `freeze` (suspend) → `thaw`
/// (wake from suspended) or `stop` (park) → `start` again. Every call is
/// made from a thread that may block.
pub trait Driver: Send {
    /// The driver's name, as the config spells it (`docker`, `process`).
    fn kind(&self) -> &'static str;

    /// Creates the backend if it does not exist yet (container with its
    /// named volume; process with its initialized datadir), starts it and
    /// returns where sessions reach it once a MySQL handshake arrives there
    /// ("running" is not "ready"): its Unix socket when it runs on this
    /// host, else its TCP address. Idempotent: a running backend returns
    /// its address.
    fn start(&mut self) -> Result<Endpoint, DriverError>;

    /// Freezes the running backend: its memory stays, it gets no CPU
    /// (`docker pause`, SIGSTOP). Connections to it stay open but unanswered.
    fn freeze(&mut self) -> Result<(), DriverError>;

    /// Unfreezes a frozen backend and returns its address (as `start`)
    /// once it answers a handshake again.
    fn thaw(&mut self) -> Result<Endpoint, DriverError>;

    /// Stops the backend cleanly, keeping its data (volume or datadir), so
    /// that `start` brings it back. Works on a frozen backend too.
    fn stop(&mut self) -> Result<(), DriverError>;

    /// Applies CPU and memory limits to the running backend.
    fn resize(&mut self, resources: Resources) -> Result<(), DriverError>;

    /// What the running backend uses now, and the limits it runs under:
    /// a few file reads (its cgroup, or `/proc`), cheap enough for the
    /// policy's 200 ms sampling. Frozen backends read too.
    fn usage(&mut self) -> Result<Usage, DriverError>;

    /// The backend's storage as last sampled; `None` for a backend with
    /// no storage to watch. A volume that can grow is sampled and grown
    /// by its own thread ([`crate::storage::Watch`]); any other storage
    /// is sampled here. Called from the actor's timer, about every
    /// 250 ms.
    fn check_storage(&mut self) -> Option<crate::storage::StorageView> {
        None
    }

    /// How to log in for administrative SQL, once started.
    fn admin_access(&self) -> Option<AdminAccess>;

    /// The `[[hosts]]` entry the backend runs on (`local` for a process).
    fn host(&self) -> &str {
        crate::config::hosts::LOCAL_HOST
    }

    /// Where a relocation's target on `target_host` reaches this running
    /// backend to replicate from it. The administrative address unless
    /// the backend sits behind a port only this host can use (a
    /// container's loopback-published port: another container on the
    /// same engine reaches it on its network address instead).
    fn replication_address(&self, _target_host: &str) -> Result<SocketAddr, DriverError> {
        self.admin_access()
            .map(|access| access.address)
            .ok_or_else(|| DriverError::Gone("the backend is not running".into()))
    }

    /// A short description for the admin API: container id, pid, datadir.
    fn describe(&self) -> String;

    /// Removes what `start` created, data included (tests, `torpor`
    /// shutting down a temporary service). Stopping first if needed.
    fn destroy(&mut self) -> Result<(), DriverError>;

    /// A driver for a new backend of the same service somewhere else (a
    /// relocation's target: another datadir, container or host), not
    /// started, with no data yet; on host `to` where the driver has hosts
    /// (default: the backend's own).
    fn relocation_target(
        &self,
        _to: Option<&crate::config::hosts::HostConfig>,
    ) -> Result<Box<dyn Driver>, DriverError> {
        Err(DriverError::Failed(format!(
            "the {} driver cannot relocate a service yet",
            self.kind()
        )))
    }

    /// A command whose standard output is a consistent physical backup of
    /// the running backend, in `mbstream` format (`mariadb-backup
    /// --backup --stream=xbstream`), taken while it serves queries.
    fn backup_command(&self) -> Result<std::process::Command, DriverError> {
        Err(DriverError::Failed(format!(
            "the {} driver cannot take a backup",
            self.kind()
        )))
    }

    /// Whether a frozen backend outlives Torpor: a paused container stays
    /// paused when Torpor stops, so a suspended service is left suspended
    /// (found again by [`Driver::found_frozen`]); a process backend dies
    /// with Torpor, so it is stopped cleanly instead.
    fn freeze_outlives_torpor(&self) -> bool {
        false
    }

    /// Whether the backend is frozen now, as a suspend left it before
    /// Torpor last stopped (asked once, when Torpor starts).
    fn found_frozen(&mut self) -> bool {
        false
    }

    /// A command whose standard output is the running backend's buffer
    /// pool dump (`ib_buffer_pool`: the numbers of its hot pages), which
    /// `mariadb-backup`'s stream leaves out; a relocation's target loads
    /// it ([`Driver::place_hot_pages`]) to start warm.
    fn hot_pages_command(&self) -> Result<std::process::Command, DriverError> {
        Err(DriverError::Failed(format!(
            "the {} driver cannot read a buffer pool dump",
            self.kind()
        )))
    }

    /// Writes `pages` (another backend's [`Driver::hot_pages_command`])
    /// as this started backend's buffer pool dump, where
    /// `innodb_buffer_pool_load_now` reads it.
    fn place_hot_pages(&mut self, _pages: &[u8]) -> Result<(), DriverError> {
        Err(DriverError::Failed(format!(
            "the {} driver cannot take a buffer pool dump",
            self.kind()
        )))
    }

    /// Fills this (not started) backend's data from a backup stream made
    /// by another backend's [`Driver::backup_command`], prepares it, and
    /// returns the GTID position the backup holds (where replication from
    /// its source continues). `copied` counts the bytes read as they come.
    fn restore(
        &mut self,
        _backup: &mut dyn std::io::Read,
        _copied: &std::sync::atomic::AtomicU64,
    ) -> Result<String, DriverError> {
        Err(DriverError::Failed(format!(
            "the {} driver cannot restore a backup",
            self.kind()
        )))
    }

    /// A command whose standard output is the stopped backend's data (a
    /// tar stream): a parked service moves by copying it.
    fn export_at_rest(&mut self) -> Result<std::process::Command, DriverError> {
        Err(DriverError::Failed(format!(
            "the {} driver cannot copy a stopped backend's data",
            self.kind()
        )))
    }

    /// Fills this (not started) backend's data from another backend's
    /// [`Driver::export_at_rest`] stream, counting the bytes in `copied`.
    fn import_at_rest(
        &mut self,
        _data: &mut dyn std::io::Read,
        _copied: &std::sync::atomic::AtomicU64,
    ) -> Result<(), DriverError> {
        Err(DriverError::Failed(format!(
            "the {} driver cannot take a stopped backend's data",
            self.kind()
        )))
    }

    /// Gives a warm pool's server this service took over the service's
    /// own limits, once it serves (its first wake does not wait for
    /// them): a container was made with the pool's.
    fn take_service_limits(&mut self) -> Result<(), DriverError> {
        Ok(())
    }

    /// Records this backend as the service's own, so that Torpor started
    /// again finds it (after a relocation's switch-over).
    fn take_over(&mut self) -> Result<(), DriverError> {
        Ok(())
    }
}
