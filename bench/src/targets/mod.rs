//! What the suite measures: named MySQL endpoints, with the process
//! behind each when it is known (for CPU and memory figures).
//!
//! The first target is the baseline every ratio refers to. With
//! `--spawn-mariadb` that is the private server, `direct`; targets from
//! the command line follow in their order, then `haproxy` and `torpor`.

pub mod child;
pub mod haproxy;
pub mod spawn;
pub mod torpor;

use crate::cli::Settings;

/// Who started a target's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Given on the command line; it runs on its own.
    Given,
    /// A private MariaDB the suite started.
    SpawnedMariadb,
    /// HAProxy the suite started.
    SpawnedHaproxy,
    /// Torpor the suite started.
    SpawnedTorpor,
}

/// `host:port`, with an IPv6 host in brackets.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// One endpoint to measure.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Its name in every output.
    pub name: String,
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// The process serving it, when known.
    pub pid: Option<u32>,
    /// Who started it.
    pub origin: Origin,
}

impl Target {
    /// `host:port` (IPv6 hosts in brackets).
    pub fn address(&self) -> String {
        host_port(&self.host, self.port)
    }

    /// Whether this is a Torpor proxy, whose serverless behaviour (wake,
    /// resize, relocation) can be measured. Named `torpor…` or spawned as
    /// Torpor.
    pub fn is_torpor(&self) -> bool {
        self.origin == Origin::SpawnedTorpor || self.name.starts_with("torpor")
    }

    /// `name=host:port (pid N, spawned)` for the log.
    pub fn describe(&self) -> String {
        let mut text = format!("{}={}", self.name, self.address());
        let mut notes = Vec::new();
        if let Some(pid) = self.pid {
            notes.push(format!("pid {pid}"));
        }
        if self.origin != Origin::Given {
            notes.push("spawned".to_string());
        }
        if !notes.is_empty() {
            text.push_str(&format!(" ({})", notes.join(", ")));
        }
        text
    }
}

/// The targets in measuring order, the baseline first.
pub fn assemble(settings: &Settings, spawned: &spawn::Spawned) -> anyhow::Result<Vec<Target>> {
    let mut targets = Vec::new();
    if let Some(mariadb) = &spawned.mariadb {
        let addr = mariadb.addr();
        targets.push(Target {
            name: "direct".to_string(),
            host: addr.ip().to_string(),
            port: addr.port(),
            pid: mariadb.pid(),
            origin: Origin::SpawnedMariadb,
        });
    }
    for given in &settings.targets {
        let pid = settings
            .pids
            .iter()
            .find(|p| p.name == given.name)
            .map(|p| p.pid);
        targets.push(Target {
            name: given.name.clone(),
            host: given.host.clone(),
            port: given.port,
            pid,
            origin: Origin::Given,
        });
    }
    if let Some(haproxy) = &spawned.haproxy {
        targets.push(haproxy.target("haproxy", Origin::SpawnedHaproxy));
    }
    if let Some(torpor) = &spawned.torpor {
        targets.push(torpor.target("torpor", Origin::SpawnedTorpor));
    }
    anyhow::ensure!(!targets.is_empty(), "no targets to measure");
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(name: &str, host: &str, origin: Origin) -> Target {
        Target {
            name: name.into(),
            host: host.into(),
            port: 3306,
            pid: None,
            origin,
        }
    }

    #[test]
    fn addresses_bracket_ipv6_hosts() {
        assert_eq!(
            target("a", "127.0.0.1", Origin::Given).address(),
            "127.0.0.1:3306"
        );
        assert_eq!(target("a", "::1", Origin::Given).address(), "[::1]:3306");
    }

    #[test]
    fn torpor_targets_are_known_by_name_or_origin() {
        assert!(target("torpor", "h", Origin::Given).is_torpor());
        assert!(target("torpor-2", "h", Origin::Given).is_torpor());
        assert!(target("proxy", "h", Origin::SpawnedTorpor).is_torpor());
        assert!(!target("haproxy", "h", Origin::SpawnedHaproxy).is_torpor());
        assert!(!target("direct", "h", Origin::SpawnedMariadb).is_torpor());
    }
}
