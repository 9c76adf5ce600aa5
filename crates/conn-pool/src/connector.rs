//! How the client reaches an upstream: a connector turns a target into a byte
//! stream. Production uses TCP; tests use in-memory pipes, so that paused
//! tokio time reaches every deadline.

use std::future::Future;
use std::io;

use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

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
}

/// Plain TCP (`http` only; TLS arrives with the rustls connector).
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpConnector;

impl Connector for TcpConnector {
    type Io = TokioIo<TcpStream>;

    async fn connect(&self, target: &Target) -> io::Result<Self::Io> {
        if target.scheme != "http" {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "scheme {} is not supported by the plain TCP connector",
                    target.scheme
                ),
            ));
        }
        let stream = TcpStream::connect((target.host.as_str(), target.port)).await?;
        stream.set_nodelay(true)?;
        Ok(TokioIo::new(stream))
    }
}
