//! Resizing a running backend, in the order that never starves it:
//! growing, the container gets its memory first and then the buffer pool
//! grows into it, and the hot pages are loaded back in the background
//! (hydration); shrinking, the hot pages are dumped, the buffer pool
//! shrinks, and only once the server's resident memory has dropped does
//! the container's limit come down (a limit below what the server holds
//! would make the kernel refuse it, or kill `mariadbd`).

use std::time::{Duration, Instant};

use super::admin_sql::{admin_number, run_admin_sql};
use super::driver::{AdminAccess, Driver, DriverError, Resources};

const MIB: u64 = 1024 * 1024;

/// How long a shrinking buffer pool may take to give its memory back
/// before the memory limit stays where it was.
const SHRINK_WAIT: Duration = Duration::from_secs(10);

/// How the buffer pool follows memory: this share of the memory limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolSizing {
    /// The share of memory the buffer pool gets (0–1).
    pub share: f64,
    /// Whether a grown pool loads its last dump's pages back (hydration).
    pub reload_after_grow: bool,
}

impl PoolSizing {
    /// The buffer pool for `memory_mib` of memory, in bytes, whole MiB.
    pub fn bytes_for(&self, memory_mib: u64) -> u64 {
        ((memory_mib as f64 * self.share) as u64).max(1) * MIB
    }
}

/// What a resize did.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Applied {
    /// The resources the backend has now (memory may have stayed where
    /// it was, when the buffer pool did not give its memory back).
    pub resources: Resources,
    /// The buffer pool size the server reports after the change, bytes;
    /// `None` when it could not be read.
    pub buffer_pool_bytes: Option<u64>,
}

/// Why a resize failed. Nothing of it reaches clients (their queries
/// never wait on a resize); it goes to the log and the admin API.
#[derive(Debug, thiserror::Error)]
pub enum ResizeError {
    /// The driver refused the new limits; the old ones stay.
    #[error("the new limits were refused: {0}")]
    Limits(#[from] DriverError),
}

/// Where a resize stands after [`start`].
#[derive(Debug)]
pub enum Step {
    /// It is done.
    Done(Applied),
    /// Memory shrinks: the buffer pool is shrinking, and the limit comes
    /// down once the server has given its memory back. The actor polls
    /// [`Shrink::poll`] between its other work, so a shrink that takes
    /// seconds never keeps it from answering.
    Shrinking(Shrink),
}

/// A memory shrink waiting for the server to give its memory back.
#[derive(Debug)]
pub struct Shrink {
    service: String,
    from: Resources,
    to: Resources,
    access: Option<AdminAccess>,
    deadline: Instant,
}

/// How often a shrink looks at the server's memory.
pub const SHRINK_POLL: Duration = Duration::from_millis(100);

/// Starts resizing the running backend from `from` to `to`, with its
/// buffer pool in proportion. Administrative SQL that fails is logged and
/// the resize goes on: the limits are what matters for the server's life.
pub fn start(
    driver: &mut dyn Driver,
    service: &str,
    from: Resources,
    to: Resources,
    pool: PoolSizing,
) -> Result<Step, ResizeError> {
    let access = driver.admin_access();
    let pool_bytes = pool.bytes_for(to.memory_mib);
    if to.memory_mib >= from.memory_mib {
        driver.resize(to)?;
        if to.memory_mib > from.memory_mib {
            if let Some(access) = &access {
                set_pool(access, service, pool_bytes);
                if pool.reload_after_grow {
                    hydrate(access.clone(), service);
                }
            }
        }
        return Ok(Step::Done(Applied {
            resources: to,
            buffer_pool_bytes: access.as_ref().and_then(|a| read_pool(a, service)),
        }));
    }
    // Shrinking memory: the pool first, then the limit once the memory
    // is back.
    if let Some(access) = &access {
        if let Err(e) = run_admin_sql(
            access,
            &["SET GLOBAL innodb_buffer_pool_dump_now = ON".to_string()],
        ) {
            tracing::warn!(%service, "dumping the buffer pool before a shrink: {e}");
        }
        set_pool(access, service, pool_bytes);
    }
    Ok(Step::Shrinking(Shrink {
        service: service.to_string(),
        from,
        to,
        access,
        deadline: Instant::now() + SHRINK_WAIT,
    }))
}

impl Shrink {
    /// Looks once whether the server's memory fits under the new limit;
    /// when it does (or the wait is over), lowers the limit and returns
    /// what was applied. `None`: still waiting.
    pub fn poll(&self, driver: &mut dyn Driver) -> Option<Result<Applied, ResizeError>> {
        let fits = fits(driver, self.to.memory_mib);
        if !fits && Instant::now() < self.deadline {
            return None;
        }
        let resources = if fits {
            self.to
        } else {
            tracing::warn!(
                service = %self.service,
                memory_mib = self.to.memory_mib,
                "the server did not give its memory back in time: only the CPUs change"
            );
            Resources {
                memory_mib: self.from.memory_mib,
                ..self.to
            }
        };
        Some(
            driver
                .resize(resources)
                .map_err(ResizeError::from)
                .map(|()| Applied {
                    resources,
                    buffer_pool_bytes: self
                        .access
                        .as_ref()
                        .and_then(|a| read_pool(a, &self.service)),
                }),
        )
    }
}

fn set_pool(access: &AdminAccess, service: &str, bytes: u64) {
    let statement = format!("SET GLOBAL innodb_buffer_pool_size = {bytes}");
    if let Err(e) = run_admin_sql(access, &[statement]) {
        tracing::warn!(%service, "resizing the buffer pool: {e}");
    }
}

/// The buffer pool size the server reports, read back after a change:
/// some MariaDB versions refuse a size with only a warning.
fn read_pool(access: &AdminAccess, service: &str) -> Option<u64> {
    admin_number(access, "SELECT @@innodb_buffer_pool_size")
        .inspect_err(|e| tracing::warn!(%service, "reading the buffer pool size: {e}"))
        .ok()
}

/// Loads the pages the last dump listed, in the background: queries run
/// meanwhile and get faster as it goes.
fn hydrate(access: AdminAccess, service: &str) {
    let name = service.to_string();
    let _ = std::thread::Builder::new()
        .name(format!("torpor-hydrate-{name}"))
        .spawn(move || {
            let load = ["SET GLOBAL innodb_buffer_pool_load_now = ON".to_string()];
            if let Err(e) = run_admin_sql(&access, &load) {
                tracing::debug!(service = %name, "buffer pool load after a grow: {e}");
            }
        });
}

/// Whether what the server holds fits under `memory_mib` with a little
/// room (a limit right at the working set would make the kernel reclaim
/// page cache at every allocation). Without a reading, the driver's own
/// check decides.
fn fits(driver: &mut dyn Driver, memory_mib: u64) -> bool {
    let limit = memory_mib * MIB;
    match driver.usage() {
        Ok(usage) => usage.working_set_bytes <= limit / 100 * 95,
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_follows_memory_in_whole_mib() {
        let pool = PoolSizing {
            share: 0.5,
            reload_after_grow: true,
        };
        assert_eq!(pool.bytes_for(1024), 512 * MIB);
        assert_eq!(pool.bytes_for(1000), 500 * MIB);
        assert_eq!(
            PoolSizing {
                share: 0.0,
                reload_after_grow: true
            }
            .bytes_for(1024),
            MIB
        );
    }
}
