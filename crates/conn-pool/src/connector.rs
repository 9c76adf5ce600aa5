//! How the client reaches an upstream: a connector turns a target into a byte
//! stream. Production uses [`HttpsConnector`] (TCP, plus rustls for `https`);
//! tests use in-memory pipes, so that paused tokio time reaches every
//! deadline.
//!
//! Name resolution goes through a [`Resolve`]: the system resolver runs at
//! most [`SystemResolver::MAX_CONCURRENT`] lookups at once, each on a blocking
//! thread that holds its permit until the lookup returns, so a hanging DNS
//! server cannot pile up resolver threads (F7). IP literals are never looked
//! up.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_rustls::client::TlsStream;

/// Where to connect.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// `http` or `https`.
    pub scheme: String,
    /// The host name or address.
    pub host: String,
    /// The port.
    pub port: u16,
}

/// Opens byte streams to targets.
pub trait Connector: Clone + Send + Sync + 'static {
    /// The connection's I/O.
    type Io: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static;

    /// Connects to `target`. The state machine's connect deadline bounds it.
    fn connect(&self, target: &Target) -> impl Future<Output = io::Result<Self::Io>> + Send;

    /// Whether HTTP/2 is to be spoken on `io` (ALPN chose `h2`, or the
    /// connector knows the server speaks it). Default: no.
    fn negotiated_h2(&self, io: &Self::Io) -> bool {
        let _ = io;
        false
    }

    /// Waits until a new connection may be attempted (a limiter's turn: see
    /// [`Throttled`](crate::Throttled)). The pool's streams await it before
    /// each [`connect`](Self::connect) that opens a socket, and hold what it
    /// returns until the connect ends; their connect deadline starts when it
    /// resolves, so time in the limiter's queue is never a timeout.
    /// Default: at once.
    fn ready(&self) -> impl Future<Output = Ready> + Send {
        std::future::ready(Ready::default())
    }
}

/// A connector's permission to attempt a connection ([`Connector::ready`]),
/// held until the attempt ends.
#[derive(Debug, Default)]
pub struct Ready {
    /// Released when the attempt ends (dropped).
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Ready {
    /// Holds `permit` for the attempt.
    pub(crate) fn holding(permit: Option<tokio::sync::OwnedSemaphorePermit>) -> Self {
        Self { _permit: permit }
    }
}

/// Why a connection failed in a way the state machine classifies apart from
/// plain I/O. Carried inside the `io::Error` a connector returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectFailure {
    /// Name resolution failed (or found no address).
    Dns(String),
    /// The TLS handshake or the certificate check failed.
    Tls(String),
}

impl fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dns(why) => write!(f, "name resolution failed: {why}"),
            Self::Tls(why) => write!(f, "TLS failed: {why}"),
        }
    }
}

impl std::error::Error for ConnectFailure {}

impl ConnectFailure {
    /// Wraps `self` in an `io::Error`.
    pub fn into_io(self) -> io::Error {
        io::Error::other(self)
    }

    /// The failure inside `err`, if it carries one.
    pub fn of(err: &io::Error) -> Option<&Self> {
        err.get_ref().and_then(|e| e.downcast_ref::<Self>())
    }
}

/// The future a resolver returns.
pub type Resolving = Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send>>;

/// Turns a host name into addresses.
pub trait Resolve: Send + Sync + 'static {
    /// The addresses of `host` (never an IP literal: those are not looked up).
    fn resolve(&self, host: &str, port: u16) -> Resolving;
}

/// The operating system's resolver (`getaddrinfo` on a blocking thread), at
/// most [`Self::MAX_CONCURRENT`] lookups at once in the whole process.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl SystemResolver {
    /// Lookups in flight at once; more wait (within the connect deadline).
    pub const MAX_CONCURRENT: usize = 16;
}

static LOOKUPS: LazyLock<Arc<Semaphore>> =
    LazyLock::new(|| Arc::new(Semaphore::new(SystemResolver::MAX_CONCURRENT)));

impl Resolve for SystemResolver {
    fn resolve(&self, host: &str, port: u16) -> Resolving {
        let host = host.to_string();
        Box::pin(async move {
            let permit = LOOKUPS
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| io::Error::other("the resolver limiter was closed"))?;
            let lookup = tokio::task::spawn_blocking(move || {
                // The permit lives as long as the thread's lookup, even when
                // the connection that asked has been abandoned.
                let _permit = permit;
                (host.as_str(), port)
                    .to_socket_addrs()
                    .map(Iterator::collect::<Vec<_>>)
            });
            lookup
                .await
                .map_err(|e| io::Error::other(format!("the lookup task failed: {e}")))?
        })
    }
}

/// TCP keepalive on upstream sockets: the first probe after 15 s without
/// traffic, then every 5 s, 3 unanswered end the connection (about 30 s).
const KEEPALIVE: socket2::TcpKeepalive = socket2::TcpKeepalive::new()
    .with_time(std::time::Duration::from_secs(15))
    .with_interval(std::time::Duration::from_secs(5))
    .with_retries(3);

/// Connects TCP to `target`, resolving through `resolver` unless the host is
/// an IP literal, trying each address in turn.
async fn tcp_connect(resolver: &dyn Resolve, target: &Target) -> io::Result<TcpStream> {
    let addrs = match target.host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, target.port)],
        Err(_) => resolver
            .resolve(&target.host, target.port)
            .await
            .map_err(|e| ConnectFailure::Dns(format!("{}: {e}", target.host)).into_io())?,
    };
    if addrs.is_empty() {
        return Err(ConnectFailure::Dns(format!("{}: no address", target.host)).into_io());
    }
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                // A peer that vanished (a host gone, a middlebox that forgot
                // the flow) is found by the kernel's probes within
                // `KEEPALIVE` instead of never: an HTTP/1.1 stream sees no
                // error until its idle timeout otherwise.
                socket2::SockRef::from(&stream).set_tcp_keepalive(&KEEPALIVE)?;
                return Ok(stream);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no address to connect to")))
}

/// Plain TCP through the system resolver (`http` only). Use
/// [`HttpsConnector`] for `https`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpConnector;

impl Connector for TcpConnector {
    type Io = TokioIo<TcpStream>;

    async fn connect(&self, target: &Target) -> io::Result<Self::Io> {
        if target.scheme != "http" {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "scheme {} needs the HTTPS connector; never sent in plaintext",
                    target.scheme
                ),
            ));
        }
        Ok(TokioIo::new(tcp_connect(&SystemResolver, target).await?))
    }
}

/// Speaks HTTP/2 with prior knowledge (h2c) over another connector's
/// connections: for upstreams known to serve HTTP/2 without TLS.
#[derive(Debug, Clone, Copy, Default)]
pub struct Http2PriorKnowledge<C>(pub C);

impl<C: Connector> Connector for Http2PriorKnowledge<C> {
    type Io = C::Io;

    fn connect(&self, target: &Target) -> impl Future<Output = io::Result<Self::Io>> + Send {
        self.0.connect(target)
    }

    fn ready(&self) -> impl Future<Output = Ready> + Send {
        self.0.ready()
    }

    fn negotiated_h2(&self, _io: &Self::Io) -> bool {
        true
    }
}

/// How `https` upstreams are trusted. With the `serde` feature it reads
/// from a table of its field names.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct TlsConfig {
    /// Trust the Mozilla roots shipped in `webpki-roots`. Default true.
    pub webpki_roots: bool,
    /// Also trust the certificates in this PEM file (a private CA).
    pub extra_ca_file: Option<PathBuf>,
    /// Offer HTTP/2 by ALPN (then streams to one origin share a connection).
    /// Default true.
    pub http2: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            webpki_roots: true,
            extra_ca_file: None,
            http2: true,
        }
    }
}

/// Why a TLS configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfigError(String);

impl fmt::Display for TlsConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TLS configuration: {}", self.0)
    }
}

impl std::error::Error for TlsConfigError {}

/// TCP for `http`, TCP + rustls for `https` (never a plaintext fallback), with
/// HTTP/2 chosen by ALPN.
#[derive(Clone)]
pub struct HttpsConnector {
    tls: tokio_rustls::TlsConnector,
    resolver: Arc<dyn Resolve>,
}

impl fmt::Debug for HttpsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpsConnector").finish_non_exhaustive()
    }
}

impl HttpsConnector {
    /// A connector trusting what `config` says, resolving with the system
    /// resolver.
    ///
    /// # Errors
    ///
    /// The extra CA file cannot be read, holds no certificate, or holds an
    /// invalid one; or no root is trusted at all.
    pub fn new(config: &TlsConfig) -> Result<Self, TlsConfigError> {
        let mut roots = rustls::RootCertStore::empty();
        if config.webpki_roots {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        if let Some(path) = &config.extra_ca_file {
            let shown = path.display();
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| TlsConfigError(format!("{shown}: {e}")))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| TlsConfigError(format!("{shown}: {e}")))?;
            if certs.is_empty() {
                return Err(TlsConfigError(format!("{shown}: no certificate in it")));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| TlsConfigError(format!("{shown}: {e}")))?;
            }
        }
        if roots.is_empty() {
            return Err(TlsConfigError(
                "no trusted root: enable webpki_roots or give extra_ca_file".into(),
            ));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsConfigError(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = if config.http2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        Ok(Self {
            tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
            resolver: Arc::new(SystemResolver),
        })
    }

    /// Resolves names with `resolver` instead (tests use an in-memory one).
    #[must_use]
    pub fn with_resolver(mut self, resolver: impl Resolve) -> Self {
        self.resolver = Arc::new(resolver);
        self
    }
}

/// A connection made by [`HttpsConnector`].
#[derive(Debug)]
pub enum MaybeTls {
    /// `http`.
    Plain(TokioIo<TcpStream>),
    /// `https` (boxed: the TLS state is large and moves rarely).
    Tls(Box<TokioIo<TlsStream<TcpStream>>>),
}

impl hyper::rt::Read for MaybeTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_read(cx, buf),
            Self::Tls(io) => Pin::new(io.as_mut()).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for MaybeTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_write(cx, buf),
            Self::Tls(io) => Pin::new(io.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_flush(cx),
            Self::Tls(io) => Pin::new(io.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_shutdown(cx),
            Self::Tls(io) => Pin::new(io.as_mut()).poll_shutdown(cx),
        }
    }
}

impl Connector for HttpsConnector {
    type Io = MaybeTls;

    async fn connect(&self, target: &Target) -> io::Result<Self::Io> {
        let tls = match target.scheme.as_str() {
            "http" => false,
            "https" => true,
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("scheme {other} is not supported"),
                ));
            }
        };
        let tcp = tcp_connect(self.resolver.as_ref(), target).await?;
        if !tls {
            return Ok(MaybeTls::Plain(TokioIo::new(tcp)));
        }
        let name = ServerName::try_from(target.host.clone()).map_err(|e| {
            ConnectFailure::Tls(format!("{} is not a valid server name: {e}", target.host))
                .into_io()
        })?;
        let stream = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| ConnectFailure::Tls(e.to_string()).into_io())?;
        Ok(MaybeTls::Tls(Box::new(TokioIo::new(stream))))
    }

    fn negotiated_h2(&self, io: &Self::Io) -> bool {
        match io {
            MaybeTls::Plain(_) => false,
            MaybeTls::Tls(io) => io.inner().get_ref().1.alpn_protocol() == Some(b"h2"),
        }
    }
}
