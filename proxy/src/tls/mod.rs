//! TLS on the client leg.
//!
//! - This file: the server configuration clients get — a certificate
//!   chain and key from PEM files, or a self-signed certificate made at
//!   first start and kept in `state_dir` — and the zero-configuration
//!   proof MariaDB 11.4+ clients check ([`TlsSettings::proof`]).
//! - [`layer`]: rustls driven over a connection's own buffers (what
//!   `crate::net::Conn` calls when TLS is on).
//! - [`backend`]: the backend leg's client configuration (`[backend]
//!   tls`, `tls_ca`, `tls_fingerprint`, and the same per service).
//! - [`pinned`]: a backend certificate pinned by its fingerprint.
//! - [`sni`]: the server name a client asked for, noted during the
//!   handshake (the layer's unbuffered rustls does not show it).
//!
//! rustls with the `ring` provider: no OpenSSL in the binary, and no C
//! toolchain beyond the one `ring` itself needs.

pub mod backend;
pub mod layer;
pub mod pinned;
pub mod sni;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::config::{ConfigError, TlsConfig};

/// What a login needs to offer TLS: rustls' server configuration, and the
/// digest of the certificate clients see (for the zero-config proof).
/// Part of the reloadable settings: a SIGHUP that changes the
/// certificate gives new connections the new one; sessions keep theirs.
#[derive(Clone)]
pub struct TlsSettings {
    /// rustls' configuration (shared by every connection that uses it).
    pub config: Arc<ServerConfig>,
    /// SHA-256 of the leaf certificate's DER.
    pub cert_digest: [u8; 32],
    /// Where the certificate came from (for the log).
    pub source: CertSource,
}

/// Where the certificate came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    /// The configured PEM files.
    Configured(PathBuf),
    /// Torpor's own self-signed certificate in `state_dir`.
    SelfSigned(PathBuf),
    /// A self-signed certificate kept in memory only (`state_dir` could
    /// not be written).
    Ephemeral,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// The self-signed certificate's files, relative to `state_dir`.
pub fn self_signed_paths(state_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = state_dir.join("tls");
    (dir.join("cert.pem"), dir.join("key.pem"))
}

/// The names the self-signed certificate is made for: what clients on
/// this host dial (a client that verifies the name against another name
/// needs a configured certificate).
const SELF_SIGNED_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Where a cipher suite stands in the order Torpor picks from: AES-128-GCM,
/// then AES-256-GCM, then the rest (ChaCha20-Poly1305). AES-128 is as
/// much a recommended suite as AES-256 (Mozilla's configurations list it
/// first) and takes 10 AES rounds instead of 14: every byte of every
/// query and result goes through it twice (client leg in and out), and
/// TLS's share of Torpor's CPU per query is what issue 15 bounds.
fn cipher_rank(suite: rustls::CipherSuite) -> u8 {
    use rustls::CipherSuite as Suite;
    match suite {
        Suite::TLS13_AES_128_GCM_SHA256
        | Suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        | Suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 0,
        Suite::TLS13_AES_256_GCM_SHA384
        | Suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
        | Suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => 1,
        _ => 2,
    }
}

impl TlsSettings {
    /// The TLS settings `config` asks for: `None` when TLS is off.
    pub fn load(config: &TlsConfig, state_dir: &Path) -> Result<Option<TlsSettings>, ConfigError> {
        if !config.enabled {
            return Ok(None);
        }
        let (chain, key, source) = match (&config.cert, &config.key) {
            (Some(cert), Some(key)) => {
                let (chain, key) = read_pem(cert, key)?;
                (chain, key, CertSource::Configured(cert.clone()))
            }
            (None, None) => self_signed(state_dir)?,
            _ => {
                return Err(ConfigError::Invalid(
                    "[tls] cert and key go together: give both, or neither for a self-signed certificate".into(),
                ))
            }
        };
        let Some(leaf) = chain.first() else {
            return Err(ConfigError::Invalid(
                "[tls] cert: no certificate in the file".into(),
            ));
        };
        let cert_digest: [u8; 32] = Sha256::digest(leaf.as_ref()).into();
        let mut provider = rustls::crypto::ring::default_provider();
        provider
            .cipher_suites
            .sort_by_key(|suite| cipher_rank(suite.suite()));
        let mut server = ServerConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| ConfigError::Invalid(format!("[tls]: {e}")))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| ConfigError::Invalid(format!("[tls] cert and key: {e}")))?;
        // Torpor's order, not the client's (OpenSSL-based clients list
        // AES-256 first): see `cipher_rank`.
        server.ignore_client_order = true;
        Ok(Some(TlsSettings {
            config: Arc::new(server),
            cert_digest,
            source,
        }))
    }

    /// The zero-configuration proof a MariaDB 11.4+ client checks when it
    /// could not verify the certificate itself: the OK packet that ends
    /// the login carries `0x01` and HEX(SHA256(password_hash ‖ scramble ‖
    /// SHA256(certificate DER))) as its info. Only a server that knows the
    /// password's hash (Torpor holds `SHA1(SHA1(password))`) and saw the
    /// scramble it sent can make it, so a man in the middle with another
    /// certificate cannot.
    pub fn proof(&self, password_hash: &[u8], scramble: &[u8]) -> Vec<u8> {
        let mut digest = Sha256::new();
        digest.update(password_hash);
        digest.update(scramble);
        digest.update(self.cert_digest);
        let sum = digest.finalize();
        let mut info = Vec::with_capacity(1 + 2 * sum.len());
        info.push(1);
        // Upper case: Connector/C 3.4 compares the hex it makes itself
        // (mysql_hex_string, upper case) with strcmp.
        for byte in sum {
            info.extend_from_slice(format!("{byte:02X}").as_bytes());
        }
        info
    }
}

type Pair = (
    Vec<CertificateDer<'static>>,
    PrivateKeyDer<'static>,
    CertSource,
);

fn read_pem(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), ConfigError> {
    let bad = |path: &Path, e: &dyn std::fmt::Display| {
        ConfigError::Invalid(format!("[tls] {}: {e}", path.display()))
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(cert, &e))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, &e))?;
    Ok((chain, key))
}

/// Torpor's self-signed certificate: read from `state_dir` when it is
/// there, else made now and written there (the key readable by its owner
/// only), so that clients that pinned it keep trusting it across
/// restarts.
fn self_signed(state_dir: &Path) -> Result<Pair, ConfigError> {
    let (cert_path, key_path) = self_signed_paths(state_dir);
    if cert_path.exists() && key_path.exists() {
        let (chain, key) = read_pem(&cert_path, &key_path)?;
        return Ok((chain, key, CertSource::SelfSigned(cert_path)));
    }
    let names: Vec<String> = SELF_SIGNED_NAMES.iter().map(|s| s.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(names)
        .map_err(|e| ConfigError::Invalid(format!("self-signed certificate: {e}")))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Torpor self-signed");
    let made = rcgen::KeyPair::generate()
        .and_then(|key| params.self_signed(&key).map(|cert| (cert, key)))
        .map_err(|e| ConfigError::Invalid(format!("self-signed certificate: {e}")))?;
    let (cert, key) = made;
    let chain = vec![cert.der().clone()];
    let key_der = PrivateKeyDer::try_from(key.serialize_der())
        .map_err(|e| ConfigError::Invalid(format!("self-signed certificate: {e}")))?;
    let source = match write_self_signed(&cert_path, &key_path, &cert.pem(), &key.serialize_pem()) {
        Ok(()) => CertSource::SelfSigned(cert_path),
        // Another Torpor on this state_dir made its pair first: that one.
        Err(_) if cert_path.exists() && key_path.exists() => {
            let (chain, key) = read_pem(&cert_path, &key_path)?;
            return Ok((chain, key, CertSource::SelfSigned(cert_path)));
        }
        Err(e) => {
            tracing::warn!(
                dir = %state_dir.display(),
                "cannot keep the self-signed TLS certificate ({e}): a new one at every start"
            );
            CertSource::Ephemeral
        }
    };
    Ok((chain, key_der, source))
}

/// Writes the pair into a fresh folder beside `state_dir/tls` and renames
/// it into place: a Torpor that reads the pair sees both files whole and
/// matching, and of two Torpors starting at once on one `state_dir` the
/// second's rename fails and it reads the first's pair.
fn write_self_signed(
    cert: &Path,
    key: &Path,
    cert_pem: &str,
    key_pem: &str,
) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let (Some(dir), Some(cert_name), Some(key_name)) =
        (cert.parent(), cert.file_name(), key.file_name())
    else {
        return Err(std::io::Error::other("no folder for the certificate"));
    };
    let parent = dir.parent().unwrap_or(dir);
    std::fs::create_dir_all(parent)?;
    let staging = tempfile::Builder::new()
        .prefix(".tls-")
        .tempdir_in(parent)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(staging.path().join(key_name))?;
    file.write_all(key_pem.as_bytes())?;
    file.sync_all()?;
    std::fs::write(staging.path().join(cert_name), cert_pem)?;
    let staged = staging.keep();
    match std::fs::rename(&staged, dir) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staged);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_certificate_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let config = TlsConfig::default();
        let first = TlsSettings::load(&config, dir.path()).unwrap().unwrap();
        assert!(matches!(first.source, CertSource::SelfSigned(_)));
        let second = TlsSettings::load(&config, dir.path()).unwrap().unwrap();
        assert_eq!(first.cert_digest, second.cert_digest);
        let (_, key) = self_signed_paths(dir.path());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(key).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the key is its owner's only");
    }

    #[test]
    fn tls_off_gives_nothing_and_half_a_pair_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let off = TlsConfig {
            enabled: false,
            ..TlsConfig::default()
        };
        assert!(TlsSettings::load(&off, dir.path()).unwrap().is_none());
        let half = TlsConfig {
            cert: Some(dir.path().join("cert.pem")),
            ..TlsConfig::default()
        };
        assert!(TlsSettings::load(&half, dir.path()).is_err());
    }

    #[test]
    fn the_proof_is_0x01_and_64_upper_case_hex_digits_of_the_three_parts() {
        let dir = tempfile::tempdir().unwrap();
        let tls = TlsSettings::load(&TlsConfig::default(), dir.path())
            .unwrap()
            .unwrap();
        let hash = [7u8; 20];
        let scramble = [9u8; 20];
        let proof = tls.proof(&hash, &scramble);
        assert_eq!(proof.len(), 65);
        assert_eq!(proof[0], 1);
        let mut whole = Vec::new();
        whole.extend_from_slice(&hash);
        whole.extend_from_slice(&scramble);
        whole.extend_from_slice(&tls.cert_digest);
        let want: String = Sha256::digest(&whole)
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect();
        assert_eq!(&proof[1..], want.as_bytes());
    }
}
