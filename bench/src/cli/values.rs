//! Value parsers for the command line's flags: `NAME=HOST:PORT[,admin=…]`,
//! `NAME=HOST:PORT`, `NAME=PID` and durations. They check shapes only.

use std::time::Duration;

use anyhow::{bail, Context};

use super::{AdminArg, PidArg, TargetArg};

pub(super) fn parse_target(text: &str) -> anyhow::Result<TargetArg> {
    let (name, rest) = text
        .split_once('=')
        .context("expected NAME=HOST:PORT, e.g. direct=127.0.0.1:3306")?;
    check_name(name)?;
    let mut parts = rest.split(',');
    let address = parts.next().unwrap_or_default();
    let (host, port) =
        parse_address(address).context("expected HOST:PORT after the name, e.g. 127.0.0.1:3306")?;
    let mut admin = None;
    for option in parts {
        match option.split_once('=') {
            Some(("admin", address)) => {
                let (host, port) = parse_address(address)
                    .context("expected admin=HOST:PORT, e.g. admin=127.0.0.1:6034")?;
                admin = Some(crate::targets::host_port(&host, port));
            }
            _ => bail!("unknown target option {option:?} (known: admin=HOST:PORT)"),
        }
    }
    Ok(TargetArg {
        name: name.to_string(),
        host,
        port,
        admin,
    })
}

pub(super) fn parse_admin(text: &str) -> anyhow::Result<AdminArg> {
    let (name, address) = text
        .split_once('=')
        .context("expected NAME=HOST:PORT, e.g. torpor=127.0.0.1:6034")?;
    check_name(name)?;
    let (host, port) = parse_address(address)?;
    Ok(AdminArg {
        name: name.to_string(),
        address: crate::targets::host_port(&host, port),
    })
}

/// `HOST:PORT` (IPv6 hosts in brackets) into host and port.
pub(super) fn parse_address(address: &str) -> anyhow::Result<(String, u16)> {
    let (host, port) = address
        .rsplit_once(':')
        .with_context(|| format!("{address:?} is not HOST:PORT"))?;
    // `[::1]:3306` names an IPv6 host; the brackets are not part of it.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        bail!("the host is empty");
    }
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|port| *port != 0)
        .with_context(|| format!("{port:?} is not a TCP port"))?;
    Ok((host.to_string(), port))
}

pub(super) fn parse_pid(text: &str) -> anyhow::Result<PidArg> {
    let (name, pid) = text
        .split_once('=')
        .context("expected NAME=PID, e.g. torpor=4242")?;
    check_name(name)?;
    let pid = pid
        .parse::<u32>()
        .ok()
        .filter(|pid| *pid != 0)
        .with_context(|| format!("{pid:?} is not a process id"))?;
    Ok(PidArg {
        name: name.to_string(),
        pid,
    })
}

/// Names end up in file names and table headers: keep them plain.
pub(super) fn check_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!("target name {name:?} must be letters, digits, '-' or '_'");
    }
    Ok(())
}

pub(super) fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    humantime::parse_duration(text)
        .with_context(|| format!("{text:?} is not a duration such as 3s or 500ms"))
}
