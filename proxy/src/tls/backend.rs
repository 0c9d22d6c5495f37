//! TLS on the backend leg: what `[backend]` (or a `[[services]]`
//! entry's) `tls`, `tls_ca` and `tls_fingerprint` ask for, as a rustls
//! client configuration and the name the backend's certificate is
//! checked against.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

use super::pinned::{Fingerprint, PinnedVerifier};
use crate::config::{BackendTlsMode, BackendTlsOptions, ConfigError};
use crate::endpoint::Endpoint;

/// How a service's backend connections use TLS.
#[derive(Clone)]
pub struct BackendTls {
    /// Preferred or required (off is no `BackendTls` at all).
    pub required: bool,
    /// rustls' client configuration: the CA file's roots, or the pinned
    /// certificate.
    pub config: Arc<ClientConfig>,
    /// The name the certificate must carry: the configured address's
    /// host; `None`: the host of the address the backend has when a
    /// connection opens (a managed backend's).
    pub name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for BackendTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendTls")
            .field("required", &self.required)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl BackendTls {
    /// The backend TLS `options` ask for, to a backend at `address` (a
    /// configured one; `None` for a managed backend); `None` when TLS is
    /// off.
    pub fn load(
        options: &BackendTlsOptions<'_>,
        address: Option<&str>,
    ) -> Result<Option<BackendTls>, ConfigError> {
        if options.mode == BackendTlsMode::Off {
            return Ok(None);
        }
        options.validate()?;
        let section = &options.section;
        let bad = |key: &str, e: &dyn std::fmt::Display| {
            ConfigError::Invalid(format!("{section} {key}: {e}"))
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| bad("tls", &e))?;
        let config = match (options.ca, options.fingerprint) {
            (_, Some(pin)) => {
                let pin = Fingerprint::parse(pin).map_err(|e| bad("tls_fingerprint", &e))?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(PinnedVerifier::new(pin, provider)))
                    .with_no_client_auth()
            }
            (Some(ca), None) => {
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_file_iter(ca).map_err(|e| bad("tls_ca", &e))? {
                    let cert = cert.map_err(|e| bad("tls_ca", &e))?;
                    roots.add(cert).map_err(|e| bad("tls_ca", &e))?;
                }
                if roots.is_empty() {
                    return Err(bad("tls_ca", &"no certificate in the file"));
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            (None, None) => return Err(bad("tls", &"needs tls_ca or tls_fingerprint")),
        };
        let name = match address {
            Some(address) => Some(server_name(address).ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "{section} address '{address}': no host name to check the certificate against"
                ))
            })?),
            None => None,
        };
        Ok(Some(BackendTls {
            required: options.mode == BackendTlsMode::Required,
            config: Arc::new(config),
            name,
        }))
    }

    /// The name a connection to `endpoint` checks the certificate
    /// against (and sends as SNI).
    pub fn name_for(&self, endpoint: &Endpoint) -> Option<ServerName<'static>> {
        match (&self.name, endpoint) {
            (Some(name), _) => Some(name.clone()),
            (None, Endpoint::Tcp(addr)) => Some(ServerName::IpAddress(addr.ip().into())),
            (None, Endpoint::Unix(_)) => None,
        }
    }
}

/// Whether a failed backend handshake failed on the backend's
/// certificate (not signed by the CA, not the pinned one, not for the
/// name): what the client is told, while the log has the details.
pub fn is_untrusted_certificate(error: &std::io::Error) -> bool {
    matches!(
        error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        Some(rustls::Error::InvalidCertificate(_))
    )
}

/// The host of `host:port` (`[v6]:port` too) as the name a certificate
/// is checked against.
fn server_name(address: &str) -> Option<ServerName<'static>> {
    let (host, _port) = address.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).ok()
}

#[cfg(test)]
mod tests {
    use super::server_name;

    #[test]
    fn the_name_is_the_addresss_host() {
        let name = |a| server_name(a).map(|n| n.to_str().into_owned());
        assert_eq!(name("db.example:3306").as_deref(), Some("db.example"));
        assert_eq!(name("127.0.0.1:3306").as_deref(), Some("127.0.0.1"));
        assert_eq!(name("[::1]:3306").as_deref(), Some("::1"));
        assert_eq!(name("nohost"), None);
    }
}
