//! TLS on the listeners: `bridge.tls` (streams) and `bridge.admin_tls`.
//!
//! rustls on ring, TLS 1.2 and 1.3 only, ALPN `h2` then `http/1.1` (a
//! browser gets HTTP/2, so its `EventSource`s share one connection instead
//! of six). The certificate is served through a resolver whose pair can be
//! swapped ([`Certificate::swap`]): a reload reads the files again and new
//! handshakes use the new pair, while connections already open keep the
//! session they have. A pair that does not load (unreadable, not PEM, a key
//! that does not match the certificate, already expired) is refused and
//! the old one stays.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::RwLock;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;

use crate::metrics;

/// Where a listener's certificate and key are: PEM files, the certificate
/// file holding the chain (leaf first), the key file one private key
/// (PKCS#8, PKCS#1 or SEC1).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The certificate chain, PEM, leaf first.
    pub cert_file: PathBuf,
    /// The private key, PEM.
    pub key_file: PathBuf,
}

impl fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{{ cert_file: {}, key_file: {} }}",
            self.cert_file.display(),
            self.key_file.display()
        )
    }
}

/// Why a pair was refused: the key (`tls.cert_file`, say) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError {
    /// The configuration key, as in the `[bridge]` table.
    pub key: String,
    /// Why.
    pub reason: String,
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

impl std::error::Error for TlsError {}

/// A loaded pair: what the resolver serves, and when its leaf expires.
#[derive(Debug, Clone)]
pub struct Pair {
    key: Arc<CertifiedKey>,
    /// The leaf's `notAfter`, seconds since the Unix epoch.
    pub not_after: i64,
}

impl TlsFiles {
    /// Reads and checks the pair: both files PEM, the key matching the
    /// leaf, the leaf valid now. `key` is the configuration key these files
    /// sit under (`tls`, `admin_tls`), for the error.
    ///
    /// # Errors
    ///
    /// What is wrong, naming the file.
    pub fn load(&self, key: &'static str) -> Result<Pair, TlsError> {
        let err = |field: &str, reason: String| TlsError {
            key: format!("{key}.{field}"),
            reason,
        };
        let cert_pem = std::fs::read(&self.cert_file)
            .map_err(|e| err("cert_file", format!("{}: {e}", self.cert_file.display())))?;
        let key_pem = std::fs::read(&self.key_file)
            .map_err(|e| err("key_file", format!("{}: {e}", self.key_file.display())))?;
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                err(
                    "cert_file",
                    format!("{}: not PEM: {e}", self.cert_file.display()),
                )
            })?;
        if chain.is_empty() {
            return Err(err(
                "cert_file",
                format!("{}: no certificate in it", self.cert_file.display()),
            ));
        }
        let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            err(
                "key_file",
                format!("{}: no private key in it: {e}", self.key_file.display()),
            )
        })?;
        let not_after = not_after(&chain[0])
            .map_err(|why| err("cert_file", format!("{}: {why}", self.cert_file.display())))?;
        let now = unix_now();
        if not_after <= now {
            return Err(err(
                "cert_file",
                format!(
                    "{}: the certificate expired {} ago",
                    self.cert_file.display(),
                    humantime::format_duration(Duration::from_secs(
                        u64::try_from(now - not_after).unwrap_or(0)
                    ))
                ),
            ));
        }
        let key = CertifiedKey::from_der(chain, private, &provider()).map_err(|e| {
            err(
                "key_file",
                format!(
                    "{} does not go with {}: {e}",
                    self.key_file.display(),
                    self.cert_file.display()
                ),
            )
        })?;
        Ok(Pair {
            key: Arc::new(key),
            not_after,
        })
    }
}

/// The leaf's `notAfter`, Unix seconds.
fn not_after(leaf: &CertificateDer<'_>) -> Result<i64, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    Ok(cert.validity().not_after.timestamp())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// A listener's TLS: the configuration every handshake uses, and the pair
/// it serves, which a reload swaps.
pub(crate) struct Certificate {
    /// `streams` or `admin` (the metrics' `listener` label).
    listener: &'static str,
    current: Arc<Current>,
    acceptor: tokio_rustls::TlsAcceptor,
}

/// The pair served now.
#[derive(Debug)]
struct Current(RwLock<Pair>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().key.clone())
    }
}

impl Certificate {
    /// TLS for `listener` with `pair`.
    pub(crate) fn new(listener: &'static str, pair: Pair) -> Result<Self, TlsError> {
        let current = Arc::new(Current(RwLock::new(pair)));
        let mut config = ServerConfig::builder_with_provider(Arc::new(provider()))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError {
                key: "tls".into(),
                reason: e.to_string(),
            })?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let this = Self {
            listener,
            current,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        };
        this.record();
        Ok(this)
    }

    /// Serves `pair` from the next handshake on.
    pub(crate) fn swap(&self, pair: Pair) {
        *self.current.0.write() = pair;
        self.record();
    }

    /// The served leaf's `notAfter` (Unix seconds).
    pub(crate) fn not_after(&self) -> i64 {
        self.current.0.read().not_after
    }

    fn record(&self) {
        #[allow(clippy::cast_precision_loss)]
        metrics::record_tls_not_after(self.listener, self.not_after() as f64);
    }

    /// The handshake, within `timeout`. A failure is counted by reason and
    /// ends the connection.
    pub(crate) async fn accept<I>(&self, io: I, timeout: Duration) -> Option<TlsStream<I>>
    where
        I: AsyncRead + AsyncWrite + Unpin,
    {
        match tokio::time::timeout(timeout, self.acceptor.accept(io)).await {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err(e)) => {
                metrics::record_tls_failure(self.listener, failure(&e));
                tracing::debug!(error = %e, listener = self.listener, "TLS handshake failed");
                None
            }
            Err(_) => {
                metrics::record_tls_failure(self.listener, "timeout");
                None
            }
        }
    }
}

/// A handshake failure's `reason` label (one of
/// [`metrics::TLS_FAILURE_REASONS`]).
fn failure(e: &std::io::Error) -> &'static str {
    use rustls::{AlertDescription as A, Error as E};
    let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<E>()) else {
        return match e.kind() {
            std::io::ErrorKind::UnexpectedEof => "eof",
            _ => "io",
        };
    };
    match tls {
        E::AlertReceived(A::CertificateExpired) => "peer_says_expired",
        E::AlertReceived(A::UnknownCA | A::BadCertificate | A::CertificateUnknown) => {
            "peer_rejects_certificate"
        }
        E::AlertReceived(_) => "alert",
        E::PeerIncompatible(_) | E::NoApplicationProtocol => "incompatible",
        E::InvalidMessage(_)
        | E::InappropriateHandshakeMessage { .. }
        | E::InappropriateMessage { .. } => "not_tls",
        _ => "other",
    }
}
