//! A backend certificate pinned by its SHA-256 fingerprint
//! (`tls_fingerprint = "sha256:…"`): trusted when the certificate the
//! backend presents is exactly that one, whoever signed it and whatever
//! names it carries — what an operator who copied a self-signed
//! certificate's fingerprint (`openssl x509 -fingerprint -sha256`) means.
//! The handshake's signatures are still checked, so only the holder of
//! the certificate's key gets through.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, OtherError, SignatureScheme};
use sha2::{Digest, Sha256};

/// A SHA-256 certificate fingerprint.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// Reads `sha256:` and 64 hex digits, in either case, optionally
    /// split by colons (as `openssl x509 -fingerprint` prints them).
    pub fn parse(text: &str) -> Result<Fingerprint, String> {
        let (kind, hex) = text
            .split_once(':')
            .ok_or("write it as sha256:<64 hex digits>")?;
        if !kind.eq_ignore_ascii_case("sha256") {
            return Err(format!("'{kind}': only sha256 fingerprints are taken"));
        }
        let digits: Vec<u8> = hex.bytes().filter(|b| *b != b':').collect();
        if digits.len() != 64 {
            return Err(format!(
                "{} hex digits; a SHA-256 fingerprint has 64",
                digits.len()
            ));
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| "not hex digits")?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| format!("'{pair}' is not hex"))?;
        }
        Ok(Fingerprint(out))
    }

    /// The fingerprint of a certificate (its DER).
    pub fn of(cert: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(cert).into())
    }

    /// The fingerprint of the first certificate in a PEM file: what to
    /// pin for a backend that presents it.
    pub fn of_pem_file(path: &std::path::Path) -> Result<Fingerprint, String> {
        use rustls::pki_types::pem::PemObject;
        let cert =
            CertificateDer::from_pem_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Fingerprint::of(cert.as_ref()))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        for byte in self.0 {
            write!(f, "{byte:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The backend presented another certificate than the pinned one. Its
/// `Debug` is its message: rustls shows the error that way in the log.
struct NotPinned {
    seen: Fingerprint,
    pinned: Fingerprint,
}

impl fmt::Display for NotPinned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the backend's certificate is {}, not the pinned {}",
            self.seen, self.pinned
        )
    }
}

impl fmt::Debug for NotPinned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for NotPinned {}

/// Trusts the one certificate whose fingerprint is pinned.
#[derive(Debug)]
pub struct PinnedVerifier {
    pin: Fingerprint,
    provider: Arc<CryptoProvider>,
}

impl PinnedVerifier {
    /// A verifier for `pin`, checking signatures with `provider`'s
    /// algorithms.
    pub fn new(pin: Fingerprint, provider: Arc<CryptoProvider>) -> PinnedVerifier {
        PinnedVerifier { pin, provider }
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let seen = Fingerprint::of(end_entity.as_ref());
        if seen == self.pin {
            return Ok(ServerCertVerified::assertion());
        }
        let why = NotPinned {
            seen,
            pinned: self.pin,
        };
        Err(Error::InvalidCertificate(CertificateError::Other(
            OtherError(Arc::new(why)),
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_read_as_openssl_and_torpor_write_them() {
        let bytes: Vec<u8> = (0u8..32).collect();
        let plain: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let colons: Vec<String> = bytes.iter().map(|b| format!("{b:02X}")).collect();
        let a = Fingerprint::parse(&format!("sha256:{plain}")).unwrap();
        let b = Fingerprint::parse(&format!("SHA256:{}", colons.join(":"))).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.0.to_vec(), bytes);
        assert_eq!(Fingerprint::parse(&a.to_string()).unwrap(), a);
        assert!(Fingerprint::parse(&plain).is_err(), "no kind");
        assert!(Fingerprint::parse(&format!("sha1:{plain}")).is_err());
        assert!(Fingerprint::parse("sha256:abcd").is_err(), "too short");
        assert!(Fingerprint::parse(&format!("sha256:{}", "zz".repeat(32))).is_err());
        assert!(Fingerprint::parse(&format!("sha256:{}é", &plain[..62])).is_err());
    }
}
