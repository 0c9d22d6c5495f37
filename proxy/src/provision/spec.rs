//! What `POST /services` takes: a service as a `[[services]]` entry
//! describes it, with its accounts as `mysql_native_password` hashes
//! (never a plaintext password: the body is kept in `state_dir`).

use serde::Deserialize;

use crate::config::autoscale::AutoscaleConfig;
use crate::config::hosts::HostConfig;
use crate::config::storage::StorageConfig;
use crate::config::{Config, ConfigError, DriverKind, ServiceConfig, UserConfig};
use crate::scaler::process::{self, Account};

/// A service to create. Keys left out take the config file's defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// The service's name (letters, digits, `-`, `_`).
    pub name: String,
    /// `process` or `docker` (a static backend is the config file's).
    pub driver: DriverKind,
    /// Server names (SNI) that choose this service.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// `docker`: the image.
    #[serde(default)]
    pub image: Option<String>,
    /// CPUs the backend may use.
    #[serde(default)]
    pub cpus: Option<f64>,
    /// Memory limit in MiB.
    #[serde(default)]
    pub memory_mib: Option<u64>,
    /// InnoDB buffer pool while active, in MiB.
    #[serde(default)]
    pub buffer_pool_mib: Option<u64>,
    /// InnoDB buffer pool while suspended, in MiB.
    #[serde(default)]
    pub suspended_buffer_pool_mib: Option<u64>,
    /// Autoscaling bounds and steps, as `[services.autoscale]`.
    #[serde(default)]
    pub autoscale: Option<AutoscaleConfig>,
    /// A data volume that grows, as `[services.storage]` (`process`).
    #[serde(default)]
    pub storage: Option<StorageConfig>,
    /// Seconds idle before a suspend; 0 never.
    #[serde(default)]
    pub suspend_after_secs: Option<u64>,
    /// Seconds suspended before parking; 0 never.
    #[serde(default)]
    pub park_after_secs: Option<u64>,
    /// Seconds a query waits for a wake.
    #[serde(default)]
    pub wake_timeout_secs: Option<u64>,
    /// The accounts clients log in as (at least one).
    pub accounts: Vec<AccountSpec>,
    /// `docker`: the `[[hosts]]` entry to run on; left out, the host
    /// with the most free memory, kept with the service once chosen.
    #[serde(default)]
    pub runs_on: Option<String>,
}

/// One account of a created service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSpec {
    /// User name.
    pub name: String,
    /// `*` and 40 hex digits, as `SELECT PASSWORD('…')` shows it.
    pub password_hash: String,
    /// What the account may do on the backend, each `PRIVILEGES ON
    /// OBJECT`; default `ALL PRIVILEGES ON test.*`.
    #[serde(default)]
    pub grants: Option<Vec<String>>,
}

impl ServiceSpec {
    /// Reads a request body (or a kept file); the error says what is
    /// wrong, in serde's words (the key, the line and column).
    pub fn parse(body: &[u8]) -> Result<ServiceSpec, String> {
        serde_json::from_slice(body).map_err(|e| format!("the body is not a service: {e}"))
    }

    /// The service as a `[[services]]` entry (its `users` are its
    /// accounts' names).
    pub fn service_config(&self) -> ServiceConfig {
        let mut service = ServiceConfig::new(&self.name, self.driver);
        service.hosts = self.hosts.clone();
        service.users = self.accounts.iter().map(|a| a.name.clone()).collect();
        if let Some(image) = &self.image {
            service.image = image.clone();
        }
        macro_rules! given {
            ($($key:ident),*) => { $(if let Some(value) = self.$key { service.$key = value; })* };
        }
        given!(
            cpus,
            memory_mib,
            buffer_pool_mib,
            suspended_buffer_pool_mib,
            suspend_after_secs,
            park_after_secs,
            wake_timeout_secs
        );
        service.autoscale = self.autoscale.clone();
        service.storage = self.storage.clone();
        service.runs_on = self.runs_on.clone();
        service
    }

    /// The accounts as `[[users]]` entries (what logins check).
    pub fn users(&self) -> Vec<UserConfig> {
        self.accounts
            .iter()
            .map(|a| UserConfig {
                name: a.name.clone(),
                password: None,
                password_hash: Some(a.password_hash.clone()),
                grants: a.grants.clone(),
            })
            .collect()
    }

    /// The accounts to create on the backend.
    pub fn backend_accounts(&self) -> Vec<Account> {
        self.accounts
            .iter()
            .map(|a| Account {
                user: a.name.clone(),
                password: a.password_hash.clone(),
                grants: a.grants.clone().unwrap_or_else(process::default_grants),
            })
            .collect()
    }

    /// Checks it as the config file's loader would check the same
    /// `[[services]]` entry and `[[users]]` beside the config's `hosts`,
    /// and what is particular to a created service.
    pub fn validate(&self, hosts: &[HostConfig]) -> Result<(), ConfigError> {
        let invalid = |why: String| Err(ConfigError::Invalid(why));
        if self.driver == DriverKind::Static {
            return invalid(format!(
                "service '{}': driver must be process or docker (a static backend belongs in the config file)",
                self.name
            ));
        }
        if self.accounts.is_empty() {
            return invalid(format!(
                "service '{}': give at least one account (name and password_hash)",
                self.name
            ));
        }
        let mut names = std::collections::HashSet::new();
        for account in &self.accounts {
            if account.name.is_empty() || !names.insert(&account.name) {
                return invalid(format!(
                    "service '{}': account '{}' is empty or given twice",
                    self.name, account.name
                ));
            }
        }
        let alone = Config {
            services: vec![self.service_config()],
            users: self.users(),
            hosts: hosts.to_vec(),
            ..Config::default()
        };
        alone.validate()?;
        // The hashes are read as logins will read them.
        crate::users::UserStore::from_config(&alone.users, |_| vec![0])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "*14E65567ABDB5135D0CFD9A70B3032C179A49EE7";

    fn body(extra: &str) -> String {
        format!(
            r#"{{"name": "shop", "driver": "process", {extra} "accounts": [{{"name": "app", "password_hash": "{HASH}"}}]}}"#
        )
    }

    #[test]
    fn a_minimal_body_takes_the_config_defaults() {
        let spec = ServiceSpec::parse(body("").as_bytes()).unwrap();
        spec.validate(&[]).unwrap();
        let service = spec.service_config();
        let defaults = ServiceConfig::new("shop", DriverKind::Process);
        assert_eq!(service.users, ["app"]);
        assert_eq!(service.suspend_after_secs, defaults.suspend_after_secs);
        assert_eq!(service.buffer_pool_mib, defaults.buffer_pool_mib);
        assert_eq!(spec.backend_accounts()[0].grants, process::default_grants());
    }

    #[test]
    fn runs_on_is_checked_against_the_configs_hosts() {
        let far = HostConfig {
            name: "far".into(),
            engine: Some("tcp://10.0.0.2:2375".into()),
            ..HostConfig::local()
        };
        let docker = |extra: &str| {
            let text = body(extra).replace("\"process\"", "\"docker\"");
            ServiceSpec::parse(text.as_bytes()).unwrap()
        };
        let placed = docker(r#""runs_on": "far","#);
        placed.validate(std::slice::from_ref(&far)).unwrap();
        assert!(placed.validate(&[]).is_err(), "no such host");
        let stored = docker(r#""runs_on": "far", "storage": {"initial_mib": 512},"#);
        let err = stored
            .validate(std::slice::from_ref(&far))
            .unwrap_err()
            .to_string();
        assert!(err.contains("local Docker Engine"), "{err}");
    }

    #[test]
    fn given_keys_are_used() {
        let spec = ServiceSpec::parse(
            body(r#""suspend_after_secs": 2, "park_after_secs": 0, "cpus": 2.0, "memory_mib": 2048,"#)
                .as_bytes(),
        )
        .unwrap();
        spec.validate(&[]).unwrap();
        let service = spec.service_config();
        assert_eq!(service.suspend_after_secs, 2);
        assert_eq!(service.park_after_secs, 0);
        assert_eq!(service.memory_mib, 2048);
        let grows = ServiceSpec::parse(
            body(r#""storage": {"initial_mib": 512, "step_mib": 256, "max_mib": 4096},"#)
                .as_bytes(),
        )
        .unwrap();
        grows.validate(&[]).unwrap();
        let storage = grows.service_config().storage.unwrap();
        assert_eq!(
            (storage.initial_mib, storage.step_mib, storage.max_mib),
            (512, 256, 4096)
        );
    }

    #[test]
    fn nonsense_is_refused_with_a_reason() {
        for (bad, says) in [
            (r#"{"name": "x"}"#.to_string(), "missing field"),
            (body(r#""colour": "red","#), "unknown field `colour`"),
            ("not json".to_string(), "the body is not a service"),
            (body(r#""driver2": 1,"#), "unknown field"),
        ] {
            let err = ServiceSpec::parse(bad.as_bytes()).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
        for (bad, says) in [
            (body("").replace("shop", "sh op"), "service name"),
            (body("").replace(HASH, "*00"), "user 'app'"),
            (body("").replace("process", "static"), "driver must be"),
            (
                body(r#""autoscale": {"min_cpus": 4.0, "max_cpus": 1.0},"#),
                "autoscale",
            ),
            (
                body(r#""storage": {"initial_mib": 100},"#),
                "[services.storage]: initial_mib = 100 is under 300",
            ),
        ] {
            let spec = ServiceSpec::parse(bad.as_bytes()).unwrap();
            let err = spec.validate(&[]).unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
        let none =
            ServiceSpec::parse(br#"{"name": "a", "driver": "process", "accounts": []}"#).unwrap();
        assert!(none.validate(&[]).is_err());
    }
}
