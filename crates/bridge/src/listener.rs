//! Where connections come from. The gateway does not bind addresses: the
//! application hands it two [`Listener`]s (streams, admin). In production
//! they are TCP ([`TcpAcceptor`]); in tests they are in-memory pipes
//! ([`memory`]), over which paused tokio time reaches every timer (with a
//! real socket it would fire timeouts early).

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite, DuplexStream};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// A source of client connections.
pub trait Listener: Send + 'static {
    /// A connection's I/O.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// The next connection and its peer's address. An error is logged and
    /// the gateway tries again a little later (out of descriptors, say).
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Io, SocketAddr)>> + Send;

    /// Where clients connect.
    ///
    /// # Errors
    ///
    /// The operating system cannot tell.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// A TCP listener with the socket options the gateway wants on every
/// connection: `TCP_NODELAY` (events go out at once), and on the stream
/// listener a bounded `SO_SNDBUF`.
#[derive(Debug)]
pub struct TcpAcceptor {
    listener: TcpListener,
    /// `SO_SNDBUF` to set on each accepted socket (0: leave it).
    send_buffer: usize,
    /// Whether accepted sockets inherit the options from the listening
    /// socket (Linux does), so that nothing is set per connection.
    inherited: bool,
}

impl TcpAcceptor {
    /// The stream listener on `addr`, with a deep accept queue: after a
    /// restart or a network blip thousands of clients reconnect within a
    /// second or two, and a SYN dropped from a full queue costs its client
    /// a second (the first retransmission).
    ///
    /// `TCP_NODELAY` and `SO_SNDBUF` (`send_buffer`, the bridge's
    /// `send_buffer`; 0 leaves the system's default) are set on the
    /// listening socket: on Linux every accepted socket inherits them, two
    /// system calls fewer per connection when thousands arrive at once
    /// (elsewhere they are set on each accepted socket).
    ///
    /// # Errors
    ///
    /// The address cannot be bound.
    pub fn streams(addr: SocketAddr, send_buffer: usize) -> io::Result<Self> {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.set_nodelay(true)?;
        if send_buffer > 0 {
            socket.set_send_buffer_size(u32::try_from(send_buffer).unwrap_or(u32::MAX))?;
        }
        socket.bind(addr)?;
        Ok(Self {
            // The kernel caps it at net.core.somaxconn (4096 by default).
            listener: socket.listen(4096)?,
            send_buffer,
            inherited: cfg!(target_os = "linux"),
        })
    }

    /// The admin listener on `addr` (`TCP_NODELAY` on each connection).
    ///
    /// # Errors
    ///
    /// The address cannot be bound.
    pub async fn admin(addr: SocketAddr) -> io::Result<Self> {
        Ok(Self::from(TcpListener::bind(addr).await?))
    }
}

/// A listener bound elsewhere: `TCP_NODELAY` is set on each connection.
impl From<TcpListener> for TcpAcceptor {
    fn from(listener: TcpListener) -> Self {
        Self {
            listener,
            send_buffer: 0,
            inherited: false,
        }
    }
}

impl Listener for TcpAcceptor {
    type Io = TcpStream;

    async fn accept(&mut self) -> io::Result<(TcpStream, SocketAddr)> {
        let (socket, peer) = self.listener.accept().await?;
        if !self.inherited {
            let _ = socket.set_nodelay(true);
            if self.send_buffer > 0 {
                let _ = socket2::SockRef::from(&socket).set_send_buffer_size(self.send_buffer);
            }
        }
        Ok((socket, peer))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// An in-memory listener and the way to connect to it: each
/// [`MemoryDialer::connect`] gives one end of a pipe holding `buffer` bytes
/// each way (a socket's send buffer, say 64 KiB, makes slow-consumer tests
/// realistic), and the gateway accepts the other end. `addr` is what the
/// listener reports as its own (a loopback address makes an admin listener
/// allow its actions).
pub fn memory(addr: SocketAddr, buffer: usize) -> (MemoryListener, MemoryDialer) {
    // Connections wait here until accepted, like a listen queue.
    let (tx, rx) = mpsc::channel(1024);
    (
        MemoryListener { addr, rx },
        MemoryDialer { addr, buffer, tx },
    )
}

/// The accepting side of [`memory`].
#[derive(Debug)]
pub struct MemoryListener {
    addr: SocketAddr,
    rx: mpsc::Receiver<(DuplexStream, SocketAddr)>,
}

impl Listener for MemoryListener {
    type Io = DuplexStream;

    async fn accept(&mut self) -> io::Result<(DuplexStream, SocketAddr)> {
        match self.rx.recv().await {
            Some(accepted) => Ok(accepted),
            // Nobody can connect any more: wait to be stopped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

/// The connecting side of [`memory`]; cheap to clone.
#[derive(Debug, Clone)]
pub struct MemoryDialer {
    addr: SocketAddr,
    buffer: usize,
    tx: mpsc::Sender<(DuplexStream, SocketAddr)>,
}

impl MemoryDialer {
    /// The listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A connection from `peer` (the address the gateway sees).
    ///
    /// # Errors
    ///
    /// The gateway is gone (`ConnectionRefused`).
    pub async fn connect(&self, peer: SocketAddr) -> io::Result<DuplexStream> {
        let (client, server) = tokio::io::duplex(self.buffer);
        self.tx
            .send((server, peer))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::ConnectionRefused))?;
        Ok(client)
    }
}
