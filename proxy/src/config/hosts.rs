//! `[[hosts]]`: the Docker Engines services run on, and where their
//! containers are reached.
//!
//! Without any entry there is one host, `local`: the engine the Docker
//! client's defaults name (`DOCKER_HOST`, else `/var/run/docker.sock`),
//! with containers published on loopback, and this machine for `process`
//! services. Each entry adds a host (or, named `local`, describes that
//! one). An entry with `base_dir` is a host for `process` services: a
//! directory (another disk) their datadirs move to.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use serde::Deserialize;

/// The name of the host whose engine the Docker client's defaults name.
pub const LOCAL_HOST: &str = "local";

/// How a host's containers are reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostNetwork {
    /// On the engine's bridge, MariaDB's port published on the host's
    /// `address` (any free port).
    #[default]
    Publish,
    /// On the host's own network (`--network host`): each server listens
    /// on a port of its own on `address`, which Torpor chooses. For
    /// engines without a bridge or iptables.
    Host,
}

/// One Docker Engine services may run on.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// The host's name, as services' `runs_on` and the admin API say it.
    pub name: String,
    /// The engine's API: `unix:///path/docker.sock` or `tcp://host:port`
    /// (TLS with `tls_ca`, `tls_cert` and `tls_key`, as `docker
    /// --tlsverify` takes them). Absent: the Docker client's defaults.
    #[serde(default)]
    pub engine: Option<String>,
    /// The CA that signed the engine's certificate (TCP).
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// Torpor's client certificate for the engine (TCP).
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// Its private key (TCP).
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Where Torpor, and servers on other hosts replicating during a
    /// relocation, reach this host's containers. Loopback (the default)
    /// only serves a host on Torpor's own machine, and its services
    /// cannot be replicated from other hosts.
    #[serde(default = "loopback")]
    pub address: IpAddr,
    /// How containers are reached there.
    #[serde(default)]
    pub network: HostNetwork,
    /// Memory services may be given there, MiB; default: what the engine
    /// reports of its machine.
    #[serde(default)]
    pub memory_mib: Option<u64>,
    /// The share of `memory_mib` assigned to services above which Torpor
    /// moves this host's least-used services away.
    #[serde(default = "default_watermark")]
    pub watermark: f64,
    /// A host for `process` services: the directory their datadirs are
    /// made in when they move here (a `mariadbd` on this machine, its
    /// data on another disk). `engine`, `address` and `network` do not
    /// apply.
    #[serde(default)]
    pub base_dir: Option<PathBuf>,
}

fn loopback() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

fn default_watermark() -> f64 {
    0.7
}

impl HostConfig {
    /// The default host: the local engine, published on loopback.
    pub fn local() -> HostConfig {
        HostConfig {
            name: LOCAL_HOST.to_string(),
            engine: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            address: loopback(),
            network: HostNetwork::Publish,
            memory_mib: None,
            watermark: default_watermark(),
            base_dir: None,
        }
    }

    /// Whether services of driver `kind` (`docker`, `process`) run here:
    /// `local` takes both, an entry with `base_dir` process services,
    /// any other docker ones.
    pub fn takes(&self, kind: &str) -> bool {
        match (self.name == LOCAL_HOST, self.base_dir.is_some()) {
            (true, _) => true,
            (false, true) => kind == "process",
            (false, false) => kind == "docker",
        }
    }

    /// Whether the entry makes sense on its own; why not.
    pub fn check(&self) -> Result<(), String> {
        let name = &self.name;
        let valid_name = !name.is_empty()
            && name.len() <= 32
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !valid_name {
            return Err(format!(
                "host '{name}': a name is 1 to 32 letters, digits, '-', '_' or '.'"
            ));
        }
        if let Some(engine) = &self.engine {
            let tcp = engine.starts_with("tcp://");
            if !(tcp || engine.starts_with("unix:///")) {
                return Err(format!(
                    "host '{name}': engine '{engine}' is neither unix:///PATH nor tcp://HOST:PORT"
                ));
            }
            let tls = [&self.tls_ca, &self.tls_cert, &self.tls_key];
            let given = tls.iter().filter(|file| file.is_some()).count();
            if given != 0 && (!tcp || given != 3) {
                return Err(format!(
                    "host '{name}': TLS to the engine needs a tcp:// engine and all of tls_ca, tls_cert and tls_key"
                ));
            }
        } else if self.tls_ca.is_some() || self.tls_cert.is_some() || self.tls_key.is_some() {
            return Err(format!(
                "host '{name}': tls_ca, tls_cert and tls_key are for a tcp:// engine"
            ));
        }
        if let Some(dir) = &self.base_dir {
            if self.engine.is_some() || !dir.is_absolute() {
                return Err(format!(
                    "host '{name}': base_dir is an absolute directory for process services, without an engine"
                ));
            }
        }
        if !(self.watermark > 0.0 && self.watermark <= 1.0) {
            return Err(format!(
                "host '{name}': watermark {} is not in (0, 1]",
                self.watermark
            ));
        }
        if self.address.is_unspecified() {
            return Err(format!(
                "host '{name}': address {} reaches nothing; give the host's own",
                self.address
            ));
        }
        Ok(())
    }
}

/// The hosts of a config: its entries, with `local` first when no entry
/// describes it.
pub fn with_local(hosts: &[HostConfig]) -> Vec<HostConfig> {
    let mut all = Vec::with_capacity(hosts.len() + 1);
    if !hosts.iter().any(|host| host.name == LOCAL_HOST) {
        all.push(HostConfig::local());
    }
    all.extend(hosts.iter().cloned());
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(toml_text: &str) -> HostConfig {
        toml::from_str(toml_text).expect("a host entry")
    }

    #[test]
    fn a_host_takes_its_defaults() {
        let entry = host("name = 'b'\nengine = 'unix:///run/b/docker.sock'\naddress = '10.0.0.2'\nnetwork = 'host'");
        assert_eq!(entry.check(), Ok(()));
        assert_eq!(entry.network, HostNetwork::Host);
        assert_eq!(entry.watermark, 0.7);
        assert_eq!(entry.memory_mib, None);
        let all = with_local(&[entry]);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0], HostConfig::local());
    }

    #[test]
    fn bad_entries_say_why() {
        let cases = [
            ("name = 'a b'", "a name is"),
            ("name = 'b'\nengine = 'http://x'", "neither unix"),
            ("name = 'b'\ntls_ca = '/ca.pem'", "for a tcp:// engine"),
            (
                "name = 'b'\nengine = 'tcp://x:2376'\ntls_ca = '/ca.pem'",
                "all of tls_ca",
            ),
            ("name = 'b'\nwatermark = 1.5", "watermark"),
            ("name = 'b'\naddress = '0.0.0.0'", "reaches nothing"),
            ("name = 'b'\nbase_dir = 'relative'", "absolute directory"),
            (
                "name = 'b'\nbase_dir = '/d'\nengine = 'unix:///s'",
                "without an engine",
            ),
        ];
        for (text, why) in cases {
            let error = host(text).check().expect_err(text);
            assert!(error.contains(why), "{text}: {error}");
        }
    }
}
