//! `[services.storage]`: a service's data on a volume of its own that
//! Torpor grows as it fills.

use serde::Deserialize;

/// The smallest volume: XFS (see [`crate::storage::volume`]) refuses to
/// make a filesystem under 300 MiB.
pub const MIN_VOLUME_MIB: u64 = 300;

/// How big a service's data volume starts, how it grows and where it
/// stops. When it is filled past its threshold (see
/// [`crate::storage::policy`]) it grows by `step_mib`, never past
/// `max_mib`; at the maximum the server's own "table is full" error
/// reaches the writer.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// The volume's size when it is made, MiB (at least 300).
    #[serde(default = "default_initial_mib")]
    pub initial_mib: u64,
    /// What one grow adds, MiB.
    #[serde(default = "default_step_mib")]
    pub step_mib: u64,
    /// The most the volume grows to, MiB.
    #[serde(default = "default_max_mib")]
    pub max_mib: u64,
}

fn default_initial_mib() -> u64 {
    1024
}
fn default_step_mib() -> u64 {
    1024
}
fn default_max_mib() -> u64 {
    10 * 1024
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            initial_mib: default_initial_mib(),
            step_mib: default_step_mib(),
            max_mib: default_max_mib(),
        }
    }
}

impl StorageConfig {
    /// What is wrong with these sizes, in words for the operator.
    pub fn check(&self) -> Result<(), String> {
        if self.initial_mib < MIN_VOLUME_MIB {
            return Err(format!(
                "initial_mib = {} is under {MIN_VOLUME_MIB} (XFS's smallest filesystem)",
                self.initial_mib
            ));
        }
        if self.step_mib == 0 {
            return Err("step_mib must be above 0".into());
        }
        if self.max_mib < self.initial_mib {
            return Err(format!(
                "max_mib = {} is under initial_mib = {}",
                self.max_mib, self.initial_mib
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_checked() {
        assert!(StorageConfig::default().check().is_ok());
        let small = StorageConfig {
            initial_mib: 100,
            ..StorageConfig::default()
        };
        assert!(small.check().unwrap_err().contains("300"));
        let upside_down = StorageConfig {
            initial_mib: 2048,
            max_mib: 1024,
            ..StorageConfig::default()
        };
        assert!(upside_down.check().is_err());
        let no_step = StorageConfig {
            step_mib: 0,
            ..StorageConfig::default()
        };
        assert!(no_step.check().is_err());
    }
}
