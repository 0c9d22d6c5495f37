//! `[services.autoscale]`: how a service's CPU and memory follow its load.

use serde::Deserialize;

/// Autoscaling bounds and steps of one service. Present (even empty), it
/// turns autoscaling on with the defaults below; the service starts at
/// its `cpus` and `memory_mib`, which must lie within the bounds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoscaleConfig {
    /// Off keeps the section but scales nothing (a service held at a
    /// fixed size by an operator).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The fewest CPUs the service is given.
    #[serde(default = "default_min_cpus")]
    pub min_cpus: f64,
    /// The most CPUs the service is given.
    #[serde(default = "default_max_cpus")]
    pub max_cpus: f64,
    /// The least memory, MiB.
    #[serde(default = "default_min_memory_mib")]
    pub min_memory_mib: u64,
    /// The most memory, MiB.
    #[serde(default = "default_max_memory_mib")]
    pub max_memory_mib: u64,
    /// CPUs added or taken in one step.
    #[serde(default = "default_cpu_step")]
    pub cpu_step: f64,
    /// Memory added or taken in one step, MiB.
    #[serde(default = "default_memory_step_mib")]
    pub memory_step_mib: u64,
    /// Milliseconds of CPU use at 90 % of the limit before a step up.
    #[serde(default = "default_scale_up_after_ms")]
    pub scale_up_after_ms: u64,
    /// Seconds of CPU use at or under 20 % of the limit before a step
    /// down.
    #[serde(default = "default_scale_down_after_secs")]
    pub scale_down_after_secs: u64,
    /// After the buffer pool grows, load the pages of its last dump back
    /// in the background (`innodb_buffer_pool_load_now`): hydration. Off
    /// only to measure what it is worth.
    #[serde(default = "yes")]
    pub reload_after_grow: bool,
}

fn yes() -> bool {
    true
}
fn default_min_cpus() -> f64 {
    0.5
}
fn default_max_cpus() -> f64 {
    4.0
}
fn default_min_memory_mib() -> u64 {
    512
}
fn default_max_memory_mib() -> u64 {
    16384
}
fn default_cpu_step() -> f64 {
    0.5
}
fn default_memory_step_mib() -> u64 {
    2048
}
fn default_scale_up_after_ms() -> u64 {
    1000
}
fn default_scale_down_after_secs() -> u64 {
    30
}

impl Default for AutoscaleConfig {
    fn default() -> Self {
        AutoscaleConfig {
            enabled: true,
            min_cpus: default_min_cpus(),
            max_cpus: default_max_cpus(),
            min_memory_mib: default_min_memory_mib(),
            max_memory_mib: default_max_memory_mib(),
            cpu_step: default_cpu_step(),
            memory_step_mib: default_memory_step_mib(),
            scale_up_after_ms: default_scale_up_after_ms(),
            scale_down_after_secs: default_scale_down_after_secs(),
            reload_after_grow: true,
        }
    }
}

impl AutoscaleConfig {
    /// What is wrong with these bounds for a service that starts at
    /// `cpus` and `memory_mib`, in words for the operator.
    pub fn check(&self, cpus: f64, memory_mib: u64) -> Result<(), String> {
        let positive = self.min_cpus > 0.0
            && self.cpu_step > 0.0
            && self.min_memory_mib > 0
            && self.memory_step_mib > 0
            && self.scale_up_after_ms > 0
            && self.scale_down_after_secs > 0;
        if !positive {
            return Err("minimums, steps and windows must be above 0".into());
        }
        if !(self.min_cpus <= cpus && cpus <= self.max_cpus) {
            return Err(format!(
                "cpus = {cpus} lies outside min_cpus..max_cpus ({}..{})",
                self.min_cpus, self.max_cpus
            ));
        }
        if !(self.min_memory_mib <= memory_mib && memory_mib <= self.max_memory_mib) {
            return Err(format!(
                "memory_mib = {memory_mib} lies outside min_memory_mib..max_memory_mib ({}..{})",
                self.min_memory_mib, self.max_memory_mib
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_section_turns_it_on_with_the_defaults() {
        let config: AutoscaleConfig = toml::from_str("").unwrap();
        assert_eq!(config, AutoscaleConfig::default());
        assert!(config.enabled);
        assert_eq!(config.check(1.0, 1024), Ok(()));
    }

    #[test]
    fn a_start_outside_the_bounds_is_refused() {
        let config: AutoscaleConfig =
            toml::from_str("max_cpus = 2.0\nmin_memory_mib = 2048").unwrap();
        assert!(config.check(3.0, 4096).unwrap_err().contains("cpus = 3"));
        assert!(config
            .check(1.0, 1024)
            .unwrap_err()
            .contains("memory_mib = 1024"));
        let zero: AutoscaleConfig = toml::from_str("cpu_step = 0.0").unwrap();
        assert!(zero.check(1.0, 1024).is_err());
        assert!(
            toml::from_str::<AutoscaleConfig>("max_cpu = 2.0").is_err(),
            "typos are refused"
        );
    }

    /// The README's example, as a whole config.
    #[test]
    fn the_readme_example_parses_and_validates() {
        let text = r#"
[[users]]
name = "app"
password = "secret"

[[services]]
name = "shop"
driver = "docker"
cpus = 0.5
memory_mib = 2048
buffer_pool_mib = 1024

[services.autoscale]
min_cpus = 0.5
max_cpus = 4.0
min_memory_mib = 512
max_memory_mib = 16384
cpu_step = 0.5
memory_step_mib = 2048
scale_up_after_ms = 1000
scale_down_after_secs = 30
"#;
        let config = crate::config::Config::from_toml(text, "readme.toml".into()).unwrap();
        config.validate().unwrap();
        let autoscale = config.services[0].autoscale.clone().unwrap();
        assert_eq!(autoscale.max_cpus, 4.0);
        let mut bad = config.clone();
        bad.services[0].cpus = 8.0;
        assert!(bad.validate().unwrap_err().to_string().contains("max_cpus"));
    }
}
