//! The cluster tests' helpers: a real `nats-server -js` (the workspace's
//! shared [`NatsServer`]), a JetStream client on it, and a TCP relay that
//! can stall like a partition. Nothing of NATS is mocked.

#![allow(dead_code, unreachable_pub, unused_imports)] // each test binary uses its own part

use std::time::Duration;

pub use ssegate_tests::nats::{NatsServer, Proxy};

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
