//! What clients of a sleeping service need from its backend, kept in
//! `state_dir/services/<name>/asleep.json` when Torpor stops: the
//! backend's greeting (version, capabilities, collation), the baselines
//! of fresh sessions per collation, and the state the service was in.
//!
//! Read back at start, it lets Torpor greet clients and log them in
//! without starting the backend: a restart of Torpor wakes nothing, and
//! the first query does (as after any park). Written when Torpor stops,
//! and as soon as a greeting or a baseline is first learned (by the
//! accounts thread, off the data path), so that a crash keeps it too.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::{json, Value};
use torpor_protocol::Capabilities;
use torpor_replay::state::{Baseline, VarKind};
use torpor_replay::tracking::{ClientTracking, TransactionInfo};

use super::Service;
use crate::backend::BackendInfo;

/// The file of service `name`.
pub fn path(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("services").join(name).join("asleep.json")
}

/// Keeps what `service` knows of its backend; nothing when it never
/// reached it (a fresh service wakes at its first start anyway).
pub fn save(service: &Service, state_dir: &Path) -> std::io::Result<()> {
    let Some(info) = service.cached_backend_info() else {
        return Ok(());
    };
    let baselines: BTreeMap<String, Value> = service
        .baselines
        .read()
        .map(|map| {
            map.iter()
                .map(|(collation, b)| (collation.to_string(), baseline_json(b)))
                .collect()
        })
        .unwrap_or_default();
    let body = json!({
        "state": service.lifecycle.state().name(),
        "server_version": String::from_utf8_lossy(&info.server_version),
        "capabilities": info.capabilities.0,
        "collation": info.collation,
        "baselines": baselines,
    });
    let target = path(state_dir, &service.name);
    // The service's state folder is made when it is first started (its
    // admin secret); without one (a temporary service, or one deleted with
    // its data) there is nothing to keep.
    let Some(folder) = target.parent().filter(|f| f.is_dir()) else {
        return Ok(());
    };
    let temporary = folder.join(".asleep.json.new");
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(serde_json::to_string_pretty(&body)?.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, &target)
}

/// How much `service` knows that [`save`] keeps: whether its greeting
/// is known, and for how many collations a baseline. A change means the
/// file is behind.
pub fn known(service: &Service) -> (bool, usize) {
    (
        service.cached_backend_info().is_some(),
        service.baselines.read().map(|m| m.len()).unwrap_or(0),
    )
}

/// Reads the kept greeting and baselines back into `service`; true when
/// there was a greeting and at least one baseline (logins need both to
/// go without a backend). A file that does not read is ignored: the
/// service then wakes at start, as it did before files were kept.
pub fn restore(service: &Service, state_dir: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path(state_dir, &service.name)) else {
        return false;
    };
    let Ok(body) = serde_json::from_slice::<Value>(&bytes) else {
        return false;
    };
    let (Some(version), Some(capabilities), Some(collation)) = (
        body["server_version"].as_str(),
        body["capabilities"].as_u64(),
        body["collation"]
            .as_u64()
            .and_then(|c| u8::try_from(c).ok()),
    ) else {
        return false;
    };
    let baselines: Vec<(u8, Baseline)> = body["baselines"]
        .as_object()
        .map(|all| {
            all.iter()
                .filter_map(|(collation, b)| Some((collation.parse().ok()?, baseline_of(b)?)))
                .collect()
        })
        .unwrap_or_default();
    if baselines.is_empty() {
        return false;
    }
    if let Ok(mut slot) = service.backend_info.write() {
        *slot = Some(Arc::new(BackendInfo {
            server_version: version.as_bytes().to_vec(),
            capabilities: Capabilities(capabilities),
            collation,
        }));
    }
    if let Ok(mut map) = service.baselines.write() {
        for (collation, baseline) in baselines {
            if let Some(max) = baseline.server_max_connections {
                service.server_max_connections.store(max, Ordering::Release);
            }
            map.insert(collation, Arc::new(baseline));
        }
    }
    true
}

fn baseline_json(baseline: &Baseline) -> Value {
    let variables: BTreeMap<&str, Value> = baseline
        .variables
        .iter()
        .map(|(name, (value, kind))| {
            let kind = match kind {
                VarKind::Number => "number",
                VarKind::Text => "text",
            };
            (name.as_str(), json!([value, kind]))
        })
        .collect();
    let tracking = &baseline.tracking;
    json!({
        "variables": variables,
        "tracking": {
            "session_track_system_variables": tracking.system_variables.join(","),
            "session_track_schema": if tracking.schema { "ON" } else { "OFF" },
            "session_track_state_change": if tracking.state_change { "ON" } else { "OFF" },
            "session_track_transaction_info": match tracking.transaction_info {
                TransactionInfo::Off => "OFF",
                TransactionInfo::State => "STATE",
                TransactionInfo::Characteristics => "CHARACTERISTICS",
            },
        },
        "server_max_connections": baseline.server_max_connections,
    })
}

fn baseline_of(body: &Value) -> Option<Baseline> {
    let mut variables = BTreeMap::new();
    for (name, pair) in body["variables"].as_object()? {
        let value = pair.get(0)?.as_str()?.to_string();
        let kind = match pair.get(1)?.as_str()? {
            "number" => VarKind::Number,
            _ => VarKind::Text,
        };
        variables.insert(name.clone(), (value, kind));
    }
    let mut tracking = ClientTracking::default();
    for (name, value) in body["tracking"].as_object()? {
        tracking.set(name, value.as_str()?);
    }
    Some(Baseline {
        variables,
        tracking,
        server_max_connections: body["server_max_connections"]
            .as_u64()
            .and_then(|m| usize::try_from(m).ok()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_baseline_reads_back_as_it_was() {
        let mut baseline = Baseline::default();
        baseline.variables.insert(
            "sql_mode".into(),
            ("STRICT_TRANS_TABLES".into(), VarKind::Text),
        );
        baseline
            .variables
            .insert("wait_timeout".into(), ("28800".into(), VarKind::Number));
        baseline.tracking.set("session_track_system_variables", "*");
        baseline
            .tracking
            .set("session_track_transaction_info", "STATE");
        baseline.tracking.set("session_track_state_change", "ON");
        baseline.server_max_connections = Some(151);
        let back = baseline_of(&baseline_json(&baseline)).unwrap();
        assert_eq!(back, baseline);
    }
}
