//! Created services kept in `state_dir/provisioned/<name>.json`: the body
//! they were created with (accounts as hashes only), written whole before
//! the service starts and removed when it is deleted.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::spec::ServiceSpec;

/// The folder of the kept services.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("provisioned")
}

/// The file of service `name`.
pub fn path(state_dir: &Path, name: &str) -> PathBuf {
    dir(state_dir).join(format!("{name}.json"))
}

/// Keeps `spec` (mode 0600: it holds password hashes), through a
/// temporary file renamed into place so that a crash leaves the old file
/// or the new one, never half of one.
pub fn save(state_dir: &Path, spec: &ServiceSpec) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::OpenOptionsExt;
    let folder = dir(state_dir);
    std::fs::create_dir_all(&folder)?;
    let target = path(state_dir, &spec.name);
    let temporary = folder.join(format!(".{}.json.new", spec.name));
    let text = serde_json::to_string_pretty(&to_json(spec))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, &target)?;
    Ok(target)
}

/// Removes the file of service `name` (none is fine).
pub fn remove(state_dir: &Path, name: &str) -> std::io::Result<()> {
    match std::fs::remove_file(path(state_dir, name)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Every kept service, in name order, each read or why not.
pub fn load_all(state_dir: &Path) -> Vec<(PathBuf, Result<ServiceSpec, String>)> {
    let Ok(entries) = std::fs::read_dir(dir(state_dir)) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "json")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let spec = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| ServiceSpec::parse(&bytes));
            (path, spec)
        })
        .collect()
}

/// The spec as the body that would create it again.
fn to_json(spec: &ServiceSpec) -> serde_json::Value {
    let mut body = serde_json::json!({
        "name": spec.name,
        "driver": spec.driver.name(),
        "hosts": spec.hosts,
        "accounts": spec.accounts.iter().map(|a| serde_json::json!({
            "name": a.name,
            "password_hash": a.password_hash,
            "grants": a.grants,
        })).collect::<Vec<_>>(),
    });
    let optional = [
        ("image", spec.image.clone().map(serde_json::Value::from)),
        ("cpus", spec.cpus.map(serde_json::Value::from)),
        ("memory_mib", spec.memory_mib.map(serde_json::Value::from)),
        (
            "buffer_pool_mib",
            spec.buffer_pool_mib.map(serde_json::Value::from),
        ),
        (
            "suspended_buffer_pool_mib",
            spec.suspended_buffer_pool_mib.map(serde_json::Value::from),
        ),
        (
            "suspend_after_secs",
            spec.suspend_after_secs.map(serde_json::Value::from),
        ),
        (
            "park_after_secs",
            spec.park_after_secs.map(serde_json::Value::from),
        ),
        (
            "wake_timeout_secs",
            spec.wake_timeout_secs.map(serde_json::Value::from),
        ),
        ("autoscale", spec.autoscale.as_ref().map(autoscale_json)),
        (
            "storage",
            spec.storage
                .as_ref()
                .and_then(|s| serde_json::to_value(s).ok()),
        ),
    ];
    if let Some(object) = body.as_object_mut() {
        for (key, value) in optional {
            if let Some(value) = value {
                object.insert(key.to_string(), value);
            }
        }
    }
    body
}

fn autoscale_json(a: &crate::config::autoscale::AutoscaleConfig) -> serde_json::Value {
    serde_json::json!({
        "enabled": a.enabled,
        "min_cpus": a.min_cpus,
        "max_cpus": a.max_cpus,
        "min_memory_mib": a.min_memory_mib,
        "max_memory_mib": a.max_memory_mib,
        "cpu_step": a.cpu_step,
        "memory_step_mib": a.memory_step_mib,
        "scale_up_after_ms": a.scale_up_after_ms,
        "scale_down_after_secs": a.scale_down_after_secs,
        "reload_after_grow": a.reload_after_grow,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_service_reads_back_as_it_was_given() {
        let dir = tempfile::tempdir().unwrap();
        let spec = ServiceSpec::parse(
            br#"{"name": "shop", "driver": "process", "cpus": 2.0, "memory_mib": 2048,
                 "suspend_after_secs": 3, "autoscale": {"max_cpus": 4.0},
                 "storage": {"initial_mib": 320, "max_mib": 2048},
                 "accounts": [{"name": "app", "password_hash": "*14E65567ABDB5135D0CFD9A70B3032C179A49EE7",
                               "grants": ["SELECT ON shop.*"]}]}"#,
        )
        .unwrap();
        save(dir.path(), &spec).unwrap();
        let loaded = load_all(dir.path());
        assert_eq!(loaded.len(), 1);
        let back = loaded[0].1.as_ref().unwrap();
        assert_eq!(back.service_config().cpus, 2.0);
        assert_eq!(back.service_config().suspend_after_secs, 3);
        assert_eq!(back.autoscale, spec.autoscale);
        assert_eq!(back.storage, spec.storage);
        assert_eq!(back.storage.as_ref().map(|s| s.max_mib), Some(2048));
        assert_eq!(back.accounts[0].grants, spec.accounts[0].grants);
        remove(dir.path(), "shop").unwrap();
        assert!(load_all(dir.path()).is_empty());
        remove(dir.path(), "shop").unwrap();
    }
}
