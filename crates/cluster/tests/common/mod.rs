//! The cluster tests' helpers: a real `nats-server -js` (the workspace's
//! shared [`NatsServer`]), a JetStream client on it, and a TCP relay that
//! can stall like a partition. Nothing of NATS is mocked.

#![allow(dead_code, unreachable_pub)] // each test binary uses its own part

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

pub use ssegate_tests::nats::NatsServer;

/// How long a server may take to answer.
const START_WAIT: Duration = Duration::from_secs(20);

/// A client with JetStream on `server`, once JetStream answers.
pub async fn jetstream(server: &NatsServer) -> async_nats::jetstream::Context {
    jetstream_at(&server.url()).await
}

/// A client with JetStream at `url` (a server or a [`Proxy`] to one),
/// once JetStream answers there.
pub async fn jetstream_at(url: &str) -> async_nats::jetstream::Context {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(2))
        .request_timeout(Some(Duration::from_secs(1)))
        .connect(url)
        .await
        .expect("connect to the test nats-server");
    let jetstream = async_nats::jetstream::new(client);
    // The port accepts before JetStream has read its store.
    let deadline = tokio::time::Instant::now() + START_WAIT;
    while jetstream.query_account().await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "JetStream did not answer at {url} within {START_WAIT:?}"
        );
        // Wall clock: a real server reading its store; a bounded poll.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    jetstream
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
