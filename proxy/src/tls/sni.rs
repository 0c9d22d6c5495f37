//! The server name (SNI) a TLS client asked for, as rustls saw it.
//!
//! rustls' unbuffered server connection, which [`super::layer`] drives,
//! keeps the name to itself (only the buffered one shows it). Every full
//! handshake asks the configuration's certificate resolver for a
//! certificate, with the name the handshake stores: a resolver that
//! notes the name and asks the real one sees exactly what the buffered
//! `server_name()` would have shown. It is made per connection (one
//! clone of the configuration, a handful of `Arc`s, next to a handshake's
//! key exchange and signature).

use std::sync::{Arc, OnceLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

/// Where one connection's server name lands.
pub type NotedName = Arc<OnceLock<String>>;

/// `config` with a resolver that notes the client's server name in the
/// returned cell, then resolves as `config` does.
pub fn noting_server_name(config: &ServerConfig) -> (Arc<ServerConfig>, NotedName) {
    let noted = NotedName::default();
    let mut own = config.clone();
    own.cert_resolver = Arc::new(NoteName {
        inner: Arc::clone(&config.cert_resolver),
        noted: Arc::clone(&noted),
    });
    (Arc::new(own), noted)
}

/// Notes the server name, then asks `inner`.
#[derive(Debug)]
struct NoteName {
    inner: Arc<dyn ResolvesServerCert>,
    noted: NotedName,
}

impl ResolvesServerCert for NoteName {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = hello.server_name() {
            // A HelloRetryRequest asks again, with the same name (rustls
            // refuses a second hello that changes it): the first stays.
            let _ = self.noted.set(name.to_string());
        }
        self.inner.resolve(hello)
    }

    fn only_raw_public_keys(&self) -> bool {
        self.inner.only_raw_public_keys()
    }
}
