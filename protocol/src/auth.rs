//! `mysql_native_password` scramble maths.
//!
//! The server stores `SHA1(SHA1(password))`; the client answers a 20-byte
//! seed with `SHA1(password) XOR SHA1(seed ++ SHA1(SHA1(password)))`.
//! Knowing the stored hash and the seed, a proxy can therefore take the
//! XOR back off, recover `SHA1(password)` and check it by hashing it once
//! more. With `SHA1(password)` it can answer any other server's seed: that
//! is how Torpor logs in to backends without ever storing a password.
//!
//! `mysql_common::auth::plugins::mysql_native_password::scramble_native` computes the client side from
//! a plaintext password only; the proxy holds `SHA1(password)` instead, so
//! the three small functions are written here.

use sha1::{Digest, Sha1};

/// Length of a native-password seed and of a native-password response.
pub const SCRAMBLE_LEN: usize = 20;

/// The name of the plugin.
pub const NATIVE_PASSWORD_PLUGIN: &str = "mysql_native_password";

/// What a server stores for a native-password account.
#[derive(Clone, PartialEq, Eq)]
pub enum StoredPassword {
    /// The account has no password; the client sends an empty response.
    Empty,
    /// `SHA1(SHA1(password))`.
    Hash([u8; 20]),
}

impl std::fmt::Debug for StoredPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print hashes into logs.
        match self {
            StoredPassword::Empty => f.write_str("StoredPassword::Empty"),
            StoredPassword::Hash(_) => f.write_str("StoredPassword::Hash(..)"),
        }
    }
}

/// What a client proved it knows; enough to log in to any server that
/// stores the same [`StoredPassword`].
#[derive(Clone, PartialEq, Eq)]
pub enum ProvenPassword {
    /// The empty password.
    Empty,
    /// `SHA1(password)`.
    Sha1([u8; 20]),
}

impl std::fmt::Debug for ProvenPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProvenPassword::Empty => f.write_str("ProvenPassword::Empty"),
            ProvenPassword::Sha1(_) => f.write_str("ProvenPassword::Sha1(..)"),
        }
    }
}

/// `*HEX` was not 41 characters of `*` and 40 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a native password hash is '*' followed by 40 hex digits")]
pub struct BadHashText;

fn sha1(parts: &[&[u8]]) -> [u8; 20] {
    let mut hasher = Sha1::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

fn xor(a: &[u8; 20], b: &[u8; 20]) -> [u8; 20] {
    let mut out = [0u8; 20];
    for (o, (x, y)) in out.iter_mut().zip(a.iter().zip(b)) {
        *o = x ^ y;
    }
    out
}

/// Compares without an early exit, so timing does not tell how many
/// leading bytes of a guess were right.
fn constant_time_eq(a: &[u8; 20], b: &[u8; 20]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl StoredPassword {
    /// What a server stores for `password`.
    pub fn from_plaintext(password: &str) -> StoredPassword {
        if password.is_empty() {
            StoredPassword::Empty
        } else {
            StoredPassword::Hash(sha1(&[&sha1(&[password.as_bytes()])]))
        }
    }

    /// Parses the `*` + 40 hex digits form that `PASSWORD()` returns and
    /// `mysql.user.authentication_string` holds; the empty string is the
    /// empty password.
    pub fn from_hash_text(text: &str) -> Result<StoredPassword, BadHashText> {
        if text.is_empty() {
            return Ok(StoredPassword::Empty);
        }
        let hex = text.strip_prefix('*').ok_or(BadHashText)?;
        if hex.len() != 40 || !hex.is_ascii() {
            return Err(BadHashText);
        }
        let mut hash = [0u8; 20];
        for (i, byte) in hash.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| BadHashText)?;
        }
        Ok(StoredPassword::Hash(hash))
    }

    /// Checks a client's response to `seed` and, when it is right, returns
    /// what the client proved it knows.
    pub fn verify(&self, seed: &[u8], response: &[u8]) -> Option<ProvenPassword> {
        match self {
            StoredPassword::Empty => response.is_empty().then_some(ProvenPassword::Empty),
            StoredPassword::Hash(hash) => {
                let response: &[u8; 20] = response.try_into().ok()?;
                let candidate = xor(response, &sha1(&[seed, hash]));
                constant_time_eq(&sha1(&[&candidate]), hash)
                    .then_some(ProvenPassword::Sha1(candidate))
            }
        }
    }
}

impl ProvenPassword {
    /// What knowing `password` proves: how Torpor logs in with an
    /// account whose password it was given (the accounts reader's).
    pub fn from_plaintext(password: &str) -> ProvenPassword {
        if password.is_empty() {
            ProvenPassword::Empty
        } else {
            ProvenPassword::Sha1(sha1(&[password.as_bytes()]))
        }
    }

    /// The `mysql_native_password` hash, `SHA1(SHA1(password))`, of the
    /// password proven (`None` for the empty password, which has none).
    pub fn native_hash(&self) -> Option<[u8; 20]> {
        match self {
            ProvenPassword::Empty => None,
            ProvenPassword::Sha1(sha1_password) => Some(sha1(&[sha1_password])),
        }
    }

    /// The response a client with this password sends for `seed`.
    pub fn respond(&self, seed: &[u8]) -> Vec<u8> {
        match self {
            ProvenPassword::Empty => Vec::new(),
            ProvenPassword::Sha1(sha1_password) => {
                let hash = sha1(&[sha1_password]);
                xor(sha1_password, &sha1(&[seed, &hash])).to_vec()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hash_text_matches_mariadb_password_function() {
        // SELECT PASSWORD('secret') on MariaDB 10.11.
        let from_text =
            StoredPassword::from_hash_text("*14E65567ABDB5135D0CFD9A70B3032C179A49EE7").unwrap();
        assert_eq!(from_text, StoredPassword::from_plaintext("secret"));
        assert_eq!(
            StoredPassword::from_hash_text("14E6"),
            Err(BadHashText),
            "missing star"
        );
        assert_eq!(StoredPassword::from_hash_text("*zz"), Err(BadHashText));
        assert_eq!(
            StoredPassword::from_hash_text("*14E65567ABDB5135D0CFD9A70B3032C179A49EÉ"),
            Err(BadHashText)
        );
    }

    #[test]
    fn matches_mysql_common_client_side() {
        let seed = b"abcdefghijklmnopqrst";
        let expected =
            mysql_common::auth::plugins::mysql_native_password::scramble_native(seed, b"secret")
                .unwrap();
        let stored = StoredPassword::from_plaintext("secret");
        let proven = stored
            .verify(seed, &expected)
            .expect("right password verifies");
        assert_eq!(proven.respond(seed), expected.to_vec());
        assert_eq!(ProvenPassword::from_plaintext("secret"), proven);
        assert_eq!(ProvenPassword::from_plaintext(""), ProvenPassword::Empty);
    }

    #[test]
    fn wrong_password_and_garbage_are_refused() {
        let seed = b"abcdefghijklmnopqrst";
        let stored = StoredPassword::from_plaintext("secret");
        let wrong =
            mysql_common::auth::plugins::mysql_native_password::scramble_native(seed, b"Secret")
                .unwrap();
        assert_eq!(stored.verify(seed, &wrong), None);
        assert_eq!(stored.verify(seed, b""), None);
        assert_eq!(stored.verify(seed, b"short"), None);
        assert_eq!(StoredPassword::Empty.verify(seed, &wrong), None);
        assert_eq!(
            StoredPassword::Empty.verify(seed, b""),
            Some(ProvenPassword::Empty)
        );
    }

    proptest! {
        #[test]
        fn recovered_password_answers_any_seed(password in "[ -~]{1,40}", seed1 in any::<[u8; 20]>(), seed2 in any::<[u8; 20]>()) {
            let client = mysql_common::auth::plugins::mysql_native_password::scramble_native(&seed1, password.as_bytes()).unwrap();
            let proven = StoredPassword::from_plaintext(&password).verify(&seed1, &client).unwrap();
            let expected = mysql_common::auth::plugins::mysql_native_password::scramble_native(&seed2, password.as_bytes()).unwrap();
            prop_assert_eq!(proven.respond(&seed2), expected.to_vec());
        }
    }
}
