//! The accounts clients may log in as, with what the proxy stores for each:
//! the `mysql_native_password` hash, never a plaintext password.

use std::collections::HashMap;

use torpor_protocol::auth::StoredPassword;

use crate::config::{ConfigError, UserConfig};

/// User name → stored password and the services the user routes to
/// (the first without a server name that chooses among them).
#[derive(Debug, Default)]
pub struct UserStore {
    users: HashMap<Vec<u8>, (StoredPassword, Vec<usize>)>,
}

impl UserStore {
    /// Builds the store from configured users, hashing plaintext passwords.
    /// `services_of` names the indexes of the services each user routes
    /// to, first the one it routes to by default.
    pub fn from_config(
        users: &[UserConfig],
        services_of: impl Fn(&str) -> Vec<usize>,
    ) -> Result<UserStore, ConfigError> {
        let mut store = UserStore::default();
        for user in users {
            let stored = match (&user.password, &user.password_hash) {
                (Some(password), None) => StoredPassword::from_plaintext(password),
                (None, Some(hash)) => StoredPassword::from_hash_text(hash)
                    .map_err(|e| ConfigError::Invalid(format!("user '{}': {e}", user.name)))?,
                _ => {
                    return Err(ConfigError::Invalid(format!(
                        "user '{}': give exactly one of password and password_hash",
                        user.name
                    )))
                }
            };
            store.users.insert(
                user.name.as_bytes().to_vec(),
                (stored, services_of(&user.name)),
            );
        }
        Ok(store)
    }

    /// What is stored for `user`, if the account exists.
    pub fn get(&self, user: &[u8]) -> Option<&StoredPassword> {
        self.users.get(user).map(|(stored, _)| stored)
    }

    /// The index of the service `user` routes to by default.
    pub fn service_of(&self, user: &[u8]) -> Option<usize> {
        self.users
            .get(user)
            .and_then(|(_, services)| services.first().copied())
    }

    /// Whether `user` may log in to service `index` (one a server name
    /// chose).
    pub fn routes_to(&self, user: &[u8], index: usize) -> bool {
        self.users
            .get(user)
            .is_some_and(|(_, services)| services.contains(&index))
    }

    /// Number of accounts.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there are no accounts.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}
