//! `[[warm_pools]]`: ready backends kept suspended, so that a service
//! created through the admin API starts on one in milliseconds instead
//! of initializing a datadir and booting a server (seconds).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::hosts::LOCAL_HOST;
use super::DriverKind;

/// The most instances one pool keeps: each is a suspended `mariadbd`
/// holding its memory.
pub const MAX_INSTANCES: usize = 32;

/// One pool: `instances` ready backends of `driver` on `host`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarmPoolConfig {
    /// What runs them: `process` or `docker`.
    pub driver: DriverKind,
    /// Where they run: `local` (a process runs nowhere else), or a
    /// `[[hosts]]` entry that is a Docker Engine.
    #[serde(default = "default_host")]
    pub host: String,
    /// How many are kept ready (1 to [`MAX_INSTANCES`]); each checkout
    /// starts a replacement in the background.
    pub instances: usize,
    /// Each one's InnoDB buffer pool while it waits, MiB: what it costs
    /// at rest. A checkout grows it to the service's own.
    #[serde(default = "default_buffer_pool_mib")]
    pub buffer_pool_mib: u64,
    /// `docker`: the image its containers run (default: the services'
    /// default image); a created service of another image is made cold.
    #[serde(default)]
    pub image: Option<String>,
}

fn default_host() -> String {
    LOCAL_HOST.to_string()
}

fn default_buffer_pool_mib() -> u64 {
    16
}

impl WarmPoolConfig {
    /// `instances` process servers on `local`, at the default size.
    pub fn process(instances: usize) -> WarmPoolConfig {
        WarmPoolConfig {
            driver: DriverKind::Process,
            host: default_host(),
            instances,
            buffer_pool_mib: default_buffer_pool_mib(),
            image: None,
        }
    }

    /// What is wrong with this pool, in words for the operator.
    pub fn check(&self) -> Result<(), String> {
        if self.driver == DriverKind::Static {
            return Err("driver = \"static\": a static backend is not Torpor's to start".into());
        }
        if self.driver == DriverKind::Process && self.host != LOCAL_HOST {
            return Err(format!(
                "host = \"{}\": a process runs on host \"{LOCAL_HOST}\"",
                self.host
            ));
        }
        if self.instances == 0 || self.instances > MAX_INSTANCES {
            return Err(format!(
                "instances = {} is not between 1 and {MAX_INSTANCES}",
                self.instances
            ));
        }
        // MariaDB's smallest buffer pool.
        if self.buffer_pool_mib < 5 {
            return Err(format!(
                "buffer_pool_mib = {} is under MariaDB's smallest (5)",
                self.buffer_pool_mib
            ));
        }
        Ok(())
    }
}

/// The folder of the pool of `driver` on `host` under the state folder
/// `state_dir`: each server's own folder is in it, named by its id.
pub fn pool_dir(state_dir: &Path, driver: &str, host: &str) -> PathBuf {
    state_dir.join("warm").join(format!("{driver}-{host}"))
}

/// Checks every pool, that a docker pool's host is `local` or one of
/// `docker_hosts`, and that no two name the same driver and host.
pub fn check_all(pools: &[WarmPoolConfig], docker_hosts: &[&str]) -> Result<(), String> {
    for (index, pool) in pools.iter().enumerate() {
        pool.check()
            .map_err(|why| format!("[[warm_pools]] entry {}: {why}", index + 1))?;
        if pool.driver == DriverKind::Docker
            && pool.host != LOCAL_HOST
            && !docker_hosts.contains(&pool.host.as_str())
        {
            return Err(format!(
                "[[warm_pools]] entry {}: host '{}' is no [[hosts]] entry that is a Docker Engine",
                index + 1,
                pool.host
            ));
        }
        if pools[..index]
            .iter()
            .any(|other| other.driver == pool.driver && other.host == pool.host)
        {
            return Err(format!(
                "[[warm_pools]] entry {}: a second pool for the same driver and host",
                index + 1
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(toml_text: &str) -> WarmPoolConfig {
        toml::from_str(toml_text).expect("a pool")
    }

    #[test]
    fn a_process_pool_takes_its_defaults() {
        let pool = pool("driver = \"process\"\ninstances = 2");
        assert_eq!(pool.host, "local");
        assert_eq!(pool.buffer_pool_mib, 16);
        assert_eq!(pool.check(), Ok(()));
    }

    #[test]
    fn what_cannot_be_pooled_is_refused_by_name() {
        let elsewhere = pool("driver = \"process\"\nhost = \"b\"\ninstances = 1");
        assert!(elsewhere.check().unwrap_err().contains("runs on host"));
        let docker = vec![pool("driver = \"docker\"\nhost = \"b\"\ninstances = 1")];
        assert_eq!(check_all(&docker, &["b"]), Ok(()));
        assert!(check_all(&docker, &[]).unwrap_err().contains("host 'b'"));
        let none = pool("driver = \"process\"\ninstances = 0");
        assert!(none.check().unwrap_err().contains("between 1 and 32"));
        let twice = vec![
            pool("driver = \"process\"\ninstances = 1"),
            pool("driver = \"process\"\ninstances = 3"),
        ];
        assert!(check_all(&twice, &[]).unwrap_err().contains("entry 2"));
    }
}
