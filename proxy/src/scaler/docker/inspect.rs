//! What the engine says of a container, read into what the driver acts
//! on: its state, id, published address, limits and process.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use bollard::models::{ContainerInspectResponse, ContainerStateStatusEnum, PortBinding};

use super::MARIADB_PORT;

/// The state of the container as the driver acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    Running,
    Paused,
    /// Created, exited: `start` runs it again.
    Stopped,
    /// Restarting, being removed, dead: nothing to do but report it.
    Other,
}

/// What one inspection of the container said.
pub(super) struct Inspected {
    pub(super) id: String,
    pub(super) state: State,
    pub(super) status: String,
    pub(super) address: Option<SocketAddr>,
    pub(super) exit_code: Option<i64>,
    /// The memory limit in bytes; 0 or `None` for none.
    pub(super) memory: Option<i64>,
    /// Its main process on this host, while it runs.
    pub(super) pid: Option<u32>,
    /// The port its server was given on a host's own network
    /// ([`super::engine::PORT_LABEL`]).
    pub(super) port_label: Option<u16>,
    /// What is mounted at its datadir: a volume's name or a host path.
    pub(super) datadir_source: Option<String>,
}

/// What the driver needs from an inspection.
pub(super) fn inspected(response: &ContainerInspectResponse) -> Inspected {
    let state = response.state.as_ref();
    let status = state.and_then(|s| s.status);
    let paused = state.and_then(|s| s.paused).unwrap_or(false);
    let running = state.and_then(|s| s.running).unwrap_or(false);
    let kind = match status {
        // The engine reports a paused container as running too.
        _ if paused => State::Paused,
        Some(ContainerStateStatusEnum::RUNNING) => State::Running,
        Some(ContainerStateStatusEnum::CREATED | ContainerStateStatusEnum::EXITED) => {
            State::Stopped
        }
        Some(_) => State::Other,
        None if running => State::Running,
        None => State::Other,
    };
    let address = response
        .network_settings
        .as_ref()
        .and_then(|settings| settings.ports.as_ref())
        .and_then(|ports| ports.get(MARIADB_PORT))
        .and_then(Option::as_ref)
        .and_then(|bindings| published_address(bindings));
    Inspected {
        id: response.id.clone().unwrap_or_default(),
        state: kind,
        status: status.map_or_else(|| "unknown".to_string(), |s| s.to_string()),
        address,
        exit_code: state.and_then(|s| s.exit_code),
        memory: response.host_config.as_ref().and_then(|h| h.memory),
        pid: state
            .and_then(|s| s.pid)
            .and_then(|pid| u32::try_from(pid).ok()),
        port_label: response
            .config
            .as_ref()
            .and_then(|config| config.labels.as_ref())
            .and_then(|labels| labels.get(super::engine::PORT_LABEL))
            .and_then(|port| port.parse().ok()),
        datadir_source: response
            .mounts
            .iter()
            .flatten()
            .find(|mount| mount.destination.as_deref() == Some(super::DATADIR))
            .and_then(|mount| mount.name.clone().or_else(|| mount.source.clone())),
    }
}

/// The address among the host bindings of the MariaDB port (the host's
/// address it was published on; loopback for an unspecified one).
fn published_address(bindings: &[PortBinding]) -> Option<SocketAddr> {
    bindings.iter().find_map(|binding| {
        let ip: IpAddr = binding.host_ip.as_deref()?.parse().ok()?;
        let port: u16 = binding.host_port.as_deref()?.parse().ok()?;
        // 0.0.0.0 would mean someone published it wider; loopback reaches
        // it all the same.
        let ip = if ip.is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            ip
        };
        (port != 0).then_some(SocketAddr::new(ip, port))
    })
}

/// The short form of a container id, as `docker ps` shows it.
pub(super) fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loopback_binding_is_the_address() {
        let bindings = [
            PortBinding {
                host_ip: Some("::1".into()),
                host_port: Some(String::new()),
            },
            PortBinding {
                host_ip: Some("127.0.0.1".into()),
                host_port: Some("49153".into()),
            },
        ];
        assert_eq!(
            published_address(&bindings),
            Some("127.0.0.1:49153".parse().unwrap())
        );
        assert_eq!(published_address(&[]), None);
    }

    #[test]
    fn short_ids_never_panic() {
        assert_eq!(short("0123456789abcdef"), "0123456789ab");
        assert_eq!(short("abc"), "abc");
    }
}
