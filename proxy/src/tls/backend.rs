//! TLS on the backend leg: what `[backend] tls` and `tls_ca` ask for,
//! as a rustls client configuration and the name the backend's
//! certificate is checked against.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

use crate::config::{BackendConfig, BackendTlsMode, ConfigError};

/// How a service's backend connections use TLS.
#[derive(Clone)]
pub struct BackendTls {
    /// Preferred or required (off is no `BackendTls` at all).
    pub required: bool,
    /// rustls' client configuration, with the CA file's roots.
    pub config: Arc<ClientConfig>,
    /// The name the certificate must carry: the address's host.
    pub name: ServerName<'static>,
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
    /// The backend TLS `backend` asks for; `None` when it is off.
    pub fn load(backend: &BackendConfig) -> Result<Option<BackendTls>, ConfigError> {
        if backend.tls == BackendTlsMode::Off {
            return Ok(None);
        }
        let bad =
            |e: &dyn std::fmt::Display| ConfigError::Invalid(format!("[backend] tls_ca: {e}"));
        let Some(ca) = &backend.tls_ca else {
            return Err(bad(&"not given"));
        };
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).map_err(|e| bad(&e))? {
            roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
        }
        if roots.is_empty() {
            return Err(bad(&"no certificate in the file"));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| bad(&e))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = server_name(&backend.address).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "[backend] address '{}': no host name to check the certificate against",
                backend.address
            ))
        })?;
        Ok(Some(BackendTls {
            required: backend.tls == BackendTlsMode::Required,
            config: Arc::new(config),
            name,
        }))
    }
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
