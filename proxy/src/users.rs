//! The accounts clients may log in as, with what the proxy stores for each:
//! the `mysql_native_password` hash, never a plaintext password.

use std::collections::HashMap;

use torpor_protocol::auth::StoredPassword;

use crate::config::{ConfigError, UserConfig};

/// User name → stored password.
#[derive(Debug, Default)]
pub struct UserStore {
    users: HashMap<Vec<u8>, StoredPassword>,
}

impl UserStore {
    /// Builds the store from configured users, hashing plaintext passwords.
    pub fn from_config(users: &[UserConfig]) -> Result<UserStore, ConfigError> {
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
            store.users.insert(user.name.as_bytes().to_vec(), stored);
        }
        Ok(store)
    }

    /// What is stored for `user`, if the account exists.
    pub fn get(&self, user: &[u8]) -> Option<&StoredPassword> {
        self.users.get(user)
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
