//! A test certificate authority: what the TLS tests, the browser test and
//! the fan-out benchmark use to serve `https` on loopback without touching
//! the machine's trust store. Each [`TestCa`] is fresh; its leaves are
//! signed by it, and a client trusts them by trusting [`TestCa::pem`] alone.

use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};

/// A certificate authority made for one test run.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A leaf: its chain (leaf then CA) and key, PEM.
pub struct Leaf {
    /// The chain, PEM: the leaf, then the CA.
    pub chain_pem: String,
    /// The leaf's private key, PEM.
    pub key_pem: String,
    /// The leaf alone, DER (to compare with what a server presented).
    pub der: CertificateDer<'static>,
    /// The SHA-256 of the leaf's public key (its SubjectPublicKeyInfo),
    /// base64: what Chromium's `--ignore-certificate-errors-spki-list`
    /// takes to trust this leaf in a test profile.
    pub spki_sha256: String,
}

impl TestCa {
    /// A new CA, named `ssegate test CA <pid> <n>`.
    ///
    /// # Panics
    ///
    /// rcgen cannot make a key (never on a working machine).
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // A name of its own: two test CAs are two issuers, so a client
        // that trusts the other one says "unknown CA".
        static MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("ssegate test CA {} {n}", std::process::id());
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("a CA key");
        Self {
            issuer: CertifiedIssuer::self_signed(params, key).expect("a CA certificate"),
        }
    }

    /// The CA's certificate, PEM: what clients trust.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf for `names` (DNS names or IP literals), valid until
    /// `not_after` (year, month, day; UTC midnight), from 2020.
    ///
    /// # Panics
    ///
    /// A name is neither a DNS name nor an IP address.
    pub fn leaf_until(&self, names: &[&str], not_after: (i32, u8, u8)) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| (*n).to_string()).collect();
        let mut params = CertificateParams::new(names).expect("valid names");
        params
            .distinguished_name
            .push(DnType::CommonName, "ssegate test leaf");
        let (y, m, d) = not_after;
        params.not_after = rcgen::date_time_ymd(y, m, d);
        // Valid from 2020 (or a year before an earlier end).
        params.not_before = rcgen::date_time_ymd(2020.min(y - 1), 1, 1);
        let key = KeyPair::generate().expect("a leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("a leaf");
        let spki = ring::digest::digest(
            &ring::digest::SHA256,
            &rcgen::PublicKeyData::subject_public_key_info(&key),
        );
        Leaf {
            chain_pem: format!("{}{}", cert.pem(), self.pem()),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
            spki_sha256: base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                spki.as_ref(),
            ),
        }
    }

    /// A leaf for `names`, valid until 2099.
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        self.leaf_until(names, (2099, 1, 1))
    }

    /// A rustls client that trusts this CA only and offers `alpn`.
    pub fn client(&self, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
        client_trusting(&self.pem(), alpn).expect("the CA's own PEM")
    }
}

/// A rustls client that trusts the CA certificates in `ca_pem` only and
/// offers `alpn`.
///
/// # Errors
///
/// `ca_pem` holds no usable certificate.
pub fn client_trusting(ca_pem: &str, alpn: &[&[u8]]) -> Result<tokio_rustls::TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("CA PEM: {e}"))?;
        roots.add(cert).map_err(|e| format!("CA: {e}"))?;
    }
    if roots.is_empty() {
        return Err("no CA certificate".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl Leaf {
    /// Writes the chain and key to `dir/{name}.crt` and `dir/{name}.key`;
    /// returns their paths.
    ///
    /// # Panics
    ///
    /// `dir` is not writable.
    pub fn write(&self, dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let (cert, key) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert, &self.chain_pem).expect("write the chain");
        std::fs::write(&key, &self.key_pem).expect("write the key");
        (cert, key)
    }
}

/// The server name for `127.0.0.1`.
pub fn loopback_name() -> ServerName<'static> {
    ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into())
}
