//! The accounts clients may log in as, with what the proxy stores for each:
//! the `mysql_native_password` hash, never a plaintext password.

use std::collections::HashMap;

use torpor_protocol::auth::StoredPassword;

use crate::config::{ConfigError, UserConfig};

/// User name → stored password and the service the user routes to.
#[derive(Debug, Default)]
pub struct UserStore {
    users: HashMap<Vec<u8>, (StoredPassword, usize)>,
}

impl UserStore {
    /// Builds the store from configured users, hashing plaintext passwords.
    /// `service_of` names the index of the service each user routes to.
    pub fn from_config(
        users: &[UserConfig],
        service_of: impl Fn(&str) -> usize,
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
                (stored, service_of(&user.name)),
            );
        }
        Ok(store)
    }

    /// What is stored for `user`, if the account exists.
    pub fn get(&self, user: &[u8]) -> Option<&StoredPassword> {
        self.users.get(user).map(|(stored, _)| stored)
    }

    /// The index of the service `user` routes to.
    pub fn service_of(&self, user: &[u8]) -> Option<usize> {
        self.users.get(user).map(|(_, service)| *service)
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
