//! What the suite measures: named MySQL endpoints, with the process
//! behind each when it is known (for CPU and memory figures).
//!
//! The first target is the baseline every ratio refers to. With
//! `--spawn-mariadb` that is the private server, `direct`; targets from
//! the command line follow in their order, then `haproxy`, `torpor`, the
//! `torpor-sizeN` of `--spawn-torpor-pool-size`, `haproxy-socket` and
//! `torpor-socket` (`--spawn-socket`), `floor`,
//! `torpor-serverless`, `torpor-autoscale` and the `torpor-poolN` of
//! `--spawn-torpor-pool`.
//!
//! A Torpor target may have an admin address (its admin API): the
//! serverless workloads need one to suspend and park the service.

pub mod autoscale;
pub mod child;
pub mod floor;
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
    /// Torpor the suite started in front of the baseline (`--backend`):
    /// the data path, with no service it can suspend.
    SpawnedTorpor,
    /// HAProxy the suite started in front of the spawned MariaDB's Unix
    /// socket (`--spawn-socket`).
    SpawnedHaproxySocket,
    /// Torpor the suite started in front of the spawned MariaDB's Unix
    /// socket (`--spawn-socket`): the data path, like `SpawnedTorpor`.
    SpawnedTorporSocket,
    /// The byte forwarder (`torpor-bench floor-proxy`) in front of the
    /// baseline (`--spawn-floor`).
    SpawnedFloor,
    /// Torpor the suite started in front of the baseline with one worker
    /// and a pool of this many backend connections
    /// (`--spawn-torpor-pool N`), so that sessions share connections.
    SpawnedTorporPool(u32),
    /// Torpor the suite started in front of the baseline as the plain
    /// `SpawnedTorpor` plus `--pool-size` this many
    /// (`--spawn-torpor-pool-size N`): sessions share that many backend
    /// connections before more are opened.
    SpawnedTorporPoolSize(u32),
    /// Torpor the suite started with its own MariaDB (`--spawn-mariadb`,
    /// the `process` driver) and its admin API: for the serverless
    /// workloads only.
    SpawnedTorporServerless,
    /// Torpor the suite started with one autoscaled MariaDB container
    /// (the `docker` driver) and its admin API: for the serverless
    /// workloads only (`autoscale` above all).
    SpawnedTorporAutoscale,
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
    /// Torpor's admin API, `host:port`, when known.
    pub admin: Option<String>,
    /// Connect over TLS, verifying the server's certificate against this
    /// CA file (`--spawn-tls`); `None`: plain.
    pub tls_ca: Option<std::path::PathBuf>,
}

impl Target {
    /// `host:port` (IPv6 hosts in brackets).
    pub fn address(&self) -> String {
        host_port(&self.host, self.port)
    }

    /// Whether this is a Torpor proxy, whose serverless behaviour (wake,
    /// resize, relocation) can be measured. Named `torpor…`, spawned as
    /// Torpor, or given an admin address.
    pub fn is_torpor(&self) -> bool {
        matches!(
            self.origin,
            Origin::SpawnedTorpor
                | Origin::SpawnedTorporSocket
                | Origin::SpawnedTorporServerless
                | Origin::SpawnedTorporAutoscale
                | Origin::SpawnedTorporPool(_)
                | Origin::SpawnedTorporPoolSize(_)
        ) || self.admin.is_some()
            || self.name.starts_with("torpor")
    }

    /// Whether only the serverless workloads run here: the spawned
    /// serverless Torpor fronts a MariaDB of its own, not the database
    /// the other targets share, so its data-path figures would compare
    /// different servers.
    pub fn serverless_only(&self) -> bool {
        matches!(
            self.origin,
            Origin::SpawnedTorporServerless | Origin::SpawnedTorporAutoscale
        )
    }

    /// `name=host:port (pid N, spawned)` for the log.
    pub fn describe(&self) -> String {
        let mut text = format!("{}={}", self.name, self.address());
        let mut notes = Vec::new();
        if let Some(pid) = self.pid {
            notes.push(format!("pid {pid}"));
        }
        if let Some(admin) = &self.admin {
            notes.push(format!("admin {admin}"));
        }
        if self.tls_ca.is_some() {
            notes.push("TLS".to_string());
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
            admin: None,
            tls_ca: None,
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
            admin: given.admin.clone(),
            tls_ca: None,
        });
    }
    if let Some(haproxy) = &spawned.haproxy {
        targets.push(haproxy.target("haproxy", Origin::SpawnedHaproxy));
    }
    if let Some(torpor) = &spawned.torpor {
        targets.push(torpor.target("torpor", Origin::SpawnedTorpor));
    }
    for (size, child) in &spawned.torpor_pool_sizes {
        targets.push(child.target(
            &crate::cli::pool_size_target_name(*size),
            Origin::SpawnedTorporPoolSize(*size),
        ));
    }
    if let Some(haproxy) = &spawned.haproxy_socket {
        targets.push(haproxy.target("haproxy-socket", Origin::SpawnedHaproxySocket));
    }
    if let Some(torpor) = &spawned.torpor_socket {
        targets.push(torpor.target("torpor-socket", Origin::SpawnedTorporSocket));
    }
    if let (Some(ca), Some(direct), Some(torpor)) = (
        spawned.tls_ca(),
        targets
            .first()
            .filter(|t| t.origin == Origin::SpawnedMariadb),
        targets.iter().find(|t| t.origin == Origin::SpawnedTorpor),
    ) {
        // The same processes, over TLS: what TLS costs each.
        let twin = |from: &Target, name: &str| Target {
            name: name.to_string(),
            tls_ca: Some(ca.to_path_buf()),
            ..from.clone()
        };
        let (direct, torpor) = (twin(direct, "direct-tls"), twin(torpor, "torpor-tls"));
        targets.push(direct);
        targets.push(torpor);
    }
    if let Some(floor) = &spawned.floor {
        targets.push(floor.target("floor", Origin::SpawnedFloor));
    }
    if let Some(serverless) = &spawned.torpor_serverless {
        let mut target = serverless
            .child
            .target("torpor-serverless", Origin::SpawnedTorporServerless);
        target.admin = Some(serverless.admin.to_string());
        targets.push(target);
    }
    if let Some(autoscale) = &spawned.torpor_autoscale {
        let mut target = autoscale
            .child
            .target("torpor-autoscale", Origin::SpawnedTorporAutoscale);
        target.admin = Some(autoscale.admin.to_string());
        targets.push(target);
    }
    for (bound, child) in &spawned.torpor_pools {
        targets.push(child.target(
            &crate::cli::pool_target_name(*bound),
            Origin::SpawnedTorporPool(*bound),
        ));
    }
    anyhow::ensure!(!targets.is_empty(), "no targets to measure");
    // The command line checked names for clashes in its own order; a
    // spawned target left out or moved here would make that check, and
    // the documented order, untrue.
    let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
    anyhow::ensure!(
        names == settings.names,
        "internal: targets {names:?} were assembled, {:?} were planned",
        settings.names
    );
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
            admin: None,
            tls_ca: None,
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
        assert!(!target("haproxy-socket", "h", Origin::SpawnedHaproxySocket).is_torpor());
        assert!(!target("floor", "h", Origin::SpawnedFloor).is_torpor());
        let socket = target("torpor-socket", "h", Origin::SpawnedTorporSocket);
        assert!(socket.is_torpor() && !socket.serverless_only());
        assert!(target("p", "h", Origin::SpawnedTorporPool(8)).is_torpor());
        let size = target("s", "h", Origin::SpawnedTorporPoolSize(16));
        assert!(size.is_torpor() && !size.serverless_only());
        assert!(!target("direct", "h", Origin::SpawnedMariadb).is_torpor());
        let mut proxy = target("proxy", "h", Origin::Given);
        assert!(!proxy.is_torpor());
        proxy.admin = Some("h:6034".into());
        assert!(proxy.is_torpor(), "an admin address makes it Torpor");
    }

    #[test]
    fn only_the_spawned_serverless_torpor_is_serverless_only() {
        assert!(target("t", "h", Origin::SpawnedTorporServerless).serverless_only());
        assert!(target("t", "h", Origin::SpawnedTorporServerless).is_torpor());
        assert!(!target("torpor", "h", Origin::SpawnedTorpor).serverless_only());
        assert!(!target("torpor", "h", Origin::Given).serverless_only());
        let autoscale = target("t", "h", Origin::SpawnedTorporAutoscale);
        assert!(autoscale.serverless_only() && autoscale.is_torpor());
    }

    #[test]
    fn descriptions_name_pid_and_admin_address() {
        let mut t = target("torpor", "127.0.0.1", Origin::SpawnedTorporServerless);
        t.pid = Some(7);
        t.admin = Some("127.0.0.1:6034".into());
        assert_eq!(
            t.describe(),
            "torpor=127.0.0.1:3306 (pid 7, admin 127.0.0.1:6034, spawned)"
        );
    }
}
