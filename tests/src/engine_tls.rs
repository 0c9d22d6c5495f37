//! Certificates for a Docker Engine reached over TCP with mutual TLS, as
//! an operator sets one up (`dockerd --tlsverify`): a CA of its own, a
//! server certificate for the engine's address, and a client certificate
//! Torpor presents. Written as PEM files, the form both dockerd and
//! Torpor's `[[hosts]]` entry take.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

/// The PEM files of one engine's TLS setup.
#[derive(Debug, Clone)]
pub struct EngineCertificates {
    /// The CA both sides verify the other with.
    pub ca: PathBuf,
    /// The engine's certificate (its address in the names).
    pub server_cert: PathBuf,
    /// Its key.
    pub server_key: PathBuf,
    /// The client certificate Torpor presents.
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
}

impl EngineCertificates {
    /// Makes a CA, a server certificate for `address` and a client
    /// certificate, and writes them into `dir`.
    pub fn write(dir: &Path, address: IpAddr) -> EngineCertificates {
        std::fs::create_dir_all(dir).expect("a folder for the engine's certificates");
        let ca_key = KeyPair::generate().expect("a CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Torpor tests' engine CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = ca_params.self_signed(&ca_key).expect("a CA certificate");

        let leaf = |name: &str, purpose: ExtendedKeyUsagePurpose, sans: Vec<SanType>| {
            let key = KeyPair::generate().expect("a key");
            let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
            params.distinguished_name.push(DnType::CommonName, name);
            params.subject_alt_names = sans;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![purpose];
            let cert = params
                .signed_by(&key, &ca, &ca_key)
                .expect("a signed certificate");
            (cert.pem(), key.serialize_pem())
        };
        let (server_pem, server_key_pem) = leaf(
            "engine",
            ExtendedKeyUsagePurpose::ServerAuth,
            vec![SanType::IpAddress(address)],
        );
        let (client_pem, client_key_pem) =
            leaf("torpor", ExtendedKeyUsagePurpose::ClientAuth, Vec::new());

        let files = EngineCertificates {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server-cert.pem"),
            server_key: dir.join("server-key.pem"),
            client_cert: dir.join("cert.pem"),
            client_key: dir.join("key.pem"),
        };
        for (path, text) in [
            (&files.ca, ca.pem()),
            (&files.server_cert, server_pem),
            (&files.server_key, server_key_pem),
            (&files.client_cert, client_pem),
            (&files.client_key, client_key_pem),
        ] {
            std::fs::write(path, text)
                .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        }
        files
    }
}
