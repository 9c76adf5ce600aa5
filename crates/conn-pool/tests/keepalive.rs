//! A shared HTTP/2 upstream connection that goes half-dead is found by its
//! PINGs within half a minute, not by each stream's idle timeout; a
//! rotation replaces the socket instead of reusing the shared one; upstream
//! sockets have TCP keepalive (issue 14, item 16). Paused time over
//! in-memory HTTP/2, except the socket option check (loopback).

mod common;

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sse_conn_pool::{
    Connections, Connector, Http2PriorKnowledge, StreamConfig, StreamHandle, StreamItem, Target,
    TcpConnector, UpstreamRequest, spawn_stream,
};
use sse_state_machine::{Phase, Reason, RotateReason};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::sync::broadcast;
use tokio::time::{Instant, timeout};

/// An event per stream this often.
const TICK: Duration = Duration::from_secs(1);

/// A pipe end that can go silent both ways at once (a peer that vanished
/// without a FIN: nothing arrives, nothing sent is acknowledged).
struct Freezable {
    io: DuplexStream,
    frozen: Arc<AtomicBool>,
}

impl AsyncRead for Freezable {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.frozen.load(Ordering::SeqCst) {
            return Poll::Pending;
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Freezable {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.frozen.load(Ordering::SeqCst) {
            // Written into the void: a dead peer's window looks open.
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// An HTTP/2 (prior knowledge) upstream in memory: every request gets an
/// event stream ticking once a second. Counts sockets opened.
#[derive(Clone, Default)]
struct H2Upstream {
    connects: Arc<AtomicUsize>,
    /// Freezes every socket opened so far.
    frozen: Arc<parking_lot::Mutex<Vec<Arc<AtomicBool>>>>,
}

impl H2Upstream {
    fn freeze_all(&self) {
        for f in self.frozen.lock().iter() {
            f.store(true, Ordering::SeqCst);
        }
    }
}

impl Connector for H2Upstream {
    type Io = TokioIo<Freezable>;

    async fn connect(&self, _: &Target) -> std::io::Result<Self::Io> {
        self.connects.fetch_add(1, Ordering::SeqCst);
        let (client, server) = tokio::io::duplex(256 * 1024);
        let frozen = Arc::new(AtomicBool::new(false));
        self.frozen.lock().push(frozen.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|_: hyper::Request<Incoming>| {
                let (tx, rx) = tokio::sync::mpsc::channel(16);
                tokio::spawn(async move {
                    for id in 1u64.. {
                        let event = Bytes::from(format!("id: {id}\ndata: tick\n\n"));
                        if tx.send(event).await.is_err() {
                            return;
                        }
                        // Paused time: the upstream's pace.
                        tokio::time::sleep(TICK).await;
                    }
                });
                let response = common::event_stream(common::ChannelBody(rx));
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(server), service)
                .await;
        });
        Ok(TokioIo::new(Freezable { io: client, frozen }))
    }
}

/// A stream of `topic` over `upstream`, sharing `connections`; its idle
/// timeout is five minutes, far beyond what the PINGs need.
fn stream(upstream: &H2Upstream, connections: &Connections, topic: &str) -> StreamHandle {
    let mut config = StreamConfig {
        connections: connections.clone(),
        health_rotation: false,
        ..StreamConfig::default()
    };
    config.machine.idle_timeout = Duration::from_secs(300);
    config.machine.first_byte_timeout = Duration::from_secs(300);
    let request =
        UpstreamRequest::get(&format!("http://upstream.test/{topic}")).expect("a valid URL");
    spawn_stream(Http2PriorKnowledge(upstream.clone()), request, config).expect("valid")
}

async fn next_event(items: &mut broadcast::Receiver<StreamItem>) {
    timeout(Duration::from_secs(60), async {
        loop {
            match items.recv().await {
                Ok(StreamItem::Event(_)) => return,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("the stream ended"),
            }
        }
    })
    .await
    .expect("an event in time");
}

#[tokio::test(start_paused = true)]
async fn a_half_dead_shared_h2_connection_is_found_by_its_pings() {
    let upstream = H2Upstream::default();
    let connections = Connections::default();
    let handles = [
        stream(&upstream, &connections, "A"),
        stream(&upstream, &connections, "B"),
    ];
    let mut items: Vec<_> = handles.iter().map(StreamHandle::subscribe).collect();
    for i in &mut items {
        next_event(i).await;
    }
    assert_eq!(
        upstream.connects.load(Ordering::SeqCst),
        1,
        "one shared socket"
    );
    let frozen_at = Instant::now();
    upstream.freeze_all();
    // Each stream notices the loss through the shared connection's PINGs
    // (20 s apart, 10 s to answer), not its five-minute idle timeout.
    for (i, items) in items.iter_mut().enumerate() {
        let lost = timeout(Duration::from_secs(300), async {
            loop {
                if let Ok(StreamItem::Status(status)) = items.recv().await
                    && status.phase != Phase::Open
                {
                    return status.reason;
                }
            }
        })
        .await
        .expect("the loss is noticed");
        assert!(
            !matches!(lost, Reason::Timeout(_)),
            "stream {i}: noticed by a timeout: {lost:?}"
        );
    }
    let noticed = frozen_at.elapsed();
    assert!(
        noticed <= Duration::from_secs(31),
        "noticed after {noticed:?}"
    );
    // And both come back on a new socket.
    for i in &mut items {
        next_event(i).await;
    }
    assert_eq!(upstream.connects.load(Ordering::SeqCst), 2);
    for handle in handles {
        handle.stop().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_rotation_opens_a_new_socket_instead_of_reusing_the_shared_one() {
    let upstream = H2Upstream::default();
    let connections = Connections::default();
    let a = stream(&upstream, &connections, "A");
    let b = stream(&upstream, &connections, "B");
    let (mut a_items, mut b_items) = (a.subscribe(), b.subscribe());
    next_event(&mut a_items).await;
    next_event(&mut b_items).await;
    assert_eq!(upstream.connects.load(Ordering::SeqCst), 1);
    a.rotate(RotateReason::Errors).await;
    timeout(Duration::from_secs(60), async {
        loop {
            if let Ok(StreamItem::Status(status)) = a_items.recv().await
                && status.reason == Reason::Rotated(RotateReason::Errors)
            {
                return;
            }
        }
    })
    .await
    .expect("the rotation completes");
    assert_eq!(
        upstream.connects.load(Ordering::SeqCst),
        2,
        "the rotation's connection is a new socket"
    );
    // B stays on the old socket until it reconnects; then it shares the new.
    assert_eq!(connections.open_sockets(), 2);
    b.reconnect().await;
    next_event(&mut b_items).await;
    next_event(&mut b_items).await;
    assert_eq!(
        upstream.connects.load(Ordering::SeqCst),
        2,
        "B joined the new socket"
    );
    assert_eq!(connections.open_sockets(), 1, "the old socket closed");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn upstream_sockets_have_tcp_keepalive() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let port = listener.local_addr().expect("an address").port();
    let target = Target {
        scheme: "http".into(),
        host: "127.0.0.1".into(),
        port,
    };
    let io = TcpConnector.connect(&target).await.expect("connects");
    let socket = socket2::SockRef::from(io.inner());
    assert!(socket.keepalive().expect("readable"));
    assert_eq!(
        socket.tcp_keepalive_time().expect("readable"),
        Duration::from_secs(15)
    );
}
