//! A service's accounts as its MariaDB holds them (`mysql.global_priv`),
//! and the rules MariaDB applies to find the account a client logs in as:
//! the user name exactly, the host by pattern, the most specific host
//! first.
//!
//! Pure: rows in, lookups out. Reading the rows and keeping them fresh is
//! [`super::keeper`]'s job.

use std::net::IpAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};
use torpor_protocol::auth::StoredPassword;

use crate::net::Peer;

/// The plugin whose hash Torpor can check itself.
pub const NATIVE_PLUGIN: &str = "mysql_native_password";

/// One row of `mysql.global_priv`, as much of it as a login needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendAccount {
    /// The user name (never empty: anonymous accounts are not served).
    pub user: String,
    /// The host pattern (`%`, `10.0.%`, `localhost`, `10.0.0.0/255.0.0.0`).
    pub host: String,
    /// The authentication plugin.
    pub plugin: String,
    /// The plugin's data: for `mysql_native_password`, `*` + 40 hex
    /// digits, or empty for no password.
    pub authentication_string: String,
}

/// Why an account that matched cannot log in through Torpor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// It authenticates with a plugin Torpor cannot serve.
    Plugin(String),
    /// Its stored hash is not a usable `mysql_native_password` hash (such
    /// as `invalid`, which 10.4+ gives `root@localhost` beside
    /// `unix_socket`): no password opens it, as on MariaDB.
    NoUsablePassword,
}

impl BackendAccount {
    /// The stored password a client's scramble is checked against.
    pub fn credential(&self) -> Result<StoredPassword, Refusal> {
        if !self.plugin.is_empty() && self.plugin != NATIVE_PLUGIN {
            return Err(Refusal::Plugin(self.plugin.clone()));
        }
        StoredPassword::from_hash_text(&self.authentication_string)
            .map_err(|_| Refusal::NoUsablePassword)
    }
}

/// Where a client connects from, as account host patterns see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientHost {
    ip: Option<IpAddr>,
    /// The host is `localhost`: a Unix-socket client, or one on a
    /// loopback address when the server resolves names (MariaDB then
    /// names 127.0.0.1 and ::1 `localhost`; with `skip_name_resolve` a
    /// TCP client is its address only).
    local: bool,
}

impl ClientHost {
    /// The host of a client connected as `peer`, to a server that
    /// resolves names (`resolves_names`) or not.
    pub fn of(peer: &Peer, resolves_names: bool) -> ClientHost {
        match peer {
            Peer::Tcp(addr) => {
                let ip = match addr.ip() {
                    IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
                    v4 => v4,
                };
                ClientHost {
                    ip: Some(ip),
                    local: resolves_names && ip.is_loopback(),
                }
            }
            Peer::Local => ClientHost {
                ip: None,
                local: true,
            },
        }
    }

    /// Whether the account host `pattern` admits this client.
    pub fn matches(&self, pattern: &str) -> bool {
        if pattern.is_empty() || pattern == "%" {
            return true;
        }
        if let Some((network, mask)) = pattern.split_once('/') {
            return self.in_network(network, mask);
        }
        let by_ip = self
            .ip
            .is_some_and(|ip| wildcard_match(pattern, &ip.to_string()));
        by_ip || (self.local && wildcard_match(pattern, "localhost"))
    }

    /// `network/mask` in dotted IPv4, as MariaDB accepts it.
    fn in_network(&self, network: &str, mask: &str) -> bool {
        let (Some(IpAddr::V4(ip)), Ok(network), Ok(mask)) = (
            self.ip,
            network.parse::<std::net::Ipv4Addr>(),
            mask.parse::<std::net::Ipv4Addr>(),
        ) else {
            return false;
        };
        let (ip, network, mask) = (u32::from(ip), u32::from(network), u32::from(mask));
        ip & mask == network
    }
}

/// MariaDB's host wildcard match: `%` any run of characters, `_` one,
/// `\` escapes the next; letters compare without case.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some((b'%', rest)) => (0..=t.len()).any(|skip| go(rest, &t[skip..])),
            Some((b'_', rest)) => !t.is_empty() && go(rest, &t[1..]),
            Some((b'\\', rest)) if !rest.is_empty() => {
                t.first().is_some_and(|c| c.eq_ignore_ascii_case(&rest[0]))
                    && go(&rest[1..], &t[1..])
            }
            Some((c, rest)) => {
                t.first().is_some_and(|d| d.eq_ignore_ascii_case(c)) && go(rest, &t[1..])
            }
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

/// How specific a host pattern is, smaller first, as MariaDB orders its
/// accounts: exact hosts (and networks), then patterns by how long their
/// literal prefix is, `%` last.
fn specificity(host: &str) -> (u8, std::cmp::Reverse<usize>) {
    if host.is_empty() || host == "%" {
        return (2, std::cmp::Reverse(0));
    }
    match host.find(['%', '_']) {
        None => (0, std::cmp::Reverse(host.len())),
        Some(prefix) => (1, std::cmp::Reverse(prefix)),
    }
}

/// A service's accounts, in the order MariaDB tries them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountBook {
    accounts: Vec<BackendAccount>,
    /// Whether the server resolves client addresses to names (its
    /// `skip_name_resolve` is off), which makes loopback clients
    /// `localhost`.
    #[serde(default = "resolves_by_default")]
    resolves_names: bool,
}

fn resolves_by_default() -> bool {
    true
}

impl Default for AccountBook {
    fn default() -> Self {
        AccountBook::new(Vec::new(), true)
    }
}

impl AccountBook {
    /// The book of `accounts` (anonymous ones left out), sorted as MariaDB
    /// sorts them, of a server that resolves names or not.
    pub fn new(mut accounts: Vec<BackendAccount>, resolves_names: bool) -> AccountBook {
        accounts.retain(|a| !a.user.is_empty());
        accounts.sort_by(|a, b| {
            specificity(&a.host)
                .cmp(&specificity(&b.host))
                .then_with(|| a.host.cmp(&b.host))
                .then_with(|| a.user.cmp(&b.user))
        });
        AccountBook {
            accounts,
            resolves_names,
        }
    }

    /// The account `user` logs in as from `peer`: the first of the user's
    /// accounts whose host admits the client.
    pub fn find(&self, user: &[u8], peer: &Peer) -> Option<&BackendAccount> {
        let client = ClientHost::of(peer, self.resolves_names);
        self.accounts
            .iter()
            .find(|a| a.user.as_bytes() == user && client.matches(&a.host))
    }

    /// Number of accounts.
    pub fn len(&self) -> usize {
        self.accounts.len()
    }

    /// Whether the book holds no account.
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }

    /// Reads a book saved by [`AccountBook::save`].
    pub fn load(path: &Path) -> std::io::Result<AccountBook> {
        let text = std::fs::read(path)?;
        serde_json::from_slice(&text)
            .map(AccountBook::new_from_saved)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    fn new_from_saved(saved: AccountBook) -> AccountBook {
        AccountBook::new(saved.accounts, saved.resolves_names)
    }

    /// Saves the book at `path`, readable by its owner only (it holds
    /// password hashes, which open the accounts through Torpor), written
    /// whole or not at all.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        let temporary = path.with_extension("tmp");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(&json)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(user: &str, host: &str, hash: &str) -> BackendAccount {
        BackendAccount {
            user: user.into(),
            host: host.into(),
            plugin: NATIVE_PLUGIN.into(),
            authentication_string: hash.into(),
        }
    }

    fn peer(ip: &str) -> Peer {
        let ip: IpAddr = ip.parse().unwrap();
        Peer::Tcp(std::net::SocketAddr::new(ip, 5000))
    }

    fn tcp(ip: &str) -> ClientHost {
        ClientHost::of(&peer(ip), true)
    }

    #[test]
    fn wildcards_match_as_mariadb_matches_them() {
        assert!(wildcard_match("10.0.%", "10.0.3.4"));
        assert!(!wildcard_match("10.0.%", "10.1.3.4"));
        assert!(wildcard_match("10.0.0._", "10.0.0.7"));
        assert!(!wildcard_match("10.0.0._", "10.0.0.17"));
        assert!(wildcard_match("LocalHost", "localhost"));
        assert!(wildcard_match("a\\%b", "a%b"));
        assert!(!wildcard_match("a\\%b", "axb"));
    }

    #[test]
    fn loopback_and_socket_clients_are_localhost() {
        assert!(tcp("127.0.0.1").matches("localhost"));
        assert!(tcp("127.0.0.1").matches("127.0.0.1"));
        assert!(tcp("::1").matches("localhost"));
        assert!(ClientHost::of(&Peer::Local, true).matches("localhost"));
        assert!(ClientHost::of(&Peer::Local, false).matches("localhost"));
        assert!(!ClientHost::of(&Peer::Local, true).matches("127.0.0.1"));
        // skip_name_resolve: a TCP client is its address only.
        assert!(!ClientHost::of(&peer("127.0.0.1"), false).matches("localhost"));
        assert!(ClientHost::of(&peer("127.0.0.1"), false).matches("127.0.0.1"));
        assert!(!tcp("10.0.0.1").matches("localhost"));
        assert!(tcp("10.2.3.4").matches("10.0.0.0/255.0.0.0"));
        assert!(!tcp("11.2.3.4").matches("10.0.0.0/255.0.0.0"));
    }

    #[test]
    fn the_most_specific_host_wins() {
        let book = AccountBook::new(
            vec![
                account("bob", "%", "*AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
                account(
                    "bob",
                    "127.0.%",
                    "*BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB",
                ),
                account(
                    "bob",
                    "127.0.0.1",
                    "*CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC",
                ),
                account("", "%", ""),
            ],
            true,
        );
        assert_eq!(book.len(), 3, "anonymous accounts are left out");
        let found = book.find(b"bob", &peer("127.0.0.1")).unwrap();
        assert_eq!(found.host, "127.0.0.1");
        let found = book.find(b"bob", &peer("127.0.9.9")).unwrap();
        assert_eq!(found.host, "127.0.%");
        let found = book.find(b"bob", &peer("10.9.9.9")).unwrap();
        assert_eq!(found.host, "%");
        assert!(book.find(b"alice", &peer("127.0.0.1")).is_none());
        assert!(book.find(b"", &peer("127.0.0.1")).is_none());
    }

    #[test]
    fn plugins_torpor_cannot_serve_are_named() {
        let mut ed = account("e", "%", "xyz");
        ed.plugin = "ed25519".into();
        assert_eq!(ed.credential(), Err(Refusal::Plugin("ed25519".into())));
        let root = account("root", "localhost", "invalid");
        assert_eq!(root.credential(), Err(Refusal::NoUsablePassword));
        assert!(account("a", "%", "").credential().is_ok());
    }

    #[test]
    fn a_saved_book_is_private_and_reads_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accounts").join("default.json");
        let book = AccountBook::new(
            vec![account(
                "bob",
                "%",
                "*CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC",
            )],
            false,
        );
        book.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(AccountBook::load(&path).unwrap(), book);
    }
}
